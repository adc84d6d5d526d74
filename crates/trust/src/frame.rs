//! Signed frames: every frame a node sends over the broker is sealed with its key, and
//! every frame it receives is opened (checked) before anything reads it.
//!
//! Layout of a sealed frame, all integers big-endian:
//!
//! ```text
//! "BSN1" | kind u8 | len u16 | credential (len bytes) | at u64 (ms) | signature [64] | body
//! ```
//!
//! `kind` 1: the credential is the sender's identity token (issued by an issuer);
//! kind 2: the bare public key of a node no issuer has vouched for yet, which only that
//! node itself accepts (its own local submissions travel the same path as everything
//! else). The signature covers a domain string, the *context* (the subject a request or
//! note is sent on; for an answer, the signature of the request it answers, so an
//! answer cannot be moved to another request), the header without the signature, and
//! the body, exactly as sent: the body needs no canonical form because its bytes are
//! what is signed and what is read.
//!
//! `kind` 3 is the same frame with a 32-byte HMAC-SHA256 in place of the 64-byte
//! signature, keyed with a key only the two nodes can compute: X25519 of one node's key
//! and the other's public key (both ed25519 keys, taken to their Montgomery form), hashed
//! with both public keys. A node uses it once it has verified a frame from the peer (so
//! it knows the peer's identity); before that it signs. A MAC costs a microsecond where
//! an ed25519 signature and its check cost some 70, on every frame. A receiver that cannot
//! check a MAC (the peer's key changed) answers with a bare NAK (`BSN1`, kind 4), and the
//! sender forgets the pair key and sends again, signed.

use std::collections::VecDeque;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use lru::LruCache;
use nkeys::KeyPair;

use crate::identity::{self, Identity, IdentityError, Role};

const MAGIC: &[u8; 4] = b"BSN1";
const DOMAIN: &[u8] = b"bosun frame v1\0";
const KIND_TOKEN: u8 = 1;
const KIND_KEY: u8 = 2;
const KIND_MAC: u8 = 3;
const KIND_NAK: u8 = 4;
const SIG_LEN: usize = 64;
const MAC_LEN: usize = 32;
/// The answer to a frame whose MAC does not check: "sign it".
pub const NAK: &[u8] = b"BSN1\x04";
/// Most identities (and pair keys) kept in memory; past it the least recently used go
/// first. Central hears from every node of the fleet, so this bounds the fleet a central
/// serves without checking signatures again: a cache that was cleared whole at 4,096
/// made a fleet of 10,000 sign and check nearly every frame again.
const TOKEN_CACHE: usize = 65_536;
/// Most signatures remembered against replays; past it the oldest go first.
const REPLAY_CACHE: usize = 1 << 20;

fn cache_size() -> NonZeroUsize {
    NonZeroUsize::new(TOKEN_CACHE).expect("not zero")
}

/// Who sent a frame, once its seal is checked.
#[derive(Debug, Clone)]
pub enum Peer {
    /// The transport does not seal frames (in process): nothing to check.
    Unchecked,
    /// This node itself.
    Myself,
    /// A node with a valid identity.
    Node(Arc<Identity>),
    /// An unsigned or unissued sender, accepted because the node runs `insecure_open`.
    Open,
}

impl Peer {
    /// The verified name, when there is one.
    pub fn name(&self) -> Option<&str> {
        match self {
            Peer::Node(id) => Some(id.name()),
            _ => None,
        }
    }
}

