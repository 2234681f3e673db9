//! Robots run for real: the real server and the real `regente runtime` agent
//! as child processes, shell robots, and what a client of the Integration API
//! sees of them.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::guards::idle_guards;
use crate::support::*;

/// Generous: the machine is shared, and a run's happy path takes well under a second.
pub(crate) const RUN: Duration = Duration::from_secs(30);

/// A server whose runtimes count as lost after 3 s, with an admin token and one runtime.
pub(crate) fn setup() -> (TestServer, String, String, String) {
    let server = TestServer::start_with(&[("REGENTE_RUNTIME_TIMEOUT_SECONDS", "3")]);
    let admin = server.admin_token();
    let (runtime, key) = server.create_runtime(&admin, "rt-agent");
    (server, admin, runtime, key)
}

pub(crate) fn ended(server: &TestServer, admin: &str, runtime: &str, id: &str) -> Value {
    wait_for_status(server, admin, runtime, id, ENDED, RUN)
}

#[test]
fn variables_logs_progress_and_return_values_flow_through_a_real_run() {
    let (server, admin, runtime, key) = setup();
    let script = r#"echo "start"
echo "T=$REGENTE_VAR_T"
echo "N=$REGENTE_VAR_N"
echo "I=$REGENTE_VAR_I"
echo "B=$REGENTE_VAR_B"
echo "J=$REGENTE_VAR_J"
echo "D=$REGENTE_VAR_D"
printf 'typed=%s\n' "$(cat "$REGENTE_VARIABLES")"
echo "::progress::42"
while [ ! -e "$REGENTE_VAR_GATE/go1" ]; do sleep 0.05; done
echo "::return::first, not JSON"
printf '::return::%s\n' "$(cat "$REGENTE_VARIABLES")"
echo "::progress::250"
while [ ! -e "$REGENTE_VAR_GATE/go2" ]; do sleep 0.05; done
echo "::warning::careful now"
echo "::error::something odd"
echo "to stderr" >&2
echo "::return::plain text wins at the end"
echo "done"
"#;
    let manifest = r#"
[[variables]]
name = "T"
type = "text"
[[variables]]
name = "N"
type = "number"
[[variables]]
name = "I"
type = "number"
[[variables]]
name = "B"
type = "boolean"
[[variables]]
name = "J"
type = "json"
[[variables]]
name = "D"
type = "text"
default = "from the default"
[[variables]]
name = "GATE"
type = "text"
"#;
    let robot = upload_shell_robot(&server, &admin, "typed-robot", script, manifest);
    let gate = scratch();
    let _agent = TestAgent::start(&server, &key, 1);
    let id = server.queue(
        &admin,
        &runtime,
        &robot,
        Some(&json!({"variables": [
            {"name": "T", "type": "text", "value": "hello world"},
            {"name": "N", "type": "number", "value": 42.5},
            {"name": "I", "type": "number", "value": "7"},
            {"name": "B", "type": "boolean", "value": true},
            {"name": "J", "type": "json", "value": {"k": [1, "x"], "s": "é"}},
            {"name": "GATE", "type": "text", "value": path_text(gate.path())},
        ]})),
    );
    let typed = json!({
        "T": "hello world", "N": 42.5, "I": 7, "B": true,
        "J": {"k": [1, "x"], "s": "é"}, "D": "from the default",
        "GATE": path_text(gate.path()),
    });

    // Live: while the robot waits at its first gate, a client already sees the
    // run RUNNING with its progress and the logs so far.
    let live = wait_for(RUN, "progress 42 while RUNNING", || {
        let body = result_of(&server, &admin, &runtime, &id);
        if body["status"] == "RUNNING" && body["progress"] == 42.0 {
            Ok(body)
        } else {
            Err(summary(&body))
        }
    });
    let live_logs = logs(&live);
    let expected_start: Vec<(String, String)> = [
        "start",
        "T=hello world",
        "N=42.5",
        "I=7",
        "B=true",
        r#"J={"k":[1,"x"],"s":"é"}"#,
        "D=from the default",
    ]
    .iter()
    .map(|m| ("INFO".to_owned(), m.to_string()))
    .collect();
    assert_eq!(
        live_logs[..expected_start.len().min(live_logs.len())],
        expected_start[..],
        "the variables' text forms, in order, as INFO logs: {}",
        summary(&live)
    );
    let typed_line = live_logs
        .iter()
        .find_map(|(_, m)| m.strip_prefix("typed="))
        .unwrap_or_else(|| panic!("no typed= line yet: {}", summary(&live)));
    let seen: Value = serde_json::from_str(typed_line)
        .unwrap_or_else(|e| panic!("REGENTE_VARIABLES is not JSON ({e}): {typed_line}"));
    assert_eq!(
        seen, typed,
        "REGENTE_VARIABLES keeps each value's JSON type"
    );
    assert_eq!(live["returnValue"], Value::Null, "no return value yet");
    assert_eq!(live["end"], Value::Null);

    // Second gate: a JSON return value after a text one, and progress clamped to 100.
    std::fs::write(gate.path().join("go1"), "").unwrap();
    let middle = wait_for(RUN, "the JSON return value and progress 100", || {
        let body = result_of(&server, &admin, &runtime, &id);
        if body["returnValue"] == typed && body["progress"] == 100.0 {
            Ok(body)
        } else {
            Err(summary(&body))
        }
    });
    assert_eq!(
        middle["status"], "RUNNING",
        "progress 250 is clamped to 100 and does not end the run"
    );

    std::fs::write(gate.path().join("go2"), "").unwrap();
    let body = wait_for_status(&server, &admin, &runtime, &id, ENDED, RUN);
    assert_eq!(body["status"], "FINISHED", "{}", summary(&body));
    assert_eq!(body["progress"], 100.0);
    assert_eq!(
        body["returnValue"], "plain text wins at the end",
        "the last ::return:: wins, as text when it is not JSON"
    );
    assert!(body["end"].as_i64().is_some(), "end is set: {body}");
    let all = logs(&body);
    let stderr_lines: Vec<&(String, String)> =
        all.iter().filter(|(_, m)| m == "to stderr").collect();
    assert_eq!(
        stderr_lines,
        vec![&("ERROR".to_owned(), "to stderr".to_owned())],
        "a stderr line is one ERROR log"
    );
    let stdout_logs: Vec<(String, String)> =
        all.into_iter().filter(|(_, m)| m != "to stderr").collect();
    let mut expected = expected_start.clone();
    expected.push(("INFO".into(), format!("typed={typed_line}")));
    expected.push(("WARN".into(), "careful now".into()));
    expected.push(("ERROR".into(), "something odd".into()));
    expected.push(("INFO".into(), "done".into()));
    assert_eq!(
        stdout_logs, expected,
        "every stdout line once, in order; ::progress:: and ::return:: lines are not logs"
    );
    let detail = server.execution(&admin, &id);
    assert_eq!(detail["exit_code"], 0, "{detail}");
    assert!(detail["started"].as_i64().is_some(), "{detail}");
}

