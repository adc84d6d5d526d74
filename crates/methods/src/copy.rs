//! `copySrc` / `copyDst`: a chunked, hashed file copy between nodes.
//!
//! `copySrc` runs on the node that has the file, with `data = [srcPath, dstNode,
//! dstPath, chunkBytes?]`. It hashes the whole file, then reads it chunk by chunk,
//! hashing each, and hands the node one `copyDst` message per chunk to submit to
//! `dstNode`, a batch at a time: a batch is queued durably before the next is read, so
//! the file is never held in memory. The chunks travel like any other message: durably,
//! acknowledged, retried. A file larger than `copy_max_bytes` is refused before any of
//! it is read; a file that changes while it is read makes the copy fail at both ends
//! (every chunk carries the first pass's hash, which the destination checks).
//!
//! `copyDst` runs on the destination, once per chunk. It checks the chunk's sha256,
//! writes it at its offset into `<dstPath>.bosun-part`, and records the chunk in
//! `<dstPath>.bosun-part.json`. Both live on disk, so a copy survives a restart of
//! either node and continues with the chunks still to come. Chunks may arrive in any
//! order and more than once. When every chunk is in, the whole file's sha256 is checked
//! and the part file is renamed to `dstPath`, so `dstPath` only ever holds a complete,
//! verified file.
//!
//! Both ends stay inside their node's file roots ([`crate::confine`]): the source file
//! is opened and checked by its descriptor's path, and every file of the destination is
//! reached through its folder's checked descriptor, one name at a time, never through a
//! symlink. The copied file gets the destination's default permissions, not the
//! source's.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::ffi::OsStr;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bosun_proto::{Message, Outcome, Status, validate_node_name};
use nix::fcntl::OFlag;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::confine::Destination;
use crate::{Context, SubmitSink, done, failed, now_millis};

/// Chunk size when `data[3]` is not given.
const DEFAULT_CHUNK: u64 = 256 * 1024;
/// Smallest chunk size accepted; smaller requests are raised to it.
const MIN_CHUNK: u64 = 1024;
/// Largest chunk size accepted: a chunk, base64-encoded in a message, must stay under
/// the default 1 MiB message limit.
const MAX_CHUNK: u64 = 512 * 1024;
/// Bytes of the file read and handed to the node at a time (a third more once encoded):
/// what a copy holds in memory at the source.
const BATCH_BYTES: u64 = 4 * 1024 * 1024;
/// How many finished copies are remembered, so chunks repeated after the end are
/// answered without hashing the file again.
const REMEMBERED: usize = 1024;

const SRC_USAGE: &str = "copySrc needs data [\"<srcPath>\", \"<dstNode>\", \"<dstPath>\"] and optionally a chunk size in bytes as a 4th item";

/// One chunk of a file copy: the `data[0]` of a `copyDst` message, as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CopyChunk {
    /// Names one copy; a chunk with another id for the same path starts the copy over.
    pub copy_id: String,
    /// Where the file goes on the destination node.
    pub path: String,
    /// This chunk's number, from 0.
    pub index: u64,
    /// How many chunks the copy has.
    pub count: u64,
    /// Where this chunk starts in the file, in bytes.
    pub offset: u64,
    /// The whole file's size, in bytes.
    pub size: u64,
    /// sha256 of this chunk's bytes, lowercase hex.
    pub sha256: String,
    /// sha256 of the whole file, lowercase hex.
    pub file_sha256: String,
    /// This chunk's bytes, base64 (standard alphabet, padded).
    pub bytes: String,
}

/// What every chunk of one copy shares.
#[derive(Debug, Clone)]
struct Plan {
    copy_id: String,
    path: String,
    chunk_size: u64,
    count: u64,
    size: u64,
    file_sha256: String,
}

impl Plan {
    /// Chunk `index`, made of `piece`.
    fn chunk(&self, index: u64, piece: &[u8]) -> CopyChunk {
        CopyChunk {
            copy_id: self.copy_id.clone(),
            path: self.path.clone(),
            index,
            count: self.count,
            offset: index * self.chunk_size,
            size: self.size,
            sha256: hex(&Sha256::digest(piece)),
            file_sha256: self.file_sha256.clone(),
            bytes: BASE64.encode(piece),
        }
    }
}

/// Read the source file and hand the node one `copyDst` message per chunk, a batch at a
/// time.
pub async fn run_src(message: &Message, context: &Context, follow_ups: &SubmitSink) -> Outcome {
    let started = now_millis();
    let fail = |e: String| -> Outcome { failed(context, started, e) };
    let [src, dst_node, dst_path, rest @ ..] = message.data.as_slice() else {
        return fail(SRC_USAGE.into());
    };
    if src.is_empty() || dst_path.is_empty() || rest.len() > 1 {
        return fail(SRC_USAGE.into());
    }
    if let Err(e) = validate_node_name(dst_node) {
        return fail(format!("bad destination node: {e}"));
    }
    let chunk_size = match rest.first() {
        None => DEFAULT_CHUNK,
        Some(s) => match s.trim().parse::<u64>() {
            Ok(n) => n.clamp(MIN_CHUNK, MAX_CHUNK),
            Err(_) => {
                return fail(format!(
                    "chunk size {s:?} is not a whole number of bytes; give e.g. \"65536\", or leave it out for {DEFAULT_CHUNK}"
                ));
            }
        },
    };
    let confine = context.confine.clone();
    let given = src.clone();
    let opened = match tokio::task::spawn_blocking(move || confine.open_read(&given)).await {
        Ok(Ok(opened)) => opened,
        Ok(Err(e)) => return fail(e.to_string()),
        Err(e) => return fail(format!("opening {src:?} failed: {e}")),
    };
    let file = Arc::new(opened.file);
    let size = match file.metadata() {
        Ok(meta) => meta.len(),
        Err(e) => return fail(format!("cannot read {src:?}: {e}")),
    };
    let limit = context.confine.copy_max_bytes;
    if size > limit {
        return fail(format!(
            "{src} is {size} bytes, more than this node's copy_max_bytes ({limit}); copy a smaller file or raise copy_max_bytes"
        ));
    }
    // Every chunk carries the whole file's hash, so it is found first, in a pass of its
    // own. Hashing is CPU work: off the async workers.
    let hashed = {
        let file = file.clone();
        tokio::task::spawn_blocking(move || sha256_of_first(&file, size)).await
    };
    let file_sha256 = match hashed {
        Ok(Ok(h)) => h,
        Ok(Err(e)) => return fail(format!("cannot read {src:?}: {e}")),
        Err(e) => return fail(format!("hashing {src:?} failed: {e}")),
    };
    let plan = Arc::new(Plan {
        copy_id: bosun_proto::new_id(),
        path: dst_path.clone(),
        chunk_size,
        // An empty file is one empty chunk, so the destination still learns to create it.
        count: size.div_ceil(chunk_size).max(1),
        size,
        file_sha256,
    });
    let per_batch = (BATCH_BYTES / chunk_size).max(1);
    let mut hasher = Sha256::new();
    let mut next = 0u64;
    while next < plan.count {
        if context.shutdown.is_cancelled() {
            return Outcome {
                started_at: Some(started),
                ..Outcome::bare(
                    Status::Interrupted,
                    &context.node,
                    format!(
                        "the node shut down after {next} of {} chunks were queued; run copySrc again",
                        plan.count
                    ),
                    now_millis(),
                )
            };
        }
        let end = (next + per_batch).min(plan.count);
        let read = {
            let (file, plan) = (file.clone(), plan.clone());
            tokio::task::spawn_blocking(move || read_chunks(&file, &plan, next..end, hasher)).await
        };
        let chunks = match read {
            Ok(Ok((chunks, running))) => {
                hasher = running;
                chunks
            }
            Ok(Err(e)) => return fail(format!("cannot read {src:?}: {e}")),
            Err(e) => return fail(format!("reading {src:?} failed: {e}")),
        };
        let mut batch = Vec::with_capacity(chunks.len());
        for chunk in &chunks {
            let json = match serde_json::to_string(chunk) {
                Ok(j) => j,
                Err(e) => return fail(format!("cannot encode chunk {}: {e}", chunk.index)),
            };
            batch.push(Message {
                to_node: Some(dst_node.clone()),
                method: "copyDst".into(),
                // In order, so the destination writes the file front to back and a
                // repeat after the end is rare.
                ordered: Some(true),
                data: vec![json],
                method_timeout: message.method_timeout,
                ..Default::default()
            });
        }
        drop(chunks);
        if let Err(e) = follow_ups.submit(batch).await {
            return fail(format!(
                "chunks {}..{} of {} could not be queued: {e}; the {next} before them were, so run copySrc again",
                next + 1,
                end,
                plan.count
            ));
        }
        next = end;
    }
    let second = hex(&hasher.finalize());
    if second != plan.file_sha256 {
        return fail(format!(
            "{src} changed while it was copied (sha256 {} when hashed, {second} when sent); the destination will refuse the copy, run copySrc again",
            plan.file_sha256
        ));
    }
    let (count, file_sha256) = (plan.count, &plan.file_sha256);
    done(
        context,
        started,
        format!(
            "copying {size} bytes in {count} chunk{} to {dst_node}:{dst_path} (sha256 {file_sha256})",
            if count == 1 { "" } else { "s" }
        ),
    )
}

