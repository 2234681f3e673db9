//! Webhooks, their deliveries and attempts on PostgreSQL.

use async_trait::async_trait;
use sqlx::{PgConnection, Row};

use super::audit::{audit_one, delete_audited, insert_audit};
use super::events::save_cursor_in;
use super::{
    conflict_as, fetch_all, fetch_optional, other, unsynced_commit, PgQuery, PostgresStore,
};
use crate::credentials::sealed_variable_prefix;
use crate::webhooks::{
    attempt_from, delivery_from, events_text, outcome_columns, webhook_from, AttemptOutcome,
    DeliveryStatus, Webhook, WebhookAttempt, WebhookDelivery, WebhookStore, ATTEMPT_COLUMNS,
    DELIVERY_COLUMNS, GONE_ERROR, WEBHOOK_COLUMNS,
};
use crate::{AuditEntry, Error, EventCursor, Millis, Result};

/// `query` with the webhook's columns from `id` to `previous_secret_until`
/// bound as `$1` to `$10`, in [`WEBHOOK_COLUMNS`]' order; its times are the
/// caller's to bind.
fn bind_webhook<'q>(query: PgQuery<'q>, webhook: &'q Webhook) -> PgQuery<'q> {
    query
        .bind(&webhook.id)
        .bind(&webhook.organization_id)
        .bind(&webhook.url)
        .bind(events_text(webhook))
        .bind(&webhook.description)
        .bind(webhook.enabled)
        .bind(&webhook.disabled_reason)
        .bind(&webhook.secret)
        .bind(&webhook.previous_secret)
        .bind(webhook.previous_secret_until)
}

async fn insert_delivery(conn: &mut PgConnection, delivery: &WebhookDelivery) -> Result<()> {
    sqlx::query(&format!(
        "INSERT INTO webhook_deliveries ({DELIVERY_COLUMNS}) VALUES \
         ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
    ))
    .bind(&delivery.id)
    .bind(&delivery.organization_id)
    .bind(&delivery.webhook_id)
    .bind(&delivery.event_type)
    .bind(delivery.event_seq)
    .bind(&delivery.payload)
    .bind(delivery.status.as_str())
    .bind(delivery.attempts)
    .bind(delivery.round_attempts)
    .bind(delivery.next_attempt_at)
    .bind(delivery.last_status_code)
    .bind(&delivery.last_error)
    .bind(delivery.last_duration_ms)
    .bind(delivery.last_attempt_at)
    .bind(delivery.created_at)
    .execute(conn)
    .await
    .map_err(conflict_as("a webhook delivery with this id"))?;
    Ok(())
}

