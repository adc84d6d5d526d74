//! Several hosts on one machine: a [`Rig`] of network namespaces, each a [`Host`] with
//! its own address on one private switch, and the link faults a test inflicts between
//! them: partition (iptables DROP), packet loss (iptables statistic match), bandwidth
//! (tc tbf), and latency, stalls and resets through a [`LinkProxy`] inside a host.
//!
//! ```text
//!   namespace bosun-rig-<pid>-<n>-sw          namespaces bosun-rig-<pid>-<n>-<host>
//!   ┌──────────────────────────────┐          ┌──────────────────────────┐
//!   │ br0 ── v1 ────────────────────┼── veth ──┼ eth0 10.77.0.1/24  lo     │ s1
//!   │     ── v2 ────────────────────┼── veth ──┼ eth0 10.77.0.2/24  lo     │ s2
//!   │     ── …                      │          └──────────────────────────┘ …
//!   └──────────────────────────────┘
//! ```
//!
//! Nothing is made in the machine's own namespace: the bridge lives in a namespace of
//! its own, every rule and qdisc inside a host's namespace, and all of it goes with the
//! namespaces when the rig is dropped. Processes run in a host with `ip netns exec`
//! (the process keeps its pid, so kill -9 and SIGSTOP reach it). The test itself stays
//! in the machine's namespace and reaches nodes over their unix sockets, which network
//! namespaces do not separate; [`in_netns`] runs a closure inside a host for the rest.
//!
//! Namespaces need root. When `ip netns add` fails, [`Rig::new`] returns `None` after
//! printing `SKIP: …`, unless `BOSUN_REQUIRE_NETNS=1`, when it panics.

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::{LinkProxy, required};

/// Prefix of every namespace a rig makes; stale ones of dead test processes are removed.
const PREFIX: &str = "bosun-rig-";
/// The rig's private subnet (every rig has its own switch, so rigs never meet).
const SUBNET: [u8; 3] = [10, 77, 0];

static RIGS: AtomicU32 = AtomicU32::new(0);

/// One host of a [`Rig`]: a network namespace with one address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// The name the test gave it.
    pub name: String,
    /// Its network namespace (for `ip netns exec`).
    pub netns: String,
    /// Its address on the rig's switch.
    pub address: Ipv4Addr,
}

impl Host {
    /// `address:port` on this host.
    pub fn at(&self, port: u16) -> SocketAddr {
        SocketAddr::from((self.address, port))
    }

    /// A command that runs `program` inside this host.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.netns]).arg(program);
        command
    }
}

/// Hosts on a private switch; every namespace is deleted on drop.
pub struct Rig {
    prefix: String,
    switch: String,
    hosts: Vec<Host>,
}

impl Rig {
    /// An empty rig (the switch only). `None` when namespaces cannot be made here and
    /// `BOSUN_REQUIRE_NETNS` is not set.
    pub fn new() -> Option<Rig> {
        remove_stale();
        let prefix = format!(
            "{PREFIX}{}-{}-",
            std::process::id(),
            RIGS.fetch_add(1, Ordering::SeqCst)
        );
        let switch = format!("{prefix}sw");
        if let Err(e) = ip(&["netns", "add", &switch]) {
            if required("BOSUN_REQUIRE_NETNS") {
                panic!(
                    "cannot make network namespaces but BOSUN_REQUIRE_NETNS=1 (run as root): {e}"
                );
            }
            eprintln!(
                "SKIP: cannot make network namespaces ({e}); run as root, or set BOSUN_REQUIRE_NETNS=1 to fail instead"
            );
            return None;
        }
        let rig = Rig {
            prefix,
            switch,
            hosts: Vec::new(),
        };
        rig.must(&["-n", &rig.switch, "link", "add", "br0", "type", "bridge"]);
        rig.must(&["-n", &rig.switch, "link", "set", "br0", "up"]);
        Some(rig)
    }

    /// Add a host called `name` with the next free address, its loopback and its link
    /// up.
    pub fn host(&mut self, name: &str) -> Host {
        assert!(
            !self.hosts.iter().any(|h| h.name == name),
            "the rig already has a host {name}"
        );
        let index = self.hosts.len() + 1;
        assert!(index < 250, "a rig holds at most 249 hosts");
        let host = Host {
            name: name.to_string(),
            netns: format!("{}{name}", self.prefix),
            address: Ipv4Addr::new(SUBNET[0], SUBNET[1], SUBNET[2], index as u8),
        };
        let port = format!("v{index}");
        self.must(&["netns", "add", &host.netns]);
        self.hosts.push(host.clone());
        self.must(&[
            "-n",
            &self.switch,
            "link",
            "add",
            &port,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &host.netns,
        ]);
        self.must(&[
            "-n",
            &self.switch,
            "link",
            "set",
            &port,
            "master",
            "br0",
            "up",
        ]);
        self.must(&[
            "-n",
            &host.netns,
            "addr",
            "add",
            &format!("{}/24", host.address),
            "dev",
            "eth0",
        ]);
        self.must(&["-n", &host.netns, "link", "set", "eth0", "up"]);
        self.must(&["-n", &host.netns, "link", "set", "lo", "up"]);
        host
    }

