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
async fn an_arrival_that_starts_at_once_is_running_after_one_commit_and_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("n.redb");
    let m = msg("me");
    {
        let store = Store::open(&path).unwrap();
        assert!(matches!(
            store.receive_started(m.clone(), 5).await.unwrap(),
            Receipt::New(_)
        ));
        // A resend is a duplicate of a running message: neither recorded nor started again.
        assert_eq!(
            store.receive_started(m.clone(), 6).await.unwrap(),
            Receipt::Duplicate(State::Running)
        );
        // No close: the next open sees what the commit made durable.
        drop(store);
    }
    let store = wait_reopen(&path).await;
    let pending = store.inbox_pending().unwrap();
    assert_eq!(pending.len(), 1, "still to be settled at the next start-up");
    let rec = &pending[0].1;
    assert_eq!(rec.state, State::Running);
    assert_eq!(rec.arrivals, 2);
    let steps: Vec<(State, u64)> = rec.history.iter().map(|h| (h.state, h.at)).collect();
    assert_eq!(steps, vec![(State::Received, 5), (State::Running, 5)]);
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
async fn a_result_tells_when_its_run_started_when_no_note_did() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("n.redb")).unwrap();
    let (quick, noted) = (msg("a"), msg("a"));
    store
        .submit(vec![quick.clone(), noted.clone()], 1)
        .await
        .unwrap();
    for m in [&quick, &noted] {
        store
            .sent_event(m.id(), Event::Sent, 2, None, None)
            .await
            .unwrap();
    }
    // A long run sent its `running` note at 3; the quick one did not.
    store.note(noted.id(), vec![(Event::Started, 3, None)]);
    for m in [&quick, &noted] {
        let mut reply = msg("me");
        reply.method = "result".into();
        reply.previous_message = Some(m.id().to_string());
        let mut o = outcome(Status::Done);
        o.started_at = Some(3);
        reply.result = Some(o);
        store.absorb(reply, 9, None).await.unwrap();
    }
    for m in [&quick, &noted] {
        let rec = store.sent(m.id()).unwrap().unwrap();
        let steps: Vec<(State, Millis)> = rec.history.iter().map(|h| (h.state, h.at)).collect();
        assert_eq!(
            steps,
            vec![
                (State::Queued, 1),
                (State::Sent, 2),
                (State::Acked, 9),
                (State::Running, 3),
                (State::Done, 9)
            ],
            "one running step, at the time the run started"
        );
    }
}

#[tokio::test]
async fn many_ids_read_at_once_match_their_single_reads() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("n.redb")).unwrap();
    let (done, open) = (msg("a"), msg("b"));
    store
        .submit(vec![done.clone(), open.clone()], 1)
        .await
        .unwrap();
    let mut chunk = msg("me");
    chunk.method = "result".into();
    chunk.previous_message = Some(done.id().to_string());
    chunk.chunk = Some(1);
    chunk.data = vec!["out\n".into()];
    store.absorb(chunk, 2, None).await.unwrap();
    let mut reply = msg("me");
    reply.method = "result".into();
    reply.previous_message = Some(done.id().to_string());
    reply.result = Some(outcome(Status::Done));
    store.absorb(reply.clone(), 3, None).await.unwrap();

    let ids = [done.id(), open.id(), "unknown", reply.id()];
    assert_eq!(
        store.sent_final(&ids).unwrap(),
        vec![true, false, false, false]
    );
    let views = store.views(&ids).unwrap();
    for (id, view) in ids.iter().zip(&views) {
        assert_eq!(view.sent, store.sent(id).unwrap(), "{id}");
        assert_eq!(view.inbox, store.inbox(id).unwrap(), "{id}");
        assert_eq!(view.schedule, store.schedule(id).unwrap(), "{id}");
    }
    assert_eq!(views[0].chunks, vec![(1, "out\n".to_string())]);
    let brief = store.sent_brief(done.id()).unwrap().unwrap();
    let whole = store.sent(done.id()).unwrap().unwrap();
    assert_eq!(brief.message.destination(), "a");
    assert_eq!(brief.message.method, whole.message.method);
    assert_eq!((brief.state, brief.history), (whole.state, whole.history));
    assert!(store.sent_brief("unknown").unwrap().is_none());
    assert!(views[2].sent.is_none() && views[2].inbox.is_none());
    assert!(
        views[3].inbox.is_some(),
        "the reply is recorded as received"
    );
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

