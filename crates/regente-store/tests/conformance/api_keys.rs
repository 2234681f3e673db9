//! Organisation API keys: found by hash, scoped to their organisation, names
//! unique among keys not revoked, uses recorded at most once per interval.

use regente_store::ApiKey;

use crate::fixtures::*;

conformance! {
    store: [
        keys_are_found_by_hash_and_scoped_to_their_organisation,
        a_revoked_key_frees_its_name,
        a_use_is_recorded_once_per_interval,
    ],
}

pub(crate) fn api_key(organization_id: &str, name: &str, role: Role, created_at: Millis) -> ApiKey {
    ApiKey {
        id: new_id(),
        organization_id: organization_id.to_owned(),
        name: name.to_owned(),
        role,
        prefix: "AbCd1234".to_owned(),
        created_by: "0000000000000001".to_owned(),
        created_at,
        last_used_at: None,
        expires_at: Some(created_at + 60_000),
        revoked_at: None,
    }
}

async fn two_organisations(store: &Arc<dyn Store>) -> (Organization, Organization) {
    let (one, two) = (organization("one", true, 1), organization("two", false, 2));
    store
        .create_organization(&one, &user(&one.id, "admin-one", Role::Admin, 1), None)
        .await
        .unwrap();
    store
        .create_organization(&two, &user(&two.id, "admin-two", Role::Admin, 2), None)
        .await
        .unwrap();
    (one, two)
}

async fn keys_are_found_by_hash_and_scoped_to_their_organisation(store: Arc<dyn Store>) {
    let (one, two) = two_organisations(&store).await;
    let erp = api_key(&one.id, "erp", Role::Integration, 10);
    let ops = api_key(&one.id, "ops", Role::Admin, 11);
    let theirs = api_key(&two.id, "erp", Role::Admin, 12);
    store.create_api_key(&erp, "hash-erp", None).await.unwrap();
    store.create_api_key(&ops, "hash-ops", None).await.unwrap();
    store
        .create_api_key(&theirs, "hash-theirs", None)
        .await
        .unwrap();

    assert_eq!(
        store.find_api_key_by_hash("hash-erp").await.unwrap(),
        Some(erp.clone())
    );
    assert_eq!(
        store.find_api_key_by_hash("hash-theirs").await.unwrap(),
        Some(theirs.clone())
    );
    assert_eq!(store.find_api_key_by_hash("no-such").await.unwrap(), None);
    assert_eq!(
        store.list_api_keys(&one.id).await.unwrap(),
        vec![erp.clone(), ops.clone()]
    );
    assert_eq!(
        store.list_api_keys(&two.id).await.unwrap(),
        vec![theirs.clone()]
    );
    assert_eq!(store.get_api_key(&one.id, &erp.id).await.unwrap(), erp);

    // Another organisation's key is unknown here, for reads and revokes alike.
    assert!(is_not_found(store.get_api_key(&one.id, &theirs.id).await));
    assert!(is_not_found(
        store.revoke_api_key(&one.id, &theirs.id, 20, None).await
    ));
    assert_eq!(
        store
            .get_api_key(&two.id, &theirs.id)
            .await
            .unwrap()
            .revoked_at,
        None
    );

    // A revoke answers the key; a second keeps the first one's time.
    let revoked = store
        .revoke_api_key(&one.id, &erp.id, 30, None)
        .await
        .unwrap();
    assert_eq!(revoked.revoked_at, Some(30));
    let again = store
        .revoke_api_key(&one.id, &erp.id, 40, None)
        .await
        .unwrap();
    assert_eq!(again.revoked_at, Some(30));
    assert_eq!(
        store.find_api_key_by_hash("hash-erp").await.unwrap(),
        Some(again)
    );
}

async fn a_revoked_key_frees_its_name(store: Arc<dyn Store>) {
    let (one, two) = two_organisations(&store).await;
    let first = api_key(&one.id, "erp", Role::Integration, 10);
    store.create_api_key(&first, "hash-1", None).await.unwrap();
    // Taken in this organisation, free in another.
    let clash = api_key(&one.id, "erp", Role::Admin, 11);
    assert!(is_conflict(
        store.create_api_key(&clash, "hash-2", None).await
    ));
    let elsewhere = api_key(&two.id, "erp", Role::Admin, 11);
    store
        .create_api_key(&elsewhere, "hash-3", None)
        .await
        .unwrap();

    store
        .revoke_api_key(&one.id, &first.id, 12, None)
        .await
        .unwrap();
    let second = api_key(&one.id, "erp", Role::Admin, 13);
    store.create_api_key(&second, "hash-4", None).await.unwrap();
    let names: Vec<_> = store
        .list_api_keys(&one.id)
        .await
        .unwrap()
        .into_iter()
        .map(|key| (key.name, key.revoked_at))
        .collect();
    assert_eq!(
        names,
        vec![("erp".to_owned(), Some(12)), ("erp".to_owned(), None)]
    );
}

async fn a_use_is_recorded_once_per_interval(store: Arc<dyn Store>) {
    let (one, _) = two_organisations(&store).await;
    let key = api_key(&one.id, "erp", Role::Integration, 10);
    store.create_api_key(&key, "hash", None).await.unwrap();
    let last_used = || async {
        store
            .get_api_key(&one.id, &key.id)
            .await
            .unwrap()
            .last_used_at
    };
    store
        .touch_api_key(&key.id, 1_000, 1_000 - 60_000)
        .await
        .unwrap();
    assert_eq!(last_used().await, Some(1_000));
    // Within the interval: kept.
    store
        .touch_api_key(&key.id, 30_000, 30_000 - 60_000)
        .await
        .unwrap();
    assert_eq!(last_used().await, Some(1_000));
    // Past it: moved.
    store
        .touch_api_key(&key.id, 62_000, 62_000 - 60_000)
        .await
        .unwrap();
    assert_eq!(last_used().await, Some(62_000));
    // An unknown key: nothing to record, no error.
    store
        .touch_api_key("ffffffffffffffff", 70_000, 0)
        .await
        .unwrap();
}
