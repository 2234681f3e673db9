//! A client of Regente's HTTP API, for programs and for the `regente` command
//! line: sign in, push robots, run them, wait for and read executions; read,
//! pause, resume and trigger schedules; run flows and read their runs; create,
//! list and revoke API keys.
//!
//! Every call answers a typed value or an [`Error`]; an error from the server
//! keeps its status and message, as the API's JSON error shape gives them.

use std::time::Duration;

use base64::Engine as _;
use reqwest::{Method, RequestBuilder, Response};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

mod api_keys;
mod audit;
pub mod events;
mod flows;
mod schedules;
mod types;
mod webhooks;
pub use api_keys::{ApiKey, NewApiKey};
pub use audit::{AuditPage, AuditQuery, AuditRecord};
pub use flows::{Flow, FlowRun, FlowRunStep};
pub use schedules::{Fire, FireTime, Schedule};
pub use types::*;
pub use webhooks::{Delivery, DeliveryPage, Webhook, WebhookUpdate, WebhookWithSecret};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server answered an error: its status and its message.
    #[error("{message} ({status})")]
    Api { status: u16, message: String },
    #[error("cannot reach {server}: {source}")]
    Unreachable {
        server: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("unexpected answer from the server: {0}")]
    Unexpected(String),
    /// A name matches nothing, or more than one thing.
    #[error("{0}")]
    NotFound(String),
}

impl Error {
    /// The server could not be reached, or the connection broke.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, Error::Unreachable { .. })
    }

    /// The HTTP status the server answered, for errors that have one.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A connection to one server, signed in or not.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    http: reqwest::Client,
    /// `Bearer ...`.
    authorization: Option<String>,
}

