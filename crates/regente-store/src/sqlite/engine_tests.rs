use super::*;

fn job(durability: Durability) -> Box<dyn WriteJob> {
    let (reply, _answer) = oneshot::channel::<Result<()>>();
    Box::new(PendingWrite {
        work: Some(|_: &Connection| Ok(())),
        outcome: None,
        reply,
        durability,
    })
}

fn synchronous(conn: &Connection) -> i64 {
    conn.query_row("PRAGMA synchronous", [], |row| row.get(0))
        .unwrap()
}

#[test]
fn a_batch_is_synced_when_any_of_its_writes_needs_it() {
    let dir = tempfile::tempdir().unwrap();
    let conn = Connection::open(dir.path().join("t.db")).unwrap();
    conn.execute_batch("PRAGMA journal_mode = WAL").unwrap();
    let (full, normal) = (2, 1);

    commit_batch(&conn, &mut [job(Durability::Written)]).unwrap();
    assert_eq!(synchronous(&conn), normal);
    commit_batch(
        &conn,
        &mut [job(Durability::Written), job(Durability::Synced)],
    )
    .unwrap();
    assert_eq!(synchronous(&conn), full);
    commit_batch(&conn, &mut [job(Durability::Written)]).unwrap();
    commit_batch(&conn, &mut [job(Durability::Synced)]).unwrap();
    assert_eq!(synchronous(&conn), full);
}

