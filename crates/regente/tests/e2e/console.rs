//! The web console, driven by a real headless Chromium against the real
//! server and agent processes, plus its refusals checked over plain HTTP.

use std::time::Duration;

use reqwest::blocking::Client;
use reqwest::redirect::Policy;
use serde_json::json;

use crate::console_browser::{screenshot_dir, Browser};
use crate::support::{
    console_sign_in, fixture, form_field, robot, scratch, set_cookie, shell_robot,
    upload_shell_robot, wait_for_status, TestAgent, TestServer, ADMIN_PASSWORD, ADMIN_USER,
};

/// Prints a line, then waits for its gate file before printing the next:
/// the test decides when each line comes, with no timing in between.
const GATED_ROBOT: &str = r#"
i=1
while [ "$i" -le "$REGENTE_VAR_LINES" ]; do
  echo "console line $i"
  echo "::progress::$((i * 100 / REGENTE_VAR_LINES))"
  while [ ! -e "$REGENTE_VAR_GATE.$i" ]; do sleep 0.05; done
  i=$((i + 1))
done
echo '::return::{"lines": '"$REGENTE_VAR_LINES"'}'
"#;

const GATED_VARIABLES: &str = r#"
[[variables]]
name = "GATE"
type = "text"

[[variables]]
name = "LINES"
type = "number"
default = 2
"#;

/// Signs in through the form of the server at `base` (`http://host:port`).
pub(crate) fn sign_in(browser: &Browser, base: &str, username: &str, password: &str) {
    browser.goto(&format!("{base}/login"));
    browser.fill("#username", username);
    browser.fill("#password", password);
    browser.click_css("form[action='/login'] button[type=submit]");
    browser.wait_until("the page after signing in", || {
        (!browser.url().contains("/login")).then_some(())
    });
}

/// Runs the robot from its page's form; answers the execution's id.
fn run_from_form(
    browser: &Browser,
    server: &TestServer,
    robot: &str,
    gate: &str,
    lines: u32,
) -> String {
    browser.goto(&server.url(&format!("/robots/{robot}")));
    browser.fill("#var-GATE", gate);
    browser.fill("#var-LINES", &lines.to_string());
    browser.click_css("form[action$='/run'] button[type=submit]");
    let execution = browser.wait_until("the execution page", || {
        let url = browser.url();
        let id = url.rsplit_once("/executions/")?.1.to_owned();
        (id.len() == 16).then_some(id)
    });
    browser.wait("#execution");
    execution
}

pub(crate) fn log_lines(browser: &Browser) -> Vec<String> {
    browser
        .find_all("#log li .message")
        .iter()
        .map(|line| browser.text(line))
        .collect()
}

pub(crate) fn status(browser: &Browser) -> String {
    browser.text_of("#status").unwrap_or_default()
}

