//! Use cases: what the server does, independent of HTTP. Handlers in `api/` call
//! these; these call the [`Store`](regente_store::Store). No axum type appears here.

pub mod api_keys;
pub mod audit;
pub mod auth;
pub mod credentials;
pub mod dashboard;
pub mod ended_results;
mod flow_plan;
pub mod flows;
pub mod http_metrics;
pub mod metrics;
pub mod organizations;
mod password_hashing;
pub mod robots;
pub mod runs;
pub mod runtimes;
pub mod schedules;
pub mod sessions;
pub mod throttle;
pub mod users;
pub mod webhooks;

use std::sync::Arc;

use regente_store::{Millis, Notice, Store};

use crate::clock::Clock;
use crate::config::ServerConfig;
use crate::hub::Hub;
use auth::Auth;

/// Everything a use case needs, shared by all requests.
pub struct Context {
    pub store: Arc<dyn Store>,
    pub auth: Auth,
    pub config: ServerConfig,
    pub hub: Hub,
    pub manifests: robots::ManifestCache,
    /// The time every decision is made by.
    pub clock: Arc<dyn Clock>,
    /// The flow engine's wake-up and parsed definitions.
    pub flows: flows::Flows,
    /// The credentials vault's keys.
    pub vault: crate::vault::Vault,
    /// Wakes the scheduler: a schedule changed here or on another server.
    pub schedules_changed: tokio::sync::Notify,
    /// This server's answers by route, method and status, for `/metrics`.
    pub http_metrics: http_metrics::HttpMetrics,
    /// This server's expired leases and schedule fires, for `/metrics`.
    pub work_counts: metrics::WorkCounts,
    /// Wakes the webhooks' loop: a delivery was replayed, a webhook changed.
    pub webhooks_wake: tokio::sync::Notify,
    /// This server's webhook attempts by result, for `/metrics`.
    pub webhook_counts: crate::webhooks::sender::DeliveryCounts,
    /// The root organisation's id once read (it never changes), so that a
    /// failed login on an unknown name costs no more store reads than one on a
    /// known name.
    pub root_organization_id: std::sync::OnceLock<String>,
    /// Result answers of ended executions, which never change again.
    pub ended_results: ended_results::EndedResults,
}

impl Context {
    pub fn new(
        store: Arc<dyn Store>,
        auth: Auth,
        config: ServerConfig,
        clock: Arc<dyn Clock>,
    ) -> Context {
        Context {
            store,
            auth,
            config,
            hub: Hub::new(clock.now()),
            manifests: Default::default(),
            clock,
            flows: Default::default(),
            vault: crate::vault::Vault::off(),
            schedules_changed: tokio::sync::Notify::new(),
            http_metrics: Default::default(),
            work_counts: Default::default(),
            webhooks_wake: tokio::sync::Notify::new(),
            webhook_counts: Default::default(),
            root_organization_id: Default::default(),
            ended_results: Default::default(),
        }
    }

    /// The context with the vault opened at start.
    pub fn with_vault(mut self, vault: crate::vault::Vault) -> Context {
        self.vault = vault;
        self
    }

    /// For unit tests: a context on a new SQLite store in `dir`, with `clock`
    /// and a fixed signing secret; `configure` changes the config first.
    #[cfg(test)]
    pub async fn for_tests(
        dir: &std::path::Path,
        clock: Arc<dyn Clock>,
        configure: impl FnOnce(&mut ServerConfig),
    ) -> Context {
        let mut config = ServerConfig::new(dir.to_owned());
        configure(&mut config);
        let store = regente_store::open(&config.database_url())
            .await
            .expect("a store");
        let auth = Auth::new(&[7; 64], config.token_lifetime, config.login_limits.clone());
        Context::new(store, auth, config, clock)
    }

    /// For unit tests: a runtime in the root organisation; its id.
    #[cfg(test)]
    pub async fn runtime_for_tests(&self) -> String {
        organizations::bootstrap(self).await.unwrap();
        let organization_id = organizations::root_id(self).await.unwrap().unwrap();
        let new = regente_store::NewRuntime {
            runtime: regente_store::Runtime {
                id: "00000000000000a1".into(),
                organization_id,
                name: "desk".into(),
                slots: 1,
                last_seen: None,
                created_at: self.clock.now(),
            },
            key_hash: "hash".into(),
        };
        self.store.create_runtime(&new, None).await.unwrap();
        new.runtime.id
    }

    /// For unit tests: two events that ask nothing of the event stream's
    /// consumers (the runtime came and went).
    #[cfg(test)]
    pub async fn runtime_came_and_went(&self, runtime_id: &str, session: &str) {
        let now = self.clock.now();
        let store = &self.store;
        assert!(store
            .runtime_connected(runtime_id, session, now)
            .await
            .unwrap());
        assert!(store
            .runtime_disconnected(runtime_id, session, "gone", now)
            .await
            .unwrap());
    }
}

/// Who is calling, as established from a valid token, or the server itself
/// acting for an organisation (see [`Caller::system`]).
#[derive(Debug, Clone)]
pub struct Caller {
    /// A user's id, an API key's id (see `api_key_id`), or `KIND:ID` for the
    /// server acting on its own. What the caller does is recorded under it.
    pub user_id: String,
    /// The user's name; `api-key:NAME` for an API key.
    pub username: String,
    pub organization_id: String,
    pub role: regente_core::Role,
    /// The API key calling, if one is (then `user_id` is the key's id, and no
    /// user is behind the call).
    pub api_key_id: Option<String>,
    /// The client address the request came from, for the audit log; `None`
    /// for the server acting on its own.
    pub address: Option<std::net::IpAddr>,
}

