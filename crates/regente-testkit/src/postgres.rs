//! PostgreSQL databases for tests: one fresh database per test server (or per
//! group of replicas), on the server `REGENTE_TEST_PG_URL` names, dropped at
//! the end.
//!
//! Tests that need PostgreSQL whatever the suite runs on (the replicas) carry
//! `#[cfg_attr(not(regente_pg), ignore = "SKIPPED: needs PostgreSQL (set
//! REGENTE_TEST_PG_URL)")]`: see the crate's documentation.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Whether the suite runs its servers on PostgreSQL: `REGENTE_E2E_DATABASE=postgres`,
/// with `REGENTE_TEST_PG_URL` naming a server and a role that may create databases.
pub fn on_postgres() -> bool {
    match std::env::var("REGENTE_E2E_DATABASE").as_deref() {
        Ok("postgres") => true,
        Ok("sqlite") | Ok("") | Err(_) => false,
        Ok(other) => panic!("REGENTE_E2E_DATABASE={other:?}: use sqlite or postgres"),
    }
}

/// A PostgreSQL database made for a test, dropped when this is dropped.
pub struct TestDatabase {
    server: String,
    name: String,
    /// The URL a server takes as `--database-url`.
    pub url: String,
}

impl TestDatabase {
    /// A database for one test server, when the suite runs on PostgreSQL.
    pub fn for_suite() -> Option<TestDatabase> {
        on_postgres().then(|| TestDatabase::named("regente_e2e"))
    }

    /// A fresh database, named `PREFIX_...`, on the server `REGENTE_TEST_PG_URL`
    /// names.
    pub fn named(prefix: &str) -> TestDatabase {
        let server = std::env::var("REGENTE_TEST_PG_URL")
            .ok()
            .filter(|url| !url.is_empty())
            .expect("this test needs PostgreSQL: set REGENTE_TEST_PG_URL");
        let name = format!("{prefix}_{}", unique_suffix());
        let create = format!("CREATE DATABASE {name}");
        postgres_admin(&server, &create)
            .unwrap_or_else(|e| panic!("{create} (the role needs CREATEDB): {e}"));
        let url = with_database(&server, &name);
        TestDatabase { server, name, url }
    }
}

impl Drop for TestDatabase {
    /// Best effort: PostgreSQL may refuse while a session it cannot end (such as
    /// autovacuum's) is on the database; a throwaway test cluster keeps it then.
    fn drop(&mut self) {
        let drop = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        if let Err(e) = postgres_admin(&self.server, &drop) {
            eprintln!("{drop}: {e}");
        }
    }
}

/// `url` with its database replaced, query kept.
fn with_database(url: &str, database: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a postgres:// URL");
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let query = tail.find('?').map_or("", |at| &tail[at..]);
    format!("{scheme}://{authority}/{database}{query}")
}

/// Unique across the tests of one run and across processes.
fn unique_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("time after 1970")
        .as_nanos();
    format!(
        "{}_{nanos}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Runs one statement on the server's own database, on a runtime of its own
/// (callers are not on an async task).
fn postgres_admin(server: &str, statement: &str) -> Result<(), sqlx::Error> {
    use sqlx::{Connection as _, Executor as _};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime for the database setup");
    runtime.block_on(async {
        let mut admin = sqlx::PgConnection::connect(server).await?;
        let executed = admin.execute(statement).await.map(|_| ());
        let _ = admin.close().await;
        executed
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_is_replaced_and_the_query_kept() {
        assert_eq!(
            with_database("postgres://u:p@h:5432/regente?sslmode=disable", "t_1"),
            "postgres://u:p@h:5432/t_1?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h", "t_1"), "postgres://h/t_1");
        assert_eq!(
            with_database("postgres://h?sslmode=disable", "t_1"),
            "postgres://h/t_1?sslmode=disable"
        );
    }

    #[test]
    fn suffixes_differ_within_a_process() {
        assert_ne!(unique_suffix(), unique_suffix());
    }
}
