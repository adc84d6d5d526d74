//! Scenario files: what an operator writes. YAML or JSON (JSON is YAML).
//!
//! ```yaml
//! name: web-under-fire
//! seed: 42
//! duration: 60s
//! events:
//!   - at: 5s
//!     action: kill
//!     signal: SIGKILL
//!     target: { nodes: [edge1, edge2], container: "web-*", count: 1 }
//!     lease: 10s
//!   - every: 10s
//!     from: 0s
//!     until: 60s
//!     action: mark
//!     text: tick
//! ```
//! Times are numbers of seconds or strings with a unit (`250ms`, `5s`, `2m`). Every key
//! is checked: a misspelt one is refused with the keys that are allowed there.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ChaosError;

/// A whole experiment as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Scenario {
    /// A name, shown in reports.
    pub name: String,
    /// Seeds the choice of targets: the same seed and fleet give the same plan.
    pub seed: u64,
    /// How long the experiment lasts; every lease ends by then unless it says otherwise.
    pub duration_ms: u64,
    /// The timed events.
    pub events: Vec<EventSpec>,
}

/// One line of the timeline, before targets are chosen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventSpec {
    /// When: once at this offset, or repeatedly.
    pub when: When,
    /// What to do.
    pub action: Action,
    /// To what.
    pub target: TargetSpec,
    /// How long the fault lasts; `None`: until the end of the experiment. Ignored for
    /// actions that leave nothing to undo.
    pub lease_ms: Option<u64>,
    /// For `kill` and `stop`: start the container again when the lease ends (default
    /// true, so an experiment leaves the fleet as it found it).
    pub restore: bool,
}

/// When an event fires, as offsets from the experiment's start.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum When {
    /// Once.
    At(u64),
    /// Every `every_ms` from `from_ms` while before `until_ms`.
    Every {
        /// The period.
        every_ms: u64,
        /// The first firing.
        from_ms: u64,
        /// No firing at or after this.
        until_ms: u64,
    },
}

/// What an event does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "camelCase")]
pub enum Action {
    /// Send a signal to a container (lease: start it again).
    Kill {
        /// Signal name, e.g. `SIGKILL`.
        signal: String,
    },
    /// Stop a container (lease: start it again).
    Stop {
        /// Seconds between SIGTERM and SIGKILL.
        timeout_secs: u64,
    },
    /// Start a container.
    Start,
    /// Restart a container.
    Restart,
    /// Pause a container (lease: unpause).
    Pause,
    /// Unpause a container.
    Unpause,
    /// Send a signal to a supervised workload (its restart policy then applies).
    WorkloadKill {
        /// Signal name.
        signal: String,
    },
    /// Stop a supervised workload (lease: start it again).
    WorkloadStop,
    /// Drop traffic to and from `peers` (addresses, CIDRs, or container names on the
    /// same node), or from everything but loopback when `peers` is empty.
    Partition {
        /// Who is cut off; empty: everyone.
        peers: Vec<String>,
    },
    /// Drop this share of outgoing packets.
    Loss {
        /// Percent, 0–100.
        percent: f64,
    },
    /// Limit outgoing bandwidth (`tc tbf`).
    Bandwidth {
        /// A `tc` rate, e.g. `1mbit`, `500kbit`.
        rate: String,
    },
    /// Delay outgoing packets (`tc netem`, only where the kernel has it).
    Delay {
        /// Milliseconds added.
        ms: u64,
    },
    /// Busy loops inside a container.
    Cpu {
        /// How many.
        workers: u32,
    },
    /// Hold memory inside a container.
    Memory {
        /// MiB held.
        mb: u64,
    },
    /// Write a mark into the event stream.
    Mark {
        /// The text.
        text: String,
    },
}