impl Client {
    /// A client of the server at `base` (e.g. `http://127.0.0.1:8080`). An
    /// `https://` server needs `tls`, which says whom to trust (the agent's
    /// `regente_runtime::tls::client_config` gives the system's roots and a
    /// private CA).
    pub fn new(base: &str, tls: Option<rustls::ClientConfig>) -> Result<Client> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(120));
        if let Some(tls) = tls {
            builder = builder.use_preconfigured_tls(tls);
        }
        let http = builder
            .build()
            .map_err(|e| Error::Unexpected(format!("cannot build an HTTP client: {e}")))?;
        Ok(Client {
            base: base.trim_end_matches('/').to_owned(),
            http,
            authorization: None,
        })
    }

    /// The same client, signed in with `token` (with or without `Bearer `).
    pub fn with_token(mut self, token: &str) -> Client {
        let token = token.strip_prefix("Bearer ").unwrap_or(token);
        self.authorization = Some(format!("Bearer {token}"));
        self
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// Signs in (the v2 login) and answers the token; the client is not changed.
    pub async fn login(&self, username: &str, password: &str) -> Result<Login> {
        let password = base64::engine::general_purpose::STANDARD.encode(password);
        let body = json!({"username": username, "password": password});
        let answer: Value = self
            .call(Method::POST, "/api/user/v2/auth", |r| r.json(&body))
            .await?;
        let token = answer["access_token"].as_str().ok_or_else(|| {
            Error::Unexpected(format!("a login answer without a token: {answer}"))
        })?;
        Ok(Login {
            token: token.to_owned(),
            expires_in: answer["expires_in"].as_u64().unwrap_or_default(),
        })
    }

    pub async fn robots(&self) -> Result<Vec<Robot>> {
        self.call(Method::GET, "/api/admin/robots", |r| r).await
    }

    pub async fn runtimes(&self) -> Result<Vec<Runtime>> {
        self.call(Method::GET, "/api/admin/runtimes", |r| r).await
    }

    /// The vault's credentials: names and fields, never values.
    pub async fn credentials(&self) -> Result<Vec<Credential>> {
        self.call(Method::GET, "/api/admin/credentials", |r| r)
            .await
    }

    /// Stores a credential's values: a new credential, or the next version of
    /// the one of that name (its description and robots replaced too).
    pub async fn set_credential(
        &self,
        name: &str,
        fields: &std::collections::BTreeMap<String, String>,
        description: Option<&str>,
        robots: Option<&[String]>,
    ) -> Result<Credential> {
        let existing = self
            .credentials()
            .await?
            .into_iter()
            .find(|c| c.name == name);
        let mut body = json!({"fields": fields, "description": description, "robots": robots});
        match existing {
            Some(credential) => {
                let path = format!("/api/admin/credentials/{}", credential.id);
                self.call(Method::PUT, &path, |r| r.json(&body)).await
            }
            None => {
                body["name"] = json!(name);
                self.call(Method::POST, "/api/admin/credentials", |r| r.json(&body))
                    .await
            }
        }
    }

    /// Uploads a robot package (a zip with a `robot.toml`) as the next version
    /// of the robot it names.
    pub async fn push_robot(&self, package: Vec<u8>) -> Result<PushedRobot> {
        self.call(Method::POST, "/api/admin/robots", |r| {
            r.header("Content-Type", "application/zip").body(package)
        })
        .await
    }

    /// Queues a run; answers the execution's id once it is on the server's disk.
    pub async fn run(&self, request: &RunRequest<'_>) -> Result<String> {
        let path = format!(
            "/api/integration/v2/run/{}/{}",
            request.runtime_id, request.robot_id
        );
        self.post_run(&path, &request.variables, request.idempotency_key)
            .await
    }

    /// Posts a run body (`variables` as text: the declared types decide) and
    /// answers the `id` of what it started.
    pub(crate) async fn post_run(
        &self,
        path: &str,
        variables: &[(String, String)],
        idempotency_key: Option<&str>,
    ) -> Result<String> {
        let variables: Vec<Value> = variables
            .iter()
            .map(|(name, value)| json!({"name": name, "type": "text", "value": value}))
            .collect();
        let answer: Value = self
            .call(Method::POST, path, |r| {
                let r = r.json(&json!({ "variables": variables }));
                match idempotency_key {
                    Some(key) => r.header("Idempotency-Key", key),
                    None => r,
                }
            })
            .await?;
        answer["id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| Error::Unexpected(format!("a run answer without an id: {answer}")))
    }

    /// The Integration API's result: status, progress, logs, return value.
    pub async fn result(&self, runtime_id: &str, execution_id: &str) -> Result<RunResult> {
        let path = format!("/api/integration/v1/result/{runtime_id}/{execution_id}");
        self.call(Method::GET, &path, |r| r).await
    }

    /// The result once the execution has ended, or as it is after `wait` (at
    /// most 60 seconds) if it has not.
    pub async fn result_when_ended(
        &self,
        runtime_id: &str,
        execution_id: &str,
        wait: Duration,
    ) -> Result<RunResult> {
        let path = format!(
            "/api/integration/v1/result/{runtime_id}/{execution_id}?wait={}",
            wait.as_secs().min(60)
        );
        self.call(Method::GET, &path, |r| r).await
    }

    /// The execution's events as they happen (log lines after `after`, then
    /// its progress, return value and status), until its final status.
    pub async fn events(&self, execution_id: &str, after: i64) -> Result<events::EventStream> {
        let url = format!(
            "{}/api/integration/v2/executions/{execution_id}/events?after={after}",
            self.base
        );
        let mut request = self.http.get(url).timeout(Duration::from_secs(24 * 3600));
        if let Some(authorization) = &self.authorization {
            request = request.header("Authorization", authorization);
        }
        let response = request.send().await.map_err(|source| Error::Unreachable {
            server: self.base.clone(),
            source,
        })?;
        if !response.status().is_success() {
            return Err(decode::<Value>(response)
                .await
                .expect_err("an error status"));
        }
        Ok(events::EventStream::new(response))
    }

    /// Everything the admin API knows of one execution.
    pub async fn execution(&self, execution_id: &str) -> Result<Execution> {
        let path = format!("/api/admin/executions/{execution_id}");
        self.call(Method::GET, &path, |r| r).await
    }

    /// A page of executions, newest first.
    pub async fn executions(&self, filter: &ExecutionFilter) -> Result<ExecutionPage> {
        let mut query: Vec<(&str, String)> = Vec::new();
        let fields = [
            ("status", &filter.status),
            ("robot", &filter.robot_id),
            ("runtime", &filter.runtime_id),
            ("cursor", &filter.cursor),
        ];
        for (name, value) in fields {
            if let Some(value) = value {
                query.push((name, value.clone()));
            }
        }
        if let Some(limit) = filter.limit {
            query.push(("limit", limit.to_string()));
        }
        self.call(Method::GET, "/api/admin/executions", |r| r.query(&query))
            .await
    }

    /// Cancels a pending execution or stops a running one.
    pub async fn cancel(&self, runtime_id: &str, execution_id: &str) -> Result<()> {
        let path = format!("/api/integration/v1/delete/{runtime_id}/{execution_id}");
        let _: Value = self.call(Method::DELETE, &path, |r| r).await?;
        Ok(())
    }

    /// The robot named `name_or_id` (an id, or a name of this organisation).
    pub async fn find_robot(&self, name_or_id: &str) -> Result<String> {
        if is_id(name_or_id) {
            return Ok(name_or_id.to_owned());
        }
        let robots = self.robots().await?;
        one_named("robot", name_or_id, robots.iter().map(|r| (&r.name, &r.id)))
    }

    /// The runtime named `name_or_id` (an id, or a name of this organisation).
    pub async fn find_runtime(&self, name_or_id: &str) -> Result<String> {
        if is_id(name_or_id) {
            return Ok(name_or_id.to_owned());
        }
        let runtimes = self.runtimes().await?;
        one_named(
            "runtime",
            name_or_id,
            runtimes.iter().map(|r| (&r.name, &r.id)),
        )
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        build: impl FnOnce(RequestBuilder) -> RequestBuilder,
    ) -> Result<T> {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(authorization) = &self.authorization {
            request = request.header("Authorization", authorization);
        }
        let response = build(request)
            .send()
            .await
            .map_err(|source| Error::Unreachable {
                server: self.base.clone(),
                source,
            })?;
        decode(response).await
    }
}

async fn decode<T: DeserializeOwned>(response: Response) -> Result<T> {
    let status = response.status();
    let text = response
        .text()
        .await
        .map_err(|e| Error::Unexpected(format!("cannot read the answer: {e}")))?;
    if !status.is_success() {
        let message = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|body| body["message"].as_str().map(str::to_owned))
            .unwrap_or_else(|| text.trim().to_owned());
        return Err(Error::Api {
            status: status.as_u16(),
            message: if message.is_empty() {
                status.canonical_reason().unwrap_or("error").to_lowercase()
            } else {
                message
            },
        });
    }
    // Some answers (a delete) have no body; some (v1 routes) are plain text.
    let text = if text.trim().is_empty() {
        "null"
    } else {
        &text
    };
    serde_json::from_str(text)
        .or_else(|_| serde_json::from_value(Value::String(text.to_owned())))
        .map_err(|e| Error::Unexpected(format!("{e}: {}", truncate(text, 200))))
}

fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

/// Whether `text` is an id (16 lowercase hex digits) rather than a name.
pub fn is_id(text: &str) -> bool {
    text.len() == 16 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn one_named<'a>(
    what: &str,
    name: &str,
    candidates: impl Iterator<Item = (&'a String, &'a String)>,
) -> Result<String> {
    let matching: Vec<&String> = candidates
        .filter(|(candidate, _)| candidate.as_str() == name)
        .map(|(_, id)| id)
        .collect();
    match matching.as_slice() {
        [id] => Ok((*id).clone()),
        [] => Err(Error::NotFound(format!("no {what} is named {name:?}"))),
        _ => Err(Error::NotFound(format!(
            "several {what}s are named {name:?}: use an id"
        ))),
    }
}

/// A run to queue.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunRequest<'a> {
    pub runtime_id: &'a str,
    pub robot_id: &'a str,
    /// `(NAME, VALUE)`, as text: the robot's declared types decide.
    pub variables: Vec<(String, String)>,
    pub idempotency_key: Option<&'a str>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Login {
    pub token: String,
    /// Seconds.
    pub expires_in: u64,
}
