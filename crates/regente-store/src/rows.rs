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
    Change, Error, EventRecord, Execution, ExecutionFilter, Lease, LogLine, LostOutcome, Millis,
    Organization, Result, Robot, RobotVersion, Runtime, User,
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

/// The robots, in their order, each given its versions from `versions`
/// (`(robot_id, version)` pairs in version order).
pub(crate) fn robots_with_versions(
    robots: Vec<Robot>,
    versions: Vec<(String, RobotVersion)>,
) -> Vec<Robot> {
    let mut by_robot: HashMap<String, Vec<RobotVersion>> = HashMap::new();
    for (robot_id, version) in versions {
        by_robot.entry(robot_id).or_default().push(version);
    }
    robots
        .into_iter()
        .map(|mut robot| {
            robot.versions = by_robot.remove(&robot.id).unwrap_or_default();
            robot
        })
        .collect()
}

/// A robot version with the id of its robot, from a row that has `robot_id`.
pub(crate) fn robot_id_and_version_from(row: &impl RecordRow) -> Result<(String, RobotVersion)> {
    Ok((row.text("robot_id")?, robot_version_from(row)?))
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

/// A value [`execution_conditions`] compares with.
#[derive(Debug, Clone, Copy)]
pub(crate) enum FilterValue<'a> {
    Text(&'a str),
    Int(i64),
}

/// The conditions of an organisation's executions matching `filter`: each is
/// `column operator` awaiting one value, joined with `AND`. Each backend writes
/// its own placeholders.
pub(crate) fn execution_conditions<'a>(
    organization_id: &'a str,
    filter: &'a ExecutionFilter,
) -> Vec<(&'static str, FilterValue<'a>)> {
    let mut conditions = vec![("organization_id =", FilterValue::Text(organization_id))];
    if let Some(status) = filter.status {
        conditions.push(("status =", FilterValue::Text(status.as_str())));
    }
    if let Some(robot_id) = &filter.robot_id {
        conditions.push(("robot_id =", FilterValue::Text(robot_id)));
    }
    if let Some(runtime_id) = &filter.runtime_id {
        conditions.push(("runtime_id =", FilterValue::Text(runtime_id)));
    }
    if let Some(from) = filter.from {
        conditions.push(("init >=", FilterValue::Int(from)));
    }
    if let Some(to) = filter.to {
        conditions.push(("init <", FilterValue::Int(to)));
    }
    if let Some(before) = filter.before_seq {
        conditions.push(("seq <", FilterValue::Int(before)));
    }
    conditions
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
    let mut query = QueryBuilder::new(format!("SELECT {EXECUTION_COLUMNS} FROM executions WHERE "));
    for (index, (condition, value)) in execution_conditions(organization_id, filter)
        .into_iter()
        .enumerate()
    {
        if index > 0 {
            query.push(" AND ");
        }
        query.push(condition).push(" ");
        match value {
            FilterValue::Text(text) => query.push_bind(text),
            FilterValue::Int(number) => query.push_bind(number),
        };
    }
    query
        .push(" ORDER BY seq DESC LIMIT ")
        .push_bind(filter.limit as i64);
    query
}

/// What an execution's row says before a batch of events is applied.
#[derive(Debug, Clone)]
pub(crate) struct EventTarget {
    pub status: ExecutionStatus,
    pub progress: f64,
    /// JSON text.
    pub return_value: Option<String>,
    pub last_event_seq: u64,
    pub init: Millis,
}

/// A batch of events applied to an [`EventTarget`]: what to write.
#[derive(Debug)]
pub(crate) struct AppliedEvents<'e> {
    /// The new state; `last_event_seq` is the last event applied.
    pub target: EventTarget,
    /// The log lines to insert: (event, level, message).
    pub lines: Vec<(&'e EventRecord, &'e str, &'e str)>,
    /// When the batch ends the execution: (end time, exit code, reason).
    pub ending: Option<(Millis, Option<i32>, &'e str)>,
}

/// Applies the events in order, each once: copies already applied (sent again
/// after a reconnect) are skipped, and a gap or an event after the end stops
/// the batch (the agent sends the rest again). `None` when no event was new:
/// nothing needs writing.
pub(crate) fn apply_events(
    mut target: EventTarget,
    events: &[EventRecord],
) -> Option<AppliedEvents<'_>> {
    let before = target.last_event_seq;
    let mut lines = Vec::new();
    let mut ending = None;
    for event in events {
        if event.seq <= target.last_event_seq {
            continue;
        }
        if event.seq != target.last_event_seq + 1 || target.status.is_ended() {
            break;
        }
        match &event.change {
            Change::Log { level, message } => lines.push((event, level.as_str(), message.as_str())),
            Change::Progress(value) => target.progress = clamp_progress(*value),
            Change::Return(value) => target.return_value = Some(value.to_string()),
            Change::Ended {
                status,
                exit_code,
                reason,
            } => {
                target.status = *status;
                if target.status == ExecutionStatus::Finished {
                    target.progress = 100.0;
                }
                ending = Some((event.time.max(target.init), *exit_code, reason.as_str()));
            }
        }
        target.last_event_seq = event.seq;
    }
    (target.last_event_seq != before).then_some(AppliedEvents {
        target,
        lines,
        ending,
    })
}

