//! Leases: claims, starts, live leases, lease ends, and their races.

use crate::fixtures::*;
use regente_store::EventKind;

conformance! {
    store: [
        claim_is_fifo_under_leases,
        start_needs_the_lease,
        leases_of_runtime_and_lease_status,
        leases_seen_before,
        end_lease_of_unstarted_runs,
        end_lease_of_running_runs,
        end_lease_is_stale_once_the_lease_changed,
        concurrent_claims_hand_out_each_run_once,
        cancel_racing_start,
        an_ending_report_fills_the_slot_in_its_commit,
    ],
    url: [a_claim_that_fails_with_an_end_is_undone_alone],
}

async fn claim_is_fifo_under_leases(store: Arc<dyn Store>) {
    let w = world(store).await;
    let other_runtime = add_runtime(&w.store, &w.org.id, "desk-2").await;
    assert_eq!(
        w.store.claim_next(&w.runtime.id, "lease-0").await.unwrap(),
        None
    );
    let mut first = w.execution(&w.runtime.id, 1_000, 1);
    first.variables = json!({"NAME": "Ana", "COUNT": 3});
    w.store.enqueue(&first, None).await.unwrap();
    let elsewhere = w.enqueue_on(&other_runtime.id, 1_500, 1).await;
    let second = w.enqueue(2_000).await;
    let third = w.enqueue(3_000).await;

    let claimed = w
        .store
        .claim_next(&w.runtime.id, "lease-1")
        .await
        .unwrap()
        .unwrap();
    let version = &w
        .store
        .get_robot(&w.org.id, &w.robot_id)
        .await
        .unwrap()
        .versions[0];
    assert_eq!(claimed.execution_id, first.id);
    assert_eq!(claimed.lease, "lease-1");
    assert_eq!(claimed.robot_id, w.robot_id);
    assert_eq!(claimed.robot_version, 1);
    assert_eq!(claimed.sha256, version.sha256);
    assert_eq!(claimed.manifest, version.manifest);
    assert_eq!(claimed.variables, first.variables);
    assert_eq!(claimed.first_seq, 1);

    // Canceled runs are not handed out.
    w.store
        .cancel(&w.org.id, &second, &w.admin.id, 2_500, None)
        .await
        .unwrap();
    let next = w
        .store
        .claim_next(&w.runtime.id, "lease-2")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(next.execution_id, third);
    assert_eq!(
        w.store.claim_next(&w.runtime.id, "lease-3").await.unwrap(),
        None
    );
    let there = w
        .store
        .claim_next(&other_runtime.id, "lease-4")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(there.execution_id, elsewhere);
    assert_eq!(
        w.store
            .claim_next(&other_runtime.id, "lease-5")
            .await
            .unwrap(),
        None
    );
    // A run handed out stays PENDENT until it starts.
    assert_eq!(w.get(&first.id).await.status, ExecutionStatus::Pendent);
    assert_eq!(
        w.store.lease_status(&first.id, "lease-1").await.unwrap(),
        Some(ExecutionStatus::Pendent)
    );
}

async fn start_needs_the_lease(store: Arc<dyn Store>) {
    let w = world(store).await;
    let other_runtime = add_runtime(&w.store, &w.org.id, "desk-2").await;
    let id = w.enqueue(1_000).await;
    let (_, lease) = w.claim().await;
    assert!(!w
        .store
        .start(&w.runtime.id, &id, "wrong", 2_000)
        .await
        .unwrap());
    assert!(!w
        .store
        .start(&other_runtime.id, &id, &lease, 2_000)
        .await
        .unwrap());
    assert!(!w
        .store
        .start(&w.runtime.id, "ffffffffffffffff", &lease, 2_000)
        .await
        .unwrap());
    assert_eq!(w.get(&id).await.status, ExecutionStatus::Pendent);
    assert!(w
        .store
        .start(&w.runtime.id, &id, &lease, 2_000)
        .await
        .unwrap());
    let got = w.get(&id).await;
    assert_eq!(got.status, ExecutionStatus::Running);
    assert_eq!(got.started, Some(2_000));
    // Once only.
    assert!(!w
        .store
        .start(&w.runtime.id, &id, &lease, 2_100)
        .await
        .unwrap());
    assert_eq!(w.get(&id).await.started, Some(2_000));

    // Never after a cancel.
    let canceled = w.enqueue(3_000).await;
    let (_, lease) = w.claim().await;
    w.store
        .cancel(&w.org.id, &canceled, &w.admin.id, 3_500, None)
        .await
        .unwrap();
    assert!(!w
        .store
        .start(&w.runtime.id, &canceled, &lease, 3_600)
        .await
        .unwrap());
    assert_eq!(w.get(&canceled).await.status, ExecutionStatus::Canceled);
}