/// sha256 of the first `size` bytes of `file`; an error when the file is shorter now.
fn sha256_of_first(file: &std::fs::File, size: u64) -> std::io::Result<String> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut at = 0u64;
    while at < size {
        let want = usize::try_from((size - at).min(buf.len() as u64)).unwrap_or(buf.len());
        let n = file.read_at(&mut buf[..want], at)?;
        if n == 0 {
            return Err(shrank(size, at));
        }
        hasher.update(&buf[..n]);
        at += n as u64;
    }
    Ok(hex(&hasher.finalize()))
}

/// Read chunks `indexes` of the plan, feeding their bytes to the running whole-file
/// `hasher`, which comes back with them.
fn read_chunks(
    file: &std::fs::File,
    plan: &Plan,
    indexes: std::ops::Range<u64>,
    mut hasher: Sha256,
) -> std::io::Result<(Vec<CopyChunk>, Sha256)> {
    let mut chunks = Vec::new();
    let mut piece = Vec::new();
    for index in indexes {
        let offset = index * plan.chunk_size;
        let length = plan.chunk_size.min(plan.size.saturating_sub(offset));
        piece.clear();
        piece.resize(usize::try_from(length).unwrap_or(0), 0);
        let mut filled = 0usize;
        while filled < piece.len() {
            let n = file.read_at(&mut piece[filled..], offset + filled as u64)?;
            if n == 0 {
                return Err(shrank(plan.size, offset + filled as u64));
            }
            filled += n;
        }
        hasher.update(&piece);
        chunks.push(plan.chunk(index, &piece));
    }
    Ok((chunks, hasher))
}

/// The error for a file that ended at `at`, before its `size`.
fn shrank(size: u64, at: u64) -> std::io::Error {
    std::io::Error::new(
        ErrorKind::UnexpectedEof,
        format!(
            "it ended at byte {at} of {size}: it shrank while it was copied; run copySrc again"
        ),
    )
}

/// Cut `bytes` into chunks of `chunk_size`, hashed and encoded, as `copySrc` would.
#[cfg(test)]
fn plan(bytes: &[u8], path: &str, chunk_size: u64, copy_id: &str) -> Vec<CopyChunk> {
    let size = bytes.len() as u64;
    let plan = Plan {
        copy_id: copy_id.to_string(),
        path: path.to_string(),
        chunk_size,
        count: size.div_ceil(chunk_size).max(1),
        size,
        file_sha256: hex(&Sha256::digest(bytes)),
    };
    (0..plan.count)
        .map(|index| {
            let from = usize::try_from(index * chunk_size).unwrap();
            let to = usize::try_from(((index + 1) * chunk_size).min(size)).unwrap();
            plan.chunk(index, &bytes[from..to])
        })
        .collect()
}

