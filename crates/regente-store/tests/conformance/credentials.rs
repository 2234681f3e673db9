//! The credentials vault: credentials, sealed values in versions, key checks,
//! rotation's reads and compare-and-set writes, and a start refused for want of
//! a credential.

use crate::fixtures::*;
use regente_store::{CredentialWrite, SealedValue, StoredValue, VaultKey};

conformance! {
    store: [
        credentials_in_versions,
        credentials_stay_in_their_organization,
        rotation_reads_and_reseals,
        secret_variables_are_found_and_resealed,
        vault_keys_are_kept_once,
        a_refused_start_ends_the_run,
    ],
}

fn sealed(field: &str, key_id: &str, byte: u8) -> SealedValue {
    SealedValue {
        field: field.into(),
        key_id: key_id.into(),
        nonce: vec![byte; 24],
        ciphertext: (0..=255u8).map(|b| b ^ byte).collect(),
    }
}

fn write(w: &World, name: &str, values: Vec<SealedValue>) -> CredentialWrite {
    CredentialWrite {
        id: new_id(),
        organization_id: w.org.id.clone(),
        name: name.into(),
        description: Some("robot user".into()),
        robots: Some(vec![w.robot_id.clone()]),
        version: 1,
        values,
        by: w.admin.id.clone(),
        at: 1_000,
    }
}

async fn credentials_in_versions(store: Arc<dyn Store>) {
    let w = world(store).await;
    let mut erp = write(
        &w,
        "erp",
        vec![sealed("username", "k1", 1), sealed("password", "k1", 2)],
    );
    w.store.create_credential(&erp, None).await.unwrap();
    let mut twin = write(&w, "erp", vec![sealed("password", "k1", 3)]);
    assert!(is_conflict(w.store.create_credential(&twin, None).await));
    twin.name = "bank".into();
    twin.robots = None;
    twin.description = None;
    w.store.create_credential(&twin, None).await.unwrap();

    let got = w.store.get_credential(&w.org.id, &erp.id).await.unwrap();
    assert_eq!(got.name, "erp");
    assert_eq!(got.fields, ["password", "username"]);
    assert_eq!(got.robots, Some(vec![w.robot_id.clone()]));
    assert_eq!(got.description.as_deref(), Some("robot user"));
    assert_eq!(
        (got.version, got.created_at, got.updated_at),
        (1, 1_000, 1_000)
    );
    let listed = w.store.list_credentials(&w.org.id).await.unwrap();
    let names: Vec<_> = listed.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["bank", "erp"]);
    assert_eq!(listed[0].robots, None);
    assert_eq!(listed[0].fields, ["password"]);

    // A replacement is the next version; a stale one is refused.
    erp.version = 2;
    erp.values = vec![sealed("password", "k1", 9)];
    erp.robots = None;
    erp.at = 2_000;
    w.store.replace_credential(&erp, None).await.unwrap();
    assert!(is_conflict(w.store.replace_credential(&erp, None).await));
    let sealed_now = w.store.sealed_credential(&w.org.id, "erp").await.unwrap();
    assert_eq!(sealed_now.credential.version, 2);
    assert_eq!(sealed_now.credential.robots, None);
    assert_eq!(
        (
            sealed_now.credential.created_at,
            sealed_now.credential.updated_at
        ),
        (1_000, 2_000)
    );
    assert_eq!(sealed_now.values, vec![sealed("password", "k1", 9)]);
    assert_eq!(sealed_now.credential.fields, ["password"]);

    w.store
        .delete_credential(&w.org.id, &erp.id, None)
        .await
        .unwrap();
    assert!(is_not_found(
        w.store.get_credential(&w.org.id, &erp.id).await
    ));
    assert!(is_not_found(
        w.store.sealed_credential(&w.org.id, "erp").await
    ));
    assert!(is_not_found(
        w.store.delete_credential(&w.org.id, &erp.id, None).await
    ));
    erp.version = 3;
    assert!(is_not_found(w.store.replace_credential(&erp, None).await));
    // Deleted, its name is free again.
    erp.id = new_id();
    erp.version = 1;
    w.store.create_credential(&erp, None).await.unwrap();
}

async fn credentials_stay_in_their_organization(store: Arc<dyn Store>) {
    let w = world(store).await;
    let other = organization("other", false, 10);
    w.store
        .create_organization(&other, &user(&other.id, "admin2", Role::Admin, 10), None)
        .await
        .unwrap();
    let erp = write(&w, "erp", vec![sealed("password", "k1", 1)]);
    w.store.create_credential(&erp, None).await.unwrap();
    assert!(is_not_found(
        w.store.get_credential(&other.id, &erp.id).await
    ));
    assert!(is_not_found(
        w.store.sealed_credential(&other.id, "erp").await
    ));
    assert!(w
        .store
        .list_credentials(&other.id)
        .await
        .unwrap()
        .is_empty());
    assert!(is_not_found(
        w.store.delete_credential(&other.id, &erp.id, None).await
    ));
    let mut moved = erp.clone();
    moved.organization_id = other.id.clone();
    moved.version = 2;
    assert!(is_not_found(w.store.replace_credential(&moved, None).await));
    // The same name in another organisation is another credential.
    let mut theirs = erp.clone();
    theirs.id = new_id();
    theirs.organization_id = other.id.clone();
    w.store.create_credential(&theirs, None).await.unwrap();
    assert_eq!(
        w.store
            .get_credential(&w.org.id, &erp.id)
            .await
            .unwrap()
            .version,
        1
    );
}

