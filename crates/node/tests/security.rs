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
