//! The store's conformance suite: each test is written once against `Arc<dyn Store>`
//! and runs on every backend, so that SQLite and PostgreSQL keep the same semantics.
//!
//! - `sqlite::*` run always, each on a fresh database file in a temporary folder.
//! - `postgres::*` run when `REGENTE_TEST_PG_URL` names a PostgreSQL server (a role
//!   allowed to create databases): each test creates a database of its own, so tests
//!   are independent and run in parallel, and drops it at the end. Without the
//!   variable they say they were skipped and pass. `.ci/run` sets it.

use std::collections::{BTreeSet, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use regente_core::{ExecutionStatus, Role};
use regente_store::{
    CancelOutcome, Change, Enqueued, Error, EventRecord, EventsOutcome, Execution, ExecutionFilter,
    IdempotencyKey, LostOutcome, Millis, NewExecution, NewRobotVersion, NewRuntime, Notice,
    Organization, Robot, Runtime, Store, User,
};
use serde_json::json;

mod support;
use support::with_database;

// ---------------------------------------------------------------------------
// Running every test on every backend.

/// Declares the tests, run once per backend as `sqlite::name` and `postgres::name`:
/// each name in `store` is an `async fn name(store: Arc<dyn Store>)` below, and
/// each in `url` an `async fn name(store: Arc<dyn Store>, url: String)` for tests
/// that open the same database again.
macro_rules! conformance {
    (store: [$($name:ident),* $(,)?], url: [$($with_url:ident),* $(,)?] $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    crate::on_sqlite(|store, _| super::$name(store)).await;
                }
            )*
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $with_url() {
                    crate::on_sqlite(super::$with_url).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    crate::on_postgres(stringify!($name), |store, _| super::$name(store)).await;
                }
            )*
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $with_url() {
                    crate::on_postgres(stringify!($with_url), super::$with_url).await;
                }
            )*
        }
    };
}

conformance! {
    store: [
        organizations_and_users,
        runtimes,
        robot_versions,
        concurrent_uploads_of_one_robot,
        enqueue_get_list_and_queue_position,
        idempotency_keys,
        concurrent_requests_with_one_idempotency_key,
        cancel_outcomes,
        claim_is_fifo_under_leases,
        start_needs_the_lease,
        record_events_in_order_once,
        record_events_end_the_execution,
        concurrent_copies_of_one_report,
        leases_of_runtime_and_lease_status,
        leases_seen_before,
        end_lease_of_unstarted_runs,
        end_lease_of_running_runs,
        end_lease_is_stale_once_the_lease_changed,
        concurrent_claims_hand_out_each_run_once,
        cancel_racing_start,
        every_acknowledged_write_is_read_at_once,
        a_long_batch_of_lines_is_stored_whole_and_in_order,
    ],
    url: [
        reopened_and_shared_by_two_servers,
        notices_secret_and_leadership_across_servers,
    ],
}

async fn on_sqlite<F, Fut>(test: F)
where
    F: FnOnce(Arc<dyn Store>, String) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = tempfile::tempdir().expect("temporary folder");
    let url = format!("sqlite://{}", dir.path().join("regente.db").display());
    let store = regente_store::open(&url).await.expect("open SQLite");
    test(store, url).await;
}

async fn on_postgres<F, Fut>(name: &str, test: F)
where
    F: FnOnce(Arc<dyn Store>, String) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    support::with_postgres(name, 1, |urls| async move {
        let url = urls.into_iter().next().expect("one database");
        let store = regente_store::open(&url).await.expect("open PostgreSQL");
        test(store, url).await;
    })
    .await;
}

#[tokio::test]
async fn open_names_both_schemes_for_an_unknown_one() {
    let error = regente_store::open("mysql://user@localhost/regente")
        .await
        .err()
        .expect("mysql:// refused")
        .to_string();
    assert!(error.contains("sqlite://"), "{error}");
    assert!(error.contains("postgres://"), "{error}");
    assert!(!error.contains("user@localhost"), "{error}");
}

#[test]
fn test_database_urls() {
    assert_eq!(
        with_database("postgres://u:p@127.0.0.1:5432/regente", "t"),
        "postgres://u:p@127.0.0.1:5432/t"
    );
    assert_eq!(
        with_database("postgresql://u@h/db?sslmode=disable", "t"),
        "postgresql://u@h/t?sslmode=disable"
    );
    assert_eq!(with_database("postgres://h:1", "t"), "postgres://h:1/t");
}

// ---------------------------------------------------------------------------
// Fixtures.

fn new_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!("{:016x}", NEXT.fetch_add(1, Ordering::Relaxed))
}

fn organization(name: &str, is_root: bool, created_at: Millis) -> Organization {
    Organization {
        id: new_id(),
        name: name.to_owned(),
        is_root,
        created_at,
    }
}

fn user(organization_id: &str, username: &str, role: Role, created_at: Millis) -> User {
    User {
        id: new_id(),
        organization_id: organization_id.to_owned(),
        username: username.to_owned(),
        password_hash: format!("$argon2id$v=19$hash-of-{username}"),
        role,
        created_at,
    }
}

fn new_runtime(organization_id: &str, name: &str, created_at: Millis) -> NewRuntime {
    NewRuntime {
        runtime: Runtime {
            id: new_id(),
            organization_id: organization_id.to_owned(),
            name: name.to_owned(),
            slots: 2,
            last_seen: None,
            created_at,
        },
        key_hash: format!("key-hash-{}", new_id()),
    }
}

fn robot_upload(organization_id: &str, name: &str, package: Vec<u8>) -> NewRobotVersion {
    NewRobotVersion {
        organization_id: organization_id.to_owned(),
        new_robot_id: new_id(),
        name: name.to_owned(),
        sha256: format!("sha-of-{name}-{}", package.len()),
        manifest: format!("name = \"{name}\"\ncommand = [\"run\"]\n"),
        package,
        created_at: 100,
    }
}

/// An organisation with its admin, a runtime and a robot at version 1.
struct World {
    store: Arc<dyn Store>,
    org: Organization,
    admin: User,
    runtime: Runtime,
    robot_id: String,
}

async fn world(store: Arc<dyn Store>) -> World {
    let org = organization("acme", true, 10);
    let admin = user(&org.id, "admin", Role::Admin, 10);
    store.create_organization(&org, &admin).await.unwrap();
    let runtime = add_runtime(&store, &org.id, "desk-1").await;
    let (robot_id, version) = store
        .add_robot_version(&robot_upload(
            &org.id,
            "invoices",
            b"PK\x03\x04zip".to_vec(),
        ))
        .await
        .unwrap();
    assert_eq!(version, 1);
    World {
        store,
        org,
        admin,
        runtime,
        robot_id,
    }
}

