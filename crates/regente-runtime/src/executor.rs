//! Runs one robot: spawns its command without a shell in its own process group,
//! streams its output as events, enforces the timeout, and kills the whole
//! process tree on cancel, timeout or revocation.

use std::ffi::{OsStr, OsString};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use regente_core::{ResolvedVariables, RobotManifest};
use regente_proto::{EndStatus, EventKind, LogLevel};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot};
use tracing::warn;

use crate::guard::Launch;
use crate::masking::Masker;
use crate::robot_output::{self, log, MAX_LINE_BYTES};
use crate::robot_user::{self, Pool, RobotUser};

/// How long the output pipes may stay open after the robot exited (a leftover
/// grandchild holding them) before the group is killed and the run closed.
const DRAIN_GRACE: Duration = Duration::from_secs(2);

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
    wire: Vec<u8>,
    /// Hides what the vault handed the run in its output.
    masker: std::sync::Arc<Masker>,
    /// The robot user this run holds, if robots run as users of their own.
    user: Option<HeldUser>,
}

/// A robot user taken from the pool; given back when dropped.
pub struct HeldUser {
    pub user: RobotUser,
    pool: std::sync::Arc<std::sync::Mutex<Pool>>,
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
        let variables_file = run_dir.join("variables.json");
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
        let _ = std::fs::remove_dir_all(&self.run_dir);
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

/// A guard process started ahead of its robot (see [`crate::guard`]): exec'd
/// and waiting on its stdin for the command. The agent keeps a few.
pub struct IdleGuard {
    child: Child,
    /// The write end of the guard's stdin (blocking).
    commands: std::fs::File,
}

/// A command this long or shorter fits in an empty pipe at once (a pipe holds at
/// least one page, even under `pipe-user-pages-soft`): written without blocking.
const WRITE_AT_ONCE: usize = 4096;

impl IdleGuard {
    /// Starts `exe __guard AGENT_PID` as the leader of a new process group.
    /// Called from the agent's task, never from a blocking-pool thread: the
    /// parent-death signal follows the thread that spawned the guard, and
    /// blocking-pool threads end when idle.
    pub fn start(exe: &Path) -> std::io::Result<IdleGuard> {
        let (commands, stdin) = pipe()?;
        let mut command = Command::new(exe);
        command
            .arg("__guard")
            .arg(std::process::id().to_string())
            .stdin(Stdio::from(stdin))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        // The agent's own settings (its key among them) never reach a robot.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("REGENTE_") {
                command.env_remove(name);
            }
        }
        #[cfg(target_os = "linux")]
        unsafe {
            // The guard learns of the agent's death through this signal.
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        Ok(IdleGuard {
            child: command.spawn()?,
            commands,
        })
    }

    /// Still waiting for a command (not killed meanwhile).
    pub fn is_alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Ends an idle guard for good.
    pub async fn retire(mut self) {
        kill_group(self.child.id().map(|pid| pid as i32));
        let _ = self.child.wait().await;
    }
}

/// A pipe: (write end, read end), both close-on-exec (the guard gets the read
/// end as its stdin, which exec keeps).
fn pipe() -> std::io::Result<(std::fs::File, std::os::fd::OwnedFd)> {
    use std::os::fd::FromRawFd;
    let mut fds = [0; 2];
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    unsafe {
        Ok((
            std::fs::File::from_raw_fd(fds[1]),
            std::os::fd::OwnedFd::from_raw_fd(fds[0]),
        ))
    }
}

/// Starts a robot: hands a short command to its guard at once, from the calling
/// task, so that the guard starts the robot without waiting for a task to be
/// scheduled; the rest of the run goes on in a task of its own.
pub fn start(
    run: RobotRun,
    launcher: Launcher,
    reports: mpsc::Sender<Report>,
    stop: oneshot::Receiver<Stop>,
) {
    let launcher = match launcher {
        Launcher::Guard(mut guard) if run.wire.len() <= WRITE_AT_ONCE => {
            let written = guard.commands.write_all(&run.wire);
            Launcher::Handed(guard, written)
        }
        other => other,
    };
    tokio::spawn(self::run(run, launcher, reports, stop));
}

