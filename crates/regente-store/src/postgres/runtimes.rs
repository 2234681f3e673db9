//! Runtimes on PostgreSQL.

use async_trait::async_trait;

use super::{conflict_as, fetch_all, fetch_optional, other, PostgresStore};
use crate::rows::runtime_from;
use crate::{Error, Millis, NewRuntime, Result, Runtime, RuntimeStore};

#[async_trait]
impl RuntimeStore for PostgresStore {
    async fn create_runtime(&self, new: &NewRuntime) -> Result<()> {
        let runtime = &new.runtime;
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
        .execute(&self.pool)
        .await
        .map_err(conflict_as("a runtime with this id or key"))?;
        Ok(())
    }

    async fn get_runtime(&self, organization_id: &str, id: &str) -> Result<Runtime> {
        fetch_optional(
            &self.pool,
            "SELECT * FROM runtimes WHERE organization_id = $1 AND id = $2",
            &[organization_id, id],
            runtime_from,
        )
        .await?
        .ok_or(Error::NotFound)
    }

    async fn find_runtime_by_key_hash(&self, key_hash: &str) -> Result<Option<Runtime>> {
        fetch_optional(
            &self.pool,
            "SELECT * FROM runtimes WHERE key_hash = $1",
            &[key_hash],
            runtime_from,
        )
        .await
    }

    async fn list_runtimes(&self, organization_id: &str) -> Result<Vec<Runtime>> {
        fetch_all(
            &self.pool,
            "SELECT * FROM runtimes WHERE organization_id = $1 ORDER BY created_at, id",
            &[organization_id],
            runtime_from,
        )
        .await
    }

    async fn touch_runtime(&self, id: &str, seen: Millis) -> Result<()> {
        // Only when it moves forward: no dead row for a heartbeat that changes nothing.
        sqlx::query(
            "UPDATE runtimes SET last_seen = $1 \
             WHERE id = $2 AND (last_seen IS NULL OR last_seen < $1)",
        )
        .bind(seen)
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(other)?;
        Ok(())
    }
}
