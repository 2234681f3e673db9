//! The command line for people and scripts: sign in once, then push robots, run
//! them and follow or read executions; read, pause, resume and trigger
//! schedules; run flows and read their runs; create, list and revoke API keys;
//! read the audit log; manage webhooks and their deliveries. Built on
//! `regente-client`.
//!
//! Exit status: 0 when the command did what it was asked (a run waited for
//! ended FINISHED); 1 when a run waited for ended ERROR; 3 when it ended
//! CANCELED; 2 when the command itself failed (bad input, no server, an error
//! from the server).

use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};
use regente_client::{ExecutionFilter, RunRequest, Status};
use serde::Serialize;

pub use api_keys::{api_keys, ApiKeysCommand};
pub use audit::{audit, AuditCommand};
pub use credentials::{credentials, CredentialsCommand};
pub use flows::{flows, FlowsCommand};
pub use schedules::{schedules, SchedulesCommand};
pub use webhooks::{webhooks, WebhooksCommand};

mod api_keys;
mod audit;
mod credentials;
mod flows;
mod follow;
mod package;
mod schedules;
mod session;
mod webhooks;

/// How answers are printed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Lines and tables for people.
    #[default]
    Text,
    /// One JSON document on standard output, for scripts.
    Json,
}

#[derive(Args)]
pub struct Common {
    /// The server, e.g. http://127.0.0.1:8080; default: the one of the last `regente login`.
    #[arg(long, env = "REGENTE_SERVER", global = true)]
    server: Option<String>,
    #[arg(long, value_enum, default_value_t = Output::Text, global = true)]
    output: Output,
    /// PEM certificates of a private CA to trust for https:// servers, besides the system's.
    #[arg(long, env = "REGENTE_CA_FILE", global = true)]
    ca_file: Option<std::path::PathBuf>,
}

#[derive(Args)]
pub struct LoginArgs {
    /// The server, e.g. http://127.0.0.1:8080.
    #[arg(long, env = "REGENTE_SERVER")]
    server: String,
    #[arg(long, required_unless_present = "api_key", conflicts_with = "api_key")]
    username: Option<String>,
    /// Sign in with an organisation API key instead, read from standard input
    /// (without echo on a terminal) and kept like a token.
    #[arg(long)]
    api_key: bool,
    /// PEM certificates of a private CA to trust for https:// servers, besides the system's.
    #[arg(long, env = "REGENTE_CA_FILE")]
    ca_file: Option<std::path::PathBuf>,
}

#[derive(Subcommand)]
pub enum RobotsCommand {
    /// Zip a robot's folder (with its robot.toml) and upload it as the robot's next version.
    Push {
        dir: std::path::PathBuf,
        #[command(flatten)]
        common: Common,
    },
    /// The robots of your organisation, with their newest version.
    List {
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Subcommand)]
pub enum RuntimesCommand {
    /// The runtimes of your organisation, online or not.
    List {
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Args)]
pub struct RunArgs {
    /// The robot, by name or id.
    robot: String,
    /// The runtime to run it on, by name or id.
    #[arg(long)]
    runtime: String,
    /// A variable, as NAME=VALUE (repeat); the robot's declared type decides how VALUE is read.
    #[arg(long = "var", value_name = "NAME=VALUE")]
    variables: Vec<String>,
    /// Wait for the run to end; the exit status tells how it ended.
    #[arg(long)]
    wait: bool,
    /// Print the run's log as it goes (and wait for its end).
    #[arg(long)]
    follow: bool,
    /// Makes a retried command safe: the same key within 24 hours answers the same execution.
    #[arg(long)]
    idempotency_key: Option<String>,
    #[command(flatten)]
    common: Common,
}

#[derive(Subcommand)]
pub enum ExecutionsCommand {
    /// Executions, newest first.
    List {
        /// PENDENT, RUNNING, FINISHED, ERROR or CANCELED.
        #[arg(long)]
        status: Option<String>,
        /// A robot, by name or id.
        #[arg(long)]
        robot: Option<String>,
        /// A runtime, by name or id.
        #[arg(long)]
        runtime: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: u32,
        #[command(flatten)]
        common: Common,
    },
    /// One execution, with its log.
    Show {
        id: String,
        #[command(flatten)]
        common: Common,
    },
    /// Cancel a pending execution or stop a running one.
    Cancel {
        id: String,
        #[command(flatten)]
        common: Common,
    },
}

