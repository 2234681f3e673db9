//! The audit log through the real binary: every mutating admin operation the
//! server's own OpenAPI document lists is performed, and each change leaves
//! exactly one record naming who, what, which object and from where; failed
//! logins are recorded; only admins read the log, each their organisation's.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::support::*;

/// Every mutating admin operation this test performs, with the action its
/// record names. The test fails when the document lists one that is not here:
/// a new admin route must come with its audit record.
const AUDITED: &[(&str, &str, &str)] = &[
    ("POST", "/api/admin/users", "user.create"),
    ("PATCH", "/api/admin/users/{id}", "user.set_role"),
    ("DELETE", "/api/admin/users/{id}", "user.delete"),
    ("POST", "/api/admin/runtimes", "runtime.create"),
    ("PATCH", "/api/admin/runtimes/{id}", "runtime.rename"),
    (
        "POST",
        "/api/admin/runtimes/{id}/key",
        "runtime.replace_key",
    ),
    ("DELETE", "/api/admin/runtimes/{id}", "runtime.delete"),
    ("POST", "/api/admin/robots", "robot.upload"),
    ("POST", "/api/admin/organizations", "organization.create"),
    ("POST", "/api/admin/credentials", "credential.create"),
    ("PUT", "/api/admin/credentials/{id}", "credential.replace"),
    ("DELETE", "/api/admin/credentials/{id}", "credential.delete"),
    ("POST", "/api/admin/flows", "flow.save"),
    ("POST", "/api/admin/schedules", "schedule.create"),
    ("PATCH", "/api/admin/schedules/{id}", "schedule.pause"),
    (
        "POST",
        "/api/admin/schedules/{id}/trigger",
        "schedule.trigger",
    ),
    (
        "POST",
        "/api/admin/schedules/{id}/backfill",
        "schedule.backfill",
    ),
    ("DELETE", "/api/admin/schedules/{id}", "schedule.delete"),
    ("POST", "/api/admin/api-keys", "api_key.create"),
    ("DELETE", "/api/admin/api-keys/{id}", "api_key.revoke"),
    ("POST", "/api/admin/webhooks", "webhook.create"),
    ("PATCH", "/api/admin/webhooks/{id}", "webhook.update"),
    (
        "POST",
        "/api/admin/webhooks/{id}/rotate-secret",
        "webhook.rotate_secret",
    ),
    (
        "POST",
        "/api/admin/webhooks/{id}/deliveries/{delivery_id}/replay",
        "webhook.replay",
    ),
    ("DELETE", "/api/admin/webhooks/{id}", "webhook.delete"),
];

const PASSWORD: &str = "audited-password-1";
const CREDENTIAL_VALUE: &str = "credential-value-never-logged";

/// The changes made, in order: (action, object id).
#[derive(Default)]
struct Expected(Vec<(String, String)>);

impl Expected {
    fn push(&mut self, action: &str, object_id: &str) {
        self.0.push((action.to_owned(), object_id.to_owned()));
    }
}

fn id_of(reply: Reply) -> String {
    reply.json()["id"].as_str().expect("an id").to_owned()
}

/// Every record the token's organisation holds, newest first, page by page.
fn all_records(api: &Api, token: &str, query: &str) -> Vec<Value> {
    let mut records = Vec::new();
    let mut after = String::new();
    loop {
        let path = format!("/api/admin/audit?limit=7{query}{after}");
        let page = api.get(&path, token).expect(200).json();
        records.extend(page["records"].as_array().expect("records").iter().cloned());
        match page["next"].as_str() {
            Some(next) => after = format!("&after={next}"),
            None => return records,
        }
    }
}

