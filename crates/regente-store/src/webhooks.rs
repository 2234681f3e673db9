//! Webhooks: an organisation's endpoints, told of events by signed POSTs. The
//! server's webhook consumer reads the event stream and queues one delivery per
//! matching enabled endpoint in the transaction that saves its cursor
//! ([`WebhookStore::queue_webhook_deliveries`]), so a crash neither loses nor
//! doubles one; the sender claims due deliveries and records every attempt.
//!
//! The store never sees a secret in clear: the server seals them with its vault.

use async_trait::async_trait;

use crate::{AuditEntry, EventCursor, Millis, Result};

/// A registered endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct Webhook {
    pub id: String,
    pub organization_id: String,
    pub url: String,
    /// The event types it is sent.
    pub events: Vec<String>,
    pub description: Option<String>,
    pub enabled: bool,
    /// Why the server disabled it (its endpoint answered 410 Gone).
    pub disabled_reason: Option<String>,
    /// The signing secret, sealed by the server's vault.
    pub secret: String,
    /// The secret before the last rotation, sealed; it signs beside the new one
    /// until `previous_secret_until`.
    pub previous_secret: Option<String>,
    pub previous_secret_until: Option<Millis>,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    /// Due at `next_attempt_at`.
    Pending,
    Succeeded,
    /// Failed for good: attempts exhausted, or its endpoint is gone.
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Succeeded => "succeeded",
            DeliveryStatus::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<DeliveryStatus> {
        [
            DeliveryStatus::Pending,
            DeliveryStatus::Succeeded,
            DeliveryStatus::Failed,
        ]
        .into_iter()
        .find(|status| status.as_str() == text)
    }
}

/// One event to send to one endpoint, with how its attempts went.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookDelivery {
    /// Also the `webhook-id` header, the same on every attempt and replay.
    pub id: String,
    pub organization_id: String,
    pub webhook_id: String,
    pub event_type: String,
    /// The stream event it was made from.
    pub event_seq: i64,
    /// The JSON body sent, fixed when queued.
    pub payload: String,
    pub status: DeliveryStatus,
    pub attempts: i64,
    /// Attempts since it was queued or last replayed (the retry schedule's place).
    pub round_attempts: i64,
    /// When a pending delivery is due; `None` once ended.
    pub next_attempt_at: Option<Millis>,
    pub last_status_code: Option<i64>,
    pub last_error: Option<String>,
    pub last_duration_ms: Option<i64>,
    pub last_attempt_at: Option<Millis>,
    pub created_at: Millis,
}

/// One POST of a delivery and how it went.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookAttempt {
    pub delivery_id: String,
    /// 1 for the first attempt, counting on across replays.
    pub attempt: i64,
    pub at: Millis,
    pub duration_ms: i64,
    /// The answer's status, if there was an answer.
    pub status_code: Option<i64>,
    /// Why there was no (good) answer: a timeout, a refused connection, a refused address.
    pub error: Option<String>,
    /// The answer's first KiB, as text.
    pub response: Option<String>,
}

/// What an attempt means for its delivery.
#[derive(Debug, Clone, PartialEq)]
pub enum AttemptOutcome {
    Succeeded,
    /// Failed; try again at this time.
    RetryAt(Millis),
    /// Failed, and no attempt is left.
    Failed,
    /// The endpoint answered 410 Gone: the webhook is disabled with this
    /// reason and its pending deliveries fail.
    Gone {
        reason: String,
    },
}

#[async_trait]
pub trait WebhookStore: Send + Sync {
    /// Stores a new webhook, with its audit record.
    async fn create_webhook(&self, webhook: &Webhook, audit: Option<&AuditEntry>) -> Result<()>;
    /// The organisation's webhooks, oldest first.
    async fn list_webhooks(&self, organization_id: &str) -> Result<Vec<Webhook>>;
    async fn get_webhook(&self, organization_id: &str, id: &str) -> Result<Webhook>;
    /// Writes a webhook's changeable fields (url, events, description, enabled,
    /// disabled reason, secrets, updated time) with its audit record;
    /// [`Error::NotFound`](crate::Error) for no such webhook in its organisation.
    async fn update_webhook(&self, webhook: &Webhook, audit: Option<&AuditEntry>) -> Result<()>;
    /// Deletes a webhook with its deliveries and their attempts.
    async fn delete_webhook(
        &self,
        organization_id: &str,
        id: &str,
        audit: Option<&AuditEntry>,
    ) -> Result<()>;
    /// Every organisation's enabled webhooks (the consumer's routing table).
    async fn enabled_webhooks(&self) -> Result<Vec<Webhook>>;
    /// Inserts `deliveries` and saves `consumer`'s cursor at `cursor`, in one
    /// transaction, synced. A look that queued no delivery only moves the
    /// cursor and is not synced: a power loss that undoes it has the consumer
    /// look at the same events again.
    async fn queue_webhook_deliveries(
        &self,
        deliveries: &[WebhookDelivery],
        consumer: &str,
        cursor: EventCursor,
        now: Millis,
    ) -> Result<()>;
    /// At most `limit` pending deliveries due at `now` of enabled webhooks,
    /// soonest first.
    async fn due_webhook_deliveries(&self, now: Millis, limit: u32)
        -> Result<Vec<WebhookDelivery>>;
    /// Claims a due delivery for one attempt: moves its `next_attempt_at` to
    /// `until` (when the attempt is certainly over), so that it is not claimed
    /// again meanwhile, and is due again then if the attempt's end is never
    /// recorded (a crash). False if it was no longer pending and due.
    async fn claim_webhook_delivery(&self, id: &str, now: Millis, until: Millis) -> Result<bool>;
    /// Records an attempt and what it means, in one transaction.
    async fn record_webhook_attempt(
        &self,
        attempt: &WebhookAttempt,
        outcome: &AttemptOutcome,
    ) -> Result<()>;
    /// A webhook's deliveries, newest first, after the delivery `before` (a
    /// page's last id) if given.
    async fn list_webhook_deliveries(
        &self,
        organization_id: &str,
        webhook_id: &str,
        before: Option<&str>,
        limit: u32,
    ) -> Result<Vec<WebhookDelivery>>;
    /// A delivery of a webhook of the organisation, with its attempts in order.
    async fn get_webhook_delivery(
        &self,
        organization_id: &str,
        webhook_id: &str,
        delivery_id: &str,
    ) -> Result<(WebhookDelivery, Vec<WebhookAttempt>)>;
    /// Queues a delivery again, due at `now`, with a new round of attempts.
    async fn replay_webhook_delivery(
        &self,
        organization_id: &str,
        webhook_id: &str,
        delivery_id: &str,
        now: Millis,
        audit: Option<&AuditEntry>,
    ) -> Result<WebhookDelivery>;
    /// How many deliveries are pending, every organisation together.
    async fn pending_webhook_deliveries(&self) -> Result<i64>;
    /// At most `limit` webhooks with a secret (or former secret) sealed under
    /// another master key than `key_id` (`regente vault rotate-key`).
    async fn webhooks_sealed_not_under(&self, key_id: &str, limit: usize) -> Result<Vec<Webhook>>;
    /// Writes a webhook's secrets sealed again, only if they are still those of
    /// `old` (a rotation of the webhook's secret meanwhile wins); whether it did.
    async fn reseal_webhook_secrets(
        &self,
        old: &Webhook,
        secret: &str,
        previous_secret: Option<&str>,
    ) -> Result<bool>;
}

