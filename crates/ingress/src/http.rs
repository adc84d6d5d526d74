//! The HTTP API, off unless `http_listen` is set: bosun's own `/v1`, and the
//! compatibility endpoints of quartermaster (`POST /run`, `POST /stop`,
//! `GET /status/:id`) and DockerMod (`POST /` with an `action`). Every request is turned
//! into messages ([`crate::ops`]), so it is durable and runs once like any other.
//!
//! Every endpoint needs the token (`BOSUN_HTTP_TOKEN` or `http_token_file`): as
//! `Authorization: Bearer …`, or where quartermaster put it (`token` in the body or the
//! query). Tokens are compared in constant time. A wrong or missing token gets a 401
//! with a JSON body. The one exception is opt-in: `dockermod_open = true` accepts
//! DockerMod's requests without a token, as DockerMod did. One middleware layer,
//! [`authorise`], checks every route, so no handler can forget it.
//!
//! A request is judged before its body is read: a wrong bearer token, or none on `/v1`,
//! is refused without reading a byte of the body. Only where the token may be in the
//! body (quartermaster, DockerMod) is the body read to find it, up to [`BODY_LIMIT`].
//! Headers must arrive within [`HEADER_TIMEOUT`] and a body within [`BODY_TIMEOUT`], or
//! the connection is dropped; at most `http_max_connections` are served at once. The
//! API speaks plain HTTP, so [`crate::serve`] refuses an address beyond loopback unless
//! `http_allow_remote` is set.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bosun_proto::Method;
use bosun_proto::container::ContainerSpec;
use serde::Deserialize;
use serde_json::{Value, json};

pub mod openapi;

use crate::dashboard::{self, Dashboard};
use crate::ops::{self, OpError};
use bosun_node::Node;
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Clone)]
struct App {
    node: Node,
    token: Arc<String>,
    dockermod_open: bool,
    body_timeout: Duration,
    dashboard: Dashboard,
}

impl axum::extract::FromRef<App> for Dashboard {
    fn from_ref(app: &App) -> Dashboard {
        app.dashboard.clone()
    }
}

/// The largest request body read; the same as axum's default limit for the handlers'
/// own extractors.
pub const BODY_LIMIT: usize = 2 * 1024 * 1024;

/// How long a client may take to send a request's headers (also the longest a kept-alive
/// connection may sit idle).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a client may take to send a request's body.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// How long connections still open at shutdown get to finish their request.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Serve the API on `listener` until `shutdown` is cancelled; `token` is required on
/// every route but `/healthz` (and DockerMod's `/` when `dockermod_open` is set). At most
/// `http_max_connections` connections are served at once: one beyond them is closed at
/// once. Accept errors are logged and retried.
pub async fn serve(
    node: Node,
    listener: tokio::net::TcpListener,
    token: String,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let limits = Limits {
        max_connections: node.config().http_max_connections,
        tls,
        ..Limits::default()
    };
    serve_with(node, listener, token, shutdown, limits).await
}

/// The HTTPS configuration from a PEM certificate chain and a PEM private key (which
/// only its owner may read), with rustls on ring; HTTP/1.1 only.
pub fn tls_config(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<Arc<rustls::ServerConfig>, crate::IngressError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let bad =
        |what: &'static str, path: &std::path::Path, reason: String| crate::IngressError::HttpTls {
            what,
            path: path.to_path_buf(),
            reason,
        };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect())
        .map_err(|e| bad("certificate", cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(bad("certificate", cert, "no PEM certificate in it".into()));
    }
    let key_text =
        bosun_trust::secret_file::read_secret(key).map_err(|e| bad("key", key, e.to_string()))?;
    let private = PrivateKeyDer::from_pem_slice(key_text.as_bytes())
        .map_err(|e| bad("key", key, format!("no PEM private key in it: {e}")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad("certificate", cert, e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| bad("key", key, format!("does not fit the certificate: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// How long clients may take, how many are served at once, and whether over TLS.
#[derive(Debug, Clone)]
pub struct Limits {
    /// For a request's headers, and the longest a kept-alive connection may sit idle.
    pub header_timeout: Duration,
    /// For a request's body.
    pub body_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
    /// HTTPS: every connection must complete a TLS handshake (within `header_timeout`).
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_timeout: HEADER_TIMEOUT,
            body_timeout: BODY_TIMEOUT,
            max_connections: 256,
            tls: None,
        }
    }
}

/// [`serve`] with explicit [`Limits`].
pub async fn serve_with(
    node: Node,
    listener: tokio::net::TcpListener,
    token: String,
    shutdown: CancellationToken,
    limits: Limits,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let router = router(node, token, limits.body_timeout, limits.tls.is_some());
    let connections = TaskTracker::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "HTTP accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "HTTP connection closed: http_max_connections are open");
            continue;
        };
        let router = router.clone();
        let shutdown = shutdown.clone();
        let tls = limits.tls.clone().map(tokio_rustls::TlsAcceptor::from);
        let header_timeout = limits.header_timeout;
        connections.spawn(async move {
            match tls {
                None => serve_connection(stream, router, header_timeout, shutdown).await,
                Some(acceptor) => {
                    let handshake = acceptor.accept(stream);
                    tokio::select! {
                        accepted = tokio::time::timeout(header_timeout, handshake) => match accepted {
                            Ok(Ok(stream)) => {
                                serve_connection(stream, router, header_timeout, shutdown).await;
                            }
                            Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                            Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                        },
                        _ = shutdown.cancelled() => {}
                    }
                }
            }
            drop(permit);
        });
    }
    connections.close();
    let _ = tokio::time::timeout(SHUTDOWN_GRACE * 2, connections.wait()).await;
    Ok(())
}

/// Serve one connection (plain or TLS) until it ends, with hyper's header read timeout;
/// at shutdown, let its request finish within [`SHUTDOWN_GRACE`].
async fn serve_connection<I>(
    io: I,
    router: Router,
    header_timeout: Duration,
    shutdown: CancellationToken,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper_util::service::TowerToHyperService::new(router);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(header_timeout);
    let connection = builder.serve_connection(hyper_util::rt::TokioIo::new(io), service);
    let mut connection = std::pin::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => {}
        _ = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(SHUTDOWN_GRACE, connection).await;
        }
    }
}

/// The routes, behind the token check; `secure` when served over HTTPS.
fn router(node: Node, token: String, body_timeout: Duration, secure: bool) -> Router {
    let token = Arc::new(token);
    let app = App {
        dockermod_open: node.config().dockermod_open,
        dashboard: Dashboard::new(node.clone(), token.clone(), secure),
        node,
        token,
        body_timeout,
    };
    Router::new()
        .route("/", get(dashboard::fleet).post(dockermod))
        .merge(dashboard::routes())
        .route("/run", post(qm_run))
        .route("/stop", post(qm_stop))
        .route("/status/{id}", get(qm_status))
        .route("/healthz", get(|| async { "ok" }))
        .route("/v1/messages", post(v1_submit))
        .route("/v1/messages/{id}", get(v1_status))
        .route("/v1/messages/{id}/cancel", post(v1_cancel))
        .route("/v1/nodes", get(v1_nodes))
        .route("/v1/containers", get(v1_list).post(v1_run))
        .route("/v1/containers/{id}", get(v1_inspect).delete(v1_remove))
        .route(
            "/v1/containers/{id}/{action}",
            post(v1_action).get(v1_action_get),
        )
        .route("/v1/images", get(v1_images))
        .route("/v1/images/pull", post(v1_pull))
        .route("/v1/openapi.json", get(v1_openapi))
        .layer(middleware::from_fn_with_state(app.clone(), authorise))
        .with_state(app)
}

