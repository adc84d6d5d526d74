//! `bosun chaos …`: fault experiments with leases. The controller plans here and sends
//! each node its events ahead of time; from then on the nodes fire and undo them on
//! their own clocks, so this command may end, crash or lose the link without leaving a
//! fault behind.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use bosun_chaos::plan::{ContainerFacts, Fleet, NodeFacts};
use bosun_chaos::{Listing, Plan, Report};
use bosun_ingress::client;
use bosun_ingress::control::{ControlRequest, Nodes, Queued, Waited};
use bosun_ingress::ops::ClusterList;
use bosun_proto::{Message, State};
use clap::Subcommand;
use serde_json::Value;

use super::fanout::{PerNode, call_each, live_nodes};
use super::socket_path;
use crate::Global;

#[derive(Subcommand)]
pub enum ChaosCmd {
    /// Plan a scenario over the fleet and send every node its events.
    ///
    /// The scenario (YAML or JSON; see the README, "Fault experiments") names timed
    /// events: kill, stop, start, restart, pause, unpause, workloadKill, workloadStop,
    /// partition, loss, bandwidth, delay, cpu, memory, mark. Targets are chosen from
    /// the seed, so --plan shows exactly what a run applies. Each node fires its own
    /// events on its own clock and undoes each fault when its lease ends, even if this
    /// command or its node is gone by then.
    ///
    /// Examples:
    ///   bosun chaos run web.yaml --plan        # the exact timeline, nothing sent
    ///   bosun chaos run web.yaml               # send, print the experiment id
    ///   bosun chaos run web.yaml --follow      # and show progress until it ends
    #[command(verbatim_doc_comment)]
    Run {
        /// The scenario file.
        file: PathBuf,
        /// Print the timeline this run would apply, and send nothing.
        #[arg(long)]
        plan: bool,
        /// Seconds from now to the experiment's start: time for every node to get its
        /// events. An event that reaches its node more than 1 s late is not fired.
        #[arg(long, default_value_t = 3.0, value_name = "SECS")]
        start_in: f64,
        /// Override the scenario's seed.
        #[arg(long)]
        seed: Option<u64>,
        /// Watch the experiment until every lease has ended, then print the report.
        #[arg(long)]
        follow: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Where every event of an experiment stands, on every node.
    ///
    /// Example: bosun chaos status 01JD3…
    #[command(verbatim_doc_comment)]
    Status {
        /// The experiment id `chaos run` printed.
        experiment: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Undo every fault of an experiment now and drop its pending events.
    ///
    /// Examples:
    ///   bosun chaos abort 01JD3…
    ///   bosun chaos abort --all      # every experiment on every node
    #[command(verbatim_doc_comment)]
    Abort {
        /// The experiment id.
        experiment: Option<String>,
        /// Every experiment.
        #[arg(long, conflicts_with = "experiment")]
        all: bool,
        /// Print JSON: one object per node that had something to abort, `{"node",
        /// "undone", "dropped", "entries"}` with its lease book entries, or `{"node",
        /// "error"}`.
        #[arg(long)]
        json: bool,
    },
    /// Gather an experiment's timeline from every node: a table, plus JSON and an SVG
    /// chart written to --out.
    ///
    /// Example: bosun chaos report 01JD3… --out reports/
    #[command(verbatim_doc_comment)]
    Report {
        /// The experiment id.
        experiment: String,
        /// Folder for `<id>.json` and `<id>.svg`. [default: the current folder]
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Print the JSON instead of the table.
        #[arg(long)]
        json: bool,
    },
}

impl ChaosCmd {
    pub async fn run(self, global: &Global) -> anyhow::Result<i32> {
        let socket = socket_path(global)?;
        match self {
            ChaosCmd::Run {
                file,
                plan,
                start_in,
                seed,
                follow,
                json,
            } => {
                let text = std::fs::read_to_string(&file)
                    .with_context(|| format!("cannot read {}", file.display()))?;
                let mut scenario = bosun_chaos::scenario::parse(&text)?;
                if let Some(seed) = seed {
                    scenario.seed = seed;
                }
                let fleet = fleet(&socket).await?;
                let id = bosun_proto::new_id();
                let mut planned = bosun_chaos::plan::plan(&scenario, &fleet, &id)?;
                if plan {
                    if json {
                        outln!("{}", serde_json::to_string_pretty(&planned)?);
                    } else {
                        out!("{}", bosun_chaos::plan::render(&planned));
                    }
                    return Ok(0);
                }
                if !(0.0..=3600.0).contains(&start_in) {
                    bail!("--start-in must be 0 to 3600 seconds");
                }
                planned.start_at =
                    Some(bosun_methods::now_millis() + (start_in * 1000.0).round() as u64);
                // With --follow, the report at the end is the one JSON document printed.
                send(&socket, &planned, json, follow).await?;
                if follow {
                    return follow_until_done(&socket, &planned, json).await;
                }
                if !json {
                    outln!(
                        "experiment {id} sent; `bosun chaos status {id}`, `bosun chaos abort {id}`, `bosun chaos report {id}`"
                    );
                }
                Ok(0)
            }
            ChaosCmd::Status { experiment, json } => {
                let report = gather(&socket, &experiment).await?;
                if json {
                    outln!("{}", serde_json::to_string_pretty(&report)?);
                } else {
                    out!("{}", bosun_chaos::report::table(&report));
                }
                Ok(if report.unanswered.is_empty() { 0 } else { 3 })
            }
            ChaosCmd::Abort {
                experiment,
                all,
                json,
            } => {
                let experiment = match (experiment, all) {
                    (Some(e), false) => e,
                    (None, true) => "*".to_string(),
                    _ => bail!("name the experiment, or give --all"),
                };
                let nodes = live_nodes(&socket).await?;
                let answers = call_each(&socket, &nodes, "chaosAbort", &experiment).await?;
                let mut shown = PerNode::new(json);
                for (node, answer) in answers {
                    match answer {
                        Ok(text) => {
                            let entries: Vec<bosun_chaos::book::Entry> =
                                serde_json::from_str(&text).unwrap_or_default();
                            if entries.is_empty() {
                                continue;
                            }
                            let undone = entries
                                .iter()
                                .filter(|e| e.state == bosun_chaos::book::EntryState::Undone)
                                .count();
                            let dropped = entries
                                .iter()
                                .filter(|e| e.state == bosun_chaos::book::EntryState::Aborted)
                                .count();
                            if shown.json() {
                                shown.row(serde_json::json!({
                                    "node": node,
                                    "undone": undone,
                                    "dropped": dropped,
                                    "entries": entries,
                                }));
                                continue;
                            }
                            outln!(
                                "{node}: {undone} fault(s) undone, {dropped} pending event(s) dropped"
                            );
                            for e in entries.iter().filter(|e| e.error.is_some()) {
                                outln!(
                                    "{node}: {} {}: {}",
                                    e.event.id,
                                    e.event.action.name(),
                                    e.error.as_deref().unwrap_or("")
                                );
                            }
                        }
                        Err(e) => shown.error(&node, &e),
                    }
                }
                shown.finish()
            }
            ChaosCmd::Report {
                experiment,
                out,
                json,
            } => {
                let report = gather(&socket, &experiment).await?;
                if report.nodes.is_empty() {
                    bail!(
                        "no node knows experiment {experiment} (unanswered: {:?})",
                        report.unanswered
                    );
                }
                let dir = out.unwrap_or_else(|| PathBuf::from("."));
                std::fs::create_dir_all(&dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
                let json_path = dir.join(format!("{experiment}.json"));
                let svg_path = dir.join(format!("{experiment}.svg"));
                std::fs::write(&json_path, serde_json::to_vec_pretty(&report)?)
                    .with_context(|| format!("cannot write {}", json_path.display()))?;
                std::fs::write(&svg_path, bosun_chaos::report::svg(&report))
                    .with_context(|| format!("cannot write {}", svg_path.display()))?;
                if json {
                    outln!("{}", serde_json::to_string_pretty(&report)?);
                } else {
                    out!("{}", bosun_chaos::report::table(&report));
                    outln!("wrote {} and {}", json_path.display(), svg_path.display());
                }
                Ok(if report.unanswered.is_empty() { 0 } else { 3 })
            }
        }
    }
}

/// What the planner needs: live nodes with their labels, containers and workloads.
async fn fleet(socket: &std::path::Path) -> anyhow::Result<Fleet> {
    let Nodes { nodes } =
        client::request(socket, &ControlRequest::Nodes, Duration::from_secs(10)).await?;
    let list: ClusterList = client::request(
        socket,
        &ControlRequest::Containers {
            cluster: true,
            all: true,
        },
        Duration::from_secs(30),
    )
    .await?;
    let mut facts: BTreeMap<String, NodeFacts> = BTreeMap::new();
    for n in nodes
        .iter()
        .filter(|n| n.status != bosun_node::Liveness::Down)
    {
        let labels = n
            .inventory
            .get("labels")
            .and_then(|l| serde_json::from_value(l.clone()).ok())
            .unwrap_or_default();
        let workloads = n
            .inventory
            .get("workloads")
            .and_then(Value::as_array)
            .map(|w| {
                w.iter()
                    .filter_map(|w| w.get("name").and_then(Value::as_str).map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        facts.insert(
            n.name.clone(),
            NodeFacts {
                name: n.name.clone(),
                labels,
                containers: Vec::new(),
                workloads,
            },
        );
    }
    for row in &list.containers {
        let Some(node) = row.get("node").and_then(Value::as_str) else {
            continue;
        };
        let Some(facts) = facts.get_mut(node) else {
            continue;
        };
        let labels: BTreeMap<String, String> = row
            .get("labels")
            .and_then(|l| serde_json::from_value(l.clone()).ok())
            .unwrap_or_default();
        // Nodes sharing one Docker engine all list its containers; a container bosun
        // created belongs to the node that created it.
        if labels
            .get("org.bosun.node")
            .is_some_and(|owner| owner != node)
        {
            continue;
        }
        for name in row
            .get("names")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            facts.containers.push(ContainerFacts {
                name: name.trim_start_matches('/').to_string(),
                labels: labels.clone(),
            });
        }
    }
    if !list.missing.is_empty() {
        eprintln!(
            "note: no container list from {} (their containers cannot be chosen)",
            list.missing.join(", ")
        );
    }
    Ok(Fleet {
        nodes: facts.into_values().collect(),
    })
}

/// Send each node its events and wait until every node has kept them.
async fn send(
    socket: &std::path::Path,
    plan: &Plan,
    json: bool,
    follow: bool,
) -> anyhow::Result<()> {
    let mut nodes: Vec<&str> = plan.events.iter().map(|e| e.node.as_str()).collect();
    nodes.sort();
    nodes.dedup();
    let start = plan.start_at.unwrap_or(0);
    let wait_ms = start.saturating_sub(bosun_methods::now_millis()) + 10_000;
    let mut messages = Vec::new();
    for node in &nodes {
        let part = bosun_chaos::engine::for_node(plan, node);
        messages.push(serde_json::to_value(Message {
            to_node: Some(node.to_string()),
            method: "chaosSchedule".into(),
            data: vec![serde_json::to_string(&part)?],
            // Past its start the events are missed anyway: no point delivering later.
            ttl: Some((plan.duration_ms / 1000).max(60)),
            ..Default::default()
        })?);
    }
    let Queued { queued } = client::request(
        socket,
        &ControlRequest::Submit { messages },
        Duration::from_secs(30),
    )
    .await?;
    let wait = ControlRequest::Wait {
        ids: queued.iter().map(|q| q.id.clone()).collect(),
        timeout_ms: wait_ms,
    };
    let Waited { reports, .. } =
        client::request(socket, &wait, Duration::from_millis(wait_ms + 10_000)).await?;
    let mut problems = Vec::new();
    for (q, r) in queued.iter().zip(&reports) {
        match (r.state(), r.outcome()) {
            (Some(State::Done), Some(o)) => {
                let answer: bosun_chaos::Scheduled =
                    serde_json::from_str(&o.stdout).unwrap_or_default();
                if !json {
                    outln!(
                        "{}: {} event(s) kept{}",
                        q.to_node,
                        answer.scheduled + answer.already,
                        if answer.missed > 0 {
                            format!(", {} arrived too late and will not fire", answer.missed)
                        } else {
                            String::new()
                        }
                    );
                }
            }
            (state, outcome) => problems.push(format!(
                "{}: {}",
                q.to_node,
                outcome
                    .and_then(|o| o.error.clone())
                    .unwrap_or_else(|| format!(
                        "not confirmed yet ({}); it may still arrive, check `bosun status {}`",
                        state.map(|s| format!("{s:?}")).unwrap_or_default(),
                        q.id
                    ))
            )),
        }
    }
    if json && !follow {
        outln!(
            "{}",
            serde_json::json!({"experiment": plan.experiment, "startAt": plan.start_at, "events": plan.events.len(), "problems": problems})
        );
    }
    if !problems.is_empty() {
        for p in &problems {
            eprintln!("{p}");
        }
        bail!(
            "not every node kept its events; `bosun chaos abort {}` undoes what the others do",
            plan.experiment
        );
    }
    Ok(())
}

async fn follow_until_done(
    socket: &std::path::Path,
    plan: &Plan,
    json: bool,
) -> anyhow::Result<i32> {
    let start = plan.start_at.unwrap_or(0);
    let last = plan
        .events
        .iter()
        .map(|e| e.offset_ms + e.lease_ms.unwrap_or(0))
        .max()
        .unwrap_or(0)
        .max(plan.duration_ms);
    let end = start + last;
    let mut shown = 0usize;
    loop {
        let report = gather(socket, &plan.experiment).await?;
        let settled = report
            .nodes
            .iter()
            .flat_map(|n| n.entries.iter())
            .filter(|e| e.state.is_final())
            .count();
        if settled != shown && !json {
            outln!(
                "t+{:.1}s: {settled}/{} events settled",
                (bosun_methods::now_millis() as i64 - start as i64) as f64 / 1000.0,
                plan.events.len()
            );
            shown = settled;
        }
        if settled == plan.events.len() || bosun_methods::now_millis() > end + 15_000 {
            if json {
                outln!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                out!("{}", bosun_chaos::report::table(&report));
            }
            return Ok(if settled == plan.events.len() { 0 } else { 3 });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Every live node's listing of `experiment`.
async fn gather(socket: &std::path::Path, experiment: &str) -> anyhow::Result<Report> {
    let nodes = live_nodes(socket).await?;
    let answers = call_each(socket, &nodes, "chaosList", experiment).await?;
    let mut listings: Vec<Listing> = Vec::new();
    let mut unanswered = Vec::new();
    for (node, answer) in answers {
        match answer.map(|text| serde_json::from_str::<Listing>(&text)) {
            Ok(Ok(listing)) if !listing.entries.is_empty() => listings.push(listing),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => unanswered.push(format!("{node} (unreadable answer: {e})")),
            Err(e) => unanswered.push(format!("{node} ({e})")),
        }
    }
    Ok(bosun_chaos::report::gather(
        experiment, listings, unanswered,
    ))
}
