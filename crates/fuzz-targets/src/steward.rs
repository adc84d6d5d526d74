//! Message input from outside: message text (JSON or YAML) and the byte streams of
//! `bosun.sock` and steward's TCP port.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bosun_ingress::control::ControlRequest;
use bosun_ingress::inputs::{self, Input, ReadError};
use bosun_ingress::ops;
use bosun_proto::{Message, Method};
use serde_json::Value;
use tokio::io::{AsyncRead, ReadBuf};

use crate::check;

/// Message text, as the read and startup folders and `POST /v1/messages` parse it: JSON
/// or YAML, one message or a list. Every message that parses is checked.
pub fn message_text(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        // Both refuse what is not UTF-8 before parsing.
        return;
    };
    match inputs::parse_messages(text) {
        Ok(messages) => {
            assert!(
                !messages.is_empty(),
                "parse_messages never gives no messages"
            );
            messages.iter().for_each(check::message);
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    if let Ok(messages) = Message::parse_batch(text) {
        messages.iter().for_each(check::message);
    }
}

/// One connection to `bosun.sock` or the steward TCP port: the first byte says how the
/// rest arrives (in pieces of 1 to 64 bytes), the rest is what the client sends. Read
/// whole and in pieces, the input must read the same; then it is handled as the socket
/// handles it: a control request, or messages.
pub fn socket_input(data: &[u8]) {
    let Some((&how, input)) = data.split_first() else {
        return;
    };
    let piece = usize::from(how % 64) + 1;
    let limit = input.len().max(1);
    let whole = read(input, input.len().max(1), limit);
    let pieces = read(input, piece, limit);
    assert_eq!(
        shown(&whole),
        shown(&pieces),
        "read whole and in pieces of {piece} bytes, the input reads differently"
    );
    // Under a smaller limit the input is refused as too large, or read as before.
    let small_limit = usize::from(how).max(1);
    let limited = read(input, piece, small_limit);
    if input.len() <= small_limit {
        assert_eq!(shown(&limited), shown(&whole), "within the limit");
    }
    match whole {
        Ok(Input::Json(value)) => socket_value(value),
        Ok(Input::Yaml(text)) => {
            if let Ok(messages) = inputs::parse_messages(&text) {
                messages.iter().for_each(check::message);
            }
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}

/// One JSON value on the socket: a control request (it has `op`), or messages.
fn socket_value(value: Value) {
    if !value.as_object().is_some_and(|o| o.contains_key("op")) {
        if let Ok(messages) = inputs::messages_from_json(value) {
            messages.iter().for_each(check::message);
        }
        return;
    }
    let Ok(request) = serde_json::from_value::<ControlRequest>(value) else {
        return;
    };
    match request {
        ControlRequest::Submit { messages } => {
            if let Ok(messages) = inputs::messages_from_json(Value::Array(messages)) {
                messages.iter().for_each(check::message);
            }
        }
        ControlRequest::Call { message, .. } => check::message(&message),
        ControlRequest::ContainerRun {
            spec,
            nodes,
            instances,
            constraints,
            create_only,
        } => {
            if let Ok(m) =
                ops::container_message("n1", &spec, nodes, instances, constraints, create_only)
            {
                check::container_message(&spec, &m);
            }
        }
        ControlRequest::ContainerOp { method, id, args } => {
            if let Some(parsed) = Method::parse(&method) {
                let mut data = vec![id];
                data.extend(args);
                check::message(&ops::message("n1", parsed.method, data));
            }
        }
        _ => {}
    }
}

/// Read one input from `input` arriving in pieces of `piece` bytes, under `limit`.
pub(crate) fn read(input: &[u8], piece: usize, limit: usize) -> Result<Input, ReadError> {
    let mut stream = Pieces { input, piece };
    RUNTIME.with(|runtime| runtime.block_on(inputs::read_message_input(&mut stream, limit)))
}

/// A result as text, to compare two reads: the input read, or the kind of refusal. The
/// position in a refusal may differ: a read in pieces refuses as soon as what it has is
/// wrong (a number already out of range, say), where a whole read saw more.
fn shown(read: &Result<Input, ReadError>) -> String {
    let refusal = match read {
        Ok(input) => return format!("{input:?}"),
        Err(ReadError::Read(_)) => "read",
        Err(ReadError::TooLarge { .. }) => "too large",
        Err(ReadError::Nothing) => "nothing",
        Err(ReadError::NotText) => "not text",
        Err(ReadError::IncompleteJson(_)) => "incomplete JSON",
        Err(ReadError::MalformedJson(_)) => "malformed JSON",
        Err(ReadError::NoJson) => "no JSON",
    };
    format!("refused: {refusal}")
}

thread_local! {
    /// The reader needs a runtime with a clock (it times out idle text input); the
    /// input never makes it wait.
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a current-thread runtime");
}

/// A client that sends its input in pieces of at most `piece` bytes, then ends it.
struct Pieces<'a> {
    input: &'a [u8],
    piece: usize,
}

impl AsyncRead for Pieces<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let n = self.piece.min(buf.remaining()).min(self.input.len());
        let (head, tail) = self.input.split_at(n);
        buf.put_slice(head);
        self.input = tail;
        Poll::Ready(Ok(()))
    }
}
