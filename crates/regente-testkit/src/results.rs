//! Reading results: waiting for a status, logs, numbered lines, ledgers that
//! robots keep, and scratch space for them.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;

use crate::client::Api;
use crate::poll::wait_for;

/// The statuses an execution ends with.
pub const ENDED: &[&str] = &["FINISHED", "ERROR", "CANCELED"];

/// The result route's answer, read whole.
pub fn result_of(api: &Api, token: &str, runtime: &str, execution: &str) -> Value {
    api.result(token, runtime, execution).expect(200).json()
}

/// Polls the result route until the execution has one of `statuses`, and
/// answers the first result body seen with it (so that what the test checks
/// is what a client saw at the moment the status changed).
pub fn wait_for_status(
    api: &Api,
    token: &str,
    runtime: &str,
    execution: &str,
    statuses: &[&str],
    timeout: Duration,
) -> Value {
    let what = format!(
        "execution {execution} to reach {statuses:?} through {}",
        api.base
    );
    wait_for(timeout, &what, || {
        let body = result_of(api, token, runtime, execution);
        if statuses.iter().any(|s| body["status"] == *s) {
            Ok(body)
        } else {
            Err(Shown(summary(&body)))
        }
    })
}

/// A text shown as it is (not quoted and escaped) in a timeout's panic.
struct Shown(String);

impl std::fmt::Debug for Shown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A result body, with long log lists shortened, for panic messages.
pub fn summary(body: &Value) -> String {
    let logs = body["logs"].as_array().cloned().unwrap_or_default();
    let shown: Vec<String> = if logs.len() > 30 {
        let mut shown: Vec<String> = logs[..10].iter().map(Value::to_string).collect();
        shown.push(format!("... {} more ...", logs.len() - 20));
        shown.extend(logs[logs.len() - 10..].iter().map(Value::to_string));
        shown
    } else {
        logs.iter().map(Value::to_string).collect()
    };
    format!(
        "status {} progress {} returnValue {} end {}\nlogs:\n  {}",
        body["status"],
        body["progress"],
        body["returnValue"],
        body["end"],
        shown.join("\n  ")
    )
}

/// The last `n` lines of a text.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// `(level, message)` of every log line of a result body, in order.
pub fn logs(body: &Value) -> Vec<(String, String)> {
    body["logs"]
        .as_array()
        .unwrap_or_else(|| panic!("no logs array in {body}"))
        .iter()
        .map(|log| {
            (
                log["level"].as_str().unwrap_or("?").to_owned(),
                log["message"].as_str().unwrap_or("?").to_owned(),
            )
        })
        .collect()
}

/// The messages of a result body's logs, in order.
pub fn messages(body: &Value) -> Vec<String> {
    logs(body).into_iter().map(|(_, m)| m).collect()
}

/// The numbers of the `line N` log messages, in the order they were stored.
pub fn numbered_lines(body: &Value) -> Vec<u64> {
    messages(body)
        .iter()
        .filter_map(|m| m.strip_prefix("line ").and_then(|n| n.parse().ok()))
        .collect()
}

/// Asserts that `numbers` is exactly `1..=n`: nothing lost, nothing doubled,
/// in order.
pub fn assert_one_to_n(numbers: &[u64], n: u64, context: &str) {
    let expected: Vec<u64> = (1..=n).collect();
    if numbers != expected.as_slice() {
        let mut seen: HashMap<u64, usize> = HashMap::new();
        for number in numbers {
            *seen.entry(*number).or_default() += 1;
        }
        let missing: Vec<u64> = expected
            .iter()
            .copied()
            .filter(|n| !seen.contains_key(n))
            .collect();
        let doubled: Vec<u64> = seen
            .iter()
            .filter(|(_, count)| **count > 1)
            .map(|(n, _)| *n)
            .collect();
        let out_of_order = numbers.windows(2).position(|w| w[0] >= w[1]);
        panic!(
            "{context}: expected lines 1..={n} once each and in order; got {} lines, missing {missing:?}, doubled {doubled:?}, first out of order at index {out_of_order:?}",
            numbers.len()
        );
    }
}

/// The lines of a ledger file (missing file: none).
pub fn ledger(path: &Path) -> Vec<String> {
    match std::fs::read_to_string(path) {
        Ok(text) => text.lines().map(str::to_owned).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("{}: {e}", path.display()),
    }
}

/// How many times `id` appears as a line of the ledger.
pub fn ledger_count(path: &Path, id: &str) -> usize {
    ledger(path).iter().filter(|line| *line == id).count()
}

/// A temporary directory for what robots write (pid files, ledgers, outputs).
pub fn scratch() -> TempDir {
    tempfile::Builder::new()
        .prefix("regente-robot-out-")
        .tempdir()
        .expect("a scratch directory")
}

/// A path as text, for a variable.
pub fn path_text(path: &Path) -> String {
    path.to_str().expect("a UTF-8 path").to_owned()
}

/// A file's Unix permission bits.
pub fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}
