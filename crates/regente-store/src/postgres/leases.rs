//! The runtime protocol on PostgreSQL: claims, starts, reports, lease ends.

use async_trait::async_trait;
use regente_core::ExecutionStatus;
use std::sync::LazyLock;

use sqlx::{Connection, PgConnection, Postgres, Row, Transaction};

use super::events::insert_events;
use super::{fetch_all, fetch_optional, other, storable, PostgresStore, UNSYNCED};
use crate::rows::{json_column, lease_from, status_of};
use crate::rules::{
    apply_events, event_target_from, live_lease_from, plan_lease_end, started_event_data, Ending,
    EVENT_TARGET_COLUMNS, LIVE_LEASE_COLUMNS,
};
use crate::{
    Claimed, Error, EventKind, EventRecord, EventsOutcome, Lease, LeaseStore, LostOutcome, Millis,
    Result,
};

#[async_trait]
impl LeaseStore for PostgresStore {
    async fn claim_next(&self, runtime_id: &str, lease: &str) -> Result<Option<Claimed>> {
        // Committed without waiting for the WAL flush, as on SQLite: a claim lost
        // to a crash of the database leaves the run PENDENT without a lease, to be
        // handed out again, and its robot cannot have started, since `start`
        // (synced, so flushing the claim too: the WAL is flushed in order) needs
        // the lease. The claim is on the dispatch path: one flush less there.
        let mut conn = self.pool.acquire().await.map_err(other)?;
        claim_on(&mut conn, runtime_id, lease, Flush::NotWaited).await
    }

    async fn start(
        &self,
        runtime_id: &str,
        execution_id: &str,
        lease: &str,
        now: Millis,
    ) -> Result<bool> {
        let mut conn = self.pool.acquire().await.map_err(other)?;
        start_on(&mut conn, runtime_id, execution_id, lease, now).await
    }

    async fn record_events(
        &self,
        runtime_id: &str,
        execution_id: &str,
        lease: &str,
        events: &[EventRecord],
    ) -> Result<EventsOutcome> {
        let mut tx = self.pool.begin().await.map_err(other)?;
        let (outcome, wrote) =
            record_events_on(&mut tx, runtime_id, execution_id, lease, events).await?;
        if wrote {
            tx.commit().await.map_err(other)?;
        }
        Ok(outcome)
    }

    async fn record_events_and_claim(
        &self,
        runtime_id: &str,
        execution_id: &str,
        lease: &str,
        events: &[EventRecord],
        next_lease: &str,
        start_at: Option<Millis>,
    ) -> Result<(EventsOutcome, Option<Claimed>)> {
        let mut tx = self.pool.begin().await.map_err(other)?;
        let (outcome, wrote) =
            record_events_on(&mut tx, runtime_id, execution_id, lease, events).await?;
        if !wrote {
            return Ok((outcome, None));
        }
        let mut claimed = None;
        if outcome.ended_it() {
            // Under a savepoint, so that the end stays stored should the claim
            // or the start fail: the claim is tried again alone (as on SQLite).
            // Flushed with the end: this commit is synced anyway.
            let mut savepoint = tx.begin().await.map_err(other)?;
            let tried = async {
                let mut next =
                    claim_on(&mut savepoint, runtime_id, next_lease, Flush::Waited).await?;
                if let (Some(next), Some(now)) = (next.as_mut(), start_at) {
                    next.started = start_on(
                        &mut savepoint,
                        runtime_id,
                        &next.execution_id,
                        next_lease,
                        now,
                    )
                    .await?;
                }
                Ok::<_, Error>(next)
            }
            .await;
            match tried {
                Ok(next) => {
                    savepoint.commit().await.map_err(other)?;
                    claimed = next;
                }
                Err(e) => {
                    tracing::warn!(runtime = %runtime_id, error = %e, "cannot claim the next run with an end; tried again alone");
                    savepoint.rollback().await.map_err(other)?;
                }
            }
        }
        tx.commit().await.map_err(other)?;
        Ok((outcome, claimed))
    }

