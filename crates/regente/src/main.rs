//! `regente`: one binary for the server, the runtime agent and the CLI.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

mod cli;
mod examples;
mod needs;
mod up;
use regente_server::{ConnectionLimits, LoginLimits, Server, ServerConfig, TlsFiles};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "regente",
    version,
    about = "Regente, a self-hosted RPA orchestrator"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the orchestrator server.
    Serve(ServeArgs),
    /// Run a runtime agent: connect to a server and run the robots it hands out.
    Runtime(RuntimeArgs),
    /// Run everything on this machine for a first try: a server, a local runtime and the example robots.
    Up(UpArgs),
    /// Manage the store: the database of users, runtimes, robots and executions.
    #[command(subcommand)]
    Store(StoreCommand),
    /// Operator tasks run against the store itself (the server may be running or not).
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Sign in to a server; later commands use the kept token.
    Login(cli::LoginArgs),
    /// Push robots and list them.
    #[command(subcommand)]
    Robots(cli::RobotsCommand),
    /// List runtimes.
    #[command(subcommand)]
    Runtimes(cli::RuntimesCommand),
    /// Run a robot; with --wait or --follow, the exit status says how it ended (0 FINISHED, 1 ERROR, 3 CANCELED).
    Run(cli::RunArgs),
    /// List, show and cancel executions.
    #[command(subcommand)]
    Executions(cli::ExecutionsCommand),
    /// Store credentials in the vault (write-only) and list them.
    #[command(subcommand)]
    Credentials(cli::CredentialsCommand),
    /// Create organisation API keys (printed once), list and revoke them.
    #[command(subcommand)]
    ApiKeys(cli::ApiKeysCommand),
    /// Create webhooks (their secret printed once), change them; their deliveries and replays.
    #[command(subcommand)]
    Webhooks(cli::WebhooksCommand),
    /// List and show schedules; pause, resume or run one now.
    #[command(subcommand)]
    Schedules(cli::SchedulesCommand),
    /// List flows, run one (--wait: the exit status says how it ended), show a run.
    #[command(subcommand)]
    Flows(cli::FlowsCommand),
    /// The audit log: who changed what, newest first (admins).
    #[command(subcommand)]
    Audit(cli::AuditCommand),
    /// The vault's master key, run against the store (the servers may be running).
    #[command(subcommand)]
    Vault(VaultCommand),
    /// The guard process between the agent and one robot (internal).
    #[command(name = "__guard", hide = true)]
    Guard { agent_pid: i32 },
}

/// The agent's pid when the arguments are exactly `__guard PID`.
fn guard_invocation() -> Option<i32> {
    let mut args = std::env::args_os().skip(1);
    let (command, pid) = (args.next()?, args.next()?);
    if command != "__guard" || args.next().is_some() {
        return None;
    }
    pid.to_str()?.parse().ok()
}

fn run_guard(agent_pid: i32) -> ExitCode {
    let code = regente_runtime::guard::run(agent_pid);
    ExitCode::from(code.clamp(0, 255) as u8)
}

#[derive(Subcommand)]
enum StoreCommand {
    /// Copy a whole store, history included, into an empty one (e.g. from SQLite to PostgreSQL).
    ///
    /// Stop the servers using the source first: what they write during the copy is
    /// not copied. The source is read in one snapshot and left unchanged, except
    /// that a store written by an older Regente is first migrated to the current
    /// schema. The target is created and migrated if needed; it must hold no row at
    /// all, and it is written in one transaction, so a failed copy leaves it empty.
    /// Users with their password hashes, runtimes (their keys keep working), robots
    /// with their packages, executions, logs and idempotency keys are copied as they
    /// are. Tokens signed by the old server are accepted by the new ones only if they
    /// use the same signing secret (--jwt-secret); otherwise users log in again.
    Copy(StoreCopyArgs),
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Set a new password for a user and print it (a generated one, unless --password-stdin).
    ///
    /// For a lost admin password: run it with the server's --data-dir (or
    /// --database-url). Tokens already issued stay valid until they expire.
    ResetPassword(ResetPasswordArgs),
}

