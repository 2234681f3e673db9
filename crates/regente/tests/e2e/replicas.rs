//! Several `regente serve` replicas on one PostgreSQL database: runs accepted by
//! one reach runtimes connected to another at once, tokens and admin calls work
//! through any replica, agents move to a surviving replica when theirs is killed
//! with SIGKILL and nothing is lost or doubled, and the lost-runtime check runs
//! once across replicas.
//!
//! These tests need PostgreSQL: they run only when the suite does
//! (`REGENTE_E2E_DATABASE=postgres`, `REGENTE_TEST_PG_URL`), and say they were
//! skipped otherwise. Each test makes a database of its own and starts the
//! replicas on it, each with its own data directory and no
//! `REGENTE_JWT_SECRET`, so that they must share the signing secret through the
//! database.
//!
//! Nothing here sleeps to synchronise: every wait polls with a deadline.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::blocking::Client;
use reqwest::Method;
use serde_json::{json, Value};
use tempfile::TempDir;

use crate::agent_support::*;
use crate::support::*;

const SKIPPED: &str = "skipped: replicas need PostgreSQL (REGENTE_E2E_DATABASE=postgres)";
const ENDED: &[&str] = &["FINISHED", "ERROR", "CANCELED"];
/// Generous deadlines: the machine is shared.
const RUN: Duration = Duration::from_secs(30);
const START_DEADLINE: Duration = Duration::from_secs(30);
const LISTENING: &str = "regente listening on http://";

// ---------------------------------------------------------------------------
// One PostgreSQL database for several replicas

// ---------------------------------------------------------------------------
// A replica: `regente serve --database-url ...` with a data directory of its own

struct Replica {
    name: &'static str,
    child: Option<Child>,
    stderr: Arc<Mutex<String>>,
    /// The stdout lines, until the listening line was seen.
    lines: Option<mpsc::Receiver<String>>,
    /// `http://127.0.0.1:PORT`
    base: String,
    _data_dir: TempDir,
}

impl Replica {
    /// Starts a replica on `database_url` and waits for its listening line.
    fn start(name: &'static str, database_url: &str, env: &[(&str, &str)]) -> Replica {
        let mut replica = Replica::spawn(name, database_url, env);
        replica.wait_listening();
        replica
    }

    /// Starts a replica without waiting for it.
    fn spawn(name: &'static str, database_url: &str, env: &[(&str, &str)]) -> Replica {
        let data_dir = tempfile::Builder::new()
            .prefix("regente-replica-")
            .tempdir()
            .expect("a temporary data directory");
        let mut command = Command::new(env!("CARGO_BIN_EXE_regente"));
        for (name, _) in std::env::vars() {
            if name.starts_with("REGENTE_") {
                command.env_remove(name);
            }
        }
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir.path().join("data"))
            .arg("--database-url")
            .arg(database_url)
            .env("NO_COLOR", "1")
            .env("REGENTE_ADMIN_USER", ADMIN_USER)
            .env("REGENTE_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("the regente binary starts");
        let stderr = Arc::new(Mutex::new(String::new()));
        let (lines_tx, lines) = mpsc::channel();
        drain(
            child.stdout.take().expect("piped stdout"),
            Arc::new(Mutex::new(String::new())),
            Some(lines_tx),
        );
        drain(
            child.stderr.take().expect("piped stderr"),
            stderr.clone(),
            None,
        );
        Replica {
            name,
            child: Some(child),
            stderr,
            lines: Some(lines),
            base: String::new(),
            _data_dir: data_dir,
        }
    }

