//! The console's webhooks pages over plain HTTP: admins list webhooks with
//! their state (never a secret), read one with its recent deliveries and their
//! attempts, and replay a delivery through a CSRF-checked form; integration
//! users are refused.

use std::time::Duration;

use serde_json::json;

use crate::console::{hidden_field, http, http_session};
use crate::support::*;
use crate::webhook_receiver::Receiver;

#[test]
fn console_lists_webhooks_their_deliveries_and_replays_one() {
    let server = TestServer::start();
    let admin = server.admin_token();
    let receiver = Receiver::start();
    let created = server
        .req("POST", "/api/admin/webhooks")
        .auth(&admin)
        .json(&json!({"url": receiver.url, "events": ["execution.finished"], "description": "erp"}))
        .send()
        .expect(201)
        .json();
    let id = created["id"].as_str().unwrap().to_owned();
    let secret = created["secret"].as_str().unwrap().to_owned();
    receiver.add_secret(&secret);
    let (runtime, key) = server.create_runtime(&admin, "rt-console-hooks");
    let _agent = TestAgent::start(&server, &key, 1);
    let robot = upload_shell_robot(&server, &admin, "noop", "true\n", "");
    server.queue(&admin, &runtime, &robot, None);
    let first = wait_until(Duration::from_secs(60), "the end delivered", || {
        receiver.delivered().into_iter().next()
    });
    wait_until(Duration::from_secs(30), "the attempt recorded", || {
        let page = server
            .get(&format!("/api/admin/webhooks/{id}/deliveries"), &admin)
            .expect(200)
            .json();
        (page["deliveries"][0]["status"] == "succeeded").then_some(())
    });

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
    let (status, list) = get(&cookie, "/webhooks");
    assert_eq!(status, 200, "{list}");
    assert!(list.contains(r#"aria-current="page">Webhooks"#), "{list}");
    assert!(
        list.contains(&receiver.url) && list.contains("enabled"),
        "{list}"
    );
    let (status, detail) = get(&cookie, &format!("/webhooks/{id}"));
    assert_eq!(status, 200, "{detail}");
    assert!(detail.contains(&first.id), "{detail}");
    assert!(
        detail.contains("succeeded") && detail.contains("HTTP 200"),
        "{detail}"
    );
    for page in [&list, &detail] {
        assert!(!page.contains(&secret[6..]), "a secret on a page");
    }
    let csrf = hidden_field(&detail, "csrf");
    let replay_path = format!("/webhooks/{id}/deliveries/{}/replay", first.id);
    let post = |form: &[(&str, &str)]| {
        http()
            .post(server.url(&replay_path))
            .header("Cookie", &cookie)
            .form(form)
            .send()
            .unwrap()
    };
    assert_eq!(post(&[]).status().as_u16(), 403, "no CSRF token, no replay");
    let replayed = post(&[("csrf", &csrf)]);
    assert!(
        [200, 303].contains(&replayed.status().as_u16()),
        "{}",
        replayed.status()
    );
    wait_until(Duration::from_secs(60), "the replay delivered", || {
        (receiver
            .delivered()
            .iter()
            .filter(|r| r.id == first.id)
            .count()
            == 2)
            .then_some(())
    });
    let (_, after) = get(&cookie, &format!("/webhooks/{id}"));
    assert!(after.matches("HTTP 200").count() >= 2, "{after}");

    // An integration user is refused; an unknown webhook is not found.
    server.create_user(&admin, "hooks-viewer", "hooks-viewer-pw", "integration");
    let viewer = format!(
        "regente_session={}",
        http_session(&server, "hooks-viewer", "hooks-viewer-pw")
    );
    assert_eq!(get(&viewer, "/webhooks").0, 403);
    assert_eq!(get(&cookie, "/webhooks/0000000000000000").0, 404);
    assert!(receiver.refused().is_empty(), "{:?}", receiver.refused());
}
