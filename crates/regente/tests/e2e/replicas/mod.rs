//! Several `regente serve` replicas on one PostgreSQL database: runs accepted by
//! one reach runtimes connected to another at once, tokens and admin calls work
//! through any replica, agents move to a surviving replica when theirs is killed
//! with SIGKILL and nothing is lost or doubled (`failover.rs`), the
//! lost-runtime check runs once across replicas, and per-second schedules fire
//! each second once through a SIGKILL of the replica firing them
//! (`schedules.rs`); a deleted user or a revoked API key is refused on every
//! replica within seconds.
//!
//! These tests need PostgreSQL, whatever the suite's own servers run on: without
//! `REGENTE_TEST_PG_URL` they are ignored and say SKIPPED. Each test makes a
//! database of its own and starts the replicas on it, each with its own data
//! directory and no `REGENTE_JWT_SECRET`, so that they must share the signing
//! secret through the database.

mod failover;
mod schedules;

use std::time::Duration;

use crate::support::*;

/// Generous deadlines: the machine is shared.
const RUN: Duration = Duration::from_secs(30);

/// How to start a replica on `database_url`.
fn replica(name: &str, database_url: &str, env: &[(&str, &str)]) -> ServerOptions {
    ServerOptions::new()
        .name(&format!("replica {name}"))
        .database_url(database_url)
        .env("REGENTE_JWT_SECRET", "")
        .envs(env)
}

/// Two replicas on one fresh database. Fields drop in order: the replicas
/// stop before their database is dropped.
struct Cluster {
    a: TestServer,
    b: TestServer,
    _db: TestDatabase,
}

impl Cluster {
    /// A first, then B: the first admin is created by whichever replica starts
    /// first, and the signing secret by whichever stores it first.
    fn start(runtime_timeout_seconds: &str) -> Cluster {
        Cluster::start_with(&[("REGENTE_RUNTIME_TIMEOUT_SECONDS", runtime_timeout_seconds)])
    }

    fn start_with(env: &[(&str, &str)]) -> Cluster {
        let db = TestDatabase::named("regente_e2e_replicas");
        let a = replica("A", &db.url, env).start();
        let b = replica("B", &db.url, env).start();
        Cluster { a, b, _db: db }
    }
}

// ---------------------------------------------------------------------------
// Across replicas at once: a run, and a cancel

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
#[cfg_attr(
    not(regente_pg),
    ignore = "SKIPPED: needs PostgreSQL (set REGENTE_TEST_PG_URL)"
)]
fn a_run_accepted_by_one_replica_reaches_a_runtime_on_the_other_at_once() {
    let cluster = Cluster::start_with(&[
        ("REGENTE_RUNTIME_TIMEOUT_SECONDS", "30"),
        // Only notices can bring work to another replica's sessions in time.
        ("REGENTE_RESYNC_SECONDS", "3600"),
    ]);
    let (a, b) = (&cluster.a, &cluster.b);
    let token = a.admin_token();
    let (runtime, key) = a.create_runtime(&token, "rt-on-b");
    let robot = upload_shell_robot(a, &token, "timed-robot", TIMED_ROBOT, "");
    let out = scratch();
    let agent = TestAgent::start_on(std::slice::from_ref(&cluster.b.base), &key, 1);
    agent.wait_welcomed(1, RUN);
    let vars = |sleep: &str| text_vars(&[("DIR", &path_text(out.path())), ("SLEEP", sleep)]);

    // Each run is posted to A, and the agent is connected to B only, whose
    // safety net (a look at every queue without being told) is set to an
    // hour: only A's notice can bring the run to B's session, so a run that
    // ends at all proves the notice arrived.
    for round in 0..3 {
        let id = a.queue(&token, &runtime, &robot, Some(&vars("0")));
        let body = wait_for_status(a, &token, &runtime, &id, ENDED, RUN);
        assert_eq!(
            body["status"],
            "FINISHED",
            "run {round}: {}\n--- B's stderr (tail)\n{}",
            summary(&body),
            tail(&b.stderr(), 20)
        );
    }

    // A cancel sent to A stops a robot running on the agent connected to B.
    let id = a.queue(&token, &runtime, &robot, Some(&vars("300")));
    let dir = out.path().join(&id);
    let robot_pid = wait_for_pid_file(&dir.join("robot.pid"), RUN);
    let grandchild = wait_for_pid_file(&dir.join("grandchild.pid"), RUN);
    wait_for_status(a, &token, &runtime, &id, &["RUNNING"], RUN);
    a.delete(&token, &runtime, &id).expect(200);
    let body = wait_for_status(a, &token, &runtime, &id, ENDED, Duration::from_secs(10));
    assert_eq!(body["status"], "CANCELED", "{}", summary(&body));
    wait_gone(
        &[("robot", robot_pid), ("its grandchild", grandchild)],
        Duration::from_secs(5),
    );
    let through_b = result_of(b, &token, &runtime, &id);
    assert_eq!(through_b["status"], "CANCELED", "B reads the same end");
    assert!(
        agent.stderr().contains("canceling the robot"),
        "the agent on B got the cancel:\n{}",
        tail(&agent.stderr(), 20)
    );
}

// ---------------------------------------------------------------------------
// The lost-runtime check, once across replicas

