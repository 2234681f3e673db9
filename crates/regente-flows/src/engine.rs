//! The engine's decisions, as a pure function of a definition, a run's state and
//! the time: [`next`]. The server applies each decision to the state (and the
//! store, in one transaction) and asks again, until a decision waits or ends the
//! run.
//!
//! Steps run one after the other in list order. A step's `when` false skips it.
//! A failed step is tried again after its backoff while it has attempts left;
//! then it is passed over if it may `continue_on_error`, else the `on_failure`
//! step runs and the run ends ERROR. A CANCELED step (its execution canceled)
//! ends the run CANCELED. An expression failing at run time fails its step with
//! the expression's message, without retries: it would fail again.

use std::fmt;

use regente_core::ExecutionStatus;
use serde_json::{json, Map, Value};

use crate::definition::{Definition, Step};
use crate::expr::Scope;

pub type Millis = i64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepStatus {
    /// Not started (or back for a retry).
    Pendent,
    /// Its execution is queued or running.
    Running,
    Finished,
    Error,
    Canceled,
    /// Its `when` was false.
    Skipped,
}

impl StepStatus {
    pub const ALL: [StepStatus; 6] = [
        StepStatus::Pendent,
        StepStatus::Running,
        StepStatus::Finished,
        StepStatus::Error,
        StepStatus::Canceled,
        StepStatus::Skipped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Pendent => "PENDENT",
            StepStatus::Running => "RUNNING",
            StepStatus::Finished => "FINISHED",
            StepStatus::Error => "ERROR",
            StepStatus::Canceled => "CANCELED",
            StepStatus::Skipped => "SKIPPED",
        }
    }

    pub fn parse(text: &str) -> Option<StepStatus> {
        StepStatus::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// A step's status from its execution's end.
    pub fn of_execution(status: ExecutionStatus) -> StepStatus {
        match status {
            ExecutionStatus::Pendent => StepStatus::Pendent,
            ExecutionStatus::Running => StepStatus::Running,
            ExecutionStatus::Finished => StepStatus::Finished,
            ExecutionStatus::Error => StepStatus::Error,
            ExecutionStatus::Canceled => StepStatus::Canceled,
        }
    }
}

impl fmt::Display for StepStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One step of a run: the definition's steps in order, then `on_failure` if the
/// definition has one.
#[derive(Debug, Clone, PartialEq)]
pub struct StepState {
    pub id: String,
    pub status: StepStatus,
    /// Tries started so far.
    pub attempt: u32,
    /// The current (or last) try's execution.
    pub execution_id: Option<String>,
    pub return_value: Option<Value>,
    /// Why it failed or was skipped, in words.
    pub reason: Option<String>,
    /// A retry waits until then.
    pub not_before: Option<Millis>,
    /// Its execution is canceled as timed out at this time.
    pub deadline: Option<Millis>,
}

impl StepState {
    pub fn new(id: &str) -> StepState {
        StepState {
            id: id.to_owned(),
            status: StepStatus::Pendent,
            attempt: 0,
            execution_id: None,
            return_value: None,
            reason: None,
            not_before: None,
            deadline: None,
        }
    }
}

/// What [`next`] reads of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct RunState {
    /// RUNNING until the run ends.
    pub status: ExecutionStatus,
    /// The run's resolved inputs, `{NAME: value}`.
    pub input: Value,
    pub steps: Vec<StepState>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Queue the step's execution with these variables (`{NAME: value}`).
    Start {
        position: usize,
        variables: Map<String, Value>,
    },
    /// Its `when` is false: SKIPPED.
    Skip { position: usize },
    /// It fails without running (an expression failed, or its execution could
    /// not be queued).
    Fail { position: usize, reason: String },
    /// Its try failed with attempts left: PENDENT again, not before `at`.
    RetryAt { position: usize, at: Millis },
    /// Its execution ran past the step's timeout: cancel it.
    TimedOut { position: usize },
    /// Nothing to do until an execution ends, or until `until`.
    Wait { until: Option<Millis> },
    End {
        status: ExecutionStatus,
        return_value: Option<Value>,
        reason: Option<String>,
    },
}

impl RunState {
    /// A new run: every step PENDENT.
    pub fn new(definition: &Definition, input: Value) -> RunState {
        RunState {
            status: ExecutionStatus::Running,
            input,
            steps: definition
                .every_step()
                .map(|(_, step)| StepState::new(&step.id))
                .collect(),
        }
    }

