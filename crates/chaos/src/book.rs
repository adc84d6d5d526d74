//! The lease book: every event a node was given, what became of it, and what undoing it
//! needs. One JSON file, `<data dir>/chaos/book.json`, written whole (temporary file,
//! fsync, rename) after every change, so a node restarted at any moment finds every
//! fault it applied and the time its lease ends.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::ChaosError;
use crate::plan::PlannedEvent;

/// Entries of experiments whose last time is older than this are dropped at load.
const KEEP_MS: u64 = 7 * 24 * 3600 * 1000;

/// One event on this node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    /// The experiment it belongs to.
    pub experiment: String,
    /// The event as planned.
    pub event: PlannedEvent,
    /// When it is due (ms since the epoch).
    pub at: u64,
    /// When its lease ends (ms since the epoch); `None`: nothing to undo.
    pub lease_end: Option<u64>,
    /// Where it stands.
    pub state: EntryState,
    /// When this node began applying it.
    pub fired_at: Option<u64>,
    /// When the fault was in place (or the action done).
    pub applied_at: Option<u64>,
    /// When the fault was undone.
    pub undone_at: Option<u64>,
    /// Why it failed, was missed, or what its undo met.
    pub error: Option<String>,
    /// What undoing it needs.
    pub undo: Undo,
}

/// Where an event stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum EntryState {
    /// Waiting for its time.
    Pending,
    /// In place until its lease ends.
    Applied,
    /// Done, with nothing to undo.
    Done,
    /// Undone (its lease ended, or the experiment was aborted).
    Undone,
    /// Not fired: the node had it, or was up, only too long after its time.
    Missed,
    /// Applying it failed.
    Failed,
    /// Aborted before its time.
    Aborted,
}

impl EntryState {
    /// True when nothing more will happen to it.
    pub fn is_final(self) -> bool {
        !matches!(self, EntryState::Pending | EntryState::Applied)
    }
}

/// What an applied fault needs to be undone.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Undo {
    /// The container's id.
    pub container_id: Option<String>,
    /// Host pids of stress processes started inside the container.
    pub pids: Vec<u32>,
    /// Network devices given a qdisc.
    pub devices: Vec<String>,
}

/// The lease book's file.
pub fn path(dir: &Path) -> PathBuf {
    dir.join("book.json")
}

/// Read the book; a missing file is an empty book.
pub fn load(dir: &Path, now: u64) -> Result<Vec<Entry>, ChaosError> {
    let file = path(dir);
    let text = match std::fs::read(&file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(ChaosError::Io { path: file, source }),
    };
    let mut entries: Vec<Entry> = serde_json::from_slice(&text).map_err(|e| ChaosError::Book {
        path: file.clone(),
        reason: e.to_string(),
    })?;
    entries.retain(|e| {
        !e.state.is_final() || e.lease_end.unwrap_or(e.at).saturating_add(KEEP_MS) > now
    });
    Ok(entries)
}

/// Write the book whole, durably.
pub fn save(dir: &Path, bytes: &[u8]) -> Result<(), ChaosError> {
    use std::io::Write;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ChaosError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let file = path(dir);
    let temp = dir.join("book.json.tmp");
    let mut out = std::fs::File::create(&temp).map_err(io(&temp))?;
    out.write_all(bytes).map_err(io(&temp))?;
    out.sync_all().map_err(io(&temp))?;
    std::fs::rename(&temp, &file).map_err(io(&file))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}