/// Where a route may carry its token besides `Authorization: Bearer`, as the API it
/// stands in for did.
enum TokenPlace {
    /// Only the header (`/v1`).
    Header,
    /// Also `token` in the JSON body (quartermaster's `/run` and `/stop`, DockerMod).
    Body,
    /// Also `?token=` in the query (quartermaster's `/status/{id}`).
    Query,
}

/// Read the whole body of `request`, at most [`BODY_LIMIT`] bytes within
/// `timeout` ([`BODY_TIMEOUT`]), so that no handler waits on a slow client.
async fn read_body(request: Request, timeout: Duration) -> Result<Request, Response> {
    let (parts, body) = request.into_parts();
    let bytes = read_bytes(body, timeout).await?;
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

/// A whole body, at most [`BODY_LIMIT`] bytes within `timeout`.
async fn read_bytes(body: Body, timeout: Duration) -> Result<axum::body::Bytes, Response> {
    use axum::body::HttpBody;
    // An announced length past the limit is refused before anything is read.
    if body.size_hint().lower() > BODY_LIMIT as u64 {
        return Err(too_large());
    }
    match tokio::time::timeout(timeout, axum::body::to_bytes(body, BODY_LIMIT)).await {
        Err(_) => Err(failure(
            StatusCode::REQUEST_TIMEOUT,
            "the request body did not arrive in time",
        )),
        Ok(Err(_)) => Err(too_large()),
        Ok(Ok(bytes)) => Ok(bytes),
    }
}

fn too_large() -> Response {
    failure(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("request body too large or cut short (the limit is {BODY_LIMIT} bytes)"),
    )
}

/// Run the handler on the whole body, read first (see [`read_body`]).
async fn run_read(app: &App, request: Request, next: Next) -> Response {
    match read_body(request, app.body_timeout).await {
        Ok(request) => next.run(request).await,
        Err(refused) => refused,
    }
}

/// The one token check of the API. A bearer token, when present, decides alone, before
/// the body is read; otherwise the route's other place is read.
async fn authorise(State(app): State<App>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    if dashboard::is_dashboard(request.method(), path) {
        return match dashboard::refusal(&app.dashboard, &request) {
            Some(refused) => refused,
            None => run_read(&app, request, next).await,
        };
    }
    if path == "/healthz" || path == "/v1/openapi.json" || (path == "/" && app.dockermod_open) {
        return run_read(&app, request, next).await;
    }
    let place = if path.starts_with("/v1/") {
        TokenPlace::Header
    } else if path.starts_with("/status/") {
        TokenPlace::Query
    } else {
        TokenPlace::Body
    };
    let bearer = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    if let Some(bearer) = bearer {
        return if app.accepts(&bearer) {
            run_read(&app, request, next).await
        } else {
            unauthorised()
        };
    }
    match place {
        TokenPlace::Header => unauthorised(),
        TokenPlace::Query => {
            let query = Query::<BTreeMap<String, String>>::try_from_uri(request.uri())
                .map(|q| q.0)
                .unwrap_or_default();
            match query.get("token") {
                Some(token) if app.accepts(token) => run_read(&app, request, next).await,
                _ => unauthorised(),
            }
        }
        TokenPlace::Body => {
            let (parts, body) = request.into_parts();
            let bytes = match read_bytes(body, app.body_timeout).await {
                Ok(bytes) => bytes,
                Err(refused) => return refused,
            };
            match body_token(&bytes) {
                Some(token) if app.accepts(&token) => {
                    next.run(Request::from_parts(parts, Body::from(bytes)))
                        .await
                }
                _ => unauthorised(),
            }
        }
    }
}

/// The `token` field of a JSON body, where quartermaster and DockerMod put it.
pub fn body_token(body: &[u8]) -> Option<String> {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v["token"].as_str().map(str::to_string))
}

impl App {
    /// True when `token` is the API token.
    fn accepts(&self, token: &str) -> bool {
        token_matches(&self.token, token)
    }
}

/// Constant-time comparison: the time taken does not depend on where the tokens differ.
/// An empty expected token matches nothing.
pub(crate) fn token_matches(expected: &str, given: &str) -> bool {
    !expected.is_empty() && bool::from(given.as_bytes().ct_eq(expected.as_bytes()))
}

fn unauthorised() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        Json(json!({ "success": false, "error": "missing or wrong token" })),
    )
        .into_response()
}

fn failure(code: StatusCode, error: impl ToString) -> Response {
    (
        code,
        Json(json!({ "success": false, "error": error.to_string() })),
    )
        .into_response()
}

fn op_failure(e: OpError) -> Response {
    let code = match e {
        OpError::Invalid(_) => StatusCode::BAD_REQUEST,
        OpError::NotFound(_) => StatusCode::NOT_FOUND,
        OpError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
        OpError::Failed(_) => StatusCode::BAD_GATEWAY,
    };
    failure(code, e)
}

/// Why a request body is refused, before anything is sent.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// Not JSON of the shape the endpoint takes.
    #[error("bad {what}: {source}")]
    Json {
        /// Which body, e.g. `/run body`.
        what: &'static str,
        /// Where and why it does not parse.
        source: serde_json::Error,
    },
    /// A command line that cannot be split into an argv.
    #[error(transparent)]
    Command(#[from] SplitError),
    /// A field the request needs is missing or not a string.
    #[error("{0}")]
    Missing(&'static str),
    /// A DockerMod `instances` that is not a count of containers.
    #[error("instances {0} is not a number of containers; give a whole number from 1 to 10000")]
    Instances(Value),
    /// A DockerMod action that does not exist.
    #[error(
        "unknown action {0:?}; use create-container, start-container, stop-container, restart-container, delete-container, inspect-container, list-containers, list-images, register or unregister"
    )]
    UnknownAction(String),
}

/// Why a command line could not be split.
#[derive(Debug, thiserror::Error)]
#[error("unclosed quote or trailing backslash in command {0:?}")]
pub struct SplitError(String);

/// Split a command line into an argv as a POSIX shell would (whitespace separates,
/// single and double quotes group, backslash escapes), without running any shell.
pub fn split_command(line: &str) -> Result<Vec<String>, SplitError> {
    shlex::split(line).ok_or_else(|| SplitError(line.to_string()))
}

// === quartermaster ===

#[derive(Deserialize)]
struct QmRun {
    #[serde(default)]
    command: Option<String>,
    image: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    memory: Option<u64>,
    #[serde(default)]
    auth: Option<String>,
}

/// The container a quartermaster `POST /run` body asks for.
pub fn quartermaster_run(body: &[u8]) -> Result<ContainerSpec, BodyError> {
    let request: QmRun = serde_json::from_slice(body).map_err(|source| BodyError::Json {
        what: "/run body",
        source,
    })?;
    let command = request
        .command
        .as_deref()
        .map(split_command)
        .transpose()?
        .unwrap_or_default();
    Ok(ContainerSpec {
        image: Some(request.image),
        name: request.name,
        command,
        labels: request.labels,
        memory_mb: request.memory,
        auth: request.auth,
        ..Default::default()
    })
}

/// The placement quartermaster asks for: one instance on a `role=worker` node.
pub fn quartermaster_constraints() -> BTreeMap<String, String> {
    [("role".to_string(), "worker".to_string())].into()
}

async fn qm_run(State(app): State<App>, body: axum::body::Bytes) -> Response {
    let spec = match quartermaster_run(&body) {
        Ok(spec) => spec,
        Err(e) => return failure(StatusCode::BAD_REQUEST, e),
    };
    // quartermaster runs jobs only on role=worker nodes, where the memory fits.
    let constraints = quartermaster_constraints();
    match ops::run_containers(&app.node, &spec, vec![], Some(1), constraints, false).await {
        Ok(started) => match started.first() {
            Some(ops::Started { id: Some(id), .. }) => {
                Json(json!({ "success": true, "id": id })).into_response()
            }
            Some(ops::Started { error, node, .. }) => failure(
                StatusCode::BAD_GATEWAY,
                format!("on {node}: {}", error.clone().unwrap_or_default()),
            ),
            None => failure(StatusCode::BAD_GATEWAY, "no container was started"),
        },
        Err(e) => op_failure(e),
    }
}

