//! Robot packages on the agent: downloaded from the server once per version,
//! checked against the sha256 the server announced, unpacked safely and cached.
//!
//! A robot must not be able to change another robot's code in the cache. An
//! unpacked package is sealed: every file and directory made read-only (owned
//! by the agent's user; with robot users, readable by them and writable by
//! nobody but the agent's user), and a snapshot of every entry taken (inode,
//! size, mode, mtime and ctime). Before each run the entries are looked at
//! again (one `lstat` each): any difference (a file written, replaced,
//! added or removed, a mode changed; ctime cannot be set back by anyone but
//! the clock's owner) and the package is unpacked again from its zip, kept
//! beside it and checked against its sha256, or downloaded again. Snapshots live
//! in the agent's memory only: after a restart of the agent, each package is
//! unpacked again from its zip once.

use std::collections::HashMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use regente_package::Limits;
use tracing::warn;

/// A package with at most this many entries is checked on the agent's task
/// (microseconds); a bigger one on a blocking thread.
const INLINE_CHECK_MAX_ENTRIES: usize = 256;

pub struct PackageCache {
    dir: PathBuf,
    http: reqwest::Client,
    key: String,
    /// Packages readable by other users (the robot users); otherwise by the
    /// agent's user only.
    shared: bool,
    /// One download at a time per package, however many slots want it.
    locks: Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>,
    /// The snapshot of each package sealed by this process.
    sealed: Mutex<HashMap<PathBuf, Arc<Snapshot>>>,
}

impl PackageCache {
    pub fn new(
        dir: PathBuf,
        key: String,
        tls: &Arc<rustls::ClientConfig>,
        shared: bool,
    ) -> anyhow::Result<PackageCache> {
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(rustls::ClientConfig::clone(tls))
            .build()?;
        Ok(PackageCache {
            dir,
            http,
            key,
            shared,
            locks: Mutex::new(HashMap::new()),
            sealed: Mutex::new(HashMap::new()),
        })
    }

    /// Where the package goes; `None` for a malformed reference.
    fn target(&self, robot_id: &str, version: u32, sha256: &str) -> Option<PathBuf> {
        let safe = |text: &str| text.chars().all(|c| c.is_ascii_alphanumeric());
        if !safe(robot_id) || !safe(sha256) || sha256.is_empty() {
            return None;
        }
        Some(
            self.dir
                .join(robot_id)
                .join(format!("{version}-{}", &sha256[..sha256.len().min(16)])),
        )
    }

    fn snapshot_of(&self, target: &Path) -> Option<Arc<Snapshot>> {
        let sealed = self.sealed.lock().unwrap_or_else(|e| e.into_inner());
        sealed.get(target).cloned()
    }

    /// The unpacked package directory when it is sealed and unchanged, and
    /// small enough to check on the agent's task: a few `lstat`s, so that a
    /// cached package costs no task and no thread hop.
    pub fn cached(&self, robot_id: &str, version: u32, sha256: &str) -> Option<PathBuf> {
        let target = self.target(robot_id, version, sha256)?;
        let snapshot = self.snapshot_of(&target)?;
        if snapshot.entries.len() > INLINE_CHECK_MAX_ENTRIES {
            return None;
        }
        snapshot.differs(&target).is_none().then_some(target)
    }

