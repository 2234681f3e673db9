//! The audit log on PostgreSQL. A change's record is inserted by
//! [`insert_audit`] on the change's transaction, before its commit.

use async_trait::async_trait;
use sqlx::postgres::PgQueryResult;
use sqlx::{PgConnection, PgPool};

use super::events::prune_older;
use super::{bound, other, PostgresStore};
use crate::audit::{audit_select, INSERT_AUDIT};
use crate::rows::{audit_record_from, FilterValue};
use crate::{AuditEntry, AuditFilter, AuditRecord, AuditStore, Error, Millis, Result};

/// `sql` with each `?` turned into `$1`, `$2`, ... in order.
fn numbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut next = 0;
    for c in sql.chars() {
        if c == '?' {
            next += 1;
            out.push_str(&format!("${next}"));
        } else {
            out.push(c);
        }
    }
    out
}

/// Writes `entry`, if any, on the caller's transaction.
pub(super) async fn insert_audit(
    conn: &mut PgConnection,
    entry: Option<&AuditEntry>,
) -> Result<()> {
    let Some(entry) = entry else {
        return Ok(());
    };
    sqlx::query(&numbered(INSERT_AUDIT))
        .bind(&entry.organization_id)
        .bind(entry.time)
        .bind(&entry.actor_id)
        .bind(&entry.actor_name)
        .bind(&entry.action)
        .bind(&entry.object_type)
        .bind(&entry.object_id)
        .bind(&entry.address)
        .bind(entry.summary.to_string())
        .execute(conn)
        .await
        .map_err(other)?;
    Ok(())
}

/// Writes `entry`, on the caller's transaction, for a change of one row
/// that did `done`: [`Error::NotFound`], and nothing written, when it changed
/// none.
pub(super) async fn audit_one(
    conn: &mut PgConnection,
    done: PgQueryResult,
    entry: Option<&AuditEntry>,
) -> Result<()> {
    if done.rows_affected() == 0 {
        return Err(Error::NotFound);
    }
    insert_audit(conn, entry).await
}

/// Deletes the row `id` of `organization_id` from `table` and writes `entry`
/// with it, on the caller's transaction; [`Error::NotFound`] when there is
/// none. `table` is a constant of the store's schema, never input.
pub(super) async fn delete_audited(
    conn: &mut PgConnection,
    table: &'static str,
    organization_id: &str,
    id: &str,
    entry: Option<&AuditEntry>,
) -> Result<()> {
    let done = sqlx::query(&format!(
        "DELETE FROM {table} WHERE organization_id = $1 AND id = $2"
    ))
    .bind(organization_id)
    .bind(id)
    .execute(&mut *conn)
    .await
    .map_err(other)?;
    audit_one(conn, done, entry).await
}

/// Sets a value of the row `id` of `organization_id` by `change` (`$1` the
/// value, `$2` the organisation, `$3` the id), which leaves out a row that
/// already holds it, and writes `entry` with it, in one transaction. When it
/// changed no row, `exists` (`$1` the organisation, `$2` the id) tells whether
/// the row is there, already as asked (nothing written), or not
/// ([`Error::NotFound`]).
pub(super) async fn set_audited(
    pool: &PgPool,
    (change_sql, exists_sql): (&str, &str),
    (organization_id, id): (&str, &str),
    value: &str,
    entry: Option<&AuditEntry>,
) -> Result<()> {
    let mut tx = pool.begin().await.map_err(other)?;
    let done = bound(change_sql, &[value, organization_id, id])
        .execute(&mut *tx)
        .await
        .map_err(other)?;
    if done.rows_affected() == 0 {
        let found = bound(exists_sql, &[organization_id, id])
            .fetch_optional(&mut *tx)
            .await
            .map_err(other)?;
        return found.map(drop).ok_or(Error::NotFound);
    }
    insert_audit(&mut tx, entry).await?;
    tx.commit().await.map_err(other)
}

#[async_trait]
impl AuditStore for PostgresStore {
    async fn record_audit(&self, entry: &AuditEntry) -> Result<()> {
        let mut conn = self.pool.acquire().await.map_err(other)?;
        insert_audit(&mut conn, Some(entry)).await
    }

    async fn audit_records(
        &self,
        organization_id: &str,
        filter: &AuditFilter,
    ) -> Result<Vec<AuditRecord>> {
        let (sql, values) = audit_select(organization_id, filter);
        let sql = numbered(&sql);
        let query = values
            .into_iter()
            .fold(sqlx::query(&sql), |query, value| match value {
                FilterValue::Text(text) => query.bind(text),
                FilterValue::Int(number) => query.bind(number),
            });
        let rows = query.fetch_all(&self.pool).await.map_err(other)?;
        rows.iter().map(audit_record_from).collect()
    }

    async fn prune_audit(&self, older_than: Millis) -> Result<u64> {
        prune_older(&self.pool, "audit_records", older_than).await
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn marks_become_numbered_placeholders() {
        assert_eq!(
            super::numbered("a = ? AND b IN (?, ?)"),
            "a = $1 AND b IN ($2, $3)"
        );
    }
}
