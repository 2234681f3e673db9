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
const SHORT_DELAYS: &str =
    "1s,1s,1s,2s,2s,2s,2s,2s,2s,2s,2s,2s,2s,2s,2s,2s,2s,2s,2s,2s,2s,2s,2s,2s,2s,2s,2s,2s,2s,2s";

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
        wait_until(
            DELIVERY_DEADLINE,
            "a fifth of the runs' ends delivered",
            || (finished_seen() >= RUNS / 5).then_some(()),
        );
        server.kill9();
        server.start_again();
        relay.point_to(&server.base);
        killed_at = Some(finished_seen());
        wait_until(
            DELIVERY_DEADLINE,
            "half of the runs' ends delivered",
            || (finished_seen() >= RUNS / 2).then_some(()),
        );
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
    let unavailable = receiver
        .received()
        .iter()
        .filter(|r| r.answered == 503)
        .count();
    assert!(unavailable > 0, "the outage refused some deliveries");

    // Each webhook-id is one event: the same body on every attempt.
    let mut by_id: HashMap<&str, &str> = HashMap::new();
    let mut duplicates = 0;
    for r in &received {
        if let Some(before) = by_id.insert(&r.id, &r.raw_body) {
            duplicates += 1;
            assert_eq!(before, r.raw_body, "webhook-id {} carried two bodies", r.id);
        }
    }
    // One delivery per event, no event queued twice: one end per run; a run
    // whose robot had not started when the server died may start twice (two
    // events, each its own delivery, told apart by their place in the stream).
    let webhook_id = webhook["id"].as_str().unwrap();
    let mut ids_by_event: HashMap<(String, String), HashSet<&str>> = HashMap::new();
    for r in &received {
        let event = (
            r.body["type"].as_str().unwrap().to_owned(),
            r.body["data"]["execution_id"].as_str().unwrap().to_owned(),
        );
        ids_by_event.entry(event).or_default().insert(&r.id);
    }
    let mut restarts = 0;
    for ((kind, execution), ids) in &ids_by_event {
        if ids.len() > 1 {
            assert_eq!(
                kind, "execution.started",
                "{execution} ended twice: {ids:?}"
            );
            let seqs: HashSet<i64> = ids
                .iter()
                .map(|id| {
                    delivery(&api, &token, webhook_id, id)["event_seq"]
                        .as_i64()
                        .unwrap()
                })
                .collect();
            assert_eq!(
                seqs.len(),
                ids.len(),
                "one stream event queued twice: {ids:?}"
            );
            restarts += ids.len() - 1;
        }
    }
    assert_eq!(by_id.len(), 2 * RUNS + restarts, "distinct webhook-ids");
    for r in &received {
        assert!(r.user_agent.starts_with("Regente"), "{}", r.user_agent);
        assert_eq!(r.content_type, "application/json");
        let data = &r.body["data"];
        assert!(
            data["runtime_id"] == runtime && data["robot_id"] == robot,
            "{data}"
        );
        assert!(r.body["timestamp"].is_string());
    }
    eprintln!(
        "webhooks: {RUNS} runs, {} deliveries received ({} distinct, {duplicates} duplicates, \
         {restarts} second starts), {unavailable} refused by the outage, killed after {killed_at:?} ends, outage after \
         {outage_at:?}, in {:?}",
        received.len(),
        by_id.len(),
        started.elapsed()
    );
}

/// Queues a run and waits for its end.
fn run_once(server: &TestServer, s: &Setup) -> String {
    let id = server.queue(&s.token, &s.runtime, &s.robot, None);
    wait_for(Duration::from_secs(30), "the run to end", || {
        let execution = server.execution(&s.token, &id);
        if execution["status"] == "FINISHED" {
            Ok(())
        } else {
            Err(execution["status"].clone())
        }
    });
    id
}

