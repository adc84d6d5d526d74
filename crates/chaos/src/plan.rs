//! From a scenario and what the fleet holds to the exact timeline: which node does what
//! to which target, when, and for how long. Pure: the same scenario, seed and fleet give
//! the same plan, so `bosun chaos run --plan` shows exactly what a run would apply.

use std::collections::BTreeMap;
use std::fmt::Write;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::ChaosError;
use crate::scenario::{Action, ActsOn, EventSpec, Scenario, TargetSpec, When};

/// What the planner knows of the fleet.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Fleet {
    /// The nodes that can take part.
    pub nodes: Vec<NodeFacts>,
}

/// One node as the planner sees it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeFacts {
    /// Its name.
    pub name: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its containers.
    pub containers: Vec<ContainerFacts>,
    /// The names of its supervised workloads.
    pub workloads: Vec<String>,
}

/// One container as the planner sees it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ContainerFacts {
    /// Its name, without Docker's leading `/`.
    pub name: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
}

/// An experiment's whole timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    /// The experiment's id, unique per run.
    pub experiment: String,
    /// The scenario's name.
    pub scenario: String,
    /// The seed the targets were chosen with.
    pub seed: u64,
    /// The experiment's length.
    pub duration_ms: u64,
    /// When offset 0 is (ms since the epoch); `None` in a dry run.
    pub start_at: Option<u64>,
    /// Every event, by time then node.
    pub events: Vec<PlannedEvent>,
}

/// One event for one node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlannedEvent {
    /// `e<line>.<repetition>.<target>`, unique within the experiment.
    pub id: String,
    /// The node that fires it.
    pub node: String,
    /// When, from the experiment's start.
    pub offset_ms: u64,
    /// What.
    pub action: Action,
    /// On what.
    pub target: Target,
    /// How long the fault holds; `None` for actions with nothing to undo.
    pub lease_ms: Option<u64>,
}

/// What an event acts on, on its node.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", content = "name", rename_all = "camelCase")]
pub enum Target {
    /// The node itself.
    Node,
    /// A container, by name.
    Container(String),
    /// A supervised workload, by name.
    Workload(String),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Node => f.write_str("node"),
            Target::Container(n) => write!(f, "container {n}"),
            Target::Workload(n) => write!(f, "workload {n}"),
        }
    }
}

/// Plan `scenario` over `fleet`.
pub fn plan(scenario: &Scenario, fleet: &Fleet, experiment: &str) -> Result<Plan, ChaosError> {
    let mut events = Vec::new();
    for (line, spec) in scenario.events.iter().enumerate() {
        let candidates = candidates(line, spec, fleet)?;
        for (rep, offset) in offsets(spec.when, scenario.duration_ms)
            .into_iter()
            .enumerate()
        {
            let chosen = choose(scenario.seed, line, rep, &spec.target, &candidates);
            let lease_ms = spec
                .action
                .has_lease(spec.restore)
                .then(|| spec.lease_ms.unwrap_or(scenario.duration_ms - offset));
            for (i, (node, target)) in chosen.into_iter().enumerate() {
                events.push(PlannedEvent {
                    id: format!("e{}.{}.{}", line + 1, rep + 1, i + 1),
                    node,
                    offset_ms: offset,
                    action: spec.action.clone(),
                    target,
                    lease_ms,
                });
            }
        }
    }
    events.sort_by(|a, b| (a.offset_ms, &a.node, &a.id).cmp(&(b.offset_ms, &b.node, &b.id)));
    Ok(Plan {
        experiment: experiment.to_string(),
        scenario: scenario.name.clone(),
        seed: scenario.seed,
        duration_ms: scenario.duration_ms,
        start_at: None,
        events,
    })
}

fn offsets(when: When, duration_ms: u64) -> Vec<u64> {
    match when {
        When::At(t) => vec![t],
        When::Every {
            every_ms,
            from_ms,
            until_ms,
        } => (0..)
            .map(|n| from_ms + n * every_ms)
            .take_while(|t| *t < until_ms.min(duration_ms))
            .collect(),
    }
}

