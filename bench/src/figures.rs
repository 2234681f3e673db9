//! The figures measured on the first server: the floors, enqueue, dispatch,
//! end to end, result reads and log ingestion.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use serde_json::{json, Value};

use crate::http::{self, load, result_url, run_url, MakeRequest, Until};
use crate::report::{self, Figure, Target};
use crate::setup::{caught, Served};
use crate::wrk;
use crate::{
    body_with, fsync_writes, load_details, merge, note, now_ms, now_ns, read_lines_of,
    spawn_serially, true_robot, unique, Agents, Bench, Meter,
};

impl Bench {
    pub(crate) fn measure_floors(
        &mut self,
        served: &Served,
        data_dir: &Path,
    ) -> anyhow::Result<()> {
        let n = self.sizes.floor_samples;
        note("floors: spawning /bin/true, fsync'd appends, loopback HTTP");
        let spawn = spawn_serially("/bin/true", &[], n)?;
        self.floors.spawn_us = spawn.as_secs_f64() * 1e6 / n as f64;
        self.emit(
            Figure::new("floor.spawn_true", self.floors.spawn_us, "µs").details(json!({
                "spawns": n,
                "per_s": report::round(1e6 / self.floors.spawn_us),
            })),
        );

        let path = data_dir.join("fsync-floor.bin");
        let samples = fsync_writes(&path, n, true)?;
        let path = data_dir.join("fsync-floor.bin");
        let rewrites = fsync_writes(&path, n, false)?;
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

        let url = format!("{}/healthz", served.server.base);
        let mut rtts = self.rt.block_on(async {
            let client = http::one_connection();
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
            anyhow::Ok(rtts)
        })?;
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
        let meter = Meter::start(served.pid(), &[]);
        let healthz = wrk::get(&url, &[], self.sizes.connections, seconds)?;
        self.check_load("floor.http_64", &healthz);
        self.floors.http_rate = healthz.rate();
        self.floors.http_p99_ms = healthz.quantile_ms(0.99);
        let details = merge(
            json!({"what": format!("GET /healthz at {} connections, driven by wrk: the HTTP stack, no store", self.sizes.connections)}),
            merge(load_details(&healthz), meter.finish(healthz.ok)),
        );
        self.emit(Figure::new("floor.http_64", healthz.rate(), "req/s").details(details));
        Ok(())
    }

