//! bosun on a NATS cluster with an edge site, each server and node a host of its own
//! (network namespaces, `bosun_testkit::Rig`): three servers joined by routes, and a
//! leaf-node server for an edge site whose nodes reach only their leaf. Nothing in bosun
//! knows about the topology; the nodes are given the servers' URLs and that is all.
//!
//! Faults: the cluster server that central is connected to is killed with -9, and the
//! edge site's link to the cluster is partitioned (packets dropped silently) and healed.

use std::time::Duration;

use bosun_testkit::{Fleet, NatsCluster, NodeSpec, Rig, eventually, holds_for, monitor};

use crate::support::{bin, exec_no_wait, lines, stderr, wait_state};

/// How long the edge site stays cut off: past the servers' dead-link detection (3 s),
/// the senders' ACK timeouts (5 s) and several resends.
const PARTITION: Duration = Duration::from_secs(20);

fn status_of(fleet: &Fleet, name: &str) -> String {
    fleet
        .node("hq")
        .fleet_status()
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, status)| status)
        .unwrap_or_default()
}

#[test]
fn a_fleet_on_a_cluster_and_an_edge_leaf_delivers_through_a_server_crash_and_a_site_partition() {
    let Some(mut rig) = Rig::new() else {
        return;
    };
    let servers: Vec<_> = ["s1", "s2", "s3"].iter().map(|n| rig.host(n)).collect();
    let edge = rig.host("edge");
    let hq = rig.host("hq");
    let c1 = rig.host("c1");
    let e1 = rig.host("e1");
    let e2 = rig.host("e2");
    let Some(mut cluster) = NatsCluster::start(&servers.iter().collect::<Vec<_>>()) else {
        return;
    };
    let leaf = cluster.leaf(&edge).expect("the leaf server");
    let urls = cluster.urls();
    let fast = |spec: NodeSpec| spec.env("BOSUN_RECONNECT_MAX_MS", "300");
    let fleet = Fleet::builder(bin())
        .without_broker()
        .central("hq")
        .node(fast(NodeSpec::new("hq").host(&hq).broker(&urls)))
        .node(fast(NodeSpec::new("c1").host(&c1).broker(&urls)))
        .node(fast(NodeSpec::new("e1").host(&e1).broker(leaf.url())))
        .node(fast(NodeSpec::new("e2").host(&e2).broker(leaf.url())))
        .start()
        .expect("the fleet");

    // Every node answers central, whichever server or leaf it reached.
    let out = fleet
        .node("hq")
        .cli(&["exec", "-n", "c1,e1,e2", "--json", "--", "echo", "hi"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let results = bosun_testkit::json(&out);
    assert_eq!(results.as_array().map(Vec::len), Some(3), "{results}");

    // Kill -9 the server central is connected to; commands sent at once still arrive.
    let hq_server = eventually(
        Duration::from_secs(10),
        "a cluster server lists central's connection",
        || {
            cluster.hosts().into_iter().find_map(|host| {
                let connz = monitor(host, "connz")?;
                let connections = connz["connections"].as_array()?;
                connections
                    .iter()
                    .any(|c| c["name"] == "hq")
                    .then(|| host.name.clone())
            })
        },
    );
    cluster.server_mut(&hq_server).kill9();
    let order = fleet.dir().join("c1-order.txt");
    let ids: Vec<String> = (1..=5)
        .map(|n| {
            let line = format!("echo {n} >> {}", order.display());
            exec_no_wait(fleet.node("hq"), "c1", &["sh", "-c", &line])
        })
        .collect();
    for id in &ids {
        wait_state(fleet.node("hq"), id, "done");
    }
    assert_eq!(
        lines(&order),
        ["1", "2", "3", "4", "5"],
        "once each, in order"
    );
    let now_on = eventually(
        Duration::from_secs(10),
        "central is connected to another server",
        || {
            cluster.hosts().into_iter().find_map(|host| {
                let connz = monitor(host, "connz")?;
                connz["connections"]
                    .as_array()?
                    .iter()
                    .any(|c| c["name"] == "hq")
                    .then(|| host.name.clone())
            })
        },
    );
    assert_ne!(now_on, hq_server);
    cluster.server_mut(&hq_server).restart();
    cluster.wait_routes();

    // Cut the edge site off from the whole cluster.
    for server in &servers {
        rig.partition(&edge, server);
    }
    let cut = std::time::Instant::now();
    let site = fleet.dir().join("e1-order.txt");
    let ids: Vec<String> = (1..=5)
        .map(|n| {
            let line = format!("echo {n} >> {}", site.display());
            exec_no_wait(fleet.node("hq"), "e1", &["sh", "-c", &line])
        })
        .collect();
    // Inside the site, work goes on through the leaf.
    let out = fleet.node("e2").cli(&["exec", "-n", "e1", "--", "true"]);
    assert!(
        out.status.success(),
        "e2 → e1 during the partition: {}",
        stderr(&out)
    );
    eventually(
        Duration::from_secs(15),
        "central stops hearing from the edge site",
        || (status_of(&fleet, "e1") != "alive").then_some(()),
    );
    holds_for(
        PARTITION.saturating_sub(cut.elapsed()),
        "nothing from central reaches the site while it is cut off",
        || !site.exists(),
    );
    for server in &servers {
        rig.heal(&edge, server);
    }
    assert!(
        !rig.rules_in(&edge).contains("DROP"),
        "healed: {}",
        rig.rules_in(&edge)
    );
    for id in &ids {
        let report = wait_state(fleet.node("hq"), id, "done");
        assert_eq!(report["sent"]["outcome"]["exitCode"], 0, "{report}");
    }
    assert_eq!(
        lines(&site),
        ["1", "2", "3", "4", "5"],
        "once each, in order"
    );
    fleet.wait_listed(&["e1".to_string(), "e2".to_string()]);

    // Clean-up leaves nothing: the rig's namespaces go with it.
    let prefix = rig.prefix().to_string();
    assert!(!rig.namespaces().is_empty());
    drop(fleet);
    drop(leaf);
    drop(cluster);
    drop(rig);
    let left: Vec<String> = std::fs::read_dir("/run/netns")
        .map(|dir| {
            dir.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(&prefix))
                .collect()
        })
        .unwrap_or_default();
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
}
