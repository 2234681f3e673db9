//! Webhooks, the admin's side: endpoints registered with the event types they
//! want, their signing secrets (shown once, sealed by the vault, rotated with a
//! day of overlap), their deliveries and replays. Sending is `crate::webhooks`.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use rand::RngCore;
use regente_store::{Webhook, WebhookAttempt, WebhookDelivery};
use serde_json::{json, Value};

use super::{new_id, or_not_found, Caller, Context, Error, Result};
use crate::webhooks::sender::{ROTATION_OVERLAP, SECRET_PREFIX};
use crate::webhooks::target::{check_addresses, parse_url, TargetPolicy};
use crate::webhooks::EVENT_TYPES;

/// Characters a description has, at most.
pub const MAX_DESCRIPTION_LEN: usize = 500;
/// Deliveries a page lists, at most (and by default).
pub const MAX_PAGE: u32 = 100;

/// A webhook just created or given a new secret, with the secret: shown this
/// once, stored sealed.
pub struct WithSecret {
    pub webhook: Webhook,
    pub secret: String,
}

/// What a change of a webhook sets; `None` keeps a field.
#[derive(Default)]
pub struct WebhookChange {
    pub url: Option<String>,
    pub events: Option<Vec<String>>,
    pub enabled: Option<bool>,
    /// `Some(None)` clears it.
    pub description: Option<Option<String>>,
}

fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("{SECRET_PREFIX}{}", BASE64.encode(bytes))
}

fn not_found(id: &str) -> impl FnOnce() -> String + '_ {
    move || format!("no webhook {id}")
}

/// A URL webhooks may be sent to, checked (form, then addresses).
async fn check_url(ctx: &Context, url: &str) -> Result<()> {
    let parsed = parse_url(url).map_err(|e| Error::Invalid(format!("url: {e}")))?;
    let policy = TargetPolicy::parse(&ctx.config.webhook_allow_hosts)?;
    check_addresses(&policy, &parsed)
        .await
        .map_err(|e| Error::Invalid(format!("url: {e}")))
}

/// Event types checked: at least one, each known; duplicates dropped.
fn check_events(events: &[String]) -> Result<Vec<String>> {
    if events.is_empty() {
        return Err(Error::Invalid(format!(
            "events: name at least one event type: {}",
            EVENT_TYPES.join(", ")
        )));
    }
    let mut checked: Vec<String> = Vec::new();
    for event in events {
        if !EVENT_TYPES.contains(&event.as_str()) {
            return Err(Error::Invalid(format!(
                "events: {event:?} is no event type (known: {})",
                EVENT_TYPES.join(", ")
            )));
        }
        if !checked.contains(event) {
            checked.push(event.clone());
        }
    }
    Ok(checked)
}

fn check_description(description: &Option<String>) -> Result<()> {
    if let Some(text) = description {
        if text.chars().count() > MAX_DESCRIPTION_LEN || text.chars().any(char::is_control) {
            return Err(Error::Invalid(format!(
                "description: must have at most {MAX_DESCRIPTION_LEN} characters, with no control characters"
            )));
        }
    }
    Ok(())
}

/// What the audit log keeps of a webhook: never its secret.
fn audit_summary(webhook: &Webhook) -> Value {
    json!({
        "url": webhook.url,
        "events": webhook.events,
        "enabled": webhook.enabled,
        "description": webhook.description,
    })
}

fn seal(ctx: &Context, webhook: &Webhook, secret: &str) -> Result<String> {
    Ok(ctx
        .vault
        .seal_webhook_secret(&webhook.organization_id, &webhook.id, secret)?)
}

pub async fn create(
    ctx: &Context,
    caller: &Caller,
    url: &str,
    events: &[String],
    description: Option<String>,
) -> Result<WithSecret> {
    check_url(ctx, url).await?;
    let events = check_events(events)?;
    check_description(&description)?;
    let now = ctx.clock.now();
    let mut webhook = Webhook {
        id: new_id(),
        organization_id: caller.organization_id.clone(),
        url: url.to_owned(),
        events,
        description,
        enabled: true,
        disabled_reason: None,
        secret: String::new(),
        previous_secret: None,
        previous_secret_until: None,
        created_at: now,
        updated_at: now,
    };
    let secret = new_secret();
    webhook.secret = seal(ctx, &webhook, &secret)?;
    let audit = super::audit::record(
        ctx,
        caller,
        "webhook.create",
        &webhook.id,
        audit_summary(&webhook),
    );
    ctx.store.create_webhook(&webhook, Some(&audit)).await?;
    ctx.webhooks_wake.notify_one();
    Ok(WithSecret { webhook, secret })
}

pub async fn list(ctx: &Context, caller: &Caller) -> Result<Vec<Webhook>> {
    Ok(ctx.store.list_webhooks(&caller.organization_id).await?)
}

pub async fn get(ctx: &Context, caller: &Caller, id: &str) -> Result<Webhook> {
    // Ids are 16 hex digits: anything else names no webhook, and reaches no query.
    if !regente_core::is_valid_id(id) {
        return Err(Error::NotFound(not_found(id)()));
    }
    or_not_found(
        ctx.store.get_webhook(&caller.organization_id, id).await,
        not_found(id),
    )
}

