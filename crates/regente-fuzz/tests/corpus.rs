//! The fuzz targets on any toolchain: each replays its corpus
//! (`fuzz/corpus/<target>`, committed), then seeded mutations of it. Bounded and
//! deterministic; `REGENTE_FUZZ_MUTATIONS` (per target) and `REGENTE_FUZZ_SEED`
//! change the size and the seed. The coverage-guided runs are cargo-fuzz's, in
//! `fuzz/` (see README, "Test it").

use std::path::PathBuf;

use regente_fuzz::{mutate, Rng, TARGETS};

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files.iter().map(|f| std::fs::read(f).unwrap()).collect()
}

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn every_target_survives_its_corpus_and_seeded_mutations_of_it() {
    let mutations = setting("REGENTE_FUZZ_MUTATIONS", 20_000);
    let seed = setting("REGENTE_FUZZ_SEED", 0x5eed_f00d);
    for (name, target) in TARGETS {
        let inputs = corpus(name);
        assert!(inputs.len() >= 3, "{name}: a corpus of a few inputs");
        for input in &inputs {
            target(input);
        }
        let mut rng = Rng(seed ^ name.len() as u64);
        for i in 0..mutations {
            let base = &inputs[rng.below(inputs.len())];
            let other = &inputs[rng.below(inputs.len())];
            let input = mutate(&mut rng, base, other);
            let outcome = std::panic::catch_unwind(|| target(&input));
            assert!(
                outcome.is_ok(),
                "{name}: mutation {i} (seed {seed:#x}) failed on {} bytes: {:?}",
                input.len(),
                String::from_utf8_lossy(&input)
            );
        }
    }
}