/// The agent's idle guards (exec'd, waiting for a command), so that a robot's
/// start costs no exec of the `regente` binary.
pub struct GuardPool {
    /// The `regente` executable; `None`: robots start without a guard.
    exe: Option<PathBuf>,
    idle: Vec<IdleGuard>,
}

impl GuardPool {
    pub fn new(exe: Option<PathBuf>) -> GuardPool {
        GuardPool {
            exe,
            idle: Vec::new(),
        }
    }

    /// An idle guard for a robot (a new one when none is left), or no guard at
    /// all when the agent has no guard executable.
    pub fn take(&mut self) -> Result<Launcher, String> {
        let Some(exe) = &self.exe else {
            return Ok(Launcher::Direct);
        };
        while let Some(mut guard) = self.idle.pop() {
            if guard.is_alive() {
                return Ok(Launcher::Guard(guard));
            }
            tokio::spawn(guard.retire());
        }
        IdleGuard::start(exe)
            .map(Launcher::Guard)
            .map_err(|e| format!("cannot start the robot's guard process: {e}"))
    }

    /// Starts or retires idle guards until `target` wait.
    pub fn keep(&mut self, target: usize) {
        let Some(exe) = &self.exe else {
            return;
        };
        while self.idle.len() < target {
            match IdleGuard::start(exe) {
                Ok(guard) => self.idle.push(guard),
                Err(e) => {
                    warn!(error = %e, "cannot start an idle guard process; the next robot starts one");
                    break;
                }
            }
        }
        while self.idle.len() > target {
            if let Some(guard) = self.idle.pop() {
                tokio::spawn(guard.retire());
            }
        }
    }

    /// Ends every idle guard, waiting for each.
    pub async fn retire_all(&mut self) {
        for guard in self.idle.drain(..) {
            guard.retire().await;
        }
    }
}

/// How a robot is started.
pub enum Launcher {
    /// Handed to this guard.
    Guard(IdleGuard),
    /// Handed to this guard already, with the outcome of the write.
    Handed(IdleGuard, std::io::Result<()>),
    /// Spawned by the agent itself, without a guard.
    Direct,
}

/// Why the agent stops a robot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Canceled by a user: ends CANCELED.
    Cancel,
    /// The server ended the lease: stop quietly, report nothing.
    Revoke,
    /// No server was heard from for this long: the agent stops its robots
    /// before the server can give up on the runtime and hand the work to
    /// another copy. Ends ERROR.
    Fence { silent_for: Duration },
}

/// A report from a running robot, for the agent to number and send.
#[derive(Debug)]
pub struct Report {
    pub execution_id: String,
    pub kind: EventKind,
}

