//! The frames between nodes, as the receiver and the sender decode them.

use bosun_proto::wire::{self, WireError};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::check;

/// A request frame: decoded as the receiver does, then the message checked as it is
/// before it is recorded.
pub fn request(data: &[u8]) {
    if let Some(request) = decoded(data, wire::decode_request) {
        check::message(&request.msg);
    }
}

/// An ACK frame.
pub fn ack(data: &[u8]) {
    let _ = decoded(data, wire::decode_ack);
}

/// A query frame.
pub fn query(data: &[u8]) {
    let _ = decoded(data, wire::decode_query);
}

/// A query answer frame.
pub fn query_answer(data: &[u8]) {
    let _ = decoded(data, wire::decode_query_answer);
}

/// A status note frame.
pub fn status(data: &[u8]) {
    let _ = decoded(data, wire::decode_status);
}

/// A batch frame as the receiver reads it (each request then as if it had come alone),
/// and a batch answer as the sender reads it. What decodes encodes back to the same
/// requests and ACKs.
pub fn batch(data: &[u8]) {
    if let Ok(requests) = wire::decode_batch(data) {
        assert!(requests.len() <= wire::MAX_BATCH);
        let again = wire::encode_batch(requests.iter().copied());
        assert_eq!(wire::decode_batch(&again).as_deref(), Ok(&requests[..]));
        for request in requests {
            self::request(request);
        }
    }
    if let Ok(acks) = wire::decode_batch_ack(data) {
        let again = wire::encode_batch_ack(acks.iter().map(|a| a.unwrap_or_default()));
        // An empty ACK is written as null: the same as one that was not given.
        let back = wire::decode_batch_ack(&again).expect("a batch answer it wrote");
        assert_eq!(back.len(), acks.len());
        for ack in acks.into_iter().flatten() {
            self::ack(ack);
        }
    }
}

/// Decode `data`; what decodes has this build's version and encodes to a frame that
/// decodes to the same value. Every refusal has a reason to show.
fn decoded<T>(data: &[u8], decode: fn(&[u8]) -> Result<T, WireError>) -> Option<T>
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    match decode(data) {
        Ok(frame) => {
            let again = wire::encode(&frame);
            match decode(&again) {
                Ok(back) => assert_eq!(back, frame, "changed by a round trip"),
                Err(e) => panic!("{frame:?} encodes to a frame it cannot decode: {e}"),
            }
            Some(frame)
        }
        Err(e) => {
            assert!(!e.to_string().is_empty());
            None
        }
    }
}
