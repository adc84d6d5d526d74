//! The sender's record under stalls: a destination or a sender frozen (SIGSTOP) while
//! messages and replies are on their way. What the sender reports must be what happened.

use std::time::Duration;

use bosun_testkit::{eventually, holds_for};

use crate::support::{fleet, lines, nc_u, queued_ids, report, state_of, wait_state};

fn command(to: &str, script: &str, extra: &str) -> String {
    format!(
        r#"{{"toNode":"{to}","method":"cliCommand","data":["sh","-c",{}]{extra}}}"#,
        serde_json::to_string(script).unwrap()
    )
}

#[test]
fn a_message_given_up_while_its_destination_is_frozen_never_runs_later_and_order_holds() {
    let Some(mut fleet) = fleet().nodes(&["central", "ship1"]).start() else {
        return;
    };
    let file = fleet.dir().join("order.txt");
    fleet.node_mut("ship1").freeze();
    let quick = r#","ACKTimeout":1,"retries":1"#;
    let body = format!(
        "[{},{}]",
        command("ship1", &format!("echo 1 >> {}", file.display()), quick),
        command("ship1", &format!("echo 2 >> {}", file.display()), quick)
    );
    let ids = queued_ids(&nc_u(fleet.node("central"), &body));
    let central = fleet.node("central");
    let first = wait_state(central, &ids[0], "unconfirmed");
    let note = first["sent"]["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|h| h["note"].as_str())
        .collect::<Vec<_>>()
        .join(" | ");
    assert!(note.contains("asked ship1 to cancel it"), "{note}");
    // The ordered stream is held: the second is not sent past the unconfirmed first.
    holds_for(Duration::from_secs(2), "the second stays queued", || {
        state_of(central, &ids[1]) == "queued"
    });
    // A queued message says when it expires (the default ttl applies).
    let text = crate::support::stdout(&central.cli(&["status", &ids[1]]));
    assert!(text.contains("expires"), "{text}");
    fleet.node_mut("ship1").thaw();
    let central = fleet.node("central");
    let first = eventually(Duration::from_secs(60), "the first is settled", || {
        let r = report(central, &ids[0]);
        let state = r["sent"]["state"].as_str().unwrap_or("").to_string();
        (state == "cancelled" || state == "done").then_some(state)
    });
    wait_state(central, &ids[1], "done");
    let ran = lines(&file);
    // Whatever happened, the record says it: cancelled means it never ran.
    match first.as_str() {
        "cancelled" => assert_eq!(ran, vec!["2"], "a cancelled message ran"),
        _ => assert_eq!(ran, vec!["1", "2"], "run once each, in order"),
    }
    // And stays so: a late copy of a cancelled message never runs.
    holds_for(Duration::from_secs(2), "nothing runs late", || {
        lines(&file).len() == ran.len()
    });
}

#[test]
fn a_result_whose_reply_was_given_up_while_the_sender_was_frozen_is_pulled_when_it_returns() {
    let Some(mut fleet) = fleet().nodes(&["central", "ship1"]).start() else {
        return;
    };
    let gate = fleet.dir().join("gate");
    let script = format!(
        "i=0; while [ ! -e {} ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done; echo finished",
        gate.display()
    );
    let extra = r#","methodTimeout":5,"ACKTimeout":1,"replyACKTimeout":1,"replyRetries":0"#;
    let body = format!("[{}]", command("ship1", &script, extra));
    let id = queued_ids(&nc_u(fleet.node("central"), &body)).remove(0);
    wait_state(fleet.node("central"), &id, "running");
    fleet.node_mut("central").freeze();
    std::fs::write(&gate, "").unwrap();
    // ship1 finishes, cannot deliver the reply, and gives the reply up.
    let errors = fleet.data_dir("ship1").join("error.log");
    eventually(Duration::from_secs(30), "ship1 gives the reply up", || {
        std::fs::read_to_string(&errors)
            .ok()
            .filter(|log| log.contains("undelivered"))
    });
    fleet.node_mut("central").thaw();
    // The sender asks for the overdue result and records the real one.
    let done = wait_state(fleet.node("central"), &id, "done");
    assert_eq!(done["sent"]["outcome"]["stdout"], "finished\n", "{done}");
}
