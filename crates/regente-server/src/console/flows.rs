//! Flows: the list (admins only, as in the API), one flow with its steps and
//! its recent runs, and one run (anyone signed in who may read it, as in the
//! API) with its steps, cancelling and retrying it.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect};
use regente_core::ExecutionStatus;
use regente_store::{Flow, FlowRun};
use serde_json::Value;

use super::executions::{who, Names, People};
use super::format;
use super::pages::{render, Chrome, PageResult};
use super::session::{AdminViewer, NoFields, Posted, Viewer};
use crate::service::{self, flows, Context};

/// Runs shown with a flow.
const RECENT_RUNS: u32 = 20;

pub struct FlowRow {
    pub id: String,
    pub name: String,
    pub version: u32,
    pub steps: usize,
    pub saved: String,
    pub saved_by: String,
}

/// A step of the definition.
pub struct StepRow {
    pub id: String,
    pub robot: String,
    pub robot_id: String,
    pub runtime: String,
    pub when: String,
    /// True for the `on_failure` step.
    pub on_failure: bool,
}

pub struct RunRow {
    pub id: String,
    pub status: &'static str,
    pub version: u32,
    pub started: String,
    pub duration: String,
    pub by: String,
}

/// A step of a run.
pub struct RunStepRow {
    pub id: String,
    pub status: &'static str,
    pub attempt: u32,
    pub execution_id: Option<String>,
    pub reason: String,
}

#[derive(Template)]
#[template(path = "flows.html")]
struct FlowsPage {
    chrome: Chrome,
    flows: Vec<FlowRow>,
}

#[derive(Template)]
#[template(path = "flow.html")]
struct FlowPage {
    chrome: Chrome,
    flow: FlowRow,
    steps: Vec<StepRow>,
    runs: Vec<RunRow>,
}

#[derive(Template)]
#[template(path = "flow_run.html")]
struct FlowRunPage {
    chrome: Chrome,
    run: FlowRun,
    status: &'static str,
    flow_name: String,
    steps: Vec<RunStepRow>,
    started_by: String,
    canceled_by: Option<String>,
    started: String,
    ended: String,
    duration: String,
    input: String,
    return_value: Option<String>,
    can_cancel: bool,
    can_retry: bool,
}

fn definition_steps(flow: &Flow) -> impl Iterator<Item = &Value> {
    let steps = flow.definition.get("steps").and_then(Value::as_array);
    steps
        .into_iter()
        .flatten()
        .chain(flow.definition.get("on_failure"))
}

fn flow_row(saved_by: String, flow: &Flow) -> FlowRow {
    FlowRow {
        id: flow.id.clone(),
        name: flow.name.clone(),
        version: flow.version,
        steps: definition_steps(flow).count(),
        saved: format::time_html(flow.version_created),
        saved_by,
    }
}

fn duration_of(init: i64, end: Option<i64>) -> String {
    end.map_or_else(|| "—".to_owned(), |end| format::duration(end - init))
}

pub async fn list(AdminViewer(viewer): AdminViewer, State(ctx): State<Arc<Context>>) -> PageResult {
    let framed = viewer.fail();
    let list = flows::list(&ctx, viewer.caller()).await.map_err(&framed)?;
    let mut people = People::new(&ctx, &viewer);
    let mut rows = Vec::with_capacity(list.len());
    for flow in &list {
        let by = people.name(&flow.created_by).await.map_err(&framed)?;
        rows.push(flow_row(by, flow));
    }
    Ok(render(&FlowsPage {
        chrome: viewer.chrome,
        flows: rows,
    }))
}

