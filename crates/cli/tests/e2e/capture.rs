//! The LSDSuite event stream: container logs and stats, host stats, marks, and
//! shipping the stream to central.

use std::time::Duration;

use bosun_testkit::{NodeSpec, eventually};

use crate::support::{DockerCleanup, docker, fleet, stderr, unique};

#[test]
fn labelled_container_logs_and_stats_reach_the_event_stream_with_a_mark_between() {
    let Some(image) = bosun_testkit::docker_test_image() else {
        return;
    };
    let fleet = fleet()
        .without_broker()
        .node(NodeSpec::new("cap").config("stats_interval_secs = 1\n"))
        .start()
        .expect("a fleet without a broker always starts");
    let node = fleet.node("cap");
    let data = fleet.data_dir("cap");
    let (labelled, syslogged) = (unique("bosun-e2e-cap-lbl-"), unique("bosun-e2e-cap-sys-"));
    let _cleanup = DockerCleanup {
        names: vec![labelled.clone(), syslogged.clone()],
        nodes: vec![],
    };
    let id = docker(&[
        "run",
        "-d",
        "--name",
        &labelled,
        "--label",
        "org.lsdsuite.stats=true",
        &image,
        "sh",
        "-c",
        "while true; do echo tick; sleep 0.2; done",
    ]);
    let socket = data.join("sock/logs.sock");
    let sys_id = docker(&[
        "run",
        "-d",
        "--name",
        &syslogged,
        "--log-driver",
        "syslog",
        "--log-opt",
        &format!("syslog-address=unix://{}", socket.display()),
        "--log-opt",
        "syslog-format=rfc5424micro",
        "--log-opt",
        "tag={{.FullID}}",
        &image,
        "sh",
        "-c",
        "while true; do echo via-syslog; sleep 0.2; done",
    ]);
    let stream_path = data.join("capture/default.log");
    let read = || std::fs::read_to_string(&stream_path).unwrap_or_default();
    eventually(
        Duration::from_secs(30),
        "LOG and STATS of the labelled container",
        || {
            let s = read();
            (s.lines()
                .any(|l| l.contains(" LOG ") && l.contains(&id) && l.ends_with("tick"))
                && s.lines().any(|l| l.contains(" STATS ") && l.contains(&id)))
            .then_some(())
        },
    );
    let out = node.cli(&["send", "--wait", "-"]);
    assert!(!out.status.success());
    let mark = data.join("mark.json");
    std::fs::write(
        &mark,
        r#"[{"toNode": "cap", "method": "mark", "data": ["between the ticks"]}]"#,
    )
    .unwrap();
    let out = node.cli(&["send", "--wait", mark.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    eventually(
        Duration::from_secs(20),
        "ticks after the mark, and syslog lines",
        || {
            let s = read();
            let lines: Vec<&str> = s.lines().collect();
            let at = lines
                .iter()
                .position(|l| l.contains(" MARK ") && l.ends_with("between the ticks"))?;
            let tick_after = lines[at..]
                .iter()
                .any(|l| l.contains(" LOG ") && l.contains(&id));
            let syslog = lines
                .iter()
                .any(|l| l.contains(" LOG ") && l.contains(&sys_id) && l.ends_with("via-syslog"));
            (tick_after && syslog).then_some(())
        },
    );
    assert!(
        read().lines().any(|l| l.contains(" HOST ")),
        "host stats are sampled too"
    );
}

#[test]
fn the_event_stream_ships_to_central() {
    let Some(fleet) = fleet()
        .central("central")
        .node("central")
        .node(NodeSpec::new("ship1").config("capture_ship = true\n"))
        .start()
    else {
        return;
    };
    let mark = fleet.dir().join("mark.json");
    std::fs::write(
        &mark,
        r#"[{"toNode": "ship1", "method": "mark", "data": ["shipped mark"]}]"#,
    )
    .unwrap();
    let out = fleet
        .node("ship1")
        .cli(&["send", "--wait", mark.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let shipped = fleet
        .data_dir("central")
        .join("data/capture/ship1/default.log");
    eventually(Duration::from_secs(30), "the mark reached central", || {
        std::fs::read_to_string(&shipped)
            .ok()?
            .lines()
            .any(|l| l.contains(" MARK ship1 ") && l.ends_with("shipped mark"))
            .then_some(())
    });
}
