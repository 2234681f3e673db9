//! `/metrics`: off without a token, refused without the right one, and in
//! Prometheus' text format (read by an independent parser) with counts that
//! match what was done; the store's counters survive a restart.

use std::collections::HashMap;

use prometheus_parse::{Scrape, Value};

use crate::agent_runs::{ended, RUN};
use crate::support::*;

const TOKEN: &str = "metrics-token-for-the-tests-0123456789";

/// Scrapes `/metrics` and parses it.
fn scrape_metrics(server: &TestServer) -> Scrape {
    let reply = server
        .req("GET", "/metrics")
        .auth(&format!("Bearer {TOKEN}"))
        .send()
        .expect(200);
    assert!(
        reply
            .content_type()
            .starts_with("text/plain; version=0.0.4"),
        "{}",
        reply.content_type()
    );
    let text = reply.text();
    // Route templates are label values with braces, as the format allows.
    assert!(
        text.lines().any(|line| line.starts_with(&format!(
            "regente_http_requests_total{{route=\"{RESULT_ROUTE}\""
        ))) || !text.contains("/api/integration/v1/result/"),
        "{text}"
    );
    let lines = text
        .lines()
        .map(|l| Ok(without_braces_in_values(l)))
        .collect::<Vec<_>>();
    Scrape::parse(lines.into_iter()).expect("the exposition parses")
}

/// The line with `{` and `}` inside label values made `(` and `)`:
/// prometheus-parse 0.2 reads a label set up to its first `}`, wherever it is.
fn without_braces_in_values(line: &str) -> String {
    let mut quoted = false;
    let mut escaped = false;
    line.chars()
        .map(|c| {
            let was_escaped = std::mem::take(&mut escaped);
            match c {
                '\\' if quoted && !was_escaped => escaped = true,
                '"' if !was_escaped => quoted = !quoted,
                '{' if quoted => return '(',
                '}' if quoted => return ')',
                _ => {}
            }
            c
        })
        .collect()
}

/// The one sample of `name` whose labels include `labels`, if any.
fn sample<'a>(scrape: &'a Scrape, name: &str, labels: &[(&str, &str)]) -> Option<&'a Value> {
    let found: Vec<&Value> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| &s.value)
        .collect();
    assert!(found.len() <= 1, "{name} {labels:?}: {found:?}");
    found.first().copied()
}

/// The value of the one sample of `name` whose labels include `labels`.
fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    sample(scrape, name, labels).map(|found| match found {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
        other => panic!("{name} is not a single value: {other:?}"),
    })
}

/// Ended executions by (robot, status).
fn ended_by_status(scrape: &Scrape) -> HashMap<(String, String), f64> {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == "regente_executions_ended_total")
        .map(|s| match &s.value {
            Value::Counter(v) => {
                let label = |name| s.labels.get(name).unwrap().to_owned();
                ((label("robot"), label("status")), *v)
            }
            other => panic!("a counter: {other:?}"),
        })
        .collect()
}

/// The `+Inf` bucket (the count) of the one histogram sample of `name` whose
/// labels include `labels`.
fn histogram_count(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    sample(scrape, name, labels).map(|found| match found {
        Value::Histogram(buckets) => {
            let infinite = buckets.iter().find(|b| b.less_than == f64::INFINITY);
            infinite.expect("a +Inf bucket").count
        }
        other => panic!("{name} is not a histogram: {other:?}"),
    })
}

const RESULT_ROUTE: &str = "/api/integration/v1/result/{runtime_id}/{execution_id}";
/// [`RESULT_ROUTE`] as parsed (see [`without_braces_in_values`]).
const RESULT_ROUTE_PARSED: &str = "/api/integration/v1/result/(runtime_id)/(execution_id)";