/// One write of a batch fails after writing its execution and its event;
/// the others commit: the failed one's undoing (a rollback and a second try
/// of the repeatable writes under savepoints) takes its event away with its
/// change, and the others keep both.
#[tokio::test]
async fn a_write_undone_in_a_batch_leaves_no_event() {
    use super::super::executions::{enqueue_one, RunToInsert};
    use crate::prelude::*;
    use crate::{NewExecution, NewRobotVersion, NewRuntime, Organization, Runtime, User};

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("regente.db");
    let store = SqliteStore::open(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let organization = Organization {
        id: "0000000000000001".into(),
        name: "acme".into(),
        is_root: true,
        created_at: 1,
    };
    let admin = User {
        id: "0000000000000002".into(),
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
    let runtime = Runtime {
        id: "0000000000000003".into(),
        organization_id: organization.id.clone(),
        name: "desk".into(),
        slots: 1,
        last_seen: None,
        created_at: 1,
    };
    store
        .create_runtime(
            &NewRuntime {
                runtime: runtime.clone(),
                key_hash: "key".into(),
            },
            None,
        )
        .await
        .unwrap();
    let (robot_id, _) = store
        .add_robot_version(
            &NewRobotVersion {
                organization_id: organization.id.clone(),
                new_robot_id: "0000000000000004".into(),
                name: "invoices".into(),
                sha256: "sha".into(),
                manifest: "name = \"invoices\"".into(),
                package: b"PK".to_vec(),
                created_at: 1,
            },
            None,
        )
        .await
        .unwrap();
    let run = |id: &str| RunToInsert {
        new: NewExecution {
            id: id.into(),
            organization_id: organization.id.clone(),
            runtime_id: runtime.id.clone(),
            robot_id: robot_id.clone(),
            robot_version: 1,
            variables: serde_json::json!({}),
            init: 10,
            submitted_by: admin.id.clone(),
            max_attempts: 1,
            flow_run_id: None,
            flow_step_id: None,
            schedule_id: None,
            scheduled_for: None,
        },
        variables: "{}".into(),
        key: None,
    };
    let (undone, kept) = (run("00000000000000aa"), run("00000000000000bb"));
    let (first, last) = (run("00000000000000cc"), run("00000000000000dd"));
    let events_of = |conn: &Connection, id: &str| -> i64 {
        conn.query_row(
            "SELECT COUNT(*) FROM events WHERE subject_id = ?1",
            [id],
            |row| row.get(0),
        )
        .unwrap()
    };
    // Repeatable, like a run request: it fails on each try.
    let (reply, _answer) = oneshot::channel::<Result<()>>();
    let failing = Box::new(RepeatableWrite {
        work: move |conn: &Connection| {
            enqueue_one(conn, &undone)?;
            assert_eq!(events_of(conn, "00000000000000aa"), 1);
            Err(Error::Other(anyhow::anyhow!("failed after its event")))
        },
        outcome: None,
        reply,
    });
    // Two more repeatable ones, one run before the failing one (then rolled
    // back with it and run again) and one after.
    let repeatable = |run: RunToInsert| {
        let (reply, answer) = oneshot::channel::<Result<crate::Enqueued>>();
        let job: Box<dyn WriteJob> = Box::new(RepeatableWrite {
            work: move |conn: &Connection| enqueue_one(conn, &run),
            outcome: None,
            reply,
        });
        (job, answer)
    };
    let ((first, first_answer), (last, last_answer)) = (repeatable(first), repeatable(last));
    let (reply, _answer) = oneshot::channel::<Result<crate::Enqueued>>();
    let succeeding = Box::new(PendingWrite {
        work: Some(move |conn: &Connection| enqueue_one(conn, &kept)),
        outcome: None,
        reply,
        durability: Durability::Synced,
    });
    let conn = open_connection(&path, false).unwrap();
    let mut batch: Vec<Box<dyn WriteJob>> = vec![succeeding, first, failing, last];
    commit_batch(&conn, &mut batch).unwrap();
    for job in batch {
        job.answer(None);
    }

    assert_eq!(events_of(&conn, "00000000000000aa"), 0);
    for kept in ["00000000000000bb", "00000000000000cc", "00000000000000dd"] {
        assert_eq!(events_of(&conn, kept), 1, "{kept}");
    }
    for answer in [first_answer, last_answer] {
        assert!(matches!(answer.await, Ok(Ok(crate::Enqueued::Created))));
    }
    let executions: Vec<String> = conn
        .prepare("SELECT id FROM executions ORDER BY seq")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    // Repeatable writes run first: the order of a batch's writes is free.
    assert_eq!(
        executions,
        ["00000000000000cc", "00000000000000dd", "00000000000000bb"]
    );
}

/// Opens a migrated store at a new path, closes it, and answers the path and a
/// connection to change its migrations' records with.
async fn migrated_store(dir: &tempfile::TempDir) -> (String, PathBuf, Connection) {
    let path = dir.path().join("m.db");
    let url = format!("sqlite://{}", path.display());
    let store = SqliteStore::open(&url).await.unwrap();
    store.close().await;
    drop(store);
    let conn = Connection::open(&path).unwrap();
    (url, path, conn)
}

/// A store whose every migration is applied opens without sqlx's migrator; a
/// new or half-written database goes through it.
#[tokio::test]
async fn the_migrator_is_skipped_only_when_every_migration_is_applied() {
    let dir = tempfile::tempdir().unwrap();
    let fresh = dir.path().join("fresh.db");
    create_private(&fresh);
    assert!(
        migrated_connection(&fresh, &MIGRATIONS).is_none(),
        "an empty file"
    );
    assert!(migrated_connection(&dir.path().join("absent.db"), &MIGRATIONS).is_none());

    let (url, path, conn) = migrated_store(&dir).await;
    assert!(migrated_connection(&path, &MIGRATIONS).is_some());
    let last = MIGRATIONS.iter().map(|m| m.version).max().unwrap();
    conn.execute("DELETE FROM _sqlx_migrations WHERE version = ?1", [last])
        .unwrap();
    assert!(
        migrated_connection(&path, &MIGRATIONS).is_none(),
        "one migration not recorded"
    );
    // The migrator then applies it again: it records it, or fails on what it
    // creates being there already. Skipped, it would do neither.
    match SqliteStore::open(&url).await {
        Ok(store) => {
            store.close().await;
            let recorded: i64 = conn
                .query_row(
                    "SELECT COUNT(*) FROM _sqlx_migrations WHERE version = ?1",
                    [last],
                    |row| row.get(0),
                )
                .unwrap();
            assert_eq!(recorded, 1);
        }
        Err(e) => assert!(format!("{e:#}").contains("migrations"), "{e:#}"),
    }
}

/// A migrated database that is not in WAL mode (restored by a tool that wrote
/// it in rollback mode) goes through the migrator, whose connection sets WAL:
/// the store then opens, where its own durability check would refuse it.
#[tokio::test]
async fn a_migrated_store_out_of_wal_mode_is_put_back_by_the_migrator() {
    let dir = tempfile::tempdir().unwrap();
    let (url, path, conn) = migrated_store(&dir).await;
    // Leaving WAL needs every other connection closed, which the closed
    // store's threads do soon after (no busy handler waits for it).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match conn.query_row("PRAGMA journal_mode = DELETE", [], |row| {
            row.get::<_, String>(0)
        }) {
            Ok(mode) => {
                assert_eq!(mode, "delete");
                break;
            }
            Err(e) if Instant::now() < deadline => {
                assert!(e.to_string().contains("locked"), "{e}");
                std::thread::yield_now();
            }
            Err(e) => panic!("{e}"),
        }
    }
    drop(conn);
    assert!(migrated_connection(&path, &MIGRATIONS).is_none());
    let store = SqliteStore::open(&url).await.unwrap();
    store.close().await;
    assert!(migrated_connection(&path, &MIGRATIONS).is_some());
}

/// What sqlx's migrator refuses is still refused: a changed migration, one
/// that failed half-way, one from a newer version of Regente.
#[tokio::test]
async fn a_store_the_migrator_refuses_is_still_refused() {
    let changes = [
        "UPDATE _sqlx_migrations SET checksum = x'00' WHERE version = 1",
        "UPDATE _sqlx_migrations SET success = 0 WHERE version = 1",
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (99999999999999, 'from a newer version', 1, x'00', 0)",
    ];
    for change in changes {
        let dir = tempfile::tempdir().unwrap();
        let (url, path, conn) = migrated_store(&dir).await;
        conn.execute(change, []).unwrap();
        assert!(
            migrated_connection(&path, &MIGRATIONS).is_none(),
            "{change}"
        );
        let refused = SqliteStore::open(&url).await.err();
        assert!(
            refused.is_some_and(|e| format!("{e:#}").contains("migrations")),
            "{change}"
        );
    }
}

