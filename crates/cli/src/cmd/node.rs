//! `bosun node`: run a node until SIGTERM or Ctrl-C.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bosun_bus::{Hub, LocalTransport, NatsOptions, NatsTransport, Sealed, Transport};
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
/// steward's flags and environment variables work too (`-nodeName=ship1`,
/// `-brokerAddress=127.0.0.1:4222`, `NODE_NAME`, `CENTRAL_NODE_NAME`, …), as do a Mesos
/// agent's MESOS_ATTRIBUTES (labels) and quartermaster's TOKEN: see the README, Coming
/// from steward.
///
/// Examples:
///   bosun node --name ship1 --broker nats://127.0.0.1:4222 --data-dir /var/lib/bosun
///   BOSUN_NAME=ship2 BOSUN_BROKER=nats://hub:4222 bosun node
///   bosun node --nodeName="ship1" --centralNodeName="central" -brokerAddress="127.0.0.1:4222"
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
            // Trust first: it creates `node.key` at the first start, which the broker
            // connection may use as its nkey (`nkey_seed_file`).
            let trust = Arc::new(
                bosun_node::trust::load(&config, bosun_methods::clock::now_millis())
                    .context("cannot set up this node's trust")?,
            );
            let options = NatsOptions::from(&config);
            let nats = NatsTransport::connect(&options)
                .await
                .context("cannot connect to the broker")?;
            if !nats.wait_connected(Duration::from_secs(2)).await {
                tracing::warn!(broker = %config.broker.join(","), "broker not reachable yet; messages wait in the outbox until it is");
            }
            announce_trust(&config, &trust);
            let sealed: Arc<dyn Transport> =
                Arc::new(Sealed::new(Arc::new(nats), trust, config.name.to_string()));
            (sealed, false)
        };
        // Taken before start-up, so that a signal during it stops the node cleanly too.
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let node = Node::start(config.clone(), transport, standalone)
            .await
            .context("cannot start the node")?;
        // The node owns the one shutdown token and task tracker; the listeners run on
        // them too, so `shutdown` below waits for every task before the store closes.
        if let Err(e) = bosun_ingress::serve(
            node.clone(),
            &config,
            node.shutdown_token(),
            &node.tracker(),
        )
        .await
        {
            node.shutdown().await;
            return Err(e.into());
        }
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
            reason = node.store_failed() => {
                node.shutdown().await;
                anyhow::bail!("stopping: {reason}");
            }
        }
        node.shutdown().await;
        Ok(0)
    }
}

/// Say at start what this node accepts from the broker; loudly when it is nothing, or
/// anything.
fn announce_trust(config: &bosun_node::Config, trust: &bosun_trust::Trust) {
    if trust.insecure_open() {
        tracing::warn!(
            "INSECURE: insecure_open is set; anyone who reaches the broker can run anything \
             this node's user can. For labs only."
        );
    } else if !trust.accepts_others() {
        tracing::warn!(
            "untrusted: this node trusts no issuer, so it refuses every message from other \
             nodes (its own still run). Set it up: bosun keys init, then \
             bosun keys issue --name {} --into {}, then start with --trust <issuer key>",
            config.name,
            config.data_dir.display()
        );
    }
    if trust.identity().is_none() && !trust.insecure_open() {
        tracing::warn!(
            public_key = trust.public_key(),
            "this node has no identity yet; other nodes refuse its messages until an issuer \
             vouches for it (bosun keys issue --name {} --pub {})",
            config.name,
            trust.public_key()
        );
    }
    tracing::info!(trust = %trust.describe(), "trust");
}

/// Log to stderr at `filter`; in colour only on a terminal (and not with `NO_COLOR`
/// set), so a log redirected to a file or the journal holds no escape codes.
pub fn init_logging(filter: &str) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr)
        .try_init();
}