#[test]
fn metrics_count_what_was_done_and_the_store_s_counters_survive_a_restart() {
    let mut server = TestServer::start_with(&[
        ("REGENTE_METRICS_TOKEN", TOKEN),
        ("REGENTE_RUNTIME_TIMEOUT_SECONDS", "3"),
    ]);
    let admin = server.admin_token();
    let (runtime, key) = server.create_runtime(&admin, "with-agent");
    let (idle, _) = server.create_runtime(&admin, "without-agent");
    let ok = upload_shell_robot(&server, &admin, "ok", "echo fine\n", "");
    let fails = upload_shell_robot(&server, &admin, "fails", "exit 3\n", "");
    let agent = TestAgent::start(&server, &key, 1);
    let mut last = String::new();
    for robot in [&ok, &ok, &fails] {
        last = server.queue(&admin, &runtime, robot, None);
        ended(&server, &admin, &runtime, &last);
    }
    let canceled = server.queue(&admin, &idle, &ok, None);
    server.delete(&admin, &idle, &canceled).expect(200);
    let _waiting = server.queue(&admin, &idle, &ok, None);

    for authorization in [None, Some("Bearer wrong-token"), Some(TOKEN)] {
        let mut request = server.req("GET", "/metrics");
        if let Some(value) = authorization {
            request = request.auth(value);
        }
        assert_error(&request.send(), 401, "/metrics");
    }

    // Requests are counted under their route's template, whatever the ids.
    let result_reads = |scrape: &Scrape| {
        let labels = [
            ("route", RESULT_ROUTE_PARSED),
            ("method", "GET"),
            ("status", "200"),
        ];
        value(scrape, "regente_http_requests_total", &labels).unwrap_or(0.0)
    };
    let before = result_reads(&scrape_metrics(&server));
    for _ in 0..5 {
        server.result(&admin, &runtime, &last).expect(200);
    }
    for _ in 0..4 {
        let reply = server.req("GET", "/api/no/such/route").auth(&admin).send();
        assert_error(&reply, 404, "/api/no/such/route");
    }

    let scrape = scrape_metrics(&server);
    assert_eq!(result_reads(&scrape) - before, 5.0);
    let latencies = [("route", RESULT_ROUTE_PARSED), ("method", "GET")];
    assert!(
        histogram_count(&scrape, "regente_http_request_duration_seconds", &latencies).unwrap()
            >= 5.0
    );
    let unmatched = [("route", "unmatched"), ("method", "GET"), ("status", "404")];
    assert_eq!(
        value(&scrape, "regente_http_requests_total", &unmatched),
        Some(4.0)
    );
    let refused = [("route", "/metrics"), ("method", "GET"), ("status", "401")];
    assert_eq!(
        value(&scrape, "regente_http_requests_total", &refused),
        Some(3.0),
        "the three refused scrapes"
    );
    let ended_now = ended_by_status(&scrape);
    let expected: HashMap<(String, String), f64> = [
        (&ok, "FINISHED", 2.0),
        (&fails, "ERROR", 1.0),
        (&ok, "CANCELED", 1.0),
    ]
    .map(|(robot, status, n)| ((robot.clone(), status.to_owned()), n))
    .into();
    assert_eq!(ended_now, expected);
    assert_eq!(
        value(&scrape, "regente_executions", &[("status", "PENDENT")]),
        Some(1.0)
    );
    assert_eq!(
        value(&scrape, "regente_executions", &[("status", "RUNNING")]),
        None
    );
    // The three runs that started ran and waited; the canceled one did neither.
    for name in [
        "regente_execution_duration_seconds",
        "regente_execution_queue_wait_seconds",
    ] {
        assert_eq!(histogram_count(&scrape, name, &[]), Some(3.0), "{name}");
    }
    assert_eq!(
        value(&scrape, "regente_runtime_connections", &[]),
        Some(1.0)
    );
    assert_eq!(
        value(&scrape, "regente_runtimes", &[("state", "online")]),
        Some(1.0)
    );
    assert_eq!(
        value(&scrape, "regente_runtimes", &[("state", "offline")]),
        Some(1.0)
    );
    assert_eq!(
        value(&scrape, "regente_leases_expired_total", &[]),
        Some(0.0)
    );
    let commits = histogram_count(&scrape, "regente_store_commit_duration_seconds", &[]);
    if std::env::var("REGENTE_E2E_DATABASE").as_deref() == Ok("postgres") {
        assert_eq!(commits, None, "PostgreSQL's commits are not timed");
    } else {
        assert!(commits.unwrap() >= 4.0, "{commits:?}");
    }

    // A schedule's fire is counted with its lag; the idle runtime's queue
    // keeps it PENDENT, so every later fire of it is skipped.
    let definition = serde_json::json!({
        "name": "every second",
        "robot_id": ok,
        "runtime_id": idle,
        "cron": "* * * * * *",
        "overlap": "skip",
    });
    let schedule = server
        .req("POST", "/api/admin/schedules")
        .auth(&admin)
        .json(&definition)
        .send()
        .expect(201)
        .json();
    let schedule = schedule["id"].as_str().expect("an id").to_owned();
    let fired = wait_for(RUN, "a fire and a skip of the schedule", || {
        let scrape = scrape_metrics(&server);
        let count = |outcome| {
            let labels = [("outcome", outcome)];
            value(&scrape, "regente_schedule_fires_total", &labels)
        };
        match (count("fired"), count("skipped")) {
            (Some(1.0), Some(skipped)) if skipped >= 1.0 => Ok(scrape),
            other => Err(format!("{other:?}")),
        }
    });
    assert_eq!(
        histogram_count(&fired, "regente_schedule_fire_lag_seconds", &[]),
        Some(1.0)
    );
    server
        .req("DELETE", &format!("/api/admin/schedules/{schedule}"))
        .auth(&admin)
        .send()
        .expect(204);

    // The store's counters are the store's: a restarted server shows them
    // again; its own answers start from nothing.
    server.restart();
    let again = wait_for(RUN, "a scrape after the restart", || {
        let scrape = scrape_metrics(&server);
        if ended_by_status(&scrape).len() == 3 {
            Ok(scrape)
        } else {
            Err(format!("{:?}", ended_by_status(&scrape)))
        }
    });
    assert_eq!(ended_by_status(&again), expected);
    assert_eq!(value(&again, "regente_http_requests_total", &refused), None);

    // A runtime that goes silent mid-run: the sweeper ends its lease, once.
    drop(agent);
    let mut agent = TestAgent::start(&server, &key, 1);
    let sleeps = upload_shell_robot(&server, &admin, "sleeps", "echo asleep\nsleep 300\n", "");
    let sleeping = server.queue(&admin, &runtime, &sleeps, None);
    // RUNNING alone may precede the agent's own start (a start committed at
    // the hand-out): a robot's line says it was spawned.
    wait_for(RUN, "the robot's first line", || {
        let body = result_of(&server, &admin, &runtime, &sleeping);
        if messages(&body).iter().any(|m| m == "asleep") {
            Ok(())
        } else {
            Err(summary(&body))
        }
    });
    agent.kill9();
    ended(&server, &admin, &runtime, &sleeping);
    let lost = scrape_metrics(&server);
    assert_eq!(value(&lost, "regente_leases_expired_total", &[]), Some(1.0));
    assert_eq!(
        value(&lost, "regente_runtimes", &[("state", "offline")]),
        Some(2.0)
    );
}

#[test]
fn metrics_are_off_without_a_token() {
    let server = InProcessServer::start();
    let admin = server.admin_token();
    let reply = server.req("GET", "/metrics").auth(&admin).send();
    let body = assert_error(&reply, 404, "/metrics");
    assert!(message(&body).contains("REGENTE_METRICS_TOKEN"), "{body}");
}
