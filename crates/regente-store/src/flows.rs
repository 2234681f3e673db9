//! Flows: definitions saved in versions under a name, and their runs, each a row
//! with one row per step. A step runs as an ordinary execution that names its run
//! and step (`Execution::flow_run_id`, `flow_step_id`).
//!
//! The store does not decide what a run does next (the server's flow engine does,
//! with `regente-flows`); it writes each decision whole, in one transaction: the
//! steps' new states, the run's, the next step's execution queued, the events, and
//! the engine's cursor. Each run has a `revision` that every change moves on, and
//! a change computed from another revision is refused: two deciders (a retry
//! request and the engine, or two servers) never both apply theirs.

use async_trait::async_trait;
use regente_core::ExecutionStatus;
use serde_json::Value;

use crate::{AuditEntry, Enqueued, EventCursor, IdempotencyKey, Millis, NewExecution, Result};

/// A flow and its newest version (or the version asked for).
#[derive(Debug, Clone, PartialEq)]
pub struct Flow {
    pub id: String,
    pub organization_id: String,
    pub name: String,
    pub created: Millis,
    pub version: u32,
    /// The definition's JSON, as saved.
    pub definition: Value,
    /// When this version was saved, and by whom.
    pub version_created: Millis,
    pub created_by: String,
}

/// A definition to save under its name: a new flow, or its next version.
#[derive(Debug, Clone)]
pub struct NewFlowVersion {
    /// The id a new flow takes; an existing flow keeps its own.
    pub id: String,
    pub organization_id: String,
    pub name: String,
    pub definition: Value,
    pub created: Millis,
    pub created_by: String,
}

/// A step of a run; `status` is one of `regente_flows::StepStatus`'s names.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowStep {
    pub position: u32,
    pub step_id: String,
    pub status: String,
    pub attempt: u32,
    pub execution_id: Option<String>,
    pub return_value: Option<Value>,
    pub reason: Option<String>,
    pub not_before: Option<Millis>,
    pub deadline: Option<Millis>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FlowRun {
    pub id: String,
    pub organization_id: String,
    pub flow_id: String,
    pub version: u32,
    /// RUNNING, then FINISHED, ERROR or CANCELED.
    pub status: ExecutionStatus,
    /// The resolved inputs, `{NAME: value}`.
    pub input: Value,
    pub return_value: Option<Value>,
    pub init: Millis,
    pub end: Option<Millis>,
    pub end_reason: Option<String>,
    pub submitted_by: String,
    pub canceled_by: Option<String>,
    /// Moves on with every change (see the module's documentation).
    pub revision: i64,
    pub wake_at: Option<Millis>,
    /// The schedule that started it, and the fire's time.
    pub schedule_id: Option<String>,
    pub scheduled_for: Option<Millis>,
    /// In position order: the definition's steps, then `on_failure`.
    pub steps: Vec<FlowStep>,
    /// Listing order; larger is newer.
    pub seq: i64,
}

/// A run to start: its row and steps as the engine first decided them, and the
/// first step's execution unless the run already ended or waits.
#[derive(Debug, Clone)]
pub struct NewFlowRun {
    pub run: FlowRun,
    pub enqueue: Option<NewExecution>,
}

/// One decision of the engine (or a retry), written whole.
#[derive(Debug, Clone)]
pub struct FlowAdvance {
    pub organization_id: String,
    pub run_id: String,
    /// The revision the decision was made from.
    pub revision: i64,
    pub status: ExecutionStatus,
    pub return_value: Option<Value>,
    pub end: Option<Millis>,
    pub end_reason: Option<String>,
    pub wake_at: Option<Millis>,
    /// The steps that changed, whole.
    pub steps: Vec<FlowStep>,
    /// The execution of the step that starts, which names its run and step.
    pub enqueue: Option<NewExecution>,
    /// The engine's place in the event stream, saved with the change.
    pub cursor: Option<(String, EventCursor)>,
    pub now: Millis,
    /// The record of a person's retry, written with the change.
    pub audit: Option<AuditEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlowCancelOutcome {
    /// The run is CANCELED; the step that was running has this execution, to be
    /// canceled the usual way (so its robot is stopped).
    Canceled {
        running_execution: Option<String>,
    },
    AlreadyEnded(ExecutionStatus),
}

/// A RUNNING run the engine must look at by `wake_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WakingRun {
    pub organization_id: String,
    pub run_id: String,
    pub wake_at: Millis,
}

#[async_trait]
pub trait FlowStore: Send + Sync {
    /// Saves a definition under its name: a new flow (version 1, id `new.id`), or
    /// the existing flow's next version. `audit` (its object id left empty:
    /// the flow's id is known only here) is written with it.
    async fn save_flow(&self, new: &NewFlowVersion, audit: Option<&AuditEntry>) -> Result<Flow>;
    /// The flow with its newest version.
    async fn get_flow(&self, organization_id: &str, id: &str) -> Result<Flow>;
    async fn flow_version(&self, organization_id: &str, id: &str, version: u32) -> Result<Flow>;
    /// Every flow of the organisation with its newest version, by name.
    async fn list_flows(&self, organization_id: &str) -> Result<Vec<Flow>>;
    /// Starts a run: its row, its steps, its first execution and their events, in
    /// one transaction; an idempotency key answers the run it started before.
    async fn start_flow_run(
        &self,
        new: &NewFlowRun,
        key: Option<&IdempotencyKey>,
    ) -> Result<Enqueued>;
    async fn get_flow_run(&self, organization_id: &str, id: &str) -> Result<FlowRun>;
    /// The flow's latest runs, newest first, without their steps.
    async fn recent_flow_runs(
        &self,
        organization_id: &str,
        flow_id: &str,
        limit: u32,
    ) -> Result<Vec<FlowRun>>;
    /// Writes a decision; `false` (nothing written) when the run's revision is
    /// no longer `advance.revision`.
    async fn advance_flow_run(&self, advance: &FlowAdvance) -> Result<bool>;
    /// Ends a RUNNING run CANCELED; `audit` is written only then.
    async fn cancel_flow_run(
        &self,
        organization_id: &str,
        id: &str,
        canceled_by: &str,
        now: Millis,
        audit: Option<&AuditEntry>,
    ) -> Result<FlowCancelOutcome>;
    /// The RUNNING runs with a `wake_at`, of every organisation, soonest first.
    async fn waking_flow_runs(&self, limit: u32) -> Result<Vec<WakingRun>>;
}