/// Why a frame is refused before it is read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameRefusal {
    /// No seal at all.
    #[error("untrusted: unsigned frame; every frame must be signed by a node with an identity")]
    Unsigned,
    /// A seal that cannot be read.
    #[error("untrusted: malformed signed frame: {0}")]
    Malformed(String),
    /// This node trusts no issuer, so it can accept nothing from others.
    #[error(
        "untrusted: this node trusts no issuer yet, so it accepts nothing from other nodes \
         (set trusted_issuers, see `bosun keys`)"
    )]
    NoTrust,
    /// Signed with a key no issuer vouched for.
    #[error(
        "untrusted: the sender's key {key} has no identity from an issuer this node trusts \
         (issue one: bosun keys issue)"
    )]
    Unissued {
        /// The sender's public key.
        key: String,
    },
    /// The identity does not verify.
    #[error("untrusted: {0}")]
    Identity(#[from] IdentityError),
    /// An operator's identity on a frame: operators sign messages, nodes send frames.
    #[error("untrusted: {0:?} is an operator identity; only nodes send frames")]
    NotANode(String),
    /// The frame's own signature does not verify.
    #[error("untrusted: invalid signature on a frame from {0:?}")]
    BadSignature(String),
    /// The frame's MAC does not verify (a pair key from before a key change): answered
    /// with a NAK, so the sender signs it again.
    #[error("untrusted: invalid MAC on a frame from {0:?}")]
    BadMac(String),
    /// Too far from this node's clock.
    #[error(
        "untrusted: frame from {name:?} is stamped {off_secs} s away from this node's clock \
         (allowed: {allowed_secs} s, clock_skew_secs); check both clocks"
    )]
    Clock {
        /// The sender.
        name: String,
        /// How far off, in seconds.
        off_secs: i64,
        /// The allowed skew.
        allowed_secs: u64,
    },
    /// Seen before.
    #[error("untrusted: replayed frame from {0:?}")]
    Replayed(String),
}

impl FrameRefusal {
    /// A short label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            FrameRefusal::Unsigned => "unsigned",
            FrameRefusal::Malformed(_) => "malformed",
            FrameRefusal::NoTrust => "no_trust",
            FrameRefusal::Unissued { .. } => "unissued",
            FrameRefusal::Identity(IdentityError::Expired { .. }) => "expired",
            FrameRefusal::Identity(IdentityError::UntrustedIssuer { .. }) => "untrusted_issuer",
            FrameRefusal::Identity(_) => "identity",
            FrameRefusal::NotANode(_) => "role",
            FrameRefusal::BadSignature(_) => "signature",
            FrameRefusal::BadMac(_) => "mac",
            FrameRefusal::Clock { .. } => "clock",
            FrameRefusal::Replayed(_) => "replay",
        }
    }
}

/// How long an operator's signature on a message is good: the default `ttl` of a
/// message (7 days) and a day more, the time its id is remembered against replays.
pub const OPERATOR_SIGNATURE_MS: u64 = 8 * 24 * 3600 * 1000;

/// Why an operator's signature on a message is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OperatorRefusal {
    /// This node trusts no issuer.
    #[error("operator signature: this node trusts no issuer")]
    NoTrust,
    /// The identity does not verify.
    #[error("operator signature: {0}")]
    Identity(FrameRefusal),
    /// A node identity used as an operator's.
    #[error("operator signature: {0:?} is not an operator identity")]
    NotAnOperator(String),
    /// The signature does not verify over the message.
    #[error("operator signature of {0:?} does not match the message")]
    BadSignature(String),
    /// Signed too long ago (or in the future).
    #[error("operator signature of {0:?} is too old or from the future; sign again")]
    Stale(String),
}

/// Sign a message for an operator: the `signature` field's text for `signed` (the bytes
/// the message gives for `at`).
pub fn sign_operator(key: &KeyPair, at: u64, signed: &[u8]) -> String {
    use base64::Engine;
    let sig = key.sign(signed).expect("an operator key has a seed");
    format!(
        "{at}.{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sig)
    )
}

/// What this node trusts and signs with.
pub struct TrustSettings {
    /// This node's name.
    pub name: String,
    /// This node's key pair.
    pub key: KeyPair,
    /// This node's identity token, when an issuer has issued one.
    pub identity: Option<String>,
    /// Issuer public keys trusted.
    pub issuers: Vec<String>,
    /// Accept unsigned and unissued frames too (labs only).
    pub insecure_open: bool,
    /// Largest accepted difference between a frame's stamp and this node's clock, ms.
    pub skew_ms: u64,
}

/// A frame's seal checked: who sent it, where its body starts, and its signature (an
/// answer to it is bound to that).
#[derive(Debug, Clone)]
pub struct Opened {
    /// The sender.
    pub peer: Peer,
    /// Offset of the body in the frame.
    pub body_start: usize,
    /// The frame's signature; all zero for an unsigned frame.
    pub sig: [u8; SIG_LEN],
}

