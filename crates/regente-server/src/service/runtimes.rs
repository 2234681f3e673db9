//! Runtimes: the machines that run robots. Each authenticates with a key that is
//! shown once at creation and stored only as its SHA-256 (the key is 40 random
//! characters, so a fast hash is enough and lets the server find it by hash).

use std::sync::Arc;

use regente_core::ExecutionStatus;
use regente_store::{Execution, ExecutionFilter, NewRuntime, Runtime, RuntimeDeletion};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::{new_id, random_alphanumeric, Caller, Context, Error, Result};

const KEY_LEN: usize = 40;
pub const MAX_SLOTS: u32 = 256;

fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// The runtime a key belongs to, with the key's hash; `None` for a key no
/// runtime has.
pub async fn authenticate_key(ctx: &Context, key: &str) -> Result<Option<(Runtime, String)>> {
    let hash = hash_key(key);
    let runtime = ctx.store.find_runtime_by_key_hash(&hash).await?;
    Ok(runtime.map(|runtime| (runtime, hash)))
}

/// Whether the key with this hash is still the runtime's (a store that cannot
/// be read answers yes: the notice of a replacement closes the session too).
pub async fn key_is_current(ctx: &Context, runtime_id: &str, key_hash: &str) -> bool {
    match ctx.store.find_runtime_by_key_hash(key_hash).await {
        Ok(found) => found.is_some_and(|runtime| runtime.id == runtime_id),
        Err(e) => {
            tracing::warn!(runtime = %runtime_id, error = format!("{e:#}"), "cannot check a runtime's key again");
            true
        }
    }
}

/// Gives a runtime a new key, answered once: the old key is refused from now
/// on, and the connection made with it is closed, on this server and the
/// others sharing the store.
pub async fn replace_key(
    ctx: &Arc<Context>,
    caller: &Caller,
    id: &str,
) -> Result<(Runtime, String)> {
    let not_found = || format!("runtime {id} not found");
    if !regente_core::is_valid_id(id) {
        return Err(Error::NotFound(not_found()));
    }
    let runtime = super::or_not_found(
        ctx.store.get_runtime(&caller.organization_id, id).await,
        not_found,
    )?;
    let key = random_alphanumeric(KEY_LEN);
    let hash = hash_key(&key);
    let audit = super::audit::record(
        ctx,
        caller,
        "runtime.replace_key",
        id,
        json!({"name": runtime.name}),
    );
    // On a task of its own: a client hanging up must not leave the key
    // replaced but the old key's connection open.
    let (task_ctx, organization_id, runtime_id) =
        (ctx.clone(), caller.organization_id.clone(), id.to_owned());
    tokio::spawn(async move {
        task_ctx
            .store
            .replace_runtime_key(&organization_id, &runtime_id, &hash, Some(&audit))
            .await?;
        super::announce(
            &task_ctx,
            regente_store::Notice::RuntimeKeyChanged { runtime_id },
        )
        .await;
        Ok::<_, regente_store::Error>(())
    })
    .await
    .map_err(|e| Error::Internal(anyhow::anyhow!("replacing the key failed: {e}")))
    .and_then(|replaced| super::or_not_found(replaced, not_found))?;
    tracing::info!(runtime = %id, by = %caller.username, "runtime key replaced");
    Ok((runtime, key))
}

/// Creates a runtime; returns it with its key, which is not kept.
pub async fn create(
    ctx: &Context,
    caller: &Caller,
    name: &str,
    slots: Option<u32>,
) -> Result<(Runtime, String)> {
    let name = super::check_name("runtime name", name)?;
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
    let summary = json!({"name": runtime.name, "slots": runtime.slots});
    let audit = super::audit::record(ctx, caller, "runtime.create", &runtime.id, summary);
    let new = NewRuntime {
        runtime: runtime.clone(),
        key_hash: hash_key(&key),
    };
    ctx.store.create_runtime(&new, Some(&audit)).await?;
    Ok((runtime, key))
}

pub async fn rename(ctx: &Context, caller: &Caller, id: &str, name: &str) -> Result<Runtime> {
    let name = super::check_name("runtime name", name)?;
    let not_found = || format!("runtime {id} not found");
    if !regente_core::is_valid_id(id) {
        return Err(Error::NotFound(not_found()));
    }
    let audit = super::audit::record(ctx, caller, "runtime.rename", id, json!({"name": name}));
    super::or_not_found(
        ctx.store
            .rename_runtime(&caller.organization_id, id, name, Some(&audit))
            .await,
        not_found,
    )?;
    super::or_not_found(
        ctx.store.get_runtime(&caller.organization_id, id).await,
        not_found,
    )
}

/// Deletes a runtime that is offline with nothing queued or running; its
/// executions keep their history, its key stops working.
pub async fn delete(ctx: &Context, caller: &Caller, id: &str) -> Result<()> {
    let not_found = || format!("runtime {id} not found");
    if !regente_core::is_valid_id(id) {
        return Err(Error::NotFound(not_found()));
    }
    let runtime = super::or_not_found(
        ctx.store.get_runtime(&caller.organization_id, id).await,
        not_found,
    )?;
    let audit = super::audit::record(
        ctx,
        caller,
        "runtime.delete",
        id,
        json!({"name": runtime.name}),
    );
    let outcome = super::or_not_found(
        ctx.store
            .delete_runtime(&caller.organization_id, id, ctx.clock.now(), Some(&audit))
            .await,
        not_found,
    )?;
    match outcome {
        RuntimeDeletion::Deleted => {
            ctx.hub.changed(crate::hub::Changed::Runtimes);
            Ok(())
        }
        RuntimeDeletion::Online => Err(Error::Conflict(format!(
            "runtime {id} is online: stop its agent first"
        ))),
        RuntimeDeletion::Busy => Err(Error::Conflict(format!(
            "runtime {id} has executions queued or running: cancel them or let them end first"
        ))),
    }
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

/// A runtime as the console shows it: online or not, and what it runs now.
pub struct RuntimeState {
    pub runtime: Runtime,
    pub online: bool,
    /// Its RUNNING executions, newest first.
    pub running: Vec<Execution>,
}

/// Executions read at most to tell what runtimes run now (a runtime has at
/// most 256 slots).
const RUNNING_READ: u32 = 500;

/// Every runtime of the organisation with its state (the running executions come
/// from the status index, not from a walk over all executions).
pub async fn states(ctx: &Context, caller: &Caller) -> Result<Vec<RuntimeState>> {
    let runtimes = list(ctx, caller).await?;
    let running = ctx
        .store
        .list_executions(
            &caller.organization_id,
            &ExecutionFilter {
                status: Some(ExecutionStatus::Running),
                limit: RUNNING_READ,
                ..ExecutionFilter::default()
            },
        )
        .await?;
    Ok(runtimes
        .into_iter()
        .map(|runtime| RuntimeState {
            online: is_online(ctx, &runtime),
            running: running
                .iter()
                .filter(|e| e.runtime_id == runtime.id)
                .cloned()
                .collect(),
            runtime,
        })
        .collect())
}
