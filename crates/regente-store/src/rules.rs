//! The rules of the runtime protocol, written once for both backends: how a
//! batch of reports changes an execution, and how a lease ends when its runtime
//! is lost or gives it up. The backends read the row, ask these what to write,
//! and write it.

use regente_core::ExecutionStatus;

use crate::rows::{status_of, RecordRow};
use crate::{Change, EventRecord, LostOutcome, Millis, Result};

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
/// certainly never ran (`spawned` false, or still PENDENT), the execution waits
/// for a runtime again without using up an attempt; otherwise it is queued again
/// only if attempts remain, else ended with `reason`. A cancel is final.
pub(crate) fn plan_lease_end(
    live: &LiveLease,
    spawned: bool,
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
