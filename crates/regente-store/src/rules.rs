//! The rules written once for both backends: how a batch of reports changes an
//! execution, how a lease ends when its runtime is lost or gives it up, what a
//! schedule's firing writes, and the events of the stream each change writes.
//! The backends read the row, ask these what to write, and write it, events
//! included, in the same transaction.

use std::collections::HashMap;

use regente_core::schedule::plan::Overlap;
use regente_core::ExecutionStatus;
use serde_json::json;

use crate::events::NewEvent;
use crate::rows::{status_of, RecordRow};
use crate::{
    Change, EventKind, EventRecord, FireOutcome, Fired, Firing, FlowRun, LostOutcome, Millis,
    NewExecution, NewScheduledRun, PausedSchedule, Result, ScheduledRun,
};

/// Why a PENDENT execution canceled by a user ended.
pub(crate) const CANCELED_BEFORE_START: &str = "canceled before it started";

/// `execution.queued`, written with the new execution.
pub(crate) fn queued_event(new: &NewExecution) -> NewEvent {
    NewEvent {
        organization_id: new.organization_id.clone(),
        kind: EventKind::ExecutionQueued,
        subject_id: new.id.clone(),
        time: new.init,
        data: json!({
            "runtime_id": new.runtime_id,
            "robot_id": new.robot_id,
            "robot_version": new.robot_version,
            "submitted_by": new.submitted_by,
        }),
    }
}

/// `flow_run.started`, written as a run starts, or goes on after a retry
/// request (`resumed`).
pub(crate) fn flow_run_started_event(run: &FlowRun, resumed: bool, now: Millis) -> NewEvent {
    NewEvent {
        organization_id: run.organization_id.clone(),
        kind: EventKind::FlowRunStarted,
        subject_id: run.id.clone(),
        time: now,
        data: json!({
            "flow_id": run.flow_id,
            "version": run.version,
            "submitted_by": run.submitted_by,
            "resumed": resumed,
        }),
    }
}

/// `flow_run.ended`, written as a run ends.
pub(crate) fn flow_run_ended_event(
    organization_id: &str,
    run_id: &str,
    status: ExecutionStatus,
    reason: Option<&str>,
    now: Millis,
) -> NewEvent {
    NewEvent {
        organization_id: organization_id.to_owned(),
        kind: EventKind::FlowRunEnded,
        subject_id: run_id.to_owned(),
        time: now,
        data: json!({ "status": status.as_str(), "reason": reason }),
    }
}

/// The events of a run's change from `before` to `after`: it ended, or it went
/// on again after a retry request.
pub(crate) fn flow_run_change_events(
    run: &FlowRun,
    before: ExecutionStatus,
    now: Millis,
) -> Vec<NewEvent> {
    let running = ExecutionStatus::Running;
    if before == running && run.status != running {
        vec![flow_run_ended_event(
            &run.organization_id,
            &run.id,
            run.status,
            run.end_reason.as_deref(),
            now,
        )]
    } else if before != running && run.status == running {
        vec![flow_run_started_event(run, true, now)]
    } else {
        Vec::new()
    }
}

/// Why a run canceled by `canceled_by` ended.
pub(crate) fn flow_run_canceled_reason(canceled_by: &str) -> String {
    format!("canceled by {canceled_by}")
}

/// `execution.started`, written as the execution becomes RUNNING.
pub(crate) fn started_event(
    organization_id: &str,
    execution_id: &str,
    runtime_id: &str,
    now: Millis,
) -> NewEvent {
    NewEvent {
        organization_id: organization_id.to_owned(),
        kind: EventKind::ExecutionStarted,
        subject_id: execution_id.to_owned(),
        time: now,
        data: started_event_data(runtime_id),
    }
}

/// What `execution.started` says.
pub(crate) fn started_event_data(runtime_id: &str) -> serde_json::Value {
    json!({ "runtime_id": runtime_id })
}

