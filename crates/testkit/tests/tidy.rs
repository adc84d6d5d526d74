//! Tidy: the invariants ARCHITECTURE.md states, checked against the source tree.
//!
//! Each test reads Cargo manifests or source files and fails with the file and line
//! that breaks an invariant, so the architecture document cannot drift from the code
//! unnoticed. These are text checks: they look at what the code names, which is what a
//! reviewer would look at too.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The workspace root (this file is `crates/testkit/tests/tidy.rs`).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .and_then(Path::parent)
        .expect("crates/testkit sits two levels below the workspace root")
        .to_path_buf()
}

/// Every crate directory under `crates/`, by directory name.
fn crate_dirs() -> BTreeMap<String, PathBuf> {
    let mut dirs = BTreeMap::new();
    for entry in std::fs::read_dir(root().join("crates")).expect("read crates/") {
        let path = entry.expect("read crates/ entry").path();
        if path.join("Cargo.toml").is_file() {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            dirs.insert(name, path);
        }
    }
    assert!(
        dirs.contains_key("proto") && dirs.contains_key("node"),
        "crate layout not recognised"
    );
    dirs
}

/// The package names a crate depends on, by section (`dependencies`,
/// `dev-dependencies`, `build-dependencies`).
fn dependencies(crate_dir: &Path) -> BTreeMap<String, Vec<String>> {
    let text = std::fs::read_to_string(crate_dir.join("Cargo.toml")).expect("read Cargo.toml");
    let manifest: toml::Table = text.parse().expect("parse Cargo.toml");
    let mut sections = BTreeMap::new();
    for section in ["dependencies", "dev-dependencies", "build-dependencies"] {
        let names = manifest
            .get(section)
            .and_then(toml::Value::as_table)
            .map(|t| t.keys().cloned().collect())
            .unwrap_or_default();
        sections.insert(section.to_string(), names);
    }
    sections
}

/// This file names every forbidden thing, so it is left out of the scans.
const THIS_FILE: &str = "crates/testkit/tests/tidy.rs";

