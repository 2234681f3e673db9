//! Robots and their versions.

use crate::fixtures::*;

conformance! {
    store: [
        robot_versions,
        concurrent_uploads_of_one_robot,
        run_target_reads_the_runtime_and_the_newest_version,
    ],
}

async fn robot_versions(store: Arc<dyn Store>) {
    let org = organization("acme", true, 10);
    store
        .create_organization(&org, &user(&org.id, "admin", Role::Admin, 10), None)
        .await
        .unwrap();
    let other = other_organization(&store).await;

    let every_byte: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    let first = robot_upload(&org.id, "invoices", every_byte.clone());
    let (robot_id, version) = store.add_robot_version(&first, None).await.unwrap();
    assert_eq!(
        (robot_id.as_str(), version),
        (first.new_robot_id.as_str(), 1)
    );

    let mut second = robot_upload(&org.id, "invoices", b"second".to_vec());
    second.created_at = 200;
    let (same_id, version) = store.add_robot_version(&second, None).await.unwrap();
    assert_eq!((same_id.as_str(), version), (robot_id.as_str(), 2));

    assert_eq!(
        store.robot_package(&org.id, &robot_id, 1).await.unwrap(),
        every_byte
    );
    assert_eq!(
        store.robot_package(&org.id, &robot_id, 2).await.unwrap(),
        b"second"
    );
    assert!(is_not_found(
        store.robot_package(&org.id, &robot_id, 3).await
    ));
    assert!(is_not_found(
        store.robot_package(&other.id, &robot_id, 1).await
    ));

    let robot = store.get_robot(&org.id, &robot_id).await.unwrap();
    assert_eq!(robot.name, "invoices");
    assert_eq!(robot.created_at, 100);
    let versions: Vec<_> = robot
        .versions
        .iter()
        .map(|v| {
            (
                v.version,
                v.size,
                v.sha256.clone(),
                v.manifest.clone(),
                v.created_at,
            )
        })
        .collect();
    assert_eq!(
        versions,
        vec![
            (1, 70_000, first.sha256.clone(), first.manifest.clone(), 100),
            (2, 6, second.sha256.clone(), second.manifest.clone(), 200),
        ]
    );
    assert!(is_not_found(store.get_robot(&other.id, &robot_id).await));
    assert_eq!(
        store
            .latest_robot_version(&org.id, &robot_id)
            .await
            .unwrap(),
        robot.versions[1]
    );
    assert!(is_not_found(
        store.latest_robot_version(&other.id, &robot_id).await
    ));
    assert!(is_not_found(
        store
            .latest_robot_version(&org.id, "0000000000000000")
            .await
    ));

    // The same name in another organisation is another robot.
    let (elsewhere, version) = store
        .add_robot_version(&robot_upload(&other.id, "invoices", b"x".to_vec()), None)
        .await
        .unwrap();
    assert_ne!(elsewhere, robot_id);
    assert_eq!(version, 1);

    let mut payroll = robot_upload(&org.id, "payroll", b"p".to_vec());
    payroll.created_at = 300;
    let (payroll_id, _) = store.add_robot_version(&payroll, None).await.unwrap();
    let listed: Vec<Robot> = store.list_robots(&org.id).await.unwrap();
    assert_eq!(
        listed
            .iter()
            .map(|r| (r.id.clone(), r.versions.len()))
            .collect::<Vec<_>>(),
        vec![(robot_id.clone(), 2), (payroll_id, 1)]
    );
    assert_eq!(listed[0], robot);
    assert_eq!(store.list_robots(&other.id).await.unwrap().len(), 1);
}

async fn concurrent_uploads_of_one_robot(store: Arc<dyn Store>) {
    let org = organization("acme", true, 10);
    store
        .create_organization(&org, &user(&org.id, "admin", Role::Admin, 10), None)
        .await
        .unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let store = store.clone();
            let upload = robot_upload(&org.id, "invoices", vec![i as u8; 10]);
            tokio::spawn(async move { store.add_robot_version(&upload, None).await })
        })
        .collect();
    let mut ids = HashSet::new();
    let mut versions = BTreeSet::new();
    for task in tasks {
        let (id, version) = task.await.unwrap().expect("every upload is stored");
        ids.insert(id);
        versions.insert(version);
    }
    assert_eq!(ids.len(), 1, "one robot for one name");
    assert_eq!(versions, (1..=8).collect());
    let robot_id = ids.into_iter().next().unwrap();
    let robot = store.get_robot(&org.id, &robot_id).await.unwrap();
    assert_eq!(robot.versions.len(), 8);
}

async fn run_target_reads_the_runtime_and_the_newest_version(store: Arc<dyn Store>) {
    let World {
        org,
        runtime,
        robot_id,
        ..
    } = world(store.clone()).await;
    let other = other_organization(&store).await;
    let runtime_id = runtime.id;
    let mut second = robot_upload(&org.id, "invoices", b"two".to_vec());
    second.created_at = 200;
    store.add_robot_version(&second, None).await.unwrap();
    let newest = store
        .latest_robot_version(&org.id, &robot_id)
        .await
        .unwrap();
    assert_eq!(newest.version, 2);

    let target = |org_id: String, runtime_id: String, robot_id: String| {
        let store = store.clone();
        async move {
            store
                .run_target(&org_id, &runtime_id, &robot_id)
                .await
                .unwrap()
        }
    };
    let found = target(org.id.clone(), runtime_id.clone(), robot_id.clone()).await;
    assert_eq!(
        found,
        RunTarget {
            runtime_exists: true,
            robot_version: Some(newest.clone()),
        }
    );
    let no_robot = target(org.id.clone(), runtime_id.clone(), new_id()).await;
    assert_eq!(
        (no_robot.runtime_exists, &no_robot.robot_version),
        (true, &None)
    );
    let no_runtime = target(org.id.clone(), new_id(), robot_id.clone()).await;
    assert_eq!(
        (no_runtime.runtime_exists, &no_runtime.robot_version),
        (false, &Some(newest))
    );
    // Another organisation sees neither.
    let elsewhere = target(other.id.clone(), runtime_id.clone(), robot_id.clone()).await;
    assert_eq!(
        (elsewhere.runtime_exists, &elsewhere.robot_version),
        (false, &None)
    );
    // Many look-ups at once (PostgreSQL answers them in groups): each gets its own.
    let cases = [
        (
            (org.id.clone(), runtime_id.clone(), robot_id.clone()),
            found,
        ),
        ((org.id.clone(), runtime_id.clone(), new_id()), no_robot),
        ((org.id.clone(), new_id(), robot_id.clone()), no_runtime),
        (
            (other.id.clone(), runtime_id.clone(), robot_id.clone()),
            elsewhere,
        ),
    ];
    let lookups: Vec<_> = (0..120)
        .map(|i| {
            let ((org_id, runtime_id, robot_id), expected) = cases[i % cases.len()].clone();
            (tokio::spawn(target(org_id, runtime_id, robot_id)), expected)
        })
        .collect();
    for (lookup, expected) in lookups {
        assert_eq!(lookup.await.unwrap(), expected);
    }
    // A deleted runtime is gone for runs.
    store
        .delete_runtime(&org.id, &runtime_id, 300, None)
        .await
        .unwrap();
    let deleted = target(org.id.clone(), runtime_id, robot_id).await;
    assert!(!deleted.runtime_exists);
    assert_eq!(deleted.robot_version.map(|v| v.version), Some(2));
}
