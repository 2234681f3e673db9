//! Schedules: runs queued by the server itself at the times of a rule, and the
//! record of every fire (run, skipped, or missed).
//!
//! A schedule targets a robot on a runtime, or a flow. A fire is applied by
//! [`ScheduleStore::fire_schedule`] in one transaction: it claims the
//! (schedule, scheduled time) pair, so that a fire happens at most once whatever
//! the restarts and however many servers share the store; applies the overlap
//! rule against the schedule's live runs (executions and flow runs); queues the
//! execution (with its `execution.queued` event) or starts the flow run (its
//! steps, its first execution and their events, as
//! [`crate::FlowStore::start_flow_run`] writes them), or records why not; writes
//! the schedule's events, bumps its counters and moves it on to its next fire.
//! Either all of it is committed or none.

use async_trait::async_trait;
use regente_core::schedule::plan::{Misfire, Overlap};
use regente_core::ExecutionStatus;
use serde_json::Value;

use crate::{AuditEntry, EventCursor, Millis, NewExecution, NewFlowRun, Result};

/// What a schedule runs at each fire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScheduleTarget {
    /// An execution of the robot's newest version on the runtime.
    Robot {
        robot_id: String,
        runtime_id: String,
    },
    /// A run of the flow's newest version.
    Flow { flow_id: String },
}

impl ScheduleTarget {
    pub fn robot_id(&self) -> Option<&str> {
        match self {
            ScheduleTarget::Robot { robot_id, .. } => Some(robot_id),
            ScheduleTarget::Flow { .. } => None,
        }
    }

    pub fn runtime_id(&self) -> Option<&str> {
        match self {
            ScheduleTarget::Robot { runtime_id, .. } => Some(runtime_id),
            ScheduleTarget::Flow { .. } => None,
        }
    }

    pub fn flow_id(&self) -> Option<&str> {
        match self {
            ScheduleTarget::Flow { flow_id } => Some(flow_id),
            ScheduleTarget::Robot { .. } => None,
        }
    }
}

/// A run a schedule started: an execution of its robot, or a run of its flow.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ScheduledRun {
    Execution(String),
    FlowRun(String),
}

impl ScheduledRun {
    pub fn execution_id(&self) -> Option<&str> {
        match self {
            ScheduledRun::Execution(id) => Some(id),
            ScheduledRun::FlowRun(_) => None,
        }
    }

    pub fn flow_run_id(&self) -> Option<&str> {
        match self {
            ScheduledRun::FlowRun(id) => Some(id),
            ScheduledRun::Execution(_) => None,
        }
    }

    /// `execution ID` or `flow run ID`, for people.
    pub fn describe(&self) -> String {
        match self {
            ScheduledRun::Execution(id) => format!("execution {id}"),
            ScheduledRun::FlowRun(id) => format!("flow run {id}"),
        }
    }

    /// The field that names it in events and answers, and its id.
    pub fn field(&self) -> (&'static str, &str) {
        match self {
            ScheduledRun::Execution(id) => ("execution_id", id),
            ScheduledRun::FlowRun(id) => ("flow_run_id", id),
        }
    }
}

/// The run a fire starts, built whole before the firing's transaction.
#[derive(Debug, Clone)]
pub enum NewScheduledRun {
    /// Its `schedule_id` and `scheduled_for` are the fire's.
    Execution(Box<NewExecution>),
    /// The run as its first decision left it (see [`NewFlowRun`]); its
    /// `schedule_id` and `scheduled_for` are the fire's.
    Flow(Box<NewFlowRun>),
}

impl NewScheduledRun {
    pub fn id(&self) -> ScheduledRun {
        match self {
            NewScheduledRun::Execution(new) => ScheduledRun::Execution(new.id.clone()),
            NewScheduledRun::Flow(new) => ScheduledRun::FlowRun(new.run.id.clone()),
        }
    }

    /// Whether it is live once started (a flow run may end at once, its steps
    /// all skipped), and so counts for the overlap rule.
    pub fn starts_live(&self) -> bool {
        match self {
            NewScheduledRun::Execution(_) => true,
            NewScheduledRun::Flow(new) => !new.run.status.is_ended(),
        }
    }

