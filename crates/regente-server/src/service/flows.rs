//! Flows: save a definition (a new flow, or its next version), run one, read,
//! cancel and retry a run, and advance a run as the engine does when a step's
//! execution ends.

use std::sync::Arc;

use regente_core::{is_valid_id, resolve_variables, ExecutionStatus, RequestVariable};
use regente_flows::{Definition, RunState};
use regente_store::{
    Enqueued, Execution, Flow, FlowCancelOutcome, FlowRun, Millis, NewFlowRun, NewFlowVersion,
    Notice,
};
use serde_json::{json, Value};
use tokio::sync::Notify;

use super::flow_plan::{plan, state_of, step_record, Definitions, Planned};
use super::{new_id, or_not_found, Caller, Context, Error, Result};

/// Changes of one run attempted in a row when others keep changing it first.
const ADVANCE_ATTEMPTS: usize = 8;

/// What the flow engine shares with the rest of the server.
#[derive(Default)]
pub struct Flows {
    pub definitions: Definitions,
    /// Poked when this server stores the end of an execution (or hears that
    /// another did): the engine reads the stream at once.
    pub wake: Notify,
}

fn flow_not_found(id: &str) -> Error {
    Error::NotFound(format!("flow {id} not found"))
}

fn run_not_found(id: &str) -> Error {
    Error::NotFound(format!("flow run {id} not found"))
}

/// Saves a definition: a new flow under its name, or that flow's next version.
/// Refuses, naming the field, what does not validate; every robot and runtime
/// must be the caller's organisation's (404 otherwise).
pub async fn save(ctx: &Context, caller: &Caller, body: &Value) -> Result<Flow> {
    let definition = Definition::parse(body).map_err(|e| Error::Invalid(e.to_string()))?;
    for (field, step) in definition.every_step() {
        let robot = or_not_found(
            ctx.store
                .get_robot(&caller.organization_id, &step.robot_id)
                .await,
            || format!("{field}.robot_id: robot {} not found", step.robot_id),
        )?;
        if let Some(pinned) = step.robot_version {
            if !robot.versions.iter().any(|v| v.version == pinned) {
                return Err(Error::NotFound(format!(
                    "{field}.robot_version: robot {} has no version {pinned}",
                    step.robot_id
                )));
            }
        }
        if !ctx
            .store
            .runtime_exists(&caller.organization_id, &step.runtime_id)
            .await?
        {
            return Err(Error::NotFound(format!(
                "{field}.runtime_id: runtime {} not found",
                step.runtime_id
            )));
        }
    }
    let new = NewFlowVersion {
        id: new_id(),
        organization_id: caller.organization_id.clone(),
        name: definition.name.clone(),
        definition: body.clone(),
        created: ctx.clock.now(),
        created_by: caller.user_id.clone(),
    };
    // The store completes it with the flow's id and the version it made.
    let audit = super::audit::record(ctx, caller, "flow.save", "", json!({"name": new.name}));
    Ok(ctx.store.save_flow(&new, Some(&audit)).await?)
}

pub async fn get(ctx: &Context, caller: &Caller, id: &str) -> Result<Flow> {
    if !is_valid_id(id) {
        return Err(flow_not_found(id));
    }
    or_not_found(
        ctx.store.get_flow(&caller.organization_id, id).await,
        || format!("flow {id} not found"),
    )
}

pub async fn list(ctx: &Context, caller: &Caller) -> Result<Vec<Flow>> {
    Ok(ctx.store.list_flows(&caller.organization_id).await?)
}

/// The flow's newest version, its definition, and `variables` resolved against
/// its declared inputs (`Invalid` when they do not fit).
pub(crate) async fn with_inputs(
    ctx: &Context,
    caller: &Caller,
    flow_id: &str,
    variables: &[RequestVariable],
) -> Result<(Flow, Arc<Definition>, Value)> {
    let flow = get(ctx, caller, flow_id).await?;
    let definition = ctx.flows.definitions.of_flow(&flow)?;
    let input = resolve_variables(&definition.variables, variables)
        .map_err(|e| Error::Invalid(e.to_string()))?
        .to_json();
    Ok((flow, definition, input))
}

