//! The SQLite engine, apart from its queries: the writer thread with group
//! commit, the read-only connections and their kept snapshots, the checkpoints,
//! and the WAL emptied at close. The aggregates' modules hand it closures: a
//! write to [`SqliteStore::write`], a read to `readers.with` (short) or
//! [`SqliteStore::read_blocking`] (long).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_trait::async_trait;
use rusqlite::{Connection, OpenFlags};
use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use tokio::sync::oneshot;

use crate::{ClusterStore, Error, Histogram, Result};

/// Most writes committed by one transaction.
const MAX_WRITE_BATCH: usize = 1024;
/// Idle read connections kept open; more are opened when needed.
const MAX_IDLE_READERS: usize = 8;
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
/// Tries of a WAL restart before the writer goes on; it tries again after each
/// of its next commits until the restart is done.
const RESTART_TRIES: usize = 64;
/// Commits between two looks at the WAL's size by the writer.
const WAL_SIZE_CHECK_EVERY: u64 = 32;
/// The WAL file is cut back to this size when it starts over.
const WAL_SIZE_LIMIT: i64 = 16 << 20;
/// How long the checkpoint at close waits for readers to finish.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// Creates the database file readable by its owner only, when it is not there
/// yet: SQLite gives its WAL and shared-memory files the database file's mode.
fn create_private(path: &std::path::Path) {
    if path.as_os_str().is_empty() || path.as_os_str() == ":memory:" {
        return;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    // Already there, or its directory missing: SQLite opens it, or says why.
    let _ = options.open(path);
}

/// The schema's migrations, embedded.
pub(crate) static MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");

/// Whether the database at `path` has every migration of `migrator` applied,
/// each with its checksum, and none other: then sqlx's migrator would find
/// nothing to do, and it is not started (its pool, connection thread and
/// queries were about a sixth of a start's time). Anything else, including
/// any doubt, answers `None` and leaves the verdict to the migrator. When it
/// answers, the read-write connection it read with becomes the writer's: each
/// connection parses the whole schema, so a start parses it once less.
fn migrated_connection(path: &Path, migrator: &Migrator) -> Option<Connection> {
    /// A recorded migration: its version, checksum and success.
    type Applied = (i64, Vec<u8>, bool);
    // `None`: not in WAL mode, which the migrator's connection sets.
    let applied = || -> rusqlite::Result<Option<(Connection, Vec<Applied>)>> {
        // Read-write (not created): a read-only connection cannot open a WAL
        // database whose shared-memory file is gone.
        let conn = Connection::open_with_flags(path, connection_flags(false))?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        let journal_mode: String = conn.query_row("PRAGMA journal_mode", [], |row| row.get(0))?;
        if !journal_mode.eq_ignore_ascii_case("wal") {
            return Ok(None);
        }
        let mut rows = conn
            .prepare("SELECT version, checksum, success FROM _sqlx_migrations ORDER BY version")?;
        let applied = rows
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?
            .collect::<rusqlite::Result<_>>()?;
        drop(rows);
        Ok(Some((conn, applied)))
    };
    let Ok(Some((conn, applied))) = applied() else {
        return None;
    };
    let embedded: Vec<_> = migrator
        .iter()
        .filter(|m| !m.migration_type.is_down_migration())
        .collect();
    let migrated = applied.len() == embedded.len()
        && applied
            .iter()
            .zip(embedded)
            .all(|((version, checksum, success), m)| {
                *success && *version == m.version && **checksum == *m.checksum
            });
    migrated.then_some(conn)
}

/// Upper bounds of the commit time buckets, in seconds.
const COMMIT_TIME_BOUNDS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

pub struct SqliteStore {
    writer: mpsc::Sender<Box<dyn WriteJob>>,
    pub(super) readers: Arc<Readers>,
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
        create_private(&path);
        let migrated = migrated_connection(&path, &MIGRATIONS);
        if migrated.is_none() {
            // A pool of one connection, used for the migrations only and closed.
            let pool = SqlitePoolOptions::new()
                .max_connections(1)
                .connect_with(options)
                .await
                .with_context(|| format!("cannot open the database {url:?}"))?;
            MIGRATIONS
                .run(&pool)
                .await
                .context("cannot apply the database migrations")?;
            pool.close().await;
        }

        let writer = match migrated {
            Some(conn) => configure_connection(conn),
            None => open_connection(&path, false),
        }
        .with_context(|| format!("cannot open the database {url:?} for writing"))?;
        writer
            .pragma_update(None, "wal_autocheckpoint", 0)
            .and_then(|()| writer.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT))
            .context("cannot set the WAL's limits")?;
        // Group commit runs each write under a savepoint, whose journal keeps the
        // pages the write changes. Past 64 KiB SQLite spills that journal into a
        // temporary file: under a burst of runs that file's writes were about
        // half of the writer's time. It lives only until the savepoint is
        // released, so memory holds at most one write's pages.
        writer
            .pragma_update(None, "temp_store", "MEMORY")
            .context("cannot keep the writer's savepoint journal in memory")?;
        let commits = Arc::new(AtomicU64::new(0));
        let readers = Arc::new(Readers {
            path,
            idle: Mutex::new(Vec::new()),
            commits: commits.clone(),
            commit_times: Histogram::new(COMMIT_TIME_BOUNDS),
        });
        // Fail at open, not at the first read, when reading is impossible.
        readers
            .with(|_| Ok(()))
            .map_err(|e| anyhow::anyhow!("cannot open the database {url:?} for reading: {e}"))?;
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
            .spawn(move || checkpoint_loop(&reading, stop))
            .context("cannot start the SQLite checkpoint thread")?;
        Ok(SqliteStore {
            writer: jobs,
            readers,
            _checkpointer: checkpointer,
        })
    }

    /// Runs `work` in the writer's next transaction; answers once it is committed
    /// and synced to disk.
    pub(super) async fn write<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        self.send_write(work, Durability::Synced).await
    }

    pub(super) async fn send_write<T, F>(&self, work: F, durability: Durability) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        self.send_job(Box::new(PendingWrite {
            work: Some(work),
            outcome: None,
            reply,
            durability,
        }))?;
        answer.await.map_err(|_| store_closed())?
    }

    /// [`SqliteStore::write`] for a write that may run twice: one that only
    /// changes the database (no effect outside it) and reads what it needs
    /// there. Such writes run without a savepoint of their own, which copies
    /// every page they touch that the transaction had already changed; if one
    /// fails, the transaction is rolled back and they run again, each under
    /// its own savepoint (see `commit_batch`). The hot path of run requests.
    pub(super) async fn write_repeatable<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: Fn(&Connection) -> Result<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        self.send_job(Box::new(RepeatableWrite {
            work,
            outcome: None,
            reply,
        }))?;
        answer.await.map_err(|_| store_closed())?
    }

    fn send_job(&self, job: Box<dyn WriteJob>) -> Result<()> {
        self.writer.send(job).map_err(|_| store_closed())
    }

    /// Runs a read that may be long on a blocking thread.
    pub(super) async fn read_blocking<T, F>(&self, read: F) -> Result<T>
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