#[test]
fn a_non_zero_exit_ends_error_naming_the_exit_code() {
    let (server, admin, runtime, key) = setup();
    let robot = upload_shell_robot(
        &server,
        &admin,
        "exit-three",
        "echo \"about to fail\"\nexit 3\n",
        "",
    );
    let _agent = TestAgent::start(&server, &key, 1);
    let id = server.queue(&admin, &runtime, &robot, None);
    let body = ended(&server, &admin, &runtime, &id);
    assert_eq!(body["status"], "ERROR", "{}", summary(&body));
    let all = logs(&body);
    assert_eq!(
        all.first(),
        Some(&("INFO".to_owned(), "about to fail".to_owned())),
        "the robot's own line comes first, and is there although the robot ended in milliseconds"
    );
    assert!(
        all.iter()
            .skip(1)
            .any(|(level, m)| level == "ERROR" && m.contains("exit") && m.contains("code 3")),
        "an ERROR log line names exit code 3: {all:?}"
    );
    let detail = server.execution(&admin, &id);
    assert_eq!(detail["exit_code"], 3, "{detail}");
    assert_eq!(detail["status"], "ERROR");
}

/// A robot of `script` (which writes its pid to `$REGENTE_VAR_DIR/robot.pid`)
/// queued on a new one-slot agent: the agent, the robot's directory, the run
/// and the robot's pid.
pub(crate) fn run_in_dir(
    server: &TestServer,
    admin: &str,
    runtime: &str,
    key: &str,
    (name, script, manifest): (&str, &str, &str),
) -> (TestAgent, tempfile::TempDir, String, u32) {
    let robot = upload_shell_robot(server, admin, name, script, manifest);
    let out = scratch();
    let agent = TestAgent::start(server, key, 1);
    let id = server.queue(
        admin,
        runtime,
        &robot,
        Some(&text_vars(&[("DIR", &path_text(out.path()))])),
    );
    let robot_pid = wait_for_pid_file(&out.path().join("robot.pid"), RUN);
    (agent, out, id, robot_pid)
}

