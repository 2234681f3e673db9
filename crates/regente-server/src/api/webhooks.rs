//! The organisation's webhooks (`/api/admin/webhooks`): endpoints told of
//! events by signed POSTs (Standard Webhooks), their secrets shown once at
//! creation and rotation, their deliveries with every attempt, replays.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use regente_store::{Webhook, WebhookAttempt, WebhookDelivery};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::error::{ApiResult, ErrorBody};
use super::extract::Admin;
use super::fields::{bad, Fields};
use crate::service::webhooks::{self, WebhookChange, WithSecret};
use crate::service::Context;

pub fn router() -> Router<Arc<Context>> {
    Router::new()
        .route(
            "/api/admin/webhooks",
            get(list_webhooks).post(create_webhook),
        )
        .route(
            "/api/admin/webhooks/{id}",
            get(get_webhook)
                .patch(update_webhook)
                .delete(delete_webhook),
        )
        .route(
            "/api/admin/webhooks/{id}/rotate-secret",
            post(rotate_webhook_secret),
        )
        .route(
            "/api/admin/webhooks/{id}/deliveries",
            get(list_webhook_deliveries),
        )
        .route(
            "/api/admin/webhooks/{id}/deliveries/{delivery_id}",
            get(get_webhook_delivery),
        )
        .route(
            "/api/admin/webhooks/{id}/deliveries/{delivery_id}/replay",
            post(replay_webhook_delivery),
        )
}

/// A webhook to create.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct NewWebhookBody {
    /// An http:// or https:// URL, at most 2,000 characters; link-local and
    /// cloud metadata addresses are refused unless the server allows them.
    url: String,
    /// The event types to send, at least one: execution.queued,
    /// execution.started, execution.finished, execution.error,
    /// execution.canceled, execution.requeued, runtime.online, runtime.offline,
    /// flow_run.started, flow_run.ended, schedule.fired, schedule.skipped,
    /// schedule.missed, schedule.paused.
    events: Vec<String>,
    /// At most 500 characters.
    description: Option<String>,
}

/// What to change of a webhook; absent fields stay as they are.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct WebhookChangeBody {
    url: Option<String>,
    events: Option<Vec<String>>,
    /// True sends again (and clears a reason the server disabled it for).
    enabled: Option<bool>,
    /// Null clears it.
    description: Option<String>,
}

/// A webhook, never its secret.
#[derive(Serialize, ToSchema)]
pub struct WebhookBody {
    id: String,
    url: String,
    events: Vec<String>,
    description: Option<String>,
    enabled: bool,
    /// Why the server disabled it (its endpoint answered 410 Gone).
    disabled_reason: Option<String>,
    /// Until when (epoch ms) the secret before the last rotation still signs
    /// beside the current one; null: no such secret.
    previous_secret_until: Option<i64>,
    created_at: i64,
    updated_at: i64,
}

impl From<Webhook> for WebhookBody {
    fn from(webhook: Webhook) -> WebhookBody {
        WebhookBody {
            id: webhook.id,
            url: webhook.url,
            events: webhook.events,
            description: webhook.description,
            enabled: webhook.enabled,
            disabled_reason: webhook.disabled_reason,
            previous_secret_until: webhook.previous_secret_until,
            created_at: webhook.created_at,
            updated_at: webhook.updated_at,
        }
    }
}

/// A webhook with its signing secret: shown this once, stored sealed.
#[derive(Serialize, ToSchema)]
pub struct WebhookWithSecret {
    /// `whsec_` and base64 of 32 random bytes; the HMAC key is the decoded bytes.
    secret: String,
    #[serde(flatten)]
    webhook: WebhookBody,
}

impl From<WithSecret> for WebhookWithSecret {
    fn from(created: WithSecret) -> WebhookWithSecret {
        WebhookWithSecret {
            secret: created.secret,
            webhook: created.webhook.into(),
        }
    }
}

/// A delivery: one event for one webhook, with how its attempts went.
#[derive(Serialize, ToSchema)]
pub struct DeliveryBody {
    /// Also the `webhook-id` header, the same on every attempt and replay.
    id: String,
    webhook_id: String,
    event_type: String,
    /// The event's place in the server's event stream.
    event_seq: i64,
    /// pending, succeeded or failed.
    status: String,
    attempts: i64,
    last_status_code: Option<i64>,
    last_error: Option<String>,
    last_duration_ms: Option<i64>,
    last_attempt_at: Option<i64>,
    /// When a pending delivery is (next) due.
    next_attempt_at: Option<i64>,
    created_at: i64,
}

impl From<WebhookDelivery> for DeliveryBody {
    fn from(delivery: WebhookDelivery) -> DeliveryBody {
        DeliveryBody {
            id: delivery.id,
            webhook_id: delivery.webhook_id,
            event_type: delivery.event_type,
            event_seq: delivery.event_seq,
            status: delivery.status.as_str().to_owned(),
            attempts: delivery.attempts,
            last_status_code: delivery.last_status_code,
            last_error: delivery.last_error,
            last_duration_ms: delivery.last_duration_ms,
            last_attempt_at: delivery.last_attempt_at,
            next_attempt_at: delivery.next_attempt_at,
            created_at: delivery.created_at,
        }
    }
}

