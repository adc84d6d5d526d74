//! Fault experiments and supervised workloads, timed.
//!
//! - `chaos-timing`: two real nodes on one NATS server, four test containers each; a
//!   scenario of `--runs` rounds (one second apart) each pausing one container per node
//!   for 300 ms and marking the stream. The nodes' own books give, per event, the planned
//!   time, when the node began applying it (fire skew), when it was in place (apply
//!   skew), and how long after the lease end it was undone. Docker's own `pause` events
//!   give the same skew as the engine saw it.
//! - `restart`: a supervised command (`sleep`, restart `always`, no backoff) killed with
//!   SIGKILL from outside, `--runs` times; the time from the kill to the supervisor
//!   reporting the next copy running.

use std::path::Path;
use std::time::{Duration, Instant};

use bosun_testkit::{Fleet, json};
use serde_json::Value;

use crate::{median, percentile};

fn docker(args: &[&str]) -> String {
    let out = std::process::Command::new("docker")
        .args(args)
        .output()
        .expect("run docker");
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn figures(name: &str, mut samples: Vec<f64>) {
    if samples.is_empty() {
        println!("{name}: no samples");
        return;
    }
    let med = median(&mut samples);
    let p99 = percentile(&mut samples, 0.99);
    let max = samples.iter().cloned().fold(f64::MIN, f64::max);
    println!(
        "{name}: median {med:.1} ms, p99 {p99:.1} ms, max {max:.1} ms ({} samples)",
        samples.len()
    );
}

/// The fault timing on two nodes.
pub fn chaos_timing(bosun: &Path, rounds: usize) {
    let image = bosun_testkit::docker_test_image().unwrap_or_else(|| {
        eprintln!("Docker and busybox-static are required");
        std::process::exit(1)
    });
    let suffix = &bosun_proto::new_id()[18..].to_lowercase();
    let nodes = [format!("ba{suffix}"), format!("bb{suffix}")];
    let fleet = Fleet::builder(bosun)
        .central(&nodes[0])
        .nodes(&[&nodes[0], &nodes[1]])
        .start()
        .expect("a fleet on nats-server");
    let mut containers = Vec::new();
    for node in &nodes {
        for i in 0..4 {
            let name = format!("{node}-c{i}");
            let out = fleet.node(node).cli(&[
                "container",
                "run",
                "-n",
                node,
                "--name",
                &name,
                &image,
                "--",
                "sleep",
                "3600",
            ]);
            assert!(
                out.status.success(),
                "container run: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            containers.push(name);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while fleet.node(&nodes[0]).fleet_status().len() < 2 {
        assert!(Instant::now() < deadline, "the fleet did not form");
        std::thread::sleep(Duration::from_millis(100));
    }
    let scenario = format!(
        "name: timing\nseed: 1\nduration: {}s\nevents:\n  - every: 1s\n    from: 0s\n    action: pause\n    target: {{container: '*-c*', percent: 25}}\n    lease: 300ms\n  - every: 1s\n    from: 500ms\n    action: mark\n    text: tick\n",
        rounds + 1
    );
    let file = fleet.dir().join("timing.yaml");
    std::fs::write(&file, scenario).expect("write the scenario");
    let out = fleet.node(&nodes[0]).cli(&[
        "chaos",
        "run",
        file.to_str().unwrap(),
        "--start-in",
        "3",
        "--follow",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "chaos run: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = json(&out);
    let entries: Vec<Value> = report["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|n| n["entries"].as_array().cloned().unwrap_or_default())
        .collect();
    let ms = |e: &Value, key: &str| e[key].as_u64();
    let pauses: Vec<&Value> = entries
        .iter()
        .filter(|e| e["event"]["action"]["action"] == "pause")
        .collect();
    let marks: Vec<&Value> = entries
        .iter()
        .filter(|e| e["event"]["action"]["action"] == "mark")
        .collect();
    println!(
        "chaos-timing: {} pause events (300 ms leases) and {} marks on 2 nodes, {} rounds",
        pauses.len(),
        marks.len(),
        rounds
    );
    let skew = |list: &[&Value], key: &str| -> Vec<f64> {
        list.iter()
            .filter_map(|e| Some(ms(e, key)?.saturating_sub(ms(e, "at")?) as f64))
            .collect()
    };
    figures(
        "  fire skew, planned → node begins (pause)",
        skew(&pauses, "firedAt"),
    );
    figures(
        "  apply skew, planned → container paused (pause)",
        skew(&pauses, "appliedAt"),
    );
    figures("  fire skew (mark)", skew(&marks, "firedAt"));
    figures(
        "  undo, lease end → container unpaused",
        pauses
            .iter()
            .filter_map(|e| Some(ms(e, "undoneAt")?.saturating_sub(ms(e, "leaseEnd")?) as f64))
            .collect(),
    );
    // Docker's own clock: the pause event against the plan.
    let mut docker_skew = Vec::new();
    for e in &pauses {
        let (Some(at), Some(name)) = (ms(e, "at"), e["event"]["target"]["name"].as_str()) else {
            continue;
        };
        let since = at.saturating_sub(200);
        let until = at + 1000;
        let events = docker(&[
            "events",
            "--since",
            &format!("{}.{:03}", since / 1000, since % 1000),
            "--until",
            &format!("{}.{:03}", until / 1000, until % 1000),
            "--filter",
            &format!("container={name}"),
            "--filter",
            "event=pause",
            "--format",
            "{{.TimeNano}}",
        ]);
        if let Some(t) = events
            .lines()
            .next()
            .and_then(|l| l.trim().parse::<u64>().ok())
        {
            docker_skew.push((t / 1_000_000) as f64 - at as f64);
        }
    }
    figures("  Docker's pause event − planned time", docker_skew);
    let states = &report["figures"]["states"];
    println!("  states: {states}");
    for c in &containers {
        let _ = std::process::Command::new("docker")
            .args(["rm", "-f", c])
            .output();
    }
}

/// The restart latency of a supervised command.
pub async fn restart_latency(runs: usize) {
    use bosun_supervise::{Supervisor, SupervisorEvent, WorkloadState, parse_definition};
    let dir = tempfile::tempdir().expect("tempdir");
    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let tracker = tokio_util::task::TaskTracker::new();
    let supervisor = Supervisor::start(
        dir.path().join("w"),
        "bench",
        "/var/run/docker.sock".into(),
        tx,
        shutdown.clone(),
        &tracker,
    )
    .await
    .expect("start the supervisor");
    let def = "name: sleeper\ncommand: [sleep, '3600']\nrestart: always\nbackoff: {initialMs: 0, maxMs: 0, factor: 1}\nlimit: {restarts: 1000000, withinSecs: 1}\n";
    supervisor
        .add(parse_definition(def).expect("definition"))
        .await
        .expect("add");
    let mut samples = Vec::new();
    for _ in 0..runs {
        let pid = supervisor.list()[0].pid.expect("a pid");
        while events.try_recv().is_ok() {}
        let t = Instant::now();
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        loop {
            match tokio::time::timeout(Duration::from_secs(10), events.recv()).await {
                Ok(Some(SupervisorEvent::State {
                    to: WorkloadState::Running,
                    ..
                })) => break,
                Ok(Some(_)) => {}
                _ => panic!("no restart within 10 s"),
            }
        }
        samples.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    println!("restart: a supervised command killed with SIGKILL, restart always, backoff 0");
    figures("  kill → next copy running", samples);
    shutdown.cancel();
    tracker.close();
    tracker.wait().await;
}