async fn add_runtime(store: &Arc<dyn Store>, organization_id: &str, name: &str) -> Runtime {
    let new = new_runtime(organization_id, name, 20);
    store.create_runtime(&new).await.unwrap();
    new.runtime
}

impl World {
    fn execution(&self, runtime_id: &str, init: Millis, max_attempts: u32) -> NewExecution {
        NewExecution {
            id: new_id(),
            organization_id: self.org.id.clone(),
            runtime_id: runtime_id.to_owned(),
            robot_id: self.robot_id.clone(),
            robot_version: 1,
            variables: json!({"N": 1}),
            init,
            submitted_by: self.admin.id.clone(),
            max_attempts,
        }
    }

    /// Queues a run on `runtime_id`; returns its id.
    async fn enqueue_on(&self, runtime_id: &str, init: Millis, max_attempts: u32) -> String {
        let new = self.execution(runtime_id, init, max_attempts);
        assert_eq!(
            self.store.enqueue(&new, None).await.unwrap(),
            Enqueued::Created
        );
        new.id
    }

    async fn enqueue(&self, init: Millis) -> String {
        self.enqueue_on(&self.runtime.id, init, 1).await
    }

    async fn get(&self, id: &str) -> Execution {
        self.store.get_execution(&self.org.id, id).await.unwrap()
    }

    /// Claims the runtime's next run under a fresh lease; returns (id, lease).
    async fn claim(&self) -> (String, String) {
        let lease = format!("lease-{}", new_id());
        let claimed = self
            .store
            .claim_next(&self.runtime.id, &lease)
            .await
            .unwrap()
            .expect("a run to claim");
        (claimed.execution_id, lease)
    }

    /// Queues, claims and starts a run; returns (id, lease).
    async fn running(&self, max_attempts: u32) -> (String, String) {
        let id = self.enqueue_on(&self.runtime.id, 1_000, max_attempts).await;
        let (claimed, lease) = self.claim().await;
        assert_eq!(claimed, id, "the queue was expected to be empty before");
        assert!(self
            .store
            .start(&self.runtime.id, &id, &lease, 2_000)
            .await
            .unwrap());
        (id, lease)
    }

    async fn report(&self, id: &str, lease: &str, events: &[EventRecord]) -> EventsOutcome {
        self.store
            .record_events(&self.runtime.id, id, lease, events)
            .await
            .unwrap()
    }

    async fn logs(&self, id: &str) -> Vec<(i64, String, String)> {
        self.store
            .execution_logs(&self.org.id, id)
            .await
            .unwrap()
            .into_iter()
            .map(|line| (line.seq, line.level, line.message))
            .collect()
    }
}

fn log(seq: u64, message: &str) -> EventRecord {
    EventRecord {
        seq,
        time: 5_000 + seq as Millis,
        change: Change::Log {
            level: "INFO".into(),
            message: message.into(),
        },
    }
}

fn progress(seq: u64, value: f64) -> EventRecord {
    EventRecord {
        seq,
        time: 5_000 + seq as Millis,
        change: Change::Progress(value),
    }
}

fn ended(seq: u64, time: Millis, status: ExecutionStatus, exit_code: Option<i32>) -> EventRecord {
    EventRecord {
        seq,
        time,
        change: Change::Ended {
            status,
            exit_code,
            reason: format!("ended {status}"),
        },
    }
}

fn stored(acked: u64, ended: bool) -> EventsOutcome {
    EventsOutcome::Stored { acked, ended }
}

fn is_not_found<T: std::fmt::Debug>(result: Result<T, Error>) -> bool {
    matches!(result, Err(Error::NotFound))
}

fn is_conflict<T: std::fmt::Debug>(result: Result<T, Error>) -> bool {
    matches!(result, Err(Error::Conflict(_)))
}

// ---------------------------------------------------------------------------
// Organisations, users, runtimes, robots.

async fn organizations_and_users(store: Arc<dyn Store>) {
    assert_eq!(store.root_organization().await.unwrap(), None);
    assert_eq!(store.count_users().await.unwrap(), 0);

    let root = organization("root", true, 10);
    let admin = user(&root.id, "admin", Role::Admin, 10);
    store.create_organization(&root, &admin).await.unwrap();
    assert_eq!(store.root_organization().await.unwrap(), Some(root.clone()));
    assert_eq!(store.get_organization(&root.id).await.unwrap(), root);
    assert!(is_not_found(
        store.get_organization("ffffffffffffffff").await
    ));
    assert_eq!(store.count_users().await.unwrap(), 1);

    let integration = user(&root.id, "erp", Role::Integration, 11);
    store.create_user(&integration).await.unwrap();
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
    assert!(is_conflict(store.create_user(&again).await));

    // An organisation and its admin are created together or not at all.
    let other = organization("other", false, 20);
    let clash = user(&other.id, "admin", Role::Admin, 20);
    assert!(is_conflict(store.create_organization(&other, &clash).await));
    assert!(is_not_found(store.get_organization(&other.id).await));
    let same_name = organization("root", false, 21);
    let fresh = user(&same_name.id, "fresh", Role::Admin, 21);
    assert!(is_conflict(
        store.create_organization(&same_name, &fresh).await
    ));
    assert_eq!(store.find_user_by_username("fresh").await.unwrap(), None);
    assert_eq!(store.count_users().await.unwrap(), 2);

    let other_admin = user(&other.id, "other-admin", Role::Admin, 22);
    store
        .create_organization(&other, &other_admin)
        .await
        .unwrap();
    assert_eq!(store.root_organization().await.unwrap(), Some(root.clone()));
    assert_eq!(
        store.list_users(&other.id).await.unwrap(),
        vec![other_admin]
    );

    // Deleting is scoped by organisation.
    assert!(is_not_found(
        store.delete_user(&other.id, &integration.id).await
    ));
    store.delete_user(&root.id, &integration.id).await.unwrap();
    assert!(is_not_found(store.get_user(&integration.id).await));
    assert!(is_not_found(
        store.delete_user(&root.id, &integration.id).await
    ));
    assert_eq!(store.count_users().await.unwrap(), 2);
}

