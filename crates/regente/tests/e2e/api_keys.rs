//! Organisation API keys: created by an admin and shown once, used as a bearer
//! token on the admin and Integration APIs (and the event stream) with their
//! role's rights, listed without the key, revoked and refused at once, expired
//! and refused; another organisation's keys are unknown; bad inputs answer 400
//! naming the field; the key shows neither in the server's log nor in its store.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::*;
use crate::vault::{assert_absent, id_of, store_bytes};

const KEYS: &str = "/api/admin/api-keys";

fn key_path(id: &str) -> String {
    format!("{KEYS}/{id}")
}

/// Creates a key; answers the whole answer (with `key`).
fn create_key(server: &Api, admin: &str, body: Value) -> Value {
    server
        .req("POST", KEYS)
        .auth(admin)
        .json(&body)
        .send()
        .expect(201)
        .json()
}

fn bearer(created: &Value) -> String {
    format!("Bearer {}", created["key"].as_str().expect("the key"))
}

#[test]
fn a_key_acts_with_its_role_until_it_is_revoked() {
    let server = TestServer::start();
    let admin = server.admin_token();
    let ops = create_key(&server, &admin, json!({"name": "ops", "role": "admin"}));
    let erp = create_key(
        &server,
        &admin,
        json!({"name": "erp «prod»", "role": "integration"}),
    );
    let key = erp["key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("rgk_"), "{key}");
    assert!(key.len() >= 4 + 32, "{key}");
    assert!(key[4..].chars().all(|c| c.is_ascii_alphanumeric()), "{key}");
    assert_eq!(erp["prefix"], &key[4..12]);
    assert_eq!(erp["role"], "integration");
    assert_eq!(erp["expires_at"], Value::Null);
    assert_ne!(ops["key"], erp["key"]);
    let (ops_token, erp_token) = (bearer(&ops), bearer(&erp));

    // The admin key manages the organisation, and runs robots.
    server.get("/api/admin/users", &ops_token).expect(200);
    let (runtime, runtime_key) = server.create_runtime(&ops_token, "rt-keys");
    let robot = upload_shell_robot(&server, &ops_token, "keyed", "echo keyed", "");
    let _agent = TestAgent::start(&server, &runtime_key, 1);

    // The integration key runs robots (v1 and v2) and reads results and the
    // event stream; what it submits is recorded as done by the key.
    let run = server.queue(&erp_token, &runtime, &robot, None);
    let timeout = Duration::from_secs(60);
    let done = wait_for_status(&server, &erp_token, &runtime, &run, ENDED, timeout);
    assert_eq!(done["status"], "FINISHED", "{done}");
    server
        .run_v1(&erp_token, &runtime, &robot, None)
        .expect(200);
    let events = format!("/api/integration/v2/executions/{run}/events");
    let stream = server.get(&events, &erp_token).expect(200).text();
    assert!(stream.contains("keyed"), "{stream}");
    let detail = server.execution(&admin, &run);
    assert_eq!(detail["submitted_by"], erp["id"], "{detail}");

    // Not on admin routes.
    for path in ["/api/admin/users", KEYS, "/api/admin/executions"] {
        assert_error(&server.get(path, &erp_token), 403, path);
    }
    let refused = server
        .req("POST", KEYS)
        .auth(&erp_token)
        .json(&json!({"name": "escalate", "role": "admin"}))
        .send();
    assert_error(&refused, 403, KEYS);

    // Listed and read without the key or its hash; the use is recorded.
    let listed = server.get(KEYS, &admin).expect(200);
    assert_absent(&[&key[4..]], listed.text().as_bytes(), "the list");
    let list = listed.json();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["ops", "erp «prod»"]);
    let path = key_path(&id_of(&erp));
    let read = server.get(&path, &admin).expect(200);
    assert_absent(&[&key[4..]], read.text().as_bytes(), "the key's page");
    let read = read.json();
    let mut fields: Vec<&str> = read
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    fields.sort();
    assert_eq!(
        fields,
        [
            "created_at",
            "created_by",
            "expires_at",
            "id",
            "last_used_at",
            "name",
            "prefix",
            "revoked_at",
            "role"
        ]
    );
    assert!(read["last_used_at"].as_i64().is_some(), "{read}");
    assert_eq!(read["revoked_at"], Value::Null);

    // A second key of that name is refused while the first lives.
    let clash = server
        .req("POST", KEYS)
        .auth(&admin)
        .json(&json!({"name": "erp «prod»", "role": "admin"}))
        .send();
    let body = assert_error(&clash, 409, KEYS);
    assert!(message(&body).contains("name"), "{body}");

    // Revoked: refused at once, in the API's error shape; revoking again is
    // harmless; the name is free again.
    server
        .req("DELETE", &path)
        .auth(&ops_token)
        .send()
        .expect(204);
    let body = assert_error(&server.get(&events, &erp_token), 401, &events);
    assert!(message(&body).contains("revoked"), "{body}");
    let result = format!("/api/integration/v1/result/{runtime}/{run}");
    assert_error(&server.get(&result, &erp_token), 401, &result);
    server.req("DELETE", &path).auth(&admin).send().expect(204);
    let revoked = server.get(&path, &admin).expect(200).json();
    assert!(revoked["revoked_at"].as_i64().is_some(), "{revoked}");
    create_key(
        &server,
        &admin,
        json!({"name": "erp «prod»", "role": "integration"}),
    );
    // The other key still works.
    server.get(KEYS, &ops_token).expect(200);

    // The keys show nowhere: not in the log, not in the store.
    let secrets = [key.as_str(), ops["key"].as_str().unwrap()];
    assert_absent(&secrets, server.all_stderr().as_bytes(), "the server's log");
    let store = store_bytes(&server);
    assert!(
        store
            .iter()
            .any(|(_, bytes)| bytes.windows(3).any(|w| w == b"ops")),
        "the store read is the server's: its key's name is there"
    );
    for (what, bytes) in &store {
        assert_absent(&secrets, bytes, what);
    }
}

