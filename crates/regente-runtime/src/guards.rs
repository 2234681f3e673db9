//! The agent's side of its guards (see [`crate::guard`]): one guard process
//! serves robots one after another, and waits in the agent's pool between runs.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};
use tracing::warn;

use crate::guard::{command, link, GuardReport};

/// A command this long or shorter fits in an empty socket at once: handed
/// over from the agent's task without blocking it.
pub const HAND_OVER_AT_ONCE: usize = 4096;

/// How long a guard may take to finish a run (kill a group, reap a zombie).
const FINISH_GRACE: Duration = Duration::from_secs(5);

/// A guard process, exec'd and waiting for a robot or guarding one.
pub struct Guard {
    child: Child,
    /// The agent's end of the guard's command socket (blocking).
    commands: UnixStream,
    reports: Lines<BufReader<ChildStdout>>,
}

impl Guard {
    /// Starts `exe __guard AGENT_PID` as the leader of a new process group.
    /// Called from the agent's task, never from a blocking-pool thread: the
    /// parent-death signal follows the thread that spawned the guard, and
    /// blocking-pool threads end when idle.
    pub fn start(exe: &Path) -> std::io::Result<Guard> {
        // Both ends close-on-exec; the guard gets its end as stdin, which exec keeps.
        let (commands, theirs) = UnixStream::pair()?;
        let mut command = Command::new(exe);
        command
            .arg("__guard")
            .arg(std::process::id().to_string())
            .stdin(Stdio::from(OwnedFd::from(theirs)))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .process_group(0);
        without_agent_settings(&mut command);
        #[cfg(target_os = "linux")]
        unsafe {
            // The guard learns of the agent's death through this signal.
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let mut child = command.spawn()?;
        let reports = child
            .stdout
            .take()
            .ok_or_else(|| std::io::Error::other("the guard has no report pipe"))?;
        Ok(Guard {
            child,
            commands,
            reports: BufReader::new(reports).lines(),
        })
    }

    /// Still running (not killed meanwhile).
    pub fn is_alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Hands a robot's command over (`wire`, from [`crate::guard::Launch::encode`])
    /// with its stdout and stderr. Blocks when `wire` is longer than
    /// [`HAND_OVER_AT_ONCE`] and the guard is slow to read.
    pub fn hand_over(
        &self,
        wire: &[u8],
        stdout: &OwnedFd,
        stderr: &OwnedFd,
    ) -> std::io::Result<()> {
        send_launch(&self.commands, wire, stdout, stderr)
    }

    /// A second handle on the command socket, for a hand-over on another thread.
    pub fn commands(&self) -> std::io::Result<UnixStream> {
        self.commands.try_clone()
    }

    /// Asks the guard to kill the robot's group now.
    pub fn kill(&self) -> std::io::Result<()> {
        link::send_with_fds(self.commands.as_raw_fd(), &[command::KILL], &[])
    }

    /// The guard's next report. Cancel-safe.
    pub async fn report(&mut self) -> std::io::Result<GuardReport> {
        let line = self
            .reports
            .next_line()
            .await?
            .ok_or_else(|| std::io::Error::other("the robot's guard process ended"))?;
        GuardReport::parse(&line).ok_or_else(|| {
            std::io::Error::other(format!("the robot's guard process said {line:?}"))
        })
    }

    /// Ends the run: the guard kills what is left of the robot's group and
    /// reaps it. The guard, ready for the next robot; `Err` when it is not
    /// (then ended).
    pub async fn finish(mut self) -> Result<Guard, std::io::Error> {
        let finished = async {
            link::send_with_fds(self.commands.as_raw_fd(), &[command::FINISH], &[])?;
            match self.report().await? {
                GuardReport::Done => Ok(()),
                other => Err(std::io::Error::other(format!(
                    "the robot's guard process reported {other:?} at the end of a run"
                ))),
            }
        };
        match tokio::time::timeout(FINISH_GRACE, finished).await {
            Ok(Ok(())) => Ok(self),
            Ok(Err(e)) => {
                self.end().await;
                Err(e)
            }
            Err(_) => {
                self.end().await;
                Err(std::io::Error::other(
                    "the robot's guard process did not finish the run",
                ))
            }
        }
    }

    /// Kills the robot's group from the agent: the guard cannot (died,
    /// stopped, wedged). `leader` is the robot the guard reported, if it did.
    ///
    /// While the guard lives, stopped or not, it holds its robot, a zombie
    /// once ended, so the group's id cannot be reused: the group is killed
    /// even after its leader exited, with what it left behind. A robot the
    /// guard did not report is found among its children, once the guard is
    /// stopped so that none is forked after the look; then the guard's own
    /// group goes, the guard with it, and a child not yet in a group of its own.
    pub async fn kill_robot_from_here(&mut self, leader: Option<&Leader>) {
        let alive = self.is_alive();
        match (leader, self.child.id()) {
            (Some(leader), _) if alive => kill_group(leader.pid),
            (Some(leader), _) => leader.kill_group_if_alive(),
            (None, Some(pid)) if alive => {
                // Waiting for the stop and reading /proc block: not on a
                // worker of the runtime, whose other tasks would wait.
                let unreported = move || {
                    stop_and_wait(pid);
                    for child in children_of(pid) {
                        kill_group(child as i32);
                        unsafe {
                            libc::kill(child as i32, libc::SIGKILL);
                        }
                    }
                    kill_group(pid as i32);
                };
                if tokio::task::spawn_blocking(unreported).await.is_err() {
                    kill_group(pid as i32);
                }
            }
            (None, _) => {}
        }
    }

    /// Kills the guard at once (SIGKILL): it did not answer. Its robot must be
    /// killed first; see [`Leader`].
    pub fn kill_now(&mut self) {
        let _ = self.child.start_kill();
    }

    /// Ends the guard for good. SIGTERM first: the guard kills its robot's
    /// group, if it has a robot, as it leaves.
    pub async fn end(mut self) {
        let Some(pid) = self.child.id() else {
            return;
        };
        unsafe {
            libc::kill(pid as i32, libc::SIGTERM);
        }
        if tokio::time::timeout(FINISH_GRACE, self.child.wait())
            .await
            .is_err()
        {
            kill_group(pid as i32);
            let _ = self.child.wait().await;
        }
    }
}

/// Removes the agent's own settings (its key among them) from what `command`
/// inherits: they never reach a robot.
pub fn without_agent_settings(command: &mut Command) {
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("REGENTE_") {
            command.env_remove(name);
        }
    }
}

