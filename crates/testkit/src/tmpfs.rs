//! A small tmpfs, for tests of a full disk.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A tmpfs of a few megabytes mounted on a fresh directory, unmounted on drop. Mounting
/// needs root (as in CI and the dev container); without it [`Tmpfs::mount`] panics with
/// a message that says so.
pub struct Tmpfs {
    dir: tempfile::TempDir,
    mount: PathBuf,
}

impl Tmpfs {
    /// Mount a tmpfs of `size_mb` megabytes.
    pub fn mount(size_mb: u64) -> Tmpfs {
        let dir = tempfile::tempdir().expect("temp dir");
        let mount = dir.path().join("fs");
        std::fs::create_dir(&mount).expect("mount point");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mb}m"), "tmpfs"])
            .arg(&mount)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "cannot mount a {size_mb} MB tmpfs on {} (this test needs root, as in CI): {}",
            mount.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Tmpfs { dir, mount }
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        &self.mount
    }

    /// A directory next to the mount (not on the tmpfs), e.g. for logs.
    pub fn outside(&self) -> &Path {
        self.dir.path()
    }

    /// Fill the tmpfs with `name` until fewer than `leave` bytes are free (or it is full,
    /// when `leave` is 0). Returns the file's path.
    pub fn fill(&self, name: &str, leave: u64) -> PathBuf {
        use std::io::Write;
        let path = self.mount.join(name);
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .expect("open filler");
        let block = vec![0x5au8; 4096];
        loop {
            if leave > 0 && self.free_bytes() < leave {
                break;
            }
            match file.write(&block) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        let _ = file.flush();
        path
    }

    /// Bytes free on the tmpfs.
    pub fn free_bytes(&self) -> u64 {
        let out = Command::new("stat")
            .args(["-f", "-c", "%a %S"])
            .arg(&self.mount)
            .output()
            .expect("run stat");
        let text = String::from_utf8_lossy(&out.stdout);
        let mut fields = text
            .split_whitespace()
            .map(|f| f.parse::<u64>().unwrap_or(0));
        fields.next().unwrap_or(0) * fields.next().unwrap_or(0)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
    }
}
