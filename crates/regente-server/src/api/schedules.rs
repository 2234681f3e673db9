//! The admin API's schedules (`/api/admin/schedules`): runs of a robot, or of
//! a flow, started by the server at the times of a cron or `every` rule, in a
//! time zone. Bodies are read field by field, so that a bad one is answered
//! 400 naming its field.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use regente_core::schedule::plan::{Misfire, Overlap};
use regente_core::schedule::Rule;
use regente_store::{FireOutcome, ScheduleFire};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::Admin;
use super::fields::{bad, instant, Fields};
use crate::service::schedules::fire::{self, FireAnswer};
use crate::service::schedules::{self, ScheduleChanges, ScheduleView};
use crate::service::{runs, Context};

pub fn router() -> Router<Arc<Context>> {
    Router::new()
        .route(
            "/api/admin/schedules",
            get(list_schedules).post(create_schedule),
        )
        .route(
            "/api/admin/schedules/{id}",
            get(get_schedule)
                .patch(update_schedule)
                .delete(delete_schedule),
        )
        .route("/api/admin/schedules/{id}/trigger", post(trigger_schedule))
        .route(
            "/api/admin/schedules/{id}/backfill",
            post(backfill_schedule),
        )
}

/// A schedule as created (every field but the name, the target and the rule
/// is optional) or edited (every field is; `null` clears `start_at`, `end_at`,
/// `note` and `pause_after_failures`). The target is `robot_id` with
/// `runtime_id`, or `flow_id`. Times are epoch milliseconds or ISO-8601 with
/// an offset.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ScheduleRequest {
    name: String,
    /// The robot to run, with `runtime_id` (or give `flow_id`).
    robot_id: Option<String>,
    runtime_id: Option<String>,
    /// The flow to run (or give `robot_id` with `runtime_id`).
    flow_id: Option<String>,
    /// The run body's variables, passed to each run: `[{"name", "type", "value"}]`;
    /// a flow's inputs for a flow.
    variables: Option<Vec<super::integration::VariableBody>>,
    /// 5 fields, or 6 with seconds first; or give `every`.
    cron: Option<String>,
    /// `{"frequency": "daily" | "weekly" | "biweekly" | "monthly", "at": "HH:MM", "weekdays": ["monday", ...], "day": 1}`.
    every: Option<Value>,
    /// An IANA zone; UTC by default.
    timezone: Option<String>,
    #[schema(value_type = Option<Value>)]
    start_at: Option<Value>,
    #[schema(value_type = Option<Value>)]
    end_at: Option<Value>,
    /// `skip` (default), `buffer_one` or `allow`.
    overlap: Option<String>,
    /// 3600 by default.
    catchup_window_seconds: Option<i64>,
    /// `run_latest` (default) or `run_all`.
    misfire: Option<String>,
    jitter_seconds: Option<i64>,
    paused: Option<bool>,
    /// Why it is paused (with `"paused": true`).
    note: Option<String>,
    /// This many consecutive ERROR runs pause it.
    pause_after_failures: Option<u32>,
}

/// A fire time: epoch milliseconds and the local time in the schedule's zone.
#[derive(Serialize, ToSchema)]
pub struct FireTime {
    at: i64,
    /// ISO-8601 with the zone's offset.
    local: String,
}

