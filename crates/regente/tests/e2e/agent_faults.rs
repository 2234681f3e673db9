//! Faults while robots run: agents killed, frozen or cut off, servers
//! restarted or killed. Robots keep a ledger (one line per start, appended
//! with `>>`), so that every test can check that nothing ran twice, and
//! numbered log lines, so that it can check that nothing was lost or doubled.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::*;

pub(crate) const RUN: Duration = Duration::from_secs(30);
/// The runtime timeout of the tests that wait for it.
const SHORT_TIMEOUT: &str = "3";

/// Records its start, its pid and a background grandchild's pid, then sleeps
/// `$SLEEP` seconds.
const SLEEPER: &str = r#"echo "$REGENTE_EXECUTION_ID" >> "$REGENTE_VAR_LEDGER"
d="$REGENTE_VAR_DIR/$REGENTE_EXECUTION_ID"
mkdir -p "$d"
sleep "$REGENTE_VAR_SLEEP" >/dev/null 2>&1 &
echo $! > "$d/grandchild.pid"
echo $$ > "$d/robot.pid"
echo "robot started"
sleep "$REGENTE_VAR_SLEEP"
echo "::return::slept"
"#;

/// Records its start and prints `line N` every 0.1 s until `go` appears in its
/// directory (its count so far in `count`), then one more line and returns
/// `{"lines": N}`.
pub(crate) const LINES: &str = r#"echo "$REGENTE_EXECUTION_ID" >> "$REGENTE_VAR_LEDGER"
d="$REGENTE_VAR_DIR/$REGENTE_EXECUTION_ID"
mkdir -p "$d"
echo $$ > "$d/robot.pid"
i=0
while [ ! -e "$d/go" ]; do
  i=$((i+1))
  echo "line $i"
  echo $i > "$d/count.tmp" && mv "$d/count.tmp" "$d/count"
  sleep 0.1
done
i=$((i+1))
echo "line $i"
echo "::return::{\"lines\": $i}"
"#;

/// What a fault test works with.
pub(crate) struct Rig {
    pub(crate) admin: String,
    pub(crate) runtime: String,
    pub(crate) key: String,
    pub(crate) robot: String,
    pub(crate) out: tempfile::TempDir,
}

impl Rig {
    pub(crate) fn new(server: &TestServer, script: &str, manifest: &str) -> Rig {
        let admin = server.admin_token();
        let (runtime, key) = server.create_runtime(&admin, "rt-fault");
        let robot = upload_shell_robot(server, &admin, "fault-robot", script, manifest);
        Rig {
            admin,
            runtime,
            key,
            robot,
            out: scratch(),
        }
    }

    pub(crate) fn ledger_path(&self) -> PathBuf {
        self.out.path().join("ledger")
    }

    pub(crate) fn dir(&self, id: &str) -> PathBuf {
        self.out.path().join(id)
    }

    pub(crate) fn queue(&self, server: &TestServer, sleep: &str) -> String {
        self.queue_robot(server, &self.robot, sleep)
    }

    /// [`Rig::queue`] of another robot of the rig's runtime.
    pub(crate) fn queue_robot(&self, server: &TestServer, robot: &str, sleep: &str) -> String {
        let vars = text_vars(&[
            ("LEDGER", &path_text(&self.ledger_path())),
            ("DIR", &path_text(self.out.path())),
            ("SLEEP", sleep),
        ]);
        server.queue(&self.admin, &self.runtime, robot, Some(&vars))
    }

    pub(crate) fn result(&self, server: &TestServer, id: &str) -> Value {
        result_of(server, &self.admin, &self.runtime, id)
    }

    pub(crate) fn wait_status(&self, server: &TestServer, id: &str, timeout: Duration) -> Value {
        wait_for_status(server, &self.admin, &self.runtime, id, ENDED, timeout)
    }

