//! The inbox loop: starts received messages in order, runs their handlers, and queues
//! each outcome as a durable reply.
//!
//! Start is recorded durably before the handler runs, so that a crash mid-run is seen
//! at the next start-up and reported as `interrupted` instead of being run again. The
//! process group a run starts is recorded with it, so that the next start-up first kills
//! whatever of it is still running.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bosun_core::{LaneItem, Lanes};
use bosun_methods::process::{Group, Leftover, ProcessError};
use bosun_proto::wire::{self, STATUS_TOKEN, StatusNote, WIRE_VERSION};
use bosun_proto::{Message, Method, Outcome, State, Status};
use bosun_store::{ProcessRecord, StoreError};
use bytes::Bytes;
use tokio::sync::mpsc;

use bosun_bus::Transport;
use bosun_capture::Capture;
use bosun_store::Store;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::errorlog::ErrorEntry;
use crate::handles::{ErrorReporter, RunningCount};
use crate::metrics::Metrics;
use crate::node::now_millis;
use crate::submit::Submitter;

/// What the inbox loop and the runs it starts use.
pub(crate) struct Executor {
    pub config: Arc<Config>,
    pub store: Store,
    /// For the best-effort `running` note to the sender.
    pub transport: Arc<dyn Transport>,
    /// For the messages a handler produces.
    pub submitter: Submitter,
    /// For the messages a handler hands over while it runs (a copy's chunks); made by
    /// [`follow_ups`].
    pub follow_ups: bosun_methods::SubmitSink,
    pub methods: bosun_methods::Context,
    /// For `mark` and `captureFile`, when the event stream is on.
    pub capture: Option<Capture>,
    /// For the `chaos…` methods: the lease engine.
    pub chaos: crate::chaos::Experiments,
    /// For the `workload…` methods: the supervisor.
    pub workloads: Arc<crate::workloads::Workloads>,
    pub metrics: Metrics,
    /// Every run that did not succeed goes to the error log, and from there to central's.
    pub reporter: ErrorReporter,
    /// Asks the hello loop for a hello now (after a drain, so the fleet hears at once).
    pub hello_now: Arc<tokio::sync::Notify>,
    pub running: RunningCount,
    /// Cancelled at shutdown: no new run starts.
    pub shutdown: CancellationToken,
    pub tracker: TaskTracker,
}

/// The ordering stream of a received message: its sender and method.
pub(crate) type Stream = (String, Method);

/// The received messages waiting to run and the lanes that decide which runs next,
/// shared by the receiver, which queues each arrival or starts it at once when nothing is
/// ahead of it, and the inbox loop, which starts the others as places free up.
pub(crate) struct Inbox {
    executor: Arc<Executor>,
    queue: std::sync::Mutex<Queue>,
    /// Wakes the inbox loop: something was queued, or a place freed up.
    wake: tokio::sync::Notify,
}

struct Queue {
    lanes: Lanes<Stream>,
    messages: HashMap<String, Message>,
    /// Ordered arrivals being recorded, per stream: while one is, no later arrival of its
    /// stream starts at once, so none overtakes it.
    arriving: HashMap<Stream, usize>,
}

