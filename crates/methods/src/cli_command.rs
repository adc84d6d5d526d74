//! `cliCommand`: run a command and return its stdout, stderr and exit code.
//! `cliCommandCont`: the same, with stdout streamed back in chunks while it runs.
//!
//! The command runs from an argv; `useShell: true` runs the joined words through
//! `/bin/sh -c` instead. The child gets its own process group, so that `methodTimeout`
//! (and node shutdown) can end the command together with everything it started: the
//! group gets SIGTERM, then SIGKILL after the grace period. It is started through
//! [`crate::process`]: it dies with the node, and its group is reported so that a node
//! restarted after a crash can end what the command left running.

use bosun_proto::{Message, Outcome, Status};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::process::{Io, Launch};
use crate::{ChunkSink, Context, ProcessSink, now_millis};

/// Why a run stopped early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cut {
    Timeout,
    Shutdown,
}

/// Run the command in `message.data`; its process group goes to `processes`.
pub async fn run(message: &Message, context: &Context, processes: &ProcessSink) -> Outcome {
    run_inner(message, context, None, processes).await
}

/// Run the command, sending stdout to `chunks` as it comes (whole lines where it can).
pub async fn run_streaming(
    message: &Message,
    context: &Context,
    chunks: &ChunkSink,
    processes: &ProcessSink,
) -> Outcome {
    run_inner(message, context, Some(chunks.clone()), processes).await
}

async fn run_inner(
    message: &Message,
    context: &Context,
    stream: Option<ChunkSink>,
    processes: &ProcessSink,
) -> Outcome {
    let started = now_millis();
    let argv: Vec<String> = if message.use_shell {
        vec!["/bin/sh".into(), "-c".into(), message.data.join(" ")]
    } else {
        message.data.clone()
    };
    let fail = |error: String| Outcome {
        started_at: Some(started),
        ..Outcome::bare(Status::Failed, &context.node, error, now_millis())
    };
    let Some(program) = argv.first().filter(|p| !p.is_empty()) else {
        return fail("no command given: `data` must hold an argv".into());
    };
    let mut command = Launch::new(program);
    command
        .args(&argv[1..])
        .stdin(Io::Null)
        .stdout(Io::Piped)
        .stderr(Io::Piped)
        .kill_on_drop(true);
    let mut child = match context.state.spawner.spawn(command).await {
        Ok(c) => c,
        Err(e) => return fail(format!("cannot start {program:?}: {e}")),
    };
    let pgid = child.id().map(|p| Pid::from_raw(p as i32));
    if let Some(pid) = child.id() {
        match crate::process::group_of(pid) {
            Ok(group) => processes.report(group),
            Err(e) => {
                tracing::warn!(pid, error = %e, "cannot identify the command's process group; a crash would leave it unrecorded")
            }
        }
    }
    let limit = context.output_limit;
    let stdout = match stream {
        Some(sink) => tokio::spawn(forward(child.stdout.take(), sink)),
        None => tokio::spawn(read_capped(child.stdout.take(), limit)),
    };
    let stderr = tokio::spawn(read_capped(child.stderr.take(), limit));
    let mut done = Box::pin(async move {
        let status = child.wait().await;
        let out = stdout.await.unwrap_or_default();
        let err = stderr.await.unwrap_or_default();
        (status, out, err)
    });

    let timeout = context.method_timeout(message);
    let cut = tokio::select! {
        r = &mut done => return finished(r, started, context),
        _ = tokio::time::sleep(timeout) => Cut::Timeout,
        _ = context.shutdown.cancelled() => Cut::Shutdown,
    };

    if let Some(pgid) = pgid {
        let _ = killpg(pgid, Signal::SIGTERM);
    }
    let ended = match tokio::time::timeout(context.kill_grace, &mut done).await {
        Ok(r) => Some(r),
        Err(_) => {
            if let Some(pgid) = pgid {
                let _ = killpg(pgid, Signal::SIGKILL);
            }
            tokio::time::timeout(context.kill_grace, &mut done)
                .await
                .ok()
        }
    };
    let (status, error) = match cut {
        Cut::Timeout => (
            Status::Timeout,
            format!(
                "methodTimeout of {}s reached; the process group was killed",
                timeout.as_secs()
            ),
        ),
        Cut::Shutdown => (
            Status::Interrupted,
            "the node shut down while the command ran; the process group was killed".to_string(),
        ),
    };
    let mut outcome = Outcome {
        started_at: Some(started),
        ..Outcome::bare(status, &context.node, error, now_millis())
    };
    if let Some((_, out, err)) = ended {
        outcome.stdout = out.text;
        outcome.stderr = err.text;
        outcome.truncated = out.truncated || err.truncated;
    }
    outcome
}

