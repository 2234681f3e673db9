//! Schedules on SQLite. A firing is one write of the single writer, so reading
//! the schedule, its live runs and its recorded fires, then writing, cannot
//! interleave with another firing.

use std::collections::HashMap;
use std::sync::LazyLock;

use async_trait::async_trait;
use rusqlite::types::Value as SqlValue;
use rusqlite::{params, params_from_iter, Connection};

use super::audit::{audit_one, delete_audited, insert_audit};
use super::engine::Durability;
use super::events::{cursor_in, insert_events, save_cursor_in};
use super::executions::insert_execution;
use super::flows::insert_flow_run;
use super::{all, change, conflict_as, one, SqliteStore};
use crate::rows::{
    fire_run_ids, insert_schedule_sql, schedule_definition, schedule_fire_from, schedule_from,
    status_of, update_schedule_sql, Param, RecordRow, SCHEDULE_COLUMNS, SCHEDULE_FIRE_COLUMNS,
};
use crate::rules::{
    count_run_end, firing_range, live_flow_runs_sql, plan_firing, schedule_paused_event,
    scheduled_run_table, FiringState,
};
use crate::{
    AuditEntry, Error, EventCursor, Fired, Firing, Millis, NewScheduledRun, PausedSchedule, Result,
    RunEnd, RunEndsCounted, Schedule, ScheduleFire, ScheduleStore,
};

static LIVE_FLOW_RUNS: LazyLock<String> = LazyLock::new(|| live_flow_runs_sql(|n| format!("?{n}")));

const NAME_TAKEN: &str = "a schedule with this name";

fn firing_state(conn: &Connection, firing: &Firing) -> Result<Option<FiringState>> {
    let schedule = one(
        conn,
        "SELECT overlap, paused, next_fire_at FROM schedules \
         WHERE organization_id = ?1 AND id = ?2",
        params![firing.organization_id, firing.schedule_id],
        |row| {
            Ok((
                row.text("overlap")?,
                row.flag("paused")?,
                row.int_opt("next_fire_at")?,
            ))
        },
    )?;
    let Some((overlap, paused, next_fire_at)) = schedule else {
        return Ok(None);
    };
    let overlap = regente_core::schedule::plan::Overlap::parse(&overlap)
        .map_err(|e| Error::Other(anyhow::anyhow!("stored overlap: {e}")))?;
    let (mut pendent, mut running) = (0, 0);
    let live = all(
        conn,
        "SELECT status, COUNT(*) AS n FROM executions \
         WHERE organization_id = ?1 AND schedule_id = ?2 AND status IN ('PENDENT', 'RUNNING') \
         AND schedule_id IS NOT NULL GROUP BY status",
        params![firing.organization_id, firing.schedule_id],
        |row| Ok((status_of(row)?, row.int("n")? as u64)),
    )?;
    for (status, count) in live {
        match status {
            regente_core::ExecutionStatus::Pendent => pendent = count,
            _ => running = count,
        }
    }
    let (live, waiting) = one(
        conn,
        &LIVE_FLOW_RUNS,
        params![firing.organization_id, firing.schedule_id],
        |row| Ok((row.int("live")? as u64, row.int("waiting")? as u64)),
    )?
    .unwrap_or_default();
    pendent += waiting;
    running += live - waiting;
    let mut recorded = HashMap::new();
    if let Some((low, high)) = firing_range(firing) {
        for (at, outcome) in all(
            conn,
            "SELECT scheduled_for, outcome FROM schedule_fires \
             WHERE schedule_id = ?1 AND scheduled_for BETWEEN ?2 AND ?3",
            params![firing.schedule_id, low, high],
            |row| Ok((row.int("scheduled_for")?, row.text("outcome")?)),
        )? {
            recorded.insert(at, outcome);
        }
    }
    Ok(Some(FiringState {
        overlap,
        paused,
        next_fire_at,
        pendent,
        running,
        recorded,
    }))
}

