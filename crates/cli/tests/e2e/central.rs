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

    // steward's layout: <data folder>/<directory>/<fromNode>/<fileName>.
    let results = fleet.data_dir("central").join("data");
    let written = std::fs::read_to_string(results.join("cli/out/ship1/uname.result")).unwrap();
    assert_eq!(written, "from ship1\n");
    let appended = std::fs::read_to_string(results.join("stream/ship1/count.log")).unwrap();
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

/// The entry for message `id` in central's error log, once it has arrived.
fn central_error_entry(fleet: &bosun_testkit::Fleet, id: &str) -> Value {
    let log = fleet.data_dir("central").join("error.log");
    let line = eventually(
        Duration::from_secs(30),
        &format!("the failure of {id} reached central"),
        || {
            std::fs::read_to_string(&log)
                .ok()?
                .lines()
                .find(|l| l.contains(id))
                .map(str::to_string)
        },
    );
    serde_json::from_str(&line).unwrap()
}

#[test]
fn a_failed_method_on_any_node_reaches_centrals_error_log() {
    let Some(mut fleet) = fleet()
        .central("central")
        .nodes(&["central", "ship1"])
        .start()
    else {
        return;
    };
    // A command that fails, a tail of a file outside the node's file roots, an httpGet
    // of a refused address and an operation on a container that does not exist: each
    // fails on ship1, and each reaches central with node, id, method and reason.
    let out = fleet.node("central").cli(&[
        "exec",
        "-n",
        "ship1",
        "--json",
        "--",
        "sh",
        "-c",
        "echo boom >&2; exit 3",
    ]);
    let command_id = json(&out)[0]["id"].as_str().unwrap().to_string();
    let messages = fleet.dir().join("failing.json");
    std::fs::write(
        &messages,
        r#"[
  {"toNodes":["ship1"],"method":"REQTailFile","data":["/etc/hostname"],"methodTimeout":5},
  {"toNodes":["ship1"],"method":"REQHttpGet","data":["http://127.0.0.1:9/"]},
  {"toNodes":["ship1"],"method":"containerStart","data":["bosun-no-such-container"]}
]"#,
    )
    .unwrap();
    let out = fleet
        .node("central")
        .cli(&["send", "--wait", "--json", messages.to_str().unwrap()]);
    let rows = json(&out);
    let sent: Vec<String> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(sent.len(), 3, "{rows}");
    let entry = central_error_entry(&fleet, &command_id);
    assert_eq!(entry["from"], "ship1", "{entry}");
    let e = &entry["entry"];
    assert_eq!(e["node"], "ship1", "{entry}");
    assert_eq!(e["kind"], "failed", "{entry}");
    assert_eq!(e["messageId"], command_id.as_str(), "{entry}");
    assert_eq!(e["method"], "cliCommand", "{entry}");
    assert_eq!(e["toNode"], "central", "the sender is named: {entry}");
    let reason = e["reason"].as_str().unwrap();
    assert!(
        reason.contains("code 3") && reason.contains("boom"),
        "{entry}"
    );
    for id in &sent {
        let entry = central_error_entry(&fleet, id);
        let e = &entry["entry"];
        assert_eq!(e["node"], "ship1", "{entry}");
        assert_eq!(e["messageId"], id.as_str(), "{entry}");
        assert!(e["method"].is_string(), "{entry}");
        assert!(!e["reason"].as_str().unwrap().is_empty(), "{entry}");
    }
    let methods: Vec<String> = sent
        .iter()
        .map(|id| {
            central_error_entry(&fleet, id)["entry"]["method"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        methods,
        vec!["tailFile", "httpGet", "containerStart"],
        "every failure names its method"
    );

    // A success is not an error.
    let out = fleet
        .node("central")
        .cli(&["exec", "-n", "ship1", "--json", "--", "true"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let ok_id = json(&out)[0]["id"].as_str().unwrap().to_string();

    // Central is down when ship1's own command fails: the report waits in ship1's
    // outbox and arrives once central is back.
    fleet.node_mut("central").kill9();
    let out = fleet.node("ship1").cli(&[
        "exec",
        "-n",
        "ship1",
        "--json",
        "--",
        "sh",
        "-c",
        "echo offline >&2; exit 4",
    ]);
    let offline_id = json(&out)[0]["id"].as_str().unwrap().to_string();
    fleet.node_mut("central").restart();
    let entry = central_error_entry(&fleet, &offline_id);
    assert!(
        entry["entry"]["reason"]
            .as_str()
            .unwrap()
            .contains("code 4"),
        "{entry}"
    );
    let log = std::fs::read_to_string(fleet.data_dir("central").join("error.log")).unwrap();
    assert!(!log.contains(&ok_id), "a success is not logged:\n{log}");
    let here = std::fs::read_to_string(fleet.data_dir("ship1").join("error.log")).unwrap();
    assert!(
        here.contains(&offline_id) && here.contains(&command_id),
        "the node's own error log has them too:\n{here}"
    );
}