#[test]
fn an_expired_key_is_refused() {
    let server = TestServer::start();
    let admin = server.admin_token();
    // ISO-8601 as the schedules take it, answered in epoch milliseconds.
    let later = create_key(
        &server,
        &admin,
        json!({"name": "later", "role": "integration", "expires_at": "2999-01-01T00:00:00Z"}),
    );
    assert_eq!(later["expires_at"], 32_472_144_000_000_i64);
    server
        .get("/api/admin/runtimes", &bearer(&later))
        .expect(403);

    let soon = create_key(
        &server,
        &admin,
        json!({"name": "soon", "role": "admin", "expires_at": now_millis() + 1_000}),
    );
    let token = bearer(&soon);
    let path = "/api/admin/runtimes";
    let body = wait_until(Duration::from_secs(30), "the key to expire", || {
        let reply = server.get(path, &token);
        (reply.status == 401).then(|| assert_error(&reply, 401, path))
    });
    assert!(message(&body).contains("expired"), "{body}");
}

#[test]
fn another_organisations_keys_are_unknown() {
    let server = TestServer::start();
    let admin = server.admin_token();
    let ours = create_key(&server, &admin, json!({"name": "ours", "role": "admin"}));
    server
        .req("POST", "/api/admin/organizations")
        .auth(&admin)
        .json(&json!({"name": "others", "admin_username": "other-admin", "admin_password": "other-password"}))
        .send()
        .expect(201);
    let other = server.login("other-admin", "other-password");
    let theirs = create_key(&server, &other, json!({"name": "ours", "role": "admin"}));

    for (caller, foreign) in [(&admin, &theirs), (&other, &ours)] {
        let path = key_path(&id_of(foreign));
        assert_error(&server.get(&path, caller), 404, &path);
        assert_error(&server.req("DELETE", &path).auth(caller).send(), 404, &path);
    }
    // Each organisation's key sees its own keys only, and they still work.
    let listed = server.get(KEYS, &bearer(&theirs)).expect(200).json();
    let ids: Vec<&Value> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|k| &k["id"])
        .collect();
    assert_eq!(ids, [&theirs["id"]]);
    server.get(KEYS, &bearer(&ours)).expect(200);
    let (runtime, _) = server.create_runtime(&admin, "our-runtime");
    let robot = upload_shell_robot(&server, &admin, "our-robot", "true", "");
    let path = format!("/api/integration/v2/run/{runtime}/{robot}");
    assert_error(
        &server.run_v2(&bearer(&theirs), &runtime, &robot, None),
        404,
        &path,
    );
}

#[test]
fn bad_inputs_answer_400_naming_the_field() {
    let server = InProcessServer::start();
    let admin = server.admin_token();
    let long = "n".repeat(101);
    let cases = [
        (json!({"role": "admin"}), "name"),
        (json!({"name": "", "role": "admin"}), "name"),
        (json!({"name": long, "role": "admin"}), "name"),
        (json!({"name": " padded", "role": "admin"}), "name"),
        (json!({"name": "tab\there", "role": "admin"}), "name"),
        (json!({"name": 7, "role": "admin"}), "name"),
        (json!({"name": "k"}), "role"),
        (json!({"name": "k", "role": "root"}), "role"),
        (json!({"name": "k", "role": ["admin"]}), "role"),
        (
            json!({"name": "k", "role": "admin", "expires_at": 1_000}),
            "expires_at",
        ),
        (
            json!({"name": "k", "role": "admin", "expires_at": now_millis() - 1}),
            "expires_at",
        ),
        (
            json!({"name": "k", "role": "admin", "expires_at": "tomorrow"}),
            "expires_at",
        ),
        (
            json!({"name": "k", "role": "admin", "expires_at": true}),
            "expires_at",
        ),
        (
            json!({"name": "k", "role": "admin", "key": "rgk_mine"}),
            "key",
        ),
    ];
    for (body, field) in cases {
        let reply = server.req("POST", KEYS).auth(&admin).json(&body).send();
        let answer = assert_error(&reply, 400, KEYS);
        assert!(message(&answer).contains(field), "{body} -> {answer}");
    }
    for body in [&b"not json"[..], b"[]", b""] {
        let reply = server
            .req("POST", KEYS)
            .auth(&admin)
            .body(body.to_vec(), "application/json")
            .send();
        assert_error(&reply, 400, KEYS);
    }
    // The longest name is taken; nothing refused was created.
    create_key(
        &server,
        &admin,
        json!({"name": "n".repeat(100), "role": "admin"}),
    );
    let listed = server.get(KEYS, &admin).expect(200).json();
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    for id in ["0123456789abcdef", "not-an-id"] {
        let path = key_path(id);
        assert_error(&server.get(&path, &admin), 404, &path);
        assert_error(&server.req("DELETE", &path).auth(&admin).send(), 404, &path);
    }
    // Unknown and malformed keys are refused like bad tokens.
    for token in [
        "Bearer rgk_",
        "Bearer rgk_0123456789abcdef0123456789abcdef0123456",
    ] {
        assert_error(&server.get(KEYS, token), 401, KEYS);
    }
}