#[derive(Subcommand)]
enum VaultCommand {
    /// Seal every value of the vault again under a new master key, while servers run.
    ///
    /// With the data directory's key file: a new key is made and written as the
    /// file's `current` key (the old one kept as `previous` until the end); back
    /// the file up afterwards. With REGENTE_MASTER_KEY (servers on PostgreSQL):
    /// restart every server with the new key as REGENTE_MASTER_KEY and the old as
    /// REGENTE_MASTER_KEY_PREVIOUS, run this with the same two, then restart the
    /// servers without REGENTE_MASTER_KEY_PREVIOUS. An interrupted rotation is
    /// finished by running it again.
    RotateKey(StoreArgs),
}

/// Which store a command runs against.
#[derive(Args)]
struct StoreArgs {
    /// The server's data directory (its SQLite store and key file).
    #[arg(long, env = "REGENTE_DATA_DIR", default_value = "./regente-data")]
    data_dir: PathBuf,
    /// The server's database URL; default: the SQLite file in the data directory.
    #[arg(long, env = "REGENTE_DATABASE_URL")]
    database_url: Option<String>,
}

#[derive(Args)]
struct ResetPasswordArgs {
    /// The user's username.
    username: String,
    #[command(flatten)]
    store: StoreArgs,
    /// Read the new password from the first line of standard input instead of generating one.
    #[arg(long)]
    password_stdin: bool,
}

#[derive(Args)]
struct StoreCopyArgs {
    /// The store to copy, e.g. sqlite://./regente-data/regente.db.
    #[arg(long, value_name = "URL")]
    from: String,
    /// The empty store to copy into, e.g. postgres://USER:PASSWORD@HOST:5432/regente.
    #[arg(long, value_name = "URL")]
    to: String,
}

#[derive(Args)]
struct UpArgs {
    /// Address to listen on.
    #[arg(long, env = "REGENTE_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Directory for the database, the secret and the local runtime's work.
    #[arg(long, env = "REGENTE_DATA_DIR", default_value = "./regente-data")]
    data_dir: PathBuf,
    /// Username of the first admin.
    #[arg(long, env = "REGENTE_ADMIN_USER", default_value = "admin")]
    admin_user: String,
    /// Password of the first admin; generated and printed once when absent.
    #[arg(long, env = "REGENTE_ADMIN_PASSWORD", hide_env_values = true)]
    admin_password: Option<String>,
    /// Robots the local runtime runs at once.
    #[arg(long, default_value_t = 2)]
    slots: u32,
    /// Install Robot Framework (for the Robot Framework example) into a Python
    /// environment of the data directory's own, unless robots can import it already.
    #[arg(long = "with-robotframework")]
    with_robot_framework: bool,
}

