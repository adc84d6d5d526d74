//! The syslog sockets for Docker's log driver, up to the record line written.

use bosun_capture::fuzzing::{self, LogRecord, MAX_MESSAGE};

const NODE: &str = "node1";

/// The first byte says how the stream arrives (pieces of 1 to 32 bytes) and whether
/// messages are cut short (at 16 to 79 bytes, or the real limit); the rest is the
/// stream, and also one datagram. Every record must be one well-formed line from which
/// the text can be recovered exactly; a stream shorter than the cut reads the same
/// however it is cut into pieces.
pub fn syslog(data: &[u8]) {
    let Some((&how, input)) = data.split_first() else {
        return;
    };
    let piece = usize::from(how % 32) + 1;
    let max = if how & 0x80 != 0 {
        16 + usize::from(how & 0x3f)
    } else {
        MAX_MESSAGE
    };
    let records = fuzzing::syslog_stream(input.chunks(piece), max, NODE);
    records.iter().for_each(well_formed);
    if input.len() < max {
        let whole = fuzzing::syslog_stream([input], max, NODE);
        assert_eq!(
            records, whole,
            "read in pieces of {piece}, the stream differs"
        );
    }
    if let Some(record) = fuzzing::syslog_datagram(input, NODE) {
        well_formed(&record);
    }
}

/// `<time> LOG <node> <container or -> <escaped text>\n`, one line, text recoverable.
fn well_formed(record: &LogRecord) {
    let line = &record.line;
    let body = line
        .strip_suffix('\n')
        .unwrap_or_else(|| panic!("record without its newline: {line:?}"));
    assert!(
        !body.contains(['\n', '\r']),
        "record of more than one line: {line:?}"
    );
    let rest = body
        .strip_prefix("1970-01-01T00:00:00.000Z LOG node1 ")
        .unwrap_or_else(|| panic!("record with a wrong head: {line:?}"));
    let (container, escaped) = rest
        .split_once(' ')
        .unwrap_or_else(|| panic!("record without a container field: {line:?}"));
    assert!(
        !container.is_empty() && !container.contains(char::is_whitespace),
        "container field {container:?} is not one word: {line:?}"
    );
    if record
        .container
        .as_deref()
        .is_none_or(|c| c.trim().is_empty())
    {
        assert_eq!(container, "-", "{line:?}");
    }
    assert_eq!(
        unescape(escaped).as_deref(),
        Some(record.text.as_str()),
        "the text cannot be recovered from {line:?}"
    );
}

/// The text of a record: `\\`, `\n` and `\r` undone; `None` for a stray backslash.
fn unescape(escaped: &str) -> Option<String> {
    let mut text = String::with_capacity(escaped.len());
    let mut chars = escaped.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            text.push(c);
            continue;
        }
        match chars.next()? {
            '\\' => text.push('\\'),
            'n' => text.push('\n'),
            'r' => text.push('\r'),
            _ => return None,
        }
    }
    Some(text)
}
