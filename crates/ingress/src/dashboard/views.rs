//! What the dashboard's pages show: each view gathers its data from the node (its
//! store, its fleet view, or messages to other nodes) into rows of display strings, and
//! renders them with a template. A page is the layout around a view's controls and its
//! live region; the live stream sends the live region alone.

use std::collections::BTreeMap;
use std::time::Duration;

use askama::Template;
use bosun_chaos::book::EntryState;
use bosun_chaos::engine::Listing;
use bosun_methods::clock::{now_millis, rfc3339_millis};
use bosun_node::{Liveness, Node};
use bosun_proto::{Message, Method, Role};
use serde::Deserialize;
use serde_json::Value;

use crate::ops;

/// Why a view could not be shown.
#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    /// The node's store could not be read.
    #[error("cannot read the node's records: {0}")]
    Store(String),
    /// A template failed.
    #[error("cannot render the page: {0}")]
    Render(#[from] askama::Error),
    /// Nothing by that id.
    #[error("{0}")]
    NotFound(String),
}

/// Why a command from the send form was not queued.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The form is incomplete or wrong: what to fix.
    #[error("{0}")]
    Form(String),
    /// The node refused the message.
    #[error("{0}")]
    Refused(#[from] bosun_node::SubmitError),
}

/// A read of the node's records, its error as a [`ViewError`].
fn read<T, E: std::fmt::Display>(result: Result<T, E>) -> Result<T, ViewError> {
    result.map_err(|e| ViewError::Store(e.to_string()))
}

/// A page that has a live region.
#[derive(Debug, Clone, PartialEq)]
pub enum View {
    /// `/`: every node.
    Fleet,
    /// `/ui/messages`: recent messages, filtered.
    Messages(Filter),
    /// `/ui/messages/{id}`: one message's life.
    Message(String),
    /// `/ui/containers`: containers and workloads of the fleet.
    Containers,
    /// `/ui/chaos`: fault experiments.
    Chaos,
    /// `/ui/chaos/{id}`: one experiment's timeline.
    Experiment(String),
}

/// The messages page's filters (all optional).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Filter {
    /// Destination node.
    #[serde(default)]
    pub node: Option<String>,
    /// Method name.
    #[serde(default)]
    pub method: Option<String>,
    /// State name.
    #[serde(default)]
    pub state: Option<String>,
    /// Only messages created in the last this many minutes.
    #[serde(default)]
    pub since: Option<String>,
    /// Only these ids (comma-separated): what one send made.
    #[serde(default)]
    pub ids: Option<String>,
}

impl Filter {
    fn given(v: &Option<String>) -> Option<&str> {
        v.as_deref().map(str::trim).filter(|s| !s.is_empty())
    }

    fn query(&self) -> String {
        let mut pairs = form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("node", &self.node),
            ("method", &self.method),
            ("state", &self.state),
            ("since", &self.since),
            ("ids", &self.ids),
        ] {
            if let Some(v) = Filter::given(v) {
                pairs.append_pair(k, v);
            }
        }
        pairs.finish()
    }
}

