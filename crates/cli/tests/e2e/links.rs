//! A node behind a bad link to its broker (the testkit's userspace proxy, since this
//! kernel has no netem): added latency, a stall, a broken connection. Every message
//! still arrives, runs once and in order; and a link that dies silently is noticed by
//! the node's pings.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bosun_testkit::{LinkProxy, NodeSpec, eventually, holds_for};

use crate::support::{fleet, stderr};

fn lines(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn a_node_behind_a_slow_stalled_and_broken_link_gets_every_message_once_in_order() {
    let Some(mut fleet) = fleet().central("lk-a").nodes(&["lk-a"]).start() else {
        return;
    };
    let target: SocketAddr = fleet
        .nats()
        .url()
        .trim_start_matches("nats://")
        .parse()
        .unwrap();
    let proxy = LinkProxy::start(target);
    fleet.add(
        NodeSpec::new("lk-b")
            .broker(proxy.url())
            .env("BOSUN_RECONNECT_MAX_MS", "200"),
    );
    let exec = |argv: &[&str]| {
        let mut args = vec!["exec", "-n", "lk-b"];
        args.extend_from_slice(argv);
        fleet.node("lk-a").cli(&args)
    };

    // Latency: the request and its result each cross the slow link.
    proxy.set_delay(Duration::from_millis(150));
    let t = Instant::now();
    let out = exec(&["--", "true"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "{:?}: the delay was not applied",
        t.elapsed()
    );
    proxy.set_delay(Duration::ZERO);

    // A stall: commands sent meanwhile run once it ends, each once, in order.
    let file = fleet.dir().join("order.txt");
    proxy.stall();
    for n in 1..=5 {
        let line = format!("echo {n} >> {}", file.display());
        let out = exec(&["--no-wait", "--shell", "--", &line]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    holds_for(
        Duration::from_secs(2),
        "nothing arrives while the link is stalled",
        || !file.exists(),
    );
    proxy.resume();
    eventually(Duration::from_secs(30), "all five ran", || {
        (lines(&file).len() == 5).then_some(())
    });
    assert_eq!(lines(&file), ["1", "2", "3", "4", "5"]);

    // A broken link: the node reconnects on its own and delivery goes on.
    proxy.reset();
    let out = exec(&["--", "true"]);
    assert!(out.status.success(), "after a reset: {}", stderr(&out));
    assert_eq!(lines(&file), ["1", "2", "3", "4", "5"], "nothing ran twice");
}

/// Whether the node says its broker connection is up (`{"op":"info"}` on its socket).
fn connected(node: &bosun_testkit::NodeProcess) -> bool {
    crate::support::nc_u(node, r#"{"op":"info"}"#)["connected"] == true
}

#[test]
fn a_link_that_dies_silently_is_noticed_within_a_few_pings_and_remade() {
    let Some(mut fleet) = fleet().central("lp-a").nodes(&["lp-a"]).start() else {
        return;
    };
    let target: SocketAddr = fleet
        .nats()
        .url()
        .trim_start_matches("nats://")
        .parse()
        .unwrap();
    let proxy = LinkProxy::start(target);
    fleet.add(
        NodeSpec::new("lp-b")
            .broker(proxy.url())
            .env("BOSUN_PING_INTERVAL", "1")
            .env("BOSUN_RECONNECT_MAX_MS", "200"),
    );
    assert!(connected(fleet.node("lp-b")));
    // Nothing moves and nothing resets: only the missing answers to pings tell.
    proxy.stall();
    let stalled = Instant::now();
    eventually(
        Duration::from_secs(10),
        "the node notices its dead link",
        || (!connected(fleet.node("lp-b"))).then_some(()),
    );
    assert!(
        stalled.elapsed() <= Duration::from_secs(6),
        "noticed after {:?}: two pings 1 s apart, then the connection timeout",
        stalled.elapsed()
    );
    proxy.resume();
    eventually(
        Duration::from_secs(15),
        "the node is connected again",
        || connected(fleet.node("lp-b")).then_some(()),
    );
    let out = fleet
        .node("lp-a")
        .cli(&["exec", "-n", "lp-b", "--", "true"]);
    assert!(out.status.success(), "{}", stderr(&out));
}