impl Inbox {
    /// The inbox of `executor`, holding the messages recovered at start-up.
    pub(crate) fn new(executor: Arc<Executor>, recovered: Vec<ToRun>) -> Arc<Inbox> {
        let mut queue = Queue {
            lanes: Lanes::new(executor.config.max_concurrent),
            messages: HashMap::new(),
            arriving: HashMap::new(),
        };
        for r in recovered {
            queue.push(r.seq, r.message, r.stream);
        }
        Arc::new(Inbox {
            executor,
            queue: std::sync::Mutex::new(queue),
            wake: tokio::sync::Notify::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        // Nothing panics while holding it; a poisoned lock still holds whole lanes.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A message is about to be recorded on arrival. It takes its place in the lanes at
    /// once when nothing is ahead of it (and the node is not stopping): then the receiver
    /// records its start with its arrival, and runs it as soon as that is durable.
    pub(crate) fn arrive(self: &Arc<Self>, message: &Message, method: Method) -> Arrival {
        let stream = stream(message, method);
        let mut queue = self.lock();
        let now = !self.executor.shutdown.is_cancelled()
            && stream
                .as_ref()
                .is_none_or(|k| !queue.arriving.contains_key(k))
            && queue.lanes.try_start(stream.as_ref());
        if !now && let Some(k) = &stream {
            *queue.arriving.entry(k.clone()).or_default() += 1;
        }
        Arrival {
            inbox: self.clone(),
            stream,
            starts_now: now,
            settled: false,
        }
    }

    /// Give a place in the lanes back and let the loop start what waited for it.
    fn done(&self, item: &LaneItem<Stream>) {
        self.lock().lanes.done(item);
        self.wake.notify_one();
    }

    /// The messages that may start now, each holding its place.
    fn take_ready(&self) -> Vec<(LaneItem<Stream>, Message)> {
        let mut queue = self.lock();
        let mut ready = Vec::new();
        for item in queue.lanes.take_ready() {
            match queue.messages.remove(&item.id) {
                Some(message) => ready.push((item, message)),
                None => queue.lanes.done(&item),
            }
        }
        ready
    }

    /// Run `message`, which holds its place `item` in the lanes, on a task of its own.
    /// With `started_at`, its start is durable already.
    fn spawn(
        self: &Arc<Self>,
        item: LaneItem<Stream>,
        message: Message,
        started_at: Option<bosun_proto::Millis>,
    ) {
        let executor = self.executor.clone();
        executor.running.enter();
        let slot = Slot(Some((self.clone(), item)));
        self.executor.tracker.spawn(async move {
            let mut slot = slot;
            run_one(&executor, message, started_at, &mut slot).await;
            executor.running.leave();
            slot.free();
        });
    }
}

impl Queue {
    fn push(&mut self, seq: u64, message: Message, stream: Option<Stream>) {
        let id = message.id().to_string();
        self.lanes.push(LaneItem {
            seq,
            id: id.clone(),
            stream,
        });
        self.messages.insert(id, message);
    }

    /// An ordered arrival of stream `k` is recorded (or given up).
    fn left(&mut self, k: &Stream) {
        if let Some(n) = self.arriving.get_mut(k) {
            *n -= 1;
            if *n == 0 {
                self.arriving.remove(k);
            }
        }
    }
}

/// A message being recorded on arrival, and its place in the lanes: taken already when
/// it [`starts_now`](Arrival::starts_now), else to be queued once it is recorded. Dropped
/// without being recorded (a duplicate, a failed write), it gives its place back.
pub(crate) struct Arrival {
    inbox: Arc<Inbox>,
    stream: Option<Stream>,
    starts_now: bool,
    settled: bool,
}

impl Arrival {
    /// Whether it runs as soon as it is recorded, with nothing ahead of it.
    pub(crate) fn starts_now(&self) -> bool {
        self.starts_now
    }

    /// Recorded as new with `seq` (and, with `started_at`, its start with it): run it now,
    /// or queue it behind what is ahead of it.
    pub(crate) fn recorded(
        mut self,
        seq: u64,
        message: Message,
        started_at: Option<bosun_proto::Millis>,
    ) {
        self.settled = true;
        let stream = self.stream.take();
        if self.starts_now {
            let item = LaneItem {
                seq,
                id: message.id().to_string(),
                stream,
            };
            self.inbox.spawn(item, message, started_at);
            return;
        }
        {
            let mut queue = self.inbox.lock();
            if let Some(k) = &stream {
                queue.left(k);
            }
            queue.push(seq, message, stream);
        }
        self.inbox.wake.notify_one();
    }
}

impl Drop for Arrival {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        if self.starts_now {
            let item = LaneItem {
                seq: 0,
                id: String::new(),
                stream: self.stream.take(),
            };
            self.inbox.done(&item);
        } else if let Some(k) = &self.stream {
            self.inbox.lock().left(k);
            // An arrival of the stream may have been kept from starting by this one.
            self.inbox.wake.notify_one();
        }
    }
}

pub(crate) struct ToRun {
    seq: u64,
    message: Message,
    stream: Option<Stream>,
}

/// At start-up: end what runs interrupted by a crash left running (their recorded
/// process groups), then report those runs as `interrupted` (unless they asked for
/// `rerunOnRestart`), and return the messages that were received but not started, in
/// arrival order, with the runs to do again.
pub(crate) async fn recover(executor: &Arc<Executor>) -> Result<Vec<ToRun>, StoreError> {
    let mut to_run = Vec::new();
    for (seq, record) in executor.store.inbox_pending()? {
        let message = record.message;
        let stream = stream_of(&message);
        if record.state != State::Running {
            to_run.push(ToRun {
                seq,
                message,
                stream,
            });
            continue;
        }
        let leftover = match record.process {
            Some(process) => Some(end_leftovers(executor, message.id(), process).await),
            None => None,
        };
        let ended = !matches!(leftover, Some(Err(_)));
        if message.rerun_on_restart && ended {
            tracing::info!(
                id = message.id(),
                "interrupted by a restart; running again (rerunOnRestart)"
            );
            to_run.push(ToRun {
                seq,
                message,
                stream,
            });
            continue;
        }
        let what = match &leftover {
            None => "the node stopped while the method ran".to_string(),
            Some(Ok(left)) => format!("the node stopped while the method ran; {left}"),
            Some(Err(e)) => format!(
                "the node stopped while the method ran; at restart its process group could not be ended: {e}"
            ),
        };
        let why = if ended {
            "it was not run again (set rerunOnRestart to allow that)"
        } else {
            "it was not run again, so that two runs never overlap"
        };
        let outcome = Outcome::bare(
            Status::Interrupted,
            executor.config.name.as_str(),
            format!("{what}; {why}"),
            now_millis(),
        );
        tracing::warn!(
            id = message.id(),
            reason = outcome.error.as_deref().unwrap_or_default(),
            "interrupted by a restart; reporting, not re-running"
        );
        let reply = reply_for(executor, &message, &outcome);
        report_failure(executor, &message, &outcome);
        executor
            .store
            .finish(message.id(), outcome, reply, now_millis())
            .await?;
    }
    Ok(to_run)
}

/// Kill what is left of a run's recorded process group, waiting (bounded) until it is
/// gone.
async fn end_leftovers(
    executor: &Arc<Executor>,
    id: &str,
    process: ProcessRecord,
) -> Result<Leftover, ProcessError> {
    let group = Group {
        pgid: process.pgid,
        start_time: process.start_time,
        boot_id: process.boot_id,
    };
    let limit = executor.methods.kill_grace.max(Duration::from_secs(5));
    let ended =
        tokio::task::spawn_blocking(move || bosun_methods::process::end_leftovers(&group, limit))
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    match &ended {
        Ok(Leftover::Killed { pgid, processes }) => tracing::warn!(
            id,
            pgid,
            processes,
            "killed what an interrupted run left running"
        ),
        Ok(_) => {}
        Err(e) => {
            tracing::error!(id, error = %e, "cannot end what an interrupted run left running")
        }
    }
    ended
}

fn stream_of(message: &Message) -> Option<Stream> {
    stream(message, message.parsed_method().ok()?)
}

/// The stream of `message`, whose method is `method`: none when it is unordered.
fn stream(message: &Message, method: Method) -> Option<Stream> {
    message
        .is_ordered()
        .then(|| (message.from_node.clone().unwrap_or_default(), method))
}

/// The inbox loop: starts each queued message once its place in the lanes is free.
pub(crate) async fn run(inbox: Arc<Inbox>) {
    let shutdown = inbox.executor.shutdown.clone();
    loop {
        if !shutdown.is_cancelled() {
            for (item, message) in inbox.take_ready() {
                inbox.spawn(item, message, None);
            }
        }
        tokio::select! {
            _ = inbox.wake.notified() => {}
            _ = shutdown.cancelled() => {
                // Stop starting work; messages not started stay in the inbox and run
                // after the next start.
                break;
            }
        }
    }
}

/// A message's place in the lanes, given back once: for an unordered message as soon as
/// its handler has returned (its finish is then only a write, which must not keep
/// another message from running), for an ordered one when its run is over, finish
/// included, so that the next of its stream starts after it is recorded.
struct Slot(Option<(Arc<Inbox>, LaneItem<Stream>)>);

impl Slot {
    /// The handler has returned: an unordered message's place goes to the next one.
    fn ran(&mut self) {
        if self
            .0
            .as_ref()
            .is_some_and(|(_, item)| item.stream.is_none())
        {
            self.free();
        }
    }

    /// Give the place back (once).
    fn free(&mut self) {
        if let Some((inbox, item)) = self.0.take() {
            inbox.done(&item);
        }
    }
}

/// How long a run goes before its sender is told, by a `running` note, that it runs.
/// Shorter runs need no note: their result carries when they started.
const RUNNING_NOTE_AFTER: Duration = Duration::from_millis(200);

/// Tell `from`, the sender of message `id`, that it runs since `started_at` (best
/// effort, on a task of its own so that a slow publish never holds the run up).
async fn running_note(
    executor: Arc<Executor>,
    from: String,
    id: String,
    started_at: bosun_proto::Millis,
) {
    let note = StatusNote {
        v: WIRE_VERSION,
        id,
        state: State::Running,
        at: started_at,
    };
    let subject = wire::subject(&executor.config.subject_prefix, &from, STATUS_TOKEN);
    let _ = executor
        .transport
        .publish(subject, Bytes::from(wire::encode(&note)))
        .await;
}

/// Run one message whose place in the lanes `slot` holds; with `recorded_start`, its
/// start was made durable with its arrival, at that time.
async fn run_one(
    executor: &Arc<Executor>,
    message: Message,
    recorded_start: Option<bosun_proto::Millis>,
    slot: &mut Slot,
) {
    let id = message.id().to_string();
    let started_at = recorded_start.unwrap_or_else(now_millis);
    let parsed = message.parsed_method();
    // A method without side effects (a ping, a read-only list) runs before its start is
    // written: run again after a crash, it changes nothing. Its start is recorded with
    // its finish, one fsynced commit fewer.
    let mut unrecorded_start = match &parsed {
        Ok(m) if !m.has_side_effects() && recorded_start.is_none() => Some(started_at),
        _ => None,
    };
    // Cancelled by its sender while it waited here: not run, as below.
    if unrecorded_start.is_some()
        && let Ok(Some(record)) = executor.store.inbox(&id)
        && record.state.is_terminal()
    {
        tracing::info!(id, "cancelled by its sender before it started; not run");
        return;
    }
    // Any other start must be durable before the run. A failed write (a full disk) is
    // tried again until it succeeds or the node stops: the message never runs without
    // it, and the next message of its stream never runs before it.
    let mut wait = std::time::Duration::from_millis(100);
    while unrecorded_start.is_none() && recorded_start.is_none() {
        match executor.store.start(&id, started_at).await {
            Ok(true) => break,
            Ok(false) => {
                tracing::info!(id, "cancelled by its sender before it started; not run");
                return;
            }
            Err(e) => {
                if executor.shutdown.is_cancelled() {
                    tracing::warn!(id, error = %e, "cannot record the start; it runs after the next start-up");
                    return;
                }
                tracing::warn!(id, error = %e, "cannot record the start yet; trying again");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = executor.shutdown.cancelled() => {}
                }
                wait = (wait * 2).min(std::time::Duration::from_secs(5));
            }
        }
    }
    let method = match parsed {
        Ok(m) => m,
        Err(e) => {
            let outcome = crate::node::refused(executor.config.name.as_str(), &e.to_string());
            slot.ran();
            finish(executor, &message, outcome, None).await;
            return;
        }
    };
    crate::events::MessageState {
        id: &id,
        method: method.name(),
        state: "running",
    }
    .emit(&executor.metrics);
    let (chunks, forwarder) = if method.is_streaming() {
        let (tx, rx) = mpsc::channel(64);
        let forwarder =
            executor
                .tracker
                .spawn(forward_chunks(executor.clone(), message.clone(), rx));
        (bosun_methods::ChunkSink::new(tx), Some(forwarder))
    } else {
        (bosun_methods::ChunkSink::none(), None)
    };
    let (processes, recorder) = record_processes(executor, &id);
    // A run that ends quickly tells its start with its result (`startedAt`); one that
    // lasts tells the sender it runs, so that its record says so meanwhile.
    let handled = {
        let handler = async {
            match method.role() {
                bosun_proto::Role::Node => node_method(executor, method, &message).await.into(),
                bosun_proto::Role::Handler(_)
                | bosun_proto::Role::Absorbed
                | bosun_proto::Role::ReplySink
                | bosun_proto::Role::Unserved => {
                    bosun_methods::run(
                        method,
                        &message,
                        &executor.methods,
                        &chunks,
                        &processes,
                        &executor.follow_ups,
                    )
                    .await
                }
            }
        };
        tokio::pin!(handler);
        tokio::select! {
            handled = &mut handler => handled,
            _ = tokio::time::sleep(RUNNING_NOTE_AFTER) => {
                // A run without a recorded start that lasts gets it now, before its
                // sender hears that it runs: a crash from here on reports it
                // `interrupted` instead of running it again at every start-up, and a
                // cancel can no longer follow the note. Cancelled meanwhile: no note.
                let tell = match unrecorded_start {
                    None => true,
                    Some(_) => match executor.store.start(&id, started_at).await {
                        Ok(true) => {
                            unrecorded_start = None;
                            true
                        }
                        Ok(false) | Err(_) => false,
                    },
                };
                if tell && let Some(from) = message.from_node.clone() {
                    let note = running_note(executor.clone(), from, id.clone(), started_at);
                    executor.tracker.spawn(note);
                }
                handler.await
            }
        }
    };
    drop(chunks);
    drop(processes);
    // Every group the run reported is queued for the store before the finish below.
    let _ = recorder.await;
    let mut outcome = handled.outcome;
    if method == Method::NodeDrain && outcome.status == Status::Done {
        executor.hello_now.notify_one();
    }
    if let Some(forwarder) = forwarder {
        // Every chunk is queued before the final result, so the result names the count.
        outcome.chunks = Some(forwarder.await.unwrap_or(0));
    }
    if !handled.submit.is_empty()
        && let Err(e) = executor.submitter.submit(handled.submit).await
    {
        tracing::error!(id, error = %e, "cannot queue the messages a handler produced");
        outcome.status = Status::Failed;
        outcome.error = Some(format!(
            "the work was prepared but its messages could not be queued: {e}"
        ));
    }
    if outcome.status == Status::Interrupted
        && executor.shutdown.is_cancelled()
        && (message.rerun_on_restart || unrecorded_start.is_some())
    {
        // Left in the inbox: the next start-up runs it again, as asked, or because its
        // start was never recorded (it has no side effects), as after a crash.
        tracing::info!(id, "interrupted by shutdown; will run again after restart");
        return;
    }
    slot.ran();
    finish(executor, &message, outcome, unrecorded_start).await;
}

/// The sink through which handlers hand over messages while they run, and the task
/// that queues each batch through `submitter` (durably, as the node's own messages) and
/// answers the handler when it is queued. Batches of different runs are queued side by
/// side; the task ends with the node.
pub(crate) fn follow_ups(
    submitter: Submitter,
    tracker: &TaskTracker,
    shutdown: CancellationToken,
) -> bosun_methods::SubmitSink {
    let (tx, mut rx) = mpsc::channel::<bosun_methods::FollowUps>(16);
    let batches = tracker.clone();
    tracker.spawn(async move {
        loop {
            let batch = tokio::select! {
                batch = rx.recv() => match batch {
                    Some(batch) => batch,
                    None => return,
                },
                _ = shutdown.cancelled() => return,
            };
            let submitter = submitter.clone();
            batches.spawn(async move {
                let queued = submitter
                    .submit(batch.messages)
                    .await
                    .map(|_| ())
                    .map_err(|e| bosun_methods::NotQueued {
                        reason: e.to_string(),
                    });
                let _ = batch.queued.send(queued);
            });
        }
    });
    bosun_methods::SubmitSink::new(tx)
}

/// A sink for the process groups a run starts, and the task that queues each one for
/// the store, to be recorded with the run. The task ends when the sink is dropped, having
/// queued everything reported, so the run's finish (queued after it) never overtakes a
/// group. A failed write is logged: the parent-death signal still ends the command with
/// the node, only what it forked could then outlive a crash.
fn record_processes(
    executor: &Arc<Executor>,
    id: &str,
) -> (bosun_methods::ProcessSink, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::unbounded_channel::<Group>();
    let store = executor.store.clone();
    let tracker = executor.tracker.clone();
    let id = id.to_string();
    let task = executor.tracker.spawn(async move {
        while let Some(group) = rx.recv().await {
            let record = ProcessRecord {
                pgid: group.pgid,
                start_time: group.start_time,
                boot_id: group.boot_id,
            };
            // Queued now; the run's finish, queued later, commits with it or after it.
            let written = store.spawned(&id, record);
            let id = id.clone();
            tracker.spawn(async move {
                if let Err(e) = written.await {
                    tracing::error!(id, error = %e, "cannot record the process group of a run");
                }
            });
        }
    });
    (bosun_methods::ProcessSink::new(tx), task)
}

/// Record the outcome and queue the reply in one durable commit; with
/// `unrecorded_start`, the start of a run whose start was not written before it, too.
async fn finish(
    executor: &Arc<Executor>,
    message: &Message,
    outcome: Outcome,
    unrecorded_start: Option<bosun_proto::Millis>,
) {
    let id = message.id();
    let reply = reply_for(executor, message, &outcome);
    let now = now_millis();
    let written = crate::disk::until_written(&executor.store, &executor.shutdown, || {
        let (store, outcome, reply) = (&executor.store, outcome.clone(), reply.clone());
        async move {
            match unrecorded_start {
                None => store.finish(id, outcome, reply, now).await.map(|_| true),
                Some(started) => {
                    store
                        .finish_unstarted(id, started, outcome, reply, now)
                        .await
                }
            }
        }
    })
    .await;
    // The reply, queued in the same commit, reaches the outbox loop from the store.
    match written {
        Ok(true) => report_failure(executor, message, &outcome),
        Ok(false) => {
            tracing::info!(
                id,
                "cancelled by its sender before its result was recorded; it has no side effects, so the cancel stands"
            )
        }
        Err(e) => {
            report_failure(executor, message, &outcome);
            tracing::error!(id, error = %e, "cannot record the outcome");
        }
    }
}

/// Turn a handler's output chunks into numbered replies, each durable in the outbox
/// before the next is taken. Returns how many were queued.
async fn forward_chunks(
    executor: Arc<Executor>,
    message: Message,
    mut rx: mpsc::Receiver<String>,
) -> u64 {
    let Some(to) = message.from_node.clone() else {
        while rx.recv().await.is_some() {}
        return 0;
    };
    let method = message.parsed_reply_method().unwrap_or(Method::Result);
    let mut n = 0;
    while let Some(text) = rx.recv().await {
        n += 1;
        let chunk = Message {
            id: Some(bosun_proto::new_id()),
            to_node: Some(to.clone()),
            from_node: Some(executor.config.name.as_str().to_string()),
            method: method.name().to_string(),
            data: vec![text],
            previous_message: Some(message.id().to_string()),
            chunk: Some(n),
            directory: message.directory.clone(),
            file_name: message.file_name.clone(),
            ack_timeout: message.reply_ack_timeout,
            retries: message.reply_retries,
            // Chunks and the final result of a stream go in order, so the sender never
            // sees the result before the output.
            ordered: Some(true),
            created_at: Some(now_millis()),
            ..Default::default()
        };
        // Durable before the next is taken; the store hands it to the outbox loop.
        if let Err(e) = executor.store.submit(vec![chunk], now_millis()).await {
            tracing::error!(id = message.id(), error = %e, "cannot queue an output chunk")
        }
    }
    n
}

/// A run that did not succeed (failed, timed out, interrupted, refused here) goes to
/// this node's error log and to central's, as steward reported a method's failure: with
/// the node, the message id, the method, the sender and the reason. Messages the node
/// takes in for itself (error reports, hellos, replies) are left out, so a report can
/// never cause another.
pub(crate) fn report_failure(executor: &Executor, message: &Message, outcome: &Outcome) {
    let Some(kind) = failure_kind(outcome.status) else {
        return;
    };
    if message.parsed_method().is_ok_and(|m| {
        !matches!(
            m.role(),
            bosun_proto::Role::Handler(_) | bosun_proto::Role::Node
        )
    }) {
        return;
    }
    let reason = failure_reason(outcome);
    executor.reporter.report(&ErrorEntry {
        at: outcome.finished_at,
        node: executor.config.name.as_str(),
        kind,
        message_id: Some(message.id()),
        to_node: message.from_node.as_deref(),
        method: Some(message.method.as_str()),
        reason: &reason,
    });
}

/// The error-log kind of a status that is not a success.
fn failure_kind(status: Status) -> Option<&'static str> {
    match status {
        Status::Done | Status::Cancelled => None,
        Status::Failed => Some("failed"),
        Status::Timeout => Some("timeout"),
        Status::Interrupted => Some("interrupted"),
        Status::Rejected => Some("rejected"),
    }
}

