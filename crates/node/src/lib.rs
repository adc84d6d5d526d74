//! The bosun delivery engine: it wires the store, a transport and the method handlers
//! into the delivery loops. The ways in (socket, TCP, folders, HTTP) live in
//! `bosun-ingress`, the event stream in `bosun-capture`; both use [`Node`].
//!
//! # Layout
//! - [`config`]: the TOML config, env and flag overrides.
//! - [`node`]: [`Node`], the facade: start-up and recovery, submit, status, wait,
//!   shutdown; the gauges and the scheduler task (schedules kept in the store).
//! - `submit`: the `Submitter`, the one way messages enter the outbox.
//! - `handles`: the narrow handles the tasks share: outbox handle, finished ids, running
//!   count, fleet view, error reporter.
//! - `receiver`: every arrival on the node's subjects: validate, record, ACK.
//! - `outbox`: the sender loop: send, resend with backoff, give up.
//! - `executor`: the inbox loop: start in order, run the handler, stream chunks, queue
//!   the reply.
//! - [`fleet`]: the fleet registry from hellos, the hello loop, capture shipping,
//!   pruning.
//! - `chaos`: the lease engine of fault experiments (`bosun-chaos`), started with the
//!   node, its records in the event stream, and the `chaos…` methods.
//! - `workloads`: the supervised workloads (`bosun-supervise`): their events in the
//!   event stream and, when `FATAL`, at central; the `workload…` methods.
//! - `sinks`: reply sinks: results and chunks written to files or the console.
//! - `errorlog`: the error log, local and forwarded to central.
//! - [`audit`]: the audit log: every message as JSON lines, rotated by size.
//! - [`files`]: the modes of the data dir (0700) and the files in it (0600).
//! - [`metrics`]: Prometheus metrics.
//! - [`events`]: internal events that write a log line and move a metric together.
//!
//! # Implementation note: concurrency
//! Three long-lived tasks own their state and talk over channels: the receiver (one
//! task per arrival, so that arrivals share group commits), the outbox loop (owns the
//! send lanes and retry timers) and the executor loop (owns the run lanes). Each is
//! given only the handles it uses. Only the store's writer thread writes the database.
//! A broadcast of finished ids tells waiters that a sent message reached a final state.
//!
//! # Implementation note: lifecycle
//! The node owns one `CancellationToken` and one `TaskTracker`. Every task it starts
//! (loops, handlers, capture, and the listeners the caller spawns on
//! [`Node::tracker`]) runs on the tracker and stops on the token; [`Node::shutdown`]
//! cancels, waits for the tracker within a bounded grace, then closes the store.

pub mod audit;
mod chaos;
pub mod config;
mod disk;
mod errorlog;
pub mod events;
mod executor;
pub mod files;
pub mod fleet;
mod handles;
pub mod metrics;
pub mod node;
mod outbox;
mod receiver;
mod sinks;
mod submit;
pub mod trust;
mod workloads;

pub use bosun_store::{Depths, HistoryEntry, InboxRecord, SentRecord};
pub use config::{Config, ConfigError, Layer, Override, Sources, ValueError};
pub use fleet::{FleetNode, Liveness};
pub use node::{Node, NodeError, StatusReport, SubmitError, Submitted};
pub use outbox::Cancelled;
