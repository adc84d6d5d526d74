//! DockerMod's users keep their requests: the documented `curl -X POST --data '…'`
//! requests, byte for byte, against a real fleet and the real Docker engine, answered in
//! DockerMod's shapes (`statusCode`, `dockerInstance`, `Response.Body` with Docker's own
//! keys).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bosun_testkit::NodeSpec;
use serde_json::Value;

use crate::support::{DockerCleanup, docker, fleet, unique};

/// `curl -X POST --data BODY ADDRESS`, as DockerMod's README sends it (curl then says
/// `Content-Type: application/x-www-form-urlencoded`): the HTTP status and the answer.
fn curl(address: &str, body: &str) -> (u16, Value) {
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "-X",
            "POST",
            "--data",
            body,
            "-w",
            "\n%{http_code}",
            address,
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (answer, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    let answer = serde_json::from_str(answer).unwrap_or(Value::String(answer.to_string()));
    (code.trim().parse().unwrap_or(0), answer)
}

/// The keys every DockerMod answer about one Docker call carries.
fn assert_dockermod_shape(answer: &Value, status: u64, node: Option<&str>) {
    assert_eq!(answer["statusCode"], status, "{answer}");
    assert!(
        answer["Date"].as_str().is_some_and(|d| d.ends_with(" GMT")),
        "{answer}"
    );
    if let Some(node) = node {
        assert_eq!(answer["dockerInstance"], node, "{answer}");
    }
    if status == 204 {
        assert_eq!(answer["Response"], "", "{answer}");
    } else {
        assert_eq!(answer["Content-Type"], "application/json", "{answer}");
        let length: usize = answer["Content-Length"].as_str().unwrap().parse().unwrap();
        assert_eq!(
            length,
            answer["Response"]["Body"].to_string().len(),
            "{answer}"
        );
    }
}

#[test]
fn dockermods_documented_curl_requests_work_unchanged() {
    let Some(image) = bosun_testkit::docker_test_image() else {
        return;
    };
    let names = [unique("dma"), unique("dmb"), unique("dmc")];
    let _cleanup = DockerCleanup {
        names: vec![],
        nodes: names.to_vec(),
    };
    let address = format!("127.0.0.1:{}", bosun_testkit::free_port());
    // DockerMod's README creates from the template "test": Docker's create-container JSON.
    let template =
        serde_json::json!({"Image": image, "Cmd": ["sleep", "300"], "Labels": {"from": "template"}})
            .to_string();
    let with_template = |name: &String| NodeSpec::new(name).file("templates/test.json", &template);
    // DockerMod took requests without a token; `dockermod_open` does the same.
    let Some(mut fleet) = fleet()
        .central(&names[0])
        .node(
            with_template(&names[0])
                .config("dockermod_open = true\n")
                .env("BOSUN_HTTP_LISTEN", address.as_str())
                .env("BOSUN_HTTP_TOKEN", "0123456789abcdef0123"),
        )
        .node(with_template(&names[1]))
        .node(with_template(&names[2]))
        .start()
    else {
        return;
    };

    // "Create 4 containers based on a template", byte for byte.
    let (code, answer) = curl(
        &address,
        r#"{"action": "create-container", "template": "test", "instances": 4}"#,
    );
    assert_eq!(code, 200, "{answer}");
    let created = answer["containers"].as_array().unwrap().clone();
    assert_eq!(created.len(), 4, "{answer}");
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    for c in &created {
        assert_dockermod_shape(c, 201, None);
        assert_eq!(c["Response"]["Body"]["Warnings"], Value::Null, "{c}");
        let id = c["Response"]["Body"]["Id"].as_str().unwrap();
        let on = docker(&[
            "inspect",
            "-f",
            "{{index .Config.Labels \"org.bosun.node\"}}",
            id,
        ]);
        assert_eq!(on, c["dockerInstance"].as_str().unwrap(), "{c}");
        assert_eq!(
            docker(&["inspect", "-f", "{{index .Config.Labels \"from\"}}", id]),
            "template"
        );
        *per_node.entry(on).or_default() += 1;
    }
    let mut counts: Vec<usize> = per_node.values().copied().collect();
    counts.sort();
    assert_eq!(
        counts,
        vec![1, 1, 2],
        "spread over the three nodes: {per_node:?}"
    );

    // "Create a standard … container": one object, not a list.
    let (code, single) = curl(
        &address,
        &format!(r#"{{"action": "create-container", "image": "{image}"}}"#),
    );
    assert_eq!(code, 200, "{single}");
    assert_dockermod_shape(&single, 201, None);
    let single_id = single["Response"]["Body"]["Id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        docker(&["inspect", "-f", "{{.State.Status}}", &single_id]),
        "created"
    );

    // Start by a short id prefix, from any DockerMod instance.
    let first = created[0]["Response"]["Body"]["Id"]
        .as_str()
        .unwrap()
        .to_string();
    let owner = created[0]["dockerInstance"].as_str().unwrap().to_string();
    let (code, started) = curl(
        &address,
        &format!(
            r#"{{"action": "start-container", "id": "{}"}}"#,
            &first[..7]
        ),
    );
    assert_eq!(code, 200, "{started}");
    assert_dockermod_shape(&started, 204, Some(&owner));
    assert_eq!(
        docker(&["inspect", "-f", "{{.State.Status}}", &first]),
        "running"
    );

    // The cluster-wide list: Docker's keys, each row with its node.
    let (code, list) = curl(&address, r#"{"action": "list-containers", "all": true}"#);
    assert_eq!(code, 200, "{list}");
    assert_dockermod_shape(&list, 200, None);
    let rows = list["Response"]["Body"].as_array().unwrap();
    for c in created.iter().chain([&single]) {
        let id = c["Response"]["Body"]["Id"].as_str().unwrap();
        let row = rows
            .iter()
            .find(|r| r["Id"] == id)
            .unwrap_or_else(|| panic!("{id} in {list}"));
        assert_eq!(row["dockerInstance"], c["dockerInstance"], "{row}");
        for key in [
            "Names", "Image", "Command", "Created", "Ports", "Status", "State", "Labels",
        ] {
            assert!(!row[key].is_null(), "{key} in {row}");
        }
        assert!(
            row["Names"][0].as_str().unwrap().starts_with('/'),
            "Docker's names: {row}"
        );
    }
    let running = rows.iter().find(|r| r["Id"] == first.as_str()).unwrap();
    assert_eq!(running["State"], "running", "{running}");
    assert!(
        running["Status"].as_str().unwrap().starts_with("Up"),
        "{running}"
    );

    // Inspect: Docker's inspect under Response.Body.
    let (code, inspected) = curl(
        &address,
        &format!(r#"{{"action": "inspect-container", "id": "{first}"}}"#),
    );
    assert_eq!(code, 200, "{inspected}");
    assert_dockermod_shape(&inspected, 200, Some(&owner));
    assert_eq!(inspected["Response"]["Body"]["Id"], first.as_str());
    assert_eq!(inspected["Response"]["Body"]["State"]["Running"], true);
    assert_eq!(inspected["Response"]["Body"]["Config"]["Cmd"][0], "sleep");

    // Stop, then restart.
    let (code, stopped) = curl(
        &address,
        &format!(r#"{{"action": "stop-container", "id": "{first}"}}"#),
    );
    assert_eq!(code, 200, "{stopped}");
    assert_dockermod_shape(&stopped, 204, Some(&owner));
    assert_eq!(
        docker(&["inspect", "-f", "{{.State.Status}}", &first]),
        "exited"
    );
    let (code, restarted) = curl(
        &address,
        &format!(r#"{{"action": "restart-container", "id": "{first}"}}"#),
    );
    assert_eq!(code, 200, "{restarted}");
    assert_dockermod_shape(&restarted, 204, Some(&owner));
    assert_eq!(
        docker(&["inspect", "-f", "{{.State.Status}}", &first]),
        "running"
    );

    // Images of the node asked, with Docker's keys.
    let (code, images) = curl(&address, r#"{"action": "list-images"}"#);
    assert_eq!(code, 200, "{images}");
    assert_dockermod_shape(&images, 200, Some(&names[0]));
    assert_eq!(images["Response-Code"], 200);
    let ours = images["Response"]["Body"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| {
            i["RepoTags"]
                .as_array()
                .is_some_and(|t| t.iter().any(|t| t == image.as_str()))
        })
        .unwrap_or_else(|| panic!("{image} in {images}"));
    assert!(
        ours["Id"].as_str().unwrap().starts_with("sha256:"),
        "{ours}"
    );
    assert!(ours["Size"].as_u64().unwrap() > 0, "{ours}");
    assert!(ours["Created"].as_i64().unwrap() > 0, "{ours}");

    // A raw Docker create spec.
    let raw = serde_json::json!({
        "action": "create-raw-container",
        "body": {"Image": image, "Cmd": ["sleep", "300"], "Labels": {"raw": "yes"}},
    });
    let (code, created_raw) = curl(&address, &raw.to_string());
    assert_eq!(code, 200, "{created_raw}");
    assert_dockermod_shape(&created_raw, 201, None);
    let raw_id = created_raw["Response"]["Body"]["Id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        docker(&["inspect", "-f", "{{index .Config.Labels \"raw\"}}", &raw_id]),
        "yes"
    );
    assert_eq!(
        docker(&[
            "inspect",
            "-f",
            "{{index .Config.Labels \"org.bosun.node\"}}",
            &raw_id
        ]),
        created_raw["dockerInstance"].as_str().unwrap(),
        "bosun knows it placed it"
    );
    let (code, refused) = curl(&address, r#"{"action": "create-raw-container"}"#);
    assert_eq!(code, 400, "{refused}");
    assert!(
        refused["error"].as_str().unwrap().contains("body"),
        "{refused}"
    );

    // Delete (forced, as DockerMod did).
    let (code, deleted) = curl(
        &address,
        &format!(r#"{{"action": "delete-container", "id": "{single_id}"}}"#),
    );
    assert_eq!(code, 200, "{deleted}");
    assert_dockermod_shape(&deleted, 204, None);
    let gone = std::process::Command::new("docker")
        .args(["inspect", &single_id])
        .output()
        .unwrap();
    assert!(!gone.status.success(), "deleted");

    // Bad requests are refused with the reason, in DockerMod's shape.
    let (code, bad) = curl(&address, "not json");
    assert_eq!(code, 400, "{bad}");
    assert!(
        bad["error"].as_str().unwrap().contains("DockerMod request"),
        "{bad}"
    );
    assert_eq!(bad["statusCode"], 400);
    let (code, bad) = curl(&address, r#"{"action": "fly"}"#);
    assert_eq!(code, 400, "{bad}");
    assert!(bad["error"].as_str().unwrap().contains("fly"), "{bad}");

    // A node killed -9: the cluster-wide list still answers, within its wait, with the
    // containers of the nodes that are up.
    fleet.node_mut(&names[2]).kill9();
    let asked = Instant::now();
    let (code, list) = curl(&address, r#"{"action": "list-containers", "all": true}"#);
    assert_eq!(code, 200, "{list}");
    assert!(
        asked.elapsed() < Duration::from_secs(30),
        "{:?}",
        asked.elapsed()
    );
    let rows = list["Response"]["Body"].as_array().unwrap();
    for c in &created {
        let on = c["dockerInstance"].as_str().unwrap();
        let id = c["Response"]["Body"]["Id"].as_str().unwrap();
        if on != names[2] {
            let row = rows.iter().find(|r| r["Id"] == id);
            assert_eq!(
                row.map(|r| &r["dockerInstance"]),
                Some(&c["dockerInstance"]),
                "{id} of {on} in {list}"
            );
        }
    }
    // The dead node is named as unanswered, unless central already counts it down.
    let named = list["unanswered"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n == names[2].as_str());
    let down = fleet
        .node(&names[0])
        .fleet_status()
        .iter()
        .any(|(n, s)| *n == names[2] && s == "down");
    assert!(named || down, "{list}");
}
