//! The local Docker test image, built from the host's static busybox.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::required;

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
