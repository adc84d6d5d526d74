//! Identities and sealed frames: the tokens issuers sign, the grant and policy rules
//! they carry, and the seal every frame between nodes travels in.
//!
//! Keys are fixed (made from constant bytes), so the seeds hold tokens and frames that
//! verify, and the fuzzer mutates them from there; signatures it cannot forge.

use bosun_proto::wire;
use bosun_trust::frame::{unchecked_body, unchecked_sig};
use bosun_trust::identity::{self, CLAIMS_VERSION};
use bosun_trust::{
    Claims, FrameRefusal, Grant, Identity, Peer, Policy, Role, Trust, TrustSettings, answer_context,
};
use nkeys::{KeyPair, KeyPairType};

/// The clock of every check, in ms.
pub const NOW: u64 = 1_800_000_000_000;
const SKEW_MS: u64 = 30_000;
const MAGIC: &[u8] = b"BSN1";

fn issuer() -> KeyPair {
    KeyPair::new_from_raw(KeyPairType::Operator, [7; 32]).expect("a key from 32 bytes")
}

fn stranger_issuer() -> KeyPair {
    KeyPair::new_from_raw(KeyPairType::Operator, [8; 32]).expect("a key from 32 bytes")
}

fn member(n: u8) -> KeyPair {
    KeyPair::new_from_raw(KeyPairType::User, [n; 32]).expect("a key from 32 bytes")
}

fn token(issuer: &KeyPair, name: &str, role: Role, key: u8, allow: &[&str]) -> String {
    let claims = Claims {
        v: CLAIMS_VERSION,
        name: name.into(),
        role,
        key: member(key).public_key(),
        allow: allow.iter().map(|a| a.to_string()).collect(),
        iss: issuer.public_key(),
        iat: NOW - 1000,
        exp: None,
    };
    identity::issue(issuer, &claims)
}

fn settings(name: &str, key: u8, identity: Option<String>, open: bool) -> TrustSettings {
    let issuers = if identity.is_some() {
        vec![issuer().public_key()]
    } else {
        vec![]
    };
    TrustSettings {
        name: name.into(),
        key: member(key),
        identity,
        issuers,
        insecure_open: open,
        skew_ms: SKEW_MS,
    }
}

/// The receiving nodes: one with an identity that trusts the issuer, one open lab node,
/// one that trusts nobody.
struct Nodes {
    issued: Trust,
    open: Trust,
    closed: Trust,
}

fn nodes() -> Nodes {
    let ship1 = token(&issuer(), "ship1", Role::Node, 1, &["*"]);
    let trust = |s| Trust::new(s, NOW).expect("fixed trust settings");
    Nodes {
        issued: trust(settings("ship1", 1, Some(ship1), false)),
        open: trust(settings("lab", 4, None, true)),
        closed: trust(settings("lone", 5, None, false)),
    }
}

thread_local! {
    static NODES: Nodes = nodes();
}

/// The subjects and answer contexts a frame is opened in; the input's first byte picks.
fn context(how: u8) -> Vec<u8> {
    match how % 4 {
        0 => b"bosun.ship1.ping".to_vec(),
        1 => b"bosun.ship1.cliCommand".to_vec(),
        2 => b"bosun.ship1._status".to_vec(),
        _ => answer_context(&[9; 64]),
    }
}

/// An identity token, then grant and policy rules: the token (its first line) is read
/// and verified against the issuer; every line is also read as a grant and as a policy
/// rule. A token that verifies reads the same unverified; a grant written out reads back
/// as itself.
pub fn identity_token(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let first = text.lines().next().unwrap_or_default();
    for token in [text, first] {
        let claims = identity::read_claims(token);
        match identity::verify(token, &[issuer().public_key()], NOW) {
            Ok(id) => {
                assert_eq!(
                    claims.as_ref(),
                    Ok(&id.claims),
                    "verified, read differently"
                );
                verified(&id);
            }
            Err(e) => assert!(!e.to_string().is_empty()),
        }
    }
    let rules: Vec<String> = text.lines().take(16).map(str::to_string).collect();
    for rule in &rules {
        if let Ok(grant) = Grant::parse(rule) {
            let written = grant.to_string();
            assert_eq!(
                Grant::parse(&written).as_ref(),
                Ok(&grant),
                "grant {rule:?} written as {written:?}"
            );
            let _ = grant.allows("cliCommand", rule);
            let _ = grant.allows(rule, "");
        }
    }
    if let Ok(policy) = Policy::parse(&rules) {
        assert_eq!(policy.is_empty(), rules.is_empty());
        let _ = policy.allows("ship1", "cliCommand", "uptime");
        let _ = policy.allows(first, first, text);
    }
}

/// What a verified identity must be: the trusted issuer's, with every grant read.
fn verified(id: &Identity) {
    assert_eq!(id.claims.iss, issuer().public_key());
    assert_eq!(id.claims.v, CLAIMS_VERSION);
    assert_eq!(id.grants.len(), id.claims.allow.len());
    let _ = id.allows("cliCommand", "ls -l /tmp");
    let _ = id.grants_text();
}

