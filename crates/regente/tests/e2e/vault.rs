//! The credentials vault end to end: a robot signs in with its credential while
//! the value stays out of the store's files, every answer, every log, the agent's
//! journal and work dir; a robot not allowed gets nothing; a wrong master key
//! stops the start; a key rotation under load keeps runs getting right values.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::support::*;

const RUN: Duration = Duration::from_secs(60);

/// A robot that reads its credential and a secret variable, compares them with
/// the hash it is given, echoes them the way careless robots do, and returns only
/// whether they matched.
const SIGN_IN: &str = r#"
import base64, hashlib, json, os, stat, sys, urllib.parse
path = os.environ["REGENTE_CREDENTIALS"]
print("credentials file", path, "mode", oct(stat.S_IMODE(os.stat(path).st_mode)))
erp = json.load(open(path))["erp"]
token = os.environ["REGENTE_VAR_TOKEN"]
seen = hashlib.sha256("{}:{}:{}".format(erp["username"], erp["password"], token).encode()).hexdigest()
matched = seen == os.environ["REGENTE_VAR_EXPECTED"]
print("signing in as", erp["username"], "with", erp["password"], "and token", token)
print("basic", base64.b64encode(erp["password"].encode()).decode())
print("url", urllib.parse.quote(erp["password"]), urllib.parse.quote_plus(erp["password"]))
print("::warning::" + erp["password"])
print(erp["password"], file=sys.stderr)
print("::return::" + json.dumps({"matched": matched}))
"#;

fn sign_in_robot(name: &str, extra: &str) -> Vec<u8> {
    let manifest = format!(
        "name = \"{name}\"\ncommand = [\"python3\", \"main.py\"]\n\
         [[variables]]\nname = \"EXPECTED\"\ntype = \"text\"\n\
         [[variables]]\nname = \"TOKEN\"\ntype = \"text\"\nsecret = true\n\
         [[credentials]]\nname = \"erp\"\n{extra}"
    );
    robot_zip(&manifest, &[("main.py", SIGN_IN.as_bytes())])
}

fn random_hex(bytes: usize) -> String {
    (0..bytes)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect()
}

fn expected(username: &str, password: &str, token: &str) -> String {
    hex::encode(Sha256::digest(format!("{username}:{password}:{token}")))
}

pub(crate) fn id_of(reply: &Value) -> String {
    reply["id"].as_str().expect("an id").to_owned()
}

/// Every form of `secret` that must never show: as it is, base64, URL-encoded.
fn forms(secret: &str) -> Vec<String> {
    let b64 = base64::engine::general_purpose::STANDARD_NO_PAD.encode(secret);
    let url = secret
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    vec![secret.to_owned(), b64, url]
}

pub(crate) fn assert_absent(secrets: &[&str], text: &[u8], where_: &str) {
    for secret in secrets {
        for form in forms(secret) {
            assert!(
                !text.windows(form.len()).any(|w| w == form.as_bytes()),
                "{form:?} found in {where_}"
            );
        }
    }
}

/// Every file under `dir`, with its bytes.
fn files_under(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut found = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                found.push((path, bytes));
            }
        }
    }
    found
}

/// Debian's newest `pg_dump` (its binaries sit under a directory per version),
/// or the one on the PATH.
fn pg_dump() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|version| version.path().join("bin/pg_dump"))
        .filter(|path| path.is_file())
        .collect();
    found.sort_by_key(|path| {
        let version = path.components().nth(4);
        version.and_then(|v| v.as_os_str().to_str()?.parse::<u32>().ok())
    });
    found.pop().unwrap_or_else(|| PathBuf::from("pg_dump"))
}

