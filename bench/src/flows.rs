//! The flow figure: a flow of 40 sequential light steps (each `true`), from the
//! run request to the flow's end. Each hop is a step's end stored, the engine
//! woken, the next step queued in one transaction, claimed and started.

use std::time::Duration;

use anyhow::Context as _;
use serde_json::json;

use crate::report::{self, Figure, Target};
use crate::setup::{caught, Served};
use crate::{note, now_ms, true_robot, unique, Agents, Bench};
use regente_testkit::wait_for_every;

/// Steps of the flow.
const STEPS: usize = 40;

impl Bench {
    pub(crate) fn flow_chain(&mut self, served: &Served, agents: &Agents) -> anyhow::Result<()> {
        let runs = if self.sizes.smoke { 2 } else { 10 };
        note(&format!(
            "flows: {runs} runs of a flow of {STEPS} sequential `true` steps on an idle runtime"
        ));
        let robot = served.upload_robot(&true_robot(&unique("bench-flow-step")))?;
        let runtime = agents.single.0.clone();
        let steps: Vec<_> = (0..STEPS)
            .map(|n| json!({"id": format!("s{n}"), "robot_id": robot, "runtime_id": runtime}))
            .collect();
        let definition = json!({"name": unique("bench-chain"), "steps": steps});
        let flow = caught(|| {
            let reply = served
                .server
                .req("POST", "/api/admin/flows")
                .auth(&served.admin)
                .json(&definition)
                .send()
                .expect(201);
            Ok(reply.json()["id"].as_str().context("a flow id")?.to_owned())
        })?;
        let mut totals_ms = Vec::new();
        // The first run is a warm-up: the package download and the first spawn.
        for n in 0..=runs {
            let sent = now_ms();
            let run = caught(|| {
                let path = format!("/api/integration/v2/flows/{flow}/run");
                let reply = served.server.req("POST", &path).auth(&served.token).send();
                Ok(reply.expect(200).json()["id"]
                    .as_str()
                    .context("a run id")?
                    .to_owned())
            })?;
            let done = caught(|| {
                let path = format!("/api/integration/v2/flows/runs/{run}");
                Ok(wait_for_every(
                    Duration::from_millis(20),
                    self.sizes.deadline,
                    &format!("flow run {run} to end"),
                    || {
                        let body = served.server.get(&path, &served.token).expect(200).json();
                        if body["status"] == "RUNNING" {
                            Err(body["status"].clone())
                        } else {
                            Ok(body)
                        }
                    },
                ))
            })?;
            anyhow::ensure!(done["status"] == "FINISHED", "the flow ended {done}");
            let end = done["end"].as_i64().context("an end time")?;
            if n > 0 {
                totals_ms.push((end - sent) as f64);
            }
        }
        totals_ms.sort_by(f64::total_cmp);
        let median = totals_ms[totals_ms.len() / 2];
        self.emit(
            Figure::new("flows.chain40", median, "ms")
                .target(Target::AtMost(400.0))
                .details(json!({
                    "runs": runs,
                    "steps": STEPS,
                    "what": "the run request sent -> the run's recorded end, 40 sequential `true` steps",
                    "min_ms": totals_ms[0],
                    "max_ms": totals_ms[totals_ms.len() - 1],
                    "per_step_ms": report::round(median / STEPS as f64),
                    "published": "Windmill 2.09 s, Hatchet 1.22 s, Temporal 2.97 s for 40 light tasks",
                })),
        );
        Ok(())
    }
}
