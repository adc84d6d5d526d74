//! The node's supervised workloads (`bosun-supervise`): started with the node from
//! `<data dir>/workloads` and the `workloads_file` setting; every state change goes into
//! the event stream and brings a hello forward (so central's view is current); a
//! workload gone `FATAL` and its escalation go to the error log and on to central's.

use std::sync::Arc;

use bosun_capture::{Capture, Topic};
use bosun_proto::{Message, Method, Outcome, Status};
use bosun_supervise::{Supervisor, SupervisorEvent};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::errorlog::ErrorEntry;
use crate::handles::ErrorReporter;
use crate::node::now_millis;

/// The supervisor, or why this node has none.
pub(crate) enum Workloads {
    /// Running.
    On(Supervisor),
    /// Off, and why.
    Off(String),
}

impl Workloads {
    /// The supervisor, when running.
    pub(crate) fn supervisor(&self) -> Option<&Supervisor> {
        match self {
            Workloads::On(s) => Some(s),
            Workloads::Off(_) => None,
        }
    }
}

/// Start supervising, and add the definitions of the `workloads_file` setting.
pub(crate) async fn start(
    config: &Config,
    capture: Option<Capture>,
    reporter: ErrorReporter,
    hello_now: Arc<tokio::sync::Notify>,
    shutdown: &CancellationToken,
    tracker: &TaskTracker,
) -> Workloads {
    let (tx, rx) = mpsc::unbounded_channel();
    let supervisor = match Supervisor::start(
        config.data_dir.join("workloads"),
        config.name.as_str(),
        config.docker_socket.clone(),
        tx,
        shutdown.clone(),
        tracker,
    )
    .await
    {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the workload supervisor; workloads are off on this node");
            return Workloads::Off(e.to_string());
        }
    };
    tracker.spawn(forward(
        rx,
        config.name.as_str().to_string(),
        capture,
        reporter,
        hello_now,
    ));
    if let Some(file) = &config.workloads_file {
        let defs = std::fs::read_to_string(file)
            .map_err(|e| format!("{}: {e}", file.display()))
            .and_then(|text| {
                bosun_supervise::parse_definitions(&text)
                    .map_err(|e| format!("{}: {e}", file.display()))
            });
        match defs {
            Ok(defs) => {
                for def in defs {
                    let name = def.name.clone();
                    if let Err(e) = supervisor.add(def).await {
                        tracing::error!(workload = %name, error = %e, "cannot supervise a workload from workloads_file");
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot read workloads_file"),
        }
    }
    Workloads::On(supervisor)
}

async fn forward(
    mut events: mpsc::UnboundedReceiver<SupervisorEvent>,
    node: String,
    capture: Option<Capture>,
    reporter: ErrorReporter,
    hello_now: Arc<tokio::sync::Notify>,
) {
    while let Some(event) = events.recv().await {
        let text = match &event {
            SupervisorEvent::State {
                name,
                from,
                to,
                reason,
            } => {
                hello_now.notify_one();
                format!("workload {name} {from:?} -> {to:?} {reason}")
            }
            SupervisorEvent::Health {
                name,
                healthy,
                detail,
            } => format!(
                "workload {name} {} {detail}",
                if *healthy { "healthy" } else { "unhealthy" }
            ),
            SupervisorEvent::Fatal { name, reason } => {
                let reason = format!("workload {name} FATAL: {reason}");
                reporter.report(&ErrorEntry {
                    at: now_millis(),
                    node: &node,
                    kind: "workload-fatal",
                    message_id: None,
                    to_node: None,
                    method: None,
                    reason: &reason,
                });
                reason
            }
            SupervisorEvent::Escalated {
                name,
                stopped,
                cleanup,
            } => {
                let reason = format!(
                    "workload {name} escalation: stopped [{}], cleanup: {}",
                    stopped.join(", "),
                    cleanup.as_deref().unwrap_or("none")
                );
                reporter.report(&ErrorEntry {
                    at: now_millis(),
                    node: &node,
                    kind: "workload-escalation",
                    message_id: None,
                    to_node: None,
                    method: None,
                    reason: &reason,
                });
                reason
            }
        };
        if let Some(capture) = &capture {
            capture.record(Topic::Event, None, &text);
        }
    }
}

/// Faults on workloads, for the lease engine.
pub(crate) struct ChaosWorkloads(pub Supervisor);

#[async_trait::async_trait]
impl bosun_chaos::Workloads for ChaosWorkloads {
    async fn signal(&self, name: &str, signal: i32) -> Result<(), bosun_chaos::WorkloadError> {
        self.0
            .signal(name, signal)
            .await
            .map_err(|e| bosun_chaos::WorkloadError(e.to_string()))
    }

    async fn stop(&self, name: &str) -> Result<(), bosun_chaos::WorkloadError> {
        self.0
            .stop(name)
            .await
            .map_err(|e| bosun_chaos::WorkloadError(e.to_string()))
    }

    async fn resume(&self, name: &str) -> Result<(), bosun_chaos::WorkloadError> {
        self.0
            .resume(name)
            .await
            .map(|_| ())
            .map_err(|e| bosun_chaos::WorkloadError(e.to_string()))
    }
}

/// Run a `workload…` method.
pub(crate) async fn run(
    workloads: &Workloads,
    node: &str,
    method: Method,
    message: &Message,
) -> Outcome {
    let started = now_millis();
    let ended = |status: Status, stdout: String, error: Option<String>| {
        crate::executor::node_outcome(node, started, status, stdout, error)
    };
    let supervisor = match workloads {
        Workloads::On(s) => s,
        Workloads::Off(e) => {
            return ended(
                Status::Failed,
                String::new(),
                Some(format!("workloads are off on this node: {e}")),
            );
        }
    };
    let arg = message.data.first().map(String::as_str).unwrap_or("");
    let failed =
        |e: &dyn std::fmt::Display| ended(Status::Failed, String::new(), Some(e.to_string()));
    let done = |text: String| ended(Status::Done, text, None);
    match method {
        Method::WorkloadList => done(to_json(&supervisor.list())),
        _ if arg.is_empty() => failed(&format!(
            "{method} takes [{}]",
            if method == Method::WorkloadAdd {
                "definition JSON"
            } else {
                "name"
            }
        )),
        Method::WorkloadAdd => match bosun_supervise::parse_definition(arg) {
            Ok(def) => match supervisor.add(def).await {
                Ok(status) => done(to_json(&status)),
                Err(e) => failed(&e),
            },
            Err(e) => failed(&e),
        },
        Method::WorkloadRemove => match supervisor.remove(arg).await {
            Ok(()) => done(format!("workload {arg} stopped and removed\n")),
            Err(e) => failed(&e),
        },
        _ => match supervisor.restart(arg).await {
            Ok(status) => done(to_json(&status)),
            Err(e) => failed(&e),
        },
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}
