//! What a node keeps from other local users and from the commands it runs: file modes,
//! secrets in children's environments, registry auth in logs and answers, and refusals
//! that cannot flood the error log.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use bosun_bus::{Hub, LocalTransport};
use bosun_node::{Config, Node};

fn config(dir: &Path, name: &str) -> Config {
    Config {
        name: name.into(),
        data_dir: dir.join(name),
        ack_timeout_secs: 1,
        log: "warn".into(),
        ..Config::default()
    }
}

async fn start(config: Config) -> Node {
    Node::start(config, Arc::new(LocalTransport::new(Hub::new())), true)
        .await
        .unwrap()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_dir_and_its_files_are_the_node_users_alone() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), "n1");
    // Left loose by an earlier version or by hand: tightened at start.
    std::fs::create_dir_all(&config.data_dir).unwrap();
    std::fs::set_permissions(&config.data_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(config.error_log_path(), "").unwrap();
    std::fs::set_permissions(
        config.error_log_path(),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let node = start(config.clone()).await;
    assert_eq!(mode(&config.data_dir), 0o700);
    for file in [
        config.db_path(),
        config.audit_log_path(),
        config.error_log_path(),
    ] {
        assert_eq!(mode(&file), 0o600, "{}", file.display());
    }
    node.shutdown().await;

    // A fresh data dir is made 0700.
    let fresh = config_in(dir.path().join("deeper/n2"));
    let node = start(fresh.clone()).await;
    assert_eq!(mode(&fresh.data_dir), 0o700);
    node.shutdown().await;
}

fn config_in(data_dir: std::path::PathBuf) -> Config {
    Config {
        data_dir,
        ..config(Path::new("/nonexistent"), "n2")
    }
}

/// Every file in `dir` but the database, as text.
fn logs_in(dir: &Path) -> String {
    let mut text = String::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() && path.extension().is_none_or(|e| e != "redb") {
            text.push_str(&String::from_utf8_lossy(&std::fs::read(&path).unwrap()));
        }
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_auth_never_reaches_logs_or_answers() {
    const SECRET: &str = "s3cret-registry-auth-51c9";
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::new();
    let a = Node::start(
        config(dir.path(), "a"),
        Arc::new(LocalTransport::new(hub.clone())),
        false,
    )
    .await
    .unwrap();
    let b = Node::start(
        config(dir.path(), "b"),
        Arc::new(LocalTransport::new(hub.clone())),
        false,
    )
    .await
    .unwrap();
    // Pulled at b with an auth that is not even base64: refused there, after arrival.
    let pull = bosun_proto::Message {
        to_node: Some("b".into()),
        method: "imagePull".into(),
        data: vec!["alpine:3".into(), format!("!{SECRET}")],
        method_timeout: Some(30),
        ..Default::default()
    };
    // Sent where nobody listens: given up as failed, in the error log.
    let spec = bosun_proto::container::ContainerSpec {
        image: Some("alpine:3".into()),
        auth: Some(SECRET.into()),
        ..Default::default()
    };
    let run = bosun_proto::Message {
        to_node: Some("ghost".into()),
        method: "containerRun".into(),
        data: vec![serde_json::to_string(&spec).unwrap()],
        ttl: Some(1),
        ..Default::default()
    };
    let ids: Vec<String> = a
        .submit(vec![pull, run])
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    let (all, reports) = a
        .wait(&ids, std::time::Duration::from_secs(60))
        .await
        .unwrap();
    assert!(
        all,
        "{:?}",
        reports.iter().map(|r| r.state()).collect::<Vec<_>>()
    );
    let pulled = reports[0].outcome().expect("an outcome from b");
    assert!(
        pulled.error.as_deref().unwrap_or("").contains("auth"),
        "{pulled:?}"
    );
    // Everything that shows a message: status answers (both sides), recent, the logs.
    let mut shown = serde_json::to_string(&reports).unwrap();
    shown.push_str(&serde_json::to_string(&b.status(&ids[0]).unwrap()).unwrap());
    shown.push_str(&serde_json::to_string(&a.recent(10).unwrap()).unwrap());
    assert!(shown.contains("<redacted>"), "{shown}");
    let error_log = std::fs::read_to_string(dir.path().join("a/error.log")).unwrap();
    assert!(
        error_log.contains(&ids[1]),
        "the failure is logged: {error_log}"
    );
    a.shutdown().await;
    b.shutdown().await;
    shown.push_str(&logs_in(&dir.path().join("a")));
    shown.push_str(&logs_in(&dir.path().join("b")));
    assert!(shown.contains("imagePull") && shown.contains("containerRun"));
    assert!(!shown.contains(SECRET), "the auth leaked: {shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_rate_limited_and_the_error_log_rotates() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        error_log_max_bytes: 4096,
        error_log_keep: 2,
        ..config(dir.path(), "n1")
    };
    let node = start(config.clone()).await;
    for _ in 0..50 {
        node.report_refused(
            "203.0.113.9",
            "tcp",
            "refused: local user 1001 is not the node's user",
        );
    }
    node.report_refused("203.0.113.10", "tcp", "refused: another sender");
    let log = std::fs::read_to_string(config.error_log_path()).unwrap();
    assert_eq!(log.matches("203.0.113.9").count(), 10, "{log}");
    assert_eq!(log.matches("203.0.113.10").count(), 1, "{log}");

    // Many senders, each within its limit: the log rotates and keeps two old files.
    for i in 0..200 {
        node.report_refused(&format!("198.51.100.{i}"), "tcp", "refused: a sender");
    }
    let mut names: Vec<String> = std::fs::read_dir(&config.data_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("error.log"))
        .collect();
    names.sort();
    assert_eq!(names, ["error.log", "error.log.1", "error.log.2"]);
    for name in &names {
        let path = config.data_dir.join(name);
        assert!(
            std::fs::metadata(&path).unwrap().len() <= 4096,
            "{name} over size"
        );
        assert_eq!(mode(&path), 0o600, "{name}");
        for line in std::fs::read_to_string(&path).unwrap().lines() {
            let entry: serde_json::Value = serde_json::from_str(line).expect("whole JSON lines");
            assert_eq!(entry["kind"], "rejected");
        }
    }
    let newest = std::fs::read_to_string(config.error_log_path()).unwrap();
    assert!(newest.contains("198.51.100.199"), "{newest}");
    node.shutdown().await;
}
