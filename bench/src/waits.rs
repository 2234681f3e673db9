//! The results-that-wait figures: how soon `?wait=` answers after a run ends,
//! and what a thousand parked waiters cost the server.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::json;

use crate::http::{self, result_url};
use crate::report::{self, Figure, Target};
use crate::setup::Served;
use crate::{mb, merge, note, now_ms, procs, unique, Agents, Bench, Meter};

/// The longest wait a request asks for (the API allows 60 s).
const WAIT_SECONDS: u32 = 60;

impl Bench {
    /// Runs of a short robot on the idle runtime, one at a time, each followed
    /// by one `GET .../result/...?wait=60`: the client's clock when the answer
    /// arrived minus the execution's recorded end.
    pub(crate) fn wait_answers(&mut self, served: &Served, agents: &Agents) -> anyhow::Result<()> {
        let n = self.sizes.wait_runs;
        note(&format!(
            "waits: {n} runs of `sleep 0.05`, each awaited with ?wait={WAIT_SECONDS}"
        ));
        let robot = served
            .upload_robot("name = \"bench-wait-sleep\"\ncommand = [\"sleep\", \"0.05\"]\n")?;
        let runtime = agents.single.0.clone();
        let client = {
            let _in_the_runtime = self.rt.enter();
            http::one_connection()
        };
        let run_url = http::run_url(&served.server.base, &runtime, &robot);
        let meter = Meter::start(served.pid(), &[agents.single.1.pid()]);
        let mut lags_ms = Vec::with_capacity(n as usize);
        // The first run downloads the package: not measured.
        for i in 0..=n {
            let id = self
                .rt
                .block_on(http::post_run(&client, &run_url, &served.token))?;
            let url = format!(
                "{}?wait={WAIT_SECONDS}",
                result_url(&served.server.base, &runtime, &id)
            );
            let answer = self
                .rt
                .block_on(http::get_json(&client, &url, &served.token))?;
            let arrived = now_ms();
            anyhow::ensure!(
                answer["status"] == "FINISHED",
                "a waited-for run answered {}: {answer}",
                answer["status"]
            );
            let ended = served.execution(&id)?["end"]
                .as_i64()
                .with_context(|| format!("execution {id} has no end time"))?;
            if i > 0 {
                lags_ms.push(arrived - ended);
            }
        }
        let cpu = meter.finish(n);
        lags_ms.sort_unstable();
        let q = |p: f64| {
            let rank = ((p * lags_ms.len() as f64).ceil() as usize).clamp(1, lags_ms.len());
            lags_ms[rank - 1] as f64
        };
        let details = merge(
            json!({
                "runs": n,
                "what": "the client's clock when the ?wait answer arrived - the execution's recorded end (ms clocks of one machine)",
                "min_ms": q(0.0),
                "p50_ms": q(0.5),
                "max_ms": q(1.0),
            }),
            cpu,
        );
        self.emit(
            Figure::new("wait.answer_p99", q(0.99), "ms")
                .target(Target::AtMost(50.0))
                .details(details),
        );
        Ok(())
    }

    /// A thousand clients, each on its own connection, waiting on one PENDENT
    /// run (its runtime has no agent): the server's resident memory with them
    /// parked, minus before. Then the run is canceled and every one of them must
    /// answer CANCELED, which shows they were all waiting.
    pub(crate) fn waiters_memory(&mut self, served: &Served) -> anyhow::Result<()> {
        let waiters = self.sizes.waiters;
        note(&format!(
            "waits: {waiters} clients parked on one PENDENT run with ?wait={WAIT_SECONDS}"
        ));
        let robot = served.upload_robot(&crate::true_robot("bench-wait-parked"))?;
        let (runtime, _key) = served.create_runtime(&unique("bench-no-agent"), 1)?;
        let id = served.run(&runtime, &robot)?;
        let url = format!(
            "{}?wait={WAIT_SECONDS}",
            result_url(&served.server.base, &runtime, &id)
        );
        let pid = served.pid();
        let sockets_before = procs::sockets(pid)?;
        let rss_before = procs::rss_bytes(pid)?;
        let parked = {
            let _in_the_runtime = self.rt.enter();
            (0..waiters)
                .map(|_| {
                    let (client, url, token) =
                        (http::one_connection(), url.clone(), served.token.clone());
                    tokio::spawn(async move { http::get_json(&client, &url, &token).await })
                })
                .collect::<Vec<_>>()
        };
        let deadline = self.sizes.deadline;
        let started = Instant::now();
        let mut rss_parked = rss_before;
        // Every waiter's connection open on the server's side; then the memory
        // is read a few times while they stay parked, and the highest kept.
        loop {
            let open = procs::sockets(pid)?.saturating_sub(sockets_before);
            rss_parked = rss_parked.max(procs::rss_bytes(pid)?);
            if open >= waiters as usize {
                break;
            }
            anyhow::ensure!(
                started.elapsed() < deadline,
                "only {open} of {waiters} waiters connected within {deadline:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        for _ in 0..10 {
            std::thread::sleep(Duration::from_millis(50));
            rss_parked = rss_parked.max(procs::rss_bytes(pid)?);
        }
        let result = served.execution(&id)?;
        anyhow::ensure!(
            result["status"] == "PENDENT",
            "the parked-on run is no longer PENDENT: {result}"
        );
        let canceled_at = Instant::now();
        caught_reply(served.server.delete(&served.token, &runtime, &id).status)?;
        let answers = self.rt.block_on(async {
            let mut answers = Vec::with_capacity(parked.len());
            for waiter in parked {
                answers.push(waiter.await.context("a waiter's task")??);
            }
            anyhow::Ok(answers)
        })?;
        let fan_out = canceled_at.elapsed();
        let not_canceled = answers
            .iter()
            .filter(|answer| answer["status"] != "CANCELED")
            .count();
        anyhow::ensure!(
            not_canceled == 0,
            "{not_canceled} of {waiters} waiters did not answer CANCELED after the cancel"
        );
        let added = rss_parked.saturating_sub(rss_before);
        self.emit(
            Figure::new("memory.waiters", mb(added), "MB")
                .target(Target::AtMost(20.0 * waiters as f64 / 1000.0))
                .details(json!({
                    "waiters": waiters,
                    "what": "server VmRSS with the waiters parked (highest of the readings) - before they connected",
                    "rss_before_mb": report::round(mb(rss_before)),
                    "rss_parked_mb": report::round(mb(rss_parked)),
                    "kb_per_waiter": report::round(added as f64 / 1e3 / waiters.max(1) as f64),
                    "all_answered_after_cancel_ms": report::round(crate::ms(fan_out)),
                })),
        );
        Ok(())
    }
}

/// The cancel's answer: the Integration API's delete answers 200.
fn caught_reply(status: u16) -> anyhow::Result<()> {
    anyhow::ensure!(
        status == 200,
        "canceling the parked-on run answered {status}"
    );
    Ok(())
}
