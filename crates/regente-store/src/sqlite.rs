//! The embedded store: one SQLite file in WAL mode with `synchronous=FULL`, so a
//! committed transaction survives a process crash and a power loss.
//!
//! SQLite is driven through rusqlite, synchronously, without a thread hop per
//! statement:
//! - **Writes** go to one writer thread that owns the only writing connection
//!   (SQLite has one writer at a time anyway). It takes every write waiting for it
//!   into one transaction, each under its own savepoint, and commits them with
//!   one fsync (group commit). Nobody is answered before the commit holding their
//!   write has returned, so an answer means the write is on disk.
//! - **Reads** use a small pool of read-only connections, which WAL lets run
//!   beside the writer. A read bounded to a few rows runs on the calling task's
//!   thread: it costs microseconds, less than handing it to another thread. A read
//!   that can be long (lists, packages, a long log) runs on a blocking thread.
//!
//! The schema is migrated by sqlx's migrator at open, as it always has been, so
//! data directories of every version upgrade in place.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_trait::async_trait;
use regente_core::ExecutionStatus;
use rusqlite::types::Value as SqlValue;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Params};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use tokio::sync::oneshot;

use crate::rows::{
    apply_events, event_target_from, execution_conditions, execution_from, lease_from,
    live_lease_from, log_line_from, organization_from, plan_lease_end, robot_from,
    robot_id_and_version_from, robot_version_from, robots_with_versions, runtime_from, status_of,
    user_from, FilterValue, RecordRow, EXECUTION_COLUMNS, LIVE_LEASE_COLUMNS,
};
use crate::{
    CancelOutcome, Claimed, Enqueued, Error, EventRecord, EventsOutcome, Execution,
    ExecutionFilter, IdempotencyKey, Lease, LogLine, LostOutcome, Millis, NewExecution,
    NewRobotVersion, NewRuntime, Organization, Result, Robot, RobotVersion, Runtime, Store, User,
};

/// Most writes committed by one transaction.
const MAX_WRITE_BATCH: usize = 1024;
/// Idle read connections kept open; more are opened when needed.
const MAX_IDLE_READERS: usize = 8;
/// Log lines read on the caller's thread; a longer log continues on a blocking
/// thread.
const INLINE_LOG_LINES: usize = 1000;
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);
/// Prepared statements kept per connection.
const STATEMENT_CACHE: usize = 64;
/// How often the WAL is copied back into the database while writes go on.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(200);
/// The WAL's size at which the writer checkpoints by itself. Under steady writes
/// the checkpoint thread copies most frames but can never find the WAL fully
/// copied, so the WAL would only grow. The writer's own checkpoint, between two
/// of its transactions and after idle readers let go of their snapshots,
/// finishes the copy (little is left by then), and the next transaction starts
/// the WAL over. It also bounds what a start after a crash has to read back.
/// (SQLite's own automatic checkpoint is off: it would not release the readers.)
const WRITER_CHECKPOINT_BYTES: u64 = 8 << 20;
/// Tries of a WAL restart before it waits for a later look.
const RESTART_TRIES: usize = 64;
/// Commits between two looks at the WAL's size by the writer.
const WAL_SIZE_CHECK_EVERY: u64 = 32;
/// The WAL file is cut back to this size when it starts over.
const WAL_SIZE_LIMIT: i64 = 16 << 20;
/// How long the checkpoint at close waits for readers to finish.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

pub struct SqliteStore {
    writer: mpsc::Sender<Box<dyn WriteJob>>,
    readers: Arc<Readers>,
    /// Never sent on: dropping it stops the checkpointer.
    _checkpointer: mpsc::Sender<()>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `url` and applies the migrations.
    pub async fn open(url: &str) -> anyhow::Result<SqliteStore> {
        let options = SqliteConnectOptions::from_str(url)
            .with_context(|| format!("invalid SQLite URL {url:?}"))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let path = options.get_filename().to_owned();
        // A pool of one connection, used for the migrations only and closed.
        let migrator = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .with_context(|| format!("cannot open the database {url:?}"))?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&migrator)
            .await
            .context("cannot apply the database migrations")?;
        migrator.close().await;

        let writer = open_connection(&path, false)
            .with_context(|| format!("cannot open the database {url:?} for writing"))?;
        writer
            .pragma_update(None, "wal_autocheckpoint", 0)
            .and_then(|()| writer.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT))
            .context("cannot set the WAL's limits")?;
        let commits = Arc::new(AtomicU64::new(0));
        let readers = Arc::new(Readers {
            path,
            idle: Mutex::new(Vec::new()),
            commits: commits.clone(),
        });
        // Fail at open, not at the first read, when reading is impossible.
        readers
            .with(|_| Ok(()))
            .map_err(|e| anyhow::anyhow!("cannot open the database {url:?} for reading: {e}"))?;
        let checkpoints = open_connection(&readers.path, false)
            .with_context(|| format!("cannot open the database {url:?} for checkpoints"))?;
        let (jobs, queue) = mpsc::channel();
        let writer_readers = readers.clone();
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || write_loop(writer, queue, &writer_readers))
            .context("cannot start the SQLite writer thread")?;
        let (checkpointer, stop) = mpsc::channel();
        let reading = readers.clone();
        std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || checkpoint_loop(checkpoints, &reading, stop))
            .context("cannot start the SQLite checkpoint thread")?;
        Ok(SqliteStore {
            writer: jobs,
            readers,
            _checkpointer: checkpointer,
        })
    }

    /// Runs `work` in the writer's next transaction; answers once it is committed
    /// and synced to disk.
    async fn write<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        self.send_write(work, Durability::Synced).await
    }

    async fn send_write<T, F>(&self, work: F, durability: Durability) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        self.writer
            .send(Box::new(PendingWrite {
                work: Some(work),
                outcome: None,
                reply,
                durability,
            }))
            .map_err(|_| store_closed())?;
        answer.await.map_err(|_| store_closed())?
    }

    /// Runs a read that may be long on a blocking thread.
    async fn read_blocking<T, F>(&self, read: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let readers = self.readers.clone();
        tokio::task::spawn_blocking(move || readers.with(read))
            .await
            .map_err(|e| Error::Other(anyhow::anyhow!("a database read failed: {e}")))?
    }
}

