//! What `/proc` says about the processes the benchmark measures: resident
//! memory and CPU time. The processes themselves are started by the test kit.

use anyhow::Context as _;

/// Resident memory of a process, in bytes (`VmRSS`).
pub fn rss_bytes(pid: u32) -> anyhow::Result<u64> {
    status_bytes(pid, "VmRSS")
}

/// A process's resident memory in bytes: its anonymous pages (`RssAnon`), and
/// the pages mapped from files (`RssFile`: its binary's code and data). How much
/// of the binary is mapped depends on what of it the page cache holds (the
/// kernel maps cached pages around each one touched): a binary just built or
/// copied reads about 2 MB more than one partly evicted.
pub fn rss_parts(pid: u32) -> anyhow::Result<(u64, u64)> {
    Ok((status_bytes(pid, "RssAnon")?, status_bytes(pid, "RssFile")?))
}

/// A size line (`NAME:  N kB`) of `/proc/PID/status`, in bytes.
fn status_bytes(pid: u32, name: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
        .with_context(|| format!("no {name} line"))?
        .split_whitespace()
        .next()
        .with_context(|| format!("bad {name} line"))?
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

/// A process's CPU time so far (nothing for a process that is gone).
pub fn cpu(pid: u32) -> Cpu {
    let Some(fields) = regente_testkit::stat_fields(pid) else {
        return Cpu::default();
    };
    // utime, stime, cutime, cstime: fields 14-17 of the whole line (1-based),
    // 11-14 after the command name.
    let number = |i: usize| -> f64 { fields.get(i).and_then(|f| f.parse().ok()).unwrap_or(0.0) };
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Cpu {
        own: (number(11) + number(12)) / ticks,
        children: (number(13) + number(14)) / ticks,
    }
}

/// The CPU times of a process (first) and of its living children, by pid:
/// an agent and its guards, whose reaped robots count in their own figures.
pub struct Family(Vec<(u32, Cpu)>);

/// What `family` says of `pid` now.
pub fn family(pid: u32) -> Family {
    let mut members = vec![(pid, cpu(pid))];
    // Each thread lists the children it spawned.
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for task in tasks.flatten() {
            let children =
                std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            for child in children.split_whitespace().filter_map(|c| c.parse().ok()) {
                members.push((child, cpu(child)));
            }
        }
    }
    Family(members)
}

impl Family {
    /// What the process used since `before` (`own`), and what its children
    /// did, living or ended (`children`).
    pub fn since(&self, before: &Family) -> Cpu {
        let earlier = |pid: u32| before.0.iter().find(|(p, _)| *p == pid).map(|(_, c)| *c);
        let mut used = Cpu::default();
        for (at, &(pid, now)) in self.0.iter().enumerate() {
            let delta = now.since(earlier(pid).unwrap_or_default());
            if at == 0 {
                used.own += delta.own;
                used.children += delta.children;
            } else {
                used.children += delta.total();
            }
        }
        used
    }
}

/// This program's own CPU time.
pub fn own_cpu() -> Cpu {
    cpu(std::process::id())
}

/// How many sockets the process has open (its descriptors that are sockets).
pub fn sockets(pid: u32) -> anyhow::Result<usize> {
    let dir = format!("/proc/{pid}/fd");
    let entries = std::fs::read_dir(&dir).with_context(|| format!("reading {dir}"))?;
    Ok(entries
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .filter(|target| target.to_string_lossy().starts_with("socket:"))
        .count())
}
