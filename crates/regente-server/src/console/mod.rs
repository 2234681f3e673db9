//! The web console at `/`: server-rendered HTML pages for people, beside the JSON
//! API for programs. Like `api/`, it calls `service/` only, never the store.
//!
//! - [`session`]: the session cookie, who is looking, forms with their CSRF token.
//! - [`pages`]: the frame of every page, rendering, the error pages.
//! - [`auth`]: signing in and out.
//! - [`executions`], [`runtimes`], [`robots`], [`schedules`], [`flows`],
//!   [`users`], [`credentials`], [`api_keys`], [`audit`], [`webhooks`]: the sections.
//! - [`dashboard`] with [`charts`] (SVG drawn here): the window's figures.
//! - [`live`]: Server-Sent Events for the pages that update themselves.
//! - [`assets`]: the stylesheet and scripts compiled in; [`format`]: times and numbers.
//!
//! Templates are in `templates/` (askama, checked when compiling), assets in
//! `assets/`.

pub mod api_keys;
pub mod assets;
pub mod audit;
pub mod auth;
pub mod charts;
pub mod credentials;
pub mod dashboard;
pub mod executions;
pub mod flows;
pub mod format;
pub mod live;
pub mod pages;
pub mod robots;
pub mod runtimes;
pub mod schedules;
pub mod session;
pub mod users;
pub mod webhooks;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::response::Redirect;
use axum::routing::{get, post};
use axum::Router;

use crate::service::Context;

/// Bodies of the console's forms; packages have their own limit.
const FORM_LIMIT: usize = 64 * 1024;

pub fn router(max_package_bytes: usize) -> Router<Arc<Context>> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/executions") }))
        .route("/login", get(auth::login_page).post(auth::login))
        .route("/logout", post(auth::logout))
        .route("/executions", get(executions::list))
        .route("/executions/{id}", get(executions::detail))
        .route("/executions/{id}/live", get(live::execution))
        .route("/executions/{id}/cancel", post(executions::cancel))
        .route("/runtimes", get(runtimes::list).post(runtimes::create))
        .route("/runtimes/live", get(live::runtimes))
        .route("/runtimes/{id}/rename", post(runtimes::rename))
        .route("/runtimes/{id}/delete", post(runtimes::delete))
        .route("/robots/{id}", get(robots::detail))
        .route("/robots/{id}/run", post(robots::run))
        .route("/schedules", get(schedules::list))
        .route("/schedules/{id}", get(schedules::detail))
        .route("/schedules/{id}/pause", post(schedules::pause))
        .route("/schedules/{id}/resume", post(schedules::resume))
        .route("/schedules/{id}/trigger", post(schedules::trigger))
        .route("/flows", get(flows::list))
        .route("/flows/{id}", get(flows::detail))
        .route("/flows/runs/{id}", get(flows::run))
        .route("/flows/runs/{id}/cancel", post(flows::cancel))
        .route("/flows/runs/{id}/retry", post(flows::retry))
        .route("/users", get(users::list).post(users::create))
        .route("/users/{id}/delete", post(users::delete))
        .route("/users/{id}/role", post(users::set_role))
        .route("/credentials", get(credentials::list))
        .route("/api-keys", get(api_keys::list).post(api_keys::create))
        .route("/api-keys/{id}/revoke", post(api_keys::revoke))
        .route("/dashboard", get(dashboard::page))
        .route("/audit", get(audit::list))
        .route("/webhooks", get(webhooks::list))
        .route("/webhooks/{id}", get(webhooks::detail))
        .route(
            "/webhooks/{id}/deliveries/{delivery_id}/replay",
            post(webhooks::replay),
        )
        .route("/assets/{version}/{name}", get(assets::serve))
        .layer(DefaultBodyLimit::max(FORM_LIMIT))
        // Packages are counted by the upload as they come; a little room for
        // the form's other field and the multipart framing.
        .route(
            "/robots",
            get(robots::list)
                .post(robots::upload)
                .layer(DefaultBodyLimit::max(max_package_bytes + FORM_LIMIT)),
        )
        // The console's own errors are HTML pages, left as they are; what axum
        // answers itself (a wrong method, a body over the limit) gets the API's
        // JSON error shape, as everywhere else.
        .layer(crate::api::layers::ShapeErrorsLayer)
}
