//! The robot protocol's output side: what a robot's stdout and stderr lines mean.
//!
//! - `::progress::N` sets the progress (0 to 100, clamped);
//! - `::return::VALUE` sets the return value (JSON when it parses, else the text);
//! - `::warning::msg` and `::error::msg` log at WARN and ERROR;
//! - any other stdout line is an INFO log; every stderr line is an ERROR log.

use regente_proto::{EventKind, LogLevel};
use serde_json::Value;

/// Longest line kept; longer lines are cut and marked.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// Turns raw line bytes (without the newline) into text: invalid UTF-8 is
/// replaced, a trailing `\r` dropped, and over-long lines cut.
pub fn line_text(raw: &[u8]) -> String {
    let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
    if raw.len() > MAX_LINE_BYTES {
        let mut text = String::from_utf8_lossy(&raw[..MAX_LINE_BYTES]).into_owned();
        text.push_str(" [line cut at 64 KiB]");
        text
    } else {
        String::from_utf8_lossy(raw).into_owned()
    }
}

pub fn parse_stdout_line(line: String) -> EventKind {
    if let Some(rest) = line.strip_prefix("::progress::") {
        if let Ok(value) = rest.trim().parse::<f64>() {
            if !value.is_nan() {
                return EventKind::Progress {
                    value: value.clamp(0.0, 100.0),
                };
            }
        }
        return log(LogLevel::Info, line);
    }
    if let Some(rest) = line.strip_prefix("::return::") {
        let value = serde_json::from_str(rest).unwrap_or_else(|_| Value::String(rest.to_owned()));
        return EventKind::Return { value };
    }
    if let Some(rest) = line.strip_prefix("::warning::") {
        return log(LogLevel::Warn, rest.to_owned());
    }
    if let Some(rest) = line.strip_prefix("::error::") {
        return log(LogLevel::Error, rest.to_owned());
    }
    log(LogLevel::Info, line)
}

pub fn parse_stderr_line(line: String) -> EventKind {
    log(LogLevel::Error, line)
}

pub fn log(level: LogLevel, message: String) -> EventKind {
    EventKind::Log { level, message }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn check(line: &str, expected: EventKind) {
        assert_eq!(parse_stdout_line(line.to_owned()), expected, "{line:?}");
    }

    #[test]
    fn stdout_lines_follow_the_robot_protocol() {
        check("::progress::40", EventKind::Progress { value: 40.0 });
        check("::progress:: 12.5 ", EventKind::Progress { value: 12.5 });
        check("::progress::250", EventKind::Progress { value: 100.0 });
        check("::progress::-3", EventKind::Progress { value: 0.0 });
        check(
            "::progress::lots",
            log(LogLevel::Info, "::progress::lots".into()),
        );
        check(
            "::return::{\"a\": [1]}",
            EventKind::Return {
                value: json!({"a": [1]}),
            },
        );
        check("::return::42", EventKind::Return { value: json!(42) });
        check(
            "::return::done ok",
            EventKind::Return {
                value: json!("done ok"),
            },
        );
        check("::warning::careful", log(LogLevel::Warn, "careful".into()));
        check("::error::broken", log(LogLevel::Error, "broken".into()));
        check(
            "hello \u{1b}[31mred",
            log(LogLevel::Info, "hello \u{1b}[31mred".into()),
        );
        assert_eq!(
            parse_stderr_line("oops".into()),
            log(LogLevel::Error, "oops".into())
        );
    }

    #[test]
    fn raw_lines_become_bounded_text() {
        assert_eq!(line_text(b"a\r"), "a");
        assert_eq!(line_text(b"a\rb"), "a\rb");
        assert_eq!(line_text(b"\xff\xfeok"), "\u{fffd}\u{fffd}ok");
        let long = vec![b'x'; MAX_LINE_BYTES + 10];
        assert!(line_text(&long).ends_with("[line cut at 64 KiB]"));
    }
}
