//! Workload definitions as operators write them (YAML or JSON), and their checks.
//!
//! ```yaml
//! name: api
//! command: [/usr/local/bin/api, --port, "8080"]
//! restart: always            # always | on-failure (default) | never
//! backoff: {initialMs: 500, maxMs: 30000, factor: 2}
//! limit: {restarts: 5, withinSecs: 60}
//! health:
//!   http: http://127.0.0.1:8080/healthz   # or command: [...], or tcp: host:port
//!   intervalSecs: 5
//!   timeoutSecs: 2
//!   retries: 3
//! escalation:                # when the limit is passed and it goes FATAL
//!   stop: [worker]
//!   cleanup: [/usr/local/bin/page-someone]
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::SuperviseError;

/// One supervised workload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadDef {
    /// Its name: letters, digits, `.`, `_`, `-`; at most 64.
    pub name: String,
    /// An argv, run without a shell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// Or a container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<ContainerDef>,
    /// Working folder of a command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<PathBuf>,
    /// Environment of a command.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// When to restart it.
    #[serde(default)]
    pub restart: Policy,
    /// How long to wait before each restart.
    #[serde(default)]
    pub backoff: Backoff,
    /// How many restarts are too many.
    #[serde(default)]
    pub limit: Limit,
    /// How to tell that it works.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<Health>,
    /// What to do when it goes `FATAL`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalation: Option<Escalation>,
}

/// A container workload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContainerDef {
    /// The image.
    pub image: String,
    /// Its command, if not the image's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    /// `KEY=VALUE` entries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    /// Labels added to bosun's own.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// When a workload that ended is started again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    /// Whatever its exit.
    Always,
    /// Unless it exited with code 0.
    #[default]
    OnFailure,
    /// Never.
    Never,
}

/// The delay before restart `n` (from 1) is `min(max, initial × factor^(n-1))`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Backoff {
    /// The first delay.
    pub initial_ms: u64,
    /// The longest delay.
    pub max_ms: u64,
    /// The growth per restart.
    pub factor: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial_ms: 500,
            max_ms: 30_000,
            factor: 2.0,
        }
    }
}

/// More than `restarts` restarts within `within_secs` make the workload `FATAL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Limit {
    /// Restarts allowed in the window.
    pub restarts: u32,
    /// The window.
    pub within_secs: u64,
}

impl Default for Limit {
    fn default() -> Self {
        Limit {
            restarts: 5,
            within_secs: 60,
        }
    }
}

/// A health check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Health {
    /// Healthy when this argv exits 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// Healthy when a GET of this `http://` URL answers 2xx or 3xx.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<String>,
    /// Healthy when a TCP connection to `host:port` opens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<String>,
    /// Seconds between checks.
    #[serde(default = "default_interval")]
    pub interval_secs: f64,
    /// Seconds a check may take.
    #[serde(default = "default_timeout")]
    pub timeout_secs: f64,
    /// Failures in a row that make it unhealthy (and restart it).
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Seconds after a start during which failures do not count.
    #[serde(default)]
    pub start_period_secs: f64,
}

fn default_interval() -> f64 {
    5.0
}
fn default_timeout() -> f64 {
    2.0
}
fn default_retries() -> u32 {
    3
}

/// What happens when a workload goes `FATAL` (redpill's behaviour).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Escalation {
    /// Other workloads to stop.
    #[serde(default)]
    pub stop: Vec<String>,
    /// An argv to run once (30 s at most).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cleanup: Option<Vec<String>>,
}

impl WorkloadDef {
    /// Check every field; the error names the field and why.
    pub fn check(&self) -> Result<(), SuperviseError> {
        let bad = |field: &str, reason: String| SuperviseError::Invalid {
            name: self.name.clone(),
            field: field.to_string(),
            reason,
        };
        check_name(&self.name).map_err(|r| bad("name", r.0))?;
        match (&self.command, &self.container) {
            (Some(argv), None) if argv.is_empty() || argv[0].is_empty() => {
                return Err(bad("command", "is empty".into()));
            }
            (Some(_), None) => {}
            (None, Some(c)) if c.image.trim().is_empty() => {
                return Err(bad("container.image", "is empty".into()));
            }
            (None, Some(_)) => {
                if self.cwd.is_some() || !self.env.is_empty() {
                    return Err(bad(
                        "cwd/env",
                        "belong to commands; a container takes container.env".into(),
                    ));
                }
            }
            (Some(_), Some(_)) => {
                return Err(bad("command", "give command or container, not both".into()));
            }
            (None, None) => return Err(bad("command", "give command or container".into())),
        }
        let b = &self.backoff;
        if !(b.factor.is_finite() && b.factor >= 1.0 && b.factor <= 100.0) {
            return Err(bad("backoff.factor", "must be 1 to 100".into()));
        }
        if b.max_ms < b.initial_ms {
            return Err(bad("backoff.maxMs", "must be at least initialMs".into()));
        }
        if self.limit.within_secs == 0 {
            return Err(bad("limit.withinSecs", "must be more than 0".into()));
        }
        if let Some(h) = &self.health {
            let kinds = [h.command.is_some(), h.http.is_some(), h.tcp.is_some()]
                .iter()
                .filter(|k| **k)
                .count();
            if kinds != 1 {
                return Err(bad(
                    "health",
                    "give exactly one of command, http, tcp".into(),
                ));
            }
            if let Some(url) = &h.http
                && !url.starts_with("http://")
            {
                return Err(bad("health.http", format!("{url:?} is not an http:// URL")));
            }
            if let Some(argv) = &h.command
                && argv.is_empty()
            {
                return Err(bad("health.command", "is empty".into()));
            }
            for (field, v) in [
                ("health.intervalSecs", h.interval_secs),
                ("health.timeoutSecs", h.timeout_secs),
            ] {
                if !(v.is_finite() && v > 0.0 && v <= 3600.0) {
                    return Err(bad(field, "must be more than 0 and at most 3600".into()));
                }
            }
            if h.retries == 0 {
                return Err(bad("health.retries", "must be at least 1".into()));
            }
        }
        if let Some(e) = &self.escalation {
            for other in &e.stop {
                check_name(other).map_err(|r| bad("escalation.stop", r.0))?;
                if other == &self.name {
                    return Err(bad("escalation.stop", "names the workload itself".into()));
                }
            }
            if matches!(&e.cleanup, Some(argv) if argv.is_empty()) {
                return Err(bad("escalation.cleanup", "is empty".into()));
            }
        }
        Ok(())
    }
}