/// Every `.rs` file below `dir`, except this one.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("read dir entry").path();
            if path.is_dir() {
                if path.file_name().is_some_and(|n| n != "target") {
                    stack.push(path);
                }
            } else if path.extension().is_some_and(|e| e == "rs") && !path.ends_with(THIS_FILE) {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The lines of a source file that ship: a file named `tests.rs` ships nothing, and an
/// item under `#[cfg(test)]` (a test module, a test-only helper) is left out, up to the
/// line where its braces close.
fn shipped_lines(path: &Path) -> Vec<(usize, String)> {
    if path.file_name().is_some_and(|n| n == "tests.rs") {
        return Vec::new();
    }
    let text = std::fs::read_to_string(path).expect("read source file");
    let mut shipped = Vec::new();
    // Inside a test-only item: its brace depth so far, and whether it has opened.
    let mut test_item: Option<(i64, bool)> = None;
    for (index, line) in text.lines().enumerate() {
        if test_item.is_none() && line.trim_start().starts_with("#[cfg(test)]") {
            test_item = Some((0, false));
            continue;
        }
        if let Some((depth, opened)) = test_item.as_mut() {
            for c in line.chars() {
                match c {
                    '{' => {
                        *depth += 1;
                        *opened = true;
                    }
                    '}' => *depth -= 1,
                    _ => {}
                }
            }
            let one_line_item = !*opened && line.trim_end().ends_with(';');
            if (*opened && *depth <= 0) || one_line_item {
                test_item = None;
            }
            continue;
        }
        if !line.trim_start().starts_with("//") {
            shipped.push((index + 1, line.to_string()));
        }
    }
    shipped
}

/// Every shipped line, in the crate's `src/`, that contains one of `needles`.
fn shipped_hits(crate_dir: &Path, needles: &[&str]) -> Vec<String> {
    let mut hits = Vec::new();
    for file in rust_files(&crate_dir.join("src")) {
        for (number, line) in shipped_lines(&file) {
            if needles.iter().any(|n| line.contains(n)) {
                let shown = file.strip_prefix(root()).unwrap_or(&file).display();
                hits.push(format!("{shown}:{number}: {}", line.trim()));
            }
        }
    }
    hits
}

fn relative(path: &Path) -> String {
    path.strip_prefix(root())
        .unwrap_or(path)
        .display()
        .to_string()
}

#[test]
fn proto_and_core_do_no_io() {
    let dirs = crate_dirs();
    let io = [
        "std::fs",
        "std::net",
        "std::process",
        "std::env",
        "std::io",
        "tokio",
        "SystemTime",
        "Instant::now",
        "redb",
        "async_nats",
        "bollard",
    ];
    for name in ["proto", "core"] {
        let hits = shipped_hits(&dirs[name], &io);
        assert!(
            hits.is_empty(),
            "crates/{name} must do no IO and have no clock (time comes in as milliseconds):\n{}",
            hits.join("\n")
        );
        let deps = &dependencies(&dirs[name])["dependencies"];
        // utoipa only derives the types' OpenAPI schemas (no IO, no clock).
        let allowed = [
            "bosun-proto",
            "serde",
            "serde_json",
            "thiserror",
            "ulid",
            "utoipa",
        ];
        let extra: Vec<_> = deps
            .iter()
            .filter(|d| !allowed.contains(&d.as_str()))
            .collect();
        assert!(
            extra.is_empty(),
            "crates/{name} is pure logic; it may depend only on {allowed:?}, not {extra:?}"
        );
    }
}

#[test]
fn only_the_bus_imports_async_nats() {
    for (name, dir) in crate_dirs() {
        if name == "bus" {
            continue;
        }
        // The bench measures NATS JetStream as the baseline a user would otherwise
        // build on: a peer measured from outside, in one file, not a way bosun talks.
        let baseline = name == "bench";
        for (section, deps) in dependencies(&dir) {
            if baseline {
                continue;
            }
            assert!(
                !deps.iter().any(|d| d == "async-nats"),
                "crates/{name} [{section}] lists async-nats; go through bosun_bus instead"
            );
        }
        let mut hits = Vec::new();
        for file in rust_files(&dir) {
            if baseline && file.ends_with("src/jetstream.rs") {
                continue;
            }
            let text = std::fs::read_to_string(&file).unwrap();
            for (index, line) in text.lines().enumerate() {
                if line.contains("async_nats") {
                    hits.push(format!("{}:{}", relative(&file), index + 1));
                }
            }
        }
        assert!(
            hits.is_empty(),
            "async_nats named outside crates/bus:\n{}",
            hits.join("\n")
        );
    }
}

#[test]
fn only_the_binary_uses_anyhow() {
    for (name, dir) in crate_dirs() {
        if name == "cli" {
            continue;
        }
        let deps = &dependencies(&dir)["dependencies"];
        assert!(
            !deps.iter().any(|d| d == "anyhow"),
            "crates/{name} depends on anyhow; libraries return their own thiserror enums"
        );
        let hits = shipped_hits(&dir, &["anyhow"]);
        assert!(
            hits.is_empty(),
            "anyhow outside the bosun binary:\n{}",
            hits.join("\n")
        );
    }
}

#[test]
fn libraries_return_typed_errors() {
    let mut hits = Vec::new();
    for (name, dir) in crate_dirs() {
        if ["cli", "bench", "testkit"].contains(&name.as_str()) {
            continue;
        }
        hits.extend(
            shipped_hits(&dir, &[", String>"])
                .into_iter()
                .filter(|hit| hit.contains("Result<")),
        );
    }
    assert!(
        hits.is_empty(),
        "Result<_, String> in a library; return a thiserror enum:\n{}",
        hits.join("\n")
    );
}

#[test]
fn only_the_store_writer_opens_write_transactions() {
    for (name, dir) in crate_dirs() {
        for file in rust_files(&dir) {
            let text = std::fs::read_to_string(&file).unwrap();
            let count = text.matches("begin_write").count();
            if count == 0 {
                continue;
            }
            let path = relative(&file);
            let allowed = match path.as_str() {
                // The writer thread: every write after start-up.
                "crates/store/src/writer.rs" => usize::MAX,
                // `Store::open` creates the tables once, before the writer thread exists.
                "crates/store/src/lib.rs" => 1,
                _ => 0,
            };
            assert!(
                count <= allowed,
                "{path} (crate {name}) opens {count} write transaction(s); only the store's writer thread may"
            );
        }
    }
}

#[test]
fn handlers_and_ingress_keep_their_walls() {
    let dirs = crate_dirs();
    // crate → packages it must not depend on, and why.
    let walls: &[(&str, &[&str], &str)] = &[
        (
            "methods",
            &["bosun-bus", "bosun-store", "bosun-node", "redb"],
            "a handler gets a request and returns a result; the node does delivery and storage",
        ),
        (
            "store",
            &["bosun-bus", "bosun-methods", "bollard"],
            "the store only stores",
        ),
        (
            "bus",
            &["bosun-store", "bosun-methods", "redb", "bollard"],
            "a transport only moves frames",
        ),
        (
            "ingress",
            &["bosun-store", "redb", "bollard"],
            "ingress turns requests into messages; the engine stores them and the methods run them",
        ),
        (
            "capture",
            &["bosun-node", "bosun-store", "bosun-bus", "redb"],
            "capture writes the event stream and knows nothing of delivery",
        ),
        (
            "chaos",
            &["bosun-node", "bosun-store", "bosun-bus", "redb"],
            "a fault experiment's node half is handed its events; it knows nothing of delivery",
        ),
        (
            "supervise",
            &["bosun-node", "bosun-store", "bosun-bus", "redb"],
            "the supervisor keeps workloads running and knows nothing of delivery",
        ),
    ];
    for (name, forbidden, why) in walls {
        let Some(dir) = dirs.get(*name) else {
            continue;
        };
        let deps = &dependencies(dir)["dependencies"];
        let crossed: Vec<_> = deps
            .iter()
            .filter(|d| forbidden.contains(&d.as_str()))
            .collect();
        assert!(
            crossed.is_empty(),
            "crates/{name} depends on {crossed:?}: {why}"
        );
        let modules: Vec<String> = forbidden.iter().map(|d| d.replace('-', "_")).collect();
        let needles: Vec<&str> = modules.iter().map(String::as_str).collect();
        let hits = shipped_hits(dir, &needles);
        assert!(
            hits.is_empty(),
            "crates/{name}: {why}:\n{}",
            hits.join("\n")
        );
    }
}

#[test]
fn commands_use_a_shell_only_when_the_message_asks() {
    let shells = ["\"/bin/sh\"", "\"sh\"", "\"bash\"", "\"/bin/bash\""];
    for (name, dir) in crate_dirs() {
        // The CLI, the testkit and the bench build messages or start test programs; an
        // argv that names `sh` is the operator's explicit choice, not a hidden shell.
        if ["cli", "testkit", "bench"].contains(&name.as_str()) {
            continue;
        }
        for file in rust_files(&dir.join("src")) {
            let lines = shipped_lines(&file);
            for (position, (number, line)) in lines.iter().enumerate() {
                if !shells.iter().any(|s| line.contains(s)) {
                    continue;
                }
                // The one shell: `cliCommand` with `useShell: true`, decided a few lines
                // above the argv it builds.
                let before = &lines[position.saturating_sub(3)..position];
                let guarded = (relative(&file) == "crates/methods/src/cli_command.rs"
                    && before.iter().any(|(_, l)| l.contains("use_shell")))
                    // The CPU and memory stress of a fault experiment: a script bosun
                    // writes itself, from numbers only.
                    || (relative(&file) == "crates/chaos/src/fault.rs"
                        && lines[position..(position + 4).min(lines.len())]
                            .iter()
                            .any(|(_, l)| l.contains("own_stress_script")));
                assert!(
                    guarded,
                    "{}:{number} starts a shell without `useShell`: {}",
                    relative(&file),
                    line.trim()
                );
            }
        }
    }
}

#[test]
fn no_test_is_ignored() {
    for (_, dir) in crate_dirs() {
        for file in rust_files(&dir) {
            let text = std::fs::read_to_string(&file).unwrap();
            for (index, line) in text.lines().enumerate() {
                assert!(
                    !line.trim_start().starts_with("#[ignore"),
                    "{}:{}: an ignored test; assert today's behaviour and leave a FIXME instead",
                    relative(&file),
                    index + 1
                );
            }
        }
    }
}

#[test]
fn the_code_map_names_every_crate() {
    let architecture =
        std::fs::read_to_string(root().join("ARCHITECTURE.md")).expect("read ARCHITECTURE.md");
    for name in crate_dirs().keys() {
        assert!(
            architecture.contains(&format!("`crates/{name}`")),
            "ARCHITECTURE.md's code map does not name crates/{name}"
        );
    }
}

#[test]
fn handlers_keep_no_process_global_state() {
    let dirs = crate_dirs();
    let cells = [
        "Mutex", "RwLock", "LazyLock", "OnceLock", "OnceCell", "Lazy<", "Atomic",
    ];
    let hits: Vec<_> = shipped_hits(&dirs["methods"], &["static "])
        .into_iter()
        .filter(|hit| !hit.contains("'static"))
        .filter(|hit| cells.iter().any(|cell| hit.contains(cell)))
        .collect();
    assert!(
        hits.is_empty(),
        "process-global state in the methods crate: nodes in one process would share it; keep it in HandlerState:\n{}",
        hits.join("\n")
    );
}

#[test]
fn the_cli_prints_through_its_closed_pipe_guard() {
    let dir = root().join("crates/cli/src");
    let mut hits = Vec::new();
    for file in rust_files(&dir) {
        if file.ends_with("out.rs") {
            continue;
        }
        for (number, line) in shipped_lines(&file) {
            let stdout_only = line.replace("eprintln!", "").replace("eprint!", "");
            if stdout_only.contains("println!")
                || stdout_only.contains("print!(")
                || stdout_only.contains("io::stdout()")
            {
                hits.push(format!("{}:{number}: {}", relative(&file), line.trim()));
            }
        }
    }
    assert!(
        hits.is_empty(),
        "the bosun CLI writes stdout only through out!/outln! (crates/cli/src/out.rs), \
         which end quietly on a closed pipe instead of panicking:\n{}",
        hits.join("\n")
    );
}
