//! The delivery promises, on the in-process transport: several real nodes in this
//! process, each with its own database, and the hub's fault switches for lost ACKs and
//! outages. (Crash, broker and multi-process tests are in `crates/cli/tests/e2e/`.)
//!
//! Waits go through the testkit's `eventually_async` / `holds_for_async`: every one waits
//! for an observable state with a deadline, and none for an intermediate state that a
//! fast run could skip.

use std::future::ready;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bosun_bus::{Hub, LocalTransport};
use bosun_node::{Config, Node};
use bosun_proto::{Message, State};
use bosun_testkit::{eventually_async, holds_for_async};

fn config(dir: &Path, name: &str) -> Config {
    Config {
        name: name.into(),
        data_dir: dir.join(name),
        ack_timeout_secs: 1,
        log: "warn".into(),
        ..Config::default()
    }
}

async fn start(hub: &Arc<Hub>, config: Config) -> Node {
    Node::start(config, Arc::new(LocalTransport::new(hub.clone())), false)
        .await
        .unwrap()
}

fn shell(to: &str, script: &str) -> Message {
    Message {
        to_node: Some(to.into()),
        method: "cliCommand".into(),
        data: vec!["sh".into(), "-c".into(), script.into()],
        method_timeout: Some(30),
        ..Default::default()
    }
}

async fn submit(node: &Node, m: Message) -> String {
    node.submit(vec![m]).await.unwrap().remove(0).id
}

fn lines(path: &PathBuf) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

async fn wait_done(node: &Node, ids: &[String], secs: u64) -> Vec<bosun_node::StatusReport> {
    let (all, reports) = node.wait(ids, Duration::from_secs(secs)).await.unwrap();
    assert!(
        all,
        "not all finished: {:?}",
        reports.iter().map(|r| r.state()).collect::<Vec<_>>()
    );
    reports
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resend_after_a_lost_ack_is_acked_again_but_runs_once() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::new();
    let a = start(&hub, config(dir.path(), "a")).await;
    let b = start(&hub, config(dir.path(), "b")).await;
    let marker = dir.path().join("ran.txt");
    hub.drop_next_answers(1);
    // The run outlasts the ACK timeout, so the result cannot stand in for the lost ACK.
    let id = submit(
        &a,
        shell("b", &format!("sleep 2; echo ran >> {}", marker.display())),
    )
    .await;
    let reports = wait_done(&a, std::slice::from_ref(&id), 20).await;
    let sent = reports[0].sent.as_ref().unwrap();
    assert_eq!(sent.state, State::Done);
    assert!(sent.sends >= 2, "the lost ACK caused a resend");
    assert!(
        sent.history
            .iter()
            .any(|h| h.note.as_deref().is_some_and(|n| n.contains("no ACK")))
    );
    let received = b.status(&id).unwrap().received.unwrap();
    assert!(received.arrivals >= 2, "the receiver saw the resend");
    assert_eq!(lines(&marker), vec!["ran"], "but ran it once");
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordered_messages_run_in_submit_order() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::new();
    let a = start(&hub, config(dir.path(), "a")).await;
    let b = start(&hub, config(dir.path(), "b")).await;
    let record = dir.path().join("order.txt");
    let mut ids = Vec::new();
    for i in 0..20 {
        // Later messages are quicker: only ordering keeps them in line.
        let nap = format!("0.0{}", 9 - i % 10);
        ids.push(
            submit(
                &a,
                shell(
                    "b",
                    &format!("sleep {nap}; echo {i} >> {}", record.display()),
                ),
            )
            .await,
        );
    }
    wait_done(&a, &ids, 60).await;
    let want: Vec<String> = (0..20).map(|i| i.to_string()).collect();
    assert_eq!(lines(&record), want);
    a.shutdown().await;
    b.shutdown().await;
}

