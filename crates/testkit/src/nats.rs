//! A real `nats-server` on a free port, and the broker faults a test (or `bosun-bench
//! chaos`) can inflict on it: a clean stop ([`NatsServer::stop`]), a crash
//! ([`NatsServer::kill9`]), a start again on the same port ([`NatsServer::restart`])
//! and a stall ([`NatsServer::freeze`] and [`NatsServer::thaw`]).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::{eventually, free_port, poll_until, process, required};

/// How long a clean stop may take before the server is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// A real `nats-server`; on drop it is thawed if frozen and killed with SIGKILL.
pub struct NatsServer {
    port: u16,
    address: String,
    netns: Option<String>,
    child: Option<Child>,
    frozen: bool,
    config: Option<PathBuf>,
    _store: tempfile::TempDir,
}

impl NatsServer {
    /// Start one on a free port. `None` when the binary is missing and not required.
    pub fn start() -> Option<NatsServer> {
        Self::start_with_config("")
    }

    /// Start one with extra server configuration (nats-server's config syntax), e.g. an
    /// `authorization { … }` block.
    pub fn start_with_config(config: &str) -> Option<NatsServer> {
        Self::start_at("127.0.0.1", free_port(), None, config)
    }

    /// Start one inside a rig's host (see [`crate::Rig`]) on `port` of its address.
    /// `None` when the binary is missing and not required.
    pub fn start_on(host: &crate::Host, port: u16, config: &str) -> Option<NatsServer> {
        Self::start_at(
            &host.address.to_string(),
            port,
            Some(host.netns.clone()),
            config,
        )
    }

    fn start_at(
        address: &str,
        port: u16,
        netns: Option<String>,
        config: &str,
    ) -> Option<NatsServer> {
        if Command::new("nats-server")
            .arg("--version")
            .output()
            .is_err()
        {
            if required("BOSUN_REQUIRE_NATS") {
                panic!(
                    "nats-server is not installed but BOSUN_REQUIRE_NATS=1: install it with `apt-get install nats-server`"
                );
            }
            eprintln!(
                "SKIP: nats-server not found (apt-get install nats-server); set BOSUN_REQUIRE_NATS=1 to fail instead"
            );
            return None;
        }
        let store = tempfile::tempdir().expect("tempdir");
        let config = (!config.is_empty()).then(|| {
            let path = store.path().join("nats.conf");
            std::fs::write(&path, config).expect("write nats.conf");
            path
        });
        let mut server = NatsServer {
            port,
            address: address.to_string(),
            netns,
            child: None,
            frozen: false,
            config,
            _store: store,
        };
        server.restart();
        Some(server)
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://{}:{}", self.address, self.port)
    }

    /// The server's log (its stderr, appended to across restarts).
    pub fn log_path(&self) -> PathBuf {
        self._store.path().join("nats.log")
    }

    /// The process id while the server runs (frozen or not).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Stop the server cleanly (a planned broker outage): SIGTERM, so it closes its
    /// client connections, then wait for it to exit (SIGKILL after 10 s). A frozen
    /// server is thawed first. The port is kept for [`NatsServer::restart`]. Does
    /// nothing when it is not running.
    pub fn stop(&mut self) {
        self.thaw();
        let Some(mut child) = self.child.take() else {
            return;
        };
        process::signal(child.id(), Signal::SIGTERM, "nats-server");
        if poll_until(STOP_TIMEOUT, || child.try_wait().ok().flatten()).is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kill the server with SIGKILL (a broker crash): clients see their connections
    /// drop with no goodbye. Works on a frozen server too. The port is kept for
    /// [`NatsServer::restart`]. Does nothing when it is not running.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.frozen = false;
    }

    /// Freeze the server with SIGSTOP (a stalled broker): connections stay open but
    /// nothing moves. Returns once the kernel reports it stopped. Panics when it is not
    /// running.
    pub fn freeze(&mut self) {
        let pid = self.pid().expect("nats-server is not running");
        process::freeze(pid, "nats-server");
        self.frozen = true;
    }

    /// Let a frozen server run again with SIGCONT; returns once the kernel reports it
    /// no longer stopped. Does nothing when it is not frozen.
    pub fn thaw(&mut self) {
        if !self.frozen {
            return;
        }
        if let Some(pid) = self.pid() {
            process::thaw(pid, "nats-server");
        }
        self.frozen = false;
    }

    /// Start the server again on the same port with the same configuration (after
    /// [`NatsServer::stop`] or [`NatsServer::kill9`]), and wait until it accepts
    /// connections. Panics when it is still running.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "nats-server already running");
        let mut command = match &self.netns {
            Some(netns) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", netns, "nats-server"]);
                command
            }
            None => Command::new("nats-server"),
        };
        if let Some(config) = &self.config {
            command.arg("-c").arg(config);
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open the nats-server log");
        let child = command
            .args(["-a", &self.address, "-p", &self.port.to_string()])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn nats-server");
        self.child = Some(child);
        let address =
            std::net::SocketAddr::new(self.address.parse().expect("an IP address"), self.port);
        let connects = || std::net::TcpStream::connect(address).ok();
        eventually(
            Duration::from_secs(10),
            &format!("nats-server accepts connections on {address}"),
            || match &self.netns {
                Some(netns) => crate::in_netns(netns, connects),
                None => connects(),
            },
        );
    }

    /// The same as [`NatsServer::restart`]: the end of a broker outage begun with
    /// [`NatsServer::stop`].
    pub fn resume(&mut self) {
        self.restart();
    }
}

impl Drop for NatsServer {
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
