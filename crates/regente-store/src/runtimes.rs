//! Runtimes: the machines that run robots, known by the hash of their key.

use async_trait::async_trait;

use crate::{AuditEntry, Millis, Result};

#[derive(Debug, Clone, PartialEq)]
pub struct Runtime {
    pub id: String,
    pub organization_id: String,
    pub name: String,
    pub slots: u32,
    pub last_seen: Option<Millis>,
    pub created_at: Millis,
}

/// A new runtime; only the hash of its key is stored.
#[derive(Debug, Clone)]
pub struct NewRuntime {
    pub runtime: Runtime,
    pub key_hash: String,
}

/// What deleting a runtime did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeDeletion {
    Deleted,
    /// Refused: it is online (stop its agent first).
    Online,
    /// Refused: executions of it are queued or running.
    Busy,
}

/// The connection an online runtime is online through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeSession {
    pub runtime_id: String,
    pub session_id: String,
}

#[async_trait]
pub trait RuntimeStore: Send + Sync {
    /// The changes admins make take `audit`: the record of the change, written
    /// in its transaction only if the change is (see [`crate::audit`]).
    async fn create_runtime(&self, runtime: &NewRuntime, audit: Option<&AuditEntry>) -> Result<()>;
    async fn get_runtime(&self, organization_id: &str, id: &str) -> Result<Runtime>;
    /// Whether the organisation has this runtime (not deleted): what a run
    /// request checks, without reading and parsing the whole row.
    async fn runtime_exists(&self, organization_id: &str, id: &str) -> Result<bool>;
    async fn find_runtime_by_key_hash(&self, key_hash: &str) -> Result<Option<Runtime>>;
    async fn list_runtimes(&self, organization_id: &str) -> Result<Vec<Runtime>>;
    /// Renames a runtime; [`Error::NotFound`](crate::Error) when the
    /// organisation has no such runtime. `audit` is written only when the name
    /// changes.
    async fn rename_runtime(
        &self,
        organization_id: &str,
        id: &str,
        name: &str,
        audit: Option<&AuditEntry>,
    ) -> Result<()>;
    /// Deletes an offline runtime with nothing queued or running: it leaves every
    /// list and lookup and its key stops working, while its ended executions keep
    /// naming it. [`Error::NotFound`](crate::Error) when there is no such runtime.
    /// `audit` is written only when it is deleted.
    async fn delete_runtime(
        &self,
        organization_id: &str,
        id: &str,
        now: Millis,
        audit: Option<&AuditEntry>,
    ) -> Result<RuntimeDeletion>;
    /// Gives a runtime of the organisation a new key: the old one finds it no
    /// more. `NotFound` for a runtime of another organisation.
    async fn replace_runtime_key(
        &self,
        organization_id: &str,
        id: &str,
        key_hash: &str,
        audit: Option<&AuditEntry>,
    ) -> Result<()>;
    /// Records a heartbeat: the runtime was heard from at `seen`.
    async fn touch_runtime(&self, id: &str, seen: Millis) -> Result<()>;
    /// A connection of the runtime was registered: it becomes the runtime's
    /// current one and the runtime was heard from at `now`. True (and
    /// `runtime.online` recorded) when the runtime was offline; a connection
    /// replacing another (a reconnect that raced the end of the old one) keeps it
    /// online without an event.
    async fn runtime_connected(
        &self,
        runtime_id: &str,
        session_id: &str,
        now: Millis,
    ) -> Result<bool>;
    /// A connection of the runtime ended, or the runtime was given up for
    /// silence: when `session_id` is still its current connection, it goes
    /// offline (true, and `runtime.offline` recorded with `reason`); otherwise a
    /// newer connection holds it online and nothing changes.
    async fn runtime_disconnected(
        &self,
        runtime_id: &str,
        session_id: &str,
        reason: &str,
        now: Millis,
    ) -> Result<bool>;
    /// Runtimes online but not heard from since `seen_before`, with their
    /// current connection.
    async fn silent_runtimes(&self, seen_before: Millis) -> Result<Vec<RuntimeSession>>;
}