/// A page of deliveries, newest first.
#[derive(Serialize, ToSchema)]
pub struct DeliveryPage {
    deliveries: Vec<DeliveryBody>,
    /// Give as `cursor` for the next page; null: no more.
    next_cursor: Option<String>,
}

/// One POST of a delivery.
#[derive(Serialize, ToSchema)]
pub struct AttemptBody {
    attempt: i64,
    at: i64,
    duration_ms: i64,
    status_code: Option<i64>,
    error: Option<String>,
    /// The answer's first KiB.
    response: Option<String>,
}

impl From<WebhookAttempt> for AttemptBody {
    fn from(attempt: WebhookAttempt) -> AttemptBody {
        AttemptBody {
            attempt: attempt.attempt,
            at: attempt.at,
            duration_ms: attempt.duration_ms,
            status_code: attempt.status_code,
            error: attempt.error,
            response: attempt.response,
        }
    }
}

/// A delivery with its attempts and the body it sends.
#[derive(Serialize, ToSchema)]
pub struct DeliveryDetail {
    #[serde(flatten)]
    delivery: DeliveryBody,
    /// The JSON body sent: `{type, timestamp, data}`.
    #[schema(value_type = Object)]
    payload: Value,
    attempts_made: Vec<AttemptBody>,
}

fn events_field(fields: &mut Fields) -> ApiResult<Option<Vec<String>>> {
    let Some(value) = fields.value("events") else {
        return Ok(None);
    };
    let Value::Array(items) = value else {
        return Err(bad("events", "must be an array of event type names"));
    };
    items
        .into_iter()
        .map(|item| match item {
            Value::String(name) => Ok(name),
            _ => Err(bad("events", "must be an array of event type names")),
        })
        .collect::<ApiResult<Vec<String>>>()
        .map(Some)
}

/// Creates a webhook and answers it with its secret, once.
#[utoipa::path(post, path = "/api/admin/webhooks", tag = "admin", request_body = NewWebhookBody,
    responses((status = 201, body = WebhookWithSecret),
              (status = 400, description = "A URL, event type or description out of its rules; the message names the field", body = ErrorBody)),
    security(("bearer" = [])))]
async fn create_webhook(
    Admin(caller): Admin,
    State(ctx): State<Arc<Context>>,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<WebhookWithSecret>)> {
    let mut fields = Fields::parse(&body, &["url", "events", "description"])?;
    let url = fields
        .text("url")?
        .ok_or_else(|| bad("url", "is required"))?;
    let events = events_field(&mut fields)?.ok_or_else(|| bad("events", "is required"))?;
    let description = fields.text("description")?;
    let created = webhooks::create(&ctx, &caller, &url, &events, description).await?;
    Ok((StatusCode::CREATED, Json(created.into())))
}

/// Lists the organisation's webhooks, oldest first.
#[utoipa::path(get, path = "/api/admin/webhooks", tag = "admin",
    responses((status = 200, body = Vec<WebhookBody>)),
    security(("bearer" = [])))]
async fn list_webhooks(
    Admin(caller): Admin,
    State(ctx): State<Arc<Context>>,
) -> ApiResult<Json<Vec<WebhookBody>>> {
    let listed = webhooks::list(&ctx, &caller).await?;
    Ok(Json(listed.into_iter().map(WebhookBody::from).collect()))
}

/// One webhook of the organisation, without its secret.
#[utoipa::path(get, path = "/api/admin/webhooks/{id}", tag = "admin", params(("id" = String, Path)),
    responses((status = 200, body = WebhookBody),
              (status = 404, description = "No such webhook in the organisation", body = ErrorBody)),
    security(("bearer" = [])))]
async fn get_webhook(
    Admin(caller): Admin,
    State(ctx): State<Arc<Context>>,
    Path(id): Path<String>,
) -> ApiResult<Json<WebhookBody>> {
    Ok(Json(webhooks::get(&ctx, &caller, &id).await?.into()))
}

/// Changes a webhook's URL, event types, description or whether it is enabled.
#[utoipa::path(patch, path = "/api/admin/webhooks/{id}", tag = "admin", params(("id" = String, Path)),
    request_body = WebhookChangeBody,
    responses((status = 200, body = WebhookBody),
              (status = 400, description = "A field out of its rules; the message names it", body = ErrorBody),
              (status = 404, description = "No such webhook in the organisation", body = ErrorBody)),
    security(("bearer" = [])))]
