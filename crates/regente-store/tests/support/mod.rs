//! What the store's test binaries (and the server's schedule tests) share: a
//! store on each backend (fresh PostgreSQL databases per test), and reading the
//! event stream until what was committed shows.

// Each test binary uses a part of this module.
#![allow(dead_code)]

use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use std::sync::Arc;

use regente_store::{EventCursor, EventKind, EventStore, Store, StoredEvent};
use sqlx::{Connection, Executor, PgConnection};

/// Runs `test` with `count` fresh PostgreSQL database URLs, then drops them.
pub async fn with_postgres<F, Fut>(name: &str, count: usize, test: F)
where
    F: FnOnce(Vec<String>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some(server) = std::env::var("REGENTE_TEST_PG_URL")
        .ok()
        .filter(|url| !url.is_empty())
    else {
        // Such tests are ignored (SKIPPED) when the variable was not set at build time.
        panic!("{name} needs PostgreSQL: set REGENTE_TEST_PG_URL");
    };
    let databases: Vec<String> = (0..count)
        .map(|_| format!("regente_test_{}", unique_suffix()))
        .collect();
    let mut admin = PgConnection::connect(&server)
        .await
        .expect("connect to REGENTE_TEST_PG_URL");
    for database in &databases {
        admin
            .execute(format!("CREATE DATABASE {database}").as_str())
            .await
            .expect("create the test database (the role needs CREATEDB)");
    }
    admin.close().await.ok();
    let urls = databases
        .iter()
        .map(|database| with_database(&server, database))
        .collect();
    // On a task of its own, so that the databases are dropped even if the test panics.
    let outcome = tokio::spawn(test(urls)).await;
    if let Ok(mut admin) = PgConnection::connect(&server).await {
        for database in &databases {
            let drop = format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)");
            if let Err(e) = admin.execute(drop.as_str()).await {
                eprintln!("cannot drop the test database {database}: {e}");
            }
        }
        admin.close().await.ok();
    }
    if let Err(e) = outcome {
        match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(e) => panic!("{name} did not finish: {e}"),
        }
    }
}

/// `url` with its database replaced, query kept.
pub fn with_database(url: &str, database: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a postgres:// URL");
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let query = tail.find('?').map_or("", |at| &tail[at..]);
    format!("{scheme}://{authority}/{database}{query}")
}

fn unique_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    hasher.write_u32(std::process::id());
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    format!("{:016x}", hasher.finish())
}

/// Every event after `after`, read once at least `at_least` of them show. On
/// PostgreSQL a read answers only the events of transactions older than every
/// transaction still running on the server (other tests' included), so an event
/// just committed may take a moment to show; on SQLite it shows at once. Panics
/// after 30 s.
pub async fn events_after_at_least(
    store: &(impl EventStore + ?Sized),
    after: EventCursor,
    at_least: usize,
) -> Vec<StoredEvent> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let events = store.events_after(after, 100_000).await.unwrap();
        if events.len() >= at_least {
            return events;
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {at_least} events after {after:?} showed: {events:#?}",
            events.len()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Runs `test` on a fresh SQLite store, with its URL.
pub async fn on_sqlite<F, Fut>(test: F)
where
    F: FnOnce(Arc<dyn Store>, String) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = tempfile::tempdir().expect("temporary folder");
    let url = format!("sqlite://{}", dir.path().join("regente.db").display());
    let store = regente_store::open(&url).await.expect("open SQLite");
    test(store, url).await;
}

/// Runs `test` on a fresh PostgreSQL database, with its URL; says it was
/// skipped when `REGENTE_TEST_PG_URL` is not set.
pub async fn on_postgres<F, Fut>(name: &str, test: F)
where
    F: FnOnce(Arc<dyn Store>, String) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    with_postgres(name, 1, |urls| async move {
        let url = urls.into_iter().next().expect("one database");
        let store = regente_store::open(&url).await.expect("open PostgreSQL");
        test(store, url).await;
    })
    .await;
}

/// The stream's events of `kind`, once at least `count` of them show (see
/// [`events_after_at_least`]); what shows after 30 s otherwise.
pub async fn events_of_kind(
    store: &(impl EventStore + ?Sized),
    kind: EventKind,
    count: usize,
) -> Vec<StoredEvent> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let events: Vec<StoredEvent> = store
            .events_after(EventCursor::START, 100_000)
            .await
            .unwrap()
            .into_iter()
            .filter(|event| event.kind == kind)
            .collect();
        if events.len() >= count || Instant::now() > deadline {
            return events;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
