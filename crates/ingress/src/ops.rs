//! Fleet operations built from messages: send and wait, find a container's node, list
//! containers cluster-wide, run containers with placement. The HTTP API, the
//! compatibility layers and the CLI all go through these, so every operation is a
//! durable, exactly-once message like any other.

use std::time::Duration;

use bosun_proto::{Message, Method, State};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use bosun_node::{Node, StatusReport};

/// Why an operation did not complete.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    /// The request itself is wrong (bad spec, nothing fits, …).
    #[error("{0}")]
    Invalid(String),
    /// No node has that container.
    #[error("no such container: {0}")]
    NotFound(String),
    /// The message ran and failed; the reason from the node.
    #[error("{0}")]
    Failed(String),
    /// No result within the wait.
    #[error("no result within {0} s; the message is still queued")]
    Timeout(u64),
}

/// Submit messages and wait for all their results.
pub async fn call(
    node: &Node,
    messages: Vec<Message>,
    timeout: Duration,
) -> Result<Vec<StatusReport>, OpError> {
    let queued = node
        .submit(messages)
        .await
        .map_err(|e| OpError::Invalid(e.to_string()))?;
    let ids: Vec<String> = queued.into_iter().map(|q| q.id).collect();
    let (all, reports) = node
        .wait(&ids, timeout)
        .await
        .map_err(|e| OpError::Failed(e.to_string()))?;
    if !all {
        return Err(OpError::Timeout(timeout.as_secs()));
    }
    Ok(reports)
}

/// A message for one node.
pub fn message(to: &str, method: Method, data: Vec<String>) -> Message {
    Message {
        to_node: Some(to.to_string()),
        method: method.name().to_string(),
        data,
        ordered: Some(false),
        ttl: Some(120),
        ..Default::default()
    }
}

/// The stdout of a finished report, or its error.
pub fn stdout(report: &StatusReport) -> Result<String, OpError> {
    match (report.state(), report.outcome()) {
        (Some(State::Done), Some(o)) => Ok(o.stdout.clone()),
        (_, Some(o)) => Err(OpError::Failed(
            o.error.clone().unwrap_or_else(|| format!("{:?}", o.status)),
        )),
        _ => Err(OpError::Failed("no outcome".into())),
    }
}

/// The nodes to ask for cluster-wide views: every node in the registry that is not down,
/// and this node.
pub fn live_nodes(node: &Node) -> Vec<String> {
    let mut names: Vec<String> = node
        .fleet()
        .unwrap_or_default()
        .into_iter()
        .filter(|n| n.status != bosun_node::Liveness::Down)
        .map(|n| n.name)
        .collect();
    if !names.iter().any(|n| n == node.name()) {
        names.push(node.name().to_string());
    }
    names.sort();
    names
}

/// Every node's containers, merged; nodes that did not answer are named.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ClusterList {
    /// Containers, each with its `node`.
    pub containers: Vec<Value>,
    /// Nodes that did not answer in time, or failed.
    pub missing: Vec<String>,
}

/// The shape of listed containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListFormat {
    /// bosun's rows (`id`, `names`, `image`, `state`, `status`, `labels`), each with its
    /// `node`.
    Bosun,
    /// Docker's own list entries (`Id`, `Names`, `Labels`, …), each with its node in
    /// `dockerInstance`, as DockerMod answered.
    Docker,
}

impl ListFormat {
    /// The keys of a row's node, id and labels.
    fn keys(self) -> (&'static str, &'static str, &'static str) {
        match self {
            ListFormat::Bosun => ("node", "id", "labels"),
            ListFormat::Docker => ("dockerInstance", "Id", "Labels"),
        }
    }
}

/// List containers on every live node (or only this node when `cluster` is false).
pub async fn list_containers(
    node: &Node,
    cluster: bool,
    all: bool,
    timeout: Duration,
) -> ClusterList {
    list_containers_as(node, cluster, all, ListFormat::Bosun, timeout).await
}

