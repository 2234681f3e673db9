//! Turning the engine's decisions into one store change: a run's state read from
//! the store, [`regente_flows::next`] asked and its decisions applied until one
//! waits or ends the run, the step that starts given its execution, all written
//! by one `advance_flow_run` (or `start_flow_run`) under the run's revision.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use regente_core::{resolve_variables, ExecutionStatus, RequestVariable, VariableType};
use regente_flows::{next, Decision, Definition, RunState, StepState, StepStatus};
use regente_store::{Flow, FlowAdvance, FlowRun, FlowStep, Millis, NewExecution};
use serde_json::{Map, Value};

use super::{new_id, Context, Error, Result};

/// How soon the engine looks again at a run whose timed-out step it asked to
/// stop, in case the stop's end does not come.
const TIMED_OUT_RECHECK_MS: Millis = 5_000;

/// Parsed definitions by (flow, version): a saved version never changes, and
/// compiling its expressions at every step would cost more than the step's
/// store work.
#[derive(Default)]
pub struct Definitions {
    parsed: Mutex<HashMap<(String, u32), Arc<Definition>>>,
}

/// Definitions kept; past this the cache starts over.
const DEFINITIONS_KEPT: usize = 256;

impl Definitions {
    /// The run's definition, from the cache or the store.
    pub async fn of_run(&self, ctx: &Context, run: &FlowRun) -> Result<Arc<Definition>> {
        let key = (run.flow_id.clone(), run.version);
        if let Some(definition) = self.lock().get(&key) {
            return Ok(definition.clone());
        }
        let flow = ctx
            .store
            .flow_version(&run.organization_id, &run.flow_id, run.version)
            .await?;
        self.of_flow(&flow)
    }

