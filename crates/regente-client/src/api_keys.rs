//! The organisation's API keys (admins only): create one (the key is answered
//! this once), list them, revoke one.

use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::{is_id, one_named, Client, Result};

/// A key as the admin API lists it: never the key itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiKey {
    pub id: String,
    pub name: String,
    /// `admin` or `integration`.
    pub role: String,
    /// The key's first characters after `rgk_`.
    pub prefix: String,
    pub created_at: i64,
    pub created_by: String,
    #[serde(default)]
    pub last_used_at: Option<i64>,
    pub expires_at: Option<i64>,
    #[serde(default)]
    pub revoked_at: Option<i64>,
}

/// A key just created, with the key itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewApiKey {
    /// `rgk_...`: shown this once; send it as `Authorization: Bearer KEY`.
    pub key: String,
    #[serde(flatten)]
    pub api_key: ApiKey,
}

impl Client {
    /// The organisation's keys, revoked ones included, oldest first.
    pub async fn api_keys(&self) -> Result<Vec<ApiKey>> {
        self.call(Method::GET, "/api/admin/api-keys", |r| r).await
    }

    /// Creates a key with `role`; `expires_at` is epoch milliseconds or
    /// ISO-8601 with an offset, `None` for a key that does not expire.
    pub async fn create_api_key(
        &self,
        name: &str,
        role: &str,
        expires_at: Option<&str>,
    ) -> Result<NewApiKey> {
        let expires_at = expires_at.map(|at| match at.parse::<i64>() {
            Ok(millis) => json!(millis),
            Err(_) => json!(at),
        });
        let body = json!({"name": name, "role": role, "expires_at": expires_at});
        self.call(Method::POST, "/api/admin/api-keys", |r| r.json(&body))
            .await
    }

    /// Revokes a key: refused by the servers from now on.
    pub async fn revoke_api_key(&self, id: &str) -> Result<()> {
        let path = format!("/api/admin/api-keys/{id}");
        let _: Value = self.call(Method::DELETE, &path, |r| r).await?;
        Ok(())
    }

    /// The key named `name_or_id` (an id, or the name of a key not revoked).
    pub async fn find_api_key(&self, name_or_id: &str) -> Result<String> {
        if is_id(name_or_id) {
            return Ok(name_or_id.to_owned());
        }
        let keys = self.api_keys().await?;
        one_named(
            "API key not revoked",
            name_or_id,
            keys.iter()
                .filter(|k| k.revoked_at.is_none())
                .map(|k| (&k.name, &k.id)),
        )
    }
}
