//! bosun's delivery logic: pure functions and data structures, no IO, no clock.
//!
//! Time is always passed in as milliseconds, so every rule here is tested without
//! sleeping.
//!
//! # Layout
//! - [`lifecycle`]: which state a message moves to on each event.
//! - [`retry`]: when to resend, when to give up.
//! - [`lanes`]: which queued items may go next, keeping per-stream order and a
//!   concurrency limit for unordered items.
//! - [`placement`]: which live nodes get the containers of an `instances: N` message.
//! - [`liveness`]: alive, suspect or down, from the last hello and the hello interval.
//! - [`schedule`]: when the repeats of a scheduled message are due.

pub mod lanes;
pub mod lifecycle;
pub mod liveness;
pub mod placement;
pub mod retry;
pub mod schedule;

pub use lanes::{LaneItem, Lanes};
pub use lifecycle::{Event, next_state};
pub use liveness::Liveness;
pub use placement::Candidate;
pub use retry::{Attempt, Delivery, RetryPolicy};
pub use schedule::Schedule;
