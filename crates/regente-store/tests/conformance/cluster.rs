//! One database, two servers: restarts, sharing, notices, the secret, leadership.

use crate::fixtures::*;

conformance! {
    store: [
    ],
    url: [
        reopened_and_shared_by_two_servers,
        notices_secret_and_leadership_across_servers,
    ],
}

/// A restart (migrations already applied), and two servers on one database: what
/// one writes the other reads, and claims from both hand out each run once.
async fn reopened_and_shared_by_two_servers(store: Arc<dyn Store>, url: String) {
    let w = world(store).await;
    let queued = w.enqueue(1_000).await;
    let other = regente_store::open(&url)
        .await
        .expect("open the database again");
    assert_eq!(
        other.root_organization().await.unwrap(),
        Some(w.org.clone())
    );
    assert_eq!(
        other.find_user_by_username("admin").await.unwrap(),
        Some(w.admin.clone())
    );
    assert_eq!(
        other.get_execution(&w.org.id, &queued).await.unwrap(),
        w.get(&queued).await
    );

    // Handed out by one, started and reported through the other.
    let claimed = other
        .claim_next(&w.runtime.id, "lease-a")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claimed.execution_id, queued);
    assert!(w
        .store
        .start(&w.runtime.id, &queued, "lease-a", 2_000)
        .await
        .unwrap());
    assert_eq!(
        other
            .record_events(
                &w.runtime.id,
                &queued,
                "lease-a",
                &[
                    log(1, "one"),
                    ended(2, 3_000, ExecutionStatus::Finished, Some(0))
                ]
            )
            .await
            .unwrap(),
        stored(2, true)
    );
    assert_eq!(w.get(&queued).await.status, ExecutionStatus::Finished);
    assert_eq!(w.logs(&queued).await.len(), 1);

    // Both claim from one queue at once.
    let mut ids = HashSet::new();
    for i in 0..60 {
        ids.insert(w.enqueue(4_000 + i).await);
    }
    let stores = [w.store.clone(), other.clone()];
    let claimers: Vec<_> = (0..6)
        .map(|claimer| {
            let store = stores[claimer % 2].clone();
            let runtime_id = w.runtime.id.clone();
            tokio::spawn(async move {
                let mut claimed = Vec::new();
                loop {
                    let lease = format!("server-{claimer}-{}", claimed.len());
                    match store.claim_next(&runtime_id, &lease).await.unwrap() {
                        Some(c) => claimed.push(c.execution_id),
                        None => break claimed,
                    }
                }
            })
        })
        .collect();
    let mut all = Vec::new();
    for claimer in claimers {
        all.extend(claimer.await.unwrap());
    }
    assert_eq!(all.len(), ids.len(), "each run handed out once");
    assert_eq!(all.into_iter().collect::<HashSet<_>>(), ids);
}

/// Servers sharing a database share the token secret, hear each other's notices, and exactly one of them
/// leads at a time, the next taking over when the leader goes. An embedded store
/// is never shared: no notices, and its one server always leads.
async fn notices_secret_and_leadership_across_servers(store: Arc<dyn Store>, url: String) {
    let other = regente_store::open(&url)
        .await
        .expect("open the database again");
    // The first server's secret is everybody's.
    let first = store.shared_secret(b"first server's secret").await.unwrap();
    let second = other
        .shared_secret(b"second server's secret")
        .await
        .unwrap();
    assert_eq!(first, second);
    let Some(mut heard) = other.notices() else {
        assert_eq!(first, None, "an unshared store keeps no secret");
        assert!(store.notices().is_none());
        assert!(store.lead().await.unwrap());
        store.publish(&Notice::Resync).await.unwrap();
        return;
    };
    assert_eq!(first.as_deref(), Some(&b"first server's secret"[..]));
    let notice = Notice::Cancel {
        runtime_id: "0123456789abcdef".into(),
        execution_id: "fedcba9876543210".into(),
        lease: "lease \"quoted\" ção".into(),
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    // The listener may start after the first publish: publish until heard.
    'heard: loop {
        store.publish(&notice).await.unwrap();
        while let Ok(Ok(received)) =
            tokio::time::timeout(std::time::Duration::from_millis(200), heard.recv()).await
        {
            if received == notice {
                break 'heard;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the notice never arrived"
        );
    }
    // A replaced runtime key is told to the other servers too.
    let rekeyed = Notice::RuntimeKeyChanged {
        runtime_id: "0123456789abcdef".into(),
    };
    store.publish(&rekeyed).await.unwrap();
    loop {
        match tokio::time::timeout(std::time::Duration::from_secs(10), heard.recv()).await {
            Ok(Ok(received)) if received == rekeyed => break,
            Ok(Ok(_)) => continue,
            other => panic!("the key notice never arrived: {other:?}"),
        }
    }
    assert!(store.lead().await.unwrap(), "the first to ask leads");
    assert!(store.lead().await.unwrap(), "and keeps leading");
    assert!(!other.lead().await.unwrap(), "only one leads");
    drop(store);
    loop {
        if other.lead().await.unwrap() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline + std::time::Duration::from_secs(10),
            "nobody took over when the leader went"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