fn store_closed() -> Error {
    Error::Other(anyhow::anyhow!("the store is closed"))
}

fn open_connection(path: &Path, read_only: bool) -> anyhow::Result<Connection> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
    } | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    conn.execute_batch("PRAGMA foreign_keys = ON; PRAGMA synchronous = FULL;")?;
    check_durability(&conn)?;
    Ok(conn)
}

/// The pragmas are per connection: check each one, so that no connection ever
/// acknowledges a write that is not yet durable.
fn check_durability(conn: &Connection) -> anyhow::Result<()> {
    let synchronous: i64 = conn.query_row("PRAGMA synchronous", [], |row| row.get(0))?;
    let journal_mode: String = conn.query_row("PRAGMA journal_mode", [], |row| row.get(0))?;
    // 2 is FULL, 3 is EXTRA: both sync the WAL on every commit.
    if synchronous < 2 || !journal_mode.eq_ignore_ascii_case("wal") {
        anyhow::bail!(
            "SQLite connection is not durable: synchronous={synchronous}, journal_mode={journal_mode}"
        );
    }
    Ok(())
}

// --- The writer -----------------------------------------------------------

/// What a commit must have reached before its writes are answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Durability {
    /// The disk: survives a power loss (`synchronous=FULL`).
    Synced,
    /// The operating system: survives a crash of this process but not a power
    /// loss (`synchronous=NORMAL` in WAL mode). Only for a write whose loss undoes
    /// nothing anyone relied on: the next synced commit syncs it too, since the
    /// WAL is written in order.
    Written,
}

/// A write waiting for the writer thread.
trait WriteJob: Send {
    fn durability(&self) -> Durability;
    /// Runs the write; false when it failed and its changes must be undone.
    fn run(&mut self, conn: &Connection) -> bool;
    /// Answers the caller once the transaction has ended: `commit_error` is
    /// `None` when it committed.
    fn answer(self: Box<Self>, commit_error: Option<&str>);
}

struct PendingWrite<T, F> {
    work: Option<F>,
    outcome: Option<Result<T>>,
    reply: oneshot::Sender<Result<T>>,
    durability: Durability,
}

impl<T, F> WriteJob for PendingWrite<T, F>
where
    T: Send,
    F: FnOnce(&Connection) -> Result<T> + Send,
{
    fn durability(&self) -> Durability {
        self.durability
    }

    fn run(&mut self, conn: &Connection) -> bool {
        let Some(work) = self.work.take() else {
            return false;
        };
        // A bug in one write must not stop the writer for everybody.
        let outcome = catch_unwind(AssertUnwindSafe(|| work(conn))).unwrap_or_else(|_| {
            Err(Error::Other(anyhow::anyhow!(
                "the store failed while writing"
            )))
        });
        let succeeded = outcome.is_ok();
        self.outcome = Some(outcome);
        succeeded
    }

    fn answer(self: Box<Self>, commit_error: Option<&str>) {
        let outcome = match (commit_error, self.outcome) {
            (_, Some(Err(e))) => Err(e),
            (None, Some(outcome)) => outcome,
            (Some(why), _) => Err(Error::Other(anyhow::anyhow!(
                "the write was not committed: {why}"
            ))),
            (None, None) => Err(Error::Other(anyhow::anyhow!("the write never ran"))),
        };
        let _ = self.reply.send(outcome);
    }
}

/// Group commit: the writes that queued while one transaction committed go into
/// the next one, each under its own savepoint so that one failing undoes only
/// itself, and one fsync acknowledges them all.
fn write_loop(conn: Connection, queue: mpsc::Receiver<Box<dyn WriteJob>>, readers: &Readers) {
    let commits = &readers.commits;
    let wal = wal_path(&readers.path);
    let mut batch: Vec<Box<dyn WriteJob>> = Vec::with_capacity(MAX_WRITE_BATCH);
    while let Ok(job) = queue.recv() {
        batch.push(job);
        while batch.len() < MAX_WRITE_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let commit_error = commit_batch(&conn, &mut batch).err().map(|e| e.to_string());
        if let Some(why) = &commit_error {
            tracing::error!(error = %why, writes = batch.len(), "a database transaction failed");
        }
        // Counted before anyone is answered: a reader that sees the old count may
        // only miss writes whose callers are still waiting.
        let count = commits.fetch_add(1, Ordering::Release) + 1;
        for job in batch.drain(..) {
            job.answer(commit_error.as_deref());
        }
        let wal_size = || std::fs::metadata(&wal).map_or(0, |m| m.len());
        if count.is_multiple_of(WAL_SIZE_CHECK_EVERY) && wal_size() > WRITER_CHECKPOINT_BYTES {
            if let Err(e) = restart_wal(&conn, readers) {
                tracing::warn!(error = %e, "cannot checkpoint the database");
            }
        }
    }
}

fn commit_batch(conn: &Connection, batch: &mut [Box<dyn WriteJob>]) -> rusqlite::Result<()> {
    if !conn.is_autocommit() {
        // A rollback after an earlier failure did not happen: every later BEGIN
        // would fail. Try it again first.
        tracing::warn!("the writer's connection was left in a transaction; rolling it back");
        conn.execute_batch("ROLLBACK")?;
    }
    // A batch is synced when any of its writes needs it. The setting holds for
    // the connection: set it before each transaction.
    let synced = batch
        .iter()
        .any(|job| job.durability() == Durability::Synced);
    conn.prepare_cached(if synced {
        "PRAGMA synchronous = FULL"
    } else {
        "PRAGMA synchronous = NORMAL"
    })?
    .execute([])?;
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let mut run_all = || -> rusqlite::Result<()> {
        for job in batch.iter_mut() {
            conn.prepare_cached("SAVEPOINT write")?.execute([])?;
            if !job.run(conn) {
                conn.prepare_cached("ROLLBACK TO SAVEPOINT write")?
                    .execute([])?;
            }
            conn.prepare_cached("RELEASE SAVEPOINT write")?
                .execute([])?;
        }
        conn.prepare_cached("COMMIT")?.execute([])?;
        Ok(())
    };
    let result = run_all();
    if result.is_err() && !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    result
}

