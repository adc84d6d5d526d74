//! `bosun-bench soak`: many commands to many nodes across a multi-host network with
//! bad links, a long node outage, a cut-off edge site and broker crashes. Is anything
//! lost, run twice or run out of order, and does every result come back?
//!
//! The fleet runs on a rig of network namespaces (`bosun_testkit::Rig`): a 3-server NATS
//! cluster (s1–s3), an edge site whose leaf server connects to the cluster, central
//! (`hq`, on the cluster) and N nodes, each on a host of its own; the last 30 % of the
//! nodes belong to the edge site and reach only its leaf. Central is given M commands,
//! spread over the first 80 % of the fault period; message `n` goes to node
//! `(n − 1) mod N` and is ordered or unordered in turn, and appends `n` to that node's
//! file for its kind. Meanwhile, on a fixed timeline scaled to the period:
//!
//! - the links of the first two nodes drop `--loss` % of packets (iptables statistic
//!   match), each way, for the whole run;
//! - the third node is killed with -9 at 5 % and started again `--offline-secs` later;
//! - each cluster server in turn is killed with -9 (at 15, 45 and 75 %) and restarted
//!   3 s later;
//! - the edge site's link to the cluster is cut (iptables DROP) at 30 % for
//!   `--partition-secs`;
//! - the fourth node's host is cut off from everything at 60 % for 10 s.
//!
//! Then it waits until central reports every message final and no node has anything
//! left to run, and compares central's record with the files (the counts of
//! [`crate::chaos::tally`]; order only for ordered messages). It prints the counts, the
//! latency from submit to start and from submit to result back at central (by kind of
//! link), and the extra latency after an outage ends: per outage and destination, the
//! time from the end of the outage to the first start of a message that waited for it.
//!
//! The nodes run with `retries = 1000`: a flaky link must not make the sender give up
//! a message that would get through (a user with such links sets the same).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bosun_testkit::{Fleet, Host, NatsCluster, NodeSpec, Rig, poll_until};
use serde_json::{Value, json};

use crate::chaos::{self, Tally};

/// Every node: resends on ACK timeouts for as long as it takes (see the module doc).
const NODE_CONFIG: &str = "ack_timeout_secs = 2\nretries = 1000\ncapture = false\n";
/// How long a killed cluster server stays down.
const SERVER_DOWN: Duration = Duration::from_secs(3);
/// How long the fourth node is cut off.
const ISOLATION: Duration = Duration::from_secs(10);

/// What `bosun-bench soak` was asked for.
#[derive(Debug, Clone)]
pub struct Options {
    /// Commands to send (half ordered, half unordered).
    pub messages: usize,
    /// Nodes besides central (at least 4).
    pub nodes: usize,
    /// How long the third node stays offline.
    pub offline_secs: u64,
    /// How long the edge site is cut off.
    pub partition_secs: u64,
    /// Packet loss on the first two nodes' links, in percent.
    pub loss: u32,
    /// How long to wait, after the fault period, for every message to settle.
    pub drain_secs: u64,
    /// Print one JSON object instead of text.
    pub json: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            messages: 10_000,
            nodes: 10,
            offline_secs: 600,
            partition_secs: 120,
            loss: 30,
            drain_secs: 600,
            json: false,
        }
    }
}

impl Options {
    /// The fault period: long enough for the outage and the partition to sit inside
    /// the timeline, and at least 40 s.
    fn period(&self) -> Duration {
        let offline = self.offline_secs as f64 / 0.8 + 5.0;
        let partition = self.partition_secs as f64 / 0.25;
        Duration::from_secs_f64(offline.max(partition).max(40.0))
    }
}

/// One step of the fault timeline.
#[derive(Debug, Clone, Copy)]
enum Step {
    KillNode(usize),
    StartNode(usize),
    KillServer(usize),
    StartServer(usize),
    CutSite,
    HealSite,
    Isolate(usize),
    Reconnect(usize),
}

