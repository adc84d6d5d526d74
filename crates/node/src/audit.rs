//! The audit log: one JSON line per event, each carrying the whole message so that it can
//! be recreated, rotated by size.
//!
//! A line is `{"at":<ms>,"event":"submitted","message":{…}}`. Each line is written whole
//! with a single write to a file opened for appending, alone or with the other lines of
//! the same batch of requests or submit ([`Lines`]), and the log rotates before a write
//! that would take the file past its size, so no line is ever split across files. Lines
//! are not fsynced: the store, not this log, is what survives a crash.
//!
//! The rotation is [`RotatingFile`], which the error log uses too.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use bosun_proto::{Message, Millis};
use serde::Serialize;

use crate::node::now_millis;

/// An append-only audit log of messages, safe to share between tasks.
pub struct AuditLog {
    file: RotatingFile,
}

/// A file of JSON lines, appended to with one write per line and rotated by size
/// (`name` → `name.1` → `name.2` …), safe to share between tasks. Files are 0600.
pub struct RotatingFile {
    path: PathBuf,
    /// What the file is, for log lines: `audit log`, `error log`.
    what: &'static str,
    max_bytes: u64,
    keep: usize,
    state: Mutex<Writer>,
}

/// The open file and what is known of it.
struct Writer {
    /// None after a failed rotation; reopened at the next record.
    file: Option<File>,
    /// Bytes in the current file.
    size: u64,
    /// True while writes fail, so a failing disk is logged once, not once per line.
    failing: bool,
    /// The same, for rotation.
    rotate_failing: bool,
}

#[derive(Serialize)]
struct Line<'a> {
    at: Millis,
    event: &'a str,
    message: &'a Message,
}

impl AuditLog {
    /// Open (or create) the log at `path`; rotate it past `max_bytes`, keeping `keep` old files.
    pub fn open(path: PathBuf, max_bytes: u64, keep: usize) -> std::io::Result<AuditLog> {
        Ok(AuditLog {
            file: RotatingFile::open(path, "audit log", max_bytes, keep)?,
        })
    }

    /// The log file being written.
    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// Append one line for `event` (e.g. `submitted`, `received`) with the whole message.
    /// A write error is logged, never returned: auditing must not stop delivery.
    /// Registry auth is written as `<redacted>`.
    pub fn record(&self, event: &str, message: &Message) {
        let lines = Lines::default();
        lines.add(event, message);
        self.append(lines);
    }

    /// Append the lines gathered in `lines`, all with one write.
    pub fn append(&self, lines: Lines) {
        let bytes = lines.0.into_inner().unwrap_or_else(|e| e.into_inner());
        if !bytes.is_empty() {
            self.file.append(&bytes);
        }
    }

    /// Append one line for an arrival refused before anything ran: where it came, who
    /// it claims (or proved) to be, and why.
    pub fn refused(&self, subject: &str, from: Option<&str>, id: Option<&str>, reason: &str) {
        #[derive(Serialize)]
        struct Refusal<'a> {
            at: Millis,
            event: &'static str,
            subject: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            from: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            id: Option<&'a str>,
            reason: &'a str,
        }
        let line = Refusal {
            at: now_millis(),
            event: "refused",
            subject,
            from,
            id,
            reason,
        };
        let mut bytes = serde_json::to_vec(&line).expect("plain fields serialise");
        bytes.push(b'\n');
        self.file.append(&bytes);
    }
}

/// Audit lines gathered to be written together ([`AuditLog::append`]): those of the
/// requests of one batch, or of the messages of one submit, so that they cost one write
/// instead of one each.
#[derive(Default)]
pub struct Lines(Mutex<Vec<u8>>);

impl Lines {
    /// Add the line for `event` with the whole message (registry auth redacted).
    pub fn add(&self, event: &str, message: &Message) {
        let redacted = bosun_proto::container::redacted(message);
        let line = Line {
            at: now_millis(),
            event,
            message: redacted.as_ref().unwrap_or(message),
        };
        let mut bytes = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let start = bytes.len();
        match serde_json::to_writer(&mut *bytes, &line) {
            Ok(()) => bytes.push(b'\n'),
            Err(e) => {
                bytes.truncate(start);
                tracing::error!(error = %e, "cannot encode an audit line");
            }
        }
    }
}

