//! The web dashboard, served with the HTTP API (`http_listen`): the fleet at `/`, and
//! messages, containers and fault experiments under `/ui/`. Pages are rendered on the
//! server from templates compiled into the binary (askama, HTML-escaped); the only script
//! is `live.js`, which follows a page's live region over server-sent events
//! (`/ui/live`), so data refreshes without a reload.
//!
//! Who may look: the API token, either as `Authorization: Bearer …` or through the login
//! form, which sets an HttpOnly, `SameSite=Strict` session cookie (`Secure` over HTTPS).
//! Sessions live in memory for [`SESSION_TTL`], at most [`MAX_SESSIONS`]; a restart of the
//! node logs everyone out. Only the login page and the two static files are served to a
//! stranger; any other page redirects to the login, and the live stream and the actions
//! answer 401. An action (a form `POST`) with a cookie must come from the dashboard's own
//! origin (`Origin` or `Referer` naming this host), so another site cannot post one.
//!
//! Every action is an ordinary message (`crate::ops`), durable and run once.

mod views;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{FromRef, Path, Query, RawForm, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method as HttpMethod, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use bosun_node::Node;
use serde::Deserialize;

pub use views::View;

/// How long a login lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);

/// Most sessions kept at once; past it the oldest goes.
pub const MAX_SESSIONS: usize = 1024;

/// The session cookie's name.
const COOKIE: &str = "bosun_session";

/// The largest login or action form read.
const FORM_LIMIT: usize = 64 * 1024;

/// The dashboard's state: the node, the token, the sessions.
#[derive(Clone)]
pub struct Dashboard {
    node: Node,
    token: Arc<String>,
    sessions: Arc<Sessions>,
    secure: bool,
}

/// Logged-in sessions: a random id → when it ends.
#[derive(Default)]
pub struct Sessions {
    live: Mutex<HashMap<String, Instant>>,
    /// When recent logins failed (at most [`LOGIN_FAILURES`] within [`LOGIN_WINDOW`]).
    failures: Mutex<std::collections::VecDeque<Instant>>,
}

/// Failed logins allowed within [`LOGIN_WINDOW`]; past them every login is refused
/// until the oldest leaves the window, so a token cannot be guessed by trying (the
/// bearer token keeps working meanwhile).
pub const LOGIN_FAILURES: usize = 10;

/// The window [`LOGIN_FAILURES`] counts over.
pub const LOGIN_WINDOW: Duration = Duration::from_secs(60);

impl Sessions {
    /// True when a login may be tried now.
    fn may_try(&self) -> bool {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        while failures
            .front()
            .is_some_and(|at| now.duration_since(*at) >= LOGIN_WINDOW)
        {
            failures.pop_front();
        }
        failures.len() < LOGIN_FAILURES
    }

    fn failed(&self) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        failures.push_back(Instant::now());
        while failures.len() > LOGIN_FAILURES {
            failures.pop_front();
        }
    }

    /// A new session's id (256 random bits, hex).
    fn open(&self) -> Option<String> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).ok()?;
        let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let now = Instant::now();
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        live.retain(|_, until| *until > now);
        if live.len() >= MAX_SESSIONS
            && let Some(oldest) = live
                .iter()
                .min_by_key(|(_, until)| **until)
                .map(|(k, _)| k.clone())
        {
            live.remove(&oldest);
        }
        live.insert(id.clone(), now + SESSION_TTL);
        Some(id)
    }

    /// True when `id` is a session that has not ended.
    fn valid(&self, id: &str) -> bool {
        let live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        live.get(id).is_some_and(|until| *until > Instant::now())
    }

    fn close(&self, id: &str) {
        self.live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }
}

impl Dashboard {
    /// The dashboard of `node`, behind `token`; `secure` when served over HTTPS.
    pub fn new(node: Node, token: Arc<String>, secure: bool) -> Dashboard {
        Dashboard {
            node,
            token,
            sessions: Arc::new(Sessions::default()),
            secure,
        }
    }
}

