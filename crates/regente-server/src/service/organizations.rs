//! Organisations: the first is made at bootstrap; its admins may create others.

use regente_core::Role;
use regente_store::Organization;
use tracing::info;

use super::{new_id, users, Caller, Context, Error, Result};

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
    let name = super::check_name("organization name", name)?;
    let organization = Organization {
        id: new_id(),
        name: name.to_owned(),
        is_root: false,
        created_at: ctx.clock.now(),
    };
    let admin = users::new_user(
        ctx,
        &organization.id,
        admin_username,
        admin_password,
        Role::Admin,
    )
    .await?;
    let summary = serde_json::json!({"name": organization.name, "admin": admin.username});
    let audit = super::audit::record(
        ctx,
        caller,
        "organization.create",
        &organization.id,
        summary,
    );
    ctx.store
        .create_organization(&organization, &admin, Some(&audit))
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

/// The root organisation's id (`None` before the first start made it), read
/// from the store once.
pub async fn root_id(ctx: &Context) -> regente_store::Result<Option<String>> {
    if let Some(id) = ctx.root_organization_id.get() {
        return Ok(Some(id.clone()));
    }
    let root = ctx.store.root_organization().await?;
    Ok(root.map(|root| ctx.root_organization_id.get_or_init(|| root.id).clone()))
}

/// What starting on a store did about the configured first admin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bootstrap {
    /// The first admin was created; with the generated password, to be shown
    /// once, when none was configured.
    Created { generated_password: Option<String> },
    /// The store has users already: the configured admin settings were not
    /// used ([`ignored_admin_settings`] says whether they differ).
    Existing,
}

/// On a store with no user: makes the first organisation and its admin.
pub async fn bootstrap(ctx: &Context) -> anyhow::Result<Bootstrap> {
    if ctx.store.count_users().await? > 0 {
        return Ok(Bootstrap::Existing);
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
            ctx.store.create_user(&admin, None).await
        }
        None => {
            let root = Organization {
                id: new_id(),
                name: "default".into(),
                is_root: true,
                created_at: ctx.clock.now(),
            };
            let admin = users::new_user(ctx, &root.id, username, &password, Role::Admin).await?;
            ctx.store.create_organization(&root, &admin, None).await
        }
    };
    match created {
        Ok(()) => {
            info!(username = %username, "first admin created");
            Ok(Bootstrap::Created {
                generated_password: generated,
            })
        }
        // Servers starting together on one empty database: another one won.
        Err(regente_store::Error::Conflict(_)) if ctx.store.count_users().await? > 0 => {
            info!("the first admin was created by another server");
            Ok(Bootstrap::Existing)
        }
        Err(e) => Err(e.into()),
    }
}

/// Why a configured admin password was not used, when it does not sign in the
/// configured admin of a store that has users already. It verifies a password
/// hash (tens of milliseconds by design): the server asks after it listens.
pub async fn ignored_admin_settings(ctx: &Context) -> anyhow::Result<Option<String>> {
    let Some(password) = &ctx.config.admin_password else {
        return Ok(None);
    };
    let username = &ctx.config.admin_username;
    let stored = ctx.store.find_user_by_username(username).await?;
    let reason = match stored {
        None => format!("this store has no user {username:?}"),
        Some(user) => {
            if ctx
                .auth
                .verify_password(password.as_bytes().to_vec(), Some(user.password_hash))
                .await?
            {
                return Ok(None);
            }
            format!("it is not the stored password of {username:?}")
        }
    };
    Ok(Some(format!(
        "REGENTE_ADMIN_USER/REGENTE_ADMIN_PASSWORD were ignored: they only create the first admin \
         of an empty store, and {reason}; to set a new password, run \
         `regente admin reset-password {username}` with this server's --data-dir or --database-url"
    )))
}
