//! A whole fleet for end-to-end tests: one `nats-server` and N `bosun node` processes,
//! each in its own folder under one temporary directory, all killed on drop.
//!
//! ```no_run
//! # use bosun_testkit::{Fleet, NodeSpec};
//! let Some(fleet) = Fleet::builder("target/debug/bosun") // in a test: env!("CARGO_BIN_EXE_bosun")
//!     .central("central")
//!     .nodes(&["central", "ship1"])
//!     .node(NodeSpec::new("ship2").config("capture_ship = true\n"))
//!     .start()
//! else {
//!     return; // nats-server is missing: skipped
//! };
//! let out = fleet.node("central").cli(&["exec", "-n", "ship1", "--", "true"]);
//! assert!(out.status.success());
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use bosun_trust::keys::{self, KeyKind};
use bosun_trust::nats::NatsUser;

use crate::{NatsServer, NodeProcess, NodeTrust, eventually};

/// How long a node may take to appear in central's registry after it started.
const LISTED_TIMEOUT: Duration = Duration::from_secs(30);

/// One node of a [`Fleet`]: its name, extra environment, and files written into its
/// data folder before it starts.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    name: String,
    env: Vec<(String, String)>,
    files: Vec<(PathBuf, String)>,
    trust: NodeTrust,
    broker: Option<String>,
    netns: Option<String>,
}

impl NodeSpec {
    /// A node with this name and nothing else set.
    pub fn new(name: impl Into<String>) -> NodeSpec {
        NodeSpec {
            name: name.into(),
            env: Vec::new(),
            files: Vec::new(),
            trust: NodeTrust::default(),
            broker: None,
            netns: None,
        }
    }

    /// How the node trusts and is trusted (default: an identity with every grant from
    /// the test issuer, which it trusts, and `policy = *`).
    pub fn trust(mut self, trust: NodeTrust) -> NodeSpec {
        self.trust = trust;
        self
    }

    /// Reach the broker at `url` instead of the fleet's own (e.g. through a
    /// [`crate::LinkProxy`] in front of it).
    pub fn broker(mut self, url: impl Into<String>) -> NodeSpec {
        self.broker = Some(url.into());
        self
    }

    /// Run the node on `host` of a [`crate::Rig`] (its own network namespace). Give it a
    /// broker it can reach from there with [`NodeSpec::broker`].
    pub fn host(mut self, host: &crate::Host) -> NodeSpec {
        self.netns = Some(host.netns.clone());
        self
    }

    /// Set an environment variable (usually a `BOSUN_*` setting) for the process.
    pub fn env(mut self, key: &str, value: impl Into<String>) -> NodeSpec {
        self.env.push((key.to_string(), value.into()));
        self
    }

    /// Write `contents` to `relative` inside the node's data folder before it starts.
    pub fn file(mut self, relative: impl Into<PathBuf>, contents: impl Into<String>) -> NodeSpec {
        self.files.push((relative.into(), contents.into()));
        self
    }

    /// The node's `bosun.toml`.
    pub fn config(self, toml: &str) -> NodeSpec {
        self.file("bosun.toml", toml)
    }

    /// The node's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl From<&str> for NodeSpec {
    fn from(name: &str) -> NodeSpec {
        NodeSpec::new(name)
    }
}

impl From<&String> for NodeSpec {
    fn from(name: &String) -> NodeSpec {
        NodeSpec::new(name.as_str())
    }
}

/// Where the fleet's nodes talk to each other.
#[derive(Debug, Clone)]
enum Broker {
    /// Standalone nodes: no broker at all.
    None,
    /// A fresh `nats-server`, with this extra configuration (may be empty).
    Nats(String),
}

/// Settings for a [`Fleet`], from [`Fleet::builder`].
#[derive(Debug, Clone)]
pub struct FleetBuilder {
    bin: PathBuf,
    broker: Broker,
    central: Option<String>,
    specs: Vec<NodeSpec>,
    permissions: bool,
}