#[derive(Deserialize)]
struct QmStop {
    #[serde(default)]
    id: Option<String>,
}

/// The container a quartermaster `POST /stop` body names.
pub fn quartermaster_stop(body: &[u8]) -> Result<String, BodyError> {
    serde_json::from_slice::<QmStop>(body)
        .ok()
        .and_then(|request| request.id)
        .ok_or(BodyError::Missing("give the id of the container to stop"))
}

async fn qm_stop(State(app): State<App>, body: axum::body::Bytes) -> Response {
    let id = match quartermaster_stop(&body) {
        Ok(id) => id,
        Err(e) => return failure(StatusCode::BAD_REQUEST, e),
    };
    if let Err(e) = ops::on_container(&app.node, Method::ContainerStop, &id, &[]).await {
        return op_failure(e);
    }
    match ops::on_container(&app.node, Method::ContainerRemove, &id, &["force"]).await {
        Ok(_) => Json(json!({ "success": true, "id": id })).into_response(),
        Err(e) => op_failure(e),
    }
}

async fn qm_status(State(app): State<App>, Path(id): Path<String>) -> Response {
    match ops::on_container(&app.node, Method::ContainerInspect, &id, &[]).await {
        Ok((node, inspect)) => {
            let inspect: Value = serde_json::from_str(&inspect).unwrap_or_default();
            let state = inspect["State"]["Status"]
                .as_str()
                .unwrap_or("unknown")
                .to_string();
            let status = match state.as_str() {
                "running" => "started",
                "exited" | "dead" => "stopped",
                other => other,
            };
            Json(json!({
                "success": true,
                "id": inspect["Id"].as_str().unwrap_or(&id),
                "status": status,
                "state": state,
                "node": node,
            }))
            .into_response()
        }
        Err(e) => op_failure(e),
    }
}

// === DockerMod ===

/// What a DockerMod `POST /` body asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum DockerModRequest {
    /// `create-container`: create (without starting) `instances` containers, or one.
    Create {
        /// The container.
        spec: Box<ContainerSpec>,
        /// How many; when given, the answer is a list.
        instances: Option<u32>,
    },
    /// `start-`, `stop-`, `restart-` and `inspect-container`.
    OnContainer {
        /// The method to run on the container's node.
        method: Method,
        /// Container id, prefix or name.
        id: String,
        /// The status code DockerMod answered with.
        status_code: u16,
    },
    /// `delete-container`, forced.
    Delete {
        /// Container id, prefix or name.
        id: String,
    },
    /// `list-containers`, of every node when `all` is true.
    List {
        /// Ask every live node.
        cluster: bool,
    },
    /// `list-images` of this node.
    ListImages,
    /// `register` (put back into placement) and `unregister` (drain) of a node.
    Membership {
        /// The node, DockerMod's `hostname`.
        hostname: String,
        /// True for `unregister`.
        drained: bool,
    },
}

/// Docker's create-container JSON in a `create-raw-container` body.
fn raw_spec(request: &Value) -> Result<ContainerSpec, BodyError> {
    if !request["template"].is_null() || !request["image"].is_null() {
        return Err(BodyError::Missing(
            "create-raw-container takes Docker's JSON in \"body\" only; for \"template\" or \"image\" use create-container",
        ));
    }
    match &request["body"] {
        Value::Object(_) => Ok(ContainerSpec {
            raw: Some(request["body"].clone()),
            name: request["name"].as_str().map(str::to_string),
            ..Default::default()
        }),
        Value::Null => Err(BodyError::Missing(
            "create-raw-container needs \"body\": Docker's create-container JSON",
        )),
        _ => Err(BodyError::Missing(
            "\"body\" must be Docker's create-container JSON object",
        )),
    }
}

/// Read a DockerMod request body.
pub fn dockermod_request(request: &Value) -> Result<DockerModRequest, BodyError> {
    let id = || request["id"].as_str().unwrap_or_default().to_string();
    let on = |method: Method, status_code: u16| {
        let id = id();
        if id.is_empty() {
            return Err(BodyError::Missing("this action needs an \"id\""));
        }
        Ok(DockerModRequest::OnContainer {
            method,
            id,
            status_code,
        })
    };
    let instances = || match &request["instances"] {
        Value::Null => Ok(None),
        other => other
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| BodyError::Instances(other.clone())),
    };
    match request["action"].as_str().unwrap_or("") {
        "create-container" => {
            let text = |key: &str| request[key].as_str().map(str::to_string);
            Ok(DockerModRequest::Create {
                spec: Box::new(ContainerSpec {
                    image: text("image"),
                    template: text("template"),
                    name: text("name"),
                    ..Default::default()
                }),
                instances: instances()?,
            })
        }
        "create-raw-container" => Ok(DockerModRequest::Create {
            spec: Box::new(raw_spec(request)?),
            instances: instances()?,
        }),
        "start-container" => on(Method::ContainerStart, 204),
        "stop-container" => on(Method::ContainerStop, 204),
        "restart-container" => on(Method::ContainerRestart, 204),
        "inspect-container" => on(Method::ContainerInspect, 200),
        "delete-container" => {
            let id = id();
            if id.is_empty() {
                return Err(BodyError::Missing("delete-container needs an \"id\""));
            }
            Ok(DockerModRequest::Delete { id })
        }
        "list-containers" => Ok(DockerModRequest::List {
            cluster: request["all"].as_bool().unwrap_or(false),
        }),
        "list-images" => Ok(DockerModRequest::ListImages),
        // A node joins the fleet by saying hello; `unregister` drains it from placement
        // (its containers keep running) and `register` puts it back.
        action @ ("register" | "unregister") => match request["hostname"].as_str() {
            Some(hostname) if !hostname.is_empty() => Ok(DockerModRequest::Membership {
                hostname: hostname.to_string(),
                drained: action == "unregister",
            }),
            _ => Err(BodyError::Missing(
                "register and unregister need a \"hostname\": the node's name",
            )),
        },
        other => Err(BodyError::UnknownAction(other.to_string())),
    }
}

/// DockerMod's answer: its keys around what Docker said. `Content-Type` and
/// `Content-Length` describe Docker's body, as DockerMod passed them on.
fn dockermod_answer(owner: Option<&str>, code: u16, body: Option<Value>) -> Value {
    let mut answer = json!({
        "Date": httpdate::fmt_http_date(std::time::SystemTime::now()),
        "statusCode": code,
    });
    match body {
        Some(body) => {
            answer["Content-Type"] = json!("application/json");
            answer["Content-Length"] = json!(body.to_string().len().to_string());
            answer["Response"] = json!({ "Body": body });
        }
        None => answer["Response"] = json!(""),
    }
    if let Some(owner) = owner {
        answer["dockerInstance"] = json!(owner);
    }
    answer
}

/// A DockerMod request that failed: the HTTP status says how, and the answer keeps
/// DockerMod's shape with Docker's `message`, plus bosun's `error`.
fn dockermod_failure(code: StatusCode, error: impl ToString) -> Response {
    let error = error.to_string();
    let mut answer = dockermod_answer(None, code.as_u16(), Some(json!({ "message": error })));
    answer["error"] = json!(error);
    (code, Json(answer)).into_response()
}

