//! Flows: list them (admins), run one and read its runs (anyone signed in).

use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{is_id, one_named, Client, Result, Status};

/// A flow with its newest version.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Flow {
    pub id: String,
    pub name: String,
    pub version: u32,
    pub created: i64,
    pub version_created: i64,
    pub created_by: String,
    pub definition: Value,
}

impl Flow {
    /// The ids of its steps, in order (then `on_failure`'s).
    pub fn step_ids(&self) -> Vec<String> {
        let id = |step: &Value| step["id"].as_str().unwrap_or_default().to_owned();
        let steps = self.definition["steps"].as_array().into_iter().flatten();
        steps
            .chain(self.definition.get("on_failure"))
            .map(id)
            .collect()
    }
}

/// A run of a flow: its status and each step's.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FlowRun {
    pub id: String,
    pub flow_id: String,
    pub version: u32,
    /// RUNNING, then FINISHED, ERROR or CANCELED.
    pub status: Status,
    pub steps: Vec<FlowRunStep>,
    #[serde(rename = "returnValue")]
    pub return_value: Option<Value>,
    pub input: Value,
    pub init: i64,
    pub end: Option<i64>,
    pub reason: Option<String>,
    pub submitted_by: String,
    pub canceled_by: Option<String>,
    pub schedule_id: Option<String>,
    pub scheduled_for: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FlowRunStep {
    pub id: String,
    /// PENDENT, RUNNING, FINISHED, ERROR, CANCELED or SKIPPED.
    pub status: String,
    pub execution_id: Option<String>,
    #[serde(rename = "returnValue")]
    pub return_value: Option<Value>,
    pub attempt: u32,
    pub reason: Option<String>,
}

impl Client {
    /// Every flow of the organisation with its newest version (admins).
    pub async fn flows(&self) -> Result<Vec<Flow>> {
        self.call(Method::GET, "/api/admin/flows", |r| r).await
    }

    /// Starts a run of the flow's newest version; answers the run's id once it
    /// and its first step are on the server's disk.
    pub async fn run_flow(
        &self,
        flow_id: &str,
        variables: &[(String, String)],
        idempotency_key: Option<&str>,
    ) -> Result<String> {
        let path = format!("/api/integration/v2/flows/{flow_id}/run");
        self.post_run(&path, variables, idempotency_key).await
    }

    /// A flow's most recent runs, newest first (admins).
    pub async fn flow_runs(&self, flow_id: &str, limit: u32) -> Result<Vec<FlowRun>> {
        let path = format!("/api/admin/flows/{flow_id}/runs?limit={limit}");
        self.call(Method::GET, &path, |r| r).await
    }

    pub async fn flow_run(&self, id: &str) -> Result<FlowRun> {
        let path = format!("/api/integration/v2/flows/runs/{id}");
        self.call(Method::GET, &path, |r| r).await
    }

    /// The flow named `name_or_id` (an id, or a name of this organisation;
    /// names need an admin's token).
    pub async fn find_flow(&self, name_or_id: &str) -> Result<String> {
        if is_id(name_or_id) {
            return Ok(name_or_id.to_owned());
        }
        let flows = self.flows().await?;
        one_named("flow", name_or_id, flows.iter().map(|f| (&f.name, &f.id)))
    }
}
