//! Robots and their packages on PostgreSQL.

use async_trait::async_trait;
use sqlx::postgres::{PgPool, PgRow};

use super::audit::insert_audit;
use super::group::{GroupFailed, Grouping};
use super::{conflict_as, fetch_optional, other, PostgresStore};
use crate::audit::of_version;
use crate::rows::{
    robot_from, robot_id_and_version_from, robot_version_from, robots_with_versions, RecordRow,
};
use crate::{
    AuditEntry, Error, NewRobotVersion, Result, Robot, RobotStore, RobotVersion, RunTarget,
};

#[async_trait]
impl RobotStore for PostgresStore {
    async fn add_robot_version(
        &self,
        new: &NewRobotVersion,
        audit: Option<&AuditEntry>,
    ) -> Result<(String, u32)> {
        let mut tx = self.pool.begin().await.map_err(other)?;
        // Creates the robot unless it exists; a concurrent upload of the same new
        // name waits here for the other transaction and then finds its robot.
        sqlx::query(
            "INSERT INTO robots (id, organization_id, name, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (organization_id, name) DO NOTHING",
        )
        .bind(&new.new_robot_id)
        .bind(&new.organization_id)
        .bind(&new.name)
        .bind(new.created_at)
        .execute(&mut *tx)
        .await
        .map_err(conflict_as("a robot with this id"))?;
        // The robot's row lock serialises the versions of one robot: the next
        // uploader reads the highest version only after this one committed.
        let robot_id: String = sqlx::query_scalar(
            "SELECT id FROM robots WHERE organization_id = $1 AND name = $2 FOR UPDATE",
        )
        .bind(&new.organization_id)
        .bind(&new.name)
        .fetch_one(&mut *tx)
        .await
        .map_err(other)?;
        let version: i64 = sqlx::query_scalar(
            "SELECT COALESCE(MAX(version), 0) + 1 FROM robot_versions WHERE robot_id = $1",
        )
        .bind(&robot_id)
        .fetch_one(&mut *tx)
        .await
        .map_err(other)?;
        sqlx::query(
            "INSERT INTO robot_versions \
             (robot_id, version, organization_id, sha256, manifest, size, package, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&robot_id)
        .bind(version)
        .bind(&new.organization_id)
        .bind(&new.sha256)
        .bind(&new.manifest)
        .bind(new.package.len() as i64)
        .bind(&new.package)
        .bind(new.created_at)
        .execute(&mut *tx)
        .await
        .map_err(other)?;
        let version = version as u32;
        insert_audit(&mut tx, of_version(audit, &robot_id, version).as_ref()).await?;
        tx.commit().await.map_err(other)?;
        Ok((robot_id, version))
    }

    async fn get_robot(&self, organization_id: &str, id: &str) -> Result<Robot> {
        let row = sqlx::query("SELECT * FROM robots WHERE organization_id = $1 AND id = $2")
            .bind(organization_id)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(other)?
            .ok_or(Error::NotFound)?;
        let versions = sqlx::query(
            "SELECT version, sha256, manifest, size, created_at FROM robot_versions \
             WHERE organization_id = $1 AND robot_id = $2 ORDER BY version",
        )
        .bind(organization_id)
        .bind(id)
        .fetch_all(&self.pool)
        .await
        .map_err(other)?;
        let versions = versions
            .iter()
            .map(robot_version_from)
            .collect::<Result<_>>()?;
        robot_from(&row, versions)
    }

    async fn latest_robot_version(&self, organization_id: &str, id: &str) -> Result<RobotVersion> {
        fetch_optional(
            &self.pool,
            "SELECT version, sha256, manifest, size, created_at FROM robot_versions \
             WHERE organization_id = $1 AND robot_id = $2 ORDER BY version DESC LIMIT 1",
            &[organization_id, id],
            robot_version_from,
        )
        .await?
        .ok_or(Error::NotFound)
    }

    async fn run_target(
        &self,
        organization_id: &str,
        runtime_id: &str,
        robot_id: &str,
    ) -> Result<RunTarget> {
        self.run_targets
            .run([organization_id, runtime_id, robot_id].map(str::to_owned))
            .await
    }

    async fn list_robots(&self, organization_id: &str) -> Result<Vec<Robot>> {
        let rows =
            sqlx::query("SELECT * FROM robots WHERE organization_id = $1 ORDER BY created_at, id")
                .bind(organization_id)
                .fetch_all(&self.pool)
                .await
                .map_err(other)?;
        let version_rows = sqlx::query(
            "SELECT robot_id, version, sha256, manifest, size, created_at FROM robot_versions \
             WHERE organization_id = $1 ORDER BY robot_id, version",
        )
        .bind(organization_id)
        .fetch_all(&self.pool)
        .await
        .map_err(other)?;
        let robots = rows
            .iter()
            .map(|row| robot_from(row, Vec::new()))
            .collect::<Result<_>>()?;
        let versions = version_rows
            .iter()
            .map(robot_id_and_version_from)
            .collect::<Result<_>>()?;
        Ok(robots_with_versions(robots, versions))
    }

    async fn robot_package(
        &self,
        organization_id: &str,
        robot_id: &str,
        version: u32,
    ) -> Result<Vec<u8>> {
        sqlx::query_scalar(
            "SELECT package FROM robot_versions \
             WHERE organization_id = $1 AND robot_id = $2 AND version = $3",
        )
        .bind(organization_id)
        .bind(robot_id)
        .bind(version as i64)
        .fetch_optional(&self.pool)
        .await
        .map_err(other)?
        .ok_or(Error::NotFound)
    }
}

/// The look-ups of run requests (organisation, runtime, robot), done in groups:
/// one statement answers a row for each, in their order; a look-up alone the
/// same way.
pub(super) struct RunTargets(pub(super) PgPool);

#[async_trait]
impl Grouping for RunTargets {
    type Item = [String; 3];
    type Answer = RunTarget;