fn dockermod_op_failure(e: OpError) -> Response {
    let code = match e {
        OpError::Invalid(_) => StatusCode::BAD_REQUEST,
        OpError::NotFound(_) => StatusCode::NOT_FOUND,
        OpError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
        OpError::Failed(_) => StatusCode::BAD_GATEWAY,
    };
    dockermod_failure(code, e)
}

/// DockerMod's `POST /`. The body is JSON whatever its `Content-Type`: DockerMod's own
/// examples post it with `curl --data`, which says `application/x-www-form-urlencoded`.
async fn dockermod(State(app): State<App>, body: axum::body::Bytes) -> Response {
    let node = &app.node;
    let request: Value = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(source) => {
            return dockermod_failure(
                StatusCode::BAD_REQUEST,
                BodyError::Json {
                    what: "DockerMod request (a JSON object with an \"action\")",
                    source,
                },
            );
        }
    };
    let request = match dockermod_request(&request) {
        Ok(r) => r,
        Err(e) => return dockermod_failure(StatusCode::BAD_REQUEST, e),
    };
    match request {
        DockerModRequest::Create { spec, instances } => {
            match ops::run_containers(
                node,
                &spec,
                vec![],
                Some(instances.unwrap_or(1)),
                BTreeMap::new(),
                true,
            )
            .await
            {
                Ok(started) => {
                    let rows: Vec<Value> = started
                        .iter()
                        .map(|s| match &s.id {
                            Some(id) => dockermod_answer(
                                Some(&s.node),
                                201,
                                Some(json!({ "Id": id, "Warnings": null })),
                            ),
                            None => dockermod_answer(
                                Some(&s.node),
                                500,
                                Some(json!({ "message": s.error })),
                            ),
                        })
                        .collect();
                    if instances.is_some() {
                        Json(json!({ "containers": rows })).into_response()
                    } else {
                        Json(rows.into_iter().next().unwrap_or(Value::Null)).into_response()
                    }
                }
                Err(e) => dockermod_op_failure(e),
            }
        }
        DockerModRequest::OnContainer {
            method,
            id,
            status_code,
        } => match ops::on_container(node, method, &id, &[]).await {
            Ok((owner, out)) => {
                let body = (method == Method::ContainerInspect)
                    .then(|| serde_json::from_str::<Value>(&out).ok())
                    .flatten();
                Json(dockermod_answer(Some(&owner), status_code, body)).into_response()
            }
            Err(e) => dockermod_op_failure(e),
        },
        DockerModRequest::Delete { id } => {
            match ops::on_container(node, Method::ContainerRemove, &id, &["force"]).await {
                Ok((owner, _)) => Json(dockermod_answer(Some(&owner), 204, None)).into_response(),
                Err(e) => dockermod_op_failure(e),
            }
        }
        DockerModRequest::List { cluster } => {
            let list = ops::list_containers_as(
                node,
                cluster,
                true,
                ops::ListFormat::Docker,
                std::time::Duration::from_secs(10),
            )
            .await;
            let owner = (!cluster).then(|| node.name());
            let mut answer = dockermod_answer(owner, 200, Some(json!(list.containers)));
            // Nodes that did not answer in time: DockerMod had no such key; bosun says so.
            answer["unanswered"] = json!(list.missing);
            Json(answer).into_response()
        }
        DockerModRequest::ListImages => {
            let m = ops::message(node.name(), Method::ImageList, vec!["docker".into()]);
            match ops::call(node, vec![m], std::time::Duration::from_secs(60))
                .await
                .and_then(|r| ops::stdout(&r[0]))
            {
                Ok(out) => {
                    let images = serde_json::from_str::<Value>(&out).unwrap_or_default();
                    let mut answer = dockermod_answer(Some(node.name()), 200, Some(images));
                    answer["Response-Code"] = json!(200);
                    Json(answer).into_response()
                }
                Err(e) => dockermod_op_failure(e),
            }
        }
        // "No Response", as DockerMod answered.
        DockerModRequest::Membership { hostname, drained } => {
            match ops::drain(node, &hostname, drained).await {
                Ok(_) => StatusCode::NO_CONTENT.into_response(),
                Err(e) => dockermod_op_failure(e),
            }
        }
    }
}

// === /v1 ===

/// A route's query parameters, by name.
type QueryMap = Query<BTreeMap<String, String>>;

/// A route's `{id}`, or why axum could not read it.
type IdPath = Result<Path<String>, axum::extract::rejection::PathRejection>;

/// `Ok` when `name` is this node or a node of the fleet it knows; otherwise a 404 that
/// says which nodes it knows. A view asked of a node never heard of would only wait
/// out its time limit.
fn known_node(node: &Node, name: &str) -> Result<(), Box<Response>> {
    if name == node.name() {
        return Ok(());
    }
    let fleet = node.fleet().unwrap_or_default();
    if fleet.iter().any(|n| n.name == name) {
        return Ok(());
    }
    let mut known: Vec<String> = fleet.into_iter().map(|n| n.name).collect();
    known.push(node.name().to_string());
    known.sort();
    known.dedup();
    Err(Box::new(failure(
        StatusCode::NOT_FOUND,
        format!(
            "no node named {name:?} in this node's fleet (it knows {}); check the name with `bosun nodes`",
            known.join(", ")
        ),
    )))
}

/// The boolean query parameter `name`: `true` or `false`, `default` when absent;
/// anything else is refused with the reason.
fn flag(
    query: &BTreeMap<String, String>,
    name: &str,
    default: bool,
) -> Result<bool, Box<Response>> {
    match query.get(name).map(String::as_str) {
        None => Ok(default),
        Some("true") => Ok(true),
        Some("false") => Ok(false),
        Some(other) => Err(Box::new(failure(
            StatusCode::BAD_REQUEST,
            format!("query parameter {name} must be true or false, not {other:?}"),
        ))),
    }
}

/// A path or query that axum could not read (bad percent-encoding, …), answered like
/// every other refusal of the API: JSON with the reason.
fn unreadable(what: impl std::fmt::Display) -> Response {
    failure(StatusCode::BAD_REQUEST, what)
}

/// `GET /v1/openapi.json`: this API described in OpenAPI 3. It carries no fleet data,
/// so it needs no token, like `/healthz`.
async fn v1_openapi() -> Response {
    (
        [(header::CACHE_CONTROL, "no-cache")],
        Json(openapi::document()),
    )
        .into_response()
}

/// Queue messages: one message object or an array of them, in steward's field names,
/// as JSON or YAML.
#[utoipa::path(post, path = "/v1/messages", tag = "messages",
    request_body(content = openapi::MessagesBody, description = "One message or an array, JSON (or YAML)",
        content_type = "application/json"),
    responses(
        (status = 202, description = "Queued durably, one id per destination", body = openapi::QueuedAnswer),
        (status = 400, description = "Not a message or an array of them, or refused: the reason", body = openapi::Failure),
        openapi::TokenRefusals,
    ))]
async fn v1_submit(State(app): State<App>, body: axum::body::Bytes) -> Response {
    let Ok(body) = std::str::from_utf8(&body) else {
        return failure(StatusCode::BAD_REQUEST, "the body is not UTF-8 text");
    };
    match crate::inputs::parse_messages(body) {
        Ok(messages) => match app.node.submit(messages).await {
            Ok(queued) => {
                (StatusCode::ACCEPTED, Json(openapi::QueuedAnswer { queued })).into_response()
            }
            Err(e) => failure(StatusCode::BAD_REQUEST, e),
        },
        Err(e) => failure(StatusCode::BAD_REQUEST, e),
    }
}

/// Everything this node knows of one message: as its sender and as its destination,
/// its history, streamed output and result.
#[utoipa::path(get, path = "/v1/messages/{id}", tag = "messages",
    params(("id" = String, Path, description = "The message id")),
    responses(
        (status = 200, description = "The message's records", body = bosun_node::StatusReport),
        (status = 400, description = "The id cannot be read", body = openapi::Failure),
        (status = 404, description = "No message with that id here", body = openapi::Failure),
        openapi::TokenRefusals,
        (status = 500, description = "The node's records cannot be read", body = openapi::Failure),
    ))]
