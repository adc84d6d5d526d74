//! The broker faults of the harness do what their names say, seen from a client: a
//! frozen `nats-server` accepts no conversation until thawed, a killed one refuses
//! connections, and a restarted one answers on the same address.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::time::Duration;

use bosun_testkit::{NatsServer, eventually, holds_for};

/// Connect and read the server's greeting (`INFO {…}`) within `within`.
fn greeting(port: u16, within: Duration) -> Option<String> {
    let stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(within)).ok()?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).ok()?;
    line.starts_with("INFO").then_some(line)
}

fn port(server: &NatsServer) -> u16 {
    server
        .url()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("url ends in a port")
}

#[test]
fn a_frozen_broker_is_silent_until_thawed() {
    let Some(mut server) = NatsServer::start() else {
        return;
    };
    let port = port(&server);
    assert!(
        greeting(port, Duration::from_secs(5)).is_some(),
        "greets when running"
    );
    server.freeze();
    // The kernel still completes the TCP handshake; the stopped server never greets.
    let stream = TcpStream::connect(("127.0.0.1", port)).expect("backlog accepts");
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut reader = BufReader::new(stream);
    holds_for(
        Duration::from_secs(1),
        "a frozen server says nothing",
        || {
            let mut line = String::new();
            reader.read_line(&mut line).is_err() && line.is_empty()
        },
    );
    server.thaw();
    reader
        .get_ref()
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut line = String::new();
    reader.read_line(&mut line).expect("greeting after thaw");
    assert!(
        line.starts_with("INFO"),
        "the held connection is greeted: {line:?}"
    );
}

#[test]
fn a_killed_broker_refuses_then_restarts_on_the_same_port() {
    let Some(mut server) = NatsServer::start() else {
        return;
    };
    let port = port(&server);
    let url = server.url();
    server.freeze();
    server.kill9();
    assert_eq!(server.pid(), None, "no process after kill9");
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "a killed server refuses connections"
    );
    server.restart();
    assert_eq!(server.url(), url, "same address after restart");
    eventually(
        Duration::from_secs(5),
        "the restarted server greets",
        || greeting(port, Duration::from_secs(1)),
    );
}

#[test]
fn a_stopped_broker_exits_and_resumes() {
    let Some(mut server) = NatsServer::start() else {
        return;
    };
    let port = port(&server);
    let pid = server.pid().expect("running");
    server.freeze();
    server.stop();
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "the stopped server's process is gone (reaped)"
    );
    server.resume();
    assert!(
        greeting(port, Duration::from_secs(5)).is_some(),
        "greets again"
    );
}
