//! `regente_store::copy`: a store populated through the `Store` trait is copied and
//! the copy is compared with the original through the trait, everything included.
//!
//! The SQLite-only tests run always. Those with PostgreSQL run when
//! `REGENTE_TEST_PG_URL` names a server (a role allowed to create databases): each
//! creates databases of its own and drops them at the end. Without the variable
//! they say they were skipped and pass.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use regente_core::{ExecutionStatus, Role};
use regente_store::copy::copy;
use regente_store::{
    CancelOutcome, Change, Enqueued, EventRecord, EventsOutcome, Execution, ExecutionFilter,
    IdempotencyKey, LostOutcome, Millis, NewExecution, NewRobotVersion, NewRuntime, Organization,
    Runtime, Store, User,
};
use serde_json::{json, Value};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};

mod support;
use sqlx::{Connection, PgConnection};
use support::with_postgres;

// ---------------------------------------------------------------------------
// Databases.

fn sqlite_url(dir: &Path, name: &str) -> String {
    format!("sqlite://{}", dir.join(name).display())
}

/// What the stores do not show through the trait, read with plain SQL (the same
/// statements on both backends).
#[derive(Debug, PartialEq)]
struct Hidden {
    /// (id, lease, attempt, max_attempts, last_event_seq, cancel_requested), by seq.
    executions: Vec<(String, Option<String>, i64, i64, i64, bool)>,
    /// (user_id, key, fingerprint, execution_id, created_at).
    idempotency_keys: Vec<(String, String, String, String, i64)>,
    /// Rows per table, in the order of [`TABLES`].
    counts: Vec<i64>,
}

const HIDDEN_EXECUTIONS: &str = "SELECT id, lease, attempt, max_attempts, last_event_seq, \
     cancel_requested FROM executions ORDER BY seq";
const HIDDEN_KEYS: &str = "SELECT user_id, key, fingerprint, execution_id, created_at \
     FROM idempotency_keys ORDER BY user_id, key";
const TABLES: [&str; 8] = [
    "organizations",
    "users",
    "runtimes",
    "robots",
    "robot_versions",
    "executions",
    "execution_logs",
    "idempotency_keys",
];

async fn hidden(url: &str) -> Hidden {
    macro_rules! read {
        ($conn:expr) => {{
            let mut conn = $conn;
            let executions = sqlx::query_as(HIDDEN_EXECUTIONS)
                .fetch_all(&mut conn)
                .await
                .unwrap();
            let idempotency_keys = sqlx::query_as(HIDDEN_KEYS)
                .fetch_all(&mut conn)
                .await
                .unwrap();
            let mut counts = Vec::new();
            for table in TABLES {
                let sql = format!("SELECT COUNT(*) FROM {table}");
                counts.push(
                    sqlx::query_scalar::<_, i64>(&sql)
                        .fetch_one(&mut conn)
                        .await
                        .unwrap(),
                );
            }
            conn.close().await.ok();
            Hidden {
                executions,
                idempotency_keys,
                counts,
            }
        }};
    }
    if url.starts_with("sqlite:") {
        let options = SqliteConnectOptions::from_str(url).unwrap().read_only(true);
        read!(SqliteConnection::connect_with(&options).await.unwrap())
    } else {
        read!(PgConnection::connect(url).await.unwrap())
    }
}

// ---------------------------------------------------------------------------
// A populated store.

fn id(n: u64) -> String {
    format!("{n:016x}")
}

fn user(n: u64, organization_id: &str, username: &str, role: Role) -> User {
    User {
        id: id(n),
        organization_id: organization_id.to_owned(),
        username: username.to_owned(),
        password_hash: format!("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA${username}-hash"),
        role,
        created_at: 1_700_000_000_000 + n as Millis,
    }
}

fn runtime(n: u64, organization_id: &str, name: &str, slots: u32) -> NewRuntime {
    NewRuntime {
        runtime: Runtime {
            id: id(n),
            organization_id: organization_id.to_owned(),
            name: name.to_owned(),
            slots,
            last_seen: None,
            created_at: 1_700_000_001_000 + n as Millis,
        },
        key_hash: format!("{:064x}", n * 7919),
    }
}

/// Bytes of every value, in a package of `len` bytes.
fn package(len: usize, salt: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(salt))
        .collect()
}

fn event(seq: u64, change: Change) -> EventRecord {
    EventRecord {
        seq,
        time: 1_700_000_100_000 + seq as Millis,
        change,
    }
}

fn log(seq: u64, level: &str, message: &str) -> EventRecord {
    event(
        seq,
        Change::Log {
            level: level.into(),
            message: message.into(),
        },
    )
}

fn ended(seq: u64, status: ExecutionStatus, exit_code: Option<i32>, reason: &str) -> EventRecord {
    event(
        seq,
        Change::Ended {
            status,
            exit_code,
            reason: reason.into(),
        },
    )
}