/// An execution's end. `flow_run_id` is written even when null: the flow engine
/// then knows the execution is no step of a flow without reading it (events of
/// earlier versions lack the key).
fn ended_event(
    execution: ExecutionRef<'_>,
    status: ExecutionStatus,
    reason: &str,
    exit_code: Option<i32>,
    time: Millis,
) -> NewEvent {
    NewEvent {
        organization_id: execution.organization_id.to_owned(),
        kind: EventKind::ExecutionEnded,
        subject_id: execution.execution_id.to_owned(),
        time,
        data: json!({
            "status": status.as_str(),
            "reason": reason,
            "exit_code": exit_code,
            "flow_run_id": execution.flow_run_id,
        }),
    }
}

/// The execution an event is about.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ExecutionRef<'a> {
    pub organization_id: &'a str,
    pub execution_id: &'a str,
    /// The flow run it is a step of.
    pub flow_run_id: Option<&'a str>,
}

/// What a user's cancel writes: `execution.canceled`, and for a PENDENT
/// execution, which ends at once, `execution.ended`. A RUNNING one ends when its
/// runtime reports it stopped. A cancel already requested writes nothing again.
pub(crate) fn cancel_events(
    execution: ExecutionRef<'_>,
    canceled_by: &str,
    was_running: bool,
    now: Millis,
) -> Vec<NewEvent> {
    let canceled = NewEvent {
        organization_id: execution.organization_id.to_owned(),
        kind: EventKind::ExecutionCanceled,
        subject_id: execution.execution_id.to_owned(),
        time: now,
        data: json!({ "canceled_by": canceled_by, "was_running": was_running }),
    };
    if was_running {
        return vec![canceled];
    }
    let ended = ended_event(
        execution,
        ExecutionStatus::Canceled,
        CANCELED_BEFORE_START,
        None,
        now,
    );
    vec![canceled, ended]
}

/// `runtime.online`, written as a connection makes an offline runtime online.
pub(crate) fn runtime_online_event(
    organization_id: &str,
    runtime_id: &str,
    session_id: &str,
    now: Millis,
) -> NewEvent {
    NewEvent {
        organization_id: organization_id.to_owned(),
        kind: EventKind::RuntimeOnline,
        subject_id: runtime_id.to_owned(),
        time: now,
        data: json!({ "session_id": session_id }),
    }
}

/// `runtime.offline`, written as the runtime's current connection ends.
pub(crate) fn runtime_offline_event(
    organization_id: &str,
    runtime_id: &str,
    session_id: &str,
    reason: &str,
    now: Millis,
) -> NewEvent {
    NewEvent {
        organization_id: organization_id.to_owned(),
        kind: EventKind::RuntimeOffline,
        subject_id: runtime_id.to_owned(),
        time: now,
        data: json!({ "session_id": session_id, "reason": reason }),
    }
}

/// The columns [`event_target_from`] reads.
pub(crate) const EVENT_TARGET_COLUMNS: &str =
    "id, organization_id, status, progress, return_value, last_event_seq, init, flow_run_id";

/// What an execution's row says before a batch of events is applied.
#[derive(Debug, Clone)]
pub(crate) struct EventTarget {
    pub execution_id: String,
    pub organization_id: String,
    pub status: ExecutionStatus,
    pub progress: f64,
    /// JSON text.
    pub return_value: Option<String>,
    pub last_event_seq: u64,
    pub init: Millis,
    pub flow_run_id: Option<String>,
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
    /// The stream's events: `execution.ended` when the batch ends it.
    pub events: Vec<NewEvent>,
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
    if target.last_event_seq == before {
        return None;
    }
    let events = ending
        .iter()
        .map(|&(end, exit_code, reason)| {
            ended_event(
                ExecutionRef {
                    organization_id: &target.organization_id,
                    execution_id: &target.execution_id,
                    flow_run_id: target.flow_run_id.as_deref(),
                },
                target.status,
                reason,
                exit_code,
                end,
            )
        })
        .collect();
    Some(AppliedEvents {
        target,
        lines,
        ending,
        events,
    })
}

/// The state [`apply_events`] starts from, read from a row with the
/// [`EVENT_TARGET_COLUMNS`].
pub(crate) fn event_target_from(row: &impl RecordRow) -> Result<EventTarget> {
    Ok(EventTarget {
        execution_id: row.text("id")?,
        organization_id: row.text("organization_id")?,
        status: status_of(row)?,
        progress: row.real("progress")?,
        return_value: row.text_opt("return_value")?,
        last_event_seq: row.int("last_event_seq")? as u64,
        init: row.int("init")?,
        flow_run_id: row.text_opt("flow_run_id")?,
    })
}

