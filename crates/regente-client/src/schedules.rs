//! Schedules (admins only): list and read them, pause, resume, run one now.

use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::{is_id, one_named, Client, Result};

/// A schedule as the admin API shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Schedule {
    pub id: String,
    pub name: String,
    /// The robot it runs on `runtime_id`; `None` for a flow's schedule.
    pub robot_id: Option<String>,
    pub runtime_id: Option<String>,
    /// The flow it runs; `None` for a robot's schedule.
    pub flow_id: Option<String>,
    pub variables: Value,
    /// The rule as given: a cron expression, or an `every` object.
    pub cron: Option<String>,
    pub every: Option<Value>,
    pub timezone: String,
    pub start_at: Option<i64>,
    pub end_at: Option<i64>,
    pub overlap: String,
    pub catchup_window_seconds: i64,
    pub misfire: String,
    pub jitter_seconds: i64,
    pub paused: bool,
    /// Why it was paused.
    pub note: Option<String>,
    pub pause_after_failures: Option<u32>,
    pub consecutive_failures: u32,
    pub fired: u64,
    pub skipped: u64,
    pub missed: u64,
    pub next_fire_at: Option<i64>,
    pub next_fires: Vec<FireTime>,
    /// The latest fires, newest first (one schedule read alone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_fires: Option<Vec<Fire>>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FireTime {
    pub at: i64,
    /// ISO-8601 in the schedule's zone.
    pub local: String,
}

/// A fire: recorded, or the answer to a trigger.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Fire {
    pub scheduled_for: i64,
    pub local: String,
    /// `rule`, `trigger` or `backfill`.
    pub origin: String,
    /// `started`, `skipped_overlap`, `skipped_error` or `missed`.
    pub outcome: String,
    pub execution_id: Option<String>,
    pub flow_run_id: Option<String>,
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recorded_at: Option<i64>,
}

impl Schedule {
    /// The rule as people read it: `cron 0 9 * * 1-5`, `weekly on mon, fri at 09:00`.
    pub fn rule_text(&self) -> String {
        if let Some(cron) = &self.cron {
            return format!("cron {cron}");
        }
        let Some(every) = &self.every else {
            return String::new();
        };
        let text = |field: &str| every.get(field).and_then(Value::as_str).unwrap_or("");
        let mut words = text("frequency").to_owned();
        if let Some(days) = every.get("weekdays").and_then(Value::as_array) {
            let days: Vec<&str> = days.iter().filter_map(Value::as_str).collect();
            words.push_str(&format!(" on {}", days.join(", ")));
        }
        if let Some(day) = every.get("day").and_then(Value::as_u64) {
            words.push_str(&format!(" on day {day}"));
        }
        format!("{words} at {}", text("at"))
    }
}

impl Client {
    /// The organisation's schedules, oldest first, with their next fires.
    pub async fn schedules(&self) -> Result<Vec<Schedule>> {
        self.call(Method::GET, "/api/admin/schedules", |r| r).await
    }

    /// One schedule with its next fires and its latest fires.
    pub async fn schedule(&self, id: &str) -> Result<Schedule> {
        let path = format!("/api/admin/schedules/{id}");
        self.call(Method::GET, &path, |r| r).await
    }

    /// Pauses a schedule, with a note saying why (or none).
    pub async fn pause_schedule(&self, id: &str, note: Option<&str>) -> Result<Schedule> {
        self.edit_schedule(id, json!({"paused": true, "note": note}))
            .await
    }

    /// Resumes a schedule from its next fire after now.
    pub async fn resume_schedule(&self, id: &str) -> Result<Schedule> {
        self.edit_schedule(id, json!({"paused": false})).await
    }

    async fn edit_schedule(&self, id: &str, body: Value) -> Result<Schedule> {
        let path = format!("/api/admin/schedules/{id}");
        self.call(Method::PATCH, &path, |r| r.json(&body)).await
    }

    /// Runs the schedule once now, counted as a fire (its overlap rule applies).
    pub async fn trigger_schedule(&self, id: &str) -> Result<Fire> {
        let path = format!("/api/admin/schedules/{id}/trigger");
        self.call(Method::POST, &path, |r| r).await
    }

    /// The schedule named `name_or_id` (an id, or a name of this organisation).
    pub async fn find_schedule(&self, name_or_id: &str) -> Result<String> {
        if is_id(name_or_id) {
            return Ok(name_or_id.to_owned());
        }
        let schedules = self.schedules().await?;
        one_named(
            "schedule",
            name_or_id,
            schedules.iter().map(|s| (&s.name, &s.id)),
        )
    }
}
