//! Per-second schedules (6-field crons) on two replicas for 60 s, the replica
//! that fires them killed with SIGKILL midway: each second fires at most once,
//! and no fire is missed while a replica leads.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{json, Value};

use super::{Cluster, RUN};
use crate::support::*;

/// What a replica logs when it starts firing the schedules.
const LEADS: &str = "this server fires the schedules";
const SECOND: i64 = 1_000;

/// The scheduled times of a schedule's runs, oldest first, once every run has
/// ended; each must have FINISHED.
fn ended_fires(api: &Api, token: &str, schedule: &str) -> Vec<i64> {
    let runs = wait_until(RUN, "the scheduled runs to end", || {
        let runs = api.all_executions(token, &format!("&schedule={schedule}"));
        runs.iter()
            .all(|run| run["status"] != "PENDENT" && run["status"] != "RUNNING")
            .then_some(runs)
    });
    let mut fires: Vec<i64> = runs
        .iter()
        .map(|run| {
            assert_eq!(run["status"], "FINISHED", "{run}");
            assert_eq!(run["submitted_by"], format!("schedule:{schedule}"));
            run["scheduled_for"].as_i64().expect("a scheduled time")
        })
        .collect();
    fires.sort_unstable();
    let distinct: BTreeSet<i64> = fires.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        fires.len(),
        "a second fired twice: {fires:?}"
    );
    fires
}

/// The seconds from the first fire to the last that have no run.
fn gaps(fires: &[i64]) -> Vec<i64> {
    let have: BTreeSet<i64> = fires.iter().copied().collect();
    let (first, last) = (fires[0], fires[fires.len() - 1]);
    (0..=(last - first) / SECOND)
        .map(|n| first + n * SECOND)
        .filter(|at| !have.contains(at))
        .collect()
}

fn schedule(api: &Api, token: &str, id: &str) -> Value {
    api.get(&format!("/api/admin/schedules/{id}"), token)
        .expect(200)
        .json()
}

#[test]
#[cfg_attr(
    not(regente_pg),
    ignore = "SKIPPED: needs PostgreSQL (set REGENTE_TEST_PG_URL)"
)]
fn per_second_schedules_fire_once_a_second_across_replicas_and_a_killed_leader() {
    let mut cluster = Cluster::start("10");
    let token = cluster.a.admin_token();
    let (runtime, key) = cluster.a.create_runtime_with_slots(&token, "rt-seconds", 4);
    let robot = upload_shell_robot(&cluster.a, &token, "tick", "echo tick\n", "");
    let bases = [cluster.a.base.clone(), cluster.b.base.clone()];
    let agent = TestAgent::start_on(&bases, &key, 4);
    agent.wait_welcomed(1, RUN);
    let leader_is_a = wait_until(RUN, "a replica to fire the schedules", || {
        if cluster.a.stderr().contains(LEADS) {
            Some(true)
        } else if cluster.b.stderr().contains(LEADS) {
            Some(false)
        } else {
            None
        }
    });
    let (leader, follower) = if leader_is_a {
        (&cluster.a, &cluster.b)
    } else {
        (&cluster.b, &cluster.a)
    };
    assert!(!follower.stderr().contains(LEADS), "two replicas fire");

    // Created through the replica that does not fire: its notice wakes the
    // other. One catches up every fire it missed, one only the latest.
    let create = |name: &str, misfire: &str| -> String {
        let body = json!({
            "name": name,
            "robot_id": robot,
            "runtime_id": runtime,
            "cron": "* * * * * *",
            "overlap": "allow",
            "misfire": misfire,
        });
        follower
            .req("POST", "/api/admin/schedules")
            .auth(&token)
            .json(&body)
            .send()
            .expect(201)
            .json()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let every = create("every second, all caught up", "run_all");
    let latest = create("every second, the latest caught up", "run_latest");
    let started = now_millis();
    let fired_past = |api: &Api, at: i64| {
        api.all_executions(&token, &format!("&schedule={every}"))
            .iter()
            .any(|run| run["scheduled_for"].as_i64().unwrap_or(0) >= at)
    };
    wait_until(Duration::from_secs(60), "30 s of fires", || {
        fired_past(leader, started + 30 * SECOND).then_some(())
    });

    // The replica that fires dies mid-stride; the other takes over.
    let survivor_base = follower.base.clone();
    if leader_is_a {
        cluster.a.kill9();
    } else {
        cluster.b.kill9();
    }
    let killed_at = now_millis();
    let survivor = Api::new(&survivor_base);
    let survivor_log = || {
        if leader_is_a {
            cluster.b.stderr()
        } else {
            cluster.a.stderr()
        }
    };
    wait_until(RUN, "the survivor to fire the schedules", || {
        survivor_log().contains(LEADS).then_some(())
    });
    wait_until(Duration::from_secs(60), "60 s of fires", || {
        fired_past(&survivor, started + 60 * SECOND).then_some(())
    });
    for id in [&every, &latest] {
        survivor
            .req("PATCH", &format!("/api/admin/schedules/{id}"))
            .auth(&token)
            .json(&json!({"paused": true, "note": "the test is over"}))
            .send()
            .expect(200);
    }

    // run_all: every second from the first fire to the last ran, once.
    let fires = ended_fires(&survivor, &token, &every);
    assert!(fires.len() >= 55, "{} fires: {fires:?}", fires.len());
    assert!(fires[0] < killed_at && fires[fires.len() - 1] > killed_at);
    assert_eq!(gaps(&fires), Vec::<i64>::new(), "seconds without a run");
    let counted = schedule(&survivor, &token, &every);
    assert_eq!(counted["fired"].as_u64().unwrap() as usize, fires.len());
    assert_eq!(counted["missed"], 0, "{counted}");
    assert_eq!(counted["skipped"], 0, "{counted}");

    // run_latest: the seconds nobody could fire (from the kill to the
    // takeover) are recorded as missed; every other second ran, once.
    let fires = ended_fires(&survivor, &token, &latest);
    let missing = gaps(&fires);
    eprintln!(
        "run_latest: {} seconds ran, {} missed from the kill to the takeover",
        fires.len(),
        missing.len()
    );
    let counted = schedule(&survivor, &token, &latest);
    assert_eq!(counted["fired"].as_u64().unwrap() as usize, fires.len());
    assert_eq!(
        counted["missed"].as_u64().unwrap() as usize,
        missing.len(),
        "every second without a run is recorded as missed: {missing:?}\n{counted}"
    );
    assert!(
        missing
            .iter()
            .all(|at| *at > killed_at - 2 * SECOND && *at < killed_at + 20 * SECOND),
        "seconds missed while a replica led (killed at {killed_at}): {missing:?}"
    );
    drop(agent);
}
