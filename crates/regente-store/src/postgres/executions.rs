//! The queue on PostgreSQL: enqueue (with idempotency keys), reads, lists, cancels.

use std::sync::LazyLock;

use async_trait::async_trait;
use regente_core::ExecutionStatus;
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Postgres, QueryBuilder, Row};

use super::audit::insert_audit;
use super::events::{bind_events, events_from_arrays, insert_events};
use super::group::{GroupFailed, Grouping};
use super::{conflict_as, fetch_all, fetch_optional, other, PostgresStore};
use crate::rows::{
    execution_conditions, execution_from, log_line_from, status_of, FilterValue, EXECUTION_COLUMNS,
};
use crate::rules::{cancel_events, queued_event, ExecutionRef, CANCELED_BEFORE_START};
use crate::{
    AuditEntry, CancelOutcome, Enqueued, Error, Execution, ExecutionFilter, ExecutionStore,
    IdempotencyKey, LogLine, Millis, NewExecution, Result, LOG_LINES_READ_TOGETHER,
};

/// One execution and the first lines of its log, as four arrays in log order
/// (NULL when the log is empty): one statement for a result read.
static SELECT_EXECUTION_WITH_LOGS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {EXECUTION_COLUMNS}, log.seqs, log.times, log.levels, log.messages \
         FROM executions e LEFT JOIN LATERAL ( \
             SELECT array_agg(l.seq ORDER BY l.seq) AS seqs, array_agg(l.time ORDER BY l.seq) AS times, \
                    array_agg(l.level ORDER BY l.seq) AS levels, \
                    array_agg(l.message ORDER BY l.seq) AS messages \
             FROM (SELECT seq, time, level, message FROM execution_logs \
                   WHERE organization_id = e.organization_id AND execution_id = e.id \
                   ORDER BY seq LIMIT {LOG_LINES_READ_TOGETHER}) l \
         ) log ON TRUE \
         WHERE e.organization_id = $1 AND e.id = $2 AND e.runtime_id = $3"
    )
});

/// A row of [`SELECT_EXECUTION_WITH_LOGS`]: the execution and its first lines.
fn execution_with_first_lines(row: &PgRow) -> Result<(Execution, Vec<LogLine>)> {
    let execution = execution_from(row)?;
    let array = |name: &str| row.try_get::<Option<Vec<_>>, _>(name).map_err(other);
    let texts = |name: &str| row.try_get::<Option<Vec<String>>, _>(name).map_err(other);
    let seqs: Vec<i64> = array("seqs")?.unwrap_or_default();
    let times: Vec<i64> = array("times")?.unwrap_or_default();
    let levels = texts("levels")?.unwrap_or_default();
    let messages = texts("messages")?.unwrap_or_default();
    if [times.len(), levels.len(), messages.len()] != [seqs.len(); 3] {
        return Err(Error::Other(anyhow::anyhow!(
            "the log of execution {} was read as arrays of unequal lengths",
            execution.id
        )));
    }
    let lines = seqs
        .into_iter()
        .zip(times)
        .zip(levels.into_iter().zip(messages))
        .map(|((seq, time), (level, message))| LogLine {
            seq,
            time,
            level,
            message,
        })
        .collect();
    Ok((execution, lines))
}

#[async_trait]
impl ExecutionStore for PostgresStore {
    async fn enqueue(&self, new: &NewExecution, key: Option<&IdempotencyKey>) -> Result<Enqueued> {
        let Some(key) = key else {
            self.new_runs.run(new.clone()).await?;
            return Ok(Enqueued::Created);
        };
        for _ in 0..IDEMPOTENCY_ATTEMPTS {
            let mut tx = self.pool.begin().await.map_err(other)?;
            match take_key(&mut tx, key, &new.id, new.init).await? {
                KeyTaken::Taken => {
                    insert_execution(&mut tx, new).await?;
                    tx.commit().await.map_err(other)?;
                    return Ok(Enqueued::Created);
                }
                KeyTaken::Answered(answer) => return Ok(answer),
                KeyTaken::Vanished => continue,
            }
        }
        Err(key_kept_changing())
    }

    async fn get_execution(&self, organization_id: &str, id: &str) -> Result<Execution> {
        fetch_optional(
            &self.pool,
            &format!(
                "SELECT {EXECUTION_COLUMNS} FROM executions WHERE organization_id = $1 AND id = $2"
            ),
            &[organization_id, id],
            execution_from,
        )
        .await?
        .ok_or(Error::NotFound)
    }

