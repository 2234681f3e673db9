//! The two login routes, tokens on protected routes, user deletion, login
//! throttling and roles.

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::*;

const V1: &str = "/api/user/auth";
const V2: &str = "/api/user/v2/auth";

#[test]
fn v1_login_answers_bearer_and_an_hs512_jwt_naming_the_user() {
    let server = TestServer::start();
    let before = now_millis() / 1000;
    let reply = server
        .login_v1_reply(ADMIN_USER, ADMIN_PASSWORD)
        .expect(200);
    assert!(
        reply.content_type().starts_with("text/plain"),
        "{}",
        reply.content_type()
    );
    let text = reply.text();
    let jwt = text
        .strip_prefix("Bearer ")
        .unwrap_or_else(|| panic!("not `Bearer <jwt>`: {text:?}"));
    assert_eq!(jwt.split('.').count(), 3, "{jwt}");
    assert!(!jwt.contains(char::is_whitespace), "{jwt:?}");
    let header = jsonwebtoken::decode_header(jwt).expect("a JWT header");
    assert_eq!(header.alg, Algorithm::HS512);
    let mut validation = Validation::new(Algorithm::HS512);
    validation.set_required_spec_claims(&["exp", "sub"]);
    let data = jsonwebtoken::decode::<Value>(
        jwt,
        &DecodingKey::from_secret(JWT_SECRET.as_bytes()),
        &validation,
    )
    .expect("signed with the configured secret");
    assert_eq!(data.claims["sub"], ADMIN_USER);
    let exp = data.claims["exp"].as_i64().expect("exp is a number");
    assert!(
        (before + 2_592_000 - 5..=now_millis() / 1000 + 2_592_000 + 5).contains(&exp),
        "exp {exp} is not 30 days from now"
    );
    // The body is exactly the Authorization header value the other routes take.
    server.get("/api/admin/users", &text).expect(200);
}

#[test]
fn v2_login_answers_the_oauth_shape() {
    let server = TestServer::start();
    let reply = server
        .login_v2_reply(ADMIN_USER, ADMIN_PASSWORD)
        .expect(200);
    assert!(reply.content_type().starts_with("application/json"));
    let body = reply.json();
    assert_eq!(keys(&body), ["access_token", "expires_in", "token_type"]);
    assert_eq!(body["token_type"], "bearer");
    assert_eq!(body["expires_in"], 2_592_000);
    let jwt = body["access_token"].as_str().expect("a token");
    assert_eq!(
        jsonwebtoken::decode_header(jwt).expect("a JWT").alg,
        Algorithm::HS512
    );
    server
        .get("/api/admin/users", &format!("Bearer {jwt}"))
        .expect(200);
}

#[test]
fn wrong_credentials_answer_401_with_the_login_path() {
    let server = TestServer::start();
    server.create_user(
        &server.admin_token(),
        "someone",
        "someone-password",
        "integration",
    );
    for (username, password) in [
        (ADMIN_USER, "wrong-password"),
        ("nobody", ADMIN_PASSWORD),
        ("someone", ADMIN_PASSWORD),
        ("", "x"),
    ] {
        let v1 = server.login_v1_reply(username, password);
        assert_error(&v1, 401, V1);
        let v2 = server.login_v2_reply(username, password);
        assert_error(&v2, 401, V2);
        // Unknown users and wrong passwords answer alike.
        assert_eq!(message(&v1.json()), "bad username or password");
    }
    // The plain (not base64) password is refused even when it happens to be
    // valid base64 of something else.
    let reply = server
        .req("POST", V1)
        .json(&json!({"username": "someone", "password": "someone-password"}))
        .send();
    assert!(
        [400, 401].contains(&reply.status),
        "plain password: {}",
        reply.text()
    );
    // A correct login still works after the failures.
    server.login("someone", "someone-password");
}

