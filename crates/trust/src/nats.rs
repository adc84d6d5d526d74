//! A nats-server configuration for a bosun fleet: one nkey user per node, each allowed
//! to receive only its own subjects and publish only what it needs.

/// One node's broker account.
#[derive(Debug, Clone)]
pub struct NatsUser {
    /// The node's name.
    pub name: String,
    /// Its nkey public key (`U…`).
    pub nkey: String,
}

/// The configuration (placeholder until the broker permissions land).
pub fn server_config(prefix: &str, users: &[NatsUser]) -> String {
    let _ = prefix;
    let mut out = String::from("authorization {\n  users = [\n");
    for u in users {
        out.push_str(&format!("    {{ nkey: {} }}  # {}\n", u.nkey, u.name));
    }
    out.push_str("  ]\n}\n");
    out
}
