//! Waiting for a run's end, and printing its log as it goes.

use std::io::{IsTerminal as _, Write as _};
use std::time::Duration;

use regente_client::{Client, Execution, LogLine, RunResult};

/// How often the result is read again while waiting.
const POLL: Duration = Duration::from_millis(200);

/// Reads the run until it has ended; with `show_log`, prints each new log line
/// on standard output and, on a terminal, a progress line on standard error.
pub async fn until_ended(
    client: &Client,
    runtime_id: &str,
    execution_id: &str,
    show_log: bool,
) -> anyhow::Result<RunResult> {
    let progress_bar = show_log && std::io::stderr().is_terminal();
    let mut printed = 0;
    loop {
        let result = client.result(runtime_id, execution_id).await?;
        if show_log {
            let mut out = std::io::stdout().lock();
            if progress_bar && result.logs.len() > printed {
                eprint!("\r\x1b[K");
            }
            for line in result.logs.iter().skip(printed) {
                writeln!(out, "{}", log_line(line))?;
            }
            out.flush()?;
            printed = result.logs.len();
            if progress_bar {
                eprint!("\r\x1b[K{}", bar(result.progress, result.status.as_str()));
            }
        }
        if result.status.is_ended() {
            if progress_bar {
                eprintln!();
            }
            return Ok(result);
        }
        tokio::time::sleep(POLL).await;
    }
}

fn log_line(line: &LogLine) -> String {
    format!(
        "{} {:<5} {}",
        local_time(line.time),
        line.level,
        line.message
    )
}

/// `[#####.....]  50% RUNNING`
fn bar(progress: f64, status: &str) -> String {
    const WIDTH: usize = 30;
    let filled = ((progress.clamp(0.0, 100.0) / 100.0) * WIDTH as f64).round() as usize;
    format!(
        "[{}{}] {:>3.0}% {status}",
        "#".repeat(filled),
        ".".repeat(WIDTH - filled),
        progress
    )
}

/// An epoch-millisecond time as ISO-8601 in UTC.
pub fn local_time(millis: i64) -> String {
    jiff::Timestamp::from_millisecond(millis)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|_| millis.to_string())
}

/// An execution and its log, for people.
pub fn describe(execution: &Execution, logs: &[LogLine]) -> String {
    let mut text = vec![
        format!("execution  {}", execution.id),
        format!(
            "status     {} ({:.0}%)",
            execution.status.as_str(),
            execution.progress
        ),
        format!(
            "robot      {} version {}",
            execution.robot_id, execution.robot_version
        ),
        format!("runtime    {}", execution.runtime_id),
        format!("submitted  {}", local_time(execution.init)),
    ];
    if let Some(started) = execution.started {
        text.push(format!("started    {}", local_time(started)));
    }
    if let Some(end) = execution.end {
        text.push(format!("ended      {}", local_time(end)));
    }
    if let Some(reason) = &execution.end_reason {
        text.push(format!("reason     {reason}"));
    }
    if let Some(value) = &execution.return_value {
        text.push(format!("returned   {value}"));
    }
    text.push(String::new());
    text.extend(logs.iter().map(log_line));
    text.join("\n")
}
