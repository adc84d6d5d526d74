//! The NATS transport, over async-nats.
//!
//! Requests use NATS request/reply, so "nobody subscribed to that node's subject" comes
//! back at once as no-responders and is not mistaken for a lost message. While the
//! client is disconnected, calls fail fast with [`BusError::Disconnected`] instead of
//! filling the client's reconnect buffer: bosun's outbox holds the messages instead.

use std::path::PathBuf;
use std::time::Duration;

use async_nats::client::RequestErrorKind;
use async_nats::connection::State;
use bytes::Bytes;
use futures::StreamExt;

use crate::{BusError, Incoming, Responder, Subscription, Transport};

/// How to reach and authenticate to the NATS servers.
#[derive(Debug, Clone, Default)]
pub struct NatsOptions {
    /// Server URLs, e.g. `nats://127.0.0.1:4222`; several for a cluster.
    pub urls: Vec<String>,
    /// Client name shown by the server (the node name).
    pub name: String,
    /// CA bundle to verify the server with (enables TLS).
    pub tls_ca: Option<PathBuf>,
    /// Client certificate for mutual TLS.
    pub tls_cert: Option<PathBuf>,
    /// Client key for mutual TLS.
    pub tls_key: Option<PathBuf>,
    /// Require TLS even without a CA file.
    pub require_tls: bool,
    /// nkey seed file (user seed, `SU…`).
    pub nkey_seed_file: Option<PathBuf>,
    /// NATS creds file (JWT + seed).
    pub creds_file: Option<PathBuf>,
}

/// Read a secret file (nkey seed, creds, TLS key), refusing one that group or others
/// may read, as ssh does.
fn secret(path: &std::path::Path, what: &str) -> Result<String, BusError> {
    bosun_trust::secret_file::read_secret(path)
        .map_err(|e| BusError::Other(format!("cannot use the {what}: {e}")))
}

/// A connection to NATS.
#[derive(Clone)]
pub struct NatsTransport {
    client: async_nats::Client,
    urls: String,
}

impl NatsTransport {
    /// Connect. Returns at once; the connection is made (and remade) in the background.
    pub async fn connect(options: &NatsOptions) -> Result<NatsTransport, BusError> {
        if options.urls.is_empty() {
            return Err(BusError::Other("no broker URL given".into()));
        }
        let mut connect = async_nats::ConnectOptions::new()
            .name(&options.name)
            .retry_on_initial_connect()
            .max_reconnects(None)
            .connection_timeout(Duration::from_secs(5))
            .subscription_capacity(65_536);
        if let Some(ca) = &options.tls_ca {
            connect = connect.add_root_certificates(ca.clone()).require_tls(true);
        }
        match (&options.tls_cert, &options.tls_key) {
            (Some(cert), Some(key)) => {
                // Only checked here (others may not read it); the client reads it itself.
                secret(key, "TLS key")?;
                connect = connect.add_client_certificate(cert.clone(), key.clone());
            }
            (None, None) => {}
            _ => {
                return Err(BusError::Other(
                    "TLS client certificate and key must be given together".into(),
                ));
            }
        }
        if options.require_tls {
            connect = connect.require_tls(true);
        }
        if let Some(seed_file) = &options.nkey_seed_file {
            connect = connect.nkey(secret(seed_file, "nkey seed file")?);
        }
        if let Some(creds) = &options.creds_file {
            let text = secret(creds, "creds file")?;
            connect = connect.credentials(&text).map_err(|e| {
                BusError::Other(format!("cannot use creds file {}: {e}", creds.display()))
            })?;
        }
        let addrs: Vec<async_nats::ServerAddr> = options
            .urls
            .iter()
            .map(|u| {
                u.parse()
                    .map_err(|e| BusError::Other(format!("bad broker URL {u:?}: {e}")))
            })
            .collect::<Result<_, _>>()?;
        let client = connect
            .connect(addrs.as_slice())
            .await
            .map_err(|e| BusError::Other(format!("cannot connect to NATS: {e}")))?;
        Ok(NatsTransport {
            client,
            urls: options.urls.join(","),
        })
    }

    /// Wait until connected, up to `timeout`. True when connected.
    pub async fn wait_connected(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < deadline {
            if self.is_connected() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.is_connected()
    }

    /// Flush pending writes to the server.
    pub async fn flush(&self) -> Result<(), BusError> {
        self.client
            .flush()
            .await
            .map_err(|e| BusError::Other(e.to_string()))
    }
}

#[async_trait::async_trait]
impl Transport for NatsTransport {
    async fn request(
        &self,
        subject: String,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<Bytes, BusError> {
        if !self.is_connected() {
            return Err(BusError::Disconnected);
        }
        let request = async_nats::Request::new()
            .payload(payload)
            .timeout(Some(timeout));
        match self.client.send_request(subject.clone(), request).await {
            Ok(m) => Ok(m.payload),
            Err(e) => Err(match e.kind() {
                RequestErrorKind::NoResponders => BusError::NoResponders(subject),
                RequestErrorKind::TimedOut => {
                    if self.is_connected() {
                        BusError::Timeout(subject)
                    } else {
                        BusError::Disconnected
                    }
                }
                _ => BusError::Other(e.to_string()),
            }),
        }
    }

    async fn publish(&self, subject: String, payload: Bytes) -> Result<(), BusError> {
        if !self.is_connected() {
            return Err(BusError::Disconnected);
        }
        self.client
            .publish(subject, payload)
            .await
            .map_err(|e| BusError::Other(e.to_string()))
    }

    async fn subscribe(&self, pattern: String) -> Result<Subscription, BusError> {
        let subscriber = self
            .client
            .subscribe(pattern)
            .await
            .map_err(|e| BusError::Other(e.to_string()))?;
        let client = self.client.clone();
        Ok(Box::pin(subscriber.map(move |m| {
            Incoming::new(
                m.subject.to_string(),
                m.payload,
                m.reply.map(|r| Responder::Nats(client.clone(), r)),
            )
        })))
    }

    fn is_connected(&self) -> bool {
        self.client.connection_state() == State::Connected
    }

    fn describe(&self) -> String {
        format!("nats {}", self.urls)
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[tokio::test]
    async fn secret_files_others_can_read_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let loose = dir.path().join("loose");
        std::fs::write(
            &loose,
            "SUAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n",
        )
        .unwrap();
        std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o644)).unwrap();
        let base = NatsOptions {
            urls: vec!["nats://127.0.0.1:1".into()],
            ..Default::default()
        };
        for (what, options) in [
            (
                "nkey seed file",
                NatsOptions {
                    nkey_seed_file: Some(loose.clone()),
                    ..base.clone()
                },
            ),
            (
                "creds file",
                NatsOptions {
                    creds_file: Some(loose.clone()),
                    ..base.clone()
                },
            ),
            (
                "TLS key",
                NatsOptions {
                    tls_cert: Some(dir.path().join("cert.pem")),
                    tls_key: Some(loose.clone()),
                    ..base.clone()
                },
            ),
        ] {
            let error = match NatsTransport::connect(&options).await {
                Ok(_) => panic!("{what}: a loose secret file was taken"),
                Err(e) => e.to_string(),
            };
            assert!(
                error.contains(what) && error.contains("chmod 600"),
                "{what}: {error}"
            );
        }
    }
}
