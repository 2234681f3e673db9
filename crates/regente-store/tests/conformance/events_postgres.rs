//! The event stream's guarantees that only PostgreSQL puts to the test: there,
//! transactions run side by side, commit out of `seq` order, and can be cut off
//! halfway. (On SQLite one writer commits in `seq` order; the writer's own tests
//! cover a write undone within a batch.)

use std::time::{Duration, Instant};

use sqlx::{Connection, Executor, PgConnection};

use crate::fixtures::*;
use crate::support::events_after_at_least;
use regente_store::{EventCursor, StoredEvent};

postgres_only![
    commits_out_of_seq_order_are_read_without_a_skip,
    a_transaction_cut_off_halfway_leaves_no_event,
];

fn subjects(events: &[StoredEvent]) -> Vec<&str> {
    events.iter().map(|e| e.subject_id.as_str()).collect()
}

/// Inserts an event the way the store does, in `conn`'s open transaction.
async fn insert_event(conn: &mut PgConnection, organization_id: &str, subject: &str) {
    sqlx::query(
        "INSERT INTO events (organization_id, kind, subject_id, time, data) \
         VALUES ($1, 'execution.queued', $2, 1, '{}')",
    )
    .bind(organization_id)
    .bind(subject)
    .execute(conn)
    .await
    .unwrap();
}

async fn seq_of(conn: &mut PgConnection, subject: &str) -> i64 {
    sqlx::query_scalar("SELECT seq FROM events WHERE subject_id = $1")
        .bind(subject)
        .fetch_one(conn)
        .await
        .unwrap()
}

/// T1 draws its `seq` first, T2 (a store write) draws a later one and commits
/// first: a reader by `seq` would take T2's event, store its cursor, and never
/// see T1's. The stream answers neither until T1 has ended, then both in order.
/// And the other way round: T1 began writing first but draws its `seq` after
/// T2 committed: T1's event still comes first.
async fn commits_out_of_seq_order_are_read_without_a_skip(store: Arc<dyn Store>, url: String) {
    let w = world(store).await;
    let mut t1 = PgConnection::connect(&url).await.unwrap();
    t1.execute("BEGIN").await.unwrap();
    insert_event(&mut t1, &w.org.id, "slow").await;
    let fast = w.enqueue(2).await;
    let slow_seq = seq_of(&mut t1, "slow").await;
    let fast_seq = seq_of(&mut t1, &fast).await;
    assert!(slow_seq < fast_seq, "{slow_seq} < {fast_seq}");
    let seen = w.store.events_after(EventCursor::START, 10).await.unwrap();
    assert!(seen.is_empty(), "read past an open transaction: {seen:#?}");
    let filter = regente_store::EventFilter::default();
    let seen = w
        .store
        .organization_events_after(&w.org.id, EventCursor::START, &filter, 10)
        .await
        .unwrap();
    assert!(seen.is_empty(), "read past an open transaction: {seen:#?}");
    t1.execute("COMMIT").await.unwrap();
    let events = events_after_at_least(&*w.store, EventCursor::START, 2).await;
    assert_eq!(subjects(&events), ["slow", fast.as_str()]);
    let cursor = events[1].cursor;

    // T1 takes its transaction id, T2 commits, then T1 draws its seq.
    t1.execute("BEGIN").await.unwrap();
    sqlx::query("SELECT pg_current_xact_id()")
        .execute(&mut t1)
        .await
        .unwrap();
    let fast = w.enqueue(3).await;
    insert_event(&mut t1, &w.org.id, "late").await;
    assert!(seq_of(&mut t1, "late").await > seq_of(&mut t1, &fast).await);
    let seen = w.store.events_after(cursor, 10).await.unwrap();
    assert!(seen.is_empty(), "read past an open transaction: {seen:#?}");
    t1.execute("COMMIT").await.unwrap();
    let events = events_after_at_least(&*w.store, cursor, 2).await;
    assert_eq!(subjects(&events), ["late", fast.as_str()]);
    let all = events_after_at_least(&*w.store, EventCursor::START, 4).await;
    assert_eq!(all.len(), 4, "each event once: {all:#?}");
    t1.close().await.ok();
}

/// A lease end cut off after it wrote the execution and its event, before its
/// commit (its connection terminated while it waits on a lock): neither the
/// change nor the event is there, and the events committed before and after
/// are. Done again, the lease end writes its event once.
async fn a_transaction_cut_off_halfway_leaves_no_event(store: Arc<dyn Store>, url: String) {
    let w = world(store).await;
    let (id, lease) = w.running(1).await;
    events_after_at_least(&*w.store, EventCursor::START, 2).await;

    // Holds, uncommitted, the log line the lease end writes last: the
    // store's transaction waits for it after writing its event.
    let mut blocker = PgConnection::connect(&url).await.unwrap();
    let blocker_pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut blocker)
        .await
        .unwrap();
    blocker.execute("BEGIN").await.unwrap();
    sqlx::query(
        "INSERT INTO execution_logs (execution_id, seq, organization_id, time, level, message) \
         VALUES ($1, 1, $2, 0, 'INFO', 'in the way')",
    )
    .bind(&id)
    .bind(&w.org.id)
    .execute(&mut blocker)
    .await
    .unwrap();
    let ending = {
        let (store, id, lease) = (w.store.clone(), id.clone(), lease.clone());
        tokio::spawn(async move { store.end_lease(&id, &lease, true, "lost", 9_000).await })
    };
    let mut admin = PgConnection::connect(&url).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let waiting = loop {
        let waiting: Option<i32> = sqlx::query_scalar(
            "SELECT a.pid FROM pg_stat_activity a \
             WHERE a.datname = current_database() AND a.pid <> $1 \
             AND a.wait_event_type = 'Lock' AND EXISTS ( \
                 SELECT 1 FROM pg_locks l WHERE l.pid = a.pid \
                 AND l.relation = 'events'::regclass AND l.mode = 'RowExclusiveLock')",
        )
        .bind(blocker_pid)
        .fetch_optional(&mut admin)
        .await
        .unwrap();
        if let Some(pid) = waiting {
            break pid;
        }
        assert!(Instant::now() < deadline, "the lease end never waited");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let terminated: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(waiting)
        .fetch_one(&mut admin)
        .await
        .unwrap();
    assert!(terminated);
    assert!(
        ending.await.unwrap().is_err(),
        "the cut-off lease end answered"
    );
    blocker.execute("ROLLBACK").await.unwrap();

    assert_eq!(
        w.store.lease_status(&id, &lease).await.unwrap(),
        Some(ExecutionStatus::Running)
    );
    // A write committed after it: once its event shows, any event of the
    // cut-off transaction (an older one) would show too.
    let marker = w.enqueue(10_000).await;
    let events = events_after_at_least(&*w.store, EventCursor::START, 3).await;
    assert_eq!(
        subjects(&events),
        [id.as_str(), id.as_str(), marker.as_str()]
    );

    let outcome = w.store.end_lease(&id, &lease, true, "lost", 9_500).await;
    assert_eq!(outcome.unwrap(), LostOutcome::Ended(ExecutionStatus::Error));
    let events = events_after_at_least(&*w.store, EventCursor::START, 4).await;
    let ended: Vec<_> = events
        .iter()
        .filter(|e| e.kind == regente_store::EventKind::ExecutionEnded)
        .collect();
    assert_eq!(ended.len(), 1, "{events:#?}");
    assert_eq!(ended[0].subject_id, id);
    assert_eq!(ended[0].time, 9_500);
    admin.close().await.ok();
    blocker.close().await.ok();
}
