//! The HTTP API. Each route group owns its router; [`router`] merges them under
//! the error-shaping middleware and the body limits.
//!
//! - [`auth`]: the two login routes of the Integration API.
//! - [`integration`]: run, result and delete, exactly as the Integration API shows them.
//! - [`events`]: an execution's log, progress and status as Server-Sent Events.
//! - [`admin`]: users, runtimes, robots, executions, organisations.
//! - [`audit`]: the audit log, read only.
//! - [`credentials`]: the vault's credentials, written and listed, never read back.
//! - [`api_keys`]: the organisation's API keys, shown once, listed, revoked.
//! - [`webhooks`]: the organisation's webhooks, their deliveries and replays.
//! - [`flows`]: flow definitions (admin) and flow runs (Integration API v2).
//! - [`schedules`]: schedules, their fires, triggers and backfills.
//! - [`runtime`]: the agents' WebSocket and package downloads, by runtime key.
//! - [`error`]: the JSON error shape, given by [`layers`] (which also count the
//!   answers for `/metrics`); [`extract`]: who is calling; [`fields`]:
//!   bodies read field by field, errors naming the field.
//! - [`document`]: the OpenAPI document, completed with what every route refuses,
//!   the constraints on inputs and links between operations.

pub mod admin;
pub mod api_keys;
pub mod audit;
pub mod auth;
pub mod credentials;
pub mod document;
pub mod error;
pub mod events;
pub mod extract;
pub mod fields;
pub mod flows;
pub mod integration;
pub mod layers;
pub mod metrics;
pub mod runtime;
pub mod schedules;
pub mod webhooks;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use axum::{Json, Router};
use serde::de::DeserializeOwned;

use crate::service::Context;
use error::{ApiError, ApiResult};
use layers::{CountAnswersLayer, ShapeErrorsLayer};

/// Every route of the server: the API's, under its error shape and body
/// limits, and the console's HTML pages beside them.
pub fn router(ctx: Arc<Context>) -> Router {
    let api = Router::new()
        .merge(auth::router())
        .merge(integration::router())
        .merge(events::router())
        .merge(flows::router())
        .merge(credentials::router())
        .merge(api_keys::router())
        .merge(webhooks::router())
        .merge(admin::router(ctx.config.max_package_bytes))
        .merge(audit::router())
        .merge(schedules::router())
        .merge(runtime::router())
        .merge(metrics::router())
        .route("/healthz", get(healthz))
        .route("/api/openapi.json", get(openapi))
        .fallback(unknown_route)
        // Bodies are read by the handlers, after the caller is known: an
        // unauthenticated request is answered without its body being read.
        .layer(DefaultBodyLimit::max(ctx.config.max_body_bytes))
        .layer(ShapeErrorsLayer);
    api.merge(crate::console::router(ctx.config.max_package_bytes))
        .layer(CountAnswersLayer::new(ctx.clone()))
        .with_state(ctx)
}

/// An unknown path: the console's 404 page for a browser outside `/api/`,
/// the JSON error otherwise.
async fn unknown_route(request: axum::extract::Request) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let wants_html = request
        .headers()
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"));
    if wants_html && !request.uri().path().starts_with("/api/") {
        crate::console::pages::not_found_page()
    } else {
        ApiError::not_found("no such route").into_response()
    }
}

/// A whole number within `range`, read from the query parameter or header
/// `what` names; a 400 saying the range otherwise.
pub(crate) fn whole_number(
    what: &str,
    text: &str,
    range: std::ops::RangeInclusive<u64>,
) -> ApiResult<u64> {
    text.parse::<u64>()
        .ok()
        .filter(|n| range.contains(n))
        .ok_or_else(|| {
            ApiError::invalid(format!(
                "{what} must be a whole number from {} to {}, got {text:?}",
                range.start(),
                range.end()
            ))
        })
}

/// Parses a JSON body; on failure says what was wrong and the shape expected.
/// Only a JSON object is taken: serde would also fill a struct from an array
/// of its fields in order (`["admin", "cGFzcw=="]`).
pub(crate) fn parse_json<T: DeserializeOwned>(body: &[u8], expected: &str) -> ApiResult<T> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    let why = match first {
        None => "the body is empty".to_owned(),
        Some(b'{') => match serde_json::from_slice(body) {
            Ok(parsed) => return Ok(parsed),
            Err(e) => format!("the body does not fit ({e})"),
        },
        Some(_) => "the body must be a JSON object".to_owned(),
    };
    Err(ApiError::invalid(format!("{why}; expected {expected}")))
}

/// Answers `ok` while the server runs.
#[utoipa::path(get, path = "/healthz", tag = "server",
    responses((status = 200, description = "`ok`", body = String, content_type = "text/plain")))]
async fn healthz() -> &'static str {
    "ok"
}

/// This document.
#[utoipa::path(get, path = "/api/openapi.json", tag = "server",
    responses((status = 200, description = "The OpenAPI document of every route", content_type = "application/json")))]
async fn openapi() -> Json<&'static serde_json::Value> {
    Json(document::json())
}
