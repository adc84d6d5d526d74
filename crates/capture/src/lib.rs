//! Capture: the node's one stream of timestamped records, as LSDSuite's node manager
//! wrote it: container log lines, container and host stats, Docker events and operator
//! marks, one line each, in one file that the `log` command can switch.
//!
//! # Record format
//! ```text
//! 2026-01-01T10:00:00.123Z LOG node1 3f4e…(64 hex) hello world
//! 2026-01-01T10:00:01.000Z STATS node1 3f4e… {"cpuPercent":1.5,"memoryBytes":…}
//! 2026-01-01T10:00:01.002Z HOST node1 - {"load1":0.2,"memAvailableBytes":…,"memTotalBytes":…,"cpus":8}
//! 2026-01-01T10:00:02.410Z EVENT node1 3f4e… die name=web image=nginx exitCode=0
//! 2026-01-01T10:00:03.000Z MARK node1 - phase two
//! ```
//! `<RFC 3339 UTC time, ms> <TOPIC> <node> <container id or -> <text>`. The time is taken
//! when the writer receives the record, and never goes backwards, so the file is in time
//! order. In the text, `\` is written `\\`, a newline `\n` and a carriage return `\r`, so
//! a record is always one line and the text can be recovered exactly.
//!
//! # Sources
//! - `docker`: containers labelled `org.lsdsuite.stats=true` or `org.bosun.capture=true`:
//!   their logs (unless they log to syslog, see below) and stats; and the lifecycle events
//!   (start, die, kill, pause, unpause, oom) of every container.
//! - `syslog`: the socket for Docker's syslog log driver. Docker's `unix://` address
//!   needs a **stream** socket, so that is what `syslog_socket` is; a datagram socket for
//!   `unixgram://` is bound next to it, at [`datagram_socket_path`]. Run containers with
//!   `--log-driver syslog --log-opt syslog-address=unix://<syslog_socket>
//!   --log-opt syslog-format=rfc5424micro --log-opt tag='{{.FullID}}'`.
//! - `host`: load, memory and CPU count from `/proc`.
//!
//! # Layout
//! - this file: [`Capture`] (start, marks, file switch), [`CaptureConfig`], [`Topic`].
//! - `stream`: the writer thread and the record format.
//! - `docker`: container logs, stats and lifecycle events through bollard.
//! - `syslog`: the stream and datagram sockets for Docker's syslog log driver.
//! - `host`: host stats from `/proc`.
//! - `lines`: cutting container logs and syslog streams into lines.
//!
//! The crate knows nothing of messages, the store or the transport: the node hands it a
//! cancellation token and a task tracker, and calls [`Capture::mark`] and
//! [`Capture::switch_file`].
//!
//! # Implementation note
//! One writer thread owns the file; everything else sends records to it over a channel,
//! so lines never interleave. It flushes whenever its queue is empty, so a `tail -f` sees
//! every record at once, and a burst costs one write, not one per record.

mod docker;
mod host;
mod lines;
mod stream;
mod syslog;

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use syslog::datagram_socket_path;

/// The file written when none is named.
pub const DEFAULT_FILE: &str = "default.log";

/// Where and what to capture.
#[derive(Debug, Clone)]
pub struct CaptureConfig {
    /// Node name, written in every record.
    pub node: String,
    /// Where stream files live, e.g. `<data>/capture`.
    pub dir: PathBuf,
    /// Initial file name, e.g. `default.log`.
    pub file: String,
    /// Unix socket to create for Docker's syslog log driver, e.g. `<data>/sock/logs.sock`
    /// (a stream socket, for `syslog-address=unix://…`; see [`datagram_socket_path`] for
    /// `unixgram://…`). `None`: no syslog capture.
    pub syslog_socket: Option<PathBuf>,
    /// The Docker daemon's socket, usually `/var/run/docker.sock`.
    pub docker_socket: PathBuf,
    /// How often container and host stats are sampled, e.g. 5 s.
    pub stats_interval: Duration,
}

