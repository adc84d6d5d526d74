//! The HTTP compatibility layers on real containers: quartermaster's `/run`, `/status`
//! and `/stop` (DockerMod's actions: `dockermod.rs`).

use bosun_testkit::NodeSpec;
use serde_json::Value;

use crate::support::{DockerCleanup, docker, fleet, http, unique};

#[test]
fn quartermaster_runs_on_a_worker_reports_status_and_stops_behind_its_token() {
    let Some(image) = bosun_testkit::docker_test_image() else {
        return;
    };
    let (central, worker, manager) = (unique("qmc"), unique("qmw"), unique("qmm"));
    let _cleanup = DockerCleanup {
        names: vec![],
        nodes: vec![central.clone(), worker.clone(), manager.clone()],
    };
    let address = format!("127.0.0.1:{}", bosun_testkit::free_port());
    let token = "4jrs8-534js-345ds-3lrd0";
    // The fleet starts once central lists all three alive: placement needs their hellos.
    let Some(_fleet) = fleet()
        .central(&central)
        .node(
            NodeSpec::new(&central)
                .env("BOSUN_HTTP_LISTEN", address.as_str())
                .env("BOSUN_HTTP_TOKEN", token),
        )
        .node(NodeSpec::new(&worker).env("BOSUN_LABELS", "role=worker"))
        .node(NodeSpec::new(&manager).env("BOSUN_LABELS", "role=manager"))
        .start()
    else {
        return;
    };

    let body = serde_json::json!({
        "token": token, "command": "sleep 300", "image": image, "name": unique("bosun-e2e-qm-"),
        "labels": {"name": "value"}, "memory": 64
    })
    .to_string();
    let (code, answer) = http("POST", &address, "/run", None, &body);
    assert_eq!(code, 200, "{answer}");
    let answer: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(answer["success"], true);
    let id = answer["id"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 64);
    assert_eq!(
        docker(&[
            "inspect",
            "-f",
            "{{index .Config.Labels \"org.bosun.node\"}}",
            &id
        ]),
        worker,
        "placed on the worker"
    );
    assert_eq!(
        docker(&["inspect", "-f", "{{.HostConfig.Memory}}", &id]),
        (64 * 1024 * 1024).to_string()
    );
    assert_eq!(
        docker(&["inspect", "-f", "{{json .Config.Cmd}}", &id]),
        r#"["sleep","300"]"#
    );

    let (code, status) = http(
        "GET",
        &address,
        &format!("/status/{id}?token={token}"),
        None,
        "",
    );
    assert_eq!(code, 200, "{status}");
    let status: Value = serde_json::from_str(&status).unwrap();
    assert_eq!(
        (status["success"].clone(), status["status"].clone()),
        (Value::Bool(true), "started".into())
    );

    for (path, body) in [
        ("/run", r#"{"token":"wrong","image":"x"}"#),
        ("/stop", r#"{"id":"x"}"#),
    ] {
        let (code, answer) = http("POST", &address, path, None, body);
        assert_eq!(code, 401, "{path}: {answer}");
        assert_eq!(
            serde_json::from_str::<Value>(&answer).unwrap()["success"],
            false
        );
    }
    assert_eq!(
        http(
            "GET",
            &address,
            &format!("/status/{id}?token=nope"),
            None,
            ""
        )
        .0,
        401
    );
    assert_eq!(http("GET", &address, "/v1/nodes", None, "").0, 401);
    assert_eq!(http("GET", &address, "/v1/nodes", Some(token), "").0, 200);

    let (code, answer) = http(
        "POST",
        &address,
        "/stop",
        None,
        &format!(r#"{{"token":"{token}","id":"{id}"}}"#),
    );
    assert_eq!(code, 200, "{answer}");
    let gone = std::process::Command::new("docker")
        .args(["inspect", &id])
        .output()
        .unwrap();
    assert!(!gone.status.success(), "stopped and removed");
}
