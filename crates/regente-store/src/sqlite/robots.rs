//! Robots and their packages on SQLite.

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension};

use super::audit::insert_audit;
use super::runtimes::runtime_exists;
use super::{all, change, insert, one, other, SqliteStore};
use crate::audit::of_version;
use crate::rows::{
    robot_from, robot_id_and_version_from, robot_version_from, robots_with_versions,
};
use crate::{
    AuditEntry, Error, NewRobotVersion, Result, Robot, RobotStore, RobotVersion, RunTarget,
};

/// The robot's newest version, if the organisation has the robot.
fn latest_version(
    conn: &Connection,
    organization_id: &str,
    id: &str,
) -> Result<Option<RobotVersion>> {
    one(
        conn,
        "SELECT version, sha256, manifest, size, created_at FROM robot_versions \
         WHERE organization_id = ?1 AND robot_id = ?2 ORDER BY version DESC LIMIT 1",
        [organization_id, id],
        |row| robot_version_from(row),
    )
}

fn add_robot_version(conn: &Connection, new: &NewRobotVersion) -> Result<(String, u32)> {
    let existing: Option<String> = conn
        .prepare_cached("SELECT id FROM robots WHERE organization_id = ?1 AND name = ?2")
        .and_then(|mut statement| {
            statement
                .query_row(params![new.organization_id, new.name], |row| row.get(0))
                .optional()
        })
        .map_err(other)?;
    let robot_id = match existing {
        Some(id) => id,
        None => {
            insert(
                conn,
                "INSERT INTO robots (id, organization_id, name, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![
                    new.new_robot_id,
                    new.organization_id,
                    new.name,
                    new.created_at
                ],
                "a robot with this id",
            )?;
            new.new_robot_id.clone()
        }
    };
    let version: i64 = conn
        .query_row(
            "SELECT COALESCE(MAX(version), 0) + 1 FROM robot_versions WHERE robot_id = ?1",
            [&robot_id],
            |row| row.get(0),
        )
        .map_err(other)?;
    change(
        conn,
        "INSERT INTO robot_versions \
         (robot_id, version, organization_id, sha256, manifest, size, package, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            robot_id,
            version,
            new.organization_id,
            new.sha256,
            new.manifest,
            new.package.len() as i64,
            new.package,
            new.created_at
        ],
    )?;
    Ok((robot_id, version as u32))
}

#[async_trait]
impl RobotStore for SqliteStore {
    async fn add_robot_version(
        &self,
        new: &NewRobotVersion,
        audit: Option<&AuditEntry>,
    ) -> Result<(String, u32)> {
        let (new, audit) = (new.clone(), audit.cloned());
        self.write(move |conn| {
            let (robot_id, version) = add_robot_version(conn, &new)?;
            insert_audit(
                conn,
                of_version(audit.as_ref(), &robot_id, version).as_ref(),
            )?;
            Ok((robot_id, version))
        })
        .await
    }

    async fn get_robot(&self, organization_id: &str, id: &str) -> Result<Robot> {
        self.readers.with(|conn| {
            let mut robot = one(
                conn,
                "SELECT * FROM robots WHERE organization_id = ?1 AND id = ?2",
                [organization_id, id],
                |row| robot_from(row, Vec::new()),
            )?
            .ok_or(Error::NotFound)?;
            robot.versions = all(
                conn,
                "SELECT version, sha256, manifest, size, created_at FROM robot_versions \
                 WHERE organization_id = ?1 AND robot_id = ?2 ORDER BY version",
                [organization_id, id],
                |row| robot_version_from(row),
            )?;
            Ok(robot)
        })
    }

    async fn latest_robot_version(&self, organization_id: &str, id: &str) -> Result<RobotVersion> {
        self.readers
            .with(|conn| latest_version(conn, organization_id, id))?
            .ok_or(Error::NotFound)
    }

    async fn run_target(
        &self,
        organization_id: &str,
        runtime_id: &str,
        robot_id: &str,
    ) -> Result<RunTarget> {
        self.readers.with(|conn| {
            Ok(RunTarget {
                runtime_exists: runtime_exists(conn, organization_id, runtime_id)?,
                robot_version: latest_version(conn, organization_id, robot_id)?,
            })
        })
    }

    async fn list_robots(&self, organization_id: &str) -> Result<Vec<Robot>> {
        let organization_id = organization_id.to_owned();
        self.read_blocking(move |conn| {
            // One read transaction (as every read), so the versions match the robots.
            let rows = all(
                conn,
                "SELECT id, organization_id, name, created_at FROM robots \
                 WHERE organization_id = ?1 ORDER BY created_at, id",
                [&organization_id],
                |row| robot_from(row, Vec::new()),
            )?;
            let versions = all(
                conn,
                "SELECT robot_id, version, sha256, manifest, size, created_at FROM robot_versions \
                 WHERE organization_id = ?1 ORDER BY robot_id, version",
                [&organization_id],
                |row| robot_id_and_version_from(row),
            )?;
            Ok(robots_with_versions(rows, versions))
        })
        .await
    }

    async fn robot_package(
        &self,
        organization_id: &str,
        robot_id: &str,
        version: u32,
    ) -> Result<Vec<u8>> {
        let (organization_id, robot_id) = (organization_id.to_owned(), robot_id.to_owned());
        self.read_blocking(move |conn| {
            conn.prepare_cached(
                "SELECT package FROM robot_versions \
                 WHERE organization_id = ?1 AND robot_id = ?2 AND version = ?3",
            )
            .and_then(|mut statement| {
                statement
                    .query_row(params![organization_id, robot_id, version], |row| {
                        row.get::<_, Vec<u8>>(0)
                    })
                    .optional()
            })
            .map_err(other)?
            .ok_or(Error::NotFound)
        })
        .await
    }
}
