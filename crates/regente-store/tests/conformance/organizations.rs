//! Organisations and their users.

use crate::fixtures::*;

conformance! {
    store: [
        organizations_and_users,
        a_password_is_replaced,
        set_user_role_within_the_organisation,
    ],
}

// ---------------------------------------------------------------------------
// Organisations, users, runtimes, robots.

async fn organizations_and_users(store: Arc<dyn Store>) {
    assert_eq!(store.root_organization().await.unwrap(), None);
    assert_eq!(store.count_users().await.unwrap(), 0);

    let root = organization("root", true, 10);
    let admin = user(&root.id, "admin", Role::Admin, 10);
    store
        .create_organization(&root, &admin, None)
        .await
        .unwrap();
    assert_eq!(store.root_organization().await.unwrap(), Some(root.clone()));
    assert_eq!(store.get_organization(&root.id).await.unwrap(), root);
    assert!(is_not_found(
        store.get_organization("ffffffffffffffff").await
    ));
    assert_eq!(store.count_users().await.unwrap(), 1);

    let integration = user(&root.id, "erp", Role::Integration, 11);
    store.create_user(&integration, None).await.unwrap();
    assert_eq!(
        store.find_user_by_username("erp").await.unwrap(),
        Some(integration.clone())
    );
    assert_eq!(store.find_user_by_username("nobody").await.unwrap(), None);
    assert_eq!(store.get_user(&admin.id).await.unwrap(), admin);
    assert_eq!(
        store.list_users(&root.id).await.unwrap(),
        vec![admin.clone(), integration.clone()]
    );

    // Usernames are unique across organisations.
    let again = user(&root.id, "erp", Role::Admin, 12);
    assert!(is_conflict(store.create_user(&again, None).await));

    // An organisation and its admin are created together or not at all.
    let other = organization("other", false, 20);
    let clash = user(&other.id, "admin", Role::Admin, 20);
    assert!(is_conflict(
        store.create_organization(&other, &clash, None).await
    ));
    assert!(is_not_found(store.get_organization(&other.id).await));
    let same_name = organization("root", false, 21);
    let fresh = user(&same_name.id, "fresh", Role::Admin, 21);
    assert!(is_conflict(
        store.create_organization(&same_name, &fresh, None).await
    ));
    assert_eq!(store.find_user_by_username("fresh").await.unwrap(), None);
    assert_eq!(store.count_users().await.unwrap(), 2);

    let other_admin = user(&other.id, "other-admin", Role::Admin, 22);
    store
        .create_organization(&other, &other_admin, None)
        .await
        .unwrap();
    assert_eq!(store.root_organization().await.unwrap(), Some(root.clone()));
    assert_eq!(
        store.list_users(&other.id).await.unwrap(),
        vec![other_admin]
    );

    // Deleting is scoped by organisation.
    assert!(is_not_found(
        store.delete_user(&other.id, &integration.id, None).await
    ));
    store
        .delete_user(&root.id, &integration.id, None)
        .await
        .unwrap();
    assert!(is_not_found(store.get_user(&integration.id).await));
    assert!(is_not_found(
        store.delete_user(&root.id, &integration.id, None).await
    ));
    assert_eq!(store.count_users().await.unwrap(), 2);
}

async fn a_password_is_replaced(store: Arc<dyn Store>) {
    let root = organization("root", true, 10);
    let admin = user(&root.id, "admin", Role::Admin, 10);
    store
        .create_organization(&root, &admin, None)
        .await
        .unwrap();
    store.set_password(&admin.id, "new-hash").await.unwrap();
    let stored = store.get_user(&admin.id).await.unwrap();
    assert_eq!(stored.password_hash, "new-hash");
    assert_eq!(stored.username, admin.username);
    assert!(is_not_found(
        store.set_password("ffffffffffffffff", "x").await
    ));
}

async fn set_user_role_within_the_organisation(store: Arc<dyn Store>) {
    let root = organization("root", true, 10);
    let admin = user(&root.id, "admin", Role::Admin, 10);
    store
        .create_organization(&root, &admin, None)
        .await
        .unwrap();
    let member = user(&root.id, "member", Role::Integration, 11);
    store.create_user(&member, None).await.unwrap();
    store
        .set_user_role(&root.id, &member.id, Role::Admin, None)
        .await
        .unwrap();
    assert_eq!(store.get_user(&member.id).await.unwrap().role, Role::Admin);
    store
        .set_user_role(&root.id, &member.id, Role::Integration, None)
        .await
        .unwrap();
    assert_eq!(
        store.get_user(&member.id).await.unwrap().role,
        Role::Integration
    );
    // Another organisation's user is not found, and keeps its role.
    let other = organization("other", false, 10);
    let other_admin = user(&other.id, "other-admin", Role::Admin, 10);
    store
        .create_organization(&other, &other_admin, None)
        .await
        .unwrap();
    assert!(is_not_found(
        store
            .set_user_role(&root.id, &other_admin.id, Role::Integration, None)
            .await
    ));
    assert_eq!(
        store.get_user(&other_admin.id).await.unwrap().role,
        Role::Admin
    );
}
