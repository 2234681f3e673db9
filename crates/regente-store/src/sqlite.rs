//! The embedded store: one SQLite file in WAL mode with `synchronous=FULL`, so a
//! committed transaction survives a process crash and a power loss.
//!
//! All writes go through a pool of exactly one connection: SQLite has one writer
//! at a time anyway, and queueing writers in the pool instead of in SQLite's busy
//! handler means no `database is locked` errors under bursts. Reads use a separate
//! pool of read-only connections, which WAL lets run beside the writer.

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context as _;
use async_trait::async_trait;
use regente_core::ExecutionStatus;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row, Sqlite};
use tokio::sync::{mpsc, oneshot};

use crate::rows::{
    self, clamp_progress, conflict_as, execution_from, json_column, lease_from, log_line_from,
    organization_from, other, robot_from, robot_version_from, robots_from, runtime_from, status_of,
    user_from, EXECUTION_COLUMNS,
};
use crate::{
    CancelOutcome, Change, Claimed, Enqueued, Error, EventRecord, EventsOutcome, Execution,
    ExecutionFilter, IdempotencyKey, Lease, LogLine, LostOutcome, Millis, NewExecution,
    NewRobotVersion, NewRuntime, Organization, Result, Robot, Runtime, Store, User,
};

const READ_CONNECTIONS: u32 = 4;
/// Log lines per INSERT: 6 values each, well under SQLite's 32,766 variables.
const LOG_LINES_PER_INSERT: usize = 1000;

pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
    /// Runs submitted concurrently are committed together (see [`commit_enqueues`]).
    enqueuer: mpsc::Sender<EnqueueJob>,
}

struct EnqueueJob {
    new: NewExecution,
    key: Option<IdempotencyKey>,
    reply: oneshot::Sender<Result<Enqueued>>,
}

/// Most runs committed by one transaction.
const MAX_ENQUEUE_BATCH: usize = 1024;

impl SqliteStore {
    /// Opens (creating if needed) the database at `url` and applies the migrations.
    pub async fn open(url: &str) -> anyhow::Result<SqliteStore> {
        let options = SqliteConnectOptions::from_str(url)
            .with_context(|| format!("invalid SQLite URL {url:?}"))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(30));
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .after_connect(|conn, _| Box::pin(check_durability(conn)))
            .connect_with(options.clone())
            .await
            .with_context(|| format!("cannot open the database {url:?}"))?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&writer)
            .await
            .context("cannot apply the database migrations")?;
        let reader = SqlitePoolOptions::new()
            .max_connections(READ_CONNECTIONS)
            .after_connect(|conn, _| Box::pin(check_durability(conn)))
            .connect_with(options.read_only(true))
            .await
            .with_context(|| format!("cannot open the database {url:?} for reading"))?;
        let (enqueuer, jobs) = mpsc::channel(MAX_ENQUEUE_BATCH * 4);
        tokio::spawn(commit_enqueues(writer.clone(), jobs));
        Ok(SqliteStore {
            writer,
            reader,
            enqueuer,
        })
    }
}

/// Group commit: the runs waiting while one transaction commits go into the next,
/// each under its own savepoint, so one fsync acknowledges them all. Nobody is
/// answered before the commit that holds their run has returned.
async fn commit_enqueues(writer: SqlitePool, mut jobs: mpsc::Receiver<EnqueueJob>) {
    let mut batch = Vec::with_capacity(MAX_ENQUEUE_BATCH);
    while jobs.recv_many(&mut batch, MAX_ENQUEUE_BATCH).await > 0 {
        match enqueue_batch(&writer, &batch).await {
            Ok(outcomes) => {
                for (job, outcome) in batch.drain(..).zip(outcomes) {
                    let _ = job.reply.send(outcome);
                }
            }
            Err(e) => {
                let message = format!("{e:#}");
                for job in batch.drain(..) {
                    let _ = job.reply.send(Err(Error::Other(anyhow::anyhow!(
                        "cannot queue the run: {message}"
                    ))));
                }
            }
        }
    }
}

