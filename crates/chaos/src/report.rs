//! One experiment's timeline gathered from every node: JSON, a table, and an SVG chart
//! (one lane per node and container; faults as bars from applied to undone, marks and
//! Docker's state changes as ticks). The SVG is written by hand: a few rectangles,
//! lines and labels do not need a plotting library.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::{Deserialize, Serialize};

use crate::book::EntryState;
use crate::engine::Listing;
use crate::plan::{Target, describe_action};

/// The gathered timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// The experiment.
    pub experiment: String,
    /// Every node's listing.
    pub nodes: Vec<Listing>,
    /// Nodes that did not answer.
    pub unanswered: Vec<String>,
    /// Figures over every event.
    pub figures: Figures,
}

/// How closely the nodes kept to the plan.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Figures {
    /// Events by state.
    pub states: BTreeMap<String, usize>,
    /// Planned time to the start of applying, ms: median and 99th percentile.
    pub fire_skew_ms: Option<(u64, u64)>,
    /// Planned time to the fault being in place, ms.
    pub apply_skew_ms: Option<(u64, u64)>,
    /// Lease end to undone, ms.
    pub undo_late_ms: Option<(u64, u64)>,
    /// The latest undo after its lease end, ms.
    pub undo_late_max_ms: Option<u64>,
}

/// Put the listings together.
pub fn gather(experiment: &str, mut nodes: Vec<Listing>, unanswered: Vec<String>) -> Report {
    nodes.sort_by(|a, b| a.node.cmp(&b.node));
    let entries = nodes.iter().flat_map(|n| n.entries.iter());
    let mut figures = Figures::default();
    let (mut fire, mut apply, mut undo) = (Vec::new(), Vec::new(), Vec::new());
    for e in entries {
        *figures
            .states
            .entry(format!("{:?}", e.state).to_lowercase())
            .or_default() += 1;
        if let Some(f) = e.fired_at {
            fire.push(f.saturating_sub(e.at));
        }
        if let Some(a) = e.applied_at {
            apply.push(a.saturating_sub(e.at));
        }
        if let (Some(u), Some(end), EntryState::Undone) = (e.undone_at, e.lease_end, e.state) {
            // An abort undoes before the lease end: only lease ends count here.
            if u >= end {
                undo.push(u - end);
            }
        }
    }
    figures.fire_skew_ms = percentiles(&mut fire);
    figures.apply_skew_ms = percentiles(&mut apply);
    figures.undo_late_ms = percentiles(&mut undo);
    figures.undo_late_max_ms = undo.iter().max().copied();
    Report {
        experiment: experiment.to_string(),
        nodes,
        unanswered,
        figures,
    }
}

/// Median and 99th percentile (nearest rank).
pub fn percentiles(values: &mut [u64]) -> Option<(u64, u64)> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    let rank = |p: f64| {
        let i = ((p * values.len() as f64).ceil() as usize).clamp(1, values.len()) - 1;
        values[i]
    };
    Some((rank(0.5), rank(0.99)))
}

