//! 300 runs, two replicas, three runtimes, one replica killed with SIGKILL
//! midway: every acknowledged run finishes once, with its own lines and return
//! value, and the agents that were on the dead replica move to the other.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{Cluster, RUN};
use crate::support::*;

/// The server an agent's log says it last connected to, among `bases`.
fn connected_to(agent: &TestAgent, bases: &[&str]) -> Option<String> {
    agent
        .stderr()
        .lines()
        .rev()
        .filter(|line| line.contains("connected to the server"))
        .find_map(|line| {
            bases
                .iter()
                .find(|base| line.contains(&format!("server=\"{base}\"")))
        })
        .map(|base| base.to_string())
}

/// How many times an agent's log says it connected to `base`.
fn connections_to(agent: &TestAgent, base: &str) -> usize {
    agent
        .stderr()
        .lines()
        .filter(|line| {
            line.contains("connected to the server") && line.contains(&format!("server=\"{base}\""))
        })
        .count()
}

/// Appends its id to the ledger, prints five numbered lines around a short
/// sleep and returns its own id, so that a result mixed up with another
/// execution's shows.
const LEDGER_ROBOT: &str = r#"echo "$REGENTE_EXECUTION_ID" >> "$REGENTE_VAR_LEDGER"
echo "line 1"
echo "line 2"
echo "line 3"
sleep 0.2
echo "line 4"
echo "line 5"
echo "::return::{\"id\": \"$REGENTE_EXECUTION_ID\", \"lines\": 5}"
"#;
const LINES: u64 = 5;
const TOTAL_RUNS: usize = 300;
const KILL_AFTER: usize = 100;
const CLIENTS: usize = 4;
/// Posting stays at most this many runs ahead of the robots' starts, so that
/// the posting spans the runs and B dies while runs are posted to it and
/// robots run on the agents connected to it.
const AHEAD: usize = 30;

/// An acknowledged run: a 200 with its id.
#[derive(Clone, Debug)]
struct Acked {
    id: String,
    runtime: String,
    via: &'static str,
}

