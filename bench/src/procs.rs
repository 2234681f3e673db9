//! The processes the benchmark runs: the real `regente serve` and `regente runtime`,
//! and what `/proc` says about them (resident memory, CPU time).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The admin password every server of the benchmark starts with.
pub const ADMIN_PASSWORD: &str = "bench-admin-password";

/// A running `regente serve`.
pub struct Server {
    pub child: Child,
    pub pid: u32,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    /// From spawning the process to its `regente listening` line.
    pub to_listening: Duration,
    /// From spawning the process to the first 200 from `/healthz`.
    pub to_healthy: Duration,
    pub log: PathBuf,
}

/// A command of the `regente` binary with no inherited `REGENTE_*` setting, so
/// the benchmark's runs do not depend on the caller's environment.
fn regente(bin: &Path) -> Command {
    let mut command = Command::new(bin);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("REGENTE_") {
            command.env_remove(name);
        }
    }
    command.kill_on_drop(true);
    command
}

fn log_file(path: &Path) -> anyhow::Result<std::fs::File> {
    std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))
}

/// The last lines of a log, to explain a failure.
pub fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// Starts `regente serve --listen 127.0.0.1:0 --data-dir DATA_DIR` and waits until
/// it answers `/healthz`.
pub async fn start_server(
    bin: &Path,
    data_dir: &Path,
    database_url: Option<&str>,
    log: &Path,
) -> anyhow::Result<Server> {
    let mut command = regente(bin);
    command
        .arg("serve")
        .arg("--listen")
        .arg("127.0.0.1:0")
        .arg("--data-dir")
        .arg(data_dir)
        .env("REGENTE_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log_file(log)?);
    if let Some(url) = database_url {
        command.arg("--database-url").arg(url);
    }
    let spawned = Instant::now();
    let mut child = command
        .spawn()
        .with_context(|| format!("starting {} serve", bin.display()))?;
    let pid = child.id().context("the server exited at once")?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let addr = loop {
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .context("the server did not print its `regente listening` line within 60 s")??;
        match line {
            Some(line) => {
                if let Some(addr) = line.trim().strip_prefix("regente listening on http://") {
                    break addr.to_owned();
                }
            }
            None => bail!(
                "the server exited before listening; its log ({}):\n{}",
                log.display(),
                log_tail(log)
            ),
        }
    };
    let to_listening = spawned.elapsed();
    // Keep draining stdout so the server never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let base = format!("http://{addr}");
    let client = reqwest::Client::new();
    let to_healthy = loop {
        if let Ok(response) = client.get(format!("{base}/healthz")).send().await {
            if response.status() == reqwest::StatusCode::OK {
                break spawned.elapsed();
            }
        }
        if spawned.elapsed() > Duration::from_secs(60) {
            bail!("the server did not answer /healthz within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    Ok(Server {
        child,
        pid,
        base,
        to_listening,
        to_healthy,
        log: log.to_owned(),
    })
}

impl Server {
    /// Fails when the server has exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "the server exited ({status}); its log ({}):\n{}",
                self.log.display(),
                log_tail(&self.log)
            );
        }
        Ok(())
    }

    /// SIGTERM, then waits for a graceful exit (SIGKILL after 20 s).
    pub async fn stop(mut self) -> anyhow::Result<()> {
        terminate(&mut self.child).await
    }
}

/// SIGTERM, then waits for the exit (SIGKILL after 20 s).
pub async fn terminate(child: &mut Child) -> anyhow::Result<()> {
    if let Some(pid) = child.id() {
        // SAFETY: kill(2) with a pid we spawned and still own (not yet reaped).
        unsafe {
            libc::kill(pid as libc::pid_t, libc::SIGTERM);
        }
    }
    match tokio::time::timeout(Duration::from_secs(20), child.wait()).await {
        Ok(status) => {
            status?;
        }
        Err(_) => {
            child.kill().await?;
            bail!("the process did not stop within 20 s of SIGTERM");
        }
    }
    Ok(())
}

/// Starts `regente runtime --server BASE --key KEY --work-dir WORK_DIR --slots SLOTS`.
pub fn start_agent(
    bin: &Path,
    base: &str,
    key: &str,
    work_dir: &Path,
    slots: u32,
    log: &Path,
) -> anyhow::Result<Child> {
    std::fs::create_dir_all(work_dir)?;
    regente(bin)
        .arg("runtime")
        .arg("--server")
        .arg(base)
        .arg("--work-dir")
        .arg(work_dir)
        .arg("--key")
        .arg(key)
        .arg("--slots")
        .arg(slots.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file(log)?)
        .spawn()
        .with_context(|| format!("starting {} runtime", bin.display()))
}

/// Resident memory of a process, in bytes (`VmRSS`).
pub fn rss_bytes(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|line| line.starts_with("VmRSS:"))
        .context("no VmRSS line")?;
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .context("bad VmRSS line")?
        .parse()?;
    Ok(kib * 1024)
}

/// CPU seconds a process has used: its own (user + system) and its waited-for
/// children's.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cpu {
    pub own: f64,
    pub children: f64,
}

impl Cpu {
    pub fn total(self) -> f64 {
        self.own + self.children
    }

    pub fn since(self, before: Cpu) -> Cpu {
        Cpu {
            own: self.own - before.own,
            children: self.children - before.children,
        }
    }
}

pub fn cpu(pid: u32) -> Cpu {
    read_cpu(&format!("/proc/{pid}/stat")).unwrap_or_default()
}

pub fn own_cpu() -> Cpu {
    read_cpu("/proc/self/stat").unwrap_or_default()
}

fn read_cpu(path: &str) -> anyhow::Result<Cpu> {
    let stat = std::fs::read_to_string(path)?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')').context("bad stat")? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime, stime, cutime, cstime are fields 14-17 of the whole line (1-based),
    // so 11-14 after the state (field 3 is index 0 here).
    let number = |i: usize| -> f64 { fields.get(i).and_then(|f| f.parse().ok()).unwrap_or(0.0) };
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Ok(Cpu {
        own: (number(11) + number(12)) / ticks,
        children: (number(13) + number(14)) / ticks,
    })
}
