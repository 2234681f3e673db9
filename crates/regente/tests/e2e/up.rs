//! `regente up`, as a new user meets it: one command, then the printed token and
//! ids run each example robot (shell, Python, Robot Framework) end to end.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const DEADLINE: Duration = Duration::from_secs(90);

struct Up {
    child: Child,
    lines: mpsc::Receiver<String>,
    _data_dir: tempfile::TempDir,
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What `regente up` printed: the server, the token and the ids.
struct Welcome {
    base: String,
    token: String,
    runtime_id: String,
    robots: Vec<(String, String)>,
}

fn start_up() -> (Up, Welcome) {
    let data_dir = tempfile::tempdir().expect("a temporary data directory");
    let mut command = Command::new(env!("CARGO_BIN_EXE_regente"));
    command
        .args(["up", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir.path().join("data"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (name, _) in std::env::vars() {
        if name.starts_with("REGENTE_") {
            command.env_remove(name);
        }
    }
    let mut child = command.spawn().expect("regente up starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let (sender, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                return;
            }
        }
    });
    let up = Up {
        child,
        lines,
        _data_dir: data_dir,
    };
    let mut printed = Vec::new();
    let started = Instant::now();
    loop {
        let left = DEADLINE.saturating_sub(started.elapsed());
        match up.lines.recv_timeout(left) {
            Ok(line) if line.starts_with("Stop with Ctrl-C") => break,
            Ok(line) => printed.push(line),
            Err(_) => panic!(
                "regente up did not finish its welcome within {DEADLINE:?}; printed: {printed:#?}"
            ),
        }
    }
    let field = |label: &str| -> Vec<String> {
        printed
            .iter()
            .filter_map(|line| line.trim().strip_prefix(label))
            .map(|rest| rest.trim().to_owned())
            .collect()
    };
    let first_word = |text: &str| {
        text.split_whitespace()
            .next()
            .unwrap_or_default()
            .to_owned()
    };
    let base = first_word(field("server").first().expect("a server line"));
    let token = field("TOKEN='")
        .first()
        .expect("a TOKEN line")
        .trim_end_matches('\'')
        .to_owned();
    let runtime_id = first_word(field("runtime").first().expect("a runtime line"));
    let robots = field("robot")
        .iter()
        .map(|rest| {
            let id = first_word(rest);
            let name = rest[id.len()..]
                .trim()
                .trim_matches(|c| c == '(' || c == ')')
                .to_owned();
            (name, id)
        })
        .collect();
    (
        up,
        Welcome {
            base,
            token,
            runtime_id,
            robots,
        },
    )
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("an HTTP client")
}

/// Runs a robot with its defaults through the printed token and waits for its end.
fn run_to_end(welcome: &Welcome, robot_name: &str) -> Value {
    let http = client();
    let robot_id = &welcome
        .robots
        .iter()
        .find(|(name, _)| name == robot_name)
        .unwrap_or_else(|| panic!("robot {robot_name} was not printed: {:?}", welcome.robots))
        .1;
    let run = http
        .get(format!(
            "{}/api/integration/v1/run/{}/{robot_id}",
            welcome.base, welcome.runtime_id
        ))
        .header("Authorization", &welcome.token)
        .send()
        .expect("the run call answers");
    assert_eq!(run.status().as_u16(), 200, "run of {robot_name}");
    let execution_id = run.text().expect("an execution id");
    let started = Instant::now();
    loop {
        let result: Value = http
            .get(format!(
                "{}/api/integration/v1/result/{}/{execution_id}",
                welcome.base, welcome.runtime_id
            ))
            .header("Authorization", &welcome.token)
            .send()
            .and_then(|r| r.json())
            .expect("the result call answers JSON");
        let status = result["status"].as_str().unwrap_or_default().to_owned();
        if ["FINISHED", "ERROR", "CANCELED"].contains(&status.as_str()) {
            return result;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "{robot_name} did not end within {DEADLINE:?}: {result}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn messages(result: &Value) -> Vec<String> {
    result["logs"]
        .as_array()
        .expect("logs")
        .iter()
        .map(|log| {
            format!(
                "{} {}",
                log["level"].as_str().unwrap_or_default(),
                log["message"].as_str().unwrap_or_default()
            )
        })
        .collect()
}

#[test]
#[cfg_attr(
    not(regente_robot_framework),
    ignore = "SKIPPED: needs Robot Framework (pip install robotframework)"
)]
fn up_runs_the_three_example_robots_end_to_end() {
    let robot_framework = Command::new("python3")
        .args(["-c", "import robot"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        robot_framework,
        "Robot Framework was there when this test was built, but python3 cannot import it now"
    );
    let (mut up, welcome) = start_up();
    assert_eq!(welcome.robots.len(), 3, "{:?}", welcome.robots);

    let shell = run_to_end(&welcome, "hello-shell");
    assert_eq!(shell["status"], "FINISHED", "{shell}");
    assert_eq!(
        shell["returnValue"],
        json!({"greeted": "world", "times": 3})
    );
    assert_eq!(shell["progress"], json!(100.0));
    assert_eq!(
        messages(&shell),
        [
            "INFO hello, world (1 of 3)",
            "INFO hello, world (2 of 3)",
            "INFO hello, world (3 of 3)"
        ]
    );

    let python = run_to_end(&welcome, "cnpj-python");
    assert_eq!(python["status"], "FINISHED", "{python}");
    assert_eq!(
        python["returnValue"],
        json!({"cnpj": "11.222.333/0001-81", "valid": true, "root": "11222333"})
    );
    assert_eq!(messages(&python), ["INFO checking CNPJ 11.222.333/0001-81"]);

    let robot = run_to_end(&welcome, "report-robotframework");
    assert_eq!(robot["status"], "FINISHED", "{robot}");
    assert_eq!(
        robot["returnValue"],
        json!({"customer": "ACME Ltda", "total": 530.4})
    );
    let logs = messages(&robot);
    assert!(
        logs.contains(&"INFO summing 3 invoices of ACME Ltda".to_owned()),
        "{logs:?}"
    );
    assert!(
        logs.contains(&"WARN large total for ACME Ltda: 530.4".to_owned()),
        "{logs:?}"
    );

    // Ctrl-C stops server and runtime cleanly.
    let pid = up.child.id().to_string();
    Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("kill runs");
    let stopping = Instant::now();
    loop {
        if let Some(status) = up.child.try_wait().expect("the process can be waited for") {
            assert!(status.success(), "regente up exited with {status}");
            break;
        }
        assert!(
            stopping.elapsed() < Duration::from_secs(15),
            "regente up did not stop on SIGINT"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