/// A live lease left in the store, to go on with after the copy.
struct LiveRun {
    runtime_id: String,
    execution_id: String,
    lease: String,
    /// The last event stored.
    acked: u64,
}

/// What was put in the store, to look everything up again.
struct Fixture {
    organizations: Vec<Organization>,
    users: Vec<User>,
    deleted_username: String,
    runtimes: Vec<NewRuntime>,
    /// (organization id, robot id, package of each version, oldest first).
    robots: Vec<(String, String, Vec<Vec<u8>>)>,
    /// (organization id, execution id), in submission order.
    executions: Vec<(String, String)>,
    /// Every lease ever handed out: (execution id, lease).
    leases: Vec<(String, String)>,
    /// (request, key) enqueued with an idempotency key.
    keyed: Vec<(NewExecution, IdempotencyKey)>,
    live: LiveRun,
    statuses: Vec<ExecutionStatus>,
}

struct Builder {
    store: Arc<dyn Store>,
    next: u64,
    init: Millis,
    fixture: Fixture,
}

impl Builder {
    fn next_id(&mut self) -> String {
        self.next += 1;
        id(1_000 + self.next)
    }

    fn new_execution(
        &mut self,
        organization: usize,
        runtime: usize,
        robot: usize,
        version: u32,
        variables: Value,
        max_attempts: u32,
    ) -> NewExecution {
        self.init += 1_000;
        let organization_id = self.fixture.organizations[organization].id.clone();
        let submitted_by = self
            .fixture
            .users
            .iter()
            .find(|u| u.organization_id == organization_id)
            .unwrap()
            .id
            .clone();
        NewExecution {
            id: self.next_id(),
            organization_id,
            runtime_id: self.fixture.runtimes[runtime].runtime.id.clone(),
            robot_id: self.fixture.robots[robot].1.clone(),
            robot_version: version,
            variables,
            init: self.init,
            submitted_by,
            max_attempts,
        }
    }

    async fn enqueue(&mut self, new: NewExecution, key: Option<IdempotencyKey>) -> String {
        assert_eq!(
            self.store.enqueue(&new, key.as_ref()).await.unwrap(),
            Enqueued::Created
        );
        self.fixture
            .executions
            .push((new.organization_id.clone(), new.id.clone()));
        if let Some(key) = key {
            self.fixture.keyed.push((new.clone(), key));
        }
        new.id
    }

    /// Queues a run on runtime 0 of organisation 0 and hands it out; the queue
    /// must be empty before. Returns (id, lease).
    async fn claimed(&mut self, variables: Value, max_attempts: u32) -> (String, String) {
        let new = self.new_execution(0, 0, 0, 2, variables, max_attempts);
        let id = self.enqueue(new, None).await;
        let lease = format!("lease-{}", self.next_id());
        let runtime_id = self.fixture.runtimes[0].runtime.id.clone();
        let claimed = self
            .store
            .claim_next(&runtime_id, &lease)
            .await
            .unwrap()
            .expect("a run to claim");
        assert_eq!(claimed.execution_id, id, "the queue was not empty");
        self.fixture.leases.push((id.clone(), lease.clone()));
        (id, lease)
    }

    async fn running(&mut self, variables: Value, max_attempts: u32) -> (String, String) {
        let (id, lease) = self.claimed(variables, max_attempts).await;
        let runtime_id = self.fixture.runtimes[0].runtime.id.clone();
        assert!(self
            .store
            .start(&runtime_id, &id, &lease, self.init + 10)
            .await
            .unwrap());
        (id, lease)
    }

    async fn report(&self, id: &str, lease: &str, events: &[EventRecord]) {
        let runtime_id = &self.fixture.runtimes[0].runtime.id;
        let outcome = self
            .store
            .record_events(runtime_id, id, lease, events)
            .await
            .unwrap();
        assert!(
            matches!(outcome, EventsOutcome::Stored { .. }),
            "{outcome:?}"
        );
    }

    async fn cancel(&self, id: &str, now: Millis) -> CancelOutcome {
        let organization = &self.fixture.organizations[0].id;
        let by = &self
            .fixture
            .users
            .iter()
            .find(|u| u.username == "ops")
            .unwrap()
            .id;
        self.store.cancel(organization, id, by, now).await.unwrap()
    }
}

