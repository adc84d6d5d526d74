//! The running bosun node: it wires the store, a transport and the method handlers into
//! the delivery loops, and serves the local socket.
//!
//! # Layout
//! - [`config`]: the TOML config, env and flag overrides.
//! - [`node`]: [`Node`]: start-up and recovery, submit, status, wait, shutdown.
//! - `receiver`: every arrival on the node's subjects: validate, record, ACK.
//! - `outbox`: the sender loop: send, resend with backoff, give up.
//! - `executor`: the inbox loop: start in order, run the handler, stream chunks, queue
//!   the reply.
//! - [`fleet`]: the fleet registry from hellos, the hello loop, pruning.
//! - `sinks`: reply sinks: results and chunks written to files or the console.
//! - [`control`]: the unix socket `bosun.sock`: steward message arrays and CLI requests.
//! - [`client`]: the CLI's side of that socket.
//! - [`inputs`]: YAML message files, steward's TCP listener, read folder and startup folder.
//! - [`audit`]: the audit log: every message as JSON lines, rotated by size.
//! - [`metrics`]: Prometheus metrics and their HTTP endpoint.
//! - [`events`]: internal events that write a log line and move a metric together.
//!
//! # Implementation note: concurrency
//! Three long-lived tasks own their state and talk over channels: the receiver (one
//! task per arrival, so that arrivals share group commits), the outbox loop (owns the
//! send lanes and retry timers) and the executor loop (owns the run lanes). Only the
//! store's writer thread writes the database. A broadcast of finished ids tells waiters
//! that a sent message reached a final state.

pub mod audit;
pub mod config;
mod errorlog;
pub mod events;
mod executor;
pub mod fleet;
pub mod metrics;
pub mod node;
mod outbox;
mod receiver;
mod sinks;

pub use config::{Config, ConfigError, Overrides};
pub use fleet::{FleetNode, Liveness};
pub use node::{Node, NodeError, StatusReport, SubmitError, Submitted};
