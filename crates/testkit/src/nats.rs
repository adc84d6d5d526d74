//! A real `nats-server` on a free port.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{eventually, free_port, required};

/// A real `nats-server`, killed on drop.
pub struct NatsServer {
    port: u16,
    child: Option<Child>,
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
            port: free_port(),
            child: None,
            config,
            _store: store,
        };
        server.resume();
        Some(server)
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kill the server (a broker outage). The port is kept for [`NatsServer::resume`].
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Start the server again on the same port, and wait until it accepts connections.
    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "server already running");
        let mut command = Command::new("nats-server");
        if let Some(config) = &self.config {
            command.arg("-c").arg(config);
        }
        let child = command
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nats-server");
        self.child = Some(child);
        let port = self.port;
        eventually(
            Duration::from_secs(10),
            &format!("nats-server accepts connections on port {port}"),
            || std::net::TcpStream::connect(("127.0.0.1", port)).ok(),
        );
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}
