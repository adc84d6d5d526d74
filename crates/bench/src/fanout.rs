//! `bosun-bench fanout --nodes N`: one `bosun exec` to N real node processes on one
//! nats-server on this machine, from process start to every result printed; and what
//! it costs the sending node (central) in CPU per destination, from `/proc`.
//!
//! The nodes report to `central` (hellos every 30 s, the default) and run with
//! `capture = false`; with a central set, a node does not listen to the fleet's
//! announced hellos (`fleet_view = auto`), so N idle processes on 2 cores leave the CPU
//! to the fan-out being measured. Each run sends
//! `true` to every node and waits for every result (`--no-progress --json`, output
//! discarded); the first run warms up (each pair's first frame carries a signature,
//! later ones a pair MAC) and is not counted.
//!
//! `bosun-bench node-cost --runs N`: what one command costs the node that runs it, with
//! nothing else on the machine to share the CPU with: N `bosun exec -n f1 -- true` one
//! after the other from central, and f1's own CPU (its threads', not the command's),
//! its write system calls and the bytes it had written to disk, per command, from
//! `/proc`. This figure moves little between runs, unlike a fan-out's wall time, so it
//! shows what a change to the node's work per message is worth.

use std::path::Path;
use std::process::{Command, Stdio};

use std::time::Instant;

use bosun_testkit::{NatsServer, NodeProcess};

/// CPU time (user + system) of a process so far, in ms, from `/proc/PID/stat`.
pub(crate) fn cpu_ms(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|i| fields.get(*i).and_then(|f| f.parse::<f64>().ok()))
        .sum();
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64;
    ticks * 1000.0 / hz
}

pub(crate) fn rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn epoch_ms() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

/// Where a run's time went, from the results' own start and finish times (the nodes
/// share this machine's clock), in ms after `bosun exec` was started.
struct Phases {
    /// When the nodes started the command: first, median, last.
    started: [f64; 3],
    /// When they finished it: median, last.
    finished: [f64; 2],
    /// The whole run, to every result printed.
    wall: f64,
}

impl Phases {
    fn of(results: &serde_json::Value, t0: f64, wall: f64) -> Phases {
        let times = |field: &str| {
            let mut v: Vec<f64> = results
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|r| r["result"][field].as_f64())
                .map(|t| t - t0)
                .collect();
            v.sort_by(f64::total_cmp);
            v
        };
        let pick = |v: &[f64], q: f64| {
            v.get(((v.len().max(1) - 1) as f64 * q).round() as usize)
                .copied()
                .unwrap_or(f64::NAN)
        };
        let (started, finished) = (times("startedAt"), times("finishedAt"));
        Phases {
            started: [
                pick(&started, 0.0),
                pick(&started, 0.5),
                pick(&started, 1.0),
            ],
            finished: [pick(&finished, 0.5), pick(&finished, 1.0)],
            wall,
        }
    }
}

impl std::fmt::Display for Phases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let [first, median, last] = self.started;
        let [median_end, last_end] = self.finished;
        write!(
            f,
            "started at {first:.0} / {median:.0} / {last:.0} ms (first / median / last), finished by {median_end:.0} / {last_end:.0} ms (median / last), every result printed at {:.0} ms",
            self.wall
        )
    }
}

/// CPU time of a process's threads so far, in ms, to the nanosecond
/// (`/proc/PID/task/*/schedstat`), where `/proc/PID/stat` counts whole clock ticks.
fn thread_cpu_ms(pid: u32) -> f64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0.0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .sum::<f64>()
        / 1e6
}

/// A process's write system calls and the bytes it had written to storage so far, from
/// `/proc/PID/io`.
fn io_writes(pid: u32) -> (f64, f64) {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap_or_default();
    let field = |name: &str| {
        io.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (field("syscw:"), field("write_bytes:"))
}

/// A nats-server and a folder for nodes that report to `central`, with capture off.
struct Nodes<'a> {
    bosun: &'a Path,
    nats: NatsServer,
    dir: tempfile::TempDir,
}