// ---------------------------------------------------------------------------
// Leases.

async fn leases_of_runtime_and_lease_status(store: Arc<dyn Store>) {
    let w = world(store).await;
    let other_runtime = add_runtime(&w.store, &w.org.id, "desk-2").await;
    assert!(w
        .store
        .leases_of_runtime(&w.runtime.id)
        .await
        .unwrap()
        .is_empty());
    let (running, running_lease) = w.running(1).await;
    let pending = w.enqueue(3_000).await;
    let (_, pending_lease) = w.claim().await;
    let _unclaimed = w.enqueue(4_000).await;
    let _elsewhere = w.enqueue_on(&other_runtime.id, 4_500, 1).await;
    let (ended_id, ended_lease) = {
        let id = w.enqueue(5_000).await;
        let (claimed, lease) = w.claim().await;
        assert_ne!(claimed, id, "FIFO: the unclaimed run comes first");
        w.store
            .start(&w.runtime.id, &claimed, &lease, 5_100)
            .await
            .unwrap();
        w.report(
            &claimed,
            &lease,
            &[ended(1, 5_200, ExecutionStatus::Finished, Some(0))],
        )
        .await;
        (claimed, lease)
    };

    let leases = w.store.leases_of_runtime(&w.runtime.id).await.unwrap();
    let seen: Vec<_> = leases
        .iter()
        .map(|l| {
            (
                l.execution_id.clone(),
                l.lease.clone(),
                l.runtime_id.clone(),
                l.status,
                l.cancel_requested,
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            (
                running.clone(),
                running_lease.clone(),
                w.runtime.id.clone(),
                ExecutionStatus::Running,
                false
            ),
            (
                pending.clone(),
                pending_lease.clone(),
                w.runtime.id.clone(),
                ExecutionStatus::Pendent,
                false
            ),
        ]
    );
    assert!(w
        .store
        .leases_of_runtime(&other_runtime.id)
        .await
        .unwrap()
        .is_empty());

    assert_eq!(
        w.store
            .lease_status(&running, &running_lease)
            .await
            .unwrap(),
        Some(ExecutionStatus::Running)
    );
    assert_eq!(
        w.store
            .lease_status(&pending, &pending_lease)
            .await
            .unwrap(),
        Some(ExecutionStatus::Pendent)
    );
    assert_eq!(
        w.store.lease_status(&ended_id, &ended_lease).await.unwrap(),
        Some(ExecutionStatus::Finished)
    );
    assert_eq!(
        w.store
            .lease_status(&running, &pending_lease)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        w.store
            .lease_status("ffffffffffffffff", &running_lease)
            .await
            .unwrap(),
        None
    );
}

async fn leases_seen_before(store: Arc<dyn Store>) {
    let w = world(store).await;
    let never_seen = add_runtime(&w.store, &w.org.id, "never-seen").await;
    let recent = add_runtime(&w.store, &w.org.id, "recent").await;
    w.store.touch_runtime(&w.runtime.id, 1_000).await.unwrap();
    w.store.touch_runtime(&recent.id, 5_000).await.unwrap();

    let (old_running, old_lease) = w.running(1).await;
    let _unclaimed = w.enqueue(1_500).await;
    let on_never_seen = w.enqueue_on(&never_seen.id, 1_600, 1).await;
    w.store
        .claim_next(&never_seen.id, "lease-never-seen")
        .await
        .unwrap()
        .unwrap();
    let on_recent = w.enqueue_on(&recent.id, 1_700, 1).await;
    w.store
        .claim_next(&recent.id, "lease-recent")
        .await
        .unwrap()
        .unwrap();

    let lost: Vec<_> = w
        .store
        .leases_seen_before(2_000)
        .await
        .unwrap()
        .into_iter()
        .map(|l| (l.execution_id, l.lease, l.runtime_id, l.status))
        .collect();
    assert_eq!(
        lost,
        vec![
            (
                old_running.clone(),
                old_lease.clone(),
                w.runtime.id.clone(),
                ExecutionStatus::Running
            ),
            (
                on_never_seen.clone(),
                "lease-never-seen".to_owned(),
                never_seen.id.clone(),
                ExecutionStatus::Pendent
            ),
        ]
    );
    // The boundary is exclusive.
    assert_eq!(w.store.leases_seen_before(1_000).await.unwrap().len(), 1);
    assert_eq!(w.store.leases_seen_before(6_000).await.unwrap().len(), 3);
    assert!(lost.iter().all(|l| l.0 != on_recent));

    // Ended executions hold no live lease.
    w.report(
        &old_running,
        &old_lease,
        &[ended(1, 3_000, ExecutionStatus::Finished, Some(0))],
    )
    .await;
    assert_eq!(w.store.leases_seen_before(2_000).await.unwrap().len(), 1);
}

async fn end_lease_of_unstarted_runs(store: Arc<dyn Store>) {
    let w = world(store).await;

    // Handed out, never started: back in the queue at its place, no attempt used.
    let first = w.enqueue(1_000).await;
    let _second = w.enqueue(2_000).await;
    let (claimed, lease) = w.claim().await;
    assert_eq!(claimed, first);
    assert_eq!(
        w.store
            .end_lease(&first, &lease, true, "runtime lost", 3_000)
            .await
            .unwrap(),
        LostOutcome::Requeued
    );
    let got = w.get(&first).await;
    assert_eq!(got.status, ExecutionStatus::Pendent);
    assert_eq!(w.store.lease_status(&first, &lease).await.unwrap(), None);
    assert!(w.logs(&first).await.is_empty());
    assert!(!w
        .store
        .start(&w.runtime.id, &first, &lease, 3_100)
        .await
        .unwrap());
    let again = w
        .store
        .claim_next(&w.runtime.id, "lease-again")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.execution_id, first, "it keeps its place in the queue");
    assert_eq!(again.first_seq, 1);

    // RUNNING, but the runtime says it never spawned it: queued again, not started.
    // (max_attempts 1: this requeue must not use up its only attempt.)
    assert!(w
        .store
        .start(&w.runtime.id, &first, "lease-again", 3_200)
        .await
        .unwrap());
    w.report(&first, "lease-again", &[log(1, "hello")]).await;
    assert_eq!(
        w.store
            .end_lease(&first, "lease-again", false, "never spawned", 3_300)
            .await
            .unwrap(),
        LostOutcome::Requeued
    );
    let got = w.get(&first).await;
    assert_eq!(got.status, ExecutionStatus::Pendent);
    assert_eq!(got.started, None);
    let third_try = w
        .store
        .claim_next(&w.runtime.id, "lease-third")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(third_try.execution_id, first);
    assert_eq!(third_try.first_seq, 2, "event numbers go on");
    assert!(w
        .store
        .start(&w.runtime.id, &first, "lease-third", 3_400)
        .await
        .unwrap());
    // Its one attempt is still there to be lost: without retries, ERROR.
    assert_eq!(
        w.store
            .end_lease(&first, "lease-third", true, "runtime lost", 3_500)
            .await
            .unwrap(),
        LostOutcome::Ended(ExecutionStatus::Error)
    );
}

