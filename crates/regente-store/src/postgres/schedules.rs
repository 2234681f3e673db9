//! Schedules on PostgreSQL. A firing locks its schedule's row first, so firings
//! of one schedule (from two servers that both believe they lead, a trigger,
//! a backfill) take turns: each sees what the one before committed, and the
//! (schedule, scheduled time) key refuses whatever slipped through.

use std::collections::HashMap;
use std::sync::LazyLock;

use async_trait::async_trait;
use regente_core::schedule::plan::Overlap;
use regente_core::ExecutionStatus;
use sqlx::{PgConnection, Row};

use super::audit::{audit_one, delete_audited, insert_audit};
use super::events::{insert_events, save_cursor_in};
use super::executions::insert_execution;
use super::flows::insert_run;
use super::{
    conflict_as, fetch_all, fetch_optional, other, unsynced_commit, PgQuery, PostgresStore,
};
use crate::rows::{
    fire_run_ids, insert_schedule_sql, schedule_definition, schedule_fire_from, schedule_from,
    status_of, update_schedule_sql, Param, SCHEDULE_COLUMNS, SCHEDULE_FIRE_COLUMNS,
};
use crate::rules::{
    count_run_end, firing_range, live_flow_runs_sql, plan_firing, schedule_paused_event,
    scheduled_run_table, FiringState,
};
use crate::AuditEntry;
use crate::{
    Error, EventCursor, Fired, Firing, Millis, NewScheduledRun, PausedSchedule, Result, RunEnd,
    RunEndsCounted, Schedule, ScheduleFire, ScheduleStore, ScheduledRun,
};

const NAME_TAKEN: &str = "a schedule with this name";

static INSERT_SCHEDULE: LazyLock<String> =
    LazyLock::new(|| insert_schedule_sql(|n| format!("${n}")));
static UPDATE_SCHEDULE: LazyLock<String> =
    LazyLock::new(|| update_schedule_sql(|n| format!("${n}")));
static LIVE_FLOW_RUNS: LazyLock<String> = LazyLock::new(|| live_flow_runs_sql(|n| format!("${n}")));

fn bind_param<'q>(query: PgQuery<'q>, param: Param<'q>) -> PgQuery<'q> {
    match param {
        Param::Text(text) => query.bind(text),
        Param::Int(number) => query.bind(number),
        Param::Flag(flag) => query.bind(flag),
    }
}

async fn firing_state(conn: &mut PgConnection, firing: &Firing) -> Result<Option<FiringState>> {
    let Some(row) = sqlx::query(
        "SELECT overlap, paused, next_fire_at FROM schedules \
         WHERE organization_id = $1 AND id = $2 FOR UPDATE",
    )
    .bind(&firing.organization_id)
    .bind(&firing.schedule_id)
    .fetch_optional(&mut *conn)
    .await
    .map_err(other)?
    else {
        return Ok(None);
    };
    let overlap: String = row.try_get("overlap").map_err(other)?;
    let overlap = Overlap::parse(&overlap)
        .map_err(|e| Error::Other(anyhow::anyhow!("stored overlap: {e}")))?;
    let (mut pendent, mut running) = (0, 0);
    let live = sqlx::query(
        "SELECT status, COUNT(*) AS n FROM executions \
         WHERE organization_id = $1 AND schedule_id = $2 AND status IN ('PENDENT', 'RUNNING') \
         AND schedule_id IS NOT NULL GROUP BY status",
    )
    .bind(&firing.organization_id)
    .bind(&firing.schedule_id)
    .fetch_all(&mut *conn)
    .await
    .map_err(other)?;
    for row in &live {
        let count: i64 = row.try_get("n").map_err(other)?;
        match status_of(row)? {
            ExecutionStatus::Pendent => pendent = count as u64,
            _ => running = count as u64,
        }
    }
    let flow_runs = sqlx::query(&LIVE_FLOW_RUNS)
        .bind(&firing.organization_id)
        .bind(&firing.schedule_id)
        .fetch_one(&mut *conn)
        .await
        .map_err(other)?;
    let live: i64 = flow_runs.try_get("live").map_err(other)?;
    let waiting: i64 = flow_runs.try_get("waiting").map_err(other)?;
    pendent += waiting as u64;
    running += (live - waiting) as u64;
    let mut recorded = HashMap::new();
    if let Some((low, high)) = firing_range(firing) {
        let rows = sqlx::query(
            "SELECT scheduled_for, outcome FROM schedule_fires \
             WHERE schedule_id = $1 AND scheduled_for BETWEEN $2 AND $3",
        )
        .bind(&firing.schedule_id)
        .bind(low)
        .bind(high)
        .fetch_all(&mut *conn)
        .await
        .map_err(other)?;
        for row in &rows {
            recorded.insert(
                row.try_get("scheduled_for").map_err(other)?,
                row.try_get("outcome").map_err(other)?,
            );
        }
    }
    Ok(Some(FiringState {
        overlap,
        paused: row.try_get("paused").map_err(other)?,
        next_fire_at: row.try_get("next_fire_at").map_err(other)?,
        pendent,
        running,
        recorded,
    }))
}

