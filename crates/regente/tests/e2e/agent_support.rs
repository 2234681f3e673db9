//! Harness for the runtime agent tests: the real `regente runtime` binary as a
//! child process, a server process the tests may SIGKILL or SIGSTOP, a TCP
//! relay that keeps one address across server restarts and can cut the agent
//! off, shell robots, and polling helpers.
//!
//! Nothing here sleeps to synchronise: every wait polls with a deadline and
//! panics saying what it waited for and what it saw last.

use std::collections::HashMap;
use std::fmt::Debug;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tempfile::TempDir;

use crate::support::{drain, robot_zip, TestServer, ADMIN_PASSWORD, ADMIN_USER, JWT_SECRET};

/// How often the polling helpers look again.
const POLL: Duration = Duration::from_millis(50);
/// How long a process may take to exit after a signal.
const EXIT_DEADLINE: Duration = Duration::from_secs(15);
/// The server's listening line.
const LISTENING: &str = "regente listening on http://";

// ---------------------------------------------------------------------------
// Polling

/// Polls `probe` until it answers `Ok`, and panics after `timeout` with what
/// was awaited and the last `Err` it answered.
pub fn wait_for<T, O: Debug>(
    timeout: Duration,
    what: &str,
    mut probe: impl FnMut() -> Result<T, O>,
) -> T {
    let started = Instant::now();
    loop {
        match probe() {
            Ok(value) => return value,
            Err(observed) => {
                if started.elapsed() >= timeout {
                    panic!(
                        "timed out after {:.1} s waiting for {what}; last observed: {observed:#?}",
                        started.elapsed().as_secs_f64()
                    );
                }
            }
        }
        std::thread::sleep(POLL);
    }
}

/// Polls `probe` until it answers `Some`, and panics after `timeout`.
pub fn wait_until<T>(timeout: Duration, what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    wait_for(timeout, what, || probe().ok_or("nothing yet (None)"))
}

/// The result route's answer, read whole.
pub fn result_of(server: &TestServer, token: &str, runtime: &str, execution: &str) -> Value {
    server.result(token, runtime, execution).expect(200).json()
}

/// Polls the result route until the execution has one of `statuses`, and
/// answers the first result body seen with it (so that what the test checks
/// is what a client saw at the moment the status changed).
pub fn wait_for_status(
    server: &TestServer,
    token: &str,
    runtime: &str,
    execution: &str,
    statuses: &[&str],
    timeout: Duration,
) -> Value {
    let what = format!("execution {execution} to reach {statuses:?}");
    let started = Instant::now();
    loop {
        let body = result_of(server, token, runtime, execution);
        if statuses.iter().any(|s| body["status"] == *s) {
            return body;
        }
        if started.elapsed() >= timeout {
            panic!(
                "timed out after {:.1} s waiting for {what}; last result: {}\n--- server stderr (tail)\n{}",
                started.elapsed().as_secs_f64(),
                summary(&body),
                tail(&server.stderr(), 40)
            );
        }
        std::thread::sleep(POLL);
    }
}

/// A result body, with long log lists shortened, for panic messages.
pub fn summary(body: &Value) -> String {
    let logs = body["logs"].as_array().cloned().unwrap_or_default();
    let shown: Vec<String> = if logs.len() > 30 {
        let mut shown: Vec<String> = logs[..10].iter().map(Value::to_string).collect();
        shown.push(format!("... {} more ...", logs.len() - 20));
        shown.extend(logs[logs.len() - 10..].iter().map(Value::to_string));
        shown
    } else {
        logs.iter().map(Value::to_string).collect()
    };
    format!(
        "status {} progress {} returnValue {} end {}\nlogs:\n  {}",
        body["status"],
        body["progress"],
        body["returnValue"],
        body["end"],
        shown.join("\n  ")
    )
}

/// The last `n` lines of a text.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// `(level, message)` of every log line of a result body, in order.
pub fn logs(body: &Value) -> Vec<(String, String)> {
    body["logs"]
        .as_array()
        .unwrap_or_else(|| panic!("no logs array in {body}"))
        .iter()
        .map(|log| {
            (
                log["level"].as_str().unwrap_or("?").to_owned(),
                log["message"].as_str().unwrap_or("?").to_owned(),
            )
        })
        .collect()
}

