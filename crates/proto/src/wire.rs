//! The frames that travel between nodes, and the subjects they travel on.
//!
//! Every frame is JSON and carries `v`, the wire version. A node refuses a frame of a
//! version it does not speak, with a reason, rather than guessing.
//!
//! - A [`Request`] carries one message to its destination's subject
//!   `<prefix>.<toNode>.<method>`, sent as a request.
//! - An [`Ack`] answers it, once the message is durable in the destination's inbox
//!   (or says why it was refused).
//! - A [`StatusNote`] is a best-effort notice from the destination to the sender on
//!   `<prefix>.<fromNode>._status`, e.g. that a message started running.
//! - A [`Query`] asks the destination on `<prefix>.<toNode>._query` what became of one
//!   message, and may cancel it if it has not started; a [`QueryAnswer`] says.
//! - A batch carries several requests to one destination on `<prefix>.<toNode>._batch`
//!   ([`encode_batch`], [`decode_batch`]); the destination handles each as if it had
//!   come alone and answers with their ACKs in order ([`encode_batch_ack`],
//!   [`decode_batch_ack`]). A node that does not take batches answers with a refusal
//!   [`Ack`] without an id, having recorded nothing, and its senders send one by one.

use serde::{Deserialize, Serialize};

use crate::Millis;
use crate::message::Message;
use crate::outcome::Outcome;
use crate::state::State;

/// The wire version this build speaks.
pub const WIRE_VERSION: u32 = 1;

/// The last subject token used for status notes. Method names never start with `_`.
pub const STATUS_TOKEN: &str = "_status";

/// The last subject token used for queries about one message.
pub const QUERY_TOKEN: &str = "_query";

/// The last subject token used for batches of requests.
pub const BATCH_TOKEN: &str = "_batch";

/// The most requests one batch may carry; a batch with more is refused whole.
pub const MAX_BATCH: usize = 256;

/// A message on its way to its destination.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// Wire version.
    pub v: u32,
    /// The message.
    pub msg: Message,
}

/// The destination's answer to a [`Request`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ack {
    /// Wire version.
    pub v: u32,
    /// The id of the message acknowledged; empty when the request could not be read.
    pub id: String,
    /// True when the message was already in the inbox (a resend).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
    /// Set when the destination refused the message, with the reason. A refused message
    /// is recorded and never run; the sender must not resend it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected: Option<String>,
    /// For a duplicate: the message's state at the destination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<State>,
    /// For a duplicate that already finished: its outcome, so a sender that lost the
    /// reply (or its own record) learns the real result from the ACK.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
}

/// A sender's question about one message it sent: what became of it? With `cancel`, the
/// destination also cancels it if it has not started, and remembers the id so that the
/// message never runs if it arrives later.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Query {
    /// Wire version.
    pub v: u32,
    /// The message asked about.
    pub id: String,
    /// The node asking: the message's sender.
    pub from: String,
    /// Cancel it unless it has started.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cancel: bool,
}

/// The destination's answer to a [`Query`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueryAnswer {
    /// Wire version.
    pub v: u32,
    /// The message asked about.
    pub id: String,
    /// Its state at the destination; `None` when the destination never received it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<State>,
    /// Its outcome, when it finished (cancelled included) and the outcome is still kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    /// Set when the destination refused the query, with the reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
}

/// A best-effort notice about a message's progress at its destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusNote {
    /// Wire version.
    pub v: u32,
    /// The message.
    pub id: String,
    /// Its new state at the destination.
    pub state: State,
    /// When.
    pub at: Millis,
}

/// A frame that could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    /// Not JSON of the expected shape.
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// A wire version this node does not speak.
    #[error("unsupported wire version {0}; this node speaks version {WIRE_VERSION}")]
    Version(u32),
}

#[derive(Deserialize)]
struct VersionOnly {
    v: u32,
}

fn check_version(bytes: &[u8]) -> Result<(), WireError> {
    let v: VersionOnly =
        serde_json::from_slice(bytes).map_err(|e| WireError::Malformed(e.to_string()))?;
    if v.v != WIRE_VERSION {
        return Err(WireError::Version(v.v));
    }
    Ok(())
}

