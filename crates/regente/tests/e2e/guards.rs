//! The guards between the agent and its robots: one per slot, serving one
//! robot after another, and what the agent does when a guard cannot do its job
//! (stopped by its robot, stopped before a hand-over).

use std::time::Duration;

use serde_json::Value;

use crate::agent_runs::{ended, run_in_dir, setup, wait_running_with, RUN};
use crate::support::*;

/// The agent's idle guards (one, once it is connected and idle).
pub(crate) fn idle_guards(agent: &TestAgent) -> Vec<u32> {
    wait_for(RUN, "one idle guard", || {
        let guards = children_with(agent.pid(), "__guard");
        if guards.len() == 1 {
            Ok(guards)
        } else {
            Err(guards)
        }
    })
}

#[test]
fn idle_guards_are_no_robots_and_leave_with_their_agent() {
    let (server, admin, runtime, key) = setup();
    let robot = upload_shell_robot(&server, &admin, "parent", "echo \"parent=$PPID\"\n", "");
    let mut agent = TestAgent::start(&server, &key, 1);
    agent.wait_welcomed(1, RUN);
    let first = idle_guards(&agent);
    // The robot runs under the guard that was waiting, which then waits for
    // the next robot: one guard serves one robot after another.
    for _ in 0..2 {
        let id = server.queue(&admin, &runtime, &robot, None);
        let body = ended(&server, &admin, &runtime, &id);
        assert_eq!(body["status"], "FINISHED", "{}", summary(&body));
        assert_eq!(
            messages(&body),
            vec![format!("parent={}", first[0])],
            "the robot's parent is the guard that was idle"
        );
        assert_eq!(idle_guards(&agent), first);
    }
    // An idle guard takes no slot: the next run starts as usual, here with a
    // command longer than a pipe takes at once.
    let big = "x".repeat(100_000);
    let sized = upload_shell_robot(
        &server,
        &admin,
        "sized",
        "echo \"big=${#REGENTE_VAR_BIG}\"\n",
        "",
    );
    let id = server.queue(&admin, &runtime, &sized, Some(&text_vars(&[("BIG", &big)])));
    let body = ended(&server, &admin, &runtime, &id);
    assert_eq!(body["status"], "FINISHED", "{}", summary(&body));
    assert_eq!(messages(&body), vec!["big=100000".to_owned()]);
    let third = idle_guards(&agent);

    agent.stop();
    wait_gone(&[("an idle guard of a stopped agent", third[0])], RUN);
    agent.restart();
    agent.wait_welcomed(1, RUN);
    let fourth = idle_guards(&agent);
    agent.kill9();
    wait_gone(
        &[("an idle guard of an agent killed with SIGKILL", fourth[0])],
        Duration::from_secs(5),
    );
}

#[test]
fn a_robot_that_stops_its_guard_is_still_canceled_and_the_agent_goes_on() {
    let (server, admin, runtime, key) = setup();
    // Robots run as the agent's user: one may stop the guard that serves it.
    let script = r#"echo $$ > "$REGENTE_VAR_DIR/robot.pid"
kill -STOP $PPID
echo "guard stopped"
sleep 300
"#;
    let (agent, _out, id, robot_pid) = run_in_dir(
        &server,
        &admin,
        &runtime,
        &key,
        ("guard-stopper", script, ""),
    );
    wait_running_with(&server, &admin, &runtime, &id, "guard stopped");

    // The stopped guard cannot kill the robot: the agent kills both.
    server.delete(&admin, &runtime, &id).expect(200);
    let body = wait_for_status(&server, &admin, &runtime, &id, ENDED, RUN);
    assert_eq!(body["status"], "CANCELED", "{}", summary(&body));
    wait_gone(&[("the robot", robot_pid)], Duration::from_secs(5));
    // The next run gets a guard that works.
    let next = upload_shell_robot(&server, &admin, "after", "echo next\n", "");
    let id = server.queue(&admin, &runtime, &next, None);
    let body = ended(&server, &admin, &runtime, &id);
    assert_eq!(body["status"], "FINISHED", "{}", summary(&body));
    assert_eq!(idle_guards(&agent).len(), 1);
}

/// A one-slot agent whose idle guard is stopped (SIGSTOP), as a robot running
/// as the agent's user could stop it, and a robot that says "ran".
struct StoppedGuard {
    server: TestServer,
    admin: String,
    runtime: String,
    robot: String,
    agent: TestAgent,
    stopped: u32,
}

impl StoppedGuard {
    fn new() -> StoppedGuard {
        let (server, admin, runtime, key) = setup();
        let robot = upload_shell_robot(&server, &admin, "unstarted", "echo ran\n", "");
        let agent = TestAgent::start(&server, &key, 1);
        agent.wait_welcomed(1, RUN);
        let stopped = idle_guards(&agent)[0];
        signal(stopped, "STOP");
        StoppedGuard {
            server,
            admin,
            runtime,
            robot,
            agent,
            stopped,
        }
    }

    /// Queues the robot and waits until the agent hands it to the stopped
    /// guard, which takes the command (or blocks its sender) and never starts it.
    fn hand_over(&self, vars: Option<&Value>) -> String {
        let id = self
            .server
            .queue(&self.admin, &self.runtime, &self.robot, vars);
        self.agent
            .wait_log(&format!("robot started execution={id}"), RUN);
        id
    }

