//! `bosun status [ID]`.

use std::time::Duration;

use bosun_ingress::client;
use bosun_ingress::control::{ControlRequest, Recent, Report};
use clap::Args;

use super::socket_path;
use crate::{Global, render};

/// Show a message's states with their times, and its result. Without an ID, list the
/// most recent messages this node sent.
///
/// Examples:
///   bosun status 01JD4B7Q0W5T3M8K2Y9X6N1R5C
///   bosun status --json 01JD4B7Q0W5T3M8K2Y9X6N1R5C
///   bosun status --limit 50
#[derive(Args)]
#[command(verbatim_doc_comment)]
pub struct StatusCmd {
    /// The message id, as printed by `bosun exec --no-wait` or `bosun send`.
    id: Option<String>,
    /// How many recent messages to list without an ID.
    #[arg(long, default_value_t = 20)]
    limit: usize,
    /// Print JSON for programs.
    #[arg(long)]
    json: bool,
}

impl StatusCmd {
    pub async fn run(self, global: &Global) -> anyhow::Result<i32> {
        let socket = socket_path(global)?;
        let timeout = Duration::from_secs(30);
        match self.id {
            Some(id) => {
                let Report { report } =
                    client::request(&socket, &ControlRequest::Status { id }, timeout).await?;
                if self.json {
                    outln!("{}", serde_json::to_string_pretty(&report)?);
                } else {
                    out!("{}", render::report(&report));
                }
            }
            None => {
                let Recent { records } = client::request(
                    &socket,
                    &ControlRequest::Recent { limit: self.limit },
                    timeout,
                )
                .await?;
                if self.json {
                    outln!("{}", serde_json::to_string_pretty(&records)?);
                } else {
                    let mut table =
                        crate::table::Table::new(&["ID", "TO", "METHOD", "STATE", "SUBMITTED"]);
                    for r in records {
                        let at = r.history.first().map(|h| h.at).unwrap_or(0);
                        table.row([
                            r.message.id().to_string(),
                            r.message.destination().to_string(),
                            r.message.method.clone(),
                            r.state.name().to_string(),
                            format!("{} {}", render::date(at), render::clock(at)),
                        ]);
                    }
                    out!("{}", table.render());
                }
            }
        }
        Ok(0)
    }
}
