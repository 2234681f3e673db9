//! The event stream: each change writes exactly its events, in the transaction
//! of the change; consumers read on from their stored cursor; old events go.

use crate::fixtures::*;
use crate::support::events_after_at_least;
use regente_store::{EventCursor, EventFilter, EventKind, RuntimeSession, StoredEvent};
use serde_json::Value;

conformance! {
    store: [
        each_change_writes_exactly_its_events,
        runtimes_go_online_and_offline_once_per_transition,
        organization_events_are_scoped_and_filtered,
        a_consumer_of_some_kinds_reads_past_the_others,
        old_events_are_pruned,
        cursors_never_move_back,
    ],
    url: [
        a_consumer_restarting_from_its_cursor_sees_each_event_once_in_order,
    ],
}

/// An event as a test expects it: (kind, subject, time, data).
type Expected = (EventKind, String, Millis, Value);

fn expected(kind: EventKind, subject: &str, time: Millis, data: Value) -> Expected {
    (kind, subject.to_owned(), time, data)
}

/// The stream from its start, once `count` events show, checked to be in
/// strictly increasing order and of `organization_id`.
async fn stream(store: &Arc<dyn Store>, organization_id: &str, count: usize) -> Vec<Expected> {
    let events = events_after_at_least(&**store, EventCursor::START, count).await;
    for pair in events.windows(2) {
        assert!(pair[0].cursor < pair[1].cursor, "{pair:#?}");
    }
    events
        .into_iter()
        .map(|event| {
            assert_eq!(event.organization_id, organization_id, "{event:?}");
            (event.kind, event.subject_id, event.time, event.data)
        })
        .collect()
}

fn ended_data(status: ExecutionStatus, reason: &str, exit_code: Option<i32>) -> Value {
    json!({"status": status.as_str(), "reason": reason, "exit_code": exit_code, "flow_run_id": null})
}

