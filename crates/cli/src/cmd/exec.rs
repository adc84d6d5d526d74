//! `bosun exec`: run a command on nodes, wait, print each result.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use bosun_ingress::client;
use bosun_ingress::control::{ControlRequest, Queued, Waited};
use bosun_node::StatusReport;
use bosun_node::Submitted;
use bosun_proto::{Message, State};
use clap::Args;
use serde_json::json;

use super::socket_path;
use crate::{Global, render};

/// Run a command on one or more nodes, through the local node.
///
/// The command is an argv: it is not split on spaces and no shell runs unless --shell
/// is given. The exit code is 0 when every node succeeded, 1 when any failed, timed out,
/// was interrupted or refused, and 3 when --timeout passed before every result came back
/// (the messages stay queued; follow them with `bosun status ID`).
///
/// With more than one node, a progress line on the terminal counts results as they
/// arrive (done, failed, pending), and a summary table follows the results.
///
/// Examples:
///   bosun exec -n ship1,ship2 -- uname -a
///   bosun exec -n ship1 --shell -- 'df -h | head -3'
///   bosun exec -n ship1 --no-wait -- apt-get -y upgrade
#[derive(Args)]
#[command(verbatim_doc_comment)]
pub struct ExecCmd {
    /// Destination node(s), comma-separated.
    #[arg(
        short = 'n',
        long = "nodes",
        value_delimiter = ',',
        required = true,
        value_name = "NODES"
    )]
    nodes: Vec<String>,
    /// Seconds to wait for all results before giving up waiting.
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    timeout: u64,
    /// Seconds the command may run on each node (its methodTimeout).
    #[arg(long, value_name = "SECS")]
    method_timeout: Option<u64>,
    /// Seconds after which undelivered messages are given up (their ttl).
    #[arg(long, value_name = "SECS")]
    ttl: Option<u64>,
    /// Run the words through /bin/sh -c on the node.
    #[arg(long)]
    shell: bool,
    /// Do not wait for the same stream's earlier messages to run first.
    #[arg(long)]
    unordered: bool,
    /// Print the ids and return at once.
    #[arg(long)]
    no_wait: bool,
    /// Print JSON for programs instead of text.
    #[arg(long)]
    json: bool,
    /// Show the progress line even when stderr is not a terminal (one line per change);
    /// by default it shows on a terminal when there is more than one node.
    #[arg(long, conflicts_with = "no_progress")]
    progress: bool,
    /// Never show the progress line.
    #[arg(long)]
    no_progress: bool,
    /// Sign as an operator with this key (from `bosun keys new`); the identity is read
    /// from the same path with `.id` (alice.key → alice.id). The destinations then
    /// check the operator's grants, not the local node's.
    #[arg(long, env = "BOSUN_KEY", value_name = "FILE")]
    key: Option<std::path::PathBuf>,
    /// The command and its arguments.
    #[arg(last = true, required = true, value_name = "CMD")]
    command: Vec<String>,
}

/// One message per destination, each with its own id, signed by the operator's key.
fn sign_each(message: &Message, key_path: &std::path::Path) -> anyhow::Result<Vec<Message>> {
    use anyhow::Context;
    let key = bosun_trust::keys::load(key_path, bosun_trust::keys::KeyKind::Member)?;
    let id_path = key_path.with_extension("id");
    let token = std::fs::read_to_string(&id_path).with_context(|| {
        format!(
            "the operator's identity {} (bosun keys issue --role operator … > {})",
            id_path.display(),
            id_path.display()
        )
    })?;
    let token = token.trim().to_string();
    let claims = bosun_trust::identity::read_claims(&token)?;
    anyhow::ensure!(
        claims.key == key.public_key(),
        "{} is the identity of key {}, not of {}",
        id_path.display(),
        claims.key,
        key_path.display()
    );
    let at = bosun_methods::clock::now_millis();
    Ok(message
        .to_nodes
        .iter()
        .map(|to| {
            let mut m = message.clone();
            m.to_nodes.clear();
            m.to_node = Some(to.clone());
            m.id = Some(bosun_proto::new_id());
            m.signature = Some(bosun_trust::sign_operator(
                &key,
                at,
                &m.operator_signed_bytes(at),
            ));
            m.signer = Some(token.clone());
            m
        })
        .collect())
}

impl ExecCmd {
    pub async fn run(self, global: &Global) -> anyhow::Result<i32> {
        let socket = socket_path(global)?;
        let message = Message {
            to_nodes: self.nodes.clone(),
            method: "cliCommand".into(),
            data: self.command.clone(),
            method_timeout: self.method_timeout,
            ttl: self.ttl,
            use_shell: self.shell,
            ordered: self.unordered.then_some(false),
            ..Default::default()
        };
        let messages = match &self.key {
            Some(key) => sign_each(&message, key)?,
            None => vec![message],
        };
        let request = ControlRequest::Submit {
            messages: messages
                .iter()
                .map(serde_json::to_value)
                .collect::<Result<_, _>>()?,
        };
        let Queued { queued } = client::request(&socket, &request, Duration::from_secs(30)).await?;
        if self.no_wait {
            if self.json {
                outln!("{}", serde_json::to_string_pretty(&queued)?);
            } else {
                for q in &queued {
                    outln!("{}\t{}", q.to_node, q.id);
                }
            }
            return Ok(0);
        }
        let ids: Vec<String> = queued.iter().map(|q| q.id.clone()).collect();
        let progress = if self.no_progress {
            None
        } else if self.progress {
            Some(Progress::lines())
        } else if ids.len() > 1 && std::io::stderr().is_terminal() {
            Some(Progress::terminal())
        } else {
            None
        };
        let reports = match progress {
            None => {
                let wait = ControlRequest::Wait {
                    ids: ids.clone(),
                    timeout_ms: self.timeout * 1000,
                };
                let Waited { reports, .. } =
                    client::request(&socket, &wait, Duration::from_secs(self.timeout + 30)).await?;
                reports
            }
            Some(mut progress) => {
                let deadline = Instant::now() + Duration::from_secs(self.timeout);
                loop {
                    let left = deadline.saturating_duration_since(Instant::now());
                    let wait = ControlRequest::Wait {
                        ids: ids.clone(),
                        timeout_ms: left.min(PROGRESS_TICK).as_millis() as u64,
                    };
                    let Waited { all_done, reports } =
                        client::request(&socket, &wait, PROGRESS_TICK + Duration::from_secs(30))
                            .await?;
                    progress.show(&Counts::of(&reports));
                    if all_done || left.is_zero() {
                        progress.finish();
                        break reports;
                    }
                }
            }
        };
        let code = print_results(&queued, &reports, self.json);
        if !self.json && queued.len() > 1 {
            print_summary(&queued, &reports);
        }
        Ok(code)
    }
}

