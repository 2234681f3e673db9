//! `regente serve` as a process: started on a random port with a temporary
//! data directory, then stopped, restarted, killed or frozen by the test.

use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use tempfile::TempDir;

use crate::binary::{regente_binary, regente_command};
use crate::client::Api;
use crate::lifecycle::{Lifecycle, EXIT_DEADLINE};
use crate::postgres::TestDatabase;
use crate::process::Running;
use crate::results::tail;

pub const ADMIN_USER: &str = "admin";
pub const ADMIN_PASSWORD: &str = "admin-password-e2e";
/// The signing secret a server gets unless the test removes it.
pub const JWT_SECRET: &str = "e2e-signing-secret-0123456789abcdef0123456789abcdef";
/// The vault's master key every test server gets (`REGENTE_MASTER_KEY`), so that
/// the vault is on whatever the backend; tests of the data dir's key file remove it.
pub const MASTER_KEY: &str = "ZTJlLW1hc3Rlci1rZXktMDEyMzQ1Njc4OWFiY2RlZjA=";
/// How long a server may take to print its listening line.
const START_DEADLINE: Duration = Duration::from_secs(60);

enum Database {
    /// A database of its own when the suite runs on PostgreSQL; SQLite otherwise.
    Suite,
    Url(String),
    /// SQLite in the data directory, whatever the suite runs on.
    Sqlite,
}

/// How to start a server: the standard admin and signing secret, SQLite in a
/// temporary data directory (or a PostgreSQL database of its own when the
/// suite runs on PostgreSQL), the log kept in memory.
pub struct ServerOptions {
    name: String,
    binary: Option<PathBuf>,
    env: Vec<(String, String)>,
    database: Database,
    data_dir: Option<PathBuf>,
    log_file: Option<PathBuf>,
    /// PEM of the CA the client trusts, for a server speaking TLS.
    ca: Option<Vec<u8>>,
}

impl Default for ServerOptions {
    fn default() -> ServerOptions {
        ServerOptions::new()
    }
}

impl ServerOptions {
    pub fn new() -> ServerOptions {
        ServerOptions {
            name: "server".into(),
            binary: None,
            env: vec![
                ("REGENTE_ADMIN_USER".into(), ADMIN_USER.into()),
                ("REGENTE_ADMIN_PASSWORD".into(), ADMIN_PASSWORD.into()),
                ("REGENTE_JWT_SECRET".into(), JWT_SECRET.into()),
                ("REGENTE_MASTER_KEY".into(), MASTER_KEY.into()),
            ],
            database: Database::Suite,
            data_dir: None,
            log_file: None,
            ca: None,
        }
    }

    /// The server speaks TLS with this certificate and key; the client trusts
    /// the CA in `ca_pem`.
    pub fn tls(mut self, cert: &Path, key: &Path, ca_pem: &[u8]) -> Self {
        set_var(
            &mut self.env,
            "REGENTE_TLS_CERT",
            &cert.display().to_string(),
        );
        set_var(&mut self.env, "REGENTE_TLS_KEY", &key.display().to_string());
        self.ca = Some(ca_pem.to_vec());
        self
    }

    /// What panic messages call the server (e.g. a replica's letter).
    pub fn name(mut self, name: &str) -> Self {
        self.name = name.to_owned();
        self
    }

    /// The `regente` binary to run instead of [`regente_binary`].
    pub fn binary(mut self, path: &Path) -> Self {
        self.binary = Some(path.to_owned());
        self
    }

    /// Sets an environment variable; `""` removes it from the standard ones.
    pub fn env(mut self, name: &str, value: &str) -> Self {
        set_var(&mut self.env, name, value);
        self
    }

    /// [`ServerOptions::env`] for each pair.
    pub fn envs(self, vars: &[(&str, &str)]) -> Self {
        vars.iter()
            .fold(self, |options, (name, value)| options.env(name, value))
    }

    /// This database (`--database-url`), made and dropped by the caller.
    pub fn database_url(mut self, url: &str) -> Self {
        self.database = Database::Url(url.to_owned());
        self
    }

    /// SQLite in the data directory, even when the suite runs on PostgreSQL.
    pub fn sqlite(mut self) -> Self {
        self.database = Database::Sqlite;
        self
    }

    /// This data directory instead of a temporary one.
    pub fn data_dir(mut self, path: &Path) -> Self {
        self.data_dir = Some(path.to_owned());
        self
    }

    /// The log (stderr) goes to this file instead of memory.
    pub fn log_file(mut self, path: &Path) -> Self {
        self.log_file = Some(path.to_owned());
        self
    }

    /// Starts the server and waits for its listening line.
    pub fn start(self) -> TestServer {
        let mut server = self.spawn();
        server.wait_listening();
        server
    }

    /// Starts the server without waiting: [`TestServer::wait_listening`] does.
    pub fn spawn(self) -> TestServer {
        let (data_dir, temp) = match &self.data_dir {
            Some(dir) => (dir.clone(), None),
            None => {
                let temp = tempfile::Builder::new()
                    .prefix("regente-e2e-")
                    .tempdir()
                    .expect("a temporary data directory");
                (temp.path().join("data"), Some(temp))
            }
        };
        let (database, database_url) = match &self.database {
            Database::Url(url) => (None, Some(url.clone())),
            Database::Sqlite => (None, None),
            Database::Suite => {
                let database = TestDatabase::for_suite();
                let url = database.as_ref().map(|d| d.url.clone());
                (database, url)
            }
        };
        let mut server = TestServer {
            api: match &self.ca {
                Some(ca) => Api::trusting(ca),
                None => Api::new(""),
            },
            binary: self.binary.clone().unwrap_or_else(regente_binary),
            processes: Lifecycle::new(&self.name),
            options: self,
            data_dir,
            _temp: temp,
            database_url,
            to_listening: Duration::ZERO,
            database,
        };
        server.spawn();
        server
    }
}