    fn ended(&self, id: &str) -> Value {
        ended(&self.server, &self.admin, &self.runtime, id)
    }

    /// Waits for its end, which comes once the agent's start grace (30 s) has
    /// passed: in error, saying `why`.
    fn given_up(&self, id: &str, why: &str) {
        let body = wait_for_status(&self.server, &self.admin, &self.runtime, id, ENDED, 2 * RUN);
        assert_eq!(body["status"], "ERROR", "{}", summary(&body));
        assert!(
            messages(&body).iter().any(|m| m.contains(why)),
            "{}",
            summary(&body)
        );
    }

    /// The stopped guard is gone, and the robot queued again runs to its end
    /// on a guard that works.
    fn next_run_finishes(&self, vars: Option<&Value>) {
        wait_gone(&[("the stopped guard", self.stopped)], RUN);
        let id = self
            .server
            .queue(&self.admin, &self.runtime, &self.robot, vars);
        let body = self.ended(&id);
        assert_eq!(body["status"], "FINISHED", "{}", summary(&body));
        assert_eq!(messages(&body), vec!["ran".to_owned()]);
        assert_ne!(idle_guards(&self.agent), vec![self.stopped]);
    }
}

/// Variables of 100 KB each making a command twice as long as a socket's
/// send buffer (within the 1 MiB of a request body): the hand-over to a guard
/// that does not read blocks.
fn over_a_send_buffer() -> Value {
    let send_buffer: usize = std::fs::read_to_string("/proc/sys/net/core/wmem_default")
        .expect("the default socket send buffer")
        .trim()
        .parse()
        .expect("a size in bytes");
    let value = "x".repeat(100_000);
    let names: Vec<String> = (0..(2 * send_buffer).div_ceil(100_000).min(9))
        .map(|i| format!("V{i}"))
        .collect();
    text_vars(
        &names
            .iter()
            .map(|name| (name.as_str(), value.as_str()))
            .collect::<Vec<_>>(),
    )
}

#[test]
fn a_run_handed_to_a_stopped_guard_is_still_canceled_and_the_next_run_gets_a_new_guard() {
    let rig = StoppedGuard::new();
    // The guard takes the command but never reports a start: the run must
    // still hear its cancel.
    let id = rig.hand_over(None);
    rig.server.delete(&rig.admin, &rig.runtime, &id).expect(200);
    let body = rig.ended(&id);
    assert_eq!(body["status"], "CANCELED", "{}", summary(&body));
    rig.next_run_finishes(None);
}

/// A guard that takes the command and never says the robot started is given
/// up on after the agent's start grace (30 s): the run ends saying so, the guard
/// is killed, and the next run gets a new one.
#[test]
fn a_guard_that_never_reports_the_start_is_given_up_on() {
    let rig = StoppedGuard::new();
    let id = rig.hand_over(None);
    rig.given_up(&id, "did not report it started within 30 s");
    rig.next_run_finishes(None);
}

/// The same for a command the stopped guard never reads: its send is given
/// up on after the grace, which kills the guard to end the send.
#[test]
fn a_long_command_a_stopped_guard_never_reads_is_given_up_on() {
    let rig = StoppedGuard::new();
    let vars = over_a_send_buffer();
    let id = rig.hand_over(Some(&vars));
    rig.given_up(&id, "did not read the command within 30 s");
    rig.next_run_finishes(Some(&vars));
}

#[test]
fn a_long_command_blocked_on_a_stopped_guard_is_still_canceled() {
    let rig = StoppedGuard::new();
    // The send blocks: the run must still hear its cancel, and kill the guard
    // to end the send.
    let vars = over_a_send_buffer();
    let id = rig.hand_over(Some(&vars));
    rig.server.delete(&rig.admin, &rig.runtime, &id).expect(200);
    let body = rig.ended(&id);
    assert_eq!(body["status"], "CANCELED", "{}", summary(&body));
    // Heard during the hand-over, not after it.
    assert_eq!(
        messages(&body),
        vec!["canceled before the robot started".to_owned()],
        "{}",
        summary(&body)
    );
    rig.next_run_finishes(Some(&vars));
}

#[test]
fn a_long_command_blocked_on_a_stopped_guard_is_fenced_when_the_server_falls_silent() {
    let rig = StoppedGuard::new();
    let vars = over_a_send_buffer();
    let id = rig.hand_over(Some(&vars));
    // A silent server (3 s runtime timeout): the agent fences its runs at 2 s
    // of silence, this one still in its hand-over, which kills the guard at
    // once to end the send. (A run past its hand-over would kill it only after
    // KILL_GRACE, 5 s more.)
    rig.server.pause();
    wait_gone(
        &[("the stopped guard of a fenced run", rig.stopped)],
        Duration::from_secs(5),
    );
    rig.server.resume();
    let body = rig.ended(&id);
    assert_eq!(body["status"], "ERROR", "{}", summary(&body));
    // Heard during the hand-over: not the give-up of a guard that did not read.
    assert!(
        messages(&body).iter().any(|m| m.starts_with("fenced:")),
        "{}",
        summary(&body)
    );
    rig.next_run_finishes(Some(&vars));
}
