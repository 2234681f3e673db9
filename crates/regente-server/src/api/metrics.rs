//! `GET /metrics`, for Prometheus: off unless the server has a metrics token
//! (`REGENTE_METRICS_TOKEN`), then only for a scraper that sends it as a
//! bearer token. The figures name organisations and runtimes' load, which
//! are nobody else's business.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::error::{ApiError, ApiResult, ErrorBody};
use crate::service::{metrics, Context, Error};

pub fn router() -> Router<Arc<Context>> {
    Router::new().route("/metrics", get(exposition))
}

/// The server's metrics in Prometheus' text format.
#[utoipa::path(get, path = "/metrics", tag = "server",
    responses(
        (status = 200, description = "Prometheus text format 0.0.4", body = String,
         content_type = "text/plain; version=0.0.4"),
        (status = 401, description = "No or bad metrics token", body = ErrorBody),
        (status = 404, description = "Metrics are off (no REGENTE_METRICS_TOKEN)", body = ErrorBody),
    ), security(("bearer" = [])))]
async fn exposition(State(ctx): State<Arc<Context>>, headers: HeaderMap) -> ApiResult<Response> {
    let Some(token) = &ctx.config.metrics_token else {
        return Err(ApiError::not_found(
            "metrics are off: start the server with REGENTE_METRICS_TOKEN set to turn them on",
        ));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .unwrap_or_default();
    if !same_secret(given.trim().as_bytes(), token.expose().as_bytes()) {
        return Err(ApiError(Error::Unauthorized(
            "send the metrics token as Authorization: Bearer <REGENTE_METRICS_TOKEN>".into(),
        )));
    }
    let text = metrics::render(&ctx).await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

/// Compares in a time that says nothing of where the two differ.
fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    let differences = given
        .iter()
        .zip(expected)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    given.len() == expected.len() && differences == 0
}

#[cfg(test)]
mod tests {
    use super::same_secret;

    #[test]
    fn only_the_same_bytes_are_the_same_secret() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abd", b"abc"));
        assert!(!same_secret(b"ab", b"abc"));
        assert!(!same_secret(b"", b"abc"));
    }
}
