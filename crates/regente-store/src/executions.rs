//! Executions: runs queued for a runtime, their logs, and their cancellation.

use async_trait::async_trait;
use regente_core::ExecutionStatus;
use serde_json::Value;

use crate::{AuditEntry, Millis, Result};

#[derive(Debug, Clone, PartialEq)]
pub struct Execution {
    pub id: String,
    pub organization_id: String,
    pub runtime_id: String,
    pub robot_id: String,
    pub robot_version: u32,
    /// `{"NAME": typed value}`.
    pub variables: Value,
    pub status: ExecutionStatus,
    pub progress: f64,
    /// Submission time; never changes.
    pub init: Millis,
    pub started: Option<Millis>,
    pub end: Option<Millis>,
    pub return_value: Option<Value>,
    /// Why it ended, in words, when it has.
    pub end_reason: Option<String>,
    pub exit_code: Option<i32>,
    pub submitted_by: Option<String>,
    pub canceled_by: Option<String>,
    /// The schedule that queued it, and the fire it is for.
    pub schedule_id: Option<String>,
    pub scheduled_for: Option<Millis>,
    /// Queue order; larger is newer.
    pub seq: i64,
    /// The flow run and step this execution runs, if it is a flow's step.
    pub flow_run_id: Option<String>,
    pub flow_step_id: Option<String>,
}

#[derive(Debug, Clone)]
pub struct NewExecution {
    pub id: String,
    pub organization_id: String,
    pub runtime_id: String,
    pub robot_id: String,
    pub robot_version: u32,
    pub variables: Value,
    pub init: Millis,
    pub submitted_by: String,
    /// 1 + the robot's `retries`.
    pub max_attempts: u32,
    /// The flow run and step it runs, if any.
    pub flow_run_id: Option<String>,
    pub flow_step_id: Option<String>,
    /// For a run queued by a schedule: the schedule, and the fire it is for.
    pub schedule_id: Option<String>,
    pub scheduled_for: Option<Millis>,
}

/// An `Idempotency-Key` to honour while enqueuing.
#[derive(Debug, Clone)]
pub struct IdempotencyKey {
    pub user_id: String,
    pub key: String,
    /// Identifies the request (runtime, robot, variables), so that a key reused
    /// for another request is refused instead of silently answering a wrong id.
    pub fingerprint: String,
    /// Keys recorded before this time have expired and are replaced.
    pub expired_before: Millis,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enqueued {
    Created,
    /// The idempotency key had already queued this execution.
    Existing(String),
    /// The idempotency key was used for a different request.
    KeyReused,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    pub seq: i64,
    pub time: Millis,
    pub level: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelOutcome {
    /// It was PENDENT and is now CANCELED; `lease` is the hand-out to revoke, if
    /// it had been handed to its runtime already.
    Canceled {
        lease: Option<String>,
    },
    /// It is RUNNING: marked for cancellation; the runtime must stop it.
    Running {
        lease: String,
    },
    AlreadyEnded(ExecutionStatus),
}

#[derive(Debug, Clone, Default)]
pub struct ExecutionFilter {
    pub status: Option<ExecutionStatus>,
    pub robot_id: Option<String>,
    pub runtime_id: Option<String>,
    /// Queued by this schedule.
    pub schedule_id: Option<String>,
    /// Submitted at or after.
    pub from: Option<Millis>,
    /// Submitted before.
    pub to: Option<Millis>,
    /// Only executions older (smaller `seq`) than this: the page cursor.
    pub before_seq: Option<i64>,
    pub limit: u32,
}

/// Log lines read with their execution; a longer log's rest is read after
/// (on SQLite on a blocking thread, since it may hold millions of lines).
pub const LOG_LINES_READ_TOGETHER: usize = 1000;

#[async_trait]
pub trait ExecutionStore: Send + Sync {
    /// Queues an execution; it is on disk when this returns.
    async fn enqueue(&self, new: &NewExecution, key: Option<&IdempotencyKey>) -> Result<Enqueued>;
    async fn get_execution(&self, organization_id: &str, id: &str) -> Result<Execution>;
    async fn execution_logs(&self, organization_id: &str, id: &str) -> Result<Vec<LogLine>>;
    /// An execution on `runtime_id` and its whole log, in order, read
    /// together: the execution and the log's first [`LOG_LINES_READ_TOGETHER`]
    /// lines from one snapshot (on PostgreSQL one statement, where a result
    /// read had made two round trips), a longer log's rest after.
    /// [`Error::NotFound`] when the execution is on another runtime, before
    /// its log is read.
    async fn execution_with_logs(
        &self,
        organization_id: &str,
        runtime_id: &str,
        id: &str,
    ) -> Result<(Execution, Vec<LogLine>)>;
    /// At most `limit` log lines numbered after `after_seq`, in order: a page
    /// of the log, for readers that follow it by cursor.
    async fn execution_logs_after(
        &self,
        organization_id: &str,
        id: &str,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<LogLine>>;
    async fn list_executions(
        &self,
        organization_id: &str,
        filter: &ExecutionFilter,
    ) -> Result<Vec<Execution>>;
    /// How many PENDENT executions are ahead of this one on its runtime.
    async fn queue_position(&self, execution: &Execution) -> Result<u64>;
    /// Cancels a PENDENT execution, or marks a RUNNING one for cancellation;
    /// `audit` is written only then, in the same transaction.
    async fn cancel(
        &self,
        organization_id: &str,
        id: &str,
        canceled_by: &str,
        now: Millis,
        audit: Option<&AuditEntry>,
    ) -> Result<CancelOutcome>;
}
