//! The node's error log: one JSON object per line in `<data dir>/error.log`, rotated by
//! size like the audit log ([`crate::audit::RotatingFile`]), 0600.
//!
//! Refusals (kind `rejected`) are rate-limited per sender ([`RefusalLimiter`]): at most
//! [`REFUSALS_PER_WINDOW`] entries per sender per [`REFUSAL_WINDOW_MS`], then one summary
//! line for the rest, so a flood of refused frames or connections can neither fill the
//! disk nor flood central.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

use bosun_proto::Millis;
use serde::Serialize;

use crate::audit::RotatingFile;

/// Refusal entries kept per sender per window.
pub(crate) const REFUSALS_PER_WINDOW: u32 = 10;

/// The window of the refusal limit: a minute.
pub(crate) const REFUSAL_WINDOW_MS: Millis = 60_000;

/// Senders tracked at once; past it, refusals of new senders share one bucket.
const MAX_TRACKED_SENDERS: usize = 1024;

/// One error worth an operator's attention.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ErrorEntry<'a> {
    pub at: Millis,
    pub node: &'a str,
    pub kind: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to_node: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<&'a str>,
    pub reason: &'a str,
}

/// The error log file, shared by everything that writes it.
pub(crate) struct ErrorLog {
    /// None when it could not be opened (said once at start).
    file: Option<RotatingFile>,
}

impl ErrorLog {
    /// Open (or create) the error log at `path`, rotated past `max_bytes` (0: never),
    /// keeping `keep` old files. A log that cannot be opened is said and left out.
    pub fn open(path: PathBuf, max_bytes: u64, keep: usize) -> ErrorLog {
        match RotatingFile::open(path.clone(), "error log", max_bytes, keep) {
            Ok(file) => ErrorLog { file: Some(file) },
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "cannot open the error log; errors go to this log only");
                ErrorLog { file: None }
            }
        }
    }

    /// Append an entry and log it. A failure to write the file is logged, never fatal.
    pub fn append(&self, entry: &ErrorEntry<'_>) {
        tracing::warn!(
            kind = entry.kind,
            id = entry.message_id.unwrap_or(""),
            to = entry.to_node.unwrap_or(""),
            reason = entry.reason,
            "error logged"
        );
        let Ok(mut line) = serde_json::to_vec(entry) else {
            return;
        };
        line.push(b'\n');
        if let Some(file) = &self.file {
            file.append(&line);
        }
    }

    /// Append error reports that another node sent (as `errorLog` messages): each line of
    /// `data` is one JSON entry; it is kept with the sender's name. Lines that are not
    /// JSON are kept as text.
    pub fn append_remote(&self, from: &str, data: &[String]) {
        let mut lines = String::new();
        for entry in data
            .iter()
            .flat_map(|d| d.lines())
            .filter(|l| !l.trim().is_empty())
        {
            let value = serde_json::from_str::<serde_json::Value>(entry)
                .unwrap_or_else(|_| serde_json::Value::String(entry.to_string()));
            let line = serde_json::json!({ "from": from, "entry": value });
            lines.push_str(&line.to_string());
            lines.push('\n');
        }
        if let Some(file) = &self.file
            && !lines.is_empty()
        {
            file.append(lines.as_bytes());
        }
    }
}

/// What the limiter says about one refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Admission {
    /// Refusals of this sender suppressed in its last window, to be said in one summary
    /// line before this entry (0: none).
    pub suppressed_before: u64,
    /// Whether this refusal itself is written.
    pub write: bool,
}

/// Counts refusals per sender in fixed windows of [`REFUSAL_WINDOW_MS`].
#[derive(Default)]
pub(crate) struct RefusalLimiter {
    senders: Mutex<HashMap<String, Window>>,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    start: Millis,
    written: u32,
    suppressed: u64,
}

/// The bucket senders share once [`MAX_TRACKED_SENDERS`] are tracked.
const OTHERS: &str = "(other senders)";

