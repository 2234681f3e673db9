//! Webhooks, their deliveries and attempts on SQLite.

use async_trait::async_trait;
use rusqlite::{params, Connection};

use super::audit::{audit_one, delete_audited, insert_audit};
use super::engine::Durability;
use super::events::save_cursor_in;
use super::{all, change, insert, one, SqliteStore};
use crate::credentials::sealed_variable_prefix;
use crate::webhooks::{
    attempt_from, delivery_from, events_text, outcome_columns, webhook_from, AttemptOutcome,
    DeliveryStatus, Webhook, WebhookAttempt, WebhookDelivery, WebhookStore, ATTEMPT_COLUMNS,
    DELIVERY_COLUMNS, GONE_ERROR, WEBHOOK_COLUMNS,
};
use crate::{AuditEntry, Error, EventCursor, Millis, Result};

fn delivery_in(
    conn: &Connection,
    organization_id: &str,
    webhook_id: &str,
    delivery_id: &str,
) -> Result<WebhookDelivery> {
    one(
        conn,
        &format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries \
             WHERE organization_id = ?1 AND webhook_id = ?2 AND id = ?3"
        ),
        [organization_id, webhook_id, delivery_id],
        |row| delivery_from(row),
    )?
    .ok_or(Error::NotFound)
}

#[async_trait]
impl WebhookStore for SqliteStore {
    async fn create_webhook(&self, webhook: &Webhook, audit: Option<&AuditEntry>) -> Result<()> {
        let (webhook, audit) = (webhook.clone(), audit.cloned());
        self.write(move |conn| {
            insert(
                conn,
                &format!(
                    "INSERT INTO webhooks ({WEBHOOK_COLUMNS}) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
                ),
                params![
                    webhook.id,
                    webhook.organization_id,
                    webhook.url,
                    events_text(&webhook),
                    webhook.description,
                    webhook.enabled,
                    webhook.disabled_reason,
                    webhook.secret,
                    webhook.previous_secret,
                    webhook.previous_secret_until,
                    webhook.created_at,
                    webhook.updated_at
                ],
                "a webhook with this id",
            )?;
            insert_audit(conn, audit.as_ref())
        })
        .await
    }

    async fn list_webhooks(&self, organization_id: &str) -> Result<Vec<Webhook>> {
        let organization_id = organization_id.to_owned();
        self.read_blocking(move |conn| {
            all(
                conn,
                &format!(
                    "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE organization_id = ?1 \
                     ORDER BY created_at, id"
                ),
                [organization_id],
                |row| webhook_from(row),
            )
        })
        .await
    }

    async fn get_webhook(&self, organization_id: &str, id: &str) -> Result<Webhook> {
        self.readers
            .with(|conn| {
                one(
                    conn,
                    &format!(
                        "SELECT {WEBHOOK_COLUMNS} FROM webhooks \
                         WHERE organization_id = ?1 AND id = ?2"
                    ),
                    [organization_id, id],
                    |row| webhook_from(row),
                )
            })?
            .ok_or(Error::NotFound)
    }

    async fn update_webhook(&self, webhook: &Webhook, audit: Option<&AuditEntry>) -> Result<()> {
        let (webhook, audit) = (webhook.clone(), audit.cloned());
        self.write(move |conn| {
            let changed = change(
                conn,
                "UPDATE webhooks SET url = ?3, events = ?4, description = ?5, enabled = ?6, \
                 disabled_reason = ?7, secret = ?8, previous_secret = ?9, \
                 previous_secret_until = ?10, updated_at = ?11 \
                 WHERE organization_id = ?1 AND id = ?2",
                params![
                    webhook.organization_id,
                    webhook.id,
                    webhook.url,
                    events_text(&webhook),
                    webhook.description,
                    webhook.enabled,
                    webhook.disabled_reason,
                    webhook.secret,
                    webhook.previous_secret,
                    webhook.previous_secret_until,
                    webhook.updated_at
                ],
            )?;
            audit_one(conn, changed, audit.as_ref())
        })
        .await
    }

    async fn delete_webhook(
        &self,
        organization_id: &str,
        id: &str,
        audit: Option<&AuditEntry>,
    ) -> Result<()> {
        let (organization_id, id, audit) =
            (organization_id.to_owned(), id.to_owned(), audit.cloned());
        self.write(move |conn| {
            // Deliveries and attempts go by ON DELETE CASCADE.
            delete_audited(conn, "webhooks", &organization_id, &id, audit.as_ref())
        })
        .await
    }