/// Copies the whole WAL back and has the next write start it over (a RESTART
/// checkpoint), from the writer's thread between two transactions (no commit can
/// slip in). Readers keep snapshots, which hold a restart back: counting this as
/// a commit makes each reader let go of its snapshot when next used or returned,
/// and idle ones are released here. Tries do not sleep (SQLite's busy handler
/// would, for milliseconds, with every write waiting): they yield between, and
/// a reader still on an old snapshot after them only defers the restart.
fn restart_wal(conn: &Connection, readers: &Readers) -> rusqlite::Result<()> {
    readers.commits.fetch_add(1, Ordering::Release);
    conn.busy_timeout(Duration::ZERO)?;
    let mut restarted = Ok(false);
    for _ in 0..RESTART_TRIES {
        readers.release_idle_snapshots();
        restarted = conn
            .query_row("PRAGMA wal_checkpoint(RESTART)", [], |row| {
                row.get::<_, i64>(0)
            })
            .map(|busy| busy == 0);
        if !matches!(restarted, Ok(false)) {
            break;
        }
        std::thread::yield_now();
    }
    conn.busy_timeout(BUSY_TIMEOUT)?;
    if !restarted? {
        tracing::debug!("the WAL could not start over yet: readers still use it");
    }
    Ok(())
}

/// The WAL file of the database at `path`.
fn wal_path(path: &Path) -> PathBuf {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    PathBuf::from(wal)
}

/// Copies the WAL back into the database file beside the writer, so that the
/// writer's commits only append to the WAL and sync it. (SQLite's automatic
/// checkpoint would run inside a commit, on the writer's thread.) PASSIVE never
/// waits for the writer or readers; it copies what it can.
///
/// Idle readers keep their snapshot (see [`Readers`]), which would keep the WAL
/// from being copied past it: they let go of it first.
fn checkpoint_loop(conn: Connection, readers: &Readers, stop: mpsc::Receiver<()>) {
    let mut checkpointed = 0;
    while let Err(mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(CHECKPOINT_EVERY) {
        let committed = readers.commits.load(Ordering::Acquire);
        if committed == checkpointed {
            continue;
        }
        checkpointed = committed;
        readers.release_idle_snapshots();
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!(error = %e, "cannot checkpoint the database");
        }
    }
}

// --- Readers ------------------------------------------------------------

/// Read-only connections. Each read runs in a read transaction (a snapshot) that
/// the connection keeps while no write commits, so that reads in between skip
/// SQLite's per-transaction locking of the WAL index (two `fcntl` calls and
/// more, most of the cost of a point read). A commit ends every kept snapshot at
/// its next use, and so does age, in case another process writes the file.
struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Reader>>,
    /// Commits by the writer so far.
    commits: Arc<AtomicU64>,
}

struct Reader {
    conn: Connection,
    /// When the connection holds a snapshot: the commit count before it began,
    /// and when.
    snapshot: Option<(u64, Instant)>,
}

impl Reader {
    fn end_snapshot(&mut self) {
        if self.snapshot.take().is_some() && !self.conn.is_autocommit() {
            let _ = self.conn.execute_batch("COMMIT");
        }
    }
}

/// The longest a snapshot is kept without a commit in between.
const SNAPSHOT_MAX_AGE: Duration = Duration::from_millis(10);

impl Readers {
    fn with<T>(&self, read: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let idle = self.lock().pop();
        let mut reader = match idle {
            Some(reader) => reader,
            None => Reader {
                conn: open_connection(&self.path, true).map_err(Error::Other)?,
                snapshot: None,
            },
        };
        let commits = self.commits.load(Ordering::Acquire);
        let current = reader.snapshot.is_some_and(|(counted, began)| {
            counted == commits && began.elapsed() < SNAPSHOT_MAX_AGE && !reader.conn.is_autocommit()
        });
        if !current {
            reader.end_snapshot();
            // The snapshot itself begins at the first read, after the count.
            if reader.conn.execute_batch("BEGIN").is_ok() {
                reader.snapshot = Some((commits, Instant::now()));
            }
        }
        let result = read(&reader.conn);
        if result.is_err() || self.commits.load(Ordering::Acquire) != commits {
            // After an error the transaction may be over; after a commit the
            // snapshot is stale, and an idle one would hold checkpoints back.
            reader.end_snapshot();
        }
        let mut idle = self.lock();
        if idle.len() < MAX_IDLE_READERS {
            idle.push(reader);
        }
        result
    }

