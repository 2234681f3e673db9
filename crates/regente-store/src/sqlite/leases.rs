//! The runtime protocol on SQLite: claims, starts, reports, lease ends.

use async_trait::async_trait;
use regente_core::ExecutionStatus;
use rusqlite::{params, Connection};

use super::engine::Durability;
use super::events::insert_events;
use super::{all, change, one, other, SqliteStore};
use crate::rows::{lease_from, status_of, RecordRow};
use crate::rules::{
    apply_events, event_target_from, live_lease_from, plan_lease_end, started_event, Ending,
    EVENT_TARGET_COLUMNS, LIVE_LEASE_COLUMNS,
};
use crate::{
    Claimed, Error, EventRecord, EventsOutcome, Lease, LeaseStore, LostOutcome, Millis, Result,
};

const INSERT_LOG: &str = "INSERT INTO execution_logs \
     (execution_id, seq, organization_id, time, level, message) VALUES (?1, ?2, ?3, ?4, ?5, ?6)";

/// The leases of runtimes last seen before `?1`, for the sweeper. The runtimes
/// are walked first (`CROSS JOIN` fixes SQLite's join order) and each one's
/// leases found by the partial index `executions_leased`: left to itself, the
/// planner scanned every execution in `seq` order to spare a sort of the few
/// rows found, a read of the whole table at each sweep.
const LEASES_SEEN_BEFORE: &str =
    "SELECT e.id, e.lease, e.runtime_id, e.status, e.cancel_requested \
     FROM runtimes r CROSS JOIN executions e ON e.runtime_id = r.id \
     WHERE e.status IN ('PENDENT', 'RUNNING') AND e.lease IS NOT NULL \
     AND COALESCE(r.last_seen, 0) < ?1 ORDER BY e.seq";

/// Log lines per multi-row INSERT: 6 values each, well under SQLite's 32,766.
const LOG_LINES_PER_INSERT: usize = 256;

/// Inserts log lines: full chunks by one statement each (a long log's lines come
/// a thousand to a report), the rest one by one (a report's few lines), both
/// with statements prepared once.
fn insert_log_lines(
    conn: &Connection,
    execution_id: &str,
    organization_id: &str,
    lines: &[(&EventRecord, &str, &str)],
) -> Result<()> {
    let mut chunks = lines.chunks_exact(LOG_LINES_PER_INSERT);
    if chunks.len() > 0 {
        let rows = vec!["(?, ?, ?, ?, ?, ?)"; LOG_LINES_PER_INSERT].join(", ");
        let sql = format!(
            "INSERT INTO execution_logs \
             (execution_id, seq, organization_id, time, level, message) VALUES {rows}"
        );
        let mut insert = conn.prepare_cached(&sql).map_err(other)?;
        for chunk in chunks.by_ref() {
            let seqs: Vec<i64> = chunk.iter().map(|(event, ..)| event.seq as i64).collect();
            let mut values: Vec<&dyn rusqlite::ToSql> = Vec::with_capacity(chunk.len() * 6);
            for ((event, level, message), seq) in chunk.iter().zip(&seqs) {
                values.extend([
                    &execution_id as &dyn rusqlite::ToSql,
                    seq,
                    &organization_id,
                    &event.time,
                    level,
                    message,
                ]);
            }
            insert.execute(values.as_slice()).map_err(other)?;
        }
    }
    let mut insert = conn.prepare_cached(INSERT_LOG).map_err(other)?;
    for (event, level, message) in chunks.remainder() {
        insert
            .execute(params![
                execution_id,
                event.seq as i64,
                organization_id,
                event.time,
                level,
                message
            ])
            .map_err(other)?;
    }
    Ok(())
}

fn claim_next(conn: &Connection, runtime_id: &str, lease: &str) -> Result<Option<Claimed>> {
    let claimed = one(
        conn,
        "UPDATE executions SET lease = ?1, attempt = attempt + 1 \
         WHERE seq = (SELECT seq FROM executions \
                      WHERE runtime_id = ?2 AND status = 'PENDENT' AND lease IS NULL \
                      ORDER BY seq LIMIT 1) \
         RETURNING id, robot_id, robot_version, variables, last_event_seq, flow_run_id",
        params![lease, runtime_id],
        |row| {
            Ok((
                row.text("id")?,
                row.text("robot_id")?,
                row.int("robot_version")?,
                row.text("variables")?,
                row.int("last_event_seq")?,
                row.text_opt("flow_run_id")?.is_some(),
            ))
        },
    )?;
    let Some((execution_id, robot_id, robot_version, variables, last_event_seq, flow_step)) =
        claimed
    else {
        return Ok(None);
    };
    let (sha256, manifest) = one(
        conn,
        "SELECT sha256, manifest FROM robot_versions WHERE robot_id = ?1 AND version = ?2",
        params![robot_id, robot_version],
        |row| Ok((row.text("sha256")?, row.text("manifest")?)),
    )?
    .ok_or_else(|| {
        Error::Other(anyhow::anyhow!(
            "execution {execution_id} names version {robot_version} of robot {robot_id}, which is not stored"
        ))
    })?;
    Ok(Some(Claimed {
        execution_id,
        lease: lease.to_owned(),
        robot_id,
        robot_version: robot_version as u32,
        sha256,
        manifest,
        variables: serde_json::from_str(&variables)
            .map_err(|e| Error::Other(anyhow::anyhow!("stored variables are not JSON: {e}")))?,
        first_seq: last_event_seq as u64 + 1,
        flow_step,
        started: false,
    }))
}

