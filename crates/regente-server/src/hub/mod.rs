//! The hub: runtimes connected to this server, and the work pushed to them.
//!
//! - `mod.rs`: [`Hub`], the registry of connected runtimes; services tell it when
//!   a runtime has new work ([`Hub::wake`]) or an execution must stop.
//! - [`session`]: one task per connected agent, speaking `regente-proto`.
//! - [`sweeper`]: ends the leases of runtimes that stopped answering.
//! - [`notices`]: relays what other servers sharing the store announce.
//!
//! Dispatch is push: a queued run wakes its runtime's session at once, which
//! claims work from the store while it has free slots.

pub mod notices;
pub mod session;
pub mod sweeper;
pub mod watchers;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use regente_store::{Millis, Notice};
use tokio::sync::{broadcast, mpsc};

/// What changed on this server, for the console's live pages. Missed changes
/// are no loss: the pages read the store again every second as well.
#[derive(Debug, Clone, PartialEq)]
pub enum Changed {
    /// The execution's status, progress or log moved.
    Execution(String),
    /// A runtime connected or disconnected.
    Runtimes,
}

/// What the rest of the server asks of a runtime's session. Kept to two words:
/// each session's queue allocates room for 32 commands when it is made, so the
/// size of a command is paid 32 times per connected runtime.
#[derive(Debug)]
pub enum Command {
    /// New work may be queued: claim while slots are free.
    Wake,
    /// Notices may have been missed: claim, and send again the cancels that
    /// wait for robots running here.
    Resync,
    /// Stop a running robot: it was canceled.
    Cancel(Box<LeaseOrder>),
    /// The lease ended on the server (for the reason given): tell the agent to
    /// drop it.
    Revoke(Box<LeaseOrder>),
    /// Another connection of the same runtime took over.
    Replaced,
    /// The runtime's key was replaced: this connection's key is void.
    KeyChanged,
}

/// The lease a [`Command`] is about.
#[derive(Debug)]
pub struct LeaseOrder {
    pub execution_id: String,
    pub lease: String,
    /// Why, for a revoke; empty for a cancel.
    pub reason: String,
}

struct Registered {
    connection: u64,
    commands: mpsc::UnboundedSender<Command>,
}

pub struct Hub {
    sessions: Mutex<HashMap<String, Registered>>,
    next_connection: AtomicU64,
    changes: broadcast::Sender<Changed>,
    /// Who waits for which execution's next change.
    pub executions: watchers::ExecutionWatchers,
    /// When this server started: runtimes get one timeout from then to reconnect
    /// before their executions count as lost.
    pub started_at: Millis,
}

impl Hub {
    pub fn new(started_at: Millis) -> Hub {
        Hub {
            sessions: Mutex::new(HashMap::new()),
            next_connection: AtomicU64::new(1),
            changes: broadcast::channel(1024).0,
            executions: Default::default(),
            started_at,
        }
    }

    fn send(&self, runtime_id: &str, command: Command) {
        let sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(session) = sessions.get(runtime_id) {
            let _ = session.commands.send(command);
        }
    }

    pub fn wake(&self, runtime_id: &str) {
        self.send(runtime_id, Command::Wake);
    }

    /// Resynchronises every session here: after missed notices, and as a slow
    /// safety net.
    pub fn resync_all(&self) {
        let sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        for session in sessions.values() {
            let _ = session.commands.send(Command::Resync);
        }
    }

    /// Acts on a notice for runtimes connected here (others ignore it).
    pub fn apply(&self, notice: &Notice) {
        match notice {
            Notice::Work { runtime_id } => self.wake(runtime_id),
            Notice::Cancel {
                runtime_id,
                execution_id,
                lease,
            } => self.cancel(runtime_id, execution_id, lease),
            Notice::Revoke {
                runtime_id,
                execution_id,
                lease,
                reason,
            } => self.revoke(runtime_id, execution_id, lease, reason),
            Notice::Resync => self.resync_all(),
            Notice::RuntimeKeyChanged { runtime_id } => self.send(runtime_id, Command::KeyChanged),
            Notice::ExecutionEnded { execution_id, .. } => {
                self.changed(Changed::Execution(execution_id.clone()))
            }
            Notice::UserDeleted { .. }
            | Notice::ApiKeyRevoked { .. }
            | Notice::SchedulesChanged => {}
        }
    }

    pub fn cancel(&self, runtime_id: &str, execution_id: &str, lease: &str) {
        self.send(
            runtime_id,
            Command::Cancel(Box::new(LeaseOrder {
                execution_id: execution_id.to_owned(),
                lease: lease.to_owned(),
                reason: String::new(),
            })),
        );
    }

    pub fn revoke(&self, runtime_id: &str, execution_id: &str, lease: &str, reason: &str) {
        self.send(
            runtime_id,
            Command::Revoke(Box::new(LeaseOrder {
                execution_id: execution_id.to_owned(),
                lease: lease.to_owned(),
                reason: reason.to_owned(),
            })),
        );
    }

    /// Tells the live pages and the waiters on this server that something
    /// changed.
    pub fn changed(&self, change: Changed) {
        if let Changed::Execution(id) = &change {
            self.executions.changed(id);
        }
        let _ = self.changes.send(change);
    }

    /// Changes from now on (a lagging receiver skips ahead; readers re-read).
    pub fn watch(&self) -> broadcast::Receiver<Changed> {
        self.changes.subscribe()
    }

    /// How many runtimes have a session with this server now.
    pub fn connected(&self) -> usize {
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    pub fn is_connected(&self, runtime_id: &str) -> bool {
        let sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        sessions.contains_key(runtime_id)
    }

    /// Registers a new session of a runtime, replacing any earlier one.
    fn register(&self, runtime_id: &str) -> (u64, mpsc::UnboundedReceiver<Command>) {
        let connection = self.next_connection.fetch_add(1, Ordering::Relaxed);
        let (commands, receiver) = mpsc::unbounded_channel();
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(earlier) = sessions.insert(
            runtime_id.to_owned(),
            Registered {
                connection,
                commands,
            },
        ) {
            let _ = earlier.commands.send(Command::Replaced);
        }
        drop(sessions);
        self.changed(Changed::Runtimes);
        (connection, receiver)
    }

    fn unregister(&self, runtime_id: &str, connection: u64) {
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        if sessions
            .get(runtime_id)
            .is_some_and(|s| s.connection == connection)
        {
            sessions.remove(runtime_id);
            drop(sessions);
            self.changed(Changed::Runtimes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Command;

    #[test]
    fn a_command_is_two_words() {
        assert!(std::mem::size_of::<Command>() <= 2 * std::mem::size_of::<usize>());
    }
}