    async fn together(
        &self,
        lookups: &[[String; 3]],
    ) -> std::result::Result<Vec<RunTarget>, GroupFailed> {
        let rows = look_up(&self.0, lookups).await?;
        rows.iter()
            .map(run_target_from)
            .collect::<Result<_>>()
            .map_err(GroupFailed::Unknown)
    }

    async fn alone(&self, lookup: &[String; 3]) -> Result<RunTarget> {
        let rows = look_up(&self.0, std::slice::from_ref(lookup))
            .await
            .map_err(other)?;
        let row = rows.first().ok_or_else(|| {
            Error::Other(anyhow::anyhow!("the run target's query returned no row"))
        })?;
        run_target_from(row)
    }
}

/// A row for each of `lookups`, in their order: whether the runtime is the
/// organisation's and not deleted, and the robot's newest version (or nulls).
async fn look_up(pool: &PgPool, lookups: &[[String; 3]]) -> sqlx::Result<Vec<PgRow>> {
    let column = |at: usize| {
        lookups
            .iter()
            .map(|lookup| lookup[at].as_str())
            .collect::<Vec<_>>()
    };
    sqlx::query(
        "SELECT EXISTS (SELECT 1 FROM runtimes r WHERE r.organization_id = t.organization_id \
                 AND r.id = t.runtime_id AND r.deleted_at IS NULL) AS runtime_exists, \
                v.version, v.sha256, v.manifest, v.size, v.created_at \
         FROM UNNEST($1::TEXT[], $2::TEXT[], $3::TEXT[]) \
             WITH ORDINALITY AS t(organization_id, runtime_id, robot_id, n) \
         LEFT JOIN LATERAL (SELECT version, sha256, manifest, size, created_at \
                    FROM robot_versions \
                    WHERE organization_id = t.organization_id AND robot_id = t.robot_id \
                    ORDER BY version DESC LIMIT 1) AS v ON TRUE \
         ORDER BY t.n",
    )
    .bind(column(0))
    .bind(column(1))
    .bind(column(2))
    .fetch_all(pool)
    .await
}

fn run_target_from(row: &PgRow) -> Result<RunTarget> {
    Ok(RunTarget {
        runtime_exists: row.flag("runtime_exists")?,
        robot_version: match row.int_opt("version")? {
            Some(_) => Some(robot_version_from(row)?),
            None => None,
        },
    })
}