/// Seals and opens frames for one node.
pub struct Trust {
    settings: TrustSettings,
    own_public: String,
    own_identity: Option<Arc<Identity>>,
    /// The X25519 scalar of this node's key.
    scalar: [u8; 32],
    /// The pair key for frames to and from this node itself.
    self_key: [u8; MAC_LEN],
    /// Verified identities by token, with the pair key shared with each.
    identities: Mutex<LruCache<String, Arc<Verified>>>,
    /// Pair keys by peer name, learned from verified frames: used to send.
    peers: Mutex<LruCache<String, [u8; MAC_LEN]>>,
    seen: Mutex<Seen>,
}

/// An identity checked against the issuers, and the pair key shared with its holder.
struct Verified {
    identity: Arc<Identity>,
    pair: Option<[u8; MAC_LEN]>,
}

#[derive(Default)]
struct Seen {
    set: std::collections::HashSet<[u8; 16]>,
    order: VecDeque<(u64, [u8; 16])>,
}

/// Why this node's own settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TrustSetupError {
    /// The node's identity does not verify against its trusted issuers.
    #[error("this node's identity cannot be used: {0}")]
    Identity(#[from] IdentityError),
    /// The identity names another node or key.
    #[error("this node's identity is for {what}; this node is {actual}")]
    NotMine {
        /// What the identity names.
        what: String,
        /// What this node is.
        actual: String,
    },
}

impl Trust {
    /// Trust with these settings. The node's own identity must verify (against the
    /// trusted issuers, when there are any), name this node and hold its key.
    pub fn new(settings: TrustSettings, now: u64) -> Result<Trust, TrustSetupError> {
        let own_public = settings.key.public_key();
        let own_identity = match &settings.identity {
            None => None,
            Some(token) => {
                let claims = identity::read_claims(token)?;
                if claims.name != settings.name || claims.key != own_public {
                    return Err(TrustSetupError::NotMine {
                        what: format!("{} with key {}", claims.name, claims.key),
                        actual: format!("{} with key {own_public}", settings.name),
                    });
                }
                // Checked against its own issuer when this node trusts none (it may
                // still send to nodes that do).
                let issuers = if settings.issuers.is_empty() {
                    vec![claims.iss.clone()]
                } else {
                    settings.issuers.clone()
                };
                Some(Arc::new(identity::verify(token, &issuers, now)?))
            }
        };
        let (_, seed) = nkeys::decode_seed(&settings.key.seed().expect("a node key has a seed"))
            .expect("a seed decodes");
        let signing = ed25519_dalek::SigningKey::from_bytes(&seed);
        let scalar = signing.to_scalar_bytes();
        let own_raw = signing.verifying_key().to_bytes();
        let self_key = pair_key(&scalar, &own_raw, &own_raw).expect("a node's own key is not weak");
        Ok(Trust {
            settings,
            own_public,
            own_identity,
            scalar,
            self_key,
            identities: Mutex::new(LruCache::new(cache_size())),
            peers: Mutex::new(LruCache::new(cache_size())),
            seen: Mutex::new(Seen::default()),
        })
    }

    fn own_raw(&self) -> [u8; 32] {
        nkeys::from_public_key(&self.own_public)
            .map(|(_, k)| k)
            .expect("own key decodes")
    }

    /// Forget the pair key for `peer`: the next frame to it is signed.
    pub fn forget_peer(&self, peer: &str) {
        self.peers.lock().expect("peers").pop(peer);
    }

    fn learn_peer(&self, name: &str, key: [u8; MAC_LEN]) {
        self.peers.lock().expect("peers").put(name.to_string(), key);
    }

    /// This node's public key.
    pub fn public_key(&self) -> &str {
        &self.own_public
    }

    /// This node's identity, when it has one.
    pub fn identity(&self) -> Option<&Arc<Identity>> {
        self.own_identity.as_ref()
    }

    /// True when this node can accept anything from other nodes: it trusts an issuer
    /// or runs open.
    pub fn accepts_others(&self) -> bool {
        !self.settings.issuers.is_empty() || self.settings.insecure_open
    }

