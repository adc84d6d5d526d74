//! [`Node`]: start-up with recovery, submit, status, wait and shutdown.

use std::sync::Arc;
use std::time::Duration;

use bosun_bus::Transport;
use bosun_proto::wire;
use bosun_proto::{Message, Outcome, State, Status};
use bosun_store::{InboxRecord, SentRecord, Store, StoreError};
use serde::Serialize;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use bosun_capture::Capture;

use crate::config::Config;
use crate::executor;
use crate::handles::{ErrorReporter, FinishedIds, FleetView, OutboxHandle, RunningCount};
use crate::metrics::Metrics;
use crate::outbox;
use crate::receiver;
use crate::submit::{Submitter, SubmitterParts};

pub use bosun_methods::now_millis;

/// A running node. Dropping it does not stop it: call [`Node::shutdown`].
#[derive(Clone)]
pub struct Node {
    parts: Arc<NodeParts>,
}

/// What the facade itself uses; the tasks were given their own handles at start-up.
struct NodeParts {
    config: Arc<Config>,
    store: Store,
    outbox: OutboxHandle,
    transport: Arc<dyn Transport>,
    submitter: Submitter,
    finished: FinishedIds,
    fleet: FleetView,
    metrics: Metrics,
    reporter: ErrorReporter,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    /// Cancelled when the store cannot be reopened after an I/O error.
    store_failed: CancellationToken,
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
    /// A default file root could not be made.
    #[error("cannot create the file root {path}: {source}; make it by hand or set file_roots")]
    FileRoot {
        /// The folder.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The transport refused to subscribe.
    #[error("cannot listen on the transport: {0}")]
    Bus(#[from] bosun_bus::BusError),
    /// The trust settings (key, identity, issuers, policy) cannot be used.
    #[error(transparent)]
    Trust(#[from] crate::trust::TrustLoadError),
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
    /// The free space is below the reserve kept for work already accepted.
    #[error(
        "disk nearly full at {path}: {free_bytes} bytes free, below the reserve of {reserve_bytes} bytes (disk_reserve_mb)"
    )]
    DiskReserve {
        /// The database file.
        path: String,
        /// Bytes free.
        free_bytes: u64,
        /// The reserve.
        reserve_bytes: u64,
    },
}

/// One queued delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
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
#[derive(Debug, Clone, Serialize, serde::Deserialize, utoipa::ToSchema)]
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
    /// The message's schedule while it still has runs to make.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<bosun_core::Schedule>,
}

