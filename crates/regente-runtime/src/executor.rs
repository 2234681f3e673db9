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
use std::os::fd::OwnedFd;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot};
use tracing::warn;

use crate::guard::{GuardReport, Launch};
use crate::guards::{
    kill_group, output_pipe, without_agent_settings, Leader, Taken, HAND_OVER_AT_ONCE,
};
use crate::masking::Masker;
use crate::robot_output::{self, log, MAX_LINE_BYTES};
use crate::robot_user::{self, Pool, RobotUser};

/// How long the output pipes may stay open after the robot exited (a leftover
/// grandchild holding them) before the group is killed and the run closed.
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// How long a guard may take to report a robot started (its exec included)
/// before it counts as broken (stopped, wedged).
const START_GRACE: Duration = Duration::from_secs(30);

/// How long a guard may take to report its robot ended once asked to kill it,
/// before the agent kills both itself.
const KILL_GRACE: Duration = Duration::from_secs(5);

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

/// Starts a robot: hands a short command to its guard at once, from the calling
/// task, so that the guard starts the robot without waiting for a task to be
/// scheduled; the rest of the run goes on in a task of its own.
pub fn start(
    run: RobotRun,
    guard: Option<Taken>,
    reports: mpsc::Sender<Report>,
    stop: oneshot::Receiver<Stop>,
) {
    let launcher = match guard {
        Some(taken) => match output_pipes() {
            Ok(pipes) if run.wire.len() <= HAND_OVER_AT_ONCE => {
                let handed = taken.guard.hand_over(&run.wire, &pipes.out.1, &pipes.err.1);
                Launcher::Handed(taken, pipes, handed)
            }
            Ok(pipes) => Launcher::Guard(taken, pipes),
            Err(e) => Launcher::Failed(format!(
                "cannot start the robot: cannot make its output pipes: {e}"
            )),
        },
        None => Launcher::Direct,
    };
    tokio::spawn(self::run(run, launcher, reports, stop));
}

/// A robot's stdout and stderr pipes: (read end, write end) each.
struct OutputPipes {
    out: (OwnedFd, OwnedFd),
    err: (OwnedFd, OwnedFd),
}

fn output_pipes() -> std::io::Result<OutputPipes> {
    Ok(OutputPipes {
        out: output_pipe()?,
        err: output_pipe()?,
    })
}

/// How a robot is started.
enum Launcher {
    /// By this guard, with these pipes.
    Guard(Taken, OutputPipes),
    /// Handed to this guard already, with the outcome of the hand-over.
    Handed(Taken, OutputPipes, std::io::Result<()>),
    /// Spawned by the agent itself, without a guard.
    Direct,
    /// Not at all, for this reason.
    Failed(String),
}

/// A robot started, and how to wait for it and stop it.
enum Robot {
    Guarded {
        taken: Taken,
        /// When the guard must have reported the robot started (or exited)
        /// by; `None` once it did.
        start_by: Option<tokio::time::Instant>,
        /// The robot, leader of its process group, once the guard said.
        leader: Option<Leader>,
        /// Its exit code, once the guard said.
        exited: Option<i32>,
    },
    /// Without a guard: the child and its group.
    Direct(Child, i32),
}

/// The reading ends of a robot's output.
type Outputs = (
    Option<Box<dyn AsyncRead + Send + Unpin>>,
    Option<Box<dyn AsyncRead + Send + Unpin>>,
);

