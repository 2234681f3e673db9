//! Tells the end-to-end tests what this machine offers, so that a test needing
//! what is missing is ignored and says `SKIPPED: needs ...` in the test output,
//! instead of passing without having run: `regente_pg` when
//! `REGENTE_TEST_PG_URL` names a PostgreSQL server (the replica tests);
//! `regente_chromium` when Debian's `chromium` and `chromium-driver` are
//! installed (the console's browser tests; installed after a build, they show
//! after `touch crates/regente/build.rs`).

fn main() {
    println!("cargo:rustc-check-cfg=cfg(regente_pg)");
    println!("cargo:rustc-check-cfg=cfg(regente_chromium)");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=REGENTE_TEST_PG_URL");
    if std::env::var("REGENTE_TEST_PG_URL").is_ok_and(|url| !url.is_empty()) {
        println!("cargo:rustc-cfg=regente_pg");
    }
    let installed = |path: &str| std::path::Path::new(path).exists();
    if installed("/usr/bin/chromium") && installed("/usr/bin/chromedriver") {
        println!("cargo:rustc-cfg=regente_chromium");
    }
}
