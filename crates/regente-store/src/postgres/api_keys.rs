//! API keys on PostgreSQL.

use async_trait::async_trait;

use super::audit::insert_audit;
use super::{conflict_as, fetch_all, fetch_optional, other, PostgresStore};
use crate::api_keys::{ApiKey, ApiKeyStore};
use crate::rows::api_key_from;
use crate::{AuditEntry, Error, Millis, Result};

/// Every column but the hash, which no read answers.
const COLUMNS: &str = "id, organization_id, name, role, prefix, created_by, created_at, \
                       last_used_at, expires_at, revoked_at";

#[async_trait]
impl ApiKeyStore for PostgresStore {
    async fn create_api_key(
        &self,
        key: &ApiKey,
        key_hash: &str,
        audit: Option<&AuditEntry>,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(other)?;
        sqlx::query(
            "INSERT INTO api_keys (id, organization_id, name, role, prefix, key_hash, \
             created_by, created_at, last_used_at, expires_at, revoked_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(&key.id)
        .bind(&key.organization_id)
        .bind(&key.name)
        .bind(key.role.as_str())
        .bind(&key.prefix)
        .bind(key_hash)
        .bind(&key.created_by)
        .bind(key.created_at)
        .bind(key.last_used_at)
        .bind(key.expires_at)
        .bind(key.revoked_at)
        .execute(&mut *tx)
        .await
        .map_err(conflict_as("an API key with this name"))?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(other)
    }

    async fn list_api_keys(&self, organization_id: &str) -> Result<Vec<ApiKey>> {
        fetch_all(
            &self.pool,
            &format!(
                "SELECT {COLUMNS} FROM api_keys WHERE organization_id = $1 ORDER BY created_at, id"
            ),
            &[organization_id],
            api_key_from,
        )
        .await
    }

    async fn get_api_key(&self, organization_id: &str, id: &str) -> Result<ApiKey> {
        fetch_optional(
            &self.pool,
            &format!("SELECT {COLUMNS} FROM api_keys WHERE organization_id = $1 AND id = $2"),
            &[organization_id, id],
            api_key_from,
        )
        .await?
        .ok_or(Error::NotFound)
    }

    async fn find_api_key_by_hash(&self, key_hash: &str) -> Result<Option<ApiKey>> {
        fetch_optional(
            &self.pool,
            &format!("SELECT {COLUMNS} FROM api_keys WHERE key_hash = $1"),
            &[key_hash],
            api_key_from,
        )
        .await
    }

    async fn revoke_api_key(
        &self,
        organization_id: &str,
        id: &str,
        at: Millis,
        audit: Option<&AuditEntry>,
    ) -> Result<ApiKey> {
        let mut tx = self.pool.begin().await.map_err(other)?;
        let revoked = sqlx::query(&format!(
            "UPDATE api_keys SET revoked_at = $3 \
             WHERE organization_id = $1 AND id = $2 AND revoked_at IS NULL RETURNING {COLUMNS}"
        ))
        .bind(organization_id)
        .bind(id)
        .bind(at)
        .fetch_optional(&mut *tx)
        .await
        .map_err(other)?;
        if let Some(row) = revoked {
            insert_audit(&mut tx, audit).await?;
            tx.commit().await.map_err(other)?;
            return api_key_from(&row);
        }
        // Revoked before (it keeps its time), or no such key.
        drop(tx);
        self.get_api_key(organization_id, id).await
    }

    async fn touch_api_key(&self, id: &str, at: Millis, since: Millis) -> Result<()> {
        sqlx::query(
            "UPDATE api_keys SET last_used_at = $2 \
             WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < $3)",
        )
        .bind(id)
        .bind(at)
        .bind(since)
        .execute(&self.pool)
        .await
        .map_err(other)?;
        Ok(())
    }
}