async fn v1_status(State(app): State<App>, id: IdPath) -> Response {
    let id = match id {
        Ok(Path(id)) => id,
        Err(e) => return unreadable(e),
    };
    match app.node.status(&id) {
        Ok(r) if r.sent.is_none() && r.received.is_none() => {
            failure(StatusCode::NOT_FOUND, format!("no message with id {id}"))
        }
        Ok(r) => Json(r).into_response(),
        Err(e) => failure(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

/// Cancel a message this node sent that has not run: never delivered, it ends
/// `cancelled` here; maybe delivered, its destination is asked and decides.
#[utoipa::path(post, path = "/v1/messages/{id}/cancel", tag = "messages",
    params(("id" = String, Path, description = "The message id")),
    responses(
        (status = 200, description = "Cancelled, or its destination asked", body = crate::control::CancelAnswer),
        (status = 400, description = "The id cannot be read", body = openapi::Failure),
        (status = 404, description = "This node sent no message with that id", body = openapi::Failure),
        (status = 409, description = "Not cancelled: it was delivered, runs or ended; the reason says which", body = openapi::Failure),
        openapi::TokenRefusals,
        (status = 500, description = "The node's records cannot be read", body = openapi::Failure),
    ))]
async fn v1_cancel(State(app): State<App>, id: IdPath) -> Response {
    let id = match id {
        Ok(Path(id)) => id,
        Err(e) => return unreadable(e),
    };
    match app.node.status(&id) {
        Ok(r) if r.sent.is_none() => {
            return failure(
                StatusCode::NOT_FOUND,
                format!("this node sent no message with id {id}"),
            );
        }
        Ok(_) => {}
        Err(e) => return failure(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
    match app.node.cancel(&id).await {
        bosun_node::Cancelled::Refused { reason } => {
            failure(StatusCode::CONFLICT, format!("not cancelled: {reason}"))
        }
        answer => Json(crate::control::CancelAnswer { id, answer }).into_response(),
    }
}

/// The fleet as this node knows it: every node's state, last hello and inventory.
#[utoipa::path(get, path = "/v1/nodes", tag = "fleet",
    responses(
        (status = 200, description = "Every node", body = Vec<bosun_node::FleetNode>),
        openapi::TokenRefusals,
        (status = 500, description = "The node's records cannot be read", body = openapi::Failure),
    ))]
async fn v1_nodes(State(app): State<App>) -> Response {
    match app.node.fleet() {
        Ok(nodes) => Json(nodes).into_response(),
        Err(e) => failure(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

/// A `POST /v1/containers` body: a [`ContainerSpec`] and where to run it, in one object.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRequest {
    /// The container.
    pub spec: ContainerSpec,
    /// Destination nodes (none: placement, or this node).
    pub nodes: Vec<String>,
    /// How many to place over the fleet.
    pub instances: Option<u32>,
    /// Node labels that must match.
    pub constraints: BTreeMap<String, String>,
    /// Create without starting.
    pub create_only: bool,
}

/// The fields of a [`RunRequest`] that are not the spec's.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Placement {
    #[serde(default)]
    nodes: Vec<String>,
    #[serde(default)]
    instances: Option<u32>,
    #[serde(default)]
    constraints: BTreeMap<String, String>,
    #[serde(default)]
    create_only: bool,
}

/// Read a `POST /v1/containers` body. Unknown fields are refused, as in every spec: the
/// placement fields are taken out first and the rest must be a [`ContainerSpec`] (serde's
/// `flatten` would drop unknown fields silently).
pub fn v1_run_request(body: &[u8]) -> Result<RunRequest, BodyError> {
    let bad = |source| BodyError::Json {
        what: "container request",
        source,
    };
    let mut spec: serde_json::Map<String, Value> = serde_json::from_slice(body).map_err(bad)?;
    let placement: serde_json::Map<String, Value> =
        ["nodes", "instances", "constraints", "createOnly"]
            .into_iter()
            .filter_map(|key| spec.remove(key).map(|v| (key.to_string(), v)))
            .collect();
    let placement: Placement = serde_json::from_value(Value::Object(placement)).map_err(bad)?;
    Ok(RunRequest {
        spec: serde_json::from_value(Value::Object(spec)).map_err(bad)?,
        nodes: placement.nodes,
        instances: placement.instances,
        constraints: placement.constraints,
        create_only: placement.create_only,
    })
}

/// Create and start containers: on the named nodes, or `instances` of them placed over
/// the live nodes whose labels match `constraints` and whose memory fits.
#[utoipa::path(post, path = "/v1/containers", tag = "containers",
    request_body(content = openapi::RunBody, content_type = "application/json"),
    responses(
        (status = 200, description = "Each container: its node and id, or why it did not start", body = openapi::StartedAnswer),
        openapi::OpRefusals,
        openapi::TokenRefusals,
    ))]
async fn v1_run(State(app): State<App>, body: axum::body::Bytes) -> Response {
    let request = match v1_run_request(&body) {
        Ok(r) => r,
        Err(e) => return failure(StatusCode::BAD_REQUEST, e),
    };
    match ops::run_containers(
        &app.node,
        &request.spec,
        request.nodes,
        request.instances,
        request.constraints,
        request.create_only,
    )
    .await
    {
        Ok(started) => Json(json!({ "containers": started })).into_response(),
        Err(e) => op_failure(e),
    }
}

/// Containers of every live node (or of this node alone with `cluster=false`).
#[utoipa::path(get, path = "/v1/containers", tag = "containers",
    params(
        ("cluster" = Option<bool>, Query, description = "Ask every live node (default true)"),
        ("all" = Option<bool>, Query, description = "Include stopped containers (default false)"),
    ),
    responses(
        (status = 200, description = "The containers, each with its node, and the nodes that did not answer", body = ops::ClusterList),
        (status = 400, description = "The query cannot be read", body = openapi::Failure),
        openapi::TokenRefusals,
    ))]
async fn v1_list(
    State(app): State<App>,
    query: Result<QueryMap, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Query(query) = match query {
        Ok(q) => q,
        Err(e) => return unreadable(e),
    };
    let (cluster, all) = match (flag(&query, "cluster", true), flag(&query, "all", false)) {
        (Ok(cluster), Ok(all)) => (cluster, all),
        (Err(refused), _) | (_, Err(refused)) => return *refused,
    };
    let list =
        ops::list_containers(&app.node, cluster, all, std::time::Duration::from_secs(10)).await;
    Json(list).into_response()
}

/// Docker's inspect of a container, found on whichever node has it.
#[utoipa::path(get, path = "/v1/containers/{id}", tag = "containers",
    params(("id" = String, Path, description = "Container id, id prefix or name")),
    responses(
        (status = 200, description = "Its node and Docker's inspect", body = openapi::InspectAnswer),
        openapi::OpRefusals,
        openapi::TokenRefusals,
    ))]
async fn v1_inspect(State(app): State<App>, id: IdPath) -> Response {
    let id = match id {
        Ok(Path(id)) => id,
        Err(e) => return unreadable(e),
    };
    match ops::on_container(&app.node, Method::ContainerInspect, &id, &[]).await {
        Ok((node, out)) => Json(json!({ "node": node, "inspect": serde_json::from_str::<Value>(&out).unwrap_or_default() }))
            .into_response(),
        Err(e) => op_failure(e),
    }
}

