//! The credentials vault's use cases: credentials written (never read back) by
//! admins, and resolved for a run at its hand-out only.

use std::collections::BTreeMap;

use regente_core::{is_credential_name, is_valid_id, RobotManifest, CREDENTIAL_NAME_RULE};
use regente_store::{Credential, CredentialWrite};
use serde_json::Value;
use tracing::info;

use super::{new_id, or_not_found, Caller, Context, Error, Result};
use crate::vault::{is_sealed_variable, VaultError};

/// Fields one credential may have.
const MAX_FIELDS: usize = 32;
/// Bytes of one value.
const MAX_VALUE_BYTES: usize = 8 * 1024;
const MAX_DESCRIPTION_CHARS: usize = 1_000;
/// Robots one credential may name.
const MAX_ROBOTS: usize = 1_000;

/// What an admin writes: the values and who may have them.
pub struct CredentialInput {
    pub fields: BTreeMap<String, String>,
    pub description: Option<String>,
    /// Robot ids; `None`: every robot of the organisation.
    pub robots: Option<Vec<String>>,
}

fn credential_not_found(id: &str) -> Error {
    Error::NotFound(format!("credential {id} not found"))
}

impl From<VaultError> for Error {
    fn from(error: VaultError) -> Error {
        match error {
            VaultError::Off => Error::Conflict(VaultError::Off.to_string()),
            other => Error::Internal(other.into()),
        }
    }
}

async fn check_input(ctx: &Context, caller: &Caller, input: &CredentialInput) -> Result<()> {
    if input.fields.is_empty() || input.fields.len() > MAX_FIELDS {
        return Err(Error::Invalid(format!(
            "fields must hold 1 to {MAX_FIELDS} values, e.g. {{\"username\": \"...\", \"password\": \"...\"}}"
        )));
    }
    for (field, value) in &input.fields {
        if !is_credential_name(field) {
            return Err(Error::Invalid(format!(
                "field name {:?} is invalid: {CREDENTIAL_NAME_RULE}",
                shorten(field)
            )));
        }
        // The value itself is never repeated in a message.
        if value.is_empty() || value.len() > MAX_VALUE_BYTES || value.contains('\0') {
            return Err(Error::Invalid(format!(
                "field {field:?} must have 1 to {MAX_VALUE_BYTES} bytes and no NUL character"
            )));
        }
    }
    if input
        .description
        .as_ref()
        .is_some_and(|d| d.chars().count() > MAX_DESCRIPTION_CHARS || d.contains('\0'))
    {
        return Err(Error::Invalid(format!(
            "description must have at most {MAX_DESCRIPTION_CHARS} characters and no NUL"
        )));
    }
    if let Some(robots) = &input.robots {
        if robots.len() > MAX_ROBOTS {
            return Err(Error::Invalid(format!(
                "robots may name at most {MAX_ROBOTS} robots"
            )));
        }
        for robot_id in robots {
            let found = is_valid_id(robot_id)
                && ctx
                    .store
                    .get_robot(&caller.organization_id, robot_id)
                    .await
                    .map(|_| true)
                    .or_else(|e| match e {
                        regente_store::Error::NotFound => Ok(false),
                        other => Err(other),
                    })?;
            if !found {
                return Err(Error::NotFound(format!(
                    "robot {} not found",
                    shorten(robot_id)
                )));
            }
        }
    }
    Ok(())
}

fn shorten(text: &str) -> String {
    text.chars().take(64).collect()
}

/// What the audit log says of a credential written: names, never values.
fn write_summary(write: &CredentialWrite) -> Value {
    serde_json::json!({
        "name": write.name,
        "version": write.version,
        "fields": write.values.iter().map(|v| &v.field).collect::<Vec<_>>(),
        "robots": write.robots,
    })
}

