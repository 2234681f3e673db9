//! The store's conformance suite: each test is written once against `Arc<dyn Store>`
//! and runs on every backend, so that SQLite and PostgreSQL keep the same semantics.
//! One module per aggregate; each test runs as `<aggregate>::sqlite::<name>` and
//! `<aggregate>::postgres::<name>`.
//!
//! - SQLite tests run always, each on a fresh database file in a temporary folder.
//! - PostgreSQL tests run when `REGENTE_TEST_PG_URL` names a PostgreSQL server (a
//!   role allowed to create databases): each test creates a database of its own,
//!   so tests are independent and run in parallel, and drops it at the end.
//!   Without the variable they say they were skipped and pass. `.ci/run` sets it.

#[path = "../support/mod.rs"]
mod support;
use support::{on_postgres, on_sqlite, with_database};

// ---------------------------------------------------------------------------
// Running every test on every backend.

/// Declares a module's tests, run once per backend as `sqlite::name` and
/// `postgres::name`: each name in `store` is an `async fn name(store: Arc<dyn
/// Store>)` of the module, and each in `url` an `async fn name(store: Arc<dyn
/// Store>, url: String)` for tests that open the same database again.
macro_rules! conformance {
    (store: [$($name:ident),* $(,)?] $(, url: [$($with_url:ident),* $(,)?])? $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    crate::on_sqlite(|store, _| super::$name(store)).await;
                }
            )*
            $($(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $with_url() {
                    crate::on_sqlite(super::$with_url).await;
                }
            )*)?
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                #[cfg_attr(not(regente_pg), ignore = "SKIPPED: needs PostgreSQL (set REGENTE_TEST_PG_URL)")]
                async fn $name() {
                    crate::on_postgres(stringify!($name), |store, _| super::$name(store)).await;
                }
            )*
            $($(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                #[cfg_attr(not(regente_pg), ignore = "SKIPPED: needs PostgreSQL (set REGENTE_TEST_PG_URL)")]
                async fn $with_url() {
                    crate::on_postgres(stringify!($with_url), super::$with_url).await;
                }
            )*)?
        }
    };
}

/// Declares tests that only PostgreSQL can put to the test, as
/// `postgres::name`: each an `async fn name(store: Arc<dyn Store>, url: String)`
/// of the module, run on a fresh database.
macro_rules! postgres_only {
    ($($name:ident),* $(,)?) => {
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                #[cfg_attr(not(regente_pg), ignore = "SKIPPED: needs PostgreSQL (set REGENTE_TEST_PG_URL)")]
                async fn $name() {
                    crate::on_postgres(stringify!($name), super::$name).await;
                }
            )*
        }
    };
}

mod api_keys;
mod audit;
mod cluster;
mod credentials;
mod dashboard;
mod events;
mod events_postgres;
mod executions;
mod fixtures;
mod flows;
mod leases;
mod leases_postgres;
mod organizations;
mod reports;
mod robots;
mod runtimes;
mod schedule_flows;
mod schedules;
mod webhooks;

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