impl View {
    /// The view a page's path and query name, as `live.js` sends it.
    pub fn from_path(path: &str) -> Option<View> {
        let (path, query) = path.split_once('?').unwrap_or((path, ""));
        if !path.starts_with('/') {
            return None;
        }
        let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
        let decode = |s: &str| {
            form_urlencoded::parse(format!("x={s}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        };
        Some(match segments.as_slice() {
            [""] => View::Fleet,
            ["", "ui", "messages"] => View::Messages(serde_urlencoded_filter(query)),
            ["", "ui", "messages", id] => View::Message(decode(id)),
            ["", "ui", "containers"] => View::Containers,
            ["", "ui", "chaos"] => View::Chaos,
            ["", "ui", "chaos", id] => View::Experiment(decode(id)),
            _ => return None,
        })
    }

    /// The path of the page (for the live stream to follow).
    pub fn path(&self) -> String {
        let enc = |s: &str| -> String { form_urlencoded::byte_serialize(s.as_bytes()).collect() };
        match self {
            View::Fleet => "/".into(),
            View::Messages(f) => {
                let q = f.query();
                if q.is_empty() {
                    "/ui/messages".into()
                } else {
                    format!("/ui/messages?{q}")
                }
            }
            View::Message(id) => format!("/ui/messages/{}", enc(id)),
            View::Containers => "/ui/containers".into(),
            View::Chaos => "/ui/chaos".into(),
            View::Experiment(id) => format!("/ui/chaos/{}", enc(id)),
        }
    }

    /// True when showing it sends messages to other nodes, so it is refreshed less often.
    pub fn asks_other_nodes(&self) -> bool {
        matches!(self, View::Containers | View::Chaos | View::Experiment(_))
    }

    fn nav(&self) -> &'static str {
        match self {
            View::Fleet => "fleet",
            View::Messages(_) | View::Message(_) => "messages",
            View::Containers => "containers",
            View::Chaos | View::Experiment(_) => "chaos",
        }
    }
}

fn serde_urlencoded_filter(query: &str) -> Filter {
    let mut f = Filter::default();
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        let v = Some(v.into_owned());
        match k.as_ref() {
            "node" => f.node = v,
            "method" => f.method = v,
            "state" => f.state = v,
            "since" => f.since = v,
            "ids" => f.ids = v,
            _ => {}
        }
    }
    f
}

// === the layout ===

#[derive(Template)]
#[template(path = "dashboard/layout.html")]
struct Layout<'a> {
    title: &'a str,
    node: &'a str,
    nav: &'a str,
    notice: Option<&'a str>,
    controls: &'a str,
    live_path: &'a str,
    live: &'a str,
}

#[derive(Template)]
#[template(path = "dashboard/login.html")]
struct Login<'a> {
    next: &'a str,
    failed: bool,
}

#[derive(Template)]
#[template(path = "dashboard/error.html")]
struct ErrorPage<'a> {
    reason: &'a str,
}

/// The login page.
pub fn login(next: &str, failed: bool) -> Result<String, ViewError> {
    Ok(Login { next, failed }.render()?)
}

/// A page saying what went wrong.
pub fn error_page(reason: &str) -> String {
    ErrorPage { reason }
        .render()
        .unwrap_or_else(|_| "error".into())
}

/// A live region saying what went wrong.
pub fn error_fragment(reason: &str) -> String {
    let mut escaped = String::new();
    for c in reason.chars() {
        match c {
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '&' => escaped.push_str("&amp;"),
            '"' => escaped.push_str("&quot;"),
            c => escaped.push(c),
        }
    }
    format!("<p class=\"error\" role=\"alert\">{escaped}</p>")
}

/// A whole page: the layout, the view's controls and its live region.
pub async fn page(node: &Node, view: &View, notice: Option<&str>) -> Result<String, ViewError> {
    let live = fragment(node, view).await?;
    let (title, controls) = controls(node, view)?;
    let path = view.path();
    Ok(Layout {
        title: &title,
        node: node.name(),
        nav: view.nav(),
        notice,
        controls: &controls,
        live_path: &path,
        live: &live,
    }
    .render()?)
}

/// The view's live region.
pub async fn fragment(node: &Node, view: &View) -> Result<String, ViewError> {
    match view {
        View::Fleet => fleet(node),
        View::Messages(filter) => messages(node, filter),
        View::Message(id) => message(node, id),
        View::Containers => containers(node).await,
        View::Chaos => chaos(node).await,
        View::Experiment(id) => experiment(node, id).await,
    }
}

/// The page's title and what stays put while the live region changes (forms).
fn controls(node: &Node, view: &View) -> Result<(String, String), ViewError> {
    Ok(match view {
        View::Fleet => {
            let nodes: Vec<(String, bool)> = read(node.fleet())?
                .into_iter()
                .map(|n| {
                    let alive = n.status == Liveness::Alive;
                    (n.name, alive)
                })
                .collect();
            let mut nodes = nodes;
            if !nodes.iter().any(|(n, _)| n == node.name()) {
                nodes.push((node.name().to_string(), true));
                nodes.sort();
            }
            ("Fleet".into(), SendForm { nodes }.render()?)
        }
        View::Messages(filter) => {
            let states = STATES.to_vec();
            (
                "Messages".into(),
                FilterForm {
                    node: filter.node.clone().unwrap_or_default(),
                    method: filter.method.clone().unwrap_or_default(),
                    state: filter.state.clone().unwrap_or_default(),
                    since: filter.since.clone().unwrap_or_default(),
                    ids: filter.ids.clone().unwrap_or_default(),
                    states,
                }
                .render()?,
            )
        }
        View::Message(id) => {
            let report = read(node.status(id))?;
            let form = match report.sent {
                Some(sent) if !sent.state.is_terminal() => CancelForm {
                    id: id.clone(),
                    to: sent.message.destination().to_string(),
                }
                .render()?,
                _ => String::new(),
            };
            (format!("Message {id}"), form)
        }
        View::Containers => ("Containers".into(), String::new()),
        View::Chaos => ("Fault experiments".into(), String::new()),
        View::Experiment(id) => (
            format!("Experiment {id}"),
            AbortForm { id: id.clone() }.render()?,
        ),
    })
}

