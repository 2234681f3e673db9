//! Flows: definitions on the admin API (`/api/admin/flows`), runs on the
//! Integration API (`/api/integration/v2/flows/...`), which integration users
//! may call too.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use regente_store::{Flow, FlowRun};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::error::{ApiResult, ErrorBody};
use super::extract::{Admin, Authenticated};
use super::integration::{idempotency_key, parse_run_body, RunBody, RunIdBody};
use crate::service::{flows, Context};

pub fn router() -> Router<Arc<Context>> {
    Router::new()
        .route("/api/admin/flows", post(save_flow).get(list_flows))
        .route("/api/admin/flows/{id}", get(get_flow))
        .route("/api/admin/flows/{id}/runs", get(list_flow_runs))
        .route("/api/integration/v2/flows/{flow_id}/run", post(run_flow))
        .route(
            "/api/integration/v2/flows/runs/{id}",
            get(get_run).delete(cancel_run),
        )
        .route("/api/integration/v2/flows/runs/{id}/retry", post(retry_run))
}

/// A flow definition as `POST /api/admin/flows` takes it (see README, Flows).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct FlowDefinitionBody {
    /// Unique in the organisation: saving under an existing name makes its next version.
    name: String,
    /// Declared inputs, as a robot's: `[{"name", "type", "default"}]`.
    variables: Option<Vec<Value>>,
    /// `[{"id", "robot_id", "robot_version"?, "runtime_id", "variables"?, "when"?,
    /// "retry"? {"attempts", "backoff_seconds"}, "timeout_seconds"?, "continue_on_error"?}]`,
    /// run in order.
    steps: Vec<Value>,
    /// A step that runs when a step failed; its templates may read `failure`.
    on_failure: Option<Value>,
    /// A template of the run's return value; the last step's that ran when absent.
    #[schema(rename = "return")]
    return_value: Option<Value>,
}

#[derive(Serialize, ToSchema)]
pub struct FlowBody {
    id: String,
    name: String,
    /// The newest version (or the one shown).
    version: u32,
    created: i64,
    /// When this version was saved, and by whom.
    version_created: i64,
    created_by: String,
    definition: Value,
}

impl From<Flow> for FlowBody {
    fn from(flow: Flow) -> FlowBody {
        FlowBody {
            id: flow.id,
            name: flow.name,
            version: flow.version,
            created: flow.created,
            version_created: flow.version_created,
            created_by: flow.created_by,
            definition: flow.definition,
        }
    }
}

/// Saves a flow: a new one, or the next version of the flow with this name.
#[utoipa::path(post, path = "/api/admin/flows", tag = "flows", request_body = FlowDefinitionBody,
    responses(
        (status = 201, description = "Saved", body = FlowBody),
        (status = 400, description = "Invalid, the message naming the field (`steps[2].when: column 14: ...`)", body = ErrorBody),
        (status = 401, description = "No or bad token", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "A step's robot or runtime is not the organisation's", body = ErrorBody),
    ), security(("bearer" = [])))]
async fn save_flow(
    Admin(caller): Admin,
    State(ctx): State<Arc<Context>>,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<FlowBody>)> {
    let body: Value = super::parse_json(&body, r#"{"name": "...", "steps": [...]}"#)?;
    let flow = flows::save(&ctx, &caller, &body).await?;
    Ok((StatusCode::CREATED, Json(flow.into())))
}

/// Every flow of the organisation, with its newest version.
#[utoipa::path(get, path = "/api/admin/flows", tag = "flows",
    responses(
        (status = 200, body = Vec<FlowBody>),
        (status = 401, description = "No or bad token", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
    ), security(("bearer" = [])))]
async fn list_flows(
    Admin(caller): Admin,
    State(ctx): State<Arc<Context>>,
) -> ApiResult<Json<Vec<FlowBody>>> {
    let list = flows::list(&ctx, &caller).await?;
    Ok(Json(list.into_iter().map(FlowBody::from).collect()))
}

