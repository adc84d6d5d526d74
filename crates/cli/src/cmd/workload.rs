//! `bosun workload …`: supervised workloads on any node, as supervisord and redpill
//! kept them. Every operation is a message to the node concerned.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use bosun_ingress::client;
use bosun_ingress::control::{ControlRequest, Info};
use bosun_supervise::WorkloadStatus;
use clap::Subcommand;

use super::fanout::{PerNode, call_each, live_nodes};
use super::socket_path;
use crate::Global;

#[derive(Subcommand)]
pub enum WorkloadCmd {
    /// Supervise a workload: from a definition file (YAML or JSON; one definition or a
    /// list), or a command given after `--`.
    ///
    /// A definition names a command or a container, a restart policy (always,
    /// on-failure, never), backoff, a restart limit, a health check and an escalation;
    /// see the README, "Supervised workloads". Adding the same definition again changes
    /// nothing; a changed one replaces the running workload.
    ///
    /// Examples:
    ///   bosun workload add api.yaml -n ship1
    ///   bosun workload add --name ticker --restart always -- sh -c 'date; sleep 5'
    #[command(verbatim_doc_comment)]
    Add {
        /// A definition file.
        file: Option<PathBuf>,
        /// The node. [default: this node]
        #[arg(long, short = 'n', value_name = "NODE")]
        node: Option<String>,
        /// Print JSON: one object per node, `{"node", "workload"}` with the workload's
        /// status, `{"node", "answer"}` with what it said, or `{"node", "error"}`.
        #[arg(long)]
        json: bool,
        /// The workload's name, for a command given after `--`.
        #[arg(long, requires = "command")]
        name: Option<String>,
        /// The restart policy of a command given after `--`.
        #[arg(long, default_value = "on-failure", value_parser = ["always", "on-failure", "never"])]
        restart: String,
        /// The command and its arguments, run without a shell.
        #[arg(last = true, value_name = "COMMAND")]
        command: Vec<String>,
    },
    /// The workloads of a node, or of every live node, with their states.
    ///
    /// Examples:
    ///   bosun workload ls
    ///   bosun workload ls --all --json
    #[command(verbatim_doc_comment)]
    Ls {
        /// The node. [default: this node]
        #[arg(long, short = 'n', value_name = "NODE", conflicts_with = "all")]
        node: Option<String>,
        /// Every live node.
        #[arg(long)]
        all: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Stop a workload and forget it (a container workload's container is removed).
    ///
    /// Example: bosun workload rm api -n ship1
    #[command(verbatim_doc_comment)]
    Rm {
        /// The workload.
        name: String,
        /// The node. [default: this node]
        #[arg(long, short = 'n', value_name = "NODE")]
        node: Option<String>,
        /// Print JSON: one object per node, `{"node", "workload"}` with the workload's
        /// status, `{"node", "answer"}` with what it said, or `{"node", "error"}`.
        #[arg(long)]
        json: bool,
    },
    /// Restart a workload now; clears FATAL, a stop, and its restart count window.
    ///
    /// Example: bosun workload restart api -n ship1
    #[command(verbatim_doc_comment)]
    Restart {
        /// The workload.
        name: String,
        /// The node. [default: this node]
        #[arg(long, short = 'n', value_name = "NODE")]
        node: Option<String>,
        /// Print JSON: one object per node, `{"node", "workload"}` with the workload's
        /// status, `{"node", "answer"}` with what it said, or `{"node", "error"}`.
        #[arg(long)]
        json: bool,
    },
}

impl WorkloadCmd {
    pub async fn run(self, global: &Global) -> anyhow::Result<i32> {
        let socket = socket_path(global)?;
        let here = || async {
            let info: Info =
                client::request(&socket, &ControlRequest::Info, Duration::from_secs(10)).await?;
            Ok::<_, anyhow::Error>(info.name)
        };
        match self {
            WorkloadCmd::Add {
                file,
                node,
                json,
                name,
                restart,
                command,
            } => {
                let node = match node {
                    Some(n) => n,
                    None => here().await?,
                };
                let defs = match (file, name) {
                    (Some(file), None) if command.is_empty() => {
                        let text = std::fs::read_to_string(&file)
                            .with_context(|| format!("cannot read {}", file.display()))?;
                        bosun_supervise::parse_definitions(&text)?
                    }
                    (None, Some(name)) if !command.is_empty() => {
                        let def = serde_json::json!({
                            "name": name, "command": command, "restart": restart,
                        });
                        vec![bosun_supervise::parse_definition(&def.to_string())?]
                    }
                    _ => bail!(
                        "give a definition file, or --name NAME -- COMMAND (see bosun workload add --help)"
                    ),
                };
                let mut answers = Vec::new();
                for def in defs {
                    answers.extend(
                        call_each(
                            &socket,
                            std::slice::from_ref(&node),
                            "workloadAdd",
                            &serde_json::to_string(&def)?,
                        )
                        .await?,
                    );
                }
                print_answers(answers, json)
            }
            WorkloadCmd::Ls { node, all, json } => {
                let nodes = if all {
                    live_nodes(&socket).await?
                } else {
                    vec![match node {
                        Some(n) => n,
                        None => here().await?,
                    }]
                };
                let answers = call_each(&socket, &nodes, "workloadList", "").await?;
                let mut rows = Vec::new();
                let mut code = 0;
                for (node, answer) in answers {
                    match answer.map(|t| serde_json::from_str::<Vec<WorkloadStatus>>(&t)) {
                        Ok(Ok(list)) => rows.extend(list.into_iter().map(|w| (node.clone(), w))),
                        Ok(Err(e)) => {
                            code = 3;
                            eprintln!("{node}: unreadable answer: {e}");
                        }
                        Err(e) => {
                            code = 3;
                            eprintln!("{node}: {e}");
                        }
                    }
                }
                if json {
                    let rows: Vec<serde_json::Value> = rows
                        .iter()
                        .map(|(node, w)| {
                            let mut v = serde_json::to_value(w).unwrap_or_default();
                            v["node"] = node.clone().into();
                            v
                        })
                        .collect();
                    outln!("{}", serde_json::to_string_pretty(&rows)?);
                    return Ok(code);
                }
                let mut table = crate::table::Table::new(&[
                    "NODE",
                    "WORKLOAD",
                    "STATE",
                    "RESTARTS",
                    "HEALTHY",
                    "PID/CONTAINER",
                    "REASON",
                ])
                .right(&[3]);
                for (node, w) in rows {
                    let running = w
                        .pid
                        .map(|p| p.to_string())
                        .or(w.container.map(|c| c.chars().take(12).collect()))
                        .unwrap_or_else(|| "-".into());
                    table.row([
                        node,
                        w.name,
                        format!("{:?}", w.state).to_uppercase(),
                        w.restarts.to_string(),
                        w.healthy
                            .map(|h| if h { "yes" } else { "no" })
                            .unwrap_or("-")
                            .to_string(),
                        running,
                        w.reason.unwrap_or_default(),
                    ]);
                }
                out!("{}", table.render());
                Ok(code)
            }
            WorkloadCmd::Rm { name, node, json } => {
                let node = match node {
                    Some(n) => n,
                    None => here().await?,
                };
                let answers = call_each(&socket, &[node], "workloadRemove", &name).await?;
                print_answers(answers, json)
            }
            WorkloadCmd::Restart { name, node, json } => {
                let node = match node {
                    Some(n) => n,
                    None => here().await?,
                };
                let answers = call_each(&socket, &[node], "workloadRestart", &name).await?;
                print_answers(answers, json)
            }
        }
    }
}

/// Print what each node answered about a workload: a line per node (its status, or
/// what it said), or with `json` one array; 1 when any node refused or did not answer.
fn print_answers(
    answers: Vec<(String, Result<String, String>)>,
    json: bool,
) -> anyhow::Result<i32> {
    let mut shown = PerNode::new(json);
    for (node, answer) in answers {
        let text = match answer {
            Ok(text) => text,
            Err(e) => {
                shown.error(&node, &e);
                continue;
            }
        };
        if shown.json() {
            shown.row(match serde_json::from_str::<serde_json::Value>(&text) {
                Ok(status) => serde_json::json!({"node": node, "workload": status}),
                Err(_) => serde_json::json!({"node": node, "answer": text.trim_end()}),
            });
            continue;
        }
        match serde_json::from_str::<WorkloadStatus>(&text) {
            Ok(s) => outln!(
                "{node}: {} {:?}{}",
                s.name,
                s.state,
                s.reason.map(|r| format!(" ({r})")).unwrap_or_default()
            ),
            Err(_) => outln!("{node}: {}", text.trim_end()),
        }
    }
    shown.finish()
}