/// Why a name is refused.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct BadName(String);

fn check_name(name: &str) -> Result<(), BadName> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        || name.starts_with('.')
    {
        return Err(BadName(format!(
            "{name:?} must be 1 to 64 letters, digits, '.', '_' or '-', not starting with '.'"
        )));
    }
    Ok(())
}

/// One definition from YAML or JSON.
pub fn parse_definition(text: &str) -> Result<WorkloadDef, SuperviseError> {
    let def: WorkloadDef = serde_yaml_ng::from_str(text).map_err(|e| SuperviseError::Parse {
        reason: e.to_string(),
    })?;
    def.check()?;
    Ok(def)
}

/// Definitions from a YAML or JSON list, or a map with `workloads: [...]`.
pub fn parse_definitions(text: &str) -> Result<Vec<WorkloadDef>, SuperviseError> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Many {
        List(Vec<serde_yaml_ng::Value>),
        Map {
            workloads: Vec<serde_yaml_ng::Value>,
        },
        One(serde_yaml_ng::Value),
    }
    let parsed: Many = serde_yaml_ng::from_str(text).map_err(|e| SuperviseError::Parse {
        reason: e.to_string(),
    })?;
    let values = match parsed {
        Many::List(v) | Many::Map { workloads: v } => v,
        Many::One(v) => vec![v],
    };
    let mut out = Vec::new();
    for v in values {
        let def: WorkloadDef = serde_yaml_ng::from_value(v).map_err(|e| SuperviseError::Parse {
            reason: e.to_string(),
        })?;
        def.check()?;
        if out.iter().any(|d: &WorkloadDef| d.name == def.name) {
            return Err(SuperviseError::Parse {
                reason: format!("workload {} is defined twice", def.name),
            });
        }
        out.push(def);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_definition_parses_with_defaults() {
        let d = parse_definition("name: api\ncommand: [sleep, '5']\n").unwrap();
        assert_eq!(d.restart, Policy::OnFailure);
        assert_eq!(d.backoff, Backoff::default());
        assert_eq!(d.limit, Limit::default());
        let d = parse_definition(
            r#"{"name": "w", "container": {"image": "busybox"}, "restart": "always", "health": {"tcp": "127.0.0.1:80"}}"#,
        )
        .unwrap();
        assert_eq!(d.restart, Policy::Always);
        assert_eq!(d.health.unwrap().retries, 3);
    }

    #[test]
    fn mistakes_name_the_field() {
        for (text, want) in [
            ("name: a b\ncommand: [x]", "name"),
            ("name: a\n", "give command or container"),
            (
                "name: a\ncommand: [x]\nrestart: sometimes",
                "unknown variant",
            ),
            ("name: a\ncommand: [x]\nrestrat: always", "unknown field"),
            (
                "name: a\ncommand: [x]\nbackoff: {factor: 0.5}",
                "backoff.factor",
            ),
            (
                "name: a\ncommand: [x]\nhealth: {tcp: 'h:1', http: 'http://h'}",
                "exactly one",
            ),
            (
                "name: a\ncommand: [x]\nhealth: {http: 'https://h'}",
                "not an http://",
            ),
            ("name: a\ncommand: [x]\nescalation: {stop: [a]}", "itself"),
        ] {
            let e = parse_definition(text).unwrap_err().to_string();
            assert!(e.contains(want), "{text}: {e}");
        }
    }

    #[test]
    fn many_definitions_as_a_list_or_under_workloads() {
        let list =
            parse_definitions("- {name: a, command: [x]}\n- {name: b, command: [y]}\n").unwrap();
        assert_eq!(list.len(), 2);
        let map = parse_definitions("workloads:\n  - {name: a, command: [x]}\n").unwrap();
        assert_eq!(map[0].name, "a");
        let e = parse_definitions("- {name: a, command: [x]}\n- {name: a, command: [y]}\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("twice"), "{e}");
    }
}
