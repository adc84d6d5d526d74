//! The environment variables that hold secrets: the one list of them. Commands a node
//! runs never inherit these (`bosun_methods::process` removes them from every child's
//! environment).

/// The HTTP API token.
pub const HTTP_TOKEN: &str = "BOSUN_HTTP_TOKEN";

/// quartermaster's spelling of the HTTP API token.
pub const QUARTERMASTER_TOKEN: &str = "TOKEN";

/// Variables that hold secrets, by exact name.
pub const SECRET_NAMES: &[&str] = &[HTTP_TOKEN, QUARTERMASTER_TOKEN];

/// Prefixes of variables that hold secrets: NATS clients read credentials, tokens and
/// URLs with passwords from `NATS_*`.
pub const SECRET_PREFIXES: &[&str] = &["NATS_"];

/// True when the variable `name` may hold a secret.
pub fn is_secret(name: &str) -> bool {
    SECRET_NAMES.contains(&name) || SECRET_PREFIXES.iter().any(|p| name.starts_with(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_names() {
        for name in ["BOSUN_HTTP_TOKEN", "TOKEN", "NATS_PASSWORD", "NATS_CREDS"] {
            assert!(is_secret(name), "{name}");
        }
        for name in ["PATH", "HOME", "BOSUN_DATA_DIR", "MY_TOKEN_X"] {
            assert!(!is_secret(name), "{name}");
        }
    }
}
