//! Test harness: runs the real `regente` binary on a random port with a
//! temporary data directory, and talks to it over HTTP.
//!
//! Nothing here sleeps to synchronise: the server is ready when it prints its
//! listening line, and a stopping server is polled with a deadline.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Cursor, Read, Write};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use reqwest::blocking::Client;
use reqwest::header::HeaderMap;
use reqwest::Method;
use serde_json::{json, Value};
use tempfile::TempDir;
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

pub const ADMIN_USER: &str = "admin";
pub const ADMIN_PASSWORD: &str = "admin-password-e2e";
/// The signing secret the server gets unless a test removes it.
pub const JWT_SECRET: &str = "e2e-signing-secret-0123456789abcdef0123456789abcdef";
/// How long the server may take to print its listening line or to stop.
const START_DEADLINE: Duration = Duration::from_secs(30);
const STOP_DEADLINE: Duration = Duration::from_secs(15);
/// The listening line the binary prints once it accepts connections.
const LISTENING: &str = "regente listening on http://";

/// Every route of the API, as `(method, path template)`; the templates use the
/// names of the OpenAPI document.
pub const ROUTES: &[(&str, &str)] = &[
    ("POST", "/api/user/auth"),
    ("POST", "/api/user/v2/auth"),
    ("POST", "/api/integration/v1/run/{runtime_id}/{robot_id}"),
    ("GET", "/api/integration/v1/run/{runtime_id}/{robot_id}"),
    ("POST", "/api/integration/v2/run/{runtime_id}/{robot_id}"),
    (
        "GET",
        "/api/integration/v1/result/{runtime_id}/{execution_id}",
    ),
    (
        "DELETE",
        "/api/integration/v1/delete/{runtime_id}/{execution_id}",
    ),
    ("GET", "/api/admin/users"),
    ("POST", "/api/admin/users"),
    ("DELETE", "/api/admin/users/{id}"),
    ("GET", "/api/admin/runtimes"),
    ("POST", "/api/admin/runtimes"),
    ("GET", "/api/admin/robots"),
    ("POST", "/api/admin/robots"),
    ("GET", "/api/admin/robots/{id}"),
    ("GET", "/api/admin/executions"),
    ("GET", "/api/admin/executions/{id}"),
    ("POST", "/api/admin/organizations"),
];

/// The routes outside the Integration and admin APIs: health, the OpenAPI
/// document itself and the runtime agents' routes (authenticated by runtime key).
pub const OTHER_ROUTES: &[(&str, &str)] = &[
    ("GET", "/healthz"),
    ("GET", "/api/openapi.json"),
    ("GET", "/api/runtime/connect"),
    ("GET", "/api/runtime/packages/{robot_id}/{version}"),
];

/// The server's process and what it printed.
struct Process {
    child: Child,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
}

/// A running `regente serve`, killed when dropped.
pub struct TestServer {
    process: Option<Process>,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    data_dir: TempDir,
    /// On the PostgreSQL backend, the database made for this server.
    database: Option<TestDatabase>,
    env: Vec<(String, String)>,
    client: Client,
    admin_token: Mutex<Option<String>>,
}

impl TestServer {
    /// Starts a server with the default admin and signing secret.
    pub fn start() -> TestServer {
        TestServer::start_with(&[])
    }