/// The dashboard's routes under `/ui/` (the fleet page, `GET /`, is routed beside
/// DockerMod's `POST /` by the API's router).
pub fn routes<S>() -> Router<S>
where
    Dashboard: FromRef<S>,
    S: Clone + Send + Sync + 'static,
{
    Router::new()
        .route("/ui/login", get(login_page).post(login))
        .route("/ui/logout", post(logout))
        .route("/ui/static/style.css", get(style))
        .route("/ui/static/live.js", get(script))
        .route("/ui/messages", get(messages))
        .route("/ui/messages/{id}", get(message))
        .route("/ui/messages/{id}/cancel", post(cancel))
        .route("/ui/send", post(send))
        .route("/ui/containers", get(containers))
        .route("/ui/containers/{id}/{action}", post(container_action))
        .route("/ui/chaos", get(chaos))
        .route("/ui/chaos/{id}", get(experiment))
        .route("/ui/chaos/{id}/abort", post(abort))
        .route("/ui/live", get(live))
}

impl Dashboard {
    /// The session id of the request's cookie, when it is a live session.
    fn session(&self, headers: &HeaderMap) -> Option<String> {
        let id = cookie(headers, COOKIE)?;
        self.sessions.valid(&id).then_some(id)
    }

    fn bearer_ok(&self, headers: &HeaderMap) -> bool {
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|given| crate::http::token_matches(&self.token, given))
    }
}

/// True for the requests the dashboard answers: `GET /` and everything under `/ui/`.
/// (`POST /` is DockerMod's.)
pub fn is_dashboard(method: &HttpMethod, path: &str) -> bool {
    (path == "/" && (method == HttpMethod::GET || method == HttpMethod::HEAD))
        || path == "/ui"
        || path.starts_with("/ui/")
}

/// The dashboard's check of who is calling, before anything else runs: the login page
/// and the static files are open; a page needs a session or the bearer token (a browser
/// without one is sent to the login); the live stream and actions need one too, and an
/// action with a cookie must come from this origin.
/// Returns the refusal, or `None` to go on.
pub fn refusal(dashboard: &Dashboard, request: &Request) -> Option<Response> {
    let path = request.uri().path().to_string();
    if path == "/ui/login" || path.starts_with("/ui/static/") {
        return None;
    }
    let headers = request.headers();
    if dashboard.bearer_ok(headers) {
        return None;
    }
    if dashboard.session(headers).is_none() {
        let page = request.method() == HttpMethod::GET && path != "/ui/live";
        if page {
            let target = request
                .uri()
                .path_and_query()
                .map(|p| p.as_str().to_string())
                .unwrap_or_else(|| "/".into());
            let to = format!("/ui/login?next={}", encode(&target));
            return Some(Redirect::to(&to).into_response());
        }
        return Some(
            (
                StatusCode::UNAUTHORIZED,
                "log in first: open /ui/login, or send Authorization: Bearer <token>",
            )
                .into_response(),
        );
    }
    if request.method() == HttpMethod::POST && !same_origin(headers) {
        return Some(
            (
                StatusCode::FORBIDDEN,
                "refused: this action did not come from the dashboard's own pages",
            )
                .into_response(),
        );
    }
    None
}

/// True when the request's `Origin` (or, without one, its `Referer`) names the host it
/// was sent to. A browser always sends one of them with a form `POST`.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let from = headers
        .get(header::ORIGIN)
        .or_else(|| headers.get(header::REFERER))
        .and_then(|v| v.to_str().ok());
    let Some(from) = from else { return false };
    let rest = from
        .strip_prefix("http://")
        .or_else(|| from.strip_prefix("https://"));
    rest.is_some_and(|rest| rest.split('/').next() == Some(host))
}

