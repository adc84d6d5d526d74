//! bosun's message model and wire encoding. Serde only: this crate does no IO.
//!
//! # Layout
//! - [`container`]: the [`container::ContainerSpec`] of container-starting messages.
//! - [`message`]: the [`Message`] users write (steward field names), its validation and
//!   normalisation.
//! - [`method`]: the closed list of [`Method`]s and their steward `REQ…` spellings.
//! - [`outcome`]: the [`Outcome`] of running a message, carried back in a reply.
//! - [`state`]: the [`State`] a message is in, as stored and shown.
//! - [`wire`]: the versioned frames that travel between nodes, and subjects.

pub mod container;
pub mod message;
pub mod method;
pub mod outcome;
pub mod state;
pub mod wire;

pub use message::{
    Message, MessageParseError, NodeNameError, ValidationError, fan_out_id, validate_node_name,
};
pub use method::{Method, Output, Role};
pub use outcome::{Outcome, Status};
pub use state::State;

/// Milliseconds since the Unix epoch: the one time unit stored and sent by bosun.
pub type Millis = u64;

/// A fresh message id: a ULID, sortable by creation time.
pub fn new_id() -> String {
    ulid::Ulid::new().to_string()
}