    async fn leases_of_runtime(&self, runtime_id: &str) -> Result<Vec<Lease>> {
        fetch_all(
            &self.pool,
            "SELECT id, lease, runtime_id, status, cancel_requested FROM executions \
             WHERE runtime_id = $1 AND status IN ('PENDENT', 'RUNNING') AND lease IS NOT NULL \
             ORDER BY seq",
            &[runtime_id],
            lease_from,
        )
        .await
    }

    async fn lease_status(
        &self,
        execution_id: &str,
        lease: &str,
    ) -> Result<Option<ExecutionStatus>> {
        fetch_optional(
            &self.pool,
            "SELECT status FROM executions WHERE id = $1 AND lease = $2",
            &[execution_id, lease],
            status_of,
        )
        .await
    }

    async fn leases_seen_before(&self, seen_before: Millis) -> Result<Vec<Lease>> {
        fetch_all(
            &self.pool,
            "SELECT e.id, e.lease, e.runtime_id, e.status, e.cancel_requested FROM executions e \
             JOIN runtimes r ON r.id = e.runtime_id \
             WHERE e.status IN ('PENDENT', 'RUNNING') AND e.lease IS NOT NULL \
             AND COALESCE(r.last_seen, 0) < $1 ORDER BY e.seq",
            &[seen_before],
            lease_from,
        )
        .await
    }

    async fn end_lease(
        &self,
        execution_id: &str,
        lease: &str,
        spawned: bool,
        reason: &str,
        now: Millis,
    ) -> Result<LostOutcome> {
        self.end_lease_as(execution_id, lease, Ending::Lost { spawned }, reason, now)
            .await
    }

    async fn refuse_start(
        &self,
        execution_id: &str,
        lease: &str,
        reason: &str,
        now: Millis,
    ) -> Result<LostOutcome> {
        self.end_lease_as(execution_id, lease, Ending::Refused, reason, now)
            .await
    }
}