pub async fn update(
    ctx: &Context,
    caller: &Caller,
    id: &str,
    change: WebhookChange,
) -> Result<Webhook> {
    let before = get(ctx, caller, id).await?;
    let mut webhook = before.clone();
    if let Some(url) = change.url {
        check_url(ctx, &url).await?;
        webhook.url = url;
    }
    if let Some(events) = change.events {
        webhook.events = check_events(&events)?;
    }
    if let Some(description) = change.description {
        check_description(&description)?;
        webhook.description = description;
    }
    if let Some(enabled) = change.enabled {
        webhook.enabled = enabled;
        if enabled {
            webhook.disabled_reason = None;
        }
    }
    if webhook == before {
        // Nothing to write, and so nothing to record.
        return Ok(webhook);
    }
    webhook.updated_at = ctx.clock.now();
    let audit = super::audit::record(ctx, caller, "webhook.update", id, audit_summary(&webhook));
    or_not_found(
        ctx.store.update_webhook(&webhook, Some(&audit)).await,
        not_found(id),
    )?;
    ctx.webhooks_wake.notify_one();
    Ok(webhook)
}

pub async fn delete(ctx: &Context, caller: &Caller, id: &str) -> Result<()> {
    let webhook = get(ctx, caller, id).await?;
    let audit = super::audit::record(ctx, caller, "webhook.delete", id, audit_summary(&webhook));
    or_not_found(
        ctx.store
            .delete_webhook(&caller.organization_id, id, Some(&audit))
            .await,
        not_found(id),
    )
}

/// A new secret; the current one keeps signing beside it for
/// [`ROTATION_OVERLAP`] (a former one still in its overlap is dropped).
pub async fn rotate_secret(ctx: &Context, caller: &Caller, id: &str) -> Result<WithSecret> {
    let mut webhook = get(ctx, caller, id).await?;
    let now = ctx.clock.now();
    let secret = new_secret();
    let sealed = seal(ctx, &webhook, &secret)?;
    webhook.previous_secret = Some(std::mem::replace(&mut webhook.secret, sealed));
    webhook.previous_secret_until = Some(now + ROTATION_OVERLAP);
    webhook.updated_at = now;
    let audit = super::audit::record(
        ctx,
        caller,
        "webhook.rotate_secret",
        id,
        json!({ "previous_secret_until": webhook.previous_secret_until }),
    );
    or_not_found(
        ctx.store.update_webhook(&webhook, Some(&audit)).await,
        not_found(id),
    )?;
    Ok(WithSecret { webhook, secret })
}

/// A webhook's deliveries, newest first, after `before` (the last id of the
/// page before).
pub async fn deliveries(
    ctx: &Context,
    caller: &Caller,
    id: &str,
    before: Option<&str>,
    limit: Option<u32>,
) -> Result<Vec<WebhookDelivery>> {
    get(ctx, caller, id).await?;
    if before.is_some_and(|cursor| !regente_core::is_valid_id(cursor)) {
        return Err(Error::Invalid(
            "cursor: must be the next_cursor of a page (16 hex digits)".into(),
        ));
    }
    let limit = limit.unwrap_or(MAX_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(Error::Invalid(format!("limit: must be 1 to {MAX_PAGE}")));
    }
    Ok(ctx
        .store
        .list_webhook_deliveries(&caller.organization_id, id, before, limit)
        .await?)
}

pub async fn delivery(
    ctx: &Context,
    caller: &Caller,
    id: &str,
    delivery_id: &str,
) -> Result<(WebhookDelivery, Vec<WebhookAttempt>)> {
    if !regente_core::is_valid_id(id) || !regente_core::is_valid_id(delivery_id) {
        return Err(Error::NotFound(format!(
            "no delivery {delivery_id} of webhook {id}"
        )));
    }
    or_not_found(
        ctx.store
            .get_webhook_delivery(&caller.organization_id, id, delivery_id)
            .await,
        || format!("no delivery {delivery_id} of webhook {id}"),
    )
}

/// Queues a delivery again, due now, with the same `webhook-id`.
pub async fn replay(
    ctx: &Context,
    caller: &Caller,
    id: &str,
    delivery_id: &str,
) -> Result<WebhookDelivery> {
    if !regente_core::is_valid_id(id) || !regente_core::is_valid_id(delivery_id) {
        return Err(Error::NotFound(format!(
            "no delivery {delivery_id} of webhook {id}"
        )));
    }
    let audit = super::audit::record(
        ctx,
        caller,
        "webhook.replay",
        id,
        json!({ "delivery_id": delivery_id }),
    );
    let replayed = or_not_found(
        ctx.store
            .replay_webhook_delivery(
                &caller.organization_id,
                id,
                delivery_id,
                ctx.clock.now(),
                Some(&audit),
            )
            .await,
        || format!("no delivery {delivery_id} of webhook {id}"),
    )?;
    ctx.webhooks_wake.notify_one();
    Ok(replayed)
}
