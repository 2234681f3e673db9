//! The organisation's webhooks (admins only): listed with their state; one
//! webhook with its recent deliveries and their attempts, each delivery
//! replayed by a CSRF-checked form. Webhooks are created and changed through
//! the API or the CLI (their secret is shown there, once).

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect};

use super::format;
use super::pages::{render, PageError, PageResult};
use super::session::{AdminViewer, NoFields, Posted};
use crate::service::{webhooks, Context};

/// Deliveries the detail page shows.
const RECENT: u32 = 20;

pub struct WebhookRow {
    pub id: String,
    pub url: String,
    pub events: String,
    pub description: String,
    /// `enabled`, or `disabled` with the server's reason if it gave one.
    pub state: String,
    pub created: String,
}

pub struct AttemptRow {
    pub attempt: i64,
    pub at: String,
    pub duration_ms: i64,
    pub outcome: String,
}

pub struct DeliveryRow {
    pub id: String,
    pub event_type: String,
    pub status: &'static str,
    pub created: String,
    pub next_attempt: String,
    pub attempts: Vec<AttemptRow>,
}

#[derive(Template)]
#[template(path = "webhooks.html")]
struct ListPage {
    chrome: super::pages::Chrome,
    rows: Vec<WebhookRow>,
}

#[derive(Template)]
#[template(path = "webhook.html")]
struct DetailPage {
    chrome: super::pages::Chrome,
    webhook: WebhookRow,
    deliveries: Vec<DeliveryRow>,
}

fn row(webhook: regente_store::Webhook) -> WebhookRow {
    let state = match (webhook.enabled, webhook.disabled_reason) {
        (true, _) => "enabled".to_owned(),
        (false, Some(reason)) => format!("disabled: {reason}"),
        (false, None) => "disabled".to_owned(),
    };
    WebhookRow {
        id: webhook.id,
        url: webhook.url,
        events: webhook.events.join(", "),
        description: webhook.description.unwrap_or_default(),
        state,
        created: format::time_html(webhook.created_at),
    }
}

pub async fn list(AdminViewer(viewer): AdminViewer, State(ctx): State<Arc<Context>>) -> PageResult {
    let listed = webhooks::list(&ctx, viewer.caller())
        .await
        .map_err(viewer.fail())?;
    Ok(render(&ListPage {
        chrome: viewer.chrome,
        rows: listed.into_iter().map(row).collect(),
    }))
}

pub async fn detail(
    AdminViewer(viewer): AdminViewer,
    State(ctx): State<Arc<Context>>,
    Path(id): Path<String>,
) -> PageResult {
    let caller = viewer.caller().clone();
    let webhook = webhooks::get(&ctx, &caller, &id)
        .await
        .map_err(viewer.fail())?;
    let recent = webhooks::deliveries(&ctx, &caller, &id, None, Some(RECENT))
        .await
        .map_err(viewer.fail())?;
    let mut deliveries = Vec::new();
    for delivery in recent {
        let (_, attempts) = webhooks::delivery(&ctx, &caller, &id, &delivery.id)
            .await
            .map_err(viewer.fail())?;
        deliveries.push(DeliveryRow {
            id: delivery.id,
            event_type: delivery.event_type,
            status: delivery.status.as_str(),
            created: format::time_html(delivery.created_at),
            next_attempt: format::maybe_time_html(delivery.next_attempt_at),
            attempts: attempts
                .into_iter()
                .map(|attempt| AttemptRow {
                    attempt: attempt.attempt,
                    at: format::time_html(attempt.at),
                    duration_ms: attempt.duration_ms,
                    outcome: match (attempt.status_code, attempt.error) {
                        (Some(code), _) => format!("HTTP {code}"),
                        (None, Some(error)) => error,
                        (None, None) => "-".to_owned(),
                    },
                })
                .collect(),
        });
    }
    Ok(render(&DetailPage {
        chrome: viewer.chrome,
        webhook: row(webhook),
        deliveries,
    }))
}

pub async fn replay(
    State(ctx): State<Arc<Context>>,
    Path((id, delivery_id)): Path<(String, String)>,
    Posted(viewer, NoFields {}): Posted<NoFields>,
) -> PageResult {
    if !viewer.is_admin() {
        return Err(PageError::forbidden(Some(viewer.chrome)));
    }
    match webhooks::replay(&ctx, viewer.caller(), &id, &delivery_id).await {
        Ok(_) => Ok(Redirect::to(&format!("/webhooks/{id}")).into_response()),
        Err(e) => Err(PageError::from(e).framed(viewer.chrome)),
    }
}
