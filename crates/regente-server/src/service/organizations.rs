//! Organisations: the first is made at bootstrap; its admins may create others.

use regente_core::Role;
use regente_store::Organization;
use tracing::info;

use super::{new_id, now_millis, users, Caller, Context, Error, Result};

pub async fn create(
    ctx: &Context,
    caller: &Caller,
    name: &str,
    admin_username: &str,
    admin_password: &str,
) -> Result<Organization> {
    let callers_organization = ctx.store.get_organization(&caller.organization_id).await?;
    if !callers_organization.is_root {
        return Err(Error::Forbidden(
            "only admins of the first organization can create organizations".into(),
        ));
    }
    let name = name.trim();
    if name.is_empty() || name.len() > 200 || name.chars().any(char::is_control) {
        return Err(Error::Invalid(
            "organization name must have 1 to 200 bytes, with no control characters".into(),
        ));
    }
    let organization = Organization {
        id: new_id(),
        name: name.to_owned(),
        is_root: false,
        created_at: now_millis(),
    };
    let admin = users::new_user(
        ctx,
        &organization.id,
        admin_username,
        admin_password,
        Role::Admin,
    )
    .await?;
    ctx.store
        .create_organization(&organization, &admin)
        .await
        .map_err(|e| match e {
            regente_store::Error::Conflict(what) => {
                Error::Conflict(format!("{what} already exists"))
            }
            other => other.into(),
        })?;
    info!(organization = %organization.id, "organization created");
    Ok(organization)
}

/// On a store with no user: makes the first organisation and its admin. Returns
/// the generated password when none was configured, to be shown once.
pub async fn bootstrap(ctx: &Context) -> anyhow::Result<Option<String>> {
    if ctx.store.count_users().await? > 0 {
        return Ok(None);
    }
    let generated = ctx
        .config
        .admin_password
        .is_none()
        .then(|| super::random_alphanumeric(24));
    let password = ctx
        .config
        .admin_password
        .clone()
        .or_else(|| generated.clone())
        .unwrap_or_default();
    let username = &ctx.config.admin_username;
    let created = match ctx.store.root_organization().await? {
        Some(root) => {
            let admin = users::new_user(ctx, &root.id, username, &password, Role::Admin).await?;
            ctx.store.create_user(&admin).await
        }
        None => {
            let root = Organization {
                id: new_id(),
                name: "default".into(),
                is_root: true,
                created_at: now_millis(),
            };
            let admin = users::new_user(ctx, &root.id, username, &password, Role::Admin).await?;
            ctx.store.create_organization(&root, &admin).await
        }
    };
    match created {
        Ok(()) => {
            info!(username = %username, "first admin created");
            Ok(generated)
        }
        // Servers starting together on one empty database: another one won.
        Err(regente_store::Error::Conflict(_)) if ctx.store.count_users().await? > 0 => {
            info!("the first admin was created by another server");
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}
