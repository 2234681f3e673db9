//! The robot guard: a tiny process between the agent and its robots, so that a
//! robot's whole process tree dies with the agent.
//!
//! The agent starts `regente __guard AGENT_PID` as the leader of a new process
//! group, with a parent-death signal (SIGTERM), before there is a robot to run,
//! and keeps it for as long as it lives: a guard serves one robot after
//! another, so that a start costs no exec of the (large) `regente` binary.
//!
//! Its stdin is a Unix socket that carries the agent's [`command`]s: a
//! [`Launch`] (directory, program, arguments, environment) with the robot's
//! stdout and stderr attached, then a kill or a finish. Its stdout carries its
//! [`GuardReport`]s, a line each. Each robot leads a process group of its own;
//! the guard keeps the robot a zombie after it ended until the agent finished
//! the run, so the group's id cannot be reused while the agent may still ask to
//! kill it: no pid-reuse race. End of file on the socket means the agent
//! retired the guard, or died. On SIGTERM, SIGINT or SIGHUP (the agent died, or
//! someone asked) the guard kills the current robot's group, grandchildren
//! included, and leaves.
//!
//! A robot gets only its stdin, stdout and stderr: the guard closes every other
//! descriptor it may have inherited before anything else, and what it opens
//! itself is close-on-exec. With a robot user (`--robot-user`), the robot's
//! process takes that user's groups, group and user between fork and exec; the
//! guard itself stays the agent's user, so that it can still kill the group.

use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::robot_user::Credentials;

/// What a guard starts: sent by the agent on the guard's stdin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    /// The robot's working directory.
    pub dir: PathBuf,
    /// The program, already looked up in `PATH` when it could be.
    pub program: OsString,
    pub args: Vec<OsString>,
    /// Set on top of the guard's own environment (which holds no `REGENTE_*`).
    pub env: Vec<(OsString, OsString)>,
    /// The user the robot runs as; `None`: the agent's.
    pub user: Option<Credentials>,
}

impl Launch {
    /// The wire form: [`command::LAUNCH`], the length of the rest (4 bytes,
    /// little-endian), then
    /// NUL-terminated fields (directory, program, the user as
    /// `uid:gid:groups` or empty, the number of arguments, the arguments, then
    /// `NAME=VALUE` pairs). The length lets the guard start the
    /// robot as soon as the command is in, without waiting for end of file.
    /// Refused when a field holds a NUL, which no program, argument or
    /// environment can carry.
    pub fn encode(&self) -> Result<Vec<u8>, String> {
        let mut out = vec![command::LAUNCH, 0, 0, 0, 0];
        let mut field = |bytes: &[u8], what: &str| {
            if bytes.contains(&0) {
                return Err(format!("{what} holds a NUL byte"));
            }
            out.extend_from_slice(bytes);
            out.push(0);
            Ok(())
        };
        field(self.dir.as_os_str().as_bytes(), "the working directory")?;
        field(self.program.as_bytes(), "the program")?;
        let user = self
            .user
            .as_ref()
            .map(Credentials::encode)
            .unwrap_or_default();
        field(user.as_bytes(), "")?;
        field(self.args.len().to_string().as_bytes(), "")?;
        for arg in &self.args {
            field(arg.as_bytes(), "an argument")?;
        }
        for (name, value) in &self.env {
            let name = name.as_bytes();
            if name.is_empty() || name.contains(&b'=') {
                return Err(format!(
                    "the environment variable name {:?} is not valid",
                    String::from_utf8_lossy(name)
                ));
            }
            let mut pair = name.to_vec();
            pair.push(b'=');
            pair.extend_from_slice(value.as_bytes());
            field(&pair, "an environment variable")?;
        }
        let length = u32::try_from(out.len() - 5).map_err(|_| "the command is too long")?;
        out[1..5].copy_from_slice(&length.to_le_bytes());
        Ok(out)
    }

