//! Runtimes on SQLite.

use async_trait::async_trait;
use rusqlite::params;

use super::engine::Durability;
use super::{all, change, insert, one, SqliteStore};
use crate::rows::runtime_from;
use crate::{Error, Millis, NewRuntime, Result, Runtime, RuntimeStore};

#[async_trait]
impl RuntimeStore for SqliteStore {
    async fn create_runtime(&self, new: &NewRuntime) -> Result<()> {
        let new = new.clone();
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
            )
        })
        .await
    }

    async fn get_runtime(&self, organization_id: &str, id: &str) -> Result<Runtime> {
        self.readers
            .with(|conn| {
                one(
                    conn,
                    "SELECT * FROM runtimes WHERE organization_id = ?1 AND id = ?2",
                    [organization_id, id],
                    |row| runtime_from(row),
                )
            })?
            .ok_or(Error::NotFound)
    }

    async fn find_runtime_by_key_hash(&self, key_hash: &str) -> Result<Option<Runtime>> {
        self.readers.with(|conn| {
            one(
                conn,
                "SELECT * FROM runtimes WHERE key_hash = ?1",
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
                "SELECT * FROM runtimes WHERE organization_id = ?1 ORDER BY created_at, id",
                [organization_id],
                |row| runtime_from(row),
            )
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
}
