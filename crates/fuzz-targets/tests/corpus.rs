//! Replays every fuzz corpus file, and every built-in seed, through its target's body, so
//! that `cargo test` guards what fuzzing found without nightly or cargo-fuzz. Also checks
//! that every target has its `cargo fuzz` binary, its `[[bin]]` and its corpus folder.

use std::path::{Path, PathBuf};

use bosun_fuzz_targets::{TARGETS, seeds, target};

/// The workspace root (this file is `crates/fuzz-targets/tests/corpus.rs`).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .and_then(Path::parent)
        .expect("crates/fuzz-targets sits two levels below the workspace root")
        .to_path_buf()
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|entry| entry.expect("read a corpus entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
}

/// Run one input; a panic names the file, so it can be run again with
/// `cargo fuzz run <target> <file>`.
fn replay(name: &str, what: &str, input: &[u8]) {
    let target = target(name).expect("a known target");
    let run = std::panic::catch_unwind(|| (target.run)(input));
    if let Err(panic) = run {
        let reason = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("(no message)");
        panic!("fuzz target {name} panics on {what}: {reason}");
    }
}

#[test]
fn every_corpus_file_and_seed_runs_clean() {
    let corpus = root().join("fuzz/corpus");
    let mut runs = 0;
    for t in TARGETS {
        let dir = corpus.join(t.name);
        let inputs = files(&dir);
        assert!(
            !inputs.is_empty(),
            "{} has no corpus; run scripts/fuzz {} and commit fuzz/corpus/{}",
            t.name,
            t.name,
            t.name
        );
        for file in inputs {
            let input = std::fs::read(&file).expect("read a corpus file");
            replay(t.name, &file.display().to_string(), &input);
            runs += 1;
        }
        for (i, seed) in seeds(t.name).iter().enumerate() {
            replay(t.name, &format!("built-in seed {i}"), seed);
            runs += 1;
        }
    }
    assert!(runs >= TARGETS.len());
}

#[test]
fn every_target_has_its_binary_and_folder_and_nothing_else_does() {
    let fuzz = root().join("fuzz");
    let manifest = std::fs::read_to_string(fuzz.join("Cargo.toml")).expect("read fuzz/Cargo.toml");
    for t in TARGETS {
        let source = fuzz.join("fuzz_targets").join(format!("{}.rs", t.name));
        let text = std::fs::read_to_string(&source)
            .unwrap_or_else(|e| panic!("{}: {e}; add the binary", source.display()));
        assert!(
            text.contains(&format!("bosun_fuzz_targets::run(\"{}\"", t.name)),
            "{} does not run the body registered for {}",
            source.display(),
            t.name
        );
        assert!(
            manifest.contains(&format!("name = \"{}\"", t.name)),
            "fuzz/Cargo.toml has no [[bin]] for {}",
            t.name
        );
    }
    for folder in ["fuzz_targets", "corpus"] {
        for entry in std::fs::read_dir(fuzz.join(folder)).expect("read fuzz/") {
            let path = entry.expect("read an entry").path();
            let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
            assert!(
                target(&stem).is_some(),
                "{} belongs to no target in bosun_fuzz_targets::TARGETS",
                path.display()
            );
        }
    }
}
