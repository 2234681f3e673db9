use regente_core::ExecutionStatus::{self, Canceled, Error, Finished};
use serde_json::{json, Value};

use super::*;

const ROBOT: &str = "0000000000000001";
const RUNTIME: &str = "0000000000000002";
const NOW: Millis = 1_000_000;

fn step(id: &str, extra: Value) -> Value {
    let mut step = json!({"id": id, "robot_id": ROBOT, "runtime_id": RUNTIME});
    for (key, value) in extra.as_object().unwrap() {
        step[key] = value.clone();
    }
    step
}

fn flow(steps: Vec<Value>, on_failure: Option<Value>, more: Value) -> Definition {
    let mut body = json!({
        "name": "f",
        "variables": [{"name": "MIN", "type": "number", "default": 0}],
        "steps": steps,
    });
    if let Some(on_failure) = on_failure {
        body["on_failure"] = on_failure;
    }
    for (key, value) in more.as_object().unwrap() {
        body[key] = value.clone();
    }
    Definition::parse(&body).unwrap()
}

fn three() -> Definition {
    flow(
        vec![
            step("fetch", json!({})),
            step(
                "process",
                json!({
                    "when": "steps.fetch.return_value.count > input.MIN",
                    "variables": {"COUNT": "{{ steps.fetch.return_value.count }}", "NOTE": "n={{ steps.fetch.return_value.count }}"},
                    "retry": {"attempts": 2, "backoff_seconds": 5},
                }),
            ),
            step(
                "report",
                json!({"variables": {"S": "{{ steps.process.status }}"}}),
            ),
        ],
        Some(step(
            "alert",
            json!({"variables": {"WHY": "{{ failure }}"}}),
        )),
        json!({}),
    )
}

fn run(definition: &Definition) -> RunState {
    RunState::new(definition, json!({"MIN": 0}))
}

/// Starts the step `next` says to start, as the server does.
fn start_expected(
    definition: &Definition,
    state: &mut RunState,
    position: usize,
) -> Map<String, Value> {
    match next(definition, state, NOW) {
        Decision::Start {
            position: at,
            variables,
        } => {
            assert_eq!(at, position);
            state.started(
                definition,
                position,
                &format!("e{position}-{}", state.steps[position].attempt),
                NOW,
            );
            variables
        }
        other => panic!("expected step {position} to start, got {other:?}"),
    }
}

fn end(state: &mut RunState, position: usize, status: ExecutionStatus, value: Option<Value>) {
    let execution = state.steps[position].execution_id.clone().unwrap();
    assert!(state.execution_ended(&execution, status, value, Some(format!("{status}")), NOW));
}

#[test]
fn a_flow_runs_its_steps_in_order_passing_values() {
    let definition = three();
    let mut state = run(&definition);
    assert!(start_expected(&definition, &mut state, 0).is_empty());
    assert_eq!(
        next(&definition, &state, NOW),
        Decision::Wait { until: None }
    );
    end(&mut state, 0, Finished, Some(json!({"count": 3})));
    let variables = start_expected(&definition, &mut state, 1);
    assert_eq!(variables["COUNT"], json!(3));
    assert_eq!(variables["NOTE"], json!("n=3"));
    end(&mut state, 1, Finished, Some(json!("done")));
    assert_eq!(
        start_expected(&definition, &mut state, 2)["S"],
        json!("FINISHED")
    );
    end(&mut state, 2, Finished, Some(json!({"sent": true})));
    assert_eq!(
        next(&definition, &state, NOW),
        Decision::End {
            status: Finished,
            return_value: Some(json!({"sent": true})),
            reason: None
        }
    );
}

#[test]
fn a_false_condition_skips_the_step() {
    let definition = three();
    let mut state = run(&definition);
    start_expected(&definition, &mut state, 0);
    end(&mut state, 0, Finished, Some(json!({"count": 0})));
    let decision = next(&definition, &state, NOW);
    assert_eq!(decision, Decision::Skip { position: 1 });
    state.apply(&definition, &decision);
    assert_eq!(state.steps[1].status, StepStatus::Skipped);
    assert_eq!(
        start_expected(&definition, &mut state, 2)["S"],
        json!("SKIPPED")
    );
}

