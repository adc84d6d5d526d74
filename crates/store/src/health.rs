//! Whether the store can write, and how much room its filesystem has left.

use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::StoreError;

/// Why the store cannot write at the moment. The writer retries on its own, with
/// backoff, and goes back to [`Health::Ok`] once the database is open again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// The filesystem of the database is full.
    DiskFull {
        /// The database file.
        path: String,
        /// Bytes free for the node, when last looked.
        free_bytes: u64,
    },
    /// Any other I/O error.
    Io {
        /// The database file.
        path: String,
        /// What the operating system said.
        reason: String,
    },
}

impl Fault {
    /// The error every write gets while the fault lasts.
    pub fn error(&self) -> StoreError {
        match self {
            Fault::DiskFull { path, free_bytes } => StoreError::DiskFull {
                path: path.clone(),
                free_bytes: *free_bytes,
            },
            Fault::Io { path, reason } => StoreError::Io {
                path: path.clone(),
                reason: reason.clone(),
            },
        }
    }
}

/// How the store is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// Writes go through.
    Ok,
    /// A write failed; the store refuses writes with the fault and reopens the database
    /// once the condition clears.
    Faulted(Fault),
    /// The database could not be reopened for a reason other than space (a damaged
    /// file, a failing device): the store stays down; the process should exit so that
    /// its supervisor sees it.
    Failed {
        /// Why.
        reason: String,
    },
}

impl std::fmt::Display for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Health::Ok => f.write_str("ok"),
            Health::Faulted(fault) => write!(f, "{}", fault.error()),
            Health::Failed { reason } => write!(f, "the store cannot be reopened: {reason}"),
        }
    }
}

/// The free space is below the configured reserve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LowSpace {
    /// The database file.
    pub path: String,
    /// Bytes free for the node.
    pub free_bytes: u64,
    /// The reserve.
    pub reserve_bytes: u64,
}

/// Bytes free for an unprivileged writer on the filesystem holding `path` (its
/// directory when the file does not exist yet). `None` when it cannot be told.
pub fn free_bytes(path: &Path) -> Option<u64> {
    let probe = if path.exists() {
        path
    } else {
        path.parent().unwrap_or(path)
    };
    let stat = nix::sys::statvfs::statvfs(probe).ok()?;
    #[allow(clippy::useless_conversion)] // the field types differ between targets
    let bytes = u64::from(stat.blocks_available()).saturating_mul(u64::from(stat.fragment_size()));
    Some(bytes)
}

/// How long a free-space reading is reused: arrivals and submits ask for each message.
const SPACE_TTL: Duration = Duration::from_millis(200);

/// A briefly cached [`free_bytes`].
pub(crate) struct SpaceCache {
    last: Mutex<Option<(Instant, Option<u64>)>>,
}

impl SpaceCache {
    pub fn new() -> SpaceCache {
        SpaceCache {
            last: Mutex::new(None),
        }
    }

    pub fn free_bytes(&self, path: &Path) -> Option<u64> {
        let mut last = self.last.lock().expect("space cache lock");
        if let Some((at, bytes)) = *last
            && at.elapsed() < SPACE_TTL
        {
            return bytes;
        }
        let bytes = free_bytes(path);
        *last = Some((Instant::now(), bytes));
        bytes
    }
}

/// Is this I/O error "no space left"?
pub(crate) fn is_no_space(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::StorageFull
        || e.raw_os_error() == Some(nix::errno::Errno::ENOSPC as i32)
        || e.raw_os_error() == Some(nix::errno::Errno::EDQUOT as i32)
}

/// The fault behind a redb error, when it is one that needs the database reopened.
pub(crate) fn classify(e: &redb::Error, path: &Path) -> Option<Fault> {
    let shown = path.display().to_string();
    let full = || Fault::DiskFull {
        path: shown.clone(),
        free_bytes: free_bytes(path).unwrap_or(0),
    };
    match e {
        redb::Error::Io(io) if is_no_space(io) => Some(full()),
        redb::Error::Io(io) => Some(Fault::Io {
            path: shown.clone(),
            reason: io.to_string(),
        }),
        // The first error was not seen here (redb latches it); judge by the space left.
        redb::Error::PreviousIo => {
            if free_bytes(path).is_some_and(|b| b < crate::writer::RECOVER_MIN_FREE) {
                Some(full())
            } else {
                Some(Fault::Io {
                    path: shown.clone(),
                    reason: "an earlier write failed".into(),
                })
            }
        }
        _ => None,
    }
}
