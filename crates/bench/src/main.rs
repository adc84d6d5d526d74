//! `bosun-bench`: measure bosun against its targets and print the figures.
//!
//! Run through `scripts/bench` (release build). Each figure comes with how it was taken.
//! - `exec`: `bosun exec` round trip on one node over NATS on loopback, from process
//!   start to exit after printing the result; median of N runs.
//! - `throughput`: durable, acknowledged `ping` messages per second between two node
//!   processes over NATS (submit → ACK → run → result stored at the sender), against raw
//!   NATS request/reply with the same number in flight, in the same run; and the CPU
//!   each message cost the two nodes and the broker (`/proc/PID/stat`), a figure that
//!   moves much less than the rate on a shared machine.
//!   `--node-config FILE` gives both nodes that `bosun.toml`, to measure a setting.
//! - `idle`: a standalone node's start-up time (spawn until its socket answers) and its
//!   resident memory after 2 s idle.
//! - `containers`: container create + start + remove through a bosun node against the
//!   same calls made directly to the Docker API, alternating, in the same run.
//! - `deep-queue` (not in `all`): N messages queued to an offline node; the sender's
//!   peak RSS, the submit rate and the drain rate once the node starts (see `deep`).
//! - `chaos` (not part of `all`): ordered commands under kill -9, SIGSTOP and broker
//!   crashes; counts what the sender's record gets wrong (see [`chaos`]).
//! - `chaos-timing` (not in `all`): planned against actual fault times and lease ends
//!   on two nodes; `restart` (not in `all`): a supervised workload's restart latency
//!   (see `leases`).
//! - `soak` (not in `all`): thousands of commands to many nodes on a 3-server NATS
//!   cluster with an edge leaf, in network namespaces, through packet loss, a long node
//!   outage, a site partition and server crashes (see [`soak`]).
//! - `fanout` (not in `all`): one `bosun exec` to `--nodes` N real node processes, and
//!   the sending node's CPU per destination (see [`fanout`]).
//! - `sim` (not in `all`): `--nodes` N simulated nodes in this process, each a whole
//!   node engine with its own store on real NATS, registered at one real central:
//!   registration time, central's memory per node, hello load and fan-out (see [`sim`]).
//! - `prune`: the longest single writer op while pruning `--messages` × 2 records past
//!   retention, and the longest wait of arrivals recorded meanwhile (see `prune.rs`).

mod chaos;
mod deep;
mod fanout;
mod jetstream;
mod leases;
mod prune;
mod sim;
mod soak;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bosun_bus::{NatsOptions, NatsTransport, Transport};
use bosun_ingress::client;
use bosun_ingress::control::ControlRequest;
use bosun_methods::docker::engine;
use bosun_testkit::{NatsServer, NodeProcess};
use bytes::Bytes;
use futures::StreamExt;

fn usage() -> ! {
    eprintln!(
        "usage: bosun-bench --bosun PATH [exec|throughput|idle|containers|prune|all|deep-queue|chaos-timing|restart|fanout|sim|node-cost] [--runs N] [--messages N] [--nodes N] [--hello-secs S] [--node-config FILE]\n       bosun-bench --bosun PATH chaos [--messages N] [--seed S] [--fault-secs S] [--drain-secs S] [--json]\n       bosun-bench --bosun PATH soak [--messages N] [--nodes N] [--offline-secs S] [--partition-secs S] [--loss PERCENT] [--drain-secs S] [--json]"
    );
    std::process::exit(2);
}

struct Args {
    bosun: PathBuf,
    what: String,
    runs: usize,
    messages: Option<usize>,
    seed: Option<u64>,
    fault_secs: Option<u64>,
    drain_secs: Option<u64>,
    json: bool,
    nodes: Option<usize>,
    offline_secs: Option<u64>,
    partition_secs: Option<u64>,
    loss: Option<u32>,
    hello_secs: Option<u64>,
    offset: Option<usize>,
    url: Option<String>,
    dir: Option<PathBuf>,
    node_config: Option<PathBuf>,
}