/// Two organisations with users, runtimes, robots, and executions in every state.
async fn populate(store: Arc<dyn Store>) -> Fixture {
    let acme = Organization {
        id: id(1),
        name: "acme".into(),
        is_root: true,
        created_at: 1_700_000_000_000,
    };
    let globex = Organization {
        id: id(2),
        name: "Globex «Ünïcode» 'quoted'".into(),
        is_root: false,
        created_at: 1_700_000_000_500,
    };
    let acme_admin = user(11, &acme.id, "admin", Role::Admin);
    let globex_admin = user(21, &globex.id, "globex-admin", Role::Admin);
    store.create_organization(&acme, &acme_admin).await.unwrap();
    store
        .create_organization(&globex, &globex_admin)
        .await
        .unwrap();
    let mut users = vec![acme_admin, globex_admin];
    for (n, organization, name, role) in [
        (12, &acme.id, "ops", Role::Admin),
        (13, &acme.id, "erp-integration", Role::Integration),
        (14, &acme.id, "leaver", Role::Integration),
        (22, &globex.id, "globex-bot", Role::Integration),
    ] {
        let user = user(n, organization, name, role);
        store.create_user(&user).await.unwrap();
        users.push(user);
    }
    store.delete_user(&acme.id, &id(14)).await.unwrap();
    users.retain(|u| u.id != id(14));

    let mut runtimes = vec![
        runtime(31, &acme.id, "desk-1", 2),
        runtime(32, &acme.id, "desk 2 «é»", 4),
        runtime(41, &globex.id, "globex-vm", 1),
    ];
    for new in &runtimes {
        store.create_runtime(new).await.unwrap();
    }
    store
        .touch_runtime(&runtimes[0].runtime.id, 1_700_000_050_000)
        .await
        .unwrap();
    runtimes[0].runtime.last_seen = Some(1_700_000_050_000);

    let mut robots = Vec::new();
    for (organization, name, packages) in [
        (
            &acme.id,
            "invoices",
            vec![package(70_000, 1), package(300_000, 2)],
        ),
        (&globex.id, "reports", vec![package(256, 3)]),
    ] {
        let mut robot_id = None;
        for (i, bytes) in packages.iter().enumerate() {
            let (got, version) = store
                .add_robot_version(&NewRobotVersion {
                    organization_id: organization.clone(),
                    new_robot_id: id(51 + robots.len() as u64),
                    name: name.into(),
                    sha256: format!("{:064x}", bytes.len()),
                    manifest: format!(
                        "name = \"{name}\"\ncommand = [\"python\", \"main.py\"]\n# v{i} «ü»\n"
                    ),
                    package: bytes.clone(),
                    created_at: 1_700_000_002_000 + i as Millis,
                })
                .await
                .unwrap();
            assert_eq!(version as usize, i + 1);
            robot_id = Some(got);
        }
        robots.push((organization.clone(), robot_id.unwrap(), packages));
    }

    let mut b = Builder {
        store: store.clone(),
        next: 0,
        init: 1_700_000_010_000,
        fixture: Fixture {
            organizations: vec![acme, globex],
            users,
            deleted_username: "leaver".into(),
            runtimes,
            robots,
            executions: Vec::new(),
            leases: Vec::new(),
            keyed: Vec::new(),
            live: LiveRun {
                runtime_id: String::new(),
                execution_id: String::new(),
                lease: String::new(),
                acked: 0,
            },
            statuses: Vec::new(),
        },
    };

    // FINISHED with a JSON return value, logs of every kind and progress.
    let (run, lease) = b
        .running(
            json!({"NAME": "Zoë 世界", "N": 1.5, "QUOTE": "say \"hi\"\n", "LIST": [1, null, true]}),
            1,
        )
        .await;
    b.report(
        &run,
        &lease,
        &[
            log(1, "INFO", "héllo 世界 🚀"),
            log(
                2,
                "WARN",
                "line 1\nline 2 \"double\" 'single' \\ backslash\ttab\r\n",
            ),
            event(3, Change::Progress(42.5)),
            event(
                4,
                Change::Return(
                    json!({"total": 12.34, "items": ["a", "b"], "nested": {"ok": true, "none": null}}),
                ),
            ),
            log(5, "ERROR", ""),
            ended(6, ExecutionStatus::Finished, Some(0), "finished"),
        ],
    )
    .await;
    // FINISHED after more log lines than one page of the copy holds.
    let (run, lease) = b.running(json!({"CHATTY": true}), 1).await;
    let mut events: Vec<EventRecord> = (1..=1_234)
        .map(|seq| {
            log(
                seq,
                "INFO",
                &format!("line {seq}: «{}»", "x".repeat(seq as usize % 50)),
            )
        })
        .collect();
    events.push(ended(1_235, ExecutionStatus::Finished, Some(0), "finished"));
    b.report(&run, &lease, &events).await;
    // FINISHED with a text return value.
    let (run, lease) = b.running(json!({}), 1).await;
    b.report(
        &run,
        &lease,
        &[
            event(1, Change::Return(json!("done \"ok\"\nbye ✓"))),
            ended(2, ExecutionStatus::Finished, Some(0), "finished"),
        ],
    )
    .await;
    // ERROR with an exit code, and without (killed by a signal).
    let (run, lease) = b.running(json!({"N": -7}), 1).await;
    b.report(
        &run,
        &lease,
        &[
            event(1, Change::Progress(70.25)),
            log(2, "ERROR", "Traceback (most recent call last):\n  boom"),
            ended(
                3,
                ExecutionStatus::Error,
                Some(3),
                "the robot exited with code 3",
            ),
        ],
    )
    .await;
    let (run, lease) = b.running(json!({"N": 0}), 1).await;
    b.report(
        &run,
        &lease,
        &[ended(1, ExecutionStatus::Error, None, "killed by signal 9")],
    )
    .await;
    // CANCELED while PENDENT and handed out, and while RUNNING.
    let (run, _) = b.claimed(json!({"N": 1}), 1).await;
    assert!(matches!(
        b.cancel(&run, b.init + 50).await,
        CancelOutcome::Canceled { lease: Some(_) }
    ));
    let (run, lease) = b.running(json!({"N": 2}), 1).await;
    assert!(matches!(
        b.cancel(&run, b.init + 50).await,
        CancelOutcome::Running { .. }
    ));
    b.report(
        &run,
        &lease,
        &[
            log(1, "INFO", "stopping"),
            ended(2, ExecutionStatus::Canceled, Some(130), "canceled"),
        ],
    )
    .await;
    // ERROR because its runtime was lost while it ran.
    let (run, lease) = b.running(json!({"N": 3}), 1).await;
    assert_eq!(
        b.store
            .end_lease(&run, &lease, true, "the runtime was lost", b.init + 60)
            .await
            .unwrap(),
        LostOutcome::Ended(ExecutionStatus::Error)
    );
    // RUNNING with a cancel requested, and a NUL in a log line.
    let (run, lease) = b.running(json!({"N": 4}), 1).await;
    b.report(
        &run,
        &lease,
        &[
            event(1, Change::Progress(10.0)),
            log(2, "INFO", "a NUL \0 in the middle"),
        ],
    )
    .await;
    assert!(matches!(
        b.cancel(&run, b.init + 70).await,
        CancelOutcome::Running { .. }
    ));
    // PENDENT and handed out, not started.
    b.claimed(json!({"N": 5}), 1).await;
    // RUNNING, to go on with after the copy.
    let (run, lease) = b.running(json!({"N": 6}), 1).await;
    b.report(
        &run,
        &lease,
        &[
            log(1, "INFO", "first"),
            event(2, Change::Progress(55.5)),
            log(3, "DEBUG", "third"),
        ],
    )
    .await;
    b.fixture.live = LiveRun {
        runtime_id: b.fixture.runtimes[0].runtime.id.clone(),
        execution_id: run,
        lease,
        acked: 3,
    };
    // Lost while running with a retry left: back in the queue, attempt 1 spent.
    let (run, lease) = b.running(json!({"N": 7}), 2).await;
    b.report(&run, &lease, &[log(1, "INFO", "attempt 1")]).await;
    assert_eq!(
        b.store
            .end_lease(&run, &lease, true, "the runtime was lost", b.init + 80)
            .await
            .unwrap(),
        LostOutcome::Requeued
    );
    // Globex: a finished run with logs.
    let new = b.new_execution(1, 2, 1, 1, json!({"GLOBEX": true}), 1);
    let run = b.enqueue(new, None).await;
    let globex_runtime = b.fixture.runtimes[2].runtime.id.clone();
    let lease = "lease-globex".to_string();
    let claimed = store.claim_next(&globex_runtime, &lease).await.unwrap();
    assert_eq!(claimed.map(|c| c.execution_id), Some(run.clone()));
    b.fixture.leases.push((run.clone(), lease.clone()));
    assert!(store
        .start(&globex_runtime, &run, &lease, b.init + 100)
        .await
        .unwrap());
    let outcome = store
        .record_events(
            &globex_runtime,
            &run,
            &lease,
            &[
                log(1, "INFO", "globex says hi"),
                ended(2, ExecutionStatus::Finished, Some(0), "finished"),
            ],
        )
        .await
        .unwrap();
    assert!(matches!(outcome, EventsOutcome::Stored { .. }));
    // Waiting in the queues, some with idempotency keys.
    for (n, (organization, runtime, robot, version)) in [
        (0, 0, 0, 1),
        (0, 0, 0, 2),
        (0, 1, 0, 2),
        (1, 2, 1, 1),
        (0, 0, 0, 2),
        (1, 2, 1, 1),
    ]
    .into_iter()
    .enumerate()
    {
        let new = b.new_execution(
            organization,
            runtime,
            robot,
            version,
            json!({"I": n, "TEXT": format!("queued «{n}»")}),
            3,
        );
        let key = (n % 2 == 0).then(|| IdempotencyKey {
            user_id: new.submitted_by.clone(),
            key: format!("order-{n}-ü"),
            fingerprint: format!("fingerprint-{n}"),
            expired_before: 0,
        });
        b.enqueue(new, key).await;
    }
    // A PENDENT run canceled before it was handed out.
    let new = b.new_execution(0, 1, 0, 1, json!({}), 1);
    let run = b.enqueue(new, None).await;
    assert_eq!(
        b.cancel(&run, b.init + 90).await,
        CancelOutcome::Canceled { lease: None }
    );
    let mut statuses = Vec::new();
    for (organization, run) in &b.fixture.executions {
        statuses.push(store.get_execution(organization, run).await.unwrap().status);
    }
    for status in ExecutionStatus::ALL {
        assert!(statuses.contains(&status), "no {status} execution");
    }
    b.fixture.statuses = statuses;
    b.fixture
}