// --- Rows, the same on both backends -------------------------------------------

pub(crate) const WEBHOOK_COLUMNS: &str = "id, organization_id, url, events, description, enabled, \
     disabled_reason, secret, previous_secret, previous_secret_until, created_at, updated_at";

pub(crate) const DELIVERY_COLUMNS: &str =
    "id, organization_id, webhook_id, event_type, event_seq, \
     payload, status, attempts, round_attempts, next_attempt_at, last_status_code, last_error, \
     last_duration_ms, last_attempt_at, created_at";

pub(crate) const ATTEMPT_COLUMNS: &str =
    "delivery_id, attempt, at, duration_ms, status_code, error, response";

pub(crate) fn webhook_from(row: &impl crate::rows::RecordRow) -> Result<Webhook> {
    let events = row.text("events")?;
    Ok(Webhook {
        id: row.text("id")?,
        organization_id: row.text("organization_id")?,
        url: row.text("url")?,
        events: serde_json::from_str(&events)
            .map_err(|e| crate::Error::Other(anyhow::anyhow!("stored webhook events: {e}")))?,
        description: row.text_opt("description")?,
        enabled: row.flag("enabled")?,
        disabled_reason: row.text_opt("disabled_reason")?,
        secret: row.text("secret")?,
        previous_secret: row.text_opt("previous_secret")?,
        previous_secret_until: row.int_opt("previous_secret_until")?,
        created_at: row.int("created_at")?,
        updated_at: row.int("updated_at")?,
    })
}

pub(crate) fn events_text(webhook: &Webhook) -> String {
    serde_json::Value::from(webhook.events.clone()).to_string()
}

pub(crate) fn delivery_from(row: &impl crate::rows::RecordRow) -> Result<WebhookDelivery> {
    let status = row.text("status")?;
    Ok(WebhookDelivery {
        id: row.text("id")?,
        organization_id: row.text("organization_id")?,
        webhook_id: row.text("webhook_id")?,
        event_type: row.text("event_type")?,
        event_seq: row.int("event_seq")?,
        payload: row.text("payload")?,
        status: DeliveryStatus::parse(&status).ok_or_else(|| {
            crate::Error::Other(anyhow::anyhow!(
                "stored delivery status {status:?} is unknown"
            ))
        })?,
        attempts: row.int("attempts")?,
        round_attempts: row.int("round_attempts")?,
        next_attempt_at: row.int_opt("next_attempt_at")?,
        last_status_code: row.int_opt("last_status_code")?,
        last_error: row.text_opt("last_error")?,
        last_duration_ms: row.int_opt("last_duration_ms")?,
        last_attempt_at: row.int_opt("last_attempt_at")?,
        created_at: row.int("created_at")?,
    })
}

pub(crate) fn attempt_from(row: &impl crate::rows::RecordRow) -> Result<WebhookAttempt> {
    Ok(WebhookAttempt {
        delivery_id: row.text("delivery_id")?,
        attempt: row.int("attempt")?,
        at: row.int("at")?,
        duration_ms: row.int("duration_ms")?,
        status_code: row.int_opt("status_code")?,
        error: row.text_opt("error")?,
        response: row.text_opt("response")?,
    })
}

/// What an attempt's outcome writes on its delivery: status, `next_attempt_at`.
pub(crate) fn outcome_columns(outcome: &AttemptOutcome) -> (DeliveryStatus, Option<Millis>) {
    match outcome {
        AttemptOutcome::Succeeded => (DeliveryStatus::Succeeded, None),
        AttemptOutcome::RetryAt(at) => (DeliveryStatus::Pending, Some(*at)),
        AttemptOutcome::Failed | AttemptOutcome::Gone { .. } => (DeliveryStatus::Failed, None),
    }
}

/// The last error a delivery shows when its endpoint went away.
pub(crate) const GONE_ERROR: &str = "the endpoint answered 410 Gone: webhook disabled";