impl PostgresStore {
    async fn end_lease_as(
        &self,
        execution_id: &str,
        lease: &str,
        ending: Ending,
        reason: &str,
        now: Millis,
    ) -> Result<LostOutcome> {
        let statuses = match ending {
            Ending::Lost { .. } => "'PENDENT', 'RUNNING'",
            Ending::Refused => "'PENDENT'",
        };
        let mut tx = self.pool.begin().await.map_err(other)?;
        // Locked: two servers ending the same lease (or a report racing the end)
        // are ordered, and the second one finds it Stale.
        let row = sqlx::query(&format!(
            "SELECT {LIVE_LEASE_COLUMNS} FROM executions \
             WHERE id = $1 AND lease = $2 AND status IN ({statuses}) FOR UPDATE"
        ))
        .bind(execution_id)
        .bind(lease)
        .fetch_optional(&mut *tx)
        .await
        .map_err(other)?;
        let Some(row) = row else {
            return Ok(LostOutcome::Stale);
        };
        let live = live_lease_from(&row)?;
        let end = plan_lease_end(&live, ending, &storable(reason), now);
        sqlx::query(
            "UPDATE executions SET status = $1, lease = NULL, \"end\" = $2, end_reason = $3, \
             started = CASE WHEN $1 = 'PENDENT' THEN NULL ELSE started END, \
             attempt = $4, progress = $5, last_event_seq = $6 WHERE id = $7",
        )
        .bind(end.status.as_str())
        .bind(end.end)
        .bind(&end.end_reason)
        .bind(end.attempt)
        .bind(end.progress)
        .bind(end.last_event_seq)
        .bind(execution_id)
        .execute(&mut *tx)
        .await
        .map_err(other)?;
        insert_events(&mut tx, &end.events).await?;
        if let Some((level, message)) = &end.log {
            sqlx::query(
                "INSERT INTO execution_logs (execution_id, seq, organization_id, time, level, message) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(execution_id)
            .bind(end.last_event_seq)
            .bind(&live.organization_id)
            .bind(now)
            .bind(level)
            .bind(message)
            .execute(&mut *tx)
            .await
            .map_err(other)?;
        }
        tx.commit().await.map_err(other)?;
        Ok(end.outcome)
    }
}

/// Whether a claim's commit waits for its WAL flush.
#[derive(Clone, Copy)]
enum Flush {
    /// Its own commit, not waited for (`UNSYNCED`).
    NotWaited,
    /// Part of a transaction whose commit is flushed.
    Waited,
}

/// Claims the runtime's next run under `lease`, on `conn` (its own
/// transaction, or one it is part of).
async fn claim_on(
    conn: &mut PgConnection,
    runtime_id: &str,
    lease: &str,
    flush: Flush,
) -> Result<Option<Claimed>> {
    // SKIP LOCKED: a row another server is claiming (or canceling) right now is
    // passed over instead of waited for; once that claim commits, the row no
    // longer matches, so no execution is ever handed out twice.
    //
    // `= ANY(ARRAY[..])` and `ORDER BY runtime_id, seq` leave the partial
    // indexes on (runtime_id, seq) the only paths that give the order:
    // with `runtime_id = $2 ORDER BY seq`, the plan PostgreSQL caches for
    // any runtime could walk the primary key and stop at the first run of
    // this one, reading every run another runtime's deep queue has ahead
    // of it, at each claim (10 ms behind 27,000).
    fn claim(flush: &str) -> String {
        format!(
            "WITH next AS ( \
                 SELECT seq FROM executions \
                 WHERE runtime_id = ANY(ARRAY[$2::TEXT]) AND status = 'PENDENT' \
                   AND lease IS NULL \
                 ORDER BY runtime_id, seq LIMIT 1 FOR UPDATE SKIP LOCKED \
             ), claimed AS ( \
                 UPDATE executions e SET lease = $1, attempt = e.attempt + 1 \
                 FROM next WHERE e.seq = next.seq \
                 RETURNING e.id, e.robot_id, e.robot_version, e.variables, e.last_event_seq, \
                           e.flow_run_id \
             ) \
             SELECT c.id, c.robot_id, c.robot_version, c.variables, c.last_event_seq, \
                    c.flow_run_id, v.sha256, v.manifest \
             FROM claimed c CROSS JOIN {flush} LEFT JOIN robot_versions v \
                 ON v.robot_id = c.robot_id AND v.version = c.robot_version"
        )
    }
    static NOT_WAITED: LazyLock<String> = LazyLock::new(|| claim(UNSYNCED));
    static WAITED: LazyLock<String> = LazyLock::new(|| claim("(SELECT 1) AS synced"));
    let sql = match flush {
        Flush::NotWaited => &*NOT_WAITED,
        Flush::Waited => &*WAITED,
    };
    let row = sqlx::query(sql)
        .bind(lease)
        .bind(runtime_id)
        .fetch_optional(&mut *conn)
        .await
        .map_err(other)?;
    let Some(row) = row else { return Ok(None) };
    let robot_id: String = row.try_get("robot_id").map_err(other)?;
    let robot_version: i64 = row.try_get("robot_version").map_err(other)?;
    let sha256: Option<String> = row.try_get("sha256").map_err(other)?;
    let manifest: Option<String> = row.try_get("manifest").map_err(other)?;
    let (Some(sha256), Some(manifest)) = (sha256, manifest) else {
        return Err(Error::Other(anyhow::anyhow!(
            "version {robot_version} of robot {robot_id} is missing"
        )));
    };
    Ok(Some(Claimed {
        execution_id: row.try_get("id").map_err(other)?,
        lease: lease.to_owned(),
        robot_id,
        robot_version: robot_version as u32,
        sha256,
        manifest,
        variables: json_column(&row, "variables")?.unwrap_or_default(),
        first_seq: row.try_get::<i64, _>("last_event_seq").map_err(other)? as u64 + 1,
        flow_step: row
            .try_get::<Option<String>, _>("flow_run_id")
            .map_err(other)?
            .is_some(),
        started: false,
    }))
}

/// Starts the run under `lease` at `now`, on `conn`; false when the lease or
/// the status no longer allow it.
async fn start_on(
    conn: &mut PgConnection,
    runtime_id: &str,
    execution_id: &str,
    lease: &str,
    now: Millis,
) -> Result<bool> {
    // One statement, one round trip: the UPDATE locks the row and re-checks
    // lease and status on its newest version (a cancel committed first
    // wins), and its event is written only when it changed the row.
    let started: Option<String> = sqlx::query_scalar(
        "WITH started AS ( \
             UPDATE executions SET status = 'RUNNING', started = $1 \
             WHERE id = $2 AND runtime_id = $3 AND lease = $4 AND status = 'PENDENT' \
             RETURNING organization_id \
         ), event AS ( \
             INSERT INTO events (organization_id, kind, subject_id, time, data) \
             SELECT organization_id, $5, $2, $1, $6 FROM started \
         ) \
         SELECT organization_id FROM started",
    )
    .bind(now)
    .bind(execution_id)
    .bind(runtime_id)
    .bind(lease)
    .bind(EventKind::ExecutionStarted.as_str())
    .bind(started_event_data(runtime_id).to_string())
    .fetch_optional(&mut *conn)
    .await
    .map_err(other)?;
    Ok(started.is_some())
}

/// Applies a runtime's events in `tx`, each once and in order; true when it
/// wrote anything (to commit).
async fn record_events_on(
    tx: &mut Transaction<'_, Postgres>,
    runtime_id: &str,
    execution_id: &str,
    lease: &str,
    events: &[EventRecord],
) -> Result<(EventsOutcome, bool)> {
    // Locked, so that two copies of a batch (a resend racing the original)
    // are applied once, and a lease ended meanwhile is seen as ended.
    let row = sqlx::query(&format!(
        "SELECT {EVENT_TARGET_COLUMNS} FROM executions \
         WHERE id = $1 AND runtime_id = $2 AND lease = $3 FOR UPDATE"
    ))
    .bind(execution_id)
    .bind(runtime_id)
    .bind(lease)
    .fetch_optional(&mut **tx)
    .await
    .map_err(other)?;
    let Some(row) = row else {
        return Ok((EventsOutcome::Revoked, false));
    };
    let before = event_target_from(&row)?;
    let organization_id = before.organization_id.clone();
    let acked = before.last_event_seq;
    let Some(applied) = apply_events(before, events) else {
        // Nothing new: acknowledge without writing.
        return Ok((
            EventsOutcome::Stored {
                acked,
                ended: false,
            },
            false,
        ));
    };
    if !applied.lines.is_empty() {
        let (mut log_seqs, mut log_times, mut log_levels, mut log_messages) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (event, level, message) in &applied.lines {
            log_seqs.push(event.seq as i64);
            log_times.push(event.time);
            log_levels.push(storable(level).into_owned());
            log_messages.push(storable(message).into_owned());
        }
        sqlx::query(
            "INSERT INTO execution_logs (execution_id, seq, organization_id, time, level, message) \
             SELECT $1, line.seq, $2, line.time, line.level, line.message \
             FROM UNNEST($3::BIGINT[], $4::BIGINT[], $5::TEXT[], $6::TEXT[]) \
                 AS line(seq, time, level, message)",
        )
        .bind(execution_id)
        .bind(&organization_id)
        .bind(&log_seqs)
        .bind(&log_times)
        .bind(&log_levels)
        .bind(&log_messages)
        .execute(&mut **tx)
        .await
        .map_err(other)?;
    }
    let target = &applied.target;
    let (status, progress, return_value, last) = (
        target.status,
        target.progress,
        &target.return_value,
        target.last_event_seq,
    );
    let ending = applied
        .ending
        .map(|(end, exit_code, reason)| (end, exit_code, storable(reason).into_owned()));
    let ended = ending.is_some();
    match ending {
        Some((end, exit_code, reason)) => sqlx::query(
            "UPDATE executions SET status = $1, progress = $2, return_value = $3, \
             last_event_seq = $4, \"end\" = $5, exit_code = $6, end_reason = $7 WHERE id = $8",
        )
        .bind(status.as_str())
        .bind(progress)
        .bind(return_value)
        .bind(last as i64)
        .bind(end)
        .bind(exit_code)
        .bind(reason)
        .bind(execution_id),
        None => sqlx::query(
            "UPDATE executions SET progress = $1, return_value = $2, last_event_seq = $3 \
             WHERE id = $4",
        )
        .bind(progress)
        .bind(return_value)
        .bind(last as i64)
        .bind(execution_id),
    }
    .execute(&mut **tx)
    .await
    .map_err(other)?;
    insert_events(tx, &applied.events).await?;
    Ok((EventsOutcome::Stored { acked: last, ended }, true))
}