/// Longest stretch of a failed command's stderr quoted in its error-log reason.
const REASON_STDERR_BYTES: usize = 512;

/// Why a run did not succeed, in one line: the outcome's reason, or its exit code, with
/// the end of its stderr.
fn failure_reason(outcome: &Outcome) -> String {
    let mut reason = match (&outcome.error, outcome.exit_code) {
        (Some(error), _) => error.clone(),
        (None, Some(code)) => format!("exit code {code}"),
        (None, None) => format!("{:?}", outcome.status).to_lowercase(),
    };
    let stderr = outcome.stderr.trim();
    if !stderr.is_empty() && !reason.contains(stderr) {
        let mut start = stderr.len().saturating_sub(REASON_STDERR_BYTES);
        while !stderr.is_char_boundary(start) {
            start += 1;
        }
        let tail = stderr[start..].replace('\n', " | ");
        let cut = if start > 0 { "…" } else { "" };
        reason.push_str(&format!("; stderr: {cut}{tail}"));
    }
    reason
}

/// The reply that carries `outcome` back to the sender of `message`.
pub(crate) fn reply_for(
    executor: &Executor,
    message: &Message,
    outcome: &Outcome,
) -> Option<Message> {
    let to = message.from_node.clone()?;
    let method = message.parsed_reply_method().unwrap_or(Method::Result);
    let mut reply = Message {
        id: Some(bosun_proto::new_id()),
        to_node: Some(to),
        from_node: Some(executor.config.name.as_str().to_string()),
        method: method.name().to_string(),
        data: Vec::new(),
        previous_message: Some(message.id().to_string()),
        result: Some(outcome.clone()),
        directory: message.directory.clone(),
        file_name: message.file_name.clone(),
        ack_timeout: message.reply_ack_timeout,
        retries: message.reply_retries,
        ordered: Some(message.parsed_method().is_ok_and(|m| m.is_streaming())),
        created_at: Some(now_millis()),
        ..Default::default()
    };
    fit_reply(&mut reply, executor.config.max_message_bytes);
    Some(reply)
}