fn connection_flags(read_only: bool) -> OpenFlags {
    let access = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
    };
    access | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI
}

fn open_connection(path: &Path, read_only: bool) -> anyhow::Result<Connection> {
    configure_connection(Connection::open_with_flags(
        path,
        connection_flags(read_only),
    )?)
}

/// Sets a new connection's pragmas and checks that it is durable.
fn configure_connection(conn: Connection) -> anyhow::Result<Connection> {
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
pub(super) enum Durability {
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
    /// Whether it may run again after a rollback (see
    /// [`SqliteStore::write_repeatable`]).
    fn repeatable(&self) -> bool {
        false
    }
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
        self.outcome = Some(run_caught(|| work(conn)));
        matches!(self.outcome, Some(Ok(_)))
    }

    fn answer(self: Box<Self>, commit_error: Option<&str>) {
        let _ = self.reply.send(outcome(commit_error, self.outcome));
    }
}

/// A write that may run again: see [`SqliteStore::write_repeatable`].
struct RepeatableWrite<T, F> {
    work: F,
    outcome: Option<Result<T>>,
    reply: oneshot::Sender<Result<T>>,
}

impl<T, F> WriteJob for RepeatableWrite<T, F>
where
    T: Send,
    F: Fn(&Connection) -> Result<T> + Send,
{
    fn durability(&self) -> Durability {
        Durability::Synced
    }

    fn run(&mut self, conn: &Connection) -> bool {
        self.outcome = Some(run_caught(|| (self.work)(conn)));
        matches!(self.outcome, Some(Ok(_)))
    }

    fn repeatable(&self) -> bool {
        true
    }

    fn answer(self: Box<Self>, commit_error: Option<&str>) {
        let _ = self.reply.send(outcome(commit_error, self.outcome));
    }
}