    /// Starts a server with extra environment; a variable given as `""` is
    /// removed from the default environment instead of set.
    pub fn start_with(env: &[(&str, &str)]) -> TestServer {
        let mut vars: Vec<(String, String)> = vec![
            ("REGENTE_ADMIN_USER".into(), ADMIN_USER.into()),
            ("REGENTE_ADMIN_PASSWORD".into(), ADMIN_PASSWORD.into()),
            ("REGENTE_JWT_SECRET".into(), JWT_SECRET.into()),
        ];
        for (name, value) in env {
            vars.retain(|(n, _)| n != name);
            if !value.is_empty() {
                vars.push((name.to_string(), value.to_string()));
            }
        }
        let data_dir = tempfile::Builder::new()
            .prefix("regente-e2e-")
            .tempdir()
            .expect("a temporary data directory");
        let client = Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("an HTTP client");
        let mut server = TestServer {
            process: None,
            base: String::new(),
            database: TestDatabase::create(),
            data_dir,
            env: vars,
            client,
            admin_token: Mutex::new(None),
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let data_dir = self.data_dir.path().join("data");
        let mut command = Command::new(env!("CARGO_BIN_EXE_regente"));
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (name, _) in std::env::vars() {
            if name.starts_with("REGENTE_") {
                command.env_remove(name);
            }
        }
        for (name, value) in &self.env {
            command.env(name, value);
        }
        if let Some(database) = &self.database {
            command.arg("--database-url").arg(&database.url);
        }
        let mut child = command.spawn().expect("the regente binary starts");
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let (lines_tx, lines_rx) = mpsc::channel::<String>();
        let out = child.stdout.take().expect("piped stdout");
        let err = child.stderr.take().expect("piped stderr");
        let readers = vec![
            drain(out, stdout.clone(), Some(lines_tx)),
            drain(err, stderr.clone(), None),
        ];
        let mut process = Process {
            child,
            stdout,
            stderr,
            readers,
        };
        let deadline = Instant::now() + START_DEADLINE;
        let addr = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines_rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(addr) = line.trim().strip_prefix(LISTENING) {
                        break addr.to_owned();
                    }
                }
                Err(why) => {
                    let _ = process.child.kill();
                    let status = process.child.wait();
                    for reader in process.readers.drain(..) {
                        let _ = reader.join();
                    }
                    panic!(
                        "the server did not print its listening line ({why:?}, exit {status:?})\n--- stdout\n{}\n--- stderr\n{}",
                        process.stdout.lock().unwrap(),
                        process.stderr.lock().unwrap()
                    );
                }
            }
        };
        self.base = format!("http://{addr}");
        self.process = Some(process);
    }

    /// The `--database-url` the server runs with, on the PostgreSQL backend.
    pub fn database_url(&self) -> Option<String> {
        self.database.as_ref().map(|database| database.url.clone())
    }

    pub fn data_dir(&self) -> std::path::PathBuf {
        self.data_dir.path().join("data")
    }

    /// What the current process printed on stdout so far.
    pub fn stdout(&self) -> String {
        self.process
            .as_ref()
            .map(|p| p.stdout.lock().unwrap().clone())
            .unwrap_or_default()
    }

    /// What the current process printed on stderr (its log) so far.
    pub fn stderr(&self) -> String {
        self.process
            .as_ref()
            .map(|p| p.stderr.lock().unwrap().clone())
            .unwrap_or_default()
    }

    /// Sets (or with `""` removes) an environment variable for the next start.
    pub fn set_env(&mut self, name: &str, value: &str) {
        self.env.retain(|(n, _)| n != name);
        if !value.is_empty() {
            self.env.push((name.into(), value.into()));
        }
    }

    /// Stops the server with SIGTERM and asserts that it exits cleanly in time.
    pub fn stop(&mut self) {
        self.stop_with("TERM");
    }

    /// Stops the server with the given signal (`TERM`, `INT`) and asserts that
    /// it exits with status 0 before the deadline.
    pub fn stop_with(&mut self, signal: &str) {
        let mut process = self.process.take().expect("the server is running");
        let status = terminate(&mut process.child, signal);
        if status.is_none() {
            // Kill it, or the readers below would wait for its pipes forever.
            let _ = process.child.kill();
            let _ = process.child.wait();
        }
        for reader in process.readers.drain(..) {
            let _ = reader.join();
        }
        let stderr = process.stderr.lock().unwrap().clone();
        match status {
            Some(status) => assert!(
                status.success(),
                "SIGTERM/SIGINT should stop the server cleanly, got {status}\n--- stderr\n{stderr}"
            ),
            None => panic!(
                "the server did not stop within {STOP_DEADLINE:?} of SIG{signal}\n--- stderr\n{stderr}"
            ),
        }
    }

    /// Stops the server (asserting a clean exit) and starts it again on the
    /// same data directory with the same environment.
    pub fn restart(&mut self) {
        self.stop();
        self.start_again();
    }

    /// Starts a stopped server again on the same data directory.
    pub fn start_again(&mut self) {
        assert!(self.process.is_none(), "the server is still running");
        self.spawn();
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A request to build; `path` may carry a query string.
    pub fn req(&self, method: &str, path: &str) -> Req<'_> {
        Req {
            server: self,
            method: Method::from_bytes(method.as_bytes()).expect("a valid method"),
            path: path.to_owned(),
            headers: Vec::new(),
            body: None,
        }
    }

    pub fn get(&self, path: &str, token: &str) -> Reply {
        self.req("GET", path).auth(token).send()
    }

    /// Logs in with the v1 route and returns the `Bearer <jwt>` text it answers.
    pub fn login(&self, username: &str, password: &str) -> String {
        let reply = self.login_v1_reply(username, password);
        assert_eq!(reply.status, 200, "login of {username}: {}", reply.text());
        let token = reply.text();
        assert!(token.starts_with("Bearer "), "{token}");
        token
    }

    pub fn login_v1_reply(&self, username: &str, password: &str) -> Reply {
        self.req("POST", "/api/user/auth")
            .json(&json!({"username": username, "password": b64(password)}))
            .send()
    }

    pub fn login_v2_reply(&self, username: &str, password: &str) -> Reply {
        self.req("POST", "/api/user/v2/auth")
            .json(&json!({"username": username, "password": b64(password)}))
            .send()
    }

    /// The first admin's token, logged in once per server.
    pub fn admin_token(&self) -> String {
        let mut cached = self.admin_token.lock().unwrap();
        cached
            .get_or_insert_with(|| self.login(ADMIN_USER, ADMIN_PASSWORD))
            .clone()
    }

    /// Creates a user and answers the 201 body `{id, username, role}`.
    pub fn create_user(&self, token: &str, username: &str, password: &str, role: &str) -> Value {
        let reply = self
            .req("POST", "/api/admin/users")
            .auth(token)
            .json(&json!({"username": username, "password": password, "role": role}))
            .send();
        assert_eq!(
            reply.status,
            201,
            "create user {username}: {}",
            reply.text()
        );
        reply.json()
    }

    /// Creates a runtime and answers `(id, key)`.
    pub fn create_runtime(&self, token: &str, name: &str) -> (String, String) {
        let reply = self
            .req("POST", "/api/admin/runtimes")
            .auth(token)
            .json(&json!({"name": name}))
            .send();
        assert_eq!(reply.status, 201, "create runtime {name}: {}", reply.text());
        let body = reply.json();
        (
            body["id"].as_str().expect("runtime id").to_owned(),
            body["key"].as_str().expect("runtime key").to_owned(),
        )
    }

    pub fn upload_robot_reply(&self, token: &str, zip: Vec<u8>) -> Reply {
        self.req("POST", "/api/admin/robots")
            .auth(token)
            .body(zip, "application/zip")
            .send()
    }

    /// Uploads a package and answers the 201 body `{id, name, version, sha256}`.
    pub fn upload_robot(&self, token: &str, zip: Vec<u8>) -> Value {
        let reply = self.upload_robot_reply(token, zip);
        assert_eq!(reply.status, 201, "upload: {}", reply.text());
        reply.json()
    }

    /// `POST /api/integration/v1/run/...` with an optional JSON body.
    pub fn run_v1(&self, token: &str, runtime: &str, robot: &str, body: Option<&Value>) -> Reply {
        let request = self
            .req(
                "POST",
                &format!("/api/integration/v1/run/{runtime}/{robot}"),
            )
            .auth(token);
        match body {
            Some(body) => request.json(body),
            None => request,
        }
        .send()
    }

    /// `GET /api/integration/v1/run/...`: a run with the defaults.
    pub fn run_v1_get(&self, token: &str, runtime: &str, robot: &str) -> Reply {
        self.get(&format!("/api/integration/v1/run/{runtime}/{robot}"), token)
    }

    /// `POST /api/integration/v2/run/...` with an optional JSON body.
    pub fn run_v2(&self, token: &str, runtime: &str, robot: &str, body: Option<&Value>) -> Reply {
        let request = self
            .req(
                "POST",
                &format!("/api/integration/v2/run/{runtime}/{robot}"),
            )
            .auth(token);
        match body {
            Some(body) => request.json(body),
            None => request,
        }
        .send()
    }

    /// Queues a run through v2 and answers the execution id.
    pub fn queue(&self, token: &str, runtime: &str, robot: &str, body: Option<&Value>) -> String {
        let reply = self.run_v2(token, runtime, robot, body);
        assert_eq!(reply.status, 200, "run: {}", reply.text());
        let id = reply.json()["id"].as_str().expect("an id").to_owned();
        assert!(is_execution_id(&id), "{id}");
        id
    }

    pub fn result(&self, token: &str, runtime: &str, execution: &str) -> Reply {
        self.get(
            &format!("/api/integration/v1/result/{runtime}/{execution}"),
            token,
        )
    }

    pub fn delete(&self, token: &str, runtime: &str, execution: &str) -> Reply {
        self.req(
            "DELETE",
            &format!("/api/integration/v1/delete/{runtime}/{execution}"),
        )
        .auth(token)
        .send()
    }

    /// The admin API's detail of an execution.
    pub fn execution(&self, token: &str, id: &str) -> Value {
        let reply = self.get(&format!("/api/admin/executions/{id}"), token);
        assert_eq!(reply.status, 200, "execution {id}: {}", reply.text());
        reply.json()
    }

    /// Every execution the admin list answers for a query, following cursors.
    pub fn all_executions(&self, token: &str, query: &str) -> Vec<Value> {
        let mut all = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!("/api/admin/executions?limit=500{query}");
            if let Some(cursor) = &cursor {
                path.push_str(&format!("&cursor={cursor}"));
            }
            let reply = self.get(&path, token);
            assert_eq!(reply.status, 200, "{path}: {}", reply.text());
            let page = reply.json();
            all.extend(page["executions"].as_array().expect("executions").clone());
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => return all,
            }
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(mut process) = self.process.take() {
            if terminate(&mut process.child, "TERM").is_none() {
                let _ = process.child.kill();
                let _ = process.child.wait();
            }
        }
        // After the server: the database goes once nobody uses it.
        drop(self.database.take());
    }
}

