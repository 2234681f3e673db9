//! `regente runtime` as a process: started for one or more servers, then
//! killed, stopped, frozen or restarted on its work directory by the test.

use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use tempfile::TempDir;

use crate::binary::{regente_binary, regente_command};
use crate::client::Api;
use crate::lifecycle::{Lifecycle, EXIT_DEADLINE};
use crate::poll::wait_for;
use crate::process::Running;
use crate::results::tail;

/// How to start an agent.
#[derive(Clone, Debug)]
pub struct AgentOptions {
    urls: Vec<String>,
    key: String,
    slots: u32,
    work_dir: Option<PathBuf>,
    key_in_env: bool,
    binary: Option<PathBuf>,
    log_file: Option<PathBuf>,
    ca_file: Option<PathBuf>,
    robot_users: Vec<String>,
}

impl AgentOptions {
    /// An agent for these server addresses with this runtime key, running
    /// `slots` robots at once (0: as many as the runtime is set for on the
    /// server), in a fresh temporary work directory.
    pub fn new(urls: &[String], key: &str, slots: u32) -> AgentOptions {
        AgentOptions {
            urls: urls.to_vec(),
            key: key.to_owned(),
            slots,
            work_dir: None,
            key_in_env: false,
            binary: None,
            log_file: None,
            ca_file: None,
            robot_users: Vec::new(),
        }
    }

    /// Robots run as these OS users (`--robot-user`, one per running robot).
    pub fn robot_users(mut self, users: &[&str]) -> Self {
        self.robot_users = users.iter().map(|u| u.to_string()).collect();
        self
    }

    /// Trusts the CA certificates in this PEM file (`--ca-file`).
    pub fn ca_file(mut self, path: &Path) -> Self {
        self.ca_file = Some(path.to_owned());
        self
    }

    /// An agent for one server.
    pub fn for_server(server: &Api, key: &str, slots: u32) -> AgentOptions {
        AgentOptions::new(std::slice::from_ref(&server.base), key, slots)
    }

    /// This work directory, kept after the agent.
    pub fn work_dir(mut self, path: &Path) -> Self {
        self.work_dir = Some(path.to_owned());
        self
    }

    /// The key in `REGENTE_RUNTIME_KEY` instead of `--key`.
    pub fn key_in_env(mut self) -> Self {
        self.key_in_env = true;
        self
    }

    /// The `regente` binary to run instead of [`regente_binary`].
    pub fn binary(mut self, path: &Path) -> Self {
        self.binary = Some(path.to_owned());
        self
    }

    /// The log (stderr) goes to this file instead of memory.
    pub fn log_file(mut self, path: &Path) -> Self {
        self.log_file = Some(path.to_owned());
        self
    }

    pub fn start(self) -> TestAgent {
        let (work_dir, temp) = match &self.work_dir {
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
            binary: self.binary.clone().unwrap_or_else(regente_binary),
            options: self,
            work_dir,
            _temp: temp,
            processes: Lifecycle::new("agent"),
        };
        agent.spawn();
        agent
    }
}

/// A running `regente runtime`, killed when dropped (after printing the tail
/// of its log if the test is failing).
pub struct TestAgent {
    options: AgentOptions,
    binary: PathBuf,
    work_dir: PathBuf,
    _temp: Option<TempDir>,
    processes: Lifecycle,
}

impl TestAgent {
    /// Starts an agent for a server, in a fresh work directory.
    pub fn start(server: &Api, key: &str, slots: u32) -> TestAgent {
        AgentOptions::for_server(server, key, slots).start()
    }

    /// Starts an agent for a server, in the given work directory.
    pub fn start_in(server: &Api, key: &str, slots: u32, work_dir: &Path) -> TestAgent {
        AgentOptions::for_server(server, key, slots)
            .work_dir(work_dir)
            .start()
    }

    /// Starts an agent given several server addresses, in a fresh work directory.
    pub fn start_on(urls: &[String], key: &str, slots: u32) -> TestAgent {
        AgentOptions::new(urls, key, slots).start()
    }

