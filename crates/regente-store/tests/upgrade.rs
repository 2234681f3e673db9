//! A data directory written by an older version opens in place: the store applies
//! the newer migrations and serves what was stored before.

use std::str::FromStr;

use regente_core::ExecutionStatus;
use regente_store::{ExecutionFilter, FireOutcome, ScheduleTarget, ScheduledRun};
use sqlx::migrate::Migrator;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Connection, Executor, SqliteConnection};

/// The rows an older server would have written, through its own schema.
const OLD_ROWS: &str = "
INSERT INTO organizations (id, name, is_root, created_at) VALUES ('00000000000000a1', 'root', 1, 1);
INSERT INTO runtimes (id, organization_id, name, key_hash, slots, created_at)
    VALUES ('00000000000000b1', '00000000000000a1', 'rt', 'hash', 1, 1);
INSERT INTO robots (id, organization_id, name, created_at)
    VALUES ('00000000000000c1', '00000000000000a1', 'robot', 1);
INSERT INTO robot_versions (robot_id, version, organization_id, sha256, manifest, size, package, created_at)
    VALUES ('00000000000000c1', 1, '00000000000000a1', 'sha', 'name = \"robot\"', 1, x'00', 1);
INSERT INTO executions (id, organization_id, runtime_id, robot_id, robot_version, variables, status, init)
    VALUES ('00000000000000d1', '00000000000000a1', '00000000000000b1', '00000000000000c1', 1, '{}', 'PENDENT', 10),
           ('00000000000000d2', '00000000000000a1', '00000000000000b1', '00000000000000c1', 1, '{}', 'FINISHED', 20);
";

#[tokio::test]
async fn a_database_of_the_first_schema_is_migrated_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("regente.db").display());

    let mut all = Migrator::new(std::path::Path::new("./migrations/sqlite"))
        .await
        .unwrap();
    assert!(
        all.migrations.len() > 1,
        "this test needs a migration after the first"
    );
    all.migrations = all.migrations[..1].to_vec().into();
    let options = SqliteConnectOptions::from_str(&url)
        .unwrap()
        .create_if_missing(true);
    let mut old = SqliteConnection::connect_with(&options).await.unwrap();
    all.run_direct(&mut old).await.unwrap();
    old.execute(OLD_ROWS).await.unwrap();
    old.close().await.unwrap();

    let store = regente_store::open(&url).await.unwrap();
    let pendent = store
        .list_executions(
            "00000000000000a1",
            &ExecutionFilter {
                status: Some(ExecutionStatus::Pendent),
                limit: 10,
                ..ExecutionFilter::default()
            },
        )
        .await
        .unwrap();
    let ids: Vec<_> = pendent.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["00000000000000d1"]);
    let finished = store
        .get_execution("00000000000000a1", "00000000000000d2")
        .await
        .unwrap();
    assert_eq!(finished.status, ExecutionStatus::Finished);
    assert_eq!(finished.init, 20);

    let mut after = SqliteConnection::connect_with(&options).await.unwrap();
    let applied: Vec<(i64,)> =
        sqlx::query_as("SELECT version FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&mut after)
            .await
            .unwrap();
    let every: Vec<i64> = Migrator::new(std::path::Path::new("./migrations/sqlite"))
        .await
        .unwrap()
        .iter()
        .map(|m| m.version)
        .collect();
    assert_eq!(applied.into_iter().map(|(v,)| v).collect::<Vec<_>>(), every);
}

/// A robot's schedule and its fire, as a server before flow targets wrote them.
const OLD_SCHEDULE: &str = "
INSERT INTO schedules (id, organization_id, name, robot_id, runtime_id, variables, rule, timezone,
    overlap, catchup_window_seconds, misfire, jitter_seconds, paused, fired, next_fire_at,
    next_due_at, created_at, updated_at)
    VALUES ('00000000000000e1', '00000000000000a1', 'nightly', '00000000000000c1',
        '00000000000000b1', '[]', '{\"cron\":\"0 3 * * *\"}', 'UTC', 'skip', 3600,
        'run_latest', 0, 0, 1, 5000, 5000, 1, 2);
INSERT INTO schedule_fires (schedule_id, scheduled_for, organization_id, origin, outcome,
    execution_id, recorded_at)
    VALUES ('00000000000000e1', 20, '00000000000000a1', 'rule', 'started', '00000000000000d2', 21);
";

