//! Two organisations cannot see or touch each other's users, runtimes, robots
//! or executions through any route; what belongs to another organisation
//! answers exactly like what does not exist. On a server built in the test
//! process.

use serde_json::{json, Value};

use crate::support::*;

const UNKNOWN: &str = "0123456789abcdef";

/// One organisation's objects and tokens.
struct Org {
    admin: String,
    integration: String,
    user_ids: Vec<String>,
    usernames: Vec<String>,
    runtime: String,
    robot: String,
    execution: String,
}

fn populate(server: &Api, admin: String, prefix: &str) -> Org {
    let integration_name = format!("{prefix}-integration");
    let created = server.create_user(
        &admin,
        &integration_name,
        "integration-password",
        "integration",
    );
    let integration = server.login(&integration_name, "integration-password");
    let (runtime, _) = server.create_runtime(&admin, &format!("{prefix}-runtime"));
    // Both organisations name their robot alike: names are per organisation.
    let robot = robot(server, &admin, "shared-name");
    let execution = server.queue(
        &integration,
        &runtime,
        &robot,
        Some(&json!({"variables": {"name": "CNPJ", "value": prefix}})),
    );
    let users = server.get("/api/admin/users", &admin).expect(200).json();
    let users = users.as_array().unwrap();
    Org {
        admin,
        integration,
        user_ids: users
            .iter()
            .map(|u| u["id"].as_str().unwrap().to_owned())
            .collect(),
        usernames: users
            .iter()
            .map(|u| u["username"].as_str().unwrap().to_owned())
            .chain([created["username"].as_str().unwrap().to_owned()])
            .collect(),
        runtime,
        robot,
        execution,
    }
}

/// Organisation A (the root one) and a new organisation B, each populated.
fn two_organizations(server: &Api) -> (Org, Org) {
    let root_admin = server.admin_token();
    let a = populate(server, root_admin.clone(), "a");
    server
        .req("POST", "/api/admin/organizations")
        .auth(&root_admin)
        .json(&json!({"name": "B", "admin_username": "b-admin", "admin_password": "b-admin-password"}))
        .send()
        .expect(201);
    let b = populate(server, server.login("b-admin", "b-admin-password"), "b");
    (a, b)
}

/// The message with the ids replaced, to compare answers about different ids.
fn masked(body: &Value, ids: &[&str]) -> String {
    let mut text = message(body);
    for id in ids {
        text = text.replace(id, "<ID>");
    }
    text
}

/// Every way of reaching `other`'s objects through `org`'s tokens, each with
/// the same request made with unknown ids in place of the foreign ones.
fn probes(org: &Org, other: &Org) -> Vec<(&'static str, String, String, Vec<String>)> {
    let (own_rt, own_rb) = (org.runtime.as_str(), org.robot.as_str());
    let (rt, rb, ex) = (
        other.runtime.as_str(),
        other.robot.as_str(),
        other.execution.as_str(),
    );
    let mut probes = Vec::new();
    let mut add = |method: &'static str, path: &dyn Fn(&str, &str, &str) -> String| {
        probes.push((
            method,
            path(rt, rb, ex),
            path(UNKNOWN, UNKNOWN, UNKNOWN),
            vec![
                rt.to_owned(),
                rb.to_owned(),
                ex.to_owned(),
                UNKNOWN.to_owned(),
            ],
        ));
    };
    for version in ["v1", "v2"] {
        add("POST", &|rt, rb, _| {
            format!("/api/integration/{version}/run/{rt}/{rb}")
        });
        add("POST", &|rt, _, _| {
            format!("/api/integration/{version}/run/{rt}/{own_rb}")
        });
        add("POST", &|_, rb, _| {
            format!("/api/integration/{version}/run/{own_rt}/{rb}")
        });
    }
    add("GET", &|rt, rb, _| {
        format!("/api/integration/v1/run/{rt}/{rb}")
    });
    add("GET", &|rt, _, _| {
        format!("/api/integration/v1/run/{rt}/{own_rb}")
    });
    add("GET", &|_, rb, _| {
        format!("/api/integration/v1/run/{own_rt}/{rb}")
    });
    add("GET", &|rt, _, ex| {
        format!("/api/integration/v1/result/{rt}/{ex}")
    });
    add("GET", &|_, _, ex| {
        format!("/api/integration/v1/result/{own_rt}/{ex}")
    });

    add("DELETE", &|rt, _, ex| {
        format!("/api/integration/v1/delete/{rt}/{ex}")
    });
    add("DELETE", &|_, _, ex| {
        format!("/api/integration/v1/delete/{own_rt}/{ex}")
    });
    add("GET", &|_, rb, _| format!("/api/admin/robots/{rb}"));
    add("GET", &|_, _, ex| format!("/api/admin/executions/{ex}"));
    add("GET", &|_, _, ex| {
        format!("/api/integration/v2/executions/{ex}/events")
    });
    for user in &other.user_ids {
        probes.push((
            "DELETE",
            format!("/api/admin/users/{user}"),
            format!("/api/admin/users/{UNKNOWN}"),
            vec![user.clone(), UNKNOWN.to_owned()],
        ));
    }
    probes
}

/// What one organisation's lists show.
fn lists(server: &Api, org: &Org) -> String {
    [
        "/api/admin/users",
        "/api/admin/runtimes",
        "/api/admin/robots",
        "/api/admin/executions?limit=500",
    ]
    .iter()
    .map(|path| server.get(path, &org.admin).expect(200).text())
    .collect::<Vec<_>>()
    .join("\n")
}