// ---------------------------------------------------------------------------
// Comparing two stores.

/// Text as the target stores it: PostgreSQL holds no NUL.
fn as_stored(text: &str, nul_replaced: bool) -> String {
    if nul_replaced {
        text.replace('\0', "\u{FFFD}")
    } else {
        text.to_owned()
    }
}

fn all() -> ExecutionFilter {
    ExecutionFilter {
        limit: 10_000,
        ..ExecutionFilter::default()
    }
}

/// Everything in `source` reads the same in `target`, through the trait.
async fn assert_same(
    source: &Arc<dyn Store>,
    target: &Arc<dyn Store>,
    fixture: &Fixture,
    nul_replaced: bool,
) {
    // Organisations and users, with their password hashes.
    assert_eq!(
        target.root_organization().await.unwrap(),
        source.root_organization().await.unwrap()
    );
    assert_eq!(
        target.root_organization().await.unwrap().as_ref(),
        Some(&fixture.organizations[0])
    );
    for organization in &fixture.organizations {
        assert_eq!(
            &target.get_organization(&organization.id).await.unwrap(),
            organization
        );
        assert_eq!(
            target.list_users(&organization.id).await.unwrap(),
            source.list_users(&organization.id).await.unwrap()
        );
        assert_eq!(
            target.list_runtimes(&organization.id).await.unwrap(),
            source.list_runtimes(&organization.id).await.unwrap()
        );
        assert_eq!(
            target.list_robots(&organization.id).await.unwrap(),
            source.list_robots(&organization.id).await.unwrap()
        );
    }
    assert_eq!(
        target.count_users().await.unwrap(),
        fixture.users.len() as u64
    );
    for user in &fixture.users {
        assert_eq!(
            target
                .find_user_by_username(&user.username)
                .await
                .unwrap()
                .as_ref(),
            Some(user)
        );
        assert_eq!(&target.get_user(&user.id).await.unwrap(), user);
    }
    assert_eq!(
        target
            .find_user_by_username(&fixture.deleted_username)
            .await
            .unwrap(),
        None
    );

    // Runtimes, found by the hash of their keys.
    for new in &fixture.runtimes {
        assert_eq!(
            target
                .find_runtime_by_key_hash(&new.key_hash)
                .await
                .unwrap()
                .as_ref(),
            Some(&new.runtime)
        );
        assert_eq!(
            target
                .get_runtime(&new.runtime.organization_id, &new.runtime.id)
                .await
                .unwrap(),
            new.runtime
        );
    }

    // Robots, their versions and the package bytes.
    for (organization, robot_id, packages) in &fixture.robots {
        let robot = target.get_robot(organization, robot_id).await.unwrap();
        assert_eq!(
            robot,
            source.get_robot(organization, robot_id).await.unwrap()
        );
        assert_eq!(robot.versions.len(), packages.len());
        for (version, bytes) in robot.versions.iter().zip(packages) {
            assert_eq!(version.size, bytes.len() as u64);
            let copied = target
                .robot_package(organization, robot_id, version.version)
                .await
                .unwrap();
            assert!(&copied == bytes, "package of version {}", version.version);
        }
    }

    // Executions, their logs and their places in the queues.
    for (organization, run) in &fixture.executions {
        let want = source.get_execution(organization, run).await.unwrap();
        let got = target.get_execution(organization, run).await.unwrap();
        let mut expected = want.clone();
        expected.end_reason = want
            .end_reason
            .as_deref()
            .map(|r| as_stored(r, nul_replaced));
        assert_eq!(got, expected);
        assert_eq!(
            target.queue_position(&got).await.unwrap(),
            source.queue_position(&want).await.unwrap(),
            "queue position of {run}"
        );
        let mut logs = source.execution_logs(organization, run).await.unwrap();
        for line in &mut logs {
            line.message = as_stored(&line.message, nul_replaced);
        }
        assert_eq!(
            target.execution_logs(organization, run).await.unwrap(),
            logs,
            "logs of {run}"
        );
    }
    let mut listed = 0;
    for organization in &fixture.organizations {
        let got = target
            .list_executions(&organization.id, &all())
            .await
            .unwrap();
        let want = source
            .list_executions(&organization.id, &all())
            .await
            .unwrap();
        assert_eq!(ids(&got), ids(&want));
        listed += got.len();
        for status in ExecutionStatus::ALL {
            let filter = ExecutionFilter {
                status: Some(status),
                ..all()
            };
            assert_eq!(
                ids(&target
                    .list_executions(&organization.id, &filter)
                    .await
                    .unwrap()),
                ids(&source
                    .list_executions(&organization.id, &filter)
                    .await
                    .unwrap())
            );
        }
        // Pages by seq.
        if let Some(middle) = want.get(want.len() / 2) {
            let filter = ExecutionFilter {
                before_seq: Some(middle.seq),
                limit: 3,
                ..ExecutionFilter::default()
            };
            assert_eq!(
                ids(&target
                    .list_executions(&organization.id, &filter)
                    .await
                    .unwrap()),
                ids(&source
                    .list_executions(&organization.id, &filter)
                    .await
                    .unwrap())
            );
        }
    }
    assert_eq!(listed, fixture.executions.len());

    // Live leases and the status under every lease ever handed out.
    for new in &fixture.runtimes {
        assert_eq!(
            target.leases_of_runtime(&new.runtime.id).await.unwrap(),
            source.leases_of_runtime(&new.runtime.id).await.unwrap()
        );
    }
    let sorted = |mut leases: Vec<regente_store::Lease>| {
        leases.sort_by(|a, b| a.execution_id.cmp(&b.execution_id));
        leases
    };
    assert_eq!(
        sorted(target.leases_seen_before(Millis::MAX).await.unwrap()),
        sorted(source.leases_seen_before(Millis::MAX).await.unwrap())
    );
    for (run, lease) in &fixture.leases {
        assert_eq!(
            target.lease_status(run, lease).await.unwrap(),
            source.lease_status(run, lease).await.unwrap()
        );
    }
}

