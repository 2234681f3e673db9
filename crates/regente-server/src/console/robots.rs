//! Robots: their versions, uploading a package, and running one from a form
//! made from its declared variables.

use std::collections::HashMap;
use std::sync::Arc;

use askama::Template;
use axum::extract::{Multipart, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use regente_core::{RequestVariable, RobotManifest, VariableType};
use serde_json::Value;

use super::format;
use super::pages::{render_with, Chrome, PageError, PageResult};
use super::session::{AdminViewer, Posted, Viewer};
use crate::service::{self, robots, runs, runtimes, sessions, Context};

pub struct RobotRow {
    pub id: String,
    pub name: String,
    pub latest: u32,
    pub updated: String,
}

#[derive(Template)]
#[template(path = "robots.html")]
struct RobotsPage {
    chrome: Chrome,
    robots: Vec<RobotRow>,
    error: Option<String>,
    uploaded: Option<String>,
}

async fn robots_page(
    ctx: &Context,
    viewer: Viewer,
    status: StatusCode,
    error: Option<String>,
    uploaded: Option<String>,
) -> PageResult {
    let list = robots::list(ctx, viewer.caller())
        .await
        .map_err(viewer.fail())?;
    let mut robots: Vec<RobotRow> = list
        .into_iter()
        .filter_map(|robot| {
            let latest = robot.versions.last()?;
            Some(RobotRow {
                latest: latest.version,
                updated: format::time_html(latest.created_at),
                id: robot.id,
                name: robot.name,
            })
        })
        .collect();
    robots.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(render_with(
        status,
        &RobotsPage {
            chrome: viewer.chrome,
            robots,
            error,
            uploaded,
        },
    ))
}

pub async fn list(AdminViewer(viewer): AdminViewer, State(ctx): State<Arc<Context>>) -> PageResult {
    robots_page(&ctx, viewer, StatusCode::OK, None, None).await
}

/// A package from the upload form (file input or dropped file), with the
/// session's CSRF token from the same form.
pub async fn upload(
    AdminViewer(viewer): AdminViewer,
    State(ctx): State<Arc<Context>>,
    mut multipart: Multipart,
) -> PageResult {
    let mut csrf = String::new();
    let mut package = None;
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(e) => {
                let why = format!("the upload could not be read: {e}");
                return robots_page(&ctx, viewer, e.status(), Some(why), None).await;
            }
        };
        let name = field.name().unwrap_or_default().to_owned();
        let bytes = match field.bytes().await {
            Ok(bytes) => bytes,
            Err(e) => {
                let why = format!("the upload could not be read: {e}");
                return robots_page(&ctx, viewer, e.status(), Some(why), None).await;
            }
        };
        match name.as_str() {
            "csrf" => csrf = String::from_utf8_lossy(&bytes).into_owned(),
            "package" if !bytes.is_empty() => package = Some(bytes.to_vec()),
            _ => {}
        }
    }
    sessions::check_csrf(&ctx, &viewer.session, &csrf).map_err(viewer.fail())?;
    let Some(package) = package else {
        let why = "choose a robot package (a .zip with robot.toml) first".to_owned();
        return robots_page(&ctx, viewer, StatusCode::BAD_REQUEST, Some(why), None).await;
    };
    match robots::upload(&ctx, viewer.caller(), package).await {
        Ok(uploaded) => {
            let done = format!("{} version {} uploaded.", uploaded.name, uploaded.version);
            robots_page(&ctx, viewer, StatusCode::CREATED, None, Some(done)).await
        }
        Err(
            e @ (service::Error::Invalid(_)
            | service::Error::TooLarge(_)
            | service::Error::Conflict(_)),
        ) => {
            let status = match e {
                service::Error::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
                service::Error::Conflict(_) => StatusCode::CONFLICT,
                _ => StatusCode::BAD_REQUEST,
            };
            robots_page(&ctx, viewer, status, Some(e.to_string()), None).await
        }
        Err(e) => Err(PageError::from(e).framed(viewer.chrome)),
    }
}

