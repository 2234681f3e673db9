//! The web console over plain HTTP, as a browser's sign-in form reaches it:
//! for the tests that check its answers by status and the bench's page timings.

use anyhow::Context as _;
use reqwest::blocking::{Client, Response};

/// The whole `Set-Cookie` value an answer gives the cookie `name`.
pub fn set_cookie(reply: &Response, name: &str) -> Option<String> {
    reply
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(str::to_owned)
}

/// The value of a page's hidden field `name`.
pub fn form_field(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    html[start..].split('"').next().map(str::to_owned)
}

/// Loads the sign-in form and posts it; answers the form's answer (a 303 with
/// the session cookie when the password is right). The client must not follow
/// redirects.
pub fn console_sign_in(
    client: &Client,
    base: &str,
    username: &str,
    password: &str,
) -> anyhow::Result<Response> {
    let form = client.get(format!("{base}/login")).send()?;
    let nonce = set_cookie(&form, "regente_login").context("the sign-in form set no cookie")?;
    let nonce = nonce.split(';').next().unwrap_or_default().to_owned();
    let token = form_field(&form.text()?, "csrf").context("the sign-in form has no CSRF field")?;
    Ok(client
        .post(format!("{base}/login"))
        .header("cookie", nonce)
        .form(&[
            ("csrf", token.as_str()),
            ("username", username),
            ("password", password),
        ])
        .send()?)
}
