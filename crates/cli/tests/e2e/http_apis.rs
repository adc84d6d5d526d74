//! The HTTP compatibility layers on real containers: quartermaster's `/run`, `/status`
//! and `/stop`, and DockerMod's JSON actions with spread placement.

use std::collections::BTreeMap;

use bosun_testkit::{NodeSpec, json};
use serde_json::Value;

use crate::support::{DockerCleanup, docker, fleet, http, stderr, unique};

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

#[test]
fn dockermod_spreads_four_instances_and_lists_them_cluster_wide() {
    let Some(image) = bosun_testkit::docker_test_image() else {
        return;
    };
    let names = [unique("dma"), unique("dmb"), unique("dmc")];
    let _cleanup = DockerCleanup {
        names: vec![],
        nodes: names.to_vec(),
    };
    let address = format!("127.0.0.1:{}", bosun_testkit::free_port());
    let token = "0123456789abcdef0123";
    // DockerMod's templates: the Docker create-container JSON, one file per template.
    let template =
        serde_json::json!({"Image": image, "Cmd": ["sleep", "300"], "Labels": {"from": "template"}})
            .to_string();
    let with_template =
        |name: &String| NodeSpec::new(name).file("templates/sleeper.json", &template);
    // The fleet starts once the first node lists all three alive: placement needs them.
    let Some(fleet) = fleet()
        .central(&names[0])
        .node(
            with_template(&names[0])
                .env("BOSUN_HTTP_LISTEN", address.as_str())
                .env("BOSUN_HTTP_TOKEN", token),
        )
        .node(with_template(&names[1]))
        .node(with_template(&names[2]))
        .start()
    else {
        return;
    };

    let body =
        serde_json::json!({"action": "create-container", "template": "sleeper", "instances": 4})
            .to_string();
    let (code, answer) = http("POST", &address, "/", Some(token), &body);
    assert_eq!(code, 200, "{answer}");
    let answer: Value = serde_json::from_str(&answer).unwrap();
    let created = answer["containers"].as_array().unwrap();
    assert_eq!(created.len(), 4, "{answer}");
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    for c in created {
        assert_eq!(c["statusCode"], 201, "{c}");
        let id = c["Response"]["Body"]["Id"].as_str().unwrap();
        let on = docker(&[
            "inspect",
            "-f",
            "{{index .Config.Labels \"org.bosun.node\"}}",
            id,
        ]);
        assert_eq!(on, c["dockerInstance"].as_str().unwrap());
        let from = docker(&["inspect", "-f", "{{index .Config.Labels \"from\"}}", id]);
        assert_eq!(from, "template");
        *per_node.entry(on).or_default() += 1;
    }
    let mut counts: Vec<usize> = per_node.values().copied().collect();
    counts.sort();
    assert_eq!(
        counts,
        vec![1, 1, 2],
        "spread evenly over the three live nodes: {per_node:?}"
    );

    // Without the token DockerMod's requests are refused (unless dockermod_open is set).
    let (code, _) = http(
        "POST",
        &address,
        "/",
        None,
        r#"{"action": "list-containers"}"#,
    );
    assert_eq!(code, 401);
    let (code, list) = http(
        "POST",
        &address,
        "/",
        Some(token),
        r#"{"action": "list-containers", "all": true}"#,
    );
    assert_eq!(code, 200, "{list}");
    let list: Value = serde_json::from_str(&list).unwrap();
    for c in created {
        let id = c["Response"]["Body"]["Id"].as_str().unwrap();
        let row = list["containers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == id);
        assert_eq!(
            row.unwrap()["node"],
            c["dockerInstance"],
            "listed with its node"
        );
    }
    assert!(list["unanswered"].as_array().unwrap().is_empty());

    let first = created[0]["Response"]["Body"]["Id"].as_str().unwrap();
    let (code, started) = http(
        "POST",
        &address,
        "/",
        Some(token),
        &format!(
            r#"{{"action": "start-container", "id": "{}"}}"#,
            &first[..12]
        ),
    );
    assert_eq!(code, 200, "{started}");
    assert_eq!(
        docker(&["inspect", "-f", "{{.State.Status}}", first]),
        "running"
    );
    let (code, _) = http(
        "POST",
        &address,
        "/",
        Some(token),
        &format!(r#"{{"action": "stop-container", "id": "{first}"}}"#),
    );
    assert_eq!(code, 200);
    assert_eq!(
        docker(&["inspect", "-f", "{{.State.Status}}", first]),
        "exited"
    );

    // The CLI sees the same cluster-wide list.
    let out = fleet
        .node(&names[0])
        .cli(&["container", "ls", "--all", "--stopped", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(json(&out).as_array().unwrap().len() >= 4);
}
