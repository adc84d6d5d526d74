use super::*;
use bosun_proto::{State, Status};

fn msg(to: &str) -> Message {
    Message {
        id: Some(bosun_proto::new_id()),
        to_node: Some(to.into()),
        from_node: Some("me".into()),
        method: "ping".into(),
        ..Default::default()
    }
}

fn outcome(status: Status) -> Outcome {
    Outcome::bare(status, "there", "x", 5)
}

#[tokio::test]
async fn submitted_messages_survive_reopen_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.redb");
    let msgs: Vec<Message> = (0..5).map(|_| msg("a")).collect();
    let ids: Vec<String> = msgs.iter().map(|m| m.id().to_string()).collect();
    {
        let store = Store::open(&path).unwrap();
        let seqs = store.submit(msgs, 1).await.unwrap();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]));
        store.close().await.unwrap();
    }
    let store = Store::open(&path).unwrap();
    let outbox = store.outbox().unwrap();
    let got: Vec<String> = outbox
        .iter()
        .map(|(_, r)| r.message.id().to_string())
        .collect();
    assert_eq!(got, ids);
    assert_eq!(outbox[0].1.state, State::Queued);
    assert_eq!(store.depths().unwrap().outbox, 5);
}

#[tokio::test]
async fn second_open_of_the_same_file_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.redb");
    let _store = Store::open(&path).unwrap();
    let err = Store::open(&path).err().expect("second open must fail");
    assert!(err.to_string().contains("already running"), "{err}");
}

#[tokio::test]
async fn ack_leaves_the_outbox_and_history_grows() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("n.redb")).unwrap();
    let m = msg("a");
    let id = m.id().to_string();
    store.submit(vec![m], 1).await.unwrap();
    store
        .sent_event(&id, Event::Sent, 2, None, None)
        .await
        .unwrap();
    store
        .sent_event(&id, Event::Sent, 3, None, None)
        .await
        .unwrap();
    let note = Some("resend #1 after no ACK".to_string());
    store
        .sent_event(&id, Event::Sent, 4, note, None)
        .await
        .unwrap();
    store
        .sent_event(&id, Event::Acked, 5, None, None)
        .await
        .unwrap();
    let rec = store.sent(&id).unwrap().unwrap();
    assert_eq!(rec.state, State::Acked);
    assert_eq!(rec.sends, 3);
    assert!(!rec.in_outbox);
    let states: Vec<State> = rec.history.iter().map(|h| h.state).collect();
    // A quiet resend only counts; a resend with a reason is a history line.
    assert_eq!(
        states,
        vec![State::Queued, State::Sent, State::Sent, State::Acked]
    );
    assert_eq!(
        rec.history[2].note.as_deref(),
        Some("resend #1 after no ACK")
    );
    assert_eq!(store.depths().unwrap().outbox, 0);
}

#[tokio::test]
async fn a_resent_message_is_recorded_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("n.redb")).unwrap();
    let m = msg("me");
    assert!(matches!(
        store.receive(m.clone(), 1).await.unwrap(),
        Receipt::New(_)
    ));
    assert_eq!(
        store.receive(m.clone(), 2).await.unwrap(),
        Receipt::Duplicate(State::Received)
    );
    let rec = store.inbox(m.id()).unwrap().unwrap();
    assert_eq!(rec.arrivals, 2);
    assert_eq!(store.inbox_pending().unwrap().len(), 1);
}

#[tokio::test]
async fn finish_records_outcome_and_queues_reply_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("n.redb");
    let m = msg("me");
    let reply = msg("other");
    {
        let store = Store::open(&path).unwrap();
        store.receive(m.clone(), 1).await.unwrap();
        store.start(m.id(), 2).await.unwrap();
        assert_eq!(store.inbox(m.id()).unwrap().unwrap().state, State::Running);
        store
            .finish(m.id(), outcome(Status::Done), Some(reply.clone()), 3)
            .await
            .unwrap();
        store.close().await.unwrap();
    }
    let store = Store::open(&path).unwrap();
    let rec = store.inbox(m.id()).unwrap().unwrap();
    assert_eq!(rec.state, State::Done);
    assert_eq!(rec.outcome.unwrap().status, Status::Done);
    assert!(store.inbox_pending().unwrap().is_empty());
    let outbox = store.outbox().unwrap();
    assert_eq!(outbox.len(), 1);
    assert_eq!(outbox[0].1.message.id(), reply.id());
}