    /// Waits for the listening line; panics with the replica's log if it
    /// exits or does not print it in time.
    fn wait_listening(&mut self) {
        let lines = self.lines.take().expect("a replica not yet waited for");
        let deadline = Instant::now() + START_DEADLINE;
        let addr = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(addr) = line.trim().strip_prefix(LISTENING) {
                        break addr.to_owned();
                    }
                }
                Err(why) => {
                    let mut child = self.child.take().expect("the replica runs");
                    let _ = child.kill();
                    let status = child.wait();
                    panic!(
                        "replica {} did not print its listening line ({why:?}, exit {status:?})\n--- stderr\n{}",
                        self.name,
                        self.stderr()
                    );
                }
            }
        };
        self.base = format!("http://{addr}");
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("the replica runs").id()
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits for a process already sent SIGKILL (by pid) to be gone.
    fn reap(&mut self) {
        let mut child = self.child.take().expect("the replica runs");
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "replica {} survived SIGKILL",
                self.name
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn api(&self) -> Api {
        Api::new(&self.base)
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- replica {} ({}) stderr (tail) ---\n{}",
                self.name,
                self.base,
                tail(&self.stderr(), 60)
            );
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Two replicas on one fresh database. Fields drop in order: the replicas
/// stop before their database is dropped.
struct Cluster {
    a: Replica,
    b: Replica,
    _db: TestDatabase,
}

impl Cluster {
    /// A first, then B: the first admin is created by whichever replica starts
    /// first, and the signing secret by whichever stores it first.
    fn start(runtime_timeout_seconds: &str) -> Cluster {
        let db = TestDatabase::named("regente_e2e_replicas");
        let env = [("REGENTE_RUNTIME_TIMEOUT_SECONDS", runtime_timeout_seconds)];
        let a = Replica::start("A", &db.url, &env);
        let b = Replica::start("B", &db.url, &env);
        Cluster { a, b, _db: db }
    }
}

// ---------------------------------------------------------------------------
// An HTTP client for one replica

struct Api {
    base: String,
    client: Client,
}

impl Api {
    fn new(base: &str) -> Api {
        Api {
            base: base.to_owned(),
            client: Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("an HTTP client"),
        }
    }

    /// Sends a request; a transport error is returned, not a panic.
    fn try_send(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<(Vec<u8>, &str)>,
    ) -> Result<Reply, String> {
        let method = Method::from_bytes(method.as_bytes()).expect("a method");
        let mut request = self
            .client
            .request(method.clone(), format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.header("authorization", token);
        }
        if let Some((bytes, content_type)) = body {
            request = request.header("content-type", content_type).body(bytes);
        }
        let response = request.send().map_err(|e| format!("{e:?}"))?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response
            .bytes()
            .map_err(|e| format!("reading the body: {e:?}"))?
            .to_vec();
        Ok(Reply {
            status,
            headers,
            body,
            method: method.to_string(),
            path: path.split('?').next().unwrap_or(path).to_owned(),
        })
    }

    fn send(&self, method: &str, path: &str, token: Option<&str>, body: Option<&Value>) -> Reply {
        let body = body.map(|b| (b.to_string().into_bytes(), "application/json"));
        self.try_send(method, path, token, body)
            .unwrap_or_else(|e| panic!("{method} {}{path}: {e}", self.base))
    }

    fn login(&self) -> String {
        let reply = self
            .send(
                "POST",
                "/api/user/auth",
                None,
                Some(&json!({"username": ADMIN_USER, "password": b64(ADMIN_PASSWORD)})),
            )
            .expect(200);
        let token = reply.text();
        assert!(token.starts_with("Bearer "), "{token}");
        token
    }

    fn create_runtime(&self, token: &str, name: &str) -> (String, String) {
        let body = self
            .send(
                "POST",
                "/api/admin/runtimes",
                Some(token),
                Some(&json!({"name": name})),
            )
            .expect(201)
            .json();
        (
            body["id"].as_str().expect("runtime id").to_owned(),
            body["key"].as_str().expect("runtime key").to_owned(),
        )
    }

    fn upload_shell_robot(&self, token: &str, name: &str, script: &str) -> String {
        let zip = shell_robot(name, script, "");
        self.try_send(
            "POST",
            "/api/admin/robots",
            Some(token),
            Some((zip, "application/zip")),
        )
        .unwrap_or_else(|e| panic!("upload: {e}"))
        .expect(201)
        .json()["id"]
            .as_str()
            .expect("robot id")
            .to_owned()
    }

    fn try_run_v2(
        &self,
        token: &str,
        runtime: &str,
        robot: &str,
        body: &Value,
    ) -> Result<Reply, String> {
        self.try_send(
            "POST",
            &format!("/api/integration/v2/run/{runtime}/{robot}"),
            Some(token),
            Some((body.to_string().into_bytes(), "application/json")),
        )
    }

    /// Queues a run through v2 and answers the execution id.
    fn queue(&self, token: &str, runtime: &str, robot: &str, body: &Value) -> String {
        let reply = self
            .try_run_v2(token, runtime, robot, body)
            .unwrap_or_else(|e| panic!("run on {}: {e}", self.base))
            .expect(200);
        let id = reply.json()["id"].as_str().expect("an id").to_owned();
        assert!(is_execution_id(&id), "{id}");
        id
    }

    fn result(&self, token: &str, runtime: &str, id: &str) -> Value {
        self.send(
            "GET",
            &format!("/api/integration/v1/result/{runtime}/{id}"),
            Some(token),
            None,
        )
        .expect(200)
        .json()
    }

    fn delete(&self, token: &str, runtime: &str, id: &str) -> Reply {
        self.send(
            "DELETE",
            &format!("/api/integration/v1/delete/{runtime}/{id}"),
            Some(token),
            None,
        )
    }

    fn runtimes(&self, token: &str) -> Vec<Value> {
        self.send("GET", "/api/admin/runtimes", Some(token), None)
            .expect(200)
            .json()
            .as_array()
            .expect("a list of runtimes")
            .clone()
    }

    /// Every execution of the caller's organisation, following cursors.
    fn executions(&self, token: &str) -> Vec<Value> {
        let mut all = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = "/api/admin/executions?limit=500".to_owned();
            if let Some(cursor) = &cursor {
                path.push_str(&format!("&cursor={cursor}"));
            }
            let page = self
                .send("GET", &path, Some(token), None)
                .expect(200)
                .json();
            all.extend(page["executions"].as_array().expect("executions").clone());
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => return all,
            }
        }
    }

    /// Polls the result route until the execution has one of `statuses`.
    fn wait_status(
        &self,
        token: &str,
        runtime: &str,
        id: &str,
        statuses: &[&str],
        timeout: Duration,
    ) -> Value {
        wait_for(
            timeout,
            &format!("execution {id} to reach {statuses:?} through {}", self.base),
            || {
                let body = self.result(token, runtime, id);
                if statuses.iter().any(|s| body["status"] == *s) {
                    Ok(body)
                } else {
                    Err(summary(&body))
                }
            },
        )
    }
}

