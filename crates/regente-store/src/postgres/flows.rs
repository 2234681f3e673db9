//! Flows on PostgreSQL. Every change locks its run's row first (`FOR UPDATE`),
//! then checks the revision, so that two servers, or the engine and a request,
//! never both apply a decision made from the same state.

use async_trait::async_trait;
use regente_core::ExecutionStatus;
use sqlx::{PgConnection, Row};

use super::audit::insert_audit;
use super::events::{insert_events, save_cursor_in};
use super::executions::{
    insert_execution, key_kept_changing, take_key, KeyTaken, IDEMPOTENCY_ATTEMPTS,
};
use super::{conflict_as, fetch_all, other, PostgresStore};
use crate::audit::of_version;
use crate::rows::{
    flow_from, flow_run_from, flow_step_from, json_text, status_of, waking_run_from, FLOW_COLUMNS,
    FLOW_RUN_COLUMNS, FLOW_STEP_COLUMNS,
};
use crate::rules::{
    flow_run_canceled_reason, flow_run_change_events, flow_run_ended_event, flow_run_started_event,
};
use crate::{
    AuditEntry, Enqueued, Error, Flow, FlowAdvance, FlowCancelOutcome, FlowRun, FlowStore,
    IdempotencyKey, Millis, NewFlowRun, NewFlowVersion, Result, WakingRun,
};

async fn select_flow(
    conn: &mut PgConnection,
    organization_id: &str,
    id: &str,
    version: Option<u32>,
) -> Result<Flow> {
    let row = sqlx::query(&format!(
        "SELECT {FLOW_COLUMNS} FROM flows f JOIN flow_versions v ON v.flow_id = f.id \
         WHERE f.organization_id = $1 AND f.id = $2 AND ($3::BIGINT IS NULL OR v.version = $3) \
         ORDER BY v.version DESC LIMIT 1"
    ))
    .bind(organization_id)
    .bind(id)
    .bind(version.map(i64::from))
    .fetch_optional(conn)
    .await
    .map_err(other)?
    .ok_or(Error::NotFound)?;
    flow_from(&row)
}

async fn get_run(conn: &mut PgConnection, organization_id: &str, id: &str) -> Result<FlowRun> {
    let row = sqlx::query(&format!(
        "SELECT {FLOW_RUN_COLUMNS} FROM flow_runs WHERE organization_id = $1 AND id = $2"
    ))
    .bind(organization_id)
    .bind(id)
    .fetch_optional(&mut *conn)
    .await
    .map_err(other)?
    .ok_or(Error::NotFound)?;
    let mut run = flow_run_from(&row)?;
    let steps = sqlx::query(&format!(
        "SELECT {FLOW_STEP_COLUMNS} FROM flow_steps \
         WHERE organization_id = $1 AND run_id = $2 ORDER BY position"
    ))
    .bind(organization_id)
    .bind(id)
    .fetch_all(&mut *conn)
    .await
    .map_err(other)?;
    run.steps = steps.iter().map(flow_step_from).collect::<Result<_>>()?;
    Ok(run)
}

/// Locks the run's row; its status and revision.
async fn lock_run(
    conn: &mut PgConnection,
    organization_id: &str,
    id: &str,
) -> Result<(ExecutionStatus, i64)> {
    let row = sqlx::query(
        "SELECT status, revision FROM flow_runs WHERE organization_id = $1 AND id = $2 FOR UPDATE",
    )
    .bind(organization_id)
    .bind(id)
    .fetch_optional(conn)
    .await
    .map_err(other)?
    .ok_or(Error::NotFound)?;
    Ok((status_of(&row)?, row.try_get("revision").map_err(other)?))
}

