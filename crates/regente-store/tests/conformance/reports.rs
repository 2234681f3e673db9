//! Reports from runtimes: events applied once and in order.

use crate::fixtures::*;

conformance! {
    store: [
        record_events_in_order_once,
        record_events_end_the_execution,
        concurrent_copies_of_one_report,
        a_long_batch_of_lines_is_stored_whole_and_in_order,
        the_log_is_read_by_pages_after_a_cursor,
        an_execution_is_read_with_its_whole_log,
    ],
}

// ---------------------------------------------------------------------------
// Reports from runtimes.

async fn record_events_in_order_once(store: Arc<dyn Store>) {
    let w = world(store).await;
    let (id, lease) = w.running(1).await;
    let returned = json!({"total": 12.5, "items": ["a", "b"], "ok": true});
    let batch = [
        log(1, "first"),
        progress(2, 50.0),
        EventRecord {
            seq: 3,
            time: 5_003,
            change: Change::Return(returned.clone()),
        },
    ];
    assert_eq!(w.report(&id, &lease, &batch).await, stored(3, false));
    let got = w.get(&id).await;
    assert_eq!(got.progress, 50.0);
    assert_eq!(got.return_value, Some(returned));
    assert_eq!(got.status, ExecutionStatus::Running);
    assert_eq!(w.logs(&id).await, vec![(1, "INFO".into(), "first".into())]);

    // Sent again with one more: only the new one is stored.
    let again = [
        batch[0].clone(),
        batch[1].clone(),
        batch[2].clone(),
        log(4, "fourth"),
    ];
    assert_eq!(w.report(&id, &lease, &again).await, stored(4, false));
    assert_eq!(
        w.logs(&id).await,
        vec![
            (1, "INFO".into(), "first".into()),
            (4, "INFO".into(), "fourth".into())
        ]
    );
    // Entirely old: acknowledged, nothing written.
    assert_eq!(w.report(&id, &lease, &batch).await, stored(4, false));
    assert_eq!(w.report(&id, &lease, &[]).await, stored(4, false));

    // A gap stops the batch: what follows it waits for a resend.
    assert_eq!(
        w.report(&id, &lease, &[log(6, "sixth")]).await,
        stored(4, false)
    );
    assert_eq!(
        w.report(
            &id,
            &lease,
            &[log(5, "fifth"), log(7, "seventh"), log(8, "eighth")]
        )
        .await,
        stored(5, false)
    );
    assert_eq!(w.logs(&id).await.len(), 3);

    // Progress is clamped to 0..=100; NaN counts as 0.
    assert_eq!(
        w.report(&id, &lease, &[progress(6, 150.0)]).await,
        stored(6, false)
    );
    assert_eq!(w.get(&id).await.progress, 100.0);
    assert_eq!(
        w.report(&id, &lease, &[progress(7, -5.0)]).await,
        stored(7, false)
    );
    assert_eq!(w.get(&id).await.progress, 0.0);
    assert_eq!(
        w.report(&id, &lease, &[progress(8, 42.5)]).await,
        stored(8, false)
    );
    assert_eq!(w.get(&id).await.progress, 42.5);
    assert_eq!(
        w.report(&id, &lease, &[progress(9, f64::NAN)]).await,
        stored(9, false)
    );
    assert_eq!(w.get(&id).await.progress, 0.0);

    // Log lines are data: control characters and escapes read back as sent.
    let raw = "carriage\rreturn \u{1b}[31mred\u{1b}[0m tab\t émoji \u{1F916} 'quote' \"dq\" \\";
    assert_eq!(
        w.report(&id, &lease, &[log(10, raw)]).await,
        stored(10, false)
    );
    assert_eq!(w.logs(&id).await.last().unwrap().2, raw);
    // A NUL does not wedge the execution (PostgreSQL keeps U+FFFD in its place).
    assert_eq!(
        w.report(&id, &lease, &[log(11, "nul\u{0}here")]).await,
        stored(11, false)
    );
    let message = w.logs(&id).await.last().unwrap().2.clone();
    assert!(
        message == "nul\u{0}here" || message == "nul\u{FFFD}here",
        "{message:?}"
    );

    // Only the current lease may report, from its own runtime.
    assert_eq!(
        w.report(&id, "another-lease", &[log(12, "stale")]).await,
        EventsOutcome::Revoked
    );
    let other_runtime = add_runtime(&w.store, &w.org.id, "desk-2").await;
    assert_eq!(
        w.store
            .record_events(&other_runtime.id, &id, &lease, &[log(12, "stale")])
            .await
            .unwrap(),
        EventsOutcome::Revoked
    );
    assert_eq!(w.logs(&id).await.len(), 5);
}

