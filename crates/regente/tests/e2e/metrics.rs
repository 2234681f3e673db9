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
    let lines = reply
        .text()
        .lines()
        .map(|l| Ok(l.to_owned()))
        .collect::<Vec<_>>();
    Scrape::parse(lines.into_iter()).expect("the exposition parses")
}

/// The value of the one sample of `name` whose labels include `labels`.
fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let found: Vec<f64> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match &s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            other => panic!("{name} is not a single value: {other:?}"),
        })
        .collect();
    assert!(found.len() <= 1, "{name} {labels:?}: {found:?}");
    found.first().copied()
}

fn ended_by_status(scrape: &Scrape) -> HashMap<String, f64> {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == "regente_executions_ended_total")
        .map(|s| match &s.value {
            Value::Counter(v) => (s.labels.get("status").unwrap().to_owned(), *v),
            other => panic!("a counter: {other:?}"),
        })
        .collect()
}

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
    let _agent = TestAgent::start(&server, &key, 1);
    for robot in [&ok, &ok, &fails] {
        let id = server.queue(&admin, &runtime, robot, None);
        ended(&server, &admin, &runtime, &id);
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

    let scrape = scrape_metrics(&server);
    let ended = ended_by_status(&scrape);
    let expected: HashMap<String, f64> = [("FINISHED", 2.0), ("ERROR", 1.0), ("CANCELED", 1.0)]
        .map(|(s, n)| (s.to_owned(), n))
        .into();
    assert_eq!(ended, expected);
    assert_eq!(
        value(&scrape, "regente_executions", &[("status", "PENDENT")]),
        Some(1.0)
    );
    assert_eq!(
        value(&scrape, "regente_executions", &[("status", "RUNNING")]),
        None
    );
    let durations = scrape
        .samples
        .iter()
        .find(|s| s.metric == "regente_execution_duration_seconds")
        .expect("the duration histogram");
    match &durations.value {
        Value::Histogram(buckets) => {
            let infinite = buckets.iter().find(|b| b.less_than == f64::INFINITY);
            assert_eq!(infinite.map(|b| b.count), Some(3.0), "{buckets:?}");
        }
        other => panic!("a histogram: {other:?}"),
    }
    assert_eq!(
        value(&scrape, "regente_runtime_connections", &[]),
        Some(1.0)
    );
    assert_eq!(
        value(&scrape, "regente_http_responses_total", &[("code", "401")]),
        Some(3.0),
        "the three refused scrapes"
    );
    assert!(value(&scrape, "regente_http_responses_total", &[("code", "200")]).unwrap() > 0.0);

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
    assert_eq!(
        value(&again, "regente_http_responses_total", &[("code", "401")]),
        None
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
