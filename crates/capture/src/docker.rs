//! The Docker follower: containers labelled `org.lsdsuite.stats=true` or
//! `org.bosun.capture=true` have their logs written as LOG records and their stats as
//! STATS records; the lifecycle events of every container are EVENT records.
//!
//! A session connects, subscribes to events (from the session's start, so that nothing
//! between the listing and the subscription is missed), lists the labelled containers
//! and follows each; a labelled container that starts later is followed from its start
//! event. The listing is repeated every 30 s, which restarts a follower whose streams
//! broke while its container runs on. A follower ends by itself when its container stops
//! (Docker closes its streams); after a `die` event it is cut off at the latest
//! [`DIE_GRACE`] later. When the daemon is unreachable or the event stream breaks, the
//! session is retried every [`RETRY`], with one warning per outage and one line when it
//! is over.
//!
//! Containers logging to syslog are not followed for logs (their lines come through the
//! syslog socket; Docker's dual logging would otherwise give them twice); their stats are.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::models::{ContainerStatsResponse, EventMessage};
use bollard::query_parameters::{
    EventsOptionsBuilder, ListContainersOptionsBuilder, LogsOptionsBuilder, StatsOptionsBuilder,
};
use bosun_methods::clock;
use bosun_methods::docker::engine;
use bosun_proto::container::{LABEL_CAPTURE, LABEL_LSDSUITE_STATS};
use futures::StreamExt;
use serde::Serialize;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::lines::Lines;
use super::{Capture, Topic};

/// Wait between attempts to reach the daemon.
pub(super) const RETRY: Duration = Duration::from_secs(5);
/// How long a follower may go on after its container's `die` event, to write the last
/// log lines.
pub(super) const DIE_GRACE: Duration = Duration::from_secs(3);
/// How often the labelled containers are listed again during a session.
const RELIST: Duration = Duration::from_secs(30);
/// Timeout for the daemon's answer to a request (streams themselves have none).
const REQUEST_TIMEOUT_SECS: u64 = 30;
/// The lifecycle events written as EVENT records.
const EVENTS: [&str; 6] = ["start", "die", "kill", "pause", "unpause", "oom"];
/// A log line longer than this is written in pieces.
const MAX_LINE: usize = 64 * 1024;

/// Why a session ended.
enum Ended {
    Shutdown,
    Lost(String),
}

struct Follower {
    handle: JoinHandle<()>,
}

/// Follow containers until shutdown, reconnecting as needed.
pub(super) async fn run(
    capture: Capture,
    socket: PathBuf,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let mut followers: HashMap<String, Follower> = HashMap::new();
    // Since when a problem has been reported: one warning per outage, not one per retry.
    let mut outage: Option<Instant> = None;
    loop {
        if shutdown.is_cancelled() {
            break;
        }
        // A daemon that takes the connection and never answers would hold the attempt
        // for the request timeout: shutdown does not wait for it.
        let attempt = async {
            match engine::connect(&socket, Duration::from_secs(REQUEST_TIMEOUT_SECS)).await {
                Ok(docker) => {
                    let mut session = Session {
                        docker,
                        capture: &capture,
                        interval,
                        followers: &mut followers,
                        shutdown: shutdown.clone(),
                        outage: &mut outage,
                    };
                    session.run().await
                }
                Err(e) => Ended::Lost(e.to_string()),
            }
        };
        let error = tokio::select! {
            _ = shutdown.cancelled() => break,
            ended = attempt => match ended {
                Ended::Shutdown => break,
                Ended::Lost(error) => error,
            },
        };
        if outage.is_none() {
            tracing::warn!(socket = %socket.display(), error, "Docker is unreachable; container capture waits, retrying every 5 s");
            outage = Some(Instant::now());
        } else {
            tracing::debug!(error, "Docker still unreachable");
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(RETRY) => {}
        }
    }
    for (_, f) in followers.drain() {
        f.handle.abort();
    }
}

struct Session<'a> {
    docker: Docker,
    capture: &'a Capture,
    interval: Duration,
    followers: &'a mut HashMap<String, Follower>,
    shutdown: CancellationToken,
    outage: &'a mut Option<Instant>,
}

