//! Reply sinks at the node that receives replies: `result` (the default: kept in the
//! store, and written to a file when the message named `directory`/`fileName`),
//! `toFile`, `toFileAppend` and `toConsole`.
//!
//! Files go under `<results dir>/<directory>/<fromNode>/<fileName>`, steward's layout. A `directory` given
//! as an absolute path is taken relative to the results dir; a path with `..` is refused.
//! Streamed chunks are written in chunk order: a chunk that arrives early waits in the
//! store until the ones before it are in.
//!
//! # Exactly once, across crashes
//! The commit that absorbs a reply also records its sink work (`sink_due`), so a crash
//! before the sink has written leaves the work for [`Sinks::recover`] at start-up. The
//! sink position (`sink_next`) guards every write: a chunk below it is never written
//! again. An append is recorded durably before the file is touched (its offset and its
//! length once complete), the file is fsynced, and only then is the new position
//! committed; after a crash in between, a complete append moves the position on and an
//! incomplete one is cut back and written again. `toFile` and `result` files are
//! written whole to a temporary file, fsynced and renamed into place. Console output
//! is not durable: after a crash it may print a chunk again.

use std::io::Write;
use std::path::{Component, Path, PathBuf};

use bosun_proto::{Message, Method, Status};

use bosun_store::{SINK_COMPLETE, SinkWrite, Store, StoreError};

/// Why a reply cannot be written where it asks: the path would leave the results folder.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TargetError {
    /// A `directory` with `..` (or a drive prefix).
    #[error("directory {0:?} leaves the results folder; `..` is not allowed")]
    Directory(String),
    /// A `fileName` that is a path rather than a name.
    #[error("fileName {0:?} must be a plain file name")]
    FileName(String),
}

/// The file a reply is written to, or why not. `None` when nothing asks for a file.
pub(crate) fn target(
    results: &Path,
    reply: &Message,
    method: Method,
) -> Result<Option<PathBuf>, TargetError> {
    let wants_file = matches!(method, Method::ToFile | Method::ToFileAppend)
        || (method == Method::Result && (reply.directory.is_some() || reply.file_name.is_some()));
    if !wants_file {
        return Ok(None);
    }
    let from = reply.from_node.as_deref().unwrap_or("unknown");
    // steward's layout: <data folder>/<directory>/<fromNode>/<fileName>.
    let mut path = results.to_path_buf();
    if let Some(dir) = reply.directory.as_deref() {
        for part in Path::new(dir).components() {
            match part {
                Component::Normal(p) => path.push(p),
                Component::RootDir | Component::CurDir => {}
                Component::ParentDir | Component::Prefix(_) => {
                    return Err(TargetError::Directory(dir.to_string()));
                }
            }
        }
    }
    let name = reply
        .file_name
        .as_deref()
        .filter(|n| !n.is_empty())
        .unwrap_or("results.log");
    if name.contains('/') || name == ".." || name == "." {
        return Err(TargetError::FileName(name.to_string()));
    }
    path.push(from);
    path.push(name);
    Ok(Some(path))
}

/// Why a sink could not write a reply.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SinkError {
    /// The sink position or work could not be read or recorded.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The file could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SinkError + '_ {
    move |source| SinkError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// The text a final result contributes: its stdout, and why it failed when it did.
fn result_text(reply: &Message) -> String {
    let Some(outcome) = &reply.result else {
        return String::new();
    };
    let mut text = outcome.stdout.clone();
    if outcome.status != Status::Done
        && let Some(e) = &outcome.error
    {
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&format!("bosun: {:?}: {e}\n", outcome.status).to_lowercase());
    }
    text
}

/// Make a file's folder, with every folder it creates durable in its parent.
fn create_parent(path: &Path) -> Result<(), SinkError> {
    let Some(parent) = path.parent() else {
        return Ok(());
    };
    let mut missing = Vec::new();
    let mut dir = parent;
    while !dir.exists() {
        missing.push(dir);
        match dir.parent() {
            Some(up) => dir = up,
            None => break,
        }
    }
    std::fs::create_dir_all(parent).map_err(io(parent))?;
    for created in missing.iter().rev() {
        if let Some(up) = created.parent() {
            sync_dir(up)?;
        }
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<(), SinkError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))
}

/// The length of a file, 0 when it does not exist.
fn file_len(path: &Path) -> Result<u64, SinkError> {
    match std::fs::metadata(path) {
        Ok(m) => Ok(m.len()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(io(path)(e)),
    }
}

/// Append and fsync (and the folder entry, for a new file).
fn append_durably(path: &Path, text: &str) -> Result<(), SinkError> {
    create_parent(path)?;
    let existed = path.exists();
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io(path))?;
    file.write_all(text.as_bytes()).map_err(io(path))?;
    file.sync_data().map_err(io(path))?;
    if !existed && let Some(parent) = path.parent() {
        sync_dir(parent)?;
    }
    Ok(())
}

