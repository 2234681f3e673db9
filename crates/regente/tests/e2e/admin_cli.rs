//! The first admin on a store that has one: the admin settings of a later start
//! are ignored and the server says so, and `regente admin reset-password` sets
//! a new password through the store itself, with the server running.

use std::io::Write as _;
use std::process::{Output, Stdio};
use std::time::Duration;

use crate::support::*;

/// `regente admin reset-password USERNAME` against `server`'s store.
fn reset_password(server: &TestServer, username: &str, stdin: Option<&str>) -> Output {
    let mut command = regente_testkit::regente_command(&regente_testkit::regente_binary());
    command
        .args(["admin", "reset-password", username, "--data-dir"])
        .arg(server.data_dir());
    if let Some(url) = server.database_url() {
        command.arg("--database-url").arg(url);
    }
    if stdin.is_some() {
        command.arg("--password-stdin");
    }
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("regente admin starts");
    let mut input = child.stdin.take().expect("piped stdin");
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).expect("stdin is written");
    }
    drop(input);
    child.wait_with_output().expect("regente admin ends")
}

fn printed_password(output: &Output, username: &str) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "reset-password failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
        .trim()
        .strip_prefix(&format!("new password for {username:?}: "))
        .unwrap_or_else(|| panic!("no new password printed: {stdout}"))
        .to_owned()
}

#[test]
fn admin_settings_ignored_on_a_store_with_an_admin_are_named_and_a_password_can_be_reset() {
    let mut server = TestServer::start();
    server.stop();
    server.set_env("REGENTE_ADMIN_PASSWORD", "another-password-entirely");
    server.start_again();
    // Its log is read by a thread of its own: wait for the line, not just the start.
    wait_for(
        Duration::from_secs(10),
        "the server saying the password was ignored and how to set one",
        || {
            let log = server.stderr();
            let said = log.contains("REGENTE_ADMIN_USER/REGENTE_ADMIN_PASSWORD were ignored")
                && log.contains("regente admin reset-password admin");
            if said {
                Ok(())
            } else {
                Err(log)
            }
        },
    );
    assert_eq!(
        server
            .login_v1_reply(ADMIN_USER, "another-password-entirely")
            .status,
        401
    );
    server.login(ADMIN_USER, ADMIN_PASSWORD);

    // With the server running: a generated password, then one read from stdin.
    let generated = printed_password(&reset_password(&server, ADMIN_USER, None), ADMIN_USER);
    assert!(generated.len() >= 20, "{generated}");
    server.login(ADMIN_USER, &generated);
    assert_eq!(
        server.login_v1_reply(ADMIN_USER, ADMIN_PASSWORD).status,
        401
    );
    let chosen = printed_password(
        &reset_password(&server, ADMIN_USER, Some("a-chosen-password\n")),
        ADMIN_USER,
    );
    assert_eq!(chosen, "a-chosen-password");
    server.login(ADMIN_USER, "a-chosen-password");
    assert_eq!(server.login_v1_reply(ADMIN_USER, &generated).status, 401);

    // An unknown user, or a password too short: an error, nothing changed.
    for (username, stdin, says) in [
        ("nobody", None, "there is no user \"nobody\""),
        (ADMIN_USER, Some("short\n"), "password must have 8 to"),
    ] {
        let output = reset_password(&server, username, stdin);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success());
        assert!(stderr.contains(says), "{stderr}");
    }
    server.login(ADMIN_USER, "a-chosen-password");
}

#[test]
fn reset_password_refuses_a_data_directory_without_a_store() {
    let empty = tempfile::tempdir().expect("a directory");
    let mut command = regente_testkit::regente_command(&regente_testkit::regente_binary());
    let output = command
        .args(["admin", "reset-password", "admin", "--data-dir"])
        .arg(empty.path())
        .output()
        .expect("regente admin runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("there is no store at"), "{stderr}");
    assert!(
        std::fs::read_dir(empty.path()).unwrap().next().is_none(),
        "nothing is created in a directory without a store"
    );
}
