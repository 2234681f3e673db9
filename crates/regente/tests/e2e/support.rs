//! What the end-to-end tests use: the test kit (`regente-testkit`: the real
//! binary as processes, the in-process server, the HTTP client, robots,
//! polling), and what only these tests need: the API's route list and tokens
//! forged for the auth tests.

use base64::Engine as _;
use serde_json::{json, Value};

pub use regente_testkit::*;

/// Every route of the API, as `(method, path template)`; the templates use the
/// names of the OpenAPI document.
pub const ROUTES: &[(&str, &str)] = &[
    ("POST", "/api/user/auth"),
    ("POST", "/api/user/v2/auth"),
    ("POST", "/api/integration/v1/run/{runtime_id}/{robot_id}"),
    ("GET", "/api/integration/v1/run/{runtime_id}/{robot_id}"),
    ("POST", "/api/integration/v2/run/{runtime_id}/{robot_id}"),
    (
        "GET",
        "/api/integration/v1/result/{runtime_id}/{execution_id}",
    ),
    (
        "DELETE",
        "/api/integration/v1/delete/{runtime_id}/{execution_id}",
    ),
    ("GET", "/api/admin/users"),
    ("POST", "/api/admin/users"),
    // Each PATCH before its DELETE: the fuzz's warm-up changes, then deletes.
    ("PATCH", "/api/admin/users/{id}"),
    ("DELETE", "/api/admin/users/{id}"),
    ("GET", "/api/admin/runtimes"),
    ("POST", "/api/admin/runtimes"),
    ("PATCH", "/api/admin/runtimes/{id}"),
    ("POST", "/api/admin/runtimes/{id}/key"),
    ("DELETE", "/api/admin/runtimes/{id}"),
    ("GET", "/api/admin/robots"),
    ("POST", "/api/admin/robots"),
    ("GET", "/api/admin/robots/{id}"),
    ("GET", "/api/admin/executions"),
    ("GET", "/api/admin/executions/{id}"),
    ("GET", "/api/admin/audit"),
    ("POST", "/api/admin/organizations"),
    ("GET", "/api/admin/credentials"),
    ("POST", "/api/admin/credentials"),
    ("GET", "/api/admin/credentials/{id}"),
    ("PUT", "/api/admin/credentials/{id}"),
    ("DELETE", "/api/admin/credentials/{id}"),
    ("GET", "/api/admin/api-keys"),
    ("POST", "/api/admin/api-keys"),
    ("GET", "/api/admin/api-keys/{id}"),
    ("DELETE", "/api/admin/api-keys/{id}"),
    ("POST", "/api/admin/flows"),
    ("GET", "/api/admin/flows"),
    ("GET", "/api/admin/flows/{id}"),
    ("GET", "/api/admin/flows/{id}/runs"),
    ("POST", "/api/integration/v2/flows/{flow_id}/run"),
    ("GET", "/api/integration/v2/flows/runs/{id}"),
    ("DELETE", "/api/integration/v2/flows/runs/{id}"),
    ("POST", "/api/integration/v2/flows/runs/{id}/retry"),
    ("GET", "/api/admin/webhooks"),
    ("POST", "/api/admin/webhooks"),
    ("GET", "/api/admin/webhooks/{id}"),
    ("PATCH", "/api/admin/webhooks/{id}"),
    ("POST", "/api/admin/webhooks/{id}/rotate-secret"),
    ("GET", "/api/admin/webhooks/{id}/deliveries"),
    ("GET", "/api/admin/webhooks/{id}/deliveries/{delivery_id}"),
    (
        "POST",
        "/api/admin/webhooks/{id}/deliveries/{delivery_id}/replay",
    ),
    // After the others: the warm-up deletes the webhook they use.
    ("DELETE", "/api/admin/webhooks/{id}"),
    ("GET", "/api/admin/schedules"),
    ("POST", "/api/admin/schedules"),
    ("GET", "/api/admin/schedules/{id}"),
    ("PATCH", "/api/admin/schedules/{id}"),
    ("POST", "/api/admin/schedules/{id}/trigger"),
    ("POST", "/api/admin/schedules/{id}/backfill"),
    // After the others: the warm-up deletes the schedule they use.
    ("DELETE", "/api/admin/schedules/{id}"),
];

/// The routes that answer a stream held open until an execution ends: the
/// fuzz leaves them out (its executions never end); the tests in
/// `waiting.rs` take their bad inputs.
pub const STREAM_ROUTES: &[(&str, &str)] = &[(
    "GET",
    "/api/integration/v2/executions/{execution_id}/events",
)];

/// The routes outside the Integration and admin APIs: health, the OpenAPI
/// document itself and the runtime agents' routes (authenticated by runtime key).
pub const OTHER_ROUTES: &[(&str, &str)] = &[
    ("GET", "/healthz"),
    ("GET", "/metrics"),
    ("GET", "/api/openapi.json"),
    ("GET", "/api/runtime/connect"),
    ("GET", "/api/runtime/packages/{robot_id}/{version}"),
];

/// Queues a run with the robot's defaults and answers its result once it
/// has ended FINISHED.
pub fn run_to_the_end(api: &Api, token: &str, runtime: &str, robot: &str) -> Value {
    let id = api.queue(token, runtime, robot, None);
    let timeout = std::time::Duration::from_secs(60);
    let done = wait_for_status(api, token, runtime, &id, ENDED, timeout);
    assert_eq!(done["status"], "FINISHED", "{done}");
    done
}

/// An HS-signed token with the given claims, as `Bearer <jwt>`.
pub fn forge_token(claims: &Value, secret: &str, algorithm: jsonwebtoken::Algorithm) -> String {
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(algorithm),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("a signed token");
    format!("Bearer {token}")
}

/// An unsigned `alg: none` token with the given claims.
pub fn alg_none_token(claims: &Value) -> String {
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = engine.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = engine.encode(claims.to_string());
    format!("Bearer {header}.{payload}.")
}

/// The claims the server's own tokens carry, for a user and expiry.
pub fn claims(username: &str, user_id: &str, exp: i64) -> Value {
    json!({
        "sub": username,
        "uid": user_id,
        "iss": "ROLE_ADMIN",
        "iat": now_millis() / 1000,
        "exp": exp,
    })
}