    /// The unpacked package directory, checked, unpacked again or downloaded
    /// first if needed. The error says, in words, what failed.
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
        if let Some(snapshot) = self.snapshot_of(&target) {
            let at = target.clone();
            let checked = snapshot.clone();
            let differs = tokio::task::spawn_blocking(move || checked.differs(&at))
                .await
                .map_err(|e| format!("cannot check the cached package: {e}"))?;
            match differs {
                None => return Ok(target),
                Some(what) => warn!(
                    robot = robot_id,
                    version,
                    changed = %what,
                    "the cached package was changed on disk since it was unpacked: unpacking it again"
                ),
            }
        }
        let zip_path = target.with_extension("zip");
        let kept = tokio::fs::read(&zip_path)
            .await
            .ok()
            .filter(|bytes| regente_package::sha256_hex(bytes) == sha256);
        let bytes = match kept {
            Some(bytes) => bytes,
            None => {
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
                bytes
            }
        };
        let (unpack_to, shared) = (target.clone(), self.shared);
        let snapshot = tokio::task::spawn_blocking(move || {
            unpack_and_seal(&bytes, &unpack_to, &zip_path, shared)
        })
        .await
        .map_err(|e| format!("cannot unpack the package: {e}"))??;
        self.sealed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(target.clone(), Arc::new(snapshot));
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

/// Unpacks `bytes` into `target` (whatever was there removed first), keeps the
/// zip at `zip_path`, and seals the tree.
fn unpack_and_seal(
    bytes: &[u8],
    target: &Path,
    zip_path: &Path,
    shared: bool,
) -> Result<Snapshot, String> {
    let robot_dir = target.parent().expect("a package has a robot directory");
    let mut builder = std::fs::DirBuilder::new();
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .recursive(true)
        .create(robot_dir)
        .map_err(|e| format!("cannot create the package cache: {e}"))?;
    // Robot users go through the cache's directories to their package, and
    // list nothing on the way.
    let traverse = if shared { 0o711 } else { 0o700 };
    for dir in [robot_dir, robot_dir.parent().unwrap_or(robot_dir)] {
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(traverse));
    }
    remove_tree(target).map_err(|e| format!("cannot remove the old package: {e}"))?;
    regente_package::unpack(bytes, target, &Limits::default())
        .map_err(|e| format!("the package was refused: {e}"))?;
    if !zip_path.exists() {
        write_private(zip_path, bytes).map_err(|e| format!("cannot keep the package: {e}"))?;
    }
    Snapshot::seal(target, shared).map_err(|e| format!("cannot seal the package: {e}"))
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt;
    let aside = path.with_extension("zip.tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&aside)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&aside, path)
}

/// Removes a sealed tree: its read-only directories are made writable first.
fn remove_tree(path: &Path) -> std::io::Result<()> {
    fn unseal(path: &Path) -> std::io::Result<()> {
        let meta = std::fs::symlink_metadata(path)?;
        if meta.is_dir() {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))?;
            for entry in std::fs::read_dir(path)? {
                unseal(&entry?.path())?;
            }
        }
        Ok(())
    }
    match unseal(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        other => other?,
    }
    std::fs::remove_dir_all(path)
}

