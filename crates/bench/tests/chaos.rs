//! `bosun-bench chaos` at a small size in the normal suite: 200 ordered commands while
//! the target, the sender and the broker are killed with -9 and restarted and the
//! target is frozen past its give-up time. Nothing may be lost, run twice or out of
//! order, and no final state may be contradicted by the file of runs.

use std::process::{Command, Stdio};
use std::time::Duration;

use bosun_testkit::{NatsServer, poll_until};
use serde_json::Value;

mod support;
use support::bosun_binary;

/// The whole run: 30 s of faults (a round may run past them), then at most 60 s to
/// settle, plus start-up.
const RUN_LIMIT: Duration = Duration::from_secs(180);

#[test]
fn two_hundred_ordered_commands_survive_crashes_stalls_and_broker_loss() {
    if NatsServer::start().is_none() {
        return;
    }
    let bosun = bosun_binary();
    let mut child = Command::new(env!("CARGO_BIN_EXE_bosun-bench"))
        .arg("--bosun")
        .arg(&bosun)
        .args(["chaos", "--messages", "200", "--fault-secs", "30"])
        .args(["--drain-secs", "60", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run bosun-bench chaos");
    if poll_until(RUN_LIMIT, || child.try_wait().ok().flatten()).is_none() {
        let _ = child.kill();
        panic!("bosun-bench chaos did not finish within {RUN_LIMIT:?}");
    }
    let out = child.wait_with_output().expect("chaos output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let figures: Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("chaos prints JSON ({e}): {stdout}\n{stderr}"));
    eprintln!("chaos figures: {figures}");
    assert_eq!(figures["submitted"], 200, "{figures}");
    let faults = &figures["faults"];
    for fault in ["killTarget", "killSender", "killBroker", "freezeTarget"] {
        assert!(
            faults[fault].as_u64() >= Some(1),
            "{fault} happened: {figures}"
        );
    }
    let wrong: Vec<String> = [
        "lost",
        "runTwice",
        "reordered",
        "interruptedThatRan",
        "givenUpThatRan",
        "garbled",
    ]
    .into_iter()
    .filter(|count| figures[*count] != 0)
    .map(|count| format!("{count} {}", figures[count]))
    .collect();
    assert!(
        wrong.is_empty(),
        "every count must be 0, got {} (replay with --seed {}): {figures}",
        wrong.join(", "),
        figures["seed"]
    );
    assert!(
        figures["drainSecs"].is_number(),
        "settled before the drain deadline: {figures}"
    );
    assert_eq!(out.status.code(), Some(0), "exit 0 when clean: {stderr}");
}
