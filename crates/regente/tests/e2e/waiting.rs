//! Results that wait: `?wait=` on the result route answers at the run's end,
//! and the execution's event stream sends its log lines, progress, return
//! value and status as they happen. The real server and agent as processes.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::agent_runs::{setup, RUN};
use crate::support::*;

/// A robot that logs a line, reports progress, waits for `$GATE/go`, then
/// logs again and returns a JSON value.
const GATED: &str = r#"echo "before the gate"
echo "::progress::30"
while [ ! -e "$REGENTE_VAR_GATE/go" ]; do sleep 0.05; done
echo "after the gate"
echo '::return::{"ok": true}'
"#;
const GATED_MANIFEST: &str = "[[variables]]\nname = \"GATE\"\ntype = \"text\"\n";

/// Queues the gated robot and waits until it runs, held at its gate.
fn running_at_the_gate(
    server: &TestServer,
    admin: &str,
    runtime: &str,
    robot: &str,
    gate: &std::path::Path,
) -> String {
    let body = json!({"variables": [{"name": "GATE", "type": "text", "value": path_text(gate)}]});
    let id = server.queue(admin, runtime, robot, Some(&body));
    wait_for(RUN, "the robot held at its gate", || {
        let body = server.result(admin, runtime, &id).expect(200).json();
        if body["status"] == "RUNNING" && body["progress"] == 30.0 {
            Ok(())
        } else {
            Err(summary(&body))
        }
    });
    id
}

#[test]
fn a_result_asked_to_wait_answers_when_the_run_ends() {
    let (server, admin, runtime, key) = setup();
    let robot = upload_shell_robot(&server, &admin, "gated", GATED, GATED_MANIFEST);
    let _agent = TestAgent::start(&server, &key, 1);
    let gate = scratch();
    let id = running_at_the_gate(&server, &admin, &runtime, &robot, gate.path());

    // A wait that runs out answers the run as it is then.
    let path = format!("/api/integration/v1/result/{runtime}/{id}?wait=1");
    let early = server.get(&path, &admin).expect(200).json();
    assert_eq!(early["status"], "RUNNING", "{}", summary(&early));

    // A waiter whose request is on the server's socket before the gate opens
    // answers the run's end, not its state when asked.
    let mut waiter = TcpStream::connect(server.addr()).unwrap();
    let request = format!(
        "GET /api/integration/v1/result/{runtime}/{id}?wait=60 HTTP/1.1\r\nHost: {}\r\n\
         Authorization: {admin}\r\nConnection: close\r\n\r\n",
        server.addr()
    );
    waiter.write_all(request.as_bytes()).unwrap();
    waiter.flush().unwrap();
    std::fs::write(gate.path().join("go"), "").unwrap();
    waiter.set_read_timeout(Some(RUN)).unwrap();
    let mut answer = String::new();
    waiter
        .read_to_string(&mut answer)
        .expect("the waiting result answers");
    let (head, json_body) = answer.split_once("\r\n\r\n").expect("a head and a body");
    assert!(head.starts_with("HTTP/1.1 200"), "{answer}");
    let body: Value = serde_json::from_str(json_body).expect("a JSON body");
    assert_eq!(body["status"], "FINISHED", "{}", summary(&body));
    assert_eq!(body["returnValue"], json!({"ok": true}));
    assert_eq!(messages(&body), ["before the gate", "after the gate"]);

    // An ended run answers at once, whatever the wait.
    let path = format!("/api/integration/v1/result/{runtime}/{id}?wait=60");
    let again = server.get(&path, &admin).expect(200).json();
    assert_eq!(again["status"], "FINISHED");
}

#[test]
fn a_bad_wait_is_a_400_naming_it() {
    let server = InProcessServer::start();
    let admin = server.admin_token();
    let (runtime, _) = server.create_runtime(&admin, "rt");
    let robot = upload_shell_robot(&server, &admin, "never-run", "true\n", "");
    let id = server.queue(&admin, &runtime, &robot, None);
    let path = format!("/api/integration/v1/result/{runtime}/{id}");
    for wait in ["61", "-1", "soon", "1.5", ""] {
        let reply = server.get(&format!("{path}?wait={wait}"), &admin);
        let body = assert_error(&reply, 400, &path);
        assert!(message(&body).contains("wait"), "{body}");
    }
    let path = format!("/api/integration/v2/executions/{id}/events");
    for after in ["-1", "x"] {
        let reply = server.get(&format!("{path}?after={after}"), &admin);
        let body = assert_error(&reply, 400, &path);
        assert!(message(&body).contains("after"), "{body}");
    }
    let reply = server
        .req("GET", &path)
        .auth(&admin)
        .header("Last-Event-ID", b"yesterday")
        .send();
    let body = assert_error(&reply, 400, &path);
    assert!(message(&body).contains("Last-Event-ID"), "{body}");
    let reply = server.req("GET", &path).send();
    assert_error(&reply, 401, &path);
    let unknown = "/api/integration/v2/executions/0123456789abcdef/events";
    assert_error(&server.get(unknown, &admin), 404, unknown);
    let unknown = format!("/api/integration/v1/result/{runtime}/0123456789abcdef");
    let reply = server.get(&format!("{unknown}?wait=30"), &admin);
    assert_error(&reply, 404, &unknown);
}

