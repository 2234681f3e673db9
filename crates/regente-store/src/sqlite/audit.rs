//! The audit log on SQLite. A change's record is inserted by [`insert_audit`]
//! inside the change's write closure, so it shares the write's savepoint: a
//! write undone in a batch takes its record along.

use async_trait::async_trait;
use rusqlite::types::Value as SqlValue;
use rusqlite::{params, params_from_iter, Connection};

use super::{all, change, one, SqliteStore};
use crate::audit::{audit_select, INSERT_AUDIT};
use crate::rows::{audit_record_from, FilterValue};
use crate::{AuditEntry, AuditFilter, AuditRecord, AuditStore, Error, Millis, Result};

/// Writes `entry`, if any, in the caller's transaction.
pub(super) fn insert_audit(conn: &Connection, entry: Option<&AuditEntry>) -> Result<()> {
    let Some(entry) = entry else {
        return Ok(());
    };
    change(
        conn,
        INSERT_AUDIT,
        params![
            entry.organization_id,
            entry.time,
            entry.actor_id,
            entry.actor_name,
            entry.action,
            entry.object_type,
            entry.object_id,
            entry.address,
            entry.summary.to_string()
        ],
    )
    .map(drop)
}

/// Writes `entry` for a change of one row that changed `changed` rows:
/// [`Error::NotFound`], and nothing written, when it changed none.
pub(super) fn audit_one(
    conn: &Connection,
    changed: usize,
    entry: Option<&AuditEntry>,
) -> Result<()> {
    match changed {
        0 => Err(Error::NotFound),
        _ => insert_audit(conn, entry),
    }
}

/// Deletes the row `id` of `organization_id` from `table` and writes `entry`
/// with it; [`Error::NotFound`] when there is none. `table` is a constant of
/// the store's schema, never input.
pub(super) fn delete_audited(
    conn: &Connection,
    table: &'static str,
    organization_id: &str,
    id: &str,
    entry: Option<&AuditEntry>,
) -> Result<()> {
    let deleted = change(
        conn,
        &format!("DELETE FROM {table} WHERE organization_id = ?1 AND id = ?2"),
        [organization_id, id],
    )?;
    audit_one(conn, deleted, entry)
}

/// Sets a value of the row `id` of `organization_id` by `change` (`?1` the
/// value, `?2` the organisation, `?3` the id), which leaves out a row that
/// already holds it, and writes `entry` with it. When it changed no row,
/// `exists` (`?1` the organisation, `?2` the id) tells whether the row is
/// there, already as asked (nothing written), or not ([`Error::NotFound`]).
pub(super) fn set_audited(
    conn: &Connection,
    (change_sql, exists_sql): (&str, &str),
    (organization_id, id): (&str, &str),
    value: &str,
    entry: Option<&AuditEntry>,
) -> Result<()> {
    if change(conn, change_sql, [value, organization_id, id])? > 0 {
        return insert_audit(conn, entry);
    }
    match one(conn, exists_sql, [organization_id, id], |_| Ok(()))? {
        Some(()) => Ok(()),
        None => Err(Error::NotFound),
    }
}

#[async_trait]
impl AuditStore for SqliteStore {
    async fn record_audit(&self, entry: &AuditEntry) -> Result<()> {
        let entry = entry.clone();
        self.write(move |conn| insert_audit(conn, Some(&entry)))
            .await
    }

    async fn audit_records(
        &self,
        organization_id: &str,
        filter: &AuditFilter,
    ) -> Result<Vec<AuditRecord>> {
        let (sql, values) = audit_select(organization_id, filter);
        let values: Vec<SqlValue> = values
            .into_iter()
            .map(|value| match value {
                FilterValue::Text(text) => SqlValue::Text(text.to_owned()),
                FilterValue::Int(number) => SqlValue::Integer(number),
            })
            .collect();
        self.read_blocking(move |conn| {
            all(conn, &sql, params_from_iter(values), |row| {
                audit_record_from(row)
            })
        })
        .await
    }

    async fn prune_audit(&self, older_than: Millis) -> Result<u64> {
        // Through the records' index on time: records are written by admin
        // changes, far fewer than events, so keeping that index up costs little.
        self.prune_batches(
            "DELETE FROM audit_records WHERE seq IN \
             (SELECT seq FROM audit_records WHERE time < ?1 LIMIT ?2)",
            older_than,
        )
        .await
    }
}
