//! NATS as a fleet that outgrows one broker runs it, on the hosts of a [`crate::Rig`]:
//! a [`NatsCluster`] of servers joined by routes, and leaf-node servers for edge sites
//! ([`NatsCluster::leaf`]) whose nodes connect only to their leaf.
//!
//! Every server uses the standard ports on its host's own address, pings its peers
//! every second and drops a connection after three unanswered pings: on a link that
//! drops packets silently, a dead route or leaf connection is noticed in seconds, not
//! after the default four minutes. Operators on flaky links want the same (README).

use std::io::{Read, Write};
use std::time::Duration;

use crate::{Host, NatsServer, eventually, in_netns};

/// Client port on every host.
pub const CLIENT_PORT: u16 = 4222;
/// Route (cluster) port on every host.
pub const ROUTE_PORT: u16 = 6222;
/// Leaf-node port on every cluster server.
pub const LEAF_PORT: u16 = 7422;
/// Monitoring (HTTP) port on every host.
pub const MONITOR_PORT: u16 = 8222;

/// How long routes and leaf connections may take to form.
const FORM_TIMEOUT: Duration = Duration::from_secs(30);

/// Settings every server of the rig shares.
fn common(host: &Host) -> String {
    format!(
        "server_name: \"{name}\"\nhttp: \"{address}:{MONITOR_PORT}\"\nping_interval: \"1s\"\nping_max: 3\n",
        name = host.name,
        address = host.address
    )
}

/// Servers joined by routes, each on its own host.
pub struct NatsCluster {
    servers: Vec<(Host, NatsServer)>,
}

impl NatsCluster {
    /// Start one server on each of `hosts`, all routed to each other and open to leaf
    /// nodes, and wait until every route is up. `None` when nats-server is missing and
    /// not required.
    pub fn start(hosts: &[&Host]) -> Option<NatsCluster> {
        let routes: Vec<String> = hosts
            .iter()
            .map(|h| format!("\"nats-route://{}:{ROUTE_PORT}\"", h.address))
            .collect();
        let mut servers = Vec::new();
        for host in hosts {
            let config = format!(
                "{common}cluster {{\n  name: \"bosun\"\n  listen: \"{address}:{ROUTE_PORT}\"\n  routes: [{routes}]\n}}\nleafnodes {{\n  listen: \"{address}:{LEAF_PORT}\"\n}}\n",
                common = common(host),
                address = host.address,
                routes = routes.join(", ")
            );
            let server = NatsServer::start_on(host, CLIENT_PORT, &config)?;
            servers.push(((*host).clone(), server));
        }
        let cluster = NatsCluster { servers };
        cluster.wait_routes();
        Some(cluster)
    }

    /// Every server's client URL, comma-separated: a node's `broker` setting.
    pub fn urls(&self) -> String {
        self.servers
            .iter()
            .map(|(_, server)| server.url())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The server on the host called `name`, to kill, freeze or restart.
    pub fn server_mut(&mut self, name: &str) -> &mut NatsServer {
        self.servers
            .iter_mut()
            .find(|(host, _)| host.name == name)
            .map(|(_, server)| server)
            .unwrap_or_else(|| panic!("no cluster server on host {name}"))
    }

    /// The host of every server.
    pub fn hosts(&self) -> Vec<&Host> {
        self.servers.iter().map(|(host, _)| host).collect()
    }

    /// Wait until every running server has a route to every other running server.
    pub fn wait_routes(&self) {
        let running: Vec<&(Host, NatsServer)> = self
            .servers
            .iter()
            .filter(|(_, server)| server.pid().is_some())
            .collect();
        let want = running.len().saturating_sub(1) as u64;
        for (host, _) in &running {
            eventually(
                FORM_TIMEOUT,
                &format!("nats-server on {} has {want} routes", host.name),
                || (monitor(host, "routez")?["num_routes"].as_u64()? >= want).then_some(()),
            );
        }
    }

    /// Start a leaf-node server on `host` for an edge site, connected to every server of
    /// the cluster (it fails over among them), and wait until its leaf connection is up.
    /// Nodes of the site connect to its [`NatsServer::url`] only.
    pub fn leaf(&self, host: &Host) -> Option<NatsServer> {
        let hubs: Vec<String> = self
            .servers
            .iter()
            .map(|(h, _)| format!("\"nats-leaf://{}:{LEAF_PORT}\"", h.address))
            .collect();
        let config = format!(
            "{common}leafnodes {{\n  reconnect: 1\n  remotes: [ {{ urls: [{hubs}] }} ]\n}}\n",
            common = common(host),
            hubs = hubs.join(", ")
        );
        let server = NatsServer::start_on(host, CLIENT_PORT, &config)?;
        wait_leaf(host);
        Some(server)
    }
}

/// Wait until the leaf server on `host` is connected to its hub.
pub fn wait_leaf(host: &Host) {
    eventually(
        FORM_TIMEOUT,
        &format!(
            "the leaf server on {} is connected to the cluster",
            host.name
        ),
        || (monitor(host, "leafz")?["leafnodes"].as_u64()? >= 1).then_some(()),
    );
}

/// A monitoring page of the server on `host` (`varz`, `routez`, `leafz`, …), as JSON;
/// `None` while it does not answer.
pub fn monitor(host: &Host, page: &str) -> Option<serde_json::Value> {
    let address = host.at(MONITOR_PORT);
    let body = in_netns(&host.netns, || {
        let mut stream =
            std::net::TcpStream::connect_timeout(&address, Duration::from_secs(2)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        write!(stream, "GET /{page} HTTP/1.0\r\nHost: {address}\r\n\r\n").ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        Some(response)
    })?;
    let (_, json) = body.split_once("\r\n\r\n")?;
    serde_json::from_str(json).ok()
}