impl Action {
    /// The action's name as written.
    pub fn name(&self) -> &'static str {
        match self {
            Action::Kill { .. } => "kill",
            Action::Stop { .. } => "stop",
            Action::Start => "start",
            Action::Restart => "restart",
            Action::Pause => "pause",
            Action::Unpause => "unpause",
            Action::WorkloadKill { .. } => "workloadKill",
            Action::WorkloadStop => "workloadStop",
            Action::Partition { .. } => "partition",
            Action::Loss { .. } => "loss",
            Action::Bandwidth { .. } => "bandwidth",
            Action::Delay { .. } => "delay",
            Action::Cpu { .. } => "cpu",
            Action::Memory { .. } => "memory",
            Action::Mark { .. } => "mark",
        }
    }

    /// What the action acts on.
    pub fn acts_on(&self) -> ActsOn {
        match self {
            Action::Kill { .. }
            | Action::Stop { .. }
            | Action::Start
            | Action::Restart
            | Action::Pause
            | Action::Unpause
            | Action::Cpu { .. }
            | Action::Memory { .. } => ActsOn::Container,
            Action::WorkloadKill { .. } | Action::WorkloadStop => ActsOn::Workload,
            Action::Partition { .. }
            | Action::Loss { .. }
            | Action::Bandwidth { .. }
            | Action::Delay { .. } => ActsOn::ContainerOrNode,
            Action::Mark { .. } => ActsOn::Node,
        }
    }

    /// True when the action leaves something the lease must undo.
    pub fn has_lease(&self, restore: bool) -> bool {
        match self {
            Action::Kill { .. } | Action::Stop { .. } => restore,
            Action::Pause
            | Action::WorkloadStop
            | Action::Partition { .. }
            | Action::Loss { .. }
            | Action::Bandwidth { .. }
            | Action::Delay { .. }
            | Action::Cpu { .. }
            | Action::Memory { .. } => true,
            Action::Start
            | Action::Restart
            | Action::Unpause
            | Action::WorkloadKill { .. }
            | Action::Mark { .. } => false,
        }
    }

    /// The keys this action takes besides the common ones.
    fn keys(name: &str) -> Option<&'static [&'static str]> {
        Some(match name {
            "kill" | "workloadKill" => &["signal"],
            "stop" => &["timeoutSecs"],
            "start" | "restart" | "pause" | "unpause" | "workloadStop" => &[],
            "partition" => &["peers"],
            "loss" => &["percent"],
            "bandwidth" => &["rate"],
            "delay" => &["ms"],
            "cpu" => &["workers"],
            "memory" => &["mb"],
            "mark" => &["text"],
            _ => return None,
        })
    }
}

/// What kind of thing an action acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActsOn {
    /// A container, by name pattern or labels.
    Container,
    /// A supervised workload, by name.
    Workload,
    /// A container when one is named, else the node itself.
    ContainerOrNode,
    /// The node (its event stream).
    Node,
}

/// Which targets an event may choose from, and how many it takes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct TargetSpec {
    /// Node names; empty: every node.
    pub nodes: Vec<String>,
    /// Nodes must carry all these labels.
    pub node_labels: BTreeMap<String, String>,
    /// Container name pattern (`*` and `?`).
    pub container: Option<String>,
    /// Containers must carry all these labels.
    pub container_labels: BTreeMap<String, String>,
    /// A supervised workload's name.
    pub workload: Option<String>,
    /// Take this many of the candidates.
    pub count: Option<usize>,
    /// Take this share of the candidates (rounded up, at least one).
    pub percent: Option<f64>,
}

const COMMON_KEYS: &[&str] = &[
    "at", "every", "from", "until", "action", "target", "lease", "restore",
];

/// Parse and check a scenario file's text.
pub fn parse(text: &str) -> Result<Scenario, ChaosError> {
    let value: Value = serde_yaml_ng::from_str(text).map_err(|e| ChaosError::Scenario {
        at: "the file".into(),
        reason: format!("not YAML or JSON: {e}"),
    })?;
    let top = value
        .as_object()
        .ok_or_else(|| bad("the file", "must be a map"))?;
    check_keys("the file", top, &["name", "seed", "duration", "events"])?;
    let name = match top.get("name") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_string(),
        None => "experiment".into(),
        Some(_) => return Err(bad("name", "must be a non-empty string")),
    };
    let seed = match top.get("seed") {
        None => 0,
        Some(v) => v
            .as_u64()
            .ok_or_else(|| bad("seed", "must be a whole number ≥ 0"))?,
    };
    let duration_ms = duration(
        "duration",
        top.get("duration")
            .ok_or_else(|| bad("the file", "needs `duration`"))?,
    )?;
    if duration_ms == 0 {
        return Err(bad("duration", "must be more than 0"));
    }
    let events = top
        .get("events")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("the file", "needs `events`, a list"))?;
    if events.is_empty() {
        return Err(bad("events", "is empty: nothing would happen"));
    }
    let events = events
        .iter()
        .enumerate()
        .map(|(i, e)| event(i, e, duration_ms))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Scenario {
        name,
        seed,
        duration_ms,
        events,
    })
}