#[test]
#[cfg_attr(
    not(regente_chromium),
    ignore = "SKIPPED: needs chromium and chromium-driver (apt-get install chromium chromium-driver)"
)]
fn console_runs_a_robot_live_cancels_one_and_signs_out() {
    let server = TestServer::start();
    let browser = Browser::start("console_runs_a_robot_live_cancels_one_and_signs_out");
    let work = scratch();
    sign_in(&browser, &server.base, ADMIN_USER, ADMIN_PASSWORD);
    assert!(browser.url().ends_with("/executions"), "{}", browser.url());

    // Upload a robot through the file input.
    let package = work.path().join("console-gated.zip");
    std::fs::write(
        &package,
        shell_robot("console-gated", GATED_ROBOT, GATED_VARIABLES),
    )
    .unwrap();
    browser.goto(&server.url("/robots"));
    let input = browser.wait("#package");
    browser.type_into(&input, &package.display().to_string());
    browser.click_css("form[action='/robots'] button[type=submit]");
    let uploaded = browser.wait("#uploaded");
    assert_eq!(browser.text(&uploaded), "console-gated version 1 uploaded.");
    let robot = browser.wait_until("the robot's link", || {
        let href = browser.script(
            "var a = document.querySelector(\"table.list a[href^='/robots/']\"); return a && a.getAttribute('href');",
        );
        href.as_str().map(|h| h.trim_start_matches("/robots/").to_owned())
    });

    // Create a runtime: its key and the command to start its agent, once.
    browser.goto(&server.url("/runtimes"));
    browser.fill("#rt-name", "browser runtime");
    browser.fill("#rt-slots", "2");
    browser.click_css("form[action='/runtimes'] button[type=submit]");
    let key = browser.text(&browser.wait("#runtime-key"));
    assert_eq!(key.len(), 40, "{key}");
    let command = browser.text_of("#runtime-command").unwrap();
    assert_eq!(
        command,
        format!(
            "REGENTE_RUNTIME_KEY={key} regente runtime --server {}",
            server.base
        )
    );

    // The runtimes page turns it online by itself once its agent connects.
    browser.goto(&server.url("/runtimes"));
    let state_css = "#runtimes tr[data-runtime] [data-field='state']";
    assert_eq!(browser.text_of(state_css).as_deref(), Some("offline"));
    browser.script("window.regenteStayed = true;");
    let _agent = TestAgent::start(&server, &key, 0);
    browser.wait_until("the runtime shown online", || {
        (browser.text_of(state_css)? == "online").then_some(())
    });
    assert_eq!(
        browser.script("return window.regenteStayed === true;"),
        json!(true),
        "the page reloaded"
    );

    // Run it from the form; its log lines come in while the page stays.
    let gate = work.path().join("gate").display().to_string();
    let execution = run_from_form(&browser, &server, &robot, &gate, 2);
    browser.script("window.regenteStayed = true;");
    browser.wait_until("the first log line", || {
        (log_lines(&browser) == ["console line 1"]).then_some(())
    });
    assert_eq!(status(&browser), "RUNNING");
    std::fs::write(format!("{gate}.1"), "").unwrap();
    browser.wait_until("the second log line", || {
        (log_lines(&browser) == ["console line 1", "console line 2"]).then_some(())
    });
    std::fs::write(format!("{gate}.2"), "").unwrap();
    browser.wait_until("the FINISHED status", || {
        (status(&browser) == "FINISHED").then_some(())
    });
    assert_eq!(
        browser.script("return window.regenteStayed === true;"),
        json!(true),
        "the page reloaded"
    );
    let returned: serde_json::Value =
        serde_json::from_str(&browser.text_of("#return-value").unwrap()).unwrap();
    assert_eq!(returned, json!({"lines": 2}));
    assert_eq!(browser.text_of("#progress-text").as_deref(), Some("100 %"));
    assert!(
        browser.find("#cancel").is_none(),
        "an ended execution offers no cancel"
    );

    // Cancel a running one, after confirming.
    let stuck_gate = work.path().join("never").display().to_string();
    let canceled = run_from_form(&browser, &server, &robot, &stuck_gate, 3);
    browser.wait_until("the first log line", || {
        (log_lines(&browser) == ["console line 1"]).then_some(())
    });
    browser.click_css("#cancel summary");
    browser.click_css("#cancel button[type=submit]");
    browser.wait_until("the CANCELED status", || {
        (status(&browser) == "CANCELED").then_some(())
    });
    assert!(browser.url().ends_with(&format!("/executions/{canceled}")));

    // Both are in the list, newest first.
    browser.set_size(1280, 800);
    browser.goto(&server.url("/executions"));
    let ids: Vec<String> = browser
        .find_all("#executions tbody tr td:first-child code")
        .iter()
        .map(|cell| browser.text(cell))
        .collect();
    assert_eq!(ids, [canceled.clone(), execution.clone()]);
    browser.screenshot(&screenshot_dir().join("executions.png"));

    // The dashboard counts them.
    browser.goto(&server.url("/dashboard?window=24h"));
    let by_status = browser.text_of("#runs-by-status").unwrap_or_default();
    assert!(
        by_status.contains("FINISHED 1") && by_status.contains("CANCELED 1"),
        "{by_status}"
    );
    browser.screenshot(&screenshot_dir().join("dashboard.png"));
    save_readme_screenshots();

    // Signing out ends the session: its cookie is refused from then on.
    let session = browser
        .cookies()
        .into_iter()
        .find(|(name, _)| name == "regente_session")
        .expect("the session cookie")
        .1;
    browser.click_css("form.signout button[type=submit]");
    browser.wait_until("the signed-out page", || {
        browser
            .body_text()
            .contains("You are signed out.")
            .then_some(())
    });
    browser.goto(&server.url("/executions"));
    browser.wait("form[action='/login']");
    let reply = http()
        .get(server.url("/executions"))
        .header("Cookie", format!("regente_session={session}"))
        .send()
        .unwrap();
    assert_eq!(reply.status(), 303);
    assert!(reply.headers()["location"]
        .to_str()
        .unwrap()
        .starts_with("/login"));
}

