//! Runtimes on PostgreSQL.

use async_trait::async_trait;

use sqlx::Row;

use super::audit::{audit_one, insert_audit, set_audited};
use super::events::insert_events;
use super::{conflict_as, fetch_all, fetch_optional, other, PostgresStore, UNSYNCED};
use crate::rows::{runtime_from, runtime_session_from};
use crate::rules::{runtime_offline_event, runtime_online_event};
use crate::{
    AuditEntry, Error, Millis, NewRuntime, Result, Runtime, RuntimeDeletion, RuntimeSession,
    RuntimeStore,
};

/// The runtime's organisation and current connection, its row locked until the
/// transaction ends, so that connects and disconnects of one runtime are
/// ordered.
async fn lock_runtime_session(
    conn: &mut sqlx::PgConnection,
    runtime_id: &str,
) -> Result<Option<(String, Option<String>)>> {
    let row =
        sqlx::query("SELECT organization_id, session_id FROM runtimes WHERE id = $1 FOR UPDATE")
            .bind(runtime_id)
            .fetch_optional(conn)
            .await
            .map_err(other)?;
    row.map(|row| {
        Ok((
            row.try_get("organization_id").map_err(other)?,
            row.try_get("session_id").map_err(other)?,
        ))
    })
    .transpose()
}

#[async_trait]
impl RuntimeStore for PostgresStore {
    async fn create_runtime(&self, new: &NewRuntime, audit: Option<&AuditEntry>) -> Result<()> {
        let runtime = &new.runtime;
        let mut tx = self.pool.begin().await.map_err(other)?;
        sqlx::query(
            "INSERT INTO runtimes (id, organization_id, name, key_hash, slots, last_seen, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&runtime.id)
        .bind(&runtime.organization_id)
        .bind(&runtime.name)
        .bind(&new.key_hash)
        .bind(runtime.slots as i64)
        .bind(runtime.last_seen)
        .bind(runtime.created_at)
        .execute(&mut *tx)
        .await
        .map_err(conflict_as("a runtime with this id or key"))?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(other)
    }

    async fn get_runtime(&self, organization_id: &str, id: &str) -> Result<Runtime> {
        fetch_optional(
            &self.pool,
            "SELECT * FROM runtimes WHERE organization_id = $1 AND id = $2 AND deleted_at IS NULL",
            &[organization_id, id],
            runtime_from,
        )
        .await?
        .ok_or(Error::NotFound)
    }

    async fn runtime_exists(&self, organization_id: &str, id: &str) -> Result<bool> {
        Ok(fetch_optional(
            &self.pool,
            "SELECT 1 AS found FROM runtimes \
             WHERE organization_id = $1 AND id = $2 AND deleted_at IS NULL",
            &[organization_id, id],
            |_| Ok(()),
        )
        .await?
        .is_some())
    }

    async fn find_runtime_by_key_hash(&self, key_hash: &str) -> Result<Option<Runtime>> {
        fetch_optional(
            &self.pool,
            "SELECT * FROM runtimes WHERE key_hash = $1 AND deleted_at IS NULL",
            &[key_hash],
            runtime_from,
        )
        .await
    }

    async fn list_runtimes(&self, organization_id: &str) -> Result<Vec<Runtime>> {
        fetch_all(
            &self.pool,
            "SELECT * FROM runtimes WHERE organization_id = $1 AND deleted_at IS NULL \
             ORDER BY created_at, id",
            &[organization_id],
            runtime_from,
        )
        .await
    }

    async fn rename_runtime(
        &self,
        organization_id: &str,
        id: &str,
        name: &str,
        audit: Option<&AuditEntry>,
    ) -> Result<()> {
        set_audited(
            &self.pool,
            (
                "UPDATE runtimes SET name = $1 \
                 WHERE organization_id = $2 AND id = $3 AND deleted_at IS NULL AND name <> $1",
                "SELECT 1 FROM runtimes \
                 WHERE organization_id = $1 AND id = $2 AND deleted_at IS NULL",
            ),
            (organization_id, id),
            name,
            audit,
        )
        .await
    }

    async fn delete_runtime(
        &self,
        organization_id: &str,
        id: &str,
        now: Millis,
        audit: Option<&AuditEntry>,
    ) -> Result<RuntimeDeletion> {
        let mut tx = self.pool.begin().await.map_err(other)?;
        // Locked as a connect or disconnect locks it, so neither races the check.
        let row = sqlx::query(
            "SELECT session_id FROM runtimes \
             WHERE organization_id = $1 AND id = $2 AND deleted_at IS NULL FOR UPDATE",
        )
        .bind(organization_id)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(other)?
        .ok_or(Error::NotFound)?;
        let session: Option<String> = row.try_get("session_id").map_err(other)?;
        if session.is_some() {
            return Ok(RuntimeDeletion::Online);
        }
        let busy: Option<i32> = sqlx::query_scalar(
            "SELECT 1 FROM executions \
             WHERE runtime_id = $1 AND status IN ('PENDENT', 'RUNNING') LIMIT 1",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(other)?;
        if busy.is_some() {
            return Ok(RuntimeDeletion::Busy);
        }
        sqlx::query("UPDATE runtimes SET deleted_at = $1 WHERE id = $2")
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(other)?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(other)?;
        Ok(RuntimeDeletion::Deleted)
    }

    async fn replace_runtime_key(
        &self,
        organization_id: &str,
        id: &str,
        key_hash: &str,
        audit: Option<&AuditEntry>,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(other)?;
        let done =
            sqlx::query("UPDATE runtimes SET key_hash = $1 WHERE organization_id = $2 AND id = $3 AND deleted_at IS NULL")
                .bind(key_hash)
                .bind(organization_id)
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(conflict_as("a runtime with this key"))?;
        audit_one(&mut tx, done, audit).await?;
        tx.commit().await.map_err(other)
    }

    async fn touch_runtime(&self, id: &str, seen: Millis) -> Result<()> {
        // Only when it moves forward: no dead row for a heartbeat that changes
        // nothing. Not flushed on its own, as on SQLite: a last sight lost to a
        // crash of the database only makes the runtime's silence look longer.
        static TOUCH: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
            format!(
                "UPDATE runtimes SET last_seen = $1 FROM {UNSYNCED} \
                 WHERE id = $2 AND (last_seen IS NULL OR last_seen < $1)"
            )
        });
        sqlx::query(&TOUCH)
            .bind(seen)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(other)?;
        Ok(())
    }

