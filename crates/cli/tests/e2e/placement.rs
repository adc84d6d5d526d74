//! Placement as the systems bosun replaces did it: any node takes a DockerMod,
//! quartermaster or `bosun container run --instances` request and places it over the
//! live fleet (every node keeps a view of the fleet from announced hellos); back-to-back
//! requests spread deterministically (least-loaded, ties by name); DockerMod's
//! `unregister` drains a node durably and `register` returns it.

use std::collections::BTreeMap;
use std::time::Duration;

use bosun_testkit::{NodeSpec, eventually, json};
use serde_json::Value;

use crate::support::{DockerCleanup, docker, fleet, http, stderr, stdout, unique};

const TOKEN: &str = "0123456789abcdef0123";

/// The node each container of a DockerMod or quartermaster answer runs on, by label.
fn owner(id: &str) -> String {
    docker(&[
        "inspect",
        "-f",
        "{{index .Config.Labels \"org.bosun.node\"}}",
        id,
    ])
}

/// bosun's placed containers per node, as Docker has them.
fn placed_on(nodes: &[String]) -> BTreeMap<String, usize> {
    nodes
        .iter()
        .map(|n| {
            let ids = docker(&[
                "ps",
                "-aq",
                "--filter",
                &format!("label=org.bosun.node={n}"),
            ]);
            (n.clone(), ids.split_whitespace().count())
        })
        .collect()
}

/// Wait until `node`'s view of the fleet counts `want` placed containers in all.
fn wait_counted(fleet: &bosun_testkit::Fleet, node: &str, want: u64) {
    eventually(
        Duration::from_secs(30),
        &format!("{node} counts {want} placed containers"),
        || {
            let rows = json(&fleet.node(node).cli(&["nodes", "--json"]));
            let sum: u64 = rows
                .as_array()?
                .iter()
                .map(|r| r["inventory"]["placedContainers"].as_u64().unwrap_or(0))
                .sum();
            (sum == want).then_some(())
        },
    );
}

/// A quartermaster `/run` at `address`: the container id.
fn qm_run(address: &str, image: &str) -> String {
    let body = serde_json::json!({"token": TOKEN, "command": "sleep 300", "image": image});
    let (code, answer) = http("POST", address, "/run", None, &body.to_string());
    assert_eq!(code, 200, "{answer}");
    let answer: Value = serde_json::from_str(&answer).unwrap();
    answer["id"].as_str().unwrap().to_string()
}

/// `curl -X POST --data BODY ADDRESS` with the token: the HTTP status and the answer.
fn curl(address: &str, body: &str) -> (u16, String) {
    let out = std::process::Command::new("curl")
        .args(["-s", "-X", "POST", "-H"])
        .arg(format!("Authorization: Bearer {TOKEN}"))
        .args(["--data", body, "-w", "\n%{http_code}", address])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (answer, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), answer.to_string())
}