impl RotatingFile {
    /// Open (or create, 0600) the file at `path`; rotate it past `max_bytes` (0: never),
    /// keeping `keep` old files. `what` names it in log lines.
    pub fn open(
        path: PathBuf,
        what: &'static str,
        max_bytes: u64,
        keep: usize,
    ) -> std::io::Result<RotatingFile> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        let file = open_append(&path)?;
        let size = file.metadata()?.len();
        Ok(RotatingFile {
            path,
            what,
            max_bytes: if max_bytes == 0 { u64::MAX } else { max_bytes },
            keep,
            state: Mutex::new(Writer {
                file: Some(file),
                size,
                failing: false,
                rotate_failing: false,
            }),
        })
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Append `line` (whole lines, each ending in a newline) with one write. A write
    /// error is logged once while it lasts, never returned.
    pub fn append(&self, line: &[u8]) {
        // A panic elsewhere while holding the lock leaves nothing half-done here worth
        // refusing to log for.
        let mut writer = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match self.write(&mut writer, line) {
            Ok(()) => {
                if writer.failing {
                    tracing::info!(path = %self.path.display(), "{} writable again", self.what);
                }
                writer.failing = false;
            }
            Err(e) => {
                if !writer.failing {
                    tracing::error!(path = %self.path.display(), error = %e, "cannot write the {}; lines are lost until it is writable again (check disk space and permissions)", self.what);
                }
                writer.failing = true;
            }
        }
    }

    fn write(&self, writer: &mut Writer, line: &[u8]) -> std::io::Result<()> {
        let len = line.len() as u64;
        // A line longer than max_bytes still gets a file of its own rather than being
        // split or dropped.
        if writer.size > 0 && writer.size.saturating_add(len) > self.max_bytes {
            writer.file = None;
            match self.rotate() {
                Ok(()) => writer.rotate_failing = false,
                Err(e) => {
                    // Losing lines is worse than an oversized file: write on.
                    if !writer.rotate_failing {
                        tracing::error!(path = %self.path.display(), error = %e, "cannot rotate the {}; it grows past its size limit until rotation works (check permissions on its folder)", self.what);
                    }
                    writer.rotate_failing = true;
                }
            }
        }
        if writer.file.is_none() {
            let file = open_append(&self.path)?;
            writer.size = file.metadata()?.len();
            writer.file = Some(file);
        }
        let Some(file) = writer.file.as_mut() else {
            return Ok(());
        };
        if let Err(e) = file.write_all(line) {
            // Cut off a partly written line, so the next line starts on a line of its own.
            let _ = file.set_len(writer.size);
            return Err(e);
        }
        writer.size += len;
        Ok(())
    }

    /// `name` → `name.1`, `.1` → `.2` …, dropping the oldest beyond `keep`.
    fn rotate(&self) -> std::io::Result<()> {
        if self.keep == 0 {
            return ignore_missing(std::fs::remove_file(&self.path));
        }
        // Only the old files that exist are shifted, so a huge `keep` costs nothing.
        let mut existing = 0;
        while existing < self.keep && self.numbered(existing + 1).exists() {
            existing += 1;
        }
        // When all `keep` exist, renaming onto the oldest drops it.
        for n in (1..=existing.min(self.keep - 1)).rev() {
            ignore_missing(std::fs::rename(self.numbered(n), self.numbered(n + 1)))?;
        }
        ignore_missing(std::fs::rename(&self.path, self.numbered(1)))
    }

    fn numbered(&self, n: usize) -> PathBuf {
        let mut name = self.path.as_os_str().to_owned();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }
}

fn open_append(path: &Path) -> std::io::Result<File> {
    crate::files::open_private_append(path)
}