async fn each_change_writes_exactly_its_events(store: Arc<dyn Store>) {
    let w = world(store).await;
    let (org, runtime, admin) = (&w.org.id, &w.runtime.id, &w.admin.id);
    let mut want = Vec::new();
    let queued = |id: &str, init| {
        expected(
            EventKind::ExecutionQueued,
            id,
            init,
            json!({"runtime_id": runtime, "robot_id": w.robot_id, "robot_version": 1, "submitted_by": admin}),
        )
    };
    let started = |id: &str, now| {
        expected(
            EventKind::ExecutionStarted,
            id,
            now,
            json!({ "runtime_id": runtime }),
        )
    };

    // Queued, started, ended with its status, reason and exit code.
    let new = w.execution(runtime, 1_000, 1);
    assert_eq!(
        w.store.enqueue(&new, None).await.unwrap(),
        Enqueued::Created
    );
    let finished = new.id.clone();
    want.push(queued(&finished, 1_000));
    // Refused: the same id again.
    assert!(is_conflict(w.store.enqueue(&new, None).await));
    let (claimed, lease) = w.claim().await;
    assert_eq!(claimed, finished);
    assert!(!w
        .store
        .start(runtime, &finished, "not-the-lease", 1_500)
        .await
        .unwrap());
    assert!(w
        .store
        .start(runtime, &finished, &lease, 2_000)
        .await
        .unwrap());
    want.push(started(&finished, 2_000));
    let end = ended(2, 3_000, ExecutionStatus::Finished, Some(0));
    assert_eq!(
        w.report(&finished, &lease, &[log(1, "working"), end.clone()])
            .await,
        stored(2, true)
    );
    let reason = format!("ended {}", ExecutionStatus::Finished);
    want.push(expected(
        EventKind::ExecutionEnded,
        &finished,
        3_000,
        ended_data(ExecutionStatus::Finished, &reason, Some(0)),
    ));
    // The same report again changes nothing.
    assert_eq!(w.report(&finished, &lease, &[end]).await, stored(2, false));

    // A PENDENT run canceled: canceled, and ended at once.
    let pendent = w.enqueue(4_000).await;
    want.push(queued(&pendent, 4_000));
    let outcome = w
        .store
        .cancel(org, &pendent, admin, 4_100, None)
        .await
        .unwrap();
    assert_eq!(outcome, CancelOutcome::Canceled { lease: None });
    want.push(expected(
        EventKind::ExecutionCanceled,
        &pendent,
        4_100,
        json!({"canceled_by": admin, "was_running": false}),
    ));
    want.push(expected(
        EventKind::ExecutionEnded,
        &pendent,
        4_100,
        ended_data(
            ExecutionStatus::Canceled,
            "canceled before it started",
            None,
        ),
    ));
    let again = w
        .store
        .cancel(org, &pendent, admin, 4_200, None)
        .await
        .unwrap();
    assert_eq!(
        again,
        CancelOutcome::AlreadyEnded(ExecutionStatus::Canceled)
    );

    // A RUNNING run canceled: canceled once, however often asked; ended when
    // its runtime reports it stopped.
    let (running, lease) = w.running(1).await;
    want.push(queued(&running, 1_000));
    want.push(started(&running, 2_000));
    for now in [5_000, 5_100] {
        let outcome = w
            .store
            .cancel(org, &running, admin, now, None)
            .await
            .unwrap();
        assert_eq!(
            outcome,
            CancelOutcome::Running {
                lease: lease.clone()
            }
        );
    }
    want.push(expected(
        EventKind::ExecutionCanceled,
        &running,
        5_000,
        json!({"canceled_by": admin, "was_running": true}),
    ));
    let stop = ended(1, 5_500, ExecutionStatus::Canceled, None);
    assert_eq!(w.report(&running, &lease, &[stop]).await, stored(1, true));
    let reason = format!("ended {}", ExecutionStatus::Canceled);
    want.push(expected(
        EventKind::ExecutionEnded,
        &running,
        5_500,
        ended_data(ExecutionStatus::Canceled, &reason, None),
    ));

    // A lease given up before the robot was spawned: back to the queue. Then
    // lost while running, with no retry left: ERROR. A stale end: nothing.
    let lost = w.enqueue(6_000).await;
    want.push(queued(&lost, 6_000));
    let (_, unspawned) = w.claim().await;
    let outcome = w
        .store
        .end_lease(&lost, &unspawned, false, "gone", 6_100)
        .await;
    assert_eq!(outcome.unwrap(), LostOutcome::Requeued);
    want.push(expected(
        EventKind::ExecutionRequeued,
        &lost,
        6_100,
        json!({"reason": "gone", "was_running": false}),
    ));
    let (_, lease) = w.claim().await;
    assert!(w.store.start(runtime, &lost, &lease, 6_200).await.unwrap());
    want.push(started(&lost, 6_200));
    let outcome = w
        .store
        .end_lease(&lost, &lease, true, "runtime lost", 6_300)
        .await;
    assert_eq!(outcome.unwrap(), LostOutcome::Ended(ExecutionStatus::Error));
    want.push(expected(
        EventKind::ExecutionEnded,
        &lost,
        6_300,
        ended_data(ExecutionStatus::Error, "runtime lost", None),
    ));
    let stale = w.store.end_lease(&lost, &lease, true, "again", 6_400).await;
    assert_eq!(stale.unwrap(), LostOutcome::Stale);

    // A robot with a retry: lost while running, queued again; lost again, ERROR.
    let (retried, lease) = w.running(2).await;
    want.push(queued(&retried, 1_000));
    want.push(started(&retried, 2_000));
    let outcome = w
        .store
        .end_lease(&retried, &lease, true, "lost", 7_000)
        .await;
    assert_eq!(outcome.unwrap(), LostOutcome::Requeued);
    want.push(expected(
        EventKind::ExecutionRequeued,
        &retried,
        7_000,
        json!({
            "reason": "lost; the robot allows retries, so it is queued again (attempt 2 of 2)",
            "was_running": true,
        }),
    ));
    let (_, lease) = w.claim().await;
    assert!(w
        .store
        .start(runtime, &retried, &lease, 7_100)
        .await
        .unwrap());
    want.push(started(&retried, 7_100));
    let outcome = w
        .store
        .end_lease(&retried, &lease, true, "lost", 7_200)
        .await;
    assert_eq!(outcome.unwrap(), LostOutcome::Ended(ExecutionStatus::Error));
    want.push(expected(
        EventKind::ExecutionEnded,
        &retried,
        7_200,
        ended_data(ExecutionStatus::Error, "lost", None),
    ));

    // Canceled while running, then lost: the cancel wins.
    let (canceled, lease) = w.running(1).await;
    want.push(queued(&canceled, 1_000));
    want.push(started(&canceled, 2_000));
    w.store
        .cancel(org, &canceled, admin, 8_000, None)
        .await
        .unwrap();
    want.push(expected(
        EventKind::ExecutionCanceled,
        &canceled,
        8_000,
        json!({"canceled_by": admin, "was_running": true}),
    ));
    let outcome = w
        .store
        .end_lease(&canceled, &lease, true, "lost", 8_100)
        .await;
    assert_eq!(
        outcome.unwrap(),
        LostOutcome::Ended(ExecutionStatus::Canceled)
    );
    want.push(expected(
        EventKind::ExecutionEnded,
        &canceled,
        8_100,
        ended_data(ExecutionStatus::Canceled, "canceled; lost", None),
    ));

    // An idempotency key answering an earlier execution queues nothing.
    let keyed = w.execution(runtime, 9_000, 1);
    let key = IdempotencyKey {
        user_id: admin.clone(),
        key: "order-1".into(),
        fingerprint: "fingerprint-1".into(),
        expired_before: 0,
    };
    let created = w.store.enqueue(&keyed, Some(&key)).await.unwrap();
    assert_eq!(created, Enqueued::Created);
    want.push(queued(&keyed.id, 9_000));
    let again = NewExecution {
        id: new_id(),
        ..keyed.clone()
    };
    let answered = w.store.enqueue(&again, Some(&key)).await.unwrap();
    assert_eq!(answered, Enqueued::Existing(keyed.id.clone()));

    assert_eq!(stream(&w.store, org, want.len()).await, want);
}

