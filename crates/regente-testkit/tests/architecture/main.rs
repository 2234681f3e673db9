//! The architecture's rules (ARCHITECTURE.md, "Invariants") as tests, read off
//! the workspace's manifests and sources: only `regente-store` holds an SQL
//! driver, `service/` sees no axum, `api/` reads no store, every crate takes
//! the workspace's `rust-version`, no source file under `crates/*/src` is over
//! 800 lines. A broken rule names the file.
//!
//! Each rule is a function of a root directory; each test runs it on the
//! workspace (nothing may break it) and on a small tree written for the test
//! that breaks it on purpose (it must name the offending file), so that a rule
//! that could never fail would show.

mod rules;

use std::path::{Path, PathBuf};

use rules::*;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the workspace root")
}

fn assert_kept(rule: &str, violations: Vec<Violation>) {
    let shown: Vec<String> = violations.iter().map(ToString::to_string).collect();
    assert!(
        violations.is_empty(),
        "{rule} is broken:\n  {}",
        shown.join("\n  ")
    );
}

/// Asserts that the rule found exactly these files at fault.
fn assert_caught(violations: Vec<Violation>, files: &[&str]) {
    let mut found: Vec<&str> = violations.iter().map(|v| v.file.as_str()).collect();
    found.sort();
    found.dedup();
    assert_eq!(found, files, "{violations:#?}");
}

/// A workspace that breaks every rule once, beside crates that keep them.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let fixture = Fixture {
            dir: tempfile::tempdir().expect("a temporary directory"),
        };
        fixture.write(
            "Cargo.toml",
            "[workspace]\nmembers = [\"crates/*\", \"bench\"]\n\n\
             [workspace.package]\nrust-version = \"1.85\"\n",
        );
        fixture.package(
            "crates/regente-store",
            "[dependencies]\nsqlx = \"0.8\"\nrusqlite = \"0.32\"\n",
        );
        fixture.package(
            "crates/regente-testkit",
            "publish = false\n\n[dependencies]\nsqlx = \"0.8\"\n",
        );
        fixture.package(
            "crates/regente-server",
            "[dependencies]\nregente-store = { path = \"../regente-store\" }\n\n\
             [dev-dependencies]\nrusqlite = \"0.32\"\nregente-testkit = { path = \"../regente-testkit\" }\n",
        );
        fixture.package(
            "crates/leaky",
            "[target.'cfg(unix)'.dependencies]\nrusqlite = \"0.32\"\n",
        );
        fixture.package(
            "crates/shipped-with-kit",
            "[dependencies]\nregente-testkit = { path = \"../regente-testkit\" }\n",
        );
        fixture.package("bench", "publish = false\n\n[dependencies]\nregente-testkit = { path = \"../crates/regente-testkit\" }\n");
        fixture.write(
            "crates/old/Cargo.toml",
            "[package]\nname = \"old\"\nrust-version = \"1.70\"\n",
        );
        fixture.write(
            "crates/regente-server/src/service/runs.rs",
            "//! Runs; no axum here (a comment), nor in \"axum::Json\" (a string).\n\
             use crate::store::Store;\npub fn run(ctx: &Context) { ctx.store.enqueue(); }\n",
        );
        fixture.write(
            "crates/regente-server/src/service/users.rs",
            "pub fn list() -> axum::Json<()> { todo!() }\n",
        );
        fixture.write(
            "crates/regente-server/src/api/runs.rs",
            "// ctx.store in a comment is no read\n\
             pub async fn run(ctx: &Context) { service::runs::run(ctx).await; let s = \".store\"; }\n",
        );
        fixture.write(
            "crates/regente-server/src/api/runtime.rs",
            "pub async fn key(ctx: &Context) {\n    ctx\n        .store\n        .find().await;\n}\n",
        );
        fixture.write("crates/leaky/src/lib.rs", &"// a line\n".repeat(MAX_LINES));
        fixture.write(
            "crates/leaky/src/long.rs",
            &"// a line\n".repeat(MAX_LINES + 1),
        );
        fixture.write(
            "crates/old/src/tests.rs",
            &"// a line\n".repeat(MAX_LINES + 1),
        );
        fixture
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn write(&self, path: &str, text: &str) {
        let path = self.root().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    /// A crate that takes the workspace's rust-version, with `rest` after [package]'s name.
    fn package(&self, dir: &str, rest: &str) {
        let name = dir.rsplit('/').next().unwrap();
        self.write(
            &format!("{dir}/Cargo.toml"),
            &format!("[package]\nname = \"{name}\"\nrust-version.workspace = true\n{rest}"),
        );
    }
}

#[test]
fn only_the_store_depends_on_an_sql_driver() {
    assert_kept(
        "only regente-store depends on rusqlite or sqlx",
        sql_drivers_only_in_the_store(&workspace()),
    );
    let fixture = Fixture::new();
    assert_caught(
        sql_drivers_only_in_the_store(fixture.root()),
        &[
            "crates/leaky/Cargo.toml",
            "crates/shipped-with-kit/Cargo.toml",
        ],
    );
}

#[test]
fn use_cases_see_no_axum() {
    assert_kept("service/ sees no axum", no_axum_in_service(&workspace()));
    let fixture = Fixture::new();
    assert_caught(
        no_axum_in_service(fixture.root()),
        &["crates/regente-server/src/service/users.rs"],
    );
}

#[test]
fn handlers_read_no_store() {
    assert_kept("api/ reads no store", no_store_in_api(&workspace()));
    let fixture = Fixture::new();
    let violations = no_store_in_api(fixture.root());
    assert!(violations[0].what.starts_with("line 3:"), "{violations:?}");
    assert_caught(violations, &["crates/regente-server/src/api/runtime.rs"]);
}

#[test]
fn every_crate_takes_the_workspace_rust_version() {
    assert_kept(
        "every crate takes the workspace's rust-version",
        rust_version_inherited(&workspace()),
    );
    let fixture = Fixture::new();
    assert_caught(
        rust_version_inherited(fixture.root()),
        &["crates/old/Cargo.toml"],
    );
}

#[test]
fn no_source_file_is_over_800_lines() {
    assert_kept(
        "no source file under crates/*/src is over 800 lines",
        no_long_source_files(&workspace(), LONG_FILES_BEING_SPLIT),
    );
    let fixture = Fixture::new();
    assert_caught(
        no_long_source_files(fixture.root(), &[]),
        &["crates/leaky/src/long.rs", "crates/old/src/tests.rs"],
    );
    // A file let off the rule must still need it, or the list would go stale.
    assert_caught(
        no_long_source_files(
            fixture.root(),
            &["crates/leaky/src/long.rs", "crates/leaky/src/lib.rs"],
        ),
        &["crates/leaky/src/lib.rs", "crates/old/src/tests.rs"],
    );
}

#[test]
fn only_code_is_searched() {
    let code = code_only(
        "let a = \"// not a comment\"; // axum\n\
         let b = r#\"axum \"quoted\"\"#; /* axum\n axum */ let c = '\"'; let d = 'x';\n\
         fn f<'a>(s: &'a str) -> &'a str { s } // store",
    );
    assert!(!code.contains("axum"), "{code}");
    assert!(!code.contains("store"), "{code}");
    assert_eq!(code.lines().count(), 4, "{code}");
    assert!(code.contains("fn f<'a>(s: &'a str)"), "{code}");
}
