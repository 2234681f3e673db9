//! The admin API (`/api/admin/...`): users, runtimes, robots, executions and
//! organisations of the caller's organisation. JSON fields are snake_case.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use regente_core::{ExecutionStatus, RobotManifest};
use regente_store::{Execution, ExecutionFilter};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::Admin;
use super::parse_json;
use crate::service::{organizations, robots, runs, runtimes, users, Context};

pub fn router(max_package_bytes: usize) -> Router<Arc<Context>> {
    Router::new()
        .route("/api/admin/users", get(list_users).post(create_user))
        .route(
            "/api/admin/users/{id}",
            delete(delete_user).patch(change_user),
        )
        .route(
            "/api/admin/runtimes",
            get(list_runtimes).post(create_runtime),
        )
        .route(
            "/api/admin/runtimes/{id}/key",
            axum::routing::post(replace_runtime_key),
        )
        .route(
            "/api/admin/robots",
            get(list_robots)
                .post(upload_robot)
                .layer(DefaultBodyLimit::max(max_package_bytes)),
        )
        .route(
            "/api/admin/runtimes/{id}",
            delete(delete_runtime).patch(rename_runtime),
        )
        .route("/api/admin/robots/{id}", get(get_robot))
        .route("/api/admin/executions", get(list_executions))
        .route("/api/admin/executions/{id}", get(get_execution))
        .route(
            "/api/admin/organizations",
            axum::routing::post(create_organization),
        )
}

#[derive(Deserialize, ToSchema)]
pub struct NewUserBody {
    username: String,
    /// Plain text (only the login routes take base64).
    password: String,
    /// `admin` or `integration`.
    role: String,
}

#[derive(Serialize, ToSchema)]
pub struct UserBody {
    id: String,
    username: String,
    role: &'static str,
    created_at: i64,
}

impl From<regente_store::User> for UserBody {
    fn from(user: regente_store::User) -> UserBody {
        UserBody {
            id: user.id,
            username: user.username,
            role: user.role.as_str(),
            created_at: user.created_at,
        }
    }
}

/// Creates a user in the caller's organisation.
#[utoipa::path(post, path = "/api/admin/users", tag = "admin", request_body = NewUserBody,
    responses((status = 201, body = UserBody), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 409, description = "Username taken", body = ErrorBody)),
    security(("bearer" = [])))]
async fn create_user(
    Admin(caller): Admin,
    State(ctx): State<Arc<Context>>,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<UserBody>)> {
    let body: NewUserBody = parse_json(
        &body,
        r#"{"username": "...", "password": "...", "role": "admin" | "integration"}"#,
    )?;
    let user = users::create(&ctx, &caller, &body.username, &body.password, &body.role).await?;
    Ok((StatusCode::CREATED, Json(user.into())))
}

/// Lists the users of the caller's organisation.
#[utoipa::path(get, path = "/api/admin/users", tag = "admin",
    responses((status = 200, body = Vec<UserBody>), (status = 403, body = ErrorBody)), security(("bearer" = [])))]
async fn list_users(
    Admin(caller): Admin,
    State(ctx): State<Arc<Context>>,
) -> ApiResult<Json<Vec<UserBody>>> {
    let users = users::list(&ctx, &caller).await?;
    Ok(Json(users.into_iter().map(UserBody::from).collect()))
}

/// Deletes a user; its tokens stop working at once.
#[utoipa::path(delete, path = "/api/admin/users/{id}", tag = "admin", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, description = "Deleting yourself", body = ErrorBody)),
    security(("bearer" = [])))]
async fn delete_user(
    Admin(caller): Admin,
    State(ctx): State<Arc<Context>>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    users::delete(&ctx, &caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
pub struct UserChangeBody {
    /// `admin` or `integration`.
    role: String,
}

/// Gives a user another role (not your own).
#[utoipa::path(patch, path = "/api/admin/users/{id}", tag = "admin", params(("id" = String, Path)),
    request_body = UserChangeBody,
    responses((status = 200, body = UserBody), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, description = "Changing your own role", body = ErrorBody)),
    security(("bearer" = [])))]