impl Args {
    /// Messages for the throughput run.
    fn messages(&self) -> usize {
        self.messages.unwrap_or(5000)
    }

    /// The chaos run's options: its own defaults, then what was given.
    fn chaos(&self) -> chaos::Options {
        let mut options = chaos::Options::for_messages(self.messages.unwrap_or(200));
        options.seed = self.seed.unwrap_or(options.seed);
        options.fault_secs = self.fault_secs.unwrap_or(options.fault_secs);
        options.drain_secs = self.drain_secs.unwrap_or(options.drain_secs);
        options.json = self.json;
        options
    }

    /// The soak's options: its own defaults, then what was given.
    fn soak(&self) -> soak::Options {
        let defaults = soak::Options::default();
        soak::Options {
            messages: self.messages.unwrap_or(defaults.messages),
            nodes: self.nodes.unwrap_or(defaults.nodes),
            offline_secs: self.offline_secs.unwrap_or(defaults.offline_secs),
            partition_secs: self.partition_secs.unwrap_or(defaults.partition_secs),
            loss: self.loss.unwrap_or(defaults.loss),
            drain_secs: self.drain_secs.unwrap_or(defaults.drain_secs),
            json: self.json,
        }
    }
}

fn number<T: std::str::FromStr>(value: Option<String>) -> T {
    value
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| usage())
}

fn parse_args() -> Args {
    let mut args = Args {
        bosun: PathBuf::new(),
        what: "all".into(),
        runs: 30,
        messages: None,
        seed: None,
        fault_secs: None,
        drain_secs: None,
        json: false,
        nodes: None,
        offline_secs: None,
        partition_secs: None,
        loss: None,
        hello_secs: None,
        offset: None,
        url: None,
        dir: None,
        node_config: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--bosun" => args.bosun = it.next().map(PathBuf::from).unwrap_or_else(|| usage()),
            "--runs" => args.runs = number(it.next()),
            "--messages" => args.messages = Some(number(it.next())),
            "--seed" => args.seed = Some(number(it.next())),
            "--fault-secs" => args.fault_secs = Some(number(it.next())),
            "--drain-secs" => args.drain_secs = Some(number(it.next())),
            "--json" => args.json = true,
            "--nodes" => args.nodes = Some(number(it.next())),
            "--offline-secs" => args.offline_secs = Some(number(it.next())),
            "--partition-secs" => args.partition_secs = Some(number(it.next())),
            "--loss" => args.loss = Some(number(it.next())),
            "--hello-secs" => args.hello_secs = Some(number(it.next())),
            "--node-config" => {
                args.node_config = Some(it.next().map(PathBuf::from).unwrap_or_else(|| usage()))
            }
            "exec" | "throughput" | "idle" | "containers" | "chaos" | "prune" | "all"
            | "deep-queue" | "chaos-timing" | "restart" | "soak" | "fanout" | "sim"
            | "sim-worker" | "node-cost" => args.what = a,
            "--offset" => args.offset = Some(number(it.next())),
            "--url" => args.url = it.next(),
            "--dir" => args.dir = it.next().map(PathBuf::from),
            _ => usage(),
        }
    }
    if args.bosun.as_os_str().is_empty() {
        usage();
    }
    args
}

fn median(samples: &mut [f64]) -> f64 {
    samples.sort_by(|a, b| a.total_cmp(b));
    let n = samples.len();
    if n % 2 == 1 {
        samples[n / 2]
    } else {
        (samples[n / 2 - 1] + samples[n / 2]) / 2.0
    }
}

fn percentile(samples: &mut [f64], p: f64) -> f64 {
    samples.sort_by(|a, b| a.total_cmp(b));
    let idx = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[idx]
}

