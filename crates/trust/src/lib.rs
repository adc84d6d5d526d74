//! Who may tell a node what to do.
//!
//! # Layout
//! - this file: re-exports.
//! - [`secret_file`]: reading and writing files that hold secrets.
//! - [`nats`]: a nats-server configuration with one nkey user per node and subject
//!   permissions.

pub mod nats;
pub mod secret_file;
