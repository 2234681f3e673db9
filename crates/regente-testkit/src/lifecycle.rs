//! The processes, one after the other, of a server or an agent that a test
//! stops, kills, freezes and starts again.

use std::process::ExitStatus;
use std::time::Duration;

use crate::process::Running;
use crate::results::tail;

/// How long a process may take to exit after a signal.
pub(crate) const EXIT_DEADLINE: Duration = Duration::from_secs(15);
/// How long the output of an exited process may take to be read whole.
const OUTPUT_DEADLINE: Duration = Duration::from_secs(5);

/// The process running now, and what the earlier ones logged.
pub(crate) struct Lifecycle {
    /// What messages call it: "server", "replica A", "agent".
    pub(crate) name: String,
    current: Option<Running>,
    earlier_stderr: String,
}

impl Lifecycle {
    pub(crate) fn new(name: &str) -> Lifecycle {
        Lifecycle {
            name: name.to_owned(),
            current: None,
            earlier_stderr: String::new(),
        }
    }

    /// Takes `process` as the current one.
    pub(crate) fn begin(&mut self, process: Running) {
        assert!(self.current.is_none(), "the {} still runs", self.name);
        self.current = Some(process);
    }

    pub(crate) fn current(&self) -> &Running {
        self.current
            .as_ref()
            .unwrap_or_else(|| panic!("the {} does not run", self.name))
    }

    pub(crate) fn current_mut(&mut self) -> &mut Running {
        let name = &self.name;
        self.current
            .as_mut()
            .unwrap_or_else(|| panic!("the {name} does not run"))
    }

    /// The current process, no longer looked after.
    pub(crate) fn take(&mut self) -> Option<Running> {
        self.current.take()
    }

    pub(crate) fn pid(&self) -> u32 {
        self.current().pid()
    }

    /// What the current process printed on stdout so far.
    pub(crate) fn stdout(&self) -> String {
        self.current
            .as_ref()
            .map(Running::stdout)
            .unwrap_or_default()
    }

    /// What the current process logged (printed on stderr) so far.
    pub(crate) fn stderr(&self) -> String {
        self.current
            .as_ref()
            .map(Running::stderr)
            .unwrap_or_default()
    }

    /// What every process logged, each end marked.
    pub(crate) fn all_stderr(&self) -> String {
        format!("{}{}", self.earlier_stderr, self.stderr())
    }

    /// The exit status, if the current process has exited on its own.
    pub(crate) fn exited(&mut self) -> Option<ExitStatus> {
        self.current.as_mut().and_then(Running::exited)
    }

    /// SIGSTOP: the process freezes.
    pub(crate) fn pause(&self) {
        self.current().signal("STOP");
    }

    /// SIGCONT.
    pub(crate) fn resume(&self) {
        self.current().signal("CONT");
    }

    /// SIGKILL, and waits for the process to be gone.
    pub(crate) fn kill9(&mut self) {
        let mut process = self.current.take().expect("a running process");
        process.signal("KILL");
        assert!(
            process.wait_exit(EXIT_DEADLINE).is_some(),
            "the {} survived SIGKILL",
            self.name
        );
        self.retire(process, "killed with SIGKILL");
    }

    /// Sends `signal` and waits for the exit; `None` if the process did not
    /// exit in time (it is killed then).
    pub(crate) fn stop(&mut self, signal: &str) -> Option<ExitStatus> {
        let mut process = self.current.take().expect("a running process");
        let status = process.terminate(signal, EXIT_DEADLINE);
        if status.is_none() {
            process.kill();
        }
        process.finish_output(OUTPUT_DEADLINE);
        self.retire(process, &format!("stopped with SIG{signal}"));
        status
    }

    fn retire(&mut self, process: Running, how: &str) {
        self.earlier_stderr.push_str(&process.stderr());
        self.earlier_stderr
            .push_str(&format!("--- {} {how} ---\n", self.name));
    }

    /// Shows the end of every process's log when the test is failing.
    pub(crate) fn report_if_panicking(&self, where_: &str) {
        if std::thread::panicking() {
            eprintln!(
                "--- {}{where_} log (tail) ---\n{}",
                self.name,
                tail(&self.all_stderr(), 60)
            );
        }
    }
}
