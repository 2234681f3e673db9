//! Every error answer has the Integration API's Spring-style shape:
//! `{"timestamp","status","error","message","path"}`.
//!
//! Handlers return [`ApiError`], which records its status and message in the
//! response; [`ShapeErrorsLayer`](super::layers::ShapeErrorsLayer), around every
//! route, writes the body with the request's path. Answers that axum makes itself (unknown routes, bodies
//! over the limit, wrong methods) get the same shape there.

use axum::body::{to_bytes, Body};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tracing::error;

use crate::service::{self, now_millis};

/// A service error on its way to becoming an HTTP answer.
#[derive(Debug)]
pub struct ApiError(pub service::Error);

pub type ApiResult<T> = Result<T, ApiError>;

impl<E: Into<service::Error>> From<E> for ApiError {
    fn from(error: E) -> ApiError {
        ApiError(error.into())
    }
}

impl ApiError {
    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError(service::Error::Invalid(message.into()))
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError(service::Error::NotFound(message.into()))
    }
}

/// Status and message, carried from the handler to [`shape`].
#[derive(Clone)]
struct ErrorMessage(String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        use service::Error::*;
        let status = match &self.0 {
            Invalid(_) => StatusCode::BAD_REQUEST,
            Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Forbidden(_) => StatusCode::FORBIDDEN,
            NotFound(_) => StatusCode::NOT_FOUND,
            Conflict(_) => StatusCode::CONFLICT,
            TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let message = match self.0 {
            Internal(cause) => {
                error!(error = format!("{cause:#}"), "internal error");
                "internal error: the server could not complete the request".to_owned()
            }
            other => other.to_string(),
        };
        let mut response = status.into_response();
        response.extensions_mut().insert(ErrorMessage(message));
        response
    }
}

/// The error body, as the Integration API shows it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Epoch milliseconds.
    pub timestamp: i64,
    pub status: u16,
    /// The status's reason phrase, e.g. `Not Found`.
    pub error: String,
    /// What is wrong, in words.
    pub message: String,
    /// The request's path.
    pub path: String,
}

/// Longest body text of an axum-made answer kept as the message.
const MAX_FOREIGN_MESSAGE: usize = 1024;

/// Whether an answer is an error the API's shape must be given to: an HTML
/// answer is the console's page for a browser, already shaped.
pub(super) fn needs_shape(response: &Response) -> bool {
    let status = response.status();
    let is_html = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/html"));
    (status.is_client_error() || status.is_server_error()) && !is_html
}

/// An error answer in the API's shape, for the request's `path`, with the
/// message its handler gave or, for an answer axum made itself, one saying why.
pub(super) async fn shape(response: Response, path: String) -> Response {
    let status = response.status();
    // A 405 must say which methods the path takes (RFC 9110, 15.5.6).
    let allow = response.headers().get(header::ALLOW).cloned();
    let message = match response.extensions().get::<ErrorMessage>() {
        Some(ErrorMessage(message)) => message.clone(),
        None => foreign_message(response).await,
    };
    let mut shaped = shaped(status, message, path);
    if let Some(allow) = allow {
        shaped.headers_mut().insert(header::ALLOW, allow);
    }
    if status == StatusCode::UNAUTHORIZED {
        shaped
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    shaped
}

/// An error answer in the shape, for a status, a message and the request's path.
pub fn shaped(status: StatusCode, message: String, path: String) -> Response {
    let body = ErrorBody {
        timestamp: now_millis(),
        status: status.as_u16(),
        error: status.canonical_reason().unwrap_or("Error").to_owned(),
        message,
        path,
    };
    (status, axum::Json(body)).into_response()
}

/// The message for an answer axum made itself.
async fn foreign_message(response: Response) -> String {
    let status = response.status();
    match status {
        StatusCode::PAYLOAD_TOO_LARGE => {
            "the request body is larger than this route accepts".into()
        }
        StatusCode::METHOD_NOT_ALLOWED => "this method is not allowed on this path".into(),
        StatusCode::NOT_FOUND => "no such route".into(),
        _ => {
            let bytes = to_bytes(Body::new(response.into_body()), MAX_FOREIGN_MESSAGE * 4)
                .await
                .unwrap_or_default();
            let text = String::from_utf8_lossy(&bytes);
            let text: String = text.chars().take(MAX_FOREIGN_MESSAGE).collect();
            if text.trim().is_empty() {
                status.canonical_reason().unwrap_or("error").to_lowercase()
            } else {
                text
            }
        }
    }
}
