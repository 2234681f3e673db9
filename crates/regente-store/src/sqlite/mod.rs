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
//! data directories of every version upgrade in place; an up-to-date database
//! skips it (`engine::migrated`).
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
pub(crate) use engine::MIGRATIONS;

use std::cell::Cell;

use rusqlite::types::FromSql;
use rusqlite::{Connection, Params};

use crate::rows::RecordRow;
use crate::{Error, Result};

// --- Rows -----------------------------------------------------------------

/// A rusqlite row read through the backends' shared [`RecordRow`], by column name.
struct LiteRow<'r, 's> {
    row: &'r rusqlite::Row<'s>,
    /// Where the next name is looked for first. The readers mostly read the
    /// columns in their SELECT's order, so a lookup compares one name instead of
    /// walking the statement's columns from the first (rusqlite's lookup by
    /// name: a C call, a strlen and a UTF-8 check per column tried, which was 8%
    /// of the server's CPU in result reads).
    next: Cell<usize>,
}

impl<'r, 's> LiteRow<'r, 's> {
    fn new(row: &'r rusqlite::Row<'s>) -> Self {
        LiteRow {
            row,
            next: Cell::new(0),
        }
    }

    fn get<T: FromSql>(&self, column: &str) -> Result<T> {
        let statement = self.row.as_ref();
        let start = self.next.get();
        let index = (start..statement.column_count())
            .chain(0..start)
            .find(|&i| {
                statement
                    .column_name(i)
                    .is_ok_and(|name| name.eq_ignore_ascii_case(column))
            })
            .ok_or_else(|| other(rusqlite::Error::InvalidColumnName(column.to_owned())))?;
        self.next.set(index + 1);
        self.row.get(index).map_err(other)
    }
}

impl RecordRow for LiteRow<'_, '_> {
    fn text(&self, column: &str) -> Result<String> {
        self.get(column)
    }
    fn text_opt(&self, column: &str) -> Result<Option<String>> {
        self.get(column)
    }
    fn int(&self, column: &str) -> Result<i64> {
        self.get(column)
    }
    fn int_opt(&self, column: &str) -> Result<Option<i64>> {
        self.get(column)
    }
    fn int32_opt(&self, column: &str) -> Result<Option<i32>> {
        self.get(column)
    }
    fn real(&self, column: &str) -> Result<f64> {
        self.get(column)
    }
    fn flag(&self, column: &str) -> Result<bool> {
        self.get(column)
    }
    fn bytes(&self, column: &str) -> Result<Vec<u8>> {
        self.get(column)
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
        Some(row) => Ok(Some(from(&LiteRow::new(row))?)),
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
        records.push(from(&LiteRow::new(row))?);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_found_by_name_in_any_order_and_an_unknown_one_is_an_error() {
        let conn = Connection::open_in_memory().unwrap();
        let read = |row: &LiteRow| {
            let last = row.text("c")?;
            let first = row.int("a")?;
            let middle = row.text("B")?;
            let again = row.int("a")?;
            Ok((first, middle, last, again))
        };
        let values = one(&conn, "SELECT 1 AS a, 'two' AS b, 'three' AS c", [], read)
            .unwrap()
            .unwrap();
        assert_eq!(values, (1, "two".to_owned(), "three".to_owned(), 1));
        let unknown = one(&conn, "SELECT 1 AS a", [], |row| row.int("missing"));
        assert!(unknown.is_err());
    }
}
