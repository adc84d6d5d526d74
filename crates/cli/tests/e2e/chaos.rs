//! Fault experiments with leases, against real nodes, a real broker and real containers:
//! a scenario fires kill, pause, partition and loss on two nodes at the planned times;
//! the controller dies with -9 mid-scenario and a target node is restarted mid-lease,
//! and every lease is still undone on time; `abort` undoes everything at once; the
//! report's timeline matches what Docker's own events say happened.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use bosun_testkit::{eventually, json};
use serde_json::Value;

use crate::support::{DockerCleanup, bin, docker, fleet, stderr, stdout, unique};

/// Start `name` on `node` (a bosun-made container, so it belongs to that node).
fn container(fleet: &bosun_testkit::Fleet, node: &str, name: &str, image: &str) {
    let out = fleet.node(node).cli(&[
        "container",
        "run",
        "-n",
        node,
        "--name",
        name,
        image,
        "--",
        "sleep",
        "600",
    ]);
    assert!(
        out.status.success(),
        "container run {name}: {}",
        stderr(&out)
    );
}

/// The lease book of a node: its entries.
fn book(data_dir: &Path) -> Vec<Value> {
    std::fs::read(data_dir.join("chaos").join("book.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
}

fn entry<'a>(book: &'a [Value], action: &str) -> &'a Value {
    book.iter()
        .find(|e| e["event"]["action"]["action"] == action)
        .unwrap_or_else(|| panic!("no {action} in {book:?}"))
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Docker's events for `container` between two times (ms): (time ms, action).
fn docker_events(container: &str, since: u64, until: u64) -> Vec<(u64, String)> {
    let out = docker(&[
        "events",
        "--since",
        &format!("{}.{:03}", since / 1000, since % 1000),
        "--until",
        &format!("{}.{:03}", until / 1000, until % 1000),
        "--filter",
        &format!("container={container}"),
        "--format",
        "{{json .}}",
    ]);
    out.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|e| {
            (
                e["timeNano"].as_u64().unwrap_or(0) / 1_000_000,
                e["Action"].as_str().unwrap_or("").to_string(),
            )
        })
        .filter(|(_, a)| !a.starts_with("exec_"))
        .collect()
}

/// The first time Docker reports `action` for `container` at or after `from`.
fn first(events: &[(u64, String)], action: &str, from: u64) -> u64 {
    events
        .iter()
        .find(|(t, a)| a == action && *t + 50 >= from)
        .unwrap_or_else(|| panic!("no docker {action} after {from} in {events:?}"))
        .0
}

/// The iptables rules bosun put in a container's network namespace.
fn chaos_rules(container: &str) -> usize {
    let pid = docker(&["inspect", "-f", "{{.State.Pid}}", container]);
    let out = Command::new("nsenter")
        .args(["-t", &pid, "-n", "iptables", "-S"])
        .output()
        .unwrap();
    assert!(out.status.success(), "iptables -S: {}", stderr(&out));
    stdout(&out)
        .lines()
        .filter(|l| l.contains("bosun-chaos:"))
        .count()
}

/// The qdiscs of a container's interfaces.
fn qdisc(container: &str) -> String {
    let pid = docker(&["inspect", "-f", "{{.State.Pid}}", container]);
    let out = Command::new("nsenter")
        .args(["-t", &pid, "-n", "tc", "qdisc", "show"])
        .output()
        .unwrap();
    assert!(out.status.success(), "tc qdisc show: {}", stderr(&out));
    stdout(&out)
}

fn ip_of(container: &str) -> String {
    docker(&[
        "inspect",
        "-f",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        container,
    ])
}

/// True when `from` gets an answer from `address` (a refused connection is an answer;
/// a partition leaves none within the second `nc` waits).
fn can_reach(from: &str, address: &str) -> bool {
    Command::new("docker")
        .args([
            "exec",
            from,
            "sh",
            "-c",
            &format!("nc -w 1 {address} 9 </dev/null"),
        ])
        .output()
        .map(|o| stderr(&o).contains("refused"))
        .unwrap_or(false)
}

