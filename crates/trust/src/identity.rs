//! Identities: a name, a role, a public key and grants, signed by a fleet issuer.
//!
//! A token is `base64url(claims JSON) "." base64url(issuer's ed25519 signature over the
//! claims bytes)`. The claims bytes are signed as they travel, so no canonical JSON is
//! needed: a verifier checks exactly the bytes it will read.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use nkeys::KeyPair;
use serde::{Deserialize, Serialize};

use crate::keys::{self, KeyKind};

/// The claims format this build writes and reads.
pub const CLAIMS_VERSION: u32 = 1;

/// Longest token accepted, in bytes: checked before anything is decoded.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// What an identity is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A node: signs the frames it sends.
    Node,
    /// A person or program that signs messages it submits through a node.
    Operator,
}

impl Role {
    /// Its name, as written in claims and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Role::Node => "node",
            Role::Operator => "operator",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = IdentityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "node" => Ok(Role::Node),
            "operator" => Ok(Role::Operator),
            other => Err(IdentityError::Malformed(format!(
                "role {other:?}: expected node or operator"
            ))),
        }
    }
}

/// What an issuer says about one key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Claims format.
    pub v: u32,
    /// The node's (or operator's) name: a node's must equal the `fromNode` it sends as.
    pub name: String,
    /// Node or operator.
    pub role: Role,
    /// The holder's public key (`U…`).
    pub key: String,
    /// What the holder may ask others to run: grant patterns (see [`Grant`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<String>,
    /// The issuer's public key (`O…`).
    pub iss: String,
    /// Issued at, milliseconds since the epoch.
    pub iat: u64,
    /// Expires at, milliseconds since the epoch; never when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<u64>,
}

/// Why a token or a grant is not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// Not a token, or claims of the wrong shape.
    #[error("malformed identity: {0}")]
    Malformed(String),
    /// Signed by an issuer this node does not trust.
    #[error("identity of {name:?} is issued by {issuer}, which this node does not trust")]
    UntrustedIssuer {
        /// The holder's name.
        name: String,
        /// The issuer's public key.
        issuer: String,
    },
    /// The issuer's signature does not verify.
    #[error("identity of {0:?} has an invalid issuer signature")]
    BadSignature(String),
    /// Past its expiry.
    #[error("identity of {name:?} expired at {exp} (ms since the epoch); issue a new one")]
    Expired {
        /// The holder's name.
        name: String,
        /// When it expired.
        exp: u64,
    },
}

/// One grant: `METHOD` or `METHOD:ARGV`. `METHOD` is a method name or a pattern with `*`
/// and `?` (`*` alone: every method). `ARGV`, when given, is a pattern the message's
/// arguments (its `data` joined by single spaces; `sh -c <command>` when it asks for a
/// shell) must match: `cliCommand:uptime` allows exactly `uptime`, `cliCommand:ls *`
/// allows `ls` with any arguments but no shell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    method: String,
    argv: Option<String>,
}

impl Grant {
    /// Parse a grant pattern.
    pub fn parse(text: &str) -> Result<Grant, IdentityError> {
        let text = text.trim();
        let (method, argv) = match text.split_once(':') {
            Some((m, a)) => (m, Some(a.to_string())),
            None => (text, None),
        };
        if method.is_empty()
            || !method
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '*' || c == '?' || c == '_')
        {
            return Err(IdentityError::Malformed(format!(
                "grant {text:?}: expected METHOD or METHOD:ARGUMENTS, e.g. `ping`, `cliCommand:uptime`, `*`"
            )));
        }
        Ok(Grant {
            method: method.to_string(),
            argv,
        })
    }

    /// True when this grant covers `method` run with `args`.
    pub fn allows(&self, method: &str, args: &str) -> bool {
        wildmatch::WildMatch::new(&self.method).matches(method)
            && self
                .argv
                .as_deref()
                .is_none_or(|p| wildmatch::WildMatch::new(p).matches(args))
    }
}

impl fmt::Display for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.argv {
            Some(a) => write!(f, "{}:{a}", self.method),
            None => f.write_str(&self.method),
        }
    }
}

/// A verified identity.
#[derive(Debug)]
pub struct Identity {
    /// What the issuer said.
    pub claims: Claims,
    /// The holder's public key, ready to verify with.
    pub key: KeyPair,
    /// The grants, parsed.
    pub grants: Vec<Grant>,
}

impl Identity {
    /// The holder's name.
    pub fn name(&self) -> &str {
        &self.claims.name
    }

    /// True when the grants cover `method` run with `args`.
    pub fn allows(&self, method: &str, args: &str) -> bool {
        self.grants.iter().any(|g| g.allows(method, args))
    }

    /// The grants, for messages: `none` when there are none.
    pub fn grants_text(&self) -> String {
        if self.grants.is_empty() {
            "none".into()
        } else {
            self.claims.allow.join(", ")
        }
    }
}

/// Sign `claims` with `issuer`, giving a token.
pub fn issue(issuer: &KeyPair, claims: &Claims) -> String {
    let bytes = serde_json::to_vec(claims).expect("claims serialise");
    let sig = issuer.sign(&bytes).expect("an issuer key has a seed");
    format!("{}.{}", B64.encode(&bytes), B64.encode(sig))
}

/// Read a token's claims without checking who signed it (for display and tooling).
pub fn read_claims(token: &str) -> Result<Claims, IdentityError> {
    split(token).map(|(claims, _, _)| claims)
}

