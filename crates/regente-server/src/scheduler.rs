//! The scheduler: on the server that leads, fires every schedule when it is
//! due, and pauses schedules whose runs keep failing.
//!
//! - [`run`] sleeps until the earliest `next_due_at` of any schedule
//!   ([`Clock::sleep_until`](crate::clock::Clock::sleep_until)), or until a
//!   schedule changes (an edit here wakes it at once; one on another server
//!   through [`Notice::SchedulesChanged`](regente_store::Notice)), or for
//!   [`SAFETY_NET`] at most, then fires what is due. No polling: a fire's lag is
//!   a wake-up, two reads and its transaction.
//! - Only the leader fires. A server that does not lead asks again every
//!   [`LEAD_CHECK`]; when it takes over, the schedules due are caught up by
//!   their misfire rules. Two servers that both believe they lead for a moment
//!   cannot fire one fire twice: the store applies a firing only where the
//!   schedule still stands, and claims each (schedule, time) once.
//! - [`count_failures`] follows the event stream's `execution.ended` and
//!   `flow_run.ended` events and pauses a schedule after
//!   `pause_after_failures` consecutive ERROR runs (executions of its robot, or
//!   runs of its flow).

use std::sync::Arc;
use std::time::Duration;

use regente_core::ExecutionStatus;
use regente_store::{EventKind, Millis, Notice, RunEnd, RunEndsCounted, ScheduledRun};
use tracing::{error, info, warn};

use crate::service::{self, Context};
use crate::supervisor::StopSignal;

/// How often a server that does not lead asks whether it does now.
pub const LEAD_CHECK: Duration = Duration::from_secs(1);
/// The longest the scheduler sleeps without looking at the store: a missed
/// wake-up costs this much lag at most.
pub const SAFETY_NET: Duration = Duration::from_secs(5);
/// How long a schedule that failed to fire waits before it is tried again.
const RETRY_AFTER: Millis = 1_000;
/// Schedules read at once.
const DUE_PER_READ: u32 = 100;
/// How often run ends are counted against their schedules.
pub const COUNT_FAILURES_EVERY: Duration = Duration::from_secs(1);
/// The consumer of the event stream that counts failures.
const FAILURES_CONSUMER: &str = "schedule-failures";
/// Events read at once by [`count_failures`].
const EVENTS_PER_READ: u32 = 1000;

/// The scheduler's task, under the supervisor.
pub async fn run(ctx: Arc<Context>, mut stop: StopSignal) {
    let mut leading = false;
    loop {
        if stop.is_requested() {
            return;
        }
        match ctx.store.lead().await {
            Ok(true) => {
                if !leading {
                    info!("this server fires the schedules");
                    leading = true;
                }
            }
            Ok(false) => {
                leading = false;
                if !stop.wait(LEAD_CHECK).await {
                    return;
                }
                continue;
            }
            Err(e) => {
                warn!(error = format!("{e:#}"), "cannot tell who leads");
                if !stop.wait(LEAD_CHECK).await {
                    return;
                }
                continue;
            }
        }
        let next = match fire_due(&ctx).await {
            Ok(next) => next,
            Err(e) => {
                error!(error = format!("{e:#}"), "cannot fire the schedules due");
                Some(ctx.clock.now() + RETRY_AFTER)
            }
        };
        let due = async {
            match next {
                Some(at) => ctx.clock.sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = stop.requested() => return,
            _ = due => {}
            _ = ctx.schedules_changed.notified() => {}
            _ = tokio::time::sleep(SAFETY_NET) => {}
        }
    }
}

/// Fires every schedule due now; answers when the next one is due.
pub async fn fire_due(ctx: &Context) -> anyhow::Result<Option<Millis>> {
    let mut failed = false;
    loop {
        let now = ctx.clock.now();
        let due = ctx.store.due_schedules(now, DUE_PER_READ).await?;
        let mut more = due.len() == DUE_PER_READ as usize;
        for schedule in &due {
            match service::schedules::fire::fire_due(ctx, schedule, now).await {
                Ok(again) => more |= again,
                Err(e) => {
                    failed = true;
                    error!(
                        schedule = %schedule.id,
                        error = format!("{:#}", anyhow::Error::from(e)),
                        "cannot fire a schedule; it is tried again shortly"
                    );
                }
            }
        }
        if !more || failed {
            break;
        }
    }
    let next = ctx.store.next_schedule_due().await?;
    // A schedule that failed is still due: look again in a moment, not at once.
    Ok(match (failed, next) {
        (true, next) => Some(
            next.unwrap_or(Millis::MAX)
                .max(ctx.clock.now() + RETRY_AFTER),
        ),
        (false, next) => next,
    })
}

/// Counts the ends of scheduled runs read from the event stream against their
/// schedules (an ERROR adds one, a FINISHED starts again), pausing those that
/// reach their `pause_after_failures`. Leader work: the cursor is saved with
/// the counts, and another server's copy of this work finds it moved.
pub async fn count_failures(ctx: Arc<Context>) -> anyhow::Result<()> {
    loop {
        let from = ctx.store.load_cursor(FAILURES_CONSUMER).await?;
        let read = ctx
            .store
            .events_of_kinds_after(
                from,
                EVENTS_PER_READ,
                &[EventKind::ExecutionEnded, EventKind::FlowRunEnded],
            )
            .await?;
        let Some(through) = read.through else {
            return Ok(());
        };
        let ends: Vec<RunEnd> = read
            .events
            .iter()
            .filter_map(|event| {
                let run = match event.kind {
                    EventKind::ExecutionEnded => ScheduledRun::Execution(event.subject_id.clone()),
                    EventKind::FlowRunEnded => ScheduledRun::FlowRun(event.subject_id.clone()),
                    _ => return None,
                };
                let status = event.data["status"].as_str()?;
                Some(RunEnd {
                    organization_id: event.organization_id.clone(),
                    run,
                    status: ExecutionStatus::parse(status)?,
                })
            })
            .collect();
        let counted = ctx
            .store
            .count_run_ends(FAILURES_CONSUMER, from, through, &ends, ctx.clock.now())
            .await?;
        match counted {
            RunEndsCounted::Counted(paused) => {
                for pause in &paused {
                    warn!(schedule = %pause.schedule_id, note = %pause.note, "schedule paused");
                }
                if !paused.is_empty() {
                    service::announce(&ctx, Notice::SchedulesChanged).await;
                }
            }
            RunEndsCounted::Stale => return Ok(()),
        }
        if read.read < EVENTS_PER_READ as usize {
            return Ok(());
        }
    }
}
