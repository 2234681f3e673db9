//! The command line against a real server and agent: sign in with the password
//! on standard input, push a robot's folder, list, run with `--wait` and
//! `--follow` (exit status by how the run ended), `--output json`, cancel; API
//! keys created, used (REGENTE_API_KEY, `login --api-key`) and revoked.

use std::io::Write as _;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::support::*;

/// The CLI's world: a server, an online runtime, a folder for the session.
struct World {
    server: TestServer,
    config: tempfile::TempDir,
    robots: tempfile::TempDir,
    _agent: TestAgent,
}

impl World {
    fn start() -> World {
        let server = TestServer::start();
        let token = server.admin_token();
        let (_, key) = server.create_runtime_with_slots(&token, "office-pc", 2);
        let agent = TestAgent::start(&server, &key, 2);
        let world = World {
            server,
            config: tempfile::tempdir().expect("a config folder"),
            robots: tempfile::tempdir().expect("a robots folder"),
            _agent: agent,
        };
        let login = world.cli_with_stdin(
            &[
                "login",
                "--server",
                &world.server.base,
                "--username",
                ADMIN_USER,
            ],
            &format!("{ADMIN_PASSWORD}\n"),
        );
        assert_success(&login);
        world
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = regente_command(&regente_binary());
        command
            .args(args)
            .env("REGENTE_CONFIG_DIR", self.config.path().join("regente"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }

    fn cli(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("regente runs")
    }

    fn cli_with_stdin(&self, args: &[&str], stdin: &str) -> Output {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .spawn()
            .expect("regente runs");
        child
            .stdin
            .take()
            .expect("piped stdin")
            .write_all(stdin.as_bytes())
            .expect("stdin is written");
        child.wait_with_output().expect("regente ends")
    }

    /// A robot folder: `robot.toml` and `run.sh` with `script`.
    fn robot_folder(&self, name: &str, script: &str, extra_manifest: &str) -> String {
        let dir = self.robots.path().join(name);
        std::fs::create_dir_all(dir.join("lib")).expect("a robot folder");
        std::fs::write(
            dir.join("robot.toml"),
            format!("name = \"{name}\"\ncommand = [\"sh\", \"run.sh\"]\n{extra_manifest}"),
        )
        .expect("robot.toml");
        std::fs::write(dir.join("run.sh"), script).expect("run.sh");
        std::fs::write(dir.join("lib/greeting.txt"), "hello from a subfolder\n")
            .expect("a file in a subfolder");
        dir.to_string_lossy().into_owned()
    }
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn assert_success(output: &Output) {
    assert!(
        output.status.success(),
        "{}: {}{}",
        output.status,
        stdout(output),
        stderr(output)
    );
}

fn json(output: &Output) -> Value {
    assert_success(output);
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(output)))
}

const GREETER: &str = "echo \"hello, $REGENTE_VAR_WHO\"\ncat lib/greeting.txt\necho '::progress::50'\necho \"::return::{\\\"who\\\": \\\"$REGENTE_VAR_WHO\\\"}\"\n";
const GREETER_VARIABLES: &str =
    "[[variables]]\nname = \"WHO\"\ntype = \"text\"\ndefault = \"world\"\n";

#[test]
fn login_keeps_a_private_session_and_a_pushed_robot_runs_to_its_end() {
    let world = World::start();
    let folder = world.config.path().join("regente");
    assert_eq!(mode(&folder.join("session.json")), 0o600);
    assert_eq!(mode(&folder), 0o700);

    let folder = world.robot_folder("greeter", GREETER, GREETER_VARIABLES);
    let pushed = world.cli(&["robots", "push", &folder]);
    assert_success(&pushed);
    assert!(
        stdout(&pushed).starts_with("robot greeter version 1 ("),
        "{}",
        stdout(&pushed)
    );
    let again = json(&world.cli(&["robots", "push", &folder, "--output", "json"]));
    assert_eq!(again["version"], 2, "{again}");

    let robots = json(&world.cli(&["robots", "list", "--output", "json"]));
    assert_eq!(robots[0]["name"], "greeter", "{robots}");
    let runtimes = world.cli(&["runtimes", "list"]);
    assert_success(&runtimes);
    let text = stdout(&runtimes);
    assert!(
        text.contains("office-pc") && text.contains("online"),
        "{text}"
    );

    // By names, waiting: exit 0, the return value printed.
    let run = world.cli(&[
        "run",
        "greeter",
        "--runtime",
        "office-pc",
        "--var",
        "WHO=Maria",
        "--wait",
    ]);
    assert_success(&run);
    let line = stdout(&run);
    assert!(
        line.contains(" FINISHED ") && line.contains(r#""who":"Maria""#),
        "{line}"
    );

    // Followed and piped: the log as plain lines, in order, no terminal codes.
    let followed = world.cli(&["run", "greeter", "--runtime", "office-pc", "--follow"]);
    assert_success(&followed);
    let text = stdout(&followed);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].ends_with("INFO  hello, world"), "{text}");
    assert!(lines[1].ends_with("INFO  hello from a subfolder"), "{text}");
    assert!(lines[2].contains(" FINISHED "), "{text}");
    assert!(
        !text.contains('\x1b'),
        "no terminal codes when piped: {text:?}"
    );