    async fn execution_logs(&self, organization_id: &str, id: &str) -> Result<Vec<LogLine>> {
        fetch_all(
            &self.pool,
            "SELECT seq, time, level, message FROM execution_logs \
             WHERE organization_id = $1 AND execution_id = $2 ORDER BY seq",
            &[organization_id, id],
            log_line_from,
        )
        .await
    }

    async fn execution_with_logs(
        &self,
        organization_id: &str,
        runtime_id: &str,
        id: &str,
    ) -> Result<(Execution, Vec<LogLine>)> {
        let (execution, mut lines) = fetch_optional(
            &self.pool,
            &SELECT_EXECUTION_WITH_LOGS,
            &[organization_id, id, runtime_id],
            execution_with_first_lines,
        )
        .await?
        .ok_or(Error::NotFound)?;
        if lines.len() == LOG_LINES_READ_TOGETHER {
            // The rest, unbounded in effect: no log holds 2^32 lines.
            let after = lines.last().map_or(0, |line| line.seq);
            let rest = self
                .execution_logs_after(organization_id, id, after, u32::MAX)
                .await?;
            lines.extend(rest);
        }
        Ok((execution, lines))
    }

    async fn execution_logs_after(
        &self,
        organization_id: &str,
        id: &str,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<LogLine>> {
        let rows = sqlx::query(
            "SELECT seq, time, level, message FROM execution_logs \
             WHERE organization_id = $1 AND execution_id = $2 AND seq > $3 ORDER BY seq LIMIT $4",
        )
        .bind(organization_id)
        .bind(id)
        .bind(after_seq)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(other)?;
        rows.iter().map(log_line_from).collect()
    }

    async fn list_executions(
        &self,
        organization_id: &str,
        filter: &ExecutionFilter,
    ) -> Result<Vec<Execution>> {
        let mut query: QueryBuilder<Postgres> = list_executions_query(organization_id, filter);
        let rows = query.build().fetch_all(&self.pool).await.map_err(other)?;
        rows.iter().map(execution_from).collect()
    }

    async fn queue_position(&self, execution: &Execution) -> Result<u64> {
        let ahead: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM executions \
             WHERE runtime_id = $1 AND status = 'PENDENT' AND seq < $2",
        )
        .bind(&execution.runtime_id)
        .bind(execution.seq)
        .fetch_one(&self.pool)
        .await
        .map_err(other)?;
        Ok(ahead as u64)
    }

    async fn cancel(
        &self,
        organization_id: &str,
        id: &str,
        canceled_by: &str,
        now: Millis,
        audit: Option<&AuditEntry>,
    ) -> Result<CancelOutcome> {
        let mut tx = self.pool.begin().await.map_err(other)?;
        // Locked: a claim skips it, a start or a report waits for this decision.
        let row = sqlx::query(
            "SELECT status, lease, cancel_requested, flow_run_id FROM executions \
             WHERE organization_id = $1 AND id = $2 FOR UPDATE",
        )
        .bind(organization_id)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(other)?
        .ok_or(Error::NotFound)?;
        let lease: Option<String> = row.try_get("lease").map_err(other)?;
        let cancel_requested: bool = row.try_get("cancel_requested").map_err(other)?;
        let flow_run_id: Option<String> = row.try_get("flow_run_id").map_err(other)?;
        let execution = ExecutionRef {
            organization_id,
            execution_id: id,
            flow_run_id: flow_run_id.as_deref(),
        };
        let outcome = match status_of(&row)? {
            ExecutionStatus::Pendent => {
                sqlx::query(
                    "UPDATE executions SET status = 'CANCELED', \"end\" = $1, canceled_by = $2, \
                     end_reason = $3, lease = NULL WHERE organization_id = $4 AND id = $5",
                )
                .bind(now)
                .bind(canceled_by)
                .bind(CANCELED_BEFORE_START)
                .bind(organization_id)
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(other)?;
                insert_events(&mut tx, &cancel_events(execution, canceled_by, false, now)).await?;
                insert_audit(&mut tx, audit).await?;
                CancelOutcome::Canceled { lease }
            }
            ExecutionStatus::Running => {
                if !cancel_requested {
                    sqlx::query(
                        "UPDATE executions SET cancel_requested = TRUE, canceled_by = $1 \
                         WHERE organization_id = $2 AND id = $3",
                    )
                    .bind(canceled_by)
                    .bind(organization_id)
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(other)?;
                    insert_events(&mut tx, &cancel_events(execution, canceled_by, true, now))
                        .await?;
                    insert_audit(&mut tx, audit).await?;
                }
                CancelOutcome::Running {
                    lease: lease.unwrap_or_default(),
                }
            }
            ended => CancelOutcome::AlreadyEnded(ended),
        };
        tx.commit().await.map_err(other)?;
        Ok(outcome)
    }
}