/// A capture file name that is not a plain file name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("capture file {name:?} must be a plain file name, without '/' or '..'")]
pub struct BadFileName {
    /// The name refused, trimmed.
    pub name: String,
}

/// Why the capture could not switch to another file.
#[derive(Debug, thiserror::Error)]
pub enum SwitchError {
    /// The name is not a plain file name.
    #[error(transparent)]
    BadName(#[from] BadFileName),
    /// The file could not be opened for appending.
    #[error("cannot open {}: {source}", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The capture has stopped (the node is shutting down).
    #[error("capture has stopped")]
    Stopped,
}

/// What a record is about; written in upper case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Topic {
    /// A container's log line.
    Log,
    /// A container's stats sample (JSON).
    Stats,
    /// A host stats sample (JSON).
    Host,
    /// A Docker event, or another event of the node (e.g. a fault).
    Event,
    /// An operator's mark.
    Mark,
}

impl Topic {
    /// The word written in the record.
    pub fn as_str(self) -> &'static str {
        match self {
            Topic::Log => "LOG",
            Topic::Stats => "STATS",
            Topic::Host => "HOST",
            Topic::Event => "EVENT",
            Topic::Mark => "MARK",
        }
    }
}

impl std::fmt::Display for Topic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

struct Inner {
    dir: PathBuf,
    tx: Sender<stream::Command>,
    current: Mutex<PathBuf>,
}

/// A running capture; clones share it. It stops when the token given to
/// [`Capture::start`] is cancelled; records after that are dropped.
#[derive(Clone)]
pub struct Capture {
    inner: Arc<Inner>,
}

impl Capture {
    /// Start capturing until `shutdown` is cancelled; every task runs on `tracker`, so
    /// waiting for the tracker waits for the capture to end.
    ///
    /// Fails only when the capture folder, the first file or the syslog socket cannot be
    /// created. Never fails because Docker is down: it logs, retries every 5 s, and keeps
    /// the syslog socket and marks working meanwhile.
    pub async fn start(
        config: CaptureConfig,
        shutdown: CancellationToken,
        tracker: &TaskTracker,
    ) -> io::Result<Capture> {
        std::fs::create_dir_all(&config.dir).map_err(|e| with_path(e, &config.dir))?;
        let name =
            file_name(&config.file).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let path = config.dir.join(name);
        let file = open_append(&path).map_err(|e| with_path(e, &path))?;
        let sockets = match &config.syslog_socket {
            Some(socket) => Some(syslog::Sockets::bind(socket)?),
            None => None,
        };
        let tx = stream::spawn_writer(node_field(&config.node), file)?;
        let capture = Capture {
            inner: Arc::new(Inner {
                dir: config.dir.clone(),
                tx,
                current: Mutex::new(path),
            }),
        };
        if let Some(sockets) = sockets {
            tracker.spawn(syslog::serve(
                sockets,
                capture.clone(),
                shutdown.clone(),
                tracker.clone(),
            ));
        }
        tracker.spawn(docker::run(
            capture.clone(),
            config.docker_socket.clone(),
            config.stats_interval,
            shutdown.clone(),
        ));
        tracker.spawn(host::run(
            capture.clone(),
            config.stats_interval,
            shutdown.clone(),
        ));
        let stopper = capture.clone();
        tracker.spawn(async move {
            shutdown.cancelled().await;
            let _ = stopper.inner.tx.send(stream::Command::Stop);
        });
        tracing::info!(file = %capture.current_file().display(), "capture started");
        Ok(capture)
    }

    /// Write a MARK record (LSDSuite `mark`).
    pub fn mark(&self, text: &str) {
        self.record(Topic::Mark, None, text);
    }

