//! The sockets for Docker's syslog log driver.
//!
//! Docker dials `syslog-address=unix://PATH` as a **stream** socket (a datagram socket
//! there makes `docker run` fail with "protocol wrong type for socket"), and
//! `unixgram://PATH` as a datagram socket. So the configured path is a stream socket, and
//! a datagram socket is bound beside it ([`datagram_socket_path`]).
//!
//! With `syslog-format=rfc5424micro` and `tag={{.FullID}}`, Docker sends
//! `<30>1 2026-01-01T10:00:00.123456Z host <full id> <pid> <full id> - <line>\n`: the tag is
//! the APP-NAME (and the MSGID). On a stream each message ends with a newline (Docker adds
//! no octet count on unix sockets); on a datagram socket one datagram is one message.
//! Every message becomes a LOG record for the container named by its APP-NAME. What does
//! not parse as RFC 5424 is logged at debug and skipped.

use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tokio::io::AsyncReadExt;
use tokio::net::{UnixDatagram, UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::lines::Lines;
use super::stream::Record;
use super::{Capture, Topic};

/// Longest message kept whole; a longer line on a stream is cut into pieces this long.
pub(super) const MAX_MESSAGE: usize = 256 * 1024;

/// The datagram socket bound beside the stream socket `syslog_socket`, for
/// `syslog-address=unixgram://…`: `logs.sock` → `logs.dgram.sock`.
pub fn datagram_socket_path(syslog_socket: &Path) -> PathBuf {
    syslog_socket.with_extension("dgram.sock")
}

/// The bound sockets.
pub(super) struct Sockets {
    stream_path: PathBuf,
    datagram_path: PathBuf,
    listener: UnixListener,
    datagram: UnixDatagram,
}

impl Sockets {
    /// Bind the stream socket at `path` and the datagram socket beside it: create the
    /// parent folder, replace stale sockets, and make both writable by the node's user and
    /// group only (0660): the Docker daemon, root, writes to them; other users cannot
    /// forge log lines.
    pub(super) fn bind(path: &Path) -> io::Result<Sockets> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| annotate(e, parent))?;
        }
        let datagram_path = datagram_socket_path(path);
        remove_stale(path)?;
        remove_stale(&datagram_path)?;
        let listener = UnixListener::bind(path).map_err(|e| annotate(e, path))?;
        let datagram =
            UnixDatagram::bind(&datagram_path).map_err(|e| annotate(e, &datagram_path))?;
        for p in [path, datagram_path.as_path()] {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o660))
                .map_err(|e| annotate(e, p))?;
        }
        Ok(Sockets {
            stream_path: path.to_path_buf(),
            datagram_path,
            listener,
            datagram,
        })
    }
}

fn annotate(e: io::Error, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("syslog socket {}: {e}", path.display()))
}

/// Remove a socket left by an earlier run; refuse to remove anything else.
fn remove_stale(path: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            std::fs::remove_file(path).map_err(|e| annotate(e, path))
        }
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "syslog socket {} exists and is not a socket; remove it or choose another path",
                path.display()
            ),
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(annotate(e, path)),
    }
}

