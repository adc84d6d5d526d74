//! More ways in for steward-style message files: YAML as well as JSON, steward's TCP
//! listener, its read folder and its startup folder.
//!
//! Every input ends in [`Node::submit`], so validation, size limits and the answer are
//! the same whichever way a message came in. The local socket ([`crate::control`])
//! reads its input with the same reader as the TCP listener.
//!
//! The TCP listener has no token: who may use it is decided by [`crate::peer`] (the
//! node's own user or root on this host; remote peers only with `tcp_allow_remote`).
//! Idle connections hold no reading slot: a connection must send its first byte within
//! [`FIRST_BYTE_TIMEOUT`] and its whole input within [`READ_TIMEOUT`], and only then
//! takes one of [`MAX_TCP_READERS`] slots, so held-open connections cannot keep a
//! request out. Large inputs are parsed off the async workers.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bosun_proto::{Message, MessageParseError};
use serde::Deserialize;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::control::ControlResponse;
use bosun_node::Node;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long a client may take to send its whole input.
pub(crate) const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// How often the read folder is listed.
const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// How long a TCP connection may stay silent before its first byte.
pub(crate) const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(10);

/// TCP connections open at once on one port; one beyond them is refused with a line.
const MAX_TCP_CONNECTIONS: usize = 1024;

/// TCP connections open at once from one address.
const MAX_PEER_CONNECTIONS: usize = 256;

/// TCP inputs read at once. Each may buffer up to the input limit, so this bounds
/// memory; a slot is taken at the first byte, so idle connections hold none.
const MAX_TCP_READERS: usize = 64;

/// Inputs at least this large are parsed on a blocking thread, not an async worker.
const PARSE_OFF_WORKERS: usize = 64 * 1024;

/// File name endings the read and startup folders leave alone: our own failure marks and
/// the usual names of files still being written.
const SKIPPED_SUFFIXES: [&str; 4] = [".failed", ".error", ".tmp", ".part"];

/// Why steward input could not be read as messages: the field and position at fault,
/// in words for the sender.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// JSON that is not a message or an array of messages.
    #[error(transparent)]
    Json(#[from] MessageParseError),
    /// Neither JSON nor well-formed YAML.
    #[error("not JSON, and malformed YAML: {0}")]
    Yaml(serde_yaml_ng::Error),
    /// A YAML list whose items are not all messages.
    #[error("{}malformed message list: {error}", document_prefix(*document))]
    YamlList {
        /// The YAML document at fault, from 0, when the input has several.
        document: Option<usize>,
        /// What is wrong, and where.
        error: serde_yaml_ng::Error,
    },
    /// A YAML mapping that is not a message.
    #[error("{}malformed message: {error}", document_prefix(*document))]
    YamlMessage {
        /// The YAML document at fault, from 0, when the input has several.
        document: Option<usize>,
        /// What is wrong, and where.
        error: serde_yaml_ng::Error,
    },
    /// A YAML document that is a scalar rather than a list or a mapping.
    #[error(
        "{}found {found}; give a JSON array of messages, a YAML list of messages, or one message",
        document_prefix(*document)
    )]
    NotMessages {
        /// The YAML document at fault, from 0, when the input has several.
        document: Option<usize>,
        /// What was found instead, e.g. `a string`.
        found: &'static str,
    },
    /// Nothing but blanks, comments or empty lists.
    #[error("no messages in the input: give a list of messages or one message")]
    Empty,
}

/// How an error names the YAML document at fault: only when there are several.
fn document_prefix(document: Option<usize>) -> String {
    document
        .map(|index| format!("YAML document {index}: "))
        .unwrap_or_default()
}

/// Parse steward input: JSON (an array of messages or one message object), or YAML (a
/// sequence of message mappings or one mapping) when the first non-blank character is
/// not `[` or `{`. Field names are the same in both. Never returns an empty list.
pub fn parse_messages(text: &str) -> Result<Vec<Message>, ParseError> {
    // Editors on some systems start files with a byte-order mark; it is not content.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let messages = match text.trim_start().chars().next() {
        Some('[' | '{') => Message::parse_batch(text)?,
        _ => parse_yaml(text)?,
    };
    if messages.is_empty() {
        return Err(ParseError::Empty);
    }
    Ok(messages)
}