/// [`list_containers`], with rows in `format`.
pub async fn list_containers_as(
    node: &Node,
    cluster: bool,
    all: bool,
    format: ListFormat,
    timeout: Duration,
) -> ClusterList {
    let nodes = if cluster {
        live_nodes(node)
    } else {
        vec![node.name().to_string()]
    };
    let which = if all { "all" } else { "running" };
    let data = match format {
        ListFormat::Bosun if !all => vec![],
        ListFormat::Bosun => vec![which.to_string()],
        ListFormat::Docker => vec![which.to_string(), String::new(), "docker".to_string()],
    };
    let (node_key, _, _) = format.keys();
    let messages: Vec<Message> = nodes
        .iter()
        .map(|n| {
            let mut m = message(n, Method::ContainerList, data.clone());
            m.ttl = Some(timeout.as_secs().max(1));
            m
        })
        .collect();
    let queued = match node.submit(messages).await {
        Ok(q) => q,
        Err(_) => {
            return ClusterList {
                containers: vec![],
                missing: nodes,
            };
        }
    };
    let ids: Vec<String> = queued.iter().map(|q| q.id.clone()).collect();
    let reports = node
        .wait(&ids, timeout)
        .await
        .map(|(_, r)| r)
        .unwrap_or_default();
    let mut list = ClusterList {
        containers: vec![],
        missing: vec![],
    };
    for (q, r) in queued.iter().zip(
        reports
            .iter()
            .chain(std::iter::repeat(&StatusReport::empty())),
    ) {
        match stdout(r)
            .ok()
            .and_then(|s| serde_json::from_str::<Vec<Value>>(&s).ok())
        {
            Some(items) => list.containers.extend(items.into_iter().map(|mut c| {
                c[node_key] = Value::String(q.to_node.clone());
                c
            })),
            None => list.missing.push(q.to_node.clone()),
        }
    }
    dedupe_shared_engines(&mut list.containers, format);
    list
}

/// Several nodes can share one Docker engine (a test bench, or nodes in containers on one
/// host); each then reports the same containers. Keep one row per container: the one from
/// the node named in its `org.bosun.node` label, else the first.
fn dedupe_shared_engines(containers: &mut Vec<Value>, format: ListFormat) {
    let (node_key, id_key, labels_key) = format.keys();
    let owned = |c: &Value| {
        c[labels_key][bosun_proto::container::LABEL_NODE].as_str() == c[node_key].as_str()
    };
    let mut keep: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let mut drop = vec![false; containers.len()];
    for (i, c) in containers.iter().enumerate() {
        let Some(id) = c[id_key].as_str() else {
            continue;
        };
        let owned_here = owned(c);
        match keep.get(id).copied() {
            None => {
                keep.insert(id.to_string(), i);
            }
            Some(j) => {
                let first_owned = owned(&containers[j]);
                if owned_here && !first_owned {
                    drop[j] = true;
                    keep.insert(id.to_string(), i);
                } else {
                    drop[i] = true;
                }
            }
        }
    }
    let mut i = 0;
    containers.retain(|_| {
        let keep = !drop[i];
        i += 1;
        keep
    });
}

/// Which node has the container with this id (or id prefix, or name)?
pub async fn locate(node: &Node, id: &str) -> Result<String, OpError> {
    let list = list_containers(node, true, true, Duration::from_secs(10)).await;
    let wanted = id.trim_start_matches('/');
    list.containers
        .iter()
        .find(|c| {
            c["id"].as_str().is_some_and(|i| i.starts_with(wanted))
                || c["names"].as_array().is_some_and(|n| {
                    n.iter()
                        .any(|n| n.as_str().map(|s| s.trim_start_matches('/')) == Some(wanted))
                })
        })
        .and_then(|c| c["node"].as_str().map(str::to_string))
        .ok_or_else(|| OpError::NotFound(id.to_string()))
}

/// Run a container method on the node that has the container.
pub async fn on_container(
    node: &Node,
    method: Method,
    id: &str,
    extra: &[&str],
) -> Result<(String, String), OpError> {
    let owner = locate(node, id).await?;
    let mut data = vec![id.to_string()];
    data.extend(extra.iter().map(|s| s.to_string()));
    let reports = call(
        node,
        vec![message(&owner, method, data)],
        Duration::from_secs(60),
    )
    .await?;
    Ok((owner, stdout(&reports[0])?))
}

/// Take `target` out of placement (`drained`) or put it back, durably at `target`
/// (`nodeDrain`), and wait for it to confirm. A node not in this node's view of the
/// fleet is refused: a typo must not queue a message for a week.
pub async fn drain(node: &Node, target: &str, drained: bool) -> Result<String, OpError> {
    let known = node
        .fleet()
        .map_err(|e| OpError::Failed(e.to_string()))?
        .iter()
        .any(|n| n.name == target);
    if !known {
        return Err(OpError::NotFound(format!(
            "node {target:?}: not in this node's view of the fleet (`bosun nodes` lists it)"
        )));
    }
    let mut m = message(
        target,
        Method::NodeDrain,
        vec![if drained { "on" } else { "off" }.into()],
    );
    // Kept until the node is back, however long it is away.
    m.ttl = None;
    let reports = call(node, vec![m], Duration::from_secs(30)).await?;
    let out = stdout(&reports[0])?;
    if let Some(outcome) = reports[0].outcome() {
        node.note_drained(target, drained, outcome.finished_at);
    }
    Ok(out)
}

