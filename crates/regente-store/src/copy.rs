//! `regente store copy`: moves a whole store, history included, from one database
//! to another, typically from the embedded SQLite file to PostgreSQL.
//!
//! - The source is read in one read-only snapshot (a read transaction on SQLite,
//!   `REPEATABLE READ READ ONLY` on PostgreSQL), so a server still running on it
//!   cannot make the copy inconsistent; what it writes after the snapshot is not
//!   copied, so stop the servers first. A source whose schema is older than this
//!   binary's is first migrated through the normal open path; a newer one is refused.
//! - The target is opened (created and migrated) through the normal open path, so
//!   its schema is current, then written in one transaction: it must hold no row
//!   at all (else the copy is refused, naming the tables that hold some), and a
//!   failed copy leaves it empty. On PostgreSQL its tables are locked against
//!   writers for the duration.
//! - Every table is copied column by column with its exact values (ids, times, JSON
//!   text, NULLs, package bytes, runtime key hashes, execution `seq`s), in
//!   dependency order, page by page in primary-key order with multi-row INSERTs, so
//!   memory stays bounded however long the history is. On PostgreSQL the execution
//!   sequence is then set past the largest copied `seq`.
//! - PostgreSQL text cannot hold NUL: copying to it, each NUL in text becomes
//!   U+FFFD, as the PostgreSQL store does with what runtimes report.
//! - A table only one backend has (`settings`, the token secret servers on
//!   PostgreSQL share) is copied between two such stores, left empty on a target
//!   coming from the other backend, and reported as left behind when the target
//!   has no place for it.
//!
//! The list of tables and columns below must follow the migrations: the copy checks
//! both databases against it first and refuses to run (rather than silently leave
//! data behind) when a table or a column is unknown to it.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{bail, Context as _};
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteSynchronous};
use sqlx::{Connection as _, Executor as _};
use tracing::info;

use crate::rows::redact;

/// Rows read and written per statement.
const PAGE_ROWS: usize = 500;
/// Bytes of package per page of `robot_versions` (at least one row per page).
const PAGE_BYTES: i64 = 32 * 1024 * 1024;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

/// What a copy did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyReport {
    /// Rows copied, per table, in the order the tables were copied.
    pub tables: Vec<TableCount>,
    /// Tables of the source's backend that the target's has no place for, with
    /// their rows (not copied) and why that is fine.
    pub left_behind: Vec<(TableCount, &'static str)>,
    /// The source's schema was older than this binary's and was migrated first.
    pub source_migrated: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableCount {
    pub table: &'static str,
    pub rows: u64,
}

impl CopyReport {
    /// Rows copied into `table`, if it is one of the store's tables.
    pub fn rows(&self, table: &str) -> Option<u64> {
        self.tables
            .iter()
            .find(|t| t.table == table)
            .map(|t| t.rows)
    }
}

impl fmt::Display for CopyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = self.tables.iter().map(|t| t.table.len()).max().unwrap_or(0);
        for (i, t) in self.tables.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{:<width$}  {:>10}", t.table, t.rows)?;
        }
        for (t, why) in &self.left_behind {
            write!(f, "\n{} not copied ({} rows): {why}", t.table, t.rows)?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    /// 64-bit integer (BIGINT on PostgreSQL).
    Int,
    /// 32-bit integer (INTEGER on PostgreSQL).
    Int32,
    Real,
    /// INTEGER 0/1 on SQLite, BOOLEAN on PostgreSQL.
    Bool,
    Bytes,
}

struct Table {
    name: &'static str,
    columns: &'static [(&'static str, Kind)],
    /// The primary key: pages are read in its order.
    key: &'static [&'static str],
    /// A column whose bytes dominate the row: pages are also bounded by its size.
    bulky: Option<&'static str>,
    /// The one backend that has this table, and what the other does instead.
    only_on: Option<(Backend, &'static str)>,
}

