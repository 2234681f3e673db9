//! Network partitions between an agent and its server, through a relay the
//! test controls: nothing crosses it and nothing is closed. A short one
//! changes nothing; a long one makes the agent stop its robot (self-fencing)
//! before the server declares the runtime lost, so that a retry never runs
//! beside the first attempt; and the server declares it lost within the
//! runtime timeout of the last word it heard.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::agent_faults::{hold_for, relayed, LINES, RUN};
use crate::support::*;

/// Records its start (ledger line, and the time in `start.N`); a first attempt
/// prints `line N` and writes the time to `tick` every 0.1 s for 300 s, a
/// later one returns at once.
const TICKER: &str = r#"echo "$REGENTE_EXECUTION_ID" >> "$REGENTE_VAR_LEDGER"
n=$(grep -c "$REGENTE_EXECUTION_ID" "$REGENTE_VAR_LEDGER")
d="$REGENTE_VAR_DIR/$REGENTE_EXECUTION_ID"
mkdir -p "$d"
date +%s%3N > "$d/start.$n"
echo "attempt $n"
if [ "$n" -eq 1 ]; then
  echo $$ > "$d/robot.pid"
  i=0
  while [ $i -lt 3000 ]; do
    i=$((i+1))
    echo "line $i"
    date +%s%3N > "$d/tick.tmp" && mv "$d/tick.tmp" "$d/tick"
    sleep 0.1
  done
fi
echo "::return::{\"attempt\": $n}"
"#;

fn millis_in(path: &std::path::Path) -> i64 {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The time of the first log line holding `text`.
fn log_time(body: &Value, text: &str) -> i64 {
    body["logs"]
        .as_array()
        .and_then(|logs| {
            logs.iter().find(|l| {
                l["message"]
                    .as_str()
                    .is_some_and(|message| message.contains(text))
            })
        })
        .and_then(|l| l["time"].as_i64())
        .unwrap_or_else(|| panic!("no log line with {text:?}: {}", summary(body)))
}

#[test]
fn a_five_second_partition_stops_nothing_and_loses_nothing() {
    // The default runtime timeout (30 s): the agent fences at 20 s of silence.
    let server = TestServer::start();
    let (rig, relay, agent, id) = relayed(&server, LINES, "");

    relay.partition();
    let at_partition = rig.count(&id);
    hold_for(Duration::from_secs(5), || {
        assert_eq!(rig.result(&server, &id)["status"], "RUNNING");
    });
    assert!(
        rig.count(&id) > at_partition + 20,
        "the robot ran on through the partition ({at_partition} -> {})",
        rig.count(&id)
    );
    relay.heal();
    let healed = rig.count(&id);
    rig.wait_lines_above(&server, &id, healed, RUN);
    rig.finish_and_check(&server, &id);
    assert!(
        !agent.stderr().contains("fenced"),
        "nothing fenced:\n{}",
        tail(&agent.stderr(), 20)
    );
}

#[test]
fn a_seventy_second_partition_fences_the_robot_before_the_server_runs_it_again() {
    // The default runtime timeout (30 s) and a robot that allows a retry: once
    // the server declares the runtime lost, the run goes back to the queue,
    // and a second copy could start at once. The first must be gone by then.
    let server = TestServer::start();
    let (rig, relay, agent, id) = relayed(&server, TICKER, "retries = 1");
    let robot = wait_for_pid_file(&rig.dir(&id).join("robot.pid"), RUN);

    relay.partition();
    let partitioned = Instant::now();
    let lost = wait_for(Duration::from_secs(45), "the runtime declared lost", || {
        let body = rig.result(&server, &id);
        if messages(&body).iter().any(|m| m.contains("runtime lost")) {
            Ok(body)
        } else {
            Err(summary(&body))
        }
    });
    assert!(
        !pid_alive(robot),
        "the robot still runs on the cut-off machine when its run may start again elsewhere"
    );
    let last_tick = millis_in(&rig.dir(&id).join("tick"));
    let lost_at = log_time(&lost, "runtime lost");
    assert!(
        last_tick < lost_at,
        "the robot's last sign of life ({last_tick}) comes before the server gave up ({lost_at})"
    );
    assert!(
        agent.stderr().contains("fenced"),
        "the agent says it fenced its robot:\n{}",
        tail(&agent.stderr(), 20)
    );

    // The partition lasts 70 s in all; then the agent reconnects, learns that
    // its lease ended, and the retry runs, once.
    hold_for(
        Duration::from_secs(70).saturating_sub(partitioned.elapsed()),
        || {},
    );
    relay.heal();
    let body = rig.wait_status(&server, &id, Duration::from_secs(60));
    assert_eq!(body["status"], "FINISHED", "{}", summary(&body));
    assert_eq!(body["returnValue"], json!({"attempt": 2}));
    assert_eq!(ledger_count(&rig.ledger_path(), &id), 2, "two starts");
    let second_start = millis_in(&rig.dir(&id).join("start.2"));
    assert!(
        last_tick < second_start,
        "the first attempt was gone ({last_tick}) before the second started ({second_start})"
    );
}

#[test]
fn a_partitioned_runtime_is_lost_within_the_timeout_of_the_last_word_heard() {
    const TIMEOUT_MS: i64 = 6000;
    let server = TestServer::start_with(&[("REGENTE_RUNTIME_TIMEOUT_SECONDS", "6")]);
    let (rig, relay, agent, id) = relayed(&server, TICKER, "");
    relay.partition();
    let body = rig.wait_status(&server, &id, Duration::from_secs(20));
    assert_eq!(body["status"], "ERROR", "{}", summary(&body));
    let ended = body["end"].as_i64().expect("an end time");
    let last_word = relay.last_to_server_millis();
    assert!(
        ended - last_word <= TIMEOUT_MS,
        "ended {} ms after the last word the server heard: more than the {TIMEOUT_MS} ms timeout",
        ended - last_word
    );
    // Not sooner than the timeout allows (two sweep periods of 200 ms short of it, and a margin).
    assert!(
        ended - last_word >= TIMEOUT_MS - 1000,
        "ended {} ms after the last word: too soon",
        ended - last_word
    );
    let last_tick = millis_in(&rig.dir(&id).join("tick"));
    assert!(
        last_tick < ended,
        "the robot was fenced ({last_tick}) before the server gave up ({ended})"
    );
    assert!(agent.stderr().contains("fenced"));
    relay.heal();
}