/// What a sealed package looked like: each entry below its directory, the
/// directory itself first.
#[derive(Debug)]
pub struct Snapshot {
    entries: Vec<(PathBuf, Stamp)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    mode: u32,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Stamp {
        Stamp {
            dev: meta.dev(),
            ino: meta.ino(),
            mode: meta.mode(),
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }
}

impl Snapshot {
    /// Makes the tree at `root` read-only (readable by others when `shared`)
    /// and records it.
    pub fn seal(root: &Path, shared: bool) -> std::io::Result<Snapshot> {
        let (dir_mode, file_mode) = if shared {
            (0o555, 0o444)
        } else {
            (0o500, 0o400)
        };
        let mut entries = Vec::new();
        let mut pending = vec![root.to_path_buf()];
        let mut directories = Vec::new();
        while let Some(path) = pending.pop() {
            let meta = std::fs::symlink_metadata(&path)?;
            if meta.is_dir() {
                for entry in std::fs::read_dir(&path)? {
                    pending.push(entry?.path());
                }
                directories.push(path);
            } else if meta.is_file() {
                // Executable bits follow the owner's (what the package said).
                let executable = if meta.mode() & 0o100 != 0 {
                    file_mode | (file_mode >> 2 & 0o111)
                } else {
                    file_mode
                };
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(executable))?;
            } else {
                return Err(std::io::Error::other(format!(
                    "{} is neither a file nor a directory",
                    path.display()
                )));
            }
        }
        // Directories last, deepest first: a read-only directory takes no change.
        for dir in directories.iter().rev() {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(dir_mode))?;
        }
        let mut pending = vec![root.to_path_buf()];
        while let Some(path) = pending.pop() {
            let meta = std::fs::symlink_metadata(&path)?;
            if meta.is_dir() {
                for entry in std::fs::read_dir(&path)? {
                    pending.push(entry?.path());
                }
            }
            entries.push((path, Stamp::of(&meta)));
        }
        Ok(Snapshot { entries })
    }

    /// The first entry that is not as sealed, in words; `None` when all are.
    /// A file added or removed changes its directory's times.
    pub fn differs(&self, root: &Path) -> Option<String> {
        let (first, _) = self.entries.first()?;
        if first != root {
            return Some(format!("{} is not the sealed package", root.display()));
        }
        for (path, stamp) in &self.entries {
            match std::fs::symlink_metadata(path) {
                Ok(meta) if Stamp::of(&meta) == *stamp => {}
                Ok(_) => return Some(format!("{} changed", path.display())),
                Err(e) => return Some(format!("{}: {e}", path.display())),
            }
        }
        None
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn package(dir: &Path) -> PathBuf {
        let root = dir.join("pkg");
        std::fs::create_dir_all(root.join("lib")).unwrap();
        std::fs::write(root.join("run.sh"), "echo hi\n").unwrap();
        std::fs::set_permissions(root.join("run.sh"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        std::fs::write(root.join("lib/data.txt"), "data").unwrap();
        root
    }

    #[test]
    fn a_sealed_package_is_read_only_and_every_change_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        let root = package(dir.path());
        let snapshot = Snapshot::seal(&root, true).unwrap();
        assert_eq!(snapshot.len(), 4);
        assert_eq!(snapshot.differs(&root), None);
        let mode = |p: &str| {
            std::fs::metadata(root.join(p))
                .unwrap()
                .permissions()
                .mode()
                & 0o7777
        };
        assert_eq!(mode("run.sh"), 0o555);
        assert_eq!(mode("lib/data.txt"), 0o444);
        assert_eq!(mode("lib"), 0o555);
        assert_eq!(mode(""), 0o555);

        // Written in place with the same size and its mtime set back.
        let run = root.join("run.sh");
        let before = std::fs::metadata(&run).unwrap();
        std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(&run, "echo ha\n").unwrap();
        let times = [
            libc::timespec {
                tv_sec: before.atime(),
                tv_nsec: before.atime_nsec(),
            },
            libc::timespec {
                tv_sec: before.mtime(),
                tv_nsec: before.mtime_nsec(),
            },
        ];
        let c_path = std::ffi::CString::new(run.to_str().unwrap()).unwrap();
        assert_eq!(
            unsafe { libc::utimensat(libc::AT_FDCWD, c_path.as_ptr(), times.as_ptr(), 0) },
            0
        );
        std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o555)).unwrap();
        let changed = snapshot.differs(&root).expect("the change is seen");
        assert!(changed.contains("run.sh"), "{changed}");
    }

    #[test]
    fn an_added_or_removed_file_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        let root = package(dir.path());
        let snapshot = Snapshot::seal(&root, false).unwrap();
        let lib = root.join("lib");
        std::fs::set_permissions(&lib, std::fs::Permissions::from_mode(0o700)).unwrap();
        assert!(snapshot.differs(&root).is_some(), "a mode change is seen");
        let snapshot = Snapshot::seal(&root, false).unwrap();
        std::fs::set_permissions(&lib, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::write(lib.join("extra"), "x").unwrap();
        std::fs::set_permissions(&lib, std::fs::Permissions::from_mode(0o500)).unwrap();
        assert!(snapshot.differs(&root).is_some(), "an added file is seen");
        remove_tree(&root).unwrap();
        assert!(!root.exists());
        assert!(
            snapshot.differs(&root).is_some(),
            "a removed package is seen"
        );
    }
}