    /// Every host, in the order they were added.
    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    /// Cut the link between `a` and `b` both ways (rules in `a`, packets dropped
    /// silently, as a real partition: connections hang rather than reset).
    pub fn partition(&self, a: &Host, b: &Host) {
        self.rules(a, b, "-I", &["-j", "DROP"]);
    }

    /// Undo [`Rig::partition`].
    pub fn heal(&self, a: &Host, b: &Host) {
        self.rules(a, b, "-D", &["-j", "DROP"]);
    }

    /// Drop `percent` of the packets between `a` and `b`, each way, at random.
    pub fn loss(&self, a: &Host, b: &Host, percent: u32) {
        let probability = format!("{:.4}", f64::from(percent.min(100)) / 100.0);
        self.rules(
            a,
            b,
            "-I",
            &[
                "-m",
                "statistic",
                "--mode",
                "random",
                "--probability",
                &probability,
                "-j",
                "DROP",
            ],
        );
    }

    /// Cut `host` off from every other host (its loopback still works).
    pub fn isolate(&self, host: &Host) {
        for chain in ["INPUT", "OUTPUT"] {
            let direction = if chain == "INPUT" { "-i" } else { "-o" };
            self.iptables(host, &["-I", chain, direction, "eth0", "-j", "DROP"]);
        }
    }

    /// Limit what `host` sends to `kbit` kbit/s (tc tbf on its link).
    pub fn bandwidth(&self, host: &Host, kbit: u32) {
        self.must(&[
            "-n",
            &host.netns,
            "link",
            "show",
            "eth0", // fails early with a clear message if the host is gone
        ]);
        let status = Command::new("tc")
            .args(["-n", &host.netns, "qdisc", "replace", "dev", "eth0", "root"])
            .args(["tbf", "rate", &format!("{kbit}kbit")])
            .args(["burst", "32kbit", "latency", "400ms"])
            .status()
            .expect("run tc");
        assert!(status.success(), "tc tbf on {}: {status}", host.name);
    }

    /// Undo every fault on `host`: its iptables rules and its qdisc.
    pub fn clear(&self, host: &Host) {
        for chain in ["INPUT", "OUTPUT"] {
            self.iptables(host, &["-F", chain]);
        }
        let _ = Command::new("tc")
            .args(["-n", &host.netns, "qdisc", "del", "dev", "eth0", "root"])
            .output();
    }

    /// The iptables rules in `host`, as `iptables -S` prints them (for tests to check
    /// that a fault is in place, or gone).
    pub fn rules_in(&self, host: &Host) -> String {
        let out = host
            .command("iptables")
            .arg("-S")
            .output()
            .expect("run iptables");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A [`LinkProxy`] inside `host`, listening on its loopback and forwarding to
    /// `target`: point a node in `host` at [`LinkProxy::url`] to give its link latency,
    /// stalls and resets.
    pub fn proxy(&self, host: &Host, target: SocketAddr) -> LinkProxy {
        in_netns(&host.netns, || LinkProxy::start(target))
    }

    /// The namespaces of this rig that exist now (for the test that checks clean-up).
    pub fn namespaces(&self) -> Vec<String> {
        existing()
            .into_iter()
            .filter(|ns| ns.starts_with(&self.prefix))
            .collect()
    }

    /// The prefix every namespace of this rig has.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn rules(&self, a: &Host, b: &Host, op: &str, target: &[&str]) {
        let peer = b.address.to_string();
        for (chain, flag) in [("INPUT", "-s"), ("OUTPUT", "-d")] {
            let mut args = vec![op, chain, flag, &peer];
            args.extend_from_slice(target);
            self.iptables(a, &args);
        }
    }

    fn iptables(&self, host: &Host, args: &[&str]) {
        let out = host
            .command("iptables")
            .args(["-w", "5"])
            .args(args)
            .output()
            .expect("run iptables");
        assert!(
            out.status.success(),
            "iptables {args:?} in {}: {}",
            host.name,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn must(&self, args: &[&str]) {
        if let Err(e) = ip(args) {
            panic!("ip {}: {e}", args.join(" "));
        }
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        // A namespace outlives its name while a process is inside; the testkit's
        // processes are killed by their own drops, so nothing keeps it for long.
        for host in &self.hosts {
            let _ = ip(&["netns", "del", &host.netns]);
        }
        let _ = ip(&["netns", "del", &self.switch]);
    }
}

/// Run `f` on a thread inside the network namespace `netns` (threads it starts stay
/// there too), and return what it returns.
pub fn in_netns<T: Send>(netns: &str, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let file = File::open(format!("/run/netns/{netns}"))
                    .unwrap_or_else(|e| panic!("open namespace {netns}: {e}"));
                nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET)
                    .unwrap_or_else(|e| panic!("enter namespace {netns}: {e}"));
                f()
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

fn existing() -> Vec<String> {
    std::fs::read_dir("/run/netns")
        .map(|dir| {
            dir.flatten()
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Delete the namespaces of rigs whose test process is gone (killed before its drops
/// ran), so a crashed run leaves nothing behind for long.
fn remove_stale() {
    for name in existing() {
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = ip(&["netns", "del", &name]);
        }
    }
}
