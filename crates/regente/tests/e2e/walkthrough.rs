//! README.md's walkthrough of the Integration API, run as written: its shell
//! blocks, in order, in one `bash`, from a fresh directory holding the
//! repository's examples, against the real binary. Only what cannot be the same
//! in a test is changed: the build step is skipped, `./target/release/regente`
//! is the binary under test, and the server listens on a random port.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const DEADLINE: Duration = Duration::from_secs(60);
const SECTION: &str = "## The Integration API, step by step";
const BINARY: &str = "./target/release/regente";
const README_BASE: &str = "BASE=http://127.0.0.1:8080";

/// The `sh` blocks of the walkthrough section, in order.
fn walkthrough_blocks() -> Vec<String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"))
        .expect("README.md is readable");
    let start = readme.find(SECTION).expect("the walkthrough section");
    let section = &readme[start + SECTION.len()..];
    let section = &section[..section.find("\n## ").unwrap_or(section.len())];
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in section.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```sh") => current = Some(String::new()),
            (Some(block), "```") => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            (Some(block), line) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

/// A process group killed when dropped: the server, or the walkthrough's shell
/// with the agent it starts in the background.
struct Group(Child);

impl Drop for Group {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-s", "KILL", "--", &format!("-{}", self.0.id())])
            .status();
        let _ = self.0.wait();
    }
}

fn bash(script: &str, cwd: &Path) -> Command {
    let mut command = Command::new("bash");
    command
        .args(["-c", script])
        .current_dir(cwd)
        .stdin(Stdio::null())
        .process_group(0);
    for (name, _) in std::env::vars() {
        if name.starts_with("REGENTE_") {
            command.env_remove(name);
        }
    }
    command
}

/// The text after each `@@name` marker line, up to the next marker.
fn sections(output: &str) -> HashMap<String, String> {
    let mut found = HashMap::new();
    let mut name = String::new();
    for line in output.lines() {
        if let Some(marker) = line.strip_prefix("@@") {
            name = marker.to_owned();
            found.insert(name.clone(), String::new());
        } else if let Some(text) = found.get_mut(&name) {
            text.push_str(line);
            text.push('\n');
        }
    }
    found
}

fn result(base: &str, token: &str, runtime: &str, id: &str) -> Value {
    reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("an HTTP client")
        .get(format!("{base}/api/integration/v1/result/{runtime}/{id}"))
        .header("Authorization", token)
        .send()
        .and_then(|r| r.json())
        .expect("the result route answers JSON")
}