const STATES: [&str; 12] = [
    "queued",
    "sent",
    "acked",
    "received",
    "unconfirmed",
    "running",
    "done",
    "failed",
    "timeout",
    "interrupted",
    "rejected",
    "cancelled",
];

// === fleet ===

#[derive(Template)]
#[template(path = "dashboard/send.html")]
struct SendForm {
    nodes: Vec<(String, bool)>,
}

struct FleetRow {
    name: String,
    status: &'static str,
    seen: String,
    seen_at: String,
    system: String,
    cpus: String,
    load: String,
    memory: String,
    disk: String,
    containers: String,
    workloads: String,
    labels: String,
    identity: String,
    verified: bool,
    queue: String,
    drained: bool,
}

#[derive(Template)]
#[template(path = "dashboard/fleet.html")]
struct FleetLive {
    rows: Vec<FleetRow>,
    here: String,
    transport: String,
    connected: bool,
    outbox: u64,
    inbox: u64,
    alive: usize,
    suspect: usize,
    down: usize,
}

fn gib(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / (1u64 << 30) as f64)
}

fn ago(seconds: f64) -> String {
    let s = seconds.max(0.0);
    if s < 60.0 {
        format!("{s:.0} s ago")
    } else if s < 3600.0 {
        format!("{:.0} min ago", s / 60.0)
    } else if s < 86_400.0 {
        format!("{:.1} h ago", s / 3600.0)
    } else {
        format!("{:.1} d ago", s / 86_400.0)
    }
}