fn finished(
    (status, out, err): (
        std::io::Result<std::process::ExitStatus>,
        Captured,
        Captured,
    ),
    started: u64,
    context: &Context,
) -> Outcome {
    let (state, exit_code, error) = match status {
        Ok(s) => match s.code() {
            Some(0) => (Status::Done, Some(0), None),
            Some(c) => (
                Status::Failed,
                Some(c),
                Some(format!("exited with code {c}")),
            ),
            None => {
                use std::os::unix::process::ExitStatusExt;
                let sig = s.signal().unwrap_or(0);
                (
                    Status::Failed,
                    None,
                    Some(format!("killed by signal {sig}")),
                )
            }
        },
        Err(e) => (
            Status::Failed,
            None,
            Some(format!("cannot wait for the command: {e}")),
        ),
    };
    Outcome {
        status: state,
        node: context.node.clone(),
        exit_code,
        stdout: out.text,
        stderr: err.text,
        error,
        truncated: out.truncated || err.truncated,
        started_at: Some(started),
        finished_at: now_millis(),
        chunks: None,
    }
}

/// Send a pipe's bytes to `sink` as text: whole lines, flushed at least every 200 ms.
/// Keeps nothing (the output went out as chunks).
async fn forward<R: AsyncRead + Unpin>(pipe: Option<R>, sink: ChunkSink) -> Captured {
    let Some(mut pipe) = pipe else {
        return Captured::default();
    };
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let flush_every = std::time::Duration::from_millis(200);
    loop {
        let read = tokio::time::timeout(flush_every, pipe.read(&mut buf)).await;
        let n = match read {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => n,
            Err(_) => 0,
        };
        pending.extend_from_slice(&buf[..n]);
        // Send complete lines; a long line without a newline goes out when it is big, or
        // when no more arrives for a while.
        let cut = match pending.iter().rposition(|b| *b == b'\n') {
            Some(i) => i + 1,
            None if pending.len() >= 64 * 1024 || (n == 0 && !pending.is_empty()) => pending.len(),
            None => 0,
        };
        if cut > 0 {
            let text = String::from_utf8_lossy(&pending[..cut]).into_owned();
            pending.drain(..cut);
            if !sink.send(text).await {
                break;
            }
        }
    }
    if !pending.is_empty() {
        sink.send(String::from_utf8_lossy(&pending).into_owned())
            .await;
    }
    Captured::default()
}

#[derive(Default)]
struct Captured {
    text: String,
    truncated: bool,
}

