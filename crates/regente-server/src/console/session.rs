//! Who is looking: the session cookie, the [`Viewer`] and [`AdminViewer`]
//! extractors, and [`Posted`], the only way a console handler reads a form, which
//! refuses it without the session's CSRF token.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{header, request::Parts, HeaderMap};
use axum::response::{IntoResponse, Redirect, Response};
use regente_core::Role;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::pages::{Chrome, PageError};
use crate::service::sessions::{self, Session, SESSION_LIFETIME};
use crate::service::{self, Context};

pub const SESSION_COOKIE: &str = "regente_session";
pub const LOGIN_COOKIE: &str = "regente_login";
/// The header htmx requests carry the CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// A cookie's value from the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// Whether the browser reached us over TLS: served with TLS here, or through a
/// proxy that says so.
pub fn over_tls(ctx: &Context, headers: &HeaderMap) -> bool {
    ctx.config.tls.is_some() || proxied_over_tls(headers)
}

fn proxied_over_tls(headers: &HeaderMap) -> bool {
    let forwarded_proto = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"));
    let forwarded = headers
        .get(header::FORWARDED)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("proto=https"));
    forwarded_proto || forwarded
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Strict, Secure over TLS.
pub fn set_cookie(
    ctx: &Context,
    headers: &HeaderMap,
    name: &str,
    value: &str,
    max_age_seconds: u64,
) -> String {
    let secure = if over_tls(ctx, headers) {
        "; Secure"
    } else {
        ""
    };
    format!("{name}={value}; Path=/; Max-Age={max_age_seconds}; HttpOnly; SameSite=Strict{secure}")
}

pub fn session_cookie(ctx: &Context, headers: &HeaderMap, value: &str) -> String {
    set_cookie(
        ctx,
        headers,
        SESSION_COOKIE,
        value,
        SESSION_LIFETIME.as_secs(),
    )
}

/// A signed-in console user, with what every page's frame shows.
pub struct Viewer {
    pub session: Session,
    pub chrome: Chrome,
}

impl Viewer {
    pub fn caller(&self) -> &service::Caller {
        &self.session.caller
    }

    pub fn is_admin(&self) -> bool {
        self.session.caller.role == Role::Admin
    }

    /// Turns a service error into its page in this viewer's frame.
    pub fn fail(&self) -> impl Fn(service::Error) -> PageError + use<> {
        let chrome = self.chrome.clone();
        move |e| PageError::from(e).framed(chrome.clone())
    }
}

/// A signed-in admin; anyone else gets the 403 page.
pub struct AdminViewer(pub Viewer);

/// Where a request without a valid session goes.
pub struct SignInFirst {
    next: String,
}

impl IntoResponse for SignInFirst {
    fn into_response(self) -> Response {
        let next: String = url_escape(&self.next);
        Redirect::to(&format!("/login?next={next}")).into_response()
    }
}

/// Percent-encodes everything but unreserved characters and `/`.
pub fn url_escape(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub enum Refused {
    SignIn(SignInFirst),
    Page(PageError),
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        match self {
            Refused::SignIn(redirect) => redirect.into_response(),
            Refused::Page(page) => page.into_response(),
        }
    }
}

impl FromRequestParts<Arc<Context>> for Viewer {
    type Rejection = Refused;

    async fn from_request_parts(parts: &mut Parts, ctx: &Arc<Context>) -> Result<Self, Refused> {
        let sign_in = || {
            let next = parts
                .uri
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_owned();
            Refused::SignIn(SignInFirst { next })
        };
        let Some(value) = cookie(&parts.headers, SESSION_COOKIE) else {
            return Err(sign_in());
        };
        let mut session = match sessions::resume(ctx, value).await {
            Ok(session) => session,
            Err(service::Error::Unauthorized(_)) => return Err(sign_in()),
            Err(e) => return Err(Refused::Page(PageError::from(e))),
        };
        session.caller.address = crate::api::extract::client_address(parts);
        let chrome = Chrome::new(ctx, &session, parts.uri.path());
        Ok(Viewer { session, chrome })
    }
}

impl FromRequestParts<Arc<Context>> for AdminViewer {
    type Rejection = Refused;

    async fn from_request_parts(parts: &mut Parts, ctx: &Arc<Context>) -> Result<Self, Refused> {
        let viewer = Viewer::from_request_parts(parts, ctx).await?;
        if !viewer.is_admin() {
            return Err(Refused::Page(PageError::forbidden(Some(viewer.chrome))));
        }
        Ok(AdminViewer(viewer))
    }
}

/// A form with no field but its CSRF token.
#[derive(Deserialize)]
pub struct NoFields {}

#[derive(Deserialize)]
struct CsrfField {
    csrf: Option<String>,
}

/// A form posted by a signed-in user, its CSRF token checked (the `csrf` field,
/// or the `X-CSRF-Token` header that htmx requests send).
pub struct Posted<T>(pub Viewer, pub T);

impl<T: DeserializeOwned + Send> FromRequest<Arc<Context>> for Posted<T> {
    type Rejection = Refused;

    async fn from_request(request: Request, ctx: &Arc<Context>) -> Result<Self, Refused> {
        let (mut parts, body) = request.into_parts();
        let viewer = Viewer::from_request_parts(&mut parts, ctx).await?;
        let header_token = parts
            .headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let request = Request::from_parts(parts, body);
        let bytes = Bytes::from_request(request, ctx).await.map_err(|_| {
            Refused::Page(PageError::from(service::Error::Invalid(
                "the form could not be read whole".into(),
            )))
        })?;
        let field: CsrfField =
            serde_urlencoded::from_bytes(&bytes).unwrap_or(CsrfField { csrf: None });
        let token = field.csrf.or(header_token).unwrap_or_default();
        sessions::check_csrf(ctx, &viewer.session, &token)
            .map_err(|e| Refused::Page(PageError::from(e).framed(viewer.chrome.clone())))?;
        let form: T = serde_urlencoded::from_bytes(&bytes).map_err(|e| {
            Refused::Page(
                PageError::from(service::Error::Invalid(format!(
                    "the form does not fit: {e}"
                )))
                .framed(viewer.chrome.clone()),
            )
        })?;
        Ok(Posted(viewer, form))
    }
}