    async fn runtime_connected(
        &self,
        runtime_id: &str,
        session_id: &str,
        now: Millis,
    ) -> Result<bool> {
        let mut tx = self.pool.begin().await.map_err(other)?;
        let Some((organization_id, current)) = lock_runtime_session(&mut tx, runtime_id).await?
        else {
            return Err(Error::NotFound);
        };
        sqlx::query(
            "UPDATE runtimes SET session_id = $1, last_seen = GREATEST(COALESCE(last_seen, 0), $2) \
             WHERE id = $3",
        )
        .bind(session_id)
        .bind(now)
        .bind(runtime_id)
        .execute(&mut *tx)
        .await
        .map_err(other)?;
        let came_online = current.is_none();
        if came_online {
            let online = runtime_online_event(&organization_id, runtime_id, session_id, now);
            insert_events(&mut tx, &[online]).await?;
        }
        tx.commit().await.map_err(other)?;
        Ok(came_online)
    }

    async fn runtime_disconnected(
        &self,
        runtime_id: &str,
        session_id: &str,
        reason: &str,
        now: Millis,
    ) -> Result<bool> {
        let mut tx = self.pool.begin().await.map_err(other)?;
        let Some((organization_id, current)) = lock_runtime_session(&mut tx, runtime_id).await?
        else {
            return Ok(false);
        };
        if current.as_deref() != Some(session_id) {
            return Ok(false);
        }
        sqlx::query("UPDATE runtimes SET session_id = NULL WHERE id = $1")
            .bind(runtime_id)
            .execute(&mut *tx)
            .await
            .map_err(other)?;
        let offline = runtime_offline_event(&organization_id, runtime_id, session_id, reason, now);
        insert_events(&mut tx, &[offline]).await?;
        tx.commit().await.map_err(other)?;
        Ok(true)
    }

    async fn silent_runtimes(&self, seen_before: Millis) -> Result<Vec<RuntimeSession>> {
        fetch_all(
            &self.pool,
            "SELECT id, session_id FROM runtimes \
             WHERE session_id IS NOT NULL AND COALESCE(last_seen, 0) < $1 ORDER BY id",
            &[seen_before],
            runtime_session_from,
        )
        .await
    }
}