/// Starts a run handed out under `lease` and not ended nor started (a cancel
/// committed first wins); whether it did.
fn start(
    conn: &Connection,
    runtime_id: &str,
    execution_id: &str,
    lease: &str,
    now: Millis,
) -> Result<bool> {
    let started = one(
        conn,
        "UPDATE executions SET status = 'RUNNING', started = ?1 \
         WHERE id = ?2 AND runtime_id = ?3 AND lease = ?4 AND status = 'PENDENT' \
         RETURNING organization_id",
        params![now, execution_id, runtime_id, lease],
        |row| row.text("organization_id"),
    )?;
    let Some(organization_id) = started else {
        return Ok(false);
    };
    insert_events(
        conn,
        &[started_event(
            &organization_id,
            execution_id,
            runtime_id,
            now,
        )],
    )?;
    Ok(true)
}

fn record_events(
    conn: &Connection,
    runtime_id: &str,
    execution_id: &str,
    lease: &str,
    events: &[EventRecord],
) -> Result<EventsOutcome> {
    let before = one(
        conn,
        &format!(
            "SELECT {EVENT_TARGET_COLUMNS} FROM executions \
             WHERE id = ?1 AND runtime_id = ?2 AND lease = ?3"
        ),
        params![execution_id, runtime_id, lease],
        |row| event_target_from(row),
    )?;
    let Some(before) = before else {
        return Ok(EventsOutcome::Revoked);
    };
    let acked = before.last_event_seq;
    let Some(applied) = apply_events(before, events) else {
        return Ok(EventsOutcome::Stored {
            acked,
            ended: false,
        });
    };
    let target = &applied.target;
    insert_log_lines(conn, execution_id, &target.organization_id, &applied.lines)?;
    let last = target.last_event_seq as i64;
    match applied.ending {
        Some((end, exit_code, reason)) => change(
            conn,
            "UPDATE executions SET status = ?1, progress = ?2, return_value = ?3, last_event_seq = ?4, \
             \"end\" = ?5, exit_code = ?6, end_reason = ?7 WHERE id = ?8",
            params![
                target.status.as_str(),
                target.progress,
                target.return_value,
                last,
                end,
                exit_code,
                reason,
                execution_id
            ],
        )?,
        None => change(
            conn,
            "UPDATE executions SET progress = ?1, return_value = ?2, last_event_seq = ?3 WHERE id = ?4",
            params![target.progress, target.return_value, last, execution_id],
        )?,
    };
    insert_events(conn, &applied.events)?;
    Ok(EventsOutcome::Stored {
        acked: target.last_event_seq,
        ended: applied.ending.is_some(),
    })
}

fn end_lease(
    conn: &Connection,
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
    let live = one(
        conn,
        &format!(
            "SELECT {LIVE_LEASE_COLUMNS} FROM executions \
             WHERE id = ?1 AND lease = ?2 AND status IN ({statuses})"
        ),
        params![execution_id, lease],
        |row| live_lease_from(row),
    )?;
    let Some(live) = live else {
        return Ok(LostOutcome::Stale);
    };
    let end = plan_lease_end(&live, ending, reason, now);
    change(
        conn,
        "UPDATE executions SET status = ?1, lease = NULL, \"end\" = ?2, end_reason = ?3, \
         started = CASE WHEN ?1 = 'PENDENT' THEN NULL ELSE started END, \
         attempt = ?4, progress = ?5, last_event_seq = ?6 WHERE id = ?7",
        params![
            end.status.as_str(),
            end.end,
            end.end_reason,
            end.attempt,
            end.progress,
            end.last_event_seq,
            execution_id
        ],
    )?;
    insert_events(conn, &end.events)?;
    if let Some((level, message)) = &end.log {
        change(
            conn,
            INSERT_LOG,
            params![
                execution_id,
                end.last_event_seq,
                live.organization_id,
                now,
                level,
                message
            ],
        )?;
    }
    Ok(end.outcome)
}

#[async_trait]
impl LeaseStore for SqliteStore {
    async fn claim_next(&self, runtime_id: &str, lease: &str) -> Result<Option<Claimed>> {
        let (runtime_id, lease) = (runtime_id.to_owned(), lease.to_owned());
        // Not synced on its own: a claim lost to a power loss leaves the run
        // PENDENT without a lease, to be handed out again, and its robot cannot
        // have started, since `start` (synced, so syncing the claim too) needs
        // the lease. The claim is on the dispatch path: one fsync less there.
        self.send_write(
            move |conn| claim_next(conn, &runtime_id, &lease),
            Durability::Written,
        )
        .await
    }

