//! Cutting a byte stream into lines: container logs from the API and messages on the
//! syslog stream socket are both newline-separated and arrive cut anywhere.

/// Splits a byte stream into lines (without `\n` or `\r\n`), keeping a partial one
/// until its end arrives.
pub(super) struct Lines {
    pending: Vec<u8>,
    /// A partial line this long is given out as it is, so that a writer that never
    /// ends its line cannot make the buffer grow without bound.
    max: usize,
}

impl Lines {
    /// A splitter that gives out a line of `max` bytes or more in pieces.
    pub(super) fn new(max: usize) -> Lines {
        Lines {
            pending: Vec::new(),
            max,
        }
    }

    /// Add `bytes` and call `line` for every line they complete.
    pub(super) fn push(&mut self, bytes: &[u8], mut line: impl FnMut(&[u8])) {
        self.pending.extend_from_slice(bytes);
        let mut start = 0;
        while let Some(i) = self.pending[start..].iter().position(|&b| b == b'\n') {
            let end = start + i;
            let complete = &self.pending[start..end];
            line(complete.strip_suffix(b"\r").unwrap_or(complete));
            start = end + 1;
        }
        self.pending.drain(..start);
        if self.pending.len() >= self.max {
            line(&self.pending);
            self.pending.clear();
        }
    }

    /// The stream has ended: give out what is left as the last line.
    pub(super) fn finish(&mut self, mut line: impl FnMut(&[u8])) {
        if !self.pending.is_empty() {
            line(&self.pending);
            self.pending.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(max: usize, parts: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut lines = Vec::new();
        let mut splitter = Lines::new(max);
        for part in parts {
            splitter.push(part, |l| lines.push(l.to_vec()));
        }
        splitter.finish(|l| lines.push(l.to_vec()));
        lines
    }

    #[test]
    fn lines_cut_anywhere_come_out_whole() {
        assert_eq!(
            split(1024, &[b"one\r\ntw", b"o\n", b"\nthree"]),
            [&b"one"[..], b"two", b"", b"three"]
        );
    }

    #[test]
    fn a_line_without_end_is_given_out_at_the_limit() {
        assert_eq!(split(4, &[b"abcdef", b"gh\n"]), [&b"abcdef"[..], b"gh"]);
    }
}
