//! What both backends share: reading rows into records, mapping driver errors,
//! and the statements that are built the same way on either database.
//!
//! The differences stay in the backends: placeholders (`?` on SQLite, `$1` on
//! PostgreSQL) are written by [`QueryBuilder`] here and by hand there, booleans
//! are INTEGER 0/1 on SQLite and BOOLEAN on PostgreSQL (sqlx decodes both as
//! `bool`), and only PostgreSQL rewrites NUL in text it stores.

use std::collections::HashMap;

use regente_core::{ExecutionStatus, Role};
use sqlx::query::Query;
use sqlx::{
    ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Pool, QueryBuilder, Row, Type,
};

use crate::{
    Error, Execution, ExecutionFilter, Lease, LogLine, Millis, Organization, Result, Robot,
    RobotVersion, Runtime, User,
};

pub(crate) fn other(error: sqlx::Error) -> Error {
    Error::Other(error.into())
}

/// Maps a unique-constraint violation to [`Error::Conflict`] naming `what`.
pub(crate) fn conflict_as(what: &'static str) -> impl Fn(sqlx::Error) -> Error {
    move |error| match &error {
        sqlx::Error::Database(db) if db.is_unique_violation() => Error::Conflict(what),
        _ => other(error),
    }
}

/// A row of either backend, read column by column by name. The values of one
/// type decode alike on both (a SQLite INTEGER 0/1 and a PostgreSQL BOOLEAN are
/// both a `bool`).
pub(crate) trait RecordRow {
    fn text(&self, column: &str) -> Result<String>;
    fn text_opt(&self, column: &str) -> Result<Option<String>>;
    fn int(&self, column: &str) -> Result<i64>;
    fn int_opt(&self, column: &str) -> Result<Option<i64>>;
    fn int32_opt(&self, column: &str) -> Result<Option<i32>>;
    fn real(&self, column: &str) -> Result<f64>;
    fn flag(&self, column: &str) -> Result<bool>;
}

impl<R> RecordRow for R
where
    R: Row,
    for<'c> &'c str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i32: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> f64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> bool: Decode<'r, R::Database> + Type<R::Database>,
{
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
}

/// `args` of a statement that takes none.
pub(crate) const NO_ARGS: &[&str] = &[];

/// `sql` with `args` bound in order.
fn bound<'a, DB, A>(sql: &'a str, args: &[A]) -> Query<'a, DB, DB::Arguments<'a>>
where
    DB: Database,
    A: Copy + 'a + Encode<'a, DB> + Type<DB>,
{
    args.iter()
        .fold(sqlx::query(sql), |query, arg| query.bind(*arg))
}

/// The records `sql` selects with `args` bound in order, each read by
/// `from`. (`sql` has the backend's own placeholders.)
pub(crate) async fn fetch_all<'a, DB, A, T>(
    pool: &Pool<DB>,
    sql: &'a str,
    args: &[A],
    from: fn(&DB::Row) -> Result<T>,
) -> Result<Vec<T>>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments<'a>: IntoArguments<'a, DB>,
    A: Copy + 'a + Encode<'a, DB> + Type<DB>,
{
    let rows = bound(sql, args).fetch_all(pool).await.map_err(other)?;
    rows.iter().map(from).collect()
}

/// The record `sql` selects with `args` bound in order, if any, read
/// by `from`.
pub(crate) async fn fetch_optional<'a, DB, A, T>(
    pool: &Pool<DB>,
    sql: &'a str,
    args: &[A],
    from: fn(&DB::Row) -> Result<T>,
) -> Result<Option<T>>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments<'a>: IntoArguments<'a, DB>,
    A: Copy + 'a + Encode<'a, DB> + Type<DB>,
{
    let row = bound(sql, args).fetch_optional(pool).await.map_err(other)?;
    row.as_ref().map(from).transpose()
}

fn role_of(text: &str) -> Result<Role> {
    Role::parse(text)
        .ok_or_else(|| Error::Other(anyhow::anyhow!("stored role {text:?} is unknown")))
}

pub(crate) fn status_of(row: &impl RecordRow) -> Result<ExecutionStatus> {
    let status = row.text("status")?;
    ExecutionStatus::parse(&status)
        .ok_or_else(|| Error::Other(anyhow::anyhow!("stored status {status:?} is unknown")))
}

pub(crate) fn json_column(row: &impl RecordRow, column: &str) -> Result<Option<serde_json::Value>> {
    row.text_opt(column)?
        .map(|text| {
            serde_json::from_str(&text)
                .map_err(|e| Error::Other(anyhow::anyhow!("stored {column} is not JSON: {e}")))
        })
        .transpose()
}

pub(crate) fn user_from(row: &impl RecordRow) -> Result<User> {
    Ok(User {
        id: row.text("id")?,
        organization_id: row.text("organization_id")?,
        username: row.text("username")?,
        password_hash: row.text("password_hash")?,
        role: role_of(&row.text("role")?)?,
        created_at: row.int("created_at")?,
    })
}

pub(crate) fn organization_from(row: &impl RecordRow) -> Result<Organization> {
    Ok(Organization {
        id: row.text("id")?,
        name: row.text("name")?,
        is_root: row.flag("is_root")?,
        created_at: row.int("created_at")?,
    })
}