/// Read a pipe to its end, keeping at most `limit` bytes (the rest is drained so the
/// child never blocks on a full pipe).
async fn read_capped<R: AsyncRead + Unpin>(pipe: Option<R>, limit: usize) -> Captured {
    let Some(mut pipe) = pipe else {
        return Captured::default();
    };
    let mut kept = Vec::new();
    let mut buf = [0u8; 8192];
    let mut truncated = false;
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = limit.saturating_sub(kept.len());
                if n > room {
                    truncated = true;
                }
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
    Captured {
        text: String::from_utf8_lossy(&kept).into_owned(),
        truncated,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};
    use tokio_util::sync::CancellationToken;

    fn context(shutdown: CancellationToken) -> Context {
        Context {
            output_limit: 1024,
            kill_grace: Duration::from_millis(500),
            ..crate::test_context("n1", shutdown)
        }
    }

    fn message(data: &[&str]) -> Message {
        Message {
            method: "cliCommand".into(),
            data: data.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn captures_stdout_stderr_and_exit_code() {
        let rx = CancellationToken::new();
        let o = run(
            &message(&["sh", "-c", "echo out; echo err >&2; exit 3"]),
            &context(rx),
            &ProcessSink::none(),
        )
        .await;
        assert_eq!(o.status, Status::Failed);
        assert_eq!(o.exit_code, Some(3));
        assert_eq!(o.stdout, "out\n");
        assert_eq!(o.stderr, "err\n");
    }

    #[tokio::test]
    async fn argv_is_not_split_or_interpreted() {
        let rx = CancellationToken::new();
        let o = run(
            &message(&["echo", "a  b", "$HOME;", "|x"]),
            &context(rx),
            &ProcessSink::none(),
        )
        .await;
        assert_eq!(o.status, Status::Done);
        assert_eq!(o.stdout, "a  b $HOME; |x\n");
    }

    #[tokio::test]
    async fn shell_only_when_asked() {
        let rx = CancellationToken::new();
        let mut m = message(&["echo", "$((1+2))"]);
        m.use_shell = true;
        let o = run(&m, &context(rx), &ProcessSink::none()).await;
        assert_eq!(o.stdout, "3\n");
    }

    #[tokio::test]
    async fn streaming_sends_lines_while_the_command_runs() {
        let rx = CancellationToken::new();
        let (chunk_tx, mut chunk_rx) = tokio::sync::mpsc::channel(16);
        let go = tempfile_dir().join("go");
        // The command cannot end before the test creates `go`, which it does only once
        // the first line has arrived.
        let script = format!(
            "echo one; while [ ! -e {} ]; do sleep 0.01; done; echo two; echo err >&2",
            go.display()
        );
        let m = message(&["sh", "-c", &script]);
        let ctx = context(rx);
        let task = tokio::spawn(async move {
            run_streaming(&m, &ctx, &ChunkSink::new(chunk_tx), &ProcessSink::none()).await
        });
        let first = tokio::time::timeout(Duration::from_secs(10), chunk_rx.recv()).await;
        assert_eq!(
            first.unwrap().unwrap(),
            "one\n",
            "the first line arrives before the command ends"
        );
        std::fs::write(&go, "").unwrap();
        let outcome = task.await.unwrap();
        assert_eq!(chunk_rx.recv().await.unwrap(), "two\n");
        assert_eq!(outcome.status, Status::Done);
        assert!(outcome.stdout.is_empty(), "stdout went out as chunks");
        assert_eq!(outcome.stderr, "err\n");
    }

    #[tokio::test]
    async fn missing_program_is_a_clear_failure() {
        let rx = CancellationToken::new();
        let o = run(
            &message(&["/no/such/program"]),
            &context(rx),
            &ProcessSink::none(),
        )
        .await;
        assert_eq!(o.status, Status::Failed);
        assert!(o.error.unwrap().contains("cannot start"));
    }

    #[tokio::test]
    async fn output_is_capped_and_marked() {
        let rx = CancellationToken::new();
        let o = run(
            &message(&["sh", "-c", "head -c 100000 /dev/zero | tr '\\0' x"]),
            &context(rx),
            &ProcessSink::none(),
        )
        .await;
        assert_eq!(o.status, Status::Done);
        assert_eq!(o.stdout.len(), 1024);
        assert!(o.truncated);
    }

    /// methodTimeout must end the whole process group, grandchildren included.
    #[tokio::test]
    async fn timeout_kills_the_grandchild_too() {
        let dir = tempfile_dir();
        let pidfile = dir.join("grandchild.pid");
        let script = format!("sleep 300 & echo $! > {}; wait", pidfile.display());
        let mut m = message(&["sh", "-c", &script]);
        m.method_timeout = Some(1);
        let rx = CancellationToken::new();
        let t = Instant::now();
        let o = run(&m, &context(rx), &ProcessSink::none()).await;
        assert_eq!(o.status, Status::Timeout);
        assert!(o.error.unwrap().contains("methodTimeout"));
        assert!(t.elapsed() < Duration::from_secs(10));
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(gone(pid), "grandchild sleep {pid} still alive");
    }

    #[tokio::test]
    async fn shutdown_interrupts_and_kills_the_group() {
        let tx = CancellationToken::new();
        let rx = tx.clone();
        let pidfile = tempfile_dir().join("sleep.pid");
        let script = format!("sleep 300 & echo $! > {}; wait", pidfile.display());
        let m = message(&["sh", "-c", &script]);
        let ctx = context(rx);
        let task = tokio::spawn(async move { run(&m, &ctx, &ProcessSink::none()).await });
        let read_pid = || {
            std::fs::read_to_string(&pidfile)
                .ok()
                .filter(|t| t.ends_with('\n'))
                .and_then(|t| t.trim().parse::<i32>().ok())
        };
        crate::wait_until("the command to start", Duration::from_secs(10), || {
            read_pid().is_some()
        })
        .await;
        tx.cancel();
        let o = task.await.unwrap();
        assert_eq!(o.status, Status::Interrupted);
        let pid = read_pid().unwrap();
        assert!(gone(pid), "sleep {pid} outlived the shutdown");
    }

    /// The group of each command is reported as it starts, and it names the command.
    #[tokio::test]
    async fn reports_the_process_group_it_started() {
        let pidfile = tempfile_dir().join("sh.pid");
        let script = format!("echo $$ > {}", pidfile.display());
        let (tx, mut reported) = tokio::sync::mpsc::unbounded_channel();
        let o = run(
            &message(&["sh", "-c", &script]),
            &context(CancellationToken::new()),
            &ProcessSink::new(tx),
        )
        .await;
        assert_eq!(o.status, Status::Done);
        let group = reported.try_recv().expect("the group was reported");
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert_eq!(group.pgid, pid, "the command leads its own group");
        assert!(group.start_time > 0);
        assert_eq!(
            group.boot_id,
            std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
                .unwrap()
                .trim()
        );
        assert!(reported.try_recv().is_err(), "one group per run");
    }

    /// The child asks for SIGKILL at its parent's death: `/proc/PID/status` does not
    /// show it, but a child of a thread that ends does die.
    #[tokio::test]
    async fn the_command_dies_with_the_thread_that_forked_it() {
        let dir = tempfile_dir();
        let pidfile = dir.join("sleep.pid");
        let script = format!("echo $$ > {}; exec sleep 300", pidfile.display());
        let m = message(&["sh", "-c", &script]);
        // The test context has a spawner of its own, stopped below: its thread ends as a
        // crashed node's would.
        let ctx = context(CancellationToken::new());
        let state = ctx.state.clone();
        let task = tokio::spawn(async move { run(&m, &ctx, &ProcessSink::none()).await });
        crate::wait_until("the command to start", Duration::from_secs(10), || {
            std::fs::read_to_string(&pidfile).is_ok_and(|t| t.ends_with('\n'))
        })
        .await;
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        state.spawner.stop();
        let o = tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("the command ended when its forking thread did")
            .unwrap();
        assert_eq!(o.error.as_deref(), Some("killed by signal 9"));
        assert!(gone(pid));
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("bosun-cli-test-{}", bosun_proto::new_id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// Gone, or a zombie waiting for a reaper that is not us.
    fn gone(pid: i32) -> bool {
        for _ in 0..50 {
            match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
                Err(_) => return true,
                Ok(stat) => {
                    let state = stat
                        .rsplit(')')
                        .next()
                        .unwrap_or("")
                        .trim_start()
                        .chars()
                        .next();
                    if state == Some('Z') || state == Some('X') {
                        return true;
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }
}