/// The server's store as bytes: its SQLite files, or a `pg_dump` of its database.
pub(crate) fn store_bytes(server: &TestServer) -> Vec<(String, Vec<u8>)> {
    match server.database_url() {
        Some(url) => {
            let output = std::process::Command::new(pg_dump())
                .arg("--dbname")
                .arg(&url)
                .output()
                .expect("pg_dump runs");
            assert!(
                output.status.success(),
                "pg_dump: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            vec![("a pg_dump of the store".into(), output.stdout)]
        }
        None => files_under(&server.data_dir())
            .into_iter()
            .filter(|(path, _)| path.to_string_lossy().contains("regente.db"))
            .map(|(path, bytes)| (path.display().to_string(), bytes))
            .collect(),
    }
}

#[test]
fn a_robot_signs_in_with_its_credential_and_the_value_shows_nowhere() {
    let server = TestServer::start();
    let admin = server.admin_token();
    let (runtime, key) = server.create_runtime(&admin, "rt-vault");
    let robot = id_of(&server.upload_robot(&admin, sign_in_robot("erp-login", "")));
    let username = format!("robot-user-{}", random_hex(4));
    let password = format!("Pw/{} s@fe+{}", random_hex(8), random_hex(4));
    let token = format!("tok-{}", random_hex(8));
    let secrets = [username.as_str(), password.as_str(), token.as_str()];
    let mut answers: Vec<(String, String)> = Vec::new();
    let mut keep = |what: &str, reply: &Reply| answers.push((what.to_owned(), reply.text()));

    let created = server
        .req("POST", "/api/admin/credentials")
        .auth(&admin)
        .json(
            &json!({"name": "erp", "description": "the ERP's robot user",
            "fields": {"username": username, "password": "first, replaced below"},
            "robots": [robot]}),
        )
        .send()
        .expect(201);
    keep("create", &created);
    let credential = id_of(&created.json());
    assert_eq!(created.json()["fields"], json!(["password", "username"]));
    let replaced = server
        .req("PUT", &format!("/api/admin/credentials/{credential}"))
        .auth(&admin)
        .json(&json!({"fields": {"username": username, "password": password}, "robots": [robot]}))
        .send()
        .expect(200);
    keep("replace", &replaced);
    assert_eq!(replaced.json()["version"], 2);
    assert_eq!(replaced.json()["updated_by"], ADMIN_USER);

    let dir = scratch();
    let agent = TestAgent::start_in(&server, &key, 1, dir.path());
    let body = json!({"variables": [
        {"name": "EXPECTED", "type": "text", "value": expected(&username, &password, &token)},
        {"name": "TOKEN", "type": "text", "value": token},
    ]});
    let run = server.queue(&admin, &runtime, &robot, Some(&body));
    let done = wait_for_status(&server, &admin, &runtime, &run, ENDED, RUN);
    assert_eq!(done["status"], "FINISHED", "{}", summary(&done));
    assert_eq!(
        done["returnValue"],
        json!({"matched": true}),
        "{}",
        summary(&done)
    );

    // The log shows `***` where the robot echoed them, in every form.
    let lines = messages(&done);
    let echoed = lines
        .iter()
        .find(|l| l.starts_with("signing in as"))
        .expect("the echo line");
    assert_eq!(echoed, "signing in as *** with *** and token ***");
    assert!(
        lines.iter().any(|l| l.starts_with("basic ***")),
        "{lines:?}"
    );
    assert!(lines.iter().any(|l| l == "url *** ***"), "{lines:?}");
    assert!(
        lines.iter().filter(|l| *l == "***").count() >= 2,
        "{lines:?}"
    );
    let file_line = lines
        .iter()
        .find(|l| l.starts_with("credentials file"))
        .expect("the file line");
    assert!(file_line.ends_with("mode 0o600"), "{file_line}");
    let credentials_file = file_line
        .split_whitespace()
        .nth(2)
        .expect("the file's path")
        .to_owned();
    keep("result", &server.result(&admin, &runtime, &run));
    keep(
        "execution",
        &server
            .req("GET", &format!("/api/admin/executions/{run}"))
            .auth(&admin)
            .send()
            .expect(200),
    );
    let execution = server.execution(&admin, &run);
    assert_eq!(execution["variables"]["TOKEN"], "***", "{execution}");
    keep(
        "executions",
        &server
            .req("GET", "/api/admin/executions")
            .auth(&admin)
            .send()
            .expect(200),
    );
    // The hand-out is in the audit log, by the runtime, without a value.
    let handed_out = server
        .get("/api/admin/audit?action=credential.handed_out", &admin)
        .expect(200);
    keep("audit", &handed_out);
    let records = handed_out.json()["records"].clone();
    assert_eq!(records.as_array().unwrap().len(), 1, "{records}");
    assert_eq!(records[0]["object_id"], credential.as_str());
    assert_eq!(records[0]["actor_id"], format!("runtime:{runtime}"));
    assert_eq!(records[0]["summary"]["execution_id"], run.as_str());
    assert_eq!(records[0]["summary"]["name"], "erp");
    for path in [
        "/api/admin/credentials".to_owned(),
        format!("/api/admin/credentials/{credential}"),
        "/api/openapi.json".to_owned(),
        "/api/admin/audit".to_owned(),
    ] {
        keep(&path, &server.get(&path, &admin).expect(200));
    }
    for (what, text) in &answers {
        assert_absent(&secrets, text.as_bytes(), &format!("the {what} answer"));
    }

    // Gone from the runtime machine once the run ended; never journaled.
    assert!(
        !Path::new(&credentials_file).exists(),
        "{credentials_file} left behind"
    );
    // (The journal's id file and its files, zeroed for the next runs, stay.)
    wait_until(RUN, "the journal trimmed", || {
        agent.journal_file_of(&run).is_none().then_some(())
    });
    for (path, bytes) in files_under(dir.path()) {
        assert_absent(&secrets, &bytes, &path.display().to_string());
    }
    assert_absent(&secrets, server.all_stderr().as_bytes(), "the server's log");
    assert_absent(&secrets, agent.all_stderr().as_bytes(), "the agent's log");
    let store = store_bytes(&server);
    assert!(
        store
            .iter()
            .any(|(_, bytes)| bytes.windows(9).any(|w| w == b"erp-login")),
        "the store read is the server's: its robot is there"
    );
    for (what, bytes) in &store {
        assert_absent(&secrets, bytes, what);
    }
}

#[test]
fn a_robot_not_allowed_a_credential_cannot_have_it() {
    let server = TestServer::start();
    let admin = server.admin_token();
    let (runtime, key) = server.create_runtime(&admin, "rt-vault");
    let out = scratch();
    let marker = |name: &str| out.path().join(name);
    let robot = |name: &str, credential: &str| {
        let script = format!("touch \"{}\"\necho ran", marker(name).display());
        let extra = format!("[[credentials]]\nname = \"{credential}\"\n");
        upload_shell_robot(&server, &admin, name, &script, &extra)
    };
    let allowed = robot("allowed", "bank");
    let other = robot("other", "bank");
    let missing = robot("wants-missing", "nowhere");
    let field = upload_shell_robot(
        &server,
        &admin,
        "wants-field",
        &format!("touch \"{}\"", marker("wants-field").display()),
        "[[credentials]]\nname = \"bank\"\nfields = [\"pin\"]\n",
    );
    let secret = format!("bank-{}", random_hex(8));
    let created = server
        .req("POST", "/api/admin/credentials")
        .auth(&admin)
        .json(&json!({"name": "bank", "fields": {"password": secret}, "robots": [allowed, field]}))
        .send()
        .expect(201)
        .json();
    let credential = id_of(&created);

    let agent = TestAgent::start(&server, &key, 1);
    let ended_with = |robot: &str| {
        let run = server.queue(&admin, &runtime, robot, None);
        wait_for_status(&server, &admin, &runtime, &run, ENDED, RUN)
    };
    let refused = ended_with(&other);
    assert_eq!(refused["status"], "ERROR", "{}", summary(&refused));
    let why = messages(&refused).join("\n");
    assert!(
        why.contains("credential \"bank\"") && why.contains("not allowed"),
        "{why}"
    );
    assert!(!marker("other").exists(), "the robot started");
    let absent = ended_with(&missing);
    assert_eq!(absent["status"], "ERROR", "{}", summary(&absent));
    let why = messages(&absent).join("\n");
    assert!(
        why.contains("credential \"nowhere\"") && why.contains("does not exist"),
        "{why}"
    );
    let no_field = ended_with(&field);
    assert_eq!(no_field["status"], "ERROR", "{}", summary(&no_field));
    assert!(messages(&no_field).join("\n").contains("field \"pin\""));
    assert!(!marker("wants-missing").exists() && !marker("wants-field").exists());
    let fine = ended_with(&allowed);
    assert_eq!(fine["status"], "FINISHED", "{}", summary(&fine));

    // No other route gives it: not to an integration user, not to another
    // organisation (whose robot declaring it finds nothing), not to the admin.
    server.create_user(
        &admin,
        "vault-integration",
        "vault-integration-pw",
        "integration",
    );
    let integration = server.login("vault-integration", "vault-integration-pw");
    for (method, path) in [
        ("GET", "/api/admin/credentials".to_owned()),
        ("GET", format!("/api/admin/credentials/{credential}")),
        ("DELETE", format!("/api/admin/credentials/{credential}")),
    ] {
        let reply = server.req(method, &path).auth(&integration).send();
        assert_eq!(reply.status, 403, "{method} {path}: {}", reply.text());
        assert_absent(&[&secret], reply.text().as_bytes(), path.as_str());
        let reply = server.req(method, &path).send();
        assert_eq!(reply.status, 401, "{method} {path} without a token");
    }
    server
        .req("POST", "/api/admin/organizations")
        .auth(&admin)
        .json(&json!({"name": "B", "admin_username": "b-admin", "admin_password": "b-admin-password"}))
        .send()
        .expect(201);
    let b_admin = server.login("b-admin", "b-admin-password");
    let path = format!("/api/admin/credentials/{credential}");
    assert_error(&server.get(&path, &b_admin), 404, &path);
    assert_error(
        &server.req("DELETE", &path).auth(&b_admin).send(),
        404,
        &path,
    );
    assert_error(
        &server
            .req("PUT", &path)
            .auth(&b_admin)
            .json(&json!({"fields": {"password": "taken over"}}))
            .send(),
        404,
        &path,
    );
    let listed = server
        .get("/api/admin/credentials", &b_admin)
        .expect(200)
        .json();
    assert_eq!(listed, json!([]));
    let (b_runtime, b_key) = server.create_runtime(&b_admin, "rt-b");
    let b_robot = upload_shell_robot(
        &server,
        &b_admin,
        "b-robot",
        &format!("touch \"{}\"", marker("b-robot").display()),
        "[[credentials]]\nname = \"bank\"\n",
    );
    let _b_agent = TestAgent::start(&server, &b_key, 1);
    let run = server.queue(&b_admin, &b_runtime, &b_robot, None);
    let done = wait_for_status(&server, &b_admin, &b_runtime, &run, ENDED, RUN);
    assert_eq!(done["status"], "ERROR", "{}", summary(&done));
    assert!(messages(&done).join("\n").contains("does not exist"));
    assert!(!marker("b-robot").exists());
    assert_absent(
        &[&secret],
        server.all_stderr().as_bytes(),
        "the server's log",
    );
    assert_absent(&[&secret], agent.all_stderr().as_bytes(), "the agent's log");
}

/// Starts `regente serve` on `server`'s store with `env` and answers its exit
/// status and log, or panics if it starts listening.
fn start_refused(server: &TestServer, env: &[(&str, &str)]) -> (i32, String) {
    let log = scratch();
    let log_path = log.path().join("serve.log");
    let mut command = regente_command(&regente_binary());
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(server.data_dir())
        .env_remove("REGENTE_MASTER_KEY")
        .env_remove("REGENTE_MASTER_KEY_PREVIOUS")
        .env("REGENTE_JWT_SECRET", JWT_SECRET)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap());
    if let Some(url) = server.database_url() {
        command.arg("--database-url").arg(url);
    }
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command.spawn().expect("regente serve starts");
    let deadline = Instant::now() + RUN;
    let status = wait_until(RUN, "the refused server to exit", || {
        if Instant::now() > deadline {
            let _ = child.kill();
        }
        child.try_wait().ok().flatten()
    });
    let text = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(!text.contains("listening"), "it started: {text}");
    (status.code().unwrap_or(-1), text)
}

