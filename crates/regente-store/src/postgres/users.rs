//! Organisations and users on PostgreSQL.

use async_trait::async_trait;
use regente_core::Role;

use super::audit::{delete_audited, insert_audit, set_audited};
use super::{change_one, conflict_as, fetch_all, fetch_optional, other, PostgresStore, NO_ARGS};
use crate::rows::{organization_from, user_from};
use crate::{AuditEntry, Error, Organization, OrganizationStore, Result, User};

#[async_trait]
impl OrganizationStore for PostgresStore {
    async fn root_organization(&self) -> Result<Option<Organization>> {
        fetch_optional(
            &self.pool,
            "SELECT * FROM organizations WHERE is_root ORDER BY created_at LIMIT 1",
            NO_ARGS,
            organization_from,
        )
        .await
    }

    async fn get_organization(&self, id: &str) -> Result<Organization> {
        fetch_optional(
            &self.pool,
            "SELECT * FROM organizations WHERE id = $1",
            &[id],
            organization_from,
        )
        .await?
        .ok_or(Error::NotFound)
    }

    async fn create_organization(
        &self,
        organization: &Organization,
        admin: &User,
        audit: Option<&AuditEntry>,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(other)?;
        sqlx::query(
            "INSERT INTO organizations (id, name, is_root, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(&organization.id)
        .bind(&organization.name)
        .bind(organization.is_root)
        .bind(organization.created_at)
        .execute(&mut *tx)
        .await
        .map_err(conflict_as("an organization with this name"))?;
        insert_user(&mut tx, admin).await?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(other)
    }

    async fn count_users(&self) -> Result<u64> {
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
            .fetch_one(&self.pool)
            .await
            .map_err(other)?;
        Ok(count as u64)
    }

    async fn create_user(&self, user: &User, audit: Option<&AuditEntry>) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(other)?;
        insert_user(&mut tx, user).await?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(other)
    }

    async fn find_user_by_username(&self, username: &str) -> Result<Option<User>> {
        fetch_optional(
            &self.pool,
            "SELECT * FROM users WHERE username = $1",
            &[username],
            user_from,
        )
        .await
    }

    async fn get_user(&self, id: &str) -> Result<User> {
        fetch_optional(
            &self.pool,
            "SELECT * FROM users WHERE id = $1",
            &[id],
            user_from,
        )
        .await?
        .ok_or(Error::NotFound)
    }

    async fn list_users(&self, organization_id: &str) -> Result<Vec<User>> {
        fetch_all(
            &self.pool,
            "SELECT * FROM users WHERE organization_id = $1 ORDER BY created_at, id",
            &[organization_id],
            user_from,
        )
        .await
    }

    async fn delete_user(
        &self,
        organization_id: &str,
        id: &str,
        audit: Option<&AuditEntry>,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(other)?;
        delete_audited(&mut tx, "users", organization_id, id, audit).await?;
        tx.commit().await.map_err(other)
    }

    async fn set_password(&self, user_id: &str, password_hash: &str) -> Result<()> {
        change_one(
            &self.pool,
            "UPDATE users SET password_hash = $1 WHERE id = $2",
            &[password_hash, user_id],
        )
        .await
    }

    async fn set_user_role(
        &self,
        organization_id: &str,
        id: &str,
        role: Role,
        audit: Option<&AuditEntry>,
    ) -> Result<()> {
        set_audited(
            &self.pool,
            (
                "UPDATE users SET role = $1 \
                 WHERE organization_id = $2 AND id = $3 AND role <> $1",
                "SELECT 1 FROM users WHERE organization_id = $1 AND id = $2",
            ),
            (organization_id, id),
            role.as_str(),
            audit,
        )
        .await
    }
}

async fn insert_user(conn: &mut sqlx::PgConnection, user: &User) -> Result<()> {
    sqlx::query(
        "INSERT INTO users (id, organization_id, username, password_hash, role, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&user.id)
    .bind(&user.organization_id)
    .bind(&user.username)
    .bind(&user.password_hash)
    .bind(user.role.as_str())
    .bind(user.created_at)
    .execute(conn)
    .await
    .map_err(conflict_as("a user with this username"))?;
    Ok(())
}