/// Every table of the store, parents before children.
const TABLES: &[Table] = &[
    Table {
        name: "organizations",
        columns: &[
            ("id", Kind::Text),
            ("name", Kind::Text),
            ("is_root", Kind::Bool),
            ("created_at", Kind::Int),
        ],
        key: &["id"],
        bulky: None,
        only_on: None,
    },
    Table {
        name: "users",
        columns: &[
            ("id", Kind::Text),
            ("organization_id", Kind::Text),
            ("username", Kind::Text),
            ("password_hash", Kind::Text),
            ("role", Kind::Text),
            ("created_at", Kind::Int),
        ],
        key: &["id"],
        bulky: None,
        only_on: None,
    },
    Table {
        name: "runtimes",
        columns: &[
            ("id", Kind::Text),
            ("organization_id", Kind::Text),
            ("name", Kind::Text),
            ("key_hash", Kind::Text),
            ("slots", Kind::Int),
            ("last_seen", Kind::Int),
            ("created_at", Kind::Int),
        ],
        key: &["id"],
        bulky: None,
        only_on: None,
    },
    Table {
        name: "robots",
        columns: &[
            ("id", Kind::Text),
            ("organization_id", Kind::Text),
            ("name", Kind::Text),
            ("created_at", Kind::Int),
        ],
        key: &["id"],
        bulky: None,
        only_on: None,
    },
    Table {
        name: "robot_versions",
        columns: &[
            ("robot_id", Kind::Text),
            ("version", Kind::Int),
            ("organization_id", Kind::Text),
            ("sha256", Kind::Text),
            ("manifest", Kind::Text),
            ("size", Kind::Int),
            ("package", Kind::Bytes),
            ("created_at", Kind::Int),
        ],
        key: &["robot_id", "version"],
        bulky: Some("package"),
        only_on: None,
    },
    Table {
        name: "executions",
        columns: &[
            ("seq", Kind::Int),
            ("id", Kind::Text),
            ("organization_id", Kind::Text),
            ("runtime_id", Kind::Text),
            ("robot_id", Kind::Text),
            ("robot_version", Kind::Int),
            ("variables", Kind::Text),
            ("status", Kind::Text),
            ("progress", Kind::Real),
            ("init", Kind::Int),
            ("started", Kind::Int),
            ("end", Kind::Int),
            ("return_value", Kind::Text),
            ("end_reason", Kind::Text),
            ("exit_code", Kind::Int32),
            ("submitted_by", Kind::Text),
            ("canceled_by", Kind::Text),
            ("lease", Kind::Text),
            ("attempt", Kind::Int),
            ("max_attempts", Kind::Int),
            ("last_event_seq", Kind::Int),
            ("cancel_requested", Kind::Bool),
        ],
        key: &["seq"],
        bulky: None,
        only_on: None,
    },
    Table {
        name: "execution_logs",
        columns: &[
            ("execution_id", Kind::Text),
            ("seq", Kind::Int),
            ("organization_id", Kind::Text),
            ("time", Kind::Int),
            ("level", Kind::Text),
            ("message", Kind::Text),
        ],
        key: &["execution_id", "seq"],
        bulky: None,
        only_on: None,
    },
    Table {
        name: "idempotency_keys",
        columns: &[
            ("user_id", Kind::Text),
            ("key", Kind::Text),
            ("fingerprint", Kind::Text),
            ("execution_id", Kind::Text),
            ("created_at", Kind::Int),
        ],
        key: &["user_id", "key"],
        bulky: None,
        only_on: None,
    },
    Table {
        name: "settings",
        columns: &[("name", Kind::Text), ("value", Kind::Bytes)],
        key: &["name"],
        bulky: None,
        only_on: Some((
            Backend::Postgres,
            "it holds the token signing secret servers on PostgreSQL share; a server on \
             SQLite keeps its own in its data directory (or takes --jwt-secret), so tokens \
             signed before the move are refused and their users log in again",
        )),
    },
];

/// The migrations' own bookkeeping: each side's is written by its migrator.
const MIGRATIONS_TABLE: &str = "_sqlx_migrations";

impl Table {
    fn exists_on(&self, backend: Backend) -> bool {
        self.only_on.is_none_or(|(only, _)| only == backend)
    }

    fn column_list(&self) -> String {
        quoted_list(self.columns.iter().map(|(name, _)| *name))
    }

    fn key_list(&self) -> String {
        quoted_list(self.key.iter().copied())
    }

    /// Where each key column sits in a row.
    fn key_positions(&self) -> Vec<usize> {
        self.key
            .iter()
            .map(|key| {
                self.columns
                    .iter()
                    .position(|(name, _)| name == key)
                    .expect("key columns are columns")
            })
            .collect()
    }
}

fn quoted(name: &str) -> String {
    format!("\"{name}\"")
}

fn quoted_list<'a>(names: impl Iterator<Item = &'a str>) -> String {
    names.map(quoted).collect::<Vec<_>>().join(", ")
}

