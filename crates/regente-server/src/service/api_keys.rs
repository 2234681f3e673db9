//! Organisation API keys: a role in an organisation for an integration, used as
//! `Authorization: Bearer rgk_...` wherever a user's token is taken.
//!
//! A key is `rgk_` and 43 characters of `[A-Za-z0-9]` from the OS's CSPRNG
//! (256 bits), shown once at creation. The store keeps its SHA-256 only: a slow
//! password hash guards guessable secrets, and nothing about a 256-bit random
//! key can be guessed, so one fast hash is enough and lets the key be looked up
//! by its hash (no comparison of secrets in our code, so none to time).
//!
//! A key checked once is remembered like a user's token (see [`super::auth`]):
//! for at most [`super::auth::RECHECK_AFTER`], and never past its expiry. A
//! revoke forgets it at once on this server and, through the store's notices,
//! on the others sharing the store; a notice lost all the same leaves it working
//! there for at most that long.

use std::sync::Arc;

use regente_core::Role;
use regente_store::{ApiKey, Millis, Notice};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::{new_id, or_not_found, random_alphanumeric, Caller, Context, Error, Result};

/// What every key starts with, so that a key is told from a user's token (and
/// found by secret scanners).
pub const KEY_PREFIX: &str = "rgk_";
/// Random characters after [`KEY_PREFIX`]: 43 of 62 make 256 bits.
const SECRET_LEN: usize = 43;
/// Characters after [`KEY_PREFIX`] kept in clear, for people to tell keys apart.
const SHOWN_LEN: usize = 8;
/// Characters a key's name has, at most.
pub const MAX_NAME_LEN: usize = 100;
/// A use is written to the store at most once in this long per key.
const USE_RECORDED_EVERY: Millis = 60_000;

/// A key just created: the record, and the key itself, shown this once.
pub struct CreatedKey {
    pub api_key: ApiKey,
    pub key: String,
}

/// Whether a bearer token is an API key rather than a user's token.
pub fn is_api_key(token: &str) -> bool {
    token.starts_with(KEY_PREFIX)
}

/// `rgk_` and exactly [`SECRET_LEN`] letters or digits, as [`create`] makes them.
fn is_well_formed(key: &str) -> bool {
    key.strip_prefix(KEY_PREFIX).is_some_and(|secret| {
        secret.len() == SECRET_LEN && secret.bytes().all(|b| b.is_ascii_alphanumeric())
    })
}

fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// What the audit log keeps of a key: never the key nor its hash.
fn audit_summary(api_key: &ApiKey) -> Value {
    json!({
        "name": api_key.name,
        "role": api_key.role.as_str(),
        "expires_at": api_key.expires_at,
    })
}

/// A key's name, checked: 1 to [`MAX_NAME_LEN`] characters, no control
/// characters or surrounding spaces.
fn check_name(name: &str) -> Result<()> {
    let chars = name.chars().count();
    if chars == 0
        || chars > MAX_NAME_LEN
        || name.trim() != name
        || name.chars().any(char::is_control)
    {
        return Err(Error::Invalid(format!(
            "name: must have 1 to {MAX_NAME_LEN} characters, with no control characters or surrounding spaces"
        )));
    }
    Ok(())
}

/// Creates a key for the caller's organisation; the answer holds the key, which
/// is not kept.
pub async fn create(
    ctx: &Context,
    caller: &Caller,
    name: &str,
    role: &str,
    expires_at: Option<Millis>,
) -> Result<CreatedKey> {
    check_name(name)?;
    let role = Role::parse(role).ok_or_else(|| {
        Error::Invalid(format!(
            "role: {role:?} is unknown: use \"admin\" or \"integration\""
        ))
    })?;
    let now = ctx.clock.now();
    if let Some(at) = expires_at.filter(|at| *at <= now) {
        return Err(Error::Invalid(format!(
            "expires_at: must be in the future (got {at}, now is {now}, epoch milliseconds)"
        )));
    }
    let secret = random_alphanumeric(SECRET_LEN);
    let api_key = ApiKey {
        id: new_id(),
        organization_id: caller.organization_id.clone(),
        name: name.to_owned(),
        role,
        prefix: secret[..SHOWN_LEN].to_owned(),
        created_by: caller.user_id.clone(),
        created_at: now,
        last_used_at: None,
        expires_at,
        revoked_at: None,
    };
    let key = format!("{KEY_PREFIX}{secret}");
    let audit = super::audit::record(
        ctx,
        caller,
        "api_key.create",
        &api_key.id,
        audit_summary(&api_key),
    );
    match ctx
        .store
        .create_api_key(&api_key, &hash_key(&key), Some(&audit))
        .await
    {
        Err(regente_store::Error::Conflict(_)) => {
            return Err(Error::Conflict(format!(
                "name: an API key named {name:?} already exists (revoke it first)"
            )))
        }
        other => other?,
    }
    tracing::info!(api_key = %api_key.id, name = ?api_key.name, role = %role, by = %caller.username, "API key created");
    Ok(CreatedKey { api_key, key })
}

pub async fn list(ctx: &Context, caller: &Caller) -> Result<Vec<ApiKey>> {
    Ok(ctx.store.list_api_keys(&caller.organization_id).await?)
}