/// The messages of a result body's logs, in order.
pub fn messages(body: &Value) -> Vec<String> {
    logs(body).into_iter().map(|(_, m)| m).collect()
}

/// The numbers of the `line N` log messages, in the order they were stored.
pub fn numbered_lines(body: &Value) -> Vec<u64> {
    messages(body)
        .iter()
        .filter_map(|m| m.strip_prefix("line ").and_then(|n| n.parse().ok()))
        .collect()
}

/// Asserts that `numbers` is exactly `1..=n`: nothing lost, nothing doubled,
/// in order.
pub fn assert_one_to_n(numbers: &[u64], n: u64, context: &str) {
    let expected: Vec<u64> = (1..=n).collect();
    if numbers != expected.as_slice() {
        let mut seen: HashMap<u64, usize> = HashMap::new();
        for number in numbers {
            *seen.entry(*number).or_default() += 1;
        }
        let missing: Vec<u64> = expected
            .iter()
            .copied()
            .filter(|n| !seen.contains_key(n))
            .collect();
        let doubled: Vec<u64> = seen
            .iter()
            .filter(|(_, count)| **count > 1)
            .map(|(n, _)| *n)
            .collect();
        let out_of_order = numbers.windows(2).position(|w| w[0] >= w[1]);
        panic!(
            "{context}: expected lines 1..={n} once each and in order; got {} lines, missing {missing:?}, doubled {doubled:?}, first out of order at index {out_of_order:?}",
            numbers.len()
        );
    }
}

// ---------------------------------------------------------------------------
// Robots

/// A robot package: `robot.toml` with `command = ["sh", "run.sh"]` plus the
/// `extra_manifest_toml` lines, and `run.sh` holding `script`.
pub fn shell_robot(name: &str, script: &str, extra_manifest_toml: &str) -> Vec<u8> {
    let manifest =
        format!("name = \"{name}\"\ncommand = [\"sh\", \"run.sh\"]\n{extra_manifest_toml}\n");
    robot_zip(&manifest, &[("run.sh", script.as_bytes())])
}

/// Uploads a shell robot and answers its id.
pub fn upload_shell_robot(
    server: &TestServer,
    token: &str,
    name: &str,
    script: &str,
    extra_manifest_toml: &str,
) -> String {
    server.upload_robot(token, shell_robot(name, script, extra_manifest_toml))["id"]
        .as_str()
        .expect("robot id")
        .to_owned()
}

/// A run body with text variables.
pub fn text_vars(vars: &[(&str, &str)]) -> Value {
    json!({
        "variables": vars
            .iter()
            .map(|(name, value)| json!({"name": name, "type": "text", "value": value}))
            .collect::<Vec<_>>()
    })
}

/// The lines of a ledger file (missing file: none).
pub fn ledger(path: &Path) -> Vec<String> {
    match std::fs::read_to_string(path) {
        Ok(text) => text.lines().map(str::to_owned).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("{}: {e}", path.display()),
    }
}

/// How many times `id` appears as a line of the ledger.
pub fn ledger_count(path: &Path, id: &str) -> usize {
    ledger(path).iter().filter(|line| *line == id).count()
}

// ---------------------------------------------------------------------------
// Processes

/// Whether a process exists and is not a zombie.
pub fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !matches!(process_state(&stat), Some('Z' | 'X' | 'x') | None),
        Err(_) => false,
    }
}

/// The state letter of a `/proc/PID/stat` text (after the command in parentheses).
fn process_state(stat: &str) -> Option<char> {
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().next()?.chars().next()
}

/// The parent pid of a live process.
pub fn parent_pid(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(1)?.parse().ok()
}

/// The live children of `pid` whose command line holds `word`.
pub fn children_with(pid: u32, word: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|child| parent_pid(*child) == Some(pid) && pid_alive(*child))
        .filter(|child| {
            std::fs::read(format!("/proc/{child}/cmdline"))
                .map(|line| String::from_utf8_lossy(&line).contains(word))
                .unwrap_or(false)
        })
        .collect()
}