/// Max number of overlapping runs, from `start`/`end` lines in order of occurrence.
fn max_overlap(events: &[String]) -> usize {
    let (mut now, mut max) = (0usize, 0usize);
    for e in events {
        if e == "start" {
            now += 1;
            max = max.max(now);
        } else {
            now -= 1;
        }
    }
    max
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unordered_messages_run_together_up_to_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::new();
    let a = start(&hub, config(dir.path(), "a")).await;
    let b = start(
        &hub,
        Config {
            max_concurrent: 3,
            ..config(dir.path(), "b")
        },
    )
    .await;
    let record = dir.path().join("events.txt");
    let script = format!(
        "echo start >> {f}; sleep 0.4; echo end >> {f}",
        f = record.display()
    );
    let mut ids = Vec::new();
    for _ in 0..8 {
        let mut m = shell("b", &script);
        m.method = "REQnCliCommand".into();
        ids.push(submit(&a, m).await);
    }
    let t = Instant::now();
    wait_done(&a, &ids, 60).await;
    let overlap = max_overlap(&lines(&record));
    assert_eq!(
        overlap, 3,
        "runs overlap, but never more than max_concurrent"
    );
    assert!(
        t.elapsed() < Duration::from_millis(8 * 400),
        "unordered runs were concurrent"
    );
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn received_but_not_started_messages_run_after_a_restart_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::new();
    let a = start(&hub, config(dir.path(), "a")).await;
    let b_config = Config {
        max_concurrent: 1,
        ..config(dir.path(), "b")
    };
    let b = start(&hub, b_config.clone()).await;
    let record = dir.path().join("after.txt");
    let mut blocker = shell("b", "sleep 30");
    blocker.ordered = Some(false);
    let blocker_id = submit(&a, blocker).await;
    // Unordered messages may arrive in any order: the blocker must hold b's one run slot
    // before the others are sent, or one of them could take the slot first.
    eventually_async(Duration::from_secs(10), "b runs the blocker", || {
        ready(
            b.status(&blocker_id)
                .unwrap()
                .received
                .is_some_and(|r| r.state == State::Running)
                .then_some(()),
        )
    })
    .await;
    let mut ids = Vec::new();
    for i in 0..4 {
        let mut m = shell("b", &format!("echo {i} >> {}", record.display()));
        m.ordered = Some(false);
        ids.push(submit(&a, m).await);
    }
    // Wait until all four are in b's inbox, waiting behind the blocker.
    eventually_async(Duration::from_secs(10), "messages reach b", || {
        ready(
            ids.iter()
                .all(|id| {
                    b.status(id)
                        .unwrap()
                        .received
                        .is_some_and(|r| r.state == State::Received)
                })
                .then_some(()),
        )
    })
    .await;
    // Unordered messages are pipelined, so they may arrive in any order: the promise is
    // the order of arrival, which b's inbox numbers.
    let mut arrived: Vec<(u64, usize)> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| (b.status(id).unwrap().received.unwrap().seq, i))
        .collect();
    arrived.sort();
    let arrival_order: Vec<String> = arrived.iter().map(|(_, i)| i.to_string()).collect();
    b.shutdown().await;
    assert!(lines(&record).is_empty(), "none started before the restart");
    let b = start(&hub, b_config).await;
    let reports = wait_done(&a, &ids, 30).await;
    assert!(reports.iter().all(|r| r.state() == Some(State::Done)));
    assert_eq!(
        lines(&record),
        arrival_order,
        "run after restart, in arrival order"
    );
    let blocker = wait_done(&a, &[blocker_id], 10).await.remove(0);
    assert_eq!(
        blocker.state(),
        Some(State::Interrupted),
        "shutdown interrupts, never silently re-runs"
    );
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_are_durable_replies_that_wait_for_the_sender() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::new();
    let a_config = config(dir.path(), "a");
    let a = start(&hub, a_config.clone()).await;
    let b = start(&hub, config(dir.path(), "b")).await;
    // The run waits for a gate file, so `running` lasts until the test opens the gate:
    // a fixed-length run could finish before a poll sees it running.
    let gate = dir.path().join("gate");
    let script = format!(
        "while [ ! -e {g} ]; do sleep 0.05; done; echo answer",
        g = gate.display()
    );
    let id = submit(&a, shell("b", &script)).await;
    eventually_async(Duration::from_secs(10), "b runs the message", || {
        ready(
            b.status(&id)
                .unwrap()
                .received
                .is_some_and(|r| r.state == State::Running)
                .then_some(()),
        )
    })
    .await;
    a.shutdown().await; // the sender is away when the result is ready
    std::fs::write(&gate, "").unwrap();
    eventually_async(
        Duration::from_secs(10),
        "the reply waits in b's outbox",
        || {
            ready(
                (b.depths().unwrap().outbox != 0
                    && b.status(&id).unwrap().received.unwrap().state == State::Done)
                    .then_some(()),
            )
        },
    )
    .await;
    let a = start(&hub, a_config).await;
    let report = wait_done(&a, std::slice::from_ref(&id), 20).await.remove(0);
    assert_eq!(report.outcome().unwrap().stdout, "answer\n");
    eventually_async(
        Duration::from_secs(10),
        "the delivered reply leaves b's outbox",
        || ready((b.depths().unwrap().outbox == 0).then_some(())),
    )
    .await;
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_that_never_reached_anyone_fails_at_its_ttl_in_the_error_log() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::new();
    let a = start(&hub, config(dir.path(), "a")).await;
    // Nobody is "ghost": the message waits (no retries used) until its ttl. No try
    // reached anyone, so it surely never ran: `failed` needs nobody's word.
    let mut m = shell("ghost", "true");
    m.ttl = Some(2);
    let ttl_id = submit(&a, m).await;
    let reports = wait_done(&a, std::slice::from_ref(&ttl_id), 30).await;
    let sent = reports[0].sent.as_ref().unwrap();
    assert_eq!(sent.state, State::Failed);
    assert_eq!(
        sent.sends, 0,
        "a try that found nobody listening is not a send"
    );
    let error = reports[0].outcome().unwrap().error.clone().unwrap();
    assert!(error.contains("ttl"), "{error}");
    let log = std::fs::read_to_string(dir.path().join("a/error.log")).unwrap();
    assert!(log.contains(&ttl_id), "{log}");
    a.shutdown().await;
}

