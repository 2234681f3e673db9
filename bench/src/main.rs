//! `regente-bench`: starts the real `regente` server and runtime agents on
//! 127.0.0.1, drives them over HTTP, and prints one JSON line per figure (as soon
//! as it is measured) and then a Markdown table. Every figure is set against a
//! floor measured in the same run, so a noisy machine shows in both. See
//! bench/README.md for what each figure means.
//!
//! It exits non-zero when something is broken (an error answer, a run that does
//! not finish within the deadline, log lines missing), never because a figure is
//! slow.

mod console;
mod figures;
mod flows;
mod http;
mod memory;
mod procs;
mod report;
mod schedules;
mod setup;
mod sim;
mod waits;
mod wrk;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use clap::Parser;
use regente_testkit::{ServerOptions, TestAgent};
use serde_json::{json, Value};
use tokio::io::AsyncBufReadExt;

use http::Load;
use procs::Cpu;
use report::Figure;
use setup::{caught, Served};

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
    /// Runs of the burst on one runtime of 2 slots [default: 1000; smoke 50].
    #[arg(long)]
    burst_runs: Option<u64>,
    /// Fires measured by the schedule lag figure, one a second [default: 60; smoke 3].
    #[arg(long)]
    schedule_fires: Option<u64>,
    /// Runs awaited with `?wait=` by the wait figure [default: 100; smoke 5].
    #[arg(long)]
    wait_runs: Option<u64>,
    /// Clients parked at once on one run by the waiters' memory figure [default: 1000; smoke 50].
    #[arg(long)]
    waiters: Option<u64>,
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
    /// Run only these figure groups (floors always run): enqueue, dispatch, e2e, results, logs, flows,
    /// schedules, waits, memory.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Where to create the temporary data and work directories [default: the system's temp dir].
    #[arg(long, value_name = "DIR")]
    work_dir: Option<PathBuf>,
    /// Keep the temporary directories (server and agent logs) after the run.
    #[arg(long)]
    keep: bool,
}

/// The groups measured with real agents connected to the first server.
const AGENT_GROUPS: [&str; 7] = [
    "dispatch",
    "e2e",
    "results",
    "logs",
    "flows",
    "schedules",
    "waits",
];

/// Every figure group, in the order they run.
fn groups() -> Vec<&'static str> {
    let mut groups = vec!["enqueue"];
    groups.extend(AGENT_GROUPS);
    groups.push("memory");
    groups
}

struct Sizes {
    smoke: bool,
    connections: usize,
    seconds: Duration,
    serial_requests: u64,
    floor_samples: u64,
    dispatch_runs: u64,
    e2e_runs: u64,
    burst_runs: u64,
    schedule_fires: u64,
    wait_runs: u64,
    waiters: u64,
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
            burst_runs: pick(cli.burst_runs, 1_000, 50).max(1),
            schedule_fires: pick(cli.schedule_fires, 60, 3).max(1),
            wait_runs: pick(cli.wait_runs, 100, 5).max(1),
            waiters: pick(cli.waiters, 1_000, 50).max(1),
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
    /// Runs the load generator and the simulated agents; the rest of the
    /// benchmark is blocking code on the main thread.
    rt: tokio::runtime::Runtime,
}