/// The migration that lets a schedule target a flow rebuilds SQLite's schedules
/// table: a schedule written before it keeps its robot target, its counters and
/// its place among the due ones, and its fire names its execution.
#[tokio::test]
async fn schedules_written_before_flow_targets_keep_their_robot_target() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("regente.db").display());
    let mut before = Migrator::new(std::path::Path::new("./migrations/sqlite"))
        .await
        .unwrap();
    before.migrations = before
        .migrations
        .iter()
        .filter(|m| m.version < 10)
        .cloned()
        .collect::<Vec<_>>()
        .into();
    let options = SqliteConnectOptions::from_str(&url)
        .unwrap()
        .create_if_missing(true);
    let mut old = SqliteConnection::connect_with(&options).await.unwrap();
    before.run_direct(&mut old).await.unwrap();
    old.execute(OLD_ROWS).await.unwrap();
    old.execute(OLD_SCHEDULE).await.unwrap();
    old.close().await.unwrap();

    let store = regente_store::open(&url).await.unwrap();
    let schedule = store
        .get_schedule("00000000000000a1", "00000000000000e1")
        .await
        .unwrap();
    assert_eq!(
        schedule.target,
        ScheduleTarget::Robot {
            robot_id: "00000000000000c1".into(),
            runtime_id: "00000000000000b1".into(),
        }
    );
    assert_eq!(
        (schedule.fired, schedule.next_due_at, schedule.updated_at),
        (1, Some(5000), 2)
    );
    let due = store.due_schedules(5000, 10).await.unwrap();
    assert_eq!(due, [schedule]);
    let fires = store
        .schedule_fires("00000000000000a1", "00000000000000e1", 10)
        .await
        .unwrap();
    assert_eq!(
        fires[0].outcome,
        FireOutcome::Started(ScheduledRun::Execution("00000000000000d2".into()))
    );
}

#[tokio::test]
async fn closing_copies_the_wal_back_and_empties_it() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("regente.db").display());
    let wal = dir.path().join("regente.db-wal");
    let store = regente_store::open(&url).await.unwrap();
    let (_, admin) = root_and_admin(&store).await;
    // Read once, so that an idle reader holds a snapshot when the store closes.
    assert_eq!(store.get_user(&admin.id).await.unwrap(), admin);
    assert!(
        std::fs::metadata(&wal).unwrap().len() > 0,
        "the write is in the WAL"
    );

    store.close().await;
    assert_eq!(std::fs::metadata(&wal).map_or(0, |m| m.len()), 0);
    drop(store);
    let reopened = regente_store::open(&url).await.unwrap();
    assert_eq!(reopened.get_user(&admin.id).await.unwrap(), admin);
}

/// Steady writes with reads between them (each read keeps its snapshot while it
/// can) do not grow the WAL without bound: it starts over once copied back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wal_stays_bounded_under_steady_writes_and_reads() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("regente.db").display());
    let wal = dir.path().join("regente.db-wal");
    let store = regente_store::open(&url).await.unwrap();
    let (organization, admin) = root_and_admin(&store).await;
    let reading = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let reader = {
        let (store, reading, id) = (store.clone(), reading.clone(), admin.id.clone());
        tokio::spawn(async move {
            while reading.load(std::sync::atomic::Ordering::Relaxed) {
                store.get_user(&id).await.unwrap();
                tokio::task::yield_now().await;
            }
        })
    };
    // 64 MiB written in 256 KiB packages, four times the WAL's size limit.
    let mut largest = 0;
    for version in 1..=256u32 {
        let upload = regente_store::NewRobotVersion {
            organization_id: organization.id.clone(),
            new_robot_id: "00000000000000b1".into(),
            name: "big".into(),
            sha256: format!("{version:064x}"),
            manifest: "name = \"big\"".into(),
            package: vec![version as u8; 256 << 10],
            created_at: 1,
        };
        store.add_robot_version(&upload, None).await.unwrap();
        largest = largest.max(std::fs::metadata(&wal).map_or(0, |m| m.len()));
    }
    reading.store(false, std::sync::atomic::Ordering::Relaxed);
    reader.await.unwrap();
    assert!(
        largest < 32 << 20,
        "the WAL reached {largest} bytes for 64 MiB written"
    );
}

/// Stores the root organisation with its admin.
async fn root_and_admin(
    store: &std::sync::Arc<dyn regente_store::Store>,
) -> (regente_store::Organization, regente_store::User) {
    let organization = regente_store::Organization {
        id: "00000000000000a1".into(),
        name: "root".into(),
        is_root: true,
        created_at: 1,
    };
    let admin = regente_store::User {
        id: "00000000000000a2".into(),
        organization_id: organization.id.clone(),
        username: "admin".into(),
        password_hash: "hash".into(),
        role: regente_core::Role::Admin,
        created_at: 1,
    };
    store
        .create_organization(&organization, &admin, None)
        .await
        .unwrap();
    (organization, admin)
}
