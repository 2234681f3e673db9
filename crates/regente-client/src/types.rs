//! What the API answers, as far as a client reads it.

use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Robot {
    pub id: String,
    pub name: String,
    pub created_at: i64,
    /// Oldest first.
    pub versions: Vec<RobotVersion>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RobotVersion {
    pub version: u32,
    pub sha256: String,
    pub size: u64,
    pub created_at: i64,
    pub command: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PushedRobot {
    pub id: String,
    pub name: String,
    pub version: u32,
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Runtime {
    pub id: String,
    pub name: String,
    pub slots: u32,
    pub online: bool,
    pub last_seen: Option<i64>,
    pub created_at: i64,
}

/// An execution's status: PENDENT and RUNNING are live, the others final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    Pendent,
    Running,
    Finished,
    Error,
    Canceled,
}

impl Status {
    pub fn is_ended(self) -> bool {
        !matches!(self, Status::Pendent | Status::Running)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pendent => "PENDENT",
            Status::Running => "RUNNING",
            Status::Finished => "FINISHED",
            Status::Error => "ERROR",
            Status::Canceled => "CANCELED",
        }
    }
}

/// The Integration API's result of an execution.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunResult {
    #[serde(rename = "_id")]
    pub id: String,
    pub logs: Vec<LogLine>,
    pub init: i64,
    pub end: Option<i64>,
    #[serde(rename = "returnValue")]
    pub return_value: Option<Value>,
    pub status: Status,
    pub progress: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogLine {
    pub time: i64,
    pub level: String,
    pub message: String,
}

/// An execution as the admin API shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Execution {
    pub id: String,
    pub runtime_id: String,
    pub robot_id: String,
    pub robot_version: u32,
    pub variables: Value,
    pub status: Status,
    pub progress: f64,
    pub init: i64,
    pub started: Option<i64>,
    pub end: Option<i64>,
    pub return_value: Option<Value>,
    pub end_reason: Option<String>,
    pub exit_code: Option<i32>,
    pub submitted_by: Option<String>,
    pub canceled_by: Option<String>,
    /// The schedule that queued it, and the fire it is for.
    #[serde(default)]
    pub schedule_id: Option<String>,
    #[serde(default)]
    pub scheduled_for: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_position: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExecutionPage {
    pub executions: Vec<Execution>,
    pub next_cursor: Option<String>,
}

/// Which executions to list; every field is optional.
#[derive(Debug, Clone, Default)]
pub struct ExecutionFilter {
    pub status: Option<String>,
    pub robot_id: Option<String>,
    pub runtime_id: Option<String>,
    pub cursor: Option<String>,
    pub limit: Option<u32>,
}
