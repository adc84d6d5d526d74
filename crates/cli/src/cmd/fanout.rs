//! Sending one method to many nodes through the local node, and waiting for every
//! answer: what `chaos` and `workload` do across the fleet.

use std::time::Duration;

use anyhow::bail;
use bosun_ingress::client;
use bosun_ingress::control::{ControlRequest, Nodes, Queued, Waited};
use bosun_proto::{Message, State};

/// The names of the nodes this node knows and does not think down.
pub async fn live_nodes(socket: &std::path::Path) -> anyhow::Result<Vec<String>> {
    let Nodes { nodes } =
        client::request(socket, &ControlRequest::Nodes, Duration::from_secs(10)).await?;
    let names: Vec<String> = nodes
        .into_iter()
        .filter(|n| n.status != bosun_node::Liveness::Down)
        .map(|n| n.name)
        .collect();
    if names.is_empty() {
        bail!(
            "this node knows no live node: is it on a broker, and have hellos arrived? A node with a central set lists only what central tells it unless it has fleet_view = \"on\"; run this on central"
        );
    }
    Ok(names)
}

/// Send `method [arg]` to each node and wait (20 s) for every answer.
pub async fn call_each(
    socket: &std::path::Path,
    nodes: &[String],
    method: &str,
    arg: &str,
) -> anyhow::Result<Vec<(String, Result<String, String>)>> {
    let messages = nodes
        .iter()
        .map(|n| {
            serde_json::to_value(Message {
                to_node: Some(n.clone()),
                method: method.into(),
                data: vec![arg.to_string()],
                ordered: Some(false),
                ttl: Some(60),
                ..Default::default()
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let Queued { queued } = client::request(
        socket,
        &ControlRequest::Submit { messages },
        Duration::from_secs(30),
    )
    .await?;
    let wait = ControlRequest::Wait {
        ids: queued.iter().map(|q| q.id.clone()).collect(),
        timeout_ms: 20_000,
    };
    let Waited { reports, .. } = client::request(socket, &wait, Duration::from_secs(40)).await?;
    Ok(queued
        .iter()
        .zip(&reports)
        .map(|(q, r)| {
            let answer = match (r.state(), r.outcome()) {
                (Some(State::Done), Some(o)) => Ok(o.stdout.clone()),
                (_, Some(o)) => Err(o.error.clone().unwrap_or_else(|| format!("{:?}", o.status))),
                (state, None) => Err(format!("no answer ({state:?})")),
            };
            (q.to_node.clone(), answer)
        })
        .collect())
}

/// What the nodes answered, printed per node as it comes or, with `json`, gathered
/// into one array printed at the end; a node's error goes to stderr or into the array
/// as `{"node", "error"}` and makes the exit code 1.
pub struct PerNode {
    json: bool,
    rows: Vec<serde_json::Value>,
    code: i32,
}

impl PerNode {
    pub fn new(json: bool) -> PerNode {
        PerNode {
            json,
            rows: Vec::new(),
            code: 0,
        }
    }

    /// Whether rows are gathered as JSON (else the caller prints its line).
    pub fn json(&self) -> bool {
        self.json
    }

    /// One node's answer, as a JSON row.
    pub fn row(&mut self, row: serde_json::Value) {
        self.rows.push(row);
    }

    /// A node that refused or did not answer.
    pub fn error(&mut self, node: &str, error: &str) {
        self.code = 1;
        if self.json {
            self.rows
                .push(serde_json::json!({"node": node, "error": error}));
        } else {
            eprintln!("{node}: {error}");
        }
    }

    /// Print the array (with `json`) and give the exit code.
    pub fn finish(self) -> anyhow::Result<i32> {
        if self.json {
            outln!("{}", serde_json::to_string_pretty(&self.rows)?);
        }
        Ok(self.code)
    }
}
