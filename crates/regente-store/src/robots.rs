//! Robots and their versions, each a stored package.

use async_trait::async_trait;

use crate::{AuditEntry, Millis, Result};

#[derive(Debug, Clone, PartialEq)]
pub struct Robot {
    pub id: String,
    pub organization_id: String,
    pub name: String,
    pub created_at: Millis,
    /// Oldest first.
    pub versions: Vec<RobotVersion>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RobotVersion {
    pub version: u32,
    pub sha256: String,
    /// The `robot.toml` text as uploaded.
    pub manifest: String,
    pub size: u64,
    pub created_at: Millis,
}

/// What a run request checks before it is built, read together.
#[derive(Debug, Clone, PartialEq)]
pub struct RunTarget {
    /// The runtime is the organisation's and not deleted.
    pub runtime_exists: bool,
    /// The robot's newest version; `None` when the organisation has no such robot.
    pub robot_version: Option<RobotVersion>,
}

/// A package to store as the next version of the robot its manifest names.
#[derive(Debug, Clone)]
pub struct NewRobotVersion {
    pub organization_id: String,
    /// Used when the robot does not exist yet.
    pub new_robot_id: String,
    pub name: String,
    pub sha256: String,
    pub manifest: String,
    pub package: Vec<u8>,
    pub created_at: Millis,
}

#[async_trait]
pub trait RobotStore: Send + Sync {
    /// Stores a package as version 1 of a new robot, or as the next version of the
    /// robot of that name in the organisation. Returns the robot's id and version.
    /// `audit` (its object id left empty: the robot's id is known only here) is
    /// written with it.
    async fn add_robot_version(
        &self,
        new: &NewRobotVersion,
        audit: Option<&AuditEntry>,
    ) -> Result<(String, u32)>;
    async fn get_robot(&self, organization_id: &str, id: &str) -> Result<Robot>;
    /// The robot's newest version (what a run uses), without the others.
    async fn latest_robot_version(&self, organization_id: &str, id: &str) -> Result<RobotVersion>;
    /// Whether the runtime exists and the robot's newest version, in one read
    /// (one snapshot on SQLite, one statement on PostgreSQL).
    async fn run_target(
        &self,
        organization_id: &str,
        runtime_id: &str,
        robot_id: &str,
    ) -> Result<RunTarget>;
    async fn list_robots(&self, organization_id: &str) -> Result<Vec<Robot>>;
    async fn robot_package(
        &self,
        organization_id: &str,
        robot_id: &str,
        version: u32,
    ) -> Result<Vec<u8>>;
}