fn assert_cannot_reach(server: &Api, org: &Org, other: &Org) {
    for token in [&org.admin, &org.integration] {
        for (method, foreign, unknown, ids) in probes(org, other) {
            let is_admin_route = foreign.starts_with("/api/admin/");
            if is_admin_route && token == &org.integration {
                continue;
            }
            let body = br#"{"variables": []}"#.to_vec();
            let reply = server
                .req(method, &foreign)
                .auth(token)
                .body(body.clone(), "application/json")
                .send();
            let got = assert_error(&reply, 404, &foreign);
            let baseline = server
                .req(method, &unknown)
                .auth(token)
                .body(body, "application/json")
                .send();
            let expected = assert_error(&baseline, 404, &unknown);
            let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
            assert_eq!(
                masked(&got, &ids),
                masked(&expected, &ids),
                "{method} {foreign} answers unlike an unknown id"
            );
        }
    }
    // None of the other organisation's objects shows in this one's lists.
    let seen = lists(server, org);
    for id in other
        .user_ids
        .iter()
        .chain([&other.runtime, &other.robot, &other.execution])
    {
        assert!(!seen.contains(id.as_str()), "{id} is visible:\n{seen}");
    }
    for username in &other.usernames {
        assert!(
            !seen.contains(&format!("\"username\":\"{username}\"")),
            "{username} is visible"
        );
    }
    // Filters naming the other organisation's objects find nothing.
    for query in [
        format!("&runtime={}", other.runtime),
        format!("&robot={}", other.robot),
    ] {
        assert!(
            server.all_executions(&org.admin, &query).is_empty(),
            "{query}"
        );
    }
}

#[test]
fn two_organizations_cannot_see_each_others_objects() {
    let server = InProcessServer::start();
    let (a, b) = two_organizations(&server);
    assert_ne!(a.robot, b.robot, "same robot name, different organisations");

    let snapshot = |org: &Org| {
        (
            server
                .result(&org.admin, &org.runtime, &org.execution)
                .expect(200)
                .json(),
            server.execution(&org.admin, &org.execution),
            server
                .get(&format!("/api/admin/robots/{}", org.robot), &org.admin)
                .expect(200)
                .json(),
            lists(&server, org),
        )
    };
    let a_before = snapshot(&a);
    let b_before = snapshot(&b);

    assert_cannot_reach(&server, &b, &a);
    assert_cannot_reach(&server, &a, &b);

    // The same Idempotency-Key in both organisations makes two executions.
    let run = |org: &Org| {
        server
            .req(
                "POST",
                &format!("/api/integration/v2/run/{}/{}", org.runtime, org.robot),
            )
            .auth(&org.admin)
            .header("Idempotency-Key", b"same-key")
            .send()
            .expect(200)
            .json()["id"]
            .clone()
    };
    assert_ne!(run(&a), run(&b));

    // Nothing of either organisation changed, apart from that new run.
    let a_after = snapshot(&a);
    let b_after = snapshot(&b);
    assert_eq!(a_after.0, a_before.0);
    assert_eq!(a_after.1["status"], "PENDENT");
    assert_eq!(a_after.1["variables"], json!({"CNPJ": "a", "LIMIT": 10}));
    assert_eq!(a_after.1["end"], a_before.1["end"]);
    assert_eq!(a_after.2, a_before.2);
    assert_eq!(b_after.0, b_before.0);
    assert_eq!(b_after.1["variables"], json!({"CNPJ": "b", "LIMIT": 10}));
    assert_eq!(b_after.2, b_before.2);
    assert_eq!(server.all_executions(&a.admin, "").len(), 2);
    assert_eq!(server.all_executions(&b.admin, "").len(), 2);
    assert_eq!(
        server
            .get("/api/admin/users", &a.admin)
            .expect(200)
            .json()
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

/// The answer of an ended execution is kept once rendered (it never changes);
/// read again it is the same, and it is still given only to its organisation,
/// through its runtime.
#[test]
fn an_ended_result_read_again_is_the_same_and_stays_in_its_organization() {
    let server = InProcessServer::start();
    let (a, b) = two_organizations(&server);
    let (a_other_runtime, _) = server.create_runtime(&a.admin, "a-other-runtime");

    let pendent = server
        .result(&a.integration, &a.runtime, &a.execution)
        .expect(200);
    assert_eq!(pendent.json()["status"], "PENDENT");
    server
        .req(
            "DELETE",
            &format!("/api/integration/v1/delete/{}/{}", a.runtime, a.execution),
        )
        .auth(&a.integration)
        .send()
        .expect(200);

    let first = server
        .result(&a.integration, &a.runtime, &a.execution)
        .expect(200);
    assert_eq!(
        first.json()["status"],
        "CANCELED",
        "not the answer from before the end"
    );
    for _ in 0..3 {
        let again = server
            .result(&a.admin, &a.runtime, &a.execution)
            .expect(200);
        assert_eq!(again.text(), first.text());
        assert_eq!(again.content_type(), "application/json");
        let waited = server
            .get(
                &format!(
                    "/api/integration/v1/result/{}/{}?wait=5",
                    a.runtime, a.execution
                ),
                &a.integration,
            )
            .expect(200);
        assert_eq!(waited.text(), first.text());
        for (token, runtime) in [
            (&b.admin, &a.runtime),
            (&b.integration, &b.runtime),
            (&a.admin, &a_other_runtime),
        ] {
            let refused = server.result(token, runtime, &a.execution).expect(404);
            assert_eq!(refused.json()["status"], 404);
        }
        server
            .get(
                &format!(
                    "/api/integration/v1/result/{}/{}?wait=61",
                    a.runtime, a.execution
                ),
                &a.integration,
            )
            .expect(400);
    }
}