#[test]
fn malformed_login_bodies_answer_400() {
    let server = TestServer::start();
    for path in [V1, V2] {
        let not_base64 = server
            .req("POST", path)
            .json(&json!({"username": ADMIN_USER, "password": "%%% not base64 %%%"}))
            .send();
        let body = assert_error(&not_base64, 400, path);
        assert!(message(&body).contains("base64"), "{body}");
        for (bad, content_type) in [
            (r#"{"username": "admin", "password": "#, "application/json"),
            ("not json at all", "application/json"),
            ("", "application/json"),
            ("", ""),
            ("[]", "application/json"),
            (r#"{"username": "admin"}"#, "application/json"),
            (r#"{"username": 1, "password": 2}"#, "application/json"),
            (
                "username=admin&password=x",
                "application/x-www-form-urlencoded",
            ),
        ] {
            let reply = server
                .req("POST", path)
                .body(bad.as_bytes().to_vec(), content_type)
                .send();
            let body = assert_error(&reply, 400, path);
            assert!(
                message(&body).contains("expected"),
                "the message should say the expected shape: {body}"
            );
        }
        // GET on a login route is not a login.
        assert_error(&server.req("GET", path).send(), 405, path);
    }
    // The admin is not throttled by malformed bodies: it still logs in.
    server.login(ADMIN_USER, ADMIN_PASSWORD);
}

/// Protected routes with ids that exist and ids that do not.
fn protected_paths(runtime: &str, robot: &str, execution: &str) -> Vec<(&'static str, String)> {
    let unknown = "0123456789abcdef";
    let mut paths = Vec::new();
    for (rt, rb, ex) in [
        (runtime, robot, execution),
        (unknown, unknown, unknown),
        ("not-an-id", "x", "y"),
    ] {
        paths.extend([
            ("POST", format!("/api/integration/v1/run/{rt}/{rb}")),
            ("GET", format!("/api/integration/v1/run/{rt}/{rb}")),
            ("POST", format!("/api/integration/v2/run/{rt}/{rb}")),
            ("GET", format!("/api/integration/v1/result/{rt}/{ex}")),
            ("DELETE", format!("/api/integration/v1/delete/{rt}/{ex}")),
            ("GET", format!("/api/admin/robots/{rb}")),
            ("GET", format!("/api/admin/executions/{ex}")),
            ("DELETE", format!("/api/admin/users/{ex}")),
        ]);
    }
    for (method, path) in [
        ("GET", "/api/admin/users"),
        ("POST", "/api/admin/users"),
        ("GET", "/api/admin/runtimes"),
        ("POST", "/api/admin/runtimes"),
        ("GET", "/api/admin/robots"),
        ("POST", "/api/admin/robots"),
        ("GET", "/api/admin/executions"),
        ("POST", "/api/admin/organizations"),
    ] {
        paths.push((method, path.to_owned()));
    }
    paths
}

#[test]
fn missing_malformed_expired_forged_and_unsigned_tokens_answer_401_on_every_route() {
    let server = TestServer::start();
    let f = fixture(&server);
    let execution = server.queue(&f.admin, &f.runtime, &f.robot, None);
    let admin_id = user_id(&server, &f.admin, ADMIN_USER);
    let now = now_millis() / 1000;
    let valid_claims = claims(ADMIN_USER, &admin_id, now + 3600);

    // The forging is right: the same claims signed with the secret work.
    let forged_ok = forge_token(&valid_claims, JWT_SECRET, Algorithm::HS512);
    server.get("/api/admin/users", &forged_ok).expect(200);

    let bad_tokens: Vec<(&str, Option<String>)> = vec![
        ("no header", None),
        ("empty", Some(String::new())),
        ("scheme only", Some("Bearer".into())),
        ("scheme and space", Some("Bearer ".into())),
        ("basic", Some(format!("Basic {}", b64("admin:pw")))),
        (
            "jwt without scheme",
            Some(forged_ok["Bearer ".len()..].to_owned()),
        ),
        ("garbage", Some("Bearer not.a.jwt".into())),
        (
            "truncated",
            Some(forged_ok[..forged_ok.len() - 10].to_owned()),
        ),
        (
            "expired",
            Some(forge_token(
                &claims(ADMIN_USER, &admin_id, now - 3600),
                JWT_SECRET,
                Algorithm::HS512,
            )),
        ),
        (
            "wrong secret",
            Some(forge_token(
                &valid_claims,
                "another-secret-another-secret-another-secret",
                Algorithm::HS512,
            )),
        ),
        (
            "HS256 with the right secret",
            Some(forge_token(&valid_claims, JWT_SECRET, Algorithm::HS256)),
        ),
        ("alg none", Some(alg_none_token(&valid_claims))),
        (
            "unknown user id",
            Some(forge_token(
                &claims(ADMIN_USER, "0000000000000000", now + 3600),
                JWT_SECRET,
                Algorithm::HS512,
            )),
        ),
        (
            "name of another user",
            Some(forge_token(
                &claims("someone-else", &admin_id, now + 3600),
                JWT_SECRET,
                Algorithm::HS512,
            )),
        ),
        (
            "no exp",
            Some(forge_token(
                &json!({"sub": ADMIN_USER, "uid": admin_id}),
                JWT_SECRET,
                Algorithm::HS512,
            )),
        ),
    ];
    let paths = protected_paths(&f.runtime, &f.robot, &execution);
    for (what, token) in &bad_tokens {
        for (method, path) in &paths {
            let mut request = server
                .req(method, path)
                .body(b"{\"variables\": []}".to_vec(), "application/json");
            if let Some(token) = token {
                request = request.auth(token);
            }
            let reply = request.send();
            let body = check_error_shape(&reply, path)
                .unwrap_or_else(|why| panic!("{what}: {method} {path}: {why}"));
            assert_eq!(
                reply.status,
                401,
                "{what}: {method} {path} answered {}",
                reply.text()
            );
            assert_eq!(body["error"], "Unauthorized");
        }
    }
    // None of those calls queued or canceled anything.
    let all = server.all_executions(&f.admin, "");
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0]["status"], "PENDENT");
}

#[test]
fn deleting_a_user_ends_its_tokens_at_once() {
    let server = TestServer::start();
    let admin = server.admin_token();
    let user = server.create_user(&admin, "leaver", "leaver-password", "integration");
    let token = server.login("leaver", "leaver-password");
    let probe = "/api/integration/v1/result/0123456789abcdef/0123456789abcdef";
    // Authenticated: the unknown ids answer 404, not 401.
    assert_error(&server.get(probe, &token), 404, probe);

    let id = user["id"].as_str().unwrap();
    let path = format!("/api/admin/users/{id}");
    let reply = server.req("DELETE", &path).auth(&admin).send().expect(204);
    assert!(reply.body.is_empty());
    assert_error(&server.get(probe, &token), 401, probe);
    assert_error(&server.login_v1_reply("leaver", "leaver-password"), 401, V1);

    // A new user with the same name does not inherit the old tokens.
    server.create_user(&admin, "leaver", "leaver-password", "integration");
    assert_error(&server.get(probe, &token), 401, probe);
    let fresh = server.login("leaver", "leaver-password");
    assert_error(&server.get(probe, &fresh), 404, probe);
}

#[test]
fn failed_logins_are_throttled_per_username_with_429() {
    let server = TestServer::start_with(&[("REGENTE_LOGIN_FAILURES_PER_USER", "3")]);
    let admin = server.admin_token();
    server.create_user(&admin, "target", "target-password", "integration");
    server.create_user(&admin, "bystander", "bystander-password", "integration");
    for _ in 0..3 {
        assert_error(&server.login_v1_reply("target", "wrong"), 401, V1);
    }
    // Over the limit: 429 even with the right password, on both routes.
    let body = assert_error(&server.login_v1_reply("target", "target-password"), 429, V1);
    assert!(
        message(&body).contains("too many"),
        "the message should say why: {body}"
    );
    assert_error(&server.login_v2_reply("target", "target-password"), 429, V2);
    // Another username from the same address still logs in.
    server.login("bystander", "bystander-password");
    server
        .login_v2_reply("bystander", "bystander-password")
        .expect(200);
    // Tokens issued before keep working.
    server.get("/api/admin/users", &admin).expect(200);
}

#[test]
fn huge_usernames_are_refused_like_any_unknown_user() {
    let server = TestServer::start_with(&[("REGENTE_LOGIN_FAILURES_PER_USER", "2")]);
    let huge = "u".repeat(32 * 1024);
    for _ in 0..4 {
        assert_error(&server.login_v1_reply(&huge, "whatever"), 401, V1);
    }
    let body = assert_error(&server.login_v2_reply(&huge, "whatever"), 401, V2);
    assert!(body.to_string().len() < 1024, "the name is not echoed back");
    // A login body past 64 KiB is not read at all.
    let body = assert_error(
        &server.login_v1_reply(&"u".repeat(512 * 1024), "x"),
        413,
        V1,
    );
    assert!(message(&body).contains("at most"), "{body}");
    server.login(ADMIN_USER, ADMIN_PASSWORD);
}

#[test]
fn forty_wrong_logins_at_once_are_checked_at_most_the_limit_and_logged() {
    let server = TestServer::start();
    let admin = server.admin_token();
    server.create_user(&admin, "target", "target-password", "integration");
    let start = std::sync::Barrier::new(40);
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let guesses: Vec<_> = (0..40)
            .map(|n| {
                let (server, start) = (&server, &start);
                scope.spawn(move || {
                    let client = Api::new(&server.base);
                    start.wait();
                    client
                        .login_v1_reply("target", &format!("guess-{n}"))
                        .status
                })
            })
            .collect();
        guesses.into_iter().map(|g| g.join().unwrap()).collect()
    });
    let checked = statuses.iter().filter(|s| **s == 401).count();
    let refused = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(checked + refused, 40, "{statuses:?}");
    assert!(
        (1..=10).contains(&checked),
        "at most the limit of 10 checked: {statuses:?}"
    );
    // The right password is refused for a while, never checked as wrong, and
    // taken once the backoff has passed: slowed, not locked out.
    wait_until(
        Duration::from_secs(90),
        "the right password to be taken",
        || {
            let reply = server.login_v1_reply("target", "target-password");
            assert_ne!(reply.status, 401, "{}", reply.text());
            (reply.status == 200).then_some(())
        },
    );
    // Failures are logged with the username and the address, never the password.
    let log = server.stderr();
    let failures: Vec<&str> = log.lines().filter(|l| l.contains("login failed")).collect();
    assert_eq!(failures.len(), checked, "{}", tail(&log, 20));
    assert!(
        failures
            .iter()
            .all(|l| l.contains("target") && l.contains("127.0.0.1")),
        "{failures:?}"
    );
    assert!(!log.contains("guess-"), "a password reached the log");
}

