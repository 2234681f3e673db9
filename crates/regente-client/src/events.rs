//! An execution's Server-Sent Events, read as they come.

use reqwest::Response;
use serde_json::Value;

use crate::{Error, LogLine, Result, Status};

/// One event of an execution's stream.
#[derive(Debug, Clone, PartialEq)]
pub enum ExecutionEvent {
    Log {
        seq: i64,
        line: LogLine,
    },
    Progress(f64),
    Return(Value),
    Status {
        status: Status,
        end_reason: Option<String>,
    },
}

/// The events of one stream, in order.
pub struct EventStream {
    response: Response,
    buffer: Vec<u8>,
}

impl EventStream {
    pub(crate) fn new(response: Response) -> EventStream {
        EventStream {
            response,
            buffer: Vec::new(),
        }
    }

    /// The next event; `None` when the server ended the stream.
    pub async fn next(&mut self) -> Result<Option<ExecutionEvent>> {
        loop {
            if let Some(end) = find_blank_line(&self.buffer) {
                let block: Vec<u8> = self.buffer.drain(..end.1).collect();
                if let Some(event) = parse_block(&block[..end.0])? {
                    return Ok(Some(event));
                }
                continue;
            }
            match self.response.chunk().await {
                Ok(Some(chunk)) => self.buffer.extend_from_slice(&chunk),
                Ok(None) => return Ok(None),
                Err(e) => return Err(Error::Unexpected(format!("the event stream broke: {e}"))),
            }
        }
    }
}

/// Where the first event block ends: (its length, the length with its blank line).
fn find_blank_line(buffer: &[u8]) -> Option<(usize, usize)> {
    let text = buffer;
    (0..text.len()).find_map(|i| {
        if text[i..].starts_with(b"\n\n") {
            Some((i, i + 2))
        } else if text[i..].starts_with(b"\r\n\r\n") {
            Some((i, i + 4))
        } else {
            None
        }
    })
}

/// An event from its `event:` and `data:` lines; comments (keep-alives) and
/// kinds this client does not know answer `None`.
fn parse_block(block: &[u8]) -> Result<Option<ExecutionEvent>> {
    let text = String::from_utf8_lossy(block);
    let (mut kind, mut data) = ("message".to_owned(), String::new());
    for line in text.lines() {
        if let Some(value) = line.strip_prefix("event:") {
            kind = value.trim().to_owned();
        } else if let Some(value) = line.strip_prefix("data:") {
            if !data.is_empty() {
                data.push('\n');
            }
            data.push_str(value.strip_prefix(' ').unwrap_or(value));
        }
    }
    if data.is_empty() {
        return Ok(None);
    }
    let value: Value = serde_json::from_str(&data)
        .map_err(|e| Error::Unexpected(format!("an event that is not JSON ({e}): {data}")))?;
    let field = |name: &str| value.get(name).cloned().unwrap_or(Value::Null);
    let unexpected = |e: serde_json::Error| Error::Unexpected(format!("a {kind} event: {e}"));
    Ok(Some(match kind.as_str() {
        "log" => ExecutionEvent::Log {
            seq: field("seq").as_i64().unwrap_or_default(),
            line: serde_json::from_value(value.clone()).map_err(unexpected)?,
        },
        "progress" => ExecutionEvent::Progress(field("progress").as_f64().unwrap_or_default()),
        "return" => ExecutionEvent::Return(field("returnValue")),
        "status" => ExecutionEvent::Status {
            status: serde_json::from_value(field("status")).map_err(unexpected)?,
            end_reason: field("end_reason").as_str().map(str::to_owned),
        },
        _ => return Ok(None),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_read_as_events_and_comments_are_skipped() {
        let log = parse_block(
            b"event: log\nid: 3\ndata: {\"seq\":3,\"time\":1,\"level\":\"INFO\",\"message\":\"hi\"}",
        )
        .unwrap();
        assert_eq!(
            log,
            Some(ExecutionEvent::Log {
                seq: 3,
                line: LogLine {
                    time: 1,
                    level: "INFO".into(),
                    message: "hi".into()
                }
            })
        );
        assert_eq!(parse_block(b": keep-alive").unwrap(), None);
        assert_eq!(
            parse_block(b"event: status\ndata: {\"status\":\"FINISHED\",\"end\":5}").unwrap(),
            Some(ExecutionEvent::Status {
                status: Status::Finished,
                end_reason: None
            })
        );
        assert_eq!(find_blank_line(b"a\n\nb"), Some((1, 3)));
    }
}