async fn runtimes_go_online_and_offline_once_per_transition(store: Arc<dyn Store>) {
    let w = world(store).await;
    let (org, runtime) = (&w.org.id, &w.runtime.id);
    let online = |session: &str, time| {
        expected(
            EventKind::RuntimeOnline,
            runtime,
            time,
            json!({ "session_id": session }),
        )
    };
    let offline = |session: &str, reason: &str, time| {
        expected(
            EventKind::RuntimeOffline,
            runtime,
            time,
            json!({"session_id": session, "reason": reason}),
        )
    };
    let mut want = Vec::new();
    assert!(w
        .store
        .runtime_connected(runtime, "s1", 1_000)
        .await
        .unwrap());
    want.push(online("s1", 1_000));
    // A reconnect that raced the end of the old connection: still online, and
    // the old connection's end changes nothing.
    assert!(!w
        .store
        .runtime_connected(runtime, "s2", 2_000)
        .await
        .unwrap());
    assert!(!w
        .store
        .runtime_disconnected(runtime, "s1", "old", 2_100)
        .await
        .unwrap());
    assert_eq!(
        w.store.silent_runtimes(i64::MAX).await.unwrap(),
        [RuntimeSession {
            runtime_id: runtime.clone(),
            session_id: "s2".into()
        }]
    );
    assert!(w
        .store
        .runtime_disconnected(runtime, "s2", "closed", 3_000)
        .await
        .unwrap());
    want.push(offline("s2", "closed", 3_000));
    assert!(!w
        .store
        .runtime_disconnected(runtime, "s2", "closed", 3_100)
        .await
        .unwrap());
    assert!(w.store.silent_runtimes(i64::MAX).await.unwrap().is_empty());

    // Silent: listed once not heard from since the time asked about.
    assert!(w
        .store
        .runtime_connected(runtime, "s3", 4_000)
        .await
        .unwrap());
    want.push(online("s3", 4_000));
    w.store.touch_runtime(runtime, 5_000).await.unwrap();
    assert!(w.store.silent_runtimes(5_000).await.unwrap().is_empty());
    let silent = w.store.silent_runtimes(5_001).await.unwrap();
    assert_eq!(silent.len(), 1);
    assert_eq!(silent[0].session_id, "s3");
    assert!(w
        .store
        .runtime_disconnected(runtime, "s3", "lost", 9_000)
        .await
        .unwrap());
    want.push(offline("s3", "lost", 9_000));
    assert!(is_not_found(
        w.store.runtime_connected("0000000000000000", "s", 1).await
    ));

    assert_eq!(stream(&w.store, org, want.len()).await, want);
}

