//! `tailFile`: follow a file like `tail -F` and stream its new lines until
//! `methodTimeout`.
//!
//! The follower starts at the file's current end, so only lines written after the start
//! are sent. It polls every 200 ms rather than using inotify: polling works the same on
//! every filesystem (NFS, overlay, bind mounts) and costs one `stat` per poll. Rotation is
//! followed: when the path names a different file (rename and recreate) or the file
//! shrinks below the read position (truncation), the rest of the old file is read and
//! the new one is read from its start. A path that vanishes during rotation is polled
//! until it comes back.
//!
//! The file must lie inside the node's file roots ([`crate::confine`]), at the start and
//! at every reopen after a rotation: a path that now leads outside is not followed.

use std::io::SeekFrom;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bosun_proto::{Message, Outcome, Status};
use tokio::fs::File;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::oneshot;

use crate::confine::{ConfineError, OpenedFile, os_words};
use crate::{ChunkSink, Confinement, Context, done, failed, now_millis};

/// How often the file is looked at.
const POLL: Duration = Duration::from_millis(200);
/// A partial line is sent without its newline once it grows this large, so one endless
/// line cannot hold memory or output back for ever.
const MAX_PENDING: usize = 64 * 1024;
/// How long the last read and send may take when the run ends.
const FINAL_SEND: Duration = Duration::from_secs(1);

/// Follow the file in `data[0]` and stream new lines until `methodTimeout`.
pub async fn run(message: &Message, context: &Context, chunks: &ChunkSink) -> Outcome {
    follow(message, context, chunks, None).await
}

/// Why a follow ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    /// The sink takes no more chunks.
    SinkClosed,
    /// `methodTimeout` elapsed: the normal end.
    Timeout,
    /// The node is shutting down.
    Shutdown,
}

/// The run itself. `ready` is told once the start position is fixed, so tests know
/// which writes count as new.
async fn follow(
    message: &Message,
    context: &Context,
    chunks: &ChunkSink,
    ready: Option<oneshot::Sender<()>>,
) -> Outcome {
    let started = now_millis();
    let Some(path) = message.data.first().filter(|p| !p.is_empty()) else {
        return failed(
            context,
            started,
            "no file given: `data` must be [\"<path>\"], the file to follow",
        );
    };
    let mut follower = match Follower::open_at_end(path, context.confine.clone()).await {
        Ok(f) => f,
        Err(e) => return failed(context, started, e.to_string()),
    };
    if let Some(ready) = ready {
        let _ = ready.send(());
    }

    let timeout = context.method_timeout(message);
    let mut sent: u64 = 0;
    let ended = {
        let looped = follower.follow_loop(chunks, &mut sent);
        tokio::select! {
            e = looped => e,
            _ = tokio::time::sleep(timeout) => Ended::Timeout,
            _ = context.shutdown.cancelled() => Ended::Shutdown,
        }
    };
    if ended != Ended::SinkClosed {
        // What was written before the end still counts: read it (a read cut short above
        // completes here), and send a last line that has no newline, since it is output
        // too. Bounded, so a stuck sink or a fast-growing file cannot hold the run open.
        let _ = tokio::time::timeout(FINAL_SEND, async {
            if follower.drain(chunks, &mut sent).await {
                follower.flush_partial(chunks, &mut sent).await;
            }
        })
        .await;
    }
    let mut outcome = if ended == Ended::Shutdown {
        Outcome {
            started_at: Some(started),
            ..Outcome::bare(
                Status::Interrupted,
                &context.node,
                "the node shut down while following the file",
                now_millis(),
            )
        }
    } else {
        // Reaching methodTimeout is how a follow normally ends; the lines went out as
        // chunks, so stdout stays empty.
        done(context, started, String::new())
    };
    outcome.chunks = Some(sent);
    outcome
}

/// Which file a path names: device and inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    fn of(meta: &std::fs::Metadata) -> FileId {
        FileId {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }
}

/// The open file, where reading stopped, and a partial line waiting for its newline.
struct Follower {
    /// The path as the message gave it, opened again after a rotation.
    given: String,
    /// The real path of the file opened first, looked at for rotation.
    path: PathBuf,
    confine: Arc<Confinement>,
    /// A reopen was refused (the path now leads outside the roots) and logged.
    refused: bool,
    file: File,
    id: FileId,
    offset: u64,
    pending: Vec<u8>,
    /// Read buffer, kept between polls.
    buf: Vec<u8>,
}