    /// Reads one command, after its [`command::LAUNCH`]; `Ok(None)` at end of
    /// file before it.
    pub fn read_from(input: &mut impl Read) -> std::io::Result<Option<Launch>> {
        let mut length = [0u8; 4];
        let mut got = 0;
        while got < 4 {
            match input.read(&mut length[got..])? {
                0 if got == 0 => return Ok(None),
                0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                n => got += n,
            }
        }
        let mut body = vec![0; u32::from_le_bytes(length) as usize];
        input.read_exact(&mut body)?;
        Launch::decode(&body)
            .map(Some)
            .ok_or_else(|| std::io::Error::other("the command came garbled from the agent"))
    }

    /// The fields, without the length.
    fn decode(bytes: &[u8]) -> Option<Launch> {
        let body = bytes.strip_suffix(&[0])?;
        let mut fields = body.split(|b| *b == 0);
        let os = |b: &[u8]| OsString::from_vec(b.to_vec());
        let dir = PathBuf::from(os(fields.next()?));
        let program = os(fields.next()?);
        let user = match std::str::from_utf8(fields.next()?).ok()? {
            "" => None,
            text => Some(Credentials::decode(text)?),
        };
        let argc: usize = std::str::from_utf8(fields.next()?).ok()?.parse().ok()?;
        let mut args = Vec::with_capacity(argc.min(1024));
        for _ in 0..argc {
            args.push(os(fields.next()?));
        }
        let mut env = Vec::new();
        for pair in fields {
            let at = pair.iter().position(|b| *b == b'=')?;
            env.push((os(&pair[..at]), os(&pair[at + 1..])));
        }
        Some(Launch {
            dir,
            program,
            args,
            env,
            user,
        })
    }
}

/// The agent's commands, each the first byte of a message on the guard's stdin
/// (a Unix socket).
pub mod command {
    /// A robot to start: the [`Launch`](super::Launch) follows, and the robot's
    /// stdout and stderr come attached (`SCM_RIGHTS`).
    pub const LAUNCH: u8 = b'L';
    /// Kill the robot's process group now (a cancel, a timeout, a fence).
    pub const KILL: u8 = b'K';
    /// The run is over: kill what is left of the robot's group, reap the robot
    /// and wait for the next one.
    pub const FINISH: u8 = b'F';
}

/// What the guard tells the agent: one line on its stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuardReport {
    /// The robot runs, as the leader of its own process group.
    Started { pid: i32 },
    /// The robot ended with this code (128 + the signal when killed; 127 when
    /// it could not start, with the reason on its stderr). Kept as a zombie
    /// until [`command::FINISH`], so that its group id cannot be reused.
    Exited { code: i32 },
    /// Finished: ready for the next robot.
    Done,
}

impl GuardReport {
    pub fn line(self) -> String {
        match self {
            GuardReport::Started { pid } => format!("started {pid}\n"),
            GuardReport::Exited { code } => format!("exited {code}\n"),
            GuardReport::Done => "done\n".to_owned(),
        }
    }

    pub fn parse(line: &str) -> Option<GuardReport> {
        let line = line.trim_end();
        if line == "done" {
            return Some(GuardReport::Done);
        }
        let (word, number) = line.split_once(' ')?;
        let number = number.parse().ok()?;
        match word {
            "started" => Some(GuardReport::Started { pid: number }),
            "exited" => Some(GuardReport::Exited { code: number }),
            _ => None,
        }
    }
}