async fn organization_events_are_scoped_and_filtered(store: Arc<dyn Store>) {
    let w = world(store).await;
    let other = organization("globex", false, 30);
    let other_admin = user(&other.id, "globex-admin", Role::Admin, 30);
    w.store
        .create_organization(&other, &other_admin, None)
        .await
        .unwrap();
    let other_runtime = add_runtime(&w.store, &other.id, "globex-desk").await;
    let ours = w.enqueue(1_000).await;
    let canceled = w.enqueue(2_000).await;
    w.store
        .cancel(&w.org.id, &canceled, &w.admin.id, 2_500, None)
        .await
        .unwrap();
    assert!(w
        .store
        .runtime_connected(&other_runtime.id, "s", 3_000)
        .await
        .unwrap());
    events_after_at_least(&*w.store, EventCursor::START, 5).await;

    let read = |organization: String, filter: EventFilter| {
        let store = w.store.clone();
        async move {
            store
                .organization_events_after(&organization, EventCursor::START, &filter, 100)
                .await
                .unwrap()
                .into_iter()
                .map(|e| (e.kind, e.subject_id))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        read(w.org.id.clone(), EventFilter::default()).await,
        [
            (EventKind::ExecutionQueued, ours.clone()),
            (EventKind::ExecutionQueued, canceled.clone()),
            (EventKind::ExecutionCanceled, canceled.clone()),
            (EventKind::ExecutionEnded, canceled.clone()),
        ]
    );
    assert_eq!(
        read(other.id.clone(), EventFilter::default()).await,
        [(EventKind::RuntimeOnline, other_runtime.id.clone())]
    );
    let kinds = EventFilter {
        kinds: vec![EventKind::ExecutionEnded, EventKind::ExecutionCanceled],
        subject_id: None,
    };
    assert_eq!(
        read(w.org.id.clone(), kinds).await,
        [
            (EventKind::ExecutionCanceled, canceled.clone()),
            (EventKind::ExecutionEnded, canceled.clone()),
        ]
    );
    let subject = EventFilter {
        kinds: Vec::new(),
        subject_id: Some(ours.clone()),
    };
    assert_eq!(
        read(w.org.id.clone(), subject).await,
        [(EventKind::ExecutionQueued, ours.clone())]
    );
    // Paged: after the first event, at most two.
    let first = w
        .store
        .organization_events_after(&w.org.id, EventCursor::START, &EventFilter::default(), 1)
        .await
        .unwrap();
    let page = w
        .store
        .organization_events_after(&w.org.id, first[0].cursor, &EventFilter::default(), 2)
        .await
        .unwrap();
    let kinds: Vec<EventKind> = page.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [EventKind::ExecutionQueued, EventKind::ExecutionCanceled]
    );
    assert!(read("0000000000000000".into(), EventFilter::default())
        .await
        .is_empty());
}

async fn a_consumer_of_some_kinds_reads_past_the_others(store: Arc<dyn Store>) {
    let w = world(store).await;
    let ran = w.enqueue(1_000).await;
    let canceled = w.enqueue(2_000).await;
    w.store
        .cancel(&w.org.id, &canceled, &w.admin.id, 2_500, None)
        .await
        .unwrap();
    // queued, queued, canceled, ended; then queued.
    let all = events_after_at_least(&*w.store, EventCursor::START, 4).await;
    assert_eq!(all.len(), 4);
    w.enqueue(3_000).await;

    let ended = [EventKind::ExecutionEnded];
    let read = w
        .store
        .events_of_kinds_after(EventCursor::START, 4, &ended)
        .await
        .unwrap();
    assert_eq!(read.read, 4, "every event read, of any kind");
    assert_eq!(read.through, Some(all[3].cursor));
    assert_eq!(read.events, [all[3].clone()], "the ended one, whole");
    assert_eq!(read.events[0].subject_id, canceled);
    // Only events of other kinds: read past, none returned.
    let queued_first = w
        .store
        .events_of_kinds_after(EventCursor::START, 2, &ended)
        .await
        .unwrap();
    assert_eq!(
        (
            queued_first.read,
            queued_first.through,
            queued_first.events.len()
        ),
        (2, Some(all[1].cursor), 0)
    );
    assert_eq!(all[0].subject_id, ran);
    // Nothing asked for: a read that only moves on (once the fifth shows: on
    // PostgreSQL, a transaction still open elsewhere holds the stream back).
    events_after_at_least(&*w.store, EventCursor::START, 5).await;
    let rest = w
        .store
        .events_of_kinds_after(all[3].cursor, 10, &[])
        .await
        .unwrap();
    assert_eq!((rest.read, rest.events.len()), (1, 0));
    assert!(rest.through > Some(all[3].cursor));
    // At the end of the stream: nothing read.
    let end = w
        .store
        .events_of_kinds_after(rest.through.unwrap(), 10, &EventKind::ALL)
        .await
        .unwrap();
    assert_eq!((end.read, end.through), (0, None));
}