/// What a YAML document holds, learnt in a first pass so that the second pass can
/// deserialize straight from the text and keep line numbers in its errors.
enum DocKind {
    List,
    One,
    Empty,
    Other(&'static str),
}

fn parse_yaml(text: &str) -> Result<Vec<Message>, ParseError> {
    let mut kinds = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(text) {
        let value = serde_yaml_ng::Value::deserialize(doc).map_err(ParseError::Yaml)?;
        kinds.push(match value {
            serde_yaml_ng::Value::Sequence(_) => DocKind::List,
            serde_yaml_ng::Value::Mapping(_) => DocKind::One,
            serde_yaml_ng::Value::Null => DocKind::Empty,
            serde_yaml_ng::Value::Bool(_) => DocKind::Other("a boolean"),
            serde_yaml_ng::Value::Number(_) => DocKind::Other("a number"),
            serde_yaml_ng::Value::String(_) => DocKind::Other("a string"),
            serde_yaml_ng::Value::Tagged(_) => DocKind::Other("a tagged value"),
        });
    }
    let several = kinds.len() > 1;
    let mut messages = Vec::new();
    for (index, (doc, kind)) in serde_yaml_ng::Deserializer::from_str(text)
        .zip(kinds)
        .enumerate()
    {
        let document = several.then_some(index);
        match kind {
            DocKind::List => messages.extend(
                Vec::<Message>::deserialize(doc)
                    .map_err(|error| ParseError::YamlList { document, error })?,
            ),
            DocKind::One => messages.push(
                Message::deserialize(doc)
                    .map_err(|error| ParseError::YamlMessage { document, error })?,
            ),
            DocKind::Empty => {}
            DocKind::Other(found) => return Err(ParseError::NotMessages { document, found }),
        }
    }
    Ok(messages)
}

/// Messages from a JSON value already read: an array of messages or one message object.
#[doc(hidden)]
pub fn messages_from_json(value: Value) -> Result<Vec<Message>, MessageParseError> {
    let values = match value {
        Value::Array(a) => a,
        other => vec![other],
    };
    Message::from_json_values(values)
}

/// One input read from a stream.
#[doc(hidden)]
#[derive(Debug, PartialEq)]
pub enum Input {
    /// One complete JSON value (the input began with `[` or `{`).
    Json(Value),
    /// Everything up to end of input, which did not begin like JSON: YAML, or garbage.
    Yaml(String),
}

/// Knows, from the bytes seen so far, when a JSON array or object has closed, so the
/// input is parsed when it can be complete instead of once per chunk (which would cost
/// time quadratic in the input size).
#[derive(Default)]
struct JsonEnd {
    depth: usize,
    in_string: bool,
    escaped: bool,
    opened: bool,
    closed: bool,
}

impl JsonEnd {
    fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if self.closed {
                return;
            }
            if self.in_string {
                if self.escaped {
                    self.escaped = false;
                } else if b == b'\\' {
                    self.escaped = true;
                } else if b == b'"' {
                    self.in_string = false;
                }
                continue;
            }
            match b {
                b'"' => self.in_string = true,
                b'[' | b'{' => {
                    self.depth += 1;
                    self.opened = true;
                }
                b']' | b'}' => {
                    self.depth = self.depth.saturating_sub(1);
                    self.closed = self.opened && self.depth == 0;
                }
                _ => {}
            }
        }
    }
}

/// Why no input could be read from a stream.
#[doc(hidden)]
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The stream failed.
    #[error("read failed: {0}")]
    Read(std::io::Error),
    /// More than the limit before the input ended.
    #[error(
        "input is larger than the limit of {limit} bytes; split the messages over several inputs"
    )]
    TooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// The stream ended before anything but blanks.
    #[error("no input: send a JSON array of messages, or YAML and then end the input")]
    Nothing,
    /// Input that did not begin like JSON and is not text.
    #[error("input is neither JSON nor UTF-8 text")]
    NotText,
    /// JSON cut short by the end of the stream.
    #[error("incomplete JSON: {0}")]
    IncompleteJson(serde_json::Error),
    /// JSON that does not parse.
    #[error("malformed JSON: {0}")]
    MalformedJson(serde_json::Error),
    /// JSON input with no value in it.
    #[error("no input: send a JSON array of messages")]
    NoJson,
}

/// How long a text (YAML) input may pause after a complete line before it is taken as
/// complete.
const TEXT_IDLE_END: std::time::Duration = std::time::Duration::from_millis(300);

/// Read one input: a whole JSON value when the input begins with `[` or `{` (the client
/// need not close its side), else everything up to end of input. At most `limit` bytes.
/// Public only for the fuzz targets (`crates/fuzz-targets`).
#[doc(hidden)]
pub async fn read_message_input<R: AsyncRead + Unpin>(
    stream: &mut R,
    limit: usize,
) -> Result<Input, ReadError> {
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    let mut is_json: Option<bool> = None;
    let mut end = JsonEnd::default();
    // Parse at once to answer early garbage such as `{{{{` without waiting for the end,
    // then again each time the buffer has doubled, and when the value can be complete.
    let mut next_attempt = 0;
    loop {
        // YAML has no end marker. `nc -U` without -N never ends its input, so a pause
        // after a complete line counts as the end: the input is judged then (a garbage
        // line gets its error at once instead of after the read timeout).
        let idle_end = is_json == Some(false) && buf.ends_with(b"\n");
        let read = stream.read(&mut chunk);
        let n = if idle_end {
            match tokio::time::timeout(TEXT_IDLE_END, read).await {
                Ok(r) => r.map_err(ReadError::Read)?,
                Err(_) => 0,
            }
        } else {
            read.await.map_err(ReadError::Read)?
        };
        if n > 0 {
            if buf.len() + n > limit {
                return Err(ReadError::TooLarge { limit });
            }
            buf.extend_from_slice(&chunk[..n]);
            end.feed(&chunk[..n]);
        }
        let json = match is_json {
            Some(j) => j,
            None => match buf.iter().find(|b| !b.is_ascii_whitespace()) {
                Some(first) => *is_json.insert(matches!(first, b'[' | b'{')),
                None if n == 0 => {
                    return Err(ReadError::Nothing);
                }
                None => continue,
            },
        };
        if !json {
            if n > 0 {
                continue;
            }
            return String::from_utf8(buf)
                .map(Input::Yaml)
                .map_err(|_| ReadError::NotText);
        }
        if !(end.closed || n == 0 || buf.len() >= next_attempt) {
            continue;
        }
        next_attempt = buf.len().saturating_mul(2);
        let (back, first) = first_json_value(buf).await;
        buf = back;
        match first {
            Some(Ok(v)) => return Ok(Input::Json(v)),
            Some(Err(e)) if e.is_eof() && n > 0 => continue,
            Some(Err(e)) if e.is_eof() => return Err(ReadError::IncompleteJson(e)),
            Some(Err(e)) => return Err(ReadError::MalformedJson(e)),
            None if n > 0 => continue,
            None => return Err(ReadError::NoJson),
        }
    }
}

