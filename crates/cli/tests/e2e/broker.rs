//! The broker as a security and separation boundary: nkey authentication and subject
//! prefixes.

use std::os::unix::fs::PermissionsExt;

use bosun_testkit::NodeSpec;

use crate::support::{fleet, stderr, stdout};

#[test]
fn nkey_authentication_is_wired_from_a_seed_file() {
    let user = nkeys::KeyPair::new_user();
    let config = format!(
        "authorization {{ users = [ {{ nkey: \"{}\" }} ] }}\n",
        user.public_key()
    );
    let seed_dir = tempfile::tempdir().unwrap();
    let seed = seed_dir.path().join("ship.nk");
    std::fs::write(&seed, user.seed().unwrap()).unwrap();
    // A seed others may read is refused at start, with the fix.
    std::fs::set_permissions(&seed, std::fs::Permissions::from_mode(0o644)).unwrap();
    let loose = std::process::Command::new(crate::support::bin())
        .args(["node", "--name", "loose", "--broker", "nats://127.0.0.1:1"])
        .arg("--data-dir")
        .arg(seed_dir.path().join("loose"))
        .arg("--nkey-seed-file")
        .arg(&seed)
        .output()
        .unwrap();
    assert!(!loose.status.success());
    assert!(stderr(&loose).contains("chmod 600"), "{}", stderr(&loose));
    std::fs::set_permissions(&seed, std::fs::Permissions::from_mode(0o600)).unwrap();
    let seed = seed.to_str().unwrap();
    let Some(fleet) = fleet()
        .nats_config(&config)
        .node(NodeSpec::new("central").env("BOSUN_NKEY_SEED_FILE", seed))
        .node(NodeSpec::new("ship1").env("BOSUN_NKEY_SEED_FILE", seed))
        .start()
    else {
        return;
    };
    let out = fleet.node("central").cli(&[
        "exec",
        "-n",
        "ship1",
        "--timeout",
        "20",
        "--",
        "echo",
        "authenticated",
    ]);
    assert!(out.status.success(), "{} {}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("authenticated"));

    // A node without the seed, or with one others can read, is refused and stops at
    // start saying what to set: crates/cli/tests/e2e/nats.rs.
}

#[test]
fn the_subject_prefix_separates_fleets_on_one_broker() {
    let Some(fleet) = fleet()
        .node(NodeSpec::new("central").env("BOSUN_SUBJECT_PREFIX", "blue"))
        .node(NodeSpec::new("ship1").env("BOSUN_SUBJECT_PREFIX", "blue"))
        .node(NodeSpec::new("ship2").env("BOSUN_SUBJECT_PREFIX", "green"))
        .start()
    else {
        return;
    };
    let central = fleet.node("central");
    let out = central.cli(&["exec", "-n", "ship1", "--", "echo", "blue fleet"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = central.cli(&["exec", "-n", "ship2", "--timeout", "2", "--", "true"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "ship2 listens under another prefix"
    );
}

/// How many times the node's log says it (re)connected to the broker.
fn connections(fleet: &bosun_testkit::Fleet, node: &str) -> usize {
    std::fs::read_to_string(fleet.node(node).log_path())
        .unwrap_or_default()
        .matches("connected to the broker")
        .count()
}

#[test]
fn after_a_long_broker_crash_nodes_are_back_within_their_reconnect_max() {
    let spec = |name: &str| NodeSpec::new(name).env("BOSUN_RECONNECT_MAX_MS", "300");
    let Some(mut fleet) = fleet()
        .central("rc-a")
        .node(spec("rc-a"))
        .node(spec("rc-b"))
        .start()
    else {
        return;
    };
    let out = fleet
        .node("rc-a")
        .cli(&["exec", "-n", "rc-b", "--", "true"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let before = [connections(&fleet, "rc-a"), connections(&fleet, "rc-b")];
    fleet.nats_mut().kill9();
    // Six seconds down: long enough for the client library's own waits to reach
    // seconds; nobody can connect meanwhile.
    bosun_testkit::holds_for(
        std::time::Duration::from_secs(6),
        "no node connects while the broker is down",
        || [connections(&fleet, "rc-a"), connections(&fleet, "rc-b")] == before,
    );
    fleet.nats_mut().restart();
    let back = std::time::Instant::now();
    let took = bosun_testkit::eventually(
        std::time::Duration::from_secs(20),
        "both nodes connected again",
        || {
            (connections(&fleet, "rc-a") > before[0] && connections(&fleet, "rc-b") > before[1])
                .then(|| back.elapsed())
        },
    );
    // Waits of at most 300 ms (less a random share): back well within a second and a
    // half, where the client library's own 4 s waits would not be.
    assert!(
        took < std::time::Duration::from_millis(1500),
        "back after {took:?}"
    );
    let out = fleet
        .node("rc-a")
        .cli(&["exec", "-n", "rc-b", "--", "true"]);
    assert!(out.status.success(), "{}", stderr(&out));
}