#[test]
fn a_replay_sends_the_same_webhook_id_and_a_rotation_signs_with_both_secrets() {
    let server = server_with_short_delays(&[]);
    let s = setup(&server, 1);
    let receiver = Receiver::start();
    let webhook = create_webhook(&server, &s.token, &receiver.url, &["execution.finished"]);
    let webhook_id = webhook["id"].as_str().unwrap();
    receiver.add_secret(webhook["secret"].as_str().unwrap());
    let execution = run_once(&server, &s);
    let first = wait_until(DELIVERY_DEADLINE, "the end delivered", || {
        receiver.delivered().into_iter().next()
    });
    assert_eq!(first.body["type"], "execution.finished");
    assert_eq!(first.body["data"]["execution_id"], execution.as_str());
    assert_eq!(first.body["data"]["status"], "FINISHED");
    assert_eq!(first.signed_by, vec![true]);

    let listed = wait_for(
        DELIVERY_DEADLINE,
        "the delivery recorded as succeeded",
        || {
            let listed = deliveries(&server, &s.token, webhook_id);
            if listed.len() == 1 && listed[0]["status"] == "succeeded" {
                Ok(listed)
            } else {
                Err(listed)
            }
        },
    );
    assert_eq!(
        listed[0]["id"],
        first.id.as_str(),
        "the delivery id is the webhook-id"
    );
    assert_eq!(listed[0]["last_status_code"], 200);
    let detail = delivery(&server, &s.token, webhook_id, &first.id);
    assert_eq!(detail["attempts_made"].as_array().unwrap().len(), 1);
    assert_eq!(detail["payload"], first.body);

    // A rotation: the new secret answered once, both signatures during the overlap.
    let rotated = server
        .req(
            "POST",
            &format!("/api/admin/webhooks/{webhook_id}/rotate-secret"),
        )
        .auth(&s.token)
        .send()
        .expect(200)
        .json();
    let new_secret = rotated["secret"].as_str().unwrap();
    assert!(new_secret.starts_with("whsec_") && new_secret != webhook["secret"]);
    assert!(
        rotated["previous_secret_until"].as_i64().unwrap()
            > rotated["updated_at"].as_i64().unwrap()
    );
    receiver.add_secret(new_secret);

    server
        .req(
            "POST",
            &format!(
                "/api/admin/webhooks/{webhook_id}/deliveries/{}/replay",
                first.id
            ),
        )
        .auth(&s.token)
        .send()
        .expect(202);
    let again = wait_until(DELIVERY_DEADLINE, "the replay delivered", || {
        receiver.delivered().into_iter().nth(1)
    });
    assert_eq!(again.id, first.id, "a replay keeps the webhook-id");
    assert_eq!(again.raw_body, first.raw_body);
    assert_eq!(
        again.signed_by,
        vec![true, true],
        "old and new secrets both sign"
    );
    wait_for(DELIVERY_DEADLINE, "the replay recorded", || {
        let detail = delivery(&server, &s.token, webhook_id, &first.id);
        let attempts = detail["attempts_made"].as_array().unwrap().len();
        if attempts == 2 && detail["status"] == "succeeded" {
            Ok(())
        } else {
            Err(detail)
        }
    });
    assert!(receiver.refused().is_empty(), "{:?}", receiver.refused());
}