#[test]
fn a_login_body_must_be_a_json_object() {
    let server = TestServer::start();
    for path in [V1, V2] {
        let array = json!([ADMIN_USER, b64(ADMIN_PASSWORD)]);
        let body = assert_error(&server.req("POST", path).json(&array).send(), 400, path);
        assert!(message(&body).contains("must be a JSON object"), "{body}");
    }
    server.login(ADMIN_USER, ADMIN_PASSWORD);
}

#[test]
fn a_token_is_refused_a_few_seconds_past_its_expiry() {
    let server = TestServer::start();
    let admin = server.admin_token();
    let admin_id = user_id(&server, &admin, ADMIN_USER);
    let now = now_millis() / 1000;
    let path = "/api/admin/users";
    let expired = forge_token(
        &claims(ADMIN_USER, &admin_id, now - 4),
        JWT_SECRET,
        Algorithm::HS512,
    );
    let body = assert_error(&server.get(path, &expired), 401, path);
    assert!(message(&body).contains("expired"), "{body}");
    let valid = forge_token(
        &claims(ADMIN_USER, &admin_id, now + 60),
        JWT_SECRET,
        Algorithm::HS512,
    );
    server.get(path, &valid).expect(200);
}

#[test]
fn failed_logins_are_throttled_per_address() {
    let server = TestServer::start_with(&[
        ("REGENTE_LOGIN_FAILURES_PER_ADDRESS", "4"),
        ("REGENTE_LOGIN_FAILURES_PER_USER", "100"),
    ]);
    let admin = server.admin_token();
    for n in 0..4 {
        assert_error(
            &server.login_v1_reply(&format!("guess-{n}"), "wrong"),
            401,
            V1,
        );
    }
    assert_error(&server.login_v1_reply("guess-9", "wrong"), 429, V1);
    assert_error(&server.login_v2_reply(ADMIN_USER, ADMIN_PASSWORD), 429, V2);
    server.get("/api/admin/users", &admin).expect(200);
}

