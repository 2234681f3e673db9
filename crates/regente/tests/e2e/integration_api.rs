//! The Integration API's run, result and delete routes, as the RoboEasy
//! document describes them, and the OpenAPI document. Shapes only: each test
//! runs on a server built in the test process.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use crate::support::*;

const UNKNOWN: &str = "0123456789abcdef";

fn run_path(version: &str, runtime: &str, robot: &str) -> String {
    format!("/api/integration/{version}/run/{runtime}/{robot}")
}

fn result_path(runtime: &str, execution: &str) -> String {
    format!("/api/integration/v1/result/{runtime}/{execution}")
}

fn delete_path(runtime: &str, execution: &str) -> String {
    format!("/api/integration/v1/delete/{runtime}/{execution}")
}

#[test]
fn v1_runs_answer_the_execution_id_as_text_and_keep_the_variables() {
    let server = InProcessServer::start();
    let f = fixture(&server);
    let reply = server
        .run_v1(
            &f.admin,
            &f.runtime,
            &f.robot,
            Some(&json!({"variables": [
                {"name": "CNPJ", "type": "text", "value": "12.345.678/0001-90"},
            ]})),
        )
        .expect(200);
    assert!(
        reply.content_type().starts_with("text/plain"),
        "{}",
        reply.content_type()
    );
    let id = reply.text();
    assert!(is_execution_id(&id), "not 16 lowercase hex digits: {id:?}");
    let detail = server.execution(&f.admin, &id);
    assert_eq!(
        detail["variables"],
        json!({"CNPJ": "12.345.678/0001-90", "LIMIT": 10}),
        "the declared LIMIT takes its default"
    );
    assert_eq!(detail["runtime_id"], f.runtime.as_str());
    assert_eq!(detail["robot_id"], f.robot.as_str());
    assert_eq!(detail["robot_version"], 1);
    assert_eq!(detail["status"], "PENDENT");

    // GET runs with the defaults.
    let reply = server
        .run_v1_get(&f.admin, &f.runtime, &f.robot)
        .expect(200);
    assert!(reply.content_type().starts_with("text/plain"));
    let defaults = reply.text();
    assert!(is_execution_id(&defaults), "{defaults:?}");
    assert_ne!(defaults, id);
    assert_eq!(
        server.execution(&f.admin, &defaults)["variables"],
        json!({"CNPJ": "00.000.000/0001-00", "LIMIT": 10})
    );

    // v1 also takes a single variable object, and numbers written as text.
    let single = server
        .run_v1(
            &f.admin,
            &f.runtime,
            &f.robot,
            Some(&json!({"variables": {"name": "LIMIT", "type": "number", "value": "42"}})),
        )
        .expect(200)
        .text();
    assert_eq!(
        server.execution(&f.admin, &single)["variables"],
        json!({"CNPJ": "00.000.000/0001-00", "LIMIT": 42})
    );
    // A POST without a body runs with the defaults too.
    let bare = server
        .run_v1(&f.admin, &f.runtime, &f.robot, None)
        .expect(200)
        .text();
    assert_eq!(
        server.execution(&f.admin, &bare)["variables"],
        json!({"CNPJ": "00.000.000/0001-00", "LIMIT": 10})
    );
}

