//! Schedules of flows: a fire starts the flow run (its steps, its first
//! execution and their events) in the fire's transaction, once; the overlap
//! rule counts the schedule's live flow runs; their ends count against its
//! failures.

use crate::fixtures::*;
use crate::schedules::{counters, firing, last_reason, outcomes, schedule};
use crate::support::{events_after_at_least, events_of_kind};
use regente_core::schedule::plan::Overlap;
use regente_store::{
    Advance, EventCursor, EventKind, FireOrigin, FireOutcome, FireRun, Fired, Firing, FlowRun,
    FlowStep, NewFlowRun, NewFlowVersion, NewScheduledRun, RunEnd, RunEndsCounted, Schedule,
    ScheduleTarget, ScheduledRun,
};

conformance! {
    store: [
        a_flow_fire_starts_the_run_whole_and_once,
        concurrent_firings_of_one_flow_fire_start_one_run,
        overlap_rules_count_the_schedule_s_live_flow_runs,
        flow_run_ends_count_against_their_schedule,
    ],
}

/// A flow of the world's organisation (the store keeps its definition as given).
async fn flow(w: &World) -> String {
    let name = format!("flow-{}", new_id());
    w.store
        .save_flow(
            &NewFlowVersion {
                id: new_id(),
                organization_id: w.org.id.clone(),
                name: name.clone(),
                definition: json!({"name": name, "steps": []}),
                created: 40,
                created_by: w.admin.id.clone(),
            },
            None,
        )
        .await
        .unwrap()
        .id
}

async fn flow_schedule(w: &World, overlap: Overlap, flow_id: &str) -> Schedule {
    let s = Schedule {
        target: ScheduleTarget::Flow {
            flow_id: flow_id.to_owned(),
        },
        variables: json!([{"name": "MIN", "value": 2}]),
        ..schedule(w, &format!("flow-{}", new_id()), overlap, None)
    };
    w.store.create_schedule(&s, None).await.unwrap();
    s
}

fn step(position: u32, id: &str, status: &str, execution_id: Option<&str>) -> FlowStep {
    FlowStep {
        position,
        step_id: id.to_owned(),
        status: status.to_owned(),
        attempt: u32::from(execution_id.is_some()),
        execution_id: execution_id.map(str::to_owned),
        return_value: None,
        reason: None,
        not_before: None,
        deadline: None,
    }
}

/// A run of `s`'s flow for the fire at `at`: its first step's execution
/// queued with it, or, with `ended`, a run that ended at once (its steps
/// skipped).
fn flow_run(w: &World, s: &Schedule, at: Millis, ended: bool) -> NewFlowRun {
    let run_id = new_id();
    let mut execution = w.execution(&w.runtime.id, at + 5, 1);
    execution.flow_run_id = Some(run_id.clone());
    execution.flow_step_id = Some("fetch".into());
    execution.submitted_by = format!("flow:{run_id}");
    let (status, steps, enqueue) = if ended {
        let skipped = vec![step(0, "fetch", "SKIPPED", None)];
        (ExecutionStatus::Finished, skipped, None)
    } else {
        let steps = vec![
            step(0, "fetch", "RUNNING", Some(&execution.id)),
            step(1, "report", "PENDENT", None),
        ];
        (ExecutionStatus::Running, steps, Some(execution))
    };
    NewFlowRun {
        run: FlowRun {
            id: run_id,
            organization_id: w.org.id.clone(),
            flow_id: s.target.flow_id().unwrap().to_owned(),
            version: 1,
            status,
            input: json!({"MIN": 2}),
            return_value: None,
            init: at + 5,
            end: ended.then_some(at + 5),
            end_reason: None,
            submitted_by: format!("schedule:{}", s.id),
            canceled_by: None,
            revision: 0,
            wake_at: None,
            schedule_id: Some(s.id.clone()),
            scheduled_for: Some(at),
            steps,
            seq: 0,
        },
        enqueue,
    }
}

fn fire_of(new: &NewFlowRun) -> FireRun {
    FireRun {
        scheduled_for: new.run.scheduled_for.unwrap(),
        start: Ok(NewScheduledRun::Flow(Box::new(new.clone()))),
    }
}