fn split(token: &str) -> Result<(Claims, Vec<u8>, Vec<u8>), IdentityError> {
    let token = token.trim();
    if token.len() > MAX_TOKEN_BYTES {
        return Err(IdentityError::Malformed(format!(
            "token of {} bytes is longer than {MAX_TOKEN_BYTES}",
            token.len()
        )));
    }
    let (body, sig) = token
        .split_once('.')
        .ok_or_else(|| IdentityError::Malformed("expected CLAIMS.SIGNATURE".into()))?;
    let body = B64
        .decode(body)
        .map_err(|e| IdentityError::Malformed(format!("claims: {e}")))?;
    let sig = B64
        .decode(sig)
        .map_err(|e| IdentityError::Malformed(format!("signature: {e}")))?;
    let claims: Claims =
        serde_json::from_slice(&body).map_err(|e| IdentityError::Malformed(e.to_string()))?;
    if claims.v != CLAIMS_VERSION {
        return Err(IdentityError::Malformed(format!(
            "claims version {}; this node reads version {CLAIMS_VERSION}",
            claims.v
        )));
    }
    Ok((claims, body, sig))
}

/// Check a token: issued by one of `trusted` (issuer public keys), validly signed,
/// unexpired at `now` (ms), with well-formed key and grants.
pub fn verify(token: &str, trusted: &[String], now: u64) -> Result<Identity, IdentityError> {
    let (claims, body, sig) = split(token)?;
    if !trusted.iter().any(|t| t == &claims.iss) {
        return Err(IdentityError::UntrustedIssuer {
            name: claims.name,
            issuer: claims.iss,
        });
    }
    let issuer = keys::public(&claims.iss, KeyKind::Issuer)
        .map_err(|e| IdentityError::Malformed(e.to_string()))?;
    issuer
        .verify(&body, &sig)
        .map_err(|_| IdentityError::BadSignature(claims.name.clone()))?;
    if let Some(exp) = claims.exp
        && now >= exp
    {
        return Err(IdentityError::Expired {
            name: claims.name,
            exp,
        });
    }
    let key = keys::public(&claims.key, KeyKind::Member)
        .map_err(|e| IdentityError::Malformed(e.to_string()))?;
    let grants = claims
        .allow
        .iter()
        .map(|g| Grant::parse(g))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Identity {
        claims,
        key,
        grants,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(issuer: &KeyPair, member: &KeyPair, allow: &[&str], exp: Option<u64>) -> Claims {
        Claims {
            v: CLAIMS_VERSION,
            name: "ship1".into(),
            role: Role::Node,
            key: member.public_key(),
            allow: allow.iter().map(|s| s.to_string()).collect(),
            iss: issuer.public_key(),
            iat: 1,
            exp,
        }
    }

    #[test]
    fn tokens_verify_only_under_a_trusted_unexpired_issuer() {
        let issuer = KeyKind::Issuer.generate();
        let other = KeyKind::Issuer.generate();
        let member = KeyKind::Member.generate();
        let token = issue(&issuer, &claims(&issuer, &member, &["ping"], Some(1000)));
        let trusted = vec![issuer.public_key()];
        let id = verify(&token, &trusted, 999).unwrap();
        assert_eq!(id.name(), "ship1");
        assert_eq!(id.key.public_key(), member.public_key());
        assert!(matches!(
            verify(&token, &trusted, 1000),
            Err(IdentityError::Expired { .. })
        ));
        assert!(matches!(
            verify(&token, &[other.public_key()], 1),
            Err(IdentityError::UntrustedIssuer { .. })
        ));
        // Claims signed by another issuer but naming the trusted one.
        let forged = issue(&other, &claims(&issuer, &member, &["*"], None));
        assert!(matches!(
            verify(&forged, &trusted, 1),
            Err(IdentityError::BadSignature(_))
        ));
        // Claims changed after signing.
        let (body, sig) = token.split_once('.').unwrap();
        let mut c: Claims = serde_json::from_slice(&B64.decode(body).unwrap()).unwrap();
        c.allow = vec!["*".into()];
        let tampered = format!("{}.{sig}", B64.encode(serde_json::to_vec(&c).unwrap()));
        assert!(matches!(
            verify(&tampered, &trusted, 1),
            Err(IdentityError::BadSignature(_))
        ));
        for bad in ["", "x", "a.b", "..", &"A".repeat(MAX_TOKEN_BYTES + 1)] {
            assert!(matches!(
                verify(bad, &trusted, 1),
                Err(IdentityError::Malformed(_))
            ));
        }
    }

    #[test]
    fn grants_match_methods_and_arguments() {
        let g = |s: &str| Grant::parse(s).unwrap();
        assert!(g("*").allows("cliCommand", "rm -rf /"));
        assert!(g("ping").allows("ping", ""));
        assert!(!g("ping").allows("cliCommand", "ping"));
        assert!(g("cliCommand:uptime").allows("cliCommand", "uptime"));
        assert!(!g("cliCommand:uptime").allows("cliCommand", "uptime; sh"));
        assert!(!g("cliCommand:uptime").allows("cliCommand", "sh -c uptime"));
        assert!(g("cliCommand:ls *").allows("cliCommand", "ls -l /tmp"));
        assert!(!g("cliCommand:ls *").allows("cliCommand", "sh -c ls; id"));
        assert!(g("cliCommand*:uptime").allows("cliCommandCont", "uptime"));
        assert!(Grant::parse("").is_err());
        assert!(Grant::parse("cli command").is_err());
        assert_eq!(g("cliCommand:ls *").to_string(), "cliCommand:ls *");
    }
}
