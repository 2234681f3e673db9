//! The queue on SQLite: enqueue (with idempotency keys), reads, lists, cancels.

use std::sync::LazyLock;

use async_trait::async_trait;
use regente_core::ExecutionStatus;
use rusqlite::types::Value as SqlValue;
use rusqlite::{params, Connection};

use super::audit::insert_audit;
use super::events::insert_events;
use super::{all, change, insert, one, other, SqliteStore};
use crate::rows::{
    execution_conditions, execution_from, log_line_from, status_of, FilterValue, RecordRow,
    EXECUTION_COLUMNS,
};
use crate::rules::{cancel_events, queued_event, ExecutionRef, CANCELED_BEFORE_START};
use crate::{
    AuditEntry, CancelOutcome, Enqueued, Error, Execution, ExecutionFilter, ExecutionStore,
    IdempotencyKey, LogLine, Millis, NewExecution, Result, LOG_LINES_READ_TOGETHER,
};

const SELECT_LOGS: &str = "SELECT seq, time, level, message FROM execution_logs \
     WHERE organization_id = ?1 AND execution_id = ?2 AND seq > ?3 ORDER BY seq LIMIT ?4";

/// One execution by its organisation and id (text built once: this is the
/// result read's query).
static SELECT_EXECUTION: LazyLock<String> = LazyLock::new(|| {
    format!("SELECT {EXECUTION_COLUMNS} FROM executions WHERE organization_id = ?1 AND id = ?2")
});

fn select_logs(
    conn: &Connection,
    organization_id: &str,
    id: &str,
    after_seq: i64,
    limit: i64,
) -> Result<Vec<LogLine>> {
    all(
        conn,
        SELECT_LOGS,
        params![organization_id, id, after_seq, limit],
        |row| log_line_from(row),
    )
}

/// A run with its variables already as JSON text, ready for the writer.
pub(super) struct RunToInsert {
    pub(super) new: NewExecution,
    pub(super) variables: String,
    pub(super) key: Option<IdempotencyKey>,
}

pub(super) fn enqueue_one(conn: &Connection, run: &RunToInsert) -> Result<Enqueued> {
    if let Some(key) = &run.key {
        if let Some(answer) = earlier_answer(conn, key)? {
            return Ok(answer);
        }
    }
    insert_execution(conn, &run.new, &run.variables)?;
    if let Some(key) = &run.key {
        record_key(conn, key, &run.new.id, run.new.init)?;
    }
    Ok(Enqueued::Created)
}

/// What a live idempotency key answers (the id it was recorded with, or a
/// refusal for another request); `None` when the key is free (an expired one is
/// deleted).
pub(super) fn earlier_answer(conn: &Connection, key: &IdempotencyKey) -> Result<Option<Enqueued>> {
    let earlier = one(
        conn,
        "SELECT fingerprint, execution_id, created_at FROM idempotency_keys \
         WHERE user_id = ?1 AND key = ?2",
        params![key.user_id, key.key],
        |row| {
            Ok((
                row.text("fingerprint")?,
                row.text("execution_id")?,
                row.int("created_at")?,
            ))
        },
    )?;
    let Some((fingerprint, execution_id, created_at)) = earlier else {
        return Ok(None);
    };
    if created_at >= key.expired_before {
        return Ok(Some(if fingerprint == key.fingerprint {
            Enqueued::Existing(execution_id)
        } else {
            Enqueued::KeyReused
        }));
    }
    change(
        conn,
        "DELETE FROM idempotency_keys WHERE user_id = ?1 AND key = ?2",
        params![key.user_id, key.key],
    )?;
    Ok(None)
}

/// Records that `key` answers `id` (an execution's, or a flow run's).
pub(super) fn record_key(
    conn: &Connection,
    key: &IdempotencyKey,
    id: &str,
    created_at: Millis,
) -> Result<()> {
    change(
        conn,
        "INSERT INTO idempotency_keys (user_id, key, fingerprint, execution_id, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![key.user_id, key.key, key.fingerprint, id, created_at],
    )
    .map(drop)
}

/// Inserts a new execution with its `execution.queued` event.
pub(super) fn insert_execution(
    conn: &Connection,
    new: &NewExecution,
    variables: &str,
) -> Result<()> {
    insert(
        conn,
        "INSERT INTO executions (id, organization_id, runtime_id, robot_id, robot_version, \
         variables, status, progress, init, submitted_by, max_attempts, flow_run_id, flow_step_id, \
         schedule_id, scheduled_for) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'PENDENT', 0, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        params![
            new.id,
            new.organization_id,
            new.runtime_id,
            new.robot_id,
            new.robot_version,
            variables,
            new.init,
            new.submitted_by,
            new.max_attempts,
            new.flow_run_id,
            new.flow_step_id,
            new.schedule_id,
            new.scheduled_for
        ],
        "an execution with this id",
    )?;
    insert_events(conn, &[queued_event(new)])
}