    /// The runtime it queues an execution on, if any.
    pub fn runtime_id(&self) -> Option<&str> {
        match self {
            NewScheduledRun::Execution(new) => Some(&new.runtime_id),
            NewScheduledRun::Flow(new) => new.enqueue.as_ref().map(|e| e.runtime_id.as_str()),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    pub id: String,
    pub organization_id: String,
    pub name: String,
    pub target: ScheduleTarget,
    /// The run body's variables, as given: `[{"name", "type", "value"}]`: a
    /// robot's variables, or a flow's inputs.
    pub variables: Value,
    /// When it fires, as given: `{"cron": "..."}` or `{"every": {...}}`.
    pub rule: Value,
    /// An IANA zone name.
    pub timezone: String,
    pub start_at: Option<Millis>,
    pub end_at: Option<Millis>,
    pub overlap: Overlap,
    pub catchup_window_seconds: i64,
    pub misfire: Misfire,
    pub jitter_seconds: i64,
    pub paused: bool,
    /// Why it was paused, by a user or by the server.
    pub pause_note: Option<String>,
    /// Consecutive ERROR runs that pause it.
    pub pause_after_failures: Option<u32>,
    pub consecutive_failures: u32,
    /// Runs queued.
    pub fired: u64,
    /// Fires skipped: overlap, or a run that could not be queued.
    pub skipped: u64,
    /// Fires missed: due while nobody could fire them, and not caught up.
    pub missed: u64,
    /// The first fire not handled yet; `None` when the rule fires no more.
    pub next_fire_at: Option<Millis>,
    /// When that fire is due (its time plus its jitter).
    pub next_due_at: Option<Millis>,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// Why a fire happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FireOrigin {
    /// Its time came.
    Rule,
    /// A user asked for one run now.
    Trigger,
    /// A user asked for the fires of a past range.
    Backfill,
}

impl FireOrigin {
    pub fn as_str(self) -> &'static str {
        match self {
            FireOrigin::Rule => "rule",
            FireOrigin::Trigger => "trigger",
            FireOrigin::Backfill => "backfill",
        }
    }

    pub fn parse(text: &str) -> Option<FireOrigin> {
        [FireOrigin::Rule, FireOrigin::Trigger, FireOrigin::Backfill]
            .into_iter()
            .find(|origin| origin.as_str() == text)
    }
}

/// What became of a fire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FireOutcome {
    /// Its run was queued (or its flow run started).
    Started(ScheduledRun),
    /// An earlier run of the schedule was live and the overlap rule said no.
    SkippedOverlap,
    /// The run could not be queued (the reason says why).
    SkippedError,
    /// Due while nobody could fire it, and not caught up.
    Missed,
}

impl FireOutcome {
    pub fn as_str(&self) -> &'static str {
        match self {
            FireOutcome::Started(_) => "started",
            FireOutcome::SkippedOverlap => "skipped_overlap",
            FireOutcome::SkippedError => "skipped_error",
            FireOutcome::Missed => "missed",
        }
    }
}

/// A recorded fire.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleFire {
    pub schedule_id: String,
    pub scheduled_for: Millis,
    pub origin: FireOrigin,
    pub outcome: FireOutcome,
    /// Why it was skipped or missed, in words.
    pub reason: Option<String>,
    pub recorded_at: Millis,
}

/// A fire that starts a run, unless the overlap rule says no.
#[derive(Debug, Clone)]
pub struct FireRun {
    pub scheduled_for: Millis,
    /// The run; `Err(reason)` when it cannot be queued.
    pub start: std::result::Result<NewScheduledRun, String>,
}

/// A fire recorded as missed.
#[derive(Debug, Clone)]
pub struct MissedFire {
    pub scheduled_for: Millis,
    pub reason: String,
}

/// The schedule moved on by a firing from the rule: applied only if the
/// schedule still stands at `from`, unpaused (so two servers deciding the same
/// fires cannot both apply them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Advance {
    pub from: Millis,
    pub next_fire_at: Option<Millis>,
    pub next_due_at: Option<Millis>,
}

