//! Webhooks end to end: the real server sends signed deliveries to a receiver
//! of the test's own (`webhook_receiver`), which checks every signature with
//! its own HMAC. A thousand runs' events all arrive through a SIGKILL of the
//! server and a 30 s outage of the receiver; replays keep their `webhook-id`;
//! 410 disables; 429's Retry-After is waited for; secrets show once and never
//! in clear; bad targets and bodies are refused; another organisation's
//! webhook is not found.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::*;
use crate::webhook_receiver::{Mode, Receiver, DELIVERY_DEADLINE};

/// Short waits between attempts, many of them: a 30 s outage is outlived.
const SHORT_DELAYS: &str = "1s,1s,1s,2s,2s,2s,2s,2s,2s,2s,2s,2s,2s,2s,2s,2s,2s,2s,2s,2s,2s,2s,2s,2s,2s,2s,2s,2s,2s,2s";

fn server_with_short_delays(extra: &[(&str, &str)]) -> TestServer {
    let mut env = vec![("REGENTE_WEBHOOK_RETRY_DELAYS", SHORT_DELAYS)];
    env.extend_from_slice(extra);
    TestServer::start_with(&env)
}

/// Creates a webhook and answers its body (with the secret).
fn create_webhook(api: &Api, token: &str, url: &str, events: &[&str]) -> Value {
    let reply = api
        .req("POST", "/api/admin/webhooks")
        .auth(token)
        .json(&json!({"url": url, "events": events, "description": "test receiver"}))
        .send();
    assert_eq!(reply.status, 201, "create webhook: {}", reply.text());
    reply.json()
}

fn deliveries(api: &Api, token: &str, webhook: &str) -> Vec<Value> {
    api.get(&format!("/api/admin/webhooks/{webhook}/deliveries"), token)
        .expect(200)
        .json()["deliveries"]
        .as_array()
        .unwrap()
        .clone()
}

fn delivery(api: &Api, token: &str, webhook: &str, id: &str) -> Value {
    api.get(
        &format!("/api/admin/webhooks/{webhook}/deliveries/{id}"),
        token,
    )
    .expect(200)
    .json()
}

/// A runtime with an agent and a robot that does nothing.
struct Setup {
    token: String,
    runtime: String,
    robot: String,
    _agent: TestAgent,
}

fn setup(server: &TestServer, slots: u32) -> Setup {
    let token = server.admin_token();
    let (runtime, key) = server.create_runtime_with_slots(&token, "rt-hooks", slots);
    let robot = upload_shell_robot(server, &token, "noop", "true\n", "");
    let agent = TestAgent::start(server, &key, slots);
    Setup {
        token,
        runtime,
        robot,
        _agent: agent,
    }
}

/// The execution ids of the deliveries received of this type.
fn executions_of(received: &[crate::webhook_receiver::Received], kind: &str) -> HashSet<String> {
    received
        .iter()
        .filter(|r| r.body["type"] == kind)
        .map(|r| r.body["data"]["execution_id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn every_event_of_a_thousand_runs_arrives_through_a_kill_and_an_outage() {
    const RUNS: usize = 1_000;
    let mut server = server_with_short_delays(&[]);
    let relay = Relay::start(&server.base);
    let api = Api::new(&relay.url());
    let token = server.admin_token();
    let (runtime, key) = server.create_runtime_with_slots(&token, "rt-hooks", 8);
    let robot = upload_shell_robot(&server, &token, "noop", "true\n", "");
    let receiver = Receiver::start();
    let webhook = create_webhook(
        &api,
        &token,
        &receiver.url,
        &["execution.started", "execution.finished"],
    );
    receiver.add_secret(webhook["secret"].as_str().unwrap());
    let _agent = TestAgent::start_on(&[relay.url()], &key, 8);

    let next = AtomicUsize::new(0);
    let acknowledged: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let finished_seen = || executions_of(&receiver.delivered(), "execution.finished").len();
    let started = Instant::now();
    let (mut killed_at, mut outage_at) = (None, None);
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= RUNS {
                    return;
                }
                let key = format!("hooks-{i}");
                let id = wait_for_every(
                    Duration::from_millis(20),
                    Duration::from_secs(120),
                    &format!("run {i} to be acknowledged"),
                    || {
                        let reply = api
                            .run_request("v2", &token, &runtime, &robot, None)
                            .header("idempotency-key", key.as_bytes())
                            .try_send()?;
                        match reply.status {
                            200 => Ok(reply.json()["id"].as_str().expect("an id").to_owned()),
                            503 => Err(format!("503 {}", reply.text())),
                            other => panic!("run {i}: {other} {}", reply.text()),
                        }
                    },
                );
                acknowledged.lock().unwrap().push(id);
            });
        }
        // A SIGKILL while deliveries flow, then the receiver down for 30 s.
        wait_until(DELIVERY_DEADLINE, "a fifth of the runs' ends delivered", || {
            (finished_seen() >= RUNS / 5).then_some(())
        });
        server.kill9();
        server.start_again();
        relay.point_to(&server.base);
        killed_at = Some(finished_seen());
        wait_until(DELIVERY_DEADLINE, "half of the runs' ends delivered", || {
            (finished_seen() >= RUNS / 2).then_some(())
        });
        receiver.set_mode(Mode::UnavailableUntil(
            Instant::now() + Duration::from_secs(30),
        ));
        outage_at = Some(finished_seen());
    });
    let ids: HashSet<String> = acknowledged.into_inner().unwrap().into_iter().collect();
    assert_eq!(ids.len(), RUNS);

    let received = wait_for(
        Duration::from_secs(120),
        "every run's start and end to be delivered",
        || {
            let delivered = receiver.delivered();
            let finished = executions_of(&delivered, "execution.finished");
            let begun = executions_of(&delivered, "execution.started");
            if finished == ids && begun == ids {
                Ok(delivered)
            } else {
                Err(format!(
                    "{} ends and {} starts of {RUNS}",
                    finished.len(),
                    begun.len()
                ))
            }
        },
    );
    assert!(receiver.refused().is_empty(), "{:?}", receiver.refused());
    let unavailable = receiver.received().iter().filter(|r| r.answered == 503).count();
    assert!(unavailable > 0, "the outage refused some deliveries");

    // Each webhook-id is one event: the same body on every attempt.
    let mut by_id: HashMap<&str, &str> = HashMap::new();
    let mut duplicates = 0;
    for r in &received {
        match by_id.insert(&r.id, &r.raw_body) {
            Some(before) => {
                duplicates += 1;
                assert_eq!(before, r.raw_body, "webhook-id {} carried two bodies", r.id);
            }
            None => {}
        }
    }
    // One delivery per event: two types per run, no event queued twice.
    assert_eq!(by_id.len(), 2 * RUNS, "distinct webhook-ids");
    for r in &received {
        assert!(r.user_agent.starts_with("Regente"), "{}", r.user_agent);
        assert_eq!(r.content_type, "application/json");
        let data = &r.body["data"];
        assert!(data["runtime_id"] == runtime && data["robot_id"] == robot, "{data}");
        assert!(r.body["timestamp"].is_string());
    }
    eprintln!(
        "webhooks: {RUNS} runs, {} deliveries received ({} distinct, {duplicates} duplicates), \
         {unavailable} refused by the outage, killed after {killed_at:?} ends, outage after \
         {outage_at:?}, in {:?}",
        received.len(),
        by_id.len(),
        started.elapsed()
    );
}