/// Runs the guard; returns the exit code to leave with.
#[cfg(target_os = "linux")]
pub fn run(agent_pid: i32) -> i32 {
    extern "C" fn kill_robot_and_leave(signal: libc::c_int) {
        // Async-signal-safe: system calls only.
        let robot = ROBOT_GROUP.load(std::sync::atomic::Ordering::SeqCst);
        unsafe {
            if robot > 0 {
                libc::kill(-robot, libc::SIGKILL);
            }
            libc::_exit(128 + signal);
        }
    }
    // The agent kills an idle guard by its group: started any other way (by
    // hand from a shell), it refuses rather than have its caller's group killed.
    if unsafe { libc::getpgrp() != libc::getpid() } {
        eprintln!(
            "regente __guard must lead its own process group; it is started by the runtime agent"
        );
        return 125;
    }
    close_inherited_descriptors();
    unsafe {
        for signal in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            libc::signal(
                signal,
                kill_robot_and_leave as *const () as libc::sighandler_t,
            );
        }
        // Its robots stay zombies until finished (see `GuardReport::Exited`),
        // which an inherited "ignore SIGCHLD" would prevent.
        libc::signal(libc::SIGCHLD, libc::SIG_DFL);
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
        // A guard carries one robot's command after another, secret variables
        // included: a robot of the same OS user may not read its memory
        // (ptrace, /proc/PID/mem). A robot's exec makes the robot dumpable again.
        libc::prctl(libc::PR_SET_DUMPABLE, 0);
        // The agent may have died before the death signal was armed.
        if libc::getppid() != agent_pid {
            return 125;
        }
    }
    match serve() {
        Ok(()) => 0,
        Err(e) => {
            // The agent is gone or garbled its commands: no robot is left behind.
            let robot = ROBOT_GROUP.load(std::sync::atomic::Ordering::SeqCst);
            if robot > 0 {
                unsafe {
                    libc::kill(-robot, libc::SIGKILL);
                }
            }
            eprintln!("regente __guard: {e}");
            125
        }
    }
}

#[cfg(not(target_os = "linux"))]
pub fn run(_agent_pid: i32) -> i32 {
    eprintln!("regente __guard runs on Linux only");
    125
}

/// The process group of the robot being guarded (its pid), 0 when none: what
/// the signal handler kills.
static ROBOT_GROUP: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

/// Closes every descriptor above stderr: whatever the agent's process had open
/// without close-on-exec is not the robot's business.
#[cfg(target_os = "linux")]
fn close_inherited_descriptors() {
    // close_range(2) (Linux 5.9); on older kernels, each open descriptor.
    if unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) } == 0 {
        return;
    }
    let open: Vec<i32> = match std::fs::read_dir("/proc/self/fd") {
        Ok(entries) => entries
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .filter(|fd| *fd > 2)
            .collect(),
        Err(_) => (3..1024).collect(),
    };
    for fd in open {
        unsafe {
            libc::close(fd);
        }
    }
}

/// Serves robots one after another until the agent closes the socket (it
/// retired the guard, or died): then the current robot's group is killed.
#[cfg(target_os = "linux")]
fn serve() -> std::io::Result<()> {
    use std::io::Write;
    use std::os::fd::{AsRawFd, FromRawFd};
    // Descriptor 0 is the command socket, 1 the report pipe.
    let socket = unsafe { std::os::unix::net::UnixStream::from_raw_fd(0) };
    let mut reports = unsafe { std::fs::File::from_raw_fd(1) };
    let mut report = |report: GuardReport| reports.write_all(report.line().as_bytes());
    loop {
        let (tag, fds) = match link::receive_command(socket.as_raw_fd())? {
            Some(command) => command,
            None => return Ok(()),
        };
        match tag {
            command::LAUNCH => {}
            // Late words about a robot already finished.
            command::KILL | command::FINISH => continue,
            other => return Err(garbled(other)),
        }
        let [stdout, stderr]: [std::os::fd::OwnedFd; 2] = fds
            .try_into()
            .map_err(|_| std::io::Error::other("a launch without its two pipes"))?;
        let launch = Launch::read_from(&mut &socket)?
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::UnexpectedEof))?;
        let mut robot = match start_robot(&launch, stdout, stderr) {
            Ok(robot) => robot,
            Err(code) => {
                report(GuardReport::Exited { code })?;
                finish(&socket, None)?;
                report(GuardReport::Done)?;
                continue;
            }
        };
        let pid = robot.id() as i32;
        report(GuardReport::Started { pid })?;
        let code = watch(&socket, pid)?;
        report(GuardReport::Exited { code })?;
        finish(&socket, Some(&mut robot))?;
        report(GuardReport::Done)?;
    }
}