#[test]
fn gone_disables_the_endpoint_and_too_many_requests_waits_for_retry_after() {
    let server = server_with_short_delays(&[]);
    let s = setup(&server, 1);
    let gone = Receiver::start();
    gone.set_mode(Mode::Gone);
    let busy = Receiver::start();
    busy.set_mode(Mode::TooMany {
        retry_after: 3,
        times: 1,
    });
    let gone_hook = create_webhook(&server, &s.token, &gone.url, &["execution.finished"]);
    let busy_hook = create_webhook(&server, &s.token, &busy.url, &["execution.finished"]);
    gone.add_secret(gone_hook["secret"].as_str().unwrap());
    busy.add_secret(busy_hook["secret"].as_str().unwrap());
    let (gone_id, busy_id) = (
        gone_hook["id"].as_str().unwrap(),
        busy_hook["id"].as_str().unwrap(),
    );
    run_once(&server, &s);

    // 410: disabled with a reason, its delivery failed, never tried again.
    let disabled = wait_for(DELIVERY_DEADLINE, "the webhook disabled by its 410", || {
        let hook = server
            .get(&format!("/api/admin/webhooks/{gone_id}"), &s.token)
            .expect(200)
            .json();
        if hook["enabled"] == false {
            Ok(hook)
        } else {
            Err(hook)
        }
    });
    assert!(
        disabled["disabled_reason"]
            .as_str()
            .unwrap()
            .contains("410"),
        "{disabled}"
    );
    let failed = deliveries(&server, &s.token, gone_id);
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["status"], "failed");
    assert_eq!(
        (
            failed[0]["attempts"].as_i64(),
            failed[0]["last_status_code"].as_i64()
        ),
        (Some(1), Some(410))
    );

    // 429 with Retry-After: 3: the next attempt not before 3 s, then success.
    let detail = wait_for(DELIVERY_DEADLINE, "the 429 retried and succeeded", || {
        let listed = deliveries(&server, &s.token, busy_id);
        let Some(first) = listed.first() else {
            return Err(Value::Null);
        };
        let detail = delivery(&server, &s.token, busy_id, first["id"].as_str().unwrap());
        if detail["status"] == "succeeded" {
            Ok(detail)
        } else {
            Err(detail)
        }
    });
    let attempts = detail["attempts_made"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{detail}");
    assert_eq!(attempts[0]["status_code"], 429);
    assert_eq!(attempts[1]["status_code"], 200);
    let waited = attempts[1]["at"].as_i64().unwrap() - attempts[0]["at"].as_i64().unwrap();
    assert!(
        waited >= 3_000,
        "retried after {waited} ms, before the Retry-After"
    );

    // A disabled webhook is sent nothing more: a later run's end reaches the
    // other webhook only.
    let later = run_once(&server, &s);
    wait_until(
        DELIVERY_DEADLINE,
        "the later end delivered to the other",
        || {
            busy.delivered()
                .iter()
                .any(|r| r.body["data"]["execution_id"] == later.as_str())
                .then_some(())
        },
    );
    assert_eq!(deliveries(&server, &s.token, gone_id).len(), 1);
    assert_eq!(gone.received().len(), 1, "no attempt after the 410");
}

