//! The console's Schedules and Flows pages over plain HTTP: what they list,
//! their forms (refused without the session's CSRF token, and their effect
//! seen through the API), 403 for integration users where the API says admins
//! only, and 404 for another organisation's schedules and flow runs.

use serde_json::{json, Value};

use crate::console::{hidden_field, http, http_session};
use crate::support::*;

/// A yearly rule: it does not fire while a test runs.
const YEARLY: &str = "0 0 1 1 *";

struct Page {
    status: u16,
    html: String,
    location: String,
}

/// A console session: GET pages and POST their forms.
struct Session<'a> {
    server: &'a TestServer,
    cookie: String,
}

impl<'a> Session<'a> {
    fn new(server: &'a TestServer, username: &str, password: &str) -> Session<'a> {
        let cookie = format!(
            "regente_session={}",
            http_session(server, username, password)
        );
        Session { server, cookie }
    }

    fn get(&self, path: &str) -> Page {
        let reply = http()
            .get(self.server.url(path))
            .header("Cookie", &self.cookie)
            .send()
            .unwrap();
        Page::of(reply)
    }

    /// The session's CSRF token, from any page's forms.
    fn csrf(&self) -> String {
        hidden_field(&self.get("/executions").html, "csrf")
    }

    fn post(&self, path: &str, form: &[(&str, &str)]) -> Page {
        let reply = http()
            .post(self.server.url(path))
            .header("Cookie", &self.cookie)
            .form(form)
            .send()
            .unwrap();
        Page::of(reply)
    }
}

impl Page {
    fn of(reply: reqwest::blocking::Response) -> Page {
        let location = reply
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        Page {
            status: reply.status().as_u16(),
            location,
            html: reply.text().unwrap(),
        }
    }

