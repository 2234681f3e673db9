//! The web console's sign-ins: signed, expiring session values for a cookie,
//! and the CSRF tokens derived from them.
//!
//! A session is `USER_ID.SESSION_ID.EXPIRES_MS.MAC`, the MAC an HMAC-SHA256 under
//! a key derived from the token secret for this purpose only: a session is never
//! a valid API token (those are JWTs under the secret itself) nor the reverse.
//! Its user is read again at each use, so a deleted user's session stops at once
//! and a role change applies at the next page. Signing out remembers the
//! session's id until it would have expired, so the value is refused by this
//! server at once even if a copy of the cookie survives.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use hmac::{Hmac, Mac};
use regente_store::Millis;
use sha2::Sha256;

use super::{random_alphanumeric, Caller, Context, Error, Result};

/// How long a console sign-in lasts.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// Signed-out sessions remembered; past this the oldest half is dropped (they
/// expire within [`SESSION_LIFETIME`] anyway).
const SIGNED_OUT_KEPT: usize = 100_000;

pub struct Sessions {
    key: [u8; 32],
    /// Signed-out session ids with their expiry.
    signed_out: Mutex<HashMap<String, Millis>>,
}

/// A signed-in console user.
#[derive(Debug, Clone)]
pub struct Session {
    pub caller: Caller,
    pub id: String,
    pub expires: Millis,
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    for part in parts {
        mac.update(part);
        mac.update(&[0]);
    }
    mac.finalize().into_bytes().into()
}

/// Equal lengths and bytes, in time independent of where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Sessions {
    pub fn new(secret: &[u8]) -> Sessions {
        Sessions {
            key: hmac(secret, &[b"regente console session key, version 1"]),
            signed_out: Mutex::new(HashMap::new()),
        }
    }

    fn sign(&self, payload: &str) -> String {
        hex::encode(hmac(&self.key, &[b"session", payload.as_bytes()]))
    }

    fn is_signed_out(&self, id: &str) -> bool {
        let signed_out = self.signed_out.lock().unwrap_or_else(|e| e.into_inner());
        signed_out.contains_key(id)
    }

    fn sign_out(&self, session: &Session, now: Millis) {
        let mut signed_out = self.signed_out.lock().unwrap_or_else(|e| e.into_inner());
        signed_out.retain(|_, expires| *expires > now);
        if signed_out.len() >= SIGNED_OUT_KEPT {
            let mut by_expiry: Vec<Millis> = signed_out.values().copied().collect();
            by_expiry.sort_unstable();
            let cut = by_expiry[by_expiry.len() / 2];
            signed_out.retain(|_, expires| *expires > cut);
        }
        signed_out.insert(session.id.clone(), session.expires);
    }

    /// The token a form of this session carries; another session's is refused.
    pub fn csrf_token(&self, session: &Session) -> String {
        hex::encode(hmac(&self.key, &[b"csrf", session.id.as_bytes()]))
    }

    /// The token of the sign-in form, bound to a random value kept in a
    /// cookie of its own (there is no session yet).
    pub fn login_token(&self, nonce: &str) -> String {
        hex::encode(hmac(&self.key, &[b"login", nonce.as_bytes()]))
    }
}

/// A fresh random value for the sign-in form's cookie.
pub fn login_nonce() -> String {
    random_alphanumeric(32)
}

/// Checks the sign-in form's token against its cookie's value.
pub fn check_login_token(ctx: &Context, nonce: Option<&str>, token: &str) -> Result<()> {
    let expected = nonce.map(|nonce| ctx.auth.sessions.login_token(nonce));
    match expected {
        Some(expected)
            if !nonce.unwrap_or_default().is_empty()
                && same(expected.as_bytes(), token.as_bytes()) =>
        {
            Ok(())
        }
        _ => Err(Error::Forbidden(
            "the sign-in form has expired or did not come from this server: load it again".into(),
        )),
    }
}

/// Checks a password and opens a session; answers the cookie value and the session.
pub async fn sign_in(
    ctx: &Context,
    username: &str,
    password: &str,
    client: IpAddr,
) -> Result<(String, Session)> {
    let user =
        super::auth::check_credentials(ctx, username, password.as_bytes().to_vec(), client).await?;
    let id = random_alphanumeric(32);
    let expires = ctx.clock.now() + SESSION_LIFETIME.as_millis() as Millis;
    let payload = format!("{}.{id}.{expires}", user.id);
    let value = format!("{payload}.{}", ctx.auth.sessions.sign(&payload));
    let session = Session {
        caller: Caller::of_user(user),
        id,
        expires,
    };
    Ok((value, session))
}

/// The session a cookie value carries, if it is genuine, current, not signed
/// out, and its user still exists.
pub async fn resume(ctx: &Context, value: &str) -> Result<Session> {
    let refused = || Error::Unauthorized("sign in again".into());
    let (payload, mac) = value.rsplit_once('.').ok_or_else(refused)?;
    let sessions = &ctx.auth.sessions;
    if !same(sessions.sign(payload).as_bytes(), mac.as_bytes()) {
        return Err(refused());
    }
    let mut parts = payload.split('.');
    let (Some(user_id), Some(id), Some(expires), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(refused());
    };
    let expires: Millis = expires.parse().map_err(|_| refused())?;
    if expires <= ctx.clock.now() || sessions.is_signed_out(id) {
        return Err(refused());
    }
    let user = match ctx.store.get_user(user_id).await {
        Ok(user) => user,
        Err(regente_store::Error::NotFound) => return Err(refused()),
        Err(e) => return Err(e.into()),
    };
    Ok(Session {
        caller: Caller::of_user(user),
        id: id.to_owned(),
        expires,
    })
}

/// Ends a session: its cookie value is refused from now on.
pub fn sign_out(ctx: &Context, session: &Session) {
    ctx.auth.sessions.sign_out(session, ctx.clock.now());
}

/// Checks a form's CSRF token against the session's.
pub fn check_csrf(ctx: &Context, session: &Session, token: &str) -> Result<()> {
    let expected = ctx.auth.sessions.csrf_token(session);
    if same(expected.as_bytes(), token.as_bytes()) {
        Ok(())
    } else {
        Err(Error::Forbidden(
            "this form did not come from your session (missing or wrong CSRF token): load the page again".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_depend_on_the_secret_and_the_session() {
        let a = Sessions::new(&[1; 64]);
        let b = Sessions::new(&[2; 64]);
        assert_ne!(a.sign("x"), b.sign("x"));
        assert_ne!(a.sign("x"), a.sign("y"));
        assert_ne!(a.login_token("n"), a.sign("n"));
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"ab"));
    }
}
