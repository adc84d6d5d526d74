//! A transport that seals every frame it sends with the node's key and checks every
//! frame it receives before anyone reads it (see `bosun_trust::frame`).
//!
//! - Requests and notes are sealed in the context of their subject and checked for
//!   freshness (clock skew, replays) on arrival. What arrives carries its [`Peer`], or
//!   the [`FrameRefusal`] that says why it cannot be trusted; the receiver answers a
//!   refused request with that reason and reads nothing else of it.
//! - Answers are sealed in the context of the request they answer, and an answer is
//!   taken only from the node the request was addressed to (the subject's second
//!   token); anything else is [`BusError::Untrusted`], never a result.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bosun_trust::{Peer, Trust, answer_context};
use bytes::Bytes;
use futures::StreamExt;

use crate::{AnswerSeal, BusError, Subscription, Transport};

/// A transport whose frames are sealed and checked.
pub struct Sealed {
    inner: Arc<dyn Transport>,
    trust: Arc<Trust>,
    name: String,
}

impl Sealed {
    /// Seal and check what `inner` carries, for the node `name`.
    pub fn new(inner: Arc<dyn Transport>, trust: Arc<Trust>, name: impl Into<String>) -> Sealed {
        Sealed {
            inner,
            trust,
            name: name.into(),
        }
    }
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[async_trait::async_trait]
impl Transport for Sealed {
    async fn request(
        &self,
        subject: String,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<Bytes, BusError> {
        let expected = subject.split('.').nth(1).unwrap_or_default();
        let mut signed_again = false;
        let (answer, tag) = loop {
            let frame = self
                .trust
                .seal(subject.as_bytes(), &payload, now_ms(), Some(expected));
            let tag = Trust::seal_tag(&frame, payload.len());
            let answer = self
                .inner
                .request(subject.clone(), Bytes::from(frame), timeout)
                .await?;
            if !bosun_trust::frame::is_nak(&answer) {
                break (answer, tag);
            }
            // The destination could not check the pair key (its key changed): sign.
            if signed_again {
                return Err(BusError::Untrusted(format!(
                    "answer on {subject}: asked to sign again twice"
                )));
            }
            self.trust.forget_peer(expected);
            signed_again = true;
        };
        let opened = self
            .trust
            .open(&answer_context(&tag), &answer, now_ms(), false)
            .map_err(|e| BusError::Untrusted(format!("answer on {subject}: {e}")))?;
        let from_expected = match &opened.peer {
            Peer::Myself => expected == self.name,
            Peer::Node(id) => id.name() == expected,
            Peer::Open | Peer::Unchecked => true,
        };
        if !from_expected {
            return Err(BusError::Untrusted(format!(
                "answer on {subject} signed by {:?}, not by {expected:?}",
                opened.peer.name().unwrap_or(&self.name)
            )));
        }
        Ok(answer.slice(opened.body_start..))
    }

    async fn publish(&self, subject: String, payload: Bytes) -> Result<(), BusError> {
        let to = subject.split('.').nth(1);
        let frame = self.trust.seal(subject.as_bytes(), &payload, now_ms(), to);
        self.inner.publish(subject, Bytes::from(frame)).await
    }

    async fn subscribe(&self, pattern: String) -> Result<Subscription, BusError> {
        let trust = self.trust.clone();
        let name = self.name.clone();
        let inner = self.inner.subscribe(pattern).await?;
        Ok(Box::pin(inner.map(move |mut incoming| {
            match trust.open(
                incoming.subject.as_bytes(),
                &incoming.payload,
                now_ms(),
                true,
            ) {
                Ok(opened) => {
                    incoming.payload = incoming.payload.slice(opened.body_start..);
                    let to = match &opened.peer {
                        Peer::Node(id) => Some(id.name().to_string()),
                        Peer::Myself => Some(name.clone()),
                        Peer::Open | Peer::Unchecked => None,
                    };
                    incoming.peer = opened.peer;
                    incoming.seal = Some(AnswerSeal {
                        trust: trust.clone(),
                        tag: opened.sig,
                        to,
                        nak: false,
                    });
                }
                Err(refusal) => {
                    let tag = bosun_trust::frame::unchecked_sig(&incoming.payload);
                    incoming.seal = Some(AnswerSeal {
                        trust: trust.clone(),
                        tag,
                        to: None,
                        nak: matches!(refusal, bosun_trust::FrameRefusal::BadMac(_)),
                    });
                    incoming.refused = Some(refusal);
                }
            }
            incoming
        })))
    }

    fn is_connected(&self) -> bool {
        self.inner.is_connected()
    }

    fn describe(&self) -> String {
        format!(
            "{}, signed ({})",
            self.inner.describe(),
            self.trust.describe()
        )
    }

    fn trust(&self) -> Option<Arc<Trust>> {
        Some(self.trust.clone())
    }
}