#[test]
fn any_node_places_over_the_fleet_spreads_evenly_and_honours_unregister() {
    let Some(image) = bosun_testkit::docker_test_image() else {
        return;
    };
    let names = [unique("plc"), unique("plw1"), unique("plw2")];
    let [central, w1, w2] = names.clone();
    let _cleanup = DockerCleanup {
        names: vec![],
        nodes: names.to_vec(),
    };
    let addresses: Vec<String> = names
        .iter()
        .map(|_| format!("127.0.0.1:{}", bosun_testkit::free_port()))
        .collect();
    let spec = |i: usize, role: &str| {
        NodeSpec::new(&names[i])
            .env("BOSUN_HTTP_LISTEN", addresses[i].as_str())
            .env("BOSUN_HTTP_TOKEN", TOKEN)
            .env("BOSUN_LABELS", format!("role={role}"))
    };
    let Some(mut fleet) = fleet()
        .central(&central)
        .node(spec(0, "manager"))
        .node(spec(1, "worker"))
        .node(spec(2, "worker"))
        .start()
    else {
        return;
    };

    // Every node hears every node: the request can go to any of them.
    for name in &names {
        eventually(
            Duration::from_secs(30),
            &format!("{name} sees the fleet"),
            || (fleet.node(name).fleet_status().len() == 3).then_some(()),
        );
    }
    // DockerMod's create-container with instances, sent to each node in turn.
    let mut total = 0;
    for (i, name) in names.iter().enumerate() {
        let body =
            serde_json::json!({"action": "create-container", "image": image, "instances": 2})
                .to_string();
        let (code, answer) = http("POST", &addresses[i], "/", Some(TOKEN), &body);
        assert_eq!(code, 200, "sent to {name}: {answer}");
        let answer: Value = serde_json::from_str(&answer).unwrap();
        let created = answer["containers"].as_array().unwrap();
        assert_eq!(created.len(), 2, "{answer}");
        for c in created {
            assert_eq!(c["statusCode"], 201, "{c}");
            let id = c["Response"]["Body"]["Id"].as_str().unwrap();
            assert_eq!(owner(id), c["dockerInstance"].as_str().unwrap());
        }
        total += 2;
        // The next node places knowing these, once their nodes' hellos count them.
        for n in &names {
            wait_counted(&fleet, n, total);
        }
    }
    assert_eq!(
        placed_on(&names).values().copied().collect::<Vec<_>>(),
        vec![2, 2, 2],
        "six containers from three nodes' requests, least-loaded first"
    );
    // A cluster-wide list answers the same from any node.
    for (i, name) in names.iter().enumerate() {
        let (code, list) = http(
            "POST",
            &addresses[i],
            "/",
            Some(TOKEN),
            r#"{"action": "list-containers", "all": true}"#,
        );
        assert_eq!(code, 200, "{list}");
        let list: Value = serde_json::from_str(&list).unwrap();
        let rows = list["Response"]["Body"].as_array().unwrap();
        let ours = rows
            .iter()
            .filter(|r| {
                names
                    .iter()
                    .any(|n| r["Labels"]["org.bosun.node"] == n.as_str())
            })
            .count();
        assert_eq!(ours, 6, "listed from {name}: {list}");
    }

    // Four back-to-back quartermaster /run calls: 2/2 over the two workers, even
    // though no hello tells of the first ones before the last.
    let before = placed_on(&names);
    let mut got: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..4 {
        *got.entry(owner(&qm_run(&addresses[0], &image)))
            .or_default() += 1;
    }
    assert_eq!(
        got,
        BTreeMap::from([(w1.clone(), 2), (w2.clone(), 2)]),
        "{before:?}"
    );
    wait_counted(&fleet, &central, 10);

    // DockerMod's unregister, byte for byte: w2 takes nothing new, and says so.
    let (code, answer) = curl(
        &addresses[1],
        &format!(r#"{{"action": "unregister", "hostname": "{w2}"}}"#),
    );
    assert_eq!(code, 204, "{answer}");
    assert_eq!(answer, "", "no response, as DockerMod");
    let drained = |node: &str| {
        let table = stdout(&fleet.node(node).cli(&["nodes"]));
        table
            .lines()
            .any(|l| l.starts_with(w2.as_str()) && l.contains("drained"))
    };
    eventually(Duration::from_secs(30), "central shows w2 drained", || {
        drained(&central).then_some(())
    });
    for _ in 0..2 {
        assert_eq!(owner(&qm_run(&addresses[0], &image)), w1, "w2 is drained");
    }
    // The drain outlasts restarts of the node and of central.
    fleet.node_mut(&w2).terminate();
    fleet.node_mut(&w2).restart();
    fleet.node_mut(&central).terminate();
    fleet.node_mut(&central).restart();
    eventually(
        Duration::from_secs(30),
        "still drained after restarts",
        || {
            let rows = json(&fleet.node(&central).cli(&["nodes", "--json"]));
            rows.as_array()?
                .iter()
                .any(|r| r["name"] == w2.as_str() && r["drained"] == true && r["status"] == "alive")
                .then_some(())
        },
    );
    assert_eq!(owner(&qm_run(&addresses[0], &image)), w1, "still drained");
    // An unknown node is refused, not queued.
    let (code, answer) = curl(
        &addresses[0],
        r#"{"action": "unregister", "hostname": "sthmaclt009.local"}"#,
    );
    assert_eq!(code, 404, "{answer}");
    assert!(answer.contains("sthmaclt009.local"), "{answer}");

    let out = fleet
        .node(&central)
        .cli(&["nodes", "--undrain", "sthmaclt009.local"]);
    assert!(!out.status.success(), "an unknown node is refused");
    assert!(
        stderr(&out).contains("sthmaclt009.local"),
        "{}",
        stderr(&out)
    );

    // register returns it; the least-loaded worker is now w2, at once: the node that
    // asked knows before w2's next hello tells it.
    let out = fleet.node(&central).cli(&["nodes", "--undrain", &w2]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("takes placed work again"),
        "{}",
        stdout(&out)
    );
    let rows = json(&fleet.node(&central).cli(&["nodes", "--json"]));
    assert!(
        rows.as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == w2.as_str() && r["drained"] != true),
        "{rows}"
    );
    assert_eq!(
        owner(&qm_run(&addresses[0], &image)),
        w2,
        "w2 is back and least loaded"
    );

    // A worker killed -9 gets nothing once it is down.
    fleet.node_mut(&w1).kill9();
    eventually(Duration::from_secs(30), "w1 down", || {
        fleet
            .node(&central)
            .fleet_status()
            .iter()
            .any(|(n, s)| *n == w1 && s == "down")
            .then_some(())
    });
    for _ in 0..2 {
        assert_eq!(owner(&qm_run(&addresses[0], &image)), w2, "w1 is down");
    }
}

