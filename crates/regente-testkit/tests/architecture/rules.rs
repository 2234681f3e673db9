//! The rules, each a function of a root directory (a workspace) that answers
//! what breaks it, each violation naming its file relative to the root.

use std::fmt;
use std::path::{Path, PathBuf};

/// The crates that may depend on an SQL driver: the store, and the test kit,
/// which creates and drops the PostgreSQL tests' databases (a crate that only
/// tests and the benchmark use, which [`sql_drivers_only_in_the_store`] checks).
const SQL_CRATES: &[&str] = &["regente-store", "regente-testkit"];
const SQL_DRIVERS: &[&str] = &["rusqlite", "sqlx"];
const TEST_KIT: &str = "regente-testkit";

/// Source files longer than the limit for now: another change splits them.
/// Remove an entry once its file is short; the rule then fails until it is
/// removed, so that the list stays true.
pub const LONG_FILES_BEING_SPLIT: &[&str] = &[];
pub const MAX_LINES: usize = 800;

/// What breaks a rule, and where.
#[derive(Debug)]
pub struct Violation {
    /// Relative to the root, with `/` separators.
    pub file: String,
    pub what: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.file, self.what)
    }
}

fn violation(root: &Path, file: &Path, what: String) -> Violation {
    let file = file
        .strip_prefix(root)
        .unwrap_or(file)
        .to_string_lossy()
        .replace('\\', "/");
    Violation { file, what }
}