/// A flow with its newest version's definition.
#[utoipa::path(get, path = "/api/admin/flows/{id}", tag = "flows", params(("id" = String, Path)),
    responses(
        (status = 200, body = FlowBody),
        (status = 401, description = "No or bad token", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "Unknown flow", body = ErrorBody),
    ), security(("bearer" = [])))]
async fn get_flow(
    Admin(caller): Admin,
    State(ctx): State<Arc<Context>>,
    Path(id): Path<String>,
) -> ApiResult<Json<FlowBody>> {
    Ok(Json(flows::get(&ctx, &caller, &id).await?.into()))
}

/// The most runs [`list_flow_runs`] answers at once.
pub const MAX_RUNS_PAGE: u32 = 200;

/// A flow's most recent runs, newest first: `limit` of them (50 by default).
#[utoipa::path(get, path = "/api/admin/flows/{id}/runs", tag = "flows",
    params(("id" = String, Path),
           ("limit" = Option<u32>, Query, minimum = 1, maximum = 200, description = "1 to 200, default 50")),
    responses(
        (status = 200, body = Vec<FlowRunBody>),
        (status = 400, description = "A bad limit", body = ErrorBody),
        (status = 401, description = "No or bad token", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "Unknown flow", body = ErrorBody),
    ), security(("bearer" = [])))]
async fn list_flow_runs(
    Admin(caller): Admin,
    State(ctx): State<Arc<Context>>,
    Path(id): Path<String>,
    Query(query): Query<std::collections::HashMap<String, String>>,
) -> ApiResult<Json<Vec<FlowRunBody>>> {
    let limit = match query.get("limit") {
        None => 50,
        Some(text) => {
            super::whole_number("query parameter limit", text, 1..=u64::from(MAX_RUNS_PAGE))? as u32
        }
    };
    let runs = flows::recent_runs(&ctx, &caller, &id, limit).await?;
    Ok(Json(runs.into_iter().map(FlowRunBody::from).collect()))
}

/// Runs the flow's newest version with the run body's variables as its inputs;
/// answers the run's id once the run and its first step are on disk.
#[utoipa::path(post, path = "/api/integration/v2/flows/{flow_id}/run", tag = "flows",
    params(("flow_id" = String, Path),
           ("Idempotency-Key" = Option<String>, Header, description = "The same key from the same user within 24 hours answers the same run")),
    request_body(content = RunBody, description = "Inputs; may be absent"),
    responses(
        (status = 200, description = "The run's id", body = RunIdBody),
        (status = 400, description = "Bad body or input", body = ErrorBody),
        (status = 401, description = "No or bad token", body = ErrorBody),
        (status = 404, description = "Unknown flow", body = ErrorBody),
        (status = 409, description = "Idempotency-Key reused for another request", body = ErrorBody),
    ), security(("bearer" = [])))]