/// A robot that leads its own process group, as its guard reported it. The
/// agent kills the group itself only when the guard cannot: while the guard
/// lives it holds the leader, so the id is safe (see
/// [`Guard::kill_robot_from_here`]); once the guard died, only while the leader
/// still runs, watched through a pidfd, since a leader gone may have left its
/// id free for another process.
pub struct Leader {
    pid: i32,
    /// `None` on kernels without pidfd (before 5.3): the group is killed unwatched.
    pidfd: Option<OwnedFd>,
}

impl Leader {
    /// Called while the guard holds the robot (running, or its zombie), so the
    /// pid is the robot's.
    pub fn new(pid: i32) -> Leader {
        use std::os::fd::FromRawFd;
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as i32;
        Leader {
            pid,
            pidfd: (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) }),
        }
    }

    /// Kills the robot's group if its leader still runs.
    pub fn kill_group_if_alive(&self) {
        if let Some(pidfd) = &self.pidfd {
            let mut polled = libc::pollfd {
                fd: pidfd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // Readable once the leader ended.
            if unsafe { libc::poll(&mut polled, 1, 0) } != 0 {
                return;
            }
        }
        kill_group(self.pid);
    }
}

/// How long a guard stopped from here may take to be seen stopped.
const STOP_GRACE: Duration = Duration::from_millis(100);

/// Stops a process (SIGSTOP) and waits, briefly, until `/proc` shows it
/// stopped: from then on it forks nothing.
fn stop_and_wait(pid: u32) {
    unsafe {
        libc::kill(pid as i32, libc::SIGSTOP);
    }
    let deadline = std::time::Instant::now() + STOP_GRACE;
    while std::time::Instant::now() < deadline {
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|stat| state_in_stat(&stat));
        if !matches!(state, Some('R' | 'S' | 'D')) {
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The fields of a `/proc/PID/stat` line after the command name, which is in
/// parentheses and may hold any character: the state first, then the parent.
fn stat_fields_after_name(stat: &str) -> Option<std::str::SplitWhitespace<'_>> {
    let (_, after_name) = stat.rsplit_once(')')?;
    Some(after_name.split_whitespace())
}

/// The state letter in a `/proc/PID/stat` line (`R`, `S`, `T`, `Z`...).
fn state_in_stat(stat: &str) -> Option<char> {
    stat_fields_after_name(stat)?.next()?.chars().next()
}

/// The processes whose parent is `parent`, from `/proc/PID/stat`.
fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|stat| parent_in_stat(&stat) == Some(parent))
        })
        .collect()
}