/// Waits until `id` is RUNNING with `line` among its logs.
pub(crate) fn wait_running_with(
    server: &TestServer,
    admin: &str,
    runtime: &str,
    id: &str,
    line: &str,
) {
    wait_for(RUN, &format!("RUNNING with the line {line:?}"), || {
        let body = result_of(server, admin, runtime, id);
        if body["status"] == "RUNNING" && messages(&body).iter().any(|m| m == line) {
            Ok(())
        } else {
            Err(summary(&body))
        }
    });
}

#[test]
fn a_robot_past_its_timeout_is_killed_and_ends_error() {
    let (server, admin, runtime, key) = setup();
    let script = r#"echo $$ > "$REGENTE_VAR_DIR/robot.pid"
sleep 30 &
echo $! > "$REGENTE_VAR_DIR/sleep.pid"
echo "sleeping"
wait
echo "woke up"
"#;
    let (_agent, out, id, robot_pid) = run_in_dir(
        &server,
        &admin,
        &runtime,
        &key,
        ("sleepy", script, "timeout_seconds = 1"),
    );
    let sleep_pid = wait_for_pid_file(&out.path().join("sleep.pid"), RUN);
    let started = Instant::now();
    let body = wait_for_status(
        &server,
        &admin,
        &runtime,
        &id,
        ENDED,
        Duration::from_secs(15),
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "ended by the timeout, not by the robot's 30 s sleep"
    );
    assert_eq!(body["status"], "ERROR", "{}", summary(&body));
    let all = messages(&body);
    assert!(
        all.iter().any(|m| m.to_lowercase().contains("timeout")),
        "a log line says the timeout passed: {all:?}"
    );
    assert!(!all.contains(&"woke up".to_owned()), "{all:?}");
    wait_gone(
        &[("robot", robot_pid), ("its sleep child", sleep_pid)],
        Duration::from_secs(5),
    );
}

#[test]
fn canceling_a_pending_run_while_the_runtime_is_offline_means_it_never_runs() {
    let (server, admin, runtime, key) = setup();
    let robot = upload_shell_robot(
        &server,
        &admin,
        "ledger",
        "echo \"$REGENTE_EXECUTION_ID\" >> \"$REGENTE_VAR_LEDGER\"\necho ran\n",
        "",
    );
    let out = scratch();
    let ledger_path = out.path().join("ledger");
    let vars = text_vars(&[("LEDGER", &path_text(&ledger_path))]);
    let canceled = server.queue(&admin, &runtime, &robot, Some(&vars));
    assert_eq!(
        result_of(&server, &admin, &runtime, &canceled)["status"],
        "PENDENT"
    );
    server.delete(&admin, &runtime, &canceled).expect(200);
    assert_eq!(
        result_of(&server, &admin, &runtime, &canceled)["status"],
        "CANCELED"
    );

    // The runtime connects; a run queued after the canceled one finishing
    // shows that the queue was served past it.
    let _agent = TestAgent::start(&server, &key, 1);
    let marker = server.queue(&admin, &runtime, &robot, Some(&vars));
    let body = ended(&server, &admin, &runtime, &marker);
    assert_eq!(body["status"], "FINISHED", "{}", summary(&body));
    assert_eq!(
        ledger(&ledger_path),
        vec![marker.clone()],
        "only the marker ran"
    );
    let canceled_body = result_of(&server, &admin, &runtime, &canceled);
    assert_eq!(canceled_body["status"], "CANCELED");
    assert_eq!(messages(&canceled_body), Vec::<String>::new());
}

