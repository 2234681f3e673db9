//! The Integration API's run, result and delete routes, as the RoboEasy document
//! describes them: the shapes here are a compatibility contract.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use regente_core::RequestVariable;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::Authenticated;
use crate::service::{runs, Context};

pub fn router() -> Router<Arc<Context>> {
    Router::new()
        .route(
            "/api/integration/v1/run/{runtime_id}/{robot_id}",
            get(run_v1_defaults).post(run_v1).head(refuse_head),
        )
        .route(
            "/api/integration/v2/run/{runtime_id}/{robot_id}",
            axum::routing::post(run_v2),
        )
        .route(
            "/api/integration/v1/result/{runtime_id}/{execution_id}",
            get(result),
        )
        .route(
            "/api/integration/v1/delete/{runtime_id}/{execution_id}",
            delete(cancel),
        )
}

/// HEAD on the GET run route would queue a run as GET does; HEAD must be safe
/// (link checkers and monitors send it), so it is refused.
async fn refuse_head() -> impl IntoResponse {
    (
        [(header::ALLOW, "GET,POST")],
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
    )
}

const RUN_BODY_SHAPE: &str = r#"{"variables": [{"name": "CNPJ", "type": "text", "value": "..."}]} (or "variables" as one such object, or no body for the defaults)"#;

/// One variable of a run request.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct VariableBody {
    /// Matches `[A-Za-z_][A-Za-z0-9_]*`.
    name: String,
    /// `text`, `number`, `boolean` or `json`; the robot's declared type decides when it declares the variable.
    #[schema(rename = "type")]
    kind: Option<String>,
    value: Value,
}

/// A run request: `variables` is an array of variables or a single one; absent,
/// `null`, `{}` or no body at all run with the robot's defaults.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct RunBody {
    variables: Option<Vec<VariableBody>>,
}

/// Parses a run body. Any content type is read as JSON, since integrations send
/// `text/plain` and other types with JSON bodies.
pub(crate) fn parse_run_body(body: &[u8]) -> ApiResult<Vec<RequestVariable>> {
    regente_core::parse_run_body(body)
        .map_err(|why| ApiError::invalid(format!("{why}; expected {RUN_BODY_SHAPE}")))
}

async fn enqueue(
    ctx: &Context,
    caller: &crate::service::Caller,
    (runtime_id, robot_id): &(String, String),
    headers: &HeaderMap,
    variables: Vec<RequestVariable>,
) -> ApiResult<String> {
    let idempotency_key = idempotency_key(headers)?;
    Ok(runs::enqueue(
        ctx,
        caller,
        runs::RunRequest {
            runtime_id,
            robot_id,
            variables,
            idempotency_key,
        },
    )
    .await?)
}

/// The `Idempotency-Key` header, if sent.
pub(crate) fn idempotency_key(headers: &HeaderMap) -> ApiResult<Option<&str>> {
    headers
        .get("idempotency-key")
        .map(|value| {
            value
                .to_str()
                .map_err(|_| ApiError::invalid("Idempotency-Key must be printable ASCII"))
        })
        .transpose()
}

fn text(body: String) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain;charset=UTF-8")], body)
}

/// Queues a run with variables; answers the execution id as text.
#[utoipa::path(post, path = "/api/integration/v1/run/{runtime_id}/{robot_id}", tag = "integration",
    params(("runtime_id" = String, Path), ("robot_id" = String, Path),
           ("Idempotency-Key" = Option<String>, Header, description = "The same key from the same user within 24 hours answers the same execution")),
    request_body(content = RunBody, description = "Variables; may be absent"),
    responses(
        (status = 200, description = "The execution id", body = String, content_type = "text/plain"),
        (status = 400, description = "Bad body or variable", body = ErrorBody),
        (status = 401, description = "No or bad token", body = ErrorBody),
        (status = 404, description = "Unknown runtime or robot", body = ErrorBody),
        (status = 409, description = "Idempotency-Key reused for another request", body = ErrorBody),
    ), security(("bearer" = [])))]