/// A recorded fire.
#[derive(Serialize, ToSchema)]
pub struct FireBody {
    scheduled_for: i64,
    local: String,
    /// `rule`, `trigger` or `backfill`.
    origin: &'static str,
    /// `started`, `skipped_overlap`, `skipped_error` or `missed`; `already_fired`
    /// in a backfill's answer for a fire that had happened.
    outcome: &'static str,
    /// The execution a robot's fire queued.
    execution_id: Option<String>,
    /// The run a flow's fire started (`GET /api/integration/v2/flows/runs/{id}`).
    flow_run_id: Option<String>,
    reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    recorded_at: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct ScheduleBody {
    id: String,
    name: String,
    /// The robot it runs, on `runtime_id`; null for a flow's schedule.
    robot_id: Option<String>,
    runtime_id: Option<String>,
    /// The flow it runs; null for a robot's schedule.
    flow_id: Option<String>,
    variables: Value,
    /// The rule as given.
    cron: Option<String>,
    every: Option<Value>,
    timezone: String,
    start_at: Option<i64>,
    end_at: Option<i64>,
    overlap: &'static str,
    catchup_window_seconds: i64,
    misfire: &'static str,
    jitter_seconds: i64,
    paused: bool,
    note: Option<String>,
    pause_after_failures: Option<u32>,
    consecutive_failures: u32,
    /// Runs queued.
    fired: u64,
    /// Fires skipped (overlap, or a run that could not be queued).
    skipped: u64,
    /// Fires due while no server could fire them, not caught up.
    missed: u64,
    /// The next fire not handled yet; null when the rule fires no more.
    next_fire_at: Option<i64>,
    /// The next 10 fire times from now (whether paused or not).
    next_fires: Vec<FireTime>,
    /// The latest recorded fires, newest first (one schedule only).
    #[serde(skip_serializing_if = "Option::is_none")]
    last_fires: Option<Vec<FireBody>>,
    created_at: i64,
    updated_at: i64,
}

/// The `execution_id` and `flow_run_id` of what a fire started.
fn started_ids(outcome: Option<&FireOutcome>) -> (Option<String>, Option<String>) {
    match outcome {
        Some(FireOutcome::Started(run)) => (
            run.execution_id().map(str::to_owned),
            run.flow_run_id().map(str::to_owned),
        ),
        _ => (None, None),
    }
}

fn fire_body(rule: &Rule, fire: &ScheduleFire) -> FireBody {
    let (execution_id, flow_run_id) = started_ids(Some(&fire.outcome));
    FireBody {
        scheduled_for: fire.scheduled_for,
        local: rule.local_iso(fire.scheduled_for),
        origin: fire.origin.as_str(),
        outcome: fire.outcome.as_str(),
        execution_id,
        flow_run_id,
        reason: fire.reason.clone(),
        recorded_at: Some(fire.recorded_at),
    }
}

fn schedule_body(view: ScheduleView, detailed: bool) -> ScheduleBody {
    let ScheduleView {
        schedule: s,
        rule,
        next_fires,
        last_fires,
    } = view;
    ScheduleBody {
        next_fires: next_fires
            .iter()
            .map(|at| FireTime {
                at: *at,
                local: rule.local_iso(*at),
            })
            .collect(),
        last_fires: detailed.then(|| last_fires.iter().map(|f| fire_body(&rule, f)).collect()),
        cron: s
            .rule
            .get("cron")
            .and_then(Value::as_str)
            .map(str::to_owned),
        every: s.rule.get("every").cloned(),
        robot_id: s.target.robot_id().map(str::to_owned),
        runtime_id: s.target.runtime_id().map(str::to_owned),
        flow_id: s.target.flow_id().map(str::to_owned),
        id: s.id,
        name: s.name,
        variables: s.variables,
        timezone: s.timezone,
        start_at: s.start_at,
        end_at: s.end_at,
        overlap: s.overlap.as_str(),
        catchup_window_seconds: s.catchup_window_seconds,
        misfire: s.misfire.as_str(),
        jitter_seconds: s.jitter_seconds,
        paused: s.paused,
        note: s.pause_note,
        pause_after_failures: s.pause_after_failures,
        consecutive_failures: s.consecutive_failures,
        fired: s.fired,
        skipped: s.skipped,
        missed: s.missed,
        next_fire_at: s.next_fire_at,
        created_at: s.created_at,
        updated_at: s.updated_at,
    }
}

const SCHEDULE_FIELDS: &[&str] = &[
    "name",
    "robot_id",
    "runtime_id",
    "flow_id",
    "variables",
    "cron",
    "every",
    "timezone",
    "start_at",
    "end_at",
    "overlap",
    "catchup_window_seconds",
    "misfire",
    "jitter_seconds",
    "paused",
    "note",
    "pause_after_failures",
];

fn parse_changes(body: &[u8]) -> ApiResult<ScheduleChanges> {
    let mut fields = Fields::parse(body, SCHEDULE_FIELDS)?;
    let cron = fields.value("cron");
    let every = fields.value("every");
    let when = (cron.is_some() || every.is_some())
        .then(|| schedules::when_from_json(cron.as_ref(), every.as_ref()))
        .transpose()?;
    let variables = fields
        .nullable("variables")
        .map(|value| {
            runs::variables_from_json(value.unwrap_or(Value::Null))
                .map_err(|why| bad("variables", &why))
        })
        .transpose()?;
    let time = |fields: &mut Fields, field: &'static str| {
        fields
            .nullable(field)
            .map(|value| value.map(|value| instant(field, &value)).transpose())
            .transpose()
    };
    let start_at = time(&mut fields, "start_at")?;
    let end_at = time(&mut fields, "end_at")?;
    let overlap = fields
        .text("overlap")?
        .map(|text| Overlap::parse(&text))
        .transpose()?;
    let misfire = fields
        .text("misfire")?
        .map(|text| Misfire::parse(&text))
        .transpose()?;
    let note = match fields.nullable("note") {
        None => None,
        Some(None) => Some(None),
        Some(Some(Value::String(note))) => Some(Some(note)),
        Some(Some(_)) => return Err(bad("note", "must be a string")),
    };
    let pause_after_failures = fields
        .nullable("pause_after_failures")
        .map(|value| {
            value
                .map(|value| {
                    value
                        .as_u64()
                        .and_then(|n| u32::try_from(n).ok())
                        .ok_or_else(|| bad("pause_after_failures", "must be a positive integer"))
                })
                .transpose()
        })
        .transpose()?;
    Ok(ScheduleChanges {
        name: fields.text("name")?,
        robot_id: fields.text("robot_id")?,
        runtime_id: fields.text("runtime_id")?,
        flow_id: fields.text("flow_id")?,
        variables,
        when,
        timezone: fields.text("timezone")?,
        start_at,
        end_at,
        overlap,
        catchup_window_seconds: fields.integer("catchup_window_seconds")?,
        misfire,
        jitter_seconds: fields.integer("jitter_seconds")?,
        paused: fields.flag("paused")?,
        note,
        pause_after_failures,
    })
}