fn cancel(
    conn: &Connection,
    organization_id: &str,
    id: &str,
    canceled_by: &str,
    now: Millis,
    audit: Option<&AuditEntry>,
) -> Result<CancelOutcome> {
    let (status, lease, cancel_requested, flow_run_id) = one(
        conn,
        "SELECT status, lease, cancel_requested, flow_run_id FROM executions \
         WHERE organization_id = ?1 AND id = ?2",
        params![organization_id, id],
        |row| {
            Ok((
                status_of(row)?,
                row.text_opt("lease")?,
                row.flag("cancel_requested")?,
                row.text_opt("flow_run_id")?,
            ))
        },
    )?
    .ok_or(Error::NotFound)?;
    let execution = ExecutionRef {
        organization_id,
        execution_id: id,
        flow_run_id: flow_run_id.as_deref(),
    };
    Ok(match status {
        ExecutionStatus::Pendent => {
            change(
                conn,
                "UPDATE executions SET status = 'CANCELED', \"end\" = ?1, canceled_by = ?2, \
                 end_reason = ?3, lease = NULL WHERE organization_id = ?4 AND id = ?5",
                params![now, canceled_by, CANCELED_BEFORE_START, organization_id, id],
            )?;
            insert_events(conn, &cancel_events(execution, canceled_by, false, now))?;
            insert_audit(conn, audit)?;
            CancelOutcome::Canceled { lease }
        }
        ExecutionStatus::Running => {
            if !cancel_requested {
                change(
                    conn,
                    "UPDATE executions SET cancel_requested = 1, canceled_by = ?1 \
                     WHERE organization_id = ?2 AND id = ?3",
                    params![canceled_by, organization_id, id],
                )?;
                insert_events(conn, &cancel_events(execution, canceled_by, true, now))?;
                insert_audit(conn, audit)?;
            }
            CancelOutcome::Running {
                lease: lease.unwrap_or_default(),
            }
        }
        ended => CancelOutcome::AlreadyEnded(ended),
    })
}

fn list_executions(
    conn: &Connection,
    organization_id: &str,
    filter: &ExecutionFilter,
) -> Result<Vec<Execution>> {
    let (sql, values) = list_query(organization_id, filter);
    all(conn, &sql, rusqlite::params_from_iter(values), |row| {
        execution_from(row)
    })
}

/// The statement listing executions, and its values.
///
/// Executions of a live status (pending, running) are few beside the history:
/// they are found through the status index, not by walking a robot's or a
/// runtime's whole history for them (SQLite keeps no statistics to tell, and
/// picks the robot's or runtime's index). A `+` before a column keeps SQLite
/// from using an index on it.
fn list_query(organization_id: &str, filter: &ExecutionFilter) -> (String, Vec<SqlValue>) {
    let live = filter.status.is_some_and(|status| !status.is_ended());
    let mut sql = format!("SELECT {EXECUTION_COLUMNS} FROM executions WHERE ");
    let mut values = Vec::new();
    for (index, (condition, value)) in execution_conditions(organization_id, filter)
        .into_iter()
        .enumerate()
    {
        if index > 0 {
            sql.push_str(" AND ");
        }
        if live && matches!(condition, "robot_id =" | "runtime_id =") {
            sql.push('+');
        }
        sql.push_str(condition);
        sql.push_str(" ?");
        values.push(match value {
            FilterValue::Text(text) => SqlValue::Text(text.to_owned()),
            FilterValue::Int(number) => SqlValue::Integer(number),
        });
    }
    sql.push_str(" ORDER BY seq DESC LIMIT ?");
    values.push(SqlValue::Integer(filter.limit as i64));
    (sql, values)
}

impl SqliteStore {
    /// `lines`, the first of a log read on the caller's thread, completed by
    /// the rest when they filled the read: a long log, which may be millions
    /// of lines, is read on, off this thread.
    async fn rest_of_long_log(
        &self,
        organization_id: &str,
        id: &str,
        mut lines: Vec<LogLine>,
    ) -> Result<Vec<LogLine>> {
        if lines.len() == LOG_LINES_READ_TOGETHER {
            let after = lines.last().map_or(0, |line| line.seq);
            let (organization_id, id) = (organization_id.to_owned(), id.to_owned());
            let rest = self
                .read_blocking(move |conn| select_logs(conn, &organization_id, &id, after, -1))
                .await?;
            lines.extend(rest);
        }
        Ok(lines)
    }
}

#[async_trait]
impl ExecutionStore for SqliteStore {
    async fn enqueue(&self, new: &NewExecution, key: Option<&IdempotencyKey>) -> Result<Enqueued> {
        let run = RunToInsert {
            new: new.clone(),
            variables: new.variables.to_string(),
            key: key.cloned(),
        };
        self.write_repeatable(move |conn| enqueue_one(conn, &run))
            .await
    }