/// Whether the suite runs on PostgreSQL: `REGENTE_E2E_DATABASE=postgres`, with
/// `REGENTE_TEST_PG_URL` naming a server and a role that may create databases.
pub fn on_postgres() -> bool {
    match std::env::var("REGENTE_E2E_DATABASE").as_deref() {
        Ok("postgres") => true,
        Ok("sqlite") | Ok("") | Err(_) => false,
        Ok(other) => panic!("REGENTE_E2E_DATABASE={other:?}: use sqlite or postgres"),
    }
}

/// A PostgreSQL database made for one test, dropped when this is dropped.
pub struct TestDatabase {
    server: String,
    name: String,
    /// The URL a server takes as `--database-url`.
    pub url: String,
}

impl TestDatabase {
    /// A database for a test server, when the suite runs on PostgreSQL.
    fn create() -> Option<TestDatabase> {
        on_postgres().then(|| TestDatabase::named("regente_e2e"))
    }

    /// A fresh database on the server `REGENTE_TEST_PG_URL` names.
    pub fn named(prefix: &str) -> TestDatabase {
        let server = std::env::var("REGENTE_TEST_PG_URL")
            .expect("REGENTE_E2E_DATABASE=postgres needs REGENTE_TEST_PG_URL");
        let suffix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let name = format!("{prefix}_{}_{suffix}", std::process::id());
        let create = format!("CREATE DATABASE {name}");
        postgres_admin(&server, &create).unwrap_or_else(|e| panic!("{create}: {e}"));
        let (base, query) = match server.split_once('?') {
            Some((base, query)) => (base, format!("?{query}")),
            None => (server.as_str(), String::new()),
        };
        let (authority, _) = base.rsplit_once('/').expect("a postgres://HOST/DB URL");
        let url = format!("{authority}/{name}{query}");
        TestDatabase { server, name, url }
    }
}

