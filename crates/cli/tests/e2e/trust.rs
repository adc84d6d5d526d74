//! Trust: every frame on the broker is signed by a node with an identity, and every node
//! checks who sent it before anything runs. Each attack is made the way an attacker on
//! the same network would: a raw NATS client with no bosun key (or with a key of its
//! own), against a real fleet; each test checks the refusal and that nothing ran.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bosun_bus::{NatsOptions, NatsTransport, Sealed, Transport};
use bosun_proto::wire::{self, Ack, Request, WIRE_VERSION};
use bosun_proto::{Message, Outcome};
use bosun_testkit::{NodeSpec, NodeTrust, eventually, trust::issuer};
use bosun_trust::keys::{self, KeyKind};
use bosun_trust::{Role, Trust, TrustSettings};
use bytes::Bytes;
use futures::StreamExt;

use crate::support::{exec_no_wait, fleet, lines, report, stderr, stdout, wait_state};

/// A client on the broker: raw (no key), or sealing with a key and identity of its own.
struct Client {
    rt: tokio::runtime::Runtime,
    transport: Arc<dyn Transport>,
}

impl Client {
    fn raw(url: &str) -> Client {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let nats = rt.block_on(async {
            let t = NatsTransport::connect(&NatsOptions {
                urls: vec![url.to_string()],
                name: "attacker".into(),
                ..Default::default()
            })
            .await
            .unwrap();
            assert!(t.wait_connected(Duration::from_secs(10)).await);
            t
        });
        Client {
            rt,
            transport: Arc::new(nats),
        }
    }

    /// A client that signs as `name` with `key` and `token`.
    fn sealed(url: &str, name: &str, key: nkeys::KeyPair, token: Option<String>) -> Client {
        let raw = Client::raw(url);
        // Whatever issuer signed the token is the one this client believes in; its own
        // identity is taken as of time 0, so an expired one can still be tried.
        let issuers = match &token {
            Some(t) => vec![
                bosun_trust::identity::read_claims(t).unwrap().iss,
                issuer().public_key(),
            ],
            None => vec![issuer().public_key()],
        };
        let trust = Trust::new(
            TrustSettings {
                name: name.into(),
                key,
                identity: token,
                issuers,
                insecure_open: false,
                skew_ms: 300_000,
            },
            0,
        )
        .unwrap();
        Client {
            transport: Arc::new(Sealed::new(raw.transport.clone(), Arc::new(trust), name)),
            rt: raw.rt,
        }
    }

    /// A client that signs as the fleet node whose data dir is `dir` (its own key and
    /// identity, stolen or legitimately its own).
    fn as_node(url: &str, name: &str, dir: &Path) -> Client {
        let key = keys::load(&dir.join("node.key"), KeyKind::Member).unwrap();
        let token = std::fs::read_to_string(dir.join("node.id")).unwrap();
        Client::sealed(url, name, key, Some(token))
    }

    fn request(&self, subject: &str, payload: Vec<u8>) -> Result<Bytes, bosun_bus::BusError> {
        self.rt.block_on(self.transport.request(
            subject.to_string(),
            Bytes::from(payload),
            Duration::from_secs(10),
        ))
    }

    /// Send `message` as a request; the ACK (or refusal) the node answers.
    fn send(&self, message: &Message) -> Ack {
        let to = message.to_node.as_deref().unwrap();
        let subject = wire::subject("bosun", to, &message.method);
        let frame = wire::encode(&Request {
            v: WIRE_VERSION,
            msg: message.clone(),
        });
        let answer = self.request(&subject, frame).expect("an answer");
        // A raw client cannot check the node's seal, but can read what it says.
        wire::decode_ack(bosun_trust::frame::unchecked_body(&answer)).expect("an ACK frame")
    }

    /// Send `messages` to `to` in one batch frame; the answer's ACKs, in order (a
    /// refusal of the whole frame comes back as a single ACK without an id).
    fn send_batch(&self, to: &str, messages: &[Message]) -> Vec<Ack> {
        let requests: Vec<Vec<u8>> = messages.iter().map(wire::encode_request).collect();
        let frame = wire::encode_batch(requests.iter().map(Vec::as_slice));
        let subject = format!("bosun.{to}.{}", wire::BATCH_TOKEN);
        let answer = self.request(&subject, frame).expect("an answer");
        let body = bosun_trust::frame::unchecked_body(&answer);
        match wire::decode_batch_ack(body) {
            Ok(acks) => acks
                .into_iter()
                .map(|a| wire::decode_ack(a.expect("every request answered")).expect("an ACK"))
                .collect(),
            Err(_) => vec![wire::decode_ack(body).expect("a refusal ACK")],
        }
    }
}

