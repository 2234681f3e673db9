//! Flows on SQLite: definitions in versions, runs and their steps. Each change
//! is one write of the single writer, so reading the run's revision and writing
//! the change cannot interleave with another change.

use async_trait::async_trait;
use regente_core::ExecutionStatus;
use rusqlite::{params, Connection};

use super::audit::insert_audit;
use super::events::{insert_events, save_cursor_in};
use super::executions::{earlier_answer, insert_execution, record_key};
use super::{all, change, insert, one, SqliteStore};
use crate::audit::of_version;
use crate::rows::{
    flow_from, flow_run_from, flow_step_from, json_text, status_of, waking_run_from, RecordRow,
    FLOW_COLUMNS, FLOW_RUN_COLUMNS, FLOW_STEP_COLUMNS,
};
use crate::rules::{
    flow_run_canceled_reason, flow_run_change_events, flow_run_ended_event, flow_run_started_event,
};
use crate::{
    AuditEntry, Enqueued, Error, Flow, FlowAdvance, FlowCancelOutcome, FlowRun, FlowStep,
    FlowStore, IdempotencyKey, Millis, NewFlowRun, NewFlowVersion, Result, WakingRun,
};

fn select_flow(
    conn: &Connection,
    organization_id: &str,
    id: &str,
    version: Option<u32>,
) -> Result<Flow> {
    let sql = format!(
        "SELECT {FLOW_COLUMNS} FROM flows f JOIN flow_versions v ON v.flow_id = f.id \
         WHERE f.organization_id = ?1 AND f.id = ?2 AND (?3 IS NULL OR v.version = ?3) \
         ORDER BY v.version DESC LIMIT 1"
    );
    one(conn, &sql, params![organization_id, id, version], |row| {
        flow_from(row)
    })?
    .ok_or(Error::NotFound)
}

fn save_flow(conn: &Connection, new: &NewFlowVersion) -> Result<Flow> {
    let existing = one(
        conn,
        "SELECT id FROM flows WHERE organization_id = ?1 AND name = ?2",
        params![new.organization_id, new.name],
        |row| row.text("id"),
    )?;
    let id = match existing {
        Some(id) => id,
        None => {
            insert(
                conn,
                "INSERT INTO flows (id, organization_id, name, created) VALUES (?1, ?2, ?3, ?4)",
                params![new.id, new.organization_id, new.name, new.created],
                "a flow with this id",
            )?;
            new.id.clone()
        }
    };
    change(
        conn,
        "INSERT INTO flow_versions (flow_id, version, organization_id, definition, created, created_by) \
         SELECT ?1, COALESCE(MAX(version), 0) + 1, ?2, ?3, ?4, ?5 FROM flow_versions WHERE flow_id = ?1",
        params![id, new.organization_id, new.definition.to_string(), new.created, new.created_by],
    )?;
    select_flow(conn, &new.organization_id, &id, None)
}

fn insert_step(conn: &Connection, run: &FlowRun, step: &FlowStep) -> Result<()> {
    change(
        conn,
        "INSERT INTO flow_steps (run_id, position, step_id, organization_id, status, attempt, \
         execution_id, return_value, reason, not_before, deadline) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        params![
            run.id,
            step.position,
            step.step_id,
            run.organization_id,
            step.status,
            step.attempt,
            step.execution_id,
            json_text(&step.return_value),
            step.reason,
            step.not_before,
            step.deadline
        ],
    )
    .map(drop)
}

fn start_run(
    conn: &Connection,
    new: &NewFlowRun,
    key: Option<&IdempotencyKey>,
) -> Result<Enqueued> {
    if let Some(key) = key {
        if let Some(answer) = earlier_answer(conn, key)? {
            return Ok(answer);
        }
    }
    insert_flow_run(conn, new)?;
    if let Some(key) = key {
        record_key(conn, key, &new.run.id, new.run.init)?;
    }
    Ok(Enqueued::Created)
}

