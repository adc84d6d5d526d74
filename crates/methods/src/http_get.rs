//! `httpGet`: fetch a URL and return its body, within `methodTimeout` and the node's
//! output limit.
//!
//! Only `http://` and `https://` URLs are fetched. The body is read until it ends or
//! reaches the output limit; past the limit the rest is not read at all, and the outcome
//! says `truncated`. A 2xx status is `done`; any other status is `failed`, with the body
//! (often the server's explanation) still in stdout. TLS is rustls with the ring
//! provider, so the build needs no C crypto library.
//!
//! Only addresses the node's network policy allows are reached ([`crate::confine`]):
//! loopback, link-local, private, CGNAT, multicast and unspecified addresses are refused
//! unless `http_allow` holds them. The check is made where the address is chosen, so a
//! name that resolves differently at connect time (DNS rebinding) changes nothing: a
//! literal address in the URL is checked before the request, a name by the client's own
//! resolver, which checks every address the name has and hands the connector only the
//! allowed ones, and every redirect the same way. Proxies from the environment are not
//! used, since a proxy would connect to addresses the node never sees.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Once, OnceLock};
use std::time::Duration;

use bosun_proto::{Message, Outcome, Status};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use tokio::time::Instant;

use tokio_util::sync::CancellationToken;

use crate::confine::Refused;
use crate::{Confinement, Context, failed, now_millis};

/// Most redirects followed, as reqwest's default policy.
const MAX_REDIRECTS: usize = 10;

/// Why a URL was not fetched before any request was made.
#[derive(Debug, thiserror::Error)]
pub enum HttpGetError {
    /// `data[0]` does not parse as a URL.
    #[error("{given:?} is not a URL ({source}); give a full http:// or https:// URL")]
    NotAUrl {
        /// What was given.
        given: String,
        /// What the parser saw.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A URL of another scheme.
    #[error("URL scheme {0:?} is not supported; httpGet fetches only http:// and https:// URLs")]
    UnsupportedScheme(String),
    /// The client could not be built.
    #[error("cannot set up the HTTP client: {0}")]
    Client(String),
}

/// This node's HTTP client: built on first use, then reused so connections and TLS
/// sessions are pooled across requests.
#[derive(Default)]
pub(crate) struct HttpClient(OnceLock<reqwest::Client>);

/// The User-Agent sent with every request.
const USER_AGENT: &str = concat!("bosun/", env!("CARGO_PKG_VERSION"));

/// Fetch the URL in `data[0]`.
pub async fn run(message: &Message, context: &Context) -> Outcome {
    let started = now_millis();
    let Some(raw) = message.data.first().filter(|u| !u.is_empty()) else {
        return failed(
            context,
            started,
            "no URL given: `data` must be [\"<http:// or https:// URL>\"]",
        );
    };
    let url = match parse_url(raw) {
        Ok(u) => u,
        Err(e) => return failed(context, started, e.to_string()),
    };
    // A literal address never reaches the resolver, so it is checked here.
    if let Err(refused) = check_literal(&url, &context.confine, None) {
        return failed(context, started, refused.to_string());
    }
    let client = match context.state.http.get(&context.confine) {
        Ok(c) => c,
        Err(e) => return failed(context, started, e.to_string()),
    };
    let timeout = context.method_timeout(message);
    let deadline = Instant::now() + timeout;
    let ended = |cut: Cut| {
        let (status, error) = match cut {
            Cut::Timeout => (
                Status::Timeout,
                format!(
                    "methodTimeout of {}s reached before {url} answered in full; raise methodTimeout or check the server",
                    timeout.as_secs()
                ),
            ),
            Cut::Shutdown => (
                Status::Interrupted,
                "the node shut down while the request ran".to_string(),
            ),
        };
        Outcome {
            started_at: Some(started),
            ..Outcome::bare(status, &context.node, error, now_millis())
        }
    };

    let mut response =
        match bounded(deadline, &context.shutdown, client.get(url.clone()).send()).await {
            Err(cut) => return ended(cut),
            Ok(Err(e)) => {
                let reason = match refusal(&e) {
                    Some(refused) => refused.to_string(),
                    None => chain(&e),
                };
                return failed(context, started, format!("cannot fetch {url}: {reason}"));
            }
            Ok(Ok(r)) => r,
        };

    let limit = context.output_limit;
    let mut body: Vec<u8> = Vec::new();
    let mut truncated = false;
    let mut read_error = None;
    loop {
        match bounded(deadline, &context.shutdown, response.chunk()).await {
            Err(cut) => {
                // Keep what arrived: a slow body is still worth seeing.
                let mut outcome = ended(cut);
                outcome.stdout = String::from_utf8_lossy(&body).into_owned();
                return outcome;
            }
            Ok(Ok(None)) => break,
            Ok(Ok(Some(bytes))) => {
                let room = limit.saturating_sub(body.len());
                if bytes.len() > room {
                    body.extend_from_slice(&bytes[..room]);
                    // Stop reading: the rest would be thrown away anyway.
                    truncated = true;
                    break;
                }
                body.extend_from_slice(&bytes);
            }
            Ok(Err(e)) => {
                read_error = Some(format!("reading the body of {url} failed: {}", chain(&e)));
                break;
            }
        }
    }

    let status = response.status();
    let error = if let Some(e) = read_error {
        Some(e)
    } else if status.is_success() {
        None
    } else {
        Some(match status.canonical_reason() {
            Some(reason) => format!("HTTP {} {reason}", status.as_u16()),
            None => format!("HTTP {}", status.as_u16()),
        })
    };
    Outcome {
        status: if error.is_none() {
            Status::Done
        } else {
            Status::Failed
        },
        node: context.node.clone(),
        exit_code: None,
        stdout: String::from_utf8_lossy(&body).into_owned(),
        stderr: String::new(),
        error,
        truncated,
        started_at: Some(started),
        finished_at: now_millis(),
        chunks: None,
    }
}

/// Why a request stopped before it finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cut {
    Timeout,
    Shutdown,
}

