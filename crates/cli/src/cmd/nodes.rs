//! `bosun nodes`: the fleet registry.

use std::time::Duration;

use bosun_ingress::client;
use bosun_ingress::control::{ControlRequest, Nodes};
use clap::Args;

use super::socket_path;
use crate::Global;

/// Show the fleet as this node knows it from hellos: each node's status (alive, suspect
/// after missed hellos, down after more), when it was last seen, and its inventory.
/// Ask the central node: it is the one every node sends hellos to.
///
/// Examples:
///   bosun --data-dir /var/lib/bosun/central nodes
///   bosun nodes --json | jq '.[] | select(.status != "alive") | .name'
#[derive(Args)]
#[command(verbatim_doc_comment)]
pub struct NodesCmd {
    /// Print JSON for programs.
    #[arg(long)]
    json: bool,
}

fn gib(v: &serde_json::Value) -> String {
    v.as_f64()
        .map(|b| format!("{:.1}G", b / (1024.0 * 1024.0 * 1024.0)))
        .unwrap_or_else(|| "-".into())
}

impl NodesCmd {
    pub async fn run(self, global: &Global) -> anyhow::Result<i32> {
        let socket = socket_path(global)?;
        let Nodes { nodes } =
            client::request(&socket, &ControlRequest::Nodes, Duration::from_secs(30)).await?;
        // What this node itself accepts, when it is not the normal signed-and-checked.
        if let Ok(info) = client::request::<bosun_ingress::control::Info>(
            &socket,
            &ControlRequest::Info,
            Duration::from_secs(10),
        )
        .await
            && (info.transport.contains("untrusted") || info.transport.contains("INSECURE"))
        {
            eprintln!("this node ({}): {}", info.name, info.transport);
        }
        if self.json {
            outln!("{}", serde_json::to_string_pretty(&nodes)?);
            return Ok(0);
        }
        if nodes.is_empty() {
            outln!(
                "no nodes have said hello to this node yet; run `bosun nodes` on the central node, and start nodes with --central NAME"
            );
            return Ok(0);
        }
        outln!(
            "{:<16} {:<8} {:>10}  {:<8} {:<22} {:>4} {:>6} {:>13} {:>13}  LABELS",
            "NAME",
            "STATUS",
            "LAST SEEN",
            "VERSION",
            "KERNEL",
            "CPUS",
            "LOAD1",
            "MEM AVAIL",
            "DISK FREE"
        );
        for n in nodes
            .iter()
            .filter(|n| n.unverified || n.inventory.get("insecureOpen").is_some())
        {
            eprintln!(
                "warning: {} {}",
                n.name,
                if n.unverified {
                    "sends unsigned hellos (insecure_open): nothing is placed on it"
                } else {
                    "accepts unsigned messages from anyone (insecure_open)"
                }
            );
        }
        for n in nodes {
            let inv = &n.inventory;
            let labels = inv["labels"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            outln!(
                "{:<16} {:<8} {:>9.0}s  {:<8} {:<22} {:>4} {:>6} {:>13} {:>13}  {}",
                n.name,
                format!("{:?}", n.status).to_lowercase(),
                n.seconds_ago,
                inv["version"].as_str().unwrap_or("-"),
                inv["kernel"].as_str().unwrap_or("-"),
                inv["cpus"]
                    .as_u64()
                    .map(|c| c.to_string())
                    .unwrap_or_else(|| "-".into()),
                inv["load1"]
                    .as_f64()
                    .map(|l| format!("{l:.2}"))
                    .unwrap_or_else(|| "-".into()),
                format!(
                    "{}/{}",
                    gib(&inv["memAvailableBytes"]),
                    gib(&inv["memTotalBytes"])
                ),
                format!(
                    "{}/{}",
                    gib(&inv["diskFreeBytes"]),
                    gib(&inv["diskTotalBytes"])
                ),
                labels
            );
        }
        Ok(0)
    }
}
