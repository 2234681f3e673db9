//! The server's HTTP API as the benchmark uses it, and the load generator: N tasks,
//! each with its own keep-alive connection, sending requests back to back.

use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use base64::Engine as _;
use serde_json::{json, Value};

/// A client of one server, signed in as its admin and as an integration user.
pub struct Api {
    pub base: String,
    pub client: reqwest::Client,
    /// `Authorization` value of the admin.
    pub admin: String,
    /// `Authorization` value of the integration user.
    pub token: String,
}

/// One keep-alive connection (a client with a pool of one).
pub fn one_connection() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(120))
        .build()
        .expect("building an HTTP client")
}

async fn answer(response: reqwest::Response, what: &str) -> anyhow::Result<String> {
    let status = response.status();
    let text = response.text().await?;
    if !status.is_success() {
        bail!("{what} answered {status}: {text}");
    }
    Ok(text)
}

async fn send(request: reqwest::RequestBuilder, what: &str) -> anyhow::Result<String> {
    let response = request.send().await.with_context(|| what.to_owned())?;
    answer(response, what).await
}

async fn send_json(request: reqwest::RequestBuilder, what: &str) -> anyhow::Result<Value> {
    let text = send(request, what).await?;
    serde_json::from_str(&text).with_context(|| format!("{what} answered non-JSON: {text}"))
}

pub async fn login(
    client: &reqwest::Client,
    base: &str,
    username: &str,
    password: &str,
) -> anyhow::Result<String> {
    let password = base64::engine::general_purpose::STANDARD.encode(password);
    let token = send(
        client
            .post(format!("{base}/api/user/auth"))
            .json(&json!({"username": username, "password": password})),
        "login",
    )
    .await?;
    Ok(token.trim().to_owned())
}

impl Api {
    /// Signs in as the admin and creates (or reuses) an integration user.
    pub async fn connect(base: &str, admin_password: &str) -> anyhow::Result<Api> {
        let client = one_connection();
        let admin = login(&client, base, "admin", admin_password).await?;
        let (username, password) = ("bench@example.com", "bench-integration-password");
        let created = client
            .post(format!("{base}/api/admin/users"))
            .header("authorization", &admin)
            .json(&json!({"username": username, "password": password, "role": "integration"}))
            .send()
            .await?;
        // 409: made by an earlier run on the same (PostgreSQL) store.
        if created.status() != reqwest::StatusCode::CONFLICT {
            answer(created, "creating the integration user").await?;
        }
        let token = login(&client, base, username, password).await?;
        Ok(Api {
            base: base.to_owned(),
            client,
            admin,
            token,
        })
    }

    /// Creates a runtime; answers its id and key.
    pub async fn create_runtime(&self, name: &str, slots: u32) -> anyhow::Result<(String, String)> {
        let body = send_json(
            self.client
                .post(format!("{}/api/admin/runtimes", self.base))
                .header("authorization", &self.admin)
                .json(&json!({"name": name, "slots": slots})),
            "creating a runtime",
        )
        .await?;
        let field = |name: &str| -> anyhow::Result<String> {
            Ok(body[name]
                .as_str()
                .with_context(|| format!("no {name} in {body}"))?
                .to_owned())
        };
        Ok((field("id")?, field("key")?))
    }

    /// Uploads a robot package with this `robot.toml`; answers the robot's id.
    pub async fn upload_robot(&self, manifest: &str) -> anyhow::Result<String> {
        let body = send_json(
            self.client
                .post(format!("{}/api/admin/robots", self.base))
                .header("authorization", &self.admin)
                .header("content-type", "application/zip")
                .body(robot_zip(manifest)?),
            "uploading a robot",
        )
        .await?;
        Ok(body["id"]
            .as_str()
            .with_context(|| format!("no id in {body}"))?
            .to_owned())
    }

    /// `POST /api/integration/v2/run/...`: answers the execution id.
    pub async fn run(&self, runtime: &str, robot: &str, body: &str) -> anyhow::Result<String> {
        let answer = send_json(
            self.client
                .post(run_url(&self.base, runtime, robot))
                .header("authorization", &self.token)
                .body(body.to_owned()),
            "a run",
        )
        .await?;
        Ok(answer["id"]
            .as_str()
            .with_context(|| format!("no id in {answer}"))?
            .to_owned())
    }

    /// The Integration API's result of an execution.
    pub async fn result(&self, runtime: &str, execution: &str) -> anyhow::Result<Value> {
        send_json(
            self.client
                .get(result_url(&self.base, runtime, execution))
                .header("authorization", &self.token),
            "a result",
        )
        .await
    }

    /// The admin API's view of an execution.
    pub async fn execution(&self, execution: &str) -> anyhow::Result<Value> {
        send_json(
            self.client
                .get(format!("{}/api/admin/executions/{execution}", self.base))
                .header("authorization", &self.admin),
            "an execution",
        )
        .await
    }

    /// `GET /api/admin/executions?QUERY`.
    pub async fn executions(&self, query: &str) -> anyhow::Result<Value> {
        send_json(
            self.client
                .get(format!("{}/api/admin/executions?{query}", self.base))
                .header("authorization", &self.admin),
            "listing executions",
        )
        .await
    }