impl FleetBuilder {
    /// Lock the broker down as production does: before it starts, every node gets its
    /// key (`node.key`), the broker gets the configuration
    /// `bosun_trust::nats::server_config` makes for those keys (plus any
    /// [`FleetBuilder::nats_config`]), and each node connects with its key
    /// (`nkey_seed_file`). Nodes added later with [`Fleet::add`] are not in that
    /// configuration, so the broker refuses them.
    pub fn nats_permissions(mut self) -> FleetBuilder {
        self.permissions = true;
        self
    }

    /// Extra `nats-server` configuration, e.g. an `authorization { … }` block.
    pub fn nats_config(mut self, config: &str) -> FleetBuilder {
        self.broker = Broker::Nats(config.to_string());
        self
    }

    /// No broker: every node runs standalone.
    pub fn without_broker(mut self) -> FleetBuilder {
        self.broker = Broker::None;
        self
    }

    /// Every node reports to `name` every second, and [`FleetBuilder::start`] (and
    /// [`Fleet::add`]) wait until central lists each node as alive.
    pub fn central(mut self, name: &str) -> FleetBuilder {
        self.central = Some(name.to_string());
        self
    }

    /// Add a node (a name, or a [`NodeSpec`] with settings).
    pub fn node(mut self, spec: impl Into<NodeSpec>) -> FleetBuilder {
        self.specs.push(spec.into());
        self
    }

    /// Add plain nodes by name.
    pub fn nodes(mut self, names: &[&str]) -> FleetBuilder {
        self.specs
            .extend(names.iter().map(|name| NodeSpec::new(*name)));
        self
    }

    /// Start the broker and every node in the order given, each ready before the next
    /// starts. `None` (after printing `SKIP: …`) when `nats-server` is missing and not
    /// required.
    pub fn start(self) -> Option<Fleet> {
        let dir = tempfile::tempdir().expect("tempdir for the fleet");
        let nats = match &self.broker {
            Broker::None => None,
            Broker::Nats(config) if self.permissions => {
                let users = self.specs.iter().map(|spec| {
                    let (pair, _) = keys::load_or_create(
                        &dir.path().join(&spec.name).join("node.key"),
                        KeyKind::Member,
                    )
                    .expect("create the node's key");
                    NatsUser {
                        name: spec.name.clone(),
                        nkey: pair.public_key(),
                    }
                });
                let users: Vec<NatsUser> = users.collect();
                let permissions = bosun_trust::nats::try_server_config("bosun", &users)
                    .expect("a broker configuration for the fleet");
                Some(NatsServer::start_with_config(&format!(
                    "{permissions}\n{config}"
                ))?)
            }
            Broker::Nats(config) => Some(NatsServer::start_with_config(config)?),
        };
        let mut fleet = Fleet {
            nodes: Vec::new(),
            nats,
            bin: self.bin,
            central: self.central,
            permissions: self.permissions,
            dir,
        };
        for spec in self.specs {
            fleet.launch(spec);
        }
        let names: Vec<String> = fleet.nodes.iter().map(|node| node.name.clone()).collect();
        fleet.wait_listed(&names);
        Some(fleet)
    }
}

/// A running fleet: the broker (if any) and its nodes, killed on drop.
pub struct Fleet {
    // Fields drop in order: the nodes go before their broker, the folder last.
    nodes: Vec<NodeProcess>,
    nats: Option<NatsServer>,
    bin: PathBuf,
    central: Option<String>,
    permissions: bool,
    dir: tempfile::TempDir,
}

impl Fleet {
    /// Settings for a fleet whose nodes run the `bosun` binary at `bin`, on a fresh
    /// `nats-server`.
    pub fn builder(bin: impl Into<PathBuf>) -> FleetBuilder {
        FleetBuilder {
            bin: bin.into(),
            broker: Broker::Nats(String::new()),
            central: None,
            specs: Vec::new(),
            permissions: false,
        }
    }

