//! `hello`: this host's inventory. Placeholder until the collector lands in this file.

use serde::{Deserialize, Serialize};

/// What a node tells central about itself.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Inventory {
    /// bosun's version.
    pub version: String,
}

/// Collect this host's inventory.
pub fn inventory(_context: &crate::Context) -> Inventory {
    Inventory {
        version: env!("CARGO_PKG_VERSION").to_string(),
    }
}