/// Run `step` until `deadline`, or until the node shuts down.
async fn bounded<F: Future>(
    deadline: Instant,
    shutdown: &CancellationToken,
    step: F,
) -> Result<F::Output, Cut> {
    tokio::select! {
        r = tokio::time::timeout_at(deadline, step) => r.map_err(|_| Cut::Timeout),
        _ = shutdown.cancelled() => Err(Cut::Shutdown),
    }
}

/// Parse `raw` and accept only http and https.
fn parse_url(raw: &str) -> Result<reqwest::Url, HttpGetError> {
    let url = reqwest::Url::parse(raw).map_err(|e| HttpGetError::NotAUrl {
        given: raw.to_string(),
        source: Box::new(e),
    })?;
    match url.scheme() {
        "http" | "https" => Ok(url),
        other => Err(HttpGetError::UnsupportedScheme(other.to_string())),
    }
}

impl HttpClient {
    /// The client, built now if this is the first request. `confine` is the node's, the
    /// same at every call.
    fn get(&self, confine: &Arc<Confinement>) -> Result<reqwest::Client, HttpGetError> {
        if let Some(c) = self.0.get() {
            return Ok(c.clone());
        }
        let built = build_client(confine)?;
        Ok(self.0.get_or_init(|| built).clone())
    }
}

/// A client for `httpGet` that reaches only what `confine` allows. Not kept on failure,
/// so a later request can try again (e.g. once the system's CA store is readable).
fn build_client(confine: &Arc<Confinement>) -> Result<reqwest::Client, HttpGetError> {
    install_crypto_provider();
    let policy = confine.clone();
    reqwest::Client::builder()
        .tls_backend_rustls()
        .user_agent(USER_AGENT)
        // The request timeout is methodTimeout, applied per request; this only stops a
        // dead address from taking all of it without a clear reason.
        .connect_timeout(Duration::from_secs(30))
        .dns_resolver(CheckedResolver {
            confine: confine.clone(),
        })
        .redirect(reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() > MAX_REDIRECTS {
                return attempt.error(format!("more than {MAX_REDIRECTS} redirects"));
            }
            let from = attempt.previous().last().cloned();
            match check_literal(attempt.url(), &policy, from.as_ref()) {
                Ok(()) => attempt.follow(),
                Err(refused) => attempt.error(refused),
            }
        }))
        // A proxy would connect to addresses this node never checks.
        .no_proxy()
        .build()
        .map_err(|e| HttpGetError::Client(chain(&e)))
}

/// Refuse `url` when its host is a literal address outside the policy. `from` is the
/// URL that redirected to it, if any. Names are left to [`CheckedResolver`].
fn check_literal(
    url: &reqwest::Url,
    confine: &Confinement,
    from: Option<&reqwest::Url>,
) -> Result<(), Refused> {
    // The URL parser has already normalised literal addresses (`127.1`, `0x7f000001`
    // are 127.0.0.1); an IPv6 one comes in brackets.
    let host = url.host_str().unwrap_or_default();
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    let Ok(address) = literal.parse::<IpAddr>() else {
        return Ok(());
    };
    confine.check_address(address).map_err(|refused| Refused {
        target: match from {
            Some(from) => format!("the redirect from {from} to {url}"),
            None => url.to_string(),
        },
        addresses: vec![refused],
    })
}