impl RefusalLimiter {
    /// Count one refusal from `sender` at `now`.
    pub fn admit(&self, sender: &str, now: Millis) -> Admission {
        let mut senders = self.senders.lock().unwrap_or_else(|e| e.into_inner());
        if !senders.contains_key(sender) && senders.len() >= MAX_TRACKED_SENDERS {
            // Forget senders whose window has passed with nothing to say.
            senders
                .retain(|_, w| now.saturating_sub(w.start) < REFUSAL_WINDOW_MS || w.suppressed > 0);
        }
        let key = if senders.contains_key(sender) || senders.len() < MAX_TRACKED_SENDERS {
            sender
        } else {
            OTHERS
        };
        let window = senders.entry(key.to_string()).or_insert(Window {
            start: now,
            written: 0,
            suppressed: 0,
        });
        let mut suppressed_before = 0;
        if now.saturating_sub(window.start) >= REFUSAL_WINDOW_MS {
            suppressed_before = window.suppressed;
            *window = Window {
                start: now,
                written: 0,
                suppressed: 0,
            };
        }
        let write = window.written < REFUSALS_PER_WINDOW;
        if write {
            window.written += 1;
        } else {
            window.suppressed += 1;
        }
        Admission {
            suppressed_before,
            write,
        }
    }

    /// The senders whose window has passed with refusals suppressed, and how many; their
    /// counts start again. For a summary when no further refusal comes.
    pub fn expired(&self, now: Millis) -> Vec<(String, u64)> {
        let mut senders = self.senders.lock().unwrap_or_else(|e| e.into_inner());
        let mut due = Vec::new();
        senders.retain(|sender, w| {
            if now.saturating_sub(w.start) < REFUSAL_WINDOW_MS {
                return true;
            }
            if w.suppressed > 0 {
                due.push((sender.clone(), w.suppressed));
            }
            false
        });
        due
    }
}

/// The summary line for `count` refusals from `sender` left out.
pub(crate) fn summary(sender: &str, count: u64) -> String {
    format!("… and {count} more refusals from {sender} suppressed")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_limited_per_sender_per_window() {
        let limiter = RefusalLimiter::default();
        let t0 = 1_000_000;
        for i in 0..REFUSALS_PER_WINDOW {
            let a = limiter.admit("mallory", t0 + u64::from(i));
            assert_eq!(
                a,
                Admission {
                    suppressed_before: 0,
                    write: true
                }
            );
        }
        for i in 0..25 {
            assert!(!limiter.admit("mallory", t0 + 100 + i).write);
        }
        // Another sender has its own count.
        assert!(limiter.admit("alice", t0 + 200).write);
        assert!(
            limiter.expired(t0 + 1_000).is_empty(),
            "the window is still open"
        );
        // The next window starts with the summary of the last one.
        let next = limiter.admit("mallory", t0 + REFUSAL_WINDOW_MS);
        assert_eq!(
            next,
            Admission {
                suppressed_before: 25,
                write: true
            }
        );
        for i in 0..12 {
            limiter.admit("mallory", t0 + REFUSAL_WINDOW_MS + 1 + i);
        }
        // With no refusal after the window, the summary is collected instead.
        let due = limiter.expired(t0 + 2 * REFUSAL_WINDOW_MS);
        assert_eq!(due, vec![("mallory".to_string(), 3)]);
        assert!(limiter.expired(t0 + 3 * REFUSAL_WINDOW_MS).is_empty());
        assert_eq!(
            summary("mallory", 3),
            "… and 3 more refusals from mallory suppressed"
        );
    }

    #[test]
    fn many_senders_share_a_bucket_past_the_limit() {
        let limiter = RefusalLimiter::default();
        for i in 0..MAX_TRACKED_SENDERS {
            assert!(limiter.admit(&format!("peer{i}"), 5).write);
        }
        let mut written = 0;
        for i in 0..100 {
            if limiter.admit(&format!("new{i}"), 6).write {
                written += 1;
            }
        }
        assert_eq!(written, REFUSALS_PER_WINDOW, "new senders share one count");
    }
}