impl StatusReport {
    /// A report with nothing in it.
    pub fn empty() -> StatusReport {
        StatusReport {
            id: String::new(),
            sent: None,
            received: None,
            output: String::new(),
            schedule: None,
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
        crate::files::private_dir(&config.data_dir).map_err(|source| NodeError::DataDir {
            path: config.data_dir.display().to_string(),
            source,
        })?;
        make_file_roots(&config)?;
        let policy = crate::trust::policy(&config)?;
        let store = Store::open_with(&config.db_path(), config.store_options())?;
        // redb creates the file with the process's umask; inside the 0700 data dir that
        // is never readable by others, and it is made 0600 at once.
        for path in [config.db_path(), config.error_log_path()] {
            if let Err(e) = crate::files::tighten(&path, crate::files::FILE_MODE) {
                tracing::warn!(path = %path.display(), error = %e, "cannot make this file readable by this node's user only");
            }
        }
        let audit = if config.audit_max_bytes > 0 {
            let path = config.audit_log_path();
            match crate::audit::AuditLog::open(path, config.audit_max_bytes, config.audit_keep) {
                Ok(a) => Some(Arc::new(a)),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot open the audit log; running without it");
                    None
                }
            }
        } else {
            None
        };
        let config = Arc::new(config);
        let (outbox, outbox_commands, spilled) = OutboxHandle::channel();
        // Every newly queued message reaches the outbox loop from the store's writer,
        // right after its commit and in seq order (the loop's reading of a deep queue
        // from disk relies on that order).
        {
            let outbox = outbox.clone();
            store.on_queued(Box::new(move |queued| outbox.deliver(queued)));
        }
        let schedules = Arc::new(tokio::sync::Notify::new());
        let finished = FinishedIds::new(16 * 1024);
        let shutdown = CancellationToken::new();
        let tracker = TaskTracker::new();
        let metrics = Metrics::new();
        metrics.watch_store(&store);
        let running = RunningCount::default();
        let fleet = FleetView::new(store.clone(), &config);
        let capture = start_capture(&config, &shutdown, &tracker).await;
        let methods = methods_context(&config, &shutdown)?;
        let submitter = Submitter::new(SubmitterParts {
            config: config.clone(),
            standalone,
            store: store.clone(),
            schedules: schedules.clone(),
            metrics: metrics.clone(),
            audit: audit.clone(),
            fleet: fleet.clone(),
        });
        let reporter = ErrorReporter::new(config.clone(), submitter.clone(), tracker.clone());
        let hello_now = Arc::new(tokio::sync::Notify::new());
        let workloads = Arc::new(
            crate::workloads::start(
                &config,
                capture.clone(),
                reporter.clone(),
                hello_now.clone(),
                &shutdown,
                &tracker,
            )
            .await,
        );
        let chaos_workloads = workloads.supervisor().map(|s| {
            Arc::new(crate::workloads::ChaosWorkloads(s.clone())) as Arc<dyn bosun_chaos::Workloads>
        });

        let executor = Arc::new(executor::Executor {
            config: config.clone(),
            store: store.clone(),
            transport: transport.clone(),
            submitter: submitter.clone(),
            follow_ups: executor::follow_ups(submitter.clone(), &tracker, shutdown.clone()),
            methods: methods.clone(),
            capture: capture.clone(),
            chaos: crate::chaos::start(
                &config,
                capture.clone(),
                chaos_workloads,
                &shutdown,
                &tracker,
            ),
            workloads: workloads.clone(),
            metrics: metrics.clone(),
            reporter: reporter.clone(),
            hello_now: hello_now.clone(),
            running: running.clone(),
            shutdown: shutdown.clone(),
            tracker: tracker.clone(),
        });
        let recovered = async {
            let to_run = executor::recover(&executor).await?;
            // The first page only: the outbox loop reads the rest as room frees up.
            let outbox_entries = store.outbox_page(0, config.outbox_memory_entries.max(1))?;
            let subscription = transport
                .subscribe(wire::inbox_pattern(&config.subject_prefix, &config.name))
                .await?;
            Ok::<_, NodeError>((to_run, outbox_entries, subscription))
        };
        let (to_run, outbox_entries, subscription) = match recovered.await {
            Ok(recovered) => recovered,
            Err(e) => {
                // The capture and the handlers' shutdown flag are running already.
                shutdown.cancel();
                return Err(e);
            }
        };
        let inbox = executor::Inbox::new(executor, to_run);
        let receiver = Arc::new(receiver::Receiver {
            config: config.clone(),
            store: store.clone(),
            metrics: metrics.clone(),
            audit,
            inbox: inbox.clone(),
            outbox: outbox.clone(),
            finished: finished.clone(),
            reporter: reporter.clone(),
            served: methods.served.clone(),
            sinks: crate::sinks::Sinks::new(config.results_path(), store.clone()),
            tracker: tracker.clone(),
            policy: Arc::new(policy),
            trust: transport.trust(),
            batched: receiver::batch_permits(),
        });
        let store_failed = CancellationToken::new();
        tracker.spawn(crate::disk::watch_store(
            store.clone(),
            reporter.clone(),
            metrics.clone(),
            config.name.to_string(),
            store_failed.clone(),
            shutdown.clone(),
        ));
        // Replies absorbed before a stop whose sink had not written them yet.
        if let Err(e) = receiver.sinks.recover().await {
            tracing::warn!(error = %e, "cannot finish the reply sinks left by the last run");
        }
        let sender = outbox::Sender {
            config: config.clone(),
            store: store.clone(),
            transport: transport.clone(),
            metrics: metrics.clone(),
            finished: finished.clone(),
            reporter: reporter.clone(),
            running,
            tracker: tracker.clone(),
            spilled,
        };

        tracker.spawn(outbox::run(
            sender,
            outbox_commands,
            outbox_entries,
            shutdown.clone(),
        ));
        tracker.spawn(executor::run(inbox));
        tracker.spawn(receiver::run(receiver, subscription, shutdown.clone()));
        // Every node announces its hellos; only some listen (`fleet_view`).
        let announce = (!standalone).then(|| transport.clone());
        if let Some(transport) = announce.as_ref().filter(|_| config.listens_to_fleet()) {
            tracker.spawn(crate::fleet::listen_fleet(
                config.clone(),
                transport.clone(),
                fleet.clone(),
                shutdown.clone(),
            ));
        }
        tracker.spawn(crate::fleet::hello_loop(
            config.clone(),
            submitter.clone(),
            methods,
            announce,
            workloads.supervisor().cloned(),
            hello_now.clone(),
            shutdown.clone(),
        ));
        tracker.spawn(crate::fleet::prune_loop(
            config.clone(),
            store.clone(),
            shutdown.clone(),
        ));
        tracker.spawn(scheduler(
            submitter.clone(),
            store.clone(),
            schedules,
            shutdown.clone(),
        ));
        tracker.spawn(gauges(
            store.clone(),
            fleet.clone(),
            metrics.clone(),
            shutdown.clone(),
        ));
        if let Some(capture) = capture {
            tracker.spawn(crate::fleet::ship_capture(
                config.clone(),
                submitter.clone(),
                capture,
                shutdown.clone(),
            ));
        }
        tracing::info!(
            node = config.name,
            transport = transport.describe(),
            data_dir = %config.data_dir.display(),
            "node started"
        );
        Ok(Node {
            parts: Arc::new(NodeParts {
                config,
                store,
                outbox,
                transport,
                submitter,
                finished,
                fleet,
                metrics,
                reporter,
                shutdown,
                tracker,
                store_failed,
            }),
        })
    }