async fn update_webhook(
    Admin(caller): Admin,
    State(ctx): State<Arc<Context>>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<WebhookBody>> {
    let mut fields = Fields::parse(&body, &["url", "events", "enabled", "description"])?;
    let description = match fields.nullable("description") {
        None => None,
        Some(None) => Some(None),
        Some(Some(Value::String(text))) => Some(Some(text)),
        Some(Some(_)) => return Err(bad("description", "must be a string or null")),
    };
    let change = WebhookChange {
        url: fields.text("url")?,
        events: events_field(&mut fields)?,
        enabled: fields.flag("enabled")?,
        description,
    };
    Ok(Json(
        webhooks::update(&ctx, &caller, &id, change).await?.into(),
    ))
}

/// Deletes a webhook with its deliveries.
#[utoipa::path(delete, path = "/api/admin/webhooks/{id}", tag = "admin", params(("id" = String, Path)),
    responses((status = 204),
              (status = 404, description = "No such webhook in the organisation", body = ErrorBody)),
    security(("bearer" = [])))]
async fn delete_webhook(
    Admin(caller): Admin,
    State(ctx): State<Arc<Context>>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    webhooks::delete(&ctx, &caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Gives the webhook a new secret, answered once; the former one keeps
/// signing beside it for 24 hours (`webhook-signature` then carries both).
#[utoipa::path(post, path = "/api/admin/webhooks/{id}/rotate-secret", tag = "admin", params(("id" = String, Path)),
    responses((status = 200, body = WebhookWithSecret),
              (status = 404, description = "No such webhook in the organisation", body = ErrorBody)),
    security(("bearer" = [])))]
async fn rotate_webhook_secret(
    Admin(caller): Admin,
    State(ctx): State<Arc<Context>>,
    Path(id): Path<String>,
) -> ApiResult<Json<WebhookWithSecret>> {
    Ok(Json(
        webhooks::rotate_secret(&ctx, &caller, &id).await?.into(),
    ))
}

/// A webhook's deliveries, newest first.
#[utoipa::path(get, path = "/api/admin/webhooks/{id}/deliveries", tag = "admin",
    params(("id" = String, Path),
           ("limit" = Option<u32>, Query, description = "1 to 100, default 100"),
           ("cursor" = Option<String>, Query, description = "next_cursor of the previous page")),
    responses((status = 200, body = DeliveryPage),
              (status = 400, description = "A limit out of range", body = ErrorBody),
              (status = 404, description = "No such webhook in the organisation", body = ErrorBody)),
    security(("bearer" = [])))]
async fn list_webhook_deliveries(
    Admin(caller): Admin,
    State(ctx): State<Arc<Context>>,
    Path(id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> ApiResult<Json<DeliveryPage>> {
    let limit = params
        .get("limit")
        .map(|text| {
            text.parse::<u32>()
                .map_err(|_| bad("limit", "must be 1 to 100"))
        })
        .transpose()?;
    let cursor = params.get("cursor").map(String::as_str);
    let page = webhooks::deliveries(&ctx, &caller, &id, cursor, limit).await?;
    let full = page.len() == limit.unwrap_or(webhooks::MAX_PAGE) as usize;
    let next_cursor = full.then(|| page.last().map(|d| d.id.clone())).flatten();
    Ok(Json(DeliveryPage {
        deliveries: page.into_iter().map(DeliveryBody::from).collect(),
        next_cursor,
    }))
}

/// One delivery with its attempts.
#[utoipa::path(get, path = "/api/admin/webhooks/{id}/deliveries/{delivery_id}", tag = "admin",
    params(("id" = String, Path), ("delivery_id" = String, Path)),
    responses((status = 200, body = DeliveryDetail),
              (status = 404, description = "No such webhook or delivery in the organisation", body = ErrorBody)),
    security(("bearer" = [])))]
async fn get_webhook_delivery(
    Admin(caller): Admin,
    State(ctx): State<Arc<Context>>,
    Path((id, delivery_id)): Path<(String, String)>,
) -> ApiResult<Json<DeliveryDetail>> {
    let (delivery, attempts) = webhooks::delivery(&ctx, &caller, &id, &delivery_id).await?;
    let payload = serde_json::from_str(&delivery.payload).unwrap_or(Value::Null);
    Ok(Json(DeliveryDetail {
        delivery: delivery.into(),
        payload,
        attempts_made: attempts.into_iter().map(AttemptBody::from).collect(),
    }))
}

/// Queues a delivery again, due now, with the same `webhook-id`.
#[utoipa::path(post, path = "/api/admin/webhooks/{id}/deliveries/{delivery_id}/replay", tag = "admin",
    params(("id" = String, Path), ("delivery_id" = String, Path)),
    responses((status = 202, body = DeliveryBody),
              (status = 404, description = "No such webhook or delivery in the organisation", body = ErrorBody)),
    security(("bearer" = [])))]
async fn replay_webhook_delivery(
    Admin(caller): Admin,
    State(ctx): State<Arc<Context>>,
    Path((id, delivery_id)): Path<(String, String)>,
) -> ApiResult<(StatusCode, Json<DeliveryBody>)> {
    let replayed = webhooks::replay(&ctx, &caller, &id, &delivery_id).await?;
    Ok((StatusCode::ACCEPTED, Json(replayed.into())))
}
