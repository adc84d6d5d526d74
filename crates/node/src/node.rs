//! [`Node`]: start-up with recovery, submit, status, wait and shutdown.

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use bosun_bus::Transport;
use bosun_proto::wire::{self, Request, WIRE_VERSION};
use bosun_proto::{Message, Method, Outcome, State, Status};
use bosun_store::{InboxRecord, SentRecord, Store, StoreError};
use serde::Serialize;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::executor::{self, InboxCmd};
use crate::outbox::{self, OutboxCmd};
use crate::receiver;

pub use bosun_methods::now_millis;

/// Shared by the node's tasks.
pub(crate) struct Inner {
    pub config: Config,
    pub store: Store,
    pub transport: Arc<dyn Transport>,
    pub standalone: bool,
    pub outbox: mpsc::UnboundedSender<OutboxCmd>,
    pub inbox: mpsc::UnboundedSender<InboxCmd>,
    /// The id of every sent message that reaches a final state.
    pub finished: broadcast::Sender<String>,
    /// Cancelled when the node begins to shut down.
    pub shutdown: CancellationToken,
    /// Every task of the node (loops, handlers, capture, listeners) runs on it.
    pub tracker: TaskTracker,
    pub methods: bosun_methods::Context,
    /// Handlers running now.
    pub running: AtomicUsize,
    /// Prometheus metrics; moved by `crate::events`.
    pub metrics: crate::metrics::Metrics,
    /// Every message submitted or received, as JSON lines (off when `audit_max_bytes` is 0).
    pub audit: Option<crate::audit::AuditLog>,
    /// The event stream (LSDSuite capture), when on.
    pub capture: Option<bosun_capture::Capture>,
    /// Messages with a `schedule`, for the scheduler task to repeat.
    pub schedules: mpsc::UnboundedSender<Message>,
    /// Per replied-to message: the next chunk number its sink will write.
    pub sink_progress: tokio::sync::Mutex<std::collections::HashMap<String, u64>>,
}

impl Inner {
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// Log an error locally and, unless this node is central, send it to central's
    /// error log too (as an `errorLog` message, durable like any other).
    pub fn report_error(self: &Arc<Self>, entry: &crate::errorlog::ErrorEntry<'_>) {
        crate::errorlog::append(&self.config.error_log_path(), entry);
        let Some(central) = self.config.central_name() else {
            return;
        };
        if central == self.name() || entry.method == Some("errorLog") {
            return;
        }
        let line = serde_json::to_string(entry).unwrap_or_default();
        let report = Message {
            to_node: Some(central.to_string()),
            method: "errorLog".into(),
            data: vec![line],
            ordered: Some(false),
            ttl: Some(24 * 3600),
            ..Default::default()
        };
        let inner = self.clone();
        self.tracker.spawn(async move {
            if let Err(e) = inner.submit(vec![report]).await {
                tracing::warn!(error = %e, "cannot forward an error to central");
            }
        });
    }

    /// Tell waiters that a sent message reached a final state.
    pub fn finished(&self, id: &str) {
        let _ = self.finished.send(id.to_string());
    }