/// Encode any frame.
pub fn encode<T: Serialize>(frame: &T) -> Vec<u8> {
    serde_json::to_vec(frame).expect("frames always serialise")
}

/// A [`Request`] that borrows its message: the same bytes, without a copy of it.
#[derive(Serialize)]
struct RequestRef<'a> {
    v: u32,
    msg: &'a Message,
}

/// The [`Request`] frame carrying `msg`, encoded without copying the message.
pub fn encode_request(msg: &Message) -> Vec<u8> {
    encode(&RequestRef {
        v: WIRE_VERSION,
        msg,
    })
}

/// How many bytes [`encode_request`] makes of `msg`.
pub fn request_size(msg: &Message) -> usize {
    encode_request(msg).len()
}

/// Decode a [`Request`], checking the version first.
pub fn decode_request(bytes: &[u8]) -> Result<Request, WireError> {
    check_version(bytes)?;
    serde_json::from_slice(bytes).map_err(|e| WireError::Malformed(e.to_string()))
}

/// Decode an [`Ack`].
pub fn decode_ack(bytes: &[u8]) -> Result<Ack, WireError> {
    check_version(bytes)?;
    serde_json::from_slice(bytes).map_err(|e| WireError::Malformed(e.to_string()))
}

/// Decode a [`Query`].
pub fn decode_query(bytes: &[u8]) -> Result<Query, WireError> {
    check_version(bytes)?;
    serde_json::from_slice(bytes).map_err(|e| WireError::Malformed(e.to_string()))
}

/// Decode a [`QueryAnswer`].
pub fn decode_query_answer(bytes: &[u8]) -> Result<QueryAnswer, WireError> {
    check_version(bytes)?;
    serde_json::from_slice(bytes).map_err(|e| WireError::Malformed(e.to_string()))
}

/// Decode a [`StatusNote`].
pub fn decode_status(bytes: &[u8]) -> Result<StatusNote, WireError> {
    check_version(bytes)?;
    serde_json::from_slice(bytes).map_err(|e| WireError::Malformed(e.to_string()))
}

/// The frame of a batch, its requests left as they were sent.
#[derive(Deserialize)]
struct BatchFrame<'a> {
    v: u32,
    #[serde(borrow)]
    reqs: Vec<&'a serde_json::value::RawValue>,
}

/// The answer to a batch, each ACK left as it was sent (`null`: not acknowledged).
#[derive(Deserialize)]
struct BatchAckFrame<'a> {
    v: u32,
    #[serde(borrow)]
    acks: Vec<Option<&'a serde_json::value::RawValue>>,
}

/// A batch of encoded [`Request`]s (each as [`encode`] made it), in one frame.
pub fn encode_batch<'a, I>(requests: I) -> Vec<u8>
where
    I: IntoIterator<Item = &'a [u8]>,
    I::IntoIter: Clone,
{
    framed(b"reqs", requests.into_iter())
}

/// A batch frame, `{"v":1,"<list>":[…]}`, of items already encoded (an empty one is
/// `null`), built in a buffer with room for the whole frame, so that a frame of a few
/// hundred KiB is not copied as it grows.
fn framed<'a>(list: &[u8], items: impl Iterator<Item = &'a [u8]> + Clone) -> Vec<u8> {
    let (count, bytes) =
        (items.clone()).fold((0, 0), |(n, b), item| (n + 1, b + item.len().max(4)));
    let mut frame = Vec::with_capacity(16 + list.len() + bytes + count);
    frame.extend_from_slice(format!("{{\"v\":{WIRE_VERSION},\"").as_bytes());
    frame.extend_from_slice(list);
    frame.extend_from_slice(b"\":[");
    for (i, item) in items.enumerate() {
        if i > 0 {
            frame.push(b',');
        }
        if item.is_empty() {
            frame.extend_from_slice(b"null");
        } else {
            frame.extend_from_slice(item);
        }
    }
    frame.extend_from_slice(b"]}");
    frame
}