/// Applies a firing in the caller's transaction; `None` when it is stale.
async fn fire(conn: &mut PgConnection, firing: &Firing) -> Result<Option<Fired>> {
    let state = firing_state(conn, firing).await?;
    let Some(decided) = plan_firing(firing, state) else {
        return Ok(None);
    };
    for write in &decided.writes {
        let (execution_id, flow_run_id) = fire_run_ids(&write.outcome);
        sqlx::query(
            "INSERT INTO schedule_fires (schedule_id, scheduled_for, organization_id, origin, \
             outcome, execution_id, flow_run_id, reason, recorded_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (schedule_id, scheduled_for) DO UPDATE SET origin = EXCLUDED.origin, \
             outcome = EXCLUDED.outcome, execution_id = EXCLUDED.execution_id, \
             flow_run_id = EXCLUDED.flow_run_id, reason = EXCLUDED.reason, \
             recorded_at = EXCLUDED.recorded_at",
        )
        .bind(&firing.schedule_id)
        .bind(write.scheduled_for)
        .bind(&firing.organization_id)
        .bind(firing.origin.as_str())
        .bind(write.outcome.as_str())
        .bind(execution_id)
        .bind(flow_run_id)
        .bind(write.reason.as_deref())
        .bind(firing.now)
        .execute(&mut *conn)
        .await
        .map_err(other)?;
        match write.start {
            Some(NewScheduledRun::Execution(new)) => insert_execution(conn, new).await?,
            Some(NewScheduledRun::Flow(new)) => insert_run(conn, new).await?,
            None => {}
        }
        insert_events(conn, &write.events).await?;
    }
    let advance = firing.advance.as_ref();
    sqlx::query(
        "UPDATE schedules SET fired = fired + $1, skipped = skipped + $2, missed = missed + $3, \
         next_fire_at = CASE WHEN $4 THEN $5 ELSE next_fire_at END, \
         next_due_at = CASE WHEN $4 THEN $6 ELSE next_due_at END \
         WHERE organization_id = $7 AND id = $8",
    )
    .bind(decided.fired)
    .bind(decided.skipped)
    .bind(decided.missed)
    .bind(advance.is_some())
    .bind(advance.and_then(|a| a.next_fire_at))
    .bind(advance.and_then(|a| a.next_due_at))
    .bind(&firing.organization_id)
    .bind(&firing.schedule_id)
    .execute(&mut *conn)
    .await
    .map_err(other)?;
    Ok(Some(decided.answer))
}

/// Whether any of `ends` is of a run a schedule queued (ids are unique across
/// organisations; a run's schedule never changes).
async fn any_scheduled(conn: &mut PgConnection, ends: &[RunEnd]) -> Result<bool> {
    let (mut executions, mut flow_runs) = (Vec::new(), Vec::new());
    for end in ends {
        match &end.run {
            ScheduledRun::Execution(id) => executions.push(id.as_str()),
            ScheduledRun::FlowRun(id) => flow_runs.push(id.as_str()),
        }
    }
    if ends.is_empty() {
        return Ok(false);
    }
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM executions \
                        WHERE id = ANY($1) AND schedule_id IS NOT NULL) \
             OR EXISTS (SELECT 1 FROM flow_runs \
                        WHERE id = ANY($2) AND schedule_id IS NOT NULL)",
    )
    .bind(&executions)
    .bind(&flow_runs)
    .fetch_one(conn)
    .await
    .map_err(other)
}

