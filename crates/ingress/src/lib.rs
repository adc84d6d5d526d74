//! The ways into a bosun node. Everything here turns what comes in into messages for
//! [`bosun_node::Node::submit`] (or reads the node's state); nothing here talks to Docker
//! or opens the database, which Cargo enforces: this crate depends on neither bollard nor
//! the store.
//!
//! # Layout
//! - this file: [`serve`], which binds every configured listener and spawns it.
//! - [`control`]: the unix socket `bosun.sock`: steward message arrays and the CLI's
//!   typed requests and answers.
//! - [`client`]: the CLI's side of that socket.
//! - [`inputs`]: YAML and JSON message parsing, steward's TCP listener, read folder and
//!   startup folder.
//! - [`http`]: `/v1`, quartermaster and DockerMod, behind one token check.
//! - [`lsdsuite`]: the LSDSuite command port.
//! - [`ops`]: send-and-wait helpers: cluster-wide lists, routing to a container's node,
//!   placed container runs.
//! - [`metrics`]: the `/metrics` and `/healthz` endpoint.
//! - [`peer`]: who is at the other end of a TCP connection, and whether they may use
//!   the steward and LSDSuite ports.

pub mod client;
pub mod control;
pub mod dashboard;
pub mod http;
pub mod inputs;
pub mod lsdsuite;
pub mod metrics;
pub mod ops;
pub mod peer;

use bosun_node::{Config, Node};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The shortest HTTP API token taken.
const MIN_TOKEN_LENGTH: usize = 16;

/// Why the node's listeners could not start. Nothing is left listening when this is
/// returned before every listener was bound; the caller cancels `shutdown` to stop the
/// ones already spawned.
#[derive(Debug, thiserror::Error)]
pub enum IngressError {
    /// A listener could not be bound.
    #[error("cannot listen {what} on {address}: {source}")]
    Bind {
        /// Which listener, e.g. "for metrics".
        what: &'static str,
        /// The address or socket path.
        address: String,
        /// Why.
        source: std::io::Error,
    },
    /// The HTTP API is on but has no token.
    #[error(
        "the HTTP API needs a token: set BOSUN_HTTP_TOKEN (or quartermaster's TOKEN), or http_token_file in the config (never a flag: flags show in ps)"
    )]
    NoToken,
    /// BOSUN_HTTP_TOKEN and quartermaster's TOKEN are both set, to different tokens.
    #[error("BOSUN_HTTP_TOKEN and TOKEN are both set, to different tokens; set one")]
    TwoTokens,
    /// The metrics endpoint is asked to listen beyond loopback without the HTTP API's
    /// conditions.
    #[error(
        "metrics_listen {address} is reachable from other hosts; as for the HTTP API, that needs http_allow_remote = true (plain HTTP: trusted networks only) and the HTTP token, which /metrics then asks for; or listen on 127.0.0.1"
    )]
    RemoteMetrics {
        /// The address.
        address: std::net::SocketAddr,
    },
    /// The HTTP token file could not be read, or others may read it.
    #[error("cannot use the HTTP token file: {0}")]
    TokenFile(#[from] bosun_trust::secret_file::SecretFileError),
    /// The HTTP token is too short to be safe.
    #[error("the HTTP API token is too short: use at least 16 characters (e.g. uuidgen)")]
    ShortToken,
    /// The HTTP API would listen beyond loopback in plain HTTP without being allowed to.
    #[error(
        "http_listen {address} is beyond this host, where the token must not cross the \
         network in clear: set http_tls_cert and http_tls_key so that the API speaks HTTPS, \
         or set http_allow_remote = true for plain HTTP on a trusted network (or behind a \
         TLS proxy), or listen on 127.0.0.1"
    )]
    RemoteHttp {
        /// The address.
        address: std::net::SocketAddr,
    },
    /// Only one of the HTTP API's certificate and key is set.
    #[error("the HTTP API's TLS needs both http_tls_cert and http_tls_key")]
    HttpTlsHalf,
    /// The HTTP API's certificate or key cannot be used.
    #[error("cannot use the HTTP API's TLS {what} {path}: {reason}")]
    HttpTls {
        /// `certificate` or `key`.
        what: &'static str,
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        reason: String,
    },
}