/// Replace a file's content at once: a temporary file beside it, fsynced, renamed.
fn replace_durably(path: &Path, text: &str) -> Result<(), SinkError> {
    create_parent(path)?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("results");
    let temporary = path.with_file_name(format!(".{name}.bosun-partial"));
    let mut file = std::fs::File::create(&temporary).map_err(io(&temporary))?;
    file.write_all(text.as_bytes()).map_err(io(&temporary))?;
    file.sync_all().map_err(io(&temporary))?;
    std::fs::rename(&temporary, path).map_err(io(path))?;
    if let Some(parent) = path.parent() {
        sync_dir(parent)?;
    }
    Ok(())
}

/// Cut a file back to `len` (the part of an interrupted append that did land goes).
fn truncate(path: &Path, len: u64) -> Result<(), SinkError> {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io(path))?;
    file.set_len(len).map_err(io(path))?;
    file.sync_data().map_err(io(path))
}

/// Writes replies to their sinks at the node that receives them.
pub(crate) struct Sinks {
    /// `<results dir>`: no file is written outside it.
    results: PathBuf,
    store: Store,
    /// One sink write at a time: chunks stay in order, and at most one file write is in
    /// progress, the one a crash may leave half done.
    one_at_a_time: tokio::sync::Mutex<()>,
}

impl Sinks {
    /// Sinks writing under `results`, with their positions and work in `store`.
    pub fn new(results: PathBuf, store: Store) -> Sinks {
        Sinks {
            results,
            store,
            one_at_a_time: Default::default(),
        }
    }

    /// Write a reply, already absorbed into the store, where its method says: what of it
    /// the sink has not written yet. Writing the same reply again writes nothing twice.
    /// Failures are logged; the sink work stays recorded, and the next start-up tries
    /// again.
    pub async fn deliver(&self, reply: &Message, method: Method) {
        let Some(answered) = reply.previous_message.as_deref() else {
            return;
        };
        let _one = self.one_at_a_time.lock().await;
        if let Err(e) = self.write(answered, reply, method).await {
            tracing::warn!(id = answered, error = %e, "reply not written to its sink");
        }
    }

    /// Finish the sink work a crash left: every reply absorbed but not (completely)
    /// written. Call before replies arrive.
    pub async fn recover(&self) -> Result<(), SinkError> {
        for (answered, due) in self.store.sinks_due()? {
            let reply = self
                .store
                .inbox(&due.reply)?
                .map(|r| r.message)
                .filter(|m| m.previous_message.as_deref() == Some(answered.as_str()));
            let method = reply.as_ref().and_then(|m| m.parsed_method().ok());
            match (reply, method) {
                (Some(reply), Some(method)) => {
                    tracing::info!(id = answered, "finishing a reply sink left by a stop");
                    self.deliver(&reply, method).await;
                }
                _ => {
                    tracing::warn!(id = answered, "sink work left for a reply that is gone");
                    self.store.sink_done(&answered, SINK_COMPLETE).await?;
                }
            }
        }
        Ok(())
    }

    async fn write(
        &self,
        answered: &str,
        reply: &Message,
        method: Method,
    ) -> Result<(), SinkError> {
        let mut next = self.store.sink_next(answered)?;
        if next == SINK_COMPLETE {
            // Arrived again after the result was written: nothing more to write.
            return Ok(self.store.sink_done(answered, SINK_COMPLETE).await?);
        }
        let target = match target(&self.results, reply, method) {
            Ok(t) => t,
            Err(reason) => {
                tracing::warn!(id = answered, %reason, "reply not written");
                return Ok(self.store.sink_done(answered, SINK_COMPLETE).await?);
            }
        };
        if target.is_none() && method != Method::ToConsole {
            return Ok(());
        }
        if let Some(write) = self.store.sink_due(answered)?.and_then(|d| d.write) {
            next = self.settle(answered, &write, next).await?;
            if next == SINK_COMPLETE {
                return Ok(());
            }
        }
        let is_final = reply.result.is_some();
        let mut text = String::new();
        let mut upto = next;
        for (n, chunk) in self.store.chunks_from(answered, next)? {
            if n != upto {
                break;
            }
            text.push_str(&chunk);
            upto += 1;
        }
        if is_final {
            text.push_str(&result_text(reply));
            upto = SINK_COMPLETE;
        }
        // Streams are appended as they come, also for the default `result` sink: a tail
        // shows up centrally while it runs.
        let streamed = reply.chunk.is_some()
            || reply
                .result
                .as_ref()
                .is_some_and(|o| o.chunks.unwrap_or(0) > 0);
        let append = method == Method::ToFileAppend || (method == Method::Result && streamed);
        match (method, target) {
            (Method::ToConsole, _) => {
                let from = reply.from_node.as_deref().unwrap_or("?");
                for line in text.lines() {
                    println!("[{from}] {line}");
                }
            }
            (_, Some(path)) if append && !text.is_empty() => {
                let offset = file_len(&path)?;
                let write = SinkWrite {
                    path: path.display().to_string(),
                    offset,
                    len_after: offset + text.len() as u64,
                    next: upto,
                };
                self.store.sink_begin(answered, write).await?;
                append_durably(&path, &text)?;
            }
            (_, Some(path)) if is_final && !append => {
                // toFile and result: the whole output, written once the result is in.
                let mut whole: String = self
                    .store
                    .chunks(answered)?
                    .into_iter()
                    .map(|(_, c)| c)
                    .collect();
                whole.push_str(&result_text(reply));
                replace_durably(&path, &whole)?;
            }
            // toFile chunks: written whole with the result.
            (Method::ToFile | Method::Result, _) if !append => return Ok(()),
            _ => {}
        }
        Ok(self.store.sink_done(answered, upto).await?)
    }