async fn run_v1(
    Authenticated(caller): Authenticated,
    State(ctx): State<Arc<Context>>,
    Path(ids): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<impl IntoResponse> {
    let variables = parse_run_body(&body)?;
    Ok(text(
        enqueue(&ctx, &caller, &ids, &headers, variables).await?,
    ))
}

/// Queues a run with the robot's default variables; answers the execution id as text.
#[utoipa::path(get, path = "/api/integration/v1/run/{runtime_id}/{robot_id}", tag = "integration",
    params(("runtime_id" = String, Path), ("robot_id" = String, Path),
           ("Idempotency-Key" = Option<String>, Header)),
    responses(
        (status = 200, description = "The execution id", body = String, content_type = "text/plain"),
        (status = 401, description = "No or bad token", body = ErrorBody),
        (status = 404, description = "Unknown runtime or robot", body = ErrorBody),
    ), security(("bearer" = [])))]
async fn run_v1_defaults(
    Authenticated(caller): Authenticated,
    State(ctx): State<Arc<Context>>,
    Path(ids): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<impl IntoResponse> {
    Ok(text(
        enqueue(&ctx, &caller, &ids, &headers, Vec::new()).await?,
    ))
}

#[derive(Serialize, ToSchema)]
pub struct RunIdBody {
    pub(crate) id: String,
}

/// Queues a run, with or without variables; answers `{"id": "..."}`.
#[utoipa::path(post, path = "/api/integration/v2/run/{runtime_id}/{robot_id}", tag = "integration",
    params(("runtime_id" = String, Path), ("robot_id" = String, Path),
           ("Idempotency-Key" = Option<String>, Header)),
    request_body(content = RunBody, description = "Variables; may be absent"),
    responses(
        (status = 200, description = "The execution id", body = RunIdBody),
        (status = 400, description = "Bad body or variable", body = ErrorBody),
        (status = 401, description = "No or bad token", body = ErrorBody),
        (status = 404, description = "Unknown runtime or robot", body = ErrorBody),
    ), security(("bearer" = [])))]
async fn run_v2(
    Authenticated(caller): Authenticated,
    State(ctx): State<Arc<Context>>,
    Path(ids): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<RunIdBody>> {
    let variables = parse_run_body(&body)?;
    let id = enqueue(&ctx, &caller, &ids, &headers, variables).await?;
    Ok(Json(RunIdBody { id }))
}

/// The result: exactly the seven fields of the Integration API.
#[derive(Serialize, ToSchema)]
pub struct ResultBody {
    _id: String,
    logs: Vec<LogBody>,
    /// Submission time, epoch milliseconds.
    init: i64,
    /// End time, epoch milliseconds; null until the execution ends.
    end: Option<i64>,
    #[serde(rename = "returnValue")]
    #[schema(rename = "returnValue")]
    return_value: Option<Value>,
    /// PENDENT, RUNNING, FINISHED, ERROR or CANCELED.
    status: &'static str,
    /// 0 to 100.
    progress: f64,
}

#[derive(Serialize, ToSchema)]
pub struct LogBody {
    /// Epoch milliseconds.
    time: i64,
    level: String,
    message: String,
}

/// Reads an execution's status, progress, logs and return value. With
/// `wait=SECONDS` (at most 60), an execution that has not ended is answered as
/// soon as it ends, or at the deadline as it is then.
#[utoipa::path(get, path = "/api/integration/v1/result/{runtime_id}/{execution_id}", tag = "integration",
    params(("runtime_id" = String, Path), ("execution_id" = String, Path),
           ("wait" = Option<u64>, Query, minimum = 0, maximum = 60,
            description = "Seconds to wait for the execution's end before answering")),
    responses(
        (status = 200, description = "The result so far (or at its end)", body = ResultBody),
        (status = 400, description = "A bad wait", body = ErrorBody),
        (status = 401, description = "No or bad token", body = ErrorBody),
        (status = 404, description = "Unknown execution", body = ErrorBody),
    ), security(("bearer" = [])))]