#[derive(Args)]
struct RuntimeArgs {
    /// Server base URL, e.g. http://127.0.0.1:8080; repeat (or separate with commas) for several servers.
    #[arg(
        long = "server",
        env = "REGENTE_SERVER",
        value_delimiter = ',',
        required = true
    )]
    servers: Vec<String>,
    /// The runtime's key, as shown when the runtime was created. Prefer the
    /// environment variable or --key-file: arguments are visible to every local user.
    #[arg(
        long,
        env = "REGENTE_RUNTIME_KEY",
        hide_env_values = true,
        required_unless_present = "key_file",
        conflicts_with = "key_file"
    )]
    key: Option<String>,
    /// A file holding the runtime's key.
    #[arg(long, env = "REGENTE_RUNTIME_KEY_FILE")]
    key_file: Option<PathBuf>,
    /// Directory for the journal of unacknowledged events and the package cache.
    #[arg(long, env = "REGENTE_WORK_DIR", default_value = "./regente-runtime")]
    work_dir: PathBuf,
    /// Robots run at once, at most the slots set for the runtime on the server (the default).
    #[arg(long, env = "REGENTE_SLOTS")]
    slots: Option<u32>,
    /// PEM certificates of a private CA to trust for https:// servers, beside the system's roots.
    #[arg(long, env = "REGENTE_CA_FILE")]
    ca_file: Option<PathBuf>,
    /// Run robots as this OS user instead of the agent's (the agent runs as root); repeat, or separate
    /// with commas, for one user per robot running at once, which keeps robots from each other's files,
    /// environment and processes. The agent runs at most as many robots as it has users.
    #[arg(long = "robot-user", env = "REGENTE_ROBOT_USER", value_delimiter = ',')]
    robot_users: Vec<String>,
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "REGENTE_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Directory for the embedded database and the token signing secret.
    #[arg(long, env = "REGENTE_DATA_DIR", default_value = "./regente-data")]
    data_dir: PathBuf,
    /// Database URL; default: a SQLite file in the data directory.
    #[arg(long, env = "REGENTE_DATABASE_URL")]
    database_url: Option<String>,
    /// Username of the first admin, created when the store has no user.
    #[arg(long, env = "REGENTE_ADMIN_USER", default_value = "admin")]
    admin_user: String,
    /// Password of the first admin; generated and printed once when absent.
    #[arg(long, env = "REGENTE_ADMIN_PASSWORD", hide_env_values = true)]
    admin_password: Option<String>,
    /// Token signing secret (at least 32 bytes); default: generated into the data directory.
    #[arg(long, env = "REGENTE_JWT_SECRET", hide_env_values = true)]
    jwt_secret: Option<String>,
    /// Largest robot package accepted, in bytes.
    #[arg(long, env = "REGENTE_MAX_PACKAGE_BYTES", default_value_t = 64 * 1024 * 1024)]
    max_package_bytes: usize,
    /// Failed logins per username before each further attempt on it waits (1 s, doubling).
    #[arg(long, env = "REGENTE_LOGIN_FAILURES_PER_USER", default_value_t = 10)]
    login_failures_per_user: u32,
    /// The longest wait between two login attempts on one username, in seconds.
    #[arg(long, env = "REGENTE_LOGIN_MAX_BACKOFF_SECONDS", default_value_t = 60)]
    login_max_backoff_seconds: u64,
    /// Failed logins per client address allowed in 15 minutes before answers turn to 429.
    #[arg(
        long,
        env = "REGENTE_LOGIN_FAILURES_PER_ADDRESS",
        default_value_t = 100
    )]
    login_failures_per_address: u32,
    /// Seconds without word from a runtime before it is offline and its running executions are lost.
    #[arg(long, env = "REGENTE_RUNTIME_TIMEOUT_SECONDS", default_value_t = 30.0)]
    runtime_timeout_seconds: f64,
    /// Days the event stream keeps an event (execution and runtime changes) before deleting it.
    #[arg(long, env = "REGENTE_EVENT_RETENTION_DAYS", default_value_t = 30)]
    event_retention_days: u32,
    /// Days the audit log keeps a record before deleting it; unset, records are kept forever.
    #[arg(long, env = "REGENTE_AUDIT_RETENTION_DAYS")]
    audit_retention_days: Option<u32>,
    /// Seconds between two looks at every runtime's queue without being told (the safety net under
    /// wake-ups and other servers' notices).
    #[arg(
        long,
        env = "REGENTE_RESYNC_SECONDS",
        default_value_t = 5.0,
        hide = true
    )]
    resync_seconds: f64,
    /// `off` keeps this server from running the flow engine: for tests that need a flow run to
    /// stand still between two steps.
    #[arg(long, env = "REGENTE_FLOW_ENGINE", default_value = "on", value_parser = ["on", "off"], hide = true)]
    flow_engine: String,
    /// PEM certificate chain: the server speaks HTTPS itself (with --tls-key; reread on SIGHUP).
    #[arg(long, env = "REGENTE_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "REGENTE_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Seconds a client has to send a request's headers (and finish a TLS handshake); also how long
    /// an idle connection stays open.
    #[arg(long, env = "REGENTE_HEADER_TIMEOUT_SECONDS", default_value_t = 10.0)]
    header_timeout_seconds: f64,
    /// Bytes per second a request body must arrive at, on average, after the header timeout's grace.
    #[arg(
        long,
        env = "REGENTE_BODY_MIN_BYTES_PER_SECOND",
        default_value_t = 8192
    )]
    body_min_bytes_per_second: u64,
    /// Connections open at once (runtime agents' included); past it new ones get a 503.
    #[arg(long, env = "REGENTE_MAX_CONNECTIONS", default_value_t = 4096)]
    max_connections: usize,
    /// Waits between a webhook delivery's attempts, comma-separated (ms, s, m, h): one retry per
    /// wait, then the delivery has failed.
    #[arg(
        long,
        env = "REGENTE_WEBHOOK_RETRY_DELAYS",
        default_value_t = regente_server::webhooks::default_retry_delays_text()
    )]
    webhook_retry_delays: String,
    /// Hosts, addresses or CIDRs webhooks may target even when link-local or cloud metadata
    /// addresses (refused otherwise); comma-separated.
    #[arg(long, env = "REGENTE_WEBHOOK_ALLOW_HOSTS", value_delimiter = ',')]
    webhook_allow_hosts: Vec<String>,
}