async fn runtimes(store: Arc<dyn Store>) {
    let org = organization("acme", true, 10);
    store
        .create_organization(&org, &user(&org.id, "admin", Role::Admin, 10))
        .await
        .unwrap();
    let other = organization("other", false, 10);
    store
        .create_organization(&other, &user(&other.id, "admin2", Role::Admin, 10))
        .await
        .unwrap();

    let first = new_runtime(&org.id, "desk-1", 30);
    let second = new_runtime(&org.id, "desk-2", 31);
    store.create_runtime(&first).await.unwrap();
    store.create_runtime(&second).await.unwrap();
    assert_eq!(
        store.get_runtime(&org.id, &first.runtime.id).await.unwrap(),
        first.runtime
    );
    assert!(is_not_found(
        store.get_runtime(&other.id, &first.runtime.id).await
    ));
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
    assert!(is_conflict(store.create_runtime(&clash).await));

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

async fn robot_versions(store: Arc<dyn Store>) {
    let org = organization("acme", true, 10);
    store
        .create_organization(&org, &user(&org.id, "admin", Role::Admin, 10))
        .await
        .unwrap();
    let other = organization("other", false, 10);
    store
        .create_organization(&other, &user(&other.id, "admin2", Role::Admin, 10))
        .await
        .unwrap();

    let every_byte: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    let first = robot_upload(&org.id, "invoices", every_byte.clone());
    let (robot_id, version) = store.add_robot_version(&first).await.unwrap();
    assert_eq!(
        (robot_id.as_str(), version),
        (first.new_robot_id.as_str(), 1)
    );

    let mut second = robot_upload(&org.id, "invoices", b"second".to_vec());
    second.created_at = 200;
    let (same_id, version) = store.add_robot_version(&second).await.unwrap();
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
        .add_robot_version(&robot_upload(&other.id, "invoices", b"x".to_vec()))
        .await
        .unwrap();
    assert_ne!(elsewhere, robot_id);
    assert_eq!(version, 1);

    let mut payroll = robot_upload(&org.id, "payroll", b"p".to_vec());
    payroll.created_at = 300;
    let (payroll_id, _) = store.add_robot_version(&payroll).await.unwrap();
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
        .create_organization(&org, &user(&org.id, "admin", Role::Admin, 10))
        .await
        .unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let store = store.clone();
            let upload = robot_upload(&org.id, "invoices", vec![i as u8; 10]);
            tokio::spawn(async move { store.add_robot_version(&upload).await })
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

// ---------------------------------------------------------------------------
// The queue.

async fn enqueue_get_list_and_queue_position(store: Arc<dyn Store>) {
    let w = world(store).await;
    let other_runtime = add_runtime(&w.store, &w.org.id, "desk-2").await;
    let (other_robot, _) = w
        .store
        .add_robot_version(&robot_upload(&w.org.id, "payroll", b"p".to_vec()))
        .await
        .unwrap();

    // Variables read back exactly, whatever they hold.
    let variables = json!({
        "TEXT": "ünïcödé \"quoted\" \\ back\nslash \u{0} nul \u{1F600}",
        "INT": 9_007_199_254_740_993_i64,
        "NEG": -42,
        "FLOAT": 0.1,
        "BIG": 1.5e300,
        "BOOL": true,
        "NULL": null,
        "LIST": [1, "two", {"three": [3.0]}],
    });
    let mut first = w.execution(&w.runtime.id, 1_000, 1);
    first.variables = variables.clone();
    assert_eq!(
        w.store.enqueue(&first, None).await.unwrap(),
        Enqueued::Created
    );
    let got = w.get(&first.id).await;
    assert_eq!(got.id, first.id);
    assert_eq!(got.organization_id, w.org.id);
    assert_eq!(got.runtime_id, w.runtime.id);
    assert_eq!(got.robot_id, w.robot_id);
    assert_eq!(got.robot_version, 1);
    assert_eq!(got.variables, variables);
    assert_eq!(got.status, ExecutionStatus::Pendent);
    assert_eq!(got.progress, 0.0);
    assert_eq!(got.init, 1_000);
    assert_eq!((got.started, got.end, got.exit_code), (None, None, None));
    assert_eq!((got.return_value, got.end_reason), (None, None));
    assert_eq!(got.submitted_by, Some(w.admin.id.clone()));
    assert_eq!(got.canceled_by, None);

    // The same id twice is a conflict.
    assert!(is_conflict(w.store.enqueue(&first, None).await));

    // Another organisation cannot see it.
    let other = organization("other", false, 10);
    w.store
        .create_organization(&other, &user(&other.id, "admin2", Role::Admin, 10))
        .await
        .unwrap();
    assert!(is_not_found(
        w.store.get_execution(&other.id, &first.id).await
    ));

    // Four more: runtime 1 gets 2000 and 4000, runtime 2 gets 3000 (robot 2) and 5000.
    let second = w.enqueue_on(&w.runtime.id, 2_000, 1).await;
    let mut on_other = w.execution(&other_runtime.id, 3_000, 1);
    on_other.robot_id = other_robot.clone();
    w.store.enqueue(&on_other, None).await.unwrap();
    let third = w.enqueue_on(&w.runtime.id, 4_000, 1).await;
    let fifth = w.enqueue_on(&other_runtime.id, 5_000, 1).await;
    let all = [
        first.id.clone(),
        second.clone(),
        on_other.id.clone(),
        third.clone(),
        fifth.clone(),
    ];

    let list = |filter: ExecutionFilter| {
        let store = w.store.clone();
        let org = w.org.id.clone();
        async move {
            store
                .list_executions(&org, &filter)
                .await
                .unwrap()
                .into_iter()
                .map(|e| e.id)
                .collect::<Vec<_>>()
        }
    };
    let newest_first: Vec<String> = all.iter().rev().cloned().collect();
    assert_eq!(
        list(ExecutionFilter {
            limit: 100,
            ..Default::default()
        })
        .await,
        newest_first
    );
    let seqs: Vec<i64> = {
        let mut seqs = Vec::new();
        for id in &all {
            seqs.push(w.get(id).await.seq);
        }
        seqs
    };
    assert!(seqs.windows(2).all(|pair| pair[0] < pair[1]), "{seqs:?}");
    assert_eq!(
        list(ExecutionFilter {
            runtime_id: Some(w.runtime.id.clone()),
            limit: 100,
            ..Default::default()
        })
        .await,
        vec![third.clone(), second.clone(), first.id.clone()]
    );
    assert_eq!(
        list(ExecutionFilter {
            robot_id: Some(other_robot.clone()),
            limit: 100,
            ..Default::default()
        })
        .await,
        vec![on_other.id.clone()]
    );
    assert_eq!(
        list(ExecutionFilter {
            from: Some(2_000),
            to: Some(4_000),
            limit: 100,
            ..Default::default()
        })
        .await,
        vec![on_other.id.clone(), second.clone()]
    );
    assert_eq!(
        list(ExecutionFilter {
            limit: 2,
            ..Default::default()
        })
        .await,
        vec![fifth.clone(), third.clone()]
    );
    // Paging with the cursor walks everything once.
    let mut paged = Vec::new();
    let mut before_seq = None;
    loop {
        let page = w
            .store
            .list_executions(
                &w.org.id,
                &ExecutionFilter {
                    before_seq,
                    limit: 2,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        before_seq = Some(last.seq);
        paged.extend(page.into_iter().map(|e| e.id));
    }
    assert_eq!(paged, newest_first);
    assert_eq!(
        list(ExecutionFilter {
            limit: 100,
            ..Default::default()
        })
        .await
        .len(),
        5
    );
    assert!(w
        .store
        .list_executions(
            &other.id,
            &ExecutionFilter {
                limit: 100,
                ..Default::default()
            }
        )
        .await
        .unwrap()
        .is_empty());

    // Queue positions count the PENDENT runs ahead on the same runtime, handed out or not.
    let position = |id: String| {
        let w = &w;
        async move { w.store.queue_position(&w.get(&id).await).await.unwrap() }
    };
    assert_eq!(position(first.id.clone()).await, 0);
    assert_eq!(position(second.clone()).await, 1);
    assert_eq!(position(third.clone()).await, 2);
    assert_eq!(position(on_other.id.clone()).await, 0);
    assert_eq!(position(fifth.clone()).await, 1);
    let (claimed, _lease) = w.claim().await;
    assert_eq!(claimed, first.id);
    assert_eq!(position(third.clone()).await, 2);
    w.store
        .cancel(&w.org.id, &second, &w.admin.id, 9_000)
        .await
        .unwrap();
    assert_eq!(position(third.clone()).await, 1);

    // Status filter.
    assert_eq!(
        list(ExecutionFilter {
            status: Some(ExecutionStatus::Canceled),
            limit: 100,
            ..Default::default()
        })
        .await,
        vec![second.clone()]
    );
    assert_eq!(
        list(ExecutionFilter {
            status: Some(ExecutionStatus::Pendent),
            runtime_id: Some(w.runtime.id.clone()),
            limit: 100,
            ..Default::default()
        })
        .await,
        vec![third, first.id]
    );
}

async fn idempotency_keys(store: Arc<dyn Store>) {
    let w = world(store).await;
    let key = |key: &str, fingerprint: &str, expired_before: Millis| IdempotencyKey {
        user_id: w.admin.id.clone(),
        key: key.to_owned(),
        fingerprint: fingerprint.to_owned(),
        expired_before,
    };

    let first = w.execution(&w.runtime.id, 10_000, 1);
    assert_eq!(
        w.store
            .enqueue(&first, Some(&key("k", "f", 0)))
            .await
            .unwrap(),
        Enqueued::Created
    );
    // Same key, same request: the first execution, and nothing new is queued.
    let again = w.execution(&w.runtime.id, 11_000, 1);
    assert_eq!(
        w.store
            .enqueue(&again, Some(&key("k", "f", 0)))
            .await
            .unwrap(),
        Enqueued::Existing(first.id.clone())
    );
    assert!(is_not_found(
        w.store.get_execution(&w.org.id, &again.id).await
    ));
    // Same key, another request: refused.
    let different = w.execution(&w.runtime.id, 11_000, 1);
    assert_eq!(
        w.store
            .enqueue(&different, Some(&key("k", "other", 0)))
            .await
            .unwrap(),
        Enqueued::KeyReused
    );
    assert!(is_not_found(
        w.store.get_execution(&w.org.id, &different.id).await
    ));
    // Keys belong to their user.
    let integration = user(&w.org.id, "erp", Role::Integration, 10);
    w.store.create_user(&integration).await.unwrap();
    let theirs = w.execution(&w.runtime.id, 11_000, 1);
    let their_key = IdempotencyKey {
        user_id: integration.id.clone(),
        ..key("k", "f", 0)
    };
    assert_eq!(
        w.store.enqueue(&theirs, Some(&their_key)).await.unwrap(),
        Enqueued::Created
    );
    // Without a key, always a new one.
    assert_eq!(
        w.store.enqueue(&again, None).await.unwrap(),
        Enqueued::Created
    );

    // An expired key is replaced: a new execution, which the key then answers.
    let later = w.execution(&w.runtime.id, 20_000, 1);
    assert_eq!(
        w.store
            .enqueue(&later, Some(&key("k", "other", 10_001)))
            .await
            .unwrap(),
        Enqueued::Created
    );
    let retry = w.execution(&w.runtime.id, 21_000, 1);
    assert_eq!(
        w.store
            .enqueue(&retry, Some(&key("k", "other", 10_001)))
            .await
            .unwrap(),
        Enqueued::Existing(later.id.clone())
    );
    assert_eq!(
        w.store
            .enqueue(&retry, Some(&key("k", "f", 10_001)))
            .await
            .unwrap(),
        Enqueued::KeyReused
    );
    // A key recorded exactly at the cut-off is still live.
    assert_eq!(
        w.store
            .enqueue(&retry, Some(&key("k", "other", 20_000)))
            .await
            .unwrap(),
        Enqueued::Existing(later.id.clone())
    );

    // A failed enqueue does not keep the key.
    let mut broken = w.execution(&w.runtime.id, 30_000, 1);
    broken.id = first.id.clone();
    assert!(is_conflict(
        w.store.enqueue(&broken, Some(&key("fresh", "f", 0))).await
    ));
    let fixed = w.execution(&w.runtime.id, 30_000, 1);
    assert_eq!(
        w.store
            .enqueue(&fixed, Some(&key("fresh", "f", 0)))
            .await
            .unwrap(),
        Enqueued::Created
    );
}

async fn concurrent_requests_with_one_idempotency_key(store: Arc<dyn Store>) {
    let w = Arc::new(world(store).await);
    for round in 0..5 {
        let key = IdempotencyKey {
            user_id: w.admin.id.clone(),
            key: format!("key-{round}"),
            fingerprint: "f".into(),
            expired_before: 0,
        };
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let w = w.clone();
                let key = key.clone();
                let new = w.execution(&w.runtime.id, 1_000, 1);
                tokio::spawn(async move {
                    let outcome = w.store.enqueue(&new, Some(&key)).await.unwrap();
                    (new.id, outcome)
                })
            })
            .collect();
        let mut created = Vec::new();
        let mut existing = Vec::new();
        for task in tasks {
            match task.await.unwrap() {
                (id, Enqueued::Created) => created.push(id),
                (_, Enqueued::Existing(id)) => existing.push(id),
                (_, Enqueued::KeyReused) => panic!("same fingerprint refused"),
            }
        }
        assert_eq!(created.len(), 1, "one execution per key: {created:?}");
        assert!(existing.iter().all(|id| *id == created[0]));
    }
    let all = w
        .store
        .list_executions(
            &w.org.id,
            &ExecutionFilter {
                limit: 1_000,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(all.len(), 5);
}

async fn cancel_outcomes(store: Arc<dyn Store>) {
    let w = world(store).await;

    // PENDENT and not handed out: canceled, nothing to revoke.
    let pending = w.enqueue(1_000).await;
    assert_eq!(
        w.store
            .cancel(&w.org.id, &pending, &w.admin.id, 1_500)
            .await
            .unwrap(),
        CancelOutcome::Canceled { lease: None }
    );
    let got = w.get(&pending).await;
    assert_eq!(got.status, ExecutionStatus::Canceled);
    assert_eq!(got.end, Some(1_500));
    assert_eq!(got.canceled_by, Some(w.admin.id.clone()));
    assert!(got.end_reason.is_some());
    assert_eq!(
        w.store
            .cancel(&w.org.id, &pending, &w.admin.id, 1_600)
            .await
            .unwrap(),
        CancelOutcome::AlreadyEnded(ExecutionStatus::Canceled)
    );

    // PENDENT and handed out: canceled, and the lease comes back to be revoked.
    let leased = w.enqueue(2_000).await;
    let (claimed, lease) = w.claim().await;
    assert_eq!(claimed, leased);
    assert_eq!(
        w.store
            .cancel(&w.org.id, &leased, &w.admin.id, 2_500)
            .await
            .unwrap(),
        CancelOutcome::Canceled {
            lease: Some(lease.clone())
        }
    );
    assert!(!w
        .store
        .start(&w.runtime.id, &leased, &lease, 2_600)
        .await
        .unwrap());
    assert_eq!(
        w.report(&leased, &lease, &[log(1, "late")]).await,
        EventsOutcome::Revoked
    );
    assert_eq!(w.store.lease_status(&leased, &lease).await.unwrap(), None);
    assert_eq!(w.get(&leased).await.status, ExecutionStatus::Canceled);

    // RUNNING: marked; the runtime must stop it. Asking twice keeps the first asker.
    let (running, lease) = w.running(1).await;
    assert_eq!(
        w.store
            .cancel(&w.org.id, &running, &w.admin.id, 3_000)
            .await
            .unwrap(),
        CancelOutcome::Running {
            lease: lease.clone()
        }
    );
    let got = w.get(&running).await;
    assert_eq!(got.status, ExecutionStatus::Running);
    assert_eq!(got.canceled_by, Some(w.admin.id.clone()));
    assert_eq!(got.end, None);
    let leases = w.store.leases_of_runtime(&w.runtime.id).await.unwrap();
    assert_eq!(leases.len(), 1);
    assert!(leases[0].cancel_requested);
    assert_eq!(
        w.store
            .cancel(&w.org.id, &running, "someone-else", 3_100)
            .await
            .unwrap(),
        CancelOutcome::Running {
            lease: lease.clone()
        }
    );
    assert_eq!(w.get(&running).await.canceled_by, Some(w.admin.id.clone()));

    // The runtime reports it canceled: ended.
    assert_eq!(
        w.report(
            &running,
            &lease,
            &[ended(1, 3_200, ExecutionStatus::Canceled, Some(130))]
        )
        .await,
        stored(1, true)
    );
    assert_eq!(
        w.store
            .cancel(&w.org.id, &running, &w.admin.id, 3_300)
            .await
            .unwrap(),
        CancelOutcome::AlreadyEnded(ExecutionStatus::Canceled)
    );

    // FINISHED is ended too.
    let (done, lease) = w.running(1).await;
    w.report(
        &done,
        &lease,
        &[ended(1, 4_000, ExecutionStatus::Finished, Some(0))],
    )
    .await;
    assert_eq!(
        w.store
            .cancel(&w.org.id, &done, &w.admin.id, 4_100)
            .await
            .unwrap(),
        CancelOutcome::AlreadyEnded(ExecutionStatus::Finished)
    );

    // Unknown, or another organisation's: not found.
    assert!(is_not_found(
        w.store
            .cancel(&w.org.id, "ffffffffffffffff", &w.admin.id, 5_000)
            .await
    ));
    let other = organization("other", false, 10);
    w.store
        .create_organization(&other, &user(&other.id, "admin2", Role::Admin, 10))
        .await
        .unwrap();
    let victim = w.enqueue(6_000).await;
    assert!(is_not_found(
        w.store.cancel(&other.id, &victim, "intruder", 6_100).await
    ));
    assert_eq!(w.get(&victim).await.status, ExecutionStatus::Pendent);
}

async fn claim_is_fifo_under_leases(store: Arc<dyn Store>) {
    let w = world(store).await;
    let other_runtime = add_runtime(&w.store, &w.org.id, "desk-2").await;
    assert_eq!(
        w.store.claim_next(&w.runtime.id, "lease-0").await.unwrap(),
        None
    );
    let mut first = w.execution(&w.runtime.id, 1_000, 1);
    first.variables = json!({"NAME": "Ana", "COUNT": 3});
    w.store.enqueue(&first, None).await.unwrap();
    let elsewhere = w.enqueue_on(&other_runtime.id, 1_500, 1).await;
    let second = w.enqueue(2_000).await;
    let third = w.enqueue(3_000).await;

    let claimed = w
        .store
        .claim_next(&w.runtime.id, "lease-1")
        .await
        .unwrap()
        .unwrap();
    let version = &w
        .store
        .get_robot(&w.org.id, &w.robot_id)
        .await
        .unwrap()
        .versions[0];
    assert_eq!(claimed.execution_id, first.id);
    assert_eq!(claimed.lease, "lease-1");
    assert_eq!(claimed.robot_id, w.robot_id);
    assert_eq!(claimed.robot_version, 1);
    assert_eq!(claimed.sha256, version.sha256);
    assert_eq!(claimed.manifest, version.manifest);
    assert_eq!(claimed.variables, first.variables);
    assert_eq!(claimed.first_seq, 1);

    // Canceled runs are not handed out.
    w.store
        .cancel(&w.org.id, &second, &w.admin.id, 2_500)
        .await
        .unwrap();
    let next = w
        .store
        .claim_next(&w.runtime.id, "lease-2")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(next.execution_id, third);
    assert_eq!(
        w.store.claim_next(&w.runtime.id, "lease-3").await.unwrap(),
        None
    );
    let there = w
        .store
        .claim_next(&other_runtime.id, "lease-4")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(there.execution_id, elsewhere);
    assert_eq!(
        w.store
            .claim_next(&other_runtime.id, "lease-5")
            .await
            .unwrap(),
        None
    );
    // A run handed out stays PENDENT until it starts.
    assert_eq!(w.get(&first.id).await.status, ExecutionStatus::Pendent);
    assert_eq!(
        w.store.lease_status(&first.id, "lease-1").await.unwrap(),
        Some(ExecutionStatus::Pendent)
    );
}

async fn start_needs_the_lease(store: Arc<dyn Store>) {
    let w = world(store).await;
    let other_runtime = add_runtime(&w.store, &w.org.id, "desk-2").await;
    let id = w.enqueue(1_000).await;
    let (_, lease) = w.claim().await;
    assert!(!w
        .store
        .start(&w.runtime.id, &id, "wrong", 2_000)
        .await
        .unwrap());
    assert!(!w
        .store
        .start(&other_runtime.id, &id, &lease, 2_000)
        .await
        .unwrap());
    assert!(!w
        .store
        .start(&w.runtime.id, "ffffffffffffffff", &lease, 2_000)
        .await
        .unwrap());
    assert_eq!(w.get(&id).await.status, ExecutionStatus::Pendent);
    assert!(w
        .store
        .start(&w.runtime.id, &id, &lease, 2_000)
        .await
        .unwrap());
    let got = w.get(&id).await;
    assert_eq!(got.status, ExecutionStatus::Running);
    assert_eq!(got.started, Some(2_000));
    // Once only.
    assert!(!w
        .store
        .start(&w.runtime.id, &id, &lease, 2_100)
        .await
        .unwrap());
    assert_eq!(w.get(&id).await.started, Some(2_000));

    // Never after a cancel.
    let canceled = w.enqueue(3_000).await;
    let (_, lease) = w.claim().await;
    w.store
        .cancel(&w.org.id, &canceled, &w.admin.id, 3_500)
        .await
        .unwrap();
    assert!(!w
        .store
        .start(&w.runtime.id, &canceled, &lease, 3_600)
        .await
        .unwrap());
    assert_eq!(w.get(&canceled).await.status, ExecutionStatus::Canceled);
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

// ---------------------------------------------------------------------------
// Leases.

async fn leases_of_runtime_and_lease_status(store: Arc<dyn Store>) {
    let w = world(store).await;
    let other_runtime = add_runtime(&w.store, &w.org.id, "desk-2").await;
    assert!(w
        .store
        .leases_of_runtime(&w.runtime.id)
        .await
        .unwrap()
        .is_empty());
    let (running, running_lease) = w.running(1).await;
    let pending = w.enqueue(3_000).await;
    let (_, pending_lease) = w.claim().await;
    let _unclaimed = w.enqueue(4_000).await;
    let _elsewhere = w.enqueue_on(&other_runtime.id, 4_500, 1).await;
    let (ended_id, ended_lease) = {
        let id = w.enqueue(5_000).await;
        let (claimed, lease) = w.claim().await;
        assert_ne!(claimed, id, "FIFO: the unclaimed run comes first");
        w.store
            .start(&w.runtime.id, &claimed, &lease, 5_100)
            .await
            .unwrap();
        w.report(
            &claimed,
            &lease,
            &[ended(1, 5_200, ExecutionStatus::Finished, Some(0))],
        )
        .await;
        (claimed, lease)
    };

    let leases = w.store.leases_of_runtime(&w.runtime.id).await.unwrap();
    let seen: Vec<_> = leases
        .iter()
        .map(|l| {
            (
                l.execution_id.clone(),
                l.lease.clone(),
                l.runtime_id.clone(),
                l.status,
                l.cancel_requested,
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            (
                running.clone(),
                running_lease.clone(),
                w.runtime.id.clone(),
                ExecutionStatus::Running,
                false
            ),
            (
                pending.clone(),
                pending_lease.clone(),
                w.runtime.id.clone(),
                ExecutionStatus::Pendent,
                false
            ),
        ]
    );
    assert!(w
        .store
        .leases_of_runtime(&other_runtime.id)
        .await
        .unwrap()
        .is_empty());

    assert_eq!(
        w.store
            .lease_status(&running, &running_lease)
            .await
            .unwrap(),
        Some(ExecutionStatus::Running)
    );
    assert_eq!(
        w.store
            .lease_status(&pending, &pending_lease)
            .await
            .unwrap(),
        Some(ExecutionStatus::Pendent)
    );
    assert_eq!(
        w.store.lease_status(&ended_id, &ended_lease).await.unwrap(),
        Some(ExecutionStatus::Finished)
    );
    assert_eq!(
        w.store
            .lease_status(&running, &pending_lease)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        w.store
            .lease_status("ffffffffffffffff", &running_lease)
            .await
            .unwrap(),
        None
    );
}

async fn leases_seen_before(store: Arc<dyn Store>) {
    let w = world(store).await;
    let never_seen = add_runtime(&w.store, &w.org.id, "never-seen").await;
    let recent = add_runtime(&w.store, &w.org.id, "recent").await;
    w.store.touch_runtime(&w.runtime.id, 1_000).await.unwrap();
    w.store.touch_runtime(&recent.id, 5_000).await.unwrap();

    let (old_running, old_lease) = w.running(1).await;
    let _unclaimed = w.enqueue(1_500).await;
    let on_never_seen = w.enqueue_on(&never_seen.id, 1_600, 1).await;
    w.store
        .claim_next(&never_seen.id, "lease-never-seen")
        .await
        .unwrap()
        .unwrap();
    let on_recent = w.enqueue_on(&recent.id, 1_700, 1).await;
    w.store
        .claim_next(&recent.id, "lease-recent")
        .await
        .unwrap()
        .unwrap();

    let lost: Vec<_> = w
        .store
        .leases_seen_before(2_000)
        .await
        .unwrap()
        .into_iter()
        .map(|l| (l.execution_id, l.lease, l.runtime_id, l.status))
        .collect();
    assert_eq!(
        lost,
        vec![
            (
                old_running.clone(),
                old_lease.clone(),
                w.runtime.id.clone(),
                ExecutionStatus::Running
            ),
            (
                on_never_seen.clone(),
                "lease-never-seen".to_owned(),
                never_seen.id.clone(),
                ExecutionStatus::Pendent
            ),
        ]
    );
    // The boundary is exclusive.
    assert_eq!(w.store.leases_seen_before(1_000).await.unwrap().len(), 1);
    assert_eq!(w.store.leases_seen_before(6_000).await.unwrap().len(), 3);
    assert!(lost.iter().all(|l| l.0 != on_recent));

    // Ended executions hold no live lease.
    w.report(
        &old_running,
        &old_lease,
        &[ended(1, 3_000, ExecutionStatus::Finished, Some(0))],
    )
    .await;
    assert_eq!(w.store.leases_seen_before(2_000).await.unwrap().len(), 1);
}

async fn end_lease_of_unstarted_runs(store: Arc<dyn Store>) {
    let w = world(store).await;

    // Handed out, never started: back in the queue at its place, no attempt used.
    let first = w.enqueue(1_000).await;
    let _second = w.enqueue(2_000).await;
    let (claimed, lease) = w.claim().await;
    assert_eq!(claimed, first);
    assert_eq!(
        w.store
            .end_lease(&first, &lease, true, "runtime lost", 3_000)
            .await
            .unwrap(),
        LostOutcome::Requeued
    );
    let got = w.get(&first).await;
    assert_eq!(got.status, ExecutionStatus::Pendent);
    assert_eq!(w.store.lease_status(&first, &lease).await.unwrap(), None);
    assert!(w.logs(&first).await.is_empty());
    assert!(!w
        .store
        .start(&w.runtime.id, &first, &lease, 3_100)
        .await
        .unwrap());
    let again = w
        .store
        .claim_next(&w.runtime.id, "lease-again")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.execution_id, first, "it keeps its place in the queue");
    assert_eq!(again.first_seq, 1);

    // RUNNING, but the runtime says it never spawned it: queued again, not started.
    // (max_attempts 1: this requeue must not use up its only attempt.)
    assert!(w
        .store
        .start(&w.runtime.id, &first, "lease-again", 3_200)
        .await
        .unwrap());
    w.report(&first, "lease-again", &[log(1, "hello")]).await;
    assert_eq!(
        w.store
            .end_lease(&first, "lease-again", false, "never spawned", 3_300)
            .await
            .unwrap(),
        LostOutcome::Requeued
    );
    let got = w.get(&first).await;
    assert_eq!(got.status, ExecutionStatus::Pendent);
    assert_eq!(got.started, None);
    let third_try = w
        .store
        .claim_next(&w.runtime.id, "lease-third")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(third_try.execution_id, first);
    assert_eq!(third_try.first_seq, 2, "event numbers go on");
    assert!(w
        .store
        .start(&w.runtime.id, &first, "lease-third", 3_400)
        .await
        .unwrap());
    // Its one attempt is still there to be lost: without retries, ERROR.
    assert_eq!(
        w.store
            .end_lease(&first, "lease-third", true, "runtime lost", 3_500)
            .await
            .unwrap(),
        LostOutcome::Ended(ExecutionStatus::Error)
    );
}

async fn end_lease_of_running_runs(store: Arc<dyn Store>) {
    let w = world(store).await;

    // Without retries: ERROR, with the reason logged as an ERROR line.
    let (id, lease) = w.running(1).await;
    w.report(&id, &lease, &[log(1, "one"), progress(2, 40.0)])
        .await;
    assert_eq!(
        w.store
            .end_lease(&id, &lease, true, "runtime lost: gone", 7_000)
            .await
            .unwrap(),
        LostOutcome::Ended(ExecutionStatus::Error)
    );
    let got = w.get(&id).await;
    assert_eq!(got.status, ExecutionStatus::Error);
    assert_eq!(got.end, Some(7_000));
    assert_eq!(got.end_reason.as_deref(), Some("runtime lost: gone"));
    assert_eq!(
        w.logs(&id).await,
        vec![
            (1, "INFO".into(), "one".into()),
            (3, "ERROR".into(), "runtime lost: gone".into())
        ]
    );
    assert_eq!(w.store.lease_status(&id, &lease).await.unwrap(), None);
    assert_eq!(
        w.report(&id, &lease, &[log(3, "late")]).await,
        EventsOutcome::Revoked
    );

    // With one retry: queued again with a WARN line, then ERROR on the second loss.
    let (id, lease) = w.running(2).await;
    w.report(&id, &lease, &[log(1, "one"), progress(2, 60.0)])
        .await;
    assert_eq!(
        w.store
            .end_lease(&id, &lease, true, "runtime lost", 8_000)
            .await
            .unwrap(),
        LostOutcome::Requeued
    );
    let got = w.get(&id).await;
    assert_eq!(got.status, ExecutionStatus::Pendent);
    assert_eq!(got.progress, 0.0);
    assert_eq!(got.started, None);
    assert_eq!(got.end, None);
    let logs = w.logs(&id).await;
    assert_eq!(logs.len(), 2);
    assert_eq!((logs[1].0, logs[1].1.as_str()), (3, "WARN"));
    assert!(logs[1].2.starts_with("runtime lost"), "{:?}", logs[1].2);
    assert!(logs[1].2.contains("attempt 2 of 2"), "{:?}", logs[1].2);
    let (again, second_lease) = w.claim().await;
    assert_eq!(again, id);
    assert!(w
        .store
        .start(&w.runtime.id, &id, &second_lease, 8_100)
        .await
        .unwrap());
    assert_eq!(
        w.report(&id, &second_lease, &[log(4, "second attempt")])
            .await,
        stored(4, false)
    );
    assert_eq!(
        w.store
            .end_lease(&id, &second_lease, true, "runtime lost again", 9_000)
            .await
            .unwrap(),
        LostOutcome::Ended(ExecutionStatus::Error)
    );
    let logs = w.logs(&id).await;
    assert_eq!(
        logs.iter().map(|l| (l.0, l.1.as_str())).collect::<Vec<_>>(),
        vec![(1, "INFO"), (3, "WARN"), (4, "INFO"), (5, "ERROR")]
    );
    assert_eq!(w.get(&id).await.status, ExecutionStatus::Error);

    // A cancel was asked for: CANCELED, not retried, with a WARN line.
    let (id, lease) = w.running(3).await;
    w.store
        .cancel(&w.org.id, &id, &w.admin.id, 9_500)
        .await
        .unwrap();
    assert_eq!(
        w.store
            .end_lease(&id, &lease, true, "runtime lost", 10_000)
            .await
            .unwrap(),
        LostOutcome::Ended(ExecutionStatus::Canceled)
    );
    let got = w.get(&id).await;
    assert_eq!(got.status, ExecutionStatus::Canceled);
    assert_eq!(got.end, Some(10_000));
    assert_eq!(got.canceled_by, Some(w.admin.id.clone()));
    let logs = w.logs(&id).await;
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0].1, "WARN");

    // Canceled while RUNNING, and the runtime says it never spawned it: a cancel is
    // final, so it is CANCELED, never queued to run again.
    let (id, lease) = w.running(1).await;
    w.store
        .cancel(&w.org.id, &id, &w.admin.id, 11_000)
        .await
        .unwrap();
    assert_eq!(
        w.store
            .end_lease(&id, &lease, false, "never spawned", 11_500)
            .await
            .unwrap(),
        LostOutcome::Ended(ExecutionStatus::Canceled)
    );
    assert_eq!(w.get(&id).await.status, ExecutionStatus::Canceled);
    assert_eq!(
        w.store
            .claim_next(&w.runtime.id, "lease-after")
            .await
            .unwrap(),
        None
    );
}

async fn end_lease_is_stale_once_the_lease_changed(store: Arc<dyn Store>) {
    let w = Arc::new(world(store).await);
    let (id, lease) = w.running(1).await;
    assert_eq!(
        w.store
            .end_lease(&id, "other-lease", true, "lost", 1_000)
            .await
            .unwrap(),
        LostOutcome::Stale
    );
    assert_eq!(w.get(&id).await.status, ExecutionStatus::Running);

    // Two servers ending the same lease at once: one does it, the other finds it stale.
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let w = w.clone();
            let (id, lease) = (id.clone(), lease.clone());
            tokio::spawn(async move {
                w.store
                    .end_lease(&id, &lease, true, "lost", 2_000)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.unwrap());
    }
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| **o == LostOutcome::Ended(ExecutionStatus::Error))
            .count(),
        1,
        "{outcomes:?}"
    );
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| **o == LostOutcome::Stale)
            .count(),
        3
    );
    assert_eq!(w.logs(&id).await.len(), 1);

    // Ended by its runtime: stale.
    let (id, lease) = w.running(1).await;
    w.report(
        &id,
        &lease,
        &[ended(1, 3_000, ExecutionStatus::Finished, Some(0))],
    )
    .await;
    assert_eq!(
        w.store
            .end_lease(&id, &lease, true, "lost", 3_100)
            .await
            .unwrap(),
        LostOutcome::Stale
    );
    assert_eq!(w.get(&id).await.status, ExecutionStatus::Finished);
}