#[cfg(target_os = "linux")]
fn garbled(tag: u8) -> std::io::Error {
    std::io::Error::other(format!("a command the guard does not know: {tag:#04x}"))
}

/// Starts the robot as the leader of its own group, its output on the agent's
/// pipes; an error becomes the code to report (the reason goes to the robot's
/// stderr, where the agent reads it as the run's log).
#[cfg(target_os = "linux")]
fn start_robot(
    launch: &Launch,
    stdout: std::os::fd::OwnedFd,
    stderr: std::os::fd::OwnedFd,
) -> Result<std::process::Child, i32> {
    use std::io::Write;
    use std::os::unix::process::CommandExt;
    let mut command = Command::new(&launch.program);
    command
        .args(&launch.args)
        .current_dir(&launch.dir)
        .stdin(Stdio::null())
        .process_group(0);
    for (name, value) in &launch.env {
        command.env(name, value);
    }
    if let Some(user) = launch.user.clone() {
        // The guard has one thread: only system calls run between fork and exec.
        unsafe {
            command.pre_exec(move || user.assume());
        }
    }
    let mut errors = std::fs::File::from(stderr.try_clone().map_err(|_| 125)?);
    command
        .stdout(Stdio::from(stdout))
        .stderr(Stdio::from(stderr));
    // A death signal between the spawn and the note of the robot's group
    // would leave the robot behind: held until the note is made.
    let blocked = Signals::block();
    let spawned = command.spawn();
    if let Ok(child) = &spawned {
        ROBOT_GROUP.store(child.id() as i32, std::sync::atomic::Ordering::SeqCst);
    }
    drop(blocked);
    // The command (and its copies of the pipes) goes before anything is reported.
    drop(command);
    spawned.map_err(|e| {
        let why = if e.kind() == std::io::ErrorKind::NotFound {
            "command not found".to_owned()
        } else {
            e.to_string()
        };
        // Short: one write that fits in the pipe's buffer.
        let program: String = shown(&launch.program).chars().take(256).collect();
        let _ = writeln!(errors, "cannot start the robot: {program}: {why}");
        127
    })
}

/// The termination signals, blocked while alive.
#[cfg(target_os = "linux")]
struct Signals(libc::sigset_t);

#[cfg(target_os = "linux")]
impl Signals {
    fn block() -> Signals {
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for signal in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
                libc::sigaddset(&mut set, signal);
            }
            libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            Signals(set)
        }
    }
}

#[cfg(target_os = "linux")]
impl Drop for Signals {
    fn drop(&mut self) {
        unsafe {
            libc::sigprocmask(libc::SIG_UNBLOCK, &self.0, std::ptr::null_mut());
        }
    }
}

