//! Tells the end-to-end tests what this machine offers, so that a test needing
//! what is missing is ignored and says `SKIPPED: needs ...` in the test output,
//! instead of passing without having run:
//!
//! - `regente_pg`: `REGENTE_TEST_PG_URL` names a PostgreSQL server (the replica tests);
//! - `regente_robot_framework`: `python3 -c 'import robot'` works (the `regente up` test
//!   runs the Robot Framework example). Installed after a build? `touch crates/regente/build.rs`.

use std::process::{Command, Stdio};

fn main() {
    println!("cargo:rustc-check-cfg=cfg(regente_pg)");
    println!("cargo:rustc-check-cfg=cfg(regente_robot_framework)");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=REGENTE_TEST_PG_URL");
    if std::env::var("REGENTE_TEST_PG_URL").is_ok_and(|url| !url.is_empty()) {
        println!("cargo:rustc-cfg=regente_pg");
    }
    // Which python3 answers, and where it looks for modules.
    for variable in ["PATH", "VIRTUAL_ENV", "PYTHONPATH", "PYENV_VERSION"] {
        println!("cargo:rerun-if-env-changed={variable}");
    }
    let robot_framework = Command::new("python3")
        .args(["-c", "import robot"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if robot_framework {
        println!("cargo:rustc-cfg=regente_robot_framework");
    }
}
