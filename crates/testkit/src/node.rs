//! A real `bosun node` process, and the faults a test (or `bosun-bench chaos`) can
//! inflict on it: a crash ([`NodeProcess::kill9`]), a clean stop
//! ([`NodeProcess::terminate`]), a stall ([`NodeProcess::freeze`] and
//! [`NodeProcess::thaw`]) and a start again ([`NodeProcess::restart`]).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::trust::{NodeTrust, issuer};
use crate::{eventually, json, poll_until, process};

/// A real `bosun node` process; on drop it is thawed if frozen and killed with SIGKILL.
pub struct NodeProcess {
    /// The node name.
    pub name: String,
    /// Its data dir.
    pub data_dir: PathBuf,
    bin: PathBuf,
    broker: Option<String>,
    extra_env: Vec<(String, String)>,
    trust: NodeTrust,
    netns: Option<String>,
    child: Option<Child>,
    frozen: bool,
}

impl NodeProcess {
    /// Start `bosun node` from `bin` with this name, broker and data dir, and wait until
    /// its socket answers.
    pub fn start(bin: &Path, name: &str, broker: Option<&str>, data_dir: &Path) -> NodeProcess {
        Self::start_with_env(bin, name, broker, data_dir, &[])
    }

    /// Like [`NodeProcess::start`], with extra `BOSUN_*` environment.
    pub fn start_with_env(
        bin: &Path,
        name: &str,
        broker: Option<&str>,
        data_dir: &Path,
        env: &[(&str, &str)],
    ) -> NodeProcess {
        Self::start_with_trust(bin, name, broker, data_dir, env, NodeTrust::default())
    }

    /// Like [`NodeProcess::start_with_env`], with the node's trust chosen. On a broker,
    /// [`NodeTrust::Issued`] gives the node an identity from the test issuer before its
    /// first start (see [`crate::trust`]).
    pub fn start_with_trust(
        bin: &Path,
        name: &str,
        broker: Option<&str>,
        data_dir: &Path,
        env: &[(&str, &str)],
        trust: NodeTrust,
    ) -> NodeProcess {
        Self::start_in(bin, name, broker, data_dir, env, trust, None)
    }

    /// Like [`NodeProcess::start_with_trust`], inside the network namespace `netns`
    /// (a [`crate::Host`] of a rig) when given.
    pub fn start_in(
        bin: &Path,
        name: &str,
        broker: Option<&str>,
        data_dir: &Path,
        env: &[(&str, &str)],
        trust: NodeTrust,
        netns: Option<String>,
    ) -> NodeProcess {
        if broker.is_some()
            && let NodeTrust::Issued { grants, .. } = &trust
            && !data_dir.join("node.id").exists()
        {
            issuer().issue_into(data_dir, name, grants);
        }
        let mut node = NodeProcess {
            name: name.to_string(),
            data_dir: data_dir.to_path_buf(),
            bin: bin.to_path_buf(),
            broker: broker.map(str::to_string),
            extra_env: env
                .iter()
                .map(|(key, value)| (key.to_string(), value.to_string()))
                .collect(),
            trust,
            netns,
            child: None,
            frozen: false,
        };
        node.restart();
        node
    }

