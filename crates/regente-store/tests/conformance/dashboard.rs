//! The dashboard's hourly rollups, kept in the transaction that ends an
//! execution, however it ends, and counted once.

use regente_store::dashboard::{quantile, time_bucket, TIME_BUCKETS};
use regente_store::{HourCount, TimeKind};

use crate::fixtures::*;

conformance! {
    store: [
        executions_are_counted_by_the_hour_they_end_in,
        times_on_either_side_of_each_bound_land_in_the_buckets_the_code_says,
    ],
}

const HOUR: Millis = 3_600_000;

/// The store buckets a time where the dashboard reads it: each bound's time
/// opens the next bucket, the time before it closes its own.
async fn times_on_either_side_of_each_bound_land_in_the_buckets_the_code_says(
    store: Arc<dyn Store>,
) {
    let w = world(store.clone()).await;
    let edges: Vec<Millis> = TIME_BUCKETS
        .iter()
        .flat_map(|&bound| [bound - 1, bound])
        .collect();
    // Each run waits one edge and runs for the next; one more waits no time
    // and runs past the last bound, so that the two kinds' counts differ.
    let mut runs: Vec<(Millis, Millis)> = edges
        .iter()
        .zip(edges.iter().cycle().skip(1))
        .map(|(&wait, &duration)| (wait, duration))
        .collect();
    runs.push((0, 3_000_000_000));
    let mut wanted_waits = vec![0u64; TIME_BUCKETS.len() + 1];
    let mut wanted_durations = wanted_waits.clone();
    let mut latest_end = 0;
    for (wait, duration) in runs {
        let init = 10_000;
        let id = w.enqueue(init).await;
        let (claimed, lease) = w.claim().await;
        assert_eq!(claimed, id);
        assert!(store
            .start(&w.runtime.id, &id, &lease, init + wait)
            .await
            .unwrap());
        let end_time = init + wait + duration;
        latest_end = latest_end.max(end_time);
        let end = [ended(1, end_time, ExecutionStatus::Finished, Some(0))];
        assert_eq!(w.report(&id, &lease, &end).await, stored(1, true));
        wanted_waits[time_bucket(wait)] += 1;
        wanted_durations[time_bucket(duration)] += 1;
    }

    let hours = store.hours(&w.org.id, 0, latest_end + HOUR).await.unwrap();
    for (kind, wanted) in [
        (TimeKind::Wait, wanted_waits),
        (TimeKind::Duration, wanted_durations),
    ] {
        let mut found = vec![0u64; TIME_BUCKETS.len() + 1];
        for t in hours.times.iter().filter(|t| t.kind == kind) {
            found[t.bucket] += t.runs;
        }
        assert_eq!(found, wanted, "{kind:?}");
    }
}