async fn old_events_are_pruned(store: Arc<dyn Store>) {
    let w = world(store).await;
    let old = w.enqueue(1_000).await;
    let older = w.enqueue(900).await;
    let recent = w.enqueue(3_000).await;
    let all = events_after_at_least(&*w.store, EventCursor::START, 3).await;
    assert_eq!(all.len(), 3);
    assert_eq!(w.store.prune_events(1_000).await.unwrap(), 1);
    assert_eq!(w.store.prune_events(2_000).await.unwrap(), 1);
    assert_eq!(w.store.prune_events(2_000).await.unwrap(), 0);
    let left = w.store.events_after(EventCursor::START, 10).await.unwrap();
    let subjects: Vec<&str> = left.iter().map(|e| e.subject_id.as_str()).collect();
    assert_eq!(subjects, [recent.as_str()]);
    assert_eq!(left[0].cursor, all[2].cursor);
    // The executions themselves stay.
    for id in [old, older] {
        assert_eq!(w.get(&id).await.status, ExecutionStatus::Pendent);
    }
}

async fn cursors_never_move_back(store: Arc<dyn Store>) {
    let consumer = "webhooks";
    assert_eq!(
        store.load_cursor(consumer).await.unwrap(),
        EventCursor::START
    );
    let ahead = EventCursor { txid: 7, seq: 3 };
    store.save_cursor(consumer, ahead, 100).await.unwrap();
    assert_eq!(store.load_cursor(consumer).await.unwrap(), ahead);
    for behind in [
        EventCursor { txid: 7, seq: 2 },
        EventCursor { txid: 6, seq: 9 },
    ] {
        store.save_cursor(consumer, behind, 200).await.unwrap();
        assert_eq!(store.load_cursor(consumer).await.unwrap(), ahead);
    }
    let further = EventCursor { txid: 8, seq: 1 };
    store.save_cursor(consumer, further, 300).await.unwrap();
    assert_eq!(store.load_cursor(consumer).await.unwrap(), further);
    assert_eq!(
        store.load_cursor("another").await.unwrap(),
        EventCursor::START
    );
}

/// A consumer that handles events and stores its cursor.
struct Consumer {
    name: &'static str,
    handled: Vec<(EventKind, String)>,
}

impl Consumer {
    /// Reads on from its stored cursor, a few at a time, until it has handled
    /// `total` events in all.
    async fn catch_up(&mut self, store: &Arc<dyn Store>, total: usize) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while self.handled.len() < total {
            let cursor = store.load_cursor(self.name).await.unwrap();
            let page: Vec<StoredEvent> = store.events_after(cursor, 2).await.unwrap();
            let Some(last) = page.last() else {
                assert!(
                    std::time::Instant::now() < deadline,
                    "{} of {total} events showed",
                    self.handled.len()
                );
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                continue;
            };
            self.handled
                .extend(page.iter().map(|e| (e.kind, e.subject_id.clone())));
            store.save_cursor(self.name, last.cursor, 1).await.unwrap();
        }
        assert_eq!(self.handled.len(), total, "{:#?}", self.handled);
    }
}

async fn a_consumer_restarting_from_its_cursor_sees_each_event_once_in_order(
    store: Arc<dyn Store>,
    url: String,
) {
    let w = world(store).await;
    let mut want = Vec::new();
    for init in 1..=5 {
        let id = w.enqueue(init).await;
        want.push((EventKind::ExecutionQueued, id));
    }
    let mut consumer = Consumer {
        name: "console",
        handled: Vec::new(),
    };
    consumer.catch_up(&w.store, 5).await;
    // More changes while it is away; then it starts again, on a store opened
    // anew, knowing nothing but its name.
    for (_, id) in want.clone().iter().take(2) {
        w.store
            .cancel(&w.org.id, id, &w.admin.id, 10, None)
            .await
            .unwrap();
        want.push((EventKind::ExecutionCanceled, id.clone()));
        want.push((EventKind::ExecutionEnded, id.clone()));
    }
    let handled_before = std::mem::take(&mut consumer.handled);
    drop(consumer);
    let reopened = regente_store::open(&url).await.unwrap();
    for init in 6..=8 {
        let id = w.enqueue(init).await;
        want.push((EventKind::ExecutionQueued, id));
    }
    let mut restarted = Consumer {
        name: "console",
        handled: handled_before,
    };
    restarted.catch_up(&reopened, want.len()).await;
    assert_eq!(restarted.handled, want);
    // Nothing more to read.
    let cursor = reopened.load_cursor("console").await.unwrap();
    assert!(reopened.events_after(cursor, 10).await.unwrap().is_empty());
}
