//! The outcome of running a message, carried back to the sender in a reply.

use serde::{Deserialize, Serialize};

use crate::Millis;

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum Status {
    /// The method ran and succeeded (exit code 0 for commands).
    Done,
    /// The method ran and failed, or the message could not be delivered.
    Failed,
    /// `methodTimeout` ended the run.
    Timeout,
    /// The node stopped or crashed while the method ran.
    Interrupted,
    /// The receiver refused the message (bad field, unknown method, too large, …).
    Rejected,
    /// Its sender gave it up, and the destination confirmed it never ran and never will.
    Cancelled,
}

/// What running a message produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    /// How the run ended.
    pub status: Status,
    /// The node that ran (or refused) the message.
    pub node: String,
    /// Exit code, for commands that exited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Standard output, possibly truncated.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub stdout: String,
    /// Standard error, possibly truncated.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub stderr: String,
    /// A human-readable reason when the run did not succeed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// True when stdout or stderr was cut at the node's output limit.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
    /// When the method started, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Millis>,
    /// When the outcome was decided.
    pub finished_at: Millis,
    /// How many output chunks were streamed before this outcome (streaming methods).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunks: Option<u64>,
}

impl Outcome {
    /// An outcome with only a status and a reason: refusals, interruptions, failures to deliver.
    pub fn bare(status: Status, node: &str, error: impl Into<String>, at: Millis) -> Outcome {
        Outcome {
            status,
            node: node.to_string(),
            exit_code: None,
            stdout: String::new(),
            stderr: String::new(),
            error: Some(error.into()),
            truncated: false,
            started_at: None,
            finished_at: at,
            chunks: None,
        }
    }
}
