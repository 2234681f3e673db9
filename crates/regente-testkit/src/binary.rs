//! Which `regente` binary runs, and the command line it starts from.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The `regente` binary of the build this program belongs to: beside the
/// running executable (the benchmark in `target/release/`), or one folder up
/// (a test binary in `target/<profile>/deps/`). `cargo test -p regente` builds it
/// before its tests run; a caller that knows better passes its own path to
/// [`ServerOptions::binary`](crate::ServerOptions::binary) or
/// [`AgentOptions::binary`](crate::AgentOptions::binary).
pub fn regente_binary() -> PathBuf {
    let me = std::env::current_exe().expect("the path of the running executable");
    let candidates: Vec<PathBuf> = me
        .ancestors()
        .skip(1)
        .take(2)
        .map(|dir| dir.join("regente"))
        .collect();
    candidates
        .iter()
        .find(|path| path.is_file())
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "no regente binary at {candidates:?}: build it first (`cargo build -p regente`), \
                 or give its path"
            )
        })
}

/// A command of the binary without any `REGENTE_*` variable of the caller's own
/// environment (so that a run depends only on what the caller sets), and
/// without colours in its log.
pub fn regente_command(binary: &Path) -> Command {
    let mut command = Command::new(binary);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("REGENTE_") {
            command.env_remove(name);
        }
    }
    command.env("NO_COLOR", "1");
    command
}