async fn record_events_end_the_execution(store: Arc<dyn Store>) {
    let w = world(store).await;

    // FINISHED: progress 100, end time never before submission.
    let (id, lease) = w.running(1).await;
    assert_eq!(
        w.report(
            &id,
            &lease,
            &[
                log(1, "working"),
                progress(2, 30.0),
                ended(3, 500, ExecutionStatus::Finished, Some(0)),
                log(4, "after the end"),
            ]
        )
        .await,
        stored(3, true)
    );
    let got = w.get(&id).await;
    assert_eq!(got.status, ExecutionStatus::Finished);
    assert_eq!(got.progress, 100.0);
    assert_eq!(got.end, Some(got.init));
    assert_eq!(got.exit_code, Some(0));
    assert_eq!(got.end_reason.as_deref(), Some("ended FINISHED"));
    assert_eq!(w.logs(&id).await.len(), 1);
    // Nothing is stored after the end; resends are acknowledged.
    assert_eq!(
        w.report(&id, &lease, &[log(4, "late")]).await,
        stored(3, false)
    );
    assert_eq!(
        w.report(
            &id,
            &lease,
            &[ended(3, 500, ExecutionStatus::Finished, Some(0))]
        )
        .await,
        stored(3, false)
    );
    assert_eq!(w.logs(&id).await.len(), 1);
    // The ended lease is still known, for an agent that resends after a reconnect.
    assert_eq!(
        w.store.lease_status(&id, &lease).await.unwrap(),
        Some(ExecutionStatus::Finished)
    );
    assert!(w
        .store
        .leases_of_runtime(&w.runtime.id)
        .await
        .unwrap()
        .is_empty());

    // ERROR keeps the progress reached and the exit code.
    let (id, lease) = w.running(1).await;
    assert_eq!(
        w.report(
            &id,
            &lease,
            &[
                progress(1, 70.0),
                ended(2, 9_000, ExecutionStatus::Error, Some(3))
            ]
        )
        .await,
        stored(2, true)
    );
    let got = w.get(&id).await;
    assert_eq!(got.status, ExecutionStatus::Error);
    assert_eq!(got.progress, 70.0);
    assert_eq!(got.end, Some(9_000));
    assert_eq!(got.exit_code, Some(3));

    // Without an exit code (killed by a signal).
    let (id, lease) = w.running(1).await;
    assert_eq!(
        w.report(
            &id,
            &lease,
            &[ended(1, 9_500, ExecutionStatus::Error, None)]
        )
        .await,
        stored(1, true)
    );
    assert_eq!(w.get(&id).await.exit_code, None);
}

async fn concurrent_copies_of_one_report(store: Arc<dyn Store>) {
    let w = Arc::new(world(store).await);
    let (id, lease) = w.running(1).await;
    let events: Vec<EventRecord> = (1..=30)
        .map(|seq| log(seq, &format!("line {seq}")))
        .collect();
    let tasks: Vec<_> = (0..8)
        .map(|copy| {
            let w = w.clone();
            let (id, lease) = (id.clone(), lease.clone());
            // Overlapping copies, as an agent resending after a reconnect would.
            let events = events[..(10 + copy * 3).min(30)].to_vec();
            tokio::spawn(async move { w.report(&id, &lease, &events).await })
        })
        .collect();
    for task in tasks {
        assert!(matches!(
            task.await.unwrap(),
            EventsOutcome::Stored { ended: false, .. }
        ));
    }
    assert_eq!(w.report(&id, &lease, &events).await, stored(30, false));
    let logs = w.logs(&id).await;
    assert_eq!(
        logs.iter().map(|(seq, _, _)| *seq).collect::<Vec<_>>(),
        (1..=30).collect::<Vec<_>>()
    );
}

