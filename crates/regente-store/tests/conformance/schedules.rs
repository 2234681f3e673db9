//! Schedules: stored and scoped like every organisation's object; each fire
//! applied once, in one transaction, with the overlap rule, its run, its
//! events and the schedule's counters; consecutive failures counted from the
//! event stream.

use crate::fixtures::*;
use crate::support::{events_after_at_least, events_of_kind};
use regente_core::schedule::plan::{Misfire, Overlap};
use regente_store::{
    Advance, EventCursor, EventKind, FireOrigin, FireOutcome, FireRun, Fired, Firing, MissedFire,
    NewScheduledRun, RunEnd, RunEndsCounted, Schedule, ScheduleTarget, ScheduledRun,
};
use serde_json::Value;

conformance! {
    store: [
        schedules_are_stored_and_scoped,
        a_fire_queues_a_run_with_its_events_and_counts_once,
        a_fire_from_the_rule_applies_only_where_the_schedule_stands,
        overlap_rules_look_at_the_schedule_s_live_runs,
        missed_fires_are_recorded_and_a_backfill_may_run_them,
        due_schedules_are_the_unpaused_ones_whose_time_came,
        concurrent_firings_of_one_fire_queue_one_run,
        consecutive_failures_pause_a_schedule_once,
    ],
}

pub(crate) fn schedule(
    w: &World,
    name: &str,
    overlap: Overlap,
    next_fire_at: Option<Millis>,
) -> Schedule {
    Schedule {
        id: new_id(),
        organization_id: w.org.id.clone(),
        name: name.to_owned(),
        target: ScheduleTarget::Robot {
            robot_id: w.robot_id.clone(),
            runtime_id: w.runtime.id.clone(),
        },
        variables: json!([{"name": "N", "value": 1}]),
        rule: json!({"cron": "*/10 * * * *"}),
        timezone: "UTC".into(),
        start_at: None,
        end_at: None,
        overlap,
        catchup_window_seconds: 3600,
        misfire: Misfire::RunLatest,
        jitter_seconds: 0,
        paused: false,
        pause_note: None,
        pause_after_failures: None,
        consecutive_failures: 0,
        fired: 0,
        skipped: 0,
        missed: 0,
        next_fire_at,
        next_due_at: next_fire_at,
        created_at: 50,
        updated_at: 50,
    }
}

async fn stored_schedule(w: &World, overlap: Overlap, next_fire_at: Option<Millis>) -> Schedule {
    let s = schedule(w, &format!("every-10-{}", new_id()), overlap, next_fire_at);
    w.store.create_schedule(&s, None).await.unwrap();
    s
}

/// A run of `s` for the fire at `at`.
fn run(w: &World, s: &Schedule, at: Millis) -> FireRun {
    FireRun {
        scheduled_for: at,
        start: Ok(NewScheduledRun::Execution(Box::new(NewExecution {
            schedule_id: Some(s.id.clone()),
            scheduled_for: Some(at),
            submitted_by: format!("schedule:{}", s.id),
            ..w.execution(&w.runtime.id, at + 5, 1)
        }))),
    }
}

pub(crate) fn firing(s: &Schedule, origin: FireOrigin, runs: Vec<FireRun>, now: Millis) -> Firing {
    Firing {
        audit: None,
        organization_id: s.organization_id.clone(),
        schedule_id: s.id.clone(),
        origin,
        advance: None,
        missed: Vec::new(),
        runs,
        now,
    }
}

fn started(fired: &Fired) -> Vec<String> {
    let Fired::Applied(outcomes) = fired else {
        panic!("a stale firing: {fired:?}");
    };
    outcomes
        .iter()
        .filter_map(|(_, outcome)| match outcome {
            Some(FireOutcome::Started(run)) => Some(run.execution_id().unwrap().to_owned()),
            _ => None,
        })
        .collect()
}