/// Bind every listener `config` asks for (the local socket always; metrics, steward TCP,
/// LSDSuite, HTTP API and the read folder when configured), spawn each on `tracker`
/// until `shutdown` is cancelled, and queue the startup folder's messages. Returns once
/// everything is listening. After that no listener stops on its own: accept errors are
/// logged and retried.
pub async fn serve(
    node: Node,
    config: &Config,
    shutdown: CancellationToken,
    tracker: &TaskTracker,
) -> Result<(), IngressError> {
    // Every address is bound before anything is spawned, so a bad one stops the start-up
    // with nothing half-open.
    let tls = match (&config.http_tls_cert, &config.http_tls_key) {
        _ if config.http_listen.is_none() => None,
        (Some(cert), Some(key)) => Some(http::tls_config(cert, key)?),
        (None, None) => None,
        _ => return Err(IngressError::HttpTlsHalf),
    };
    let token = match &config.http_listen {
        Some(address)
            if !address.ip().is_loopback() && tls.is_none() && !config.http_allow_remote =>
        {
            return Err(IngressError::RemoteHttp { address: *address });
        }
        Some(_) => Some(http_token(config)?),
        None => None,
    };
    let socket_path = config.socket_path();
    let socket = control::bind(&socket_path).map_err(|source| IngressError::Bind {
        what: "on the local socket",
        address: socket_path.display().to_string(),
        source,
    })?;
    // /metrics beyond loopback: the HTTP API's rules (allowed remote, and its token).
    let metrics_token = match config.metrics_listen {
        Some(address) if !address.ip().is_loopback() => {
            if !config.http_allow_remote {
                return Err(IngressError::RemoteMetrics { address });
            }
            Some(http_token(config)?)
        }
        _ => None,
    };
    let metrics = bind(config.metrics_listen, "for metrics").await?;
    let tcp = bind(config.tcp_listen, "for messages").await?;
    let lsdsuite = bind(config.lsdsuite_listen, "for LSDSuite commands").await?;
    let http = bind(config.http_listen, "for HTTP").await?;

    tracker.spawn(control::serve(
        node.clone(),
        socket,
        socket_path,
        shutdown.clone(),
        tracker.clone(),
    ));
    if let Some(listener) = metrics {
        tracing::info!(addr = ?listener.local_addr().ok(), "serving /metrics");
        let (metrics, shutdown) = (node.metrics(), shutdown.clone());
        tracker.spawn(async move {
            if let Err(e) = metrics::serve(listener, metrics, metrics_token, shutdown).await {
                tracing::error!(error = %e, "the metrics endpoint stopped");
            }
        });
    }
    if let Some(listener) = tcp {
        tracing::info!(
            addr = ?listener.local_addr().ok(),
            allow_remote = config.tcp_allow_remote,
            "taking steward message arrays on TCP (from this node's user or root on this host{})",
            if config.tcp_allow_remote { ", and from anyone on the network: trusted networks only" } else { "" }
        );
        tracker.spawn(inputs::serve_tcp(
            node.clone(),
            listener,
            shutdown.clone(),
            tracker.clone(),
        ));
    }
    if let Some(listener) = lsdsuite {
        let addr = listener.local_addr().ok();
        if addr.is_some_and(|a| !a.ip().is_loopback()) {
            tracing::warn!(
                ?addr,
                allow_remote = config.tcp_allow_remote,
                "the LSDSuite command port listens beyond loopback; it runs commands without a token, so only this node's user and root on this host may use it, and remote peers only with tcp_allow_remote on a trusted network"
            );
        }
        tracing::info!(?addr, "LSDSuite command port open");
        tracker.spawn(lsdsuite::serve(
            node.clone(),
            listener,
            shutdown.clone(),
            tracker.clone(),
        ));
    }
    if let (Some(listener), Some(token)) = (http, token) {
        tracing::info!(addr = ?listener.local_addr().ok(), https = tls.is_some(), "HTTP API open (/v1, quartermaster, DockerMod)");
        let (node, shutdown) = (node.clone(), shutdown.clone());
        tracker.spawn(async move {
            if let Err(e) = http::serve(node, listener, token, tls, shutdown).await {
                tracing::error!(error = %e, "the HTTP API stopped");
            }
        });
    }
    if let Some(dir) = config.read_path() {
        tracker.spawn(inputs::watch_folder(node.clone(), dir, shutdown.clone()));
    }
    let startup = config.startup_path();
    let queued = inputs::submit_startup(&node, &startup).await;
    if queued > 0 {
        tracing::info!(queued, dir = %startup.display(), "startup messages queued");
    }
    Ok(())
}

