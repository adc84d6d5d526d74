//! `bosun send FILE.json`: steward message files, unchanged.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use bosun_ingress::client;
use bosun_ingress::control::{ControlRequest, Queued, Waited};
use clap::Args;

use super::socket_path;
use crate::Global;

/// Submit a file of messages in steward's format: a JSON array of message objects
/// (or one object), or the same in YAML. Prints one line per delivery: node, method
/// and id.
///
/// Examples:
///   bosun send examples/uname.json
///   bosun send --wait msgs.json
///   cat msgs.json | bosun send -
#[derive(Args)]
#[command(verbatim_doc_comment)]
pub struct SendCmd {
    /// The message file; `-` reads standard input.
    file: PathBuf,
    /// Wait for the results and print them, like `bosun exec`.
    #[arg(long)]
    wait: bool,
    /// Seconds to wait with --wait.
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    timeout: u64,
    /// Print JSON for programs.
    #[arg(long)]
    json: bool,
}

impl SendCmd {
    pub async fn run(self, global: &Global) -> anyhow::Result<i32> {
        let text = if self.file.as_os_str() == "-" {
            std::io::read_to_string(std::io::stdin()).context("reading standard input")?
        } else {
            std::fs::read_to_string(&self.file)
                .with_context(|| format!("cannot read {}", self.file.display()))?
        };
        let messages = bosun_ingress::inputs::parse_messages(&text)
            .map_err(|e| anyhow::anyhow!("{}: {e}", self.file.display()))?;
        let values = messages
            .iter()
            .map(serde_json::to_value)
            .collect::<Result<Vec<_>, _>>()?;
        let socket = socket_path(global)?;
        let Queued { queued } = client::request(
            &socket,
            &ControlRequest::Submit { messages: values },
            Duration::from_secs(30),
        )
        .await
        .with_context(|| format!("{} was not queued", self.file.display()))?;
        if !self.wait {
            if self.json {
                outln!("{}", serde_json::to_string_pretty(&queued)?);
            } else {
                for q in &queued {
                    outln!("{}\t{}\t{}", q.to_node, q.method, q.id);
                }
            }
            return Ok(0);
        }
        let ids = queued.iter().map(|q| q.id.clone()).collect();
        let wait = ControlRequest::Wait {
            ids,
            timeout_ms: self.timeout * 1000,
        };
        let Waited { reports, .. } =
            client::request(&socket, &wait, Duration::from_secs(self.timeout + 30)).await?;
        Ok(super::exec::print_results(&queued, &reports, self.json))
    }
}
