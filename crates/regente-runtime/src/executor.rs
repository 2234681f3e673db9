//! Runs one robot: spawns its command without a shell in its own process group,
//! streams its output as events, enforces the timeout, and kills the whole
//! process tree on cancel, timeout or revocation.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use regente_core::{ResolvedVariables, RobotManifest};
use regente_proto::{EndStatus, EventKind, LogLevel};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;
use tokio::sync::{mpsc, oneshot};

use crate::robot_output::{self, log, MAX_LINE_BYTES};

/// How long the output pipes may stay open after the robot exited (a leftover
/// grandchild holding them) before the group is killed and the run closed.
const DRAIN_GRACE: Duration = Duration::from_secs(2);

pub struct RobotRun {
    pub execution_id: String,
    /// The unpacked package: the robot's working directory.
    pub package_dir: PathBuf,
    /// A private directory for this run (the variables file).
    pub run_dir: PathBuf,
    pub manifest: RobotManifest,
    /// `{"NAME": typed value}`.
    pub variables: serde_json::Value,
    /// The `regente` executable, started as the guard of the robot's process
    /// group; `None` runs the command directly.
    pub guard: Option<PathBuf>,
}

/// Why the agent stops a robot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Canceled by a user: ends CANCELED.
    Cancel,
    /// The server ended the lease: stop quietly, report nothing.
    Revoke,
}

/// A report from a running robot, for the agent to number and send.
#[derive(Debug)]
pub struct Report {
    pub execution_id: String,
    pub kind: EventKind,
}

/// Runs the robot to its end. The last report is `Ended`, unless revoked.
pub async fn run(run: RobotRun, reports: mpsc::Sender<Report>, stop: oneshot::Receiver<Stop>) {
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
    let mut child = match spawn(&run).await {
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
            robot_output::parse_stdout_line,
        ))
    });
    let stderr = child.stderr.take().map(|err| {
        tokio::spawn(forward_lines(
            err,
            reports.clone(),
            execution_id.clone(),
            robot_output::parse_stderr_line,
        ))
    });
    let timeout = run.manifest.timeout;
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
    // Nothing the robot left behind in its group outlives the run.
    kill_group(group);
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
        Outcome::Stopped(Stop::Revoke) => {}
    }
}

async fn spawn(run: &RobotRun) -> Result<tokio::process::Child, String> {
    let (program, args) = run
        .manifest
        .command
        .split_first()
        .ok_or_else(|| "cannot start the robot: robot.toml has an empty command".to_owned())?;
    // A program named with a path is relative to the package, not to the agent.
    let program = if program.contains('/') || program.contains('\\') {
        run.package_dir.join(program).into_os_string()
    } else {
        program.into()
    };
    tokio::fs::create_dir_all(&run.run_dir).await.map_err(|e| {
        format!(
            "cannot create the run directory {}: {e}",
            run.run_dir.display()
        )
    })?;
    let variables_file = run.run_dir.join("variables.json");
    tokio::fs::write(&variables_file, run.variables.to_string())
        .await
        .map_err(|e| format!("cannot write the variables file: {e}"))?;
    let mut command = match &run.guard {
        Some(guard) => {
            let mut command = Command::new(guard);
            command
                .arg("__guard")
                .arg(std::process::id().to_string())
                .arg("--")
                .arg(&program)
                .args(args);
            command
        }
        None => {
            let mut command = Command::new(&program);
            command.args(args);
            command
        }
    };
    command
        .current_dir(&run.package_dir)
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
    command
        .env("REGENTE_VARIABLES", &variables_file)
        .env("REGENTE_EXECUTION_ID", &run.execution_id);
    for (name, value) in ResolvedVariables::from_json(&run.variables).iter() {
        command.env(format!("REGENTE_VAR_{name}"), value.text_form());
    }
    #[cfg(target_os = "linux")]
    unsafe {
        // The guard learns of the agent's death through this signal.
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
    command.spawn().map_err(|e| {
        let shown = program.to_string_lossy();
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

/// Forwards each line of a pipe, parsed, in order; lines are capped at
/// [`MAX_LINE_BYTES`] without buffering more than that.
async fn forward_lines(
    pipe: impl AsyncRead + Unpin,
    reports: mpsc::Sender<Report>,
    execution_id: String,
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
        let kind = parse(robot_output::line_text(&line));
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
