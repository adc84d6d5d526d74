//! The broker's side of trust: a nats-server configured by `bosun_trust::nats` lets each
//! node in with its own key and only onto its own subjects, and nodes reach it over TLS.
//! Refusals are observed where they happen: the broker's `-ERR` to a raw client, or a
//! `bosun node` that exits saying what to set.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use bosun_testkit::{NatsServer, RawNats, poll_until};
use bosun_trust::keys::{self, KeyKind};
use bosun_trust::nats::{NatsUser, try_server_config};

use crate::support::{bin, fleet, stderr, stdout};

/// The key a fleet node was given, read as the node reads it.
fn node_key(dir: &Path) -> nkeys::KeyPair {
    keys::load(&dir.join("node.key"), KeyKind::Member).expect("the node's key")
}

/// Run `bosun node` in `data_dir` on `broker` with `env`, expecting it to give up: its
/// exit code and stderr. Fails when it is still running after 30 s.
fn node_refused(data_dir: &Path, broker: &str, env: &[(&str, &str)]) -> (Option<i32>, String) {
    let log = data_dir.with_extension("stderr");
    let mut child = Command::new(bin())
        .args(["node", "--name", "lonely", "--data-dir"])
        .arg(data_dir)
        .args(["--broker", broker])
        .env_remove("BOSUN_CONFIG")
        .env_remove("BOSUN_NKEY_SEED_FILE")
        .env_remove("BOSUN_TLS_CA")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("create the stderr file"))
        .spawn()
        .expect("spawn bosun node");
    let status = poll_until(Duration::from_secs(30), || child.try_wait().ok().flatten());
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    eprintln!("bosun node said: {text}");
    let status = status.unwrap_or_else(|| panic!("bosun node kept running: {text}"));
    (status.code(), text)
}