impl<'a> Nodes<'a> {
    fn start(bosun: &'a Path) -> Nodes<'a> {
        let nats = NatsServer::start().unwrap_or_else(|| {
            eprintln!("nats-server is required: apt-get install nats-server");
            std::process::exit(1)
        });
        let dir = tempfile::tempdir().expect("tempdir");
        Nodes { bosun, nats, dir }
    }

    fn node(&self, name: &str) -> NodeProcess {
        let data = self.dir.path().join(name);
        std::fs::create_dir_all(&data).expect("data dir");
        std::fs::write(data.join("bosun.toml"), "capture = false\n").expect("bosun.toml");
        NodeProcess::start_with_env(
            self.bosun,
            name,
            Some(&self.nats.url()),
            &data,
            &[("BOSUN_LOG", "warn"), ("BOSUN_CENTRAL", "central")],
        )
    }
}

/// Run the per-command cost bench; prints the medians of `rounds` rounds of `runs`
/// commands each.
pub fn node_cost(bosun: &Path, runs: usize, rounds: usize) {
    let rig = Nodes::start(bosun);
    let central = rig.node("central");
    let node = rig.node("f1");
    let (pid, central_pid) = (
        node.pid().expect("f1 runs"),
        central.pid().expect("central runs"),
    );
    let exec = || {
        let out = Command::new(bosun)
            .arg("--data-dir")
            .arg(&central.data_dir)
            .args(["exec", "-n", "f1", "--timeout", "30", "--", "true"])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .status()
            .expect("run bosun exec");
        assert!(out.success(), "bosun exec -n f1 -- true failed: {out}");
    };
    // The first frames of a pair carry signatures; later ones a pair MAC.
    for _ in 0..5 {
        exec();
    }
    let (mut cpu, mut central_cpu, mut calls, mut bytes, mut wall) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let (c0, cc0, (w0, b0)) = (
            thread_cpu_ms(pid),
            thread_cpu_ms(central_pid),
            io_writes(pid),
        );
        let t = Instant::now();
        for _ in 0..runs {
            exec();
        }
        let n = runs as f64;
        wall.push(t.elapsed().as_secs_f64() * 1000.0 / n);
        let (w1, b1) = io_writes(pid);
        cpu.push((thread_cpu_ms(pid) - c0) / n);
        central_cpu.push((thread_cpu_ms(central_pid) - cc0) / n);
        calls.push((w1 - w0) / n);
        bytes.push((b1 - b0) / n / 1024.0);
    }
    println!(
        "node cost per command (bosun exec -n f1 -- true from central, {rounds} rounds of {runs}, medians): \
         f1 {:.2} CPU-ms, {:.1} write calls, {:.1} KiB written to disk; central {:.2} CPU-ms; {:.1} ms per exec",
        crate::median(&mut cpu),
        crate::median(&mut calls),
        crate::median(&mut bytes),
        crate::median(&mut central_cpu),
        crate::median(&mut wall),
    );
}

/// Run the fan-out bench; prints one line per run and the medians.
pub fn run(bosun: &Path, nodes: usize, runs: usize) {
    let rig = Nodes::start(bosun);
    let central = rig.node("central");
    let started = Instant::now();
    let names: Vec<String> = (1..=nodes).map(|i| format!("f{i:04}")).collect();
    let mut fleet = Vec::with_capacity(nodes);
    for name in &names {
        fleet.push(rig.node(name));
    }
    let rss: f64 = fleet.iter().filter_map(|n| n.pid()).map(rss_mb).sum();
    println!(
        "fanout: {nodes} node processes started in {:.1} s ({:.0} MB RSS in all, {:.1} MB each)",
        started.elapsed().as_secs_f64(),
        rss,
        rss / nodes as f64
    );
    let list = names.join(",");
    let pid = central.pid().expect("central runs");
    let pids: Vec<u32> = fleet.iter().filter_map(NodeProcess::pid).collect();
    let fleet_cpu = || pids.iter().map(|p| cpu_ms(*p)).sum::<f64>();
    let once = || {
        let cpu = cpu_ms(pid);
        let others = fleet_cpu();
        let t = Instant::now();
        let t0 = epoch_ms();
        let out = Command::new(bosun)
            .arg("--data-dir")
            .arg(&central.data_dir)
            .args([
                "exec",
                "-n",
                &list,
                "--no-progress",
                "--json",
                "--timeout",
                "120",
            ])
            .args(["--", "true"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .output()
            .expect("run bosun exec");
        let wall = t.elapsed().as_secs_f64() * 1000.0;
        let results: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let done = results.as_array().map_or(0, |rows| {
            rows.iter().filter(|r| r["state"] == "done").count()
        });
        let phases = Phases::of(&results, t0, wall);
        assert_eq!(
            done,
            nodes,
            "every node answered: exit {:?}",
            out.status.code()
        );
        (wall, cpu_ms(pid) - cpu, fleet_cpu() - others, phases)
    };
    once();
    let mut walls = Vec::new();
    let mut cpus = Vec::new();
    let mut theirs = Vec::new();
    for run in 1..=runs {
        let (wall, cpu, other, phases) = once();
        println!(
            "  run {run}: {wall:.0} ms wall, central {cpu:.0} CPU-ms ({:.3} per destination), the {nodes} nodes {other:.0} CPU-ms ({:.2} each)",
            cpu / nodes as f64,
            other / nodes as f64
        );
        println!("         {phases}");
        walls.push(wall);
        cpus.push(cpu);
        theirs.push(other);
    }
    let other = crate::median(&mut theirs);
    let wall = crate::median(&mut walls);
    let cpu = crate::median(&mut cpus);
    println!(
        "fanout to {nodes} nodes, median of {runs}: {wall:.0} ms from exec start to every result printed [target < 1000 ms at 1,000 nodes]; central {cpu:.0} CPU-ms, {:.3} CPU-ms per destination; the nodes {:.2} CPU-ms each",
        cpu / nodes as f64,
        other / nodes as f64
    );
}
