//! What the store keeps for each message.

use bosun_proto::{Message, Millis, Outcome, State};
use serde::{Deserialize, Serialize};

use crate::StoreError;

/// One step in a message's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HistoryEntry {
    /// The state entered.
    pub state: State,
    /// When.
    pub at: Millis,
    /// Why, when there is something to say (a retry, a refusal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A message this node originated (a request, or a reply it sends back).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SentRecord {
    /// Its outbox seq.
    pub seq: u64,
    /// The message as sent.
    pub message: Message,
    /// The current state.
    pub state: State,
    /// Every state it went through.
    pub history: Vec<HistoryEntry>,
    /// How many times it was published.
    #[serde(default)]
    pub sends: u32,
    /// Still waiting in the outbox.
    pub in_outbox: bool,
    /// The outcome reported by the destination, or the reason delivery failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    /// The final state was decided here, without word from the destination (it was never
    /// delivered). A later report from the destination wins over it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub settled_here: bool,
    /// When this node asks the destination for the result, if it has not come by then
    /// (acknowledged messages that expect a reply).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_at: Option<Millis>,
    /// Set when the destination reported an outcome that contradicts the final state
    /// recorded here before: what was recorded, and what the destination said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disagreement: Option<String>,
}

/// A message this node received.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct InboxRecord {
    /// Arrival order.
    pub seq: u64,
    /// The message as received.
    pub message: Message,
    /// The current state.
    pub state: State,
    /// Every state it went through.
    pub history: Vec<HistoryEntry>,
    /// How many times it arrived (resends after lost ACKs count here).
    #[serde(default)]
    pub arrivals: u32,
    /// The outcome of running it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    /// The process group its run started, if any: what a restart after a crash must end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<ProcessRecord>,
}

/// The process group a run started, recorded with the run so that the node, restarted
/// after a crash, can tell whether it still runs (and end it) without taking a reused
/// pid for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProcessRecord {
    /// The process group id (the pid of its leader).
    pub pgid: i32,
    /// The leader's start time, in clock ticks after boot (`/proc/PID/stat` field 22).
    pub start_time: u64,
    /// The kernel's boot id when it started: start times compare only within one boot.
    pub boot_id: String,
}

/// Everything this node knows of one message id: what it sent, what it received, the
/// streamed output it got back, and its schedule.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MessageView {
    /// The record of the message as sent from here.
    pub sent: Option<SentRecord>,
    /// The record of the message as received here.
    pub inbox: Option<InboxRecord>,
    /// Streamed output got back for it: chunk number and text, in order.
    pub chunks: Vec<(u64, String)>,
    /// Its schedule, while one is active.
    pub schedule: Option<ScheduleRecord>,
}

/// The parts of a [`SentRecord`] read on each result's arrival ([`crate::Store::sent_brief`]):
/// its destination and method, its state and history, and a disagreement.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SentBrief {
    /// The message's destination and method only.
    pub message: BriefMessage,
    /// The current state.
    pub state: State,
    /// Every state it went through.
    pub history: Vec<HistoryEntry>,
    /// See [`SentRecord::disagreement`].
    #[serde(default)]
    pub disagreement: Option<String>,
}

/// A message's destination and method, the rest of it skipped.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BriefMessage {
    /// The destination node.
    #[serde(default)]
    pub to_node: Option<String>,
    /// The method, as sent.
    pub method: String,
}

impl BriefMessage {
    /// The destination node ("" when none).
    pub fn destination(&self) -> &str {
        self.to_node.as_deref().unwrap_or("")
    }
}

/// What central knows about one node of the fleet, from its hellos.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FleetRecord {
    /// The node's name.
    pub name: String,
    /// When its last hello arrived (central's clock).
    pub last_seen: Millis,
    /// The hello interval it announced, in seconds.
    pub hello_interval_secs: u64,
    /// Its last inventory, as sent.
    #[serde(default)]
    pub inventory: serde_json::Value,
    /// Its hello was not signed by an identity (taken only under `insecure_open`):
    /// such a node is listed, but nothing is placed on it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unverified: bool,
    /// When the node made that hello, on its own clock (0: unknown).
    #[serde(default)]
    pub hello_at: Millis,
}

/// An active schedule: the message it repeats and when the next run is due.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleRecord {
    /// The scheduled message as queued (one destination); repeats are copies of it.
    pub template: Message,
    /// How often, when next, how many runs remain.
    pub schedule: bosun_core::Schedule,
}

/// A reply whose sink still has work to do, recorded in the commit that absorbs it and
/// cleared when its sink has written everything it can.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SinkDue {
    /// The id of the reply to write from (the final result once it is in).
    pub reply: String,
    /// True once the final result is in.
    pub is_final: bool,
    /// A file write begun and not yet known to be complete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write: Option<SinkWrite>,
}

/// An append to a sink file, recorded durably before the file is touched, so that after
/// a crash the file can be told apart: complete (the position moves on) or not (the
/// file is cut back to `offset` and written again).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SinkWrite {
    /// The file.
    pub path: String,
    /// Its length before the write.
    pub offset: u64,
    /// Its length once the write is complete.
    pub len_after: u64,
    /// The sink position once the write is complete.
    pub next: u64,
}

pub(crate) fn decode<T: for<'a> Deserialize<'a>>(key: &str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        key: key.to_string(),
        reason: e.to_string(),
    })
}

pub(crate) fn encode<T: Serialize>(record: &T) -> Vec<u8> {
    serde_json::to_vec(record).expect("records always serialise")
}