fn main() -> ExitCode {
    // A guard starts with every robot: it stays tiny (no logging, no async
    // runtime) and, as the agent always calls it `regente __guard PID`, skips
    // building the command-line parser too. Any other form goes through clap.
    if let Some(agent_pid) = guard_invocation() {
        return run_guard(agent_pid);
    }
    // Everything the server, the agent and the commands create is private to
    // their user (the data directory, the database, journals, run directories),
    // whatever the caller's umask; robots start with it too.
    regente_runtime::hardening::private_umask();
    let cli = Cli::parse();
    if let Command::Runtime(_) = &cli.command {
        // Read already; hidden before any thread starts.
        regente_runtime::hardening::hide_key();
    }
    if let Command::Guard { agent_pid } = &cli.command {
        return run_guard(*agent_pid);
    }
    // The commands for people and scripts log nothing unless asked (REGENTE_LOG),
    // and run on this thread alone: a command is one request or a few in turn.
    let for_people = matches!(
        cli.command,
        Command::Login(_)
            | Command::Robots(_)
            | Command::Runtimes(_)
            | Command::Run(_)
            | Command::Executions(_)
            | Command::Credentials(_)
            | Command::ApiKeys(_)
            | Command::Webhooks(_)
            | Command::Schedules(_)
            | Command::Flows(_)
            | Command::Audit(_)
    );
    let default_filter = if for_people { "warn" } else { "info" };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("REGENTE_LOG")
                .unwrap_or_else(|_| EnvFilter::new(default_filter)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = if for_people {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Runtime::new()
    };
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let done = |outcome: anyhow::Result<()>| outcome.map(|()| ExitCode::SUCCESS);
    let outcome = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => done(serve(args).await),
            Command::Runtime(args) => done(runtime_agent(args).await),
            Command::Up(args) => {
                let options = up::UpOptions {
                    listen: args.listen,
                    data_dir: args.data_dir,
                    admin_username: args.admin_user,
                    admin_password: args.admin_password,
                    slots: args.slots.max(1),
                    with_robot_framework: args.with_robot_framework,
                };
                done(up::up(options, shutdown_signal()).await)
            }
            Command::Store(StoreCommand::Copy(args)) => done(store_copy(args).await),
            Command::Admin(AdminCommand::ResetPassword(args)) => done(reset_password(args).await),
            Command::Login(args) => cli::login(args).await,
            Command::Robots(command) => cli::robots(command).await,
            Command::Runtimes(command) => cli::runtimes(command).await,
            Command::Run(args) => cli::run(args).await,
            Command::Executions(command) => cli::executions(command).await,
            Command::Credentials(command) => cli::credentials(command).await,
            Command::ApiKeys(command) => cli::api_keys(command).await,
            Command::Webhooks(command) => cli::webhooks(command).await,
            Command::Schedules(command) => cli::schedules(command).await,
            Command::Flows(command) => cli::flows(command).await,
            Command::Audit(command) => cli::audit(command).await,
            Command::Vault(VaultCommand::RotateKey(args)) => done(rotate_key(args).await),
            Command::Guard { .. } => unreachable!("the guard runs before the async runtime"),
        }
    });
    match outcome {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            // 1 and 3 say how a run ended: a command that failed says 2.
            ExitCode::from(2)
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let mut config = ServerConfig::new(args.data_dir);
    config.listen = args.listen;
    config.database_url = args.database_url;
    config.admin_username = args.admin_user;
    config.admin_password = args.admin_password;
    config.jwt_secret = args.jwt_secret;
    config.max_package_bytes = args.max_package_bytes;
    config.login_limits = LoginLimits {
        per_username: args.login_failures_per_user,
        per_address: args.login_failures_per_address,
        max_backoff: Duration::from_secs(args.login_max_backoff_seconds),
        ..LoginLimits::default()
    };
    anyhow::ensure!(
        args.header_timeout_seconds.is_finite() && args.header_timeout_seconds >= 0.1,
        "--header-timeout-seconds must be at least 0.1"
    );
    anyhow::ensure!(
        args.max_connections >= 1,
        "--max-connections must be at least 1"
    );
    config.connections = ConnectionLimits {
        header_timeout: Duration::from_secs_f64(args.header_timeout_seconds),
        body_min_rate: args.body_min_bytes_per_second.max(1),
        max_connections: args.max_connections,
    };
    if let (Some(cert), Some(key)) = (args.tls_cert, args.tls_key) {
        config.tls = Some(TlsFiles { cert, key });
    }
    anyhow::ensure!(
        args.runtime_timeout_seconds.is_finite() && args.runtime_timeout_seconds >= 0.5,
        "--runtime-timeout-seconds must be at least 0.5"
    );
    config.runtime_timeout = Duration::from_secs_f64(args.runtime_timeout_seconds);
    anyhow::ensure!(
        args.event_retention_days >= 1,
        "--event-retention-days must be at least 1"
    );
    config.event_retention = Duration::from_secs(u64::from(args.event_retention_days) * 24 * 3600);
    anyhow::ensure!(
        args.audit_retention_days != Some(0),
        "--audit-retention-days must be at least 1"
    );
    config.audit_retention = args
        .audit_retention_days
        .map(|days| Duration::from_secs(u64::from(days) * 24 * 3600));
    anyhow::ensure!(
        args.resync_seconds.is_finite() && args.resync_seconds >= 0.1,
        "--resync-seconds must be at least 0.1"
    );
    config.resync_every = Duration::from_secs_f64(args.resync_seconds);
    config.flow_engine = args.flow_engine == "on";
    config.webhook_retry_delays =
        regente_server::webhooks::parse_retry_delays(&args.webhook_retry_delays)?;
    regente_server::webhooks::target::TargetPolicy::parse(&args.webhook_allow_hosts)?;
    config.webhook_allow_hosts = args.webhook_allow_hosts;
    master_keys(&mut config);
    let admin_username = config.admin_username.clone();
    let server = Server::build(config).await?;
    let shutdown = shutdown_signal();
    if let Some(password) = server.generated_admin_password() {
        // Printed once, on the terminal only: it is never logged or stored in clear.
        println!("first admin created: username {admin_username:?}, password {password:?} (shown only now)");
    }
    println!("data directory {}", server.data_dir().display());
    println!(
        "{}",
        regente_server::startup::listening_line(server.local_addr(), server.tls())
    );
    server.run(shutdown).await
}

