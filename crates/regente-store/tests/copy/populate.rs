//! A store populated through the `Store` trait with every kind of row.

use super::*;
use regente_core::schedule::plan::{Misfire, Overlap};
use regente_store::prelude::*;
use regente_store::{
    FireOrigin, FireRun, Fired, Firing, MissedFire, NewScheduledRun, Schedule, ScheduleTarget,
};

pub(crate) fn id(n: u64) -> String {
    format!("{n:016x}")
}

pub(crate) fn user(n: u64, organization_id: &str, username: &str, role: Role) -> User {
    User {
        id: id(n),
        organization_id: organization_id.to_owned(),
        username: username.to_owned(),
        password_hash: format!("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA${username}-hash"),
        role,
        created_at: 1_700_000_000_000 + n as Millis,
    }
}

pub(crate) fn runtime(n: u64, organization_id: &str, name: &str, slots: u32) -> NewRuntime {
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
pub(crate) fn package(len: usize, salt: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(salt))
        .collect()
}

pub(crate) fn event(seq: u64, change: Change) -> EventRecord {
    EventRecord {
        seq,
        time: 1_700_000_100_000 + seq as Millis,
        change,
    }
}

pub(crate) fn log(seq: u64, level: &str, message: &str) -> EventRecord {
    event(
        seq,
        Change::Log {
            level: level.into(),
            message: message.into(),
        },
    )
}

pub(crate) fn ended(
    seq: u64,
    status: ExecutionStatus,
    exit_code: Option<i32>,
    reason: &str,
) -> EventRecord {
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
pub(crate) struct LiveRun {
    pub(crate) runtime_id: String,
    pub(crate) execution_id: String,
    pub(crate) lease: String,
    /// The last event stored.
    pub(crate) acked: u64,
}

/// What was put in the store, to look everything up again.
pub(crate) struct Fixture {
    pub(crate) organizations: Vec<Organization>,
    pub(crate) users: Vec<User>,
    pub(crate) deleted_username: String,
    pub(crate) runtimes: Vec<NewRuntime>,
    /// (organization id, robot id, package of each version, oldest first).
    pub(crate) robots: Vec<(String, String, Vec<Vec<u8>>)>,
    /// (organization id, execution id), in submission order.
    pub(crate) executions: Vec<(String, String)>,
    /// Every lease ever handed out: (execution id, lease).
    pub(crate) leases: Vec<(String, String)>,
    /// (request, key) enqueued with an idempotency key.
    pub(crate) keyed: Vec<(NewExecution, IdempotencyKey)>,
    pub(crate) live: LiveRun,
    pub(crate) statuses: Vec<ExecutionStatus>,
    /// (organization id, schedule id).
    pub(crate) schedules: Vec<(String, String)>,
    /// Consumers of the event stream and the cursors they saved.
    pub(crate) consumers: Vec<(String, EventCursor)>,
    /// (organization id, flow id, run id): a flow in two versions and a run.
    pub(crate) flows: Vec<(String, String, String)>,
    /// (organization id, credential name): sealed values in two versions.
    pub(crate) credentials: Vec<(String, String)>,
    /// (organization id, key hash): one key used and live, one revoked.
    pub(crate) api_keys: Vec<(String, String)>,
    /// Organisations with a webhook (its deliveries and attempts).
    pub(crate) webhook_organizations: Vec<String>,
}

pub(crate) struct Builder {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) next: u64,
    pub(crate) init: Millis,
    pub(crate) fixture: Fixture,
}

impl Builder {
    pub(crate) fn next_id(&mut self) -> String {
        self.next += 1;
        id(1_000 + self.next)
    }