/// Why a chunk was not written or the copy not finished; its text is the outcome's
/// error. `chunk` fields read like "chunk 3/10 of copy ID".
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// A chunk without a copy id.
    #[error("copy chunk has no copyId; send copySrc to start a copy")]
    NoCopyId,
    /// The destination path names no file.
    #[error("{chunk}: destination {path:?} does not name a file; give a file path in copySrc")]
    NotAFile {
        /// Which chunk.
        chunk: String,
        /// The destination given.
        path: String,
    },
    /// The chunk's number is not below its count.
    #[error(
        "{chunk}: index {index} is outside 0..{count}; the chunk is malformed, run copySrc again"
    )]
    IndexOutOfRange {
        /// Which chunk.
        chunk: String,
        /// Its number.
        index: u64,
        /// The copy's chunk count.
        count: u64,
    },
    /// A hash that is not 64 hex digits.
    #[error(
        "{chunk}: sha256 and fileSha256 must be 64 hex digits; the chunk is malformed, run copySrc again"
    )]
    MalformedHash {
        /// Which chunk.
        chunk: String,
    },
    /// The chunk's bytes are not base64.
    #[error("{chunk}: bytes are not base64 ({source}); run copySrc again")]
    NotBase64 {
        /// Which chunk.
        chunk: String,
        /// What the decoder saw.
        source: base64::DecodeError,
    },
    /// The chunk reaches past the file's size.
    #[error(
        "{chunk}: {length} bytes at offset {offset} go past the file size {size}; the chunk is malformed, run copySrc again"
    )]
    PastTheEnd {
        /// Which chunk.
        chunk: String,
        /// The chunk's length.
        length: u64,
        /// Where it starts.
        offset: u64,
        /// The file's size.
        size: u64,
    },
    /// The chunk's bytes do not match its hash.
    #[error(
        "{chunk} to {path} is corrupt: its sha256 is {actual}, expected {expected}; it was not written, run copySrc again"
    )]
    CorruptChunk {
        /// Which chunk.
        chunk: String,
        /// The destination.
        path: String,
        /// The hash of the bytes received.
        actual: String,
        /// The hash the chunk names.
        expected: String,
    },
    /// The chunk belongs to the copy in progress but describes another file.
    #[error(
        "{chunk} disagrees with the copy in progress at {path} (size, chunk count or file sha256); run copySrc again"
    )]
    Disagrees {
        /// Which chunk.
        chunk: String,
        /// The destination.
        path: String,
    },
    /// A file operation failed; `action` says which, with its path.
    #[error("cannot {action}: {source}")]
    Io {
        /// What was tried, e.g. `open "/x.bosun-part"`.
        action: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// The finished file could not be moved into place.
    #[error(
        "cannot move {part:?} to {path:?}: {source}; the part is kept, send the last chunk again to retry"
    )]
    NotMoved {
        /// The part file.
        part: PathBuf,
        /// The destination.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The assembled file does not match the copy's hash.
    #[error("copy {copy_id} to {}: the assembled file's sha256 is {actual}, expected {expected}; the partial file was removed, run copySrc again", path.display())]
    FileCorrupt {
        /// The copy.
        copy_id: String,
        /// The destination.
        path: PathBuf,
        /// The hash of the assembled file.
        actual: String,
        /// The hash the copy names.
        expected: String,
    },
    /// The copy's state could not be written as JSON.
    #[error("cannot encode the copy state: {0}")]
    EncodeState(#[source] serde_json::Error),
}

/// `CopyError::Io` for `action`.
fn io(action: String) -> impl FnOnce(std::io::Error) -> CopyError {
    move |source| CopyError::Io { action, source }
}

/// Write one chunk at the destination.
pub async fn run_dst(message: &Message, context: &Context) -> Outcome {
    let started = now_millis();
    let Some(text) = message.data.first() else {
        return failed(
            context,
            started,
            "copyDst needs data [\"<chunk JSON>\"] as made by copySrc; send copySrc instead",
        );
    };
    let chunk: CopyChunk = match serde_json::from_str(text) {
        Ok(c) => c,
        Err(e) => return failed(context, started, format!("malformed copy chunk: {e}")),
    };
    let bytes = match check(&chunk) {
        Ok(b) => b,
        Err(e) => return failed(context, started, e.to_string()),
    };
    let confine = context.confine.clone();
    let path = chunk.path.clone();
    let destination =
        match tokio::task::spawn_blocking(move || confine.open_destination(&path)).await {
            Ok(Ok(d)) => d,
            Ok(Err(e)) => return failed(context, started, e.to_string()),
            Err(e) => return failed(context, started, format!("opening the folder failed: {e}")),
        };
    // By the real path: two spellings of one destination share one lock.
    let key = destination.path();
    let copies = &context.state.copies;
    let guard = copies.path_lock(&key).lock_owned().await;
    let state = context.state.clone();
    // The guard moves into the blocking task: if this run is dropped (shutdown), the
    // path stays locked until the file work really ends.
    let applied = tokio::task::spawn_blocking(move || {
        let result = apply(&chunk, &bytes, &destination, &state.copies);
        drop(guard);
        (chunk, result)
    })
    .await;
    copies.release_lock(&key);
    match applied {
        Err(e) => failed(context, started, format!("writing the chunk failed: {e}")),
        Ok((_, Err(e))) => failed(context, started, e.to_string()),
        Ok((chunk, Ok(Applied::Written { received }))) => done(
            context,
            started,
            format!(
                "chunk {}/{} of {} written ({received}/{} received)",
                chunk.index + 1,
                chunk.count,
                chunk.path,
                chunk.count
            ),
        ),
        Ok((chunk, Ok(Applied::Complete { already }))) => done(
            context,
            started,
            format!(
                "copy complete: {} ({} bytes, sha256 {}){}",
                chunk.path,
                chunk.size,
                chunk.file_sha256,
                if already {
                    "; it was already in place"
                } else {
                    ""
                }
            ),
        ),
    }
}

/// Check a chunk on its own: shape, bounds, and its bytes against its sha256. Returns
/// the decoded bytes.
fn check(chunk: &CopyChunk) -> Result<Vec<u8>, CopyError> {
    let name = format!(
        "chunk {}/{} of copy {}",
        chunk.index.saturating_add(1),
        chunk.count,
        chunk.copy_id
    );
    if chunk.copy_id.is_empty() {
        return Err(CopyError::NoCopyId);
    }
    if chunk.path.is_empty()
        || chunk.path.ends_with('/')
        || Path::new(&chunk.path).file_name().is_none()
    {
        return Err(CopyError::NotAFile {
            chunk: name,
            path: chunk.path.clone(),
        });
    }
    if chunk.count == 0 || chunk.index >= chunk.count {
        return Err(CopyError::IndexOutOfRange {
            chunk: name,
            index: chunk.index,
            count: chunk.count,
        });
    }
    if !is_sha256_hex(&chunk.sha256) || !is_sha256_hex(&chunk.file_sha256) {
        return Err(CopyError::MalformedHash { chunk: name });
    }
    let bytes = match BASE64.decode(&chunk.bytes) {
        Ok(bytes) => bytes,
        Err(source) => {
            return Err(CopyError::NotBase64 {
                chunk: name,
                source,
            });
        }
    };
    let end = chunk.offset.checked_add(bytes.len() as u64);
    if end.is_none_or(|end| end > chunk.size) {
        return Err(CopyError::PastTheEnd {
            chunk: name,
            length: bytes.len() as u64,
            offset: chunk.offset,
            size: chunk.size,
        });
    }
    let actual = hex(&Sha256::digest(&bytes));
    if !actual.eq_ignore_ascii_case(&chunk.sha256) {
        return Err(CopyError::CorruptChunk {
            chunk: name,
            path: chunk.path.clone(),
            actual,
            expected: chunk.sha256.clone(),
        });
    }
    Ok(bytes)
}

/// What applying a chunk did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Applied {
    /// Written into the part file; `received` of the copy's chunks are in.
    Written { received: u64 },
    /// The file is complete at its path; `already` when it was before this chunk.
    Complete { already: bool },
}

/// The record of a copy in progress, kept beside the part file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PartState {
    copy_id: String,
    size: u64,
    count: u64,
    file_sha256: String,
    received: BTreeSet<u64>,
}

