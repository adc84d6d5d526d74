//! Fault experiments with leases: `bosun chaos`.
//!
//! An operator writes a [`scenario`]; the controller (`bosun chaos run`) turns it into a
//! [`plan`] over what the fleet holds, choosing targets from the scenario's seed, and
//! sends each node its own events ahead of time as ordinary bosun messages
//! (`chaosSchedule`). From then on each node is on its own: its [`engine::Engine`] keeps
//! the events in its lease [`book`], fires each on its own clock and undoes each
//! [`fault`] when its lease ends, whether or not the controller still exists. Every
//! applied and undone fault and every mark goes into the node's event stream, and
//! `bosun chaos report` gathers the nodes' books and Docker's record of their
//! containers into one [`report`].
//!
//! # Layout
//! - [`scenario`]: the file format, parsed and checked key by key.
//! - [`plan`]: scenario + fleet + seed → the exact timeline (pure).
//! - [`book`]: the node's durable lease book.
//! - [`fault`]: applying and undoing one fault with the host's tools.
//! - [`engine`]: timers, abort, listing.
//! - [`report`]: the gathered timeline as JSON, a table and an SVG chart.
//!
//! # Leases
//! No fault outlives its lease: the node undoes it at the lease end. A node restarted
//! mid-lease finds it in its book and undoes it at the end, or at once when the end has
//! passed. Network rules also carry their lease end as an `iptables` time match, and
//! stress processes end by themselves, so those two stop even while their node is down.

pub mod book;
pub mod engine;
pub mod fault;
pub mod plan;
pub mod report;
pub mod scenario;

use std::path::PathBuf;

pub use engine::{Engine, Listing, Record, Scheduled, Sink};
pub use fault::{Faults, WorkloadError, Workloads};
pub use plan::{Fleet, Plan};
pub use report::Report;
pub use scenario::Scenario;

/// Why an experiment could not be read, planned or kept.
#[derive(Debug, thiserror::Error)]
pub enum ChaosError {
    /// The scenario file is wrong at `at`.
    #[error("scenario, {at}: {reason}")]
    Scenario {
        /// Where in the file.
        at: String,
        /// What is wrong.
        reason: String,
    },
    /// An event has nothing to act on.
    #[error("scenario, {at}: {reason}")]
    NoTarget {
        /// Which event.
        at: String,
        /// What was looked for.
        reason: String,
    },
    /// The node refused a plan.
    #[error("{reason}")]
    Refused {
        /// Why.
        reason: String,
    },
    /// The lease book cannot be read.
    #[error("lease book {}: {reason}", path.display())]
    Book {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}