    async fn get_execution(&self, organization_id: &str, id: &str) -> Result<Execution> {
        self.readers
            .with(|conn| {
                one(conn, &SELECT_EXECUTION, [organization_id, id], |row| {
                    execution_from(row)
                })
            })?
            .ok_or(Error::NotFound)
    }

    async fn execution_logs(&self, organization_id: &str, id: &str) -> Result<Vec<LogLine>> {
        let lines = self.readers.with(|conn| {
            select_logs(conn, organization_id, id, 0, LOG_LINES_READ_TOGETHER as i64)
        })?;
        self.rest_of_long_log(organization_id, id, lines).await
    }

    async fn execution_with_logs(
        &self,
        organization_id: &str,
        runtime_id: &str,
        id: &str,
    ) -> Result<(Execution, Vec<LogLine>)> {
        let (execution, lines) = self
            .readers
            .with(|conn| {
                let execution = one(conn, &SELECT_EXECUTION, [organization_id, id], |row| {
                    execution_from(row)
                })?;
                let Some(execution) = execution.filter(|e| e.runtime_id == runtime_id) else {
                    return Ok(None);
                };
                let lines =
                    select_logs(conn, organization_id, id, 0, LOG_LINES_READ_TOGETHER as i64)?;
                Ok(Some((execution, lines)))
            })?
            .ok_or(Error::NotFound)?;
        let lines = self.rest_of_long_log(organization_id, id, lines).await?;
        Ok((execution, lines))
    }

    async fn execution_logs_after(
        &self,
        organization_id: &str,
        id: &str,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<LogLine>> {
        // A page is bounded: read on the caller's task, as a point read.
        self.readers
            .with(|conn| select_logs(conn, organization_id, id, after_seq, i64::from(limit)))
    }

    async fn list_executions(
        &self,
        organization_id: &str,
        filter: &ExecutionFilter,
    ) -> Result<Vec<Execution>> {
        let (organization_id, filter) = (organization_id.to_owned(), filter.clone());
        self.read_blocking(move |conn| list_executions(conn, &organization_id, &filter))
            .await
    }

    async fn queue_position(&self, execution: &Execution) -> Result<u64> {
        let (runtime_id, seq) = (execution.runtime_id.clone(), execution.seq);
        self.read_blocking(move |conn| {
            conn.prepare_cached(
                "SELECT COUNT(*) FROM executions \
                 WHERE runtime_id = ?1 AND status = 'PENDENT' AND seq < ?2",
            )
            .and_then(|mut statement| {
                statement.query_row(params![runtime_id, seq], |row| row.get::<_, i64>(0))
            })
            .map(|ahead| ahead as u64)
            .map_err(other)
        })
        .await
    }

    async fn cancel(
        &self,
        organization_id: &str,
        id: &str,
        canceled_by: &str,
        now: Millis,
        audit: Option<&AuditEntry>,
    ) -> Result<CancelOutcome> {
        let (organization_id, id, canceled_by, audit) = (
            organization_id.to_owned(),
            id.to_owned(),
            canceled_by.to_owned(),
            audit.cloned(),
        );
        self.write(move |conn| {
            cancel(
                conn,
                &organization_id,
                &id,
                &canceled_by,
                now,
                audit.as_ref(),
            )
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ClusterStore;

    /// The index SQLite picks for the listing under `filter`.
    fn index_for(conn: &Connection, filter: &ExecutionFilter) -> String {
        let (sql, values) = list_query("o", filter);
        let mut plan = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let details: Vec<String> = plan
            .query_map(rusqlite::params_from_iter(values), |row| row.get(3))
            .unwrap()
            .map(|detail| detail.unwrap())
            .collect();
        details.join("; ")
    }

    #[tokio::test]
    async fn live_executions_of_a_robot_or_runtime_are_listed_through_the_status_index() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plans.db");
        let store = SqliteStore::open(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        store.close().await;
        let conn = Connection::open(&path).unwrap();
        let of = |status: ExecutionStatus, robot: bool, runtime: bool| ExecutionFilter {
            status: Some(status),
            robot_id: robot.then(|| "r".to_owned()),
            runtime_id: runtime.then(|| "t".to_owned()),
            limit: 1,
            ..ExecutionFilter::default()
        };
        for status in [ExecutionStatus::Pendent, ExecutionStatus::Running] {
            for (robot, runtime) in [(true, false), (false, true), (true, true)] {
                let index = index_for(&conn, &of(status, robot, runtime));
                assert!(
                    index.contains("executions_by_status"),
                    "{status:?}, robot {robot}, runtime {runtime}: {index}"
                );
            }
        }
        // Ended ones are the history: the robot's own index walks only its own.
        let index = index_for(&conn, &of(ExecutionStatus::Finished, true, false));
        assert!(index.contains("executions_by_robot"), "{index}");
    }
}
