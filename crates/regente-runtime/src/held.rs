//! One execution the agent holds, and its events on their way out: numbered,
//! written to its journal, synced on a blocking thread (never on the agent's
//! task, which meanwhile goes on with the other runs), and sent once synced.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use regente_proto::{Assignment, Event, EventKind};
use tokio::sync::oneshot;

use crate::executor::Stop;
use crate::journal::{Journal, SyncHandle};
use crate::run_setup::{RobotRun, RunSecrets};

pub(crate) struct Held {
    /// As journaled: without what the vault handed out.
    pub assignment: Assignment,
    /// What the vault handed out, in memory only (see `run_setup::RunSecrets`).
    pub secrets: RunSecrets,
    pub journal: Journal,
    /// Syncs the journal, from another thread.
    pub sync_handle: Arc<SyncHandle>,
    pub next_seq: u64,
    /// Written to the journal and not synced yet: sent once synced, in order.
    pub unsynced: Vec<Event>,
    /// How many of `unsynced` the sync under way covers (one at a time).
    /// Whenever events wait, a sync is under way: the agent starts the next
    /// as each ends, and its reports wait on that when too many do.
    pub syncing: Option<usize>,
    /// Sent (or to send) and not acknowledged yet, in order.
    pub unacked: Vec<Event>,
    /// The server granted the start: the robot runs, or is about to.
    pub spawned: bool,
    pub ended: bool,
    /// Set when `Start` is sent: the run to launch on `Started` (or why it
    /// cannot start). Taken at the launch.
    pub ready: Option<Result<RobotRun, String>>,
    /// The sync of the journal as created (see `journal`).
    pub journal_synced: JournalSync,
    /// A cancel came between `Started` and the launch.
    pub cancel_before_launch: bool,
    pub stop: Option<oneshot::Sender<Stop>>,
}

/// The sync of a journal as created.
pub(crate) enum JournalSync {
    Pending,
    Done,
    Failed(String),
}

/// A sync of a journal that finished.
pub(crate) struct Synced {
    pub execution_id: String,
    pub lease: String,
    pub of: SyncOf,
    pub outcome: std::io::Result<()>,
}

/// What a journal's sync made durable.
pub(crate) enum SyncOf {
    /// The new journal: the robot may be handed over.
    Creation,
    /// The events written before it: they may be sent.
    Events,
}

impl Held {
    /// A new execution, its journal created and its sync under way.
    pub fn new(
        assignment: Assignment,
        secrets: RunSecrets,
        journal: Journal,
        sync_handle: SyncHandle,
    ) -> Held {
        Held {
            next_seq: assignment.first_seq,
            assignment,
            secrets,
            journal,
            sync_handle: Arc::new(sync_handle),
            unsynced: Vec::new(),
            syncing: None,
            unacked: Vec::new(),
            spawned: false,
            ended: false,
            ready: None,
            journal_synced: JournalSync::Pending,
            cancel_before_launch: false,
            stop: None,
        }
    }

    pub fn number(&mut self, kind: EventKind) -> Event {
        let event = Event {
            seq: self.next_seq,
            time: now_millis(),
            kind,
        };
        self.next_seq += 1;
        event
    }

    /// Whether nothing is left to deliver once the server acknowledged
    /// through `unacked`.
    pub fn delivered(&self) -> bool {
        self.ended && self.unacked.is_empty() && self.unsynced.is_empty()
    }

    /// Starts a sync of the events written since the last one, unless one is
    /// under way or none waits: the handle to run on a blocking thread.
    pub fn start_events_sync(&mut self) -> Option<Arc<SyncHandle>> {
        if self.syncing.is_some() || self.unsynced.is_empty() {
            return None;
        }
        self.syncing = Some(self.unsynced.len());
        Some(self.sync_handle.clone())
    }

    /// The events the sync that ended covered, to send.
    pub fn events_synced(&mut self) -> Vec<Event> {
        let covered = self.syncing.take().unwrap_or(0);
        let events: Vec<Event> = self.unsynced.drain(..covered).collect();
        self.unacked.extend(events.iter().cloned());
        events
    }
}

pub(crate) fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::tests::{assignment, event};
    use crate::journal::Journals;

    fn seqs(events: &[Event]) -> Vec<u64> {
        events.iter().map(|e| e.seq).collect()
    }

    #[test]
    fn events_go_out_once_a_sync_begun_after_their_write_ended_one_sync_at_a_time() {
        let temp = tempfile::tempdir().unwrap();
        let journals = Journals::new(temp.path());
        let journal = journals.create(&assignment("e1"), None).unwrap();
        let handle = journal.sync_handle().unwrap();
        let mut held = Held::new(assignment("e1"), RunSecrets::default(), journal, handle);
        assert!(held.start_events_sync().is_none(), "nothing to sync");

        held.unsynced.extend([event(1, "one"), event(2, "two")]);
        let sync = held.start_events_sync().expect("a sync of the two");
        held.unsynced.push(event(3, "three"));
        assert!(held.start_events_sync().is_none(), "one sync at a time");
        sync.sync().unwrap();
        assert_eq!(
            seqs(&held.events_synced()),
            [1, 2],
            "what was written before it"
        );
        assert_eq!(seqs(&held.unacked), [1, 2]);
        assert_eq!(seqs(&held.unsynced), [3]);

        let sync = held.start_events_sync().expect("then a sync of the third");
        held.ended = true;
        held.unacked.clear();
        assert!(!held.delivered(), "the third is still to send");
        sync.sync().unwrap();
        assert_eq!(seqs(&held.events_synced()), [3]);
        held.unacked.clear();
        assert!(held.delivered());
    }
}