/// A report of over a thousand lines, as a chatty robot's agent sends: every line
/// is stored once, in order, with its own time and text.
async fn a_long_batch_of_lines_is_stored_whole_and_in_order(store: Arc<dyn Store>) {
    let w = world(store).await;
    let (id, lease) = w.running(1).await;
    let batch: Vec<EventRecord> = (1..=1_100)
        .map(|seq| log(seq, &format!("line {seq}")))
        .collect();
    assert_eq!(
        w.report(&id, &lease, &batch[..700]).await,
        stored(700, false)
    );
    // Sent again from line 600 on, with 400 more: only those are new.
    assert_eq!(
        w.report(&id, &lease, &batch[599..]).await,
        stored(1_100, false)
    );
    let lines = w.store.execution_logs(&w.org.id, &id).await.unwrap();
    assert_eq!(lines.len(), 1_100);
    for (line, seq) in lines.iter().zip(1..) {
        assert_eq!(line.seq, seq);
        assert_eq!(line.time, 5_000 + seq);
        assert_eq!(line.message, format!("line {seq}"));
    }
}

async fn the_log_is_read_by_pages_after_a_cursor(store: Arc<dyn Store>) {
    let w = world(store.clone()).await;
    let (id, lease) = w.running(1).await;
    let batch: Vec<EventRecord> = (1..=5)
        .map(|seq| log(seq, &format!("line {seq}")))
        .collect();
    assert_eq!(w.report(&id, &lease, &batch).await, stored(5, false));
    let page = |after, limit| {
        let store = store.clone();
        let (org, id) = (w.org.id.clone(), id.clone());
        async move {
            store
                .execution_logs_after(&org, &id, after, limit)
                .await
                .unwrap()
                .into_iter()
                .map(|line| (line.seq, line.message))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        page(0, 2).await,
        [(1, "line 1".to_owned()), (2, "line 2".to_owned())]
    );
    assert_eq!(
        page(2, 2).await,
        [(3, "line 3".to_owned()), (4, "line 4".to_owned())]
    );
    assert_eq!(page(4, 2).await, [(5, "line 5".to_owned())]);
    assert!(page(5, 2).await.is_empty());
    let other = organization("other", false, 10);
    let other_admin = user(&other.id, "other-admin", Role::Admin, 10);
    store
        .create_organization(&other, &other_admin, None)
        .await
        .unwrap();
    let theirs = store
        .execution_logs_after(&other.id, &id, 0, 10)
        .await
        .unwrap();
    assert!(theirs.is_empty(), "another organisation reads none of it");
}

/// An execution read with its log gives what the two reads apart give, for an
/// empty log, a short one, one of exactly the lines read together and a longer
/// one; another organisation's execution is not found.
async fn an_execution_is_read_with_its_whole_log(store: Arc<dyn Store>) {
    let w = world(store.clone()).await;
    let (id, lease) = w.running(1).await;
    let together = regente_store::LOG_LINES_READ_TOGETHER as u64;
    let batch: Vec<EventRecord> = (1..=together + 101)
        .map(|seq| log(seq, &format!("line {seq}")))
        .collect();
    let mut sent = 0;
    for upto in [0, 3, together - 1, together, together + 1, together + 101] {
        if upto > sent {
            let report = &batch[sent as usize..upto as usize];
            assert_eq!(w.report(&id, &lease, report).await, stored(upto, false));
            sent = upto;
        }
        let (execution, lines) = store
            .execution_with_logs(&w.org.id, &w.runtime.id, &id)
            .await
            .unwrap();
        assert_eq!(
            execution,
            store.get_execution(&w.org.id, &id).await.unwrap()
        );
        assert_eq!(lines, store.execution_logs(&w.org.id, &id).await.unwrap());
        assert_eq!(
            lines.iter().map(|line| line.seq).collect::<Vec<_>>(),
            (1..=upto as i64).collect::<Vec<_>>(),
            "{upto} lines"
        );
        for line in &lines {
            assert_eq!(line.time, 5_000 + line.seq);
            assert_eq!(line.message, format!("line {}", line.seq));
        }
    }
    let other = other_organization(&store).await;
    let other_runtime = add_runtime(&store, &w.org.id, "desk-2").await;
    for (organization, runtime, execution) in [
        (&other.id, &w.runtime.id, &id),
        (&w.org.id, &w.runtime.id, &"f".repeat(16)),
        // Its own organisation's, on another runtime: as if it did not exist.
        (&w.org.id, &other_runtime.id, &id),
    ] {
        assert!(matches!(
            store
                .execution_with_logs(organization, runtime, execution)
                .await,
            Err(Error::NotFound)
        ));
    }
}