/// A command that waits (bounded) until `gate` exists, then appends to `marker`.
fn gated(to: &str, gate: &Path, marker: &Path) -> Message {
    let mut m = shell(
        to,
        &format!(
            "i=0; while [ ! -e {} ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done; echo ran >> {}",
            gate.display(),
            marker.display()
        ),
    );
    m.ordered = Some(false);
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_given_up_while_it_waits_at_its_destination_is_cancelled_there_and_never_runs() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::new();
    let a = start(&hub, config(dir.path(), "a")).await;
    let mut mute_config = config(dir.path(), "mute");
    mute_config.max_concurrent = 1;
    let mute = start(&hub, mute_config).await;
    // mute's only run slot is taken, so what arrives waits there, not started.
    let gate = dir.path().join("gate");
    let blocker = submit(&mute, gated("mute", &gate, &dir.path().join("blocker"))).await;
    eventually_async(Duration::from_secs(10), "the blocker runs", || {
        ready(
            mute.status(&blocker)
                .unwrap()
                .received
                .filter(|r| r.state == State::Running),
        )
    })
    .await;
    // Every answer is lost: ACKs, and the answers to the cancel query.
    hub.drop_next_answers(1_000_000);
    let marker = dir.path().join("given-up-ran");
    let mut m = gated("mute", &dir.path().join("open"), &marker);
    m.ack_timeout = Some(1);
    m.retries = Some(1);
    std::fs::write(dir.path().join("open"), "").unwrap();
    let id = submit(&a, m).await;
    let report = eventually_async(Duration::from_secs(20), "the sender gives up", || {
        ready(
            a.status(&id)
                .unwrap()
                .sent
                .filter(|s| s.state == State::Unconfirmed),
        )
    })
    .await;
    assert_eq!(report.sends, 2, "first send and one retry");
    assert!(report.outcome.is_none(), "unconfirmed is not final");
    let log = std::fs::read_to_string(dir.path().join("a/error.log")).unwrap();
    assert!(log.contains(&id) && log.contains("unconfirmed"), "{log}");
    // The destination answers again: it confirms the cancel.
    hub.drop_next_answers(0);
    let reports = wait_done(&a, std::slice::from_ref(&id), 30).await;
    let sent = reports[0].sent.as_ref().unwrap();
    assert_eq!(sent.state, State::Cancelled, "{sent:?}");
    assert_eq!(reports[0].outcome().unwrap().node, "mute");
    // Free the slot, and run one more message behind it: the cancelled one was passed
    // over, never run.
    std::fs::write(&gate, "").unwrap();
    let after = submit(&mute, gated("mute", &gate, &dir.path().join("after"))).await;
    wait_done(&mute, &[blocker, after], 30).await;
    assert_eq!(
        mute.status(&id).unwrap().received.unwrap().state,
        State::Cancelled
    );
    assert!(!marker.exists(), "a cancelled message ran");
    a.shutdown().await;
    mute.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_whose_acks_are_lost_but_that_started_gets_its_real_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::new();
    let a = start(&hub, config(dir.path(), "a")).await;
    let b = start(&hub, config(dir.path(), "b")).await;
    let gate = dir.path().join("gate");
    let marker = dir.path().join("ran");
    hub.drop_next_answers(1_000_000);
    let mut m = gated("b", &gate, &marker);
    m.ack_timeout = Some(1);
    m.retries = Some(1);
    let id = submit(&a, m).await;
    // Retries run out while it runs: the sender heard it start, so it waits for the
    // result instead of failing it.
    eventually_async(Duration::from_secs(20), "the retries run out", || {
        ready(a.status(&id).unwrap().sent.filter(|s| {
            s.history.iter().any(|h| {
                h.note
                    .as_deref()
                    .is_some_and(|n| n.contains("result is awaited"))
            })
        }))
    })
    .await;
    std::fs::write(&gate, "").unwrap();
    hub.drop_next_answers(0);
    let reports = wait_done(&a, std::slice::from_ref(&id), 30).await;
    assert_eq!(reports[0].state(), Some(State::Done));
    assert_eq!(lines(&marker), vec!["ran"]);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_that_expires_while_waiting_for_the_window_does_not_stall_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::new();
    let mut config_a = config(dir.path(), "a");
    config_a.max_in_flight = 1;
    let a = start(&hub, config_a).await;
    let b = start(&hub, config(dir.path(), "b")).await;
    // The one place on the wire is held by a message whose ACK is lost and which is
    // not resent; meanwhile `expiring` passes its ttl waiting for the window.
    hub.drop_next_answers(1);
    let mut hold = shell("b", "true");
    hold.ack_timeout = Some(2);
    hold.retries = Some(0);
    hold.ordered = Some(false);
    let hold_id = submit(&a, hold).await;
    let mut expiring = shell("b", "true");
    expiring.ttl = Some(1);
    expiring.ordered = Some(false);
    let expiring_id = submit(&a, expiring).await;
    let mut after = shell("b", "echo after");
    after.ordered = Some(false);
    let after_id = submit(&a, after).await;
    let reports = wait_done(&a, &[expiring_id, after_id, hold_id], 20).await;
    assert_eq!(reports[0].state(), Some(State::Failed), "{:?}", reports[0]);
    assert_eq!(
        reports[1].state(),
        Some(State::Done),
        "the next entry went out without waiting for other traffic"
    );
    assert_eq!(reports[2].state(), Some(State::Done));
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_that_overtakes_its_ack_leaves_no_gap_in_the_history() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::new();
    let a = start(&hub, config(dir.path(), "a")).await;
    let b = start(&hub, config(dir.path(), "b")).await;
    // The ACK is lost and the run is quick: the result arrives before any resend.
    hub.drop_next_answers(1);
    let id = submit(&a, shell("b", "true")).await;
    let reports = wait_done(&a, std::slice::from_ref(&id), 20).await;
    let sent = reports[0].sent.as_ref().unwrap();
    let steps: Vec<State> = sent.history.iter().map(|h| h.state).collect();
    // The final commit already holds every step but the send, which follows it.
    for step in [State::Queued, State::Acked, State::Done] {
        assert!(steps.contains(&step), "{step:?} missing from {steps:?}");
    }
    eventually_async(Duration::from_secs(5), "the send is in the history", || {
        ready(
            a.status(&id)
                .unwrap()
                .sent
                .filter(|s| s.sends >= 1 && s.history.iter().any(|h| h.state == State::Sent)),
        )
    })
    .await;
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_refuses_bad_batches_whole_and_names_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::new();
    let a = start(&hub, config(dir.path(), "a")).await;
    let good = shell("b", "true");
    let mut bad = shell("b", "true");
    bad.ack_timeout = Some(0);
    let err = a.submit(vec![good, bad]).await.unwrap_err().to_string();
    assert!(
        err.starts_with("message 1:") && err.contains("ACKTimeout"),
        "{err}"
    );
    assert_eq!(
        a.depths().unwrap().outbox,
        0,
        "nothing of a refused batch is queued"
    );
    let mut big = shell("b", "true");
    big.data.push("x".repeat(2 * 1024 * 1024));
    let err = a.submit(vec![big]).await.unwrap_err().to_string();
    assert!(err.contains("limit"), "{err}");
    // Re-submitting a known id does not queue it twice.
    let mut m = shell("nobody", "true");
    m.id = Some(bosun_proto::new_id());
    let first = a.submit(vec![m.clone()]).await.unwrap();
    let again = a.submit(vec![m]).await.unwrap();
    assert_eq!(first, again);
    assert_eq!(a.depths().unwrap().outbox, 1);
    // The same id with other content is refused, and nothing of its batch is queued.
    let mut other = m_other(&first[0].id);
    other.data = vec!["false".into()];
    let err = a
        .submit(vec![shell("nobody", "true"), other])
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("message 1:")
            && err.contains(&format!(
                "id {} is already used by a different message",
                first[0].id
            )),
        "{err}"
    );
    assert_eq!(a.depths().unwrap().outbox, 1);
    // With toNodes, each destination's id is derived from the id: a re-submit finds them.
    let mut fan = shell("nobody", "true");
    fan.to_node = None;
    fan.to_nodes = vec!["x".into(), "y".into()];
    fan.id = Some(bosun_proto::new_id());
    let first = a.submit(vec![fan.clone()]).await.unwrap();
    let again = a.submit(vec![fan]).await.unwrap();
    assert_eq!(first, again);
    assert_eq!(first.len(), 2);
    assert_eq!(a.depths().unwrap().outbox, 3);
    a.shutdown().await;
}