#[test]
fn a_wrong_master_key_stops_the_start_with_a_message_that_says_so() {
    let mut server = TestServer::start();
    let admin = server.admin_token();
    server
        .req("POST", "/api/admin/credentials")
        .auth(&admin)
        .json(&json!({"name": "erp", "fields": {"password": "sealed under the first key"}}))
        .send()
        .expect(201);
    server.stop();
    let other_key = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
    let (code, log) = start_refused(&server, &[("REGENTE_MASTER_KEY", &other_key)]);
    assert_ne!(code, 0);
    assert!(log.contains("wrong master key"), "{log}");
    assert!(!log.contains(&other_key), "the key is never logged: {log}");
    let (code, log) = start_refused(&server, &[("REGENTE_MASTER_KEY", "not a key")]);
    assert_ne!(code, 0);
    assert!(log.contains("REGENTE_MASTER_KEY is not base64"), "{log}");
    // Without the variable: a server on its own store makes a key file, which is
    // not the vault's key; servers on PostgreSQL are told to set the variable.
    let (code, log) = start_refused(&server, &[]);
    assert_ne!(code, 0);
    match server.database_url() {
        Some(_) => assert!(log.contains("REGENTE_MASTER_KEY is not set"), "{log}"),
        None => assert!(log.contains("wrong master key"), "{log}"),
    }
    // The right key still opens it.
    server.start_again();
    let listed = server
        .get("/api/admin/credentials", &admin)
        .expect(200)
        .json();
    assert_eq!(listed[0]["name"], "erp");
}

