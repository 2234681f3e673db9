//! The vault's admin routes (`/api/admin/credentials`): credentials are written
//! here and never read back: answers name the fields, never their values.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use regente_store::Credential;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::Admin;
use super::parse_json;
use crate::service::credentials::{self, CredentialInput};
use crate::service::Context;

pub fn router() -> Router<Arc<Context>> {
    Router::new()
        .route(
            "/api/admin/credentials",
            get(list_credentials).post(create_credential),
        )
        .route(
            "/api/admin/credentials/{id}",
            get(get_credential)
                .put(replace_credential)
                .delete(delete_credential),
        )
}

const NEW_SHAPE: &str = r#"{"name": "erp", "fields": {"username": "...", "password": "..."}, "description": "...", "robots": ["ROBOT_ID", ...]}"#;
const REPLACE_SHAPE: &str = r#"{"fields": {"username": "...", "password": "..."}, "description": "...", "robots": ["ROBOT_ID", ...]}"#;

/// A credential to create. Values are written only: no answer shows them.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct NewCredentialBody {
    /// 1 to 64 letters, digits, `-`, `_` or `.`; unique in the organisation.
    name: String,
    /// `{"FIELD": "value"}`, 1 to 32 fields of up to 8 KiB each.
    fields: BTreeMap<String, String>,
    description: Option<String>,
    /// The robots allowed to have it; absent or null: every robot of the organisation.
    robots: Option<Vec<String>>,
}

/// New values (the credential's next version), description and robots; what is
/// left out is cleared (no description, every robot).
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct ReplaceCredentialBody {
    fields: BTreeMap<String, String>,
    description: Option<String>,
    robots: Option<Vec<String>>,
}

/// A credential as listed: its fields' names, never their values.
#[derive(Serialize, ToSchema)]
pub struct CredentialBody {
    id: String,
    name: String,
    description: Option<String>,
    /// Field names, sorted.
    fields: Vec<String>,
    /// Robot ids allowed; null: every robot of the organisation.
    robots: Option<Vec<String>>,
    /// Moves each time the values are replaced.
    version: u32,
    created_by: String,
    /// Epoch milliseconds.
    created_at: i64,
    updated_by: String,
    updated_at: i64,
}

impl From<Credential> for CredentialBody {
    fn from(credential: Credential) -> CredentialBody {
        CredentialBody {
            id: credential.id,
            name: credential.name,
            description: credential.description,
            fields: credential.fields,
            robots: credential.robots,
            version: credential.version,
            created_by: credential.created_by,
            created_at: credential.created_at,
            updated_by: credential.updated_by,
            updated_at: credential.updated_at,
        }
    }
}

/// Reads a body by hand rather than through serde's messages, which quote the
/// value they could not take: a value must never be echoed back or logged.
fn read_body(
    body: &[u8],
    shape: &str,
    with_name: bool,
) -> ApiResult<(Option<String>, CredentialInput)> {
    let mut object: Map<String, Value> = parse_json(body, shape)?;
    let invalid = |why: &str| ApiError::invalid(format!("{why}; expected {shape}"));
    let name = if with_name {
        match object.remove("name") {
            Some(Value::String(name)) => Some(name),
            _ => return Err(invalid("\"name\" must be a string")),
        }
    } else {
        None
    };
    let fields = match object.remove("fields") {
        Some(Value::Object(fields)) => fields
            .into_iter()
            .map(|(field, value)| match value {
                Value::String(value) => Ok((field, value)),
                _ => Err(invalid(&format!("field {field:?} must be a string"))),
            })
            .collect::<ApiResult<BTreeMap<_, _>>>()?,
        _ => return Err(invalid("\"fields\" must be an object of strings")),
    };
    let description = match object.remove("description") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => Some(text),
        Some(_) => return Err(invalid("\"description\" must be a string")),
    };
    let robots = match object.remove("robots") {
        None | Some(Value::Null) => None,
        Some(Value::Array(ids)) => Some(
            ids.into_iter()
                .map(|id| match id {
                    Value::String(id) => Ok(id),
                    _ => Err(invalid("\"robots\" must be an array of robot ids")),
                })
                .collect::<ApiResult<Vec<_>>>()?,
        ),
        Some(_) => return Err(invalid("\"robots\" must be an array of robot ids")),
    };
    if let Some(unknown) = object.keys().next() {
        return Err(invalid(&format!("unknown member {unknown:?}")));
    }
    Ok((
        name,
        CredentialInput {
            fields,
            description,
            robots,
        },
    ))
}

