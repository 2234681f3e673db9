//! The credentials vault's side of the store: credentials (a name, the robots
//! allowed, who changed them), their values sealed by the server, and the master
//! keys' check values. The store never sees a value in clear nor a key: it keeps
//! what the server sealed, and the key id each ciphertext was sealed under.

use async_trait::async_trait;
use serde_json::Value;

use crate::{AuditEntry, Millis, Result};

/// A credential as listed: its fields' names, never their values.
#[derive(Debug, Clone, PartialEq)]
pub struct Credential {
    pub id: String,
    pub organization_id: String,
    pub name: String,
    pub description: Option<String>,
    /// The robot ids allowed; `None`: every robot of the organisation.
    pub robots: Option<Vec<String>>,
    /// Moves on every replacement of the values.
    pub version: u32,
    /// Sorted.
    pub fields: Vec<String>,
    pub created_by: String,
    pub created_at: Millis,
    pub updated_by: String,
    pub updated_at: Millis,
}

/// One value as the server sealed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedValue {
    pub field: String,
    /// Which master key sealed it (an id derived from the key, never the key).
    pub key_id: String,
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

/// A credential to create (version 1) or whose values to replace (the next
/// version), with every value sealed for that version.
#[derive(Debug, Clone)]
pub struct CredentialWrite {
    pub id: String,
    pub organization_id: String,
    pub name: String,
    pub description: Option<String>,
    pub robots: Option<Vec<String>>,
    pub version: u32,
    pub values: Vec<SealedValue>,
    /// Who writes it, and when.
    pub by: String,
    pub at: Millis,
}

/// A credential with its sealed values, all of its current version.
#[derive(Debug, Clone, PartialEq)]
pub struct SealedCredential {
    pub credential: Credential,
    pub values: Vec<SealedValue>,
}

/// A sealed value as a key rotation reads it: where it belongs, what binds it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredValue {
    pub credential_id: String,
    pub organization_id: String,
    pub version: u32,
    pub value: SealedValue,
}

/// An execution whose variables hold sealed secrets (`{"$secret": "..."}`).
#[derive(Debug, Clone, PartialEq)]
pub struct SealedVariables {
    pub execution_id: String,
    pub organization_id: String,
    pub variables: Value,
    /// The variables' text as stored, which a reseal must still find.
    pub stored_text: String,
}

/// A master key's check: a known text sealed under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultKey {
    pub key_id: String,
    pub check_value: Vec<u8>,
    pub created_at: Millis,
}

/// The text a sealed secret variable starts with, so that the store can find the
/// executions holding secrets (see [`CredentialStore::sealed_variables_not_under`]).
pub const SEALED_VARIABLE_MARK: &str = "\"$secret\":\"";

#[async_trait]
pub trait CredentialStore: Send + Sync {
    /// Stores a new credential (its `version` is 1); a name taken in the
    /// organisation is a [`crate::Error::Conflict`]. Each change takes `audit`,
    /// written in its transaction only if the change is (see [`crate::audit`]).
    async fn create_credential(
        &self,
        new: &CredentialWrite,
        audit: Option<&AuditEntry>,
    ) -> Result<()>;
    /// Replaces a credential's values (and description and robots) with those of
    /// `write.version`, only if the stored version is still `write.version - 1`:
    /// a [`crate::Error::Conflict`] otherwise; NotFound when it does not exist.
    async fn replace_credential(
        &self,
        write: &CredentialWrite,
        audit: Option<&AuditEntry>,
    ) -> Result<()>;
    async fn delete_credential(
        &self,
        organization_id: &str,
        id: &str,
        audit: Option<&AuditEntry>,
    ) -> Result<()>;
    async fn get_credential(&self, organization_id: &str, id: &str) -> Result<Credential>;
    async fn list_credentials(&self, organization_id: &str) -> Result<Vec<Credential>>;
    /// A credential by name with its sealed values, read together.
    async fn sealed_credential(
        &self,
        organization_id: &str,
        name: &str,
    ) -> Result<SealedCredential>;

    /// The master keys' checks, oldest first.
    async fn vault_keys(&self) -> Result<Vec<VaultKey>>;
    /// Records a key's check unless one for that key id exists.
    async fn add_vault_key(&self, key: &VaultKey) -> Result<()>;
    async fn remove_vault_key(&self, key_id: &str) -> Result<()>;
    /// Whether anything sealed is stored: a credential's value, or an execution's
    /// secret variable.
    async fn vault_holds_values(&self) -> Result<bool>;

    /// Up to `limit` credential values sealed under another key than `key_id`.
    async fn values_not_under(&self, key_id: &str, limit: usize) -> Result<Vec<StoredValue>>;
    /// Writes values sealed again, each only if the stored one is still the
    /// `old` one (same version and key): the number written.
    async fn reseal_values(&self, changes: &[(StoredValue, SealedValue)]) -> Result<usize>;
    /// Up to `limit` executions with secret variables sealed under another key
    /// than `key_id` (every secret of an execution is sealed under one key).
    async fn sealed_variables_not_under(
        &self,
        key_id: &str,
        limit: usize,
    ) -> Result<Vec<SealedVariables>>;
    /// Replaces an execution's variables with `new` only if they are still
    /// `old.variables`: whether it was written.
    async fn reseal_variables(&self, old: &SealedVariables, new: &Value) -> Result<bool>;
}

/// The text of a sealed secret variable under `key_id` starts with this, after
/// [`SEALED_VARIABLE_MARK`].
pub fn sealed_variable_prefix(key_id: &str) -> String {
    format!("v1.{key_id}.")
}
