//! Central's role: the fleet registry, results and error reports from every node,
//! metrics and the audit log.

use std::time::Duration;

use bosun_testkit::{NodeSpec, eventually, json};
use serde_json::Value;

use crate::support::{fleet, http, metric, stderr, stdout};

#[test]
fn central_keeps_the_fleet_and_a_stopped_node_turns_suspect_then_down() {
    // The fleet starts once central lists all three nodes alive.
    let Some(mut fleet) = fleet()
        .central("central")
        .nodes(&["central", "ship1", "ship2"])
        .start()
    else {
        return;
    };
    let central = fleet.node("central");
    let listed = central.fleet_status();
    assert_eq!(listed.len(), 3, "{listed:?}");
    assert!(
        listed.iter().all(|(_, status)| status == "alive"),
        "{listed:?}"
    );
    let table = stdout(&central.cli(&["nodes"]));
    assert!(
        table.contains("ship1") && table.contains("alive"),
        "{table}"
    );

    // toNodes ["*"] reaches every node in the registry, each tracked on its own.
    let out = central.cli(&["send", "--wait", "--json", "-"]);
    assert!(!out.status.success(), "send - needs stdin");
    let star = fleet.dir().join("star.json");
    std::fs::write(
        &star,
        r#"[{"toNodes":["*"],"method":"REQCliCommand","data":["echo","everyone"]}]"#,
    )
    .unwrap();
    let out = central.cli(&["send", "--wait", "--json", star.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rows = json(&out);
    let mut nodes: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["node"].as_str().unwrap())
        .collect();
    nodes.sort();
    assert_eq!(nodes, vec!["central", "ship1", "ship2"]);

    fleet.node_mut("ship2").kill9();
    let central = fleet.node("central");
    // Suspect comes before down, but a slow poll may only see down: either shows the
    // missed hellos were noticed, and down must follow.
    eventually(Duration::from_secs(20), "ship2 suspect", || {
        let status = central.fleet_status();
        (status.contains(&("ship2".into(), "suspect".into()))
            || status.contains(&("ship2".into(), "down".into())))
        .then_some(())
    });
    eventually(Duration::from_secs(20), "ship2 down", || {
        central
            .fleet_status()
            .contains(&("ship2".into(), "down".into()))
            .then_some(())
    });
    assert!(
        central
            .fleet_status()
            .contains(&("ship1".into(), "alive".into()))
    );
}

#[test]
fn results_land_in_centrals_data_folder_and_streams_arrive_in_order() {
    let Some(fleet) = fleet()
        .central("central")
        .nodes(&["central", "ship1"])
        .start()
    else {
        return;
    };
    let msgs = r#"[
      {"directory": "cli/out", "fileName": "uname.result", "toNode": "ship1",
       "data": ["sh", "-c", "echo from ship1"], "method": "REQCliCommand", "replyMethod": "REQToFile"},
      {"directory": "stream", "fileName": "count.log", "toNode": "ship1",
       "data": ["sh", "-c", "for i in 1 2 3 4 5; do echo line $i; sleep 0.3; done"],
       "method": "REQnCliCommandCont", "replyMethod": "REQToFileAppend", "methodTimeout": 20}
    ]"#;
    let file = fleet.dir().join("msgs.json");
    std::fs::write(&file, msgs).unwrap();
    let out = fleet
        .node("central")
        .cli(&["send", "--wait", "--json", file.to_str().unwrap()]);
    assert!(out.status.success(), "{} {}", stdout(&out), stderr(&out));
    let rows = json(&out);
    assert_eq!(
        rows[1]["output"], "line 1\nline 2\nline 3\nline 4\nline 5\n",
        "{rows}"
    );
    assert!(
        rows[1]["result"]["chunks"].as_u64().unwrap() >= 2,
        "streamed in several chunks: {rows}"
    );

    let results = fleet.data_dir("central").join("data/ship1");
    let written = std::fs::read_to_string(results.join("cli/out/uname.result")).unwrap();
    assert_eq!(written, "from ship1\n");
    let appended = std::fs::read_to_string(results.join("stream/count.log")).unwrap();
    assert_eq!(appended, "line 1\nline 2\nline 3\nline 4\nline 5\n");
}

#[test]
fn errors_on_a_node_reach_centrals_error_log() {
    let Some(fleet) = fleet()
        .central("central")
        .nodes(&["central", "ship1"])
        .start()
    else {
        return;
    };
    // ship1 gives up on a message to a node that never appears: an error on ship1.
    let out = fleet.node("ship1").cli(&[
        "exec",
        "-n",
        "nowhere",
        "--ttl",
        "1",
        "--timeout",
        "10",
        "--json",
        "--",
        "true",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let id = json(&out)[0]["id"].as_str().unwrap().to_string();
    let log = fleet.data_dir("central").join("error.log");
    let line = eventually(Duration::from_secs(20), "the error reached central", || {
        std::fs::read_to_string(&log)
            .ok()?
            .lines()
            .find(|l| l.contains(&id))
            .map(str::to_string)
    });
    let entry: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(entry["from"], "ship1");
    assert!(
        entry["entry"]["reason"].as_str().unwrap().contains("ttl"),
        "{entry}"
    );
}

#[test]
fn metrics_move_and_the_audit_log_can_recreate_messages() {
    let address = format!("127.0.0.1:{}", bosun_testkit::free_port());
    let Some(fleet) = fleet()
        .central("central")
        .node(NodeSpec::new("central").env("BOSUN_METRICS_LISTEN", address.as_str()))
        .node("ship1")
        .start()
    else {
        return;
    };
    let get = |path: &str| {
        let (code, text) = http("GET", &address, path, None, "");
        assert_eq!(code, 200, "GET {path}: {text}");
        text
    };
    assert!(get("/healthz").ends_with("ok"));
    let before = get("/metrics");
    let done = r#"bosun_messages_total{method="cliCommand",state="done"}"#;
    let central = fleet.node("central");
    let out = central.cli(&["exec", "-n", "ship1", "--", "true"]);
    assert!(out.status.success());
    let out = central.cli(&["exec", "-n", "ship1", "--", "false"]);
    assert_eq!(out.status.code(), Some(1));
    let after = eventually(Duration::from_secs(15), "metrics show the runs", || {
        let text = get("/metrics");
        (metric(&text, done) >= metric(&before, done) + 1.0
            && metric(&text, r#"bosun_fleet_nodes{status="alive"}"#) >= 2.0)
            .then_some(text)
    });
    assert!(
        metric(
            &after,
            r#"bosun_messages_total{method="cliCommand",state="failed"}"#
        ) >= 1.0
    );
    assert!(
        metric(&after, "bosun_delivery_latency_seconds_count") >= 2.0,
        "{after}"
    );
    assert!(after.contains(r#"bosun_node_last_seen_seconds{node="ship1"}"#));

    let audit = std::fs::read_to_string(fleet.data_dir("central").join("audit.log")).unwrap();
    let submitted: Vec<Value> = audit
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|l| l["event"] == "submitted" && l["message"]["method"] == "cliCommand")
        .collect();
    assert_eq!(submitted.len(), 2);
    let again: bosun_proto::Message =
        serde_json::from_value(submitted[1]["message"].clone()).unwrap();
    assert_eq!(
        again.data,
        vec!["false"],
        "the audit line holds the whole message"
    );
}
