//! Schedules: define, edit, pause, resume and delete them; see what they did.
//! Their fires (from the rule, a trigger, a backfill) are in [`fire`].
//!
//! A schedule runs a robot on a runtime, or a flow. Its rule is checked here,
//! in its zone, before it is stored: an unknown zone, an impossible cron, an
//! end before the start, a robot, runtime or flow of another organisation, or
//! variables the robot (or the flow's declared inputs) refuses are refused
//! with the field named.

pub mod fire;

use regente_core::is_valid_id;
use regente_core::schedule::plan::{due_at, Misfire, Overlap};
use regente_core::schedule::{Every, Frequency, Millis, Rule, RuleError, When};
use regente_core::RequestVariable;
use regente_store::{Notice, Schedule, ScheduleFire, ScheduleTarget};
use serde_json::{json, Value};

use super::{flows, new_id, or_not_found, runs, Caller, Context, Error, Result};

/// Fires listed with a schedule.
pub const NEXT_FIRES: usize = 10;
/// Recorded fires shown with a schedule, newest first.
pub const LAST_FIRES: u32 = 20;
const DEFAULT_TIMEZONE: &str = "UTC";
const DEFAULT_CATCHUP_WINDOW_SECONDS: i64 = 3600;
const MAX_CATCHUP_WINDOW_SECONDS: i64 = 7 * 24 * 3600;
const MAX_JITTER_SECONDS: i64 = 3600;
const MAX_NAME_CHARS: usize = 200;
const MAX_NOTE_CHARS: usize = 1000;

/// What a user sets of a schedule. On a creation `None` takes the default; on
/// an edit it leaves the field as it is, and `Some(None)` clears a field that
/// may be empty.
#[derive(Debug, Clone, Default)]
pub struct ScheduleChanges {
    pub name: Option<String>,
    pub robot_id: Option<String>,
    pub runtime_id: Option<String>,
    pub flow_id: Option<String>,
    pub variables: Option<Vec<RequestVariable>>,
    pub when: Option<When>,
    pub timezone: Option<String>,
    pub start_at: Option<Option<Millis>>,
    pub end_at: Option<Option<Millis>>,
    pub overlap: Option<Overlap>,
    pub catchup_window_seconds: Option<i64>,
    pub misfire: Option<Misfire>,
    pub jitter_seconds: Option<i64>,
    pub paused: Option<bool>,
    /// Why it is paused.
    pub note: Option<Option<String>>,
    pub pause_after_failures: Option<Option<u32>>,
}

/// A schedule with its rule, its next fires and (in detail) its last ones.
pub struct ScheduleView {
    pub schedule: Schedule,
    pub rule: Rule,
    /// Its next fires from now, whether paused or not.
    pub next_fires: Vec<Millis>,
    /// Newest first; empty in lists.
    pub last_fires: Vec<ScheduleFire>,
}

fn invalid(field: &str, message: impl std::fmt::Display) -> Error {
    Error::Invalid(format!("{field}: {message}"))
}

impl From<RuleError> for Error {
    fn from(error: RuleError) -> Error {
        Error::Invalid(error.to_string())
    }
}

fn not_found(id: &str) -> Error {
    Error::NotFound(format!("schedule {id} not found"))
}

/// `cron` or `every` as a user writes them; exactly one of the two.
pub fn when_from_json(cron: Option<&Value>, every: Option<&Value>) -> Result<When> {
    match (cron, every) {
        (Some(Value::String(pattern)), None) => Ok(When::Cron(pattern.clone())),
        (Some(_), None) => Err(invalid(
            "cron",
            "must be a string of 5 fields, or 6 with seconds first",
        )),
        (None, Some(every)) => every_from_json(every).map(When::Every),
        (Some(_), Some(_)) => Err(Error::Invalid(
            "cron, every: give one of the two, not both".into(),
        )),
        (None, None) => Err(Error::Invalid(
            "cron, every: one of the two is required".into(),
        )),
    }
}