// ---------------------------------------------------------------------------
// Concurrency.

async fn concurrent_claims_hand_out_each_run_once(store: Arc<dyn Store>) {
    const RUNS: usize = 200;
    const CLAIMERS: usize = 8;
    let w = Arc::new(world(store).await);
    let mut queued = HashSet::new();
    for i in 0..RUNS {
        queued.insert(w.enqueue(1_000 + i as Millis).await);
    }
    let claimers: Vec<_> = (0..CLAIMERS)
        .map(|claimer| {
            let w = w.clone();
            tokio::spawn(async move {
                let mut claimed = Vec::new();
                loop {
                    let lease = format!("claimer-{claimer}-{}", claimed.len());
                    match w.store.claim_next(&w.runtime.id, &lease).await.unwrap() {
                        Some(c) => {
                            assert_eq!(c.lease, lease);
                            claimed.push((c.execution_id, lease));
                        }
                        None => break,
                    }
                }
                claimed
            })
        })
        .collect();
    let mut all = Vec::new();
    for claimer in claimers {
        all.extend(claimer.await.unwrap());
    }
    let ids: HashSet<_> = all.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(all.len(), RUNS, "every run handed out exactly once");
    assert_eq!(ids, queued);
    // Each hand-out holds: the lease stored is the one its claimer got.
    let leases = w.store.leases_of_runtime(&w.runtime.id).await.unwrap();
    assert_eq!(leases.len(), RUNS);
    for (id, lease) in &all {
        assert_eq!(
            w.store.lease_status(id, lease).await.unwrap(),
            Some(ExecutionStatus::Pendent),
            "{id} under {lease}"
        );
    }
    assert_eq!(
        w.store.claim_next(&w.runtime.id, "late").await.unwrap(),
        None
    );
}

