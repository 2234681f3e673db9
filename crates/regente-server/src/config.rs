//! The server's settings, filled from flags and environment by the binary.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use crate::vault::keys::SecretText;

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// `sqlite://...`; `None` means `regente.db` in the data dir.
    pub database_url: Option<String>,
    /// Name and password of the first admin, used only when the store has no user.
    pub admin_username: String,
    pub admin_password: Option<String>,
    /// Signing secret for tokens; `None` means the one kept in the data dir.
    pub jwt_secret: Option<String>,
    pub token_lifetime: Duration,
    pub max_body_bytes: usize,
    pub max_package_bytes: usize,
    pub login_limits: LoginLimits,
    /// A runtime not heard from for this long is offline.
    pub runtime_timeout: Duration,
    /// Events of the store's event stream older than this are deleted.
    pub event_retention: Duration,
    /// Audit records older than this are deleted; `None` keeps them forever.
    pub audit_retention: Option<Duration>,
    /// How often every session looks at its runtime's queue without being told.
    pub resync_every: Duration,
    /// Whether this server runs the flow engine (when it leads). Off only in
    /// tests that need a run to stand still between two steps.
    pub flow_engine: bool,
    /// Deadlines and caps for slow, large or many clients.
    pub connections: ConnectionLimits,
    /// Certificate and key when the server terminates TLS itself.
    pub tls: Option<TlsFiles>,
    /// The vault's master key (`REGENTE_MASTER_KEY`, base64 of 32 bytes); `None`
    /// means the data dir's key file (or, on a shared store, no vault).
    pub master_key: Option<SecretText>,
    /// The key before a rotation (`REGENTE_MASTER_KEY_PREVIOUS`), still opened.
    pub master_key_previous: Option<SecretText>,
    /// The bearer token `/metrics` asks of its scraper
    /// (`REGENTE_METRICS_TOKEN`); `None` turns `/metrics` off.
    pub metrics_token: Option<SecretText>,
    /// The waits between a webhook delivery's attempts: one retry per wait,
    /// then the delivery has failed (`--webhook-retry-delays`).
    pub webhook_retry_delays: Vec<Duration>,
    /// Hosts, addresses or CIDRs webhooks may target even when they are
    /// link-local or cloud metadata addresses (`--webhook-allow-hosts`).
    pub webhook_allow_hosts: Vec<String>,
}

/// What the serving loop allows a client (see `serve`).
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    /// A request's head (and a TLS handshake) must arrive within this; also how
    /// long an idle kept-alive connection stays open.
    pub header_timeout: Duration,
    /// A request body must keep arriving at this many bytes per second on
    /// average, after a first `header_timeout` of grace.
    pub body_min_rate: u64,
    /// Connections open at once (agents' WebSockets included); past it new
    /// ones get a 503.
    pub max_connections: usize,
}

impl Default for ConnectionLimits {
    fn default() -> ConnectionLimits {
        ConnectionLimits {
            header_timeout: Duration::from_secs(10),
            body_min_rate: 8 * 1024,
            max_connections: 4096,
        }
    }
}

/// PEM files of the server's certificate chain and private key; read at start
/// and again on SIGHUP.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Failed logins allowed before answers turn to 429 (see `service::throttle`).
#[derive(Debug, Clone)]
pub struct LoginLimits {
    /// Failures are forgotten once this has passed since the last one.
    pub window: Duration,
    /// Failures of one username before each further attempt waits (1 s, 2 s,
    /// 4 s, ... up to `max_backoff`).
    pub per_username: u32,
    /// Failures from one address before it is refused until the window ends.
    pub per_address: u32,
    /// The longest wait between two attempts on one username.
    pub max_backoff: Duration,
}

impl Default for LoginLimits {
    fn default() -> LoginLimits {
        LoginLimits {
            window: Duration::from_secs(15 * 60),
            per_username: 10,
            per_address: 100,
            max_backoff: Duration::from_secs(60),
        }
    }
}

impl ServerConfig {
    pub fn new(data_dir: PathBuf) -> ServerConfig {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir,
            database_url: None,
            admin_username: "admin".into(),
            admin_password: None,
            jwt_secret: None,
            token_lifetime: Duration::from_secs(2_592_000),
            max_body_bytes: 1024 * 1024,
            max_package_bytes: 64 * 1024 * 1024,
            login_limits: LoginLimits::default(),
            runtime_timeout: Duration::from_secs(30),
            event_retention: Duration::from_secs(30 * 24 * 3600),
            audit_retention: None,
            resync_every: Duration::from_secs(5),
            flow_engine: true,
            connections: ConnectionLimits::default(),
            tls: None,
            master_key: None,
            master_key_previous: None,
            metrics_token: None,
            webhook_retry_delays: crate::webhooks::DEFAULT_RETRY_DELAYS
                .iter()
                .map(|seconds| Duration::from_secs(*seconds))
                .collect(),
            webhook_allow_hosts: Vec::new(),
        }
    }

    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("regente.db").display()))
    }
}