impl Session<'_> {
    async fn run(&mut self) -> Ended {
        let now = clock::since_epoch();
        let filters = HashMap::from([("type", vec!["container"]), ("event", EVENTS.to_vec())]);
        let since = format!("{}.{:09}", now.as_secs(), now.subsec_nanos());
        let mut events = self.docker.events(Some(
            EventsOptionsBuilder::new()
                .since(&since)
                .filters(&filters)
                .build(),
        ));
        match self.labelled().await {
            Ok(ids) => {
                if let Some(since) = self.outage.take() {
                    tracing::info!(
                        after_s = since.elapsed().as_secs(),
                        "Docker reachable again; container capture resumes"
                    );
                }
                let since = unix_secs(now);
                for id in ids {
                    self.follow(&id, since).await;
                }
            }
            Err(e) => return Ended::Lost(e.to_string()),
        }
        let shutdown = self.shutdown.clone();
        let mut relist = tokio::time::interval_at(tokio::time::Instant::now() + RELIST, RELIST);
        loop {
            let event = tokio::select! {
                _ = shutdown.cancelled() => return Ended::Shutdown,
                event = events.next() => event,
                _ = relist.tick() => {
                    // Picks up a follower whose streams broke while its container runs on.
                    match self.labelled().await {
                        Ok(ids) => {
                            self.followers.retain(|_, f| !f.handle.is_finished());
                            let since = unix_secs(clock::since_epoch());
                            for id in ids {
                                self.follow(&id, since).await;
                            }
                            continue;
                        }
                        Err(e) => return Ended::Lost(e.to_string()),
                    }
                }
            };
            match event {
                Some(Ok(event)) => self.event(event).await,
                Some(Err(e)) => return Ended::Lost(e.to_string()),
                None => return Ended::Lost("the daemon closed the event stream".into()),
            }
        }
    }

    /// Running containers with either label.
    async fn labelled(&self) -> Result<Vec<String>, bollard::errors::Error> {
        let mut ids = Vec::new();
        // Label filters are ANDed, so one listing per label.
        for label in [LABEL_LSDSUITE_STATS, LABEL_CAPTURE] {
            let filters = HashMap::from([("label", vec![format!("{label}=true")])]);
            let list = self
                .docker
                .list_containers(Some(
                    ListContainersOptionsBuilder::new()
                        .filters(&filters)
                        .build(),
                ))
                .await?;
            for c in list {
                if let Some(id) = c.id
                    && !ids.contains(&id)
                {
                    ids.push(id);
                }
            }
        }
        Ok(ids)
    }

    async fn event(&mut self, event: EventMessage) {
        let action = event.action.clone().unwrap_or_default();
        let actor = event.actor.unwrap_or_default();
        let Some(id) = actor.id else { return };
        let attributes = actor.attributes.unwrap_or_default();
        self.capture
            .record(Topic::Event, Some(&id), &event_text(&action, &attributes));
        self.followers.retain(|_, f| !f.handle.is_finished());
        match action.as_str() {
            "start" if wants_capture(&attributes) => {
                let since = event
                    .time
                    .and_then(|t| i32::try_from(t).ok())
                    .unwrap_or_else(|| unix_secs(clock::since_epoch()));
                self.follow(&id, since).await;
            }
            "die" => {
                if let Some(f) = self.followers.remove(&id) {
                    tokio::spawn(async move {
                        tokio::time::sleep(DIE_GRACE).await;
                        f.handle.abort();
                    });
                }
            }
            _ => {}
        }
    }

    /// Start following `id` unless it is followed already; logs from `since` (Unix s).
    async fn follow(&mut self, id: &str, since: i32) {
        if self
            .followers
            .get(id)
            .is_some_and(|f| !f.handle.is_finished())
        {
            return;
        }
        let info = match self.docker.inspect_container(id, None).await {
            Ok(info) => info,
            Err(e) => {
                tracing::debug!(container = id, error = %e, "cannot inspect a container to capture");
                return;
            }
        };
        if !info.state.as_ref().and_then(|s| s.running).unwrap_or(false) {
            return;
        }
        let log_driver = info
            .host_config
            .as_ref()
            .and_then(|h| h.log_config.as_ref())
            .and_then(|l| l.typ.clone())
            .unwrap_or_default();
        let logs = log_driver != "syslog";
        let name = info
            .name
            .as_deref()
            .unwrap_or_default()
            .trim_start_matches('/');
        tracing::debug!(container = id, name, logs, "capturing a container");
        let handle = tokio::spawn(follow(
            self.docker.clone(),
            id.to_string(),
            logs.then_some(since),
            self.capture.clone(),
            self.interval,
            self.shutdown.clone(),
        ));
        self.followers.insert(id.to_string(), Follower { handle });
    }
}

fn unix_secs(d: Duration) -> i32 {
    i32::try_from(d.as_secs()).unwrap_or(i32::MAX)
}

