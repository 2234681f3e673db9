//! Graceful shutdown, and what a restart on the same data directory keeps:
//! users, robots, executions, their statuses, the signing secret and so the
//! tokens already issued.

use serde_json::{json, Value};

use crate::support::*;

/// Everything the admin and integration APIs show of one organisation.
fn state(server: &TestServer, admin: &str, runtime: &str, executions: &[String]) -> Vec<Value> {
    let mut state = vec![
        server.get("/api/admin/users", admin).expect(200).json(),
        server.get("/api/admin/runtimes", admin).expect(200).json(),
        server.get("/api/admin/robots", admin).expect(200).json(),
        Value::Array(server.all_executions(admin, "")),
    ];
    for id in executions {
        state.push(server.result(admin, runtime, id).expect(200).json());
        state.push(server.execution(admin, id));
    }
    state
}

#[test]
fn a_restart_keeps_users_robots_executions_and_tokens() {
    // No REGENTE_JWT_SECRET: the server keeps its own in the data directory.
    let mut server = TestServer::start_with(&[("REGENTE_JWT_SECRET", "")]);
    let secret_file = server.data_dir().join("jwt-secret");
    assert_eq!(mode(&server.data_dir()), 0o700);
    // On PostgreSQL the secret lives in the database, shared by every server.
    let secret = if crate::support::on_postgres() {
        assert!(
            !secret_file.exists(),
            "{} should not exist",
            secret_file.display()
        );
        Vec::new()
    } else {
        assert!(
            secret_file.is_file(),
            "{} is missing",
            secret_file.display()
        );
        assert_eq!(
            mode(&secret_file),
            0o600,
            "the secret is readable by the owner only"
        );
        let secret = std::fs::read(&secret_file).unwrap();
        assert!(secret.len() >= 32);
        secret
    };

    let admin = server.admin_token();
    server.create_user(&admin, "integrator", "integrator-password", "integration");
    server.create_user(&admin, "second-admin", "second-admin-password", "admin");
    let integration = server.login("integrator", "integrator-password");
    let (runtime, _) = server.create_runtime(&admin, "rt-restart");
    let robot = robot(&server, &admin, "consulta-cnpj");
    let first = server.queue(
        &integration,
        &runtime,
        &robot,
        Some(&json!({"variables": [{"name": "CNPJ", "type": "text", "value": "kept"}]})),
    );
    let v2 = manifest("consulta-cnpj").replace("default = 10", "default = 99");
    server.upload_robot(&admin, robot_zip(&v2, &[]));
    let canceled = server.queue(&integration, &runtime, &robot, None);
    let pending = server.queue(&admin, &runtime, &robot, None);
    server.delete(&integration, &runtime, &canceled).expect(200);
    let executions = vec![first.clone(), canceled.clone(), pending.clone()];
    let before = state(&server, &admin, &runtime, &executions);

    server.restart();

    // The old tokens work against the new process, and everything is intact.
    let after = state(&server, &admin, &runtime, &executions);
    assert_eq!(after, before);
    if !crate::support::on_postgres() {
        assert_eq!(
            std::fs::read(&secret_file).unwrap(),
            secret,
            "the secret is kept"
        );
    }
    assert_eq!(
        server
            .result(&integration, &runtime, &first)
            .expect(200)
            .json()["status"],
        "PENDENT"
    );
    let first_detail = server.execution(&admin, &first);
    assert_eq!(first_detail["robot_version"], 1);
    assert_eq!(
        first_detail["variables"],
        json!({"CNPJ": "kept", "LIMIT": 10})
    );
    let canceled_result = server
        .result(&admin, &runtime, &canceled)
        .expect(200)
        .json();
    assert_eq!(canceled_result["status"], "CANCELED");
    assert!(canceled_result["end"].is_i64());
    let path = format!("/api/integration/v1/delete/{runtime}/{canceled}");
    assert_error(
        &server.delete(&integration, &runtime, &canceled),
        409,
        &path,
    );
    server.login("second-admin", "second-admin-password");

    // The restarted server carries on: new runs take the newest version, the
    // pending one can still be canceled, ids do not repeat.
    let new = server.queue(&integration, &runtime, &robot, None);
    assert!(!executions.contains(&new));
    assert_eq!(server.execution(&admin, &new)["robot_version"], 2);
    assert_eq!(server.execution(&admin, &new)["queue_position"], 2);
    server.delete(&admin, &runtime, &pending).expect(200);

    // The first admin is made only on an empty store: a new configured password
    // at a later start changes nothing.
    server.set_env("REGENTE_ADMIN_PASSWORD", "a-different-password");
    server.restart();
    assert_error(
        &server.login_v1_reply(ADMIN_USER, "a-different-password"),
        401,
        "/api/user/auth",
    );
    server.login(ADMIN_USER, ADMIN_PASSWORD);
    assert_eq!(
        server
            .result(&integration, &runtime, &pending)
            .expect(200)
            .json()["status"],
        "CANCELED"
    );
    assert_eq!(server.all_executions(&admin, "").len(), 4);
}