    /// Record a connection or input refused at a way in (who may not use it, too many
    /// connections): in the error log and at central, as kind `rejected`, rate-limited
    /// per sender like every refusal.
    pub fn report_refused(&self, sender: &str, what: &str, reason: &str) {
        self.parts.reporter.report(&crate::errorlog::ErrorEntry {
            at: now_millis(),
            node: self.parts.config.name.as_str(),
            kind: "rejected",
            message_id: None,
            to_node: Some(sender),
            method: Some(what),
            reason,
        });
    }

    /// This node's name.
    pub fn name(&self) -> &str {
        &self.parts.config.name
    }

    /// The configuration in effect.
    pub fn config(&self) -> &Config {
        &self.parts.config
    }

    /// The transport, described.
    pub fn transport_description(&self) -> String {
        self.parts.transport.describe()
    }

    /// True when the transport is connected.
    pub fn is_connected(&self) -> bool {
        self.parts.transport.is_connected()
    }

    /// Validate and queue messages. Returns once every delivery is durable in the outbox.
    /// A message with several destinations becomes one delivery per destination, each
    /// with its own id. Re-submitting an id this node already has returns the existing
    /// delivery instead of queueing it twice.
    pub async fn submit(&self, messages: Vec<Message>) -> Result<Vec<Submitted>, SubmitError> {
        self.parts.submitter.submit_from_outside(messages).await
    }

    /// Everything this node knows about a message id.
    /// Registry auth in the message is shown as `<redacted>`.
    pub fn status(&self, id: &str) -> Result<StatusReport, StoreError> {
        Ok(self.statuses(&[id])?.swap_remove(0))
    }

