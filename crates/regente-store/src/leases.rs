//! The runtime protocol's side of the store: executions handed to runtimes under
//! leases, started, reported on, and ended when their runtime is lost.

use async_trait::async_trait;
use regente_core::ExecutionStatus;
use serde_json::Value;

use crate::{Millis, Result};

/// An execution handed to a runtime under a new lease.
#[derive(Debug, Clone, PartialEq)]
pub struct Claimed {
    pub execution_id: String,
    pub lease: String,
    pub robot_id: String,
    pub robot_version: u32,
    pub sha256: String,
    pub manifest: String,
    pub variables: Value,
    /// Sequence number the attempt's first event takes.
    pub first_seq: u64,
    /// A step of a flow run: its end is the flow engine's business.
    pub flow_step: bool,
    /// Started in the claim's own transaction (see
    /// [`LeaseStore::record_events_and_claim`]): RUNNING already.
    pub started: bool,
}

/// A live lease: an execution handed to a runtime and not ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Lease {
    pub execution_id: String,
    pub lease: String,
    pub runtime_id: String,
    /// PENDENT (handed out, not started) or RUNNING.
    pub status: ExecutionStatus,
    pub cancel_requested: bool,
}

/// One numbered report from a runtime about an execution.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRecord {
    pub seq: u64,
    pub time: Millis,
    pub change: Change,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Log {
        level: String,
        message: String,
    },
    /// Clamped to 0..=100 when stored.
    Progress(f64),
    Return(Value),
    Ended {
        status: ExecutionStatus,
        exit_code: Option<i32>,
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventsOutcome {
    /// Every event up to `acked` is stored (earlier copies were skipped).
    Stored { acked: u64, ended: bool },
    /// The lease is not the execution's current one: nothing was written.
    Revoked,
}

impl EventsOutcome {
    /// Whether this batch ended the execution (not an end sent again).
    pub fn ended_it(&self) -> bool {
        matches!(self, EventsOutcome::Stored { ended: true, .. })
    }
}

/// What happened to an execution whose runtime was lost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LostOutcome {
    /// Back in the queue: it had not started, or the robot allows retries.
    Requeued,
    /// Ended (ERROR, or CANCELED when a cancel was pending).
    Ended(ExecutionStatus),
    /// The lease had already changed: nothing to do.
    Stale,
}

#[async_trait]
pub trait LeaseStore: Send + Sync {
    /// Hands the runtime's oldest PENDENT execution that is not handed out yet
    /// under `lease`.
    async fn claim_next(&self, runtime_id: &str, lease: &str) -> Result<Option<Claimed>>;
    /// Marks a handed-out execution RUNNING; false when the lease has ended (for
    /// example canceled), in which case the robot must not start.
    async fn start(
        &self,
        runtime_id: &str,
        execution_id: &str,
        lease: &str,
        now: Millis,
    ) -> Result<bool>;
    /// Stores a runtime's events for an execution, each once and in order.
    async fn record_events(
        &self,
        runtime_id: &str,
        execution_id: &str,
        lease: &str,
        events: &[EventRecord],
    ) -> Result<EventsOutcome>;
    /// [`LeaseStore::record_events`], and when the batch ends the execution,
    /// [`LeaseStore::claim_next`] under `next_lease` in the same transaction: a
    /// slot freed and filled again with one commit. Nothing is claimed when the
    /// batch does not end the execution. With `start_at`, the run claimed is
    /// also started then ([`LeaseStore::start`], `Claimed::started`). A claim or
    /// start that fails is undone alone (a savepoint): the end stays stored and
    /// no run is claimed, to be tried again alone.
    async fn record_events_and_claim(
        &self,
        runtime_id: &str,
        execution_id: &str,
        lease: &str,
        events: &[EventRecord],
        next_lease: &str,
        start_at: Option<Millis>,
    ) -> Result<(EventsOutcome, Option<Claimed>)>;
    /// The runtime's live leases.
    async fn leases_of_runtime(&self, runtime_id: &str) -> Result<Vec<Lease>>;
    /// The status under `lease`, or `None` when it is not the execution's lease.
    async fn lease_status(
        &self,
        execution_id: &str,
        lease: &str,
    ) -> Result<Option<ExecutionStatus>>;
    /// Live leases of runtimes not seen since `seen_before`.
    async fn leases_seen_before(&self, seen_before: Millis) -> Result<Vec<Lease>>;
    /// Ends a lease whose runtime was lost or gave it up. When `spawned` is false
    /// the robot certainly never ran, so the execution goes back to the queue;
    /// otherwise it is queued again only if the robot allows retries, else ended
    /// with `reason` logged.
    async fn end_lease(
        &self,
        execution_id: &str,
        lease: &str,
        spawned: bool,
        reason: &str,
        now: Millis,
    ) -> Result<LostOutcome>;
    /// Ends a handed-out execution that has not started, under its lease, with
    /// status ERROR and `reason` logged, without queueing it again: what it needs
    /// to start was refused. `Stale` when the lease has ended or the robot started.
    async fn refuse_start(
        &self,
        execution_id: &str,
        lease: &str,
        reason: &str,
        now: Millis,
    ) -> Result<LostOutcome>;
}