/// The first JSON value in `buf`, parsed on a blocking thread when `buf` is large; the
/// buffer is handed back.
async fn first_json_value(buf: Vec<u8>) -> (Vec<u8>, Option<serde_json::Result<Value>>) {
    fn parse(buf: &[u8]) -> Option<serde_json::Result<Value>> {
        serde_json::Deserializer::from_slice(buf)
            .into_iter::<Value>()
            .next()
    }
    if buf.len() < PARSE_OFF_WORKERS {
        let first = parse(&buf);
        return (buf, first);
    }
    // A join error means the blocking pool is gone: the runtime is shutting down.
    tokio::task::spawn_blocking(move || {
        let first = parse(&buf);
        (buf, first)
    })
    .await
    .unwrap_or_default()
}

/// Why input parsed on a blocking thread gave no messages.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OffWorkersError {
    /// Steward text that is not messages.
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// JSON values that are not messages.
    #[error(transparent)]
    Json(#[from] MessageParseError),
    /// The blocking thread did not finish: the node is stopping.
    #[error("the node is shutting down; send the input again after it restarts")]
    ShuttingDown,
}

/// Steward input as messages ([`parse_messages`]), parsed on a blocking thread when it
/// is large.
pub(crate) async fn parse_messages_off_workers(
    text: String,
) -> Result<Vec<Message>, OffWorkersError> {
    if text.len() < PARSE_OFF_WORKERS {
        return Ok(parse_messages(&text)?);
    }
    tokio::task::spawn_blocking(move || parse_messages(&text))
        .await
        .map_err(|_| OffWorkersError::ShuttingDown)?
        .map_err(OffWorkersError::from)
}

/// Messages from a JSON value already read ([`messages_from_json`]), converted on a
/// blocking thread when there are many.
pub(crate) async fn messages_from_json_off_workers(
    value: Value,
) -> Result<Vec<Message>, OffWorkersError> {
    let many = value.as_array().is_some_and(|a| a.len() > 64);
    if !many {
        return Ok(messages_from_json(value)?);
    }
    tokio::task::spawn_blocking(move || messages_from_json(value))
        .await
        .map_err(|_| OffWorkersError::ShuttingDown)?
        .map_err(OffWorkersError::from)
}

/// The answer for a refused input.
pub(crate) fn error_line(reason: &str) -> Value {
    ControlResponse::error(reason).to_value()
}

/// Submit and make the answer: the ids queued, or the error.
pub(crate) async fn submit_answer(node: &Node, messages: Vec<Message>) -> Value {
    crate::control::submit_response(node, messages)
        .await
        .to_value()
}

/// Write the one answer line and close our side, so `nc` exits on its own.
pub(crate) async fn write_answer<W: AsyncWrite + Unpin>(stream: &mut W, answer: &Value) {
    let mut line = serde_json::to_vec(answer).unwrap_or_default();
    line.push(b'\n');
    let _ = stream.write_all(&line).await;
    let _ = stream.shutdown().await;
}

/// The answer when the input did not arrive within [`READ_TIMEOUT`].
pub(crate) fn timeout_error() -> Value {
    error_line(
        "timed out waiting for the input: send one complete JSON value, or YAML and then end the input",
    )
}

/// Largest input taken on the TCP listener and from a message file.
fn input_limit(node: &Node) -> usize {
    node.config().max_message_bytes.saturating_mul(16)
}

/// Serve steward's TCP listener until `shutdown` is cancelled: per connection, one JSON
/// value (or YAML up to end of input) of messages in, one JSON line out, then close.
/// Control requests (`{"op": …}`) are refused here; they are only taken on the local
/// socket. Accept errors are logged and retried, so this only returns on shutdown.
pub async fn serve_tcp(
    node: Node,
    listener: TcpListener,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "taking messages on TCP");
    }
    accept_tcp(
        node,
        listener,
        shutdown,
        tracker,
        Port {
            what: "tcp",
            refusal: error_line,
        },
        |node, stream, peer| async move { tcp_connection(&node, stream, peer).await },
    )
    .await
}

/// A TCP port as [`accept_tcp`] needs to know it.
pub(crate) struct Port {
    /// Its name in the error log, e.g. `tcp`.
    pub what: &'static str,
    /// The answer line that refuses a connection, in the port's own protocol.
    pub refusal: fn(&str) -> Value,
}

/// What the connections of one port share: the slots they hold.
struct Slots {
    open: Arc<Semaphore>,
    readers: Arc<Semaphore>,
    per_peer: std::sync::Mutex<HashMap<std::net::IpAddr, usize>>,
}

/// One connection's hold on its peer's count, given back when dropped.
struct PeerSlot {
    slots: Arc<Slots>,
    ip: std::net::IpAddr,
}

impl Slots {
    fn take_peer(self: &Arc<Self>, ip: std::net::IpAddr) -> Option<PeerSlot> {
        let mut per_peer = self.per_peer.lock().unwrap_or_else(|e| e.into_inner());
        let count = per_peer.entry(ip).or_insert(0);
        if *count >= MAX_PEER_CONNECTIONS {
            return None;
        }
        *count += 1;
        Some(PeerSlot {
            slots: self.clone(),
            ip,
        })
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut per_peer = self
            .slots
            .per_peer
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(count) = per_peer.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                per_peer.remove(&self.ip);
            }
        }
    }
}