impl Drop for TestDatabase {
    /// Best effort: PostgreSQL may refuse while a session it cannot end (such as
    /// autovacuum's) is on the database; a throwaway test cluster keeps it then.
    fn drop(&mut self) {
        let drop = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        if let Err(e) = postgres_admin(&self.server, &drop) {
            eprintln!("{drop}: {e}");
        }
    }
}

fn postgres_admin(server: &str, statement: &str) -> Result<(), sqlx::Error> {
    use sqlx::{Connection as _, Executor as _};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime for the database setup");
    runtime.block_on(async {
        let mut admin = sqlx::PgConnection::connect(server).await?;
        let executed = admin.execute(statement).await.map(|_| ());
        let _ = admin.close().await;
        executed
    })
}

/// Sends a signal with the `kill` command and waits for the exit, polling
/// with a deadline; `None` if the process did not exit in time.
fn terminate(child: &mut Child, signal: &str) -> Option<ExitStatus> {
    if let Ok(Some(status)) = child.try_wait() {
        return Some(status);
    }
    let sent = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(child.id().to_string())
        .status()
        .expect("the kill command runs");
    assert!(sent.success(), "kill -{signal} failed");
    let deadline = Instant::now() + STOP_DEADLINE;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

/// Copies a pipe into a buffer (and its lines into a channel) until it closes.
pub fn drain(
    pipe: impl Read + Send + 'static,
    buffer: Arc<Mutex<String>>,
    lines: Option<mpsc::Sender<String>>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    let text = String::from_utf8_lossy(&line).into_owned();
                    buffer.lock().unwrap().push_str(&text);
                    if let Some(lines) = &lines {
                        let _ = lines.send(text);
                    }
                }
            }
        }
    })
}