/// Writes a starting run: its row, its steps, its first execution and their
/// events (`flow_run.started`, `execution.queued`, and `flow_run.ended` for a
/// run that ended at once). A run request and a schedule's fire both start
/// runs with it.
pub(super) fn insert_flow_run(conn: &Connection, new: &NewFlowRun) -> Result<()> {
    let run = &new.run;
    insert(
        conn,
        "INSERT INTO flow_runs (id, organization_id, flow_id, version, status, input, return_value, \
         init, \"end\", end_reason, submitted_by, canceled_by, revision, wake_at, schedule_id, \
         scheduled_for) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, NULL, 0, ?12, ?13, ?14)",
        params![
            run.id,
            run.organization_id,
            run.flow_id,
            run.version,
            run.status.as_str(),
            run.input.to_string(),
            json_text(&run.return_value),
            run.init,
            run.end,
            run.end_reason,
            run.submitted_by,
            run.wake_at,
            run.schedule_id,
            run.scheduled_for
        ],
        "a flow run with this id",
    )?;
    for step in &run.steps {
        insert_step(conn, run, step)?;
    }
    insert_events(conn, &[flow_run_started_event(run, false, run.init)])?;
    if let Some(execution) = &new.enqueue {
        insert_execution(conn, execution, &execution.variables.to_string())?;
    }
    if run.status != ExecutionStatus::Running {
        let ended = flow_run_ended_event(
            &run.organization_id,
            &run.id,
            run.status,
            run.end_reason.as_deref(),
            run.init,
        );
        insert_events(conn, &[ended])?;
    }
    Ok(())
}

/// The run's status and revision, if it exists in the organisation.
fn run_head(conn: &Connection, organization_id: &str, id: &str) -> Result<(ExecutionStatus, i64)> {
    one(
        conn,
        "SELECT status, revision FROM flow_runs WHERE organization_id = ?1 AND id = ?2",
        params![organization_id, id],
        |row| Ok((status_of(row)?, row.int("revision")?)),
    )?
    .ok_or(Error::NotFound)
}

fn advance(conn: &Connection, advance: &FlowAdvance) -> Result<bool> {
    let (before, revision) = run_head(conn, &advance.organization_id, &advance.run_id)?;
    if revision != advance.revision {
        return Ok(false);
    }
    change(
        conn,
        "UPDATE flow_runs SET status = ?1, return_value = ?2, \"end\" = ?3, end_reason = ?4, \
         wake_at = ?5, revision = revision + 1, \
         canceled_by = CASE WHEN ?1 = 'RUNNING' THEN NULL ELSE canceled_by END \
         WHERE organization_id = ?6 AND id = ?7",
        params![
            advance.status.as_str(),
            json_text(&advance.return_value),
            advance.end,
            advance.end_reason,
            advance.wake_at,
            advance.organization_id,
            advance.run_id
        ],
    )?;
    for step in &advance.steps {
        change(
            conn,
            "UPDATE flow_steps SET status = ?1, attempt = ?2, execution_id = ?3, return_value = ?4, \
             reason = ?5, not_before = ?6, deadline = ?7 \
             WHERE organization_id = ?8 AND run_id = ?9 AND position = ?10",
            params![
                step.status,
                step.attempt,
                step.execution_id,
                json_text(&step.return_value),
                step.reason,
                step.not_before,
                step.deadline,
                advance.organization_id,
                advance.run_id,
                step.position
            ],
        )?;
    }
    if let Some(execution) = &advance.enqueue {
        insert_execution(conn, execution, &execution.variables.to_string())?;
    }
    let run = get_run(conn, &advance.organization_id, &advance.run_id)?;
    insert_events(conn, &flow_run_change_events(&run, before, advance.now))?;
    if let Some((consumer, cursor)) = &advance.cursor {
        save_cursor_in(conn, consumer, *cursor, advance.now)?;
    }
    Ok(true)
}

fn cancel_run(
    conn: &Connection,
    organization_id: &str,
    id: &str,
    canceled_by: &str,
    now: Millis,
) -> Result<FlowCancelOutcome> {
    let (status, _) = run_head(conn, organization_id, id)?;
    if status != ExecutionStatus::Running {
        return Ok(FlowCancelOutcome::AlreadyEnded(status));
    }
    let reason = flow_run_canceled_reason(canceled_by);
    change(
        conn,
        "UPDATE flow_runs SET status = 'CANCELED', \"end\" = ?1, end_reason = ?2, canceled_by = ?3, \
         wake_at = NULL, revision = revision + 1 WHERE organization_id = ?4 AND id = ?5",
        params![now, reason, canceled_by, organization_id, id],
    )?;
    let running_execution = one(
        conn,
        "SELECT execution_id FROM flow_steps \
         WHERE organization_id = ?1 AND run_id = ?2 AND status = 'RUNNING'",
        params![organization_id, id],
        |row| row.text_opt("execution_id"),
    )?
    .flatten();
    let ended = flow_run_ended_event(
        organization_id,
        id,
        ExecutionStatus::Canceled,
        Some(&reason),
        now,
    );
    insert_events(conn, &[ended])?;
    Ok(FlowCancelOutcome::Canceled { running_execution })
}

