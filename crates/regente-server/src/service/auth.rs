//! Passwords, tokens and the throttling of failed logins.
//!
//! Passwords are argon2id hashes (19 MiB, 2 passes, 1 lane: OWASP's floor),
//! computed on the blocking pool behind a semaphore so that a login storm can
//! neither starve the async workers nor exhaust memory; each hash's memory is
//! mapped for it and unmapped after ([`super::password_hashing`]), so that none of
//! it stays. Tokens are HS512 JWTs with the algorithm pinned. A token checked once
//! (signature, expiry, and its user still there) is remembered with its caller for
//! a few seconds, so requests in between skip the HMAC and the user's read;
//! deleting a user forgets their tokens at once on this server and, through the
//! store's notices, on the others (every one is forgotten when notices may have
//! been missed). A notice lost all the same (a crash between the delete and the
//! notice) leaves a deleted user's token working for at most [`RECHECK_AFTER`].

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use super::password_hashing::MappedArgon2;
use super::throttle::LoginThrottle;
use super::{now_millis, Caller, Context, Error, Result};
use crate::config::LoginLimits;

const MIN_PASSWORD_LEN: usize = 8;
const MAX_PASSWORD_LEN: usize = 1024;
/// Characters a new password has, at least and at most.
pub const PASSWORD_LEN: (usize, usize) = (MIN_PASSWORD_LEN, MAX_PASSWORD_LEN);

pub struct Auth {
    encoding_key: EncodingKey,
    decoding_key: DecodingKey,
    validation: Validation,
    token_lifetime: Duration,
    /// Bounds concurrent argon2 computations (each holds 19 MiB).
    hashing: Arc<Semaphore>,
    /// Counts login attempts before their check (see [`super::throttle`]).
    throttle: LoginThrottle,
    /// Tokens known valid, with their caller and expiry (seconds).
    known: Mutex<KnownTokens>,
    /// The console's sign-ins, under a key of their own.
    pub sessions: super::sessions::Sessions,
}

#[derive(Default)]
struct KnownTokens {
    tokens: HashMap<String, KnownToken>,
    /// Counts the forgettings, so that a check that began before one is not
    /// remembered after it (its user may be the one deleted).
    forgotten: u64,
}

#[derive(Clone)]
struct KnownToken {
    caller: Caller,
    /// Epoch milliseconds past which it is checked again (a token's expiry
    /// with the leeway, a key's expiry).
    valid_until: i64,
    checked: Instant,
}

/// Seconds a token is still taken past its `exp`, for clocks of servers that
/// differ slightly; documented in the README.
pub const TOKEN_LEEWAY_SECONDS: u64 = 2;

/// How long a token's check is trusted before its user is read again.
pub const RECHECK_AFTER: Duration = Duration::from_secs(5);

/// Tokens remembered; past this the memory starts over.
const KNOWN_TOKENS: usize = 4096;

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    /// The user's id: a user deleted and created again under the same name does
    /// not inherit the old user's tokens.
    uid: String,
    /// The role, in the form the original product's tokens carry.
    iss: String,
    iat: i64,
    exp: i64,
}

impl Auth {
    pub fn new(secret: &[u8], token_lifetime: Duration, limits: LoginLimits) -> Auth {
        let mut validation = Validation::new(Algorithm::HS512);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.leeway = TOKEN_LEEWAY_SECONDS;
        validation.validate_exp = true;
        let permits = std::thread::available_parallelism().map_or(2, |n| n.get()) * 2;
        Auth {
            encoding_key: EncodingKey::from_secret(secret),
            decoding_key: DecodingKey::from_secret(secret),
            validation,
            token_lifetime,
            hashing: Arc::new(Semaphore::new(permits)),
            throttle: LoginThrottle::new(limits),
            known: Mutex::new(KnownTokens::default()),
            sessions: super::sessions::Sessions::new(secret),
        }
    }

    fn known(&self) -> std::sync::MutexGuard<'_, KnownTokens> {
        self.known.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The caller of a token checked before and not expired since; otherwise
    /// what to hand to [`Auth::remember`] once it is checked.
    fn known_caller(&self, token: &str) -> Result<Caller, u64> {
        let known = self.known();
        match known.tokens.get(token) {
            Some(entry)
                if entry.checked.elapsed() < RECHECK_AFTER && now_millis() <= entry.valid_until =>
            {
                Ok(entry.caller.clone())
            }
            _ => Err(known.forgotten),
        }
    }