fn every_from_json(every: &Value) -> Result<Every> {
    const SHAPE: &str = r#"must be {"frequency": "daily" | "weekly" | "biweekly" | "monthly", "at": "HH:MM", "weekdays": ["monday", ...], "day": 1}"#;
    let Value::Object(fields) = every else {
        return Err(invalid("every", SHAPE));
    };
    if let Some(unknown) = fields
        .keys()
        .find(|key| !["frequency", "at", "weekdays", "day"].contains(&key.as_str()))
    {
        return Err(invalid(
            "every",
            format!("{unknown:?} is not a field of every; it {SHAPE}"),
        ));
    }
    let text = |name: &'static str| match fields.get(name) {
        Some(Value::String(text)) => Ok(text.clone()),
        Some(_) => Err(invalid(&format!("every.{name}"), "must be a string")),
        None => Err(invalid(&format!("every.{name}"), "is required")),
    };
    let frequency = Frequency::parse(&text("frequency")?)?;
    let weekdays = match fields.get("weekdays") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(days)) => days
            .iter()
            .map(|day| {
                day.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| invalid("every.weekdays", "must be a list of weekday names"))
            })
            .collect::<Result<_>>()?,
        Some(_) => return Err(invalid("every.weekdays", "must be a list of weekday names")),
    };
    let day = match fields.get("day") {
        None | Some(Value::Null) => None,
        Some(day) => Some(
            day.as_u64()
                .and_then(|day| u32::try_from(day).ok())
                .ok_or_else(|| invalid("every.day", "must be a day of the month, 1 to 31"))?,
        ),
    };
    Ok(Every {
        frequency,
        at: text("at")?,
        weekdays,
        day,
    })
}

/// The form a rule is kept in: what [`when_from_json`] reads back.
fn when_to_json(when: &When) -> Value {
    match when {
        When::Cron(pattern) => json!({ "cron": pattern }),
        When::Every(every) => {
            let mut fields = json!({ "frequency": every.frequency.as_str(), "at": every.at });
            if !every.weekdays.is_empty() {
                fields["weekdays"] = json!(every.weekdays);
            }
            if let Some(day) = every.day {
                fields["day"] = json!(day);
            }
            json!({ "every": fields })
        }
    }
}

/// What a stored schedule says of when it fires.
pub(crate) fn stored_when(schedule: &Schedule) -> Result<When> {
    when_from_json(schedule.rule.get("cron"), schedule.rule.get("every")).map_err(|e| {
        Error::Internal(anyhow::anyhow!(
            "schedule {}'s stored rule {}: {e}",
            schedule.id,
            schedule.rule
        ))
    })
}

/// The rule a stored schedule fires by.
pub(crate) fn rule_of(schedule: &Schedule) -> Result<Rule> {
    Rule::new(
        &stored_when(schedule)?,
        &schedule.timezone,
        schedule.start_at,
        schedule.end_at,
        schedule.created_at,
    )
    .map_err(|e| {
        Error::Internal(anyhow::anyhow!(
            "schedule {}'s stored rule: {e}",
            schedule.id
        ))
    })
}

/// The run body's variables a stored schedule passes to each run.
pub(crate) fn variables_of(schedule: &Schedule) -> Result<Vec<RequestVariable>> {
    runs::variables_from_json(schedule.variables.clone()).map_err(|why| {
        Error::Internal(anyhow::anyhow!(
            "schedule {}'s stored variables: {why}",
            schedule.id
        ))
    })
}

/// The target `changes` set on `current` (`None` on a creation): `robot_id`
/// with `runtime_id`, or `flow_id`. An edit may change a robot's robot or
/// runtime alone; a target of the other kind is given whole.
fn target_of(
    current: Option<&ScheduleTarget>,
    changes: &ScheduleChanges,
) -> Result<ScheduleTarget> {
    let (robot_id, runtime_id) = (changes.robot_id.clone(), changes.runtime_id.clone());
    let robot_given = robot_id.is_some() || runtime_id.is_some();
    match (&changes.flow_id, current) {
        (Some(_), _) if robot_given => Err(Error::Invalid(
            "robot_id, runtime_id, flow_id: a schedule runs a robot (robot_id with runtime_id) \
             or a flow (flow_id), not both"
                .into(),
        )),
        (Some(flow_id), _) => Ok(ScheduleTarget::Flow {
            flow_id: flow_id.clone(),
        }),
        (None, Some(current)) if !robot_given => Ok(current.clone()),
        (None, None) if !robot_given => Err(Error::Invalid(
            "robot_id, runtime_id, flow_id: a target is required: robot_id with runtime_id, \
             or flow_id"
                .into(),
        )),
        (None, current) => {
            let kept = |field: fn(&ScheduleTarget) -> Option<&str>| {
                current.and_then(field).map(str::to_owned)
            };
            match (
                robot_id.or_else(|| kept(ScheduleTarget::robot_id)),
                runtime_id.or_else(|| kept(ScheduleTarget::runtime_id)),
            ) {
                (Some(robot_id), Some(runtime_id)) => Ok(ScheduleTarget::Robot {
                    robot_id,
                    runtime_id,
                }),
                (None, _) => Err(invalid("robot_id", "is required with runtime_id")),
                (_, None) => Err(invalid("runtime_id", "is required with robot_id")),
            }
        }
    }
}

