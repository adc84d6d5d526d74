//! `bosun container …` and `bosun image …`: containers across the fleet, through the
//! local node. Every operation is a message: durable, run once, visible in `bosun status`.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use bosun_ingress::client;
use bosun_ingress::control::{Called, ContainerOutput, ContainersStarted, ControlRequest, Info};
use bosun_ingress::ops::ClusterList;
use bosun_proto::container::ContainerSpec;
use bosun_proto::{Message, Method};
use clap::{Args, Subcommand};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::socket_path;
use crate::Global;

/// Options for where a command goes.
#[derive(Args, Clone, Debug, Default)]
pub struct Placement {
    /// Node(s) to run on, comma-separated. [default: placed over the fleet with
    /// --instances, else this node]
    #[arg(
        long = "nodes",
        alias = "node",
        short = 'n',
        value_delimiter = ',',
        value_name = "NODES"
    )]
    nodes: Vec<String>,
    /// Start this many, spread evenly over live nodes that fit.
    #[arg(long, value_name = "N")]
    instances: Option<u32>,
    /// Node label that must match, KEY=VALUE (repeat), e.g. role=worker.
    #[arg(long = "constraint", value_name = "KEY=VALUE")]
    constraints: Vec<String>,
}

// Parsed once per process; boxing the big variant would only obscure the clap derive.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
pub enum ContainerCmd {
    /// Create and start a container: `bosun container run IMAGE [-- CMD ARGS…]`.
    ///
    /// Examples:
    ///   bosun container run alpine:3 -- sleep 300
    ///   bosun container run --instances 4 --constraint role=worker --memory 256 web:1
    ///   bosun container run --template web --name web1 -n ship1
    #[command(verbatim_doc_comment)]
    Run {
        /// Image (or give --template).
        image: Option<String>,
        /// Template name from the node's templates folder.
        #[arg(long)]
        template: Option<String>,
        /// Container name.
        #[arg(long)]
        name: Option<String>,
        /// Environment, KEY=VALUE (repeat).
        #[arg(long = "env", short = 'e')]
        env: Vec<String>,
        /// Label, KEY=VALUE (repeat).
        #[arg(long = "label", short = 'l')]
        labels: Vec<String>,
        /// Memory limit in MiB.
        #[arg(long, value_name = "MIB")]
        memory: Option<u64>,
        /// Published port HOST:CONTAINER[/udp] (repeat).
        #[arg(long = "publish", short = 'p')]
        ports: Vec<String>,
        /// Restart policy: no, always, unless-stopped, on-failure[:N].
        #[arg(long)]
        restart: Option<String>,
        /// File holding the registry auth (base64 of the Docker auth JSON), mode 0600.
        #[arg(long, value_name = "FILE")]
        auth_file: Option<std::path::PathBuf>,
        /// Create only; do not start.
        #[arg(long)]
        create_only: bool,
        #[command(flatten)]
        placement: Placement,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// The command, as an argv.
        #[arg(last = true)]
        command: Vec<String>,
    },
    /// List containers: this node's, or every live node's with --all (nodes that do not
    /// answer are listed as such).
    Ls {
        /// Every live node of the fleet.
        #[arg(long)]
        all: bool,
        /// Include stopped containers.
        #[arg(long, short = 'a')]
        stopped: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Stop containers (SIGTERM, then SIGKILL after --time seconds).
    Stop {
        /// Containers by id, id prefix or name, on whichever node of the fleet has them.
        #[arg(required = true)]
        ids: Vec<String>,
        #[command(flatten)]
        out: JsonOut,
        /// Seconds between SIGTERM and SIGKILL.
        #[arg(long, short = 't', default_value_t = 10)]
        time: u64,
    },
    /// Send a signal to containers.
    Kill {
        /// Containers by id, id prefix or name, on whichever node of the fleet has them.
        #[arg(required = true)]
        ids: Vec<String>,
        #[command(flatten)]
        out: JsonOut,
        /// The signal, by name (SIGKILL, SIGHUP, …) or number.
        #[arg(long, short = 's', default_value = "SIGTERM")]
        signal: String,
    },
    /// Start created or stopped containers.
    Start {
        /// Containers by id, id prefix or name, on whichever node of the fleet has them.
        #[arg(required = true)]
        ids: Vec<String>,
        #[command(flatten)]
        out: JsonOut,
    },
    /// Restart containers.
    Restart {
        /// Containers by id, id prefix or name, on whichever node of the fleet has them.
        #[arg(required = true)]
        ids: Vec<String>,
        #[command(flatten)]
        out: JsonOut,
    },
    /// Pause containers.
    Pause {
        /// Containers by id, id prefix or name, on whichever node of the fleet has them.
        #[arg(required = true)]
        ids: Vec<String>,
        #[command(flatten)]
        out: JsonOut,
    },
    /// Unpause containers.
    Unpause {
        /// Containers by id, id prefix or name, on whichever node of the fleet has them.
        #[arg(required = true)]
        ids: Vec<String>,
        #[command(flatten)]
        out: JsonOut,
    },
    /// Remove containers.
    Rm {
        /// Containers by id, id prefix or name, on whichever node of the fleet has them.
        #[arg(required = true)]
        ids: Vec<String>,
        #[command(flatten)]
        out: JsonOut,
        /// Remove running ones too.
        #[arg(long, short = 'f')]
        force: bool,
    },
    /// Print a container's logs.
    Logs {
        /// The container by id, id prefix or name, on whichever node of the fleet has it.
        id: String,
        /// Print JSON: `{"id", "node", "logs"}`.
        #[arg(long)]
        json: bool,
    },
    /// Print a container's inspect JSON.
    Inspect {
        /// The container by id, id prefix or name, on whichever node of the fleet has it.
        id: String,
        /// Print JSON with the node: `{"id", "node", "inspect"}`.
        #[arg(long)]
        json: bool,
    },
    /// One stats sample of a container.
    Stats {
        /// The container by id, id prefix or name, on whichever node of the fleet has it.
        id: String,
        /// Print JSON: `{"id", "node", "stats"}`.
        #[arg(long)]
        json: bool,
    },
}

/// `--json` for the commands that act on containers one by one.
#[derive(Args, Debug, Clone, Copy)]
pub struct JsonOut {
    /// Print JSON: an array with one object per container, `{"id", "node", "method"}`
    /// when it was done, `{"id", "error"}` when not.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
pub enum ImageCmd {
    /// Pull an image on a node.
    Pull {
        /// The image reference, e.g. alpine:3 or registry.example:5000/web:1.
        image: String,
        /// The node that pulls it. [default: this node]
        #[arg(long, short = 'n')]
        node: Option<String>,
        /// File holding the registry auth (base64 of the Docker auth JSON), mode 0600.
        #[arg(long, value_name = "FILE")]
        auth_file: Option<std::path::PathBuf>,
        /// Print JSON: `{"node", "image", "output"}` with the engine's pull messages, or
        /// `{"node", "image", "error"}` (exit 1) when the pull failed.
        #[arg(long)]
        json: bool,
    },
    /// List a node's images.
    Ls {
        /// The node whose images to list. [default: this node]
        #[arg(long, short = 'n')]
        node: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

fn pairs(items: &[String], what: &str) -> anyhow::Result<BTreeMap<String, String>> {
    items
        .iter()
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| anyhow::anyhow!("{what} {kv:?} must be KEY=VALUE"))
        })
        .collect()
}

/// Send `req` to the local node and read its answer as `T`.
async fn request<T: DeserializeOwned>(
    global: &Global,
    req: &ControlRequest,
    secs: u64,
) -> anyhow::Result<T> {
    Ok(client::request(&socket_path(global)?, req, Duration::from_secs(secs)).await?)
}

/// The registry auth file: a secret, refused when group or others may read it.
fn read_auth(file: &Option<std::path::PathBuf>) -> anyhow::Result<Option<String>> {
    file.as_ref()
        .map(|f| {
            bosun_trust::secret_file::read_secret(f)
                .with_context(|| format!("cannot use the registry auth file {}", f.display()))
        })
        .transpose()
}

impl ContainerCmd {
    pub async fn run(self, global: &Global) -> anyhow::Result<i32> {
        let (method, ids, args, json): (Method, Vec<String>, Vec<String>, bool) = match self {
            ContainerCmd::Run {
                image,
                template,
                name,
                env,
                labels,
                memory,
                ports,
                restart,
                auth_file,
                create_only,
                placement,
                json,
                command,
            } => {
                let spec = ContainerSpec {
                    image,
                    template,
                    name,
                    command,
                    env,
                    labels: pairs(&labels, "label")?,
                    memory_mb: memory,
                    ports,
                    restart,
                    auth: read_auth(&auth_file)?,
                    raw: None,
                };
                spec.check()?;
                let req = ControlRequest::ContainerRun {
                    spec: Box::new(spec),
                    nodes: placement.nodes,
                    instances: placement.instances,
                    constraints: pairs(&placement.constraints, "constraint")?,
                    create_only,
                };
                let ContainersStarted {
                    containers: started,
                } = request(global, &req, 180).await?;
                if json {
                    outln!("{}", serde_json::to_string_pretty(&started)?);
                }
                let mut code = 0;
                for s in &started {
                    match (&s.id, &s.error) {
                        (Some(id), _) if !json => outln!("{}\t{}", s.node, id),
                        (None, Some(e)) => {
                            code = 1;
                            eprintln!("{}: {e}", s.node);
                        }
                        _ => {}
                    }
                }
                return Ok(code);
            }
            ContainerCmd::Ls { all, stopped, json } => {
                let answer: ClusterList = request(
                    global,
                    &ControlRequest::Containers {
                        cluster: all,
                        all: stopped,
                    },
                    60,
                )
                .await?;
                if json {
                    outln!("{}", serde_json::to_string_pretty(&answer.containers)?);
                } else {
                    let mut table = crate::table::Table::new(&[
                        "ID", "NODE", "IMAGE", "STATE", "STATUS", "NAMES",
                    ]);
                    for c in &answer.containers {
                        let names: Vec<&str> = c["names"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|n| n.as_str())
                            .map(|n| n.trim_start_matches('/'))
                            .collect();
                        table.row([
                            c["id"]
                                .as_str()
                                .unwrap_or("")
                                .chars()
                                .take(12)
                                .collect::<String>(),
                            c["node"].as_str().unwrap_or("").to_string(),
                            c["image"].as_str().unwrap_or("").to_string(),
                            c["state"].as_str().unwrap_or("").to_string(),
                            c["status"].as_str().unwrap_or("").to_string(),
                            names.join(","),
                        ]);
                    }
                    out!("{}", table.render());
                }
                if !answer.missing.is_empty() {
                    eprintln!("no answer from: {}", answer.missing.join(", "));
                    return Ok(3);
                }
                return Ok(0);
            }
            ContainerCmd::Stop { ids, time, out } => {
                (Method::ContainerStop, ids, vec![time.to_string()], out.json)
            }
            ContainerCmd::Kill { ids, signal, out } => {
                (Method::ContainerKill, ids, vec![signal], out.json)
            }
            ContainerCmd::Start { ids, out } => (Method::ContainerStart, ids, vec![], out.json),
            ContainerCmd::Restart { ids, out } => (Method::ContainerRestart, ids, vec![], out.json),
            ContainerCmd::Pause { ids, out } => (Method::ContainerPause, ids, vec![], out.json),
            ContainerCmd::Unpause { ids, out } => (Method::ContainerUnpause, ids, vec![], out.json),
            ContainerCmd::Rm { ids, force, out } => (
                Method::ContainerRemove,
                ids,
                if force { vec!["force".into()] } else { vec![] },
                out.json,
            ),
            ContainerCmd::Logs { id, json } => (Method::ContainerLogs, vec![id], vec![], json),
            ContainerCmd::Inspect { id, json } => {
                (Method::ContainerInspect, vec![id], vec![], json)
            }
            ContainerCmd::Stats { id, json } => (Method::ContainerStats, vec![id], vec![], json),
        };
        let mut code = 0;
        let mut rows = Vec::new();
        for id in ids {
            let req = ControlRequest::ContainerOp {
                method: method.name().to_string(),
                id: id.clone(),
                args: args.clone(),
            };
            match request::<ContainerOutput>(global, &req, 120).await {
                Ok(answer) => {
                    let output = &answer.output;
                    let view = match method {
                        Method::ContainerLogs => Some("logs"),
                        Method::ContainerInspect => Some("inspect"),
                        Method::ContainerStats => Some("stats"),
                        _ => None,
                    };
                    if let Some(view) = view {
                        if json {
                            // Inspect and stats are JSON already; logs are text.
                            let body = serde_json::from_str::<serde_json::Value>(output)
                                .ok()
                                .filter(|_| method != Method::ContainerLogs)
                                .unwrap_or_else(|| serde_json::Value::String(output.clone()));
                            let row =
                                serde_json::json!({"id": id, "node": answer.node, view: body});
                            outln!("{}", serde_json::to_string_pretty(&row)?);
                            return Ok(0);
                        }
                        out!("{output}");
                    } else if json {
                        rows.push(serde_json::json!({
                            "id": id, "node": answer.node, "method": method.name()
                        }));
                    } else {
                        outln!("{id}\t{}\t{}", answer.node, method.name());
                    }
                }
                Err(e) => {
                    code = 1;
                    if json {
                        rows.push(serde_json::json!({"id": id, "error": format!("{e:#}")}));
                    } else {
                        eprintln!("{id}: {e}");
                    }
                }
            }
        }
        if json {
            outln!("{}", serde_json::to_string_pretty(&rows)?);
        }
        Ok(code)
    }
}

impl ImageCmd {
    pub async fn run(self, global: &Global) -> anyhow::Result<i32> {
        let (node, method, data, json) = match self {
            ImageCmd::Pull {
                image,
                node,
                auth_file,
                json,
            } => {
                let mut data = vec![image];
                if let Some(a) = read_auth(&auth_file)? {
                    data.push(a);
                }
                (node, Method::ImagePull, data, json)
            }
            ImageCmd::Ls { node, json } => (node, Method::ImageList, vec![], json),
        };
        let node = match node {
            Some(n) => n,
            None => {
                let info: Info = request(global, &ControlRequest::Info, 10).await?;
                info.name
            }
        };
        let message = Message {
            to_node: Some(node.clone()),
            method: method.name().to_string(),
            data,
            ordered: Some(false),
            ..Default::default()
        };
        let image = message.data.first().cloned().unwrap_or_default();
        let called = request(
            global,
            &ControlRequest::Call {
                message: Box::new(message),
                timeout_ms: 600_000,
            },
            660,
        )
        .await;
        if method == Method::ImagePull && json {
            let (row, code) = match called {
                Ok(Called { output, .. }) => (
                    serde_json::json!({"node": node, "image": image, "output": output}),
                    0,
                ),
                Err(e) => (
                    serde_json::json!({"node": node, "image": image, "error": format!("{e:#}")}),
                    1,
                ),
            };
            outln!("{}", serde_json::to_string_pretty(&row)?);
            return Ok(code);
        }
        let Called { output, .. } = called?;
        if method == Method::ImageList && !json {
            let images: Vec<Value> = serde_json::from_str(&output).unwrap_or_default();
            let mut table = crate::table::Table::new(&["ID", "SIZE", "TAGS"]).right(&[1]);
            for i in images {
                let tags: Vec<&str> = i["tags"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|t| t.as_str())
                    .collect();
                table.row([
                    i["id"]
                        .as_str()
                        .unwrap_or("")
                        .trim_start_matches("sha256:")
                        .chars()
                        .take(20)
                        .collect::<String>(),
                    format!(
                        "{:.1}M",
                        i["sizeBytes"].as_f64().unwrap_or(0.0) / 1_048_576.0
                    ),
                    tags.join(","),
                ]);
            }
            out!("{}", table.render());
        } else {
            out!("{output}");
            if !output.ends_with('\n') {
                outln!();
            }
        }
        Ok(0)
    }
}