impl Robot {
    /// Starts the robot; its output's reading ends. A guarded robot's output
    /// is read from the hand-over on, before its guard reports the start: a
    /// guard stopped in between (the robot may stop it) loses no line.
    async fn start(launcher: Launcher, run: &RobotRun) -> Result<(Robot, Outputs), String> {
        let (taken, pipes, handed) = match launcher {
            Launcher::Direct => {
                let mut child = spawn_direct(&run.launch)?;
                let outputs: Outputs = (
                    child.stdout.take().map(|o| Box::new(o) as _),
                    child.stderr.take().map(|e| Box::new(e) as _),
                );
                let group = child.id().map_or(0, |pid| pid as i32);
                return Ok((Robot::Direct(child, group), outputs));
            }
            Launcher::Failed(why) => return Err(why),
            Launcher::Handed(taken, pipes, handed) => (taken, pipes, handed),
            Launcher::Guard(taken, pipes) => {
                let wire = run.wire.clone();
                let handed = match (
                    taken.guard.commands(),
                    pipes.out.1.try_clone(),
                    pipes.err.1.try_clone(),
                ) {
                    (Ok(commands), Ok(out), Ok(err)) => tokio::task::spawn_blocking(move || {
                        crate::guards::send_launch(&commands, &wire, &out, &err)
                    })
                    .await
                    .unwrap_or_else(|e| Err(std::io::Error::other(e))),
                    (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => Err(e),
                };
                (taken, pipes, handed)
            }
        };
        // The guard holds the write ends now: ours go, so that the reading
        // ends see the end of file once the robot's group closed them.
        let OutputPipes {
            out: (out, out_write),
            err: (err, err_write),
        } = pipes;
        drop((out_write, err_write));
        let reader = |fd: OwnedFd| {
            tokio::net::unix::pipe::Receiver::from_owned_fd(fd)
                .map(|r| Box::new(r) as Box<dyn AsyncRead + Send + Unpin>)
        };
        let outputs = reader(out).and_then(|out| Ok((Some(out), Some(reader(err)?))));
        match (handed, outputs) {
            (Ok(()), Ok(outputs)) => Ok((
                Robot::Guarded {
                    taken,
                    start_by: Some(tokio::time::Instant::now() + START_GRACE),
                    leader: None,
                    exited: None,
                },
                outputs,
            )),
            (Err(e), _) | (_, Err(e)) => {
                // A robot it may have started goes with it (SIGTERM).
                taken.guard.end().await;
                Err(format!(
                    "cannot start the robot: its guard process did not take the command: {e}"
                ))
            }
        }
    }

    /// The robot's exit code once it ended. Cancel-safe.
    async fn exited(&mut self) -> std::io::Result<i32> {
        match self {
            Robot::Direct(child, _) => child.wait().await.map(crate::guard::exit_code_of),
            Robot::Guarded {
                taken,
                start_by,
                leader,
                exited,
            } => loop {
                if let Some(code) = exited {
                    return Ok(*code);
                }
                let report = match *start_by {
                    Some(deadline) => tokio::time::timeout_at(deadline, taken.guard.report())
                        .await
                        .unwrap_or_else(|_| {
                            Err(std::io::Error::other(format!(
                                "the robot's guard process did not report it started within {} s",
                                START_GRACE.as_secs()
                            )))
                        }),
                    None => taken.guard.report().await,
                };
                match report {
                    Ok(GuardReport::Started { pid }) if start_by.is_some() => {
                        *start_by = None;
                        *leader = Some(Leader::new(pid));
                    }
                    Ok(GuardReport::Exited { code }) => *exited = Some(code),
                    Ok(other) => {
                        return Err(std::io::Error::other(format!(
                            "the robot's guard process reported {other:?} while it ran"
                        )))
                    }
                    Err(e) => return Err(e),
                }
            },
        }
    }

    /// Kills the robot's whole process group.
    fn kill(&mut self) {
        match self {
            Robot::Direct(_, group) => kill_group(*group),
            Robot::Guarded { taken, leader, .. } => {
                if taken.guard.kill().is_err() {
                    taken.guard.kill_robot_from_here(leader.as_ref());
                }
            }
        }
    }

    /// Kills the robot's group and its guard from the agent: the guard did not
    /// do it when asked (stopped, wedged).
    async fn force_end(&mut self) {
        if let Robot::Guarded {
            taken,
            leader,
            exited,
            ..
        } = self
        {
            // The robot first: while it runs, the guard still holds its pid.
            taken.guard.kill_robot_from_here(leader.as_ref());
            taken.guard.kill_now();
            exited.get_or_insert(128 + libc::SIGKILL);
        }
    }

    /// Ends the run: nothing of the robot's group is left, and its guard goes
    /// back to the pool.
    async fn finish(self) {
        match self {
            Robot::Direct(_, group) => kill_group(group),
            Robot::Guarded { taken, leader, .. } => {
                let Taken { guard, idle } = taken;
                match guard.finish().await {
                    Ok(guard) => idle.give_back(guard),
                    Err(e) => {
                        // The guard was ended (SIGTERM, then SIGKILL): what
                        // it could not kill is killed from here.
                        if let Some(leader) = leader {
                            leader.kill_group_if_alive();
                        }
                        warn!(error = %e, "a guard process was ended after a run");
                    }
                }
            }
        }
    }
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
async fn run(
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
    let (mut robot, (stdout, stderr)) = match Robot::start(launcher, &run).await {
        Ok(started) => started,
        Err(why) => {
            send(log(LogLevel::Error, why.clone())).await;
            send(ended(EndStatus::Error, None, why)).await;
            return;
        }
    };
    let forward = |pipe: Box<dyn AsyncRead + Send + Unpin>, parse: fn(String) -> EventKind| {
        tokio::spawn(forward_lines(
            pipe,
            reports.clone(),
            execution_id.clone(),
            run.masker.clone(),
            parse,
        ))
    };
    let stdout = stdout.map(|out| forward(out, robot_output::parse_stdout_line));
    let stderr = stderr.map(|err| forward(err, robot_output::parse_stderr_line));
    let timeout = run.timeout;
    let deadline = async {
        match timeout {
            Some(limit) => tokio::time::sleep(limit).await,
            None => std::future::pending().await,
        }
    };
    enum Outcome {
        Exited(std::io::Result<i32>),
        TimedOut,
        Stopped(Stop),
    }
    let outcome = tokio::select! {
        code = robot.exited() => Outcome::Exited(code),
        _ = deadline => Outcome::TimedOut,
        stop = stop => Outcome::Stopped(stop.unwrap_or(Stop::Revoke)),
    };
    match &outcome {
        Outcome::Exited(Ok(_)) => {}
        // The guard broke (ended, stopped, wedged, garbled): no longer trusted
        // with the robot.
        Outcome::Exited(Err(_)) => robot.force_end().await,
        Outcome::TimedOut | Outcome::Stopped(_) => {
            robot.kill();
            let ended = tokio::time::timeout(KILL_GRACE, robot.exited()).await;
            if !matches!(ended, Ok(Ok(_))) {
                robot.force_end().await;
            }
        }
    }
    // Every line the robot wrote is forwarded before the end is reported.
    for reader in [stdout, stderr].into_iter().flatten() {
        if tokio::time::timeout(DRAIN_GRACE, reader).await.is_err() {
            robot.kill();
        }
    }
    // Nothing the robot left behind in its group outlives the run, nor, with a
    // robot user, anything left under that user anywhere.
    robot.finish().await;
    if let Some(held) = run.user {
        let _ = tokio::task::spawn_blocking(move || {
            robot_user::sweep(&held.user);
            drop(held);
        })
        .await;
    }
    let _ = tokio::fs::remove_dir_all(&run.run_dir).await;
    match outcome {
        Outcome::Exited(Ok(code)) => {
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
    without_agent_settings(&mut command);
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
