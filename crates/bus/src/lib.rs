//! bosun's transports. Only this crate imports async-nats.
//!
//! # Layout
//! - this file: the [`Transport`] trait, [`Incoming`] requests and [`BusError`].
//! - [`nats`]: the production transport over a NATS server or cluster.
//! - [`local`]: the in-process transport: several nodes in one process share a [`local::Hub`].
//! - [`sealed`]: a transport that signs every frame and checks every arrival.
//!
//! A transport moves bytes on subjects. It knows nothing of messages, outboxes or
//! retries: bosun's own outbox covers outages, so no transport-level buffering is relied on.

pub mod local;
pub mod nats;
pub mod sealed;

use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use tokio::sync::oneshot;

pub use local::{Hub, LocalTransport};
pub use nats::{NatsOptions, NatsTransport};
pub use sealed::Sealed;

use bosun_trust::{FrameRefusal, Peer, Trust};
use std::sync::Arc;

/// Why a transport call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BusError {
    /// Nobody listens on the subject: the destination node is not connected.
    #[error("no node is listening on {0}")]
    NoResponders(String),
    /// The request went out but no answer came in time.
    #[error("no answer on {0} in time")]
    Timeout(String),
    /// The transport is not connected to its broker right now.
    #[error("not connected to the broker")]
    Disconnected,
    /// An answer came, but its seal does not show it is from the node asked.
    #[error("untrusted answer: {0}")]
    Untrusted(String),
    /// The broker refused this node, or its connection settings cannot be used: says
    /// what was wrong and what to do.
    #[error("{0}")]
    Broker(String),
    /// Anything else: bad subject, payload too large for the broker, IO.
    #[error("{0}")]
    Other(String),
}

/// A stream of requests and notes arriving on a subscription.
pub type Subscription = Pin<Box<dyn Stream<Item = Incoming> + Send>>;

/// Something that moves bytes between nodes.
#[async_trait::async_trait]
pub trait Transport: Send + Sync + 'static {
    /// Send `payload` to whoever listens on `subject` and wait up to `timeout` for one answer.
    async fn request(
        &self,
        subject: String,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<Bytes, BusError>;
    /// Send `payload` without waiting for an answer (best effort).
    async fn publish(&self, subject: String, payload: Bytes) -> Result<(), BusError>;
    /// Listen on a subject pattern (NATS wildcards `*` and `>`).
    async fn subscribe(&self, pattern: String) -> Result<Subscription, BusError>;
    /// True while connected to the broker (always true in process).
    fn is_connected(&self) -> bool;
    /// One line for logs and `bosun config show`, never with secrets.
    fn describe(&self) -> String;
    /// The trust that seals and checks frames, when this transport does.
    fn trust(&self) -> Option<Arc<Trust>> {
        None
    }
}

/// One arrival on a subscription.
pub struct Incoming {
    /// The subject it arrived on.
    pub subject: String,
    /// Its bytes (the body, once a sealed transport has checked its seal).
    pub payload: Bytes,
    /// Who sent it: [`Peer::Unchecked`] on a transport that does not seal.
    pub peer: Peer,
    /// Why its seal was refused; nothing of the payload may be trusted then.
    pub refused: Option<FrameRefusal>,
    responder: Option<Responder>,
    /// How to seal the answer: bound to the request's signature.
    seal: Option<AnswerSeal>,
}

/// How a sealed transport seals the answer to one arrival.
pub(crate) struct AnswerSeal {
    pub(crate) trust: Arc<Trust>,
    /// The request's signature (or MAC), which the answer is bound to.
    pub(crate) tag: [u8; 64],
    /// The requester, when proven: the answer uses the pair key shared with it.
    pub(crate) to: Option<String>,
    /// The request's MAC did not check: answer with a NAK, so it is sent again signed.
    pub(crate) nak: bool,
}

pub(crate) enum Responder {
    Nats(async_nats::Client, async_nats::Subject),
    Local(oneshot::Sender<Bytes>, std::sync::Arc<Hub>),
}

impl Incoming {
    /// True when the sender waits for an answer.
    pub fn wants_answer(&self) -> bool {
        self.responder.is_some()
    }

    pub(crate) fn new(subject: String, payload: Bytes, responder: Option<Responder>) -> Incoming {
        Incoming {
            subject,
            payload,
            peer: Peer::Unchecked,
            refused: None,
            responder,
            seal: None,
        }
    }

    /// Answer the sender. Does nothing for plain publishes.
    pub async fn respond(&mut self, payload: Bytes) -> Result<(), BusError> {
        let payload = match &self.seal {
            Some(seal) if seal.nak => Bytes::from_static(bosun_trust::frame::NAK),
            Some(seal) => Bytes::from(seal.trust.seal(
                &bosun_trust::answer_context(&seal.tag),
                &payload,
                sealed::now_ms(),
                seal.to.as_deref(),
            )),
            None => payload,
        };
        match self.responder.take() {
            None => Ok(()),
            Some(Responder::Nats(client, reply)) => client
                .publish(reply, payload)
                .await
                .map_err(|e| BusError::Other(e.to_string())),
            Some(Responder::Local(tx, hub)) => {
                if !hub.take_dropped_answer() {
                    let _ = tx.send(payload);
                }
                Ok(())
            }
        }
    }
}

/// NATS subject matching: `*` matches one token, `>` the rest (one or more tokens).
pub fn subject_matches(pattern: &str, subject: &str) -> bool {
    let mut subject_tokens = subject.split('.');
    for p in pattern.split('.') {
        match (p, subject_tokens.next()) {
            (">", Some(_)) => return true,
            (_, None) => return false,
            ("*", Some(_)) => {}
            (p, Some(s)) if p == s => {}
            _ => return false,
        }
    }
    subject_tokens.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::subject_matches;

    #[test]
    fn wildcards_follow_nats_rules() {
        assert!(subject_matches("bosun.a.>", "bosun.a.ping"));
        assert!(subject_matches("bosun.a.>", "bosun.a.x.y"));
        assert!(!subject_matches("bosun.a.>", "bosun.a"));
        assert!(!subject_matches("bosun.a.>", "bosun.ab.ping"));
        assert!(subject_matches("bosun.*.ping", "bosun.b.ping"));
        assert!(!subject_matches("bosun.*.ping", "bosun.b.pong"));
        assert!(subject_matches("a.b", "a.b"));
        assert!(!subject_matches("a.b", "a.b.c"));
    }
}
