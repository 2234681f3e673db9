use serde_json::{json, Value};

use super::*;

const ROBOT: &str = "0000000000000001";
const RUNTIME: &str = "0000000000000002";

fn step(id: &str) -> Value {
    json!({"id": id, "robot_id": ROBOT, "runtime_id": RUNTIME})
}

fn three_steps() -> Value {
    let mut process = step("process");
    process["when"] = json!("steps.fetch.return_value.count > input.MIN");
    process["variables"] = json!({"COUNT": "{{ steps.fetch.return_value.count }}"});
    process["retry"] = json!({"attempts": 3, "backoff_seconds": 2});
    let mut report = step("report");
    report["variables"] = json!({"SUMMARY": "processed: {{ steps.process.status }}"});
    json!({
        "name": "nightly",
        "variables": [{"name": "MIN", "type": "number", "default": 0}],
        "steps": [step("fetch"), process, report],
        "on_failure": {"id": "alert", "robot_id": ROBOT, "runtime_id": RUNTIME,
                       "variables": {"WHY": "{{ failure.reason }}"}},
    })
}

fn refusal(definition: Value) -> DefinitionError {
    Definition::parse(&definition).expect_err("should be refused")
}

#[test]
fn a_three_step_flow_is_read_whole() {
    let definition = Definition::parse(&three_steps()).unwrap();
    assert_eq!(definition.name, "nightly");
    assert_eq!(definition.variables.len(), 1);
    let ids: Vec<&str> = definition.steps.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["fetch", "process", "report"]);
    assert_eq!(
        definition.steps[1].retry,
        Retry {
            attempts: 3,
            backoff_seconds: 2
        }
    );
    assert!(definition.steps[1].when.is_some());
    assert_eq!(definition.on_failure.as_ref().unwrap().id, "alert");
}

#[test]
fn a_step_id_used_twice_is_refused_naming_the_second() {
    let mut flow = three_steps();
    flow["steps"][2]["id"] = json!("fetch");
    let error = refusal(flow);
    assert_eq!(error.field, "steps[2].id");
    assert!(error.message.contains("used twice"), "{error}");
    let mut flow = three_steps();
    flow["on_failure"]["id"] = json!("report");
    assert_eq!(refusal(flow).field, "on_failure.id");
}

#[test]
fn a_template_naming_an_unknown_step_is_refused() {
    let mut flow = three_steps();
    flow["steps"][2]["variables"]["SUMMARY"] = json!("{{ steps.nope.status }}");
    let error = refusal(flow);
    assert_eq!(error.field, "steps[2].variables.SUMMARY");
    assert!(error.message.contains("steps.nope"), "{error}");
}

#[test]
fn naming_itself_or_a_later_step_is_a_cycle() {
    let mut flow = three_steps();
    flow["steps"][1]["when"] = json!("steps.report.status == 'FINISHED'");
    let error = refusal(flow);
    assert_eq!(error.field, "steps[1].when");
    assert!(error.message.contains("cycle"), "{error}");
    assert!(
        error.message.contains("process") && error.message.contains("report"),
        "{error}"
    );
    let mut flow = three_steps();
    flow["steps"][0]["variables"] = json!({"X": "{{ steps.fetch.return_value }}"});
    assert!(refusal(flow).message.contains("cycle"));
}

#[test]
fn an_expression_that_does_not_parse_names_step_and_column() {
    let mut flow = three_steps();
    flow["steps"][2]["when"] = json!("steps.fetch.return_value.count >");
    let error = refusal(flow);
    assert_eq!(error.field, "steps[2].when");
    assert!(error.message.starts_with("column 33: "), "{error}");
    let mut flow = three_steps();
    flow["steps"][1]["variables"]["COUNT"] = json!("n = {{ steps.fetch.return_value.( }}");
    let error = refusal(flow);
    assert_eq!(error.field, "steps[1].variables.COUNT");
    assert!(error.message.starts_with("column "), "{error}");
}

#[test]
fn inputs_must_be_declared_and_failure_is_only_for_on_failure() {
    let mut flow = three_steps();
    flow["steps"][0]["variables"] = json!({"X": "{{ input.MAX }}"});
    let error = refusal(flow);
    assert_eq!(error.field, "steps[0].variables.X");
    assert!(error.message.contains("MIN"), "{error}");
    let mut flow = three_steps();
    flow["steps"][0]["variables"] = json!({"X": "{{ failure.reason }}"});
    assert!(refusal(flow).message.contains("on_failure"));
}

#[test]
fn fields_are_checked_by_name() {
    type Change = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(Change, &str)> = vec![
        (Box::new(|f| f["name"] = json!("")), "name"),
        (Box::new(|f| f["steps"] = json!([])), "steps"),
        (
            Box::new(|f| f["steps"][1]["robot_id"] = json!("nope")),
            "steps[1].robot_id",
        ),
        (
            Box::new(|f| f["steps"][1]["runtime_id"] = Value::Null),
            "steps[1].runtime_id",
        ),
        (
            Box::new(|f| f["steps"][1]["id"] = json!("a-b")),
            "steps[1].id",
        ),
        (
            Box::new(|f| f["steps"][1]["retry"]["attempts"] = json!(0)),
            "steps[1].retry.attempts",
        ),
        (
            Box::new(|f| f["steps"][1]["timeout_seconds"] = json!(-1)),
            "steps[1].timeout_seconds",
        ),
        (
            Box::new(|f| f["steps"][1]["colour"] = json!("red")),
            "steps[1].colour",
        ),
        (
            Box::new(|f| f["steps"][1]["variables"] = json!([1])),
            "steps[1].variables",
        ),
        (
            Box::new(|f| f["steps"][1]["variables"]["bad name"] = json!(1)),
            "steps[1].variables.bad name",
        ),
        (
            Box::new(|f| f["variables"][0]["type"] = json!("colour")),
            "variables[0]",
        ),
        (
            Box::new(|f| f["return"] = json!({"x": "{{ 1 + }}"})),
            "return.x",
        ),
    ];
    for (change, field) in cases {
        let mut flow = three_steps();
        change(&mut flow);
        assert_eq!(refusal(flow).field, field);
    }
}
