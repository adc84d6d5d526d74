//! `bosun cancel`: a message that never reached its destination ends `cancelled` and is
//! never sent, across a kill -9 of the sender; one that may have arrived is left to its
//! destination, and the sender's record matches what really ran; an ordered stream goes
//! on past a cancelled head; finished, unknown and received ids are refused.

use std::time::Duration;

use bosun_testkit::{NodeSpec, eventually, json};

use crate::support::{exec_no_wait, fleet, report, stderr, stdout, unique, wait_state};

/// `bosun cancel --json ID` on `node`: (exit code, the answer for the id).
fn cancel(node: &bosun_testkit::NodeProcess, id: &str) -> (i32, serde_json::Value) {
    let out = node.cli(&["cancel", "--json", id]);
    let answers = json(&out);
    (out.status.code().unwrap_or(-1), answers[0].clone())
}

#[test]
fn a_command_for_an_offline_node_is_cancelled_for_good_even_across_a_crash() {
    let (central, ship) = (unique("cxc"), unique("cxs"));
    let Some(mut fleet) = fleet().central(&central).nodes(&[&central]).start() else {
        return;
    };
    let marker = fleet.dir().join("ran");
    // ship has never been up: every try finds nobody listening.
    let id = exec_no_wait(
        fleet.node(&central),
        &ship,
        &["touch", marker.to_str().unwrap()],
    );
    assert_eq!(report(fleet.node(&central), &id)["sent"]["state"], "queued");
    let (code, answer) = cancel(fleet.node(&central), &id);
    assert_eq!(
        (code, answer["outcome"].as_str()),
        (0, Some("cancelled")),
        "{answer}"
    );
    let record = wait_state(fleet.node(&central), &id, "cancelled");
    let history = record["sent"]["history"].to_string();
    assert!(history.contains("cancelled by the operator"), "{history}");
    // The cancel is durable: a crash right after it changes nothing.
    fleet.node_mut(&central).kill9();
    fleet.node_mut(&central).restart();
    assert_eq!(
        report(fleet.node(&central), &id)["sent"]["state"],
        "cancelled"
    );
    // ship comes up; a later command in the same stream runs, so the cancelled one would
    // have gone before it.
    fleet.add(NodeSpec::new(&ship));
    let probe = exec_no_wait(fleet.node(&central), &ship, &["true"]);
    wait_state(fleet.node(&central), &probe, "done");
    assert!(!marker.exists(), "the cancelled command never ran");
    let there = fleet.node(&ship).cli(&["status", "--json", &id]);
    assert!(
        !there.status.success() && stderr(&there).contains("no message with id"),
        "ship never received it: {}",
        stdout(&there)
    );
    // A second cancel, and a cancel of a finished message, are refused with the state.
    let (code, answer) = cancel(fleet.node(&central), &id);
    assert_eq!(code, 1);
    assert_eq!(answer["outcome"], "refused");
    assert!(
        answer["reason"]
            .as_str()
            .unwrap()
            .contains("cancelled already"),
        "{answer}"
    );
    let (code, answer) = cancel(fleet.node(&central), &probe);
    assert_eq!(code, 1);
    assert!(
        answer["reason"].as_str().unwrap().contains("done already"),
        "{answer}"
    );
    // Unknown ids, and messages this node only received, are refused with the reason.
    let (code, answer) = cancel(fleet.node(&central), "01NOSUCHMESSAGE0000000000");
    assert_eq!(code, 1);
    assert!(
        answer["reason"]
            .as_str()
            .unwrap()
            .contains("no message with id"),
        "{answer}"
    );
    let (code, answer) = cancel(fleet.node(&ship), &probe);
    assert_eq!(code, 1);
    assert!(
        answer["reason"]
            .as_str()
            .unwrap()
            .contains("only its sender can cancel it"),
        "{answer}"
    );
    // The text form says the same, on stderr, exit 1.
    let out = fleet.node(&central).cli(&["cancel", &probe]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("not cancelled"), "{}", stderr(&out));
}