/// One container started by [`run_containers`].
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Started {
    /// The node it runs on.
    pub node: String,
    /// Its id, when it started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Why not, when it did not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The message that creates (and starts, unless `create_only`) containers from `spec`:
/// on `to`, or `instances` of them placed over the fleet under `constraints`, or one on
/// `this_node` when neither is given. The spec is checked first; the message is checked
/// when it is submitted.
pub fn container_message(
    this_node: &str,
    spec: &bosun_proto::container::ContainerSpec,
    to: Vec<String>,
    instances: Option<u32>,
    constraints: std::collections::BTreeMap<String, String>,
    create_only: bool,
) -> Result<Message, OpError> {
    spec.check()
        .map_err(|error| OpError::Invalid(error.to_string()))?;
    let method = if create_only {
        Method::ContainerCreate
    } else {
        Method::ContainerRun
    };
    let spec = serde_json::to_string(spec)
        .map_err(|error| OpError::Invalid(format!("the container spec: {error}")))?;
    let mut m = message("", method, vec![spec]);
    m.to_node = None;
    m.to_nodes = to;
    m.instances = instances;
    m.constraints = constraints;
    if m.to_nodes.is_empty() && m.instances.is_none() {
        m.to_nodes = vec![this_node.to_string()];
    }
    Ok(m)
}

/// Create (and start, unless `create_only`) containers from `spec`: on `to`, or
/// `instances` of them placed over the fleet under `constraints`.
pub async fn run_containers(
    node: &Node,
    spec: &bosun_proto::container::ContainerSpec,
    to: Vec<String>,
    instances: Option<u32>,
    constraints: std::collections::BTreeMap<String, String>,
    create_only: bool,
) -> Result<Vec<Started>, OpError> {
    let m = container_message(node.name(), spec, to, instances, constraints, create_only)?;
    let reports = call(node, vec![m], Duration::from_secs(120)).await?;
    Ok(reports
        .iter()
        .map(|r| {
            let to = r
                .sent
                .as_ref()
                .map(|s| s.message.destination().to_string())
                .unwrap_or_default();
            match stdout(r) {
                Ok(out) => Started {
                    node: to,
                    id: Some(out.trim().to_string()),
                    error: None,
                },
                Err(e) => Started {
                    node: to,
                    id: None,
                    error: Some(e.to_string()),
                },
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn container_messages_carry_the_checked_spec_and_their_placement() {
        use bosun_proto::container::ContainerSpec;
        let spec = ContainerSpec {
            image: Some("nginx".into()),
            ports: vec!["8080:80".into()],
            ..Default::default()
        };
        let m = container_message("n1", &spec, vec![], None, Default::default(), false).unwrap();
        assert_eq!(m.method, "containerRun");
        assert_eq!(m.to_nodes, vec!["n1"], "no placement: this node");
        let back: ContainerSpec = serde_json::from_str(&m.data[0]).unwrap();
        assert_eq!(back, spec);
        m.validate().unwrap();
        let placed = container_message(
            "n1",
            &spec,
            vec![],
            Some(3),
            [("role".into(), "worker".into())].into(),
            true,
        )
        .unwrap();
        assert_eq!(placed.method, "containerCreate");
        assert!(placed.to_nodes.is_empty());
        assert_eq!(placed.instances, Some(3));
        let err = container_message(
            "n1",
            &ContainerSpec::default(),
            vec![],
            None,
            Default::default(),
            false,
        )
        .unwrap_err();
        assert!(
            matches!(err, OpError::Invalid(_)) && err.to_string().contains("image"),
            "{err}"
        );
    }

    #[test]
    fn a_container_seen_by_several_nodes_is_listed_once_under_its_owner() {
        let row = |node: &str, id: &str, owner: &str| json!({"id": id, "node": node, "labels": {"org.bosun.node": owner}});
        let mut list = vec![
            row("a", "c1", "b"),
            row("b", "c1", "b"),
            row("c", "c1", "b"),
            row("a", "c2", "x"),
            row("b", "c2", "x"),
        ];
        dedupe_shared_engines(&mut list, ListFormat::Bosun);
        assert_eq!(list, vec![row("b", "c1", "b"), row("a", "c2", "x")]);
        let docker_row = |node: &str, id: &str, owner: &str| json!({"Id": id, "dockerInstance": node, "Labels": {"org.bosun.node": owner}});
        let mut list = vec![docker_row("a", "c1", "b"), docker_row("b", "c1", "b")];
        dedupe_shared_engines(&mut list, ListFormat::Docker);
        assert_eq!(list, vec![docker_row("b", "c1", "b")]);
    }
}
