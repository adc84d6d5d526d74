//! `containerLogs`: a container's stdout and stderr, interleaved as they were written.
//!
//! Without `data[1] = "follow"` the logs so far come back in stdout, keeping the newest
//! `output_limit` bytes. With it, the logs so far and then new lines go out through the
//! chunk sink until the container stops or `methodTimeout` passes (both end `Done`).

use std::time::Duration;

use bollard::Docker;
use bollard::query_parameters::LogsOptions;
use bosun_proto::{Message, Millis, Outcome, Status};
use futures::StreamExt;

use super::{DockerMethodError, arg, bounded, client, container_arg, failure};
use crate::{ChunkSink, Context, done, failed, now_millis};

/// Most bytes held back before a chunk goes out, even without a newline.
const CHUNK_MAX: usize = 64 * 1024;
/// How long new lines are gathered into one chunk.
const FLUSH_EVERY: Duration = Duration::from_millis(200);

/// Run `containerLogs`.
pub(super) async fn run(
    message: &Message,
    context: &Context,
    chunks: &ChunkSink,
    started: Millis,
) -> Outcome {
    let follow = match arg(message, 1) {
        None => false,
        Some("follow") => true,
        Some(other) => {
            let error = DockerMethodError::NotUnderstood {
                index: 1,
                given: other.to_string(),
                expected: "give \"follow\" to stream new lines, or nothing",
            };
            return failed(context, started, error.to_string());
        }
    };
    if follow {
        return follow_logs(message, context, chunks, started).await;
    }
    let work = async {
        let docker = client(context).await?;
        let id = container_arg(message)?;
        collect(&docker, id, context).await
    };
    match bounded(
        work,
        bosun_proto::Method::ContainerLogs,
        message,
        context,
        started,
    )
    .await
    {
        Ok((text, truncated)) => Outcome {
            truncated,
            ..done(context, started, text)
        },
        Err(outcome) => outcome,
    }
}

/// Both streams, from the first line.
fn options(follow: bool) -> LogsOptions {
    LogsOptions {
        follow,
        stdout: true,
        stderr: true,
        tail: "all".to_string(),
        ..Default::default()
    }
}

/// All logs so far, keeping the newest `output_limit` bytes (from a line start when
/// possible); true when some were left out.
async fn collect(
    docker: &Docker,
    id: &str,
    context: &Context,
) -> Result<(String, bool), DockerMethodError> {
    let limit = context.output_limit;
    let mut kept: Vec<u8> = Vec::new();
    let mut dropped = false;
    let mut logs = docker.logs(id, Some(options(false)));
    while let Some(frame) = logs.next().await {
        let frame = frame.map_err(|e| failure(context, e, "read logs of", Some(id)))?;
        kept.extend_from_slice(&frame.into_bytes());
        // Trimmed in batches so a long log is not shifted line by line.
        if kept.len() > limit.saturating_mul(2).max(CHUNK_MAX) {
            kept.drain(..kept.len() - limit);
            dropped = true;
        }
    }
    if kept.len() > limit {
        kept.drain(..kept.len() - limit);
        dropped = true;
    }
    if dropped && let Some(i) = kept.iter().position(|b| *b == b'\n') {
        // Start at a whole line rather than in the middle of one.
        if i + 1 < kept.len() {
            kept.drain(..=i);
        }
    }
    Ok((String::from_utf8_lossy(&kept).into_owned(), dropped))
}

/// How a followed stream ended.
enum End {
    /// The container stopped, or the sink was closed.
    Finished,
    /// `methodTimeout` passed.
    Timeout,
    /// The node shut down.
    Shutdown,
}

/// Send the logs so far, then new lines, as chunks; done when the container stops or
/// `methodTimeout` passes.
async fn follow_logs(
    message: &Message,
    context: &Context,
    chunks: &ChunkSink,
    started: Millis,
) -> Outcome {
    let docker = match client(context).await {
        Ok(d) => d,
        Err(e) => return failed(context, started, e.to_string()),
    };
    let id = match container_arg(message) {
        Ok(id) => id,
        Err(e) => return failed(context, started, e.to_string()),
    };
    let deadline = tokio::time::sleep(context.method_timeout(message));
    tokio::pin!(deadline);
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut logs = docker.logs(id, Some(options(true)));
    let mut pending: Vec<u8> = Vec::new();
    // A partial line waits one flush for the rest of it, then goes out as it is.
    let mut partial_waited = false;
    let end = loop {
        tokio::select! {
            frame = logs.next() => match frame {
                None => break End::Finished,
                Some(Ok(frame)) => {
                    pending.extend_from_slice(&frame.into_bytes());
                    if pending.len() >= CHUNK_MAX && !send(chunks, &mut pending, true).await {
                        break End::Finished;
                    }
                }
                Some(Err(e)) => {
                    send(chunks, &mut pending, true).await;
                    let error = failure(context, e, "follow logs of", Some(id));
                    return failed(context, started, error.to_string());
                }
            },
            _ = tick.tick() => {
                let had_partial = pending.last().is_some_and(|b| *b != b'\n');
                if !send(chunks, &mut pending, partial_waited).await {
                    break End::Finished;
                }
                partial_waited = had_partial && !pending.is_empty();
            }
            _ = &mut deadline => break End::Timeout,
            _ = context.shutdown.cancelled() => break End::Shutdown,
        }
    };
    send(chunks, &mut pending, true).await;
    match end {
        End::Finished | End::Timeout => done(context, started, String::new()),
        End::Shutdown => Outcome {
            started_at: Some(started),
            ..Outcome::bare(
                Status::Interrupted,
                &context.node,
                "the node shut down while following the logs",
                now_millis(),
            )
        },
    }
}

/// Send the whole lines in `pending` (everything when `all`) as one chunk. False when
/// nobody takes chunks any more.
async fn send(chunks: &ChunkSink, pending: &mut Vec<u8>, all: bool) -> bool {
    let cut = if all {
        pending.len()
    } else {
        pending
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |i| i + 1)
    };
    if cut == 0 {
        return true;
    }
    let text = String::from_utf8_lossy(&pending[..cut]).into_owned();
    pending.drain(..cut);
    chunks.send(text).await
}