/// With REGENTE_UPDATE_SCREENSHOTS=1, the README's pictures are replaced by
/// this run's.
fn save_readme_screenshots() {
    if std::env::var_os("REGENTE_UPDATE_SCREENSHOTS").is_none() {
        return;
    }
    let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs");
    for name in ["executions.png", "dashboard.png"] {
        std::fs::copy(
            screenshot_dir().join(name),
            docs.join(format!("console-{name}")),
        )
        .expect("the screenshot is copied into docs/");
    }
}

pub(crate) fn http() -> Client {
    Client::builder()
        .no_proxy()
        .redirect(Policy::none())
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

pub(crate) fn hidden_field(html: &str, name: &str) -> String {
    form_field(html, name).unwrap_or_else(|| panic!("no {name} field in {html}"))
}

/// Signs in over plain HTTP; answers the session cookie's value.
pub(crate) fn http_session(server: &TestServer, username: &str, password: &str) -> String {
    let reply = console_sign_in(&http(), &server.base, username, password).unwrap();
    assert_eq!(reply.status(), 303, "sign-in of {username}");
    let cookie = set_cookie(&reply, "regente_session").expect("a session cookie");
    for attribute in ["HttpOnly", "SameSite=Strict", "Max-Age=43200", "Path=/"] {
        assert!(cookie.contains(attribute), "{attribute}: {cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");
    let value = cookie.split(';').next().unwrap();
    value.trim_start_matches("regente_session=").to_owned()
}

#[test]
fn console_refuses_forms_without_their_csrf_token() {
    let server = TestServer::start();
    let client = http();

    // The sign-in form without its token (or its cookie) signs no one in.
    let reply = client
        .post(server.url("/login"))
        .form(&[
            ("username", ADMIN_USER),
            ("password", ADMIN_PASSWORD),
            ("csrf", ""),
        ])
        .send()
        .unwrap();
    assert_eq!(reply.status(), 403);
    assert!(set_cookie(&reply, "regente_session").is_none());

    // Behind a proxy that says the browser came over TLS, the cookie is Secure.
    let mut over_tls = reqwest::header::HeaderMap::new();
    over_tls.insert("x-forwarded-proto", "https".parse().unwrap());
    let tls = Client::builder()
        .no_proxy()
        .redirect(Policy::none())
        .default_headers(over_tls)
        .build()
        .unwrap();
    let reply = console_sign_in(&tls, &server.base, ADMIN_USER, ADMIN_PASSWORD).unwrap();
    let cookie = set_cookie(&reply, "regente_session").expect("a session cookie");
    assert!(cookie.contains("; Secure"), "{cookie}");

    let session = http_session(&server, ADMIN_USER, ADMIN_PASSWORD);
    let cookie = format!("regente_session={session}");
    let page = client
        .get(server.url("/users"))
        .header("Cookie", &cookie)
        .send()
        .unwrap();
    assert_eq!(page.status(), 200);
    let csrf = hidden_field(&page.text().unwrap(), "csrf");
    let create = |token: Option<&str>, name: &str| {
        let mut form = vec![
            ("username", name),
            ("password", "console-password"),
            ("role", "integration"),
        ];
        if let Some(token) = token {
            form.push(("csrf", token));
        }
        client
            .post(server.url("/users"))
            .header("Cookie", &cookie)
            .form(&form)
            .send()
            .unwrap()
    };
    for (token, name) in [(None, "no-token"), (Some("0".repeat(64)), "wrong-token")] {
        let reply = create(token.as_deref(), name);
        assert_eq!(reply.status(), 403, "{name}");
        assert!(reply.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
        assert!(reply.text().unwrap().contains("CSRF"), "{name}");
    }
    // Another session's token is no better.
    let other = http_session(&server, ADMIN_USER, ADMIN_PASSWORD);
    let other_page = client
        .get(server.url("/users"))
        .header("Cookie", format!("regente_session={other}"))
        .send()
        .unwrap();
    let other_csrf = hidden_field(&other_page.text().unwrap(), "csrf");
    assert_eq!(create(Some(&other_csrf), "other-session").status(), 403);
    let admin = server.admin_token();
    let users = server.get("/api/admin/users", &admin).json();
    let names: Vec<&str> = users
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, [ADMIN_USER], "a refused form created nobody");
    assert_eq!(create(Some(&csrf), "with-token").status(), 201);

    // A session is no API token, and an API token no session.
    let api = server.get("/api/admin/users", &format!("Bearer {session}"));
    assert_eq!(api.status, 401);
    let page = client
        .get(server.url("/executions"))
        .header(
            "Cookie",
            format!("regente_session={}", admin.trim_start_matches("Bearer ")),
        )
        .send()
        .unwrap();
    assert_eq!(page.status(), 303);
}

#[test]
#[cfg_attr(
    not(regente_chromium),
    ignore = "SKIPPED: needs chromium and chromium-driver (apt-get install chromium chromium-driver)"
)]
fn console_keeps_integration_users_and_other_organisations_out() {
    let server = TestServer::start();
    let f = fixture(&server);
    server.create_user(&f.admin, "integrator", "integrator-password", "integration");
    let mine = server.queue(&f.admin, &f.runtime, &f.robot, None);
    // Another organisation with a queued execution of its own.
    server
        .req("POST", "/api/admin/organizations")
        .auth(&f.admin)
        .json(&json!({"name": "Other", "admin_username": "other-admin", "admin_password": "other-password"}))
        .send()
        .expect(201);
    let other = server.login("other-admin", "other-password");
    let other_fixture_runtime = server.create_runtime(&other, "other-rt").0;
    let other_robot = robot(&server, &other, "other-robot");
    let theirs = server.queue(&other, &other_fixture_runtime, &other_robot, None);

    let browser = Browser::start("console_keeps_integration_users_and_other_organisations_out");
    sign_in(&browser, &server.base, "integrator", "integrator-password");
    let nav = browser.text_of("header nav").unwrap_or_default();
    assert_eq!(
        nav.split_whitespace().collect::<Vec<_>>(),
        ["Executions"],
        "integration users see executions only"
    );
    browser.goto(&server.url(&format!("/executions/{mine}")));
    assert_eq!(browser.text_of("#status").as_deref(), Some("PENDENT"));
    for page in [
        "/users",
        "/runtimes",
        "/robots",
        "/credentials",
        "/dashboard",
        "/audit",
        "/schedules",
        "/flows",
        &format!("/robots/{}", f.robot),
    ] {
        browser.goto(&server.url(page));
        assert_eq!(
            browser.text_of("h1").as_deref(),
            Some("Not for you"),
            "{page}"
        );
        assert!(browser.body_text().contains("Error 403"), "{page}");
    }
    browser.goto(&server.url(&format!("/executions/{theirs}")));
    assert_eq!(browser.text_of("h1").as_deref(), Some("Not found"));
    assert!(browser.body_text().contains("Error 404"));
    browser.goto(&server.url("/no-such-page"));
    assert_eq!(browser.text_of("h1").as_deref(), Some("Not found"));

    // The same answers by status, over HTTP.
    let session = http_session(&server, "integrator", "integrator-password");
    let get = |path: &str| {
        http()
            .get(server.url(path))
            .header("Cookie", format!("regente_session={session}"))
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(get("/users"), 403);
    assert_eq!(get(&format!("/executions/{theirs}")), 404);
    assert_eq!(get(&format!("/executions/{theirs}/live")), 404);
    assert_eq!(get(&format!("/executions/{mine}")), 200);
    let admin_session = http_session(&server, ADMIN_USER, ADMIN_PASSWORD);
    let status = http()
        .get(server.url(&format!("/executions/{theirs}")))
        .header("Cookie", format!("regente_session={admin_session}"))
        .send()
        .unwrap()
        .status();
    assert_eq!(
        status, 404,
        "an admin of another organisation sees nothing either"
    );
}

#[test]
#[cfg_attr(
    not(regente_chromium),
    ignore = "SKIPPED: needs chromium and chromium-driver (apt-get install chromium chromium-driver)"
)]
fn console_renames_and_deletes_runtimes_and_changes_roles() {
    let server = TestServer::start();
    let f = fixture(&server);
    let user = server.create_user(&f.admin, "helper", "helper-password", "integration");
    let user = user["id"].as_str().unwrap().to_owned();
    let browser = Browser::start("console_renames_and_deletes_runtimes_and_changes_roles");
    sign_in(&browser, &server.base, ADMIN_USER, ADMIN_PASSWORD);

    browser.goto(&server.url("/runtimes"));
    let row = format!("tr[data-runtime='{}']", f.runtime);
    browser.click_css(&format!("{row} details.rename summary"));
    browser.fill(&format!("#rename-{}", f.runtime), "front desk");
    browser.click_css(&format!("{row} details.rename button[type=submit]"));
    browser.wait_until("the new name", || {
        browser
            .text_of(&format!("{row} td"))?
            .starts_with("front desk")
            .then_some(())
    });
    let runtimes = server.get("/api/admin/runtimes", &f.admin).json();
    assert_eq!(runtimes[0]["name"], "front desk");

    browser.goto(&server.url("/users"));
    browser.click_css(&format!("#role-{user} option[value='admin']"));
    browser.click_css(&format!(
        "form[action='/users/{user}/role'] button[type=submit]"
    ));
    browser.wait_until("the role changed", || {
        browser
            .body_text()
            .contains("helper is now admin.")
            .then_some(())
    });
    let users = server.get("/api/admin/users", &f.admin).json();
    let helper = users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["id"] == user.as_str())
        .unwrap();
    assert_eq!(helper["role"], "admin");

    browser.goto(&server.url("/runtimes"));
    browser.click_css(&format!("{row} details.danger summary"));
    browser.click_css(&format!("{row} details.danger button[type=submit]"));
    browser.wait_until("the runtime gone", || {
        browser.find(&row).is_none().then_some(())
    });
    assert_eq!(
        server.get("/api/admin/runtimes", &f.admin).json(),
        json!([])
    );
}