    /// An append a crash interrupted: if the file has it whole, move the position on;
    /// otherwise cut off the part that landed, so it is written again once. Returns the
    /// position to write from.
    async fn settle(&self, answered: &str, write: &SinkWrite, next: u64) -> Result<u64, SinkError> {
        let path = Path::new(&write.path);
        let len = file_len(path)?;
        if len == write.len_after {
            self.store.sink_done(answered, write.next).await?;
            return Ok(write.next);
        }
        if len > write.offset {
            tracing::info!(path = %path.display(), "cutting back a sink append a stop interrupted");
            truncate(path, write.offset)?;
        }
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(method: &str, dir: Option<&str>, file: Option<&str>) -> Message {
        Message {
            from_node: Some("ship1".into()),
            method: method.into(),
            directory: dir.map(str::to_string),
            file_name: file.map(str::to_string),
            ..Default::default()
        }
    }

    /// A node's store and sinks on real files, and the message whose replies it sinks.
    struct Receiving {
        dir: tempfile::TempDir,
        store: Store,
        answered: String,
    }

    impl Receiving {
        async fn new() -> Receiving {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open(&dir.path().join("node.redb")).unwrap();
            let request = Message {
                id: Some(bosun_proto::new_id()),
                to_node: Some("ship1".into()),
                from_node: Some("me".into()),
                method: "cliCommandCont".into(),
                ..Default::default()
            };
            store.submit(vec![request.clone()], 1).await.unwrap();
            Receiving {
                dir,
                store,
                answered: request.id().to_string(),
            }
        }

        /// Sinks as a (re)started node has them.
        fn sinks(&self) -> Sinks {
            Sinks::new(self.dir.path().join("results"), self.store.clone())
        }

        fn file(&self) -> PathBuf {
            self.dir.path().join("results/out/ship1/a.log")
        }

        fn text(&self) -> String {
            std::fs::read_to_string(self.file()).unwrap_or_default()
        }

        /// Chunk `n` (or the final result, for `None`) of the stream, absorbed.
        async fn arrives(&self, n: Option<u64>) -> Message {
            let mut reply = reply("toFileAppend", Some("out"), Some("a.log"));
            reply.id = Some(bosun_proto::new_id());
            reply.previous_message = Some(self.answered.clone());
            match n {
                Some(n) => {
                    reply.chunk = Some(n);
                    reply.data = vec![format!("line {n}\n")];
                }
                None => {
                    let mut outcome = bosun_proto::Outcome::bare(Status::Done, "ship1", "", 9);
                    outcome.error = None;
                    outcome.stdout = "end\n".into();
                    outcome.chunks = Some(3);
                    reply.result = Some(outcome);
                }
            }
            self.store.absorb(reply.clone(), 5, None).await.unwrap();
            reply
        }
    }

    #[tokio::test]
    async fn a_chunk_or_result_delivered_again_is_not_appended_again() {
        let node = Receiving::new().await;
        let sinks = node.sinks();
        let one = node.arrives(Some(1)).await;
        sinks.deliver(&one, Method::ToFileAppend).await;
        // Chunk 3 before chunk 2: it waits for 2.
        let three = node.arrives(Some(3)).await;
        sinks.deliver(&three, Method::ToFileAppend).await;
        assert_eq!(node.text(), "line 1\n");
        let two = node.arrives(Some(2)).await;
        sinks.deliver(&two, Method::ToFileAppend).await;
        assert_eq!(node.text(), "line 1\nline 2\nline 3\n");
        for again in [&one, &two, &three] {
            sinks.deliver(again, Method::ToFileAppend).await;
        }
        assert_eq!(node.text(), "line 1\nline 2\nline 3\n");
        let last = node.arrives(None).await;
        sinks.deliver(&last, Method::ToFileAppend).await;
        let whole = "line 1\nline 2\nline 3\nend\n";
        assert_eq!(node.text(), whole);
        // The same replies again, also after a restart: nothing more is written.
        let restarted = node.sinks();
        for again in [&last, &two] {
            sinks.deliver(again, Method::ToFileAppend).await;
            restarted.deliver(again, Method::ToFileAppend).await;
        }
        restarted.recover().await.unwrap();
        assert_eq!(node.text(), whole);
        assert!(node.store.sinks_due().unwrap().is_empty(), "no work left");
    }

    #[tokio::test]
    async fn a_restart_finishes_the_sink_work_a_crash_left() {
        let node = Receiving::new().await;
        // Absorbed, then the node stopped before its sink wrote it.
        node.arrives(Some(1)).await;
        node.sinks().recover().await.unwrap();
        assert_eq!(node.text(), "line 1\n");

        // Stopped halfway through an append: the part that landed is cut off and the
        // chunk written once.
        node.arrives(Some(2)).await;
        let offset = node.text().len() as u64;
        let write = SinkWrite {
            path: node.file().display().to_string(),
            offset,
            len_after: offset + "line 2\n".len() as u64,
            next: 3,
        };
        node.store
            .sink_begin(&node.answered, write.clone())
            .await
            .unwrap();
        append_durably(&node.file(), "lin").unwrap();
        node.sinks().recover().await.unwrap();
        assert_eq!(node.text(), "line 1\nline 2\n");

        // Stopped after the append was complete, before the position moved on: it is
        // not written again.
        let last = node.arrives(None).await;
        let offset = node.text().len() as u64;
        let write = SinkWrite {
            path: node.file().display().to_string(),
            offset,
            len_after: offset + "end\n".len() as u64,
            next: SINK_COMPLETE,
        };
        node.store.sink_begin(&node.answered, write).await.unwrap();
        append_durably(&node.file(), "end\n").unwrap();
        let restarted = node.sinks();
        restarted.recover().await.unwrap();
        restarted.deliver(&last, Method::ToFileAppend).await;
        assert_eq!(node.text(), "line 1\nline 2\nend\n");
        assert_eq!(node.store.sink_next(&node.answered).unwrap(), SINK_COMPLETE);
        assert!(node.store.sinks_due().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_to_file_result_replaces_the_file_whole_and_once() {
        let node = Receiving::new().await;
        let sinks = node.sinks();
        let one = node.arrives(Some(1)).await;
        sinks.deliver(&one, Method::ToFile).await;
        assert!(!node.file().exists(), "toFile writes when the result is in");
        let mut last = node.arrives(None).await;
        last.method = "toFile".into();
        sinks.deliver(&last, Method::ToFile).await;
        assert_eq!(node.text(), "line 1\nend\n");
        std::fs::write(node.file(), "edited by hand\n").unwrap();
        sinks.deliver(&last, Method::ToFile).await;
        assert_eq!(node.text(), "edited by hand\n", "a result is written once");
        let leftovers: Vec<_> = std::fs::read_dir(node.file().parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers.len(), 1, "no temporary file left: {leftovers:?}");
    }

    #[test]
    fn files_land_under_results_directory_from_node() {
        let root = Path::new("/r");
        let t = target(
            root,
            &reply("toFile", Some("cli/out"), Some("a.log")),
            Method::ToFile,
        )
        .unwrap();
        assert_eq!(t.unwrap(), Path::new("/r/cli/out/ship1/a.log"));
        let t = target(
            root,
            &reply("toFile", Some("/var/steward/x"), Some("a.log")),
            Method::ToFile,
        )
        .unwrap();
        assert_eq!(
            t.unwrap(),
            Path::new("/r/var/steward/x/ship1/a.log"),
            "absolute stays inside"
        );
        assert!(
            target(root, &reply("result", None, None), Method::Result)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn escaping_paths_are_refused() {
        let root = Path::new("/r");
        assert_eq!(
            target(
                root,
                &reply("toFile", Some("../../etc"), Some("x")),
                Method::ToFile
            ),
            Err(TargetError::Directory("../../etc".into()))
        );
        assert_eq!(
            target(
                root,
                &reply("toFile", Some("a"), Some("../x")),
                Method::ToFile
            ),
            Err(TargetError::FileName("../x".into()))
        );
        let refused = target(
            root,
            &reply("toFile", Some("a"), Some("..")),
            Method::ToFile,
        )
        .unwrap_err();
        assert_eq!(
            refused.to_string(),
            r#"fileName ".." must be a plain file name"#
        );
    }
}