pub async fn get(ctx: &Context, caller: &Caller, id: &str) -> Result<ApiKey> {
    let not_found = || format!("API key {id} not found");
    if !regente_core::is_valid_id(id) {
        return Err(Error::NotFound(not_found()));
    }
    or_not_found(
        ctx.store.get_api_key(&caller.organization_id, id).await,
        not_found,
    )
}

/// Revokes a key: refused from now on here, and on the other servers sharing
/// the store as soon as they hear of it. Revoking a revoked key changes nothing.
pub async fn revoke(ctx: &Arc<Context>, caller: &Caller, id: &str) -> Result<ApiKey> {
    // Read first for the audit record: a key's name, role and expiry never change.
    let audit = {
        let api_key = get(ctx, caller, id).await?;
        super::audit::record(ctx, caller, "api_key.revoke", id, audit_summary(&api_key))
    };
    // On a task of its own: a client hanging up must not leave the key revoked
    // in the store but still remembered as valid.
    let (ctx, organization_id, id) = (ctx.clone(), caller.organization_id.clone(), id.to_owned());
    let now = ctx.clock.now();
    let api_key = tokio::spawn(async move {
        let api_key = or_not_found(
            ctx.store
                .revoke_api_key(&organization_id, &id, now, Some(&audit))
                .await,
            || format!("API key {id} not found"),
        )?;
        super::announce(&ctx, Notice::ApiKeyRevoked { key_id: id }).await;
        Ok::<_, Error>(api_key)
    })
    .await
    .map_err(|e| Error::Internal(anyhow::anyhow!("revoking the API key failed: {e}")))??;
    tracing::info!(api_key = %api_key.id, name = ?api_key.name, by = %caller.username, "API key revoked");
    Ok(api_key)
}

/// The caller a key stands for, and until when (epoch milliseconds) it may be
/// taken without a look at the store; 401 for a key unknown, revoked or expired.
pub(crate) async fn authenticate(ctx: &Context, key: &str) -> Result<(Caller, Millis)> {
    let refused = |why: &str| Error::Unauthorized(format!("{why}: ask an admin for a new key"));
    // Only a key of the shape handed out is looked up: any other `rgk_` text
    // is refused without touching the store.
    if !is_well_formed(key) {
        return Err(refused("unknown API key"));
    }
    let Some(api_key) = ctx.store.find_api_key_by_hash(&hash_key(key)).await? else {
        return Err(refused("unknown API key"));
    };
    if api_key.revoked_at.is_some() {
        return Err(refused("the API key was revoked"));
    }
    let now = ctx.clock.now();
    if api_key.expires_at.is_some_and(|at| at <= now) {
        return Err(refused("the API key has expired"));
    }
    if api_key
        .last_used_at
        .is_none_or(|at| at <= now - USE_RECORDED_EVERY)
    {
        // A failure to record a use must not refuse the request.
        if let Err(e) = ctx
            .store
            .touch_api_key(&api_key.id, now, now - USE_RECORDED_EVERY)
            .await
        {
            tracing::warn!(api_key = %api_key.id, error = format!("{e:#}"), "cannot record an API key's use");
        }
    }
    let valid_until = api_key.expires_at.map_or(Millis::MAX, |at| at - 1);
    Ok((caller_of(api_key), valid_until))
}

/// The caller a key acts as: the key's id where a user's would be (so whatever
/// records who did something records the key), named `api-key:NAME`.
fn caller_of(api_key: ApiKey) -> Caller {
    Caller {
        user_id: api_key.id.clone(),
        username: format!("api-key:{}", api_key.name),
        organization_id: api_key.organization_id,
        role: api_key.role,
        api_key_id: Some(api_key.id),
        address: None,
    }
}

/// A key's name as shown for who did something (`api-key:NAME`), if `id` is a
/// key of the caller's organisation.
pub(crate) async fn name_of(ctx: &Context, caller: &Caller, id: &str) -> Result<Option<String>> {
    match ctx.store.get_api_key(&caller.organization_id, id).await {
        Ok(api_key) => Ok(Some(format!("api-key:{}", api_key.name))),
        Err(regente_store::Error::NotFound) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_bounded_and_plain() {
        assert!(check_name("erp").is_ok());
        assert!(check_name(&"n".repeat(MAX_NAME_LEN)).is_ok());
        for bad in ["", " erp", "erp ", "e\nrp", &"n".repeat(MAX_NAME_LEN + 1)] {
            let error = check_name(bad).unwrap_err().to_string();
            assert!(error.starts_with("name:"), "{error}");
        }
    }

    #[test]
    fn a_key_is_told_from_a_token_and_hashed_whole() {
        assert!(is_api_key("rgk_abc"));
        assert!(!is_well_formed("rgk_abc"));
        assert!(is_well_formed(&format!("rgk_{}", "aZ9".repeat(14) + "x")));
        assert!(!is_well_formed(&format!("rgk_{}", "a".repeat(42) + "-")));
        assert!(!is_well_formed(&format!("rgk_{}", "a".repeat(44))));
        assert!(!is_api_key("eyJhbGciOiJIUzUxMiJ9.x.y"));
        assert_ne!(hash_key("rgk_a"), hash_key("rgk_b"));
        assert_eq!(hash_key("rgk_a").len(), 64);
    }
}