fn ids(executions: &[Execution]) -> Vec<(String, i64)> {
    executions.iter().map(|e| (e.id.clone(), e.seq)).collect()
}

/// The copy works on as the original would. Returns the runs of runtime 0 that
/// were waiting, in the order the target handed them out.
async fn assert_usable(target: &Arc<dyn Store>, fixture: &Fixture) -> Vec<String> {
    // The idempotency keys still answer their executions.
    for (new, key) in &fixture.keyed {
        let mut again = new.clone();
        again.id = "ffffffffffffffff".into();
        assert_eq!(
            target.enqueue(&again, Some(key)).await.unwrap(),
            Enqueued::Existing(new.id.clone())
        );
    }
    // The live run goes on under its lease; events already stored are skipped.
    let live = &fixture.live;
    assert_eq!(
        target
            .record_events(
                &live.runtime_id,
                &live.execution_id,
                &live.lease,
                &[
                    log(live.acked, "DEBUG", "third, again"),
                    log(live.acked + 1, "INFO", "after the move"),
                    ended(live.acked + 2, ExecutionStatus::Finished, Some(0), "done"),
                ],
            )
            .await
            .unwrap(),
        EventsOutcome::Stored {
            acked: live.acked + 2,
            ended: true
        }
    );
    let organization = &fixture.organizations[0].id;
    let logs = target
        .execution_logs(organization, &live.execution_id)
        .await
        .unwrap();
    let messages: Vec<&str> = logs.iter().map(|l| l.message.as_str()).collect();
    assert_eq!(messages, ["first", "third", "after the move"]);

    // A new run comes after every copied one.
    let mut max_seq = 0;
    for (organization, run) in &fixture.executions {
        max_seq = max_seq.max(target.get_execution(organization, run).await.unwrap().seq);
    }
    let template = &fixture.keyed[0].0;
    let new = NewExecution {
        id: "eeeeeeeeeeeeeeee".into(),
        init: template.init + 1_000_000,
        ..template.clone()
    };
    assert_eq!(target.enqueue(&new, None).await.unwrap(), Enqueued::Created);
    let queued = target
        .get_execution(&new.organization_id, &new.id)
        .await
        .unwrap();
    assert!(
        queued.seq > max_seq,
        "new seq {} after {max_seq}",
        queued.seq
    );
    // And the queue hands out in the original order, the new run last.
    let runtime_id = &fixture.runtimes[0].runtime.id;
    let mut claimed = Vec::new();
    while let Some(next) = target.claim_next(runtime_id, "lease-after").await.unwrap() {
        claimed.push(next.execution_id);
    }
    assert_eq!(claimed.pop(), Some(new.id));
    assert!(claimed.len() > 1);
    claimed
}

