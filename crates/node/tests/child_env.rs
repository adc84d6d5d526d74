//! Commands a node runs never inherit its secrets. Its own test binary, since it sets
//! the process's environment before anything else runs.

use std::sync::Arc;
use std::time::Duration;

use bosun_bus::{Hub, LocalTransport};
use bosun_node::{Config, Node};
use bosun_proto::{Message, State};

#[test]
fn commands_do_not_inherit_the_nodes_secrets() {
    // SAFETY: the first thing this binary's only test does, before any other thread
    // of ours exists.
    unsafe {
        std::env::set_var("BOSUN_HTTP_TOKEN", "secret-http-7f3a");
        std::env::set_var("TOKEN", "secret-token-7f3a");
        std::env::set_var("NATS_PASSWORD", "secret-nats-7f3a");
        std::env::set_var("BOSUN_HARMLESS", "visible-7f3a");
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            name: "n1".into(),
            data_dir: dir.path().join("n1"),
            log: "warn".into(),
            ..Config::default()
        };
        let node = Node::start(config, Arc::new(LocalTransport::new(Hub::new())), true)
            .await
            .unwrap();
        let message = Message {
            to_node: Some("n1".into()),
            method: "cliCommand".into(),
            data: vec!["env".into()],
            ..Default::default()
        };
        let id = node.submit(vec![message]).await.unwrap().remove(0).id;
        let (all, reports) = node.wait(&[id], Duration::from_secs(30)).await.unwrap();
        assert!(all && reports[0].state() == Some(State::Done));
        let env = &reports[0].outcome().unwrap().stdout;
        assert!(env.contains("BOSUN_HARMLESS=visible-7f3a"), "{env}");
        for secret in ["secret-http-7f3a", "secret-token-7f3a", "secret-nats-7f3a"] {
            assert!(!env.contains(secret), "{secret} leaked: {env}");
        }
        node.shutdown().await;
    });
}
