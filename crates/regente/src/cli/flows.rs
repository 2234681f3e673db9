//! `regente flows`: list flows (admins), run one (waiting for its end if
//! asked), list a flow's recent runs and show a run.

use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;
use regente_client::events::ExecutionEvent;
use regente_client::{Client, FlowRun};
use serde::Serialize;

use super::follow::local_time;
use super::{exit_status, parse_variables, print, session, table, Common};

/// How long to wait before reading a run again when no step's execution is
/// live (the engine is between two steps, or a step waits for its retry).
const BETWEEN_STEPS: Duration = Duration::from_millis(250);

#[derive(Subcommand)]
pub enum FlowsCommand {
    /// The flows, with their newest version (admins).
    List {
        #[command(flatten)]
        common: Common,
    },
    /// Run a flow's newest version; with --wait, the exit status says how it ended (0 FINISHED, 1 ERROR, 3 CANCELED).
    Run {
        /// The flow, by name (admins) or id.
        flow: String,
        /// An input, as NAME=VALUE (repeat); the flow's declared type decides how VALUE is read.
        #[arg(long = "var", value_name = "NAME=VALUE")]
        variables: Vec<String>,
        /// Wait for the run to end; the exit status tells how it ended.
        #[arg(long)]
        wait: bool,
        /// Makes a retried command safe: the same key within 24 hours answers the same run.
        #[arg(long)]
        idempotency_key: Option<String>,
        #[command(flatten)]
        common: Common,
    },
    /// Flow runs.
    #[command(subcommand)]
    Runs(FlowRunsCommand),
}

#[derive(Subcommand)]
pub enum FlowRunsCommand {
    /// A flow's most recent runs, newest first (admins).
    List {
        /// The flow, by name or id.
        flow: String,
        /// How many, 1 to 200.
        #[arg(long, default_value_t = 20)]
        limit: u32,
        #[command(flatten)]
        common: Common,
    },
    /// One run: its status and each step's, with their executions.
    Show {
        id: String,
        #[command(flatten)]
        common: Common,
    },
}

pub async fn flows(command: FlowsCommand) -> anyhow::Result<ExitCode> {
    match command {
        FlowsCommand::List { common } => {
            let client = session::client(&common)?;
            let list = client.flows().await?;
            print(common.output, &list, || {
                table(
                    &["ID", "NAME", "VERSION", "STEPS"],
                    list.iter().map(|flow| {
                        vec![
                            flow.id.clone(),
                            flow.name.clone(),
                            flow.version.to_string(),
                            flow.step_ids().join(" -> "),
                        ]
                    }),
                )
            })
        }
        FlowsCommand::Run {
            flow,
            variables,
            wait,
            idempotency_key,
            common,
        } => {
            let variables = parse_variables(&variables)?;
            let client = session::client(&common)?;
            let flow_id = client.find_flow(&flow).await?;
            let id = client
                .run_flow(&flow_id, &variables, idempotency_key.as_deref())
                .await?;
            if !wait {
                #[derive(Serialize)]
                struct Started<'a> {
                    id: &'a str,
                    flow_id: &'a str,
                }
                let started = Started {
                    id: &id,
                    flow_id: &flow_id,
                };
                return print(common.output, &started, || id.clone());
            }
            let run = until_ended(&client, &id).await?;
            print(common.output, &run, || {
                let value = run.return_value.as_ref();
                let value = value.map(|v| format!(" {v}")).unwrap_or_default();
                format!("{id} {}{value}", run.status.as_str())
            })?;
            Ok(exit_status(run.status))
        }
        FlowsCommand::Runs(FlowRunsCommand::List {
            flow,
            limit,
            common,
        }) => {
            let client = session::client(&common)?;
            let flow_id = client.find_flow(&flow).await?;
            let runs = client.flow_runs(&flow_id, limit).await?;
            print(common.output, &runs, || {
                table(
                    &["ID", "VERSION", "STATUS", "STARTED", "ENDED"],
                    runs.iter().map(|run| {
                        vec![
                            run.id.clone(),
                            run.version.to_string(),
                            run.status.as_str().to_owned(),
                            local_time(run.init),
                            run.end.map(local_time).unwrap_or_default(),
                        ]
                    }),
                )
            })
        }
        FlowsCommand::Runs(FlowRunsCommand::Show { id, common }) => {
            let client = session::client(&common)?;
            let run = client.flow_run(&id).await?;
            print(common.output, &run, || describe(&run))
        }
    }
}

/// Waits until the run has ended: on the event stream of its live step's
/// execution (the server ends it with the execution), then reads the run
/// again.
async fn until_ended(client: &Client, run_id: &str) -> anyhow::Result<FlowRun> {
    let mut waited: Option<String> = None;
    loop {
        let run = client.flow_run(run_id).await?;
        if run.status.is_ended() {
            return Ok(run);
        }
        let live = run
            .steps
            .iter()
            .filter(|step| matches!(step.status.as_str(), "PENDENT" | "RUNNING"))
            .find_map(|step| step.execution_id.clone());
        match live {
            Some(execution) if waited.as_ref() != Some(&execution) => {
                if !execution_ended(client, &execution).await {
                    tokio::time::sleep(BETWEEN_STEPS).await;
                }
                waited = Some(execution);
            }
            _ => tokio::time::sleep(BETWEEN_STEPS).await,
        }
    }
}

/// Follows the execution's status until it ends; false when the stream could
/// not be read to its end.
async fn execution_ended(client: &Client, execution_id: &str) -> bool {
    // No log lines: only the status matters here.
    let Ok(mut stream) = client.events(execution_id, i64::MAX).await else {
        return false;
    };
    while let Ok(Some(event)) = stream.next().await {
        if let ExecutionEvent::Status { status, .. } = event {
            if status.is_ended() {
                return true;
            }
        }
    }
    false
}

fn describe(run: &FlowRun) -> String {
    let mut text = vec![
        format!("flow run   {}", run.id),
        format!("status     {}", run.status.as_str()),
        format!("flow       {} version {}", run.flow_id, run.version),
        format!("started    {}", local_time(run.init)),
    ];
    if let Some(end) = run.end {
        text.push(format!("ended      {}", local_time(end)));
    }
    if let Some(reason) = &run.reason {
        text.push(format!("reason     {reason}"));
    }
    if let Some(value) = &run.return_value {
        text.push(format!("returned   {value}"));
    }
    text.push(String::new());
    text.push(table(
        &["STEP", "STATUS", "TRIES", "EXECUTION", "REASON"],
        run.steps.iter().map(|step| {
            vec![
                step.id.clone(),
                step.status.clone(),
                step.attempt.to_string(),
                step.execution_id.clone().unwrap_or_default(),
                step.reason.clone().unwrap_or_default(),
            ]
        }),
    ));
    text.join("\n")
}
