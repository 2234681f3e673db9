//! The audit log: a record is committed with its change, or not at all.

use regente_store::{AuditEntry, AuditFilter, AuditRecord};

use crate::fixtures::*;

conformance! {
    store: [
        a_record_commits_with_its_change_and_only_then,
        records_read_newest_first_by_filter_and_page,
        records_are_pruned_by_age,
        an_api_key_change_commits_its_record_and_only_then,
    ],
}

fn entry(organization_id: &str, action: &str, object_id: &str, time: Millis) -> AuditEntry {
    AuditEntry {
        organization_id: organization_id.to_owned(),
        time,
        actor_id: "00000000000000aa".into(),
        actor_name: "alice".into(),
        action: action.into(),
        object_type: action.split('.').next().unwrap().into(),
        object_id: object_id.into(),
        address: Some("127.0.0.1".into()),
        summary: json!({"name": object_id}),
    }
}

async fn records(store: &Arc<dyn Store>, organization_id: &str) -> Vec<AuditRecord> {
    store
        .audit_records(
            organization_id,
            &AuditFilter {
                limit: 200,
                ..AuditFilter::default()
            },
        )
        .await
        .unwrap()
}

async fn actions(store: &Arc<dyn Store>, organization_id: &str) -> Vec<String> {
    let mut actions: Vec<String> = records(store, organization_id)
        .await
        .into_iter()
        .map(|record| record.entry.action)
        .collect();
    actions.reverse();
    actions
}

async fn a_record_commits_with_its_change_and_only_then(store: Arc<dyn Store>) {
    let w = world(store.clone()).await;
    let org = &w.org.id;

    // A change that commits writes its record, as given.
    let erp = user(org, "erp", Role::Integration, 20);
    let created = entry(org, "user.create", &erp.id, 20);
    store.create_user(&erp, Some(&created)).await.unwrap();
    let stored = records(&store, org).await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].entry, created);

    // Refused changes write none: a name taken, an unknown id, a stale version.
    let clash = user(org, "erp", Role::Admin, 21);
    let refused = entry(org, "user.create.refused", &clash.id, 21);
    assert!(is_conflict(store.create_user(&clash, Some(&refused)).await));
    let missing = entry(org, "user.delete.missing", "ffffffffffffffff", 22);
    assert!(is_not_found(
        store
            .delete_user(org, "ffffffffffffffff", Some(&missing))
            .await
    ));
    let gone_runtime = entry(org, "runtime.rename.missing", "ffffffffffffffff", 23);
    assert!(is_not_found(
        store
            .rename_runtime(org, "ffffffffffffffff", "x", Some(&gone_runtime))
            .await
    ));
    assert_eq!(actions(&store, org).await, ["user.create"]);

    // A change to what is already there changes nothing and writes none.
    let same_role = entry(org, "user.set_role.same", &erp.id, 24);
    store
        .set_user_role(org, &erp.id, Role::Integration, Some(&same_role))
        .await
        .unwrap();
    let same_name = entry(org, "runtime.rename.same", &w.runtime.id, 25);
    store
        .rename_runtime(org, &w.runtime.id, &w.runtime.name, Some(&same_name))
        .await
        .unwrap();
    assert_eq!(actions(&store, org).await, ["user.create"]);

    // A deletion refused for being online or busy writes none; one done does.
    let execution = w.enqueue(30).await;
    let busy = entry(org, "runtime.delete.busy", &w.runtime.id, 31);
    assert_eq!(
        store
            .delete_runtime(org, &w.runtime.id, 31, Some(&busy))
            .await
            .unwrap(),
        RuntimeDeletion::Busy
    );
    // A cancel writes its record; a second cancel of the ended run does not.
    let cancel = entry(org, "execution.cancel", &execution, 32);
    store
        .cancel(org, &execution, &w.admin.id, 32, Some(&cancel))
        .await
        .unwrap();
    let again = entry(org, "execution.cancel.again", &execution, 33);
    assert!(matches!(
        store
            .cancel(org, &execution, &w.admin.id, 33, Some(&again))
            .await
            .unwrap(),
        CancelOutcome::AlreadyEnded(ExecutionStatus::Canceled)
    ));
    let deleted = entry(org, "runtime.delete", &w.runtime.id, 34);
    assert_eq!(
        store
            .delete_runtime(org, &w.runtime.id, 34, Some(&deleted))
            .await
            .unwrap(),
        RuntimeDeletion::Deleted
    );
    assert_eq!(
        actions(&store, org).await,
        ["user.create", "execution.cancel", "runtime.delete"]
    );

    // A new version's record names the object and the version the store made.
    let upload = entry(org, "robot.upload", "", 40);
    let (robot_id, version) = store
        .add_robot_version(
            &robot_upload(org, "invoices", b"PK\x03\x04v2".to_vec()),
            Some(&upload),
        )
        .await
        .unwrap();
    let newest = records(&store, org).await.remove(0).entry;
    assert_eq!(newest.object_id, robot_id);
    assert_eq!(newest.summary, json!({"name": "", "version": version}));

    // A record written alone, with no change.
    let failed = AuditEntry {
        address: None,
        ..entry(org, "auth.login_failed", "nobody", 50)
    };
    store.record_audit(&failed).await.unwrap();
    assert_eq!(records(&store, org).await[0].entry, failed);

    // Another organisation sees none of them.
    let other = organization("other", false, 60);
    store
        .create_organization(&other, &user(&other.id, "boss", Role::Admin, 60), None)
        .await
        .unwrap();
    assert!(records(&store, &other.id).await.is_empty());
}