#[test]
#[cfg_attr(
    not(regente_chromium),
    ignore = "SKIPPED: needs chromium and chromium-driver (apt-get install chromium chromium-driver)"
)]
fn console_shows_a_log_longer_than_a_page_whole_and_in_order() {
    let server = TestServer::start();
    let admin = server.admin_token();
    let (runtime, key) = server.create_runtime(&admin, "long-log");
    let robot = upload_shell_robot(&server, &admin, "long-log", "seq 1 2500", "");
    let _agent = TestAgent::start(&server, &key, 1);
    let id = server.queue(&admin, &runtime, &robot, None);
    wait_for_status(
        &server,
        &admin,
        &runtime,
        &id,
        &["FINISHED"],
        Duration::from_secs(60),
    );

    let browser = Browser::start("console_shows_a_log_longer_than_a_page_whole_and_in_order");
    sign_in(&browser, &server.base, ADMIN_USER, ADMIN_PASSWORD);
    browser.goto(&server.url(&format!("/executions/{id}")));
    // The first page comes with the page, the rest over its stream.
    browser.wait_until("all 2,500 lines", || {
        let count = browser.script("return document.querySelectorAll('#log li').length;");
        (count == json!(2500)).then_some(())
    });
    let in_order = browser.script(
        "return Array.from(document.querySelectorAll('#log li .message')).every((m, i) => m.textContent === String(i + 1));",
    );
    assert_eq!(in_order, json!(true));
}

