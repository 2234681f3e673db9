//! `regente-bench`: starts the real `regente` server and runtime agents on
//! 127.0.0.1, drives them over HTTP, and prints one JSON line per figure (as soon
//! as it is measured) and then a Markdown table. Every figure is set against a
//! floor measured in the same run, so a noisy machine shows in both. See
//! bench/README.md for what each figure means.
//!
//! It exits non-zero when something is broken (an error answer, a run that does
//! not finish within the deadline, log lines missing), never because a figure is
//! slow.

mod http;
mod procs;
mod report;
mod sim;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _};
use clap::Parser;
use serde_json::{json, Value};
use tokio::io::AsyncBufReadExt;

use http::{load, result_url, run_url, Api, Load, MakeRequest, Until};
use procs::{Cpu, Server};
use report::{Figure, Target};

#[derive(Parser)]
#[command(
    name = "regente-bench",
    about = "Measures Regente (the real release binary, server and agents) against the machine's floors"
)]
struct Cli {
    /// The regente binary to measure [default: target/release/regente, or the one beside this program].
    #[arg(long, value_name = "PATH")]
    regente: Option<PathBuf>,
    /// Tiny sizes, for CI: checks that every figure still works, in well under a minute.
    #[arg(long)]
    smoke: bool,
    /// Use this PostgreSQL database (passed to the server as --database-url) instead of SQLite.
    #[arg(long, value_name = "URL")]
    postgres: Option<String>,
    /// Concurrent connections of the load figures [default: 64].
    #[arg(long)]
    connections: Option<usize>,
    /// Seconds each timed load runs (enqueue, result reads) [default: 10; smoke 1].
    #[arg(long)]
    seconds: Option<f64>,
    /// Requests of the serial single-client submit rate [default: 2000; smoke 100].
    #[arg(long)]
    serial_requests: Option<u64>,
    /// Samples of each floor [default: 2000; smoke 200].
    #[arg(long)]
    floor_samples: Option<u64>,
    /// Runs of the dispatch latency figure [default: 500; smoke 20].
    #[arg(long)]
    dispatch_runs: Option<u64>,
    /// Runs of the end-to-end figure [default: 10000; smoke 200].
    #[arg(long)]
    e2e_runs: Option<u64>,
    /// Lines the log-ingestion robot prints [default: 1000000; smoke 10000].
    #[arg(long)]
    log_lines: Option<u64>,
    /// Executions stored for the memory figure [default: 1000000; smoke 10000].
    #[arg(long)]
    executions: Option<u64>,
    /// Simulated runtimes connected for the memory figure [default: 1000; smoke 50].
    #[arg(long)]
    runtimes: Option<u64>,
    /// Longest time spent inserting the memory figure's executions; past it the
    /// figure reports what was inserted and how long it took [default: 1800; smoke 40].
    #[arg(long)]
    insert_budget_secs: Option<f64>,
    /// Longest wait for anything to finish before it counts as broken [default: 900; smoke 40].
    #[arg(long)]
    deadline_secs: Option<f64>,
    /// Run only these figure groups (floors always run): enqueue, dispatch, e2e, results, logs, memory.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Where to create the temporary data and work directories [default: the system's temp dir].
    #[arg(long, value_name = "DIR")]
    work_dir: Option<PathBuf>,
    /// Keep the temporary directories (server and agent logs) after the run.
    #[arg(long)]
    keep: bool,
}

const GROUPS: [&str; 6] = ["enqueue", "dispatch", "e2e", "results", "logs", "memory"];

struct Sizes {
    smoke: bool,
    connections: usize,
    seconds: Duration,
    serial_requests: u64,
    floor_samples: u64,
    dispatch_runs: u64,
    e2e_runs: u64,
    log_lines: u64,
    executions: u64,
    runtimes: u64,
    insert_budget: Duration,
    deadline: Duration,
}

impl Sizes {
    fn from(cli: &Cli) -> Sizes {
        let s = cli.smoke;
        let pick = |value: Option<u64>, full: u64, smoke: u64| {
            value.unwrap_or(if s { smoke } else { full })
        };
        let secs = |value: Option<f64>, full: f64, smoke: f64| {
            Duration::from_secs_f64(value.unwrap_or(if s { smoke } else { full }).max(0.01))
        };
        Sizes {
            smoke: s,
            connections: cli.connections.unwrap_or(64).max(1),
            seconds: secs(cli.seconds, 10.0, 1.0),
            serial_requests: pick(cli.serial_requests, 2_000, 100).max(1),
            floor_samples: pick(cli.floor_samples, 2_000, 200).max(1),
            dispatch_runs: pick(cli.dispatch_runs, 500, 20).max(1),
            e2e_runs: pick(cli.e2e_runs, 10_000, 200).max(1),
            log_lines: pick(cli.log_lines, 1_000_000, 10_000).max(1),
            executions: pick(cli.executions, 1_000_000, 10_000),
            runtimes: pick(cli.runtimes, 1_000, 50),
            insert_budget: secs(cli.insert_budget_secs, 1_800.0, 40.0),
            deadline: secs(cli.deadline_secs, 900.0, 40.0),
        }
    }
}

/// The machine's floors, measured first.
#[derive(Default)]
struct Floors {
    /// Spawning `/bin/true` and waiting for it, microseconds.
    spawn_us: f64,
    /// A 100-byte append + fdatasync, microseconds (median).
    fsync_us: f64,
    /// `GET /healthz` round trip on one keep-alive connection, microseconds (median).
    rtt_us: f64,
    /// `GET /healthz` at N connections: requests per second, and p99 in ms.
    http_rate: f64,
    http_p99_ms: f64,
}