#[test]
#[cfg_attr(
    not(regente_pg),
    ignore = "SKIPPED: needs PostgreSQL (set REGENTE_TEST_PG_URL)"
)]
fn two_replicas_three_runtimes_300_runs_survive_a_replica_killed_midway() {
    // A run whose agent was on B when B died stays RUNNING until its agent
    // reconnects to A and resends its journal; a 10 s timeout bounds the test
    // should that not happen (the run would then end ERROR and fail it).
    let mut cluster = Cluster::start("10");
    // Clients of their own, so that the replicas stay free to be killed.
    let (a_api, b_api) = (Api::new(&cluster.a.base), Api::new(&cluster.b.base));
    let (a, b) = (cluster.a.base.clone(), cluster.b.base.clone());

    // Logged in on A, the token works on B: the secret is shared through the
    // database. Admin calls go through both replicas.
    let token = a_api.admin_token();
    let b_token = b_api.admin_token();
    assert_eq!(
        b_api.get("/api/admin/users", &token).status,
        200,
        "B accepts a token signed by A"
    );
    a_api.get("/api/admin/users", &b_token).expect(200);
    let runtimes: Vec<(String, String)> = (0..3)
        .map(|i| {
            let api = if i == 1 { &a_api } else { &b_api };
            api.create_runtime(&token, &format!("rt-replicas-{i}"))
        })
        .collect();
    let robot = upload_shell_robot(&b_api, &token, "ledger-robot", LEDGER_ROBOT, "");
    let out = scratch();
    let ledger_path = out.path().join("ledger");
    let vars = text_vars(&[("LEDGER", &path_text(&ledger_path))]);

    // Both addresses for every agent; two of them know B first, so they
    // start on B and must move to A when it dies.
    let orders = [[&b, &a], [&a, &b], [&b, &a]];
    let agents: Vec<TestAgent> = runtimes
        .iter()
        .zip(orders)
        .map(|((_, key), order)| TestAgent::start_on(&[order[0].clone(), order[1].clone()], key, 2))
        .collect();
    for (agent, order) in agents.iter().zip(orders) {
        agent.wait_welcomed(1, RUN);
        assert_eq!(
            connected_to(agent, &[&a, &b]).as_deref(),
            Some(order[0].as_str()),
            "an agent starts on the first server it is given:\n{}",
            tail(&agent.stderr(), 20)
        );
    }
    let on_b: Vec<usize> = vec![0, 2];
    let b_runtimes: Vec<String> = on_b.iter().map(|&i| runtimes[i].0.clone()).collect();

    // Post from a few client threads, round-robin over A and B and over the
    // three runtimes. Once KILL_AFTER runs are acknowledged, the main thread
    // kills B with SIGKILL while the clients keep posting. Like a client behind a load balancer, they learn
    // that B is gone only from a POST to B that fails; from then on they post
    // only to A. A failed POST is not acknowledged: it is sent again to A as a
    // new run (the failed one may still run if it reached the database before
    // B died).
    let next = AtomicUsize::new(0);
    let b_killing = AtomicBool::new(false);
    let b_dead = AtomicBool::new(false);
    let acked: Mutex<Vec<Acked>> = Mutex::new(Vec::new());
    let failed_on_b: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let mut kill_time = 0i64;
    let mut stranded: Vec<String> = Vec::new();
    std::thread::scope(|scope| {
        for _ in 0..CLIENTS {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= TOTAL_RUNS {
                    return;
                }
                let runtime = &runtimes[i % 3].0;
                wait_until(
                    Duration::from_secs(60),
                    "the robots to keep starting (posting stays a little ahead)",
                    || {
                        let posted = acked.lock().unwrap().len();
                        (posted < ledger(&ledger_path).len() + AHEAD).then_some(())
                    },
                );
                if i % 2 == 1 && !b_dead.load(Ordering::SeqCst) {
                    let request = b_api.run_request("v2", &token, runtime, &robot, Some(&vars));
                    match request.try_send() {
                        Ok(reply) if reply.status == 200 => {
                            let id = reply.json()["id"].as_str().expect("an id").to_owned();
                            acked.lock().unwrap().push(Acked {
                                id,
                                runtime: runtime.clone(),
                                via: "B",
                            });
                            continue;
                        }
                        Ok(reply) => failed_on_b.lock().unwrap().push(format!(
                            "{} {}",
                            reply.status,
                            reply.text()
                        )),
                        Err(e) => failed_on_b.lock().unwrap().push(e),
                    }
                    assert!(
                        b_killing.load(Ordering::SeqCst),
                        "a POST to B failed while B was alive: {:?}",
                        failed_on_b.lock().unwrap().last()
                    );
                    b_dead.store(true, Ordering::SeqCst);
                }
                let id = a_api.queue(&token, runtime, &robot, Some(&vars));
                acked.lock().unwrap().push(Acked {
                    id,
                    runtime: runtime.clone(),
                    via: "A",
                });
            });
        }

        wait_until(
            Duration::from_secs(60),
            &format!("{KILL_AFTER} acknowledged runs"),
            || (acked.lock().unwrap().len() >= KILL_AFTER).then_some(()),
        );
        b_killing.store(true, Ordering::SeqCst);
        cluster.b.kill9();
        kill_time = now_millis();
        // What B's agents were running when it died: still RUNNING in the
        // store, until the agents bring their journals over to A.
        stranded = a_api
            .all_executions(&token, "")
            .iter()
            .filter(|e| {
                e["status"] == "RUNNING" && b_runtimes.iter().any(|r| e["runtime_id"] == *r)
            })
            .map(|e| e["id"].as_str().unwrap().to_owned())
            .collect();
    });
    let acked = acked.into_inner().unwrap();
    let failed_on_b = failed_on_b.into_inner().unwrap();
    let posted_at = Instant::now();
    assert_eq!(acked.len(), TOTAL_RUNS, "every run was acknowledged once");
    let before_kill = acked
        .iter()
        .take(KILL_AFTER)
        .filter(|r| r.via == "B")
        .count();
    assert!(
        before_kill > KILL_AFTER / 4,
        "B took its share before it died: {before_kill} of the first {KILL_AFTER}"
    );
    assert!(
        !stranded.is_empty(),
        "robots were running on the agents connected to B when it died"
    );

    // Every acknowledged run ends, read through A.
    let acked_ids: HashSet<&str> = acked.iter().map(|r| r.id.as_str()).collect();
    let all = wait_for_every(
        Duration::from_millis(250),
        Duration::from_secs(120),
        "every acknowledged run to end",
        || {
            let all = a_api.all_executions(&token, "");
            let listed: HashSet<&str> = all.iter().filter_map(|e| e["id"].as_str()).collect();
            let missing: Vec<&&str> = acked_ids
                .iter()
                .filter(|id| !listed.contains(**id))
                .collect();
            assert!(
                missing.is_empty(),
                "acknowledged runs the store does not know: {missing:?}"
            );
            let open: Vec<String> = all
                .iter()
                .filter(|e| !ENDED.iter().any(|s| e["status"] == *s))
                .map(|e| format!("{} {} on {}", e["id"], e["status"], e["runtime_id"]))
                .collect();
            if open.is_empty() {
                Ok(all)
            } else {
                Err(format!(
                    "{} executions have not ended (e.g. {:?})",
                    open.len(),
                    &open[..open.len().min(10)]
                ))
            }
        },
    );
    let ended_after = posted_at.elapsed();
    let by_id: HashMap<&str, &Value> = all.iter().map(|e| (e["id"].as_str().unwrap(), e)).collect();

    // Each acknowledged run FINISHED, ran once, with all its lines once and in
    // order and its own return value.
    let starts = ledger(&ledger_path);
    let mut runs_of: HashMap<&str, usize> = HashMap::new();
    for id in &starts {
        *runs_of.entry(id.as_str()).or_default() += 1;
    }
    let mut not_finished: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for run in &acked {
        let status = by_id[run.id.as_str()]["status"]
            .as_str()
            .unwrap()
            .to_owned();
        if status != "FINISHED" {
            not_finished.entry(status).or_default().push(run.id.clone());
        }
    }
    assert!(
        not_finished.is_empty(),
        "acknowledged runs that did not finish: {not_finished:?}; e.g. {}",
        not_finished
            .values()
            .next()
            .map(|ids| {
                let run = acked.iter().find(|r| r.id == ids[0]).unwrap();
                summary(&result_of(&a_api, &token, &run.runtime, &run.id))
            })
            .unwrap_or_default()
    );
    for run in &acked {
        assert_eq!(
            runs_of.get(run.id.as_str()).copied().unwrap_or(0),
            1,
            "acknowledged run {} (posted to {}) started once",
            run.id,
            run.via
        );
        let body = result_of(&a_api, &token, &run.runtime, &run.id);
        assert_eq!(body["status"], "FINISHED", "{}", summary(&body));
        let context = format!("run {} (posted to {})", run.id, run.via);
        assert_one_to_n(&numbered_lines(&body), LINES, &context);
        assert_eq!(
            messages(&body).len() as u64,
            LINES,
            "{context}: nothing but the robot's lines: {}",
            summary(&body)
        );
        assert_eq!(
            body["returnValue"],
            json!({"id": run.id, "lines": LINES}),
            "{context}: its own return value"
        );
    }

    // Runs nobody acknowledged (a POST to B that reached the database before
    // B died) ran at most once, and only if the store knows them.
    let unacked: Vec<&Value> = all
        .iter()
        .filter(|e| !acked_ids.contains(e["id"].as_str().unwrap()))
        .collect();
    for (id, n) in &runs_of {
        if !acked_ids.contains(id) {
            assert_eq!(*n, 1, "unacknowledged run {id} started {n} times");
            assert!(
                by_id.contains_key(id),
                "the ledger holds {id}, which the store does not know"
            );
        }
    }
    for execution in &unacked {
        assert_eq!(
            execution["status"], "FINISHED",
            "a run committed by B but never acknowledged still runs, once: {execution}"
        );
    }

    // The agents that were on B moved to A, and got new work there: their
    // runtimes finished runs that started after B died.
    for &i in &on_b {
        let agent = &agents[i];
        assert_eq!(
            connected_to(agent, &[&a, &b]).as_deref(),
            Some(a.as_str()),
            "agent {i} moved to A:\n{}",
            tail(&agent.stderr(), 30)
        );
        assert!(connections_to(agent, &a) >= 1);
        let later = all
            .iter()
            .filter(|e| e["runtime_id"] == runtimes[i].0)
            .filter(|e| e["started"].as_i64().is_some_and(|t| t > kill_time))
            .count();
        assert!(
            later > 0,
            "runtime {i} ran robots after B died (its agent moved to A)"
        );
    }
    assert!(
        !failed_on_b.is_empty(),
        "the clients learned of B's death from a failed POST"
    );
    let carried_over = stranded
        .iter()
        .filter_map(|id| by_id[id.as_str()]["end"].as_i64())
        .map(|end| end - kill_time)
        .max()
        .unwrap_or(0);
    for e in stranded.iter().map(|id| by_id[id.as_str()]) {
        assert_eq!(
            e["status"], "FINISHED",
            "stranded on B, finished via A: {e}"
        );
    }
    let online = a_api.runtimes(&token);
    for (id, _) in &runtimes {
        assert!(
            online.iter().any(|r| r["id"] == *id && r["online"] == true),
            "runtime {id} is online through A: {online:?}"
        );
    }
    println!(
        "{} acknowledged ({} via B), {} POSTs to B failed ({:?}), {} unacknowledged runs in the store, {} stranded on B at the kill (the last ended {} ms after it); all ended {:.1} s after the last POST",
        acked.len(),
        acked.iter().filter(|r| r.via == "B").count(),
        failed_on_b.len(),
        failed_on_b.first(),
        unacked.len(),
        stranded.len(),
        carried_over,
        ended_after.as_secs_f64()
    );
}
