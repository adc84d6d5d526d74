//! The writer: one thread owns the capture file and writes the records it is sent, one
//! line each, stamped when they arrive.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::sync::mpsc::{Receiver, Sender, TryRecvError};
use std::time::{SystemTime, UNIX_EPOCH};

use super::Topic;

/// A record as sent to the writer; it adds the time and the node.
pub(super) struct Record {
    pub topic: Topic,
    pub container: Option<String>,
    pub text: String,
}

/// What the writer is sent.
pub(super) enum Command {
    Record(Record),
    /// Write to this file from now on.
    Switch(File),
    /// Flush and end.
    Stop,
}

/// Start the writer thread on `file`; records carry `node`.
pub(super) fn spawn_writer(node: String, file: File) -> io::Result<Sender<Command>> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("bosun-capture".into())
        .spawn(move || Writer::new(node, file).run(rx))?;
    Ok(tx)
}

struct Writer {
    node: String,
    out: BufWriter<File>,
    last_ms: u64,
    failing: bool,
    line: String,
}

impl Writer {
    fn new(node: String, file: File) -> Writer {
        Writer {
            node,
            out: BufWriter::with_capacity(64 * 1024, file),
            last_ms: 0,
            failing: false,
            line: String::new(),
        }
    }

    fn run(mut self, rx: Receiver<Command>) {
        'outer: while let Ok(mut command) = rx.recv() {
            // Write everything queued, then flush once: a tail -f sees each record as
            // soon as the writer is idle, and a burst is one write.
            loop {
                if !self.handle(command) {
                    break 'outer;
                }
                command = match rx.try_recv() {
                    Ok(c) => c,
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => break 'outer,
                };
            }
            let flushed = self.out.flush();
            self.check(flushed);
        }
        let flushed = self.out.flush();
        self.check(flushed);
    }

    /// Handle one command; false to stop.
    fn handle(&mut self, command: Command) -> bool {
        match command {
            Command::Record(record) => {
                // Stamp on arrival, never backwards: the file is in time order.
                let ms = now_ms().max(self.last_ms);
                self.last_ms = ms;
                self.line.clear();
                format_line(&mut self.line, ms, &self.node, &record);
                let written = self.out.write_all(self.line.as_bytes());
                self.check(written);
            }
            Command::Switch(file) => {
                let flushed = self.out.flush();
                self.check(flushed);
                self.out = BufWriter::with_capacity(64 * 1024, file);
            }
            Command::Stop => return false,
        }
        true
    }

    /// Log the first failure of a run of failures, and the recovery.
    fn check(&mut self, result: io::Result<()>) {
        match result {
            Err(e) if !self.failing => {
                self.failing = true;
                tracing::error!(error = %e, "cannot write the capture file; records are lost until it works again");
            }
            Err(_) => {}
            Ok(()) if self.failing => {
                self.failing = false;
                tracing::info!("capture file writable again");
            }
            Ok(()) => {}
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Append `<time> <TOPIC> <node> <container or -> <escaped text>\n` to `line`.
pub(super) fn format_line(line: &mut String, ms: u64, node: &str, record: &Record) {
    rfc3339_ms(line, ms);
    line.push(' ');
    line.push_str(record.topic.as_str());
    line.push(' ');
    line.push_str(node);
    line.push(' ');
    match record.container.as_deref().map(str::trim) {
        Some(c) if !c.is_empty() => {
            line.extend(c.chars().map(|c| if c.is_whitespace() { '_' } else { c }))
        }
        _ => line.push('-'),
    }
    line.push(' ');
    escape_into(line, &record.text);
    line.push('\n');
}

/// Escape `\`, newline and carriage return, so that the text is one line and can be
/// recovered exactly.
pub(super) fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` for milliseconds since the Unix epoch.
pub(super) fn rfc3339_ms(out: &mut String, ms: u64) {
    use std::fmt::Write as _;
    let secs = ms / 1000;
    let days = i64::try_from(secs / 86_400).unwrap_or(i64::MAX);
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    let _ = write!(
        out,
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    );
}

/// Year, month, day of a day count since 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11]
    let d = doy - (153 * mp + 2) / 5 + 1; // [1, 31]
    let m = if mp < 10 { mp + 3 } else { mp - 9 }; // [1, 12]
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m as u32, d as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(ms: u64) -> String {
        let mut s = String::new();
        rfc3339_ms(&mut s, ms);
        s
    }

    #[test]
    fn rfc3339_matches_known_instants() {
        assert_eq!(ts(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(ts(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(ts(1_767_261_600_123), "2026-01-01T10:00:00.123Z");
        assert_eq!(ts(4_107_542_399_999), "2100-02-28T23:59:59.999Z");
        assert_eq!(ts(1_709_251_199_000), "2024-02-29T23:59:59.000Z");
    }

    #[test]
    fn line_is_escaped_and_has_dash_for_no_container() {
        let mut line = String::new();
        let record = Record {
            topic: Topic::Log,
            container: None,
            text: "a\nb\\n\rc".into(),
        };
        format_line(&mut line, 0, "n1", &record);
        assert_eq!(line, "1970-01-01T00:00:00.000Z LOG n1 - a\\nb\\\\n\\rc\n");
    }
}
