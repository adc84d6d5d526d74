use bosun_core::Event;
use bosun_proto::{Message, Millis, Outcome, State, Status};

use super::*;
use crate::{Receipt, Store};

fn msg(to: &str) -> Message {
    Message {
        id: Some(bosun_proto::new_id()),
        to_node: Some(to.into()),
        from_node: Some("peer".into()),
        method: "ping".into(),
        ..Default::default()
    }
}

fn done() -> Outcome {
    Outcome::bare(Status::Done, "there", "x", 5)
}

fn open() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("n.redb")).unwrap();
    (dir, store)
}

/// `n` messages sent by this node, submitted at `at` and finished at `at + 1`, each
/// carrying `data_len` bytes.
async fn finished_sent(store: &Store, n: usize, at: Millis, data_len: usize) -> Vec<String> {
    let messages: Vec<Message> = (0..n)
        .map(|_| Message {
            data: vec!["d".repeat(data_len)],
            ..msg("a")
        })
        .collect();
    let ids: Vec<String> = messages.iter().map(|m| m.id().to_string()).collect();
    store.submit(messages, at).await.unwrap();
    let tasks: Vec<_> = ids
        .iter()
        .map(|id| {
            let (store, id) = (store.clone(), id.clone());
            tokio::spawn(async move {
                store
                    .sent_event(&id, Event::Finished(Status::Done), at + 1, None, None)
                    .await
                    .unwrap()
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    ids
}

/// `n` messages received at `at` and finished at `finished`, with the given ttl.
async fn finished_received(
    store: &Store,
    n: usize,
    at: Millis,
    finished: Millis,
    ttl: Option<u64>,
) -> Vec<String> {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let m = Message {
                    ttl,
                    data: vec!["payload".into()],
                    ..msg("me")
                };
                let id = m.id().to_string();
                store.receive(m, at).await.unwrap();
                store.finish(&id, done(), None, finished).await.unwrap();
                id
            })
        })
        .collect();
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.unwrap());
    }
    ids
}

/// Prune op by op as the node does; returns the count and every batch applied.
async fn prune_in_ops(
    store: &Store,
    before: Millis,
    now: Millis,
    limits: PruneLimits,
) -> (u64, Vec<PruneBatch>) {
    let mut cursor = PruneCursor::new(before, now, limits);
    let (mut pruned, mut batches) = (0, Vec::new());
    while let Some(batch) = store.prune_scan(&mut cursor).unwrap() {
        batches.push(batch.clone());
        pruned += store.prune_batch(batch).await.unwrap();
    }
    (pruned, batches)
}

#[tokio::test]
async fn each_prune_op_names_at_most_the_bound_and_many_records_take_many_ops() {
    let (_dir, store) = open();
    let sent = finished_sent(&store, 1_200, 1, 0).await;
    let received = finished_received(&store, 700, 1, 2, None).await;
    let (pruned, batches) = prune_in_ops(&store, 100, 200, PruneLimits::default()).await;
    assert_eq!(pruned, 1_900);
    assert!(
        batches
            .iter()
            .all(|b| b.len() <= PruneLimits::default().ids),
        "sizes {:?}",
        batches.iter().map(PruneBatch::len).collect::<Vec<_>>()
    );
    assert_eq!(batches.len(), 4, "1,900 records at 500 per op");
    // Every record was named once.
    let mut named: Vec<&str> = batches.iter().flat_map(PruneBatch::ids).collect();
    named.sort_unstable();
    named.dedup();
    assert_eq!(named.len(), 1_900);
    for id in &sent {
        assert!(store.sent(id).unwrap().is_none(), "{id} pruned");
    }
    for id in &received {
        let tomb = store.inbox(id).unwrap().expect("a tombstone stays");
        assert_eq!(tomb, tombstone(&tomb), "{id} shrunk");
    }
    // Nothing left: the next prune names nothing.
    let (again, batches) = prune_in_ops(&store, 100, 200, PruneLimits::default()).await;
    assert_eq!((again, batches.len()), (0, 0));
}