fn ignore_missing(result: std::io::Result<()>) -> std::io::Result<()> {
    match result {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(i: usize) -> Message {
        Message {
            id: Some(bosun_proto::new_id()),
            to_node: Some("ship1".into()),
            from_node: Some("home".into()),
            method: "cliCommand".into(),
            data: vec![
                "sh".into(),
                "-c".into(),
                format!("echo {i} \"quoted\"\nnext"),
            ],
            ack_timeout: Some(5),
            labels: [("team".to_string(), "ops".to_string())].into(),
            created_at: Some(1_700_000_000_000 + i as u64),
            ..Default::default()
        }
    }

    fn read_lines(path: &Path) -> Vec<serde_json::Value> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("every line is whole JSON"))
            .collect()
    }

    #[test]
    fn lines_parse_back_to_the_same_message() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs/audit.log");
        let log = AuditLog::open(path.clone(), 1 << 20, 3).unwrap();
        let sent = message(1);
        let received = message(2);
        log.record("submitted", &sent);
        log.record("received", &received);
        drop(log);
        // Reopening appends rather than truncating.
        AuditLog::open(path.clone(), 1 << 20, 3)
            .unwrap()
            .record("done", &sent);

        let lines = read_lines(&path);
        assert_eq!(lines.len(), 3);
        let events: Vec<&str> = lines.iter().map(|l| l["event"].as_str().unwrap()).collect();
        assert_eq!(events, ["submitted", "received", "done"]);
        assert!(lines[0]["at"].as_u64().unwrap() > 1_600_000_000_000);
        let back: Message = serde_json::from_value(lines[1]["message"].clone()).unwrap();
        assert_eq!(back, received);
        let back: Message = serde_json::from_value(lines[2]["message"].clone()).unwrap();
        assert_eq!(back, sent);
    }

    /// The length of one audit line of [`message`], written in a file of its own in `dir`.
    fn line_len(dir: &Path) -> u64 {
        let one = dir.join("one.log");
        AuditLog::open(one.clone(), 1 << 20, 1)
            .unwrap()
            .record("submitted", &message(0));
        std::fs::metadata(one).unwrap().len()
    }

    #[test]
    fn rotation_keeps_at_most_keep_files_and_never_splits_a_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let line_len = line_len(dir.path());
        // Room for two lines and a bit, not three.
        let max = line_len * 2 + line_len / 2;
        let log = AuditLog::open(path.clone(), max, 2).unwrap();
        let messages: Vec<Message> = (0..9).map(message).collect();
        for m in &messages {
            log.record("submitted", m);
        }

        let mut files: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("audit.log"))
            .collect();
        files.sort();
        assert_eq!(files, ["audit.log", "audit.log.1", "audit.log.2"]);
        // Oldest first: .2, .1, then the live file; together the newest lines in order.
        let mut kept = Vec::new();
        for name in ["audit.log.2", "audit.log.1", "audit.log"] {
            let file = dir.path().join(name);
            assert!(
                std::fs::metadata(&file).unwrap().len() <= max,
                "{name} over size"
            );
            kept.extend(read_lines(&file));
        }
        let kept: Vec<Message> = kept
            .into_iter()
            .map(|l| serde_json::from_value(l["message"].clone()).unwrap())
            .collect();
        assert_eq!(kept, messages[messages.len() - kept.len()..]);
        assert!(kept.len() >= 5, "{} lines kept", kept.len());
    }

    #[test]
    fn lines_gathered_together_are_written_in_order_and_rotate_together() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let line_len = line_len(dir.path());
        // Room for three lines and a bit: one line, then a batch of three that does not
        // fit beside it, so the batch starts the next file whole.
        let log = AuditLog::open(path.clone(), line_len * 3 + line_len / 2, 1).unwrap();
        let messages: Vec<Message> = (1..5).map(message).collect();
        log.record("received", &messages[0]);
        let batch = Lines::default();
        for m in &messages[1..] {
            batch.add("received", m);
        }
        // Nothing is written until the batch is.
        assert_eq!(read_lines(&path).len(), 1);
        log.append(batch);
        log.append(Lines::default());
        let ids = |file: &Path| -> Vec<String> {
            read_lines(file)
                .iter()
                .map(|l| l["message"]["id"].as_str().unwrap().to_string())
                .collect()
        };
        let rotated = dir.path().join("audit.log.1");
        let id = |m: &Message| m.id().to_string();
        assert_eq!(ids(&rotated), [id(&messages[0])]);
        assert_eq!(ids(&path), messages[1..].iter().map(id).collect::<Vec<_>>());
    }

    #[test]
    fn a_line_bigger_than_the_limit_gets_a_file_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let log = AuditLog::open(path.clone(), 10, 0).unwrap();
        log.record("submitted", &message(1));
        log.record("submitted", &message(2));
        assert_eq!(read_lines(&path).len(), 1, "keep 0: only the live file");
        assert!(!dir.path().join("audit.log.1").exists());
    }

    #[test]
    fn a_failed_rotation_loses_no_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let log = AuditLog::open(path.clone(), 10, 1).unwrap();
        let messages: Vec<Message> = (0..3).map(message).collect();
        log.record("submitted", &messages[0]);
        // The rotation target becomes a non-empty folder, so rotating fails.
        std::fs::create_dir_all(dir.path().join("audit.log.1/x")).unwrap();
        log.record("submitted", &messages[1]);
        assert_eq!(read_lines(&path).len(), 2, "written on past the limit");
        std::fs::remove_dir_all(dir.path().join("audit.log.1")).unwrap();
        log.record("submitted", &messages[2]);

        let back = |file: &Path| -> Vec<Message> {
            read_lines(file)
                .into_iter()
                .map(|l| serde_json::from_value(l["message"].clone()).unwrap())
                .collect()
        };
        assert_eq!(back(&dir.path().join("audit.log.1")), messages[..2]);
        assert_eq!(back(&path), messages[2..]);
    }

    #[test]
    fn a_huge_keep_is_fine() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let log = AuditLog::open(path.clone(), 10, usize::MAX).unwrap();
        for i in 0..3 {
            log.record("submitted", &message(i));
        }
        for name in ["audit.log", "audit.log.1", "audit.log.2"] {
            assert_eq!(read_lines(&dir.path().join(name)).len(), 1, "{name}");
        }
        fn shared<T: Send + Sync>(_: &T) {}
        shared(&log);
    }

    #[test]
    fn a_log_that_cannot_be_opened_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(AuditLog::open(dir.path().to_path_buf(), 100, 1).is_err());
    }
}
