//! Who may tell a node what to do.
//!
//! # Layout
//! - this file: re-exports.
//! - [`nats`]: a nats-server configuration with one nkey user per node and subject
//!   permissions.

pub mod nats;