    /// Start the process again (after [`NodeProcess::kill9`] or
    /// [`NodeProcess::terminate`]) with the same name, data dir, broker and environment,
    /// appending to the same log, and wait until its socket answers. Panics when it is
    /// still running.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "node {} already running", self.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data_dir.with_extension("log"))
            .expect("open node log");
        let mut command = match &self.netns {
            Some(netns) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", netns]).arg(&self.bin);
                command
            }
            None => Command::new(&self.bin),
        };
        command
            .arg("node")
            .arg("--name")
            .arg(&self.name)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .env("BOSUN_LOG", "info")
            .env_remove("BOSUN_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        if let Some(broker) = &self.broker {
            command.arg("--broker").arg(broker);
        }
        command
            .env_remove("BOSUN_TRUSTED_ISSUERS")
            .env_remove("BOSUN_POLICY");
        if let (Some(_), NodeTrust::Issued { policy, .. }) = (&self.broker, &self.trust) {
            command
                .env("BOSUN_TRUSTED_ISSUERS", issuer().public_key())
                .env("BOSUN_POLICY", policy.join(","));
        }
        for (key, value) in &self.extra_env {
            command.env(key, value);
        }
        self.child = Some(command.spawn().expect("spawn bosun node"));
        // Ready means its socket answers a request, not merely that the file exists.
        eventually(
            Duration::from_secs(20),
            &format!("node {} answers on its socket", self.name),
            || {
                if self.cli(&["status", "--limit", "1"]).status.success() {
                    return Some(());
                }
                if let Some(status) = self
                    .child
                    .as_mut()
                    .and_then(|child| child.try_wait().ok().flatten())
                {
                    panic!(
                        "node {} exited at start with {status}: see {}",
                        self.name,
                        self.log_path().display()
                    );
                }
                None
            },
        );
    }

    /// The node's log file.
    pub fn log_path(&self) -> PathBuf {
        self.data_dir.with_extension("log")
    }

    /// Run `bosun --data-dir <this node's dir> ARGS…` and return its output.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(&self.bin)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(args)
            .env_remove("BOSUN_CONFIG")
            .output()
            .expect("run bosun")
    }

    /// The process id while the node runs (frozen or not); `None` after a kill.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// True between [`NodeProcess::freeze`] and [`NodeProcess::thaw`].
    pub fn is_frozen(&self) -> bool {
        self.frozen
    }

    /// Kill with SIGKILL: a crash, with no chance to clean up. Whatever the node had
    /// started in process groups of their own (commands) is left alone, as in a real
    /// crash. Works on a frozen node too. Does nothing when it is not running.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.frozen = false;
    }

    /// Freeze the node with SIGSTOP, as a stalled host or a swapped-out process: its
    /// connections stay open but it does nothing, so senders see no ACKs while the
    /// broker still delivers to it. Returns once the kernel reports it stopped. Panics
    /// when the node is not running.
    pub fn freeze(&mut self) {
        let pid = self
            .pid()
            .unwrap_or_else(|| panic!("node {} is not running", self.name));
        process::freeze(pid, &format!("node {}", self.name));
        self.frozen = true;
    }

    /// Let a frozen node run again with SIGCONT; returns once the kernel reports it no
    /// longer stopped. Does nothing when it is not frozen.
    pub fn thaw(&mut self) {
        if !self.frozen {
            return;
        }
        if let Some(pid) = self.pid() {
            process::thaw(pid, &format!("node {}", self.name));
        }
        self.frozen = false;
    }

    /// Send SIGTERM and wait for a clean exit (SIGKILL after 30 s); returns the exit
    /// status code. A frozen node is thawed first, or it could not act on the signal.
    pub fn terminate(&mut self) -> Option<i32> {
        self.thaw();
        let mut child = self.child.take()?;
        process::signal(child.id(), Signal::SIGTERM, &format!("node {}", self.name));
        match poll_until(Duration::from_secs(30), || child.try_wait().ok().flatten()) {
            Some(status) => status.code(),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                None
            }
        }
    }

    /// Central's view of the fleet, from `bosun nodes --json`: (name, status) pairs.
    pub fn fleet_status(&self) -> Vec<(String, String)> {
        let out = self.cli(&["nodes", "--json"]);
        assert!(
            out.status.success(),
            "bosun nodes on {}: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
        json(&out)
            .as_array()
            .expect("bosun nodes --json prints an array")
            .iter()
            .map(|node| {
                (
                    node["name"].as_str().unwrap_or_default().to_string(),
                    node["status"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        // Never panic here (a panic while unwinding aborts): thaw without waiting.
        if self.frozen
            && let Some(pid) = self.pid()
        {
            process::try_signal(pid, Signal::SIGCONT);
        }
        self.kill9();
    }
}