    /// Remembers a token just checked, unless something was forgotten since the
    /// check began (`forgotten` from [`Auth::known_caller`]).
    fn remember(&self, token: &str, caller: &Caller, valid_until: i64, forgotten: u64) {
        let mut known = self.known();
        if known.forgotten != forgotten {
            return;
        }
        if known.tokens.len() >= KNOWN_TOKENS {
            known.tokens.clear();
        }
        let caller = caller.clone();
        known.tokens.insert(
            token.to_owned(),
            KnownToken {
                caller,
                valid_until,
                checked: Instant::now(),
            },
        );
    }

    /// Forgets the tokens of a deleted user (or a revoked API key, by its id).
    pub fn forget_user(&self, user_id: &str) {
        let mut known = self.known();
        known.forgotten += 1;
        known
            .tokens
            .retain(|_, entry| entry.caller.user_id != user_id);
    }

    /// Forgets every token: each is checked again at its next use.
    pub fn forget_all(&self) {
        let mut known = self.known();
        known.forgotten += 1;
        known.tokens.clear();
    }

    pub fn token_lifetime(&self) -> Duration {
        self.token_lifetime
    }

    /// Signs a token for a user, as a successful login does.
    pub fn issue(&self, user: &regente_store::User) -> Result<String> {
        let now = now_millis() / 1000;
        let claims = Claims {
            sub: user.username.clone(),
            uid: user.id.clone(),
            iss: format!("ROLE_{}", user.role.as_str().to_ascii_uppercase()),
            iat: now,
            exp: now + self.token_lifetime.as_secs() as i64,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS512), &claims, &self.encoding_key)
            .map_err(|e| Error::Internal(anyhow::anyhow!("cannot sign a token: {e}")))
    }

    /// Hashes a password with argon2id off the async workers.
    pub async fn hash_password(&self, password: &str) -> Result<String> {
        let password = password.to_owned();
        self.blocking(move || hash_password(&password)).await
    }

    pub(crate) async fn verify_password(
        &self,
        password: Vec<u8>,
        hash: Option<String>,
    ) -> Result<bool> {
        self.blocking(move || {
            // Unknown users are checked against a fixed hash so that the answer
            // takes as long as for a known user and does not reveal who exists.
            let hash = hash.unwrap_or_else(|| dummy_hash().to_owned());
            let parsed = PasswordHash::new(&hash).map_err(|e| {
                Error::Internal(anyhow::anyhow!("stored password hash is invalid: {e}"))
            })?;
            Ok(MappedArgon2.verify_password(&password, &parsed).is_ok())
        })
        .await
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let _permit = self
            .hashing
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| Error::Internal(e.into()))?;
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|e| Error::Internal(anyhow::anyhow!("password hashing failed: {e}")))?
    }
}

fn dummy_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| {
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        MappedArgon2
            .hash_password(b"no user has this password", &salt)
            .expect("argon2 hashes a constant")
            .to_string()
    })
}

/// Checks a new password's length; the only rule that helps more than it annoys.
/// A password's argon2id hash, with a fresh salt. Slow on purpose: call it on
/// a blocking thread.
pub fn hash_password(password: &str) -> Result<String> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    MappedArgon2
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| Error::Internal(anyhow::anyhow!("cannot hash a password: {e}")))
}

pub fn check_new_password(password: &str) -> Result<()> {
    let chars = password.chars().count();
    if !(MIN_PASSWORD_LEN..=MAX_PASSWORD_LEN).contains(&chars) {
        return Err(Error::Invalid(format!(
            "password must have {MIN_PASSWORD_LEN} to {MAX_PASSWORD_LEN} characters"
        )));
    }
    Ok(())
}

/// A successful login: the token and how long it lives.
pub struct Login {
    pub token: String,
    pub expires_in: Duration,
}

/// Logs a user in with the password as the Integration API sends it: base64.
pub async fn login(
    ctx: &Context,
    username: &str,
    password_base64: &str,
    client: IpAddr,
) -> Result<Login> {
    let password = decode_base64(password_base64).ok_or_else(|| {
        Error::Invalid("password must be base64-encoded, as the Integration API specifies".into())
    })?;
    let user = check_credentials(ctx, username, password, client).await?;
    Ok(Login {
        token: ctx.auth.issue(&user)?,
        expires_in: ctx.auth.token_lifetime,
    })
}

