//! The server's settings, filled from flags and environment by the binary.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

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
    /// How often every session looks at its runtime's queue without being told.
    pub resync_every: Duration,
}

/// Failed logins allowed per window before answers turn to 429.
#[derive(Debug, Clone)]
pub struct LoginLimits {
    pub window: Duration,
    pub per_username: u32,
    pub per_address: u32,
}

impl Default for LoginLimits {
    fn default() -> LoginLimits {
        LoginLimits {
            window: Duration::from_secs(15 * 60),
            per_username: 10,
            per_address: 100,
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
            resync_every: Duration::from_secs(5),
        }
    }

    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("regente.db").display()))
    }
}