/// The requests of a batch, each as its sender encoded it, to be decoded one by one
/// with [`decode_request`] (so that each is refused, or not, on its own). A batch of a
/// version this node does not speak, or of more than [`MAX_BATCH`] requests, is refused
/// whole.
pub fn decode_batch(bytes: &[u8]) -> Result<Vec<&[u8]>, WireError> {
    let frame: BatchFrame =
        serde_json::from_slice(bytes).map_err(|e| WireError::Malformed(e.to_string()))?;
    if frame.v != WIRE_VERSION {
        return Err(WireError::Version(frame.v));
    }
    if frame.reqs.len() > MAX_BATCH {
        return Err(WireError::Malformed(format!(
            "a batch of {} requests; at most {MAX_BATCH} are taken in one frame",
            frame.reqs.len()
        )));
    }
    Ok(frame.reqs.iter().map(|r| r.get().as_bytes()).collect())
}

/// The answer to a batch: each request's encoded [`Ack`] in order; an empty one is
/// `null`, a request that was not acknowledged.
pub fn encode_batch_ack<'a, I>(acks: I) -> Vec<u8>
where
    I: IntoIterator<Item = &'a [u8]>,
    I::IntoIter: Clone,
{
    framed(b"acks", acks.into_iter())
}

/// The ACKs of a batch answer, each as its destination encoded it (for
/// [`decode_ack`]); `None` where a request was not acknowledged.
pub fn decode_batch_ack(bytes: &[u8]) -> Result<Vec<Option<&[u8]>>, WireError> {
    let frame: BatchAckFrame =
        serde_json::from_slice(bytes).map_err(|e| WireError::Malformed(e.to_string()))?;
    if frame.v != WIRE_VERSION {
        return Err(WireError::Version(frame.v));
    }
    Ok(frame
        .acks
        .iter()
        .map(|a| a.map(|a| a.get().as_bytes()))
        .collect())
}

/// The subject a message to `node` for `method` travels on.
pub fn subject(prefix: &str, node: &str, method: &str) -> String {
    format!("{prefix}.{node}.{method}")
}

/// The subject every node announces its hellos on and every node listens to, so that
/// each keeps its own view of the fleet. `~` is in no node name, so no node's subjects
/// and no pair key can ever be confused with it.
pub fn fleet_subject(prefix: &str) -> String {
    format!("{prefix}.~fleet.hello")
}