#[test]
fn a_failed_try_with_attempts_left_is_retried_after_its_backoff() {
    let definition = three();
    let mut state = run(&definition);
    start_expected(&definition, &mut state, 0);
    end(&mut state, 0, Finished, Some(json!({"count": 1})));
    start_expected(&definition, &mut state, 1);
    end(&mut state, 1, Error, None);
    let decision = next(&definition, &state, NOW);
    assert_eq!(
        decision,
        Decision::RetryAt {
            position: 1,
            at: NOW + 5_000
        }
    );
    state.apply(&definition, &decision);
    assert_eq!(
        next(&definition, &state, NOW + 4_999),
        Decision::Wait {
            until: Some(NOW + 5_000)
        }
    );
    match next(&definition, &state, NOW + 5_000) {
        Decision::Start { position: 1, .. } => {}
        other => panic!("{other:?}"),
    }
    state.started(&definition, 1, "second", NOW + 5_000);
    assert_eq!(state.steps[1].attempt, 2);
}

#[test]
fn a_failure_past_its_attempts_runs_on_failure_then_ends_the_run_error() {
    let definition = three();
    let mut state = run(&definition);
    start_expected(&definition, &mut state, 0);
    end(&mut state, 0, Finished, Some(json!({"count": 1})));
    for _ in 0..2 {
        let decision = next(&definition, &state, NOW + 10_000_000);
        if let Decision::RetryAt { .. } = decision {
            state.apply(&definition, &decision);
        }
        state.started(
            &definition,
            1,
            &format!("try{}", state.steps[1].attempt),
            NOW,
        );
        end(&mut state, 1, Error, None);
    }
    let variables = start_expected(&definition, &mut state, 3);
    assert_eq!(
        variables["WHY"],
        json!({"step": "process", "status": "ERROR", "reason": "ERROR"})
    );
    assert_eq!(
        next(&definition, &state, NOW),
        Decision::Wait { until: None }
    );
    end(&mut state, 3, Finished, None);
    match next(&definition, &state, NOW) {
        Decision::End {
            status: Error,
            reason: Some(reason),
            ..
        } => assert!(reason.contains("process"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_failure_that_may_continue_goes_on() {
    let definition = flow(
        vec![
            step("a", json!({"continue_on_error": true})),
            step("b", json!({})),
        ],
        None,
        json!({}),
    );
    let mut state = run(&definition);
    start_expected(&definition, &mut state, 0);
    end(&mut state, 0, Error, None);
    start_expected(&definition, &mut state, 1);
    end(&mut state, 1, Finished, Some(json!(1)));
    assert!(matches!(
        next(&definition, &state, NOW),
        Decision::End {
            status: Finished,
            ..
        }
    ));
}

#[test]
fn a_failure_without_on_failure_ends_the_run_error() {
    let definition = flow(
        vec![step("a", json!({})), step("b", json!({}))],
        None,
        json!({}),
    );
    let mut state = run(&definition);
    start_expected(&definition, &mut state, 0);
    end(&mut state, 0, Error, None);
    assert!(matches!(
        next(&definition, &state, NOW),
        Decision::End { status: Error, .. }
    ));
}

#[test]
fn a_canceled_step_ends_the_run_canceled() {
    let definition = three();
    let mut state = run(&definition);
    start_expected(&definition, &mut state, 0);
    end(&mut state, 0, Canceled, None);
    assert!(matches!(
        next(&definition, &state, NOW),
        Decision::End {
            status: Canceled,
            ..
        }
    ));
}

#[test]
fn an_expression_failing_at_run_time_fails_its_step_with_the_message() {
    let definition = three();
    let mut state = run(&definition);
    start_expected(&definition, &mut state, 0);
    // No `count` in the value: the condition fails.
    end(&mut state, 0, Finished, Some(json!({"total": 3})));
    let decision = next(&definition, &state, NOW);
    let Decision::Fail {
        position: 1,
        reason,
    } = &decision
    else {
        panic!("{decision:?}");
    };
    assert!(
        reason.contains("condition failed") && reason.contains("count"),
        "{reason}"
    );
    state.apply(&definition, &decision);
    assert_eq!(state.steps[1].status, StepStatus::Error);
    // Not retried, though the step has attempts left: on_failure runs.
    assert!(matches!(
        next(&definition, &state, NOW),
        Decision::Start { position: 3, .. }
    ));
}

#[test]
fn a_return_template_makes_the_run_s_value() {
    let definition = flow(
        vec![step("a", json!({})), step("b", json!({"when": "false"}))],
        None,
        json!({"return": {"a": "{{ steps.a.return_value }}", "b": "{{ steps.b.status }}"}}),
    );
    let mut state = run(&definition);
    start_expected(&definition, &mut state, 0);
    end(&mut state, 0, Finished, Some(json!([1, 2])));
    let skip = next(&definition, &state, NOW);
    state.apply(&definition, &skip);
    assert_eq!(
        next(&definition, &state, NOW),
        Decision::End {
            status: Finished,
            return_value: Some(json!({"a": [1, 2], "b": "SKIPPED"})),
            reason: None
        }
    );
}

#[test]
fn without_a_return_template_the_last_step_that_ran_gives_the_value() {
    let definition = flow(
        vec![step("a", json!({})), step("b", json!({"when": "false"}))],
        None,
        json!({}),
    );
    let mut state = run(&definition);
    start_expected(&definition, &mut state, 0);
    end(&mut state, 0, Finished, Some(json!("from a")));
    let skip = next(&definition, &state, NOW);
    state.apply(&definition, &skip);
    assert!(matches!(
        next(&definition, &state, NOW),
        Decision::End { return_value: Some(value), .. } if value == json!("from a")
    ));
}

#[test]
fn a_step_past_its_timeout_is_stopped_and_fails() {
    let definition = flow(
        vec![step("slow", json!({"timeout_seconds": 2}))],
        None,
        json!({}),
    );
    let mut state = run(&definition);
    start_expected(&definition, &mut state, 0);
    assert_eq!(
        next(&definition, &state, NOW),
        Decision::Wait {
            until: Some(NOW + 2_000)
        }
    );
    assert_eq!(
        next(&definition, &state, NOW + 2_000),
        Decision::TimedOut { position: 0 }
    );
    let execution = state.steps[0].execution_id.clone().unwrap();
    assert!(state.execution_ended(&execution, Canceled, None, None, NOW + 2_100));
    assert_eq!(state.steps[0].status, StepStatus::Error);
    assert!(state.steps[0]
        .reason
        .as_deref()
        .unwrap()
        .contains("timeout"));
}

#[test]
fn an_end_already_recorded_or_of_another_try_changes_nothing() {
    let definition = three();
    let mut state = run(&definition);
    start_expected(&definition, &mut state, 0);
    end(&mut state, 0, Finished, Some(json!({"count": 1})));
    let before = state.clone();
    assert!(!state.execution_ended("e0-0", Error, None, None, NOW));
    assert!(!state.execution_ended("unknown", Error, None, None, NOW));
    assert_eq!(state, before);
}

#[test]
fn retry_resumes_at_the_failed_step_keeping_the_ones_that_succeeded() {
    let definition = flow(
        vec![
            step("a", json!({})),
            step("b", json!({})),
            step("c", json!({})),
        ],
        Some(step("alert", json!({}))),
        json!({}),
    );
    let mut state = run(&definition);
    start_expected(&definition, &mut state, 0);
    end(&mut state, 0, Finished, Some(json!(1)));
    start_expected(&definition, &mut state, 1);
    end(&mut state, 1, Error, None);
    start_expected(&definition, &mut state, 3);
    end(&mut state, 3, Finished, None);
    let decision = next(&definition, &state, NOW);
    state.apply(&definition, &decision);
    assert_eq!(state.status, Error);
    assert!(
        !run(&definition).retry(&definition),
        "a running run has nothing to retry"
    );
    assert!(state.retry(&definition));
    assert_eq!(state.status, ExecutionStatus::Running);
    assert_eq!(state.steps[0].status, StepStatus::Finished);
    assert_eq!(state.steps[0].return_value, Some(json!(1)));
    assert_eq!(state.steps[1], StepState::new("b"));
    assert_eq!(state.steps[3], StepState::new("alert"));
    start_expected(&definition, &mut state, 1);
}

#[test]
fn an_ended_run_decides_nothing() {
    let definition = three();
    let mut state = run(&definition);
    state.status = Canceled;
    assert_eq!(
        next(&definition, &state, NOW),
        Decision::Wait { until: None }
    );
}

#[test]
fn statuses_read_back_from_their_names() {
    for status in StepStatus::ALL {
        assert_eq!(StepStatus::parse(status.as_str()), Some(status));
    }
    assert_eq!(StepStatus::parse("LOST"), None);
}