    /// Switch the output to `name` inside the capture folder (LSDSuite `log`; empty means
    /// `default.log`). Records sent before go to the old file, records after to the new
    /// one; the new file is appended to if it exists. Names with `/` or `..` are refused.
    pub fn switch_file(&self, name: &str) -> Result<PathBuf, SwitchError> {
        let name = file_name(name)?;
        let path = self.inner.dir.join(name);
        let file = open_append(&path).map_err(|source| SwitchError::Open {
            path: path.clone(),
            source,
        })?;
        let mut current = self.lock_current();
        self.inner
            .tx
            .send(stream::Command::Switch(file))
            .map_err(|_| SwitchError::Stopped)?;
        *current = path.clone();
        tracing::info!(file = %path.display(), "capture switched file");
        Ok(path)
    }

    /// The file being written now.
    pub fn current_file(&self) -> PathBuf {
        self.lock_current().clone()
    }

    /// Write any record (for other parts of the node, e.g. fault events).
    pub fn record(&self, topic: Topic, container: Option<&str>, text: &str) {
        self.send(stream::Record {
            topic,
            container: container.map(str::to_string),
            text: text.to_string(),
        });
    }

    fn send(&self, record: stream::Record) {
        let _ = self.inner.tx.send(stream::Command::Record(record));
    }

    fn lock_current(&self) -> MutexGuard<'_, PathBuf> {
        self.inner
            .current
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The file name to use for `name`: empty means [`DEFAULT_FILE`]; a path, `..`, `.` or a
/// NUL is refused.
fn file_name(name: &str) -> Result<&str, BadFileName> {
    let name = name.trim();
    if name.is_empty() {
        return Ok(DEFAULT_FILE);
    }
    if name.contains('/') || name.contains("..") || name.contains('\0') || name == "." {
        return Err(BadFileName {
            name: name.to_string(),
        });
    }
    Ok(name)
}

/// The event stream is readable by the node's user only (0600; tightened if looser).
fn open_append(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)?;
    if file.metadata()?.permissions().mode() & 0o077 != 0 {
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(file)
}

/// The node name as a record field: one word, never empty.
fn node_field(node: &str) -> String {
    let field: String = node
        .trim()
        .chars()
        .map(|c| if c.is_whitespace() { '_' } else { c })
        .collect();
    if field.is_empty() {
        "-".to_string()
    } else {
        field
    }
}

fn with_path(e: io::Error, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// The syslog path without sockets, writer thread or clock, for the fuzz targets
/// (`crates/fuzz-targets`): the same functions the sockets and the writer run. Not an API.
#[doc(hidden)]
pub mod fuzzing {
    use super::{lines::Lines, stream, syslog};

    /// The most a syslog stream message is kept whole before it is cut.
    pub const MAX_MESSAGE: usize = syslog::MAX_MESSAGE;

    /// One LOG record as the writer writes it.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct LogRecord {
        /// The container named by the message's APP-NAME.
        pub container: Option<String>,
        /// The message text, as it goes in the record before escaping.
        pub text: String,
        /// The line written, stamped at 0 ms by node `node`.
        pub line: String,
    }

    /// The records a syslog stream connection gives when its bytes arrive in `chunks`,
    /// with messages of `max_message` bytes or more cut.
    pub fn syslog_stream<'a>(
        chunks: impl IntoIterator<Item = &'a [u8]>,
        max_message: usize,
        node: &str,
    ) -> Vec<LogRecord> {
        let mut messages = Vec::new();
        let mut lines = Lines::new(max_message);
        for chunk in chunks {
            lines.push(chunk, |m| messages.push(m.to_vec()));
        }
        lines.finish(|m| messages.push(m.to_vec()));
        messages
            .iter()
            .filter_map(|m| syslog_datagram(m, node))
            .collect()
    }

    /// The record one syslog datagram gives, if any.
    pub fn syslog_datagram(bytes: &[u8], node: &str) -> Option<LogRecord> {
        let record = syslog::message_record(bytes)?;
        let mut line = String::new();
        stream::format_line(&mut line, 0, node, &record);
        Some(LogRecord {
            container: record.container,
            text: record.text,
            line,
        })
    }
}

#[cfg(test)]
mod tests;
