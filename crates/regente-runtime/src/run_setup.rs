//! A run made ready before its robot starts: its private directory, the
//! variables and secrets written there for the robot, its program looked up,
//! its command line and environment set, and the robot user it holds.

use std::ffi::{OsStr, OsString};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use regente_core::{ResolvedVariables, RobotManifest};

use crate::guard::Launch;
use crate::masking::Masker;
use crate::robot_user::{Pool, RobotUser};

/// What the vault handed a run: credentials and secret variables, in memory
/// only until written for the robot.
#[derive(Debug, Default, Clone)]
pub struct RunSecrets {
    /// `{"NAME": {"FIELD": "value"}}`.
    pub credentials: std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>>,
    pub secret_variables: std::collections::BTreeMap<String, serde_json::Value>,
}

impl RunSecrets {
    pub fn from_assignment(assignment: &regente_proto::Assignment) -> RunSecrets {
        RunSecrets {
            credentials: assignment.credentials.clone(),
            secret_variables: assignment.secret_variables.clone(),
        }
    }

    /// Every value to mask in the robot's output.
    fn masker(&self) -> Masker {
        let mut texts: Vec<String> = self
            .credentials
            .values()
            .flat_map(|fields| fields.values().cloned())
            .collect();
        for value in self.secret_variables.values() {
            match value {
                serde_json::Value::String(text) => texts.push(text.clone()),
                other => texts.push(other.to_string()),
            }
        }
        Masker::new(texts.iter().map(String::as_str))
    }
}

/// The file robots read their credentials from (`REGENTE_CREDENTIALS`).
pub const CREDENTIALS_FILE: &str = "credentials.json";
/// The variables file's name in a run directory.
const VARIABLES_FILE: &str = "variables.json";

/// Writes a file only its owner may read, refusing to follow or reuse one.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(bytes)
}

/// A robot ready to start: its run directory and variables file are written,
/// its program looked up and its command line and environment set. All of it
/// is done while the agent waits for the server's `Started`.
pub struct RobotRun {
    pub execution_id: String,
    /// A private directory for this run (the variables file).
    pub run_dir: PathBuf,
    pub timeout: Option<Duration>,
    pub launch: Launch,
    /// `launch` in the form a guard reads.
    pub(crate) wire: Vec<u8>,
    /// Hides what the vault handed the run in its output.
    pub(crate) masker: std::sync::Arc<Masker>,
    /// The robot user this run holds, if robots run as users of their own.
    pub(crate) user: Option<HeldUser>,
}

/// A robot user taken from the pool; given back when dropped.
pub struct HeldUser {
    pub user: RobotUser,
    pub(crate) pool: std::sync::Arc<std::sync::Mutex<Pool>>,
}

impl HeldUser {
    /// A free user of `pool`, or `None` when every one runs a robot.
    pub fn take(pool: &std::sync::Arc<std::sync::Mutex<Pool>>) -> Option<HeldUser> {
        let user = pool.lock().unwrap_or_else(|e| e.into_inner()).take()?;
        Some(HeldUser {
            user,
            pool: pool.clone(),
        })
    }
}

impl Drop for HeldUser {
    fn drop(&mut self) {
        self.pool
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .give_back(&self.user);
    }
}

/// What a run is made of: its robot's unpacked package and manifest, and the
/// values it is handed.
pub struct RunParts<'a> {
    pub package_dir: &'a Path,
    pub manifest: &'a RobotManifest,
    pub variables: &'a serde_json::Value,
    pub secrets: &'a RunSecrets,
}

impl RobotRun {
    /// Writes the run directory (0700) and the variables file (0600), owned by
    /// the robot user when there is one, and settles the command. The error
    /// says, in words, what failed.
    pub fn prepare(
        execution_id: &str,
        run_dir: PathBuf,
        parts: RunParts<'_>,
        search_path: Option<&OsStr>,
        user: Option<HeldUser>,
    ) -> Result<RobotRun, String> {
        let RunParts {
            package_dir,
            manifest,
            variables,
            secrets,
        } = parts;
        let (program, args) = manifest
            .command
            .split_first()
            .ok_or_else(|| "cannot start the robot: robot.toml has an empty command".to_owned())?;
        // Secret variables reach the robot with the others, opened.
        let mut variables = variables.clone();
        if let Some(object) = variables.as_object_mut() {
            for (name, value) in &secrets.secret_variables {
                object.insert(name.clone(), value.clone());
            }
        }
        let variables_file = run_dir.join(VARIABLES_FILE);
        let mut files = vec![(variables_file.clone(), variables.to_string().into_bytes())];
        let credentials_file = run_dir.join(CREDENTIALS_FILE);
        if !secrets.credentials.is_empty() {
            let text = serde_json::to_vec(&secrets.credentials)
                .map_err(|e| format!("cannot write the credentials file: {e}"))?;
            files.push((credentials_file.clone(), text));
        }
        write_run_dir(&run_dir, &files, user.as_ref().map(|held| &held.user))?;
        let mut env: Vec<(OsString, OsString)> = vec![
            ("REGENTE_VARIABLES".into(), variables_file.into_os_string()),
            ("REGENTE_EXECUTION_ID".into(), execution_id.into()),
        ];
        if !secrets.credentials.is_empty() {
            env.push((
                "REGENTE_CREDENTIALS".into(),
                credentials_file.into_os_string(),
            ));
        }
        if let Some(held) = &user {
            env.push(("HOME".into(), held.user.home.clone().into_os_string()));
            env.push(("USER".into(), held.user.name.clone().into()));
            env.push(("LOGNAME".into(), held.user.name.clone().into()));
        }
        for (name, value) in ResolvedVariables::from_json(&variables).iter() {
            env.push((
                format!("REGENTE_VAR_{name}").into(),
                value.text_form().into(),
            ));
        }
        let inherited_path = std::env::var_os("PATH");
        if let Some(path) = search_path {
            env.push(("PATH".into(), path.to_owned()));
        }
        let launch = Launch {
            dir: package_dir.to_path_buf(),
            program: look_up(
                program,
                package_dir,
                search_path.or(inherited_path.as_deref()),
            ),
            args: args.iter().map(OsString::from).collect(),
            env,
            user: user.as_ref().map(|held| held.user.credentials()),
        };
        let wire = launch
            .encode()
            .map_err(|e| format!("cannot start the robot: {e}"))?;
        Ok(RobotRun {
            execution_id: execution_id.to_owned(),
            run_dir,
            timeout: manifest.timeout,
            launch,
            wire,
            masker: std::sync::Arc::new(secrets.masker()),
            user,
        })
    }

