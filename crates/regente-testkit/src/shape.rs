//! What every answer of the API must look like: the error shape, ids, and
//! small helpers for reading bodies.

use std::collections::BTreeSet;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use serde_json::Value;

use crate::client::Reply;

/// The standard reason phrase the error bodies must carry.
pub fn reason(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        413 => "Payload Too Large",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        other => panic!("no reason phrase known for {other}"),
    }
}

/// Asserts the Spring-style error shape `{timestamp, status, error, message,
/// path}` and nothing else, with the given status and path; returns the body.
pub fn assert_error(reply: &Reply, status: u16, path: &str) -> Value {
    assert_eq!(
        reply.status,
        status,
        "{} {}: expected {status}, body {}",
        reply.method,
        reply.path,
        reply.text()
    );
    check_error_shape(reply, path).unwrap_or_else(|why| {
        panic!(
            "{} {} ({}): {why}: {}",
            reply.method,
            reply.path,
            reply.status,
            reply.text()
        )
    })
}

/// Checks the error shape for whatever status the reply has.
pub fn check_error_shape(reply: &Reply, path: &str) -> Result<Value, String> {
    let body: Value =
        serde_json::from_slice(&reply.body).map_err(|e| format!("the body is not JSON: {e}"))?;
    if !reply.content_type().starts_with("application/json") {
        return Err(format!("content type {:?}", reply.content_type()));
    }
    let object = body.as_object().ok_or("the body is not an object")?;
    let keys: BTreeSet<&str> = object.keys().map(String::as_str).collect();
    let expected: BTreeSet<&str> = ["timestamp", "status", "error", "message", "path"].into();
    if keys != expected {
        return Err(format!("keys {keys:?}, expected {expected:?}"));
    }
    let timestamp = body["timestamp"]
        .as_i64()
        .ok_or("timestamp is not an integer")?;
    let now = now_millis();
    if (timestamp - now).abs() > 60_000 {
        return Err(format!("timestamp {timestamp} is not near now ({now})"));
    }
    if body["status"].as_u64() != Some(u64::from(reply.status)) {
        return Err(format!(
            "status field {} vs {}",
            body["status"], reply.status
        ));
    }
    let phrase = reqwest::StatusCode::from_u16(reply.status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("?");
    let phrase = match reply.status {
        400 | 401 | 403 | 404 | 405 | 409 | 413 | 415 | 422 | 429 => reason(reply.status),
        _ => phrase,
    };
    if body["error"] != phrase {
        return Err(format!("error {} instead of {phrase:?}", body["error"]));
    }
    match body["message"].as_str() {
        Some(message) if !message.trim().is_empty() => {}
        _ => return Err("message is not a non-empty string".into()),
    }
    if body["path"] != path {
        return Err(format!("path {} instead of {path:?}", body["path"]));
    }
    Ok(body)
}

/// The error message of an error reply.
pub fn message(body: &Value) -> String {
    body["message"].as_str().unwrap_or_default().to_owned()
}

pub fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

pub fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("time after 1970")
        .as_millis() as i64
}

/// Execution ids are 16 lowercase hex digits.
pub fn is_execution_id(text: &str) -> bool {
    text.len() == 16
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The keys of a JSON object, sorted.
pub fn keys(value: &Value) -> Vec<String> {
    let mut keys: Vec<String> = value
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {value}"))
        .keys()
        .cloned()
        .collect();
    keys.sort();
    keys
}