/// A run of the flow's newest version as it starts, submitted by the caller:
/// its inputs resolved, its first decisions applied (its first step's
/// execution built), not stored yet. A run request and a schedule's fire both
/// start runs from it.
pub(crate) async fn new_run(
    ctx: &Context,
    caller: &Caller,
    flow_id: &str,
    variables: &[RequestVariable],
) -> Result<(NewFlowRun, Planned)> {
    let (flow, definition, input) = with_inputs(ctx, caller, flow_id, variables).await?;
    let now = ctx.clock.now();
    let run_id = new_id();
    let state = RunState::new(&definition, input.clone());
    let planned = plan(
        ctx,
        &caller.organization_id,
        &run_id,
        &definition,
        state,
        now,
    )
    .await?;
    let ended = planned.state.status != ExecutionStatus::Running;
    let run = FlowRun {
        id: run_id,
        organization_id: caller.organization_id.clone(),
        flow_id: flow.id.clone(),
        version: flow.version,
        status: planned.state.status,
        input,
        return_value: planned.return_value.clone(),
        init: now,
        end: ended.then_some(now),
        end_reason: planned.end_reason.clone(),
        submitted_by: caller.user_id.clone(),
        canceled_by: None,
        revision: 0,
        wake_at: planned.wake_at,
        schedule_id: None,
        scheduled_for: None,
        steps: planned
            .state
            .steps
            .iter()
            .enumerate()
            .map(|(position, step)| step_record(position, step))
            .collect(),
        seq: 0,
    };
    let new = NewFlowRun {
        run,
        enqueue: planned.enqueue.clone(),
    };
    Ok((new, planned))
}

/// Starts a run of the flow's newest version with `variables` resolved against
/// its declared inputs; its first step is queued in the same transaction.
pub async fn start_run(
    ctx: &Context,
    caller: &Caller,
    flow_id: &str,
    variables: Vec<RequestVariable>,
    idempotency_key: Option<&str>,
) -> Result<String> {
    let (new, planned) = new_run(ctx, caller, flow_id, &variables).await?;
    let key = super::runs::idempotency(
        ctx,
        caller,
        idempotency_key,
        &["flow", flow_id, &new.run.input.to_string()],
    )?;
    match ctx.store.start_flow_run(&new, key.as_ref()).await? {
        Enqueued::Created => {
            after_change(ctx, &caller.organization_id, &new.run.id, &planned).await;
            Ok(new.run.id)
        }
        Enqueued::Existing(id) => Ok(id),
        Enqueued::KeyReused => Err(Error::Conflict(
            "this Idempotency-Key was already used for a different run request".into(),
        )),
    }
}

pub async fn get_run(ctx: &Context, caller: &Caller, id: &str) -> Result<FlowRun> {
    if !is_valid_id(id) {
        return Err(run_not_found(id));
    }
    or_not_found(
        ctx.store.get_flow_run(&caller.organization_id, id).await,
        || format!("flow run {id} not found"),
    )
}

/// The flow's latest `limit` runs, newest first, without their steps.
pub async fn recent_runs(
    ctx: &Context,
    caller: &Caller,
    flow_id: &str,
    limit: u32,
) -> Result<Vec<FlowRun>> {
    get(ctx, caller, flow_id).await?;
    Ok(ctx
        .store
        .recent_flow_runs(&caller.organization_id, flow_id, limit)
        .await?)
}

/// Cancels a RUNNING run: it ends CANCELED at once, and its running step's
/// execution is canceled the usual way, so its robot is stopped.
pub async fn cancel_run(ctx: &Context, caller: &Caller, id: &str) -> Result<()> {
    let run = get_run(ctx, caller, id).await?;
    let summary = json!({"flow_id": run.flow_id, "version": run.version});
    let audit = super::audit::of_person(ctx, caller, "flow_run.cancel", id, summary);
    let outcome = ctx
        .store
        .cancel_flow_run(
            &caller.organization_id,
            id,
            &caller.user_id,
            ctx.clock.now(),
            audit.as_ref(),
        )
        .await?;
    match outcome {
        FlowCancelOutcome::Canceled { running_execution } => {
            if let Some(execution_id) = running_execution {
                stop_execution(ctx, &caller.organization_id, id, &execution_id).await?;
            }
            Ok(())
        }
        FlowCancelOutcome::AlreadyEnded(status) => Err(Error::Conflict(format!(
            "flow run {id} has already ended with status {status}: there is nothing to cancel"
        ))),
    }
}