    fn release_idle_snapshots(&self) {
        for reader in self.lock().iter_mut() {
            reader.end_snapshot();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Reader>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }
}

// --- Rows -----------------------------------------------------------------

/// A rusqlite row read through the backends' shared [`RecordRow`].
struct LiteRow<'r, 's>(&'r rusqlite::Row<'s>);

impl RecordRow for LiteRow<'_, '_> {
    fn text(&self, column: &str) -> Result<String> {
        self.0.get(column).map_err(other)
    }
    fn text_opt(&self, column: &str) -> Result<Option<String>> {
        self.0.get(column).map_err(other)
    }
    fn int(&self, column: &str) -> Result<i64> {
        self.0.get(column).map_err(other)
    }
    fn int_opt(&self, column: &str) -> Result<Option<i64>> {
        self.0.get(column).map_err(other)
    }
    fn int32_opt(&self, column: &str) -> Result<Option<i32>> {
        self.0.get(column).map_err(other)
    }
    fn real(&self, column: &str) -> Result<f64> {
        self.0.get(column).map_err(other)
    }
    fn flag(&self, column: &str) -> Result<bool> {
        self.0.get(column).map_err(other)
    }
}

fn other(error: rusqlite::Error) -> Error {
    Error::Other(error.into())
}

/// Maps a unique-constraint violation to [`Error::Conflict`] naming `what`.
fn conflict_as(what: &'static str) -> impl Fn(rusqlite::Error) -> Error {
    move |error| match &error {
        rusqlite::Error::SqliteFailure(failure, _)
            if failure.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                || failure.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY =>
        {
            Error::Conflict(what)
        }
        _ => other(error),
    }
}

/// The first record `sql` selects, read by `from`.
fn one<T>(
    conn: &Connection,
    sql: &str,
    params: impl Params,
    from: impl Fn(&LiteRow) -> Result<T>,
) -> Result<Option<T>> {
    let mut statement = conn.prepare_cached(sql).map_err(other)?;
    let mut rows = statement.query(params).map_err(other)?;
    match rows.next().map_err(other)? {
        Some(row) => Ok(Some(from(&LiteRow(row))?)),
        None => Ok(None),
    }
}

/// Every record `sql` selects, read by `from`.
fn all<T>(
    conn: &Connection,
    sql: &str,
    params: impl Params,
    from: impl Fn(&LiteRow) -> Result<T>,
) -> Result<Vec<T>> {
    let mut statement = conn.prepare_cached(sql).map_err(other)?;
    let mut rows = statement.query(params).map_err(other)?;
    let mut records = Vec::new();
    while let Some(row) = rows.next().map_err(other)? {
        records.push(from(&LiteRow(row))?);
    }
    Ok(records)
}

/// Inserts a row; a duplicate is an [`Error::Conflict`] naming `what`.
fn insert(conn: &Connection, sql: &str, params: impl Params, what: &'static str) -> Result<()> {
    conn.prepare_cached(sql)
        .and_then(|mut statement| statement.execute(params))
        .map(drop)
        .map_err(conflict_as(what))
}

/// Runs a change; the number of rows it changed.
fn change(conn: &Connection, sql: &str, params: impl Params) -> Result<usize> {
    conn.prepare_cached(sql)
        .map_err(other)?
        .execute(params)
        .map_err(other)
}

const SELECT_LOGS: &str = "SELECT seq, time, level, message FROM execution_logs \
     WHERE organization_id = ?1 AND execution_id = ?2 AND seq > ?3 ORDER BY seq LIMIT ?4";

const INSERT_LOG: &str = "INSERT INTO execution_logs \
     (execution_id, seq, organization_id, time, level, message) VALUES (?1, ?2, ?3, ?4, ?5, ?6)";

fn select_logs(
    conn: &Connection,
    organization_id: &str,
    id: &str,
    after_seq: i64,
    limit: i64,
) -> Result<Vec<LogLine>> {
    all(
        conn,
        SELECT_LOGS,
        params![organization_id, id, after_seq, limit],
        |row| log_line_from(row),
    )
}

/// Log lines per multi-row INSERT: 6 values each, well under SQLite's 32,766.
const LOG_LINES_PER_INSERT: usize = 256;

/// Inserts log lines: full chunks by one statement each (a long log's lines come
/// a thousand to a report), the rest one by one (a report's few lines), both
/// with statements prepared once.
fn insert_log_lines(
    conn: &Connection,
    execution_id: &str,
    organization_id: &str,
    lines: &[(&EventRecord, &str, &str)],
) -> Result<()> {
    let mut chunks = lines.chunks_exact(LOG_LINES_PER_INSERT);
    if chunks.len() > 0 {
        let rows = vec!["(?, ?, ?, ?, ?, ?)"; LOG_LINES_PER_INSERT].join(", ");
        let sql = format!(
            "INSERT INTO execution_logs \
             (execution_id, seq, organization_id, time, level, message) VALUES {rows}"
        );
        let mut insert = conn.prepare_cached(&sql).map_err(other)?;
        for chunk in chunks.by_ref() {
            let seqs: Vec<i64> = chunk.iter().map(|(event, ..)| event.seq as i64).collect();
            let mut values: Vec<&dyn rusqlite::ToSql> = Vec::with_capacity(chunk.len() * 6);
            for ((event, level, message), seq) in chunk.iter().zip(&seqs) {
                values.extend([
                    &execution_id as &dyn rusqlite::ToSql,
                    seq,
                    &organization_id,
                    &event.time,
                    level,
                    message,
                ]);
            }
            insert.execute(values.as_slice()).map_err(other)?;
        }
    }
    let mut insert = conn.prepare_cached(INSERT_LOG).map_err(other)?;
    for (event, level, message) in chunks.remainder() {
        insert
            .execute(params![
                execution_id,
                event.seq as i64,
                organization_id,
                event.time,
                level,
                message
            ])
            .map_err(other)?;
    }
    Ok(())
}

fn insert_user(conn: &Connection, user: &User) -> Result<()> {
    insert(
        conn,
        "INSERT INTO users (id, organization_id, username, password_hash, role, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            user.id,
            user.organization_id,
            user.username,
            user.password_hash,
            user.role.as_str(),
            user.created_at
        ],
        "a user with this username",
    )
}

/// A run with its variables already as JSON text, ready for the writer.
struct RunToInsert {
    new: NewExecution,
    variables: String,
    key: Option<IdempotencyKey>,
}

fn enqueue_one(conn: &Connection, run: &RunToInsert) -> Result<Enqueued> {
    let new = &run.new;
    if let Some(key) = &run.key {
        let earlier = one(
            conn,
            "SELECT fingerprint, execution_id, created_at FROM idempotency_keys \
             WHERE user_id = ?1 AND key = ?2",
            params![key.user_id, key.key],
            |row| {
                Ok((
                    row.text("fingerprint")?,
                    row.text("execution_id")?,
                    row.int("created_at")?,
                ))
            },
        )?;
        if let Some((fingerprint, execution_id, created_at)) = earlier {
            if created_at >= key.expired_before {
                return Ok(if fingerprint == key.fingerprint {
                    Enqueued::Existing(execution_id)
                } else {
                    Enqueued::KeyReused
                });
            }
            change(
                conn,
                "DELETE FROM idempotency_keys WHERE user_id = ?1 AND key = ?2",
                params![key.user_id, key.key],
            )?;
        }
    }
    insert(
        conn,
        "INSERT INTO executions (id, organization_id, runtime_id, robot_id, robot_version, \
         variables, status, progress, init, submitted_by, max_attempts) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'PENDENT', 0, ?7, ?8, ?9)",
        params![
            new.id,
            new.organization_id,
            new.runtime_id,
            new.robot_id,
            new.robot_version,
            run.variables,
            new.init,
            new.submitted_by,
            new.max_attempts
        ],
        "an execution with this id",
    )?;
    if let Some(key) = &run.key {
        change(
            conn,
            "INSERT INTO idempotency_keys (user_id, key, fingerprint, execution_id, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![key.user_id, key.key, key.fingerprint, new.id, new.init],
        )?;
    }
    Ok(Enqueued::Created)
}