/// Every (node, target) the event may choose, in a stable order.
fn candidates(
    line: usize,
    spec: &EventSpec,
    fleet: &Fleet,
) -> Result<Vec<(String, Target)>, ChaosError> {
    let target = &spec.target;
    let mut nodes: Vec<&NodeFacts> = fleet
        .nodes
        .iter()
        .filter(|n| target.nodes.is_empty() || target.nodes.contains(&n.name))
        .filter(|n| {
            target
                .node_labels
                .iter()
                .all(|(k, v)| n.labels.get(k) == Some(v))
        })
        .collect();
    nodes.sort_by(|a, b| a.name.cmp(&b.name));
    let at = format!("events[{line}]");
    for name in &target.nodes {
        if !fleet.nodes.iter().any(|n| &n.name == name) {
            return Err(ChaosError::NoTarget {
                at,
                reason: format!("node {name:?} is not in the fleet"),
            });
        }
    }
    let names_container = target.container.is_some() || !target.container_labels.is_empty();
    let mut out = Vec::new();
    for node in nodes {
        match (spec.action.acts_on(), names_container) {
            (ActsOn::Container, _) | (ActsOn::ContainerOrNode, true) => {
                let mut names: Vec<&ContainerFacts> = node
                    .containers
                    .iter()
                    .filter(|c| container_matches(target, c))
                    .collect();
                names.sort_by(|a, b| a.name.cmp(&b.name));
                out.extend(
                    names
                        .into_iter()
                        .map(|c| (node.name.clone(), Target::Container(c.name.clone()))),
                );
            }
            (ActsOn::Workload, _) => {
                let name = target.workload.clone().unwrap_or_default();
                if node.workloads.contains(&name) {
                    out.push((node.name.clone(), Target::Workload(name)));
                }
            }
            (ActsOn::ContainerOrNode, false) | (ActsOn::Node, _) => {
                out.push((node.name.clone(), Target::Node));
            }
        }
    }
    if out.is_empty() {
        return Err(ChaosError::NoTarget {
            at,
            reason: describe(spec),
        });
    }
    Ok(out)
}

fn container_matches(target: &TargetSpec, c: &ContainerFacts) -> bool {
    target
        .container
        .as_deref()
        .is_none_or(|p| wildmatch::WildMatch::new(p).matches(&c.name))
        && target
            .container_labels
            .iter()
            .all(|(k, v)| c.labels.get(k) == Some(v))
}

fn describe(spec: &EventSpec) -> String {
    let t = &spec.target;
    let mut s = format!("{}: nothing matches", spec.action.name());
    if let Some(p) = &t.container {
        let _ = write!(s, " container {p:?}");
    }
    if !t.container_labels.is_empty() {
        let _ = write!(s, " container labels {:?}", t.container_labels);
    }
    if let Some(w) = &t.workload {
        let _ = write!(s, " workload {w:?}");
    }
    if !t.nodes.is_empty() {
        let _ = write!(s, " on nodes {:?}", t.nodes);
    }
    if !t.node_labels.is_empty() {
        let _ = write!(s, " on nodes labelled {:?}", t.node_labels);
    }
    s
}

/// Take `count` or `percent` of the candidates, chosen by the seed; all when neither.
fn choose(
    seed: u64,
    line: usize,
    rep: usize,
    target: &TargetSpec,
    candidates: &[(String, Target)],
) -> Vec<(String, Target)> {
    let want = match (target.count, target.percent) {
        (Some(n), _) => n.min(candidates.len()),
        (None, Some(p)) => {
            (((candidates.len() as f64) * p / 100.0).ceil() as usize).clamp(1, candidates.len())
        }
        (None, None) => return candidates.to_vec(),
    };
    let stream = ((line as u64) << 32) ^ rep as u64;
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut picked = candidates.to_vec();
    picked.shuffle(&mut rng);
    picked.truncate(want);
    picked.sort();
    picked
}

/// The timeline as a table, one line per event.
pub fn render(plan: &Plan) -> String {
    let mut out = format!(
        "experiment {} ({}), seed {}, {} events over {}\n",
        plan.experiment,
        plan.scenario,
        plan.seed,
        plan.events.len(),
        seconds(plan.duration_ms)
    );
    let _ = writeln!(
        out,
        "{:>10}  {:<14} {:<28} {:<24} lease",
        "at", "node", "action", "target"
    );
    for e in &plan.events {
        let lease = e.lease_ms.map(seconds).unwrap_or_else(|| "-".into());
        let _ = writeln!(
            out,
            "{:>10}  {:<14} {:<28} {:<24} {}",
            format!("t+{}", seconds(e.offset_ms)),
            e.node,
            describe_action(&e.action),
            e.target.to_string(),
            lease
        );
    }
    out
}

/// An action with its parameters, for tables.
pub fn describe_action(action: &Action) -> String {
    match action {
        Action::Kill { signal } | Action::WorkloadKill { signal } => {
            format!("{} {signal}", action.name())
        }
        Action::Stop { timeout_secs } => format!("stop (timeout {timeout_secs}s)"),
        Action::Partition { peers } if peers.is_empty() => "partition from all".into(),
        Action::Partition { peers } => format!("partition from {}", peers.join(",")),
        Action::Loss { percent } => format!("loss {percent}%"),
        Action::Bandwidth { rate } => format!("bandwidth {rate}"),
        Action::Delay { ms } => format!("delay {ms}ms"),
        Action::Cpu { workers } => format!("cpu x{workers}"),
        Action::Memory { mb } => format!("memory {mb}MiB"),
        Action::Mark { text } => format!("mark {text:?}"),
        _ => action.name().to_string(),
    }
}

