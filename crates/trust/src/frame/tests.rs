use super::*;
use crate::identity::{CLAIMS_VERSION, Claims, issue};
use crate::keys::KeyKind;

const NOW: u64 = 1_800_000_000_000;

fn node(name: &str, issuer: &KeyPair, role: Role, issuers: Vec<String>) -> (Trust, String) {
    let key = KeyKind::Member.generate();
    let token = issue(
        issuer,
        &Claims {
            v: CLAIMS_VERSION,
            name: name.into(),
            role,
            key: key.public_key(),
            allow: vec!["*".into()],
            iss: issuer.public_key(),
            iat: NOW,
            exp: None,
        },
    );
    let trust = Trust::new(
        TrustSettings {
            name: name.into(),
            key,
            identity: Some(token.clone()),
            issuers,
            insecure_open: false,
            skew_ms: 300_000,
        },
        NOW,
    )
    .unwrap();
    (trust, token)
}

fn bare(name: &str, issuers: Vec<String>, insecure_open: bool) -> Trust {
    Trust::new(
        TrustSettings {
            name: name.into(),
            key: KeyKind::Member.generate(),
            identity: None,
            issuers,
            insecure_open,
            skew_ms: 300_000,
        },
        NOW,
    )
    .unwrap()
}

#[test]
fn sealed_frames_open_only_in_their_context_and_once() {
    let issuer = KeyKind::Issuer.generate();
    let trusted = vec![issuer.public_key()];
    let (a, _) = node("a", &issuer, Role::Node, trusted.clone());
    let (b, _) = node("b", &issuer, Role::Node, trusted.clone());
    let frame = a.seal(b"bosun.b.ping", b"{\"v\":1}", NOW);
    let opened = b.open(b"bosun.b.ping", &frame, NOW + 10, true).unwrap();
    assert_eq!(opened.peer.name(), Some("a"));
    assert_eq!(&frame[opened.body_start..], b"{\"v\":1}");
    assert_eq!(
        b.open(b"bosun.b.ping", &frame, NOW + 20, true).unwrap_err(),
        FrameRefusal::Replayed("a".into())
    );
    // Another subject: the signature does not cover it.
    let frame = a.seal(b"bosun.b.ping", b"{}", NOW);
    assert!(matches!(
        b.open(b"bosun.c.ping", &frame, NOW, true),
        Err(FrameRefusal::BadSignature(_))
    ));
    // A body changed after sealing.
    let mut changed = a.seal(b"bosun.b.ping", b"{\"x\":1}", NOW);
    let last = changed.len() - 2;
    changed[last] = b'2';
    assert!(matches!(
        b.open(b"bosun.b.ping", &changed, NOW, true),
        Err(FrameRefusal::BadSignature(_))
    ));
    // Stamped too far away.
    let old = a.seal(b"bosun.b.ping", b"{}", NOW - 301_000);
    assert!(matches!(
        b.open(b"bosun.b.ping", &old, NOW, true),
        Err(FrameRefusal::Clock { .. })
    ));
    // Answers are not checked for freshness: they are bound to their request.
    let ctx = answer_context(&opened.sig);
    let answer = b.seal(&ctx, b"ack", NOW);
    let got = a.open(&ctx, &answer, NOW, false).unwrap();
    assert_eq!(got.peer.name(), Some("b"));
    assert!(
        a.open(&answer_context(&[7; 64]), &answer, NOW, false)
            .is_err()
    );
}

#[test]
fn strangers_are_refused_with_the_reason() {
    let issuer = KeyKind::Issuer.generate();
    let rogue = KeyKind::Issuer.generate();
    let trusted = vec![issuer.public_key()];
    let (b, _) = node("b", &issuer, Role::Node, trusted.clone());
    assert_eq!(
        b.open(b"s", b"{\"v\":1}", NOW, true).unwrap_err(),
        FrameRefusal::Unsigned
    );
    let (evil, _) = node("a", &rogue, Role::Node, vec![rogue.public_key()]);
    assert!(matches!(
        b.open(b"s", &evil.seal(b"s", b"{}", NOW), NOW, true),
        Err(FrameRefusal::Identity(
            IdentityError::UntrustedIssuer { .. }
        ))
    ));
    let unissued = bare("c", trusted.clone(), false);
    assert!(matches!(
        b.open(b"s", &unissued.seal(b"s", b"{}", NOW), NOW, true),
        Err(FrameRefusal::Unissued { .. })
    ));
    let (operator, _) = node("alice", &issuer, Role::Operator, trusted.clone());
    assert_eq!(
        b.open(b"s", &operator.seal(b"s", b"{}", NOW), NOW, true)
            .unwrap_err(),
        FrameRefusal::NotANode("alice".into())
    );
    for junk in [&b"BSN1"[..], b"BSN1\x01\xff\xff", b"BSN1\x09\x00\x00"] {
        assert!(matches!(
            b.open(b"s", junk, NOW, true),
            Err(FrameRefusal::Malformed(_))
        ));
    }
    // A node that trusts nobody refuses others, but accepts itself.
    let lonely = bare("d", vec![], false);
    assert_eq!(
        lonely
            .open(b"s", &unissued.seal(b"s", b"{}", NOW), NOW, true)
            .unwrap_err(),
        FrameRefusal::NoTrust
    );
    let own = lonely.seal(b"s", b"{}", NOW);
    assert!(matches!(
        lonely.open(b"s", &own, NOW, true).unwrap().peer,
        Peer::Myself
    ));
    // Open labs take anything that is not forged.
    let lab = bare("e", vec![], true);
    assert!(matches!(
        lab.open(b"s", b"{}", NOW, true).unwrap().peer,
        Peer::Open
    ));
}

#[test]
fn an_identity_for_another_node_is_refused_at_setup() {
    let issuer = KeyKind::Issuer.generate();
    let (_, token) = node("a", &issuer, Role::Node, vec![issuer.public_key()]);
    let err = Trust::new(
        TrustSettings {
            name: "a".into(),
            key: KeyKind::Member.generate(),
            identity: Some(token),
            issuers: vec![issuer.public_key()],
            insecure_open: false,
            skew_ms: 1000,
        },
        NOW,
    )
    .err()
    .unwrap();
    assert!(matches!(err, TrustSetupError::NotMine { .. }), "{err}");
}

/// Not a benchmark (figures are in BENCHMARKS.md): sealing and opening a frame stays
/// well under a millisecond, even in a debug build, or every test would crawl.
#[test]
fn sealing_and_opening_are_cheap_enough_for_every_frame() {
    let issuer = KeyKind::Issuer.generate();
    let trusted = vec![issuer.public_key()];
    let (a, _) = node("a", &issuer, Role::Node, trusted.clone());
    let (b, _) = node("b", &issuer, Role::Node, trusted);
    let body = vec![b'x'; 1024];
    let start = std::time::Instant::now();
    let n = 200u64;
    for i in 0..n {
        let frame = a.seal(b"bosun.b.ping", &body, NOW + i);
        b.open(b"bosun.b.ping", &frame, NOW + i, true).unwrap();
    }
    let per = start.elapsed() / n as u32;
    eprintln!("seal + open: {per:?} per frame");
    assert!(
        per < std::time::Duration::from_millis(5),
        "{per:?} per frame"
    );
}