    async fn enabled_webhooks(&self) -> Result<Vec<Webhook>> {
        self.read_blocking(move |conn| {
            all(
                conn,
                &format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE enabled ORDER BY id"),
                [],
                |row| webhook_from(row),
            )
        })
        .await
    }

    async fn queue_webhook_deliveries(
        &self,
        deliveries: &[WebhookDelivery],
        consumer: &str,
        cursor: EventCursor,
        now: Millis,
    ) -> Result<()> {
        let (deliveries, consumer) = (deliveries.to_vec(), consumer.to_owned());
        // A look that queued nothing only moves the cursor (see `save_cursor`).
        let durability = if deliveries.is_empty() {
            Durability::Written
        } else {
            Durability::Synced
        };
        self.send_write(
            move |conn| {
                for delivery in &deliveries {
                    insert(
                        conn,
                        &format!(
                            "INSERT INTO webhook_deliveries ({DELIVERY_COLUMNS}) VALUES \
                         (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"
                        ),
                        params![
                            delivery.id,
                            delivery.organization_id,
                            delivery.webhook_id,
                            delivery.event_type,
                            delivery.event_seq,
                            delivery.payload,
                            delivery.status.as_str(),
                            delivery.attempts,
                            delivery.round_attempts,
                            delivery.next_attempt_at,
                            delivery.last_status_code,
                            delivery.last_error,
                            delivery.last_duration_ms,
                            delivery.last_attempt_at,
                            delivery.created_at
                        ],
                        "a webhook delivery with this id",
                    )?;
                }
                save_cursor_in(conn, &consumer, cursor, now)
            },
            durability,
        )
        .await
    }

    async fn due_webhook_deliveries(
        &self,
        now: Millis,
        limit: u32,
    ) -> Result<Vec<WebhookDelivery>> {
        self.read_blocking(move |conn| {
            all(
                conn,
                &format!(
                    "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries d \
                     WHERE d.status = 'pending' AND d.next_attempt_at <= ?1 \
                     AND EXISTS (SELECT 1 FROM webhooks w WHERE w.id = d.webhook_id AND w.enabled) \
                     ORDER BY d.next_attempt_at, d.id LIMIT ?2"
                ),
                params![now, limit],
                |row| delivery_from(row),
            )
        })
        .await
    }

    async fn claim_webhook_delivery(&self, id: &str, now: Millis, until: Millis) -> Result<bool> {
        let id = id.to_owned();
        self.write(move |conn| {
            let changed = change(
                conn,
                "UPDATE webhook_deliveries SET next_attempt_at = ?3 \
                 WHERE id = ?1 AND status = 'pending' AND next_attempt_at <= ?2",
                params![id, now, until],
            )?;
            Ok(changed == 1)
        })
        .await
    }

    async fn record_webhook_attempt(
        &self,
        attempt: &WebhookAttempt,
        outcome: &AttemptOutcome,
    ) -> Result<()> {
        let (attempt, outcome) = (attempt.clone(), outcome.clone());
        self.write(move |conn| {
            insert(
                conn,
                &format!("INSERT INTO webhook_attempts ({ATTEMPT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"),
                params![
                    attempt.delivery_id,
                    attempt.attempt,
                    attempt.at,
                    attempt.duration_ms,
                    attempt.status_code,
                    attempt.error,
                    attempt.response
                ],
                "this attempt",
            )?;
            let (status, next) = outcome_columns(&outcome);
            change(
                conn,
                "UPDATE webhook_deliveries SET status = ?2, next_attempt_at = ?3, \
                 attempts = attempts + 1, round_attempts = round_attempts + 1, \
                 last_status_code = ?4, last_error = ?5, last_duration_ms = ?6, last_attempt_at = ?7 \
                 WHERE id = ?1",
                params![
                    attempt.delivery_id,
                    status.as_str(),
                    next,
                    attempt.status_code,
                    attempt.error,
                    attempt.duration_ms,
                    attempt.at
                ],
            )?;
            if let AttemptOutcome::Gone { reason } = &outcome {
                let webhook_id: String = one(
                    conn,
                    "SELECT webhook_id FROM webhook_deliveries WHERE id = ?1",
                    [&attempt.delivery_id],
                    |row| crate::rows::RecordRow::text(row, "webhook_id"),
                )?
                .ok_or(Error::NotFound)?;
                change(
                    conn,
                    "UPDATE webhooks SET enabled = 0, disabled_reason = ?2, updated_at = ?3 WHERE id = ?1",
                    params![webhook_id, reason, attempt.at],
                )?;
                change(
                    conn,
                    "UPDATE webhook_deliveries SET status = ?2, next_attempt_at = NULL, last_error = ?3 \
                     WHERE webhook_id = ?1 AND status = 'pending'",
                    params![webhook_id, DeliveryStatus::Failed.as_str(), GONE_ERROR],
                )?;
            }
            Ok(())
        })
        .await
    }