/// The subject pattern a node listens on: everything addressed to it.
pub fn inbox_pattern(prefix: &str, node: &str) -> String {
    format!("{prefix}.{node}.>")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ping(to: &str) -> Request {
        Request {
            v: WIRE_VERSION,
            msg: Message {
                id: Some(crate::new_id()),
                from_node: Some("a".into()),
                to_node: Some(to.into()),
                method: "ping".into(),
                ..Default::default()
            },
        }
    }

    #[test]
    fn a_request_encoded_from_a_borrowed_message_is_the_same_frame() {
        let request = ping("b");
        let bytes = encode_request(&request.msg);
        assert_eq!(bytes, encode(&request));
        assert_eq!(request_size(&request.msg), bytes.len());
        assert_eq!(decode_request(&bytes).unwrap(), request);
    }

    #[test]
    fn a_batch_carries_each_request_as_it_was_sent() {
        let requests = [ping("b"), ping("b"), ping("b")];
        let encoded: Vec<Vec<u8>> = requests.iter().map(encode).collect();
        let frame = encode_batch(encoded.iter().map(Vec::as_slice));
        let back = decode_batch(&frame).unwrap();
        assert_eq!(back.len(), 3);
        for ((raw, sent), request) in back.iter().zip(&encoded).zip(&requests) {
            assert_eq!(*raw, sent.as_slice());
            assert_eq!(&decode_request(raw).unwrap(), request);
        }
        assert_eq!(decode_batch(&encode_batch([])).unwrap().len(), 0);
    }

    #[test]
    fn a_batch_of_another_version_or_too_many_requests_is_refused_whole() {
        let one = encode(&ping("b"));
        let other_version = format!(r#"{{"v":7,"reqs":[{}]}}"#, String::from_utf8_lossy(&one));
        assert_eq!(
            decode_batch(other_version.as_bytes()),
            Err(WireError::Version(7))
        );
        let too_many = encode_batch(std::iter::repeat_n(one.as_slice(), MAX_BATCH + 1));
        let refused = decode_batch(&too_many).unwrap_err().to_string();
        assert!(refused.contains("at most 256"), "{refused}");
        assert!(
            decode_batch(&encode_batch(std::iter::repeat_n(
                one.as_slice(),
                MAX_BATCH
            )))
            .is_ok()
        );
        // A single request is not a batch: what a node that does not take batches gets
        // wrong is the other way round (see the next test).
        assert!(decode_batch(&one).is_err());
    }

    #[test]
    fn a_batch_is_refused_by_a_node_that_reads_only_single_requests() {
        // What such a node does with a batch frame: decode it as a request, which fails,
        // so it answers with a refusal without an id and records nothing.
        let frame = encode_batch([encode(&ping("b")).as_slice()]);
        assert!(matches!(
            decode_request(&frame),
            Err(WireError::Malformed(_))
        ));
    }

    #[test]
    fn a_batch_answer_keeps_each_ack_and_marks_the_unacknowledged() {
        let ack = |id: &str| {
            encode(&Ack {
                v: WIRE_VERSION,
                id: id.into(),
                duplicate: false,
                rejected: None,
                state: None,
                outcome: None,
            })
        };
        let (x, y) = (ack("x"), ack("y"));
        let frame = encode_batch_ack([x.as_slice(), &[], y.as_slice()]);
        let back = decode_batch_ack(&frame).unwrap();
        assert_eq!(back.len(), 3);
        assert_eq!(decode_ack(back[0].unwrap()).unwrap().id, "x");
        assert_eq!(back[1], None);
        assert_eq!(decode_ack(back[2].unwrap()).unwrap().id, "y");
        // A plain refusal (from a node that does not take batches) is no batch answer.
        assert!(decode_batch_ack(&ack("")).is_err());
    }

    #[test]
    fn request_round_trips() {
        let msg = Message {
            id: Some(crate::new_id()),
            to_node: Some("a".into()),
            method: "ping".into(),
            ..Default::default()
        };
        let req = Request {
            v: WIRE_VERSION,
            msg,
        };
        assert_eq!(decode_request(&encode(&req)).unwrap(), req);
    }

    #[test]
    fn other_versions_are_refused_by_number() {
        let err = decode_request(br#"{"v":2,"msg":{}}"#).unwrap_err();
        assert_eq!(err, WireError::Version(2));
        assert!(err.to_string().contains("version 2"));
    }

    #[test]
    fn garbage_is_malformed() {
        for bad in [&b""[..], b"nope", b"{}", b"{\"v\":1}", b"\xff\xfe"] {
            assert!(
                matches!(decode_request(bad), Err(WireError::Malformed(_))),
                "{bad:?}"
            );
        }
    }
}

#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Decoders see bytes from the network: any input gives a value or an error, never a panic.
        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_request(&bytes);
            let _ = decode_ack(&bytes);
            let _ = decode_batch(&bytes);
            let _ = decode_batch_ack(&bytes);
            let _ = decode_status(&bytes);
        }

        #[test]
        fn message_parsing_never_panics(text in ".{0,300}") {
            if let Ok(msgs) = Message::parse_batch(&text) {
                for m in msgs {
                    let _ = m.validate();
                    let _ = m.destinations();
                }
            }
        }

        #[test]
        fn near_valid_frames_never_panic(
            method in "[A-Za-z]{0,20}",
            to in "[a-z.*> ]{0,10}",
            data in proptest::collection::vec(".{0,10}", 0..4),
            timeout in any::<u64>(),
        ) {
            let frame = serde_json::json!({
                "v": 1,
                "msg": {"id": crate::new_id(), "toNode": to, "fromNode": "x", "method": method,
                        "data": data, "methodTimeout": timeout}
            });
            if let Ok(r) = decode_request(frame.to_string().as_bytes()) {
                let _ = r.msg.validate();
                let _ = r.msg.for_destination("n", Some(0));
            }
        }
    }
}