pub async fn detail(
    AdminViewer(viewer): AdminViewer,
    State(ctx): State<Arc<Context>>,
    Path(id): Path<String>,
) -> PageResult {
    let framed = viewer.fail();
    let flow = flows::get(&ctx, viewer.caller(), &id)
        .await
        .map_err(&framed)?;
    let names = Names::load(&ctx, &viewer).await.map_err(&framed)?;
    let text = |step: &Value, field: &str| {
        step.get(field)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let on_failure = flow.definition.get("on_failure");
    let steps = definition_steps(&flow)
        .map(|step| {
            let robot_id = text(step, "robot_id");
            StepRow {
                id: text(step, "id"),
                robot: names.robot(&robot_id).to_owned(),
                runtime: names.runtime(&text(step, "runtime_id")).to_owned(),
                robot_id,
                when: text(step, "when"),
                on_failure: on_failure.is_some_and(|last| std::ptr::eq(last, step)),
            }
        })
        .collect();
    let mut people = People::new(&ctx, &viewer);
    let mut runs = Vec::new();
    for run in flows::recent_runs(&ctx, viewer.caller(), &id, RECENT_RUNS)
        .await
        .map_err(&framed)?
    {
        runs.push(RunRow {
            status: run.status.as_str(),
            version: run.version,
            started: format::time_html(run.init),
            duration: duration_of(run.init, run.end),
            by: people.name(&run.submitted_by).await.map_err(&framed)?,
            id: run.id,
        });
    }
    let by = people.name(&flow.created_by).await.map_err(&framed)?;
    Ok(render(&FlowPage {
        flow: flow_row(by, &flow),
        steps,
        runs,
        chrome: viewer.chrome,
    }))
}

pub async fn run(
    viewer: Viewer,
    State(ctx): State<Arc<Context>>,
    Path(id): Path<String>,
) -> PageResult {
    let framed = viewer.fail();
    let run = flows::get_run(&ctx, viewer.caller(), &id)
        .await
        .map_err(&framed)?;
    let flow_name = match flows::get(&ctx, viewer.caller(), &run.flow_id).await {
        Ok(flow) => flow.name,
        Err(service::Error::NotFound(_)) => run.flow_id.clone(),
        Err(e) => return Err(framed(e)),
    };
    let started_by = who(&ctx, &viewer, &run.submitted_by)
        .await
        .map_err(&framed)?;
    let canceled_by = match &run.canceled_by {
        Some(id) => Some(who(&ctx, &viewer, id).await.map_err(&framed)?),
        None => None,
    };
    let steps = run
        .steps
        .iter()
        .map(|step| RunStepRow {
            id: step.step_id.clone(),
            status: regente_flows::StepStatus::parse(&step.status)
                .map_or("PENDENT", |s| s.as_str()),
            attempt: step.attempt,
            execution_id: step.execution_id.clone(),
            reason: step.reason.clone().unwrap_or_default(),
        })
        .collect();
    Ok(render(&FlowRunPage {
        status: run.status.as_str(),
        flow_name,
        steps,
        started_by,
        canceled_by,
        started: format::time_html(run.init),
        ended: format::maybe_time_html(run.end),
        duration: duration_of(run.init, run.end),
        input: format::json(&run.input),
        return_value: run.return_value.as_ref().map(format::json),
        can_cancel: run.status == ExecutionStatus::Running,
        can_retry: matches!(
            run.status,
            ExecutionStatus::Error | ExecutionStatus::Canceled
        ),
        run,
        chrome: viewer.chrome,
    }))
}

/// Cancels a running run; one that ended meanwhile shows how.
pub async fn cancel(
    State(ctx): State<Arc<Context>>,
    Path(id): Path<String>,
    Posted(viewer, NoFields {}): Posted<NoFields>,
) -> PageResult {
    match flows::cancel_run(&ctx, viewer.caller(), &id).await {
        Ok(()) | Err(service::Error::Conflict(_)) => {}
        Err(e) => return Err(viewer.fail()(e)),
    }
    Ok(Redirect::to(&format!("/flows/runs/{id}")).into_response())
}

/// Resumes a run that ended ERROR or CANCELED at its failed step.
pub async fn retry(
    State(ctx): State<Arc<Context>>,
    Path(id): Path<String>,
    Posted(viewer, NoFields {}): Posted<NoFields>,
) -> PageResult {
    flows::retry_run(&ctx, viewer.caller(), &id)
        .await
        .map_err(viewer.fail())?;
    Ok(Redirect::to(&format!("/flows/runs/{id}")).into_response())
}
