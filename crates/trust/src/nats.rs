//! A nats-server configuration for a bosun fleet: one nkey user per node, each allowed
//! to receive only its own subjects and publish only what bosun needs.
//!
//! What a node does on the broker, and so all it is allowed:
//! - subscribe `<prefix>.<self>.>`: requests, status notes and queries addressed to it;
//! - subscribe `_INBOX.<self>.>`: the answers to its own requests (its NATS client uses
//!   [`inbox_prefix`], so no node can read another's answers);
//! - subscribe `<prefix>.~fleet.hello`: the hellos every node announces (signed, like
//!   every frame), from which each node keeps its own view of the fleet;
//! - publish `<prefix>.*.*`: requests (`<prefix>.<node>.<method>`), batches of them
//!   (`<prefix>.<node>._batch`), status notes (`<prefix>.<sender>._status`), queries
//!   (`<prefix>.<node>._query`) to any node, and
//!   its announced hellos (`<prefix>.~fleet.hello`);
//! - publish an answer to a request it received, once (`allow_responses`), and nothing
//!   else on `_INBOX`.
//!
//! Operators sign messages that nodes carry; they never connect, so they get no user.
//! The broker's permissions are defence in depth: every frame is signed and checked by
//! the nodes whatever the broker allows.

use std::collections::HashSet;
use std::fmt::Write as _;

use crate::identity::{Claims, Role};
use crate::keys::{self, KeyKind};

/// The first subject token of every node's reply inbox.
pub const INBOX_ROOT: &str = "_INBOX";

/// One node's broker account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsUser {
    /// The node's name.
    pub name: String,
    /// Its nkey public key (`U…`): the public key of its `node.key`.
    pub nkey: String,
}

impl NatsUser {
    /// The broker user of an issued identity: `None` for an operator, which never
    /// connects.
    pub fn for_identity(claims: &Claims) -> Option<NatsUser> {
        match claims.role {
            Role::Node => Some(NatsUser {
                name: claims.name.clone(),
                nkey: claims.key.clone(),
            }),
            Role::Operator => None,
        }
    }
}

/// Why no configuration can be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NatsConfigError {
    /// The subject prefix cannot be used.
    #[error(
        "subject prefix {prefix:?} {reason}; use dot-separated tokens of letters, digits, \
         '_' and '-' (the nodes' subject_prefix, bosun by default)"
    )]
    Prefix {
        /// The prefix given.
        prefix: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A node name is not one subject token.
    #[error(
        "node name {name:?} cannot be a NATS subject token; node names are 1 to 64 letters, \
         digits, '_' or '-'"
    )]
    Name {
        /// The name given.
        name: String,
    },
    /// A node's key is not a user public key.
    #[error("node {name}: {source}")]
    Key {
        /// The node.
        name: String,
        /// What is wrong with its key.
        source: keys::KeyError,
    },
    /// Two users share a name or a key.
    #[error("{what} {value:?} appears twice; every node needs a name and a key of its own")]
    Duplicate {
        /// `node name` or `key`.
        what: &'static str,
        /// The value seen twice.
        value: String,
    },
    /// No node to write a user for.
    #[error("no node users: issue node identities first (bosun keys issue --name NODE …)")]
    NoUsers,
}

/// The prefix of a node's NATS reply inbox, `_INBOX.<node>`: the answers to its
/// requests arrive below it, where only that node may subscribe.
pub fn inbox_prefix(node: &str) -> String {
    format!("{INBOX_ROOT}.{node}")
}

/// What `node` may subscribe to: its own subjects, its reply inbox, and the fleet
/// subject where every node announces its hellos (`<prefix>.~fleet.hello`).
pub fn subscribe_subjects(prefix: &str, node: &str) -> Vec<String> {
    vec![
        format!("{prefix}.{node}.>"),
        format!("{}.>", inbox_prefix(node)),
        format!("{prefix}.~fleet.hello"),
    ]
}

/// What every node may publish (besides answers to requests it received).
pub fn publish_subjects(prefix: &str) -> Vec<String> {
    vec![format!("{prefix}.*.*")]
}

