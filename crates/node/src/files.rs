//! Modes of what the node keeps on disk: the data dir is 0700 and the files that hold
//! messages, outputs or errors are 0600, so another local user reads none of them. Both
//! are created so, and tightened at start when found looser.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// The data dir's mode.
pub const DIR_MODE: u32 = 0o700;
/// The mode of the database, the audit and error logs and the event stream.
pub const FILE_MODE: u32 = 0o600;

/// Create `dir` (and missing parents) with mode 0700, or tighten it to 0700 when group
/// or others may use it, with a log line saying so.
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    // Parents are made as usual (a missing `~/.local/share` is not the node's alone).
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    match std::fs::DirBuilder::new().mode(DIR_MODE).create(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => {}
        other => other?,
    }
    tighten(dir, DIR_MODE)
}

/// Take away group and others' permissions from `path` when it has any, logging the
/// change. A missing file is left alone.
pub fn tighten(path: &Path, mode: u32) -> std::io::Result<()> {
    let current = match std::fs::metadata(path) {
        Ok(meta) => meta.permissions().mode() & 0o777,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if current & 0o077 == 0 {
        return Ok(());
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    tracing::warn!(
        path = %path.display(),
        was = format!("{current:o}"),
        now = format!("{mode:o}"),
        "tightened: group and others could use it; only this node's user may"
    );
    Ok(())
}

/// Open `path` for appending, created 0600, and tightened to 0600 if it was looser.
pub fn open_private_append(path: &Path) -> std::io::Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(FILE_MODE)
        .open(path)?;
    tighten(path, FILE_MODE)?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn dirs_and_files_are_made_private_and_tightened() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a/b");
        private_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        private_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700, "a looser data dir is tightened");

        let file = dir.join("error.log");
        open_private_append(&file).unwrap();
        assert_eq!(mode(&file), 0o600);
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        open_private_append(&file).unwrap();
        assert_eq!(mode(&file), 0o600, "a looser file is tightened");
        // Tighter than needed is left as it is.
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o400)).unwrap();
        tighten(&file, FILE_MODE).unwrap();
        assert_eq!(mode(&file), 0o400);
    }
}