async fn end_lease_of_running_runs(store: Arc<dyn Store>) {
    let w = world(store).await;

    // Without retries: ERROR, with the reason logged as an ERROR line.
    let (id, lease) = w.running(1).await;
    w.report(&id, &lease, &[log(1, "one"), progress(2, 40.0)])
        .await;
    assert_eq!(
        w.store
            .end_lease(&id, &lease, true, "runtime lost: gone", 7_000)
            .await
            .unwrap(),
        LostOutcome::Ended(ExecutionStatus::Error)
    );
    let got = w.get(&id).await;
    assert_eq!(got.status, ExecutionStatus::Error);
    assert_eq!(got.end, Some(7_000));
    assert_eq!(got.end_reason.as_deref(), Some("runtime lost: gone"));
    assert_eq!(
        w.logs(&id).await,
        vec![
            (1, "INFO".into(), "one".into()),
            (3, "ERROR".into(), "runtime lost: gone".into())
        ]
    );
    assert_eq!(w.store.lease_status(&id, &lease).await.unwrap(), None);
    assert_eq!(
        w.report(&id, &lease, &[log(3, "late")]).await,
        EventsOutcome::Revoked
    );

    // With one retry: queued again with a WARN line, then ERROR on the second loss.
    let (id, lease) = w.running(2).await;
    w.report(&id, &lease, &[log(1, "one"), progress(2, 60.0)])
        .await;
    assert_eq!(
        w.store
            .end_lease(&id, &lease, true, "runtime lost", 8_000)
            .await
            .unwrap(),
        LostOutcome::Requeued
    );
    let got = w.get(&id).await;
    assert_eq!(got.status, ExecutionStatus::Pendent);
    assert_eq!(got.progress, 0.0);
    assert_eq!(got.started, None);
    assert_eq!(got.end, None);
    let logs = w.logs(&id).await;
    assert_eq!(logs.len(), 2);
    assert_eq!((logs[1].0, logs[1].1.as_str()), (3, "WARN"));
    assert!(logs[1].2.starts_with("runtime lost"), "{:?}", logs[1].2);
    assert!(logs[1].2.contains("attempt 2 of 2"), "{:?}", logs[1].2);
    let (again, second_lease) = w.claim().await;
    assert_eq!(again, id);
    assert!(w
        .store
        .start(&w.runtime.id, &id, &second_lease, 8_100)
        .await
        .unwrap());
    assert_eq!(
        w.report(&id, &second_lease, &[log(4, "second attempt")])
            .await,
        stored(4, false)
    );
    assert_eq!(
        w.store
            .end_lease(&id, &second_lease, true, "runtime lost again", 9_000)
            .await
            .unwrap(),
        LostOutcome::Ended(ExecutionStatus::Error)
    );
    let logs = w.logs(&id).await;
    assert_eq!(
        logs.iter().map(|l| (l.0, l.1.as_str())).collect::<Vec<_>>(),
        vec![(1, "INFO"), (3, "WARN"), (4, "INFO"), (5, "ERROR")]
    );
    assert_eq!(w.get(&id).await.status, ExecutionStatus::Error);

    // A cancel was asked for: CANCELED, not retried, with a WARN line.
    let (id, lease) = w.running(3).await;
    w.store
        .cancel(&w.org.id, &id, &w.admin.id, 9_500, None)
        .await
        .unwrap();
    assert_eq!(
        w.store
            .end_lease(&id, &lease, true, "runtime lost", 10_000)
            .await
            .unwrap(),
        LostOutcome::Ended(ExecutionStatus::Canceled)
    );
    let got = w.get(&id).await;
    assert_eq!(got.status, ExecutionStatus::Canceled);
    assert_eq!(got.end, Some(10_000));
    assert_eq!(got.canceled_by, Some(w.admin.id.clone()));
    let logs = w.logs(&id).await;
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0].1, "WARN");

    // Canceled while RUNNING, and the runtime says it never spawned it: a cancel is
    // final, so it is CANCELED, never queued to run again.
    let (id, lease) = w.running(1).await;
    w.store
        .cancel(&w.org.id, &id, &w.admin.id, 11_000, None)
        .await
        .unwrap();
    assert_eq!(
        w.store
            .end_lease(&id, &lease, false, "never spawned", 11_500)
            .await
            .unwrap(),
        LostOutcome::Ended(ExecutionStatus::Canceled)
    );
    assert_eq!(w.get(&id).await.status, ExecutionStatus::Canceled);
    assert_eq!(
        w.store
            .claim_next(&w.runtime.id, "lease-after")
            .await
            .unwrap(),
        None
    );
}