/// Populates a store at `from`, copies it to `to`, and compares.
async fn round_trip(from: &str, to: &str) {
    let source = regente_store::open(from).await.expect("open the source");
    let fixture = populate(source.clone()).await;
    // The token secret servers on PostgreSQL share (none on SQLite).
    let secret = source
        .shared_secret(b"the old cluster's secret")
        .await
        .unwrap();
    let before = hidden(from).await;

    let report = copy(from, to).await.expect("copy");
    assert!(!report.source_migrated);
    let rows: Vec<u64> = TABLES.iter().map(|t| report.rows(t).unwrap()).collect();
    assert_eq!(
        rows,
        before.counts.iter().map(|&c| c as u64).collect::<Vec<_>>()
    );
    assert_eq!(
        report.rows("executions"),
        Some(fixture.executions.len() as u64)
    );
    assert_eq!(report.rows("robot_versions"), Some(3));
    assert!(rows.iter().all(|&n| n > 0), "{report}");

    let nul_replaced = from.starts_with("sqlite:") && !to.starts_with("sqlite:");
    let target = regente_store::open(to).await.expect("open the target");
    assert_same(&source, &target, &fixture, nul_replaced).await;
    assert_eq!(hidden(to).await, before);
    // The source is left as it was.
    assert_eq!(hidden(from).await, before);

    // The shared token secret moves along to PostgreSQL, and is left behind
    // (with a word in the report) when the target keeps none.
    match (from.starts_with("sqlite:"), to.starts_with("sqlite:")) {
        (true, true) => {
            assert_eq!(report.rows("settings"), None);
            assert!(report.left_behind.is_empty());
        }
        // The target's is left empty: its first server sets it.
        (true, false) => {
            assert_eq!(report.rows("settings"), None);
            assert!(report.left_behind.is_empty());
            let fresh = target
                .shared_secret(b"the new cluster's secret")
                .await
                .unwrap();
            assert_eq!(fresh.as_deref(), Some(&b"the new cluster's secret"[..]));
        }
        (false, true) => {
            assert_eq!(report.rows("settings"), None);
            assert_eq!(report.left_behind.len(), 1);
            assert_eq!(report.left_behind[0].0.table, "settings");
            assert_eq!(report.left_behind[0].0.rows, 1);
            assert!(
                report.to_string().contains("settings not copied"),
                "{report}"
            );
        }
        (false, false) => {
            assert_eq!(report.rows("settings"), Some(1));
            assert!(report.left_behind.is_empty());
            let kept = target
                .shared_secret(b"the new cluster's secret")
                .await
                .unwrap();
            assert_eq!(kept, secret);
            assert!(kept.is_some());
        }
    }

    let handed_out = assert_usable(&target, &fixture).await;
    // In the order the source hands them out.
    let runtime_id = &fixture.runtimes[0].runtime.id;
    let mut expected = Vec::new();
    while let Some(next) = source.claim_next(runtime_id, "lease-after").await.unwrap() {
        expected.push(next.execution_id);
    }
    assert_eq!(handed_out, expected);
}