async fn enqueue_batch(
    writer: &SqlitePool,
    batch: &[EnqueueJob],
) -> anyhow::Result<Vec<Result<Enqueued>>> {
    let mut tx = writer.begin().await?;
    let mut outcomes = Vec::with_capacity(batch.len());
    for job in batch {
        sqlx::query("SAVEPOINT run").execute(&mut *tx).await?;
        let outcome = enqueue_one(&mut tx, &job.new, job.key.as_ref()).await;
        if outcome.is_err() {
            sqlx::query("ROLLBACK TO SAVEPOINT run")
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("RELEASE SAVEPOINT run")
            .execute(&mut *tx)
            .await?;
        outcomes.push(outcome);
    }
    tx.commit().await?;
    Ok(outcomes)
}

async fn enqueue_one(
    tx: &mut sqlx::SqliteConnection,
    new: &NewExecution,
    key: Option<&IdempotencyKey>,
) -> Result<Enqueued> {
    if let Some(key) = key {
        let earlier = sqlx::query(
            "SELECT fingerprint, execution_id, created_at FROM idempotency_keys \
             WHERE user_id = ? AND key = ?",
        )
        .bind(&key.user_id)
        .bind(&key.key)
        .fetch_optional(&mut *tx)
        .await
        .map_err(other)?;
        if let Some(earlier) = earlier {
            let created_at: Millis = earlier.try_get("created_at").map_err(other)?;
            if created_at >= key.expired_before {
                let fingerprint: String = earlier.try_get("fingerprint").map_err(other)?;
                return Ok(if fingerprint == key.fingerprint {
                    Enqueued::Existing(earlier.try_get("execution_id").map_err(other)?)
                } else {
                    Enqueued::KeyReused
                });
            }
            sqlx::query("DELETE FROM idempotency_keys WHERE user_id = ? AND key = ?")
                .bind(&key.user_id)
                .bind(&key.key)
                .execute(&mut *tx)
                .await
                .map_err(other)?;
        }
    }
    sqlx::query(
        "INSERT INTO executions (id, organization_id, runtime_id, robot_id, robot_version, \
         variables, status, progress, init, submitted_by, max_attempts) \
         VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?)",
    )
    .bind(&new.id)
    .bind(&new.organization_id)
    .bind(&new.runtime_id)
    .bind(&new.robot_id)
    .bind(new.robot_version as i64)
    .bind(new.variables.to_string())
    .bind(ExecutionStatus::Pendent.as_str())
    .bind(new.init)
    .bind(&new.submitted_by)
    .bind(new.max_attempts as i64)
    .execute(&mut *tx)
    .await
    .map_err(conflict_as("an execution with this id"))?;
    if let Some(key) = key {
        sqlx::query(
            "INSERT INTO idempotency_keys (user_id, key, fingerprint, execution_id, created_at) \
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(&key.user_id)
        .bind(&key.key)
        .bind(&key.fingerprint)
        .bind(&new.id)
        .bind(new.init)
        .execute(&mut *tx)
        .await
        .map_err(other)?;
    }
    Ok(Enqueued::Created)
}

/// The pragmas are per connection: check each one, so that no pooled connection
/// ever acknowledges a write that is not yet durable.
async fn check_durability(conn: &mut sqlx::SqliteConnection) -> sqlx::Result<()> {
    let synchronous: i64 = sqlx::query_scalar("PRAGMA synchronous")
        .fetch_one(&mut *conn)
        .await?;
    let journal_mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut *conn)
        .await?;
    // 2 is FULL, 3 is EXTRA: both sync the WAL on every commit.
    if synchronous < 2 || !journal_mode.eq_ignore_ascii_case("wal") {
        return Err(sqlx::Error::Configuration(
            format!("SQLite connection is not durable: synchronous={synchronous}, journal_mode={journal_mode}")
                .into(),
        ));
    }
    Ok(())
}

#[async_trait]
impl Store for SqliteStore {
    async fn root_organization(&self) -> Result<Option<Organization>> {
        rows::fetch_optional(
            &self.reader,
            "SELECT * FROM organizations WHERE is_root = 1",
            rows::NO_ARGS,
            organization_from,
        )
        .await
    }

    async fn get_organization(&self, id: &str) -> Result<Organization> {
        rows::fetch_optional(
            &self.reader,
            "SELECT * FROM organizations WHERE id = ?",
            &[id],
            organization_from,
        )
        .await?
        .ok_or(Error::NotFound)
    }

    async fn create_organization(&self, organization: &Organization, admin: &User) -> Result<()> {
        let mut tx = self.writer.begin().await.map_err(other)?;
        sqlx::query(
            "INSERT INTO organizations (id, name, is_root, created_at) VALUES (?, ?, ?, ?)",
        )
        .bind(&organization.id)
        .bind(&organization.name)
        .bind(organization.is_root)
        .bind(organization.created_at)
        .execute(&mut *tx)
        .await
        .map_err(conflict_as("an organization with this name"))?;
        insert_user(&mut tx, admin).await?;
        tx.commit().await.map_err(other)
    }

    async fn count_users(&self) -> Result<u64> {
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
            .fetch_one(&self.reader)
            .await
            .map_err(other)?;
        Ok(count as u64)
    }

    async fn create_user(&self, user: &User) -> Result<()> {
        let mut tx = self.writer.begin().await.map_err(other)?;
        insert_user(&mut tx, user).await?;
        tx.commit().await.map_err(other)
    }

    async fn find_user_by_username(&self, username: &str) -> Result<Option<User>> {
        rows::fetch_optional(
            &self.reader,
            "SELECT * FROM users WHERE username = ?",
            &[username],
            user_from,
        )
        .await
    }

    async fn get_user(&self, id: &str) -> Result<User> {
        rows::fetch_optional(
            &self.reader,
            "SELECT * FROM users WHERE id = ?",
            &[id],
            user_from,
        )
        .await?
        .ok_or(Error::NotFound)
    }

    async fn list_users(&self, organization_id: &str) -> Result<Vec<User>> {
        rows::fetch_all(
            &self.reader,
            "SELECT * FROM users WHERE organization_id = ? ORDER BY created_at, id",
            &[organization_id],
            user_from,
        )
        .await
    }

    async fn delete_user(&self, organization_id: &str, id: &str) -> Result<()> {
        let done = sqlx::query("DELETE FROM users WHERE organization_id = ? AND id = ?")
            .bind(organization_id)
            .bind(id)
            .execute(&self.writer)
            .await
            .map_err(other)?;
        if done.rows_affected() == 0 {
            return Err(Error::NotFound);
        }
        Ok(())
    }

    async fn create_runtime(&self, new: &NewRuntime) -> Result<()> {
        let runtime = &new.runtime;
        sqlx::query(
            "INSERT INTO runtimes (id, organization_id, name, key_hash, slots, last_seen, created_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&runtime.id)
        .bind(&runtime.organization_id)
        .bind(&runtime.name)
        .bind(&new.key_hash)
        .bind(runtime.slots as i64)
        .bind(runtime.last_seen)
        .bind(runtime.created_at)
        .execute(&self.writer)
        .await
        .map_err(conflict_as("a runtime with this id or key"))?;
        Ok(())
    }

    async fn get_runtime(&self, organization_id: &str, id: &str) -> Result<Runtime> {
        rows::fetch_optional(
            &self.reader,
            "SELECT * FROM runtimes WHERE organization_id = ? AND id = ?",
            &[organization_id, id],
            runtime_from,
        )
        .await?
        .ok_or(Error::NotFound)
    }

    async fn find_runtime_by_key_hash(&self, key_hash: &str) -> Result<Option<Runtime>> {
        rows::fetch_optional(
            &self.reader,
            "SELECT * FROM runtimes WHERE key_hash = ?",
            &[key_hash],
            runtime_from,
        )
        .await
    }

    async fn list_runtimes(&self, organization_id: &str) -> Result<Vec<Runtime>> {
        rows::fetch_all(
            &self.reader,
            "SELECT * FROM runtimes WHERE organization_id = ? ORDER BY created_at, id",
            &[organization_id],
            runtime_from,
        )
        .await
    }

    async fn touch_runtime(&self, id: &str, seen: Millis) -> Result<()> {
        sqlx::query("UPDATE runtimes SET last_seen = MAX(COALESCE(last_seen, 0), ?) WHERE id = ?")
            .bind(seen)
            .bind(id)
            .execute(&self.writer)
            .await
            .map_err(other)?;
        Ok(())
    }

    async fn add_robot_version(&self, new: &NewRobotVersion) -> Result<(String, u32)> {
        let mut tx = self.writer.begin().await.map_err(other)?;
        let existing: Option<String> =
            sqlx::query_scalar("SELECT id FROM robots WHERE organization_id = ? AND name = ?")
                .bind(&new.organization_id)
                .bind(&new.name)
                .fetch_optional(&mut *tx)
                .await
                .map_err(other)?;
        let robot_id = match existing {
            Some(id) => id,
            None => {
                sqlx::query(
                    "INSERT INTO robots (id, organization_id, name, created_at) VALUES (?, ?, ?, ?)",
                )
                .bind(&new.new_robot_id)
                .bind(&new.organization_id)
                .bind(&new.name)
                .bind(new.created_at)
                .execute(&mut *tx)
                .await
                .map_err(conflict_as("a robot with this id"))?;
                new.new_robot_id.clone()
            }
        };
        let version: i64 = sqlx::query_scalar(
            "SELECT COALESCE(MAX(version), 0) + 1 FROM robot_versions WHERE robot_id = ?",
        )
        .bind(&robot_id)
        .fetch_one(&mut *tx)
        .await
        .map_err(other)?;
        sqlx::query(
            "INSERT INTO robot_versions \
             (robot_id, version, organization_id, sha256, manifest, size, package, created_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&robot_id)
        .bind(version)
        .bind(&new.organization_id)
        .bind(&new.sha256)
        .bind(&new.manifest)
        .bind(new.package.len() as i64)
        .bind(&new.package)
        .bind(new.created_at)
        .execute(&mut *tx)
        .await
        .map_err(other)?;
        tx.commit().await.map_err(other)?;
        Ok((robot_id, version as u32))
    }

    async fn get_robot(&self, organization_id: &str, id: &str) -> Result<Robot> {
        let row = sqlx::query("SELECT * FROM robots WHERE organization_id = ? AND id = ?")
            .bind(organization_id)
            .bind(id)
            .fetch_optional(&self.reader)
            .await
            .map_err(other)?
            .ok_or(Error::NotFound)?;
        let versions = sqlx::query(
            "SELECT version, sha256, manifest, size, created_at FROM robot_versions \
             WHERE organization_id = ? AND robot_id = ? ORDER BY version",
        )
        .bind(organization_id)
        .bind(id)
        .fetch_all(&self.reader)
        .await
        .map_err(other)?;
        let versions = versions
            .iter()
            .map(robot_version_from)
            .collect::<Result<_>>()?;
        robot_from(&row, versions)
    }

    async fn list_robots(&self, organization_id: &str) -> Result<Vec<Robot>> {
        let rows =
            sqlx::query("SELECT * FROM robots WHERE organization_id = ? ORDER BY created_at, id")
                .bind(organization_id)
                .fetch_all(&self.reader)
                .await
                .map_err(other)?;
        let version_rows = sqlx::query(
            "SELECT robot_id, version, sha256, manifest, size, created_at FROM robot_versions \
             WHERE organization_id = ? ORDER BY robot_id, version",
        )
        .bind(organization_id)
        .fetch_all(&self.reader)
        .await
        .map_err(other)?;
        robots_from(&rows, &version_rows)
    }

    async fn robot_package(
        &self,
        organization_id: &str,
        robot_id: &str,
        version: u32,
    ) -> Result<Vec<u8>> {
        sqlx::query_scalar(
            "SELECT package FROM robot_versions WHERE organization_id = ? AND robot_id = ? AND version = ?",
        )
        .bind(organization_id)
        .bind(robot_id)
        .bind(version as i64)
        .fetch_optional(&self.reader)
        .await
        .map_err(other)?
        .ok_or(Error::NotFound)
    }

    async fn enqueue(&self, new: &NewExecution, key: Option<&IdempotencyKey>) -> Result<Enqueued> {
        let (reply, answer) = oneshot::channel();
        let job = EnqueueJob {
            new: new.clone(),
            key: key.cloned(),
            reply,
        };
        self.enqueuer
            .send(job)
            .await
            .map_err(|_| Error::Other(anyhow::anyhow!("the store is closed")))?;
        answer
            .await
            .map_err(|_| Error::Other(anyhow::anyhow!("the store dropped a queued run")))?
    }

    async fn get_execution(&self, organization_id: &str, id: &str) -> Result<Execution> {
        rows::fetch_optional(
            &self.reader,
            &format!(
                "SELECT {EXECUTION_COLUMNS} FROM executions WHERE organization_id = ? AND id = ?"
            ),
            &[organization_id, id],
            execution_from,
        )
        .await?
        .ok_or(Error::NotFound)
    }

    async fn execution_logs(&self, organization_id: &str, id: &str) -> Result<Vec<LogLine>> {
        rows::fetch_all(
            &self.reader,
            "SELECT seq, time, level, message FROM execution_logs \
             WHERE organization_id = ? AND execution_id = ? ORDER BY seq",
            &[organization_id, id],
            log_line_from,
        )
        .await
    }

    async fn list_executions(
        &self,
        organization_id: &str,
        filter: &ExecutionFilter,
    ) -> Result<Vec<Execution>> {
        let mut query: QueryBuilder<Sqlite> = rows::list_executions_query(organization_id, filter);
        let rows = query.build().fetch_all(&self.reader).await.map_err(other)?;
        rows.iter().map(execution_from).collect()
    }

    async fn queue_position(&self, execution: &Execution) -> Result<u64> {
        let ahead: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM executions WHERE runtime_id = ? AND status = 'PENDENT' AND seq < ?",
        )
        .bind(&execution.runtime_id)
        .bind(execution.seq)
        .fetch_one(&self.reader)
        .await
        .map_err(other)?;
        Ok(ahead as u64)
    }

    async fn cancel(
        &self,
        organization_id: &str,
        id: &str,
        canceled_by: &str,
        now: Millis,
    ) -> Result<CancelOutcome> {
        let mut tx = self.writer.begin().await.map_err(other)?;
        let row = sqlx::query(
            "SELECT status, lease FROM executions WHERE organization_id = ? AND id = ?",
        )
        .bind(organization_id)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(other)?
        .ok_or(Error::NotFound)?;
        let lease: Option<String> = row.try_get("lease").map_err(other)?;
        let outcome = match status_of(&row)? {
            ExecutionStatus::Pendent => {
                sqlx::query(
                    "UPDATE executions SET status = 'CANCELED', \"end\" = ?, canceled_by = ?, \
                     end_reason = 'canceled before it started', lease = NULL \
                     WHERE organization_id = ? AND id = ?",
                )
                .bind(now)
                .bind(canceled_by)
                .bind(organization_id)
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(other)?;
                CancelOutcome::Canceled { lease }
            }
            ExecutionStatus::Running => {
                sqlx::query(
                    "UPDATE executions SET cancel_requested = 1, canceled_by = COALESCE(canceled_by, ?) \
                     WHERE organization_id = ? AND id = ?",
                )
                .bind(canceled_by)
                .bind(organization_id)
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(other)?;
                CancelOutcome::Running {
                    lease: lease.unwrap_or_default(),
                }
            }
            ended => CancelOutcome::AlreadyEnded(ended),
        };
        tx.commit().await.map_err(other)?;
        Ok(outcome)
    }

    async fn claim_next(&self, runtime_id: &str, lease: &str) -> Result<Option<Claimed>> {
        let row = sqlx::query(
            "UPDATE executions SET lease = ?, attempt = attempt + 1 \
             WHERE seq = (SELECT seq FROM executions \
                          WHERE runtime_id = ? AND status = 'PENDENT' AND lease IS NULL \
                          ORDER BY seq LIMIT 1) \
             RETURNING id, robot_id, robot_version, variables, last_event_seq",
        )
        .bind(lease)
        .bind(runtime_id)
        .fetch_optional(&self.writer)
        .await
        .map_err(other)?;
        let Some(row) = row else { return Ok(None) };
        let robot_id: String = row.try_get("robot_id").map_err(other)?;
        let robot_version: i64 = row.try_get("robot_version").map_err(other)?;
        let version = sqlx::query(
            "SELECT sha256, manifest FROM robot_versions WHERE robot_id = ? AND version = ?",
        )
        .bind(&robot_id)
        .bind(robot_version)
        .fetch_one(&self.reader)
        .await
        .map_err(other)?;
        Ok(Some(Claimed {
            execution_id: row.try_get("id").map_err(other)?,
            lease: lease.to_owned(),
            robot_id,
            robot_version: robot_version as u32,
            sha256: version.try_get("sha256").map_err(other)?,
            manifest: version.try_get("manifest").map_err(other)?,
            variables: json_column(&row, "variables")?.unwrap_or_default(),
            first_seq: row.try_get::<i64, _>("last_event_seq").map_err(other)? as u64 + 1,
        }))
    }

    async fn start(
        &self,
        runtime_id: &str,
        execution_id: &str,
        lease: &str,
        now: Millis,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE executions SET status = 'RUNNING', started = ? \
             WHERE id = ? AND runtime_id = ? AND lease = ? AND status = 'PENDENT'",
        )
        .bind(now)
        .bind(execution_id)
        .bind(runtime_id)
        .bind(lease)
        .execute(&self.writer)
        .await
        .map_err(other)?;
        Ok(done.rows_affected() == 1)
    }

    async fn record_events(
        &self,
        runtime_id: &str,
        execution_id: &str,
        lease: &str,
        events: &[EventRecord],
    ) -> Result<EventsOutcome> {
        let mut tx = self.writer.begin().await.map_err(other)?;
        let row = sqlx::query(
            "SELECT organization_id, status, progress, return_value, last_event_seq, init \
             FROM executions WHERE id = ? AND runtime_id = ? AND lease = ?",
        )
        .bind(execution_id)
        .bind(runtime_id)
        .bind(lease)
        .fetch_optional(&mut *tx)
        .await
        .map_err(other)?;
        let Some(row) = row else {
            return Ok(EventsOutcome::Revoked);
        };
        let organization_id: String = row.try_get("organization_id").map_err(other)?;
        let mut status = status_of(&row)?;
        let mut progress: f64 = row.try_get("progress").map_err(other)?;
        let mut return_value: Option<String> = row.try_get("return_value").map_err(other)?;
        let init: Millis = row.try_get("init").map_err(other)?;
        let mut last = row.try_get::<i64, _>("last_event_seq").map_err(other)? as u64;
        let mut ending: Option<(Millis, Option<i32>, String)> = None;
        let mut lines: Vec<(&EventRecord, &str, &str)> = Vec::new();
        for event in events {
            if event.seq <= last {
                continue; // Sent again after a reconnect: stored already.
            }
            if event.seq != last + 1 || status.is_ended() {
                break; // A gap: the agent sends the rest again after a reconnect.
            }
            match &event.change {
                Change::Log { level, message } => lines.push((event, level, message)),
                Change::Progress(value) => progress = clamp_progress(*value),
                Change::Return(value) => return_value = Some(value.to_string()),
                Change::Ended {
                    status: end_status,
                    exit_code,
                    reason,
                } => {
                    status = *end_status;
                    if status == ExecutionStatus::Finished {
                        progress = 100.0;
                    }
                    ending = Some((event.time.max(init), *exit_code, reason.clone()));
                }
            }
            last = event.seq;
        }
        // Many lines per statement: one statement per line costs a round trip each.
        for chunk in lines.chunks(LOG_LINES_PER_INSERT) {
            let mut insert: QueryBuilder<Sqlite> = QueryBuilder::new(
                "INSERT INTO execution_logs (execution_id, seq, organization_id, time, level, message) ",
            );
            insert.push_values(chunk, |mut row, (event, level, message)| {
                row.push_bind(execution_id)
                    .push_bind(event.seq as i64)
                    .push_bind(&organization_id)
                    .push_bind(event.time)
                    .push_bind(*level)
                    .push_bind(*message);
            });
            insert.build().execute(&mut *tx).await.map_err(other)?;
        }
        let ended = ending.is_some();
        match ending {
            Some((end, exit_code, reason)) => sqlx::query(
                "UPDATE executions SET status = ?, progress = ?, return_value = ?, last_event_seq = ?, \
                 \"end\" = ?, exit_code = ?, end_reason = ? WHERE id = ?",
            )
            .bind(status.as_str())
            .bind(progress)
            .bind(return_value)
            .bind(last as i64)
            .bind(end)
            .bind(exit_code)
            .bind(reason)
            .bind(execution_id),
            None => sqlx::query(
                "UPDATE executions SET progress = ?, return_value = ?, last_event_seq = ? WHERE id = ?",
            )
            .bind(progress)
            .bind(return_value)
            .bind(last as i64)
            .bind(execution_id),
        }
        .execute(&mut *tx)
        .await
        .map_err(other)?;
        tx.commit().await.map_err(other)?;
        Ok(EventsOutcome::Stored { acked: last, ended })
    }

    async fn leases_of_runtime(&self, runtime_id: &str) -> Result<Vec<Lease>> {
        rows::fetch_all(&self.writer, "SELECT id, lease, runtime_id, status, cancel_requested FROM executions \
             WHERE runtime_id = ? AND status IN ('PENDENT', 'RUNNING') AND lease IS NOT NULL ORDER BY seq", &[runtime_id], lease_from).await
    }

    async fn lease_status(
        &self,
        execution_id: &str,
        lease: &str,
    ) -> Result<Option<ExecutionStatus>> {
        rows::fetch_optional(
            &self.writer,
            "SELECT status FROM executions WHERE id = ? AND lease = ?",
            &[execution_id, lease],
            status_of,
        )
        .await
    }

    async fn leases_seen_before(&self, seen_before: Millis) -> Result<Vec<Lease>> {
        rows::fetch_all(
            &self.writer,
            "SELECT e.id, e.lease, e.runtime_id, e.status, e.cancel_requested FROM executions e \
             JOIN runtimes r ON r.id = e.runtime_id \
             WHERE e.status IN ('PENDENT', 'RUNNING') AND e.lease IS NOT NULL \
             AND COALESCE(r.last_seen, 0) < ? ORDER BY e.seq",
            &[seen_before],
            lease_from,
        )
        .await
    }

    async fn end_lease(
        &self,
        execution_id: &str,
        lease: &str,
        started: bool,
        reason: &str,
        now: Millis,
    ) -> Result<LostOutcome> {
        let mut tx = self.writer.begin().await.map_err(other)?;
        let row = sqlx::query(
            "SELECT organization_id, status, attempt, max_attempts, last_event_seq, cancel_requested \
             FROM executions WHERE id = ? AND lease = ? AND status IN ('PENDENT', 'RUNNING')",
        )
        .bind(execution_id)
        .bind(lease)
        .fetch_optional(&mut *tx)
        .await
        .map_err(other)?;
        let Some(row) = row else {
            return Ok(LostOutcome::Stale);
        };
        let organization_id: String = row.try_get("organization_id").map_err(other)?;
        let attempt: i64 = row.try_get("attempt").map_err(other)?;
        let max_attempts: i64 = row.try_get("max_attempts").map_err(other)?;
        let cancel_requested: bool = row.try_get("cancel_requested").map_err(other)?;
        let seq: i64 = row.try_get::<i64, _>("last_event_seq").map_err(other)? + 1;
        let (outcome, level, message) = match status_of(&row)? {
            // A cancel is final: a run canceled while RUNNING never starts again,
            // even when its runtime says it never spawned it.
            _ if cancel_requested => {
                sqlx::query(
                    "UPDATE executions SET status = 'CANCELED', \"end\" = ?, end_reason = ?, lease = NULL, \
                     last_event_seq = ? WHERE id = ?",
                )
                .bind(now)
                .bind(format!("canceled; {reason}"))
                .bind(seq)
                .bind(execution_id)
                .execute(&mut *tx)
                .await
                .map_err(other)?;
                (
                    LostOutcome::Ended(ExecutionStatus::Canceled),
                    "WARN",
                    format!("canceled; {reason}"),
                )
            }
            // Never started: nothing ran, so it can safely wait for a runtime again,
            // without using up an attempt.
            status if status == ExecutionStatus::Pendent || !started => {
                sqlx::query(
                    "UPDATE executions SET status = 'PENDENT', lease = NULL, started = NULL, \
                     attempt = MAX(attempt - 1, 0) WHERE id = ?",
                )
                .bind(execution_id)
                .execute(&mut *tx)
                .await
                .map_err(other)?;
                tx.commit().await.map_err(other)?;
                return Ok(LostOutcome::Requeued);
            }
            _ if attempt < max_attempts => {
                sqlx::query(
                    "UPDATE executions SET status = 'PENDENT', lease = NULL, started = NULL, progress = 0, \
                     last_event_seq = ? WHERE id = ?",
                )
                .bind(seq)
                .bind(execution_id)
                .execute(&mut *tx)
                .await
                .map_err(other)?;
                let message = format!(
                    "{reason}; the robot allows retries, so it is queued again (attempt {} of {max_attempts})",
                    attempt + 1
                );
                (LostOutcome::Requeued, "WARN", message)
            }
            _ => {
                sqlx::query(
                    "UPDATE executions SET status = 'ERROR', \"end\" = ?, end_reason = ?, lease = NULL, \
                     last_event_seq = ? WHERE id = ?",
                )
                .bind(now)
                .bind(reason)
                .bind(seq)
                .bind(execution_id)
                .execute(&mut *tx)
                .await
                .map_err(other)?;
                (
                    LostOutcome::Ended(ExecutionStatus::Error),
                    "ERROR",
                    reason.to_owned(),
                )
            }
        };
        sqlx::query(
            "INSERT INTO execution_logs (execution_id, seq, organization_id, time, level, message) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(execution_id)
        .bind(seq)
        .bind(&organization_id)
        .bind(now)
        .bind(level)
        .bind(message)
        .execute(&mut *tx)
        .await
        .map_err(other)?;
        tx.commit().await.map_err(other)?;
        Ok(outcome)
    }
}

async fn insert_user(tx: &mut sqlx::SqliteConnection, user: &User) -> Result<()> {
    sqlx::query(
        "INSERT INTO users (id, organization_id, username, password_hash, role, created_at) \
         VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(&user.id)
    .bind(&user.organization_id)
    .bind(&user.username)
    .bind(&user.password_hash)
    .bind(user.role.as_str())
    .bind(user.created_at)
    .execute(tx)
    .await
    .map_err(conflict_as("a user with this username"))?;
    Ok(())
}
