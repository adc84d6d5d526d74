//! `bosun node`: run a node until SIGTERM or Ctrl-C.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bosun_bus::{Hub, LocalTransport, NatsOptions, NatsTransport, Transport};
use bosun_node::Node;
use clap::Args;
use tokio::signal::unix::{SignalKind, signal};

use super::{NodeArgs, load_config};
use crate::Global;

/// Run a node.
///
/// Without --broker the node is standalone: it runs messages addressed to itself through
/// the same durable outbox → transport → inbox path, and refuses other destinations.
/// With --broker it joins the fleet on NATS.
///
/// Examples:
///   bosun node --name ship1 --broker nats://127.0.0.1:4222 --data-dir /var/lib/bosun
///   BOSUN_NAME=ship2 BOSUN_BROKER=nats://hub:4222 bosun node
#[derive(Args)]
#[command(verbatim_doc_comment)]
pub struct NodeCmd {
    #[command(flatten)]
    args: NodeArgs,
    /// Write the configuration in effect (file, env and these flags) to the config file
    /// before starting, so the next start uses it without flags. Unlike steward, bosun
    /// never does this on its own.
    #[arg(long)]
    save_config: bool,
}

impl NodeCmd {
    pub async fn run(self, global: &Global) -> anyhow::Result<i32> {
        let config = load_config(global, &self.args)?;
        init_logging(&config.log);
        if self.save_config {
            let path = global
                .config
                .clone()
                .unwrap_or_else(|| bosun_node::Config::default_file(&config.data_dir));
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::write(&path, config.to_toml())
                .with_context(|| format!("cannot save the configuration to {}", path.display()))?;
            tracing::info!(path = %path.display(), "configuration saved; the next start uses it");
        }
        let (transport, standalone): (Arc<dyn Transport>, bool) = if config.broker.is_empty() {
            (Arc::new(LocalTransport::new(Hub::new())), true)
        } else {
            let options = NatsOptions::from(&config);
            let nats = NatsTransport::connect(&options).await?;
            if !nats.wait_connected(Duration::from_secs(2)).await {
                tracing::warn!(broker = %config.broker.join(","), "broker not reachable yet; messages wait in the outbox until it is");
            }
            (Arc::new(nats), false)
        };
        let socket = config.socket_path();
        let node = Node::start(config, transport, standalone)
            .await
            .context("cannot start the node")?;
        let server = {
            let node = node.clone();
            let socket = socket.clone();
            tokio::spawn(async move { bosun_node::control::serve(node, &socket).await })
        };
        start_inputs(&node).await?;
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
            r = server => {
                node.shutdown().await;
                r??;
                return Ok(1);
            }
        }
        node.shutdown().await;
        Ok(0)
    }
}

/// The optional listeners and folders: metrics endpoint, steward's TCP listener, the
/// read folder, and the startup folder's messages.
async fn start_inputs(node: &Node) -> anyhow::Result<()> {
    let config = node.config().clone();
    if let Some(addr) = config.metrics_listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen for metrics on {addr}"))?;
        tracing::info!(%addr, "serving /metrics");
        let metrics = node.metrics();
        let shutdown = node.shutdown_signal();
        tokio::spawn(async move { bosun_node::metrics::serve(listener, metrics, shutdown).await });
    }
    if let Some(addr) = config.tcp_listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen for messages on {addr}"))?;
        tracing::info!(
            %addr,
            "taking steward message arrays on TCP (no authentication: keep it on a trusted network)"
        );
        tokio::spawn(bosun_node::inputs::serve_tcp(node.clone(), listener));
    }
    if let Some(addr) = config.lsdsuite_listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen for LSDSuite commands on {addr}"))?;
        tracing::info!(%addr, "LSDSuite command port open");
        tokio::spawn(bosun_node::lsdsuite::serve(node.clone(), listener));
    }
    if let Some(addr) = config.http_listen {
        let token = match std::env::var("BOSUN_HTTP_TOKEN") {
            Ok(t) if !t.is_empty() => t,
            _ => match &config.http_token_file {
                Some(f) => std::fs::read_to_string(f)
                    .with_context(|| format!("cannot read the HTTP token file {}", f.display()))?
                    .trim()
                    .to_string(),
                None => anyhow::bail!(
                    "the HTTP API needs a token: set BOSUN_HTTP_TOKEN, or http_token_file in the config (never a flag: flags show in ps)"
                ),
            },
        };
        if token.len() < 16 {
            anyhow::bail!(
                "the HTTP API token is too short: use at least 16 characters (e.g. uuidgen)"
            );
        }
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen for HTTP on {addr}"))?;
        tracing::info!(%addr, "HTTP API open (/v1, quartermaster, DockerMod)");
        tokio::spawn(bosun_node::http::serve(node.clone(), listener, token));
    }
    if let Some(dir) = config.read_path() {
        tokio::spawn(bosun_node::inputs::watch_folder(node.clone(), dir));
    }
    let queued = bosun_node::inputs::submit_startup(node, &config.startup_path()).await;
    if queued > 0 {
        tracing::info!(queued, dir = %config.startup_path().display(), "startup messages queued");
    }
    Ok(())
}

pub fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
