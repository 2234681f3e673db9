//! The credentials vault's keys: the master key (and, during a rotation, the
//! previous one), where they come from, the check made at start, and sealing and
//! opening the values the store keeps.
//!
//! - [`seal`]: XChaCha20-Poly1305 with associated data, key ids.
//! - [`keys`]: the key sources (`REGENTE_MASTER_KEY` and
//!   `REGENTE_MASTER_KEY_PREVIOUS`, else the data dir's `master-key` file) and
//!   the key file's format.
//! - [`rotate`]: `regente vault rotate-key`, every value sealed again under a
//!   new key, in batches, while servers run.
//! - Here: [`Vault`], what the rest of the server seals and opens through.

pub mod keys;
pub mod rotate;
pub mod seal;

use std::sync::RwLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as BASE64;
use base64::Engine as _;
use regente_store::credentials::{sealed_variable_prefix, SealedValue, VaultKey};
use regente_store::Store;
use serde_json::{json, Value};
use tracing::{info, warn};

use keys::KeySource;
pub use seal::MasterKey;

/// What a master key's check seals: opening it proves the key is the one the
/// vault's values were sealed under.
const CHECK_TEXT: &[u8] = b"regente vault key check";

/// The keys a server seals with (the current one) and opens with (any of them,
/// found by the key id stored beside each ciphertext).
#[derive(Debug, Clone)]
pub struct Keyring {
    pub current: MasterKey,
    pub previous: Vec<MasterKey>,
}

impl Keyring {
    fn find(&self, key_id: &str) -> Option<&MasterKey> {
        std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|key| key.id() == key_id)
    }

    fn ids(&self) -> Vec<&str> {
        std::iter::once(&self.current)
            .chain(&self.previous)
            .map(MasterKey::id)
            .collect()
    }
}

/// Why a value cannot be sealed or opened.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error(
        "the vault has no master key: set REGENTE_MASTER_KEY to the same 32 random bytes in \
         base64 on every server (e.g. `openssl rand -base64 32`) and restart"
    )]
    Off,
    #[error("a value is sealed under master key {0}, which this server does not have")]
    UnknownKey(String),
    #[error("a value does not open under master key {0}: it was changed or moved")]
    DoesNotOpen(String),
    #[error(transparent)]
    Keys(#[from] anyhow::Error),
}

/// The server's vault: its keyring (none when the vault is off) and where the
/// keys come from, read again when a value sealed under an unknown key turns up
/// or before sealing (a rotation through the key file changes the current key).
pub struct Vault {
    source: Option<KeySource>,
    keyring: RwLock<Option<Keyring>>,
}

impl Vault {
    /// A vault without keys: every seal and open fails with [`VaultError::Off`].
    pub fn off() -> Vault {
        Vault {
            source: None,
            keyring: RwLock::new(None),
        }
    }

    pub fn with_keys(source: KeySource, keyring: Keyring) -> Vault {
        Vault {
            source: Some(source),
            keyring: RwLock::new(Some(keyring)),
        }
    }

    pub fn is_on(&self) -> bool {
        self.keyring.read().expect("vault lock").is_some()
    }

    /// Reads the keys again from a key file (a no-op for keys from the
    /// environment, which change only with a restart).
    fn refresh(&self) -> Result<(), VaultError> {
        if let Some(source) = &self.source {
            if let Some(keyring) = source.reread()? {
                *self.keyring.write().expect("vault lock") = Some(keyring);
            }
        }
        Ok(())
    }

    fn current(&self) -> Result<MasterKey, VaultError> {
        self.refresh()?;
        self.keyring
            .read()
            .expect("vault lock")
            .as_ref()
            .map(|keyring| keyring.current.clone())
            .ok_or(VaultError::Off)
    }

    fn key(&self, key_id: &str) -> Result<MasterKey, VaultError> {
        let found = |vault: &Vault| -> Result<Option<MasterKey>, VaultError> {
            let keyring = vault.keyring.read().expect("vault lock");
            let keyring = keyring.as_ref().ok_or(VaultError::Off)?;
            Ok(keyring.find(key_id).cloned())
        };
        if let Some(key) = found(self)? {
            return Ok(key);
        }
        self.refresh()?;
        found(self)?.ok_or_else(|| VaultError::UnknownKey(key_id.to_owned()))
    }

    /// Seals one field of a credential's version.
    pub fn seal_field(
        &self,
        organization_id: &str,
        credential_id: &str,
        version: u32,
        field: &str,
        value: &str,
    ) -> Result<SealedValue, VaultError> {
        let key = self.current()?;
        let context = field_context(organization_id, credential_id, version, field);
        let (nonce, ciphertext) = key.seal(&context.each(), value.as_bytes());
        Ok(SealedValue {
            field: field.to_owned(),
            key_id: key.id().to_owned(),
            nonce,
            ciphertext,
        })
    }

    /// Opens one field of a credential's version.
    pub fn open_field(
        &self,
        organization_id: &str,
        credential_id: &str,
        version: u32,
        sealed: &SealedValue,
    ) -> Result<String, VaultError> {
        let key = self.key(&sealed.key_id)?;
        open_field_with(&key, organization_id, credential_id, version, sealed)
    }

