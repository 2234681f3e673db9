//! Renaming and deleting runtimes, changing a user's role, through the admin API.

use std::time::Duration;

use serde_json::json;

use crate::support::*;

#[test]
fn runtimes_are_renamed_and_deleted_once_offline_and_idle() {
    // Online counts a runtime heard from within the timeout: a short one, so
    // that the stopped agent's runtime shows offline soon.
    let server = TestServer::start_with(&[("REGENTE_RUNTIME_TIMEOUT_SECONDS", "1")]);
    let f = fixture(&server);
    let (runtime, key) = server.create_runtime(&f.admin, "to-rename");
    let path = format!("/api/admin/runtimes/{runtime}");
    let renamed = server
        .req("PATCH", &path)
        .auth(&f.admin)
        .json(&json!({"name": "  renamed  "}))
        .send()
        .expect(200)
        .json();
    assert_eq!(renamed["name"], "renamed");
    let listed = server.get("/api/admin/runtimes", &f.admin).json();
    assert!(listed
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["id"] == runtime.as_str() && r["name"] == "renamed"));
    let bad = server
        .req("PATCH", &path)
        .auth(&f.admin)
        .json(&json!({"name": ""}))
        .send();
    assert_error(&bad, 400, &path);

    // Online: refused.
    let mut agent = TestAgent::start(&server, &key, 1);
    wait_until(Duration::from_secs(30), "the runtime online", || {
        server.runtime_online(&f.admin, &runtime).then_some(())
    });
    let online = server.req("DELETE", &path).auth(&f.admin).send();
    assert!(message(&assert_error(&online, 409, &path)).contains("online"));
    agent.stop();
    wait_until(Duration::from_secs(30), "the runtime offline", || {
        (!server.runtime_online(&f.admin, &runtime)).then_some(())
    });
    // Something queued: refused.
    let queued = server.queue(&f.admin, &runtime, &f.robot, None);
    let busy = server.req("DELETE", &path).auth(&f.admin).send();
    assert!(message(&assert_error(&busy, 409, &path)).contains("queued or running"));
    server.delete(&f.admin, &runtime, &queued).expect(200);

    // Another organisation sees no such runtime.
    server
        .req("POST", "/api/admin/organizations")
        .auth(&f.admin)
        .json(&json!({"name": "Other", "admin_username": "other-admin", "admin_password": "other-password"}))
        .send()
        .expect(201);
    let other = server.login("other-admin", "other-password");
    assert_error(&server.req("DELETE", &path).auth(&other).send(), 404, &path);

    server
        .req("DELETE", &path)
        .auth(&f.admin)
        .send()
        .expect(204);
    let listed = server.get("/api/admin/runtimes", &f.admin).json();
    assert!(!listed
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["id"] == runtime.as_str()));
    assert_error(
        &server.req("DELETE", &path).auth(&f.admin).send(),
        404,
        &path,
    );
    let run = server.run_v1(&f.admin, &runtime, &f.robot, None);
    assert_eq!(run.status, 404, "{}", run.text());
    // Its history stays, naming it.
    assert_eq!(
        server.execution(&f.admin, &queued)["runtime_id"],
        runtime.as_str()
    );
    // Its key no longer opens the agents' routes.
    let package = server
        .req("GET", &format!("/api/runtime/packages/{}/1", f.robot))
        .auth(&format!("Bearer {key}"))
        .send();
    assert_eq!(package.status, 401, "{}", package.text());
}

#[test]
fn a_new_role_applies_at_once() {
    let server = InProcessServer::start();
    let f = fixture(&server);
    let user = server.create_user(&f.admin, "promoted", "promoted-password", "integration");
    let id = user["id"].as_str().unwrap().to_owned();
    let token = server.login("promoted", "promoted-password");
    server.get("/api/admin/users", &token).expect(403);
    let path = format!("/api/admin/users/{id}");
    let changed = server
        .req("PATCH", &path)
        .auth(&f.admin)
        .json(&json!({"role": "admin"}))
        .send()
        .expect(200)
        .json();
    assert_eq!(changed["role"], "admin");
    server.get("/api/admin/users", &token).expect(200);

    let bad = server
        .req("PATCH", &path)
        .auth(&f.admin)
        .json(&json!({"role": "root"}))
        .send();
    assert_error(&bad, 400, &path);
    let admin_id = user_id(&server, &f.admin, ADMIN_USER);
    let own = format!("/api/admin/users/{admin_id}");
    let mine = server
        .req("PATCH", &own)
        .auth(&f.admin)
        .json(&json!({"role": "integration"}))
        .send();
    assert_error(&mine, 409, &own);
    // The promoted admin demotes nobody outside the organisation either.
    let unknown = "/api/admin/users/0123456789abcdef";
    let none = server
        .req("PATCH", unknown)
        .auth(&token)
        .json(&json!({"role": "admin"}))
        .send();
    assert_error(&none, 404, unknown);
}