    /// True in `insecure_open` mode.
    pub fn insecure_open(&self) -> bool {
        self.settings.insecure_open
    }

    /// The trusted issuers.
    pub fn issuers(&self) -> &[String] {
        &self.settings.issuers
    }

    /// One line for logs and `bosun nodes`.
    pub fn describe(&self) -> String {
        let who = match &self.own_identity {
            Some(id) => format!("identity {} from issuer {}", id.name(), id.claims.iss),
            None => format!("no identity (key {})", self.own_public),
        };
        let accepts = if self.settings.insecure_open {
            "INSECURE: accepts unsigned messages from anyone (insecure_open)".to_string()
        } else if self.settings.issuers.is_empty() {
            "untrusted: trusts no issuer, refuses every message from other nodes".to_string()
        } else {
            format!("trusts {} issuer(s)", self.settings.issuers.len())
        };
        format!("{who}; {accepts}")
    }

    /// Seal `body` for the node `to` (when known) in `context` at `now` (ms): with the
    /// pair key shared with `to` once a frame from it was verified, else signed.
    pub fn seal(&self, context: &[u8], body: &[u8], now: u64, to: Option<&str>) -> Vec<u8> {
        let pair = match (&self.settings.identity, to) {
            (Some(_), Some(to)) if to == self.settings.name => Some(self.self_key),
            (Some(_), Some(to)) => self.peers.lock().expect("peers").get(to).copied(),
            _ => None,
        };
        let (kind, cred) = match (&self.settings.identity, pair) {
            (Some(token), Some(_)) => (KIND_MAC, token.as_bytes()),
            (Some(token), None) => (KIND_TOKEN, token.as_bytes()),
            (None, _) => (KIND_KEY, self.own_public.as_bytes()),
        };
        let mut frame = Vec::with_capacity(4 + 3 + cred.len() + 8 + SIG_LEN + body.len());
        frame.extend_from_slice(MAGIC);
        frame.push(kind);
        frame.extend_from_slice(&(cred.len() as u16).to_be_bytes());
        frame.extend_from_slice(cred);
        frame.extend_from_slice(&now.to_be_bytes());
        match pair {
            Some(key) => {
                let tag = mac(&key, context, &frame, body);
                frame.extend_from_slice(&tag);
            }
            None => {
                let signed = signed_bytes(context, &frame, body);
                let sig = self
                    .settings
                    .key
                    .sign(&signed)
                    .expect("a node key has a seed");
                frame.extend_from_slice(&sig);
            }
        }
        frame.extend_from_slice(body);
        frame
    }

    /// The signature (or MAC, zero-padded) of a frame sealed with a body of `body_len`
    /// bytes, for binding its answer.
    pub fn seal_tag(frame: &[u8], body_len: usize) -> [u8; SIG_LEN] {
        let len = if frame.get(4) == Some(&KIND_MAC) {
            MAC_LEN
        } else {
            SIG_LEN
        };
        let end = frame.len() - body_len;
        let mut tag = [0; SIG_LEN];
        tag[..len].copy_from_slice(&frame[end - len..end]);
        tag
    }