/// Waits for a file holding a pid and a newline (written by a robot), and
/// answers the pid.
pub fn wait_for_pid_file(path: &Path, timeout: Duration) -> u32 {
    wait_for(
        timeout,
        &format!("a pid in {}", path.display()),
        || match std::fs::read_to_string(path) {
            Ok(text) if text.ends_with('\n') => text
                .trim()
                .parse::<u32>()
                .map_err(|e| format!("{text:?}: {e}")),
            Ok(text) => Err(format!("incomplete: {text:?}")),
            Err(e) => Err(e.to_string()),
        },
    )
}

/// Waits until every named process is gone (or a zombie).
pub fn wait_gone(pids: &[(&str, u32)], timeout: Duration) {
    wait_for(timeout, "the robot's processes to be gone", || {
        let alive: Vec<String> = pids
            .iter()
            .filter(|(_, pid)| pid_alive(*pid))
            .map(|(name, pid)| format!("{name} (pid {pid}) is alive"))
            .collect();
        if alive.is_empty() {
            Ok(())
        } else {
            Err(alive)
        }
    })
}

/// Sends a signal (`KILL`, `TERM`, `STOP`, `CONT`) with the `kill` command.
pub fn signal(pid: u32, signal: &str) {
    let sent = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .expect("the kill command runs");
    assert!(sent.success(), "kill -{signal} {pid} failed");
}

/// Waits for a child to exit, polling with a deadline.
fn wait_exit(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A child process with its output drained into buffers.
struct Running {
    child: Child,
    stderr: Arc<Mutex<String>>,
    lines: mpsc::Receiver<String>,
}

fn spawn_drained(mut command: Command) -> Running {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("the regente binary starts");
    let stdout = Arc::new(Mutex::new(String::new()));
    let stderr = Arc::new(Mutex::new(String::new()));
    let (tx, lines) = mpsc::channel();
    // The reader threads end when the pipes close; nobody joins them, so a
    // leftover process holding a pipe cannot hang a test.
    drain(child.stdout.take().expect("piped stdout"), stdout, Some(tx));
    drain(
        child.stderr.take().expect("piped stderr"),
        stderr.clone(),
        None,
    );
    Running {
        child,
        stderr,
        lines,
    }
}

/// A command for the `regente` binary without any `REGENTE_*` variable of the
/// test's own environment, and without colours in its log.
fn regente_command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_regente"));
    for (name, _) in std::env::vars() {
        if name.starts_with("REGENTE_") {
            command.env_remove(name);
        }
    }
    command.env("NO_COLOR", "1");
    command
}

// ---------------------------------------------------------------------------
// The agent

/// How to start an agent.
#[derive(Clone, Debug)]
pub struct AgentOptions {
    pub urls: Vec<String>,
    pub key: String,
    pub slots: u32,
    /// `None`: a fresh temporary directory.
    pub work_dir: Option<PathBuf>,
    /// Pass the key in `REGENTE_RUNTIME_KEY` instead of `--key`.
    pub key_in_env: bool,
}

/// A running `regente runtime`, killed when dropped.
pub struct TestAgent {
    options: AgentOptions,
    work_dir: PathBuf,
    _temp: Option<TempDir>,
    process: Option<Running>,
    /// What earlier processes of this agent (before a restart) printed.
    earlier_stderr: String,
}

impl TestAgent {
    /// Starts an agent for a server, in a fresh work directory.
    pub fn start(server: &TestServer, key: &str, slots: u32) -> TestAgent {
        TestAgent::start_on(std::slice::from_ref(&server.base), key, slots)
    }

    /// Starts an agent for a server, in the given work directory.
    pub fn start_in(server: &TestServer, key: &str, slots: u32, work_dir: &Path) -> TestAgent {
        TestAgent::launch(AgentOptions {
            urls: vec![server.base.clone()],
            key: key.to_owned(),
            slots,
            work_dir: Some(work_dir.to_owned()),
            key_in_env: false,
        })
    }

    /// Starts an agent given several server addresses, in a fresh work directory.
    pub fn start_on(urls: &[String], key: &str, slots: u32) -> TestAgent {
        TestAgent::launch(AgentOptions {
            urls: urls.to_vec(),
            key: key.to_owned(),
            slots,
            work_dir: None,
            key_in_env: false,
        })
    }