/// One value, as read from the source and written to the target.
#[derive(Debug, Clone)]
enum Cell {
    Text(Option<String>),
    Int(Option<i64>),
    Int32(Option<i32>),
    Real(Option<f64>),
    Bool(Option<bool>),
    Bytes(Option<Vec<u8>>),
}

type Row = Vec<Cell>;

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
    ($module:ident, $db:ty, $conn:ty, $text:expr) => {
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
                    query.push(table.key_list());
                    query.push(") > (");
                    let mut values = query.separated(", ");
                    for cell in after {
                        bind_cell!(values, cell.clone(), as_is);
                    }
                    values.push_unseparated(")");
                }
                query.push(" ORDER BY ");
                query.push(table.key_list());
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
fn as_is(text: Option<String>) -> Option<String> {
    text
}

/// Text PostgreSQL can store: each NUL becomes U+FFFD.
fn without_nul(text: Option<String>) -> Option<String> {
    match text {
        Some(text) if text.contains('\0') => Some(text.replace('\0', "\u{FFFD}")),
        text => text,
    }
}

backend!(on_sqlite, sqlx::Sqlite, SqliteConnection, as_is);
backend!(on_postgres, sqlx::Postgres, PgConnection, without_nul);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    fn of(url: &str) -> anyhow::Result<Backend> {
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

    fn migrator(self) -> &'static Migrator {
        match self {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        }
    }
}