/// What a command came to: its exit status.
pub type Outcome = Result<ExitCode, anyhow::Error>;

pub async fn login(args: LoginArgs) -> Outcome {
    let client = session::connect(&args.server, args.ca_file.as_deref())?;
    let (username, token) = match &args.username {
        Some(username) => {
            let password = session::read_secret(&format!("password for {username}"))?;
            (
                username.clone(),
                client.login(username, &password).await?.token,
            )
        }
        None => {
            let key = session::read_secret("API key")?.trim().to_owned();
            anyhow::ensure!(key.starts_with("rgk_"), "an API key starts with rgk_");
            // Any authenticated answer proves the key: an admin's reads the
            // keys, an integration key's is refused there with 403, a bad key's 401.
            let keyed = client.clone().with_token(&key);
            match keyed.api_keys().await {
                Ok(_) => {}
                Err(e) if e.status() == Some(403) => {}
                Err(e) => return Err(e.into()),
            }
            ("api-key".to_owned(), key)
        }
    };
    let path = session::save(&session::Saved {
        server: client.base().to_owned(),
        username: username.clone(),
        token,
    })?;
    println!(
        "signed in to {} as {:?}; the token is kept in {}",
        client.base(),
        username,
        path.display()
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn robots(command: RobotsCommand) -> Outcome {
    match command {
        RobotsCommand::Push { dir, common } => {
            let client = session::client(&common)?;
            let package = package::zip_folder(&dir)?;
            let pushed = client.push_robot(package).await?;
            print(common.output, &pushed, || {
                format!(
                    "robot {} version {} ({}, sha256 {})",
                    pushed.name, pushed.version, pushed.id, pushed.sha256
                )
            })
        }
        RobotsCommand::List { common } => {
            let client = session::client(&common)?;
            let robots = client.robots().await?;
            print(common.output, &robots, || {
                table(
                    &["ID", "NAME", "VERSION", "COMMAND"],
                    robots.iter().map(|robot| {
                        let newest = robot.versions.last();
                        vec![
                            robot.id.clone(),
                            robot.name.clone(),
                            newest.map(|v| v.version.to_string()).unwrap_or_default(),
                            newest.map(|v| v.command.join(" ")).unwrap_or_default(),
                        ]
                    }),
                )
            })
        }
    }
}

pub async fn runtimes(command: RuntimesCommand) -> Outcome {
    let RuntimesCommand::List { common } = command;
    let client = session::client(&common)?;
    let runtimes = client.runtimes().await?;
    print(common.output, &runtimes, || {
        table(
            &["ID", "NAME", "SLOTS", "STATE"],
            runtimes.iter().map(|runtime| {
                vec![
                    runtime.id.clone(),
                    runtime.name.clone(),
                    runtime.slots.to_string(),
                    if runtime.online { "online" } else { "offline" }.to_owned(),
                ]
            }),
        )
    })
}

pub async fn run(args: RunArgs) -> Outcome {
    let client = session::client(&args.common)?;
    let variables = parse_variables(&args.variables)?;
    let runtime_id = client.find_runtime(&args.runtime).await?;
    let robot_id = client.find_robot(&args.robot).await?;
    let id = client
        .run(&RunRequest {
            runtime_id: &runtime_id,
            robot_id: &robot_id,
            variables,
            idempotency_key: args.idempotency_key.as_deref(),
        })
        .await?;
    if !args.wait && !args.follow {
        #[derive(Serialize)]
        struct Queued<'a> {
            id: &'a str,
            runtime_id: &'a str,
            robot_id: &'a str,
        }
        let queued = Queued {
            id: &id,
            runtime_id: &runtime_id,
            robot_id: &robot_id,
        };
        return print(args.common.output, &queued, || id.clone());
    }
    let show_log = args.follow && args.common.output == Output::Text;
    let result = follow::until_ended(&client, &runtime_id, &id, show_log).await?;
    print(args.common.output, &result, || {
        format!(
            "{} {}{}",
            id,
            result.status.as_str(),
            result
                .return_value
                .as_ref()
                .map(|value| format!(" {value}"))
                .unwrap_or_default()
        )
    })?;
    Ok(exit_status(result.status))
}

pub async fn executions(command: ExecutionsCommand) -> Outcome {
    match command {
        ExecutionsCommand::List {
            status,
            robot,
            runtime,
            limit,
            common,
        } => {
            let client = session::client(&common)?;
            let mut filter = ExecutionFilter {
                status,
                limit: Some(limit),
                ..ExecutionFilter::default()
            };
            if let Some(robot) = robot {
                filter.robot_id = Some(client.find_robot(&robot).await?);
            }
            if let Some(runtime) = runtime {
                filter.runtime_id = Some(client.find_runtime(&runtime).await?);
            }
            let page = client.executions(&filter).await?;
            print(common.output, &page, || {
                table(
                    &["ID", "STATUS", "ROBOT", "RUNTIME", "SUBMITTED"],
                    page.executions.iter().map(|execution| {
                        vec![
                            execution.id.clone(),
                            execution.status.as_str().to_owned(),
                            execution.robot_id.clone(),
                            execution.runtime_id.clone(),
                            follow::local_time(execution.init),
                        ]
                    }),
                )
            })
        }
        ExecutionsCommand::Show { id, common } => {
            let client = session::client(&common)?;
            let execution = client.execution(&id).await?;
            let result = client.result(&execution.runtime_id, &id).await?;
            #[derive(Serialize)]
            struct Shown<'a> {
                #[serde(flatten)]
                execution: &'a regente_client::Execution,
                logs: &'a [regente_client::LogLine],
            }
            let shown = Shown {
                execution: &execution,
                logs: &result.logs,
            };
            print(common.output, &shown, || {
                follow::describe(&execution, &result.logs)
            })
        }
        ExecutionsCommand::Cancel { id, common } => {
            let client = session::client(&common)?;
            let execution = client.execution(&id).await?;
            client.cancel(&execution.runtime_id, &id).await?;
            #[derive(Serialize)]
            struct Canceled<'a> {
                id: &'a str,
                canceled: bool,
            }
            let canceled = Canceled {
                id: &id,
                canceled: true,
            };
            print(common.output, &canceled, || format!("{id} canceled"))
        }
    }
}

