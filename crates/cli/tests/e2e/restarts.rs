//! Work that outlives a kill -9 of the node that holds it: reply sinks write every
//! chunk exactly once, and schedules make all their runs.

use std::path::Path;
use std::time::Duration;

use bosun_testkit::{NodeProcess, eventually, holds_for, json};

use crate::support::{fleet, lines, report, stderr, stdout, wait_state};

/// Queue a steward message file at `node`; returns the id of its one delivery.
fn send_one(node: &NodeProcess, dir: &Path, message: serde_json::Value) -> String {
    let file = dir.join(format!("{}.json", bosun_testkit::free_port()));
    std::fs::write(&file, serde_json::json!([message]).to_string()).unwrap();
    let out = node.cli(&["send", "--json", file.to_str().unwrap()]);
    assert!(out.status.success(), "{} {}", stdout(&out), stderr(&out));
    json(&out)[0]["id"].as_str().unwrap().to_string()
}

#[test]
fn a_sink_file_gets_every_chunk_once_across_a_kill_9_of_its_node() {
    let Some(mut fleet) = fleet().nodes(&["central", "ship1"]).start() else {
        return;
    };
    let gate = fleet.dir().join("gate");
    // Three lines, then the command waits for the test to open the gate, then two more.
    let script = format!(
        "echo line 1; echo line 2; echo line 3; \
         while [ ! -e {gate} ]; do sleep 0.05; done; echo line 4; echo line 5",
        gate = gate.display()
    );
    let id = send_one(
        fleet.node("central"),
        fleet.dir(),
        serde_json::json!({
            "toNode": "ship1", "method": "REQCliCommandCont", "data": ["sh", "-c", script],
            "replyMethod": "REQToFileAppend", "directory": "stream", "fileName": "count.log",
            "methodTimeout": 60
        }),
    );
    let sink = fleet
        .data_dir("central")
        .join("data/stream/ship1/count.log");
    eventually(
        Duration::from_secs(30),
        "the first lines in the sink",
        || (lines(&sink).len() == 3).then_some(()),
    );
    let central = fleet.node_mut("central");
    central.kill9();
    central.restart();
    std::fs::write(&gate, "").unwrap();
    wait_state(fleet.node("central"), &id, "done");
    let want = ["line 1", "line 2", "line 3", "line 4", "line 5"];
    assert_eq!(lines(&sink), want, "each chunk once, in order");
    // Another restart finishes nothing twice.
    let central = fleet.node_mut("central");
    central.kill9();
    central.restart();
    assert_eq!(lines(&sink), want);
}

#[test]
fn a_schedule_makes_all_its_runs_across_a_kill_9_of_its_node() {
    let Some(mut fleet) = fleet().nodes(&["central", "ship1"]).start() else {
        return;
    };
    let record = fleet.dir().join("runs.txt");
    let id = send_one(
        fleet.node("central"),
        fleet.dir(),
        serde_json::json!({
            "toNode": "ship1", "method": "REQCliCommand",
            "data": ["sh", "-c", format!("echo run >> {}", record.display())],
            "schedule": [1, 5]
        }),
    );
    // The first message and two repeats.
    eventually(Duration::from_secs(20), "two repeats", || {
        (lines(&record).len() >= 3).then_some(())
    });
    let schedule = report(fleet.node("central"), &id)["schedule"].clone();
    let left = schedule["runsLeft"].as_u64().unwrap_or(0);
    assert!((1..=3).contains(&left), "runs left shown: {schedule}");
    let central = fleet.node_mut("central");
    central.kill9();
    central.restart();
    eventually(Duration::from_secs(30), "all five repeats", || {
        (lines(&record).len() >= 6).then_some(())
    });
    holds_for(
        Duration::from_millis(2500),
        "the first run and five repeats, no more",
        || lines(&record).len() == 6,
    );
    assert_eq!(
        report(fleet.node("central"), &id)["schedule"],
        serde_json::Value::Null
    );
}