pub(crate) fn outcomes(fired: &Fired) -> Vec<Option<&'static str>> {
    let Fired::Applied(outcomes) = fired else {
        panic!("a stale firing: {fired:?}");
    };
    outcomes
        .iter()
        .map(|(_, outcome)| outcome.as_ref().map(FireOutcome::as_str))
        .collect()
}

/// Why the schedule's latest fire was skipped or missed.
pub(crate) async fn last_reason(w: &World, id: &str) -> String {
    let fires = w.store.schedule_fires(&w.org.id, id, 1).await.unwrap();
    fires[0].reason.clone().expect("a reason")
}

pub(crate) async fn counters(w: &World, id: &str) -> (u64, u64, u64) {
    let s = w.store.get_schedule(&w.org.id, id).await.unwrap();
    (s.fired, s.skipped, s.missed)
}

async fn schedules_are_stored_and_scoped(store: Arc<dyn Store>) {
    let w = world(store).await;
    let first = schedule(&w, "nightly", Overlap::Skip, Some(600_000));
    w.store.create_schedule(&first, None).await.unwrap();
    assert_eq!(
        w.store.get_schedule(&w.org.id, &first.id).await.unwrap(),
        first
    );
    let clash = schedule(&w, "nightly", Overlap::Allow, None);
    assert!(is_conflict(w.store.create_schedule(&clash, None).await));
    let second = schedule(&w, "hourly", Overlap::BufferOne, None);
    w.store.create_schedule(&second, None).await.unwrap();
    assert_eq!(
        w.store.list_schedules(&w.org.id).await.unwrap(),
        vec![first.clone(), second.clone()]
    );

    // An edit replaces the definition; the counters stay.
    w.store
        .fire_schedule(&firing(
            &first,
            FireOrigin::Trigger,
            vec![run(&w, &first, 7)],
            9,
        ))
        .await
        .unwrap();
    let edited = Schedule {
        name: "nightly-2".into(),
        rule: json!({"every": {"frequency": "daily", "at": "02:30"}}),
        timezone: "Europe/Berlin".into(),
        paused: true,
        pause_note: Some("holidays".into()),
        pause_after_failures: Some(3),
        misfire: Misfire::RunAll,
        next_fire_at: None,
        next_due_at: None,
        updated_at: 60,
        ..first.clone()
    };
    w.store.update_schedule(&edited, false, None).await.unwrap();
    let read = w.store.get_schedule(&w.org.id, &first.id).await.unwrap();
    assert_eq!(
        read,
        Schedule {
            fired: 1,
            ..edited.clone()
        }
    );
    let taken = Schedule {
        name: "hourly".into(),
        ..edited.clone()
    };
    assert!(is_conflict(
        w.store.update_schedule(&taken, false, None).await
    ));

    // Another organisation sees none of it.
    let other = organization("other", false, 30);
    let other_admin = user(&other.id, "other-admin", Role::Admin, 30);
    w.store
        .create_organization(&other, &other_admin, None)
        .await
        .unwrap();
    assert!(is_not_found(
        w.store.get_schedule(&other.id, &first.id).await
    ));
    assert!(w.store.list_schedules(&other.id).await.unwrap().is_empty());
    let foreign = Schedule {
        organization_id: other.id.clone(),
        ..edited.clone()
    };
    assert!(is_not_found(
        w.store.update_schedule(&foreign, false, None).await
    ));
    assert!(is_not_found(
        w.store.delete_schedule(&other.id, &first.id, None).await
    ));
    assert!(w
        .store
        .schedule_fires(&other.id, &first.id, 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        w.store
            .fire_schedule(&firing(
                &foreign,
                FireOrigin::Trigger,
                vec![run(&w, &first, 8)],
                9
            ))
            .await
            .unwrap(),
        Fired::Stale
    );

    // Deleting takes its fires along; its runs stay.
    let fires = w
        .store
        .schedule_fires(&w.org.id, &first.id, 10)
        .await
        .unwrap();
    assert_eq!(fires.len(), 1);
    let FireOutcome::Started(ScheduledRun::Execution(execution_id)) = &fires[0].outcome else {
        panic!("{fires:?}");
    };
    w.store
        .delete_schedule(&w.org.id, &first.id, None)
        .await
        .unwrap();
    assert!(is_not_found(
        w.store.get_schedule(&w.org.id, &first.id).await
    ));
    assert!(is_not_found(
        w.store.delete_schedule(&w.org.id, &first.id, None).await
    ));
    assert!(w
        .store
        .schedule_fires(&w.org.id, &first.id, 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        w.get(execution_id).await.schedule_id,
        Some(first.id.clone())
    );
}

async fn a_fire_queues_a_run_with_its_events_and_counts_once(store: Arc<dyn Store>) {
    let w = world(store).await;
    let s = stored_schedule(&w, Overlap::Allow, Some(600_000)).await;
    // A new world has written no event yet.
    let skip = 0;
    let mut fire = firing(&s, FireOrigin::Trigger, vec![run(&w, &s, 600_000)], 600_004);
    // A person's trigger: its record is written with the fire, once.
    fire.audit = Some(regente_store::AuditEntry {
        organization_id: w.org.id.clone(),
        time: 600_004,
        actor_id: w.admin.id.clone(),
        actor_name: w.admin.username.clone(),
        action: "schedule.trigger".into(),
        object_type: "schedule".into(),
        object_id: s.id.clone(),
        address: None,
        summary: json!({}),
    });
    let fired = w.store.fire_schedule(&fire).await.unwrap();
    let ids = started(&fired);
    assert_eq!(ids.len(), 1);
    let execution = w.get(&ids[0]).await;
    assert_eq!(execution.status, ExecutionStatus::Pendent);
    assert_eq!(execution.schedule_id.as_deref(), Some(s.id.as_str()));
    assert_eq!(execution.scheduled_for, Some(600_000));
    assert_eq!(execution.submitted_by, Some(format!("schedule:{}", s.id)));
    let listed = w
        .store
        .list_executions(
            &w.org.id,
            &ExecutionFilter {
                schedule_id: Some(s.id.clone()),
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(listed, vec![execution.clone()]);

    // The run's own event, then the schedule's, in the fire's transaction.
    let events = events_after_at_least(&*w.store, EventCursor::START, skip + 2).await;
    let kinds: Vec<(EventKind, &str)> = events[skip..]
        .iter()
        .map(|e| (e.kind, e.subject_id.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            (EventKind::ExecutionQueued, ids[0].as_str()),
            (EventKind::ScheduleFired, s.id.as_str())
        ]
    );
    assert_eq!(
        events[skip + 1].data,
        json!({"scheduled_for": 600_000, "execution_id": ids[0], "origin": "trigger"})
    );
    assert_eq!(counters(&w, &s.id).await, (1, 0, 0));

    // The same fire again, however it comes: nothing more.
    let again = w.store.fire_schedule(&fire).await.unwrap();
    assert_eq!(again, Fired::Applied(vec![(600_000, None)]));
    let other_ids = firing(
        &s,
        FireOrigin::Backfill,
        vec![run(&w, &s, 600_000)],
        700_000,
    );
    assert_eq!(
        w.store.fire_schedule(&other_ids).await.unwrap(),
        Fired::Applied(vec![(600_000, None)])
    );
    assert_eq!(counters(&w, &s.id).await, (1, 0, 0));
    let every_record = regente_store::AuditFilter {
        limit: 10,
        ..Default::default()
    };
    let records = w
        .store
        .audit_records(&w.org.id, &every_record)
        .await
        .unwrap();
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(Some(&records[0].entry), fire.audit.as_ref());
    let fires = w.store.schedule_fires(&w.org.id, &s.id, 10).await.unwrap();
    assert_eq!(fires.len(), 1);
    assert_eq!(fires[0].origin, FireOrigin::Trigger);
    assert_eq!(fires[0].recorded_at, 600_004);

    // A run that cannot be queued is skipped, with its reason.
    let broken = FireRun {
        scheduled_for: 1_200_000,
        start: Err("variable N: not a number".into()),
    };
    let fired = w
        .store
        .fire_schedule(&firing(&s, FireOrigin::Trigger, vec![broken], 1_200_001))
        .await
        .unwrap();
    assert_eq!(outcomes(&fired), [Some("skipped_error")]);
    assert_eq!(counters(&w, &s.id).await, (1, 1, 0));
    let fires = w.store.schedule_fires(&w.org.id, &s.id, 1).await.unwrap();
    assert_eq!(fires[0].reason.as_deref(), Some("variable N: not a number"));
}

async fn a_fire_from_the_rule_applies_only_where_the_schedule_stands(store: Arc<dyn Store>) {
    let w = world(store).await;
    let s = stored_schedule(&w, Overlap::Allow, Some(600_000)).await;
    let from_rule = |from, at| Firing {
        advance: Some(Advance {
            from,
            next_fire_at: Some(at + 600_000),
            next_due_at: Some(at + 600_000),
        }),
        ..firing(&s, FireOrigin::Rule, vec![run(&w, &s, at)], at + 2)
    };
    let fired = w
        .store
        .fire_schedule(&from_rule(600_000, 600_000))
        .await
        .unwrap();
    assert_eq!(outcomes(&fired), [Some("started")]);
    let moved = w.store.get_schedule(&w.org.id, &s.id).await.unwrap();
    assert_eq!(moved.next_fire_at, Some(1_200_000));
    assert_eq!(moved.next_due_at, Some(1_200_000));

    // Decided from where the schedule stood before: stale, nothing written.
    // (The fire wrote its run's event and its own.)
    let before = events_after_at_least(&*w.store, EventCursor::START, 2)
        .await
        .len();
    assert_eq!(
        w.store
            .fire_schedule(&from_rule(600_000, 1_200_000))
            .await
            .unwrap(),
        Fired::Stale
    );
    assert_eq!(counters(&w, &s.id).await, (1, 0, 0));

    // Paused: the rule's fires wait; a trigger still runs.
    let paused = Schedule {
        paused: true,
        pause_note: Some("maintenance".into()),
        ..moved.clone()
    };
    w.store.update_schedule(&paused, false, None).await.unwrap();
    assert_eq!(
        w.store
            .fire_schedule(&from_rule(1_200_000, 1_200_000))
            .await
            .unwrap(),
        Fired::Stale
    );
    let trigger = firing(
        &s,
        FireOrigin::Trigger,
        vec![run(&w, &s, 1_300_000)],
        1_300_000,
    );
    assert_eq!(
        outcomes(&w.store.fire_schedule(&trigger).await.unwrap()),
        [Some("started")]
    );
    let kept = w.store.get_schedule(&w.org.id, &s.id).await.unwrap();
    assert_eq!(
        kept.next_fire_at,
        Some(1_200_000),
        "a trigger does not move it"
    );
    assert_eq!(counters(&w, &s.id).await, (2, 0, 0));
    let events = events_after_at_least(&*w.store, EventCursor::START, before + 2).await;
    assert_eq!(
        events.len(),
        before + 2,
        "only the trigger wrote: {events:#?}"
    );
}

async fn overlap_rules_look_at_the_schedule_s_live_runs(store: Arc<dyn Store>) {
    let w = world(store).await;
    let skip = stored_schedule(&w, Overlap::Skip, None).await;
    let buffer = stored_schedule(&w, Overlap::BufferOne, None).await;
    let allow = stored_schedule(&w, Overlap::Allow, None).await;
    let fire = |s: &Schedule, at| firing(s, FireOrigin::Trigger, vec![run(&w, s, at)], at);

    // skip: a second fire while the first waits, and while it runs, is skipped.
    let first = started(&w.store.fire_schedule(&fire(&skip, 1_000)).await.unwrap());
    let skipped = w.store.fire_schedule(&fire(&skip, 2_000)).await.unwrap();
    assert_eq!(outcomes(&skipped), [Some("skipped_overlap")]);
    let (claimed, lease) = w.claim().await;
    assert_eq!(claimed, first[0]);
    assert!(w
        .store
        .start(&w.runtime.id, &claimed, &lease, 2_500)
        .await
        .unwrap());
    let skipped = w.store.fire_schedule(&fire(&skip, 3_000)).await.unwrap();
    assert_eq!(outcomes(&skipped), [Some("skipped_overlap")]);
    assert_eq!(counters(&w, &skip.id).await, (1, 2, 0));
    let reason = last_reason(&w, &skip.id).await;
    assert!(reason.contains("1 RUNNING"), "{reason}");
    // Once it has ended, the next fire runs.
    let ended = w
        .report(
            &claimed,
            &lease,
            &[ended(1, 3_500, ExecutionStatus::Finished, Some(0))],
        )
        .await;
    assert_eq!(ended, stored(1, true));
    let next = w.store.fire_schedule(&fire(&skip, 4_000)).await.unwrap();
    assert_eq!(outcomes(&next), [Some("started")]);

    // buffer_one: one waiting at most; several fires in one firing see each other.
    let burst = firing(
        &buffer,
        FireOrigin::Backfill,
        vec![run(&w, &buffer, 1_000), run(&w, &buffer, 2_000)],
        5_000,
    );
    let fired = w.store.fire_schedule(&burst).await.unwrap();
    assert_eq!(outcomes(&fired), [Some("started"), Some("skipped_overlap")]);

    // allow: every fire runs.
    let burst = firing(
        &allow,
        FireOrigin::Backfill,
        (1..=3).map(|n| run(&w, &allow, n * 1_000)).collect(),
        5_000,
    );
    assert_eq!(
        started(&w.store.fire_schedule(&burst).await.unwrap()).len(),
        3
    );
    assert_eq!(counters(&w, &allow.id).await, (3, 0, 0));

    // The skips are on the stream.
    let skips: Vec<String> = events_of_kind(&*w.store, EventKind::ScheduleSkipped, 3)
        .await
        .iter()
        .map(|e| e.data["reason"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(skips, ["overlap", "overlap", "overlap"]);
}

async fn missed_fires_are_recorded_and_a_backfill_may_run_them(store: Arc<dyn Store>) {
    let w = world(store).await;
    let s = stored_schedule(&w, Overlap::Allow, Some(600_000)).await;
    let catchup = Firing {
        advance: Some(Advance {
            from: 600_000,
            next_fire_at: Some(2_400_000),
            next_due_at: Some(2_400_000),
        }),
        missed: vec![
            MissedFire {
                scheduled_for: 600_000,
                reason: "outside_window".into(),
            },
            MissedFire {
                scheduled_for: 1_200_000,
                reason: "superseded".into(),
            },
        ],
        ..firing(
            &s,
            FireOrigin::Rule,
            vec![run(&w, &s, 1_800_000)],
            2_000_000,
        )
    };
    let fired = w.store.fire_schedule(&catchup).await.unwrap();
    assert_eq!(
        outcomes(&fired),
        [Some("started")],
        "missed fires are not answered"
    );
    assert_eq!(counters(&w, &s.id).await, (1, 0, 2));
    let fires = w.store.schedule_fires(&w.org.id, &s.id, 10).await.unwrap();
    let listed: Vec<(Millis, &str, Option<&str>)> = fires
        .iter()
        .map(|f| (f.scheduled_for, f.outcome.as_str(), f.reason.as_deref()))
        .collect();
    assert_eq!(
        listed,
        [
            (1_800_000, "started", None),
            (1_200_000, "missed", Some("superseded")),
            (600_000, "missed", Some("outside_window")),
        ]
    );
    let missed: Vec<Value> = events_of_kind(&*w.store, EventKind::ScheduleMissed, 2)
        .await
        .into_iter()
        .map(|e| e.data)
        .collect();
    assert_eq!(
        missed,
        [
            json!({"scheduled_for": 600_000, "reason": "outside_window"}),
            json!({"scheduled_for": 1_200_000, "reason": "superseded"}),
        ]
    );

    // A backfill runs what was missed, and nothing that ran.
    let backfill = firing(
        &s,
        FireOrigin::Backfill,
        [600_000, 1_200_000, 1_800_000]
            .into_iter()
            .map(|at| run(&w, &s, at))
            .collect(),
        2_100_000,
    );
    let fired = w.store.fire_schedule(&backfill).await.unwrap();
    assert_eq!(outcomes(&fired), [Some("started"), Some("started"), None]);
    assert_eq!(counters(&w, &s.id).await, (3, 0, 2));
    let fires = w.store.schedule_fires(&w.org.id, &s.id, 10).await.unwrap();
    assert!(
        fires.iter().all(|f| f.outcome.as_str() == "started"),
        "{fires:?}"
    );
    assert_eq!(fires[2].origin, FireOrigin::Backfill);
}

async fn due_schedules_are_the_unpaused_ones_whose_time_came(store: Arc<dyn Store>) {
    let w = world(store).await;
    assert_eq!(w.store.next_schedule_due().await.unwrap(), None);
    let late = stored_schedule(&w, Overlap::Skip, Some(1_000)).await;
    let later = stored_schedule(&w, Overlap::Skip, Some(2_000)).await;
    let future = stored_schedule(&w, Overlap::Skip, Some(9_000)).await;
    let _ended = stored_schedule(&w, Overlap::Skip, None).await;
    let paused = Schedule {
        paused: true,
        ..schedule(&w, "paused", Overlap::Skip, Some(500))
    };
    w.store.create_schedule(&paused, None).await.unwrap();
    assert_eq!(w.store.next_schedule_due().await.unwrap(), Some(1_000));
    let due: Vec<String> = w
        .store
        .due_schedules(5_000, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(due, [late.id.clone(), later.id.clone()]);
    assert_eq!(w.store.due_schedules(5_000, 1).await.unwrap().len(), 1);
    assert!(w.store.due_schedules(999, 10).await.unwrap().is_empty());
    let _ = future;
}

async fn concurrent_firings_of_one_fire_queue_one_run(store: Arc<dyn Store>) {
    let w = Arc::new(world(store).await);
    let s = stored_schedule(&w, Overlap::Allow, Some(600_000)).await;
    let tasks: Vec<_> = (0..8)
        .map(|n| {
            let (w, s) = (w.clone(), s.clone());
            tokio::spawn(async move {
                let fire = Firing {
                    advance: (n % 2 == 0).then_some(Advance {
                        from: 600_000,
                        next_fire_at: Some(1_200_000),
                        next_due_at: Some(1_200_000),
                    }),
                    ..firing(&s, FireOrigin::Rule, vec![run(&w, &s, 600_000)], 600_001)
                };
                w.store.fire_schedule(&fire).await.unwrap()
            })
        })
        .collect();
    let mut runs = 0;
    for task in tasks {
        runs += match task.await.unwrap() {
            Fired::Stale => 0,
            fired => started(&fired).len(),
        };
    }
    assert_eq!(runs, 1);
    assert_eq!(counters(&w, &s.id).await, (1, 0, 0));
    let queued = w
        .store
        .list_executions(
            &w.org.id,
            &ExecutionFilter {
                schedule_id: Some(s.id.clone()),
                limit: 100,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(queued.len(), 1);
}

async fn consecutive_failures_pause_a_schedule_once(store: Arc<dyn Store>) {
    let w = world(store).await;
    let s = Schedule {
        pause_after_failures: Some(2),
        ..schedule(&w, "fragile", Overlap::Allow, None)
    };
    w.store.create_schedule(&s, None).await.unwrap();
    let runs: Vec<String> = started(
        &w.store
            .fire_schedule(&firing(
                &s,
                FireOrigin::Backfill,
                (1..=4).map(|n| run(&w, &s, n * 1_000)).collect(),
                5_000,
            ))
            .await
            .unwrap(),
    );
    let unscheduled = w.enqueue(6_000).await;
    let end = |id: &str, status| RunEnd {
        organization_id: w.org.id.clone(),
        run: ScheduledRun::Execution(id.to_owned()),
        status,
    };
    let cursor = |seq| EventCursor { txid: 0, seq };
    let consumer = "schedule-failures";
    let count = |from, through, ends: Vec<RunEnd>| {
        let store = w.store.clone();
        async move {
            store
                .count_run_ends(consumer, from, through, &ends, 7_000)
                .await
                .unwrap()
        }
    };
    // An ERROR, then a FINISHED: counted, then started again.
    let counted = count(
        EventCursor::START,
        cursor(10),
        vec![
            end(&runs[0], ExecutionStatus::Error),
            end(&unscheduled, ExecutionStatus::Error),
        ],
    )
    .await;
    assert_eq!(counted, RunEndsCounted::Counted(vec![]));
    let read = w.store.get_schedule(&w.org.id, &s.id).await.unwrap();
    assert_eq!(read.consecutive_failures, 1);
    assert_eq!(w.store.load_cursor(consumer).await.unwrap(), cursor(10));
    // From a cursor it is not at (another copy of the consumer): nothing.
    assert_eq!(
        count(
            EventCursor::START,
            cursor(20),
            vec![end(&runs[1], ExecutionStatus::Error)]
        )
        .await,
        RunEndsCounted::Stale
    );
    count(
        cursor(10),
        cursor(11),
        vec![end(&runs[1], ExecutionStatus::Finished)],
    )
    .await;
    assert_eq!(
        w.store
            .get_schedule(&w.org.id, &s.id)
            .await
            .unwrap()
            .consecutive_failures,
        0
    );
    // Two ERRORs in a row (a CANCELED between changes nothing): paused, once.
    let counted = count(
        cursor(11),
        cursor(12),
        vec![
            end(&runs[2], ExecutionStatus::Error),
            end(&runs[1], ExecutionStatus::Canceled),
            end(&runs[3], ExecutionStatus::Error),
            end(&runs[0], ExecutionStatus::Error),
        ],
    )
    .await;
    let RunEndsCounted::Counted(paused) = counted else {
        panic!("{counted:?}");
    };
    assert_eq!(paused.len(), 1, "{paused:?}");
    assert_eq!(paused[0].schedule_id, s.id);
    let read = w.store.get_schedule(&w.org.id, &s.id).await.unwrap();
    assert!(read.paused);
    assert_eq!(read.consecutive_failures, 3);
    assert_eq!(read.pause_note.as_deref(), Some(paused[0].note.as_str()));
    assert!(read.pause_note.unwrap().contains(&runs[3]));
    let pauses = events_of_kind(&*w.store, EventKind::SchedulePaused, 1).await;
    assert_eq!(pauses.len(), 1);
    assert_eq!(pauses[0].subject_id, s.id);
    assert_eq!(pauses[0].data["execution_id"], json!(runs[3]));

    // A resume starts the count again.
    w.store
        .update_schedule(
            &Schedule {
                paused: false,
                pause_note: None,
                ..read_back(&w, &s.id).await
            },
            true,
            None,
        )
        .await
        .unwrap();
    assert_eq!(read_back(&w, &s.id).await.consecutive_failures, 0);
}

async fn read_back(w: &World, id: &str) -> Schedule {
    w.store.get_schedule(&w.org.id, id).await.unwrap()
}