fn set_var(env: &mut Vec<(String, String)>, name: &str, value: &str) {
    env.retain(|(n, _)| n != name);
    if !value.is_empty() {
        env.push((name.into(), value.into()));
    }
}

/// A running `regente serve`, stopped when dropped (after printing the tail
/// of its log if the test is failing). It dereferences to its [`Api`].
pub struct TestServer {
    api: Api,
    options: ServerOptions,
    binary: PathBuf,
    data_dir: PathBuf,
    _temp: Option<TempDir>,
    database_url: Option<String>,
    processes: Lifecycle,
    to_listening: Duration,
    /// Dropped after the process has stopped.
    database: Option<TestDatabase>,
}

impl Deref for TestServer {
    type Target = Api;

    fn deref(&self) -> &Api {
        &self.api
    }
}

impl TestServer {
    /// Starts a server with the standard options.
    pub fn start() -> TestServer {
        ServerOptions::new().start()
    }

    /// Starts a server with extra environment; a variable given as `""` is
    /// removed from the standard environment instead of set.
    pub fn start_with(env: &[(&str, &str)]) -> TestServer {
        ServerOptions::new().envs(env).start()
    }

    fn spawn(&mut self) {
        let mut command = regente_command(&self.binary);
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&self.data_dir);
        if let Some(url) = &self.database_url {
            command.arg("--database-url").arg(url);
        }
        command.envs(self.options.env.iter().map(|(n, v)| (n, v)));
        let log_file = self.options.log_file.as_deref();
        self.processes.begin(Running::spawn(command, log_file));
    }

    /// Waits for the listening line of a server started with
    /// [`ServerOptions::spawn`], and points the client at it.
    pub fn wait_listening(&mut self) {
        match self.processes.current_mut().wait_listening(START_DEADLINE) {
            Ok((url, after)) => {
                self.api.set_base(url);
                self.to_listening = after;
            }
            Err(why) => {
                self.processes.take();
                panic!("the {} did not start: {why}", self.processes.name)
            }
        }
    }

    /// From the spawn of the current process to its listening line.
    pub fn to_listening(&self) -> Duration {
        self.to_listening
    }

    pub fn pid(&self) -> u32 {
        self.processes.pid()
    }

    /// The `--database-url` the server runs with, on PostgreSQL.
    pub fn database_url(&self) -> Option<String> {
        self.database_url.clone()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.data_dir.clone()
    }

    /// What the current process printed on stdout so far.
    pub fn stdout(&self) -> String {
        self.processes.stdout()
    }

    /// What the current process logged (printed on stderr) so far.
    pub fn stderr(&self) -> String {
        self.processes.stderr()
    }

    /// What every process of this server logged, restarts marked.
    pub fn all_stderr(&self) -> String {
        self.processes.all_stderr()
    }

    /// Sets (or with `""` removes) an environment variable for the next start.
    pub fn set_env(&mut self, name: &str, value: &str) {
        set_var(&mut self.options.env, name, value);
    }

    /// The exit status, if the process has exited on its own.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.processes.exited()
    }

    /// Stops the server with SIGTERM and asserts that it exits cleanly in time.
    pub fn stop(&mut self) {
        self.stop_with("TERM");
    }

    /// Stops the server with the given signal (`TERM`, `INT`) and asserts that
    /// it exits with status 0 before the deadline.
    pub fn stop_with(&mut self, signal: &str) {
        let status = self.processes.stop(signal);
        let name = &self.processes.name;
        let log = tail(&self.processes.all_stderr(), 40);
        match status {
            Some(status) => assert!(
                status.success(),
                "SIG{signal} should stop the {name} cleanly, got {status}\n--- log (tail)\n{log}"
            ),
            None => panic!(
                "the {name} did not stop within {EXIT_DEADLINE:?} of SIG{signal}\n--- log (tail)\n{log}"
            ),
        }
    }

    /// SIGKILL, and waits for the process to be gone.
    pub fn kill9(&mut self) {
        self.processes.kill9();
    }

    /// Stops the server (asserting a clean exit) and starts it again on the
    /// same data directory with the same environment (on a new port).
    pub fn restart(&mut self) {
        self.stop();
        self.start_again();
    }

    /// Starts a stopped or killed server again on the same data directory.
    pub fn start_again(&mut self) {
        self.spawn();
        self.wait_listening();
    }

    /// SIGSTOP: the process freezes.
    pub fn pause(&self) {
        self.processes.pause();
    }

    /// SIGCONT.
    pub fn resume(&self) {
        self.processes.resume();
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.processes
            .report_if_panicking(&format!(" ({})", self.api.base));
        if let Some(mut process) = self.processes.take() {
            // A frozen server would not see the SIGTERM.
            process.signal_quietly("CONT");
            if process.terminate("TERM", EXIT_DEADLINE).is_none() {
                process.kill();
            }
        }
        // The database goes after the server, once nobody uses it.
        drop(self.database.take());
    }
}