fn fire(conn: &Connection, firing: &Firing) -> Result<Fired> {
    let state = firing_state(conn, firing)?;
    let Some(decided) = plan_firing(firing, state) else {
        return Ok(Fired::Stale);
    };
    for write in &decided.writes {
        let (execution_id, flow_run_id) = fire_run_ids(&write.outcome);
        change(
            conn,
            "INSERT INTO schedule_fires (schedule_id, scheduled_for, organization_id, origin, \
             outcome, execution_id, flow_run_id, reason, recorded_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) \
             ON CONFLICT (schedule_id, scheduled_for) DO UPDATE SET origin = excluded.origin, \
             outcome = excluded.outcome, execution_id = excluded.execution_id, \
             flow_run_id = excluded.flow_run_id, reason = excluded.reason, \
             recorded_at = excluded.recorded_at",
            params![
                firing.schedule_id,
                write.scheduled_for,
                firing.organization_id,
                firing.origin.as_str(),
                write.outcome.as_str(),
                execution_id,
                flow_run_id,
                write.reason,
                firing.now
            ],
        )?;
        match write.start {
            Some(NewScheduledRun::Execution(new)) => {
                insert_execution(conn, new, &new.variables.to_string())?
            }
            Some(NewScheduledRun::Flow(new)) => insert_flow_run(conn, new)?,
            None => {}
        }
        insert_events(conn, &write.events)?;
    }
    let advance = firing.advance.as_ref();
    change(
        conn,
        "UPDATE schedules SET fired = fired + ?1, skipped = skipped + ?2, missed = missed + ?3, \
         next_fire_at = CASE WHEN ?4 THEN ?5 ELSE next_fire_at END, \
         next_due_at = CASE WHEN ?4 THEN ?6 ELSE next_due_at END \
         WHERE organization_id = ?7 AND id = ?8",
        params![
            decided.fired,
            decided.skipped,
            decided.missed,
            advance.is_some(),
            advance.and_then(|a| a.next_fire_at),
            advance.and_then(|a| a.next_due_at),
            firing.organization_id,
            firing.schedule_id
        ],
    )?;
    Ok(decided.answer)
}

/// Whether any of `ends` is of a run a schedule queued.
fn any_scheduled(conn: &Connection, ends: &[RunEnd]) -> Result<bool> {
    for end in ends {
        let (table, run_id) = scheduled_run_table(&end.run);
        let scheduled = one(
            conn,
            &format!(
                "SELECT 1 AS scheduled FROM {table} \
                 WHERE organization_id = ?1 AND id = ?2 AND schedule_id IS NOT NULL"
            ),
            params![end.organization_id, run_id],
            |row| row.int("scheduled"),
        )?;
        if scheduled.is_some() {
            return Ok(true);
        }
    }
    Ok(false)
}

fn count_ends(
    conn: &Connection,
    consumer: &str,
    from: EventCursor,
    through: EventCursor,
    ends: &[RunEnd],
    now: Millis,
) -> Result<RunEndsCounted> {
    let saved = cursor_in(conn, consumer)?;
    if saved != from {
        return Ok(RunEndsCounted::Stale);
    }
    let mut paused = Vec::new();
    for end in ends {
        let (table, run_id) = scheduled_run_table(&end.run);
        let schedule = one(
            conn,
            &format!(
                "SELECT s.id, s.consecutive_failures, s.pause_after_failures, s.paused \
                 FROM {table} r JOIN schedules s \
                 ON s.id = r.schedule_id AND s.organization_id = r.organization_id \
                 WHERE r.organization_id = ?1 AND r.id = ?2"
            ),
            params![end.organization_id, run_id],
            |row| {
                Ok((
                    row.text("id")?,
                    row.int("consecutive_failures")? as u32,
                    row.int_opt("pause_after_failures")?.map(|n| n as u32),
                    row.flag("paused")?,
                ))
            },
        )?;
        let Some((schedule_id, consecutive, pause_after, is_paused)) = schedule else {
            continue;
        };
        let Some((consecutive, note)) =
            count_run_end(end.status, consecutive, pause_after, is_paused, &end.run)
        else {
            continue;
        };
        change(
            conn,
            "UPDATE schedules SET consecutive_failures = ?1, \
             paused = CASE WHEN ?2 IS NULL THEN paused ELSE 1 END, \
             pause_note = COALESCE(?2, pause_note) WHERE organization_id = ?3 AND id = ?4",
            params![consecutive, note, end.organization_id, schedule_id],
        )?;
        if let Some(note) = note {
            let pause = PausedSchedule {
                organization_id: end.organization_id.clone(),
                schedule_id,
                note,
            };
            insert_events(conn, &[schedule_paused_event(&pause, &end.run, now)])?;
            paused.push(pause);
        }
    }
    save_cursor_in(conn, consumer, through, now)?;
    Ok(RunEndsCounted::Counted(paused))
}

