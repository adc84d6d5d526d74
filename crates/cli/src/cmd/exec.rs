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
/// With more than one node, a progress bar on the terminal counts results as they
/// arrive (done, failed, pending), and a summary table follows the results.
///
/// With --stream, each node's output is printed as it arrives, line by line and
/// prefixed with the node's name when there is more than one (the command runs as
/// cliCommandCont: stdout comes back in chunks while it runs).
///
/// Examples:
///   bosun exec -n ship1,ship2 -- uname -a
///   bosun exec -n ship1 --shell -- 'df -h | head -3'
///   bosun exec -n ship1,ship2 --stream -- ping -c 5 harbour
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
    /// Print each node's output as it arrives ("NODE | line" with several nodes),
    /// instead of all of it at the end.
    #[arg(long, conflicts_with_all = ["json", "no_wait"])]
    stream: bool,
    /// Show the progress line even when stderr is not a terminal (one line per change);
    /// by default a progress bar shows on a terminal when there is more than one node.
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
            method: if self.stream {
                "cliCommandCont"
            } else {
                "cliCommand"
            }
            .into(),
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
        let streaming = self.stream.then(|| Stream::new(&queued));
        let reports = match (progress, streaming) {
            (None, None) => {
                let wait = ControlRequest::Wait {
                    ids: ids.clone(),
                    timeout_ms: self.timeout * 1000,
                };
                let Waited { reports, .. } =
                    client::request(&socket, &wait, Duration::from_secs(self.timeout + 30)).await?;
                reports
            }
            (mut progress, mut streaming) => {
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
                    let finished = all_done || left.is_zero();
                    if let Some(streaming) = &mut streaming {
                        let text = streaming.take(&reports, finished);
                        match &progress {
                            Some(progress) => progress.suspend(|| out!("{text}")),
                            None => out!("{text}"),
                        }
                    }
                    if let Some(progress) = &mut progress {
                        progress.show(&Counts::of(&reports));
                    }
                    if finished {
                        if let Some(progress) = &progress {
                            progress.finish();
                        }
                        break reports;
                    }
                }
            }
        };
        let code = print_results_after(&queued, &reports, self.json, self.stream);
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

/// Progress on stderr: an indicatif bar redrawn in place on a terminal, or one line per
/// change otherwise (`--progress` into a pipe or a file).
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    started: Instant,
    last: Option<Counts>,
}

impl Progress {
    fn terminal() -> Progress {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:30.green/white} {pos}/{len} back: {msg} ({elapsed_precise})",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        Progress {
            bar: Some(bar),
            started: Instant::now(),
            last: None,
        }
    }

    fn lines() -> Progress {
        Progress {
            bar: None,
            started: Instant::now(),
            last: None,
        }
    }

    fn show(&mut self, counts: &Counts) {
        match &self.bar {
            Some(bar) => {
                bar.set_length((counts.done + counts.failed + counts.pending) as u64);
                bar.set_position((counts.done + counts.failed) as u64);
                bar.set_message(format!(
                    "{} done, {} failed, {} pending",
                    counts.done, counts.failed, counts.pending
                ));
            }
            None if self.last != Some(*counts) => {
                eprintln!("{}", counts.line(self.started.elapsed()));
            }
            None => {}
        }
        self.last = Some(*counts);
    }

    /// Print `f`'s output without tearing the bar.
    fn suspend(&self, f: impl FnOnce()) {
        match &self.bar {
            Some(bar) => bar.suspend(f),
            None => f(),
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Streamed output printed so far, per message: what has been printed, and a line not
/// yet ended.
struct Stream {
    nodes: Vec<String>,
    printed: Vec<usize>,
    prefix: bool,
}

impl Stream {
    fn new(queued: &[Submitted]) -> Stream {
        Stream {
            nodes: queued.iter().map(|q| q.to_node.clone()).collect(),
            printed: vec![0; queued.len()],
            prefix: queued.len() > 1,
        }
    }

    /// The new whole lines of every report's output (and, once `finished`, what is left
    /// of a line without its end), each prefixed with its node when there are several.
    fn take(&mut self, reports: &[StatusReport], finished: bool) -> String {
        let mut text = String::new();
        for (i, report) in reports.iter().enumerate() {
            let Some(node) = self.nodes.get(i) else { break };
            let done = finished || report.state().is_some_and(State::is_terminal);
            let output = &report.output;
            let from = self.printed[i].min(output.len());
            let upto = if done {
                output.len()
            } else {
                output[from..]
                    .rfind('\n')
                    .map_or(from, |end| from + end + 1)
            };
            if upto <= from {
                continue;
            }
            for line in output[from..upto].lines() {
                if self.prefix {
                    text.push_str(node);
                    text.push_str(" | ");
                }
                text.push_str(line);
                text.push('\n');
            }
            self.printed[i] = upto;
        }
        text
    }
}

/// The table after the results: one row per node, then the counts.
fn print_summary(queued: &[Submitted], reports: &[StatusReport]) {
    outln!();
    let mut table = crate::table::Table::new(&["NODE", "STATE", "EXIT", "TIME"]).right(&[2, 3]);
    for (q, r) in queued.iter().zip(reports) {
        let state = r.state().unwrap_or(State::Queued);
        let outcome = r.outcome().filter(|_| state.is_terminal());
        let exit = outcome
            .and_then(|o| o.exit_code)
            .map_or("-".to_string(), |c| c.to_string());
        let time = outcome
            .and_then(|o| o.finished_at.checked_sub(o.started_at?))
            .map_or("-".to_string(), |ms| format!("{ms} ms"));
        table.row([q.to_node.clone(), state.name().to_string(), exit, time]);
    }
    out!("{}", table.render());
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
    print_results_after(queued, reports, as_json, false)
}

/// [`print_results`], leaving out the streamed output when it was printed already.
fn print_results_after(
    queued: &[Submitted],
    reports: &[StatusReport],
    as_json: bool,
    output_shown: bool,
) -> i32 {
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
                if !output_shown {
                    out!("{}", r.output);
                }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn queued(nodes: &[&str]) -> Vec<Submitted> {
        nodes
            .iter()
            .map(|n| Submitted {
                id: format!("id-{n}"),
                to_node: n.to_string(),
                method: "cliCommandCont".into(),
            })
            .collect()
    }

    fn report(output: &str) -> StatusReport {
        StatusReport {
            output: output.into(),
            ..StatusReport::empty()
        }
    }

    #[test]
    fn streamed_output_is_printed_once_in_whole_lines_with_its_node() {
        let mut stream = Stream::new(&queued(&["a", "b"]));
        assert_eq!(
            stream.take(&[report("one\ntw"), report("")], false),
            "a | one\n"
        );
        assert_eq!(stream.take(&[report("one\ntw"), report("")], false), "");
        assert_eq!(
            stream.take(&[report("one\ntwo\n"), report("x\ny\n")], false),
            "a | two\nb | x\nb | y\n"
        );
        // At the end, a line without its end is printed too.
        assert_eq!(
            stream.take(&[report("one\ntwo\nthr"), report("x\ny\n")], true),
            "a | thr\n"
        );
        let mut alone = Stream::new(&queued(&["solo"]));
        assert_eq!(alone.take(&[report("only\n")], false), "only\n");
    }
}