/// Runs a write; a bug in one write must not stop the writer for everybody.
fn run_caught<T>(work: impl FnOnce() -> Result<T>) -> Result<T> {
    catch_unwind(AssertUnwindSafe(work)).unwrap_or_else(|_| {
        Err(Error::Other(anyhow::anyhow!(
            "the store failed while writing"
        )))
    })
}

/// What a write answers once its transaction ended (`commit_error`: `None`
/// when it committed).
fn outcome<T>(commit_error: Option<&str>, outcome: Option<Result<T>>) -> Result<T> {
    match (commit_error, outcome) {
        (_, Some(Err(e))) => Err(e),
        (None, Some(outcome)) => outcome,
        (Some(why), _) => Err(Error::Other(anyhow::anyhow!(
            "the write was not committed: {why}"
        ))),
        (None, None) => Err(Error::Other(anyhow::anyhow!("the write never ran"))),
    }
}

/// Group commit: the writes that queued while one transaction committed go into
/// the next one, each under its own savepoint so that one failing undoes only
/// itself (repeatable writes only after one of them failed), and one fsync
/// acknowledges them all.
fn write_loop(conn: Connection, queue: mpsc::Receiver<Box<dyn WriteJob>>, readers: &Readers) {
    let wal = wal_path(&readers.path);
    let mut batch: Vec<Box<dyn WriteJob>> = Vec::with_capacity(MAX_WRITE_BATCH);
    // A restart that readers kept from finishing: tried again after the next
    // commit, not 32 commits later, so that the WAL stays near its bound.
    let mut restart_due = false;
    let mut transactions: u64 = 0;
    while let Ok(job) = queue.recv() {
        batch.push(job);
        while batch.len() < MAX_WRITE_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let began = Instant::now();
        readers.transaction_begins();
        let commit_error = commit_batch(&conn, &mut batch).err().map(|e| e.to_string());
        readers.commit_times.observe(began.elapsed());
        if let Some(why) = &commit_error {
            tracing::error!(error = %why, writes = batch.len(), "a database transaction failed");
        }
        // Before anyone is answered.
        readers.transaction_ended();
        transactions += 1;
        for job in batch.drain(..) {
            job.answer(commit_error.as_deref());
        }
        let wal_size = || std::fs::metadata(&wal).map_or(0, |m| m.len());
        if restart_due
            || (transactions.is_multiple_of(WAL_SIZE_CHECK_EVERY)
                && wal_size() > WRITER_CHECKPOINT_BYTES)
        {
            restart_due = match restart_wal(&conn, readers) {
                Ok(restarted) => !restarted,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot checkpoint the database");
                    false
                }
            };
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
    // Repeatable writes first, without savepoints; should one fail, they all
    // run again, each under its own. The writes of one batch were queued
    // concurrently, none waiting for another: their order is free.
    batch.sort_by_key(|job| !job.repeatable());
    let repeatable = batch.iter().take_while(|job| job.repeatable()).count();
    let (fast, rest) = batch.split_at_mut(repeatable);
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let mut run_all = || -> rusqlite::Result<()> {
        if !fast.iter_mut().all(|job| job.run(conn)) {
            if !conn.is_autocommit() {
                conn.execute_batch("ROLLBACK")?;
            }
            conn.execute_batch("BEGIN IMMEDIATE")?;
            run_each_alone(conn, fast)?;
        }
        run_each_alone(conn, rest)?;
        conn.prepare_cached("COMMIT")?.execute([])?;
        Ok(())
    };
    let result = run_all();
    if result.is_err() && !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    result
}

/// Runs each job under its own savepoint, so that one failing undoes only
/// itself.
fn run_each_alone(conn: &Connection, jobs: &mut [Box<dyn WriteJob>]) -> rusqlite::Result<()> {
    for job in jobs {
        conn.prepare_cached("SAVEPOINT write")?.execute([])?;
        if !job.run(conn) {
            conn.prepare_cached("ROLLBACK TO SAVEPOINT write")?
                .execute([])?;
        }
        conn.prepare_cached("RELEASE SAVEPOINT write")?
            .execute([])?;
    }
    Ok(())
}

/// Copies the whole WAL back and has the next write start it over (a RESTART
/// checkpoint), from the writer's thread between two transactions (no commit can
/// slip in). Readers keep snapshots, which hold a restart back: counting this as
/// a commit makes each reader let go of its snapshot when next used or returned,
/// and idle ones are released here. Tries do not sleep (SQLite's busy handler
/// would, for milliseconds, with every write waiting): they yield between, and
/// a reader still on an old snapshot after them only defers the restart.
fn restart_wal(conn: &Connection, readers: &Readers) -> rusqlite::Result<bool> {
    readers.let_go_of_snapshots();
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
    let restarted = restarted?;
    if !restarted {
        tracing::debug!("the WAL could not start over yet: readers still use it");
    }
    Ok(restarted)
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
///
/// Its connection is opened here, beside the start rather than in its way (each
/// new connection parses the whole schema). Until it opens, the writer's own
/// checkpoint still bounds the WAL.
fn checkpoint_loop(readers: &Readers, stop: mpsc::Receiver<()>) {
    /// Turns waited after a failed open before the next try.
    const TURNS_BEFORE_RETRY: u32 = 50;
    let mut conn = None;
    let mut warned = false;
    let mut turns_to_wait = 0;
    let mut checkpointed = 0;
    loop {
        if conn.is_none() && turns_to_wait == 0 {
            match open_connection(&readers.path, false) {
                Ok(opened) => conn = Some(opened),
                Err(e) => {
                    if !warned {
                        tracing::warn!(error = %e, "cannot open the database for checkpoints");
                        warned = true;
                    }
                    turns_to_wait = TURNS_BEFORE_RETRY;
                }
            }
        }
        turns_to_wait = turns_to_wait.saturating_sub(1);
        if !matches!(
            stop.recv_timeout(CHECKPOINT_EVERY),
            Err(mpsc::RecvTimeoutError::Timeout)
        ) {
            return;
        }
        let Some(conn) = &conn else { continue };
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
pub(super) struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Reader>>,
    /// Counts the writer's transactions twice, as each begins and once it is
    /// over (and each WAL restart by two), so the count is odd while one is
    /// under way. A snapshot is current while the count is what it was, even,
    /// just before the snapshot began: then no transaction was under way as it
    /// began, and none has begun since. (Counted only after the commit, a
    /// snapshot begun between the commit and the count held the commit under
    /// the old count while an older snapshot of that count still passed as
    /// current: a second read could see less than the first, an execution ended
    /// but not its last log lines.)
    commits: Arc<AtomicU64>,
    /// How long the writer's transactions took, from BEGIN to COMMIT.
    pub(super) commit_times: Histogram,
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
    /// The writer is about to begin a transaction: the count turns odd, and a
    /// snapshot begun while it is odd may or may not hold the transaction, so
    /// it is never kept (see `commits`).
    fn transaction_begins(&self) {
        self.commits.fetch_add(1, Ordering::SeqCst);
    }

    /// The writer's transaction is over, committed or not: the count is even
    /// again, and higher than any snapshot's that may lack the transaction.
    fn transaction_ended(&self) {
        self.commits.fetch_add(1, Ordering::SeqCst);
    }

    /// Every kept snapshot lets go at its next use (by two, so that the count
    /// stays even between the writer's transactions).
    fn let_go_of_snapshots(&self) {
        self.commits.fetch_add(2, Ordering::SeqCst);
    }

    pub(super) fn with<T>(&self, read: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let idle = self.lock().pop();
        let mut reader = match idle {
            Some(reader) => reader,
            None => Reader {
                conn: open_connection(&self.path, true).map_err(Error::Other)?,
                snapshot: None,
            },
        };
        let commits = self.commits.load(Ordering::SeqCst);
        // Odd: a transaction is under way, and a snapshot may hold it or not.
        let keepable = commits.is_multiple_of(2);
        let current = reader.snapshot.is_some_and(|(counted, began)| {
            keepable
                && counted == commits
                && began.elapsed() < SNAPSHOT_MAX_AGE
                && !reader.conn.is_autocommit()
        });
        if !current {
            reader.end_snapshot();
            // The snapshot itself begins at the first read, after the count.
            if reader.conn.execute_batch("BEGIN").is_ok() {
                reader.snapshot = Some((commits, Instant::now()));
            }
        }
        let result = read(&reader.conn);
        if result.is_err() || !keepable || self.commits.load(Ordering::SeqCst) != commits {
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

/// The embedded store is never shared: the defaults say so, and closing it
/// empties the WAL.
#[async_trait]
impl ClusterStore for SqliteStore {
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
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
