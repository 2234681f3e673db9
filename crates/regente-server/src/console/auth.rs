//! Signing in and out.

use std::net::SocketAddr;
use std::sync::Arc;

use askama::Template;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;

use super::pages::{render_with, Chrome};
use super::session::{self, cookie, NoFields, Posted, LOGIN_COOKIE, SESSION_COOKIE};
use crate::service::{self, sessions, Context};

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    chrome: Chrome,
    token: String,
    next: String,
    username: String,
    error: Option<String>,
    signed_out: bool,
}

#[derive(Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
    signed_out: Option<String>,
}

/// Only a path on this server: never `//host` or a scheme.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(path) if path.starts_with('/') && !path.starts_with("//") && !path.contains('\\') => {
            path.to_owned()
        }
        _ => "/executions".to_owned(),
    }
}

/// The sign-in form, with a fresh value for its cookie and token.
fn login_form(
    ctx: &Context,
    headers: &HeaderMap,
    status: StatusCode,
    next: String,
    username: String,
    error: Option<String>,
    signed_out: bool,
) -> Response {
    let nonce = sessions::login_nonce();
    let page = LoginPage {
        chrome: Chrome::anonymous(),
        token: ctx.auth.sessions.login_token(&nonce),
        next,
        username,
        error,
        signed_out,
    };
    let mut response = render_with(status, &page);
    let cookie = session::set_cookie(ctx, headers, LOGIN_COOKIE, &nonce, 3600);
    if let Ok(value) = cookie.parse() {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

pub async fn login_page(
    State(ctx): State<Arc<Context>>,
    headers: HeaderMap,
    Query(query): Query<LoginQuery>,
) -> Response {
    let next = safe_next(query.next.as_deref());
    if let Some(value) = cookie(&headers, SESSION_COOKIE) {
        if sessions::resume(&ctx, value).await.is_ok() {
            return Redirect::to(&next).into_response();
        }
    }
    let signed_out = query.signed_out.is_some();
    login_form(
        &ctx,
        &headers,
        StatusCode::OK,
        next,
        String::new(),
        None,
        signed_out,
    )
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    csrf: String,
    next: Option<String>,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
}

pub async fn login(
    State(ctx): State<Arc<Context>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let next = safe_next(form.next.as_deref());
    let refuse = |status: StatusCode, why: String| {
        login_form(
            &ctx,
            &headers,
            status,
            next.clone(),
            form.username.clone(),
            Some(why),
            false,
        )
    };
    if let Err(e) = sessions::check_login_token(&ctx, cookie(&headers, LOGIN_COOKIE), &form.csrf) {
        return refuse(StatusCode::FORBIDDEN, e.to_string());
    }
    match sessions::sign_in(&ctx, &form.username, &form.password, client.ip()).await {
        Ok((value, _)) => {
            let mut response = Redirect::to(&next).into_response();
            let set = [
                session::session_cookie(&ctx, &headers, &value),
                session::set_cookie(&ctx, &headers, LOGIN_COOKIE, "", 0),
            ];
            for cookie in set {
                if let Ok(value) = cookie.parse() {
                    response.headers_mut().append(header::SET_COOKIE, value);
                }
            }
            response
        }
        Err(service::Error::Unauthorized(_)) => refuse(
            StatusCode::UNAUTHORIZED,
            "Wrong username or password.".into(),
        ),
        Err(service::Error::TooManyRequests(why)) => refuse(StatusCode::TOO_MANY_REQUESTS, why),
        Err(e) => super::pages::PageError::from(e).into_response(),
    }
}

pub async fn logout(
    State(ctx): State<Arc<Context>>,
    headers: HeaderMap,
    Posted(viewer, NoFields {}): Posted<NoFields>,
) -> Response {
    sessions::sign_out(&ctx, &viewer.session);
    let mut response = Redirect::to("/login?signed_out=1").into_response();
    let cleared = session::set_cookie(&ctx, &headers, SESSION_COOKIE, "", 0);
    if let Ok(value) = cleared.parse() {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}
