//! The CLI's output: on a closed stdout (`bosun status | head` reads a line and goes
//! away, the command must end quietly, not panic), and the progress and summary of an
//! exec to many nodes.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use bosun_testkit::poll_until;

use crate::support::{bin, fleet, stderr, stdout};

/// More listing than a pipe holds (64 KiB): about 95 bytes a line.
const MESSAGES: usize = 1500;

#[test]
fn a_listing_into_a_closed_pipe_ends_quietly() {
    let fleet = fleet()
        .without_broker()
        .nodes(&["solo"])
        .start()
        .expect("a fleet without a broker always starts");
    let node = fleet.node("solo");
    let messages: Vec<_> = (0..MESSAGES)
        .map(|_| serde_json::json!({"toNode": "solo", "method": "ping", "ordered": false}))
        .collect();
    let mut send = Command::new(bin())
        .arg("--data-dir")
        .arg(&node.data_dir)
        .args(["send", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run bosun send");
    send.stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(&messages).unwrap().as_bytes())
        .unwrap();
    let out = send.wait_with_output().unwrap();
    assert!(out.status.success(), "send: {}", stderr(&out));
    assert_eq!(
        stdout(&out).lines().count(),
        MESSAGES,
        "one line per message"
    );

    let limit = (2 * MESSAGES).to_string();
    let mut status = Command::new(bin())
        .arg("--data-dir")
        .arg(&node.data_dir)
        .args(["status", "--limit", &limit])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run bosun status");
    let mut reader = BufReader::new(status.stdout.take().unwrap());
    let mut first = String::new();
    reader.read_line(&mut first).expect("read the first line");
    assert!(first.starts_with("ID "), "the listing's header: {first:?}");
    // Like `head -1`: close the pipe with most of the listing still unread.
    drop(reader);
    let exit = poll_until(Duration::from_secs(30), || status.try_wait().ok().flatten());
    let Some(exit) = exit else {
        let _ = status.kill();
        panic!("bosun status did not end after its reader went away");
    };
    let out = status.wait_with_output().unwrap();
    let err = stderr(&out);
    assert!(
        !err.contains("panicked") && !err.contains("Broken pipe"),
        "no panic on a closed stdout: {err}"
    );
    assert_eq!(exit.code(), Some(0), "ends quietly with status 0: {err}");
}

#[test]
fn exec_to_many_nodes_counts_results_as_they_arrive_and_ends_with_a_table() {
    let Some(mut fleet) = fleet()
        .central("pg-a")
        .nodes(&["pg-a", "pg-b", "pg-c"])
        .start()
    else {
        return;
    };
    // One node is down: its result cannot come back within the wait.
    fleet.node_mut("pg-c").kill9();
    let out = fleet.node("pg-a").cli(&[
        "exec",
        "-n",
        "pg-a,pg-b,pg-c",
        "--progress",
        "--timeout",
        "3",
        "--",
        "true",
    ]);
    let err = stderr(&out);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(3), "{text}{err}");
    let progress: Vec<&str> = err.lines().filter(|l| l.contains(" back: ")).collect();
    assert!(
        progress
            .last()
            .is_some_and(|l| l.starts_with("2/3 back: 2 done, 0 failed, 1 pending")),
        "{err}"
    );
    assert!(
        progress.windows(2).all(|w| w[0] != w[1]),
        "one line per change: {err}"
    );
    let table: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("NODE"))
        .collect();
    assert!(table.len() == 5, "header, three rows, counts: {text}");
    let row = |node: &str| {
        table
            .iter()
            .find(|l| l.starts_with(node))
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .unwrap_or_default()
    };
    assert_eq!(row("pg-a")[1..3], ["done", "0"], "{text}");
    assert_eq!(row("pg-b")[1..3], ["done", "0"], "{text}");
    assert_eq!(
        row("pg-c")[2],
        "-",
        "no exit code for the node that is down: {text}"
    );
    assert_eq!(table[4], "3 nodes: 2 done, 0 failed, 1 pending", "{text}");

    // A command that fails everywhere: failed rows with their exit code.
    let out = fleet
        .node("pg-a")
        .cli(&["exec", "-n", "pg-a,pg-b", "--shell", "--", "exit 4"]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.contains("2 nodes: 0 done, 2 failed, 0 pending"),
        "{text}"
    );
    assert!(
        text.lines()
            .filter(|l| l.starts_with("pg-"))
            .filter(|l| l.split_whitespace().collect::<Vec<_>>()[1..3] == ["failed", "4"])
            .count()
            == 2,
        "{text}"
    );
    // Not a terminal and no --progress: no progress line.
    assert!(!stderr(&out).contains(" back: "));
}

