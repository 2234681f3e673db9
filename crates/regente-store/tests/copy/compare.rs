//! Comparing two stores: through the trait, and what the trait does not show
//! with plain SQL.

use super::*;
use crate::populate::*;
use regente_store::prelude::*;

// ---------------------------------------------------------------------------
// Databases.

pub(crate) fn sqlite_url(dir: &Path, name: &str) -> String {
    format!("sqlite://{}", dir.join(name).display())
}

/// What the stores do not show through the trait, read with plain SQL (the same
/// statements on both backends).
#[derive(Debug, PartialEq)]
pub(crate) struct Hidden {
    /// (id, lease, attempt, max_attempts, last_event_seq, cancel_requested), by seq.
    pub(crate) executions: Vec<(String, Option<String>, i64, i64, i64, bool)>,
    /// (user_id, key, fingerprint, execution_id, created_at).
    pub(crate) idempotency_keys: Vec<(String, String, String, String, i64)>,
    /// (runtime id, current connection), by id.
    pub(crate) sessions: Vec<(String, Option<String>)>,
    /// Rows per table, in the order of [`TABLES`].
    pub(crate) counts: Vec<i64>,
}

pub(crate) const HIDDEN_EXECUTIONS: &str =
    "SELECT id, lease, attempt, max_attempts, last_event_seq, \
     cancel_requested FROM executions ORDER BY seq";
pub(crate) const HIDDEN_KEYS: &str = "SELECT user_id, key, fingerprint, execution_id, created_at \
     FROM idempotency_keys ORDER BY user_id, key";
pub(crate) const HIDDEN_SESSIONS: &str = "SELECT id, session_id FROM runtimes ORDER BY id";
pub(crate) const TABLES: [&str; 26] = [
    "organizations",
    "users",
    "runtimes",
    "robots",
    "robot_versions",
    "executions",
    "execution_logs",
    "execution_hours",
    "execution_hour_times",
    "idempotency_keys",
    "events",
    "event_cursors",
    "flows",
    "flow_versions",
    "flow_runs",
    "flow_steps",
    "credentials",
    "credential_values",
    "vault_keys",
    "api_keys",
    "webhooks",
    "webhook_deliveries",
    "webhook_attempts",
    "schedules",
    "schedule_fires",
    "audit_records",
];