fn add_robot_version(conn: &Connection, new: &NewRobotVersion) -> Result<(String, u32)> {
    let existing: Option<String> = conn
        .prepare_cached("SELECT id FROM robots WHERE organization_id = ?1 AND name = ?2")
        .and_then(|mut statement| {
            statement
                .query_row(params![new.organization_id, new.name], |row| row.get(0))
                .optional()
        })
        .map_err(other)?;
    let robot_id = match existing {
        Some(id) => id,
        None => {
            insert(
                conn,
                "INSERT INTO robots (id, organization_id, name, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![
                    new.new_robot_id,
                    new.organization_id,
                    new.name,
                    new.created_at
                ],
                "a robot with this id",
            )?;
            new.new_robot_id.clone()
        }
    };
    let version: i64 = conn
        .query_row(
            "SELECT COALESCE(MAX(version), 0) + 1 FROM robot_versions WHERE robot_id = ?1",
            [&robot_id],
            |row| row.get(0),
        )
        .map_err(other)?;
    change(
        conn,
        "INSERT INTO robot_versions \
         (robot_id, version, organization_id, sha256, manifest, size, package, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            robot_id,
            version,
            new.organization_id,
            new.sha256,
            new.manifest,
            new.package.len() as i64,
            new.package,
            new.created_at
        ],
    )?;
    Ok((robot_id, version as u32))
}

fn cancel(
    conn: &Connection,
    organization_id: &str,
    id: &str,
    canceled_by: &str,
    now: Millis,
) -> Result<CancelOutcome> {
    let (status, lease) = one(
        conn,
        "SELECT status, lease FROM executions WHERE organization_id = ?1 AND id = ?2",
        params![organization_id, id],
        |row| Ok((status_of(row)?, row.text_opt("lease")?)),
    )?
    .ok_or(Error::NotFound)?;
    Ok(match status {
        ExecutionStatus::Pendent => {
            change(
                conn,
                "UPDATE executions SET status = 'CANCELED', \"end\" = ?1, canceled_by = ?2, \
                 end_reason = 'canceled before it started', lease = NULL \
                 WHERE organization_id = ?3 AND id = ?4",
                params![now, canceled_by, organization_id, id],
            )?;
            CancelOutcome::Canceled { lease }
        }
        ExecutionStatus::Running => {
            change(
                conn,
                "UPDATE executions SET cancel_requested = 1, canceled_by = COALESCE(canceled_by, ?1) \
                 WHERE organization_id = ?2 AND id = ?3",
                params![canceled_by, organization_id, id],
            )?;
            CancelOutcome::Running {
                lease: lease.unwrap_or_default(),
            }
        }
        ended => CancelOutcome::AlreadyEnded(ended),
    })
}

fn claim_next(conn: &Connection, runtime_id: &str, lease: &str) -> Result<Option<Claimed>> {
    let claimed = one(
        conn,
        "UPDATE executions SET lease = ?1, attempt = attempt + 1 \
         WHERE seq = (SELECT seq FROM executions \
                      WHERE runtime_id = ?2 AND status = 'PENDENT' AND lease IS NULL \
                      ORDER BY seq LIMIT 1) \
         RETURNING id, robot_id, robot_version, variables, last_event_seq",
        params![lease, runtime_id],
        |row| {
            Ok((
                row.text("id")?,
                row.text("robot_id")?,
                row.int("robot_version")?,
                row.text("variables")?,
                row.int("last_event_seq")?,
            ))
        },
    )?;
    let Some((execution_id, robot_id, robot_version, variables, last_event_seq)) = claimed else {
        return Ok(None);
    };
    let (sha256, manifest) = one(
        conn,
        "SELECT sha256, manifest FROM robot_versions WHERE robot_id = ?1 AND version = ?2",
        params![robot_id, robot_version],
        |row| Ok((row.text("sha256")?, row.text("manifest")?)),
    )?
    .ok_or_else(|| {
        Error::Other(anyhow::anyhow!(
            "execution {execution_id} names version {robot_version} of robot {robot_id}, which is not stored"
        ))
    })?;
    Ok(Some(Claimed {
        execution_id,
        lease: lease.to_owned(),
        robot_id,
        robot_version: robot_version as u32,
        sha256,
        manifest,
        variables: serde_json::from_str(&variables)
            .map_err(|e| Error::Other(anyhow::anyhow!("stored variables are not JSON: {e}")))?,
        first_seq: last_event_seq as u64 + 1,
    }))
}

fn record_events(
    conn: &Connection,
    runtime_id: &str,
    execution_id: &str,
    lease: &str,
    events: &[EventRecord],
) -> Result<EventsOutcome> {
    let row = one(
        conn,
        "SELECT organization_id, status, progress, return_value, last_event_seq, init \
         FROM executions WHERE id = ?1 AND runtime_id = ?2 AND lease = ?3",
        params![execution_id, runtime_id, lease],
        |row| Ok((row.text("organization_id")?, event_target_from(row)?)),
    )?;
    let Some((organization_id, before)) = row else {
        return Ok(EventsOutcome::Revoked);
    };
    let acked = before.last_event_seq;
    let Some(applied) = apply_events(before, events) else {
        return Ok(EventsOutcome::Stored {
            acked,
            ended: false,
        });
    };
    insert_log_lines(conn, execution_id, &organization_id, &applied.lines)?;
    let target = &applied.target;
    let last = target.last_event_seq as i64;
    match applied.ending {
        Some((end, exit_code, reason)) => change(
            conn,
            "UPDATE executions SET status = ?1, progress = ?2, return_value = ?3, last_event_seq = ?4, \
             \"end\" = ?5, exit_code = ?6, end_reason = ?7 WHERE id = ?8",
            params![
                target.status.as_str(),
                target.progress,
                target.return_value,
                last,
                end,
                exit_code,
                reason,
                execution_id
            ],
        )?,
        None => change(
            conn,
            "UPDATE executions SET progress = ?1, return_value = ?2, last_event_seq = ?3 WHERE id = ?4",
            params![target.progress, target.return_value, last, execution_id],
        )?,
    };
    Ok(EventsOutcome::Stored {
        acked: target.last_event_seq,
        ended: applied.ending.is_some(),
    })
}