    pub(crate) fn enqueue(&mut self, served: &Served) -> anyhow::Result<()> {
        let connections = self.sizes.connections;
        note(&format!(
            "enqueue: {connections} connections for {:?}, no agent connected",
            self.sizes.seconds
        ));
        let robot = served.upload_robot(&true_robot("bench-true"))?;
        let (runtime, _key) = served.create_runtime(&unique("bench-queue"), 1)?;
        let url = Arc::new(run_url(&served.server.base, &runtime, &robot));
        let token = Arc::new(served.token.clone());
        let make: MakeRequest = Arc::new(move |client: &reqwest::Client, i| {
            client
                .post(url.as_str())
                .header("authorization", token.as_str())
                .header("content-type", "application/json")
                .body(body_with(i))
        });
        let meter = Meter::start(served.pid(), &[]);
        let burst = self.rt.block_on(load(
            connections,
            Until::Elapsed(self.sizes.seconds),
            make.clone(),
        ));
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
        let meter = Meter::start(served.pid(), &[]);
        let serial = self
            .rt
            .block_on(load(1, Until::Count(n, self.sizes.deadline), make));
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

    pub(crate) fn dispatch(&mut self, served: &Served, agents: &Agents) -> anyhow::Result<()> {
        let n = self.sizes.dispatch_runs;
        note(&format!(
            "dispatch: {n} serial runs of `date +%s%N` on an idle runtime"
        ));
        let robot =
            served.upload_robot("name = \"bench-date\"\ncommand = [\"date\", \"+%s%N\"]\n")?;
        let runtime = agents.single.0.clone();
        let agent_pid = agents.single.1.pid();
        // Warm-up: the package download and the first spawn are not measured.
        for _ in 0..3 {
            let id = served.run(&runtime, &robot)?;
            self.wait_result(served, &runtime, &id, Duration::from_millis(5))?;
        }
        let mut latencies_ns: Vec<i128> = Vec::with_capacity(n as usize);
        let mut submits_us = Vec::with_capacity(n as usize);
        // The runs go out as the loads send theirs (the async client on one
        // connection): the time the 200 arrived is taken where it arrived.
        let client = {
            let _in_the_runtime = self.rt.enter();
            http::one_connection()
        };
        let url = run_url(&served.server.base, &runtime, &robot);
        let meter = Meter::start(served.pid(), &[agent_pid]);
        for _ in 0..n {
            let sent = Instant::now();
            let id = self
                .rt
                .block_on(http::post_run(&client, &url, &served.token))?;
            let answered = now_ns();
            submits_us.push(sent.elapsed().as_micros() as u64);
            // Let the robot start before polling, so the polls do not compete with it.
            std::thread::sleep(Duration::from_millis(3));
            let result = self.wait_result(served, &runtime, &id, Duration::from_millis(2))?;
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
        }
        let cpu = meter.finish(n);
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

    pub(crate) fn end_to_end(&mut self, served: &Served, agents: &Agents) -> anyhow::Result<()> {
        let robot = served.upload_robot(&true_robot("bench-noop"))?;
        let runtimes: Vec<String> = agents.pool.iter().map(|(id, _)| id.clone()).collect();
        let agent_pids: Vec<u32> = agents.pool.iter().map(|(_, agent)| agent.pid()).collect();
        // Warm-up: each agent downloads the package once.
        for runtime in &runtimes {
            let id = served.run(runtime, &robot)?;
            self.wait_result(served, runtime, &id, Duration::from_millis(5))?;
        }
        let n = self.sizes.e2e_runs;
        let (rate, bare_rate, details) =
            self.runs_of_true(served, &runtimes, &agent_pids, &robot, n)?;
        self.emit(
            Figure::new("e2e.completed", rate, "runs/s")
                .floor(bare_rate)
                .target(Target::RatioAtLeast(0.5))
                .details(details),
        );
        // A burst on one runtime of 2 slots: the per-run overhead of one agent.
        let n = self.sizes.burst_runs;
        let (rate, bare_rate, details) =
            self.runs_of_true(served, &runtimes[..1], &agent_pids[..1], &robot, n)?;
        self.emit(
            Figure::new("e2e.burst_1x2", rate, "runs/s")
                .floor(bare_rate)
                .target(Target::AtLeast(1000.0))
                .details(details),
        );
        Ok(())
    }

    /// Submits `n` runs of the `true` robot over `runtimes` at the load's
    /// connections and waits for them all: the rate, the bare spawn rate of `n`
    /// `true`s from this program, and the details.
    fn runs_of_true(
        &mut self,
        served: &Served,
        runtimes: &[String],
        agent_pids: &[u32],
        robot: &str,
        n: u64,
    ) -> anyhow::Result<(f64, f64, Value)> {
        note(&format!(
            "end to end: spawning `true` {n} times from this program"
        ));
        let bare = spawn_serially("true", &[], n)?;
        let bare_rate = n as f64 / bare.as_secs_f64();
        note(&format!(
            "end to end: {n} runs of `true` over {} runtimes x 2 slots, submitted at {} connections",
            runtimes.len(),
            self.sizes.connections
        ));
        let urls: Arc<Vec<String>> = Arc::new(
            runtimes
                .iter()
                .map(|rt| run_url(&served.server.base, rt, robot))
                .collect(),
        );
        let token = Arc::new(served.token.clone());
        let meter = Meter::start(served.pid(), agent_pids);
        let first_post_ms = now_ms();
        let started = Instant::now();
        let submitted = self.rt.block_on(load(
            self.sizes.connections,
            Until::Count(n, self.sizes.deadline),
            Arc::new(move |client: &reqwest::Client, i| {
                client
                    .post(urls[(i % urls.len() as u64) as usize].as_str())
                    .header("authorization", token.as_str())
                    .header("content-type", "application/json")
                    .body(body_with(i))
            }),
        ));
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
                let page = served.executions(&format!("robot={robot}&status={status}&limit=1"))?;
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
            std::thread::sleep(Duration::from_millis(20));
        }
        let elapsed = started.elapsed();
        let cpu = meter.finish(n);
        let all = served.all_executions(&format!("robot={robot}"))?;
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
        for runtime in runtimes {
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
        Ok((rate, bare_rate, details))
    }

    pub(crate) fn result_reads(&mut self, served: &Served, agents: &Agents) -> anyhow::Result<()> {
        // A result as integrations read it: three log lines and a return value.
        let robot = served.upload_robot(
            r#"name = "bench-three-lines"
command = ["printf", "one\ntwo\nthree\n::return::{\"done\": true}\n"]
"#,
        )?;
        let runtime = agents.single.0.clone();
        let id = served.run(&runtime, &robot)?;
        let result = self.wait_result(served, &runtime, &id, Duration::from_millis(5))?;
        anyhow::ensure!(
            result["status"] == "FINISHED"
                && result["logs"].as_array().map(Vec::len) == Some(3)
                && result["returnValue"]["done"] == true,
            "the three-line robot ended as {result}"
        );
        // Ended, its answer is kept rendered after the first read.
        let reads = self.read_load(
            served,
            &runtime,
            &id,
            "a FINISHED execution with three log lines (its answer kept after the first read)",
        )?;
        self.emit(
            Figure::new("results.reads", reads.0, "req/s")
                .floor(self.floors.http_rate)
                .target(Target::AtLeast(80_000.0))
                .details(reads.2),
        );
        self.emit(
            Figure::new("results.p99", reads.1, "ms")
                .floor(self.floors.http_p99_ms)
                .details(json!({"floor_is": "p99 of floor.http_64"})),
        );

        // Running, each read goes to the store.
        let robot = served.upload_robot(
            r#"name = "bench-three-lines-running"
command = ["sh", "-c", "printf 'one\ntwo\nthree\n'; exec sleep 600"]
"#,
        )?;
        let id = served.run(&runtime, &robot)?;
        served.wait_result_where(
            &runtime,
            &id,
            Duration::from_millis(5),
            self.sizes.deadline,
            "to run with three log lines",
            |result| {
                result["status"] == "RUNNING" && result["logs"].as_array().map(Vec::len) == Some(3)
            },
        )?;
        let running = self.read_load(
            served,
            &runtime,
            &id,
            "a RUNNING execution with three log lines",
        )?;
        served.cancel(&runtime, &id)?;
        let canceled = self.wait_result(served, &runtime, &id, Duration::from_millis(5))?;
        anyhow::ensure!(
            canceled["status"] == "CANCELED",
            "the running robot ended as {canceled} after its cancel"
        );
        self.emit(
            Figure::new("results.reads_running", running.0, "req/s")
                .floor(self.floors.http_rate)
                .details(running.2),
        );
        Ok(())
    }

    /// `GET` of one execution's result at the load's connections, driven by
    /// wrk: its rate, its p99 in ms, and the details of the figure.
    fn read_load(
        &mut self,
        served: &Served,
        runtime: &str,
        id: &str,
        what: &str,
    ) -> anyhow::Result<(f64, f64, Value)> {
        let connections = self.sizes.connections;
        note(&format!(
            "result reads ({what}): {connections} connections for {:?}",
            self.sizes.seconds
        ));
        let url = result_url(&served.server.base, runtime, id);
        let meter = Meter::start(served.pid(), &[]);
        let reads = wrk::get(
            &url,
            &[("authorization", &served.token)],
            connections,
            self.sizes.seconds,
        )?;
        let cpu = meter.finish(reads.ok);
        self.check_load("result reads", &reads);
        let details = merge(
            json!({
                "connections": connections,
                "what": format!("{what}, driven by wrk"),
                "floor_is": "floor.http_64: GET /healthz at the same connections, driven by wrk",
            }),
            merge(load_details(&reads), cpu),
        );
        Ok((reads.rate(), reads.quantile_ms(0.99), details))
    }

    pub(crate) fn logs(&mut self, served: &Served, agents: &Agents) -> anyhow::Result<()> {
        let n = self.sizes.log_lines;
        note(&format!(
            "log ingestion: one robot printing {n} lines (`seq 1 {n}`)"
        ));
        let floor_started = Instant::now();
        let read = self
            .rt
            .block_on(read_lines_of("seq", &["1".to_owned(), n.to_string()]))?;
        anyhow::ensure!(read == n, "seq printed {read} lines, not {n}");
        let floor = n as f64 / floor_started.elapsed().as_secs_f64();
        let robot = served.upload_robot(&format!(
            "name = \"bench-seq\"\ncommand = [\"seq\", \"1\", \"{n}\"]\n"
        ))?;
        let runtime = agents.single.0.clone();
        let agent_pid = agents.single.1.pid();
        let meter = Meter::start(served.pid(), &[agent_pid]);
        let id = served.run(&runtime, &robot)?;
        let answered = Instant::now();
        let status = loop {
            let execution = served.execution(&id)?;
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
            std::thread::sleep(Duration::from_millis(10));
        };
        let elapsed = answered.elapsed();
        let cpu = meter.finish(n);
        anyhow::ensure!(status == "FINISHED", "the seq robot ended {status}");
        let fetch_started = Instant::now();
        let reply = caught(|| Ok(served.server.result(&served.token, &runtime, &id)))?;
        anyhow::ensure!(reply.status == 200, "the result answered {}", reply.status);
        let bytes = reply.body;
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
}
