//! Robots and their versions, uploaded as zip packages.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use regente_core::RobotManifest;
use regente_package::{InspectedPackage, Limits, PackageError};
use regente_store::{NewRobotVersion, Robot, RobotVersion, Runtime};
use tracing::info;

use super::{new_id, or_not_found, Caller, Context, Error, Result};

pub struct Uploaded {
    pub robot_id: String,
    pub name: String,
    pub version: u32,
    pub sha256: String,
}

/// Checks a package (manifest, paths, links, sizes) and stores it as the next
/// version of the robot its manifest names.
pub async fn upload(ctx: &Context, caller: &Caller, package: Vec<u8>) -> Result<Uploaded> {
    let limits = Limits {
        max_package_bytes: ctx.config.max_package_bytes as u64,
        ..Limits::default()
    };
    // Inflating every entry to check it is CPU work: keep it off the async workers.
    let (inspected, package) = tokio::task::spawn_blocking(move || {
        let inspected = regente_package::inspect(&package, &limits);
        (inspected, package)
    })
    .await
    .map_err(|e| Error::Internal(anyhow::anyhow!("package inspection failed: {e}")))?;
    let InspectedPackage {
        manifest,
        manifest_text,
        sha256,
        ..
    } = inspected.map_err(|e| match e {
        PackageError::TooLarge(why) => Error::TooLarge(why),
        PackageError::Io(e) => Error::Internal(e.into()),
        other => Error::Invalid(other.to_string()),
    })?;
    let new = NewRobotVersion {
        organization_id: caller.organization_id.clone(),
        new_robot_id: new_id(),
        name: manifest.name.clone(),
        sha256: sha256.clone(),
        manifest: manifest_text,
        package,
        created_at: ctx.clock.now(),
    };
    // The store completes it with the robot's id and the version it made.
    let summary =
        serde_json::json!({"name": manifest.name, "sha256": sha256, "size": new.package.len()});
    let audit = super::audit::record(ctx, caller, "robot.upload", "", summary);
    let (robot_id, version) = ctx.store.add_robot_version(&new, Some(&audit)).await?;
    info!(robot = %robot_id, version, "robot version uploaded");
    Ok(Uploaded {
        robot_id,
        name: manifest.name,
        version,
        sha256,
    })
}

pub async fn list(ctx: &Context, caller: &Caller) -> Result<Vec<Robot>> {
    Ok(ctx.store.list_robots(&caller.organization_id).await?)
}

pub async fn get(ctx: &Context, caller: &Caller, id: &str) -> Result<Robot> {
    or_not_found(
        ctx.store.get_robot(&caller.organization_id, id).await,
        || not_found(id),
    )
}

/// A robot version's package as uploaded, for a runtime of the robot's
/// organisation; `version` as it came in the path.
pub async fn package(
    ctx: &Context,
    runtime: &Runtime,
    robot_id: &str,
    version: &str,
) -> Result<Vec<u8>> {
    let not_found = || format!("robot {robot_id} version {version} not found");
    let Ok(number) = version.parse::<u32>() else {
        return Err(Error::NotFound(not_found()));
    };
    if !regente_core::is_valid_id(robot_id) {
        return Err(Error::NotFound(not_found()));
    }
    or_not_found(
        ctx.store
            .robot_package(&runtime.organization_id, robot_id, number)
            .await,
        not_found,
    )
}

/// The robot's newest version, the one a run uses, with its manifest parsed.
pub async fn latest_version(
    ctx: &Context,
    caller: &Caller,
    id: &str,
) -> Result<(RobotVersion, Arc<RobotManifest>)> {
    let version = or_not_found(
        ctx.store
            .latest_robot_version(&caller.organization_id, id)
            .await,
        || not_found(id),
    )?;
    with_manifest(ctx, id, version)
}

pub(crate) fn not_found(id: &str) -> String {
    format!("robot {id} not found")
}

/// A stored version of robot `id` with its manifest parsed.
pub(crate) fn with_manifest(
    ctx: &Context,
    id: &str,
    version: RobotVersion,
) -> Result<(RobotVersion, Arc<RobotManifest>)> {
    let manifest = ctx.manifests.parse(&version).map_err(|e| {
        Error::Internal(anyhow::anyhow!(
            "stored manifest of robot {id} version {}: {e}",
            version.version
        ))
    })?;
    Ok((version, manifest))
}

/// Parsed manifests by their package's SHA-256 (the manifest is in the package,
/// so the digest names its text). A stored version never changes, so an entry
/// never goes stale; parsing TOML at every run request would cost more than the
/// rest of the request's work in the store.
#[derive(Default)]
pub struct ManifestCache {
    parsed: Mutex<HashMap<String, Arc<RobotManifest>>>,
}

/// Manifests kept; past this the cache starts over.
const MANIFESTS_KEPT: usize = 256;

impl ManifestCache {
    pub fn parse(
        &self,
        version: &RobotVersion,
    ) -> Result<Arc<RobotManifest>, regente_core::ManifestError> {
        self.parse_text(&version.sha256, &version.manifest)
    }

    /// The manifest `text` of the package whose SHA-256 is `sha256`, parsed.
    pub fn parse_text(
        &self,
        sha256: &str,
        text: &str,
    ) -> Result<Arc<RobotManifest>, regente_core::ManifestError> {
        if let Some(manifest) = self.lock().get(sha256) {
            return Ok(manifest.clone());
        }
        let manifest = Arc::new(RobotManifest::parse(text)?);
        let mut parsed = self.lock();
        if parsed.len() >= MANIFESTS_KEPT {
            parsed.clear();
        }
        parsed.insert(sha256.to_owned(), manifest.clone());
        Ok(manifest)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<RobotManifest>>> {
        self.parsed.lock().unwrap_or_else(|e| e.into_inner())
    }
}
