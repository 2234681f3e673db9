//! The memory figures, on a second server: idle, with many executions stored,
//! with many runtimes connected, an idle agent, and the start on a full store.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use regente_testkit::{ADMIN_PASSWORD, ADMIN_USER};
use serde_json::json;

use crate::http::{load, run_url, Until};
use crate::report::{self, Figure, Target};
use crate::setup::{caught, start_server, Served};
use crate::{
    body_with, load_details, mb, merge, ms, note, procs, sim, true_robot, unique, Bench, Meter,
};

impl Bench {
    pub(crate) fn memory(&mut self) -> anyhow::Result<()> {
        let (server, _) = start_server(self.server_options("server-b"))?;
        let at_start = procs::rss_bytes(server.pid())?;
        // Each login and user creation hashes with argon2id (19 MiB): watch what stays.
        caught(|| Ok(server.login(ADMIN_USER, ADMIN_PASSWORD)))?;
        let after_one_login = procs::rss_bytes(server.pid())?;
        let mut served = Served::sign_in(server)?;
        let after_logins = procs::rss_bytes(served.pid())?;
        let robot = served.upload_robot(&true_robot("bench-true"))?;
        let (queue, _) = served.create_runtime(&unique("bench-memory-queue"), 1)?;
        std::thread::sleep(Duration::from_millis(500));
        let idle = procs::rss_bytes(served.pid())?;
        self.emit(
            Figure::new("memory.server_idle", mb(idle), "MB").details(merge(
                json!({
                    "what": "VmRSS after start, 3 logins + 1 user created (argon2id each), 1 robot upload",
                    "at_start_mb": report::round(mb(at_start)),
                    "after_1_login_mb": report::round(mb(after_one_login)),
                    "after_3_logins_1_user_mb": report::round(mb(after_logins)),
                }),
                rss_parts(served.pid())?,
            )),
        );

        let n = self.sizes.executions;
        note(&format!(
            "memory: inserting {n} executions through the API at {} connections",
            self.sizes.connections
        ));
        let url = Arc::new(run_url(&served.server.base, &queue, &robot));
        let token = Arc::new(served.token.clone());
        let meter = Meter::start(served.pid(), &[]);
        let inserted = self.rt.block_on(load(
            self.sizes.connections,
            Until::Count(n, self.sizes.insert_budget),
            Arc::new(move |client: &reqwest::Client, i| {
                client
                    .post(url.as_str())
                    .header("authorization", token.as_str())
                    .header("content-type", "application/json")
                    .body(body_with(i))
            }),
        ));
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
        std::thread::sleep(Duration::from_secs(1));
        let with_executions = procs::rss_bytes(served.pid())?;
        self.emit(
            Figure::new("memory.server_executions", mb(with_executions), "MB")
                .target(Target::AtMost(64.0))
                .details(merge(
                    json!({"executions": inserted.ok}),
                    rss_parts(served.pid())?,
                )),
        );
        if let Err(e) = caught(|| self.console_pages(&served, &queue, inserted.ok)) {
            self.problem(format!("console: {e:#}"));
        }

        let (agent_runtime, key) = served.create_runtime(&unique("bench-memory-agent"), 1)?;
        let mut agent = served.start_agent(
            &self.bin,
            &key,
            &self.root.join("agent-memory"),
            1,
            &self.root.join("agent-memory.log"),
        )?;
        served.wait_online(&agent_runtime, self.sizes.deadline)?;
        std::thread::sleep(Duration::from_secs(1));
        let agent_rss = procs::rss_bytes(agent.pid())?;
        let agent_parts = rss_parts(agent.pid())?;
        caught(|| Ok(agent.stop()))?;
        self.emit(
            Figure::new("memory.agent_idle", mb(agent_rss), "MB")
                .target(Target::AtMost(16.0))
                .details(merge(
                    json!({"what": "VmRSS of a connected, idle `regente runtime --slots 1`"}),
                    agent_parts,
                )),
        );

        let k = self.sizes.runtimes;
        note(&format!("memory: connecting {k} simulated runtimes"));
        let mut keys = Vec::with_capacity(k as usize);
        for i in 0..k {
            keys.push(
                served
                    .create_runtime(&unique(&format!("bench-sim{i}")), 1)?
                    .1,
            );
        }
        let before = procs::rss_bytes(served.pid())?;
        let agents = {
            let _in_the_runtime = self.rt.enter();
            sim::connect(&served.server.base, keys)
        };
        let started = Instant::now();
        while (agents.welcomed.load(std::sync::atomic::Ordering::Relaxed) as u64) < k {
            let failures = agents.failures.lock().unwrap().clone();
            if !failures.is_empty() {
                self.rt.block_on(agents.stop());
                bail!(
                    "{} simulated agents failed; first: {}",
                    failures.len(),
                    failures[0]
                );
            }
            if started.elapsed() > self.sizes.deadline {
                self.rt.block_on(agents.stop());
                bail!("not all {k} simulated agents were welcomed within the deadline");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let connect_time = started.elapsed();
        std::thread::sleep(Duration::from_secs(2));
        let with_runtimes = procs::rss_bytes(served.pid())?;
        let with_runtimes_parts = rss_parts(served.pid())?;
        let failures = agents.failures.lock().unwrap().clone();
        self.rt.block_on(agents.stop());
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
                .details(merge(
                    json!({
                        "executions": inserted.ok,
                        "connected_runtimes": k,
                        "connect_all_s": report::round(connect_time.as_secs_f64()),
                        "kb_per_runtime": report::round((with_runtimes as f64 - before as f64) / 1e3 / k.max(1) as f64),
                    }),
                    with_runtimes_parts,
                )),
        );

        served.check_alive()?;
        served.stop().context("stopping the server")?;
        note("memory: restarting the server on the same store");
        let (mut restarted, to_healthy) = start_server(self.server_options("server-b"))?;
        let rss_after_restart = procs::rss_bytes(restarted.pid())?;
        self.emit(
            Figure::new("start", ms(to_healthy), "ms")
                .target(Target::AtMost(200.0))
                .details(json!({
                    "what": "spawn -> `regente listening` line -> first 200 from /healthz",
                    "executions_in_store": inserted.ok,
                    "to_listening_ms": report::round(ms(restarted.to_listening())),
                    "rss_after_start_mb": report::round(mb(rss_after_restart)),
                })),
        );
        caught(|| {
            restarted.stop();
            Ok(())
        })
        .context("stopping the restarted server")?;
        Ok(())
    }
}

/// A process's resident memory split as [`procs::rss_parts`] does: what it
/// allocated, and what it maps of its binary (which depends on the page cache).
fn rss_parts(pid: u32) -> anyhow::Result<serde_json::Value> {
    let (anonymous, file) = procs::rss_parts(pid)?;
    Ok(json!({
        "anonymous_mb": report::round(mb(anonymous)),
        "file_mb": report::round(mb(file)),
    }))
}
