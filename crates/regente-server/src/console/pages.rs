//! What every page shares: the frame ([`Chrome`]: who is signed in, the
//! navigation, the CSRF token, asset URLs), rendering a template into an answer,
//! and the error pages (403, 404 and the rest) as HTML.

use askama::Template;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use regente_core::Role;
use tracing::error;

use super::assets;
use crate::service::sessions::Session;
use crate::service::{self, Context};

/// The frame around every page of a signed-in user.
#[derive(Clone)]
pub struct Chrome {
    /// False on the sign-in page and on errors before a sign-in.
    pub signed_in: bool,
    pub username: String,
    pub is_admin: bool,
    pub csrf: String,
    /// The section the page belongs to, for the navigation's `aria-current`.
    pub section: &'static str,
    pub assets: Assets,
}

/// The asset URLs of this build.
#[derive(Clone)]
pub struct Assets {
    pub css: String,
    pub js: String,
    pub htmx: String,
}

impl Default for Assets {
    fn default() -> Assets {
        Assets {
            css: assets::url("console.css"),
            js: assets::url("console.js"),
            htmx: assets::url("htmx.min.js"),
        }
    }
}

/// The sections of the navigation: path, label, admins only.
pub const SECTIONS: &[(&str, &str, bool)] = &[
    ("/executions", "Executions", false),
    ("/runtimes", "Runtimes", true),
    ("/robots", "Robots", true),
    ("/schedules", "Schedules", true),
    ("/flows", "Flows", true),
    ("/users", "Users", true),
    ("/credentials", "Credentials", true),
    ("/api-keys", "API keys", true),
    ("/webhooks", "Webhooks", true),
    ("/dashboard", "Dashboard", true),
    ("/audit", "Audit", true),
];

impl Chrome {
    pub fn new(ctx: &Context, session: &Session, path: &str) -> Chrome {
        let section = SECTIONS
            .iter()
            .map(|(prefix, _, _)| *prefix)
            .find(|prefix| path.starts_with(prefix))
            .unwrap_or("");
        Chrome {
            signed_in: true,
            username: session.caller.username.clone(),
            is_admin: session.caller.role == Role::Admin,
            csrf: ctx.auth.sessions.csrf_token(session),
            section,
            assets: Assets::default(),
        }
    }

    /// The frame of a page seen before signing in.
    pub fn anonymous() -> Chrome {
        Chrome {
            signed_in: false,
            username: String::new(),
            is_admin: false,
            csrf: String::new(),
            section: "",
            assets: Assets::default(),
        }
    }

    /// The sections this user may open: (path, label, current).
    pub fn nav(&self) -> Vec<(&'static str, &'static str, bool)> {
        SECTIONS
            .iter()
            .filter(|(_, _, admin_only)| self.is_admin || !admin_only)
            .map(|(path, label, _)| (*path, *label, *path == self.section))
            .collect()
    }

    /// `{"X-CSRF-Token": "..."}` for htmx's `hx-headers`.
    pub fn htmx_headers(&self) -> String {
        format!(r#"{{"X-CSRF-Token": "{}"}}"#, self.csrf)
    }
}

/// Renders a template as a page; a failure to render is an internal error.
pub fn render(template: &impl Template) -> Response {
    render_with(StatusCode::OK, template)
}

pub fn render_with(status: StatusCode, template: &impl Template) -> Response {
    match template.render() {
        Ok(html) => {
            let mut response = (status, Html(html)).into_response();
            let headers = response.headers_mut();
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            headers.insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(
                    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'; form-action 'self'",
                ),
            );
            headers.insert(
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            );
            headers.insert(
                header::REFERRER_POLICY,
                HeaderValue::from_static("same-origin"),
            );
            response
        }
        Err(e) => {
            error!(error = %e, "a console page failed to render");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    chrome: Chrome,
    status: u16,
    title: &'static str,
    message: String,
}

/// A service error shown as a page, in the frame when the viewer is known.
pub struct PageError(pub service::Error, pub Option<Chrome>);

impl PageError {
    pub fn framed(self, chrome: Chrome) -> PageError {
        PageError(self.0, Some(chrome))
    }

    pub fn forbidden(chrome: Option<Chrome>) -> PageError {
        PageError(
            service::Error::Forbidden(
                "This page is for admins; your user has the integration role.".into(),
            ),
            chrome,
        )
    }
}

impl From<service::Error> for PageError {
    fn from(error: service::Error) -> PageError {
        PageError(error, None)
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        use service::Error::*;
        let (status, title) = match &self.0 {
            Invalid(_) => (StatusCode::BAD_REQUEST, "That did not work"),
            Unauthorized(_) => (StatusCode::UNAUTHORIZED, "Sign in first"),
            Forbidden(_) => (StatusCode::FORBIDDEN, "Not for you"),
            NotFound(_) => (StatusCode::NOT_FOUND, "Not found"),
            Conflict(_) => (StatusCode::CONFLICT, "That did not work"),
            TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "Too large"),
            TooManyRequests(_) => (StatusCode::TOO_MANY_REQUESTS, "Slow down"),
            Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "Something broke"),
        };
        let message = match self.0 {
            Internal(cause) => {
                error!(error = format!("{cause:#}"), "internal error");
                "The server could not complete the request; its log says why.".to_owned()
            }
            NotFound(_) => "There is nothing here, or nothing you may see.".to_owned(),
            other => other.to_string(),
        };
        render_with(
            status,
            &ErrorPage {
                chrome: self.1.unwrap_or_else(Chrome::anonymous),
                status: status.as_u16(),
                title,
                message,
            },
        )
    }
}

/// The 404 page, for a path that is no page.
pub fn not_found_page() -> Response {
    PageError::from(service::Error::NotFound(String::new())).into_response()
}

pub type PageResult<T = Response> = Result<T, PageError>;
