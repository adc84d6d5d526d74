//! The states a message moves through, as stored in its history and shown to operators.

use serde::{Deserialize, Serialize};

use crate::outcome::Status;

/// One step of a message's life. See `bosun_core::lifecycle` for the allowed moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum State {
    /// In the sender's outbox, durable, not yet sent.
    Queued,
    /// Published to the destination at least once; waiting for its ACK.
    Sent,
    /// The destination recorded it in its inbox and acknowledged it.
    Acked,
    /// Recorded in this node's inbox (receiver side), not yet started.
    Received,
    /// The sender gave up sending it after a send that may have arrived (no ACK came),
    /// and asked the destination to cancel it; the destination's answer is awaited. Not
    /// final: it ends `cancelled` (the destination confirms it never ran) or with the real
    /// outcome.
    Unconfirmed,
    /// The method is running at the destination.
    Running,
    /// Finished successfully.
    Done,
    /// Finished unsuccessfully, or could not be delivered.
    Failed,
    /// Ended by `methodTimeout`.
    Timeout,
    /// The destination stopped while the method ran.
    Interrupted,
    /// The destination refused it.
    Rejected,
    /// Given up by its sender, and confirmed by the destination never to run.
    Cancelled,
}

impl State {
    /// True when nothing more will happen to the message.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            State::Done
                | State::Failed
                | State::Timeout
                | State::Interrupted
                | State::Rejected
                | State::Cancelled
        )
    }

    /// The terminal state that matches an outcome status.
    pub fn from_status(status: Status) -> State {
        match status {
            Status::Done => State::Done,
            Status::Failed => State::Failed,
            Status::Timeout => State::Timeout,
            Status::Interrupted => State::Interrupted,
            Status::Rejected => State::Rejected,
            Status::Cancelled => State::Cancelled,
        }
    }

    /// Lower-case name, as shown in tables and metrics.
    pub fn name(self) -> &'static str {
        match self {
            State::Queued => "queued",
            State::Sent => "sent",
            State::Acked => "acked",
            State::Received => "received",
            State::Running => "running",
            State::Done => "done",
            State::Failed => "failed",
            State::Timeout => "timeout",
            State::Interrupted => "interrupted",
            State::Rejected => "rejected",
            State::Unconfirmed => "unconfirmed",
            State::Cancelled => "cancelled",
        }
    }
}