/// Runs the robot to its end. The last report is `Ended`, unless revoked.
pub async fn run(
    run: RobotRun,
    launcher: Launcher,
    reports: mpsc::Sender<Report>,
    stop: oneshot::Receiver<Stop>,
) {
    let execution_id = run.execution_id.clone();
    let send = |kind: EventKind| {
        let reports = reports.clone();
        let execution_id = execution_id.clone();
        async move {
            let _ = reports.send(Report { execution_id, kind }).await;
        }
    };
    let ended = |status: EndStatus, exit_code: Option<i32>, reason: String| EventKind::Ended {
        status,
        exit_code,
        reason,
    };
    let started = match launcher {
        Launcher::Guard(guard) => hand_over(guard, &run).await,
        Launcher::Handed(guard, written) => handed(guard.child, written).await,
        Launcher::Direct => spawn_direct(&run.launch),
    };
    let mut child = match started {
        Ok(child) => child,
        Err(why) => {
            send(log(LogLevel::Error, why.clone())).await;
            send(ended(EndStatus::Error, None, why)).await;
            return;
        }
    };
    let group = child.id().map(|pid| pid as i32);
    let stdout = child.stdout.take().map(|out| {
        tokio::spawn(forward_lines(
            out,
            reports.clone(),
            execution_id.clone(),
            run.masker.clone(),
            robot_output::parse_stdout_line,
        ))
    });
    let stderr = child.stderr.take().map(|err| {
        tokio::spawn(forward_lines(
            err,
            reports.clone(),
            execution_id.clone(),
            run.masker.clone(),
            robot_output::parse_stderr_line,
        ))
    });
    let timeout = run.timeout;
    let deadline = async {
        match timeout {
            Some(limit) => tokio::time::sleep(limit).await,
            None => std::future::pending().await,
        }
    };
    enum Outcome {
        Exited(std::io::Result<std::process::ExitStatus>),
        TimedOut,
        Stopped(Stop),
    }
    let outcome = tokio::select! {
        status = child.wait() => Outcome::Exited(status),
        _ = deadline => Outcome::TimedOut,
        stop = stop => Outcome::Stopped(stop.unwrap_or(Stop::Revoke)),
    };
    if !matches!(outcome, Outcome::Exited(_)) {
        kill_group(group);
        let _ = child.wait().await;
    }
    // Every line the robot wrote is forwarded before the end is reported.
    for reader in [stdout, stderr].into_iter().flatten() {
        if tokio::time::timeout(DRAIN_GRACE, reader).await.is_err() {
            kill_group(group);
        }
    }
    // Nothing the robot left behind in its group outlives the run, nor, with a
    // robot user, anything left under that user anywhere.
    kill_group(group);
    if let Some(held) = run.user {
        let _ = tokio::task::spawn_blocking(move || {
            robot_user::sweep(&held.user);
            drop(held);
        })
        .await;
    }
    let _ = tokio::fs::remove_dir_all(&run.run_dir).await;
    match outcome {
        Outcome::Exited(Ok(status)) => {
            let code = crate::guard::exit_code_of(status);
            if code == 0 {
                send(ended(
                    EndStatus::Finished,
                    Some(0),
                    "the robot exited with code 0".into(),
                ))
                .await;
            } else {
                let why = format!("the robot exited with code {code}");
                send(log(LogLevel::Error, why.clone())).await;
                send(ended(EndStatus::Error, Some(code), why)).await;
            }
        }
        Outcome::Exited(Err(e)) => {
            let why = format!("cannot wait for the robot: {e}");
            send(log(LogLevel::Error, why.clone())).await;
            send(ended(EndStatus::Error, None, why)).await;
        }
        Outcome::TimedOut => {
            let seconds = timeout.map_or(0, |t| t.as_secs());
            let why = format!(
                "the robot ran past its timeout of {seconds} s: its process tree was killed"
            );
            send(log(LogLevel::Error, why.clone())).await;
            send(ended(EndStatus::Error, None, why)).await;
        }
        Outcome::Stopped(Stop::Cancel) => {
            let why = "canceled: the robot's process tree was killed".to_owned();
            send(log(LogLevel::Warn, why.clone())).await;
            send(ended(EndStatus::Canceled, None, why)).await;
        }
        Outcome::Stopped(Stop::Fence { silent_for }) => {
            let why = fence_reason(silent_for);
            send(log(LogLevel::Error, why.clone())).await;
            send(ended(EndStatus::Error, None, why)).await;
        }
        Outcome::Stopped(Stop::Revoke) => {}
    }
}

/// Why a fenced robot ended.
pub fn fence_reason(silent_for: Duration) -> String {
    format!(
        "fenced: the runtime agent heard from no server for {:.1} s, so it stopped the robot's \
         process tree before the server could declare the runtime lost and run the work elsewhere",
        silent_for.as_secs_f64()
    )
}

