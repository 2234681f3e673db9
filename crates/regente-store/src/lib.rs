//! Regente's storage: the [`Store`] trait and its backends. This crate is the only
//! place with SQL; the server reaches the database through `Arc<dyn Store>` alone.
//!
//! Layout:
//! - `lib.rs`: the trait, the records it speaks in, [`Error`] and [`open`].
//! - [`sqlite`]: the embedded default (WAL, `synchronous=FULL`, one writer connection).
//! - [`postgres`]: for several servers on one database (row locks, `SKIP LOCKED` claims).
//!
//! Every method that reads or changes something owned by an organisation takes the
//! organisation's id and filters on it, so a caller cannot reach another
//! organisation's rows by guessing ids.

use std::sync::Arc;

use async_trait::async_trait;
use regente_core::{ExecutionStatus, Role};
use serde_json::Value;
use tokio::sync::broadcast;

pub mod copy;
pub mod postgres;
mod rows;
pub mod sqlite;

/// Milliseconds since the Unix epoch, the unit of every stored time.
pub type Millis = i64;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("not found")]
    NotFound,
    /// A uniqueness rule was broken; the text names what was duplicated.
    #[error("{0} already exists")]
    Conflict(&'static str),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, Clone, PartialEq)]
pub struct Organization {
    pub id: String,
    pub name: String,
    /// The organisation created at bootstrap; its admins may create others.
    pub is_root: bool,
    pub created_at: Millis,
}

#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub id: String,
    pub organization_id: String,
    pub username: String,
    pub password_hash: String,
    pub role: Role,
    pub created_at: Millis,
}

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

#[derive(Debug, Clone, PartialEq)]
pub struct Robot {
    pub id: String,
    pub organization_id: String,
    pub name: String,
    pub created_at: Millis,
    /// Oldest first.
    pub versions: Vec<RobotVersion>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RobotVersion {
    pub version: u32,
    pub sha256: String,
    /// The `robot.toml` text as uploaded.
    pub manifest: String,
    pub size: u64,
    pub created_at: Millis,
}

/// A package to store as the next version of the robot its manifest names.
#[derive(Debug, Clone)]
pub struct NewRobotVersion {
    pub organization_id: String,
    /// Used when the robot does not exist yet.
    pub new_robot_id: String,
    pub name: String,
    pub sha256: String,
    pub manifest: String,
    pub package: Vec<u8>,
    pub created_at: Millis,
}

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
    /// Queue order; larger is newer.
    pub seq: i64,
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

#[derive(Debug, Clone, Default)]
pub struct ExecutionFilter {
    pub status: Option<ExecutionStatus>,
    pub robot_id: Option<String>,
    pub runtime_id: Option<String>,
    /// Submitted at or after.
    pub from: Option<Millis>,
    /// Submitted before.
    pub to: Option<Millis>,
    /// Only executions older (smaller `seq`) than this: the page cursor.
    pub before_seq: Option<i64>,
    pub limit: u32,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    // Organisations and users.
    async fn root_organization(&self) -> Result<Option<Organization>>;
    async fn get_organization(&self, id: &str) -> Result<Organization>;
    /// Creates an organisation with its first admin, atomically.
    async fn create_organization(&self, organization: &Organization, admin: &User) -> Result<()>;
    async fn count_users(&self) -> Result<u64>;
    async fn create_user(&self, user: &User) -> Result<()>;
    async fn find_user_by_username(&self, username: &str) -> Result<Option<User>>;
    async fn get_user(&self, id: &str) -> Result<User>;
    async fn list_users(&self, organization_id: &str) -> Result<Vec<User>>;
    async fn delete_user(&self, organization_id: &str, id: &str) -> Result<()>;

    // Runtimes.
    async fn create_runtime(&self, runtime: &NewRuntime) -> Result<()>;
    async fn get_runtime(&self, organization_id: &str, id: &str) -> Result<Runtime>;
    async fn find_runtime_by_key_hash(&self, key_hash: &str) -> Result<Option<Runtime>>;
    async fn list_runtimes(&self, organization_id: &str) -> Result<Vec<Runtime>>;
    async fn touch_runtime(&self, id: &str, seen: Millis) -> Result<()>;

    // Robots.
    /// Stores a package as version 1 of a new robot, or as the next version of the
    /// robot of that name in the organisation. Returns the robot's id and version.
    async fn add_robot_version(&self, new: &NewRobotVersion) -> Result<(String, u32)>;
    async fn get_robot(&self, organization_id: &str, id: &str) -> Result<Robot>;
    /// The robot's newest version (what a run uses), without the others.
    async fn latest_robot_version(&self, organization_id: &str, id: &str) -> Result<RobotVersion>;
    async fn list_robots(&self, organization_id: &str) -> Result<Vec<Robot>>;
    async fn robot_package(
        &self,
        organization_id: &str,
        robot_id: &str,
        version: u32,
    ) -> Result<Vec<u8>>;

    // Executions.
    /// Queues an execution; it is on disk when this returns.
    async fn enqueue(&self, new: &NewExecution, key: Option<&IdempotencyKey>) -> Result<Enqueued>;
    async fn get_execution(&self, organization_id: &str, id: &str) -> Result<Execution>;
    async fn execution_logs(&self, organization_id: &str, id: &str) -> Result<Vec<LogLine>>;
    async fn list_executions(
        &self,
        organization_id: &str,
        filter: &ExecutionFilter,
    ) -> Result<Vec<Execution>>;
    /// How many PENDENT executions are ahead of this one on its runtime.
    async fn queue_position(&self, execution: &Execution) -> Result<u64>;
    /// Cancels a PENDENT execution, or marks a RUNNING one for cancellation.
    async fn cancel(
        &self,
        organization_id: &str,
        id: &str,
        canceled_by: &str,
        now: Millis,
    ) -> Result<CancelOutcome>;

    // The runtime protocol.
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
    /// Ends a lease whose runtime was lost or gave it up. When `started` is false
    /// the robot certainly never ran, so the execution goes back to the queue;
    /// otherwise it is queued again only if the robot allows retries, else ended
    /// with `reason` logged.
    async fn end_lease(
        &self,
        execution_id: &str,
        lease: &str,
        started: bool,
        reason: &str,
        now: Millis,
    ) -> Result<LostOutcome>;

    // Several servers on one store.
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
    /// A user was deleted: forget the tokens of theirs known valid.
    UserDeleted { user_id: String },
    /// Notices may have been missed (a listener reconnected): look again.
    Resync,
}

/// Opens the store a URL names (`sqlite://PATH`, or `postgres://...` /
/// `postgresql://...`), creating and migrating it.
pub async fn open(url: &str) -> anyhow::Result<Arc<dyn Store>> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(sqlite::SqliteStore::open(url).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(postgres::PostgresStore::open(url).await?))
    } else {
        let scheme = url.split_once(':').map_or("", |(scheme, _)| scheme);
        anyhow::bail!(
            "unsupported database URL scheme {scheme:?}: use sqlite://PATH or postgres://USER:PASSWORD@HOST:PORT/DATABASE"
        )
    }
}
