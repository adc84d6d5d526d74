//! The HTTP API against its own OpenAPI document: schemathesis (PyPI) sends every `/v1`
//! operation generated requests, valid and invalid, and checks each answer's status
//! code, content type and body against the document, and that nothing is a server
//! error. The node under test runs as nobody (uid 65534) when the test runs as root,
//! standalone, with its Docker socket pointing nowhere, so that what a generated message
//! asks for can touch nothing on this machine.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bosun_testkit::eventually;

use crate::support::bin;

const TOKEN: &str = "schemathesis-token-0123456789";

/// The node, killed when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// A plain GET: (status, body).
fn get(url: &str, token: Option<&str>) -> Option<(u16, String)> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let mut request = agent.get(url);
    if let Some(token) = token {
        request = request.header("Authorization", format!("Bearer {token}"));
    }
    let answer = request.call().ok()?;
    let status = answer.status().as_u16();
    Some((
        status,
        answer.into_body().read_to_string().unwrap_or_default(),
    ))
}

/// Start a standalone node with the API on `address`, as nobody when we are root.
fn start_node(dir: &Path, address: &str) -> Running {
    use std::os::unix::fs::PermissionsExt;
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    // Docker is out of reach whatever the socket's mode on this machine.
    std::fs::write(
        data.join("bosun.toml"),
        "docker_socket = \"/nonexistent/docker.sock\"\n",
    )
    .unwrap();
    let root = nix_is_root();
    let mut command = if root {
        // The test's folder must be passable for nobody to reach the data dir.
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        for path in [&data, &data.join("bosun.toml")] {
            std::os::unix::fs::chown(path, Some(65534), Some(65534)).unwrap();
        }
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(bin());
        c
    } else {
        Command::new(bin())
    };
    let log = std::fs::File::create(dir.join("node.log")).unwrap();
    let child = command
        .args(["node", "--name", "apitest", "--data-dir"])
        .arg(&data)
        .env("HOME", &data)
        .env("BOSUN_HTTP_LISTEN", address)
        .env("BOSUN_HTTP_TOKEN", TOKEN)
        .env_remove("BOSUN_BROKER")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start the node");
    Running(child)
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1).map(|uid| uid == "0"))
        .unwrap_or(false)
}

#[test]
fn the_api_keeps_to_its_openapi_document_under_generated_requests() {
    let Some(schemathesis) = which("schemathesis") else {
        assert!(
            std::env::var_os("BOSUN_REQUIRE_NATS").is_none()
                && std::env::var_os("BOSUN_REQUIRE_DOCKER").is_none(),
            "schemathesis is not installed (./scripts/test installs it with pip)"
        );
        eprintln!("skipped: no schemathesis");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let address = format!("127.0.0.1:{}", bosun_testkit::free_port());
    let base = format!("http://{address}");
    let _node = start_node(dir.path(), &address);
    eventually(Duration::from_secs(30), "the API answers", || {
        get(&format!("{base}/healthz"), None)
            .filter(|(code, _)| *code == 200)
            .map(|_| ())
    });

    // The document needs no token and describes the twelve /v1 operations.
    let (code, text) = get(&format!("{base}/v1/openapi.json"), None).unwrap();
    assert_eq!(code, 200, "{text}");
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{doc}");
    let operations: usize = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|item| item.as_object().unwrap().len())
        .sum();
    assert_eq!(operations, 12);
    // Every other route still needs it.
    assert_eq!(get(&format!("{base}/v1/nodes"), None).unwrap().0, 401);

    // Known deviations, each for a reason the document cannot state:
    // - 502 and 504 are the answers for "the node ran it and it failed" and "no result in
    //   time" (here: Docker is unreachable on purpose); documented, and not a crash. A
    //   500 still fails the run.
    // - A message or a container spec valid by its JSON schema can still be refused for
    //   rules JSON schema does not state (a destination this node can reach, exactly one
    //   of image/template/raw, a method's own arguments), so those two bodies are not
    //   required to be accepted; every refusal must still be a documented 400.
    let config = dir.path().join("schemathesis.toml");
    std::fs::write(
        &config,
        r#"[checks.not_a_server_error]
expected-statuses = ["2xx", "3xx", "4xx", "502", "504"]

[[operations]]
include-path-regex = "^/v1/(messages|containers)$"
include-method = "POST"
checks.positive_data_acceptance.enabled = false
"#,
    )
    .unwrap();
    let mut run = Command::new(schemathesis)
        .arg("--config-file")
        .arg(&config)
        .args(["run", &format!("{base}/v1/openapi.json")])
        .args(["--header", &format!("Authorization: Bearer {TOKEN}")])
        .args(["--max-examples", "25", "--workers", "2", "--seed", "7"])
        .args(["--request-timeout", "60", "--max-time", "60"])
        .current_dir(dir.path())
        .env("NO_COLOR", "1")
        .stdout(std::fs::File::create(dir.path().join("schemathesis.out")).unwrap())
        .stderr(std::fs::File::create(dir.path().join("schemathesis.err")).unwrap())
        .spawn()
        .expect("run schemathesis");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = run.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(180) {
            let _ = run.kill();
            panic!("schemathesis ran for more than 3 minutes (its budget is 60 s)");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap_or_default();
    let report = read("schemathesis.out");
    let node_log = read("node.log");
    assert!(
        status.success(),
        "schemathesis found disagreements:\n{report}\n{}",
        read("schemathesis.err")
    );
    assert!(
        report.contains("Tested: 12"),
        "every operation was tested:\n{report}"
    );
    assert!(!node_log.contains("panicked"), "{node_log}");
    // The node is still up and answering.
    assert_eq!(get(&format!("{base}/healthz"), None).unwrap().0, 200);
}