/// An outage that ended: which destinations waited for it, and when it ended.
struct Outage {
    what: &'static str,
    nodes: Vec<usize>,
    ended_ms: u64,
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn node_name(index: usize) -> String {
    format!("n{:02}", index + 1)
}

/// Destination, kind and file of message `n` (from 1).
fn route(n: usize, nodes: usize) -> (usize, bool) {
    let index = (n - 1) % nodes;
    let ordered = ((n - 1) / nodes).is_multiple_of(2);
    (index, ordered)
}

fn runs_file(dir: &Path, index: usize, ordered: bool) -> PathBuf {
    let kind = if ordered { "ordered" } else { "unordered" };
    dir.join(format!("{}-{kind}.txt", node_name(index)))
}

/// Run the soak with the `bosun` binary at `bosun`; prints the figures and returns the
/// exit code: 0 when every count is 0 and every result is back, 1 when not, 2 when the
/// run could not be made (no namespaces, no nats-server).
pub fn run(bosun: &Path, options: &Options) -> i32 {
    if options.nodes < 4 {
        eprintln!("soak: --nodes must be at least 4");
        return 2;
    }
    let Some(mut rig) = Rig::new() else {
        eprintln!("soak: network namespaces are required (run as root)");
        return 2;
    };
    let servers: Vec<Host> = ["s1", "s2", "s3"].iter().map(|n| rig.host(n)).collect();
    let edge = rig.host("edge");
    let hq = rig.host("hq");
    let hosts: Vec<Host> = (0..options.nodes)
        .map(|i| rig.host(&node_name(i)))
        .collect();
    let Some(mut cluster) = NatsCluster::start(&servers.iter().collect::<Vec<_>>()) else {
        eprintln!("soak: nats-server is required: apt-get install nats-server");
        return 2;
    };
    let Some(leaf) = cluster.leaf(&edge) else {
        return 2;
    };
    let edge_from = options.nodes - (options.nodes * 3).div_ceil(10);
    let spec = |name: &str, host: &Host, broker: String| {
        NodeSpec::new(name)
            .host(host)
            .broker(broker)
            .config(NODE_CONFIG)
            .env("BOSUN_RECONNECT_MAX_MS", "500")
    };
    let mut builder = Fleet::builder(bosun)
        .without_broker()
        .central("hq")
        .node(spec("hq", &hq, cluster.urls()));
    for (i, host) in hosts.iter().enumerate() {
        let broker = if i >= edge_from {
            leaf.url()
        } else {
            cluster.urls()
        };
        builder = builder.node(spec(&node_name(i), host, broker));
    }
    let Some(mut fleet) = builder.start() else {
        return 2;
    };
    let runs = fleet.dir().join("runs");
    std::fs::create_dir_all(&runs).expect("create the runs folder");
    let hq_socket = fleet.node("hq").data_dir.join("bosun.sock");
    let seed = unix_ms();
    let ids = chaos::message_ids(seed, options.messages);
    let period = options.period();
    let start = Instant::now();

    let submitter = {
        let ids = ids.clone();
        let runs = runs.clone();
        let socket = hq_socket.clone();
        let nodes = options.nodes;
        std::thread::spawn(move || {
            chaos::submit_all(&socket, &ids, start, period.mul_f64(0.8), |n, id| {
                let (index, ordered) = route(n, nodes);
                let file = runs_file(&runs, index, ordered);
                json!({
                    "id": id,
                    "toNode": node_name(index),
                    "method": "cliCommand",
                    "useShell": true,
                    "data": [format!("echo {n} >> '{}'", file.display())],
                    "ordered": ordered,
                    "methodTimeout": 60,
                })
            })
        })
    };

    // The links of the first two nodes are lossy for the whole run.
    for host in &hosts[..2] {
        for server in &servers {
            rig.loss(host, server, options.loss);
        }
    }
    let at = |share: f64| period.mul_f64(share);
    let offline = Duration::from_secs(options.offline_secs);
    let partition = Duration::from_secs(options.partition_secs);
    let mut timeline = vec![
        (at(0.05), Step::KillNode(2)),
        (at(0.05) + offline, Step::StartNode(2)),
        (at(0.30), Step::CutSite),
        (at(0.30) + partition, Step::HealSite),
        (at(0.60), Step::Isolate(3)),
        (at(0.60) + ISOLATION, Step::Reconnect(3)),
    ];
    for (k, share) in [0.15, 0.45, 0.75].into_iter().enumerate() {
        timeline.push((at(share), Step::KillServer(k)));
        timeline.push((at(share) + SERVER_DOWN, Step::StartServer(k)));
    }
    timeline.sort_by_key(|(when, _)| *when);
    let mut outages = Vec::new();
    let mut faults: BTreeMap<&str, usize> = BTreeMap::new();
    for (when, step) in timeline {
        // The timeline is the experiment's design, not a wait for an event.
        std::thread::sleep((start + when).saturating_duration_since(Instant::now()));
        match step {
            Step::KillNode(i) => {
                fleet.node_mut(&node_name(i)).kill9();
                *faults.entry("nodeOffline").or_default() += 1;
            }
            Step::StartNode(i) => {
                fleet.node_mut(&node_name(i)).restart();
                outages.push(Outage {
                    what: "node offline",
                    nodes: vec![i],
                    ended_ms: unix_ms(),
                });
            }
            Step::KillServer(k) => {
                cluster.server_mut(&servers[k].name).kill9();
                *faults.entry("serverKill").or_default() += 1;
            }
            Step::StartServer(k) => cluster.server_mut(&servers[k].name).restart(),
            Step::CutSite => {
                for server in &servers {
                    rig.partition(&edge, server);
                }
                *faults.entry("sitePartition").or_default() += 1;
            }
            Step::HealSite => {
                for server in &servers {
                    rig.heal(&edge, server);
                }
                outages.push(Outage {
                    what: "site partition",
                    nodes: (edge_from..options.nodes).collect(),
                    ended_ms: unix_ms(),
                });
            }
            Step::Isolate(i) => {
                rig.isolate(&hosts[i]);
                *faults.entry("nodeIsolated").or_default() += 1;
            }
            Step::Reconnect(i) => {
                rig.clear(&hosts[i]);
                outages.push(Outage {
                    what: "node isolated",
                    nodes: vec![i],
                    ended_ms: unix_ms(),
                });
            }
        }
    }
    let submitted = match submitter.join() {
        Ok(Ok(count)) => count,
        Ok(Err(e)) => {
            eprintln!("soak: {e}");
            return 2;
        }
        Err(_) => {
            eprintln!("soak: the submitting thread panicked");
            return 2;
        }
    };
    let faults_end = Instant::now();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let sockets: Vec<PathBuf> = (0..options.nodes)
        .map(|i| fleet.node(&node_name(i)).data_dir.join("bosun.sock"))
        .collect();
    let settled = poll_until(Duration::from_secs(options.drain_secs), || {
        let done = runtime.block_on(chaos::all_final(&hq_socket, &ids))
            && sockets
                .iter()
                .all(|socket| runtime.block_on(chaos::target_idle(socket)));
        done.then(Instant::now)
    });
    let drain = settled.map(|at| at.duration_since(faults_end));
    let reports = runtime.block_on(chaos::final_reports(&hq_socket, &ids));

    let mut tally = Tally::default();
    for index in 0..options.nodes {
        for ordered in [true, false] {
            let mine: Vec<(u64, Option<Value>)> = reports
                .iter()
                .filter(|(n, _)| route(*n as usize, options.nodes) == (index, ordered))
                .cloned()
                .collect();
            let file =
                std::fs::read_to_string(runs_file(&runs, index, ordered)).unwrap_or_default();
            tally.absorb(chaos::tally(&mine, &file), ordered);
        }
    }
    let not_done: usize = tally
        .states
        .iter()
        .filter(|(state, _)| state.as_str() != "done")
        .map(|(_, count)| count)
        .sum();
    let figures = Figures {
        submitted,
        faults,
        drain,
        latency: latencies(&reports, options.nodes, edge_from),
        extra: extra_latency(&reports, &outages, options.nodes),
        not_done,
        runs_dir: runs,
    };
    print(options, &tally, &figures);
    drop(fleet);
    if tally.clean() && not_done == 0 { 0 } else { 1 }
}

struct Figures {
    submitted: usize,
    faults: BTreeMap<&'static str, usize>,
    drain: Option<Duration>,
    latency: BTreeMap<&'static str, Latency>,
    extra: Extra,
    not_done: usize,
    runs_dir: PathBuf,
}

/// Submit → start at the node, and submit → result recorded at central, in ms.
#[derive(Default)]
struct Latency {
    start: Vec<f64>,
    result: Vec<f64>,
}

fn class(index: usize, edge_from: usize) -> &'static str {
    match index {
        0 | 1 => "lossy links",
        2 => "offline node",
        3 => "isolated node",
        i if i >= edge_from => "edge site",
        _ => "clean links",
    }
}