#[test]
fn a_cancelled_head_lets_its_ordered_stream_go_on_in_order() {
    let (central, ship) = (unique("cyc"), unique("cys"));
    let Some(mut fleet) = fleet().central(&central).nodes(&[&central]).start() else {
        return;
    };
    let file = fleet.dir().join("order");
    let ids: Vec<String> = (1..=3)
        .map(|n| {
            exec_no_wait(
                fleet.node(&central),
                &ship,
                &["sh", "-c", &format!("echo {n} >> {}", file.display())],
            )
        })
        .collect();
    let (code, answer) = cancel(fleet.node(&central), &ids[0]);
    assert_eq!(
        (code, answer["outcome"].as_str()),
        (0, Some("cancelled")),
        "{answer}"
    );
    fleet.add(NodeSpec::new(&ship));
    wait_state(fleet.node(&central), &ids[2], "done");
    assert_eq!(
        report(fleet.node(&central), &ids[1])["sent"]["state"],
        "done"
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "2\n3\n");
}

#[test]
fn a_command_that_may_have_arrived_is_left_to_its_destination_and_the_record_tells_the_truth() {
    let (central, ship) = (unique("czc"), unique("czs"));
    let Some(mut fleet) = fleet().central(&central).nodes(&[&central, &ship]).start() else {
        return;
    };
    let marker = fleet.dir().join("ran");
    fleet.node_mut(&ship).freeze();
    let out = fleet.node(&central).cli(&[
        "exec",
        "-n",
        &ship,
        "--no-wait",
        "--json",
        "--shell",
        "--",
        &format!("touch {}", marker.display()),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let id = json(&out)[0]["id"].as_str().unwrap().to_string();
    // The request reached the broker and ship's subscription: no ACK comes while it is
    // frozen, so it may have arrived. Its cancel waits for that send's answer.
    let (code, answer) = cancel(fleet.node(&central), &id);
    assert_eq!(code, 0, "{answer}");
    assert_eq!(answer["outcome"], "askedDestination", "{answer}");
    assert_eq!(answer["to"], ship.as_str());
    assert_eq!(
        report(fleet.node(&central), &id)["sent"]["state"],
        "unconfirmed"
    );
    fleet.node_mut(&ship).thaw();
    // ship decides: it cancels what had not started, or runs what it had read first. The
    // sender's final state must say which.
    let state = eventually(Duration::from_secs(60), "a final state", || {
        let state = report(fleet.node(&central), &id)["sent"]["state"]
            .as_str()
            .unwrap_or("")
            .to_string();
        (state == "cancelled" || state == "done").then_some(state)
    });
    if state == "cancelled" {
        let there = fleet.node(&ship).cli(&["status", "--json", &id]);
        if there.status.success() {
            assert_eq!(json(&there)["received"]["state"], "cancelled");
        }
        // Whatever of it is still on its way is refused there: give it the time a
        // later command takes, then look.
        let probe = exec_no_wait(fleet.node(&central), &ship, &["true"]);
        wait_state(fleet.node(&central), &probe, "done");
        assert!(!marker.exists(), "cancelled, so it never ran");
    } else {
        assert!(marker.exists(), "done, so it ran");
    }
    let out = fleet.node(&central).cli(&["status", &id]);
    assert!(
        stdout(&out).contains("cancelled by the operator"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn a_message_deep_in_the_outbox_on_disk_only_is_cancelled_too() {
    let (central, ship) = (unique("cwc"), unique("cws"));
    let Some(mut fleet) = fleet()
        .central(&central)
        .node(NodeSpec::new(&central).config("outbox_memory_entries = 4\n"))
        .start()
    else {
        return;
    };
    let dir = fleet.dir().to_path_buf();
    let marker = |n: usize| dir.join(format!("ran-{n}"));
    let messages: Vec<serde_json::Value> = (0..20)
        .map(|n| {
            serde_json::json!({
                "toNode": ship, "method": "cliCommand", "ordered": false,
                "data": ["touch", marker(n).to_str().unwrap()],
            })
        })
        .collect();
    let request = serde_json::json!({"op": "submit", "messages": messages});
    let ids = crate::support::queued_ids(&crate::support::nc_u(
        fleet.node(&central),
        &request.to_string(),
    ));
    // 2 is in the outbox's memory; 15 waits on disk only (the memory holds 4).
    for n in [2, 15] {
        let (code, answer) = cancel(fleet.node(&central), &ids[n]);
        assert_eq!(
            (code, answer["outcome"].as_str()),
            (0, Some("cancelled")),
            "{n}: {answer}"
        );
    }
    fleet.add(NodeSpec::new(&ship));
    for (n, id) in ids.iter().enumerate() {
        let want = if n == 2 || n == 15 {
            "cancelled"
        } else {
            "done"
        };
        wait_state(fleet.node(&central), id, want);
    }
    for n in 0..20 {
        assert_eq!(marker(n).exists(), n != 2 && n != 15, "message {n}");
    }
}