    pub(crate) fn new_execution(
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
            flow_run_id: None,
            flow_step_id: None,
            schedule_id: None,
            scheduled_for: None,
        }
    }

    pub(crate) async fn enqueue(
        &mut self,
        new: NewExecution,
        key: Option<IdempotencyKey>,
    ) -> String {
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
    pub(crate) async fn claimed(
        &mut self,
        variables: Value,
        max_attempts: u32,
    ) -> (String, String) {
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

    pub(crate) async fn running(
        &mut self,
        variables: Value,
        max_attempts: u32,
    ) -> (String, String) {
        let (id, lease) = self.claimed(variables, max_attempts).await;
        let runtime_id = self.fixture.runtimes[0].runtime.id.clone();
        assert!(self
            .store
            .start(&runtime_id, &id, &lease, self.init + 10)
            .await
            .unwrap());
        (id, lease)
    }

    pub(crate) async fn report(&self, id: &str, lease: &str, events: &[EventRecord]) {
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

    pub(crate) async fn cancel(&self, id: &str, now: Millis) -> CancelOutcome {
        let organization = &self.fixture.organizations[0].id;
        let by = &self
            .fixture
            .users
            .iter()
            .find(|u| u.username == "ops")
            .unwrap()
            .id;
        self.store
            .cancel(organization, id, by, now, None)
            .await
            .unwrap()
    }
}

/// Two organisations with users, runtimes, robots, and executions in every state.
pub(crate) async fn populate(store: Arc<dyn Store>) -> Fixture {
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
    store
        .create_organization(&acme, &acme_admin, None)
        .await
        .unwrap();
    store
        .create_organization(&globex, &globex_admin, None)
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
        store.create_user(&user, None).await.unwrap();
        users.push(user);
    }
    // The audit log: a record written with its change, and one alone.
    let deleted = regente_store::AuditEntry {
        organization_id: acme.id.clone(),
        time: 1_700_000_001_000,
        actor_id: id(11),
        actor_name: "admin".into(),
        action: "user.delete".into(),
        object_type: "user".into(),
        object_id: id(14),
        address: Some("::1".into()),
        summary: serde_json::json!({"username": "leaver «é»"}),
    };
    store
        .delete_user(&acme.id, &id(14), Some(&deleted))
        .await
        .unwrap();
    store
        .record_audit(&regente_store::AuditEntry {
            organization_id: globex.id.clone(),
            actor_id: "runtime:0000000000000041".into(),
            actor_name: "runtime:0000000000000041".into(),
            action: "credential.handed_out".into(),
            object_type: "credential".into(),
            address: None,
            ..deleted
        })
        .await
        .unwrap();
    users.retain(|u| u.id != id(14));

    let mut runtimes = vec![
        runtime(31, &acme.id, "desk-1", 2),
        runtime(32, &acme.id, "desk 2 «é»", 4),
        runtime(41, &globex.id, "globex-vm", 1),
    ];
    for new in &runtimes {
        store.create_runtime(new, None).await.unwrap();
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
                .add_robot_version(
                    &NewRobotVersion {
                        organization_id: organization.clone(),
                        new_robot_id: id(51 + robots.len() as u64),
                        name: name.into(),
                        sha256: format!("{:064x}", bytes.len()),
                        manifest: format!(
                            "name = \"{name}\"\ncommand = [\"python\", \"main.py\"]\n# v{i} «ü»\n"
                        ),
                        package: bytes.clone(),
                        created_at: 1_700_000_002_000 + i as Millis,
                    },
                    None,
                )
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
            schedules: Vec::new(),
            consumers: Vec::new(),
            flows: Vec::new(),
            credentials: Vec::new(),
            api_keys: Vec::new(),
            webhook_organizations: Vec::new(),
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
    populate_flows(&mut b).await;
    populate_credentials(&mut b).await;
    populate_api_keys(&mut b).await;
    populate_webhooks(&mut b).await;
    // Schedules: one with a run, a skip and a missed fire; one paused.
    for (n, organization, runtime, robot, paused) in [(0, 0, 0, 0, false), (1, 1, 2, 1, true)] {
        let schedule = Schedule {
            id: id(81 + n),
            organization_id: b.fixture.organizations[organization].id.clone(),
            name: format!("nightly «{n}»"),
            target: ScheduleTarget::Robot {
                robot_id: b.fixture.robots[robot].1.clone(),
                runtime_id: b.fixture.runtimes[runtime].runtime.id.clone(),
            },
            variables: json!([{"name": "N", "type": "number", "value": n}]),
            rule: json!({"every": {"frequency": "weekly", "at": "02:30", "weekdays": ["mon"]}}),
            timezone: "America/Sao_Paulo".into(),
            start_at: Some(b.init),
            end_at: (n == 1).then_some(b.init + 10_000_000),
            overlap: Overlap::Skip,
            catchup_window_seconds: 600,
            misfire: Misfire::RunAll,
            jitter_seconds: 5,
            paused,
            pause_note: paused.then(|| "holidays «é»".into()),
            pause_after_failures: Some(3),
            consecutive_failures: 0,
            fired: 0,
            skipped: 0,
            missed: 0,
            next_fire_at: Some(b.init + 1_000),
            next_due_at: Some(b.init + 1_004),
            created_at: b.init,
            updated_at: b.init + 1,
        };
        store.create_schedule(&schedule, None).await.unwrap();
        if n == 0 {
            let mut run = b.new_execution(0, 0, 0, 2, json!({"N": 0}), 1);
            run.schedule_id = Some(schedule.id.clone());
            run.scheduled_for = Some(b.init + 500);
            b.fixture
                .executions
                .push((schedule.organization_id.clone(), run.id.clone()));
            let fired = store
                .fire_schedule(&Firing {
                    audit: None,
                    organization_id: schedule.organization_id.clone(),
                    schedule_id: schedule.id.clone(),
                    origin: FireOrigin::Backfill,
                    advance: None,
                    missed: vec![MissedFire {
                        scheduled_for: b.init + 100,
                        reason: "outside_window".into(),
                    }],
                    runs: vec![
                        FireRun {
                            scheduled_for: b.init + 500,
                            start: Ok(NewScheduledRun::Execution(Box::new(run))),
                        },
                        FireRun {
                            scheduled_for: b.init + 600,
                            start: Err("no runtime «x»".into()),
                        },
                    ],
                    now: b.init + 700,
                })
                .await
                .unwrap();
            assert!(matches!(fired, Fired::Applied(_)));
        }
        b.fixture
            .schedules
            .push((schedule.organization_id.clone(), schedule.id.clone()));
    }
    populate_flow_schedule(&mut b).await;
    // Runtimes online and offline, and consumers part way through the stream.
    let (online, offline) = (
        b.fixture.runtimes[0].runtime.id.clone(),
        b.fixture.runtimes[1].runtime.id.clone(),
    );
    assert!(store
        .runtime_connected(&online, "session-a", b.init + 200)
        .await
        .unwrap());
    assert!(store
        .runtime_connected(&offline, "session-b", b.init + 210)
        .await
        .unwrap());
    assert!(store
        .runtime_disconnected(&offline, "session-b", "closed", b.init + 220)
        .await
        .unwrap());
    for new in &mut b.fixture.runtimes[..2] {
        let runtime = &new.runtime;
        new.runtime = store
            .get_runtime(&runtime.organization_id, &runtime.id)
            .await
            .unwrap();
    }
    let events = events_after_at_least(&*store, EventCursor::START, 20).await;
    for (consumer, at) in [("console", 0), ("audit", 9), ("metrics", events.len() - 1)] {
        store
            .save_cursor(consumer, events[at].cursor, b.init + 300)
            .await
            .unwrap();
        b.fixture
            .consumers
            .push((consumer.into(), events[at].cursor));
    }
    b.fixture
}

/// A flow saved twice (two versions) and a run of it waiting on a retry's
/// backoff, with a step that ran and one that waits.
async fn populate_flows(b: &mut Builder) {
    let organization_id = b.fixture.organizations[1].id.clone();
    let created_by = b.fixture.users[1].id.clone();
    let mut saved = None;
    for n in 0..2 {
        let new = NewFlowVersion {
            id: b.next_id(),
            organization_id: organization_id.clone(),
            name: "nightly «report»".into(),
            definition: json!({"name": "nightly «report»", "steps": [], "n": n}),
            created: b.init + n,
            created_by: created_by.clone(),
        };
        saved = Some(b.store.save_flow(&new, None).await.unwrap());
    }
    let flow = saved.unwrap();
    assert_eq!(flow.version, 2);
    let step = |position: u32, id: &str, status: &str| FlowStep {
        position,
        step_id: id.into(),
        status: status.into(),
        attempt: position,
        execution_id: None,
        return_value: None,
        reason: None,
        not_before: None,
        deadline: None,
    };
    let mut fetched = step(0, "fetch", "FINISHED");
    fetched.return_value = Some(json!({"count": 3, "text": "a\u{0}b"}));
    fetched.execution_id = Some(b.next_id());
    let mut waiting = step(1, "report", "PENDENT");
    waiting.reason = Some("failed once".into());
    waiting.not_before = Some(b.init + 60_000);
    let run = FlowRun {
        id: b.next_id(),
        organization_id: organization_id.clone(),
        flow_id: flow.id.clone(),
        version: 2,
        status: ExecutionStatus::Running,
        input: json!({"MIN": 1}),
        return_value: None,
        init: b.init,
        end: None,
        end_reason: None,
        submitted_by: created_by,
        canceled_by: None,
        revision: 0,
        wake_at: Some(b.init + 60_000),
        schedule_id: None,
        scheduled_for: None,
        steps: vec![fetched, waiting],
        seq: 0,
    };
    let new = NewFlowRun {
        run: run.clone(),
        enqueue: None,
    };
    assert_eq!(
        b.store.start_flow_run(&new, None).await.unwrap(),
        Enqueued::Created
    );
    b.fixture.flows.push((organization_id, flow.id, run.id));
}

/// A schedule of the flow, whose fire started a run of it (waiting on a
/// retry's backoff, so that it queues nothing).
async fn populate_flow_schedule(b: &mut Builder) {
    let (organization_id, flow_id, first_run) = b.fixture.flows[0].clone();
    let robot_schedule = &b.fixture.schedules[1];
    let schedule = Schedule {
        id: id(83),
        name: "flow «report»".into(),
        target: ScheduleTarget::Flow {
            flow_id: flow_id.clone(),
        },
        variables: json!([{"name": "MIN", "value": 2}]),
        paused: false,
        pause_note: None,
        ..b.store
            .get_schedule(&robot_schedule.0, &robot_schedule.1)
            .await
            .unwrap()
    };
    assert_eq!(schedule.organization_id, organization_id);
    b.store.create_schedule(&schedule, None).await.unwrap();
    let scheduled_for = b.init + 900;
    let run = FlowRun {
        id: b.next_id(),
        input: json!({"MIN": 2}),
        submitted_by: format!("schedule:{}", schedule.id),
        schedule_id: Some(schedule.id.clone()),
        scheduled_for: Some(scheduled_for),
        ..b.store
            .get_flow_run(&organization_id, &first_run)
            .await
            .unwrap()
    };
    let fired = b
        .store
        .fire_schedule(&Firing {
            audit: None,
            organization_id: organization_id.clone(),
            schedule_id: schedule.id.clone(),
            origin: FireOrigin::Trigger,
            advance: None,
            missed: Vec::new(),
            runs: vec![FireRun {
                scheduled_for,
                start: Ok(NewScheduledRun::Flow(Box::new(NewFlowRun {
                    run: run.clone(),
                    enqueue: None,
                }))),
            }],
            now: scheduled_for + 1,
        })
        .await
        .unwrap();
    assert!(matches!(fired, Fired::Applied(_)));
    b.fixture
        .schedules
        .push((organization_id.clone(), schedule.id));
    b.fixture.flows.push((organization_id, flow_id, run.id));
}

async fn populate_credentials(b: &mut Builder) {
    let organization_id = b.fixture.organizations[0].id.clone();
    let robot_id = b.fixture.robots[0].1.clone();
    let sealed = |field: &str, byte: u8| regente_store::SealedValue {
        field: field.into(),
        key_id: "0011223344556677".into(),
        nonce: vec![byte; 24],
        // Every byte value, as a ciphertext has.
        ciphertext: (0..=255u8).map(|b| b ^ byte).collect(),
    };
    let mut write = regente_store::CredentialWrite {
        id: b.next_id(),
        organization_id: organization_id.clone(),
        name: "erp «prod»".into(),
        description: Some("the ERP's robot user".into()),
        robots: Some(vec![robot_id]),
        version: 1,
        values: vec![sealed("username", 1), sealed("password", 2)],
        by: b.fixture.users[0].id.clone(),
        at: b.init + 300,
    };
    b.store.create_credential(&write, None).await.unwrap();
    write.version = 2;
    write.values = vec![sealed("password", 3)];
    write.description = None;
    write.at += 1;
    b.store.replace_credential(&write, None).await.unwrap();
    let mut bank = write.clone();
    bank.id = b.next_id();
    bank.name = "bank".into();
    bank.robots = None;
    bank.version = 1;
    b.store.create_credential(&bank, None).await.unwrap();
    b.store
        .add_vault_key(&regente_store::VaultKey {
            key_id: "0011223344556677".into(),
            check_value: vec![0, 1, 2, 255],
            created_at: b.init,
        })
        .await
        .unwrap();
    b.fixture.credentials = vec![
        (organization_id.clone(), write.name),
        (organization_id, bank.name),
    ];
}

async fn populate_api_keys(b: &mut Builder) {
    let organization_id = b.fixture.organizations[0].id.clone();
    let mut keys = Vec::new();
    for (n, name) in ["erp «prod»", "old"].into_iter().enumerate() {
        let key = regente_store::ApiKey {
            id: b.next_id(),
            organization_id: organization_id.clone(),
            name: name.into(),
            role: regente_core::Role::Integration,
            prefix: format!("abcdefg{n}"),
            created_by: b.fixture.users[0].id.clone(),
            created_at: b.init + 400 + n as i64,
            last_used_at: None,
            expires_at: Some(b.init + 1_000_000),
            revoked_at: None,
        };
        let hash = format!("{n:064x}");
        b.store.create_api_key(&key, &hash, None).await.unwrap();
        keys.push((key, hash));
    }
    b.store
        .touch_api_key(&keys[0].0.id, b.init + 500, b.init + 440)
        .await
        .unwrap();
    b.store
        .revoke_api_key(&organization_id, &keys[1].0.id, b.init + 501, None)
        .await
        .unwrap();
    b.fixture.api_keys = keys
        .into_iter()
        .map(|(_, hash)| (organization_id.clone(), hash))
        .collect();
}

async fn populate_webhooks(b: &mut Builder) {
    let organization_id = b.fixture.organizations[0].id.clone();
    let webhook = regente_store::Webhook {
        id: b.next_id(),
        organization_id: organization_id.clone(),
        url: "https://example.org/«hook»".into(),
        events: vec!["execution.finished".into(), "runtime.online".into()],
        description: Some("erp «prod»".into()),
        enabled: false,
        disabled_reason: Some("410".into()),
        secret: "v1.key.nonce.sealed".into(),
        previous_secret: Some("v1.key.nonce.former".into()),
        previous_secret_until: Some(b.init + 86_400_000),
        created_at: b.init + 600,
        updated_at: b.init + 601,
    };
    b.store.create_webhook(&webhook, None).await.unwrap();
    let deliveries: Vec<regente_store::WebhookDelivery> = (0..2)
        .map(|n| regente_store::WebhookDelivery {
            id: b.next_id(),
            organization_id: organization_id.clone(),
            webhook_id: webhook.id.clone(),
            event_type: "execution.finished".into(),
            event_seq: n + 1,
            payload: format!("{{\"type\":\"execution.finished\",\"n\":{n}}}"),
            status: regente_store::DeliveryStatus::Pending,
            attempts: 0,
            round_attempts: 0,
            next_attempt_at: Some(b.init + 700),
            last_status_code: None,
            last_error: None,
            last_duration_ms: None,
            last_attempt_at: None,
            created_at: b.init + 700 + n,
        })
        .collect();
    b.store
        .queue_webhook_deliveries(
            &deliveries,
            "webhooks",
            regente_store::EventCursor::START,
            b.init + 700,
        )
        .await
        .unwrap();
    let attempt = regente_store::WebhookAttempt {
        delivery_id: deliveries[0].id.clone(),
        attempt: 1,
        at: b.init + 701,
        duration_ms: 15,
        status_code: Some(503),
        error: None,
        response: Some("busy «now»".into()),
    };
    b.store
        .record_webhook_attempt(
            &attempt,
            &regente_store::AttemptOutcome::RetryAt(b.init + 800),
        )
        .await
        .unwrap();
    b.fixture.webhook_organizations = vec![organization_id];
}