#[test]
#[cfg_attr(
    not(regente_pg),
    ignore = "SKIPPED: needs PostgreSQL (set REGENTE_TEST_PG_URL)"
)]
fn the_lost_runtime_check_runs_on_one_replica() {
    let cluster = Cluster::start("3");
    let (a, b) = (&cluster.a, &cluster.b);
    let token = b.admin_token();
    let (runtime, key) = a.create_runtime_with_slots(&token, "rt-lost", 2);
    let robot = upload_shell_robot(a, &token, "timed-robot", TIMED_ROBOT, "");
    let out = scratch();
    let mut agent = TestAgent::start_on(&[cluster.b.base.clone(), cluster.a.base.clone()], &key, 2);
    agent.wait_welcomed(1, RUN);
    let vars = text_vars(&[("DIR", &path_text(out.path())), ("SLEEP", "300")]);
    let ids: Vec<String> = (0..2)
        .map(|i| {
            let replica = if i == 0 { a } else { b };
            replica.queue(&token, &runtime, &robot, Some(&vars))
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
        wait_for_status(a, &token, &runtime, id, &["RUNNING"], RUN);
    }

    agent.kill9();
    wait_gone(&pids, Duration::from_secs(5));
    for id in &ids {
        let body = wait_for_status(a, &token, &runtime, id, ENDED, Duration::from_secs(20));
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
            result_of(b, &token, &runtime, id),
            body,
            "both replicas read the same result"
        );
    }
    // Exactly one replica declared each execution lost.
    for id in &ids {
        let declared: Vec<&str> = [("A", a), ("B", b)]
            .into_iter()
            .filter(|(_, replica)| {
                replica
                    .stderr()
                    .lines()
                    .any(|l| l.contains("runtime lost") && l.contains(id.as_str()))
            })
            .map(|(name, _)| name)
            .collect();
        assert_eq!(
            declared.len(),
            1,
            "one replica declared {id} lost, not several: {declared:?}"
        );
    }
}

// ---------------------------------------------------------------------------
// Replicas started together on an empty database

#[test]
#[cfg_attr(
    not(regente_pg),
    ignore = "SKIPPED: needs PostgreSQL (set REGENTE_TEST_PG_URL)"
)]
fn replicas_started_together_on_an_empty_database_all_come_up() {
    // A first deployment (or a restart of the whole cluster after `store
    // copy`) starts every replica at once: all find no user, and the README
    // promises that "the first admin is created by whichever replica starts
    // first". The others must come up too, with the same admin and secret.
    let db = TestDatabase::named("regente_e2e_replicas");
    let env = [("REGENTE_RUNTIME_TIMEOUT_SECONDS", "30")];
    let mut a = replica("A", &db.url, &env).spawn();
    let mut b = replica("B", &db.url, &env).spawn();
    a.wait_listening();
    b.wait_listening();
    let token = a.admin_token();
    b.get("/api/admin/users", &token).expect(200);
    let b_token = b.login(ADMIN_USER, ADMIN_PASSWORD);
    let listed = a.get("/api/admin/users", &b_token).expect(200).json();
    assert_eq!(
        listed.as_array().map(Vec::len),
        Some(1),
        "one first admin, not one per replica: {listed}"
    );
}

// ---------------------------------------------------------------------------
// A deleted user, across replicas

#[test]
#[cfg_attr(
    not(regente_pg),
    ignore = "SKIPPED: needs PostgreSQL (set REGENTE_TEST_PG_URL)"
)]
fn a_user_deleted_on_one_replica_loses_its_tokens_on_the_other() {
    let cluster = Cluster::start("30");
    let (a, b) = (&cluster.a, &cluster.b);
    let admin = a.admin_token();
    let user = a.create_user(&admin, "leaver", "leaver-password", "integration");
    let token = b.login("leaver", "leaver-password");
    // Used on B, so B knows the token as valid: unknown ids answer 404, not 401.
    let probe = "/api/integration/v1/result/0123456789abcdef/0123456789abcdef";
    assert_eq!(b.get(probe, &token).status, 404);

    let id = user["id"].as_str().unwrap();
    a.req("DELETE", &format!("/api/admin/users/{id}"))
        .auth(&admin)
        .send()
        .expect(204);
    // B learns of the deletion through the store's notices, a moment later.
    wait_for_every(
        Duration::from_millis(20),
        Duration::from_secs(5),
        "B to refuse the token of a user deleted on A",
        || match b.get(probe, &token).status {
            401 => Ok(()),
            404 => Err("the token still works on B"),
            other => panic!("before the notice, the token still works: {other}"),
        },
    );
    assert_eq!(a.get(probe, &token).status, 401);
}

// ---------------------------------------------------------------------------
// A revoked API key, across replicas

#[test]
#[cfg_attr(
    not(regente_pg),
    ignore = "SKIPPED: needs PostgreSQL (set REGENTE_TEST_PG_URL)"
)]
fn an_api_key_revoked_on_one_replica_is_refused_on_the_other_within_seconds() {
    let cluster = Cluster::start("30");
    let (a, b) = (&cluster.a, &cluster.b);
    let admin = a.admin_token();
    let created = a
        .req("POST", "/api/admin/api-keys")
        .auth(&admin)
        .json(&serde_json::json!({"name": "erp", "role": "integration"}))
        .send()
        .expect(201)
        .json();
    let key = format!("Bearer {}", created["key"].as_str().unwrap());
    // Used on B, so B remembers the key as valid: unknown ids answer 404, not 401.
    let probe = "/api/integration/v1/result/0123456789abcdef/0123456789abcdef";
    assert_eq!(b.get(probe, &key).status, 404);

    let id = created["id"].as_str().unwrap();
    a.req("DELETE", &format!("/api/admin/api-keys/{id}"))
        .auth(&admin)
        .send()
        .expect(204);
    assert_eq!(
        a.get(probe, &key).status,
        401,
        "refused at once where revoked"
    );
    // B learns of the revoke through the store's notices, a moment later.
    wait_for_every(
        Duration::from_millis(20),
        Duration::from_secs(5),
        "B to refuse the key revoked on A",
        || match b.get(probe, &key).status {
            401 => Ok(()),
            404 => Err("the key still works on B"),
            other => panic!("before the notice, the key still works: {other}"),
        },
    );
}
