//! What the bench's tests share. The `bosun` binary belongs to another package, so a
//! test has Cargo build it (a no-op when `cargo test --workspace` already did) and asks
//! Cargo where it is.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::Value;

/// Build the `bosun` binary in this test's profile and target dir; its path.
pub fn bosun_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    // …/<target dir>/<profile>/deps/chaos-HASH
    let profile = exe
        .parent()
        .and_then(|deps| deps.parent())
        .and_then(|dir| dir.file_name())
        .and_then(|name| name.to_str())
        .expect("the test runs from <target>/<profile>/deps")
        .to_string();
    let mut cargo = Command::new(env!("CARGO"));
    cargo.args([
        "build",
        "-p",
        "bosun",
        "--bin",
        "bosun",
        "--message-format=json",
    ]);
    match profile.as_str() {
        "debug" => {}
        "release" => {
            cargo.arg("--release");
        }
        other => {
            cargo.args(["--profile", other]);
        }
    }
    let out = cargo
        .stderr(Stdio::inherit())
        .output()
        .expect("run cargo build");
    assert!(out.status.success(), "cargo build -p bosun failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "bosun")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .expect("cargo names the bosun executable")
}
