//! The event stream: one durable record per state change, in a global order that
//! consumers (flows, webhooks, metrics, the live console) follow with a
//! cursor they keep in the store.
//!
//! - Every event is written in the transaction that makes the change it reports,
//!   by the shared rules (`rules.rs`), so an event exists if and only if its change
//!   was committed, and both backends write the same events.
//! - [`EventStore::events_after`] answers the events after a cursor in stream
//!   order. A consumer that stores the cursor of the last event it handled and
//!   reads on from it after a restart sees every committed event exactly once, in
//!   order. On SQLite the single writer commits in `seq` order. On PostgreSQL
//!   `seq` is taken before the commit, so transactions can commit out of `seq`
//!   order: events are ordered by (transaction id, `seq`) and a read answers only
//!   those of transactions older than every transaction still running. A long
//!   open transaction delays consumers; it never makes them skip an event.
//! - Events older than the retention are pruned ([`EventStore::prune_events`]),
//!   consumed or not.

use std::fmt;

use async_trait::async_trait;
use serde_json::Value;

use crate::{Millis, Result};

/// What an event reports. Serialised as the strings of [`EventKind::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// An execution was queued. Data: `{runtime_id, robot_id, robot_version,
    /// submitted_by}`.
    ExecutionQueued,
    /// An execution became RUNNING (its runtime may spawn the robot). Data:
    /// `{runtime_id}`.
    ExecutionStarted,
    /// An execution ended, however it ended (a report, a cancel before it
    /// started, a lost runtime). Data: `{status, reason, exit_code}` (`exit_code`
    /// may be null).
    ExecutionEnded,
    /// A user canceled an execution. Data: `{canceled_by, was_running}`; a
    /// PENDENT one also ends at once (an `execution.ended` follows in the same
    /// transaction), a RUNNING one ends when its runtime has stopped it.
    ExecutionCanceled,
    /// A lease ended and the execution went back to the queue: its runtime was
    /// lost or gave it up before the robot was spawned, or the robot allows
    /// retries. Data: `{reason, was_running}`.
    ExecutionRequeued,
    /// A runtime came online: a connection of it was registered while the store
    /// had none. Data: `{session_id}`.
    RuntimeOnline,
    /// A runtime went offline: its current connection ended, or it was silent
    /// past the runtime timeout. Data: `{session_id, reason}`.
    RuntimeOffline,
    /// A flow run started, or went on again after a retry request. Data:
    /// `{flow_id, version, submitted_by, resumed}`.
    FlowRunStarted,
    /// A flow run ended. Data: `{status, reason}`.
    FlowRunEnded,
    /// A schedule's fire queued a run (subject: the schedule). Data:
    /// `{scheduled_for, execution_id, origin}` (`origin`: rule, trigger or
    /// backfill); the run's own `execution.queued` precedes it.
    ScheduleFired,
    /// A schedule's fire queued no run (subject: the schedule). Data:
    /// `{scheduled_for, origin, reason, message}`: `reason` is `overlap` (an
    /// earlier run was live) or `error` (the run could not be queued; `message`
    /// says why).
    ScheduleSkipped,
    /// A schedule's fire was due while no server could fire it and was not
    /// caught up (subject: the schedule). Data: `{scheduled_for, reason}`:
    /// `outside_window` or `superseded` (a later fire ran instead).
    ScheduleMissed,
    /// The server paused a schedule after consecutive failed runs (subject: the
    /// schedule). Data: `{note, execution_id}` (the last failed run).
    SchedulePaused,
}

impl EventKind {
    pub const ALL: [EventKind; 13] = [
        EventKind::ExecutionQueued,
        EventKind::ExecutionStarted,
        EventKind::ExecutionEnded,
        EventKind::ExecutionCanceled,
        EventKind::ExecutionRequeued,
        EventKind::RuntimeOnline,
        EventKind::RuntimeOffline,
        EventKind::FlowRunStarted,
        EventKind::FlowRunEnded,
        EventKind::ScheduleFired,
        EventKind::ScheduleSkipped,
        EventKind::ScheduleMissed,
        EventKind::SchedulePaused,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::ExecutionQueued => "execution.queued",
            EventKind::ExecutionStarted => "execution.started",
            EventKind::ExecutionEnded => "execution.ended",
            EventKind::ExecutionCanceled => "execution.canceled",
            EventKind::ExecutionRequeued => "execution.requeued",
            EventKind::RuntimeOnline => "runtime.online",
            EventKind::RuntimeOffline => "runtime.offline",
            EventKind::FlowRunStarted => "flow_run.started",
            EventKind::FlowRunEnded => "flow_run.ended",
            EventKind::ScheduleFired => "schedule.fired",
            EventKind::ScheduleSkipped => "schedule.skipped",
            EventKind::ScheduleMissed => "schedule.missed",
            EventKind::SchedulePaused => "schedule.paused",
        }
    }

    pub fn parse(text: &str) -> Option<EventKind> {
        EventKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == text)
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A place in the stream: every event up to and including it. Events are in
/// (`txid`, `seq`) order; `txid` is 0 on SQLite, and on events copied by
/// `regente store copy`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventCursor {
    pub txid: i64,
    pub seq: i64,
}