    /// [`Node::status`] of each of `ids`, read at once.
    pub fn statuses<S: AsRef<str>>(&self, ids: &[S]) -> Result<Vec<StatusReport>, StoreError> {
        let views = self.parts.store.views(ids)?;
        Ok(ids
            .iter()
            .zip(views)
            .map(|(id, view)| {
                let mut sent = view.sent;
                if let Some(record) = &mut sent {
                    bosun_proto::container::redact_auth(&mut record.message);
                }
                let mut received = view.inbox;
                if let Some(record) = &mut received {
                    bosun_proto::container::redact_auth(&mut record.message);
                }
                StatusReport {
                    id: id.as_ref().to_string(),
                    sent,
                    received,
                    output: view.chunks.into_iter().map(|(_, text)| text).collect(),
                    schedule: view.schedule.map(|r| r.schedule),
                }
            })
            .collect())
    }

    /// Cancel a message this node sent, if it has not run (see [`crate::Cancelled`]):
    /// never sent, or sent only into silence, it ends `cancelled` here; maybe arrived,
    /// its destination is asked and decides. Answered once the decision is durable.
    pub async fn cancel(&self, id: &str) -> crate::Cancelled {
        use crate::Cancelled;
        if let Ok(report) = self.status(id)
            && report.sent.is_none()
            && let Some(received) = report.received
        {
            let from = received.message.from_node.unwrap_or_default();
            return Cancelled::Refused {
                reason: format!(
                    "{id} was sent to this node by {from}; only its sender can cancel it"
                ),
            };
        }
        let (reply, answer) = tokio::sync::oneshot::channel();
        let shutting_down = || Cancelled::Refused {
            reason: "the node is shutting down; see `bosun status` once it is back".into(),
        };
        if !self.parts.outbox.cancel(id.to_string(), reply) {
            return shutting_down();
        }
        answer.await.unwrap_or_else(|_| shutting_down())
    }

    /// The most recent messages this node sent, newest first.
    /// Registry auth is shown as `<redacted>`.
    pub fn recent(&self, limit: usize) -> Result<Vec<SentRecord>, StoreError> {
        let mut records = self.parts.store.recent_sent(limit)?;
        for record in &mut records {
            bosun_proto::container::redact_auth(&mut record.message);
        }
        Ok(records)
    }

