//! The node's side of fault experiments: the lease engine, started with the node, its
//! records written into the event stream, and the `chaos…` methods that reach it.

use std::sync::Arc;

use bosun_capture::{Capture, Topic};
use bosun_proto::{Message, Method, Outcome, Status};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::node::now_millis;

/// Start the lease engine on `<data dir>/chaos`. A lease book that cannot be read stops
/// nothing else: the node runs without experiments and says why.
pub(crate) fn start(
    config: &Config,
    capture: Option<Capture>,
    workloads: Option<Arc<dyn bosun_chaos::Workloads>>,
    shutdown: &CancellationToken,
    tracker: &TaskTracker,
) -> Experiments {
    let node = config.name.as_str().to_string();
    let sink: bosun_chaos::Sink = Arc::new(move |record: bosun_chaos::Record| {
        if record.mark {
            tracing::info!(mark = %record.text, "chaos mark");
        } else {
            tracing::info!(event = %record.text, "chaos");
        }
        if let Some(capture) = &capture {
            let topic = if record.mark {
                Topic::Mark
            } else {
                Topic::Event
            };
            capture.record(topic, record.container.as_deref(), &record.text);
        }
    });
    let faults = bosun_chaos::Faults::new(config.docker_socket.clone(), workloads);
    bosun_chaos::Engine::start(
        &node,
        config.data_dir.join("chaos"),
        faults,
        sink,
        shutdown.clone(),
        tracker,
    )
    .map_or_else(
        |e| {
            tracing::error!(error = %e, "cannot read the chaos lease book; fault experiments are off on this node");
            Experiments::Off(e.to_string())
        },
        Experiments::On,
    )
}

/// The lease engine, or why this node has none.
pub(crate) enum Experiments {
    /// Running.
    On(bosun_chaos::Engine),
    /// Off, and why.
    Off(String),
}

/// Run a `chaos…` method.
pub(crate) async fn run(
    engine: &Experiments,
    node: &str,
    method: Method,
    message: &Message,
) -> Outcome {
    let started = now_millis();
    let ended = |status: Status, stdout: String, error: Option<String>| {
        crate::executor::node_outcome(node, started, status, stdout, error)
    };
    let engine = match engine {
        Experiments::On(engine) => engine,
        Experiments::Off(e) => {
            return ended(
                Status::Failed,
                String::new(),
                Some(format!("fault experiments are off on this node: {e}")),
            );
        }
    };
    let arg = message.data.first().map(String::as_str).unwrap_or("");
    let json = |value: serde_json::Result<String>| match value {
        Ok(text) => ended(Status::Done, text, None),
        Err(e) => ended(Status::Failed, String::new(), Some(e.to_string())),
    };
    match method {
        Method::ChaosSchedule => {
            let plan: bosun_chaos::Plan = match serde_json::from_str(arg) {
                Ok(plan) => plan,
                Err(e) => {
                    return ended(
                        Status::Failed,
                        String::new(),
                        Some(format!("chaosSchedule takes [plan JSON]: {e}")),
                    );
                }
            };
            match engine.schedule(&plan).await {
                Ok(answer) => json(serde_json::to_string(&answer)),
                Err(e) => ended(Status::Failed, String::new(), Some(e.to_string())),
            }
        }
        Method::ChaosAbort | Method::ChaosList if arg.is_empty() => ended(
            Status::Failed,
            String::new(),
            Some(format!(
                "{method} takes [experiment id] (or [\"*\"] for all)"
            )),
        ),
        Method::ChaosAbort => match engine.abort(arg).await {
            Ok(entries) => json(serde_json::to_string(&entries)),
            Err(e) => ended(Status::Failed, String::new(), Some(e.to_string())),
        },
        _ => json(serde_json::to_string(&engine.listing(arg).await)),
    }
}
