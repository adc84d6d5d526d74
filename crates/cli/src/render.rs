//! Turning records into text for people.

use std::fmt::Write;

use bosun_node::HistoryEntry;
use bosun_node::StatusReport;
use bosun_proto::{Millis, Outcome, State};

/// `HH:MM:SS.mmm` UTC: the time part of the RFC 3339 form.
pub fn clock(ms: Millis) -> String {
    let text = bosun_methods::clock::rfc3339_millis(ms);
    text.get(11..23).unwrap_or(&text).to_string()
}

/// `YYYY-MM-DD` UTC: the date part of the RFC 3339 form.
pub fn date(ms: Millis) -> String {
    let text = bosun_methods::clock::rfc3339_millis(ms);
    text.get(..10).unwrap_or(&text).to_string()
}

/// One line about an outcome: status, exit code, duration.
pub fn outcome_summary(o: &Outcome) -> String {
    let mut s = format!("{:?}", o.status).to_lowercase();
    if let Some(c) = o.exit_code {
        let _ = write!(s, ", exit {c}");
    }
    if let Some(start) = o.started_at {
        let _ = write!(s, ", {} ms", o.finished_at.saturating_sub(start));
    }
    if o.truncated {
        s.push_str(", output truncated");
    }
    s
}

/// Indent every line of `text`.
pub fn indented(text: &str, prefix: &str) -> String {
    text.lines().map(|l| format!("{prefix}{l}\n")).collect()
}

fn history_lines(out: &mut String, history: &[HistoryEntry], base: Millis) {
    for h in history {
        let _ = write!(
            out,
            "  {}  +{:>6} ms  {:<11}",
            clock(h.at),
            h.at.saturating_sub(base),
            h.state.name()
        );
        if let Some(note) = &h.note {
            let _ = write!(out, "  {note}");
        }
        out.push('\n');
    }
}

/// The whole life of a message, for `bosun status ID`.
pub fn report(r: &StatusReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "id       {}", r.id);
    if let Some(s) = &r.sent {
        let m = &s.message;
        let base = s.history.first().map(|h| h.at).unwrap_or(0);
        let _ = writeln!(
            out,
            "method   {} → {} (from {})",
            m.method,
            m.destination(),
            m.from_node.as_deref().unwrap_or("?")
        );
        if !m.data.is_empty() {
            let _ = writeln!(
                out,
                "data     {}",
                serde_json::to_string(&m.data).unwrap_or_default()
            );
        }
        let _ = writeln!(
            out,
            "state    {}   (sent {} time(s), {})",
            s.state.name(),
            s.sends,
            date(base)
        );
        if matches!(s.state, State::Queued | State::Sent)
            && let (Some(created), Some(ttl)) = (m.created_at, m.ttl.filter(|t| *t > 0))
        {
            let expires = created.saturating_add(ttl.saturating_mul(1000));
            let _ = writeln!(
                out,
                "expires  {} (ttl {ttl} s: given up then unless delivered)",
                date(expires)
            );
        }
        if s.state == State::Unconfirmed {
            let _ = writeln!(
                out,
                "note     not confirmed: no ACK came, so {} was asked to cancel it; its answer (cancelled, or what really happened) will be recorded",
                m.destination()
            );
        }
        if let Some(d) = &s.disagreement {
            let _ = writeln!(out, "disagree {d}");
        }
        out.push_str("history (sender)\n");
        history_lines(&mut out, &s.history, base);
    }
    if let Some(schedule) = &r.schedule {
        let _ = writeln!(
            out,
            "schedule {} run(s) left, every {} s, next at {} {}",
            schedule.runs_left,
            schedule.interval_ms / 1000,
            date(schedule.next_at),
            clock(schedule.next_at)
        );
    }
    if let Some(rcv) = &r.received {
        let base = rcv.history.first().map(|h| h.at).unwrap_or(0);
        if r.sent.is_none() {
            let m = &rcv.message;
            let _ = writeln!(
                out,
                "method   {} from {}",
                m.method,
                m.from_node.as_deref().unwrap_or("?")
            );
            let _ = writeln!(out, "state    {}", rcv.state.name());
        }
        let _ = writeln!(out, "history (receiver, arrived {} time(s))", rcv.arrivals);
        history_lines(&mut out, &rcv.history, base);
    }
    if !r.output.is_empty() {
        out.push_str("output (streamed)\n");
        out.push_str(&indented(&r.output, "  "));
    }
    if let Some(o) = r.outcome() {
        let _ = writeln!(out, "result   {} on {}", outcome_summary(o), o.node);
        if let Some(e) = &o.error {
            let _ = writeln!(out, "reason   {e}");
        }
        if !o.stdout.is_empty() {
            out.push_str("stdout\n");
            out.push_str(&indented(&o.stdout, "  "));
        }
        if !o.stderr.is_empty() {
            out.push_str("stderr\n");
            out.push_str(&indented(&o.stderr, "  "));
        }
    } else {
        out.push_str("result   (none yet)\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_and_date_are_utc() {
        // 2026-11-21T23:21:03.456Z
        let ms = 1_795_303_263_456;
        assert_eq!(clock(ms), "23:21:03.456");
        assert_eq!(date(ms), "2026-11-21");
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(date(951_782_400_000), "2000-02-29");
    }
}