/// Real agents connected to the first server.
struct Agents {
    /// (runtime id, agent) with one slot: dispatch and logs.
    single: (String, TestAgent),
    /// Four runtimes with two slots each: end to end.
    pool: Vec<(String, TestAgent)>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(unknown) = cli.only.iter().find(|g| !groups().contains(&g.as_str())) {
        eprintln!(
            "error: unknown figure group {unknown:?} in --only: use {}",
            groups().join(", ")
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
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
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
        rt,
    };
    let started = Instant::now();
    note(&machine_load());
    note(&format!(
        "regente-bench{}: {} in {}",
        if bench.sizes.smoke { " --smoke" } else { "" },
        bench.bin.display(),
        bench.root.display()
    ));
    if let Err(e) = caught(|| bench.run()) {
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
    let in_the_checkout = PathBuf::from("target/release/regente");
    if in_the_checkout.is_file() {
        return Ok(in_the_checkout);
    }
    caught(|| Ok(regente_testkit::regente_binary()))
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
    agents: Vec<procs::Family>,
    me: Cpu,
}

impl Meter {
    fn start(server_pid: u32, agent_pids: &[u32]) -> Meter {
        Meter {
            started: Instant::now(),
            server_pid,
            server: procs::cpu(server_pid),
            agent_pids: agent_pids.to_vec(),
            agents: agent_pids.iter().map(|&pid| procs::family(pid)).collect(),
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
            for (&pid, before) in self.agent_pids.iter().zip(&self.agents) {
                let used = procs::family(pid).since(before);
                own += used.own;
                children += used.children;
            }
            let agents = own + children;
            let per_unit = |cpu: f64| json!(report::round(cpu * 1e6 / units.max(1) as f64));
            details["agents_cpu_s_with_robots"] = json!(report::round(agents));
            details["agents_cpu_us_per_unit"] = per_unit(agents);
            // Children: the guard processes (living or ended) and the robots under them.
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

    /// How a server of the benchmark starts: data directory and log under the
    /// temporary root, SQLite unless `--postgres`, the signing secret kept in
    /// the data directory as a deployment's is.
    fn server_options(&self, name: &str) -> ServerOptions {
        let options = ServerOptions::new()
            .name(name)
            .binary(&self.bin)
            .data_dir(&self.root.join(name))
            .log_file(&self.root.join(format!("{name}.log")))
            .env("REGENTE_JWT_SECRET", "");
        match &self.postgres {
            Some(url) => options.database_url(url),
            None => options.sqlite(),
        }
    }

    fn run(&mut self) -> anyhow::Result<()> {
        let mut served = Served::start(self.server_options("server-a"))?;
        note(&format!(
            "server at {} (pid {})",
            served.server.base,
            served.pid()
        ));
        self.measure_floors(&served, &self.root.join("server-a"))?;
        let outcome = caught(|| self.first_server(&mut served));
        if let Err(e) = outcome {
            self.problem(format!("{e:#}"));
        }
        served.check_alive()?;
        served.stop().context("stopping the first server")?;
        if self.wants("memory") {
            if let Err(e) = caught(|| self.memory()) {
                self.problem(format!("memory: {e:#}"));
            }
        }
        Ok(())
    }

    fn first_server(&mut self, served: &mut Served) -> anyhow::Result<()> {
        if self.wants("enqueue") {
            if let Err(e) = caught(|| self.enqueue(served)) {
                self.problem(format!("enqueue: {e:#}"));
            }
            served.check_alive()?;
        }
        if !AGENT_GROUPS.iter().any(|g| self.wants(g)) {
            return Ok(());
        }
        let mut agents = self.start_agents(served)?;
        for group in AGENT_GROUPS {
            if !self.wants(group) {
                continue;
            }
            let outcome = caught(|| match group {
                "dispatch" => self.dispatch(served, &agents),
                "e2e" => self.end_to_end(served, &agents),
                "results" => self.result_reads(served, &agents),
                "flows" => self.flow_chain(served, &agents),
                "schedules" => self.schedule_lag(served, &agents),
                "waits" => self
                    .wait_answers(served, &agents)
                    .and_then(|()| self.waiters_memory(served)),
                _ => self.logs(served, &agents),
            });
            if let Err(e) = outcome {
                self.problem(format!("{group}: {e:#}"));
            }
            served.check_alive()?;
        }
        caught(|| {
            agents.single.1.stop();
            for (_, agent) in &mut agents.pool {
                agent.stop();
            }
            Ok(())
        })
    }

    fn start_agents(&mut self, served: &Served) -> anyhow::Result<Agents> {
        note("starting 5 runtime agents (1 with 1 slot, 4 with 2 slots)");
        let start = |name: &str, slots: u32, key: &str| {
            served.start_agent(
                &self.bin,
                key,
                &self.root.join(name),
                slots,
                &self.root.join(format!("{name}.log")),
            )
        };
        let (single_id, key) = served.create_runtime(&unique("bench-single"), 1)?;
        let single = (single_id, start("agent-single", 1, &key)?);
        let mut pool = Vec::new();
        for i in 0..4 {
            let (id, key) = served.create_runtime(&unique(&format!("bench-pool{i}")), 2)?;
            pool.push((id, start(&format!("agent-pool{i}"), 2, &key)?));
        }
        for id in std::iter::once(&single.0).chain(pool.iter().map(|(id, _)| id)) {
            served.wait_online(id, self.sizes.deadline)?;
        }
        Ok(Agents { single, pool })
    }

    /// Waits until an execution has ended, polling every `every`; answers its result.
    fn wait_result(
        &self,
        served: &Served,
        runtime: &str,
        id: &str,
        every: Duration,
    ) -> anyhow::Result<Value> {
        served.wait_result(runtime, id, every, self.sizes.deadline)
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