    /// A secret variable's value sealed for the store: `{"$secret": "v1.KEY.NONCE.CIPHERTEXT"}`.
    pub fn seal_variable(
        &self,
        organization_id: &str,
        name: &str,
        value: &Value,
    ) -> Result<Value, VaultError> {
        let key = self.current()?;
        Ok(seal_variable_with(&key, organization_id, name, value))
    }

    /// Opens what [`Vault::seal_variable`] sealed.
    pub fn open_variable(
        &self,
        organization_id: &str,
        name: &str,
        sealed: &Value,
    ) -> Result<Value, VaultError> {
        let (key_id, _, _) = parse_sealed_variable(sealed)
            .ok_or_else(|| VaultError::DoesNotOpen("(none: not a sealed value)".into()))?;
        let key = self.key(key_id)?;
        open_variable_with(&key, organization_id, name, sealed)
    }
}

impl Vault {
    /// Seals a webhook's signing secret for the store (`v1.KEY.NONCE.CIPHERTEXT`),
    /// bound to its organisation and webhook.
    pub fn seal_webhook_secret(
        &self,
        organization_id: &str,
        webhook_id: &str,
        secret: &str,
    ) -> Result<String, VaultError> {
        let key = self.current()?;
        Ok(seal_webhook_secret_with(
            &key,
            organization_id,
            webhook_id,
            secret,
        ))
    }

    /// Opens what [`Vault::seal_webhook_secret`] sealed.
    pub fn open_webhook_secret(
        &self,
        organization_id: &str,
        webhook_id: &str,
        sealed: &str,
    ) -> Result<String, VaultError> {
        let key_id = sealed
            .strip_prefix("v1.")
            .and_then(|rest| rest.split('.').next())
            .ok_or_else(|| VaultError::DoesNotOpen("(none: not a sealed value)".into()))?;
        let key = self.key(key_id)?;
        open_webhook_secret_with(&key, organization_id, webhook_id, sealed)
    }
}

pub(crate) fn seal_webhook_secret_with(
    key: &MasterKey,
    organization_id: &str,
    webhook_id: &str,
    secret: &str,
) -> String {
    let sealed = seal_variable_with(
        key,
        organization_id,
        &webhook_name(webhook_id),
        &Value::from(secret),
    );
    sealed["$secret"].as_str().unwrap_or_default().to_owned()
}

pub(crate) fn open_webhook_secret_with(
    key: &MasterKey,
    organization_id: &str,
    webhook_id: &str,
    sealed: &str,
) -> Result<String, VaultError> {
    let sealed = json!({ "$secret": sealed });
    let opened = open_variable_with(key, organization_id, &webhook_name(webhook_id), &sealed)?;
    opened
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| VaultError::DoesNotOpen(key.id().to_owned()))
}

/// What a webhook's secret is bound to: a name no variable can have (variable
/// names have no spaces), so a sealed variable never opens as a secret nor the
/// other way round.
fn webhook_name(webhook_id: &str) -> String {
    format!("webhook secret {webhook_id}")
}

/// What a credential field's ciphertext is bound to.
struct FieldContext<'a> {
    organization_id: &'a str,
    credential_id: &'a str,
    version: String,
    field: &'a str,
}

impl FieldContext<'_> {
    fn each(&self) -> [&str; 5] {
        [
            "regente credential field v1",
            self.organization_id,
            self.credential_id,
            &self.version,
            self.field,
        ]
    }
}

fn field_context<'a>(
    organization_id: &'a str,
    credential_id: &'a str,
    version: u32,
    field: &'a str,
) -> FieldContext<'a> {
    FieldContext {
        organization_id,
        credential_id,
        version: version.to_string(),
        field,
    }
}

pub(crate) fn open_field_with(
    key: &MasterKey,
    organization_id: &str,
    credential_id: &str,
    version: u32,
    sealed: &SealedValue,
) -> Result<String, VaultError> {
    let context = field_context(organization_id, credential_id, version, &sealed.field);
    let plain = key
        .open(&context.each(), &sealed.nonce, &sealed.ciphertext)
        .ok_or_else(|| VaultError::DoesNotOpen(key.id().to_owned()))?;
    String::from_utf8(plain).map_err(|_| VaultError::DoesNotOpen(key.id().to_owned()))
}

pub(crate) fn seal_field_with(
    key: &MasterKey,
    organization_id: &str,
    credential_id: &str,
    version: u32,
    field: &str,
    value: &str,
) -> SealedValue {
    let context = field_context(organization_id, credential_id, version, field);
    let (nonce, ciphertext) = key.seal(&context.each(), value.as_bytes());
    SealedValue {
        field: field.to_owned(),
        key_id: key.id().to_owned(),
        nonce,
        ciphertext,
    }
}

/// Whether a stored variable value is a sealed secret.
pub fn is_sealed_variable(value: &Value) -> bool {
    parse_sealed_variable(value).is_some()
}