/// Remove a container (`force=true`: also a running one).
#[utoipa::path(delete, path = "/v1/containers/{id}", tag = "containers",
    params(
        ("id" = String, Path, description = "Container id, id prefix or name"),
        ("force" = Option<bool>, Query, description = "Remove it even when it runs"),
    ),
    responses(
        (status = 200, description = "Removed, on that node", body = openapi::RemovedAnswer),
        openapi::OpRefusals,
        openapi::TokenRefusals,
    ))]
async fn v1_remove(
    State(app): State<App>,
    id: IdPath,
    query: Result<QueryMap, axum::extract::rejection::QueryRejection>,
) -> Response {
    let (Path(id), Query(query)) = match (id, query) {
        (Ok(id), Ok(query)) => (id, query),
        (Err(e), _) => return unreadable(e),
        (_, Err(e)) => return unreadable(e),
    };
    let extra: &[&str] = match flag(&query, "force", false) {
        Ok(true) => &["force"],
        Ok(false) => &[],
        Err(refused) => return *refused,
    };
    match ops::on_container(&app.node, Method::ContainerRemove, &id, extra).await {
        Ok((node, _)) => Json(json!({ "node": node, "removed": id })).into_response(),
        Err(e) => op_failure(e),
    }
}

/// Start, stop, restart, kill, pause or unpause a container.
#[utoipa::path(post, path = "/v1/containers/{id}/{action}", tag = "containers",
    params(
        ("id" = String, Path, description = "Container id, id prefix or name"),
        ("action" = openapi::Action, Path, description = "What to do"),
        ("timeout" = Option<u64>, Query, description = "stop: seconds before it is killed"),
        ("signal" = Option<String>, Query, description = "kill: the signal, e.g. SIGTERM"),
    ),
    responses(
        (status = 200, description = "Done, on that node", body = openapi::ActionAnswer),
        openapi::OpRefusals,
        openapi::TokenRefusals,
    ))]
async fn v1_action(
    State(app): State<App>,
    path: Result<Path<(String, String)>, axum::extract::rejection::PathRejection>,
    query: Result<QueryMap, axum::extract::rejection::QueryRejection>,
) -> Response {
    let (Path((id, action)), Query(query)) = match (path, query) {
        (Ok(path), Ok(query)) => (path, query),
        (Err(e), _) => return unreadable(e),
        (_, Err(e)) => return unreadable(e),
    };
    let (method, extra): (Method, Vec<String>) = match action.as_str() {
        "start" => (Method::ContainerStart, vec![]),
        "stop" => (
            Method::ContainerStop,
            query.get("timeout").cloned().into_iter().collect(),
        ),
        "restart" => (Method::ContainerRestart, vec![]),
        "kill" => (
            Method::ContainerKill,
            query.get("signal").cloned().into_iter().collect(),
        ),
        "pause" => (Method::ContainerPause, vec![]),
        "unpause" => (Method::ContainerUnpause, vec![]),
        other => return failure(StatusCode::NOT_FOUND, format!("unknown action {other:?}")),
    };
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    match ops::on_container(&app.node, method, &id, &extra).await {
        Ok((node, out)) => Json(json!({ "node": node, "id": id, "output": out })).into_response(),
        Err(e) => op_failure(e),
    }
}

/// A container's logs, or one stats sample.
#[utoipa::path(get, path = "/v1/containers/{id}/{action}", tag = "containers",
    params(
        ("id" = String, Path, description = "Container id, id prefix or name"),
        ("action" = openapi::View, Path, description = "What to read: logs or stats"),
    ),
    responses(
        (status = 200, description = "Its node and the logs (text) or the stats (Docker's JSON)", body = openapi::ViewAnswer),
        openapi::OpRefusals,
        openapi::TokenRefusals,
    ))]
async fn v1_action_get(
    State(app): State<App>,
    path: Result<Path<(String, String)>, axum::extract::rejection::PathRejection>,
) -> Response {
    let Path((id, what)) = match path {
        Ok(path) => path,
        Err(e) => return unreadable(e),
    };
    let method = match what.as_str() {
        "logs" => Method::ContainerLogs,
        "stats" => Method::ContainerStats,
        other => {
            return failure(
                StatusCode::NOT_FOUND,
                format!("unknown view {other:?}; use logs or stats"),
            );
        }
    };
    match ops::on_container(&app.node, method, &id, &[]).await {
        Ok((node, out)) => {
            let body = serde_json::from_str::<Value>(&out).unwrap_or(Value::String(out));
            Json(json!({ "node": node, "id": id, what: body })).into_response()
        }
        Err(e) => op_failure(e),
    }
}

/// A node's images.
#[utoipa::path(get, path = "/v1/images", tag = "images",
    params(("node" = Option<String>, Query, description = "The node (default: this node)")),
    responses(
        (status = 200, description = "Its images", body = openapi::ImagesAnswer),
        openapi::OpRefusals,
        openapi::TokenRefusals,
    ))]
async fn v1_images(
    State(app): State<App>,
    query: Result<QueryMap, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Query(query) = match query {
        Ok(q) => q,
        Err(e) => return unreadable(e),
    };
    let target = query
        .get("node")
        .filter(|n| !n.is_empty())
        .cloned()
        .unwrap_or_else(|| app.node.name().to_string());
    if let Err(refused) = known_node(&app.node, &target) {
        return *refused;
    }
    let m = ops::message(&target, Method::ImageList, vec![]);
    match ops::call(&app.node, vec![m], std::time::Duration::from_secs(60)).await.and_then(|r| ops::stdout(&r[0])) {
        Ok(out) => Json(json!({ "node": target, "images": serde_json::from_str::<Value>(&out).unwrap_or_default() }))
            .into_response(),
        Err(e) => op_failure(e),
    }
}

/// The `imagePull` message a `POST /v1/images/pull` body asks for, from `this_node`
/// unless it names a `node`.
pub fn v1_pull_message(
    request: &Value,
    this_node: &str,
) -> Result<bosun_proto::Message, BodyError> {
    let body: openapi::PullBody =
        serde_json::from_value(request.clone()).map_err(|source| BodyError::Json {
            what: "pull request",
            source,
        })?;
    if body.image.trim().is_empty() {
        return Err(BodyError::Missing("give \"image\""));
    }
    let target = body
        .node
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| this_node.to_string());
    let mut data = vec![body.image];
    data.extend(body.auth);
    Ok(ops::message(&target, Method::ImagePull, data))
}

/// Pull an image on a node.
#[utoipa::path(post, path = "/v1/images/pull", tag = "images",
    request_body(content = openapi::PullBody, content_type = "application/json"),
    responses(
        (status = 200, description = "Pulled: the engine's messages", body = openapi::PullAnswer),
        openapi::OpRefusals,
        openapi::TokenRefusals,
    ))]
