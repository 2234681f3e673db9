//! The audit log: one record per change made by a person (or the server acting
//! for one) through the admin API or the console, and for a few things that
//! change nothing but matter to operators (a failed login, a credential handed
//! out to a robot).
//!
//! - **A record exists if and only if its change was committed.** Each store
//!   method that makes such a change takes `audit: Option<&AuditEntry>` and
//!   inserts the record in the change's own transaction (under the write's
//!   savepoint on SQLite, in the transaction on PostgreSQL), so no second write
//!   can be skipped by a crash. A change refused (a conflict, nothing found)
//!   writes no record. [`AuditStore::record_audit`] writes a record alone, for
//!   what has no change of its own.
//! - **Append-only**: nothing updates a record (a trigger refuses it on both
//!   backends); only retention ([`AuditStore::prune_audit`]) deletes the oldest.
//! - Summaries are small JSON objects chosen by the server, never secrets.

use async_trait::async_trait;
use serde_json::Value;

use crate::rows::FilterValue;
use crate::{Millis, Result};

/// A record to write: who did what to which object, when, from where.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    pub organization_id: String,
    pub time: Millis,
    /// A user's id, or `KIND:ID` for the server acting on its own.
    pub actor_id: String,
    pub actor_name: String,
    /// `OBJECT.VERB`, e.g. `user.create`, `schedule.pause`.
    pub action: String,
    pub object_type: String,
    pub object_id: String,
    /// The client address the server saw; `None` for the server itself.
    pub address: Option<String>,
    /// A small JSON object saying what changed, never a secret.
    pub summary: Value,
}

/// A stored record, numbered in the order it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    pub seq: i64,
    pub entry: AuditEntry,
}

/// Which of an organisation's records to read, newest first.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// The actor's id or name.
    pub actor: Option<String>,
    pub action: Option<String>,
    pub object_type: Option<String>,
    pub object_id: Option<String>,
    /// At or after this time.
    pub from: Option<Millis>,
    /// Before this time.
    pub to: Option<Millis>,
    /// Only records older than this one (a page's cursor: the last `seq` read).
    pub before_seq: Option<i64>,
    pub limit: u32,
}

#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Writes a record on its own, for what changes nothing else (a failed
    /// login, a credential handed out).
    async fn record_audit(&self, entry: &AuditEntry) -> Result<()>;
    /// The organisation's records matching `filter`, newest first.
    async fn audit_records(
        &self,
        organization_id: &str,
        filter: &AuditFilter,
    ) -> Result<Vec<AuditRecord>>;
    /// Deletes the records written before `older_than`, in bounded batches;
    /// how many.
    async fn prune_audit(&self, older_than: Millis) -> Result<u64>;
}

/// The columns [`crate::rows::audit_record_from`] reads, in the order the
/// inserts bind them (`seq` aside).
pub(crate) const AUDIT_COLUMNS: &str = "seq, organization_id, time, actor_id, actor_name, action, \
     object_type, object_id, address, summary";

/// The insert, with `?` marks the backends turn into their placeholders.
pub(crate) const INSERT_AUDIT: &str = "INSERT INTO audit_records (organization_id, time, \
     actor_id, actor_name, action, object_type, object_id, address, summary) \
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)";

/// The conditions of an organisation's records matching `filter`, each with
/// one `?` for its value, joined with `AND`. Each backend writes its own
/// placeholders.
pub(crate) fn audit_conditions<'a>(
    organization_id: &'a str,
    filter: &'a AuditFilter,
) -> Vec<(&'static str, FilterValue<'a>)> {
    let mut conditions = vec![("organization_id = ?", FilterValue::Text(organization_id))];
    if let Some(actor) = &filter.actor {
        conditions.push(("? IN (actor_id, actor_name)", FilterValue::Text(actor)));
    }
    if let Some(action) = &filter.action {
        conditions.push(("action = ?", FilterValue::Text(action)));
    }
    if let Some(object_type) = &filter.object_type {
        conditions.push(("object_type = ?", FilterValue::Text(object_type)));
    }
    if let Some(object_id) = &filter.object_id {
        conditions.push(("object_id = ?", FilterValue::Text(object_id)));
    }
    if let Some(from) = filter.from {
        conditions.push(("time >= ?", FilterValue::Int(from)));
    }
    if let Some(to) = filter.to {
        conditions.push(("time < ?", FilterValue::Int(to)));
    }
    if let Some(before) = filter.before_seq {
        conditions.push(("seq < ?", FilterValue::Int(before)));
    }
    conditions
}

/// The select of [`audit_conditions`], newest first, with `?` marks (the
/// last one the limit) and the values in their order.
pub(crate) fn audit_select<'a>(
    organization_id: &'a str,
    filter: &'a AuditFilter,
) -> (String, Vec<FilterValue<'a>>) {
    let conditions = audit_conditions(organization_id, filter);
    let (clauses, mut values): (Vec<&str>, Vec<FilterValue>) = conditions.into_iter().unzip();
    values.push(FilterValue::Int(filter.limit.into()));
    let sql = format!(
        "SELECT {AUDIT_COLUMNS} FROM audit_records WHERE {} ORDER BY seq DESC LIMIT ?",
        clauses.join(" AND ")
    );
    (sql, values)
}

/// The record of a change that made a new version of something named (a
/// robot's package, a flow's definition), completed with what only the store
/// knows: the object's id and the version made.
pub(crate) fn of_version(entry: Option<&AuditEntry>, id: &str, version: u32) -> Option<AuditEntry> {
    let mut entry = entry?.clone();
    entry.object_id = id.to_owned();
    if let Value::Object(summary) = &mut entry.summary {
        summary.insert("version".into(), version.into());
    }
    Some(entry)
}