/// Accept TCP connections until `shutdown` is cancelled, each in its own task on
/// `tracker`: the peer is judged ([`crate::peer::judge`]) and refused with a line and an
/// error-log entry unless allowed; past [`MAX_TCP_CONNECTIONS`] open, or
/// [`MAX_PEER_CONNECTIONS`] from one address, a connection is refused at once. An
/// allowed connection must send its first byte within [`FIRST_BYTE_TIMEOUT`]; then it
/// takes one of [`MAX_TCP_READERS`] reading slots and is handled by `handle`. A
/// connection still open at shutdown is dropped. Accept errors are logged and retried,
/// so this only returns on shutdown.
pub(crate) async fn accept_tcp<F, Fut>(
    node: Node,
    listener: TcpListener,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    port: Port,
    handle: F,
) where
    F: Fn(Node, TcpStream, SocketAddr) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let slots = Arc::new(Slots {
        open: Arc::new(Semaphore::new(MAX_TCP_CONNECTIONS)),
        readers: Arc::new(Semaphore::new(MAX_TCP_READERS)),
        per_peer: std::sync::Mutex::new(HashMap::new()),
    });
    let allow_remote = node.config().tcp_allow_remote;
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "TCP accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let taken = slots
            .open
            .clone()
            .try_acquire_owned()
            .ok()
            .zip(slots.take_peer(peer.ip()));
        let Some((open, peer_slot)) = taken else {
            let reason = format!(
                "refused: too many connections open (at most {MAX_TCP_CONNECTIONS},                  {MAX_PEER_CONNECTIONS} from one address); try again later"
            );
            tracing::debug!(%peer, port = port.what, "{reason}");
            tracker.spawn(refuse_connection(stream, (port.refusal)(&reason)));
            continue;
        };
        let node = node.clone();
        let handle = handle.clone();
        let slots = slots.clone();
        let shutdown = shutdown.clone();
        let (what, refusal) = (port.what, port.refusal);
        tracker.spawn(async move {
            let _held = (open, peer_slot);
            let serve = async {
                let Some(stream) = admit(&node, stream, peer, allow_remote, what, refusal).await
                else {
                    return;
                };
                let reader = slots.readers.clone().acquire_owned();
                let Ok(Ok(_reader)) = tokio::time::timeout(READ_TIMEOUT, reader).await else {
                    return;
                };
                handle(node.clone(), stream, peer).await;
            };
            tokio::select! {
                _ = serve => {}
                _ = shutdown.cancelled() => {}
            }
        });
    }
}

/// Judge the peer of a new connection, then wait for its first byte. `None` when it was
/// refused (with the line `refusal` makes, and an error-log entry), sent nothing in
/// time, or went away.
async fn admit(
    node: &Node,
    mut stream: TcpStream,
    peer: SocketAddr,
    allow_remote: bool,
    what: &'static str,
    refusal: fn(&str) -> Value,
) -> Option<TcpStream> {
    let local = stream.local_addr().ok()?;
    let verdict =
        tokio::task::spawn_blocking(move || crate::peer::judge(peer, local, allow_remote))
            .await
            .ok()?;
    if let crate::peer::Verdict::Refused(reason) = verdict {
        tracing::warn!(%peer, port = what, %reason, "TCP connection refused");
        node.report_refused(&peer.ip().to_string(), what, &reason);
        refuse_connection(stream, refusal(&reason)).await;
        return None;
    }
    let mut first = [0u8; 1];
    match tokio::time::timeout(FIRST_BYTE_TIMEOUT, stream.peek(&mut first)).await {
        Ok(Ok(n)) if n > 0 => Some(stream),
        Ok(_) => None,
        Err(_) => {
            write_answer(&mut stream, &(refusal)("timed out waiting for the input")).await;
            None
        }
    }
}

/// Answer a refused connection with its one line and close it, giving up after a second
/// if the client does not read.
async fn refuse_connection(mut stream: TcpStream, line: Value) {
    let _ = tokio::time::timeout(Duration::from_secs(1), write_answer(&mut stream, &line)).await;
}

async fn tcp_connection(node: &Node, mut stream: TcpStream, peer: SocketAddr) {
    let read = tokio::time::timeout(
        READ_TIMEOUT,
        read_message_input(&mut stream, input_limit(node)),
    )
    .await;
    // None: the input did not arrive in time; otherwise the reason it was refused.
    let messages = match read {
        Err(_) => Err(None),
        Ok(Err(reason)) => Err(Some(reason.to_string())),
        Ok(Ok(Input::Json(value))) if value.as_object().is_some_and(|o| o.contains_key("op")) => {
            Err(Some(
                "control requests ({\"op\": …}) are only taken on the local socket bosun.sock; send messages here".into(),
            ))
        }
        Ok(Ok(Input::Json(value))) => messages_from_json_off_workers(value)
            .await
            .map_err(|e| Some(e.to_string())),
        Ok(Ok(Input::Yaml(text))) => parse_messages_off_workers(text)
            .await
            .map_err(|e| Some(e.to_string())),
    };
    let answer = match messages {
        Ok(messages) => submit_answer(node, messages).await,
        Err(None) => timeout_error(),
        Err(Some(reason)) => error_line(&reason),
    };
    match answer["error"].as_str() {
        Some(reason) => tracing::info!(%peer, reason, "TCP input refused"),
        None => tracing::debug!(%peer, "TCP input queued"),
    }
    write_answer(&mut stream, &answer).await;
}

