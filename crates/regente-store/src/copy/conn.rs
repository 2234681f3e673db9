//! A connection to either backend, with the statements of the copy written once
//! for both (a macro instantiated per backend).

use std::collections::BTreeSet;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{bail, Context as _};
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteSynchronous};
use sqlx::{Connection as _, Executor as _};

use super::tables::{quoted, Kind, Table, MIGRATIONS_TABLE, SQLITE_MIGRATION_DATA};
use crate::redact;

/// Rows read and written per statement.
pub(super) const PAGE_ROWS: usize = 500;
/// Bytes of package per page of `robot_versions` (at least one row per page).
pub(super) const PAGE_BYTES: i64 = 32 * 1024 * 1024;

pub(super) static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

/// One value, as read from the source and written to the target.
#[derive(Debug, Clone)]
pub(super) enum Cell {
    Text(Option<String>),
    Int(Option<i64>),
    Int32(Option<i32>),
    Real(Option<f64>),
    Bool(Option<bool>),
    Bytes(Option<Vec<u8>>),
}

pub(super) type Row = Vec<Cell>;

/// Binds a [`Cell`] on a `QueryBuilder` or a `Separated`, text through `$text`.
macro_rules! bind_cell {
    ($builder:expr, $cell:expr, $text:expr) => {
        match $cell {
            Cell::Text(v) => {
                $builder.push_bind($text(v));
            }
            Cell::Int(v) => {
                $builder.push_bind(v);
            }
            Cell::Int32(v) => {
                $builder.push_bind(v);
            }
            Cell::Real(v) => {
                $builder.push_bind(v);
            }
            Cell::Bool(v) => {
                $builder.push_bind(v);
            }
            Cell::Bytes(v) => {
                $builder.push_bind(v);
            }
        }
    };
}

/// The statements of one backend, written once for both.
macro_rules! backend {
    ($module:ident, $backend:expr, $db:ty, $conn:ty, $text:expr) => {
        mod $module {
            use super::*;
            use sqlx::{QueryBuilder, Row as _};

            fn decode(row: &<$db as sqlx::Database>::Row, table: &Table) -> anyhow::Result<Row> {
                table
                    .columns
                    .iter()
                    .enumerate()
                    .map(|(i, (name, kind))| {
                        let cell = match kind {
                            Kind::Text => row.try_get(i).map(Cell::Text),
                            Kind::Int => row.try_get(i).map(Cell::Int),
                            Kind::Int32 => row.try_get(i).map(Cell::Int32),
                            Kind::Real => row.try_get(i).map(Cell::Real),
                            Kind::Bool => row.try_get(i).map(Cell::Bool),
                            Kind::Bytes => row.try_get(i).map(Cell::Bytes),
                        };
                        cell.with_context(|| format!("cannot read {}.{name}", table.name))
                    })
                    .collect()
            }

            /// ` WHERE (key) > (after) ORDER BY key`
            fn push_page(query: &mut QueryBuilder<'_, $db>, table: &Table, after: Option<&[Cell]>) {
                if let Some(after) = after {
                    query.push(" WHERE (");
                    query.push(table.key_list($backend));
                    query.push(") > (");
                    let mut values = query.separated(", ");
                    for cell in after {
                        bind_cell!(values, cell.clone(), as_is);
                    }
                    values.push_unseparated(")");
                }
                query.push(" ORDER BY ");
                query.push(table.key_list($backend));
            }

            /// How many rows the next page may hold: [`PAGE_ROWS`], fewer when the
            /// table's bulky column would take more than [`PAGE_BYTES`].
            pub(super) async fn page_rows(
                conn: &mut $conn,
                table: &Table,
                after: Option<&[Cell]>,
            ) -> anyhow::Result<usize> {
                let Some(bulky) = table.bulky else {
                    return Ok(PAGE_ROWS);
                };
                let mut query = QueryBuilder::<$db>::new("SELECT CAST(length(");
                query.push(quoted(bulky));
                query.push(") AS BIGINT) FROM ");
                query.push(quoted(table.name));
                push_page(&mut query, table, after);
                query.push(" LIMIT ");
                query.push_bind(PAGE_ROWS as i64);
                let sizes = query.build().fetch_all(&mut *conn).await?;
                let (mut rows, mut bytes) = (0, 0i64);
                for size in sizes {
                    let size: Option<i64> = size.try_get(0)?;
                    let size = size.unwrap_or(0);
                    if rows > 0 && bytes + size > PAGE_BYTES {
                        break;
                    }
                    rows += 1;
                    bytes += size;
                }
                Ok(rows.max(1))
            }

            /// The rows after `after` in key order, at most `limit` of them.
            pub(super) async fn fetch_page(
                conn: &mut $conn,
                table: &Table,
                after: Option<&[Cell]>,
                limit: usize,
            ) -> anyhow::Result<Vec<Row>> {
                let mut query = QueryBuilder::<$db>::new("SELECT ");
                query.push(table.column_list());
                query.push(" FROM ");
                query.push(quoted(table.name));
                push_page(&mut query, table, after);
                query.push(" LIMIT ");
                query.push_bind(limit as i64);
                let rows = query.build().fetch_all(&mut *conn).await?;
                rows.iter().map(|row| decode(row, table)).collect()
            }

            pub(super) async fn insert(
                conn: &mut $conn,
                table: &Table,
                rows: Vec<Row>,
            ) -> anyhow::Result<()> {
                if rows.is_empty() {
                    return Ok(());
                }
                let mut query = QueryBuilder::<$db>::new("INSERT INTO ");
                query.push(quoted(table.name));
                query.push(" (");
                query.push(table.column_list());
                query.push(") ");
                query.push_values(rows, |mut values, row| {
                    for cell in row {
                        bind_cell!(values, cell, $text);
                    }
                });
                query.build().execute(&mut *conn).await?;
                Ok(())
            }

            pub(super) async fn is_empty(conn: &mut $conn, table: &Table) -> anyhow::Result<bool> {
                let sql = format!("SELECT 1 FROM {} LIMIT 1", quoted(table.name));
                Ok(sqlx::query(&sql)
                    .fetch_optional(&mut *conn)
                    .await?
                    .is_none())
            }

            pub(super) async fn count(conn: &mut $conn, table: &Table) -> anyhow::Result<u64> {
                let sql = format!("SELECT COUNT(*) FROM {}", quoted(table.name));
                let count: i64 = sqlx::query_scalar(&sql).fetch_one(&mut *conn).await?;
                Ok(count as u64)
            }

            /// How many events are at or before (`txid`, `seq`) in stream order.
            pub(super) async fn events_up_to(
                conn: &mut $conn,
                txid: i64,
                seq: i64,
            ) -> anyhow::Result<u64> {
                let count: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM events WHERE txid < $1 OR (txid = $1 AND seq <= $2)",
                )
                .bind(txid)
                .bind(seq)
                .fetch_one(&mut *conn)
                .await?;
                Ok(count as u64)
            }

            /// The single text column `sql` answers, `arg` bound to its parameter if any.
            pub(super) async fn strings(
                conn: &mut $conn,
                sql: &str,
                arg: Option<&str>,
            ) -> anyhow::Result<Vec<String>> {
                let mut query = sqlx::query_scalar::<_, String>(sql);
                if let Some(arg) = arg {
                    query = query.bind(arg.to_owned());
                }
                Ok(query.fetch_all(&mut *conn).await?)
            }

            pub(super) async fn migrations(conn: &mut $conn) -> anyhow::Result<Vec<(i64, bool)>> {
                let sql =
                    format!("SELECT version, success FROM {MIGRATIONS_TABLE} ORDER BY version");
                Ok(sqlx::query_as(&sql).fetch_all(&mut *conn).await?)
            }
        }
    };
}

