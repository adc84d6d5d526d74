//! `bosun-bench soak` at a small size in the normal suite: 1,000 commands from central
//! to 10 nodes on a 3-server NATS cluster with an edge leaf, each host a network
//! namespace, through 30 % packet loss on two nodes' links, one node offline for 20 s,
//! the edge site cut off for 10 s, a node isolated for 10 s and each cluster server
//! killed with -9 in turn. Nothing may be lost, run twice or out of order, and every
//! result must come back. `scripts/soak` runs the full size.

use std::process::{Command, Stdio};
use std::time::Duration;

use bosun_testkit::{NatsServer, Rig, poll_until};
use serde_json::Value;

mod support;
use support::bosun_binary;

/// A 40 s fault period, at most 120 s to settle, plus start-up.
const RUN_LIMIT: Duration = Duration::from_secs(240);

#[test]
fn a_thousand_commands_cross_lossy_partitioned_links_and_server_crashes() {
    if NatsServer::start().is_none() || Rig::new().is_none() {
        return;
    }
    let bosun = bosun_binary();
    let mut child = Command::new(env!("CARGO_BIN_EXE_bosun-bench"))
        .arg("--bosun")
        .arg(&bosun)
        .args(["soak", "--messages", "1000", "--nodes", "10"])
        .args(["--offline-secs", "20", "--partition-secs", "10"])
        .args(["--drain-secs", "120", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run bosun-bench soak");
    if poll_until(RUN_LIMIT, || child.try_wait().ok().flatten()).is_none() {
        let _ = child.kill();
        panic!("bosun-bench soak did not finish within {RUN_LIMIT:?}");
    }
    let out = child.wait_with_output().expect("soak output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let figures: Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("soak prints JSON ({e}): {stdout}\n{stderr}"));
    eprintln!("soak figures: {figures}");
    assert_eq!(figures["submitted"], 1000, "{figures}");
    let faults = &figures["faults"];
    for (fault, times) in [
        ("nodeOffline", 1),
        ("serverKill", 3),
        ("sitePartition", 1),
        ("nodeIsolated", 1),
    ] {
        assert_eq!(faults[fault], times, "{fault}: {figures}");
    }
    let wrong: Vec<String> = [
        "lost",
        "runTwice",
        "reordered",
        "interruptedThatRan",
        "givenUpThatRan",
        "garbled",
        "notDone",
    ]
    .into_iter()
    .filter(|count| figures[*count] != 0)
    .map(|count| format!("{count} {}", figures[count]))
    .collect();
    assert!(
        wrong.is_empty(),
        "every count must be 0, got {} (runs in {}): {figures}",
        wrong.join(", "),
        figures["runs"]
    );
    assert_eq!(
        figures["states"]["done"], 1000,
        "every result back: {figures}"
    );
    // The lossy links really dropped packets: their messages took longer than the
    // clean ones at the tail.
    let lossy = figures["latencyMs"]["lossy links"]["start"]["p99"].as_f64();
    let clean = figures["latencyMs"]["clean links"]["start"]["p99"].as_f64();
    assert!(
        lossy > clean,
        "lossy {lossy:?} vs clean {clean:?}: {figures}"
    );
    // Every outage was waited for and ended: each destination ran something after it.
    assert_eq!(
        figures["extraAfterOutageMs"]["byOutage"]
            .as_array()
            .map(Vec::len),
        Some(5),
        "offline node, three edge nodes, isolated node: {figures}"
    );
    assert!(figures["drainSecs"].is_number(), "{figures}");
    assert_eq!(out.status.code(), Some(0), "exit 0 when clean: {stderr}");
}
