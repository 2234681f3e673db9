//! The load generator: N tasks, each with its own keep-alive connection, sending
//! requests back to back, and the URLs they send to. Everything else the
//! benchmark asks a server goes through the test kit's client.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

/// One keep-alive connection (a client with a pool of one).
pub fn one_connection() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(120))
        .build()
        .expect("building an HTTP client")
}

/// A run request sent the way the loads send theirs, on `client`'s connection,
/// for a figure that times one run at a time; answers the execution id.
pub async fn post_run(client: &reqwest::Client, url: &str, token: &str) -> anyhow::Result<String> {
    let answer = json_answer(client.post(url).header("authorization", token), "a run").await?;
    Ok(answer["id"]
        .as_str()
        .with_context(|| format!("no id in {answer}"))?
        .to_owned())
}

/// `GET url` with the token, on `client`'s connection: its JSON answer.
pub async fn get_json(
    client: &reqwest::Client,
    url: &str,
    token: &str,
) -> anyhow::Result<serde_json::Value> {
    json_answer(client.get(url).header("authorization", token), "a GET").await
}

/// Sends a request that must answer 200 with JSON (`what` names it in errors).
async fn json_answer(
    request: reqwest::RequestBuilder,
    what: &str,
) -> anyhow::Result<serde_json::Value> {
    let response = request.send().await.context(what.to_owned())?;
    let status = response.status();
    let text = response.text().await?;
    if status != reqwest::StatusCode::OK {
        bail!("{what} answered {status}: {text}");
    }
    serde_json::from_str(&text).with_context(|| format!("{what} answered non-JSON: {text}"))
}

pub fn run_url(base: &str, runtime: &str, robot: &str) -> String {
    format!("{base}/api/integration/v2/run/{runtime}/{robot}")
}

pub fn result_url(base: &str, runtime: &str, execution: &str) -> String {
    format!("{base}/api/integration/v1/result/{runtime}/{execution}")
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
    /// Latency of each successful request (send to whole body read), microseconds, sorted;
    /// or, from `wrk`, only its quantiles.
    pub latencies: Latencies,
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
        let us = match &self.latencies {
            Latencies::Samples(sorted) => quantile(sorted, p),
            Latencies::Quantiles(known) => known
                .iter()
                .find(|(q, _)| *q >= p)
                .or(known.last())
                .map_or(0, |(_, us)| *us),
        };
        us as f64 / 1000.0
    }
}

/// A load's latencies, in microseconds.
pub enum Latencies {
    /// Every sample, sorted.
    Samples(Vec<u64>),
    /// Only some quantiles (p, value), ascending in p, the last being the maximum.
    Quantiles(Vec<(f64, u64)>),
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
    let mut samples = Vec::new();
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
        latencies: Latencies::Samples(Vec::new()),
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
        samples.extend(latencies);
        result.errors += errors;
        if result.first_error.is_none() {
            result.first_error = first_error;
        }
        result.out_of_time |= out_of_time;
    }
    result.elapsed = started.elapsed();
    result.out_of_time &= matches!(until, Until::Count(..));
    samples.sort_unstable();
    result.latencies = Latencies::Samples(samples);
    result
}