    /// The temporary folder that holds every node's data folder and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The data folder a node of this name has (or will have).
    pub fn data_dir(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The node called `name`; panics when there is none.
    pub fn node(&self, name: &str) -> &NodeProcess {
        self.nodes
            .iter()
            .find(|node| node.name == name)
            .unwrap_or_else(|| panic!("no node {name} in this fleet"))
    }

    /// The node called `name`, to kill or restart; panics when there is none.
    pub fn node_mut(&mut self, name: &str) -> &mut NodeProcess {
        self.nodes
            .iter_mut()
            .find(|node| node.name == name)
            .unwrap_or_else(|| panic!("no node {name} in this fleet"))
    }

    /// The broker; panics for a fleet without one.
    pub fn nats(&self) -> &NatsServer {
        self.nats.as_ref().expect("this fleet has no broker")
    }

    /// The broker, to stop and resume; panics for a fleet without one.
    pub fn nats_mut(&mut self) -> &mut NatsServer {
        self.nats.as_mut().expect("this fleet has no broker")
    }

    /// Start one more node with the fleet's broker and central, and wait until it is
    /// ready (and listed by central, when the fleet has one).
    pub fn add(&mut self, spec: impl Into<NodeSpec>) -> &mut NodeProcess {
        let name = self.launch(spec.into());
        self.wait_listed(std::slice::from_ref(&name));
        self.node_mut(&name)
    }

    /// Wait until central lists every one of `names` as alive; nothing to wait for in a
    /// fleet without central, or while central itself is not among the running nodes.
    pub fn wait_listed(&self, names: &[String]) {
        let Some(central) = &self.central else {
            return;
        };
        let Some(central) = self.nodes.iter().find(|node| &node.name == central) else {
            return;
        };
        eventually(
            LISTED_TIMEOUT,
            &format!("central lists {names:?} as alive"),
            || {
                let fleet = central.fleet_status();
                names
                    .iter()
                    .all(|name| fleet.iter().any(|(n, s)| n == name && s == "alive"))
                    .then_some(())
            },
        );
    }

    /// Write the spec's files and start its process; returns the node's name.
    fn launch(&mut self, spec: NodeSpec) -> String {
        let data_dir = self.data_dir(&spec.name);
        for (relative, contents) in &spec.files {
            let path = data_dir.join(relative);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).expect("create a folder in the node's data dir");
            }
            std::fs::write(&path, contents)
                .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        }
        let mut env: Vec<(&str, &str)> = Vec::new();
        if let Some(central) = &self.central {
            env.push(("BOSUN_CENTRAL", central));
            env.push(("BOSUN_HELLO_INTERVAL", "1"));
        }
        let key_file = data_dir.join("node.key").display().to_string();
        if self.permissions {
            env.push(("BOSUN_NKEY_SEED_FILE", &key_file));
        }
        env.extend(spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let url = spec
            .broker
            .clone()
            .or_else(|| self.nats.as_ref().map(NatsServer::url));
        let node = NodeProcess::start_in(
            &self.bin,
            &spec.name,
            url.as_deref(),
            &data_dir,
            &env,
            spec.trust.clone(),
            spec.netns.clone(),
        );
        self.nodes.push(node);
        spec.name
    }
}

impl Drop for Fleet {
    /// With `BOSUN_KEEP_TEST_DIRS=1`, the fleet's folder (data dirs and logs) is kept for
    /// a post-mortem and its path printed.
    fn drop(&mut self) {
        if std::env::var_os("BOSUN_KEEP_TEST_DIRS").is_some_and(|v| v == "1") {
            for node in &mut self.nodes {
                node.kill9();
            }
            if let Ok(empty) = tempfile::tempdir() {
                let dir = std::mem::replace(&mut self.dir, empty);
                eprintln!("kept the fleet's folder: {}", dir.keep().display());
            }
        }
    }
}
