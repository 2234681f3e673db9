//! Runtimes on SQLite.

use async_trait::async_trait;
use rusqlite::params;

use super::audit::{audit_one, insert_audit, set_audited};
use super::engine::Durability;
use super::events::insert_events;
use super::{all, change, conflict_as, insert, one, SqliteStore};
use crate::rows::{runtime_from, runtime_session_from, RecordRow};
use crate::rules::{runtime_offline_event, runtime_online_event};
use crate::{
    AuditEntry, Error, Millis, NewRuntime, Result, Runtime, RuntimeDeletion, RuntimeSession,
    RuntimeStore,
};

/// Whether the organisation has the runtime, not deleted.
pub(super) fn runtime_exists(
    conn: &rusqlite::Connection,
    organization_id: &str,
    id: &str,
) -> Result<bool> {
    one(
        conn,
        "SELECT 1 FROM runtimes WHERE organization_id = ?1 AND id = ?2 AND deleted_at IS NULL",
        [organization_id, id],
        |_| Ok(()),
    )
    .map(|found| found.is_some())
}

/// The runtime's organisation and current connection, if it exists.
fn runtime_session(
    conn: &rusqlite::Connection,
    runtime_id: &str,
) -> Result<Option<(String, Option<String>)>> {
    one(
        conn,
        "SELECT organization_id, session_id FROM runtimes WHERE id = ?1",
        [runtime_id],
        |row| Ok((row.text("organization_id")?, row.text_opt("session_id")?)),
    )
}

