//! Routes for runtime agents, authenticated by the runtime's key instead of a
//! user token: the WebSocket they connect to and the package downloads.

use std::sync::Arc;

use axum::extract::{FromRequestParts, Path, State, WebSocketUpgrade};
use axum::http::{header, request::Parts};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use regente_store::Runtime;

use super::error::{ApiError, ApiResult, ErrorBody};
use crate::hub::session;
use crate::service::{self, robots, runtimes, Context};

/// Largest message an agent may send: a batch of log lines.
const MAX_AGENT_MESSAGE: usize = 16 * 1024 * 1024;

pub fn router() -> Router<Arc<Context>> {
    Router::new()
        .route(regente_proto::CONNECT_PATH, get(connect))
        .route("/api/runtime/packages/{robot_id}/{version}", get(package))
}

/// The runtime whose key the request carries, and the key's hash.
pub struct RuntimeCaller(pub Runtime, pub String);

impl FromRequestParts<Arc<Context>> for RuntimeCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, ctx: &Arc<Context>) -> Result<Self, ApiError> {
        let unauthorized = || {
            ApiError(service::Error::Unauthorized(
                "runtime routes need \"Authorization: Bearer <runtime key>\" with a valid key"
                    .into(),
            ))
        };
        let key = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, key)| key.trim())
            .ok_or_else(unauthorized)?;
        let (runtime, key_hash) = runtimes::authenticate_key(ctx, key)
            .await?
            .ok_or_else(unauthorized)?;
        Ok(RuntimeCaller(runtime, key_hash))
    }
}

/// The WebSocket a runtime agent keeps open (see `regente-proto`).
#[utoipa::path(get, path = "/api/runtime/connect", tag = "runtime",
    responses(
        (status = 101, description = "Switched to the agent WebSocket protocol"),
        (status = 400, description = "Not a WebSocket upgrade", body = ErrorBody),
        (status = 401, description = "No or bad runtime key", body = ErrorBody),
    ), security(("runtime_key" = [])))]
pub(crate) async fn connect(
    RuntimeCaller(runtime, key_hash): RuntimeCaller,
    State(ctx): State<Arc<Context>>,
    upgrade: WebSocketUpgrade,
) -> Response {
    upgrade
        .max_message_size(MAX_AGENT_MESSAGE)
        // Small buffers that grow on demand: a thousand idle runtimes must not
        // hold 128 KiB each.
        .read_buffer_size(4 * 1024)
        .write_buffer_size(4 * 1024)
        .on_upgrade(move |socket| session::serve(ctx, runtime, key_hash, socket))
}

/// A robot version's package, for a runtime of the robot's organisation.
#[utoipa::path(get, path = "/api/runtime/packages/{robot_id}/{version}", tag = "runtime",
    params(("robot_id" = String, Path), ("version" = u32, Path)),
    responses(
        (status = 200, description = "The package as uploaded", body = Vec<u8>, content_type = "application/zip"),
        (status = 401, description = "No or bad runtime key", body = ErrorBody),
        (status = 404, description = "Unknown robot or version", body = ErrorBody),
    ), security(("runtime_key" = [])))]
pub(crate) async fn package(
    RuntimeCaller(runtime, _): RuntimeCaller,
    State(ctx): State<Arc<Context>>,
    Path((robot_id, version)): Path<(String, String)>,
) -> ApiResult<impl IntoResponse> {
    let bytes = robots::package(&ctx, &runtime, &robot_id, &version).await?;
    Ok(([(header::CONTENT_TYPE, "application/zip")], bytes))
}
