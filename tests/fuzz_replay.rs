//! Replays the fuzz regression corpus (`fuzz/regressions/<target>/*`) through the same checks
//! the cargo-fuzz targets run (`gpt_hybrid::fuzz_checks`), so every input a fuzz run found
//! interesting, and every crash it found, stays covered by plain `cargo test`.

use std::path::Path;

use gpt_hybrid::fuzz_checks::TARGETS;

#[test]
fn every_target_has_a_corpus() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions");
    for (name, _) in TARGETS {
        let n = std::fs::read_dir(root.join(name)).map_or(0, |d| d.count());
        assert!(n > 0, "no regression inputs for fuzz target {name}");
    }
}

fn replay(name: &str) {
    let (_, check) = TARGETS
        .iter()
        .find(|(n, _)| *n == name)
        .expect("known target");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/regressions")
        .join(name);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .collect();
    files.sort();
    for path in files {
        let data = std::fs::read(&path).expect("corpus file");
        // Name the input on failure: the panic itself says which property failed.
        let result = std::panic::catch_unwind(|| check(&data));
        assert!(result.is_ok(), "{name}: {} fails", path.display());
    }
}

#[test]
fn load_vocab_merges() {
    replay("load_vocab_merges");
}

#[test]
fn load_tokenizer_json() {
    replay("load_tokenizer_json");
}

#[test]
fn load_tiktoken() {
    replay("load_tiktoken");
}

#[test]
fn codec() {
    replay("codec");
}

#[test]
fn incremental_decoder() {
    replay("incremental_decoder");
}

#[test]
fn sampler() {
    replay("sampler");
}

#[test]
fn trainer() {
    replay("trainer");
}