fn latencies(
    reports: &[(u64, Option<Value>)],
    nodes: usize,
    edge_from: usize,
) -> BTreeMap<&'static str, Latency> {
    let mut by: BTreeMap<&'static str, Latency> = BTreeMap::new();
    for (n, report) in reports {
        let Some(sent) = report.as_ref().map(|r| &r["sent"]) else {
            continue;
        };
        let (index, _) = route(*n as usize, nodes);
        let created = sent["message"]["createdAt"].as_f64();
        let started = sent["outcome"]["startedAt"].as_f64();
        let result = sent["history"].as_array().and_then(|h| {
            h.iter()
                .find(|e| e["state"] == "done")
                .and_then(|e| e["at"].as_f64())
        });
        for key in ["all", class(index, edge_from)] {
            let entry = by.entry(key).or_default();
            if let (Some(c), Some(s)) = (created, started) {
                entry.start.push(s - c);
            }
            if let (Some(c), Some(r)) = (created, result) {
                entry.result.push(r - c);
            }
        }
    }
    by
}

/// Extra latency after outages: per outage and destination, end of outage → first
/// start of a message that was waiting; and every waiting unordered message's start.
#[derive(Default)]
struct Extra {
    first: Vec<(String, f64)>,
    unordered: Vec<f64>,
}

