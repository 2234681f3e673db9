//! Flows end to end: a 3-step flow passing values between steps, a false
//! condition, retries then `on_failure`, a flow retry resuming at the failed
//! step, a cancel stopping the running step's robot, a server SIGKILLed between
//! two steps, and definitions refused naming their field.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::*;

const RUN: Duration = Duration::from_secs(60);

/// Every step appends `STEP COUNT NOTE` to the ledger and returns
/// `{"count": N, "step": STEP}`; it fails while `$GATE` names a missing file, and
/// sleeps `$SLEEP` seconds first.
const STEP_SCRIPT: &str = r#"
echo "$REGENTE_VAR_STEP ${REGENTE_VAR_COUNT:-} ${REGENTE_VAR_NOTE:-}" >> "$REGENTE_VAR_LEDGER"
sleep "${REGENTE_VAR_SLEEP:-0}"
if [ -n "${REGENTE_VAR_GATE:-}" ] && [ ! -f "$REGENTE_VAR_GATE" ]; then
  echo "::error::the gate is closed"
  exit 3
fi
echo "::return::{\"count\": ${REGENTE_VAR_N:-0}, \"step\": \"$REGENTE_VAR_STEP\"}"
"#;

struct Rig {
    admin: String,
    runtime: String,
    key: String,
    robot: String,
    dir: tempfile::TempDir,
}

