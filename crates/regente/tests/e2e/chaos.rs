//! The kill-9 loop: the server is killed with SIGKILL again and again while
//! clients submit runs and runtimes run them. Every run a client saw
//! acknowledged ends, once; no run starts twice; no log line is lost; and no
//! run exists that no client asked for.
//!
//! Sizes: 2,000 runs, a kill every 100 robot starts (CI, on each store
//! backend); `REGENTE_LONG=1` selects 10,000 runs. `REGENTE_CHAOS_RUNS` and
//! `REGENTE_CHAOS_KILL_EVERY` set them directly.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::support::*;

const CLIENTS: usize = 4;
/// Runs posted ahead of the robots' starts, so that posting and running overlap.
const AHEAD: usize = 60;
const LINES: u64 = 3;

/// Appends its id to the ledger, prints three numbered lines, returns.
const ROBOT: &str = r#"echo "$REGENTE_EXECUTION_ID" >> "$REGENTE_VAR_LEDGER"
echo "line 1"
echo "line 2"
echo "line 3"
echo "::return::ok"
"#;

fn setting(name: &str, ci: usize, long: usize) -> usize {
    if let Some(value) = std::env::var(name).ok().and_then(|v| v.parse().ok()) {
        return value;
    }
    if std::env::var("REGENTE_LONG").is_ok_and(|v| v == "1") {
        long
    } else {
        ci
    }
}

#[test]
fn every_acknowledged_run_ends_once_while_the_server_is_killed_again_and_again() {
    let runs = setting("REGENTE_CHAOS_RUNS", 2_000, 10_000);
    let kill_every = setting("REGENTE_CHAOS_KILL_EVERY", 100, 100).max(1);
    let mut server = TestServer::start();
    let relay = Relay::start(&server.base);
    let api = Api::new(&relay.url());
    let token = server.admin_token();
    let runtimes: Vec<(String, String)> = (0..2)
        .map(|i| server.create_runtime_with_slots(&token, &format!("rt-chaos-{i}"), 2))
        .collect();
    let robot = upload_shell_robot(&server, &token, "chaos", ROBOT, "");
    let agents: Vec<TestAgent> = runtimes
        .iter()
        .map(|(_, key)| TestAgent::start_on(&[relay.url()], key, 2))
        .collect();
    let out = scratch();
    let ledger_path = out.path().join("ledger");
    let vars = text_vars(&[("LEDGER", &path_text(&ledger_path))]);

    let next = AtomicUsize::new(0);
    let acknowledged: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());
    let mut kills = 0;
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..CLIENTS {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= runs {
                    return;
                }
                wait_until(
                    Duration::from_secs(120),
                    "the robots to keep starting (posting stays a little ahead)",
                    || {
                        let posted = acknowledged.lock().unwrap().len();
                        (posted < ledger(&ledger_path).len() + AHEAD).then_some(())
                    },
                );
                let runtime = &runtimes[i % runtimes.len()].0;
                // The same key on every try: a run committed before its answer
                // was lost to a kill comes back instead of being made again.
                let key = format!("chaos-{i}");
                let id = wait_for_every(
                    Duration::from_millis(20),
                    Duration::from_secs(120),
                    &format!("run {i} to be acknowledged"),
                    || {
                        let reply = api
                            .run_request("v2", &token, runtime, &robot, Some(&vars))
                            .header("idempotency-key", key.as_bytes())
                            .try_send()?;
                        match reply.status {
                            200 => Ok(reply.json()["id"].as_str().expect("an id").to_owned()),
                            // The server is going down or coming up.
                            503 => Err(format!("503 {}", reply.text())),
                            other => panic!("run {i}: {other} {}", reply.text()),
                        }
                    },
                );
                acknowledged.lock().unwrap().push((id, runtime.clone()));
            });
        }
        // Killed every `kill_every` robot starts, until every run was posted.
        let mut last_kill_at = 0;
        while next.load(Ordering::SeqCst) < runs || acknowledged.lock().unwrap().len() < runs {
            let target = last_kill_at + kill_every;
            let reached = poll(Duration::from_secs(120), POLL, || {
                let starts = ledger(&ledger_path).len();
                (starts >= target || acknowledged.lock().unwrap().len() >= runs).then_some(starts)
            })
            .unwrap_or_else(|| {
                panic!(
                    "no progress: {} starts, {} acknowledged of {runs}",
                    ledger(&ledger_path).len(),
                    acknowledged.lock().unwrap().len()
                )
            });
            if acknowledged.lock().unwrap().len() >= runs {
                break;
            }
            server.kill9();
            server.start_again();
            relay.point_to(&server.base);
            kills += 1;
            last_kill_at = reached;
        }
    });
    let posted = acknowledged.into_inner().unwrap();

    let ids: HashSet<&str> = posted.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids.len(), runs, "each key answered one run");
    let all = wait_for(Duration::from_secs(300), "every run to end", || {
        let all = api.all_executions(&token, &format!("&robot={robot}"));
        let open = all
            .iter()
            .filter(|e| !ENDED.iter().any(|s| e["status"] == *s))
            .count();
        if open == 0 && all.len() >= runs {
            Ok(all)
        } else {
            Err(format!("{open} of {} not ended", all.len()))
        }
    });
    assert_eq!(
        all.len(),
        runs,
        "no run exists that no client asked for (retries carried their key)"
    );
    let starts = ledger(&ledger_path);
    let mut started_count: HashMap<&str, usize> = HashMap::new();
    for line in &starts {
        *started_count.entry(line.as_str()).or_default() += 1;
    }
    for (id, runtime) in &posted {
        let body = result_of(&api, &token, runtime, id);
        assert_eq!(body["status"], "FINISHED", "{id}: {}", summary(&body));
        assert_eq!(
            started_count.get(id.as_str()).copied().unwrap_or(0),
            1,
            "{id} started once"
        );
        assert_one_to_n(&numbered_lines(&body), LINES, id);
        assert_eq!(body["returnValue"], "ok", "{id}");
    }
    assert_eq!(starts.len(), runs, "only acknowledged runs started");
    assert!(
        kills >= runs / kill_every / 2,
        "the server was killed {kills} times"
    );
    eprintln!(
        "chaos: {runs} runs, {kills} kills of the server, {:.1} s",
        started.elapsed().as_secs_f64()
    );
    drop(agents);
}