fn event(index: usize, value: &Value, duration_ms: u64) -> Result<EventSpec, ChaosError> {
    let at = format!("events[{index}]");
    let map = value.as_object().ok_or_else(|| bad(&at, "must be a map"))?;
    let action_name = map
        .get("action")
        .and_then(Value::as_str)
        .ok_or_else(|| bad(&at, "needs `action`"))?;
    let extra = Action::keys(action_name).ok_or_else(|| {
        bad(
            &at,
            &format!(
                "unknown action {action_name:?}; known: kill, stop, start, restart, pause, unpause, workloadKill, workloadStop, partition, loss, bandwidth, delay, cpu, memory, mark"
            ),
        )
    })?;
    let allowed: Vec<&str> = COMMON_KEYS.iter().chain(extra).copied().collect();
    check_keys(&at, map, &allowed)?;
    let when = match (map.get("at"), map.get("every")) {
        (Some(t), None) => {
            if map.contains_key("from") || map.contains_key("until") {
                return Err(bad(&at, "`from` and `until` go with `every`, not `at`"));
            }
            When::At(duration(&format!("{at}.at"), t)?)
        }
        (None, Some(every)) => {
            let every_ms = duration(&format!("{at}.every"), every)?;
            if every_ms == 0 {
                return Err(bad(&format!("{at}.every"), "must be more than 0"));
            }
            let from_ms = match map.get("from") {
                Some(v) => duration(&format!("{at}.from"), v)?,
                None => 0,
            };
            let until_ms = match map.get("until") {
                Some(v) => duration(&format!("{at}.until"), v)?,
                None => duration_ms,
            };
            When::Every {
                every_ms,
                from_ms,
                until_ms,
            }
        }
        (Some(_), Some(_)) => return Err(bad(&at, "give `at` or `every`, not both")),
        (None, None) => return Err(bad(&at, "needs `at` (once) or `every` (repeated)")),
    };
    let first = match when {
        When::At(t) => t,
        When::Every { from_ms, .. } => from_ms,
    };
    if first >= duration_ms {
        return Err(bad(
            &at,
            &format!("fires at {first} ms, at or after the end ({duration_ms} ms)"),
        ));
    }
    let mut fields = serde_json::Map::new();
    for key in extra {
        if let Some(v) = map.get(*key) {
            fields.insert((*key).to_string(), v.clone());
        }
    }
    fields.insert("action".into(), Value::String(action_name.into()));
    defaults(action_name, &mut fields);
    let action: Action = serde_json::from_value(Value::Object(fields))
        .map_err(|e| bad(&at, &format!("{action_name}: {e}")))?;
    check_action(&at, &action)?;
    let target: TargetSpec = match map.get("target") {
        Some(t) => serde_json::from_value(t.clone())
            .map_err(|e| bad(&format!("{at}.target"), &e.to_string()))?,
        None => TargetSpec::default(),
    };
    check_target(&format!("{at}.target"), &action, &target)?;
    let lease_ms = match map.get("lease") {
        Some(v) => {
            let lease = duration(&format!("{at}.lease"), v)?;
            if lease == 0 {
                return Err(bad(&format!("{at}.lease"), "must be more than 0"));
            }
            Some(lease)
        }
        None => None,
    };
    let restore = match map.get("restore") {
        None => true,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(bad(&format!("{at}.restore"), "must be true or false")),
    };
    Ok(EventSpec {
        when,
        action,
        target,
        lease_ms,
        restore,
    })
}

fn defaults(action: &str, fields: &mut serde_json::Map<String, Value>) {
    match action {
        "kill" | "workloadKill" => {
            fields
                .entry("signal")
                .or_insert_with(|| Value::String("SIGKILL".into()));
        }
        "stop" => {
            fields.entry("timeoutSecs").or_insert_with(|| 10.into());
        }
        "partition" => {
            fields
                .entry("peers")
                .or_insert_with(|| Value::Array(vec![]));
        }
        "cpu" => {
            fields.entry("workers").or_insert_with(|| 1.into());
        }
        _ => {}
    }
}

