//! Organisations and their users.

use async_trait::async_trait;
use regente_core::Role;

use crate::{AuditEntry, Millis, Result};

#[derive(Debug, Clone, PartialEq)]
pub struct Organization {
    pub id: String,
    pub name: String,
    /// The organisation created at bootstrap; its admins may create others.
    pub is_root: bool,
    pub created_at: Millis,
}

#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub id: String,
    pub organization_id: String,
    pub username: String,
    pub password_hash: String,
    pub role: Role,
    pub created_at: Millis,
}

#[async_trait]
pub trait OrganizationStore: Send + Sync {
    async fn root_organization(&self) -> Result<Option<Organization>>;
    async fn get_organization(&self, id: &str) -> Result<Organization>;
    /// Creates an organisation with its first admin, atomically.
    ///
    /// The changes admins make take `audit`: the record of the change, written
    /// in its transaction only if the change is (see [`crate::audit`]).
    async fn create_organization(
        &self,
        organization: &Organization,
        admin: &User,
        audit: Option<&AuditEntry>,
    ) -> Result<()>;
    async fn count_users(&self) -> Result<u64>;
    async fn create_user(&self, user: &User, audit: Option<&AuditEntry>) -> Result<()>;
    async fn find_user_by_username(&self, username: &str) -> Result<Option<User>>;
    async fn get_user(&self, id: &str) -> Result<User>;
    async fn list_users(&self, organization_id: &str) -> Result<Vec<User>>;
    async fn delete_user(
        &self,
        organization_id: &str,
        id: &str,
        audit: Option<&AuditEntry>,
    ) -> Result<()>;
    /// Replaces a user's password hash; [`Error::NotFound`](crate::Error) when
    /// there is no such user.
    async fn set_password(&self, user_id: &str, password_hash: &str) -> Result<()>;
    /// Gives a user of the organisation another role; [`Error::NotFound`](crate::Error)
    /// when it has no such user. `audit` is written only when the role changes.
    async fn set_user_role(
        &self,
        organization_id: &str,
        id: &str,
        role: Role,
        audit: Option<&AuditEntry>,
    ) -> Result<()>;
}