#[tokio::test]
async fn a_result_completes_the_sent_record_and_is_deduplicated() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("n.redb")).unwrap();
    let m = msg("a");
    store.submit(vec![m.clone()], 1).await.unwrap();
    store
        .sent_event(m.id(), Event::Sent, 2, None, None)
        .await
        .unwrap();
    let mut reply = msg("me");
    reply.method = "result".into();
    reply.previous_message = Some(m.id().to_string());
    reply.result = Some(outcome(Status::Timeout));
    assert!(matches!(
        store.absorb(reply.clone(), 3, None).await.unwrap(),
        Receipt::New(_)
    ));
    assert!(matches!(
        store.absorb(reply.clone(), 4, None).await.unwrap(),
        Receipt::Duplicate(_)
    ));
    let rec = store.sent(m.id()).unwrap().unwrap();
    assert_eq!(rec.state, State::Timeout);
    assert!(
        !rec.in_outbox,
        "a result proves delivery even if the ACK was lost"
    );
    assert_eq!(rec.outcome.unwrap().status, Status::Timeout);
    let timeouts = rec
        .history
        .iter()
        .filter(|h| h.state == State::Timeout)
        .count();
    assert_eq!(timeouts, 1);
}

#[tokio::test]
async fn many_concurrent_submits_all_land() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("n.redb");
    let store = Store::open(&path).unwrap();
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            s.submit(vec![msg("a")], 1).await.unwrap()
        }));
    }
    let mut seqs = Vec::new();
    for t in tasks {
        seqs.extend(t.await.unwrap());
    }
    seqs.sort();
    seqs.dedup();
    assert_eq!(seqs.len(), 200);
    assert_eq!(store.depths().unwrap().outbox, 200);
}

#[tokio::test]
async fn rejected_message_is_recorded_but_not_pending() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("n.redb")).unwrap();
    let m = msg("me");
    store.reject(m.clone(), "bad".into(), 1).await.unwrap();
    let rec = store.inbox(m.id()).unwrap().unwrap();
    assert_eq!(rec.state, State::Rejected);
    assert!(store.inbox_pending().unwrap().is_empty());
    assert_eq!(
        store.receive(m, 2).await.unwrap(),
        Receipt::Duplicate(State::Rejected)
    );
}

#[tokio::test]
async fn late_notes_fill_the_history_in_lifecycle_order_without_moving_the_state_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("n.redb")).unwrap();
    let m = msg("a");
    store.submit(vec![m.clone()], 1).await.unwrap();
    // The "running" note overtakes the ACK.
    store.note(m.id(), vec![(Event::Started, 4, None)]);
    store.note(
        m.id(),
        vec![(Event::Sent, 2, None), (Event::Acked, 3, None)],
    );
    store.flush().await.unwrap();
    let rec = store.sent(m.id()).unwrap().unwrap();
    assert_eq!(rec.state, State::Running);
    let steps: Vec<(State, u64)> = rec.history.iter().map(|h| (h.state, h.at)).collect();
    assert_eq!(
        steps,
        vec![
            (State::Queued, 1),
            (State::Sent, 2),
            (State::Acked, 3),
            (State::Running, 4)
        ]
    );
    assert!(!rec.in_outbox);
}

#[tokio::test]
async fn chunks_are_kept_in_number_order_and_fleet_records_upserted() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("n.redb")).unwrap();
    let m = msg("a");
    store.submit(vec![m.clone()], 1).await.unwrap();
    for n in [2u64, 1, 3] {
        let mut c = msg("me");
        c.method = "result".into();
        c.previous_message = Some(m.id().to_string());
        c.chunk = Some(n);
        c.data = vec![format!("line {n}\n")];
        store.absorb(c, 2, None).await.unwrap();
    }
    let chunks = store.chunks(m.id()).unwrap();
    let numbers: Vec<u64> = chunks.iter().map(|(n, _)| *n).collect();
    assert_eq!(numbers, vec![1, 2, 3]);
    assert_eq!(
        store.chunks_from(m.id(), 3).unwrap(),
        vec![(3, "line 3\n".to_string())]
    );
    assert_eq!(store.sent(m.id()).unwrap().unwrap().state, State::Running);

    let mut hello = msg("me");
    hello.method = "hello".into();
    let record = FleetRecord {
        name: "ship1".into(),
        last_seen: 10,
        hello_interval_secs: 30,
        inventory: serde_json::json!({"cpus": 2}),
    };
    store
        .absorb(hello.clone(), 10, Some(record.clone()))
        .await
        .unwrap();
    let mut hello2 = msg("me");
    hello2.method = "hello".into();
    let newer = FleetRecord {
        last_seen: 40,
        ..record
    };
    store.absorb(hello2, 40, Some(newer.clone())).await.unwrap();
    assert_eq!(store.fleet().unwrap(), vec![newer]);
}