    /// What expressions see: `input`, and every step that has a state.
    fn scope(&self, failure: Option<Value>) -> Scope {
        Scope {
            input: self.input.clone(),
            steps: self
                .steps
                .iter()
                .map(|step| {
                    let view = json!({
                        "status": step.status.as_str(),
                        "return_value": step.return_value,
                        "execution_id": step.execution_id,
                    });
                    (step.id.clone(), view)
                })
                .collect(),
            failure,
        }
    }

    /// Applies a decision other than `Start` (see [`RunState::started`]) and
    /// `TimedOut` (whose effect is the cancel). `now` dates nothing here but is
    /// the time the decision was made at.
    pub fn apply(&mut self, definition: &Definition, decision: &Decision) {
        match decision {
            Decision::Skip { position } => {
                let step = &mut self.steps[*position];
                step.status = StepStatus::Skipped;
                step.reason = Some("its condition was false".into());
            }
            Decision::Fail { position, reason } => {
                let attempts = step_of(definition, *position).retry.attempts;
                let step = &mut self.steps[*position];
                step.status = StepStatus::Error;
                step.reason = Some(reason.clone());
                // Not tried again: the same expression would fail the same way.
                step.attempt = step.attempt.max(attempts);
            }
            Decision::RetryAt { position, at } => {
                let step = &mut self.steps[*position];
                step.status = StepStatus::Pendent;
                step.not_before = Some(*at);
                step.deadline = None;
            }
            Decision::End { status, .. } => self.status = *status,
            Decision::Start { .. } | Decision::TimedOut { .. } | Decision::Wait { .. } => {}
        }
    }

    /// The step's execution was queued.
    pub fn started(
        &mut self,
        definition: &Definition,
        position: usize,
        execution_id: &str,
        now: Millis,
    ) {
        let timeout = step_of(definition, position).timeout_seconds;
        let step = &mut self.steps[position];
        step.status = StepStatus::Running;
        step.attempt += 1;
        step.execution_id = Some(execution_id.to_owned());
        step.return_value = None;
        step.reason = None;
        step.not_before = None;
        step.deadline = timeout.map(|seconds| now + seconds as Millis * 1000);
    }

    /// The step running `execution_id` ended; `false` if no RUNNING step has
    /// that execution (already recorded, or not this run's current try). A
    /// CANCELED execution past its step's deadline timed out: ERROR.
    pub fn execution_ended(
        &mut self,
        execution_id: &str,
        status: ExecutionStatus,
        return_value: Option<Value>,
        reason: Option<String>,
        now: Millis,
    ) -> bool {
        let Some(step) = self.steps.iter_mut().find(|step| {
            step.status == StepStatus::Running && step.execution_id.as_deref() == Some(execution_id)
        }) else {
            return false;
        };
        let timed_out = status == ExecutionStatus::Canceled
            && self.status == ExecutionStatus::Running
            && step.deadline.is_some_and(|deadline| now >= deadline);
        step.status = if timed_out {
            StepStatus::Error
        } else {
            StepStatus::of_execution(status)
        };
        step.return_value = return_value;
        step.reason = if timed_out {
            Some("the step ran past its timeout and was stopped".into())
        } else {
            reason
        };
        step.deadline = None;
        true
    }

    /// Makes an ended run go on from its failed (or canceled) step: that step
    /// and `on_failure` PENDENT again with fresh attempts, the run RUNNING. The
    /// steps that succeeded keep their results. `false` when the run has no
    /// such step (it is running, or it finished).
    pub fn retry(&mut self, definition: &Definition) -> bool {
        if self.status == ExecutionStatus::Running {
            return false;
        }
        // The first step that did not succeed (a step that failed but may
        // continue on error counts as done).
        let failed = definition
            .steps
            .iter()
            .zip(&self.steps)
            .position(|(step, state)| match state.status {
                StepStatus::Finished | StepStatus::Skipped => false,
                StepStatus::Error => !step.continue_on_error,
                _ => true,
            });
        let Some(failed) = failed else {
            return false;
        };
        // Later steps never ran; on_failure, last, may run again.
        for step in self.steps[failed..].iter_mut() {
            *step = StepState::new(&step.id);
        }
        self.status = ExecutionStatus::Running;
        true
    }
}