/// A request being built.
pub struct Req<'a> {
    server: &'a TestServer,
    method: Method,
    path: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Option<Vec<u8>>,
}

impl Req<'_> {
    /// Sets the `Authorization` header to `token` (a `Bearer ...` value).
    pub fn auth(self, token: &str) -> Self {
        self.header("authorization", token.as_bytes())
    }

    pub fn header(mut self, name: &str, value: &[u8]) -> Self {
        self.headers.push((name.to_owned(), value.to_vec()));
        self
    }

    pub fn json(self, body: &Value) -> Self {
        self.body(body.to_string().into_bytes(), "application/json")
    }

    /// A body with its content type (`""` for no `Content-Type` header).
    pub fn body(mut self, body: Vec<u8>, content_type: &str) -> Self {
        if !content_type.is_empty() {
            self = self.header("content-type", content_type.as_bytes());
        }
        self.body = Some(body);
        self
    }

    pub fn send(self) -> Reply {
        let what = format!("{} {}", self.method, self.path);
        self.try_send().unwrap_or_else(|e| panic!("{what}: {e}"))
    }

    /// Sends the request; a transport error (connection reset, timeout) is
    /// returned instead of panicking.
    pub fn try_send(self) -> Result<Reply, String> {
        let url = reqwest::Url::parse(&self.server.url(&self.path))
            .map_err(|e| format!("bad URL: {e}"))?;
        let path = url.path().to_owned();
        let mut request = self.server.client.request(self.method.clone(), url);
        for (name, value) in &self.headers {
            let value = reqwest::header::HeaderValue::from_bytes(value)
                .map_err(|e| format!("bad header value: {e}"))?;
            request = request.header(name.as_str(), value);
        }
        if let Some(body) = self.body {
            request = request.body(body);
        }
        let response = request.send().map_err(|e| format!("{e:?}"))?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response
            .bytes()
            .map_err(|e| format!("reading the body: {e:?}"))?
            .to_vec();
        Ok(Reply {
            status,
            headers,
            body,
            method: self.method.to_string(),
            path,
        })
    }
}

