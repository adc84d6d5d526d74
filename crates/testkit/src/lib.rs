//! Test helpers that start real things: a `nats-server` on a free port, and `bosun node`
//! processes. Everything started is killed on drop.
//!
//! When `nats-server` is missing, [`NatsServer::start`] returns `None` so a test can say
//! it skipped, unless `BOSUN_REQUIRE_NATS=1`, when it panics with the install command.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1 (free when asked; good enough for tests).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

fn required(var: &str) -> bool {
    std::env::var(var).is_ok_and(|v| v == "1" || v == "true")
}

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
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
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
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nats-server did not start on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A real `bosun node` process, killed on drop.
pub struct NodeProcess {
    /// The node name.
    pub name: String,
    /// Its data dir.
    pub data_dir: PathBuf,
    bin: PathBuf,
    broker: Option<String>,
    extra_env: Vec<(String, String)>,
    child: Option<Child>,
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
        let mut node = NodeProcess {
            name: name.to_string(),
            data_dir: data_dir.to_path_buf(),
            bin: bin.to_path_buf(),
            broker: broker.map(str::to_string),
            extra_env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            child: None,
        };
        node.restart();
        node
    }

    /// Start the process again (after a kill) with the same settings.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "node {} already running", self.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data_dir.with_extension("log"))
            .expect("open node log");
        let mut cmd = Command::new(&self.bin);
        cmd.arg("node")
            .arg("--name")
            .arg(&self.name)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .env("BOSUN_LOG", "info")
            .env_remove("BOSUN_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        if let Some(b) = &self.broker {
            cmd.arg("--broker").arg(b);
        }
        for (k, v) in &self.extra_env {
            cmd.env(k, v);
        }
        self.child = Some(cmd.spawn().expect("spawn bosun node"));
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let out = self.cli(&["status", "--limit", "1"]);
            if out.status.success() {
                break;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "node {} exited at start with {status}: see {}",
                    self.name,
                    self.log_path().display()
                );
            }
            assert!(
                Instant::now() < deadline,
                "node {} did not come up",
                self.name
            );
            std::thread::sleep(Duration::from_millis(30));
        }
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

    /// Kill with SIGKILL: a crash, with no chance to clean up.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Send SIGTERM and wait for a clean exit; returns the exit status code.
    pub fn terminate(&mut self) -> Option<i32> {
        let mut c = self.child.take()?;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = c.try_wait() {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Poll `check` every 50 ms until it returns `Some`, or panic after `timeout` with `what`.
pub fn eventually<T>(timeout: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
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

/// The tag of the tiny busybox image that Docker tests run (built locally, never pulled).
pub const DOCKER_TEST_IMAGE: &str = "bosun-test-busybox:1";

/// Busybox applets linked into the test image: what the tests' shell scripts use.
const TEST_IMAGE_APPLETS: &[&str] = &[
    "sh", "ash", "sleep", "echo", "cat", "ls", "true", "false", "yes", "seq", "date", "hostname",
    "kill", "env", "pwd", "printf", "head", "tail", "tr", "wc", "grep", "sed", "ps", "id", "uname",
    "test", "[", "mkdir", "rm", "touch", "dd", "timeout",
];

/// True when the `docker` CLI is installed and its daemon answers.
pub fn docker_available() -> bool {
    Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The local test image ([`DOCKER_TEST_IMAGE`]), built from the host's static busybox
/// the first time it is asked for. `None` (after printing `SKIP: …`) when Docker or
/// busybox is missing, unless `BOSUN_REQUIRE_DOCKER=1`, when it panics with what to do.
///
/// Several test processes may ask at once: a lock file in the temporary folder lets one
/// of them build while the others wait, and an image that already exists counts as built.
pub fn docker_test_image() -> Option<String> {
    let busybox = Path::new("/bin/busybox");
    let problem = if !docker_available() {
        Some(
            "the Docker daemon is not reachable (install docker.io and start dockerd, \
             with /var/run/docker.sock readable by this user)",
        )
    } else if !busybox.is_file() {
        Some("/bin/busybox is missing (apt-get install -y busybox-static)")
    } else {
        None
    };
    if let Some(problem) = problem {
        if required("BOSUN_REQUIRE_DOCKER") {
            panic!("BOSUN_REQUIRE_DOCKER=1 but {problem}");
        }
        eprintln!("SKIP: {problem}; set BOSUN_REQUIRE_DOCKER=1 to fail instead");
        return None;
    }
    if image_exists(DOCKER_TEST_IMAGE) {
        return Some(DOCKER_TEST_IMAGE.to_string());
    }
    let lock_path = std::env::temp_dir().join("bosun-test-busybox-image.lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .unwrap_or_else(|e| panic!("open {}: {e}", lock_path.display()));
    // Blocks while another process builds; the lock goes with the file handle.
    lock.lock()
        .unwrap_or_else(|e| panic!("lock {}: {e}", lock_path.display()));
    if !image_exists(DOCKER_TEST_IMAGE) {
        build_test_image(busybox);
    }
    drop(lock);
    Some(DOCKER_TEST_IMAGE.to_string())
}

/// True when the daemon has `image`.
fn image_exists(image: &str) -> bool {
    Command::new("docker")
        .args(["image", "inspect", "--format", "{{.Id}}", image])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A rootfs of busybox and its applet links, tarred into `docker import`.
fn build_test_image(busybox: &Path) {
    let root = tempfile::tempdir().expect("tempdir for the test image rootfs");
    let bin = root.path().join("bin");
    for dir in ["bin", "tmp", "etc", "proc", "sys", "dev"] {
        std::fs::create_dir_all(root.path().join(dir)).expect("create rootfs folder");
    }
    std::fs::copy(busybox, bin.join("busybox")).expect("copy /bin/busybox into the rootfs");
    for applet in TEST_IMAGE_APPLETS {
        std::os::unix::fs::symlink("busybox", bin.join(applet)).expect("link a busybox applet");
    }
    let mut tar = Command::new("tar")
        .arg("-C")
        .arg(root.path())
        .args(["-c", "."])
        .stdout(Stdio::piped())
        .spawn()
        .expect("run tar (apt-get install -y tar)");
    let tar_out = tar.stdout.take().expect("tar stdout");
    let import = Command::new("docker")
        .args([
            "import",
            "--change",
            r#"CMD ["/bin/sh"]"#,
            "-",
            DOCKER_TEST_IMAGE,
        ])
        .stdin(tar_out)
        .stdout(Stdio::null())
        .output()
        .expect("run docker import");
    let tar_status = tar.wait().expect("wait for tar");
    assert!(tar_status.success(), "tar of the test rootfs failed");
    // A concurrent builder without our lock (another temp dir) may have won: fine.
    if !import.status.success() && !image_exists(DOCKER_TEST_IMAGE) {
        panic!(
            "docker import of {DOCKER_TEST_IMAGE} failed: {}",
            String::from_utf8_lossy(&import.stderr)
        );
    }
}
