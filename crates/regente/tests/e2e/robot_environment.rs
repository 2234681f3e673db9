//! What a robot gets from its agent and nothing more: its variables byte for
//! byte and only as `REGENTE_VAR_*`, the agent's `PATH`, no agent setting or
//! key, not even through `/proc`.

use serde_json::Value;

use crate::agent_runs::{ended, setup};
use crate::support::*;

#[test]
fn values_reach_the_robot_byte_for_byte() {
    let (server, admin, runtime, key) = setup();
    let out = scratch();
    let pwned = out.path().join("pwned");
    let values: Vec<(&str, String)> = vec![
        ("QUOTES", r#"it's "double" and 'single' quoted"#.to_owned()),
        ("SPACES", "  spaces  around\tand a tab  ".to_owned()),
        (
            "SUBST",
            format!("$(touch {}) and ${{HOME}} and $PATH", pwned.display()),
        ),
        (
            "BACKTICKS",
            format!(
                "`touch {}` and \\ backslash \\n not a newline",
                pwned.display()
            ),
        ),
        (
            "NEWLINES",
            "line one\nline two\n\nafter a blank line\n".to_owned(),
        ),
        (
            "UNICODE",
            "São Paulo — ação, 日本語, emoji 🤖, Ünïcödé".to_owned(),
        ),
        ("FLAGS", "-n -e %s %d * ? [a-z] ~ ; | & > < #".to_owned()),
        ("EMPTY", String::new()),
    ];
    let mut script = String::new();
    for (name, _) in &values {
        script.push_str(&format!(
            "printf '%s' \"$REGENTE_VAR_{name}\" > \"$REGENTE_VAR_OUT/{name}\"\n"
        ));
    }
    script.push_str("cp \"$REGENTE_VARIABLES\" \"$REGENTE_VAR_OUT/variables.json\"\n");
    script.push_str("printf '%s\\n' \"$REGENTE_VAR_UNICODE\"\n");
    script.push_str("printf '%s\\n' \"$REGENTE_VAR_QUOTES\"\n");
    let robot = upload_shell_robot(&server, &admin, "echo-bytes", &script, "");
    let _agent = TestAgent::start(&server, &key, 1);
    let mut body_vars: Vec<(&str, &str)> = values.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let out_text = path_text(out.path());
    body_vars.push(("OUT", &out_text));
    let id = server.queue(&admin, &runtime, &robot, Some(&text_vars(&body_vars)));
    let body = ended(&server, &admin, &runtime, &id);
    assert_eq!(body["status"], "FINISHED", "{}", summary(&body));

    let typed: Value = serde_json::from_slice(
        &std::fs::read(out.path().join("variables.json"))
            .expect("the robot copied REGENTE_VARIABLES"),
    )
    .expect("REGENTE_VARIABLES holds JSON");
    for (name, value) in &values {
        let written = std::fs::read(out.path().join(name)).expect("the robot wrote the value");
        assert_eq!(
            String::from_utf8_lossy(&written),
            value.as_str(),
            "REGENTE_VAR_{name} byte for byte"
        );
        assert_eq!(
            written,
            value.as_bytes(),
            "REGENTE_VAR_{name} byte for byte"
        );
        assert_eq!(typed[name], value.as_str(), "{name} in REGENTE_VARIABLES");
    }
    assert!(!pwned.exists(), "a value was run as a command");
    assert_eq!(
        messages(&body),
        vec![values[5].1.clone(), values[0].1.clone()],
        "printed values reach the logs unchanged"
    );
}

/// A robot that prints its whole environment, one `env` line per log line.
const PRINT_ENV: &str = "env\necho \"PATH is $PATH\"\n";

#[test]
fn a_variable_cannot_set_any_other_environment_variable() {
    let (server, admin, runtime, key) = setup();
    let robot = upload_shell_robot(&server, &admin, "print-env", PRINT_ENV, "");
    let _agent = TestAgent::start(&server, &key, 1);
    let vars = [
        ("PATH", "/evil/bin"),
        ("LD_PRELOAD", "/evil/preload.so"),
        ("HOME", "/evil/home"),
        ("REGENTE_VARIABLES", "/evil/variables.json"),
        ("VARIABLES", "/evil/variables.json"),
        ("EXECUTION_ID", "evil"),
    ];
    let id = server.queue(&admin, &runtime, &robot, Some(&text_vars(&vars)));
    let body = ended(&server, &admin, &runtime, &id);
    assert_eq!(body["status"], "FINISHED", "{}", summary(&body));
    let all = logs(&body);
    assert!(
        all.iter().all(|(level, _)| level == "INFO"),
        "nothing on stderr (a preloaded library would complain): {all:?}"
    );
    let lines: Vec<String> = all.into_iter().map(|(_, m)| m).collect();
    let agent_path = std::env::var("PATH").expect("the tests have a PATH");
    let starting =
        |prefix: &str| -> Vec<&String> { lines.iter().filter(|l| l.starts_with(prefix)).collect() };
    assert_eq!(
        starting("PATH="),
        vec![&format!("PATH={agent_path}")],
        "PATH is the agent's"
    );
    assert!(starting("LD_PRELOAD=").is_empty(), "{lines:?}");
    assert!(
        !starting("HOME=").contains(&&"HOME=/evil/home".to_owned()),
        "{lines:?}"
    );
    for (name, value) in vars {
        assert_eq!(
            starting(&format!("REGENTE_VAR_{name}=")),
            vec![&format!("REGENTE_VAR_{name}={value}")],
            "{name} arrives only as REGENTE_VAR_{name}"
        );
    }
    let variables_file = starting("REGENTE_VARIABLES=");
    assert_eq!(variables_file.len(), 1, "{lines:?}");
    assert!(
        !variables_file[0].contains("/evil/"),
        "REGENTE_VARIABLES is the agent's file: {variables_file:?}"
    );
    assert_eq!(
        starting("REGENTE_EXECUTION_ID="),
        vec![&format!("REGENTE_EXECUTION_ID={id}")]
    );
    assert!(lines.contains(&format!("PATH is {agent_path}")));
}

#[test]
fn the_agent_key_from_its_environment_is_not_in_the_robot_environment() {
    let (server, admin, runtime, key) = setup();
    let robot = upload_shell_robot(&server, &admin, "print-env", PRINT_ENV, "");
    let _agent = AgentOptions::for_server(&server, &key, 1)
        .key_in_env()
        .start();
    let id = server.queue(&admin, &runtime, &robot, None);
    let body = ended(&server, &admin, &runtime, &id);
    assert_eq!(body["status"], "FINISHED", "{}", summary(&body));
    let lines = messages(&body);
    assert!(
        lines.iter().any(|l| l.starts_with("REGENTE_EXECUTION_ID=")),
        "the robot printed its environment: {lines:?}"
    );
    assert!(
        !lines.iter().any(|l| l.contains(&key)),
        "the runtime key reached the robot: {lines:?}"
    );
    for setting in [
        "REGENTE_RUNTIME_KEY=",
        "REGENTE_SERVER=",
        "REGENTE_WORK_DIR=",
    ] {
        assert!(
            !lines.iter().any(|l| l.starts_with(setting)),
            "{setting} reached the robot: {lines:?}"
        );
    }
}

#[test]
fn a_robot_cannot_read_the_agent_key_from_the_agent_process() {
    let (server, admin, runtime, key) = setup();
    // Same user, so /proc/<agent>/environ is readable unless the agent forbids it.
    let script = r#"echo "environ of $REGENTE_VAR_AGENT_PID:"
tr '\000' '\n' < "/proc/$REGENTE_VAR_AGENT_PID/environ" 2>&1 || echo "unreadable"
"#;
    let robot = upload_shell_robot(&server, &admin, "snoop", script, "");
    let agent = AgentOptions::for_server(&server, &key, 1)
        .key_in_env()
        .start();
    let agent_pid = agent.pid().to_string();
    let id = server.queue(
        &admin,
        &runtime,
        &robot,
        Some(&text_vars(&[("AGENT_PID", &agent_pid)])),
    );
    let body = ended(&server, &admin, &runtime, &id);
    let lines = messages(&body);
    assert!(
        lines.iter().any(|l| l.starts_with("environ of")),
        "{}",
        summary(&body)
    );
    let leaked: Vec<&String> = lines.iter().filter(|l| l.contains(&key)).collect();
    assert!(
        leaked.is_empty(),
        "a robot read the runtime key from /proc/{agent_pid}/environ of the agent: {leaked:?}"
    );
}