    /// The table row marked `attribute="value"`.
    fn row(&self, attribute: &str, value: &str) -> &str {
        let start = self
            .html
            .find(&format!(r#"{attribute}="{value}""#))
            .unwrap_or_else(|| panic!("no row {attribute}={value}: {}", self.html));
        let end = self.html[start..].find("</tr>").unwrap() + start;
        &self.html[start..end]
    }
}

fn create_schedule(server: &TestServer, token: &str, body: Value) -> String {
    let created = server
        .req("POST", "/api/admin/schedules")
        .auth(token)
        .json(&body)
        .send()
        .expect(201)
        .json();
    created["id"].as_str().expect("an id").to_owned()
}

fn schedule(server: &TestServer, token: &str, id: &str) -> Value {
    server
        .get(&format!("/api/admin/schedules/{id}"), token)
        .expect(200)
        .json()
}

/// A flow of two steps of `robot` on `runtime`.
fn two_step_flow(
    server: &TestServer,
    token: &str,
    name: &str,
    robot: &str,
    runtime: &str,
) -> String {
    let step = |id: &str| json!({"id": id, "robot_id": robot, "runtime_id": runtime});
    let mut second = step("report");
    second["when"] = json!("steps.fetch.return_value.count > 0");
    let saved = server
        .req("POST", "/api/admin/flows")
        .auth(token)
        .json(&json!({"name": name, "steps": [step("fetch"), second]}))
        .send()
        .expect(201)
        .json();
    saved["id"].as_str().expect("a flow id").to_owned()
}

fn flow_run(server: &TestServer, token: &str, run: &str) -> Value {
    server
        .get(&format!("/api/integration/v2/flows/runs/{run}"), token)
        .expect(200)
        .json()
}

fn start_flow_run(server: &TestServer, token: &str, flow: &str) -> String {
    let started = server
        .req("POST", &format!("/api/integration/v2/flows/{flow}/run"))
        .auth(token)
        .send()
        .expect(200)
        .json();
    started["id"].as_str().expect("a run id").to_owned()
}

fn other_organisation(server: &TestServer, admin: &str) -> String {
    server
        .req("POST", "/api/admin/organizations")
        .auth(admin)
        .json(&json!({"name": "Other", "admin_username": "other-admin", "admin_password": "other-password"}))
        .send()
        .expect(201);
    server.login("other-admin", "other-password")
}

#[test]
fn console_lists_schedules_pauses_resumes_and_runs_one_now() {
    let server = TestServer::start();
    let admin = server.admin_token();
    let (runtime, _key) = server.create_runtime(&admin, "office-pc");
    let robot = upload_shell_robot(&server, &admin, "invoices", "echo hi", "");
    let flow = two_step_flow(&server, &admin, "month-end", &robot, &runtime);
    let nightly = create_schedule(
        &server,
        &admin,
        json!({"name": "nightly invoices", "robot_id": robot, "runtime_id": runtime,
               "cron": YEARLY, "timezone": "America/Sao_Paulo", "pause_after_failures": 3}),
    );
    let weekly = create_schedule(
        &server,
        &admin,
        json!({"name": "weekly close", "flow_id": flow,
               "every": {"frequency": "weekly", "weekdays": ["mon", "fri"], "at": "09:30"},
               "timezone": "Europe/Lisbon"}),
    );

    let console = Session::new(&server, ADMIN_USER, ADMIN_PASSWORD);
    let executions = console.get("/executions");
    for link in [
        r#"<a href="/schedules">Schedules</a>"#,
        r#"<a href="/flows">Flows</a>"#,
    ] {
        assert!(
            executions.html.contains(link),
            "{link}: {}",
            executions.html
        );
    }
    let list = console.get("/schedules");
    assert_eq!(list.status, 200, "{}", list.html);
    let row = list.row("data-schedule", &nightly);
    for shown in [
        "nightly invoices",
        "robot invoices on office-pc",
        "cron 0 0 1 1 *",
        "America/Sao_Paulo",
        "active",
        "0 / 3",
        "<time",
    ] {
        assert!(row.contains(shown), "{shown}: {row}");
    }
    let row = list.row("data-schedule", &weekly);
    for shown in [
        "flow month-end",
        &format!("/flows/{flow}"),
        "weekly on mon, fri at 09:30",
        "Europe/Lisbon",
    ] {
        assert!(row.contains(shown), "{shown}: {row}");
    }

    // Pause: refused without the session's token, done with it.
    let pause = format!("/schedules/{nightly}/pause");
    let refused = console.post(&pause, &[("note", "month closing")]);
    assert_eq!(refused.status, 403);
    assert!(refused.html.contains("CSRF"), "{}", refused.html);
    assert_eq!(schedule(&server, &admin, &nightly)["paused"], false);
    let csrf = console.csrf();
    let paused = console.post(&pause, &[("csrf", &csrf), ("note", "month closing")]);
    assert_eq!(paused.status, 303, "{}", paused.html);
    assert_eq!(paused.location, format!("/schedules/{nightly}"));
    let stored = schedule(&server, &admin, &nightly);
    assert_eq!(
        (&stored["paused"], &stored["note"]),
        (&json!(true), &json!("month closing"))
    );
    let row = console.get("/schedules");
    let row = row.row("data-schedule", &nightly);
    assert!(
        row.contains("paused") && row.contains("month closing"),
        "{row}"
    );
    assert!(
        row.contains("/resume"),
        "a paused schedule offers a resume: {row}"
    );

    // Resume.
    let resume = format!("/schedules/{nightly}/resume");
    assert_eq!(console.post(&resume, &[]).status, 403);
    assert_eq!(schedule(&server, &admin, &nightly)["paused"], true);
    assert_eq!(console.post(&resume, &[("csrf", &csrf)]).status, 303);
    assert_eq!(schedule(&server, &admin, &nightly)["paused"], false);

    // Run now: a fire of origin `trigger` with its execution, linked.
    let trigger = format!("/schedules/{nightly}/trigger");
    assert_eq!(console.post(&trigger, &[]).status, 403);
    assert_eq!(schedule(&server, &admin, &nightly)["last_fires"], json!([]));
    assert_eq!(console.post(&trigger, &[("csrf", &csrf)]).status, 303);
    let fires = schedule(&server, &admin, &nightly)["last_fires"].clone();
    assert_eq!(fires.as_array().unwrap().len(), 1, "{fires}");
    assert_eq!(
        (&fires[0]["origin"], &fires[0]["outcome"]),
        (&json!("trigger"), &json!("started"))
    );
    let execution = fires[0]["execution_id"].as_str().expect("an execution");
    let detail = console.get(&format!("/schedules/{nightly}"));
    assert_eq!(detail.status, 200);
    let fire = detail.row("data-origin", "trigger");
    assert!(
        fire.contains(&format!(r#"href="/executions/{execution}""#)),
        "{fire}"
    );
    assert!(fire.contains("started"), "{fire}");
    assert!(detail.html.contains("nightly invoices"));

    // A flow's schedule: its fire starts a flow run, linked to its page.
    assert_eq!(
        console
            .post(&format!("/schedules/{weekly}/trigger"), &[("csrf", &csrf)])
            .status,
        303
    );
    let fires = schedule(&server, &admin, &weekly)["last_fires"].clone();
    let run = fires[0]["flow_run_id"].as_str().expect("a flow run");
    let detail = console.get(&format!("/schedules/{weekly}"));
    assert!(
        detail
            .html
            .contains(&format!(r#"href="/flows/runs/{run}""#)),
        "{}",
        detail.html
    );
    assert_eq!(console.get(&format!("/flows/runs/{run}")).status, 200);

    // Schedules are for admins, as in the API.
    server.create_user(&admin, "integrator", "integrator-password", "integration");
    let integrator = Session::new(&server, "integrator", "integrator-password");
    let nav = integrator.get("/executions").html;
    assert!(
        !nav.contains(r#"href="/schedules""#) && !nav.contains(r#"href="/flows""#),
        "{nav}"
    );
    for page in [
        "/schedules".to_owned(),
        format!("/schedules/{nightly}"),
        "/flows".to_owned(),
        format!("/flows/{flow}"),
    ] {
        let answer = integrator.get(&page);
        assert_eq!(answer.status, 403, "{page}");
        assert!(
            !answer.html.contains("nightly invoices"),
            "{page}: {}",
            answer.html
        );
    }
    let their_csrf = integrator.csrf();
    assert_eq!(
        integrator.post(&pause, &[("csrf", &their_csrf)]).status,
        403
    );
    assert_eq!(
        integrator.post(&trigger, &[("csrf", &their_csrf)]).status,
        403
    );
    assert_eq!(schedule(&server, &admin, &nightly)["paused"], false);

    // Another organisation's admin finds nothing.
    other_organisation(&server, &admin);
    let other = Session::new(&server, "other-admin", "other-password");
    let list = other.get("/schedules");
    assert_eq!(list.status, 200);
    assert!(
        list.html.contains("No schedules yet.") && !list.html.contains(&nightly),
        "{}",
        list.html
    );
    let answer = other.get(&format!("/schedules/{nightly}"));
    assert_eq!(answer.status, 404);
    assert!(!answer.html.contains("nightly invoices"));
    let other_csrf = other.csrf();
    for action in [&pause, &trigger] {
        assert_eq!(
            other.post(action, &[("csrf", &other_csrf)]).status,
            404,
            "{action}"
        );
    }
    let stored = schedule(&server, &admin, &nightly);
    assert_eq!(stored["paused"], false);
    assert_eq!(
        stored["last_fires"].as_array().unwrap().len(),
        1,
        "{stored}"
    );
}

#[test]
fn console_shows_flows_and_their_runs_and_cancels_and_retries_one() {
    let server = TestServer::start();
    let admin = server.admin_token();
    // No agent: the run's first step stays queued, so the run stays RUNNING.
    let (runtime, _key) = server.create_runtime(&admin, "office-pc");
    let robot = upload_shell_robot(&server, &admin, "ledger", "echo hi", "");
    two_step_flow(&server, &admin, "month-end", &robot, &runtime);
    let flow = two_step_flow(&server, &admin, "month-end", &robot, &runtime);
    let run = start_flow_run(&server, &admin, &flow);

    let console = Session::new(&server, ADMIN_USER, ADMIN_PASSWORD);
    let list = console.get("/flows");
    assert_eq!(list.status, 200, "{}", list.html);
    assert!(
        list.html.contains(r#"aria-current="page">Flows"#),
        "{}",
        list.html
    );
    let row = list.row("data-flow", &flow);
    for shown in ["month-end", "v2", "<td>2</td>", ADMIN_USER] {
        assert!(row.contains(shown), "{shown}: {row}");
    }
    let detail = console.get(&format!("/flows/{flow}"));
    assert_eq!(detail.status, 200);
    let fetch = detail.row("data-step", "fetch");
    assert!(
        fetch.contains("ledger") && fetch.contains("office-pc") && fetch.contains("always"),
        "{fetch}"
    );
    let report = detail.row("data-step", "report");
    assert!(
        report.contains("steps.fetch.return_value.count &#62; 0"),
        "{report}"
    );
    let listed = detail.row("data-run", &run);
    assert!(
        listed.contains("RUNNING") && listed.contains(&format!("/flows/runs/{run}")),
        "{listed}"
    );

    let stored = flow_run(&server, &admin, &run);
    let execution = stored["steps"][0]["execution_id"]
        .as_str()
        .expect("the first step's execution");
    let page = console.get(&format!("/flows/runs/{run}"));
    assert_eq!(page.status, 200);
    assert!(
        page.html
            .contains(r#"id="status" class="status status-RUNNING""#),
        "{}",
        page.html
    );
    let step = page.row("data-step", "fetch");
    assert!(
        step.contains(&format!(r#"href="/executions/{execution}""#)),
        "{step}"
    );
    assert!(page.html.contains(&format!("/flows/runs/{run}/cancel")));
    assert!(
        !page.html.contains("/retry"),
        "a running run is not retried"
    );

    // Cancel: refused without the token, done with it.
    let cancel = format!("/flows/runs/{run}/cancel");
    assert_eq!(console.post(&cancel, &[]).status, 403);
    assert_eq!(flow_run(&server, &admin, &run)["status"], "RUNNING");
    let csrf = console.csrf();
    let canceled = console.post(&cancel, &[("csrf", &csrf)]);
    assert_eq!(
        (canceled.status, canceled.location.as_str()),
        (303, format!("/flows/runs/{run}").as_str())
    );
    assert_eq!(flow_run(&server, &admin, &run)["status"], "CANCELED");
    let page = console.get(&format!("/flows/runs/{run}"));
    assert!(
        page.html.contains("status-CANCELED")
            && page.html.contains(&format!("/flows/runs/{run}/retry")),
        "{}",
        page.html
    );

    // Retry resumes it at its canceled step, once the engine has recorded the
    // step's end (a retry computed before that change is refused as stale).
    wait_until(
        std::time::Duration::from_secs(30),
        "the engine to record the canceled step",
        || (flow_run(&server, &admin, &run)["steps"][0]["status"] == "CANCELED").then_some(()),
    );
    let retry = format!("/flows/runs/{run}/retry");
    assert_eq!(console.post(&retry, &[]).status, 403);
    assert_eq!(flow_run(&server, &admin, &run)["status"], "CANCELED");
    let retried = console.post(&retry, &[("csrf", &csrf)]);
    assert_eq!(retried.status, 303, "{}", retried.html);
    assert_eq!(flow_run(&server, &admin, &run)["status"], "RUNNING");
    // A second retry of a running run is refused, saying why.
    let again = console.post(&retry, &[("csrf", &csrf)]);
    assert_eq!(again.status, 409);
    assert!(
        again
            .html
            .contains("only a run that ended ERROR or CANCELED"),
        "{}",
        again.html
    );

    // Integration users read and cancel runs, as the API lets them; the flows
    // themselves are for admins.
    server.create_user(&admin, "integrator", "integrator-password", "integration");
    let integrator = Session::new(&server, "integrator", "integrator-password");
    let page = integrator.get(&format!("/flows/runs/{run}"));
    assert_eq!(page.status, 200, "{}", page.html);
    assert!(
        !page.html.contains(&format!(r#"href="/flows/{flow}""#)),
        "no link to an admin page"
    );
    assert_eq!(integrator.get("/flows").status, 403);
    assert_eq!(integrator.get(&format!("/flows/{flow}")).status, 403);

    // Another organisation's admin finds nothing and cancels nothing.
    other_organisation(&server, &admin);
    let other = Session::new(&server, "other-admin", "other-password");
    assert_eq!(other.get(&format!("/flows/runs/{run}")).status, 404);
    assert_eq!(other.get(&format!("/flows/{flow}")).status, 404);
    let other_csrf = other.csrf();
    assert_eq!(other.post(&cancel, &[("csrf", &other_csrf)]).status, 404);
    assert_eq!(other.post(&retry, &[("csrf", &other_csrf)]).status, 404);
    assert_eq!(flow_run(&server, &admin, &run)["status"], "RUNNING");

    let their_csrf = integrator.csrf();
    assert_eq!(
        integrator.post(&cancel, &[("csrf", &their_csrf)]).status,
        303
    );
    assert_eq!(flow_run(&server, &admin, &run)["status"], "CANCELED");
}