impl Follower {
    /// Open `given` inside the roots and place the read position at its current end.
    async fn open_at_end(given: &str, confine: Arc<Confinement>) -> Result<Follower, OpenError> {
        let opened = open_confined(given, &confine).await?;
        // Where a relative path leads (under the first root), as a path, not resolved:
        // a symlink that rotation moves on is followed to its new file.
        let path = confine.absolute(given).unwrap_or(opened.real);
        let mut file = File::from_std(opened.file);
        let meta = file.metadata().await.map_err(|source| OpenError::Io {
            given: given.to_string(),
            source,
        })?;
        let offset = file
            .seek(SeekFrom::End(0))
            .await
            .map_err(|source| OpenError::Io {
                given: given.to_string(),
                source,
            })?;
        Ok(Follower {
            given: given.to_string(),
            path,
            confine,
            refused: false,
            file,
            id: FileId::of(&meta),
            offset,
            pending: Vec::new(),
            buf: vec![0u8; MAX_PENDING],
        })
    }

    /// Poll until the sink closes; the caller ends it earlier at the timeout or shutdown.
    async fn follow_loop(&mut self, chunks: &ChunkSink, sent: &mut u64) -> Ended {
        loop {
            if !self.poll(chunks, sent).await {
                return Ended::SinkClosed;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// One look at the file: read what is new, then follow a rotation or truncation.
    /// False when the sink takes no more chunks.
    async fn poll(&mut self, chunks: &ChunkSink, sent: &mut u64) -> bool {
        if !self.drain(chunks, sent).await {
            return false;
        }
        let meta = match tokio::fs::metadata(&self.path).await {
            Ok(m) => m,
            // Gone (mid-rotation) or unreadable for a moment: keep the old file open and
            // look again at the next poll.
            Err(_) => return true,
        };
        if FileId::of(&meta) != self.id {
            // A new file at the path. Lines written to the old one after our last read
            // (the writer may not have reopened yet) come first.
            if !self.drain(chunks, sent).await {
                return false;
            }
            match open_confined(&self.given, &self.confine).await {
                Ok(opened) => {
                    if !self.flush_partial(chunks, sent).await {
                        return false;
                    }
                    // The file opened, which may differ from the one looked at above if
                    // the path changed again in between.
                    self.id = match opened.file.metadata() {
                        Ok(meta) => FileId::of(&meta),
                        Err(_) => FileId::of(&meta),
                    };
                    self.file = File::from_std(opened.file);
                    self.offset = 0;
                    self.refused = false;
                    return self.drain(chunks, sent).await;
                }
                Err(OpenError::Refused(e)) => {
                    if !self.refused {
                        tracing::warn!(path = %self.path.display(), error = %e,
                            "the rotated file is not followed: it is outside the file roots");
                        self.refused = true;
                    }
                    return true;
                }
                Err(e) => {
                    tracing::debug!(path = %self.path.display(), error = %e,
                        "rotated file not readable yet; polling");
                    return true;
                }
            }
        }
        if meta.len() < self.offset {
            // Truncated in place (copytruncate, `> file`): read again from the start.
            if !self.flush_partial(chunks, sent).await {
                return false;
            }
            match self.file.seek(SeekFrom::Start(0)).await {
                Ok(_) => self.offset = 0,
                Err(e) => {
                    tracing::debug!(path = %self.path.display(), error = %e,
                        "cannot rewind the truncated file; polling");
                    return true;
                }
            }
            return self.drain(chunks, sent).await;
        }
        true
    }

    /// Read the open file to its end, sending complete lines. False when the sink takes
    /// no more chunks.
    async fn drain(&mut self, chunks: &ChunkSink, sent: &mut u64) -> bool {
        loop {
            let n = match self.file.read(&mut self.buf).await {
                Ok(0) => return true,
                Ok(n) => n,
                Err(e) => {
                    tracing::debug!(path = %self.path.display(), error = %e,
                        "read failed; trying again at the next poll");
                    return true;
                }
            };
            self.offset += n as u64;
            self.pending.extend_from_slice(&self.buf[..n]);
            let cut = match self.pending.iter().rposition(|b| *b == b'\n') {
                Some(i) => i + 1,
                None if self.pending.len() >= MAX_PENDING => self.pending.len(),
                None => 0,
            };
            if cut > 0 {
                let text = String::from_utf8_lossy(&self.pending[..cut]).into_owned();
                self.pending.drain(..cut);
                if !chunks.send(text).await {
                    return false;
                }
                *sent += 1;
            }
        }
    }

    /// Send a partial last line without its newline: the file was rotated or truncated,
    /// so the newline will never come, or the run is ending. False when the sink takes
    /// no more chunks.
    async fn flush_partial(&mut self, chunks: &ChunkSink, sent: &mut u64) -> bool {
        if self.pending.is_empty() {
            return true;
        }
        let text = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        if !chunks.send(text).await {
            return false;
        }
        *sent += 1;
        true
    }
}

/// Why the file to follow could not be opened; the text is the outcome's error.
#[derive(Debug, thiserror::Error)]
enum OpenError {
    /// Outside the roots, not a file, or not there: the confinement's words.
    #[error(transparent)]
    Refused(#[from] ConfineError),
    /// Opened, but not usable.
    #[error("cannot open {given:?}: {}", os_words(source))]
    Io {
        /// The path as given.
        given: String,
        /// Why.
        source: std::io::Error,
    },
    /// The blocking open did not finish.
    #[error("opening {given:?} failed: {reason}")]
    Task {
        /// The path as given.
        given: String,
        /// The runtime's words.
        reason: String,
    },
}

/// Open `given` for reading inside the roots, off the async workers.
async fn open_confined(given: &str, confine: &Arc<Confinement>) -> Result<OpenedFile, OpenError> {
    let (confine, owned) = (confine.clone(), given.to_string());
    match tokio::task::spawn_blocking(move || confine.open_read(&owned)).await {
        Ok(opened) => Ok(opened?),
        Err(e) => Err(OpenError::Task {
            given: given.to_string(),
            reason: e.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::time::Instant;
    use tokio::sync::mpsc;
    use tokio_util::sync::CancellationToken;

    fn append(path: &Path, text: &str) {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
            .expect("open for append");
        f.write_all(text.as_bytes()).expect("append");
    }

    /// The file root of the test contexts: every scratch folder is made under it.
    fn root() -> PathBuf {
        std::env::temp_dir().join("bosun-tail-tests")
    }

    /// A node whose one file root is [`root`].
    fn context(shutdown: CancellationToken) -> Context {
        std::fs::create_dir_all(root()).unwrap();
        Context {
            confine: Arc::new(Confinement {
                file_roots: vec![root()],
                ..Default::default()
            }),
            ..crate::test_context("n1", shutdown)
        }
    }

    /// A scratch folder removed when the test ends: under the root, or outside it.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new() -> Scratch {
            let d = root().join(bosun_proto::new_id());
            std::fs::create_dir_all(&d).unwrap();
            Scratch(d)
        }

        /// A folder outside the test contexts' file root.
        fn outside() -> Scratch {
            let d =
                std::env::temp_dir().join(format!("bosun-tail-outside-{}", bosun_proto::new_id()));
            std::fs::create_dir_all(&d).unwrap();
            Scratch(d)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn message(path: &Path, timeout_secs: u64) -> Message {
        Message {
            method: "tailFile".into(),
            data: vec![path.display().to_string()],
            method_timeout: Some(timeout_secs),
            ..Default::default()
        }
    }

    /// A follow running in the background, started once its position is fixed.
    struct Running {
        task: tokio::task::JoinHandle<Outcome>,
        chunks: mpsc::Receiver<String>,
        shutdown: CancellationToken,
    }

    impl Running {
        async fn start(path: &Path, timeout_secs: u64) -> Running {
            let shutdown = CancellationToken::new();
            let rx = shutdown.clone();
            let (tx, chunks) = mpsc::channel(64);
            let (ready_tx, ready_rx) = oneshot::channel();
            let m = message(path, timeout_secs);
            let ctx = context(rx);
            let task =
                tokio::spawn(
                    async move { follow(&m, &ctx, &ChunkSink::new(tx), Some(ready_tx)).await },
                );
            ready_rx.await.expect("the follower opened the file");
            Running {
                task,
                chunks,
                shutdown,
            }
        }

        /// Collect chunks until their text is `want` long; a generous bound catches a
        /// follower that never sends.
        async fn text(&mut self, want: usize) -> String {
            let mut got = String::new();
            while got.len() < want {
                match tokio::time::timeout(Duration::from_secs(10), self.chunks.recv()).await {
                    Ok(Some(c)) => got.push_str(&c),
                    _ => break,
                }
            }
            got
        }

        async fn stop(self) -> Outcome {
            self.shutdown.cancel();
            self.task.await.unwrap()
        }
    }

    #[tokio::test]
    async fn new_lines_arrive_in_order_and_old_content_is_not_sent() {
        let dir = Scratch::new();
        let path = dir.0.join("app.log");
        append(&path, "old line 1\nold line 2\n");
        let mut r = Running::start(&path, 30).await;
        for i in 0..5 {
            let line = format!("new line {i}\n");
            append(&path, &line);
            assert_eq!(r.text(line.len()).await, line);
        }
        let o = r.stop().await;
        assert_eq!(o.status, Status::Interrupted);
    }

    #[tokio::test]
    async fn a_partial_line_waits_for_its_newline() {
        let dir = Scratch::new();
        let path = dir.0.join("app.log");
        append(&path, "");
        let mut r = Running::start(&path, 30).await;
        append(&path, "hel");
        // Let several polls pass with only the partial line on disk: it must not go out
        // alone in the meantime.
        tokio::time::sleep(Duration::from_millis(500)).await;
        append(&path, "lo\n");
        let first = tokio::time::timeout(Duration::from_secs(10), r.chunks.recv()).await;
        assert_eq!(
            first.unwrap().unwrap(),
            "hello\n",
            "the partial line went out alone"
        );
        r.stop().await;
    }

    #[tokio::test]
    async fn an_endless_line_is_flushed_when_it_gets_long() {
        let dir = Scratch::new();
        let path = dir.0.join("app.log");
        append(&path, "");
        let mut r = Running::start(&path, 30).await;
        let long = "x".repeat(MAX_PENDING + 1000);
        append(&path, &long);
        let first = r.text(1).await;
        assert!(
            first.len() >= MAX_PENDING && first.len() < long.len(),
            "a long piece went out without its newline: {} bytes",
            first.len()
        );
        // The rest still waits for its newline, and goes out when the run ends.
        r.shutdown.cancel();
        let o = r.task.await.unwrap();
        let mut rest = String::new();
        while let Ok(c) = r.chunks.try_recv() {
            rest.push_str(&c);
        }
        assert_eq!(
            (first.len(), rest.len(), o.chunks),
            (first.len(), long.len() - first.len(), Some(2))
        );
        assert!(rest.bytes().all(|b| b == b'x'));
    }

    #[tokio::test]
    async fn rotation_by_rename_and_recreate_continues() {
        let dir = Scratch::new();
        let path = dir.0.join("app.log");
        append(&path, "before\n");
        let mut r = Running::start(&path, 30).await;
        append(&path, "a\n");
        assert_eq!(r.text(2).await, "a\n");
        let rotated = dir.0.join("app.log.1");
        std::fs::rename(&path, &rotated).unwrap();
        // The writer still has the old file open for a moment.
        append(&rotated, "late in old\n");
        // The path stays missing for a few polls: the follower must wait for it rather
        // than give up.
        tokio::time::sleep(Duration::from_millis(600)).await;
        append(&path, "b in new\n");
        let want = "late in old\nb in new\n";
        assert_eq!(r.text(want.len()).await, want);
        append(&path, "c\n");
        assert_eq!(r.text(2).await, "c\n");
        r.stop().await;
    }

    #[tokio::test]
    async fn truncation_continues_from_the_start() {
        let dir = Scratch::new();
        let path = dir.0.join("app.log");
        append(&path, "some earlier content\n");
        let mut r = Running::start(&path, 30).await;
        append(&path, "a\n");
        assert_eq!(r.text(2).await, "a\n");
        std::fs::write(&path, "x\n").unwrap();
        assert_eq!(r.text(2).await, "x\n");
        append(&path, "y\n");
        assert_eq!(r.text(2).await, "y\n");
        r.stop().await;
    }

    #[tokio::test]
    async fn timeout_is_the_normal_end() {
        let dir = Scratch::new();
        let path = dir.0.join("quiet.log");
        append(&path, "nothing new\n");
        let rx = CancellationToken::new();
        let (chunk_tx, _chunk_rx) = mpsc::channel(4);
        let t = Instant::now();
        let o = run(&message(&path, 1), &context(rx), &ChunkSink::new(chunk_tx)).await;
        assert_eq!(o.status, Status::Done);
        assert_eq!(o.error, None);
        assert!(o.stdout.is_empty());
        assert_eq!(o.chunks, Some(0));
        assert!(t.elapsed() < Duration::from_secs(10));
    }

    #[tokio::test]
    async fn a_closed_sink_ends_the_run() {
        let dir = Scratch::new();
        let path = dir.0.join("app.log");
        append(&path, "");
        let rx = CancellationToken::new();
        let (ready_tx, ready_rx) = oneshot::channel();
        let writer = {
            let path = path.clone();
            tokio::spawn(async move {
                // Written once the follower has fixed its position, so the line is new.
                ready_rx.await.expect("the follower opened the file");
                append(&path, "line\n");
            })
        };
        let t = Instant::now();
        let o = follow(
            &message(&path, 30),
            &context(rx),
            &ChunkSink::none(),
            Some(ready_tx),
        )
        .await;
        writer.await.unwrap();
        assert_eq!(o.status, Status::Done);
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "ended before the 30 s methodTimeout"
        );
    }

    #[tokio::test]
    async fn missing_file_fails_clearly() {
        let dir = Scratch::new();
        let path = dir.0.join("nope.log");
        let rx = CancellationToken::new();
        let o = run(&message(&path, 1), &context(rx), &ChunkSink::none()).await;
        assert_eq!(o.status, Status::Failed);
        let error = o.error.unwrap();
        assert_eq!(
            error,
            format!(
                "cannot open {:?}: No such file or directory",
                path.display().to_string()
            )
        );
    }

    #[tokio::test]
    async fn empty_data_explains_the_argv() {
        let rx = CancellationToken::new();
        let m = Message {
            method: "tailFile".into(),
            ..Default::default()
        };
        let o = run(&m, &context(rx), &ChunkSink::none()).await;
        assert_eq!(o.status, Status::Failed);
        assert!(o.error.unwrap().contains("[\"<path>\"]"));
    }

    #[tokio::test]
    async fn files_outside_the_roots_are_not_followed() {
        let dir = Scratch::new();
        let out = Scratch::outside();
        let secret = out.0.join("secret.log");
        append(&secret, "secret\n");
        std::os::unix::fs::symlink(&secret, dir.0.join("link.log")).unwrap();
        for (path, want) in [
            (secret.clone(), "is outside this node's file roots"),
            (dir.0.join("link.log"), "resolves to"),
            (dir.0.join("../x.log"), "contains `..`"),
        ] {
            let o = run(
                &message(&path, 1),
                &context(CancellationToken::new()),
                &ChunkSink::none(),
            )
            .await;
            assert_eq!(o.status, Status::Failed, "{}", path.display());
            let e = o.error.unwrap();
            assert!(e.contains(want) && e.contains("see file_roots"), "{e}");
        }
    }

    #[tokio::test]
    async fn a_rotation_to_a_symlink_out_of_the_roots_is_not_followed() {
        let dir = Scratch::new();
        let out = Scratch::outside();
        let secret = out.0.join("secret.log");
        append(&secret, "");
        let path = dir.0.join("app.log");
        append(&path, "");
        let given = path.display().to_string();
        let ctx = context(CancellationToken::new());
        let mut follower = Follower::open_at_end(&given, ctx.confine.clone())
            .await
            .unwrap();
        let (tx, mut chunks) = mpsc::channel(8);
        let sink = ChunkSink::new(tx);
        let mut sent = 0;
        // Rotated, and the path now leads out of the roots.
        std::fs::rename(&path, dir.0.join("app.log.1")).unwrap();
        std::os::unix::fs::symlink(&secret, &path).unwrap();
        append(&secret, "secret\n");
        assert!(follower.poll(&sink, &mut sent).await);
        assert!(follower.refused, "the reopen was refused");
        assert!(chunks.try_recv().is_err(), "nothing read from outside");
        assert_eq!(sent, 0);
        // A real file at the path again: followed.
        std::fs::remove_file(&path).unwrap();
        append(&path, "back\n");
        assert!(follower.poll(&sink, &mut sent).await);
        assert_eq!(chunks.try_recv().unwrap(), "back\n");
        assert!(!follower.refused);
    }
}