#[test]
fn console_lists_credentials_for_admins_without_their_values() {
    let server = TestServer::start();
    let admin = server.admin_token();
    let erp_robot = robot(&server, &admin, "erp-robot");
    let password = format!("console-vault-{}", rand::random::<u64>());
    let create = |body: serde_json::Value| {
        let created = server
            .req("POST", "/api/admin/credentials")
            .auth(&admin)
            .json(&body)
            .send()
            .expect(201)
            .json();
        created["id"].as_str().expect("an id").to_owned()
    };
    let erp_id = create(json!({
        "name": "erp", "description": "ERP sign-in",
        "fields": {"username": "robot-erp", "password": password},
        "robots": [erp_robot],
    }));
    create(json!({"name": "mail", "fields": {"token": password}}));
    // A second version, by replacing the values.
    server
        .req("PUT", &format!("/api/admin/credentials/{erp_id}"))
        .auth(&admin)
        .json(&json!({
            "description": "ERP sign-in",
            "fields": {"username": "robot-erp", "password": format!("{password}-2")},
            "robots": [erp_robot],
        }))
        .send()
        .expect(200);

    let session = http_session(&server, ADMIN_USER, ADMIN_PASSWORD);
    let get = |session: &str, path: &str| {
        let reply = http()
            .get(server.url(path))
            .header("Cookie", format!("regente_session={session}"))
            .send()
            .unwrap();
        (reply.status().as_u16(), reply.text().unwrap())
    };
    let (status, executions) = get(&session, "/executions");
    assert_eq!(status, 200);
    assert!(
        executions.contains(r#"<a href="/credentials">Credentials</a>"#),
        "the navigation links the page: {executions}"
    );
    let (status, page) = get(&session, "/credentials");
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains(r#"aria-current="page">Credentials"#),
        "{page}"
    );
    let row = |name: &str| {
        let start = page
            .find(&format!(r#"data-credential="{name}""#))
            .unwrap_or_else(|| panic!("no row for {name}: {page}"));
        let end = page[start..].find("</tr>").unwrap() + start;
        page[start..end].to_owned()
    };
    let erp_row = row("erp");
    for shown in [
        "ERP sign-in",
        "password, username",
        "erp-robot",
        "v2",
        ADMIN_USER,
    ] {
        assert!(erp_row.contains(shown), "{shown}: {erp_row}");
    }
    let mail_row = row("mail");
    for shown in ["token", "every robot", "v1"] {
        assert!(mail_row.contains(shown), "{shown}: {mail_row}");
    }
    assert!(page.find(r#"data-credential="erp""#) < page.find(r#"data-credential="mail""#));
    assert!(!page.contains("console-vault-"), "a value is shown: {page}");
    assert!(!page.contains("robot-erp"), "a value is shown: {page}");

    // Admins only, of this organisation only.
    server.create_user(&admin, "integrator", "integrator-password", "integration");
    let integrator = http_session(&server, "integrator", "integrator-password");
    let (status, refused) = get(&integrator, "/credentials");
    assert_eq!(status, 403);
    assert!(
        !refused.contains("erp") && !refused.contains("/credentials\""),
        "{refused}"
    );
    server
        .req("POST", "/api/admin/organizations")
        .auth(&admin)
        .json(&json!({"name": "Other", "admin_username": "other-admin", "admin_password": "other-password"}))
        .send()
        .expect(201);
    let other = http_session(&server, "other-admin", "other-password");
    let (status, theirs) = get(&other, "/credentials");
    assert_eq!(status, 200);
    assert!(theirs.contains("No credentials yet."), "{theirs}");
    assert!(!theirs.contains("data-credential"), "{theirs}");
}
