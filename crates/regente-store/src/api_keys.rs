//! Organisation API keys: a name and a role in an organisation, found by the
//! key's hash. The store never sees a key, only its SHA-256 (chosen by the
//! server) and a short prefix shown to people.

use async_trait::async_trait;
use regente_core::Role;

use crate::{AuditEntry, Millis, Result};

/// An API key as listed: never the key nor its hash.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiKey {
    pub id: String,
    pub organization_id: String,
    /// Unique in the organisation among keys not revoked.
    pub name: String,
    pub role: Role,
    /// The key's first characters after `rgk_`, not a secret.
    pub prefix: String,
    /// Who created it (a user's id, or another key's).
    pub created_by: String,
    pub created_at: Millis,
    pub last_used_at: Option<Millis>,
    pub expires_at: Option<Millis>,
    pub revoked_at: Option<Millis>,
}

#[async_trait]
pub trait ApiKeyStore: Send + Sync {
    /// Stores a new key under its hash, with its audit record;
    /// [`Error::Conflict`](crate::Error) (and nothing written) when a key of the
    /// organisation not revoked has its name.
    async fn create_api_key(
        &self,
        key: &ApiKey,
        key_hash: &str,
        audit: Option<&AuditEntry>,
    ) -> Result<()>;
    /// The organisation's keys, revoked ones included, oldest first.
    async fn list_api_keys(&self, organization_id: &str) -> Result<Vec<ApiKey>>;
    async fn get_api_key(&self, organization_id: &str, id: &str) -> Result<ApiKey>;
    /// The key with this hash, whatever its organisation, revoked or expired
    /// (the caller decides); `None` for no key.
    async fn find_api_key_by_hash(&self, key_hash: &str) -> Result<Option<ApiKey>>;
    /// Revokes a key of the organisation at `at` and answers it; a key revoked
    /// before keeps its time, and `audit` is written only with a revoke made
    /// now. [`Error::NotFound`](crate::Error) for no such key.
    async fn revoke_api_key(
        &self,
        organization_id: &str,
        id: &str,
        at: Millis,
        audit: Option<&AuditEntry>,
    ) -> Result<ApiKey>;
    /// Records a use at `at`, only if the last one recorded is older than
    /// `since` (so that uses write at most once per interval).
    async fn touch_api_key(&self, id: &str, at: Millis, since: Millis) -> Result<()>;
}
