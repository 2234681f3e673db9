//! A schedule's fires: those its rule makes due (the scheduler's), one now
//! (a trigger), those of a past range (a backfill). Each becomes an ordinary
//! execution of the schedule's robot, or an ordinary run of its flow,
//! submitted by `schedule:ID`, applied in the store in one transaction
//! ([`regente_store::ScheduleStore::fire_schedule`]), where it happens at most
//! once.

use std::collections::{BTreeSet, HashSet};

use regente_core::schedule::plan::{self, Catchup};
use regente_core::schedule::Millis;
use regente_store::{
    Advance, AuditEntry, FireOrigin, FireOutcome, FireRun, Fired, Firing, MissedFire,
    NewScheduledRun, Notice, Schedule, ScheduleTarget, ScheduledRun,
};

use super::{rule_of, stored, variables_of};
use crate::service::{audit, flows, runs, Caller, Context, Error, Result};

/// Fires a backfill may ask for at once.
pub const MAX_BACKFILL_FIRES: usize = 1000;

/// What became of one fire asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FireAnswer {
    pub scheduled_for: Millis,
    /// `None`: it had happened already (run or skipped), and happens once.
    pub outcome: Option<FireOutcome>,
}

fn catchup_of(schedule: &Schedule) -> Catchup {
    Catchup {
        window_ms: schedule.catchup_window_seconds * 1000,
        misfire: schedule.misfire,
        jitter_ms: schedule.jitter_seconds * 1000,
    }
}

/// The run of one fire, submitted by the schedule with its variables: an
/// execution of the robot's newest version, or a run of the flow's newest
/// version as it starts (its first step's execution built). A run that cannot
/// be made (the robot or the flow now refuses the variables) is the fire's
/// reason to be skipped; a failure to read the store is an error.
async fn run_for(ctx: &Context, schedule: &Schedule, at: Millis) -> Result<FireRun> {
    let caller = Caller::system(&schedule.organization_id, "schedule", &schedule.id);
    let variables = variables_of(schedule)?;
    let start = match &schedule.target {
        ScheduleTarget::Robot {
            robot_id,
            runtime_id,
        } => runs::new_execution(ctx, &caller, runtime_id, robot_id, &variables)
            .await
            .map(|mut execution| {
                execution.schedule_id = Some(schedule.id.clone());
                execution.scheduled_for = Some(at);
                NewScheduledRun::Execution(Box::new(execution))
            }),
        ScheduleTarget::Flow { flow_id } => flows::new_run(ctx, &caller, flow_id, &variables)
            .await
            .map(|(mut new, _)| {
                new.run.schedule_id = Some(schedule.id.clone());
                new.run.scheduled_for = Some(at);
                NewScheduledRun::Flow(Box::new(new))
            }),
    };
    let start = match start {
        Ok(start) => Ok(start),
        Err(Error::Internal(cause)) => return Err(Error::Internal(cause)),
        Err(refused) => Err(format!("the run could not be queued: {refused}")),
    };
    Ok(FireRun {
        scheduled_for: at,
        start,
    })
}

/// Applies a firing and wakes the runtimes of the executions it queued.
async fn apply(ctx: &Context, firing: &Firing) -> Result<Fired> {
    let fired = ctx.store.fire_schedule(firing).await?;
    if let Fired::Applied(outcomes) = &fired {
        let started: HashSet<&ScheduledRun> = outcomes
            .iter()
            .filter_map(|(_, outcome)| match outcome {
                Some(FireOutcome::Started(run)) => Some(run),
                _ => None,
            })
            .collect();
        let runtimes: BTreeSet<&str> = firing
            .runs
            .iter()
            .filter_map(|run| run.start.as_ref().ok())
            .filter(|start| started.contains(&start.id()))
            .filter_map(NewScheduledRun::runtime_id)
            .collect();
        for runtime_id in runtimes {
            let runtime_id = runtime_id.to_owned();
            crate::service::announce(ctx, Notice::Work { runtime_id }).await;
        }
    }
    Ok(fired)
}

/// Fires what the rule makes due at `now` (catching up per the schedule's
/// misfire rule); true when more is due already (a long backlog is decided in
/// bounded steps).
pub async fn fire_due(ctx: &Context, schedule: &Schedule, now: Millis) -> Result<bool> {
    let Some(from) = schedule.next_fire_at else {
        return Ok(false);
    };
    let rule = rule_of(schedule)?;
    let plan = plan::plan(&rule, &schedule.id, from, &catchup_of(schedule), now);
    if plan.is_empty() && plan.next_due_at == schedule.next_due_at {
        return Ok(false);
    }
    let mut runs = Vec::with_capacity(plan.run.len());
    for at in &plan.run {
        runs.push(run_for(ctx, schedule, *at).await?);
    }
    let firing = Firing {
        organization_id: schedule.organization_id.clone(),
        schedule_id: schedule.id.clone(),
        origin: FireOrigin::Rule,
        advance: Some(Advance {
            from,
            next_fire_at: plan.next_fire_at,
            next_due_at: plan.next_due_at,
        }),
        missed: plan
            .missed
            .iter()
            .map(|(at, reason)| MissedFire {
                scheduled_for: *at,
                reason: reason.as_str().to_owned(),
            })
            .collect(),
        runs,
        now,
        audit: None,
    };
    if !plan.missed.is_empty() {
        tracing::warn!(
            schedule = %schedule.id,
            missed = plan.missed.len(),
            "fires due while no server could fire them are recorded as missed"
        );
    }
    match apply(ctx, &firing).await? {
        // Another server, an edit or a pause got there first: read it again.
        Fired::Stale => Ok(true),
        Fired::Applied(outcomes) => {
            count_fires(ctx, &outcomes, firing.missed.len(), now);
            Ok(plan.next_due_at.is_some_and(|due| due <= now))
        }
    }
}