#[test]
fn integration_users_get_403_on_every_admin_route() {
    let server = TestServer::start();
    let f = fixture(&server);
    let execution = server.queue(&f.admin, &f.runtime, &f.robot, None);
    let created = server.create_user(&f.admin, "integrator", "integrator-pass", "integration");
    assert_eq!(created["role"], "integration");
    let token = server.login("integrator", "integrator-pass");
    let admin_id = user_id(&server, &f.admin, ADMIN_USER);
    let zip = robot_zip(&manifest("sneaky"), &[]);
    let admin_calls: Vec<(&str, String, Vec<u8>, &str)> = vec![
        ("GET", "/api/admin/users".into(), vec![], ""),
        (
            "POST",
            "/api/admin/users".into(),
            br#"{"username":"x","password":"xxxxxxxxxx","role":"admin"}"#.to_vec(),
            "application/json",
        ),
        ("DELETE", format!("/api/admin/users/{admin_id}"), vec![], ""),
        ("GET", "/api/admin/runtimes".into(), vec![], ""),
        (
            "POST",
            "/api/admin/runtimes".into(),
            br#"{"name":"x"}"#.to_vec(),
            "application/json",
        ),
        ("GET", "/api/admin/robots".into(), vec![], ""),
        ("POST", "/api/admin/robots".into(), zip, "application/zip"),
        ("GET", format!("/api/admin/robots/{}", f.robot), vec![], ""),
        (
            "GET",
            "/api/admin/robots/0123456789abcdef".into(),
            vec![],
            "",
        ),
        ("GET", "/api/admin/executions".into(), vec![], ""),
        (
            "GET",
            format!("/api/admin/executions/{execution}"),
            vec![],
            "",
        ),
        (
            "POST",
            "/api/admin/organizations".into(),
            br#"{"name":"x","admin_username":"y","admin_password":"zzzzzzzzzz"}"#.to_vec(),
            "application/json",
        ),
        (
            "POST",
            "/api/admin/users".into(),
            b"not json".to_vec(),
            "application/json",
        ),
    ];
    for (method, path, body, content_type) in admin_calls {
        let reply = server
            .req(method, &path)
            .auth(&token)
            .body(body, content_type)
            .send();
        let body = assert_error(&reply, 403, &path);
        assert!(message(&body).contains("admin"), "{body}");
    }
    // Nothing changed.
    assert_eq!(
        server
            .get("/api/admin/users", &f.admin)
            .expect(200)
            .json()
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        server
            .get("/api/admin/robots", &f.admin)
            .expect(200)
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // The integration routes are open to the integration user.
    let id = server.queue(&token, &f.runtime, &f.robot, None);
    server.result(&token, &f.runtime, &id).expect(200);
}

#[test]
fn passwords_secrets_and_keys_never_reach_the_log() {
    let server = TestServer::start();
    let f = fixture(&server);
    let (_, key) = server.create_runtime(&f.admin, "rt-secret");
    server.create_user(&f.admin, "quiet", "quiet-password-1", "integration");
    let token = server.login("quiet", "quiet-password-1");
    let _ = server.login_v1_reply("quiet", "typo-password-2");
    let _ = server.login_v1_reply("quiet", "%%%");
    server.req("POST", "/api/admin/organizations").auth(&f.admin).json(&json!({
        "name": "org-quiet", "admin_username": "quiet-admin", "admin_password": "org-admin-password-3"
    })).send().expect(201);
    let log = format!("{}{}", server.stderr(), server.stdout());
    for secret in [
        ADMIN_PASSWORD,
        &b64(ADMIN_PASSWORD),
        JWT_SECRET,
        &key,
        "quiet-password-1",
        &b64("quiet-password-1"),
        "typo-password-2",
        &b64("typo-password-2"),
        "org-admin-password-3",
        &token["Bearer ".len()..],
        &f.admin["Bearer ".len()..],
    ] {
        assert!(!log.contains(secret), "the log shows {secret:?}:\n{log}");
    }
}

#[test]
fn runtime_keys_and_user_tokens_do_not_open_each_others_routes() {
    let server = TestServer::start();
    let f = fixture(&server);
    let (_, key) = server.create_runtime(&f.admin, "rt-key");
    let runtime_token = format!("Bearer {key}");
    let package = format!("/api/runtime/packages/{}/1", f.robot);
    // The runtime key fetches the package; a user token does not.
    let reply = server.get(&package, &runtime_token).expect(200);
    assert_eq!(reply.content_type(), "application/zip");
    for token in [&f.admin, &format!("Bearer {}", &key[..key.len() - 1])] {
        assert_error(&server.get(&package, token), 401, &package);
        assert_error(
            &server.get("/api/runtime/connect", token),
            401,
            "/api/runtime/connect",
        );
    }
    // The runtime key is no user token.
    let execution = server.queue(&f.admin, &f.runtime, &f.robot, None);
    for (method, path) in protected_paths(&f.runtime, &f.robot, &execution) {
        let reply = server.req(method, &path).auth(&runtime_token).send();
        assert_error(&reply, 401, &path);
    }
}