/// The state [`apply_events`] starts from, read from a row with the columns
/// `status, progress, return_value, last_event_seq, init`.
pub(crate) fn event_target_from(row: &impl RecordRow) -> Result<EventTarget> {
    Ok(EventTarget {
        status: status_of(row)?,
        progress: row.real("progress")?,
        return_value: row.text_opt("return_value")?,
        last_event_seq: row.int("last_event_seq")? as u64,
        init: row.int("init")?,
    })
}

/// The columns [`live_lease_from`] reads.
pub(crate) const LIVE_LEASE_COLUMNS: &str =
    "organization_id, status, attempt, max_attempts, last_event_seq, cancel_requested, progress";

/// An execution under a live lease, as [`plan_lease_end`] needs it.
#[derive(Debug, Clone)]
pub(crate) struct LiveLease {
    pub organization_id: String,
    pub status: ExecutionStatus,
    pub attempt: i64,
    pub max_attempts: i64,
    pub last_event_seq: i64,
    pub cancel_requested: bool,
    pub progress: f64,
}

pub(crate) fn live_lease_from(row: &impl RecordRow) -> Result<LiveLease> {
    Ok(LiveLease {
        organization_id: row.text("organization_id")?,
        status: status_of(row)?,
        attempt: row.int("attempt")?,
        max_attempts: row.int("max_attempts")?,
        last_event_seq: row.int("last_event_seq")?,
        cancel_requested: row.flag("cancel_requested")?,
        progress: row.real("progress")?,
    })
}

/// What ending a lease writes: the execution's new values (`started` is cleared
/// when it goes back to PENDENT) and the line to log, numbered
/// `last_event_seq`.
#[derive(Debug, Clone)]
pub(crate) struct LeaseEnd {
    pub outcome: LostOutcome,
    pub status: ExecutionStatus,
    pub end: Option<Millis>,
    pub end_reason: Option<String>,
    pub attempt: i64,
    pub progress: f64,
    pub last_event_seq: i64,
    pub log: Option<(&'static str, String)>,
}

/// Decides how a lease whose runtime was lost or gave it up ends. When the robot
/// certainly never ran (`started` false, or still PENDENT), the execution waits
/// for a runtime again without using up an attempt; otherwise it is queued again
/// only if attempts remain, else ended with `reason`. A cancel is final.
pub(crate) fn plan_lease_end(
    live: &LiveLease,
    started: bool,
    reason: &str,
    now: Millis,
) -> LeaseEnd {
    let seq = live.last_event_seq + 1;
    let ended = |status, message: String, level| LeaseEnd {
        outcome: LostOutcome::Ended(status),
        status,
        end: Some(now),
        end_reason: Some(message.clone()),
        attempt: live.attempt,
        progress: live.progress,
        last_event_seq: seq,
        log: Some((level, message)),
    };
    if live.cancel_requested {
        // A run canceled while RUNNING never starts again, even when its runtime
        // says it never spawned it.
        return ended(
            ExecutionStatus::Canceled,
            format!("canceled; {reason}"),
            "WARN",
        );
    }
    if live.status == ExecutionStatus::Pendent || !started {
        return LeaseEnd {
            outcome: LostOutcome::Requeued,
            status: ExecutionStatus::Pendent,
            end: None,
            end_reason: None,
            attempt: (live.attempt - 1).max(0),
            progress: live.progress,
            last_event_seq: live.last_event_seq,
            log: None,
        };
    }
    if live.attempt < live.max_attempts {
        let message = format!(
            "{reason}; the robot allows retries, so it is queued again (attempt {} of {})",
            live.attempt + 1,
            live.max_attempts
        );
        return LeaseEnd {
            outcome: LostOutcome::Requeued,
            status: ExecutionStatus::Pendent,
            end: None,
            end_reason: None,
            attempt: live.attempt,
            progress: 0.0,
            last_event_seq: seq,
            log: Some(("WARN", message)),
        };
    }
    ended(ExecutionStatus::Error, reason.to_owned(), "ERROR")
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