#[async_trait]
impl WebhookStore for PostgresStore {
    async fn create_webhook(&self, webhook: &Webhook, audit: Option<&AuditEntry>) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(other)?;
        let sql = format!(
            "INSERT INTO webhooks ({WEBHOOK_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
        );
        bind_webhook(sqlx::query(&sql), webhook)
            .bind(webhook.created_at)
            .bind(webhook.updated_at)
            .execute(&mut *tx)
            .await
            .map_err(conflict_as("a webhook with this id"))?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(other)
    }

    async fn list_webhooks(&self, organization_id: &str) -> Result<Vec<Webhook>> {
        fetch_all(
            &self.pool,
            &format!(
                "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE organization_id = $1 \
                 ORDER BY created_at, id"
            ),
            &[organization_id],
            webhook_from,
        )
        .await
    }

    async fn get_webhook(&self, organization_id: &str, id: &str) -> Result<Webhook> {
        fetch_optional(
            &self.pool,
            &format!(
                "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE organization_id = $1 AND id = $2"
            ),
            &[organization_id, id],
            webhook_from,
        )
        .await?
        .ok_or(Error::NotFound)
    }

    async fn update_webhook(&self, webhook: &Webhook, audit: Option<&AuditEntry>) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(other)?;
        let query = sqlx::query(
            "UPDATE webhooks SET url = $3, events = $4, description = $5, enabled = $6, \
             disabled_reason = $7, secret = $8, previous_secret = $9, \
             previous_secret_until = $10, updated_at = $11 \
             WHERE id = $1 AND organization_id = $2",
        );
        let done = bind_webhook(query, webhook)
            .bind(webhook.updated_at)
            .execute(&mut *tx)
            .await
            .map_err(other)?;
        audit_one(&mut tx, done, audit).await?;
        tx.commit().await.map_err(other)
    }

    async fn delete_webhook(
        &self,
        organization_id: &str,
        id: &str,
        audit: Option<&AuditEntry>,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(other)?;
        // Deliveries and attempts go by ON DELETE CASCADE.
        delete_audited(&mut tx, "webhooks", organization_id, id, audit).await?;
        tx.commit().await.map_err(other)
    }

    async fn enabled_webhooks(&self) -> Result<Vec<Webhook>> {
        fetch_all(
            &self.pool,
            &format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE enabled ORDER BY id"),
            super::NO_ARGS,
            webhook_from,
        )
        .await
    }

    async fn queue_webhook_deliveries(
        &self,
        deliveries: &[WebhookDelivery],
        consumer: &str,
        cursor: EventCursor,
        now: Millis,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(other)?;
        if deliveries.is_empty() {
            // Only the cursor moves (see `save_cursor`).
            unsynced_commit(&mut tx).await?;
        }
        for delivery in deliveries {
            insert_delivery(&mut tx, delivery).await?;
        }
        save_cursor_in(&mut tx, consumer, cursor, now).await?;
        tx.commit().await.map_err(other)
    }

    async fn due_webhook_deliveries(
        &self,
        now: Millis,
        limit: u32,
    ) -> Result<Vec<WebhookDelivery>> {
        let rows = sqlx::query(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries d \
             WHERE d.status = 'pending' AND d.next_attempt_at <= $1 \
             AND EXISTS (SELECT 1 FROM webhooks w WHERE w.id = d.webhook_id AND w.enabled) \
             ORDER BY d.next_attempt_at, d.id LIMIT $2"
        ))
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(other)?;
        rows.iter().map(delivery_from).collect()
    }

    async fn claim_webhook_delivery(&self, id: &str, now: Millis, until: Millis) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE webhook_deliveries SET next_attempt_at = $3 \
             WHERE id = $1 AND status = 'pending' AND next_attempt_at <= $2",
        )
        .bind(id)
        .bind(now)
        .bind(until)
        .execute(&self.pool)
        .await
        .map_err(other)?;
        Ok(done.rows_affected() == 1)
    }

    async fn record_webhook_attempt(
        &self,
        attempt: &WebhookAttempt,
        outcome: &AttemptOutcome,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(other)?;
        sqlx::query(&format!(
            "INSERT INTO webhook_attempts ({ATTEMPT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
        ))
        .bind(&attempt.delivery_id)
        .bind(attempt.attempt)
        .bind(attempt.at)
        .bind(attempt.duration_ms)
        .bind(attempt.status_code)
        .bind(&attempt.error)
        .bind(&attempt.response)
        .execute(&mut *tx)
        .await
        .map_err(conflict_as("this attempt"))?;
        let (status, next) = outcome_columns(outcome);
        let row = sqlx::query(
            "UPDATE webhook_deliveries SET status = $2, next_attempt_at = $3, \
             attempts = attempts + 1, round_attempts = round_attempts + 1, \
             last_status_code = $4, last_error = $5, last_duration_ms = $6, last_attempt_at = $7 \
             WHERE id = $1 RETURNING webhook_id",
        )
        .bind(&attempt.delivery_id)
        .bind(status.as_str())
        .bind(next)
        .bind(attempt.status_code)
        .bind(&attempt.error)
        .bind(attempt.duration_ms)
        .bind(attempt.at)
        .fetch_optional(&mut *tx)
        .await
        .map_err(other)?
        .ok_or(Error::NotFound)?;
        if let AttemptOutcome::Gone { reason } = outcome {
            let webhook_id: String = row.try_get("webhook_id").map_err(other)?;
            sqlx::query(
                "UPDATE webhooks SET enabled = FALSE, disabled_reason = $2, updated_at = $3 WHERE id = $1",
            )
            .bind(&webhook_id)
            .bind(reason)
            .bind(attempt.at)
            .execute(&mut *tx)
            .await
            .map_err(other)?;
            sqlx::query(
                "UPDATE webhook_deliveries SET status = $2, next_attempt_at = NULL, last_error = $3 \
                 WHERE webhook_id = $1 AND status = 'pending'",
            )
            .bind(&webhook_id)
            .bind(DeliveryStatus::Failed.as_str())
            .bind(GONE_ERROR)
            .execute(&mut *tx)
            .await
            .map_err(other)?;
        }
        tx.commit().await.map_err(other)
    }

    async fn list_webhook_deliveries(
        &self,
        organization_id: &str,
        webhook_id: &str,
        before: Option<&str>,
        limit: u32,
    ) -> Result<Vec<WebhookDelivery>> {
        let rows = sqlx::query(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries \
             WHERE organization_id = $1 AND webhook_id = $2 \
             AND ($3::TEXT IS NULL OR (created_at, id) < \
                 (SELECT created_at, id FROM webhook_deliveries WHERE id = $3)) \
             ORDER BY created_at DESC, id DESC LIMIT $4"
        ))
        .bind(organization_id)
        .bind(webhook_id)
        .bind(before)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(other)?;
        rows.iter().map(delivery_from).collect()
    }

    async fn get_webhook_delivery(
        &self,
        organization_id: &str,
        webhook_id: &str,
        delivery_id: &str,
    ) -> Result<(WebhookDelivery, Vec<WebhookAttempt>)> {
        let delivery = fetch_optional(
            &self.pool,
            &format!(
                "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries \
                 WHERE organization_id = $1 AND webhook_id = $2 AND id = $3"
            ),
            &[organization_id, webhook_id, delivery_id],
            delivery_from,
        )
        .await?
        .ok_or(Error::NotFound)?;
        let attempts = fetch_all(
            &self.pool,
            &format!(
                "SELECT {ATTEMPT_COLUMNS} FROM webhook_attempts WHERE delivery_id = $1 ORDER BY attempt"
            ),
            &[delivery.id.as_str()],
            attempt_from,
        )
        .await?;
        Ok((delivery, attempts))
    }

    async fn replay_webhook_delivery(
        &self,
        organization_id: &str,
        webhook_id: &str,
        delivery_id: &str,
        now: Millis,
        audit: Option<&AuditEntry>,
    ) -> Result<WebhookDelivery> {
        let mut tx = self.pool.begin().await.map_err(other)?;
        let row = sqlx::query(&format!(
            "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = $4, \
             round_attempts = 0 \
             WHERE organization_id = $1 AND webhook_id = $2 AND id = $3 \
             RETURNING {DELIVERY_COLUMNS}"
        ))
        .bind(organization_id)
        .bind(webhook_id)
        .bind(delivery_id)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await
        .map_err(other)?;
        let replayed = row
            .as_ref()
            .map(delivery_from)
            .transpose()?
            .ok_or(Error::NotFound)?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(other)?;
        Ok(replayed)
    }

    async fn pending_webhook_deliveries(&self) -> Result<i64> {
        sqlx::query_scalar("SELECT COUNT(*) FROM webhook_deliveries WHERE status = 'pending'")
            .fetch_one(&self.pool)
            .await
            .map_err(other)
    }

    async fn webhooks_sealed_not_under(&self, key_id: &str, limit: usize) -> Result<Vec<Webhook>> {
        let under_key = format!("{}%", sealed_variable_prefix(key_id));
        let rows = sqlx::query(&format!(
            "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE secret NOT LIKE $1 \
             OR (previous_secret IS NOT NULL AND previous_secret NOT LIKE $1) \
             ORDER BY id LIMIT $2"
        ))
        .bind(under_key)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(other)?;
        rows.iter().map(webhook_from).collect()
    }

    async fn reseal_webhook_secrets(
        &self,
        old: &Webhook,
        secret: &str,
        previous_secret: Option<&str>,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE webhooks SET secret = $2, previous_secret = $3 \
             WHERE id = $1 AND secret = $4 AND previous_secret IS NOT DISTINCT FROM $5",
        )
        .bind(&old.id)
        .bind(secret)
        .bind(previous_secret)
        .bind(&old.secret)
        .bind(&old.previous_secret)
        .execute(&self.pool)
        .await
        .map_err(other)?;
        Ok(done.rows_affected() == 1)
    }
}
