//! Users of an organisation.

use std::sync::Arc;

use regente_core::Role;
use regente_store::User;
use serde_json::json;

use super::{auth::check_new_password, new_id, or_not_found, Caller, Context, Error, Result};

/// Characters (not bytes: what the OpenAPI document's `maxLength` counts).
pub(crate) const MAX_USERNAME_LEN: usize = 254;

/// Checks a username: non-empty, bounded, no control characters or surrounding spaces.
pub fn check_username(username: &str) -> Result<()> {
    let ok = !username.is_empty()
        && username.chars().count() <= MAX_USERNAME_LEN
        && username.trim() == username
        && !username.chars().any(char::is_control);
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "username must have 1 to {MAX_USERNAME_LEN} characters, with no control characters or surrounding spaces"
        )))
    }
}

/// Builds a user with a freshly hashed password, checking name and password.
pub async fn new_user(
    ctx: &Context,
    organization_id: &str,
    username: &str,
    password: &str,
    role: Role,
) -> Result<User> {
    check_username(username)?;
    check_new_password(password)?;
    Ok(User {
        id: new_id(),
        organization_id: organization_id.to_owned(),
        username: username.to_owned(),
        password_hash: ctx.auth.hash_password(password).await?,
        role,
        created_at: ctx.clock.now(),
    })
}

pub async fn create(
    ctx: &Context,
    caller: &Caller,
    username: &str,
    password: &str,
    role: &str,
) -> Result<User> {
    let role = Role::parse(role).ok_or_else(|| {
        Error::Invalid(format!(
            "role {role:?} is unknown: use \"admin\" or \"integration\""
        ))
    })?;
    let user = new_user(ctx, &caller.organization_id, username, password, role).await?;
    let summary = json!({"username": user.username, "role": user.role.as_str()});
    let audit = super::audit::record(ctx, caller, "user.create", &user.id, summary);
    match ctx.store.create_user(&user, Some(&audit)).await {
        Err(regente_store::Error::Conflict(_)) => Err(Error::Conflict(format!(
            "a user named {username:?} already exists"
        ))),
        other => other.map(|()| user).map_err(Error::from),
    }
}

pub async fn list(ctx: &Context, caller: &Caller) -> Result<Vec<User>> {
    Ok(ctx.store.list_users(&caller.organization_id).await?)
}

pub async fn delete(ctx: &Arc<Context>, caller: &Caller, id: &str) -> Result<()> {
    if id == caller.user_id {
        return Err(Error::Conflict("you cannot delete your own user".into()));
    }
    let not_found = || format!("user {id} not found");
    if !regente_core::is_valid_id(id) {
        return Err(Error::NotFound(not_found()));
    }
    let username = match ctx.store.get_user(id).await {
        Ok(user) if user.organization_id == caller.organization_id => user.username,
        Ok(_) | Err(regente_store::Error::NotFound) => return Err(Error::NotFound(not_found())),
        Err(e) => return Err(e.into()),
    };
    let audit = super::audit::record(
        ctx,
        caller,
        "user.delete",
        id,
        json!({"username": username}),
    );
    // On a task of its own: a client hanging up must not leave the user deleted
    // but their tokens still known.
    let (ctx, organization_id, id) = (ctx.clone(), caller.organization_id.clone(), id.to_owned());
    tokio::spawn(async move {
        or_not_found(
            ctx.store
                .delete_user(&organization_id, &id, Some(&audit))
                .await,
            || format!("user {id} not found"),
        )?;
        super::announce(&ctx, regente_store::Notice::UserDeleted { user_id: id }).await;
        Ok(())
    })
    .await
    .map_err(|e| Error::Internal(anyhow::anyhow!("deleting the user failed: {e}")))?
}

/// Gives a user of the caller's organisation another role. Admins cannot
/// change their own (an organisation keeps the admin who acts). Tokens known
/// here are checked again at once; other servers sharing the store see the
/// new role within [`super::auth::RECHECK_AFTER`].
pub async fn set_role(ctx: &Context, caller: &Caller, id: &str, role: &str) -> Result<User> {
    let role = Role::parse(role).ok_or_else(|| {
        Error::Invalid(format!(
            "role {role:?} is unknown: use \"admin\" or \"integration\""
        ))
    })?;
    if id == caller.user_id {
        return Err(Error::Conflict("you cannot change your own role".into()));
    }
    let not_found = || format!("user {id} not found");
    if !regente_core::is_valid_id(id) {
        return Err(Error::NotFound(not_found()));
    }
    let audit = super::audit::record(
        ctx,
        caller,
        "user.set_role",
        id,
        json!({"role": role.as_str()}),
    );
    or_not_found(
        ctx.store
            .set_user_role(&caller.organization_id, id, role, Some(&audit))
            .await,
        not_found,
    )?;
    ctx.auth.forget_user(id);
    or_not_found(ctx.store.get_user(id).await, not_found)
}

/// The name of a user of the caller's organisation, or `api-key:NAME` for one
/// of its API keys, for showing who did what; `None` for a user deleted since
/// (or another organisation's).
pub async fn name_of(ctx: &Context, caller: &Caller, id: &str) -> Result<Option<String>> {
    match ctx.store.get_user(id).await {
        Ok(user) if user.organization_id == caller.organization_id => Ok(Some(user.username)),
        Ok(_) => Ok(None),
        Err(regente_store::Error::NotFound) => super::api_keys::name_of(ctx, caller, id).await,
        Err(e) => Err(e.into()),
    }
}

/// Sets a new password for `username`, for an operator with access to the
/// store itself (`regente admin reset-password`), with or without a server
/// running. Returns the password: the one given, or a generated one.
pub async fn reset_password(
    store: &dyn regente_store::Store,
    username: &str,
    password: Option<String>,
) -> Result<String> {
    let password = password.unwrap_or_else(|| super::random_alphanumeric(24));
    check_new_password(&password)?;
    let user = store
        .find_user_by_username(username)
        .await?
        .ok_or_else(|| Error::NotFound(format!("there is no user {username:?} in this store")))?;
    let hashing = password.clone();
    let hash = tokio::task::spawn_blocking(move || super::auth::hash_password(&hashing))
        .await
        .map_err(|e| Error::Internal(anyhow::anyhow!("password hashing failed: {e}")))??;
    store.set_password(&user.id, &hash).await?;
    tracing::info!(username = %username, "password reset");
    Ok(password)
}