    // JSON for scripts: the result, and the executions it lists.
    let result = json(&world.cli(&[
        "run",
        "greeter",
        "--runtime",
        "office-pc",
        "--wait",
        "--output",
        "json",
    ]));
    assert_eq!(result["status"], "FINISHED", "{result}");
    assert_eq!(result["returnValue"]["who"], "world", "{result}");
    let id = result["_id"].as_str().expect("the execution id").to_owned();
    let listed = json(&world.cli(&["executions", "list", "--output", "json"]));
    assert_eq!(listed["executions"][0]["id"], id.as_str(), "{listed}");
    assert_eq!(listed["executions"].as_array().unwrap().len(), 3);
    let shown = json(&world.cli(&["executions", "show", &id, "--output", "json"]));
    assert_eq!(shown["status"], "FINISHED");
    assert_eq!(shown["logs"][0]["message"], "hello, world", "{shown}");
}

#[test]
fn the_exit_status_says_how_a_waited_run_ended() {
    let world = World::start();
    let failing = world.robot_folder("failing", "echo 'about to fail'\nexit 3\n", "");
    assert_success(&world.cli(&["robots", "push", &failing]));
    let run = world.cli(&["run", "failing", "--runtime", "office-pc", "--wait"]);
    assert_eq!(
        run.status.code(),
        Some(1),
        "{}{}",
        stdout(&run),
        stderr(&run)
    );
    assert!(stdout(&run).contains(" ERROR"), "{}", stdout(&run));

    // A run canceled while waited for: exit 3.
    let slow = world.robot_folder("slow", "echo started\nsleep 300\n", "");
    assert_success(&world.cli(&["robots", "push", &slow]));
    let mut waiting: Child = world
        .command(&["run", "slow", "--runtime", "office-pc", "--follow"])
        .spawn()
        .expect("regente runs");
    let token = world.server.admin_token();
    let id = wait_until(
        Duration::from_secs(30),
        "the slow run to be RUNNING",
        || {
            world
                .server
                .all_executions(&token, "&status=RUNNING")
                .first()
                .and_then(|e| e["id"].as_str().map(str::to_owned))
        },
    );
    // RUNNING is committed at the hand-out, before the spawn: the robot's own
    // line says it runs (a cancel before it would leave it unstarted).
    let runtime = office_pc(&world, &token);
    wait_until(
        Duration::from_secs(30),
        "the slow robot's first line",
        || {
            let result = result_of(&world.server, &token, &runtime, &id);
            let logs = result["logs"].as_array().cloned().unwrap_or_default();
            logs.iter()
                .any(|line| line["message"] == "started")
                .then_some(())
        },
    );
    assert_success(&world.cli(&["executions", "cancel", &id]));
    let ended = wait_until(
        Duration::from_secs(30),
        "the waiting command to end",
        || waiting.try_wait().expect("waitable"),
    );
    assert_eq!(ended.code(), Some(3));
    let output = waiting.wait_with_output().expect("its output");
    assert!(
        stdout(&output).contains("INFO  started"),
        "{}",
        stdout(&output)
    );
    assert!(stdout(&output).contains(" CANCELED"), "{}", stdout(&output));

    // A command that fails says why, with status 2.
    let unknown = world.cli(&["run", "no-such-robot", "--runtime", "office-pc"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(
        stderr(&unknown).contains("no robot is named \"no-such-robot\""),
        "{}",
        stderr(&unknown)
    );
    let bad_var = world.cli(&["run", "slow", "--runtime", "office-pc", "--var", "NOVALUE"]);
    assert_eq!(bad_var.status.code(), Some(2));
    assert!(
        stderr(&bad_var).contains("is not NAME=VALUE"),
        "{}",
        stderr(&bad_var)
    );
    let not_a_robot = world.cli(&["robots", "push", world.config.path().to_str().unwrap()]);
    assert_eq!(not_a_robot.status.code(), Some(2));
    assert!(stderr(&not_a_robot).contains("has no robot.toml"));
}

/// The CLI with its session kept in `config`, `stdin` on its standard input.
fn cli_in(config: &Path, args: &[&str], stdin: &str) -> Output {
    let mut child = regente_command(&regente_binary())
        .args(args)
        .env("REGENTE_CONFIG_DIR", config)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("regente runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().expect("regente ends")
}

#[test]
fn without_a_session_or_with_a_wrong_password_commands_say_so() {
    let server = TestServer::start();
    let config = tempfile::tempdir().expect("a config folder");
    let run = |args: &[&str], stdin: &str| cli_in(config.path(), args, stdin);
    let listed = run(&["robots", "list"], "");
    assert_eq!(listed.status.code(), Some(2));
    assert!(
        stderr(&listed).contains("not signed in"),
        "{}",
        stderr(&listed)
    );
    let login = run(
        &["login", "--server", &server.base, "--username", ADMIN_USER],
        "not-the-password\n",
    );
    assert_eq!(login.status.code(), Some(2));
    assert!(stderr(&login).contains("(401)"), "{}", stderr(&login));
    assert!(!Path::new(&config.path().join("session.json")).exists());
}

/// A password sent over plain HTTP to an address other than this machine's
/// loopback is warned of (and still sent: the warning is not a refusal); over
/// the loopback it is not. `0.0.0.0` reaches the local server on Linux without
/// being a loopback address.
#[test]
fn a_login_over_plain_http_beyond_the_loopback_is_warned_of() {
    let server = TestServer::start();
    let warning = "is plain HTTP beyond this machine";
    let login = |base: &str| {
        let config = tempfile::tempdir().expect("a config folder");
        cli_in(
            config.path(),
            &["login", "--server", base, "--username", ADMIN_USER],
            &format!("{ADMIN_PASSWORD}\n"),
        )
    };
    let local = login(&server.base);
    assert_success(&local);
    assert!(!stderr(&local).contains(warning), "{}", stderr(&local));
    let beyond = login(&server.base.replace("127.0.0.1", "0.0.0.0"));
    assert_success(&beyond);
    assert!(
        stderr(&beyond).contains(&format!(
            "warning: {} {warning}",
            server.base.replace("127.0.0.1", "0.0.0.0")
        )),
        "{}",
        stderr(&beyond)
    );
}

#[test]
fn credentials_are_set_from_standard_input_and_listed_without_their_values() {
    let world = World::start();
    let secret = "s3cret-from-stdin «é»";
    let set = world.cli_with_stdin(
        &[
            "credentials",
            "set",
            "erp",
            "--field",
            "username=robot-erp",
            "--field-stdin",
            "password",
        ],
        &format!("{secret}\n"),
    );
    assert_success(&set);
    assert_eq!(
        stdout(&set).trim(),
        "credential erp stored (version 1, fields password, username)"
    );
    let again = world.cli_with_stdin(
        &[
            "credentials",
            "set",
            "erp",
            "--field-stdin",
            "password",
            "--output",
            "json",
        ],
        &format!("{secret}-2\n"),
    );
    let replaced = json(&again);
    assert_eq!(replaced["version"], 2);
    assert_eq!(replaced["fields"], serde_json::json!(["password"]));
    let list = world.cli(&["credentials", "list"]);
    assert_success(&list);
    let text = stdout(&list);
    assert!(text.contains("erp") && text.contains("password"), "{text}");
    assert!(text.contains(" all "), "every robot allowed: {text}");
    for output in [&set, &again, &list] {
        let shown = format!("{}{}", stdout(output), stderr(output));
        assert!(!shown.contains("s3cret"), "{shown}");
    }
    let unknown = world.cli_with_stdin(
        &[
            "credentials",
            "set",
            "erp",
            "--field-stdin",
            "password",
            "--robot",
            "nobody",
        ],
        &format!("{secret}\n"),
    );
    assert_eq!(unknown.status.code(), Some(2), "{}", stderr(&unknown));
    let empty = world.cli_with_stdin(
        &["credentials", "set", "erp", "--field-stdin", "password"],
        "",
    );
    assert_eq!(empty.status.code(), Some(2));
    assert!(
        stderr(&empty).contains("standard input ended before password"),
        "{}",
        stderr(&empty)
    );
}

/// The id of the runtime the world's agent serves.
fn office_pc(world: &World, token: &str) -> String {
    let runtimes = world
        .server
        .get("/api/admin/runtimes", token)
        .expect(200)
        .json();
    runtimes[0]["id"].as_str().expect("a runtime id").to_owned()
}

fn robot_id(world: &World, token: &str, name: &str) -> String {
    let robots = world
        .server
        .get("/api/admin/robots", token)
        .expect(200)
        .json();
    let robot = robots
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name);
    robot
        .and_then(|r| r["id"].as_str())
        .expect("the robot")
        .to_owned()
}

#[test]
fn schedules_are_listed_paused_resumed_and_triggered_from_the_command_line() {
    let world = World::start();
    let greeter = world.robot_folder("greeter", GREETER, GREETER_VARIABLES);
    assert_success(&world.cli(&["robots", "push", &greeter]));
    let token = world.server.admin_token();
    let created = world
        .server
        .req("POST", "/api/admin/schedules")
        .auth(&token)
        .json(&serde_json::json!({
            "name": "nightly", "robot_id": robot_id(&world, &token, "greeter"),
            "runtime_id": office_pc(&world, &token), "cron": "0 0 1 1 *", "timezone": "Europe/Lisbon",
        }))
        .send()
        .expect(201)
        .json();
    let id = created["id"].as_str().unwrap().to_owned();
    let stored = || {
        world
            .server
            .get(&format!("/api/admin/schedules/{id}"), &token)
            .expect(200)
            .json()
    };

    let listed = world.cli(&["schedules", "list"]);
    assert_success(&listed);
    let line = stdout(&listed)
        .lines()
        .find(|l| l.starts_with(&id))
        .map(str::to_owned);
    let line = line.unwrap_or_else(|| panic!("no line for {id}: {}", stdout(&listed)));
    for shown in [
        "nightly",
        "robot greeter on office-pc",
        "cron 0 0 1 1 *",
        "Europe/Lisbon",
        "active",
    ] {
        assert!(line.contains(shown), "{shown}: {line}");
    }
    let listed = json(&world.cli(&["schedules", "list", "--output", "json"]));
    assert_eq!(listed[0]["name"], "nightly", "{listed}");
    assert_eq!(listed[0]["paused"], false);

    // By name: pause with a note, then resume.
    let paused = world.cli(&["schedules", "pause", "nightly", "--note", "month closing"]);
    assert_success(&paused);
    assert!(
        stdout(&paused).contains("paused (month closing)"),
        "{}",
        stdout(&paused)
    );
    let now = stored();
    assert_eq!(
        (&now["paused"], &now["note"]),
        (&Value::from(true), &Value::from("month closing"))
    );
    let resumed = json(&world.cli(&["schedules", "resume", &id, "--output", "json"]));
    assert_eq!(resumed["paused"], false, "{resumed}");
    assert_eq!(stored()["paused"], false);

    // Run now: a fire of origin `trigger` whose execution runs on the agent.
    let fire = json(&world.cli(&["schedules", "trigger", "nightly", "--output", "json"]));
    assert_eq!(
        (&fire["origin"], &fire["outcome"]),
        (&Value::from("trigger"), &Value::from("started")),
        "{fire}"
    );
    let execution = fire["execution_id"]
        .as_str()
        .expect("an execution")
        .to_owned();
    let ended = wait_until(
        Duration::from_secs(60),
        "the triggered run to finish",
        || {
            let shown = world
                .server
                .get(&format!("/api/admin/executions/{execution}"), &token)
                .json();
            (shown["status"] == "FINISHED").then_some(shown)
        },
    );
    assert_eq!(ended["schedule_id"], id.as_str());
    let shown = world.cli(&["schedules", "show", "nightly"]);
    assert_success(&shown);
    let text = stdout(&shown);
    assert!(
        text.contains(&format!("started execution {execution}")),
        "{text}"
    );
    assert!(
        text.contains("trigger") && text.contains("1 run, 0 skipped"),
        "{text}"
    );
    let shown = json(&world.cli(&["schedules", "show", &id, "--output", "json"]));
    assert_eq!(
        shown["last_fires"][0]["execution_id"],
        execution.as_str(),
        "{shown}"
    );

    // A schedule that is not there: status 2, saying so.
    let unknown = world.cli(&["schedules", "pause", "weekly"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(
        stderr(&unknown).contains("no schedule is named \"weekly\""),
        "{}",
        stderr(&unknown)
    );
    let unknown = world.cli(&["schedules", "trigger", "0123456789abcdef"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(stderr(&unknown).contains("(404)"), "{}", stderr(&unknown));
}

/// A step that fails when asked (`FAIL=yes`), or blocks until its `GATE`
/// file exists when given one.
const FLOW_STEP: &str = r#"echo "step $REGENTE_VAR_STEP"
if [ -n "${REGENTE_VAR_GATE:-}" ]; then
  while [ ! -e "$REGENTE_VAR_GATE" ]; do sleep 0.05; done
fi
if [ "${REGENTE_VAR_FAIL:-}" = yes ]; then exit 3; fi
echo "::return::{\"step\": \"$REGENTE_VAR_STEP\"}"
"#;

#[test]
fn flows_run_wait_exit_status_says_how_the_flow_run_ended() {
    let world = World::start();
    let step = world.robot_folder("flow-step", FLOW_STEP, "");
    assert_success(&world.cli(&["robots", "push", &step]));
    let token = world.server.admin_token();
    let (robot, runtime) = (
        robot_id(&world, &token, "flow-step"),
        office_pc(&world, &token),
    );
    let save = |name: &str, first: Value| {
        let second = serde_json::json!({"id": "report", "robot_id": robot, "runtime_id": runtime,
                                        "variables": {"STEP": "report"}});
        let saved = world
            .server
            .req("POST", "/api/admin/flows")
            .auth(&token)
            .json(&serde_json::json!({
                "name": name,
                "variables": [{"name": "FAIL", "type": "text", "default": "no"}],
                "steps": [first, second],
            }))
            .send()
            .expect(201)
            .json();
        saved["id"].as_str().unwrap().to_owned()
    };
    let checks = save(
        "checks",
        serde_json::json!({"id": "check", "robot_id": robot, "runtime_id": runtime,
                           "variables": {"STEP": "check", "FAIL": "{{ input.FAIL }}"}}),
    );
    let gate = world.robots.path().join("never-opened");
    save(
        "gated",
        serde_json::json!({"id": "wait", "robot_id": robot, "runtime_id": runtime,
                           "variables": {"STEP": "wait", "GATE": gate.to_str().unwrap()}}),
    );

    let listed = world.cli(&["flows", "list"]);
    assert_success(&listed);
    let line = stdout(&listed)
        .lines()
        .find(|l| l.starts_with(&checks))
        .map(str::to_owned);
    let line = line.unwrap_or_else(|| panic!("no line for {checks}: {}", stdout(&listed)));
    assert!(
        line.contains("checks") && line.contains("check -> report"),
        "{line}"
    );

    // FINISHED: 0, with the run's return value (the last step's).
    let finished = world.cli(&["flows", "run", "checks", "--wait"]);
    assert_success(&finished);
    let text = stdout(&finished);
    assert!(
        text.contains(" FINISHED") && text.contains(r#""step":"report""#),
        "{text}"
    );
    let run = text.split_whitespace().next().unwrap().to_owned();
    let shown = json(&world.cli(&["flows", "runs", "show", &run, "--output", "json"]));
    assert_eq!(shown["status"], "FINISHED");
    assert_eq!(
        (&shown["steps"][0]["status"], &shown["steps"][1]["status"]),
        (&Value::from("FINISHED"), &Value::from("FINISHED")),
        "{shown}"
    );
    let listed = json(&world.cli(&["flows", "runs", "list", "checks", "--output", "json"]));
    assert_eq!(
        listed[0]["id"],
        run.as_str(),
        "the newest run first: {listed}"
    );
    let shown = world.cli(&["flows", "runs", "show", &run]);
    assert_success(&shown);
    assert!(
        stdout(&shown).contains("check") && stdout(&shown).contains("FINISHED"),
        "{}",
        stdout(&shown)
    );

    // ERROR: 1; by id, with an input.
    let failed = world.cli(&[
        "flows", "run", &checks, "--var", "FAIL=yes", "--wait", "--output", "json",
    ]);
    assert_eq!(
        failed.status.code(),
        Some(1),
        "{}{}",
        stdout(&failed),
        stderr(&failed)
    );
    let failed: Value = serde_json::from_slice(&failed.stdout).expect("JSON");
    assert_eq!(failed["status"], "ERROR", "{failed}");
    assert_eq!(failed["steps"][0]["status"], "ERROR", "{failed}");

    // CANCELED while waited for: 3.
    let mut waiting: Child = world
        .command(&["flows", "run", "gated", "--wait"])
        .spawn()
        .expect("regente runs");
    let gated_run = wait_until(
        Duration::from_secs(30),
        "the gated step to be RUNNING",
        || {
            world
                .server
                .all_executions(&token, "&status=RUNNING")
                .first()
                .and_then(|e| e["flow_run_id"].as_str().map(str::to_owned))
        },
    );
    world
        .server
        .req(
            "DELETE",
            &format!("/api/integration/v2/flows/runs/{gated_run}"),
        )
        .auth(&token)
        .send()
        .expect(200);
    let ended = wait_until(
        Duration::from_secs(30),
        "the waiting command to end",
        || waiting.try_wait().expect("waitable"),
    );
    let output = waiting.wait_with_output().expect("its output");
    assert_eq!(
        ended.code(),
        Some(3),
        "{}{}",
        stdout(&output),
        stderr(&output)
    );
    assert!(
        stdout(&output).contains(&format!("{gated_run} CANCELED")),
        "{}",
        stdout(&output)
    );

    // Without --wait: the run's id at once; a wrong input or flow: status 2.
    let started = json(&world.cli(&["flows", "run", "checks", "--output", "json"]));
    assert_eq!(started["flow_id"], checks.as_str());
    assert_eq!(started["id"].as_str().map(str::len), Some(16), "{started}");
    let bad = world.cli(&["flows", "run", "checks", "--var", "NOVALUE"]);
    assert_eq!(bad.status.code(), Some(2));
    let unknown = world.cli(&["flows", "run", "no-such-flow", "--wait"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(
        stderr(&unknown).contains("no flow is named \"no-such-flow\""),
        "{}",
        stderr(&unknown)
    );
}

#[test]
fn api_keys_are_created_used_and_revoked_from_the_command_line() {
    let world = World::start();
    let folder = world.robot_folder("keyed", "echo keyed\n", "");
    assert_success(&world.cli(&["robots", "push", &folder]));
    let admin = world.server.admin_token();
    let (runtime, robot) = (office_pc(&world, &admin), robot_id(&world, &admin, "keyed"));

    // Created: the key printed alone on standard output, once.
    let ops = world.cli(&["api-keys", "create", "ops", "--role", "admin"]);
    assert_success(&ops);
    let ops_key = stdout(&ops).trim().to_owned();
    assert!(ops_key.starts_with("rgk_"), "{ops_key}");
    assert!(stderr(&ops).contains("shown this once"), "{}", stderr(&ops));
    let erp = json(&world.cli(&[
        "api-keys",
        "create",
        "erp",
        "--role",
        "integration",
        "--expires",
        "2999-01-01T00:00:00Z",
        "--output",
        "json",
    ]));
    let erp_key = erp["key"].as_str().expect("the key").to_owned();
    assert_eq!(erp["role"], "integration");
    assert_eq!(erp["expires_at"], 32_472_144_000_000_i64);
    let past = world.cli(&[
        "api-keys",
        "create",
        "old",
        "--role",
        "admin",
        "--expires",
        "1000",
    ]);
    assert_eq!(past.status.code(), Some(2));
    assert!(stderr(&past).contains("expires_at"), "{}", stderr(&past));

    // Listed without the keys.
    let list = world.cli(&["api-keys", "list"]);
    assert_success(&list);
    let text = stdout(&list);
    assert!(text.contains("ops") && text.contains("erp"), "{text}");
    assert!(text.contains(&format!("rgk_{}", &erp["prefix"].as_str().unwrap())));
    let listed = json(&world.cli(&["api-keys", "list", "--output", "json"]));
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");
    let shown = format!("{text}{}", stderr(&list));
    assert!(
        !shown.contains(&ops_key[4..]) && !shown.contains(&erp_key[4..]),
        "{shown}"
    );

    // Used from REGENTE_API_KEY, with no session: the admin key manages, the
    // integration key runs robots by id and is refused admin commands.
    let no_session = tempfile::tempdir().expect("a config folder");
    let with_key = |key: &str, args: &[&str]| {
        world
            .command(args)
            .env("REGENTE_CONFIG_DIR", no_session.path())
            .env("REGENTE_SERVER", &world.server.base)
            .env("REGENTE_API_KEY", key)
            .output()
            .expect("regente runs")
    };
    assert_success(&with_key(&ops_key, &["runtimes", "list"]));
    let run = with_key(&erp_key, &["run", &robot, "--runtime", &runtime, "--wait"]);
    assert_success(&run);
    assert!(stdout(&run).contains("FINISHED"), "{}", stdout(&run));
    let refused = with_key(&erp_key, &["runtimes", "list"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(stderr(&refused).contains("(403)"), "{}", stderr(&refused));
    assert!(!no_session.path().join("session.json").exists());

    // Or kept by `login --api-key`, read from standard input.
    let keyed_session = tempfile::tempdir().expect("a config folder");
    let login_with = |key: &str| {
        let mut child = world
            .command(&["login", "--server", &world.server.base, "--api-key"])
            .env("REGENTE_CONFIG_DIR", keyed_session.path())
            .stdin(Stdio::piped())
            .spawn()
            .expect("regente runs");
        let mut stdin = child.stdin.take().expect("piped stdin");
        stdin.write_all(format!("{key}\n").as_bytes()).unwrap();
        drop(stdin);
        child.wait_with_output().expect("regente ends")
    };
    let bad = login_with("rgk_not-a-key");
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("(401)"), "{}", stderr(&bad));
    assert_success(&login_with(&erp_key));
    assert_eq!(mode(&keyed_session.path().join("session.json")), 0o600);
    let kept = world
        .command(&["run", &robot, "--runtime", &runtime, "--wait"])
        .env("REGENTE_CONFIG_DIR", keyed_session.path())
        .output()
        .expect("regente runs");
    assert_success(&kept);

    // Revoked by name: refused from then on.
    let revoked = world.cli(&["api-keys", "revoke", "erp"]);
    assert_success(&revoked);
    let after = with_key(&erp_key, &["run", &robot, "--runtime", &runtime]);
    assert_eq!(after.status.code(), Some(2));
    assert!(stderr(&after).contains("revoked"), "{}", stderr(&after));
    let again = world.cli(&["api-keys", "revoke", "erp"]);
    assert_eq!(
        again.status.code(),
        Some(2),
        "no key not revoked is named erp"
    );
    assert_success(&with_key(&ops_key, &["runtimes", "list"]));
}

#[test]
fn webhooks_are_managed_from_the_command_line() {
    let world = World::start();
    let receiver = crate::webhook_receiver::Receiver::start();

    // Created: the secret printed alone on standard output, once.
    let created = world.cli(&[
        "webhooks",
        "create",
        &receiver.url,
        "--events",
        "runtime.online,execution.finished",
        "--description",
        "erp",
    ]);
    assert_success(&created);
    let secret = stdout(&created).trim().to_owned();
    assert!(secret.starts_with("whsec_"), "{secret}");
    assert!(
        stderr(&created).contains("shown this once"),
        "{}",
        stderr(&created)
    );
    receiver.add_secret(&secret);
    let listed = json(&world.cli(&["webhooks", "list", "--output", "json"]));
    let id = listed[0]["id"].as_str().expect("an id").to_owned();
    assert_eq!(
        listed[0]["events"],
        serde_json::json!(["runtime.online", "execution.finished"])
    );
    let list = world.cli(&["webhooks", "list"]);
    assert!(stdout(&list).contains(&receiver.url), "{}", stdout(&list));
    assert!(!format!("{}{}", stdout(&list), stderr(&list)).contains(&secret[6..]));

    let bad = world.cli(&[
        "webhooks",
        "create",
        "ftp://example.org/",
        "--events",
        "runtime.online",
    ]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("url"), "{}", stderr(&bad));
    let unknown = world.cli(&["webhooks", "update", &id, "--events", "execution.exploded"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(
        stderr(&unknown).contains("execution.exploded"),
        "{}",
        stderr(&unknown)
    );

    // A run's end is delivered, listed among the deliveries, replayed.
    let folder = world.robot_folder("hooked", "echo hooked\n", "");
    assert_success(&world.cli(&["robots", "push", &folder]));
    assert_success(&world.cli(&["run", "hooked", "--runtime", "office-pc", "--wait"]));
    let first = wait_until(Duration::from_secs(60), "the end delivered", || {
        receiver
            .delivered()
            .into_iter()
            .find(|r| r.body["type"] == "execution.finished")
    });
    let page = json(&world.cli(&["webhooks", "deliveries", &id, "--output", "json"]));
    let listed_ids: Vec<&str> = page["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert!(listed_ids.contains(&first.id.as_str()), "{page}");
    let table = world.cli(&["webhooks", "deliveries", &id]);
    assert!(
        stdout(&table).contains("execution.finished"),
        "{}",
        stdout(&table)
    );
    assert_success(&world.cli(&["webhooks", "replay", &id, &first.id]));
    wait_until(Duration::from_secs(60), "the replay delivered", || {
        (receiver
            .delivered()
            .iter()
            .filter(|r| r.id == first.id)
            .count()
            == 2)
            .then_some(())
    });

    // Disabled, shown, given a new secret, deleted.
    let disabled = json(&world.cli(&["webhooks", "update", &id, "--disable", "--output", "json"]));
    assert_eq!(disabled["enabled"], false);
    let shown = world.cli(&["webhooks", "show", &id]);
    assert!(stdout(&shown).contains("disabled"), "{}", stdout(&shown));
    let rotated = world.cli(&["webhooks", "rotate-secret", &id]);
    assert_success(&rotated);
    let new_secret = stdout(&rotated).trim().to_owned();
    assert!(new_secret.starts_with("whsec_") && new_secret != secret);
    assert_success(&world.cli(&["webhooks", "delete", &id]));
    let gone = world.cli(&["webhooks", "show", &id]);
    assert_eq!(gone.status.code(), Some(2));
    assert!(receiver.refused().is_empty(), "{:?}", receiver.refused());
}

#[test]
fn audit_list_shows_the_newest_records_by_filter() {
    let world = World::start();
    let token = world.server.admin_token();
    let user =
        world
            .server
            .create_user(&token, "cli-audited", "password-cli-audited", "integration");
    world.server.create_runtime(&token, "audited-rt");

    let listed = json(&world.cli(&[
        "audit",
        "list",
        "--action",
        "user.create",
        "--output",
        "json",
    ]));
    let records = listed.as_array().expect("a list");
    assert_eq!(records.len(), 1, "{listed}");
    assert_eq!(records[0]["object_id"], user["id"]);
    assert_eq!(records[0]["actor_name"], ADMIN_USER);
    assert_eq!(records[0]["summary"]["username"], "cli-audited");

    // The newest first: the runtime created last.
    let newest = world.cli(&["audit", "list", "--actor", ADMIN_USER, "--limit", "1"]);
    assert_success(&newest);
    let text = stdout(&newest);
    let mut lines = text.lines();
    let header = lines.next().expect("a header");
    for column in ["TIME", "ACTOR", "ACTION", "OBJECT", "ADDRESS", "SUMMARY"] {
        assert!(header.contains(column), "{header}");
    }
    let line = lines.next().expect("one record");
    assert!(line.contains("runtime.create"), "{text}");
    assert!(line.contains("127.0.0.1"), "{text}");
    assert_eq!(lines.next(), None, "{text}");

    let refused = world.cli(&["audit", "list", "--limit", "0"]);
    assert!(!refused.status.success());
    assert!(stderr(&refused).contains("limit"), "{}", stderr(&refused));
}
