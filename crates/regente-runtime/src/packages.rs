//! Robot packages on the agent: downloaded from the server once per version,
//! checked against the sha256 the server announced, unpacked safely and cached.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use regente_package::Limits;

pub struct PackageCache {
    dir: PathBuf,
    http: reqwest::Client,
    key: String,
    /// One download at a time per package, however many slots want it.
    locks: Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>,
}

impl PackageCache {
    pub fn new(
        dir: PathBuf,
        key: String,
        tls: &Arc<rustls::ClientConfig>,
    ) -> anyhow::Result<PackageCache> {
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(rustls::ClientConfig::clone(tls))
            .build()?;
        Ok(PackageCache {
            dir,
            http,
            key,
            locks: Mutex::new(HashMap::new()),
        })
    }

    /// Where the package goes; `None` for a malformed reference.
    fn target(&self, robot_id: &str, version: u32, sha256: &str) -> Option<PathBuf> {
        let safe = |text: &str| text.chars().all(|c| c.is_ascii_alphanumeric());
        if !safe(robot_id) || !safe(sha256) {
            return None;
        }
        Some(
            self.dir
                .join(robot_id)
                .join(format!("{version}-{}", &sha256[..sha256.len().min(16)])),
        )
    }

    /// The unpacked package directory when it is already there: one `stat`,
    /// cheap enough for the agent's task, so that a cached package costs no
    /// task and no thread hop.
    pub fn cached(&self, robot_id: &str, version: u32, sha256: &str) -> Option<PathBuf> {
        let target = self.target(robot_id, version, sha256)?;
        // Packages are unpacked aside and renamed into place: present means complete.
        std::fs::metadata(&target)
            .is_ok_and(|m| m.is_dir())
            .then_some(target)
    }

    /// The unpacked package directory, downloading it first if needed.
    /// The error says, in words, what failed.
    pub async fn prepare(
        &self,
        server: &str,
        robot_id: &str,
        version: u32,
        sha256: &str,
    ) -> Result<PathBuf, String> {
        let target = self
            .target(robot_id, version, sha256)
            .ok_or("the server sent a malformed package reference")?;
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
            locks.entry(target.clone()).or_default().clone()
        };
        let _guard = lock.lock().await;
        // Packages are unpacked aside and renamed into place: present means complete.
        if is_dir(&target).await {
            return Ok(target);
        }
        let url = format!(
            "{}{}",
            server.trim_end_matches('/'),
            regente_proto::package_path(robot_id, version)
        );
        let bytes = self.download(&url).await?;
        let actual = regente_package::sha256_hex(&bytes);
        if actual != sha256 {
            return Err(format!(
                "package checksum mismatch for robot {robot_id} version {version}: expected sha256 {sha256}, got {actual}"
            ));
        }
        let unpack_to = target.clone();
        tokio::task::spawn_blocking(move || {
            regente_package::unpack(&bytes, &unpack_to, &Limits::default())
        })
        .await
        .map_err(|e| format!("cannot unpack the package: {e}"))?
        .map_err(|e| format!("the package was refused: {e}"))?;
        Ok(target)
    }

    async fn download(&self, url: &str) -> Result<Vec<u8>, String> {
        let failed = |e: &dyn std::fmt::Display| {
            format!("cannot download the robot package from {url}: {e}")
        };
        let response = self
            .http
            .get(url)
            .bearer_auth(&self.key)
            .send()
            .await
            .map_err(|e| failed(&e))?;
        if !response.status().is_success() {
            return Err(failed(&format!(
                "the server answered {}",
                response.status()
            )));
        }
        let limit = Limits::default().max_package_bytes as usize;
        let mut bytes = Vec::new();
        let mut response = response;
        while let Some(chunk) = response.chunk().await.map_err(|e| failed(&e))? {
            if bytes.len() + chunk.len() > limit {
                return Err(failed(&"the package is larger than the limit"));
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(bytes)
    }
}

async fn is_dir(path: &Path) -> bool {
    tokio::fs::metadata(path)
        .await
        .map(|m| m.is_dir())
        .unwrap_or(false)
}