/// The outbox loop reads a deep queue from disk past the last seq it was handed, so the
/// store must tell it of every queued message once and in seq order, however many
/// writers commit at once: submits, replies queued with a finish, schedule runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_messages_are_told_once_in_seq_order_across_concurrent_writers() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("n.redb")).unwrap();
    let told = Arc::new(std::sync::Mutex::new(Vec::<(u64, String)>::new()));
    {
        let told = told.clone();
        store.on_queued(Box::new(move |queued| {
            let mut told = told.lock().unwrap();
            told.extend(queued.into_iter().map(|(seq, m)| (seq, m.id().to_string())));
        }));
    }
    // Received messages whose finishes queue replies, racing the submits.
    let received: Vec<Message> = (0..100).map(|_| msg("me")).collect();
    for m in &received {
        store.receive(m.clone(), 1).await.unwrap();
    }
    let mut tasks = Vec::new();
    for i in 0..200 {
        let s = store.clone();
        let finish = received.get(i).map(|m| m.id().to_string());
        tasks.push(tokio::spawn(async move {
            let mut queued = Vec::new();
            let batch: Vec<Message> = (0..1 + i % 3).map(|_| msg("a")).collect();
            let ids: Vec<String> = batch.iter().map(|m| m.id().to_string()).collect();
            let seqs = s.submit(batch, 1).await.unwrap();
            queued.extend(seqs.into_iter().zip(ids));
            if let Some(id) = finish {
                let reply = msg("other");
                let reply_id = reply.id().to_string();
                let seq = s
                    .finish(&id, outcome(Status::Done), Some(reply), 2)
                    .await
                    .unwrap()
                    .expect("a reply was queued");
                queued.push((seq, reply_id));
            }
            queued
        }));
    }
    let mut want = Vec::new();
    for t in tasks {
        want.extend(t.await.unwrap());
    }
    want.sort();
    // A message submitted again under its id is not queued again, and not told again.
    let again = store.outbox().unwrap()[0].1.message.clone();
    store.submit(vec![again], 3).await.unwrap();
    let told = told.lock().unwrap().clone();
    assert!(
        told.windows(2).all(|w| w[0].0 < w[1].0),
        "told in strictly rising seq order"
    );
    assert_eq!(told, want, "every queued message told once, with its seq");
    assert_eq!(told.len() as u64, store.depths().unwrap().outbox);
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
        unverified: false,
        hello_at: 0,
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
    assert_eq!(store.prune(100, 200, || true).await.unwrap(), 1);
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
    store.prune(100, 200, || true).await.unwrap();
    let tomb = store.inbox(done.id()).unwrap().unwrap();
    assert!(tomb.message.data.is_empty() && tomb.outcome.is_none());
    assert!(matches!(
        store.receive(done, 200).await.unwrap(),
        Receipt::Duplicate(_)
    ));
}

fn chunk_reply(answered: &str, method: &str, n: u64) -> Message {
    let mut c = msg("me");
    c.method = method.into();
    c.previous_message = Some(answered.to_string());
    c.chunk = Some(n);
    c.data = vec![format!("line {n}\n")];
    c
}

#[tokio::test]
async fn the_sink_position_is_durable_and_complete_stays_complete() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("n.redb");
    {
        let store = Store::open(&path).unwrap();
        assert_eq!(store.sink_next("m1").unwrap(), 1);
        store.sink_done("m1", 4).await.unwrap();
        store.sink_done("m2", SINK_COMPLETE).await.unwrap();
        store.close().await.unwrap();
    }
    let store = Store::open(&path).unwrap();
    assert_eq!(store.sink_next("m1").unwrap(), 4);
    assert_eq!(store.sink_next("m2").unwrap(), SINK_COMPLETE);
}