struct Bench {
    sizes: Sizes,
    bin: PathBuf,
    postgres: Option<String>,
    root: PathBuf,
    only: Vec<String>,
    figures: Vec<Figure>,
    problems: Vec<String>,
    floors: Floors,
    /// A finished execution (runtime, id) whose result the read figure fetches.
    finished: Option<(String, String)>,
}

/// Real agents connected to the first server.
struct Agents {
    /// (runtime id, agent process) with one slot: dispatch and logs.
    single: (String, tokio::process::Child),
    /// Four runtimes with two slots each: end to end.
    pool: Vec<(String, tokio::process::Child)>,
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(unknown) = cli.only.iter().find(|g| !GROUPS.contains(&g.as_str())) {
        eprintln!(
            "error: unknown figure group {unknown:?} in --only: use {}",
            GROUPS.join(", ")
        );
        return ExitCode::from(2);
    }
    let bin = match find_binary(cli.regente.as_deref()) {
        Ok(bin) => bin,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    let base_dir = cli.work_dir.clone().unwrap_or_else(std::env::temp_dir);
    let temp = match tempfile::Builder::new()
        .prefix("regente-bench-")
        .tempdir_in(&base_dir)
    {
        Ok(temp) => temp,
        Err(e) => {
            eprintln!(
                "error: cannot create a temporary directory in {}: {e}",
                base_dir.display()
            );
            return ExitCode::from(2);
        }
    };
    let mut bench = Bench {
        sizes: Sizes::from(&cli),
        bin,
        postgres: cli.postgres.clone(),
        root: temp.path().to_owned(),
        only: cli.only.clone(),
        figures: Vec::new(),
        problems: Vec::new(),
        floors: Floors::default(),
        finished: None,
    };
    let started = Instant::now();
    note(&machine_load());
    note(&format!(
        "regente-bench{}: {} in {}",
        if bench.sizes.smoke { " --smoke" } else { "" },
        bench.bin.display(),
        bench.root.display()
    ));
    if let Err(e) = bench.run().await {
        bench.problem(format!("{e:#}"));
    }
    println!();
    println!("{}", report::table(&bench.figures));
    note(&format!(
        "done in {:.1} s; {}",
        started.elapsed().as_secs_f64(),
        machine_load()
    ));
    if cli.keep {
        let kept = temp.keep();
        note(&format!("kept {}", kept.display()));
    }
    if bench.problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        eprintln!("\n{} problem(s):", bench.problems.len());
        for problem in &bench.problems {
            eprintln!("- {problem}");
        }
        ExitCode::FAILURE
    }
}