fn m_other(id: &str) -> Message {
    let mut m = shell("nobody", "true");
    m.id = Some(id.to_string());
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rerun_on_restart_runs_an_interrupted_message_again_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::new();
    let a = start(&hub, config(dir.path(), "a")).await;
    let b_config = config(dir.path(), "b");
    let b = start(&hub, b_config.clone()).await;
    let record = dir.path().join("runs.txt");
    let script = format!(
        "if [ -f {f} ]; then echo second >> {f}; else echo first >> {f}; sleep 30; fi",
        f = record.display()
    );
    let mut m = shell("b", &script);
    m.rerun_on_restart = true;
    let id = submit(&a, m).await;
    eventually_async(Duration::from_secs(10), "the first run starts", || {
        ready((!lines(&record).is_empty()).then_some(()))
    })
    .await;
    b.shutdown().await;
    let b = start(&hub, b_config).await;
    let report = wait_done(&a, std::slice::from_ref(&id), 20).await.remove(0);
    assert_eq!(report.state(), Some(State::Done));
    assert_eq!(
        lines(&record),
        vec!["first", "second"],
        "run again after the restart, as asked"
    );
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_repeats_the_message_until_its_total_has_passed() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::new();
    let a = start(&hub, config(dir.path(), "a")).await;
    let b = start(&hub, config(dir.path(), "b")).await;
    let record = dir.path().join("runs.txt");
    let mut m = shell("b", &format!("echo run >> {}", record.display()));
    m.schedule = Some(vec![1, 3]);
    let first = submit(&a, m).await;
    wait_done(&a, &[first], 10).await;
    eventually_async(Duration::from_secs(15), "four runs", || {
        ready((lines(&record).len() >= 4).then_some(()))
    })
    .await;
    // No event marks the end of a schedule: show that no fifth run comes for longer
    // than one interval past the total.
    holds_for_async(
        Duration::from_millis(2500),
        "the first run and one repeat per second for 3 s, then no more",
        || lines(&record).len() == 4,
    )
    .await;
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resubmitted_id_the_sender_forgot_gets_the_real_result_from_the_duplicate_ack() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::new();
    let b = start(&hub, config(dir.path(), "b")).await;
    let marker = dir.path().join("ran");
    let mut m = shell("b", &format!("echo ran >> {}; echo out", marker.display()));
    m.id = Some(bosun_proto::new_id());
    let first = start(&hub, config(dir.path(), "a")).await;
    let id = submit(&first, m.clone()).await;
    wait_done(&first, std::slice::from_ref(&id), 20).await;
    first.shutdown().await;
    // The sender comes back with its records gone (a new data dir) and sends the same
    // id again: it is not run again, and the ACK brings the result.
    let mut fresh = config(dir.path(), "a");
    fresh.data_dir = dir.path().join("a-fresh");
    let again = start(&hub, fresh).await;
    submit(&again, m).await;
    let reports = wait_done(&again, std::slice::from_ref(&id), 20).await;
    assert_eq!(reports[0].state(), Some(State::Done));
    assert_eq!(reports[0].outcome().unwrap().stdout, "out\n");
    assert_eq!(lines(&marker), vec!["ran"], "run once");
    again.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_for_a_message_failed_here_wins_and_the_disagreement_is_kept() {
    use bosun_bus::Transport;
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::new();
    let a = start(&hub, config(dir.path(), "a")).await;
    let mut m = shell("ghost", "true");
    m.ttl = Some(1);
    let id = submit(&a, m).await;
    wait_done(&a, std::slice::from_ref(&id), 20).await;
    assert_eq!(a.status(&id).unwrap().state(), Some(State::Failed));
    // Later, "ghost" reports that it did run it after all.
    let outcome = bosun_proto::Outcome {
        stdout: "late\n".into(),
        ..bosun_proto::Outcome::bare(bosun_proto::Status::Done, "ghost", "", 1)
    };
    let result = Message {
        id: Some(bosun_proto::new_id()),
        to_node: Some("a".into()),
        from_node: Some("ghost".into()),
        method: "result".into(),
        previous_message: Some(id.clone()),
        result: Some(bosun_proto::Outcome {
            error: None,
            ..outcome
        }),
        ..Default::default()
    };
    let frame = bosun_proto::wire::encode(&bosun_proto::wire::Request {
        v: bosun_proto::wire::WIRE_VERSION,
        msg: result,
    });
    let ack = LocalTransport::new(hub.clone())
        .request(
            "bosun.a.result".into(),
            frame.into(),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    let ack = bosun_proto::wire::decode_ack(&ack).unwrap();
    assert!(ack.rejected.is_none(), "{ack:?}");
    let sent = a.status(&id).unwrap().sent.unwrap();
    assert_eq!(sent.state, State::Done, "the destination's word wins");
    assert_eq!(sent.outcome.as_ref().unwrap().stdout, "late\n");
    let disagreement = sent.disagreement.expect("the disagreement is kept");
    assert!(
        disagreement.contains("failed") && disagreement.contains("ghost"),
        "{disagreement}"
    );
    let log = std::fs::read_to_string(dir.path().join("a/error.log")).unwrap();
    assert!(log.contains("disagreement") && log.contains(&id), "{log}");
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ping_whose_start_is_written_with_its_finish_shows_every_step() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::new();
    let a = start(&hub, config(dir.path(), "a")).await;
    let b = start(&hub, config(dir.path(), "b")).await;
    let ping = Message {
        to_node: Some("b".into()),
        method: "ping".into(),
        ..Default::default()
    };
    let ids = vec![submit(&a, ping.clone()).await, submit(&a, ping).await];
    wait_done(&a, &ids, 20).await;
    for id in &ids {
        // The destination's record has every step, in order, although the run's start
        // was written only with its finish.
        let inbox = eventually_async(Duration::from_secs(5), "the ping is done at b", || {
            ready(
                b.status(id)
                    .unwrap()
                    .received
                    .filter(|r| r.state == State::Done),
            )
        })
        .await;
        let steps: Vec<State> = inbox.history.iter().map(|h| h.state).collect();
        assert_eq!(steps, [State::Received, State::Running, State::Done]);
        assert!(
            inbox.history.windows(2).all(|w| w[0].at <= w[1].at),
            "{:?}",
            inbox.history
        );
        // The sender learns of the start from the result.
        let sent = a.status(id).unwrap().sent.unwrap();
        assert!(
            sent.history.iter().any(|h| h.state == State::Running),
            "{:?}",
            sent.history
        );
    }
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_run_that_lasts_records_its_start_before_its_sender_hears_it_runs() {
    let dir = tempfile::tempdir().unwrap();
    // A Docker socket that takes connections and never answers: a `containerList` on
    // it runs until its method timeout.
    let socket = dir.path().join("silent.sock");
    let listener = tokio::net::UnixListener::bind(&socket).unwrap();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = listener.accept().await {
            held.push(conn);
        }
    });
    let hub = Hub::new();
    let a = start(&hub, config(dir.path(), "a")).await;
    let mut b_config = config(dir.path(), "b");
    b_config.docker_socket = socket;
    let b = start(&hub, b_config).await;
    let list = Message {
        to_node: Some("b".into()),
        method: "containerList".into(),
        method_timeout: Some(3),
        ..Default::default()
    };
    let id = submit(&a, list).await;
    // Its start is written once it has run a while, before its sender is told.
    eventually_async(Duration::from_secs(10), "b records that it runs", || {
        ready(
            b.status(&id)
                .unwrap()
                .received
                .filter(|r| r.state == State::Running),
        )
    })
    .await;
    eventually_async(Duration::from_secs(10), "a hears that it runs", || {
        ready(
            a.status(&id)
                .unwrap()
                .sent
                .filter(|s| s.state == State::Running),
        )
    })
    .await;
    wait_done(&a, std::slice::from_ref(&id), 30).await;
    let inbox = b.status(&id).unwrap().received.unwrap();
    let steps: Vec<State> = inbox.history.iter().map(|h| h.state).collect();
    assert_eq!(steps.len(), 3, "{steps:?}");
    assert_eq!(steps[..2], [State::Received, State::Running]);
    assert!(steps[2].is_terminal(), "{steps:?}");
    a.shutdown().await;
    b.shutdown().await;
    silent.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_docker_daemon_never_answers_shuts_down_without_waiting_for_it() {
    let dir = tempfile::tempdir().unwrap();
    // A Docker socket that takes connections and never answers.
    let socket = dir.path().join("silent.sock");
    let listener = tokio::net::UnixListener::bind(&socket).unwrap();
    let (accepted_tx, mut accepted) = tokio::sync::mpsc::unbounded_channel();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = listener.accept().await {
            held.push(conn);
            let _ = accepted_tx.send(());
        }
    });
    let hub = Hub::new();
    let mut b_config = config(dir.path(), "b");
    b_config.docker_socket = socket;
    // The event stream's capture follows containers, and the hello counts them.
    b_config.capture = true;
    b_config.central = Some("central".into());
    // And a container workload is being started.
    let workloads = dir.path().join("workloads.yaml");
    std::fs::write(&workloads, "- {name: w, container: {image: busybox}}\n").unwrap();
    b_config.workloads_file = Some(workloads);
    // A long grace: waiting on the daemon would show as 30 s or more (the capture's and
    // the supervisor's request timeouts), not as the grace.
    b_config.kill_grace_secs = 30;
    let b = start(&hub, b_config).await;
    // All three are waiting on the daemon when the node is told to stop.
    for _ in 0..3 {
        tokio::time::timeout(Duration::from_secs(10), accepted.recv())
            .await
            .expect("the node reaches its Docker socket")
            .unwrap();
    }
    let began = std::time::Instant::now();
    b.shutdown().await;
    let took = began.elapsed();
    assert!(
        took < Duration::from_secs(10),
        "shutdown waited {took:?} on a daemon that never answers"
    );
    silent.abort();
}

