//! Tells the store's tests whether a PostgreSQL server is at hand: without one,
//! the PostgreSQL half of the suite is ignored and says `SKIPPED: needs ...` in
//! the test output, instead of passing without having run (`regente_pg` when
//! `REGENTE_TEST_PG_URL` names a server).

fn main() {
    println!("cargo:rustc-check-cfg=cfg(regente_pg)");
    println!("cargo:rerun-if-changed=build.rs");
    // The migrations are compiled in (sqlx::migrate!): a new one must rebuild.
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo:rerun-if-env-changed=REGENTE_TEST_PG_URL");
    if std::env::var("REGENTE_TEST_PG_URL").is_ok_and(|url| !url.is_empty()) {
        println!("cargo:rustc-cfg=regente_pg");
    }
}
