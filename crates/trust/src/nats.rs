//! A nats-server configuration for a bosun fleet: one nkey user per node, each allowed
//! to receive only its own subjects and publish only what it needs.