fn wait_for_status(base: &str, token: &str, runtime: &str, id: &str, status: &str) -> Value {
    let started = Instant::now();
    loop {
        let body = result(base, token, runtime, id);
        if body["status"] == status {
            return body;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "execution {id} is not {status} after {DEADLINE:?}: {body}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_readme_walkthrough_works_as_written() {
    let blocks = walkthrough_blocks();
    assert!(blocks.len() >= 8, "the walkthrough's blocks: {blocks:#?}");
    let binary = env!("CARGO_BIN_EXE_regente");
    let cwd = tempfile::tempdir().expect("a working directory");
    // The walkthrough runs from the repository's root; it needs its examples.
    std::os::unix::fs::symlink(
        concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples"),
        cwd.path().join("examples"),
    )
    .expect("the examples are linked");

    // Terminal 1: the server, its build step skipped.
    let server_block: String = blocks[0]
        .lines()
        .filter(|line| !line.starts_with("cargo build"))
        .collect::<Vec<_>>()
        .join("\n")
        .replace(BINARY, binary);
    assert!(server_block.contains("serve"), "{server_block}");
    let mut server = bash(&server_block, cwd.path());
    server
        .env("REGENTE_LISTEN", "127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut server = Group(server.spawn().expect("the server starts"));
    let (lines, listening) = mpsc::channel();
    let stdout = server.0.stdout.take().expect("piped stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(address) = line.strip_prefix("regente listening on ") {
                let _ = lines.send(address.to_owned());
            }
        }
    });
    let base = listening
        .recv_timeout(DEADLINE)
        .expect("the server prints where it listens");

    // Terminal 2: every other block, in one shell, in order, with a marker
    // before each and the variables it set at the end.
    let mut script = String::from("set -u\n");
    for (index, block) in blocks.iter().enumerate().skip(1) {
        let block = block
            .replace(README_BASE, &format!("BASE={base}"))
            .replace(BINARY, binary);
        script.push_str(&format!("echo @@block{index}\n{block}\necho\n"));
    }
    for name in ["ADMIN", "TOKEN", "RUNTIME_ID", "ROBOT_ID", "ID", "SLOW"] {
        script.push_str(&format!("echo @@{name}; echo \"${name}\"\n"));
    }
    script.push_str("echo @@END\n");
    let mut walkthrough = bash(&script, cwd.path());
    walkthrough.stdout(Stdio::piped()).stderr(Stdio::piped());
    // The agent the walkthrough starts in the background lives in the shell's
    // group, until the end of the test.
    let mut shell = Group(walkthrough.spawn().expect("bash starts"));
    let output = output_up_to_the_end(&mut shell);
    let found = sections(&output);
    let value = |name: &str| -> String {
        found
            .get(name)
            .map(|text| text.trim().to_owned())
            .unwrap_or_else(|| panic!("the walkthrough printed no {name}:\n{output}"))
    };

    let (admin, token) = (value("ADMIN"), value("TOKEN"));
    assert!(admin.starts_with("Bearer ey"), "ADMIN: {admin}\n{output}");
    assert!(token.starts_with("Bearer ey"), "TOKEN: {token}\n{output}");
    assert_ne!(admin, token);
    let (runtime, robot) = (value("RUNTIME_ID"), value("ROBOT_ID"));
    let (id, slow) = (value("ID"), value("SLOW"));
    for (name, id) in [
        ("RUNTIME_ID", &runtime),
        ("ROBOT_ID", &robot),
        ("ID", &id),
        ("SLOW", &slow),
    ] {
        assert!(
            id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()),
            "{name} is {id:?}:\n{output}"
        );
    }
    // Step 1 created the user; step 2's v2 login answered OAuth-style JSON.
    assert!(value("block2").contains("erp@example.com"), "{output}");
    let v2: Value = value("block3")
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .find(|v: &Value| v.get("access_token").is_some())
        .unwrap_or_else(|| panic!("no v2 login answer:\n{output}"));
    assert_eq!(v2["token_type"], "bearer", "{v2}");

    // Step 6's run ends as step 7 shows it.
    let finished = wait_for_status(&base, &token, &runtime, &id, "FINISHED");
    assert_eq!(
        finished["returnValue"],
        json!({"greeted": "Maria", "times": 2})
    );
    let messages: Vec<&str> = finished["logs"]
        .as_array()
        .expect("logs")
        .iter()
        .filter_map(|log| log["message"].as_str())
        .collect();
    assert_eq!(messages, ["hello, Maria (1 of 2)", "hello, Maria (2 of 2)"]);

    // The delete step stopped the slow run: the DELETE answered no error and
    // the run ends CANCELED, long before its 90 seconds.
    let delete_block = value(&format!("block{}", blocks.len() - 1));
    assert!(
        !delete_block.contains("\"error\""),
        "the delete answered an error:\n{delete_block}"
    );
    let canceled = wait_for_status(&base, &token, &runtime, &slow, "CANCELED");
    assert!(
        !canceled.to_string().contains("(3 of 3)"),
        "the slow run was not stopped: {canceled}"
    );
    drop(shell);
    drop(server);
}

/// What the walkthrough's shell printed, up to its final marker. The agent it
/// started in the background holds the pipes open after the shell exits, so
/// the reading stops at the marker, not at the end of the pipe.
fn output_up_to_the_end(shell: &mut Group) -> String {
    let stdout = shell.0.stdout.take().expect("piped stdout");
    let stderr = shell.0.stderr.take().expect("piped stderr");
    let (sender, received) = mpsc::channel();
    let errors = sender.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = sender.send(line);
        }
    });
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = errors.send(format!("stderr: {line}"));
        }
    });
    let started = Instant::now();
    let mut output = String::new();
    loop {
        let left = DEADLINE.saturating_sub(started.elapsed());
        match received.recv_timeout(left) {
            Ok(line) if line == "@@END" => return output,
            Ok(line) => {
                output.push_str(&line);
                output.push('\n');
            }
            Err(_) => panic!("the walkthrough did not finish within {DEADLINE:?}:\n{output}"),
        }
    }
}
