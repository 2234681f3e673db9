//! The audit log: who changed what, when, from where (see
//! [`regente_store::audit`]). A use case that changes something builds the
//! change's record with [`record`] and hands it to the store method making the
//! change, which commits both together; what changes nothing (a failed login,
//! a credential handed out) is written on its own. Summaries never hold a
//! secret: no password, credential value, key or token.

use std::collections::HashSet;
use std::net::IpAddr;

use regente_store::{AuditEntry, AuditFilter, AuditRecord};
use serde_json::{json, Value};

use super::{Caller, Context, Result};

/// Records an answer holds at most.
pub const MAX_LIMIT: u32 = 200;
/// Records an answer holds when the caller does not say.
pub const DEFAULT_LIMIT: u32 = 50;
/// Characters of a username tried at a failed login that are kept.
const TRIED_USERNAME_CHARS: usize = 254;
/// The actor of a failed login: nobody signed in.
const ANONYMOUS: &str = "anonymous";

/// The record of `caller` doing `action` (`OBJECT.VERB`) to an object, now.
pub fn record(
    ctx: &Context,
    caller: &Caller,
    action: &str,
    object_id: &str,
    summary: Value,
) -> AuditEntry {
    let object_type = action.split('.').next().unwrap_or(action);
    AuditEntry {
        organization_id: caller.organization_id.clone(),
        time: ctx.clock.now(),
        actor_id: caller.user_id.clone(),
        actor_name: caller.username.clone(),
        action: action.to_owned(),
        object_type: object_type.to_owned(),
        object_id: object_id.to_owned(),
        address: caller.address.map(|address| address.to_string()),
        summary,
    }
}

/// [`record`] for a person's act; `None` for the server acting on its own (a
/// flow stopping its step), whose acts the event stream tells.
pub fn of_person(
    ctx: &Context,
    caller: &Caller,
    action: &str,
    object_id: &str,
    summary: Value,
) -> Option<AuditEntry> {
    (!caller.is_system()).then(|| record(ctx, caller, action, object_id, summary))
}

/// A failed login: recorded in the organisation of the user named, or, for a
/// name no user has, in the root organisation (whose admins run the server).
/// A record that cannot be written is logged: the login's answer stays the same.
pub async fn login_failed(
    ctx: &Context,
    user: Option<&regente_store::User>,
    username: &str,
    client: IpAddr,
) {
    let organization_id = match user {
        Some(user) => Some(user.organization_id.clone()),
        None => match super::organizations::root_id(ctx).await {
            Ok(root) => root,
            Err(e) => {
                tracing::warn!(error = format!("{e:#}"), "cannot record a failed login");
                return;
            }
        },
    };
    let Some(organization_id) = organization_id else {
        return;
    };
    // Cut short, and without NUL, which PostgreSQL text cannot hold.
    let tried: String = username
        .chars()
        .take(TRIED_USERNAME_CHARS)
        .map(|c| {
            if c == '\0' {
                char::REPLACEMENT_CHARACTER
            } else {
                c
            }
        })
        .collect();
    let entry = AuditEntry {
        organization_id,
        time: ctx.clock.now(),
        actor_id: ANONYMOUS.into(),
        actor_name: tried.clone(),
        action: "auth.login_failed".into(),
        object_type: "user".into(),
        object_id: user.map_or_else(|| tried.clone(), |user| user.id.clone()),
        address: Some(client.to_string()),
        summary: json!({"username": tried, "known": user.is_some()}),
    };
    if let Err(e) = ctx.store.record_audit(&entry).await {
        tracing::warn!(error = format!("{e:#}"), "cannot record a failed login");
    }
}

/// A page of records, newest first, and the cursor of the next one (`None`
/// when this page is the last).
pub struct Page {
    pub records: Vec<AuditRecord>,
    pub next: Option<i64>,
}

/// The caller's organisation's records matching `filter` (its `before_seq`
/// the `next` of the page before), newest first; `filter.limit` 0 asks for
/// [`DEFAULT_LIMIT`].
pub async fn list(ctx: &Context, caller: &Caller, mut filter: AuditFilter) -> Result<Page> {
    if filter.limit == 0 {
        filter.limit = DEFAULT_LIMIT;
    }
    let limit = filter.limit;
    if limit > MAX_LIMIT {
        return Err(super::Error::Invalid(format!(
            "limit must be between 1 and {MAX_LIMIT}"
        )));
    }
    // One more than asked tells whether a next page exists.
    filter.limit += 1;
    let mut records = ctx
        .store
        .audit_records(&caller.organization_id, &filter)
        .await?;
    let next = if records.len() > limit as usize {
        records.truncate(limit as usize);
        records.last().map(|record| record.seq)
    } else {
        None
    };
    Ok(Page { records, next })
}

/// What kind of actor did what a record tells. A record names its actor by
/// id and name, and a name does not tell (a user may be named `api-key:x`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActorKind {
    User,
    ApiKey,
    /// The server acting on its own (see [`Caller::system`]).
    System,
    /// Nobody signed in: a failed login.
    Anonymous,
}

impl ActorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ActorKind::User => "user",
            ActorKind::ApiKey => "api_key",
            ActorKind::System => "system",
            ActorKind::Anonymous => "anonymous",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            ActorKind::User => "user",
            ActorKind::ApiKey => "API key",
            ActorKind::System => "system",
            ActorKind::Anonymous => "not signed in",
        }
    }
}

/// The kind of each record's actor, in order, told by its id: the server's
/// own are `KIND:ID`, a failed login's [`ANONYMOUS`], and an id of one of the
/// organisation's API keys (revoked ones too) is that key's; any other is a
/// user's, deleted since or not.
pub async fn actor_kinds(
    ctx: &Context,
    caller: &Caller,
    records: &[AuditRecord],
) -> Result<Vec<ActorKind>> {
    let plain = |id: &str| id != ANONYMOUS && !id.contains(':');
    let keys: HashSet<String> = if records.iter().any(|r| plain(&r.entry.actor_id)) {
        ctx.store
            .list_api_keys(&caller.organization_id)
            .await?
            .into_iter()
            .map(|key| key.id)
            .collect()
    } else {
        HashSet::new()
    };
    Ok(records
        .iter()
        .map(|record| match record.entry.actor_id.as_str() {
            ANONYMOUS => ActorKind::Anonymous,
            id if id.contains(':') => ActorKind::System,
            id if keys.contains(id) => ActorKind::ApiKey,
            _ => ActorKind::User,
        })
        .collect())
}