// ---------------------------------------------------------------------------
// Agents

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

fn text_of(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

// ---------------------------------------------------------------------------
// 1. 300 runs, two replicas, three runtimes, one replica killed midway

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
fn two_replicas_three_runtimes_300_runs_survive_a_replica_killed_midway() {
    if !on_postgres() {
        println!("{SKIPPED}");
        return;
    }
    // A run whose agent was on B when B died stays RUNNING until its agent
    // reconnects to A and resends its journal; a 10 s timeout bounds the test
    // should that not happen (the run would then end ERROR and fail it).
    let mut cluster = Cluster::start("10");
    let (a_api, b_api) = (cluster.a.api(), cluster.b.api());
    let (a, b) = (cluster.a.base.clone(), cluster.b.base.clone());

    // Logged in on A, the token works on B: the secret is shared through the
    // database. Admin calls go through both replicas.
    let token = a_api.login();
    let b_token = b_api.login();
    assert_eq!(
        b_api
            .send("GET", "/api/admin/users", Some(&token), None)
            .status,
        200,
        "B accepts a token signed by A"
    );
    a_api
        .send("GET", "/api/admin/users", Some(&b_token), None)
        .expect(200);
    let runtimes: Vec<(String, String)> = (0..3)
        .map(|i| {
            let api = if i == 1 { &a_api } else { &b_api };
            api.create_runtime(&token, &format!("rt-replicas-{i}"))
        })
        .collect();
    let robot = b_api.upload_shell_robot(&token, "ledger-robot", LEDGER_ROBOT);
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
                    match b_api.try_run_v2(&token, runtime, &robot, &vars) {
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
                let id = a_api.queue(&token, runtime, &robot, &vars);
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
        signal(cluster.b.pid(), "KILL");
        kill_time = now_millis();
        cluster.b.reap();
        // What B's agents were running when it died: still RUNNING in the
        // store, until the agents bring their journals over to A.
        stranded = a_api
            .executions(&token)
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
    let all = {
        let started = Instant::now();
        loop {
            let all = a_api.executions(&token);
            let open: Vec<String> = all
                .iter()
                .filter(|e| !ENDED.iter().any(|s| e["status"] == *s))
                .map(|e| format!("{} {} on {}", e["id"], e["status"], e["runtime_id"]))
                .collect();
            let listed: HashSet<&str> = all.iter().filter_map(|e| e["id"].as_str()).collect();
            let missing: Vec<&&str> = acked_ids
                .iter()
                .filter(|id| !listed.contains(**id))
                .collect();
            assert!(
                missing.is_empty(),
                "acknowledged runs the store does not know: {missing:?}"
            );
            if open.is_empty() {
                break all;
            }
            if started.elapsed() > Duration::from_secs(120) {
                panic!(
                    "after {:.0} s, {} executions have not ended (e.g. {:?})\n{}",
                    started.elapsed().as_secs_f64(),
                    open.len(),
                    &open[..open.len().min(10)],
                    agents
                        .iter()
                        .map(|a| tail(&a.stderr(), 15))
                        .collect::<Vec<_>>()
                        .join("\n---\n")
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    };
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
                summary(&a_api.result(&token, &run.runtime, &run.id))
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
        let body = a_api.result(&token, &run.runtime, &run.id);
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

// ---------------------------------------------------------------------------
// 2. Across replicas at once: a run, and a cancel

/// Writes its start time (epoch ms) and pids, then sleeps `$SLEEP` seconds
/// with a background grandchild doing the same.
const TIMED_ROBOT: &str = r#"d="$REGENTE_VAR_DIR/$REGENTE_EXECUTION_ID"
mkdir -p "$d"
date +%s%3N > "$d/start.tmp" && mv "$d/start.tmp" "$d/start"
sleep "$REGENTE_VAR_SLEEP" >/dev/null 2>&1 &
echo $! > "$d/grandchild.pid"
echo $$ > "$d/robot.pid"
echo "robot started"
sleep "$REGENTE_VAR_SLEEP"
echo "::return::slept"
"#;

#[test]
fn a_run_accepted_by_one_replica_reaches_a_runtime_on_the_other_at_once() {
    if !on_postgres() {
        println!("{SKIPPED}");
        return;
    }
    let cluster = Cluster::start("30");
    let (a_api, b_api) = (cluster.a.api(), cluster.b.api());
    let token = a_api.login();
    let (runtime, key) = a_api.create_runtime(&token, "rt-on-b");
    let robot = a_api.upload_shell_robot(&token, "timed-robot", TIMED_ROBOT);
    let out = scratch();
    let agent = TestAgent::start_on(std::slice::from_ref(&cluster.b.base), &key, 1);
    agent.wait_welcomed(1, RUN);
    let vars = |sleep: &str| text_vars(&[("DIR", &path_text(out.path())), ("SLEEP", sleep)]);

    // Each run is posted to A as soon as the previous one has finished, and
    // the agent is connected to B only. If only B's safety net (a re-scan of
    // the queue every 5 s) brought runs to its sessions, the first run would
    // wait up to 5 s and each later one (posted a moment after a re-scan
    // handed out the previous one) nearly 5 s. A notice from A reaches B at
    // once, so each robot starts well within 2.5 s of its POST, every time.
    // This is a deadline that tells the two mechanisms apart, not a
    // performance requirement.
    for round in 0..3 {
        let posted = now_millis();
        let id = a_api.queue(&token, &runtime, &robot, &vars("0"));
        let body = a_api.wait_status(&token, &runtime, &id, ENDED, RUN);
        assert_eq!(body["status"], "FINISHED", "{}", summary(&body));
        let start_file = out.path().join(&id).join("start");
        let started: i64 = text_of(&start_file)
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or_else(|| panic!("the robot wrote its start time to {start_file:?}"));
        let latency = started - posted;
        assert!(
            latency < 2500,
            "run {round} ({id}): the robot started {latency} ms after the POST to A; a run \
             posted to A must reach the runtime on B through a notice, not the 5 s re-scan\n\
             --- B's stderr (tail)\n{}",
            tail(&cluster.b.stderr(), 20)
        );
        println!("run {round}: the robot on B's runtime started {latency} ms after the POST to A");
    }

    // A cancel sent to A stops a robot running on the agent connected to B.
    let id = a_api.queue(&token, &runtime, &robot, &vars("300"));
    let dir = out.path().join(&id);
    let robot_pid = wait_for_pid_file(&dir.join("robot.pid"), RUN);
    let grandchild = wait_for_pid_file(&dir.join("grandchild.pid"), RUN);
    let guard = parent_pid(robot_pid).expect("the robot's parent");
    a_api.wait_status(&token, &runtime, &id, &["RUNNING"], RUN);
    a_api.delete(&token, &runtime, &id).expect(200);
    let body = a_api.wait_status(&token, &runtime, &id, ENDED, Duration::from_secs(10));
    assert_eq!(body["status"], "CANCELED", "{}", summary(&body));
    wait_gone(
        &[
            ("robot", robot_pid),
            ("its grandchild", grandchild),
            ("its guard", guard),
        ],
        Duration::from_secs(5),
    );
    let through_b = b_api.result(&token, &runtime, &id);
    assert_eq!(through_b["status"], "CANCELED", "B reads the same end");
    assert!(
        agent.stderr().contains("canceling the robot"),
        "the agent on B got the cancel:\n{}",
        tail(&agent.stderr(), 20)
    );
}

// ---------------------------------------------------------------------------
// 3. The lost-runtime check, once across replicas

#[test]
fn the_lost_runtime_check_runs_on_one_replica() {
    if !on_postgres() {
        println!("{SKIPPED}");
        return;
    }
    let cluster = Cluster::start("3");
    let (a_api, b_api) = (cluster.a.api(), cluster.b.api());
    let token = b_api.login();
    let (runtime, key) = a_api.create_runtime(&token, "rt-lost");
    let robot = a_api.upload_shell_robot(&token, "timed-robot", TIMED_ROBOT);
    let out = scratch();
    let mut agent = TestAgent::start_on(&[cluster.b.base.clone(), cluster.a.base.clone()], &key, 2);
    agent.wait_welcomed(1, RUN);
    let vars = text_vars(&[("DIR", &path_text(out.path())), ("SLEEP", "300")]);
    let ids: Vec<String> = (0..2)
        .map(|i| {
            let api = if i == 0 { &a_api } else { &b_api };
            api.queue(&token, &runtime, &robot, &vars)
        })
        .collect();
    let mut pids = Vec::new();
    for id in &ids {
        let dir = out.path().join(id);
        let robot_pid = wait_for_pid_file(&dir.join("robot.pid"), RUN);
        pids.push(("robot", robot_pid));
        pids.push((
            "its grandchild",
            wait_for_pid_file(&dir.join("grandchild.pid"), RUN),
        ));
        a_api.wait_status(&token, &runtime, id, &["RUNNING"], RUN);
    }

    agent.kill9();
    wait_gone(&pids, Duration::from_secs(5));
    for id in &ids {
        let body = a_api.wait_status(&token, &runtime, id, ENDED, Duration::from_secs(20));
        assert_eq!(body["status"], "ERROR", "{}", summary(&body));
        let lost: Vec<(String, String)> = logs(&body)
            .into_iter()
            .filter(|(_, m)| m.contains("runtime lost"))
            .collect();
        assert_eq!(
            lost.len(),
            1,
            "exactly one \"runtime lost\" line, not one per replica: {}",
            summary(&body)
        );
        assert_eq!(lost[0].0, "ERROR");
        assert_eq!(
            b_api.result(&token, &runtime, id),
            body,
            "both replicas read the same result"
        );
    }
    // Exactly one replica declared each execution lost.
    for id in &ids {
        let declared: Vec<&str> = [&cluster.a, &cluster.b]
            .iter()
            .filter(|r| {
                r.stderr()
                    .lines()
                    .any(|l| l.contains("runtime lost") && l.contains(id.as_str()))
            })
            .map(|r| r.name)
            .collect();
        assert_eq!(
            declared.len(),
            1,
            "one replica declared {id} lost, not several: {declared:?}"
        );
    }
}

// ---------------------------------------------------------------------------
// 4. Replicas started together on an empty database

#[test]
fn replicas_started_together_on_an_empty_database_all_come_up() {
    if !on_postgres() {
        println!("{SKIPPED}");
        return;
    }
    // A first deployment (or a restart of the whole cluster after `store
    // copy`) starts every replica at once: all find no user, and the README
    // promises that "the first admin is created by whichever replica starts
    // first". The others must come up too, with the same admin and secret.
    let db = TestDatabase::named("regente_e2e_replicas");
    let env = [("REGENTE_RUNTIME_TIMEOUT_SECONDS", "30")];
    let mut a = Replica::spawn("A", &db.url, &env);
    let mut b = Replica::spawn("B", &db.url, &env);
    a.wait_listening();
    b.wait_listening();
    let token = a.api().login();
    b.api()
        .send("GET", "/api/admin/users", Some(&token), None)
        .expect(200);
    let b_token = b.api().login();
    let listed = a
        .api()
        .send("GET", "/api/admin/users", Some(&b_token), None)
        .expect(200)
        .json();
    assert_eq!(
        listed.as_array().map(Vec::len),
        Some(1),
        "one first admin, not one per replica: {listed}"
    );
}

// ---------------------------------------------------------------------------
// 4. A deleted user, across replicas

#[test]
fn a_user_deleted_on_one_replica_loses_its_tokens_on_the_other() {
    if !on_postgres() {
        println!("{SKIPPED}");
        return;
    }
    let cluster = Cluster::start("30");
    let (a_api, b_api) = (cluster.a.api(), cluster.b.api());
    let admin = a_api.login();
    let user = a_api
        .send(
            "POST",
            "/api/admin/users",
            Some(&admin),
            Some(&json!({"username": "leaver", "password": "leaver-password", "role": "integration"})),
        )
        .expect(201)
        .json();
    let token = b_api
        .send(
            "POST",
            "/api/user/auth",
            None,
            Some(&json!({"username": "leaver", "password": b64("leaver-password")})),
        )
        .expect(200)
        .text();
    // Used on B, so B knows the token as valid: unknown ids answer 404, not 401.
    let probe = "/api/integration/v1/result/0123456789abcdef/0123456789abcdef";
    assert_eq!(b_api.send("GET", probe, Some(&token), None).status, 404);

    let id = user["id"].as_str().unwrap();
    a_api
        .send(
            "DELETE",
            &format!("/api/admin/users/{id}"),
            Some(&admin),
            None,
        )
        .expect(204);
    // B learns of the deletion through the store's notices, a moment later.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let status = b_api.send("GET", probe, Some(&token), None).status;
        if status == 401 {
            break;
        }
        assert_eq!(status, 404, "before the notice, the token still works");
        assert!(
            Instant::now() < deadline,
            "B still accepts the token of a user deleted on A\n--- B's stderr (tail)\n{}",
            tail(&cluster.b.stderr(), 20)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(a_api.send("GET", probe, Some(&token), None).status, 401);
}