/// Sends a request over a plain TCP connection, writing the body on another
/// thread while reading the answer, as careful HTTP clients do: a server may
/// answer (401, 413) before it has read a large body and then reset the
/// connection, which makes clients that write the whole body first (reqwest's
/// blocking client) lose the answer.
pub fn raw_send(
    server: &TestServer,
    method: &str,
    path: &str,
    headers: &[(&str, &[u8])],
    body: Vec<u8>,
) -> Result<Reply, String> {
    use std::net::TcpStream;
    let addr = server.base.trim_start_matches("http://").to_owned();
    let mut stream = TcpStream::connect(&addr).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    )
    .into_bytes();
    for (name, value) in headers {
        head.extend_from_slice(name.as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value);
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    let mut writer = stream.try_clone().map_err(|e| e.to_string())?;
    let writing = std::thread::spawn(move || {
        // The server may close early; what matters is the answer it sent.
        let _ = writer
            .write_all(&head)
            .and_then(|()| writer.write_all(&body));
    });
    let mut answer = Vec::new();
    let read = stream.read_to_end(&mut answer);
    let _ = writing.join();
    if answer.is_empty() {
        return Err(format!("no answer at all ({read:?})"));
    }
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| {
            format!(
                "incomplete answer ({read:?}): {}",
                String::from_utf8_lossy(&answer)
            )
        })?;
    let head = String::from_utf8_lossy(&answer[..split]).into_owned();
    let mut rest = answer[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("bad status line in {head:?}"))?;
    let mut header_map = HeaderMap::new();
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            if let (Ok(name), Ok(value)) = (
                reqwest::header::HeaderName::from_bytes(name.trim().as_bytes()),
                reqwest::header::HeaderValue::from_str(value.trim()),
            ) {
                header_map.append(name, value);
            }
        }
    }
    if method == "HEAD" || status == 204 || status == 304 {
        rest.clear();
    } else if let Some(length) = header_map
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
    {
        if rest.len() < length {
            return Err(format!("truncated body ({read:?})"));
        }
        rest.truncate(length);
    }
    Ok(Reply {
        status,
        headers: header_map,
        body: rest,
        method: method.to_owned(),
        path: path.split('?').next().unwrap_or(path).to_owned(),
    })
}

/// An answer, read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub method: String,
    /// The request's path, as sent (without the query).
    pub path: String,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "{} {} answered {} with a body that is not JSON ({e}): {}",
                self.method,
                self.path,
                self.status,
                self.text()
            )
        })
    }

    pub fn content_type(&self) -> String {
        self.headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    }

    /// Asserts the status and returns the answer, showing the body on failure.
    pub fn expect(self, status: u16) -> Reply {
        assert_eq!(
            self.status,
            status,
            "{} {}: {}",
            self.method,
            self.path,
            self.text()
        );
        self
    }
}

/// The standard reason phrase the error bodies must carry.
pub fn reason(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        413 => "Payload Too Large",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        other => panic!("no reason phrase known for {other}"),
    }
}

/// Asserts the Spring-style error shape `{timestamp, status, error, message,
/// path}` and nothing else, with the given status and path; returns the body.
pub fn assert_error(reply: &Reply, status: u16, path: &str) -> Value {
    assert_eq!(
        reply.status,
        status,
        "{} {}: expected {status}, body {}",
        reply.method,
        reply.path,
        reply.text()
    );
    check_error_shape(reply, path).unwrap_or_else(|why| {
        panic!(
            "{} {} ({}): {why}: {}",
            reply.method,
            reply.path,
            reply.status,
            reply.text()
        )
    })
}

/// Checks the error shape for whatever status the reply has.
pub fn check_error_shape(reply: &Reply, path: &str) -> Result<Value, String> {
    let body: Value =
        serde_json::from_slice(&reply.body).map_err(|e| format!("the body is not JSON: {e}"))?;
    if !reply.content_type().starts_with("application/json") {
        return Err(format!("content type {:?}", reply.content_type()));
    }
    let object = body.as_object().ok_or("the body is not an object")?;
    let keys: BTreeSet<&str> = object.keys().map(String::as_str).collect();
    let expected: BTreeSet<&str> = ["timestamp", "status", "error", "message", "path"].into();
    if keys != expected {
        return Err(format!("keys {keys:?}, expected {expected:?}"));
    }
    let timestamp = body["timestamp"]
        .as_i64()
        .ok_or("timestamp is not an integer")?;
    let now = now_millis();
    if (timestamp - now).abs() > 60_000 {
        return Err(format!("timestamp {timestamp} is not near now ({now})"));
    }
    if body["status"].as_u64() != Some(u64::from(reply.status)) {
        return Err(format!(
            "status field {} vs {}",
            body["status"], reply.status
        ));
    }
    let phrase = reqwest::StatusCode::from_u16(reply.status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("?");
    let phrase = match reply.status {
        400 | 401 | 403 | 404 | 405 | 409 | 413 | 415 | 422 | 429 => reason(reply.status),
        _ => phrase,
    };
    if body["error"] != phrase {
        return Err(format!("error {} instead of {phrase:?}", body["error"]));
    }
    match body["message"].as_str() {
        Some(message) if !message.trim().is_empty() => {}
        _ => return Err("message is not a non-empty string".into()),
    }
    if body["path"] != path {
        return Err(format!("path {} instead of {path:?}", body["path"]));
    }
    Ok(body)
}

/// The error message of an error reply.
pub fn message(body: &Value) -> String {
    body["message"].as_str().unwrap_or_default().to_owned()
}

pub fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

pub fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("time after 1970")
        .as_millis() as i64
}

