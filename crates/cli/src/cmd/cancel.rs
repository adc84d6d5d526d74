//! `bosun cancel ID…`.

use std::time::Duration;

use bosun_ingress::client;
use bosun_ingress::control::{Cancels, ControlRequest};
use bosun_node::Cancelled;
use clap::Args;

use super::socket_path;
use crate::Global;

/// Cancel messages this node sent that have not run.
///
/// A message that never reached its destination (queued for a node that is offline,
/// or sent only into silence) ends `cancelled` at once and is never sent. One that may
/// have arrived becomes `unconfirmed`, and its destination is asked: it ends
/// `cancelled` if it had not started there, otherwise with its real outcome (follow it
/// with `bosun status ID`). A message acknowledged, running or finished is not
/// cancelled. Exit 0 when every id was cancelled or its destination asked, 1 otherwise.
///
/// Examples:
///   bosun cancel 01JD4B7Q0W5T3M8K2Y9X6N1R5C
///   bosun status --json | jq -r '.[] | select(.state == "queued") | .message.id' | xargs bosun cancel
#[derive(Args)]
#[command(verbatim_doc_comment)]
pub struct CancelCmd {
    /// The message ids, as printed by `bosun exec --no-wait`, `bosun send` or `bosun status`.
    #[arg(required = true, value_name = "ID")]
    ids: Vec<String>,
    /// Print JSON: one object per id, `{"id", "outcome"}` with `to` when the destination
    /// was asked and `reason` when refused.
    #[arg(long)]
    json: bool,
}

impl CancelCmd {
    pub async fn run(self, global: &Global) -> anyhow::Result<i32> {
        let socket = socket_path(global)?;
        let request = ControlRequest::Cancel { ids: self.ids };
        let Cancels { cancels } =
            client::request(&socket, &request, Duration::from_secs(60)).await?;
        let mut code = 0;
        for c in &cancels {
            if matches!(c.answer, Cancelled::Refused { .. }) {
                code = 1;
            }
        }
        if self.json {
            outln!("{}", serde_json::to_string_pretty(&cancels)?);
            return Ok(code);
        }
        for c in &cancels {
            match &c.answer {
                Cancelled::Cancelled => outln!("{}\tcancelled", c.id),
                Cancelled::AskedDestination { to } => outln!(
                    "{}\tunconfirmed: it may have reached {to}; {to} was asked to cancel it (`bosun status {}` shows how it ends)",
                    c.id,
                    c.id
                ),
                Cancelled::Refused { reason } => {
                    eprintln!("{}: not cancelled: {reason}", c.id)
                }
            }
        }
        Ok(code)
    }
}