    /// Wait until every id is in a final state at this node, or `timeout` passes.
    /// Returns whether all finished, and the reports.
    pub async fn wait(
        &self,
        ids: &[String],
        timeout: Duration,
    ) -> Result<(bool, Vec<StatusReport>), StoreError> {
        let mut finished = self.parts.finished.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        let is_final = |r: &StatusReport| r.sent.as_ref().is_some_and(|s| s.state.is_terminal());
        let read_all = || self.statuses(ids);
        let store = &self.parts.store;
        let mut pending: std::collections::HashSet<&str> = ids
            .iter()
            .zip(store.sent_final(ids)?)
            .filter(|(_, done)| !done)
            .map(|(id, _)| id.as_str())
            .collect();
        loop {
            if pending.is_empty() {
                return Ok((true, read_all()?));
            }
            tokio::select! {
                event = finished.recv() => match event {
                    Ok(id) => { pending.remove(id.as_str()); }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        // Missed some: read the unfinished ones' states again.
                        let unfinished: Vec<&str> = pending.into_iter().collect();
                        pending = unfinished
                            .iter()
                            .zip(store.sent_final(&unfinished)?)
                            .filter(|(_, done)| !done)
                            .map(|(id, _)| *id)
                            .collect();
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
        self.parts.fleet.at(now_millis())
    }

    /// Note that `node` confirmed a drain (or its end) at `at`, its own clock, so that
    /// placement here takes it into account before `node`'s next hello tells it.
    pub fn note_drained(&self, node: &str, drained: bool, at: bosun_proto::Millis) {
        self.parts.fleet.drained(node, drained, at);
    }

    /// The node's metrics (for the `/metrics` endpoint).
    pub fn metrics(&self) -> crate::metrics::Metrics {
        self.parts.metrics.clone()
    }

    /// Outbox and inbox depths.
    pub fn depths(&self) -> Result<bosun_store::Depths, StoreError> {
        self.parts.store.depths()
    }

    /// Resolves, with the reason, when the store cannot be reopened after an I/O error
    /// (a damaged file, a failing device): the node cannot record anything any more and
    /// should exit non-zero, so that its supervisor sees it. A full disk does not end
    /// here: the store waits for space and reopens itself.
    pub async fn store_failed(&self) -> String {
        self.parts.store_failed.cancelled().await;
        self.parts.store.health().to_string()
    }

    /// The token cancelled when the node begins to shut down. Whatever serves the node
    /// (listeners, folders) stops on it.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.parts.shutdown.clone()
    }

    /// The tracker every task of the node runs on. Spawn the node's listeners on it, so
    /// that [`Node::shutdown`] waits for them before it closes the store.
    pub fn tracker(&self) -> TaskTracker {
        self.parts.tracker.clone()
    }

    /// Stop gracefully: cancel the shutdown token (listeners stop, the executor takes no
    /// new work, running handlers are interrupted and their outcome recorded and reply
    /// queued, the outbox drains briefly), wait for every task on the tracker within a
    /// bounded grace, then make everything durable and close the store. Calling it again
    /// does nothing more.
    pub async fn shutdown(&self) {
        if self.parts.shutdown.is_cancelled() && self.parts.tracker.is_closed() {
            return;
        }
        tracing::info!(node = self.name(), "shutting down");
        self.parts.shutdown.cancel();
        self.parts.tracker.close();
        // Handlers get twice the kill grace to end their processes; the loops and
        // listeners end on the token at once, the outbox after its short drain.
        let grace = self.parts.config.kill_grace() * 2 + Duration::from_secs(4);
        if tokio::time::timeout(grace, self.parts.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                tasks = self.parts.tracker.len(),
                "tasks still running after the shutdown grace; closing anyway"
            );
        }
        if let Err(e) = self.parts.store.close().await {
            tracing::error!(error = %e, "closing the store");
        }
        tracing::info!(node = self.name(), "stopped");
    }
}

/// Keep the queue-depth and fleet gauges current.
async fn gauges(store: Store, fleet: FleetView, metrics: Metrics, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        if let Ok(d) = store.depths() {
            metrics.set_depths(d.outbox, d.inbox_pending);
        }
        if let Ok(fleet) = fleet.at(now_millis())
            && !fleet.is_empty()
        {
            let count = |l: crate::Liveness| fleet.iter().filter(|n| n.status == l).count() as u64;
            metrics.set_fleet(
                count(crate::Liveness::Alive),
                count(crate::Liveness::Suspect),
                count(crate::Liveness::Down),
            );
            for n in &fleet {
                metrics.set_last_seen(&n.name, n.seconds_ago);
            }
        }
    }
}