pub struct VersionRow {
    pub version: u32,
    pub sha256: String,
    pub size: u64,
    pub uploaded: String,
    pub command: String,
    pub variables: Vec<(String, &'static str, String)>,
}

/// One input of the run form.
pub struct Input {
    pub name: String,
    pub kind: &'static str,
    pub value: String,
}

#[derive(Template)]
#[template(path = "robot.html")]
struct RobotPage {
    chrome: Chrome,
    id: String,
    name: String,
    versions: Vec<VersionRow>,
    inputs: Vec<Input>,
    runtimes: Vec<(String, String, bool)>,
    error: Option<String>,
}

/// A value as the form shows it: text as it is, the rest as JSON.
fn form_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

async fn robot_page(
    ctx: &Context,
    viewer: Viewer,
    id: &str,
    status: StatusCode,
    error: Option<String>,
    entered: Option<&HashMap<String, String>>,
) -> PageResult {
    let framed = viewer.fail();
    let robot = robots::get(ctx, viewer.caller(), id)
        .await
        .map_err(&framed)?;
    let (_, manifest) = robots::latest_version(ctx, viewer.caller(), id)
        .await
        .map_err(&framed)?;
    let states = runtimes::states(ctx, viewer.caller())
        .await
        .map_err(&framed)?;
    let mut runtimes: Vec<(String, String, bool)> = states
        .into_iter()
        .map(|s| (s.runtime.id, s.runtime.name, s.online))
        .collect();
    runtimes.sort_by(|a, b| (!a.2, &a.1).cmp(&(!b.2, &b.1)));
    let versions = robot
        .versions
        .iter()
        .rev()
        .map(|version| {
            let parsed = RobotManifest::parse(&version.manifest).ok();
            VersionRow {
                version: version.version,
                sha256: version.sha256.clone(),
                size: version.size,
                uploaded: format::time_html(version.created_at),
                command: parsed
                    .as_ref()
                    .map(|m| m.command.join(" "))
                    .unwrap_or_default(),
                variables: parsed
                    .map(|m| {
                        m.variables
                            .iter()
                            .map(|v| {
                                let default = v.default.as_ref().map(|d| form_text(d.as_json()));
                                (
                                    v.name.to_string(),
                                    v.kind.as_str(),
                                    default.unwrap_or_default(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            }
        })
        .collect();
    let inputs = manifest
        .variables
        .iter()
        .map(|declared| {
            let name = declared.name.to_string();
            let default = declared.default.as_ref().map(|d| form_text(d.as_json()));
            let value = entered
                .and_then(|entered| entered.get(&format!("var.{name}")).cloned())
                .or(default)
                .unwrap_or_default();
            Input {
                name,
                kind: declared.kind.as_str(),
                value,
            }
        })
        .collect();
    Ok(render_with(
        status,
        &RobotPage {
            chrome: viewer.chrome,
            id: robot.id,
            name: robot.name,
            versions,
            inputs,
            runtimes,
            error,
        },
    ))
}

pub async fn detail(
    AdminViewer(viewer): AdminViewer,
    State(ctx): State<Arc<Context>>,
    Path(id): Path<String>,
) -> PageResult {
    robot_page(&ctx, viewer, &id, StatusCode::OK, None, None).await
}

/// Runs the robot's newest version with the form's values, each typed by the
/// robot's declaration.
pub async fn run(
    State(ctx): State<Arc<Context>>,
    Path(id): Path<String>,
    Posted(viewer, form): Posted<HashMap<String, String>>,
) -> PageResult<Response> {
    if !viewer.is_admin() {
        return Err(PageError::forbidden(Some(viewer.chrome)));
    }
    let framed = viewer.fail();
    let (_, manifest) = robots::latest_version(&ctx, viewer.caller(), &id)
        .await
        .map_err(&framed)?;
    let mut variables = Vec::new();
    for declared in &manifest.variables {
        let name = declared.name.to_string();
        let text = form
            .get(&format!("var.{name}"))
            .cloned()
            .unwrap_or_default();
        // An empty field of a typed variable leaves the robot's default.
        if text.trim().is_empty() && declared.kind != VariableType::Text {
            continue;
        }
        variables.push(RequestVariable {
            name,
            kind: None,
            value: Value::String(text),
        });
    }
    let runtime_id = form.get("runtime").cloned().unwrap_or_default();
    let request = runs::RunRequest {
        runtime_id: &runtime_id,
        robot_id: &id,
        variables,
        idempotency_key: None,
    };
    match runs::enqueue(&ctx, viewer.caller(), request).await {
        Ok(execution_id) => {
            Ok(Redirect::to(&format!("/executions/{execution_id}")).into_response())
        }
        // A wrong value or runtime: the form again, with what was entered.
        Err(service::Error::Invalid(why)) | Err(service::Error::NotFound(why))
            if !why.starts_with("robot") =>
        {
            let status = StatusCode::BAD_REQUEST;
            robot_page(&ctx, viewer, &id, status, Some(why), Some(&form)).await
        }
        Err(e) => Err(framed(e)),
    }
}