#[test]
fn v2_runs_take_every_documented_body_shape() {
    let server = InProcessServer::start();
    let f = fixture(&server);
    let defaults = json!({"CNPJ": "00.000.000/0001-00", "LIMIT": 10});
    let bodies: Vec<(Option<&str>, &str, Value)> = vec![
        (None, "", defaults.clone()),
        (Some(""), "application/json", defaults.clone()),
        (Some("{}"), "application/json", defaults.clone()),
        (
            Some(r#"{"variables": null}"#),
            "application/json",
            defaults.clone(),
        ),
        (
            Some(r#"{"variables": []}"#),
            "application/json",
            defaults.clone(),
        ),
        (
            Some(r#"{"variables": {"name": "CNPJ", "type": "text", "value": "1"}}"#),
            "application/json",
            json!({"CNPJ": "1", "LIMIT": 10}),
        ),
        (
            Some(
                r#"{"variables": [{"name": "CNPJ", "type": "text", "value": "2"}, {"name": "LIMIT", "type": "number", "value": 7}]}"#,
            ),
            "application/json",
            json!({"CNPJ": "2", "LIMIT": 7}),
        ),
        // Integrations send JSON with other content types; the type is optional.
        (
            Some(r#"{"variables": [{"name": "LIMIT", "value": 3.5}]}"#),
            "text/plain",
            json!({"CNPJ": "00.000.000/0001-00", "LIMIT": 3.5}),
        ),
    ];
    let path = run_path("v2", &f.runtime, &f.robot);
    let mut ids = BTreeSet::new();
    for (body, content_type, expected) in bodies {
        let mut request = server.req("POST", &path).auth(&f.admin);
        if let Some(body) = body {
            request = request.body(body.as_bytes().to_vec(), content_type);
        }
        let reply = request.send().expect(200);
        assert!(reply.content_type().starts_with("application/json"));
        let answer = reply.json();
        assert_eq!(keys(&answer), ["id"], "{answer}");
        let id = answer["id"].as_str().unwrap().to_owned();
        assert!(is_execution_id(&id), "{id}");
        assert_eq!(
            server.execution(&f.admin, &id)["variables"],
            expected,
            "body {body:?}"
        );
        assert!(ids.insert(id), "ids are unique");
    }
}

#[test]
fn the_documents_invalid_v2_example_answers_400_with_the_expected_shape() {
    let server = InProcessServer::start();
    let f = fixture(&server);
    for version in ["v2", "v1"] {
        let path = run_path(version, &f.runtime, &f.robot);
        let documented = r#"{
    "variables": [
        "name": "CNPJ",
        "type": "text",
        "value": "x"
    ]
}"#;
        let reply = server
            .req("POST", &path)
            .auth(&f.admin)
            .body(documented.as_bytes().to_vec(), "application/json")
            .send();
        let body = assert_error(&reply, 400, &path);
        assert!(
            message(&body).contains(r#"{"variables": [{"name": "#),
            "the message should show the expected shape: {body}"
        );
        for bad in [
            "[1]",
            r#""variables""#,
            "null",
            r#"{"variables": 3}"#,
            r#"{"variables": "CNPJ=1"}"#,
            r#"{"variables": [1]}"#,
            r#"{"variables": [[{"name": "CNPJ", "value": "1"}]]}"#,
            r#"{"variables": [{"value": 1}]}"#,
            r#"{"variables": [{"name": 5, "value": 1}]}"#,
            r#"{"variables": [{"name": "CNPJ", "type": 5, "value": 1}]}"#,
            r#"{"variables": [{"name": "CNPJ", "value": "1"}"#,
        ] {
            let reply = server
                .req("POST", &path)
                .auth(&f.admin)
                .body(bad.as_bytes().to_vec(), "application/json")
                .send();
            let body = assert_error(&reply, 400, &path);
            assert!(message(&body).contains("expected"), "{bad}: {body}");
        }
    }
    // Nothing was queued.
    assert!(server.all_executions(&f.admin, "").is_empty());
}

#[test]
fn bad_variables_answer_400_naming_the_variable() {
    let server = InProcessServer::start();
    let f = fixture(&server);
    // A robot that declares a variable without a default, which runs then need.
    let required = server.upload_robot(
        &f.admin,
        robot_zip(
            "name = \"needs-input\"\ncommand = [\"sh\", \"run.sh\"]\n[[variables]]\nname = \"ORDER\"\ntype = \"json\"\n",
            &[],
        ),
    )["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"name": "1CNPJ", "type": "text", "value": "x"}),
            "1CNPJ",
        ),
        (
            json!({"name": "CN-PJ", "type": "text", "value": "x"}),
            "CN-PJ",
        ),
        (json!({"name": "", "type": "text", "value": "x"}), "\"\""),
        (
            json!({"name": "CNPJ", "type": "date", "value": "x"}),
            "CNPJ",
        ),
        (
            json!({"name": "LIMIT", "type": "number", "value": "ten"}),
            "LIMIT",
        ),
        (
            json!({"name": "LIMIT", "type": "number", "value": [1]}),
            "LIMIT",
        ),
        (json!({"name": "LIMIT", "value": {"n": 1}}), "LIMIT"),
        (json!({"name": "CNPJ", "value": null}), "CNPJ"),
        (
            json!({"name": "OTHER", "type": "text", "value": "x"}),
            "OTHER",
        ),
    ];
    for (variable, named) in cases {
        for version in ["v1", "v2"] {
            let path = run_path(version, &f.runtime, &f.robot);
            let reply = server
                .req("POST", &path)
                .auth(&f.admin)
                .json(&json!({"variables": [variable]}))
                .send();
            let body = assert_error(&reply, 400, &path);
            assert!(
                message(&body).contains(named),
                "{variable}: the message should name {named}: {body}"
            );
        }
    }
    // The same variable twice.
    let path = run_path("v2", &f.runtime, &f.robot);
    let twice = json!({"variables": [
        {"name": "CNPJ", "value": "1"}, {"name": "CNPJ", "value": "2"}
    ]});
    let body = assert_error(
        &server.req("POST", &path).auth(&f.admin).json(&twice).send(),
        400,
        &path,
    );
    assert!(message(&body).contains("CNPJ"), "{body}");
    // A required variable left out, by every route.
    for reply in [
        server.run_v1_get(&f.admin, &f.runtime, &required),
        server.run_v1(&f.admin, &f.runtime, &required, None),
        server.run_v2(&f.admin, &f.runtime, &required, Some(&json!({}))),
    ] {
        let path = reply.path.clone();
        let body = assert_error(&reply, 400, &path);
        assert!(message(&body).contains("ORDER"), "{body}");
    }
    // A json variable given as text holding JSON, and as a value.
    for value in [json!("{\"a\": [1, 2]}"), json!({"a": [1, 2]})] {
        let id = server.queue(
            &f.admin,
            &f.runtime,
            &required,
            Some(&json!({"variables": {"name": "ORDER", "type": "json", "value": value}})),
        );
        assert_eq!(
            server.execution(&f.admin, &id)["variables"],
            json!({"ORDER": {"a": [1, 2]}})
        );
    }
    // Only the two json runs were queued.
    assert_eq!(server.all_executions(&f.admin, "").len(), 2);
}

#[test]
fn results_have_exactly_the_seven_fields_and_runs_wait_for_an_offline_runtime() {
    let server = InProcessServer::start();
    let f = fixture(&server);
    let runtimes = server
        .get("/api/admin/runtimes", &f.admin)
        .expect(200)
        .json();
    assert_eq!(runtimes[0]["online"], false, "{runtimes}");
    let before = now_millis();
    let id = server.queue(&f.admin, &f.runtime, &f.robot, None);
    let after = now_millis();
    let reply = server.result(&f.admin, &f.runtime, &id).expect(200);
    assert!(reply.content_type().starts_with("application/json"));
    let result = reply.json();
    assert_eq!(
        keys(&result),
        [
            "_id",
            "end",
            "init",
            "logs",
            "progress",
            "returnValue",
            "status"
        ],
        "{result}"
    );
    assert_eq!(result["_id"], id.as_str());
    assert_eq!(result["status"], "PENDENT");
    assert_eq!(result["end"], Value::Null);
    assert_eq!(result["returnValue"], Value::Null);
    assert_eq!(result["logs"], json!([]));
    assert_eq!(result["progress"].as_f64(), Some(0.0), "{result}");
    let init = result["init"].as_i64().expect("init is epoch milliseconds");
    assert!(
        (before..=after).contains(&init),
        "init {init} is not the submission time ({before}..={after})"
    );
    // Read again, with a v2 token of the same user: nothing moved.
    let v2 = server
        .login_v2_reply(ADMIN_USER, ADMIN_PASSWORD)
        .expect(200)
        .json();
    let token = format!("Bearer {}", v2["access_token"].as_str().unwrap());
    for _ in 0..3 {
        let again = server.result(&token, &f.runtime, &id).expect(200).json();
        assert_eq!(again, result);
    }
    // The admin detail has the richer fields, the integration result does not.
    let detail = server.execution(&f.admin, &id);
    assert_eq!(detail["init"], init);
    assert_eq!(detail["started"], Value::Null);
    assert_eq!(detail["queue_position"], 0);
    let second = server.queue(&f.admin, &f.runtime, &f.robot, None);
    assert_eq!(server.execution(&f.admin, &second)["queue_position"], 1);
    let runtimes = server
        .get("/api/admin/runtimes", &f.admin)
        .expect(200)
        .json();
    assert_eq!(runtimes[0]["online"], false);
    assert_eq!(
        server.result(&f.admin, &f.runtime, &id).expect(200).json()["status"],
        "PENDENT"
    );
}

#[test]
fn unknown_and_mismatched_ids_answer_404() {
    let server = InProcessServer::start();
    let f = fixture(&server);
    let (other_runtime, _) = server.create_runtime(&f.admin, "rt-2");
    let id = server.queue(&f.admin, &f.runtime, &f.robot, None);
    let before = server.result(&f.admin, &f.runtime, &id).expect(200).json();
    let upper = id.to_uppercase();
    let mut cases: Vec<(&str, String)> = Vec::new();
    for (runtime, robot) in [
        (UNKNOWN, f.robot.as_str()),
        (f.runtime.as_str(), UNKNOWN),
        ("rt", f.robot.as_str()),
        (f.runtime.as_str(), "robot"),
        (f.robot.as_str(), f.runtime.as_str()),
        ("0123456789ABCDEF", f.robot.as_str()),
    ] {
        for version in ["v1", "v2"] {
            cases.push(("POST", run_path(version, runtime, robot)));
        }
        cases.push(("GET", run_path("v1", runtime, robot)));
    }
    for (runtime, execution) in [
        (f.runtime.as_str(), UNKNOWN),
        (UNKNOWN, id.as_str()),
        (other_runtime.as_str(), id.as_str()),
        (f.runtime.as_str(), "not-an-id"),
        (f.runtime.as_str(), upper.as_str()),
        (f.runtime.as_str(), f.robot.as_str()),
    ] {
        // An id of digits only has no other case: its upper case names it.
        if runtime == f.runtime && execution == id {
            continue;
        }
        cases.push(("GET", result_path(runtime, execution)));
        cases.push(("DELETE", delete_path(runtime, execution)));
    }
    cases.push(("GET", format!("/api/admin/robots/{UNKNOWN}")));
    cases.push(("GET", format!("/api/admin/robots/{}", f.runtime)));
    cases.push(("GET", format!("/api/admin/executions/{UNKNOWN}")));
    cases.push(("GET", "/api/admin/executions/xyz".into()));
    cases.push(("DELETE", format!("/api/admin/users/{UNKNOWN}")));
    for (method, path) in cases {
        let reply = server.req(method, &path).auth(&f.admin).send();
        let body = assert_error(&reply, 404, &path);
        assert!(message(&body).contains("not found"), "{body}");
    }
    // The execution on its real runtime is untouched.
    assert_eq!(
        server.result(&f.admin, &f.runtime, &id).expect(200).json(),
        before
    );
    assert_eq!(server.all_executions(&f.admin, "").len(), 1);
}

#[test]
fn delete_cancels_a_pendent_execution_once() {
    let server = InProcessServer::start();
    let f = fixture(&server);
    let id = server.queue(&f.admin, &f.runtime, &f.robot, None);
    let other = server.queue(&f.admin, &f.runtime, &f.robot, None);
    let init = server.result(&f.admin, &f.runtime, &id).expect(200).json()["init"]
        .as_i64()
        .unwrap();
    let reply = server.delete(&f.admin, &f.runtime, &id).expect(200);
    assert!(reply.body.is_empty(), "{:?}", reply.text());
    let after = now_millis();
    let result = server.result(&f.admin, &f.runtime, &id).expect(200).json();
    assert_eq!(result["status"], "CANCELED");
    assert_eq!(result["init"], init, "init never changes");
    let end = result["end"].as_i64().expect("end is set once canceled");
    assert!((init..=after).contains(&end), "end {end}");
    assert_eq!(
        keys(&result),
        [
            "_id",
            "end",
            "init",
            "logs",
            "progress",
            "returnValue",
            "status"
        ]
    );
    let detail = server.execution(&f.admin, &id);
    assert_eq!(detail["status"], "CANCELED");
    assert_eq!(
        detail["canceled_by"],
        user_id(&server, &f.admin, ADMIN_USER).as_str()
    );
    assert!(detail.get("queue_position").is_none() || detail["queue_position"].is_null());
    // The other execution moved up the queue and is still waiting.
    assert_eq!(server.execution(&f.admin, &other)["queue_position"], 0);

    // Again: 409, and nothing changes.
    let path = delete_path(&f.runtime, &id);
    let body = assert_error(&server.delete(&f.admin, &f.runtime, &id), 409, &path);
    assert!(message(&body).contains("CANCELED"), "{body}");
    assert_eq!(
        server.result(&f.admin, &f.runtime, &id).expect(200).json(),
        result
    );
    assert_eq!(server.execution(&f.admin, &id), detail);
    // Another user of the organisation cannot cancel it again either.
    server.create_user(&f.admin, "second", "second-password", "integration");
    let token = server.login("second", "second-password");
    assert_error(&server.delete(&token, &f.runtime, &id), 409, &path);
    assert_eq!(
        server.result(&token, &f.runtime, &other).expect(200).json()["status"],
        "PENDENT"
    );
}

#[test]
fn idempotency_keys_answer_the_same_execution() {
    let server = InProcessServer::start();
    let f = fixture(&server);
    let body = json!({"variables": [{"name": "CNPJ", "type": "text", "value": "9"}]});
    let path = run_path("v2", &f.runtime, &f.robot);
    let send = |token: &str, key: &str, body: &Value| {
        server
            .req("POST", &path)
            .auth(token)
            .header("Idempotency-Key", key.as_bytes())
            .json(body)
            .send()
    };
    let first = send(&f.admin, "tax-form-2024-001", &body)
        .expect(200)
        .json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let retry = send(&f.admin, "tax-form-2024-001", &body)
        .expect(200)
        .json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(first, retry);
    // The v1 route with the same key and request answers the same id as text.
    let v1 = server
        .req("POST", &run_path("v1", &f.runtime, &f.robot))
        .auth(&f.admin)
        .header("Idempotency-Key", b"tax-form-2024-001")
        .json(&body)
        .send()
        .expect(200)
        .text();
    assert_eq!(v1, first);
    assert_eq!(server.all_executions(&f.admin, "").len(), 1);

    // Same key, another request: 409, nothing queued.
    let other_body = json!({"variables": [{"name": "CNPJ", "type": "text", "value": "10"}]});
    let conflict = assert_error(
        &send(&f.admin, "tax-form-2024-001", &other_body),
        409,
        &path,
    );
    assert!(message(&conflict).contains("Idempotency-Key"), "{conflict}");
    assert_eq!(server.all_executions(&f.admin, "").len(), 1);

    // Another key queues another run.
    let next = send(&f.admin, "tax-form-2024-002", &body)
        .expect(200)
        .json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(next, first);

    // Another user with the same key gets its own execution.
    server.create_user(
        &f.admin,
        "other-integrator",
        "other-password",
        "integration",
    );
    let token = server.login("other-integrator", "other-password");
    let theirs = send(&token, "tax-form-2024-001", &body).expect(200).json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(theirs, first);
    assert_ne!(theirs, next);
    assert_eq!(server.all_executions(&f.admin, "").len(), 3);

    // A canceled execution is still the key's answer (the retry must not run it).
    server.delete(&f.admin, &f.runtime, &first).expect(200);
    let after_cancel = send(&f.admin, "tax-form-2024-001", &body)
        .expect(200)
        .json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(after_cancel, first);

    // Unusable keys answer 400.
    for key in ["", &"k".repeat(300), "with space"] {
        assert_error(&send(&f.admin, key, &body), 400, &path);
    }
    assert_eq!(server.all_executions(&f.admin, "").len(), 3);
}

#[test]
fn runs_are_pinned_to_the_newest_version_when_queued() {
    let server = InProcessServer::start();
    let f = fixture(&server);
    let old = server.queue(&f.admin, &f.runtime, &f.robot, None);
    let v2 = manifest("consulta-cnpj").replace("default = 10", "default = 20");
    let uploaded = server.upload_robot(&f.admin, robot_zip(&v2, &[("main.py", b"print(2)\n")]));
    assert_eq!(uploaded["id"], f.robot.as_str(), "same name, same robot");
    assert_eq!(uploaded["version"], 2);
    assert_eq!(uploaded["name"], "consulta-cnpj");
    let new = server.queue(&f.admin, &f.runtime, &f.robot, None);
    let old_detail = server.execution(&f.admin, &old);
    let new_detail = server.execution(&f.admin, &new);
    assert_eq!(old_detail["robot_version"], 1);
    assert_eq!(old_detail["variables"]["LIMIT"], 10);
    assert_eq!(new_detail["robot_version"], 2);
    assert_eq!(new_detail["variables"]["LIMIT"], 20);
    // A version that drops a variable makes it undeclared for new runs only.
    let v3 = "name = \"consulta-cnpj\"\ncommand = [\"python3\", \"main.py\"]\n[[variables]]\nname = \"CNPJ\"\ntype = \"text\"\ndefault = \"x\"\n";
    assert_eq!(
        server.upload_robot(&f.admin, robot_zip(v3, &[]))["version"],
        3
    );
    let path = run_path("v2", &f.runtime, &f.robot);
    let reply = server.run_v2(
        &f.admin,
        &f.runtime,
        &f.robot,
        Some(&json!({"variables": {"name": "LIMIT", "value": 1}})),
    );
    assert!(message(&assert_error(&reply, 400, &path)).contains("LIMIT"));
    assert_eq!(server.execution(&f.admin, &old)["robot_version"], 1);
    assert_eq!(server.execution(&f.admin, &new)["robot_version"], 2);
}

#[test]
fn the_openapi_document_lists_every_route() {
    let server = InProcessServer::start();
    let reply = server.req("GET", "/api/openapi.json").send().expect(200);
    assert!(reply.content_type().starts_with("application/json"));
    let document = reply.json();
    assert!(
        document["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with('3')),
        "{}",
        document["openapi"]
    );
    let paths = document["paths"].as_object().expect("paths");
    let missing: Vec<String> = ROUTES
        .iter()
        .chain(OTHER_ROUTES)
        .chain(STREAM_ROUTES)
        .filter(|(method, path)| {
            paths
                .get(*path)
                .and_then(|item| item.get(method.to_lowercase()))
                .is_none()
        })
        .map(|(method, path)| format!("{method} {path}"))
        .collect();
    assert!(
        missing.is_empty(),
        "routes missing from the OpenAPI document: {missing:?}; documented: {:?}",
        paths.keys()
    );
    let documented: usize = paths
        .values()
        .map(|item| {
            ["get", "post", "put", "delete", "patch"]
                .iter()
                .filter(|m| item.get(**m).is_some())
                .count()
        })
        .sum();
    assert_eq!(
        documented,
        ROUTES.len() + OTHER_ROUTES.len() + STREAM_ROUTES.len(),
        "routes documented but not tested"
    );
    assert!(
        document["components"]["securitySchemes"]["bearer"].is_object(),
        "the bearer scheme is documented"
    );
    assert_eq!(
        server.req("GET", "/healthz").send().expect(200).text(),
        "ok"
    );
}

#[test]
fn concurrent_retries_with_one_idempotency_key_queue_one_run() {
    let server = InProcessServer::start();
    let f = fixture(&server);
    let body = json!({"variables": [{"name": "CNPJ", "type": "text", "value": "same"}]});
    let path = run_path("v2", &f.runtime, &f.robot);
    let send = |key: Option<String>| -> String {
        let mut request = server.req("POST", &path).auth(&f.admin).json(&body);
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key.as_bytes());
        }
        request.send().expect(200).json()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    // Eight clients retry the same request with the same key at once.
    let same: Vec<String> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..8)
            .map(|_| scope.spawn(|| send(Some("concurrent-key".into()))))
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    assert!(same.iter().all(|id| id == &same[0]), "{same:?}");
    assert_eq!(server.all_executions(&f.admin, "").len(), 1);

    // Eight clients with their own keys, each sending twice, and eight
    // without a key, all at once: one run per key, one per keyless request.
    let (keyed, keyless): (Vec<(String, String)>, Vec<String>) = std::thread::scope(|scope| {
        let keyed: Vec<_> = (0..8)
            .map(|n| {
                let send = &send;
                scope.spawn(move || {
                    let key = format!("key-{n}");
                    (send(Some(key.clone())), send(Some(key)))
                })
            })
            .collect();
        let keyless: Vec<_> = (0..8).map(|_| scope.spawn(|| send(None))).collect();
        (
            keyed.into_iter().map(|w| w.join().unwrap()).collect(),
            keyless.into_iter().map(|w| w.join().unwrap()).collect(),
        )
    });
    let mut distinct = BTreeSet::new();
    for (first, retry) in &keyed {
        assert_eq!(first, retry);
        assert!(distinct.insert(first.clone()));
    }
    for id in &keyless {
        assert!(distinct.insert(id.clone()), "{id} answered twice");
    }
    assert!(!distinct.contains(&same[0]));
    let all = server.all_executions(&f.admin, "");
    assert_eq!(all.len(), 1 + 8 + 8);
    for execution in &all {
        let id = execution["id"].as_str().unwrap();
        assert_eq!(
            server.result(&f.admin, &f.runtime, id).expect(200).json()["status"],
            "PENDENT"
        );
    }
}

#[test]
fn head_never_queues_a_run_and_405_answers_say_what_is_allowed() {
    let server = InProcessServer::start();
    let f = fixture(&server);
    // GET runs the robot, as the document says; HEAD (link checkers, monitors)
    // must not.
    let path = run_path("v1", &f.runtime, &f.robot);
    let reply = server.req("HEAD", &path).auth(&f.admin).send();
    assert_eq!(reply.status, 405, "{:?}", reply.headers);
    assert!(reply.body.is_empty());
    assert!(
        server.all_executions(&f.admin, "").is_empty(),
        "HEAD queued a run"
    );
    for (method, path, allowed) in [
        ("HEAD", path.as_str(), "GET,POST"),
        ("PUT", path.as_str(), "GET,POST"),
        ("GET", "/api/user/auth", "POST"),
        ("DELETE", "/api/admin/users", "GET,POST"),
    ] {
        let reply = server.req(method, path).auth(&f.admin).send();
        if method != "HEAD" {
            assert_error(&reply, 405, path);
        }
        let allow: String = reply
            .headers
            .get("allow")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("{method} {path}: a 405 without Allow: {:?}", reply.headers))
            .split(',')
            .map(str::trim)
            .filter(|m| *m != "HEAD")
            .collect::<Vec<_>>()
            .join(",");
        assert_eq!(allow, allowed, "{method} {path}");
    }
    // Other GET routes still answer HEAD.
    server.req("HEAD", "/healthz").send().expect(200);
    assert!(server.all_executions(&f.admin, "").is_empty());
}
