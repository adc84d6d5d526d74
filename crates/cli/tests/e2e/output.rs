//! The CLI on a closed stdout: `bosun status | head` reads a line and goes away; the
//! command must end quietly, not panic.

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
