//! `bosun nodes`: the fleet registry.

use std::time::Duration;

use bosun_ingress::client;
use bosun_ingress::control::{ControlRequest, Nodes};
use clap::Args;

use super::socket_path;
use crate::Global;

/// Show the fleet as this node knows it from hellos: each node's status (alive, suspect
/// after missed hellos, down after more), when it was last seen, and its inventory.
/// Any node knows the fleet from the hellos every node announces; central also keeps
/// them durably, so ask central for a node that has been away a while.
///
/// A drained node takes no new containers from placement (`instances`, quartermaster's
/// /run, DockerMod's create-container); what runs there keeps running. The drain is kept
/// by the node itself, across restarts, and shown here as `alive,drained`.
///
/// Examples:
///   bosun --data-dir /var/lib/bosun/central nodes
///   bosun nodes --json | jq '.[] | select(.status != "alive") | .name'
///   bosun nodes --drain ship2      # DockerMod's unregister
///   bosun nodes --undrain ship2    # DockerMod's register
#[derive(Args)]
#[command(verbatim_doc_comment)]
pub struct NodesCmd {
    /// Print JSON for programs.
    #[arg(long)]
    json: bool,
    /// Take NODE out of placement, and wait until it confirms.
    #[arg(long, value_name = "NODE", conflicts_with = "undrain")]
    drain: Option<String>,
    /// Put NODE back into placement, and wait until it confirms.
    #[arg(long, value_name = "NODE")]
    undrain: Option<String>,
}

fn gib(v: &serde_json::Value) -> String {
    v.as_f64()
        .map(|b| format!("{:.1}G", b / (1024.0 * 1024.0 * 1024.0)))
        .unwrap_or_else(|| "-".into())
}

impl NodesCmd {
    pub async fn run(self, global: &Global) -> anyhow::Result<i32> {
        let socket = socket_path(global)?;
        if let Some((target, drained)) = self
            .drain
            .as_ref()
            .map(|n| (n, true))
            .or(self.undrain.as_ref().map(|n| (n, false)))
        {
            return drain(&socket, target, drained, self.json).await;
        }
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
        let mut table = crate::table::Table::new(&[
            "NAME",
            "STATUS",
            "LAST SEEN",
            "VERSION",
            "KERNEL",
            "CPUS",
            "LOAD1",
            "MEM AVAIL",
            "DISK FREE",
            "LABELS",
        ])
        .right(&[2, 5, 6, 7, 8]);
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
            let labels = n.labels_text(",");
            let mut status = format!("{:?}", n.status).to_lowercase();
            if n.drained {
                status.push_str(",drained");
            }
            table.row([
                n.name.clone(),
                status,
                format!("{:.0}s", n.seconds_ago),
                inv["version"].as_str().unwrap_or("-").to_string(),
                inv["kernel"].as_str().unwrap_or("-").to_string(),
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
                labels,
            ]);
        }
        out!("{}", table.render());
        Ok(0)
    }
}

/// Send `nodeDrain` to `target` and wait for its answer.
async fn drain(
    socket: &std::path::Path,
    target: &str,
    drained: bool,
    json: bool,
) -> anyhow::Result<i32> {
    use bosun_ingress::control::Drained;
    let request = ControlRequest::Drain {
        node: target.to_string(),
        drained,
    };
    let answer: Drained = client::request(socket, &request, Duration::from_secs(60)).await?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&answer)?);
        return Ok(0);
    }
    let Drained { node, output, .. } = answer;
    outln!("── {node}");
    out!("{output}");
    if !output.is_empty() && !output.ends_with('\n') {
        outln!();
    }
    Ok(0)
}
