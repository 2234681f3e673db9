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
//!
//! - [`engine`]: the writer thread, group commit, the readers, checkpoints: all
//!   of the store but its queries.
//! - One module per aggregate with its queries: `users`, `runtimes`, `robots`,
//!   `executions`, `leases`, `events` (the stream, and the helpers every change
//!   writes its events with), `schedules`.
//! - Here: reading rusqlite rows through the shared [`RecordRow`], and the
//!   small statement helpers every module uses.

mod api_keys;
mod audit;
mod credentials;
mod dashboard;
mod engine;
mod events;
mod executions;
mod flows;
mod leases;
mod robots;
mod runtimes;
mod schedules;
mod users;
mod webhooks;

pub use engine::SqliteStore;

use rusqlite::{Connection, Params};

use crate::rows::RecordRow;
use crate::{Error, Result};

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
    fn bytes(&self, column: &str) -> Result<Vec<u8>> {
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