/// Check an action's parameters; `at` says where, for the error. Nodes check again
/// every event they are sent, whoever planned it.
pub fn check_action(at: &str, action: &Action) -> Result<(), ChaosError> {
    match action {
        Action::Kill { signal } | Action::WorkloadKill { signal } => {
            signal_number(signal).ok_or_else(|| {
                bad(
                    at,
                    &format!("unknown signal {signal:?} (e.g. SIGKILL, SIGTERM, 9)"),
                )
            })?;
        }
        Action::Loss { percent } if !(0.0..=100.0).contains(percent) || *percent == 0.0 => {
            return Err(bad(at, "loss percent must be more than 0 and at most 100"));
        }
        Action::Bandwidth { rate } if !valid_rate(rate) => {
            return Err(bad(
                at,
                &format!("bandwidth rate {rate:?} is not a tc rate such as 1mbit or 500kbit"),
            ));
        }
        Action::Cpu { workers } if *workers == 0 || *workers > 64 => {
            return Err(bad(at, "cpu workers must be 1 to 64"));
        }
        Action::Memory { mb } if *mb == 0 || *mb > 1024 * 1024 => {
            return Err(bad(at, "memory mb must be 1 to 1048576"));
        }
        Action::Delay { ms } if *ms == 0 || *ms > 60_000 => {
            return Err(bad(at, "delay ms must be 1 to 60000"));
        }
        Action::Stop { timeout_secs } if *timeout_secs > 3600 => {
            return Err(bad(at, "stop timeoutSecs must be at most 3600"));
        }
        Action::Mark { text } if text.trim().is_empty() => {
            return Err(bad(at, "a mark needs a text"));
        }
        _ => {}
    }
    Ok(())
}

fn check_target(at: &str, action: &Action, target: &TargetSpec) -> Result<(), ChaosError> {
    if target.count.is_some() && target.percent.is_some() {
        return Err(bad(at, "give `count` or `percent`, not both"));
    }
    if target.count == Some(0) {
        return Err(bad(at, "count must be at least 1"));
    }
    if let Some(p) = target.percent
        && !(p > 0.0 && p <= 100.0)
    {
        return Err(bad(at, "percent must be more than 0 and at most 100"));
    }
    let names_container = target.container.is_some() || !target.container_labels.is_empty();
    match action.acts_on() {
        ActsOn::Container if !names_container => Err(bad(
            at,
            &format!(
                "{} acts on containers: give `container` (a name pattern) or `containerLabels`",
                action.name()
            ),
        )),
        ActsOn::Workload if target.workload.is_none() || names_container => Err(bad(
            at,
            &format!(
                "{} acts on a supervised workload: give `workload` (and no container)",
                action.name()
            ),
        )),
        ActsOn::Node if names_container || target.workload.is_some() => Err(bad(
            at,
            "a mark goes to nodes: give `nodes` or `nodeLabels` only",
        )),
        ActsOn::ContainerOrNode | ActsOn::Container if target.workload.is_some() => Err(bad(
            at,
            "`workload` goes with workloadKill and workloadStop",
        )),
        _ => Ok(()),
    }
}

/// A signal's number from `SIGKILL`, `KILL` or `9`.
pub fn signal_number(signal: &str) -> Option<i32> {
    let s = signal.trim();
    if let Ok(n) = s.parse::<i32>() {
        return (1..=64).contains(&n).then_some(n);
    }
    let name = s.strip_prefix("SIG").unwrap_or(s);
    Some(match name.to_ascii_uppercase().as_str() {
        "HUP" => 1,
        "INT" => 2,
        "QUIT" => 3,
        "ABRT" => 6,
        "KILL" => 9,
        "USR1" => 10,
        "SEGV" => 11,
        "USR2" => 12,
        "PIPE" => 13,
        "ALRM" => 14,
        "TERM" => 15,
        "CONT" => 18,
        "STOP" => 19,
        _ => return None,
    })
}

fn valid_rate(rate: &str) -> bool {
    let digits = rate.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &rate[digits.len()..];
    !digits.is_empty()
        && digits.chars().all(|c| c.is_ascii_digit())
        && matches!(
            unit.to_ascii_lowercase().as_str(),
            "bit" | "kbit" | "mbit" | "gbit" | "bps" | "kbps" | "mbps" | "gbps"
        )
}

fn check_keys(
    at: &str,
    map: &serde_json::Map<String, Value>,
    allowed: &[&str],
) -> Result<(), ChaosError> {
    for key in map.keys() {
        if !allowed.contains(&key.as_str()) {
            return Err(bad(
                at,
                &format!("unknown key {key:?}; allowed here: {}", allowed.join(", ")),
            ));
        }
    }
    Ok(())
}