/// Resumes an ended run at its failed (or canceled) step; the steps that
/// succeeded keep their results. The engine may still be recording the end of
/// the step a cancel stopped: the retry then reads the run again, a few times,
/// rather than answer a conflict the caller did not cause.
pub async fn retry_run(ctx: &Context, caller: &Caller, id: &str) -> Result<()> {
    for _ in 0..ADVANCE_ATTEMPTS {
        let run = get_run(ctx, caller, id).await?;
        let definition = ctx.flows.definitions.of_run(ctx, &run).await?;
        let mut state = state_of(&run)?;
        if !state.retry(&definition) {
            return Err(Error::Conflict(format!(
                "flow run {id} is {}: only a run that ended ERROR or CANCELED can be retried",
                run.status
            )));
        }
        let now = ctx.clock.now();
        let planned = plan(ctx, &run.organization_id, &run.id, &definition, state, now).await?;
        let summary =
            json!({"flow_id": run.flow_id, "version": run.version, "was": run.status.as_str()});
        let mut advance = planned.advance(&run, None, now);
        advance.audit = super::audit::of_person(ctx, caller, "flow_run.retry", id, summary);
        if ctx.store.advance_flow_run(&advance).await? {
            after_change(ctx, &run.organization_id, &run.id, &planned).await;
            return Ok(());
        }
    }
    Err(Error::Conflict(format!(
        "flow run {id} keeps changing: read it and try again"
    )))
}

/// Advances a run as its step's `execution` ended (or, without one, because
/// its time came), saving `cursor` with the change. `false` when there was
/// nothing to change.
pub(crate) async fn advance(
    ctx: &Context,
    organization_id: &str,
    run_id: &str,
    ended: Option<&Execution>,
    cursor: Option<(String, regente_store::EventCursor)>,
) -> Result<bool> {
    for _ in 0..ADVANCE_ATTEMPTS {
        let run = match ctx.store.get_flow_run(organization_id, run_id).await {
            Err(regente_store::Error::NotFound) => return Ok(false),
            run => run?,
        };
        let definition = ctx.flows.definitions.of_run(ctx, &run).await?;
        let mut state = state_of(&run)?;
        let now = ctx.clock.now();
        if let Some(execution) = ended {
            state.execution_ended(
                &execution.id,
                execution.status,
                execution.return_value.clone(),
                execution.end_reason.clone(),
                now,
            );
        }
        let planned = plan(ctx, organization_id, run_id, &definition, state, now).await?;
        if !planned.changes(&run) {
            stop_timed_out(ctx, organization_id, run_id, &planned).await;
            return Ok(false);
        }
        if ctx
            .store
            .advance_flow_run(&planned.advance(&run, cursor.clone(), now))
            .await?
        {
            after_change(ctx, organization_id, run_id, &planned).await;
            return Ok(true);
        }
        // Changed by someone else since it was read: decide again from the new state.
    }
    Err(Error::Internal(anyhow::anyhow!(
        "flow run {run_id} kept changing while the engine advanced it"
    )))
}

/// What follows a committed change: the queued step's runtime woken, timed-out
/// steps stopped.
async fn after_change(ctx: &Context, organization_id: &str, run_id: &str, planned: &Planned) {
    if let Some(execution) = &planned.enqueue {
        let runtime_id = execution.runtime_id.clone();
        super::announce(ctx, Notice::Work { runtime_id }).await;
    }
    stop_timed_out(ctx, organization_id, run_id, planned).await;
}

async fn stop_timed_out(ctx: &Context, organization_id: &str, run_id: &str, planned: &Planned) {
    for execution_id in &planned.timed_out {
        if let Err(e) = stop_execution(ctx, organization_id, run_id, execution_id).await {
            tracing::warn!(run = %run_id, execution = %execution_id, error = %e, "cannot stop a timed-out step");
        }
    }
}

/// Cancels a step's execution as the flow (`flow:RUN`); one that has ended
/// already is fine.
async fn stop_execution(
    ctx: &Context,
    organization_id: &str,
    run_id: &str,
    execution_id: &str,
) -> Result<()> {
    let system = Caller::system(organization_id, "flow", run_id);
    let execution = super::runs::get_any(ctx, &system, execution_id).await?;
    match super::runs::cancel(ctx, &system, &execution.runtime_id, execution_id).await {
        Err(Error::Conflict(_)) => Ok(()),
        other => other,
    }
}

/// The soonest `wake_at` among `runs`, if any.
pub(crate) fn soonest(runs: &[regente_store::WakingRun]) -> Option<Millis> {
    runs.iter().map(|run| run.wake_at).min()
}