#[tokio::test]
async fn an_absorbed_sink_reply_leaves_sink_work_until_written() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("n.redb")).unwrap();
    let m = msg("a");
    let id = m.id().to_string();
    store.submit(vec![m], 1).await.unwrap();
    // A plain result with no file asks for no sink.
    store
        .absorb(chunk_reply(&id, "result", 1), 2, None)
        .await
        .unwrap();
    assert_eq!(store.sink_due(&id).unwrap(), None);

    let first = chunk_reply(&id, "toFileAppend", 2);
    store.absorb(first.clone(), 2, None).await.unwrap();
    let due = store
        .sink_due(&id)
        .unwrap()
        .expect("recorded with the reply");
    assert_eq!((due.reply.as_str(), due.is_final), (first.id(), false));
    // Chunk 4 arrives before 3: once 1 and 2 are written, chunk 4 still waits.
    store
        .absorb(chunk_reply(&id, "toFileAppend", 4), 3, None)
        .await
        .unwrap();
    let write = SinkWrite {
        path: "/r/x.log".into(),
        offset: 0,
        len_after: 14,
        next: 3,
    };
    store.sink_begin(&id, write.clone()).await.unwrap();
    assert_eq!(store.sink_due(&id).unwrap().unwrap().write, Some(write));
    store.sink_done(&id, 3).await.unwrap();
    let due = store
        .sink_due(&id)
        .unwrap()
        .expect("chunk 4 is not written yet");
    assert_eq!(due.write, None, "the write is complete");
    // The final result takes over the work; a resent chunk after it changes nothing.
    let mut last = chunk_reply(&id, "toFileAppend", 0);
    last.chunk = None;
    last.result = Some(outcome(Status::Done));
    store.absorb(last.clone(), 4, None).await.unwrap();
    store
        .absorb(chunk_reply(&id, "toFileAppend", 5), 5, None)
        .await
        .unwrap();
    let due = store.sink_due(&id).unwrap().unwrap();
    assert_eq!((due.reply.as_str(), due.is_final), (last.id(), true));
    assert_eq!(store.sinks_due().unwrap().len(), 1);
    store.sink_done(&id, 6).await.unwrap();
    assert!(
        store.sink_due(&id).unwrap().is_some(),
        "the result is not written yet"
    );
    store.sink_done(&id, SINK_COMPLETE).await.unwrap();
    assert_eq!(store.sink_due(&id).unwrap(), None);
    assert!(store.sinks_due().unwrap().is_empty());
}