async fn rotation_reads_and_reseals(store: Arc<dyn Store>) {
    let w = world(store).await;
    assert!(!w.store.vault_holds_values().await.unwrap());
    let erp = write(
        &w,
        "erp",
        vec![sealed("username", "old", 1), sealed("password", "old", 2)],
    );
    w.store.create_credential(&erp, None).await.unwrap();
    assert!(w.store.vault_holds_values().await.unwrap());
    let page = w.store.values_not_under("new", 1).await.unwrap();
    assert_eq!(page.len(), 1);
    let all = w.store.values_not_under("new", 10).await.unwrap();
    assert_eq!(all.len(), 2);
    assert!(w
        .store
        .values_not_under("old", 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(all[0].credential_id, erp.id);
    assert_eq!(
        (all[0].version, all[0].organization_id.as_str()),
        (1, w.org.id.as_str())
    );

    // A value replaced meanwhile (a new version) is not overwritten.
    let stale = StoredValue {
        version: 0,
        ..all[0].clone()
    };
    let changes: Vec<(StoredValue, SealedValue)> = vec![
        (stale, sealed(&all[0].value.field, "new", 7)),
        (all[1].clone(), sealed(&all[1].value.field, "new", 8)),
    ];
    assert_eq!(w.store.reseal_values(&changes).await.unwrap(), 1);
    let left = w.store.values_not_under("new", 10).await.unwrap();
    assert_eq!(left, vec![all[0].clone()]);
    let fresh = w.store.sealed_credential(&w.org.id, "erp").await.unwrap();
    assert!(fresh
        .values
        .contains(&sealed(&all[1].value.field, "new", 8)));
}

async fn secret_variables_are_found_and_resealed(store: Arc<dyn Store>) {
    let w = world(store).await;
    let plain = w.enqueue(1_000).await;
    let mut new = w.execution(&w.runtime.id, 2_000, 1);
    new.variables = json!({"N": 1, "PASSWORD": {"$secret": "v1.old.AAAA.BBBB"}});
    w.store.enqueue(&new, None).await.unwrap();
    assert!(w.store.vault_holds_values().await.unwrap());
    let found = w.store.sealed_variables_not_under("new", 10).await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].execution_id, new.id);
    assert_ne!(found[0].execution_id, plain);
    assert_eq!(found[0].variables, new.variables);
    assert!(w
        .store
        .sealed_variables_not_under("old", 10)
        .await
        .unwrap()
        .is_empty());
    let resealed = json!({"N": 1, "PASSWORD": {"$secret": "v1.new.CCCC.DDDD"}});
    assert!(w
        .store
        .reseal_variables(&found[0], &resealed)
        .await
        .unwrap());
    // Compare-and-set: what was read is gone now.
    assert!(!w
        .store
        .reseal_variables(&found[0], &resealed)
        .await
        .unwrap());
    assert!(w
        .store
        .sealed_variables_not_under("new", 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(w.get(&new.id).await.variables, resealed);
}

async fn vault_keys_are_kept_once(store: Arc<dyn Store>) {
    assert!(store.vault_keys().await.unwrap().is_empty());
    let first = VaultKey {
        key_id: "k1".into(),
        check_value: vec![0, 255, 1],
        created_at: 10,
    };
    store.add_vault_key(&first).await.unwrap();
    store
        .add_vault_key(&VaultKey {
            check_value: vec![9],
            ..first.clone()
        })
        .await
        .unwrap();
    let second = VaultKey {
        key_id: "k2".into(),
        check_value: vec![2],
        created_at: 20,
    };
    store.add_vault_key(&second).await.unwrap();
    assert_eq!(
        store.vault_keys().await.unwrap(),
        vec![first.clone(), second.clone()]
    );
    store.remove_vault_key("k1").await.unwrap();
    assert_eq!(store.vault_keys().await.unwrap(), vec![second]);
}

async fn a_refused_start_ends_the_run(store: Arc<dyn Store>) {
    let w = world(store).await;
    let first = w.enqueue(1_000).await;
    let (claimed, lease) = w.claim().await;
    assert_eq!(claimed, first);
    let reason = "credential \"erp\" does not exist";
    assert_eq!(
        w.store
            .refuse_start(&first, "another-lease", reason, 3_000)
            .await
            .unwrap(),
        LostOutcome::Stale
    );
    assert_eq!(
        w.store
            .refuse_start(&first, &lease, reason, 3_000)
            .await
            .unwrap(),
        LostOutcome::Ended(ExecutionStatus::Error)
    );
    let got = w.get(&first).await;
    assert_eq!(got.status, ExecutionStatus::Error);
    assert_eq!(got.end_reason.as_deref(), Some(reason));
    assert_eq!(
        w.logs(&first).await,
        vec![(1, "ERROR".into(), reason.into())]
    );
    assert!(!w
        .store
        .start(&w.runtime.id, &first, &lease, 3_100)
        .await
        .unwrap());
    assert!(w
        .store
        .claim_next(&w.runtime.id, "again")
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        w.store
            .refuse_start(&first, &lease, reason, 3_200)
            .await
            .unwrap(),
        LostOutcome::Stale
    );

    // A started run is not refused.
    let (running, lease) = w.running(1).await;
    assert_eq!(
        w.store
            .refuse_start(&running, &lease, reason, 4_000)
            .await
            .unwrap(),
        LostOutcome::Stale
    );
    assert_eq!(w.get(&running).await.status, ExecutionStatus::Running);
}