    /// Removes what [`RobotRun::prepare`] wrote, for a run that never starts.
    pub fn discard(self) {
        if !remove_as_written(&self.run_dir) {
            let _ = std::fs::remove_dir_all(&self.run_dir);
        }
    }
}

/// Removes a run directory that holds only what the agent wrote there, by name:
/// three system calls instead of a walk of the directory, on every run. False
/// when something else is left (files of the robot's own): the caller walks it.
pub(crate) fn remove_as_written(run_dir: &Path) -> bool {
    for name in [VARIABLES_FILE, CREDENTIALS_FILE] {
        let _ = std::fs::remove_file(run_dir.join(name));
    }
    match std::fs::remove_dir(run_dir) {
        Ok(()) => true,
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
    }
}

/// Creates the run directory (0700) and writes the variables file (0600) in it,
/// both handed to the robot user when there is one.
fn write_run_dir(
    run_dir: &Path,
    files: &[(PathBuf, Vec<u8>)],
    user: Option<&RobotUser>,
) -> Result<(), String> {
    use std::os::unix::fs::DirBuilderExt;
    let failed = |what: &str, e: std::io::Error| format!("cannot {what}: {e}");
    let mut builder = std::fs::DirBuilder::new();
    builder.mode(0o700);
    match builder.create(run_dir) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            // Left by an earlier attempt: nothing in it is trusted.
            let _ = std::fs::remove_dir_all(run_dir);
            builder.create(run_dir)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            builder.recursive(true).create(run_dir)
        }
        other => other,
    }
    .map_err(|e| {
        failed(
            &format!("create the run directory {}", run_dir.display()),
            e,
        )
    })?;
    for (path, bytes) in files {
        write_private(path, bytes).map_err(|e| failed(&format!("write {}", path.display()), e))?;
    }
    if let Some(user) = user {
        let paths = std::iter::once(run_dir).chain(files.iter().map(|(path, _)| path.as_path()));
        for path in paths {
            std::os::unix::fs::chown(path, Some(user.uid), Some(user.gid)).map_err(|e| {
                failed(
                    &format!("give {} to the robot user {}", path.display(), user.name),
                    e,
                )
            })?;
        }
    }
    Ok(())
}

/// The program to execute: a path is relative to the package; a bare name is
/// looked up in `PATH` now, once, the way `execvp` would from the package
/// directory, so that the start tries no directories. Not found, it stays bare
/// and the start reports it.
fn look_up(program: &str, package_dir: &Path, path: Option<&OsStr>) -> OsString {
    if program.contains('/') || program.contains('\\') {
        return package_dir.join(program).into_os_string();
    }
    let Some(path) = path else {
        return program.into();
    };
    for dir in std::env::split_paths(path) {
        // An empty or relative entry is relative to the robot's directory.
        let candidate = package_dir.join(dir).join(program);
        if is_executable_file(&candidate) {
            return candidate.into_os_string();
        }
    }
    program.into()
}

fn is_executable_file(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    if !std::fs::metadata(path).is_ok_and(|m| m.is_file()) {
        return false;
    }
    let Ok(path) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    unsafe { libc::access(path.as_ptr(), libc::X_OK) == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_directory_is_removed_by_name_unless_the_robot_wrote_in_it() {
        let work = tempfile::tempdir().expect("a temporary directory");
        let written = |name: &str, files: &[&str]| {
            let dir = work.path().join(name);
            let files: Vec<(PathBuf, Vec<u8>)> = files
                .iter()
                .map(|file| (dir.join(file), b"{}".to_vec()))
                .collect();
            write_run_dir(&dir, &files, None).expect("the run directory");
            dir
        };
        let plain = written("plain", &[VARIABLES_FILE]);
        assert!(remove_as_written(&plain));
        assert!(!plain.exists());
        let with_credentials = written("credentials", &[VARIABLES_FILE, CREDENTIALS_FILE]);
        assert!(remove_as_written(&with_credentials));
        assert!(!with_credentials.exists());
        // Gone already: nothing to do.
        assert!(remove_as_written(&plain));

        let robot_wrote = written("robot", &[VARIABLES_FILE, "scratch.txt"]);
        assert!(!remove_as_written(&robot_wrote), "left for a walk");
        assert!(robot_wrote.join("scratch.txt").exists());
        assert!(!robot_wrote.join(VARIABLES_FILE).exists());
    }
}