#[tokio::test]
async fn a_schedule_starts_with_its_message_and_each_run_advances_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("n.redb");
    let mut m = msg("a");
    m.schedule = Some(vec![1, 3]);
    let id = m.id().to_string();
    let repeat = || {
        let mut r = msg("a");
        r.schedule = None;
        r
    };
    {
        let store = Store::open(&path).unwrap();
        store.submit(vec![m.clone()], 10_000).await.unwrap();
        let record = store
            .schedule(&id)
            .unwrap()
            .expect("started in the submit commit");
        assert_eq!(record.template, m);
        assert_eq!(
            (record.schedule.runs_left, record.schedule.next_at),
            (3, 11_000)
        );
        assert_eq!(
            store.schedule_run(&id, repeat(), 10_500).await.unwrap(),
            None,
            "not due yet: nothing queued"
        );
        assert_eq!(store.outbox().unwrap().len(), 1);
        assert!(
            store
                .schedule_run(&id, repeat(), 11_000)
                .await
                .unwrap()
                .is_some()
        );
        assert_eq!(
            store.schedule_run(&id, repeat(), 11_001).await.unwrap(),
            None,
            "a second run for the same slot is refused"
        );
        store.close().await.unwrap();
    }
    // Reopened: the run and the advance are both there.
    let store = Store::open(&path).unwrap();
    assert_eq!(store.outbox().unwrap().len(), 2);
    let record = store.schedule(&id).unwrap().unwrap();
    assert_eq!(
        (record.schedule.runs_left, record.schedule.next_at),
        (2, 12_000)
    );
    // After an outage: one catch-up run, then the interval.
    assert!(
        store
            .schedule_run(&id, repeat(), 60_000)
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(
        store.schedule_run(&id, repeat(), 60_500).await.unwrap(),
        None
    );
    assert!(
        store
            .schedule_run(&id, repeat(), 61_000)
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(
        store.schedule(&id).unwrap(),
        None,
        "three runs made: the schedule ends"
    );
    assert!(store.schedules().unwrap().is_empty());
    assert_eq!(store.outbox().unwrap().len(), 4);
    // Submitting the same id again neither queues it nor restarts its schedule.
    store.submit(vec![m], 70_000).await.unwrap();
    assert_eq!(store.schedule(&id).unwrap(), None);
    assert_eq!(store.outbox().unwrap().len(), 4);
}

#[tokio::test]
async fn a_known_id_with_other_content_is_refused_and_its_batch_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("n.redb")).unwrap();
    let first = msg("a");
    let seq = store.submit(vec![first.clone()], 1).await.unwrap()[0];
    // The same message again (only the node's time stamp differs) is an idempotent ok.
    let mut again = first.clone();
    again.created_at = Some(99);
    assert_eq!(store.submit(vec![again], 2).await.unwrap(), vec![seq]);
    // The same id with other content refuses the whole batch, including its first message.
    let fresh = msg("a");
    let mut other = first.clone();
    other.data = vec!["something else".into()];
    let err = store
        .submit(vec![fresh.clone(), other], 3)
        .await
        .expect_err("a different message under a known id must be refused");
    assert!(
        err.to_string().contains(&format!(
            "id {} is already used by a different message",
            first.id()
        )),
        "{err}"
    );
    assert!(
        store.sent(fresh.id()).unwrap().is_none(),
        "nothing of the batch kept"
    );
    assert_eq!(store.depths().unwrap().outbox, 1);
    assert!(
        store
            .sent(first.id())
            .unwrap()
            .unwrap()
            .message
            .data
            .is_empty()
    );
}

#[tokio::test]
async fn a_failing_op_in_a_shared_commit_leaves_nothing_and_the_others_land() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("n.redb")).unwrap();
    let known = msg("a");
    store.submit(vec![known.clone()], 1).await.unwrap();
    // Many submits at once share commits; every second one carries a conflict.
    let mut conflicting = known.clone();
    conflicting.data = vec!["x".into()];
    let mut calls = Vec::new();
    let mut good = Vec::new();
    let mut bad = Vec::new();
    for i in 0..200 {
        let store = store.clone();
        let m = msg("a");
        let batch = if i % 2 == 0 {
            good.push(m.id().to_string());
            vec![m]
        } else {
            bad.push(m.id().to_string());
            vec![m, conflicting.clone()]
        };
        calls.push(tokio::spawn(async move { store.submit(batch, 2).await }));
    }
    let mut refused = 0;
    for call in calls {
        if call.await.unwrap().is_err() {
            refused += 1;
        }
    }
    assert_eq!(refused, 100);
    for id in &good {
        assert!(store.sent(id).unwrap().is_some(), "{id} landed");
    }
    for id in &bad {
        assert!(
            store.sent(id).unwrap().is_none(),
            "{id} left nothing behind"
        );
    }
    assert_eq!(store.depths().unwrap().outbox, 101);
}