/// The columns [`live_lease_from`] reads.
pub(crate) const LIVE_LEASE_COLUMNS: &str = "id, organization_id, status, attempt, \
     max_attempts, last_event_seq, cancel_requested, progress, flow_run_id";

/// An execution under a live lease, as [`plan_lease_end`] needs it.
#[derive(Debug, Clone)]
pub(crate) struct LiveLease {
    pub execution_id: String,
    pub organization_id: String,
    pub status: ExecutionStatus,
    pub attempt: i64,
    pub max_attempts: i64,
    pub last_event_seq: i64,
    pub cancel_requested: bool,
    pub progress: f64,
    pub flow_run_id: Option<String>,
}

pub(crate) fn live_lease_from(row: &impl RecordRow) -> Result<LiveLease> {
    Ok(LiveLease {
        execution_id: row.text("id")?,
        organization_id: row.text("organization_id")?,
        status: status_of(row)?,
        attempt: row.int("attempt")?,
        max_attempts: row.int("max_attempts")?,
        last_event_seq: row.int("last_event_seq")?,
        cancel_requested: row.flag("cancel_requested")?,
        progress: row.real("progress")?,
        flow_run_id: row.text_opt("flow_run_id")?,
    })
}

/// What ending a lease writes: the execution's new values (`started` is cleared
/// when it goes back to PENDENT), the line to log, numbered `last_event_seq`,
/// and the stream's events.
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
    pub events: Vec<NewEvent>,
}

/// Why a lease ends early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    /// Its runtime was lost or gave it up; `spawned`: the robot may have run.
    Lost { spawned: bool },
    /// The server refused to start it (a credential it needs is missing or not
    /// allowed): it ends ERROR, never queued again.
    Refused,
}