/// Checks a schedule as it would be stored; answers its rule. Its robot and
/// runtime, or its flow, must be the organisation's, and the variables must
/// suit the robot's newest version, or the flow's newest declared inputs.
async fn check(ctx: &Context, caller: &Caller, schedule: &Schedule, when: &When) -> Result<Rule> {
    let name_chars = schedule.name.chars().count();
    if schedule.name.trim().is_empty() || name_chars > MAX_NAME_CHARS {
        return Err(invalid(
            "name",
            format!("must have 1 to {MAX_NAME_CHARS} characters"),
        ));
    }
    if !(0..=MAX_CATCHUP_WINDOW_SECONDS).contains(&schedule.catchup_window_seconds) {
        return Err(invalid(
            "catchup_window_seconds",
            format!("must be 0 to {MAX_CATCHUP_WINDOW_SECONDS}"),
        ));
    }
    if !(0..=MAX_JITTER_SECONDS).contains(&schedule.jitter_seconds) {
        return Err(invalid(
            "jitter_seconds",
            format!("must be 0 to {MAX_JITTER_SECONDS}"),
        ));
    }
    if schedule.pause_after_failures == Some(0) {
        return Err(invalid("pause_after_failures", "must be 1 or more"));
    }
    if schedule
        .pause_note
        .as_ref()
        .is_some_and(|note| note.chars().count() > MAX_NOTE_CHARS)
    {
        return Err(invalid(
            "note",
            format!("must have {MAX_NOTE_CHARS} characters at most"),
        ));
    }
    let rule = Rule::new(
        when,
        &schedule.timezone,
        schedule.start_at,
        schedule.end_at,
        schedule.created_at,
    )?;
    let variables = variables_of(schedule)?;
    match &schedule.target {
        ScheduleTarget::Robot {
            robot_id,
            runtime_id,
        } => check_robot(ctx, caller, robot_id, runtime_id, &variables).await?,
        ScheduleTarget::Flow { flow_id } => check_flow(ctx, caller, flow_id, &variables).await?,
    }
    Ok(rule)
}

async fn check_robot(
    ctx: &Context,
    caller: &Caller,
    robot_id: &str,
    runtime_id: &str,
    variables: &[RequestVariable],
) -> Result<()> {
    if !is_valid_id(runtime_id)
        || !ctx
            .store
            .runtime_exists(&caller.organization_id, runtime_id)
            .await?
    {
        return Err(Error::NotFound(format!(
            "runtime_id: runtime {runtime_id} not found"
        )));
    }
    if !is_valid_id(robot_id) {
        return Err(Error::NotFound(format!(
            "robot_id: robot {robot_id} not found"
        )));
    }
    match runs::new_execution(ctx, caller, runtime_id, robot_id, variables).await {
        Ok(_) => Ok(()),
        Err(Error::NotFound(_)) => Err(Error::NotFound(format!(
            "robot_id: robot {robot_id} not found"
        ))),
        Err(Error::Invalid(why)) => Err(invalid("variables", why)),
        Err(other) => Err(other),
    }
}

async fn check_flow(
    ctx: &Context,
    caller: &Caller,
    flow_id: &str,
    variables: &[RequestVariable],
) -> Result<()> {
    match flows::with_inputs(ctx, caller, flow_id, variables).await {
        Ok(_) => Ok(()),
        Err(Error::NotFound(_)) => Err(Error::NotFound(format!(
            "flow_id: flow {flow_id} not found"
        ))),
        Err(Error::Invalid(why)) => Err(invalid("variables", why)),
        Err(other) => Err(other),
    }
}