/// Creates a credential; the answer names its fields, never their values.
#[utoipa::path(post, path = "/api/admin/credentials", tag = "vault", request_body = NewCredentialBody,
    responses((status = 201, body = CredentialBody),
              (status = 400, description = "A name, field or value out of its rules", body = ErrorBody),
              (status = 401, description = "No valid token", body = ErrorBody),
              (status = 403, description = "Not an admin", body = ErrorBody),
              (status = 404, description = "A robot named in `robots` is not the organisation's", body = ErrorBody),
              (status = 409, description = "The name is taken, or the vault has no master key", body = ErrorBody)),
    security(("bearer" = [])))]
async fn create_credential(
    Admin(caller): Admin,
    State(ctx): State<Arc<Context>>,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<CredentialBody>)> {
    let (name, input) = read_body(&body, NEW_SHAPE, true)?;
    let name = name.expect("read with its name");
    let credential = credentials::create(&ctx, &caller, &name, input).await?;
    Ok((StatusCode::CREATED, Json(credential.into())))
}

/// Lists the organisation's credentials: names, fields, who changed them and when.
#[utoipa::path(get, path = "/api/admin/credentials", tag = "vault",
    responses((status = 200, body = Vec<CredentialBody>),
              (status = 401, description = "No valid token", body = ErrorBody),
              (status = 403, description = "Not an admin", body = ErrorBody)),
    security(("bearer" = [])))]
async fn list_credentials(
    Admin(caller): Admin,
    State(ctx): State<Arc<Context>>,
) -> ApiResult<Json<Vec<CredentialBody>>> {
    let list = credentials::list(&ctx, &caller).await?;
    Ok(Json(list.into_iter().map(CredentialBody::from).collect()))
}

/// One credential, without its values.
#[utoipa::path(get, path = "/api/admin/credentials/{id}", tag = "vault", params(("id" = String, Path)),
    responses((status = 200, body = CredentialBody),
              (status = 401, description = "No valid token", body = ErrorBody),
              (status = 403, description = "Not an admin", body = ErrorBody),
              (status = 404, description = "No such credential in the organisation", body = ErrorBody)),
    security(("bearer" = [])))]
async fn get_credential(
    Admin(caller): Admin,
    State(ctx): State<Arc<Context>>,
    Path(id): Path<String>,
) -> ApiResult<Json<CredentialBody>> {
    Ok(Json(credentials::get(&ctx, &caller, &id).await?.into()))
}

/// Replaces the values (the next version), description and robots. Runs
/// already handed out keep the values they were given.
#[utoipa::path(put, path = "/api/admin/credentials/{id}", tag = "vault", params(("id" = String, Path)),
    request_body = ReplaceCredentialBody,
    responses((status = 200, body = CredentialBody),
              (status = 400, description = "A field or value out of its rules", body = ErrorBody),
              (status = 401, description = "No valid token", body = ErrorBody),
              (status = 403, description = "Not an admin", body = ErrorBody),
              (status = 404, description = "No such credential, or a robot not the organisation's", body = ErrorBody),
              (status = 409, description = "Changed meanwhile, or the vault has no master key", body = ErrorBody)),
    security(("bearer" = [])))]
async fn replace_credential(
    Admin(caller): Admin,
    State(ctx): State<Arc<Context>>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<CredentialBody>> {
    let (_, input) = read_body(&body, REPLACE_SHAPE, false)?;
    Ok(Json(
        credentials::replace(&ctx, &caller, &id, input)
            .await?
            .into(),
    ))
}

/// Deletes a credential; runs of robots that need it then end ERROR at their start.
#[utoipa::path(delete, path = "/api/admin/credentials/{id}", tag = "vault", params(("id" = String, Path)),
    responses((status = 204),
              (status = 401, description = "No valid token", body = ErrorBody),
              (status = 403, description = "Not an admin", body = ErrorBody),
              (status = 404, description = "No such credential in the organisation", body = ErrorBody)),
    security(("bearer" = [])))]
async fn delete_credential(
    Admin(caller): Admin,
    State(ctx): State<Arc<Context>>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    credentials::delete(&ctx, &caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
