//! Build, then run: [`Server::build`] binds the listener (port 0 is fine), opens
//! and migrates the store and bootstraps the first admin; [`Server::run`] serves
//! (with the sweeper, the notice relay, event retention and the scheduler beside) until the
//! shutdown future completes.

use std::future::Future;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tracing::{error, info, warn};

/// The start of the line the binary prints on stdout once it accepts
/// connections, before the URL's scheme.
const LISTENING: &str = "regente listening on ";

/// The line `regente serve` prints once it accepts connections: whoever starts
/// the binary (tests, the benchmark, scripts) waits for it to learn the port.
pub fn listening_line(addr: SocketAddr, tls: bool) -> String {
    let scheme = if tls { "https" } else { "http" };
    format!("{LISTENING}{scheme}://{addr}")
}

/// The base URL (`http://ADDR` or `https://ADDR`) in a [`listening_line`];
/// `None` for any other line.
pub fn parse_listening_url(line: &str) -> Option<String> {
    let url = line.trim().strip_prefix(LISTENING)?;
    parse_listening_line(line).map(|_| url.to_owned())
}

/// The address in a [`listening_line`]; `None` for any other line.
pub fn parse_listening_line(line: &str) -> Option<SocketAddr> {
    let url = line.trim().strip_prefix(LISTENING)?;
    url.strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))?
        .parse()
        .ok()
}

/// How long background tasks may take to stop after the requests are done.
const BACKGROUND_STOP: std::time::Duration = std::time::Duration::from_secs(5);

use crate::clock::SystemClock;
use crate::config::ServerConfig;
use crate::hub;
use crate::serve::tls::ReloadableTls;
use crate::service::organizations::Bootstrap;
use crate::service::{self, auth::Auth, Context};
use crate::supervisor::Supervisor;

pub struct Server {
    listener: TcpListener,
    tls: Option<(Arc<ReloadableTls>, Hangups)>,
    ctx: Arc<Context>,
    /// What the start did about the first admin.
    bootstrap: Bootstrap,
}

impl Server {
    pub async fn build(mut config: ServerConfig) -> anyhow::Result<Server> {
        // Resolved once, so that what is printed and used later does not depend
        // on the working directory.
        config.data_dir = std::path::absolute(&config.data_dir).with_context(|| {
            format!(
                "cannot resolve the data directory {}",
                config.data_dir.display()
            )
        })?;
        create_private_dir(&config.data_dir)?;
        let store = regente_store::open(&config.database_url()).await?;
        let secret = jwt_secret(&config, store.as_ref()).await?;
        let auth = Auth::new(&secret, config.token_lifetime, config.login_limits.clone());
        let tls = match &config.tls {
            Some(files) => Some((
                Arc::new(ReloadableTls::load(files.clone())?),
                listen_for_hangups()?,
            )),
            None => None,
        };
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let vault = crate::vault::open(&config, store.as_ref()).await?;
        let ctx =
            Arc::new(Context::new(store, auth, config, Arc::new(SystemClock)).with_vault(vault));
        let bootstrap = service::organizations::bootstrap(&ctx)
            .await
            .context("cannot create the first admin")?;
        service::organizations::root_id(&ctx)
            .await
            .context("cannot read the root organisation")?;
        Ok(Server {
            listener,
            tls,
            ctx,
            bootstrap,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Whether the server speaks TLS itself.
    pub fn tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The base URL clients reach the server at.
    pub fn url(&self) -> String {
        let scheme = if self.tls() { "https" } else { "http" };
        format!("{scheme}://{}", self.local_addr())
    }

    /// The data directory, absolute.
    pub fn data_dir(&self) -> &Path {
        &self.ctx.config.data_dir
    }

    /// The shared state, for in-process callers such as `regente up`.
    pub fn context(&self) -> Arc<Context> {
        self.ctx.clone()
    }

    /// The first admin's generated password, when one was generated now.
    pub fn generated_admin_password(&self) -> Option<&str> {
        match &self.bootstrap {
            Bootstrap::Created { generated_password } => generated_password.as_deref(),
            Bootstrap::Existing => None,
        }
    }

    /// Why the configured admin settings were ignored, when they were and differ
    /// from what the store holds (on a store that had its admin already).
    pub async fn ignored_admin_settings(&self) -> anyhow::Result<Option<String>> {
        match &self.bootstrap {
            Bootstrap::Existing => service::organizations::ignored_admin_settings(&self.ctx).await,
            Bootstrap::Created { .. } => Ok(None),
        }
    }

    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let addr = self.local_addr();
        let app = crate::api::router(self.ctx.clone());
        let mut background = Supervisor::new(self.ctx.clone());
        background.spawn("lost-runtime sweeper", hub::sweeper::run);
        background.spawn("notices", hub::notices::run);
        background.spawn("flow engine", crate::flow_engine::run);
        background.every_as_leader(
            "event retention",
            crate::retention::PRUNE_EVERY,
            crate::retention::prune,
        );
        background.spawn("scheduler", crate::scheduler::run);
        background.spawn("webhooks", crate::webhooks::run);
        if self.bootstrap == Bootstrap::Existing {
            background.spawn("admin settings check", |ctx, _stop| async move {
                match service::organizations::ignored_admin_settings(&ctx).await {
                    Ok(Some(why)) => warn!("{why}"),
                    Ok(None) => {}
                    Err(e) => warn!(error = %e, "cannot check the configured admin settings"),
                }
            });
        }
        background.every_as_leader(
            "schedule failures",
            crate::scheduler::COUNT_FAILURES_EVERY,
            crate::scheduler::count_failures,
        );
        info!(%addr, tls = self.tls.is_some(), "listening");
        let (tls, reloading) = match self.tls {
            Some((tls, hangups)) => {
                let reloading = tokio::spawn(reload_on_hangup(tls.clone(), hangups));
                (Some(tls), Some(reloading))
            }
            None => (None, None),
        };
        crate::serve::serve(
            self.listener,
            app,
            self.ctx.config.connections.clone(),
            tls,
            shutdown,
        )
        .await;
        if let Some(reloading) = reloading {
            reloading.abort();
        }
        background.stop(BACKGROUND_STOP).await;
        self.ctx.store.close().await;
        info!("stopped");
        Ok(())
    }
}

/// SIGHUP, listened for from the build on (so that one sent as soon as the
/// server is up does not end the process).
#[cfg(unix)]
type Hangups = tokio::signal::unix::Signal;
#[cfg(not(unix))]
type Hangups = ();

fn listen_for_hangups() -> anyhow::Result<Hangups> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        signal(SignalKind::hangup()).context("cannot listen for SIGHUP (TLS reloads)")
    }
    #[cfg(not(unix))]
    Ok(())
}