    pub fn launch(options: AgentOptions) -> TestAgent {
        let (work_dir, temp) = match &options.work_dir {
            Some(dir) => (dir.clone(), None),
            None => {
                let temp = tempfile::Builder::new()
                    .prefix("regente-agent-")
                    .tempdir()
                    .expect("a temporary work directory");
                (temp.path().join("work"), Some(temp))
            }
        };
        let mut agent = TestAgent {
            options,
            work_dir,
            _temp: temp,
            process: None,
            earlier_stderr: String::new(),
        };
        agent.spawn();
        agent
    }

    fn spawn(&mut self) {
        let mut command = regente_command();
        command
            .arg("runtime")
            .arg("--server")
            .arg(self.options.urls.join(","))
            .arg("--work-dir")
            .arg(&self.work_dir);
        // 0: no --slots, so the runtime's setting on the server decides.
        if self.options.slots > 0 {
            command.arg("--slots").arg(self.options.slots.to_string());
        }
        if self.options.key_in_env {
            command.env("REGENTE_RUNTIME_KEY", &self.options.key);
        } else {
            command.arg("--key").arg(&self.options.key);
        }
        self.process = Some(spawn_drained(command));
    }

    pub fn pid(&self) -> u32 {
        self.process.as_ref().expect("the agent runs").child.id()
    }

    /// What the current process printed on stderr (its log) so far.
    pub fn stderr(&self) -> String {
        self.process
            .as_ref()
            .map(|p| p.stderr.lock().unwrap().clone())
            .unwrap_or_default()
    }

    /// Everything every process of this agent printed on stderr.
    pub fn all_stderr(&self) -> String {
        format!("{}{}", self.earlier_stderr, self.stderr())
    }

    /// How many times the current process was welcomed by a server.
    pub fn welcomes(&self) -> usize {
        self.stderr().matches("welcomed by the server").count()
    }

    /// Waits until the current process has been welcomed `n` times.
    pub fn wait_welcomed(&self, n: usize, timeout: Duration) {
        wait_for(
            timeout,
            &format!("the agent to be welcomed {n} times"),
            || {
                if self.welcomes() >= n {
                    Ok(())
                } else {
                    Err(tail(&self.stderr(), 20))
                }
            },
        );
    }

    /// Waits until the agent's log holds `text`.
    pub fn wait_log(&self, text: &str, timeout: Duration) {
        wait_for(timeout, &format!("{text:?} in the agent's log"), || {
            if self.stderr().contains(text) {
                Ok(())
            } else {
                Err(tail(&self.stderr(), 20))
            }
        });
    }

    fn take(&mut self) -> Running {
        self.process.take().expect("the agent runs")
    }

    fn retire(&mut self, process: &Running, how: &str) {
        self.earlier_stderr
            .push_str(&process.stderr.lock().unwrap());
        self.earlier_stderr
            .push_str(&format!("--- agent process {how} ---\n"));
    }

    /// SIGKILL, and waits for the process to be gone.
    pub fn kill9(&mut self) {
        let mut process = self.take();
        signal(process.child.id(), "KILL");
        let status = wait_exit(&mut process.child, EXIT_DEADLINE);
        assert!(status.is_some(), "the agent survived SIGKILL");
        self.retire(&process, "killed with SIGKILL");
    }

    /// SIGTERM, and answers the exit status.
    pub fn stop(&mut self) -> ExitStatus {
        let mut process = self.take();
        signal(process.child.id(), "TERM");
        let status = wait_exit(&mut process.child, EXIT_DEADLINE);
        self.retire(&process, "stopped with SIGTERM");
        status.unwrap_or_else(|| {
            let _ = process.child.kill();
            panic!(
                "the agent did not exit within {EXIT_DEADLINE:?} of SIGTERM\n{}",
                tail(&self.earlier_stderr, 40)
            )
        })
    }

    /// Starts the agent again with the same options and work directory.
    pub fn restart(&mut self) {
        assert!(self.process.is_none(), "the agent still runs");
        self.spawn();
    }