/// Decides how a lease whose runtime was lost or gave it up ends. When the robot
/// certainly never ran (`spawned` false, or still PENDENT), the execution waits
/// for a runtime again without using up an attempt; otherwise it is queued again
/// only if attempts remain, else ended with `reason`. A cancel is final.
pub(crate) fn plan_lease_end(
    live: &LiveLease,
    ending: Ending,
    reason: &str,
    now: Millis,
) -> LeaseEnd {
    let seq = live.last_event_seq + 1;
    let (organization_id, execution_id) = (&live.organization_id, &live.execution_id);
    let ended = |status, message: String, level| LeaseEnd {
        outcome: LostOutcome::Ended(status),
        status,
        end: Some(now),
        end_reason: Some(message.clone()),
        attempt: live.attempt,
        progress: live.progress,
        last_event_seq: seq,
        events: vec![ended_event(
            ExecutionRef {
                organization_id,
                execution_id,
                flow_run_id: live.flow_run_id.as_deref(),
            },
            status,
            &message,
            None,
            now,
        )],
        log: Some((level, message)),
    };
    let requeued = |reason: &str| NewEvent {
        organization_id: organization_id.clone(),
        kind: EventKind::ExecutionRequeued,
        subject_id: execution_id.clone(),
        time: now,
        data: json!({
            "reason": reason,
            "was_running": live.status == ExecutionStatus::Running,
        }),
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
    let spawned = match ending {
        Ending::Lost { spawned } => spawned,
        // The server refused what the run needs: queued again, it would fail the
        // same way, so it ends here.
        Ending::Refused => return ended(ExecutionStatus::Error, reason.to_owned(), "ERROR"),
    };
    if live.status == ExecutionStatus::Pendent || !spawned {
        return LeaseEnd {
            outcome: LostOutcome::Requeued,
            status: ExecutionStatus::Pendent,
            end: None,
            end_reason: None,
            attempt: (live.attempt - 1).max(0),
            progress: live.progress,
            last_event_seq: live.last_event_seq,
            log: None,
            events: vec![requeued(reason)],
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
            events: vec![requeued(&message)],
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

// --- Schedules ----------------------------------------------------------------

/// What a firing reads before it decides: the schedule (locked on PostgreSQL,
/// so firings of one schedule take turns), its live runs, and the fires of the
/// firing's range already recorded.
#[derive(Debug, Clone)]
pub(crate) struct FiringState {
    pub overlap: Overlap,
    pub paused: bool,
    pub next_fire_at: Option<Millis>,
    /// Live runs that wait: PENDENT executions, and flow runs whose current
    /// step's execution is PENDENT.
    pub pendent: u64,
    /// The other live runs: RUNNING executions and flow runs.
    pub running: u64,
    /// (scheduled time, outcome) of the fires already recorded.
    pub recorded: HashMap<Millis, String>,
}

/// The schedule's live flow runs (`live`) and those of them that wait
/// (`waiting`: the current step's execution is PENDENT), as [`FiringState`]
/// counts them; the organisation and schedule are placeholders 1 and 2.
pub(crate) fn live_flow_runs_sql(placeholder: impl Fn(usize) -> String) -> String {
    let (organization, schedule) = (placeholder(1), placeholder(2));
    format!(
        "SELECT COUNT(*) AS live, COALESCE(SUM(CASE WHEN r.status = 'PENDENT' OR EXISTS ( \
           SELECT 1 FROM flow_steps s JOIN executions e \
           ON e.id = s.execution_id AND e.organization_id = s.organization_id \
           WHERE s.organization_id = r.organization_id AND s.run_id = r.id \
           AND s.status = 'RUNNING' AND e.status = 'PENDENT') THEN 1 ELSE 0 END), 0) AS waiting \
         FROM flow_runs r WHERE r.organization_id = {organization} AND r.schedule_id = {schedule} \
         AND r.status IN ('PENDENT', 'RUNNING') AND r.schedule_id IS NOT NULL"
    )
}

/// One fire to record: the row (inserted, or replacing a missed one), the run
/// to start if any (with its own events), then the schedule's events.
#[derive(Debug)]
pub(crate) struct FireWrite<'f> {
    pub scheduled_for: Millis,
    pub outcome: FireOutcome,
    pub reason: Option<String>,
    pub start: Option<&'f NewScheduledRun>,
    pub events: Vec<NewEvent>,
}

/// A firing decided: what to write, what to add to the counters, what to answer.
#[derive(Debug)]
pub(crate) struct FiringWrites<'f> {
    pub writes: Vec<FireWrite<'f>>,
    pub fired: i64,
    pub skipped: i64,
    pub missed: i64,
    pub answer: Fired,
}

/// The earliest and latest scheduled times of a firing: the range of recorded
/// fires a backend reads for [`FiringState::recorded`].
pub(crate) fn firing_range(firing: &Firing) -> Option<(Millis, Millis)> {
    let times = firing
        .missed
        .iter()
        .map(|fire| fire.scheduled_for)
        .chain(firing.runs.iter().map(|run| run.scheduled_for));
    times.fold(None, |range, at| match range {
        None => Some((at, at)),
        Some((low, high)) => Some((low.min(at), high.max(at))),
    })
}

/// Decides a firing; `None` when it is stale (the schedule is gone, or, for
/// fires from the rule, paused or moved on since they were decided).
pub(crate) fn plan_firing(firing: &Firing, state: Option<FiringState>) -> Option<FiringWrites<'_>> {
    let mut state = state?;
    if let Some(advance) = &firing.advance {
        if state.paused || state.next_fire_at != Some(advance.from) {
            return None;
        }
    }
    let origin = firing.origin.as_str();
    let event = |kind, scheduled_for, data: serde_json::Value| NewEvent {
        organization_id: firing.organization_id.clone(),
        kind,
        subject_id: firing.schedule_id.clone(),
        time: firing.now,
        data: {
            let mut data = data;
            data["scheduled_for"] = json!(scheduled_for);
            data
        },
    };
    let mut decided = FiringWrites {
        writes: Vec::new(),
        fired: 0,
        skipped: 0,
        missed: 0,
        answer: Fired::Applied(Vec::new()),
    };
    for missed in &firing.missed {
        if state.recorded.contains_key(&missed.scheduled_for) {
            continue;
        }
        decided.missed += 1;
        decided.writes.push(FireWrite {
            scheduled_for: missed.scheduled_for,
            outcome: FireOutcome::Missed,
            reason: Some(missed.reason.clone()),
            start: None,
            events: vec![event(
                EventKind::ScheduleMissed,
                missed.scheduled_for,
                json!({ "reason": missed.reason }),
            )],
        });
    }
    let mut outcomes = Vec::with_capacity(firing.runs.len());
    for run in &firing.runs {
        let at = run.scheduled_for;
        // A fire runs once; one recorded as missed may still run (a backfill).
        if state
            .recorded
            .get(&at)
            .is_some_and(|outcome| outcome != FireOutcome::Missed.as_str())
        {
            outcomes.push((at, None));
            continue;
        }
        state
            .recorded
            .insert(at, FireOutcome::SkippedOverlap.as_str().to_owned());
        let skipped = |reason: &str, message: &str| {
            event(
                EventKind::ScheduleSkipped,
                at,
                json!({ "origin": origin, "reason": reason, "message": message }),
            )
        };
        let write = match &run.start {
            Err(why) => {
                decided.skipped += 1;
                FireWrite {
                    scheduled_for: at,
                    outcome: FireOutcome::SkippedError,
                    reason: Some(why.clone()),
                    start: None,
                    events: vec![skipped("error", why)],
                }
            }
            Ok(_) if !state.overlap.allows(state.pendent, state.running) => {
                decided.skipped += 1;
                let why = format!(
                    "an earlier run was live ({} PENDENT, {} RUNNING) and the overlap rule is {}",
                    state.pendent,
                    state.running,
                    state.overlap.as_str()
                );
                FireWrite {
                    scheduled_for: at,
                    outcome: FireOutcome::SkippedOverlap,
                    events: vec![skipped("overlap", &why)],
                    reason: Some(why),
                    start: None,
                }
            }
            Ok(start) => {
                decided.fired += 1;
                if start.starts_live() {
                    state.pendent += 1;
                }
                let started = start.id();
                let (field, id) = started.field();
                FireWrite {
                    scheduled_for: at,
                    events: vec![event(
                        EventKind::ScheduleFired,
                        at,
                        json!({ field: id, "origin": origin }),
                    )],
                    outcome: FireOutcome::Started(started),
                    reason: None,
                    start: Some(start),
                }
            }
        };
        outcomes.push((at, Some(write.outcome.clone())));
        decided.writes.push(write);
    }
    decided.answer = Fired::Applied(outcomes);
    Some(decided)
}

/// How a run's end changes its schedule's count of consecutive failures: an
/// ERROR adds one, a FINISHED starts again, a CANCELED changes nothing
/// (`None`). The note is set when the count reaches `pause_after` on a
/// schedule not paused yet.
pub(crate) fn count_run_end(
    status: ExecutionStatus,
    consecutive: u32,
    pause_after: Option<u32>,
    paused: bool,
    run: &ScheduledRun,
) -> Option<(u32, Option<String>)> {
    match status {
        ExecutionStatus::Error => {
            let consecutive = consecutive + 1;
            let note = pause_after
                .filter(|limit| consecutive >= *limit && !paused)
                .map(|limit| {
                    format!(
                        "paused by the server: {limit} consecutive runs ended ERROR \
                         (the last: {})",
                        run.describe()
                    )
                });
            Some((consecutive, note))
        }
        ExecutionStatus::Finished => (consecutive != 0).then_some((0, None)),
        _ => None,
    }
}

/// `schedule.paused`, written as the server pauses a schedule after `run`.
pub(crate) fn schedule_paused_event(
    paused: &PausedSchedule,
    run: &ScheduledRun,
    now: Millis,
) -> NewEvent {
    let (field, id) = run.field();
    NewEvent {
        organization_id: paused.organization_id.clone(),
        kind: EventKind::SchedulePaused,
        subject_id: paused.schedule_id.clone(),
        time: now,
        data: json!({ "note": paused.note, field: id }),
    }
}

/// The table a scheduled run's row is in, for the query that finds its
/// schedule.
pub(crate) fn scheduled_run_table(run: &ScheduledRun) -> (&'static str, &str) {
    match run {
        ScheduledRun::Execution(id) => ("executions", id),
        ScheduledRun::FlowRun(id) => ("flow_runs", id),
    }
}
