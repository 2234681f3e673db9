//! Users of the organisation (admins only): create, delete.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::format;
use super::pages::{render_with, Chrome, PageError, PageResult};
use super::session::{AdminViewer, NoFields, Posted, Viewer};
use crate::service::{self, users, Context};

pub struct UserRow {
    pub id: String,
    pub username: String,
    pub role: &'static str,
    pub created: String,
    pub is_me: bool,
}

#[derive(Template)]
#[template(path = "users.html")]
struct UsersPage {
    chrome: Chrome,
    users: Vec<UserRow>,
    error: Option<String>,
    done: Option<String>,
    username: String,
}

async fn page(
    ctx: &Context,
    viewer: Viewer,
    status: StatusCode,
    error: Option<String>,
    done: Option<String>,
    username: String,
) -> PageResult {
    let list = users::list(ctx, viewer.caller())
        .await
        .map_err(viewer.fail())?;
    let mut rows: Vec<UserRow> = list
        .into_iter()
        .map(|user| UserRow {
            is_me: user.id == viewer.caller().user_id,
            id: user.id,
            username: user.username,
            role: user.role.as_str(),
            created: format::time_html(user.created_at),
        })
        .collect();
    rows.sort_by(|a, b| a.username.cmp(&b.username));
    Ok(render_with(
        status,
        &UsersPage {
            chrome: viewer.chrome,
            users: rows,
            error,
            done,
            username,
        },
    ))
}

pub async fn list(AdminViewer(viewer): AdminViewer, State(ctx): State<Arc<Context>>) -> PageResult {
    page(&ctx, viewer, StatusCode::OK, None, None, String::new()).await
}

/// Answers a refused change on the page itself; other errors as error pages.
pub async fn refused(
    ctx: &Context,
    viewer: Viewer,
    error: service::Error,
    username: String,
) -> PageResult {
    let status = match &error {
        service::Error::Invalid(_) => StatusCode::BAD_REQUEST,
        service::Error::Conflict(_) => StatusCode::CONFLICT,
        _ => return Err(PageError::from(error).framed(viewer.chrome)),
    };
    page(ctx, viewer, status, Some(error.to_string()), None, username).await
}

#[derive(Deserialize)]
pub struct NewUserForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    role: String,
}

pub async fn create(
    State(ctx): State<Arc<Context>>,
    Posted(viewer, form): Posted<NewUserForm>,
) -> PageResult {
    if !viewer.is_admin() {
        return Err(PageError::forbidden(Some(viewer.chrome)));
    }
    match users::create(
        &ctx,
        viewer.caller(),
        &form.username,
        &form.password,
        &form.role,
    )
    .await
    {
        Ok(user) => {
            let done = format!("User {} created.", user.username);
            page(
                &ctx,
                viewer,
                StatusCode::CREATED,
                None,
                Some(done),
                String::new(),
            )
            .await
        }
        Err(e) => refused(&ctx, viewer, e, form.username).await,
    }
}

pub async fn delete(
    State(ctx): State<Arc<Context>>,
    Path(id): Path<String>,
    Posted(viewer, NoFields {}): Posted<NoFields>,
) -> PageResult<Response> {
    if !viewer.is_admin() {
        return Err(PageError::forbidden(Some(viewer.chrome)));
    }
    match users::delete(&ctx, viewer.caller(), &id).await {
        Ok(()) => Ok(Redirect::to("/users").into_response()),
        Err(e) => refused(&ctx, viewer, e, String::new()).await,
    }
}

#[derive(Deserialize)]
pub struct RoleForm {
    #[serde(default)]
    role: String,
}

pub async fn set_role(
    State(ctx): State<Arc<Context>>,
    Path(id): Path<String>,
    Posted(viewer, form): Posted<RoleForm>,
) -> PageResult {
    if !viewer.is_admin() {
        return Err(PageError::forbidden(Some(viewer.chrome)));
    }
    match users::set_role(&ctx, viewer.caller(), &id, &form.role).await {
        Ok(user) => {
            let done = format!("{} is now {}.", user.username, user.role.as_str());
            page(
                &ctx,
                viewer,
                StatusCode::OK,
                None,
                Some(done),
                String::new(),
            )
            .await
        }
        Err(e) => refused(&ctx, viewer, e, String::new()).await,
    }
}