fn is_token(text: &str, max: usize) -> bool {
    !text.is_empty()
        && text.len() <= max
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn check_prefix(prefix: &str) -> Result<(), NatsConfigError> {
    let refuse = |reason| NatsConfigError::Prefix {
        prefix: prefix.to_string(),
        reason,
    };
    if prefix.is_empty() {
        return Err(refuse("is empty"));
    }
    if !prefix.split('.').all(|token| is_token(token, 256)) {
        return Err(refuse("is not a plain subject prefix"));
    }
    if prefix.split('.').next() == Some(INBOX_ROOT) {
        return Err(refuse("would mix with the reply inboxes"));
    }
    Ok(())
}

fn check_user(user: &NatsUser) -> Result<(), NatsConfigError> {
    if !is_token(&user.name, 64) {
        return Err(NatsConfigError::Name {
            name: user.name.clone(),
        });
    }
    keys::public(&user.nkey, KeyKind::Member).map_err(|source| NatsConfigError::Key {
        name: user.name.clone(),
        source,
    })?;
    Ok(())
}

fn quoted(list: &[String]) -> String {
    let items: Vec<String> = list.iter().map(|s| format!("\"{s}\"")).collect();
    format!("[{}]", items.join(", "))
}

fn header(prefix: &str) -> String {
    format!(
        "# nats-server configuration for a bosun fleet (subject prefix \"{prefix}\").\n\
         # One nkey user per node. A node may receive only what is addressed to it\n\
         # ({prefix}.<node>.>) and the answers to its own requests ({INBOX_ROOT}.<node>.>), and may\n\
         # publish requests, status notes and queries to any node ({prefix}.*.*) and one\n\
         # answer to each request it received. Clients without a listed key cannot connect.\n\
         # Include it from the server's configuration and reload: nats-server --signal reload\n"
    )
}

fn user_block(out: &mut String, prefix: &str, user: &NatsUser) {
    let _ = write!(
        out,
        "    # {name}\n    {{\n      nkey: \"{nkey}\"\n      permissions: {{\n        \
         publish: {{ allow: {publish} }}\n        subscribe: {{ allow: {subscribe} }}\n        \
         allow_responses: true\n      }}\n    }}\n",
        name = user.name,
        nkey = user.nkey.trim(),
        publish = quoted(&publish_subjects(prefix)),
        subscribe = quoted(&subscribe_subjects(prefix, &user.name)),
    );
}

/// The configuration: an `authorization { users = [...] }` block with one nkey user per
/// node, or why it cannot be made (a bad prefix, name or key, a duplicate, no users).
pub fn try_server_config(prefix: &str, users: &[NatsUser]) -> Result<String, NatsConfigError> {
    check_prefix(prefix)?;
    if users.is_empty() {
        return Err(NatsConfigError::NoUsers);
    }
    let mut names = HashSet::new();
    let mut keys = HashSet::new();
    for user in users {
        check_user(user)?;
        if !names.insert(user.name.as_str()) {
            return Err(NatsConfigError::Duplicate {
                what: "node name",
                value: user.name.clone(),
            });
        }
        if !keys.insert(user.nkey.trim()) {
            return Err(NatsConfigError::Duplicate {
                what: "key",
                value: user.nkey.trim().to_string(),
            });
        }
    }
    let mut out = header(prefix);
    out.push_str("authorization {\n  users = [\n");
    for user in users {
        user_block(&mut out, prefix, user);
    }
    out.push_str("  ]\n}\n");
    Ok(out)
}

/// The configuration, as [`try_server_config`]; a user that cannot be written (a bad
/// name or key, a name or key seen before) is left out with a `# left out:` comment
/// saying why, and a bad prefix gives a configuration with no users and a comment, which
/// nats-server loads and which lets nobody in.
pub fn server_config(prefix: &str, users: &[NatsUser]) -> String {
    if let Err(e) = check_prefix(prefix) {
        return format!("# left out every node: {e}\nauthorization {{\n  users = []\n}}\n");
    }
    let mut out = header(prefix);
    out.push_str("authorization {\n  users = [\n");
    let mut names = HashSet::new();
    let mut keys = HashSet::new();
    for user in users {
        let refusal = match check_user(user) {
            Err(e) => Some(e),
            Ok(()) if !names.insert(user.name.as_str()) => Some(NatsConfigError::Duplicate {
                what: "node name",
                value: user.name.clone(),
            }),
            Ok(()) if !keys.insert(user.nkey.trim()) => Some(NatsConfigError::Duplicate {
                what: "key",
                value: user.nkey.trim().to_string(),
            }),
            Ok(()) => None,
        };
        match refusal {
            Some(e) => {
                let reason = e.to_string().replace('\n', " ");
                let _ = writeln!(out, "    # left out: {reason}");
            }
            None => user_block(&mut out, prefix, user),
        }
    }
    out.push_str("  ]\n}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str) -> NatsUser {
        NatsUser {
            name: name.into(),
            nkey: KeyKind::Member.generate().public_key(),
        }
    }

    #[test]
    fn each_node_subscribes_to_its_own_subjects_and_inbox_only() {
        let ship1 = user("ship1");
        let ship2 = user("ship2");
        let text = try_server_config("bosun", &[ship1.clone(), ship2.clone()]).unwrap();
        let block = |u: &NatsUser| {
            let at = text.find(&u.nkey).unwrap();
            text[at..]
                .split("allow_responses")
                .next()
                .unwrap()
                .to_string()
        };
        let one = block(&ship1);
        assert!(
            one.contains(
                r#"subscribe: { allow: ["bosun.ship1.>", "_INBOX.ship1.>", "bosun.~fleet.hello"] }"#
            ),
            "{one}"
        );
        assert!(
            one.contains(r#"publish: { allow: ["bosun.*.*"] }"#),
            "{one}"
        );
        assert!(!one.contains("ship2"), "{one}");
        assert!(block(&ship2).contains(r#""bosun.ship2.>", "_INBOX.ship2.>""#));
        assert_eq!(text.matches("allow_responses: true").count(), 2);
        assert!(!text.contains("_INBOX.>"), "nobody reads every inbox");
        assert_eq!(inbox_prefix("ship1"), "_INBOX.ship1");
        let text = try_server_config("fleet.a", &[ship1]).unwrap();
        assert!(text.contains(r#"["fleet.a.*.*"]"#), "{text}");
    }

    #[test]
    fn operators_get_no_broker_user() {
        let claims = |role| Claims {
            v: crate::identity::CLAIMS_VERSION,
            name: "alice".into(),
            role,
            key: KeyKind::Member.generate().public_key(),
            allow: vec![],
            iss: KeyKind::Issuer.generate().public_key(),
            iat: 0,
            exp: None,
        };
        assert_eq!(NatsUser::for_identity(&claims(Role::Operator)), None);
        let node = NatsUser::for_identity(&claims(Role::Node)).unwrap();
        assert_eq!(node.name, "alice");
    }

    #[test]
    fn bad_prefixes_names_keys_and_duplicates_are_refused() {
        let ok = user("ship1");
        for prefix in ["", "a..b", "a.*", "a.>", "_INBOX", "a b"] {
            let err = try_server_config(prefix, std::slice::from_ref(&ok)).unwrap_err();
            assert!(
                matches!(err, NatsConfigError::Prefix { .. }),
                "{prefix:?}: {err}"
            );
            let text = server_config(prefix, std::slice::from_ref(&ok));
            assert!(text.contains("users = []"), "{text}");
            assert!(!text.contains(&ok.nkey), "{text}");
        }
        let dotted = NatsUser {
            name: "a.b".into(),
            ..user("x")
        };
        let err = try_server_config("bosun", std::slice::from_ref(&dotted)).unwrap_err();
        assert!(err.to_string().contains("\"a.b\""), "{err}");
        let issuer_key = NatsUser {
            name: "ship2".into(),
            nkey: KeyKind::Issuer.generate().public_key(),
        };
        let err = try_server_config("bosun", std::slice::from_ref(&issuer_key)).unwrap_err();
        assert!(err.to_string().contains("ship2"), "{err}");
        let twin = NatsUser {
            name: "ship3".into(),
            nkey: ok.nkey.clone(),
        };
        let err = try_server_config("bosun", &[ok.clone(), twin.clone()]).unwrap_err();
        assert!(err.to_string().contains("key"), "{err}");
        let err = try_server_config("bosun", &[ok.clone(), user("ship1")]).unwrap_err();
        assert!(err.to_string().contains("node name"), "{err}");
        assert!(matches!(
            try_server_config("bosun", &[]),
            Err(NatsConfigError::NoUsers)
        ));
        // The lenient form keeps the good user and says why each other one is missing.
        let text = server_config("bosun", &[ok.clone(), dotted, issuer_key, twin]);
        assert_eq!(text.matches("nkey:").count(), 1, "{text}");
        assert_eq!(text.matches("# left out:").count(), 3, "{text}");
        assert!(text.contains(&ok.nkey));
    }
}
