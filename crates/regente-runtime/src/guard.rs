//! The robot guard: a tiny process between the agent and each robot, so that a
//! robot's whole process tree dies with the agent.
//!
//! The agent starts `regente __guard AGENT_PID -- COMMAND...` as the leader of a
//! new process group, with a parent-death signal (SIGTERM). The guard runs the
//! robot in that group and waits for it; on SIGTERM, SIGINT or SIGHUP (the agent
//! died, or someone asked) it kills the whole group, robot grandchildren included.
//! The agent stops a robot by killing the group outright.

use std::ffi::OsString;
use std::process::Command;

/// Runs the guard; returns the exit code to leave with.
#[cfg(target_os = "linux")]
pub fn run(agent_pid: i32, command: &[OsString]) -> i32 {
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
    spawn_and_wait(command)
}

#[cfg(not(target_os = "linux"))]
pub fn run(_agent_pid: i32, command: &[OsString]) -> i32 {
    spawn_and_wait(command)
}

fn spawn_and_wait(command: &[OsString]) -> i32 {
    let Some((program, args)) = command.split_first() else {
        eprintln!("cannot start the robot: the command is empty");
        return 127;
    };
    let mut child = match Command::new(program).args(args).spawn() {
        Ok(child) => child,
        Err(e) => {
            let why = if e.kind() == std::io::ErrorKind::NotFound {
                "command not found".to_owned()
            } else {
                e.to_string()
            };
            eprintln!(
                "cannot start the robot: {}: {why}",
                program.to_string_lossy()
            );
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