/// `--var NAME=VALUE` pairs.
fn parse_variables(pairs: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    pairs
        .iter()
        .map(|pair| {
            pair.split_once('=')
                .map(|(name, value)| (name.to_owned(), value.to_owned()))
                .ok_or_else(|| anyhow::anyhow!("--var {pair:?} is not NAME=VALUE"))
        })
        .collect()
}

/// The exit status a run's end maps to.
fn exit_status(status: Status) -> ExitCode {
    match status {
        Status::Finished => ExitCode::SUCCESS,
        Status::Canceled => ExitCode::from(3),
        _ => ExitCode::from(1),
    }
}

/// Prints `value` as JSON, or `text()` for people.
fn print<T: Serialize>(output: Output, value: &T, text: impl FnOnce() -> String) -> Outcome {
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(value)?),
        Output::Text => println!("{}", text()),
    }
    Ok(ExitCode::SUCCESS)
}

/// Columns padded to their widest cell.
fn table(headers: &[&str], rows: impl Iterator<Item = Vec<String>>) -> String {
    let rows: Vec<Vec<String>> = std::iter::once(headers.iter().map(|h| h.to_string()).collect())
        .chain(rows)
        .collect();
    let widths: Vec<usize> = (0..headers.len())
        .map(|column| {
            rows.iter()
                .map(|row| row[column].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    rows.iter()
        .map(|row| {
            row.iter()
                .zip(&widths)
                .map(|(cell, width)| format!("{cell:width$}"))
                .collect::<Vec<_>>()
                .join("  ")
                .trim_end()
                .to_owned()
        })
        .collect::<Vec<_>>()
        .join("\n")
}
