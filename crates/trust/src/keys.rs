//! Key files: a node's own key pair (an nkeys user seed, `SU…`, public key `U…`) and a
//! fleet issuer's key pair (an nkeys operator seed, `SO…`, public key `O…`). Both are
//! ed25519; the nkeys encoding gives typed, checksummed text, and a node's key doubles
//! as its NATS nkey.

use std::path::{Path, PathBuf};

use nkeys::{KeyPair, KeyPairType};

use crate::secret_file::{self, SecretFileError};

/// Why a key file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The file is unsafe or unreadable.
    #[error(transparent)]
    File(#[from] SecretFileError),
    /// The file does not hold a seed of the expected kind.
    #[error("{path} does not hold {expected} seed: {reason}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What kind of seed was expected.
        expected: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A public key that is not one.
    #[error("{key:?} is not {expected} public key: {reason}")]
    BadPublic {
        /// The text given.
        key: String,
        /// What kind of key was expected.
        expected: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// The kind of a key: which nkeys prefix it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// A node's or an operator's key (`U…`).
    Member,
    /// A fleet issuer's key (`O…`).
    Issuer,
}

impl KeyKind {
    fn nkeys(self) -> KeyPairType {
        match self {
            KeyKind::Member => KeyPairType::User,
            KeyKind::Issuer => KeyPairType::Operator,
        }
    }

    fn words(self) -> &'static str {
        match self {
            KeyKind::Member => "a node or operator (nkeys user, SU…/U…)",
            KeyKind::Issuer => "an issuer (nkeys operator, SO…/O…)",
        }
    }

    /// A new random key pair of this kind.
    pub fn generate(self) -> KeyPair {
        KeyPair::new(self.nkeys())
    }
}

/// Read a key pair of `kind` from `path`.
pub fn load(path: &Path, kind: KeyKind) -> Result<KeyPair, KeyError> {
    let seed = secret_file::read_secret(path)?;
    let malformed = |reason: String| KeyError::Malformed {
        path: path.to_path_buf(),
        expected: kind.words(),
        reason,
    };
    let pair = KeyPair::from_seed(&seed).map_err(|e| malformed(e.to_string()))?;
    if pair.key_pair_type() != kind.nkeys() {
        return Err(malformed(format!(
            "it is a {:?} seed",
            pair.key_pair_type()
        )));
    }
    Ok(pair)
}

/// Read the key pair at `path`, creating it (0600) first if there is none. Returns the
/// pair and whether it was created.
pub fn load_or_create(path: &Path, kind: KeyKind) -> Result<(KeyPair, bool), KeyError> {
    if path.exists() {
        return Ok((load(path, kind)?, false));
    }
    let pair = kind.generate();
    let seed = pair.seed().expect("a generated pair has a seed");
    secret_file::write_secret(path, &seed)?;
    Ok((pair, true))
}

/// Parse a public key of `kind`.
pub fn public(key: &str, kind: KeyKind) -> Result<KeyPair, KeyError> {
    let bad = |reason: String| KeyError::BadPublic {
        key: key.to_string(),
        expected: kind.words(),
        reason,
    };
    let pair = KeyPair::from_public_key(key.trim()).map_err(|e| bad(e.to_string()))?;
    if pair.key_pair_type() != kind.nkeys() {
        return Err(bad(format!("it is a {:?} key", pair.key_pair_type())));
    }
    Ok(pair)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_created_once_and_typed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.key");
        let (a, created) = load_or_create(&path, KeyKind::Member).unwrap();
        assert!(created);
        let (b, created) = load_or_create(&path, KeyKind::Member).unwrap();
        assert!(!created);
        assert_eq!(a.public_key(), b.public_key());
        assert!(a.public_key().starts_with('U'));
        let err = load(&path, KeyKind::Issuer).unwrap_err().to_string();
        assert!(err.contains("issuer"), "{err}");
        assert!(public(&a.public_key(), KeyKind::Issuer).is_err());
        assert!(public(&a.public_key(), KeyKind::Member).is_ok());
        assert!(public("Unope", KeyKind::Member).is_err());
    }
}
