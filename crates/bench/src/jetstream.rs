//! NATS JetStream as the durable queue a user would otherwise build on, measured in the
//! same run as bosun's throughput: a file-stored stream on its own nats-server, N
//! 200-byte messages published with acknowledgement (up to `window` publish acks
//! outstanding) while a durable pull consumer fetches them in batches and acknowledges
//! each one. The rate counts from the first publish until the last message is consumed
//! and acknowledged.
//!
//! What each side promises differs, and the figure is read with that in mind: bosun
//! commits every step with fsync (sender's outbox, receiver's inbox, start, result back
//! at the sender), while JetStream's file store writes each message but syncs to disk
//! on its own interval (two minutes by default), and the consumer's ack here is not
//! confirmed back (`ack`, not `double_ack`).

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::PullConsumer, stream};
use bytes::Bytes;
use futures::StreamExt;

/// Messages per second through JetStream, or the reason it could not be measured.
pub async fn rate(n: usize, window: usize) -> Result<f64, String> {
    let store = tempfile::tempdir().map_err(|e| e.to_string())?;
    let config = format!(
        "jetstream {{ store_dir: \"{}\" }}\n",
        store.path().display()
    );
    let server =
        bosun_testkit::NatsServer::start_with_config(&config).ok_or("nats-server is required")?;
    let client = async_nats::connect(server.url())
        .await
        .map_err(|e| e.to_string())?;
    let js = jetstream::new(client);
    let stream = js
        .create_stream(stream::Config {
            name: "bench".into(),
            subjects: vec!["bench.>".into()],
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())?;
    let consumer: PullConsumer = stream
        .create_consumer(jetstream::consumer::pull::Config {
            durable_name: Some("b".into()),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())?;
    let payload = Bytes::from(vec![b'x'; 200]);
    let started = Instant::now();
    let consuming = tokio::spawn(async move {
        let mut messages = consumer
            .stream()
            .max_messages_per_batch(window)
            .messages()
            .await
            .map_err(|e| e.to_string())?;
        let mut got = 0;
        while got < n {
            let message = tokio::time::timeout(Duration::from_secs(60), messages.next())
                .await
                .map_err(|_| "no message for 60 s".to_string())?
                .ok_or("the consumer ended")?
                .map_err(|e| e.to_string())?;
            message.ack().await.map_err(|e| e.to_string())?;
            got += 1;
        }
        Ok::<(), String>(())
    });
    futures::stream::iter(0..n)
        .map(|_| {
            let js = js.clone();
            let payload = payload.clone();
            async move {
                js.publish("bench.b", payload)
                    .await
                    .map_err(|e| e.to_string())?
                    .await
                    .map_err(|e| e.to_string())
            }
        })
        .buffer_unordered(window)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
    consuming.await.map_err(|e| e.to_string())??;
    Ok(n as f64 / started.elapsed().as_secs_f64())
}