    fn spawn(&mut self) {
        let options = &self.options;
        let mut command = regente_command(&self.binary);
        command
            .arg("runtime")
            .arg("--server")
            .arg(options.urls.join(","))
            .arg("--work-dir")
            .arg(&self.work_dir);
        if options.slots > 0 {
            command.arg("--slots").arg(options.slots.to_string());
        }
        if let Some(ca_file) = &options.ca_file {
            command.arg("--ca-file").arg(ca_file);
        }
        if !options.robot_users.is_empty() {
            command
                .arg("--robot-user")
                .arg(options.robot_users.join(","));
        }
        if options.key_in_env {
            command.env("REGENTE_RUNTIME_KEY", &options.key);
        } else {
            command.arg("--key").arg(&options.key);
        }
        let log_file = options.log_file.as_deref();
        self.processes.begin(Running::spawn(command, log_file));
    }

    pub fn pid(&self) -> u32 {
        self.processes.pid()
    }

    /// The agent's work directory (journal, packages, run directories).
    pub fn work_dir(&self) -> &Path {
        &self.work_dir
    }

    /// The journal file that holds `execution_id`'s journal now, if any: a
    /// file holds one journal after another, zeroed in between.
    pub fn journal_file_of(&self, execution_id: &str) -> Option<PathBuf> {
        let entries = std::fs::read_dir(self.work_dir.join("journal")).ok()?;
        entries.flatten().map(|e| e.path()).find(|path| {
            std::fs::read(path).is_ok_and(|bytes| {
                bytes
                    .windows(execution_id.len())
                    .any(|w| w == execution_id.as_bytes())
            })
        })
    }

    /// What the current process logged (printed on stderr) so far.
    pub fn stderr(&self) -> String {
        self.processes.stderr()
    }

    /// What every process of this agent logged, restarts marked.
    pub fn all_stderr(&self) -> String {
        self.processes.all_stderr()
    }

    /// How many times the current process was welcomed by a server.
    pub fn welcomes(&self) -> usize {
        self.stderr().matches("welcomed by the server").count()
    }

    /// Waits until the current process has been welcomed `n` times.
    pub fn wait_welcomed(&self, n: usize, timeout: Duration) {
        let what = format!("the agent to be welcomed {n} times");
        self.wait_until_log(timeout, &what, |log| {
            log.matches("welcomed by the server").count() >= n
        });
    }

    /// Waits until the agent's log holds `text`.
    pub fn wait_log(&self, text: &str, timeout: Duration) {
        let what = format!("{text:?} in the agent's log");
        self.wait_until_log(timeout, &what, |log| log.contains(text));
    }

    fn wait_until_log(&self, timeout: Duration, what: &str, done: impl Fn(&str) -> bool) {
        wait_for(timeout, what, || {
            let log = self.stderr();
            if done(&log) {
                Ok(())
            } else {
                Err(tail(&log, 20))
            }
        });
    }

    /// SIGKILL, and waits for the process to be gone.
    pub fn kill9(&mut self) {
        self.processes.kill9();
    }

    /// SIGTERM, and answers the exit status.
    pub fn stop(&mut self) -> ExitStatus {
        self.processes.stop("TERM").unwrap_or_else(|| {
            panic!(
                "the agent did not exit within {EXIT_DEADLINE:?} of SIGTERM\n{}",
                tail(&self.processes.all_stderr(), 40)
            )
        })
    }

    /// Starts the agent again with the same options and work directory.
    pub fn restart(&mut self) {
        self.spawn();
    }

    /// SIGSTOP: the process freezes (its robots do not).
    pub fn pause(&self) {
        self.processes.pause();
    }

    /// SIGCONT.
    pub fn resume(&self) {
        self.processes.resume();
    }
}

impl Drop for TestAgent {
    fn drop(&mut self) {
        self.processes.report_if_panicking("");
        if let Some(mut process) = self.processes.take() {
            process.kill();
        }
    }
}