fn command(from: &str, to: &str, argv: &[&str]) -> Message {
    Message {
        id: Some(bosun_proto::new_id()),
        to_node: Some(to.into()),
        from_node: Some(from.into()),
        method: "cliCommand".into(),
        data: argv.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn forged_outcome() -> Outcome {
    serde_json::from_value(serde_json::json!({
        "status": "done", "node": "ship1", "exitCode": 0, "stdout": "forged\n", "finishedAt": 1
    }))
    .expect("an outcome")
}

fn refused(ack: &Ack, needle: &str) {
    let reason = ack
        .rejected
        .as_deref()
        .unwrap_or_else(|| panic!("not refused: {ack:?}"));
    assert!(reason.contains(needle), "{needle:?} in {reason:?}");
}

/// The receiving node has no record of `id`: nothing of it was stored or run.
fn unknown_at(node: &bosun_testkit::NodeProcess, id: &str) {
    let out = node.cli(&["status", "--json", id]);
    let text = stdout(&out);
    assert!(
        !out.status.success() || !text.contains("\"received\""),
        "{id} was recorded at {}: {text}",
        node.name
    );
}

#[test]
fn a_raw_client_cannot_run_anything_and_forged_identities_are_refused() {
    let Some(fleet) = fleet()
        .central("central")
        .nodes(&["central", "ship1"])
        .start()
    else {
        return;
    };
    let url = fleet.nats().url();
    let marker = fleet.dir().join("pwned");
    let touch = ["touch", marker.to_str().unwrap()];

    // Unsigned, claiming to be central, with a made-up signature and signer.
    let raw = Client::raw(&url);
    let mut forged = command("central", "ship1", &touch);
    forged.signature = Some("AAAA".into());
    forged.signer = Some("central".into());
    let ack = raw.send(&forged);
    refused(&ack, "untrusted: unsigned frame");
    unknown_at(fleet.node("ship1"), forged.id());

    // Signed by an issuer nobody trusts, with an identity that says "central".
    let rogue = KeyKind::Issuer.generate();
    let key = KeyKind::Member.generate();
    let token = bosun_trust::identity::issue(
        &rogue,
        &bosun_trust::Claims {
            v: bosun_trust::identity::CLAIMS_VERSION,
            name: "central".into(),
            role: Role::Node,
            key: key.public_key(),
            allow: vec!["*".into()],
            iss: rogue.public_key(),
            iat: 0,
            exp: None,
        },
    );
    let impostor = Client::sealed(&url, "central", key, Some(token));
    let message = command("central", "ship1", &touch);
    let ack = impostor.send(&message);
    refused(&ack, "which this node does not trust");
    unknown_at(fleet.node("ship1"), message.id());

    // A key the fleet issuer never vouched for.
    let unissued = Client::sealed(&url, "central", KeyKind::Member.generate(), None);
    let message = command("central", "ship1", &touch);
    refused(&unissued.send(&message), "has no identity from an issuer");

    // A real identity, expired.
    let key = KeyKind::Member.generate();
    let token = issuer().issue("central", &key.public_key(), Role::Node, &["*"], Some(1));
    let expired = Client::sealed(&url, "central", key, Some(token));
    refused(
        &expired.send(&command("central", "ship1", &touch)),
        "expired",
    );

    // An operator identity cannot send frames.
    let key = KeyKind::Member.generate();
    let token = issuer().issue("central", &key.public_key(), Role::Operator, &["*"], None);
    let operator = Client::sealed(&url, "central", key, Some(token));
    refused(
        &operator.send(&command("central", "ship1", &touch)),
        "operator identity",
    );

    assert!(!marker.exists(), "nothing ran");
    // Refusals are audited and the node goes on.
    let audit = lines(&fleet.node("ship1").data_dir.join("audit.log"));
    assert!(
        audit.iter().filter(|l| l.contains("\"refused\"")).count() >= 5,
        "{audit:?}"
    );
    let out = fleet.node("central").cli(&[
        "exec",
        "-n",
        "ship1",
        "--timeout",
        "20",
        "--",
        "echo",
        "still here",
    ]);
    assert!(stdout(&out).contains("still here"), "{}", stderr(&out));
}

#[test]
fn a_node_sends_only_as_itself_and_results_come_only_from_the_destination() {
    let Some(fleet) = fleet()
        .central("central")
        .nodes(&["central", "ship1", "ship2"])
        .start()
    else {
        return;
    };
    let url = fleet.nats().url();
    // ship2 is a member of the fleet with every grant, but it is not central.
    let ship2 = Client::as_node(&url, "ship2", &fleet.data_dir("ship2"));
    let marker = fleet.dir().join("as-central");
    let message = command("central", "ship1", &["touch", marker.to_str().unwrap()]);
    refused(&ship2.send(&message), "names fromNode \"central\"");
    unknown_at(fleet.node("ship1"), message.id());
    assert!(!marker.exists());

    // A result for a message central sent to ship1, forged by ship2 and by a raw client.
    let central = fleet.node("central");
    let id = exec_no_wait(central, "ship1", &["sh", "-c", "sleep 2; echo real"]);
    let fake = |from: &str| Message {
        id: Some(bosun_proto::new_id()),
        to_node: Some("central".into()),
        from_node: Some(from.into()),
        method: "result".into(),
        previous_message: Some(id.clone()),
        result: Some(forged_outcome()),
        ..Default::default()
    };
    refused(&ship2.send(&fake("ship2")), "but it was sent to ship1");
    refused(&ship2.send(&fake("ship1")), "names fromNode \"ship1\"");
    refused(&Client::raw(&url).send(&fake("ship1")), "unsigned");
    let done = wait_state(central, &id, "done");
    let text = done.to_string();
    assert!(text.contains("real") && !text.contains("forged"), "{text}");

    // A hello for a node that does not exist, and one forged for ship1.
    let hello = |from: &str| {
        Message {
        id: Some(bosun_proto::new_id()),
        to_node: Some("central".into()),
        from_node: Some(from.into()),
        method: "hello".into(),
        data: vec![r#"{"intervalSecs":1,"inventory":{"memAvailableBytes":1e18,"labels":{"role":"worker"}}}"#.into()],
        ..Default::default()
    }
    };
    refused(&Client::raw(&url).send(&hello("fake")), "unsigned");
    refused(&ship2.send(&hello("fake")), "names fromNode \"fake\"");
    let nodes = stdout(&central.cli(&["nodes", "--json"]));
    assert!(!nodes.contains("\"fake\""), "{nodes}");
}

#[test]
fn each_message_of_a_batch_is_checked_alone_and_a_forged_one_is_refused_without_its_neighbours() {
    let Some(fleet) = fleet()
        .central("central")
        .nodes(&["central", "ship1", "ship2"])
        .start()
    else {
        return;
    };
    let url = fleet.nats().url();
    let ship1 = fleet.node("ship1");
    let forged_marker = fleet.dir().join("as-central");
    let own_marker = fleet.dir().join("as-ship2");
    // ship2, a member with every grant, sends ship1 one batch: a command that claims to
    // come from central, and one of its own.
    let ship2 = Client::as_node(&url, "ship2", &fleet.data_dir("ship2"));
    let forged = command(
        "central",
        "ship1",
        &["touch", forged_marker.to_str().unwrap()],
    );
    let own = command("ship2", "ship1", &["touch", own_marker.to_str().unwrap()]);
    let acks = ship2.send_batch("ship1", &[forged.clone(), own.clone()]);
    assert_eq!(acks.len(), 2, "one ACK per request: {acks:?}");
    assert_eq!(acks[0].id, forged.id());
    refused(&acks[0], "names fromNode \"central\"");
    assert_eq!(acks[1].id, own.id());
    assert!(acks[1].rejected.is_none(), "{:?}", acks[1]);
    eventually(Duration::from_secs(20), "ship2's own command runs", || {
        own_marker.exists().then_some(())
    });
    unknown_at(ship1, forged.id());
    assert!(!forged_marker.exists(), "the forged command did not run");
    let audit = lines(&ship1.data_dir.join("audit.log"));
    assert!(
        audit
            .iter()
            .any(|l| l.contains("\"refused\"") && l.contains(forged.id())),
        "the forged request is audited: {audit:?}"
    );

    // Unsigned, the whole batch is refused and nothing of it is read.
    let unsigned = command(
        "central",
        "ship1",
        &["touch", forged_marker.to_str().unwrap()],
    );
    let acks = Client::raw(&url).send_batch("ship1", std::slice::from_ref(&unsigned));
    assert_eq!(acks.len(), 1, "{acks:?}");
    assert_eq!(acks[0].id, "");
    refused(&acks[0], "unsigned");
    unknown_at(ship1, unsigned.id());
    assert!(!forged_marker.exists(), "nothing unsigned ran");
}

#[test]
fn a_captured_frame_replayed_is_refused() {
    let Some(fleet) = fleet().nodes(&["central", "ship1"]).start() else {
        return;
    };
    let url = fleet.nats().url();
    let spy = Client::raw(&url);
    let mut frames = spy
        .rt
        .block_on(spy.transport.subscribe("bosun.ship1.cliCommand".into()))
        .unwrap();
    let counter = fleet.dir().join("runs");
    let script = format!("echo run >> {}", counter.display());
    let out = fleet.node("central").cli(&[
        "exec",
        "-n",
        "ship1",
        "--timeout",
        "20",
        "--",
        "sh",
        "-c",
        &script,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let captured = spy
        .rt
        .block_on(async { tokio::time::timeout(Duration::from_secs(10), frames.next()).await })
        .expect("the spy saw the frame")
        .expect("a frame");
    let answer = spy
        .request("bosun.ship1.cliCommand", captured.payload.to_vec())
        .unwrap();
    let ack = wire::decode_ack(bosun_trust::frame::unchecked_body(&answer)).unwrap();
    refused(&ack, "replayed frame");
    assert_eq!(lines(&counter).len(), 1, "ran once");
}

#[test]
fn grants_and_the_local_policy_both_decide() {
    let narrow = NodeTrust::Issued {
        grants: vec!["cliCommand:uptime".into(), "ping".into()],
        policy: vec!["*".into()],
    };
    let Some(fleet) = fleet()
        .node(NodeSpec::new("ship1").trust(NodeTrust::Issued {
            grants: vec!["*".into()],
            policy: vec!["ops=*".into(), "central=ping".into()],
        }))
        .node(NodeSpec::new("ops").trust(narrow))
        .node("central")
        .start()
    else {
        return;
    };
    let ops = fleet.node("ops");
    let out = ops.cli(&["exec", "-n", "ship1", "--timeout", "20", "--", "uptime"]);
    assert!(out.status.success(), "{} {}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("load average"), "{}", stdout(&out));
    let marker = fleet.dir().join("shell");
    let m = marker.to_str().unwrap();
    let out = ops.cli(&[
        "exec",
        "-n",
        "ship1",
        "--timeout",
        "20",
        "--",
        "sh",
        "-c",
        &format!("touch {m}"),
    ]);
    assert!(!out.status.success());
    assert!(
        stdout(&out).contains("may not run cliCommand") && stdout(&out).contains("grants"),
        "{}",
        stdout(&out)
    );
    // central's identity grants everything, but ship1's policy lets it only ping.
    let out =
        fleet
            .node("central")
            .cli(&["exec", "-n", "ship1", "--timeout", "20", "--", "touch", m]);
    assert!(!out.status.success());
    assert!(
        stdout(&out).contains("no policy rule allows it"),
        "{}",
        stdout(&out)
    );
    assert!(!marker.exists(), "nothing ran");
}

#[test]
fn an_untrusting_node_refuses_the_broker_but_runs_its_own_and_open_labs_say_so() {
    let Some(fleet) = fleet()
        .central("central")
        .node("central")
        .node(NodeSpec::new("lab").config("insecure_open = true\n"))
        .start()
    else {
        return;
    };
    let url = fleet.nats().url();
    // Not listed by central, which refuses its unsigned hellos: started on its own.
    let lonely = bosun_testkit::NodeProcess::start_with_trust(
        &crate::support::bin(),
        "lonely",
        Some(&url),
        &fleet.data_dir("lonely"),
        &[],
        NodeTrust::Untrusted,
    );
    let lonely = &lonely;
    let log = std::fs::read_to_string(lonely.log_path()).unwrap();
    assert!(
        log.contains("untrusted: this node trusts no issuer"),
        "{log}"
    );
    let out = lonely.cli(&["nodes"]);
    assert!(stderr(&out).contains("untrusted"), "{}", stderr(&out));
    // Its own messages run.
    let out = lonely.cli(&[
        "exec",
        "-n",
        "lonely",
        "--timeout",
        "20",
        "--",
        "echo",
        "mine",
    ]);
    assert!(stdout(&out).contains("mine"), "{}", stderr(&out));
    // Anything from the broker is refused.
    let marker = fleet.dir().join("lonely-ran");
    let m = marker.to_str().unwrap().to_string();
    let ack = Client::raw(&url).send(&command("central", "lonely", &["touch", &m]));
    refused(&ack, "untrusted");
    // A fleet member gets the same refusal, which it cannot take as true: the answer is
    // signed by a node without an identity.
    let member = Client::as_node(&url, "central", &fleet.data_dir("central"));
    let message = command("central", "lonely", &["touch", &m]);
    let subject = wire::subject("bosun", "lonely", "cliCommand");
    let frame = wire::encode(&Request {
        v: WIRE_VERSION,
        msg: message.clone(),
    });
    let err = member.request(&subject, frame).unwrap_err();
    assert!(matches!(err, bosun_bus::BusError::Untrusted(_)), "{err}");
    eventually(Duration::from_secs(10), "the refusal is audited", || {
        lines(&lonely.data_dir.join("audit.log"))
            .iter()
            .any(|l| l.contains("trusts no issuer"))
            .then_some(())
    });
    assert!(!marker.exists());

    // A lab node runs unsigned messages, and says so at start and in its hellos.
    let lab = fleet.node("lab");
    let log = std::fs::read_to_string(lab.log_path()).unwrap();
    assert!(log.contains("INSECURE"), "{log}");
    let opened = fleet.dir().join("lab-ran");
    let ack = Client::raw(&url).send(&command(
        "anyone",
        "lab",
        &["touch", opened.to_str().unwrap()],
    ));
    assert!(ack.rejected.is_none(), "{ack:?}");
    eventually(Duration::from_secs(20), "the lab ran it", || {
        opened.exists().then_some(())
    });
    let out = fleet.node("central").cli(&["nodes"]);
    assert!(
        stderr(&out).contains("lab accepts unsigned messages"),
        "{}",
        stderr(&out)
    );
    let _ = report;
}

#[test]
fn an_operator_key_with_a_narrow_grant_runs_uptime_but_not_a_shell() {
    // The bastion relays operators' messages; its own identity grants nothing.
    let Some(fleet) = fleet()
        .node(NodeSpec::new("bastion").trust(NodeTrust::Issued {
            grants: vec![],
            policy: vec!["*".into()],
        }))
        .node("ship1")
        .start()
    else {
        return;
    };
    let bastion = fleet.node("bastion");
    let key_path = fleet.dir().join("alice.key");
    let out = bastion.cli(&["keys", "new", "--out", key_path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let public = stdout(&out).trim().to_string();
    let token = issuer().issue(
        "alice",
        &public,
        Role::Operator,
        &["cliCommand:uptime"],
        None,
    );
    std::fs::write(fleet.dir().join("alice.id"), &token).unwrap();
    let key = key_path.to_str().unwrap();

    let out = bastion.cli(&[
        "exec",
        "--key",
        key,
        "-n",
        "ship1",
        "--timeout",
        "20",
        "--",
        "uptime",
    ]);
    assert!(out.status.success(), "{} {}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("load average"), "{}", stdout(&out));

    let marker = fleet.dir().join("alice-shell");
    let script = format!("touch {}", marker.display());
    let out = bastion.cli(&[
        "exec",
        "--key",
        key,
        "-n",
        "ship1",
        "--timeout",
        "20",
        "--",
        "sh",
        "-c",
        &script,
    ]);
    assert!(!out.status.success());
    assert!(
        stdout(&out).contains("alice may not run cliCommand"),
        "{}",
        stdout(&out)
    );
    // Without the operator's signature the bastion's own (empty) grants apply.
    let out = bastion.cli(&["exec", "-n", "ship1", "--timeout", "20", "--", "uptime"]);
    assert!(
        stdout(&out).contains("bastion may not run"),
        "{}",
        stdout(&out)
    );

    // alice's signature on `uptime`, moved onto a shell command by the relay.
    let relay = Client::as_node(&fleet.nats().url(), "bastion", &fleet.data_dir("bastion"));
    let operator = keys::load(&key_path, KeyKind::Member).unwrap();
    let mut message = command("bastion", "ship1", &["uptime"]);
    let at = bosun_methods::clock::now_millis();
    message.signature = Some(bosun_trust::sign_operator(
        &operator,
        at,
        &message.operator_signed_bytes(at),
    ));
    message.signer = Some(token);
    let mut moved = message.clone();
    moved.data = vec!["sh".into(), "-c".into(), script];
    refused(&relay.send(&moved), "does not match the message");
    assert!(!marker.exists(), "nothing ran");
    // A message signed as it is sent runs (the refused id above stays refused).
    let mut fresh = command("bastion", "ship1", &["uptime"]);
    fresh.signature = Some(bosun_trust::sign_operator(
        &operator,
        at,
        &fresh.operator_signed_bytes(at),
    ));
    fresh.signer = message.signer.clone();
    let ack = relay.send(&fresh);
    assert!(ack.rejected.is_none(), "{ack:?}");
}

#[test]
fn the_quick_start_trust_commands_make_a_working_fleet() {
    // As the README says: keys init, two keys issue --into, nodes with --trust/--policy.
    let Some(nats) = bosun_testkit::NatsServer::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let issuer_dir = dir.path().join("issuer");
    let keys = |args: &[&str]| {
        let out = std::process::Command::new(crate::support::bin())
            .arg("keys")
            .args(args)
            .env("BOSUN_ISSUER_DIR", &issuer_dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "keys {args:?}: {}", stderr(&out));
        stdout(&out)
    };
    let issuer_key = keys(&["init"]).trim().to_string();
    assert!(issuer_key.starts_with('O'), "{issuer_key}");
    assert_eq!(keys(&["init"]).trim(), issuer_key, "init is idempotent");
    let central_dir = dir.path().join("central");
    let ship_dir = dir.path().join("ship1");
    keys(&[
        "issue",
        "--name",
        "central",
        "--into",
        central_dir.to_str().unwrap(),
        "--allow",
        "*",
    ]);
    keys(&[
        "issue",
        "--name",
        "ship1",
        "--into",
        ship_dir.to_str().unwrap(),
    ]);
    let shown = keys(&["show"]);
    assert!(
        shown.contains("central") && shown.contains("ship1"),
        "{shown}"
    );
    // The same as JSON, for scripts: the issuer, what it issued, a node's own key and
    // identity.
    let central_data = format!("--data-dir={}", central_dir.display());
    let shown: serde_json::Value =
        serde_json::from_str(&keys(&["show", "--json", &central_data])).unwrap();
    assert_eq!(shown["issuer"]["key"], issuer_key.as_str(), "{shown}");
    let issued: Vec<&str> = shown["issued"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert!(
        issued.contains(&"central") && issued.contains(&"ship1"),
        "{shown}"
    );
    assert_eq!(shown["identity"]["name"], "central", "{shown}");
    assert_eq!(shown["identity"]["grants"], serde_json::json!(["*"]));
    assert_eq!(shown["identity"]["key"], shown["nodeKey"]["key"], "{shown}");
    let start = |name: &str, data: &Path, policy: &str| {
        let mut env = vec![("BOSUN_TRUSTED_ISSUERS", issuer_key.as_str())];
        if !policy.is_empty() {
            env.push(("BOSUN_POLICY", policy));
        }
        bosun_testkit::NodeProcess::start_with_trust(
            &crate::support::bin(),
            name,
            Some(&nats.url()),
            data,
            &env,
            NodeTrust::Untrusted,
        )
    };
    let central = start("central", &central_dir, "");
    let _ship1 = start("ship1", &ship_dir, "central=*");
    let out = central.cli(&[
        "exec",
        "-n",
        "ship1,central",
        "--timeout",
        "30",
        "--",
        "echo",
        "trusted",
    ]);
    assert!(out.status.success(), "{} {}", stdout(&out), stderr(&out));
    assert_eq!(
        stdout(&out).matches("trusted").count(),
        2,
        "{}",
        stdout(&out)
    );
    // ship1's identity grants nothing: it answers, but cannot command central.
    let out = _ship1.cli(&["exec", "-n", "central", "--timeout", "30", "--", "true"]);
    assert!(
        stdout(&out).contains("ship1 may not run"),
        "{}",
        stdout(&out)
    );
    // A key file others can read is refused, as ssh does.
    let key = central_dir.join("node.key");
    let mut perms = std::fs::metadata(&key).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o644);
    std::fs::set_permissions(&key, perms).unwrap();
    let out = std::process::Command::new(crate::support::bin())
        .args(["keys", "show", "--data-dir", central_dir.to_str().unwrap()])
        .env("BOSUN_ISSUER_DIR", &issuer_dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("chmod 600"), "{}", stderr(&out));
}
