//! Runtime keys replaced by an admin, the slots an agent may use, and inputs
//! refused at the door: variables too large for a robot's environment, and
//! packages naming an entry twice.

use std::time::Duration;

use serde_json::json;

use crate::support::*;

fn key_path(runtime: &str) -> String {
    format!("/api/admin/runtimes/{runtime}/key")
}

#[test]
fn a_replaced_key_is_refused_at_once_and_its_connection_closed() {
    let server = TestServer::start();
    let admin = server.admin_token();
    let (runtime, old_key) = server.create_runtime(&admin, "rotated");
    let robot = upload_shell_robot(&server, &admin, "rotated-hello", "echo rotated", "");
    let old_agent = TestAgent::start(&server, &old_key, 1);
    old_agent.wait_welcomed(1, Duration::from_secs(30));
    let package = "/api/runtime/packages/0123456789abcdef/1";
    let old_bearer = format!("Bearer {old_key}");
    assert_error(&server.get(package, &old_bearer), 404, package);

    let reply = server
        .req("POST", &key_path(&runtime))
        .auth(&admin)
        .send()
        .expect(200)
        .json();
    assert_eq!(reply["id"], runtime.as_str());
    let new_key = reply["key"].as_str().expect("the new key").to_owned();
    assert_eq!(new_key.len(), 40);
    assert_ne!(new_key, old_key);

    // The old key is refused at once, and its agent was disconnected.
    assert_error(&server.get(package, &old_bearer), 401, package);
    wait_until(
        Duration::from_secs(30),
        "the old key's session closed",
        || {
            server
                .stderr()
                .contains("its key was replaced")
                .then_some(())
        },
    );
    old_agent.wait_log("401", Duration::from_secs(30));
    assert_eq!(old_agent.welcomes(), 1, "{}", tail(&old_agent.stderr(), 20));

    // The new key works.
    let new_agent = TestAgent::start(&server, &new_key, 1);
    new_agent.wait_welcomed(1, Duration::from_secs(30));
    run_to_the_end(&server, &admin, &runtime, &robot);

    // Unknown and malformed ids, and non-admins.
    for unknown in ["0123456789abcdef", "not-an-id"] {
        let path = key_path(unknown);
        assert_error(&server.req("POST", &path).auth(&admin).send(), 404, &path);
    }
    server.create_user(&admin, "integrator", "integrator-password", "integration");
    let integrator = server.login("integrator", "integrator-password");
    let path = key_path(&runtime);
    assert_error(
        &server.req("POST", &path).auth(&integrator).send(),
        403,
        &path,
    );
}

#[test]
fn another_organisations_admin_cannot_replace_a_key() {
    let server = TestServer::start();
    let admin = server.admin_token();
    let (runtime, key) = server.create_runtime(&admin, "ours");
    server
        .req("POST", "/api/admin/organizations")
        .auth(&admin)
        .json(&json!({"name": "others", "admin_username": "other-admin", "admin_password": "other-password"}))
        .send()
        .expect(201);
    let other = server.login("other-admin", "other-password");
    let path = key_path(&runtime);
    assert_error(&server.req("POST", &path).auth(&other).send(), 404, &path);
    // The key still works; the route is there for the runtime's own admin.
    let package = "/api/runtime/packages/0123456789abcdef/1";
    assert_error(&server.get(package, &format!("Bearer {key}")), 404, package);
    server.req("POST", &path).auth(&admin).send().expect(200);
}

#[test]
fn an_agent_asking_for_more_slots_than_its_runtime_has_gets_the_runtimes() {
    let server = TestServer::start();
    let admin = server.admin_token();
    let (runtime, key) = server.create_runtime_with_slots(&admin, "one-slot", 1);
    // Each run says how many runs it saw running at once, waiting a second
    // for company.
    let robot = upload_shell_robot(
        &server,
        &admin,
        "company",
        "touch \"$REGENTE_VAR_DIR/$REGENTE_EXECUTION_ID\"\nmost=1\ni=0\nwhile [ $i -lt 20 ]; do\n  n=$(ls \"$REGENTE_VAR_DIR\" | wc -l)\n  [ \"$n\" -gt \"$most\" ] && most=$n\n  i=$((i + 1)); sleep 0.05\ndone\nrm \"$REGENTE_VAR_DIR/$REGENTE_EXECUTION_ID\"\necho \"::return::$most\"\n",
        "",
    );
    let out = scratch();
    let vars = text_vars(&[("DIR", &path_text(out.path()))]);
    let ids: Vec<String> = (0..3)
        .map(|_| server.queue(&admin, &runtime, &robot, Some(&vars)))
        .collect();
    let agent = TestAgent::start(&server, &key, 1000);
    for id in &ids {
        let done = wait_for_status(
            &server,
            &admin,
            &runtime,
            id,
            ENDED,
            Duration::from_secs(60),
        );
        assert_eq!(done["status"], "FINISHED", "{done}");
        assert_eq!(done["returnValue"], 1, "one run at a time: {done}");
    }
    assert!(
        server.stderr().contains("capped"),
        "{}",
        tail(&server.stderr(), 20)
    );
    drop(agent);
}

#[test]
fn a_variable_too_large_for_the_environment_is_refused_at_submit() {
    let server = TestServer::start();
    let admin = server.admin_token();
    let (runtime, _) = server.create_runtime(&admin, "rt");
    let robot = upload_shell_robot(&server, &admin, "big", "echo ok", "");
    let big = "x".repeat(129 * 1024);
    let body = json!({"variables": [{"name": "DOC", "type": "text", "value": big}]});
    let path = format!("/api/integration/v2/run/{runtime}/{robot}");
    let reply = server.run_v2(&admin, &runtime, &robot, Some(&body));
    let error = assert_error(&reply, 400, &path);
    assert!(
        message(&error).contains("DOC") && message(&error).contains("131072"),
        "{error}"
    );
    assert!(
        server.all_executions(&admin, "").is_empty(),
        "nothing was queued"
    );
}

#[test]
fn a_package_naming_an_entry_twice_is_refused_at_upload() {
    let server = TestServer::start();
    let admin = server.admin_token();
    let good = "name = \"twice\"\ncommand = [\"sh\", \"run.sh\"]\n";
    let evil = "name = \"twice\"\ncommand = [\"sh\", \"-c\", \"echo evil\"]\n";
    let mut zip = zip_of(&[
        ("robot.toml", good.as_bytes()),
        ("robot.tomX", evil.as_bytes()),
        ("run.sh", b"echo ok"),
    ]);
    // Renamed in both its headers: the writer refuses to write a name twice.
    let mut at = 0;
    while let Some(found) = zip[at..].windows(10).position(|w| w == b"robot.tomX") {
        zip[at + found + 9] = b'l';
        at += found + 10;
    }
    let reply = server.upload_robot_reply(&admin, zip);
    let body = assert_error(&reply, 400, "/api/admin/robots");
    assert!(message(&body).contains("more than once"), "{body}");
}