/// How often the progress line asks for news.
const PROGRESS_TICK: Duration = Duration::from_millis(200);

/// Results so far, by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Counts {
    done: usize,
    failed: usize,
    pending: usize,
}

impl Counts {
    fn of(reports: &[StatusReport]) -> Counts {
        let mut counts = Counts::default();
        for report in reports {
            match report.state() {
                Some(State::Done) => counts.done += 1,
                Some(state) if state.is_terminal() => counts.failed += 1,
                _ => counts.pending += 1,
            }
        }
        counts
    }

    fn line(&self, elapsed: Duration) -> String {
        let total = self.done + self.failed + self.pending;
        format!(
            "{}/{total} back: {} done, {} failed, {} pending ({:.1} s)",
            self.done + self.failed,
            self.done,
            self.failed,
            self.pending,
            elapsed.as_secs_f64()
        )
    }
}

/// The progress line on stderr: redrawn in place on a terminal, one line per change
/// otherwise.
struct Progress {
    terminal: bool,
    started: Instant,
    last: Option<Counts>,
}

impl Progress {
    fn terminal() -> Progress {
        Progress {
            terminal: true,
            started: Instant::now(),
            last: None,
        }
    }

    fn lines() -> Progress {
        Progress {
            terminal: false,
            ..Progress::terminal()
        }
    }

    fn show(&mut self, counts: &Counts) {
        let line = counts.line(self.started.elapsed());
        if self.terminal {
            eprint!("\r\x1b[2K{line}");
        } else if self.last != Some(*counts) {
            eprintln!("{line}");
        }
        self.last = Some(*counts);
    }

    fn finish(&self) {
        if self.terminal {
            eprint!("\r\x1b[2K");
        }
    }
}

/// The table after the results: one row per node, then the counts.
fn print_summary(queued: &[Submitted], reports: &[StatusReport]) {
    let width = queued
        .iter()
        .map(|q| q.to_node.len())
        .max()
        .unwrap_or(4)
        .max(4);
    outln!();
    outln!(
        "{:<width$}  {:<11}  {:>4}  {:>9}",
        "NODE",
        "STATE",
        "EXIT",
        "TIME"
    );
    for (q, r) in queued.iter().zip(reports) {
        let state = r.state().unwrap_or(State::Queued);
        let outcome = r.outcome().filter(|_| state.is_terminal());
        let exit = outcome
            .and_then(|o| o.exit_code)
            .map_or("-".to_string(), |c| c.to_string());
        let time = outcome
            .and_then(|o| o.finished_at.checked_sub(o.started_at?))
            .map_or("-".to_string(), |ms| format!("{ms} ms"));
        outln!(
            "{:<width$}  {:<11}  {:>4}  {:>9}",
            q.to_node,
            state.name(),
            exit,
            time
        );
    }
    let counts = Counts::of(reports);
    outln!(
        "{} nodes: {} done, {} failed, {} pending",
        queued.len(),
        counts.done,
        counts.failed,
        counts.pending
    );
}

/// Print each node's result; return the exit code.
pub fn print_results(queued: &[Submitted], reports: &[StatusReport], as_json: bool) -> i32 {
    let mut code = 0;
    let mut rows = Vec::new();
    for (q, r) in queued.iter().zip(reports) {
        let state = r.state().unwrap_or(State::Queued);
        if !state.is_terminal() {
            code = code.max(3);
        } else if state != State::Done {
            code = code.max(1);
        }
        if as_json {
            let mut row =
                json!({ "node": q.to_node, "id": q.id, "state": state, "result": r.outcome() });
            if !r.output.is_empty() {
                row["output"] = json!(r.output);
            }
            rows.push(row);
            continue;
        }
        match r.outcome() {
            Some(o) if state.is_terminal() => {
                outln!("── {} [{}]", q.to_node, render::outcome_summary(o));
                out!("{}", r.output);
                out!("{}", o.stdout);
                if !o.stdout.is_empty() && !o.stdout.ends_with('\n') {
                    outln!();
                }
                if !o.stderr.is_empty() {
                    eprint!(
                        "{}",
                        render::indented(&o.stderr, &format!("{} stderr: ", q.to_node))
                    );
                }
                if state != State::Done
                    && let Some(e) = &o.error
                {
                    outln!("   {e}");
                }
            }
            _ => outln!(
                "── {} [{}] no result yet; follow it with `bosun status {}`",
                q.to_node,
                state.name(),
                q.id
            ),
        }
    }
    if as_json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&rows).unwrap_or_default()
        );
    }
    code
}