/// The vault's keys and the metrics token from the environment (never flags:
/// arguments are visible to every local user).
fn master_keys(config: &mut ServerConfig) {
    let read = |name: &str| {
        std::env::var(name)
            .ok()
            .filter(|text| !text.trim().is_empty())
            .map(regente_server::config::SecretText::new)
    };
    config.master_key = read("REGENTE_MASTER_KEY");
    config.master_key_previous = read("REGENTE_MASTER_KEY_PREVIOUS");
    config.metrics_token = read("REGENTE_METRICS_TOKEN");
}

/// The store a command runs against, and the server settings it was started with.
fn existing_store(args: &StoreArgs) -> anyhow::Result<(String, ServerConfig)> {
    let mut config = ServerConfig::new(std::path::absolute(&args.data_dir)?);
    config.database_url = args.database_url.clone();
    if args.database_url.is_none() {
        let path = config.data_dir.join("regente.db");
        // Not created here: a mistyped directory must not look like an empty store.
        anyhow::ensure!(
            path.is_file(),
            "there is no store at {} (give the server's --data-dir or --database-url)",
            path.display()
        );
    }
    master_keys(&mut config);
    Ok((config.database_url(), config))
}

async fn rotate_key(args: StoreArgs) -> anyhow::Result<()> {
    let (url, config) = existing_store(&args)?;
    let store = regente_store::open(&url).await?;
    let outcome = regente_server::vault::rotate::rotate_key(&config, store.as_ref()).await;
    store.close().await;
    let report = outcome?;
    println!(
        "vault sealed under master key {}: {} credential values, {} executions' secret variables and {} webhooks' secrets sealed again",
        report.key_id, report.values, report.variables, report.webhooks
    );
    Ok(())
}

