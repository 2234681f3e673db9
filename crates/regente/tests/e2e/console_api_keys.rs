//! The console's API keys page over plain HTTP: admins list keys (never the
//! key), create one through a CSRF-checked form that shows it this once, and
//! revoke one, each recorded in the audit log; integration users and other
//! organisations see none of it.

use serde_json::json;

use crate::console::{hidden_field, http, http_session};
use crate::support::{TestServer, ADMIN_PASSWORD, ADMIN_USER};

#[test]
fn console_creates_lists_and_revokes_api_keys() {
    let server = TestServer::start();
    let admin = server.admin_token();
    let session = http_session(&server, ADMIN_USER, ADMIN_PASSWORD);
    let cookie = format!("regente_session={session}");
    let get = |cookie: &str, path: &str| {
        let reply = http()
            .get(server.url(path))
            .header("Cookie", cookie)
            .send()
            .unwrap();
        (reply.status().as_u16(), reply.text().unwrap())
    };
    let post = |path: &str, form: &[(&str, &str)]| {
        let reply = http()
            .post(server.url(path))
            .header("Cookie", &cookie)
            .form(form)
            .send()
            .unwrap();
        (reply.status().as_u16(), reply.text().unwrap())
    };
    let (status, page) = get(&cookie, "/api-keys");
    assert_eq!(status, 200, "{page}");
    assert!(page.contains(r#"aria-current="page">API keys"#), "{page}");
    assert!(page.contains("No API keys yet."), "{page}");
    let csrf = hidden_field(&page, "csrf");

    // Without the session's CSRF token, nothing is created.
    let (status, refused) = post("/api-keys", &[("name", "erp"), ("role", "integration")]);
    assert_eq!(status, 403, "{refused}");
    // Bad input: the page again, saying what was wrong.
    let (status, again) = post(
        "/api-keys",
        &[
            ("csrf", &csrf),
            ("name", "erp"),
            ("role", "integration"),
            ("expires", "soon"),
        ],
    );
    assert_eq!(status, 400, "{again}");
    assert!(
        again.contains("expires") && again.contains(r#"value="erp""#),
        "{again}"
    );
    let keys = server.get("/api/admin/api-keys", &admin).json();
    assert_eq!(keys, json!([]), "a refused form created no key");

    // Created: the key shown once, and it works.
    let (status, created) = post(
        "/api-keys",
        &[("csrf", &csrf), ("name", "erp"), ("role", "integration")],
    );
    assert_eq!(status, 200, "{created}");
    let start = created.find(r#"<code id="api-key">"#).expect("the key") + 19;
    let key = created[start..start + created[start..].find('<').unwrap()].to_owned();
    assert!(key.starts_with("rgk_"), "{key}");
    server
        .get("/api/admin/runtimes", &format!("Bearer {key}"))
        .expect(403);
    let (status, clash) = post(
        "/api-keys",
        &[("csrf", &csrf), ("name", "erp"), ("role", "admin")],
    );
    assert_eq!(status, 409, "{clash}");

    // Listed without the key; revoked by its form.
    let (_, page) = get(&cookie, "/api-keys");
    assert!(!page.contains(&key[4..]), "the key is shown again: {page}");
    assert!(page.contains(&format!("rgk_{}", &key[4..12])), "{page}");
    assert!(page.contains(ADMIN_USER), "who created it: {page}");
    let id = server.get("/api/admin/api-keys", &admin).json()[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let revoke = format!("/api-keys/{id}/revoke");
    assert!(page.contains(&revoke), "{page}");
    let (status, _) = post(&revoke, &[]);
    assert_eq!(status, 403, "a revoke without the CSRF token");
    let (status, _) = post(&revoke, &[("csrf", &csrf)]);
    assert_eq!(status, 303);
    let refused = server.get("/api/admin/runtimes", &format!("Bearer {key}"));
    assert_eq!(refused.status, 401);
    let (_, page) = get(&cookie, "/api-keys");
    assert!(
        page.contains(">revoked<") && !page.contains(&revoke),
        "{page}"
    );

    // Admins only, of this organisation only.
    server.create_user(&admin, "integrator", "integrator-password", "integration");
    let integrator = http_session(&server, "integrator", "integrator-password");
    let (status, page) = get(&format!("regente_session={integrator}"), "/api-keys");
    assert_eq!(status, 403);
    assert!(!page.contains("erp"), "{page}");
    server
        .req("POST", "/api/admin/organizations")
        .auth(&admin)
        .json(&json!({"name": "Other", "admin_username": "other-admin", "admin_password": "other-password"}))
        .send()
        .expect(201);
    let other = http_session(&server, "other-admin", "other-password");
    let other_cookie = format!("regente_session={other}");
    let (status, theirs) = get(&other_cookie, "/api-keys");
    assert_eq!(status, 200);
    assert!(theirs.contains("No API keys yet."), "{theirs}");
    let other_csrf = hidden_field(&theirs, "csrf");
    let reply = http()
        .post(server.url(&revoke))
        .header("Cookie", &other_cookie)
        .form(&[("csrf", other_csrf.as_str())])
        .send()
        .unwrap();
    assert_eq!(reply.status().as_u16(), 404);

    // The audit log holds the create and the revoke made through the forms,
    // by the admin from this address; the refused forms recorded nothing.
    let log = server
        .get("/api/admin/audit?object_type=api_key", &admin)
        .expect(200)
        .json();
    let records = log["records"].as_array().expect("records");
    let actions: Vec<_> = records.iter().map(|r| r["action"].clone()).collect();
    assert_eq!(actions, [json!("api_key.revoke"), json!("api_key.create")]);
    for record in records {
        assert_eq!(record["object_id"], id.as_str(), "{record}");
        assert_eq!(record["actor_name"], ADMIN_USER, "{record}");
        assert_eq!(record["address"], "127.0.0.1", "{record}");
        assert_eq!(
            record["summary"],
            json!({"name": "erp", "role": "integration", "expires_at": null})
        );
        assert!(!record.to_string().contains(&key[4..]), "{record}");
    }
}
