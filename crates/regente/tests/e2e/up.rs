//! `regente up`, as a new user meets it: one command from an empty directory,
//! then the printed token and ids run each example robot (shell, Python, Robot
//! Framework) end to end. A machine without Robot Framework is told what is
//! missing and how to get it, and the other examples still run.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const DEADLINE: Duration = Duration::from_secs(90);
/// Creating a Python environment and installing Robot Framework into it.
const INSTALL_DEADLINE: Duration = Duration::from_secs(300);

pub(crate) struct Up {
    child: Child,
    lines: mpsc::Receiver<String>,
    /// Where its log (standard error) goes.
    log: PathBuf,
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What `regente up` printed: the server, the token, the ids and what it
/// could not load.
#[derive(Debug)]
pub(crate) struct Welcome {
    /// The console's address (`http://…/`).
    pub(crate) console: String,
    /// The admin line: `NAME / PASSWORD` when the password was generated.
    pub(crate) admin: String,
    base: String,
    data_dir: String,
    token: String,
    runtime_id: String,
    pub(crate) robots: Vec<(String, String)>,
    /// The `missing` lines and the fix lines after them.
    pub(crate) missing: Vec<String>,
}

/// `regente up` with `args` from `cwd`, with no `REGENTE_*` setting but a
/// random port, and `PATH` as given.
pub(crate) fn start_up(
    cwd: &Path,
    args: &[&str],
    path: Option<&str>,
    deadline: Duration,
) -> (Up, Welcome) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_regente"));
    command
        .arg("up")
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    let log = cwd.join(format!("up-{}.log", rand_suffix()));
    command.stderr(std::fs::File::create(&log).expect("a log file"));
    for (name, _) in std::env::vars() {
        if name.starts_with("REGENTE_") {
            command.env_remove(name);
        }
    }
    // The port is the only setting: tests run side by side.
    command.env("REGENTE_LISTEN", "127.0.0.1:0");
    if let Some(path) = path {
        command.env("PATH", path);
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
    let up = Up { child, lines, log };
    let mut printed = Vec::new();
    let started = Instant::now();
    loop {
        let left = deadline.saturating_sub(started.elapsed());
        match up.lines.recv_timeout(left) {
            Ok(line) if line.starts_with("Stop with Ctrl-C") => break,
            Ok(line) => printed.push(line),
            Err(_) => panic!(
                "regente up did not finish its welcome within {deadline:?}; printed: {printed:#?}"
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
    let one = |label: &str| {
        field(label)
            .first()
            .cloned()
            .unwrap_or_else(|| panic!("no {label:?} line in {printed:#?}"))
    };
    let robots = field("robot ")
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
    let missing = printed
        .iter()
        .filter(|line| line.trim().starts_with("missing") || line.trim().starts_with("fix:"))
        .map(|line| line.trim().to_owned())
        .collect();
    let welcome = Welcome {
        console: first_word(&one("console")),
        admin: one("admin"),
        base: first_word(&one("server")),
        data_dir: one("data"),
        token: one("TOKEN='").trim_end_matches('\'').to_owned(),
        runtime_id: first_word(&one("runtime")),
        robots,
        missing,
    };
    (up, welcome)
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
        .unwrap_or_else(|| panic!("robot {robot_name} was not printed: {welcome:#?}"))
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

fn assert_shell_example_runs(welcome: &Welcome) {
    let shell = run_to_end(welcome, "hello-shell");
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
}

fn assert_python_example_runs(welcome: &Welcome) {
    let python = run_to_end(welcome, "cnpj-python");
    assert_eq!(python["status"], "FINISHED", "{python}");
    assert_eq!(
        python["returnValue"],
        json!({"cnpj": "11.222.333/0001-81", "valid": true, "root": "11222333"})
    );
    assert_eq!(messages(&python), ["INFO checking CNPJ 11.222.333/0001-81"]);
}

fn assert_robot_framework_example_runs(welcome: &Welcome) {
    let robot = run_to_end(welcome, "report-robotframework");
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
}

/// The welcome names Robot Framework as missing, with the command that
/// installs it, and loads the two other examples.
fn assert_robot_framework_reported_missing(welcome: &Welcome) {
    let names: Vec<&str> = welcome.robots.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["hello-shell", "cnpj-python"], "{welcome:#?}");
    let missing = welcome.missing.join("\n");
    assert!(
        missing.contains("report-robotframework") && missing.contains("Robot Framework"),
        "{welcome:#?}"
    );
    assert!(
        missing.contains("fix:") && missing.contains("up --with-robotframework"),
        "the fix is the command that installs it: {welcome:#?}"
    );
}

fn robot_framework_installed() -> bool {
    Command::new("python3")
        .args(["-c", "import robot"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A `PATH` whose `python3` sees no installed packages (`-S`: no site
/// directories), as on a machine where Robot Framework was never installed.
fn path_without_robot_framework(dir: &Path) -> String {
    let output = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .expect("python3 runs");
    let python = String::from_utf8(output.stdout)
        .expect("a path")
        .trim()
        .to_owned();
    let bin = dir.join("bare-python");
    std::fs::create_dir_all(&bin).expect("a folder for the wrapper");
    let wrapper = bin.join("python3");
    std::fs::write(&wrapper, format!("#!/bin/sh\nexec '{python}' -S \"$@\"\n"))
        .expect("the wrapper is written");
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("the wrapper is executable");
    format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// A suffix that differs between calls.
fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_nanos()
}

/// Stops `up` as Ctrl-C would: it exits 0 and logs no warning on the way (the
/// agent closes its connection before the server goes).
fn stop_with_ctrl_c(mut up: Up) {
    let pid = up.child.id().to_string();
    Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("kill runs");
    let stopping = Instant::now();
    loop {
        if let Some(status) = up.child.try_wait().expect("the process can be waited for") {
            let log = std::fs::read_to_string(&up.log).expect("the log is readable");
            assert!(
                status.success(),
                "regente up exited with {status}; log:\n{log}"
            );
            let warnings: Vec<&str> = log
                .lines()
                .filter(|line| line.contains(" WARN ") || line.contains(" ERROR "))
                .collect();
            assert!(
                warnings.is_empty(),
                "warnings on a normal run and stop: {warnings:#?}"
            );
            return;
        }
        assert!(
            stopping.elapsed() < Duration::from_secs(15),
            "regente up did not stop on SIGINT"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn canonical(path: &Path) -> PathBuf {
    path.canonicalize().expect("the path exists")
}

#[test]
fn up_from_an_empty_directory_with_no_flags_runs_every_example() {
    let cwd = tempfile::tempdir().expect("a working directory");
    let (up, welcome) = start_up(cwd.path(), &[], None, DEADLINE);
    // The default data directory is relative; it is resolved once and shown.
    assert_eq!(
        PathBuf::from(&welcome.data_dir),
        canonical(cwd.path()).join("regente-data"),
        "{welcome:#?}"
    );
    assert_shell_example_runs(&welcome);
    // Python reads its variables file through the path it is given, from its
    // package's folder: the path must not be relative to the data directory.
    assert_python_example_runs(&welcome);
    if robot_framework_installed() {
        assert_eq!(welcome.robots.len(), 3, "{welcome:#?}");
        assert!(welcome.missing.is_empty(), "{welcome:#?}");
        assert_robot_framework_example_runs(&welcome);
    } else {
        assert_robot_framework_reported_missing(&welcome);
    }
    stop_with_ctrl_c(up);
}

#[test]
fn up_without_robot_framework_names_it_and_runs_the_other_examples() {
    let cwd = tempfile::tempdir().expect("a working directory");
    let path = path_without_robot_framework(cwd.path());
    let (up, welcome) = start_up(cwd.path(), &[], Some(&path), DEADLINE);
    assert_robot_framework_reported_missing(&welcome);
    assert_shell_example_runs(&welcome);
    assert_python_example_runs(&welcome);
    stop_with_ctrl_c(up);
}

#[test]
fn up_with_robotframework_installs_it_into_the_data_directory() {
    let cwd = tempfile::tempdir().expect("a working directory");
    let path = path_without_robot_framework(cwd.path());
    let (up, welcome) = start_up(
        cwd.path(),
        &["--with-robotframework"],
        Some(&path),
        INSTALL_DEADLINE,
    );
    assert!(welcome.missing.is_empty(), "{welcome:#?}");
    assert!(
        cwd.path().join("regente-data/python/bin/python3").is_file(),
        "Robot Framework goes into the data directory's own Python environment"
    );
    assert_robot_framework_example_runs(&welcome);
    stop_with_ctrl_c(up);

    // The next start finds it there without being asked.
    let (up, welcome) = start_up(cwd.path(), &[], Some(&path), DEADLINE);
    assert!(welcome.missing.is_empty(), "{welcome:#?}");
    assert_robot_framework_example_runs(&welcome);
    stop_with_ctrl_c(up);
}