#[test]
fn a_first_start_without_a_password_prints_a_generated_one_once() {
    let mut server = TestServer::start_with(&[("REGENTE_ADMIN_PASSWORD", "")]);
    let stdout = server.stdout();
    let line = stdout
        .lines()
        .find(|line| line.contains("password"))
        .unwrap_or_else(|| panic!("no generated password on stdout:\n{stdout}"));
    let password = line
        .split("password \"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("cannot read the password in {line:?}"))
        .to_owned();
    assert!(password.len() >= 16, "{password:?} is too weak");
    assert!(line.contains(ADMIN_USER), "{line}");
    assert!(
        !server.stderr().contains(&password),
        "the password must not reach the log"
    );
    let token = server.login(ADMIN_USER, &password);
    // With REGENTE_JWT_SECRET set, no secret is written to the data directory.
    assert!(!server.data_dir().join("jwt-secret").exists());

    // SIGINT stops it cleanly too; the next start prints no password.
    server.stop_with("INT");
    server.start_again();
    assert!(
        !server.stdout().contains(&password),
        "the password is shown only once:\n{}",
        server.stdout()
    );
    server.get("/api/admin/users", &token).expect(200);
    server.login(ADMIN_USER, &password);
}

#[test]
fn sigterm_stops_the_server_even_with_open_connections() {
    let mut server = TestServer::start();
    let admin = server.admin_token();
    // A keep-alive connection stays open in the client's pool.
    server.get("/api/admin/users", &admin).expect(200);
    server.get("/healthz", &admin).expect(200);
    // stop() asserts exit status 0 within its deadline.
    server.stop();
}

/// Opens a connection, sends `partial` and leaves it hanging; then checks that
/// SIGTERM still stops the server within the deadline.
fn stops_despite_a_stuck_client(partial: &[u8]) {
    use std::io::Write as _;
    let mut server = TestServer::start();
    let addr = server.base.trim_start_matches("http://").to_owned();
    let mut stuck = std::net::TcpStream::connect(&addr).unwrap();
    stuck.write_all(partial).unwrap();
    // The server still answers others.
    server.req("GET", "/healthz").send().expect(200);
    server.stop();
    drop(stuck);
}

#[test]
fn sigterm_stops_the_server_while_a_client_is_connected_but_silent() {
    stops_despite_a_stuck_client(b"");
}

#[test]
fn sigterm_stops_the_server_while_a_client_is_stuck_mid_headers() {
    stops_despite_a_stuck_client(b"GET /healthz HTTP/1.1\r\nHo");
}

#[test]
fn sigterm_stops_the_server_while_a_client_is_stuck_mid_body() {
    stops_despite_a_stuck_client(
        b"POST /api/user/auth HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"user",
    );
}