/// A cancel and a start racing: either the run starts and the cancel asks the
/// runtime to stop it, or the cancel wins and the run never starts.
async fn cancel_racing_start(store: Arc<dyn Store>) {
    let w = Arc::new(world(store).await);
    for i in 0..30 {
        let id = w.enqueue(1_000 + i).await;
        let (_, lease) = w.claim().await;
        let start = {
            let w = w.clone();
            let (id, lease) = (id.clone(), lease.clone());
            tokio::spawn(async move { w.store.start(&w.runtime.id, &id, &lease, 2_000).await })
        };
        let cancel = {
            let w = w.clone();
            let id = id.clone();
            tokio::spawn(async move { w.store.cancel(&w.org.id, &id, &w.admin.id, 2_000).await })
        };
        let started = start.await.unwrap().unwrap();
        let canceled = cancel.await.unwrap().unwrap();
        let status = w.get(&id).await.status;
        match (started, canceled) {
            (true, CancelOutcome::Running { lease: l }) => {
                assert_eq!(l, lease);
                assert_eq!(status, ExecutionStatus::Running);
                w.store
                    .end_lease(&id, &lease, true, "stopped", 3_000)
                    .await
                    .unwrap();
            }
            (false, CancelOutcome::Canceled { lease: Some(l) }) => {
                assert_eq!(l, lease);
                assert_eq!(status, ExecutionStatus::Canceled);
            }
            other => panic!("inconsistent race outcome {other:?}, status {status}"),
        }
        assert!(w.get(&id).await.status.is_ended());
    }
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

/// A write that has returned is seen by the very next read, from any task, even
/// right after reads that saw the state before it.
async fn every_acknowledged_write_is_read_at_once(store: Arc<dyn Store>) {
    let w = world(store).await;
    for round in 0..50 {
        let id = w.enqueue_on(&w.runtime.id, 1_000 + round, 1).await;
        let seen = w.store.get_execution(&w.org.id, &id).await.unwrap();
        assert_eq!(seen.status, ExecutionStatus::Pendent);
        w.store
            .cancel(&w.org.id, &id, &w.admin.id, 2_000)
            .await
            .unwrap();
        let reader = w.store.clone();
        let (org, read_id) = (w.org.id.clone(), id.clone());
        let seen = tokio::spawn(async move { reader.get_execution(&org, &read_id).await })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(seen.status, ExecutionStatus::Canceled, "round {round}");
        let seen = w.store.get_execution(&w.org.id, &id).await.unwrap();
        assert_eq!(seen.status, ExecutionStatus::Canceled, "round {round}");
    }
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