/// Writes a starting run in the caller's transaction: its row, its steps, its
/// first execution and their events (`flow_run.started`, `execution.queued`,
/// and `flow_run.ended` for a run that ended at once). A run request and a
/// schedule's fire both start runs with it.
pub(super) async fn insert_run(conn: &mut PgConnection, new: &NewFlowRun) -> Result<()> {
    let run = &new.run;
    sqlx::query(
        "INSERT INTO flow_runs (id, organization_id, flow_id, version, status, input, return_value, \
         init, \"end\", end_reason, submitted_by, canceled_by, revision, wake_at, schedule_id, \
         scheduled_for) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, NULL, 0, $12, $13, $14)",
    )
    .bind(&run.id)
    .bind(&run.organization_id)
    .bind(&run.flow_id)
    .bind(i64::from(run.version))
    .bind(run.status.as_str())
    .bind(run.input.to_string())
    .bind(json_text(&run.return_value))
    .bind(run.init)
    .bind(run.end)
    .bind(&run.end_reason)
    .bind(&run.submitted_by)
    .bind(run.wake_at)
    .bind(&run.schedule_id)
    .bind(run.scheduled_for)
    .execute(&mut *conn)
    .await
    .map_err(conflict_as("a flow run with this id"))?;
    for step in &run.steps {
        sqlx::query(
            "INSERT INTO flow_steps (run_id, position, step_id, organization_id, status, attempt, \
             execution_id, return_value, reason, not_before, deadline) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(&run.id)
        .bind(i64::from(step.position))
        .bind(&step.step_id)
        .bind(&run.organization_id)
        .bind(&step.status)
        .bind(i64::from(step.attempt))
        .bind(&step.execution_id)
        .bind(json_text(&step.return_value))
        .bind(&step.reason)
        .bind(step.not_before)
        .bind(step.deadline)
        .execute(&mut *conn)
        .await
        .map_err(other)?;
    }
    insert_events(conn, &[flow_run_started_event(run, false, run.init)]).await?;
    if let Some(execution) = &new.enqueue {
        insert_execution(conn, execution).await?;
    }
    if run.status != ExecutionStatus::Running {
        let ended = flow_run_ended_event(
            &run.organization_id,
            &run.id,
            run.status,
            run.end_reason.as_deref(),
            run.init,
        );
        insert_events(conn, &[ended]).await?;
    }
    Ok(())
}

#[async_trait]
impl FlowStore for PostgresStore {
    async fn save_flow(&self, new: &NewFlowVersion, audit: Option<&AuditEntry>) -> Result<Flow> {
        let mut tx = self.pool.begin().await.map_err(other)?;
        sqlx::query(
            "INSERT INTO flows (id, organization_id, name, created) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (organization_id, name) DO NOTHING",
        )
        .bind(&new.id)
        .bind(&new.organization_id)
        .bind(&new.name)
        .bind(new.created)
        .execute(&mut *tx)
        .await
        .map_err(conflict_as("a flow with this id"))?;
        // Locked: two saves under one name take the next versions in turn.
        let id: String = sqlx::query_scalar(
            "SELECT id FROM flows WHERE organization_id = $1 AND name = $2 FOR UPDATE",
        )
        .bind(&new.organization_id)
        .bind(&new.name)
        .fetch_one(&mut *tx)
        .await
        .map_err(other)?;
        sqlx::query(
            "INSERT INTO flow_versions (flow_id, version, organization_id, definition, created, created_by) \
             SELECT $1, COALESCE(MAX(version), 0) + 1, $2, $3, $4, $5 FROM flow_versions WHERE flow_id = $1",
        )
        .bind(&id)
        .bind(&new.organization_id)
        .bind(new.definition.to_string())
        .bind(new.created)
        .bind(&new.created_by)
        .execute(&mut *tx)
        .await
        .map_err(other)?;
        let flow = select_flow(&mut tx, &new.organization_id, &id, None).await?;
        insert_audit(&mut tx, of_version(audit, &flow.id, flow.version).as_ref()).await?;
        tx.commit().await.map_err(other)?;
        Ok(flow)
    }

    async fn get_flow(&self, organization_id: &str, id: &str) -> Result<Flow> {
        let mut conn = self.pool.acquire().await.map_err(other)?;
        select_flow(&mut conn, organization_id, id, None).await
    }

    async fn flow_version(&self, organization_id: &str, id: &str, version: u32) -> Result<Flow> {
        let mut conn = self.pool.acquire().await.map_err(other)?;
        select_flow(&mut conn, organization_id, id, Some(version)).await
    }

    async fn list_flows(&self, organization_id: &str) -> Result<Vec<Flow>> {
        fetch_all(
            &self.pool,
            &format!(
                "SELECT {FLOW_COLUMNS} FROM flows f JOIN flow_versions v ON v.flow_id = f.id \
                 AND v.version = (SELECT MAX(version) FROM flow_versions WHERE flow_id = f.id) \
                 WHERE f.organization_id = $1 ORDER BY f.name"
            ),
            &[organization_id],
            flow_from,
        )
        .await
    }

    async fn start_flow_run(
        &self,
        new: &NewFlowRun,
        key: Option<&IdempotencyKey>,
    ) -> Result<Enqueued> {
        for _ in 0..IDEMPOTENCY_ATTEMPTS {
            let mut tx = self.pool.begin().await.map_err(other)?;
            if let Some(key) = key {
                match take_key(&mut tx, key, &new.run.id, new.run.init).await? {
                    KeyTaken::Taken => {}
                    KeyTaken::Answered(answer) => return Ok(answer),
                    KeyTaken::Vanished => continue,
                }
            }
            insert_run(&mut tx, new).await?;
            tx.commit().await.map_err(other)?;
            return Ok(Enqueued::Created);
        }
        Err(key_kept_changing())
    }

    async fn get_flow_run(&self, organization_id: &str, id: &str) -> Result<FlowRun> {
        let mut conn = self.pool.acquire().await.map_err(other)?;
        get_run(&mut conn, organization_id, id).await
    }

    async fn recent_flow_runs(
        &self,
        organization_id: &str,
        flow_id: &str,
        limit: u32,
    ) -> Result<Vec<FlowRun>> {
        let rows = sqlx::query(&format!(
            "SELECT {FLOW_RUN_COLUMNS} FROM flow_runs \
             WHERE organization_id = $1 AND flow_id = $2 ORDER BY seq DESC LIMIT $3"
        ))
        .bind(organization_id)
        .bind(flow_id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(other)?;
        rows.iter().map(flow_run_from).collect()
    }

    async fn advance_flow_run(&self, advance: &FlowAdvance) -> Result<bool> {
        let mut tx = self.pool.begin().await.map_err(other)?;
        let (before, revision) =
            lock_run(&mut tx, &advance.organization_id, &advance.run_id).await?;
        if revision != advance.revision {
            return Ok(false);
        }
        sqlx::query(
            "UPDATE flow_runs SET status = $1, return_value = $2, \"end\" = $3, end_reason = $4, \
             wake_at = $5, revision = revision + 1, \
             canceled_by = CASE WHEN $1 = 'RUNNING' THEN NULL ELSE canceled_by END \
             WHERE organization_id = $6 AND id = $7",
        )
        .bind(advance.status.as_str())
        .bind(json_text(&advance.return_value))
        .bind(advance.end)
        .bind(&advance.end_reason)
        .bind(advance.wake_at)
        .bind(&advance.organization_id)
        .bind(&advance.run_id)
        .execute(&mut *tx)
        .await
        .map_err(other)?;
        for step in &advance.steps {
            sqlx::query(
                "UPDATE flow_steps SET status = $1, attempt = $2, execution_id = $3, \
                 return_value = $4, reason = $5, not_before = $6, deadline = $7 \
                 WHERE organization_id = $8 AND run_id = $9 AND position = $10",
            )
            .bind(&step.status)
            .bind(i64::from(step.attempt))
            .bind(&step.execution_id)
            .bind(json_text(&step.return_value))
            .bind(&step.reason)
            .bind(step.not_before)
            .bind(step.deadline)
            .bind(&advance.organization_id)
            .bind(&advance.run_id)
            .bind(i64::from(step.position))
            .execute(&mut *tx)
            .await
            .map_err(other)?;
        }
        if let Some(execution) = &advance.enqueue {
            insert_execution(&mut tx, execution).await?;
        }
        let run = get_run(&mut tx, &advance.organization_id, &advance.run_id).await?;
        insert_events(&mut tx, &flow_run_change_events(&run, before, advance.now)).await?;
        if let Some((consumer, cursor)) = &advance.cursor {
            save_cursor_in(&mut tx, consumer, *cursor, advance.now).await?;
        }
        insert_audit(&mut tx, advance.audit.as_ref()).await?;
        tx.commit().await.map_err(other)?;
        Ok(true)
    }

    async fn cancel_flow_run(
        &self,
        organization_id: &str,
        id: &str,
        canceled_by: &str,
        now: Millis,
        audit: Option<&AuditEntry>,
    ) -> Result<FlowCancelOutcome> {
        let mut tx = self.pool.begin().await.map_err(other)?;
        let (status, _) = lock_run(&mut tx, organization_id, id).await?;
        if status != ExecutionStatus::Running {
            return Ok(FlowCancelOutcome::AlreadyEnded(status));
        }
        let reason = flow_run_canceled_reason(canceled_by);
        sqlx::query(
            "UPDATE flow_runs SET status = 'CANCELED', \"end\" = $1, end_reason = $2, \
             canceled_by = $3, wake_at = NULL, revision = revision + 1 \
             WHERE organization_id = $4 AND id = $5",
        )
        .bind(now)
        .bind(&reason)
        .bind(canceled_by)
        .bind(organization_id)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(other)?;
        let running_execution: Option<Option<String>> = sqlx::query_scalar(
            "SELECT execution_id FROM flow_steps \
             WHERE organization_id = $1 AND run_id = $2 AND status = 'RUNNING'",
        )
        .bind(organization_id)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(other)?;
        let ended = flow_run_ended_event(
            organization_id,
            id,
            ExecutionStatus::Canceled,
            Some(&reason),
            now,
        );
        insert_events(&mut tx, &[ended]).await?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(other)?;
        Ok(FlowCancelOutcome::Canceled {
            running_execution: running_execution.flatten(),
        })
    }

    async fn waking_flow_runs(&self, limit: u32) -> Result<Vec<WakingRun>> {
        let rows = sqlx::query(
            "SELECT organization_id, id, wake_at FROM flow_runs \
             WHERE wake_at IS NOT NULL AND status = 'RUNNING' ORDER BY wake_at LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(other)?;
        rows.iter().map(waking_run_from).collect()
    }
}