/// Sets `changes` on `schedule`; true when when it fires has changed (the rule,
/// its zone or bounds, the jitter) or it resumed, so that its next fire is
/// counted again from now.
fn apply(schedule: &mut Schedule, changes: ScheduleChanges, when: &mut When) -> Result<bool> {
    schedule.target = target_of(Some(&schedule.target), &changes)?;
    let was_paused = schedule.paused;
    let mut timing = false;
    if let Some(name) = changes.name {
        schedule.name = name;
    }
    if let Some(variables) = changes.variables {
        schedule.variables = runs::variables_to_json(&variables);
    }
    if let Some(new_when) = changes.when {
        *when = new_when;
        timing = true;
    }
    if let Some(timezone) = changes.timezone {
        schedule.timezone = timezone;
        timing = true;
    }
    if let Some(start_at) = changes.start_at {
        schedule.start_at = start_at;
        timing = true;
    }
    if let Some(end_at) = changes.end_at {
        schedule.end_at = end_at;
        timing = true;
    }
    if let Some(overlap) = changes.overlap {
        schedule.overlap = overlap;
    }
    if let Some(window) = changes.catchup_window_seconds {
        schedule.catchup_window_seconds = window;
    }
    if let Some(misfire) = changes.misfire {
        schedule.misfire = misfire;
    }
    if let Some(jitter) = changes.jitter_seconds {
        schedule.jitter_seconds = jitter;
        timing = true;
    }
    if let Some(pause_after) = changes.pause_after_failures {
        schedule.pause_after_failures = pause_after;
    }
    if let Some(paused) = changes.paused {
        schedule.paused = paused;
    }
    match changes.note {
        Some(note) if schedule.paused => schedule.pause_note = note,
        Some(Some(_)) => {
            return Err(invalid(
                "note",
                "a note goes with a pause (\"paused\": true)",
            ))
        }
        Some(None) | None if !schedule.paused => schedule.pause_note = None,
        _ => {}
    }
    schedule.rule = when_to_json(when);
    Ok(timing || (was_paused && !schedule.paused))
}

/// Moves `schedule` to its first fire after `now`.
fn restart_from(schedule: &mut Schedule, rule: &Rule, now: Millis) {
    schedule.next_fire_at = rule.next_after(now);
    schedule.next_due_at = schedule
        .next_fire_at
        .map(|at| due_at(&schedule.id, at, schedule.jitter_seconds * 1000));
}

fn view(
    ctx: &Context,
    schedule: Schedule,
    rule: Rule,
    last_fires: Vec<ScheduleFire>,
) -> ScheduleView {
    ScheduleView {
        next_fires: rule.next_fires(ctx.clock.now(), NEXT_FIRES),
        schedule,
        rule,
        last_fires,
    }
}

/// Creates a schedule; it fires from its first fire after now.
pub async fn create(
    ctx: &Context,
    caller: &Caller,
    changes: ScheduleChanges,
) -> Result<ScheduleView> {
    if changes.name.is_none() {
        return Err(invalid("name", "is required"));
    }
    let target = target_of(None, &changes)?;
    let Some(mut when) = changes.when.clone() else {
        return Err(Error::Invalid(
            "cron, every: one of the two is required".into(),
        ));
    };
    let now = ctx.clock.now();
    let mut schedule = Schedule {
        id: new_id(),
        organization_id: caller.organization_id.clone(),
        name: String::new(),
        target,
        variables: json!([]),
        rule: Value::Null,
        timezone: DEFAULT_TIMEZONE.into(),
        start_at: None,
        end_at: None,
        overlap: Overlap::Skip,
        catchup_window_seconds: DEFAULT_CATCHUP_WINDOW_SECONDS,
        misfire: Misfire::RunLatest,
        jitter_seconds: 0,
        paused: false,
        pause_note: None,
        pause_after_failures: None,
        consecutive_failures: 0,
        fired: 0,
        skipped: 0,
        missed: 0,
        next_fire_at: None,
        next_due_at: None,
        created_at: now,
        updated_at: now,
    };
    apply(&mut schedule, changes, &mut when)?;
    let rule = check(ctx, caller, &schedule, &when).await?;
    restart_from(&mut schedule, &rule, now);
    let summary = json!({"name": schedule.name, "rule": schedule.rule, "paused": schedule.paused});
    let audit = super::audit::record(ctx, caller, "schedule.create", &schedule.id, summary);
    match ctx.store.create_schedule(&schedule, Some(&audit)).await {
        Err(regente_store::Error::Conflict(_)) => {
            return Err(Error::Conflict(format!(
                "name: a schedule named {:?} already exists",
                schedule.name
            )))
        }
        other => other?,
    }
    tracing::info!(schedule = %schedule.id, "schedule created");
    super::announce(ctx, Notice::SchedulesChanged).await;
    Ok(view(ctx, schedule, rule, Vec::new()))
}

