//! The audit log (`GET /api/admin/audit`): the caller's organisation's records,
//! newest first, filtered and paged. Read only: nothing edits or deletes a
//! record through the API.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use regente_store::{AuditFilter, AuditRecord};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::Admin;
use crate::service::audit::{self, MAX_LIMIT};
use crate::service::Context;

pub fn router() -> Router<Arc<Context>> {
    Router::new().route("/api/admin/audit", get(list_audit))
}

/// One record: who did what to which object, when, from where.
#[derive(Serialize, ToSchema)]
pub struct AuditRecordBody {
    /// The record's place: larger is newer.
    seq: i64,
    /// Epoch milliseconds.
    time: i64,
    /// A user's id, or `KIND:ID` for the server acting on its own.
    actor_id: String,
    actor_name: String,
    /// `OBJECT.VERB`, e.g. `user.create`, `schedule.pause`, `auth.login_failed`.
    action: String,
    object_type: String,
    object_id: String,
    /// The client address the server saw.
    address: Option<String>,
    /// What changed, never a secret.
    #[schema(value_type = Object)]
    summary: Value,
}

impl From<AuditRecord> for AuditRecordBody {
    fn from(record: AuditRecord) -> AuditRecordBody {
        let entry = record.entry;
        AuditRecordBody {
            seq: record.seq,
            time: entry.time,
            actor_id: entry.actor_id,
            actor_name: entry.actor_name,
            action: entry.action,
            object_type: entry.object_type,
            object_id: entry.object_id,
            address: entry.address,
            summary: entry.summary,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct AuditPage {
    /// Newest first.
    records: Vec<AuditRecordBody>,
    /// The `after` of the next page; absent on the last one.
    next: Option<String>,
}

const PARAMETERS: [&str; 8] = [
    "actor",
    "action",
    "object_type",
    "object_id",
    "from",
    "to",
    "after",
    "limit",
];

/// Longest text filter taken (a username has at most 254 characters).
pub(crate) const MAX_FILTER_CHARS: usize = 256;

/// The query as the service takes it; a parameter it does not know, or one
/// that does not fit, is a 400 naming it.
pub(crate) fn parse_query(params: &HashMap<String, String>) -> ApiResult<AuditFilter> {
    if let Some(unknown) = params.keys().find(|k| !PARAMETERS.contains(&k.as_str())) {
        return Err(ApiError::invalid(format!(
            "unknown query parameter {unknown:?}: use {}",
            PARAMETERS.join(", ")
        )));
    }
    let text = |name: &str| -> ApiResult<Option<String>> {
        params
            .get(name)
            .map(|text| {
                if text.is_empty()
                    || text.chars().count() > MAX_FILTER_CHARS
                    || text.contains('\0')
                {
                    Err(ApiError::invalid(format!(
                        "query parameter {name} must have 1 to {MAX_FILTER_CHARS} characters and no NUL"
                    )))
                } else {
                    Ok(text.clone())
                }
            })
            .transpose()
    };
    let time = |name: &'static str| -> ApiResult<Option<i64>> {
        params
            .get(name)
            .map(|text| {
                let value = text
                    .parse::<i64>()
                    .map(Value::from)
                    .unwrap_or_else(|_| Value::String(text.clone()));
                super::fields::instant(name, &value)
            })
            .transpose()
    };
    let number = |name: &str, range| -> ApiResult<Option<u64>> {
        params
            .get(name)
            .map(|text| super::whole_number(name, text, range))
            .transpose()
    };
    Ok(AuditFilter {
        actor: text("actor")?,
        action: text("action")?,
        object_type: text("object_type")?,
        object_id: text("object_id")?,
        from: time("from")?,
        to: time("to")?,
        before_seq: number("after", 1..=i64::MAX as u64)?.map(|n| n as i64),
        limit: number("limit", 1..=u64::from(MAX_LIMIT))?.map_or(0, |n| n as u32),
    })
}

/// The organisation's audit records, newest first: every change made through
/// the admin API or the console, failed logins and credentials handed out.
#[utoipa::path(get, path = "/api/admin/audit", tag = "admin",
    params(("actor" = Option<String>, Query, description = "The actor's id or name"),
           ("action" = Option<String>, Query, description = "e.g. user.create"),
           ("object_type" = Option<String>, Query), ("object_id" = Option<String>, Query),
           ("from" = Option<String>, Query, description = "At or after: epoch ms or ISO-8601 with an offset"),
           ("to" = Option<String>, Query, description = "Before: epoch ms or ISO-8601 with an offset"),
           ("after" = Option<i64>, Query, description = "`next` of the previous page"),
           ("limit" = Option<u32>, Query, description = "1 to 200, default 50")),
    responses((status = 200, body = AuditPage), (status = 400, body = ErrorBody)), security(("bearer" = [])))]
async fn list_audit(
    Admin(caller): Admin,
    State(ctx): State<Arc<Context>>,
    Query(params): Query<HashMap<String, String>>,
) -> ApiResult<Json<AuditPage>> {
    let page = audit::list(&ctx, &caller, parse_query(&params)?).await?;
    Ok(Json(AuditPage {
        records: page
            .records
            .into_iter()
            .map(AuditRecordBody::from)
            .collect(),
        next: page.next.map(|seq| seq.to_string()),
    }))
}