    /// SIGSTOP: the process freezes (its robots do not).
    pub fn pause(&self) {
        signal(self.pid(), "STOP");
    }

    /// SIGCONT.
    pub fn resume(&self) {
        signal(self.pid(), "CONT");
    }
}

impl Drop for TestAgent {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- agent stderr (tail) ---\n{}",
                tail(&self.all_stderr(), 60)
            );
        }
        if let Some(mut process) = self.process.take() {
            let _ = process.child.kill();
            let _ = process.child.wait();
        }
    }
}

// ---------------------------------------------------------------------------
// A server process the tests may SIGKILL or SIGSTOP

/// A `regente serve` started by the test itself on a [`TestServer`]'s data
/// directory, so that it can be killed with SIGKILL or frozen with SIGSTOP.
/// The `TestServer` keeps serving as the HTTP client: its `base` is pointed
/// at this process.
pub struct ServerProcess {
    process: Option<Running>,
    data_dir: PathBuf,
    env: Vec<(String, String)>,
    pub base: String,
    earlier_stderr: String,
    /// The same database as the server taken over, on the PostgreSQL backend.
    database_url: Option<String>,
}

impl ServerProcess {
    /// Stops `server`'s own process (cleanly) and starts one on its data
    /// directory with the standard environment plus `env`.
    pub fn take_over(server: &mut TestServer, env: &[(&str, &str)]) -> ServerProcess {
        server.stop();
        let mut vars: Vec<(String, String)> = vec![
            ("REGENTE_ADMIN_USER".into(), ADMIN_USER.into()),
            ("REGENTE_ADMIN_PASSWORD".into(), ADMIN_PASSWORD.into()),
            ("REGENTE_JWT_SECRET".into(), JWT_SECRET.into()),
        ];
        vars.extend(env.iter().map(|(n, v)| (n.to_string(), v.to_string())));
        let mut process = ServerProcess {
            process: None,
            database_url: server.database_url(),
            data_dir: server.data_dir(),
            env: vars,
            base: String::new(),
            earlier_stderr: String::new(),
        };
        process.spawn();
        server.base = process.base.clone();
        process
    }

    fn spawn(&mut self) {
        let mut command = regente_command();
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&self.data_dir);
        if let Some(url) = &self.database_url {
            command.arg("--database-url").arg(url);
        }
        for (name, value) in &self.env {
            command.env(name, value);
        }
        let running = spawn_drained(command);
        let deadline = Instant::now() + Duration::from_secs(30);
        let addr = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match running.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(addr) = line.trim().strip_prefix(LISTENING) {
                        break addr.to_owned();
                    }
                }
                Err(why) => panic!(
                    "the server did not print its listening line ({why:?})\n--- stderr\n{}",
                    running.stderr.lock().unwrap()
                ),
            }
        };
        self.base = format!("http://{addr}");
        self.process = Some(running);
    }

    pub fn pid(&self) -> u32 {
        self.process.as_ref().expect("the server runs").child.id()
    }

    pub fn stderr(&self) -> String {
        let current = self
            .process
            .as_ref()
            .map(|p| p.stderr.lock().unwrap().clone())
            .unwrap_or_default();
        format!("{}{current}", self.earlier_stderr)
    }

    /// SIGKILL, and waits for the process to be gone.
    pub fn kill9(&mut self) {
        let mut process = self.process.take().expect("the server runs");
        signal(process.child.id(), "KILL");
        assert!(
            wait_exit(&mut process.child, EXIT_DEADLINE).is_some(),
            "the server survived SIGKILL"
        );
        self.earlier_stderr
            .push_str(&process.stderr.lock().unwrap());
        self.earlier_stderr
            .push_str("--- server killed with SIGKILL ---\n");
    }

    /// Starts the server again on the same data directory (on a new port) and
    /// points `server` at it.
    pub fn start_again(&mut self, server: &mut TestServer) {
        assert!(self.process.is_none(), "the server still runs");
        self.spawn();
        server.base = self.base.clone();
    }

    pub fn pause(&self) {
        signal(self.pid(), "STOP");
    }

    pub fn resume(&self) {
        signal(self.pid(), "CONT");
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- server stderr (tail) ---\n{}", tail(&self.stderr(), 60));
        }
        if let Some(mut process) = self.process.take() {
            let _ = signal_quietly(process.child.id(), "CONT");
            let _ = process.child.kill();
            let _ = process.child.wait();
        }
    }
}

