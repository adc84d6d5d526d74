//! What the end-to-end tests share: the binary, reading output, following a message's
//! state, talking HTTP and raw sockets, and Docker clean-up.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use bosun_testkit::{Fleet, FleetBuilder, NodeProcess, eventually, json};
use serde_json::Value;

/// The `bosun` binary under test.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_bosun"))
}

/// A fleet builder for the binary under test.
pub fn fleet() -> FleetBuilder {
    Fleet::builder(bin())
}

/// The lines of a file; none when it does not exist (yet).
pub fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// A command's stdout as text.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A command's stderr as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The sender's state of a message, from `bosun status --json ID`; empty when unknown.
pub fn state_of(node: &NodeProcess, id: &str) -> String {
    let out = node.cli(&["status", "--json", id]);
    if !out.status.success() {
        return String::new();
    }
    json(&out)["sent"]["state"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

/// The whole status report of a message, from `bosun status --json ID`.
pub fn report(node: &NodeProcess, id: &str) -> Value {
    json(&node.cli(&["status", "--json", id]))
}

/// Send a command with `exec --no-wait` and return its id.
pub fn exec_no_wait(node: &NodeProcess, to: &str, argv: &[&str]) -> String {
    let mut args = vec!["exec", "-n", to, "--no-wait", "--json", "--"];
    args.extend_from_slice(argv);
    let out = node.cli(&args);
    assert!(out.status.success(), "exec failed: {}", stderr(&out));
    json(&out)[0]["id"].as_str().unwrap().to_string()
}

/// Wait until the sender's state of `id` is `want`; returns the status report.
pub fn wait_state(node: &NodeProcess, id: &str, want: &str) -> Value {
    eventually(Duration::from_secs(30), &format!("{id} {want}"), || {
        let report = report(node, id);
        (report["sent"]["state"] == want).then_some(report)
    })
}

/// Send raw bytes to a node's `bosun.sock` the way `nc -U` does (no shutdown of the
/// write side: the node must answer once it has a whole value) and return its answer.
pub fn nc_u(node: &NodeProcess, body: &str) -> Value {
    let mut stream =
        std::os::unix::net::UnixStream::connect(node.data_dir.join("bosun.sock")).unwrap();
    stream.write_all(body.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    serde_json::from_str(&answer).unwrap_or_else(|e| panic!("{e}: {answer}"))
}

/// The ids of a successful socket answer.
pub fn queued_ids(answer: &Value) -> Vec<String> {
    assert_eq!(answer["ok"], true, "{answer}");
    answer["queued"]
        .as_array()
        .unwrap()
        .iter()
        .map(|queued| queued["id"].as_str().unwrap().to_string())
        .collect()
}

/// One line of JSON to a TCP port that answers with one JSON value and closes.
pub fn tcp_line(address: &str, request: &str) -> Value {
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    serde_json::from_str(answer.trim()).unwrap_or_else(|e| panic!("{e}: {answer}"))
}

/// One HTTP request to `address` (host:port); returns the status code and the body.
/// Error statuses are answers to check, not failures.
pub fn http(
    method: &str,
    address: &str,
    path: &str,
    bearer: Option<&str>,
    body: &str,
) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into();
    let url = format!("http://{address}{path}");
    let authorization = bearer.map(|token| format!("Bearer {token}"));
    let answer = match method {
        "GET" => {
            let mut request = agent.get(&url);
            if let Some(authorization) = &authorization {
                request = request.header("Authorization", authorization);
            }
            request.call()
        }
        "POST" => {
            let mut request = agent.post(&url).content_type("application/json");
            if let Some(authorization) = &authorization {
                request = request.header("Authorization", authorization);
            }
            request.send(body)
        }
        other => panic!("no HTTP helper for {other}"),
    };
    let mut response = answer.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let text = response
        .body_mut()
        .read_to_string()
        .unwrap_or_else(|e| panic!("body of {method} {url}: {e}"));
    (response.status().as_u16(), text)
}

/// A value from Prometheus text: the first sample whose line starts with
/// `name_and_labels`; 0 when absent.
pub fn metric(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .find(|line| line.starts_with(name_and_labels))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
        .unwrap_or(0.0)
}

/// A web server on a free local port that answers every request with one HTML page,
/// for `httpGet`. Stops on drop.
pub struct StaticPage {
    /// `http://127.0.0.1:PORT/`.
    pub url: String,
    _runtime: tokio::runtime::Runtime,
}

/// Serve `body` as `text/html` at every path.
pub fn serve_page(body: &'static str) -> StaticPage {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let address = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback(move || async move { axum::response::Html(body) });
    runtime.spawn(async move { axum::serve(listener, app).await });
    StaticPage {
        url: format!("http://{address}/"),
        _runtime: runtime,
    }
}

/// Run `docker ARGS…`, assert success, return trimmed stdout.
pub fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().unwrap();
    assert!(out.status.success(), "docker {args:?}: {}", stderr(&out));
    stdout(&out).trim().to_string()
}

/// A name no other test run uses: `prefix` and the random tail of a ULID.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}{}", &bosun_proto::new_id()[16..]).to_lowercase()
}

/// Removes containers by name or id, and every container a set of nodes created, on drop.
pub struct DockerCleanup {
    /// Containers by name or id.
    pub names: Vec<String>,
    /// Nodes whose containers (label `org.bosun.node`) go too.
    pub nodes: Vec<String>,
}

impl Drop for DockerCleanup {
    fn drop(&mut self) {
        let mut ids = self.names.clone();
        for node in &self.nodes {
            let filter = format!("label=org.bosun.node={node}");
            if let Ok(out) = Command::new("docker")
                .args(["ps", "-aq", "--filter", &filter])
                .output()
            {
                ids.extend(stdout(&out).split_whitespace().map(str::to_string));
            }
        }
        if !ids.is_empty() {
            let _ = Command::new("docker")
                .args(["rm", "-f", "-v"])
                .args(&ids)
                .output();
        }
    }
}
