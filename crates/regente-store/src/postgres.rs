//! The PostgreSQL store, for several Regente servers on one database.
//!
//! Same tables, same semantics as [`crate::sqlite`]. SQLite has one writer, so a
//! read-then-write there is atomic; here many connections (and many servers) write
//! at once, so every read-then-write takes a row lock first (`SELECT ... FOR
//! UPDATE`), uniqueness races are settled by `INSERT ... ON CONFLICT`, and the
//! queue is claimed with `FOR UPDATE SKIP LOCKED` on a partial index that holds
//! only the runs waiting for a hand-out. Transactions run at PostgreSQL's default
//! READ COMMITTED level: each statement sees what was committed before it began,
//! and a statement that waited for a row lock re-checks its conditions on the
//! row's newest version.
//!
//! PostgreSQL text cannot hold NUL characters: in what runtimes report (log lines,
//! end reasons) each NUL is stored as U+FFFD, so that a robot printing one cannot
//! wedge its execution. JSON is stored as its serialised text, which escapes NUL.

use std::borrow::Cow;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context as _;
use async_trait::async_trait;
use regente_core::ExecutionStatus;
use serde_json::json;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use sqlx::Connection as _;
use sqlx::{Postgres, QueryBuilder, Row};
use tokio::sync::broadcast;
use tracing::warn;

use crate::rows::{
    self, apply_events, conflict_as, event_target_from, execution_from, json_column, lease_from,
    live_lease_from, log_line_from, organization_from, other, plan_lease_end, redact, robot_from,
    robot_id_and_version_from, robot_version_from, robots_with_versions, runtime_from, status_of,
    user_from, EXECUTION_COLUMNS, LIVE_LEASE_COLUMNS,
};
use crate::{
    CancelOutcome, Claimed, Enqueued, Error, EventRecord, EventsOutcome, Execution,
    ExecutionFilter, IdempotencyKey, Lease, LogLine, LostOutcome, Millis, NewExecution,
    NewRobotVersion, NewRuntime, Notice, Organization, Result, Robot, RobotVersion, Runtime, Store,
    User,
};

/// Connections per server. Several servers share one database: keep the sum
/// under the server's `max_connections`.
const CONNECTIONS: u32 = 10;

pub struct PostgresStore {
    pool: PgPool,
    /// Notices of every server on this database, relayed from LISTEN.
    notices: broadcast::Sender<Notice>,
    listener: tokio::task::JoinHandle<()>,
    /// The session holding the leader lock, while this server holds it.
    leader: tokio::sync::Mutex<Option<sqlx::PgConnection>>,
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

/// The LISTEN/NOTIFY channel servers announce work, cancels and revocations on.
const NOTICE_CHANNEL: &str = "regente_notices";
/// The advisory lock whose holder runs the once-per-cluster duties.
const LEADER_LOCK: i64 = 0x5245_4745_4e54_4501;

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://` or `postgresql://`) and
    /// applies the migrations. Servers starting together are safe: the migrations
    /// run under an advisory lock.
    pub async fn open(url: &str) -> anyhow::Result<PostgresStore> {
        let options = PgConnectOptions::from_str(url)
            .with_context(|| format!("invalid PostgreSQL URL {}", redact(url)))?;
        let pool = PgPoolOptions::new()
            .max_connections(CONNECTIONS)
            .acquire_timeout(Duration::from_secs(30))
            .after_connect(|conn, _| Box::pin(check_durability(conn)))
            .connect_with(options)
            .await
            .with_context(|| format!("cannot connect to the database {}", redact(url)))?;
        sqlx::migrate!("./migrations/postgres")
            .run(&pool)
            .await
            .context("cannot apply the database migrations")?;
        let (notices, _) = broadcast::channel(4096);
        let listener = tokio::spawn(relay_notices(pool.clone(), notices.clone()));
        Ok(PostgresStore {
            pool,
            notices,
            listener,
            leader: tokio::sync::Mutex::new(None),
        })
    }
}