#[test]
fn container_actions_print_json_per_container_with_the_node_that_did_it() {
    let Some(image) = bosun_testkit::docker_test_image() else {
        return;
    };
    let Some(fleet) = fleet().nodes(&["central", "ship1"]).start() else {
        return;
    };
    let name = crate::support::unique("bosun-json-");
    let _cleanup = crate::support::DockerCleanup {
        names: vec![name.clone()],
        nodes: vec!["ship1".into()],
    };
    let central = fleet.node("central");
    let out = central.cli(&[
        "container",
        "run",
        "-n",
        "ship1",
        "--name",
        &name,
        &image,
        "--",
        "sleep",
        "600",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    // Found on ship1 from central, by name; an unknown one is an error in the array.
    let out = central.cli(&["container", "pause", "--json", &name, "no-such-container"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let rows: serde_json::Value =
        serde_json::from_str(&stdout(&out)).unwrap_or_else(|e| panic!("{e}: {}", stdout(&out)));
    assert_eq!(rows[0]["id"], name.as_str(), "{rows}");
    assert_eq!(rows[0]["node"], "ship1", "{rows}");
    assert_eq!(rows[0]["method"], "containerPause", "{rows}");
    assert_eq!(rows[1]["id"], "no-such-container", "{rows}");
    assert!(
        rows[1]["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{rows}"
    );
    assert_eq!(
        crate::support::docker(&["inspect", "-f", "{{.State.Paused}}", &name]).trim(),
        "true"
    );
    // Naming none is a usage error, before anything is asked of a node.
    let out = central.cli(&["container", "pause", "--json"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("<IDS>"), "{}", stderr(&out));
    for (view, check) in [("inspect", "/Id"), ("stats", "/id"), ("logs", "")] {
        let out = central.cli(&["container", view, "--json", &name]);
        assert!(out.status.success(), "{view}: {}", stderr(&out));
        let row: serde_json::Value = serde_json::from_str(&stdout(&out))
            .unwrap_or_else(|e| panic!("{view}: {e}: {}", stdout(&out)));
        assert_eq!(row["node"], "ship1", "{row}");
        assert_eq!(row["id"], name.as_str(), "{row}");
        if check.is_empty() {
            assert!(row[view].is_string(), "logs are text: {row}");
        } else {
            assert!(row[view].pointer(check).is_some(), "{view} is JSON: {row}");
        }
    }
    let out = central.cli(&["container", "rm", "--json", "-f", &name]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rows: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(rows[0]["node"], "ship1", "{rows}");
}

#[test]
fn config_show_and_image_pull_speak_json() {
    if bosun_testkit::docker_test_image().is_none() {
        return;
    }
    let Some(fleet) = fleet().nodes(&["central", "ship1"]).start() else {
        return;
    };
    let central = fleet.node("central");
    // The configuration in effect, with where unset paths resolve to.
    let out = central.cli(&["config", "show", "--json", "--name", "elsewhere"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let config: serde_json::Value =
        serde_json::from_str(&stdout(&out)).unwrap_or_else(|e| panic!("{e}: {}", stdout(&out)));
    assert_eq!(config["name"], "elsewhere", "a flag is laid over the rest");
    let results = config["resolved"]["results_dir"].as_str().unwrap();
    assert!(
        results.starts_with(central.data_dir.to_str().unwrap()),
        "{results}"
    );
    assert!(config["resolved"]["file_roots"].is_array(), "{config}");
    // A pull that cannot succeed (no registry here) is reported as JSON, exit 1.
    let out = central.cli(&[
        "image",
        "pull",
        "--json",
        "-n",
        "ship1",
        "registry.invalid/no-such-image:1",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let row: serde_json::Value =
        serde_json::from_str(&stdout(&out)).unwrap_or_else(|e| panic!("{e}: {}", stdout(&out)));
    assert_eq!(row["node"], "ship1", "{row}");
    assert_eq!(row["image"], "registry.invalid/no-such-image:1", "{row}");
    assert!(
        row["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{row}"
    );
    assert!(row.get("output").is_none(), "{row}");
}

#[test]
fn exec_stream_prints_each_nodes_output_while_the_command_still_runs() {
    let Some(fleet) = fleet().nodes(&["central", "ship1"]).start() else {
        return;
    };
    let go = fleet.dir().join("go");
    let script = format!(
        "echo started; while [ ! -e {} ]; do sleep 0.05; done; echo finished",
        go.display()
    );
    let mut exec = Command::new(bin())
        .arg("--data-dir")
        .arg(&fleet.node("central").data_dir)
        .args([
            "exec",
            "-n",
            "central,ship1",
            "--stream",
            "--no-progress",
            "--timeout",
            "60",
            "--shell",
            "--",
        ])
        .arg(&script)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run bosun exec");
    let mut lines = BufReader::new(exec.stdout.take().unwrap()).lines();
    // Both nodes' first line arrives while their commands wait for the go file.
    let mut first: Vec<String> = (0..2)
        .map(|_| lines.next().expect("a line").expect("text"))
        .collect();
    first.sort();
    assert_eq!(
        first,
        ["central | started", "ship1 | started"],
        "streamed before the end"
    );
    assert!(
        exec.try_wait().unwrap().is_none(),
        "the commands are still running"
    );
    std::fs::write(&go, "").unwrap();
    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    let status = exec.wait().unwrap();
    assert!(status.success(), "{rest:?}");
    for node in ["central", "ship1"] {
        assert!(
            rest.contains(&format!("{node} | finished")),
            "{node}'s last line: {rest:?}"
        );
        // The result follows, without the output again.
        assert!(
            rest.iter()
                .any(|l| l.starts_with(&format!("── {node} [done"))),
            "{rest:?}"
        );
    }
    assert_eq!(
        rest.iter().filter(|l| l.ends_with("finished")).count(),
        2,
        "each line once: {rest:?}"
    );
    // --stream and --json do not go together.
    let out = fleet
        .node("central")
        .cli(&["exec", "-n", "ship1", "--stream", "--json", "--", "true"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}
