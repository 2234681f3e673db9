//! Runtimes.

use crate::fixtures::*;

conformance! {
    store: [
        runtimes,
        rename_and_delete_runtimes,
    ],
}

async fn runtimes(store: Arc<dyn Store>) {
    let org = organization("acme", true, 10);
    store
        .create_organization(&org, &user(&org.id, "admin", Role::Admin, 10), None)
        .await
        .unwrap();
    let other = other_organization(&store).await;

    let first = new_runtime(&org.id, "desk-1", 30);
    let second = new_runtime(&org.id, "desk-2", 31);
    store.create_runtime(&first, None).await.unwrap();
    store.create_runtime(&second, None).await.unwrap();
    assert_eq!(
        store.get_runtime(&org.id, &first.runtime.id).await.unwrap(),
        first.runtime
    );
    assert!(is_not_found(
        store.get_runtime(&other.id, &first.runtime.id).await
    ));
    assert!(store
        .runtime_exists(&org.id, &first.runtime.id)
        .await
        .unwrap());
    assert!(!store
        .runtime_exists(&other.id, &first.runtime.id)
        .await
        .unwrap());
    assert!(!store.runtime_exists(&org.id, "no-such").await.unwrap());
    assert_eq!(
        store
            .find_runtime_by_key_hash(&second.key_hash)
            .await
            .unwrap(),
        Some(second.runtime.clone())
    );
    assert_eq!(
        store
            .find_runtime_by_key_hash("no-such-hash")
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store.list_runtimes(&org.id).await.unwrap(),
        vec![first.runtime.clone(), second.runtime.clone()]
    );
    assert_eq!(store.list_runtimes(&other.id).await.unwrap(), vec![]);

    // A key hash identifies one runtime.
    let mut clash = new_runtime(&other.id, "desk-3", 32);
    clash.key_hash = first.key_hash.clone();
    assert!(is_conflict(store.create_runtime(&clash, None).await));

    // A new key: the old one finds the runtime no more, the new one does;
    // another organisation's admin cannot change it.
    let rekeyed = "f".repeat(64);
    store
        .replace_runtime_key(&org.id, &second.runtime.id, &rekeyed, None)
        .await
        .unwrap();
    assert_eq!(
        store
            .find_runtime_by_key_hash(&second.key_hash)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store.find_runtime_by_key_hash(&rekeyed).await.unwrap(),
        Some(second.runtime.clone())
    );
    assert!(is_not_found(
        store
            .replace_runtime_key(&other.id, &second.runtime.id, &"e".repeat(64), None)
            .await
    ));
    assert!(is_not_found(
        store
            .replace_runtime_key(&org.id, "0123456789abcdef", &"e".repeat(64), None)
            .await
    ));
    assert_eq!(
        store.find_runtime_by_key_hash(&rekeyed).await.unwrap(),
        Some(second.runtime.clone())
    );
    assert!(is_conflict(
        store
            .replace_runtime_key(&org.id, &second.runtime.id, &first.key_hash, None)
            .await
    ));

    // last_seen only moves forward.
    let id = &first.runtime.id;
    store.touch_runtime(id, 1_000).await.unwrap();
    assert_eq!(
        store.get_runtime(&org.id, id).await.unwrap().last_seen,
        Some(1_000)
    );
    store.touch_runtime(id, 500).await.unwrap();
    assert_eq!(
        store.get_runtime(&org.id, id).await.unwrap().last_seen,
        Some(1_000)
    );
    store.touch_runtime(id, 2_000).await.unwrap();
    assert_eq!(
        store.get_runtime(&org.id, id).await.unwrap().last_seen,
        Some(2_000)
    );
    assert_eq!(
        store
            .get_runtime(&org.id, &second.runtime.id)
            .await
            .unwrap()
            .last_seen,
        None
    );
}

async fn rename_and_delete_runtimes(store: Arc<dyn Store>) {
    let w = world(store.clone()).await;
    let org = &w.org.id;
    store
        .rename_runtime(org, &w.runtime.id, "desk-renamed", None)
        .await
        .unwrap();
    assert_eq!(
        store.get_runtime(org, &w.runtime.id).await.unwrap().name,
        "desk-renamed"
    );
    let other = organization("other", false, 10);
    let other_admin = user(&other.id, "other-admin", Role::Admin, 10);
    store
        .create_organization(&other, &other_admin, None)
        .await
        .unwrap();
    assert!(is_not_found(
        store
            .rename_runtime(&other.id, &w.runtime.id, "x", None)
            .await
    ));
    assert!(is_not_found(
        store
            .delete_runtime(&other.id, &w.runtime.id, 50, None)
            .await
    ));

    // Online, then busy: refused; offline and idle: deleted.
    assert!(store
        .runtime_connected(&w.runtime.id, "session-1", 30)
        .await
        .unwrap());
    assert_eq!(
        store
            .delete_runtime(org, &w.runtime.id, 40, None)
            .await
            .unwrap(),
        RuntimeDeletion::Online
    );
    assert!(store
        .runtime_disconnected(&w.runtime.id, "session-1", "gone", 41)
        .await
        .unwrap());
    let queued = w.enqueue(42).await;
    assert_eq!(
        store
            .delete_runtime(org, &w.runtime.id, 43, None)
            .await
            .unwrap(),
        RuntimeDeletion::Busy
    );
    store
        .cancel(org, &queued, &w.admin.id, 44, None)
        .await
        .unwrap();
    assert_eq!(
        store
            .delete_runtime(org, &w.runtime.id, 45, None)
            .await
            .unwrap(),
        RuntimeDeletion::Deleted
    );
    assert!(is_not_found(store.get_runtime(org, &w.runtime.id).await));
    assert!(!store.runtime_exists(org, &w.runtime.id).await.unwrap());
    assert!(store.list_runtimes(org).await.unwrap().is_empty());
    assert!(is_not_found(
        store
            .rename_runtime(org, &w.runtime.id, "again", None)
            .await
    ));
    assert!(is_not_found(
        store.delete_runtime(org, &w.runtime.id, 46, None).await
    ));
    // Its executions still name it.
    assert_eq!(w.get(&queued).await.runtime_id, w.runtime.id);

    // A deleted runtime's key no longer finds it.
    let extra = new_runtime(org, "extra", 20);
    store.create_runtime(&extra, None).await.unwrap();
    assert!(store
        .find_runtime_by_key_hash(&extra.key_hash)
        .await
        .unwrap()
        .is_some());
    assert_eq!(
        store
            .delete_runtime(org, &extra.runtime.id, 47, None)
            .await
            .unwrap(),
        RuntimeDeletion::Deleted
    );
    assert_eq!(
        store
            .find_runtime_by_key_hash(&extra.key_hash)
            .await
            .unwrap(),
        None
    );
}