async fn result(
    Authenticated(caller): Authenticated,
    State(ctx): State<Arc<Context>>,
    Path((runtime_id, execution_id)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let wait = wait_of(&query)?;
    if let Some(body) = ctx
        .ended_results
        .get(&caller.organization_id, &runtime_id, &execution_id)
    {
        return Ok(json_answer(body));
    }
    let (execution, logs) = match wait {
        Some(wait) => {
            let execution =
                runs::get_when_ended(&ctx, &caller, &runtime_id, &execution_id, wait).await?;
            let logs = runs::logs(&ctx, &caller, &execution).await?;
            (execution, logs)
        }
        None => runs::get_with_logs(&ctx, &caller, &runtime_id, &execution_id).await?,
    };
    let ended = execution.status.is_ended();
    let answer = ResultBody {
        logs: logs
            .into_iter()
            .map(|line| LogBody {
                time: line.time,
                level: line.level,
                message: line.message,
            })
            .collect(),
        _id: execution.id,
        init: execution.init,
        end: execution.end,
        return_value: execution.return_value,
        status: execution.status.as_str(),
        progress: execution.progress,
    };
    let body = Bytes::from(serde_json::to_vec(&answer).map_err(|e| {
        crate::service::Error::Internal(anyhow::anyhow!("rendering a result: {e}"))
    })?);
    if ended {
        ctx.ended_results.keep(
            &caller.organization_id,
            &execution.runtime_id,
            &answer._id,
            body.clone(),
        );
    }
    Ok(json_answer(body))
}

/// A JSON body already rendered, answered as `Json` answers.
fn json_answer(body: Bytes) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// The `wait` query parameter: whole seconds, 0 to 60.
fn wait_of(query: &HashMap<String, String>) -> ApiResult<Option<Duration>> {
    query
        .get("wait")
        .map(|text| {
            let seconds = super::whole_number(
                "query parameter wait (seconds)",
                text,
                0..=runs::MAX_WAIT.as_secs(),
            )?;
            Ok(Duration::from_secs(seconds))
        })
        .transpose()
}

/// Cancels an execution. A PENDENT one becomes CANCELED and never runs; an ended
/// one answers 409.
#[utoipa::path(delete, path = "/api/integration/v1/delete/{runtime_id}/{execution_id}", tag = "integration",
    params(("runtime_id" = String, Path), ("execution_id" = String, Path)),
    responses(
        (status = 200, description = "Canceled; empty body"),
        (status = 401, description = "No or bad token", body = ErrorBody),
        (status = 404, description = "Unknown execution", body = ErrorBody),
        (status = 409, description = "The execution has already ended", body = ErrorBody),
    ), security(("bearer" = [])))]
async fn cancel(
    Authenticated(caller): Authenticated,
    State(ctx): State<Arc<Context>>,
    Path((runtime_id, execution_id)): Path<(String, String)>,
) -> ApiResult<()> {
    runs::cancel(&ctx, &caller, &runtime_id, &execution_id).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn names(body: &str) -> Vec<String> {
        parse_run_body(body.as_bytes())
            .unwrap()
            .into_iter()
            .map(|v| v.name)
            .collect()
    }

    #[test]
    fn run_bodies_take_every_documented_shape() {
        assert!(names("").is_empty());
        assert!(names("  \n").is_empty());
        assert!(names("{}").is_empty());
        assert!(names(r#"{"variables": null}"#).is_empty());
        assert_eq!(
            names(
                r#"{"variables": [{"name": "A", "type": "text", "value": "1"}, {"name": "B", "value": 2}]}"#
            ),
            ["A", "B"]
        );
        assert_eq!(
            names(r#"{"variables": {"name": "A", "type": "text", "value": "1"}}"#),
            ["A"]
        );
        let parsed = parse_run_body(br#"{"variables": {"name": "A", "value": {"x": 1}}}"#).unwrap();
        assert_eq!(parsed[0].value, json!({"x": 1}));
        assert_eq!(parsed[0].kind, None);
    }

    #[test]
    fn the_documents_invalid_v2_example_is_refused_with_the_expected_shape() {
        let error =
            parse_run_body(br#"{"variables": ["name": "CNPJ", "type": "text", "value": "1"]}"#)
                .unwrap_err();
        assert!(
            error.0.to_string().contains(r#"expected {"variables": ["#),
            "{}",
            error.0
        );
        for bad in [
            r#"[1]"#,
            r#"{"variables": 3}"#,
            r#"{"variables": [1]}"#,
            r#"{"variables": [{"value": 1}]}"#,
        ] {
            assert!(parse_run_body(bad.as_bytes()).is_err(), "{bad}");
        }
    }
}
