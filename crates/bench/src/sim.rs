//! `bosun-bench sim --nodes N`: many simulated nodes in this one process, each a whole
//! bosun node engine (`bosun_node::Node`) with its own data dir and store, its own
//! identity and its own connection to a real nats-server, all reporting to one real
//! central (`bosun node` process). What the fleet costs central:
//!
//! - registration: from the first start until central lists all N alive;
//! - registry memory: central's RSS with N nodes listed, less its RSS before, per node;
//! - hello load: central's CPU over one hello interval (every node says hello once),
//!   per hello, and the rate of hellos it absorbs;
//! - fan-out: one `ping` to every node (`toNodes: ["*"]`, central's registry) from
//!   central's socket until every result is back at central. A ping runs no process,
//!   so this is the delivery path alone; `fanout` measures real processes running a
//!   command.
//!
//! The simulated nodes run in worker processes of `PER_WORKER` each (`sim-worker`, the
//! same binary), which issue their identities as the same test issuer.
//!
//! Simulated nodes skip what a host has once (capture, the message folder watcher, the
//! local socket) and keep a 1 MiB page cache each. Hellos every `--hello-secs` (default
//! 30, bosun's default).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bosun_bus::{NatsOptions, NatsTransport, Sealed, Transport};
use bosun_ingress::client;
use bosun_ingress::control::ControlRequest;
use bosun_node::{Config, Node};
use bosun_testkit::trust::issuer;
use bosun_testkit::{NatsServer, NodeProcess, poll_until};
use serde_json::{Value, json};

use crate::fanout::{cpu_ms, rss_mb};

/// How many simulated nodes start at once.
const STARTING_AT_ONCE: usize = 64;
/// Simulated nodes per worker process: each holds about four files open, and a process
/// may not raise its open-file limit past the hard limit (20,000 here).
const PER_WORKER: usize = 2_500;