async fn end_lease_is_stale_once_the_lease_changed(store: Arc<dyn Store>) {
    let w = Arc::new(world(store).await);
    let (id, lease) = w.running(1).await;
    assert_eq!(
        w.store
            .end_lease(&id, "other-lease", true, "lost", 1_000)
            .await
            .unwrap(),
        LostOutcome::Stale
    );
    assert_eq!(w.get(&id).await.status, ExecutionStatus::Running);

    // Two servers ending the same lease at once: one does it, the other finds it stale.
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let w = w.clone();
            let (id, lease) = (id.clone(), lease.clone());
            tokio::spawn(async move {
                w.store
                    .end_lease(&id, &lease, true, "lost", 2_000)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.unwrap());
    }
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| **o == LostOutcome::Ended(ExecutionStatus::Error))
            .count(),
        1,
        "{outcomes:?}"
    );
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| **o == LostOutcome::Stale)
            .count(),
        3
    );
    assert_eq!(w.logs(&id).await.len(), 1);

    // Ended by its runtime: stale.
    let (id, lease) = w.running(1).await;
    w.report(
        &id,
        &lease,
        &[ended(1, 3_000, ExecutionStatus::Finished, Some(0))],
    )
    .await;
    assert_eq!(
        w.store
            .end_lease(&id, &lease, true, "lost", 3_100)
            .await
            .unwrap(),
        LostOutcome::Stale
    );
    assert_eq!(w.get(&id).await.status, ExecutionStatus::Finished);
}