/// Write a checked chunk into the part file and, when it is the last one missing,
/// verify and move the file into place. Blocking; the caller holds the path's lock.
fn apply(
    chunk: &CopyChunk,
    bytes: &[u8],
    destination: &Destination,
    copies: &CopyState,
) -> Result<Applied, CopyError> {
    let path = destination.path();
    let part = destination.sibling(".bosun-part");
    let state_name = destination.sibling(".bosun-part.json");
    let part_path = destination.path_of(&part);
    let name = format!(
        "chunk {}/{} of copy {}",
        chunk.index + 1,
        chunk.count,
        chunk.copy_id
    );

    let existing = load_state(destination, &state_name);
    let in_progress = existing
        .as_ref()
        .is_some_and(|s| s.copy_id == chunk.copy_id)
        && destination.exists(&part);
    let mut state = match existing {
        Some(s) if in_progress => {
            if s.size != chunk.size
                || s.count != chunk.count
                || !s.file_sha256.eq_ignore_ascii_case(&chunk.file_sha256)
            {
                return Err(CopyError::Disagrees {
                    chunk: name,
                    path: chunk.path.clone(),
                });
            }
            s
        }
        existing => {
            // No part of this copy on disk: either the copy starts here, or this chunk
            // repeats one of a copy that already finished.
            if copies.was_completed(&path, &chunk.copy_id) || in_place(destination, chunk) {
                copies.remember_completed(&path, &chunk.copy_id);
                if existing.is_some_and(|s| s.copy_id == chunk.copy_id) {
                    remove_if_exists(destination, &state_name)?;
                }
                return Ok(Applied::Complete { already: true });
            }
            // A part of another copy (or of nothing known) is discarded: this copy wins.
            remove_if_exists(destination, &part)?;
            PartState {
                copy_id: chunk.copy_id.clone(),
                size: chunk.size,
                count: chunk.count,
                file_sha256: chunk.file_sha256.to_ascii_lowercase(),
                received: BTreeSet::new(),
            }
        }
    };

    let file = destination
        .open(&part, OFlag::O_WRONLY | OFlag::O_CREAT)
        .map_err(io(format!("open {part_path:?}")))?;
    file.write_all_at(bytes, chunk.offset)
        .map_err(io(format!("write {name} to {part_path:?}")))?;
    // On disk before the state says so: after a crash, a chunk marked received is there.
    file.sync_data()
        .map_err(io(format!("flush {part_path:?}")))?;
    drop(file);
    state.received.insert(chunk.index);
    save_state(destination, &state_name, &state)?;

    let received = state.received.len() as u64;
    if received < state.count {
        return Ok(Applied::Written { received });
    }
    finish(destination, &part, &state_name, &state)?;
    copies.remember_completed(&path, &state.copy_id);
    Ok(Applied::Complete { already: false })
}

/// Every chunk is in: check the whole file and move it into place. On a mismatch the
/// part and state are removed, so the next copySrc starts clean.
fn finish(
    destination: &Destination,
    part: &OsStr,
    state_name: &OsStr,
    state: &PartState,
) -> Result<(), CopyError> {
    let part_path = destination.path_of(part);
    let file = destination
        .open(part, OFlag::O_RDWR)
        .map_err(io(format!("open {part_path:?}")))?;
    // The part is `size` long unless something else wrote to it; cut it to be sure the
    // hash covers exactly the file that will land at `path`.
    file.set_len(state.size)
        .map_err(io(format!("set the length of {part_path:?}")))?;
    let actual = sha256_of(&file).map_err(io(format!("read {part_path:?} back")))?;
    if !actual.eq_ignore_ascii_case(&state.file_sha256) {
        drop(file);
        let _ = remove_if_exists(destination, part);
        let _ = remove_if_exists(destination, state_name);
        return Err(CopyError::FileCorrupt {
            copy_id: state.copy_id.clone(),
            path: destination.path(),
            actual,
            expected: state.file_sha256.clone(),
        });
    }
    file.sync_all()
        .map_err(io(format!("flush {part_path:?}")))?;
    drop(file);
    destination
        .rename(part, destination.name())
        .map_err(|source| CopyError::NotMoved {
            part: part_path,
            path: destination.path(),
            source,
        })?;
    destination.sync();
    remove_if_exists(destination, state_name)?;
    Ok(())
}

/// True when the destination already holds the file this chunk belongs to.
fn in_place(destination: &Destination, chunk: &CopyChunk) -> bool {
    // Non-blocking: whatever sits at the name, opening it must not hang.
    let Ok(file) = destination.open(destination.name(), OFlag::O_RDONLY | OFlag::O_NONBLOCK) else {
        return false;
    };
    // The size rules most files out without reading them.
    if !file
        .metadata()
        .is_ok_and(|m| m.is_file() && m.len() == chunk.size)
    {
        return false;
    }
    sha256_of(&file).is_ok_and(|h| h.eq_ignore_ascii_case(&chunk.file_sha256))
}

/// sha256 of a file's whole content, lowercase hex. Positioned reads: the handle's
/// cursor may be anywhere.
fn sha256_of(file: &std::fs::File) -> std::io::Result<String> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut at = 0u64;
    loop {
        let n = file.read_at(&mut buf, at)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        at += n as u64;
    }
    Ok(hex(&hasher.finalize()))
}

/// The copy's state file, or None when it is missing or unreadable (then the copy
/// starts over, which is safe: the final hash still guards the result).
fn load_state(destination: &Destination, state_name: &OsStr) -> Option<PartState> {
    let state_path = destination.path_of(state_name);
    let read = destination
        .open(state_name, OFlag::O_RDONLY | OFlag::O_NONBLOCK)
        .and_then(|mut file| {
            let mut text = String::new();
            file.read_to_string(&mut text).map(|_| text)
        });
    let text = match read {
        Ok(t) => t,
        Err(e) if e.kind() == ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(path = %state_path.display(), error = %e, "cannot read copy state; starting over");
            return None;
        }
    };
    match serde_json::from_str(&text) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(path = %state_path.display(), error = %e, "malformed copy state; starting over");
            None
        }
    }
}

/// Write the state atomically: a crash leaves the old state or the new, never half.
fn save_state(
    destination: &Destination,
    state_name: &OsStr,
    state: &PartState,
) -> Result<(), CopyError> {
    let mut tmp = state_name.to_os_string();
    tmp.push(".tmp");
    let json = serde_json::to_vec(state).map_err(CopyError::EncodeState)?;
    let write = || -> std::io::Result<()> {
        let mut f = destination.open(&tmp, OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_TRUNC)?;
        f.write_all(&json)?;
        f.sync_all()?;
        destination.rename(&tmp, state_name)
    };
    write().map_err(|source| {
        let _ = destination.remove(&tmp);
        CopyError::Io {
            action: format!("write the copy state {:?}", destination.path_of(state_name)),
            source,
        }
    })
}

/// Remove a file of the destination's folder; a file already gone is fine.
fn remove_if_exists(destination: &Destination, name: &OsStr) -> Result<(), CopyError> {
    destination.remove(name).map_err(|source| CopyError::Io {
        action: format!("remove {:?}", destination.path_of(name)),
        source,
    })
}

/// `path` with `suffix` appended to its last component.
#[cfg(test)]
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// True for 64 hex digits.
fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Lowercase hex of `bytes`.
fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    s
}

/// A std mutex's guard, also after a panic elsewhere poisoned it: the data (a table of
/// locks, a list of ids) stays valid.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What `copyDst` keeps between runs on one node.
#[derive(Default)]
pub(crate) struct CopyState {
    /// One async lock per destination path, so concurrent `copyDst` runs for the same
    /// file take turns reading and writing its state.
    locks: Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>,
    /// Copies finished on this node since it started, newest last.
    completed: Mutex<VecDeque<(PathBuf, String)>>,
}