#[test]
fn canceling_a_running_robot_kills_its_process_tree() {
    let (server, admin, runtime, key) = setup();
    let script = r#"echo $$ > "$REGENTE_VAR_DIR/robot.pid"
sleep 300 >/dev/null 2>&1 &
echo $! > "$REGENTE_VAR_DIR/grandchild.pid"
echo "working"
sleep 300
echo "finished sleeping"
"#;
    let (agent, out, id, robot_pid) =
        run_in_dir(&server, &admin, &runtime, &key, ("long-runner", script, ""));
    let grandchild = wait_for_pid_file(&out.path().join("grandchild.pid"), RUN);
    let guard = parent_pid(robot_pid).expect("the robot's parent");
    wait_running_with(&server, &admin, &runtime, &id, "working");
    assert!(pid_alive(robot_pid) && pid_alive(grandchild));

    server.delete(&admin, &runtime, &id).expect(200);
    let body = wait_for_status(
        &server,
        &admin,
        &runtime,
        &id,
        ENDED,
        Duration::from_secs(10),
    );
    assert_eq!(body["status"], "CANCELED", "{}", summary(&body));
    wait_gone(
        &[
            ("robot", robot_pid),
            ("its background grandchild", grandchild),
        ],
        Duration::from_secs(5),
    );
    // The guard killed the robot's group, not itself: it waits for the next robot.
    assert_eq!(idle_guards(&agent), vec![guard]);
    let detail = server.execution(&admin, &id);
    assert_eq!(detail["status"], "CANCELED");
    assert!(
        !messages(&body).contains(&"finished sleeping".to_owned()),
        "{}",
        summary(&body)
    );
}

#[test]
fn runs_queued_while_the_runtime_is_offline_run_in_order_when_it_connects() {
    let (server, admin, runtime, key) = setup();
    let robot = upload_shell_robot(
        &server,
        &admin,
        "ledger",
        "echo \"$REGENTE_EXECUTION_ID\" >> \"$REGENTE_VAR_LEDGER\"\necho \"::return::ran\"\n",
        "",
    );
    let out = scratch();
    let ledger_path = out.path().join("ledger");
    let vars = text_vars(&[("LEDGER", &path_text(&ledger_path))]);
    let first = server.queue(&admin, &runtime, &robot, Some(&vars));
    let second = server.queue(&admin, &runtime, &robot, Some(&vars));
    assert!(!server.runtime_online(&admin, &runtime));
    for id in [&first, &second] {
        assert_eq!(
            result_of(&server, &admin, &runtime, id)["status"],
            "PENDENT"
        );
    }
    // The first address answers nothing: the agent moves on to the next one.
    let _agent = TestAgent::start_on(&[dead_url(), server.base.clone()], &key, 1);
    for id in [&first, &second] {
        let body = ended(&server, &admin, &runtime, id);
        assert_eq!(body["status"], "FINISHED", "{}", summary(&body));
        assert_eq!(body["returnValue"], "ran");
    }
    assert_eq!(
        ledger(&ledger_path),
        vec![first.clone(), second.clone()],
        "each ran once, in the order they were queued"
    );
    assert!(server.runtime_online(&admin, &runtime));
}