fn extra_latency(reports: &[(u64, Option<Value>)], outages: &[Outage], nodes: usize) -> Extra {
    let mut extra = Extra::default();
    for outage in outages {
        for index in &outage.nodes {
            let mut first: Option<f64> = None;
            for (n, report) in reports {
                let (to, ordered) = route(*n as usize, nodes);
                if to != *index {
                    continue;
                }
                let Some(sent) = report.as_ref().map(|r| &r["sent"]) else {
                    continue;
                };
                let (Some(created), Some(started)) = (
                    sent["message"]["createdAt"].as_u64(),
                    sent["outcome"]["startedAt"].as_u64(),
                ) else {
                    continue;
                };
                if created < outage.ended_ms && started >= outage.ended_ms {
                    let wait = (started - outage.ended_ms) as f64;
                    first = Some(first.map_or(wait, |f| f.min(wait)));
                    if !ordered {
                        extra.unordered.push(wait);
                    }
                }
            }
            if let Some(wait) = first {
                extra
                    .first
                    .push((format!("{} → {}", outage.what, node_name(*index)), wait));
            }
        }
    }
    extra
}

fn quantiles(samples: &[f64]) -> Value {
    if samples.is_empty() {
        return Value::Null;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let at = |p: f64| sorted[((sorted.len() as f64 - 1.0) * p).round() as usize];
    json!({"count": sorted.len(), "p50": at(0.5), "p90": at(0.9), "p99": at(0.99), "max": at(1.0)})
}

fn print(options: &Options, t: &Tally, f: &Figures) {
    let latency: serde_json::Map<String, Value> = f
        .latency
        .iter()
        .map(|(class, l)| {
            (
                class.to_string(),
                json!({"start": quantiles(&l.start), "result": quantiles(&l.result)}),
            )
        })
        .collect();
    let firsts: Vec<f64> = f.extra.first.iter().map(|(_, w)| *w).collect();
    let figures = json!({
        "messages": options.messages,
        "nodes": options.nodes,
        "offlineSecs": options.offline_secs,
        "partitionSecs": options.partition_secs,
        "lossPercent": options.loss,
        "periodSecs": options.period().as_secs_f64(),
        "faults": f.faults,
        "submitted": f.submitted,
        "states": t.states,
        "lost": t.lost(),
        "runTwice": t.run_twice,
        "reordered": t.reordered,
        "interruptedThatRan": t.interrupted_that_ran,
        "givenUpThatRan": t.given_up_that_ran,
        "garbled": t.garbled,
        "notDone": f.not_done,
        "examples": t.examples,
        "drainSecs": f.drain.map(|d| d.as_secs_f64()),
        "latencyMs": latency,
        "extraAfterOutageMs": {
            "firstStart": quantiles(&firsts),
            "byOutage": f.extra.first.iter().map(|(what, w)| json!({"outage": what, "ms": w})).collect::<Vec<_>>(),
            "unorderedWaiting": quantiles(&f.extra.unordered),
        },
        "clean": t.clean() && f.not_done == 0,
        "runs": f.runs_dir.display().to_string(),
    });
    if options.json {
        println!("{figures}");
        return;
    }
    let states: Vec<String> = t.states.iter().map(|(s, n)| format!("{s} {n}")).collect();
    println!(
        "soak: {} commands from hq to {} nodes ({} on an edge leaf) over a 3-server cluster; period {:.0} s",
        options.messages,
        options.nodes,
        (options.nodes * 3).div_ceil(10),
        options.period().as_secs_f64()
    );
    println!(
        "  faults               {} % loss on n01, n02; {}",
        options.loss,
        f.faults
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("  submitted            {}", f.submitted);
    println!("  final states         {}", states.join(", "));
    println!("  lost                 {}", t.lost());
    println!("  run twice            {}", t.run_twice);
    println!("  reordered            {}", t.reordered);
    println!("  given up that ran    {}", t.given_up_that_ran);
    println!("  not done             {}", f.not_done);
    for (count, numbers) in &t.examples {
        println!("  e.g. {count}: messages {numbers:?}");
    }
    match f.drain {
        Some(d) => println!("  drain                {:.1} s", d.as_secs_f64()),
        None => println!(
            "  drain                not settled in {} s",
            options.drain_secs
        ),
    }
    println!(
        "  latency, ms          submit → start (p50 / p90 / p99 / max) | submit → result at hq"
    );
    let show = |v: &Value| {
        if v.is_null() {
            return "-".to_string();
        }
        format!("{} / {} / {} / {}", v["p50"], v["p90"], v["p99"], v["max"])
    };
    for (class, l) in &f.latency {
        println!(
            "    {class:<18} {} | {}",
            show(&quantiles(&l.start)),
            show(&quantiles(&l.result))
        );
    }
    println!(
        "  after an outage ends, first start: {} (ms; per outage and destination)",
        show(&quantiles(&firsts))
    );
    for (what, wait) in &f.extra.first {
        println!("    {what:<28} {wait:.0} ms");
    }
    println!(
        "  after an outage ends, every unordered message that waited: {}",
        show(&quantiles(&f.extra.unordered))
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_alternate_kinds_and_spread_over_the_nodes() {
        let routes: Vec<(usize, bool)> = (1..=8).map(|n| route(n, 4)).collect();
        assert_eq!(
            routes,
            [
                (0, true),
                (1, true),
                (2, true),
                (3, true),
                (0, false),
                (1, false),
                (2, false),
                (3, false)
            ]
        );
    }

    #[test]
    fn the_period_holds_the_outage_and_the_partition() {
        let options = Options::default();
        let period = options.period().as_secs_f64();
        assert!(period * 0.05 + 600.0 <= period, "{period}");
        assert!(period * 0.30 + 120.0 <= period, "{period}");
        let small = Options {
            offline_secs: 20,
            partition_secs: 10,
            ..Options::default()
        };
        assert_eq!(small.period().as_secs(), 40);
    }
}