impl EventCursor {
    /// Before every event.
    pub const START: EventCursor = EventCursor { txid: 0, seq: 0 };
}

/// An event as read from the stream.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    /// This event's place: store it once the event is handled, and read on from it.
    pub cursor: EventCursor,
    pub organization_id: String,
    pub kind: EventKind,
    /// The execution, runtime or schedule the event is about.
    pub subject_id: String,
    pub time: Millis,
    /// What [`EventKind`] documents for the kind.
    pub data: Value,
}

/// What a consumer read of the stream: the events of the kinds it asked for,
/// and how far it read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventsRead {
    /// The events of the kinds asked for, in stream order.
    pub events: Vec<StoredEvent>,
    /// The last event read, of any kind: where to read on from.
    pub through: Option<EventCursor>,
    /// How many events were read, of any kind: as many as asked for means
    /// there may be more.
    pub read: usize,
}

/// Which of an organisation's events to read.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// Only these kinds; every kind when empty.
    pub kinds: Vec<EventKind>,
    /// Only events about this execution or runtime.
    pub subject_id: Option<String>,
}

#[async_trait]
pub trait EventStore: Send + Sync {
    /// At most `limit` events after `after`, in stream order. Fewer (even none)
    /// does not mean the stream ends there: read again from the last cursor.
    async fn events_after(&self, after: EventCursor, limit: u32) -> Result<Vec<StoredEvent>> {
        Ok(self
            .events_of_kinds_after(after, limit, &EventKind::ALL)
            .await?
            .events)
    }
    /// The same, for a consumer that handles `kinds` only: the others are read
    /// past (their data is not even decoded) and counted in
    /// [`EventsRead::through`] and [`EventsRead::read`]. Every consumer reads
    /// every event, so decoding only what it handles saves most of its work.
    async fn events_of_kinds_after(
        &self,
        after: EventCursor,
        limit: u32,
        kinds: &[EventKind],
    ) -> Result<EventsRead>;
    /// The same, for one organisation's events matching `filter`.
    async fn organization_events_after(
        &self,
        organization_id: &str,
        after: EventCursor,
        filter: &EventFilter,
        limit: u32,
    ) -> Result<Vec<StoredEvent>>;
    /// The cursor `consumer` saved last; [`EventCursor::START`] if none.
    async fn load_cursor(&self, consumer: &str) -> Result<EventCursor>;
    /// Saves where `consumer` is. A cursor never moves back: saving one before the
    /// saved one changes nothing, so a slow copy of a consumer cannot undo a
    /// faster one's progress. (A store operation that also does a consumer's own
    /// change saves its cursor in the same transaction: each backend has a
    /// `save_cursor_in` for that.)
    ///
    /// Not synced on its own: a cursor lost to a power loss only has its
    /// consumer read the (synced) events after the older one again.
    async fn save_cursor(&self, consumer: &str, cursor: EventCursor, now: Millis) -> Result<()>;
    /// Deletes the events that happened before `older_than`, in bounded
    /// batches; how many.
    async fn prune_events(&self, older_than: Millis) -> Result<u64>;
}

/// An event to write with the change it reports; the backends insert it as is.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct NewEvent {
    pub organization_id: String,
    pub kind: EventKind,
    pub subject_id: String,
    pub time: Millis,
    pub data: Value,
}

/// Rows deleted per transaction by [`EventStore::prune_events`] (and
/// [`crate::AuditStore::prune_audit`]).
pub(crate) const PRUNE_BATCH: i64 = 5_000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_read_back_from_their_names() {
        for kind in EventKind::ALL {
            assert_eq!(EventKind::parse(kind.as_str()), Some(kind));
            assert_eq!(kind.to_string(), kind.as_str());
        }
        assert_eq!(EventKind::parse("execution.unknown"), None);
    }

    #[test]
    fn cursors_order_by_transaction_then_seq() {
        let early_seq_late_commit = EventCursor { txid: 9, seq: 1 };
        let late_seq_early_commit = EventCursor { txid: 8, seq: 2 };
        assert!(late_seq_early_commit < early_seq_late_commit);
        assert!(EventCursor::START < late_seq_early_commit);
        assert_eq!(EventCursor::default(), EventCursor::START);
    }
}