fn main() {
    let args = parse_args();
    if args.what == "chaos" {
        std::process::exit(chaos::run(&args.bosun, &args.chaos()));
    }
    if args.what == "sim-worker" {
        let (Some(url), Some(dir)) = (&args.url, &args.dir) else {
            usage()
        };
        sim::worker(
            args.nodes.unwrap_or(1),
            args.offset.unwrap_or(0),
            args.hello_secs.unwrap_or(30),
            url,
            dir,
        );
        return;
    }
    if args.what == "sim" {
        sim::run(
            &args.bosun,
            args.nodes.unwrap_or(1000),
            args.hello_secs.unwrap_or(30),
        );
        return;
    }
    if args.what == "fanout" {
        fanout::run(&args.bosun, args.nodes.unwrap_or(100), args.runs.min(10));
        return;
    }
    if args.what == "node-cost" {
        fanout::node_cost(&args.bosun, args.runs, 5);
        return;
    }
    if args.what == "soak" {
        std::process::exit(soak::run(&args.bosun, &args.soak()));
    }
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    println!(
        "bosun-bench on {} ({} cores)",
        bosun_methods::host::hostname(),
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    if args.what == "exec" || args.what == "all" {
        bench_exec(&args);
    }
    if args.what == "throughput" || args.what == "all" {
        runtime.block_on(bench_throughput(&args));
    }
    if args.what == "idle" || args.what == "all" {
        bench_idle(&args);
    }
    if args.what == "containers" || args.what == "all" {
        runtime.block_on(bench_containers(&args));
    }
    if args.what == "deep-queue" {
        let nats = nats();
        runtime.block_on(deep::bench_deep_queue(
            &args.bosun,
            &nats.url(),
            args.messages(),
        ));
    }
    if args.what == "chaos-timing" {
        leases::chaos_timing(&args.bosun, args.runs);
    }
    if args.what == "restart" {
        runtime.block_on(leases::restart_latency(args.runs.max(10)));
    }
    if args.what == "prune" || args.what == "all" {
        runtime.block_on(prune::bench_prune(args.messages().max(50_000)));
    }
}

fn nats() -> NatsServer {
    NatsServer::start().unwrap_or_else(|| {
        eprintln!("nats-server is required: apt-get install nats-server");
        std::process::exit(1)
    })
}

fn bench_exec(args: &Args) {
    let nats = nats();
    let dir = tempfile::tempdir().expect("tempdir");
    let node = NodeProcess::start_with_env(
        &args.bosun,
        "n1",
        Some(&nats.url()),
        &dir.path().join("n1"),
        &[("BOSUN_LOG", "warn")],
    );
    let run = || {
        let t = Instant::now();
        let out = Command::new(&args.bosun)
            .arg("--data-dir")
            .arg(&node.data_dir)
            .args(["exec", "-n", "n1", "--", "true"])
            .stdout(Stdio::null())
            .status()
            .expect("run bosun exec");
        assert!(out.success(), "bosun exec failed");
        t.elapsed().as_secs_f64() * 1000.0
    };
    for _ in 0..3 {
        run();
    }
    let mut samples: Vec<f64> = (0..args.runs).map(|_| run()).collect();
    let med = median(&mut samples);
    let p90 = percentile(&mut samples, 0.9);
    let min = samples[0];
    println!(
        "exec round trip (bosun exec -n n1 -- true, 1 node, NATS loopback, {} runs): median {med:.1} ms, p90 {p90:.1} ms, min {min:.1} ms  [target < 20 ms]",
        args.runs
    );
}

async fn bench_throughput(args: &Args) {
    let nats = nats();
    let dir = tempfile::tempdir().expect("tempdir");
    let env = [("BOSUN_LOG", "warn")];
    if let Some(config) = &args.node_config {
        for node in ["a", "b"] {
            std::fs::create_dir_all(dir.path().join(node)).expect("data dir");
            std::fs::copy(config, dir.path().join(node).join("bosun.toml"))
                .expect("copy --node-config");
        }
    }
    let a = NodeProcess::start_with_env(
        &args.bosun,
        "a",
        Some(&nats.url()),
        &dir.path().join("a"),
        &env,
    );
    let b = NodeProcess::start_with_env(
        &args.bosun,
        "b",
        Some(&nats.url()),
        &dir.path().join("b"),
        &env,
    );
    let socket = a.data_dir.join("bosun.sock");
    let n = args.messages();
    let window = 1024;

    // Warm up both nodes.
    submit_pings(&socket, 200).await;

    // CPU per message, which moves much less between runs than the rate on a shared
    // machine: the two nodes' and the broker's, from the warm-up's end to the outbox's.
    let pids = [a.pid(), b.pid(), nats.pid()].map(|p| p.expect("running"));
    let cpu_before = pids.map(fanout::cpu_ms);
    let t = Instant::now();
    let ids = submit_pings(&socket, n).await;
    let submitted = t.elapsed().as_secs_f64();
    // When every result is durable at the sender: its outbox holds messages until they
    // are final. The Wait below then reads every status back, which is checked, and
    // timed apart.
    let final_deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < final_deadline {
        let info: serde_json::Value =
            client::request(&socket, &ControlRequest::Info, Duration::from_secs(10))
                .await
                .expect("info");
        if info["outbox"].as_u64() == Some(0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let final_secs = t.elapsed().as_secs_f64();
    let cpu_us: Vec<f64> = pids
        .iter()
        .zip(cpu_before)
        .map(|(pid, before)| (fanout::cpu_ms(*pid) - before) * 1000.0 / n as f64)
        .collect();
    let answer: serde_json::Value = client::request(
        &socket,
        &ControlRequest::Wait {
            ids,
            timeout_ms: 120_000,
        },
        Duration::from_secs(180),
    )
    .await
    .expect("wait");
    if answer["allDone"] != true {
        let mut states = std::collections::BTreeMap::<String, usize>::new();
        for report in answer["reports"].as_array().into_iter().flatten() {
            let state = report["sent"]["state"].as_str().unwrap_or("unknown");
            *states.entry(state.to_string()).or_default() += 1;
        }
        // What each side knows of a few of them, to tell where they stopped.
        let stuck = answer["reports"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["sent"]["state"] != "done")
            .filter_map(|r| r["id"].as_str().map(str::to_string))
            .take(3)
            .collect::<Vec<_>>();
        for id in stuck {
            for node in [&a.data_dir, &b.data_dir] {
                let status: Result<serde_json::Value, _> = client::request(
                    &node.join("bosun.sock"),
                    &ControlRequest::Status { id: id.clone() },
                    Duration::from_secs(10),
                )
                .await;
                eprintln!("{} on {}: {status:?}", id, node.display());
            }
        }
        for node in [&a.data_dir, &b.data_dir] {
            let log = std::fs::read_to_string(node.with_extension("log")).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            eprintln!("--- the last lines of {}.log:", node.display());
            for line in &lines[lines.len().saturating_sub(30)..] {
                eprintln!("{line}");
            }
        }
        panic!("not all pings finished within 120 s; states at the sender: {states:?}");
    }
    let answered_secs = t.elapsed().as_secs_f64();
    let bosun_secs = final_secs;
    let bosun_rate = n as f64 / bosun_secs;

    // Raw NATS request/reply between two connections, same number in flight.
    let options = |name: &str| NatsOptions {
        urls: vec![nats.url()],
        name: name.into(),
        ..Default::default()
    };
    let responder = NatsTransport::connect(&options("raw-b"))
        .await
        .expect("connect");
    let requester = Arc::new(
        NatsTransport::connect(&options("raw-a"))
            .await
            .expect("connect"),
    );
    responder.wait_connected(Duration::from_secs(5)).await;
    requester.wait_connected(Duration::from_secs(5)).await;
    let mut sub = responder
        .subscribe("raw.b.>".into())
        .await
        .expect("subscribe");
    tokio::spawn(async move {
        while let Some(mut m) = sub.next().await {
            let _ = m.respond(Bytes::from_static(b"ok")).await;
        }
    });
    responder.flush().await.ok();
    let payload = Bytes::from(vec![b'x'; 200]);
    let raw = |in_flight: usize| {
        let requester = requester.clone();
        let payload = payload.clone();
        async move {
            let t = Instant::now();
            futures::stream::iter(0..n)
                .map(|_| {
                    let r = requester.clone();
                    let p = payload.clone();
                    async move {
                        r.request("raw.b.ping".into(), p, Duration::from_secs(10))
                            .await
                            .expect("raw request")
                    }
                })
                .buffer_unordered(in_flight)
                .count()
                .await;
            n as f64 / t.elapsed().as_secs_f64()
        }
    };
    raw(64).await;
    let raw_pipelined = raw(window).await;
    let raw_sequential = raw(1).await;

    println!(
        "throughput ({n} pings a→b, NATS loopback): bosun {bosun_rate:.0} msg/s durable+acked+result ({:.2} s until every result was durable at the sender; submit took {submitted:.2} s)",
        bosun_secs
    );
    println!(
        "  with every status read back (bosun wait on all ids): {:.0} msg/s ({answered_secs:.2} s)",
        n as f64 / answered_secs
    );
    println!(
        "  CPU per message: sender {:.0} µs, receiver {:.0} µs, nats-server {:.0} µs; {:.0} µs in all",
        cpu_us[0],
        cpu_us[1],
        cpu_us[2],
        cpu_us.iter().sum::<f64>()
    );
    println!(
        "  raw NATS request/reply, same run: {raw_pipelined:.0} msg/s with {window} in flight, {raw_sequential:.0} msg/s one at a time"
    );
    println!(
        "  ratio raw/bosun: {:.1}× against pipelined raw, {:.1}× against sequential raw  [target ≤ 5×]",
        raw_pipelined / bosun_rate,
        raw_sequential / bosun_rate
    );
    match jetstream::rate(n, window).await {
        Ok(js_rate) => println!(
            "  NATS JetStream, same run: file stream, publish with ack + pull consumer with ack, {window} in flight: {js_rate:.0} msg/s; bosun/JetStream {:.2}×  [target ≥ 1×]",
            bosun_rate / js_rate
        ),
        Err(e) => println!("  NATS JetStream: not measured: {e}"),
    }
}

async fn submit_pings(socket: &Path, n: usize) -> Vec<String> {
    let batch = 250;
    let requests = (0..n.div_ceil(batch)).map(|i| {
        let count = batch.min(n - i * batch);
        let messages = (0..count)
            .map(|_| serde_json::json!({"toNode": "b", "method": "REQnPing"}))
            .collect();
        let socket = socket.to_path_buf();
        async move {
            let answer: serde_json::Value = client::request(
                &socket,
                &ControlRequest::Submit { messages },
                Duration::from_secs(60),
            )
            .await
            .expect("submit");
            answer["queued"]
                .as_array()
                .expect("queued")
                .iter()
                .map(|q| q["id"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        }
    });
    futures::stream::iter(requests)
        .buffered(4)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .flatten()
        .collect()
}

fn bench_idle(args: &Args) {
    let nats = nats();
    for broker in [None, Some(nats.url())] {
        let (startup, rss) = idle_node(args, broker.as_deref());
        println!(
            "idle node, {} (5 starts): start-up median {startup:.1} ms [target < 100 ms], RSS after 2 s idle median {rss:.1} MB [target < 15 MB]",
            if broker.is_some() {
                "on NATS"
            } else {
                "standalone"
            }
        );
    }
}

/// Median start-up (spawn until the socket answers) and idle RSS of 5 fresh nodes.
fn idle_node(args: &Args, broker: Option<&str>) -> (f64, f64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut startups = Vec::new();
    let mut rss = Vec::new();
    for i in 0..5 {
        let data = dir.path().join(format!("idle{i}"));
        let socket = data.join("bosun.sock");
        let t = Instant::now();
        let mut command = Command::new(&args.bosun);
        command
            .args(["node", "--name", "idle", "--data-dir"])
            .arg(&data)
            .env("BOSUN_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(b) = broker {
            command.args(["--broker", b]);
        }
        let mut child = command.spawn().expect("spawn node");
        while std::os::unix::net::UnixStream::connect(&socket).is_err() {
            std::thread::sleep(Duration::from_micros(200));
            assert!(t.elapsed() < Duration::from_secs(10), "node did not start");
        }
        startups.push(t.elapsed().as_secs_f64() * 1000.0);
        std::thread::sleep(Duration::from_secs(2));
        rss.push(rss_kib(child.id()) as f64 / 1024.0);
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let _ = child.wait();
    }
    (median(&mut startups), median(&mut rss))
}

fn rss_kib(pid: u32) -> u64 {
    deep::status_kib(pid, "VmRSS:")
}

async fn bench_containers(args: &Args) {
    use bollard::models::ContainerCreateBody;
    use bollard::query_parameters::{
        CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder, StartContainerOptions,
    };

    let Some(image) = bosun_testkit::docker_test_image() else {
        eprintln!("containers: Docker is needed (and busybox-static for the test image)");
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let node = NodeProcess::start_with_env(
        &args.bosun,
        "bench",
        None,
        &dir.path().join("bench"),
        &[("BOSUN_LOG", "warn")],
    );
    let socket = node.data_dir.join("bosun.sock");
    let docker = engine::connect(Path::new("/var/run/docker.sock"), Duration::from_secs(120))
        .await
        .expect("docker client");
    let runs = args.runs.max(5);
    let mut direct = Vec::new();
    let mut through = Vec::new();
    let call = |message: serde_json::Value| {
        let socket = socket.clone();
        async move {
            let request = ControlRequest::Call {
                message: Box::new(serde_json::from_value(message).expect("message")),
                timeout_ms: 60_000,
            };
            client::request::<serde_json::Value>(&socket, &request, Duration::from_secs(90))
                .await
                .expect("call through bosun")
        }
    };
    for i in 0..runs + 2 {
        let name = format!("bosun-bench-direct-{i}-{}", std::process::id());
        let t = Instant::now();
        let body = ContainerCreateBody {
            image: Some(image.clone()),
            cmd: Some(vec!["sleep".into(), "300".into()]),
            ..Default::default()
        };
        let created = docker
            .create_container(
                Some(CreateContainerOptionsBuilder::new().name(&name).build()),
                body,
            )
            .await
            .expect("create");
        docker
            .start_container(&created.id, None::<StartContainerOptions>)
            .await
            .expect("start");
        docker
            .remove_container(
                &created.id,
                Some(RemoveContainerOptionsBuilder::new().force(true).build()),
            )
            .await
            .expect("remove");
        let direct_ms = t.elapsed().as_secs_f64() * 1000.0;

        let t = Instant::now();
        let spec = serde_json::json!({"image": image, "command": ["sleep", "300"],
            "name": format!("bosun-bench-node-{i}-{}", std::process::id())});
        let answer = call(
            serde_json::json!({"toNode": "bench", "method": "containerRun",
            "data": [spec.to_string()], "ordered": false}),
        )
        .await;
        let id = answer["output"].as_str().unwrap_or("").trim().to_string();
        call(
            serde_json::json!({"toNode": "bench", "method": "containerRemove",
            "data": [id, "force"], "ordered": false}),
        )
        .await;
        let through_ms = t.elapsed().as_secs_f64() * 1000.0;
        if i >= 2 {
            direct.push(direct_ms);
            through.push(through_ms);
        }
    }
    let (d, b) = (median(&mut direct), median(&mut through));
    println!(
        "containers (create + start + remove, {runs} runs alternating, one node, same engine): direct Docker API median {d:.1} ms, through bosun median {b:.1} ms, ratio {:.2}x  [target <= 1.10x]",
        b / d
    );
}
