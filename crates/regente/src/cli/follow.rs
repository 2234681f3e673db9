//! Waiting for a run's end, and printing its log as it goes.

use std::io::{IsTerminal as _, Write as _};
use std::time::Duration;

use regente_client::events::ExecutionEvent;
use regente_client::{Client, Execution, LogLine, RunResult};

/// How long one result request waits on the server for the run's end.
const WAIT: Duration = Duration::from_secs(60);
/// How many times in a row a broken event stream is opened again.
const RECONNECTS: u32 = 5;

/// Waits until the run has ended and answers its result; with `show_log`,
/// prints each log line on standard output as the server streams it and, on
/// a terminal, a progress line on standard error. The server holds each
/// request until the run ends, so waiting costs no polling.
pub async fn until_ended(
    client: &Client,
    runtime_id: &str,
    execution_id: &str,
    show_log: bool,
) -> anyhow::Result<RunResult> {
    if show_log {
        print_events(client, execution_id).await?;
    }
    loop {
        let result = client
            .result_when_ended(runtime_id, execution_id, WAIT)
            .await?;
        if result.status.is_ended() {
            return Ok(result);
        }
    }
}

/// Prints the run's events until its final status, reconnecting after the
/// last line printed when the stream breaks.
async fn print_events(client: &Client, execution_id: &str) -> anyhow::Result<()> {
    let progress_bar = std::io::stderr().is_terminal();
    let (mut after, mut progress, mut broken) = (0, 0.0, 0);
    let mut status_text = "PENDENT";
    loop {
        let mut stream = match client.events(execution_id, after).await {
            Ok(stream) => stream,
            Err(e) if broken < RECONNECTS && e.is_unreachable() => {
                broken += 1;
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        loop {
            let event = match stream.next().await {
                Ok(Some(event)) => event,
                // The server ends the stream after the final status only; an
                // end before it is a broken connection.
                Ok(None) | Err(_) if broken < RECONNECTS => break,
                Ok(None) => anyhow::bail!("the server ended the run's event stream early"),
                Err(e) => return Err(e.into()),
            };
            broken = 0;
            if progress_bar {
                eprint!("\r\x1b[K");
            }
            match event {
                ExecutionEvent::Log { seq, line } => {
                    after = seq;
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "{}", log_line(&line))?;
                    out.flush()?;
                }
                ExecutionEvent::Progress(value) => progress = value,
                ExecutionEvent::Return(_) => {}
                ExecutionEvent::Status { status, .. } => {
                    status_text = status.as_str();
                    if status.is_ended() {
                        if progress_bar {
                            eprintln!("{}", bar(progress, status.as_str()));
                        }
                        return Ok(());
                    }
                }
            }
            if progress_bar {
                eprint!("{}", bar(progress, status_text));
            }
        }
        broken += 1;
        tokio::time::sleep(Duration::from_secs(1)).await;
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
