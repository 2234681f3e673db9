//! The runtime protocol: every message the agent and the server exchange, in one
//! place shared by both ends.
//!
//! The agent dials `GET /api/runtime/connect` (a WebSocket upgrade, with
//! `Authorization: Bearer <runtime key>`). Each text frame holds one JSON message,
//! tagged by `"type"`. The agent speaks first with [`AgentMessage::Hello`], which
//! carries [`PROTOCOL_VERSION`]; the server answers [`ServerMessage::Welcome`] or
//! closes the socket with a reason when the versions differ.
//!
//! An execution reaches the agent as an [`Assignment`] under a *lease*: a token that
//! names this one hand-out. The agent asks to start it ([`AgentMessage::Start`]) and
//! spawns the robot only after [`ServerMessage::Started`] (answered at once when
//! the server committed the start as it handed the execution out, which it does
//! for agents that name their journal in the hello), or without asking when the
//! assignment says the start was committed before it was sent
//! ([`Assignment::start_granted`]); everything it reports
//! afterwards is an [`Event`] numbered from the assignment's `first_seq`, kept on
//! disk until the server acknowledges it ([`ServerMessage::Ack`], cumulative), and
//! sent again after a reconnect. Reports under a lease the server has ended are
//! answered with [`ServerMessage::Revoked`] and never written.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Bumped on every incompatible change to the messages below.
pub const PROTOCOL_VERSION: u32 = 1;

/// Path of the WebSocket endpoint.
pub const CONNECT_PATH: &str = "/api/runtime/connect";

