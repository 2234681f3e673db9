//! Tells the end-to-end tests what this machine offers, so that a test needing
//! what is missing is ignored and says `SKIPPED: needs ...` in the test output,
//! instead of passing without having run: `regente_pg` when
//! `REGENTE_TEST_PG_URL` names a PostgreSQL server (the replica tests);
//! `regente_chromium` when Debian's `chromium` and `chromium-driver` are
//! installed (the console's browser tests; installed after a build, they show
//! after `touch crates/regente/build.rs`); `regente_root` when the build (and so
//! the tests) runs as root, which the robot-user tests need to create users and
//! switch to them.

fn main() {
    println!("cargo:rustc-check-cfg=cfg(regente_pg)");
    println!("cargo:rustc-check-cfg=cfg(regente_chromium)");
    println!("cargo:rustc-check-cfg=cfg(regente_root)");
    let root = std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .find_map(|line| line.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1).map(|euid| euid == "0"))
            .unwrap_or(false)
    });
    if root {
        println!("cargo:rustc-cfg=regente_root");
    }
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