/// Counts the scheduler's fires for `/metrics` (a fire recorded already by
/// another server is not counted again).
fn count_fires(
    ctx: &Context,
    outcomes: &[(Millis, Option<FireOutcome>)],
    missed: usize,
    now: Millis,
) {
    let counts = &ctx.work_counts;
    let add = |counter: &std::sync::atomic::AtomicU64, n: u64| {
        counter.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    };
    add(&counts.fires_missed, missed as u64);
    for (scheduled_for, outcome) in outcomes {
        match outcome {
            Some(FireOutcome::Started(_)) => counts.fired(now - scheduled_for),
            Some(FireOutcome::SkippedOverlap | FireOutcome::SkippedError) => {
                add(&counts.fires_skipped, 1)
            }
            Some(FireOutcome::Missed) => add(&counts.fires_missed, 1),
            None => {}
        }
    }
}

/// One run now, counted as a fire of the schedule (the overlap rule applies;
/// a paused schedule may be triggered).
pub async fn trigger(ctx: &Context, caller: &Caller, id: &str) -> Result<FireAnswer> {
    let schedule = stored(ctx, caller, id).await?;
    let now = ctx.clock.now();
    let run = run_for(ctx, &schedule, now).await?;
    let summary = serde_json::json!({"name": schedule.name, "scheduled_for": now});
    let audit = audit::record(ctx, caller, "schedule.trigger", id, summary);
    let firing = (FireOrigin::Trigger, vec![run], audit);
    let answers = fire_runs(ctx, &schedule, firing, now).await?;
    match answers.into_iter().next() {
        Some(
            answer @ FireAnswer {
                outcome: Some(_), ..
            },
        ) => Ok(answer),
        _ => Err(Error::Conflict(format!(
            "schedule {id} has already fired at {now}; try again"
        ))),
    }
}

/// The fires of the rule from `from` to `to` (both included, in the past),
/// each run with the overlap rule applied; fires that happened already are
/// not run again (those recorded as missed are).
pub async fn backfill(
    ctx: &Context,
    caller: &Caller,
    id: &str,
    from: Millis,
    to: Millis,
) -> Result<Vec<FireAnswer>> {
    let schedule = stored(ctx, caller, id).await?;
    let now = ctx.clock.now();
    if to < from {
        return Err(Error::Invalid("to: must not be before from".into()));
    }
    if to > now {
        return Err(Error::Invalid(format!(
            "to: must not be in the future (now is {now}); the rule fires the future itself"
        )));
    }
    let rule = rule_of(&schedule)?;
    let fires: Vec<Millis> = rule
        .fires_between(from - 1, to)
        .take(MAX_BACKFILL_FIRES + 1)
        .collect();
    if fires.len() > MAX_BACKFILL_FIRES {
        return Err(Error::Invalid(format!(
            "to: the range holds more than {MAX_BACKFILL_FIRES} fires; backfill a shorter one"
        )));
    }
    let mut runs = Vec::with_capacity(fires.len());
    for at in fires {
        runs.push(run_for(ctx, &schedule, at).await?);
    }
    let summary =
        serde_json::json!({"name": schedule.name, "from": from, "to": to, "fires": runs.len()});
    let audit = audit::record(ctx, caller, "schedule.backfill", id, summary);
    fire_runs(ctx, &schedule, (FireOrigin::Backfill, runs, audit), now).await
}

/// Fires a person asked for (a trigger, a backfill), with the record of the
/// request, written with them.
async fn fire_runs(
    ctx: &Context,
    schedule: &Schedule,
    (origin, runs, audit): (FireOrigin, Vec<FireRun>, AuditEntry),
    now: Millis,
) -> Result<Vec<FireAnswer>> {
    if runs.is_empty() {
        return Ok(Vec::new());
    }
    let firing = Firing {
        organization_id: schedule.organization_id.clone(),
        schedule_id: schedule.id.clone(),
        origin,
        advance: None,
        missed: Vec::new(),
        runs,
        now,
        audit: Some(audit),
    };
    match apply(ctx, &firing).await? {
        Fired::Applied(outcomes) => Ok(outcomes
            .into_iter()
            .map(|(scheduled_for, outcome)| FireAnswer {
                scheduled_for,
                outcome,
            })
            .collect()),
        // Deleted meanwhile.
        Fired::Stale => Err(super::not_found(&schedule.id)),
    }
}