static INSERT_SCHEDULE: LazyLock<String> =
    LazyLock::new(|| insert_schedule_sql(|n| format!("?{n}")));
static UPDATE_SCHEDULE: LazyLock<String> =
    LazyLock::new(|| update_schedule_sql(|n| format!("?{n}")));

fn sql_value(param: Param) -> SqlValue {
    match param {
        Param::Text(Some(text)) => SqlValue::Text(text.to_owned()),
        Param::Int(Some(number)) => SqlValue::Integer(number),
        Param::Flag(flag) => SqlValue::Integer(flag.into()),
        Param::Text(None) | Param::Int(None) => SqlValue::Null,
    }
}

/// The values of a schedule's definition, after `first` and before `last`.
fn with_definition(s: &Schedule, first: Vec<SqlValue>, last: Vec<SqlValue>) -> Vec<SqlValue> {
    let (variables, rule) = (s.variables.to_string(), s.rule.to_string());
    first
        .into_iter()
        .chain(schedule_definition(s, &variables, &rule).map(sql_value))
        .chain(last)
        .collect()
}

#[async_trait]
impl ScheduleStore for SqliteStore {
    async fn create_schedule(&self, schedule: &Schedule, audit: Option<&AuditEntry>) -> Result<()> {
        let audit = audit.cloned();
        let values = with_definition(
            schedule,
            vec![
                SqlValue::Text(schedule.id.clone()),
                SqlValue::Text(schedule.organization_id.clone()),
                SqlValue::Integer(schedule.created_at),
            ],
            Vec::new(),
        );
        self.write(move |conn| {
            conn.prepare_cached(&INSERT_SCHEDULE)
                .and_then(|mut statement| statement.execute(params_from_iter(values)))
                .map_err(conflict_as(NAME_TAKEN))?;
            insert_audit(conn, audit.as_ref())
        })
        .await
    }

    async fn get_schedule(&self, organization_id: &str, id: &str) -> Result<Schedule> {
        self.readers
            .with(|conn| {
                one(
                    conn,
                    &format!(
                        "SELECT {SCHEDULE_COLUMNS} FROM schedules \
                         WHERE organization_id = ?1 AND id = ?2"
                    ),
                    [organization_id, id],
                    |row| schedule_from(row),
                )
            })?
            .ok_or(Error::NotFound)
    }

    async fn list_schedules(&self, organization_id: &str) -> Result<Vec<Schedule>> {
        let organization_id = organization_id.to_owned();
        self.read_blocking(move |conn| {
            all(
                conn,
                &format!(
                    "SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE organization_id = ?1 \
                     ORDER BY created_at, id"
                ),
                [organization_id],
                |row| schedule_from(row),
            )
        })
        .await
    }