// ---------------------------------------------------------------------------
// Concurrency.

async fn concurrent_claims_hand_out_each_run_once(store: Arc<dyn Store>) {
    const RUNS: usize = 200;
    const CLAIMERS: usize = 8;
    let w = Arc::new(world(store).await);
    let mut queued = HashSet::new();
    for i in 0..RUNS {
        queued.insert(w.enqueue(1_000 + i as Millis).await);
    }
    let claimers: Vec<_> = (0..CLAIMERS)
        .map(|claimer| {
            let w = w.clone();
            tokio::spawn(async move {
                let mut claimed = Vec::new();
                loop {
                    let lease = format!("claimer-{claimer}-{}", claimed.len());
                    match w.store.claim_next(&w.runtime.id, &lease).await.unwrap() {
                        Some(c) => {
                            assert_eq!(c.lease, lease);
                            claimed.push((c.execution_id, lease));
                        }
                        None => break,
                    }
                }
                claimed
            })
        })
        .collect();
    let mut all = Vec::new();
    for claimer in claimers {
        all.extend(claimer.await.unwrap());
    }
    let ids: HashSet<_> = all.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(all.len(), RUNS, "every run handed out exactly once");
    assert_eq!(ids, queued);
    // Each hand-out holds: the lease stored is the one its claimer got.
    let leases = w.store.leases_of_runtime(&w.runtime.id).await.unwrap();
    assert_eq!(leases.len(), RUNS);
    for (id, lease) in &all {
        assert_eq!(
            w.store.lease_status(id, lease).await.unwrap(),
            Some(ExecutionStatus::Pendent),
            "{id} under {lease}"
        );
    }
    assert_eq!(
        w.store.claim_next(&w.runtime.id, "late").await.unwrap(),
        None
    );
}

/// A cancel and a start racing: either the run starts and the cancel asks the
/// runtime to stop it, or the cancel wins and the run never starts.
async fn cancel_racing_start(store: Arc<dyn Store>) {
    let w = Arc::new(world(store).await);
    for i in 0..30 {
        let id = w.enqueue(1_000 + i).await;
        let (_, lease) = w.claim().await;
        let start = {
            let w = w.clone();
            let (id, lease) = (id.clone(), lease.clone());
            tokio::spawn(async move { w.store.start(&w.runtime.id, &id, &lease, 2_000).await })
        };
        let cancel = {
            let w = w.clone();
            let id = id.clone();
            tokio::spawn(async move {
                w.store
                    .cancel(&w.org.id, &id, &w.admin.id, 2_000, None)
                    .await
            })
        };
        let started = start.await.unwrap().unwrap();
        let canceled = cancel.await.unwrap().unwrap();
        let status = w.get(&id).await.status;
        match (started, canceled) {
            (true, CancelOutcome::Running { lease: l }) => {
                assert_eq!(l, lease);
                assert_eq!(status, ExecutionStatus::Running);
                w.store
                    .end_lease(&id, &lease, true, "stopped", 3_000)
                    .await
                    .unwrap();
            }
            (false, CancelOutcome::Canceled { lease: Some(l) }) => {
                assert_eq!(l, lease);
                assert_eq!(status, ExecutionStatus::Canceled);
            }
            other => panic!("inconsistent race outcome {other:?}, status {status}"),
        }
        assert!(w.get(&id).await.status.is_ended());
    }
}

