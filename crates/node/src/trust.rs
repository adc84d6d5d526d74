//! This node's trust, from its config: its key (created at first start), its identity
//! (when issued), the issuers it trusts and its local policy.

use bosun_trust::keys::{self, KeyError, KeyKind};
use bosun_trust::{IdentityError, Policy, Trust, TrustSettings};

use crate::config::Config;

/// Why the node's trust settings cannot be used; the node does not start.
#[derive(Debug, thiserror::Error)]
pub enum TrustLoadError {
    /// The key file is unsafe, unreadable or not a node key.
    #[error("node key: {0}")]
    Key(#[from] KeyError),
    /// The identity file cannot be read.
    #[error("identity file {path}: {source}")]
    IdentityFile {
        /// The file.
        path: std::path::PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// A trusted issuer that is not an issuer key.
    #[error("trusted_issuers: {0}")]
    Issuer(KeyError),
    /// The identity or the settings do not fit this node.
    #[error(transparent)]
    Setup(#[from] bosun_trust::frame::TrustSetupError),
    /// A policy rule that cannot be read.
    #[error("policy: {0}")]
    Policy(IdentityError),
}

/// Load (or, at first start, create) this node's key and build its trust.
pub fn load(config: &Config, now: u64) -> Result<Trust, TrustLoadError> {
    let (key, created) = keys::load_or_create(&config.node_key_path(), KeyKind::Member)?;
    if created {
        tracing::info!(
            path = %config.node_key_path().display(),
            public_key = key.public_key(),
            "created this node's key; have an issuer vouch for it: bosun keys issue --name {} --pub {}",
            config.name,
            key.public_key()
        );
    }
    let path = config.identity_path();
    let identity = match std::fs::read_to_string(&path) {
        Ok(text) => Some(text.trim().to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(source) => return Err(TrustLoadError::IdentityFile { path, source }),
    };
    for issuer in &config.trusted_issuers {
        keys::public(issuer, KeyKind::Issuer).map_err(TrustLoadError::Issuer)?;
    }
    Ok(Trust::new(
        TrustSettings {
            name: config.name.to_string(),
            key,
            identity,
            issuers: config
                .trusted_issuers
                .iter()
                .map(|k| k.trim().to_string())
                .collect(),
            insecure_open: config.insecure_open,
            skew_ms: config.clock_skew_secs.saturating_mul(1000),
        },
        now,
    )?)
}

/// The node's local policy.
pub fn policy(config: &Config) -> Result<Policy, TrustLoadError> {
    Policy::parse(&config.policy).map_err(TrustLoadError::Policy)
}
