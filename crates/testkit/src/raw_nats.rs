//! A bare NATS client on a plain TCP socket, speaking the text protocol by hand: the
//! way an attacker (or a careful test) sees the broker. Every call writes its command
//! and a `PING`, and returns what the server said before its `PONG` (`-ERR` lines, for
//! a refusal), so a test observes the broker's verdict instead of waiting for it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use base64::Engine;

/// A raw NATS connection.
pub struct RawNats {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

/// What the server answered to one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The lines before the `PONG` (or before the server hung up): `-ERR …` for a
    /// refusal, `MSG …` and payloads for deliveries.
    pub lines: Vec<String>,
    /// True when the server answered the `PING`: the connection is still open.
    pub pong: bool,
}

impl Answer {
    /// The `-ERR` lines.
    pub fn errors(&self) -> Vec<&str> {
        self.lines
            .iter()
            .filter(|line| line.starts_with("-ERR"))
            .map(String::as_str)
            .collect()
    }

    /// True when the server took the command without complaint.
    pub fn accepted(&self) -> bool {
        self.pong && self.errors().is_empty()
    }
}

impl RawNats {
    /// Connect to `nats://host:port` (plain TCP) and send `CONNECT`, signing the
    /// server's nonce with `key` when given (an nkeys user pair). Returns the
    /// connection and the server's answer to the `CONNECT`.
    pub fn connect(url: &str, key: Option<&nkeys::KeyPair>) -> (RawNats, Answer) {
        let address = url.trim_start_matches("nats://");
        let stream = TcpStream::connect(address).unwrap_or_else(|e| panic!("connect {url}: {e}"));
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("set a read timeout");
        let mut raw = RawNats {
            reader: BufReader::new(stream.try_clone().expect("clone the socket")),
            writer: stream,
        };
        let info = raw.line().expect("the server's INFO");
        let info: serde_json::Value = serde_json::from_str(
            info.strip_prefix("INFO ")
                .unwrap_or_else(|| panic!("not INFO: {info}")),
        )
        .expect("INFO is JSON");
        let mut connect = serde_json::json!({
            "verbose": false, "pedantic": false, "name": "raw", "lang": "raw",
            "version": "0", "protocol": 1, "headers": true, "no_responders": true,
        });
        if let Some(key) = key {
            let nonce = info["nonce"].as_str().unwrap_or_default();
            let signature = key.sign(nonce.as_bytes()).expect("sign the nonce");
            connect["nkey"] = key.public_key().into();
            connect["sig"] = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(signature)
                .into();
        }
        let answer = raw.command(&format!("CONNECT {connect}\r\n"));
        (raw, answer)
    }

    /// `SUB subject sid`.
    pub fn subscribe(&mut self, subject: &str, sid: u32) -> Answer {
        self.command(&format!("SUB {subject} {sid}\r\n"))
    }

    /// `PUB subject` with `payload`.
    pub fn publish(&mut self, subject: &str, payload: &[u8]) -> Answer {
        let mut command = format!("PUB {subject} {}\r\n", payload.len()).into_bytes();
        command.extend_from_slice(payload);
        command.extend_from_slice(b"\r\n");
        self.send(&command)
    }

    fn command(&mut self, text: &str) -> Answer {
        self.send(text.as_bytes())
    }

    fn send(&mut self, bytes: &[u8]) -> Answer {
        let mut lines = Vec::new();
        let written = self
            .writer
            .write_all(bytes)
            .and_then(|()| self.writer.write_all(b"PING\r\n"));
        if written.is_err() {
            return Answer { lines, pong: false };
        }
        while let Some(line) = self.line() {
            if line == "PONG" {
                return Answer { lines, pong: true };
            }
            if line == "PING" {
                let _ = self.writer.write_all(b"PONG\r\n");
                continue;
            }
            // A delivery: `MSG subject sid [reply] size` (or `HMSG … hsize size`), then
            // that many bytes of payload (signed frames are binary) and a CRLF.
            if line.starts_with("MSG ") || line.starts_with("HMSG ") {
                let size: usize = line
                    .rsplit(' ')
                    .next()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0);
                let mut payload = vec![0; size + 2];
                if self.reader.read_exact(&mut payload).is_err() {
                    lines.push(line);
                    break;
                }
            }
            lines.push(line);
        }
        Answer { lines, pong: false }
    }

    /// One line, without its CRLF; `None` when the server hung up.
    fn line(&mut self) -> Option<String> {
        let mut line = Vec::new();
        match self.reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(String::from_utf8_lossy(&line).trim_end().to_string()),
        }
    }
}