/// A hello frame as a node announces it: `from` names the sender.
fn announced_hello(from: &str, inventory: Value) -> Vec<u8> {
    let body = serde_json::json!({"intervalSecs": 1, "inventory": inventory, "at": 0});
    let message = bosun_proto::Message {
        id: Some(bosun_proto::new_id()),
        to_node: Some("central".into()),
        from_node: Some(from.to_string()),
        method: "hello".into(),
        data: vec![body.to_string()],
        created_at: Some(1),
        ..Default::default()
    };
    bosun_proto::wire::encode(&bosun_proto::wire::Request {
        v: bosun_proto::wire::WIRE_VERSION,
        msg: message,
    })
}

#[test]
fn announced_hellos_count_only_from_the_node_they_name() {
    let Some(fleet) = fleet()
        .central("central")
        .nodes(&["central", "ship1"])
        .start()
    else {
        return;
    };
    let subject = bosun_proto::wire::fleet_subject("bosun");
    let url = fleet.nats().url();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        use bosun_bus::Transport;
        // A fleet member (a valid identity, named mallory) announces hellos naming
        // another node, a made-up one, and itself; and a bare client sends garbage.
        let mallory = bosun_testkit::trust::signed_client(&url, "mallory", &["*"]).await;
        let forged = serde_json::json!({"labels": {"role": "forged"}, "drained": true});
        for from in ["ship1", "ghost"] {
            mallory
                .publish(
                    subject.clone(),
                    announced_hello(from, forged.clone()).into(),
                )
                .await
                .unwrap();
        }
        mallory
            .publish(
                subject.clone(),
                announced_hello("mallory", serde_json::json!({"labels": {"role": "self"}})).into(),
            )
            .await
            .unwrap();
        let (mut raw, _) = bosun_testkit::RawNats::connect(&url, None);
        raw.publish(&subject, &announced_hello("ghost2", forged.clone()));
        raw.publish(&subject, b"\x00\xffnot a frame at all");
    });
    // Mallory's own hello counts (it is a fleet member) ...
    let central = fleet.node("central");
    eventually(
        Duration::from_secs(20),
        "mallory's own hello is heard",
        || {
            central
                .fleet_status()
                .iter()
                .any(|(n, _)| n == "mallory")
                .then_some(())
        },
    );
    // ... but nothing it said of others, and nothing unsigned.
    let rows = json(&central.cli(&["nodes", "--json"]));
    let names: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert!(
        !names.contains(&"ghost") && !names.contains(&"ghost2"),
        "{rows}"
    );
    let ship1 = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "ship1")
        .unwrap();
    assert_ne!(ship1["inventory"]["labels"]["role"], "forged", "{ship1}");
    assert_ne!(ship1["drained"], true, "{ship1}");
    // Both nodes are still up and working.
    let out = central.cli(&["exec", "-n", "ship1", "--", "echo", "still here"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("still here"));
    let log = std::fs::read_to_string(fleet.node("central").log_path()).unwrap();
    assert!(
        log.contains("names another node than its signer"),
        "the forgery is logged"
    );
}
