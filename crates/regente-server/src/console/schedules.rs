//! Schedules (admins only, as in the API): their rules, next fires and pause
//! state, pausing, resuming and running one now; one schedule with its recent
//! fires and what each started.

use std::collections::HashMap;
use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect};
use regente_store::{FireOutcome, Schedule, ScheduleTarget};
use serde::Deserialize;

use super::executions::Names;
use super::format;
use super::pages::{render, Chrome, PageError, PageResult};
use super::session::{AdminViewer, NoFields, Posted, Viewer};
use crate::service::schedules::{self, fire, ScheduleChanges, ScheduleView};
use crate::service::{self, flows, Context};

/// What a schedule runs, as a page links it.
pub struct TargetView {
    pub text: String,
    /// The robot's or the flow's page.
    pub href: String,
}

pub struct ScheduleRow {
    pub id: String,
    pub name: String,
    pub target: TargetView,
    pub rule: String,
    pub timezone: String,
    pub next_fire: String,
    pub paused: bool,
    pub note: String,
    pub consecutive_failures: u32,
    /// ` / N` when failures pause it at N, else empty.
    pub failure_limit: String,
}

pub struct FireRow {
    pub scheduled_for: String,
    pub origin: &'static str,
    pub outcome: &'static str,
    pub reason: String,
    /// The execution or flow run it started: (label, href).
    pub started: Option<(String, String)>,
}

#[derive(Template)]
#[template(path = "schedules.html")]
struct SchedulesPage {
    chrome: Chrome,
    rows: Vec<ScheduleRow>,
}

#[derive(Template)]
#[template(path = "schedule.html")]
struct SchedulePage {
    chrome: Chrome,
    row: ScheduleRow,
    next_fires: Vec<String>,
    fires: Vec<FireRow>,
}

/// Names of what schedules run: robots, runtimes and flows by id.
struct Targets {
    names: Names,
    flows: HashMap<String, String>,
}

impl Targets {
    async fn load(ctx: &Context, viewer: &Viewer) -> service::Result<Targets> {
        let flows = flows::list(ctx, viewer.caller())
            .await?
            .into_iter()
            .map(|flow| (flow.id, flow.name))
            .collect();
        Ok(Targets {
            names: Names::load(ctx, viewer).await?,
            flows,
        })
    }

    fn of(&self, target: &ScheduleTarget) -> TargetView {
        match target {
            ScheduleTarget::Robot {
                robot_id,
                runtime_id,
            } => TargetView {
                text: format!(
                    "robot {} on {}",
                    self.names.robot(robot_id),
                    self.names.runtime(runtime_id)
                ),
                href: format!("/robots/{robot_id}"),
            },
            ScheduleTarget::Flow { flow_id } => TargetView {
                text: format!(
                    "flow {}",
                    self.flows.get(flow_id).map_or(flow_id.as_str(), |n| n)
                ),
                href: format!("/flows/{flow_id}"),
            },
        }
    }
}

fn row(schedule: &Schedule, targets: &Targets) -> ScheduleRow {
    // A rule that no longer reads shows as stored; the API says what is wrong.
    let rule = schedules::stored_when(schedule)
        .map_or_else(|_| schedule.rule.to_string(), |when| when.to_string());
    ScheduleRow {
        id: schedule.id.clone(),
        name: schedule.name.clone(),
        target: targets.of(&schedule.target),
        rule,
        timezone: schedule.timezone.clone(),
        next_fire: format::maybe_time_html(schedule.next_fire_at),
        paused: schedule.paused,
        note: schedule.pause_note.clone().unwrap_or_default(),
        consecutive_failures: schedule.consecutive_failures,
        failure_limit: schedule
            .pause_after_failures
            .map(|limit| format!(" / {limit}"))
            .unwrap_or_default(),
    }
}

fn fire_row(fire: &regente_store::ScheduleFire) -> FireRow {
    let started = match &fire.outcome {
        FireOutcome::Started(run) => Some(match run.flow_run_id() {
            Some(id) => (format!("flow run {id}"), format!("/flows/runs/{id}")),
            None => {
                let (_, id) = run.field();
                (format!("execution {id}"), format!("/executions/{id}"))
            }
        }),
        _ => None,
    };
    FireRow {
        scheduled_for: format::time_html(fire.scheduled_for),
        origin: fire.origin.as_str(),
        outcome: fire.outcome.as_str(),
        reason: fire.reason.clone().unwrap_or_default(),
        started,
    }
}

pub async fn list(AdminViewer(viewer): AdminViewer, State(ctx): State<Arc<Context>>) -> PageResult {
    let framed = viewer.fail();
    let views = schedules::list(&ctx, viewer.caller())
        .await
        .map_err(&framed)?;
    let targets = Targets::load(&ctx, &viewer).await.map_err(&framed)?;
    let mut rows: Vec<ScheduleRow> = views.iter().map(|v| row(&v.schedule, &targets)).collect();
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(render(&SchedulesPage {
        chrome: viewer.chrome,
        rows,
    }))
}

pub async fn detail(
    AdminViewer(viewer): AdminViewer,
    State(ctx): State<Arc<Context>>,
    Path(id): Path<String>,
) -> PageResult {
    let framed = viewer.fail();
    let ScheduleView {
        schedule,
        next_fires,
        last_fires,
        ..
    } = schedules::get(&ctx, viewer.caller(), &id)
        .await
        .map_err(&framed)?;
    let targets = Targets::load(&ctx, &viewer).await.map_err(&framed)?;
    Ok(render(&SchedulePage {
        row: row(&schedule, &targets),
        next_fires: next_fires.into_iter().map(format::time_html).collect(),
        fires: last_fires.iter().map(fire_row).collect(),
        chrome: viewer.chrome,
    }))
}

#[derive(Deserialize)]
pub struct PauseForm {
    #[serde(default)]
    note: String,
}

async fn change(ctx: &Context, viewer: &Viewer, id: &str, changes: ScheduleChanges) -> PageResult {
    if !viewer.is_admin() {
        return Err(PageError::forbidden(Some(viewer.chrome.clone())));
    }
    schedules::update(ctx, viewer.caller(), id, changes)
        .await
        .map_err(viewer.fail())?;
    Ok(Redirect::to(&format!("/schedules/{id}")).into_response())
}

pub async fn pause(
    State(ctx): State<Arc<Context>>,
    Path(id): Path<String>,
    Posted(viewer, form): Posted<PauseForm>,
) -> PageResult {
    let note = Some(form.note.trim().to_owned()).filter(|note| !note.is_empty());
    let changes = ScheduleChanges {
        paused: Some(true),
        note: Some(note),
        ..ScheduleChanges::default()
    };
    change(&ctx, &viewer, &id, changes).await
}

pub async fn resume(
    State(ctx): State<Arc<Context>>,
    Path(id): Path<String>,
    Posted(viewer, NoFields {}): Posted<NoFields>,
) -> PageResult {
    let changes = ScheduleChanges {
        paused: Some(false),
        ..ScheduleChanges::default()
    };
    change(&ctx, &viewer, &id, changes).await
}

/// Runs the schedule once now; the detail page shows the fire and its run.
pub async fn trigger(
    State(ctx): State<Arc<Context>>,
    Path(id): Path<String>,
    Posted(viewer, NoFields {}): Posted<NoFields>,
) -> PageResult {
    if !viewer.is_admin() {
        return Err(PageError::forbidden(Some(viewer.chrome)));
    }
    fire::trigger(&ctx, viewer.caller(), &id)
        .await
        .map_err(viewer.fail())?;
    Ok(Redirect::to(&format!("/schedules/{id}")).into_response())
}
