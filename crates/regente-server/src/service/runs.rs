//! Executions: queue a run, read its result, cancel it, list them.

use std::sync::Arc;
use std::time::Duration;

use regente_core::{
    is_valid_id, resolve_variables, ExecutionStatus, RequestVariable, RobotManifest,
};
use regente_store::{
    CancelOutcome, Enqueued, Execution, ExecutionFilter, IdempotencyKey, LogLine, NewExecution,
    Notice, RobotVersion,
};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::{new_id, or_not_found, robots, Caller, Context, Error, Result};

/// How long an `Idempotency-Key` keeps answering the same execution.
const IDEMPOTENCY_WINDOW_MS: i64 = 24 * 3600 * 1000;
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;
/// Fresh ids tried for one run; a clash is rare (see `regente_core::ids::id_bits`).
const MAX_ID_DRAWS: u32 = 4;

pub struct RunRequest<'a> {
    pub runtime_id: &'a str,
    pub robot_id: &'a str,
    pub variables: Vec<RequestVariable>,
    pub idempotency_key: Option<&'a str>,
}

fn runtime_not_found(id: &str) -> Error {
    Error::NotFound(format!("runtime {id} not found"))
}

/// Queues a run of the robot's newest version; returns the execution id once it
/// is on disk.
pub async fn enqueue(ctx: &Context, caller: &Caller, request: RunRequest<'_>) -> Result<String> {
    let RunRequest {
        runtime_id,
        robot_id,
        variables,
        idempotency_key,
    } = request;
    if !is_valid_id(runtime_id) {
        return Err(runtime_not_found(runtime_id));
    }
    if !is_valid_id(robot_id) {
        return Err(Error::NotFound(robots::not_found(robot_id)));
    }
    let target = ctx
        .store
        .run_target(&caller.organization_id, runtime_id, robot_id)
        .await?;
    if !target.runtime_exists {
        return Err(runtime_not_found(runtime_id));
    }
    let Some(version) = target.robot_version else {
        return Err(Error::NotFound(robots::not_found(robot_id)));
    };
    let version = robots::with_manifest(ctx, robot_id, version)?;
    let (mut execution, manifest) =
        plain_execution(ctx, caller, runtime_id, robot_id, version, &variables)?;
    let key = idempotency(
        ctx,
        caller,
        idempotency_key,
        &[runtime_id, robot_id, &execution.variables.to_string()],
    )?;
    // Sealed after the fingerprint, which must not depend on a random nonce.
    execution.variables = super::credentials::seal_secret_variables(
        ctx,
        &caller.organization_id,
        &manifest,
        execution.variables,
    )?;
    let mut draws = 1;
    let enqueued = loop {
        match ctx.store.enqueue(&execution, key.as_ref()).await {
            // The fresh id clashed with a stored one: draw another.
            Err(regente_store::Error::Conflict(_)) if draws < MAX_ID_DRAWS => {
                execution.id = new_id();
                draws += 1;
            }
            outcome => break outcome?,
        }
    };
    match enqueued {
        Enqueued::Created => {
            let runtime_id = runtime_id.to_owned();
            super::announce(ctx, Notice::Work { runtime_id }).await;
            Ok(execution.id)
        }
        Enqueued::Existing(id) => Ok(id),
        Enqueued::KeyReused => Err(Error::Conflict(
            "this Idempotency-Key was already used for a different run request".into(),
        )),
    }
}

/// The `Idempotency-Key` of a request, checked, with the fingerprint of what the
/// request asks (`request`'s parts), so that a key reused for another request is
/// refused.
pub(crate) fn idempotency(
    ctx: &Context,
    caller: &Caller,
    key: Option<&str>,
    request: &[&str],
) -> Result<Option<IdempotencyKey>> {
    key.map(|key| {
        let printable = key.bytes().all(|b| (0x21..=0x7e).contains(&b));
        if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY_LEN || !printable {
            return Err(Error::Invalid(format!(
                "Idempotency-Key must have 1 to {MAX_IDEMPOTENCY_KEY_LEN} printable ASCII characters"
            )));
        }
        let mut fingerprint = Sha256::new();
        for part in request {
            fingerprint.update(part.as_bytes());
            fingerprint.update([0]);
        }
        Ok(IdempotencyKey {
            user_id: caller.user_id.clone(),
            key: key.to_owned(),
            fingerprint: hex::encode(fingerprint.finalize()),
            expired_before: ctx.clock.now() - IDEMPOTENCY_WINDOW_MS,
        })
    })
    .transpose()
}