/// Reads the certificate and key again on every SIGHUP.
#[allow(unused_mut, unused_variables)]
async fn reload_on_hangup(tls: Arc<ReloadableTls>, mut hangups: Hangups) {
    #[cfg(unix)]
    while hangups.recv().await.is_some() {
        let files = tls.files();
        match tls.reload() {
            Ok(()) => info!(cert = %files.cert.display(), "TLS certificate reloaded"),
            Err(e) => error!(
                error = format!("{e:#}"),
                "cannot reload the TLS certificate: the current one stays in use"
            ),
        }
    }
}

fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .with_context(|| format!("cannot create the data directory {}", dir.display()))
}

/// The token signing secret: from the configuration; else, on a store shared by
/// several servers, kept in the store so that they all accept each other's
/// tokens; else kept in the data dir (generated at first start, 64 random bytes,
/// readable by the owner only).
async fn jwt_secret(
    config: &ServerConfig,
    store: &dyn regente_store::Store,
) -> anyhow::Result<Vec<u8>> {
    if let Some(secret) = &config.jwt_secret {
        anyhow::ensure!(
            secret.len() >= 32,
            "REGENTE_JWT_SECRET must have at least 32 bytes"
        );
        return Ok(secret.as_bytes().to_vec());
    }
    let mut candidate = [0u8; 64];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut candidate);
    if let Some(shared) = store.shared_secret(&candidate).await? {
        return Ok(shared);
    }
    let path = config.data_dir.join("jwt-secret");
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let secret = hex::decode(text.trim())
                .with_context(|| format!("{} is not hex", path.display()))?;
            anyhow::ensure!(secret.len() >= 32, "{} is too short", path.display());
            return Ok(secret);
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
    let secret = candidate;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(hex::encode(secret).as_bytes())?;
    file.sync_all()?;
    Ok(secret.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listening_line_gives_back_its_address() {
        let addr: SocketAddr = "127.0.0.1:43210".parse().unwrap();
        assert_eq!(
            parse_listening_line(&listening_line(addr, false)),
            Some(addr)
        );
        assert_eq!(
            parse_listening_line(&listening_line(addr, true)),
            Some(addr)
        );
        assert_eq!(
            parse_listening_line(&format!("  {}\n", listening_line(addr, false))),
            Some(addr)
        );
        assert_eq!(
            parse_listening_url(&listening_line(addr, true)).as_deref(),
            Some("https://127.0.0.1:43210")
        );
        assert_eq!(parse_listening_line("first admin created: ..."), None);
        assert_eq!(
            parse_listening_line("regente listening on http://nowhere"),
            None
        );
    }
}