/// Waits for the robot `pid` to end, killing its group when the agent asks;
/// its exit code. The robot is left a zombie (see [`GuardReport::Exited`]).
#[cfg(target_os = "linux")]
fn watch(socket: &std::os::unix::net::UnixStream, pid: i32) -> std::io::Result<i32> {
    use std::os::fd::AsRawFd;
    // A descriptor that polls readable when the robot ends (Linux 5.3); on
    // older kernels, a look every 20 ms.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as i32;
    let pidfd = (pidfd >= 0)
        .then(|| unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(pidfd) });
    loop {
        if let Some(code) = exit_code_kept(pid)? {
            return Ok(code);
        }
        let mut polled = vec![libc::pollfd {
            fd: socket.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        if let Some(pidfd) = &pidfd {
            polled.push(libc::pollfd {
                fd: pidfd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
        }
        let timeout = if pidfd.is_some() { -1 } else { 20 };
        if unsafe { libc::poll(polled.as_mut_ptr(), polled.len() as _, timeout) } < 0 {
            let error = std::io::Error::last_os_error();
            if error.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(error);
        }
        if polled[0].revents != 0 {
            match link::receive_command(socket.as_raw_fd())? {
                Some((command::KILL, _)) => kill_group(pid),
                Some((other, _)) => return Err(garbled(other)),
                None => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            }
        }
    }
}

/// The exit code of `pid` if it ended, without reaping it.
#[cfg(target_os = "linux")]
fn exit_code_kept(pid: i32) -> std::io::Result<Option<i32>> {
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let flags = libc::WEXITED | libc::WNOHANG | libc::WNOWAIT;
    if unsafe { libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, flags) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let (child, status) = unsafe { (info.si_pid(), info.si_status()) };
    if child == 0 {
        return Ok(None);
    }
    Ok(Some(if info.si_code == libc::CLD_EXITED {
        status
    } else {
        128 + status
    }))
}

/// Waits for the agent's [`command::FINISH`], then kills what is left of the
/// robot's group and reaps the robot.
#[cfg(target_os = "linux")]
fn finish(
    socket: &std::os::unix::net::UnixStream,
    robot: Option<&mut std::process::Child>,
) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let pid = robot.as_ref().map(|r| r.id() as i32);
    loop {
        match link::receive_command(socket.as_raw_fd())? {
            Some((command::FINISH, _)) => break,
            Some((command::KILL, _)) => {
                if let Some(pid) = pid {
                    kill_group(pid);
                }
            }
            Some((other, _)) => return Err(garbled(other)),
            None => return Err(std::io::ErrorKind::UnexpectedEof.into()),
        }
    }
    if let Some(robot) = robot {
        kill_group(robot.id() as i32);
        ROBOT_GROUP.store(0, std::sync::atomic::Ordering::SeqCst);
        robot.wait()?;
    }
    Ok(())
}

#[cfg(target_os = "linux")]
fn kill_group(pid: i32) {
    unsafe {
        libc::kill(-pid, libc::SIGKILL);
    }
}

fn shown(program: &OsStr) -> String {
    // A program looked up in PATH is named as the manifest names it.
    let path = std::path::Path::new(program);
    path.file_name()
        .filter(|_| path.is_absolute())
        .unwrap_or(program)
        .to_string_lossy()
        .into_owned()
}

/// The exit code, or 128 + the signal for a robot killed by a signal (as shells do).
pub fn exit_code_of(status: std::process::ExitStatus) -> i32 {
    if let Some(code) = status.code() {
        return code;
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            return 128 + signal;
        }
    }
    125
}

/// Commands with descriptors attached, over a Unix stream socket (`SCM_RIGHTS`).
pub mod link {
    use std::os::fd::{FromRawFd, OwnedFd, RawFd};

    /// Room for this many descriptors in one message; more are refused.
    const MOST_FDS: usize = 4;

    /// Control buffer, aligned for `cmsghdr`.
    #[repr(C, align(8))]
    struct Control([u8; 64]);

    /// Sends `bytes` with `fds` attached to the first of them, all of it
    /// (blocking). `MSG_NOSIGNAL`: a guard gone is an error, not a SIGPIPE.
    pub fn send_with_fds(socket: RawFd, bytes: &[u8], fds: &[RawFd]) -> std::io::Result<()> {
        assert!(fds.len() <= MOST_FDS && !bytes.is_empty());
        let mut control = Control([0; 64]);
        let fd_bytes = std::mem::size_of_val(fds);
        let mut iov = libc::iovec {
            iov_base: bytes.as_ptr() as *mut libc::c_void,
            iov_len: bytes.len(),
        };
        let mut message: libc::msghdr = unsafe { std::mem::zeroed() };
        message.msg_iov = &mut iov;
        message.msg_iovlen = 1;
        if !fds.is_empty() {
            message.msg_control = control.0.as_mut_ptr() as *mut libc::c_void;
            message.msg_controllen = unsafe { libc::CMSG_SPACE(fd_bytes as u32) } as _;
            unsafe {
                let header = libc::CMSG_FIRSTHDR(&message);
                (*header).cmsg_level = libc::SOL_SOCKET;
                (*header).cmsg_type = libc::SCM_RIGHTS;
                (*header).cmsg_len = libc::CMSG_LEN(fd_bytes as u32) as _;
                std::ptr::copy_nonoverlapping(
                    fds.as_ptr() as *const u8,
                    libc::CMSG_DATA(header),
                    fd_bytes,
                );
            }
        }
        let sent = loop {
            let sent = unsafe { libc::sendmsg(socket, &message, libc::MSG_NOSIGNAL) };
            if sent >= 0 {
                break sent as usize;
            }
            let error = std::io::Error::last_os_error();
            if error.kind() != std::io::ErrorKind::Interrupted {
                return Err(error);
            }
        };
        let mut rest = &bytes[sent..];
        while !rest.is_empty() {
            let sent = unsafe {
                libc::send(
                    socket,
                    rest.as_ptr() as *const libc::c_void,
                    rest.len(),
                    libc::MSG_NOSIGNAL,
                )
            };
            if sent < 0 {
                let error = std::io::Error::last_os_error();
                if error.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(error);
            }
            rest = &rest[sent as usize..];
        }
        Ok(())
    }

    /// Reads one command byte and the descriptors attached to it (close-on-exec);
    /// `None` at end of file.
    pub fn receive_command(socket: RawFd) -> std::io::Result<Option<(u8, Vec<OwnedFd>)>> {
        let mut byte = [0u8; 1];
        let mut control = Control([0; 64]);
        let mut iov = libc::iovec {
            iov_base: byte.as_mut_ptr() as *mut libc::c_void,
            iov_len: 1,
        };
        let mut message: libc::msghdr = unsafe { std::mem::zeroed() };
        message.msg_iov = &mut iov;
        message.msg_iovlen = 1;
        message.msg_control = control.0.as_mut_ptr() as *mut libc::c_void;
        message.msg_controllen = control.0.len() as _;
        let read = loop {
            let read = unsafe { libc::recvmsg(socket, &mut message, libc::MSG_CMSG_CLOEXEC) };
            if read >= 0 {
                break read;
            }
            let error = std::io::Error::last_os_error();
            if error.kind() != std::io::ErrorKind::Interrupted {
                return Err(error);
            }
        };
        let mut fds = Vec::new();
        unsafe {
            let mut header = libc::CMSG_FIRSTHDR(&message);
            while !header.is_null() {
                if (*header).cmsg_level == libc::SOL_SOCKET
                    && (*header).cmsg_type == libc::SCM_RIGHTS
                {
                    let data = libc::CMSG_DATA(header);
                    let length = (*header).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                    for at in 0..length / std::mem::size_of::<RawFd>() {
                        let fd = std::ptr::read_unaligned(
                            data.add(at * std::mem::size_of::<RawFd>()) as *const RawFd,
                        );
                        fds.push(OwnedFd::from_raw_fd(fd));
                    }
                }
                header = libc::CMSG_NXTHDR(&message, header);
            }
        }
        if message.msg_flags & libc::MSG_CTRUNC != 0 {
            return Err(std::io::Error::other(
                "a command came with too many descriptors",
            ));
        }
        Ok((read > 0).then_some((byte[0], fds)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_launch_goes_through_the_wire_unchanged() {
        let launch = Launch {
            dir: "/work/packages/r/1-abc".into(),
            program: "/usr/bin/date".into(),
            args: vec!["+%s%N".into(), "".into(), "two words=x".into()],
            env: vec![
                ("REGENTE_VAR_A".into(), "a=b=c".into()),
                ("REGENTE_VAR_EMPTY".into(), "".into()),
                ("REGENTE_VAR_UTF".into(), "ação\n".into()),
            ],
            user: Some(Credentials {
                uid: 1001,
                gid: 1001,
                groups: vec![1001, 4],
            }),
        };
        let read = |wire: Vec<u8>| {
            assert_eq!(wire[0], command::LAUNCH);
            Launch::read_from(&mut &wire[1..]).unwrap()
        };
        assert_eq!(read(launch.encode().unwrap()), Some(launch.clone()));
        let bare = Launch {
            dir: ".".into(),
            program: "true".into(),
            args: vec![],
            env: vec![],
            user: None,
        };
        assert_eq!(read(bare.encode().unwrap()), Some(bare));
        assert_eq!(
            Launch::read_from(&mut &[][..]).unwrap(),
            None,
            "end of file before a command"
        );
    }

    #[test]
    fn nul_bytes_and_bad_names_are_refused_and_garbage_is_not_decoded() {
        let mut launch = Launch {
            dir: "/".into(),
            program: "true".into(),
            args: vec!["a\0b".into()],
            env: vec![],
            user: None,
        };
        assert!(launch.encode().is_err());
        launch.args.clear();
        launch.env.push(("A=B".into(), "c".into()));
        assert!(launch.encode().is_err());
        launch.env.clear();
        let mut wire = launch.encode().unwrap();
        wire.pop();
        assert!(Launch::read_from(&mut &wire[1..]).is_err(), "cut short");
        assert!(Launch::read_from(&mut &[1u8, 0][..]).is_err(), "cut short");
        for garbage in [
            &b""[..],
            b"/\0true\0",
            b"/\0true\0\0x\0",
            b"/\0true\0\x002\0a\0",
            b"/\0true\0\x000\0NOEQUALS\0",
            b"/\0true\0\x000",
            b"/\0true\0root\x000\0",
        ] {
            assert_eq!(Launch::decode(garbage), None, "{garbage:?}");
        }
    }

    #[test]
    fn a_command_carries_its_pipes_and_a_report_reads_back() {
        use std::io::{Read, Write};
        use std::os::fd::AsRawFd;
        let (agent, guard) = std::os::unix::net::UnixStream::pair().unwrap();
        let (mut read_end, write_end) = std::io::pipe().unwrap();
        let wire = Launch {
            dir: "/".into(),
            program: "true".into(),
            args: vec![],
            env: vec![],
            user: None,
        }
        .encode()
        .unwrap();
        let fds = [write_end.as_raw_fd(), write_end.as_raw_fd()];
        link::send_with_fds(agent.as_raw_fd(), &wire, &fds).unwrap();
        link::send_with_fds(agent.as_raw_fd(), &[command::KILL], &[]).unwrap();
        drop(write_end);
        let (tag, passed) = link::receive_command(guard.as_raw_fd()).unwrap().unwrap();
        assert_eq!((tag, passed.len()), (command::LAUNCH, 2));
        assert!(Launch::read_from(&mut &guard).unwrap().is_some());
        let (tag, passed_after) = link::receive_command(guard.as_raw_fd()).unwrap().unwrap();
        assert_eq!((tag, passed_after.len()), (command::KILL, 0));
        // The passed descriptor is the pipe's write end.
        std::fs::File::from(passed.into_iter().next().unwrap())
            .write_all(b"robot output")
            .unwrap();
        let mut got = String::new();
        read_end.read_to_string(&mut got).unwrap();
        assert_eq!(got, "robot output");
        drop(agent);
        assert!(link::receive_command(guard.as_raw_fd()).unwrap().is_none());

        for report in [
            GuardReport::Started { pid: 42 },
            GuardReport::Exited { code: 137 },
            GuardReport::Done,
        ] {
            assert_eq!(GuardReport::parse(&report.line()), Some(report));
        }
        assert_eq!(GuardReport::parse("exited x"), None);
    }
}
