//! What the example robots need on this machine (Python 3, Robot Framework),
//! checked before `regente up` loads them, and the private Python environment
//! `regente up --with-robotframework` installs Robot Framework into.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::Context as _;
use tokio::process::Command;

use crate::examples::Need;

/// The virtual environment's folder in the data directory.
const VENV_DIR: &str = "python";
/// The Robot Framework release line the example is written for.
const ROBOT_FRAMEWORK: &str = "robotframework>=7,<8";

/// A need the machine does not meet, in words, with the command that fixes it.
pub struct Missing {
    pub what: String,
    pub fix: String,
}

/// The `PATH` the local runtime's robots get: the agent's own, with the private
/// Python environment first when one was installed.
pub fn robot_path(data_dir: &Path) -> Option<OsString> {
    let bin = venv_bin(data_dir);
    if !bin.join("python3").is_file() {
        return None;
    }
    let inherited = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::iter::once(bin).chain(std::env::split_paths(&inherited));
    std::env::join_paths(dirs).ok()
}

fn venv_bin(data_dir: &Path) -> PathBuf {
    data_dir.join(VENV_DIR).join("bin")
}

/// The first of `needs` this machine lacks for robots running with `path`.
/// `install` is the command line that installs Robot Framework for `up`.
pub async fn first_missing(needs: &[Need], path: Option<&OsStr>, install: &str) -> Option<Missing> {
    for need in needs {
        let missing = match need {
            Need::Python3 => find_program("python3", path).is_none().then(|| Missing {
                what: "Python 3 (no python3 in PATH)".into(),
                fix: "sudo apt-get install -y python3 python3-venv".into(),
            }),
            Need::RobotFramework => (!imports_robot(path).await).then(|| Missing {
                what: "Robot Framework (python3 cannot import robot)".into(),
                fix: install.to_owned(),
            }),
        };
        if missing.is_some() {
            return missing;
        }
    }
    None
}

/// Whether `python3`, as robots find it, imports Robot Framework.
async fn imports_robot(path: Option<&OsStr>) -> bool {
    let Some(python) = find_program("python3", path) else {
        return false;
    };
    Command::new(python)
        .args(["-c", "import robot"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .is_ok_and(|status| status.success())
}

/// `program` as `execvp` would find it in `path` (the process's own `PATH` when
/// `None`).
fn find_program(program: &str, path: Option<&OsStr>) -> Option<PathBuf> {
    let inherited = std::env::var_os("PATH");
    let path = path.or(inherited.as_deref())?;
    std::env::split_paths(path)
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Installs Robot Framework into the data directory's own Python environment
/// (created on first use); a no-op when robots can import it already.
pub async fn install_robot_framework(data_dir: &Path) -> anyhow::Result<()> {
    let venv = data_dir.join(VENV_DIR);
    if imports_robot(robot_path(data_dir).as_deref()).await {
        return Ok(());
    }
    let python = find_program("python3", None).context(
        "Robot Framework needs Python 3, and there is no python3 in PATH: \
         install it first (sudo apt-get install -y python3 python3-venv)",
    )?;
    if !venv_bin(data_dir).join("python3").is_file() {
        println!("Creating a Python environment in {} ...", venv.display());
        run_quietly(Command::new(&python).arg("-m").arg("venv").arg(&venv))
            .await
            .context(
                "cannot create a Python virtual environment \
                 (on Debian or Ubuntu: sudo apt-get install -y python3-venv)",
            )?;
    }
    println!("Installing Robot Framework into it (once) ...");
    run_quietly(Command::new(venv_bin(data_dir).join("python3")).args([
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "--quiet",
        ROBOT_FRAMEWORK,
    ]))
    .await
    .context("cannot install Robot Framework with pip")?;
    Ok(())
}

/// Runs a command to its end; its output is shown only when it fails.
async fn run_quietly(command: &mut Command) -> anyhow::Result<()> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .await
        .context("cannot start it")?;
    if output.status.success() {
        return Ok(());
    }
    anyhow::bail!(
        "it ended with {}: {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout).trim(),
        String::from_utf8_lossy(&output.stderr).trim()
    )
}
