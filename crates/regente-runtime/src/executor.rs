//! Runs one robot: spawns its command without a shell in its own process group,
//! streams its output as events, enforces the timeout, and kills the whole
//! process tree on cancel, timeout or revocation.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

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
use crate::robot_user;
use crate::run_setup::{HeldUser, RobotRun};

/// How long the output pipes may stay open after the robot exited (a leftover
/// grandchild holding them) before the group is killed and the run closed.
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// How long a guard may take to report a robot started (its exec included)
/// before it counts as broken (stopped, wedged).
const START_GRACE: Duration = Duration::from_secs(30);

/// How long a guard may take to report its robot ended once asked to kill it,
/// before the agent kills both itself.
const KILL_GRACE: Duration = Duration::from_secs(5);

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

/// Why a robot was not started.
enum NotStarted {
    /// It could not be, for this reason.
    Failed(String),
    /// The run was stopped first.
    Stopped(Stop),
}

/// Hands a command too long to go at once to the guard, from a blocking thread:
/// a guard that does not read it (stopped, wedged) blocks the send. The run
/// still hears its stop meanwhile, and gives up after [`START_GRACE`]; either
/// way the guard is then killed from here (stopped first, with any child it
/// forked), which ends the send. `Err` is the stop heard before the send ended:
/// no robot started (or, in a race, the one just started went with its guard).
async fn hand_over_long(
    taken: &mut Taken,
    pipes: &OutputPipes,
    run: &RobotRun,
    stop: &mut oneshot::Receiver<Stop>,
) -> Result<std::io::Result<()>, Stop> {
    let (commands, out, err) = match (
        taken.guard.commands(),
        pipes.out.1.try_clone(),
        pipes.err.1.try_clone(),
    ) {
        (Ok(commands), Ok(out), Ok(err)) => (commands, out, err),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return Ok(Err(e)),
    };
    let wire = run.wire.clone();
    let mut send = tokio::task::spawn_blocking(move || {
        crate::guards::send_launch(&commands, &wire, &out, &err)
    });
    let given_up = tokio::select! {
        // A command sent is a robot the guard may start: stopped as a started one.
        biased;
        sent = &mut send => return Ok(sent.unwrap_or_else(|e| Err(std::io::Error::other(e)))),
        _ = tokio::time::sleep(START_GRACE) => Ok(()),
        stopped = &mut *stop => Err(stopped.unwrap_or(Stop::Revoke)),
    };
    taken.guard.kill_robot_from_here(None).await;
    taken.guard.kill_now();
    // The guard's end closes its socket, which ends the send; a guard that
    // cannot die (uninterruptible sleep) is not waited for longer.
    let _ = tokio::time::timeout(KILL_GRACE, send).await;
    given_up.map(|()| {
        Err(std::io::Error::other(format!(
            "the guard process did not read the command within {} s",
            START_GRACE.as_secs()
        )))
    })
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
    async fn start(
        launcher: Launcher,
        run: &RobotRun,
        stop: &mut oneshot::Receiver<Stop>,
    ) -> Result<(Robot, Outputs), NotStarted> {
        let (taken, pipes, handed) = match launcher {
            Launcher::Direct => {
                let mut child = spawn_direct(&run.launch).map_err(NotStarted::Failed)?;
                let outputs: Outputs = (
                    child.stdout.take().map(|o| Box::new(o) as _),
                    child.stderr.take().map(|e| Box::new(e) as _),
                );
                let group = child.id().map_or(0, |pid| pid as i32);
                return Ok((Robot::Direct(child, group), outputs));
            }
            Launcher::Failed(why) => return Err(NotStarted::Failed(why)),
            Launcher::Handed(taken, pipes, handed) => (taken, pipes, handed),
            Launcher::Guard(mut taken, pipes) => {
                let handed = match hand_over_long(&mut taken, &pipes, run, stop).await {
                    Ok(handed) => handed,
                    Err(stopped) => {
                        taken.guard.end().await;
                        return Err(NotStarted::Stopped(stopped));
                    }
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
                Err(NotStarted::Failed(format!(
                    "cannot start the robot: its guard process did not take the command: {e}"
                )))
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
    async fn kill(&mut self) {
        match self {
            Robot::Direct(_, group) => kill_group(*group),
            Robot::Guarded { taken, leader, .. } => {
                if taken.guard.kill().is_err() {
                    taken.guard.kill_robot_from_here(leader.as_ref()).await;
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
            taken.guard.kill_robot_from_here(leader.as_ref()).await;
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
    mut stop: oneshot::Receiver<Stop>,
) {
    let execution_id = run.execution_id.clone();
    let send = |kind: EventKind| {
        let reports = reports.clone();
        let execution_id = execution_id.clone();
        async move {
            let _ = reports.send(Report { execution_id, kind }).await;
        }
    };
    let (mut robot, (stdout, stderr)) = match Robot::start(launcher, &run, &mut stop).await {
        Ok(started) => started,
        Err(not_started) => {
            // Robots run as this user may have been started (by a guard that
            // took the command and failed after).
            clean_up(run.user, &run.run_dir).await;
            report_end(Err(not_started), run.timeout, send).await;
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
            robot.kill().await;
            let ended = tokio::time::timeout(KILL_GRACE, robot.exited()).await;
            if !matches!(ended, Ok(Ok(_))) {
                robot.force_end().await;
            }
        }
    }
    // Every line the robot wrote is forwarded before the end is reported.
    for reader in [stdout, stderr].into_iter().flatten() {
        if tokio::time::timeout(DRAIN_GRACE, reader).await.is_err() {
            robot.kill().await;
        }
    }
    // Nothing the robot left behind in its group outlives the run, nor, with a
    // robot user, anything left under that user anywhere.
    robot.finish().await;
    clean_up(run.user, &run.run_dir).await;
    report_end(Ok(outcome), timeout, send).await;
}

/// What a run leaves once its robot ended or could not start: its robot user
/// goes back to the pool swept of anything still running as it, its directory goes.
async fn clean_up(user: Option<HeldUser>, run_dir: &Path) {
    if let Some(held) = user {
        let _ = tokio::task::spawn_blocking(move || {
            robot_user::sweep(&held.user);
            drop(held);
        })
        .await;
    }
    // Most runs leave only what the agent wrote: removed here, without a
    // blocking thread; a directory the robot wrote in is walked on one.
    if !crate::run_setup::remove_as_written(run_dir) {
        let _ = tokio::fs::remove_dir_all(run_dir).await;
    }
}

/// How a run ended, as the run reports it.
enum Outcome {
    Exited(std::io::Result<i32>),
    TimedOut,
    Stopped(Stop),
}

/// Reports a run's end (and, when it failed, why, in its log).
async fn report_end<F, Sent>(
    outcome: Result<Outcome, NotStarted>,
    timeout: Option<Duration>,
    send: F,
) where
    F: Fn(EventKind) -> Sent,
    Sent: std::future::Future<Output = ()>,
{
    let canceled = |why: &str| (EndStatus::Canceled, None, why.to_owned());
    let (status, exit_code, reason) = match outcome {
        Ok(Outcome::Exited(Ok(0))) => (
            EndStatus::Finished,
            Some(0),
            "the robot exited with code 0".to_owned(),
        ),
        Ok(Outcome::Exited(Ok(code))) => (
            EndStatus::Error,
            Some(code),
            format!("the robot exited with code {code}"),
        ),
        Ok(Outcome::Exited(Err(e))) => (
            EndStatus::Error,
            None,
            format!("cannot wait for the robot: {e}"),
        ),
        Ok(Outcome::TimedOut) => {
            let seconds = timeout.map_or(0, |t| t.as_secs());
            let why = format!(
                "the robot ran past its timeout of {seconds} s: its process tree was killed"
            );
            (EndStatus::Error, None, why)
        }
        Ok(Outcome::Stopped(Stop::Cancel)) => {
            canceled("canceled: the robot's process tree was killed")
        }
        Err(NotStarted::Stopped(Stop::Cancel)) => canceled("canceled before the robot started"),
        Ok(Outcome::Stopped(Stop::Fence { silent_for }))
        | Err(NotStarted::Stopped(Stop::Fence { silent_for })) => {
            (EndStatus::Error, None, fence_reason(silent_for))
        }
        // The server ended the lease: nothing to report.
        Ok(Outcome::Stopped(Stop::Revoke)) | Err(NotStarted::Stopped(Stop::Revoke)) => return,
        Err(NotStarted::Failed(why)) => (EndStatus::Error, None, why),
    };
    // The reason of an end that is not a success goes to the run's log too.
    let level = match status {
        EndStatus::Finished => None,
        EndStatus::Canceled => Some(LogLevel::Warn),
        _ => Some(LogLevel::Error),
    };
    if let Some(level) = level {
        send(log(level, reason.clone())).await;
    }
    send(EventKind::Ended {
        status,
        exit_code,
        reason,
    })
    .await;
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