/// The value of cookie `name`.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// Percent-encode `text` for a query value.
fn encode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// The pairs of a form body, or the error page for one that is too large.
fn form_pairs(body: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// A page of the dashboard, or the error page.
fn page(rendered: Result<String, views::ViewError>) -> Response {
    match rendered {
        Ok(html) => (
            [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
            Html(html),
        )
            .into_response(),
        Err(e) => {
            let code = match e {
                views::ViewError::NotFound(_) => StatusCode::NOT_FOUND,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            (code, Html(views::error_page(&e.to_string()))).into_response()
        }
    }
}

/// After an action: back to `to` with a notice.
fn back(to: &str, notice: &str) -> Response {
    let sep = if to.contains('?') { '&' } else { '?' };
    Redirect::to(&format!("{to}{sep}notice={}", encode(notice))).into_response()
}

/// The `?notice=` an action leaves for the page it returns to.
#[derive(Deserialize, Default)]
pub struct Notice {
    notice: Option<String>,
}

#[derive(Deserialize, Default)]
struct LoginQuery {
    next: Option<String>,
    failed: Option<String>,
}

/// Where a login may send the browser: a path of this site only.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n.into(),
        _ => "/".into(),
    }
}

async fn login_page(Query(q): Query<LoginQuery>) -> Response {
    let next = safe_next(q.next.as_deref());
    let failed = q.failed.is_some();
    page(views::login(&next, failed))
}

async fn login(State(d): State<Dashboard>, body: axum::body::Bytes) -> Response {
    if body.len() > FORM_LIMIT {
        return (StatusCode::PAYLOAD_TOO_LARGE, "form too large").into_response();
    }
    let pairs = form_pairs(&body);
    let field = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let next = safe_next(field("next"));
    let given = field("token").unwrap_or("");
    if !d.sessions.may_try() {
        tracing::warn!("dashboard login refused: too many failed logins in the last minute");
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, HeaderValue::from_static("60"))],
            Html(views::error_page(
                "Too many failed logins in the last minute. Wait a minute and try again.",
            )),
        )
            .into_response();
    }
    if !crate::http::token_matches(&d.token, given.trim()) {
        d.sessions.failed();
        tracing::warn!("dashboard login with a wrong token refused");
        let to = format!("/ui/login?failed=1&next={}", encode(&next));
        return Redirect::to(&to).into_response();
    }
    let Some(id) = d.sessions.open() else {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "no randomness for a session",
        )
            .into_response();
    };
    let secure = if d.secure { "; Secure" } else { "" };
    let cookie = format!(
        "{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{secure}",
        SESSION_TTL.as_secs()
    );
    let mut response = Redirect::to(&next).into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

async fn logout(State(d): State<Dashboard>, headers: HeaderMap) -> Response {
    if let Some(id) = cookie(&headers, COOKIE) {
        d.sessions.close(&id);
    }
    let mut response = Redirect::to("/ui/login").into_response();
    let expired = format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0");
    if let Ok(value) = HeaderValue::from_str(&expired) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

async fn style() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("static/style.css"),
    )
        .into_response()
}

async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("static/live.js"),
    )
        .into_response()
}

/// `GET /`: the fleet.
pub async fn fleet(State(d): State<Dashboard>, Query(n): Query<Notice>) -> Response {
    page(views::page(&d.node, &View::Fleet, n.notice.as_deref()).await)
}

async fn messages(
    State(d): State<Dashboard>,
    Query(filter): Query<views::Filter>,
    Query(n): Query<Notice>,
) -> Response {
    page(views::page(&d.node, &View::Messages(filter), n.notice.as_deref()).await)
}

async fn message(
    State(d): State<Dashboard>,
    Path(id): Path<String>,
    Query(n): Query<Notice>,
) -> Response {
    page(views::page(&d.node, &View::Message(id), n.notice.as_deref()).await)
}

async fn containers(State(d): State<Dashboard>, Query(n): Query<Notice>) -> Response {
    page(views::page(&d.node, &View::Containers, n.notice.as_deref()).await)
}

async fn chaos(State(d): State<Dashboard>, Query(n): Query<Notice>) -> Response {
    page(views::page(&d.node, &View::Chaos, n.notice.as_deref()).await)
}

async fn experiment(
    State(d): State<Dashboard>,
    Path(id): Path<String>,
    Query(n): Query<Notice>,
) -> Response {
    page(views::page(&d.node, &View::Experiment(id), n.notice.as_deref()).await)
}

/// `POST /ui/send`: a command to the chosen nodes; then the messages it made.
async fn send(State(d): State<Dashboard>, RawForm(body): RawForm) -> Response {
    if body.len() > FORM_LIMIT {
        return (StatusCode::PAYLOAD_TOO_LARGE, "form too large").into_response();
    }
    let pairs = form_pairs(&body);
    match views::send(&d.node, &pairs).await {
        Ok(ids) => {
            Redirect::to(&format!("/ui/messages?ids={}", encode(&ids.join(",")))).into_response()
        }
        Err(reason) => back("/", &format!("not sent: {reason}")),
    }
}

/// `POST /ui/messages/{id}/cancel`.
async fn cancel(State(d): State<Dashboard>, Path(id): Path<String>) -> Response {
    let notice = views::cancel(&d.node, &id).await;
    back(&format!("/ui/messages/{}", encode(&id)), &notice)
}