impl Rig {
    fn new(server: &Api) -> Rig {
        let admin = server.admin_token();
        let (runtime, key) = server.create_runtime(&admin, "rt-flows");
        let robot = upload_shell_robot(server, &admin, "flow-step", STEP_SCRIPT, "");
        Rig {
            admin,
            runtime,
            key,
            robot,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn ledger_path(&self) -> PathBuf {
        self.dir.path().join("ledger")
    }

    fn ledger(&self) -> Vec<String> {
        std::fs::read_to_string(self.ledger_path())
            .unwrap_or_default()
            .lines()
            .map(|line| line.trim_end().to_owned())
            .collect()
    }

    fn step(&self, id: &str, variables: Value) -> Value {
        let mut all = json!({"STEP": id, "LEDGER": self.ledger_path().to_str().unwrap()});
        for (name, value) in variables.as_object().unwrap() {
            all[name] = value.clone();
        }
        json!({"id": id, "robot_id": self.robot, "runtime_id": self.runtime, "variables": all})
    }

    /// fetch -> process (when fetch counted something) -> report.
    fn three_steps(&self, name: &str) -> Value {
        let mut process = self.step(
            "process",
            json!({"COUNT": "{{ steps.fetch.return_value.count }}"}),
        );
        process["when"] = json!("steps.fetch.return_value.count > 0");
        json!({
            "name": name,
            "variables": [{"name": "N", "type": "number", "default": 0}],
            "steps": [
                self.step("fetch", json!({"N": "{{ input.N }}"})),
                process,
                self.step("report", json!({
                    "NOTE": "processed={{ steps.process.status }},count={{ steps.fetch.return_value.count }}",
                    "N": "{{ steps.fetch.return_value.count * 10 }}",
                })),
            ],
        })
    }

    fn save(&self, server: &Api, flow: &Value) -> String {
        let reply = server
            .req("POST", "/api/admin/flows")
            .auth(&self.admin)
            .json(flow)
            .send()
            .expect(201);
        reply.json()["id"].as_str().unwrap().to_owned()
    }
}

fn run_flow(server: &Api, token: &str, flow: &str, n: i64) -> String {
    server
        .req("POST", &format!("/api/integration/v2/flows/{flow}/run"))
        .auth(token)
        .json(&json!({"variables": [{"name": "N", "value": n}]}))
        .send()
        .expect(200)
        .json()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn flow_run(server: &Api, token: &str, run: &str) -> Value {
    server
        .get(&format!("/api/integration/v2/flows/runs/{run}"), token)
        .expect(200)
        .json()
}

fn wait_run(server: &Api, token: &str, run: &str, status: &str) -> Value {
    wait_for(RUN, &format!("flow run {run} to be {status}"), || {
        let body = flow_run(server, token, run);
        if body["status"] == status {
            Ok(body)
        } else {
            Err(body)
        }
    })
}

fn statuses(run: &Value) -> Vec<String> {
    run["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|step| {
            format!(
                "{}={}",
                step["id"].as_str().unwrap(),
                step["status"].as_str().unwrap()
            )
        })
        .collect()
}

/// The executions of a flow run, from the admin API.
fn executions_of(server: &Api, admin: &str, run: &str) -> Vec<Value> {
    server
        .all_executions(admin, "")
        .into_iter()
        .filter(|e| e["flow_run_id"] == run)
        .collect()
}

#[test]
fn a_three_step_flow_passes_values_and_a_false_condition_skips() {
    let server = TestServer::start();
    let rig = Rig::new(&server);
    let _agent = TestAgent::start(&server, &rig.key, 1);
    server.create_user(&rig.admin, "erp", "erp-password-1", "integration");
    let integration = server.login("erp", "erp-password-1");
    let flow = rig.save(&server, &rig.three_steps("nightly"));

    let run = run_flow(&server, &integration, &flow, 3);
    let done = wait_run(&server, &integration, &run, "FINISHED");
    assert_eq!(
        statuses(&done),
        ["fetch=FINISHED", "process=FINISHED", "report=FINISHED"]
    );
    assert_eq!(
        done["steps"][0]["returnValue"],
        json!({"count": 3, "step": "fetch"})
    );
    // The report's N is a typed template (3 * 10), its NOTE text.
    assert_eq!(done["returnValue"], json!({"count": 30, "step": "report"}));
    assert!(done["end"].as_i64().unwrap() >= done["init"].as_i64().unwrap());
    assert_eq!(
        rig.ledger(),
        ["fetch", "process 3", "report  processed=FINISHED,count=3"]
    );
    // Each step is an ordinary execution: its result route works.
    let report = done["steps"][2]["execution_id"].as_str().unwrap();
    let result = server
        .result(&integration, &rig.runtime, report)
        .expect(200)
        .json();
    assert_eq!(result["status"], "FINISHED");
    let detail = server.execution(&rig.admin, report);
    assert_eq!(detail["flow_run_id"], run.as_str());
    assert_eq!(detail["flow_step_id"], "report");
    assert_eq!(detail["submitted_by"], format!("flow:{run}"));

    let run = run_flow(&server, &integration, &flow, 0);
    let done = wait_run(&server, &integration, &run, "FINISHED");
    assert_eq!(
        statuses(&done),
        ["fetch=FINISHED", "process=SKIPPED", "report=FINISHED"]
    );
    assert_eq!(done["steps"][1]["execution_id"], Value::Null);
    assert_eq!(executions_of(&server, &rig.admin, &run).len(), 2);
    assert_eq!(
        rig.ledger().last().unwrap(),
        "report  processed=SKIPPED,count=0"
    );

    // The flow's runs, newest first, for admins only; a bad limit says so.
    let newest = done;
    let path = format!("/api/admin/flows/{flow}/runs");
    let listed = server.get(&path, &rig.admin).expect(200).json();
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2, "{listed}");
    assert_eq!(ids[0], newest["id"].as_str().unwrap(), "newest first");
    assert_eq!(listed[0]["status"], "FINISHED");
    let one = server
        .get(&format!("{path}?limit=1"), &rig.admin)
        .expect(200)
        .json();
    assert_eq!(one.as_array().unwrap().len(), 1);
    for limit in ["0", "201", "x"] {
        let reply = server.get(&format!("{path}?limit={limit}"), &rig.admin);
        let body = assert_error(&reply, 400, &path);
        assert!(message(&body).contains("limit"), "{body}");
    }
    assert_error(&server.get(&path, &integration), 403, &path);
    let unknown = "/api/admin/flows/0123456789abcdef/runs";
    assert_error(&server.get(unknown, &rig.admin), 404, unknown);
}

#[test]
fn a_failing_step_retries_then_on_failure_runs_and_a_retry_resumes_there() {
    let server = TestServer::start();
    let rig = Rig::new(&server);
    let _agent = TestAgent::start(&server, &rig.key, 1);
    let gate = rig.dir.path().join("gate");
    let mut flow = rig.three_steps("fragile");
    flow["steps"][1]["variables"]["GATE"] = json!(gate.to_str().unwrap());
    flow["steps"][1]["retry"] = json!({"attempts": 2, "backoff_seconds": 0});
    flow["on_failure"] = rig.step(
        "alert",
        json!({"NOTE": "{{ failure.step }} {{ failure.status }}: {{ failure.reason }}"}),
    );
    let flow = rig.save(&server, &flow);

    let run = run_flow(&server, &rig.admin, &flow, 2);
    let failed = wait_run(&server, &rig.admin, &run, "ERROR");
    assert_eq!(
        statuses(&failed),
        [
            "fetch=FINISHED",
            "process=ERROR",
            "report=PENDENT",
            "alert=FINISHED"
        ]
    );
    assert_eq!(failed["steps"][1]["attempt"], 2);
    assert!(
        failed["reason"].as_str().unwrap().contains("process"),
        "{failed}"
    );
    let ledger = rig.ledger();
    assert_eq!(&ledger[..3], ["fetch", "process 2", "process 2"]);
    assert!(
        ledger[3].starts_with("alert  process ERROR: "),
        "{ledger:?}"
    );
    assert_eq!(ledger.len(), 4);

    // Retrying the run resumes at the failed step; fetch keeps its result.
    std::fs::write(&gate, b"open").unwrap();
    let fetch_execution = failed["steps"][0]["execution_id"].clone();
    let retried = server
        .req(
            "POST",
            &format!("/api/integration/v2/flows/runs/{run}/retry"),
        )
        .auth(&rig.admin)
        .send()
        .expect(200)
        .json();
    assert_eq!(retried["status"], "RUNNING");
    let done = wait_run(&server, &rig.admin, &run, "FINISHED");
    assert_eq!(
        statuses(&done),
        [
            "fetch=FINISHED",
            "process=FINISHED",
            "report=FINISHED",
            "alert=PENDENT"
        ]
    );
    assert_eq!(done["steps"][0]["execution_id"], fetch_execution);
    assert_eq!(
        &rig.ledger()[4..],
        ["process 2", "report  processed=FINISHED,count=2"]
    );
    // A finished run has nothing to retry.
    let path = format!("/api/integration/v2/flows/runs/{run}/retry");
    assert_error(
        &server.req("POST", &path).auth(&rig.admin).send(),
        409,
        &path,
    );
}

#[test]
fn deleting_a_run_cancels_it_and_stops_its_running_robot() {
    let server = TestServer::start();
    let rig = Rig::new(&server);
    let _agent = TestAgent::start(&server, &rig.key, 1);
    let flow = json!({
        "name": "slow",
        "steps": [rig.step("wait", json!({"SLEEP": "60"})), rig.step("never", json!({}))],
    });
    let flow = rig.save(&server, &flow);
    let run = run_flow(&server, &rig.admin, &flow, 0);
    // RUNNING is committed when the run is handed out, before the robot is
    // spawned: the robot's own line in the ledger says it runs.
    let execution = wait_for(RUN, "the first step's robot to run", || {
        let body = flow_run(&server, &rig.admin, &run);
        let id = body["steps"][0]["execution_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let running = !id.is_empty()
            && server
                .result(&rig.admin, &rig.runtime, &id)
                .expect(200)
                .json()["status"]
                == "RUNNING"
            && rig.ledger() == ["wait"];
        if running {
            Ok(id)
        } else {
            Err(body)
        }
    });
    let path = format!("/api/integration/v2/flows/runs/{run}");
    server
        .req("DELETE", &path)
        .auth(&rig.admin)
        .send()
        .expect(200);
    let canceled = flow_run(&server, &rig.admin, &run);
    assert_eq!(canceled["status"], "CANCELED");
    wait_for(RUN, "the robot to be stopped", || {
        let result = server
            .result(&rig.admin, &rig.runtime, &execution)
            .expect(200)
            .json();
        if result["status"] == "CANCELED" {
            Ok(())
        } else {
            Err(result)
        }
    });
    let after = wait_for(RUN, "the step's end to be recorded", || {
        let body = flow_run(&server, &rig.admin, &run);
        if body["steps"][0]["status"] == "CANCELED" {
            Ok(body)
        } else {
            Err(body)
        }
    });
    assert_eq!(after["status"], "CANCELED");
    assert_eq!(after["steps"][1]["status"], "PENDENT");
    assert_eq!(rig.ledger(), ["wait"]);
    assert_error(
        &server.req("DELETE", &path).auth(&rig.admin).send(),
        409,
        &path,
    );
}

#[test]
fn a_server_killed_between_two_steps_queues_the_next_one_exactly_once() {
    // The engine is off: the first step (queued with the run) ends, and nothing
    // queues the second, as if the server died right after the first ended.
    let mut server = TestServer::start_with(&[("REGENTE_FLOW_ENGINE", "off")]);
    let rig = Rig::new(&server);
    let relay = Relay::start(&server.base);
    let _agent = TestAgent::start_on(&[relay.url()], &rig.key, 1);
    let flow = rig.save(&server, &rig.three_steps("kill"));
    let run = run_flow(&server, &rig.admin, &flow, 1);
    let first = flow_run(&server, &rig.admin, &run)["steps"][0]["execution_id"]
        .as_str()
        .unwrap()
        .to_owned();
    wait_for(RUN, "the first step to end", || {
        let result = server
            .result(&rig.admin, &rig.runtime, &first)
            .expect(200)
            .json();
        if result["status"] == "FINISHED" {
            Ok(())
        } else {
            Err(result)
        }
    });
    assert_eq!(executions_of(&server, &rig.admin, &run).len(), 1);

    server.kill9();
    server.set_env("REGENTE_FLOW_ENGINE", "on");
    server.start_again();
    relay.point_to(&server.base);

    let done = wait_run(&server, &rig.admin, &run, "FINISHED");
    assert_eq!(
        statuses(&done),
        ["fetch=FINISHED", "process=FINISHED", "report=FINISHED"]
    );
    assert_eq!(executions_of(&server, &rig.admin, &run).len(), 3);
    assert_eq!(
        rig.ledger(),
        ["fetch", "process 1", "report  processed=FINISHED,count=1"]
    );
    // Killed again and started again, the engine reads its stream from its
    // cursor: nothing runs twice.
    server.kill9();
    server.start_again();
    relay.point_to(&server.base);
    let again = flow_run(&server, &rig.admin, &run);
    assert_eq!(again, done);
    assert_eq!(executions_of(&server, &rig.admin, &run).len(), 3);
    assert_eq!(rig.ledger().len(), 3);
}

fn refused(server: &Api, admin: &str, flow: &Value, status: u16) -> String {
    let reply = server
        .req("POST", "/api/admin/flows")
        .auth(admin)
        .json(flow)
        .send();
    assert_error(&reply, status, "/api/admin/flows");
    reply.json()["message"].as_str().unwrap().to_owned()
}

#[test]
fn bad_definitions_are_refused_naming_the_field() {
    let server = TestServer::start();
    let rig = Rig::new(&server);
    let admin = &rig.admin;
    let base = rig.three_steps("bad");

    let mut twice = base.clone();
    twice["steps"][2]["id"] = json!("fetch");
    let message = refused(&server, admin, &twice, 400);
    assert!(message.starts_with("steps[2].id: "), "{message}");

    let mut unknown = base.clone();
    unknown["steps"][2]["variables"]["NOTE"] = json!("{{ steps.nope.status }}");
    let message = refused(&server, admin, &unknown, 400);
    assert!(
        message.starts_with("steps[2].variables.NOTE: "),
        "{message}"
    );
    assert!(message.contains("steps.nope"), "{message}");

    let mut cycle = base.clone();
    cycle["steps"][1]["when"] = json!("steps.report.status == 'FINISHED'");
    let message = refused(&server, admin, &cycle, 400);
    assert!(message.starts_with("steps[1].when: "), "{message}");
    assert!(message.contains("cycle"), "{message}");

    let mut unparsable = base.clone();
    unparsable["steps"][1]["when"] = json!("steps.fetch.return_value.count >");
    let message = refused(&server, admin, &unparsable, 400);
    assert!(
        message.starts_with("steps[1].when: column 33: "),
        "{message}"
    );

    // Another organisation's robot and runtime answer as unknown ones.
    let other = server
        .req("POST", "/api/admin/organizations")
        .auth(admin)
        .json(&json!({"name": "other-org", "admin_username": "other-admin", "admin_password": "other-password-1"}))
        .send();
    assert!(
        other.status == 201 || other.status == 200,
        "{}",
        other.text()
    );
    let theirs = server.login("other-admin", "other-password-1");
    let message = refused(&server, &theirs, &base, 404);
    assert!(message.starts_with("steps[0].robot_id: "), "{message}");

    // Saved once, the same name makes version 2; the other organisation sees
    // neither the flow nor its runs.
    let flow = rig.save(&server, &base);
    let again = server
        .req("POST", "/api/admin/flows")
        .auth(admin)
        .json(&base)
        .send()
        .expect(201)
        .json();
    assert_eq!(
        (again["id"].as_str().unwrap(), again["version"].as_i64()),
        (flow.as_str(), Some(2))
    );
    let path = format!("/api/admin/flows/{flow}");
    assert_error(&server.get(&path, &theirs), 404, &path);
    let run = run_flow(&server, admin, &flow, 0);
    let path = format!("/api/integration/v2/flows/runs/{run}");
    assert_error(&server.get(&path, &theirs), 404, &path);
    let path = format!("/api/integration/v2/flows/{flow}/run");
    assert_error(&server.req("POST", &path).auth(&theirs).send(), 404, &path);
    // A bad input is refused.
    let reply = server
        .req("POST", &path)
        .auth(admin)
        .json(&json!({"variables": [{"name": "N", "value": "many"}]}))
        .send();
    assert_error(&reply, 400, &path);
}