/// Take messages on both sockets until shutdown, then remove the socket files.
pub(super) async fn serve(
    sockets: Sockets,
    capture: Capture,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    tracing::info!(
        stream = %sockets.stream_path.display(),
        datagram = %sockets.datagram_path.display(),
        "taking container logs from Docker's syslog driver"
    );
    let mut buf = vec![0u8; MAX_MESSAGE];
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = sockets.listener.accept() => match accepted {
                Ok((conn, _)) => {
                    tracker.spawn(read_stream(conn, capture.clone(), shutdown.clone()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "syslog socket accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            },
            received = sockets.datagram.recv(&mut buf) => match received {
                Ok(n) => take_message(&capture, &buf[..n]),
                Err(e) => {
                    tracing::warn!(error = %e, "syslog datagram receive failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            },
        }
    }
    for p in [&sockets.stream_path, &sockets.datagram_path] {
        let _ = std::fs::remove_file(p);
    }
}

/// One Docker logger's connection: newline-separated messages.
async fn read_stream(mut conn: UnixStream, capture: Capture, shutdown: CancellationToken) {
    let mut messages = Lines::new(MAX_MESSAGE);
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = tokio::select! {
            _ = shutdown.cancelled() => break,
            read = conn.read(&mut chunk) => match read {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => {
                    tracing::debug!(error = %e, "syslog stream connection failed");
                    break;
                }
            },
        };
        messages.push(&chunk[..n], |message| take_message(&capture, message));
    }
    messages.finish(|message| take_message(&capture, message));
}

/// Write one message as a LOG record, or skip it.
fn take_message(capture: &Capture, bytes: &[u8]) {
    if let Some(record) = message_record(bytes) {
        capture.send(record);
    }
}

/// The LOG record one message becomes, for the container named by its APP-NAME; `None`
/// (logged at debug) when it is not RFC 5424.
pub(super) fn message_record(bytes: &[u8]) -> Option<Record> {
    let text = String::from_utf8_lossy(bytes);
    match parse(&text) {
        Some((app, msg)) => Some(Record {
            topic: Topic::Log,
            container: app.map(str::to_string),
            text: msg.to_string(),
        }),
        None if text.trim().is_empty() => None,
        None => {
            let shown: String = text.chars().take(200).collect();
            tracing::debug!(message = %shown, "syslog message skipped: not RFC 5424");
            None
        }
    }
}

/// Parse one RFC 5424 message (a trailing newline is allowed): its APP-NAME and its MSG.
/// The MSG keeps its leading and trailing spaces, which the parser would drop.
pub(super) fn parse(message: &str) -> Option<(Option<&str>, &str)> {
    let message = message
        .strip_suffix('\n')
        .map(|m| m.strip_suffix('\r').unwrap_or(m))
        .unwrap_or(message);
    let parsed = syslog_loose::parse_message_with_year_exact(
        message,
        |_| 1970,
        syslog_loose::Variant::RFC5424,
    )
    .ok()?;
    let msg = original_msg(message, parsed.msg);
    let msg = msg.strip_prefix('\u{feff}').unwrap_or(msg);
    Some((parsed.appname, msg))
}

/// The MSG as sent: the parser trims the whole message and eats every space after the
/// structured data, where RFC 5424 puts exactly one.
fn original_msg<'a>(message: &'a str, parsed: &'a str) -> &'a str {
    let base = message.as_ptr() as usize;
    let Some(offset) = (parsed.as_ptr() as usize).checked_sub(base) else {
        return parsed;
    };
    if offset > message.len() || !message.is_char_boundary(offset) {
        return parsed;
    }
    let head = message[..offset].trim_end_matches(' ');
    if !(head.ends_with('-') || head.ends_with(']')) {
        return &message[offset..];
    }
    if head.len() < offset {
        return &message[head.len() + 1..];
    }
    // Nothing between the structured data and the parsed MSG: an empty MSG stands for
    // trailing spaces, the first of which is the separator.
    let rest = &message[offset..];
    if parsed.is_empty() {
        rest.strip_prefix(' ').unwrap_or(rest)
    } else {
        rest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "33f66876b394045525a50606e938527d117d1532a9137f0e28777bfce1e0847e";

    #[test]
    fn docker_rfc5424micro_message() {
        let m = format!("<30>1 2026-01-01T10:00:00.123456Z host {ID} 123 {ID} - hello world\n");
        assert_eq!(parse(&m), Some((Some(ID), "hello world")));
        let m = format!("<27>1 2026-01-01T11:00:00.123456+01:00 host {ID} 123 {ID} - err");
        assert_eq!(parse(&m), Some((Some(ID), "err")));
    }

    #[test]
    fn message_keeps_its_spaces() {
        let m = format!("<30>1 2026-01-01T10:00:00.123456Z h {ID} 1 {ID} -    indented  \n");
        assert_eq!(parse(&m), Some((Some(ID), "   indented  ")));
        let m = format!("<30>1 2026-01-01T10:00:00.123456Z h {ID} 1 {ID} [a b=\"c\"]  x");
        assert_eq!(parse(&m), Some((Some(ID), " x")));
        let m = format!("<30>1 2026-01-01T10:00:00.123456Z h {ID} 1 {ID} - ");
        assert_eq!(parse(&m), Some((Some(ID), "")));
        let m = format!("<30>1 2026-01-01T10:00:00.123456Z h {ID} 1 {ID} -   ");
        assert_eq!(parse(&m), Some((Some(ID), "  ")));
    }

    #[test]
    fn garbage_is_refused() {
        assert_eq!(parse("hello"), None);
        assert_eq!(parse(""), None);
        assert_eq!(parse("<30>x"), None);
    }
}
