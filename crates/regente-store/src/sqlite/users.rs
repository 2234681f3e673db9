//! Organisations and users on SQLite.

use async_trait::async_trait;
use regente_core::Role;
use rusqlite::{params, Connection};

use super::audit::{delete_audited, insert_audit, set_audited};
use super::{all, change, insert, one, other, SqliteStore};
use crate::rows::{organization_from, user_from};
use crate::{AuditEntry, Error, Organization, OrganizationStore, Result, User};

fn insert_user(conn: &Connection, user: &User) -> Result<()> {
    insert(
        conn,
        "INSERT INTO users (id, organization_id, username, password_hash, role, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            user.id,
            user.organization_id,
            user.username,
            user.password_hash,
            user.role.as_str(),
            user.created_at
        ],
        "a user with this username",
    )
}

#[async_trait]
impl OrganizationStore for SqliteStore {
    async fn root_organization(&self) -> Result<Option<Organization>> {
        self.readers.with(|conn| {
            one(
                conn,
                "SELECT * FROM organizations WHERE is_root = 1",
                [],
                |row| organization_from(row),
            )
        })
    }

    async fn get_organization(&self, id: &str) -> Result<Organization> {
        self.readers
            .with(|conn| {
                one(
                    conn,
                    "SELECT * FROM organizations WHERE id = ?1",
                    [id],
                    |row| organization_from(row),
                )
            })?
            .ok_or(Error::NotFound)
    }

    async fn create_organization(
        &self,
        organization: &Organization,
        admin: &User,
        audit: Option<&AuditEntry>,
    ) -> Result<()> {
        let (organization, admin, audit) = (organization.clone(), admin.clone(), audit.cloned());
        self.write(move |conn| {
            insert(
                conn,
                "INSERT INTO organizations (id, name, is_root, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![
                    organization.id,
                    organization.name,
                    organization.is_root,
                    organization.created_at
                ],
                "an organization with this name",
            )?;
            insert_user(conn, &admin)?;
            insert_audit(conn, audit.as_ref())
        })
        .await
    }

    async fn count_users(&self) -> Result<u64> {
        self.readers.with(|conn| {
            conn.query_row("SELECT COUNT(*) FROM users", [], |row| row.get::<_, i64>(0))
                .map(|count| count as u64)
                .map_err(other)
        })
    }

    async fn create_user(&self, user: &User, audit: Option<&AuditEntry>) -> Result<()> {
        let (user, audit) = (user.clone(), audit.cloned());
        self.write(move |conn| {
            insert_user(conn, &user)?;
            insert_audit(conn, audit.as_ref())
        })
        .await
    }

    async fn find_user_by_username(&self, username: &str) -> Result<Option<User>> {
        self.readers.with(|conn| {
            one(
                conn,
                "SELECT * FROM users WHERE username = ?1",
                [username],
                |row| user_from(row),
            )
        })
    }

    async fn get_user(&self, id: &str) -> Result<User> {
        self.readers
            .with(|conn| {
                one(conn, "SELECT * FROM users WHERE id = ?1", [id], |row| {
                    user_from(row)
                })
            })?
            .ok_or(Error::NotFound)
    }

    async fn list_users(&self, organization_id: &str) -> Result<Vec<User>> {
        let organization_id = organization_id.to_owned();
        self.read_blocking(move |conn| {
            all(
                conn,
                "SELECT * FROM users WHERE organization_id = ?1 ORDER BY created_at, id",
                [organization_id],
                |row| user_from(row),
            )
        })
        .await
    }

    async fn delete_user(
        &self,
        organization_id: &str,
        id: &str,
        audit: Option<&AuditEntry>,
    ) -> Result<()> {
        let (organization_id, id, audit) =
            (organization_id.to_owned(), id.to_owned(), audit.cloned());
        self.write(move |conn| delete_audited(conn, "users", &organization_id, &id, audit.as_ref()))
            .await
    }

    async fn set_password(&self, user_id: &str, password_hash: &str) -> Result<()> {
        let (user_id, password_hash) = (user_id.to_owned(), password_hash.to_owned());
        self.write(move |conn| {
            match change(
                conn,
                "UPDATE users SET password_hash = ?1 WHERE id = ?2",
                params![password_hash, user_id],
            )? {
                0 => Err(Error::NotFound),
                _ => Ok(()),
            }
        })
        .await
    }
    async fn set_user_role(
        &self,
        organization_id: &str,
        id: &str,
        role: Role,
        audit: Option<&AuditEntry>,
    ) -> Result<()> {
        let (organization_id, id, audit) =
            (organization_id.to_owned(), id.to_owned(), audit.cloned());
        self.write(move |conn| {
            set_audited(
                conn,
                (
                    "UPDATE users SET role = ?1 \
                     WHERE organization_id = ?2 AND id = ?3 AND role <> ?1",
                    "SELECT 1 FROM users WHERE organization_id = ?1 AND id = ?2",
                ),
                (&organization_id, &id),
                role.as_str(),
                audit.as_ref(),
            )
        })
        .await
    }
}