async fn run_flow(
    Authenticated(caller): Authenticated,
    State(ctx): State<Arc<Context>>,
    Path(flow_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<RunIdBody>> {
    let variables = parse_run_body(&body)?;
    let key = idempotency_key(&headers)?;
    let id = flows::start_run(&ctx, &caller, &flow_id, variables, key).await?;
    Ok(Json(RunIdBody { id }))
}

#[derive(Serialize, ToSchema)]
pub struct FlowStepBody {
    id: String,
    /// PENDENT, RUNNING, FINISHED, ERROR, CANCELED or SKIPPED (its `when` was false).
    status: &'static str,
    /// The current or last try's execution; its result route works as any run's.
    execution_id: Option<String>,
    #[serde(rename = "returnValue")]
    #[schema(rename = "returnValue")]
    return_value: Option<Value>,
    /// Tries started.
    attempt: u32,
    /// Why it failed or was skipped.
    reason: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct FlowRunBody {
    id: String,
    flow_id: String,
    /// The flow's version the run keeps.
    version: u32,
    /// RUNNING, FINISHED, ERROR or CANCELED.
    status: &'static str,
    /// In order, then `on_failure` if the flow has one.
    steps: Vec<FlowStepBody>,
    #[serde(rename = "returnValue")]
    #[schema(rename = "returnValue")]
    return_value: Option<Value>,
    /// The run's inputs.
    input: Value,
    /// Start time, epoch milliseconds.
    init: i64,
    /// End time; null while it runs.
    end: Option<i64>,
    /// Why it ended, when not FINISHED.
    reason: Option<String>,
    /// A user's id, or `schedule:ID` for a schedule's run.
    submitted_by: String,
    canceled_by: Option<String>,
    /// The schedule that started it, and the time of its fire; null otherwise.
    schedule_id: Option<String>,
    scheduled_for: Option<i64>,
}

impl From<FlowRun> for FlowRunBody {
    fn from(run: FlowRun) -> FlowRunBody {
        FlowRunBody {
            id: run.id,
            flow_id: run.flow_id,
            version: run.version,
            status: run.status.as_str(),
            steps: run
                .steps
                .into_iter()
                .map(|step| FlowStepBody {
                    status: regente_flows::StepStatus::parse(&step.status)
                        .map_or("PENDENT", |s| s.as_str()),
                    id: step.step_id,
                    execution_id: step.execution_id,
                    return_value: step.return_value,
                    attempt: step.attempt,
                    reason: step.reason,
                })
                .collect(),
            return_value: run.return_value,
            input: run.input,
            init: run.init,
            end: run.end,
            reason: run.end_reason,
            submitted_by: run.submitted_by,
            canceled_by: run.canceled_by,
            schedule_id: run.schedule_id,
            scheduled_for: run.scheduled_for,
        }
    }
}

/// A flow run: its status, each step's status, execution and return value, and
/// the run's return value.
#[utoipa::path(get, path = "/api/integration/v2/flows/runs/{id}", tag = "flows", params(("id" = String, Path)),
    responses(
        (status = 200, body = FlowRunBody),
        (status = 401, description = "No or bad token", body = ErrorBody),
        (status = 404, description = "Unknown run", body = ErrorBody),
    ), security(("bearer" = [])))]
async fn get_run(
    Authenticated(caller): Authenticated,
    State(ctx): State<Arc<Context>>,
    Path(id): Path<String>,
) -> ApiResult<Json<FlowRunBody>> {
    Ok(Json(flows::get_run(&ctx, &caller, &id).await?.into()))
}

/// Cancels a running flow run: it ends CANCELED, and its running step's robot is
/// stopped.
#[utoipa::path(delete, path = "/api/integration/v2/flows/runs/{id}", tag = "flows", params(("id" = String, Path)),
    responses(
        (status = 200, description = "Canceled; empty body"),
        (status = 401, description = "No or bad token", body = ErrorBody),
        (status = 404, description = "Unknown run", body = ErrorBody),
        (status = 409, description = "The run has already ended", body = ErrorBody),
    ), security(("bearer" = [])))]
async fn cancel_run(
    Authenticated(caller): Authenticated,
    State(ctx): State<Arc<Context>>,
    Path(id): Path<String>,
) -> ApiResult<()> {
    flows::cancel_run(&ctx, &caller, &id).await?;
    Ok(())
}

/// Resumes a run that ended ERROR or CANCELED at its failed step; the steps that
/// succeeded keep their results.
#[utoipa::path(post, path = "/api/integration/v2/flows/runs/{id}/retry", tag = "flows", params(("id" = String, Path)),
    responses(
        (status = 200, description = "Resumed; the run is RUNNING again", body = FlowRunBody),
        (status = 401, description = "No or bad token", body = ErrorBody),
        (status = 404, description = "Unknown run", body = ErrorBody),
        (status = 409, description = "The run is running or finished", body = ErrorBody),
    ), security(("bearer" = [])))]
async fn retry_run(
    Authenticated(caller): Authenticated,
    State(ctx): State<Arc<Context>>,
    Path(id): Path<String>,
) -> ApiResult<Json<FlowRunBody>> {
    flows::retry_run(&ctx, &caller, &id).await?;
    let run = flows::get_run(&ctx, &caller, &id).await?;
    Ok(Json(run.into()))
}