    /// The definition of the flow's version as read, from the cache or parsed.
    pub fn of_flow(&self, flow: &Flow) -> Result<Arc<Definition>> {
        let key = (flow.id.clone(), flow.version);
        if let Some(definition) = self.lock().get(&key) {
            return Ok(definition.clone());
        }
        let definition = Arc::new(Definition::parse(&flow.definition).map_err(|e| {
            Error::Internal(anyhow::anyhow!(
                "stored flow {} version {}: {e}",
                flow.id,
                flow.version
            ))
        })?);
        let mut parsed = self.lock();
        if parsed.len() >= DEFINITIONS_KEPT {
            parsed.clear();
        }
        parsed.insert(key, definition.clone());
        Ok(definition)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, u32), Arc<Definition>>> {
        self.parsed.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A run's state as the engine reads it.
pub(crate) fn state_of(run: &FlowRun) -> Result<RunState> {
    let steps = run
        .steps
        .iter()
        .map(|step| {
            Ok(StepState {
                id: step.step_id.clone(),
                status: StepStatus::parse(&step.status).ok_or_else(|| {
                    Error::Internal(anyhow::anyhow!("stored step status {:?}", step.status))
                })?,
                attempt: step.attempt,
                execution_id: step.execution_id.clone(),
                return_value: step.return_value.clone(),
                reason: step.reason.clone(),
                not_before: step.not_before,
                deadline: step.deadline,
            })
        })
        .collect::<Result<_>>()?;
    Ok(RunState {
        status: run.status,
        input: run.input.clone(),
        steps,
    })
}

pub(crate) fn step_record(position: usize, step: &StepState) -> FlowStep {
    FlowStep {
        position: position as u32,
        step_id: step.id.clone(),
        status: step.status.as_str().to_owned(),
        attempt: step.attempt,
        execution_id: step.execution_id.clone(),
        return_value: step.return_value.clone(),
        reason: step.reason.clone(),
        not_before: step.not_before,
        deadline: step.deadline,
    }
}

/// What the decisions came to.
pub(crate) struct Planned {
    pub state: RunState,
    pub enqueue: Option<NewExecution>,
    pub return_value: Option<Value>,
    pub end_reason: Option<String>,
    pub wake_at: Option<Millis>,
    /// Executions of steps past their timeout, to stop.
    pub timed_out: Vec<String>,
}

impl Planned {
    /// The store change from `before` (the run as read) to this plan.
    pub(crate) fn advance(
        &self,
        before: &FlowRun,
        cursor: Option<(String, regente_store::EventCursor)>,
        now: Millis,
    ) -> FlowAdvance {
        let ended = self.state.status != ExecutionStatus::Running;
        // A run that had ended already (a step's end recorded after a cancel)
        // keeps how it ended.
        let (return_value, end_reason) = if ended && before.status != ExecutionStatus::Running {
            (before.return_value.clone(), before.end_reason.clone())
        } else {
            (self.return_value.clone(), self.end_reason.clone())
        };
        FlowAdvance {
            organization_id: before.organization_id.clone(),
            run_id: before.id.clone(),
            revision: before.revision,
            status: self.state.status,
            return_value,
            end: ended.then_some(before.end.unwrap_or(now)),
            end_reason,
            wake_at: self.wake_at,
            steps: self
                .state
                .steps
                .iter()
                .enumerate()
                .map(|(position, step)| step_record(position, step))
                .filter(|step| before.steps.get(step.position as usize) != Some(step))
                .collect(),
            enqueue: self.enqueue.clone(),
            cursor,
            now,
            audit: None,
        }
    }

    /// Whether the plan changes the run at all.
    pub(crate) fn changes(&self, before: &FlowRun) -> bool {
        let advance = self.advance(before, None, 0);
        !advance.steps.is_empty()
            || advance.status != before.status
            || advance.wake_at != before.wake_at
            || advance.enqueue.is_some()
    }
}

/// Applies the engine's decisions to `state` until one waits or ends the run;
/// at most one step starts.
pub(crate) async fn plan(
    ctx: &Context,
    organization_id: &str,
    run_id: &str,
    definition: &Definition,
    mut state: RunState,
    now: Millis,
) -> Result<Planned> {
    let mut planned = Planned {
        state: RunState {
            status: state.status,
            input: Value::Null,
            steps: Vec::new(),
        },
        enqueue: None,
        return_value: None,
        end_reason: None,
        wake_at: None,
        timed_out: Vec::new(),
    };
    // Every decision but a wait changes a step or ends the run, and a step is
    // started at most once here: the loop is bounded by the steps' count.
    for _ in 0..=4 * state.steps.len() + 2 {
        let decision = next(definition, &state, now);
        match &decision {
            Decision::Start {
                position,
                variables,
            } => {
                if planned.enqueue.is_some() {
                    break;
                }
                let step = definition
                    .steps
                    .get(*position)
                    .or(definition.on_failure.as_ref())
                    .expect("a step of the definition");
                match execution_for(ctx, organization_id, run_id, step, variables, now).await? {
                    Ok(execution) => {
                        state.started(definition, *position, &execution.id, now);
                        planned.enqueue = Some(execution);
                    }
                    Err(reason) => state.apply(
                        definition,
                        &Decision::Fail {
                            position: *position,
                            reason,
                        },
                    ),
                }
            }
            Decision::TimedOut { position } => {
                planned
                    .timed_out
                    .extend(state.steps[*position].execution_id.clone());
                planned.wake_at = Some(now + TIMED_OUT_RECHECK_MS);
                break;
            }
            Decision::Wait { until } => {
                planned.wake_at = *until;
                break;
            }
            Decision::End {
                return_value,
                reason,
                ..
            } => {
                planned.return_value = return_value.clone();
                planned.end_reason = reason.clone();
                state.apply(definition, &decision);
                break;
            }
            Decision::Skip { .. } | Decision::Fail { .. } | Decision::RetryAt { .. } => {
                state.apply(definition, &decision)
            }
        }
    }
    planned.state = state;
    Ok(planned)
}

/// The step's execution: the robot's pinned or newest version, the variables
/// resolved against its declarations. `Ok(Err(reason))` fails the step (the
/// robot is gone, a variable does not fit); `Err` is the store's failure.
async fn execution_for(
    ctx: &Context,
    organization_id: &str,
    run_id: &str,
    step: &regente_flows::Step,
    variables: &Map<String, Value>,
    now: Millis,
) -> Result<Result<NewExecution, String>> {
    let version = match step.robot_version {
        None => ctx
            .store
            .latest_robot_version(organization_id, &step.robot_id)
            .await
            .map(Some),
        Some(pinned) => ctx
            .store
            .get_robot(organization_id, &step.robot_id)
            .await
            .map(|robot| robot.versions.into_iter().find(|v| v.version == pinned)),
    };
    let version = match version {
        Ok(Some(version)) => version,
        Ok(None) | Err(regente_store::Error::NotFound) => {
            return Ok(Err(format!(
                "robot {} (version {}) not found",
                step.robot_id,
                step.robot_version
                    .map_or("newest".to_owned(), |v| v.to_string())
            )))
        }
        Err(e) => return Err(e.into()),
    };
    let manifest = match ctx.manifests.parse(&version) {
        Ok(manifest) => manifest,
        Err(e) => return Ok(Err(format!("the robot's manifest cannot be read: {e}"))),
    };
    let requested: Vec<RequestVariable> = variables
        .iter()
        .map(|(name, value)| RequestVariable {
            name: name.clone(),
            kind: Some(kind_of(value).as_str().to_owned()),
            value: value.clone(),
        })
        .collect();
    let resolved = match resolve_variables(&manifest.variables, &requested) {
        Ok(resolved) => resolved,
        Err(e) => return Ok(Err(e.to_string())),
    };
    let variables = match super::credentials::seal_secret_variables(
        ctx,
        organization_id,
        &manifest,
        resolved.to_json(),
    ) {
        Ok(variables) => variables,
        Err(e) => {
            return Ok(Err(format!(
                "the step's secret variables cannot be sealed: {e}"
            )))
        }
    };
    Ok(Ok(NewExecution {
        id: new_id(),
        organization_id: organization_id.to_owned(),
        runtime_id: step.runtime_id.clone(),
        robot_id: step.robot_id.clone(),
        robot_version: version.version,
        variables,
        init: now,
        submitted_by: format!("flow:{run_id}"),
        max_attempts: manifest.retries + 1,
        flow_run_id: Some(run_id.to_owned()),
        flow_step_id: Some(step.id.clone()),
        schedule_id: None,
        scheduled_for: None,
    }))
}

/// The type a value of a template has, for a robot that does not declare the
/// variable (one that does decides the type itself).
fn kind_of(value: &Value) -> VariableType {
    match value {
        Value::String(_) => VariableType::Text,
        Value::Number(_) => VariableType::Number,
        Value::Bool(_) => VariableType::Boolean,
        _ => VariableType::Json,
    }
}
