//! The fuzz targets, as plain functions of the input bytes: each must never
//! panic, whatever the bytes, and checks what must hold of what it accepts.
//!
//! cargo-fuzz drives them from `fuzz/` (libFuzzer, coverage-guided, a nightly
//! toolchain); `tests/corpus.rs` replays the corpus in `fuzz/corpus/<target>`
//! and seeded mutations of it on any toolchain, in every test run.

use regente_core::{
    parse_run_body, resolve_variables, ResolvedVariables, RobotManifest, VariableDeclaration,
};
use regente_package::Limits;
use regente_proto::{AgentMessage, ServerMessage};
use serde_json::Value;

/// A fuzz target: panics when something that must hold does not.
pub type Target = fn(&[u8]);

/// Every target by the name of its corpus directory and cargo-fuzz binary.
pub const TARGETS: &[(&str, Target)] = &[
    ("package_inspector", package_inspector),
    ("robot_manifest", robot_manifest),
    ("run_variables", run_variables),
    ("agent_protocol", agent_protocol),
];

/// Small limits, so that a run explores shapes rather than sizes.
fn limits() -> Limits {
    Limits {
        max_package_bytes: 1 << 20,
        max_unpacked_bytes: 4 << 20,
        max_entries: 256,
    }
}

/// The package inspector (zip slip, links, bombs, sizes, duplicate names,
/// robot.toml): a package it accepts has a valid manifest it can parse again.
pub fn package_inspector(data: &[u8]) {
    let Ok(inspected) = regente_package::inspect(data, &limits()) else {
        return;
    };
    assert_eq!(inspected.sha256, regente_package::sha256_hex(data));
    assert!(inspected.root.is_empty() || inspected.root.ends_with('/'));
    assert!(!inspected.root.contains(".."), "{:?}", inspected.root);
    let again = RobotManifest::parse(&inspected.manifest_text).expect("an accepted manifest");
    assert_eq!(again, inspected.manifest);
}

/// robot.toml: what parses has a command, bounded settings, and variables
/// whose defaults resolve.
pub fn robot_manifest(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(manifest) = RobotManifest::parse(text) else {
        return;
    };
    assert!(!manifest.command.is_empty());
    assert!(manifest.retries <= regente_core::manifest::MAX_RETRIES);
    if let Some(timeout) = manifest.timeout {
        assert!(timeout.as_secs() <= regente_core::manifest::MAX_TIMEOUT_SECONDS);
    }
    if manifest.variables.iter().all(|v| v.default.is_some()) {
        if let Ok(resolved) = resolve_variables(&manifest.variables, &[]) {
            assert_eq!(resolved.len(), manifest.variables.len());
        }
    }
}

/// A run's variables, from a request body to what a robot gets: what resolves
/// fits a process's environment and reads back unchanged from its stored form.
pub fn run_variables(data: &[u8]) {
    let Ok(requested) = parse_run_body(data) else {
        return;
    };
    let declared = declared();
    for declarations in [&declared[..], &[]] {
        let Ok(resolved) = resolve_variables(declarations, &requested) else {
            continue;
        };
        let stored = resolved.to_json();
        assert_eq!(ResolvedVariables::from_json(&stored), resolved);
        let mut total = 0;
        for (name, value) in resolved.iter() {
            let entry = "REGENTE_VAR_".len() + name.len() + 2 + value.text_form().len();
            assert!(entry <= regente_core::variables::MAX_ENVIRONMENT_ENTRY);
            total += entry;
        }
        assert!(total <= regente_core::variables::MAX_ENVIRONMENT_TOTAL);
    }
}

fn declared() -> Vec<VariableDeclaration> {
    let manifest = RobotManifest::parse(
        r#"name = "fuzz"
command = ["true"]
[[variables]]
name = "TEXT"
type = "text"
default = "x"
[[variables]]
name = "NUMBER"
type = "number"
default = 1
[[variables]]
name = "FLAG"
type = "boolean"
default = false
[[variables]]
name = "DOC"
type = "json"
default = "{}"
"#,
    )
    .expect("the fuzz target's own manifest");
    manifest.variables
}

/// The agent protocol's messages, both ways: what decodes encodes and decodes
/// again to the same message.
pub fn agent_protocol(data: &[u8]) {
    if let Ok(message) = serde_json::from_slice::<AgentMessage>(data) {
        let text = serde_json::to_string(&message).expect("encodes");
        let again: AgentMessage = serde_json::from_str(&text).expect("decodes its own form");
        assert_same_json(
            &serde_json::to_value(&message).unwrap(),
            &serde_json::to_value(&again).unwrap(),
        );
    }
    if let Ok(message) = serde_json::from_slice::<ServerMessage>(data) {
        let text = serde_json::to_string(&message).expect("encodes");
        let again: ServerMessage = serde_json::from_str(&text).expect("decodes its own form");
        assert_same_json(
            &serde_json::to_value(&message).unwrap(),
            &serde_json::to_value(&again).unwrap(),
        );
    }
}

/// Equal JSON, floats within rounding (the parser may land one unit off).
fn assert_same_json(a: &Value, b: &Value) {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            assert!((x - y).abs() <= x.abs().max(y.abs()) * 1e-12, "{x} != {y}");
        }
        (Value::Array(x), Value::Array(y)) => {
            assert_eq!(x.len(), y.len());
            x.iter().zip(y).for_each(|(x, y)| assert_same_json(x, y));
        }
        (Value::Object(x), Value::Object(y)) => {
            assert_eq!(x.len(), y.len());
            for (key, value) in x {
                assert_same_json(value, y.get(key).expect("the same keys"));
            }
        }
        _ => assert_eq!(a, b),
    }
}

/// xorshift64*: a small deterministic generator for the seeded mutations.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}

/// One mutation of `input`, in the manner of libFuzzer's: bytes flipped,
/// set to edge values, inserted, removed, repeated, or spliced from `other`.
pub fn mutate(rng: &mut Rng, input: &[u8], other: &[u8]) -> Vec<u8> {
    const EDGES: &[u8] = &[
        0, 1, 0x7f, 0x80, 0xff, b'"', b'\\', b'{', b'}', b'[', b']', b'/',
    ];
    let mut out = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(out.len() + 1);
        match rng.below(7) {
            0 if !out.is_empty() => {
                let at = at.min(out.len() - 1);
                out[at] ^= 1 << rng.below(8);
            }
            1 if !out.is_empty() => {
                let at = at.min(out.len() - 1);
                out[at] = EDGES[rng.below(EDGES.len())];
            }
            2 => out.insert(at, rng.next_u64() as u8),
            3 if !out.is_empty() => {
                let end = (at + 1 + rng.below(16)).min(out.len());
                out.drain(at.min(end)..end);
            }
            4 if !out.is_empty() => {
                let start = rng.below(out.len());
                let end = (start + 1 + rng.below(32)).min(out.len());
                let piece = out[start..end].to_vec();
                out.splice(at..at, piece);
            }
            5 if !other.is_empty() => {
                let start = rng.below(other.len());
                let end = (start + 1 + rng.below(64)).min(other.len());
                out.splice(at..at, other[start..end].iter().copied());
            }
            _ => out.truncate(at),
        }
    }
    out
}