/// A run of the robot's newest version on the runtime, its variables resolved
/// against the robot's declarations, submitted now by the caller: not queued
/// yet, its secret variables sealed. The runtime is not looked up.
pub(crate) async fn new_execution(
    ctx: &Context,
    caller: &Caller,
    runtime_id: &str,
    robot_id: &str,
    variables: &[RequestVariable],
) -> Result<NewExecution> {
    let version = robots::latest_version(ctx, caller, robot_id).await?;
    let (mut execution, manifest) =
        plain_execution(ctx, caller, runtime_id, robot_id, version, variables)?;
    execution.variables = super::credentials::seal_secret_variables(
        ctx,
        &caller.organization_id,
        &manifest,
        execution.variables,
    )?;
    Ok(execution)
}

/// [`new_execution`] of the given version with its secret variables not sealed
/// yet, and the manifest that declares them.
fn plain_execution(
    ctx: &Context,
    caller: &Caller,
    runtime_id: &str,
    robot_id: &str,
    (latest, manifest): (RobotVersion, Arc<RobotManifest>),
    variables: &[RequestVariable],
) -> Result<(NewExecution, Arc<RobotManifest>)> {
    let resolved = resolve_variables(&manifest.variables, variables)
        .map_err(|e| Error::Invalid(e.to_string()))?;
    let execution = NewExecution {
        id: new_id(),
        organization_id: caller.organization_id.clone(),
        runtime_id: runtime_id.to_owned(),
        robot_id: robot_id.to_owned(),
        robot_version: latest.version,
        variables: resolved.to_json(),
        init: ctx.clock.now(),
        submitted_by: caller.user_id.clone(),
        max_attempts: manifest.retries + 1,
        flow_run_id: None,
        flow_step_id: None,
        schedule_id: None,
        scheduled_for: None,
    };
    Ok((execution, manifest))
}

/// Finds an execution of the caller's organisation on the given runtime.
pub async fn get(
    ctx: &Context,
    caller: &Caller,
    runtime_id: &str,
    execution_id: &str,
) -> Result<Execution> {
    on_runtime(
        runtime_id,
        execution_id,
        |execution| execution,
        || {
            ctx.store
                .get_execution(&caller.organization_id, execution_id)
        },
    )
    .await
}

/// Like [`get`], with the execution's whole log, read together.
pub async fn get_with_logs(
    ctx: &Context,
    caller: &Caller,
    runtime_id: &str,
    execution_id: &str,
) -> Result<(Execution, Vec<LogLine>)> {
    on_runtime(
        runtime_id,
        execution_id,
        |(execution, _)| execution,
        || {
            ctx.store
                .execution_with_logs(&caller.organization_id, runtime_id, execution_id)
        },
    )
    .await
}

/// What `read` finds of an execution of the caller's organisation, when the
/// execution is on `runtime_id`; otherwise (or when the ids cannot be ids) the
/// same "not found", so that nothing tells another organisation's execution
/// from one that does not exist.
async fn on_runtime<T, F>(
    runtime_id: &str,
    execution_id: &str,
    execution_of: impl Fn(&T) -> &Execution,
    read: impl FnOnce() -> F,
) -> Result<T>
where
    F: std::future::Future<Output = regente_store::Result<T>>,
{
    let not_found = || {
        Error::NotFound(format!(
            "execution {execution_id} not found on runtime {runtime_id}"
        ))
    };
    if !is_valid_id(execution_id) || !is_valid_id(runtime_id) {
        return Err(not_found());
    }
    let found = match read().await {
        Err(regente_store::Error::NotFound) => return Err(not_found()),
        other => other?,
    };
    if execution_of(&found).runtime_id != runtime_id {
        return Err(not_found());
    }
    Ok(found)
}

/// The longest a caller may wait for an execution's end.
pub const MAX_WAIT: Duration = Duration::from_secs(60);
/// How often a waiter reads again without being woken: the safety net under a
/// lost wake-up (another server's notice missed).
const WAIT_REREAD: Duration = Duration::from_secs(1);

/// Like [`get`], but if the execution has not ended, waits up to `wait` for its
/// end and answers it as it is then. A waiter holds no thread: it sleeps on
/// its execution's wake-up, which this server pokes when it stores a change of
/// it and another server's notice pokes when that server ends it.
pub async fn get_when_ended(
    ctx: &Context,
    caller: &Caller,
    runtime_id: &str,
    execution_id: &str,
    wait: Duration,
) -> Result<Execution> {
    let deadline = tokio::time::Instant::now() + wait.min(MAX_WAIT);
    let woken = ctx.hub.executions.watch(execution_id);
    loop {
        // Registered before the read: a change between the two still wakes.
        let notified = woken.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let execution = get(ctx, caller, runtime_id, execution_id).await?;
        let now = tokio::time::Instant::now();
        if execution.status.is_ended() || now >= deadline {
            return Ok(execution);
        }
        let reread = (now + WAIT_REREAD).min(deadline);
        let _ = tokio::time::timeout_at(reread, notified).await;
    }
}

