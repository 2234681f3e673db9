//! The schedules figure: how late a fire starts its robot.

use std::time::Duration;

use anyhow::Context as _;
use serde_json::json;

use crate::report::{self, Figure, Target};
use crate::setup::{caught, Served};
use crate::{merge, note, unique, Agents, Bench, Meter};

/// Fires not measured: the first downloads the package.
const WARM_UP_FIRES: usize = 2;

impl Bench {
    /// A schedule firing every second (`* * * * * *`) on an idle runtime, its
    /// robot printing its own start time: the robot's start minus the fire's
    /// scheduled time.
    pub(crate) fn schedule_lag(&mut self, served: &Served, agents: &Agents) -> anyhow::Result<()> {
        let n = self.sizes.schedule_fires as usize;
        note(&format!(
            "schedules: {n} fires of a per-second schedule of `date +%s%N`"
        ));
        let robot = served
            .upload_robot("name = \"bench-schedule-date\"\ncommand = [\"date\", \"+%s%N\"]\n")?;
        let runtime = agents.single.0.clone();
        let meter = Meter::start(served.pid(), &[agents.single.1.pid()]);
        let schedule = caught(|| {
            let body = json!({
                "name": unique("bench-every-second"),
                "robot_id": robot,
                "runtime_id": runtime,
                "cron": "* * * * * *",
                "overlap": "allow",
            });
            let created = served
                .server
                .req("POST", "/api/admin/schedules")
                .auth(&served.admin)
                .json(&body)
                .send()
                .expect(201)
                .json();
            Ok(created["id"].as_str().context("a schedule id")?.to_owned())
        })?;
        let query = format!("schedule={schedule}");
        let want = n + WARM_UP_FIRES;
        let ended = caught(|| {
            Ok(regente_testkit::wait_for_every(
                Duration::from_millis(200),
                self.sizes.deadline,
                &format!("{want} fires of the schedule to end"),
                || {
                    let runs = served
                        .server
                        .all_executions(&served.admin, &format!("&{query}"));
                    let ended: Vec<_> = runs
                        .into_iter()
                        .filter(|run| {
                            !matches!(run["status"].as_str(), Some("PENDENT" | "RUNNING"))
                        })
                        .collect();
                    if ended.len() >= want {
                        Ok(ended)
                    } else {
                        Err(ended.len())
                    }
                },
            ))
        })?;
        let cpu = meter.finish(want as u64);
        caught(|| {
            served
                .server
                .req("DELETE", &format!("/api/admin/schedules/{schedule}"))
                .auth(&served.admin)
                .send()
                .expect(204);
            Ok(())
        })?;
        let mut fires: Vec<(i64, String)> = ended
            .iter()
            .map(|run| {
                let at = run["scheduled_for"].as_i64().context("a scheduled time")?;
                let id = run["id"].as_str().context("an execution id")?.to_owned();
                Ok((at, id))
            })
            .collect::<anyhow::Result<_>>()?;
        fires.sort();
        let mut lags_ns: Vec<i128> = Vec::with_capacity(n);
        for (at, id) in fires.iter().skip(WARM_UP_FIRES).take(n) {
            let result = self.wait_result(served, &runtime, id, Duration::from_millis(5))?;
            anyhow::ensure!(
                result["status"] == "FINISHED",
                "a scheduled run ended {}: {result}",
                result["status"]
            );
            let printed = result["logs"][0]["message"]
                .as_str()
                .and_then(|m| m.trim().parse::<i128>().ok())
                .with_context(|| format!("the date robot printed no time: {result}"))?;
            lags_ns.push(printed - i128::from(*at) * 1_000_000);
        }
        lags_ns.sort_unstable();
        let q = |p: f64| {
            let rank = ((p * lags_ns.len() as f64).ceil() as usize).clamp(1, lags_ns.len());
            lags_ns[rank - 1] as f64 / 1e6
        };
        let rtt_ms = self.floors.rtt_us / 1000.0;
        let details = merge(
            json!({
                "fires": lags_ns.len(),
                "what": "robot's own start time (date +%s%N) - the fire's scheduled time; a per-second schedule on an idle 1-slot runtime",
                "min_ms": report::round(lags_ns[0] as f64 / 1e6),
                "p50_ms": report::round(q(0.5)),
                "max_ms": report::round(q(1.0)),
                "floor_is": "floor.http_rtt",
                "cpu_note": "per fire; includes this program's listing polls (every 200 ms)",
            }),
            cpu,
        );
        self.emit(
            Figure::new("schedule.lag_p99", q(0.99), "ms")
                .floor(rtt_ms)
                .target(Target::AtMost(50.0))
                .details(details),
        );
        Ok(())
    }
}