    /// The robot's pid, its grandchild's and its guard's (the robot's parent).
    pub(crate) fn sleeper_pids(&self, id: &str) -> Vec<(&'static str, u32)> {
        let dir = self.dir(id);
        let robot = wait_for_pid_file(&dir.join("robot.pid"), RUN);
        let grandchild = wait_for_pid_file(&dir.join("grandchild.pid"), RUN);
        let guard = parent_pid(robot).expect("the robot's parent");
        vec![
            ("robot", robot),
            ("its grandchild", grandchild),
            ("its guard", guard),
        ]
    }

    /// The last count the lines robot wrote.
    pub(crate) fn count(&self, id: &str) -> u64 {
        std::fs::read_to_string(self.dir(id).join("count"))
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0)
    }

    pub(crate) fn go(&self, id: &str) {
        std::fs::write(self.dir(id).join("go"), "").unwrap();
    }

    /// Waits until the server shows a numbered line above `n`.
    pub(crate) fn wait_lines_above(
        &self,
        server: &TestServer,
        id: &str,
        n: u64,
        timeout: Duration,
    ) {
        wait_for(timeout, &format!("a line above {n} on the server"), || {
            let body = self.result(server, id);
            assert!(
                body["status"] == "RUNNING",
                "the run should still be RUNNING: {}",
                summary(&body)
            );
            let top = numbered_lines(&body).into_iter().max().unwrap_or(0);
            if top > n {
                Ok(())
            } else {
                Err(summary(&body))
            }
        });
    }

    /// Lets the lines robot finish and checks: FINISHED, lines 1..=N once each
    /// and in order, the return value, one start in the ledger.
    pub(crate) fn finish_and_check(&self, server: &TestServer, id: &str) {
        self.go(id);
        let body = self.wait_status(server, id, RUN);
        assert_eq!(body["status"], "FINISHED", "{}", summary(&body));
        let n = body["returnValue"]["lines"]
            .as_u64()
            .unwrap_or_else(|| panic!("no return value: {}", summary(&body)));
        assert_one_to_n(
            &numbered_lines(&body),
            n,
            "the result seen as the run ended",
        );
        assert_eq!(
            logs(&body).len() as u64,
            n,
            "nothing but the robot's lines: {}",
            summary(&body)
        );
        assert_eq!(self.count(id) + 1, n, "the robot's own count");
        assert_eq!(ledger_count(&self.ledger_path(), id), 1, "started once");
    }
}