fn end_lease(
    conn: &Connection,
    execution_id: &str,
    lease: &str,
    started: bool,
    reason: &str,
    now: Millis,
) -> Result<LostOutcome> {
    let live = one(
        conn,
        &format!(
            "SELECT {LIVE_LEASE_COLUMNS} FROM executions \
             WHERE id = ?1 AND lease = ?2 AND status IN ('PENDENT', 'RUNNING')"
        ),
        params![execution_id, lease],
        |row| live_lease_from(row),
    )?;
    let Some(live) = live else {
        return Ok(LostOutcome::Stale);
    };
    let end = plan_lease_end(&live, started, reason, now);
    change(
        conn,
        "UPDATE executions SET status = ?1, lease = NULL, \"end\" = ?2, end_reason = ?3, \
         started = CASE WHEN ?1 = 'PENDENT' THEN NULL ELSE started END, \
         attempt = ?4, progress = ?5, last_event_seq = ?6 WHERE id = ?7",
        params![
            end.status.as_str(),
            end.end,
            end.end_reason,
            end.attempt,
            end.progress,
            end.last_event_seq,
            execution_id
        ],
    )?;
    if let Some((level, message)) = &end.log {
        change(
            conn,
            INSERT_LOG,
            params![
                execution_id,
                end.last_event_seq,
                live.organization_id,
                now,
                level,
                message
            ],
        )?;
    }
    Ok(end.outcome)
}

fn list_executions(
    conn: &Connection,
    organization_id: &str,
    filter: &ExecutionFilter,
) -> Result<Vec<Execution>> {
    let mut sql = format!("SELECT {EXECUTION_COLUMNS} FROM executions WHERE ");
    let mut values = Vec::new();
    for (index, (condition, value)) in execution_conditions(organization_id, filter)
        .into_iter()
        .enumerate()
    {
        if index > 0 {
            sql.push_str(" AND ");
        }
        sql.push_str(condition);
        sql.push_str(" ?");
        values.push(match value {
            FilterValue::Text(text) => SqlValue::Text(text.to_owned()),
            FilterValue::Int(number) => SqlValue::Integer(number),
        });
    }
    sql.push_str(" ORDER BY seq DESC LIMIT ?");
    values.push(SqlValue::Integer(filter.limit as i64));
    all(conn, &sql, rusqlite::params_from_iter(values), |row| {
        execution_from(row)
    })
}

#[async_trait]
impl Store for SqliteStore {
    async fn root_organization(&self) -> Result<Option<Organization>> {
        self.readers.with(|conn| {
            one(
                conn,
                "SELECT * FROM organizations WHERE is_root = 1",
                [],
                |row| organization_from(row),
            )
        })
    }

    async fn get_organization(&self, id: &str) -> Result<Organization> {
        self.readers
            .with(|conn| {
                one(
                    conn,
                    "SELECT * FROM organizations WHERE id = ?1",
                    [id],
                    |row| organization_from(row),
                )
            })?
            .ok_or(Error::NotFound)
    }