#[tokio::test]
async fn a_prune_op_holds_at_most_the_byte_bound_unless_one_record_is_bigger() {
    let (_dir, store) = open();
    let small = finished_sent(&store, 60, 1, 1_000).await;
    let big = finished_sent(&store, 2, 1, 20_000).await;
    let limits = PruneLimits {
        ids: 1_000,
        bytes: 8_000,
    };
    let (pruned, batches) = prune_in_ops(&store, 100, 200, limits).await;
    assert_eq!(pruned, 62);
    for b in &batches {
        assert!(
            b.bytes() <= limits.bytes || b.len() == 1,
            "{} records, {} bytes",
            b.len(),
            b.bytes()
        );
    }
    // About 7 small records fit per op: 60 of them need at least 8 ops, the big ones
    // one each.
    assert!(batches.len() >= 10, "{} ops", batches.len());
    assert!(batches.iter().filter(|b| b.bytes() > limits.bytes).count() == 2);
    for id in small.iter().chain(&big) {
        assert!(store.sent(id).unwrap().is_none());
    }
}

#[tokio::test]
async fn records_changed_or_created_after_the_scan_are_left_alone() {
    let (_dir, store) = open();
    let sent = finished_sent(&store, 3, 1, 0).await;
    let received = finished_received(&store, 2, 1, 2, Some(1)).await;
    // Fresh records, made before the scan but inside the retention.
    let fresh = finished_sent(&store, 2, 150, 0).await;
    let limits = PruneLimits::default();
    // Tombstones of `received` may go at 1 + 1 s + the margin.
    let now = 1 + 1_000 + TOMBSTONE_MARGIN_MS;
    let mut cursor = PruneCursor::new(100, now, limits);
    let batch = store.prune_scan(&mut cursor).unwrap().expect("a batch");
    assert!(store.prune_scan(&mut cursor).unwrap().is_none());
    let named: Vec<&str> = batch.ids().collect();
    assert_eq!(named.len(), 5);
    assert!(fresh.iter().all(|id| !named.contains(&id.as_str())));

    // Meanwhile: sent[0] gets a late ACK (its history moves past the retention's start),
    // the batch is applied once, then sent[1] is submitted again and received[0]
    // arrives again, as new records under the same ids.
    store.note(&sent[0], vec![(Event::Acked, 500, None)]);
    assert_eq!(store.prune_batch(batch.clone()).await.unwrap(), 4);
    assert!(store.sent(&sent[0]).unwrap().is_some(), "changed: kept");
    assert!(store.sent(&sent[2]).unwrap().is_none());
    assert!(store.inbox(&received[1]).unwrap().is_none(), "forgotten");

    let again = Message {
        id: Some(sent[1].clone()),
        ..msg("a")
    };
    store.submit(vec![again], 300).await.unwrap();
    let mut back = msg("me");
    back.id = Some(received[0].clone());
    assert_eq!(
        store.receive(back, 300).await.unwrap(),
        Receipt::New(store.inbox(&received[0]).unwrap().unwrap().seq)
    );
    assert_eq!(store.prune_batch(batch).await.unwrap(), 0);
    assert_eq!(store.sent(&sent[1]).unwrap().unwrap().state, State::Queued);
    assert_eq!(
        store.inbox(&received[0]).unwrap().unwrap().state,
        State::Received
    );
    for id in &fresh {
        assert!(store.sent(id).unwrap().is_some());
    }
}