async fn store_copy(args: StoreCopyArgs) -> anyhow::Result<()> {
    let report = regente_store::copy::copy(&args.from, &args.to).await?;
    if report.source_migrated {
        println!("the source was migrated to the current schema first");
    }
    println!("store copied; rows per table:\n{report}");
    Ok(())
}

async fn reset_password(args: ResetPasswordArgs) -> anyhow::Result<()> {
    let (url, _) = existing_store(&args.store)?;
    let password = if args.password_stdin {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        Some(line.trim_end_matches(['\r', '\n']).to_owned())
    } else {
        None
    };
    let store = regente_store::open(&url).await?;
    let outcome =
        regente_server::service::users::reset_password(store.as_ref(), &args.username, password)
            .await;
    store.close().await;
    let password = outcome?;
    // Printed once, on the terminal only: never logged or stored in clear.
    println!("new password for {:?}: {password}", args.username);
    Ok(())
}

async fn runtime_agent(args: RuntimeArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.slots != Some(0), "--slots must be at least 1");
    let key = match (args.key, args.key_file) {
        (Some(key), _) => key,
        (None, Some(path)) => std::fs::read_to_string(&path)
            .map_err(|e| anyhow::anyhow!("cannot read the key file {}: {e}", path.display()))?
            .trim()
            .to_owned(),
        (None, None) => {
            anyhow::bail!("give the runtime key with --key, REGENTE_RUNTIME_KEY or --key-file")
        }
    };
    let mut robot_users = Vec::new();
    for name in args.robot_users.iter().filter(|name| !name.is_empty()) {
        let user = regente_runtime::robot_user::RobotUser::resolve(name)
            .map_err(|e| anyhow::anyhow!("--robot-user: {e}"))?;
        anyhow::ensure!(
            !robot_users
                .iter()
                .any(|u: &regente_runtime::robot_user::RobotUser| u.uid == user.uid),
            "--robot-user: {name:?} is given twice (or shares its uid with another)"
        );
        robot_users.push(user);
    }
    anyhow::ensure!(
        robot_users.is_empty() || regente_runtime::robot_user::agent_is_root(),
        "--robot-user needs the agent to run as root (it switches each robot to its user)"
    );
    let config = regente_runtime::AgentConfig {
        servers: args.servers,
        key,
        work_dir: args.work_dir,
        slots: args.slots.unwrap_or(0),
        guard: std::env::current_exe().ok(),
        robot_path: None,
        ca_file: args.ca_file,
        robot_users,
    };
    regente_runtime::run(config, shutdown_signal()).await
}

/// Completes on SIGINT or SIGTERM. The handlers are installed by the call
/// itself, not when the future is first polled: a signal that arrives between
/// the two (e.g. right after the listening line) still stops the process
/// cleanly instead of killing it.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut interrupt = signal(SignalKind::interrupt()).expect("installing a SIGINT handler");
        let mut terminate = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
        async move {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
