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
    let frame = a.seal(b"bosun.b.ping", b"{\"v\":1}", NOW, None);
    let opened = b.open(b"bosun.b.ping", &frame, NOW + 10, true).unwrap();
    assert_eq!(opened.peer.name(), Some("a"));
    assert_eq!(&frame[opened.body_start..], b"{\"v\":1}");
    assert_eq!(
        b.open(b"bosun.b.ping", &frame, NOW + 20, true).unwrap_err(),
        FrameRefusal::Replayed("a".into())
    );
    // Another subject: the signature does not cover it.
    let frame = a.seal(b"bosun.b.ping", b"{}", NOW, None);
    assert!(matches!(
        b.open(b"bosun.c.ping", &frame, NOW, true),
        Err(FrameRefusal::BadSignature(_))
    ));
    // A body changed after sealing.
    let mut changed = a.seal(b"bosun.b.ping", b"{\"x\":1}", NOW, None);
    let last = changed.len() - 2;
    changed[last] = b'2';
    assert!(matches!(
        b.open(b"bosun.b.ping", &changed, NOW, true),
        Err(FrameRefusal::BadSignature(_))
    ));
    // Stamped too far away.
    let old = a.seal(b"bosun.b.ping", b"{}", NOW - 301_000, None);
    assert!(matches!(
        b.open(b"bosun.b.ping", &old, NOW, true),
        Err(FrameRefusal::Clock { .. })
    ));
    // Answers are not checked for freshness: they are bound to their request.
    let ctx = answer_context(&opened.sig);
    let answer = b.seal(&ctx, b"ack", NOW, None);
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
        b.open(b"s", &evil.seal(b"s", b"{}", NOW, None), NOW, true),
        Err(FrameRefusal::Identity(
            IdentityError::UntrustedIssuer { .. }
        ))
    ));
    let unissued = bare("c", trusted.clone(), false);
    assert!(matches!(
        b.open(b"s", &unissued.seal(b"s", b"{}", NOW, None), NOW, true),
        Err(FrameRefusal::Unissued { .. })
    ));
    let (operator, _) = node("alice", &issuer, Role::Operator, trusted.clone());
    assert_eq!(
        b.open(b"s", &operator.seal(b"s", b"{}", NOW, None), NOW, true)
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
            .open(b"s", &unissued.seal(b"s", b"{}", NOW, None), NOW, true)
            .unwrap_err(),
        FrameRefusal::NoTrust
    );
    let own = lonely.seal(b"s", b"{}", NOW, None);
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
fn a_stamp_past_i64_is_refused_by_the_clock_not_an_overflow() {
    // Found while writing the signed_frame fuzz target: an open lab node checks the
    // stamp of a frame nobody vouched for, and `at as i64 - now as i64` overflowed
    // (a panic in debug builds) for stamps from 2^63 on.
    let lab = bare("e", vec![], true);
    let stranger = bare("s", vec![], false);
    for at in [1u64 << 63, (1u64 << 63) + NOW, u64::MAX] {
        let frame = stranger.seal(b"s", b"{}", at, None);
        let refusal = lab.open(b"s", &frame, NOW, true).unwrap_err();
        assert!(
            matches!(refusal, FrameRefusal::Clock { off_secs, .. } if off_secs != 0),
            "{at}: {refusal:?}"
        );
    }
    let far = stranger.seal(b"s", b"{}", 0, None);
    match lab.open(b"s", &far, u64::MAX, true).unwrap_err() {
        FrameRefusal::Clock { off_secs, .. } => assert!(off_secs < 0),
        other => panic!("{other:?}"),
    }
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
        let frame = a.seal(b"bosun.b.ping", &body, NOW + i, None);
        b.open(b"bosun.b.ping", &frame, NOW + i, true).unwrap();
    }
    let per = start.elapsed() / n as u32;
    eprintln!("seal + open: {per:?} per frame");
    assert!(
        per < std::time::Duration::from_millis(5),
        "{per:?} per frame"
    );
}

