//! Schedules through the API: a schedule fires ordinary runs (read through the
//! Integration API's result route, with `schedule_id` and `scheduled_for` in
//! the admin API), answers its next and last fires, is paused with a note,
//! triggered, backfilled, resumed and deleted; bad definitions are refused
//! naming the field, and another organisation's objects are not found. The
//! fires of several replicas are in `replicas/schedules.rs`.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::*;

const RUN: Duration = Duration::from_secs(30);

/// Prints its greeting and returns its execution id.
const GREETER: &str = r#"echo "greeting: $REGENTE_VAR_GREETING"
echo "::return::\"$REGENTE_EXECUTION_ID\""
"#;

fn schedule_path(id: &str, tail: &str) -> String {
    format!("/api/admin/schedules/{id}{tail}")
}

fn send(api: &Api, method: &str, path: &str, token: &str, body: Option<&Value>) -> Reply {
    let request = api.req(method, path).auth(token);
    match body {
        Some(body) => request.json(body).send(),
        None => request.send(),
    }
}

/// The runs a schedule queued, oldest fire first.
fn runs_of(api: &Api, token: &str, schedule: &str) -> Vec<Value> {
    let mut runs = api.all_executions(token, &format!("&schedule={schedule}"));
    runs.sort_by_key(|run| run["scheduled_for"].as_i64());
    runs
}

#[test]
fn a_schedule_fires_ordinary_runs_and_answers_for_its_fires() {
    let server = TestServer::start();
    let token = server.admin_token();
    let (runtime, key) = server.create_runtime(&token, "rt-schedules");
    let robot = upload_shell_robot(&server, &token, "greeter", GREETER, "");
    let _agent = TestAgent::start(&server, &key, 2);
    let definition = json!({
        "name": "every other second",
        "robot_id": robot,
        "runtime_id": runtime,
        "variables": [{"name": "GREETING", "type": "text", "value": "olá"}],
        "cron": "*/2 * * * * *",
        "timezone": "America/Sao_Paulo",
        "overlap": "allow",
    });
    let created = send(
        &server,
        "POST",
        "/api/admin/schedules",
        &token,
        Some(&definition),
    )
    .expect(201)
    .json();
    let id = created["id"].as_str().expect("an id").to_owned();
    assert_eq!(created["overlap"], "allow");
    assert_eq!(created["misfire"], "run_latest");
    assert_eq!(created["catchup_window_seconds"], 3600);
    assert_eq!(created["cron"], "*/2 * * * * *");
    assert_eq!(
        (&created["fired"], &created["skipped"], &created["missed"]),
        (&json!(0), &json!(0), &json!(0))
    );
    // The next 10 fires, 2 s apart, in UTC ms and local time with its offset.
    let next = created["next_fires"].as_array().expect("next_fires");
    assert_eq!(next.len(), 10, "{created}");
    for pair in next.windows(2) {
        assert_eq!(
            pair[1]["at"].as_i64().unwrap() - pair[0]["at"].as_i64().unwrap(),
            2000
        );
    }
    for fire in next {
        let local = fire["local"].as_str().unwrap();
        assert!(local.ends_with("-03:00") && local.len() == 25, "{local}");
        assert_eq!(fire["at"].as_i64().unwrap() % 2000, 0);
    }
    assert_eq!(created["next_fire_at"], next[0]["at"]);

    // Fires are ordinary runs: FINISHED, readable through the result route,
    // submitted by the schedule, for their scheduled time.
    let finished = wait_until(RUN, "two fires of the rule to finish", || {
        let runs: Vec<Value> = runs_of(&server, &token, &id)
            .into_iter()
            .filter(|run| run["status"] == "FINISHED")
            .collect();
        (runs.len() >= 2).then_some(runs)
    });
    for run in &finished {
        let execution = run["id"].as_str().unwrap();
        assert_eq!(run["schedule_id"], id.as_str());
        assert_eq!(run["submitted_by"], format!("schedule:{id}"));
        assert_eq!(run["scheduled_for"].as_i64().unwrap() % 2000, 0, "{run}");
        let result = server
            .result(&token, &runtime, execution)
            .expect(200)
            .json();
        assert_eq!(result["status"], "FINISHED");
        assert_eq!(result["returnValue"], execution, "{result}");
        assert!(
            messages(&result).contains(&"greeting: olá".to_owned()),
            "{result}"
        );
    }
    let detail = server
        .get(&schedule_path(&id, ""), &token)
        .expect(200)
        .json();
    let last: Vec<&Value> = detail["last_fires"].as_array().unwrap().iter().collect();
    let started: BTreeSet<&str> = last
        .iter()
        .filter(|fire| fire["outcome"] == "started" && fire["origin"] == "rule")
        .map(|fire| fire["execution_id"].as_str().unwrap())
        .collect();
    for run in &finished {
        assert!(started.contains(run["id"].as_str().unwrap()), "{detail}");
    }

    // Paused with a note, it fires no more from its rule; a trigger runs.
    let paused = send(
        &server,
        "PATCH",
        &schedule_path(&id, ""),
        &token,
        Some(&json!({"paused": true, "note": "maintenance window"})),
    )
    .expect(200)
    .json();
    assert_eq!(paused["paused"], true);
    assert_eq!(paused["note"], "maintenance window");
    let fired_when_paused = paused["fired"].as_u64().unwrap();
    let paused_at = paused["updated_at"].as_i64().unwrap();
    let trigger = send(
        &server,
        "POST",
        &schedule_path(&id, "/trigger"),
        &token,
        None,
    )
    .expect(200)
    .json();
    assert_eq!(trigger["outcome"], "started", "{trigger}");
    assert_eq!(trigger["origin"], "trigger");
    let triggered = trigger["execution_id"].as_str().unwrap();
    wait_for_status(&server, &token, &runtime, triggered, &["FINISHED"], RUN);
    // A few of its fire times pass while paused.
    wait_until(RUN, "6 s of pause", || {
        (now_millis() > paused_at + 6_000).then_some(())
    });
    let detail = server
        .get(&schedule_path(&id, ""), &token)
        .expect(200)
        .json();
    assert_eq!(detail["fired"].as_u64().unwrap(), fired_when_paused + 1);
    assert_eq!(detail["last_fires"][0]["origin"], "trigger", "{detail}");

    // A backfill of the paused stretch runs its fires, once.
    let (from, to) = (paused_at + 1_000, now_millis());
    let backfill = || {
        let body = json!({"from": from, "to": to});
        let path = schedule_path(&id, "/backfill");
        send(&server, "POST", &path, &token, Some(&body))
            .expect(200)
            .json()
    };
    let filled = backfill();
    let fires = filled["fires"].as_array().unwrap();
    assert!(fires.len() >= 2, "{filled}");
    assert_eq!(
        filled["started"].as_u64().unwrap() as usize,
        fires.len(),
        "{filled}"
    );
    for fire in fires {
        assert_eq!(fire["origin"], "backfill");
        assert_eq!(fire["scheduled_for"].as_i64().unwrap() % 2000, 0);
        let execution = fire["execution_id"].as_str().unwrap();
        wait_for_status(&server, &token, &runtime, execution, &["FINISHED"], RUN);
    }
    let again = backfill();
    assert_eq!(
        again["already_fired"].as_u64().unwrap() as usize,
        fires.len()
    );
    assert_eq!(again["started"], 0);

    // Resumed, it fires again from now on; deleted, it is gone and its runs stay.
    let resumed = send(
        &server,
        "PATCH",
        &schedule_path(&id, ""),
        &token,
        Some(&json!({"paused": false})),
    )
    .expect(200)
    .json();
    assert_eq!(resumed["paused"], false);
    assert_eq!(resumed["note"], Value::Null);
    let resumed_fired = resumed["fired"].as_u64().unwrap();
    wait_until(RUN, "a fire after the resume", || {
        let detail = server
            .get(&schedule_path(&id, ""), &token)
            .expect(200)
            .json();
        (detail["fired"].as_u64().unwrap() > resumed_fired).then_some(())
    });
    let listed = server
        .get("/api/admin/schedules", &token)
        .expect(200)
        .json();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["id"], id.as_str());
    send(&server, "DELETE", &schedule_path(&id, ""), &token, None).expect(204);
    let gone = server.get(&schedule_path(&id, ""), &token);
    assert_error(&gone, 404, &schedule_path(&id, ""));
    server.result(&token, &runtime, triggered).expect(200);
}