/// One event of the stream: its kind, id and data.
#[derive(Debug, Clone)]
struct Sse {
    kind: String,
    id: String,
    data: Value,
}

/// Reads an event stream on a thread of its own, each event sent on the
/// channel as it comes; the channel closes when the server ends the stream.
fn read_events(url: String, token: String, last_event_id: Option<String>) -> mpsc::Receiver<Sse> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let client = reqwest::blocking::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(120))
            .build()
            .unwrap();
        let mut request = client.get(url).header("Authorization", token);
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id);
        }
        let response = request.send().expect("the event stream opens");
        assert_eq!(response.status(), 200);
        let content_type = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            content_type.starts_with("text/event-stream"),
            "{content_type}"
        );
        let (mut kind, mut id, mut data) = (String::new(), String::new(), String::new());
        for line in BufReader::new(response).lines() {
            let line = line.expect("the stream reads");
            if line.is_empty() {
                if !data.is_empty() {
                    let data = serde_json::from_str(&data).expect("events carry JSON");
                    let event = Sse {
                        kind: std::mem::take(&mut kind),
                        id: id.clone(),
                        data,
                    };
                    if tx.send(event).is_err() {
                        return;
                    }
                }
                data.clear();
            } else if let Some(value) = line.strip_prefix("event: ") {
                kind = value.to_owned();
            } else if let Some(value) = line.strip_prefix("id: ") {
                id = value.to_owned();
            } else if let Some(value) = line.strip_prefix("data: ") {
                data.push_str(value);
            }
        }
    });
    rx
}

/// Every event until the server ends the stream.
fn until_the_end(events: &mpsc::Receiver<Sse>) -> Vec<Sse> {
    let mut all = Vec::new();
    loop {
        match events.recv_timeout(RUN) {
            Ok(event) => all.push(event),
            Err(mpsc::RecvTimeoutError::Disconnected) => return all,
            Err(mpsc::RecvTimeoutError::Timeout) => panic!("the stream did not end: {all:?}"),
        }
    }
}

#[test]
fn the_event_stream_sends_a_run_as_it_goes_and_resumes_after_its_last_line() {
    let (server, admin, runtime, key) = setup();
    let robot = upload_shell_robot(&server, &admin, "gated", GATED, GATED_MANIFEST);
    let _agent = TestAgent::start(&server, &key, 1);
    let gate = scratch();
    let id = running_at_the_gate(&server, &admin, &runtime, &robot, gate.path());
    let url = server.url(&format!("/api/integration/v2/executions/{id}/events"));

    let events = read_events(url.clone(), admin.clone(), None);
    // Before the gate opens: the first line, the progress, RUNNING.
    let mut seen = Vec::new();
    while !seen.iter().any(|e: &Sse| e.kind == "status") {
        seen.push(events.recv_timeout(RUN).expect("the stream's first events"));
    }
    let first = &seen[0];
    assert_eq!(first.kind, "log", "{seen:?}");
    assert_eq!(first.data["message"], "before the gate");
    assert!(
        seen.iter()
            .any(|e| e.kind == "progress" && e.data["progress"] == 30.0),
        "{seen:?}"
    );
    assert_eq!(seen.last().unwrap().data["status"], "RUNNING", "{seen:?}");

    std::fs::write(gate.path().join("go"), "").unwrap();
    seen.extend(until_the_end(&events));
    let lines: Vec<&Value> = seen
        .iter()
        .filter(|e| e.kind == "log")
        .map(|e| &e.data["message"])
        .collect();
    assert_eq!(
        lines,
        ["before the gate", "after the gate"],
        "each line once, in order"
    );
    let seqs: Vec<i64> = seen
        .iter()
        .filter(|e| e.kind == "log")
        .map(|e| e.data["seq"].as_i64().unwrap())
        .collect();
    assert!(seqs[0] < seqs[1], "{seqs:?}");
    let returned = seen
        .iter()
        .position(|e| e.kind == "return")
        .expect("a return event");
    assert_eq!(seen[returned].data["returnValue"], json!({"ok": true}));
    let last = seen.last().unwrap();
    assert_eq!(
        last.kind, "status",
        "the final status ends the stream: {seen:?}"
    );
    assert_eq!(last.data["status"], "FINISHED");
    assert!(returned < seen.len() - 1);
    assert_eq!(
        last.id,
        seqs[1].to_string(),
        "ids are the last line's sequence"
    );

    // Reconnecting after the first line: the second line, then the state.
    let resumed = until_the_end(&read_events(url, admin.clone(), Some(seqs[0].to_string())));
    let lines: Vec<&Value> = resumed
        .iter()
        .filter(|e| e.kind == "log")
        .map(|e| &e.data["message"])
        .collect();
    assert_eq!(lines, ["after the gate"], "{resumed:?}");
    assert_eq!(resumed.last().unwrap().data["status"], "FINISHED");
}