/// `POST /ui/containers/{id}/{action}`.
async fn container_action(
    State(d): State<Dashboard>,
    Path((id, action)): Path<(String, String)>,
) -> Response {
    let notice = views::container_action(&d.node, &id, &action).await;
    back("/ui/containers", &notice)
}

/// `POST /ui/chaos/{id}/abort`.
async fn abort(State(d): State<Dashboard>, Path(id): Path<String>) -> Response {
    let notice = views::abort(&d.node, &id).await;
    back(&format!("/ui/chaos/{}", encode(&id)), &notice)
}

#[derive(Deserialize)]
struct LiveQuery {
    /// The page followed: its path and query.
    view: String,
}

/// `GET /ui/live?view=PATH`: the page's live region whenever it changes, as `update`
/// events, until the client goes or the node shuts down. Views of local data are looked
/// at every second; views that ask other nodes (containers, experiments) every 5 s.
async fn live(State(d): State<Dashboard>, Query(q): Query<LiveQuery>) -> Response {
    let Some(view) = View::from_path(&q.view) else {
        return (StatusCode::NOT_FOUND, "no such page to follow").into_response();
    };
    let period = if view.asks_other_nodes() {
        Duration::from_secs(5)
    } else {
        Duration::from_secs(1)
    };
    let shutdown = d.node.shutdown_token();
    let state = (d.node.clone(), view, String::new(), true);
    let stream = futures::stream::unfold(state, move |(node, view, last, first)| {
        let shutdown = shutdown.clone();
        async move {
            loop {
                if !first || !last.is_empty() {
                    tokio::select! {
                        _ = tokio::time::sleep(period) => {}
                        _ = shutdown.cancelled() => return None,
                    }
                }
                let fragment = match views::fragment(&node, &view).await {
                    Ok(html) => html,
                    Err(e) => views::error_fragment(&e.to_string()),
                };
                if fragment != last || first && last.is_empty() {
                    let event = Event::default()
                        .event("update")
                        .data(fragment.replace('\r', ""));
                    return Some((
                        Ok::<_, std::convert::Infallible>(event),
                        (node, view, fragment, false),
                    ));
                }
            }
        }
    });
    let mut response = Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_paths_of_this_site_are_followed_after_login() {
        assert_eq!(
            safe_next(Some("/ui/messages?node=a")),
            "/ui/messages?node=a"
        );
        assert_eq!(safe_next(Some("//evil.example/")), "/");
        assert_eq!(safe_next(Some("https://evil.example/")), "/");
        assert_eq!(safe_next(Some("/\\evil.example")), "/");
        assert_eq!(safe_next(None), "/");
    }

    #[test]
    fn origin_must_name_this_host() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8080"));
        assert!(!same_origin(&h), "no origin at all");
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:8080"),
        );
        assert!(same_origin(&h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:8080.evil.example"),
        );
        assert!(!same_origin(&h));
        h.remove(header::ORIGIN);
        h.insert(
            header::REFERER,
            HeaderValue::from_static("https://127.0.0.1:8080/ui/containers"),
        );
        assert!(same_origin(&h));
    }

    #[test]
    fn sessions_end_and_are_bounded() {
        let s = Sessions::default();
        let a = s.open().expect("randomness");
        assert_eq!(a.len(), 64);
        assert!(s.valid(&a));
        assert!(!s.valid("0000"));
        s.close(&a);
        assert!(!s.valid(&a));
        for _ in 0..MAX_SESSIONS + 10 {
            s.open();
        }
        assert!(s.live.lock().unwrap().len() <= MAX_SESSIONS);
    }

    #[test]
    fn failed_logins_are_limited() {
        let s = Sessions::default();
        for _ in 0..LOGIN_FAILURES {
            assert!(s.may_try());
            s.failed();
        }
        assert!(!s.may_try(), "the limit is reached");
        s.failures.lock().unwrap().iter_mut().for_each(|at| {
            *at = Instant::now() - LOGIN_WINDOW;
        });
        assert!(
            s.may_try(),
            "failures older than the window no longer count"
        );
    }

    #[test]
    fn cookies_are_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; bosun_session=abc; b=2"),
        );
        assert_eq!(cookie(&h, COOKIE).as_deref(), Some("abc"));
        assert_eq!(cookie(&h, "c"), None);
    }
}
