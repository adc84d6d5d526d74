//! The in-process transport: the embedded default for a standalone node, and how
//! `bosun demo` and tests run several nodes in one process. It never crosses a process
//! boundary.
//!
//! The [`Hub`] also offers two fault switches for tests of the delivery promises:
//! dropping answers (a lost ACK) and going down (a broker outage).

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tokio_stream_shim::ReceiverStream;

use crate::{BusError, Incoming, Responder, Subscription, Transport, subject_matches};

/// Subscription queue length per listener.
const QUEUE: usize = 65_536;

/// The meeting point of every in-process transport in one process.
#[derive(Default)]
pub struct Hub {
    listeners: Mutex<Vec<(String, mpsc::Sender<Incoming>)>>,
    drop_answers: AtomicUsize,
    down: AtomicBool,
}

impl Hub {
    /// A new, empty hub.
    pub fn new() -> Arc<Hub> {
        Arc::new(Hub::default())
    }

    /// Lose the next `n` answers to requests, as if ACKs were lost on the network.
    pub fn drop_next_answers(&self, n: usize) {
        self.drop_answers.store(n, Ordering::SeqCst);
    }

    /// Take the hub down (every call fails as disconnected) or bring it back.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    pub(crate) fn take_dropped_answer(&self) -> bool {
        self.drop_answers
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }

    fn matching(&self, subject: &str) -> Vec<mpsc::Sender<Incoming>> {
        let mut listeners = self.listeners.lock().expect("hub lock");
        listeners.retain(|(_, tx)| !tx.is_closed());
        listeners
            .iter()
            .filter(|(p, _)| subject_matches(p, subject))
            .map(|(_, tx)| tx.clone())
            .collect()
    }
}

/// One node's handle on a [`Hub`].
#[derive(Clone)]
pub struct LocalTransport {
    hub: Arc<Hub>,
}

impl LocalTransport {
    /// A transport on `hub`.
    pub fn new(hub: Arc<Hub>) -> Self {
        LocalTransport { hub }
    }
}

#[async_trait::async_trait]
impl Transport for LocalTransport {
    async fn request(
        &self,
        subject: String,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<Bytes, BusError> {
        if self.hub.down.load(Ordering::SeqCst) {
            return Err(BusError::Disconnected);
        }
        let Some(target) = self.hub.matching(&subject).into_iter().next() else {
            return Err(BusError::NoResponders(subject));
        };
        let (tx, rx) = oneshot::channel();
        let incoming = Incoming::new(
            subject.clone(),
            payload,
            Some(Responder::Local(tx, self.hub.clone())),
        );
        if target.send(incoming).await.is_err() {
            return Err(BusError::NoResponders(subject));
        }
        let asked = tokio::time::Instant::now();
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(_)) => {
                // A lost answer is noticed only when the timeout ends, as on a network.
                tokio::time::sleep_until(asked + timeout).await;
                Err(BusError::Timeout(subject))
            }
            Err(_) => Err(BusError::Timeout(subject)),
        }
    }

    async fn publish(&self, subject: String, payload: Bytes) -> Result<(), BusError> {
        if self.hub.down.load(Ordering::SeqCst) {
            return Err(BusError::Disconnected);
        }
        for target in self.hub.matching(&subject) {
            let _ = target.try_send(Incoming::new(subject.clone(), payload.clone(), None));
        }
        Ok(())
    }

    async fn subscribe(&self, pattern: String) -> Result<Subscription, BusError> {
        let (tx, rx) = mpsc::channel(QUEUE);
        self.hub
            .listeners
            .lock()
            .expect("hub lock")
            .push((pattern, tx));
        Ok(Box::pin(ReceiverStream::new(rx)))
    }

    fn is_connected(&self) -> bool {
        !self.hub.down.load(Ordering::SeqCst)
    }

    fn describe(&self) -> String {
        "in-process (standalone)".into()
    }
}

/// A `Stream` over a tokio mpsc receiver, to avoid a dependency for ten lines.
mod tokio_stream_shim {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use tokio::sync::mpsc;

    pub struct ReceiverStream<T>(mpsc::Receiver<T>);

    impl<T> ReceiverStream<T> {
        pub fn new(rx: mpsc::Receiver<T>) -> Self {
            ReceiverStream(rx)
        }
    }

    impl<T> futures::Stream for ReceiverStream<T> {
        type Item = T;
        fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
            self.0.poll_recv(cx)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    #[tokio::test]
    async fn request_reaches_the_listener_and_gets_its_answer() {
        let hub = Hub::new();
        let a = LocalTransport::new(hub.clone());
        let b = LocalTransport::new(hub.clone());
        let mut sub = b.subscribe("x.b.>".into()).await.unwrap();
        tokio::spawn(async move {
            while let Some(mut m) = sub.next().await {
                let p = m.payload.clone();
                m.respond(p).await.unwrap();
            }
        });
        let got = a
            .request(
                "x.b.ping".into(),
                Bytes::from_static(b"hi"),
                Duration::from_secs(1),
            )
            .await
            .unwrap();
        assert_eq!(&got[..], b"hi");
    }

    #[tokio::test]
    async fn nobody_listening_is_no_responders() {
        let a = LocalTransport::new(Hub::new());
        let err = a
            .request("x.b.ping".into(), Bytes::new(), Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(matches!(err, BusError::NoResponders(_)));
    }

    #[tokio::test]
    async fn dropped_answer_times_out_and_down_hub_is_disconnected() {
        let hub = Hub::new();
        let a = LocalTransport::new(hub.clone());
        let mut sub = a.subscribe("x.>".into()).await.unwrap();
        tokio::spawn(async move {
            while let Some(mut m) = sub.next().await {
                m.respond(Bytes::from_static(b"ok")).await.unwrap();
            }
        });
        hub.drop_next_answers(1);
        let err = a
            .request("x.y".into(), Bytes::new(), Duration::from_millis(100))
            .await
            .unwrap_err();
        assert!(matches!(err, BusError::Timeout(_)));
        assert!(
            a.request("x.y".into(), Bytes::new(), Duration::from_secs(1))
                .await
                .is_ok()
        );
        hub.set_down(true);
        assert!(!a.is_connected());
        assert_eq!(
            a.request("x.y".into(), Bytes::new(), Duration::from_secs(1))
                .await,
            Err(BusError::Disconnected)
        );
    }
}