/// (key id, nonce, ciphertext) of a sealed variable's text.
fn parse_sealed_variable(value: &Value) -> Option<(&str, &str, &str)> {
    let object = value.as_object()?;
    if object.len() != 1 {
        return None;
    }
    let text = object.get("$secret")?.as_str()?;
    let mut parts = text.strip_prefix("v1.")?.split('.');
    let parsed = (parts.next()?, parts.next()?, parts.next()?);
    parts.next().is_none().then_some(parsed)
}

fn variable_context<'a>(organization_id: &'a str, name: &'a str) -> [&'a str; 3] {
    ["regente secret variable v1", organization_id, name]
}

pub(crate) fn seal_variable_with(
    key: &MasterKey,
    organization_id: &str,
    name: &str,
    value: &Value,
) -> Value {
    let (nonce, ciphertext) = key.seal(
        &variable_context(organization_id, name),
        value.to_string().as_bytes(),
    );
    let text = format!(
        "{}{}.{}",
        sealed_variable_prefix(key.id()),
        BASE64.encode(nonce),
        BASE64.encode(ciphertext)
    );
    json!({ "$secret": text })
}

pub(crate) fn open_variable_with(
    key: &MasterKey,
    organization_id: &str,
    name: &str,
    sealed: &Value,
) -> Result<Value, VaultError> {
    let does_not_open = || VaultError::DoesNotOpen(key.id().to_owned());
    let (_, nonce, ciphertext) = parse_sealed_variable(sealed).ok_or_else(does_not_open)?;
    let nonce = BASE64.decode(nonce).map_err(|_| does_not_open())?;
    let ciphertext = BASE64.decode(ciphertext).map_err(|_| does_not_open())?;
    let plain = key
        .open(
            &variable_context(organization_id, name),
            &nonce,
            &ciphertext,
        )
        .ok_or_else(does_not_open)?;
    serde_json::from_slice(&plain).map_err(|_| does_not_open())
}

/// The key's check, as stored.
pub(crate) fn check_of(key: &MasterKey, now: i64) -> VaultKey {
    let (mut nonce, ciphertext) = key.seal(&["regente vault check v1", key.id()], CHECK_TEXT);
    nonce.extend_from_slice(&ciphertext);
    VaultKey {
        key_id: key.id().to_owned(),
        check_value: nonce,
        created_at: now,
    }
}

fn check_opens(key: &MasterKey, check: &VaultKey) -> bool {
    let (nonce, ciphertext) = check
        .check_value
        .split_at(seal::NONCE_BYTES.min(check.check_value.len()));
    key.open(&["regente vault check v1", key.id()], nonce, ciphertext)
        .is_some_and(|text| text == CHECK_TEXT)
}

/// Opens the vault at start: the keys from their source, checked against the
/// checks the store keeps, so that a wrong key stops the start with a message
/// that says so rather than failing later, value by value.
pub async fn open(
    config: &crate::config::ServerConfig,
    store: &dyn Store,
) -> anyhow::Result<Vault> {
    let shared = store.notices().is_some();
    let Some((source, keyring)) = keys::load(config, shared)? else {
        // Only a shared store without REGENTE_MASTER_KEY comes here.
        if !store.vault_keys().await?.is_empty() || store.vault_holds_values().await? {
            anyhow::bail!(
                "the vault holds sealed values but REGENTE_MASTER_KEY is not set: servers on \
                 PostgreSQL take the master key from the environment; give every server the \
                 same key the vault was sealed with (REGENTE_MASTER_KEY, base64 of 32 bytes)"
            );
        }
        warn!(
            "the credentials vault is off: set REGENTE_MASTER_KEY (the same 32 random bytes in \
             base64 on every server, e.g. `openssl rand -base64 32`) to store credentials"
        );
        return Ok(Vault::off());
    };
    check_keys(store, &keyring, crate::service::now_millis()).await?;
    info!(key = %keyring.current.id(), source = %source.describe(), "vault master key loaded");
    Ok(Vault::with_keys(source, keyring))
}

/// Every key whose values the store may hold must be in the keyring and open its
/// check; the current key's check is recorded when it is new.
pub(crate) async fn check_keys(
    store: &dyn Store,
    keyring: &Keyring,
    now: i64,
) -> anyhow::Result<()> {
    let stored = store.vault_keys().await?;
    for check in &stored {
        let Some(key) = keyring.find(&check.key_id) else {
            anyhow::bail!(
                "wrong master key: the vault's values are sealed under master key {}, and the \
                 key given ({}) is not it. Give the key the vault was sealed with \
                 (REGENTE_MASTER_KEY or the data directory's master-key file); during a \
                 rotation give the old one as REGENTE_MASTER_KEY_PREVIOUS",
                check.key_id,
                keyring.ids().join(", ")
            );
        };
        anyhow::ensure!(
            check_opens(key, check),
            "wrong master key: the key with id {} does not open the vault's check value",
            check.key_id
        );
    }
    if !stored.iter().any(|c| c.key_id == keyring.current.id()) {
        store
            .add_vault_key(&check_of(&keyring.current, now))
            .await?;
    }
    Ok(())
}
