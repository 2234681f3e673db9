//! The queue: enqueue, idempotency keys, reads, lists, cancels.

use crate::fixtures::*;
use crate::support::events_after_at_least;
use regente_store::{EventCursor, EventKind};

conformance! {
    store: [
        enqueue_get_list_and_queue_position,
        idempotency_keys,
        concurrent_requests_with_one_idempotency_key,
        cancel_outcomes,
        every_acknowledged_write_is_read_at_once,
        run_requests_at_once_are_answered_each_on_its_own,
    ],
}

// ---------------------------------------------------------------------------
// The queue.

async fn enqueue_get_list_and_queue_position(store: Arc<dyn Store>) {
    let w = world(store).await;
    let other_runtime = add_runtime(&w.store, &w.org.id, "desk-2").await;
    let (other_robot, _) = w
        .store
        .add_robot_version(&robot_upload(&w.org.id, "payroll", b"p".to_vec()), None)
        .await
        .unwrap();

    // Variables read back exactly, whatever they hold.
    let variables = json!({
        "TEXT": "ünïcödé \"quoted\" \\ back\nslash \u{0} nul \u{1F600}",
        "INT": 9_007_199_254_740_993_i64,
        "NEG": -42,
        "FLOAT": 0.1,
        "BIG": 1.5e300,
        "BOOL": true,
        "NULL": null,
        "LIST": [1, "two", {"three": [3.0]}],
    });
    let mut first = w.execution(&w.runtime.id, 1_000, 1);
    first.variables = variables.clone();
    assert_eq!(
        w.store.enqueue(&first, None).await.unwrap(),
        Enqueued::Created
    );
    let got = w.get(&first.id).await;
    assert_eq!(got.id, first.id);
    assert_eq!(got.organization_id, w.org.id);
    assert_eq!(got.runtime_id, w.runtime.id);
    assert_eq!(got.robot_id, w.robot_id);
    assert_eq!(got.robot_version, 1);
    assert_eq!(got.variables, variables);
    assert_eq!(got.status, ExecutionStatus::Pendent);
    assert_eq!(got.progress, 0.0);
    assert_eq!(got.init, 1_000);
    assert_eq!((got.started, got.end, got.exit_code), (None, None, None));
    assert_eq!((got.return_value, got.end_reason), (None, None));
    assert_eq!(got.submitted_by, Some(w.admin.id.clone()));
    assert_eq!(got.canceled_by, None);

    // The same id twice is a conflict.
    assert!(is_conflict(w.store.enqueue(&first, None).await));

    // Another organisation cannot see it.
    let other = organization("other", false, 10);
    w.store
        .create_organization(&other, &user(&other.id, "admin2", Role::Admin, 10), None)
        .await
        .unwrap();
    assert!(is_not_found(
        w.store.get_execution(&other.id, &first.id).await
    ));

    // Four more: runtime 1 gets 2000 and 4000, runtime 2 gets 3000 (robot 2) and 5000.
    let second = w.enqueue_on(&w.runtime.id, 2_000, 1).await;
    let mut on_other = w.execution(&other_runtime.id, 3_000, 1);
    on_other.robot_id = other_robot.clone();
    w.store.enqueue(&on_other, None).await.unwrap();
    let third = w.enqueue_on(&w.runtime.id, 4_000, 1).await;
    let fifth = w.enqueue_on(&other_runtime.id, 5_000, 1).await;
    let all = [
        first.id.clone(),
        second.clone(),
        on_other.id.clone(),
        third.clone(),
        fifth.clone(),
    ];

    let list = |filter: ExecutionFilter| {
        let store = w.store.clone();
        let org = w.org.id.clone();
        async move {
            store
                .list_executions(&org, &filter)
                .await
                .unwrap()
                .into_iter()
                .map(|e| e.id)
                .collect::<Vec<_>>()
        }
    };
    let newest_first: Vec<String> = all.iter().rev().cloned().collect();
    assert_eq!(
        list(ExecutionFilter {
            limit: 100,
            ..Default::default()
        })
        .await,
        newest_first
    );
    let seqs: Vec<i64> = {
        let mut seqs = Vec::new();
        for id in &all {
            seqs.push(w.get(id).await.seq);
        }
        seqs
    };
    assert!(seqs.windows(2).all(|pair| pair[0] < pair[1]), "{seqs:?}");
    assert_eq!(
        list(ExecutionFilter {
            runtime_id: Some(w.runtime.id.clone()),
            limit: 100,
            ..Default::default()
        })
        .await,
        vec![third.clone(), second.clone(), first.id.clone()]
    );
    assert_eq!(
        list(ExecutionFilter {
            robot_id: Some(other_robot.clone()),
            limit: 100,
            ..Default::default()
        })
        .await,
        vec![on_other.id.clone()]
    );
    assert_eq!(
        list(ExecutionFilter {
            from: Some(2_000),
            to: Some(4_000),
            limit: 100,
            ..Default::default()
        })
        .await,
        vec![on_other.id.clone(), second.clone()]
    );
    assert_eq!(
        list(ExecutionFilter {
            limit: 2,
            ..Default::default()
        })
        .await,
        vec![fifth.clone(), third.clone()]
    );
    // Paging with the cursor walks everything once.
    let mut paged = Vec::new();
    let mut before_seq = None;
    loop {
        let page = w
            .store
            .list_executions(
                &w.org.id,
                &ExecutionFilter {
                    before_seq,
                    limit: 2,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        before_seq = Some(last.seq);
        paged.extend(page.into_iter().map(|e| e.id));
    }
    assert_eq!(paged, newest_first);
    assert_eq!(
        list(ExecutionFilter {
            limit: 100,
            ..Default::default()
        })
        .await
        .len(),
        5
    );
    assert!(w
        .store
        .list_executions(
            &other.id,
            &ExecutionFilter {
                limit: 100,
                ..Default::default()
            }
        )
        .await
        .unwrap()
        .is_empty());

    // Queue positions count the PENDENT runs ahead on the same runtime, handed out or not.
    let position = |id: String| {
        let w = &w;
        async move { w.store.queue_position(&w.get(&id).await).await.unwrap() }
    };
    assert_eq!(position(first.id.clone()).await, 0);
    assert_eq!(position(second.clone()).await, 1);
    assert_eq!(position(third.clone()).await, 2);
    assert_eq!(position(on_other.id.clone()).await, 0);
    assert_eq!(position(fifth.clone()).await, 1);
    let (claimed, _lease) = w.claim().await;
    assert_eq!(claimed, first.id);
    assert_eq!(position(third.clone()).await, 2);
    w.store
        .cancel(&w.org.id, &second, &w.admin.id, 9_000, None)
        .await
        .unwrap();
    assert_eq!(position(third.clone()).await, 1);

    // Status filter.
    assert_eq!(
        list(ExecutionFilter {
            status: Some(ExecutionStatus::Canceled),
            limit: 100,
            ..Default::default()
        })
        .await,
        vec![second.clone()]
    );
    assert_eq!(
        list(ExecutionFilter {
            status: Some(ExecutionStatus::Pendent),
            runtime_id: Some(w.runtime.id.clone()),
            limit: 100,
            ..Default::default()
        })
        .await,
        vec![third, first.id]
    );
}

async fn idempotency_keys(store: Arc<dyn Store>) {
    let w = world(store).await;
    let key = |key: &str, fingerprint: &str, expired_before: Millis| IdempotencyKey {
        user_id: w.admin.id.clone(),
        key: key.to_owned(),
        fingerprint: fingerprint.to_owned(),
        expired_before,
    };

    let first = w.execution(&w.runtime.id, 10_000, 1);
    assert_eq!(
        w.store
            .enqueue(&first, Some(&key("k", "f", 0)))
            .await
            .unwrap(),
        Enqueued::Created
    );
    // Same key, same request: the first execution, and nothing new is queued.
    let again = w.execution(&w.runtime.id, 11_000, 1);
    assert_eq!(
        w.store
            .enqueue(&again, Some(&key("k", "f", 0)))
            .await
            .unwrap(),
        Enqueued::Existing(first.id.clone())
    );
    assert!(is_not_found(
        w.store.get_execution(&w.org.id, &again.id).await
    ));
    // Same key, another request: refused.
    let different = w.execution(&w.runtime.id, 11_000, 1);
    assert_eq!(
        w.store
            .enqueue(&different, Some(&key("k", "other", 0)))
            .await
            .unwrap(),
        Enqueued::KeyReused
    );
    assert!(is_not_found(
        w.store.get_execution(&w.org.id, &different.id).await
    ));
    // Keys belong to their user.
    let integration = user(&w.org.id, "erp", Role::Integration, 10);
    w.store.create_user(&integration, None).await.unwrap();
    let theirs = w.execution(&w.runtime.id, 11_000, 1);
    let their_key = IdempotencyKey {
        user_id: integration.id.clone(),
        ..key("k", "f", 0)
    };
    assert_eq!(
        w.store.enqueue(&theirs, Some(&their_key)).await.unwrap(),
        Enqueued::Created
    );
    // Without a key, always a new one.
    assert_eq!(
        w.store.enqueue(&again, None).await.unwrap(),
        Enqueued::Created
    );

    // An expired key is replaced: a new execution, which the key then answers.
    let later = w.execution(&w.runtime.id, 20_000, 1);
    assert_eq!(
        w.store
            .enqueue(&later, Some(&key("k", "other", 10_001)))
            .await
            .unwrap(),
        Enqueued::Created
    );
    let retry = w.execution(&w.runtime.id, 21_000, 1);
    assert_eq!(
        w.store
            .enqueue(&retry, Some(&key("k", "other", 10_001)))
            .await
            .unwrap(),
        Enqueued::Existing(later.id.clone())
    );
    assert_eq!(
        w.store
            .enqueue(&retry, Some(&key("k", "f", 10_001)))
            .await
            .unwrap(),
        Enqueued::KeyReused
    );
    // A key recorded exactly at the cut-off is still live.
    assert_eq!(
        w.store
            .enqueue(&retry, Some(&key("k", "other", 20_000)))
            .await
            .unwrap(),
        Enqueued::Existing(later.id.clone())
    );

    // A failed enqueue does not keep the key.
    let mut broken = w.execution(&w.runtime.id, 30_000, 1);
    broken.id = first.id.clone();
    assert!(is_conflict(
        w.store.enqueue(&broken, Some(&key("fresh", "f", 0))).await
    ));
    let fixed = w.execution(&w.runtime.id, 30_000, 1);
    assert_eq!(
        w.store
            .enqueue(&fixed, Some(&key("fresh", "f", 0)))
            .await
            .unwrap(),
        Enqueued::Created
    );
}

async fn concurrent_requests_with_one_idempotency_key(store: Arc<dyn Store>) {
    let w = Arc::new(world(store).await);
    for round in 0..5 {
        let key = IdempotencyKey {
            user_id: w.admin.id.clone(),
            key: format!("key-{round}"),
            fingerprint: "f".into(),
            expired_before: 0,
        };
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let w = w.clone();
                let key = key.clone();
                let new = w.execution(&w.runtime.id, 1_000, 1);
                tokio::spawn(async move {
                    let outcome = w.store.enqueue(&new, Some(&key)).await.unwrap();
                    (new.id, outcome)
                })
            })
            .collect();
        let mut created = Vec::new();
        let mut existing = Vec::new();
        for task in tasks {
            match task.await.unwrap() {
                (id, Enqueued::Created) => created.push(id),
                (_, Enqueued::Existing(id)) => existing.push(id),
                (_, Enqueued::KeyReused) => panic!("same fingerprint refused"),
            }
        }
        assert_eq!(created.len(), 1, "one execution per key: {created:?}");
        assert!(existing.iter().all(|id| *id == created[0]));
    }
    let all = w
        .store
        .list_executions(
            &w.org.id,
            &ExecutionFilter {
                limit: 1_000,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(all.len(), 5);
}

async fn cancel_outcomes(store: Arc<dyn Store>) {
    let w = world(store).await;

    // PENDENT and not handed out: canceled, nothing to revoke.
    let pending = w.enqueue(1_000).await;
    assert_eq!(
        w.store
            .cancel(&w.org.id, &pending, &w.admin.id, 1_500, None)
            .await
            .unwrap(),
        CancelOutcome::Canceled { lease: None }
    );
    let got = w.get(&pending).await;
    assert_eq!(got.status, ExecutionStatus::Canceled);
    assert_eq!(got.end, Some(1_500));
    assert_eq!(got.canceled_by, Some(w.admin.id.clone()));
    assert!(got.end_reason.is_some());
    assert_eq!(
        w.store
            .cancel(&w.org.id, &pending, &w.admin.id, 1_600, None)
            .await
            .unwrap(),
        CancelOutcome::AlreadyEnded(ExecutionStatus::Canceled)
    );

    // PENDENT and handed out: canceled, and the lease comes back to be revoked.
    let leased = w.enqueue(2_000).await;
    let (claimed, lease) = w.claim().await;
    assert_eq!(claimed, leased);
    assert_eq!(
        w.store
            .cancel(&w.org.id, &leased, &w.admin.id, 2_500, None)
            .await
            .unwrap(),
        CancelOutcome::Canceled {
            lease: Some(lease.clone())
        }
    );
    assert!(!w
        .store
        .start(&w.runtime.id, &leased, &lease, 2_600)
        .await
        .unwrap());
    assert_eq!(
        w.report(&leased, &lease, &[log(1, "late")]).await,
        EventsOutcome::Revoked
    );
    assert_eq!(w.store.lease_status(&leased, &lease).await.unwrap(), None);
    assert_eq!(w.get(&leased).await.status, ExecutionStatus::Canceled);

    // RUNNING: marked; the runtime must stop it. Asking twice keeps the first asker.
    let (running, lease) = w.running(1).await;
    assert_eq!(
        w.store
            .cancel(&w.org.id, &running, &w.admin.id, 3_000, None)
            .await
            .unwrap(),
        CancelOutcome::Running {
            lease: lease.clone()
        }
    );
    let got = w.get(&running).await;
    assert_eq!(got.status, ExecutionStatus::Running);
    assert_eq!(got.canceled_by, Some(w.admin.id.clone()));
    assert_eq!(got.end, None);
    let leases = w.store.leases_of_runtime(&w.runtime.id).await.unwrap();
    assert_eq!(leases.len(), 1);
    assert!(leases[0].cancel_requested);
    assert_eq!(
        w.store
            .cancel(&w.org.id, &running, "someone-else", 3_100, None)
            .await
            .unwrap(),
        CancelOutcome::Running {
            lease: lease.clone()
        }
    );
    assert_eq!(w.get(&running).await.canceled_by, Some(w.admin.id.clone()));

    // The runtime reports it canceled: ended.
    assert_eq!(
        w.report(
            &running,
            &lease,
            &[ended(1, 3_200, ExecutionStatus::Canceled, Some(130))]
        )
        .await,
        stored(1, true)
    );
    assert_eq!(
        w.store
            .cancel(&w.org.id, &running, &w.admin.id, 3_300, None)
            .await
            .unwrap(),
        CancelOutcome::AlreadyEnded(ExecutionStatus::Canceled)
    );

    // FINISHED is ended too.
    let (done, lease) = w.running(1).await;
    w.report(
        &done,
        &lease,
        &[ended(1, 4_000, ExecutionStatus::Finished, Some(0))],
    )
    .await;
    assert_eq!(
        w.store
            .cancel(&w.org.id, &done, &w.admin.id, 4_100, None)
            .await
            .unwrap(),
        CancelOutcome::AlreadyEnded(ExecutionStatus::Finished)
    );

    // Unknown, or another organisation's: not found.
    assert!(is_not_found(
        w.store
            .cancel(&w.org.id, "ffffffffffffffff", &w.admin.id, 5_000, None)
            .await
    ));
    let other = organization("other", false, 10);
    w.store
        .create_organization(&other, &user(&other.id, "admin2", Role::Admin, 10), None)
        .await
        .unwrap();
    let victim = w.enqueue(6_000).await;
    assert!(is_not_found(
        w.store
            .cancel(&other.id, &victim, "intruder", 6_100, None)
            .await
    ));
    assert_eq!(w.get(&victim).await.status, ExecutionStatus::Pendent);
}

/// A write that has returned is seen by the very next read, from any task, even
/// right after reads that saw the state before it.
async fn every_acknowledged_write_is_read_at_once(store: Arc<dyn Store>) {
    let w = world(store).await;
    for round in 0..50 {
        let id = w.enqueue_on(&w.runtime.id, 1_000 + round, 1).await;
        let seen = w.store.get_execution(&w.org.id, &id).await.unwrap();
        assert_eq!(seen.status, ExecutionStatus::Pendent);
        w.store
            .cancel(&w.org.id, &id, &w.admin.id, 2_000, None)
            .await
            .unwrap();
        let reader = w.store.clone();
        let (org, read_id) = (w.org.id.clone(), id.clone());
        let seen = tokio::spawn(async move { reader.get_execution(&org, &read_id).await })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(seen.status, ExecutionStatus::Canceled, "round {round}");
        let seen = w.store.get_execution(&w.org.id, &id).await.unwrap();
        assert_eq!(seen.status, ExecutionStatus::Canceled, "round {round}");
    }
}

/// Many run requests at once (PostgreSQL writes them in groups), then more with
/// a few refused among them: each answer is the request's own, every accepted run
/// is stored whole with exactly one `execution.queued` event, and a refused one
/// changes nothing.
async fn run_requests_at_once_are_answered_each_on_its_own(store: Arc<dyn Store>) {
    let w = world(store).await;
    let taken = w.execution(&w.runtime.id, 500, 1);
    w.store.enqueue(&taken, None).await.unwrap();
    let mut created = vec![taken.id.clone()];
    // The first wave all valid, so that its groups are written as groups; the
    // second with the id of a stored run thrice (conflicts).
    for (wave, size) in [(0, 200), (1, 50)] {
        let mut requests = Vec::new();
        for i in 0..size {
            let new = if wave == 1 && i % 20 == 7 {
                NewExecution {
                    init: 600,
                    variables: json!({"N": i}),
                    ..taken.clone()
                }
            } else {
                // Some with the optional columns set, the others without.
                let from_elsewhere = i % 3 == 0;
                NewExecution {
                    variables: json!({"N": i, "TEXT": format!("run {wave}.{i}")}),
                    robot_version: 1 + i as u32 % 4,
                    schedule_id: from_elsewhere.then(|| format!("schedule-{i}")),
                    scheduled_for: from_elsewhere.then_some(5_000 + i),
                    flow_run_id: from_elsewhere.then(|| format!("flow-run-{i}")),
                    flow_step_id: from_elsewhere.then(|| format!("step-{i}")),
                    ..w.execution(&w.runtime.id, 1_000 + i, 1)
                }
            };
            let store = w.store.clone();
            requests.push(tokio::spawn(async move {
                let answer = store.enqueue(&new, None).await;
                (new, answer)
            }));
        }
        for request in requests {
            let (new, answer) = request.await.unwrap();
            if new.id == taken.id {
                assert!(is_conflict(answer));
                continue;
            }
            assert_eq!(answer.unwrap(), Enqueued::Created);
            let stored = w.get(&new.id).await;
            assert_eq!(stored.variables, new.variables);
            assert_eq!(stored.robot_version, new.robot_version);
            assert_eq!(
                (stored.init, stored.status),
                (new.init, ExecutionStatus::Pendent)
            );
            assert_eq!(stored.submitted_by.as_ref(), Some(&new.submitted_by));
            assert_eq!(
                (stored.schedule_id, stored.scheduled_for),
                (new.schedule_id, new.scheduled_for)
            );
            assert_eq!(
                (stored.flow_run_id, stored.flow_step_id),
                (new.flow_run_id, new.flow_step_id)
            );
            created.push(new.id);
        }
    }
    assert_eq!(created.len(), 1 + 200 + 47);
    let first = w.get(&taken.id).await;
    assert_eq!((first.init, first.variables), (500, json!({"N": 1})));

    let events = events_after_at_least(&*w.store, EventCursor::START, created.len()).await;
    let queued_events: Vec<_> = events
        .into_iter()
        .filter(|event| event.kind == EventKind::ExecutionQueued)
        .collect();
    // On PostgreSQL, runs written in one transaction share its id: some of the
    // first wave's did, so they were written as groups, not each alone after a
    // refusal. (SQLite's events all have 0 there.)
    let transactions: HashSet<i64> = queued_events
        .iter()
        .map(|event| event.cursor.txid)
        .collect();
    assert!(
        transactions.len() < queued_events.len() / 2,
        "{} transactions for {} runs",
        transactions.len(),
        queued_events.len()
    );
    let mut queued: Vec<String> = queued_events
        .into_iter()
        .map(|event| event.subject_id)
        .collect();
    queued.sort();
    created.sort();
    assert_eq!(queued, created);
}
