//! Runtimes: their online state and what each runs now (live), creating one
//! (its key shown once, with the command that starts its agent).

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::format;
use super::pages::{render, render_with, Chrome, PageError, PageResult};
use super::session::{AdminViewer, Posted, Viewer};
use crate::service::{self, runtimes, Context};

pub struct RuntimeRow {
    pub id: String,
    pub name: String,
    pub online: bool,
    pub last_seen: String,
    pub slots: u32,
    pub busy: usize,
    pub running: Vec<String>,
}

#[derive(Template)]
#[template(path = "runtimes.html")]
struct RuntimesPage {
    chrome: Chrome,
    rows: Vec<RuntimeRow>,
    error: Option<String>,
    name: String,
}

#[derive(Template)]
#[template(path = "runtime_created.html")]
struct CreatedPage {
    chrome: Chrome,
    id: String,
    name: String,
    key: String,
    command: String,
}

async fn page(
    ctx: &Context,
    viewer: Viewer,
    status: StatusCode,
    error: Option<String>,
    name: String,
) -> PageResult {
    let states = runtimes::states(ctx, viewer.caller())
        .await
        .map_err(viewer.fail())?;
    let mut rows: Vec<RuntimeRow> = states
        .into_iter()
        .map(|state| RuntimeRow {
            id: state.runtime.id,
            name: state.runtime.name,
            online: state.online,
            last_seen: format::maybe_time_html(state.runtime.last_seen),
            slots: state.runtime.slots,
            busy: state.running.len(),
            running: state.running.into_iter().map(|e| e.id).collect(),
        })
        .collect();
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(render_with(
        status,
        &RuntimesPage {
            chrome: viewer.chrome,
            rows,
            error,
            name,
        },
    ))
}

pub async fn list(AdminViewer(viewer): AdminViewer, State(ctx): State<Arc<Context>>) -> PageResult {
    page(&ctx, viewer, StatusCode::OK, None, String::new()).await
}

#[derive(Deserialize)]
pub struct NewRuntimeForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    slots: String,
}

/// The server's address as the browser reached it, for the agent's command.
pub fn base_url(ctx: &Context, headers: &HeaderMap) -> String {
    let host = headers
        .get("x-forwarded-host")
        .or_else(|| headers.get(header::HOST))
        .and_then(|v| v.to_str().ok())
        .unwrap_or("127.0.0.1:8080");
    let scheme = if super::session::over_tls(ctx, headers) {
        "https"
    } else {
        "http"
    };
    format!("{scheme}://{host}")
}

pub async fn create(
    State(ctx): State<Arc<Context>>,
    headers: HeaderMap,
    Posted(viewer, form): Posted<NewRuntimeForm>,
) -> PageResult<Response> {
    if !viewer.is_admin() {
        return Err(PageError::forbidden(Some(viewer.chrome)));
    }
    let slots = match form.slots.trim() {
        "" => None,
        text => match text.parse::<u32>() {
            Ok(slots) => Some(slots),
            Err(_) => {
                let why = format!("slots must be a whole number, got {text:?}");
                return page(&ctx, viewer, StatusCode::BAD_REQUEST, Some(why), form.name).await;
            }
        },
    };
    match runtimes::create(&ctx, viewer.caller(), &form.name, slots).await {
        Ok((runtime, key)) => {
            let command = format!(
                "REGENTE_RUNTIME_KEY={key} regente runtime --server {}",
                base_url(&ctx, &headers)
            );
            Ok(render(&CreatedPage {
                chrome: viewer.chrome,
                id: runtime.id,
                name: runtime.name,
                key,
                command,
            }))
        }
        Err(service::Error::Invalid(why)) => {
            page(&ctx, viewer, StatusCode::BAD_REQUEST, Some(why), form.name).await
        }
        Err(service::Error::Conflict(why)) => {
            page(&ctx, viewer, StatusCode::CONFLICT, Some(why), form.name).await
        }
        Err(e) => Err(PageError::from(e).framed(viewer.chrome)),
    }
}

/// A refused change shown on the page; other errors as their pages.
async fn refused(ctx: &Context, viewer: Viewer, error: service::Error) -> PageResult {
    let status = match &error {
        service::Error::Invalid(_) => StatusCode::BAD_REQUEST,
        service::Error::Conflict(_) => StatusCode::CONFLICT,
        _ => return Err(PageError::from(error).framed(viewer.chrome)),
    };
    page(ctx, viewer, status, Some(error.to_string()), String::new()).await
}

#[derive(Deserialize)]
pub struct RenameForm {
    #[serde(default)]
    name: String,
}

pub async fn rename(
    State(ctx): State<Arc<Context>>,
    Path(id): Path<String>,
    Posted(viewer, form): Posted<RenameForm>,
) -> PageResult {
    if !viewer.is_admin() {
        return Err(PageError::forbidden(Some(viewer.chrome)));
    }
    match runtimes::rename(&ctx, viewer.caller(), &id, &form.name).await {
        Ok(_) => Ok(Redirect::to("/runtimes").into_response()),
        Err(e) => refused(&ctx, viewer, e).await,
    }
}

pub async fn delete(
    State(ctx): State<Arc<Context>>,
    Path(id): Path<String>,
    Posted(viewer, super::session::NoFields {}): Posted<super::session::NoFields>,
) -> PageResult {
    if !viewer.is_admin() {
        return Err(PageError::forbidden(Some(viewer.chrome)));
    }
    match runtimes::delete(&ctx, viewer.caller(), &id).await {
        Ok(()) => Ok(Redirect::to("/runtimes").into_response()),
        Err(e) => refused(&ctx, viewer, e).await,
    }
}