#[test]
fn fifty_concurrent_runs_over_two_runtimes_with_two_slots_each_end_finished_exactly_once() {
    let (server, admin, _, _) = setup();
    let (runtime_a, key_a) = server.create_runtime_with_slots(&admin, "rt-agent-a", 2);
    let (runtime_b, key_b) = server.create_runtime_with_slots(&admin, "rt-agent-b", 2);
    let robot = upload_shell_robot(
        &server,
        &admin,
        "ledger-sleep",
        "echo \"$REGENTE_EXECUTION_ID\" >> \"$REGENTE_VAR_LEDGER\"\nsleep 0.4\n# Quoted: an id of decimal digits only would read as a number.\necho \"::return::\\\"$REGENTE_EXECUTION_ID\\\"\"\n",
        "",
    );
    let out = scratch();
    let ledger_path = out.path().join("ledger");
    let _agent_a = TestAgent::start(&server, &key_a, 2);
    let _agent_b = TestAgent::start(&server, &key_b, 2);
    let vars = text_vars(&[("LEDGER", &path_text(&ledger_path))]);

    // Five clients queue ten runs each at the same time, alternating runtimes.
    let queued: Vec<(String, String)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..5)
            .map(|client| {
                let (server, admin, vars) = (&server, &admin, &vars);
                let (runtime_a, runtime_b, robot) = (&runtime_a, &runtime_b, &robot);
                scope.spawn(move || {
                    (0..10)
                        .map(|i| {
                            let runtime = if (client + i) % 2 == 0 {
                                runtime_a
                            } else {
                                runtime_b
                            };
                            let id = server.queue(admin, runtime, robot, Some(vars));
                            (runtime.clone(), id)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a client thread"))
            .collect()
    });
    assert_eq!(queued.len(), 50);

    let ids: BTreeSet<String> = queued.iter().map(|(_, id)| id.clone()).collect();
    assert_eq!(ids.len(), 50, "50 distinct executions");
    let finished = wait_for(Duration::from_secs(90), "all 50 runs to end", || {
        let all = server.all_executions(&admin, &format!("&robot={robot}"));
        let ended: Vec<&Value> = all
            .iter()
            .filter(|e| ENDED.iter().any(|s| e["status"] == *s))
            .collect();
        if ended.len() == 50 {
            Ok(all)
        } else {
            let mut counts: HashMap<String, usize> = HashMap::new();
            for e in &all {
                *counts.entry(e["status"].to_string()).or_default() += 1;
            }
            Err(counts)
        }
    });
    for execution in &finished {
        assert_eq!(execution["status"], "FINISHED", "{execution}");
        assert_eq!(execution["return_value"], execution["id"], "{execution}");
    }
    let lines = ledger(&ledger_path);
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for line in &lines {
        *counts.entry(line.as_str()).or_default() += 1;
    }
    let doubled: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        doubled.is_empty(),
        "robots started more than once: {doubled:?}"
    );
    let started: BTreeSet<String> = counts.keys().map(|s| s.to_string()).collect();
    assert_eq!(
        started, ids,
        "every execution started once, and nothing else did"
    );

    // Per runtime, never more than its two slots at once, and both slots used.
    for runtime in [&runtime_a, &runtime_b] {
        let mut edges: Vec<(i64, i32)> = Vec::new();
        for execution in finished
            .iter()
            .filter(|e| e["runtime_id"] == runtime.as_str())
        {
            let started = execution["started"].as_i64().expect("started");
            let end = execution["end"].as_i64().expect("end");
            edges.push((started, 1));
            edges.push((end, -1));
        }
        assert_eq!(edges.len(), 50, "25 runs on runtime {runtime}");
        edges.sort(); // At equal times, an end (-1) sorts before a start.
        let mut running = 0;
        let mut most = 0;
        for (_, delta) in edges {
            running += delta;
            most = most.max(running);
        }
        assert_eq!(
            most, 2,
            "runtime {runtime} has 2 slots: at most, and (with 25 queued) at least, 2 robots at once"
        );
    }
}

#[test]
fn two_thousand_log_lines_all_arrive_in_order() {
    let (server, admin, runtime, key) = setup();
    let script = r#"i=1
while [ $i -le 2000 ]; do
  echo "line $i"
  i=$((i+1))
done
echo "::return::2000"
"#;
    let robot = upload_shell_robot(&server, &admin, "chatty", script, "");
    let _agent = TestAgent::start(&server, &key, 1);
    let id = server.queue(&admin, &runtime, &robot, None);
    let body = ended(&server, &admin, &runtime, &id);
    assert_eq!(body["status"], "FINISHED", "{}", summary(&body));
    assert_eq!(body["returnValue"], 2000);
    let all = logs(&body);
    assert_eq!(
        all.len(),
        2000,
        "exactly the robot's lines: {}",
        summary(&body)
    );
    assert!(all.iter().all(|(level, _)| level == "INFO"));
    assert_one_to_n(
        &numbered_lines(&body),
        2000,
        "the result seen as the run ended",
    );
}

#[test]
fn a_missing_command_ends_error_saying_it_was_not_found() {
    let (server, admin, runtime, key) = setup();
    let missing = "regente-e2e-no-such-command";
    let by_name = server.upload_robot(
        &admin,
        robot_zip(
            &format!("name = \"no-command\"\ncommand = [\"{missing}\", \"--flag\"]\n"),
            &[("run.sh", b"echo never\n")],
        ),
    )["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let by_path = server.upload_robot(
        &admin,
        robot_zip(
            "name = \"no-file\"\ncommand = [\"./bin/missing-robot\"]\n",
            &[("run.sh", b"echo never\n")],
        ),
    )["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let _agent = TestAgent::start(&server, &key, 2);
    for (robot, name) in [(&by_name, missing), (&by_path, "missing-robot")] {
        let id = server.queue(&admin, &runtime, robot, None);
        let body = ended(&server, &admin, &runtime, &id);
        assert_eq!(body["status"], "ERROR", "{}", summary(&body));
        let all = logs(&body);
        assert!(
            all.iter().any(|(level, m)| level == "ERROR"
                && m.contains(name)
                && m.to_lowercase().contains("not found")),
            "an ERROR log line says that {name} was not found: {all:?}"
        );
    }
}

#[test]
fn each_run_gets_the_robot_version_it_was_queued_with() {
    let (server, admin, runtime, key) = setup();
    let v1 = server.upload_robot(
        &admin,
        shell_robot(
            "versioned",
            "echo \"I am version one\"\necho \"::return::v1\"\n",
            "",
        ),
    );
    let robot = v1["id"].as_str().unwrap().to_owned();
    let pinned_v1 = server.queue(&admin, &runtime, &robot, None);
    let v2 = server.upload_robot(
        &admin,
        shell_robot(
            "versioned",
            "echo \"I am version two\"\necho \"::return::v2\"\n",
            "",
        ),
    );
    assert_eq!(v2["id"], v1["id"], "a new version of the same robot");
    assert_eq!(v2["version"], 2, "{v2}");
    assert_ne!(v1["sha256"], v2["sha256"]);
    let on_v2 = server.queue(&admin, &runtime, &robot, None);

    // The agent has neither package yet: it downloads and checks each.
    let _agent = TestAgent::start(&server, &key, 1);
    for (id, version, line, value) in [
        (&pinned_v1, 1, "I am version one", "v1"),
        (&on_v2, 2, "I am version two", "v2"),
    ] {
        let body = ended(&server, &admin, &runtime, id);
        assert_eq!(body["status"], "FINISHED", "{}", summary(&body));
        assert_eq!(messages(&body), vec![line.to_owned()]);
        assert_eq!(body["returnValue"], value);
        assert_eq!(server.execution(&admin, id)["robot_version"], version);
    }
    // A third run takes the newest version again, from the agent's cache.
    let again = server.queue(&admin, &runtime, &robot, None);
    let body = ended(&server, &admin, &runtime, &again);
    assert_eq!(body["returnValue"], "v2", "{}", summary(&body));
}

#[test]
fn an_agent_is_welcomed_on_its_first_connection() {
    // The hello must be the first message of a connection; a heartbeat sent
    // before it gets the connection closed, which showed in about one start
    // in twenty. Thirty starts make such a race visible.
    let (server, _admin, _runtime, key) = setup();
    for attempt in 1..=30 {
        let agent = TestAgent::start(&server, &key, 1);
        agent.wait_welcomed(1, RUN);
        let log = agent.stderr();
        let before_welcome = &log[..log.find("welcomed by the server").unwrap()];
        assert_eq!(
            before_welcome.matches("connected to the server").count(),
            1,
            "start {attempt}: the first connection was not kept:\n{log}"
        );
    }
}

#[test]
fn an_agent_without_slots_runs_as_many_robots_as_its_runtime_is_set_for() {
    let server = TestServer::start();
    let admin = server.admin_token();
    let runtime = server
        .req("POST", "/api/admin/runtimes")
        .auth(&admin)
        .json(&json!({"name": "two-slots", "slots": 2}))
        .send()
        .expect(201)
        .json();
    let (runtime_id, key) = (
        runtime["id"].as_str().unwrap().to_owned(),
        runtime["key"].as_str().unwrap().to_owned(),
    );
    // Each robot waits until two robots have started: with one slot, the first
    // would wait alone and fail.
    let robot = upload_shell_robot(
        &server,
        &admin,
        "pair",
        "touch \"$REGENTE_VAR_DIR/$REGENTE_EXECUTION_ID\"\ni=0\nwhile [ \"$(ls \"$REGENTE_VAR_DIR\" | wc -l)\" -lt 2 ]; do\n  i=$((i + 1)); [ \"$i\" -gt 300 ] && exit 7\n  sleep 0.05\ndone\n",
        "",
    );
    let out = scratch();
    let vars = text_vars(&[("DIR", &path_text(out.path()))]);
    let first = server.queue(&admin, &runtime_id, &robot, Some(&vars));
    let second = server.queue(&admin, &runtime_id, &robot, Some(&vars));
    let _agent = TestAgent::start(&server, &key, 0);
    for id in [&first, &second] {
        let result = wait_for_status(
            &server,
            &admin,
            &runtime_id,
            id,
            ENDED,
            Duration::from_secs(60),
        );
        assert_eq!(result["status"], "FINISHED", "{result}");
    }
}