/// Text stored as it is read.
pub(super) fn as_is(text: Option<String>) -> Option<String> {
    text
}

/// Text PostgreSQL can store: each NUL becomes U+FFFD.
pub(super) fn without_nul(text: Option<String>) -> Option<String> {
    match text {
        Some(text) if text.contains('\0') => Some(text.replace('\0', "\u{FFFD}")),
        text => text,
    }
}

backend!(
    on_sqlite,
    Backend::Sqlite,
    sqlx::Sqlite,
    SqliteConnection,
    as_is
);
backend!(
    on_postgres,
    Backend::Postgres,
    sqlx::Postgres,
    PgConnection,
    without_nul
);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub(super) fn of(url: &str) -> anyhow::Result<Backend> {
        if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Backend::Postgres)
        } else {
            let scheme = url.split_once(':').map_or("", |(scheme, _)| scheme);
            bail!(
                "unsupported database URL scheme {scheme:?}: use sqlite://PATH or postgres://USER:PASSWORD@HOST:PORT/DATABASE"
            )
        }
    }

    pub(super) fn migrator(self) -> &'static Migrator {
        match self {
            Backend::Sqlite => &crate::sqlite::MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        }
    }
}

/// A connection to either backend.
pub(super) enum Conn {
    Sqlite(SqliteConnection),
    Postgres(PgConnection),
}

macro_rules! dispatch {
    ($conn:expr, $function:ident($($arg:expr),*)) => {
        match $conn {
            Conn::Sqlite(conn) => on_sqlite::$function(conn, $($arg),*).await,
            Conn::Postgres(conn) => on_postgres::$function(conn, $($arg),*).await,
        }
    };
}

impl Conn {
    /// A read-only connection to the source. It never creates a database.
    pub(super) async fn source(url: &str) -> anyhow::Result<Conn> {
        let context = || format!("cannot open the source database {}", redact(url));
        Ok(match Backend::of(url)? {
            Backend::Sqlite => {
                let options = SqliteConnectOptions::from_str(url)
                    .with_context(context)?
                    .create_if_missing(false)
                    .read_only(true)
                    .busy_timeout(Duration::from_secs(30));
                Conn::Sqlite(
                    SqliteConnection::connect_with(&options)
                        .await
                        .with_context(context)?,
                )
            }
            Backend::Postgres => {
                let options = PgConnectOptions::from_str(url)
                    .with_context(context)?
                    .application_name("regente store copy (source)");
                Conn::Postgres(
                    PgConnection::connect_with(&options)
                        .await
                        .with_context(context)?,
                )
            }
        })
    }