    /// See [`Node::submit`].
    pub async fn submit(
        self: &Arc<Self>,
        messages: Vec<Message>,
    ) -> Result<Vec<Submitted>, SubmitError> {
        if messages.is_empty() {
            return Err(SubmitError::Empty);
        }
        let now = now_millis();
        let mut receipts = Vec::new();
        let mut queued = Vec::new();
        let mut ids_in_batch = std::collections::HashSet::new();
        for (index, message) in messages.into_iter().enumerate() {
            let invalid = |reason: String| SubmitError::Invalid { index, reason };
            message.validate().map_err(|e| invalid(e.to_string()))?;
            if let Some(id) = &message.id
                && !ids_in_batch.insert(id.clone())
            {
                return Err(invalid(format!(
                    "field `id`: {id} appears twice in this batch"
                )));
            }
            let method = message
                .parsed_method()
                .map_err(|e| invalid(e.to_string()))?;
            if method == Method::Result {
                return Err(invalid(
                    "`result` messages are replies made by nodes; they cannot be submitted".into(),
                ));
            }
            if let Some(id) = &message.id
                && let Some(existing) = self.store.sent(id)?
            {
                receipts.push(Submitted {
                    id: id.clone(),
                    to_node: existing.message.destination().to_string(),
                    method: existing.message.method.clone(),
                });
                continue;
            }
            let mut destinations = message.destinations();
            if let Some(instances) = message.instances {
                let memory_mb = message
                    .data
                    .first()
                    .and_then(|d| {
                        serde_json::from_str::<bosun_proto::container::ContainerSpec>(d).ok()
                    })
                    .and_then(|s| s.memory_mb)
                    .unwrap_or(0);
                let fleet: Vec<bosun_core::Candidate> = crate::fleet::view(self, now)?
                    .iter()
                    .map(crate::FleetNode::candidate)
                    .collect();
                destinations = bosun_core::placement::place(
                    &fleet,
                    &destinations,
                    instances,
                    &message.constraints,
                    memory_mb,
                )
                .map_err(invalid)?;
            } else if destinations.iter().any(|d| d == "*") {
                let fleet = self.store.fleet()?;
                if fleet.is_empty() {
                    return Err(invalid(format!(
                        "toNodes [\"*\"] means every node in the fleet registry, and {} has heard no hellos; send it to the central node, or list the nodes by name",
                        self.name()
                    )));
                }
                destinations.retain(|d| d != "*");
                for record in fleet {
                    if !destinations.contains(&record.name) {
                        destinations.push(record.name);
                    }
                }
            }
            let fan_out = destinations.len() > 1 || message.instances.is_some();
            for to in destinations {
                if self.standalone && to != self.name() {
                    return Err(invalid(format!(
                        "node {to:?} is not reachable: this node ({}) runs standalone on the in-process transport; start every node with --broker nats://HOST:PORT to reach other nodes",
                        self.name()
                    )));
                }
                let mut m = message.for_destination(&to, fan_out);
                m.from_node = Some(self.name().to_string());
                m.created_at = Some(now);
                let size = wire::encode(&Request {
                    v: WIRE_VERSION,
                    msg: m.clone(),
                })
                .len();
                if size > self.config.max_message_bytes {
                    return Err(invalid(format!(
                        "message is {size} bytes; the limit is {} (max_message_bytes)",
                        self.config.max_message_bytes
                    )));
                }
                receipts.push(Submitted {
                    id: m.id().to_string(),
                    to_node: to.clone(),
                    method: m.method.clone(),
                });
                queued.push(m);
            }
        }
        if queued.is_empty() {
            return Ok(receipts);
        }
        let scheduled: Vec<Message> = queued
            .iter()
            .filter(|m| m.schedule.is_some())
            .cloned()
            .collect();
        for m in &queued {
            if let Some(audit) = &self.audit {
                audit.record("submitted", m);
            }
            let state = crate::events::MessageState {
                id: m.id(),
                method: &m.method,
                state: "queued",
            };
            state.emit(&self.metrics);
        }
        let seqs = self.store.submit(queued.clone(), now).await?;
        for template in scheduled {
            let _ = self.schedules.send(template);
        }
        let _ = self
            .outbox
            .send(OutboxCmd::Deliver(seqs.into_iter().zip(queued).collect()));
        Ok(receipts)
    }

    pub fn subject(&self, node: &str, method: &str) -> String {
        wire::subject(&self.config.subject_prefix, node, method)
    }
}

/// A running node. Dropping it does not stop it: call [`Node::shutdown`].
#[derive(Clone)]
pub struct Node {
    pub(crate) inner: Arc<Inner>,
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] crate::ConfigError),
    /// The database could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The data dir could not be created.
    #[error("cannot create data dir {path}: {source}")]
    DataDir {
        /// The folder.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The transport refused to subscribe.
    #[error("cannot listen on the transport: {0}")]
    Bus(#[from] bosun_bus::BusError),
}

/// Why a submit was refused. Nothing of the batch was queued.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// One message of the batch is invalid.
    #[error("message {index}: {reason}")]
    Invalid {
        /// Its position in the batch, from 0.
        index: usize,
        /// What is wrong.
        reason: String,
    },
    /// The batch was empty.
    #[error("no messages given")]
    Empty,
    /// The store failed; nothing was queued.
    #[error("cannot queue the messages: {0}")]
    Store(#[from] StoreError),
}

/// One queued delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Submitted {
    /// The message id (one per destination).
    pub id: String,
    /// The destination.
    pub to_node: String,
    /// The method, canonical name.
    pub method: String,
}