    async fn start(
        &self,
        runtime_id: &str,
        execution_id: &str,
        lease: &str,
        now: Millis,
    ) -> Result<bool> {
        let (runtime_id, execution_id, lease) = (
            runtime_id.to_owned(),
            execution_id.to_owned(),
            lease.to_owned(),
        );
        self.write(move |conn| start(conn, &runtime_id, &execution_id, &lease, now))
            .await
    }

    async fn record_events(
        &self,
        runtime_id: &str,
        execution_id: &str,
        lease: &str,
        events: &[EventRecord],
    ) -> Result<EventsOutcome> {
        let (runtime_id, execution_id, lease) = (
            runtime_id.to_owned(),
            execution_id.to_owned(),
            lease.to_owned(),
        );
        let events = events.to_vec();
        self.write(move |conn| record_events(conn, &runtime_id, &execution_id, &lease, &events))
            .await
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
        let (runtime_id, execution_id, lease, next_lease) = (
            runtime_id.to_owned(),
            execution_id.to_owned(),
            lease.to_owned(),
            next_lease.to_owned(),
        );
        let events = events.to_vec();
        self.write(move |conn| {
            let outcome = record_events(conn, &runtime_id, &execution_id, &lease, &events)?;
            if !outcome.ended_it() {
                return Ok((outcome, None));
            }
            // The end stays stored should the claim fail: it is tried again
            // on its own at the next dispatch.
            let run = |sql: &str| conn.prepare_cached(sql).and_then(|mut s| s.execute([]));
            run("SAVEPOINT claim").map_err(other)?;
            let claimed = claim_next(conn, &runtime_id, &next_lease).and_then(|claimed| {
                match (claimed, start_at) {
                    (Some(mut claimed), Some(now)) => {
                        let id = &claimed.execution_id;
                        claimed.started = start(conn, &runtime_id, id, &next_lease, now)?;
                        Ok(Some(claimed))
                    }
                    (claimed, _) => Ok(claimed),
                }
            });
            if let Err(e) = &claimed {
                tracing::warn!(runtime = %runtime_id, error = %e, "cannot claim the next run with an end; tried again alone");
                run("ROLLBACK TO SAVEPOINT claim").map_err(other)?;
            }
            run("RELEASE SAVEPOINT claim").map_err(other)?;
            Ok((outcome, claimed.ok().flatten()))
        })
        .await
    }

    async fn leases_of_runtime(&self, runtime_id: &str) -> Result<Vec<Lease>> {
        self.readers.with(|conn| {
            all(
                conn,
                "SELECT id, lease, runtime_id, status, cancel_requested FROM executions \
                 WHERE runtime_id = ?1 AND status IN ('PENDENT', 'RUNNING') AND lease IS NOT NULL \
                 ORDER BY seq",
                [runtime_id],
                |row| lease_from(row),
            )
        })
    }

    async fn lease_status(
        &self,
        execution_id: &str,
        lease: &str,
    ) -> Result<Option<ExecutionStatus>> {
        self.readers.with(|conn| {
            one(
                conn,
                "SELECT status FROM executions WHERE id = ?1 AND lease = ?2",
                [execution_id, lease],
                |row| status_of(row),
            )
        })
    }

    async fn leases_seen_before(&self, seen_before: Millis) -> Result<Vec<Lease>> {
        self.read_blocking(move |conn| {
            all(conn, LEASES_SEEN_BEFORE, [seen_before], |row| {
                lease_from(row)
            })
        })
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
        let (execution_id, lease, reason) =
            (execution_id.to_owned(), lease.to_owned(), reason.to_owned());
        let ending = Ending::Lost { spawned };
        self.write(move |conn| end_lease(conn, &execution_id, &lease, ending, &reason, now))
            .await
    }

    async fn refuse_start(
        &self,
        execution_id: &str,
        lease: &str,
        reason: &str,
        now: Millis,
    ) -> Result<LostOutcome> {
        let (execution_id, lease, reason) =
            (execution_id.to_owned(), lease.to_owned(), reason.to_owned());
        self.write(move |conn| {
            end_lease(conn, &execution_id, &lease, Ending::Refused, &reason, now)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sweeper's read stays a walk of the runtimes and an index search
    /// per runtime, whatever the number of executions.
    #[tokio::test]
    async fn the_sweepers_read_does_not_scan_the_executions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plan.db");
        let store = SqliteStore::open(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        let plan = store
            .readers
            .with(|conn| {
                all(
                    conn,
                    &format!("EXPLAIN QUERY PLAN {LEASES_SEEN_BEFORE}"),
                    [0],
                    |row| row.text("detail"),
                )
            })
            .unwrap();
        assert!(
            plan.iter()
                .any(|step| step.contains("USING INDEX executions_leased")),
            "{plan:?}"
        );
        assert!(
            !plan.iter().any(|step| step.starts_with("SCAN e")),
            "{plan:?}"
        );
    }
}