/// Checks `invariant` repeatedly for `duration`: a fault held for that long.
pub(crate) fn hold_for(duration: Duration, mut invariant: impl FnMut()) {
    let until = Instant::now() + duration;
    while Instant::now() < until {
        invariant();
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub(crate) fn wait_running_with_lines(rig: &Rig, server: &TestServer, id: &str, n: usize) {
    wait_for(RUN, &format!("RUNNING with {n} lines"), || {
        let body = rig.result(server, id);
        if body["status"] == "RUNNING" && numbered_lines(&body).len() >= n {
            Ok(())
        } else {
            Err(summary(&body))
        }
    });
}

#[test]
fn an_agent_killed_mid_run_takes_its_robot_along_and_the_run_ends_error_after_the_timeout() {
    let server = TestServer::start_with(&[("REGENTE_RUNTIME_TIMEOUT_SECONDS", SHORT_TIMEOUT)]);
    let rig = Rig::new(&server, SLEEPER, "");
    let mut agent = TestAgent::start(&server, &rig.key, 1);
    let id = rig.queue(&server, "300");
    let pids = rig.sleeper_pids(&id);
    wait_for(RUN, "RUNNING", || {
        let body = rig.result(&server, &id);
        (body["status"] == "RUNNING")
            .then_some(())
            .ok_or(summary(&body))
    });

    let killed_at = now_millis();
    agent.kill9();
    let killed = Instant::now();
    let just_after = rig.result(&server, &id);
    assert_eq!(
        just_after["status"], "RUNNING",
        "not failed at once: the runtime gets its timeout"
    );
    // The guard gets the agent's death signal and kills the robot's group.
    wait_gone(&pids, Duration::from_secs(5));

    let body = rig.wait_status(&server, &id, Duration::from_secs(13));
    let after = killed.elapsed();
    assert_eq!(body["status"], "ERROR", "{}", summary(&body));
    assert!(
        after >= Duration::from_millis(1500),
        "declared lost {after:?} after the kill: sooner than the 3 s timeout allows"
    );
    let ended_at = body["end"].as_i64().expect("an end time");
    assert!(
        ended_at - killed_at <= 3000,
        "ended {} ms after the kill: the runtime timeout is 3 s from the last word",
        ended_at - killed_at
    );
    let all = logs(&body);
    assert!(
        all.iter()
            .any(|(level, m)| level == "ERROR" && m.contains("runtime lost")),
        "an ERROR log line says the runtime was lost: {all:?}"
    );
    assert!(server.execution(&rig.admin, &id)["end_reason"]
        .as_str()
        .unwrap_or_default()
        .contains("runtime lost"));

    // The agent comes back on its work directory, still holding the lease in
    // its journal: its late report is refused, and nothing runs again.
    agent.restart();
    agent.wait_log("lease revoked by the server", RUN);
    let marker = rig.queue(&server, "0");
    let marker_body = rig.wait_status(&server, &marker, RUN);
    assert_eq!(
        marker_body["status"],
        "FINISHED",
        "{}",
        summary(&marker_body)
    );
    assert_eq!(
        rig.result(&server, &id),
        body,
        "the lost execution is unchanged"
    );
    assert_eq!(
        ledger(&rig.ledger_path()),
        vec![id.clone(), marker.clone()],
        "the lost execution never ran again"
    );
}

/// Restarts the server (SIGTERM, or SIGKILL) while a robot prints numbered
/// lines: every line and the return value arrive once it is back.
fn server_restart_mid_run(kill: bool) {
    let mut server = TestServer::start();
    let (rig, relay, agent, id) = relayed(&server, LINES, "");

    if kill {
        server.kill9();
        server.start_again();
    } else {
        server.restart();
    }
    relay.point_to(&server.base);
    let back = rig.count(&id);
    agent.wait_welcomed(2, RUN);
    // Lines flow again, and the robot ran on while the server was away.
    rig.wait_lines_above(&server, &id, back, RUN);
    assert_eq!(rig.result(&server, &id)["status"], "RUNNING");
    rig.finish_and_check(&server, &id);
}

#[test]
fn a_server_restarted_with_sigterm_mid_run_gets_every_line_and_the_result() {
    server_restart_mid_run(false);
}

#[test]
fn a_server_killed_with_sigkill_mid_run_gets_every_line_and_the_result() {
    server_restart_mid_run(true);
}

/// A rig whose agent reaches `server` through a relay, with one run of its
/// robot RUNNING and three lines stored.
pub(crate) fn relayed(
    server: &TestServer,
    script: &str,
    manifest: &str,
) -> (Rig, Relay, TestAgent, String) {
    let (rig, relay, agent) = relayed_idle(server, script, manifest);
    let id = rig.queue(server, "0");
    wait_running_with_lines(&rig, server, &id, 3);
    (rig, relay, agent, id)
}

/// A rig whose one agent (one slot) reaches `server` through a relay,
/// welcomed and idle.
fn relayed_idle(server: &TestServer, script: &str, manifest: &str) -> (Rig, Relay, TestAgent) {
    let rig = Rig::new(server, script, manifest);
    let relay = Relay::start(&server.base);
    let agent = TestAgent::start_on(&[relay.url()], &rig.key, 1);
    agent.wait_welcomed(1, RUN);
    (rig, relay, agent)
}

#[test]
fn an_agent_cut_off_for_ten_seconds_loses_nothing_and_doubles_nothing() {
    // The default runtime timeout (30 s): a 10 s cut is not a lost runtime.
    let server = TestServer::start();
    let (rig, relay, agent, id) = relayed(&server, LINES, "");

    relay.cut();
    let at_cut = rig.count(&id);
    hold_for(Duration::from_secs(10), || {
        assert_eq!(
            rig.result(&server, &id)["status"],
            "RUNNING",
            "a 10 s cut does not end the run"
        );
    });
    assert!(
        rig.count(&id) > at_cut + 20,
        "the robot kept running while cut off ({} -> {})",
        at_cut,
        rig.count(&id)
    );
    assert!(
        agent.stderr().contains("disconnected from the server")
            || agent.stderr().contains("cannot reach the server"),
        "the agent noticed the cut:\n{}",
        tail(&agent.stderr(), 20)
    );
    relay.restore();
    let restored = rig.count(&id);
    agent.wait_welcomed(2, RUN);
    rig.wait_lines_above(&server, &id, restored, RUN);
    rig.finish_and_check(&server, &id);
}

#[test]
fn a_server_frozen_past_the_fence_point_gets_the_fenced_end_and_every_line_before_it() {
    // With a 5 s runtime timeout the agent gives up on the silent connection
    // at 2.5 s and stops its robot at 3.3 s of silence: it cannot tell a
    // frozen server from a cut network. The server, thawed, counts its own
    // stall as nobody's silence, takes the agent back and stores the end the
    // agent reports: ERROR, fenced, with every line printed before.
    let server = TestServer::start_with(&[("REGENTE_RUNTIME_TIMEOUT_SECONDS", "5")]);
    let rig = Rig::new(&server, LINES, "");
    let agent = TestAgent::start(&server, &rig.key, 1);
    let id = rig.queue(&server, "0");
    wait_running_with_lines(&rig, &server, &id, 3);
    agent.wait_welcomed(1, RUN);
    let robot = wait_for_pid_file(&rig.dir(&id).join("robot.pid"), RUN);

    server.pause();
    wait_gone(&[("robot", robot)], Duration::from_secs(10));
    let at_fence = rig.count(&id);
    hold_for(Duration::from_secs(2), || {});
    server.resume();
    assert!(
        agent.stderr().contains("no word from the server"),
        "the agent noticed the silent server:\n{}",
        tail(&agent.stderr(), 20)
    );
    let body = rig.wait_status(&server, &id, RUN);
    assert_eq!(body["status"], "ERROR", "{}", summary(&body));
    let lines = numbered_lines(&body);
    assert_one_to_n(&lines, lines.len() as u64, "the lines before the fence");
    assert!(
        lines.len() as u64 >= at_fence,
        "every line printed before the fence is stored ({} of {at_fence})",
        lines.len()
    );
    assert!(
        messages(&body).iter().any(|m| m.starts_with("fenced:")),
        "the end says the agent fenced the robot: {}",
        summary(&body)
    );
    assert_eq!(ledger_count(&rig.ledger_path(), &id), 1, "started once");
}

#[test]
fn nothing_runs_twice_across_agent_and_server_kills() {
    let mut server = TestServer::start_with(&[("REGENTE_RUNTIME_TIMEOUT_SECONDS", SHORT_TIMEOUT)]);
    let script = "echo \"$REGENTE_EXECUTION_ID\" >> \"$REGENTE_VAR_LEDGER\"\nsleep 0.4\necho \"::return::done\"\n";
    let rig = Rig::new(&server, script, "");
    let relay = Relay::start(&server.base);
    let mut agent = TestAgent::start_on(&[relay.url()], &rig.key, 2);
    // Every run the API acknowledged (a 200 with an id) is recorded here.
    let acknowledged: Vec<String> = (0..16).map(|_| rig.queue(&server, "0")).collect();
    let ledger_path = rig.ledger_path();
    let started = |n: usize| {
        wait_until(
            Duration::from_secs(60),
            &format!("{n} starts in the ledger"),
            || (ledger(&ledger_path).len() >= n).then_some(()),
        )
    };

    started(2);
    agent.kill9();
    agent.restart();
    started(6);
    server.kill9();
    server.start_again();
    relay.point_to(&server.base);
    started(9);
    agent.kill9();
    agent.restart();

    let all = wait_for(Duration::from_secs(90), "every run to end", || {
        let all = server.all_executions(&rig.admin, &format!("&robot={}", rig.robot));
        let open: Vec<String> = all
            .iter()
            .filter(|e| !ENDED.iter().any(|s| e["status"] == *s))
            .map(|e| format!("{} {}", e["id"], e["status"]))
            .collect();
        if open.is_empty() && all.len() == acknowledged.len() {
            Ok(all)
        } else {
            Err(open)
        }
    });
    let by_id: HashMap<String, &Value> = all
        .iter()
        .map(|e| (e["id"].as_str().unwrap().to_owned(), e))
        .collect();
    let starts = ledger(&ledger_path);
    let mut statuses: HashMap<String, usize> = HashMap::new();
    for id in &acknowledged {
        let execution = by_id
            .get(id)
            .unwrap_or_else(|| panic!("acknowledged run {id} is missing"));
        let status = execution["status"].as_str().unwrap();
        *statuses.entry(status.to_owned()).or_default() += 1;
        let ran = starts.iter().filter(|l| *l == id).count();
        assert!(ran <= 1, "{id} started {ran} times: {execution}");
        match status {
            "FINISHED" => assert_eq!(ran, 1, "{id} finished without starting?"),
            "ERROR" => {
                let body = rig.result(&server, id);
                assert!(
                    !messages(&body).is_empty(),
                    "an ERROR says why: {}",
                    summary(&body)
                );
            }
            other => panic!("{id} ended {other}: {execution}"),
        }
    }
    assert!(
        starts.iter().all(|l| acknowledged.contains(l)),
        "only acknowledged runs started: {starts:?}"
    );
    assert!(
        statuses.get("FINISHED").copied().unwrap_or(0) >= 7,
        "most runs finish despite the faults: {statuses:?}"
    );
}

/// A robot that may run twice: its first start sleeps, a later one finishes.
const RETRYABLE: &str = r#"echo "$REGENTE_EXECUTION_ID" >> "$REGENTE_VAR_LEDGER"
n=$(grep -c "$REGENTE_EXECUTION_ID" "$REGENTE_VAR_LEDGER")
echo "attempt $n"
d="$REGENTE_VAR_DIR/$REGENTE_EXECUTION_ID"
mkdir -p "$d"
if [ "$n" -eq 1 ]; then
  sleep 300 >/dev/null 2>&1 &
  echo $! > "$d/grandchild.pid"
  echo $$ > "$d/robot.pid"
  sleep 300
fi
echo "::return::{\"attempt\": $n}"
"#;

fn check_second_attempt(rig: &Rig, server: &TestServer, id: &str, body: &Value) {
    assert_eq!(body["status"], "FINISHED", "{}", summary(body));
    assert_eq!(body["returnValue"], json!({"attempt": 2}));
    assert_eq!(ledger_count(&rig.ledger_path(), id), 2, "two starts");
    let lines = messages(body);
    let first = lines.iter().position(|m| m == "attempt 1");
    let second = lines.iter().position(|m| m == "attempt 2");
    assert!(
        matches!((first, second), (Some(a), Some(b)) if a < b),
        "both attempts' logs, in order: {lines:?}"
    );
    assert_eq!(server.execution(&rig.admin, id)["status"], "FINISHED");
}

#[test]
fn a_retryable_robot_runs_again_after_its_runtime_was_lost() {
    let server = TestServer::start_with(&[("REGENTE_RUNTIME_TIMEOUT_SECONDS", SHORT_TIMEOUT)]);
    let rig = Rig::new(&server, RETRYABLE, "retries = 1");
    let mut agent = TestAgent::start(&server, &rig.key, 1);
    let id = rig.queue(&server, "0");
    let pids = rig.sleeper_pids(&id);
    // The first attempt's line is stored before the agent dies: what the agent
    // had not sent when its lease ended is refused with the lease.
    wait_for(RUN, "the first attempt's log line", || {
        let body = rig.result(&server, &id);
        if messages(&body).iter().any(|m| m == "attempt 1") {
            Ok(())
        } else {
            Err(summary(&body))
        }
    });
    agent.kill9();
    wait_gone(&pids, Duration::from_secs(5));
    // Lost, and queued again since the robot allows it.
    let requeued = wait_for(Duration::from_secs(13), "PENDENT again", || {
        let body = rig.result(&server, &id);
        if body["status"] == "PENDENT" && !messages(&body).is_empty() {
            Ok(body)
        } else {
            Err(summary(&body))
        }
    });
    let all = logs(&requeued);
    assert!(
        all.iter().any(|(_, m)| m.contains("runtime lost")),
        "a log line says the runtime was lost: {all:?}"
    );
    agent.restart();
    let body = rig.wait_status(&server, &id, RUN);
    check_second_attempt(&rig, &server, &id, &body);
}

#[test]
fn a_retryable_robot_runs_again_after_a_quick_agent_restart() {
    // The agent is back long before the (default, 30 s) timeout: it reports
    // from its journal that the robot died with it.
    let server = TestServer::start();
    let rig = Rig::new(&server, RETRYABLE, "retries = 1");
    let mut agent = TestAgent::start(&server, &rig.key, 1);
    let id = rig.queue(&server, "0");
    let pids = rig.sleeper_pids(&id);
    agent.kill9();
    wait_gone(&pids, Duration::from_secs(5));
    agent.restart();
    let body = rig.wait_status(&server, &id, RUN);
    check_second_attempt(&rig, &server, &id, &body);
}

#[test]
fn an_agent_restarted_on_its_work_dir_reports_the_robot_it_lost() {
    // The default timeout (30 s): the end must come from the agent's journal,
    // not from the server giving up on the runtime.
    let server = TestServer::start();
    let rig = Rig::new(&server, SLEEPER, "");
    let mut agent = TestAgent::start(&server, &rig.key, 1);
    let id = rig.queue(&server, "300");
    let pids = rig.sleeper_pids(&id);
    // RUNNING, with the robot's first line stored: a line the robot printed
    // but the agent had not read when it died is gone with it.
    wait_for(RUN, "RUNNING with the robot's first line", || {
        let body = rig.result(&server, &id);
        (body["status"] == "RUNNING" && messages(&body).iter().any(|m| m == "robot started"))
            .then_some(())
            .ok_or(summary(&body))
    });
    agent.kill9();
    let killed = Instant::now();
    wait_gone(&pids, Duration::from_secs(5));
    assert_eq!(rig.result(&server, &id)["status"], "RUNNING");

    agent.restart();
    let body = rig.wait_status(&server, &id, Duration::from_secs(20));
    assert!(
        killed.elapsed() < Duration::from_secs(25),
        "reported by the agent, before the server's own 30 s timeout"
    );
    assert_eq!(body["status"], "ERROR", "{}", summary(&body));
    let all = logs(&body);
    assert!(
        all.iter()
            .any(|(level, m)| level == "ERROR" && m.contains("agent stopped while the robot")),
        "an ERROR log line says the agent stopped while the robot ran: {all:?}"
    );
    assert!(
        !all.iter().any(|(_, m)| m.contains("runtime lost")),
        "{all:?}"
    );
    assert_eq!(
        messages(&body)
            .iter()
            .filter(|m| *m == "robot started")
            .count(),
        1
    );
    let marker = rig.queue(&server, "0");
    let marker_body = rig.wait_status(&server, &marker, RUN);
    assert_eq!(
        marker_body["status"],
        "FINISHED",
        "{}",
        summary(&marker_body)
    );
    assert_eq!(ledger(&rig.ledger_path()), vec![id, marker]);
}

#[test]
fn an_agent_stopped_with_sigterm_stops_its_robot_and_reports_it_when_back() {
    let server = TestServer::start();
    let rig = Rig::new(&server, SLEEPER, "");
    let work = scratch();
    let mut agent = TestAgent::start_in(&server, &rig.key, 1, &work.path().join("agent"));
    let id = rig.queue(&server, "300");
    let pids = rig.sleeper_pids(&id);
    wait_for(RUN, "RUNNING", || {
        let body = rig.result(&server, &id);
        (body["status"] == "RUNNING")
            .then_some(())
            .ok_or(summary(&body))
    });
    let status = agent.stop();
    assert!(
        status.success(),
        "SIGTERM stops the agent cleanly: {status}"
    );
    wait_gone(&pids, Duration::from_secs(5));
    assert_eq!(rig.result(&server, &id)["status"], "RUNNING");

    agent.restart();
    let body = rig.wait_status(&server, &id, Duration::from_secs(20));
    assert_eq!(body["status"], "ERROR", "{}", summary(&body));
    assert!(
        messages(&body)
            .iter()
            .any(|m| m.contains("agent stopped while the robot")),
        "{}",
        summary(&body)
    );
    assert_eq!(ledger_count(&rig.ledger_path(), &id), 1);
}

#[test]
fn a_stale_agent_cannot_change_an_execution_after_its_lease_ended() {
    let server = TestServer::start_with(&[("REGENTE_RUNTIME_TIMEOUT_SECONDS", SHORT_TIMEOUT)]);
    let rig = Rig::new(&server, LINES, "");
    let agent = TestAgent::start(&server, &rig.key, 1);
    let id = rig.queue(&server, "0");
    wait_running_with_lines(&rig, &server, &id, 3);
    let robot = wait_for_pid_file(&rig.dir(&id).join("robot.pid"), RUN);

    // Frozen past the timeout: the server declares the runtime lost, while the
    // robot (not frozen) keeps printing.
    agent.pause();
    let lost = wait_for_status(
        &server,
        &rig.admin,
        &rig.runtime,
        &id,
        ENDED,
        Duration::from_secs(15),
    );
    assert_eq!(lost["status"], "ERROR", "{}", summary(&lost));
    assert!(
        messages(&lost).iter().any(|m| m.contains("runtime lost")),
        "{}",
        summary(&lost)
    );
    let count_at_loss = rig.count(&id);
    wait_until(RUN, "the robot to print more lines", || {
        (rig.count(&id) > count_at_loss + 5).then_some(())
    });

    // Thawed, the agent reports the lines it holds under its old lease.
    agent.resume();
    agent.wait_log("lease revoked by the server", RUN);
    wait_until(RUN, "the server to log the refused events", || {
        server.stderr().contains("events refused").then_some(())
    });
    let after = rig.result(&server, &id);
    assert_eq!(after, lost, "the late report changed nothing");
    // Revoked, the robot is stopped.
    wait_gone(&[("robot", robot)], Duration::from_secs(5));
    assert_eq!(ledger_count(&rig.ledger_path(), &id), 1);
}

/// Waits until the server shows `id` RUNNING: granted with its assignment,
/// before any robot could start.
fn wait_granted(rig: &Rig, server: &TestServer, id: &str) {
    wait_for(RUN, "the start granted with the assignment", || {
        let body = server.execution(&rig.admin, id);
        if body["status"] == "RUNNING" {
            Ok(())
        } else {
            Err(body.to_string())
        }
    });
}

#[test]
fn an_agent_killed_between_a_granted_assignment_and_the_spawn_runs_the_robot_once() {
    let server = TestServer::start();
    let (rig, relay, mut agent) = relayed_idle(&server, LINES, "");

    // The assignment arrives over the open WebSocket; the package download, a
    // new connection, hangs: the agent holds the run, journaled, unspawned.
    relay.hold_new();
    let id = rig.queue(&server, "0");
    wait_granted(&rig, &server, &id);
    wait_until(RUN, "the assignment journaled", || {
        agent.journal_file_of(&id)
    });
    agent.kill9();
    assert_eq!(ledger_count(&rig.ledger_path(), &id), 0, "never spawned");

    // Back on its journal, the agent reports it unspawned: queued again, run once.
    relay.release_new();
    agent.restart();
    wait_running_with_lines(&rig, &server, &id, 3);
    rig.finish_and_check(&server, &id);
}

/// A rig whose next run was claimed and started in the commit of the end of
/// the one before, and assigned with its start granted; its robot's package
/// (another robot's, over a new connection) hangs: the agent holds it,
/// journaled, unspawned. Answers the rig, its relay, its agent and that run.
fn granted_with_an_end_and_held(server: &TestServer) -> (Rig, Relay, TestAgent, String) {
    let (rig, relay, agent) = relayed_idle(server, LINES, "");
    let first = rig.queue(server, "0");
    wait_running_with_lines(&rig, server, &first, 3);
    // The connection the first package came over, kept for the next, is cut.
    relay.cut();
    relay.restore();
    agent.wait_welcomed(2, RUN);
    let other = upload_shell_robot(server, &rig.admin, "other-robot", LINES, "");
    let next = rig.queue_robot(server, &other, "0");
    relay.hold_new();
    rig.finish_and_check(server, &first);
    wait_granted(&rig, server, &next);
    wait_until(RUN, "the assignment journaled", || {
        agent.journal_file_of(&next)
    });
    (rig, relay, agent, next)
}

#[test]
fn an_agent_killed_between_an_assignment_granted_with_an_end_and_the_spawn_runs_the_robot_once() {
    let server = TestServer::start();
    let (rig, relay, mut agent, next) = granted_with_an_end_and_held(&server);
    agent.kill9();
    assert_eq!(ledger_count(&rig.ledger_path(), &next), 0, "never spawned");

    // Back on its journal, the agent reports it unspawned: queued again, run once.
    relay.release_new();
    agent.restart();
    wait_running_with_lines(&rig, &server, &next, 3);
    rig.finish_and_check(&server, &next);
}

#[test]
fn a_run_granted_with_an_end_and_canceled_before_its_launch_never_starts() {
    let server = TestServer::start();
    let (rig, relay, _agent, next) = granted_with_an_end_and_held(&server);
    server.delete(&rig.admin, &rig.runtime, &next).expect(200);

    // Once the package is in, the agent ends it instead of launching it.
    relay.release_new();
    let body = rig.wait_status(&server, &next, RUN);
    assert_eq!(body["status"], "CANCELED", "{}", summary(&body));
    assert!(
        messages(&body)
            .iter()
            .any(|m| m.contains("canceled before the robot started")),
        "{}",
        summary(&body)
    );
    assert_eq!(ledger_count(&rig.ledger_path(), &next), 0, "never started");
    // The runtime goes on with the next run.
    let after = rig.queue(&server, "0");
    wait_running_with_lines(&rig, &server, &after, 3);
    rig.finish_and_check(&server, &after);
}

#[test]
fn a_granted_assignment_lost_with_a_killed_server_runs_once_when_the_agent_is_back() {
    let mut server = TestServer::start();
    let (rig, relay, agent) = relayed_idle(&server, LINES, "");

    // The server commits the granted start, and dies with its assignment still
    // on the way: the agent never hears of the run.
    relay.partition();
    let id = rig.queue(&server, "0");
    wait_granted(&rig, &server, &id);
    server.kill9();
    relay.cut();
    relay.heal();
    server.start_again();
    relay.point_to(&server.base);
    relay.restore();
    agent.wait_welcomed(2, RUN);

    // The lease was granted to this agent's journal, which does not hold it:
    // it never ran, so it is queued again rather than ended as lost.
    wait_running_with_lines(&rig, &server, &id, 3);
    rig.finish_and_check(&server, &id);
}

#[test]
fn a_run_canceled_while_its_package_downloads_never_starts() {
    let server = TestServer::start();
    let (rig, relay, agent) = relayed_idle(&server, LINES, "");

    // Handed out, its start committed, its package download hanging: the
    // agent has not asked to start it.
    relay.hold_new();
    let id = rig.queue(&server, "0");
    wait_granted(&rig, &server, &id);
    server.delete(&rig.admin, &rig.runtime, &id).expect(200);

    // Once the package is in, the agent asks to start it and is refused.
    relay.release_new();
    let body = rig.wait_status(&server, &id, RUN);
    assert_eq!(body["status"], "CANCELED", "{}", summary(&body));
    agent.wait_log("lease revoked by the server", RUN);
    assert_eq!(ledger_count(&rig.ledger_path(), &id), 0, "never started");
    // The runtime goes on with the next run.
    let next = rig.queue(&server, "0");
    wait_running_with_lines(&rig, &server, &next, 3);
    rig.finish_and_check(&server, &next);
}
