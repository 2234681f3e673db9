//! The organisation's API keys (admins only): listed with their prefix, role,
//! uses and state, revoked by a CSRF-checked form, created by another that
//! shows the new key this once.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use regente_core::schedule::plan::parse_instant;
use serde::Deserialize;

use super::executions::People;
use super::format;
use super::pages::{render, render_with, Chrome, PageError, PageResult};
use super::runtimes::base_url;
use super::session::{AdminViewer, NoFields, Posted, Viewer};
use crate::service::{self, api_keys, Context};

pub struct KeyRow {
    pub id: String,
    pub name: String,
    pub role: String,
    pub prefix: String,
    pub created: String,
    pub created_by: String,
    pub last_used: String,
    pub expires: String,
    /// `active`, `expired` or `revoked`.
    pub state: &'static str,
}

#[derive(Template)]
#[template(path = "api_keys.html")]
struct KeysPage {
    chrome: Chrome,
    rows: Vec<KeyRow>,
    error: Option<String>,
    form: NewKeyForm,
}

#[derive(Template)]
#[template(path = "api_key_created.html")]
struct CreatedPage {
    chrome: Chrome,
    id: String,
    name: String,
    role: String,
    key: String,
    example: String,
}

#[derive(Deserialize, Default)]
pub struct NewKeyForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    role: String,
    /// ISO-8601 with an offset; empty: never.
    #[serde(default)]
    expires: String,
}

async fn page(
    ctx: &Context,
    viewer: Viewer,
    status: StatusCode,
    error: Option<String>,
    form: NewKeyForm,
) -> PageResult {
    let keys = api_keys::list(ctx, viewer.caller())
        .await
        .map_err(viewer.fail())?;
    let now = ctx.clock.now();
    let mut people = People::new(ctx, &viewer);
    let mut rows = Vec::new();
    for key in keys {
        let state = if key.revoked_at.is_some() {
            "revoked"
        } else if key.expires_at.is_some_and(|at| at <= now) {
            "expired"
        } else {
            "active"
        };
        rows.push(KeyRow {
            created_by: people.name(&key.created_by).await.map_err(viewer.fail())?,
            id: key.id,
            name: key.name,
            role: key.role.as_str().to_owned(),
            prefix: key.prefix,
            created: format::time_html(key.created_at),
            last_used: format::maybe_time_html(key.last_used_at),
            expires: key
                .expires_at
                .map_or_else(|| "never".to_owned(), format::time_html),
            state,
        });
    }
    Ok(render_with(
        status,
        &KeysPage {
            chrome: viewer.chrome,
            rows,
            error,
            form,
        },
    ))
}

pub async fn list(AdminViewer(viewer): AdminViewer, State(ctx): State<Arc<Context>>) -> PageResult {
    page(&ctx, viewer, StatusCode::OK, None, NewKeyForm::default()).await
}

pub async fn create(
    State(ctx): State<Arc<Context>>,
    headers: HeaderMap,
    Posted(viewer, form): Posted<NewKeyForm>,
) -> PageResult<Response> {
    if !viewer.is_admin() {
        return Err(PageError::forbidden(Some(viewer.chrome)));
    }
    let expires_at = match form.expires.trim() {
        "" => None,
        text => match parse_instant("expires", text) {
            Ok(at) => Some(at),
            Err(why) => {
                let why = why.to_string();
                return page(&ctx, viewer, StatusCode::BAD_REQUEST, Some(why), form).await;
            }
        },
    };
    match api_keys::create(&ctx, viewer.caller(), &form.name, &form.role, expires_at).await {
        Ok(created) => {
            let example = format!(
                "curl -H \"Authorization: Bearer {}\" {}/api/admin/api-keys",
                created.key,
                base_url(&ctx, &headers)
            );
            Ok(render(&CreatedPage {
                chrome: viewer.chrome,
                id: created.api_key.id,
                name: created.api_key.name,
                role: created.api_key.role.as_str().to_owned(),
                key: created.key,
                example,
            }))
        }
        Err(error @ (service::Error::Invalid(_) | service::Error::Conflict(_))) => {
            let status = match error {
                service::Error::Invalid(_) => StatusCode::BAD_REQUEST,
                _ => StatusCode::CONFLICT,
            };
            page(&ctx, viewer, status, Some(error.to_string()), form).await
        }
        Err(e) => Err(PageError::from(e).framed(viewer.chrome)),
    }
}

pub async fn revoke(
    State(ctx): State<Arc<Context>>,
    Path(id): Path<String>,
    Posted(viewer, NoFields {}): Posted<NoFields>,
) -> PageResult {
    if !viewer.is_admin() {
        return Err(PageError::forbidden(Some(viewer.chrome)));
    }
    match api_keys::revoke(&ctx, viewer.caller(), &id).await {
        Ok(_) => Ok(Redirect::to("/api-keys").into_response()),
        Err(e) => Err(PageError::from(e).framed(viewer.chrome)),
    }
}