#[tokio::test]
async fn a_tombstone_goes_at_arrival_plus_ttl_plus_margin_and_not_before() {
    let (_dir, store) = open();
    // Arrived at 1,000 with a 60 s ttl; finished much later, which does not count.
    let ids = finished_received(&store, 1, 1_000, 30_000, Some(60)).await;
    let id = &ids[0];
    let forget = 1_000 + 60_000 + TOMBSTONE_MARGIN_MS;
    assert_eq!(forget_at(&store.inbox(id).unwrap().unwrap()), Some(forget));

    // Inside the retention nothing happens, however late it is.
    store.prune(20_000, forget * 2, || true).await.unwrap();
    assert_eq!(
        store.inbox(id).unwrap().unwrap().message.data,
        vec!["payload".to_string()]
    );

    // Past the retention, a moment before its time: a tombstone that keeps the ttl and
    // the arrival, and still refuses a resend.
    assert_eq!(store.prune(40_000, forget - 1, || true).await.unwrap(), 1);
    let tomb = store.inbox(id).unwrap().unwrap();
    assert!(tomb.message.data.is_empty() && tomb.outcome.is_none());
    assert_eq!(tomb.message.ttl, Some(60));
    assert_eq!(tomb.history.first().map(|h| h.at), Some(1_000));
    assert_eq!(forget_at(&tomb), Some(forget));
    let mut resend = msg("me");
    resend.id = Some(id.clone());
    assert_eq!(
        store.receive(resend, forget - 1).await.unwrap(),
        Receipt::Duplicate(State::Done)
    );
    assert_eq!(store.prune(40_000, forget - 1, || true).await.unwrap(), 0);
    assert!(store.inbox(id).unwrap().is_some());

    // At its time it goes.
    assert_eq!(store.prune(40_000, forget, || true).await.unwrap(), 1);
    assert!(store.inbox(id).unwrap().is_none());
}

#[tokio::test]
async fn an_absorbed_hello_with_a_ttl_is_forgotten_and_one_without_stays() {
    let (_dir, store) = open();
    let hello = |ttl| Message {
        method: "hello".into(),
        ttl,
        ..msg("central")
    };
    let with_ttl = hello(Some(60));
    let without = hello(None);
    let zero = hello(Some(0));
    for m in [&with_ttl, &without, &zero] {
        store.absorb(m.clone(), 1_000, None).await.unwrap();
    }
    let now = 1_000 + 60_000 + TOMBSTONE_MARGIN_MS;
    store.prune(2_000, now, || true).await.unwrap();
    assert!(store.inbox(with_ttl.id()).unwrap().is_none());
    // Far later still, the ones without a ttl are kept: a resend could come any time.
    store.prune(2_000, Millis::MAX / 2, || true).await.unwrap();
    for m in [&without, &zero] {
        assert!(store.inbox(m.id()).unwrap().is_some(), "no ttl: kept");
        assert_eq!(
            store.receive(m.clone(), now).await.unwrap(),
            Receipt::Duplicate(State::Done)
        );
    }
}

#[test]
fn an_id_cancelled_before_it_arrived_uses_its_own_margin() {
    let cancelled = InboxRecord {
        seq: 1,
        message: Message {
            id: Some(bosun_proto::new_id()),
            ttl: Some(10),
            ..Default::default()
        },
        state: State::Failed,
        history: vec![HistoryEntry {
            state: State::Failed,
            at: 5_000,
            note: None,
        }],
        arrivals: 0,
        outcome: None,
        process: None,
    };
    assert_eq!(
        forget_at(&cancelled),
        Some(5_000 + 10_000 + CANCELLED_MARGIN_MS)
    );
    // A cancel names no ttl: the id still goes after the margin.
    let mut no_ttl = cancelled.clone();
    no_ttl.message.ttl = None;
    assert_eq!(forget_at(&no_ttl), Some(5_000 + CANCELLED_MARGIN_MS));
    let arrived = InboxRecord {
        arrivals: 1,
        ..cancelled.clone()
    };
    assert_eq!(
        forget_at(&arrived),
        Some(5_000 + 10_000 + TOMBSTONE_MARGIN_MS)
    );
    let arrived_no_ttl = InboxRecord {
        message: Message::default(),
        ..arrived
    };
    assert_eq!(
        forget_at(&arrived_no_ttl),
        None,
        "an id that arrived without a ttl stays"
    );
}