#[test]
fn webhooks_refuse_bad_input_and_forbidden_targets_and_keep_their_secret() {
    let server = server_with_short_delays(&[]);
    let token = server.admin_token();
    let create = |body: Value| {
        server
            .req("POST", "/api/admin/webhooks")
            .auth(&token)
            .json(&body)
            .send()
    };
    let url = "http://127.0.0.1:9/hook";
    for (body, field) in [
        (json!({"events": ["execution.finished"]}), "url"),
        (
            json!({"url": "ftp://example.org/", "events": ["execution.finished"]}),
            "url",
        ),
        (
            json!({"url": "not a url", "events": ["execution.finished"]}),
            "url",
        ),
        (
            json!({"url": format!("http://example.org/{}", "a".repeat(2_000)), "events": ["execution.finished"]}),
            "url",
        ),
        (json!({"url": url}), "events"),
        (json!({"url": url, "events": []}), "events"),
        (json!({"url": url, "events": ["*"]}), "events"),
        (
            json!({"url": url, "events": ["execution.exploded"]}),
            "events",
        ),
        (
            json!({"url": url, "events": "execution.finished"}),
            "events",
        ),
        (
            json!({"url": url, "events": ["execution.finished"], "description": "x".repeat(501)}),
            "description",
        ),
        (
            json!({"url": url, "events": ["execution.finished"], "colour": "red"}),
            "colour",
        ),
    ] {
        let reply = create(body.clone());
        let error = assert_error(&reply, 400, "/api/admin/webhooks");
        let message = error["message"].as_str().unwrap();
        assert!(message.starts_with(field), "{body}: {message}");
    }
    let reply = server
        .req("POST", "/api/admin/webhooks")
        .auth(&token)
        .body(b"{not json".to_vec(), "application/json")
        .send();
    assert_error(&reply, 400, "/api/admin/webhooks");

    // Link-local and metadata addresses are refused, unless allowed.
    for target in [
        "http://169.254.169.254/latest/meta-data",
        "http://169.254.10.10/",
        "http://[fe80::1]/hook",
        "http://[fd00:ec2::254]/",
        "http://100.100.100.200/",
    ] {
        let reply = create(json!({"url": target, "events": ["runtime.online"]}));
        let error = assert_error(&reply, 400, "/api/admin/webhooks");
        assert!(
            error["message"].as_str().unwrap().starts_with("url"),
            "{target}: {error}"
        );
    }
    let allowed =
        server_with_short_delays(&[("REGENTE_WEBHOOK_ALLOW_HOSTS", "169.254.169.254,fe80::/10")]);
    let allowed_token = allowed.admin_token();
    for target in ["http://169.254.169.254/", "http://[fe80::1]/"] {
        create_webhook(&allowed, &allowed_token, target, &["runtime.online"]);
    }
    let reply = allowed
        .req("POST", "/api/admin/webhooks")
        .auth(&allowed_token)
        .json(&json!({"url": "http://169.254.1.1/", "events": ["runtime.online"]}))
        .send();
    assert_error(&reply, 400, "/api/admin/webhooks");

    // The secret is answered once: never again, nor logged, nor stored in clear.
    let created = create_webhook(
        &server,
        &token,
        url,
        &["execution.finished", "runtime.online"],
    );
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"));
    let id = created["id"].as_str().unwrap();
    let changed = server
        .req("PATCH", &format!("/api/admin/webhooks/{id}"))
        .auth(&token)
        .json(&json!({"url": "http://127.0.0.1:10/hook", "enabled": false, "description": null}))
        .send()
        .expect(200)
        .json();
    assert_eq!(
        (changed["enabled"].as_bool(), changed["url"].as_str()),
        (Some(false), Some("http://127.0.0.1:10/hook"))
    );
    assert!(changed["description"].is_null());
    let bad_patch = server
        .req("PATCH", &format!("/api/admin/webhooks/{id}"))
        .auth(&token)
        .json(&json!({"events": ["nope"]}))
        .send();
    assert_error(&bad_patch, 400, &format!("/api/admin/webhooks/{id}"));
    let listed = server.get("/api/admin/webhooks", &token).expect(200).text();
    let one = server
        .get(&format!("/api/admin/webhooks/{id}"), &token)
        .expect(200)
        .text();
    for answer in [&listed, &one, &changed.to_string()] {
        assert!(
            !answer.contains(&secret) && !answer.contains("secret\""),
            "{answer}"
        );
    }
    assert!(
        !server.all_stderr().contains(&secret[6..]),
        "the secret in the log"
    );
    if server.database_url().is_none() {
        let stored = std::fs::read_dir(server.data_dir())
            .unwrap()
            .flatten()
            .filter(|entry| {
                entry
                    .file_name()
                    .to_string_lossy()
                    .starts_with("regente.db")
            })
            .map(|entry| std::fs::read(entry.path()).unwrap())
            .collect::<Vec<_>>();
        assert!(!stored.is_empty());
        for bytes in stored {
            assert!(
                !bytes
                    .windows(secret.len() - 6)
                    .any(|w| w == &secret.as_bytes()[6..]),
                "the secret in clear in the store"
            );
        }
    }

    // Another organisation's admin finds nothing.
    server
        .req("POST", "/api/admin/organizations")
        .auth(&token)
        .json(&json!({"name": "Other", "admin_username": "other-admin", "admin_password": "other-admin-password"}))
        .send()
        .expect(201);
    let other = server.login("other-admin", "other-admin-password");
    for (method, path) in [
        ("GET", format!("/api/admin/webhooks/{id}")),
        ("PATCH", format!("/api/admin/webhooks/{id}")),
        ("DELETE", format!("/api/admin/webhooks/{id}")),
        ("POST", format!("/api/admin/webhooks/{id}/rotate-secret")),
        ("GET", format!("/api/admin/webhooks/{id}/deliveries")),
        (
            "GET",
            format!("/api/admin/webhooks/{id}/deliveries/0000000000000000"),
        ),
        (
            "POST",
            format!("/api/admin/webhooks/{id}/deliveries/0000000000000000/replay"),
        ),
    ] {
        let mut request = server.req(method, &path).auth(&other);
        if method == "PATCH" {
            request = request.json(&json!({"enabled": true}));
        }
        assert_error(&request.send(), 404, &path);
    }
    assert_eq!(
        server.get("/api/admin/webhooks", &other).expect(200).json(),
        json!([])
    );
    server
        .req("DELETE", &format!("/api/admin/webhooks/{id}"))
        .auth(&token)
        .send()
        .expect(204);
    server
        .get(&format!("/api/admin/webhooks/{id}"), &token)
        .expect(404);
}
