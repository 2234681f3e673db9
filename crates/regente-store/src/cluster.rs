//! Several servers on one store: notices between them, the token secret they
//! share, and which of them does the once-per-cluster duties. An embedded store
//! is never shared, and the defaults say so.

use async_trait::async_trait;
use tokio::sync::broadcast;

use crate::Result;

/// What one server tells the others sharing its store.
#[derive(Debug, Clone, PartialEq)]
pub enum Notice {
    /// A runtime may have new work: its session should claim.
    Work { runtime_id: String },
    /// Stop a running execution: it was canceled.
    Cancel {
        runtime_id: String,
        execution_id: String,
        lease: String,
    },
    /// A lease ended before its robot started.
    Revoke {
        runtime_id: String,
        execution_id: String,
        lease: String,
        reason: String,
    },
    /// An execution ended: whoever waits for its end reads it again and, when
    /// it is (or may be) a step of a flow, the flow engine (on the leader) reads
    /// the event stream at once instead of at its next look.
    ExecutionEnded {
        execution_id: String,
        flow_step: bool,
    },
    /// A user was deleted: forget the tokens of theirs known valid.
    UserDeleted { user_id: String },
    /// An API key was revoked: forget it if it is known valid.
    ApiKeyRevoked { key_id: String },
    /// A runtime's key was replaced: close the connection made with the old one.
    RuntimeKeyChanged { runtime_id: String },
    /// A schedule was created, changed or deleted: the scheduler looks again
    /// at what is due next.
    SchedulesChanged,
    /// Notices may have been missed (a listener reconnected): look again.
    Resync,
}

#[async_trait]
pub trait ClusterStore: Send + Sync {
    /// Notices published by any server sharing this store (this one included);
    /// `None` when the store cannot be shared, as an embedded one.
    fn notices(&self) -> Option<broadcast::Receiver<Notice>> {
        None
    }
    /// Tells every server sharing the store; a no-op when it cannot be shared.
    async fn publish(&self, _notice: &Notice) -> Result<()> {
        Ok(())
    }
    /// The token signing secret every server sharing the store uses: the first
    /// server's `candidate` is kept and answered to all. `None` for a store that
    /// cannot be shared; the server then keeps its secret in its data directory.
    async fn shared_secret(&self, _candidate: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(None)
    }
    /// Whether this server should do the once-per-cluster duties (the
    /// lost-runtime check) now: always for an unshared store; on a shared one,
    /// only the server holding the store's leader lock.
    async fn lead(&self) -> Result<bool> {
        Ok(true)
    }

    /// Leaves the store tidy for the next start, as the server stops (SQLite:
    /// the WAL copied back and emptied, so the next open has nothing to recover).
    /// Best effort: the store stays usable, and a crash instead is safe too.
    async fn close(&self) {}
}