async fn an_api_key_change_commits_its_record_and_only_then(store: Arc<dyn Store>) {
    let w = world(store.clone()).await;
    let org = &w.org.id;
    let erp = crate::api_keys::api_key(org, "erp", Role::Integration, 10);
    let created = entry(org, "api_key.create", &erp.id, 10);
    store
        .create_api_key(&erp, "hash-erp", Some(&created))
        .await
        .unwrap();
    // A name taken: refused, no record.
    let clash = crate::api_keys::api_key(org, "erp", Role::Admin, 11);
    let refused = entry(org, "api_key.create.refused", &clash.id, 11);
    assert!(is_conflict(
        store
            .create_api_key(&clash, "hash-clash", Some(&refused))
            .await
    ));
    // Revoked: recorded once; a second revoke and an unknown key change nothing.
    let revoked = entry(org, "api_key.revoke", &erp.id, 12);
    store
        .revoke_api_key(org, &erp.id, 12, Some(&revoked))
        .await
        .unwrap();
    let again = entry(org, "api_key.revoke.again", &erp.id, 13);
    let kept = store
        .revoke_api_key(org, &erp.id, 13, Some(&again))
        .await
        .unwrap();
    assert_eq!(kept.revoked_at, Some(12));
    let missing = entry(org, "api_key.revoke.missing", "ffffffffffffffff", 14);
    assert!(is_not_found(
        store
            .revoke_api_key(org, "ffffffffffffffff", 14, Some(&missing))
            .await
    ));
    assert_eq!(
        actions(&store, org).await,
        ["api_key.create", "api_key.revoke"]
    );
    assert_eq!(records(&store, org).await[0].entry, revoked);
}

async fn records_read_newest_first_by_filter_and_page(store: Arc<dyn Store>) {
    let org = organization("acme", true, 10);
    store
        .create_organization(&org, &user(&org.id, "admin", Role::Admin, 10), None)
        .await
        .unwrap();
    for n in 0..5 {
        let action = if n % 2 == 0 {
            "schedule.pause"
        } else {
            "user.create"
        };
        let mut record = entry(&org.id, action, &format!("object-{n}"), 100 + n);
        if n == 4 {
            record.actor_id = "schedule:0000000000000001".into();
            record.actor_name = "schedule:0000000000000001".into();
        }
        store.record_audit(&record).await.unwrap();
    }
    let read = |filter: AuditFilter| {
        let store = store.clone();
        let org = org.id.clone();
        async move {
            store
                .audit_records(&org, &filter)
                .await
                .unwrap()
                .into_iter()
                .map(|r| r.entry.object_id)
                .collect::<Vec<_>>()
        }
    };
    let all = AuditFilter {
        limit: 200,
        ..AuditFilter::default()
    };
    assert_eq!(
        read(all.clone()).await,
        ["object-4", "object-3", "object-2", "object-1", "object-0"]
    );
    let by = |f: fn(&mut AuditFilter)| {
        let mut filter = all.clone();
        f(&mut filter);
        filter
    };
    assert_eq!(
        read(by(|f| f.action = Some("schedule.pause".into()))).await,
        ["object-4", "object-2", "object-0"]
    );
    // The actor by id or by name.
    assert_eq!(
        read(by(|f| f.actor = Some("alice".into()))).await,
        ["object-3", "object-2", "object-1", "object-0"]
    );
    assert_eq!(
        read(by(|f| f.actor = Some("00000000000000aa".into())))
            .await
            .len(),
        4
    );
    assert_eq!(
        read(by(|f| f.actor = Some("schedule:0000000000000001".into()))).await,
        ["object-4"]
    );
    assert_eq!(
        read(by(|f| {
            f.object_type = Some("user".into());
            f.object_id = Some("object-3".into());
        }))
        .await,
        ["object-3"]
    );
    assert_eq!(
        read(by(|f| {
            f.from = Some(101);
            f.to = Some(103);
        }))
        .await,
        ["object-2", "object-1"]
    );
    // Pages: the newest two, then the two before the last one read.
    let first = store
        .audit_records(
            &org.id,
            &AuditFilter {
                limit: 2,
                ..all.clone()
            },
        )
        .await
        .unwrap();
    assert_eq!(first.len(), 2);
    let next = read(AuditFilter {
        limit: 2,
        before_seq: Some(first[1].seq),
        ..all.clone()
    })
    .await;
    assert_eq!(next, ["object-2", "object-1"]);
}

async fn records_are_pruned_by_age(store: Arc<dyn Store>) {
    let org = "0000000000000001";
    for time in [10, 20, 30] {
        store
            .record_audit(&entry(org, "user.create", &format!("at-{time}"), time))
            .await
            .unwrap();
    }
    assert_eq!(store.prune_audit(25).await.unwrap(), 2);
    let left = records(&store, org).await;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].entry.object_id, "at-30");
}