/// Shrink the captured output until the reply fits the wire limit, so that a chatty
/// command never produces a result its sender must refuse.
fn fit_reply(reply: &mut Message, max: usize) {
    let budget = max.saturating_sub(1024);
    loop {
        let size = wire::request_size(reply);
        let Some(result) = reply.result.as_mut() else {
            return;
        };
        if size <= budget || (result.stdout.is_empty() && result.stderr.is_empty()) {
            return;
        }
        result.truncated = true;
        let longer = if result.stdout.len() >= result.stderr.len() {
            &mut result.stdout
        } else {
            &mut result.stderr
        };
        let mut cut = longer.len() / 2;
        while !longer.is_char_boundary(cut) {
            cut -= 1;
        }
        longer.truncate(cut);
        reply.data.clear();
    }
}

/// The outcome of a method the node runs itself (no process: no exit code, no stderr).
pub(crate) fn node_outcome(
    node: &str,
    started: bosun_proto::Millis,
    status: Status,
    stdout: String,
    error: Option<String>,
) -> Outcome {
    Outcome {
        status,
        node: node.to_string(),
        exit_code: None,
        stdout,
        stderr: String::new(),
        error,
        truncated: false,
        started_at: Some(started),
        finished_at: now_millis(),
        chunks: None,
    }
}

