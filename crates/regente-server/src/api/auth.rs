//! `POST /api/user/auth` and `POST /api/user/v2/auth`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ApiError, ApiResult, ErrorBody};
use super::parse_json;
use crate::service::{auth, Context};

/// Largest login body: a name and a password fit many times over, and an
/// unauthenticated client cannot make the server hold more.
const MAX_LOGIN_BODY: usize = 64 * 1024;

pub fn router() -> Router<Arc<Context>> {
    Router::new()
        .route("/api/user/auth", post(login_v1))
        .route("/api/user/v2/auth", post(login_v2))
        .layer(DefaultBodyLimit::max(MAX_LOGIN_BODY))
        .layer(axum::middleware::from_fn(refuse_declared_too_large))
}

/// Answers 413 at once for a login body declared larger than the limit,
/// rather than reading it up to the limit first.
async fn refuse_declared_too_large(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok());
    if declared.is_some_and(|length| length > MAX_LOGIN_BODY as u64) {
        return ApiError(crate::service::Error::TooLarge(format!(
            "a login body has at most {MAX_LOGIN_BODY} bytes"
        )))
        .into_response();
    }
    next.run(request).await
}

#[derive(Deserialize, ToSchema)]
pub struct LoginBody {
    username: String,
    /// The password, base64-encoded.
    password: String,
}

#[derive(Serialize, ToSchema)]
pub struct TokenBody {
    access_token: String,
    /// Always `bearer`.
    token_type: &'static str,
    /// Seconds the token lives: 2592000 (30 days).
    expires_in: u64,
}

async fn login(ctx: &Context, client: SocketAddr, body: &Bytes) -> ApiResult<auth::Login> {
    let body: LoginBody = parse_json(
        body,
        r#"{"username": "...", "password": "<base64 of the password>"}"#,
    )?;
    Ok(auth::login(ctx, &body.username, &body.password, client.ip()).await?)
}

/// Logs in; answers the `Authorization` header value as text: `Bearer <jwt>`.
#[utoipa::path(post, path = "/api/user/auth", tag = "integration", request_body = LoginBody,
    responses(
        (status = 200, description = "`Bearer <jwt>`, to send as the Authorization header", body = String, content_type = "text/plain"),
        (status = 400, description = "Malformed body", body = ErrorBody),
        (status = 401, description = "Bad username or password", body = ErrorBody),
        (status = 429, description = "Too many failed logins", body = ErrorBody),
    ))]
async fn login_v1(
    State(ctx): State<Arc<Context>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    body: Bytes,
) -> ApiResult<impl IntoResponse> {
    let login = login(&ctx, client, &body).await?;
    Ok((
        [(header::CONTENT_TYPE, "text/plain;charset=UTF-8")],
        format!("Bearer {}", login.token),
    ))
}

/// Logs in, OAuth 2.0 style.
#[utoipa::path(post, path = "/api/user/v2/auth", tag = "integration", request_body = LoginBody,
    responses(
        (status = 200, description = "The token", body = TokenBody),
        (status = 400, description = "Malformed body", body = ErrorBody),
        (status = 401, description = "Bad username or password", body = ErrorBody),
        (status = 429, description = "Too many failed logins", body = ErrorBody),
    ))]
async fn login_v2(
    State(ctx): State<Arc<Context>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    body: Bytes,
) -> Result<Json<TokenBody>, ApiError> {
    let login = login(&ctx, client, &body).await?;
    Ok(Json(TokenBody {
        access_token: login.token,
        token_type: "bearer",
        expires_in: login.expires_in.as_secs(),
    }))
}