#[async_trait]
impl RuntimeStore for SqliteStore {
    async fn create_runtime(&self, new: &NewRuntime, audit: Option<&AuditEntry>) -> Result<()> {
        let (new, audit) = (new.clone(), audit.cloned());
        self.write(move |conn| {
            let runtime = &new.runtime;
            insert(
                conn,
                "INSERT INTO runtimes (id, organization_id, name, key_hash, slots, last_seen, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    runtime.id,
                    runtime.organization_id,
                    runtime.name,
                    new.key_hash,
                    runtime.slots,
                    runtime.last_seen,
                    runtime.created_at
                ],
                "a runtime with this id or key",
            )?;
            insert_audit(conn, audit.as_ref())
        })
        .await
    }

    async fn get_runtime(&self, organization_id: &str, id: &str) -> Result<Runtime> {
        self.readers
            .with(|conn| {
                one(
                    conn,
                    "SELECT * FROM runtimes WHERE organization_id = ?1 AND id = ?2 AND deleted_at IS NULL",
                    [organization_id, id],
                    |row| runtime_from(row),
                )
            })?
            .ok_or(Error::NotFound)
    }

    async fn runtime_exists(&self, organization_id: &str, id: &str) -> Result<bool> {
        self.readers
            .with(|conn| runtime_exists(conn, organization_id, id))
    }

    async fn find_runtime_by_key_hash(&self, key_hash: &str) -> Result<Option<Runtime>> {
        self.readers.with(|conn| {
            one(
                conn,
                "SELECT * FROM runtimes WHERE key_hash = ?1 AND deleted_at IS NULL",
                [key_hash],
                |row| runtime_from(row),
            )
        })
    }

    async fn list_runtimes(&self, organization_id: &str) -> Result<Vec<Runtime>> {
        let organization_id = organization_id.to_owned();
        self.read_blocking(move |conn| {
            all(
                conn,
                "SELECT * FROM runtimes WHERE organization_id = ?1 AND deleted_at IS NULL \
                 ORDER BY created_at, id",
                [organization_id],
                |row| runtime_from(row),
            )
        })
        .await
    }

    async fn rename_runtime(
        &self,
        organization_id: &str,
        id: &str,
        name: &str,
        audit: Option<&AuditEntry>,
    ) -> Result<()> {
        let (organization_id, id, name, audit) = (
            organization_id.to_owned(),
            id.to_owned(),
            name.to_owned(),
            audit.cloned(),
        );
        self.write(move |conn| {
            set_audited(
                conn,
                (
                    "UPDATE runtimes SET name = ?1 \
                     WHERE organization_id = ?2 AND id = ?3 AND deleted_at IS NULL \
                     AND name <> ?1",
                    "SELECT 1 FROM runtimes \
                     WHERE organization_id = ?1 AND id = ?2 AND deleted_at IS NULL",
                ),
                (&organization_id, &id),
                &name,
                audit.as_ref(),
            )
        })
        .await
    }

    async fn delete_runtime(
        &self,
        organization_id: &str,
        id: &str,
        now: Millis,
        audit: Option<&AuditEntry>,
    ) -> Result<RuntimeDeletion> {
        let (organization_id, id, audit) =
            (organization_id.to_owned(), id.to_owned(), audit.cloned());
        self.write(move |conn| {
            let online = one(
                conn,
                "SELECT session_id FROM runtimes \
                 WHERE organization_id = ?1 AND id = ?2 AND deleted_at IS NULL",
                [&organization_id, &id],
                |row| Ok(row.text_opt("session_id")?.is_some()),
            )?
            .ok_or(Error::NotFound)?;
            if online {
                return Ok(RuntimeDeletion::Online);
            }
            let busy = one(
                conn,
                "SELECT 1 AS busy FROM executions \
                 WHERE runtime_id = ?1 AND status IN ('PENDENT', 'RUNNING') LIMIT 1",
                [&id],
                |row| row.int("busy"),
            )?;
            if busy.is_some() {
                return Ok(RuntimeDeletion::Busy);
            }
            change(
                conn,
                "UPDATE runtimes SET deleted_at = ?1 WHERE id = ?2",
                params![now, id],
            )?;
            insert_audit(conn, audit.as_ref())?;
            Ok(RuntimeDeletion::Deleted)
        })
        .await
    }

    async fn replace_runtime_key(
        &self,
        organization_id: &str,
        id: &str,
        key_hash: &str,
        audit: Option<&AuditEntry>,
    ) -> Result<()> {
        let (organization_id, id, key_hash, audit) = (
            organization_id.to_owned(),
            id.to_owned(),
            key_hash.to_owned(),
            audit.cloned(),
        );
        self.write(move |conn| {
            let changed = conn
                .prepare_cached(
                    "UPDATE runtimes SET key_hash = ?1 WHERE organization_id = ?2 AND id = ?3 \
                     AND deleted_at IS NULL",
                )
                .and_then(|mut statement| statement.execute(params![key_hash, organization_id, id]))
                .map_err(conflict_as("a runtime with this key"))?;
            audit_one(conn, changed, audit.as_ref())
        })
        .await
    }

    async fn touch_runtime(&self, id: &str, seen: Millis) -> Result<()> {
        let id = id.to_owned();
        // A heartbeat lost to a power loss only makes the runtime look older.
        self.send_write(
            move |conn| {
                change(
                    conn,
                    "UPDATE runtimes SET last_seen = MAX(COALESCE(last_seen, 0), ?1) WHERE id = ?2",
                    params![seen, id],
                )
                .map(drop)
            },
            Durability::Written,
        )
        .await
    }

    async fn runtime_connected(
        &self,
        runtime_id: &str,
        session_id: &str,
        now: Millis,
    ) -> Result<bool> {
        let (runtime_id, session_id) = (runtime_id.to_owned(), session_id.to_owned());
        self.write(move |conn| {
            let Some((organization_id, current)) = runtime_session(conn, &runtime_id)? else {
                return Err(Error::NotFound);
            };
            change(
                conn,
                "UPDATE runtimes SET session_id = ?1, last_seen = MAX(COALESCE(last_seen, 0), ?2) \
                 WHERE id = ?3",
                params![session_id, now, runtime_id],
            )?;
            if current.is_some() {
                return Ok(false);
            }
            insert_events(
                conn,
                &[runtime_online_event(
                    &organization_id,
                    &runtime_id,
                    &session_id,
                    now,
                )],
            )?;
            Ok(true)
        })
        .await
    }

    async fn runtime_disconnected(
        &self,
        runtime_id: &str,
        session_id: &str,
        reason: &str,
        now: Millis,
    ) -> Result<bool> {
        let (runtime_id, session_id, reason) = (
            runtime_id.to_owned(),
            session_id.to_owned(),
            reason.to_owned(),
        );
        self.write(move |conn| {
            let Some((organization_id, Some(current))) = runtime_session(conn, &runtime_id)? else {
                return Ok(false);
            };
            if current != session_id {
                return Ok(false);
            }
            change(
                conn,
                "UPDATE runtimes SET session_id = NULL WHERE id = ?1",
                [&runtime_id],
            )?;
            insert_events(
                conn,
                &[runtime_offline_event(
                    &organization_id,
                    &runtime_id,
                    &session_id,
                    &reason,
                    now,
                )],
            )?;
            Ok(true)
        })
        .await
    }

    async fn silent_runtimes(&self, seen_before: Millis) -> Result<Vec<RuntimeSession>> {
        self.read_blocking(move |conn| {
            all(
                conn,
                "SELECT id, session_id FROM runtimes \
                 WHERE session_id IS NOT NULL AND COALESCE(last_seen, 0) < ?1 ORDER BY id",
                [seen_before],
                |row| runtime_session_from(row),
            )
        })
        .await
    }
}
