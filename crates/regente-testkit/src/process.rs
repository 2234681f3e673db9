//! Child processes with their output drained, signals, and what `/proc` says
//! about processes.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::poll::{poll, wait_for};

/// How often a process's exit is looked for.
const EXIT_POLL: Duration = Duration::from_millis(10);

/// Where a process's stderr (its log) goes.
enum Log {
    Memory(Arc<Mutex<String>>),
    File(PathBuf),
}

/// A child process whose stdout (and stderr, unless it goes to a file) is
/// copied into buffers by threads of its own, so that it never blocks on a
/// full pipe; its stdout lines also arrive on a channel.
pub(crate) struct Running {
    pub(crate) child: Child,
    stdout: Arc<Mutex<String>>,
    log: Log,
    /// In a mutex only so that a server can be shared between threads.
    lines: Mutex<mpsc::Receiver<String>>,
    readers: Vec<JoinHandle<()>>,
    spawned: Instant,
}

impl Running {
    /// Spawns `command` with its stdin closed and its output drained; its log
    /// goes to `log_file` when given.
    pub(crate) fn spawn(mut command: Command, log_file: Option<&Path>) -> Running {
        command.stdin(Stdio::null()).stdout(Stdio::piped());
        let log = match log_file {
            Some(path) => {
                let file = std::fs::File::create(path)
                    .unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
                command.stderr(file);
                Log::File(path.to_owned())
            }
            None => {
                command.stderr(Stdio::piped());
                Log::Memory(Arc::default())
            }
        };
        let spawned = Instant::now();
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("starting {command:?}: {e}"));
        let stdout = Arc::new(Mutex::new(String::new()));
        let (lines_tx, lines) = mpsc::channel();
        let mut readers = vec![drain(
            child.stdout.take().expect("piped stdout"),
            stdout.clone(),
            Some(lines_tx),
        )];
        if let Log::Memory(buffer) = &log {
            let pipe = child.stderr.take().expect("piped stderr");
            readers.push(drain(pipe, buffer.clone(), None));
        }
        Running {
            child,
            stdout,
            log,
            lines: Mutex::new(lines),
            readers,
            spawned,
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the process printed on stdout so far.
    pub(crate) fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    /// What the process logged (printed on stderr) so far.
    pub(crate) fn stderr(&self) -> String {
        match &self.log {
            Log::Memory(buffer) => buffer.lock().unwrap().clone(),
            Log::File(path) => std::fs::read_to_string(path).unwrap_or_default(),
        }
    }

    /// Waits for the server's listening line on stdout; answers its base URL
    /// and how long after the spawn it came, or why it did not.
    pub(crate) fn wait_listening(
        &mut self,
        timeout: Duration,
    ) -> Result<(String, Duration), String> {
        let deadline = self.spawned + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.lines.get_mut().unwrap().recv_timeout(left);
            match line {
                Ok(line) => {
                    if let Some(url) = regente_server::startup::parse_listening_url(&line) {
                        return Ok((url, self.spawned.elapsed()));
                    }
                }
                Err(why) => {
                    let _ = self.child.kill();
                    let status = self.child.wait();
                    self.finish_output(Duration::from_secs(5));
                    return Err(format!(
                        "no listening line within {timeout:?} ({why:?}, exit {status:?})\n\
                         --- stdout\n{}\n--- stderr\n{}",
                        self.stdout(),
                        self.stderr()
                    ));
                }
            }
        }
    }

    pub(crate) fn signal(&self, name: &str) {
        signal(self.pid(), name);
    }

    /// Sends a signal, whatever became of the process.
    pub(crate) fn signal_quietly(&self, name: &str) {
        // SAFETY: kill(2) has no memory preconditions; a wrong pid is an error return.
        unsafe { libc::kill(self.pid() as libc::pid_t, signal_number(name)) };
    }

    /// The exit status, if the process has exited.
    pub(crate) fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Waits for the process to exit, polling with a deadline.
    pub(crate) fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        poll(timeout, EXIT_POLL, || self.exited())
    }

    /// Sends `signal` (unless the process has exited) and waits for the exit.
    pub(crate) fn terminate(&mut self, signal: &str, timeout: Duration) -> Option<ExitStatus> {
        if let Some(status) = self.exited() {
            return Some(status);
        }
        self.signal_quietly(signal);
        self.wait_exit(timeout)
    }

    /// SIGKILL (a frozen process too) and reaps it.
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits, for at most `timeout`, until the readers have copied everything
    /// the exited process printed. Bounded: a leftover grandchild holding a
    /// pipe must not hang the caller.
    pub(crate) fn finish_output(&mut self, timeout: Duration) {
        let readers = &self.readers;
        poll(timeout, EXIT_POLL, || {
            readers.iter().all(JoinHandle::is_finished).then_some(())
        });
    }
}

/// Copies a pipe into a buffer (and its lines into a channel) until it closes.
fn drain(
    pipe: impl Read + Send + 'static,
    buffer: Arc<Mutex<String>>,
    lines: Option<mpsc::Sender<String>>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    let text = String::from_utf8_lossy(&line).into_owned();
                    buffer.lock().unwrap().push_str(&text);
                    if let Some(lines) = &lines {
                        let _ = lines.send(text);
                    }
                }
            }
        }
    })
}