/// Execution ids are 16 lowercase hex digits.
pub fn is_execution_id(text: &str) -> bool {
    text.len() == 16
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The keys of a JSON object, sorted.
pub fn keys(value: &Value) -> Vec<String> {
    let mut keys: Vec<String> = value
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {value}"))
        .keys()
        .cloned()
        .collect();
    keys.sort();
    keys
}

/// A robot package built in memory: `robot.toml` at the root plus `extra`
/// files, deflated.
pub fn robot_zip(manifest: &str, extra: &[(&str, &[u8])]) -> Vec<u8> {
    let mut files: Vec<(&str, &[u8])> = vec![("robot.toml", manifest.as_bytes())];
    files.extend_from_slice(extra);
    zip_of(&files)
}

/// A zip of the given files, deflated, in order.
pub fn zip_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut writer = ZipWriter::new(Cursor::new(Vec::new()));
    let options = deflated();
    for (name, bytes) in files {
        writer.start_file(*name, options).expect("zip entry");
        writer.write_all(bytes).expect("zip write");
    }
    writer.finish().expect("zip finish").into_inner()
}

pub fn deflated() -> SimpleFileOptions {
    SimpleFileOptions::default().compression_method(CompressionMethod::Deflated)
}

/// A manifest for a robot with two variables with defaults.
pub fn manifest(name: &str) -> String {
    format!(
        r#"name = "{name}"
command = ["python3", "main.py"]
timeout_seconds = 600

[[variables]]
name = "CNPJ"
type = "text"
default = "00.000.000/0001-00"

[[variables]]
name = "LIMIT"
type = "number"
default = 10
"#
    )
}

/// Uploads a robot with [`manifest`] and answers its id.
pub fn robot(server: &TestServer, token: &str, name: &str) -> String {
    let zip = robot_zip(&manifest(name), &[("main.py", b"print('hi')\n")]);
    server.upload_robot(token, zip)["id"]
        .as_str()
        .expect("robot id")
        .to_owned()
}

/// The standard setup: an admin token, a runtime and a robot.
pub struct Fixture {
    pub admin: String,
    pub runtime: String,
    pub robot: String,
}

pub fn fixture(server: &TestServer) -> Fixture {
    let admin = server.admin_token();
    let (runtime, _key) = server.create_runtime(&admin, "rt-1");
    let robot = robot(server, &admin, "consulta-cnpj");
    Fixture {
        admin,
        runtime,
        robot,
    }
}

/// An HS-signed token with the given claims, as `Bearer <jwt>`.
pub fn forge_token(claims: &Value, secret: &str, algorithm: jsonwebtoken::Algorithm) -> String {
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(algorithm),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("a signed token");
    format!("Bearer {token}")
}

/// An unsigned `alg: none` token with the given claims.
pub fn alg_none_token(claims: &Value) -> String {
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = engine.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = engine.encode(claims.to_string());
    format!("Bearer {header}.{payload}.")
}

/// The claims the server's own tokens carry, for a user and expiry.
pub fn claims(username: &str, user_id: &str, exp: i64) -> Value {
    json!({
        "sub": username,
        "uid": user_id,
        "iss": "ROLE_ADMIN",
        "iat": now_millis() / 1000,
        "exp": exp,
    })
}

/// The id of a user of the caller's organisation, by name.
pub fn user_id(server: &TestServer, token: &str, username: &str) -> String {
    let users = server.get("/api/admin/users", token).expect(200).json();
    users
        .as_array()
        .expect("a list")
        .iter()
        .find(|u| u["username"] == username)
        .and_then(|u| u["id"].as_str())
        .unwrap_or_else(|| panic!("no user {username} in {users}"))
        .to_owned()
}

/// A file's Unix permission bits.
pub fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}
