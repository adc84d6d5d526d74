//! `ping`: proves the node is alive and its delivery path works end to end.

use bosun_proto::{Message, Outcome, Status};

use crate::{Context, now_millis};

/// Answer at once with `pong from <node>`.
pub async fn run(_message: &Message, context: &Context) -> Outcome {
    let at = now_millis();
    Outcome {
        status: Status::Done,
        node: context.node.clone(),
        exit_code: None,
        stdout: format!("pong from {}", context.node),
        stderr: String::new(),
        error: None,
        truncated: false,
        started_at: Some(at),
        finished_at: at,
        chunks: None,
    }
}