impl CopyState {
    /// The lock for `path`, made on first use.
    fn path_lock(&self, path: &Path) -> Arc<tokio::sync::Mutex<()>> {
        lock(&self.locks)
            .entry(path.to_path_buf())
            .or_default()
            .clone()
    }

    /// Forget `path`'s lock when nobody holds or waits for it, so the table does not
    /// grow with every file ever copied.
    fn release_lock(&self, path: &Path) {
        let mut table = lock(&self.locks);
        if table.get(path).is_some_and(|l| Arc::strong_count(l) == 1) {
            table.remove(path);
        }
    }

    /// True when this node finished copy `copy_id` to `path`.
    fn was_completed(&self, path: &Path, copy_id: &str) -> bool {
        lock(&self.completed)
            .iter()
            .any(|(p, id)| p == path && id == copy_id)
    }

    /// Note that copy `copy_id` to `path` is complete, forgetting the oldest beyond
    /// [`REMEMBERED`].
    fn remember_completed(&self, path: &Path, copy_id: &str) {
        let mut done = lock(&self.completed);
        if done.iter().any(|(p, id)| p == path && id == copy_id) {
            return;
        }
        if done.len() >= REMEMBERED {
            done.pop_front();
        }
        done.push_back((path.to_path_buf(), copy_id.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bosun_proto::Status;
    use tokio_util::sync::CancellationToken;

    /// The file root of the test contexts: every scratch folder is made under it.
    fn root() -> PathBuf {
        std::env::temp_dir().join("bosun-copy-tests")
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
                std::env::temp_dir().join(format!("bosun-copy-outside-{}", bosun_proto::new_id()));
            std::fs::create_dir_all(&d).unwrap();
            Scratch(d)
        }

        fn path(&self, name: &str) -> PathBuf {
            self.0.join(name)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A small xorshift generator: random enough for test data and shuffles, and
    /// printed seeds make a failure repeatable.
    struct Rng(u64);

    impl Rng {
        fn new() -> Rng {
            let seed = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1;
            eprintln!("rng seed {seed}");
            Rng(seed)
        }

        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn bytes(&mut self, n: usize) -> Vec<u8> {
            (0..n).map(|_| self.next() as u8).collect()
        }

        fn shuffle<T>(&mut self, v: &mut [T]) {
            for i in (1..v.len()).rev() {
                let j = (self.next() % (i as u64 + 1)) as usize;
                v.swap(i, j);
            }
        }
    }

    /// A node whose one file root is [`root`].
    fn context() -> Context {
        let rx = CancellationToken::new();
        std::fs::create_dir_all(root()).unwrap();
        Context {
            confine: Arc::new(crate::Confinement {
                file_roots: vec![root()],
                ..Default::default()
            }),
            ..crate::test_context("ship1", rx)
        }
    }

    /// A submit sink that answers every batch as queued, and what it was handed, batch by
    /// batch.
    fn collecting() -> (SubmitSink, Arc<Mutex<Vec<Vec<Message>>>>) {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<crate::FollowUps>(1);
        let kept = Arc::new(Mutex::new(Vec::new()));
        let keep = kept.clone();
        tokio::spawn(async move {
            while let Some(batch) = rx.recv().await {
                lock(&keep).push(batch.messages);
                let _ = batch.queued.send(Ok(()));
            }
        });
        (SubmitSink::new(tx), kept)
    }

    /// What copySrc did: its outcome, and the messages it had queued.
    struct Sourced {
        outcome: Outcome,
        submit: Vec<Message>,
    }

    /// Run copySrc with `data` in `context`.
    async fn run_source(data: &[&str], context: &Context) -> Sourced {
        let (sink, kept) = collecting();
        let outcome = run_src(&src_message(data), context, &sink).await;
        let submit = lock(&kept).concat();
        Sourced { outcome, submit }
    }

    fn src_message(data: &[&str]) -> Message {
        Message {
            method: "copySrc".into(),
            data: data.iter().map(|s| s.to_string()).collect(),
            method_timeout: Some(77),
            ..Default::default()
        }
    }

    /// Run copySrc for `src` → `dst` and return its outcome and messages.
    async fn source(src: &Path, dst: &Path, chunk: &str) -> Sourced {
        let (s, d) = (src.display().to_string(), dst.display().to_string());
        run_source(&[&s, "ship2", &d, chunk], &context()).await
    }

    fn chunk_of(m: &Message) -> CopyChunk {
        serde_json::from_str(&m.data[0]).unwrap()
    }

    fn leftovers(dst: &Path) -> Vec<PathBuf> {
        [".bosun-part", ".bosun-part.json", ".bosun-part.json.tmp"]
            .iter()
            .map(|s| sibling(dst, s))
            .filter(|p| p.exists())
            .collect()
    }

    #[tokio::test]
    async fn source_cuts_hashes_and_addresses_the_chunks() {
        let dir = Scratch::new();
        let src = dir.path("src.bin");
        let data = Rng::new().bytes(600_000);
        std::fs::write(&src, &data).unwrap();
        let dst = dir.path("out/dst.bin");
        let h = source(&src, &dst, "262144").await;
        assert_eq!(h.outcome.status, Status::Done);
        let file_sha = hex(&Sha256::digest(&data));
        assert_eq!(
            h.outcome.stdout,
            format!(
                "copying 600000 bytes in 3 chunks to ship2:{} (sha256 {file_sha})",
                dst.display()
            )
        );
        assert_eq!(h.submit.len(), 3);
        let mut reassembled = Vec::new();
        let mut ids = BTreeSet::new();
        for (i, m) in h.submit.iter().enumerate() {
            assert_eq!(m.to_node.as_deref(), Some("ship2"));
            assert_eq!(m.method, "copyDst");
            assert_eq!(m.ordered, Some(true));
            assert_eq!(m.method_timeout, Some(77));
            assert_eq!(m.data.len(), 1);
            let c = chunk_of(m);
            assert!(m.data[0].contains("\"fileSha256\""), "camelCase JSON");
            assert_eq!(c.index, i as u64);
            assert_eq!(c.count, 3);
            assert_eq!(c.size, 600_000);
            assert_eq!(c.offset, reassembled.len() as u64);
            assert_eq!(c.path, dst.display().to_string());
            assert_eq!(c.file_sha256, file_sha);
            let bytes = BASE64.decode(&c.bytes).unwrap();
            assert_eq!(c.sha256, hex(&Sha256::digest(&bytes)));
            reassembled.extend_from_slice(&bytes);
            ids.insert(c.copy_id);
        }
        assert_eq!(reassembled, data);
        assert_eq!(ids.len(), 1, "one copy id for all chunks");
        assert!(
            bosun_proto::Message {
                id: None,
                ..h.submit[0].clone()
            }
            .validate()
            .is_ok(),
            "the node can submit the chunk messages"
        );
    }

    #[tokio::test]
    async fn each_node_keeps_its_own_record_of_finished_copies() {
        let dir = Scratch::new();
        let src = dir.path("src.bin");
        std::fs::write(&src, Rng::new().bytes(5_000)).unwrap();
        let dst = dir.path("dst.bin");
        let h = source(&src, &dst, "4096").await;
        let (first, second) = (context(), context());
        for m in &h.submit {
            let o = run_dst(m, &first).await;
            assert_eq!(o.status, Status::Done, "{:?}", o.error);
        }
        let copy_id = chunk_of(&h.submit[0]).copy_id;
        assert!(first.state.copies.was_completed(&dst, &copy_id));
        assert!(
            !second.state.copies.was_completed(&dst, &copy_id),
            "another node in the same process does not share the record"
        );
    }

    #[tokio::test]
    async fn shuffled_chunks_with_repeats_make_an_identical_file() {
        let dir = Scratch::new();
        let mut rng = Rng::new();
        let src = dir.path("src.bin");
        let data = rng.bytes(600_000);
        std::fs::write(&src, &data).unwrap();
        let dst = dir.path("deep/er/dst.bin");
        let h = source(&src, &dst, "16384").await;
        assert_eq!(h.submit.len(), 37);
        let mut deliveries: Vec<Message> = h.submit.clone();
        deliveries.extend(h.submit.iter().step_by(3).cloned());
        rng.shuffle(&mut deliveries);
        let ctx = context();
        let mut completes = 0;
        for m in &deliveries {
            let o = run_dst(m, &ctx).await;
            assert_eq!(o.status, Status::Done, "{:?}", o.error);
            if o.stdout.starts_with("copy complete:") && !o.stdout.contains("already") {
                completes += 1;
            }
        }
        assert_eq!(completes, 1, "the copy completed exactly once");
        assert!(std::fs::read(&dst).unwrap() == data, "identical content");
        assert_eq!(leftovers(&dst), Vec::<PathBuf>::new());
        // A repeat long after the end changes nothing.
        let o = run_dst(&h.submit[5], &ctx).await;
        assert_eq!(o.status, Status::Done);
        assert!(o.stdout.contains("already in place"), "{}", o.stdout);
        assert_eq!(leftovers(&dst), Vec::<PathBuf>::new());
    }

    #[tokio::test]
    async fn a_copy_resumes_from_disk_with_a_fresh_context() {
        let dir = Scratch::new();
        let src = dir.path("src.bin");
        let data = Rng::new().bytes(300_000);
        std::fs::write(&src, &data).unwrap();
        let dst = dir.path("dst.bin");
        let messages = source(&src, &dst, "8192").await.submit;
        let (first, rest) = messages.split_at(messages.len() / 2);
        {
            let ctx = context();
            for m in first {
                let o = run_dst(m, &ctx).await;
                assert_eq!(o.status, Status::Done);
                assert!(o.stdout.contains(" written ("), "{}", o.stdout);
            }
        }
        assert!(!dst.exists());
        assert_eq!(leftovers(&dst).len(), 2, "part and state are on disk");
        let state: PartState = serde_json::from_str(
            &std::fs::read_to_string(sibling(&dst, ".bosun-part.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(state.received.len(), first.len());
        // As after a restart: a new context, nothing kept in memory but the files.
        let ctx = context();
        let mut last = None;
        for m in rest {
            last = Some(run_dst(m, &ctx).await);
        }
        let last = last.unwrap();
        assert_eq!(last.status, Status::Done);
        assert!(last.stdout.starts_with("copy complete:"), "{}", last.stdout);
        assert!(std::fs::read(&dst).unwrap() == data);
        assert!(leftovers(&dst).is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_chunks_for_one_path_take_turns() {
        let dir = Scratch::new();
        let src = dir.path("src.bin");
        let data = Rng::new().bytes(200_000);
        std::fs::write(&src, &data).unwrap();
        let dst = dir.path("dst.bin");
        let messages = source(&src, &dst, "4096").await.submit;
        let ctx = context();
        let tasks: Vec<_> = messages
            .into_iter()
            .map(|m| {
                let ctx = ctx.clone();
                tokio::spawn(async move { run_dst(&m, &ctx).await })
            })
            .collect();
        for t in tasks {
            let o = t.await.unwrap();
            assert_eq!(o.status, Status::Done, "{:?}", o.error);
        }
        assert!(std::fs::read(&dst).unwrap() == data);
        assert!(leftovers(&dst).is_empty());
        assert!(
            !lock(&ctx.state.copies.locks).contains_key(&dst),
            "the path's lock is forgotten once idle"
        );
    }

    #[tokio::test]
    async fn a_tampered_chunk_is_refused_and_the_file_never_appears() {
        let dir = Scratch::new();
        let src = dir.path("src.bin");
        std::fs::write(&src, Rng::new().bytes(50_000)).unwrap();
        let dst = dir.path("dst.bin");
        let mut messages = source(&src, &dst, "10000").await.submit;
        let mut bad = chunk_of(&messages[2]);
        let mut bytes = BASE64.decode(&bad.bytes).unwrap();
        bytes[17] ^= 0xff;
        bad.bytes = BASE64.encode(&bytes);
        messages[2].data = vec![serde_json::to_string(&bad).unwrap()];
        let ctx = context();
        for (i, m) in messages.iter().enumerate() {
            let o = run_dst(m, &ctx).await;
            if i == 2 {
                assert_eq!(o.status, Status::Failed);
                let e = o.error.unwrap();
                assert!(
                    e.contains(&format!("chunk 3/5 of copy {}", bad.copy_id)),
                    "{e}"
                );
                assert!(e.contains("corrupt"), "{e}");
            } else {
                assert_eq!(o.status, Status::Done, "{:?}", o.error);
                assert!(!o.stdout.starts_with("copy complete"), "{}", o.stdout);
            }
        }
        assert!(!dst.exists(), "an incomplete copy never lands at the path");
    }

    #[tokio::test]
    async fn a_file_hash_mismatch_fails_and_cleans_up() {
        let dir = Scratch::new();
        let src = dir.path("src.bin");
        std::fs::write(&src, Rng::new().bytes(30_000)).unwrap();
        let dst = dir.path("dst.bin");
        let mut messages = source(&src, &dst, "10000").await.submit;
        // Altered bytes with a matching chunk hash: only the file hash can catch it.
        let mut bad = chunk_of(&messages[1]);
        let mut bytes = BASE64.decode(&bad.bytes).unwrap();
        bytes[0] ^= 1;
        bad.bytes = BASE64.encode(&bytes);
        bad.sha256 = hex(&Sha256::digest(&bytes));
        messages[1].data = vec![serde_json::to_string(&bad).unwrap()];
        let ctx = context();
        let outcomes: Vec<Outcome> = {
            let mut v = Vec::new();
            for m in &messages {
                v.push(run_dst(m, &ctx).await);
            }
            v
        };
        let last = outcomes.last().unwrap();
        assert_eq!(last.status, Status::Failed);
        let e = last.error.clone().unwrap();
        assert!(e.contains(&bad.copy_id) && e.contains("sha256"), "{e}");
        assert!(!dst.exists());
        assert!(leftovers(&dst).is_empty(), "part and state removed");
    }

    #[tokio::test]
    async fn a_new_copy_to_the_same_path_starts_over() {
        let dir = Scratch::new();
        let (a, b) = (dir.path("a.bin"), dir.path("b.bin"));
        let mut rng = Rng::new();
        std::fs::write(&a, rng.bytes(20_000)).unwrap();
        let b_data = rng.bytes(15_000);
        std::fs::write(&b, &b_data).unwrap();
        let dst = dir.path("dst.bin");
        let old = source(&a, &dst, "4096").await.submit;
        let new = source(&b, &dst, "4096").await.submit;
        let ctx = context();
        for m in &old[..3] {
            assert_eq!(run_dst(m, &ctx).await.status, Status::Done);
        }
        for m in &new {
            assert_eq!(run_dst(m, &ctx).await.status, Status::Done);
        }
        assert!(std::fs::read(&dst).unwrap() == b_data);
        assert!(leftovers(&dst).is_empty());
    }

    #[tokio::test]
    async fn an_empty_file_is_copied_as_one_empty_chunk() {
        let dir = Scratch::new();
        let src = dir.path("empty");
        std::fs::write(&src, b"").unwrap();
        let dst = dir.path("copy-of-empty");
        let h = source(&src, &dst, "4096").await;
        assert_eq!(h.submit.len(), 1);
        let c = chunk_of(&h.submit[0]);
        assert_eq!((c.index, c.count, c.size, c.bytes.as_str()), (0, 1, 0, ""));
        assert!(
            h.outcome.stdout.contains("in 1 chunk to"),
            "{}",
            h.outcome.stdout
        );
        let o = run_dst(&h.submit[0], &context()).await;
        assert!(o.stdout.starts_with("copy complete:"), "{}", o.stdout);
        assert_eq!(std::fs::metadata(&dst).unwrap().len(), 0);
        assert!(leftovers(&dst).is_empty());
    }

    #[tokio::test]
    async fn chunk_size_is_clamped() {
        let dir = Scratch::new();
        let src = dir.path("src.bin");
        std::fs::write(&src, vec![7u8; 1_200_000]).unwrap();
        let dst = dir.path("dst");
        assert_eq!(source(&src, &dst, "10").await.submit.len(), 1172);
        assert_eq!(source(&src, &dst, "99999999").await.submit.len(), 3);
        let h = run_source(&[&src.display().to_string(), "ship2", "/tmp/x"], &context()).await;
        assert_eq!(h.submit.len(), 5, "256 KiB by default");
    }

    #[tokio::test]
    async fn bad_source_requests_fail_without_messages() {
        let dir = Scratch::new();
        let src = dir.path("src.bin");
        std::fs::write(&src, b"abc").unwrap();
        let s = src.display().to_string();
        let missing = dir.path("missing").display().to_string();
        let cases: [(&[&str], &str); 5] = [
            (&[&missing, "ship2", "/tmp/x"], "cannot open"),
            (&[&s, "ship 2", "/tmp/x"], "bad destination node"),
            (&[&s, "ship2", "/tmp/x", "lots"], "not a whole number"),
            (&[&s, "ship2"], "copySrc needs data"),
            (&[&s, "ship2", "", "1024"], "copySrc needs data"),
        ];
        for (data, want) in cases {
            let h = run_source(data, &context()).await;
            assert_eq!(h.outcome.status, Status::Failed, "{data:?}");
            let e = h.outcome.error.unwrap();
            assert!(e.contains(want), "{data:?}: {e}");
            assert!(h.submit.is_empty());
        }
    }

    #[tokio::test]
    async fn malformed_chunks_fail_with_the_reason() {
        let ctx = context();
        let msg = |data: &str| Message {
            method: "copyDst".into(),
            data: vec![data.to_string()],
            ..Default::default()
        };
        let o = run_dst(&msg("{not json"), &ctx).await;
        assert_eq!(o.status, Status::Failed);
        assert!(o.error.unwrap().starts_with("malformed copy chunk"));
        let o = run_dst(&Message::default(), &ctx).await;
        assert!(o.error.unwrap().contains("copyDst needs data"));

        let good = plan(b"hello", "/tmp/bosun-never-written", 1024, "c1")
            .pop()
            .unwrap();
        let variants: Vec<(CopyChunk, &str)> = vec![
            (
                CopyChunk {
                    index: 1,
                    ..good.clone()
                },
                "outside",
            ),
            (
                CopyChunk {
                    count: 0,
                    ..good.clone()
                },
                "outside",
            ),
            (
                CopyChunk {
                    size: 2,
                    ..good.clone()
                },
                "go past the file size",
            ),
            (
                CopyChunk {
                    offset: u64::MAX,
                    ..good.clone()
                },
                "go past the file size",
            ),
            (
                CopyChunk {
                    bytes: "@@@".into(),
                    ..good.clone()
                },
                "not base64",
            ),
            (
                CopyChunk {
                    sha256: "xyz".into(),
                    ..good.clone()
                },
                "64 hex digits",
            ),
            (
                CopyChunk {
                    path: "/tmp/dir/".into(),
                    ..good.clone()
                },
                "does not name a file",
            ),
            (
                CopyChunk {
                    copy_id: String::new(),
                    ..good.clone()
                },
                "no copyId",
            ),
        ];
        for (chunk, want) in variants {
            let o = run_dst(&msg(&serde_json::to_string(&chunk).unwrap()), &ctx).await;
            assert_eq!(o.status, Status::Failed, "{chunk:?}");
            let e = o.error.unwrap();
            assert!(e.contains(want), "{e}");
        }
        assert!(!Path::new("/tmp/bosun-never-written").exists());
    }

    fn dst_message(chunk: &CopyChunk) -> Message {
        Message {
            method: "copyDst".into(),
            data: vec![serde_json::to_string(chunk).unwrap()],
            ..Default::default()
        }
    }

    /// Run every chunk of `bytes` for `path` at the destination; the last outcome.
    async fn deliver(bytes: &[u8], path: &str, context: &Context) -> Outcome {
        let mut last = None;
        for chunk in plan(bytes, path, 4096, &bosun_proto::new_id()) {
            last = Some(run_dst(&dst_message(&chunk), context).await);
        }
        last.unwrap()
    }

    #[tokio::test]
    async fn copy_src_reads_only_inside_the_roots() {
        let dir = Scratch::new();
        let out = Scratch::outside();
        let secret = out.path("secret");
        std::fs::write(&secret, b"secret").unwrap();
        std::os::unix::fs::symlink(&secret, dir.path("link")).unwrap();
        std::os::unix::fs::symlink(&out.0, dir.path("folder")).unwrap();
        let inside = dir.path("x").display().to_string();
        let cases = [
            (
                secret.display().to_string(),
                "is outside this node's file roots",
            ),
            (
                format!("{}/../../{}", dir.0.display(), "etc/passwd"),
                "contains `..`",
            ),
            (dir.path("link").display().to_string(), "resolves to"),
            (
                dir.path("folder/secret").display().to_string(),
                "resolves to",
            ),
        ];
        for (src, want) in cases {
            let h = run_source(&[&src, "ship2", &inside], &context()).await;
            assert_eq!(h.outcome.status, Status::Failed, "{src}");
            let e = h.outcome.error.unwrap();
            assert!(
                e.contains(want) && e.contains("see file_roots"),
                "{src}: {e}"
            );
            assert!(h.submit.is_empty(), "{src}: nothing was sent");
        }
    }

    #[tokio::test]
    async fn copy_src_refuses_a_file_over_the_limit_without_reading_it() {
        let dir = Scratch::new();
        let src = dir.path("huge.img");
        // Sparse: 64 GiB that take no disk. Reading it, let alone holding it, would take
        // minutes and more memory than the machine has.
        std::fs::File::create(&src)
            .unwrap()
            .set_len(64 << 30)
            .unwrap();
        let ctx = Context {
            confine: Arc::new(crate::Confinement {
                copy_max_bytes: 1 << 20,
                ..(*context().confine).clone()
            }),
            ..context()
        };
        let t = std::time::Instant::now();
        let h = run_source(&[&src.display().to_string(), "ship2", "dst"], &ctx).await;
        assert!(
            t.elapsed() < std::time::Duration::from_secs(5),
            "{:?}",
            t.elapsed()
        );
        assert_eq!(h.outcome.status, Status::Failed);
        assert_eq!(
            h.outcome.error.unwrap(),
            format!(
                "{} is 68719476736 bytes, more than this node's copy_max_bytes (1048576); copy a smaller file or raise copy_max_bytes",
                src.display()
            )
        );
        assert!(h.submit.is_empty());
    }

    #[tokio::test]
    async fn copy_src_reads_each_batch_only_after_the_last_is_queued() {
        let dir = Scratch::new();
        let src = dir.path("src.bin");
        let chunk = MAX_CHUNK as usize;
        let per_batch = (BATCH_BYTES as usize) / chunk;
        let first = vec![1u8; chunk * per_batch];
        let rest = vec![2u8; chunk * per_batch + 100];
        std::fs::write(&src, [first.as_slice(), rest.as_slice()].concat()).unwrap();
        // A node that, before it says the first batch is queued, rewrites the part of the
        // file not sent yet. A source that read ahead would send the old bytes.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<crate::FollowUps>(1);
        let changer = {
            let src = src.clone();
            tokio::spawn(async move {
                let mut batches = Vec::new();
                while let Some(batch) = rx.recv().await {
                    if batches.is_empty() {
                        let file = std::fs::OpenOptions::new().write(true).open(&src).unwrap();
                        file.write_all_at(&vec![3u8; rest.len()], first.len() as u64)
                            .unwrap();
                    }
                    batches.push(batch.messages);
                    let _ = batch.queued.send(Ok(()));
                }
                batches
            })
        };
        let data = [
            &src.display().to_string(),
            "ship2",
            "dst",
            &chunk.to_string(),
        ];
        let outcome = run_src(&src_message(&data), &context(), &SubmitSink::new(tx)).await;
        let batches = changer.await.unwrap();
        let sizes: Vec<usize> = batches.iter().map(Vec::len).collect();
        assert_eq!(sizes, [per_batch, per_batch, 1], "a batch at a time");
        let later: Vec<u8> = batches[1..]
            .concat()
            .iter()
            .flat_map(|m| BASE64.decode(chunk_of(m).bytes).unwrap())
            .collect();
        assert!(
            later.iter().all(|b| *b == 3),
            "read after the first batch was queued"
        );
        assert_eq!(outcome.status, Status::Failed);
        let e = outcome.error.unwrap();
        assert!(e.contains("changed while it was copied"), "{e}");
    }

    #[tokio::test]
    async fn copy_src_fails_when_the_node_does_not_queue_its_chunks() {
        let dir = Scratch::new();
        let src = dir.path("src.bin");
        std::fs::write(&src, b"abc").unwrap();
        let outcome = run_src(
            &src_message(&[&src.display().to_string(), "ship2", "dst"]),
            &context(),
            &SubmitSink::none(),
        )
        .await;
        assert_eq!(outcome.status, Status::Failed);
        let e = outcome.error.unwrap();
        assert!(e.starts_with("chunks 1..1 of 1 could not be queued"), "{e}");
    }

    #[tokio::test]
    async fn copy_dst_writes_only_inside_the_roots() {
        let dir = Scratch::new();
        let out = Scratch::outside();
        std::os::unix::fs::symlink(&out.0, dir.path("out")).unwrap();
        let ctx = context();
        let cases = [
            (
                out.path("new/file").display().to_string(),
                "is outside this node's file roots",
            ),
            (format!("{}/../escaped", dir.0.display()), "contains `..`"),
            ("../escaped".to_string(), "contains `..`"),
            (dir.path("out/file").display().to_string(), "resolves to"),
            (
                dir.path("out/deeper/file").display().to_string(),
                "resolves to",
            ),
        ];
        for (path, want) in cases {
            let o = deliver(b"payload", &path, &ctx).await;
            assert_eq!(o.status, Status::Failed, "{path}");
            let e = o.error.unwrap();
            assert!(
                e.contains(want) && e.contains("see file_roots"),
                "{path}: {e}"
            );
        }
        let mut written: Vec<_> = std::fs::read_dir(&out.0).unwrap().collect();
        assert!(written.is_empty(), "nothing outside: {:?}", written.pop());
        assert!(!root().parent().unwrap().join("escaped").exists());
    }

    #[tokio::test]
    async fn copy_dst_replaces_a_symlink_at_its_name_and_never_writes_through_one() {
        let dir = Scratch::new();
        let out = Scratch::outside();
        let victim = out.path("victim");
        std::fs::write(&victim, b"untouched").unwrap();
        let dst = dir.path("dst.bin");
        std::os::unix::fs::symlink(&victim, &dst).unwrap();
        std::os::unix::fs::symlink(&victim, sibling(&dst, ".bosun-part")).unwrap();
        let o = deliver(b"new content", &dst.display().to_string(), &context()).await;
        assert!(o.stdout.starts_with("copy complete:"), "{o:?}");
        assert_eq!(std::fs::read(&victim).unwrap(), b"untouched");
        assert!(std::fs::symlink_metadata(&dst).unwrap().is_file());
        assert_eq!(std::fs::read(&dst).unwrap(), b"new content");
        assert!(leftovers(&dst).is_empty());
    }

    #[tokio::test]
    async fn copy_dst_takes_a_relative_path_under_the_first_root() {
        let ctx = context();
        let name = format!("relative-{}/dst.bin", bosun_proto::new_id());
        let o = deliver(b"relative", &name, &ctx).await;
        assert!(o.stdout.starts_with("copy complete:"), "{o:?}");
        let landed = root().join(&name);
        assert_eq!(std::fs::read(&landed).unwrap(), b"relative");
        let _ = std::fs::remove_dir_all(landed.parent().unwrap());
    }
}