/// How often an enqueue retries when the idempotency key it found vanished
/// between two statements (replaced by a concurrent request after it expired).
pub(super) const IDEMPOTENCY_ATTEMPTS: usize = 5;

pub(super) fn key_kept_changing() -> Error {
    Error::Other(anyhow::anyhow!(
        "the Idempotency-Key kept changing while queuing the run"
    ))
}

/// What taking an idempotency key found.
pub(super) enum KeyTaken {
    /// The key is this request's now: go on, in the same transaction.
    Taken,
    /// A live key answered: the id it was recorded with, or a refusal.
    Answered(Enqueued),
    /// The key vanished between two statements: try again.
    Vanished,
}

/// Takes the key for `id` (an execution's or a flow run's): inserts it, or
/// replaces it when it has expired. A concurrent request with the same key waits
/// until this transaction ends, then finds the key taken, so one request wins
/// whatever the timing.
pub(super) async fn take_key(
    tx: &mut sqlx::PgConnection,
    key: &IdempotencyKey,
    id: &str,
    created_at: Millis,
) -> Result<KeyTaken> {
    let taken = sqlx::query(
        "INSERT INTO idempotency_keys (user_id, key, fingerprint, execution_id, created_at) \
         VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (user_id, key) DO UPDATE SET fingerprint = EXCLUDED.fingerprint, \
         execution_id = EXCLUDED.execution_id, created_at = EXCLUDED.created_at \
         WHERE idempotency_keys.created_at < $6",
    )
    .bind(&key.user_id)
    .bind(&key.key)
    .bind(&key.fingerprint)
    .bind(id)
    .bind(created_at)
    .bind(key.expired_before)
    .execute(&mut *tx)
    .await
    .map_err(other)?;
    if taken.rows_affected() == 1 {
        return Ok(KeyTaken::Taken);
    }
    // The key is live: ON CONFLICT locked its row, and this statement sees the
    // committed version.
    let earlier = sqlx::query(
        "SELECT fingerprint, execution_id FROM idempotency_keys \
         WHERE user_id = $1 AND key = $2",
    )
    .bind(&key.user_id)
    .bind(&key.key)
    .fetch_optional(&mut *tx)
    .await
    .map_err(other)?;
    let Some(earlier) = earlier else {
        return Ok(KeyTaken::Vanished);
    };
    let fingerprint: String = earlier.try_get("fingerprint").map_err(other)?;
    Ok(KeyTaken::Answered(if fingerprint == key.fingerprint {
        Enqueued::Existing(earlier.try_get("execution_id").map_err(other)?)
    } else {
        Enqueued::KeyReused
    }))
}

/// Run requests without an idempotency key, written in groups: each group's
/// executions and their `execution.queued` events in one statement (one
/// transaction, one round trip); a request alone the same way.
pub(super) struct NewRuns(pub(super) PgPool);

#[async_trait]
impl Grouping for NewRuns {
    type Item = NewExecution;
    type Answer = ();

    async fn together(&self, runs: &[NewExecution]) -> std::result::Result<Vec<()>, GroupFailed> {
        insert_runs(&self.0, runs).await?;
        Ok(vec![(); runs.len()])
    }

    async fn alone(&self, new: &NewExecution) -> Result<()> {
        insert_runs(&self.0, std::slice::from_ref(new))
            .await
            .map_err(conflict_as("an execution with this id"))
    }
}

