//! The OpenAPI document (`/api/openapi.json`): generated from the handlers'
//! annotations, then completed here so that it says what the server does and
//! nothing else. Every route that takes a token documents its 401 (and an admin
//! route its 403), every route that reads a body its 400 and 413; every
//! constraint the server enforces on an input is stated (lengths, patterns,
//! ranges), in what JSON Schema counts (characters); and links lead from what
//! creates a thing to what reads it, so that a client (Schemathesis's stateful
//! phase among them) can follow real ids. `.ci/schemathesis` checks it against a
//! live server.

use std::sync::OnceLock;

use serde_json::{json, Value};
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::response::Response;
use utoipa::openapi::schema::{Object, Schema};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Components, OpenApi, RefOr};
use utoipa::Modify;

use super::{
    admin, api_keys, audit, auth, credentials, events, flows, integration, metrics, runtime,
    schedules, webhooks,
};
use crate::service::MAX_NAME_LEN;

/// A character that is neither a control character (`char::is_control`) nor
/// white space (`char::is_whitespace`, which `trim` removes).
const VISIBLE: &str = r"[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]";
/// A character that is not a control character.
const NOT_CONTROL: &str = r"[^\x00-\x1f\x7f-\x9f]";

/// A username: no control characters, no white space at either end.
pub fn username_pattern() -> String {
    format!("^{VISIBLE}(?:{NOT_CONTROL}*{VISIBLE})?$")
}

/// A runtime or organization name: no control characters, not all white space.
pub fn name_pattern() -> String {
    format!("^{NOT_CONTROL}*{VISIBLE}{NOT_CONTROL}*$")
}

/// What the login routes decode as a password: base64, standard or URL-safe
/// alphabet, padded or not, canonical (the unused bits of the last character
/// zero), with white space around it.
pub fn base64_pattern() -> String {
    let space = r"[\t-\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*";
    let alphabet = |extra: &str| {
        let any = format!("[A-Za-z0-9{extra}]");
        format!("(?:{any}{{4}})*(?:{any}{{2}}[AEIMQUYcgkosw048](?:=)?|{any}[AQgw](?:==)?)?")
    };
    format!(
        "^{space}(?:{}|{}){space}$",
        alphabet(r"+/"),
        alphabet(r"\-_")
    )
}

/// A case-insensitive pattern of the execution statuses the filter takes.
fn status_pattern() -> String {
    let alternatives: Vec<String> = regente_core::ExecutionStatus::ALL
        .iter()
        .map(|status| {
            status
                .as_str()
                .chars()
                .map(|c| format!("[{}{}]", c.to_ascii_uppercase(), c.to_ascii_lowercase()))
                .collect()
        })
        .collect();
    format!("^(?:{})$", alternatives.join("|"))
}

#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "Regente", description = "The RoboEasy Orchestrator Integration API and Regente's admin API."),
    paths(
        auth::login_v1, auth::login_v2,
        integration::run_v1, integration::run_v1_defaults, integration::run_v2,
        integration::result, integration::cancel, events::events,
        admin::create_user, admin::list_users, admin::delete_user, admin::change_user,
        admin::create_runtime, admin::list_runtimes, admin::rename_runtime, admin::delete_runtime,
        admin::replace_runtime_key,
        admin::upload_robot, admin::list_robots, admin::get_robot,
        admin::list_executions, admin::get_execution,
        admin::create_organization, audit::list_audit,
        credentials::create_credential, credentials::list_credentials, credentials::get_credential,
        credentials::replace_credential, credentials::delete_credential,
        api_keys::create_api_key, api_keys::list_api_keys, api_keys::get_api_key,
        api_keys::revoke_api_key,
        webhooks::create_webhook, webhooks::list_webhooks, webhooks::get_webhook,
        webhooks::update_webhook, webhooks::delete_webhook, webhooks::rotate_webhook_secret,
        webhooks::list_webhook_deliveries, webhooks::get_webhook_delivery,
        webhooks::replay_webhook_delivery,
        flows::save_flow, flows::list_flows, flows::get_flow, flows::list_flow_runs,
        flows::run_flow, flows::get_run, flows::cancel_run, flows::retry_run,
        schedules::create_schedule, schedules::list_schedules, schedules::get_schedule,
        schedules::update_schedule, schedules::delete_schedule, schedules::trigger_schedule,
        schedules::backfill_schedule,
        runtime::connect, runtime::package,
        super::healthz, super::openapi, metrics::exposition,
    ),
    modifiers(&SecuritySchemes, &Completed)
)]
pub struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "A user's token from the login, or an organisation API key (`rgk_...`)",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "runtime_key",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

