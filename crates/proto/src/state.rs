//! The states a message moves through, as stored in its history and shown to operators.

use serde::{Deserialize, Serialize};

use crate::outcome::Status;

/// One step of a message's life. See `bosun_core::lifecycle` for the allowed moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
}

impl State {
    /// True when nothing more will happen to the message.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            State::Done | State::Failed | State::Timeout | State::Interrupted | State::Rejected
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
        }
    }
}