fn fleet(node: &Node) -> Result<String, ViewError> {
    let nodes = read(node.fleet())?;
    let depths = read(node.depths())?;
    let mut rows = Vec::new();
    let (mut alive, mut suspect, mut down) = (0, 0, 0);
    for n in nodes {
        let inv = &n.inventory;
        let status = match n.status {
            Liveness::Alive => {
                alive += 1;
                "alive"
            }
            Liveness::Suspect => {
                suspect += 1;
                "suspect"
            }
            Liveness::Down => {
                down += 1;
                "down"
            }
        };
        let u = |k: &str| inv[k].as_u64().unwrap_or(0);
        let s = |k: &str| inv[k].as_str().unwrap_or("").to_string();
        let labels = n.labels_text(", ");
        let workloads = inv["workloads"]
            .as_array()
            .map(|w| {
                let states: Vec<String> = w
                    .iter()
                    .map(|w| {
                        format!(
                            "{} {}",
                            w["name"].as_str().unwrap_or("?"),
                            w["state"].as_str().unwrap_or("?").to_lowercase()
                        )
                    })
                    .collect();
                states.join(", ")
            })
            .unwrap_or_default();
        let identity = &inv["identity"];
        let (identity_text, verified) = if n.unverified {
            (
                "unverified: unsigned hellos (insecure_open)".to_string(),
                false,
            )
        } else if identity.is_object() {
            let grants = identity["grants"]
                .as_array()
                .map(|g| {
                    g.iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default();
            let issuer = identity["issuer"].as_str().unwrap_or("");
            let short: String = issuer.chars().take(10).collect();
            let grants = if grants.is_empty() {
                "none".into()
            } else {
                grants
            };
            (
                format!("verified, issuer {short}…, may send: {grants}"),
                true,
            )
        } else {
            ("verified".to_string(), true)
        };
        let queue = match inv.get("queue") {
            Some(q) if q.is_object() => format!(
                "outbox {} · inbox {}",
                q["outbox"].as_u64().unwrap_or(0),
                q["inbox"].as_u64().unwrap_or(0)
            ),
            _ => "–".into(),
        };
        rows.push(FleetRow {
            system: format!("{} {} {}", s("os"), s("kernel"), s("arch"))
                .trim()
                .to_string(),
            cpus: u("cpus").to_string(),
            load: format!("{:.2}", inv["load1"].as_f64().unwrap_or(0.0)),
            memory: format!(
                "{} free of {} GiB",
                gib(u("memAvailableBytes")),
                gib(u("memTotalBytes"))
            ),
            disk: format!(
                "{} free of {} GiB",
                gib(u("diskFreeBytes")),
                gib(u("diskTotalBytes"))
            ),
            containers: inv["containers"]
                .as_u64()
                .map(|c| c.to_string())
                .unwrap_or_else(|| "–".into()),
            workloads,
            labels,
            identity: identity_text,
            verified,
            queue,
            drained: n.drained,
            seen: ago(n.seconds_ago),
            seen_at: rfc3339_millis(n.last_seen),
            status,
            name: n.name,
        });
    }
    Ok(FleetLive {
        rows,
        here: node.name().to_string(),
        transport: node.transport_description(),
        connected: node.is_connected(),
        outbox: depths.outbox,
        inbox: depths.inbox_pending,
        alive,
        suspect,
        down,
    }
    .render()?)
}

/// `POST /ui/send`: one `cliCommand` per chosen node. Returns the ids queued.
pub async fn send(node: &Node, form: &[(String, String)]) -> Result<Vec<String>, SendError> {
    let field = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default()
    };
    let nodes: Vec<String> = form
        .iter()
        .filter(|(k, _)| k == "node")
        .map(|(_, v)| v.clone())
        .collect();
    if nodes.is_empty() {
        return Err(SendError::Form("choose at least one node".into()));
    }
    let command = field("command");
    if command.is_empty() {
        return Err(SendError::Form("type a command".into()));
    }
    let shell = form.iter().any(|(k, v)| k == "shell" && v == "on");
    let data = if shell {
        vec![command]
    } else {
        crate::http::split_command(&command).map_err(|e| SendError::Form(e.to_string()))?
    };
    let timeout = field("timeout");
    let method_timeout = if timeout.is_empty() {
        None
    } else {
        Some(timeout.parse::<u64>().map_err(|_| {
            SendError::Form(format!(
                "the time limit must be whole seconds, not {timeout:?}"
            ))
        })?)
    };
    let message = Message {
        to_nodes: nodes,
        method: Method::CliCommand.name().into(),
        data,
        use_shell: shell,
        method_timeout,
        ordered: Some(false),
        ..Default::default()
    };
    let queued = node.submit(vec![message]).await?;
    Ok(queued.into_iter().map(|q| q.id).collect())
}

// === messages ===

#[derive(Template)]
#[template(path = "dashboard/filter.html")]
struct FilterForm {
    node: String,
    method: String,
    state: String,
    since: String,
    ids: String,
    states: Vec<&'static str>,
}

struct MessageRow {
    id: String,
    to: String,
    method: String,
    state: &'static str,
    created: String,
    changed: String,
    summary: String,
}

#[derive(Template)]
#[template(path = "dashboard/messages.html")]
struct MessagesLive {
    rows: Vec<MessageRow>,
    shown: usize,
    looked: usize,
    ids_only: bool,
}

/// How many recent messages the page looks through.
const RECENT: usize = 2000;
/// How many it shows.
const SHOWN: usize = 200;

/// One line saying how a message ended, or where it is.
fn summary(record: &bosun_node::SentRecord) -> String {
    let Some(o) = &record.outcome else {
        return record
            .history
            .last()
            .and_then(|h| h.note.clone())
            .unwrap_or_default();
    };
    let text = if let Some(e) = &o.error {
        e.clone()
    } else if !o.stdout.trim().is_empty() {
        o.stdout.trim().to_string()
    } else {
        o.stderr.trim().to_string()
    };
    let first: String = text
        .lines()
        .next()
        .unwrap_or("")
        .chars()
        .take(120)
        .collect();
    match o.exit_code {
        Some(code) if code != 0 => format!("exit {code}: {first}"),
        _ => first,
    }
}

/// True for messages the list shows without a method filter: not replies and fleet
/// traffic (the engine's own), nor the listings the dashboard and `ls` commands ask
/// every node for, which would bury what operators sent.
fn shown_unasked(message: &Message) -> bool {
    match message.parsed_method() {
        Ok(method) => {
            !matches!(method.role(), Role::Absorbed | Role::ReplySink)
                && !matches!(
                    method,
                    Method::ContainerList
                        | Method::ImageList
                        | Method::ChaosList
                        | Method::WorkloadList
                        | Method::OpProcessList
                )
        }
        Err(_) => true,
    }
}

fn messages(node: &Node, filter: &Filter) -> Result<String, ViewError> {
    let ids: Option<Vec<&str>> =
        Filter::given(&filter.ids).map(|s| s.split(',').map(str::trim).collect());
    let records: Vec<bosun_node::SentRecord> = match &ids {
        Some(ids) => ids
            .iter()
            .filter_map(|id| node.status(id).ok().and_then(|r| r.sent))
            .collect(),
        None => read(node.recent(RECENT))?,
    };
    let looked = records.len();
    let since_ms = Filter::given(&filter.since)
        .and_then(|s| s.parse::<f64>().ok())
        .map(|minutes| now_millis().saturating_sub((minutes * 60_000.0) as u64));
    let method = Filter::given(&filter.method);
    let rows: Vec<MessageRow> = records
        .into_iter()
        .filter(|r| method.is_some() || ids.is_some() || shown_unasked(&r.message))
        .filter(|r| Filter::given(&filter.node).is_none_or(|n| r.message.destination() == n))
        .filter(|r| method.is_none_or(|m| r.message.method.eq_ignore_ascii_case(m)))
        .filter(|r| Filter::given(&filter.state).is_none_or(|s| r.state.name() == s))
        .filter(|r| since_ms.is_none_or(|t| r.history.first().is_some_and(|h| h.at >= t)))
        .take(SHOWN)
        .map(|r| MessageRow {
            id: r.message.id().to_string(),
            to: r.message.destination().to_string(),
            method: r.message.method.clone(),
            state: r.state.name(),
            created: r
                .history
                .first()
                .map(|h| rfc3339_millis(h.at))
                .unwrap_or_default(),
            changed: r
                .history
                .last()
                .map(|h| rfc3339_millis(h.at))
                .unwrap_or_default(),
            summary: summary(&r),
        })
        .collect();
    Ok(MessagesLive {
        shown: rows.len(),
        rows,
        looked,
        ids_only: ids.is_some(),
    }
    .render()?)
}

struct Step {
    at: String,
    plus: String,
    state: &'static str,
    note: String,
}

#[derive(Template)]
#[template(path = "dashboard/message.html")]
struct MessageLive {
    id: String,
    from: String,
    to: String,
    method: String,
    data: String,
    state: &'static str,
    sends: u32,
    sent_steps: Vec<Step>,
    received_steps: Vec<Step>,
    output: String,
    has_outcome: bool,
    status: String,
    exit_code: String,
    stdout: String,
    stderr: String,
    error: String,
    disagreement: String,
    final_state: bool,
}

fn steps(history: &[bosun_node::HistoryEntry]) -> Vec<Step> {
    let first = history.first().map(|h| h.at).unwrap_or(0);
    history
        .iter()
        .map(|h| Step {
            at: rfc3339_millis(h.at),
            plus: format!("+{:.3} s", h.at.saturating_sub(first) as f64 / 1000.0),
            state: h.state.name(),
            note: h.note.clone().unwrap_or_default(),
        })
        .collect()
}

fn message(node: &Node, id: &str) -> Result<String, ViewError> {
    let report = read(node.status(id))?;
    let (m, state, sends, outcome, disagreement) = match (&report.sent, &report.received) {
        (Some(s), _) => (
            &s.message,
            s.state,
            s.sends,
            s.outcome.as_ref(),
            s.disagreement.clone().unwrap_or_default(),
        ),
        (None, Some(r)) => (&r.message, r.state, 0, r.outcome.as_ref(), String::new()),
        (None, None) => return Err(ViewError::NotFound(format!("no message with id {id} here"))),
    };
    let live = MessageLive {
        id: id.to_string(),
        from: m.from_node.clone().unwrap_or_default(),
        to: m.destination().to_string(),
        method: m.method.clone(),
        data: if m.data.len() == 1 {
            m.data[0].clone()
        } else {
            serde_json::to_string(&m.data).unwrap_or_default()
        },
        state: state.name(),
        sends,
        sent_steps: report
            .sent
            .as_ref()
            .map(|s| steps(&s.history))
            .unwrap_or_default(),
        received_steps: report
            .received
            .as_ref()
            .map(|r| steps(&r.history))
            .unwrap_or_default(),
        output: report.output.clone(),
        has_outcome: outcome.is_some(),
        status: outcome
            .map(|o| format!("{:?}", o.status).to_lowercase())
            .unwrap_or_default(),
        exit_code: outcome
            .and_then(|o| o.exit_code)
            .map(|c| c.to_string())
            .unwrap_or_default(),
        stdout: outcome.map(|o| o.stdout.clone()).unwrap_or_default(),
        stderr: outcome.map(|o| o.stderr.clone()).unwrap_or_default(),
        error: outcome.and_then(|o| o.error.clone()).unwrap_or_default(),
        disagreement,
        final_state: state.is_terminal(),
    };
    Ok(live.render()?)
}

// === containers ===

struct ContainerRow {
    node: String,
    id: String,
    short: String,
    names: String,
    image: String,
    state: String,
    status: String,
    actions: Vec<&'static str>,
}

struct WorkloadRow {
    node: String,
    name: String,
    state: String,
    restarts: String,
    healthy: String,
}

#[derive(Template)]
#[template(path = "dashboard/containers.html")]
struct ContainersLive {
    rows: Vec<ContainerRow>,
    missing: Vec<String>,
    workloads: Vec<WorkloadRow>,
}

/// How long a cluster-wide view waits for every node.
const ASK_TIMEOUT: Duration = Duration::from_secs(10);

async fn containers(node: &Node) -> Result<String, ViewError> {
    let list = ops::list_containers(node, true, true, ASK_TIMEOUT).await;
    let rows = list
        .containers
        .iter()
        .map(|c| {
            let text = |k: &str| c[k].as_str().unwrap_or("").to_string();
            let state = text("state");
            let actions: Vec<&'static str> = match state.as_str() {
                "running" => vec!["stop", "restart", "kill", "pause"],
                "paused" => vec!["unpause", "kill"],
                "restarting" => vec!["stop", "kill"],
                _ => vec!["start"],
            };
            let id = text("id");
            ContainerRow {
                node: text("node"),
                short: id.chars().take(12).collect(),
                id,
                names: c["names"]
                    .as_array()
                    .map(|n| {
                        n.iter()
                            .filter_map(Value::as_str)
                            .map(|n| n.trim_start_matches('/'))
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                    .unwrap_or_else(|| text("names")),
                image: text("image"),
                state,
                status: text("status"),
                actions,
            }
        })
        .collect();
    let mut workloads = Vec::new();
    for n in read(node.fleet())? {
        for w in n.inventory["workloads"].as_array().into_iter().flatten() {
            workloads.push(WorkloadRow {
                node: n.name.clone(),
                name: w["name"].as_str().unwrap_or("?").to_string(),
                state: w["state"].as_str().unwrap_or("?").to_string(),
                restarts: w["restarts"].to_string(),
                healthy: match w["healthy"].as_bool() {
                    Some(true) => "yes".into(),
                    Some(false) => "no".into(),
                    None => "–".into(),
                },
            });
        }
    }
    Ok(ContainersLive {
        rows,
        missing: list.missing,
        workloads,
    }
    .render()?)
}

/// `POST /ui/containers/{id}/{action}`: the notice to show.
pub async fn container_action(node: &Node, id: &str, action: &str) -> String {
    let method = match action {
        "start" => Method::ContainerStart,
        "stop" => Method::ContainerStop,
        "restart" => Method::ContainerRestart,
        "kill" => Method::ContainerKill,
        "pause" => Method::ContainerPause,
        "unpause" => Method::ContainerUnpause,
        other => return format!("unknown action {other:?}"),
    };
    let short: String = id.chars().take(12).collect();
    match ops::on_container(node, method, id, &[]).await {
        Ok((at, _)) => format!("{action} {short} on {at}: done"),
        Err(e) => format!("{action} {short}: {e}"),
    }
}

// === fault experiments ===

struct ExperimentRow {
    id: String,
    nodes: String,
    events: usize,
    states: String,
    first: String,
    last: String,
    running: bool,
}

#[derive(Template)]
#[template(path = "dashboard/chaos.html")]
struct ChaosLive {
    rows: Vec<ExperimentRow>,
    unanswered: Vec<String>,
}

/// Every live node's listing of `experiment` (`*`: every experiment).
async fn listings(node: &Node, experiment: &str) -> (Vec<Listing>, Vec<String>) {
    let nodes = ops::live_nodes(node);
    let messages: Vec<Message> = nodes
        .iter()
        .map(|n| ops::message(n, Method::ChaosList, vec![experiment.to_string()]))
        .collect();
    let mut found = Vec::new();
    let mut unanswered = Vec::new();
    match ops::call(node, messages, ASK_TIMEOUT).await {
        Ok(reports) => {
            for (name, report) in nodes.iter().zip(reports) {
                match ops::stdout(&report).map(|out| serde_json::from_str::<Listing>(&out)) {
                    Ok(Ok(listing)) => found.push(listing),
                    Ok(Err(e)) => unanswered.push(format!("{name} (unreadable answer: {e})")),
                    Err(e) => unanswered.push(format!("{name} ({e})")),
                }
            }
        }
        Err(e) => unanswered.push(format!("the nodes did not all answer: {e}")),
    }
    (found, unanswered)
}

async fn chaos(node: &Node) -> Result<String, ViewError> {
    let (found, unanswered) = listings(node, "*").await;
    let mut experiments: BTreeMap<String, Vec<(String, &bosun_chaos::book::Entry)>> =
        BTreeMap::new();
    for listing in &found {
        for e in &listing.entries {
            experiments
                .entry(e.experiment.clone())
                .or_default()
                .push((listing.node.clone(), e));
        }
    }
    let mut rows: Vec<ExperimentRow> = experiments
        .into_iter()
        .map(|(id, entries)| {
            let mut nodes: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
            nodes.sort();
            nodes.dedup();
            let mut states: BTreeMap<String, usize> = BTreeMap::new();
            for (_, e) in &entries {
                *states
                    .entry(format!("{:?}", e.state).to_lowercase())
                    .or_default() += 1;
            }
            let first = entries.iter().map(|(_, e)| e.at).min().unwrap_or(0);
            let last = entries
                .iter()
                .map(|(_, e)| e.undone_at.or(e.lease_end).unwrap_or(e.at))
                .max()
                .unwrap_or(0);
            let running = entries.iter().any(|(_, e)| !e.state.is_final());
            ExperimentRow {
                id,
                nodes: nodes.join(", "),
                events: entries.len(),
                states: states
                    .iter()
                    .map(|(s, n)| format!("{n} {s}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                first: rfc3339_millis(first),
                last: rfc3339_millis(last),
                running,
            }
        })
        .collect();
    rows.sort_by(|a, b| b.first.cmp(&a.first));
    Ok(ChaosLive { rows, unanswered }.render()?)
}

struct EventRow {
    node: String,
    id: String,
    at: String,
    target: String,
    action: String,
    state: String,
    fired: String,
    applied: String,
    undone: String,
    error: String,
}

#[derive(Template)]
#[template(path = "dashboard/experiment.html")]
struct ExperimentLive {
    id: String,
    svg: String,
    events: Vec<EventRow>,
    figures: String,
    unanswered: Vec<String>,
}

async fn experiment(node: &Node, id: &str) -> Result<String, ViewError> {
    let (found, unanswered) = listings(node, id).await;
    let found: Vec<Listing> = found
        .into_iter()
        .filter(|l| !l.entries.is_empty())
        .collect();
    if found.is_empty() && unanswered.is_empty() {
        return Err(ViewError::NotFound(format!(
            "no node knows experiment {id}"
        )));
    }
    let report = bosun_chaos::report::gather(id, found, unanswered.clone());
    let plus = |base: u64, t: Option<u64>| {
        t.map(|t| format!("{:+} ms", t as i64 - base as i64))
            .unwrap_or_default()
    };
    let mut events = Vec::new();
    for listing in &report.nodes {
        for e in &listing.entries {
            events.push(EventRow {
                node: listing.node.clone(),
                id: e.event.id.to_string(),
                at: rfc3339_millis(e.at),
                target: match &e.event.target {
                    bosun_chaos::plan::Target::Container(c) => format!("container {c}"),
                    other => format!("{other:?}").to_lowercase(),
                },
                action: e.event.action.name().to_string(),
                state: format!("{:?}", e.state).to_lowercase(),
                fired: plus(e.at, e.fired_at),
                applied: plus(e.at, e.applied_at),
                undone: match (e.lease_end, e.undone_at) {
                    (Some(end), Some(u)) => {
                        format!("{:+} ms after lease end", u as i64 - end as i64)
                    }
                    (None, Some(u)) => rfc3339_millis(u),
                    _ => String::new(),
                },
                error: e.error.clone().unwrap_or_default(),
            });
        }
    }
    events.sort_by(|a, b| a.at.cmp(&b.at).then(a.node.cmp(&b.node)));
    let f = &report.figures;
    let pair = |p: Option<(u64, u64)>| {
        p.map(|(m, p99)| format!("median {m} ms, p99 {p99} ms"))
            .unwrap_or_else(|| "–".into())
    };
    let figures = format!(
        "fire skew {}; undo after lease end {}",
        pair(f.fire_skew_ms),
        pair(f.undo_late_ms)
    );
    Ok(ExperimentLive {
        id: id.to_string(),
        svg: bosun_chaos::report::svg(&report),
        events,
        figures,
        unanswered,
    }
    .render()?)
}

#[derive(Template)]
#[template(path = "dashboard/cancel.html")]
struct CancelForm {
    id: String,
    to: String,
}

/// `POST /ui/messages/{id}/cancel`: the notice to show.
pub async fn cancel(node: &Node, id: &str) -> String {
    match node.cancel(id).await {
        bosun_node::Cancelled::Cancelled => {
            "cancelled: it had not reached its destination, and it never will".into()
        }
        bosun_node::Cancelled::AskedDestination { to } => format!(
            "it may have reached {to}: {to} was asked to cancel it; it ends cancelled if it had not started there"
        ),
        bosun_node::Cancelled::Refused { reason } => format!("not cancelled: {reason}"),
    }
}

#[derive(Template)]
#[template(path = "dashboard/abort.html")]
struct AbortForm {
    id: String,
}

/// `POST /ui/chaos/{id}/abort`: every live node ends the experiment's faults now.
pub async fn abort(node: &Node, id: &str) -> String {
    let nodes = ops::live_nodes(node);
    let messages: Vec<Message> = nodes
        .iter()
        .map(|n| ops::message(n, Method::ChaosAbort, vec![id.to_string()]))
        .collect();
    match ops::call(node, messages, ASK_TIMEOUT).await {
        Ok(reports) => {
            let mut undone = 0;
            let mut dropped = 0;
            let mut failed = Vec::new();
            for (name, report) in nodes.iter().zip(reports) {
                match ops::stdout(&report) {
                    Ok(out) => {
                        let entries: Vec<bosun_chaos::book::Entry> =
                            serde_json::from_str(&out).unwrap_or_default();
                        undone += entries
                            .iter()
                            .filter(|e| e.state == EntryState::Undone)
                            .count();
                        dropped += entries
                            .iter()
                            .filter(|e| e.state == EntryState::Aborted)
                            .count();
                    }
                    Err(e) => failed.push(format!("{name}: {e}")),
                }
            }
            let mut notice =
                format!("aborted: {undone} fault(s) undone, {dropped} pending event(s) dropped");
            if !failed.is_empty() {
                notice.push_str(&format!("; not answered: {}", failed.join("; ")));
            }
            notice
        }
        Err(e) => format!("abort not confirmed: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_view_is_found_again_from_its_path() {
        let views = [
            View::Fleet,
            View::Messages(Filter::default()),
            View::Messages(Filter {
                node: Some("ship 1".into()),
                method: Some("cliCommand".into()),
                state: Some("done".into()),
                since: Some("15".into()),
                ids: Some("A,B".into()),
            }),
            View::Message("01ABC/..?&".into()),
            View::Containers,
            View::Chaos,
            View::Experiment("exp 1".into()),
        ];
        for view in views {
            assert_eq!(
                View::from_path(&view.path()),
                Some(view.clone()),
                "{}",
                view.path()
            );
        }
        for stranger in [
            "/v1/nodes",
            "/ui/unknown",
            "/ui/messages/a/b",
            "",
            "/ui/chaos/x/abort",
        ] {
            assert_eq!(View::from_path(stranger), None, "{stranger}");
        }
    }

    #[test]
    fn error_text_is_escaped() {
        assert_eq!(
            error_fragment("<script>&\"x\""),
            "<p class=\"error\" role=\"alert\">&lt;script&gt;&amp;&quot;x&quot;</p>"
        );
    }
}