/// What this node knows about one message id.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusReport {
    /// The id asked about.
    pub id: String,
    /// The record, when this node sent the message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent: Option<SentRecord>,
    /// The record, when this node received the message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received: Option<InboxRecord>,
    /// Streamed output that came back in chunks, in order.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub output: String,
}

impl StatusReport {
    /// A report with nothing in it.
    pub fn empty() -> StatusReport {
        StatusReport {
            id: String::new(),
            sent: None,
            received: None,
            output: String::new(),
        }
    }

    /// The sender's view of the state, else the receiver's.
    pub fn state(&self) -> Option<State> {
        self.sent
            .as_ref()
            .map(|s| s.state)
            .or(self.received.as_ref().map(|r| r.state))
    }

    /// The outcome known here.
    pub fn outcome(&self) -> Option<&Outcome> {
        self.sent
            .as_ref()
            .and_then(|s| s.outcome.as_ref())
            .or(self.received.as_ref().and_then(|r| r.outcome.as_ref()))
    }
}

impl Node {
    /// Open the store, recover from the last run, and start the delivery loops.
    ///
    /// `standalone` nodes refuse destinations other than themselves.
    pub async fn start(
        config: Config,
        transport: Arc<dyn Transport>,
        standalone: bool,
    ) -> Result<Node, NodeError> {
        config.validate()?;
        std::fs::create_dir_all(&config.data_dir).map_err(|source| NodeError::DataDir {
            path: config.data_dir.display().to_string(),
            source,
        })?;
        let store = Store::open(&config.db_path())?;
        let audit = if config.audit_max_bytes > 0 {
            let path = config.audit_log_path();
            match crate::audit::AuditLog::open(path, config.audit_max_bytes, config.audit_keep) {
                Ok(a) => Some(a),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot open the audit log; running without it");
                    None
                }
            }
        } else {
            None
        };
        let (outbox_tx, outbox_rx) = mpsc::unbounded_channel();
        let (inbox_tx, inbox_rx) = mpsc::unbounded_channel();
        let (schedules_tx, schedules_rx) = mpsc::unbounded_channel();
        let (finished, _) = broadcast::channel(16 * 1024);
        let shutdown = CancellationToken::new();
        let tracker = TaskTracker::new();
        let capture = if config.capture {
            let capture_config = bosun_capture::CaptureConfig {
                node: config.name.clone(),
                dir: config
                    .capture_dir
                    .clone()
                    .unwrap_or_else(|| config.data_dir.join("capture")),
                file: bosun_capture::DEFAULT_FILE.into(),
                syslog_socket: Some(
                    config
                        .syslog_socket
                        .clone()
                        .unwrap_or_else(|| config.data_dir.join("sock/logs.sock")),
                ),
                docker_socket: config.docker_socket.clone(),
                stats_interval: Duration::from_secs(config.stats_interval_secs.max(1)),
            };
            match bosun_capture::Capture::start(capture_config, shutdown.clone(), &tracker).await {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot start the event stream capture; running without it");
                    None
                }
            }
        } else {
            None
        };
        let methods = bosun_methods::Context {
            node: config.name.clone(),
            output_limit: config.output_limit_bytes,
            default_method_timeout: Duration::from_secs(config.method_timeout_secs),
            kill_grace: Duration::from_secs(config.kill_grace_secs.max(1)),
            shutdown: methods_shutdown(&shutdown, &tracker),
            data_dir: config.data_dir.clone(),
            labels: config.labels.clone(),
            served: Default::default(),
            docker_socket: config.docker_socket.clone(),
            templates_dir: config.templates_path(),
        };
        let inner = Arc::new(Inner {
            config,
            store,
            transport,
            standalone,
            outbox: outbox_tx,
            inbox: inbox_tx,
            finished,
            shutdown,
            tracker,
            methods,
            running: AtomicUsize::new(0),
            sink_progress: Default::default(),
            schedules: schedules_tx,
            metrics: crate::metrics::Metrics::new(),
            audit,
            capture,
        });

        let to_run = executor::recover(&inner).await?;
        let outbox_entries = inner.store.outbox()?;
        let subscription = inner
            .transport
            .subscribe(wire::inbox_pattern(
                &inner.config.subject_prefix,
                inner.name(),
            ))
            .await?;

        let tracker = &inner.tracker;
        tracker.spawn(outbox::run(inner.clone(), outbox_rx, outbox_entries));
        tracker.spawn(executor::run(inner.clone(), inbox_rx, to_run));
        tracker.spawn(receiver::run(inner.clone(), subscription));
        tracker.spawn(crate::fleet::hello_loop(inner.clone()));
        tracker.spawn(crate::fleet::prune_loop(inner.clone()));
        tracker.spawn(scheduler(inner.clone(), schedules_rx));
        tracker.spawn(gauges(inner.clone()));
        tracker.spawn(crate::fleet::ship_capture(inner.clone()));
        tracing::info!(
            node = inner.name(),
            transport = inner.transport.describe(),
            data_dir = %inner.config.data_dir.display(),
            "node started"
        );
        Ok(Node { inner })
    }

    /// This node's name.
    pub fn name(&self) -> &str {
        self.inner.name()
    }

    /// The configuration in effect.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The transport, described.
    pub fn transport_description(&self) -> String {
        self.inner.transport.describe()
    }

    /// True when the transport is connected.
    pub fn is_connected(&self) -> bool {
        self.inner.transport.is_connected()
    }

    /// Validate and queue messages. Returns once every delivery is durable in the outbox.
    /// A message with several destinations becomes one delivery per destination, each
    /// with its own id. Re-submitting an id this node already has returns the existing
    /// delivery instead of queueing it twice.
    pub async fn submit(&self, messages: Vec<Message>) -> Result<Vec<Submitted>, SubmitError> {
        self.inner.submit(messages).await
    }

    /// Everything this node knows about a message id.
    pub fn status(&self, id: &str) -> Result<StatusReport, StoreError> {
        let sent = self.inner.store.sent(id)?;
        let output = match &sent {
            Some(_) => self
                .inner
                .store
                .chunks(id)?
                .into_iter()
                .map(|(_, text)| text)
                .collect(),
            None => String::new(),
        };
        Ok(StatusReport {
            id: id.to_string(),
            sent,
            received: self.inner.store.inbox(id)?,
            output,
        })
    }

    /// The most recent messages this node sent, newest first.
    pub fn recent(&self, limit: usize) -> Result<Vec<SentRecord>, StoreError> {
        self.inner.store.recent_sent(limit)
    }

    /// Wait until every id is in a final state at this node, or `timeout` passes.
    /// Returns whether all finished, and the reports.
    pub async fn wait(
        &self,
        ids: &[String],
        timeout: Duration,
    ) -> Result<(bool, Vec<StatusReport>), StoreError> {
        let mut finished = self.inner.finished.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        let is_final = |r: &StatusReport| r.sent.as_ref().is_some_and(|s| s.state.is_terminal());
        let read_all = || -> Result<Vec<StatusReport>, StoreError> {
            ids.iter().map(|id| self.status(id)).collect()
        };
        let reports = read_all()?;
        let mut pending: std::collections::HashSet<&str> = reports
            .iter()
            .filter(|r| !is_final(r))
            .map(|r| r.id.as_str())
            .collect();
        let _ = &reports;
        loop {
            if pending.is_empty() {
                return Ok((true, read_all()?));
            }
            tokio::select! {
                event = finished.recv() => match event {
                    Ok(id) => { pending.remove(id.as_str()); }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        // Missed some: read the unfinished ones again.
                        let mut still = std::collections::HashSet::new();
                        for id in pending {
                            if !is_final(&self.status(id)?) {
                                still.insert(id);
                            }
                        }
                        pending = still;
                    }
                    Err(broadcast::error::RecvError::Closed) => return Ok((false, read_all()?)),
                },
                _ = tokio::time::sleep_until(deadline) => {
                    let reports = read_all()?;
                    let all = reports.iter().all(is_final);
                    return Ok((all, reports));
                }
            }
        }
    }

    /// The fleet registry as this node sees it now.
    pub fn fleet(&self) -> Result<Vec<crate::FleetNode>, StoreError> {
        crate::fleet::view(&self.inner, now_millis())
    }

    /// The node's metrics (for the `/metrics` endpoint).
    pub fn metrics(&self) -> crate::metrics::Metrics {
        self.inner.metrics.clone()
    }

    /// Outbox and inbox depths.
    pub fn depths(&self) -> Result<bosun_store::Depths, StoreError> {
        self.inner.store.depths()
    }

    /// The token cancelled when the node begins to shut down. Whatever serves the node
    /// (listeners, folders) stops on it.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.inner.shutdown.clone()
    }

    /// The tracker every task of the node runs on. Spawn the node's listeners on it, so
    /// that [`Node::shutdown`] waits for them before it closes the store.
    pub fn tracker(&self) -> TaskTracker {
        self.inner.tracker.clone()
    }

    /// Stop gracefully: cancel the shutdown token (listeners stop, the executor takes no
    /// new work, running handlers are interrupted and their outcome recorded and reply
    /// queued, the outbox drains briefly), wait for every task on the tracker within a
    /// bounded grace, then make everything durable and close the store. Calling it again
    /// does nothing more.
    pub async fn shutdown(&self) {
        if self.inner.shutdown.is_cancelled() && self.inner.tracker.is_closed() {
            return;
        }
        tracing::info!(node = self.name(), "shutting down");
        self.inner.shutdown.cancel();
        self.inner.tracker.close();
        // Handlers get twice the kill grace to end their processes; the loops and
        // listeners end on the token at once, the outbox after its short drain.
        let grace = Duration::from_secs(self.inner.config.kill_grace_secs.max(1) * 2 + 4);
        if tokio::time::timeout(grace, self.inner.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                tasks = self.inner.tracker.len(),
                "tasks still running after the shutdown grace; closing anyway"
            );
        }
        if let Err(e) = self.inner.store.close().await {
            tracing::error!(error = %e, "closing the store");
        }
        tracing::info!(node = self.name(), "stopped");
    }
}