    /// Check a frame that arrived in `context` at `now` (ms). With `fresh`, also refuse
    /// one stamped too far from this node's clock or seen before (requests and notes;
    /// answers are bound to their request instead).
    pub fn open(
        &self,
        context: &[u8],
        frame: &[u8],
        now: u64,
        fresh: bool,
    ) -> Result<Opened, FrameRefusal> {
        if !frame.starts_with(MAGIC) {
            return if self.settings.insecure_open {
                Ok(Opened {
                    peer: Peer::Open,
                    body_start: 0,
                    sig: [0; SIG_LEN],
                })
            } else {
                Err(FrameRefusal::Unsigned)
            };
        }
        let short = || FrameRefusal::Malformed("frame shorter than its header".into());
        let kind = *frame.get(4).ok_or_else(short)?;
        let len =
            u16::from_be_bytes(frame.get(5..7).ok_or_else(short)?.try_into().expect("2")) as usize;
        let cred_end = 7 + len;
        let cred = frame.get(7..cred_end).ok_or_else(short)?;
        let at_end = cred_end + 8;
        let at = u64::from_be_bytes(
            frame
                .get(cred_end..at_end)
                .ok_or_else(short)?
                .try_into()
                .expect("8"),
        );
        let tag_len = if kind == KIND_MAC { MAC_LEN } else { SIG_LEN };
        let sig_end = at_end + tag_len;
        let mut sig = [0u8; SIG_LEN];
        sig[..tag_len].copy_from_slice(frame.get(at_end..sig_end).ok_or_else(short)?);
        let cred = std::str::from_utf8(cred)
            .map_err(|_| FrameRefusal::Malformed("credential is not text".into()))?;
        let signed = || signed_bytes(context, &frame[..at_end], &frame[sig_end..]);
        let (peer, name): (Peer, String) = match kind {
            KIND_KEY => {
                if cred == self.own_public {
                    self.settings
                        .key
                        .verify(&signed(), &sig)
                        .map_err(|_| FrameRefusal::BadSignature(self.settings.name.clone()))?;
                    (Peer::Myself, self.settings.name.clone())
                } else if self.settings.insecure_open {
                    (Peer::Open, cred.to_string())
                } else if self.settings.issuers.is_empty() {
                    return Err(FrameRefusal::NoTrust);
                } else {
                    return Err(FrameRefusal::Unissued {
                        key: cred.chars().take(60).collect(),
                    });
                }
            }
            KIND_TOKEN => {
                if self.settings.identity.as_deref() == Some(cred) {
                    self.settings
                        .key
                        .verify(&signed(), &sig)
                        .map_err(|_| FrameRefusal::BadSignature(self.settings.name.clone()))?;
                    (Peer::Myself, self.settings.name.clone())
                } else if self.settings.issuers.is_empty() {
                    let claims = identity::read_claims(cred)?;
                    if claims.key == self.own_public {
                        self.settings
                            .key
                            .verify(&signed(), &sig)
                            .map_err(|_| FrameRefusal::BadSignature(claims.name.clone()))?;
                        (Peer::Myself, claims.name)
                    } else if self.settings.insecure_open {
                        (Peer::Open, claims.name)
                    } else {
                        return Err(FrameRefusal::NoTrust);
                    }
                } else {
                    let verified = self.verified(cred, now)?;
                    let identity = &verified.identity;
                    if identity.claims.role != Role::Node {
                        return Err(FrameRefusal::NotANode(identity.claims.name.clone()));
                    }
                    identity
                        .key
                        .verify(&signed(), &sig)
                        .map_err(|_| FrameRefusal::BadSignature(identity.claims.name.clone()))?;
                    let name = identity.claims.name.clone();
                    if let Some(pair) = verified.pair {
                        self.learn_peer(&name, pair);
                    }
                    (Peer::Node(identity.clone()), name)
                }
            }
            KIND_MAC => {
                let tag = &sig[..MAC_LEN];
                let check = |key: &[u8; MAC_LEN], name: &str| {
                    let expected = mac(key, context, &frame[..at_end], &frame[sig_end..]);
                    if bool::from(subtle::ConstantTimeEq::ct_eq(&expected[..], tag)) {
                        Ok(())
                    } else {
                        Err(FrameRefusal::BadMac(name.to_string()))
                    }
                };
                if self.settings.identity.as_deref() == Some(cred) {
                    check(&self.self_key, &self.settings.name)?;
                    (Peer::Myself, self.settings.name.clone())
                } else if self.settings.issuers.is_empty() {
                    if self.settings.insecure_open {
                        (Peer::Open, identity::read_claims(cred)?.name)
                    } else {
                        return Err(FrameRefusal::NoTrust);
                    }
                } else {
                    let verified = self.verified(cred, now)?;
                    let identity = &verified.identity;
                    if identity.claims.role != Role::Node {
                        return Err(FrameRefusal::NotANode(identity.claims.name.clone()));
                    }
                    let name = identity.claims.name.clone();
                    let pair = verified
                        .pair
                        .ok_or_else(|| FrameRefusal::BadMac(name.clone()))?;
                    check(&pair, &name)?;
                    self.learn_peer(&name, pair);
                    (Peer::Node(identity.clone()), name)
                }
            }
            other => {
                return Err(FrameRefusal::Malformed(format!(
                    "unknown credential kind {other}"
                )));
            }
        };
        if fresh {
            // Any u64 stamp may arrive: the difference is taken in i128, so a stamp
            // past i64::MAX is refused rather than overflowing.
            let off = i128::from(at) - i128::from(now);
            if off.unsigned_abs() > u128::from(self.settings.skew_ms) {
                let off_secs = (off / 1000).clamp(i128::from(i64::MIN), i128::from(i64::MAX));
                return Err(FrameRefusal::Clock {
                    name,
                    off_secs: off_secs as i64,
                    allowed_secs: self.settings.skew_ms / 1000,
                });
            }
            self.not_seen(&sig, now, &name)?;
        }
        Ok(Opened {
            peer,
            body_start: sig_end,
            sig,
        })
    }

