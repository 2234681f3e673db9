//! `regente_store::copy`: a store populated through the `Store` trait is copied and
//! the copy is compared with the original through the trait, everything included.
//!
//! The SQLite-only tests run always. Those with PostgreSQL run when
//! `REGENTE_TEST_PG_URL` names a server (a role allowed to create databases): each
//! creates databases of its own and drops them at the end. Without the variable
//! they say they were skipped and pass.

#[path = "../support/mod.rs"]
mod support;

mod compare;
mod populate;

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use regente_core::{ExecutionStatus, Role};
use regente_store::copy::copy;
use regente_store::{
    CancelOutcome, Change, Enqueued, EventRecord, EventsOutcome, Execution, ExecutionFilter,
    FlowRun, FlowStep, IdempotencyKey, LostOutcome, Millis, NewExecution, NewFlowRun,
    NewFlowVersion, NewRobotVersion, NewRuntime, Organization, Runtime, Store, User,
};
use serde_json::{json, Value};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};

use regente_store::{EventCursor, StoredEvent};
use sqlx::{Connection, PgConnection};
use support::{events_after_at_least, with_postgres};

use compare::{hidden, round_trip, sqlite_url, TABLES};
use populate::{id, populate, user};

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
#[cfg_attr(
    not(regente_pg),
    ignore = "SKIPPED: needs PostgreSQL (set REGENTE_TEST_PG_URL)"
)]
async fn sqlite_to_postgres() {
    with_postgres("sqlite_to_postgres", 1, |urls| async move {
        let dir = tempfile::tempdir().unwrap();
        round_trip(&sqlite_url(dir.path(), "regente.db"), &urls[0]).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[cfg_attr(
    not(regente_pg),
    ignore = "SKIPPED: needs PostgreSQL (set REGENTE_TEST_PG_URL)"
)]
async fn postgres_to_sqlite() {
    with_postgres("postgres_to_sqlite", 1, |urls| async move {
        let dir = tempfile::tempdir().unwrap();
        round_trip(&urls[0], &sqlite_url(dir.path(), "regente.db")).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[cfg_attr(
    not(regente_pg),
    ignore = "SKIPPED: needs PostgreSQL (set REGENTE_TEST_PG_URL)"
)]
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
            None,
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
#[cfg_attr(
    not(regente_pg),
    ignore = "SKIPPED: needs PostgreSQL (set REGENTE_TEST_PG_URL)"
)]
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
#[cfg_attr(
    not(regente_pg),
    ignore = "SKIPPED: needs PostgreSQL (set REGENTE_TEST_PG_URL)"
)]
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

/// On PostgreSQL a transaction that took its id first may draw its event's
/// `seq` last: the stream's order is not `seq` order. The copy keeps the
/// stream's order, and a consumer's cursor keeps its place in it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[cfg_attr(
    not(regente_pg),
    ignore = "SKIPPED: needs PostgreSQL (set REGENTE_TEST_PG_URL)"
)]
async fn events_are_copied_in_stream_order_with_their_consumers_places() {
    with_postgres("events_are_copied_in_stream_order", 1, |urls| async move {
        let source = regente_store::open(&urls[0]).await.unwrap();
        let insert = "INSERT INTO events (organization_id, kind, subject_id, time, data) \
                      VALUES ('0000000000000001', 'runtime.online', $1, 1, '{}')";
        let mut first = PgConnection::connect(&urls[0]).await.unwrap();
        let mut second = PgConnection::connect(&urls[0]).await.unwrap();
        sqlx::query("BEGIN").execute(&mut first).await.unwrap();
        sqlx::query("SELECT pg_current_xact_id()")
            .execute(&mut first)
            .await
            .unwrap();
        for (conn, subject) in [(&mut second, "later seq"), (&mut first, "earlier txid")] {
            sqlx::query(insert)
                .bind(subject)
                .execute(&mut *conn)
                .await
                .unwrap();
            sqlx::query("COMMIT").execute(&mut *conn).await.unwrap();
            sqlx::query("BEGIN").execute(&mut *conn).await.unwrap();
        }
        for conn in [&mut first, &mut second] {
            sqlx::query("COMMIT").execute(&mut *conn).await.unwrap();
        }
        let events = events_after_at_least(&*source, EventCursor::START, 2).await;
        let subjects: Vec<&str> = events.iter().map(|e| e.subject_id.as_str()).collect();
        assert_eq!(subjects, ["earlier txid", "later seq"]);
        assert!(events[0].cursor.seq > events[1].cursor.seq, "{events:#?}");
        source
            .save_cursor("audit", events[0].cursor, 10)
            .await
            .unwrap();

        let dir = tempfile::tempdir().unwrap();
        let target_url = sqlite_url(dir.path(), "regente.db");
        copy(&urls[0], &target_url).await.unwrap();
        let target = regente_store::open(&target_url).await.unwrap();
        let copied = target.events_after(EventCursor::START, 10).await.unwrap();
        let subjects: Vec<&str> = copied.iter().map(|e| e.subject_id.as_str()).collect();
        assert_eq!(subjects, ["earlier txid", "later seq"]);
        let cursor = target.load_cursor("audit").await.unwrap();
        assert_eq!(cursor, EventCursor { txid: 0, seq: 1 });
        let next: Vec<StoredEvent> = target.events_after(cursor, 10).await.unwrap();
        assert_eq!(next.len(), 1);
        assert_eq!(next[0].subject_id, "later seq");
    })
    .await;
}