async fn stored(ctx: &Context, caller: &Caller, id: &str) -> Result<Schedule> {
    if !is_valid_id(id) {
        return Err(not_found(id));
    }
    match ctx.store.get_schedule(&caller.organization_id, id).await {
        Err(regente_store::Error::NotFound) => Err(not_found(id)),
        other => Ok(other?),
    }
}

/// One schedule with its next and last fires.
pub async fn get(ctx: &Context, caller: &Caller, id: &str) -> Result<ScheduleView> {
    let schedule = stored(ctx, caller, id).await?;
    let rule = rule_of(&schedule)?;
    let fires = ctx
        .store
        .schedule_fires(&caller.organization_id, id, LAST_FIRES)
        .await?;
    Ok(view(ctx, schedule, rule, fires))
}

/// The organisation's schedules, oldest first, with their next fires.
pub async fn list(ctx: &Context, caller: &Caller) -> Result<Vec<ScheduleView>> {
    let schedules = ctx.store.list_schedules(&caller.organization_id).await?;
    schedules
        .into_iter()
        .map(|schedule| {
            let rule = rule_of(&schedule)?;
            Ok(view(ctx, schedule, rule, Vec::new()))
        })
        .collect()
}

/// Edits a schedule: its definition, a pause with a note, a resume. A change
/// of when it fires, or a resume, counts its next fire from now; fires due
/// while it was paused are not run.
pub async fn update(
    ctx: &Context,
    caller: &Caller,
    id: &str,
    changes: ScheduleChanges,
) -> Result<ScheduleView> {
    let before = stored(ctx, caller, id).await?;
    let mut schedule = before.clone();
    let was_paused = schedule.paused;
    let mut when = stored_when(&schedule)?;
    let restart = apply(&mut schedule, changes, &mut when)?;
    let rule = check(ctx, caller, &schedule, &when).await?;
    if schedule == before {
        // Nothing to write (its next fire stays as counted), nothing to record.
        return get(ctx, caller, id).await;
    }
    let now = ctx.clock.now();
    if restart {
        restart_from(&mut schedule, &rule, now);
    }
    schedule.updated_at = now;
    let resumed = was_paused && !schedule.paused;
    let action = match (was_paused, schedule.paused) {
        (false, true) => "schedule.pause",
        (true, false) => "schedule.resume",
        _ => "schedule.update",
    };
    let summary = json!({
        "name": schedule.name,
        "rule": schedule.rule,
        "paused": schedule.paused,
        "pause_note": schedule.pause_note,
    });
    let audit = super::audit::record(ctx, caller, action, id, summary);
    match ctx
        .store
        .update_schedule(&schedule, resumed, Some(&audit))
        .await
    {
        Err(regente_store::Error::Conflict(_)) => {
            return Err(Error::Conflict(format!(
                "name: a schedule named {:?} already exists",
                schedule.name
            )))
        }
        Err(regente_store::Error::NotFound) => return Err(not_found(id)),
        other => other?,
    }
    super::announce(ctx, Notice::SchedulesChanged).await;
    get(ctx, caller, id).await
}

/// Deletes a schedule and its record of fires; the runs it queued stay.
pub async fn delete(ctx: &Context, caller: &Caller, id: &str) -> Result<()> {
    let schedule = stored(ctx, caller, id).await?;
    let audit = super::audit::record(
        ctx,
        caller,
        "schedule.delete",
        id,
        json!({"name": schedule.name}),
    );
    or_not_found(
        ctx.store
            .delete_schedule(&caller.organization_id, id, Some(&audit))
            .await,
        || format!("schedule {id} not found"),
    )?;
    tracing::info!(schedule = %id, "schedule deleted");
    super::announce(ctx, Notice::SchedulesChanged).await;
    Ok(())
}