#[test]
fn after_a_verified_frame_peers_use_a_pair_key_and_fall_back_to_signing() {
    let issuer = KeyKind::Issuer.generate();
    let trusted = vec![issuer.public_key()];
    let (a, _) = node("a", &issuer, Role::Node, trusted.clone());
    let (b, _) = node("b", &issuer, Role::Node, trusted.clone());
    // a does not know b yet: it signs.
    let first = a.seal(b"bosun.b.ping", b"1", NOW, Some("b"));
    assert_eq!(first[4], KIND_TOKEN);
    let opened = b.open(b"bosun.b.ping", &first, NOW, true).unwrap();
    // b verified a: its answer carries a MAC, which a checks with the same pair key.
    let ctx = answer_context(&opened.sig);
    let answer = b.seal(&ctx, b"ack", NOW, Some("a"));
    assert_eq!(answer[4], KIND_MAC);
    assert_eq!(
        a.open(&ctx, &answer, NOW, false).unwrap().peer.name(),
        Some("b")
    );
    // Now a MACs too, and b takes it, once.
    let second = a.seal(b"bosun.b.ping", b"2", NOW + 1, Some("b"));
    assert_eq!(second[4], KIND_MAC);
    assert!(
        second.len() < first.len(),
        "a MAC is shorter than a signature"
    );
    let got = b.open(b"bosun.b.ping", &second, NOW + 1, true).unwrap();
    assert_eq!(got.peer.name(), Some("a"));
    assert_eq!(&second[got.body_start..], b"2");
    assert!(matches!(
        b.open(b"bosun.b.ping", &second, NOW + 2, true),
        Err(FrameRefusal::Replayed(_))
    ));
    // Tampering with a MAC'd body, subject or stamp is caught.
    let mut changed = a.seal(b"bosun.b.ping", b"3", NOW + 3, Some("b"));
    *changed.last_mut().unwrap() = b'4';
    assert!(matches!(
        b.open(b"bosun.b.ping", &changed, NOW + 3, true),
        Err(FrameRefusal::BadMac(_))
    ));
    let moved = a.seal(b"bosun.b.ping", b"5", NOW + 4, Some("b"));
    assert!(b.open(b"bosun.c.ping", &moved, NOW + 4, true).is_err());
    // A third node with a valid identity cannot forge a's MAC to b: it does not have
    // the pair key, and its own pair key with b names itself.
    let (c, _) = node("c", &issuer, Role::Node, trusted.clone());
    c.open(b"x", &b.seal(b"x", b"hi", NOW, None), NOW, true)
        .unwrap();
    let from_c = c.seal(b"bosun.b.ping", b"6", NOW + 5, Some("b"));
    assert_eq!(
        b.open(b"bosun.b.ping", &from_c, NOW + 5, true)
            .unwrap()
            .peer
            .name(),
        Some("c")
    );
    // b gets a new key (a restart with a new identity): a's MAC fails, a NAK follows,
    // and once a forgets the pair key it signs again.
    let (b2, _) = node("b", &issuer, Role::Node, trusted);
    let stale = a.seal(b"bosun.b.ping", b"7", NOW + 6, Some("b"));
    assert!(matches!(
        b2.open(b"bosun.b.ping", &stale, NOW + 6, true),
        Err(FrameRefusal::BadMac(_))
    ));
    a.forget_peer("b");
    let resent = a.seal(b"bosun.b.ping", b"7", NOW + 7, Some("b"));
    assert_eq!(resent[4], KIND_TOKEN);
    assert!(b2.open(b"bosun.b.ping", &resent, NOW + 7, true).is_ok());
    assert!(is_nak(NAK));
    // Frames to itself use the node's own pair key.
    let own = a.seal(b"bosun.a.ping", b"8", NOW, Some("a"));
    assert_eq!(own[4], KIND_MAC);
    assert!(matches!(
        a.open(b"bosun.a.ping", &own, NOW, true).unwrap().peer,
        Peer::Myself
    ));
}

#[test]
fn a_central_keeps_the_pair_keys_of_a_fleet_of_ten_thousand() {
    // Cheap stand-ins for 10,000 peers: the cache is what is tested, not the key
    // agreement, which the test above covers.
    let issuer = KeyKind::Issuer.generate();
    let (central, _) = node("central", &issuer, Role::Node, vec![issuer.public_key()]);
    for i in 0..10_000 {
        central.learn_peer(&format!("n{i}"), [i as u8; MAC_LEN]);
    }
    for i in [0, 4_095, 4_096, 9_999] {
        let frame = central.seal(b"bosun.n.ping", b"1", NOW, Some(&format!("n{i}")));
        assert_eq!(frame[4], KIND_MAC, "n{i} still has its pair key");
    }
    // Past the bound, the least recently used go first, not everything at once.
    for i in 0..TOKEN_CACHE {
        central.learn_peer(&format!("m{i}"), [1; MAC_LEN]);
    }
    let frame = central.seal(b"bosun.n.ping", b"1", NOW, Some("n9999"));
    assert_eq!(frame[4], KIND_TOKEN, "the oldest peers were dropped");
    let frame = central.seal(b"bosun.m.ping", b"1", NOW, Some("m1"));
    assert_eq!(frame[4], KIND_MAC);
}