/// Counts run ends in the caller's transaction; `None` when the consumer's
/// cursor is not at `from`.
async fn count_ends(
    conn: &mut PgConnection,
    consumer: &str,
    from: EventCursor,
    through: EventCursor,
    ends: &[RunEnd],
    now: Millis,
) -> Result<Option<Vec<PausedSchedule>>> {
    // Locks the consumer's cursor: another copy of the consumer waits here,
    // then finds the cursor moved.
    sqlx::query(
        "INSERT INTO event_cursors (consumer, txid, seq, updated_at) VALUES ($1, 0, 0, $2) \
         ON CONFLICT (consumer) DO NOTHING",
    )
    .bind(consumer)
    .bind(now)
    .execute(&mut *conn)
    .await
    .map_err(other)?;
    let saved = sqlx::query("SELECT txid, seq FROM event_cursors WHERE consumer = $1 FOR UPDATE")
        .bind(consumer)
        .fetch_one(&mut *conn)
        .await
        .map_err(other)?;
    let saved = EventCursor {
        txid: saved.try_get("txid").map_err(other)?,
        seq: saved.try_get("seq").map_err(other)?,
    };
    if saved != from {
        return Ok(None);
    }
    let mut paused = Vec::new();
    for end in ends {
        let (table, run_id) = scheduled_run_table(&end.run);
        let Some(row) = sqlx::query(&format!(
            "SELECT s.id, s.consecutive_failures, s.pause_after_failures, s.paused \
             FROM {table} r JOIN schedules s \
             ON s.id = r.schedule_id AND s.organization_id = r.organization_id \
             WHERE r.organization_id = $1 AND r.id = $2 FOR UPDATE OF s"
        ))
        .bind(&end.organization_id)
        .bind(run_id)
        .fetch_optional(&mut *conn)
        .await
        .map_err(other)?
        else {
            continue;
        };
        let schedule_id: String = row.try_get("id").map_err(other)?;
        let consecutive: i64 = row.try_get("consecutive_failures").map_err(other)?;
        let pause_after: Option<i64> = row.try_get("pause_after_failures").map_err(other)?;
        let Some((consecutive, note)) = count_run_end(
            end.status,
            consecutive as u32,
            pause_after.map(|n| n as u32),
            row.try_get("paused").map_err(other)?,
            &end.run,
        ) else {
            continue;
        };
        sqlx::query(
            "UPDATE schedules SET consecutive_failures = $1, \
             paused = CASE WHEN $2::TEXT IS NULL THEN paused ELSE TRUE END, \
             pause_note = COALESCE($2, pause_note) WHERE organization_id = $3 AND id = $4",
        )
        .bind(i64::from(consecutive))
        .bind(note.as_deref())
        .bind(&end.organization_id)
        .bind(&schedule_id)
        .execute(&mut *conn)
        .await
        .map_err(other)?;
        if let Some(note) = note {
            let pause = PausedSchedule {
                organization_id: end.organization_id.clone(),
                schedule_id,
                note,
            };
            insert_events(conn, &[schedule_paused_event(&pause, &end.run, now)]).await?;
            paused.push(pause);
        }
    }
    save_cursor_in(conn, consumer, through, now).await?;
    Ok(Some(paused))
}