/// Size and modification time: a file is read once these stop changing.
type Stamp = (u64, Option<SystemTime>);

/// The message files in `dir`, in name order: regular files that are not hidden and not
/// marked as failed or still being written.
fn message_files(dir: &Path) -> std::io::Result<Vec<(PathBuf, Stamp)>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || SKIPPED_SUFFIXES.iter().any(|s| name.ends_with(s)) {
            continue;
        }
        // DirEntry::metadata does not follow symlinks: only real files are taken.
        let Ok(meta) = entry.metadata() else { continue };
        if meta.is_file() {
            files.push((entry.path(), (meta.len(), meta.modified().ok())));
        }
    }
    files.sort_by(|a, b| a.0.file_name().cmp(&b.0.file_name()));
    Ok(files)
}

/// Why a message file was not queued; the text goes in its `.failed.error` note.
#[derive(Debug, thiserror::Error)]
enum FileError {
    /// The file cannot be opened.
    #[error("cannot open the file: {0}")]
    Open(std::io::Error),
    /// The file cannot be read to its end.
    #[error("cannot read the file: {0}")]
    Read(std::io::Error),
    /// The file is larger than one input may be.
    #[error(
        "the file is larger than the limit of {limit} bytes (16 × max_message_bytes); split it into several files"
    )]
    TooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// The file is not text.
    #[error("the file is not UTF-8 text")]
    NotText,
    /// The text is not messages.
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// The node refused the messages.
    #[error(transparent)]
    Submit(#[from] bosun_node::SubmitError),
}

/// Read, parse and submit one message file.
async fn submit_file(node: &Node, path: &Path) -> Result<Vec<bosun_node::Submitted>, FileError> {
    let limit = input_limit(node);
    let file = tokio::fs::File::open(path).await.map_err(FileError::Open)?;
    let mut bytes = Vec::new();
    // Read one byte past the limit so that a file grown since it was listed is caught.
    file.take(limit as u64 + 1)
        .read_to_end(&mut bytes)
        .await
        .map_err(FileError::Read)?;
    if bytes.len() > limit {
        return Err(FileError::TooLarge { limit });
    }
    let text = String::from_utf8(bytes).map_err(|_| FileError::NotText)?;
    let messages = parse_messages(&text)?;
    Ok(node.submit(messages).await?)
}

