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
use crate::needs::{self, Missing};

pub struct UpOptions {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub admin_username: String,
    pub admin_password: Option<String>,
    pub slots: u32,
    /// Install Robot Framework into the data directory's own Python environment.
    pub with_robot_framework: bool,
}

/// Where `up` keeps its local runtime's id and key between starts (mode 0600).
const LOCAL_RUNTIME_FILE: &str = "local-runtime";

/// An example robot, loaded or not.
enum Example {
    Loaded {
        name: &'static str,
        id: String,
    },
    Skipped {
        name: &'static str,
        missing: Missing,
    },
}

pub async fn up(
    options: UpOptions,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let data_dir = std::path::absolute(&options.data_dir).with_context(|| {
        format!(
            "cannot resolve the data directory {}",
            options.data_dir.display()
        )
    })?;
    if options.with_robot_framework {
        needs::install_robot_framework(&data_dir).await?;
    }
    let mut config = ServerConfig::new(data_dir.clone());
    config.listen = options.listen;
    config.admin_username = options.admin_username.clone();
    config.admin_password = options.admin_password.clone();
    let server = Server::build(config).await?;
    let ctx = server.context();
    let addr = server.local_addr();
    let password = match (
        server.generated_admin_password(),
        server.ignored_admin_settings().await?,
    ) {
        (Some(generated), _) => Password::Shown(generated.to_owned()),
        (None, Some(why)) => Password::Ignored(why),
        (None, None) => options
            .admin_password
            .clone()
            .map_or(Password::AsFirstSet, Password::Shown),
    };
    let admin = ctx
        .store
        .find_user_by_username(&options.admin_username)
        .await?
        .with_context(|| {
            format!(
                "no user {:?} in the data directory {}: start with the admin's name (REGENTE_ADMIN_USER)",
                options.admin_username,
                data_dir.display()
            )
        })?;
    let caller = Caller::of_user(admin.clone());
    let (runtime_id, key) = local_runtime(&ctx, &caller, &data_dir, options.slots).await?;
    let robot_path = needs::robot_path(&data_dir);
    let install = install_command();
    let mut examples = Vec::new();
    let existing = robots::list(&ctx, &caller).await?;
    for example in EXAMPLES {
        if let Some(missing) =
            needs::first_missing(example.needs, robot_path.as_deref(), &install).await
        {
            examples.push(Example::Skipped {
                name: example.name,
                missing,
            });
            continue;
        }
        let package = example.package()?;
        let sha256 = regente_package::sha256_hex(&package);
        let known = existing
            .iter()
            .find(|r| r.name == example.name && r.versions.iter().any(|v| v.sha256 == sha256));
        let id = match known {
            Some(robot) => robot.id.clone(),
            None => robots::upload(&ctx, &caller, package).await?.robot_id,
        };
        examples.push(Example::Loaded {
            name: example.name,
            id,
        });
    }
    let token = ctx.auth.issue(&admin)?;

    let (stop_server, server_stopped) = watch::channel(false);
    let (stop_agent, agent_stopped) = watch::channel(false);
    let until_stopped = |mut stopped: watch::Receiver<bool>| async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    };
    let server_task = tokio::spawn(server.run(until_stopped(server_stopped)));
    let agent = regente_runtime::AgentConfig {
        servers: vec![format!("http://{addr}")],
        key,
        work_dir: data_dir.join("local-runtime-work"),
        slots: options.slots,
        guard: std::env::current_exe().ok(),
        robot_path,
        ca_file: None,
        robot_users: Vec::new(),
    };
    let agent_task = tokio::spawn(regente_runtime::run(agent, until_stopped(agent_stopped)));

    print_welcome(&Welcome {
        addr,
        data_dir: &data_dir,
        username: &options.admin_username,
        password: &password,
        runtime_id: &runtime_id,
        examples: &examples,
        token: &token,
    });
    shutdown.await;
    // The agent first, so that it closes its connection to a server still up.
    let _ = stop_agent.send(true);
    agent_task.await??;
    let _ = stop_server.send(true);
    server_task.await??;
    Ok(())
}

/// What the welcome says of the admin's password.
enum Password {
    Shown(String),
    AsFirstSet,
    /// Configured, but ignored: the store had its admin already.
    Ignored(String),
}

/// This very command with `--with-robotframework` added: what installs Robot
/// Framework for `up`.
fn install_command() -> String {
    let mut words: Vec<String> = std::env::args().collect();
    if !words.iter().any(|w| w == "--with-robotframework") {
        words.push("--with-robotframework".into());
    }
    words.join(" ")
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

struct Welcome<'a> {
    addr: SocketAddr,
    data_dir: &'a Path,
    username: &'a str,
    password: &'a Password,
    runtime_id: &'a str,
    examples: &'a [Example],
    token: &'a str,
}

fn print_welcome(welcome: &Welcome) {
    let base = format!("http://{}", welcome.addr);
    let (username, runtime_id) = (welcome.username, welcome.runtime_id);
    println!("Regente is up.");
    println!();
    println!("  console    {base}/  (sign in as the admin below)");
    println!("  server     {base}");
    println!("  data       {}", welcome.data_dir.display());
    match welcome.password {
        Password::Shown(password) => println!("  admin      {username} / {password}"),
        Password::AsFirstSet => {
            println!("  admin      {username} (password as set at the first start)")
        }
        Password::Ignored(why) => {
            println!("  admin      {username} (password as set at the first start)");
            println!("  note       {why}");
        }
    }
    println!("  runtime    {runtime_id} (\"local\", running here)");
    let mut shell = None;
    for example in welcome.examples {
        match example {
            Example::Loaded { name, id } => {
                println!("  robot      {id} ({name})");
                shell = shell.or((*name == "hello-shell").then_some(id.as_str()));
            }
            Example::Skipped { name, missing } => {
                println!(
                    "  missing    {name} is not loaded: it needs {}",
                    missing.what
                );
                println!("             fix: {}", missing.fix);
            }
        }
    }
    println!();
    println!("Run a robot and read its result:");
    println!();
    println!("  TOKEN='Bearer {}'", welcome.token);
    if let Password::Shown(password) = welcome.password {
        let encoded = base64::engine::general_purpose::STANDARD.encode(password);
        println!("  # or log in: TOKEN=$(curl -s -X POST {base}/api/user/auth -H 'Content-Type: application/json' -d '{{\"username\":\"{username}\",\"password\":\"{encoded}\"}}')");
    }
    let shell = shell.unwrap_or_default();
    println!("  ID=$(curl -s -X POST {base}/api/integration/v1/run/{runtime_id}/{shell} -H \"Authorization: $TOKEN\" -H 'Content-Type: application/json' -d '{{\"variables\":[{{\"name\":\"NAME\",\"type\":\"text\",\"value\":\"Regente\"}}]}}')");
    println!(
        "  curl -s {base}/api/integration/v1/result/{runtime_id}/$ID -H \"Authorization: $TOKEN\""
    );
    println!();
    println!("Stop with Ctrl-C.");
}