/// Sends a signal by name (`KILL`, `TERM`, `INT`, `STOP`, `CONT`, `HUP`).
pub fn signal(pid: u32, name: &str) {
    // SAFETY: kill(2) has no memory preconditions; a wrong pid is an error return.
    let sent = unsafe { libc::kill(pid as libc::pid_t, signal_number(name)) };
    assert_eq!(
        sent,
        0,
        "kill -{name} {pid}: {}",
        std::io::Error::last_os_error()
    );
}

fn signal_number(name: &str) -> libc::c_int {
    match name {
        "KILL" => libc::SIGKILL,
        "TERM" => libc::SIGTERM,
        "INT" => libc::SIGINT,
        "STOP" => libc::SIGSTOP,
        "CONT" => libc::SIGCONT,
        "HUP" => libc::SIGHUP,
        other => panic!("no signal named {other}"),
    }
}

/// Whether a process exists and is not a zombie.
pub fn pid_alive(pid: u32) -> bool {
    stat_fields(pid).is_some_and(|fields| !matches!(fields[0].as_str(), "Z" | "X" | "x"))
}

/// The fields of `/proc/PID/stat` after the command name: 0 is the state, 1
/// the parent pid, 11 to 14 the user and system CPU ticks of the process and
/// of its waited-for children. `None` for a process that is gone.
pub fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    fields_after_command(&stat)
}

/// The command name is in parentheses and may hold spaces and parentheses.
fn fields_after_command(stat: &str) -> Option<Vec<String>> {
    let fields: Vec<String> = stat[stat.rfind(')')? + 1..]
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    (!fields.is_empty()).then_some(fields)
}

/// The parent pid of a live process.
pub fn parent_pid(pid: u32) -> Option<u32> {
    stat_fields(pid)?.get(1)?.parse().ok()
}

/// The live children of `pid` whose command line holds `word`.
pub fn children_with(pid: u32, word: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|child| parent_pid(*child) == Some(pid) && pid_alive(*child))
        .filter(|child| {
            std::fs::read(format!("/proc/{child}/cmdline"))
                .map(|line| String::from_utf8_lossy(&line).contains(word))
                .unwrap_or(false)
        })
        .collect()
}

/// Waits for a file holding a pid and a newline (written by a robot), and
/// answers the pid.
pub fn wait_for_pid_file(path: &Path, timeout: Duration) -> u32 {
    wait_for(
        timeout,
        &format!("a pid in {}", path.display()),
        || match std::fs::read_to_string(path) {
            Ok(text) if text.ends_with('\n') => text
                .trim()
                .parse::<u32>()
                .map_err(|e| format!("{text:?}: {e}")),
            Ok(text) => Err(format!("incomplete: {text:?}")),
            Err(e) => Err(e.to_string()),
        },
    )
}

/// Waits until every named process is gone (or a zombie).
pub fn wait_gone(pids: &[(&str, u32)], timeout: Duration) {
    wait_for(timeout, "the processes to be gone", || {
        let alive: Vec<String> = pids
            .iter()
            .filter(|(_, pid)| pid_alive(*pid))
            .map(|(name, pid)| format!("{name} (pid {pid}) is alive"))
            .collect();
        if alive.is_empty() {
            Ok(())
        } else {
            Err(alive)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_come_after_a_command_name_with_spaces_and_parentheses() {
        let fields = fields_after_command("4242 (a (b) c) S 17 4242 4242 0 -1").unwrap();
        assert_eq!(fields[..2], ["S", "17"]);
    }

    #[test]
    fn this_process_is_alive_and_its_parent_is_known() {
        let me = std::process::id();
        assert!(pid_alive(me));
        assert_eq!(parent_pid(me), Some(std::os::unix::process::parent_id()));
    }

    #[test]
    fn a_drained_child_is_read_whole_and_waited_for() {
        let mut command = Command::new("sh");
        command.args(["-c", "echo out; echo err >&2; exit 3"]);
        let mut child = Running::spawn(command, None);
        let status = child.wait_exit(Duration::from_secs(10)).expect("an exit");
        assert_eq!(status.code(), Some(3));
        child.finish_output(Duration::from_secs(10));
        assert_eq!(child.stdout(), "out\n");
        assert_eq!(child.stderr(), "err\n");
    }

    #[test]
    fn a_process_that_exits_without_a_listening_line_says_what_it_printed() {
        let mut command = Command::new("sh");
        command.args(["-c", "echo starting; echo 'cannot listen' >&2"]);
        let mut child = Running::spawn(command, None);
        let why = child
            .wait_listening(Duration::from_secs(10))
            .expect_err("no listening line");
        assert!(why.contains("starting"), "{why}");
        assert!(why.contains("cannot listen"), "{why}");
    }

    #[test]
    fn the_listening_line_gives_the_address() {
        let addr: std::net::SocketAddr = "127.0.0.1:4321".parse().unwrap();
        let line = regente_server::startup::listening_line(addr, false);
        let mut command = Command::new("sh");
        command.args([
            "-c",
            &format!("echo 'first admin created'; echo '{line}'; sleep 30"),
        ]);
        let mut child = Running::spawn(command, None);
        let (found, _) = child
            .wait_listening(Duration::from_secs(10))
            .expect("a listening line");
        assert_eq!(found, format!("http://{addr}"));
        assert!(child.terminate("TERM", Duration::from_secs(10)).is_some());
    }

    #[test]
    fn a_log_file_takes_the_stderr() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let mut command = Command::new("sh");
        command.args(["-c", "echo logged >&2"]);
        let mut child = Running::spawn(command, Some(&path));
        child.wait_exit(Duration::from_secs(10)).expect("an exit");
        assert_eq!(child.stderr(), "logged\n");
    }
}
