//! A node behind a bad link to its broker (the testkit's userspace proxy, since this
//! kernel has no netem): added latency, a stall, a broken connection. Every message
//! still arrives, runs once and in order.

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