#[test]
fn faults_fire_on_time_on_two_nodes_and_every_lease_ends_through_crashes() {
    let Some(image) = bosun_testkit::docker_test_image() else {
        return;
    };
    let [ctl, w1, w2] = [unique("chc"), unique("chw1"), unique("chw2")];
    let [a1, a2, b1, b2] = [
        unique("cha1-"),
        unique("cha2-"),
        unique("chb1-"),
        unique("chb2-"),
    ];
    let _cleanup = DockerCleanup {
        names: vec![],
        nodes: vec![ctl.clone(), w1.clone(), w2.clone()],
    };
    let Some(mut fleet) = fleet().central(&ctl).nodes(&[&ctl, &w1, &w2]).start() else {
        return;
    };
    // The controller (central) plans from its view of the fleet.
    eventually(
        Duration::from_secs(30),
        "the controller hears everyone",
        || (fleet.node(&ctl).fleet_status().len() == 3).then_some(()),
    );
    container(&fleet, &w1, &a1, &image);
    container(&fleet, &w1, &a2, &image);
    container(&fleet, &w2, &b1, &image);
    container(&fleet, &w2, &b2, &image);
    let b2_ip = ip_of(&b2);
    assert!(can_reach(&a2, &b2_ip), "containers reach each other before");

    let scenario = format!(
        r#"name: two-nodes
seed: 11
duration: 12s
events:
  - at: 1s
    action: mark
    text: phase one
  - at: 2s
    action: pause
    target: {{nodes: [{w1}], container: {a1}}}
    lease: 6s
  - at: 2s
    action: kill
    signal: SIGKILL
    target: {{nodes: [{w2}], container: "{b1_prefix}*"}}
    lease: 7s
  - at: 3s
    action: partition
    target: {{nodes: [{w1}], container: {a2}}}
    lease: 5s
  - at: 3s
    action: loss
    percent: 50
    target: {{nodes: [{w2}], container: {b2}}}
    lease: 4s
"#,
        b1_prefix = &b1[..b1.len() - 2]
    );
    let file = fleet.dir().join("scenario.yaml");
    std::fs::write(&file, &scenario).unwrap();
    let file = file.to_str().unwrap();

    // The dry run shows the exact timeline, the same each time, and sends nothing.
    let plan = |seed: &str| {
        let out = fleet
            .node(&ctl)
            .cli(&["chaos", "run", file, "--plan", "--json", "--seed", seed]);
        assert!(out.status.success(), "plan: {}", stderr(&out));
        let mut plan = json(&out);
        plan["experiment"] = Value::Null;
        plan
    };
    let dry = plan("11");
    assert_eq!(dry, plan("11"), "the same seed gives the same plan");
    let events = dry["events"].as_array().unwrap();
    assert_eq!(events.len(), 3 + 4, "a mark per node, and the four faults");
    let kill = events
        .iter()
        .find(|e| e["action"]["action"] == "kill")
        .unwrap();
    assert_eq!(kill["node"], w2.as_str());
    assert_eq!(kill["target"]["name"], b1.as_str());
    assert!(
        book(&fleet.data_dir(&w1)).is_empty(),
        "a dry run sends nothing"
    );

    // The controller: `chaos run --follow` on the central node.
    let mut controller = Command::new(bin())
        .arg("--data-dir")
        .arg(fleet.data_dir(&ctl))
        .args(["chaos", "run", file, "--follow", "--start-in", "2"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (w1_dir, w2_dir) = (fleet.data_dir(&w1), fleet.data_dir(&w2));
    eventually(
        Duration::from_secs(20),
        "both nodes keep their events",
        || (book(&w1_dir).len() == 3 && book(&w2_dir).len() == 3).then_some(()),
    );
    // Kill the controller and its node with -9 before anything fires.
    let start = entry(&book(&w1_dir), "mark")["at"].as_u64().unwrap() - 1000;
    assert!(now_ms() < start + 2000, "killed before the first fault");
    controller.kill().unwrap();
    controller.wait().unwrap();
    fleet.node_mut(&ctl).kill9();

    // w1's pause is applied at its time; then w1 dies with -9 mid-lease.
    eventually(Duration::from_secs(10), "a1 paused", || {
        (docker(&["inspect", "-f", "{{.State.Paused}}", &a1]) == "true").then_some(())
    });
    eventually(Duration::from_secs(10), "a2 partitioned", || {
        (chaos_rules(&a2) == 2).then_some(())
    });
    assert!(!can_reach(&a2, &b2_ip), "the partition cuts a2 off");
    fleet.node_mut(&w1).kill9();
    fleet.node_mut(&w1).restart();

    // Every lease ends on time, whoever is left: a1 unpaused at t+8, b1 back at t+9, a2's
    // rules gone at t+8, b2's at t+7.
    eventually(Duration::from_secs(20), "a1 unpaused", || {
        (docker(&["inspect", "-f", "{{.State.Paused}}", &a1]) == "false").then_some(())
    });
    eventually(Duration::from_secs(20), "b1 running again", || {
        (docker(&["inspect", "-f", "{{.State.Running}}", &b1]) == "true" && now_ms() > start + 9000)
            .then_some(())
    });
    eventually(Duration::from_secs(20), "a2's rules gone", || {
        (chaos_rules(&a2) == 0).then_some(())
    });
    assert_eq!(chaos_rules(&b2), 0, "b2's loss rule is gone");
    assert!(can_reach(&a2, &b2_ip), "a2 reaches b2 again");

    // What Docker saw, against the plan: faults within 500 ms of their time, every undo
    // within 1 s of its lease end.
    let late = |actual: u64, planned: u64| actual as i64 - planned as i64;
    let a1_events = docker_events(&a1, start, now_ms());
    let paused = first(&a1_events, "pause", start + 2000);
    let unpaused = first(&a1_events, "unpause", start + 2000);
    assert!(
        late(paused, start + 2000).abs() < 500,
        "pause at {}",
        late(paused, start + 2000)
    );
    let unpause_late = late(unpaused, start + 8000);
    assert!(
        (0..1000).contains(&unpause_late),
        "unpause {unpause_late} ms after the lease end"
    );
    let b1_events = docker_events(&b1, start, now_ms());
    let killed = first(&b1_events, "kill", start + 2000);
    let restarted = first(&b1_events, "start", start + 2000);
    // bosun fires the kill on time (its own record of when it began); Docker's event
    // follows once Docker has done its part, which took past 500 ms once with the whole
    // suite sharing 2 cores.
    let w2_book = book(&w2_dir);
    let kill = entry(&w2_book, "kill");
    let fired = kill["firedAt"].as_u64().unwrap_or_else(|| panic!("{kill}"));
    assert!(
        late(fired, kill["at"].as_u64().unwrap()).abs() < 500,
        "kill fired at {} ms from its time: {kill}",
        late(fired, kill["at"].as_u64().unwrap())
    );
    // Docker's own part (an inspect, then the kill) took from under 0.5 s to 1.9 s
    // with the whole suite sharing 2 cores, so its event is held to bosun's record, not
    // to the plan: it happened after bosun fired the kill and before bosun recorded the
    // kill applied (50 ms for the two clocks' rounding).
    let applied = kill["appliedAt"]
        .as_u64()
        .unwrap_or_else(|| panic!("{kill}"));
    assert!(
        killed + 50 >= fired && killed <= applied + 50,
        "Docker's kill at {} ms from its time, outside bosun's firing ({} ms) to applied ({} ms): {kill}",
        late(killed, start + 2000),
        late(fired, start + 2000),
        late(applied, start + 2000)
    );
    // A restart's event comes when Docker has started the container again, its own work
    // included: about 0.3 s on an idle machine, and past 1.1 s was seen with the whole
    // suite sharing 2 cores. bosun's own promptness is what the unpause above holds to
    // 1 s; here the bound leaves room for Docker.
    let restart_late = late(restarted, start + 9000);
    assert!(
        (0..2000).contains(&restart_late),
        "restart {restart_late} ms after the lease end"
    );

    // The event stream holds the faults and the mark on the node's own timeline.
    let stream = std::fs::read_to_string(w2_dir.join("capture").join("default.log")).unwrap();
    assert!(
        stream.contains("MARK") && stream.contains("phase one"),
        "{stream}"
    );
    assert!(
        stream.contains("chaos apply") && stream.contains("action=kill"),
        "{stream}"
    );
    assert!(
        stream.contains("chaos undo") && stream.contains("action=loss"),
        "{stream}"
    );

    // The report from the restarted controller node: every fault undone, and its
    // container timeline is Docker's.
    fleet.node_mut(&ctl).restart();
    let experiment = entry(&book(&w1_dir), "pause")["experiment"]
        .as_str()
        .unwrap()
        .to_string();
    let reports = fleet.dir().join("reports");
    let report = eventually(Duration::from_secs(60), "a report from both nodes", || {
        let out = fleet.node(&ctl).cli(&[
            "chaos",
            "report",
            &experiment,
            "--json",
            "--out",
            reports.to_str().unwrap(),
        ]);
        let report = json(&out);
        (report["nodes"].as_array().map(Vec::len) == Some(3)).then_some(report)
    });
    let states = &report["figures"]["states"];
    assert_eq!(states["undone"], 4, "{states}");
    assert_eq!(states["done"], 2, "the marks of w1 and w2: {states}");
    assert!(report["figures"]["undoLateMaxMs"].as_u64().unwrap() < 1000);
    let listed: Vec<(u64, String)> = report["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|n| n["containerEvents"].as_array().cloned().unwrap_or_default())
        .filter(|e| e["container"] == a1.as_str())
        .map(|e| {
            (
                e["at"].as_u64().unwrap(),
                e["action"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for action in ["pause", "unpause"] {
        let reported = first(&listed, action, start);
        let seen = first(&a1_events, action, start);
        assert!(
            late(reported, seen).abs() <= 1,
            "{action}: report {reported}, docker {seen}"
        );
    }
    let svg = std::fs::read_to_string(reports.join(format!("{experiment}.svg"))).unwrap();
    assert!(
        svg.starts_with("<svg") && svg.contains(&a1),
        "an SVG chart naming a1"
    );
    // The central node was down at the mark's time: its mark is missed, not fired late.
    let ctl_entries = report["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["node"] == ctl.as_str())
        .unwrap()["entries"]
        .clone();
    assert_eq!(ctl_entries[0]["state"], "missed", "{ctl_entries}");
}

#[test]
fn abort_undoes_every_fault_at_once_and_delay_is_refused_without_netem() {
    let Some(image) = bosun_testkit::docker_test_image() else {
        return;
    };
    let node = unique("chab");
    let [c1, c2] = [unique("chab1-"), unique("chab2-")];
    let _cleanup = DockerCleanup {
        names: vec![],
        nodes: vec![node.clone()],
    };
    let Some(fleet) = fleet().central(&node).nodes(&[&node]).start() else {
        return;
    };
    eventually(Duration::from_secs(30), "the node hears itself", || {
        (fleet.node(&node).fleet_status().len() == 1).then_some(())
    });
    container(&fleet, &node, &c1, &image);
    container(&fleet, &node, &c2, &image);
    let write = |name: &str, text: &str| {
        let path = fleet.dir().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    };
    let long = write(
        "long.yaml",
        &format!(
            "duration: 10m\nevents:\n  - at: 0s\n    action: pause\n    target: {{container: {c1}}}\n  - at: 0s\n    action: partition\n    target: {{container: {c2}}}\n  - at: 0s\n    action: cpu\n    workers: 1\n    target: {{container: {c2}}}\n  - at: 0s\n    action: bandwidth\n    rate: 1mbit\n    target: {{container: {c1}}}\n  - at: 5m\n    action: kill\n    target: {{container: {c2}}}\n"
        ),
    );
    let out = fleet
        .node(&node)
        .cli(&["chaos", "run", &long, "--start-in", "1"]);
    assert!(out.status.success(), "run: {}", stderr(&out));
    let data = fleet.data_dir(&node);
    eventually(Duration::from_secs(10), "four faults in place", || {
        let book = book(&data);
        (book.iter().filter(|e| e["state"] == "applied").count() == 4).then_some(())
    });
    assert!(qdisc(&c1).contains("qdisc tbf b05:"), "{}", qdisc(&c1));
    assert_eq!(docker(&["inspect", "-f", "{{.State.Paused}}", &c1]), "true");
    assert_eq!(chaos_rules(&c2), 2);
    let stress = docker(&["top", &c2]);
    assert!(
        stress.contains("bosun-chaos"),
        "the cpu stress runs in c2: {stress}"
    );
    let experiment = entry(&book(&data), "pause")["experiment"]
        .as_str()
        .unwrap()
        .to_string();

    let out = fleet.node(&node).cli(&["chaos", "abort", &experiment]);
    assert!(out.status.success(), "abort: {}", stderr(&out));
    assert!(
        stdout(&out).contains("4 fault(s) undone, 1 pending event(s) dropped"),
        "{}",
        stdout(&out)
    );
    // Undone by the time abort answers.
    assert_eq!(
        docker(&["inspect", "-f", "{{.State.Paused}}", &c1]),
        "false"
    );
    assert_eq!(chaos_rules(&c2), 0);
    assert!(
        !docker(&["top", &c2]).contains("bosun-chaos"),
        "the stress is gone"
    );
    let book = book(&data);
    assert_eq!(entry(&book, "kill")["state"], "aborted");
    assert!(
        book.iter()
            .filter(|e| e["state"] == "undone")
            .all(|e| e["undoneAt"].as_u64() < e["leaseEnd"].as_u64())
    );

    let out = fleet.node(&node).cli(&["chaos", "status", &experiment]);
    assert!(out.status.success(), "status: {}", stderr(&out));
    assert!(stdout(&out).contains("aborted"), "{}", stdout(&out));
    // Aborting again changes nothing and says so, here as JSON: the same counts, every
    // entry undone or aborted.
    let out = fleet
        .node(&node)
        .cli(&["chaos", "abort", &experiment, "--json"]);
    assert!(out.status.success(), "abort: {}", stderr(&out));
    let rows = json(&out);
    assert_eq!(rows.as_array().unwrap().len(), 1, "{rows}");
    assert_eq!(rows[0]["node"], node.as_str());
    assert_eq!(rows[0]["undone"], 4, "{rows}");
    assert_eq!(rows[0]["dropped"], 1, "{rows}");
    assert!(
        rows[0]["entries"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["state"] == "undone" || e["state"] == "aborted"),
        "{rows}"
    );

    // No netem in this kernel: a delay is refused with the reason, and nothing is kept.
    let delay = write(
        "delay.yaml",
        &format!(
            "duration: 30s\nevents:\n  - at: 1s\n    action: delay\n    ms: 100\n    target: {{container: {c1}}}\n"
        ),
    );
    let has_netem = Command::new("unshare")
        .args([
            "--net", "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms",
        ])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    let out = fleet.node(&node).cli(&["chaos", "run", &delay]);
    if has_netem {
        assert!(out.status.success(), "{}", stderr(&out));
    } else {
        assert!(!out.status.success());
        assert!(stderr(&out).contains("netem"), "{}", stderr(&out));
    }
}