    /// Check an operator's signature on a message: `token` is the operator's identity
    /// (the message's `signer`), `signature` is `<signed at ms>.<base64url signature>`
    /// (its `signature`), `signed` the bytes it covers (made with the signing time).
    /// A signature is good for [`OPERATOR_SIGNATURE_MS`] after it was made.
    pub fn verify_operator(
        &self,
        token: &str,
        signature: &str,
        signed: impl FnOnce(u64) -> Vec<u8>,
        now: u64,
    ) -> Result<Arc<Identity>, OperatorRefusal> {
        use base64::Engine;
        if self.settings.issuers.is_empty() {
            return Err(OperatorRefusal::NoTrust);
        }
        let identity = self
            .identity_of(token, now)
            .map_err(OperatorRefusal::Identity)?;
        if identity.claims.role != Role::Operator {
            return Err(OperatorRefusal::NotAnOperator(identity.claims.name.clone()));
        }
        let bad = || OperatorRefusal::BadSignature(identity.claims.name.clone());
        let (at, sig) = signature.split_once('.').ok_or_else(bad)?;
        let at: u64 = at.parse().map_err(|_| bad())?;
        let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(sig)
            .map_err(|_| bad())?;
        identity.key.verify(&signed(at), &sig).map_err(|_| bad())?;
        if at > now.saturating_add(self.settings.skew_ms)
            || now > at.saturating_add(OPERATOR_SIGNATURE_MS)
        {
            return Err(OperatorRefusal::Stale(identity.claims.name.clone()));
        }
        Ok(identity)
    }

    /// A verified identity for `token`, from the cache when it was checked before (its
    /// expiry is checked again each time).
    fn identity_of(&self, token: &str, now: u64) -> Result<Arc<Identity>, FrameRefusal> {
        Ok(self.verified(token, now)?.identity.clone())
    }

    fn verified(&self, token: &str, now: u64) -> Result<Arc<Verified>, FrameRefusal> {
        if let Some(v) = self.identities.lock().expect("cache").get(token).cloned() {
            if let Some(exp) = v.identity.claims.exp
                && now >= exp
            {
                return Err(IdentityError::Expired {
                    name: v.identity.claims.name.clone(),
                    exp,
                }
                .into());
            }
            return Ok(v);
        }
        let identity = Arc::new(identity::verify(token, &self.settings.issuers, now)?);
        let pair = nkeys::from_public_key(&identity.claims.key)
            .ok()
            .and_then(|(_, peer)| pair_key(&self.scalar, &self.own_raw(), &peer));
        let v = Arc::new(Verified { identity, pair });
        self.identities
            .lock()
            .expect("cache")
            .put(token.to_string(), v.clone());
        Ok(v)
    }

    fn not_seen(&self, sig: &[u8; SIG_LEN], now: u64, name: &str) -> Result<(), FrameRefusal> {
        let key: [u8; 16] = sig[..16].try_into().expect("16");
        let mut seen = self.seen.lock().expect("seen");
        // Forget signatures older than twice the window: a frame that old is refused by
        // its stamp anyway.
        let horizon = now.saturating_sub(2 * self.settings.skew_ms);
        while let Some(&(at, k)) = seen.order.front() {
            if at >= horizon && seen.order.len() < REPLAY_CACHE {
                break;
            }
            seen.order.pop_front();
            seen.set.remove(&k);
        }
        if !seen.set.insert(key) {
            return Err(FrameRefusal::Replayed(name.to_string()));
        }
        seen.order.push_back((now, key));
        Ok(())
    }
}

