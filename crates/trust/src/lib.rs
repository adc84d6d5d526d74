//! Who may tell a node what to do.
//!
//! # Layout
//! - [`keys`]: key files (a node's own key, an issuer's key), nkeys-encoded ed25519.
//! - [`identity`]: issuer-signed identities (name, role, key, grants, expiry) and grants.
//! - [`frame`]: sealing every frame a node sends and checking every frame it receives.
//! - [`policy`]: a node's local policy, which must allow a method as well as the grants.
//! - [`secret_file`]: reading and writing files that hold secrets.
//! - [`secret_env`]: the environment variables that hold secrets.
//! - [`nats`]: a nats-server configuration with one nkey user per node and subject
//!   permissions.

pub mod frame;
pub mod identity;
pub mod keys;
pub mod nats;
pub mod policy;
pub mod secret_env;
pub mod secret_file;

pub use frame::{
    FrameRefusal, Opened, OperatorRefusal, Peer, Trust, TrustSettings, answer_context,
    sign_operator,
};
pub use identity::{Claims, Grant, Identity, IdentityError, Role};
pub use policy::Policy;
