//! Regente's storage: the [`Store`] traits and their backends. This crate is the
//! only place with SQL; the server reaches the database through `Arc<dyn Store>`
//! alone.
//!
//! Layout:
//! - `lib.rs`: [`Store`] (every aggregate's trait joined), [`Error`], [`open`],
//!   the [`prelude`].
//! - One module per aggregate, each with its records and its trait:
//!   [`organizations`] (and users), [`runtimes`], [`robots`], [`executions`] (the
//!   queue, logs, cancels), [`leases`] (the runtime protocol: claims, starts,
//!   reports, lost runtimes), [`events`] (the durable event stream every state
//!   change writes to, with consumers' cursors), [`flows`] (definitions in
//!   versions, runs and their steps), [`schedules`] (runs queued at the times of
//!   a rule, and every fire), [`cluster`] (several servers on one store), [`dashboard`]
//!   (hourly rollups of ended executions), [`api_keys`] (organisation API keys by
//!   their hash), [`audit`] (the audit log, written in the transaction of each
//!   change it records).
//! - [`sqlite`]: the embedded default (WAL, `synchronous=FULL`, one writer thread);
//!   [`postgres`]: for several servers on one database (row locks, `SKIP LOCKED`
//!   claims). Each has a module per aggregate beside its engine.
//! - `rows.rs` (rows into records, the execution filter) and `rules.rs` (how
//!   reports and lease ends change an execution, and the events every change
//!   writes): written once for both backends.
//! - [`copy`]: `regente store copy`.
//!
//! Every method that reads or changes something owned by an organisation takes the
//! organisation's id and filters on it, so a caller cannot reach another
//! organisation's rows by guessing ids.

use std::sync::Arc;

pub mod api_keys;
pub mod audit;
pub mod cluster;
pub mod copy;
pub mod credentials;
pub mod dashboard;
pub mod events;
pub mod executions;
pub mod flows;
pub mod histogram;
pub mod leases;
pub mod organizations;
pub mod postgres;
pub mod robots;
mod rows;
mod rules;
pub mod runtimes;
pub mod schedules;
pub mod sqlite;
pub mod webhooks;

pub use api_keys::{ApiKey, ApiKeyStore};
pub use audit::{AuditEntry, AuditFilter, AuditRecord, AuditStore};
pub use cluster::{ClusterStore, Notice};
pub use credentials::{
    Credential, CredentialStore, CredentialWrite, SealedCredential, SealedValue, SealedVariables,
    StoredValue, VaultKey,
};
pub use dashboard::{
    DashboardStore, EndedCount, HourCount, HourTimes, Hours, StatusCount, TimeKind, Totals,
};
pub use events::{EventCursor, EventFilter, EventKind, EventStore, EventsRead, StoredEvent};
pub use executions::{
    CancelOutcome, Enqueued, Execution, ExecutionFilter, ExecutionStore, IdempotencyKey, LogLine,
    NewExecution, LOG_LINES_READ_TOGETHER,
};
pub use flows::{
    Flow, FlowAdvance, FlowCancelOutcome, FlowRun, FlowStep, FlowStore, NewFlowRun, NewFlowVersion,
    WakingRun,
};
pub use histogram::{Histogram, HistogramSnapshot};
pub use leases::{Change, Claimed, EventRecord, EventsOutcome, Lease, LeaseStore, LostOutcome};
pub use organizations::{Organization, OrganizationStore, User};
pub use robots::{NewRobotVersion, Robot, RobotStore, RobotVersion, RunTarget};
pub use runtimes::{NewRuntime, Runtime, RuntimeDeletion, RuntimeSession, RuntimeStore};
pub use schedules::{
    Advance, FireOrigin, FireOutcome, FireRun, Fired, Firing, MissedFire, NewScheduledRun,
    PausedSchedule, RunEnd, RunEndsCounted, Schedule, ScheduleFire, ScheduleStore, ScheduleTarget,
    ScheduledRun,
};
pub use webhooks::{
    AttemptOutcome, DeliveryStatus, Webhook, WebhookAttempt, WebhookDelivery, WebhookStore,
};

/// The store's traits, for callers of `Arc<dyn Store>`: `use regente_store::prelude::*;`.
pub mod prelude {
    pub use crate::{
        ApiKeyStore, AuditStore, ClusterStore, CredentialStore, DashboardStore, EventStore,
        ExecutionStore, FlowStore, LeaseStore, OrganizationStore, RobotStore, RuntimeStore,
        ScheduleStore, Store, WebhookStore,
    };
}

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

/// A whole store: every aggregate's trait. Each backend implements the parts;
/// this one follows.
pub trait Store:
    OrganizationStore
    + AuditStore
    + RuntimeStore
    + RobotStore
    + ExecutionStore
    + LeaseStore
    + EventStore
    + FlowStore
    + CredentialStore
    + ApiKeyStore
    + ScheduleStore
    + ClusterStore
    + DashboardStore
    + WebhookStore
    + Send
    + Sync
    + 'static
{
}

impl<T> Store for T where
    T: OrganizationStore
        + AuditStore
        + RuntimeStore
        + RobotStore
        + ExecutionStore
        + LeaseStore
        + EventStore
        + FlowStore
        + CredentialStore
        + ApiKeyStore
        + ScheduleStore
        + ClusterStore
        + DashboardStore
        + WebhookStore
        + Send
        + Sync
        + 'static
{
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

/// The URL without its password, for messages.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return format!("{url:?}");
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((credentials, host)) if credentials.contains(':') => {
            let user = credentials.split(':').next().unwrap_or_default();
            format!("\"{scheme}://{user}:***@{host}{path}\"")
        }
        _ => format!("{url:?}"),
    }
}