struct Completed;

/// Every operation of a path, whatever its method.
fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.post,
        &mut item.put,
        &mut item.patch,
        &mut item.delete,
        &mut item.head,
        &mut item.options,
        &mut item.trace,
    ]
    .into_iter()
    .flatten()
}

impl Modify for Completed {
    fn modify(&self, openapi: &mut OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            for operation in operations(item) {
                document_refusals(operation);
            }
        }
        constrain_parameters(openapi);
        if let Some(components) = openapi.components.as_mut() {
            constrain_bodies(components);
        }
    }
}

fn error_response(description: &str) -> RefOr<Response> {
    let mut response = Response::new(description);
    response.content.insert(
        "application/json".into(),
        utoipa::openapi::content::Content::new(Some(RefOr::Ref(
            utoipa::openapi::Ref::from_schema_name("ErrorBody"),
        ))),
    );
    RefOr::T(response)
}

/// The refusals every operation of its kind can answer.
fn document_refusals(operation: &mut Operation) {
    let schemes: Vec<String> = operation
        .security
        .iter()
        .flatten()
        .flat_map(|requirement| {
            serde_json::to_value(requirement)
                .ok()
                .and_then(|v| v.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>()))
                .unwrap_or_default()
        })
        .collect();
    let admin = operation.tags.iter().flatten().any(|tag| tag == "admin");
    let mut add = |status: &str, description: &str| {
        operation
            .responses
            .responses
            .entry(status.to_owned())
            .or_insert_with(|| error_response(description));
    };
    if schemes.iter().any(|s| s == "bearer") {
        add("401", "No token, or a bad or expired one");
    }
    if schemes.iter().any(|s| s == "runtime_key") {
        add("401", "No runtime key, or a bad one");
    }
    if admin {
        add("403", "The caller is not an admin");
    }
    if operation.request_body.is_some() {
        add("400", "A body that is not what this route takes");
        add("413", "A body larger than the limit");
    }
    let takes_query_or_header = operation.parameters.iter().flatten().any(|p| {
        matches!(
            p.parameter_in,
            utoipa::openapi::path::ParameterIn::Query | utoipa::openapi::path::ParameterIn::Header
        )
    });
    if takes_query_or_header {
        add(
            "400",
            "A query parameter or header that is not what this route takes",
        );
    }
}

/// The property `name` of the component schema `component`.
fn property<'a>(
    components: &'a mut Components,
    component: &str,
    name: &str,
) -> Option<&'a mut Object> {
    let Some(RefOr::T(Schema::Object(object))) = components.schemas.get_mut(component) else {
        return None;
    };
    match object.properties.get_mut(name) {
        Some(RefOr::T(Schema::Object(property))) => Some(property),
        _ => None,
    }
}

fn text(object: &mut Object, min: usize, max: usize, pattern: Option<String>) {
    object.min_length = Some(min);
    object.max_length = Some(max);
    object.pattern = pattern;
}