#[test]
fn a_server_on_its_own_store_keeps_its_key_in_a_private_file() {
    let mut server = ServerOptions::new()
        .sqlite()
        .env("REGENTE_MASTER_KEY", "")
        .start();
    let key_file = server.data_dir().join("master-key");
    assert_eq!(mode(&key_file) & 0o777, 0o600);
    let before = std::fs::read(&key_file).unwrap();
    let admin = server.admin_token();
    server
        .req("POST", "/api/admin/credentials")
        .auth(&admin)
        .json(&json!({"name": "erp", "fields": {"password": "kept under the file's key"}}))
        .send()
        .expect(201);
    server.restart();
    assert_eq!(
        std::fs::read(&key_file).unwrap(),
        before,
        "kept across starts"
    );
    assert_eq!(
        server
            .get("/api/admin/credentials", &admin)
            .expect(200)
            .json()[0]["name"],
        "erp"
    );
}

/// Runs `regente vault rotate-key` against `server`'s store with `env`.
fn rotate(server: &TestServer, env: &[(&str, &str)]) -> std::process::Child {
    let mut command = regente_command(&regente_binary());
    command
        .args(["vault", "rotate-key", "--data-dir"])
        .arg(server.data_dir())
        .env_remove("REGENTE_MASTER_KEY")
        .env_remove("REGENTE_MASTER_KEY_PREVIOUS")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(url) = server.database_url() {
        command.arg("--database-url").arg(url);
    }
    for (name, value) in env {
        command.env(name, value);
    }
    command.spawn().expect("regente vault rotate-key starts")
}