#[tokio::test]
async fn pruning_in_a_commit_shared_with_other_writes_takes_its_turn_with_the_tables() {
    // The writer opens each table once per commit and keeps it open across the ops of
    // the batch; pruning opens its own, so it must find them closed. Prunes interleaved
    // with other writes, all at once, share commits with them.
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("n.redb")).unwrap();
    let old: Vec<Message> = (0..50).map(|_| msg("a")).collect();
    store.submit(old.clone(), 1).await.unwrap();
    for m in &old {
        store
            .sent_event(m.id(), Event::Finished(Status::Done), 2, None, None)
            .await
            .unwrap();
    }
    let mut writes = Vec::new();
    let mut prunes = Vec::new();
    let mut fresh = Vec::new();
    for i in 0..200 {
        let store = store.clone();
        if i % 10 == 0 {
            prunes.push(tokio::spawn(
                async move { store.prune(100, 200, || true).await },
            ));
        } else {
            let m = msg("a");
            fresh.push(m.id().to_string());
            writes.push(tokio::spawn(async move {
                let id = m.id().to_string();
                store.submit(vec![m], 150).await?;
                store.sent_event(&id, Event::Acked, 151, None, None).await
            }));
        }
    }
    for write in writes {
        write.await.unwrap().expect("a write beside a prune lands");
    }
    let mut pruned = 0;
    for prune in prunes {
        pruned += prune.await.unwrap().expect("a prune beside writes runs");
    }
    assert_eq!(pruned, 50, "every old finished message pruned, once");
    for m in &old {
        assert!(store.sent(m.id()).unwrap().is_none());
    }
    for id in &fresh {
        let rec = store.sent(id).unwrap().expect("written beside the prunes");
        assert_eq!(rec.state, State::Acked, "{id}");
    }
}

fn big(to: &str, bytes: usize) -> Message {
    let mut m = msg(to);
    m.data = vec!["x".repeat(bytes)];
    m
}

/// Submit big messages until one is refused; returns the ids acknowledged and the error.
async fn submit_until_refused(store: &Store) -> (Vec<String>, StoreError) {
    let mut acknowledged = Vec::new();
    for _ in 0..400 {
        let m = big("a", 64 * 1024);
        match store.submit(vec![m.clone()], 1).await {
            Ok(_) => acknowledged.push(m.id().to_string()),
            Err(e) => return (acknowledged, e),
        }
    }
    panic!("400 submits of 64 KiB fit on a full filesystem");
}

#[tokio::test]
async fn a_full_disk_is_said_as_such_and_the_store_reopens_itself_once_space_is_freed() {
    let fs = bosun_testkit::Tmpfs::mount(4);
    let path = fs.path().join("n.redb");
    let store = Store::open(&path).unwrap();
    let before = msg("a");
    store.submit(vec![before.clone()], 1).await.unwrap();
    let filler = fs.fill("filler", 0);
    let (acknowledged, err) = submit_until_refused(&store).await;
    let text = err.to_string();
    assert!(
        text.contains(&format!("disk full at {}", path.display())) && text.contains("bytes free"),
        "{text}"
    );
    assert!(!text.to_lowercase().contains("corrupt"), "{text}");
    assert!(matches!(
        store.health(),
        Health::Faulted(Fault::DiskFull { .. })
    ));
    // While the disk stays full every write gets the same clear answer, not redb's
    // "Previous I/O error".
    let again = store
        .submit(vec![msg("a")], 1)
        .await
        .unwrap_err()
        .to_string();
    assert!(again.contains("disk full at"), "{again}");
    std::fs::remove_file(filler).unwrap();
    let after = msg("a");
    bosun_testkit::eventually_async(
        std::time::Duration::from_secs(20),
        "a submit succeeds after space is freed",
        || {
            let store = store.clone();
            let after = after.clone();
            async move { store.submit(vec![after], 1).await.ok() }
        },
    )
    .await;
    assert_eq!(store.health(), Health::Ok);
    for id in acknowledged.iter().chain([&before.id().to_string()]) {
        assert!(store.sent(id).unwrap().is_some(), "acknowledged {id} kept");
    }
    // It survives a reopen of the file too.
    store.close().await.unwrap();
    let store = Store::open(&path).unwrap();
    for id in acknowledged
        .iter()
        .chain([&before.id().to_string(), &after.id().to_string()])
    {
        assert!(store.sent(id).unwrap().is_some(), "acknowledged {id} kept");
    }
}

