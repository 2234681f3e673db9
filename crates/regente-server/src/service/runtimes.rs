//! Runtimes: the machines that run robots. Each authenticates with a key that is
//! shown once at creation and stored only as its SHA-256 (the key is 40 random
//! characters, so a fast hash is enough and lets the server find it by hash).

use regente_store::{NewRuntime, Runtime};
use sha2::{Digest, Sha256};

use super::{new_id, random_alphanumeric, Caller, Context, Error, Result};

const KEY_LEN: usize = 40;
const MAX_SLOTS: u32 = 256;

fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// The runtime a key belongs to; `None` for a key no runtime has.
pub async fn authenticate_key(ctx: &Context, key: &str) -> Result<Option<Runtime>> {
    Ok(ctx.store.find_runtime_by_key_hash(&hash_key(key)).await?)
}

/// Creates a runtime; returns it with its key, which is not kept.
pub async fn create(
    ctx: &Context,
    caller: &Caller,
    name: &str,
    slots: Option<u32>,
) -> Result<(Runtime, String)> {
    let name = name.trim();
    if name.is_empty() || name.len() > 200 || name.chars().any(char::is_control) {
        return Err(Error::Invalid(
            "runtime name must have 1 to 200 bytes, with no control characters".into(),
        ));
    }
    let slots = slots.unwrap_or(1);
    if !(1..=MAX_SLOTS).contains(&slots) {
        return Err(Error::Invalid(format!(
            "slots must be between 1 and {MAX_SLOTS}"
        )));
    }
    let key = random_alphanumeric(KEY_LEN);
    let runtime = Runtime {
        id: new_id(),
        organization_id: caller.organization_id.clone(),
        name: name.to_owned(),
        slots,
        last_seen: None,
        created_at: ctx.clock.now(),
    };
    ctx.store
        .create_runtime(&NewRuntime {
            runtime: runtime.clone(),
            key_hash: hash_key(&key),
        })
        .await?;
    Ok((runtime, key))
}

pub async fn list(ctx: &Context, caller: &Caller) -> Result<Vec<Runtime>> {
    Ok(ctx.store.list_runtimes(&caller.organization_id).await?)
}

/// Whether a runtime counts as online: connected here, or heard from within the
/// runtime timeout (by any server sharing the store).
pub fn is_online(ctx: &Context, runtime: &Runtime) -> bool {
    let timeout = ctx.config.runtime_timeout.as_millis() as i64;
    ctx.hub.is_connected(&runtime.id)
        || runtime
            .last_seen
            .is_some_and(|seen| ctx.clock.now() - seen < timeout)
}