async fn change_user(
    Admin(caller): Admin,
    State(ctx): State<Arc<Context>>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<UserBody>> {
    let body: UserChangeBody = parse_json(&body, r#"{"role": "admin" | "integration"}"#)?;
    Ok(Json(
        users::set_role(&ctx, &caller, &id, &body.role)
            .await?
            .into(),
    ))
}

#[derive(Deserialize, ToSchema)]
pub struct NewRuntimeBody {
    name: String,
    /// Robots it runs at once; 1 by default (desktop robots need the screen).
    slots: Option<u32>,
}

#[derive(Serialize, ToSchema)]
pub struct NewRuntimeAnswer {
    id: String,
    name: String,
    slots: u32,
    /// The runtime's key: shown this once, stored hashed.
    key: String,
}

impl NewRuntimeAnswer {
    fn new(runtime: regente_store::Runtime, key: String) -> NewRuntimeAnswer {
        NewRuntimeAnswer {
            id: runtime.id,
            name: runtime.name,
            slots: runtime.slots,
            key,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct RuntimeBody {
    id: String,
    name: String,
    slots: u32,
    online: bool,
    /// Epoch milliseconds; null if never seen.
    last_seen: Option<i64>,
    created_at: i64,
}

impl RuntimeBody {
    fn of(ctx: &Context, runtime: regente_store::Runtime) -> RuntimeBody {
        RuntimeBody {
            online: runtimes::is_online(ctx, &runtime),
            id: runtime.id,
            name: runtime.name,
            slots: runtime.slots,
            last_seen: runtime.last_seen,
            created_at: runtime.created_at,
        }
    }
}

/// Creates a runtime and answers its key, once.
#[utoipa::path(post, path = "/api/admin/runtimes", tag = "admin", request_body = NewRuntimeBody,
    responses((status = 201, body = NewRuntimeAnswer), (status = 400, body = ErrorBody)), security(("bearer" = [])))]
async fn create_runtime(
    Admin(caller): Admin,
    State(ctx): State<Arc<Context>>,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<NewRuntimeAnswer>)> {
    let body: NewRuntimeBody = parse_json(&body, r#"{"name": "...", "slots": 1}"#)?;
    let (runtime, key) = runtimes::create(&ctx, &caller, &body.name, body.slots).await?;
    Ok((
        StatusCode::CREATED,
        Json(NewRuntimeAnswer::new(runtime, key)),
    ))
}

/// Gives a runtime a new key, answered this once. The old key is refused at
/// once and the agent connected with it is disconnected.
#[utoipa::path(post, path = "/api/admin/runtimes/{id}/key", tag = "admin", params(("id" = String, Path)),
    responses((status = 200, body = NewRuntimeAnswer), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
async fn replace_runtime_key(
    Admin(caller): Admin,
    State(ctx): State<Arc<Context>>,
    Path(id): Path<String>,
) -> ApiResult<Json<NewRuntimeAnswer>> {
    let (runtime, key) = runtimes::replace_key(&ctx, &caller, &id).await?;
    Ok(Json(NewRuntimeAnswer::new(runtime, key)))
}

/// Lists runtimes with their online state.
#[utoipa::path(get, path = "/api/admin/runtimes", tag = "admin",
    responses((status = 200, body = Vec<RuntimeBody>)), security(("bearer" = [])))]
async fn list_runtimes(
    Admin(caller): Admin,
    State(ctx): State<Arc<Context>>,
) -> ApiResult<Json<Vec<RuntimeBody>>> {
    let list = runtimes::list(&ctx, &caller).await?;
    Ok(Json(
        list.into_iter()
            .map(|runtime| RuntimeBody::of(&ctx, runtime))
            .collect(),
    ))
}

#[derive(Deserialize, ToSchema)]
pub struct RuntimeChangeBody {
    name: String,
}

/// Renames a runtime.
#[utoipa::path(patch, path = "/api/admin/runtimes/{id}", tag = "admin", params(("id" = String, Path)),
    request_body = RuntimeChangeBody,
    responses((status = 200, body = RuntimeBody), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn rename_runtime(
    Admin(caller): Admin,
    State(ctx): State<Arc<Context>>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<RuntimeBody>> {
    let body: RuntimeChangeBody = parse_json(&body, r#"{"name": "..."}"#)?;
    let runtime = runtimes::rename(&ctx, &caller, &id, &body.name).await?;
    Ok(Json(RuntimeBody::of(&ctx, runtime)))
}

/// Deletes an offline runtime with nothing queued or running; its key stops
/// working, its executions keep naming it.
#[utoipa::path(delete, path = "/api/admin/runtimes/{id}", tag = "admin", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody),
              (status = 409, description = "Online, or executions queued or running", body = ErrorBody)),
    security(("bearer" = [])))]
async fn delete_runtime(
    Admin(caller): Admin,
    State(ctx): State<Arc<Context>>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    runtimes::delete(&ctx, &caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
pub struct UploadedBody {
    id: String,
    name: String,
    version: u32,
    sha256: String,
}

#[derive(Serialize, ToSchema)]
pub struct RobotBody {
    id: String,
    name: String,
    created_at: i64,
    /// Oldest first; new runs take the last.
    versions: Vec<RobotVersionBody>,
}

#[derive(Serialize, ToSchema)]
pub struct RobotVersionBody {
    version: u32,
    sha256: String,
    size: u64,
    created_at: i64,
    command: Vec<String>,
    timeout_seconds: Option<u64>,
    retries: u32,
    variables: Vec<DeclaredVariableBody>,
}

#[derive(Serialize, ToSchema)]
pub struct DeclaredVariableBody {
    name: String,
    #[serde(rename = "type")]
    #[schema(rename = "type")]
    kind: &'static str,
    default: Option<Value>,
}

impl From<regente_store::Robot> for RobotBody {
    fn from(robot: regente_store::Robot) -> RobotBody {
        let versions = robot
            .versions
            .into_iter()
            .map(|version| {
                // Stored manifests were checked on upload.
                let manifest = RobotManifest::parse(&version.manifest).ok();
                RobotVersionBody {
                    version: version.version,
                    sha256: version.sha256,
                    size: version.size,
                    created_at: version.created_at,
                    command: manifest
                        .as_ref()
                        .map(|m| m.command.clone())
                        .unwrap_or_default(),
                    timeout_seconds: manifest
                        .as_ref()
                        .and_then(|m| m.timeout)
                        .map(|t| t.as_secs()),
                    retries: manifest.as_ref().map_or(0, |m| m.retries),
                    variables: manifest
                        .map(|m| {
                            m.variables
                                .into_iter()
                                .map(|v| DeclaredVariableBody {
                                    name: v.name.to_string(),
                                    kind: v.kind.as_str(),
                                    default: v.default.map(|d| d.as_json().clone()),
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                }
            })
            .collect();
        RobotBody {
            id: robot.id,
            name: robot.name,
            created_at: robot.created_at,
            versions,
        }
    }
}

/// Uploads a robot package (a zip with `robot.toml`): a new robot, or the next
/// version of the robot the manifest names.
#[utoipa::path(post, path = "/api/admin/robots", tag = "admin",
    request_body(content = Vec<u8>, content_type = "application/zip", description = "The package"),
    responses((status = 201, body = UploadedBody), (status = 400, description = "Bad package", body = ErrorBody),
              (status = 413, description = "Package too large", body = ErrorBody)),
    security(("bearer" = [])))]
async fn upload_robot(
    Admin(caller): Admin,
    State(ctx): State<Arc<Context>>,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<UploadedBody>)> {
    let uploaded = robots::upload(&ctx, &caller, body.to_vec()).await?;
    Ok((
        StatusCode::CREATED,
        Json(UploadedBody {
            id: uploaded.robot_id,
            name: uploaded.name,
            version: uploaded.version,
            sha256: uploaded.sha256,
        }),
    ))
}

/// Lists robots with their versions.
#[utoipa::path(get, path = "/api/admin/robots", tag = "admin",
    responses((status = 200, body = Vec<RobotBody>)), security(("bearer" = [])))]
async fn list_robots(
    Admin(caller): Admin,
    State(ctx): State<Arc<Context>>,
) -> ApiResult<Json<Vec<RobotBody>>> {
    let list = robots::list(&ctx, &caller).await?;
    Ok(Json(list.into_iter().map(RobotBody::from).collect()))
}

/// One robot with its versions.
#[utoipa::path(get, path = "/api/admin/robots/{id}", tag = "admin", params(("id" = String, Path)),
    responses((status = 200, body = RobotBody), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
async fn get_robot(
    Admin(caller): Admin,
    State(ctx): State<Arc<Context>>,
    Path(id): Path<String>,
) -> ApiResult<Json<RobotBody>> {
    if !regente_core::is_valid_id(&id) {
        return Err(ApiError::not_found(format!("robot {id} not found")));
    }
    Ok(Json(robots::get(&ctx, &caller, &id).await?.into()))
}

/// An execution with everything the admin API knows of it.
#[derive(Serialize, ToSchema)]
pub struct ExecutionBody {
    id: String,
    runtime_id: String,
    robot_id: String,
    robot_version: u32,
    variables: Value,
    status: &'static str,
    progress: f64,
    /// Submission time.
    init: i64,
    /// When the robot started.
    started: Option<i64>,
    end: Option<i64>,
    return_value: Option<Value>,
    /// Why it ended, in words.
    end_reason: Option<String>,
    exit_code: Option<i32>,
    /// A user's id, or `schedule:ID` for a run a schedule queued.
    submitted_by: Option<String>,
    canceled_by: Option<String>,
    /// The flow run this execution is a step of, if any.
    flow_run_id: Option<String>,
    /// Its step's id in the flow.
    flow_step_id: Option<String>,
    /// The schedule that queued it, if one did.
    schedule_id: Option<String>,
    /// The fire it is for (epoch ms), if a schedule queued it.
    scheduled_for: Option<i64>,
    /// PENDENT executions ahead of this one on its runtime (detail view only).
    #[serde(skip_serializing_if = "Option::is_none")]
    queue_position: Option<u64>,
}

impl From<Execution> for ExecutionBody {
    fn from(execution: Execution) -> ExecutionBody {
        ExecutionBody {
            id: execution.id,
            runtime_id: execution.runtime_id,
            robot_id: execution.robot_id,
            robot_version: execution.robot_version,
            variables: crate::service::credentials::shown_variables(&execution.variables),
            status: execution.status.as_str(),
            progress: execution.progress,
            init: execution.init,
            started: execution.started,
            end: execution.end,
            return_value: execution.return_value,
            end_reason: execution.end_reason,
            exit_code: execution.exit_code,
            submitted_by: execution.submitted_by,
            canceled_by: execution.canceled_by,
            flow_run_id: execution.flow_run_id,
            flow_step_id: execution.flow_step_id,
            schedule_id: execution.schedule_id,
            scheduled_for: execution.scheduled_for,
            queue_position: None,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct ExecutionPage {
    /// Newest first.
    executions: Vec<ExecutionBody>,
    /// Pass as `cursor` for the next page; null on the last page.
    next_cursor: Option<String>,
}

const DEFAULT_PAGE: u32 = 50;
pub(crate) const MAX_PAGE: u32 = 500;

fn parse_filter(params: &HashMap<String, String>) -> ApiResult<ExecutionFilter> {
    let number = |name: &str| -> ApiResult<Option<i64>> {
        params
            .get(name)
            .map(|text| {
                text.parse::<i64>().map_err(|_| {
                    ApiError::invalid(format!(
                        "query parameter {name} must be an integer, got {text:?}"
                    ))
                })
            })
            .transpose()
    };
    let id = |name: &str| -> ApiResult<Option<String>> {
        params
            .get(name)
            .map(|text| {
                if regente_core::is_valid_id(text) {
                    Ok(text.clone())
                } else {
                    Err(ApiError::invalid(format!(
                        "query parameter {name} must be an id of 16 hex digits, got {text:?}"
                    )))
                }
            })
            .transpose()
    };
    if let Some(unknown) = params.keys().find(|k| {
        ![
            "status", "robot", "runtime", "schedule", "from", "to", "limit", "cursor",
        ]
        .contains(&k.as_str())
    }) {
        return Err(ApiError::invalid(format!(
            "unknown query parameter {unknown:?}: use status, robot, runtime, schedule, from, to, limit or cursor"
        )));
    }
    let status = params
        .get("status")
        .map(|text| {
            ExecutionStatus::parse(text).ok_or_else(|| {
                ApiError::invalid(format!(
                    "status {text:?} is unknown: use PENDENT, RUNNING, FINISHED, ERROR or CANCELED"
                ))
            })
        })
        .transpose()?;
    let limit = match params.get("limit") {
        None => DEFAULT_PAGE,
        Some(text) => super::whole_number("limit", text, 1..=u64::from(MAX_PAGE))? as u32,
    };
    Ok(ExecutionFilter {
        status,
        robot_id: id("robot")?,
        runtime_id: id("runtime")?,
        schedule_id: id("schedule")?,
        from: number("from")?,
        to: number("to")?,
        before_seq: number("cursor")?,
        limit,
    })
}

/// Lists executions, newest first, filtered and paginated.
#[utoipa::path(get, path = "/api/admin/executions", tag = "admin",
    params(("status" = Option<String>, Query), ("robot" = Option<String>, Query), ("runtime" = Option<String>, Query),
           ("schedule" = Option<String>, Query, description = "Queued by this schedule"),
           ("from" = Option<i64>, Query, description = "Submitted at or after (epoch ms)"),
           ("to" = Option<i64>, Query, description = "Submitted before (epoch ms)"),
           ("limit" = Option<u32>, Query, description = "1 to 500, default 50"),
           ("cursor" = Option<i64>, Query, description = "next_cursor of the previous page")),
    responses((status = 200, body = ExecutionPage), (status = 400, body = ErrorBody)), security(("bearer" = [])))]
async fn list_executions(
    Admin(caller): Admin,
    State(ctx): State<Arc<Context>>,
    Query(params): Query<HashMap<String, String>>,
) -> ApiResult<Json<ExecutionPage>> {
    let filter = parse_filter(&params)?;
    let list = runs::list(&ctx, &caller, &filter).await?;
    let next_cursor = (list.len() == filter.limit as usize)
        .then(|| list.last().map(|e| e.seq.to_string()))
        .flatten();
    Ok(Json(ExecutionPage {
        executions: list.into_iter().map(ExecutionBody::from).collect(),
        next_cursor,
    }))
}

/// One execution in detail, with its queue position while PENDENT.
#[utoipa::path(get, path = "/api/admin/executions/{id}", tag = "admin", params(("id" = String, Path)),
    responses((status = 200, body = ExecutionBody), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
async fn get_execution(
    Admin(caller): Admin,
    State(ctx): State<Arc<Context>>,
    Path(id): Path<String>,
) -> ApiResult<Json<ExecutionBody>> {
    let execution = runs::get_any(&ctx, &caller, &id).await?;
    let queue_position = runs::queue_position(&ctx, &execution).await?;
    Ok(Json(ExecutionBody {
        queue_position,
        ..execution.into()
    }))
}

#[derive(Deserialize, ToSchema)]
pub struct NewOrganizationBody {
    name: String,
    admin_username: String,
    admin_password: String,
}

#[derive(Serialize, ToSchema)]
pub struct OrganizationBody {
    id: String,
    name: String,
}

/// Creates an organisation with its first admin (admins of the first organisation only).
#[utoipa::path(post, path = "/api/admin/organizations", tag = "admin", request_body = NewOrganizationBody,
    responses((status = 201, body = OrganizationBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
async fn create_organization(
    Admin(caller): Admin,
    State(ctx): State<Arc<Context>>,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<OrganizationBody>)> {
    let body: NewOrganizationBody = parse_json(
        &body,
        r#"{"name": "...", "admin_username": "...", "admin_password": "..."}"#,
    )?;
    let organization = organizations::create(
        &ctx,
        &caller,
        &body.name,
        &body.admin_username,
        &body.admin_password,
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(OrganizationBody {
            id: organization.id,
            name: organization.name,
        }),
    ))
}