/// Creates a schedule. Answers it with its next 10 fire times.
#[utoipa::path(post, path = "/api/admin/schedules", tag = "schedules", request_body = ScheduleRequest,
    responses((status = 201, body = ScheduleBody),
              (status = 400, description = "A field is wrong: the message names it (unknown zone, impossible cron, end_at before start_at, both targets or none, variables the robot or the flow's inputs refuse, ...)", body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, description = "The robot, runtime or flow is not the organisation's", body = ErrorBody),
              (status = 409, description = "The name is taken", body = ErrorBody)),
    security(("bearer" = [])))]
async fn create_schedule(
    Admin(caller): Admin,
    State(ctx): State<Arc<Context>>,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<ScheduleBody>)> {
    let changes = parse_changes(&body)?;
    let view = schedules::create(&ctx, &caller, changes).await?;
    Ok((StatusCode::CREATED, Json(schedule_body(view, true))))
}

/// Lists the organisation's schedules, oldest first.
#[utoipa::path(get, path = "/api/admin/schedules", tag = "schedules",
    responses((status = 200, body = Vec<ScheduleBody>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
async fn list_schedules(
    Admin(caller): Admin,
    State(ctx): State<Arc<Context>>,
) -> ApiResult<Json<Vec<ScheduleBody>>> {
    let list = schedules::list(&ctx, &caller).await?;
    Ok(Json(
        list.into_iter().map(|v| schedule_body(v, false)).collect(),
    ))
}

/// One schedule with its next fires and its last fires and their outcomes.
#[utoipa::path(get, path = "/api/admin/schedules/{id}", tag = "schedules", params(("id" = String, Path)),
    responses((status = 200, body = ScheduleBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn get_schedule(
    Admin(caller): Admin,
    State(ctx): State<Arc<Context>>,
    Path(id): Path<String>,
) -> ApiResult<Json<ScheduleBody>> {
    let view = schedules::get(&ctx, &caller, &id).await?;
    Ok(Json(schedule_body(view, true)))
}

/// Edits a schedule: any field of its definition; `{"paused": true, "note":
/// "..."}` pauses it, `{"paused": false}` resumes it (from the next fire after
/// now). A change of when it fires counts its next fire from now.
#[utoipa::path(patch, path = "/api/admin/schedules/{id}", tag = "schedules", params(("id" = String, Path)),
    request_body = ScheduleRequest,
    responses((status = 200, body = ScheduleBody), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
async fn update_schedule(
    Admin(caller): Admin,
    State(ctx): State<Arc<Context>>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<ScheduleBody>> {
    if !regente_core::is_valid_id(&id) {
        return Err(ApiError::not_found(format!("schedule {id} not found")));
    }
    let changes = parse_changes(&body)?;
    let view = schedules::update(&ctx, &caller, &id, changes).await?;
    Ok(Json(schedule_body(view, true)))
}

/// Deletes a schedule and its record of fires; the runs it queued stay.
#[utoipa::path(delete, path = "/api/admin/schedules/{id}", tag = "schedules", params(("id" = String, Path)),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn delete_schedule(
    Admin(caller): Admin,
    State(ctx): State<Arc<Context>>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    schedules::delete(&ctx, &caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn answer_body(rule: &Rule, origin: &'static str, answer: FireAnswer) -> FireBody {
    let (execution_id, flow_run_id) = started_ids(answer.outcome.as_ref());
    FireBody {
        scheduled_for: answer.scheduled_for,
        local: rule.local_iso(answer.scheduled_for),
        origin,
        outcome: answer
            .outcome
            .as_ref()
            .map_or("already_fired", FireOutcome::as_str),
        execution_id,
        flow_run_id,
        reason: None,
        recorded_at: None,
    }
}

/// Runs the schedule once now, counted as a fire (the overlap rule applies,
/// so the outcome may be `skipped_overlap`; a paused schedule may be
/// triggered).
#[utoipa::path(post, path = "/api/admin/schedules/{id}/trigger", tag = "schedules", params(("id" = String, Path)),
    responses((status = 200, body = FireBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, description = "It fired at this very millisecond already", body = ErrorBody)),
    security(("bearer" = [])))]
async fn trigger_schedule(
    Admin(caller): Admin,
    State(ctx): State<Arc<Context>>,
    Path(id): Path<String>,
) -> ApiResult<Json<FireBody>> {
    let answer = fire::trigger(&ctx, &caller, &id).await?;
    let view = schedules::get(&ctx, &caller, &id).await?;
    Ok(Json(answer_body(&view.rule, "trigger", answer)))
}

/// A backfill's range: epoch milliseconds or ISO-8601 with an offset.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct BackfillRequest {
    #[schema(value_type = Value)]
    from: Value,
    #[schema(value_type = Value)]
    to: Value,
}

#[derive(Serialize, ToSchema)]
pub struct BackfillBody {
    /// Each fire of the range, oldest first.
    fires: Vec<FireBody>,
    started: usize,
    skipped: usize,
    already_fired: usize,
}

/// Fires each fire of the rule from `from` to `to` (both included, not in the
/// future; 1,000 at most), with the overlap rule applied. Fires that happened
/// already are not run again; fires recorded as missed are.
#[utoipa::path(post, path = "/api/admin/schedules/{id}/backfill", tag = "schedules", params(("id" = String, Path)),
    request_body = BackfillRequest,
    responses((status = 200, body = BackfillBody), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn backfill_schedule(
    Admin(caller): Admin,
    State(ctx): State<Arc<Context>>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<BackfillBody>> {
    let mut fields = Fields::parse(&body, &["from", "to"])?;
    let mut bound = |field: &'static str| {
        fields
            .value(field)
            .ok_or_else(|| bad(field, "is required"))
            .and_then(|value| instant(field, &value))
    };
    let (from, to) = (bound("from")?, bound("to")?);
    let answers = fire::backfill(&ctx, &caller, &id, from, to).await?;
    let view = schedules::get(&ctx, &caller, &id).await?;
    let fires: Vec<FireBody> = answers
        .into_iter()
        .map(|answer| answer_body(&view.rule, "backfill", answer))
        .collect();
    let count = |outcomes: &[&str]| {
        fires
            .iter()
            .filter(|f| outcomes.contains(&f.outcome))
            .count()
    };
    Ok(Json(BackfillBody {
        started: count(&["started"]),
        skipped: count(&["skipped_overlap", "skipped_error"]),
        already_fired: count(&["already_fired"]),
        fires,
    }))
}