/// A table of every event, by time, and the figures.
pub fn table(report: &Report) -> String {
    let mut rows: Vec<(u64, String)> = Vec::new();
    let start = start_of(report);
    for n in &report.nodes {
        for e in &n.entries {
            let rel = |t: Option<u64>| {
                t.map(|t| format!("{:+.3}", (t as i64 - start as i64) as f64 / 1000.0))
                    .unwrap_or_else(|| "-".into())
            };
            rows.push((
                e.at,
                format!(
                    "{:>9} {:>9} {:>9}  {:<12} {:<26} {:<22} {:<8} {}",
                    rel(Some(e.at)),
                    rel(e.applied_at),
                    rel(e.undone_at),
                    n.node,
                    describe_action(&e.event.action),
                    e.event.target.to_string(),
                    format!("{:?}", e.state).to_lowercase(),
                    e.error.clone().unwrap_or_default()
                ),
            ));
        }
    }
    rows.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
    let mut out = format!("experiment {}\n", report.experiment);
    let _ = writeln!(
        out,
        "{:>9} {:>9} {:>9}  {:<12} {:<26} {:<22} {:<8} note",
        "planned", "applied", "undone", "node", "action", "target", "state"
    );
    for (_, row) in rows {
        out.push_str(row.trim_end());
        out.push('\n');
    }
    let f = &report.figures;
    let pair = |p: Option<(u64, u64)>| {
        p.map(|(a, b)| format!("p50 {a} ms, p99 {b} ms"))
            .unwrap_or_else(|| "-".into())
    };
    let _ = writeln!(out, "states: {:?}", f.states);
    let _ = writeln!(out, "fire skew: {}", pair(f.fire_skew_ms));
    let _ = writeln!(out, "apply skew: {}", pair(f.apply_skew_ms));
    let _ = writeln!(
        out,
        "undo after lease end: {} (max {})",
        pair(f.undo_late_ms),
        f.undo_late_max_ms
            .map(|m| format!("{m} ms"))
            .unwrap_or_else(|| "-".into())
    );
    for n in &report.nodes {
        if let Some(e) = &n.container_events_error {
            let _ = writeln!(out, "{}: no Docker events: {e}", n.node);
        }
    }
    if !report.unanswered.is_empty() {
        let _ = writeln!(out, "did not answer: {}", report.unanswered.join(", "));
    }
    out
}

fn start_of(report: &Report) -> u64 {
    report
        .nodes
        .iter()
        .flat_map(|n| n.entries.iter().map(|e| e.at))
        .min()
        .unwrap_or(0)
}

/// The timeline as an SVG picture.
/// The time between the chart's ticks: the shortest round step (1 s, 2 s, 5 s, … 1 h)
/// that keeps them to at most 15 across `span_ms`, so their labels never overlap.
pub fn tick_step(span_ms: f64) -> u64 {
    const STEPS: [u64; 13] = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600];
    STEPS
        .iter()
        .map(|s| s * 1000)
        .find(|step| span_ms / *step as f64 <= 15.0)
        .unwrap_or_else(|| ((span_ms / 15.0 / 3_600_000.0).ceil() as u64).max(1) * 3_600_000)
}

