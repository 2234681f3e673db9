//! `regente vault rotate-key`: every sealed value opened with the old keys and
//! sealed again under the new one, in batches, while servers run.
//!
//! Servers open a value under whichever key of their keyring its key id names,
//! so during the rotation they read old and new ciphertexts alike:
//! - keys from the environment: servers are first restarted with the new key as
//!   `REGENTE_MASTER_KEY` and the old one as `REGENTE_MASTER_KEY_PREVIOUS` (so
//!   that they seal under the new one), the command runs with the same two, then
//!   servers are restarted without the previous key;
//! - the key file: the command writes the new key as `current` and the old as
//!   `previous` before it starts (a server reads the file again before sealing
//!   and when it meets an unknown key id), and drops `previous` once done.
//!
//! Each value is written back only if it is still the one read (a replacement
//! meanwhile wins), and the old keys' checks are removed last, so that an
//! interrupted rotation is finished by running the command again.

use regente_store::Store;

use super::keys::{self, KeySource};
use super::{
    check_keys, open_field_with, open_variable_with, open_webhook_secret_with, seal_field_with,
    seal_variable_with, seal_webhook_secret_with, Keyring, MasterKey,
};
use crate::config::ServerConfig;

/// Values sealed again per store write.
const BATCH: usize = 200;
/// Batches in a row that write nothing before giving up (values keep being
/// sealed under another key than the new one: a server without it).
const STALLED_BATCHES: u32 = 3;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationReport {
    pub key_id: String,
    pub values: usize,
    pub variables: usize,
    pub webhooks: usize,
}

/// Rotates the vault of the server `config` describes: from its key file (a new
/// key is made, or the one of an interrupted rotation is finished), or from
/// `REGENTE_MASTER_KEY` (the new key) and `REGENTE_MASTER_KEY_PREVIOUS` (the old).
pub async fn rotate_key(
    config: &ServerConfig,
    store: &dyn Store,
) -> anyhow::Result<RotationReport> {
    let shared = store.notices().is_some();
    let Some((source, keyring)) = keys::load(config, shared)? else {
        anyhow::bail!(
            "set REGENTE_MASTER_KEY to the new key and REGENTE_MASTER_KEY_PREVIOUS to the old one \
             (the servers sharing this store first restarted with both)"
        );
    };
    match source {
        KeySource::Environment => {
            anyhow::ensure!(
                !keyring.previous.is_empty(),
                "set REGENTE_MASTER_KEY_PREVIOUS to the old key: REGENTE_MASTER_KEY is the new one"
            );
            rotate(store, &keyring).await
        }
        KeySource::File(path) => {
            let keyring = if keyring.previous.is_empty() {
                let old = keyring.current;
                let (new, new_text) = MasterKey::generate();
                let old_text = current_text(&path)?;
                keys::write_key_file(&path, &new_text, Some(&old_text))?;
                Keyring {
                    current: new,
                    previous: vec![old],
                }
            } else {
                // An interrupted rotation: finish it with the new key it made.
                keyring
            };
            let report = rotate(store, &keyring).await?;
            keys::write_key_file(&path, &current_text(&path)?, None)?;
            Ok(report)
        }
    }
}

/// The `current` key's text in a key file.
fn current_text(path: &std::path::Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)?;
    text.lines()
        .find_map(|line| line.trim().strip_prefix("current "))
        .map(|key| key.trim().to_owned())
        .ok_or_else(|| anyhow::anyhow!("{} has no `current` key", path.display()))
}

/// Seals every value again under `keyring.current`, opening each with the key
/// its id names.
pub async fn rotate(store: &dyn Store, keyring: &Keyring) -> anyhow::Result<RotationReport> {
    let new = &keyring.current;
    check_keys(store, keyring, crate::service::now_millis()).await?;
    let key_of = |key_id: &str| -> anyhow::Result<&MasterKey> {
        keyring.find(key_id).ok_or_else(|| {
            anyhow::anyhow!("a value is sealed under master key {key_id}, which was not given")
        })
    };
    let mut report = RotationReport {
        key_id: new.id().to_owned(),
        values: 0,
        variables: 0,
        webhooks: 0,
    };
    let mut stalled = 0;
    loop {
        let page = store.values_not_under(new.id(), BATCH).await?;
        if page.is_empty() {
            break;
        }
        let mut changes = Vec::with_capacity(page.len());
        for stored in page {
            let old = key_of(&stored.value.key_id)?;
            let plain = open_field_with(
                old,
                &stored.organization_id,
                &stored.credential_id,
                stored.version,
                &stored.value,
            )?;
            let sealed = seal_field_with(
                new,
                &stored.organization_id,
                &stored.credential_id,
                stored.version,
                &stored.value.field,
                &plain,
            );
            changes.push((stored, sealed));
        }
        let written = store.reseal_values(&changes).await?;
        report.values += written;
        stalled = if written == 0 { stalled + 1 } else { 0 };
        anyhow::ensure!(stalled < STALLED_BATCHES, stalled_message(new));
    }
    stalled = 0;
    loop {
        let page = store.sealed_variables_not_under(new.id(), BATCH).await?;
        if page.is_empty() {
            break;
        }
        let mut written = 0;
        for execution in page {
            let Some(object) = execution.variables.as_object() else {
                continue;
            };
            let mut resealed = object.clone();
            for (name, value) in object {
                if let Some(key_id) = super::parse_sealed_variable(value).map(|(id, _, _)| id) {
                    if key_id == new.id() {
                        continue;
                    }
                    let plain = open_variable_with(
                        key_of(key_id)?,
                        &execution.organization_id,
                        name,
                        value,
                    )?;
                    resealed.insert(
                        name.clone(),
                        seal_variable_with(new, &execution.organization_id, name, &plain),
                    );
                }
            }
            if store.reseal_variables(&execution, &resealed.into()).await? {
                written += 1;
            }
        }
        report.variables += written;
        stalled = if written == 0 { stalled + 1 } else { 0 };
        anyhow::ensure!(stalled < STALLED_BATCHES, stalled_message(new));
    }
    stalled = 0;
    loop {
        let page = store.webhooks_sealed_not_under(new.id(), BATCH).await?;
        if page.is_empty() {
            break;
        }
        let mut written = 0;
        for webhook in page {
            let (organization_id, id) = (&webhook.organization_id, &webhook.id);
            let reseal = |sealed: &str| -> anyhow::Result<String> {
                let key_id = sealed.split('.').nth(1).unwrap_or_default();
                let plain = open_webhook_secret_with(key_of(key_id)?, organization_id, id, sealed)?;
                Ok(seal_webhook_secret_with(new, organization_id, id, &plain))
            };
            let secret = reseal(&webhook.secret)?;
            let previous = webhook.previous_secret.as_deref().map(reseal).transpose()?;
            if store
                .reseal_webhook_secrets(&webhook, &secret, previous.as_deref())
                .await?
            {
                written += 1;
            }
        }
        report.webhooks += written;
        stalled = if written == 0 { stalled + 1 } else { 0 };
        anyhow::ensure!(stalled < STALLED_BATCHES, stalled_message(new));
    }
    for check in store.vault_keys().await? {
        if check.key_id != new.id() {
            store.remove_vault_key(&check.key_id).await?;
        }
    }
    Ok(report)
}

fn stalled_message(new: &MasterKey) -> String {
    format!(
        "values keep being sealed under another key than the new one ({}): restart every \
         server with the new key as REGENTE_MASTER_KEY and the old as \
         REGENTE_MASTER_KEY_PREVIOUS, then run the rotation again",
        new.id()
    )
}