/// True when the labels (event attributes carry them) ask for capture.
fn wants_capture(labels: &HashMap<String, String>) -> bool {
    [LABEL_LSDSUITE_STATS, LABEL_CAPTURE]
        .iter()
        .any(|l| labels.get(*l).is_some_and(|v| v == "true"))
}

/// `die name=web image=nginx exitCode=0`.
fn event_text(action: &str, attributes: &HashMap<String, String>) -> String {
    let mut text = action.to_string();
    for key in ["name", "image", "exitCode", "signal"] {
        if let Some(v) = attributes.get(key) {
            text.push(' ');
            text.push_str(key);
            text.push('=');
            text.push_str(v);
        }
    }
    text
}

/// Follow one container's logs (when `logs_since` is given) and stats until they end.
async fn follow(
    docker: Docker,
    id: String,
    logs_since: Option<i32>,
    capture: Capture,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let logs = async {
        if let Some(since) = logs_since {
            follow_logs(&docker, &id, since, &capture).await;
        }
    };
    let stats = follow_stats(&docker, &id, &capture, interval);
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = async { tokio::join!(logs, stats) } => {}
    }
    tracing::debug!(container = %id, "container capture ended");
}

async fn follow_logs(docker: &Docker, id: &str, since: i32, capture: &Capture) {
    let options = LogsOptionsBuilder::new()
        .follow(true)
        .stdout(true)
        .stderr(true)
        .since(since)
        .build();
    let mut stream = docker.logs(id, Some(options));
    let mut out = Lines::new(MAX_LINE);
    let mut err = Lines::new(MAX_LINE);
    while let Some(item) = stream.next().await {
        match item {
            Ok(LogOutput::StdErr { message }) => err.push(&message, |l| log_line(capture, id, l)),
            Ok(
                LogOutput::StdOut { message }
                | LogOutput::Console { message }
                | LogOutput::StdIn { message },
            ) => out.push(&message, |l| log_line(capture, id, l)),
            Err(e) => {
                tracing::debug!(container = id, error = %e, "container log stream ended");
                break;
            }
        }
    }
    out.finish(|l| log_line(capture, id, l));
    err.finish(|l| log_line(capture, id, l));
}

fn log_line(capture: &Capture, id: &str, line: &[u8]) {
    capture.record(Topic::Log, Some(id), &String::from_utf8_lossy(line));
}

/// One container sample, written as the STATS record's JSON.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct StatsSample {
    pub cpu_percent: f64,
    pub memory_bytes: u64,
    pub memory_limit_bytes: u64,
    pub network_rx_bytes: u64,
    pub network_tx_bytes: u64,
    pub block_read_bytes: u64,
    pub block_write_bytes: u64,
}

/// Docker streams a sample about every second; one in each `interval` is written, the
/// first as soon as it carries a CPU delta.
async fn follow_stats(docker: &Docker, id: &str, capture: &Capture, interval: Duration) {
    let options = StatsOptionsBuilder::new().stream(true).build();
    let mut stream = docker.stats(id, Some(options));
    let mut last: Option<Instant> = None;
    // Samples come about a second apart: do not wait a whole extra one for jitter.
    let slack = Duration::from_millis(250);
    while let Some(item) = stream.next().await {
        let stats = match item {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(container = id, error = %e, "container stats stream ended");
                break;
            }
        };
        if last.is_some_and(|t| t.elapsed() + slack < interval) {
            continue;
        }
        let Some(sample) = stats_sample(&stats) else {
            continue;
        };
        last = Some(Instant::now());
        match serde_json::to_string(&sample) {
            Ok(json) => capture.record(Topic::Stats, Some(id), &json),
            Err(e) => tracing::debug!(error = %e, "stats sample not serialised"),
        }
    }
}

/// The sample in a Docker stats answer; `None` for the first of a stream (no previous
/// CPU reading to take a percentage from) or for a stopped container's empty answer.
pub(super) fn stats_sample(stats: &ContainerStatsResponse) -> Option<StatsSample> {
    engine::has_cpu_baseline(stats).then(|| {
        let summary = engine::summarize(stats);
        StatsSample {
            cpu_percent: summary.cpu_percent,
            memory_bytes: summary.memory_bytes,
            memory_limit_bytes: summary.memory_limit_bytes,
            network_rx_bytes: summary.network_rx_bytes,
            network_tx_bytes: summary.network_tx_bytes,
            block_read_bytes: summary.block_read_bytes,
            block_write_bytes: summary.block_write_bytes,
        }
    })
}