async fn executions_are_counted_by_the_hour_they_end_in(store: Arc<dyn Store>) {
    let w = world(store.clone()).await;
    // Queued at 1 000, started at 2 000 (see `World::running`).
    let (finished, lease) = w.running(1).await;
    let done = [ended(1, 5_000, ExecutionStatus::Finished, Some(0))];
    assert_eq!(w.report(&finished, &lease, &done).await, stored(1, true));
    // The same report again changes nothing.
    assert_eq!(w.report(&finished, &lease, &done).await, stored(1, false));
    let (failed, lease) = w.running(1).await;
    let failure = [
        log(1, "about to fail"),
        ended(2, HOUR + 2_500, ExecutionStatus::Error, Some(3)),
    ];
    assert_eq!(w.report(&failed, &lease, &failure).await, stored(2, true));
    let pendent = w.enqueue(3_000).await;
    let canceled = store
        .cancel(&w.org.id, &pendent, &w.admin.id, 4_000, None)
        .await
        .unwrap();
    assert_eq!(canceled, CancelOutcome::Canceled { lease: None });
    // Still running: not counted until it ends.
    let _running = w.running(1).await;

    let hours = store.hours(&w.org.id, 0, 2 * HOUR).await.unwrap();
    let mut counts = hours.counts.clone();
    counts.sort_by_key(|c| (c.hour, c.status.as_str()));
    let count = |hour, status, reason: &str, busy_ms| HourCount {
        hour,
        robot_id: w.robot_id.clone(),
        runtime_id: w.runtime.id.clone(),
        status,
        reason: reason.to_owned(),
        runs: 1,
        busy_ms,
    };
    assert_eq!(
        counts,
        [
            count(0, ExecutionStatus::Canceled, "", 0),
            count(0, ExecutionStatus::Finished, "", 3_000),
            count(HOUR, ExecutionStatus::Error, "ended ERROR", HOUR + 500),
        ]
    );
    let mut times: Vec<(Millis, TimeKind, usize, u64)> = hours
        .times
        .iter()
        .map(|t| {
            assert_eq!(t.robot_id, w.robot_id);
            (t.hour, t.kind, t.bucket, t.runs)
        })
        .collect();
    times.sort_by_key(|t| (t.0, t.1.as_str()));
    assert_eq!(
        times,
        [
            (0, TimeKind::Duration, time_bucket(3_000), 1),
            (0, TimeKind::Wait, time_bucket(1_000), 1),
            (HOUR, TimeKind::Duration, time_bucket(HOUR + 500), 1),
            (HOUR, TimeKind::Wait, time_bucket(1_000), 1),
        ]
    );
    let mut waits = vec![0; TIME_BUCKETS.len() + 1];
    for t in hours.times.iter().filter(|t| t.kind == TimeKind::Wait) {
        waits[t.bucket] += t.runs;
    }
    assert_eq!(
        quantile(&waits, 0.95),
        Some(TIME_BUCKETS[time_bucket(1_000)])
    );

    // The window is read by hour, and by organisation.
    let second = store.hours(&w.org.id, HOUR, 2 * HOUR).await.unwrap();
    assert_eq!(second.counts.len(), 1);
    assert_eq!(second.counts[0].status, ExecutionStatus::Error);
    assert_eq!(
        store.hours(&w.org.id, 2 * HOUR, 3 * HOUR).await.unwrap(),
        Default::default()
    );
    // Every organisation's totals: the ended counts, the robots' busy time,
    // the time buckets, and the executions waiting or running now.
    let totals = store.totals().await.unwrap();
    let mut ended: Vec<(&str, &str, &str, u64)> = totals
        .ended
        .iter()
        .map(|c| {
            let organization = c.organization_id.as_str();
            (
                organization,
                c.robot_id.as_str(),
                c.status.as_str(),
                c.count,
            )
        })
        .collect();
    ended.sort();
    let org = w.org.id.as_str();
    let robot = w.robot_id.as_str();
    assert_eq!(
        ended,
        [
            (org, robot, "CANCELED", 1),
            (org, robot, "ERROR", 1),
            (org, robot, "FINISHED", 1)
        ]
    );
    assert_eq!(totals.runtimes, 1, "the world's one runtime");
    assert_eq!(totals.busy_ms, 3_000 + HOUR + 500);
    let mut buckets: Vec<(&str, usize, u64)> = totals
        .times
        .iter()
        .map(|(kind, bucket, runs)| (kind.as_str(), *bucket, *runs))
        .collect();
    buckets.sort();
    assert_eq!(
        buckets,
        [
            ("duration", time_bucket(3_000), 1),
            ("duration", time_bucket(HOUR + 500), 1),
            ("wait", time_bucket(1_000), 2),
        ]
    );
    let live: Vec<(&str, &str, u64)> = totals
        .live
        .iter()
        .map(|c| (c.organization_id.as_str(), c.status.as_str(), c.count))
        .collect();
    assert_eq!(live, [(org, "RUNNING", 1)]);

    let other = organization("other", false, 10);
    let other_admin = user(&other.id, "other-admin", Role::Admin, 10);
    store
        .create_organization(&other, &other_admin, None)
        .await
        .unwrap();
    assert_eq!(
        store.hours(&other.id, 0, 2 * HOUR).await.unwrap(),
        Default::default()
    );
}