/// A write of `sql` in the writer's batch.
fn job_writing(sql: &'static str) -> Box<dyn WriteJob> {
    let (reply, _answer) = oneshot::channel::<Result<()>>();
    Box::new(PendingWrite {
        work: Some(move |conn: &Connection| {
            conn.execute_batch(sql).map_err(|e| Error::Other(e.into()))
        }),
        outcome: None,
        reply,
        durability: Durability::Synced,
    })
}

fn names(conn: &Connection) -> Vec<String> {
    conn.prepare("SELECT name FROM t ORDER BY name")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
}

#[test]
fn a_connection_left_in_a_transaction_is_rolled_back_before_the_next_batch() {
    let dir = tempfile::tempdir().unwrap();
    let conn = Connection::open(dir.path().join("t.db")).unwrap();
    conn.execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (name TEXT)")
        .unwrap();
    conn.execute_batch("BEGIN; INSERT INTO t VALUES ('stray')")
        .unwrap();
    assert!(!conn.is_autocommit());

    commit_batch(&conn, &mut [job_writing("INSERT INTO t VALUES ('kept')")]).unwrap();
    assert!(conn.is_autocommit());
    assert_eq!(names(&conn), ["kept"]);
}

/// A COMMIT that fails (here a deferred foreign key) leaves SQLite's
/// transaction open: the batch rolls it back, so that nothing of it stays and
/// the next batch can begin.
#[test]
fn a_failed_commit_is_rolled_back_and_the_next_batch_commits() {
    let dir = tempfile::tempdir().unwrap();
    let conn = Connection::open(dir.path().join("t.db")).unwrap();
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON; \
         CREATE TABLE parent (id TEXT PRIMARY KEY); \
         CREATE TABLE t (name TEXT, parent TEXT REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED)",
    )
    .unwrap();

    let failed = commit_batch(
        &conn,
        &mut [
            job_writing("INSERT INTO t VALUES ('first', NULL)"),
            job_writing("INSERT INTO t VALUES ('orphan', 'no such parent')"),
        ],
    );
    assert!(
        failed
            .as_ref()
            .is_err_and(|e| e.to_string().contains("FOREIGN KEY")),
        "{failed:?}"
    );
    assert!(conn.is_autocommit());
    assert!(names(&conn).is_empty());

    commit_batch(
        &conn,
        &mut [job_writing("INSERT INTO t VALUES ('kept', NULL)")],
    )
    .unwrap();
    assert_eq!(names(&conn), ["kept"]);
}

/// A read never sees less than a read before it, also when a commit lands
/// between two reads on different connections: a connection without a
/// snapshot sees the commit at once, so a kept snapshot from before it must not
/// pass as current after. (Counted only after the commit, the second read here
/// saw the table as before the commit.)
#[test]
fn a_read_never_sees_less_than_a_read_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.db");
    let writer = Connection::open(&path).unwrap();
    writer
        .execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE marks (n INTEGER)")
        .unwrap();
    let readers = Readers {
        path,
        idle: Mutex::new(Vec::new()),
        commits: Arc::new(AtomicU64::new(0)),
        commit_times: Histogram::new(COMMIT_TIME_BOUNDS),
    };
    let marks = |conn: &Connection| -> Result<i64> {
        conn.query_row("SELECT count(*) FROM marks", [], |row| row.get(0))
            .map_err(|e| Error::Other(e.into()))
    };
    // Two reads just after the commit, before its second count: the kept
    // reader is taken without reading while a new one beside it reads, then
    // the kept reader is the next one taken.
    let both_see = |marks_committed: i64| {
        let first = readers.with(|_| readers.with(marks)).unwrap();
        assert_eq!(first, marks_committed, "a new connection sees the commit");
        let second = readers.with(marks).unwrap();
        assert_eq!(
            second, marks_committed,
            "a later read saw less than an earlier one"
        );
    };

    // A reader keeps a snapshot from before the transaction.
    assert_eq!(readers.with(marks).unwrap(), 0);
    readers.transaction_begins();
    writer.execute("INSERT INTO marks VALUES (1)", []).unwrap();
    both_see(1);
    readers.transaction_ended();
    assert_eq!(readers.with(marks).unwrap(), 1);

    // A snapshot begun while the transaction is under way, before its commit.
    readers.transaction_begins();
    assert_eq!(readers.with(marks).unwrap(), 1);
    writer.execute("INSERT INTO marks VALUES (2)", []).unwrap();
    both_see(2);
    readers.transaction_ended();
}
