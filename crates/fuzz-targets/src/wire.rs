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