/// A sealed frame as it arrives. The first byte picks the subject or answer context it
/// is opened in and whether it is checked for freshness (as requests and notes are);
/// the rest is the frame, opened by each receiving node. What opens must agree with the
/// unchecked readers, be refused the second time when sealed and fresh, and its body is
/// decoded as a request. The rest is also sealed, and must open as sealed.
pub fn signed_frame(data: &[u8]) {
    let Some((&how, frame)) = data.split_first() else {
        return;
    };
    let context = context(how);
    let fresh = how & 0x10 != 0;
    let _ = unchecked_body(frame);
    let _ = unchecked_sig(frame);
    NODES.with(|nodes| {
        for node in [&nodes.issued, &nodes.open, &nodes.closed] {
            let opened = node.open(&context, frame, NOW, fresh);
            match &opened {
                Ok(o) => {
                    opened_agrees(node, frame, o);
                    // An unsealed frame (taken only by an open node) has no signature
                    // to remember.
                    if fresh && frame.starts_with(MAGIC) {
                        let again = node.open(&context, frame, NOW, true);
                        assert!(
                            matches!(again, Err(FrameRefusal::Replayed(_))),
                            "a fresh frame opened twice: {again:?}"
                        );
                    }
                    let body = &frame[o.body_start..];
                    crate::wire::request(body);
                    if let (Peer::Node(id), Ok(request)) = (&o.peer, wire::decode_request(body)) {
                        let _ = id.allows(&request.msg.method, &request.msg.data.join(" "));
                    }
                }
                Err(refusal) => {
                    assert!(!refusal.to_string().is_empty());
                    let _ = refusal.kind();
                }
            }
        }
        if how & 0x20 != 0 {
            sealed_opens(nodes, &context, frame);
        }
    });
}

/// An opened frame: its body and signature are where the unchecked readers find them,
/// and a proven sender is a node.
fn opened_agrees(node: &Trust, frame: &[u8], o: &bosun_trust::Opened) {
    assert!(o.body_start <= frame.len());
    if frame.starts_with(MAGIC) {
        assert_eq!(unchecked_body(frame), &frame[o.body_start..]);
        assert_eq!(unchecked_sig(frame), o.sig);
    } else {
        assert!(node.insecure_open(), "an unsealed frame opened");
        assert_eq!(o.body_start, 0);
    }
    match &o.peer {
        Peer::Node(id) => {
            assert_eq!(id.claims.role, Role::Node);
            assert!(node.issuers().contains(&id.claims.iss));
        }
        Peer::Open => assert!(node.insecure_open(), "an open peer on a closed node"),
        Peer::Myself | Peer::Unchecked => {}
    }
}

/// `body` sealed by the issued node opens there as its own, opens on the open node,
/// is refused by the node that trusts nobody and in any other context.
fn sealed_opens(nodes: &Nodes, context: &[u8], body: &[u8]) {
    let frame = nodes.issued.seal(context, body, NOW, None);
    let own = nodes
        .issued
        .open(context, &frame, NOW, false)
        .expect("own frame opens");
    assert!(matches!(own.peer, Peer::Myself), "{:?}", own.peer);
    assert_eq!(&frame[own.body_start..], body);
    let open = nodes
        .open
        .open(context, &frame, NOW, false)
        .expect("opens on an open node");
    assert_eq!(&frame[open.body_start..], body);
    assert_eq!(
        nodes.closed.open(context, &frame, NOW, false).unwrap_err(),
        FrameRefusal::NoTrust
    );
    let mut elsewhere = context.to_vec();
    elsewhere.push(b'x');
    assert!(matches!(
        nodes.issued.open(&elsewhere, &frame, NOW, false),
        Err(FrameRefusal::BadSignature(_))
    ));
}

/// Tokens that verify, and ones that do not for each reason, then some grant lines.
pub fn token_seeds() -> Vec<Vec<u8>> {
    let issuer = issuer();
    let mut expired = Claims {
        v: CLAIMS_VERSION,
        name: "ship3".into(),
        role: Role::Node,
        key: member(3).public_key(),
        allow: vec!["ping".into()],
        iss: issuer.public_key(),
        iat: NOW - 2000,
        exp: Some(NOW - 1000),
    };
    let expired_token = identity::issue(&issuer, &expired);
    expired.exp = Some(NOW + 1000);
    let expiring_token = identity::issue(&issuer, &expired);
    let tokens = [
        token(&issuer, "ship1", Role::Node, 1, &["*"]),
        token(
            &issuer,
            "ship2",
            Role::Node,
            2,
            &["ping", "cliCommand:uptime", "cli*:ls *"],
        ),
        token(
            &issuer,
            "ops",
            Role::Operator,
            3,
            &["cliCommand:systemctl restart ?*"],
        ),
        token(&stranger_issuer(), "ship9", Role::Node, 9, &["*"]),
        expired_token,
        expiring_token,
    ];
    let mut seeds: Vec<Vec<u8>> = tokens.iter().map(|t| t.clone().into_bytes()).collect();
    seeds.push(format!("{}\nping\ncentral=*\nops-*=cliCommand:uptime\n", tokens[1]).into_bytes());
    seeds.push(b"cliCommand:ls *\n*=*\nbad method\n".to_vec());
    seeds
}

