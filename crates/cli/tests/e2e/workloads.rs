//! Supervised workloads on real nodes: added from another node, restarted with backoff
//! until FATAL and escalated, seen by central (in hellos, `workload ls --all` and its
//! error log), brought back once and only once after a kill -9 of their node, and
//! stopped for a lease by a fault experiment.

use std::time::Duration;

use bosun_testkit::{NodeSpec, eventually, json};
use serde_json::Value;

use crate::support::{fleet, stderr, stdout, unique};

/// Processes whose command line holds `marker`.
fn running_with(marker: &str) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .filter(|c| String::from_utf8_lossy(c).contains(marker))
        .count()
}

fn workload<'a>(rows: &'a Value, node: &str, name: &str) -> Option<&'a Value> {
    rows.as_array()?
        .iter()
        .find(|w| w["node"] == node && w["name"] == name)
}

#[test]
fn workloads_restart_until_fatal_escalate_reach_central_and_survive_a_kill9() {
    let [central, ship] = [unique("wlc"), unique("wls")];
    // The ship also supervises a workload from its config (`workloads_file`).
    let config_defs = std::env::temp_dir().join(format!("{ship}-workloads.yaml"));
    std::fs::write(
        &config_defs,
        "- {name: fromconfig, command: [sleep, '1000']}\n",
    )
    .unwrap();
    let Some(mut fleet) = fleet()
        .central(&central)
        .node(NodeSpec::new(&central))
        .node(NodeSpec::new(&ship).env("BOSUN_WORKLOADS_FILE", config_defs.to_str().unwrap()))
        .start()
    else {
        return;
    };
    eventually(Duration::from_secs(30), "central hears the ship", || {
        (fleet.node(&central).fleet_status().len() == 2).then_some(())
    });
    let marker = unique("bosun-wl-marker-");
    let cleaned = fleet.dir().join("cleaned");
    let defs = fleet.dir().join("workloads.yaml");
    std::fs::write(
        &defs,
        format!(
            r#"workloads:
  - name: steady
    command: [sh, -c, "sleep 1000; : {marker}"]
    restart: always
  - name: crashy
    command: [sh, -c, "exit 7"]
    backoff: {{initialMs: 100, factor: 2}}
    limit: {{restarts: 2, withinSecs: 60}}
    escalation:
      stop: [steady]
      cleanup: [sh, -c, "echo cleaned > {cleaned}"]
"#,
            cleaned = cleaned.display()
        ),
    )
    .unwrap();
    let out = fleet
        .node(&central)
        .cli(&["workload", "add", defs.to_str().unwrap(), "-n", &ship]);
    assert!(out.status.success(), "add: {}", stderr(&out));
    assert!(
        stdout(&out).contains("steady RUNNING") || stdout(&out).contains("steady Running"),
        "{}",
        stdout(&out)
    );

    // crashy: three starts (0.1 s and 0.2 s apart), then FATAL; its escalation stops
    // steady and runs the cleanup.
    let rows = eventually(
        Duration::from_secs(30),
        "crashy FATAL, seen from central",
        || {
            let rows = json(
                &fleet
                    .node(&central)
                    .cli(&["workload", "ls", "--all", "--json"]),
            );
            // FATAL comes first, then the escalation stops steady.
            (workload(&rows, &ship, "crashy")?["state"] == "FATAL"
                && workload(&rows, &ship, "steady")?["state"] == "STOPPED")
                .then_some(rows)
        },
    );
    let crashy = workload(&rows, &ship, "crashy").unwrap();
    assert_eq!(crashy["restarts"], 2, "{crashy}");
    assert_eq!(crashy["lastExit"], 7, "{crashy}");
    assert_eq!(
        workload(&rows, &ship, "steady").unwrap()["state"],
        "STOPPED"
    );
    eventually(Duration::from_secs(10), "the cleanup ran", || {
        std::fs::read_to_string(&cleaned)
            .ok()
            .filter(|t| t == "cleaned\n")
    });
    assert_eq!(running_with(&marker), 0, "the escalation stopped steady");

    // Central's error log names the FATAL workload; central's view of the fleet (the
    // hellos) has the states.
    let log = fleet.data_dir(&central).join("error.log");
    eventually(
        Duration::from_secs(30),
        "FATAL in central's error log",
        || {
            let text = std::fs::read_to_string(&log).ok()?;
            (text.contains("workload-fatal") && text.contains("crashy") && text.contains(&ship))
                .then_some(())
        },
    );
    eventually(
        Duration::from_secs(30),
        "the states in the ship's hello",
        || {
            let nodes = json(&fleet.node(&central).cli(&["nodes", "--json"]));
            let ship_row = nodes
                .as_array()?
                .iter()
                .find(|n| n["name"] == ship.as_str())?;
            let states: Vec<String> = ship_row["inventory"]["workloads"]
                .as_array()?
                .iter()
                .map(|w| {
                    format!(
                        "{}={}",
                        w["name"].as_str().unwrap_or(""),
                        w["state"].as_str().unwrap_or("")
                    )
                })
                .collect();
            (states == ["crashy=FATAL", "fromconfig=RUNNING", "steady=STOPPED"]).then_some(())
        },
    );

    // An operator's restart brings steady back; a kill -9 of the ship and its restart
    // bring it back once, and FATAL holds.
    let out = fleet
        .node(&central)
        .cli(&["workload", "restart", "steady", "-n", &ship, "--json"]);
    assert!(out.status.success(), "restart: {}", stderr(&out));
    let rows = json(&out);
    assert_eq!(rows[0]["node"], ship.as_str(), "{rows}");
    assert_eq!(rows[0]["workload"]["name"], "steady", "{rows}");
    eventually(Duration::from_secs(10), "steady running", || {
        (running_with(&marker) == 1).then_some(())
    });
    fleet.node_mut(&ship).kill9();
    eventually(Duration::from_secs(10), "steady dies with its node", || {
        (running_with(&marker) == 0).then_some(())
    });
    fleet.node_mut(&ship).restart();
    let rows = eventually(
        Duration::from_secs(30),
        "steady back after the restart",
        || {
            let rows = json(&fleet.node(&ship).cli(&["workload", "ls", "--json"]));
            (workload(&rows, &ship, "steady")?["state"] == "RUNNING").then_some(rows)
        },
    );
    assert_eq!(workload(&rows, &ship, "crashy").unwrap()["state"], "FATAL");
    assert_eq!(running_with(&marker), 1, "exactly one copy");

    // A fault experiment stops steady for a lease; the ship starts it again at the end.
    let scenario = fleet.dir().join("stop.yaml");
    std::fs::write(
        &scenario,
        format!(
            "duration: 10s\nevents:\n  - at: 0s\n    action: workloadStop\n    target: {{nodes: [{ship}], workload: steady}}\n    lease: 2s\n"
        ),
    )
    .unwrap();
    let out = fleet.node(&central).cli(&[
        "chaos",
        "run",
        scenario.to_str().unwrap(),
        "--start-in",
        "1",
    ]);
    assert!(out.status.success(), "chaos run: {}", stderr(&out));
    eventually(
        Duration::from_secs(10),
        "steady stopped by the experiment",
        || (running_with(&marker) == 0).then_some(()),
    );
    eventually(
        Duration::from_secs(10),
        "steady back at the lease end",
        || (running_with(&marker) == 1).then_some(()),
    );

    let out = fleet
        .node(&central)
        .cli(&["workload", "rm", "nope", "-n", &ship]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no workload nope"),
        "{}",
        stderr(&out)
    );
    // The same refusal as JSON, for scripts: the node and its error.
    let out = fleet
        .node(&central)
        .cli(&["workload", "rm", "nope", "-n", &ship, "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let rows = json(&out);
    assert_eq!(rows[0]["node"], ship.as_str(), "{rows}");
    assert!(
        rows[0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("no workload nope")),
        "{rows}"
    );
    let out = fleet
        .node(&central)
        .cli(&["workload", "rm", "steady", "-n", &ship, "--json"]);
    assert!(out.status.success(), "rm: {}", stderr(&out));
    let rows = json(&out);
    assert_eq!(rows[0]["node"], ship.as_str(), "{rows}");
    assert_eq!(
        rows[0]["answer"], "workload steady stopped and removed",
        "{rows}"
    );
    assert_eq!(running_with(&marker), 0);
}