#[test]
fn bad_schedules_are_refused_naming_the_field() {
    let server = InProcessServer::start();
    let f = fixture(&server);
    let token = &f.admin;
    let good = json!({
        "name": "nightly",
        "robot_id": f.robot,
        "runtime_id": f.runtime,
        "cron": "30 2 * * *",
    });
    let with = |changes: Value| {
        let mut body = good.clone();
        for (name, value) in changes.as_object().unwrap() {
            if value.is_null() {
                body.as_object_mut().unwrap().remove(name);
            } else {
                body[name] = value.clone();
            }
        }
        body
    };
    let refused = |body: &Value, status: u16, field: &str| {
        let reply = send(&server, "POST", "/api/admin/schedules", token, Some(body));
        let error = assert_error(&reply, status, "/api/admin/schedules");
        let text = message(&error);
        assert!(text.starts_with(field), "{field}: {text}");
    };
    refused(&with(json!({"timezone": "Mars/Olympus"})), 400, "timezone");
    refused(&with(json!({"cron": "0 0 30 2 *"})), 400, "cron");
    refused(&with(json!({"cron": "61 * * * *"})), 400, "cron");
    refused(&with(json!({"cron": 5})), 400, "cron");
    refused(
        &with(json!({"start_at": "2026-06-01T00:00:00Z", "end_at": 1_700_000_000_000_i64})),
        400,
        "end_at",
    );
    refused(&with(json!({"start_at": "tomorrow"})), 400, "start_at");
    refused(&with(json!({"cron": null})), 400, "cron, every");
    refused(
        &with(json!({"every": {"frequency": "daily", "at": "06:00"}})),
        400,
        "cron, every",
    );
    refused(
        &with(
            json!({"cron": null, "every": {"frequency": "weekly", "at": "06:00", "weekdays": ["funday"]}}),
        ),
        400,
        "every.weekdays",
    );
    refused(
        &with(json!({"cron": null, "every": {"frequency": "hourly", "at": "06:00"}})),
        400,
        "every.frequency",
    );
    refused(&with(json!({"overlap": "sometimes"})), 400, "overlap");
    refused(&with(json!({"misfire": "never"})), 400, "misfire");
    refused(
        &with(json!({"catchup_window_seconds": -1})),
        400,
        "catchup_window_seconds",
    );
    refused(
        &with(json!({"pause_after_failures": 0})),
        400,
        "pause_after_failures",
    );
    refused(&with(json!({"name": null})), 400, "name");
    refused(&with(json!({"runtime_id": null})), 400, "runtime_id");
    refused(&with(json!({"colour": "blue"})), 400, "colour");
    refused(&with(json!({"note": "why"})), 400, "note");
    refused(
        &with(json!({"variables": [{"name": "LIMIT", "type": "text", "value": "many"}]})),
        400,
        "variables",
    );
    refused(
        &with(json!({"flow_id": "0123456789abcdef", "robot_id": null, "runtime_id": null})),
        400,
        "flow_id",
    );
    refused(
        &with(json!({"robot_id": "0123456789abcdef"})),
        404,
        "robot_id",
    );

    // Another organisation's robot, runtime and schedules are not found.
    server
        .req("POST", "/api/admin/organizations")
        .auth(token)
        .json(&json!({"name": "B", "admin_username": "b-admin", "admin_password": "b-admin-password"}))
        .send()
        .expect(201);
    let other = server.login("b-admin", "b-admin-password");
    let (other_runtime, _) = server.create_runtime(&other, "b-runtime");
    let other_robot = robot(&server, &other, "b-robot");
    refused(&with(json!({"robot_id": other_robot})), 404, "robot_id");
    refused(
        &with(json!({"runtime_id": other_runtime})),
        404,
        "runtime_id",
    );
    let theirs = send(
        &server,
        "POST",
        "/api/admin/schedules",
        &other,
        Some(&json!({"name": "theirs", "robot_id": other_robot, "runtime_id": other_runtime, "cron": "0 3 * * *"})),
    )
    .expect(201)
    .json();
    let theirs = theirs["id"].as_str().unwrap();
    for (method, tail, body) in [
        ("GET", "", None),
        ("PATCH", "", Some(json!({"paused": true}))),
        ("DELETE", "", None),
        ("POST", "/trigger", None),
        ("POST", "/backfill", Some(json!({"from": 0, "to": 1}))),
    ] {
        let path = schedule_path(theirs, tail);
        let reply = send(&server, method, &path, token, body.as_ref());
        assert_error(&reply, 404, &path);
    }
    assert!(server
        .get("/api/admin/schedules", token)
        .expect(200)
        .json()
        .as_array()
        .unwrap()
        .is_empty());

    // Edits and backfills are checked too; a taken name is a conflict.
    let ours = send(&server, "POST", "/api/admin/schedules", token, Some(&good))
        .expect(201)
        .json();
    let ours = ours["id"].as_str().unwrap();
    let path = schedule_path(ours, "");
    let reply = send(
        &server,
        "PATCH",
        &path,
        token,
        Some(&json!({"timezone": "Nowhere/Land"})),
    );
    assert!(message(&assert_error(&reply, 400, &path)).starts_with("timezone"));
    let reply = send(&server, "POST", "/api/admin/schedules", token, Some(&good));
    assert_error(&reply, 409, "/api/admin/schedules");
    let backfill = schedule_path(ours, "/backfill");
    let now = now_millis();
    for (body, field) in [
        (json!({"from": now - 1000}), "to"),
        (json!({"from": now, "to": now - 1000}), "to"),
        (json!({"from": now - 1000, "to": now + 86_400_000}), "to"),
        (json!({"from": 0, "to": now}), "to"),
        (json!({"from": "last week", "to": now}), "from"),
    ] {
        let reply = send(&server, "POST", &backfill, token, Some(&body));
        let text = message(&assert_error(&reply, 400, &backfill));
        assert!(text.starts_with(field), "{body}: {text}");
    }
    // Admins only.
    server.create_user(token, "erp", "erp-password", "integration");
    let integration = server.login("erp", "erp-password");
    let reply = send(
        &server,
        "POST",
        "/api/admin/schedules",
        &integration,
        Some(&good),
    );
    assert_error(&reply, 403, "/api/admin/schedules");
}