async fn v1_pull(State(app): State<App>, body: axum::body::Bytes) -> Response {
    let request: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return failure(StatusCode::BAD_REQUEST, format!("bad pull request: {e}")),
    };
    let m = match v1_pull_message(&request, app.node.name()) {
        Ok(m) => m,
        Err(e) => return failure(StatusCode::BAD_REQUEST, e),
    };
    let target = m.destination().to_string();
    if let Err(refused) = known_node(&app.node, &target) {
        return *refused;
    }
    match ops::call(&app.node, vec![m], std::time::Duration::from_secs(600))
        .await
        .and_then(|r| ops::stdout(&r[0]))
    {
        Ok(out) => Json(json!({ "node": target, "output": out })).into_response(),
        Err(e) => op_failure(e),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::*;

    const TOKEN: &str = "a-test-token-of-enough-length";

    /// A node serving the API on a loopback port with `limits`.
    async fn api(dir: &std::path::Path, limits: Limits) -> (Node, std::net::SocketAddr) {
        let node = crate::test_support::start(crate::test_support::config(dir, "n1")).await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        node.tracker().spawn(serve_with(
            node.clone(),
            listener,
            TOKEN.into(),
            node.shutdown_token(),
            limits,
        ));
        (node, addr)
    }

    /// Read what the server sends until it closes, at most `patience`; the text and
    /// whether it closed.
    async fn read_until_closed(stream: &mut TcpStream, patience: Duration) -> (String, bool) {
        let mut answer = Vec::new();
        let closed = tokio::time::timeout(patience, stream.read_to_end(&mut answer))
            .await
            .is_ok();
        (String::from_utf8_lossy(&answer).into_owned(), closed)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_bad_token_is_refused_before_the_body_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let (node, addr) = api(dir.path(), Limits::default()).await;
        // A gigabyte announced, a few bytes sent, the rest never: refused at once, which
        // can only be when the body is not waited for.
        for (path, auth) in [
            (
                "/v1/messages",
                "Authorization: Bearer wrong-token-wrong-token\r\n",
            ),
            ("/v1/messages", ""),
            ("/run", "Authorization: Bearer wrong-token-wrong-token\r\n"),
            ("/", "Authorization: Bearer wrong-token-wrong-token\r\n"),
            ("/run", ""),
        ] {
            let started = Instant::now();
            let mut stream = TcpStream::connect(addr).await.unwrap();
            let head = format!(
                "POST {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\n\
                 Content-Length: 1000000000\r\n\r\n[{{\"toNode\""
            );
            stream.write_all(head.as_bytes()).await.unwrap();
            let mut answer = vec![0u8; 512];
            let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut answer))
                .await
                .expect("an answer without the body")
                .unwrap();
            let answer = String::from_utf8_lossy(&answer[..n]);
            let expected = if auth.is_empty() && path != "/v1/messages" {
                // The token may be in this body: too large to read is refused as such.
                "HTTP/1.1 413"
            } else {
                "HTTP/1.1 401"
            };
            assert!(answer.starts_with(expected), "{path}: {answer}");
            assert!(
                started.elapsed() < Duration::from_secs(1),
                "{path}: {:?}",
                started.elapsed()
            );
        }
        node.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn slow_headers_and_slow_bodies_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let limits = Limits {
            header_timeout: Duration::from_millis(500),
            body_timeout: Duration::from_millis(500),
            ..Limits::default()
        };
        let (node, addr) = api(dir.path(), limits).await;

        // Headers that never end: the connection is closed.
        let started = Instant::now();
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /v1/nodes HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        let (_, closed) = read_until_closed(&mut stream, Duration::from_secs(10)).await;
        assert!(closed, "a slowloris connection is dropped");
        assert!(started.elapsed() >= Duration::from_millis(400));

        // An idle connection, nothing sent: closed too.
        let mut idle = TcpStream::connect(addr).await.unwrap();
        let (_, closed) = read_until_closed(&mut idle, Duration::from_secs(10)).await;
        assert!(closed, "an idle connection is dropped");

        // The right token, then a body that stops coming.
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let head = format!(
            "POST /v1/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\
             Content-Length: 100\r\n\r\n[{{"
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        let (answer, _) = read_until_closed(&mut stream, Duration::from_secs(10)).await;
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");

        // And a normal request still works.
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let request = format!(
            "GET /v1/nodes HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\
             Connection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let (answer, closed) = read_until_closed(&mut stream, Duration::from_secs(10)).await;
        assert!(closed && answer.starts_with("HTTP/1.1 200"), "{answer}");
        node.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn connections_beyond_the_cap_are_closed_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let limits = Limits {
            max_connections: 2,
            ..Limits::default()
        };
        let (node, addr) = api(dir.path(), limits).await;
        let request =
            format!("GET /v1/nodes HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n");
        // Two kept-alive connections, each answered once: both hold their slot.
        let mut held = Vec::new();
        for _ in 0..2 {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            stream.write_all(request.as_bytes()).await.unwrap();
            let mut answer = vec![0u8; 4096];
            let n = stream.read(&mut answer).await.unwrap();
            assert!(answer[..n].starts_with(b"HTTP/1.1 200"));
            held.push(stream);
        }
        let mut third = TcpStream::connect(addr).await.unwrap();
        let _ = third.write_all(request.as_bytes()).await;
        let (answer, closed) = read_until_closed(&mut third, Duration::from_secs(5)).await;
        assert!(closed && answer.is_empty(), "closed unanswered: {answer}");

        // A slot freed is taken again.
        drop(held.pop());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            let _ = stream.write_all(request.as_bytes()).await;
            let mut answer = vec![0u8; 4096];
            let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut answer))
                .await
                .unwrap()
                .unwrap_or(0);
            if answer[..n].starts_with(b"HTTP/1.1 200") {
                break;
            }
            assert!(Instant::now() < deadline, "the freed slot was never taken");
            tokio::task::yield_now().await;
        }
        node.shutdown().await;
    }

    /// A self-signed certificate for `localhost`, written to `dir` as `cert.pem` and
    /// `key.pem` (0600); and the certificate, to trust it.
    fn certificate(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf, Vec<u8>) {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let cert = dir.join("cert.pem");
        let key = dir.join("key.pem");
        std::fs::write(&cert, made.cert.pem()).unwrap();
        bosun_trust::secret_file::write_secret(&key, &made.signing_key.serialize_pem()).unwrap();
        (cert, key, made.cert.der().to_vec())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_api_speaks_https_with_a_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key, der) = certificate(dir.path());
        let limits = Limits {
            tls: Some(tls_config(&cert, &key).unwrap()),
            ..Limits::default()
        };
        let (node, addr) = api(dir.path(), limits).await;

        let mut roots = rustls::RootCertStore::empty();
        roots.add(der.into()).unwrap();
        let client = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut stream = connector.connect(name, tcp).await.expect("a TLS handshake");
        let request = format!(
            "GET /v1/nodes HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {TOKEN}\r\n\
             Connection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
            .await
            .expect("an answer");
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

        // Plain HTTP on the HTTPS port gets no HTTP answer.
        let mut plain = TcpStream::connect(addr).await.unwrap();
        plain.write_all(request.as_bytes()).await.unwrap();
        let (answer, closed) = read_until_closed(&mut plain, Duration::from_secs(15)).await;
        assert!(closed && !answer.contains("HTTP/1.1 200"), "{answer}");

        // A key others may read is refused with the chmod to run.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let error = tls_config(&cert, &key).unwrap_err().to_string();
        assert!(error.contains("chmod 600"), "{error}");
        node.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_address_beyond_loopback_needs_http_allow_remote() {
        let dir = tempfile::tempdir().unwrap();
        let config = bosun_node::Config {
            http_listen: Some(([0, 0, 0, 0], 0).into()),
            ..crate::test_support::config(dir.path(), "n1")
        };
        let node = crate::test_support::start(config.clone()).await;
        let error = crate::serve(
            node.clone(),
            &config,
            node.shutdown_token(),
            &node.tracker(),
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("http_allow_remote = true")
                && error.contains("http_tls_cert")
                && error.contains("127.0.0.1"),
            "{error}"
        );
        node.shutdown().await;

        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        bosun_trust::secret_file::write_secret(&token, TOKEN).unwrap();
        let config = bosun_node::Config {
            http_listen: Some(([0, 0, 0, 0], 0).into()),
            http_allow_remote: true,
            http_token_file: Some(token),
            ..crate::test_support::config(dir.path(), "n1")
        };
        let node = crate::test_support::start(config.clone()).await;
        crate::serve(
            node.clone(),
            &config,
            node.shutdown_token(),
            &node.tracker(),
        )
        .await
        .expect("allowed explicitly");
        node.shutdown().await;

        // With TLS, no switch is needed; half of it is refused.
        let dir = tempfile::tempdir().unwrap();
        let (cert, key, _) = certificate(dir.path());
        let token = dir.path().join("token");
        bosun_trust::secret_file::write_secret(&token, TOKEN).unwrap();
        let config = bosun_node::Config {
            http_listen: Some(([0, 0, 0, 0], 0).into()),
            http_tls_cert: Some(cert),
            http_token_file: Some(token),
            ..crate::test_support::config(dir.path(), "n1")
        };
        let node = crate::test_support::start(config.clone()).await;
        let half = crate::serve(
            node.clone(),
            &config,
            node.shutdown_token(),
            &node.tracker(),
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(
            half.contains("both http_tls_cert and http_tls_key"),
            "{half}"
        );
        let config = bosun_node::Config {
            http_tls_key: Some(key),
            ..config
        };
        crate::serve(
            node.clone(),
            &config,
            node.shutdown_token(),
            &node.tracker(),
        )
        .await
        .expect("HTTPS may listen beyond loopback");
        node.shutdown().await;
    }

    #[test]
    fn commands_split_like_a_shell_without_a_shell() {
        assert_eq!(
            split_command("node index.js").unwrap(),
            vec!["node", "index.js"]
        );
        assert_eq!(
            split_command(r#"sh -c 'echo "a  b"'"#).unwrap(),
            vec!["sh", "-c", r#"echo "a  b""#]
        );
        assert_eq!(
            split_command(r#"echo a\ b "" x"#).unwrap(),
            vec!["echo", "a b", "", "x"]
        );
        assert!(split_command("echo 'open").is_err());
    }

    #[test]
    fn quartermaster_bodies_are_read_or_refused_with_the_reason() {
        let spec = quartermaster_run(
            br#"{"token":"t","image":"alpine","command":"sh -c 'echo hi'","memory":64}"#,
        )
        .unwrap();
        assert_eq!(spec.image.as_deref(), Some("alpine"));
        assert_eq!(spec.command, vec!["sh", "-c", "echo hi"]);
        assert_eq!(spec.memory_mb, Some(64));
        let err = quartermaster_run(br#"{"command":"x"}"#)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("bad /run body: missing field `image`"),
            "{err}"
        );
        let err = quartermaster_run(br#"{"image":"a","command":"echo 'open"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unclosed quote"), "{err}");
        assert_eq!(quartermaster_stop(br#"{"id":"abc"}"#).unwrap(), "abc");
        for bad in [&br#"{"id":5}"#[..], b"{}", b"nope"] {
            let err = quartermaster_stop(bad).unwrap_err().to_string();
            assert!(err.contains("give the id"), "{err}");
        }
        assert_eq!(
            body_token(br#"{"token":"secret"}"#).as_deref(),
            Some("secret")
        );
        assert_eq!(body_token(br#"{"token":5}"#), None);
    }

    #[test]
    fn dockermod_instances_beyond_a_count_are_refused_not_cut() {
        // An instance count was once cast to u32: 4294967297 ran one container.
        for bad in [json!(4_294_967_297_u64), json!(-1), json!(2.5), json!("3")] {
            let body = json!({"action": "create-container", "image": "a", "instances": bad});
            let err = dockermod_request(&body).unwrap_err();
            assert!(matches!(err, BodyError::Instances(_)), "{bad}: {err}");
            assert!(err.to_string().contains("whole number"), "{err}");
        }
        let body = json!({"action": "create-container", "image": "a", "instances": 3});
        match dockermod_request(&body).unwrap() {
            DockerModRequest::Create { spec, instances } => {
                assert_eq!(spec.image.as_deref(), Some("a"));
                assert_eq!(instances, Some(3));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn dockermod_actions_are_read_or_refused_with_the_reason() {
        let read = |v: Value| dockermod_request(&v);
        assert_eq!(
            read(json!({"action": "stop-container", "id": "abc"})).unwrap(),
            DockerModRequest::OnContainer {
                method: Method::ContainerStop,
                id: "abc".into(),
                status_code: 204
            }
        );
        assert_eq!(
            read(json!({"action": "list-containers", "all": true})).unwrap(),
            DockerModRequest::List { cluster: true }
        );
        assert_eq!(
            read(json!({"action": "unregister", "hostname": "sthmaclt009.local"})).unwrap(),
            DockerModRequest::Membership {
                hostname: "sthmaclt009.local".into(),
                drained: true
            }
        );
        assert_eq!(
            read(json!({"action": "create-raw-container", "body": {"Image": "a"}, "instances": 2}))
                .unwrap(),
            DockerModRequest::Create {
                spec: Box::new(ContainerSpec {
                    raw: Some(json!({"Image": "a"})),
                    ..Default::default()
                }),
                instances: Some(2)
            }
        );
        for (bad, says) in [
            (json!({"action": "register"}), "need a \"hostname\""),
            (
                json!({"action": "create-raw-container", "body": "x"}),
                "JSON object",
            ),
            (
                json!({"action": "create-raw-container", "body": {"Image": "a"}, "template": "web"}),
                "use create-container",
            ),
            (json!({"action": "start-container"}), "needs an \"id\""),
            (
                json!({"action": "delete-container", "id": ""}),
                "delete-container needs",
            ),
            (json!({"action": "fly"}), "unknown action \"fly\""),
            (json!([]), "unknown action \"\""),
        ] {
            let err = read(bad.clone()).unwrap_err().to_string();
            assert!(err.contains(says), "{bad} → {err}");
        }
    }

    #[test]
    fn v1_bodies_are_read_or_refused_with_the_reason() {
        let run = v1_run_request(
            br#"{"image":"nginx","ports":["80:80"],"nodes":["a"],"instances":2,"constraints":{"r":"w"},"createOnly":true}"#,
        )
        .unwrap();
        assert_eq!(run.spec.ports, vec!["80:80"]);
        assert_eq!(run.instances, Some(2));
        assert_eq!(run.constraints.get("r").map(String::as_str), Some("w"));
        assert_eq!(run.spec.image.as_deref(), Some("nginx"));
        assert_eq!(run.nodes, vec!["a"]);
        assert!(run.create_only);
        // Found writing the fuzz target: with serde's flatten, the spec's
        // deny_unknown_fields did nothing and a misspelt field was dropped silently.
        let err = v1_run_request(br#"{"image":"nginx","bogus":1}"#)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("bad container request:") && err.contains("bogus"),
            "{err}"
        );
        let pull = v1_pull_message(&json!({"image": "alpine", "auth": "e30="}), "n1").unwrap();
        assert_eq!(pull.destination(), "n1");
        assert_eq!(pull.data, vec!["alpine", "e30="]);
        assert_eq!(
            v1_pull_message(&json!({"image": "a", "node": "n2"}), "n1")
                .unwrap()
                .destination(),
            "n2"
        );
        let err = v1_pull_message(&json!({"image": 5}), "n1").unwrap_err();
        assert!(err.to_string().contains("expected a string"), "{err}");
        let err = v1_pull_message(&json!({"image": " "}), "n1").unwrap_err();
        assert_eq!(err.to_string(), "give \"image\"");
        let err = v1_pull_message(&json!({"image": "a", "node": {}}), "n1").unwrap_err();
        assert!(err.to_string().starts_with("bad pull request"), "{err}");
        let err = v1_pull_message(&json!({"image": "a", "nod": "x"}), "n1").unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
        assert_eq!(
            v1_pull_message(&json!({"image": "a", "node": ""}), "n1")
                .unwrap()
                .destination(),
            "n1",
            "an empty node is this node"
        );
    }

    #[test]
    fn token_comparison() {
        assert!(token_matches("abc", "abc"));
        assert!(!token_matches("abc", "abd"));
        assert!(!token_matches("abc", "abcd"));
        assert!(!token_matches("a", ""));
        assert!(!token_matches("", ""));
    }
}