    /// A connection to the target, whose commit is durable.
    pub(super) async fn target(url: &str) -> anyhow::Result<Conn> {
        let context = || format!("cannot open the target database {}", redact(url));
        Ok(match Backend::of(url)? {
            Backend::Sqlite => {
                let options = SqliteConnectOptions::from_str(url)
                    .with_context(context)?
                    .create_if_missing(false)
                    .synchronous(SqliteSynchronous::Full)
                    .foreign_keys(true)
                    .busy_timeout(Duration::from_secs(30));
                Conn::Sqlite(
                    SqliteConnection::connect_with(&options)
                        .await
                        .with_context(context)?,
                )
            }
            Backend::Postgres => {
                let options = PgConnectOptions::from_str(url)
                    .with_context(context)?
                    .application_name("regente store copy (target)");
                let mut conn = PgConnection::connect_with(&options)
                    .await
                    .with_context(context)?;
                conn.execute("SET synchronous_commit = on").await?;
                Conn::Postgres(conn)
            }
        })
    }

    pub(super) fn backend(&self) -> Backend {
        match self {
            Conn::Sqlite(_) => Backend::Sqlite,
            Conn::Postgres(_) => Backend::Postgres,
        }
    }

    pub(super) async fn run(&mut self, sql: &str) -> anyhow::Result<()> {
        match self {
            Conn::Sqlite(conn) => {
                conn.execute(sql).await?;
            }
            Conn::Postgres(conn) => {
                conn.execute(sql).await?;
            }
        }
        Ok(())
    }

    pub(super) async fn close(self) {
        let _ = match self {
            Conn::Sqlite(conn) => conn.close().await,
            Conn::Postgres(conn) => conn.close().await,
        };
    }

    pub(super) async fn strings(
        &mut self,
        sql: &str,
        arg: Option<&str>,
    ) -> anyhow::Result<Vec<String>> {
        dispatch!(self, strings(sql, arg))
    }

    /// The database's tables, but the migrations' own.
    pub(super) async fn tables(&mut self) -> anyhow::Result<BTreeSet<String>> {
        let sql = match self.backend() {
            Backend::Sqlite => {
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
            }
            Backend::Postgres => {
                "SELECT table_name::text FROM information_schema.tables \
                 WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'"
            }
        };
        let mut tables: BTreeSet<String> = self.strings(sql, None).await?.into_iter().collect();
        tables.remove(MIGRATIONS_TABLE);
        if self.backend() == Backend::Sqlite {
            tables.remove(SQLITE_MIGRATION_DATA);
        }
        Ok(tables)
    }

    pub(super) async fn columns(&mut self, table: &str) -> anyhow::Result<BTreeSet<String>> {
        let sql = match self.backend() {
            Backend::Sqlite => "SELECT name FROM pragma_table_info(?1)",
            Backend::Postgres => {
                "SELECT column_name::text FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND table_name = $1"
            }
        };
        Ok(self.strings(sql, Some(table)).await?.into_iter().collect())
    }

    /// Versions applied by the migrator, with whether each succeeded; `None`
    /// when the database was never migrated.
    pub(super) async fn migrations(&mut self) -> anyhow::Result<Option<Vec<(i64, bool)>>> {
        if !self.tables_all().await?.contains(MIGRATIONS_TABLE) {
            return Ok(None);
        }
        Ok(Some(dispatch!(self, migrations())?))
    }

    pub(super) async fn tables_all(&mut self) -> anyhow::Result<BTreeSet<String>> {
        let sql = match self.backend() {
            Backend::Sqlite => "SELECT name FROM sqlite_master WHERE type = 'table'",
            Backend::Postgres => {
                "SELECT table_name::text FROM information_schema.tables \
                 WHERE table_schema = current_schema()"
            }
        };
        Ok(self.strings(sql, None).await?.into_iter().collect())
    }

    pub(super) async fn is_empty(&mut self, table: &Table) -> anyhow::Result<bool> {
        dispatch!(self, is_empty(table))
    }

    pub(super) async fn count(&mut self, table: &Table) -> anyhow::Result<u64> {
        dispatch!(self, count(table))
    }

    pub(super) async fn page_rows(
        &mut self,
        table: &Table,
        after: Option<&[Cell]>,
    ) -> anyhow::Result<usize> {
        dispatch!(self, page_rows(table, after))
    }

    pub(super) async fn fetch_page(
        &mut self,
        table: &Table,
        after: Option<&[Cell]>,
        limit: usize,
    ) -> anyhow::Result<Vec<Row>> {
        dispatch!(self, fetch_page(table, after, limit))
    }

    pub(super) async fn events_up_to(&mut self, txid: i64, seq: i64) -> anyhow::Result<u64> {
        dispatch!(self, events_up_to(txid, seq))
    }

    pub(super) async fn insert(&mut self, table: &Table, rows: Vec<Row>) -> anyhow::Result<()> {
        dispatch!(self, insert(table, rows))
    }
}