/// Raise this process's open-file limit: each simulated node holds a broker connection,
/// its store and its logs open. As root, up to 262,144; otherwise to the hard limit.
fn raise_file_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if setrlimit(Resource::RLIMIT_NOFILE, 262_144, 262_144).is_err()
        && let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
    {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

fn sim_config(dir: &Path, name: &str, url: &str, hello_secs: u64) -> Config {
    Config {
        name: name.into(),
        data_dir: dir.join(name),
        broker: vec![url.to_string()],
        central: Some("central".into()),
        hello_interval_secs: hello_secs,
        capture: false,
        read_dir: Some(PathBuf::new()),
        store_cache_mb: 1,
        trusted_issuers: vec![issuer().public_key()],
        policy: vec!["*".into()],
        log: "warn".into(),
        ..Config::default()
    }
}

async fn start_sim(config: Config) -> Result<Node, String> {
    std::fs::create_dir_all(&config.data_dir).map_err(|e| e.to_string())?;
    issuer().issue_into(&config.data_dir, &config.name, &["*".to_string()]);
    let trust = Arc::new(
        bosun_node::trust::load(&config, bosun_methods::clock::now_millis())
            .map_err(|e| e.to_string())?,
    );
    let nats = NatsTransport::connect(&NatsOptions::from(&config))
        .await
        .map_err(|e| e.to_string())?;
    let sealed: Arc<dyn Transport> =
        Arc::new(Sealed::new(Arc::new(nats), trust, config.name.to_string()));
    Node::start(config, sealed, false)
        .await
        .map_err(|e| e.to_string())
}

/// Central's count of alive nodes, from `bosun nodes --json`.
fn alive(bosun: &Path, central: &NodeProcess) -> usize {
    let out = std::process::Command::new(bosun)
        .arg("--data-dir")
        .arg(&central.data_dir)
        .args(["nodes", "--json"])
        .output();
    let Ok(out) = out else { return 0 };
    let rows: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    rows.as_array().map_or(0, |rows| {
        rows.iter().filter(|r| r["status"] == "alive").count()
    })
}

/// Run the simulation; prints the figures.
pub fn run(bosun: &Path, nodes: usize, hello_secs: u64) {
    raise_file_limit();
    let nats = NatsServer::start().unwrap_or_else(|| {
        eprintln!("nats-server is required: apt-get install nats-server");
        std::process::exit(1)
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let central = NodeProcess::start_with_env(
        bosun,
        "central",
        Some(&nats.url()),
        &dir.path().join("central"),
        &[("BOSUN_LOG", "info")],
    );
    let pid = central.pid().expect("central runs");
    let rss_before = rss_mb(pid);
    let url = nats.url();
    let started = Instant::now();
    let mut workers = Vec::new();
    let mut offset = 0;
    while offset < nodes {
        let count = PER_WORKER.min(nodes - offset);
        let worker = std::process::Command::new(std::env::current_exe().expect("this binary"))
            .arg("--bosun")
            .arg(bosun)
            .args(["sim-worker", "--nodes", &count.to_string()])
            .args(["--offset", &offset.to_string()])
            .args(["--hello-secs", &hello_secs.to_string(), "--url", &url])
            .arg("--dir")
            .arg(dir.path())
            .env(bosun_testkit::trust::ISSUER_SEED_ENV, issuer().seed())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("start a simulation worker");
        workers.push(worker);
        offset += count;
    }
    for worker in &mut workers {
        let mut line = String::new();
        let stdout = worker.stdout.as_mut().expect("piped");
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)
            .expect("read the worker's answer");
        assert_eq!(
            line.trim(),
            "ready",
            "a simulation worker failed to start its nodes"
        );
    }
    let started_in = started.elapsed();
    let listed = poll_until(Duration::from_secs(600), || {
        // Every simulated node and central itself.
        (alive(bosun, &central) > nodes).then(Instant::now)
    });
    let Some(listed) = listed else {
        println!(
            "sim: central lists {} of {nodes} alive after 600 s",
            alive(bosun, &central)
        );
        return;
    };
    let workers_rss: f64 = workers.iter().map(|w| rss_mb(w.id())).sum();
    println!(
        "sim: {nodes} simulated nodes in {} processes started in {:.1} s, all listed alive at central after {:.1} s; {:.0} MB in all ({:.2} MB per simulated node)",
        workers.len(),
        started_in.as_secs_f64(),
        listed.duration_since(started).as_secs_f64(),
        workers_rss,
        workers_rss / nodes as f64
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // One whole hello interval: every node says hello once.
    let cpu_before = cpu_ms(pid);
    let window = Instant::now();
    std::thread::sleep(Duration::from_secs(hello_secs)); // the measurement window itself
    let cpu = cpu_ms(pid) - cpu_before;
    let seconds = window.elapsed().as_secs_f64();
    let rss_after = rss_mb(pid);
    println!(
        "  central: registry of {nodes} nodes: RSS {rss_before:.1} → {rss_after:.1} MB ({:.1} KB per node); hello load {:.0} hellos/s, {:.1} % of a core, {:.3} CPU-ms per hello",
        (rss_after - rss_before) * 1024.0 / nodes as f64,
        nodes as f64 / hello_secs as f64,
        cpu / seconds / 10.0,
        cpu / nodes as f64
    );

    // Fan-out of one ping to every node from central's registry.
    let socket = central.data_dir.join("bosun.sock");
    let mut times = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let cpu_before = cpu_ms(pid);
        let ids: Vec<String> = runtime.block_on(async {
            let request = ControlRequest::Submit {
                messages: vec![json!({"toNodes": ["*"], "method": "ping"})],
            };
            let answer: Value = client::request(&socket, &request, Duration::from_secs(120))
                .await
                .expect("submit the fan-out");
            answer["queued"]
                .as_array()
                .map(|q| {
                    q.iter()
                        .filter(|q| q["toNode"] != "central")
                        .filter_map(|q| q["id"].as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        });
        let done = runtime.block_on(async {
            let request = ControlRequest::Wait {
                ids: ids.clone(),
                timeout_ms: 120_000,
            };
            let answer: Value = client::request(&socket, &request, Duration::from_secs(180))
                .await
                .expect("wait for the fan-out");
            answer["allDone"] == true
        });
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        let cpu = cpu_ms(pid) - cpu_before;
        let log = std::fs::read_to_string(central.log_path()).unwrap_or_default();
        let resends = log.matches("resent").count();
        println!(
            "  fan-out: ping to {} nodes, every result back at central in {ms:.0} ms (all done: {done}); central {cpu:.0} CPU-ms ({:.3} per destination); resends so far {resends}",
            ids.len(),
            cpu / ids.len().max(1) as f64
        );
        times.push(ms);
    }
    let median = crate::median(&mut times);
    println!("sim: fan-out to {nodes} nodes, median of 3: {median:.0} ms");
    for mut worker in workers {
        drop(worker.stdin.take()); // the worker stops its nodes at the end of its stdin
        let _ = poll_until(Duration::from_secs(60), || worker.try_wait().ok().flatten());
        let _ = worker.kill();
        let _ = worker.wait();
    }
}

/// One worker process: start `nodes` simulated nodes (`s<offset+1>`…), say `ready`,
/// and stop them when stdin ends.
pub fn worker(nodes: usize, offset: usize, hello_secs: u64, url: &str, dir: &Path) {
    raise_file_limit();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let sims: Vec<Node> = runtime.block_on(async {
        let mut sims = Vec::with_capacity(nodes);
        let names: Vec<String> = (offset + 1..=offset + nodes)
            .map(|i| format!("s{i:05}"))
            .collect();
        for chunk in names.chunks(STARTING_AT_ONCE) {
            let starting = chunk
                .iter()
                .map(|name| start_sim(sim_config(dir, name, url, hello_secs)));
            for node in futures::future::join_all(starting).await {
                sims.push(node.unwrap_or_else(|e| panic!("a simulated node: {e}")));
            }
        }
        sims
    });
    println!("ready");
    let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut Vec::new());
    runtime.block_on(async {
        for node in sims {
            node.shutdown().await;
        }
    });
}