/// `path` with `suffix` added to its file name.
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Watch steward's read folder until `shutdown` is cancelled: every message file dropped in
/// `dir` is submitted and removed, once its size and modification time have held still
/// for one poll (500 ms). A file that cannot be read, parsed or queued is renamed to
/// `<name>.failed`, with the reason in `<name>.failed.error`. Files are taken in name
/// order. Writers should write to a `.tmp` or `.part` name and rename when done.
pub async fn watch_folder(node: Node, dir: PathBuf, shutdown: CancellationToken) {
    // Files as listed by the previous poll; a file is taken when it is listed unchanged.
    let mut previous: HashMap<PathBuf, Stamp> = HashMap::new();
    // Files handled that could not be removed or renamed: not taken again until they
    // change, so a message is not queued twice and a log is not flooded.
    let mut stuck: HashMap<PathBuf, Stamp> = HashMap::new();
    let mut last_error: Option<String> = None;
    tracing::info!(dir = %dir.display(), "watching the read folder");
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        let listed = std::fs::create_dir_all(&dir).and_then(|()| message_files(&dir));
        match listed {
            Err(e) => {
                let error = e.to_string();
                // Said once, not every poll, while the folder stays unusable.
                if last_error.as_deref() != Some(error.as_str()) {
                    tracing::error!(dir = %dir.display(), error, "cannot list the read folder; check that it is a folder this node may write");
                    last_error = Some(error);
                }
            }
            Ok(files) => {
                last_error = None;
                stuck.retain(|p, s| files.iter().any(|(q, t)| q == p && t == s));
                let mut current = HashMap::new();
                for (path, stamp) in files {
                    if stuck.contains_key(&path) {
                        continue;
                    }
                    if previous.get(&path) != Some(&stamp) {
                        current.insert(path, stamp);
                        continue;
                    }
                    if shutdown.is_cancelled() {
                        return;
                    }
                    if !take_file(&node, &path).await {
                        stuck.insert(path, stamp);
                    }
                }
                previous = current;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL_INTERVAL) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

/// Submit a file of the read folder, then remove it, or mark it failed. False when the
/// file could be neither removed nor renamed.
async fn take_file(node: &Node, path: &Path) -> bool {
    let reason = match submit_file(node, path).await {
        Ok(receipts) => {
            tracing::info!(file = %path.display(), queued = receipts.len(), "messages queued from the read folder");
            return match std::fs::remove_file(path) {
                Ok(()) => true,
                Err(e) => {
                    tracing::error!(file = %path.display(), error = %e, "messages queued, but the file cannot be removed; remove it by hand, or they are queued again after a restart");
                    false
                }
            };
        }
        Err(reason) => reason,
    };
    let failed = with_suffix(path, ".failed");
    if let Err(e) = std::fs::rename(path, &failed) {
        if e.kind() == std::io::ErrorKind::NotFound {
            // Taken away by someone else between listing and reading: nothing to mark.
            tracing::debug!(file = %path.display(), %reason, "message file vanished");
            return true;
        }
        tracing::error!(file = %path.display(), %reason, error = %e, "message file refused, and it cannot be renamed to .failed; remove it by hand");
        return false;
    }
    tracing::warn!(file = %failed.display(), %reason, "message file refused; renamed to .failed, the reason is in .failed.error");
    let note = with_suffix(&failed, ".error");
    if let Err(e) = std::fs::write(&note, format!("{reason}\n")) {
        tracing::error!(file = %note.display(), error = %e, "cannot write why a message file failed");
    }
    true
}

/// Submit the messages of every file in steward's startup folder `dir`, in name order,
/// keeping the files. Failures are logged with their reason and skipped. Returns how many
/// deliveries were queued (an id this node already has counts as queued). A missing
/// folder is not an error: it returns 0.
pub async fn submit_startup(node: &Node, dir: &Path) -> usize {
    let files = match message_files(dir) {
        Ok(files) => files,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return 0,
        Err(e) => {
            tracing::error!(dir = %dir.display(), error = %e, "cannot list the startup folder; no startup messages were queued");
            return 0;
        }
    };
    let mut queued = 0;
    for (path, _) in files {
        match submit_file(node, &path).await {
            Ok(receipts) => {
                tracing::info!(file = %path.display(), queued = receipts.len(), "startup messages queued");
                queued += receipts.len();
            }
            Err(reason) => {
                tracing::warn!(file = %path.display(), %reason, "startup message file refused; fix it, it is read again at the next start");
            }
        }
    }
    queued
}

#[cfg(test)]
mod tests {
    use super::*;
    use bosun_proto::State;
    use serde_json::json;

    use bosun_node::Config;

    /// Generous bound on waits that should end quickly, so a bug fails instead of hanging.
    const PATIENCE: Duration = Duration::from_secs(30);

    async fn start(dir: &Path, name: &str) -> Node {
        crate::test_support::start(Config {
            ack_timeout_secs: 1,
            ..crate::test_support::config(dir, name)
        })
        .await
    }

    fn ping_json(to: &str) -> String {
        format!(r#"[{{"toNode":"{to}","method":"ping","ACKTimeout":5}}]"#)
    }

    /// The pings this node sent (its replies to itself are sent records too).
    fn pings(node: &Node) -> Vec<String> {
        let recent = node.recent(100).unwrap();
        recent
            .iter()
            .filter(|r| r.message.method == "ping")
            .map(|r| r.message.id().to_string())
            .collect()
    }

    async fn all_done(node: &Node, ids: &[String]) {
        let (all, reports) = node.wait(ids, PATIENCE).await.unwrap();
        assert!(
            all,
            "{:?}",
            reports.iter().map(|r| r.state()).collect::<Vec<_>>()
        );
        assert!(reports.iter().all(|r| r.state() == Some(State::Done)));
    }

    /// Wait until `check` holds; panics after [`PATIENCE`].
    async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while !check() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "never happened: {what}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[test]
    fn json_and_yaml_parse_to_the_same_messages() {
        let json = r#"[{"toNode":"ship1","method":"REQCliCommand","data":["bash","-c","echo hi"],
                       "ACKTimeout":5,"retries":3,"methodTimeout":10,"operation":{"opCmd":"ps"}}]"#;
        let yaml = "# a steward message, as YAML\n\
                    - toNode: ship1\n  method: REQCliCommand\n  data: [bash, -c, echo hi]\n  \
                    ACKTimeout: 5\n  retries: 3\n  methodTimeout: 10\n  operation:\n    opCmd: ps\n";
        let from_json = parse_messages(json).unwrap();
        let from_yaml = parse_messages(yaml).unwrap();
        assert_eq!(from_json, from_yaml);
        assert_eq!(from_yaml[0].ack_timeout, Some(5));
        assert_eq!(from_yaml[0].operation.as_ref().unwrap()["opCmd"], "ps");

        let one = parse_messages("toNode: a\nmethod: ping\n").unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].to_node.as_deref(), Some("a"));
        let object = parse_messages("\u{feff}  {\"toNode\":\"a\",\"method\":\"ping\"}").unwrap();
        assert_eq!(object, one);
        let documents =
            parse_messages("---\ntoNode: a\nmethod: ping\n---\n- toNode: b\n  method: ping\n")
                .unwrap();
        assert_eq!(documents.len(), 2);
        assert_eq!(documents[1].to_node.as_deref(), Some("b"));
    }

    #[test]
    fn bad_input_is_refused_with_the_field_and_position() {
        let err = parse_messages(
            "- toNode: a\n  method: ping\n- toNode: b\n  method: ping\n  toHost: c\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("unknown field `toHost`"), "{err}");
        assert!(err.contains("[1]") && err.contains("line 5"), "{err}");

        let err = parse_messages("- toNode: a\n  method: ping\n  retries: three\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("retries") && err.contains("line 3"), "{err}");

        let err = parse_messages(
            r#"[{"toNode":"a","method":"ping"},{"toNode":"a","method":"ping","toHost":"b"}]"#,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("message 1:") && err.contains("`toHost`"),
            "{err}"
        );

        for (bad, says) in [
            ("", "no messages"),
            ("# only a comment\n", "no messages"),
            ("[]", "no messages"),
            ("just words", "a string"),
            ("42", "a number"),
            ("a: [1, 2\nb: c", "malformed YAML"),
            ("{{{{", "malformed"),
            ("- 1\n- 2\n", "malformed message list"),
        ] {
            let err = parse_messages(bad).unwrap_err().to_string();
            assert!(err.contains(says), "{bad:?} → {err}");
        }
    }

    #[test]
    fn the_json_end_is_found_only_at_the_end() {
        let value = json!([{"a": "]}\\\"[{", "b": ["\\", {"c": [], "d": "}"}]}, 1]);
        let text = value.to_string();
        let mut end = JsonEnd::default();
        for (i, b) in text.bytes().enumerate() {
            assert!(!end.closed, "closed early, before byte {i} of {text}");
            end.feed(&[b]);
        }
        assert!(end.closed);
        end.feed(b" [");
        assert!(end.closed, "what follows the value does not matter");
    }

    #[tokio::test]
    async fn the_reader_ends_json_without_eof_and_yaml_at_eof() {
        // The writer half stays open, as with `nc` without -N. The value is long enough
        // that its end comes between two of the reader's size-doubling parse attempts, so
        // only knowing where the value closes can end the read.
        let (mut client, mut server) = tokio::io::duplex(64);
        let reader = tokio::spawn(async move { read_message_input(&mut server, 1 << 20).await });
        // Bytes that look like structure inside a string must not count as structure.
        let tricky = "]}\\\"[{".repeat(150);
        let value = json!([{"a": tricky}, {"b": [1, {"c": "\\"}]}]);
        let text = format!(" {value}");
        assert!(text.len() > 1100 && text.len() < 1900, "{}", text.len());
        client.write_all(text.as_bytes()).await.unwrap();
        let read = tokio::time::timeout(PATIENCE, reader)
            .await
            .expect("ends without EOF");
        match read.unwrap().unwrap() {
            Input::Json(v) => assert_eq!(v, value),
            other => panic!("{other:?}"),
        }
        drop(client);

        let (mut client, mut server) = tokio::io::duplex(64);
        let reader = tokio::spawn(async move { read_message_input(&mut server, 1 << 20).await });
        client
            .write_all(b"- toNode: a\n  method: ping\n")
            .await
            .unwrap();
        client.shutdown().await.unwrap();
        match reader.await.unwrap().unwrap() {
            Input::Yaml(text) => assert_eq!(text, "- toNode: a\n  method: ping\n"),
            other => panic!("{other:?}"),
        }

        let (mut client, mut server) = tokio::io::duplex(64);
        let reader = tokio::spawn(async move { read_message_input(&mut server, 100).await });
        let _ = client.write_all(&[b' '; 50]).await;
        let _ = client.write_all(b"[\"").await;
        let _ = client.write_all(&[b'x'; 100]).await;
        let err = reader.await.unwrap().unwrap_err();
        assert!(matches!(err, ReadError::TooLarge { limit: 100 }), "{err}");
        assert!(err.to_string().contains("limit of 100 bytes"), "{err}");
    }

    async fn talk(addr: SocketAddr, body: &[u8], close_write: bool) -> Value {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(body).await.unwrap();
        if close_write {
            stream.shutdown().await.unwrap();
        }
        let mut answer = Vec::new();
        tokio::time::timeout(PATIENCE, stream.read_to_end(&mut answer))
            .await
            .expect("an answer")
            .unwrap();
        assert_eq!(
            answer.iter().filter(|b| **b == b'\n').count(),
            1,
            "one line"
        );
        serde_json::from_slice(&answer).unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tcp_takes_steward_arrays_and_survives_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let node = start(dir.path(), "n1").await;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(serve_tcp(
            node.clone(),
            listener,
            node.shutdown_token(),
            node.tracker(),
        ));

        let answer = talk(addr, ping_json("n1").as_bytes(), false).await;
        assert_eq!(answer["ok"], true, "{answer}");
        let first = answer["queued"][0]["id"].as_str().unwrap().to_string();

        for garbage in [&b"{{{{"[..], b"[1, 2, 3]", b"\xff\xfe", br#"{"op":"info"}"#] {
            let answer = talk(addr, garbage, true).await;
            assert_eq!(answer["ok"], false, "{answer}");
            assert!(!answer["error"].as_str().unwrap().is_empty());
        }
        let answer = talk(addr, br#"{"op":"info"}"#, false).await;
        assert!(
            answer["error"].as_str().unwrap().contains("local socket"),
            "{answer}"
        );

        let answer = talk(addr, b"- toNode: n1\n  method: ping\n", true).await;
        assert_eq!(answer["ok"], true, "{answer}");
        let second = answer["queued"][0]["id"].as_str().unwrap().to_string();
        all_done(&node, &[first, second]).await;

        node.shutdown().await;
        let stopped = tokio::time::timeout(PATIENCE, server).await;
        assert!(matches!(stopped, Ok(Ok(()))), "{stopped:?}");
    }

    /// Send `input` to `addr` from a process running as user and group 65534 (nobody),
    /// and return what came back.
    async fn talk_as_nobody(addr: SocketAddr, input: &str) -> String {
        let script = format!(
            "exec 3<>/dev/tcp/{}/{} || exit 9; printf '%s' \"$INPUT\" >&3; cat <&3",
            addr.ip(),
            addr.port()
        );
        let output = tokio::process::Command::new("bash")
            .arg("-c")
            .arg(script)
            .env("INPUT", input)
            .uid(65534)
            .gid(65534)
            .output();
        let output = tokio::time::timeout(PATIENCE, output)
            .await
            .expect("the client ends")
            .expect("bash runs");
        assert!(output.status.success(), "{output:?}");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn other_local_users_are_refused_and_nothing_runs() {
        let dir = tempfile::tempdir().unwrap();
        let node = start(dir.path(), "n1").await;
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let lsdsuite = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (tcp_addr, lsdsuite_addr) = (tcp.local_addr().unwrap(), lsdsuite.local_addr().unwrap());
        node.tracker().spawn(serve_tcp(
            node.clone(),
            tcp,
            node.shutdown_token(),
            node.tracker(),
        ));
        node.tracker().spawn(crate::lsdsuite::serve(
            node.clone(),
            lsdsuite,
            node.shutdown_token(),
            node.tracker(),
        ));
        let marker = dir.path().join("marker");
        let touch = json!([{"toNode": "n1", "method": "cliCommand",
            "data": ["touch", marker.display().to_string()]}])
        .to_string();

        let answer = talk_as_nobody(tcp_addr, &touch).await;
        assert!(
            answer.contains("refused: local user 65534 is not the node's user"),
            "{answer}"
        );
        let answer =
            talk_as_nobody(lsdsuite_addr, r#"{"command":"mark","params":{"msg":"x"}}"#).await;
        assert!(
            answer.contains("\"err\"") && answer.contains("local user 65534"),
            "{answer}"
        );
        assert!(node.recent(10).unwrap().is_empty(), "nothing was queued");
        let errors = std::fs::read_to_string(dir.path().join("n1/error.log")).unwrap();
        assert_eq!(errors.matches("local user 65534").count(), 2, "{errors}");
        assert!(!marker.exists());

        // The node's own user gets in with the same input, and it runs: the marker would
        // have shown a run above.
        let answer = talk(tcp_addr, touch.as_bytes(), false).await;
        assert_eq!(answer["ok"], true, "{answer}");
        let id = answer["queued"][0]["id"].as_str().unwrap().to_string();
        all_done(&node, &[id]).await;
        assert!(marker.exists());
        node.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn idle_connections_do_not_delay_a_request() {
        let dir = tempfile::tempdir().unwrap();
        let node = start(dir.path(), "n1").await;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        node.tracker().spawn(serve_tcp(
            node.clone(),
            listener,
            node.shutdown_token(),
            node.tracker(),
        ));
        let deadline = tokio::time::Instant::now() + PATIENCE;
        let mut idle = Vec::new();
        while idle.len() < 200 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "connecting took too long"
            );
            idle.push(TcpStream::connect(addr).await.unwrap());
        }
        let started = std::time::Instant::now();
        let answer = talk(addr, ping_json("n1").as_bytes(), false).await;
        let took = started.elapsed();
        assert_eq!(answer["ok"], true, "{answer}");
        assert!(
            took < Duration::from_secs(1),
            "a request behind 200 idle connections took {took:?}"
        );
        drop(idle);
        node.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_read_folder_submits_and_removes_or_marks_failed() {
        let dir = tempfile::tempdir().unwrap();
        let node = start(dir.path(), "n1").await;
        let folder = dir.path().join("readfolder");
        let watcher = tokio::spawn(watch_folder(
            node.clone(),
            folder.clone(),
            node.shutdown_token(),
        ));
        eventually("the folder is created", || folder.is_dir()).await;

        // Written under a name the watcher skips, then renamed, as writers should.
        let good = folder.join("ping.yaml");
        std::fs::write(
            folder.join("ping.yaml.tmp"),
            "- toNode: n1\n  method: ping\n",
        )
        .unwrap();
        std::fs::rename(folder.join("ping.yaml.tmp"), &good).unwrap();
        let bad = folder.join("bad.json");
        std::fs::write(&bad, r#"[{"toNode":"n1","method":"ping","toHost":"x"}]"#).unwrap();
        std::fs::write(folder.join(".hidden"), "not a message").unwrap();

        eventually("the good file is taken", || !good.exists()).await;
        let ids = pings(&node);
        assert_eq!(ids.len(), 1, "only the good file was queued");
        all_done(&node, &ids).await;

        let failed = folder.join("bad.json.failed");
        let reason = folder.join("bad.json.failed.error");
        eventually("the bad file is marked", || reason.exists()).await;
        assert!(failed.exists() && !bad.exists());
        let reason = std::fs::read_to_string(reason).unwrap();
        assert!(reason.contains("toHost"), "{reason}");
        assert!(
            folder.join(".hidden").exists(),
            "hidden files are left alone"
        );

        node.shutdown().await;
        tokio::time::timeout(PATIENCE, watcher)
            .await
            .unwrap()
            .unwrap();
        assert!(failed.exists(), "a failed file is not taken again");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_startup_folder_is_submitted_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let node = start(dir.path(), "n1").await;
        assert_eq!(submit_startup(&node, &dir.path().join("missing")).await, 0);

        let folder = dir.path().join("startup");
        std::fs::create_dir(&folder).unwrap();
        std::fs::write(folder.join("b.json"), ping_json("n1")).unwrap();
        std::fs::write(
            folder.join("a.yaml"),
            "- toNode: n1\n  method: ping\n- toNode: n1\n  method: ping\n",
        )
        .unwrap();
        std::fs::write(folder.join("c.yaml"), "toNode: n1\nmethod: nope\n").unwrap();
        std::fs::write(folder.join("d.json.part"), ping_json("n1")).unwrap();

        assert_eq!(submit_startup(&node, &folder).await, 3);
        for name in ["a.yaml", "b.json", "c.yaml", "d.json.part"] {
            assert!(folder.join(name).exists(), "{name} kept");
        }
        let ids = pings(&node);
        assert_eq!(ids.len(), 3);
        all_done(&node, &ids).await;
        node.shutdown().await;
    }
}
