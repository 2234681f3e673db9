//! The robot guard: a tiny process between the agent and each robot, so that a
//! robot's whole process tree dies with the agent.
//!
//! The agent starts `regente __guard AGENT_PID` as the leader of a new process
//! group, with a parent-death signal (SIGTERM), usually before there is a robot
//! to run: an idle guard waits in the agent's pool, already exec'd, so that a
//! start costs no exec of the (large) `regente` binary. The guard reads its
//! robot's command ([`Launch`]: directory, program, arguments, environment) from
//! its stdin, runs the robot in its group and waits for it. End of file before
//! a command means the agent retired the guard: it exits. On
//! SIGTERM, SIGINT or SIGHUP (the agent died, or someone asked) it kills the
//! whole group, robot grandchildren included. The agent stops a robot by killing
//! the group outright.
//!
//! A robot gets only its stdin, stdout and stderr: the guard closes every other
//! descriptor it may have inherited before anything else. With a robot user
//! (`--robot-user`), the robot's process takes that user's groups, group and
//! user between fork and exec; the guard itself stays the agent's user, so that
//! it can still kill the group.

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
    /// The wire form: the length of the rest (4 bytes, little-endian), then
    /// NUL-terminated fields (directory, program, the user as
    /// `uid:gid:groups` or empty, the number of arguments, the arguments, then
    /// `NAME=VALUE` pairs). The length lets the guard start the
    /// robot as soon as the command is in, without waiting for end of file.
    /// Refused when a field holds a NUL, which no program, argument or
    /// environment can carry.
    pub fn encode(&self) -> Result<Vec<u8>, String> {
        let mut out = vec![0; 4];
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
        let length = u32::try_from(out.len() - 4).map_err(|_| "the command is too long")?;
        out[..4].copy_from_slice(&length.to_le_bytes());
        Ok(out)
    }

    /// Reads one command; `Ok(None)` at end of file before it.
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

/// Runs the guard; returns the exit code to leave with.
#[cfg(target_os = "linux")]
pub fn run(agent_pid: i32) -> i32 {
    extern "C" fn kill_group(_: libc::c_int) {
        // Async-signal-safe: one system call. Pid 0 is our own process group.
        unsafe {
            libc::kill(0, libc::SIGKILL);
        }
    }
    // Killing "our group" is only right when the group is ours alone: the agent
    // starts the guard as a group leader. Started any other way (by hand from a
    // shell), it refuses rather than kill its caller's group.
    if unsafe { libc::getpgrp() != libc::getpid() } {
        eprintln!(
            "regente __guard must lead its own process group; it is started by the runtime agent"
        );
        return 125;
    }
    close_inherited_descriptors();
    unsafe {
        for signal in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            libc::signal(signal, kill_group as *const () as libc::sighandler_t);
        }
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
        // The agent may have died before the death signal was armed.
        if libc::getppid() != agent_pid {
            libc::kill(0, libc::SIGKILL);
        }
    }
    read_and_run()
}

#[cfg(not(target_os = "linux"))]
pub fn run(_agent_pid: i32) -> i32 {
    read_and_run()
}

/// Closes every descriptor above stderr: whatever the agent's process had open
/// without close-on-exec is not the robot's business.
#[cfg(target_os = "linux")]
pub fn close_inherited_descriptors() {
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

#[cfg(not(target_os = "linux"))]
pub fn close_inherited_descriptors() {}

fn read_and_run() -> i32 {
    match Launch::read_from(&mut std::io::stdin().lock()) {
        Ok(Some(launch)) => spawn_and_wait(&launch),
        // Retired by the agent before it had a robot to run.
        Ok(None) => 0,
        Err(e) => {
            eprintln!("cannot start the robot: cannot read its command: {e}");
            125
        }
    }
}

fn spawn_and_wait(launch: &Launch) -> i32 {
    let mut command = Command::new(&launch.program);
    command
        .args(&launch.args)
        .current_dir(&launch.dir)
        .stdin(Stdio::null());
    for (name, value) in &launch.env {
        command.env(name, value);
    }
    if let Some(user) = launch.user.clone() {
        use std::os::unix::process::CommandExt;
        // The guard has one thread: only system calls run between fork and exec.
        unsafe {
            command.pre_exec(move || user.assume());
        }
    }
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            let why = if e.kind() == std::io::ErrorKind::NotFound {
                "command not found".to_owned()
            } else {
                e.to_string()
            };
            eprintln!("cannot start the robot: {}: {why}", shown(&launch.program));
            return 127;
        }
    };
    match child.wait() {
        Ok(status) => exit_code_of(status),
        Err(e) => {
            eprintln!("cannot wait for the robot: {e}");
            125
        }
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
        let read = |wire: Vec<u8>| Launch::read_from(&mut &wire[..]).unwrap();
        assert_eq!(read(launch.encode().unwrap()), Some(launch.clone()));
        let bare = Launch {
            dir: ".".into(),
            program: "true".into(),
            args: vec![],
            env: vec![],
            user: None,
        };
        assert_eq!(read(bare.encode().unwrap()), Some(bare));
        assert_eq!(read(Vec::new()), None, "end of file before a command");
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
        assert!(Launch::read_from(&mut &wire[..]).is_err(), "cut short");
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
}