#[tokio::test]
async fn prune_forgets_only_old_finished_messages() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("n.redb")).unwrap();
    let old = msg("a");
    let waiting = msg("a");
    store
        .submit(vec![old.clone(), waiting.clone()], 1)
        .await
        .unwrap();
    store
        .sent_event(old.id(), Event::Finished(Status::Done), 2, None, None)
        .await
        .unwrap();
    let received = msg("me");
    store.receive(received.clone(), 1).await.unwrap();
    assert_eq!(store.prune(100).await.unwrap(), 1);
    assert!(store.sent(old.id()).unwrap().is_none());
    assert!(
        store.sent(waiting.id()).unwrap().is_some(),
        "still in the outbox"
    );
    assert!(
        store.inbox(received.id()).unwrap().is_some(),
        "not finished"
    );
    // A finished received message shrinks to a tombstone that still refuses resends.
    let mut done = msg("me");
    done.data = vec!["payload".into()];
    store.receive(done.clone(), 1).await.unwrap();
    store
        .finish(done.id(), outcome(Status::Done), None, 2)
        .await
        .unwrap();
    store.prune(100).await.unwrap();
    let tomb = store.inbox(done.id()).unwrap().unwrap();
    assert!(tomb.message.data.is_empty() && tomb.outcome.is_none());
    assert!(matches!(
        store.receive(done, 200).await.unwrap(),
        Receipt::Duplicate(_)
    ));
}

#[tokio::test]
async fn the_sink_position_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("n.redb");
    {
        let store = Store::open(&path).unwrap();
        assert_eq!(store.sink_next("m1").unwrap(), 1);
        store.set_sink_next("m1", Some(4));
        store.flush().await.unwrap();
        store.close().await.unwrap();
    }
    let store = Store::open(&path).unwrap();
    assert_eq!(store.sink_next("m1").unwrap(), 4);
    store.set_sink_next("m1", None);
    store.flush().await.unwrap();
    assert_eq!(store.sink_next("m1").unwrap(), 1);
}

#[tokio::test]
async fn a_runs_process_group_is_recorded_before_its_finish_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("n.redb");
    let m = msg("me");
    let id = m.id().to_string();
    let group = ProcessRecord {
        pgid: 4242,
        start_time: 98765,
        boot_id: "boot".into(),
    };
    {
        let store = Store::open(&path).unwrap();
        store.receive(m, 1).await.unwrap();
        store.start(&id, 2).await.unwrap();
        // Queued at the call, not at the first poll: a finish asked for afterwards
        // comes after it.
        let recorded = store.spawned(&id, group.clone());
        store
            .finish(&id, outcome(Status::Done), None, 3)
            .await
            .unwrap();
        recorded.await.unwrap();
        let rec = store.inbox(&id).unwrap().unwrap();
        assert_eq!(rec.state, State::Done);
        assert_eq!(rec.process.as_ref(), Some(&group));
        store.close().await.unwrap();
    }
    let store = Store::open(&path).unwrap();
    assert_eq!(store.inbox(&id).unwrap().unwrap().process, Some(group));
}

#[tokio::test]
async fn a_running_message_keeps_its_process_group_across_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("n.redb");
    let m = msg("me");
    let id = m.id().to_string();
    let group = ProcessRecord {
        pgid: 7,
        start_time: 1,
        boot_id: "b".into(),
    };
    {
        let store = Store::open(&path).unwrap();
        store.receive(m, 1).await.unwrap();
        store.start(&id, 2).await.unwrap();
        store.spawned(&id, group.clone()).await.unwrap();
        // No close: the next open sees what the commits made durable.
        drop(store);
    }
    let store = wait_reopen(&path).await;
    let pending = store.inbox_pending().unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].1.state, State::Running);
    assert_eq!(pending[0].1.process, Some(group));
}

/// Open `path` once the dropped handle's writer thread has let go of it.
async fn wait_reopen(path: &std::path::Path) -> Store {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match Store::open(path) {
            Ok(s) => return s,
            Err(StoreError::Locked { .. }) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            Err(e) => panic!("reopen: {e}"),
        }
    }
}