fn constrain_bodies(components: &mut Components) {
    use crate::service::users::MAX_USERNAME_LEN;
    let (min_password, max_password) = crate::service::auth::PASSWORD_LEN;
    let username = |c: &mut Components, component: &str, field: &str| {
        if let Some(o) = property(c, component, field) {
            text(o, 1, MAX_USERNAME_LEN, Some(username_pattern()));
        }
    };
    let password = |c: &mut Components, component: &str, field: &str| {
        if let Some(o) = property(c, component, field) {
            text(o, min_password, max_password, None);
        }
    };
    let name = |c: &mut Components, component: &str, field: &str| {
        if let Some(o) = property(c, component, field) {
            text(o, 1, MAX_NAME_LEN, Some(name_pattern()));
        }
    };
    username(components, "NewUserBody", "username");
    password(components, "NewUserBody", "password");
    if let Some(role) = property(components, "NewUserBody", "role") {
        role.enum_values = Some(vec![json!("admin"), json!("integration")]);
    }
    name(components, "NewRuntimeBody", "name");
    name(components, "RuntimeChangeBody", "name");
    if let Some(role) = property(components, "UserChangeBody", "role") {
        role.enum_values = Some(vec![json!("admin"), json!("integration")]);
    }
    if let Some(slots) = property(components, "NewRuntimeBody", "slots") {
        slots.minimum = Some(1.into());
        slots.maximum = Some((crate::service::runtimes::MAX_SLOTS as usize).into());
    }
    name(components, "NewOrganizationBody", "name");
    if let Some(o) = property(components, "NewApiKeyBody", "name") {
        text(
            o,
            1,
            crate::service::api_keys::MAX_NAME_LEN,
            Some(username_pattern()),
        );
    }
    if let Some(role) = property(components, "NewApiKeyBody", "role") {
        role.enum_values = Some(vec![json!("admin"), json!("integration")]);
    }
    username(components, "NewOrganizationBody", "admin_username");
    password(components, "NewOrganizationBody", "admin_password");
    if let Some(password) = property(components, "LoginBody", "password") {
        password.pattern = Some(base64_pattern());
    }
}

fn constrain_parameters(openapi: &mut OpenApi) {
    for (path, item) in openapi.paths.paths.iter_mut() {
        for operation in operations(item) {
            for parameter in operation.parameters.iter_mut().flatten() {
                let Some(RefOr::T(Schema::Object(schema))) = parameter.schema.as_mut() else {
                    continue;
                };
                match (path.as_str(), parameter.name.as_str()) {
                    ("/api/admin/executions", "status") => schema.pattern = Some(status_pattern()),
                    ("/api/admin/executions", "robot" | "runtime" | "schedule") => {
                        schema.pattern = Some("^[0-9a-f]{16}$".into())
                    }
                    ("/api/admin/executions", "from" | "to" | "cursor") => {
                        schema.minimum = Some(utoipa::Number::Int(i64::MIN as isize));
                        schema.maximum = Some(utoipa::Number::Int(i64::MAX as isize));
                    }
                    ("/api/admin/executions", "limit") => {
                        schema.minimum = Some(1.into());
                        schema.maximum = Some((admin::MAX_PAGE as usize).into());
                    }
                    ("/api/admin/audit", "actor" | "action" | "object_type" | "object_id") => {
                        text(
                            schema,
                            1,
                            audit::MAX_FILTER_CHARS,
                            Some("^[^\\x00]+$".into()),
                        );
                    }
                    ("/api/admin/audit", "after") => {
                        schema.minimum = Some(1.into());
                        schema.maximum = Some(utoipa::Number::Int(i64::MAX as isize));
                    }
                    ("/api/admin/audit", "limit") => {
                        schema.minimum = Some(1.into());
                        schema.maximum = Some((crate::service::audit::MAX_LIMIT as usize).into());
                    }
                    (_, "Idempotency-Key") => {
                        text(
                            schema,
                            1,
                            crate::service::runs::MAX_IDEMPOTENCY_KEY_LEN,
                            Some("^[!-~]+$".into()),
                        );
                    }
                    _ => {}
                }
            }
        }
    }
}