fn get_run(conn: &Connection, organization_id: &str, id: &str) -> Result<FlowRun> {
    let mut run = one(
        conn,
        &format!("SELECT {FLOW_RUN_COLUMNS} FROM flow_runs WHERE organization_id = ?1 AND id = ?2"),
        params![organization_id, id],
        |row| flow_run_from(row),
    )?
    .ok_or(Error::NotFound)?;
    run.steps = all(
        conn,
        &format!(
            "SELECT {FLOW_STEP_COLUMNS} FROM flow_steps \
             WHERE organization_id = ?1 AND run_id = ?2 ORDER BY position"
        ),
        params![organization_id, id],
        |row| flow_step_from(row),
    )?;
    Ok(run)
}

#[async_trait]
impl FlowStore for SqliteStore {
    async fn save_flow(&self, new: &NewFlowVersion, audit: Option<&AuditEntry>) -> Result<Flow> {
        let (new, audit) = (new.clone(), audit.cloned());
        self.write(move |conn| {
            let flow = save_flow(conn, &new)?;
            insert_audit(
                conn,
                of_version(audit.as_ref(), &flow.id, flow.version).as_ref(),
            )?;
            Ok(flow)
        })
        .await
    }

    async fn get_flow(&self, organization_id: &str, id: &str) -> Result<Flow> {
        self.readers
            .with(|conn| select_flow(conn, organization_id, id, None))
    }

    async fn flow_version(&self, organization_id: &str, id: &str, version: u32) -> Result<Flow> {
        self.readers
            .with(|conn| select_flow(conn, organization_id, id, Some(version)))
    }

    async fn list_flows(&self, organization_id: &str) -> Result<Vec<Flow>> {
        let organization_id = organization_id.to_owned();
        self.read_blocking(move |conn| {
            all(
                conn,
                &format!(
                    "SELECT {FLOW_COLUMNS} FROM flows f JOIN flow_versions v ON v.flow_id = f.id \
                     AND v.version = (SELECT MAX(version) FROM flow_versions WHERE flow_id = f.id) \
                     WHERE f.organization_id = ?1 ORDER BY f.name"
                ),
                [&organization_id],
                |row| flow_from(row),
            )
        })
        .await
    }

    async fn start_flow_run(
        &self,
        new: &NewFlowRun,
        key: Option<&IdempotencyKey>,
    ) -> Result<Enqueued> {
        let (new, key) = (new.clone(), key.cloned());
        self.write(move |conn| start_run(conn, &new, key.as_ref()))
            .await
    }

    async fn get_flow_run(&self, organization_id: &str, id: &str) -> Result<FlowRun> {
        self.readers.with(|conn| get_run(conn, organization_id, id))
    }

    async fn recent_flow_runs(
        &self,
        organization_id: &str,
        flow_id: &str,
        limit: u32,
    ) -> Result<Vec<FlowRun>> {
        let (organization_id, flow_id) = (organization_id.to_owned(), flow_id.to_owned());
        self.read_blocking(move |conn| {
            all(
                conn,
                &format!(
                    "SELECT {FLOW_RUN_COLUMNS} FROM flow_runs \
                     WHERE organization_id = ?1 AND flow_id = ?2 ORDER BY seq DESC LIMIT ?3"
                ),
                params![organization_id, flow_id, limit],
                |row| flow_run_from(row),
            )
        })
        .await
    }

    async fn advance_flow_run(&self, change: &FlowAdvance) -> Result<bool> {
        let change = change.clone();
        self.write(move |conn| {
            let advanced = advance(conn, &change)?;
            if advanced {
                insert_audit(conn, change.audit.as_ref())?;
            }
            Ok(advanced)
        })
        .await
    }

    async fn cancel_flow_run(
        &self,
        organization_id: &str,
        id: &str,
        canceled_by: &str,
        now: Millis,
        audit: Option<&AuditEntry>,
    ) -> Result<FlowCancelOutcome> {
        let (organization_id, id, canceled_by, audit) = (
            organization_id.to_owned(),
            id.to_owned(),
            canceled_by.to_owned(),
            audit.cloned(),
        );
        self.write(move |conn| {
            let outcome = cancel_run(conn, &organization_id, &id, &canceled_by, now)?;
            if matches!(outcome, FlowCancelOutcome::Canceled { .. }) {
                insert_audit(conn, audit.as_ref())?;
            }
            Ok(outcome)
        })
        .await
    }

    async fn waking_flow_runs(&self, limit: u32) -> Result<Vec<WakingRun>> {
        self.read_blocking(move |conn| {
            all(
                conn,
                "SELECT organization_id, id, wake_at FROM flow_runs \
                 WHERE wake_at IS NOT NULL AND status = 'RUNNING' ORDER BY wake_at LIMIT ?1",
                [limit],
                |row| waking_run_from(row),
            )
        })
        .await
    }
}