/// A report that ends a run claims the runtime's next under the lease given, in
/// its commit, and starts it when asked; one that does not end it, or is
/// refused, claims nothing.
async fn an_ending_report_fills_the_slot_in_its_commit(store: Arc<dyn Store>) {
    let w = world(store).await;
    let (running, lease) = w.running(1).await;
    let next = w.enqueue(3_000).await;
    let report = |lease: String, events: Vec<EventRecord>| {
        let (store, runtime, running) = (w.store.clone(), w.runtime.id.clone(), running.clone());
        async move {
            store
                .record_events_and_claim(&runtime, &running, &lease, &events, "next-lease", None)
                .await
                .unwrap()
        }
    };
    let next_lease = || w.store.lease_status(&next, "next-lease");

    let working = report(lease.clone(), vec![log(1, "working")]).await;
    assert_eq!(working, (stored(1, false), None));
    let refused = report("another-lease".into(), vec![log(2, "done")]).await;
    assert_eq!(refused, (EventsOutcome::Revoked, None));
    assert_eq!(next_lease().await.unwrap(), None, "nothing claimed yet");

    let end = || vec![ended(2, 6_000, ExecutionStatus::Finished, Some(0))];
    let (outcome, claimed) = report(lease.clone(), end()).await;
    assert_eq!(outcome, stored(2, true));
    let claimed = claimed.expect("the next run claimed");
    assert_eq!(
        (claimed.execution_id.as_str(), claimed.lease.as_str()),
        (next.as_str(), "next-lease")
    );
    assert!(!claimed.started);
    assert_eq!(w.get(&running).await.status, ExecutionStatus::Finished);
    assert_eq!(next_lease().await.unwrap(), Some(ExecutionStatus::Pendent));
    // Sent again (after a reconnect), the end claims nothing more.
    assert_eq!(report(lease, end()).await, (stored(2, false), None));

    // Asked to, the end starts the run it claims: RUNNING with its event.
    assert!(w
        .store
        .start(&w.runtime.id, &next, "next-lease", 7_000)
        .await
        .unwrap());
    let third = w.enqueue(7_500).await;
    let ends = vec![ended(1, 8_000, ExecutionStatus::Finished, Some(0))];
    let (outcome, claimed) = w
        .store
        .record_events_and_claim(
            &w.runtime.id,
            &next,
            "next-lease",
            &ends,
            "third-lease",
            Some(9_000),
        )
        .await
        .unwrap();
    assert_eq!(outcome, stored(1, true));
    let claimed = claimed.expect("the third run claimed");
    assert_eq!(claimed.execution_id, third);
    assert!(claimed.started);
    let started = w.get(&third).await;
    assert_eq!(started.status, ExecutionStatus::Running);
    assert_eq!(started.started, Some(9_000));
    let events = w.events_where(1, |e| {
        e.kind == EventKind::ExecutionStarted && e.subject_id == third
    });
    assert_eq!(events.await[0].time, 9_000);
}

/// The run next in line names a robot version that is not stored (written
/// behind the store's back), so its claim fails: the end is still stored, and
/// the broken run is left as it was, without a lease.
async fn a_claim_that_fails_with_an_end_is_undone_alone(store: Arc<dyn Store>, url: String) {
    let w = world(store).await;
    let (running, lease) = w.running(1).await;
    let insert = format!(
        "INSERT INTO executions (id, organization_id, runtime_id, robot_id, robot_version, \
         variables, status, init) VALUES ('broken', '{}', '{}', '{}', 99, '{{}}', 'PENDENT', 2)",
        w.org.id, w.runtime.id, w.robot_id
    );
    match url.strip_prefix("sqlite://") {
        Some(path) => {
            let conn = rusqlite::Connection::open(path).unwrap();
            conn.busy_timeout(std::time::Duration::from_secs(10))
                .unwrap();
            conn.execute_batch(&insert).unwrap();
        }
        None => {
            use sqlx::{Connection, Executor};
            let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
            conn.execute(insert.as_str()).await.unwrap();
        }
    }
    let ends = vec![ended(1, 5_000, ExecutionStatus::Finished, Some(0))];
    let done = w
        .store
        .record_events_and_claim(&w.runtime.id, &running, &lease, &ends, "next", Some(6_000))
        .await
        .unwrap();
    assert_eq!(done, (stored(1, true), None));
    assert_eq!(w.get(&running).await.status, ExecutionStatus::Finished);
    assert_eq!(w.get("broken").await.status, ExecutionStatus::Pendent);
    assert_eq!(w.store.lease_status("broken", "next").await.unwrap(), None);
}