fn seconds(ms: u64) -> String {
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{:.3}s", ms as f64 / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario;

    fn fleet() -> Fleet {
        let node = |name: &str, role: &str, containers: &[&str]| NodeFacts {
            name: name.into(),
            labels: [("role".to_string(), role.to_string())].into(),
            containers: containers
                .iter()
                .map(|c| ContainerFacts {
                    name: c.to_string(),
                    labels: Default::default(),
                })
                .collect(),
            workloads: vec!["api".into()],
        };
        Fleet {
            nodes: vec![
                node("b", "edge", &["web-2", "db"]),
                node("a", "edge", &["web-1", "web-3"]),
                node("c", "core", &["web-4"]),
            ],
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_plan_and_another_seed_may_not() {
        let text = |seed: u64| {
            format!(
                "seed: {seed}\nduration: 30\nevents:\n  - every: 5\n    action: pause\n    target: {{container: 'web-*', count: 1}}\n    lease: 2\n"
            )
        };
        let a = plan(&scenario::parse(&text(1)).unwrap(), &fleet(), "x").unwrap();
        let again = plan(&scenario::parse(&text(1)).unwrap(), &fleet(), "x").unwrap();
        assert_eq!(a, again);
        assert_eq!(a.events.len(), 6, "every 5 s over 30 s, one target each");
        let chosen = |p: &Plan| {
            p.events
                .iter()
                .map(|e| e.target.clone())
                .collect::<Vec<_>>()
        };
        let differs = (2..20).any(|seed| {
            let other = plan(&scenario::parse(&text(seed)).unwrap(), &fleet(), "x").unwrap();
            chosen(&other) != chosen(&a)
        });
        assert!(differs, "the seed chooses the targets");
        assert!(a.events.iter().all(|e| e.lease_ms == Some(2000)));
    }

    #[test]
    fn targets_by_node_label_percent_and_leases_default_to_the_end() {
        let s = scenario::parse(
            "duration: 20\nevents:\n  - at: 5\n    action: loss\n    percent: 30\n    target: {nodeLabels: {role: edge}, container: 'web-*', percent: 50}\n  - at: 1\n    action: mark\n    text: go\n",
        )
        .unwrap();
        let p = plan(&s, &fleet(), "x").unwrap();
        let loss: Vec<_> = p
            .events
            .iter()
            .filter(|e| e.action.name() == "loss")
            .collect();
        assert_eq!(loss.len(), 2, "half of web-1, web-2 and web-3, rounded up");
        assert!(loss.iter().all(|e| e.node == "a" || e.node == "b"));
        assert_eq!(
            loss[0].lease_ms,
            Some(15_000),
            "until the end of the experiment"
        );
        let marks: Vec<_> = p
            .events
            .iter()
            .filter(|e| e.action.name() == "mark")
            .collect();
        assert_eq!(marks.len(), 3, "a mark goes to every node");
        assert!(
            marks
                .iter()
                .all(|e| e.lease_ms.is_none() && e.target == Target::Node)
        );
        assert!(
            p.events
                .windows(2)
                .all(|w| w[0].offset_ms <= w[1].offset_ms)
        );
    }

    #[test]
    fn nothing_to_target_is_an_error_naming_the_event() {
        let s = scenario::parse(
            "duration: 20\nevents:\n  - at: 5\n    action: pause\n    target: {container: 'nope-*'}\n",
        )
        .unwrap();
        let e = plan(&s, &fleet(), "x").unwrap_err().to_string();
        assert!(e.contains("events[0]") && e.contains("nope-*"), "{e}");
        let s = scenario::parse(
            "duration: 20\nevents:\n  - at: 5\n    action: pause\n    target: {nodes: [zz], container: 'web-*'}\n",
        )
        .unwrap();
        let e = plan(&s, &fleet(), "x").unwrap_err().to_string();
        assert!(e.contains("\"zz\" is not in the fleet"), "{e}");
    }

    #[test]
    fn the_table_shows_each_event() {
        let s = scenario::parse(
            "duration: 20\nevents:\n  - at: 2.5\n    action: kill\n    signal: SIGTERM\n    target: {container: web-1}\n    lease: 3\n",
        )
        .unwrap();
        let table = render(&plan(&s, &fleet(), "x").unwrap());
        assert!(table.contains("t+2.500s"), "{table}");
        assert!(table.contains("kill SIGTERM"), "{table}");
        assert!(table.contains("container web-1"), "{table}");
        assert!(table.contains("3s"), "{table}");
    }
}