/// The user with this name and password. The attempt is counted against the
/// username and the client address before the password is checked, and
/// refused (429) past their limits; a failure is logged and recorded in the
/// audit log with the username and the address, never the password.
pub(crate) async fn check_credentials(
    ctx: &Context,
    username: &str,
    password: Vec<u8>,
    client: IpAddr,
) -> Result<regente_store::User> {
    let auth = &ctx.auth;
    let attempt = auth.throttle.admit(username, client).map_err(|wait| {
        tracing::debug!(username = ?loggable(username), %client, "login refused: too many failures");
        Error::TooManyRequests(format!(
            "too many failed logins for this user or address: try again in {} seconds",
            wait.as_secs_f64().ceil().max(1.0)
        ))
    })?;
    // No username holds a control character (see `users::check_username`), and
    // PostgreSQL refuses a NUL in text outright: such a name is unknown, and is
    // checked against the dummy hash like any unknown name.
    let user = if username.chars().any(char::is_control) {
        None
    } else {
        ctx.store.find_user_by_username(username).await?
    };
    let matches = auth
        .verify_password(password, user.as_ref().map(|u| u.password_hash.clone()))
        .await?;
    match user {
        Some(user) if matches => {
            auth.throttle.succeeded(attempt, username);
            Ok(user)
        }
        _ => {
            auth.throttle.failed(attempt);
            tracing::warn!(username = ?loggable(username), %client, "login failed: bad username or password");
            super::audit::login_failed(ctx, user.as_ref(), username, client).await;
            Err(Error::Unauthorized("bad username or password".into()))
        }
    }
}

/// A username as the log shows it: cut short (logged with `?`, which escapes
/// control characters, so a name cannot forge log lines).
fn loggable(username: &str) -> &str {
    match username.char_indices().nth(64) {
        Some((cut, _)) => &username[..cut],
        None => username,
    }
}

fn decode_base64(text: &str) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let text = text.trim();
    [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|engine| engine.decode(text).ok())
}

/// Establishes the caller from an `Authorization` header value.
pub async fn authenticate(ctx: &Context, authorization: Option<&str>) -> Result<Caller> {
    let header = authorization.ok_or_else(|| {
        Error::Unauthorized("missing Authorization header: send \"Authorization: Bearer <token>\" with the token from the login".into())
    })?;
    let token = header
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|token| !token.is_empty())
        .ok_or_else(|| {
            Error::Unauthorized("the Authorization header must be \"Bearer <token>\"".into())
        })?;
    let forgotten = match ctx.auth.known_caller(token) {
        Ok(caller) => return Ok(caller),
        Err(forgotten) => forgotten,
    };
    if super::api_keys::is_api_key(token) {
        let (caller, valid_until) = super::api_keys::authenticate(ctx, token).await?;
        ctx.auth.remember(token, &caller, valid_until, forgotten);
        return Ok(caller);
    }
    let claims =
        jsonwebtoken::decode::<Claims>(token, &ctx.auth.decoding_key, &ctx.auth.validation)
            .map_err(|e| {
                let why = match e.kind() {
                    jsonwebtoken::errors::ErrorKind::ExpiredSignature => "the token has expired",
                    jsonwebtoken::errors::ErrorKind::InvalidSignature => {
                        "the token's signature is invalid"
                    }
                    jsonwebtoken::errors::ErrorKind::InvalidAlgorithm => {
                        "the token's algorithm is not HS512"
                    }
                    _ => "the token is malformed",
                };
                Error::Unauthorized(format!("{why}: log in again"))
            })?
            .claims;
    let gone = || Error::Unauthorized("the token's user no longer exists: log in again".into());
    let user = match ctx.store.get_user(&claims.uid).await {
        Ok(user) => user,
        Err(regente_store::Error::NotFound) => return Err(gone()),
        Err(e) => return Err(e.into()),
    };
    if user.username != claims.sub {
        return Err(gone());
    }
    let caller = Caller::of_user(user);
    // The last millisecond of the last second the token is taken in.
    let valid_until = (claims.exp + ctx.auth.validation.leeway as i64) * 1000 + 999;
    ctx.auth.remember(token, &caller, valid_until, forgotten);
    Ok(caller)
}
