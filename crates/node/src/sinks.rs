//! Reply sinks at the node that receives replies: `result` (the default: kept in the
//! store, and written to a file when the message named `directory`/`fileName`),
//! `toFile`, `toFileAppend` and `toConsole`.
//!
//! Files go under `<results dir>/<fromNode>/<directory>/<fileName>`. A `directory` given
//! as an absolute path is taken relative to the results dir; a path with `..` is refused.
//! Streamed chunks are written in chunk order: a chunk that arrives early waits in the
//! store until the ones before it are in.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Component, Path, PathBuf};

use bosun_proto::{Message, Method, Status};

use bosun_store::Store;

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
    let mut path = results.join(from);
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
    path.push(name);
    Ok(Some(path))
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

fn write(path: &Path, text: &str, append: bool) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(path)?;
    file.write_all(text.as_bytes())
}

/// Writes replies to their sinks at the node that receives them.
pub(crate) struct Sinks {
    /// `<results dir>`: no file is written outside it.
    results: PathBuf,
    store: Store,
    /// Per replied-to message: the next chunk number its sink will write. One writer at
    /// a time keeps chunks in order.
    progress: tokio::sync::Mutex<HashMap<String, u64>>,
}

impl Sinks {
    /// Sinks writing under `results`, reading chunks from `store`.
    pub fn new(results: PathBuf, store: Store) -> Sinks {
        Sinks {
            results,
            store,
            progress: Default::default(),
        }
    }

    /// Write a reply where its method says. Failures are logged and reported to the error
    /// log; the reply itself is already stored.
    pub async fn deliver(&self, reply: &Message, method: Method) {
        let Some(answered) = reply.previous_message.as_deref() else {
            return;
        };
        let target = match target(&self.results, reply, method) {
            Ok(t) => t,
            Err(reason) => {
                tracing::warn!(id = answered, %reason, "reply not written");
                return;
            }
        };
        if target.is_none() && method != Method::ToConsole {
            return;
        }
        // One writer at a time keeps chunks in order.
        let mut progress = self.progress.lock().await;
        let next = match progress.get(answered) {
            Some(n) => *n,
            // After a restart the position comes from the store, so chunks already written
            // are not written again.
            None => self.store.sink_next(answered).unwrap_or(1),
        };
        let mut text = String::new();
        let mut written_to = next;
        match self.store.chunks_from(answered, next) {
            Ok(chunks) => {
                for (n, chunk) in chunks {
                    if n != written_to {
                        break;
                    }
                    text.push_str(&chunk);
                    written_to += 1;
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot read chunks"),
        }
        let is_final = reply.result.is_some();
        if is_final {
            text.push_str(&result_text(reply));
            progress.remove(answered);
            self.store.set_sink_next(answered, None);
        } else if written_to != next {
            progress.insert(answered.to_string(), written_to);
            self.store.set_sink_next(answered, Some(written_to));
        }
        // The lock is held until the text is written, so writes keep chunk order.
        if text.is_empty() {
            return;
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
            (_, Some(path)) if append => {
                if let Err(e) = write(&path, &text, true) {
                    tracing::warn!(path = %path.display(), error = %e, "cannot append the reply");
                }
            }
            (_, Some(path)) if is_final => {
                // toFile and result: the whole output, written once the result is in.
                let mut whole: String = self
                    .store
                    .chunks(answered)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(_, c)| c)
                    .collect();
                whole.push_str(&result_text(reply));
                if let Err(e) = write(&path, &whole, false) {
                    tracing::warn!(path = %path.display(), error = %e, "cannot write the reply");
                }
            }
            _ => {}
        }
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

    #[test]
    fn files_land_under_results_from_node_directory() {
        let root = Path::new("/r");
        let t = target(
            root,
            &reply("toFile", Some("cli/out"), Some("a.log")),
            Method::ToFile,
        )
        .unwrap();
        assert_eq!(t.unwrap(), Path::new("/r/ship1/cli/out/a.log"));
        let t = target(
            root,
            &reply("toFile", Some("/var/steward/x"), Some("a.log")),
            Method::ToFile,
        )
        .unwrap();
        assert_eq!(
            t.unwrap(),
            Path::new("/r/ship1/var/steward/x/a.log"),
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
