//! Reading rows into records, the same on both backends, and the execution
//! filter's conditions, which each backend writes with its own placeholders.
//!
//! Each backend reads its rows through [`RecordRow`]: booleans are INTEGER 0/1
//! on SQLite and BOOLEAN on PostgreSQL, and both read as `bool`.

use std::collections::HashMap;

use regente_core::schedule::plan::{Misfire, Overlap};
use regente_core::{ExecutionStatus, Role};

use crate::api_keys::ApiKey;
use crate::audit::{AuditEntry, AuditRecord};
use crate::credentials::{Credential, SealedValue, SealedVariables, StoredValue, VaultKey};
use crate::dashboard::{EndedCount, HourCount, HourTimes, StatusCount, TimeKind};
use crate::{
    Error, EventCursor, EventKind, EventsRead, Execution, ExecutionFilter, FireOrigin, FireOutcome,
    Flow, FlowRun, FlowStep, Lease, LogLine, Organization, Result, Robot, RobotVersion, Runtime,
    RuntimeSession, Schedule, ScheduleFire, ScheduleTarget, ScheduledRun, StoredEvent, User,
    WakingRun,
};

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
    fn bytes(&self, column: &str) -> Result<Vec<u8>>;
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

pub(crate) fn api_key_from(row: &impl RecordRow) -> Result<ApiKey> {
    Ok(ApiKey {
        id: row.text("id")?,
        organization_id: row.text("organization_id")?,
        name: row.text("name")?,
        role: role_of(&row.text("role")?)?,
        prefix: row.text("prefix")?,
        created_by: row.text("created_by")?,
        created_at: row.int("created_at")?,
        last_used_at: row.int_opt("last_used_at")?,
        expires_at: row.int_opt("expires_at")?,
        revoked_at: row.int_opt("revoked_at")?,
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
     end_reason, exit_code, submitted_by, canceled_by, flow_run_id, flow_step_id, schedule_id, \
     scheduled_for";

pub(crate) fn execution_from(row: &impl RecordRow) -> Result<Execution> {
    // In the order of EXECUTION_COLUMNS, the order a SQLite row is read fastest in.
    Ok(Execution {
        seq: row.int("seq")?,
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
        flow_run_id: row.text_opt("flow_run_id")?,
        flow_step_id: row.text_opt("flow_step_id")?,
        schedule_id: row.text_opt("schedule_id")?,
        scheduled_for: row.int_opt("scheduled_for")?,
    })
}

/// The columns [`flow_from`] reads, from `flows f JOIN flow_versions v`.
pub(crate) const FLOW_COLUMNS: &str = "f.id, f.organization_id, f.name, f.created, v.version, \
     v.definition, v.created AS version_created, v.created_by";

pub(crate) fn flow_from(row: &impl RecordRow) -> Result<Flow> {
    Ok(Flow {
        id: row.text("id")?,
        organization_id: row.text("organization_id")?,
        name: row.text("name")?,
        created: row.int("created")?,
        version: row.int("version")? as u32,
        definition: json_column(row, "definition")?.unwrap_or_default(),
        version_created: row.int("version_created")?,
        created_by: row.text("created_by")?,
    })
}

/// The columns [`flow_run_from`] reads.
pub(crate) const FLOW_RUN_COLUMNS: &str = "seq, id, organization_id, flow_id, version, status, \
     input, return_value, init, \"end\", end_reason, submitted_by, canceled_by, revision, wake_at, \
     schedule_id, scheduled_for";

/// A run without its steps, which [`flow_step_from`] reads.
pub(crate) fn flow_run_from(row: &impl RecordRow) -> Result<FlowRun> {
    Ok(FlowRun {
        id: row.text("id")?,
        organization_id: row.text("organization_id")?,
        flow_id: row.text("flow_id")?,
        version: row.int("version")? as u32,
        status: status_of(row)?,
        input: json_column(row, "input")?.unwrap_or_default(),
        return_value: json_column(row, "return_value")?,
        init: row.int("init")?,
        end: row.int_opt("end")?,
        end_reason: row.text_opt("end_reason")?,
        submitted_by: row.text("submitted_by")?,
        canceled_by: row.text_opt("canceled_by")?,
        revision: row.int("revision")?,
        wake_at: row.int_opt("wake_at")?,
        schedule_id: row.text_opt("schedule_id")?,
        scheduled_for: row.int_opt("scheduled_for")?,
        steps: Vec::new(),
        seq: row.int("seq")?,
    })
}

/// The columns [`flow_step_from`] reads.
pub(crate) const FLOW_STEP_COLUMNS: &str = "position, step_id, status, attempt, execution_id, \
     return_value, reason, not_before, deadline";

pub(crate) fn flow_step_from(row: &impl RecordRow) -> Result<FlowStep> {
    Ok(FlowStep {
        position: row.int("position")? as u32,
        step_id: row.text("step_id")?,
        status: row.text("status")?,
        attempt: row.int("attempt")? as u32,
        execution_id: row.text_opt("execution_id")?,
        return_value: json_column(row, "return_value")?,
        reason: row.text_opt("reason")?,
        not_before: row.int_opt("not_before")?,
        deadline: row.int_opt("deadline")?,
    })
}

pub(crate) fn waking_run_from(row: &impl RecordRow) -> Result<WakingRun> {
    Ok(WakingRun {
        organization_id: row.text("organization_id")?,
        run_id: row.text("id")?,
        wake_at: row.int("wake_at")?,
    })
}

/// JSON text of an optional value, as stored.
pub(crate) fn json_text(value: &Option<serde_json::Value>) -> Option<String> {
    value.as_ref().map(serde_json::Value::to_string)
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
    if let Some(schedule_id) = &filter.schedule_id {
        conditions.push(("schedule_id =", FilterValue::Text(schedule_id)));
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

/// An audit record, read from [`crate::audit::AUDIT_COLUMNS`].
pub(crate) fn audit_record_from(row: &impl RecordRow) -> Result<AuditRecord> {
    Ok(AuditRecord {
        seq: row.int("seq")?,
        entry: AuditEntry {
            organization_id: row.text("organization_id")?,
            time: row.int("time")?,
            actor_id: row.text("actor_id")?,
            actor_name: row.text("actor_name")?,
            action: row.text("action")?,
            object_type: row.text("object_type")?,
            object_id: row.text("object_id")?,
            address: row.text_opt("address")?,
            summary: json_column(row, "summary")?.unwrap_or(serde_json::Value::Null),
        },
    })
}

/// The columns [`stored_event_from`] reads.
pub(crate) const EVENT_COLUMNS: &str = "seq, txid, organization_id, kind, subject_id, time, data";

fn event_cursor_from(row: &impl RecordRow) -> Result<EventCursor> {
    Ok(EventCursor {
        txid: row.int("txid")?,
        seq: row.int("seq")?,
    })
}

/// An event row's kind; one this server does not know stops the read.
fn event_kind_from(row: &impl RecordRow) -> Result<EventKind> {
    let kind = row.text("kind")?;
    EventKind::parse(&kind)
        .ok_or_else(|| Error::Other(anyhow::anyhow!("stored event kind {kind:?} is unknown")))
}

pub(crate) fn stored_event_from(row: &impl RecordRow) -> Result<StoredEvent> {
    stored_event_of_kind(row, event_kind_from(row)?)
}

/// An event row whose kind was read already.
fn stored_event_of_kind(row: &impl RecordRow, kind: EventKind) -> Result<StoredEvent> {
    Ok(StoredEvent {
        cursor: event_cursor_from(row)?,
        organization_id: row.text("organization_id")?,
        kind,
        subject_id: row.text("subject_id")?,
        time: row.int("time")?,
        data: json_column(row, "data")?.unwrap_or_default(),
    })
}

/// An event row as a consumer reads it: decoded when of the kinds it
/// handles, its cursor alone otherwise.
pub(crate) enum EventRow {
    Wanted(StoredEvent),
    Passed(EventCursor),
}

pub(crate) fn event_row_from(row: &impl RecordRow, kinds: &[EventKind]) -> Result<EventRow> {
    let kind = event_kind_from(row)?;
    if kinds.contains(&kind) {
        return stored_event_of_kind(row, kind).map(EventRow::Wanted);
    }
    event_cursor_from(row).map(EventRow::Passed)
}

/// Event rows read in stream order, as a consumer's read.
pub(crate) fn events_read(rows: Vec<EventRow>) -> EventsRead {
    let read = rows.len();
    let mut through = None;
    let mut events = Vec::new();
    for row in rows {
        match row {
            EventRow::Wanted(event) => {
                through = Some(event.cursor);
                events.push(event);
            }
            EventRow::Passed(cursor) => through = Some(cursor),
        }
    }
    EventsRead {
        events,
        through,
        read,
    }
}

pub(crate) fn runtime_session_from(row: &impl RecordRow) -> Result<RuntimeSession> {
    Ok(RuntimeSession {
        runtime_id: row.text("id")?,
        session_id: row.text("session_id")?,
    })
}

pub(crate) fn hour_count_from(row: &impl RecordRow) -> Result<HourCount> {
    Ok(HourCount {
        hour: row.int("hour")?,
        robot_id: row.text("robot_id")?,
        runtime_id: row.text("runtime_id")?,
        status: status_of(row)?,
        reason: row.text("reason")?,
        runs: row.int("runs")? as u64,
        busy_ms: row.int("busy_ms")?,
    })
}

pub(crate) fn status_count_from(row: &impl RecordRow) -> Result<StatusCount> {
    Ok(StatusCount {
        organization_id: row.text("organization_id")?,
        status: status_of(row)?,
        count: row.int("count")? as u64,
    })
}

/// A row of the ended totals: its count and the robots' busy time.
pub(crate) fn ended_total_from(row: &impl RecordRow) -> Result<(EndedCount, i64)> {
    let ended = EndedCount {
        organization_id: row.text("organization_id")?,
        robot_id: row.text("robot_id")?,
        status: status_of(row)?,
        count: row.int("count")? as u64,
    };
    Ok((ended, row.int("busy_ms")?))
}

pub(crate) fn time_total_from(row: &impl RecordRow) -> Result<(TimeKind, usize, u64)> {
    let kind = row.text("kind")?;
    let kind = TimeKind::parse(&kind)
        .ok_or_else(|| Error::Other(anyhow::anyhow!("stored time kind {kind:?} is unknown")))?;
    Ok((kind, row.int("bucket")? as usize, row.int("runs")? as u64))
}

pub(crate) fn hour_times_from(row: &impl RecordRow) -> Result<HourTimes> {
    let kind = row.text("kind")?;
    Ok(HourTimes {
        hour: row.int("hour")?,
        robot_id: row.text("robot_id")?,
        kind: TimeKind::parse(&kind)
            .ok_or_else(|| Error::Other(anyhow::anyhow!("stored time kind {kind:?} is unknown")))?,
        bucket: row.int("bucket")? as usize,
        runs: row.int("runs")? as u64,
    })
}
/// The columns [`schedule_from`] reads.
pub(crate) const SCHEDULE_COLUMNS: &str = "id, organization_id, name, robot_id, runtime_id, \
     flow_id, variables, rule, timezone, start_at, end_at, overlap, catchup_window_seconds, misfire, \
     jitter_seconds, paused, pause_note, pause_after_failures, consecutive_failures, fired, \
     skipped, missed, next_fire_at, next_due_at, created_at, updated_at";

fn stored<T>(column: &str, text: &str, parsed: Option<T>) -> Result<T> {
    parsed.ok_or_else(|| Error::Other(anyhow::anyhow!("stored {column} {text:?} is unknown")))
}

pub(crate) fn schedule_from(row: &impl RecordRow) -> Result<Schedule> {
    let overlap = row.text("overlap")?;
    let misfire = row.text("misfire")?;
    let target = match (
        row.text_opt("robot_id")?,
        row.text_opt("runtime_id")?,
        row.text_opt("flow_id")?,
    ) {
        (Some(robot_id), Some(runtime_id), None) => ScheduleTarget::Robot {
            robot_id,
            runtime_id,
        },
        (None, None, Some(flow_id)) => ScheduleTarget::Flow { flow_id },
        other => {
            return Err(Error::Other(anyhow::anyhow!(
                "stored schedule target {other:?} is neither a robot and runtime nor a flow"
            )))
        }
    };
    Ok(Schedule {
        id: row.text("id")?,
        organization_id: row.text("organization_id")?,
        name: row.text("name")?,
        target,
        variables: json_column(row, "variables")?.unwrap_or_default(),
        rule: json_column(row, "rule")?.unwrap_or_default(),
        timezone: row.text("timezone")?,
        start_at: row.int_opt("start_at")?,
        end_at: row.int_opt("end_at")?,
        overlap: stored("overlap", &overlap, Overlap::parse(&overlap).ok())?,
        catchup_window_seconds: row.int("catchup_window_seconds")?,
        misfire: stored("misfire", &misfire, Misfire::parse(&misfire).ok())?,
        jitter_seconds: row.int("jitter_seconds")?,
        paused: row.flag("paused")?,
        pause_note: row.text_opt("pause_note")?,
        pause_after_failures: row.int_opt("pause_after_failures")?.map(|n| n as u32),
        consecutive_failures: row.int("consecutive_failures")? as u32,
        fired: row.int("fired")? as u64,
        skipped: row.int("skipped")? as u64,
        missed: row.int("missed")? as u64,
        next_fire_at: row.int_opt("next_fire_at")?,
        next_due_at: row.int_opt("next_due_at")?,
        created_at: row.int("created_at")?,
        updated_at: row.int("updated_at")?,
    })
}

/// The columns [`schedule_fire_from`] reads.
pub(crate) const SCHEDULE_FIRE_COLUMNS: &str =
    "schedule_id, scheduled_for, origin, outcome, execution_id, flow_run_id, reason, recorded_at";

pub(crate) fn schedule_fire_from(row: &impl RecordRow) -> Result<ScheduleFire> {
    let origin = row.text("origin")?;
    let outcome = row.text("outcome")?;
    let started = (row.text_opt("execution_id")?, row.text_opt("flow_run_id")?);
    let outcome = match (outcome.as_str(), started) {
        ("started", (Some(id), None)) => FireOutcome::Started(ScheduledRun::Execution(id)),
        ("started", (None, Some(id))) => FireOutcome::Started(ScheduledRun::FlowRun(id)),
        ("skipped_overlap", _) => FireOutcome::SkippedOverlap,
        ("skipped_error", _) => FireOutcome::SkippedError,
        ("missed", _) => FireOutcome::Missed,
        _ => stored("fire outcome", &outcome, None)?,
    };
    Ok(ScheduleFire {
        schedule_id: row.text("schedule_id")?,
        scheduled_for: row.int("scheduled_for")?,
        origin: stored("fire origin", &origin, FireOrigin::parse(&origin))?,
        outcome,
        reason: row.text_opt("reason")?,
        recorded_at: row.int("recorded_at")?,
    })
}

/// What a fire started, if anything: its `execution_id` and `flow_run_id`
/// columns.
pub(crate) fn fire_run_ids(outcome: &FireOutcome) -> (Option<&str>, Option<&str>) {
    match outcome {
        FireOutcome::Started(run) => (run.execution_id(), run.flow_run_id()),
        _ => (None, None),
    }
}

/// A value to bind, for statements both backends build from one list.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Param<'a> {
    Text(Option<&'a str>),
    Int(Option<i64>),
    Flag(bool),
}

/// What a user may change of a schedule (and its next fire, which follows
/// from it): what [`crate::ScheduleStore::create_schedule`] writes beside the
/// id, the organisation and the creation time, and what
/// [`crate::ScheduleStore::update_schedule`] replaces. [`schedule_definition`]
/// gives the values in this order.
const DEFINITION_NAMES: [&str; 19] = [
    "name",
    "robot_id",
    "runtime_id",
    "flow_id",
    "variables",
    "rule",
    "timezone",
    "start_at",
    "end_at",
    "overlap",
    "catchup_window_seconds",
    "misfire",
    "jitter_seconds",
    "paused",
    "pause_note",
    "pause_after_failures",
    "next_fire_at",
    "next_due_at",
    "updated_at",
];

/// A schedule's values for [`DEFINITION_NAMES`]; `variables` and `rule` are
/// its JSON as text.
pub(crate) fn schedule_definition<'s>(
    s: &'s Schedule,
    variables: &'s str,
    rule: &'s str,
) -> [Param<'s>; 19] {
    use Param::*;
    [
        Text(Some(&s.name)),
        Text(s.target.robot_id()),
        Text(s.target.runtime_id()),
        Text(s.target.flow_id()),
        Text(Some(variables)),
        Text(Some(rule)),
        Text(Some(&s.timezone)),
        Int(s.start_at),
        Int(s.end_at),
        Text(Some(s.overlap.as_str())),
        Int(Some(s.catchup_window_seconds)),
        Text(Some(s.misfire.as_str())),
        Int(Some(s.jitter_seconds)),
        Flag(s.paused),
        Text(s.pause_note.as_deref()),
        Int(s.pause_after_failures.map(i64::from)),
        Int(s.next_fire_at),
        Int(s.next_due_at),
        Int(Some(s.updated_at)),
    ]
}

/// `INSERT` of a new schedule: its id, organisation and creation time, then
/// its definition, with placeholders written by `placeholder(n)` (1-based).
pub(crate) fn insert_schedule_sql(placeholder: impl Fn(usize) -> String) -> String {
    let names: Vec<&str> = ["id", "organization_id", "created_at"]
        .into_iter()
        .chain(DEFINITION_NAMES)
        .collect();
    let marks: Vec<String> = (1..=names.len()).map(placeholder).collect();
    format!(
        "INSERT INTO schedules ({}) VALUES ({})",
        names.join(", "),
        marks.join(", ")
    )
}

/// `UPDATE` of a schedule's definition: the definition's placeholders first,
/// then `reset_failures`, the organisation and the id.
pub(crate) fn update_schedule_sql(placeholder: impl Fn(usize) -> String) -> String {
    let sets: Vec<String> = DEFINITION_NAMES
        .iter()
        .enumerate()
        .map(|(n, name)| format!("{name} = {}", placeholder(n + 1)))
        .collect();
    let n = DEFINITION_NAMES.len();
    format!(
        "UPDATE schedules SET {}, consecutive_failures = CASE WHEN {} THEN 0 \
         ELSE consecutive_failures END WHERE organization_id = {} AND id = {}",
        sets.join(", "),
        placeholder(n + 1),
        placeholder(n + 2),
        placeholder(n + 3)
    )
}

/// The columns [`credential_from`] reads.
pub(crate) const CREDENTIAL_COLUMNS: &str = "id, organization_id, name, description, robots, \
     version, created_by, created_at, updated_by, updated_at";

/// A credential's row, with its fields' names (sorted) read apart.
pub(crate) fn credential_from(row: &impl RecordRow, fields: Vec<String>) -> Result<Credential> {
    let robots = match json_column(row, "robots")? {
        None => None,
        Some(value) => Some(serde_json::from_value(value).map_err(|e| Error::Other(e.into()))?),
    };
    Ok(Credential {
        id: row.text("id")?,
        organization_id: row.text("organization_id")?,
        name: row.text("name")?,
        description: row.text_opt("description")?,
        robots,
        version: row.int("version")? as u32,
        fields,
        created_by: row.text("created_by")?,
        created_at: row.int("created_at")?,
        updated_by: row.text("updated_by")?,
        updated_at: row.int("updated_at")?,
    })
}

/// The robots column: a JSON array, or NULL for every robot.
pub(crate) fn robots_text(robots: &Option<Vec<String>>) -> Option<String> {
    robots
        .as_ref()
        .map(|ids| serde_json::Value::from(ids.clone()).to_string())
}

/// Credentials each given its fields, from (credential id, field) rows.
pub(crate) fn credentials_with_fields(
    credentials: Vec<Credential>,
    fields: Vec<(String, String)>,
) -> Vec<Credential> {
    let mut by_credential: HashMap<String, Vec<String>> = HashMap::new();
    for (credential_id, field) in fields {
        by_credential.entry(credential_id).or_default().push(field);
    }
    credentials
        .into_iter()
        .map(|mut credential| {
            let mut fields = by_credential.remove(&credential.id).unwrap_or_default();
            fields.sort();
            credential.fields = fields;
            credential
        })
        .collect()
}

/// The columns [`sealed_value_from`] reads.
pub(crate) const SEALED_VALUE_COLUMNS: &str = "field, key_id, nonce, ciphertext";

pub(crate) fn sealed_value_from(row: &impl RecordRow) -> Result<SealedValue> {
    Ok(SealedValue {
        field: row.text("field")?,
        key_id: row.text("key_id")?,
        nonce: row.bytes("nonce")?,
        ciphertext: row.bytes("ciphertext")?,
    })
}

pub(crate) fn stored_value_from(row: &impl RecordRow) -> Result<StoredValue> {
    Ok(StoredValue {
        credential_id: row.text("credential_id")?,
        organization_id: row.text("organization_id")?,
        version: row.int("version")? as u32,
        value: sealed_value_from(row)?,
    })
}

pub(crate) fn vault_key_from(row: &impl RecordRow) -> Result<VaultKey> {
    Ok(VaultKey {
        key_id: row.text("key_id")?,
        check_value: row.bytes("check_value")?,
        created_at: row.int("created_at")?,
    })
}

/// An execution's id, organisation and variables (`variables` column).
pub(crate) fn sealed_variables_from(row: &impl RecordRow) -> Result<SealedVariables> {
    let stored_text = row.text("variables")?;
    Ok(SealedVariables {
        execution_id: row.text("id")?,
        organization_id: row.text("organization_id")?,
        variables: serde_json::from_str(&stored_text).map_err(|e| Error::Other(e.into()))?,
        stored_text,
    })
}