/// The methods the node runs itself: they act on its event stream, its fault
/// experiments and its workloads.
async fn node_method(executor: &Executor, method: Method, message: &Message) -> Outcome {
    let started = now_millis();
    let ended = |status: Status, stdout: String, error: Option<String>| {
        crate::executor::node_outcome(
            executor.config.name.as_str(),
            started,
            status,
            stdout,
            error,
        )
    };
    if matches!(
        method,
        Method::ChaosSchedule | Method::ChaosAbort | Method::ChaosList
    ) {
        return crate::chaos::run(
            &executor.chaos,
            executor.config.name.as_str(),
            method,
            message,
        )
        .await;
    }
    if matches!(
        method,
        Method::WorkloadAdd
            | Method::WorkloadRemove
            | Method::WorkloadRestart
            | Method::WorkloadList
    ) {
        return crate::workloads::run(
            &executor.workloads,
            executor.config.name.as_str(),
            method,
            message,
        )
        .await;
    }
    let Some(capture) = &executor.capture else {
        return ended(
            Status::Failed,
            String::new(),
            Some("the event stream is off on this node (capture = false)".into()),
        );
    };
    let text = message.data.join(" ");
    match method {
        Method::Mark => {
            capture.mark(&text);
            ended(
                Status::Done,
                format!("marked in {}\n", capture.current_file().display()),
                None,
            )
        }
        _ => match capture.switch_file(&text) {
            Ok(path) => ended(
                Status::Done,
                format!("event stream now in {}\n", path.display()),
                None,
            ),
            Err(e) => ended(Status::Failed, String::new(), Some(e.to_string())),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(status: Status, exit: Option<i32>, error: Option<&str>, stderr: &str) -> Outcome {
        Outcome {
            exit_code: exit,
            stderr: stderr.to_string(),
            error: error.map(str::to_string),
            ..Outcome::bare(status, "n1", "", 1)
        }
    }

    #[test]
    fn only_runs_that_did_not_succeed_are_errors() {
        assert_eq!(failure_kind(Status::Done), None);
        assert_eq!(failure_kind(Status::Cancelled), None);
        assert_eq!(failure_kind(Status::Failed), Some("failed"));
        assert_eq!(failure_kind(Status::Timeout), Some("timeout"));
        assert_eq!(failure_kind(Status::Interrupted), Some("interrupted"));
    }

    #[test]
    fn a_reason_names_the_exit_code_and_the_end_of_stderr_on_one_line() {
        let o = outcome(Status::Failed, Some(3), None, "first\nsecond\n");
        assert_eq!(failure_reason(&o), "exit code 3; stderr: first | second");
        let o = outcome(Status::Failed, Some(3), Some("exited with code 3"), "");
        assert_eq!(failure_reason(&o), "exited with code 3");
        // A reason that already quotes stderr does not repeat it.
        let o = outcome(Status::Failed, None, Some("denied: nope"), "nope");
        assert_eq!(failure_reason(&o), "denied: nope");
        // A long stderr is cut at its start, on a character boundary.
        let long = format!("{}{}", "é".repeat(400), "the end");
        let reason = failure_reason(&outcome(Status::Failed, Some(1), None, &long));
        assert!(reason.starts_with("exit code 1; stderr: …"), "{reason}");
        assert!(reason.ends_with("the end"), "{reason}");
        assert!(reason.len() < REASON_STDERR_BYTES + 64, "{}", reason.len());
    }
}