#[tokio::test]
async fn a_file_that_cannot_be_reopened_fails_the_store_for_good() {
    let fs = bosun_testkit::Tmpfs::mount(4);
    let path = fs.path().join("n.redb");
    let store = Store::open(&path).unwrap();
    store.submit(vec![msg("a")], 1).await.unwrap();
    let filler = fs.fill("filler", 0);
    let (_, err) = submit_until_refused(&store).await;
    assert!(matches!(err, StoreError::DiskFull { .. }), "{err}");
    // Damage the header (overwriting takes no new space), then free the space.
    {
        use std::io::{Seek, Write};
        let mut file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        file.seek(std::io::SeekFrom::Start(0)).unwrap();
        file.write_all(&[0xff; 512]).unwrap();
        file.sync_all().unwrap();
    }
    std::fs::remove_file(filler).unwrap();
    let mut health = store.watch_health();
    let failed = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        health.wait_for(|h| matches!(h, Health::Failed { .. })),
    )
    .await
    .expect("the store gives up within 20 s")
    .unwrap()
    .clone();
    assert!(
        failed.to_string().contains("cannot be reopened"),
        "{failed}"
    );
    let err = store
        .submit(vec![msg("a")], 1)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("cannot be reopened"), "{err}");
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

#[tokio::test]
async fn a_process_group_recorded_alone_is_answered_once_the_writer_made_it_durable() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("n.redb")).unwrap();
    let m = msg("me");
    let id = m.id().to_string();
    store.receive(m, 1).await.unwrap();
    store.start(&id, 2).await.unwrap();
    let group = ProcessRecord {
        pgid: 9,
        start_time: 3,
        boot_id: "b".into(),
    };
    let asked = std::time::Instant::now();
    store.spawned(&id, group.clone()).await.unwrap();
    // Nothing else commits here: the answer waits for the writer's own durable commit.
    assert!(
        asked.elapsed() >= std::time::Duration::from_millis(45),
        "answered after {:?}, before the writer's durable commit",
        asked.elapsed()
    );
    assert_eq!(store.inbox(&id).unwrap().unwrap().process, Some(group));
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

#[tokio::test]
async fn a_start_recorded_with_the_finish_keeps_the_history_and_queues_the_reply() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("n.redb");
    let m = msg("me");
    let id = m.id().to_string();
    let reply = msg("other");
    {
        let store = Store::open(&path).unwrap();
        store.receive(m, 1).await.unwrap();
        assert!(
            store
                .finish_unstarted(&id, 2, outcome(Status::Done), Some(reply.clone()), 3)
                .await
                .unwrap()
        );
        store.close().await.unwrap();
    }
    let store = Store::open(&path).unwrap();
    let rec = store.inbox(&id).unwrap().unwrap();
    assert_eq!(rec.state, State::Done);
    let steps: Vec<(State, Millis)> = rec.history.iter().map(|h| (h.state, h.at)).collect();
    assert_eq!(
        steps,
        [(State::Received, 1), (State::Running, 2), (State::Done, 3)]
    );
    assert!(store.inbox_pending().unwrap().is_empty(), "still pending");
    let queued: Vec<String> = store
        .outbox()
        .unwrap()
        .into_iter()
        .map(|(_, r)| r.message.id().to_string())
        .collect();
    assert_eq!(queued, [reply.id().to_string()]);
}

#[tokio::test]
async fn a_run_without_a_recorded_start_leaves_a_cancel_that_came_meanwhile_standing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("n.redb")).unwrap();
    let m = msg("me");
    let id = m.id().to_string();
    store.receive(m, 1).await.unwrap();
    // Its sender cancels it while it runs: nothing was recorded of the run yet.
    let answer = store.cancel(&id, "me", "there", 2).await.unwrap();
    assert_eq!(answer.state, Some(State::Cancelled));
    let reply = msg("other");
    assert!(
        !store
            .finish_unstarted(&id, 2, outcome(Status::Done), Some(reply), 3)
            .await
            .unwrap()
    );
    let rec = store.inbox(&id).unwrap().unwrap();
    assert_eq!(rec.state, State::Cancelled);
    assert_eq!(
        rec.outcome.as_ref().map(|o| o.status),
        Some(Status::Cancelled)
    );
    assert!(
        rec.history.iter().all(|h| h.state != State::Running),
        "{:?}",
        rec.history
    );
    assert!(store.outbox().unwrap().is_empty(), "a reply was queued");
}
