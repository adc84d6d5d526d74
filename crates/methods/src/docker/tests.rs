//! Tests against the real Docker engine (skipped, with a `SKIP:` line, when there is
//! none, unless `BOSUN_REQUIRE_DOCKER=1`), and of the pure parts without it.
//!
//! Every container is named `bosun-t-<test>-<id>` and removed when its test ends,
//! however it ends.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bosun_proto::{Message, Method, Outcome, Status, new_id};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{ChunkSink, Context, test_context};

/// Run a container or image method as the node would.
async fn run(method: Method, message: &Message, context: &Context, chunks: &ChunkSink) -> Outcome {
    crate::run(
        method,
        message,
        context,
        chunks,
        &crate::ProcessSink::none(),
        &crate::SubmitSink::none(),
    )
    .await
    .outcome
}

/// Names of the containers a test made; `docker rm -f` on each when dropped.
struct Cleanup(Vec<String>);

impl Cleanup {
    fn new() -> Self {
        Cleanup(Vec::new())
    }

    /// A fresh container name for `test`, removed at the end.
    fn name(&mut self, test: &str) -> String {
        let name = format!("bosun-t-{test}-{}", new_id().to_lowercase());
        self.0.push(name.clone());
        name
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for name in &self.0 {
            let _ = Command::new("docker")
                .args(["rm", "-f", "-v", name])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// The test image and a context, or `None` (skip) when there is no Docker.
fn setup() -> Option<(String, Context)> {
    let image = bosun_testkit::docker_test_image()?;
    Some((image, context()))
}

fn context() -> Context {
    test_context("n1", Default::default())
}

fn message(method: Method, data: &[&str]) -> Message {
    Message {
        id: Some(new_id()),
        method: method.to_string(),
        data: data.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

async fn call(context: &Context, method: Method, data: &[&str]) -> Outcome {
    run(method, &message(method, data), context, &ChunkSink::none()).await
}

/// stdout of a call that must succeed.
async fn ok(context: &Context, method: Method, data: &[&str]) -> String {
    let o = call(context, method, data).await;
    assert_eq!(o.status, Status::Done, "{method} {data:?}: {o:?}");
    o.stdout
}

/// The error of a call that must fail.
async fn fails(context: &Context, method: Method, data: &[&str]) -> String {
    let o = call(context, method, data).await;
    assert_eq!(o.status, Status::Failed, "{method} {data:?}: {o:?}");
    o.error.unwrap_or_default()
}

/// `containerRun` of `spec`; the full id.
async fn start_container(context: &Context, spec: Value) -> String {
    let stdout = ok(context, Method::ContainerRun, &[&spec.to_string()]).await;
    stdout.trim_end().to_string()
}

async fn inspect(context: &Context, id: &str) -> Value {
    let stdout = ok(context, Method::ContainerInspect, &[id]).await;
    serde_json::from_str(&stdout).expect("inspect answers JSON")
}

/// Poll inspect until `State.Status` is `status`; the last inspect.
async fn wait_status(context: &Context, id: &str, status: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let details = inspect(context, id).await;
        if details["State"]["Status"] == status {
            return details;
        }
        assert!(
            Instant::now() < deadline,
            "{id} never became {status}: {}",
            details["State"]
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Poll the logs until they contain `needle`.
async fn wait_logs(context: &Context, id: &str, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let logs = ok(context, Method::ContainerLogs, &[id]).await;
        if logs.contains(needle) {
            return logs;
        }
        assert!(
            Instant::now() < deadline,
            "logs of {id} never had {needle:?}: {logs:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A script that exits with `code` on SIGTERM, once it has said `ready`.
fn term_trap(code: u8) -> Vec<String> {
    vec![
        "sh".into(),
        "-c".into(),
        format!(
            "trap 'echo got TERM; exit {code}' TERM; echo ready; while true; do sleep 0.1; done"
        ),
    ]
}

#[tokio::test]
async fn run_keeps_argv_labels_env_memory_restart_and_ports() {
    let Some((image, ctx)) = setup() else { return };
    let mut cleanup = Cleanup::new();
    let name = cleanup.name("run-and-kill");
    let port = bosun_testkit::free_port();
    let spec = json!({
        "image": image,
        "name": name,
        "command": ["sh", "-c", "echo 'a  b'; sleep 30"],
        "env": ["GREETING=hello  world"],
        "labels": {"team": "blue"},
        "memoryMb": 64,
        "restart": "on-failure:3",
        "ports": [format!("{port}:80")],
    });
    let m = message(Method::ContainerRun, &[&spec.to_string()]);
    let o = run(Method::ContainerRun, &m, &ctx, &ChunkSink::none()).await;
    assert_eq!(o.status, Status::Done, "{o:?}");
    let id = o
        .stdout
        .strip_suffix('\n')
        .expect("the id ends with a newline");
    assert_eq!(id.len(), 64, "the full id: {id:?}");
    assert!(id.chars().all(|c| c.is_ascii_hexdigit()), "{id:?}");

    let details = wait_status(&ctx, id, "running").await;
    assert_eq!(details["Id"], id);
    assert_eq!(details["Name"], format!("/{name}"));
    assert_eq!(
        details["Config"]["Cmd"],
        json!(["sh", "-c", "echo 'a  b'; sleep 30"]),
        "the argv is kept, never split"
    );
    let labels = &details["Config"]["Labels"];
    assert_eq!(labels["team"], "blue");
    assert_eq!(labels["org.bosun.node"], "n1");
    assert_eq!(labels["org.bosun.message"], m.id.clone().unwrap());
    let env = details["Config"]["Env"].as_array().unwrap();
    assert!(env.contains(&json!("GREETING=hello  world")), "{env:?}");
    let host = &details["HostConfig"];
    assert_eq!(host["Memory"], 64 * 1024 * 1024);
    assert_eq!(host["RestartPolicy"]["Name"], "on-failure");
    assert_eq!(host["RestartPolicy"]["MaximumRetryCount"], 3);
    assert_eq!(
        host["PortBindings"]["80/tcp"][0]["HostPort"],
        port.to_string()
    );
    assert!(
        details["Config"]["ExposedPorts"]
            .as_object()
            .unwrap()
            .contains_key("80/tcp")
    );

    let logs = wait_logs(&ctx, id, "a  b\n").await;
    assert_eq!(logs, "a  b\n", "the shell got the argv unsplit");

    // By name, with SIGKILL: the shell cannot trap it.
    let said = ok(&ctx, Method::ContainerKill, &[&name, "SIGKILL"]).await;
    assert_eq!(said, format!("sent SIGKILL to {name}\n"));
    let details = wait_status(&ctx, id, "exited").await;
    assert_eq!(details["State"]["ExitCode"], 137);
}

#[tokio::test]
async fn stop_lets_the_container_end_itself() {
    let Some((image, ctx)) = setup() else { return };
    let mut cleanup = Cleanup::new();
    let spec = json!({
        "image": image,
        "name": cleanup.name("stop"),
        "command": term_trap(7),
    });
    let id = start_container(&ctx, spec).await;
    wait_logs(&ctx, &id, "ready").await;
    let t = Instant::now();
    let said = ok(&ctx, Method::ContainerStop, &[&id[..12], "20"]).await;
    assert_eq!(said, format!("stopped {}\n", &id[..12]));
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "SIGTERM, not the 20 s SIGKILL"
    );
    let details = wait_status(&ctx, &id, "exited").await;
    assert_eq!(
        details["State"]["ExitCode"], 7,
        "the container's own exit code: a stop, not a kill"
    );
    wait_logs(&ctx, &id, "got TERM").await;

    let error = fails(&ctx, Method::ContainerStop, &[&id, "soon"]).await;
    assert!(error.contains("whole seconds"), "{error}");
}

#[tokio::test]
async fn kill_sends_sigterm_unless_told_otherwise() {
    let Some((image, ctx)) = setup() else { return };
    let mut cleanup = Cleanup::new();
    let spec = json!({
        "image": image,
        "name": cleanup.name("kill-term"),
        "command": term_trap(3),
    });
    let id = start_container(&ctx, spec).await;
    wait_logs(&ctx, &id, "ready").await;
    let said = ok(&ctx, Method::ContainerKill, &[&id]).await;
    assert!(said.starts_with("sent SIGTERM to "), "{said}");
    let details = wait_status(&ctx, &id, "exited").await;
    assert_eq!(details["State"]["ExitCode"], 3, "the TERM trap ran");

    // The daemon's own words come back for what it refuses.
    let error = fails(&ctx, Method::ContainerKill, &[&id, "9"]).await;
    assert!(
        error.starts_with(&format!("cannot kill {id}: the Docker daemon said: ")),
        "{error}"
    );
    assert!(error.contains("not running"), "{error}");
    let error = fails(&ctx, Method::ContainerKill, &[&id, "KILL; rm"]).await;
    assert!(error.contains("not a signal"), "{error}");
}

#[tokio::test]
async fn pause_and_unpause_change_the_state() {
    let Some((image, ctx)) = setup() else { return };
    let mut cleanup = Cleanup::new();
    let name = cleanup.name("pause");
    let spec = json!({"image": image, "name": name, "command": ["sleep", "30"]});
    let id = start_container(&ctx, spec).await;
    assert_eq!(
        ok(&ctx, Method::ContainerPause, &[&name]).await,
        format!("paused {name}\n")
    );
    let details = inspect(&ctx, &id).await;
    assert_eq!(details["State"]["Status"], "paused");
    assert_eq!(details["State"]["Paused"], true);
    ok(&ctx, Method::ContainerUnpause, &[&name]).await;
    let details = inspect(&ctx, &id).await;
    assert_eq!(details["State"]["Status"], "running");
    assert_eq!(details["State"]["Paused"], false);
}

#[tokio::test]
async fn remove_needs_force_for_a_running_container() {
    let Some((image, ctx)) = setup() else { return };
    let mut cleanup = Cleanup::new();
    let name = cleanup.name("remove");
    let spec = json!({"image": image, "name": name, "command": ["sleep", "30"]});
    let id = start_container(&ctx, spec).await;
    let error = fails(&ctx, Method::ContainerRemove, &[&name]).await;
    assert!(
        error.starts_with(&format!("cannot remove {name}: the Docker daemon said: ")),
        "{error}"
    );
    assert!(error.contains("force"), "{error}");
    let error = fails(&ctx, Method::ContainerRemove, &[&name, "now"]).await;
    assert!(error.contains("\"force\""), "{error}");
    assert_eq!(
        ok(&ctx, Method::ContainerRemove, &[&name, "force"]).await,
        format!("removed {name}\n")
    );
    let error = fails(&ctx, Method::ContainerInspect, &[&id]).await;
    assert!(
        error.starts_with(&format!("no such container: {id}")),
        "{error}"
    );

    // A container that never ran goes without force.
    let created = json!({"image": image, "name": cleanup.name("remove-created")});
    let stdout = ok(&ctx, Method::ContainerCreate, &[&created.to_string()]).await;
    ok(&ctx, Method::ContainerRemove, &[stdout.trim()]).await;
}

#[tokio::test]
async fn create_then_start_and_restart() {
    let Some((image, ctx)) = setup() else { return };
    let mut cleanup = Cleanup::new();
    let spec = json!({
        "image": image,
        "name": cleanup.name("create"),
        "command": ["sleep", "30"],
    });
    let stdout = ok(&ctx, Method::ContainerCreate, &[&spec.to_string()]).await;
    let id = stdout.trim_end();
    assert_eq!(stdout.len(), 65, "{stdout:?}");
    assert_eq!(inspect(&ctx, id).await["State"]["Status"], "created");
    ok(&ctx, Method::ContainerStart, &[id]).await;
    let before = wait_status(&ctx, id, "running").await;
    let said = ok(&ctx, Method::ContainerRestart, &[id, "1"]).await;
    assert_eq!(said, format!("restarted {id}\n"));
    let after = wait_status(&ctx, id, "running").await;
    assert_ne!(
        before["State"]["StartedAt"], after["State"]["StartedAt"],
        "started again"
    );
}

#[tokio::test]
async fn list_shows_running_or_all_filtered_by_label() {
    let Some((image, ctx)) = setup() else { return };
    let mut cleanup = Cleanup::new();
    let mark = new_id().to_lowercase();
    let running = cleanup.name("list-running");
    let created = cleanup.name("list-created");
    let labels = json!({"org.bosun.test": mark});
    start_container(
        &ctx,
        json!({"image": image, "name": running, "command": ["sleep", "30"], "labels": labels}),
    )
    .await;
    let spec = json!({"image": image, "name": created, "labels": labels});
    ok(&ctx, Method::ContainerCreate, &[&spec.to_string()]).await;

    let filter = format!("label=org.bosun.test={mark}");
    let list = |data: Vec<String>| {
        let ctx = ctx.clone();
        async move {
            let data: Vec<&str> = data.iter().map(String::as_str).collect();
            let stdout = ok(&ctx, Method::ContainerList, &data).await;
            serde_json::from_str::<Vec<Value>>(&stdout).expect("a JSON array")
        }
    };
    let rows = list(vec!["running".into(), filter.clone()]).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    let row = &rows[0];
    assert_eq!(row["names"], json!([running]));
    assert_eq!(row["state"], "running");
    assert_eq!(row["node"], "n1");
    assert_eq!(row["image"], image);
    assert_eq!(row["labels"]["org.bosun.test"], mark);
    assert_eq!(row["labels"]["org.bosun.node"], "n1");
    assert_eq!(row["id"].as_str().unwrap().len(), 64);
    assert!(row["status"].as_str().unwrap().starts_with("Up"), "{row}");

    let rows = list(vec!["all".into(), filter.clone()]).await;
    let mut names: Vec<&str> = rows.iter().filter_map(|r| r["names"][0].as_str()).collect();
    names.sort();
    let mut expected = vec![created.as_str(), running.as_str()];
    expected.sort();
    assert_eq!(names, expected);

    let error = fails(&ctx, Method::ContainerList, &["everything"]).await;
    assert!(error.contains("\"all\""), "{error}");
    let error = fails(&ctx, Method::ContainerList, &["all", "name=x"]).await;
    assert!(error.contains("label=KEY=VALUE"), "{error}");
}

#[tokio::test]
async fn logs_hold_both_streams_and_keep_the_newest_when_cut() {
    let Some((image, ctx)) = setup() else { return };
    let mut cleanup = Cleanup::new();
    let spec = json!({
        "image": image,
        "name": cleanup.name("logs"),
        "command": ["sh", "-c", "echo out1; echo err1 >&2; echo out2"],
    });
    let id = start_container(&ctx, spec).await;
    wait_status(&ctx, &id, "exited").await;
    let o = call(&ctx, Method::ContainerLogs, &[&id]).await;
    assert_eq!(o.status, Status::Done, "{o:?}");
    for line in ["out1\n", "err1\n", "out2\n"] {
        assert!(o.stdout.contains(line), "{:?}", o.stdout);
    }
    assert_eq!(o.stdout.len(), 15);
    assert!(!o.truncated);

    let small = Context {
        output_limit: 200,
        ..ctx.clone()
    };
    let spec = json!({
        "image": image,
        "name": cleanup.name("logs-cut"),
        "command": ["seq", "1", "1000"],
    });
    let id = start_container(&ctx, spec).await;
    wait_status(&ctx, &id, "exited").await;
    let o = call(&small, Method::ContainerLogs, &[&id]).await;
    assert_eq!(o.status, Status::Done, "{o:?}");
    assert!(o.truncated);
    assert!(o.stdout.len() <= 200, "{}", o.stdout.len());
    assert!(
        o.stdout.ends_with("999\n1000\n"),
        "the newest lines are kept"
    );
    let first = o.stdout.lines().next().unwrap();
    assert!(
        first.parse::<u32>().is_ok(),
        "starts at a whole line: {first:?}"
    );

    let error = fails(&ctx, Method::ContainerLogs, &[&id, "tail"]).await;
    assert!(error.contains("\"follow\""), "{error}");
}

#[tokio::test]
async fn followed_logs_stream_until_the_container_stops_or_time_runs_out() {
    let Some((image, ctx)) = setup() else { return };
    let mut cleanup = Cleanup::new();
    let spec = json!({
        "image": image,
        "name": cleanup.name("logs-follow"),
        // The rest waits for the test to create /tmp/go, once line0 has arrived.
        "command": ["sh", "-c", "echo line0; while [ ! -e /tmp/go ]; do sleep 0.05; done; for i in 1 2 3; do echo line$i; done"],
    });
    let id = start_container(&ctx, spec).await;
    let (tx, mut rx) = mpsc::channel(64);
    let m = message(Method::ContainerLogs, &[&id, "follow"]);
    let task = {
        let ctx = ctx.clone();
        tokio::spawn(async move { run(Method::ContainerLogs, &m, &ctx, &ChunkSink::new(tx)).await })
    };
    let first = tokio::time::timeout(Duration::from_secs(15), rx.recv())
        .await
        .expect("the first line comes while the container still runs")
        .expect("a chunk");
    assert_eq!(first, "line0\n");
    let go = Command::new("docker")
        .args(["exec", &id, "touch", "/tmp/go"])
        .status()
        .unwrap();
    assert!(go.success(), "docker exec touch /tmp/go");
    let outcome = tokio::time::timeout(Duration::from_secs(15), task)
        .await
        .expect("the follow ends when the container stops")
        .unwrap();
    assert_eq!(outcome.status, Status::Done, "{outcome:?}");
    assert!(outcome.stdout.is_empty(), "the logs went out as chunks");
    let mut rest = String::new();
    while let Ok(chunk) = rx.try_recv() {
        rest.push_str(&chunk);
    }
    assert_eq!(rest, "line1\nline2\nline3\n");

    // A container that keeps running: the follow ends, done, at methodTimeout.
    let spec = json!({
        "image": image,
        "name": cleanup.name("logs-follow-timeout"),
        "command": ["sh", "-c", "echo hi; sleep 30"],
    });
    let id = start_container(&ctx, spec).await;
    let mut m = message(Method::ContainerLogs, &[&id, "follow"]);
    m.method_timeout = Some(1);
    let (tx, mut rx) = mpsc::channel(64);
    let t = Instant::now();
    let outcome = run(Method::ContainerLogs, &m, &ctx, &ChunkSink::new(tx)).await;
    assert_eq!(outcome.status, Status::Done, "{outcome:?}");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert_eq!(rx.recv().await.as_deref(), Some("hi\n"));
}

#[tokio::test]
async fn method_timeout_and_shutdown_end_a_call_early() {
    let Some((image, ctx)) = setup() else { return };
    let mut cleanup = Cleanup::new();
    let spec = json!({
        "image": image,
        "name": cleanup.name("timeout"),
        "command": ["sh", "-c", "trap '' TERM; echo ready; while true; do sleep 0.1; done"],
    });
    let id = start_container(&ctx, spec).await;
    wait_logs(&ctx, &id, "ready").await;
    // TERM is ignored, so the daemon would wait the full 20 s before SIGKILL.
    let mut m = message(Method::ContainerStop, &[&id, "20"]);
    m.method_timeout = Some(1);
    let t = Instant::now();
    let o = run(Method::ContainerStop, &m, &ctx, &ChunkSink::none()).await;
    assert_eq!(o.status, Status::Timeout, "{o:?}");
    assert!(o.error.unwrap().contains("methodTimeout of 1s"));
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());

    let stop = CancellationToken::new();
    let ctx = Context {
        shutdown: stop.clone(),
        ..ctx
    };
    let m = message(Method::ContainerLogs, &[&id, "follow"]);
    let (tx, mut chunks) = mpsc::channel(64);
    let task =
        tokio::spawn(
            async move { run(Method::ContainerLogs, &m, &ctx, &ChunkSink::new(tx)).await },
        );
    // The logs so far have come: the follow is under way.
    tokio::time::timeout(Duration::from_secs(10), chunks.recv())
        .await
        .expect("the logs so far arrive");
    stop.cancel();
    let o = tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("shutdown ends the follow")
        .unwrap();
    assert_eq!(o.status, Status::Interrupted, "{o:?}");
}

#[tokio::test]
async fn stats_give_one_sample_with_the_figures() {
    let Some((image, ctx)) = setup() else { return };
    let mut cleanup = Cleanup::new();
    let spec = json!({
        "image": image,
        "name": cleanup.name("stats"),
        "command": ["sleep", "30"],
        "memoryMb": 64,
    });
    let id = start_container(&ctx, spec).await;
    let stdout = ok(&ctx, Method::ContainerStats, &[&id]).await;
    let stats: Value = serde_json::from_str(&stdout).unwrap();
    for field in [
        "cpuPercent",
        "memoryBytes",
        "memoryLimitBytes",
        "networkRxBytes",
        "networkTxBytes",
        "blockReadBytes",
        "blockWriteBytes",
    ] {
        assert!(stats[field].is_number(), "{field}: {stats}");
    }
    assert_eq!(stats["id"], id);
    assert_eq!(stats["memoryLimitBytes"], 64 * 1024 * 1024);
    assert!(stats["memoryBytes"].as_u64().unwrap() > 0, "{stats}");
}

#[tokio::test]
async fn a_template_is_laid_under_the_spec() {
    let Some((image, mut ctx)) = setup() else {
        return;
    };
    let mut cleanup = Cleanup::new();
    let templates = tempdir();
    ctx.templates_dir = templates.clone();
    let template = json!({
        "Image": image,
        "Cmd": ["sleep", "30"],
        "Env": ["A=1", "B=2"],
        "Labels": {"from": "template", "keep": "yes", "org.bosun.node": "forged"},
        "HostConfig": {"Memory": 32 * 1024 * 1024},
    });
    std::fs::write(templates.join("sleeper.json"), template.to_string()).unwrap();
    let spec = json!({
        "template": "sleeper",
        "name": cleanup.name("template"),
        "env": ["B=3"],
        "labels": {"from": "spec"},
    });
    let id = start_container(&ctx, spec).await;
    let details = inspect(&ctx, &id).await;
    let config = &details["Config"];
    assert_eq!(config["Image"], image);
    assert_eq!(config["Cmd"], json!(["sleep", "30"]));
    let env = config["Env"].as_array().unwrap();
    assert!(env.contains(&json!("A=1")), "{env:?}");
    assert!(env.contains(&json!("B=3")), "{env:?}");
    assert!(!env.contains(&json!("B=2")), "the spec's B wins: {env:?}");
    assert_eq!(config["Labels"]["from"], "spec");
    assert_eq!(config["Labels"]["keep"], "yes");
    assert_eq!(config["Labels"]["org.bosun.node"], "n1");
    assert_eq!(details["HostConfig"]["Memory"], 32 * 1024 * 1024);
    assert_eq!(details["State"]["Status"], "running");

    // The spec's command and memory win too.
    let spec = json!({
        "template": "sleeper",
        "name": cleanup.name("template-override"),
        "command": ["sleep", "29"],
        "memoryMb": 48,
    });
    let stdout = ok(&ctx, Method::ContainerCreate, &[&spec.to_string()]).await;
    let details = inspect(&ctx, stdout.trim()).await;
    assert_eq!(details["Config"]["Cmd"], json!(["sleep", "29"]));
    assert_eq!(details["HostConfig"]["Memory"], 48 * 1024 * 1024);

    let error = fails(&ctx, Method::ContainerRun, &[r#"{"template":"nosuch"}"#]).await;
    let looked = templates.join("nosuch.json");
    assert!(
        error.contains(&looked.display().to_string()),
        "says where it looked: {error}"
    );
    std::fs::write(templates.join("broken.json"), "{").unwrap();
    let error = fails(&ctx, Method::ContainerRun, &[r#"{"template":"broken"}"#]).await;
    assert!(
        error.contains("not Docker create-container JSON"),
        "{error}"
    );
    let _ = std::fs::remove_dir_all(&templates);
}

#[tokio::test]
async fn a_missing_image_fails_the_pull_cleanly() {
    let Some((_, ctx)) = setup() else { return };
    let mut cleanup = Cleanup::new();
    let t = Instant::now();
    let spec = json!({"image": "nosuch/image:1", "name": cleanup.name("no-image")});
    let error = fails(&ctx, Method::ContainerRun, &[&spec.to_string()]).await;
    assert!(
        error.starts_with("cannot pull nosuch/image:1: the Docker daemon said: "),
        "{error}"
    );
    let error = fails(&ctx, Method::ImagePull, &["nosuch/image:1"]).await;
    assert!(
        error.starts_with("cannot pull nosuch/image:1: the Docker daemon said: "),
        "{error}"
    );
    assert!(t.elapsed() < Duration::from_secs(30), "{:?}", t.elapsed());

    let error = fails(&ctx, Method::ImagePull, &["nosuch/image:1", "%%%"]).await;
    assert!(error.contains("auth is not base64"), "{error}");
    let error = fails(&ctx, Method::ImagePull, &["nosuch/image:1", "bm90IGpzb24="]).await;
    assert!(error.contains("auth JSON"), "{error}");
    let error = fails(&ctx, Method::ImagePull, &[]).await;
    assert!(error.contains("data[0]"), "{error}");
    let error = fails(&ctx, Method::ImagePull, &["alpine:3 --all"]).await;
    assert!(error.contains("not an image reference"), "{error}");
}

#[tokio::test]
async fn a_missing_container_is_a_clear_failure() {
    let Some((_, ctx)) = setup() else { return };
    let missing = format!("bosun-t-missing-{}", new_id().to_lowercase());
    for method in [
        Method::ContainerStart,
        Method::ContainerStop,
        Method::ContainerRestart,
        Method::ContainerKill,
        Method::ContainerPause,
        Method::ContainerUnpause,
        Method::ContainerRemove,
        Method::ContainerInspect,
        Method::ContainerStats,
        Method::ContainerLogs,
    ] {
        let error = fails(&ctx, method, &[&missing]).await;
        assert!(
            error.starts_with(&format!("no such container: {missing}")),
            "{method}: {error}"
        );
    }
    let error = fails(&ctx, Method::ContainerLogs, &[&missing, "follow"]).await;
    assert!(error.starts_with("no such container: "), "{error}");
    for bad in ["../../images/json", "a b", "x?all=1"] {
        let error = fails(&ctx, Method::ContainerInspect, &[bad]).await;
        assert!(error.contains("is not a container id or name"), "{error}");
    }
    let error = fails(&ctx, Method::ContainerStart, &[]).await;
    assert!(error.starts_with("no container given"), "{error}");
}

#[tokio::test]
async fn bad_specs_are_refused_with_the_reason() {
    let Some((_, ctx)) = setup() else { return };
    for (data, expected) in [
        (vec![], "no container spec"),
        (vec!["{not json"], "not a valid container spec"),
        (vec![r#"{"image":"x","bogus":1}"#], "unknown field `bogus`"),
        (vec![r#"{"image":"x","ports":["80"]}"#], "HOST:CONTAINER"),
        (vec![r#"{"image":"x","restart":"sometimes"}"#], "policy"),
        (vec![r#"{"name":"x"}"#], "give `image` or `template`"),
        (vec![r#"{"image":"x","auth":"!!"}"#], "auth is not base64"),
        (vec![r#"{"image":"bad image"}"#], "not an image reference"),
    ] {
        for method in [Method::ContainerRun, Method::ContainerCreate] {
            let error = fails(&ctx, method, &data).await;
            assert!(error.contains(expected), "{data:?}: {error}");
        }
    }
}

#[tokio::test]
async fn image_list_has_the_test_image() {
    let Some((image, ctx)) = setup() else { return };
    let stdout = ok(&ctx, Method::ImageList, &[]).await;
    let images: Vec<Value> = serde_json::from_str(&stdout).unwrap();
    let ours = images
        .iter()
        .find(|i| i["tags"].as_array().unwrap().contains(&json!(image)))
        .unwrap_or_else(|| panic!("{image} not in {stdout}"));
    assert!(
        ours["id"].as_str().unwrap().starts_with("sha256:"),
        "{ours}"
    );
    assert!(ours["sizeBytes"].as_i64().unwrap() > 0, "{ours}");
}

/// Needs no Docker: a socket nobody listens on.
#[tokio::test]
async fn an_unreachable_daemon_is_named() {
    let dir = tempdir();
    let dead = dir.join("docker.sock");
    // A socket file with no listener (connection refused) and no file at all.
    let listener = std::os::unix::net::UnixListener::bind(&dead).unwrap();
    drop(listener);
    for socket in [dead.clone(), dir.join("absent.sock")] {
        let ctx = Context {
            docker_socket: socket.clone(),
            ..context()
        };
        for method in [
            Method::ContainerRun,
            Method::ContainerStop,
            Method::ContainerList,
            Method::ContainerLogs,
            Method::ImagePull,
            Method::ImageList,
        ] {
            let error = fails(&ctx, method, &["x"]).await;
            let expected = format!("cannot reach the Docker daemon at {}: ", socket.display());
            assert!(error.starts_with(&expected), "{method}: {error}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn tempdir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("bosun-docker-test-{}", new_id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The parts that need no daemon.
mod pure {
    use bollard::models::{ContainerCreateBody, HostConfig};
    use bosun_proto::container::ContainerSpec;
    use serde_json::json;

    use super::super::create::{build_body, decode_auth, restart_policy};
    use super::super::image::split_ref;
    use super::super::query::summarize;

    #[test]
    fn the_spec_is_laid_over_the_template() {
        let template = ContainerCreateBody {
            image: Some("base:1".into()),
            cmd: Some(vec!["a".into()]),
            env: Some(vec!["A=1".into(), "B=2".into()]),
            host_config: Some(HostConfig {
                memory: Some(1),
                ..Default::default()
            }),
            ..Default::default()
        };
        let spec = ContainerSpec {
            image: Some("over:2".into()),
            env: vec!["B=3".into(), "C=4=5".into()],
            memory_mb: Some(16),
            ports: vec!["8080:80".into(), "8081:80".into(), "53:53/udp".into()],
            restart: Some("unless-stopped".into()),
            ..Default::default()
        };
        let body = build_body(&spec, Some(template), "n1", "m1").unwrap();
        assert_eq!(body.image.as_deref(), Some("over:2"));
        assert_eq!(body.cmd, Some(vec!["a".to_string()]), "kept when not given");
        assert_eq!(
            body.env,
            Some(vec!["A=1".into(), "B=3".into(), "C=4=5".into()])
        );
        let labels = body.labels.unwrap();
        assert_eq!(labels["org.bosun.node"], "n1");
        assert_eq!(labels["org.bosun.message"], "m1");
        let host = body.host_config.unwrap();
        assert_eq!(host.memory, Some(16 * 1024 * 1024));
        let bindings = host.port_bindings.unwrap();
        let ports: Vec<_> = bindings["80/tcp"]
            .iter()
            .flatten()
            .map(|b| b.host_port.clone().unwrap())
            .collect();
        assert_eq!(ports, ["8080", "8081"]);
        assert!(bindings.contains_key("53/udp"));
        let mut exposed = body.exposed_ports.unwrap();
        exposed.sort();
        assert_eq!(exposed, ["53/udp", "80/tcp"]);
        assert_eq!(
            serde_json::to_value(host.restart_policy.unwrap()).unwrap()["Name"],
            "unless-stopped"
        );
    }

    #[test]
    fn restart_policies_parse() {
        let p = restart_policy("on-failure:5").unwrap();
        assert_eq!(p.maximum_retry_count, Some(5));
        assert!(restart_policy("on-failure:x").is_err());
        assert!(restart_policy("sometimes").is_err());
        assert!(restart_policy("always:3").is_err());
    }

    #[test]
    fn image_references_split_into_name_and_tag() {
        let s = |r: &str| split_ref(r).map(|(n, t)| format!("{n} {t}"));
        assert_eq!(s("alpine").unwrap(), "alpine latest");
        assert_eq!(s("alpine:3").unwrap(), "alpine 3");
        assert_eq!(
            s("registry:5000/team/app").unwrap(),
            "registry:5000/team/app latest"
        );
        assert_eq!(
            s("registry:5000/team/app:v2").unwrap(),
            "registry:5000/team/app v2"
        );
        assert_eq!(s("app@sha256:abc").unwrap(), "app sha256:abc");
        for bad in ["", "alpine:", "a b", "-x", "x?y", "app@"] {
            assert!(split_ref(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn auth_is_base64_of_the_docker_auth_json() {
        use base64::Engine;
        let raw = json!({"username": "u", "password": "p", "serveraddress": "r:5000"});
        let encoded = base64::engine::general_purpose::URL_SAFE.encode(raw.to_string());
        let creds = decode_auth(&encoded).unwrap();
        assert_eq!(creds.username.as_deref(), Some("u"));
        assert_eq!(creds.password.as_deref(), Some("p"));
        assert_eq!(creds.serveraddress.as_deref(), Some("r:5000"));
        let secret = base64::engine::general_purpose::STANDARD.encode(r#"{"password": 12345}"#);
        let error = decode_auth(&secret).unwrap_err();
        let error = error.to_string();
        assert!(!error.contains("12345"), "the secret stays out: {error}");
    }

    #[test]
    fn stats_are_summed_as_docker_stats_does() {
        let sample = json!({
            "id": "abc",
            "name": "/web",
            "cpu_stats": {"cpu_usage": {"total_usage": 3_000}, "system_cpu_usage": 20_000, "online_cpus": 2},
            "precpu_stats": {"cpu_usage": {"total_usage": 1_000}, "system_cpu_usage": 10_000},
            "memory_stats": {"usage": 5_000, "limit": 100_000, "stats": {"total_inactive_file": 1_000}},
            "networks": {"eth0": {"rx_bytes": 10, "tx_bytes": 20}, "eth1": {"rx_bytes": 1, "tx_bytes": 2}},
            "blkio_stats": {"io_service_bytes_recursive": [
                {"major": 8, "minor": 0, "op": "Read", "value": 100},
                {"major": 8, "minor": 0, "op": "Write", "value": 50},
                {"major": 8, "minor": 0, "op": "Total", "value": 150}
            ]}
        });
        let stats = serde_json::from_value(sample).unwrap();
        let v = summarize("abc", &stats);
        assert_eq!(v["cpuPercent"], 40.0);
        assert_eq!(v["memoryBytes"], 4_000);
        assert_eq!(v["memoryLimitBytes"], 100_000);
        assert_eq!(v["networkRxBytes"], 11);
        assert_eq!(v["networkTxBytes"], 22);
        assert_eq!(v["blockReadBytes"], 100);
        assert_eq!(v["blockWriteBytes"], 50);
        assert_eq!(v["name"], "web");
    }
}
