//! The NATS transport, over async-nats.
//!
//! Requests use NATS request/reply, so "nobody subscribed to that node's subject" comes
//! back at once as no-responders and is not mistaken for a lost message. While the
//! client is disconnected, calls fail fast with [`BusError::Disconnected`] instead of
//! filling the client's reconnect buffer: bosun's outbox holds the messages instead.

use std::path::{Path, PathBuf};
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
    /// Client name shown by the server (the node name). When it is one subject token,
    /// answers to this client's requests arrive below `_INBOX.<name>`, so the broker's
    /// permissions can let each node read its own answers only.
    pub name: String,
    /// CA bundle to verify the server with (enables TLS).
    pub tls_ca: Option<PathBuf>,
    /// Client certificate for mutual TLS.
    pub tls_cert: Option<PathBuf>,
    /// Client key for mutual TLS.
    pub tls_key: Option<PathBuf>,
    /// Require TLS even without a CA file.
    pub require_tls: bool,
    /// nkey seed file (user seed, `SU…`); read only if no one else may read it.
    pub nkey_seed_file: Option<PathBuf>,
    /// NATS creds file (JWT + seed); read only if no one else may read it.
    pub creds_file: Option<PathBuf>,
    /// The node's own key file (`<data dir>/node.key`): what to suggest for
    /// `nkey_seed_file` when the broker demands a key and none is set.
    pub own_key_file: Option<PathBuf>,
    /// The longest wait between two reconnect tries (see [`reconnect_delay`]); `None`:
    /// 1 s.
    pub reconnect_max: Option<Duration>,
    /// Time between pings to the server; two unanswered and the connection is made
    /// again. `None`: 10 s.
    pub ping_interval: Option<Duration>,
}

/// The wait before reconnect try `attempts` (from 1): 25 ms doubling up to `max`, less
/// up to half of it at random, so that a fleet whose broker comes back does not return
/// in one burst. async-nats's own waits grow to 4 s whatever the outage, which made
/// every node wait seconds after a short broker restart.
pub fn reconnect_delay(attempts: usize, max: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let exp = attempts.saturating_sub(1).min(20) as u32;
    let full = Duration::from_millis(25u64.saturating_mul(1 << exp)).min(max);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_usize(attempts);
    let share = (hasher.finish() % 1000) as u32; // 0..999 per mille
    full - full * share / 2000
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

/// What to tell the user about a connection the broker refused, or that failed.
#[derive(Clone)]
struct Hints {
    urls: String,
    nkey: Option<(PathBuf, String)>,
    own_key_file: Option<PathBuf>,
    tls_ca: Option<PathBuf>,
    require_tls: bool,
}

impl Hints {
    /// Why the broker refused our credentials, and what to do.
    fn auth(&self, detail: &str) -> String {
        match &self.nkey {
            Some((file, public)) => format!(
                "the broker at {} refused this node's key ({detail}): the key in {} (public \
                 key {public}) is not among its users. Add it to the broker's configuration \
                 (bosun keys nats-config > nats.conf on the issuer's host, then nats-server \
                 --signal reload)",
                self.urls,
                file.display()
            ),
            None => format!(
                "the broker at {} demands a key ({detail}) and no nkey_seed_file is set: set \
                 nkey_seed_file = \"{}\" (the node's own key; its public key must be among \
                 the broker's users: bosun keys nats-config)",
                self.urls,
                self.own_key_file
                    .as_deref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| "<data dir>/node.key".into())
            ),
        }
    }

    /// Why TLS with the broker failed, and what to do; `cause` is the handshake's
    /// error when known.
    fn tls(&self, detail: &str, cause: Option<&async_nats::rustls::Error>) -> String {
        use async_nats::rustls::{AlertDescription as Alert, Error as Tls};
        let what = match cause {
            Some(Tls::InvalidCertificate(_)) => match &self.tls_ca {
                Some(ca) => format!(
                    "the broker's certificate is not trusted: tls_ca = \"{}\" must hold the CA \
                     that signed it, and the certificate must name the host in the broker URL",
                    ca.display()
                ),
                None => "the broker's certificate is not trusted: set tls_ca to the CA file \
                         that signed it"
                    .to_string(),
            },
            Some(Tls::AlertReceived(
                Alert::CertificateRequired | Alert::BadCertificate | Alert::UnknownCA,
            )) => "the broker refused this node's client certificate: set tls_cert and \
                   tls_key to a certificate signed by a CA the broker trusts (its ca_file)"
                .to_string(),
            Some(Tls::InvalidMessage(_)) if self.require_tls || self.tls_ca.is_some() => {
                "the broker does not speak TLS, and require_tls (or tls_ca) is set, so this \
                 node speaks only TLS: give the broker a tls { cert_file, key_file } block"
                    .to_string()
            }
            _ => "check tls_ca, tls_cert and tls_key against the broker's tls block".to_string(),
        };
        format!(
            "TLS with the broker at {} failed ({detail}): {what}",
            self.urls
        )
    }

    /// Why a connection failed: a hint when the cause is known.
    fn connect(&self, error: &async_nats::ConnectError) -> Failure {
        use async_nats::ConnectErrorKind as Kind;
        match error.kind() {
            Kind::AuthorizationViolation | Kind::Authentication => {
                Failure::Refused(self.auth(&error.kind().to_string()))
            }
            Kind::Tls => Failure::Refused(self.tls(&error.to_string(), None)),
            _ if tls_failure(error).is_some() => {
                Failure::Refused(self.tls(&error.to_string(), tls_failure(error)))
            }
            _ => Failure::Unreachable(error.to_string()),
        }
    }
}