/// Bind a TCP listener when an address is configured.
async fn bind(
    address: Option<std::net::SocketAddr>,
    what: &'static str,
) -> Result<Option<TcpListener>, IngressError> {
    let Some(address) = address else {
        return Ok(None);
    };
    TcpListener::bind(address)
        .await
        .map(Some)
        .map_err(|source| IngressError::Bind {
            what,
            address: address.to_string(),
            source,
        })
}

/// The HTTP API token: `BOSUN_HTTP_TOKEN` when set and not empty, else the trimmed
/// contents of `http_token_file`, which only its owner may read. Never a flag, since
/// flags show in `ps`.
fn http_token(config: &Config) -> Result<String, IngressError> {
    let given = |name: &str| std::env::var(name).ok().filter(|t| !t.is_empty());
    let from_env = match (
        given(bosun_trust::secret_env::HTTP_TOKEN),
        given(bosun_trust::secret_env::QUARTERMASTER_TOKEN),
    ) {
        (Some(ours), Some(theirs)) if ours != theirs => return Err(IngressError::TwoTokens),
        (Some(token), _) | (None, Some(token)) => Some(token),
        (None, None) => None,
    };
    let token = match from_env {
        Some(token) => token,
        None => match &config.http_token_file {
            Some(path) => bosun_trust::secret_file::read_secret(path)?,
            None => return Err(IngressError::NoToken),
        },
    };
    if token.len() < MIN_TOKEN_LENGTH {
        return Err(IngressError::ShortToken);
    }
    Ok(token)
}

/// What the tests of this crate share: a standalone node in a temporary folder.
#[cfg(test)]
pub(crate) mod test_support {
    use std::path::Path;
    use std::sync::Arc;

    use bosun_bus::{Hub, LocalTransport};
    use bosun_node::{Config, Node};

    /// A quiet config for a node called `name` whose data dir is `<dir>/<name>`.
    pub fn config(dir: &Path, name: &str) -> Config {
        Config {
            name: name.into(),
            data_dir: dir.join(name),
            log: "warn".into(),
            ..Config::default()
        }
    }

    /// Start a node on its own in-process transport.
    pub async fn start(config: Config) -> Node {
        Node::start(config, Arc::new(LocalTransport::new(Hub::new())), false)
            .await
            .expect("start a test node")
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn shutdown_ends_every_listener_before_it_returns() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            metrics_listen: Some(([127, 0, 0, 1], 0).into()),
            tcp_listen: Some(([127, 0, 0, 1], 0).into()),
            lsdsuite_listen: Some(([127, 0, 0, 1], 0).into()),
            ..test_support::config(dir.path(), "n1")
        };
        let node = test_support::start(config.clone()).await;
        serve(
            node.clone(),
            &config,
            node.shutdown_token(),
            &node.tracker(),
        )
        .await
        .unwrap();
        let socket = config.socket_path();
        assert!(socket.exists(), "the socket is bound when serve returns");
        // The node's loops, the socket, three TCP listeners and the read folder.
        assert!(node.tracker().len() >= 5, "{}", node.tracker().len());

        tokio::time::timeout(Duration::from_secs(30), node.shutdown())
            .await
            .expect("shutdown within its grace");
        assert!(node.tracker().is_empty(), "no task outlives shutdown");
        assert!(!socket.exists(), "the socket file is removed");
    }

    #[test]
    fn a_token_file_others_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "0123456789abcdef0123\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let config = Config {
            http_token_file: Some(path.clone()),
            ..test_support::config(dir.path(), "n1")
        };
        let error = http_token(&config).unwrap_err().to_string();
        assert!(error.contains("chmod 600"), "{error}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(http_token(&config).unwrap(), "0123456789abcdef0123");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_socket_of_a_running_node_is_not_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let config = test_support::config(dir.path(), "n1");
        let node = test_support::start(config.clone()).await;
        serve(
            node.clone(),
            &config,
            node.shutdown_token(),
            &node.tracker(),
        )
        .await
        .unwrap();
        let again = control::bind(&config.socket_path()).unwrap_err();
        assert_eq!(again.kind(), std::io::ErrorKind::AddrInUse, "{again}");
        node.shutdown().await;
    }
}
