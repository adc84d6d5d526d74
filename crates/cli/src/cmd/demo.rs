//! `bosun demo`: a three-node fleet in this process, on the in-process transport.

use std::sync::Arc;
use std::time::Duration;

use bosun_bus::{Hub, LocalTransport};
use bosun_node::{Config, Node, StatusReport};
use bosun_proto::Message;
use clap::Args;

use crate::{Global, render};

/// Start a small fleet (central, ship1, ship2) in this process and walk through what
/// bosun does: commands across the fleet, ordered runs, failures and timeouts, and a
/// broker outage that loses nothing. Then print how to run a real fleet on NATS.
#[derive(Args)]
pub struct DemoCmd {
    /// Keep the demo fleet's data dirs here instead of a temporary folder.
    #[arg(long, value_name = "DIR")]
    keep: Option<std::path::PathBuf>,
}

impl DemoCmd {
    pub async fn run(self, _global: &Global) -> anyhow::Result<i32> {
        let temp = tempfile::tempdir()?;
        let base = self
            .keep
            .clone()
            .unwrap_or_else(|| temp.path().to_path_buf());
        let hub = Hub::new();
        let mut nodes = Vec::new();
        for name in ["central", "ship1", "ship2"] {
            let config = Config {
                name: name.into(),
                data_dir: base.join(name),
                ack_timeout_secs: 2,
                log: "warn".into(),
                ..Config::default()
            };
            let transport = Arc::new(LocalTransport::new(hub.clone()));
            nodes.push(Node::start(config, transport, false).await?);
        }
        let central = nodes[0].clone();
        outln!(
            "bosun demo: three nodes in one process — central, ship1, ship2 — on the in-process transport."
        );
        outln!(
            "Every message below goes through central's durable outbox, the receiver's inbox, and back.\n"
        );

        step("1. Run `uname -sr` on both ships (one message per node, tracked on its own)");
        let ids = submit(&central, cmd(&["ship1", "ship2"], &["uname", "-sr"])).await?;
        show(&central, &ids).await?;

        step("2. Three ordered messages to ship1: they run in the order they were sent");
        let mut ordered = Vec::new();
        for i in 1..=3 {
            ordered.extend(
                submit(
                    &central,
                    cmd(
                        &["ship1"],
                        &["sh", "-c", &format!("echo step {i}; sleep 0.1")],
                    ),
                )
                .await?,
            );
        }
        show(&central, &ordered).await?;

        step(
            "3. A failing command and one that outlives its methodTimeout (its process group is killed)",
        );
        let mut bad = submit(&central, cmd(&["ship2"], &["ls", "/no/such/dir"])).await?;
        let mut slow = cmd(&["ship1"], &["sleep", "30"]);
        slow.method_timeout = Some(1);
        bad.extend(submit(&central, slow).await?);
        show(&central, &bad).await?;

        step(
            "4. The broker goes down; a message is sent anyway. It waits, durable, and goes when the link is back",
        );
        hub.set_down(true);
        let late = submit(
            &central,
            cmd(&["ship2"], &["echo", "delivered after the outage"]),
        )
        .await?;
        tokio::time::sleep(Duration::from_millis(800)).await;
        let state = central
            .status(&late[0])?
            .state()
            .map(|s| s.name())
            .unwrap_or("?");
        let depth = central.depths()?.outbox;
        outln!(
            "   link down for 0.8 s: message {} is `{state}`; central's outbox holds {depth}",
            late[0]
        );
        hub.set_down(false);
        show(&central, &late).await?;

        step("5. The whole life of that message, as `bosun status ID` shows it");
        out!("{}", render::report(&central.status(&late[0])?));

        outln!();
        outln!("Run a real fleet on NATS:");
        for line in [
            "  nats-server -p 4222 &                         # apt-get install nats-server",
            "  export BOSUN_BROKER=nats://127.0.0.1:4222 BOSUN_CENTRAL=central",
            "  bosun node --name central --data-dir /tmp/central &",
            "  bosun node --name ship1   --data-dir /tmp/ship1 &",
            "  export BOSUN_DATA_DIR=/tmp/central             # the CLI talks to central",
            "  bosun nodes                                    # the fleet, from hellos",
            "  bosun exec -n ship1 -- uname -a",
            "  bosun container run -n ship1 IMAGE -- CMD      # containers, through the same path",
            "  bosun status                                   # recent messages and their states",
        ] {
            outln!("{line}");
        }

        for n in &nodes {
            n.shutdown().await;
        }
        Ok(0)
    }
}

fn step(title: &str) {
    outln!("\n▶ {title}");
}

fn cmd(to: &[&str], argv: &[&str]) -> Message {
    Message {
        to_nodes: to.iter().map(|s| s.to_string()).collect(),
        method: "cliCommand".into(),
        data: argv.iter().map(|s| s.to_string()).collect(),
        method_timeout: Some(10),
        ..Default::default()
    }
}

async fn submit(node: &Node, m: Message) -> anyhow::Result<Vec<String>> {
    Ok(node
        .submit(vec![m])
        .await?
        .into_iter()
        .map(|s| s.id)
        .collect())
}

async fn show(node: &Node, ids: &[String]) -> anyhow::Result<()> {
    let (_, reports) = node.wait(ids, Duration::from_secs(20)).await?;
    for r in &reports {
        print_one(r);
    }
    Ok(())
}

fn print_one(r: &StatusReport) {
    let Some(sent) = &r.sent else { return };
    let to = sent.message.destination();
    let states: Vec<&str> = sent.history.iter().map(|h| h.state.name()).collect();
    match r.outcome() {
        Some(o) => {
            outln!(
                "   {to:<6} {:<34} {}",
                render::outcome_summary(o),
                states.join(" → ")
            );
            for line in o.stdout.lines().chain(o.stderr.lines()) {
                outln!("          │ {line}");
            }
            if o.status != bosun_proto::Status::Done
                && let Some(e) = &o.error
            {
                outln!("          └ {e}");
            }
        }
        None => outln!("   {to:<6} {}", sent.state.name()),
    }
}
