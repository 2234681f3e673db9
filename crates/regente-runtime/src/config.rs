//! The agent's settings, and the layout of its work directory.

use std::path::{Path, PathBuf};

use crate::robot_user::RobotUser;

#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Server base URLs (`http://host:port`), tried in turn.
    pub servers: Vec<String>,
    pub key: String,
    /// Made absolute once at start: every path handed to a robot derives from it.
    pub work_dir: PathBuf,
    /// Robots run at once; 0 leaves it to the runtime's setting on the server.
    pub slots: u32,
    /// The `regente` executable, used as each robot's guard process.
    pub guard: Option<PathBuf>,
    /// The `PATH` robots get and their programs are looked up in; `None` keeps
    /// the agent's own.
    pub robot_path: Option<std::ffi::OsString>,
    /// PEM certificates of a private CA to trust beside the system's roots.
    pub ca_file: Option<PathBuf>,
    /// OS users robots run as, one per running robot (the agent runs as root);
    /// empty: robots run as the agent's user.
    pub robot_users: Vec<RobotUser>,
}

impl AgentConfig {
    /// The slots asked of the server: with robot users, no more than there are
    /// users, so that two running robots never share one.
    pub(crate) fn slots_asked(&self) -> u32 {
        let users = self.robot_users.len() as u32;
        match (users, self.slots) {
            (0, slots) => slots,
            (users, 0) => users,
            (users, slots) => slots.min(users),
        }
    }
}

/// The work directory and its parts, private to the agent's user (0700); with
/// robot users, the work, runs and packages directories let them through to
/// their own run directory and package (0711), and list nothing.
pub(crate) fn create_work_dirs(work_dir: &Path, shared: bool) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let traverse = if shared { 0o711 } else { 0o700 };
    for (dir, mode) in [
        (work_dir.to_path_buf(), traverse),
        (work_dir.join("journal"), 0o700),
        (work_dir.join("runs"), traverse),
        (work_dir.join("packages"), traverse),
    ] {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(mode)
            .create(&dir)?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

/// Empties `runs/` of the work dir: run directories left by an earlier agent
/// process belong to dead robots, and may hold credentials files. The directory
/// itself stays, with the modes [`create_work_dirs`] gave it (robot users must
/// be able to pass through it).
pub fn clear_runs(work_dir: &Path) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let runs = work_dir.join("runs");
    if !runs.exists() {
        return Ok(());
    }
    for entry in
        std::fs::read_dir(&runs).with_context(|| format!("cannot read {}", runs.display()))?
    {
        let entry = entry?;
        let path = entry.path();
        // The entry's own type: a link is removed, never followed.
        let removed = if entry.file_type()?.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removed.with_context(|| format!("cannot clear {}", path.display()))?;
    }
    Ok(())
}
