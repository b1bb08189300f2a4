//! Replays the committed corpus (`corpus/<target>/*`) through every target on stable: the seeds, what
//! `cargo fuzz cmin` kept, and each crash fuzzing found (named `crash-…`), so a fixed bug stays fixed and
//! `make test` exercises every path fuzzing reached.

use std::path::{Path, PathBuf};

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus").join(target)
}

fn inputs(target: &str) -> Vec<PathBuf> {
    let dir = corpus_dir(target);
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut files: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_file()).collect();
    files.sort();
    files
}

#[test]
fn every_target_has_a_corpus_and_a_libfuzzer_binary() {
    for (name, _) in dps_fuzz::TARGETS {
        assert!(!inputs(name).is_empty(), "corpus/{name} is empty");
        let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/fuzz_targets").join(format!("{name}.rs"));
        assert!(bin.is_file(), "{} is missing", bin.display());
    }
}

#[test]
fn the_corpus_replays_through_every_target() {
    for (name, target) in dps_fuzz::TARGETS {
        for file in inputs(name) {
            let data = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            let outcome = std::panic::catch_unwind(|| target(&data));
            assert!(
                outcome.is_ok(),
                "{name}: {} fails (replay: cargo +nightly fuzz run --fuzz-dir crates/dps-fuzz/fuzz {name} {})",
                file.display(),
                file.display()
            );
        }
    }
}