pub(crate) fn runtime_from(row: &impl RecordRow) -> Result<Runtime> {
    Ok(Runtime {
        id: row.text("id")?,
        organization_id: row.text("organization_id")?,
        name: row.text("name")?,
        slots: row.int("slots")? as u32,
        last_seen: row.int_opt("last_seen")?,
        created_at: row.int("created_at")?,
    })
}

pub(crate) fn robot_version_from(row: &impl RecordRow) -> Result<RobotVersion> {
    Ok(RobotVersion {
        version: row.int("version")? as u32,
        sha256: row.text("sha256")?,
        manifest: row.text("manifest")?,
        size: row.int("size")? as u64,
        created_at: row.int("created_at")?,
    })
}

/// A robot from its row and its versions, oldest first.
pub(crate) fn robot_from(row: &impl RecordRow, versions: Vec<RobotVersion>) -> Result<Robot> {
    Ok(Robot {
        id: row.text("id")?,
        organization_id: row.text("organization_id")?,
        name: row.text("name")?,
        created_at: row.int("created_at")?,
        versions,
    })
}

/// Robots from their rows and the rows of all their versions (which name their
/// `robot_id`, in version order), in the order of `rows`.
pub(crate) fn robots_from<R: RecordRow>(rows: &[R], version_rows: &[R]) -> Result<Vec<Robot>> {
    let mut versions: HashMap<String, Vec<RobotVersion>> = HashMap::new();
    for row in version_rows {
        versions
            .entry(row.text("robot_id")?)
            .or_default()
            .push(robot_version_from(row)?);
    }
    rows.iter()
        .map(|row| {
            let id = row.text("id")?;
            robot_from(row, versions.remove(&id).unwrap_or_default())
        })
        .collect()
}

pub(crate) fn lease_from(row: &impl RecordRow) -> Result<Lease> {
    Ok(Lease {
        execution_id: row.text("id")?,
        lease: row.text("lease")?,
        runtime_id: row.text("runtime_id")?,
        status: status_of(row)?,
        cancel_requested: row.flag("cancel_requested")?,
    })
}

pub(crate) fn log_line_from(row: &impl RecordRow) -> Result<LogLine> {
    Ok(LogLine {
        seq: row.int("seq")?,
        time: row.int("time")?,
        level: row.text("level")?,
        message: row.text("message")?,
    })
}

/// The columns [`execution_from`] reads.
pub(crate) const EXECUTION_COLUMNS: &str = "seq, id, organization_id, runtime_id, robot_id, \
     robot_version, variables, status, progress, init, started, \"end\", return_value, \
     end_reason, exit_code, submitted_by, canceled_by";

pub(crate) fn execution_from(row: &impl RecordRow) -> Result<Execution> {
    Ok(Execution {
        id: row.text("id")?,
        organization_id: row.text("organization_id")?,
        runtime_id: row.text("runtime_id")?,
        robot_id: row.text("robot_id")?,
        robot_version: row.int("robot_version")? as u32,
        variables: json_column(row, "variables")?.unwrap_or_default(),
        status: status_of(row)?,
        progress: row.real("progress")?,
        init: row.int("init")?,
        started: row.int_opt("started")?,
        end: row.int_opt("end")?,
        return_value: json_column(row, "return_value")?,
        end_reason: row.text_opt("end_reason")?,
        exit_code: row.int32_opt("exit_code")?,
        submitted_by: row.text_opt("submitted_by")?,
        canceled_by: row.text_opt("canceled_by")?,
        seq: row.int("seq")?,
    })
}

/// `SELECT` of an organisation's executions matching `filter`, newest first; the
/// builder writes each backend's placeholders.
pub(crate) fn list_executions_query<'a, DB>(
    organization_id: &'a str,
    filter: &'a ExecutionFilter,
) -> QueryBuilder<'a, DB>
where
    DB: Database,
    DB::Arguments<'a>: Default,
    &'a str: Encode<'a, DB> + Type<DB>,
    Millis: Encode<'a, DB> + Type<DB>,
{
    let mut query = QueryBuilder::new(format!(
        "SELECT {EXECUTION_COLUMNS} FROM executions WHERE organization_id = "
    ));
    query.push_bind(organization_id);
    if let Some(status) = filter.status {
        query.push(" AND status = ").push_bind(status.as_str());
    }
    if let Some(robot_id) = &filter.robot_id {
        query.push(" AND robot_id = ").push_bind(robot_id.as_str());
    }
    if let Some(runtime_id) = &filter.runtime_id {
        query
            .push(" AND runtime_id = ")
            .push_bind(runtime_id.as_str());
    }
    if let Some(from) = filter.from {
        query.push(" AND init >= ").push_bind(from);
    }
    if let Some(to) = filter.to {
        query.push(" AND init < ").push_bind(to);
    }
    if let Some(before) = filter.before_seq {
        query.push(" AND seq < ").push_bind(before);
    }
    query
        .push(" ORDER BY seq DESC LIMIT ")
        .push_bind(filter.limit as i64);
    query
}

/// A reported progress as stored: within 0..=100, NaN as 0.
pub(crate) fn clamp_progress(value: f64) -> f64 {
    if value.is_nan() {
        0.0
    } else {
        value.clamp(0.0, 100.0)
    }
}

/// The URL without its password, for messages.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return format!("{url:?}");
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((credentials, host)) if credentials.contains(':') => {
            let user = credentials.split(':').next().unwrap_or_default();
            format!("\"{scheme}://{user}:***@{host}{path}\"")
        }
        _ => format!("{url:?}"),
    }
}