/// Path of a robot package download: `/api/runtime/packages/{robot_id}/{version}`.
pub fn package_path(robot_id: &str, version: u32) -> String {
    format!("/api/runtime/packages/{robot_id}/{version}")
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AgentMessage {
    /// First message of every connection.
    Hello {
        protocol: u32,
        agent_version: String,
        /// Robots the agent runs at once; 0 leaves it to the runtime's setting
        /// on the server.
        slots: u32,
        /// Leases the agent still holds: robots running or ended with events not
        /// yet acknowledged, from before this connection (or before a restart).
        held: Vec<HeldLease>,
        /// The id of the agent's journal. When present, the server commits a
        /// start as it hands the execution out and names the lease after this
        /// journal, which lets it tell, at a reconnect, a hand-out this journal
        /// never recorded (never spawned) from one it lost. Absent from older agents.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        instance: Option<String>,
    },
    /// Asks to start an assigned execution; the robot is spawned only on [`ServerMessage::Started`].
    Start {
        execution_id: String,
        lease: String,
    },
    /// Events of one execution, in order.
    Events {
        execution_id: String,
        lease: String,
        events: Vec<Event>,
    },
    Heartbeat,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeldLease {
    pub execution_id: String,
    pub lease: String,
    /// Whether the robot was spawned. A lease held but never spawned certainly
    /// never ran, so the server may hand the execution out again.
    pub spawned: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    Welcome {
        protocol: u32,
        runtime_id: String,
        /// How often the agent sends a heartbeat.
        heartbeat_ms: u64,
        /// The runtime timeout: silent that long, the runtime is lost. Agents
        /// stop their robots before it (self-fencing). Absent from older
        /// servers, whose heartbeat is a sixth of it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        runtime_timeout_ms: Option<u64>,
    },
    Assign(Assignment),
    /// The start is granted: spawn the robot now.
    Started {
        execution_id: String,
        lease: String,
    },
    /// Every event up to and including `seq` is stored.
    Ack {
        execution_id: String,
        lease: String,
        seq: u64,
    },
    /// Stop the robot: the execution was canceled. The agent answers with an
    /// `ended` event of status CANCELED.
    Cancel {
        execution_id: String,
        lease: String,
    },
    /// The lease has ended on the server (canceled before start, runtime declared
    /// lost, reassigned): stop the robot if it runs and drop its events.
    Revoked {
        execution_id: String,
        lease: String,
        reason: String,
    },
    Heartbeat,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Assignment {
    pub execution_id: String,
    pub lease: String,
    pub robot_id: String,
    pub robot_version: u32,
    /// Lowercase hex SHA-256 of the package zip.
    pub sha256: String,
    /// The `robot.toml` text of that version.
    pub manifest: String,
    /// `{"NAME": typed value}`.
    pub variables: Value,
    /// Sequence number of this attempt's first event.
    pub first_seq: u64,
    /// The vault's credentials the robot declared, resolved at this hand-out:
    /// `{"NAME": {"FIELD": "value"}}`. Held in memory only: never journaled,
    /// written for the robot alone, masked in its output. Absent when empty, so
    /// agents that predate it read assignments as before.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub credentials: BTreeMap<String, BTreeMap<String, String>>,
    /// The values of the variables the robot declared secret, opened at this
    /// hand-out (in `variables` they stay `"***"`); kept like `credentials`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secret_variables: BTreeMap<String, Value>,
    /// The server committed the start before sending this (only to an agent
    /// that names its journal, under a lease granted to it): the agent starts
    /// the robot once the assignment is journaled, without a `Start`. Absent
    /// when false: agents that predate it ask, and are answered at once.
    #[serde(default, skip_serializing_if = "is_false")]
    pub start_granted: bool,
}

fn is_false(value: &bool) -> bool {
    !value
}

impl Assignment {
    /// The assignment without what the vault handed out, as the agent journals it.
    pub fn without_secrets(&self) -> Assignment {
        Assignment {
            credentials: BTreeMap::new(),
            secret_variables: BTreeMap::new(),
            ..self.clone()
        }
    }
}

/// One numbered thing that happened to an execution on the agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub seq: u64,
    /// Epoch milliseconds on the agent.
    pub time: i64,
    #[serde(flatten)]
    pub kind: EventKind,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventKind {
    Log {
        level: LogLevel,
        message: String,
    },
    Progress {
        value: f64,
    },
    Return {
        value: Value,
    },
    /// The last event of an attempt.
    Ended {
        status: EndStatus,
        exit_code: Option<i32>,
        reason: String,
    },
    /// Also a last event: the robot died with an earlier process of the agent.
    /// The server ends the attempt as it ends one of a lost runtime: queued
    /// again if the robot allows retries, else ERROR with `reason` logged.
    Lost {
        reason: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum LogLevel {
    Info,
    Warn,
    Error,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Info => "INFO",
            LogLevel::Warn => "WARN",
            LogLevel::Error => "ERROR",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum EndStatus {
    Finished,
    Error,
    Canceled,
}

impl EndStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            EndStatus::Finished => "FINISHED",
            EndStatus::Error => "ERROR",
            EndStatus::Canceled => "CANCELED",
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn messages_have_a_stable_json_form() {
        let event = Event {
            seq: 3,
            time: 10,
            kind: EventKind::Log {
                level: LogLevel::Warn,
                message: "hi".into(),
            },
        };
        assert_eq!(
            serde_json::to_value(&event).unwrap(),
            json!({"seq": 3, "time": 10, "kind": "log", "level": "WARN", "message": "hi"})
        );
        let hello = AgentMessage::Hello {
            protocol: PROTOCOL_VERSION,
            agent_version: "0.1.0".into(),
            slots: 2,
            held: vec![],
            instance: Some("0123456789abcdef".into()),
        };
        let text = serde_json::to_string(&hello).unwrap();
        assert!(
            text.starts_with(r#"{"type":"hello","protocol":1"#),
            "{text}"
        );
        assert_eq!(serde_json::from_str::<AgentMessage>(&text).unwrap(), hello);
        let ack = ServerMessage::Ack {
            execution_id: "e".into(),
            lease: "l".into(),
            seq: 9,
        };
        assert_eq!(
            serde_json::to_value(&ack).unwrap(),
            json!({"type": "ack", "execution_id": "e", "lease": "l", "seq": 9})
        );
    }

    /// A granted start is said only when true, and an assignment without the
    /// key (from a server that predates it) asks for its start.
    #[test]
    fn a_granted_start_is_named_only_when_granted() {
        let mut assignment = Assignment {
            execution_id: "e".into(),
            lease: "l".into(),
            robot_id: "r".into(),
            robot_version: 1,
            sha256: "00".into(),
            manifest: String::new(),
            variables: json!({}),
            first_seq: 1,
            credentials: BTreeMap::new(),
            secret_variables: BTreeMap::new(),
            start_granted: false,
        };
        let asking = serde_json::to_value(ServerMessage::Assign(assignment.clone())).unwrap();
        assert_eq!(asking.get("start_granted"), None, "{asking}");
        assert_eq!(
            serde_json::from_value::<ServerMessage>(asking).unwrap(),
            ServerMessage::Assign(assignment.clone())
        );
        assignment.start_granted = true;
        let granted = serde_json::to_value(ServerMessage::Assign(assignment.clone())).unwrap();
        assert_eq!(granted["start_granted"], true);
        assert_eq!(
            serde_json::from_value::<ServerMessage>(granted).unwrap(),
            ServerMessage::Assign(assignment)
        );
    }
}