#[test]
fn a_fleet_on_a_locked_down_broker_works_and_each_node_keeps_to_its_own_subjects() {
    let Some(fleet) = fleet()
        .central("central")
        .nodes(&["central", "ship1", "ship2"])
        .nats_permissions()
        .start()
    else {
        return;
    };
    // Requests, ACKs, status notes, results and hellos all pass the broker's permissions.
    let out = fleet
        .node("ship1")
        .cli(&["exec", "-n", "ship2,central", "--", "echo", "across"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out).matches("across").count(),
        2,
        "{}",
        stdout(&out)
    );

    let url = fleet.nats().url();
    let ship1 = node_key(&fleet.data_dir("ship1"));
    let (mut raw, connected) = RawNats::connect(&url, Some(&ship1));
    assert!(connected.accepted(), "ship1's key is let in: {connected:?}");
    // What ship1 needs is allowed.
    for (subject, sid) in [("bosun.ship1.>", 1), ("_INBOX.ship1.>", 2)] {
        let answer = raw.subscribe(subject, sid);
        assert!(answer.accepted(), "SUB {subject}: {answer:?}");
    }
    for subject in ["bosun.ship2.ping", "bosun.central._status"] {
        let answer = raw.publish(subject, b"{}");
        assert!(answer.accepted(), "PUB {subject}: {answer:?}");
    }
    // Reading another node's requests or answers is refused by the broker.
    for (subject, sid) in [
        ("bosun.ship2.>", 3),
        ("bosun.*.cliCommand", 4),
        ("_INBOX.ship2.>", 5),
        ("_INBOX.>", 6),
        (">", 7),
    ] {
        let answer = raw.subscribe(subject, sid);
        let errors = answer.errors();
        assert!(
            errors.len() == 1 && errors[0].contains("Permissions Violation for Subscription"),
            "SUB {subject}: {answer:?}"
        );
    }
    // So is publishing outside bosun's subjects, or into another node's answers.
    for subject in [
        "_INBOX.ship2.abc.def",
        "bosun.ship2.a.b",
        "elsewhere",
        "$SYS.REQ.x",
    ] {
        let answer = raw.publish(subject, b"forged");
        let errors = answer.errors();
        assert!(
            errors.len() == 1 && errors[0].contains("Permissions Violation for Publish"),
            "PUB {subject}: {answer:?}"
        );
    }

    // Nobody gets in without a key the broker knows.
    for key in [None, Some(KeyKind::Member.generate())] {
        let (_, answer) = RawNats::connect(&url, key.as_ref());
        assert!(!answer.pong, "the broker hangs up: {answer:?}");
        assert!(
            answer
                .errors()
                .iter()
                .any(|e| e.contains("Authorization Violation")),
            "{answer:?}"
        );
    }

    // The fleet still works after all that.
    let out = fleet
        .node("ship2")
        .cli(&["exec", "-n", "ship1", "--", "echo", "still"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("still"));
}

#[test]
fn a_node_whose_subjects_the_broker_does_not_allow_says_so_in_its_log() {
    // The broker's configuration was made for the prefix `bosun`; ship1 uses another.
    let Some(fleet) = fleet()
        .node("central")
        .node(bosun_testkit::NodeSpec::new("ship1").env("BOSUN_SUBJECT_PREFIX", "blue"))
        .nats_permissions()
        .start()
    else {
        return;
    };
    let ship1 = fleet.node("ship1");
    let log = bosun_testkit::eventually(
        Duration::from_secs(20),
        "ship1 logs the broker's refusal of its subscription",
        || {
            let log = std::fs::read_to_string(ship1.log_path()).unwrap_or_default();
            log.contains("Permissions Violation for Subscription to \"blue.ship1.>\"")
                .then_some(log)
        },
    );
    assert!(log.contains("bosun keys nats-config --prefix"), "{log}");
}

#[test]
fn a_node_the_broker_does_not_know_is_told_what_to_set() {
    let key = KeyKind::Member.generate();
    let config = try_server_config(
        "bosun",
        &[NatsUser {
            name: "known".into(),
            nkey: key.public_key(),
        }],
    )
    .unwrap();
    let Some(nats) = NatsServer::start_with_config(&config) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();

    // No key set: the error names the setting and the node's own key file.
    let data_dir = dir.path().join("nokey");
    let (code, text) = node_refused(&data_dir, &nats.url(), &[]);
    assert_ne!(code, Some(0), "{text}");
    let own = data_dir.join("node.key");
    assert!(
        text.contains(&format!("nkey_seed_file = \"{}\"", own.display())),
        "{text}"
    );
    assert!(text.contains("demands a key"), "{text}");

    // Its own key, which the broker does not list: the error gives the public key.
    let data_dir = dir.path().join("unlisted");
    let own = data_dir.join("node.key");
    let (code, text) = node_refused(
        &data_dir,
        &nats.url(),
        &[("BOSUN_NKEY_SEED_FILE", own.to_str().unwrap())],
    );
    assert_ne!(code, Some(0), "{text}");
    let public = node_key(&data_dir).public_key();
    assert!(text.contains("not among its users"), "{text}");
    assert!(text.contains(&public), "{text}");
    assert!(text.contains("bosun keys nats-config"), "{text}");

    // A seed file others can read is refused before anything is sent.
    let open = dir.path().join("open.key");
    std::fs::write(&open, key.seed().unwrap()).unwrap();
    let (code, text) = node_refused(
        &dir.path().join("open"),
        &nats.url(),
        &[("BOSUN_NKEY_SEED_FILE", open.to_str().unwrap())],
    );
    assert_ne!(code, Some(0), "{text}");
    assert!(text.contains("chmod 600"), "{text}");
}

/// A CA and the files TLS tests need, made fresh in a temporary folder.
struct Pki {
    dir: tempfile::TempDir,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "bosun test CA");
        let ca = params.self_signed(&ca_key).unwrap();
        let pki = Pki {
            dir,
            issuer: rcgen::Issuer::new(params, ca_key),
        };
        pki.write("ca.pem", &ca.pem());
        pki
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Write a file readable by its owner only: keys must be, and certificates may be.
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(
            &path,
            <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o600),
        )
        .unwrap();
        path
    }

    /// A certificate for `names` signed by this CA: (cert file, key file).
    fn issue(&self, stem: &str, names: &[&str]) -> (PathBuf, PathBuf) {
        let key = rcgen::KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let params = rcgen::CertificateParams::new(names).unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (
            self.write(&format!("{stem}.pem"), &cert.pem()),
            self.write(&format!("{stem}-key.pem"), &key.serialize_pem()),
        )
    }
}

