//! Schedules: runs queued by the server itself at the times of a rule, and the
//! record of every fire (run, skipped, or missed).
//!
//! A fire is applied by [`ScheduleStore::fire_schedule`] in one transaction: it
//! claims the (schedule, scheduled time) pair, so that a fire happens at most
//! once whatever the restarts and however many servers share the store; applies
//! the overlap rule against the schedule's live runs; queues the run (with its
//! `execution.queued` event) or records why not; writes the schedule's events,
//! bumps its counters and moves it on to its next fire. Either all of it is
//! committed or none.

use async_trait::async_trait;
use regente_core::schedule::plan::{Misfire, Overlap};
use regente_core::ExecutionStatus;
use serde_json::Value;

use crate::{EventCursor, Millis, NewExecution, Result};

#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    pub id: String,
    pub organization_id: String,
    pub name: String,
    pub robot_id: String,
    pub runtime_id: String,
    /// The run body's variables, as given: `[{"name", "type", "value"}]`.
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
    /// Its run was queued.
    Started { execution_id: String },
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
            FireOutcome::Started { .. } => "started",
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

/// A fire that queues a run, unless the overlap rule says no.
#[derive(Debug, Clone)]
pub struct FireRun {
    pub scheduled_for: Millis,
    /// The run: its `schedule_id` and `scheduled_for` are the fire's.
    /// `Err(reason)` when it cannot be queued.
    pub execution: std::result::Result<NewExecution, String>,
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

/// An execution's end, read from the event stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunEnd {
    pub organization_id: String,
    pub execution_id: String,
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
    /// organisation is a conflict.
    async fn create_schedule(&self, schedule: &Schedule) -> Result<()>;
    async fn get_schedule(&self, organization_id: &str, id: &str) -> Result<Schedule>;
    /// The organisation's schedules, oldest first.
    async fn list_schedules(&self, organization_id: &str) -> Result<Vec<Schedule>>;
    /// Replaces what a user may change (name, target, variables, rule, zone,
    /// bounds, overlap, catch-up, jitter, pause, next fire); the counters stay.
    /// `reset_failures` starts the count of consecutive failures again (a
    /// resume).
    async fn update_schedule(&self, schedule: &Schedule, reset_failures: bool) -> Result<()>;
    /// Deletes a schedule and its fires; its runs stay.
    async fn delete_schedule(&self, organization_id: &str, id: &str) -> Result<()>;
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