/// The document as served: the generated one, with the links added (utoipa
/// writes a link's `operationId` in snake case, so they are added as JSON) and
/// the package upload's body as the bytes it is.
pub fn json() -> &'static Value {
    static DOCUMENT: OnceLock<Value> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        use utoipa::OpenApi as _;
        let mut document = serde_json::to_value(ApiDoc::openapi()).expect("the document");
        add_links(&mut document);
        document["paths"]["/api/admin/robots"]["post"]["requestBody"]["content"]
            ["application/zip"]["schema"] = json!({"type": "string", "format": "binary"});
        // Schedule bodies are read field by field, and a field not of the body is refused.
        document["components"]["schemas"]["ScheduleRequest"]["additionalProperties"] = json!(false);
        // A schedule's times: epoch milliseconds or ISO-8601 with an offset,
        // from 1970 to the end of 9999; null clears them.
        for field in ["start_at", "end_at"] {
            document["components"]["schemas"]["ScheduleRequest"]["properties"][field] = json!({
                "type": ["integer", "string", "null"],
                "minimum": 0,
                "maximum": 253_402_300_799_999_i64,
                "format": "date-time",
                "pattern": "^(?:19[7-9][0-9]|[2-9][0-9]{3})-",
            });
        }
        // Last-Event-ID is a log sequence number, as the stream's ids are.
        let events =
            &mut document["paths"]["/api/integration/v2/executions/{execution_id}/events"]["get"];
        if let Some(parameters) = events["parameters"].as_array_mut() {
            for parameter in parameters
                .iter_mut()
                .filter(|p| p["name"] == "Last-Event-ID")
            {
                parameter["schema"] = json!({"type": "string", "pattern": "^\\s*[0-9]{1,18}\\s*$"});
            }
        }
        // The audit log's time range: epoch milliseconds or ISO-8601 with an
        // offset, like a schedule's times.
        let audit = &mut document["paths"]["/api/admin/audit"]["get"];
        if let Some(parameters) = audit["parameters"].as_array_mut() {
            for parameter in parameters
                .iter_mut()
                .filter(|p| p["name"] == "from" || p["name"] == "to")
            {
                parameter["schema"] = json!({
                    "type": ["integer", "string"],
                    "minimum": 0,
                    "maximum": 253_402_300_799_999_i64,
                    "format": "date-time",
                    "pattern": "^(?:19[7-9][0-9]|[2-9][0-9]{3})-",
                });
            }
        }
        // API key bodies are read field by field, and a field not of the body
        // is refused; the expiry is a time like a schedule's, in the future.
        let new_key = &mut document["components"]["schemas"]["NewApiKeyBody"];
        new_key["additionalProperties"] = json!(false);
        new_key["properties"]["expires_at"] = json!({
            "type": ["integer", "string", "null"],
            "minimum": 0,
            "maximum": 253_402_300_799_999_i64,
            "format": "date-time",
            "pattern": "^(?:19[7-9][0-9]|[2-9][0-9]{3})-",
            "description": "When the key stops working (in the future); null: never",
        });
        // Credential and webhook bodies are read whole or field by field, and a
        // member not of the body is refused.
        for body in [
            "NewCredentialBody",
            "ReplaceCredentialBody",
            "NewWebhookBody",
            "WebhookChangeBody",
        ] {
            document["components"]["schemas"][body]["additionalProperties"] = json!(false);
        }
        document
    })
}

/// Links from the operation that makes a thing to those that take its id.
fn add_links(document: &mut Value) {
    let body_id = |operation: &str, parameter: &str| json!({"operationId": operation, "parameters": {parameter: "$response.body#/id"}});
    let run_link = |operation: &str| {
        json!({"operationId": operation, "parameters": {
            "runtime_id": "$request.path.runtime_id",
            "execution_id": "$response.body#/id",
        }})
    };
    let links = [
        (
            "/api/admin/users",
            "201",
            json!({"DeleteUser": body_id("delete_user", "id")}),
        ),
        (
            "/api/admin/runtimes",
            "201",
            json!({"ReplaceKey": body_id("replace_runtime_key", "id")}),
        ),
        (
            "/api/admin/api-keys",
            "201",
            json!({"GetApiKey": body_id("get_api_key", "id"), "RevokeApiKey": body_id("revoke_api_key", "id")}),
        ),
        (
            "/api/admin/robots",
            "201",
            json!({"GetRobot": body_id("get_robot", "id")}),
        ),
        (
            "/api/integration/v2/run/{runtime_id}/{robot_id}",
            "200",
            json!({
                "GetExecution": body_id("get_execution", "id"),
                "GetResult": run_link("result"),
                "Cancel": run_link("cancel"),
            }),
        ),
    ];
    for (path, status, links) in links {
        let response = &mut document["paths"][path]["post"]["responses"][status];
        if response.is_object() {
            response["links"] = links;
        }
    }
}
