//! `regente up`: the whole system on one machine for a first try: a server on
//! the embedded store, one local runtime agent, and the example robots.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use base64::Engine as _;
use regente_server::service::{self, robots, runtimes, Caller};
use regente_server::{Server, ServerConfig};
use tokio::sync::watch;

use crate::examples::EXAMPLES;

pub struct UpOptions {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub admin_username: String,
    pub admin_password: Option<String>,
    pub slots: u32,
}

/// Where `up` keeps its local runtime's id and key between starts (mode 0600).
const LOCAL_RUNTIME_FILE: &str = "local-runtime";

pub async fn up(
    options: UpOptions,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let mut config = ServerConfig::new(options.data_dir.clone());
    config.listen = options.listen;
    config.admin_username = options.admin_username.clone();
    config.admin_password = options.admin_password.clone();
    let server = Server::build(config).await?;
    let ctx = server.context();
    let addr = server.local_addr();
    let password = server
        .generated_admin_password()
        .map(str::to_owned)
        .or(options.admin_password.clone());
    let admin = ctx
        .store
        .find_user_by_username(&options.admin_username)
        .await?
        .with_context(|| {
            format!(
                "no user {:?} in this data directory",
                options.admin_username
            )
        })?;
    let caller = Caller {
        user_id: admin.id.clone(),
        username: admin.username.clone(),
        organization_id: admin.organization_id.clone(),
        role: admin.role,
    };
    let (runtime_id, key) = local_runtime(&ctx, &caller, &options.data_dir, options.slots).await?;
    let mut robot_ids = Vec::new();
    let existing = robots::list(&ctx, &caller).await?;
    for example in EXAMPLES {
        let package = example.package()?;
        let sha256 = regente_package::sha256_hex(&package);
        let known = existing
            .iter()
            .find(|r| r.name == example.name && r.versions.iter().any(|v| v.sha256 == sha256));
        let id = match known {
            Some(robot) => robot.id.clone(),
            None => robots::upload(&ctx, &caller, package).await?.robot_id,
        };
        robot_ids.push((example.name, id));
    }
    let token = ctx.auth.issue(&admin)?;

    let (stop, stopped) = watch::channel(false);
    let until_stopped = |mut stopped: watch::Receiver<bool>| async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    };
    let server_task = tokio::spawn(server.run(until_stopped(stopped.clone())));
    let agent = regente_runtime::AgentConfig {
        servers: vec![format!("http://{addr}")],
        key,
        work_dir: options.data_dir.join("local-runtime-work"),
        slots: options.slots,
        guard: std::env::current_exe().ok(),
    };
    let agent_task = tokio::spawn(regente_runtime::run(agent, until_stopped(stopped)));

    print_welcome(
        addr,
        &options.admin_username,
        password.as_deref(),
        &runtime_id,
        &robot_ids,
        &token,
    );
    shutdown.await;
    let _ = stop.send(true);
    agent_task.await??;
    server_task.await??;
    Ok(())
}

/// The local runtime: created on the first `up`, its key kept for the next ones.
async fn local_runtime(
    ctx: &service::Context,
    caller: &Caller,
    data_dir: &Path,
    slots: u32,
) -> anyhow::Result<(String, String)> {
    let path = data_dir.join(LOCAL_RUNTIME_FILE);
    if let Ok(text) = std::fs::read_to_string(&path) {
        if let Some((id, key)) = text.trim().split_once(' ') {
            if ctx
                .store
                .get_runtime(&caller.organization_id, id)
                .await
                .is_ok()
            {
                return Ok((id.to_owned(), key.to_owned()));
            }
        }
    }
    let (runtime, key) = runtimes::create(ctx, caller, "local", Some(slots)).await?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    std::io::Write::write_all(
        &mut options
            .open(&path)
            .with_context(|| format!("cannot write {}", path.display()))?,
        format!("{} {key}\n", runtime.id).as_bytes(),
    )?;
    Ok((runtime.id, key))
}

fn print_welcome(
    addr: SocketAddr,
    username: &str,
    password: Option<&str>,
    runtime_id: &str,
    robots: &[(&str, String)],
    token: &str,
) {
    let base = format!("http://{addr}");
    let shell = robots
        .first()
        .map(|(_, id)| id.as_str())
        .unwrap_or_default();
    println!("Regente is up.");
    println!();
    println!("  server     {base}");
    match password {
        Some(password) => println!("  admin      {username} / {password}"),
        None => println!("  admin      {username} (password as set at the first start)"),
    }
    println!("  runtime    {runtime_id} (\"local\", running here)");
    for (name, id) in robots {
        println!("  robot      {id} ({name})");
    }
    println!();
    println!("Run a robot and read its result:");
    println!();
    println!("  TOKEN='Bearer {token}'");
    if let Some(password) = password {
        let encoded = base64::engine::general_purpose::STANDARD.encode(password);
        println!("  # or log in: TOKEN=$(curl -s -X POST {base}/api/user/auth -H 'Content-Type: application/json' -d '{{\"username\":\"{username}\",\"password\":\"{encoded}\"}}')");
    }
    println!("  ID=$(curl -s -X POST {base}/api/integration/v1/run/{runtime_id}/{shell} -H \"Authorization: $TOKEN\" -H 'Content-Type: application/json' -d '{{\"variables\":[{{\"name\":\"NAME\",\"type\":\"text\",\"value\":\"Regente\"}}]}}')");
    println!(
        "  curl -s {base}/api/integration/v1/result/{runtime_id}/$ID -H \"Authorization: $TOKEN\""
    );
    println!();
    println!("Stop with Ctrl-C.");
}