fn read_toml(path: &Path) -> toml::Table {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.parse()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The `Cargo.toml` of every member of the workspace at `root` (members given
/// as paths or as `dir/*`).
pub fn member_manifests(root: &Path) -> Vec<PathBuf> {
    let workspace = read_toml(&root.join("Cargo.toml"));
    let members = workspace["workspace"]["members"]
        .as_array()
        .expect("workspace.members");
    let mut manifests = Vec::new();
    for member in members {
        let member = member.as_str().expect("a member path");
        let dirs: Vec<PathBuf> = match member.strip_suffix("/*") {
            Some(parent) => {
                let mut dirs: Vec<PathBuf> = std::fs::read_dir(root.join(parent))
                    .unwrap_or_else(|e| panic!("{parent}: {e}"))
                    .map(|entry| entry.expect("a directory entry").path())
                    .collect();
                dirs.sort();
                dirs
            }
            None => vec![root.join(member)],
        };
        manifests.extend(
            dirs.into_iter()
                .map(|dir| dir.join("Cargo.toml"))
                .filter(|manifest| manifest.is_file()),
        );
    }
    manifests
}

/// The dependency tables of a manifest that ship with the crate (normal and
/// build dependencies, target-specific ones included), by section name.
fn shipped_dependencies(manifest: &toml::Table) -> Vec<(String, &toml::Table)> {
    let mut tables = Vec::new();
    for section in ["dependencies", "build-dependencies"] {
        if let Some(table) = manifest.get(section).and_then(toml::Value::as_table) {
            tables.push((section.to_owned(), table));
        }
        let targets = manifest.get("target").and_then(toml::Value::as_table);
        for (target, value) in targets.into_iter().flatten() {
            if let Some(table) = value.get(section).and_then(toml::Value::as_table) {
                tables.push((format!("target.{target}.{section}"), table));
            }
        }
    }
    tables
}

fn package_name(manifest: &toml::Table) -> &str {
    manifest["package"]["name"].as_str().expect("package.name")
}

/// Only `regente-store` (and the test kit) depends on an SQL driver, dev
/// dependencies aside; the test kit is no normal dependency of a published crate.
pub fn sql_drivers_only_in_the_store(root: &Path) -> Vec<Violation> {
    let mut violations = Vec::new();
    for path in member_manifests(root) {
        let manifest = read_toml(&path);
        let name = package_name(&manifest);
        let published = manifest["package"].get("publish") != Some(&toml::Value::Boolean(false));
        for (section, table) in shipped_dependencies(&manifest) {
            for driver in SQL_DRIVERS {
                if table.contains_key(*driver) && !SQL_CRATES.contains(&name) {
                    violations.push(violation(
                        root,
                        &path,
                        format!("{name} has {driver} in [{section}]: only regente-store holds SQL"),
                    ));
                }
            }
            if published && table.contains_key(TEST_KIT) {
                violations.push(violation(
                    root,
                    &path,
                    format!(
                        "{name} has {TEST_KIT} in [{section}]: the test kit is a dev-dependency"
                    ),
                ));
            }
        }
    }
    violations
}

/// Every crate takes the workspace's `rust-version`.
pub fn rust_version_inherited(root: &Path) -> Vec<Violation> {
    let workspace_path = root.join("Cargo.toml");
    let workspace = read_toml(&workspace_path);
    let mut violations = Vec::new();
    if workspace["workspace"]
        .get("package")
        .and_then(|package| package.get("rust-version"))
        .is_none()
    {
        violations.push(violation(
            root,
            &workspace_path,
            "no [workspace.package] rust-version".into(),
        ));
    }
    for path in member_manifests(root) {
        let manifest = read_toml(&path);
        let inherited = manifest["package"]
            .get("rust-version")
            .and_then(|version| version.get("workspace"))
            == Some(&toml::Value::Boolean(true));
        if !inherited {
            violations.push(violation(
                root,
                &path,
                format!(
                    "{} does not say `rust-version.workspace = true`",
                    package_name(&manifest)
                ),
            ));
        }
    }
    violations
}

/// The `.rs` files under `dir`, recursively, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return files;
    };
    for entry in entries {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// Each line of `dir`'s sources (comments and string contents left out) for
/// which `offends` answers what is wrong.
fn code_lines(root: &Path, dir: &str, offends: impl Fn(&str) -> Option<String>) -> Vec<Violation> {
    let mut violations = Vec::new();
    for path in rust_files(&root.join(dir)) {
        let source = std::fs::read_to_string(&path).expect("a UTF-8 source file");
        for (number, line) in code_only(&source).lines().enumerate() {
            if let Some(what) = offends(line) {
                let what = format!("line {}: {what}", number + 1);
                violations.push(violation(root, &path, what));
            }
        }
    }
    violations
}

/// `service/` never sees axum types.
pub fn no_axum_in_service(root: &Path) -> Vec<Violation> {
    code_lines(root, "crates/regente-server/src/service", |line| {
        has_word(line, "axum").then(|| "axum in a use case: HTTP belongs to api/".into())
    })
}

/// Handlers never touch the store: `api/` and the console's `console/` call
/// `service/`.
pub fn no_store_in_api(root: &Path) -> Vec<Violation> {
    [
        "crates/regente-server/src/api",
        "crates/regente-server/src/console",
    ]
    .into_iter()
    .flat_map(|dir| {
        code_lines(root, dir, |line| {
            reads_field(line, "store")
                .then(|| "the store read by a handler: call service/ instead".into())
        })
    })
    .collect()
}

/// No source file under `crates/*/src` is longer than [`MAX_LINES`], but for
/// those in `allowed`, each of which must still be that long.
pub fn no_long_source_files(root: &Path, allowed: &[&str]) -> Vec<Violation> {
    let mut violations = Vec::new();
    let crates = std::fs::read_dir(root.join("crates")).expect("a crates folder");
    let mut sources = Vec::new();
    for entry in crates {
        sources.extend(rust_files(
            &entry.expect("a directory entry").path().join("src"),
        ));
    }
    sources.sort();
    for path in &sources {
        let lines = std::fs::read_to_string(path)
            .expect("a source file")
            .lines()
            .count();
        let relative = violation(root, path, String::new()).file;
        if lines > MAX_LINES && !allowed.contains(&relative.as_str()) {
            violations.push(violation(
                root,
                path,
                format!("{lines} lines, over {MAX_LINES}: split it along its seams"),
            ));
        }
    }
    for listed in allowed {
        let path = root.join(listed);
        let lines = std::fs::read_to_string(&path).map_or(0, |text| text.lines().count());
        if lines <= MAX_LINES {
            violations.push(violation(
                root,
                &path,
                format!("listed as too long but has {lines} lines: take it off the list"),
            ));
        }
    }
    violations
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Whether `line` reads a field or calls a method named `name` (`.name` not
/// followed by more of an identifier).
fn reads_field(line: &str, name: &str) -> bool {
    let access = format!(".{name}");
    line.match_indices(&access).any(|(at, _)| {
        !line[at + access.len()..]
            .chars()
            .next()
            .is_some_and(is_word_char)
    })
}

/// Whether `word` stands in `line` as a whole identifier.
fn has_word(line: &str, word: &str) -> bool {
    line.match_indices(word).any(|(at, _)| {
        let before = line[..at].chars().next_back();
        let after = line[at + word.len()..].chars().next();
        !before.is_some_and(is_word_char) && !after.is_some_and(is_word_char)
    })
}

/// The source with comments and the contents of string and character
/// literals blanked, lines kept, so that only code is searched.
pub fn code_only(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let at = |i: usize| chars.get(i).copied();
    let mut out = String::with_capacity(source.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let previous_is_word = i > 0 && is_word_char(chars[i - 1]);
        if c == '/' && at(i + 1) == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && at(i + 1) == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && at(i + 1) == Some('*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && at(i + 1) == Some('/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    if chars[i] == '\n' {
                        out.push('\n');
                    }
                    i += 1;
                }
            }
        } else if c == 'r' && matches!(at(i + 1), Some('"' | '#')) && !previous_is_word {
            let mut j = i + 1;
            let mut hashes = 0;
            while at(j) == Some('#') {
                hashes += 1;
                j += 1;
            }
            if at(j) != Some('"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            let closing: String = std::iter::once('"')
                .chain("#".repeat(hashes).chars())
                .collect();
            while j < chars.len() && !chars[j..].starts_with(&closing.chars().collect::<Vec<_>>()) {
                if chars[j] == '\n' {
                    out.push('\n');
                }
                j += 1;
            }
            out.push_str("\"\"");
            i = j + closing.chars().count();
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    i += 1;
                } else if chars[i] == '\n' {
                    out.push('\n');
                }
                i += 1;
            }
            out.push_str("\"\"");
            i += 1;
        } else if c == '\'' && at(i + 1) == Some('\\') {
            let mut j = i + 2;
            while j < chars.len() && chars[j] != '\'' {
                j += 1;
            }
            out.push_str("' '");
            i = j + 1;
        } else if c == '\'' && at(i + 2) == Some('\'') {
            out.push_str("' '");
            i += 3;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}