pub(crate) async fn hidden(url: &str) -> Hidden {
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
            let sessions = sqlx::query_as(HIDDEN_SESSIONS)
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
                sessions,
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
// Comparing two stores.

/// Text as the target stores it: PostgreSQL holds no NUL.
pub(crate) fn as_stored(text: &str, nul_replaced: bool) -> String {
    if nul_replaced {
        text.replace('\0', "\u{FFFD}")
    } else {
        text.to_owned()
    }
}

pub(crate) fn all() -> ExecutionFilter {
    ExecutionFilter {
        limit: 10_000,
        ..ExecutionFilter::default()
    }
}

/// Everything in `source` reads the same in `target`, through the trait.
pub(crate) async fn assert_same(
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
        let every_record = regente_store::AuditFilter {
            limit: 1000,
            ..Default::default()
        };
        let records = source
            .audit_records(&organization.id, &every_record)
            .await
            .unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(
            target
                .audit_records(&organization.id, &every_record)
                .await
                .unwrap(),
            records
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

    // Schedules and their fires.
    for organization in &fixture.organizations {
        assert_eq!(
            target.list_schedules(&organization.id).await.unwrap(),
            source.list_schedules(&organization.id).await.unwrap()
        );
    }
    for (organization, schedule) in &fixture.schedules {
        let fires = source
            .schedule_fires(organization, schedule, 100)
            .await
            .unwrap();
        assert_eq!(
            target
                .schedule_fires(organization, schedule, 100)
                .await
                .unwrap(),
            fires
        );
        assert_eq!(
            target.get_schedule(organization, schedule).await.unwrap(),
            source.get_schedule(organization, schedule).await.unwrap()
        );
    }
    assert_eq!(fixture.schedules.len(), 3);

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

pub(crate) fn ids(executions: &[Execution]) -> Vec<(String, i64)> {
    executions.iter().map(|e| (e.id.clone(), e.seq)).collect()
}

/// The copy works on as the original would. Returns the runs of runtime 0 that
/// were waiting, in the order the target handed them out.
pub(crate) async fn assert_usable(target: &Arc<dyn Store>, fixture: &Fixture) -> Vec<String> {
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

/// An event without its place in the stream, to compare two streams.
fn content(event: &StoredEvent) -> (String, regente_store::EventKind, String, Millis, Value) {
    (
        event.organization_id.clone(),
        event.kind,
        event.subject_id.clone(),
        event.time,
        event.data.clone(),
    )
}

/// The target holds the source's events in the source's stream order, numbered
/// from 1 with `txid` 0, and each consumer's cursor sits on the event it sat on
/// in the source. Returns the target's stream.
pub(crate) async fn assert_same_events(
    source: &Arc<dyn Store>,
    target: &Arc<dyn Store>,
    fixture: &Fixture,
    count: i64,
) -> Vec<StoredEvent> {
    let count = count as usize;
    let original = events_after_at_least(&**source, EventCursor::START, count).await;
    let copied = target
        .events_after(EventCursor::START, 100_000)
        .await
        .unwrap();
    assert_eq!(copied.len(), count);
    assert_eq!(
        copied.iter().map(content).collect::<Vec<_>>(),
        original.iter().map(content).collect::<Vec<_>>()
    );
    for (event, seq) in copied.iter().zip(1..) {
        assert_eq!(event.cursor, EventCursor { txid: 0, seq });
    }
    for (organization_id, flow_id, run_id) in &fixture.flows {
        for version in [1, 2] {
            assert_eq!(
                target
                    .flow_version(organization_id, flow_id, version)
                    .await
                    .unwrap(),
                source
                    .flow_version(organization_id, flow_id, version)
                    .await
                    .unwrap()
            );
        }
        assert_eq!(
            target.get_flow_run(organization_id, run_id).await.unwrap(),
            source.get_flow_run(organization_id, run_id).await.unwrap()
        );
    }
    for (organization_id, name) in &fixture.credentials {
        assert_eq!(
            target
                .sealed_credential(organization_id, name)
                .await
                .unwrap(),
            source
                .sealed_credential(organization_id, name)
                .await
                .unwrap()
        );
    }
    assert_eq!(
        target.vault_keys().await.unwrap(),
        source.vault_keys().await.unwrap()
    );
    for (organization_id, hash) in &fixture.api_keys {
        let copied = target.find_api_key_by_hash(hash).await.unwrap();
        assert!(copied.is_some(), "the key with hash {hash} was not copied");
        assert_eq!(copied, source.find_api_key_by_hash(hash).await.unwrap());
        assert_eq!(
            target.list_api_keys(organization_id).await.unwrap(),
            source.list_api_keys(organization_id).await.unwrap()
        );
    }
    for organization_id in &fixture.webhook_organizations {
        let webhooks = source.list_webhooks(organization_id).await.unwrap();
        assert!(!webhooks.is_empty());
        assert_eq!(
            target.list_webhooks(organization_id).await.unwrap(),
            webhooks
        );
        for webhook in &webhooks {
            let deliveries = source
                .list_webhook_deliveries(organization_id, &webhook.id, None, 100)
                .await
                .unwrap();
            assert_eq!(
                target
                    .list_webhook_deliveries(organization_id, &webhook.id, None, 100)
                    .await
                    .unwrap(),
                deliveries
            );
            for delivery in &deliveries {
                assert_eq!(
                    target
                        .get_webhook_delivery(organization_id, &webhook.id, &delivery.id)
                        .await
                        .unwrap(),
                    source
                        .get_webhook_delivery(organization_id, &webhook.id, &delivery.id)
                        .await
                        .unwrap()
                );
            }
        }
    }
    for (consumer, cursor) in &fixture.consumers {
        let at = original.iter().position(|e| e.cursor == *cursor).unwrap();
        let moved = target.load_cursor(consumer).await.unwrap();
        assert_eq!(moved, copied[at].cursor, "{consumer}");
        let next_there = source.events_after(*cursor, 100_000).await.unwrap();
        let next_here = target.events_after(moved, 100_000).await.unwrap();
        assert_eq!(
            next_here.iter().map(content).collect::<Vec<_>>(),
            next_there.iter().map(content).collect::<Vec<_>>(),
            "{consumer}"
        );
    }
    copied
}

/// Populates a store at `from`, copies it to `to`, and compares.
pub(crate) async fn round_trip(from: &str, to: &str) {
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

    let copied = assert_same_events(&source, &target, &fixture, before.counts[10]).await;
    let handed_out = assert_usable(&target, &fixture).await;
    // What the target writes itself comes after every copied event.
    let stream = events_after_at_least(&*target, EventCursor::START, copied.len() + 1).await;
    assert_eq!(&stream[..copied.len()], &copied[..]);
    let kinds: Vec<_> = stream[copied.len()..].iter().map(|e| e.kind).collect();
    assert!(
        kinds.contains(&regente_store::EventKind::ExecutionEnded),
        "{kinds:?}"
    );
    // In the order the source hands them out.
    let runtime_id = &fixture.runtimes[0].runtime.id;
    let mut expected = Vec::new();
    while let Some(next) = source.claim_next(runtime_id, "lease-after").await.unwrap() {
        expected.push(next.execution_id);
    }
    assert_eq!(handed_out, expected);
}