    async fn list_webhook_deliveries(
        &self,
        organization_id: &str,
        webhook_id: &str,
        before: Option<&str>,
        limit: u32,
    ) -> Result<Vec<WebhookDelivery>> {
        let (organization_id, webhook_id) = (organization_id.to_owned(), webhook_id.to_owned());
        let before = before.map(str::to_owned);
        self.read_blocking(move |conn| {
            all(
                conn,
                &format!(
                    "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries \
                     WHERE organization_id = ?1 AND webhook_id = ?2 \
                     AND (?3 IS NULL OR (created_at, id) < \
                         (SELECT created_at, id FROM webhook_deliveries WHERE id = ?3)) \
                     ORDER BY created_at DESC, id DESC LIMIT ?4"
                ),
                params![organization_id, webhook_id, before, limit],
                |row| delivery_from(row),
            )
        })
        .await
    }

    async fn get_webhook_delivery(
        &self,
        organization_id: &str,
        webhook_id: &str,
        delivery_id: &str,
    ) -> Result<(WebhookDelivery, Vec<WebhookAttempt>)> {
        let ids = [organization_id, webhook_id, delivery_id].map(str::to_owned);
        self.read_blocking(move |conn| {
            let delivery = delivery_in(conn, &ids[0], &ids[1], &ids[2])?;
            let attempts = all(
                conn,
                &format!(
                    "SELECT {ATTEMPT_COLUMNS} FROM webhook_attempts WHERE delivery_id = ?1 \
                     ORDER BY attempt"
                ),
                [&delivery.id],
                |row| attempt_from(row),
            )?;
            Ok((delivery, attempts))
        })
        .await
    }

    async fn replay_webhook_delivery(
        &self,
        organization_id: &str,
        webhook_id: &str,
        delivery_id: &str,
        now: Millis,
        audit: Option<&AuditEntry>,
    ) -> Result<WebhookDelivery> {
        let ids = [organization_id, webhook_id, delivery_id].map(str::to_owned);
        let audit = audit.cloned();
        self.write(move |conn| {
            let changed = change(
                conn,
                "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = ?4, \
                 round_attempts = 0 \
                 WHERE organization_id = ?1 AND webhook_id = ?2 AND id = ?3",
                params![ids[0], ids[1], ids[2], now],
            )?;
            if changed == 0 {
                return Err(Error::NotFound);
            }
            insert_audit(conn, audit.as_ref())?;
            delivery_in(conn, &ids[0], &ids[1], &ids[2])
        })
        .await
    }

    async fn pending_webhook_deliveries(&self) -> Result<i64> {
        self.readers.with(|conn| {
            one(
                conn,
                "SELECT COUNT(*) AS pending FROM webhook_deliveries WHERE status = 'pending'",
                [],
                |row| crate::rows::RecordRow::int(row, "pending"),
            )
            .map(|count| count.unwrap_or(0))
        })
    }

    async fn webhooks_sealed_not_under(&self, key_id: &str, limit: usize) -> Result<Vec<Webhook>> {
        let under_key = format!("{}%", sealed_variable_prefix(key_id));
        self.read_blocking(move |conn| {
            all(
                conn,
                &format!(
                    "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE secret NOT LIKE ?1 \
                     OR (previous_secret IS NOT NULL AND previous_secret NOT LIKE ?1) \
                     ORDER BY id LIMIT ?2"
                ),
                params![under_key, limit as i64],
                |row| webhook_from(row),
            )
        })
        .await
    }

    async fn reseal_webhook_secrets(
        &self,
        old: &Webhook,
        secret: &str,
        previous_secret: Option<&str>,
    ) -> Result<bool> {
        let (old, secret, previous_secret) = (
            old.clone(),
            secret.to_owned(),
            previous_secret.map(str::to_owned),
        );
        self.write(move |conn| {
            Ok(change(
                conn,
                "UPDATE webhooks SET secret = ?2, previous_secret = ?3 \
                 WHERE id = ?1 AND secret = ?4 AND previous_secret IS ?5",
                params![
                    old.id,
                    secret,
                    previous_secret,
                    old.secret,
                    old.previous_secret
                ],
            )? == 1)
        })
        .await
    }
}
