//! Runtimes: the machines that run robots, known by the hash of their key.

use async_trait::async_trait;

use crate::{Millis, Result};

#[derive(Debug, Clone, PartialEq)]
pub struct Runtime {
    pub id: String,
    pub organization_id: String,
    pub name: String,
    pub slots: u32,
    pub last_seen: Option<Millis>,
    pub created_at: Millis,
}

/// A new runtime; only the hash of its key is stored.
#[derive(Debug, Clone)]
pub struct NewRuntime {
    pub runtime: Runtime,
    pub key_hash: String,
}

#[async_trait]
pub trait RuntimeStore: Send + Sync {
    async fn create_runtime(&self, runtime: &NewRuntime) -> Result<()>;
    async fn get_runtime(&self, organization_id: &str, id: &str) -> Result<Runtime>;
    async fn find_runtime_by_key_hash(&self, key_hash: &str) -> Result<Option<Runtime>>;
    async fn list_runtimes(&self, organization_id: &str) -> Result<Vec<Runtime>>;
    async fn touch_runtime(&self, id: &str, seen: Millis) -> Result<()>;
}