/// A connection to either backend.
enum Conn {
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
    async fn source(url: &str) -> anyhow::Result<Conn> {
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
    async fn target(url: &str) -> anyhow::Result<Conn> {
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

    fn backend(&self) -> Backend {
        match self {
            Conn::Sqlite(_) => Backend::Sqlite,
            Conn::Postgres(_) => Backend::Postgres,
        }
    }

    async fn run(&mut self, sql: &str) -> anyhow::Result<()> {
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

    async fn close(self) {
        let _ = match self {
            Conn::Sqlite(conn) => conn.close().await,
            Conn::Postgres(conn) => conn.close().await,
        };
    }

    async fn strings(&mut self, sql: &str, arg: Option<&str>) -> anyhow::Result<Vec<String>> {
        dispatch!(self, strings(sql, arg))
    }

    /// The database's tables, but the migrations' own.
    async fn tables(&mut self) -> anyhow::Result<BTreeSet<String>> {
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
        Ok(tables)
    }

    async fn columns(&mut self, table: &str) -> anyhow::Result<BTreeSet<String>> {
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
    async fn migrations(&mut self) -> anyhow::Result<Option<Vec<(i64, bool)>>> {
        if !self.tables_all().await?.contains(MIGRATIONS_TABLE) {
            return Ok(None);
        }
        Ok(Some(dispatch!(self, migrations())?))
    }

    async fn tables_all(&mut self) -> anyhow::Result<BTreeSet<String>> {
        let sql = match self.backend() {
            Backend::Sqlite => "SELECT name FROM sqlite_master WHERE type = 'table'",
            Backend::Postgres => {
                "SELECT table_name::text FROM information_schema.tables \
                 WHERE table_schema = current_schema()"
            }
        };
        Ok(self.strings(sql, None).await?.into_iter().collect())
    }

    async fn is_empty(&mut self, table: &Table) -> anyhow::Result<bool> {
        dispatch!(self, is_empty(table))
    }

    async fn count(&mut self, table: &Table) -> anyhow::Result<u64> {
        dispatch!(self, count(table))
    }

    async fn page_rows(&mut self, table: &Table, after: Option<&[Cell]>) -> anyhow::Result<usize> {
        dispatch!(self, page_rows(table, after))
    }

    async fn fetch_page(
        &mut self,
        table: &Table,
        after: Option<&[Cell]>,
        limit: usize,
    ) -> anyhow::Result<Vec<Row>> {
        dispatch!(self, fetch_page(table, after, limit))
    }

    async fn insert(&mut self, table: &Table, rows: Vec<Row>) -> anyhow::Result<()> {
        dispatch!(self, insert(table, rows))
    }
}

/// Copies the whole store at `from_url` into the empty store at `to_url` (see the
/// module's documentation). Either URL may be `sqlite://PATH` or `postgres://...`.
pub async fn copy(from_url: &str, to_url: &str) -> anyhow::Result<CopyReport> {
    Backend::of(from_url).context("--from")?;
    Backend::of(to_url).context("--to")?;
    anyhow::ensure!(
        from_url != to_url,
        "the source and the target are the same database"
    );

    let (mut source, source_migrated) = open_source(from_url).await?;
    // The normal open path creates the target if needed and brings its schema to
    // this binary's; the store itself is not used further.
    drop(
        crate::open(to_url)
            .await
            .with_context(|| format!("cannot open the target database {}", redact(to_url)))?,
    );
    let mut target = Conn::target(to_url).await?;

    let outcome = copy_between(&mut source, &mut target).await;
    let outcome = match outcome {
        Ok(copied) => target
            .run("COMMIT")
            .await
            .context("cannot commit the copy")
            .map(|()| copied),
        Err(e) => {
            let _ = target.run("ROLLBACK").await;
            Err(e)
        }
    };
    let _ = source.run("ROLLBACK").await;
    source.close().await;
    target.close().await;
    let (tables, left_behind) = outcome?;
    Ok(CopyReport {
        tables,
        left_behind,
        source_migrated,
    })
}

/// Opens the source read-only, after migrating it if its schema is older than
/// this binary's. Returns whether it was migrated.
async fn open_source(url: &str) -> anyhow::Result<(Conn, bool)> {
    let mut source = Conn::source(url).await?;
    let applied = source
        .migrations()
        .await
        .with_context(|| format!("cannot read the source database {}", redact(url)))?;
    let Some(applied) = applied else {
        bail!(
            "the source database {} holds no Regente store (it has no schema)",
            redact(url)
        );
    };
    if let Some((version, _)) = applied.iter().find(|(_, success)| !success) {
        bail!(
            "the source database {} has a migration that did not complete (version {version}): \
             start a Regente server on it to finish it first",
            redact(url)
        );
    }
    let known: BTreeSet<i64> = source
        .backend()
        .migrator()
        .iter()
        .filter(|m| !m.migration_type.is_down_migration())
        .map(|m| m.version)
        .collect();
    if let Some((version, _)) = applied.iter().find(|(v, _)| !known.contains(v)) {
        bail!(
            "the source database {} was written by a newer Regente (schema version {version}): \
             copy it with that version or newer",
            redact(url)
        );
    }
    let applied: BTreeSet<i64> = applied.into_iter().map(|(v, _)| v).collect();
    if applied == known {
        return Ok((source, false));
    }
    source.close().await;
    info!("the source's schema is older than this binary's: migrating it first");
    drop(crate::open(url).await.with_context(|| {
        format!(
            "cannot migrate the source database {} to the current schema",
            redact(url)
        )
    })?);
    Ok((Conn::source(url).await?, true))
}

/// Copies every table inside a transaction on `target` that the caller ends.
/// Returns the rows copied per table, and those left behind.
async fn copy_between(source: &mut Conn, target: &mut Conn) -> anyhow::Result<Copied> {
    // One snapshot of the source, however long the copy takes.
    match source.backend() {
        Backend::Sqlite => source.run("BEGIN").await?,
        Backend::Postgres => {
            source
                .run("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                .await?
        }
    }
    match target.backend() {
        // Takes the write lock now, so nothing is written between the check that
        // the target is empty and the copy.
        Backend::Sqlite => target.run("BEGIN IMMEDIATE").await?,
        Backend::Postgres => {
            target.run("BEGIN").await?;
            let names = quoted_list(
                TABLES
                    .iter()
                    .filter(|t| t.exists_on(Backend::Postgres))
                    .map(|t| t.name),
            );
            // Readers may go on; writers (a server started too early) wait.
            target
                .run(&format!("LOCK TABLE {names} IN EXCLUSIVE MODE"))
                .await
                .context("cannot lock the target's tables")?;
        }
    }

    check_schema(source, "source").await?;
    check_schema(target, "target").await?;

    let (from, to) = (source.backend(), target.backend());
    let mut not_empty = Vec::new();
    for table in TABLES.iter().filter(|t| t.exists_on(to)) {
        if !target.is_empty(table).await? {
            not_empty.push(table.name);
        }
    }
    if !not_empty.is_empty() {
        bail!(
            "the target database is not empty (rows in {}): store copy writes only into an empty store",
            not_empty.join(", ")
        );
    }

    let mut counts = Vec::with_capacity(TABLES.len());
    let mut left_behind = Vec::new();
    for table in TABLES.iter().filter(|t| t.exists_on(from)) {
        if !table.exists_on(to) {
            let rows = source.count(table).await?;
            if let Some((_, why)) = table.only_on {
                left_behind.push((
                    TableCount {
                        table: table.name,
                        rows,
                    },
                    why,
                ));
            }
            continue;
        }
        let rows = copy_table(source, target, table)
            .await
            .with_context(|| format!("cannot copy the table {}", table.name))?;
        info!(table = table.name, rows, "copied");
        counts.push(TableCount {
            table: table.name,
            rows,
        });
    }

    if target.backend() == Backend::Postgres {
        // The next run queued on the target comes after every copied one. (setval
        // is not undone by a rollback: a failed copy leaves at worst a higher start.)
        target
            .run(
                "SELECT setval(pg_get_serial_sequence('executions', 'seq'), \
                 COALESCE(MAX(seq), 0) + 1, false) FROM executions",
            )
            .await
            .context("cannot advance the executions sequence")?;
    }
    Ok((counts, left_behind))
}

type Copied = (Vec<TableCount>, Vec<(TableCount, &'static str)>);

/// Checks that the database has exactly the tables and columns the copy knows.
async fn check_schema(conn: &mut Conn, side: &str) -> anyhow::Result<()> {
    let tables: Vec<&Table> = TABLES
        .iter()
        .filter(|t| t.exists_on(conn.backend()))
        .collect();
    let known: BTreeSet<String> = tables.iter().map(|t| t.name.to_owned()).collect();
    let found = conn.tables().await?;
    if let Some(table) = found.difference(&known).next() {
        bail!("the {side} has a table {table:?} that this version of store copy does not know");
    }
    if let Some(table) = known.difference(&found).next() {
        bail!("the {side} has no table {table:?}");
    }
    for table in tables {
        let found = conn.columns(table.name).await?;
        let known: BTreeSet<String> = table.columns.iter().map(|(c, _)| c.to_string()).collect();
        if let Some(column) = found.difference(&known).next() {
            bail!(
                "the {side}'s table {} has a column {column:?} that this version of store copy does not know",
                table.name
            );
        }
        if let Some(column) = known.difference(&found).next() {
            bail!("the {side}'s table {} has no column {column:?}", table.name);
        }
    }
    Ok(())
}

async fn copy_table(source: &mut Conn, target: &mut Conn, table: &Table) -> anyhow::Result<u64> {
    let key_positions = table.key_positions();
    let mut after: Option<Vec<Cell>> = None;
    let mut copied = 0u64;
    loop {
        let limit = source.page_rows(table, after.as_deref()).await?;
        let rows = source.fetch_page(table, after.as_deref(), limit).await?;
        let Some(last) = rows.last() else {
            break;
        };
        after = Some(key_positions.iter().map(|&i| last[i].clone()).collect());
        let count = rows.len();
        target.insert(table, rows).await?;
        copied += count as u64;
        if copied % 100_000 < count as u64 {
            info!(table = table.name, rows = copied, "copying");
        }
        if count < limit {
            break;
        }
    }
    Ok(copied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_listed_once_with_keys_among_their_columns() {
        let names: BTreeSet<&str> = TABLES.iter().map(|t| t.name).collect();
        assert_eq!(names.len(), TABLES.len());
        for table in TABLES {
            assert_eq!(table.key_positions().len(), table.key.len());
            if let Some(bulky) = table.bulky {
                assert!(table.columns.iter().any(|(name, _)| *name == bulky));
            }
        }
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact("postgres://u:secret@h:5432/db"),
            "\"postgres://u:***@h:5432/db\""
        );
        assert_eq!(redact("sqlite://./a.db"), "\"sqlite://./a.db\"");
    }

    #[test]
    fn report_prints_one_line_per_table() {
        let report = CopyReport {
            tables: vec![
                TableCount {
                    table: "users",
                    rows: 3,
                },
                TableCount {
                    table: "execution_logs",
                    rows: 12,
                },
            ],
            left_behind: vec![(
                TableCount {
                    table: "settings",
                    rows: 1,
                },
                "why",
            )],
            source_migrated: false,
        };
        assert_eq!(
            report.to_string(),
            "users                    3\nexecution_logs          12\nsettings not copied (1 rows): why"
        );
        assert_eq!(report.rows("execution_logs"), Some(12));
        assert_eq!(report.rows("nope"), None);
    }
}