/// Listens for notices and relays them. NOTIFY reaches only sessions listening at
/// commit time and is never replayed, so every (re)start of the listener is
/// followed by a `Resync`, which makes each session look at the queue again.
async fn relay_notices(pool: PgPool, notices: broadcast::Sender<Notice>) {
    loop {
        match PgListener::connect_with(&pool).await {
            Ok(mut listener) => match listener.listen(NOTICE_CHANNEL).await {
                Ok(()) => {
                    let _ = notices.send(Notice::Resync);
                    loop {
                        match listener.try_recv().await {
                            Ok(Some(notification)) => {
                                if let Some(notice) = decode_notice(notification.payload()) {
                                    let _ = notices.send(notice);
                                }
                            }
                            // The connection was lost; the next call reconnects.
                            Ok(None) => {
                                let _ = notices.send(Notice::Resync);
                            }
                            Err(e) => {
                                warn!(error = %e, "lost the notice listener");
                                break;
                            }
                        }
                    }
                }
                Err(e) => warn!(error = %e, "cannot listen for notices"),
            },
            Err(e) => warn!(error = %e, "cannot connect the notice listener"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn encode_notice(notice: &Notice) -> String {
    let value = match notice {
        Notice::Work { runtime_id } => json!({"kind": "work", "runtime_id": runtime_id}),
        Notice::Cancel {
            runtime_id,
            execution_id,
            lease,
        } => {
            json!({"kind": "cancel", "runtime_id": runtime_id, "execution_id": execution_id, "lease": lease})
        }
        Notice::Revoke {
            runtime_id,
            execution_id,
            lease,
            reason,
        } => {
            json!({"kind": "revoke", "runtime_id": runtime_id, "execution_id": execution_id, "lease": lease, "reason": reason})
        }
        Notice::UserDeleted { user_id } => json!({"kind": "user_deleted", "user_id": user_id}),
        Notice::Resync => json!({"kind": "resync"}),
    };
    value.to_string()
}

fn decode_notice(payload: &str) -> Option<Notice> {
    let value: serde_json::Value = serde_json::from_str(payload).ok()?;
    let field = |name: &str| value.get(name).and_then(|v| v.as_str()).map(str::to_owned);
    Some(match value.get("kind")?.as_str()? {
        "work" => Notice::Work {
            runtime_id: field("runtime_id")?,
        },
        "cancel" => Notice::Cancel {
            runtime_id: field("runtime_id")?,
            execution_id: field("execution_id")?,
            lease: field("lease")?,
        },
        "revoke" => Notice::Revoke {
            runtime_id: field("runtime_id")?,
            execution_id: field("execution_id")?,
            lease: field("lease")?,
            reason: field("reason")?,
        },
        "user_deleted" => Notice::UserDeleted {
            user_id: field("user_id")?,
        },
        "resync" => Notice::Resync,
        _ => return None,
    })
}

/// An acknowledged write must survive a crash of the database server: commits
/// wait for the WAL to be flushed unless the operator turned that off, which this
/// session then turns back on.
async fn check_durability(conn: &mut sqlx::PgConnection) -> sqlx::Result<()> {
    let synchronous_commit: String = sqlx::query_scalar("SHOW synchronous_commit")
        .fetch_one(&mut *conn)
        .await?;
    if synchronous_commit.eq_ignore_ascii_case("off") {
        sqlx::query("SET synchronous_commit = on")
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Text a runtime sent, made storable: PostgreSQL refuses NUL in text.
fn storable(text: &str) -> Cow<'_, str> {
    if text.contains('\0') {
        Cow::Owned(text.replace('\0', "\u{FFFD}"))
    } else {
        Cow::Borrowed(text)
    }
}

/// How often an enqueue retries when the idempotency key it found vanished
/// between two statements (replaced by a concurrent request after it expired).
const IDEMPOTENCY_ATTEMPTS: usize = 5;

#[async_trait]
impl Store for PostgresStore {
    fn notices(&self) -> Option<broadcast::Receiver<Notice>> {
        Some(self.notices.subscribe())
    }

    async fn publish(&self, notice: &Notice) -> Result<()> {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(NOTICE_CHANNEL)
            .bind(encode_notice(notice))
            .execute(&self.pool)
            .await
            .map_err(other)?;
        Ok(())
    }

    async fn shared_secret(&self, candidate: &[u8]) -> Result<Option<Vec<u8>>> {
        sqlx::query(
            "INSERT INTO settings (name, value) VALUES ('jwt_secret', $1) ON CONFLICT DO NOTHING",
        )
        .bind(candidate)
        .execute(&self.pool)
        .await
        .map_err(other)?;
        let secret: Vec<u8> =
            sqlx::query_scalar("SELECT value FROM settings WHERE name = 'jwt_secret'")
                .fetch_one(&self.pool)
                .await
                .map_err(other)?;
        Ok(Some(secret))
    }

    /// The leader holds a session-level advisory lock on a connection of its own;
    /// if that session dies, PostgreSQL releases the lock and another server
    /// takes over at its next check.
    async fn lead(&self) -> Result<bool> {
        let mut leader = self.leader.lock().await;
        if let Some(session) = leader.as_mut() {
            if session.ping().await.is_ok() {
                return Ok(true);
            }
            *leader = None;
        }
        let mut session = self.pool.acquire().await.map_err(other)?;
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(LEADER_LOCK)
            .fetch_one(&mut *session)
            .await
            .map_err(other)?;
        if locked {
            // Out of the pool: the lock lives as long as this session.
            *leader = Some(session.detach());
        }
        Ok(locked)
    }

    async fn root_organization(&self) -> Result<Option<Organization>> {
        rows::fetch_optional(
            &self.pool,
            "SELECT * FROM organizations WHERE is_root ORDER BY created_at LIMIT 1",
            rows::NO_ARGS,
            organization_from,
        )
        .await
    }

    async fn get_organization(&self, id: &str) -> Result<Organization> {
        rows::fetch_optional(
            &self.pool,
            "SELECT * FROM organizations WHERE id = $1",
            &[id],
            organization_from,
        )
        .await?
        .ok_or(Error::NotFound)
    }

    async fn create_organization(&self, organization: &Organization, admin: &User) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(other)?;
        sqlx::query(
            "INSERT INTO organizations (id, name, is_root, created_at) VALUES ($1, $2, $3, $4)",
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
            .fetch_one(&self.pool)
            .await
            .map_err(other)?;
        Ok(count as u64)
    }

    async fn create_user(&self, user: &User) -> Result<()> {
        let mut conn = self.pool.acquire().await.map_err(other)?;
        insert_user(&mut conn, user).await
    }

    async fn find_user_by_username(&self, username: &str) -> Result<Option<User>> {
        rows::fetch_optional(
            &self.pool,
            "SELECT * FROM users WHERE username = $1",
            &[username],
            user_from,
        )
        .await
    }

    async fn get_user(&self, id: &str) -> Result<User> {
        rows::fetch_optional(
            &self.pool,
            "SELECT * FROM users WHERE id = $1",
            &[id],
            user_from,
        )
        .await?
        .ok_or(Error::NotFound)
    }

    async fn list_users(&self, organization_id: &str) -> Result<Vec<User>> {
        rows::fetch_all(
            &self.pool,
            "SELECT * FROM users WHERE organization_id = $1 ORDER BY created_at, id",
            &[organization_id],
            user_from,
        )
        .await
    }

    async fn delete_user(&self, organization_id: &str, id: &str) -> Result<()> {
        let done = sqlx::query("DELETE FROM users WHERE organization_id = $1 AND id = $2")
            .bind(organization_id)
            .bind(id)
            .execute(&self.pool)
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
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&runtime.id)
        .bind(&runtime.organization_id)
        .bind(&runtime.name)
        .bind(&new.key_hash)
        .bind(runtime.slots as i64)
        .bind(runtime.last_seen)
        .bind(runtime.created_at)
        .execute(&self.pool)
        .await
        .map_err(conflict_as("a runtime with this id or key"))?;
        Ok(())
    }

    async fn get_runtime(&self, organization_id: &str, id: &str) -> Result<Runtime> {
        rows::fetch_optional(
            &self.pool,
            "SELECT * FROM runtimes WHERE organization_id = $1 AND id = $2",
            &[organization_id, id],
            runtime_from,
        )
        .await?
        .ok_or(Error::NotFound)
    }

    async fn find_runtime_by_key_hash(&self, key_hash: &str) -> Result<Option<Runtime>> {
        rows::fetch_optional(
            &self.pool,
            "SELECT * FROM runtimes WHERE key_hash = $1",
            &[key_hash],
            runtime_from,
        )
        .await
    }

    async fn list_runtimes(&self, organization_id: &str) -> Result<Vec<Runtime>> {
        rows::fetch_all(
            &self.pool,
            "SELECT * FROM runtimes WHERE organization_id = $1 ORDER BY created_at, id",
            &[organization_id],
            runtime_from,
        )
        .await
    }

    async fn touch_runtime(&self, id: &str, seen: Millis) -> Result<()> {
        // Only when it moves forward: no dead row for a heartbeat that changes nothing.
        sqlx::query(
            "UPDATE runtimes SET last_seen = $1 \
             WHERE id = $2 AND (last_seen IS NULL OR last_seen < $1)",
        )
        .bind(seen)
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(other)?;
        Ok(())
    }

    async fn add_robot_version(&self, new: &NewRobotVersion) -> Result<(String, u32)> {
        let mut tx = self.pool.begin().await.map_err(other)?;
        // Creates the robot unless it exists; a concurrent upload of the same new
        // name waits here for the other transaction and then finds its robot.
        sqlx::query(
            "INSERT INTO robots (id, organization_id, name, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (organization_id, name) DO NOTHING",
        )
        .bind(&new.new_robot_id)
        .bind(&new.organization_id)
        .bind(&new.name)
        .bind(new.created_at)
        .execute(&mut *tx)
        .await
        .map_err(conflict_as("a robot with this id"))?;
        // The robot's row lock serialises the versions of one robot: the next
        // uploader reads the highest version only after this one committed.
        let robot_id: String = sqlx::query_scalar(
            "SELECT id FROM robots WHERE organization_id = $1 AND name = $2 FOR UPDATE",
        )
        .bind(&new.organization_id)
        .bind(&new.name)
        .fetch_one(&mut *tx)
        .await
        .map_err(other)?;
        let version: i64 = sqlx::query_scalar(
            "SELECT COALESCE(MAX(version), 0) + 1 FROM robot_versions WHERE robot_id = $1",
        )
        .bind(&robot_id)
        .fetch_one(&mut *tx)
        .await
        .map_err(other)?;
        sqlx::query(
            "INSERT INTO robot_versions \
             (robot_id, version, organization_id, sha256, manifest, size, package, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
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
        let row = sqlx::query("SELECT * FROM robots WHERE organization_id = $1 AND id = $2")
            .bind(organization_id)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(other)?
            .ok_or(Error::NotFound)?;
        let versions = sqlx::query(
            "SELECT version, sha256, manifest, size, created_at FROM robot_versions \
             WHERE organization_id = $1 AND robot_id = $2 ORDER BY version",
        )
        .bind(organization_id)
        .bind(id)
        .fetch_all(&self.pool)
        .await
        .map_err(other)?;
        let versions = versions
            .iter()
            .map(robot_version_from)
            .collect::<Result<_>>()?;
        robot_from(&row, versions)
    }

    async fn latest_robot_version(&self, organization_id: &str, id: &str) -> Result<RobotVersion> {
        rows::fetch_optional(
            &self.pool,
            "SELECT version, sha256, manifest, size, created_at FROM robot_versions \
             WHERE organization_id = $1 AND robot_id = $2 ORDER BY version DESC LIMIT 1",
            &[organization_id, id],
            robot_version_from,
        )
        .await?
        .ok_or(Error::NotFound)
    }

    async fn list_robots(&self, organization_id: &str) -> Result<Vec<Robot>> {
        let rows =
            sqlx::query("SELECT * FROM robots WHERE organization_id = $1 ORDER BY created_at, id")
                .bind(organization_id)
                .fetch_all(&self.pool)
                .await
                .map_err(other)?;
        let version_rows = sqlx::query(
            "SELECT robot_id, version, sha256, manifest, size, created_at FROM robot_versions \
             WHERE organization_id = $1 ORDER BY robot_id, version",
        )
        .bind(organization_id)
        .fetch_all(&self.pool)
        .await
        .map_err(other)?;
        let robots = rows
            .iter()
            .map(|row| robot_from(row, Vec::new()))
            .collect::<Result<_>>()?;
        let versions = version_rows
            .iter()
            .map(robot_id_and_version_from)
            .collect::<Result<_>>()?;
        Ok(robots_with_versions(robots, versions))
    }

    async fn robot_package(
        &self,
        organization_id: &str,
        robot_id: &str,
        version: u32,
    ) -> Result<Vec<u8>> {
        sqlx::query_scalar(
            "SELECT package FROM robot_versions \
             WHERE organization_id = $1 AND robot_id = $2 AND version = $3",
        )
        .bind(organization_id)
        .bind(robot_id)
        .bind(version as i64)
        .fetch_optional(&self.pool)
        .await
        .map_err(other)?
        .ok_or(Error::NotFound)
    }

    async fn enqueue(&self, new: &NewExecution, key: Option<&IdempotencyKey>) -> Result<Enqueued> {
        let Some(key) = key else {
            let mut tx = self.pool.begin().await.map_err(other)?;
            insert_execution(&mut tx, new).await?;
            tx.commit().await.map_err(other)?;
            return Ok(Enqueued::Created);
        };
        for _ in 0..IDEMPOTENCY_ATTEMPTS {
            let mut tx = self.pool.begin().await.map_err(other)?;
            // Takes the key: inserts it, or replaces it when it has expired. A
            // concurrent request with the same key waits here until this
            // transaction ends, then finds the key taken, so one execution is
            // queued whatever the timing.
            let taken = sqlx::query(
                "INSERT INTO idempotency_keys (user_id, key, fingerprint, execution_id, created_at) \
                 VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (user_id, key) DO UPDATE SET fingerprint = EXCLUDED.fingerprint, \
                 execution_id = EXCLUDED.execution_id, created_at = EXCLUDED.created_at \
                 WHERE idempotency_keys.created_at < $6",
            )
            .bind(&key.user_id)
            .bind(&key.key)
            .bind(&key.fingerprint)
            .bind(&new.id)
            .bind(new.init)
            .bind(key.expired_before)
            .execute(&mut *tx)
            .await
            .map_err(other)?;
            if taken.rows_affected() == 1 {
                insert_execution(&mut tx, new).await?;
                tx.commit().await.map_err(other)?;
                return Ok(Enqueued::Created);
            }
            // The key is live: ON CONFLICT locked its row, and this statement sees
            // the committed version.
            let earlier = sqlx::query(
                "SELECT fingerprint, execution_id FROM idempotency_keys \
                 WHERE user_id = $1 AND key = $2",
            )
            .bind(&key.user_id)
            .bind(&key.key)
            .fetch_optional(&mut *tx)
            .await
            .map_err(other)?;
            let Some(earlier) = earlier else {
                continue;
            };
            let fingerprint: String = earlier.try_get("fingerprint").map_err(other)?;
            return Ok(if fingerprint == key.fingerprint {
                Enqueued::Existing(earlier.try_get("execution_id").map_err(other)?)
            } else {
                Enqueued::KeyReused
            });
        }
        Err(Error::Other(anyhow::anyhow!(
            "the Idempotency-Key kept changing while queuing the run"
        )))
    }

    async fn get_execution(&self, organization_id: &str, id: &str) -> Result<Execution> {
        rows::fetch_optional(
            &self.pool,
            &format!(
                "SELECT {EXECUTION_COLUMNS} FROM executions WHERE organization_id = $1 AND id = $2"
            ),
            &[organization_id, id],
            execution_from,
        )
        .await?
        .ok_or(Error::NotFound)
    }

    async fn execution_logs(&self, organization_id: &str, id: &str) -> Result<Vec<LogLine>> {
        rows::fetch_all(
            &self.pool,
            "SELECT seq, time, level, message FROM execution_logs \
             WHERE organization_id = $1 AND execution_id = $2 ORDER BY seq",
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
        let mut query: QueryBuilder<Postgres> =
            rows::list_executions_query(organization_id, filter);
        let rows = query.build().fetch_all(&self.pool).await.map_err(other)?;
        rows.iter().map(execution_from).collect()
    }

    async fn queue_position(&self, execution: &Execution) -> Result<u64> {
        let ahead: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM executions \
             WHERE runtime_id = $1 AND status = 'PENDENT' AND seq < $2",
        )
        .bind(&execution.runtime_id)
        .bind(execution.seq)
        .fetch_one(&self.pool)
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
        let mut tx = self.pool.begin().await.map_err(other)?;
        // Locked: a claim skips it, a start or a report waits for this decision.
        let row = sqlx::query(
            "SELECT status, lease FROM executions WHERE organization_id = $1 AND id = $2 FOR UPDATE",
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
                    "UPDATE executions SET status = 'CANCELED', \"end\" = $1, canceled_by = $2, \
                     end_reason = 'canceled before it started', lease = NULL \
                     WHERE organization_id = $3 AND id = $4",
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
                    "UPDATE executions SET cancel_requested = TRUE, \
                     canceled_by = COALESCE(canceled_by, $1) \
                     WHERE organization_id = $2 AND id = $3",
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
        // SKIP LOCKED: a row another server is claiming (or canceling) right now is
        // passed over instead of waited for; once that claim commits, the row no
        // longer matches, so no execution is ever handed out twice.
        let row = sqlx::query(
            "WITH next AS ( \
                 SELECT seq FROM executions \
                 WHERE runtime_id = $2 AND status = 'PENDENT' AND lease IS NULL \
                 ORDER BY seq LIMIT 1 FOR UPDATE SKIP LOCKED \
             ), claimed AS ( \
                 UPDATE executions e SET lease = $1, attempt = e.attempt + 1 \
                 FROM next WHERE e.seq = next.seq \
                 RETURNING e.id, e.robot_id, e.robot_version, e.variables, e.last_event_seq \
             ) \
             SELECT c.id, c.robot_id, c.robot_version, c.variables, c.last_event_seq, \
                    v.sha256, v.manifest \
             FROM claimed c LEFT JOIN robot_versions v \
                 ON v.robot_id = c.robot_id AND v.version = c.robot_version",
        )
        .bind(lease)
        .bind(runtime_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(other)?;
        let Some(row) = row else { return Ok(None) };
        let robot_id: String = row.try_get("robot_id").map_err(other)?;
        let robot_version: i64 = row.try_get("robot_version").map_err(other)?;
        let sha256: Option<String> = row.try_get("sha256").map_err(other)?;
        let manifest: Option<String> = row.try_get("manifest").map_err(other)?;
        let (Some(sha256), Some(manifest)) = (sha256, manifest) else {
            return Err(Error::Other(anyhow::anyhow!(
                "version {robot_version} of robot {robot_id} is missing"
            )));
        };
        Ok(Some(Claimed {
            execution_id: row.try_get("id").map_err(other)?,
            lease: lease.to_owned(),
            robot_id,
            robot_version: robot_version as u32,
            sha256,
            manifest,
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
        // One statement: it locks the row and re-checks lease and status on the
        // newest version, so a cancel committed first wins.
        let done = sqlx::query(
            "UPDATE executions SET status = 'RUNNING', started = $1 \
             WHERE id = $2 AND runtime_id = $3 AND lease = $4 AND status = 'PENDENT'",
        )
        .bind(now)
        .bind(execution_id)
        .bind(runtime_id)
        .bind(lease)
        .execute(&self.pool)
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
        let mut tx = self.pool.begin().await.map_err(other)?;
        // Locked, so that two copies of a batch (a resend racing the original)
        // are applied once, and a lease ended meanwhile is seen as ended.
        let row = sqlx::query(
            "SELECT organization_id, status, progress, return_value, last_event_seq, init \
             FROM executions WHERE id = $1 AND runtime_id = $2 AND lease = $3 FOR UPDATE",
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
        let before = event_target_from(&row)?;
        let acked = before.last_event_seq;
        let Some(applied) = apply_events(before, events) else {
            // Nothing new: acknowledge without writing.
            return Ok(EventsOutcome::Stored {
                acked,
                ended: false,
            });
        };
        if !applied.lines.is_empty() {
            let (mut log_seqs, mut log_times, mut log_levels, mut log_messages) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for (event, level, message) in &applied.lines {
                log_seqs.push(event.seq as i64);
                log_times.push(event.time);
                log_levels.push(storable(level).into_owned());
                log_messages.push(storable(message).into_owned());
            }
            sqlx::query(
                "INSERT INTO execution_logs (execution_id, seq, organization_id, time, level, message) \
                 SELECT $1, line.seq, $2, line.time, line.level, line.message \
                 FROM UNNEST($3::BIGINT[], $4::BIGINT[], $5::TEXT[], $6::TEXT[]) \
                     AS line(seq, time, level, message)",
            )
            .bind(execution_id)
            .bind(&organization_id)
            .bind(&log_seqs)
            .bind(&log_times)
            .bind(&log_levels)
            .bind(&log_messages)
            .execute(&mut *tx)
            .await
            .map_err(other)?;
        }
        let target = &applied.target;
        let (status, progress, return_value, last) = (
            target.status,
            target.progress,
            &target.return_value,
            target.last_event_seq,
        );
        let ending = applied
            .ending
            .map(|(end, exit_code, reason)| (end, exit_code, storable(reason).into_owned()));
        let ended = ending.is_some();
        match ending {
            Some((end, exit_code, reason)) => sqlx::query(
                "UPDATE executions SET status = $1, progress = $2, return_value = $3, \
                 last_event_seq = $4, \"end\" = $5, exit_code = $6, end_reason = $7 WHERE id = $8",
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
                "UPDATE executions SET progress = $1, return_value = $2, last_event_seq = $3 \
                 WHERE id = $4",
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
        rows::fetch_all(
            &self.pool,
            "SELECT id, lease, runtime_id, status, cancel_requested FROM executions \
             WHERE runtime_id = $1 AND status IN ('PENDENT', 'RUNNING') AND lease IS NOT NULL \
             ORDER BY seq",
            &[runtime_id],
            lease_from,
        )
        .await
    }

    async fn lease_status(
        &self,
        execution_id: &str,
        lease: &str,
    ) -> Result<Option<ExecutionStatus>> {
        rows::fetch_optional(
            &self.pool,
            "SELECT status FROM executions WHERE id = $1 AND lease = $2",
            &[execution_id, lease],
            status_of,
        )
        .await
    }

    async fn leases_seen_before(&self, seen_before: Millis) -> Result<Vec<Lease>> {
        rows::fetch_all(
            &self.pool,
            "SELECT e.id, e.lease, e.runtime_id, e.status, e.cancel_requested FROM executions e \
             JOIN runtimes r ON r.id = e.runtime_id \
             WHERE e.status IN ('PENDENT', 'RUNNING') AND e.lease IS NOT NULL \
             AND COALESCE(r.last_seen, 0) < $1 ORDER BY e.seq",
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
        let mut tx = self.pool.begin().await.map_err(other)?;
        // Locked: two servers ending the same lease (or a report racing the end)
        // are ordered, and the second one finds it Stale.
        let row = sqlx::query(&format!(
            "SELECT {LIVE_LEASE_COLUMNS} FROM executions \
             WHERE id = $1 AND lease = $2 AND status IN ('PENDENT', 'RUNNING') FOR UPDATE"
        ))
        .bind(execution_id)
        .bind(lease)
        .fetch_optional(&mut *tx)
        .await
        .map_err(other)?;
        let Some(row) = row else {
            return Ok(LostOutcome::Stale);
        };
        let live = live_lease_from(&row)?;
        let end = plan_lease_end(&live, started, &storable(reason), now);
        sqlx::query(
            "UPDATE executions SET status = $1, lease = NULL, \"end\" = $2, end_reason = $3, \
             started = CASE WHEN $1 = 'PENDENT' THEN NULL ELSE started END, \
             attempt = $4, progress = $5, last_event_seq = $6 WHERE id = $7",
        )
        .bind(end.status.as_str())
        .bind(end.end)
        .bind(&end.end_reason)
        .bind(end.attempt)
        .bind(end.progress)
        .bind(end.last_event_seq)
        .bind(execution_id)
        .execute(&mut *tx)
        .await
        .map_err(other)?;
        if let Some((level, message)) = &end.log {
            sqlx::query(
                "INSERT INTO execution_logs (execution_id, seq, organization_id, time, level, message) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(execution_id)
            .bind(end.last_event_seq)
            .bind(&live.organization_id)
            .bind(now)
            .bind(level)
            .bind(message)
            .execute(&mut *tx)
            .await
            .map_err(other)?;
        }
        tx.commit().await.map_err(other)?;
        Ok(end.outcome)
    }
}

async fn insert_user(conn: &mut sqlx::PgConnection, user: &User) -> Result<()> {
    sqlx::query(
        "INSERT INTO users (id, organization_id, username, password_hash, role, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&user.id)
    .bind(&user.organization_id)
    .bind(&user.username)
    .bind(&user.password_hash)
    .bind(user.role.as_str())
    .bind(user.created_at)
    .execute(conn)
    .await
    .map_err(conflict_as("a user with this username"))?;
    Ok(())
}

async fn insert_execution(conn: &mut sqlx::PgConnection, new: &NewExecution) -> Result<()> {
    sqlx::query(
        "INSERT INTO executions (id, organization_id, runtime_id, robot_id, robot_version, \
         variables, status, progress, init, submitted_by, max_attempts) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $8, $9, $10)",
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
    .execute(conn)
    .await
    .map_err(conflict_as("an execution with this id"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_never_show_the_password() {
        assert_eq!(
            redact("postgres://regente:s3cret@db.example:5432/regente?sslmode=require"),
            "\"postgres://regente:***@db.example:5432/regente?sslmode=require\""
        );
        assert_eq!(redact("postgresql://u@h/db"), "\"postgresql://u@h/db\"");
        assert_eq!(redact("postgres://h"), "\"postgres://h\"");
        assert_eq!(redact("nonsense"), "\"nonsense\"");
    }

    #[test]
    fn nul_characters_become_replacement_characters() {
        assert_eq!(storable("a\0b\0"), "a\u{FFFD}b\u{FFFD}");
        assert!(matches!(storable("plain"), Cow::Borrowed("plain")));
    }
}