/// Inserts `runs` in their order (their `seq` follows it) and their
/// `execution.queued` events, in one statement: its own transaction.
async fn insert_runs(pool: &PgPool, runs: &[NewExecution]) -> sqlx::Result<()> {
    static INSERT_RUNS: LazyLock<String> = LazyLock::new(|| {
        format!(
            "WITH queued AS ( \
                 INSERT INTO executions (id, organization_id, runtime_id, robot_id, robot_version, \
                 variables, status, progress, init, submitted_by, max_attempts, flow_run_id, \
                 flow_step_id, schedule_id, scheduled_for) \
                 SELECT r.id, r.organization_id, r.runtime_id, r.robot_id, r.robot_version, \
                 r.variables, $14, 0, r.init, r.submitted_by, r.max_attempts, r.flow_run_id, \
                 r.flow_step_id, r.schedule_id, r.scheduled_for \
                 FROM UNNEST($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::BIGINT[], \
                     $6::TEXT[], $7::BIGINT[], $8::TEXT[], $9::BIGINT[], $10::TEXT[], $11::TEXT[], \
                     $12::TEXT[], $13::BIGINT[]) \
                     WITH ORDINALITY AS r(id, organization_id, runtime_id, robot_id, robot_version, \
                     variables, init, submitted_by, max_attempts, flow_run_id, flow_step_id, \
                     schedule_id, scheduled_for, n) \
                 ORDER BY r.n \
             ) {}",
            events_from_arrays(15)
        )
    });
    let texts = |field: fn(&NewExecution) -> &str| runs.iter().map(field).collect::<Vec<_>>();
    let optional_texts =
        |field: fn(&NewExecution) -> Option<&str>| runs.iter().map(field).collect::<Vec<_>>();
    let numbers = |field: fn(&NewExecution) -> i64| runs.iter().map(field).collect::<Vec<_>>();
    let events: Vec<_> = runs.iter().map(queued_event).collect();
    let query = sqlx::query(&INSERT_RUNS)
        .bind(texts(|run| &run.id))
        .bind(texts(|run| &run.organization_id))
        .bind(texts(|run| &run.runtime_id))
        .bind(texts(|run| &run.robot_id))
        .bind(numbers(|run| i64::from(run.robot_version)))
        .bind(
            runs.iter()
                .map(|run| run.variables.to_string())
                .collect::<Vec<_>>(),
        )
        .bind(numbers(|run| run.init))
        .bind(texts(|run| &run.submitted_by))
        .bind(numbers(|run| i64::from(run.max_attempts)))
        .bind(optional_texts(|run| run.flow_run_id.as_deref()))
        .bind(optional_texts(|run| run.flow_step_id.as_deref()))
        .bind(optional_texts(|run| run.schedule_id.as_deref()))
        .bind(runs.iter().map(|run| run.scheduled_for).collect::<Vec<_>>())
        .bind(ExecutionStatus::Pendent.as_str());
    bind_events(query, &events).execute(pool).await.map(drop)
}

/// Inserts a new execution with its `execution.queued` event.
pub(super) async fn insert_execution(
    conn: &mut sqlx::PgConnection,
    new: &NewExecution,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO executions (id, organization_id, runtime_id, robot_id, robot_version, \
         variables, status, progress, init, submitted_by, max_attempts, flow_run_id, flow_step_id, \
         schedule_id, scheduled_for) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $8, $9, $10, $11, $12, $13, $14)",
    )
    .bind(&new.id)
    .bind(&new.organization_id)
    .bind(&new.runtime_id)
    .bind(&new.robot_id)
    .bind(new.robot_version as i64)
    .bind(new.variables.to_string())
    .bind(ExecutionStatus::Pendent.as_str())
    .bind(new.init)
    .bind(&new.submitted_by)
    .bind(new.max_attempts as i64)
    .bind(&new.flow_run_id)
    .bind(&new.flow_step_id)
    .bind(&new.schedule_id)
    .bind(new.scheduled_for)
    .execute(&mut *conn)
    .await
    .map_err(conflict_as("an execution with this id"))?;
    insert_events(conn, &[queued_event(new)]).await
}

/// `SELECT` of an organisation's executions matching `filter`, newest first.
fn list_executions_query<'a>(
    organization_id: &'a str,
    filter: &'a ExecutionFilter,
) -> QueryBuilder<'a, Postgres> {
    let mut query = QueryBuilder::new(format!("SELECT {EXECUTION_COLUMNS} FROM executions WHERE "));
    for (index, (condition, value)) in execution_conditions(organization_id, filter)
        .into_iter()
        .enumerate()
    {
        if index > 0 {
            query.push(" AND ");
        }
        query.push(condition).push(" ");
        match value {
            FilterValue::Text(text) => query.push_bind(text),
            FilterValue::Int(number) => query.push_bind(number),
        };
    }
    query
        .push(" ORDER BY seq DESC LIMIT ")
        .push_bind(filter.limit as i64);
    query
}