impl Caller {
    /// A signed-in user.
    pub fn of_user(user: regente_store::User) -> Caller {
        Caller {
            user_id: user.id,
            username: user.username,
            organization_id: user.organization_id,
            role: user.role,
            api_key_id: None,
            address: None,
        }
    }

    /// The server acting on its own in an organisation, for the object that
    /// makes it act (`origin` e.g. `"schedule"`, with that schedule's id). What
    /// it does is recorded as done by `origin:id` (an execution's
    /// `submitted_by`), never by a user.
    pub fn system(organization_id: &str, origin: &str, id: &str) -> Caller {
        let name = format!("{origin}:{id}");
        Caller {
            user_id: name.clone(),
            username: name,
            organization_id: organization_id.to_owned(),
            role: regente_core::Role::Admin,
            api_key_id: None,
            address: None,
        }
    }

    /// Whether the server itself is acting, rather than a signed-in user.
    pub fn is_system(&self) -> bool {
        self.user_id.contains(':')
    }
}

/// What went wrong, in words a caller can act on. The API turns each variant into
/// its HTTP status; `Internal` keeps its cause for the server log only.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    TooManyRequests(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<regente_store::Error> for Error {
    fn from(error: regente_store::Error) -> Error {
        match error {
            regente_store::Error::NotFound => Error::NotFound("not found".into()),
            regente_store::Error::Conflict(what) => {
                Error::Conflict(format!("{what} already exists"))
            }
            regente_store::Error::Other(cause) => Error::Internal(cause),
        }
    }
}

/// Turns a store "not found" into a message naming what was looked for.
pub(crate) fn or_not_found<T>(
    result: regente_store::Result<T>,
    what: impl FnOnce() -> String,
) -> Result<T> {
    match result {
        Err(regente_store::Error::NotFound) => Err(Error::NotFound(what())),
        other => other.map_err(Error::from),
    }
}

/// Acts on a notice, from this server or another sharing the store.
pub(crate) fn apply(ctx: &Context, notice: &Notice) {
    match notice {
        Notice::UserDeleted { user_id } => ctx.auth.forget_user(user_id),
        // A key caller's `user_id` is the key's id.
        Notice::ApiKeyRevoked { key_id } => ctx.auth.forget_user(key_id),
        Notice::Resync => {
            ctx.auth.forget_all();
            ctx.flows.wake.notify_one();
            ctx.schedules_changed.notify_one();
        }
        Notice::ExecutionEnded {
            flow_step: true, ..
        } => ctx.flows.wake.notify_one(),
        Notice::SchedulesChanged => ctx.schedules_changed.notify_one(),
        _ => {}
    }
    ctx.hub.apply(notice);
}

/// Acts on a notice here at once, and tells the other servers sharing the store.
pub(crate) async fn announce(ctx: &Context, notice: Notice) {
    apply(ctx, &notice);
    if let Err(e) = ctx.store.publish(&notice).await {
        tracing::warn!(
            error = format!("{e:#}"),
            ?notice,
            "cannot tell the other servers"
        );
    }
}

/// An execution ended here: whoever waits for its end, here or elsewhere, reads
/// it again, and for a `flow_step` (true when not known) the flow engine, here
/// or on the leader, looks at the event stream now. Other ends it reads at its
/// next look: waking it for each would cost a read of the stream per run.
pub(crate) async fn execution_ended(ctx: &Context, execution_id: &str, flow_step: bool) {
    // This server's waiters and live pages here; the notice wakes the others'.
    ctx.hub
        .changed(crate::hub::Changed::Execution(execution_id.to_owned()));
    let execution_id = execution_id.to_owned();
    announce(
        ctx,
        Notice::ExecutionEnded {
            execution_id,
            flow_step,
        },
    )
    .await;
}

/// The machine's time, for what is not a decision by time: ids and error
/// timestamps. Decisions use the [`Context`]'s clock.
pub fn now_millis() -> Millis {
    crate::clock::Clock::now(&crate::clock::SystemClock)
}

/// A fresh object id, 16 lowercase hex digits: the millisecond it was made,
/// then 32 random bits (see [`regente_core::ids::id_bits`]).
pub fn new_id() -> String {
    regente_core::ids::format_id(regente_core::ids::id_bits(
        now_millis() as u64,
        rand::random(),
    ))
}

/// A random string of `len` characters from `[A-Za-z0-9]`.
pub fn random_alphanumeric(len: usize) -> String {
    use rand::distributions::{Alphanumeric, DistString};
    Alphanumeric.sample_string(&mut rand::rngs::OsRng, len)
}

/// Characters a runtime or organization name may have (before the surrounding
/// spaces are trimmed; what the OpenAPI document's `maxLength` counts).
pub const MAX_NAME_LEN: usize = 200;

/// A runtime or organization name, trimmed: 1 to [`MAX_NAME_LEN`] characters
/// as sent, not all spaces, with no control characters.
pub(crate) fn check_name<'a>(what: &str, name: &'a str) -> Result<&'a str> {
    let trimmed = name.trim();
    if trimmed.is_empty()
        || name.chars().count() > MAX_NAME_LEN
        || name.chars().any(char::is_control)
    {
        return Err(Error::Invalid(format!(
            "{what} must have 1 to {MAX_NAME_LEN} characters, not all spaces, with no control characters"
        )));
    }
    Ok(trimmed)
}
