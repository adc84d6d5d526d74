//! Test helpers that start real things: a `nats-server` on a free port, `bosun node`
//! processes, whole fleets of them, and the local Docker test image. Everything started
//! is killed on drop.
//!
//! When `nats-server` is missing, [`NatsServer::start`] returns `None` so a test can say
//! it skipped, unless `BOSUN_REQUIRE_NATS=1`, when it panics with the install command.
//! Tests wait for observable events through [`eventually`] (and show that something
//! does not happen with [`holds_for`]), never with a bare sleep.

mod cluster;
mod docker;
mod fleet;
mod nats;
mod netns;
mod node;
mod process;
mod proxy;
mod raw_nats;
mod tmpfs;
pub mod trust;
mod wait;

use std::net::TcpListener;
use std::process::Output;

pub use cluster::{
    CLIENT_PORT, LEAF_PORT, MONITOR_PORT, NatsCluster, ROUTE_PORT, monitor, wait_leaf,
};
pub use docker::{DOCKER_TEST_IMAGE, docker_available, docker_test_image};
pub use fleet::{Fleet, FleetBuilder, NodeSpec};
pub use nats::NatsServer;
pub use netns::{Host, Rig, in_netns};
pub use node::NodeProcess;
pub use proxy::LinkProxy;
pub use raw_nats::{Answer, RawNats};
pub use tmpfs::Tmpfs;
pub use trust::{NodeTrust, TestIssuer};
pub use wait::{eventually, eventually_async, holds_for, holds_for_async, poll_until};

/// A free TCP port on 127.0.0.1 (free when asked; good enough for tests).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("bind 127.0.0.1:0")
}

/// True when the environment variable asks for a hard failure instead of a skip.
fn required(variable: &str) -> bool {
    std::env::var(variable).is_ok_and(|value| value == "1" || value == "true")
}

/// Parse stdout of a `--json` command.
pub fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): stdout={} stderr={}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}