/// Finds an execution of the caller's organisation by id alone (admin API).
pub async fn get_any(ctx: &Context, caller: &Caller, execution_id: &str) -> Result<Execution> {
    let not_found = || format!("execution {execution_id} not found");
    if !is_valid_id(execution_id) {
        return Err(Error::NotFound(not_found()));
    }
    or_not_found(
        ctx.store
            .get_execution(&caller.organization_id, execution_id)
            .await,
        not_found,
    )
}

pub async fn logs(ctx: &Context, caller: &Caller, execution: &Execution) -> Result<Vec<LogLine>> {
    Ok(ctx
        .store
        .execution_logs(&caller.organization_id, &execution.id)
        .await?)
}

/// Log lines a page holds at most.
pub const LOG_PAGE: u32 = 1000;

/// A page of the log: at most [`LOG_PAGE`] lines after `after_seq`, for a
/// reader that follows the log by cursor (the console's live page).
pub async fn logs_after(
    ctx: &Context,
    caller: &Caller,
    execution: &Execution,
    after_seq: i64,
) -> Result<Vec<LogLine>> {
    Ok(ctx
        .store
        .execution_logs_after(&caller.organization_id, &execution.id, after_seq, LOG_PAGE)
        .await?)
}

pub async fn queue_position(ctx: &Context, execution: &Execution) -> Result<Option<u64>> {
    if execution.status != ExecutionStatus::Pendent {
        return Ok(None);
    }
    Ok(Some(ctx.store.queue_position(execution).await?))
}

/// Cancels an execution: a PENDENT one never runs; an ended one is a conflict.
pub async fn cancel(
    ctx: &Context,
    caller: &Caller,
    runtime_id: &str,
    execution_id: &str,
) -> Result<()> {
    let execution = get(ctx, caller, runtime_id, execution_id).await?;
    let summary = json!({
        "robot_id": execution.robot_id,
        "runtime_id": execution.runtime_id,
        "status": execution.status.as_str(),
    });
    let audit = super::audit::of_person(ctx, caller, "execution.cancel", &execution.id, summary);
    let outcome = ctx
        .store
        .cancel(
            &caller.organization_id,
            &execution.id,
            &caller.user_id,
            ctx.clock.now(),
            audit.as_ref(),
        )
        .await?;
    ctx.hub
        .changed(crate::hub::Changed::Execution(execution.id.clone()));
    if let CancelOutcome::Canceled { .. } = outcome {
        super::execution_ended(ctx, &execution.id, execution.flow_run_id.is_some()).await;
    }
    match outcome {
        CancelOutcome::Canceled { lease: None } => Ok(()),
        CancelOutcome::Canceled { lease: Some(lease) } => {
            let notice = Notice::Revoke {
                runtime_id: execution.runtime_id,
                execution_id: execution.id,
                lease,
                reason: "canceled before it started".into(),
            };
            super::announce(ctx, notice).await;
            Ok(())
        }
        CancelOutcome::Running { lease } => {
            let notice = Notice::Cancel {
                runtime_id: execution.runtime_id,
                execution_id: execution.id,
                lease,
            };
            super::announce(ctx, notice).await;
            Ok(())
        }
        CancelOutcome::AlreadyEnded(status) => Err(Error::Conflict(format!(
            "execution {execution_id} has already ended with status {status}: there is nothing to cancel"
        ))),
    }
}

pub async fn list(
    ctx: &Context,
    caller: &Caller,
    filter: &ExecutionFilter,
) -> Result<Vec<Execution>> {
    Ok(ctx
        .store
        .list_executions(&caller.organization_id, filter)
        .await?)
}

pub use regente_core::variables_from_json;

/// Variables in the form [`variables_from_json`] reads, to keep them.
pub fn variables_to_json(variables: &[RequestVariable]) -> Value {
    Value::Array(
        variables
            .iter()
            .map(|variable| {
                let mut object = json!({
                    "name": variable.name,
                    "value": variable.value,
                });
                if let Some(kind) = &variable.kind {
                    object["type"] = json!(kind);
                }
                object
            })
            .collect(),
    )
}