// ---------------------------------------------------------------------------
// Tests.

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_to_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    round_trip(
        &sqlite_url(dir.path(), "old.db"),
        &sqlite_url(dir.path(), "new.db"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_to_postgres() {
    with_postgres("sqlite_to_postgres", 1, |urls| async move {
        let dir = tempfile::tempdir().unwrap();
        round_trip(&sqlite_url(dir.path(), "regente.db"), &urls[0]).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_to_sqlite() {
    with_postgres("postgres_to_sqlite", 1, |urls| async move {
        let dir = tempfile::tempdir().unwrap();
        round_trip(&urls[0], &sqlite_url(dir.path(), "regente.db")).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_to_postgres() {
    with_postgres("postgres_to_postgres", 2, |urls| async move {
        round_trip(&urls[0], &urls[1]).await;
    })
    .await;
}

/// A store with only its first admin, as a server leaves it on its first start.
async fn bootstrapped(url: &str) -> Arc<dyn Store> {
    let store = regente_store::open(url).await.unwrap();
    let organization = Organization {
        id: id(900),
        name: "other".into(),
        is_root: true,
        created_at: 5,
    };
    store
        .create_organization(
            &organization,
            &user(901, &organization.id, "root", Role::Admin),
        )
        .await
        .unwrap();
    store
}

async fn refuses_a_non_empty_target(source_url: &str, target_url: &str) {
    let source = regente_store::open(source_url).await.unwrap();
    populate(source).await;
    let target = bootstrapped(target_url).await;
    let before = hidden(target_url).await;

    let error = copy(source_url, target_url)
        .await
        .expect_err("copy into a non-empty store")
        .to_string();
    assert!(error.contains("not empty"), "{error}");
    assert!(error.contains("organizations"), "{error}");
    assert!(error.contains("users"), "{error}");

    assert_eq!(hidden(target_url).await, before);
    assert_eq!(target.count_users().await.unwrap(), 1);
    assert_eq!(
        target.root_organization().await.unwrap().unwrap().name,
        "other"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refuses_a_non_empty_sqlite_target() {
    let dir = tempfile::tempdir().unwrap();
    refuses_a_non_empty_target(
        &sqlite_url(dir.path(), "old.db"),
        &sqlite_url(dir.path(), "new.db"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refuses_a_non_empty_postgres_target() {
    with_postgres(
        "refuses_a_non_empty_postgres_target",
        1,
        |urls| async move {
            let dir = tempfile::tempdir().unwrap();
            refuses_a_non_empty_target(&sqlite_url(dir.path(), "regente.db"), &urls[0]).await;
        },
    )
    .await;
}

/// A source the target cannot take (an execution of a runtime that does not exist,
/// as a database edited by hand could hold) fails the copy midway.
async fn failed_copy_leaves_the_target_empty(target_url: &str) {
    let dir = tempfile::tempdir().unwrap();
    let source_url = sqlite_url(dir.path(), "regente.db");
    let source = regente_store::open(&source_url).await.unwrap();
    let fixture = populate(source.clone()).await;
    drop(source);
    let options = SqliteConnectOptions::from_str(&source_url)
        .unwrap()
        .foreign_keys(false);
    let mut conn = SqliteConnection::connect_with(&options).await.unwrap();
    sqlx::query(
        "INSERT INTO executions (id, organization_id, runtime_id, robot_id, robot_version, \
         variables, status, init) VALUES ('dddddddddddddddd', ?, 'no-such-runtime', ?, 1, '{}', \
         'PENDENT', 1)",
    )
    .bind(&fixture.organizations[0].id)
    .bind(&fixture.robots[0].1)
    .execute(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();

    let error = copy(&source_url, target_url)
        .await
        .expect_err("copy of a broken source");
    let error = format!("{error:#}");
    assert!(error.contains("executions"), "{error}");
    let target = hidden(target_url).await;
    assert_eq!(target.counts, vec![0; TABLES.len()], "{target:?}");
    // Once the source is repaired, the same target takes it.
    let options = SqliteConnectOptions::from_str(&source_url).unwrap();
    let mut conn = SqliteConnection::connect_with(&options).await.unwrap();
    sqlx::query("DELETE FROM executions WHERE id = 'dddddddddddddddd'")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    let report = copy(&source_url, target_url).await.unwrap();
    assert_eq!(
        report.rows("executions"),
        Some(fixture.executions.len() as u64)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failed_copy_leaves_a_sqlite_target_empty() {
    let dir = tempfile::tempdir().unwrap();
    failed_copy_leaves_the_target_empty(&sqlite_url(dir.path(), "new.db")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failed_copy_leaves_a_postgres_target_empty() {
    with_postgres(
        "failed_copy_leaves_a_postgres_target_empty",
        1,
        |urls| async move {
            failed_copy_leaves_the_target_empty(&urls[0]).await;
        },
    )
    .await;
}

#[tokio::test]
async fn refuses_sources_that_are_not_current_stores() {
    let dir = tempfile::tempdir().unwrap();
    let target = sqlite_url(dir.path(), "new.db");

    // A missing file is not created.
    let missing = dir.path().join("missing.db");
    let error = copy(&sqlite_url(dir.path(), "missing.db"), &target)
        .await
        .expect_err("a missing source");
    assert!(format!("{error:#}").contains("source"), "{error:#}");
    assert!(!missing.exists());
    assert!(
        !dir.path().join("new.db").exists(),
        "the target was created"
    );

    // A database without Regente's schema.
    std::fs::write(dir.path().join("empty.db"), b"").unwrap();
    let error = copy(&sqlite_url(dir.path(), "empty.db"), &target)
        .await
        .expect_err("an empty source")
        .to_string();
    assert!(error.contains("no Regente store"), "{error}");

    // A store written by a newer Regente.
    let newer = sqlite_url(dir.path(), "newer.db");
    drop(regente_store::open(&newer).await.unwrap());
    let mut conn = SqliteConnection::connect(&newer).await.unwrap();
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (99990101000000, 'from the future', 1, x'00', 0)",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
    let error = copy(&newer, &target)
        .await
        .expect_err("a newer source")
        .to_string();
    assert!(error.contains("newer Regente"), "{error}");

    // Unknown schemes, and one database as both ends.
    assert!(copy("mysql://h/db", &target).await.is_err());
    assert!(copy(&target, "file:///tmp/x").await.is_err());
    let error = copy(&newer, &newer)
        .await
        .expect_err("same database")
        .to_string();
    assert!(error.contains("same database"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_empty_store_copies_to_an_empty_store() {
    let dir = tempfile::tempdir().unwrap();
    let from = sqlite_url(dir.path(), "old.db");
    let to = sqlite_url(dir.path(), "new.db");
    drop(regente_store::open(&from).await.unwrap());
    let report = copy(&from, &to).await.unwrap();
    assert_eq!(report.tables.len(), TABLES.len());
    assert!(report.tables.iter().all(|t| t.rows == 0));
    // A server started on it bootstraps as on a new install.
    let target = regente_store::open(&to).await.unwrap();
    assert_eq!(target.count_users().await.unwrap(), 0);
}