/// The parent id in a `/proc/PID/stat` line.
fn parent_in_stat(stat: &str) -> Option<u32> {
    stat_fields_after_name(stat)?.nth(1)?.parse().ok()
}

/// Sends a launch (`wire`) on a guard's command socket, the robot's stdout
/// and stderr attached, in that order. Blocking.
pub fn send_launch(
    commands: &UnixStream,
    wire: &[u8],
    stdout: &OwnedFd,
    stderr: &OwnedFd,
) -> std::io::Result<()> {
    link::send_with_fds(
        commands.as_raw_fd(),
        wire,
        &[stdout.as_raw_fd(), stderr.as_raw_fd()],
    )
}

/// Kills a process group.
pub fn kill_group(group: i32) {
    if group > 0 {
        unsafe {
            libc::kill(-group, libc::SIGKILL);
        }
    }
}

/// A pipe for a robot's output: (read end, write end), both close-on-exec
/// and blocking (the read end is made non-blocking where the agent reads it).
pub fn output_pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    use std::os::fd::FromRawFd;
    let mut fds = [0; 2];
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    unsafe { Ok((OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1]))) }
}

/// Guards waiting for a robot; a run gives its guard back when it ends.
#[derive(Clone, Default)]
pub struct Idle(Arc<Mutex<Vec<Guard>>>);

impl Idle {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Guard>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes back a guard that finished a run.
    pub fn give_back(&self, guard: Guard) {
        self.lock().push(guard);
    }
}

/// A guard taken from the pool for one run.
pub struct Taken {
    pub guard: Guard,
    /// Where it goes back when the run ends.
    pub idle: Idle,
}

/// The agent's guards between runs, so that a robot's start costs no exec of
/// the `regente` binary.
pub struct GuardPool {
    /// The `regente` executable; `None`: robots start without a guard.
    exe: Option<PathBuf>,
    idle: Idle,
}

impl GuardPool {
    pub fn new(exe: Option<PathBuf>) -> GuardPool {
        GuardPool {
            exe,
            idle: Idle::default(),
        }
    }

    /// A guard for a robot (a new one when none waits); `None` when the agent
    /// has no guard executable (robots start without one).
    pub fn take(&mut self) -> Result<Option<Taken>, String> {
        let Some(exe) = &self.exe else {
            return Ok(None);
        };
        loop {
            let popped = self.idle.lock().pop();
            let Some(mut guard) = popped else {
                break;
            };
            if guard.is_alive() {
                return Ok(Some(Taken {
                    guard,
                    idle: self.idle.clone(),
                }));
            }
            tokio::spawn(guard.end());
        }
        Guard::start(exe)
            .map(|guard| {
                Some(Taken {
                    guard,
                    idle: self.idle.clone(),
                })
            })
            .map_err(|e| format!("cannot start the robot's guard process: {e}"))
    }

    /// Starts guards until at least `least` wait, and ends those beyond `most`.
    pub fn keep(&mut self, least: usize, most: usize) {
        let Some(exe) = &self.exe else {
            return;
        };
        // Started outside the lock: a run giving its guard back never waits
        // for an exec.
        let missing = least.saturating_sub(self.idle.lock().len());
        for _ in 0..missing {
            match Guard::start(exe) {
                Ok(guard) => self.idle.give_back(guard),
                Err(e) => {
                    warn!(error = %e, "cannot start an idle guard process; the next robot starts one");
                    break;
                }
            }
        }
        let mut idle = self.idle.lock();
        while idle.len() > most.max(least) {
            if let Some(guard) = idle.pop() {
                tokio::spawn(guard.end());
            }
        }
    }

    /// Ends every waiting guard, waiting for each.
    pub async fn retire_all(&mut self) {
        let idle: Vec<Guard> = std::mem::take(&mut *self.idle.lock());
        for guard in idle {
            guard.end().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parent_is_read_past_a_command_name_holding_parentheses_and_spaces() {
        let stat = "4242 (a) 1 2 (b) S 17 4242 4242 0 -1";
        assert_eq!(parent_in_stat(stat), Some(17));
        assert_eq!(state_in_stat(stat), Some('S'));
        assert_eq!(parent_in_stat("4242 (no end"), None);
    }

    #[test]
    fn a_process_child_is_found_among_its_parents_children() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("sleep");
        let found = children_of(std::process::id());
        let _ = child.kill();
        let _ = child.wait();
        assert!(
            found.contains(&child.id()),
            "{found:?} lacks {}",
            child.id()
        );
        assert!(!children_of(child.id()).contains(&std::process::id()));
    }
}
