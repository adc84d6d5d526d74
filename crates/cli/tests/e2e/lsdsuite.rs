//! The LSDSuite / FaultSee node manager's TCP command port, against real containers.

use std::time::Duration;

use bosun_testkit::{NodeSpec, eventually};

use crate::support::{DockerCleanup, docker, fleet, stdout, tcp_line, unique};

#[test]
fn lsdsuite_port_answers_status_and_kills_a_real_container() {
    let Some(image) = bosun_testkit::docker_test_image() else {
        return;
    };
    let address = format!("127.0.0.1:{}", bosun_testkit::free_port());
    let fleet = fleet()
        .without_broker()
        .node(NodeSpec::new("lsd").env("BOSUN_LSDSUITE_LISTEN", address.as_str()))
        .start()
        .expect("a fleet without a broker always starts");
    let data = fleet.data_dir("lsd");
    let victim = unique("bosun-e2e-lsd-kill-");
    let paused = unique("bosun-e2e-lsd-pause-");
    let _cleanup = DockerCleanup {
        names: vec![victim.clone(), paused.clone()],
        nodes: vec![],
    };
    docker(&["run", "-d", "--name", &victim, &image, "sleep", "300"]);
    docker(&["run", "-d", "--name", &paused, &image, "sleep", "300"]);

    let status = tcp_line(&address, r#"{"command": "status"}"#);
    let host = std::process::Command::new("hostname").output().unwrap();
    assert_eq!(
        status,
        serde_json::json!({"status": "ok", "msg": stdout(&host).trim()})
    );

    let killed = tcp_line(
        &address,
        &format!(r#"{{"command": "kill", "params": {{"id": "{victim}", "signal": "SIGKILL"}}}}"#),
    );
    assert_eq!(killed["status"], "ok", "{killed}");
    eventually(
        Duration::from_secs(10),
        "the container died of SIGKILL",
        || {
            (docker(&[
                "inspect",
                "-f",
                "{{.State.Status}} {{.State.ExitCode}}",
                &victim,
            ]) == "exited 137")
                .then_some(())
        },
    );

    assert_eq!(
        tcp_line(
            &address,
            &format!(r#"{{"command": "pause", "params": {{"id": "{paused}"}}}}"#)
        )["status"],
        "ok"
    );
    assert_eq!(
        docker(&["inspect", "-f", "{{.State.Status}}", &paused]),
        "paused"
    );
    assert_eq!(
        tcp_line(
            &address,
            &format!(r#"{{"command": "unpause", "params": {{"id": "{paused}"}}}}"#)
        )["status"],
        "ok"
    );
    assert_eq!(
        docker(&["inspect", "-f", "{{.State.Status}}", &paused]),
        "running"
    );

    let marked = tcp_line(
        &address,
        r#"{"command": "mark", "params": {"msg": "fault injected here"}}"#,
    );
    assert_eq!(marked["status"], "ok", "{marked}");
    // The stream has its own writer task: the mark is in the file soon after the answer.
    eventually(Duration::from_secs(10), "the mark in the stream", || {
        std::fs::read_to_string(data.join("capture/default.log"))
            .ok()?
            .lines()
            .any(|l| l.contains(" MARK ") && l.ends_with("fault injected here"))
            .then_some(())
    });

    let switched = tcp_line(
        &address,
        r#"{"command": "log", "params": {"file": "run2.log"}}"#,
    );
    assert_eq!(switched["status"], "ok");
    tcp_line(
        &address,
        r#"{"command": "mark", "params": {"msg": "in run2"}}"#,
    );
    eventually(Duration::from_secs(10), "the mark in run2.log", || {
        std::fs::read_to_string(data.join("capture/run2.log"))
            .ok()?
            .contains("in run2")
            .then_some(())
    });

    let missing = tcp_line(
        &address,
        r#"{"command": "kill", "params": {"id": "no-such-container-xyz"}}"#,
    );
    assert_eq!(missing["status"], "err");
    assert!(
        missing["msg"]
            .as_str()
            .unwrap()
            .contains("no such container"),
        "{missing}"
    );
    let unknown = tcp_line(&address, r#"{"command": "explode"}"#);
    assert_eq!(unknown["status"], "err");
    assert!(tcp_line(&address, "garbage\n")["status"] == "err");
    assert_eq!(
        tcp_line(&address, r#"{"command": "status"}"#)["status"],
        "ok",
        "still serving"
    );
}