#[test]
fn runs_keep_getting_the_right_values_through_a_key_rotation() {
    // On its own store the key is the data dir's file; on PostgreSQL it is the
    // environment's, rotated the way replicas do it.
    let on_postgres = on_postgres();
    let options = if on_postgres {
        ServerOptions::new()
    } else {
        ServerOptions::new().env("REGENTE_MASTER_KEY", "")
    };
    let mut server = options.start();
    let admin = server.admin_token();
    let (runtime, key) = server.create_runtime_with_slots(&admin, "rt-vault", 2);
    let robot = id_of(&server.upload_robot(&admin, sign_in_robot("erp-login", "")));
    let username = "rotating-user".to_owned();
    let password = format!("rot-{}", random_hex(8));
    let token = format!("tok-{}", random_hex(8));
    server
        .req("POST", "/api/admin/credentials")
        .auth(&admin)
        .json(&json!({"name": "erp", "fields": {"username": username, "password": password}}))
        .send()
        .expect(201);
    // Ballast, so that the rotation takes batches.
    for n in 0..60 {
        server
            .req("POST", "/api/admin/credentials")
            .auth(&admin)
            .json(
                &json!({"name": format!("other-{n}"), "fields": {"a": "value a", "b": "value b"}}),
            )
            .send()
            .expect(201);
    }
    // A webhook whose secret was rotated: both its secrets are sealed again.
    let receiver = crate::webhook_receiver::Receiver::start();
    let webhook = server
        .req("POST", "/api/admin/webhooks")
        .auth(&admin)
        .json(&json!({"url": receiver.url, "events": ["execution.finished"]}))
        .send()
        .expect(201)
        .json();
    receiver.add_secret(webhook["secret"].as_str().unwrap());
    let rotated = server
        .req(
            "POST",
            &format!(
                "/api/admin/webhooks/{}/rotate-secret",
                webhook["id"].as_str().unwrap()
            ),
        )
        .auth(&admin)
        .send()
        .expect(200)
        .json();
    receiver.add_secret(rotated["secret"].as_str().unwrap());
    let body = json!({"variables": [
        {"name": "EXPECTED", "type": "text", "value": expected(&username, &password, &token)},
        {"name": "TOKEN", "type": "text", "value": token},
    ]});
    let mut runs = Vec::new();
    let queue = |server: &TestServer, runs: &mut Vec<String>, n: usize| {
        for _ in 0..n {
            runs.push(server.queue(&admin, &runtime, &robot, Some(&body)));
        }
    };
    // Every run queued so far ends having seen the right values. Runs end before
    // a server restart: the agent reconnects to the new port only when started again.
    let all_matched = |server: &TestServer, runs: &mut Vec<String>| {
        for run in runs.drain(..) {
            let done = wait_for_status(server, &admin, &runtime, &run, ENDED, RUN);
            assert_eq!(done["status"], "FINISHED", "{}", summary(&done));
            assert_eq!(done["returnValue"], json!({"matched": true}), "{run}");
        }
    };
    let mut agent = TestAgent::start(&server, &key, 2);
    // Before.
    queue(&server, &mut runs, 6);
    let new_key = base64::engine::general_purpose::STANDARD.encode([9u8; 32]);
    let mut rotation = if on_postgres {
        // Servers first learn the new key, keeping the old for what is sealed.
        all_matched(&server, &mut runs);
        agent.stop();
        server.set_env("REGENTE_MASTER_KEY", &new_key);
        server.set_env("REGENTE_MASTER_KEY_PREVIOUS", MASTER_KEY);
        server.restart();
        agent = TestAgent::start(&server, &key, 2);
        queue(&server, &mut runs, 4);
        rotate(
            &server,
            &[
                ("REGENTE_MASTER_KEY", &new_key),
                ("REGENTE_MASTER_KEY_PREVIOUS", MASTER_KEY),
            ],
        )
    } else {
        queue(&server, &mut runs, 4);
        rotate(&server, &[])
    };
    // During.
    while rotation.try_wait().unwrap().is_none() && runs.len() < 40 {
        queue(&server, &mut runs, 1);
    }
    let output = wait_until(RUN, "the rotation to end", || rotation.try_wait().unwrap());
    let mut stdout = String::new();
    let mut stderr = String::new();
    use std::io::Read as _;
    rotation
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    rotation
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(output.success(), "{stdout}{stderr}");
    assert!(stdout.contains("122 credential values"), "{stdout}");
    assert!(stdout.contains("1 webhooks' secrets"), "{stdout}");
    // After, on the running server.
    queue(&server, &mut runs, 4);
    all_matched(&server, &mut runs);
    if on_postgres {
        server.set_env("REGENTE_MASTER_KEY_PREVIOUS", "");
    } else {
        let file = std::fs::read_to_string(server.data_dir().join("master-key")).unwrap();
        assert!(!file.contains("previous"), "the old key is dropped: {file}");
    }
    // After a restart with the new key alone.
    agent.stop();
    server.restart();
    let _agent = TestAgent::start(&server, &key, 2);
    queue(&server, &mut runs, 4);
    all_matched(&server, &mut runs);
    // Every run's end delivered, signed by both secrets opened with the new key.
    let ended = server
        .all_executions(&admin, &format!("&robot={robot}"))
        .len();
    wait_until(RUN, "every run's end delivered", || {
        let delivered = receiver.delivered();
        let ids: std::collections::HashSet<&str> = delivered
            .iter()
            .filter_map(|r| r.body["data"]["execution_id"].as_str())
            .collect();
        (ids.len() == ended).then_some(())
    });
    for delivery in receiver.delivered() {
        assert_eq!(delivery.signed_by, vec![true, true], "{}", delivery.id);
    }
    assert!(receiver.refused().is_empty(), "{:?}", receiver.refused());
    // An old key alone no longer opens the vault.
    server.stop();
    let (code, log) = start_refused(&server, &[("REGENTE_MASTER_KEY", MASTER_KEY)]);
    assert_ne!(code, 0);
    assert!(log.contains("wrong master key"), "{log}");
}
