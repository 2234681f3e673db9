//! The organisation's API keys (`/api/admin/api-keys`): created with the key
//! shown once, listed and read without it, revoked. The key itself works
//! wherever a user's token does (see `service::api_keys`).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use regente_store::ApiKey;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ApiResult, ErrorBody};
use super::extract::Admin;
use super::fields::{bad, instant, Fields};
use crate::service::{api_keys, Context};

pub fn router() -> Router<Arc<Context>> {
    Router::new()
        .route(
            "/api/admin/api-keys",
            get(list_api_keys).post(create_api_key),
        )
        .route(
            "/api/admin/api-keys/{id}",
            get(get_api_key).delete(revoke_api_key),
        )
}

/// A key to create.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct NewApiKeyBody {
    /// 1 to 100 characters, no control characters or surrounding spaces;
    /// unique in the organisation among keys not revoked.
    name: String,
    /// The rights the key has: `admin` or `integration`.
    role: String,
    /// When it stops working: epoch milliseconds or ISO-8601 with an offset,
    /// in the future; absent or null: never.
    expires_at: Option<i64>,
}

/// A key as listed: never the key nor its hash.
#[derive(Serialize, ToSchema)]
pub struct ApiKeyBody {
    id: String,
    name: String,
    role: String,
    /// The key's first characters after `rgk_`, to tell keys apart.
    prefix: String,
    /// Epoch milliseconds, as every time here.
    created_at: i64,
    /// The id of the user (or key) that created it.
    created_by: String,
    /// Recorded at most about once a minute; null: never used.
    last_used_at: Option<i64>,
    /// Null: never expires.
    expires_at: Option<i64>,
    /// Null: not revoked.
    revoked_at: Option<i64>,
}

impl From<ApiKey> for ApiKeyBody {
    fn from(key: ApiKey) -> ApiKeyBody {
        ApiKeyBody {
            id: key.id,
            name: key.name,
            role: key.role.as_str().to_owned(),
            prefix: key.prefix,
            created_at: key.created_at,
            created_by: key.created_by,
            last_used_at: key.last_used_at,
            expires_at: key.expires_at,
            revoked_at: key.revoked_at,
        }
    }
}

/// A key just created, with the key itself: shown this once, stored hashed.
#[derive(Serialize, ToSchema)]
pub struct NewApiKeyAnswer {
    /// `rgk_` and 43 random characters; send it as `Authorization: Bearer KEY`.
    key: String,
    #[serde(flatten)]
    api_key: ApiKeyBody,
}

/// Creates a key with a role in the caller's organisation and answers it, once.
#[utoipa::path(post, path = "/api/admin/api-keys", tag = "admin", request_body = NewApiKeyBody,
    responses((status = 201, body = NewApiKeyAnswer),
              (status = 400, description = "A name, role or expiry out of its rules; the message names the field", body = ErrorBody),
              (status = 409, description = "A key not revoked has this name", body = ErrorBody)),
    security(("bearer" = [])))]
async fn create_api_key(
    Admin(caller): Admin,
    State(ctx): State<Arc<Context>>,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<NewApiKeyAnswer>)> {
    let mut fields = Fields::parse(&body, &["name", "role", "expires_at"])?;
    let name = fields
        .text("name")?
        .ok_or_else(|| bad("name", "is required"))?;
    let role = fields
        .text("role")?
        .ok_or_else(|| bad("role", "is required: \"admin\" or \"integration\""))?;
    let expires_at = fields
        .value("expires_at")
        .map(|value| instant("expires_at", &value))
        .transpose()?;
    let created = api_keys::create(&ctx, &caller, &name, &role, expires_at).await?;
    Ok((
        StatusCode::CREATED,
        Json(NewApiKeyAnswer {
            key: created.key,
            api_key: created.api_key.into(),
        }),
    ))
}

/// Lists the organisation's keys, revoked ones included, oldest first.
#[utoipa::path(get, path = "/api/admin/api-keys", tag = "admin",
    responses((status = 200, body = Vec<ApiKeyBody>)),
    security(("bearer" = [])))]
async fn list_api_keys(
    Admin(caller): Admin,
    State(ctx): State<Arc<Context>>,
) -> ApiResult<Json<Vec<ApiKeyBody>>> {
    let keys = api_keys::list(&ctx, &caller).await?;
    Ok(Json(keys.into_iter().map(ApiKeyBody::from).collect()))
}

/// One key of the organisation, without the key.
#[utoipa::path(get, path = "/api/admin/api-keys/{id}", tag = "admin", params(("id" = String, Path)),
    responses((status = 200, body = ApiKeyBody),
              (status = 404, description = "No such key in the organisation", body = ErrorBody)),
    security(("bearer" = [])))]
async fn get_api_key(
    Admin(caller): Admin,
    State(ctx): State<Arc<Context>>,
    Path(id): Path<String>,
) -> ApiResult<Json<ApiKeyBody>> {
    Ok(Json(api_keys::get(&ctx, &caller, &id).await?.into()))
}

/// Revokes a key: refused at once by this server, and by the others sharing
/// its store within seconds. Revoking a revoked key changes nothing.
#[utoipa::path(delete, path = "/api/admin/api-keys/{id}", tag = "admin", params(("id" = String, Path)),
    responses((status = 204),
              (status = 404, description = "No such key in the organisation", body = ErrorBody)),
    security(("bearer" = [])))]
async fn revoke_api_key(
    Admin(caller): Admin,
    State(ctx): State<Arc<Context>>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    api_keys::revoke(&ctx, &caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