/// Keep the queue-depth and fleet gauges current.
async fn gauges(inner: Arc<Inner>) {
    let shutdown = inner.shutdown.clone();
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        if let Ok(d) = inner.store.depths() {
            inner.metrics.set_depths(d.outbox, d.inbox_pending);
        }
        if let Ok(fleet) = crate::fleet::view(&inner, now_millis())
            && !fleet.is_empty()
        {
            let count = |l: crate::Liveness| fleet.iter().filter(|n| n.status == l).count() as u64;
            inner.metrics.set_fleet(
                count(crate::Liveness::Alive),
                count(crate::Liveness::Suspect),
                count(crate::Liveness::Down),
            );
            for n in &fleet {
                inner.metrics.set_last_seen(&n.name, n.seconds_ago);
            }
        }
    }
}

/// Start a repeat task for every scheduled message submitted.
async fn scheduler(inner: Arc<Inner>, mut templates: mpsc::UnboundedReceiver<Message>) {
    let shutdown = inner.shutdown.clone();
    loop {
        tokio::select! {
            template = templates.recv() => match template {
                Some(t) => { inner.tracker.spawn(repeat(inner.clone(), t)); }
                None => return,
            },
            _ = shutdown.cancelled() => return,
        }
    }
}

/// Steward's `schedule: [intervalSeconds, totalSeconds]`: submit a fresh copy of the
/// message every interval until the total has passed. Schedules live in memory: a
/// restart ends them (the copies already queued are durable as usual).
async fn repeat(inner: Arc<Inner>, template: Message) {
    let Some([interval, total]) = template
        .schedule
        .as_deref()
        .and_then(|s| <[u64; 2]>::try_from(s).ok())
    else {
        return;
    };
    let started = tokio::time::Instant::now();
    let end = started + Duration::from_secs(total);
    let shutdown = inner.shutdown.clone();
    let mut next = started + Duration::from_secs(interval.max(1));
    while next <= end {
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = shutdown.cancelled() => return,
        }
        let mut copy = template.clone();
        copy.id = None;
        copy.schedule = None;
        copy.created_at = None;
        if let Err(e) = inner.submit(vec![copy]).await {
            tracing::warn!(error = %e, "cannot queue a scheduled repeat");
            return;
        }
        next += Duration::from_secs(interval.max(1));
    }
}

/// An outcome for a message refused at this node.
pub(crate) fn refused(node: &str, reason: &str) -> Outcome {
    Outcome::bare(Status::Rejected, node, reason, now_millis())
}

/// The shutdown signal in the form the method handlers' `Context` takes: a watch flag
/// that becomes true when `shutdown` is cancelled. The one place that adapts the token
/// for the handlers.
fn methods_shutdown(
    shutdown: &CancellationToken,
    tracker: &TaskTracker,
) -> tokio::sync::watch::Receiver<bool> {
    let (sender, receiver) = tokio::sync::watch::channel(false);
    let shutdown = shutdown.clone();
    tracker.spawn(async move {
        shutdown.cancelled().await;
        let _ = sender.send(true);
    });
    receiver
}