    async fn create_organization(&self, organization: &Organization, admin: &User) -> Result<()> {
        let (organization, admin) = (organization.clone(), admin.clone());
        self.write(move |conn| {
            insert(
                conn,
                "INSERT INTO organizations (id, name, is_root, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![
                    organization.id,
                    organization.name,
                    organization.is_root,
                    organization.created_at
                ],
                "an organization with this name",
            )?;
            insert_user(conn, &admin)
        })
        .await
    }

    async fn count_users(&self) -> Result<u64> {
        self.readers.with(|conn| {
            conn.query_row("SELECT COUNT(*) FROM users", [], |row| row.get::<_, i64>(0))
                .map(|count| count as u64)
                .map_err(other)
        })
    }

    async fn create_user(&self, user: &User) -> Result<()> {
        let user = user.clone();
        self.write(move |conn| insert_user(conn, &user)).await
    }

    async fn find_user_by_username(&self, username: &str) -> Result<Option<User>> {
        self.readers.with(|conn| {
            one(
                conn,
                "SELECT * FROM users WHERE username = ?1",
                [username],
                |row| user_from(row),
            )
        })
    }

    async fn get_user(&self, id: &str) -> Result<User> {
        self.readers
            .with(|conn| {
                one(conn, "SELECT * FROM users WHERE id = ?1", [id], |row| {
                    user_from(row)
                })
            })?
            .ok_or(Error::NotFound)
    }

    async fn list_users(&self, organization_id: &str) -> Result<Vec<User>> {
        let organization_id = organization_id.to_owned();
        self.read_blocking(move |conn| {
            all(
                conn,
                "SELECT * FROM users WHERE organization_id = ?1 ORDER BY created_at, id",
                [organization_id],
                |row| user_from(row),
            )
        })
        .await
    }

    async fn delete_user(&self, organization_id: &str, id: &str) -> Result<()> {
        let (organization_id, id) = (organization_id.to_owned(), id.to_owned());
        self.write(move |conn| {
            match change(
                conn,
                "DELETE FROM users WHERE organization_id = ?1 AND id = ?2",
                params![organization_id, id],
            )? {
                0 => Err(Error::NotFound),
                _ => Ok(()),
            }
        })
        .await
    }

    async fn create_runtime(&self, new: &NewRuntime) -> Result<()> {
        let new = new.clone();
        self.write(move |conn| {
            let runtime = &new.runtime;
            insert(
                conn,
                "INSERT INTO runtimes (id, organization_id, name, key_hash, slots, last_seen, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    runtime.id,
                    runtime.organization_id,
                    runtime.name,
                    new.key_hash,
                    runtime.slots,
                    runtime.last_seen,
                    runtime.created_at
                ],
                "a runtime with this id or key",
            )
        })
        .await
    }

    async fn get_runtime(&self, organization_id: &str, id: &str) -> Result<Runtime> {
        self.readers
            .with(|conn| {
                one(
                    conn,
                    "SELECT * FROM runtimes WHERE organization_id = ?1 AND id = ?2",
                    [organization_id, id],
                    |row| runtime_from(row),
                )
            })?
            .ok_or(Error::NotFound)
    }

    async fn find_runtime_by_key_hash(&self, key_hash: &str) -> Result<Option<Runtime>> {
        self.readers.with(|conn| {
            one(
                conn,
                "SELECT * FROM runtimes WHERE key_hash = ?1",
                [key_hash],
                |row| runtime_from(row),
            )
        })
    }

    async fn list_runtimes(&self, organization_id: &str) -> Result<Vec<Runtime>> {
        let organization_id = organization_id.to_owned();
        self.read_blocking(move |conn| {
            all(
                conn,
                "SELECT * FROM runtimes WHERE organization_id = ?1 ORDER BY created_at, id",
                [organization_id],
                |row| runtime_from(row),
            )
        })
        .await
    }

    async fn touch_runtime(&self, id: &str, seen: Millis) -> Result<()> {
        let id = id.to_owned();
        // A heartbeat lost to a power loss only makes the runtime look older.
        self.send_write(
            move |conn| {
                change(
                    conn,
                    "UPDATE runtimes SET last_seen = MAX(COALESCE(last_seen, 0), ?1) WHERE id = ?2",
                    params![seen, id],
                )
                .map(drop)
            },
            Durability::Written,
        )
        .await
    }

    async fn add_robot_version(&self, new: &NewRobotVersion) -> Result<(String, u32)> {
        let new = new.clone();
        self.write(move |conn| add_robot_version(conn, &new)).await
    }

    async fn get_robot(&self, organization_id: &str, id: &str) -> Result<Robot> {
        self.readers.with(|conn| {
            let mut robot = one(
                conn,
                "SELECT * FROM robots WHERE organization_id = ?1 AND id = ?2",
                [organization_id, id],
                |row| robot_from(row, Vec::new()),
            )?
            .ok_or(Error::NotFound)?;
            robot.versions = all(
                conn,
                "SELECT version, sha256, manifest, size, created_at FROM robot_versions \
                 WHERE organization_id = ?1 AND robot_id = ?2 ORDER BY version",
                [organization_id, id],
                |row| robot_version_from(row),
            )?;
            Ok(robot)
        })
    }

    async fn latest_robot_version(&self, organization_id: &str, id: &str) -> Result<RobotVersion> {
        self.readers
            .with(|conn| {
                one(
                    conn,
                    "SELECT version, sha256, manifest, size, created_at FROM robot_versions \
                     WHERE organization_id = ?1 AND robot_id = ?2 ORDER BY version DESC LIMIT 1",
                    [organization_id, id],
                    |row| robot_version_from(row),
                )
            })?
            .ok_or(Error::NotFound)
    }

    async fn list_robots(&self, organization_id: &str) -> Result<Vec<Robot>> {
        let organization_id = organization_id.to_owned();
        self.read_blocking(move |conn| {
            // One read transaction (as every read), so the versions match the robots.
            let rows = all(
                conn,
                "SELECT id, organization_id, name, created_at FROM robots \
                 WHERE organization_id = ?1 ORDER BY created_at, id",
                [&organization_id],
                |row| robot_from(row, Vec::new()),
            )?;
            let versions = all(
                conn,
                "SELECT robot_id, version, sha256, manifest, size, created_at FROM robot_versions \
                 WHERE organization_id = ?1 ORDER BY robot_id, version",
                [&organization_id],
                |row| robot_id_and_version_from(row),
            )?;
            Ok(robots_with_versions(rows, versions))
        })
        .await
    }

    async fn robot_package(
        &self,
        organization_id: &str,
        robot_id: &str,
        version: u32,
    ) -> Result<Vec<u8>> {
        let (organization_id, robot_id) = (organization_id.to_owned(), robot_id.to_owned());
        self.read_blocking(move |conn| {
            conn.prepare_cached(
                "SELECT package FROM robot_versions \
                 WHERE organization_id = ?1 AND robot_id = ?2 AND version = ?3",
            )
            .and_then(|mut statement| {
                statement
                    .query_row(params![organization_id, robot_id, version], |row| {
                        row.get::<_, Vec<u8>>(0)
                    })
                    .optional()
            })
            .map_err(other)?
            .ok_or(Error::NotFound)
        })
        .await
    }

    async fn enqueue(&self, new: &NewExecution, key: Option<&IdempotencyKey>) -> Result<Enqueued> {
        let run = RunToInsert {
            new: new.clone(),
            variables: new.variables.to_string(),
            key: key.cloned(),
        };
        self.write(move |conn| enqueue_one(conn, &run)).await
    }

    async fn get_execution(&self, organization_id: &str, id: &str) -> Result<Execution> {
        self.readers
            .with(|conn| {
                one(
                    conn,
                    &format!(
                        "SELECT {EXECUTION_COLUMNS} FROM executions WHERE organization_id = ?1 AND id = ?2"
                    ),
                    [organization_id, id],
                    |row| execution_from(row),
                )
            })?
            .ok_or(Error::NotFound)
    }

    async fn execution_logs(&self, organization_id: &str, id: &str) -> Result<Vec<LogLine>> {
        let mut lines = self
            .readers
            .with(|conn| select_logs(conn, organization_id, id, 0, INLINE_LOG_LINES as i64))?;
        if lines.len() == INLINE_LOG_LINES {
            // A long log: the rest, which may be millions of lines, off this thread.
            let after = lines.last().map_or(0, |line| line.seq);
            let (organization_id, id) = (organization_id.to_owned(), id.to_owned());
            let rest = self
                .read_blocking(move |conn| select_logs(conn, &organization_id, &id, after, -1))
                .await?;
            lines.extend(rest);
        }
        Ok(lines)
    }

    async fn list_executions(
        &self,
        organization_id: &str,
        filter: &ExecutionFilter,
    ) -> Result<Vec<Execution>> {
        let (organization_id, filter) = (organization_id.to_owned(), filter.clone());
        self.read_blocking(move |conn| list_executions(conn, &organization_id, &filter))
            .await
    }

    async fn queue_position(&self, execution: &Execution) -> Result<u64> {
        let (runtime_id, seq) = (execution.runtime_id.clone(), execution.seq);
        self.read_blocking(move |conn| {
            conn.prepare_cached(
                "SELECT COUNT(*) FROM executions \
                 WHERE runtime_id = ?1 AND status = 'PENDENT' AND seq < ?2",
            )
            .and_then(|mut statement| {
                statement.query_row(params![runtime_id, seq], |row| row.get::<_, i64>(0))
            })
            .map(|ahead| ahead as u64)
            .map_err(other)
        })
        .await
    }

    async fn cancel(
        &self,
        organization_id: &str,
        id: &str,
        canceled_by: &str,
        now: Millis,
    ) -> Result<CancelOutcome> {
        let (organization_id, id, canceled_by) = (
            organization_id.to_owned(),
            id.to_owned(),
            canceled_by.to_owned(),
        );
        self.write(move |conn| cancel(conn, &organization_id, &id, &canceled_by, now))
            .await
    }

    async fn claim_next(&self, runtime_id: &str, lease: &str) -> Result<Option<Claimed>> {
        let (runtime_id, lease) = (runtime_id.to_owned(), lease.to_owned());
        // Not synced on its own: a claim lost to a power loss leaves the run
        // PENDENT without a lease, to be handed out again, and its robot cannot
        // have started, since `start` (synced, so syncing the claim too) needs
        // the lease. The claim is on the dispatch path: one fsync less there.
        self.send_write(
            move |conn| claim_next(conn, &runtime_id, &lease),
            Durability::Written,
        )
        .await
    }

    async fn start(
        &self,
        runtime_id: &str,
        execution_id: &str,
        lease: &str,
        now: Millis,
    ) -> Result<bool> {
        let (runtime_id, execution_id, lease) = (
            runtime_id.to_owned(),
            execution_id.to_owned(),
            lease.to_owned(),
        );
        self.write(move |conn| {
            let started = change(
                conn,
                "UPDATE executions SET status = 'RUNNING', started = ?1 \
                 WHERE id = ?2 AND runtime_id = ?3 AND lease = ?4 AND status = 'PENDENT'",
                params![now, execution_id, runtime_id, lease],
            )?;
            Ok(started == 1)
        })
        .await
    }

    async fn record_events(
        &self,
        runtime_id: &str,
        execution_id: &str,
        lease: &str,
        events: &[EventRecord],
    ) -> Result<EventsOutcome> {
        let (runtime_id, execution_id, lease) = (
            runtime_id.to_owned(),
            execution_id.to_owned(),
            lease.to_owned(),
        );
        let events = events.to_vec();
        self.write(move |conn| record_events(conn, &runtime_id, &execution_id, &lease, &events))
            .await
    }

    async fn leases_of_runtime(&self, runtime_id: &str) -> Result<Vec<Lease>> {
        self.readers.with(|conn| {
            all(
                conn,
                "SELECT id, lease, runtime_id, status, cancel_requested FROM executions \
                 WHERE runtime_id = ?1 AND status IN ('PENDENT', 'RUNNING') AND lease IS NOT NULL \
                 ORDER BY seq",
                [runtime_id],
                |row| lease_from(row),
            )
        })
    }

    async fn lease_status(
        &self,
        execution_id: &str,
        lease: &str,
    ) -> Result<Option<ExecutionStatus>> {
        self.readers.with(|conn| {
            one(
                conn,
                "SELECT status FROM executions WHERE id = ?1 AND lease = ?2",
                [execution_id, lease],
                |row| status_of(row),
            )
        })
    }

    async fn leases_seen_before(&self, seen_before: Millis) -> Result<Vec<Lease>> {
        self.read_blocking(move |conn| {
            all(
                conn,
                "SELECT e.id, e.lease, e.runtime_id, e.status, e.cancel_requested FROM executions e \
                 JOIN runtimes r ON r.id = e.runtime_id \
                 WHERE e.status IN ('PENDENT', 'RUNNING') AND e.lease IS NOT NULL \
                 AND COALESCE(r.last_seen, 0) < ?1 ORDER BY e.seq",
                [seen_before],
                |row| lease_from(row),
            )
        })
        .await
    }

    async fn close(&self) {
        let readers = self.readers.clone();
        let checkpointed = tokio::task::spawn_blocking(move || -> anyhow::Result<bool> {
            let conn = open_connection(&readers.path, false)?;
            // Runtime sessions may still read as the server stops: let go of idle
            // snapshots again between short tries, rather than wait on them.
            conn.busy_timeout(Duration::from_millis(20))?;
            let deadline = Instant::now() + CLOSE_WAIT;
            loop {
                readers.release_idle_snapshots();
                let busy: i64 =
                    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| row.get(0))?;
                if busy == 0 {
                    return Ok(true);
                }
                if Instant::now() >= deadline {
                    return Ok(false);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        })
        .await;
        match checkpointed {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => {
                tracing::warn!("the WAL was still in use at close: left for the next start")
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot empty the WAL at close"),
            Err(e) => tracing::warn!(error = %e, "cannot empty the WAL at close"),
        }
    }

    async fn end_lease(
        &self,
        execution_id: &str,
        lease: &str,
        started: bool,
        reason: &str,
        now: Millis,
    ) -> Result<LostOutcome> {
        let (execution_id, lease, reason) =
            (execution_id.to_owned(), lease.to_owned(), reason.to_owned());
        self.write(move |conn| end_lease(conn, &execution_id, &lease, started, &reason, now))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(durability: Durability) -> Box<dyn WriteJob> {
        let (reply, _answer) = oneshot::channel::<Result<()>>();
        Box::new(PendingWrite {
            work: Some(|_: &Connection| Ok(())),
            outcome: None,
            reply,
            durability,
        })
    }

    fn synchronous(conn: &Connection) -> i64 {
        conn.query_row("PRAGMA synchronous", [], |row| row.get(0))
            .unwrap()
    }

    #[test]
    fn a_batch_is_synced_when_any_of_its_writes_needs_it() {
        let dir = tempfile::tempdir().unwrap();
        let conn = Connection::open(dir.path().join("t.db")).unwrap();
        conn.execute_batch("PRAGMA journal_mode = WAL").unwrap();
        let (full, normal) = (2, 1);

        commit_batch(&conn, &mut [job(Durability::Written)]).unwrap();
        assert_eq!(synchronous(&conn), normal);
        commit_batch(
            &conn,
            &mut [job(Durability::Written), job(Durability::Synced)],
        )
        .unwrap();
        assert_eq!(synchronous(&conn), full);
        commit_batch(&conn, &mut [job(Durability::Written)]).unwrap();
        commit_batch(&conn, &mut [job(Durability::Synced)]).unwrap();
        assert_eq!(synchronous(&conn), full);
    }
}