/// A time from a number of seconds or a string with a unit (`ms`, `s`, `m`, `h`).
fn duration(at: &str, value: &Value) -> Result<u64, ChaosError> {
    let ms = match value {
        Value::Number(n) => n.as_f64().map(|s| s * 1000.0),
        Value::String(s) => {
            let s = s.trim();
            let digits = s.trim_end_matches(|c: char| c.is_ascii_alphabetic());
            let unit = &s[digits.len()..];
            let n: Option<f64> = digits.trim().parse().ok();
            let scale = match unit {
                "ms" => Some(1.0),
                "s" | "" => Some(1000.0),
                "m" => Some(60_000.0),
                "h" => Some(3_600_000.0),
                _ => None,
            };
            n.zip(scale).map(|(n, scale)| n * scale)
        }
        _ => None,
    };
    match ms {
        Some(ms) if ms.is_finite() && (0.0..1e12).contains(&ms) => Ok(ms.round() as u64),
        _ => Err(bad(
            at,
            &format!("{value} is not a time (seconds, or e.g. \"250ms\", \"5s\", \"2m\")"),
        )),
    }
}

fn bad(at: &str, reason: &str) -> ChaosError {
    ChaosError::Scenario {
        at: at.to_string(),
        reason: reason.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_documented_scenario_parses_with_defaults() {
        let s = parse(
            "name: t\nseed: 7\nduration: 1m\nevents:\n  - at: 5s\n    action: kill\n    target: {container: 'web-*', count: 1}\n    lease: 2500ms\n  - every: 10\n    action: mark\n    text: tick\n",
        )
        .unwrap();
        assert_eq!(s.duration_ms, 60_000);
        assert_eq!(s.seed, 7);
        assert_eq!(s.events[0].when, When::At(5000));
        assert_eq!(
            s.events[0].action,
            Action::Kill {
                signal: "SIGKILL".into()
            }
        );
        assert_eq!(s.events[0].lease_ms, Some(2500));
        assert!(s.events[0].restore);
        assert_eq!(
            s.events[1].when,
            When::Every {
                every_ms: 10_000,
                from_ms: 0,
                until_ms: 60_000
            }
        );
    }

    #[test]
    fn json_works_too() {
        let s = parse(r#"{"duration": 10, "events": [{"at": 1, "action": "pause", "target": {"container": "db"}}]}"#).unwrap();
        assert_eq!(s.events[0].action, Action::Pause);
        assert_eq!(s.name, "experiment");
    }

    #[test]
    fn mistakes_are_refused_with_where_and_why() {
        let cases = [
            (
                "duration: 10\nevents: [{at: 1, action: pause, leese: 2, target: {container: x}}]",
                "unknown key \"leese\"",
            ),
            (
                "duration: 10\nevents: [{at: 1, action: explode}]",
                "unknown action",
            ),
            (
                "duration: 10\nevents: [{at: 1, action: pause}]",
                "acts on containers",
            ),
            (
                "duration: 10\nevents: [{at: 11, action: mark, text: x}]",
                "after the end",
            ),
            (
                "duration: 10\nevents: [{at: 1, action: kill, signal: SIGNOPE, target: {container: x}}]",
                "unknown signal",
            ),
            (
                "duration: 10\nevents: [{at: 1, action: loss, percent: 130}]",
                "loss percent",
            ),
            (
                "duration: 10\nevents: [{at: 1, action: bandwidth, rate: fast}]",
                "not a tc rate",
            ),
            (
                "duration: 10\nevents: [{at: 1, action: pause, target: {container: x, count: 1, percent: 5}}]",
                "not both",
            ),
            (
                "duration: 10\nevents: [{at: 1, action: pause, target: {container: x, contianer: y}}]",
                "unknown field",
            ),
            (
                "duration: ten\nevents: [{at: 1, action: mark, text: x}]",
                "is not a time",
            ),
            (
                "events: [{at: 1, action: mark, text: x}]",
                "needs `duration`",
            ),
            (
                "duration: 10\nevents: [{action: mark, text: x}]",
                "needs `at`",
            ),
        ];
        for (text, want) in cases {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(want), "{text}: {e}");
        }
    }

    #[test]
    fn signals_by_name_or_number() {
        assert_eq!(signal_number("SIGKILL"), Some(9));
        assert_eq!(signal_number("term"), Some(15));
        assert_eq!(signal_number("2"), Some(2));
        assert_eq!(signal_number("0"), None);
        assert_eq!(signal_number("SIGWAT"), None);
    }
}
