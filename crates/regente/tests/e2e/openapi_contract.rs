//! The OpenAPI document says what the server does: every route that takes a
//! token documents the 401 it answers without one (an admin route its 403 too),
//! and each constraint the document states on an input is the one the server
//! enforces, checked both ways on samples at the edges. `.ci/schemathesis`
//! checks the same at random against a live server.

use regex::Regex;
use serde_json::{json, Value};

use crate::support::*;

fn document(server: &InProcessServer) -> Value {
    server
        .req("GET", "/api/openapi.json")
        .send()
        .expect(200)
        .json()
}

/// The schema of a component's property.
fn property<'a>(document: &'a Value, component: &str, name: &str) -> &'a Value {
    &document["components"]["schemas"][component]["properties"][name]
}

/// The schema of an operation's parameter.
fn parameter<'a>(document: &'a Value, path: &str, method: &str, name: &str) -> &'a Value {
    document["paths"][path][method]["parameters"]
        .as_array()
        .and_then(|all| all.iter().find(|p| p["name"] == name))
        .map(|p| &p["schema"])
        .unwrap_or_else(|| panic!("no parameter {name} on {method} {path}"))
}

/// Whether `value` fits a string schema's length and pattern.
fn fits(schema: &Value, value: &str) -> bool {
    let chars = value.chars().count() as u64;
    let min_ok = schema["minLength"].as_u64().is_none_or(|min| chars >= min);
    let max_ok = schema["maxLength"].as_u64().is_none_or(|max| chars <= max);
    let pattern_ok = schema["pattern"].as_str().is_none_or(|pattern| {
        Regex::new(pattern)
            .unwrap_or_else(|e| panic!("{pattern}: {e}"))
            .is_match(value)
    });
    min_ok && max_ok && pattern_ok
}

/// Asserts that the server takes exactly the samples the schema says it takes.
fn agree(schema: &Value, what: &str, samples: &[String], accepted: impl Fn(&str) -> bool) {
    assert!(
        schema["pattern"].is_string() || schema["minLength"].is_u64(),
        "{what}: the document states no constraint: {schema}"
    );
    for sample in samples {
        assert_eq!(
            accepted(sample),
            fits(schema, sample),
            "{what} {sample:?}: the server and the document disagree ({schema})"
        );
    }
}

fn edges(max: usize) -> Vec<String> {
    [
        "",
        " ",
        "a",
        " a",
        "a ",
        "a b",
        "\u{a0}a",
        "a\u{3000}",
        "a\tb",
        "a\u{1}b",
        "a\u{85}b",
        "名前",
        "é",
        "😀",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([
        "x".repeat(max),
        "x".repeat(max + 1),
        "名".repeat(max),
        "名".repeat(max + 1),
    ])
    .collect()
}

#[test]
fn every_route_that_takes_a_token_documents_its_401_and_admin_routes_their_403() {
    let server = InProcessServer::start();
    let document = document(&server);
    let integration = {
        let admin = server.admin_token();
        server.create_user(&admin, "doc-integration", "integration-pass", "integration");
        server.login("doc-integration", "integration-pass")
    };
    for (method, path) in ROUTES {
        let operation = &document["paths"][path][method.to_lowercase()];
        let secured = operation["security"]
            .as_array()
            .is_some_and(|s| !s.is_empty());
        if !secured {
            continue;
        }
        let concrete = path
            .replace("{runtime_id}", "0000000000000000")
            .replace("{robot_id}", "0000000000000000")
            .replace("{execution_id}", "0000000000000000")
            .replace("{id}", "0000000000000000");
        let reply = server.req(method, &concrete).send();
        assert_eq!(reply.status, 401, "{method} {path} without a token");
        assert!(
            operation["responses"]["401"].is_object(),
            "{method} {path} answers 401 without documenting it"
        );
        if path.starts_with("/api/admin/") {
            let reply = server.req(method, &concrete).auth(&integration).send();
            assert_eq!(reply.status, 403, "{method} {path} for a non-admin");
            assert!(
                operation["responses"]["403"].is_object(),
                "{method} {path} answers 403 without documenting it"
            );
        }
    }
}

#[test]
fn the_constraints_the_document_states_are_the_ones_the_server_enforces() {
    let server = InProcessServer::start();
    let document = document(&server);
    let admin = server.admin_token();

    let mut names = edges(200);
    names.extend(["   ".into(), format!(" {} ", "x".repeat(199))]);
    agree(
        property(&document, "NewRuntimeBody", "name"),
        "a runtime name",
        &names,
        |name| {
            let reply = server
                .req("POST", "/api/admin/runtimes")
                .auth(&admin)
                .json(&json!({"name": name}))
                .send();
            assert!([201, 400].contains(&reply.status), "{}", reply.text());
            reply.status == 201
        },
    );

    agree(
        property(&document, "NewUserBody", "username"),
        "a username",
        &edges(254),
        |username| {
            let reply = server
                .req("POST", "/api/admin/users")
                .auth(&admin)
                .json(&json!({"username": username, "password": "long-enough", "role": "integration"}))
                .send();
            assert!([201, 400].contains(&reply.status), "{}", reply.text());
            reply.status == 201
        },
    );

    let passwords: Vec<String> = [
        "", "YQ==", "YQ", "YQ=", "YR==", "YWI=", "YWI", "YWJ=", "YWJj", "  YWJj\n", "YW Jj",
        "-_-_", "+/+/", "+_+_", "YWJj====", "!", "ÿ",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    agree(
        property(&document, "LoginBody", "password"),
        "a login password",
        &passwords,
        |password| {
            let reply = server
                .req("POST", "/api/user/auth")
                .json(&json!({"username": "nobody-at-all", "password": password}))
                .send();
            assert!([401, 400].contains(&reply.status), "{}", reply.text());
            reply.status == 401
        },
    );

    let statuses: Vec<String> = [
        "", "RUNNING", "running", "Finished", "DONE", "ERROR ", "canceled",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    agree(
        parameter(&document, "/api/admin/executions", "get", "status"),
        "the status filter",
        &statuses,
        |status| {
            let reply = server
                .req(
                    "GET",
                    &format!(
                        "/api/admin/executions?status={}",
                        status.replace(' ', "%20")
                    ),
                )
                .auth(&admin)
                .send();
            assert!([200, 400].contains(&reply.status), "{}", reply.text());
            reply.status == 200
        },
    );
}

#[test]
fn links_lead_from_what_makes_a_thing_to_what_reads_it() {
    let server = InProcessServer::start();
    let document = document(&server);
    for (path, status, link, operation) in [
        ("/api/admin/users", "201", "DeleteUser", "delete_user"),
        (
            "/api/admin/runtimes",
            "201",
            "ReplaceKey",
            "replace_runtime_key",
        ),
        ("/api/admin/robots", "201", "GetRobot", "get_robot"),
        (
            "/api/integration/v2/run/{runtime_id}/{robot_id}",
            "200",
            "GetResult",
            "result",
        ),
    ] {
        let found = &document["paths"][path]["post"]["responses"][status]["links"][link];
        assert_eq!(found["operationId"], operation, "{path}: {found}");
        let exists = document["paths"].as_object().unwrap().values().any(|item| {
            item.as_object()
                .unwrap()
                .values()
                .any(|op| op["operationId"] == operation)
        });
        assert!(exists, "{operation} is an operation of the document");
    }
}
