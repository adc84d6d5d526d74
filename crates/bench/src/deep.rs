//! `deep-queue`: a sender node with a deep outbox. N messages are queued to a node that
//! is offline; the sender's resident memory is sampled while they are queued and while
//! they drain once the node starts. Prints the submit rate, the peak RSS, and the drain
//! rate, and checks that every message was delivered.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bosun_ingress::client;
use bosun_ingress::control::ControlRequest;
use bosun_testkit::NodeProcess;
use futures::StreamExt;

/// Peak resident memory of `pid` so far (VmHWM), in KiB.
fn peak_kib(pid: u32) -> u64 {
    status_kib(pid, "VmHWM:")
}

/// A `/proc/PID/status` figure in KiB (`VmRSS:`, `VmHWM:`), 0 when unreadable.
pub fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

async fn outbox_depth(socket: &Path) -> u64 {
    let answer: serde_json::Value =
        client::request(socket, &ControlRequest::Info, Duration::from_secs(30))
            .await
            .expect("info");
    answer["outbox"].as_u64().unwrap_or(u64::MAX)
}

pub async fn bench_deep_queue(bosun: &Path, nats_url: &str, n: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("a");
    let socket = data.join("bosun.sock");
    let mut sender = Command::new(bosun)
        .args(["node", "--name", "a", "--broker", nats_url, "--data-dir"])
        .arg(&data)
        .env("BOSUN_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn sender");
    let started = Instant::now();
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "sender did not start"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let pid = sender.id();
    // Queue N pings to "b", which is not running yet.
    let batch = 1000;
    let t = Instant::now();
    let mut last_id = String::new();
    let requests = (0..n.div_ceil(batch)).map(|i| {
        let count = batch.min(n - i * batch);
        let messages = (0..count)
            .map(|_| serde_json::json!({"toNode": "b", "method": "REQnPing", "ttl": 0}))
            .collect();
        let socket = socket.clone();
        async move {
            let answer: serde_json::Value = client::request(
                &socket,
                &ControlRequest::Submit { messages },
                Duration::from_secs(120),
            )
            .await
            .expect("submit");
            answer["queued"]
                .as_array()
                .and_then(|q| q.last())
                .and_then(|q| q["id"].as_str())
                .map(str::to_string)
                .unwrap_or_default()
        }
    });
    let mut stream = futures::stream::iter(requests).buffered(2);
    while let Some(id) = stream.next().await {
        last_id = id;
    }
    let submit_secs = t.elapsed().as_secs_f64();
    let queued_peak = peak_kib(pid);
    let depth = outbox_depth(&socket).await;
    assert_eq!(depth as usize, n, "every message is queued");
    println!(
        "deep queue, {n} pings to an offline node: submit {:.0} msg/s ({submit_secs:.1} s), sender peak RSS while queueing {:.1} MB [target < 64 MB]",
        n as f64 / submit_secs,
        queued_peak as f64 / 1024.0
    );
    // The node comes up: the queue drains.
    let t = Instant::now();
    let _b = NodeProcess::start_with_env(
        bosun,
        "b",
        Some(nats_url),
        &dir.path().join("b"),
        &[("BOSUN_LOG", "warn")],
    );
    let deadline = Instant::now() + Duration::from_secs(3600);
    loop {
        let depth = outbox_depth(&socket).await;
        if depth == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the queue did not drain: {depth} left"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let drain_secs = t.elapsed().as_secs_f64();
    // The last one queued has its result: the destination has run the whole queue.
    let answer: serde_json::Value = client::request(
        &socket,
        &ControlRequest::Wait {
            ids: vec![last_id],
            timeout_ms: 1_800_000,
        },
        Duration::from_secs(1900),
    )
    .await
    .expect("wait");
    assert_eq!(answer["allDone"], true, "the last message finished");
    let results_secs = t.elapsed().as_secs_f64();
    println!(
        "deep queue drain: all delivered at {:.0} msg/s ({drain_secs:.1} s, node start included), last result back after {results_secs:.1} s; sender peak RSS overall {:.1} MB [target < 64 MB]",
        n as f64 / drain_secs,
        peak_kib(pid) as f64 / 1024.0
    );
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status();
    let _ = sender.wait();
}
