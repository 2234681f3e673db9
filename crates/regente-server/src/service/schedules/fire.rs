//! A schedule's fires: those its rule makes due (the scheduler's), one now
//! (a trigger), those of a past range (a backfill). Each becomes an ordinary
//! execution of the schedule's robot, submitted by `schedule:ID`, applied in
//! the store in one transaction ([`regente_store::ScheduleStore::fire_schedule`]),
//! where it happens at most once.

use regente_core::schedule::plan::{self, Catchup};
use regente_core::schedule::Millis;
use regente_store::{
    Advance, FireOrigin, FireOutcome, FireRun, Fired, Firing, MissedFire, Notice, Schedule,
};

use super::{rule_of, stored, variables_of};
use crate::service::{runs, Caller, Context, Error, Result};

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

/// The run of one fire: the robot's newest version with the schedule's
/// variables, submitted by the schedule. A run that cannot be made (the robot
/// now refuses the variables) is the fire's reason to be skipped; a failure to
/// read the store is an error.
async fn run_for(ctx: &Context, schedule: &Schedule, at: Millis) -> Result<FireRun> {
    let caller = Caller::system(&schedule.organization_id, "schedule", &schedule.id);
    let variables = variables_of(schedule)?;
    let execution = match runs::new_execution(
        ctx,
        &caller,
        &schedule.runtime_id,
        &schedule.robot_id,
        &variables,
    )
    .await
    {
        Ok(mut execution) => {
            execution.schedule_id = Some(schedule.id.clone());
            execution.scheduled_for = Some(at);
            Ok(execution)
        }
        Err(Error::Internal(cause)) => return Err(Error::Internal(cause)),
        Err(refused) => Err(format!("the run could not be queued: {refused}")),
    };
    Ok(FireRun {
        scheduled_for: at,
        execution,
    })
}

/// Applies a firing and wakes the runtime of the runs it queued.
async fn apply(ctx: &Context, schedule: &Schedule, firing: &Firing) -> Result<Fired> {
    let fired = ctx.store.fire_schedule(firing).await?;
    if let Fired::Applied(outcomes) = &fired {
        let started = outcomes
            .iter()
            .any(|(_, outcome)| matches!(outcome, Some(FireOutcome::Started { .. })));
        if started {
            let runtime_id = schedule.runtime_id.clone();
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
    };
    if !plan.missed.is_empty() {
        tracing::warn!(
            schedule = %schedule.id,
            missed = plan.missed.len(),
            "fires due while no server could fire them are recorded as missed"
        );
    }
    match apply(ctx, schedule, &firing).await? {
        // Another server, an edit or a pause got there first: read it again.
        Fired::Stale => Ok(true),
        Fired::Applied(_) => Ok(plan.next_due_at.is_some_and(|due| due <= now)),
    }
}

/// One run now, counted as a fire of the schedule (the overlap rule applies;
/// a paused schedule may be triggered).
pub async fn trigger(ctx: &Context, caller: &Caller, id: &str) -> Result<FireAnswer> {
    let schedule = stored(ctx, caller, id).await?;
    let now = ctx.clock.now();
    let run = run_for(ctx, &schedule, now).await?;
    let answers = fire_runs(ctx, &schedule, FireOrigin::Trigger, vec![run], now).await?;
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
    fire_runs(ctx, &schedule, FireOrigin::Backfill, runs, now).await
}

async fn fire_runs(
    ctx: &Context,
    schedule: &Schedule,
    origin: FireOrigin,
    runs: Vec<FireRun>,
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
    };
    match apply(ctx, schedule, &firing).await? {
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