#[test]
fn nodes_reach_the_broker_over_tls_and_untrusted_or_plain_brokers_are_refused() {
    let pki = Pki::new();
    let (cert, key) = pki.issue("server", &["127.0.0.1", "localhost"]);
    let tls = format!(
        "tls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n}}\n",
        cert.display(),
        key.display()
    );
    let ca = pki.path("ca.pem").display().to_string();
    let Some(fleet) = fleet()
        .central("central")
        .node(bosun_testkit::NodeSpec::new("central").env("BOSUN_TLS_CA", &ca))
        .node(bosun_testkit::NodeSpec::new("ship1").env("BOSUN_TLS_CA", &ca))
        .nats_config(&tls)
        .start()
    else {
        return;
    };
    let out = fleet
        .node("ship1")
        .cli(&["exec", "-n", "central", "--", "echo", "over tls"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("over tls"));

    // A CA that did not sign the broker's certificate.
    let other = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let other_ca = other.path("ca.pem");
    let (code, text) = node_refused(
        &dir.path().join("wrong-ca"),
        &fleet.nats().url(),
        &[("BOSUN_TLS_CA", other_ca.to_str().unwrap())],
    );
    assert_ne!(code, Some(0), "{text}");
    assert!(text.contains("not trusted"), "{text}");
    assert!(
        text.contains(&format!("tls_ca = \"{}\"", other_ca.display())),
        "{text}"
    );

    // No CA at all: the broker's certificate cannot be checked, and the error says so.
    let (code, text) = node_refused(&dir.path().join("no-ca"), &fleet.nats().url(), &[]);
    assert_ne!(code, Some(0), "{text}");
    assert!(text.contains("set tls_ca"), "{text}");

    // A CA file that does not exist.
    let (code, text) = node_refused(
        &dir.path().join("missing-ca"),
        &fleet.nats().url(),
        &[("BOSUN_TLS_CA", "/nonexistent/ca.pem")],
    );
    assert_ne!(code, Some(0), "{text}");
    assert!(
        text.contains("tls_ca = \"/nonexistent/ca.pem\" cannot be read"),
        "{text}"
    );

    // require_tls against a broker without TLS.
    let Some(plain) = NatsServer::start() else {
        return;
    };
    let data_dir = dir.path().join("plain");
    std::fs::create_dir_all(&data_dir).unwrap();
    std::fs::write(data_dir.join("bosun.toml"), "require_tls = true\n").unwrap();
    let (code, text) = node_refused(&data_dir, &plain.url(), &[]);
    assert_ne!(code, Some(0), "{text}");
    assert!(text.contains("does not speak TLS"), "{text}");
    assert!(text.contains("require_tls"), "{text}");
}

#[test]
fn mutual_tls_needs_the_nodes_client_certificate() {
    let pki = Pki::new();
    let (cert, key) = pki.issue("server", &["127.0.0.1"]);
    let (client_cert, client_key) = pki.issue("ship1", &["ship1"]);
    let ca = pki.path("ca.pem");
    let tls = format!(
        "tls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n  ca_file: \"{}\"\n  verify: true\n}}\n",
        cert.display(),
        key.display(),
        ca.display()
    );
    let env = |spec: bosun_testkit::NodeSpec| {
        spec.env("BOSUN_TLS_CA", ca.to_str().unwrap())
            .env("BOSUN_TLS_CERT", client_cert.to_str().unwrap())
            .env("BOSUN_TLS_KEY", client_key.to_str().unwrap())
    };
    let Some(fleet) = fleet()
        .central("central")
        .node(env("central".into()))
        .node(env("ship1".into()))
        .nats_config(&tls)
        .start()
    else {
        return;
    };
    let out = fleet
        .node("central")
        .cli(&["exec", "-n", "ship1", "--", "echo", "mutual"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("mutual"));

    // The right CA but no client certificate: the broker refuses the handshake.
    let dir = tempfile::tempdir().unwrap();
    let (code, text) = node_refused(
        &dir.path().join("no-cert"),
        &fleet.nats().url(),
        &[("BOSUN_TLS_CA", ca.to_str().unwrap())],
    );
    assert_ne!(code, Some(0), "{text}");
    assert!(text.contains("client certificate"), "{text}");
    assert!(text.contains("tls_cert"), "{text}");
}

/// `bosun …` with the issuer's folder set; stdout, after checking it succeeded.
fn keys(issuer_dir: &Path, args: &[&str]) -> String {
    let out = Command::new(bin())
        .args(args)
        .env("BOSUN_ISSUER_DIR", issuer_dir)
        .env_remove("BOSUN_CONFIG")
        .output()
        .expect("run bosun");
    assert!(out.status.success(), "bosun {args:?}: {}", stderr(&out));
    stdout(&out)
}

#[test]
fn the_documented_workflow_locks_the_broker_to_the_issued_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let issuer_dir = dir.path().join("issuer");
    let issuer = keys(&issuer_dir, &["keys", "init"]).trim().to_string();
    let data = |name: &str| dir.path().join(name);
    for name in ["central", "ship1"] {
        let into = data(name);
        keys(
            &issuer_dir,
            &[
                "keys",
                "issue",
                "--name",
                name,
                "--into",
                into.to_str().unwrap(),
                "--allow",
                "*",
            ],
        );
    }
    let alice_key = dir.path().join("alice.key");
    let alice = keys(
        &issuer_dir,
        &["keys", "new", "--out", alice_key.to_str().unwrap()],
    );
    let alice = alice.trim();
    keys(
        &issuer_dir,
        &[
            "keys", "issue", "--name", "alice", "--role", "operator", "--pub", alice,
        ],
    );
    let config = keys(&issuer_dir, &["keys", "nats-config"]);
    for name in ["central", "ship1"] {
        let public = node_key(&data(name)).public_key();
        assert!(config.contains(&public), "{name} is a user: {config}");
    }
    assert!(
        !config.contains(alice),
        "operators do not connect: {config}"
    );

    let Some(nats) = NatsServer::start_with_config(&config) else {
        return;
    };
    let start = |name: &str| {
        let key_file = data(name).join("node.key");
        bosun_testkit::NodeProcess::start_with_trust(
            &bin(),
            name,
            Some(&nats.url()),
            &data(name),
            &[
                ("BOSUN_TRUSTED_ISSUERS", &issuer),
                ("BOSUN_POLICY", "*"),
                ("BOSUN_NKEY_SEED_FILE", key_file.to_str().unwrap()),
            ],
            bosun_testkit::NodeTrust::Untrusted,
        )
    };
    let central = start("central");
    let _ship1 = start("ship1");
    let out = central.cli(&["exec", "-n", "ship1", "--", "echo", "issued"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("issued"));

    let alice = keys::load(&alice_key, KeyKind::Member).unwrap();
    let (_, answer) = RawNats::connect(&nats.url(), Some(&alice));
    assert!(
        answer
            .errors()
            .iter()
            .any(|e| e.contains("Authorization Violation")),
        "an operator's key does not open the broker: {answer:?}"
    );
}
