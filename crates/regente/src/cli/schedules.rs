//! `regente schedules`: list and show schedules, pause, resume and run one now
//! (admins, as in the API).

use std::collections::HashMap;
use std::process::ExitCode;

use clap::Subcommand;
use regente_client::{Client, Fire, Schedule};

use super::follow::local_time;
use super::{print, session, table, Common};

#[derive(Subcommand)]
pub enum SchedulesCommand {
    /// The schedules: what each runs, its rule, its next fire, paused or not.
    List {
        #[command(flatten)]
        common: Common,
    },
    /// One schedule, by name or id, with its next fires and its latest fires.
    Show {
        schedule: String,
        #[command(flatten)]
        common: Common,
    },
    /// Pause a schedule: its fires are not run until it resumes.
    Pause {
        schedule: String,
        /// Why, shown with the schedule.
        #[arg(long)]
        note: Option<String>,
        #[command(flatten)]
        common: Common,
    },
    /// Resume a paused schedule from its next fire after now.
    Resume {
        schedule: String,
        #[command(flatten)]
        common: Common,
    },
    /// Run a schedule once now, counted as one of its fires (its overlap rule applies).
    Trigger {
        schedule: String,
        #[command(flatten)]
        common: Common,
    },
}

pub async fn schedules(command: SchedulesCommand) -> anyhow::Result<ExitCode> {
    match command {
        SchedulesCommand::List { common } => {
            let client = session::client(&common)?;
            let list = client.schedules().await?;
            let names = Names::load(&client).await?;
            print(common.output, &list, || {
                table(
                    &[
                        "ID",
                        "NAME",
                        "RUNS",
                        "RULE",
                        "ZONE",
                        "NEXT FIRE",
                        "STATE",
                        "FAILURES",
                    ],
                    list.iter().map(|s| {
                        vec![
                            s.id.clone(),
                            s.name.clone(),
                            names.target(s),
                            s.rule_text(),
                            s.timezone.clone(),
                            s.next_fire_at.map(local_time).unwrap_or_default(),
                            state(s),
                            s.consecutive_failures.to_string(),
                        ]
                    }),
                )
            })
        }
        SchedulesCommand::Show { schedule, common } => {
            let client = session::client(&common)?;
            let id = client.find_schedule(&schedule).await?;
            let shown = client.schedule(&id).await?;
            let names = Names::load(&client).await?;
            print(common.output, &shown, || describe(&shown, &names))
        }
        SchedulesCommand::Pause {
            schedule,
            note,
            common,
        } => {
            let client = session::client(&common)?;
            let id = client.find_schedule(&schedule).await?;
            let paused = client.pause_schedule(&id, note.as_deref()).await?;
            print(common.output, &paused, || {
                format!("schedule {} {}", paused.name, state(&paused))
            })
        }
        SchedulesCommand::Resume { schedule, common } => {
            let client = session::client(&common)?;
            let id = client.find_schedule(&schedule).await?;
            let resumed = client.resume_schedule(&id).await?;
            print(common.output, &resumed, || {
                let next = resumed.next_fire_at.map(local_time).unwrap_or_default();
                format!("schedule {} active; next fire {next}", resumed.name)
            })
        }
        SchedulesCommand::Trigger { schedule, common } => {
            let client = session::client(&common)?;
            let id = client.find_schedule(&schedule).await?;
            let fire = client.trigger_schedule(&id).await?;
            print(common.output, &fire, || {
                format!("schedule {schedule} fired: {}", outcome(&fire))
            })
        }
    }
}

/// Names of robots, runtimes and flows by id, for saying what a schedule runs.
struct Names(HashMap<String, String>);

impl Names {
    async fn load(client: &Client) -> anyhow::Result<Names> {
        let mut names = HashMap::new();
        names.extend(client.robots().await?.into_iter().map(|r| (r.id, r.name)));
        names.extend(client.runtimes().await?.into_iter().map(|r| (r.id, r.name)));
        names.extend(client.flows().await?.into_iter().map(|f| (f.id, f.name)));
        Ok(Names(names))
    }

    fn of<'a>(&'a self, id: &'a str) -> &'a str {
        self.0.get(id).map_or(id, String::as_str)
    }

    fn target(&self, schedule: &Schedule) -> String {
        match (&schedule.flow_id, &schedule.robot_id, &schedule.runtime_id) {
            (Some(flow), _, _) => format!("flow {}", self.of(flow)),
            (None, Some(robot), Some(runtime)) => {
                format!("robot {} on {}", self.of(robot), self.of(runtime))
            }
            _ => String::new(),
        }
    }
}

fn state(schedule: &Schedule) -> String {
    match (schedule.paused, &schedule.note) {
        (false, _) => "active".to_owned(),
        (true, Some(note)) => format!("paused ({note})"),
        (true, None) => "paused".to_owned(),
    }
}

/// `started execution ID`, `skipped_overlap: REASON`.
fn outcome(fire: &Fire) -> String {
    let started = match (&fire.execution_id, &fire.flow_run_id) {
        (Some(id), _) => format!(" execution {id}"),
        (None, Some(id)) => format!(" flow run {id}"),
        _ => String::new(),
    };
    let reason = fire
        .reason
        .as_ref()
        .map(|why| format!(": {why}"))
        .unwrap_or_default();
    format!("{}{started}{reason}", fire.outcome)
}

fn describe(schedule: &Schedule, names: &Names) -> String {
    let limit = schedule
        .pause_after_failures
        .map(|limit| format!(" / {limit}"))
        .unwrap_or_default();
    let mut text = vec![
        format!("schedule   {} ({})", schedule.name, schedule.id),
        format!("runs       {}", names.target(schedule)),
        format!(
            "rule       {} in {}",
            schedule.rule_text(),
            schedule.timezone
        ),
        format!("state      {}", state(schedule)),
        format!(
            "failures   {}{limit} in a row",
            schedule.consecutive_failures
        ),
        format!(
            "fires      {} run, {} skipped, {} missed",
            schedule.fired, schedule.skipped, schedule.missed
        ),
        String::new(),
        "next fires".to_owned(),
    ];
    text.extend(schedule.next_fires.iter().map(|f| format!("  {}", f.local)));
    let last = schedule.last_fires.as_deref().unwrap_or_default();
    if !last.is_empty() {
        text.push(String::new());
        text.push(table(
            &["SCHEDULED FOR", "ORIGIN", "OUTCOME"],
            last.iter()
                .map(|f| vec![f.local.clone(), f.origin.clone(), outcome(f)]),
        ));
    }
    text.join("\n")
}