    async fn update_schedule(
        &self,
        schedule: &Schedule,
        reset_failures: bool,
        audit: Option<&AuditEntry>,
    ) -> Result<()> {
        let audit = audit.cloned();
        let values = with_definition(
            schedule,
            Vec::new(),
            vec![
                SqlValue::Integer(reset_failures.into()),
                SqlValue::Text(schedule.organization_id.clone()),
                SqlValue::Text(schedule.id.clone()),
            ],
        );
        self.write(move |conn| {
            let changed = conn
                .prepare_cached(&UPDATE_SCHEDULE)
                .and_then(|mut statement| statement.execute(params_from_iter(values)))
                .map_err(conflict_as(NAME_TAKEN))?;
            audit_one(conn, changed, audit.as_ref())
        })
        .await
    }

    async fn delete_schedule(
        &self,
        organization_id: &str,
        id: &str,
        audit: Option<&AuditEntry>,
    ) -> Result<()> {
        let (organization_id, id, audit) =
            (organization_id.to_owned(), id.to_owned(), audit.cloned());
        self.write(move |conn| {
            delete_audited(conn, "schedules", &organization_id, &id, audit.as_ref())?;
            change(
                conn,
                "DELETE FROM schedule_fires WHERE organization_id = ?1 AND schedule_id = ?2",
                params![organization_id, id],
            )
            .map(drop)
        })
        .await
    }

    async fn schedule_fires(
        &self,
        organization_id: &str,
        id: &str,
        limit: u32,
    ) -> Result<Vec<ScheduleFire>> {
        let (organization_id, id) = (organization_id.to_owned(), id.to_owned());
        self.read_blocking(move |conn| {
            all(
                conn,
                &format!(
                    "SELECT {SCHEDULE_FIRE_COLUMNS} FROM schedule_fires \
                     WHERE schedule_id = ?1 AND organization_id = ?2 \
                     ORDER BY scheduled_for DESC LIMIT ?3"
                ),
                params![id, organization_id, limit],
                |row| schedule_fire_from(row),
            )
        })
        .await
    }

    async fn due_schedules(&self, now: Millis, limit: u32) -> Result<Vec<Schedule>> {
        // On the caller's task: a few rows at the moment a fire is due, where a
        // thread hop would add to every fire's lag.
        self.readers.with(|conn| {
            all(
                conn,
                &format!(
                    "SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE paused = 0 \
                     AND next_due_at IS NOT NULL AND next_due_at <= ?1 \
                     ORDER BY next_due_at LIMIT ?2"
                ),
                params![now, limit],
                |row| schedule_from(row),
            )
        })
    }

    async fn next_schedule_due(&self) -> Result<Option<Millis>> {
        let next = self.readers.with(|conn| {
            one(
                conn,
                "SELECT next_due_at FROM schedules WHERE paused = 0 AND next_due_at IS NOT NULL \
                 ORDER BY next_due_at LIMIT 1",
                [],
                |row| row.int("next_due_at"),
            )
        })?;
        Ok(next)
    }

    async fn fire_schedule(&self, firing: &Firing) -> Result<Fired> {
        let firing = firing.clone();
        self.write(move |conn| {
            let fired = fire(conn, &firing)?;
            if fired.recorded_a_fire() {
                insert_audit(conn, firing.audit.as_ref())?;
            }
            Ok(fired)
        })
        .await
    }

    async fn count_run_ends(
        &self,
        consumer: &str,
        from: EventCursor,
        through: EventCursor,
        ends: &[RunEnd],
        now: Millis,
    ) -> Result<RunEndsCounted> {
        // Most ends are of runs no schedule queued: counting them changes only
        // the cursor, which need not be synced (see `save_cursor`). A run's
        // schedule never changes, so this look ahead cannot go stale.
        let durability = if self.readers.with(|conn| any_scheduled(conn, ends))? {
            Durability::Synced
        } else {
            Durability::Written
        };
        let (consumer, ends) = (consumer.to_owned(), ends.to_vec());
        self.send_write(
            move |conn| count_ends(conn, &consumer, from, through, &ends, now),
            durability,
        )
        .await
    }
}