/// A first connection that failed: refused (a setup error, reported at once) or the
/// broker unreachable (retried in the background).
enum Failure {
    Refused(String),
    Unreachable(String),
}

/// The TLS error inside a connection error, if that is what it is.
fn tls_failure(error: &async_nats::ConnectError) -> Option<&async_nats::rustls::Error> {
    let source = std::error::Error::source(error)?;
    let io = source.downcast_ref::<std::io::Error>()?;
    io.get_ref()?.downcast_ref::<async_nats::rustls::Error>()
}

/// A file a setting names must be readable.
fn readable(setting: &str, path: &Path) -> Result<(), BusError> {
    std::fs::File::open(path).map(drop).map_err(|e| {
        BusError::Broker(format!(
            "{setting} = \"{}\" cannot be read: {e}",
            path.display()
        ))
    })
}

impl NatsTransport {
    /// Connect. A broker that answers but refuses this node (a key it does not know, no
    /// key given, a certificate not trusted, no TLS where TLS is required) is
    /// [`BusError::Broker`] at once, saying what to do. A broker that cannot be reached
    /// is not an error: the connection is made (and remade) in the background, and each
    /// new reason it fails is logged.
    pub async fn connect(options: &NatsOptions) -> Result<NatsTransport, BusError> {
        if options.urls.is_empty() {
            return Err(BusError::Other("no broker URL given".into()));
        }
        let addrs: Vec<async_nats::ServerAddr> = options
            .urls
            .iter()
            .map(|u| {
                u.parse()
                    .map_err(|e| BusError::Other(format!("bad broker URL {u:?}: {e}")))
            })
            .collect::<Result<_, _>>()?;
        if let Some(ca) = &options.tls_ca {
            readable("tls_ca", ca)?;
        }
        match (&options.tls_cert, &options.tls_key) {
            (Some(cert), Some(key)) => {
                readable("tls_cert", cert)?;
                secret(key, "TLS key (tls_key)")?;
            }
            (None, None) => {}
            _ => {
                return Err(BusError::Broker(
                    "tls_cert and tls_key must be given together (the client certificate for \
                     mutual TLS and its key)"
                        .into(),
                ));
            }
        }
        let nkey = match &options.nkey_seed_file {
            Some(file) => {
                let pair = bosun_trust::keys::load(file, bosun_trust::keys::KeyKind::Member)
                    .map_err(|e| BusError::Broker(format!("nkey_seed_file: {e}")))?;
                let seed = pair.seed().map_err(|e| {
                    BusError::Broker(format!("nkey_seed_file {}: {e}", file.display()))
                })?;
                Some((file.clone(), pair.public_key(), seed))
            }
            None => None,
        };
        if let Some(creds) = &options.creds_file {
            // It holds a seed too: refused when others can read it, as the nkey is.
            bosun_trust::secret_file::read_secret(creds)
                .map_err(|e| BusError::Broker(format!("creds_file: {e}")))?;
        }
        let hints = Hints {
            urls: options.urls.join(","),
            nkey: nkey.as_ref().map(|(f, p, _)| (f.clone(), p.clone())),
            own_key_file: options.own_key_file.clone(),
            tls_ca: options.tls_ca.clone(),
            require_tls: options.require_tls,
        };
        let build = || async {
            let mut connect = async_nats::ConnectOptions::new()
                .name(&options.name)
                .max_reconnects(None)
                .reconnect_delay_callback({
                    let max = options.reconnect_max.unwrap_or(Duration::from_secs(1));
                    move |attempts| reconnect_delay(attempts, max)
                })
                .connection_timeout(Duration::from_secs(5))
                .ping_interval(options.ping_interval.unwrap_or(Duration::from_secs(10)))
                .subscription_capacity(65_536);
            if is_token(&options.name) {
                connect =
                    connect.custom_inbox_prefix(bosun_trust::nats::inbox_prefix(&options.name));
            }
            if let Some(ca) = &options.tls_ca {
                connect = connect.add_root_certificates(ca.clone()).require_tls(true);
            }
            if let (Some(cert), Some(key)) = (&options.tls_cert, &options.tls_key) {
                connect = connect.add_client_certificate(cert.clone(), key.clone());
            }
            if options.require_tls {
                connect = connect.require_tls(true);
            }
            if let Some((_, _, seed)) = &nkey {
                connect = connect.nkey(seed.clone());
            }
            if let Some(creds) = &options.creds_file {
                connect = connect.credentials_file(creds).await.map_err(|e| {
                    BusError::Broker(format!(
                        "creds_file = \"{}\" cannot be used: {e}",
                        creds.display()
                    ))
                })?;
            }
            connect = connect.event_callback(events::logger(hints.clone()));
            Ok::<_, BusError>(connect)
        };
        // One try in the foreground first: a broker that is up but refuses us is a setup
        // error to report now with what to do, not one to retry quietly for ever.
        let first = build().await?.connect(addrs.as_slice()).await;
        let client = match first {
            Ok(client) => client,
            Err(e) => match hints.connect(&e) {
                Failure::Refused(why) => return Err(BusError::Broker(why)),
                Failure::Unreachable(why) => {
                    tracing::warn!(
                        broker = %hints.urls,
                        error = %why,
                        "cannot reach the broker yet; connecting in the background"
                    );
                    build()
                        .await?
                        .retry_on_initial_connect()
                        .connect(addrs.as_slice())
                        .await
                        .map_err(|e| BusError::Other(format!("cannot connect to NATS: {e}")))?
                }
            },
        };
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

/// True when `name` is one subject token (letters, digits, `_`, `-`), as node names are.
fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Logging the connection's life with what to do about each problem: a failed
/// connection once per new reason rather than once per attempt, a refused subject once.
mod events {
    use std::collections::HashSet;
    use std::sync::{Arc, Mutex};

    use async_nats::{ClientError, Event, ServerError};

    use super::Hints;

    /// How many different refused subjects are logged, each once.
    const MAX_REFUSALS_LOGGED: usize = 100;

    /// What was logged already.
    #[derive(Default)]
    struct Seen {
        /// The last reason a connection attempt failed, until one succeeds.
        last: Option<String>,
        /// The broker's permission refusals logged.
        refused: HashSet<String>,
    }

    pub(super) fn logger(
        hints: Hints,
    ) -> impl Fn(Event) -> std::future::Ready<()> + Send + Sync + 'static {
        let state: Arc<Mutex<Seen>> = Arc::default();
        move |event| {
            let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
            let Seen { last, refused } = &mut *state;
            match event {
                Event::Connected => {
                    *last = None;
                    tracing::info!(broker = %hints.urls, "connected to the broker");
                }
                Event::ClientError(ClientError::Other(reason)) => {
                    let text =
                        if reason.contains("authorization") || reason.contains("authentication") {
                            hints.auth(&reason)
                        } else if reason.contains("tls") {
                            hints.tls(&reason, None)
                        } else {
                            format!("cannot connect to the broker at {}: {reason}", hints.urls)
                        };
                    if last.as_deref() != Some(text.as_str()) {
                        tracing::warn!("{text}; retrying");
                        *last = Some(text);
                    }
                }
                Event::ServerError(ServerError::AuthorizationViolation) => {
                    tracing::error!("{}", hints.auth("authorization violation"));
                }
                Event::ServerError(ServerError::Other(reason))
                    if reason.to_lowercase().contains("permissions violation")
                        && refused.len() < MAX_REFUSALS_LOGGED
                        && refused.insert(reason.clone()) =>
                {
                    tracing::error!(
                        broker = %hints.urls,
                        "the broker refused {reason}: its permissions for this node do not \
                         allow it. Was its configuration made for this subject_prefix \
                         (bosun keys nats-config --prefix) and this node name? Make it again"
                    );
                }
                _ => {}
            }
            std::future::ready(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnect_waits_double_up_to_the_max_less_a_random_share() {
        let max = Duration::from_millis(1000);
        for attempts in 1..40 {
            let full = Duration::from_millis(25u64 << (attempts - 1).min(20)).min(max);
            let wait = reconnect_delay(attempts, max);
            assert!(
                wait <= full && wait >= full / 2,
                "try {attempts}: {wait:?} of {full:?}"
            );
        }
        assert!(reconnect_delay(1, max) <= Duration::from_millis(25));
        assert!(reconnect_delay(30, Duration::from_millis(200)) <= Duration::from_millis(200));
    }
}
