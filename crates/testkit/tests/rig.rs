//! The namespace rig itself: hosts reach each other, and each link fault does what it
//! says, and nothing is left behind.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use bosun_testkit::{Rig, in_netns};

/// Accept connections on `port` of `host` and echo what arrives, until dropped.
fn echo_server(netns: &str, address: std::net::SocketAddr) {
    let listener = in_netns(netns, || TcpListener::bind(address).expect("bind"));
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut stream = stream;
                let mut buf = [0u8; 65536];
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 || stream.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
}

fn reaches(netns: &str, to: std::net::SocketAddr) -> bool {
    in_netns(netns, || {
        TcpStream::connect_timeout(&to, Duration::from_millis(500)).is_ok()
    })
}

#[test]
fn hosts_talk_and_every_link_fault_bites_and_goes() {
    let Some(mut rig) = Rig::new() else {
        return;
    };
    let a = rig.host("a");
    let b = rig.host("b");
    assert_ne!(a.address, b.address);
    echo_server(&a.netns, a.at(9000));
    assert!(reaches(&b.netns, a.at(9000)), "b reaches a");
    assert!(
        !reaches(&b.netns, "127.0.0.1:9000".parse().unwrap()),
        "a's port is not on b's loopback: separate hosts"
    );

    rig.partition(&a, &b);
    assert!(!reaches(&b.netns, a.at(9000)), "partitioned");
    rig.heal(&a, &b);
    assert!(reaches(&b.netns, a.at(9000)), "healed");

    rig.isolate(&b);
    assert!(!reaches(&b.netns, a.at(9000)), "isolated");
    rig.clear(&b);
    assert!(reaches(&b.netns, a.at(9000)), "cleared");

    rig.loss(&b, &a, 30);
    let rules = rig.rules_in(&b);
    let probabilities: Vec<f64> = rules
        .split("--probability ")
        .skip(1)
        .filter_map(|rest| rest.split_whitespace().next()?.parse().ok())
        .collect();
    assert_eq!(probabilities.len(), 2, "one rule each way: {rules}");
    assert!(
        probabilities.iter().all(|p| (p - 0.3).abs() < 0.001),
        "{rules}"
    );
    rig.clear(&b);
    assert!(!rig.rules_in(&b).contains("DROP"));

    // 800 kbit/s: 200 KB cannot leave b in less than about 2 s.
    rig.bandwidth(&b, 800);
    let started = Instant::now();
    in_netns(&b.netns, || {
        let mut stream = TcpStream::connect(a.at(9000)).unwrap();
        let block = vec![7u8; 200_000];
        let mut back = vec![0u8; block.len()];
        let reader = {
            let mut stream = stream.try_clone().unwrap();
            std::thread::spawn(move || {
                stream.read_exact(&mut back).unwrap();
            })
        };
        stream.write_all(&block).unwrap();
        reader.join().unwrap();
    });
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "tbf limited the rate: {:?}",
        started.elapsed()
    );
    rig.clear(&b);

    // A proxy inside b adds latency on b's way to a.
    let proxy = rig.proxy(&b, a.at(9000));
    proxy.set_delay(Duration::from_millis(200));
    let address: std::net::SocketAddr = proxy.url().trim_start_matches("nats://").parse().unwrap();
    let round_trip = in_netns(&b.netns, || {
        let mut stream = TcpStream::connect(address).unwrap();
        let started = Instant::now();
        stream.write_all(b"ping").unwrap();
        let mut back = [0u8; 4];
        stream.read_exact(&mut back).unwrap();
        started.elapsed()
    });
    assert!(round_trip >= Duration::from_millis(400), "{round_trip:?}");
    drop(proxy);

    let prefix = rig.prefix().to_string();
    assert_eq!(rig.namespaces().len(), 3, "switch, a, b");
    drop(rig);
    let left = std::fs::read_dir("/run/netns")
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
                .count()
        })
        .unwrap_or(0);
    assert_eq!(left, 0, "nothing left behind");
}