#[async_trait]
impl ScheduleStore for PostgresStore {
    async fn create_schedule(&self, s: &Schedule, audit: Option<&AuditEntry>) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(other)?;
        let query = sqlx::query(&INSERT_SCHEDULE)
            .bind(&s.id)
            .bind(&s.organization_id)
            .bind(s.created_at);
        let (variables, rule) = (s.variables.to_string(), s.rule.to_string());
        schedule_definition(s, &variables, &rule)
            .into_iter()
            .fold(query, bind_param)
            .execute(&mut *tx)
            .await
            .map_err(conflict_as(NAME_TAKEN))?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(other)
    }

    async fn get_schedule(&self, organization_id: &str, id: &str) -> Result<Schedule> {
        fetch_optional(
            &self.pool,
            &format!(
                "SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE organization_id = $1 AND id = $2"
            ),
            &[organization_id, id],
            schedule_from,
        )
        .await?
        .ok_or(Error::NotFound)
    }

    async fn list_schedules(&self, organization_id: &str) -> Result<Vec<Schedule>> {
        fetch_all(
            &self.pool,
            &format!(
                "SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE organization_id = $1 \
                 ORDER BY created_at, id"
            ),
            &[organization_id],
            schedule_from,
        )
        .await
    }

    async fn update_schedule(
        &self,
        s: &Schedule,
        reset_failures: bool,
        audit: Option<&AuditEntry>,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(other)?;
        let (variables, rule) = (s.variables.to_string(), s.rule.to_string());
        let changed = schedule_definition(s, &variables, &rule)
            .into_iter()
            .fold(sqlx::query(&UPDATE_SCHEDULE), bind_param)
            .bind(reset_failures)
            .bind(&s.organization_id)
            .bind(&s.id)
            .execute(&mut *tx)
            .await
            .map_err(conflict_as(NAME_TAKEN))?;
        audit_one(&mut tx, changed, audit).await?;
        tx.commit().await.map_err(other)
    }

    async fn delete_schedule(
        &self,
        organization_id: &str,
        id: &str,
        audit: Option<&AuditEntry>,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(other)?;
        delete_audited(&mut tx, "schedules", organization_id, id, audit).await?;
        sqlx::query("DELETE FROM schedule_fires WHERE organization_id = $1 AND schedule_id = $2")
            .bind(organization_id)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(other)?;
        tx.commit().await.map_err(other)
    }

    async fn schedule_fires(
        &self,
        organization_id: &str,
        id: &str,
        limit: u32,
    ) -> Result<Vec<ScheduleFire>> {
        let rows = sqlx::query(&format!(
            "SELECT {SCHEDULE_FIRE_COLUMNS} FROM schedule_fires \
             WHERE schedule_id = $1 AND organization_id = $2 \
             ORDER BY scheduled_for DESC LIMIT $3"
        ))
        .bind(id)
        .bind(organization_id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(other)?;
        rows.iter().map(schedule_fire_from).collect()
    }

    async fn due_schedules(&self, now: Millis, limit: u32) -> Result<Vec<Schedule>> {
        let rows = sqlx::query(&format!(
            "SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE NOT paused \
             AND next_due_at IS NOT NULL AND next_due_at <= $1 ORDER BY next_due_at LIMIT $2"
        ))
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(other)?;
        rows.iter().map(schedule_from).collect()
    }

    async fn next_schedule_due(&self) -> Result<Option<Millis>> {
        sqlx::query_scalar(
            "SELECT next_due_at FROM schedules WHERE NOT paused AND next_due_at IS NOT NULL \
             ORDER BY next_due_at LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(other)
    }

    async fn fire_schedule(&self, firing: &Firing) -> Result<Fired> {
        let mut tx = self.pool.begin().await.map_err(other)?;
        let Some(fired) = fire(&mut tx, firing).await? else {
            return Ok(Fired::Stale);
        };
        if fired.recorded_a_fire() {
            insert_audit(&mut tx, firing.audit.as_ref()).await?;
        }
        tx.commit().await.map_err(other)?;
        Ok(fired)
    }

    async fn count_run_ends(
        &self,
        consumer: &str,
        from: EventCursor,
        through: EventCursor,
        ends: &[RunEnd],
        now: Millis,
    ) -> Result<RunEndsCounted> {
        let mut tx = self.pool.begin().await.map_err(other)?;
        if !any_scheduled(&mut tx, ends).await? {
            // Only the cursor moves (see `save_cursor`).
            unsynced_commit(&mut tx).await?;
        }
        let Some(paused) = count_ends(&mut tx, consumer, from, through, ends, now).await? else {
            return Ok(RunEndsCounted::Stale);
        };
        tx.commit().await.map_err(other)?;
        Ok(RunEndsCounted::Counted(paused))
    }
}