pub fn svg(report: &Report) -> String {
    let start = start_of(report).saturating_sub(1000);
    let end = report
        .nodes
        .iter()
        .flat_map(|n| {
            n.entries
                .iter()
                .map(|e| {
                    e.undone_at
                        .or(e.lease_end)
                        .unwrap_or(e.at)
                        .max(e.applied_at.unwrap_or(0))
                })
                .chain(n.container_events.iter().map(|c| c.at))
        })
        .max()
        .unwrap_or(start)
        + 1000;
    // Lanes: per node, the node itself, then each container or workload it touched.
    let mut lanes: Vec<(String, String, Target)> = Vec::new();
    for n in &report.nodes {
        let mut targets: Vec<Target> = n.entries.iter().map(|e| e.event.target.clone()).collect();
        targets.extend(
            n.container_events
                .iter()
                .map(|c| Target::Container(c.container.clone())),
        );
        targets.push(Target::Node);
        targets.sort();
        targets.dedup();
        for t in targets {
            let label = match &t {
                Target::Node => n.node.clone(),
                other => format!("{} / {}", n.node, other),
            };
            lanes.push((n.node.clone(), label, t));
        }
    }
    let (left, width, lane_h, top) = (230.0, 900.0, 34.0, 40.0);
    let height = top + lane_h * lanes.len() as f64 + 40.0;
    let span = (end - start).max(1) as f64;
    let x = |t: u64| left + (t.saturating_sub(start)) as f64 / span * width;
    let mut s = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{height}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="#fff"/>
<text x="10" y="20" font-size="14" font-weight="bold">experiment {exp}</text>
"##,
        w = left + width + 20.0,
        exp = escape(&report.experiment)
    );
    let step = tick_step(span);
    let mut t = start - start % step + step;
    while t < end {
        let _ = writeln!(
            s,
            r##"<line x1="{x:.1}" y1="{top}" x2="{x:.1}" y2="{bottom:.1}" stroke="#eee"/><text x="{x:.1}" y="{label:.1}" fill="#888" text-anchor="middle">{rel}s</text>"##,
            x = x(t),
            bottom = height - 30.0,
            label = height - 15.0,
            rel = (t as i64 - start_of(report) as i64) / 1000
        );
        t += step;
    }
    for (i, (node, label, target)) in lanes.iter().enumerate() {
        let y = top + lane_h * i as f64;
        let _ = writeln!(
            s,
            r##"<text x="10" y="{ty:.1}">{label}</text><line x1="{left}" y1="{ly:.1}" x2="{right}" y2="{ly:.1}" stroke="#ccc"/>"##,
            ty = y + lane_h / 2.0 + 4.0,
            label = escape(label),
            ly = y + lane_h / 2.0,
            right = left + width
        );
        let Some(listing) = report.nodes.iter().find(|n| &n.node == node) else {
            continue;
        };
        for e in listing.entries.iter().filter(|e| &e.event.target == target) {
            let color = match e.state {
                EntryState::Failed | EntryState::Missed => "#d62728",
                _ if matches!(e.event.action, crate::scenario::Action::Mark { .. }) => "#2ca02c",
                _ => "#ff7f0e",
            };
            let from = e.applied_at.or(e.fired_at).unwrap_or(e.at);
            let to = e.undone_at.unwrap_or(from);
            let _ = writeln!(
                s,
                r##"<rect x="{x1:.1}" y="{y1:.1}" width="{w:.1}" height="{h:.1}" fill="{color}" opacity="0.8"><title>{title}</title></rect><line x1="{px:.1}" y1="{y1:.1}" x2="{px:.1}" y2="{y2:.1}" stroke="#333" stroke-dasharray="2,2"/>"##,
                x1 = x(from),
                y1 = y + 6.0,
                w = (x(to) - x(from)).max(3.0),
                h = lane_h - 12.0,
                px = x(e.at),
                y2 = y + lane_h - 6.0,
                title = escape(&format!(
                    "{} {} ({:?})",
                    e.event.id,
                    describe_action(&e.event.action),
                    e.state
                ))
            );
        }
        if let Target::Container(name) = target {
            for c in listing
                .container_events
                .iter()
                .filter(|c| &c.container == name)
            {
                let _ = writeln!(
                    s,
                    r##"<line x1="{cx:.1}" y1="{y1:.1}" x2="{cx:.1}" y2="{y2:.1}" stroke="#1f77b4" stroke-width="2"><title>{title}</title></line><text x="{cx:.1}" y="{ty:.1}" fill="#1f77b4" font-size="9">{action}</text>"##,
                    cx = x(c.at),
                    y1 = y + 2.0,
                    y2 = y + lane_h - 2.0,
                    ty = y + 10.0,
                    title = escape(&format!("docker {} {}", c.action, c.container)),
                    action = escape(&c.action)
                );
            }
        }
    }
    let _ = writeln!(
        s,
        r##"<text x="{left}" y="{y:.1}" fill="#555">orange: fault held (dashed: planned time) · green: mark · red: failed or missed · blue: Docker's state changes</text>"##,
        y = top - 8.0
    );
    s.push_str("</svg>\n");
    s
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let mut v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentiles(&mut v), Some((50, 99)));
        assert_eq!(percentiles(&mut [7]), Some((7, 7)));
        assert_eq!(percentiles(&mut []), None);
    }

    #[test]
    fn ticks_stay_few_and_round_whatever_the_span() {
        assert_eq!(tick_step(8_000.0), 1000);
        assert_eq!(tick_step(40_000.0), 5000);
        assert_eq!(tick_step(602_000.0), 60_000);
        assert_eq!(tick_step(3.0 * 3_600_000.0), 900_000);
        for span in [
            1.0,
            999.0,
            15_000.0,
            16_000.0,
            90_000.0,
            7_200_000.0,
            400_000_000.0,
        ] {
            let step = tick_step(span) as f64;
            assert!(span / step <= 15.0, "{span} ms in steps of {step}");
        }
    }
}
