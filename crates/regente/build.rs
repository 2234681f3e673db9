//! Tells the end-to-end tests what this machine offers, so that a test needing
//! what is missing is ignored and says `SKIPPED: needs ...` in the test output,
//! instead of passing without having run: `regente_pg` when
//! `REGENTE_TEST_PG_URL` names a PostgreSQL server (the replica tests);
//! `regente_chromium` when Debian's `chromium` and `chromium-driver` are
//! installed (the console's browser tests; installed after a build, they show
//! after `touch crates/regente/build.rs`); `regente_root` when the build (and so
//! the tests) runs as root, which the robot-user tests need to create users and
//! switch to them.
//!
//! It also links the `regente` binary with packed relative relocations
//! (DT_RELR): see [`pack_relocations`].

fn main() {
    pack_relocations();
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

/// The position-independent binary's relative relocations, 1.2 MB of entries
/// that the dynamic loader reads at every start and that then stay in memory,
/// take 12 KB packed. Linkers that pack them make the binary require glibc 2.36
/// (`GLIBC_ABI_DT_RELR`), so they are packed only when building on and for a
/// Linux GNU system whose own glibc is that recent; only the `regente` binary,
/// not the build scripts and procedural macros, which run on the build host.
fn pack_relocations() {
    let host = std::env::var("HOST").unwrap_or_default();
    let target = std::env::var("TARGET").unwrap_or_default();
    if host == target && target.ends_with("-linux-gnu") && host_glibc_at_least(2, 36) {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn host_glibc_at_least(major: u32, minor: u32) -> bool {
    extern "C" {
        fn gnu_get_libc_version() -> *const std::ffi::c_char;
    }
    // SAFETY: glibc answers a static NUL-terminated string.
    let version = unsafe { std::ffi::CStr::from_ptr(gnu_get_libc_version()) };
    let mut parts = version
        .to_str()
        .unwrap_or("")
        .split('.')
        .map(|part| part.parse::<u32>().unwrap_or(0));
    let found = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    found >= (major, minor)
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn host_glibc_at_least(_major: u32, _minor: u32) -> bool {
    false
}