/// Steward's `schedule: [intervalSeconds, totalSeconds]`: queue a fresh copy of each
/// scheduled message when its next run is due. Schedules live in the store (started in
/// the commit that queues the message), so they go on after a restart: runs missed while
/// the node was down come as one catch-up run, then one per interval
/// (`bosun_core::schedule`). Each run is queued in the commit that advances its schedule.
async fn scheduler(
    submitter: Submitter,
    store: Store,
    wake: Arc<tokio::sync::Notify>,
    shutdown: CancellationToken,
) {
    /// When the store cannot be read or written, try again after this long.
    const RETRY_MS: u64 = 1000;
    loop {
        let now = now_millis();
        let mut wake_at: Option<u64> = None;
        match store.schedules() {
            Ok(schedules) => {
                for (id, record) in schedules {
                    let mut schedule = record.schedule;
                    if !schedule.is_due(now) {
                        wake_at =
                            Some(wake_at.map_or(schedule.next_at, |w| w.min(schedule.next_at)));
                        continue;
                    }
                    let mut repeat = record.template.clone();
                    repeat.id = Some(bosun_proto::new_id());
                    repeat.schedule = None;
                    repeat.created_at = Some(now);
                    match submitter.submit_repeat(&id, repeat, now).await {
                        Ok(_) => {
                            if schedule.advance(now) {
                                wake_at = Some(
                                    wake_at.map_or(schedule.next_at, |w| w.min(schedule.next_at)),
                                );
                            }
                        }
                        Err(e) => {
                            tracing::warn!(id, error = %e, "cannot queue a scheduled repeat");
                            wake_at = Some(now + RETRY_MS);
                        }
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the schedules");
                wake_at = Some(now + RETRY_MS);
            }
        }
        let sleep = async {
            match wake_at {
                Some(at) => {
                    let wait = Duration::from_millis(at.saturating_sub(now_millis()));
                    tokio::time::sleep(wait).await
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = sleep => {}
            _ = wake.notified() => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

/// An outcome for a message refused at this node.
pub(crate) fn refused(node: &str, reason: &str) -> Outcome {
    Outcome::bare(Status::Rejected, node, reason, now_millis())
}

/// Start the event stream when `capture` is on. A capture that cannot start is logged
/// and the node runs without it.
async fn start_capture(
    config: &Config,
    shutdown: &CancellationToken,
    tracker: &TaskTracker,
) -> Option<Capture> {
    if config.capture {
        let capture_config = bosun_capture::CaptureConfig {
            node: config.name.clone(),
            dir: config.capture_path(),
            file: bosun_capture::DEFAULT_FILE.into(),
            syslog_socket: Some(config.syslog_socket_path()),
            docker_socket: config.docker_socket.clone(),
            stats_interval: config.stats_interval(),
        };
        match bosun_capture::Capture::start(capture_config, shutdown.clone(), tracker).await {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(error = %e, "cannot start the event stream capture; running without it");
                None
            }
        }
    } else {
        None
    }
}

/// What the method handlers may know of this node.
fn methods_context(
    config: &Config,
    shutdown: &CancellationToken,
) -> Result<bosun_methods::Context, NodeError> {
    Ok(bosun_methods::Context {
        node: config.name.clone(),
        output_limit: config.output_limit_bytes,
        default_method_timeout: config.method_timeout(),
        kill_grace: config.kill_grace(),
        shutdown: shutdown.clone(),
        data_dir: config.data_dir.clone(),
        labels: config.labels.clone(),
        served: Default::default(),
        docker_socket: config.docker_socket.clone(),
        templates_dir: config.templates_path(),
        confine: Arc::new(config.confinement()?),
        // Per node: two nodes in one process keep their own clients and copy records.
        state: Default::default(),
    })
}

/// Make the default file roots (the results dir, and the transfer folder 0700) when
/// `file_roots` is unset, so copies and tails have somewhere to go. Roots the operator
/// names are left as they are; one that does not exist holds nothing until it does.
fn make_file_roots(config: &Config) -> Result<(), NodeError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if !config.file_roots.is_empty() {
        for root in config.file_roots.iter().filter(|root| !root.is_dir()) {
            tracing::warn!(root = %root.display(), "file root is not a folder that exists; file methods cannot use it until it is");
        }
        return Ok(());
    }
    let made = |path: std::path::PathBuf, source: std::io::Error| NodeError::FileRoot {
        path: path.display().to_string(),
        source,
    };
    let results = config.results_path();
    std::fs::create_dir_all(&results).map_err(|e| made(results, e))?;
    let transfer = config.transfer_path();
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&transfer)
        .map_err(|e| made(transfer.clone(), e))?;
    // Made by an earlier version, or by hand: tighten it too.
    std::fs::set_permissions(&transfer, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| made(transfer, e))?;
    Ok(())
}
