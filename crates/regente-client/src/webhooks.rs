//! The organisation's webhooks (admins only): create one (its secret answered
//! this once), list, read, change, delete, rotate the secret; deliveries and
//! replays.

use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::{Client, Result};

/// A webhook as the admin API answers it: never its secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Webhook {
    pub id: String,
    pub url: String,
    pub events: Vec<String>,
    #[serde(default)]
    pub description: Option<String>,
    pub enabled: bool,
    #[serde(default)]
    pub disabled_reason: Option<String>,
    #[serde(default)]
    pub previous_secret_until: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A webhook just created or given a new secret, with the secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WebhookWithSecret {
    /// `whsec_...`: shown this once.
    pub secret: String,
    #[serde(flatten)]
    pub webhook: Webhook,
}

/// A delivery as listed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Delivery {
    pub id: String,
    pub webhook_id: String,
    pub event_type: String,
    pub event_seq: i64,
    /// pending, succeeded or failed.
    pub status: String,
    pub attempts: i64,
    #[serde(default)]
    pub last_status_code: Option<i64>,
    #[serde(default)]
    pub last_error: Option<String>,
    #[serde(default)]
    pub last_duration_ms: Option<i64>,
    #[serde(default)]
    pub last_attempt_at: Option<i64>,
    #[serde(default)]
    pub next_attempt_at: Option<i64>,
    pub created_at: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeliveryPage {
    pub deliveries: Vec<Delivery>,
    #[serde(default)]
    pub next_cursor: Option<String>,
}

/// What `update_webhook` changes; `None` keeps a field.
#[derive(Debug, Default)]
pub struct WebhookUpdate<'a> {
    pub url: Option<&'a str>,
    pub events: Option<Vec<String>>,
    pub enabled: Option<bool>,
    pub description: Option<&'a str>,
}

impl Client {
    pub async fn webhooks(&self) -> Result<Vec<Webhook>> {
        self.call(Method::GET, "/api/admin/webhooks", |r| r).await
    }

    pub async fn webhook(&self, id: &str) -> Result<Webhook> {
        self.call(Method::GET, &format!("/api/admin/webhooks/{id}"), |r| r)
            .await
    }

    pub async fn create_webhook(
        &self,
        url: &str,
        events: &[String],
        description: Option<&str>,
    ) -> Result<WebhookWithSecret> {
        let body = json!({"url": url, "events": events, "description": description});
        self.call(Method::POST, "/api/admin/webhooks", |r| r.json(&body))
            .await
    }

    pub async fn update_webhook(&self, id: &str, update: WebhookUpdate<'_>) -> Result<Webhook> {
        let mut body = Map::new();
        if let Some(url) = update.url {
            body.insert("url".into(), json!(url));
        }
        if let Some(events) = update.events {
            body.insert("events".into(), json!(events));
        }
        if let Some(enabled) = update.enabled {
            body.insert("enabled".into(), json!(enabled));
        }
        if let Some(description) = update.description {
            body.insert("description".into(), json!(description));
        }
        let body = Value::Object(body);
        self.call(Method::PATCH, &format!("/api/admin/webhooks/{id}"), |r| {
            r.json(&body)
        })
        .await
    }

    pub async fn delete_webhook(&self, id: &str) -> Result<()> {
        let _: Value = self
            .call(Method::DELETE, &format!("/api/admin/webhooks/{id}"), |r| r)
            .await?;
        Ok(())
    }

    pub async fn rotate_webhook_secret(&self, id: &str) -> Result<WebhookWithSecret> {
        let path = format!("/api/admin/webhooks/{id}/rotate-secret");
        self.call(Method::POST, &path, |r| r).await
    }

    /// A page of a webhook's deliveries, newest first.
    pub async fn webhook_deliveries(
        &self,
        id: &str,
        cursor: Option<&str>,
        limit: Option<u32>,
    ) -> Result<DeliveryPage> {
        let mut query: Vec<(&str, String)> = Vec::new();
        if let Some(cursor) = cursor {
            query.push(("cursor", cursor.to_owned()));
        }
        if let Some(limit) = limit {
            query.push(("limit", limit.to_string()));
        }
        let path = format!("/api/admin/webhooks/{id}/deliveries");
        self.call(Method::GET, &path, |r| r.query(&query)).await
    }

    /// Queues a delivery again now, with the same `webhook-id`.
    pub async fn replay_webhook_delivery(&self, id: &str, delivery: &str) -> Result<Delivery> {
        let path = format!("/api/admin/webhooks/{id}/deliveries/{delivery}/replay");
        self.call(Method::POST, &path, |r| r).await
    }
}