/// Hands the robot's command to its guard, which starts it at once.
async fn hand_over(guard: IdleGuard, run: &RobotRun) -> Result<Child, String> {
    let IdleGuard {
        child,
        mut commands,
    } = guard;
    let wire = run.wire.clone();
    let written = tokio::task::spawn_blocking(move || commands.write_all(&wire))
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)));
    handed(child, written).await
}

/// The guard's child once its command is written, or why it is not.
async fn handed(mut child: Child, written: std::io::Result<()>) -> Result<Child, String> {
    if let Err(e) = written {
        kill_group(child.id().map(|pid| pid as i32));
        let _ = child.wait().await;
        return Err(format!(
            "cannot start the robot: its guard process did not take the command: {e}"
        ));
    }
    Ok(child)
}

/// Spawns the robot without a guard.
fn spawn_direct(launch: &Launch) -> Result<Child, String> {
    let mut command = Command::new(&launch.program);
    command
        .args(&launch.args)
        .current_dir(&launch.dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    // The agent's own settings (its key among them) never reach a robot.
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("REGENTE_") {
            command.env_remove(name);
        }
    }
    command.envs(launch.env.iter().map(|(n, v)| (n, v)));
    if let Some(user) = &launch.user {
        command.uid(user.uid).gid(user.gid);
    }
    unsafe {
        // Only stdin, stdout and stderr reach the robot (the agent runs threads:
        // only a system call here).
        command.pre_exec(|| {
            libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
            Ok(())
        });
    }
    command.spawn().map_err(|e| {
        let shown = launch.program.to_string_lossy();
        if e.kind() == std::io::ErrorKind::NotFound {
            format!("cannot start the robot: command {shown:?} not found")
        } else {
            format!("cannot start the robot: {shown:?}: {e}")
        }
    })
}

/// Kills a robot's whole process group.
fn kill_group(group: Option<i32>) {
    #[cfg(unix)]
    if let Some(group) = group.filter(|g| *g > 0) {
        unsafe {
            libc::kill(-group, libc::SIGKILL);
        }
    }
    #[cfg(not(unix))]
    let _ = group;
}

/// Forwards each line of a pipe, masked and parsed, in order; lines are capped at
/// [`MAX_LINE_BYTES`] without buffering more than that.
async fn forward_lines(
    pipe: impl AsyncRead + Unpin,
    reports: mpsc::Sender<Report>,
    execution_id: String,
    masker: std::sync::Arc<Masker>,
    parse: fn(String) -> EventKind,
) {
    let mut reader = BufReader::with_capacity(64 * 1024, pipe);
    let mut line = Vec::new();
    loop {
        line.clear();
        match read_capped_line(&mut reader, &mut line).await {
            Ok(false) => return,
            Ok(true) => {}
            Err(_) => return,
        }
        // Masked before anything reads it: the journal and the server see only `***`.
        let kind = parse(masker.mask(robot_output::line_text(&line)));
        if reports
            .send(Report {
                execution_id: execution_id.clone(),
                kind,
            })
            .await
            .is_err()
        {
            return;
        }
    }
}

/// Reads one line (without its newline) into `line`, keeping at most
/// `MAX_LINE_BYTES + 1` bytes and discarding the rest. False at end of input.
async fn read_capped_line(
    reader: &mut (impl AsyncBufReadExt + Unpin),
    line: &mut Vec<u8>,
) -> std::io::Result<bool> {
    let mut read_any = false;
    loop {
        let buffer = reader.fill_buf().await?;
        if buffer.is_empty() {
            return Ok(read_any);
        }
        read_any = true;
        let (chunk, found, used) = match buffer.iter().position(|b| *b == b'\n') {
            Some(at) => (&buffer[..at], true, at + 1),
            None => (buffer, false, buffer.len()),
        };
        let room = (MAX_LINE_BYTES + 1).saturating_sub(line.len());
        line.extend_from_slice(&chunk[..chunk.len().min(room)]);
        reader.consume(used);
        if found {
            return Ok(true);
        }
    }
}