/// The machine's load average, which tells whether others shared the cores.
fn machine_load() -> String {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!(
        "{cores} cores; load average (1, 5, 15 min): {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    )
}

/// Progress, on stderr (the figures go to stdout).
fn note(text: &str) {
    eprintln!("# {text}");
}

fn find_binary(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    let hint = "build it first: cargo build --release -p regente";
    if let Some(path) = given {
        anyhow::ensure!(path.is_file(), "{} does not exist: {hint}", path.display());
        return Ok(path.to_owned());
    }
    let mut candidates = vec![PathBuf::from("target/release/regente")];
    if let Ok(me) = std::env::current_exe() {
        if let Some(dir) = me.parent() {
            candidates.push(dir.join("regente"));
        }
    }
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .with_context(|| format!("target/release/regente does not exist: {hint}"))
}

fn now_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

fn now_ms() -> i64 {
    (now_ns() / 1_000_000) as i64
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// CPU time of the server, the agents and the benchmark itself over a stretch.
struct Meter {
    started: Instant,
    server_pid: u32,
    server: Cpu,
    agent_pids: Vec<u32>,
    agents: Vec<Cpu>,
    me: Cpu,
}

impl Meter {
    fn start(server_pid: u32, agent_pids: &[u32]) -> Meter {
        Meter {
            started: Instant::now(),
            server_pid,
            server: procs::cpu(server_pid),
            agent_pids: agent_pids.to_vec(),
            agents: agent_pids.iter().map(|&pid| procs::cpu(pid)).collect(),
            me: procs::own_cpu(),
        }
    }

    /// CPU seconds and cores used, and server CPU microseconds per unit of work.
    fn finish(&self, units: u64) -> Value {
        let elapsed = self.started.elapsed().as_secs_f64();
        let server = procs::cpu(self.server_pid).since(self.server).total();
        let me = procs::own_cpu().since(self.me).own;
        let mut details = json!({
            "server_cpu_s": report::round(server),
            "server_cores": report::round(server / elapsed),
            "server_cpu_us_per_unit": report::round(server * 1e6 / units.max(1) as f64),
            "bench_cpu_s": report::round(me),
            "bench_cores": report::round(me / elapsed),
        });
        if !self.agent_pids.is_empty() {
            let (mut own, mut children) = (0.0, 0.0);
            for (&pid, &before) in self.agent_pids.iter().zip(&self.agents) {
                let used = procs::cpu(pid).since(before);
                own += used.own;
                children += used.children;
            }
            let agents = own + children;
            let per_unit = |cpu: f64| json!(report::round(cpu * 1e6 / units.max(1) as f64));
            details["agents_cpu_s_with_robots"] = json!(report::round(agents));
            details["agents_cpu_us_per_unit"] = per_unit(agents);
            // Children: the guard processes and the robots under them, once reaped.
            details["agents_own_cpu_us_per_unit"] = per_unit(own);
            details["agents_children_cpu_us_per_unit"] = per_unit(children);
        }
        details
    }
}

fn load_details(load: &Load) -> Value {
    let q = |p| report::round(load.quantile_ms(p));
    json!({
        "ok": load.ok,
        "errors": load.errors,
        "elapsed_s": report::round(load.elapsed.as_secs_f64()),
        "p50_ms": q(0.5),
        "p90_ms": q(0.9),
        "p99_ms": q(0.99),
        "max_ms": q(1.0),
    })
}

fn merge(mut a: Value, b: Value) -> Value {
    if let (Value::Object(a), Value::Object(b)) = (&mut a, b) {
        a.extend(b);
    }
    a
}

fn body_with(i: u64) -> String {
    format!(r#"{{"variables":[{{"name":"N","type":"text","value":"{i}"}}]}}"#)
}

/// A robot whose command is `["true"]`, with one text variable N.
fn true_robot(name: &str) -> String {
    format!(
        "name = \"{name}\"\ncommand = [\"true\"]\n\n[[variables]]\nname = \"N\"\ntype = \"text\"\ndefault = \"0\"\n"
    )
}

fn unique(name: &str) -> String {
    format!("{name}-{}", now_ns() % 1_000_000_000_000)
}

impl Bench {
    fn wants(&self, group: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|g| g == group)
    }

    fn emit(&mut self, figure: Figure) {
        println!("{}", figure.json());
        let _ = std::io::stdout().flush();
        self.figures.push(figure);
    }

    fn problem(&mut self, problem: String) {
        eprintln!("PROBLEM: {problem}");
        self.problems.push(problem);
    }

    /// Counts a load's error answers as a problem.
    fn check_load(&mut self, what: &str, load: &Load) {
        if load.errors > 0 {
            self.problem(format!(
                "{what}: {} of {} requests failed; first: {}",
                load.errors,
                load.errors + load.ok,
                load.first_error.as_deref().unwrap_or("?")
            ));
        }
    }

    async fn run(&mut self) -> anyhow::Result<()> {
        let data_a = self.root.join("server-a");
        let mut server = procs::start_server(
            &self.bin,
            &data_a,
            self.postgres.as_deref(),
            &self.root.join("server-a.log"),
        )
        .await?;
        note(&format!("server at {} (pid {})", server.base, server.pid));
        let api = Api::connect(&server.base, procs::ADMIN_PASSWORD).await?;
        self.measure_floors(&server, &data_a).await?;
        let outcome = self.first_server(&mut server, &api).await;
        if let Err(e) = outcome {
            self.problem(format!("{e:#}"));
        }
        server.check_alive()?;
        server.stop().await.context("stopping the first server")?;
        if self.wants("memory") {
            if let Err(e) = self.memory().await {
                self.problem(format!("memory: {e:#}"));
            }
        }
        Ok(())
    }

    async fn first_server(&mut self, server: &mut Server, api: &Api) -> anyhow::Result<()> {
        if self.wants("enqueue") {
            if let Err(e) = self.enqueue(server, api).await {
                self.problem(format!("enqueue: {e:#}"));
            }
            server.check_alive()?;
        }
        if !["dispatch", "e2e", "results", "logs"]
            .iter()
            .any(|g| self.wants(g))
        {
            return Ok(());
        }
        let mut agents = self.start_agents(server, api).await?;
        for group in ["dispatch", "e2e", "results", "logs"] {
            if !self.wants(group) {
                continue;
            }
            let outcome = match group {
                "dispatch" => self.dispatch(server, api, &agents).await,
                "e2e" => self.end_to_end(server, api, &agents).await,
                "results" => self.result_reads(server, api, &agents).await,
                _ => self.logs(server, api, &agents).await,
            };
            if let Err(e) = outcome {
                self.problem(format!("{group}: {e:#}"));
            }
            server.check_alive()?;
        }
        procs::terminate(&mut agents.single.1).await?;
        for (_, child) in &mut agents.pool {
            procs::terminate(child).await?;
        }
        Ok(())
    }

    async fn measure_floors(&mut self, server: &Server, data_dir: &Path) -> anyhow::Result<()> {
        let n = self.sizes.floor_samples;
        note("floors: spawning /bin/true, fsync'd appends, loopback HTTP");
        let spawn =
            tokio::task::spawn_blocking(move || spawn_serially("/bin/true", &[], n)).await??;
        self.floors.spawn_us = spawn.as_secs_f64() * 1e6 / n as f64;
        self.emit(
            Figure::new("floor.spawn_true", self.floors.spawn_us, "µs").details(json!({
                "spawns": n,
                "per_s": report::round(1e6 / self.floors.spawn_us),
            })),
        );

        let path = data_dir.join("fsync-floor.bin");
        let samples = tokio::task::spawn_blocking(move || fsync_writes(&path, n, true)).await??;
        let path = data_dir.join("fsync-floor.bin");
        let rewrites = tokio::task::spawn_blocking(move || fsync_writes(&path, n, false)).await??;
        self.floors.fsync_us = http::quantile(&samples, 0.5) as f64 / 1000.0;
        let mean = samples.iter().sum::<u64>() as f64 / samples.len() as f64 / 1000.0;
        self.emit(
            Figure::new("floor.fsync_append", self.floors.fsync_us, "µs").details(json!({
                "what": "100-byte append + fdatasync in the server's data directory; median",
                "samples": n,
                "mean_us": report::round(mean),
                "p99_us": report::round(http::quantile(&samples, 0.99) as f64 / 1000.0),
                "rewrite_in_place_p50_us": report::round(http::quantile(&rewrites, 0.5) as f64 / 1000.0),
            })),
        );

        let client = http::one_connection();
        let url = format!("{}/healthz", server.base);
        for _ in 0..50 {
            client.get(&url).send().await?.bytes().await?;
        }
        let mut rtts = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let sent = Instant::now();
            let response = client.get(&url).send().await?;
            anyhow::ensure!(
                response.status() == reqwest::StatusCode::OK,
                "/healthz answered {}",
                response.status()
            );
            response.bytes().await?;
            rtts.push(sent.elapsed().as_nanos() as u64);
        }
        rtts.sort_unstable();
        self.floors.rtt_us = http::quantile(&rtts, 0.5) as f64 / 1000.0;
        self.emit(
            Figure::new("floor.http_rtt", self.floors.rtt_us, "µs").details(json!({
                "what": "GET /healthz on one keep-alive connection, serially; median",
                "samples": n,
                "p99_us": report::round(http::quantile(&rtts, 0.99) as f64 / 1000.0),
            })),
        );

        let seconds = self.sizes.seconds.min(Duration::from_secs(3));
        let meter = Meter::start(server.pid, &[]);
        let url = Arc::new(url);
        let healthz = load(
            self.sizes.connections,
            Until::Elapsed(seconds),
            Arc::new(move |client: &reqwest::Client, _| client.get(url.as_str())),
        )
        .await;
        self.check_load("floor.http_64", &healthz);
        self.floors.http_rate = healthz.rate();
        self.floors.http_p99_ms = healthz.quantile_ms(0.99);
        let details = merge(
            json!({"what": format!("GET /healthz at {} connections: the HTTP stack and this client, no store", self.sizes.connections)}),
            merge(load_details(&healthz), meter.finish(healthz.ok)),
        );
        self.emit(Figure::new("floor.http_64", healthz.rate(), "req/s").details(details));
        Ok(())
    }

    async fn enqueue(&mut self, server: &Server, api: &Api) -> anyhow::Result<()> {
        let connections = self.sizes.connections;
        note(&format!(
            "enqueue: {connections} connections for {:?}, no agent connected",
            self.sizes.seconds
        ));
        let robot = api.upload_robot(&true_robot("bench-true")).await?;
        let (runtime, _key) = api.create_runtime(&unique("bench-queue"), 1).await?;
        let url = Arc::new(run_url(&api.base, &runtime, &robot));
        let token = Arc::new(api.token.clone());
        let make: MakeRequest = Arc::new(move |client: &reqwest::Client, i| {
            client
                .post(url.as_str())
                .header("authorization", token.as_str())
                .header("content-type", "application/json")
                .body(body_with(i))
        });
        let meter = Meter::start(server.pid, &[]);
        let burst = load(
            connections,
            Until::Elapsed(self.sizes.seconds),
            make.clone(),
        )
        .await;
        let cpu = meter.finish(burst.ok);
        self.check_load("enqueue", &burst);
        let fsync_rate = 1e6 / self.floors.fsync_us;
        let details = merge(
            json!({
                "connections": connections,
                "floor_is": "one fdatasync'd append per run, serially (1e6 / floor.fsync_append)",
            }),
            merge(load_details(&burst), cpu),
        );
        self.emit(
            Figure::new("enqueue.accepted", burst.rate(), "runs/s")
                .floor(fsync_rate)
                .target(Target::AtLeast(20_000.0))
                .details(details),
        );
        let fsync_ms = self.floors.fsync_us / 1000.0;
        self.emit(
            Figure::new("enqueue.p50", burst.quantile_ms(0.5), "ms")
                .floor(fsync_ms)
                .details(json!({"floor_is": "floor.fsync_append"})),
        );
        self.emit(
            Figure::new("enqueue.p99", burst.quantile_ms(0.99), "ms")
                .floor(fsync_ms)
                .target(Target::AtMost(10.0))
                .details(json!({"floor_is": "floor.fsync_append"})),
        );

        let n = self.sizes.serial_requests;
        note(&format!("enqueue: one serial client, {n} runs"));
        let meter = Meter::start(server.pid, &[]);
        let serial = load(1, Until::Count(n, self.sizes.deadline), make).await;
        let cpu = meter.finish(serial.ok);
        self.check_load("enqueue.serial", &serial);
        if serial.out_of_time {
            self.problem(format!(
                "enqueue.serial: {n} serial runs took over the deadline"
            ));
        }
        let floor = 1e6 / (self.floors.fsync_us + self.floors.rtt_us);
        let details = merge(
            json!({
                "floor_is": "1e6 / (floor.fsync_append + floor.http_rtt): one round trip and one fsync per run",
                "celery_redis_appendfsync_always_serial": 931,
                "celery_no_persistence_serial": 1848,
                "prefect_sqlite_serial": 8,
            }),
            merge(load_details(&serial), cpu),
        );
        self.emit(
            Figure::new("enqueue.serial", serial.rate(), "runs/s")
                .floor(floor)
                .details(details),
        );
        Ok(())
    }

    async fn start_agents(&mut self, server: &Server, api: &Api) -> anyhow::Result<Agents> {
        note("starting 5 runtime agents (1 with 1 slot, 4 with 2 slots)");
        let start = |name: &str, slots: u32, key: &str| {
            procs::start_agent(
                &self.bin,
                &server.base,
                key,
                &self.root.join(name),
                slots,
                &self.root.join(format!("{name}.log")),
            )
        };
        let (single_id, key) = api.create_runtime(&unique("bench-single"), 1).await?;
        let single = (single_id, start("agent-single", 1, &key)?);
        let mut pool = Vec::new();
        for i in 0..4 {
            let (id, key) = api
                .create_runtime(&unique(&format!("bench-pool{i}")), 2)
                .await?;
            pool.push((id, start(&format!("agent-pool{i}"), 2, &key)?));
        }
        for id in std::iter::once(&single.0).chain(pool.iter().map(|(id, _)| id)) {
            api.wait_online(id, self.sizes.deadline).await?;
        }
        Ok(Agents { single, pool })
    }

    /// Waits until an execution has ended; answers its result.
    async fn wait_result(
        &self,
        api: &Api,
        runtime: &str,
        id: &str,
        poll: Duration,
    ) -> anyhow::Result<Value> {
        let started = Instant::now();
        loop {
            let result = api.result(runtime, id).await?;
            if !matches!(result["status"].as_str(), Some("PENDENT" | "RUNNING")) {
                return Ok(result);
            }
            if started.elapsed() > self.sizes.deadline {
                bail!(
                    "execution {id} did not finish within {:?} (status {})",
                    self.sizes.deadline,
                    result["status"]
                );
            }
            tokio::time::sleep(poll).await;
        }
    }

    async fn dispatch(
        &mut self,
        server: &Server,
        api: &Api,
        agents: &Agents,
    ) -> anyhow::Result<()> {
        let n = self.sizes.dispatch_runs;
        note(&format!(
            "dispatch: {n} serial runs of `date +%s%N` on an idle runtime"
        ));
        let robot = api
            .upload_robot("name = \"bench-date\"\ncommand = [\"date\", \"+%s%N\"]\n")
            .await?;
        let runtime = agents.single.0.clone();
        let agent_pid = agents.single.1.id().unwrap_or(0);
        // Warm-up: the package download and the first spawn are not measured.
        for _ in 0..3 {
            let id = api.run(&runtime, &robot, "").await?;
            self.wait_result(api, &runtime, &id, Duration::from_millis(5))
                .await?;
        }
        let mut latencies_ns: Vec<i128> = Vec::with_capacity(n as usize);
        let mut submits_us = Vec::with_capacity(n as usize);
        let meter = Meter::start(server.pid, &[agent_pid]);
        let mut last = None;
        for _ in 0..n {
            let sent = Instant::now();
            let id = api.run(&runtime, &robot, "").await?;
            let answered = now_ns();
            submits_us.push(sent.elapsed().as_micros() as u64);
            // Let the robot start before polling, so the polls do not compete with it.
            tokio::time::sleep(Duration::from_millis(3)).await;
            let result = self
                .wait_result(api, &runtime, &id, Duration::from_millis(2))
                .await?;
            anyhow::ensure!(
                result["status"] == "FINISHED",
                "the date robot ended {}: {result}",
                result["status"]
            );
            let printed = result["logs"][0]["message"]
                .as_str()
                .and_then(|m| m.trim().parse::<i128>().ok())
                .with_context(|| format!("the date robot printed no time: {result}"))?;
            latencies_ns.push(printed - answered);
            last = Some(id);
        }
        let cpu = meter.finish(n);
        if let Some(id) = last {
            self.finished = Some((runtime.clone(), id));
        }
        latencies_ns.sort_unstable();
        submits_us.sort_unstable();
        let q = |p: f64| {
            let rank =
                ((p * latencies_ns.len() as f64).ceil() as usize).clamp(1, latencies_ns.len());
            latencies_ns[rank - 1] as f64 / 1e6
        };
        let details = merge(
            json!({
                "runs": n,
                "what": "robot's own start time (date +%s%N) - the client's time when the 200 arrived",
                "min_ms": report::round(latencies_ns[0] as f64 / 1e6),
                "p90_ms": report::round(q(0.9)),
                "max_ms": report::round(q(1.0)),
                "negative": latencies_ns.iter().filter(|&&l| l < 0).count(),
                "submit_p50_ms": report::round(http::quantile(&submits_us, 0.5) as f64 / 1000.0),
                "cpu_note": "server CPU includes this program's result polls (every 2 ms while a run is pending)",
                "floor_is": "floor.http_rtt",
            }),
            cpu,
        );
        let rtt_ms = self.floors.rtt_us / 1000.0;
        self.emit(
            Figure::new("dispatch.p50", q(0.5), "ms")
                .floor(rtt_ms)
                .target(Target::AtMost(1.0))
                .details(details),
        );
        self.emit(
            Figure::new("dispatch.p99", q(0.99), "ms")
                .floor(rtt_ms)
                .target(Target::AtMost(5.0))
                .details(json!({"floor_is": "floor.http_rtt"})),
        );
        Ok(())
    }

    async fn end_to_end(
        &mut self,
        server: &Server,
        api: &Api,
        agents: &Agents,
    ) -> anyhow::Result<()> {
        let n = self.sizes.e2e_runs;
        let robot = api.upload_robot(&true_robot("bench-noop")).await?;
        let runtimes: Vec<String> = agents.pool.iter().map(|(id, _)| id.clone()).collect();
        let agent_pids: Vec<u32> = agents.pool.iter().filter_map(|(_, c)| c.id()).collect();
        // Warm-up: each agent downloads the package once.
        for runtime in &runtimes {
            let id = api.run(runtime, &robot, "").await?;
            self.wait_result(api, runtime, &id, Duration::from_millis(5))
                .await?;
        }
        note(&format!(
            "end to end: spawning `true` {n} times from this program"
        ));
        let bare = tokio::task::spawn_blocking(move || spawn_serially("true", &[], n)).await??;
        let bare_rate = n as f64 / bare.as_secs_f64();
        note(&format!(
            "end to end: {n} runs of `true` over 4 runtimes x 2 slots, submitted at {} connections",
            self.sizes.connections
        ));
        let urls: Arc<Vec<String>> = Arc::new(
            runtimes
                .iter()
                .map(|rt| run_url(&api.base, rt, &robot))
                .collect(),
        );
        let token = Arc::new(api.token.clone());
        let meter = Meter::start(server.pid, &agent_pids);
        let first_post_ms = now_ms();
        let started = Instant::now();
        let submitted = load(
            self.sizes.connections,
            Until::Count(n, self.sizes.deadline),
            Arc::new(move |client: &reqwest::Client, i| {
                client
                    .post(urls[(i % urls.len() as u64) as usize].as_str())
                    .header("authorization", token.as_str())
                    .header("content-type", "application/json")
                    .body(body_with(i))
            }),
        )
        .await;
        let submit_time = started.elapsed();
        self.check_load("e2e submits", &submitted);
        anyhow::ensure!(
            !submitted.out_of_time,
            "submitting {n} runs took over the deadline"
        );
        // Done when nothing of this robot is PENDENT or RUNNING.
        loop {
            let mut busy = false;
            for status in ["PENDENT", "RUNNING"] {
                let page = api
                    .executions(&format!("robot={robot}&status={status}&limit=1"))
                    .await?;
                busy |= page["executions"].as_array().is_some_and(|l| !l.is_empty());
            }
            if !busy {
                break;
            }
            if started.elapsed() > self.sizes.deadline {
                bail!(
                    "{n} runs did not all finish within {:?}",
                    self.sizes.deadline
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let elapsed = started.elapsed();
        let cpu = meter.finish(n);
        let all = api.all_executions(&format!("robot={robot}")).await?;
        let ours: Vec<&Value> = all
            .iter()
            .filter(|e| e["init"].as_i64().is_some_and(|t| t >= first_post_ms))
            .collect();
        let finished = ours.iter().filter(|e| e["status"] == "FINISHED").count() as u64;
        let last_end = ours
            .iter()
            .filter_map(|e| e["end"].as_i64())
            .max()
            .unwrap_or(0);
        let mut per_runtime = serde_json::Map::new();
        for runtime in &runtimes {
            let count = ours
                .iter()
                .filter(|e| e["runtime_id"] == runtime.as_str())
                .count();
            per_runtime.insert(runtime.clone(), json!(count));
        }
        if finished != n || ours.len() as u64 != n {
            self.problem(format!(
                "e2e: {finished} of {n} runs FINISHED ({} listed); statuses should all be FINISHED",
                ours.len()
            ));
        }
        let rate = finished as f64 / elapsed.as_secs_f64();
        let details = merge(
            json!({
                "runs": n,
                "finished": finished,
                "elapsed_s": report::round(elapsed.as_secs_f64()),
                "elapsed_by_end_times_s": report::round((last_end - first_post_ms) as f64 / 1000.0),
                "submit_s": report::round(submit_time.as_secs_f64()),
                "submit_p99_ms": report::round(submitted.quantile_ms(0.99)),
                "bare_spawn_s": report::round(bare.as_secs_f64()),
                "per_runtime": per_runtime,
                "floor_is": format!("spawning `true` {n} times serially from this program, per second"),
                "celery_redis_durable": 342,
            }),
            cpu,
        );
        self.emit(
            Figure::new("e2e.completed", rate, "runs/s")
                .floor(bare_rate)
                .target(Target::RatioAtLeast(0.5))
                .details(details),
        );
        Ok(())
    }

    async fn result_reads(
        &mut self,
        server: &Server,
        api: &Api,
        agents: &Agents,
    ) -> anyhow::Result<()> {
        let (runtime, id) = match self.finished.clone() {
            Some(finished) => finished,
            None => {
                let robot = api
                    .upload_robot("name = \"bench-date\"\ncommand = [\"date\", \"+%s%N\"]\n")
                    .await?;
                let runtime = agents.single.0.clone();
                let id = api.run(&runtime, &robot, "").await?;
                self.wait_result(api, &runtime, &id, Duration::from_millis(5))
                    .await?;
                (runtime, id)
            }
        };
        let connections = self.sizes.connections;
        note(&format!(
            "result reads: {connections} connections for {:?}",
            self.sizes.seconds
        ));
        let url = Arc::new(result_url(&api.base, &runtime, &id));
        let token = Arc::new(api.token.clone());
        let meter = Meter::start(server.pid, &[]);
        let reads = load(
            connections,
            Until::Elapsed(self.sizes.seconds),
            Arc::new(move |client: &reqwest::Client, _| {
                client
                    .get(url.as_str())
                    .header("authorization", token.as_str())
            }),
        )
        .await;
        let cpu = meter.finish(reads.ok);
        self.check_load("result reads", &reads);
        let details = merge(
            json!({
                "connections": connections,
                "what": "a FINISHED execution with one log line",
                "floor_is": "floor.http_64: GET /healthz at the same connections",
            }),
            merge(load_details(&reads), cpu),
        );
        self.emit(
            Figure::new("results.reads", reads.rate(), "req/s")
                .floor(self.floors.http_rate)
                .target(Target::AtLeast(50_000.0))
                .details(details),
        );
        self.emit(
            Figure::new("results.p99", reads.quantile_ms(0.99), "ms")
                .floor(self.floors.http_p99_ms)
                .details(json!({"floor_is": "p99 of floor.http_64"})),
        );
        Ok(())
    }

    async fn logs(&mut self, server: &Server, api: &Api, agents: &Agents) -> anyhow::Result<()> {
        let n = self.sizes.log_lines;
        note(&format!(
            "log ingestion: one robot printing {n} lines (`seq 1 {n}`)"
        ));
        let floor_started = Instant::now();
        let read = read_lines_of("seq", &["1".to_owned(), n.to_string()]).await?;
        anyhow::ensure!(read == n, "seq printed {read} lines, not {n}");
        let floor = n as f64 / floor_started.elapsed().as_secs_f64();
        let robot = api
            .upload_robot(&format!(
                "name = \"bench-seq\"\ncommand = [\"seq\", \"1\", \"{n}\"]\n"
            ))
            .await?;
        let runtime = agents.single.0.clone();
        let agent_pid = agents.single.1.id().unwrap_or(0);
        let meter = Meter::start(server.pid, &[agent_pid]);
        let id = api.run(&runtime, &robot, "").await?;
        let answered = Instant::now();
        let status = loop {
            let execution = api.execution(&id).await?;
            let status = execution["status"].as_str().unwrap_or("?").to_owned();
            if status != "PENDENT" && status != "RUNNING" {
                break status;
            }
            if answered.elapsed() > self.sizes.deadline {
                bail!(
                    "the seq robot did not finish within {:?}",
                    self.sizes.deadline
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let elapsed = answered.elapsed();
        let cpu = meter.finish(n);
        anyhow::ensure!(status == "FINISHED", "the seq robot ended {status}");
        let fetch_started = Instant::now();
        let response = api
            .client
            .get(result_url(&api.base, &runtime, &id))
            .header("authorization", &api.token)
            .send()
            .await?;
        anyhow::ensure!(
            response.status() == reqwest::StatusCode::OK,
            "the result answered {}",
            response.status()
        );
        let bytes = response.bytes().await?;
        let fetch = fetch_started.elapsed();
        let result: Value = serde_json::from_slice(&bytes)?;
        let logs = result["logs"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        let in_order = logs
            .iter()
            .enumerate()
            .all(|(i, line)| line["message"].as_str() == Some((i as u64 + 1).to_string().as_str()));
        if logs.len() as u64 != n || !in_order {
            self.problem(format!(
                "BUG: log ingestion: the result holds {} log lines of the {n} printed{}",
                logs.len(),
                if in_order { "" } else { ", not 1..N in order" }
            ));
        }
        let rate = n as f64 / elapsed.as_secs_f64();
        let details = merge(
            json!({
                "lines": n,
                "retrieved": logs.len(),
                "in_order": in_order,
                "elapsed_s": report::round(elapsed.as_secs_f64()),
                "result_fetch_s": report::round(fetch.as_secs_f64()),
                "result_bytes": bytes.len(),
                "floor_is": "this program reading `seq 1 N` through a pipe, line by line",
            }),
            cpu,
        );
        self.emit(
            Figure::new("logs.ingested", rate, "lines/s")
                .floor(floor)
                .target(Target::AtLeast(200_000.0))
                .details(details),
        );
        Ok(())
    }

    async fn memory(&mut self) -> anyhow::Result<()> {
        let data = self.root.join("server-b");
        let log = self.root.join("server-b.log");
        let mut server =
            procs::start_server(&self.bin, &data, self.postgres.as_deref(), &log).await?;
        let at_start = procs::rss_bytes(server.pid)?;
        // Each login and user creation hashes with argon2id (19 MiB): watch what stays.
        http::login(
            &http::one_connection(),
            &server.base,
            "admin",
            procs::ADMIN_PASSWORD,
        )
        .await?;
        let after_one_login = procs::rss_bytes(server.pid)?;
        let api = Api::connect(&server.base, procs::ADMIN_PASSWORD).await?;
        let after_logins = procs::rss_bytes(server.pid)?;
        let robot = api.upload_robot(&true_robot("bench-true")).await?;
        let (queue, _) = api.create_runtime(&unique("bench-memory-queue"), 1).await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let idle = procs::rss_bytes(server.pid)?;
        self.emit(
            Figure::new("memory.server_idle", mb(idle), "MB").details(json!({
                "what": "VmRSS after start, 3 logins + 1 user created (argon2id each), 1 robot upload",
                "at_start_mb": report::round(mb(at_start)),
                "after_1_login_mb": report::round(mb(after_one_login)),
                "after_3_logins_1_user_mb": report::round(mb(after_logins)),
            })),
        );

        let n = self.sizes.executions;
        note(&format!(
            "memory: inserting {n} executions through the API at {} connections",
            self.sizes.connections
        ));
        let url = Arc::new(run_url(&api.base, &queue, &robot));
        let token = Arc::new(api.token.clone());
        let meter = Meter::start(server.pid, &[]);
        let inserted = load(
            self.sizes.connections,
            Until::Count(n, self.sizes.insert_budget),
            Arc::new(move |client: &reqwest::Client, i| {
                client
                    .post(url.as_str())
                    .header("authorization", token.as_str())
                    .header("content-type", "application/json")
                    .body(body_with(i))
            }),
        )
        .await;
        let cpu = meter.finish(inserted.ok);
        self.check_load("memory inserts", &inserted);
        self.emit(
            Figure::new("memory.insert", inserted.rate(), "runs/s").details(merge(
                json!({
                    "inserted": inserted.ok,
                    "wanted": n,
                    "stopped_by_budget": inserted.out_of_time,
                    "insert_s": report::round(inserted.elapsed.as_secs_f64()),
                }),
                merge(load_details(&inserted), cpu),
            )),
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
        let with_executions = procs::rss_bytes(server.pid)?;
        self.emit(
            Figure::new("memory.server_executions", mb(with_executions), "MB")
                .target(Target::AtMost(64.0))
                .details(json!({"executions": inserted.ok})),
        );

        let (agent_runtime, key) = api.create_runtime(&unique("bench-memory-agent"), 1).await?;
        let mut agent = procs::start_agent(
            &self.bin,
            &server.base,
            &key,
            &self.root.join("agent-memory"),
            1,
            &self.root.join("agent-memory.log"),
        )?;
        api.wait_online(&agent_runtime, self.sizes.deadline).await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let agent_rss = procs::rss_bytes(agent.id().context("the agent exited")?)?;
        procs::terminate(&mut agent).await?;
        self.emit(
            Figure::new("memory.agent_idle", mb(agent_rss), "MB")
                .target(Target::AtMost(16.0))
                .details(json!({"what": "VmRSS of a connected, idle `regente runtime --slots 1`"})),
        );

        let k = self.sizes.runtimes;
        note(&format!("memory: connecting {k} simulated runtimes"));
        let mut keys = Vec::with_capacity(k as usize);
        for i in 0..k {
            keys.push(
                api.create_runtime(&unique(&format!("bench-sim{i}")), 1)
                    .await?
                    .1,
            );
        }
        let before = procs::rss_bytes(server.pid)?;
        let agents = sim::connect(&server.base, keys);
        let started = Instant::now();
        while (agents.welcomed.load(std::sync::atomic::Ordering::Relaxed) as u64) < k {
            let failures = agents.failures.lock().unwrap().clone();
            if !failures.is_empty() {
                agents.stop().await;
                bail!(
                    "{} simulated agents failed; first: {}",
                    failures.len(),
                    failures[0]
                );
            }
            if started.elapsed() > self.sizes.deadline {
                agents.stop().await;
                bail!("not all {k} simulated agents were welcomed within the deadline");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let connect_time = started.elapsed();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let with_runtimes = procs::rss_bytes(server.pid)?;
        let failures = agents.failures.lock().unwrap().clone();
        agents.stop().await;
        if !failures.is_empty() {
            self.problem(format!(
                "{} simulated agents were dropped; first: {}",
                failures.len(),
                failures[0]
            ));
        }
        self.emit(
            Figure::new("memory.server_executions_runtimes", mb(with_runtimes), "MB")
                .target(Target::AtMost(64.0))
                .details(json!({
                    "executions": inserted.ok,
                    "connected_runtimes": k,
                    "connect_all_s": report::round(connect_time.as_secs_f64()),
                    "kb_per_runtime": report::round((with_runtimes as f64 - before as f64) / 1e3 / k.max(1) as f64),
                })),
        );

        server.check_alive()?;
        server.stop().await.context("stopping the server")?;
        note("memory: restarting the server on the same store");
        let restarted =
            procs::start_server(&self.bin, &data, self.postgres.as_deref(), &log).await?;
        let rss_after_restart = procs::rss_bytes(restarted.pid)?;
        self.emit(
            Figure::new("start", ms(restarted.to_healthy), "ms")
                .target(Target::AtMost(200.0))
                .details(json!({
                    "what": "spawn -> `regente listening` line -> first 200 from /healthz",
                    "executions_in_store": inserted.ok,
                    "to_listening_ms": report::round(ms(restarted.to_listening)),
                    "rss_after_start_mb": report::round(mb(rss_after_restart)),
                })),
        );
        restarted
            .stop()
            .await
            .context("stopping the restarted server")?;
        Ok(())
    }
}

/// Spawns a program and waits for it, n times in a row.
fn spawn_serially(program: &str, args: &[&str], n: u64) -> anyhow::Result<Duration> {
    let started = Instant::now();
    for _ in 0..n {
        let status = std::process::Command::new(program)
            .args(args)
            .status()
            .with_context(|| format!("spawning {program}"))?;
        anyhow::ensure!(status.success(), "{program} failed: {status}");
    }
    Ok(started.elapsed())
}

/// n writes of 100 bytes, each followed by fdatasync: appended (the file grows,
/// so the file system journals its size too), or written again at the start of a
/// file that does not grow (as a reused WAL is). Answers each one's nanoseconds, sorted.
fn fsync_writes(path: &Path, n: u64, append: bool) -> anyhow::Result<Vec<u64>> {
    use std::io::{Seek as _, SeekFrom};
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    let line = [b'x'; 100];
    if !append {
        file.write_all(&line)?;
        file.sync_all()?;
    }
    let mut samples = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let started = Instant::now();
        if !append {
            file.seek(SeekFrom::Start(0))?;
        }
        file.write_all(&line)?;
        file.sync_data()?;
        samples.push(started.elapsed().as_nanos() as u64);
    }
    drop(file);
    std::fs::remove_file(path)?;
    samples.sort_unstable();
    Ok(samples)
}

/// Runs a program and counts its stdout lines, read one by one through a pipe.
async fn read_lines_of(program: &str, args: &[String]) -> anyhow::Result<u64> {
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("spawning {program}"))?;
    let mut lines = tokio::io::BufReader::new(child.stdout.take().context("no stdout")?).lines();
    let mut count = 0;
    while lines.next_line().await?.is_some() {
        count += 1;
    }
    child.wait().await?;
    Ok(count)
}
