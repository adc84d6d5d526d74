//! The writer: one thread owns the capture file and writes the records it is sent, one
//! line each, stamped when they arrive.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::sync::mpsc::{Receiver, Sender, TryRecvError};

use bosun_methods::clock;

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
                let ms = clock::now_millis().max(self.last_ms);
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

/// Append `<time> <TOPIC> <node> <container or -> <escaped text>\n` to `line`.
pub(super) fn format_line(line: &mut String, ms: u64, node: &str, record: &Record) {
    clock::write_rfc3339_millis(line, ms);
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

#[cfg(test)]
mod tests {
    use super::*;

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