fn sealed_write(
    ctx: &Context,
    caller: &Caller,
    id: String,
    name: String,
    version: u32,
    input: CredentialInput,
) -> Result<CredentialWrite> {
    let values = input
        .fields
        .iter()
        .map(|(field, value)| {
            ctx.vault
                .seal_field(&caller.organization_id, &id, version, field, value)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut robots = input.robots;
    if let Some(robots) = &mut robots {
        robots.sort();
        robots.dedup();
    }
    Ok(CredentialWrite {
        id,
        organization_id: caller.organization_id.clone(),
        name,
        description: input.description,
        robots,
        version,
        values,
        by: caller.username.clone(),
        at: ctx.clock.now(),
    })
}

pub async fn create(
    ctx: &Context,
    caller: &Caller,
    name: &str,
    input: CredentialInput,
) -> Result<Credential> {
    if !is_credential_name(name) {
        return Err(Error::Invalid(format!(
            "name {:?} is invalid: {CREDENTIAL_NAME_RULE}",
            shorten(name)
        )));
    }
    check_input(ctx, caller, &input).await?;
    let id = new_id();
    let write = sealed_write(ctx, caller, id.clone(), name.to_owned(), 1, input)?;
    let audit = super::audit::record(ctx, caller, "credential.create", &id, write_summary(&write));
    ctx.store
        .create_credential(&write, Some(&audit))
        .await
        .map_err(|e| match e {
            regente_store::Error::Conflict("a credential with this name") => {
                Error::Conflict(format!("a credential named {name:?} already exists"))
            }
            other => other.into(),
        })?;
    info!(credential = %name, by = %caller.username, "credential created");
    get(ctx, caller, &id).await
}

/// Replaces a credential's values, description and robots: its next version.
/// Runs already handed out keep the values they were given.
pub async fn replace(
    ctx: &Context,
    caller: &Caller,
    id: &str,
    input: CredentialInput,
) -> Result<Credential> {
    let current = get(ctx, caller, id).await?;
    check_input(ctx, caller, &input).await?;
    let write = sealed_write(
        ctx,
        caller,
        id.to_owned(),
        current.name.clone(),
        current.version + 1,
        input,
    )?;
    let audit = super::audit::record(ctx, caller, "credential.replace", id, write_summary(&write));
    or_not_found(
        ctx.store.replace_credential(&write, Some(&audit)).await,
        || format!("credential {id} not found"),
    )
    .map_err(|e| match e {
        Error::Conflict(_) => {
            Error::Conflict("the credential was changed meanwhile: send the request again".into())
        }
        other => other,
    })?;
    info!(credential = %current.name, version = write.version, by = %caller.username, "credential replaced");
    get(ctx, caller, id).await
}

pub async fn delete(ctx: &Context, caller: &Caller, id: &str) -> Result<()> {
    if !is_valid_id(id) {
        return Err(credential_not_found(id));
    }
    let current = get(ctx, caller, id).await?;
    let summary = serde_json::json!({"name": current.name});
    let audit = super::audit::record(ctx, caller, "credential.delete", id, summary);
    or_not_found(
        ctx.store
            .delete_credential(&caller.organization_id, id, Some(&audit))
            .await,
        || format!("credential {id} not found"),
    )?;
    info!(credential_id = %id, by = %caller.username, "credential deleted");
    Ok(())
}

pub async fn get(ctx: &Context, caller: &Caller, id: &str) -> Result<Credential> {
    if !is_valid_id(id) {
        return Err(credential_not_found(id));
    }
    or_not_found(
        ctx.store.get_credential(&caller.organization_id, id).await,
        || format!("credential {id} not found"),
    )
}

pub async fn list(ctx: &Context, caller: &Caller) -> Result<Vec<Credential>> {
    Ok(ctx.store.list_credentials(&caller.organization_id).await?)
}

/// What a run is handed beside its assignment, or why it cannot start.
pub enum Handout {
    Ready {
        /// `{"NAME": {"FIELD": "value"}}`.
        credentials: BTreeMap<String, BTreeMap<String, String>>,
        /// Secret variables opened.
        secret_variables: BTreeMap<String, Value>,
    },
    /// The run ends ERROR with this message, which names what is missing and
    /// never a value.
    Refused(String),
}

/// A run being handed out.
pub struct RunToHand<'a> {
    pub organization_id: &'a str,
    pub runtime_id: &'a str,
    pub execution_id: &'a str,
    pub robot_id: &'a str,
    pub manifest: &'a RobotManifest,
    pub variables: &'a Value,
}

/// Resolves what the run's robot declared it needs from the vault, at its
/// hand-out: each credential must exist and allow the robot, and each field
/// asked for must exist. Every credential handed out is recorded in the audit
/// log, without values.
pub async fn resolve_for_run(ctx: &Context, run: RunToHand<'_>) -> Result<Handout> {
    let mut credentials = BTreeMap::new();
    let mut handed_out = Vec::new();
    for need in &run.manifest.credentials {
        let refused = |why: String| Ok(Handout::Refused(why));
        let sealed = match ctx
            .store
            .sealed_credential(run.organization_id, &need.name)
            .await
        {
            Ok(sealed) => sealed,
            Err(regente_store::Error::NotFound) => {
                return refused(format!(
                    "the robot needs credential {:?}, which does not exist",
                    need.name
                ))
            }
            Err(e) => return Err(e.into()),
        };
        let allowed = sealed
            .credential
            .robots
            .as_ref()
            .is_none_or(|robots| robots.iter().any(|r| r == run.robot_id));
        if !allowed {
            return refused(format!(
                "the robot needs credential {:?}, which this robot is not allowed",
                need.name
            ));
        }
        let mut fields = BTreeMap::new();
        for value in &sealed.values {
            let wanted = need
                .fields
                .as_ref()
                .is_none_or(|wanted| wanted.contains(&value.field));
            if !wanted {
                continue;
            }
            let credential = &sealed.credential;
            match ctx.vault.open_field(
                run.organization_id,
                &credential.id,
                credential.version,
                value,
            ) {
                Ok(plain) => fields.insert(value.field.clone(), plain),
                Err(e) => {
                    return refused(format!("credential {:?} cannot be opened: {e}", need.name))
                }
            };
        }
        if let Some(missing) = need
            .fields
            .iter()
            .flatten()
            .find(|field| !fields.contains_key(*field))
        {
            return refused(format!(
                "the robot needs field {missing:?} of credential {:?}, which has no such field",
                need.name
            ));
        }
        handed_out.push(handed_out_record(ctx, &run, &sealed.credential, &fields));
        credentials.insert(need.name.clone(), fields);
    }
    let mut secret_variables = BTreeMap::new();
    if let Some(variables) = run.variables.as_object() {
        for (name, value) in variables.iter().filter(|(_, v)| is_sealed_variable(v)) {
            match ctx.vault.open_variable(run.organization_id, name, value) {
                Ok(plain) => secret_variables.insert(name.clone(), plain),
                Err(e) => {
                    return Ok(Handout::Refused(format!(
                        "secret variable {name} cannot be opened: {e}"
                    )))
                }
            };
        }
    }
    // Recorded before they leave: a hand-out the log cannot tell of does not happen.
    for record in &handed_out {
        ctx.store.record_audit(record).await?;
    }
    Ok(Handout::Ready {
        credentials,
        secret_variables,
    })
}

/// The audit record of a credential handed to a run, done by its runtime.
fn handed_out_record(
    ctx: &Context,
    run: &RunToHand<'_>,
    credential: &regente_store::Credential,
    fields: &BTreeMap<String, String>,
) -> regente_store::AuditEntry {
    let runtime = super::Caller::system(run.organization_id, "runtime", run.runtime_id);
    super::audit::record(
        ctx,
        &runtime,
        "credential.handed_out",
        &credential.id,
        serde_json::json!({
            "name": credential.name,
            "version": credential.version,
            "execution_id": run.execution_id,
            "robot_id": run.robot_id,
            "fields": fields.keys().collect::<Vec<_>>(),
        }),
    )
}

/// An execution's variables as any API shows them: secrets as `"***"`.
pub fn shown_variables(variables: &Value) -> Value {
    match variables.as_object() {
        Some(object) if object.values().any(is_sealed_variable) => Value::Object(
            object
                .iter()
                .map(|(name, value)| {
                    let shown = if is_sealed_variable(value) {
                        Value::String("***".into())
                    } else {
                        value.clone()
                    };
                    (name.clone(), shown)
                })
                .collect(),
        ),
        _ => variables.clone(),
    }
}

/// A run's resolved variables as stored: each variable the robot declares
/// `secret` sealed (`{"$secret": "..."}`), the others as they are.
pub fn seal_secret_variables(
    ctx: &Context,
    organization_id: &str,
    manifest: &RobotManifest,
    variables: Value,
) -> Result<Value> {
    let Value::Object(mut object) = variables else {
        return Ok(variables);
    };
    for name in &manifest.secret_variables {
        if let Some(value) = object.get_mut(name) {
            *value = ctx.vault.seal_variable(organization_id, name, value)?;
        }
    }
    Ok(Value::Object(object))
}