/// The refusal behind a reqwest error, if the policy caused it.
fn refusal(e: &reqwest::Error) -> Option<&Refused> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(refused) = s.downcast_ref::<Refused>() {
            return Some(refused);
        }
        source = s.source();
    }
    None
}

/// The system's resolver, then the policy: a name is reached only at its allowed
/// addresses, and refused when it has none.
struct CheckedResolver {
    confine: Arc<Confinement>,
}

impl Resolve for CheckedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let confine = self.confine.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut allowed = Vec::new();
            let mut refused = Vec::new();
            for address in found {
                match confine.check_address(address.ip()) {
                    Ok(()) => allowed.push(address),
                    Err(why) => refused.push(why),
                }
            }
            if allowed.is_empty() && !refused.is_empty() {
                return Err(Box::new(Refused {
                    target: format!("{host} (every address it resolves to)"),
                    addresses: refused,
                })
                    as Box<dyn std::error::Error + Send + Sync>);
            }
            let addresses: Addrs = Box::new(allowed.into_iter());
            Ok(addresses)
        })
    }
}

/// Install ring as rustls's process-wide crypto provider. reqwest is built without one, so
/// aws-lc (a C library) is not linked; without a provider reqwest would panic.
fn install_crypto_provider() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // An error means another part of the process installed one first: keep it.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// An error with its causes, `a: b: c`: reqwest's own message alone hides the reason
/// (refused, DNS, certificate).
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let next = s.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio_util::sync::CancellationToken;

    /// What the test server does with each connection.
    #[derive(Clone)]
    enum Reply {
        /// Write these bytes after the request head, then close.
        Raw(Vec<u8>),
        /// Read the request, then say nothing and keep the connection open.
        Silent,
    }

    /// A one-purpose HTTP/1.1 server on 127.0.0.1. Returns its address and a receiver of
    /// the request heads it saw.
    async fn serve(reply: Reply) -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<String>) {
        serve_on("127.0.0.1:0", reply).await
    }

    /// [`serve`] on `bind`.
    async fn serve_on(
        bind: &str,
        reply: Reply,
    ) -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<String>) {
        let listener = TcpListener::bind(bind).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (seen_tx, seen_rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let reply = reply.clone();
                let seen_tx = seen_tx.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match sock.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let _ = seen_tx.send(String::from_utf8_lossy(&head).into_owned());
                    match reply {
                        Reply::Raw(bytes) => {
                            let _ = sock.write_all(&bytes).await;
                            let _ = sock.shutdown().await;
                        }
                        Reply::Silent => {
                            tokio::time::sleep(Duration::from_secs(60)).await;
                            drop(sock);
                        }
                    }
                });
            }
        });
        (addr, seen_rx)
    }

    /// A node that may reach loopback, where the test servers listen.
    fn allowing_loopback(shutdown: CancellationToken) -> Context {
        Context {
            confine: Arc::new(Confinement {
                http_allow: crate::confine::parse_allow(&["127.0.0.0/8".into()]).unwrap(),
                ..Default::default()
            }),
            ..crate::test_context("n1", shutdown)
        }
    }

    fn response(status: &str, body: &[u8]) -> Reply {
        let mut r = format!(
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        r.extend_from_slice(body);
        Reply::Raw(r)
    }

    fn message(url: &str, timeout_secs: Option<u64>) -> Message {
        Message {
            method: "httpGet".into(),
            data: vec![url.to_string()],
            method_timeout: timeout_secs,
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn ok_returns_the_body_and_sends_a_user_agent() {
        let (addr, mut seen) = serve(response("200 OK", b"hello body")).await;
        let rx = CancellationToken::new();
        let o = run(
            &message(&format!("http://{addr}/x"), None),
            &allowing_loopback(rx),
        )
        .await;
        assert_eq!(o.status, Status::Done, "{:?}", o.error);
        assert_eq!(o.stdout, "hello body");
        assert_eq!(o.error, None);
        assert!(!o.truncated);
        let head = seen.recv().await.unwrap().to_ascii_lowercase();
        assert!(head.starts_with("get /x http/1.1"), "{head}");
        assert!(
            head.contains(&format!("user-agent: {}", USER_AGENT.to_ascii_lowercase())),
            "{head}"
        );
    }

    #[tokio::test]
    async fn not_found_fails_with_the_status_and_keeps_the_body() {
        let (addr, _seen) = serve(response("404 Not Found", b"no such page")).await;
        let rx = CancellationToken::new();
        let o = run(
            &message(&format!("http://{addr}/missing"), None),
            &allowing_loopback(rx),
        )
        .await;
        assert_eq!(o.status, Status::Failed);
        assert_eq!(o.error.as_deref(), Some("HTTP 404 Not Found"));
        assert_eq!(o.stdout, "no such page");
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_cut_and_marked() {
        let body = vec![b'z'; 200_000];
        let (addr, _seen) = serve(response("200 OK", &body)).await;
        let rx = CancellationToken::new();
        let ctx = Context {
            output_limit: 1000,
            ..allowing_loopback(rx)
        };
        let o = run(&message(&format!("http://{addr}/big"), None), &ctx).await;
        assert_eq!(o.status, Status::Done);
        assert!(o.truncated);
        assert_eq!(o.stdout.len(), 1000);
        assert!(o.stdout.bytes().all(|b| b == b'z'));
    }

    #[tokio::test]
    async fn a_silent_server_ends_at_method_timeout() {
        let (addr, _seen) = serve(Reply::Silent).await;
        let rx = CancellationToken::new();
        let t = std::time::Instant::now();
        let o = run(
            &message(&format!("http://{addr}/slow"), Some(1)),
            &allowing_loopback(rx),
        )
        .await;
        assert_eq!(o.status, Status::Timeout);
        assert!(o.error.unwrap().contains("methodTimeout of 1s"));
        assert!(t.elapsed() < Duration::from_secs(10));
    }

    #[tokio::test]
    async fn shutdown_interrupts_a_request() {
        let (addr, mut seen) = serve(Reply::Silent).await;
        let tx = CancellationToken::new();
        let rx = tx.clone();
        let ctx = allowing_loopback(rx);
        let m = message(&format!("http://{addr}/slow"), Some(60));
        let task = tokio::spawn(async move { run(&m, &ctx).await });
        // The server has the request: the run is now waiting for an answer.
        tokio::time::timeout(Duration::from_secs(10), seen.recv())
            .await
            .expect("the request reached the server");
        tx.cancel();
        let o = tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("ended soon after shutdown")
            .unwrap();
        assert_eq!(o.status, Status::Interrupted);
    }

    #[tokio::test]
    async fn a_refused_connection_fails_with_the_reason() {
        // Bind, learn the port, close: nothing listens there now.
        let addr = {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            l.local_addr().unwrap()
        };
        let rx = CancellationToken::new();
        let o = run(
            &message(&format!("http://{addr}/"), Some(5)),
            &allowing_loopback(rx),
        )
        .await;
        assert_eq!(o.status, Status::Failed);
        let error = o.error.unwrap();
        assert!(error.starts_with("cannot fetch http://"), "{error}");
        assert!(error.to_lowercase().contains("refused"), "{error}");
    }

    #[tokio::test]
    async fn other_schemes_and_bad_urls_are_refused() {
        let rx = CancellationToken::new();
        let ctx = allowing_loopback(rx);
        let o = run(&message("ftp://x", None), &ctx).await;
        assert_eq!(o.status, Status::Failed);
        assert!(o.error.unwrap().contains("\"ftp\" is not supported"));
        let o = run(&message("not a url", None), &ctx).await;
        assert_eq!(o.status, Status::Failed);
        assert!(o.error.unwrap().contains("is not a URL"));
        let empty = Message {
            method: "httpGet".into(),
            ..Default::default()
        };
        let o = run(&empty, &ctx).await;
        assert_eq!(o.status, Status::Failed);
        assert!(o.error.unwrap().starts_with("no URL given"));
    }

    #[test]
    fn the_client_builds_with_rustls_and_ring() {
        // Building panics inside reqwest when no crypto provider is installed.
        assert!(HttpClient::default().get(&Default::default()).is_ok());
        assert!(rustls::crypto::CryptoProvider::get_default().is_some());
    }

    /// A node with `http_allow` set to `allow`.
    fn allowing(allow: &[&str]) -> Context {
        let allow: Vec<String> = allow.iter().map(|a| a.to_string()).collect();
        Context {
            confine: Arc::new(Confinement {
                http_allow: crate::confine::parse_allow(&allow).unwrap(),
                ..Default::default()
            }),
            ..crate::test_context("n1", CancellationToken::new())
        }
    }

    /// True when someone connected to `listener`. Connections are completed by the
    /// kernel, so one made before the call is waiting to be accepted.
    fn was_connected(listener: &TcpListener) -> bool {
        use futures::FutureExt;
        listener.accept().now_or_never().is_some()
    }

    fn redirect_to(location: &str) -> Reply {
        Reply::Raw(
            format!(
                "HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
            .into_bytes(),
        )
    }

    #[tokio::test]
    async fn loopback_is_refused_without_connecting_unless_http_allow_holds_it() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/x", listener.local_addr().unwrap());
        let o = run(&message(&url, Some(5)), &allowing(&[])).await;
        assert_eq!(o.status, Status::Failed);
        assert_eq!(
            o.error.unwrap(),
            format!(
                "{url} is refused: 127.0.0.1 is loopback (127.0.0.0/8); httpGet reaches such addresses only when http_allow lists them"
            )
        );
        assert!(!was_connected(&listener), "the refused request connected");
        drop(listener);

        let (addr, _seen) = serve(response("200 OK", b"allowed")).await;
        let o = run(
            &message(&format!("http://{addr}/x"), Some(5)),
            &allowing(&["127.0.0.0/8"]),
        )
        .await;
        assert_eq!(o.status, Status::Done, "{:?}", o.error);
        assert_eq!(o.stdout, "allowed");
    }

    #[tokio::test]
    async fn the_metadata_address_and_mapped_loopback_are_refused_before_any_connection() {
        let ctx = allowing(&[]);
        let t = std::time::Instant::now();
        let o = run(
            &message("http://169.254.169.254/latest/meta-data/", Some(30)),
            &ctx,
        )
        .await;
        assert_eq!(o.status, Status::Failed);
        let e = o.error.unwrap();
        assert!(
            e.contains("169.254.169.254 is link-local (169.254.0.0/16)"),
            "{e}"
        );
        // A connection attempt there would wait for the 30 s connect timeout.
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        for url in [
            format!("http://[::ffff:127.0.0.1]:{port}/"),
            format!("http://127.1:{port}/"),
            format!("http://0.0.0.0:{port}/"),
        ] {
            let o = run(&message(&url, Some(5)), &ctx).await;
            assert_eq!(o.status, Status::Failed, "{url}");
            assert!(o.error.unwrap().contains(" is refused: "), "{url}");
        }
        assert!(!was_connected(&listener));
    }

    #[tokio::test]
    async fn a_name_is_refused_when_every_address_it_has_is() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let url = format!("http://localhost:{port}/");
        let o = run(&message(&url, Some(5)), &allowing(&[])).await;
        assert_eq!(o.status, Status::Failed);
        let e = o.error.unwrap();
        assert!(
            e.starts_with(&format!(
                "cannot fetch {url}: localhost (every address it resolves to) is refused: "
            )),
            "{e}"
        );
        assert!(e.contains("127.0.0.1 is loopback (127.0.0.0/8)"), "{e}");
        assert!(!was_connected(&listener));
    }

    #[tokio::test]
    async fn a_redirect_to_a_refused_address_is_refused() {
        // The server that redirects is allowed; where it points is not.
        let target = TcpListener::bind("127.0.0.2:0").await.unwrap();
        let to = format!("http://{}/inside", target.local_addr().unwrap());
        let (addr, mut seen) = serve(redirect_to(&to)).await;
        let from = format!("http://{addr}/go");
        let o = run(&message(&from, Some(5)), &allowing(&["127.0.0.1/32"])).await;
        assert_eq!(o.status, Status::Failed);
        let e = o.error.unwrap();
        assert!(
            e.contains(&format!(
                "the redirect from {from} to {to} is refused: 127.0.0.2 is loopback (127.0.0.0/8)"
            )),
            "{e}"
        );
        assert!(seen.recv().await.unwrap().starts_with("GET /go "));
        assert!(!was_connected(&target), "the redirect was followed");

        // The same through a name: the resolver checks the redirect's addresses.
        let named = format!(
            "http://localhost:{}/inside",
            target.local_addr().unwrap().port()
        );
        let (addr, _seen) = serve_on("127.0.0.2:0", redirect_to(&named)).await;
        let o = run(
            &message(&format!("http://{addr}/go"), Some(5)),
            &allowing(&["127.0.0.2/32"]),
        )
        .await;
        assert_eq!(o.status, Status::Failed);
        let e = o.error.unwrap();
        assert!(
            e.contains("localhost (every address it resolves to) is refused"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn an_allowed_redirect_is_followed() {
        let (to, _seen) = serve(response("200 OK", b"landed")).await;
        let (from, _seen) = serve(redirect_to(&format!("http://{to}/there"))).await;
        let o = run(
            &message(&format!("http://{from}/here"), Some(5)),
            &allowing(&["127.0.0.1/32"]),
        )
        .await;
        assert_eq!(o.status, Status::Done, "{:?}", o.error);
        assert_eq!(o.stdout, "landed");
    }
}