/// Fires to apply in one transaction.
#[derive(Debug, Clone)]
pub struct Firing {
    pub organization_id: String,
    pub schedule_id: String,
    pub origin: FireOrigin,
    /// `Some` for fires from the rule; trigger and backfill leave the
    /// schedule's next fire alone.
    pub advance: Option<Advance>,
    /// Oldest first, all before the runs.
    pub missed: Vec<MissedFire>,
    /// Oldest first.
    pub runs: Vec<FireRun>,
    pub now: Millis,
    /// The record of a person's trigger or backfill, written with the firing
    /// when it records a fire ([`Fired::recorded_a_fire`]).
    pub audit: Option<AuditEntry>,
}

/// What a firing did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fired {
    /// Each run's (scheduled time, outcome), in order; `None` for a fire that
    /// was already recorded as run or skipped (it happens once). Missed fires
    /// are not listed.
    Applied(Vec<(Millis, Option<FireOutcome>)>),
    /// Nothing was written: the schedule has moved on, was paused or deleted
    /// since the fires were decided.
    Stale,
}

impl Fired {
    /// Whether a fire was recorded: a firing that found every fire already
    /// run or skipped changed nothing (and its `audit` is not written).
    pub fn recorded_a_fire(&self) -> bool {
        match self {
            Fired::Applied(outcomes) => outcomes.iter().any(|(_, outcome)| outcome.is_some()),
            Fired::Stale => false,
        }
    }
}

/// An execution's or a flow run's end, read from the event stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunEnd {
    pub organization_id: String,
    pub run: ScheduledRun,
    pub status: ExecutionStatus,
}

/// A schedule paused by the server after consecutive failed runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PausedSchedule {
    pub organization_id: String,
    pub schedule_id: String,
    pub note: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunEndsCounted {
    /// Counted, the consumer's cursor saved with them; the schedules this paused.
    Counted(Vec<PausedSchedule>),
    /// The consumer's cursor was not at `from`: another copy of the consumer
    /// counted these already. Nothing was written.
    Stale,
}

#[async_trait]
pub trait ScheduleStore: Send + Sync {
    /// Stores a new schedule, its counters at zero; a name taken in the
    /// organisation is a conflict. Each change takes `audit`, written in its
    /// transaction only if the change is (see [`crate::audit`]).
    async fn create_schedule(&self, schedule: &Schedule, audit: Option<&AuditEntry>) -> Result<()>;
    async fn get_schedule(&self, organization_id: &str, id: &str) -> Result<Schedule>;
    /// The organisation's schedules, oldest first.
    async fn list_schedules(&self, organization_id: &str) -> Result<Vec<Schedule>>;
    /// Replaces what a user may change (name, target, variables, rule, zone,
    /// bounds, overlap, catch-up, jitter, pause, next fire); the counters stay.
    /// `reset_failures` starts the count of consecutive failures again (a
    /// resume).
    async fn update_schedule(
        &self,
        schedule: &Schedule,
        reset_failures: bool,
        audit: Option<&AuditEntry>,
    ) -> Result<()>;
    /// Deletes a schedule and its fires; its runs stay.
    async fn delete_schedule(
        &self,
        organization_id: &str,
        id: &str,
        audit: Option<&AuditEntry>,
    ) -> Result<()>;
    /// The schedule's latest fires, newest first.
    async fn schedule_fires(
        &self,
        organization_id: &str,
        id: &str,
        limit: u32,
    ) -> Result<Vec<ScheduleFire>>;
    /// Unpaused schedules of every organisation due at `now`, the most overdue
    /// first.
    async fn due_schedules(&self, now: Millis, limit: u32) -> Result<Vec<Schedule>>;
    /// When the next unpaused schedule of any organisation is due.
    async fn next_schedule_due(&self) -> Result<Option<Millis>>;
    /// Applies fires in one transaction (see the module's documentation).
    async fn fire_schedule(&self, firing: &Firing) -> Result<Fired>;
    /// Counts run ends against their schedules' consecutive failures (an ERROR
    /// adds one, a FINISHED starts again; a schedule reaching its
    /// `pause_after_failures` is paused with a note and `schedule.paused`), and
    /// saves `consumer`'s cursor at `through`, in one transaction, if the
    /// consumer's cursor is still `from`.
    async fn count_run_ends(
        &self,
        consumer: &str,
        from: EventCursor,
        through: EventCursor,
        ends: &[RunEnd],
        now: Millis,
    ) -> Result<RunEndsCounted>;
}