/// Frames as nodes seal them: requests from an issued peer, the node's own, an open
/// node's, an operator's (not a node), an expired identity's, and an unsealed frame.
pub fn frame_seeds() -> Vec<Vec<u8>> {
    let issuer = issuer();
    let ship2 = Trust::new(
        settings(
            "ship2",
            2,
            Some(token(
                &issuer,
                "ship2",
                Role::Node,
                2,
                &["ping", "cliCommand:uptime"],
            )),
            false,
        ),
        NOW,
    )
    .expect("fixed trust settings");
    let ship1 = nodes().issued;
    let lab = Trust::new(settings("lab2", 6, None, true), NOW).expect("fixed trust settings");
    let operator = Trust::new(
        TrustSettings {
            issuers: vec![],
            ..settings(
                "ops",
                3,
                Some(token(&issuer, "ops", Role::Operator, 3, &["*"])),
                false,
            )
        },
        NOW,
    )
    .expect("fixed trust settings");
    let request = |from: &str, method: &str, data: &[&str]| {
        wire::encode(&wire::Request {
            v: wire::WIRE_VERSION,
            msg: bosun_proto::Message {
                id: Some("01KAP2Q4G3M7N8P9QRSTVWXYZ0".into()),
                to_node: Some("ship1".into()),
                from_node: Some(from.into()),
                method: method.into(),
                data: data.iter().map(|d| d.to_string()).collect(),
                ..Default::default()
            },
        })
    };
    let status = br#"{"v":1,"id":"01KAP2Q4G3M7N8P9QRSTVWXYZ0","state":"running","at":1}"#;
    let mut seeds = Vec::new();
    let mut add = |how: u8, sealed: Vec<u8>| {
        let mut seed = vec![how];
        seed.extend(sealed);
        seeds.push(seed);
    };
    let ping = request("ship2", "ping", &[]);
    add(0x10, ship2.seal(&context(0), &ping, NOW, None));
    add(0x10, ship2.seal(&context(0), &ping, NOW - 60_000, None));
    let command = request("ship2", "cliCommand", &["uptime"]);
    add(0x11, ship2.seal(&context(1), &command, NOW, None));
    add(0x12, ship2.seal(&context(2), status, NOW, None));
    add(
        0x03,
        ship2.seal(&context(3), br#"{"v":1,"id":"x"}"#, NOW, None),
    );
    add(
        0x30,
        ship1.seal(&context(0), &request("ship1", "ping", &[]), NOW, None),
    );
    add(
        0x10,
        lab.seal(&context(0), &request("lab2", "ping", &[]), NOW, None),
    );
    add(
        0x10,
        operator.seal(&context(0), &request("ops", "ping", &[]), NOW, None),
    );
    add(0x20, ping.clone());
    seeds
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The seeds are worth starting from only if they reach past the signatures.
    #[test]
    fn seeds_reach_verified_identities_and_opened_frames() {
        let tokens = token_seeds();
        let trusted = [issuer().public_key()];
        let id = identity::verify(std::str::from_utf8(&tokens[1]).unwrap(), &trusted, NOW)
            .expect("the ship2 seed verifies");
        assert_eq!(id.name(), "ship2");
        assert!(id.allows("cliCommand", "uptime") && !id.allows("cliCommand", "id"));
        let refusals: Vec<_> = tokens[3..5]
            .iter()
            .map(|t| identity::verify(std::str::from_utf8(t).unwrap(), &trusted, NOW))
            .collect();
        assert!(
            matches!(
                refusals[0],
                Err(bosun_trust::IdentityError::UntrustedIssuer { .. })
            ),
            "{refusals:?}"
        );
        assert!(
            matches!(refusals[1], Err(bosun_trust::IdentityError::Expired { .. })),
            "{refusals:?}"
        );

        let frames = frame_seeds();
        let ship1 = nodes().issued;
        let open =
            |seed: &[u8]| ship1.open(&context(seed[0]), &seed[1..], NOW, seed[0] & 0x10 != 0);
        let opened = open(&frames[0]).expect("ship2's fresh ping opens");
        assert_eq!(opened.peer.name(), Some("ship2"));
        assert!(matches!(open(&frames[1]), Err(FrameRefusal::Clock { .. })));
        assert!(matches!(open(&frames[5]).unwrap().peer, Peer::Myself));
        assert!(matches!(
            open(&frames[6]),
            Err(FrameRefusal::Unissued { .. })
        ));
        assert!(matches!(open(&frames[7]), Err(FrameRefusal::NotANode(_))));
        assert_eq!(open(&frames[8]).unwrap_err(), FrameRefusal::Unsigned);
    }
}
