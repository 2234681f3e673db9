//! API keys on SQLite.

use async_trait::async_trait;
use rusqlite::params;

use super::audit::insert_audit;
use super::{all, change, insert, one, SqliteStore};
use crate::api_keys::{ApiKey, ApiKeyStore};
use crate::rows::api_key_from;
use crate::{AuditEntry, Error, Millis, Result};

/// Every column but the hash, which no read answers.
const COLUMNS: &str = "id, organization_id, name, role, prefix, created_by, created_at, \
                       last_used_at, expires_at, revoked_at";

#[async_trait]
impl ApiKeyStore for SqliteStore {
    async fn create_api_key(
        &self,
        key: &ApiKey,
        key_hash: &str,
        audit: Option<&AuditEntry>,
    ) -> Result<()> {
        let (key, key_hash, audit) = (key.clone(), key_hash.to_owned(), audit.cloned());
        self.write(move |conn| {
            insert(
                conn,
                "INSERT INTO api_keys (id, organization_id, name, role, prefix, key_hash, \
                 created_by, created_at, last_used_at, expires_at, revoked_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                params![
                    key.id,
                    key.organization_id,
                    key.name,
                    key.role.as_str(),
                    key.prefix,
                    key_hash,
                    key.created_by,
                    key.created_at,
                    key.last_used_at,
                    key.expires_at,
                    key.revoked_at
                ],
                "an API key with this name",
            )?;
            insert_audit(conn, audit.as_ref())
        })
        .await
    }

    async fn list_api_keys(&self, organization_id: &str) -> Result<Vec<ApiKey>> {
        let organization_id = organization_id.to_owned();
        self.read_blocking(move |conn| {
            all(
                conn,
                &format!(
                    "SELECT {COLUMNS} FROM api_keys WHERE organization_id = ?1 \
                     ORDER BY created_at, id"
                ),
                [organization_id],
                |row| api_key_from(row),
            )
        })
        .await
    }

    async fn get_api_key(&self, organization_id: &str, id: &str) -> Result<ApiKey> {
        self.readers
            .with(|conn| {
                one(
                    conn,
                    &format!(
                        "SELECT {COLUMNS} FROM api_keys WHERE organization_id = ?1 AND id = ?2"
                    ),
                    [organization_id, id],
                    |row| api_key_from(row),
                )
            })?
            .ok_or(Error::NotFound)
    }

    async fn find_api_key_by_hash(&self, key_hash: &str) -> Result<Option<ApiKey>> {
        self.readers.with(|conn| {
            one(
                conn,
                &format!("SELECT {COLUMNS} FROM api_keys WHERE key_hash = ?1"),
                [key_hash],
                |row| api_key_from(row),
            )
        })
    }

    async fn revoke_api_key(
        &self,
        organization_id: &str,
        id: &str,
        at: Millis,
        audit: Option<&AuditEntry>,
    ) -> Result<ApiKey> {
        let (organization_id, id, audit) =
            (organization_id.to_owned(), id.to_owned(), audit.cloned());
        self.write(move |conn| {
            let revoked = change(
                conn,
                "UPDATE api_keys SET revoked_at = ?3 \
                 WHERE organization_id = ?1 AND id = ?2 AND revoked_at IS NULL",
                params![organization_id, id, at],
            )?;
            if revoked == 1 {
                insert_audit(conn, audit.as_ref())?;
            }
            one(
                conn,
                &format!("SELECT {COLUMNS} FROM api_keys WHERE organization_id = ?1 AND id = ?2"),
                params![organization_id, id],
                |row| api_key_from(row),
            )?
            .ok_or(Error::NotFound)
        })
        .await
    }

    async fn touch_api_key(&self, id: &str, at: Millis, since: Millis) -> Result<()> {
        let id = id.to_owned();
        self.write(move |conn| {
            change(
                conn,
                "UPDATE api_keys SET last_used_at = ?2 \
                 WHERE id = ?1 AND (last_used_at IS NULL OR last_used_at < ?3)",
                params![id, at, since],
            )
            .map(drop)
        })
        .await
    }
}