fn step_of(definition: &Definition, position: usize) -> &Step {
    definition.steps.get(position).unwrap_or_else(|| {
        definition
            .on_failure
            .as_ref()
            .expect("a position past the steps is on_failure")
    })
}

/// What to do next for a run.
pub fn next(definition: &Definition, run: &RunState, now: Millis) -> Decision {
    if run.status != ExecutionStatus::Running {
        return Decision::Wait { until: None };
    }
    let main = definition.steps.len();
    let mut failed = None;
    for (position, step) in definition.steps.iter().enumerate() {
        let state = &run.steps[position];
        match state.status {
            StepStatus::Finished | StepStatus::Skipped => {}
            StepStatus::Error => {
                if state.attempt < step.retry.attempts {
                    let at = now + step.retry.backoff_seconds as Millis * 1000;
                    return Decision::RetryAt { position, at };
                }
                if !step.continue_on_error {
                    failed = Some(position);
                    break;
                }
            }
            StepStatus::Canceled => {
                return Decision::End {
                    status: ExecutionStatus::Canceled,
                    return_value: None,
                    reason: Some(format!("step {:?} was canceled", step.id)),
                }
            }
            StepStatus::Running => return wait_on(position, state, now),
            StepStatus::Pendent => return start(definition, run, position, None, now),
        }
    }
    let Some(failed) = failed else {
        return Decision::End {
            status: ExecutionStatus::Finished,
            return_value: match &definition.return_value {
                Some(template) => match template.render(&run.scope(None)) {
                    Ok(value) => Some(value),
                    Err(reason) => {
                        return Decision::End {
                            status: ExecutionStatus::Error,
                            return_value: None,
                            reason: Some(format!("the flow's return value failed: {reason}")),
                        }
                    }
                },
                None => run.steps[..main]
                    .iter()
                    .rev()
                    .find(|step| step.status != StepStatus::Skipped)
                    .and_then(|step| step.return_value.clone()),
            },
            reason: None,
        };
    };
    let failed_state = &run.steps[failed];
    let failure_reason = format!(
        "step {:?} failed: {}",
        failed_state.id,
        failed_state.reason.as_deref().unwrap_or("no reason given")
    );
    if definition.on_failure.is_some() {
        let state = &run.steps[main];
        match state.status {
            StepStatus::Pendent => {
                let failure = json!({
                    "step": failed_state.id,
                    "status": failed_state.status.as_str(),
                    "reason": failed_state.reason,
                });
                return start(definition, run, main, Some(failure), now);
            }
            StepStatus::Running => return wait_on(main, state, now),
            _ => {}
        }
    }
    Decision::End {
        status: ExecutionStatus::Error,
        return_value: None,
        reason: Some(failure_reason),
    }
}

fn wait_on(position: usize, state: &StepState, now: Millis) -> Decision {
    match state.deadline {
        Some(deadline) if deadline <= now => Decision::TimedOut { position },
        deadline => Decision::Wait { until: deadline },
    }
}

fn start(
    definition: &Definition,
    run: &RunState,
    position: usize,
    failure: Option<Value>,
    now: Millis,
) -> Decision {
    let state = &run.steps[position];
    if let Some(at) = state.not_before.filter(|at| *at > now) {
        return Decision::Wait { until: Some(at) };
    }
    let step = step_of(definition, position);
    let scope = run.scope(failure);
    if let Some(when) = &step.when {
        match when.evaluate(&scope) {
            Ok(Value::Bool(true)) => {}
            Ok(Value::Bool(false)) => return Decision::Skip { position },
            Ok(other) => {
                return Decision::Fail {
                    position,
                    reason: format!("its condition gave {other}, not true or false"),
                }
            }
            Err(reason) => {
                return Decision::Fail {
                    position,
                    reason: format!("its condition failed: {reason}"),
                }
            }
        }
    }
    let mut variables = Map::new();
    for (name, template) in &step.variables {
        match template.render(&scope) {
            Ok(value) => {
                variables.insert(name.clone(), value);
            }
            Err(reason) => {
                return Decision::Fail {
                    position,
                    reason: format!("variable {name} failed: {reason}"),
                }
            }
        }
    }
    Decision::Start {
        position,
        variables,
    }
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
