//! Delivery promises across real processes: commands between nodes, broker outages,
//! crashes of sender and receiver, duplicates and bad frames on the wire, clean stops,
//! and file copies.

use std::time::Duration;

use bosun_testkit::{NodeSpec, eventually, holds_for, json};
use serde_json::Value;

use crate::support::{
    exec_no_wait, fleet, lines, nc_u, queued_ids, report, state_of, stderr, stdout, wait_state,
};

#[test]
fn three_nodes_exchange_commands() {
    let names = ["central", "ship1", "ship2"];
    let Some(fleet) = fleet().nodes(&names).start() else {
        return;
    };
    for from in names.map(|name| fleet.node(name)) {
        let others: Vec<&str> = names.iter().copied().filter(|n| *n != from.name).collect();
        let out = from.cli(&[
            "exec",
            "-n",
            &others.join(","),
            "--json",
            "--",
            "echo",
            "hello from bosun",
        ]);
        assert!(out.status.success(), "{}: {}", from.name, stderr(&out));
        let rows = json(&out);
        let rows = rows.as_array().unwrap();
        assert_eq!(rows.len(), 2);
        for (row, to) in rows.iter().zip(&others) {
            assert_eq!(row["node"], *to);
            assert_eq!(row["state"], "done");
            assert_eq!(row["result"]["node"], *to, "ran on the destination");
            assert_eq!(row["result"]["stdout"], "hello from bosun\n");
            assert_eq!(row["result"]["exitCode"], 0);
        }
    }
    // Text output and the exit code for a failing node.
    let out = fleet
        .node("central")
        .cli(&["exec", "-n", "ship1,ship2", "--", "sh", "-c", "exit 7"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a failed node makes exec exit 1"
    );
    assert!(
        stdout(&out).contains("── ship1 [failed, exit 7"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn broker_outage_100_ordered_messages_run_once_in_order() {
    let Some(mut fleet) = fleet().nodes(&["central", "ship1"]).start() else {
        return;
    };
    let record = fleet.dir().join("order.txt");

    fleet.nats_mut().stop();
    let messages: Vec<Value> = (1..=100)
        .map(|i| {
            serde_json::json!({
                "toNode": "ship1",
                "method": "REQCliCommand",
                "data": ["sh", "-c", format!("echo {i} >> {}", record.display())],
                "ACKTimeout": 2,
                "retries": 3,
                "methodTimeout": 10
            })
        })
        .collect();
    let file = fleet.dir().join("hundred.json");
    std::fs::write(&file, serde_json::to_string_pretty(&messages).unwrap()).unwrap();
    let central = fleet.node("central");
    let out = central.cli(&["send", file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "send while the broker is down: {}",
        stderr(&out)
    );
    let ids: Vec<String> = stdout(&out)
        .lines()
        .map(|l| l.split('\t').nth(2).unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 100);

    // Longer than ACKTimeout × (retries + 1): had the outage used up retries, the
    // messages would have failed by the end of this window.
    holds_for(
        Duration::from_secs(10),
        "nothing can run while the broker is down",
        || lines(&record).is_empty(),
    );
    fleet.nats_mut().resume();

    let central = fleet.node("central");
    eventually(
        Duration::from_secs(90),
        "all 100 results back at central",
        || {
            ids.iter()
                .all(|id| state_of(central, id) == "done")
                .then_some(())
        },
    );
    // One more ordered message on the same stream: any second run of the hundred would
    // have had to come before it.
    let out = central.cli(&[
        "exec",
        "-n",
        "ship1",
        "--",
        "sh",
        "-c",
        &format!("echo barrier >> {}", record.display()),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut want: Vec<String> = (1..=100).map(|i| i.to_string()).collect();
    want.push("barrier".into());
    assert_eq!(
        lines(&record),
        want,
        "each message ran exactly once, in submit order"
    );
}

#[test]
fn kill_9_during_a_run_reports_interrupted_and_never_reruns() {
    let Some(mut fleet) = fleet().nodes(&["central", "ship1"]).start() else {
        return;
    };
    let marker = fleet.dir().join("started.txt");
    let script = format!("echo started >> {}; sleep 60", marker.display());
    let id = exec_no_wait(fleet.node("central"), "ship1", &["sh", "-c", &script]);
    eventually(Duration::from_secs(20), "the command started", || {
        (lines(&marker).len() == 1).then_some(())
    });
    // The `running` note is best-effort and may arrive after the command's first output.
    wait_state(fleet.node("central"), &id, "running");

    let ship = fleet.node_mut("ship1");
    ship.kill9();
    ship.restart();
    let central = fleet.node("central");
    eventually(
        Duration::from_secs(30),
        "central hears `interrupted`",
        || (state_of(central, &id) == "interrupted").then_some(()),
    );
    let report = report(central, &id);
    assert!(
        report["sent"]["outcome"]["error"]
            .as_str()
            .unwrap()
            .contains("not run again"),
        "{report}"
    );
    // A later message on the same ordered stream runs only after anything the restart
    // would have started again.
    let out = central.cli(&[
        "exec",
        "-n",
        "ship1",
        "--",
        "sh",
        "-c",
        &format!("echo barrier >> {}", marker.display()),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        lines(&marker),
        vec!["started", "barrier"],
        "the command must not run a second time"
    );
}

#[test]
fn sender_crash_after_submit_loses_nothing_and_an_offline_node_gets_it_later() {
    let Some(mut fleet) = fleet().nodes(&["central"]).start() else {
        return;
    };
    // ship2 is not running yet: the message waits at central.
    let id = exec_no_wait(fleet.node("central"), "ship2", &["echo", "late but sure"]);
    let central = fleet.node_mut("central");
    central.kill9();
    central.restart();
    // `sent` is progress that may be lost in a crash (it only causes a resend), so the
    // message may be back at `queued`: either way it is still waiting.
    let state = state_of(fleet.node("central"), &id);
    assert!(
        state == "sent" || state == "queued",
        "still waiting after the crash, not {state:?}"
    );
    fleet.add("ship2");
    let central = fleet.node("central");
    eventually(
        Duration::from_secs(30),
        "delivered once ship2 is up",
        || (state_of(central, &id) == "done").then_some(()),
    );
    assert_eq!(
        report(central, &id)["sent"]["outcome"]["stdout"],
        "late but sure\n"
    );
}

/// Send `script` to ship1 straight on the bus as `tester`, `times` times with one id;
/// returns the ACKs.
fn request_repeatedly(url: &str, script: String, times: usize) -> Vec<bosun_proto::wire::Ack> {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        use bosun_bus::Transport;
        let bus = bosun_testkit::trust::signed_client(url, "tester", &["*"]).await;
        let msg = bosun_proto::Message {
            id: Some(bosun_proto::new_id()),
            to_node: Some("ship1".into()),
            from_node: Some("tester".into()),
            method: "cliCommand".into(),
            data: vec!["sh".into(), "-c".into(), script],
            ..Default::default()
        };
        let frame = bosun_proto::wire::encode(&bosun_proto::wire::Request { v: 1, msg });
        let mut acks = Vec::new();
        for _ in 0..times {
            let answer = bus
                .request(
                    "bosun.ship1.cliCommand".into(),
                    frame.clone().into(),
                    Duration::from_secs(5),
                )
                .await
                .unwrap();
            acks.push(bosun_proto::wire::decode_ack(&answer).unwrap());
        }
        acks
    })
}

#[test]
fn duplicate_delivery_is_acked_again_and_runs_once() {
    let Some(fleet) = fleet().nodes(&["ship1"]).start() else {
        return;
    };
    let marker = fleet.dir().join("ran.txt");
    let url = fleet.nats().url();
    let acks = request_repeatedly(&url, format!("echo ran >> {}", marker.display()), 3);
    assert!(acks.iter().all(|a| a.rejected.is_none()), "{acks:?}");
    assert!(!acks[0].duplicate);
    assert!(acks[1].duplicate && acks[2].duplicate, "{acks:?}");
    // A fourth, new message on the same stream (tester → ship1, ordered) runs after
    // anything the duplicates could have started.
    let barrier = request_repeatedly(&url, format!("echo barrier >> {}", marker.display()), 1);
    assert!(!barrier[0].duplicate, "{barrier:?}");
    eventually(Duration::from_secs(10), "the commands ran", || {
        lines(&marker)
            .contains(&"barrier".to_string())
            .then_some(())
    });
    assert_eq!(
        lines(&marker),
        vec!["ran", "barrier"],
        "three deliveries, one run"
    );
}

#[test]
fn bad_frames_on_the_wire_are_refused_and_the_node_keeps_going() {
    let Some(fleet) = fleet()
        .node(NodeSpec::new("ship1").config("max_message_bytes = 65536\n"))
        .start()
    else {
        return;
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        use bosun_bus::Transport;
        let bus = bosun_testkit::trust::signed_client(&fleet.nats().url(), "t", &["*"]).await;
        let id = bosun_proto::new_id();
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"this is not json".to_vec(), "malformed"),
            (br#"{"v":9,"msg":{}}"#.to_vec(), "version 9"),
            (
                format!(r#"{{"v":1,"msg":{{"id":"{id}","toNode":"ship1","fromNode":"t","method":"noSuchMethod"}}}}"#)
                    .into_bytes(),
                "unknown method",
            ),
            (
                format!(r#"{{"v":1,"msg":{{"id":"{}","toNode":"ship1","fromNode":"t","method":"pong"}}}}"#, bosun_proto::new_id())
                    .into_bytes(),
                "not served",
            ),
            (vec![b' '; 100_000], "exceeds"),
        ];
        for (payload, want) in cases {
            let answer = bus
                .request("bosun.ship1.x".into(), payload.into(), Duration::from_secs(5))
                .await
                .unwrap();
            let ack = bosun_proto::wire::decode_ack(&answer).unwrap();
            let reason = ack.rejected.unwrap_or_default();
            assert!(reason.contains(want), "want {want:?} in {reason:?}");
        }
    });
    let ship = fleet.node("ship1");
    let out = ship.cli(&["exec", "-n", "ship1", "--", "echo", "still here"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("still here"));
    let errors = std::fs::read_to_string(ship.data_dir.join("error.log")).unwrap();
    assert!(
        errors.lines().count() >= 5,
        "each refusal is in the error log:\n{errors}"
    );
}

#[test]
fn standalone_node_runs_its_own_messages_and_refuses_others() {
    let fleet = fleet()
        .without_broker()
        .nodes(&["solo"])
        .start()
        .expect("a fleet without a broker always starts");
    let node = fleet.node("solo");
    let out = node.cli(&["exec", "-n", "solo", "--", "echo", "alone"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("alone"));
    let out = node.cli(&["exec", "-n", "elsewhere", "--", "true"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("standalone"), "{}", stderr(&out));
}

#[test]
fn sigterm_stops_cleanly_and_state_survives() {
    let mut fleet = fleet()
        .without_broker()
        .nodes(&["ship1"])
        .start()
        .expect("a fleet without a broker always starts");
    let node = fleet.node_mut("ship1");
    let out = node.cli(&["exec", "-n", "ship1", "--json", "--", "echo", "before"]);
    let id = json(&out)[0]["id"].as_str().unwrap().to_string();
    assert_eq!(node.terminate(), Some(0), "clean exit on SIGTERM");
    assert!(!node.data_dir.join("bosun.sock").exists(), "socket removed");
    node.restart();
    let out = node.cli(&["status", &id]);
    let text = stdout(&out);
    for state in ["queued", "sent", "acked", "running", "done"] {
        assert!(text.contains(state), "history lost {state}:\n{text}");
    }
    assert!(text.contains("before"));
}

#[test]
fn copy_a_file_between_nodes_in_hashed_chunks() {
    let Some(mut fleet) = fleet().nodes(&["central", "ship1", "ship2"]).start() else {
        return;
    };
    // Each node's default file roots: its results dir and `<data dir>/transfer`.
    let src = fleet.data_dir("ship1").join("transfer/src.bin");
    let content: Vec<u8> = (0..700_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&src, &content).unwrap();
    let dst = fleet.data_dir("ship2").join("transfer/copied/dst.bin");
    // ship2 is down when the copy starts: the chunks wait in ship1's outbox.
    fleet.node_mut("ship2").kill9();
    let msg = serde_json::json!([{
        "toNode": "ship1", "method": "copySrc",
        "data": [src.to_str().unwrap(), "ship2", dst.to_str().unwrap(), "65536"]
    }]);
    let file = fleet.dir().join("copy.json");
    std::fs::write(&file, msg.to_string()).unwrap();
    let out = fleet
        .node("central")
        .cli(&["send", "--wait", "--json", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        json(&out)[0]["result"]["stdout"]
            .as_str()
            .unwrap()
            .contains("in 11 chunks")
    );
    assert!(!dst.exists());
    fleet.node_mut("ship2").restart();
    eventually(Duration::from_secs(30), "the copy completes", || {
        (std::fs::read(&dst).ok()? == content).then_some(())
    });
    assert!(!dst.with_extension("bin.bosun-part").exists());
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(fleet.data_dir("ship2").join("transfer"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700, "the transfer folder is the node's own");
    }

    // A file outside the roots is refused at the source.
    let copy_src = |data: serde_json::Value| {
        let msg = serde_json::json!([{ "toNode": "ship1", "method": "copySrc", "data": data }]);
        std::fs::write(&file, msg.to_string()).unwrap();
        let out = fleet
            .node("central")
            .cli(&["send", "--wait", "--json", file.to_str().unwrap()]);
        json(&out)[0]["result"].clone()
    };
    let result = copy_src(serde_json::json!([
        "/etc/hostname",
        "ship2",
        dst.to_str().unwrap()
    ]));
    assert_eq!(result["status"], "failed", "{result}");
    let error = result["error"].as_str().unwrap();
    assert!(
        error.starts_with("path /etc/hostname is outside this node's file roots")
            && error.ends_with("see file_roots"),
        "{error}"
    );
}

/// Queues deeper than an outbox keeps in memory, on both sides at once (the requests at
/// the sender, the replies at the destination), are read from disk in pages while new
/// entries keep arriving from concurrent writers: every result comes back and both
/// outboxes end empty.
#[test]
fn queues_deeper_than_memory_lose_nothing_on_either_side() {
    let tight = "outbox_memory_entries = 32\nmax_concurrent = 256\n";
    let Some(fleet) = fleet()
        .node(NodeSpec::new("central").config(tight))
        .node(NodeSpec::new("ship1").config(tight))
        .start()
    else {
        return;
    };
    let central = fleet.node("central");
    let ids: Vec<String> = std::thread::scope(|scope| {
        let submitters: Vec<_> = (0..8)
            .map(|_| {
                scope.spawn(|| {
                    let mut ids = Vec::new();
                    for _ in 0..5 {
                        let pings: Vec<Value> = (0..100)
                            .map(|_| serde_json::json!({"toNode": "ship1", "method": "ping"}))
                            .collect();
                        let request = serde_json::json!({"op": "submit", "messages": pings});
                        ids.extend(queued_ids(&nc_u(central, &request.to_string())));
                    }
                    ids
                })
            })
            .collect();
        submitters
            .into_iter()
            .flat_map(|s| s.join().unwrap())
            .collect()
    });
    assert_eq!(ids.len(), 4000);
    let request = serde_json::json!({"op": "wait", "ids": ids, "timeoutMs": 180_000});
    let answer = nc_u(central, &request.to_string());
    let mut states = std::collections::BTreeMap::<String, usize>::new();
    for report in answer["reports"].as_array().unwrap() {
        let state = report["sent"]["state"].as_str().unwrap_or("unknown");
        *states.entry(state.to_string()).or_default() += 1;
    }
    assert_eq!(
        states,
        [("done".to_string(), 4000)].into(),
        "every ping done at the sender"
    );
    for node in [central, fleet.node("ship1")] {
        let info = nc_u(node, r#"{"op":"info"}"#);
        assert_eq!(
            info["outbox"], 0,
            "{}: nothing left on disk: {info}",
            node.name
        );
    }
}
