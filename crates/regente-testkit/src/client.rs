//! The one HTTP client of the tests and the benchmark's setup: requests to
//! build ([`Req`]), answers read whole ([`Reply`]), and the API's calls by name.

use std::sync::Mutex;
use std::time::Duration;

use reqwest::blocking::Client;
use reqwest::header::HeaderMap;
use reqwest::Method;
use serde_json::{json, Value};

use crate::server::{ADMIN_PASSWORD, ADMIN_USER};
use crate::shape::{b64, is_execution_id};

/// A client of one server (blocking; not for use on an async task).
pub struct Api {
    /// `http://127.0.0.1:PORT`
    pub base: String,
    http: Client,
    admin_token: Mutex<Option<String>>,
}

impl Api {
    pub fn new(base: &str) -> Api {
        Api {
            base: base.to_owned(),
            http: Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("an HTTP client"),
            admin_token: Mutex::new(None),
        }
    }

    /// A client that trusts the CA certificate in `ca_pem` (for `https://`);
    /// its base is set once the server says where it listens.
    pub(crate) fn trusting(ca_pem: &[u8]) -> Api {
        let ca = reqwest::Certificate::from_pem(ca_pem).expect("a PEM CA certificate");
        Api {
            base: String::new(),
            http: Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(60))
                .add_root_certificate(ca)
                .build()
                .expect("an HTTP client"),
            admin_token: Mutex::new(None),
        }
    }

    /// Points the client at a server started again on another port.
    pub(crate) fn set_base(&mut self, base: String) {
        self.base = base;
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `host:port` of the server.
    pub fn addr(&self) -> &str {
        self.base
            .trim_start_matches("http://")
            .trim_start_matches("https://")
    }

    /// A request to build; `path` may carry a query string.
    pub fn req(&self, method: &str, path: &str) -> Req<'_> {
        Req {
            api: self,
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

    /// The first admin's token ([`ADMIN_USER`]), logged in once per client.
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
        self.create_runtime_from(token, &json!({"name": name}))
    }

    /// Creates a runtime set for `slots` robots at once; answers `(id, key)`.
    pub fn create_runtime_with_slots(
        &self,
        token: &str,
        name: &str,
        slots: u32,
    ) -> (String, String) {
        self.create_runtime_from(token, &json!({"name": name, "slots": slots}))
    }

    fn create_runtime_from(&self, token: &str, body: &Value) -> (String, String) {
        let reply = self
            .req("POST", "/api/admin/runtimes")
            .auth(token)
            .json(body)
            .send();
        assert_eq!(reply.status, 201, "create runtime {body}: {}", reply.text());
        let body = reply.json();
        (
            body["id"].as_str().expect("runtime id").to_owned(),
            body["key"].as_str().expect("runtime key").to_owned(),
        )
    }

    /// The admin API's runtimes.
    pub fn runtimes(&self, token: &str) -> Vec<Value> {
        self.get("/api/admin/runtimes", token)
            .expect(200)
            .json()
            .as_array()
            .expect("a list of runtimes")
            .clone()
    }

    /// Whether the admin API lists the runtime as online.
    pub fn runtime_online(&self, token: &str, runtime: &str) -> bool {
        self.runtimes(token)
            .iter()
            .any(|r| r["id"] == runtime && r["online"] == true)
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
        self.run_request("v1", token, runtime, robot, body).send()
    }

    /// `GET /api/integration/v1/run/...`: a run with the defaults.
    pub fn run_v1_get(&self, token: &str, runtime: &str, robot: &str) -> Reply {
        self.get(&format!("/api/integration/v1/run/{runtime}/{robot}"), token)
    }

    /// `POST /api/integration/v2/run/...` with an optional JSON body.
    pub fn run_v2(&self, token: &str, runtime: &str, robot: &str, body: Option<&Value>) -> Reply {
        self.run_request("v2", token, runtime, robot, body).send()
    }

    /// A v2 run request, to send or try.
    pub fn run_request(
        &self,
        version: &str,
        token: &str,
        runtime: &str,
        robot: &str,
        body: Option<&Value>,
    ) -> Req<'_> {
        let request = self
            .req(
                "POST",
                &format!("/api/integration/{version}/run/{runtime}/{robot}"),
            )
            .auth(token);
        match body {
            Some(body) => request.json(body),
            None => request,
        }
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

    /// Every execution the admin list answers for a query (`&name=value...`),
    /// following cursors.
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

/// A request being built.
pub struct Req<'a> {
    api: &'a Api,
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

    /// Sends the request; panics on a transport error.
    pub fn send(self) -> Reply {
        let what = format!("{} {}{}", self.method, self.api.base, self.path);
        self.try_send().unwrap_or_else(|e| panic!("{what}: {e}"))
    }

    /// Sends the request; a transport error (connection refused or reset,
    /// timeout) is returned instead of panicking.
    pub fn try_send(self) -> Result<Reply, String> {
        let url =
            reqwest::Url::parse(&self.api.url(&self.path)).map_err(|e| format!("bad URL: {e}"))?;
        let path = url.path().to_owned();
        let mut request = self.api.http.request(self.method.clone(), url);
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
