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

//!
//! - `mod.rs` (here): the pool, the migrations at open, durability, and reading
//!   rows through the shared [`RecordRow`].
//! - One module per aggregate with its queries: `users`, `runtimes`, `robots`,
//!   `executions`, `leases`, `cluster` (notices, the shared secret, the leader),
//!   `events` (the stream, and the helpers every change writes its events with),
//!   `schedules`.
//! - `group`: what many requests do at once (run requests' look-ups, their
//!   inserts without an idempotency key, notices), done in groups: one
//!   statement or transaction for everything waiting.

mod api_keys;
mod audit;
mod cluster;
mod credentials;
mod dashboard;
mod events;
mod executions;
mod flows;
mod group;
mod leases;
mod robots;
mod runtimes;
mod schedules;
mod users;
mod webhooks;

use std::borrow::Cow;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context as _;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{Encode, Postgres, Row, Type};
use tokio::sync::broadcast;

use crate::rows::RecordRow;
use crate::{redact, Error, Notice, Result};
use group::Grouped;

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
    /// Run requests' look-ups of their robot and runtime, in groups.
    run_targets: Grouped<robots::RunTargets>,
    /// Run requests without an idempotency key, written in groups.
    new_runs: Grouped<executions::NewRuns>,
    /// This server's notices to the others, sent in groups.
    notices_out: Grouped<cluster::OutgoingNotices>,
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

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
        let listener = tokio::spawn(cluster::relay_notices(pool.clone(), notices.clone()));
        Ok(PostgresStore {
            run_targets: Grouped::start(robots::RunTargets(pool.clone())),
            new_runs: Grouped::start(executions::NewRuns(pool.clone())),
            notices_out: Grouped::start(cluster::OutgoingNotices(pool.clone())),
            pool,
            notices,
            listener,
            leader: tokio::sync::Mutex::new(None),
        })
    }
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

/// A `FROM` item that has the statement's own transaction commit without
/// waiting for its WAL to reach the disk, for a write made in one statement
/// outside a transaction (the setting is local to the transaction, so it is
/// made in the statement itself). The same rule as [`unsynced_commit`].
const UNSYNCED: &str = "(SELECT set_config('synchronous_commit', 'off', true)) AS unsynced";

/// Has the transaction on `conn` commit without waiting for its WAL to reach
/// the disk (PostgreSQL's asynchronous commit). Only for a write whose loss
/// undoes nothing anyone relied on: a later synced commit syncs it too, since
/// the WAL is flushed in order.
async fn unsynced_commit(conn: &mut sqlx::PgConnection) -> Result<()> {
    sqlx::query("SET LOCAL synchronous_commit = off")
        .execute(conn)
        .await
        .map(drop)
        .map_err(other)
}

/// Text a runtime sent, made storable: PostgreSQL refuses NUL in text.
fn storable(text: &str) -> Cow<'_, str> {
    if text.contains('\0') {
        Cow::Owned(text.replace('\0', "\u{FFFD}"))
    } else {
        Cow::Borrowed(text)
    }
}

fn other(error: sqlx::Error) -> Error {
    Error::Other(error.into())
}

/// Maps a unique-constraint violation to [`Error::Conflict`] naming `what`.
fn conflict_as(what: &'static str) -> impl Fn(sqlx::Error) -> Error {
    move |error| match &error {
        sqlx::Error::Database(db) if db.is_unique_violation() => Error::Conflict(what),
        _ => other(error),
    }
}

impl RecordRow for PgRow {
    fn text(&self, column: &str) -> Result<String> {
        self.try_get(column).map_err(other)
    }
    fn text_opt(&self, column: &str) -> Result<Option<String>> {
        self.try_get(column).map_err(other)
    }
    fn int(&self, column: &str) -> Result<i64> {
        self.try_get(column).map_err(other)
    }
    fn int_opt(&self, column: &str) -> Result<Option<i64>> {
        self.try_get(column).map_err(other)
    }
    fn int32_opt(&self, column: &str) -> Result<Option<i32>> {
        self.try_get(column).map_err(other)
    }
    fn real(&self, column: &str) -> Result<f64> {
        self.try_get(column).map_err(other)
    }
    fn flag(&self, column: &str) -> Result<bool> {
        self.try_get(column).map_err(other)
    }
    fn bytes(&self, column: &str) -> Result<Vec<u8>> {
        self.try_get(column).map_err(other)
    }
}

/// `args` of a statement that takes none.
const NO_ARGS: &[&str] = &[];

/// A statement with (some of) its arguments bound.
type PgQuery<'q> = sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>;

/// `sql` with `args` bound in order.
fn bound<'a, A>(sql: &'a str, args: &[A]) -> PgQuery<'a>
where
    A: Copy + 'a + Encode<'a, Postgres> + Type<Postgres>,
{
    args.iter()
        .fold(sqlx::query(sql), |query, arg| query.bind(*arg))
}

/// The records `sql` selects with `args` bound in order, each read by `from`.
async fn fetch_all<'a, A, T>(
    pool: &PgPool,
    sql: &'a str,
    args: &[A],
    from: fn(&PgRow) -> Result<T>,
) -> Result<Vec<T>>
where
    A: Copy + 'a + Encode<'a, Postgres> + Type<Postgres>,
{
    let rows = bound(sql, args).fetch_all(pool).await.map_err(other)?;
    rows.iter().map(from).collect()
}

/// The record `sql` selects with `args` bound in order, if any, read by `from`.
async fn fetch_optional<'a, A, T>(
    pool: &PgPool,
    sql: &'a str,
    args: &[A],
    from: fn(&PgRow) -> Result<T>,
) -> Result<Option<T>>
where
    A: Copy + 'a + Encode<'a, Postgres> + Type<Postgres>,
{
    let row = bound(sql, args).fetch_optional(pool).await.map_err(other)?;
    row.as_ref().map(from).transpose()
}

/// Runs a change of one row with `args` bound in order;
/// [`Error::NotFound`] when it changed none.
async fn change_one<'a, A>(pool: &PgPool, sql: &'a str, args: &[A]) -> Result<()>
where
    A: Copy + 'a + Encode<'a, Postgres> + Type<Postgres>,
{
    let done = bound(sql, args).execute(pool).await.map_err(other)?;
    if done.rows_affected() == 0 {
        return Err(Error::NotFound);
    }
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