/// The value of a counter (summed over its labels when `labels` is empty) in a node's
/// metrics text.
fn counter(node: &Node, name: &str, labels: &str) -> u64 {
    node.metrics()
        .encode()
        .lines()
        .filter(|l| l.starts_with(&format!("{name}_total{labels}")))
        .filter(|l| labels.is_empty() || l.contains(labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// `n` unordered pings to `to`: ordered messages of one stream go one at a time, so
/// only unordered ones are ready together.
fn unordered_pings(to: &str, n: usize) -> Vec<Message> {
    (0..n)
        .map(|_| Message {
            to_node: Some(to.into()),
            method: "ping".into(),
            ordered: Some(false),
            ..Default::default()
        })
        .collect()
}

/// Submit `messages` at once (one commit, so all are ready together); their ids.
async fn submit_all(node: &Node, messages: Vec<Message>) -> Vec<String> {
    node.submit(messages)
        .await
        .unwrap()
        .into_iter()
        .map(|q| q.id)
        .collect()
}

/// `n` unordered commands to `to`, each appending its number to `marker`.
fn numbered_commands(to: &str, n: usize, marker: &Path, then: &str) -> Vec<Message> {
    (0..n)
        .map(|i| Message {
            ordered: Some(false),
            ..shell(to, &format!("echo {i} >> {}{then}", marker.display()))
        })
        .collect()
}

/// Every one of `ids` is done at `node`, and each of the `n` numbered commands wrote
/// `marker` once.
async fn each_done_and_run_once(node: &Node, ids: &[String], marker: &PathBuf, n: usize) {
    let reports = wait_done(node, ids, 60).await;
    for r in &reports {
        assert_eq!(r.state(), Some(State::Done), "{r:?}");
    }
    let mut ran = lines(marker);
    ran.sort();
    let mut expected: Vec<String> = (0..n).map(|i| i.to_string()).collect();
    expected.sort();
    assert_eq!(ran, expected, "each ran once");
}

/// Wait until every one of `ids` is acked at `node`.
async fn all_acked(node: &Node, ids: &[String], what: &str) {
    eventually_async(Duration::from_secs(20), what, || {
        ready(
            ids.iter()
                .all(|id| {
                    node.status(id)
                        .unwrap()
                        .sent
                        .is_some_and(|s| s.state == State::Acked)
                })
                .then_some(()),
        )
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_queued_together_for_one_node_travel_in_batches_and_each_runs_once() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::new();
    let a = start(&hub, config(dir.path(), "a")).await;
    let b = start(&hub, config(dir.path(), "b")).await;
    let marker = dir.path().join("ran");
    let mut messages = unordered_pings("b", 30);
    messages.extend(numbered_commands("b", 10, &marker, ""));
    let ids = submit_all(&a, messages).await;
    each_done_and_run_once(&a, &ids, &marker, 10).await;
    // They went in batches (their results on the way back batch as their finishes
    // share commits, which depends on timing).
    assert!(counter(&a, "bosun_request_frames", r#"{kind="batch"}"#) >= 1);
    assert!(counter(&a, "bosun_batched_requests", "") >= 2);
    for id in &ids {
        let received = b.status(id).unwrap().received.unwrap();
        assert_eq!(received.arrivals, 1, "{id} arrived once");
    }
    // The audit log has each message once where it was submitted and where it arrived,
    // and each result once where it came back, though a batch's lines share a write.
    let audited = |node: &str, event: &str| {
        let log = std::fs::read_to_string(dir.path().join(node).join("audit.log")).unwrap();
        log.lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("whole lines"))
            .filter(|l| l["event"] == event)
            .map(|l| l["message"].clone())
            .collect::<Vec<_>>()
    };
    let submitted = audited("a", "submitted");
    let arrived = audited("b", "received");
    let results = audited("a", "received");
    for id in &ids {
        let count = |lines: &[serde_json::Value], field: &str| {
            lines.iter().filter(|m| m[field] == id.as_str()).count()
        };
        assert_eq!(count(&submitted, "id"), 1, "{id} audited as submitted at a");
        assert_eq!(count(&arrived, "id"), 1, "{id} audited as received at b");
        assert_eq!(count(&results, "previousMessage"), 1, "{id}'s result at a");
    }
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_request_of_a_batch_is_answered_as_if_it_came_alone() {
    use bosun_bus::Transport;
    use bosun_proto::wire::{self, Request, WIRE_VERSION};
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::new();
    let b = start(&hub, config(dir.path(), "b")).await;
    let ping = Message {
        id: Some(bosun_proto::new_id()),
        from_node: Some("a".into()),
        to_node: Some("b".into()),
        method: "ping".into(),
        ..Default::default()
    };
    let request = wire::encode(&Request {
        v: WIRE_VERSION,
        msg: ping.clone(),
    });
    let other_node = wire::encode(&Request {
        v: WIRE_VERSION,
        msg: Message {
            id: Some(bosun_proto::new_id()),
            to_node: Some("c".into()),
            ..ping.clone()
        },
    });
    let other_version = br#"{"v":9,"msg":{"method":"ping"}}"#.to_vec();
    // The same request twice in one batch, a request meant for another node, one of
    // another wire version, and one that is no request.
    let frame = wire::encode_batch([
        request.as_slice(),
        other_node.as_slice(),
        request.as_slice(),
        other_version.as_slice(),
        br#"{"v":1,"msg":42}"#.as_slice(),
    ]);
    let answer = LocalTransport::new(hub.clone())
        .request(
            "bosun.b._batch".into(),
            frame.into(),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    let acks: Vec<wire::Ack> = wire::decode_batch_ack(&answer)
        .unwrap()
        .into_iter()
        .map(|a| wire::decode_ack(a.expect("every request is answered")).unwrap())
        .collect();
    assert_eq!(acks.len(), 5);
    let id = ping.id.clone().unwrap();
    // The two copies: one new, one a duplicate, whichever was recorded first.
    assert_eq!(
        (acks[0].id.as_str(), acks[2].id.as_str()),
        (id.as_str(), id.as_str())
    );
    assert!(acks[0].rejected.is_none() && acks[2].rejected.is_none());
    assert_eq!(
        [acks[0].duplicate, acks[2].duplicate]
            .iter()
            .filter(|d| **d)
            .count(),
        1,
        "{acks:?}"
    );
    let refused = acks[1]
        .rejected
        .as_deref()
        .expect("another node's message is refused");
    assert!(refused.contains("toNode"), "{refused}");
    assert!(acks[3].rejected.as_deref().unwrap().contains("version 9"));
    assert!(acks[4].rejected.as_deref().unwrap().contains("malformed"));
    eventually_async(Duration::from_secs(10), "b runs the ping", || {
        ready(
            b.status(&id)
                .unwrap()
                .received
                .filter(|r| r.state == State::Done),
        )
    })
    .await;
    let received = b.status(&id).unwrap().received.unwrap();
    assert_eq!(received.arrivals, 2);
    let runs = received
        .history
        .iter()
        .filter(|h| h.state == State::Running)
        .count();
    assert_eq!(runs, 1, "run once: {:?}", received.history);
    b.shutdown().await;
}

/// A node on the hub that reads only single requests, as one from before batches does:
/// a batch frame does not decode as a request, so it is refused without an id and
/// nothing of it is recorded. It keeps the ids of the single requests it ACKs and
/// counts the batches; each batch is answered only once `hold` lets it (`None`: at once).
struct OldNode {
    singles: Arc<std::sync::Mutex<Vec<String>>>,
    batches: tokio::sync::mpsc::UnboundedReceiver<()>,
    task: tokio::task::JoinHandle<()>,
}

async fn old_node(hub: &Arc<Hub>, name: &str, hold: Option<Arc<tokio::sync::Notify>>) -> OldNode {
    use bosun_bus::Transport;
    use bosun_proto::wire::{self, Ack, WIRE_VERSION};
    use futures::StreamExt;
    let transport = LocalTransport::new(hub.clone());
    let mut arrivals = transport
        .subscribe(format!("bosun.{name}.>"))
        .await
        .unwrap();
    let (batch_tx, batches) = tokio::sync::mpsc::unbounded_channel();
    let singles = Arc::new(std::sync::Mutex::new(Vec::new()));
    let acked = singles.clone();
    let task = tokio::spawn(async move {
        while let Some(mut incoming) = arrivals.next().await {
            let (id, rejected) = match wire::decode_request(&incoming.payload) {
                Ok(request) => {
                    let id = request.msg.id().to_string();
                    acked.lock().unwrap().push(id.clone());
                    (id, None)
                }
                Err(e) => {
                    let _ = batch_tx.send(());
                    if let Some(hold) = &hold {
                        hold.notified().await;
                    }
                    (String::new(), Some(e.to_string()))
                }
            };
            let ack = Ack {
                v: WIRE_VERSION,
                id,
                duplicate: false,
                rejected,
                state: None,
                outcome: None,
            };
            let _ = incoming.respond(wire::encode(&ack).into()).await;
        }
    });
    OldNode {
        singles,
        batches,
        task,
    }
}

impl OldNode {
    /// The batches it refused so far.
    fn batches_refused(&mut self) -> usize {
        let mut n = 0;
        while self.batches.try_recv().is_ok() {
            n += 1;
        }
        n
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_takes_no_batches_gets_one_request_per_frame_and_nothing_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::new();
    let mut old = old_node(&hub, "old", None).await;
    let a = start(&hub, config(dir.path(), "a")).await;
    let ids = submit_all(&a, unordered_pings("old", 20)).await;
    all_acked(&a, &ids, "every message is acked").await;
    assert_eq!(old.batches_refused(), 1, "one batch was tried, and refused");
    let mut singles = old.singles.lock().unwrap().clone();
    singles.sort();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(singles, expected, "then each went alone, once");
    // The refusal of the batch is no refusal of its messages: none is rejected, and the
    // history shows one send each.
    for id in &ids {
        let sent = a.status(id).unwrap().sent.unwrap();
        assert!(sent.outcome.is_none(), "{sent:?}");
        let sends = sent
            .history
            .iter()
            .filter(|h| h.state == State::Sent)
            .count();
        assert_eq!(sends, 1, "{:?}", sent.history);
    }
    // More messages to it go alone at once, without another try.
    let later = submit_all(&a, unordered_pings("old", 5)).await;
    all_acked(&a, &later, "the later ones are acked").await;
    assert_eq!(old.batches_refused(), 0, "no batch was tried again");
    assert_eq!(old.singles.lock().unwrap().len(), 25);
    a.shutdown().await;
    old.task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_whose_answer_is_lost_is_sent_again_and_each_message_runs_once() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::new();
    // No hellos: the first answer to a request on the hub is then the batch's.
    let quiet = |name: &str| Config {
        hello_interval_secs: 0,
        ..config(dir.path(), name)
    };
    let a = start(&hub, quiet("a")).await;
    let b = start(&hub, quiet("b")).await;
    let marker = dir.path().join("ran");
    hub.drop_next_answers(1);
    // Each runs past the ACK timeout (1 s), so no result settles it before its resend.
    let ids = submit_all(&a, numbered_commands("b", 20, &marker, "; sleep 2")).await;
    each_done_and_run_once(&a, &ids, &marker, 20).await;
    // The whole batch failed together: each message arrived twice and was sent twice,
    // each on its own record.
    for id in &ids {
        assert!(
            b.status(id).unwrap().received.unwrap().arrivals >= 2,
            "{id}"
        );
        let sent = a.status(id).unwrap().sent.unwrap();
        let sends = sent
            .history
            .iter()
            .filter(|h| h.state == State::Sent)
            .count();
        assert!(sends >= 2, "{:?}", sent.history);
    }
    assert!(counter(&a, "bosun_ack_timeouts", "") >= 20);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_that_waits_on_a_refused_batch_cancels_what_never_arrived() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::new();
    // "old" holds its answer to the batch until told.
    let answer_now = Arc::new(tokio::sync::Notify::new());
    let mut old = old_node(&hub, "old", Some(answer_now.clone())).await;
    let a = start(
        &hub,
        Config {
            ack_timeout_secs: 10,
            ..config(dir.path(), "a")
        },
    )
    .await;
    let ids = submit_all(&a, unordered_pings("old", 3)).await;
    tokio::time::timeout(Duration::from_secs(10), old.batches.recv())
        .await
        .expect("the batch goes out")
        .unwrap();
    // The operator cancels one while the batch is on the wire: the cancel waits for the
    // batch's answer, which shows it never arrived.
    let cancel = {
        let a = &a;
        let id = ids[0].clone();
        async move { a.cancel(&id).await }
    };
    let (cancelled, ()) = tokio::join!(cancel, async {
        // The outbox loop takes cancels in order: once a second one is answered, the
        // first waits for the batch's answer, which is released only then.
        let unknown = bosun_proto::new_id();
        let answer = a.cancel(&unknown).await;
        assert!(
            matches!(answer, bosun_node::Cancelled::Refused { .. }),
            "{answer:?}"
        );
        answer_now.notify_one();
    });
    assert_eq!(cancelled, bosun_node::Cancelled::Cancelled, "{cancelled:?}");
    all_acked(&a, &ids[1..], "the other two are acked").await;
    assert_eq!(
        a.status(&ids[0]).unwrap().sent.unwrap().state,
        State::Cancelled
    );
    assert!(
        !old.singles.lock().unwrap().contains(&ids[0]),
        "the cancelled one was never sent again"
    );
    a.shutdown().await;
    old.task.abort();
}

/// The durable commits of `node`'s store so far, from its metrics.
fn durable_commits(node: &Node) -> u64 {
    counter(node, "bosun_store_commits", "{durable=\"true\"}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_with_nothing_ahead_of_it_starts_with_its_arrival_and_one_behind_waits() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::new();
    let a = start(&hub, config(dir.path(), "a")).await;
    let b = start(&hub, config(dir.path(), "b")).await;
    let record = dir.path().join("record.txt");

    // One at a time, each finds its stream free at b: its arrival and its start are one
    // fsynced commit, its finish and reply the other. (Three per command if the start
    // were a commit of its own.)
    let n = 10;
    let before = durable_commits(&b);
    for i in 0..n {
        let id = submit(&a, shell("b", &format!("echo {i} >> {}", record.display()))).await;
        wait_done(&a, std::slice::from_ref(&id), 20).await;
        let steps = b.status(&id).unwrap().received.unwrap().history;
        assert_eq!(
            steps.iter().map(|h| h.state).collect::<Vec<_>>(),
            [State::Received, State::Running, State::Done]
        );
        assert_eq!(steps[0].at, steps[1].at, "started as it arrived: {steps:?}");
    }
    let commits = durable_commits(&b) - before;
    assert!(
        (2 * n..=2 * n + n / 2).contains(&commits),
        "{commits} durable commits at b for {n} commands"
    );
    let want: Vec<String> = (0..n).map(|i| i.to_string()).collect();
    assert_eq!(lines(&record), want);

    // One that arrives while another of its stream runs waits for it, as before.
    let gate = dir.path().join("gate");
    let first = submit(
        &a,
        shell(
            "b",
            &format!(
                "while [ ! -e {} ]; do sleep 0.02; done; echo first >> {}",
                gate.display(),
                record.display()
            ),
        ),
    )
    .await;
    eventually_async(Duration::from_secs(20), "the first runs at b", || {
        ready(
            b.status(&first)
                .unwrap()
                .received
                .filter(|r| r.state == State::Running),
        )
    })
    .await;
    let second = submit(
        &a,
        shell("b", &format!("echo second >> {}", record.display())),
    )
    .await;
    eventually_async(Duration::from_secs(20), "the second waits at b", || {
        ready(b.status(&second).unwrap().received)
    })
    .await;
    holds_for_async(
        Duration::from_millis(300),
        "the second does not start while the first runs",
        || {
            b.status(&second)
                .unwrap()
                .received
                .is_some_and(|r| r.state == State::Received)
        },
    )
    .await;
    std::fs::write(&gate, "").unwrap();
    wait_done(&a, &[first.clone(), second.clone()], 20).await;
    assert_eq!(&lines(&record)[n as usize..], ["first", "second"]);
    let done_first = b.status(&first).unwrap().received.unwrap().history[2].at;
    let second_steps = b.status(&second).unwrap().received.unwrap().history;
    assert!(
        second_steps[1].state == State::Running && second_steps[1].at >= done_first,
        "{second_steps:?} started before the first was done at {done_first}"
    );
    a.shutdown().await;
    b.shutdown().await;
}