fn signal_quietly(pid: u32, signal: &str) -> std::io::Result<ExitStatus> {
    Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stderr(Stdio::null())
        .status()
}

// ---------------------------------------------------------------------------
// A TCP relay between agents and a server

struct RelayState {
    /// `host:port` of the server.
    target: Mutex<String>,
    cut: AtomicBool,
    closing: AtomicBool,
    /// Both ends of every open connection, to shut them down on a cut.
    open: Mutex<Vec<TcpStream>>,
}

/// Forwards TCP connections to a server, so that agents keep one address
/// while the server restarts on new ports, and can be cut off: a cut closes
/// every open connection and closes new ones at once until restored.
pub struct Relay {
    port: u16,
    state: Arc<RelayState>,
}

impl Relay {
    /// A relay to `base` (`http://host:port`).
    pub fn start(base: &str) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a relay port");
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(RelayState {
            target: Mutex::new(host_port(base)),
            cut: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            open: Mutex::new(Vec::new()),
        });
        let shared = state.clone();
        std::thread::spawn(move || {
            for incoming in listener.incoming() {
                if shared.closing.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(agent_side) = incoming else { continue };
                if shared.cut.load(Ordering::SeqCst) {
                    let _ = agent_side.shutdown(Shutdown::Both);
                    continue;
                }
                let target = shared.target.lock().unwrap().clone();
                let Ok(server_side) = TcpStream::connect(&target) else {
                    let _ = agent_side.shutdown(Shutdown::Both);
                    continue;
                };
                let _ = agent_side.set_nodelay(true);
                let _ = server_side.set_nodelay(true);
                {
                    let mut open = shared.open.lock().unwrap();
                    open.retain(|s| s.peer_addr().is_ok());
                    open.push(agent_side.try_clone().unwrap());
                    open.push(server_side.try_clone().unwrap());
                }
                pipe(
                    agent_side.try_clone().unwrap(),
                    server_side.try_clone().unwrap(),
                );
                pipe(server_side, agent_side);
            }
        });
        Relay { port, state }
    }

    /// The address agents dial.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Sends new connections to `base` from now on.
    pub fn point_to(&self, base: &str) {
        *self.state.target.lock().unwrap() = host_port(base);
    }

    /// Cuts every open connection and refuses new ones until [`Relay::restore`].
    pub fn cut(&self) {
        self.state.cut.store(true, Ordering::SeqCst);
        self.close_all();
    }

    pub fn restore(&self) {
        self.state.cut.store(false, Ordering::SeqCst);
    }

    fn close_all(&self) {
        for stream in self.state.open.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.state.closing.store(true, Ordering::SeqCst);
        self.close_all();
        // Wakes the accept loop so that it sees `closing`.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Copies one direction of a relayed connection; at its end, both directions close.
fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from, &mut to);
        let _ = from.shutdown(Shutdown::Both);
        let _ = to.shutdown(Shutdown::Both);
    });
}

fn host_port(base: &str) -> String {
    base.trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned()
}

/// An address where nothing listens.
pub fn dead_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a port");
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

// ---------------------------------------------------------------------------
// Scratch space

/// A temporary directory for what robots write (pid files, ledgers, outputs).
pub fn scratch() -> TempDir {
    tempfile::Builder::new()
        .prefix("regente-robot-out-")
        .tempdir()
        .expect("a scratch directory")
}

/// A path as text, for a variable.
pub fn path_text(path: &Path) -> String {
    path.to_str().expect("a UTF-8 path").to_owned()
}

/// The admin API's runtimes, by id.
pub fn runtime_online(server: &TestServer, token: &str, runtime: &str) -> bool {
    let list = server.get("/api/admin/runtimes", token).expect(200).json();
    list.as_array()
        .expect("a list of runtimes")
        .iter()
        .any(|r| r["id"] == runtime && r["online"] == true)
}