/// The key two nodes share: X25519 of `scalar` (this node's) and the peer's public key
/// in Montgomery form, hashed with both public keys in a fixed order. `None` for a weak
/// (small-order) peer key, whose shared secret anyone could compute.
fn pair_key(scalar: &[u8; 32], own: &[u8; 32], peer: &[u8; 32]) -> Option<[u8; MAC_LEN]> {
    use sha2::Digest;
    let peer_key = ed25519_dalek::VerifyingKey::from_bytes(peer).ok()?;
    if peer_key.is_weak() {
        return None;
    }
    let shared = peer_key.to_montgomery().mul_clamped(*scalar);
    if shared.as_bytes() == &[0; 32] {
        return None;
    }
    let (first, second) = if own <= peer {
        (own, peer)
    } else {
        (peer, own)
    };
    let mut hash = sha2::Sha256::new();
    hash.update(b"bosun pair key v1\0");
    hash.update(shared.as_bytes());
    hash.update(first);
    hash.update(second);
    Some(hash.finalize().into())
}

/// HMAC-SHA256 over what a signature would cover.
fn mac(key: &[u8; MAC_LEN], context: &[u8], header: &[u8], body: &[u8]) -> [u8; MAC_LEN] {
    use hmac::Mac;
    let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("any key length");
    m.update(DOMAIN);
    m.update(&(context.len() as u32).to_be_bytes());
    m.update(context);
    m.update(header);
    m.update(body);
    m.finalize().into_bytes().into()
}

/// True when `frame` is a NAK: the receiver could not check its MAC and asks for a
/// signature.
pub fn is_nak(frame: &[u8]) -> bool {
    frame.len() == 5 && frame.starts_with(MAGIC) && frame[4] == KIND_NAK
}

fn signed_bytes(context: &[u8], header: &[u8], body: &[u8]) -> Vec<u8> {
    let mut signed =
        Vec::with_capacity(DOMAIN.len() + 4 + context.len() + header.len() + body.len());
    signed.extend_from_slice(DOMAIN);
    signed.extend_from_slice(&(context.len() as u32).to_be_bytes());
    signed.extend_from_slice(context);
    signed.extend_from_slice(header);
    signed.extend_from_slice(body);
    signed
}

/// The body of a sealed frame, unchecked: for tools that only read (a frame that is
/// not sealed is returned whole). Never use it to decide anything.
pub fn unchecked_body(frame: &[u8]) -> &[u8] {
    if !frame.starts_with(MAGIC) || frame.len() < 7 {
        return frame;
    }
    let len = u16::from_be_bytes([frame[5], frame[6]]) as usize;
    let tag = if frame[4] == KIND_MAC {
        MAC_LEN
    } else {
        SIG_LEN
    };
    frame.get(7 + len + 8 + tag..).unwrap_or(frame)
}

/// The signature of a sealed frame, unchecked: an answer to a refused frame is still
/// bound to the request it answers. Zero for a frame that is not sealed.
pub fn unchecked_sig(frame: &[u8]) -> [u8; SIG_LEN] {
    if !frame.starts_with(MAGIC) || frame.len() < 7 {
        return [0; SIG_LEN];
    }
    let start = 7 + u16::from_be_bytes([frame[5], frame[6]]) as usize + 8;
    let len = if frame[4] == KIND_MAC {
        MAC_LEN
    } else {
        SIG_LEN
    };
    let mut tag = [0; SIG_LEN];
    if let Some(t) = frame.get(start..start + len) {
        tag[..len].copy_from_slice(t);
    }
    tag
}

/// The context an answer is sealed in: the signature of the request it answers.
pub fn answer_context(request_sig: &[u8; SIG_LEN]) -> Vec<u8> {
    let mut c = b"answer\0".to_vec();
    c.extend_from_slice(request_sig);
    c
}

#[cfg(test)]
mod tests;
