//! `prune`: how long pruning holds the store's writer. A store with `messages` finished
//! sent and as many finished received records, all past retention, is pruned while a
//! probe records a received message (as an arrival before its ACK does) every
//! millisecond; prints the longest prune op, the probe's longest wait and the total.

use std::time::{Duration, Instant};

use bosun_core::Event;
use bosun_proto::{Message, Outcome, Status};
use bosun_store::{PruneCursor, PruneLimits, Store};

fn message(to: &str, data: &str) -> Message {
    Message {
        id: Some(bosun_proto::new_id()),
        to_node: Some(to.into()),
        from_node: Some("peer".into()),
        method: "ping".into(),
        data: vec![data.into()],
        ttl: Some(60),
        ..Default::default()
    }
}

/// Fill the store with `n` finished sent and `n` finished received records at time 1.
async fn fill(store: &Store, n: usize) {
    let payload = "x".repeat(200);
    for start in (0..n).step_by(1000) {
        let count = 1000.min(n - start);
        let sent: Vec<Message> = (0..count).map(|_| message("a", &payload)).collect();
        let ids: Vec<String> = sent.iter().map(|m| m.id().to_string()).collect();
        store.submit(sent, 1).await.expect("submit");
        let mut tasks = Vec::new();
        for id in ids {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                store
                    .sent_event(&id, Event::Finished(Status::Done), 2, None, None)
                    .await
            }));
        }
        for _ in 0..count {
            let store = store.clone();
            let m = message("me", &payload);
            tasks.push(tokio::spawn(async move {
                let id = m.id().to_string();
                store.receive(m, 1).await?;
                let done = Outcome::bare(Status::Done, "me", "ok", 2);
                store.finish(&id, done, None, 2).await.map(|_| ())
            }));
        }
        for t in tasks {
            t.await.expect("task").expect("store write");
        }
    }
}

pub(crate) async fn bench_prune(messages: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("bench.redb")).expect("open store");
    let filled = Instant::now();
    fill(&store, messages).await;
    let records = messages * 2;
    println!(
        "prune: {records} finished records written in {:.1} s",
        filled.elapsed().as_secs_f64()
    );

    // The probe: one durable arrival at a time, as the receiver records before an ACK.
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let probe_store = store.clone();
    let probe = tokio::spawn(async move {
        let mut longest = Duration::ZERO;
        let mut count = 0u32;
        loop {
            let start = Instant::now();
            probe_store
                .receive(message("me", "probe"), 10)
                .await
                .expect("probe receive");
            longest = longest.max(start.elapsed());
            count += 1;
            tokio::select! {
                _ = &mut stopped => return (longest, count),
                _ = tokio::time::sleep(Duration::from_millis(1)) => {}
            }
        }
    });

    let started = Instant::now();
    let now = 1_000_000_000_000;
    let mut cursor = PruneCursor::new(100, now, PruneLimits::default());
    let (mut ops, mut pruned) = (0u32, 0u64);
    let mut op_ms = Vec::new();
    let mut longest_scan = Duration::ZERO;
    loop {
        let scan_store = store.clone();
        let scan_start = Instant::now();
        let (batch, back) = tokio::task::spawn_blocking(move || {
            let batch = scan_store.prune_scan(&mut cursor).expect("scan");
            (batch, cursor)
        })
        .await
        .expect("scan task");
        cursor = back;
        longest_scan = longest_scan.max(scan_start.elapsed());
        let Some(batch) = batch else { break };
        let op_start = Instant::now();
        pruned += store.prune_batch(batch).await.expect("prune batch");
        op_ms.push(op_start.elapsed().as_secs_f64() * 1000.0);
        ops += 1;
    }
    let total = started.elapsed();
    let _ = stop.send(());
    let (probe_longest, probes) = probe.await.expect("probe");
    println!(
        "prune: {pruned} of {records} records pruned in {ops} ops over {:.2} s; \
         writer op (answer included) median {:.1} ms, p99 {:.1} ms, longest {:.1} ms; \
         longest scan {:.1} ms (reader, off the writer); {probes} arrivals recorded \
         meanwhile, longest {:.1} ms",
        total.as_secs_f64(),
        crate::median(&mut op_ms),
        crate::percentile(&mut op_ms, 0.99),
        op_ms.iter().copied().fold(0.0, f64::max),
        longest_scan.as_secs_f64() * 1000.0,
        probe_longest.as_secs_f64() * 1000.0,
    );
    store.close().await.expect("close");
}