/// The first step's execution of a run as started.
fn first_execution(new: &NewFlowRun) -> String {
    new.enqueue.as_ref().unwrap().id.clone()
}

/// Fires `s` once at `at` with a new run; the outcome.
async fn trigger(w: &World, s: &Schedule, at: Millis) -> (Option<&'static str>, NewFlowRun) {
    let new = flow_run(w, s, at, false);
    let fired = w
        .store
        .fire_schedule(&firing(s, FireOrigin::Trigger, vec![fire_of(&new)], at))
        .await
        .unwrap();
    (outcomes(&fired)[0], new)
}

async fn a_flow_fire_starts_the_run_whole_and_once(store: Arc<dyn Store>) {
    let w = world(store).await;
    let flow_id = flow(&w).await;
    // A robot's schedule may become a flow's: the target is replaced whole.
    let robot = schedule(&w, "nightly", Overlap::Allow, Some(600_000));
    w.store.create_schedule(&robot, None).await.unwrap();
    let s = Schedule {
        target: ScheduleTarget::Flow {
            flow_id: flow_id.clone(),
        },
        ..robot.clone()
    };
    w.store.update_schedule(&s, false, None).await.unwrap();
    assert_eq!(w.store.get_schedule(&w.org.id, &s.id).await.unwrap(), s);

    let new = flow_run(&w, &s, 600_000, false);
    let fire = firing(&s, FireOrigin::Trigger, vec![fire_of(&new)], 600_010);
    let fired = w.store.fire_schedule(&fire).await.unwrap();
    let started = FireOutcome::Started(ScheduledRun::FlowRun(new.run.id.clone()));
    assert_eq!(
        fired,
        Fired::Applied(vec![(600_000, Some(started.clone()))])
    );

    // The run, its steps and its first execution, as a run request starts them.
    let run = w.store.get_flow_run(&w.org.id, &new.run.id).await.unwrap();
    assert_eq!(FlowRun { seq: 0, ..run }, new.run);
    let execution = w.get(&first_execution(&new)).await;
    assert_eq!(execution.status, ExecutionStatus::Pendent);
    assert_eq!(execution.flow_run_id.as_deref(), Some(new.run.id.as_str()));
    assert_eq!(
        execution.schedule_id, None,
        "the flow run carries the schedule"
    );
    // Their events, then the schedule's, in the fire's transaction.
    let events = events_after_at_least(&*w.store, EventCursor::START, 3).await;
    let kinds: Vec<(EventKind, &str)> = events
        .iter()
        .map(|e| (e.kind, e.subject_id.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            (EventKind::FlowRunStarted, new.run.id.as_str()),
            (EventKind::ExecutionQueued, execution.id.as_str()),
            (EventKind::ScheduleFired, s.id.as_str()),
        ]
    );
    assert_eq!(
        events[2].data,
        json!({"scheduled_for": 600_000, "flow_run_id": new.run.id, "origin": "trigger"})
    );
    let fires = w.store.schedule_fires(&w.org.id, &s.id, 10).await.unwrap();
    assert_eq!(fires.len(), 1);
    assert_eq!(fires[0].outcome, started);
    assert_eq!(counters(&w, &s.id).await, (1, 0, 0));

    // The same fire again, with another run: refused, nothing started.
    let again = flow_run(&w, &s, 600_000, false);
    let repeat = firing(&s, FireOrigin::Backfill, vec![fire_of(&again)], 700_000);
    assert_eq!(
        w.store.fire_schedule(&repeat).await.unwrap(),
        Fired::Applied(vec![(600_000, None)])
    );
    assert!(is_not_found(
        w.store.get_flow_run(&w.org.id, &again.run.id).await
    ));
    assert!(is_not_found(
        w.store
            .get_execution(&w.org.id, &first_execution(&again))
            .await
    ));

    // A run that cannot be written (its id is taken) undoes the whole fire:
    // no fire recorded, no execution, no counter, no event.
    let mut clash = flow_run(&w, &s, 1_200_000, false);
    clash.run.id = new.run.id.clone();
    let failed = w
        .store
        .fire_schedule(&firing(
            &s,
            FireOrigin::Trigger,
            vec![fire_of(&clash)],
            1_200_001,
        ))
        .await;
    assert!(failed.is_err(), "{failed:?}");
    assert_eq!(
        w.store
            .schedule_fires(&w.org.id, &s.id, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(is_not_found(
        w.store
            .get_execution(&w.org.id, &first_execution(&clash))
            .await
    ));
    assert_eq!(counters(&w, &s.id).await, (1, 0, 0));
    let (done, _) = trigger(&w, &s, 1_300_000).await;
    assert_eq!(done, Some("started"));
    let events = events_after_at_least(&*w.store, EventCursor::START, 6).await;
    assert_eq!(events.len(), 6, "only the last fire wrote: {events:#?}");
}

/// Servers that race to apply one fire, each with a run of its own (as two
/// replicas that both believe they lead would): one run starts, with its first
/// execution; the others leave nothing behind.
async fn concurrent_firings_of_one_flow_fire_start_one_run(store: Arc<dyn Store>) {
    let w = Arc::new(world(store).await);
    let flow_id = flow(&w).await;
    let s = Schedule {
        target: ScheduleTarget::Flow { flow_id },
        variables: json!([{"name": "MIN", "value": 2}]),
        ..schedule(&w, "every ten minutes", Overlap::Allow, Some(600_000))
    };
    w.store.create_schedule(&s, None).await.unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|n| {
            let (w, s) = (w.clone(), s.clone());
            tokio::spawn(async move {
                let new = flow_run(&w, &s, 600_000, false);
                let fire = Firing {
                    advance: (n % 2 == 0).then_some(Advance {
                        from: 600_000,
                        next_fire_at: Some(1_200_000),
                        next_due_at: Some(1_200_000),
                    }),
                    ..firing(&s, FireOrigin::Rule, vec![fire_of(&new)], 600_001)
                };
                (w.store.fire_schedule(&fire).await.unwrap(), new)
            })
        })
        .collect();
    let mut started = Vec::new();
    for task in tasks {
        let (fired, new) = task.await.unwrap();
        let run = w.store.get_flow_run(&w.org.id, &new.run.id).await;
        let execution = w
            .store
            .get_execution(&w.org.id, &first_execution(&new))
            .await;
        if let Fired::Applied(outcomes) = &fired {
            if outcomes[0].1.is_some() {
                assert_eq!(
                    outcomes[0].1,
                    Some(FireOutcome::Started(ScheduledRun::FlowRun(
                        new.run.id.clone()
                    )))
                );
                assert!(run.is_ok() && execution.is_ok(), "{run:?} {execution:?}");
                started.push(new.run.id);
                continue;
            }
        }
        assert!(is_not_found(run), "a run of a fire not applied was written");
        assert!(is_not_found(execution));
    }
    assert_eq!(started.len(), 1, "{started:?}");
    assert_eq!(counters(&w, &s.id).await, (1, 0, 0));
    let fires = w.store.schedule_fires(&w.org.id, &s.id, 10).await.unwrap();
    assert_eq!(fires.len(), 1);
}

async fn overlap_rules_count_the_schedule_s_live_flow_runs(store: Arc<dyn Store>) {
    let w = world(store).await;
    let flow_id = flow(&w).await;
    let skip = flow_schedule(&w, Overlap::Skip, &flow_id).await;
    let buffer = flow_schedule(&w, Overlap::BufferOne, &flow_id).await;

    // skip: a run whose first step waits for its runtime is live.
    let (first, skip_run) = trigger(&w, &skip, 1_000).await;
    assert_eq!(first, Some("started"));
    assert_eq!(trigger(&w, &skip, 2_000).await.0, Some("skipped_overlap"));
    let reason = last_reason(&w, &skip.id).await;
    assert!(reason.contains("1 PENDENT, 0 RUNNING"), "{reason}");

    // buffer_one: one waiting at most; once its step runs, one more may wait.
    let (first, buffer_run) = trigger(&w, &buffer, 1_000).await;
    assert_eq!(first, Some("started"));
    assert_eq!(trigger(&w, &buffer, 2_000).await.0, Some("skipped_overlap"));
    let (claimed, _) = w.claim().await;
    assert_eq!(claimed, first_execution(&skip_run));
    let (claimed, lease) = w.claim().await;
    assert_eq!(claimed, first_execution(&buffer_run));
    assert!(w
        .store
        .start(&w.runtime.id, &claimed, &lease, 2_500)
        .await
        .unwrap());
    assert_eq!(trigger(&w, &buffer, 3_000).await.0, Some("started"));
    assert_eq!(trigger(&w, &buffer, 4_000).await.0, Some("skipped_overlap"));
    let reason = last_reason(&w, &buffer.id).await;
    assert!(reason.contains("1 PENDENT, 1 RUNNING"), "{reason}");

    // Only the schedule's own runs count: once its run ended, skip fires again
    // while the other schedule's runs are live.
    assert_eq!(trigger(&w, &skip, 3_000).await.0, Some("skipped_overlap"));
    w.store
        .cancel_flow_run(&w.org.id, &skip_run.run.id, &w.admin.id, 4_500, None)
        .await
        .unwrap();
    assert_eq!(trigger(&w, &skip, 5_000).await.0, Some("started"));
    assert_eq!(counters(&w, &skip.id).await, (2, 2, 0));

    // A run that ended as it started (its steps skipped) is not live.
    let quick = flow_schedule(&w, Overlap::Skip, &flow_id).await;
    let burst: Vec<FireRun> = [1_000, 2_000]
        .into_iter()
        .map(|at| fire_of(&flow_run(&w, &quick, at, true)))
        .collect();
    let fired = w
        .store
        .fire_schedule(&firing(&quick, FireOrigin::Backfill, burst, 3_000))
        .await
        .unwrap();
    assert_eq!(outcomes(&fired), [Some("started"), Some("started")]);
}

async fn flow_run_ends_count_against_their_schedule(store: Arc<dyn Store>) {
    let w = world(store).await;
    let flow_id = flow(&w).await;
    let s = Schedule {
        pause_after_failures: Some(2),
        ..flow_schedule(&w, Overlap::Allow, &flow_id).await
    };
    w.store.update_schedule(&s, false, None).await.unwrap();
    let runs: Vec<NewFlowRun> = (1..=2)
        .map(|n| flow_run(&w, &s, n * 1_000, false))
        .collect();
    let fired = w
        .store
        .fire_schedule(&firing(
            &s,
            FireOrigin::Backfill,
            runs.iter().map(fire_of).collect(),
            5_000,
        ))
        .await
        .unwrap();
    assert_eq!(outcomes(&fired), [Some("started"), Some("started")]);
    let end = |run: ScheduledRun, status| RunEnd {
        organization_id: w.org.id.clone(),
        run,
        status,
    };
    let flow_run_end =
        |n: usize, status| end(ScheduledRun::FlowRun(runs[n].run.id.clone()), status);
    let cursor = |seq| EventCursor { txid: 0, seq };
    // A step's execution ending ERROR is the flow run's business, not the
    // schedule's; the first flow run's ERROR counts.
    let counted = w
        .store
        .count_run_ends(
            "schedule-failures",
            EventCursor::START,
            cursor(10),
            &[
                end(
                    ScheduledRun::Execution(first_execution(&runs[0])),
                    ExecutionStatus::Error,
                ),
                flow_run_end(0, ExecutionStatus::Error),
            ],
            6_000,
        )
        .await
        .unwrap();
    assert_eq!(counted, RunEndsCounted::Counted(vec![]));
    let read = w.store.get_schedule(&w.org.id, &s.id).await.unwrap();
    assert_eq!(read.consecutive_failures, 1);
    let counted = w
        .store
        .count_run_ends(
            "schedule-failures",
            cursor(10),
            cursor(11),
            &[flow_run_end(1, ExecutionStatus::Error)],
            7_000,
        )
        .await
        .unwrap();
    let RunEndsCounted::Counted(paused) = counted else {
        panic!("{counted:?}");
    };
    assert_eq!(paused.len(), 1, "{paused:?}");
    let read = w.store.get_schedule(&w.org.id, &s.id).await.unwrap();
    assert!(read.paused);
    assert!(
        read.pause_note
            .as_deref()
            .unwrap()
            .contains(&format!("flow run {}", runs[1].run.id)),
        "{read:?}"
    );
    let pauses = events_of_kind(&*w.store, EventKind::SchedulePaused, 1).await;
    assert_eq!(pauses.len(), 1);
    assert_eq!(pauses[0].data["flow_run_id"], json!(runs[1].run.id));
}