/// The mutating operations under /api/admin that the server documents.
fn documented_admin_changes(api: &Api) -> BTreeSet<(String, String)> {
    let document = api
        .req("GET", "/api/openapi.json")
        .send()
        .expect(200)
        .json();
    let mut changes = BTreeSet::new();
    for (path, item) in document["paths"].as_object().expect("paths") {
        if !path.starts_with("/api/admin/") {
            continue;
        }
        for method in ["post", "put", "patch", "delete"] {
            if item.get(method).is_some() {
                changes.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    changes
}

#[test]
fn every_admin_change_leaves_one_record_with_who_what_and_where() {
    let server = TestServer::start();
    let admin = server.admin_token();
    let admin_id = user_id(&server, &admin, ADMIN_USER);

    let documented = documented_admin_changes(&server);
    let covered: BTreeSet<(String, String)> = AUDITED
        .iter()
        .map(|(method, path, _)| (method.to_string(), path.to_string()))
        .collect();
    assert_eq!(
        documented, covered,
        "the mutating admin operations of the document and those this test audits differ"
    );

    let mut expected = Expected::default();
    let send = |method: &str, path: &str, body: Option<Value>| {
        let request = server.req(method, path).auth(&admin);
        match body {
            Some(body) => request.json(&body).send(),
            None => request.send(),
        }
    };

    // Users.
    let user = id_of(
        send(
            "POST",
            "/api/admin/users",
            Some(json!({"username": "audited-user", "password": PASSWORD, "role": "integration"})),
        )
        .expect(201),
    );
    expected.push("user.create", &user);
    send(
        "PATCH",
        &format!("/api/admin/users/{user}"),
        Some(json!({"role": "admin"})),
    )
    .expect(200);
    expected.push("user.set_role", &user);
    // A change to what is already there changes nothing: it answers as any
    // change does and leaves no record (the records are compared below).
    let same_role = send(
        "PATCH",
        &format!("/api/admin/users/{user}"),
        Some(json!({"role": "admin"})),
    )
    .expect(200)
    .json();
    assert_eq!(same_role["role"], "admin", "{same_role}");

    // Runtimes and robots.
    let (runtime, key) = server.create_runtime(&admin, "audited-runtime");
    expected.push("runtime.create", &runtime);
    send(
        "PATCH",
        &format!("/api/admin/runtimes/{runtime}"),
        Some(json!({"name": "renamed"})),
    )
    .expect(200);
    expected.push("runtime.rename", &runtime);
    let same_name = send(
        "PATCH",
        &format!("/api/admin/runtimes/{runtime}"),
        Some(json!({"name": "renamed"})),
    )
    .expect(200)
    .json();
    assert_eq!(same_name["name"], "renamed", "{same_name}");
    let new_key = send("POST", &format!("/api/admin/runtimes/{runtime}/key"), None)
        .expect(200)
        .json()["key"]
        .as_str()
        .expect("a key")
        .to_owned();
    expected.push("runtime.replace_key", &runtime);
    let (work, _) = server.create_runtime(&admin, "work");
    expected.push("runtime.create", &work);
    let robot = robot(&server, &admin, "audited-robot");
    expected.push("robot.upload", &robot);

    // Credentials: written, never shown, never in the log.
    let credential = id_of(
        send(
            "POST",
            "/api/admin/credentials",
            Some(json!({"name": "erp", "fields": {"password": CREDENTIAL_VALUE}})),
        )
        .expect(201),
    );
    expected.push("credential.create", &credential);
    send(
        "PUT",
        &format!("/api/admin/credentials/{credential}"),
        Some(json!({"fields": {"password": format!("{CREDENTIAL_VALUE}-2")}})),
    )
    .expect(200);
    expected.push("credential.replace", &credential);

    // A flow, a run of it canceled and retried (the run is no admin change).
    let flow = id_of(
        send(
            "POST",
            "/api/admin/flows",
            Some(json!({"name": "audited-flow", "steps": [
                {"id": "only", "robot_id": robot, "runtime_id": work}]})),
        )
        .expect(201),
    );
    expected.push("flow.save", &flow);
    let run = server
        .req("POST", &format!("/api/integration/v2/flows/{flow}/run"))
        .auth(&admin)
        .json(&json!({}))
        .send()
        .json()["id"]
        .as_str()
        .expect("a flow run")
        .to_owned();
    let run_path = format!("/api/integration/v2/flows/runs/{run}");
    send("DELETE", &run_path, None).expect(200);
    expected.push("flow_run.cancel", &run);
    // Retried once the engine has recorded the canceled step's end, so that
    // the retry has an ended run to resume.
    wait_until(Duration::from_secs(30), "the canceled step's end", || {
        let read = send("GET", &run_path, None).expect(200).json();
        (read["steps"][0]["status"] == "CANCELED").then_some(())
    });
    send("POST", &format!("{run_path}/retry"), None).expect(200);
    expected.push("flow_run.retry", &run);
    send("DELETE", &run_path, None).expect(200);
    expected.push("flow_run.cancel", &run);

    // A schedule: created, paused, resumed, triggered, backfilled, deleted.
    let schedule = id_of(
        send(
            "POST",
            "/api/admin/schedules",
            Some(json!({"name": "audited-schedule", "robot_id": robot,
                "runtime_id": work, "cron": "0 0 1 1 *"})),
        )
        .expect(201),
    );
    expected.push("schedule.create", &schedule);
    let schedule_path = format!("/api/admin/schedules/{schedule}");
    send("PATCH", &schedule_path, Some(json!({"paused": true}))).expect(200);
    expected.push("schedule.pause", &schedule);
    send("PATCH", &schedule_path, Some(json!({"paused": false}))).expect(200);
    expected.push("schedule.resume", &schedule);
    send(
        "PATCH",
        &schedule_path,
        Some(json!({"name": "renamed-schedule"})),
    )
    .expect(200);
    expected.push("schedule.update", &schedule);
    for unchanged in [
        json!({}),
        json!({"name": "renamed-schedule", "paused": false}),
    ] {
        let answer = send("PATCH", &schedule_path, Some(unchanged))
            .expect(200)
            .json();
        assert_eq!(answer["name"], "renamed-schedule", "{answer}");
    }
    let triggered = send("POST", &format!("{schedule_path}/trigger"), None)
        .expect(200)
        .json()["execution_id"]
        .as_str()
        .expect("the triggered execution")
        .to_owned();
    expected.push("schedule.trigger", &schedule);
    send(
        "POST",
        &format!("{schedule_path}/backfill"),
        Some(json!({"from": "2020-01-01T00:00:00Z", "to": "2021-01-01T00:00:00Z"})),
    )
    .expect(200);
    expected.push("schedule.backfill", &schedule);
    // The execution the trigger queued, canceled through the Integration API;
    // a second cancel is refused and records nothing.
    let cancel = format!("/api/integration/v1/delete/{work}/{triggered}");
    send("DELETE", &cancel, None).expect(200);
    expected.push("execution.cancel", &triggered);
    assert_eq!(send("DELETE", &cancel, None).status, 409);
    send("DELETE", &schedule_path, None).expect(204);
    expected.push("schedule.delete", &schedule);

    // Deletions; a refused one records nothing.
    send(
        "DELETE",
        &format!("/api/admin/credentials/{credential}"),
        None,
    )
    .expect(204);
    expected.push("credential.delete", &credential);
    send("DELETE", &format!("/api/admin/runtimes/{runtime}"), None).expect(204);
    expected.push("runtime.delete", &runtime);
    assert_eq!(
        send("DELETE", &format!("/api/admin/runtimes/{runtime}"), None).status,
        404
    );
    send("DELETE", &format!("/api/admin/users/{user}"), None).expect(204);
    expected.push("user.delete", &user);
    let other_org = id_of(
        send(
            "POST",
            "/api/admin/organizations",
            Some(json!({"name": "Other", "admin_username": "other-admin",
                "admin_password": PASSWORD})),
        )
        .expect(201),
    );
    expected.push("organization.create", &other_org);

    // An API key: created, used for a change (recorded under the key), revoked;
    // a second revoke changes nothing and records nothing.
    let created_key = send(
        "POST",
        "/api/admin/api-keys",
        Some(json!({"name": "audited-key", "role": "admin",
            "expires_at": "2999-01-01T00:00:00Z"})),
    )
    .expect(201)
    .json();
    let api_key_id = created_key["id"].as_str().expect("an id").to_owned();
    let api_key = created_key["key"].as_str().expect("the key").to_owned();
    expected.push("api_key.create", &api_key_id);
    let keyed_user = id_of(
        server
            .req("POST", "/api/admin/users")
            .auth(&format!("Bearer {api_key}"))
            .json(&json!({"username": "keyed-user", "password": PASSWORD,
                "role": "integration"}))
            .send()
            .expect(201),
    );
    expected.push("user.create", &keyed_user);
    let api_key_path = format!("/api/admin/api-keys/{api_key_id}");
    send("DELETE", &api_key_path, None).expect(204);
    expected.push("api_key.revoke", &api_key_id);
    send("DELETE", &api_key_path, None).expect(204);

    // A webhook: created (its secret shown once), changed, given a new
    // secret, a delivery replayed, deleted.
    let webhook = send(
        "POST",
        "/api/admin/webhooks",
        Some(json!({"url": "http://127.0.0.1:9/audited", "events": ["execution.queued"]})),
    )
    .expect(201)
    .json();
    let webhook_id = webhook["id"].as_str().expect("an id").to_owned();
    let webhook_secret = webhook["secret"].as_str().expect("the secret").to_owned();
    expected.push("webhook.create", &webhook_id);
    let webhook_path = format!("/api/admin/webhooks/{webhook_id}");
    send(
        "PATCH",
        &webhook_path,
        Some(json!({"description": "audited"})),
    )
    .expect(200);
    expected.push("webhook.update", &webhook_id);
    for unchanged in [
        json!({}),
        json!({"description": "audited", "enabled": true}),
    ] {
        let answer = send("PATCH", &webhook_path, Some(unchanged))
            .expect(200)
            .json();
        assert_eq!(answer["description"], "audited", "{answer}");
    }
    let rotated = send("POST", &format!("{webhook_path}/rotate-secret"), None)
        .expect(200)
        .json();
    let rotated_secret = rotated["secret"].as_str().expect("the secret").to_owned();
    expected.push("webhook.rotate_secret", &webhook_id);
    server.queue(&admin, &work, &robot, None);
    let delivery_id = wait_until(Duration::from_secs(30), "a webhook delivery", || {
        let page = send("GET", &format!("{webhook_path}/deliveries"), None)
            .expect(200)
            .json();
        page["deliveries"][0]["id"].as_str().map(str::to_owned)
    });
    send(
        "POST",
        &format!("{webhook_path}/deliveries/{delivery_id}/replay"),
        None,
    )
    .expect(202);
    expected.push("webhook.replay", &webhook_id);
    send("DELETE", &webhook_path, None).expect(204);
    expected.push("webhook.delete", &webhook_id);

    // A failed login, for a known name and an unknown one.
    assert_eq!(
        server.login_v2_reply(ADMIN_USER, "wrong-password").status,
        401
    );
    assert_eq!(
        server
            .login_v2_reply("nobody-at-all", "wrong-password")
            .status,
        401
    );

    // Every action of the table was performed.
    let performed: BTreeSet<&str> = expected.0.iter().map(|(a, _)| a.as_str()).collect();
    for (_, _, action) in AUDITED {
        assert!(performed.contains(action), "{action} not performed");
    }

    // One record per change, oldest last, with who and from where.
    let records = all_records(&server, &admin, "");
    let (logins, changes): (Vec<Value>, Vec<Value>) = records
        .into_iter()
        .partition(|r| r["action"] == "auth.login_failed");
    let mut recorded: Vec<(String, String)> = changes
        .iter()
        .map(|r| {
            (
                r["action"].as_str().unwrap().to_owned(),
                r["object_id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    recorded.reverse();
    assert_eq!(recorded, expected.0);
    for record in &changes {
        if record["object_id"] == keyed_user.as_str() {
            assert_eq!(record["actor_id"], api_key_id.as_str(), "{record}");
            assert_eq!(record["actor_name"], "api-key:audited-key", "{record}");
        } else {
            assert_eq!(record["actor_id"], admin_id.as_str(), "{record}");
            assert_eq!(record["actor_name"], ADMIN_USER, "{record}");
        }
        assert_eq!(record["address"], "127.0.0.1", "{record}");
        assert_eq!(
            record["object_type"],
            record["action"]
                .as_str()
                .unwrap()
                .split('.')
                .next()
                .unwrap(),
            "{record}"
        );
        assert!(record["time"].as_i64().unwrap() > 0, "{record}");
    }
    let summary_of = |action: &str| {
        changes
            .iter()
            .find(|r| r["action"] == action)
            .map(|r| r["summary"].clone())
            .unwrap()
    };
    assert_eq!(summary_of("user.set_role")["role"], "admin");
    assert_eq!(summary_of("runtime.rename")["name"], "renamed");
    assert_eq!(summary_of("robot.upload")["version"], 1);
    assert_eq!(summary_of("credential.replace")["version"], 2);
    assert_eq!(
        summary_of("credential.replace")["fields"],
        json!(["password"])
    );
    let key_summary = json!({"name": "audited-key", "role": "admin",
        "expires_at": 32_472_144_000_000_i64});
    assert_eq!(summary_of("api_key.create"), key_summary);
    assert_eq!(summary_of("api_key.revoke"), key_summary);
    assert_eq!(summary_of("webhook.update")["description"], "audited");
    assert_eq!(
        summary_of("webhook.replay")["delivery_id"],
        delivery_id.as_str()
    );
    // No secret anywhere in the log: no password, credential value, runtime
    // key, API key nor its hash.
    let text = serde_json::to_string(&changes).unwrap();
    let api_key_hash = hex::encode(Sha256::digest(api_key.as_bytes()));
    let api_key_secret = api_key.trim_start_matches("rgk_");
    for secret in [
        PASSWORD,
        CREDENTIAL_VALUE,
        key.as_str(),
        new_key.as_str(),
        api_key_secret,
        api_key_hash.as_str(),
        &webhook_secret[6..],
        &rotated_secret[6..],
    ] {
        assert!(!text.contains(secret), "the log shows a secret: {text}");
    }

    // Failed logins: the name tried and the address, newest first; an unknown
    // name is recorded in the first organisation.
    assert_eq!(logins.len(), 2, "{logins:?}");
    assert_eq!(logins[0]["actor_name"], "nobody-at-all");
    assert_eq!(logins[0]["summary"]["known"], false);
    assert_eq!(logins[1]["actor_name"], ADMIN_USER);
    assert_eq!(logins[1]["object_id"], admin_id.as_str());
    for login in &logins {
        assert_eq!(login["address"], "127.0.0.1");
        assert!(!login.to_string().contains("wrong-password"));
    }

    // Filters.
    let actions = |query: &str| -> Vec<String> {
        all_records(&server, &admin, query)
            .iter()
            .map(|r| r["action"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        actions("&action=runtime.create"),
        ["runtime.create", "runtime.create"]
    );
    assert_eq!(
        actions(&format!("&object_type=schedule&object_id={schedule}")).len(),
        7
    );
    assert_eq!(actions("&actor=nobody-at-all"), ["auth.login_failed"]);
    assert_eq!(actions("&actor=api-key:audited-key"), ["user.create"]);
    assert_eq!(actions(&format!("&actor={api_key_id}")), ["user.create"]);
    assert_eq!(
        actions(&format!("&actor={admin_id}")).len(),
        expected.0.len() - 1
    );
    assert!(actions("&to=2000-01-01T00:00:00Z").is_empty());
    assert_eq!(actions("&from=0").len(), expected.0.len() + 2);

    // Bad queries answer the error shape.
    for query in [
        "limit=0",
        "limit=201",
        "from=yesterday",
        "after=-1",
        "colour=red",
    ] {
        let reply = server.get(&format!("/api/admin/audit?{query}"), &admin);
        assert_error(&reply, 400, "/api/admin/audit");
    }

    // Nothing edits or deletes a record.
    for method in ["POST", "PUT", "PATCH", "DELETE"] {
        let reply = server.req(method, "/api/admin/audit").auth(&admin).send();
        assert_eq!(reply.status, 405, "{method}: {}", reply.text());
    }

    // Only admins read the log.
    server.create_user(&admin, "reader", PASSWORD, "integration");
    let reader = server.login("reader", PASSWORD);
    assert_error(
        &server.get("/api/admin/audit", &reader),
        403,
        "/api/admin/audit",
    );

    // Another organisation sees its own records only.
    let other = server.login("other-admin", PASSWORD);
    assert!(all_records(&server, &other, "").is_empty());
    let (theirs, _) = server.create_runtime(&other, "theirs");
    let seen = all_records(&server, &other, "");
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0]["object_id"], theirs.as_str());
    assert_eq!(seen[0]["actor_name"], "other-admin");
    assert!(all_records(&server, &admin, &format!("&object_id={theirs}")).is_empty());
}

#[test]
fn console_changes_are_recorded_and_the_audit_page_lists_them_for_admins() {
    use crate::console::{hidden_field, http, http_session};

    let server = TestServer::start();
    let admin = server.admin_token();
    let client = http();
    let cookie = format!(
        "regente_session={}",
        http_session(&server, ADMIN_USER, ADMIN_PASSWORD)
    );
    let get = |path: &str, cookie: &str| {
        client
            .get(server.url(path))
            .header("Cookie", cookie)
            .send()
            .unwrap()
    };

    // A user created through the console's form.
    let csrf = hidden_field(&get("/users", &cookie).text().unwrap(), "csrf");
    let created = client
        .post(server.url("/users"))
        .header("Cookie", &cookie)
        .form(&[
            ("csrf", csrf.as_str()),
            ("username", "console-made"),
            ("password", PASSWORD),
            ("role", "integration"),
        ])
        .send()
        .unwrap();
    assert_eq!(created.status(), 201);
    let records = all_records(&server, &admin, "&action=user.create");
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["actor_name"], ADMIN_USER);
    assert_eq!(records[0]["address"], "127.0.0.1");
    assert_eq!(records[0]["summary"]["username"], "console-made");

    // The page lists it, filtered; a filter that matches nothing says so.
    let page = get("/audit?action=user.create&actor=", &cookie);
    assert_eq!(page.status(), 200);
    let html = page.text().unwrap();
    assert!(html.contains("data-action=\"user.create\""), "{html}");
    assert!(html.contains("console-made"), "{html}");
    assert!(!html.contains(PASSWORD), "{html}");
    let none = get("/audit?action=user.delete", &cookie).text().unwrap();
    assert!(none.contains("No records match."), "{none}");
    assert_eq!(get("/audit?limit=0", &cookie).status(), 400);

    // A failed login with a NUL in the name tried is recorded too (PostgreSQL
    // text holds no NUL: it shows as U+FFFD).
    assert_eq!(
        server.login_v2_reply("bad\0name", "wrong-password").status,
        401
    );
    let failed = all_records(&server, &admin, "&action=auth.login_failed");
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0]["actor_name"], "bad\u{FFFD}name");

    // The page tells an actor's kind by the id recorded, not by the name: a
    // user named like an API key shows as a user, the key as a key, and a
    // failed login as nobody signed in.
    server.create_user(&admin, "api-key:impostor", PASSWORD, "admin");
    let impostor = server.login("api-key:impostor", PASSWORD);
    server.create_user(&impostor, "made-by-impostor", PASSWORD, "integration");
    let key = server
        .req("POST", "/api/admin/api-keys")
        .auth(&admin)
        .json(&json!({"name": "impostor", "role": "admin",
            "expires_at": "2999-01-01T00:00:00Z"}))
        .send()
        .expect(201)
        .json()["key"]
        .as_str()
        .expect("the key")
        .to_owned();
    server.create_user(
        &format!("Bearer {key}"),
        "made-by-key",
        PASSWORD,
        "integration",
    );
    let html = get("/audit?action=user.create", &cookie).text().unwrap();
    let actor_of = |made: &str| -> String {
        let row = html
            .split("<tr data-action=")
            .find(|row| row.contains(made))
            .unwrap_or_else(|| panic!("no row for {made}: {html}"));
        let cell = row.find("data-actor-kind=").expect("an actor cell");
        row[cell..row[cell..].find("</td>").unwrap() + cell].to_owned()
    };
    let by_impostor = actor_of("made-by-impostor");
    assert!(
        by_impostor.starts_with("data-actor-kind=\"user\""),
        "{by_impostor}"
    );
    assert!(by_impostor.contains("api-key:impostor"), "{by_impostor}");
    let by_key = actor_of("made-by-key");
    assert!(
        by_key.starts_with("data-actor-kind=\"api_key\""),
        "{by_key}"
    );
    assert!(by_key.contains("api-key:impostor"), "{by_key}");
    assert!(by_key.contains(">API key<"), "{by_key}");
    let by_admin = actor_of("console-made");
    assert!(
        by_admin.starts_with("data-actor-kind=\"user\""),
        "{by_admin}"
    );
    let html = get("/audit?action=auth.login_failed", &cookie)
        .text()
        .unwrap();
    assert!(html.contains("data-actor-kind=\"anonymous\""), "{html}");

    // An integration user gets the 403 page.
    let reader = format!(
        "regente_session={}",
        http_session(&server, "console-made", PASSWORD)
    );
    assert_eq!(get("/audit", &reader).status(), 403);
}