    /// Every execution the admin listing gives for QUERY, all pages.
    pub async fn all_executions(&self, query: &str) -> anyhow::Result<Vec<Value>> {
        let mut all = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page_query = match &cursor {
                Some(cursor) => format!("{query}&limit=500&cursor={cursor}"),
                None => format!("{query}&limit=500"),
            };
            let mut page = self.executions(&page_query).await?;
            if let Some(list) = page["executions"].as_array_mut() {
                all.append(list);
            }
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => return Ok(all),
            }
        }
    }

    /// Whether the admin API lists this runtime as online.
    pub async fn runtime_online(&self, runtime: &str) -> anyhow::Result<bool> {
        let list = send_json(
            self.client
                .get(format!("{}/api/admin/runtimes", self.base))
                .header("authorization", &self.admin),
            "listing runtimes",
        )
        .await?;
        Ok(list
            .as_array()
            .into_iter()
            .flatten()
            .any(|r| r["id"] == runtime && r["online"] == true))
    }

    /// Waits until the runtime is online.
    pub async fn wait_online(&self, runtime: &str, deadline: Duration) -> anyhow::Result<()> {
        let started = Instant::now();
        while !self.runtime_online(runtime).await? {
            if started.elapsed() > deadline {
                bail!("runtime {runtime} did not come online within {deadline:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }
}

pub fn run_url(base: &str, runtime: &str, robot: &str) -> String {
    format!("{base}/api/integration/v2/run/{runtime}/{robot}")
}

pub fn result_url(base: &str, runtime: &str, execution: &str) -> String {
    format!("{base}/api/integration/v1/result/{runtime}/{execution}")
}

/// A robot package: a zip holding only `robot.toml`.
pub fn robot_zip(manifest: &str) -> anyhow::Result<Vec<u8>> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    zip.start_file("robot.toml", zip::write::SimpleFileOptions::default())?;
    zip.write_all(manifest.as_bytes())?;
    Ok(zip.finish()?.into_inner())
}

/// When a load stops.
#[derive(Debug, Clone, Copy)]
pub enum Until {
    Elapsed(Duration),
    /// After this many requests in all (or when the time budget runs out).
    Count(u64, Duration),
}

/// Builds request number `i` on a connection.
pub type MakeRequest = Arc<dyn Fn(&reqwest::Client, u64) -> reqwest::RequestBuilder + Send + Sync>;

/// What a load measured.
pub struct Load {
    pub ok: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    /// Latency of each successful request (send to whole body read), microseconds, sorted.
    pub latencies_us: Vec<u64>,
    pub elapsed: Duration,
    /// Whether a `Count` load stopped on its time budget.
    pub out_of_time: bool,
}

impl Load {
    pub fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }

    /// The p-quantile (0..1) in milliseconds.
    pub fn quantile_ms(&self, p: f64) -> f64 {
        quantile(&self.latencies_us, p) as f64 / 1000.0
    }
}

/// The p-quantile of sorted samples.
pub fn quantile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Runs `connections` tasks, each with its own keep-alive connection, each sending
/// requests back to back until `until`. A request succeeds on a 200.
pub async fn load(connections: usize, until: Until, make: MakeRequest) -> Load {
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let (total, budget) = match until {
        Until::Elapsed(duration) => (u64::MAX, duration),
        Until::Count(total, budget) => (total, budget),
    };
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..connections {
        let next = next.clone();
        let make = make.clone();
        tasks.spawn(async move {
            let client = one_connection();
            let mut latencies = Vec::new();
            let (mut errors, mut first_error) = (0u64, None::<String>);
            let mut out_of_time = false;
            loop {
                if started.elapsed() >= budget {
                    out_of_time = true;
                    break;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let sent = Instant::now();
                let outcome = match make(&client, i).send().await {
                    Ok(response) => {
                        let status = response.status();
                        match response.bytes().await {
                            Ok(_) if status == reqwest::StatusCode::OK => Ok(()),
                            Ok(body) => Err(format!(
                                "{status}: {}",
                                String::from_utf8_lossy(&body[..body.len().min(300)])
                            )),
                            Err(e) => Err(format!("reading the answer: {e}")),
                        }
                    }
                    Err(e) => Err(format!("{e:#}")),
                };
                match outcome {
                    Ok(()) => latencies.push(sent.elapsed().as_micros() as u64),
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert(e);
                    }
                }
            }
            (latencies, errors, first_error, out_of_time)
        });
    }
    let mut result = Load {
        ok: 0,
        errors: 0,
        first_error: None,
        latencies_us: Vec::new(),
        elapsed: Duration::ZERO,
        out_of_time: false,
    };
    while let Some(joined) = tasks.join_next().await {
        let (latencies, errors, first_error, out_of_time) = match joined {
            Ok(outcome) => outcome,
            Err(e) => (
                Vec::new(),
                1,
                Some(format!("a load task failed: {e}")),
                false,
            ),
        };
        result.ok += latencies.len() as u64;
        result.latencies_us.extend(latencies);
        result.errors += errors;
        if result.first_error.is_none() {
            result.first_error = first_error;
        }
        result.out_of_time |= out_of_time;
    }
    result.elapsed = started.elapsed();
    result.out_of_time &= matches!(until, Until::Count(..));
    result.latencies_us.sort_unstable();
    result
}
