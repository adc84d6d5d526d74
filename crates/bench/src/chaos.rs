//! `bosun-bench chaos`: does the sender's record tell the truth when nodes crash, stall
//! and lose their broker?
//!
//! A real `nats-server` and two real node processes, `sender` and `target`, with a short
//! ACK timeout and few retries so that give-ups happen within seconds. The sender is
//! given N ordered `cliCommand` messages for the target, each appending its number to
//! one file (`sleep 0.05; echo N >> runs.txt`), submitted in small batches spread over
//! the fault period (each with a fixed id, so a batch re-submitted after a sender crash
//! is deduplicated). Meanwhile a seeded fault loop repeats, in a shuffled order each
//! round and with random gaps: kill -9 the target and restart it, kill -9 the sender
//! and restart it, kill -9 the broker and restart it, freeze the target (SIGSTOP) for
//! longer than a message takes to be given up, then thaw it. After the last fault it
//! waits, with a deadline, until every message is final at the sender and the target
//! has nothing left to run, then compares the sender's states with the file:
//!
//! - **lost**: final `done` but not in the file, or never final;
//! - **run twice**: a number more than once in the file;
//! - **reordered**: a number below one written before it (ordered messages must run in
//!   submit order);
//! - **interrupted that ran**: final `interrupted` with a claim that the command was
//!   killed before it finished (`killed at restart`), yet its number is in the file (a
//!   report that its process had already ended or exited while the node was down, or
//!   that the node stopped while it ran, leaves open that it completed, and is not
//!   counted);
//! - **given up that ran**: final `failed` without an exit code (delivery given up),
//!   `cancelled`, `expired` or `rejected`, yet its number is in the file;
//! - **garbled**: a line of the file that is not one of the numbers submitted;
//! - **drain time**: from the end of the last fault until all of the above is settled.
//!
//! Every count must be 0; the command exits 1 otherwise.

use std::collections::BTreeMap;

/// Does an `interrupted` report leave open that the command ran to its end?
fn admits_completion(error: &str) -> bool {
    ["already ended", "exited", "stopped while the method ran"]
        .iter()
        .any(|phrase| error.contains(phrase))
}
use std::path::Path;
use std::time::{Duration, Instant};

use bosun_ingress::client;
use bosun_ingress::control::ControlRequest;
use bosun_proto::State;
use bosun_testkit::{Fleet, NodeSpec, poll_until};
use serde_json::{Value, json};

/// Both nodes: ACK timeout 1 s and 2 retries, so a message whose receiver is frozen is
/// given up after about 4.5 s (sends at 0, 1.5 and 3.5 s, each waiting 1 s).
const NODE_CONFIG: &str = "ack_timeout_secs = 1\nretries = 2\nkill_grace_secs = 1\n\
                           hello_interval_secs = 0\ncapture = false\n";
/// Longer than the give-up time above, so a freeze gives up the message in flight.
const FREEZE_MIN: Duration = Duration::from_millis(5_500);
/// Messages per submit request.
const SUBMIT_BATCH: usize = 10;
/// How long one batch may keep failing (the sender down, restarting) before the run
/// is abandoned.
const SUBMIT_PATIENCE: Duration = Duration::from_secs(60);
/// One control-socket request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Ids asked about in one `wait` request.
const WAIT_CHUNK: usize = 500;

/// What `bosun-bench chaos` was asked for.
#[derive(Debug, Clone)]
pub struct Options {
    /// Ordered commands to send.
    pub messages: usize,
    /// Seed of the fault loop; the same seed gives the same faults in the same order
    /// with the same gaps (the timing of the nodes themselves still varies).
    pub seed: u64,
    /// How long the fault loop runs (at least one round of every fault).
    pub fault_secs: u64,
    /// How long to wait, after the last fault, for every message to settle.
    pub drain_secs: u64,
    /// Print one JSON object instead of text.
    pub json: bool,
}

impl Options {
    /// Defaults for `messages`: faults for N/20 s (at least 30 s), a drain of
    /// N/10 s (at least 120 s), a seed from the clock.
    pub fn for_messages(messages: usize) -> Options {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        Options {
            messages,
            seed,
            fault_secs: (messages as u64 / 20).max(30),
            drain_secs: (messages as u64 / 10).max(120),
            json: false,
        }
    }
}

/// The kinds of fault, one of each per round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Fault {
    KillTarget,
    KillSender,
    KillBroker,
    FreezeTarget,
}

impl Fault {
    const ALL: [Fault; 4] = [
        Fault::KillTarget,
        Fault::KillSender,
        Fault::KillBroker,
        Fault::FreezeTarget,
    ];

    fn name(self) -> &'static str {
        match self {
            Fault::KillTarget => "killTarget",
            Fault::KillSender => "killSender",
            Fault::KillBroker => "killBroker",
            Fault::FreezeTarget => "freezeTarget",
        }
    }
}

/// SplitMix64: a small seeded generator, enough to replay a fault schedule.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A duration between `low` and `high` milliseconds.
    pub(crate) fn millis(&mut self, low: u64, high: u64) -> Duration {
        Duration::from_millis(low + self.next() % (high - low + 1))
    }

    /// The four faults in a shuffled order.
    fn round(&mut self) -> [Fault; 4] {
        let mut order = Fault::ALL;
        for i in (1..order.len()).rev() {
            order.swap(i, (self.next() % (i as u64 + 1)) as usize);
        }
        order
    }
}

/// The comparison of the sender's final states with the file of runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    /// Final (or last known) states at the sender, by name; `unknown` when the sender
    /// has no record.
    pub states: BTreeMap<String, usize>,
    /// Final `done` but not in the file.
    pub done_not_run: usize,
    /// Not final when the drain deadline passed.
    pub never_final: usize,
    /// Numbers that are more than once in the file.
    pub run_twice: usize,
    /// Lines whose number is below one written before them.
    pub reordered: usize,
    /// `interrupted` with a "not run" or "killed" claim, yet in the file.
    pub interrupted_that_ran: usize,
    /// Given up (`failed` with no exit code, `cancelled`, `expired`, `rejected`), yet in
    /// the file.
    pub given_up_that_ran: usize,
    /// Lines that are not one of the numbers submitted.
    pub garbled: usize,
    /// Up to [`EXAMPLES`] message numbers behind each count above, by count name.
    pub examples: BTreeMap<&'static str, Vec<u64>>,
}

/// How many message numbers are kept as examples of each count.
pub const EXAMPLES: usize = 10;

impl Tally {
    fn example(&mut self, count: &'static str, n: u64) {
        let list = self.examples.entry(count).or_default();
        if list.len() < EXAMPLES {
            list.push(n);
        }
    }
}

impl Tally {
    /// Add `other`'s counts to these (a run made of several files). Reordering is
    /// added only when `ordered`: unordered messages may run in any order.
    pub fn absorb(&mut self, other: Tally, ordered: bool) {
        for (state, count) in other.states {
            *self.states.entry(state).or_default() += count;
        }
        self.done_not_run += other.done_not_run;
        self.never_final += other.never_final;
        self.run_twice += other.run_twice;
        if ordered {
            self.reordered += other.reordered;
        }
        self.interrupted_that_ran += other.interrupted_that_ran;
        self.given_up_that_ran += other.given_up_that_ran;
        self.garbled += other.garbled;
        for (count, numbers) in other.examples {
            if count == "reordered" && !ordered {
                continue;
            }
            for n in numbers {
                self.example(count, n);
            }
        }
    }

    /// Lost: done but not run, or never final.
    pub fn lost(&self) -> usize {
        self.done_not_run + self.never_final
    }

    /// True when every count is 0.
    pub fn clean(&self) -> bool {
        self.lost() == 0
            && self.run_twice == 0
            && self.reordered == 0
            && self.interrupted_that_ran == 0
            && self.given_up_that_ran == 0
            && self.garbled == 0
    }
}

/// Compare `reports` (message number, its sender-side status report if any) with the
/// `file` of runs, one number a line.
pub fn tally(reports: &[(u64, Option<Value>)], file: &str) -> Tally {
    let mut t = Tally::default();
    let submitted: std::collections::HashSet<u64> = reports.iter().map(|(n, _)| *n).collect();
    let mut runs: BTreeMap<u64, usize> = BTreeMap::new();
    let mut highest = 0;
    for line in file.lines() {
        match line.trim().parse::<u64>() {
            Ok(n) if submitted.contains(&n) => {
                *runs.entry(n).or_default() += 1;
                if n < highest {
                    t.reordered += 1;
                    t.example("reordered", n);
                }
                highest = highest.max(n);
            }
            _ => t.garbled += 1,
        }
    }
    for (n, _) in runs.iter().filter(|(_, count)| **count > 1) {
        t.run_twice += 1;
        t.example("runTwice", *n);
    }
    for (n, report) in reports {
        let sent = report.as_ref().map(|r| &r["sent"]);
        let state = sent
            .and_then(|s| s["state"].as_str())
            .unwrap_or("unknown")
            .to_string();
        *t.states.entry(state.clone()).or_default() += 1;
        let is_final = serde_json::from_value::<State>(Value::String(state.clone()))
            .is_ok_and(State::is_terminal);
        if !is_final {
            t.never_final += 1;
            t.example("neverFinal", *n);
            continue;
        }
        let ran = runs.contains_key(n);
        let outcome = sent.map(|s| &s["outcome"]).unwrap_or(&Value::Null);
        let error = outcome["error"].as_str().unwrap_or("");
        let exit_code = outcome["exitCode"].as_i64();
        match state.as_str() {
            "done" if !ran => {
                t.done_not_run += 1;
                t.example("doneNotRun", *n);
            }
            "interrupted" if ran && !admits_completion(error) => {
                t.interrupted_that_ran += 1;
                t.example("interruptedThatRan", *n);
            }
            "failed" | "cancelled" | "expired" | "rejected"
                if ran && (state != "failed" || exit_code.is_none()) =>
            {
                t.given_up_that_ran += 1;
                t.example("givenUpThatRan", *n);
            }
            _ => {}
        }
    }
    t
}

/// Run the chaos scenario with the `bosun` binary at `bosun`; prints the figures and
/// returns the process exit code: 0 when every count is 0, 1 when not, 2 when the run
/// itself could not be made (no nats-server, a submit that never went through).
pub fn run(bosun: &Path, options: &Options) -> i32 {
    let Some(mut fleet) = Fleet::builder(bosun)
        .node(NodeSpec::new("sender").config(NODE_CONFIG))
        .node(NodeSpec::new("target").config(NODE_CONFIG))
        .start()
    else {
        eprintln!("chaos: nats-server is required: apt-get install nats-server");
        return 2;
    };
    let runs = fleet.dir().join("runs.txt");
    let sender_socket = fleet.node("sender").data_dir.join("bosun.sock");
    let target_socket = fleet.node("target").data_dir.join("bosun.sock");
    let ids = message_ids(options.seed, options.messages);
    let start = Instant::now();
    let fault_period = Duration::from_secs(options.fault_secs);

    let submitter = {
        let ids = ids.clone();
        let runs = runs.clone();
        let socket = sender_socket.clone();
        // Submissions are spread over 80% of the fault period, so faults meet traffic.
        let window = fault_period.mul_f64(0.8);
        std::thread::spawn(move || {
            submit_all(&socket, &ids, start, window, |n, id| message(id, n, &runs))
        })
    };

    let mut rng = Rng(options.seed);
    let mut faults: BTreeMap<Fault, usize> = BTreeMap::new();
    loop {
        for fault in rng.round() {
            std::thread::sleep(rng.millis(500, 2_000));
            inflict(&mut fleet, fault, &mut rng);
            *faults.entry(fault).or_default() += 1;
        }
        if start.elapsed() >= fault_period {
            break;
        }
    }
    let last_fault = Instant::now();
    let submitted = match submitter.join() {
        Ok(Ok(count)) => count,
        Ok(Err(e)) => {
            eprintln!("chaos: {e}");
            return 2;
        }
        Err(_) => {
            eprintln!("chaos: the submitting thread panicked");
            return 2;
        }
    };

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let settled = poll_until(Duration::from_secs(options.drain_secs), || {
        let all_final = runtime.block_on(all_final(&sender_socket, &ids));
        let idle = all_final && runtime.block_on(target_idle(&target_socket));
        idle.then(Instant::now)
    });
    let drain = settled.map(|at| at.duration_since(last_fault));
    let reports = runtime.block_on(final_reports(&sender_socket, &ids));
    let file = std::fs::read_to_string(&runs).unwrap_or_default();
    let t = tally(&reports, &file);
    print_figures(options, submitted, &faults, &t, drain);
    if t.clean() { 0 } else { 1 }
}

/// Fixed ULIDs for messages 1..=N: a batch re-submitted after a sender crash is then
/// recognised, not queued twice.
pub(crate) fn message_ids(seed: u64, messages: usize) -> Vec<String> {
    let base = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    (1..=messages as u64)
        .map(|n| ulid::Ulid::from_parts(base, (u128::from(seed) << 32) | u128::from(n)))
        .map(|id| id.to_string())
        .collect()
}

/// The message that appends `number` to `runs`.
fn message(id: &str, number: usize, runs: &Path) -> Value {
    json!({
        "id": id,
        "toNode": "target",
        "method": "cliCommand",
        "useShell": true,
        "data": [format!("sleep 0.05; echo {number} >> '{}'", runs.display())],
        "ordered": true,
        "methodTimeout": 30,
    })
}

/// Submit every message in batches, batch i at `start + i × window / batches`,
/// re-submitting a batch (same ids) while the sender is down. `make(n, id)` gives
/// message number `n` (from 1). Returns how many were queued.
pub(crate) fn submit_all(
    socket: &Path,
    ids: &[String],
    start: Instant,
    window: Duration,
    make: impl Fn(usize, &str) -> Value,
) -> Result<usize, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let batches = ids.len().div_ceil(SUBMIT_BATCH).max(1);
    let mut queued = 0;
    for (index, chunk) in ids.chunks(SUBMIT_BATCH).enumerate() {
        let due = start + window.mul_f64(index as f64 / batches as f64);
        // Pacing the submissions over the fault period, not waiting for an event.
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        let messages: Vec<Value> = chunk
            .iter()
            .enumerate()
            .map(|(i, id)| make(index * SUBMIT_BATCH + i + 1, id))
            .collect();
        let request = ControlRequest::Submit { messages };
        let answer = poll_until(SUBMIT_PATIENCE, || {
            runtime
                .block_on(client::request::<Value>(socket, &request, REQUEST_TIMEOUT))
                .ok()
        })
        .ok_or_else(|| format!("batch {index} could not be submitted within 60 s"))?;
        let got = answer["queued"].as_array().map_or(0, Vec::len);
        if got != chunk.len() {
            return Err(format!("batch {index}: {got} queued of {}", chunk.len()));
        }
        queued += got;
    }
    Ok(queued)
}

/// True when the sender reports every id final.
pub(crate) async fn all_final(socket: &Path, ids: &[String]) -> bool {
    for chunk in ids.chunks(WAIT_CHUNK) {
        let request = ControlRequest::Wait {
            ids: chunk.to_vec(),
            timeout_ms: 0,
        };
        match client::request::<Value>(socket, &request, REQUEST_TIMEOUT).await {
            Ok(answer) if answer["allDone"] == true => {}
            _ => return false,
        }
    }
    true
}

/// True when the target has nothing received left to run.
pub(crate) async fn target_idle(socket: &Path) -> bool {
    client::request::<Value>(socket, &ControlRequest::Info, REQUEST_TIMEOUT)
        .await
        .is_ok_and(|info| info["inboxPending"] == 0)
}

/// The sender's latest report of every message, numbered from 1; `None` for a message
/// the sender could not report on.
pub(crate) async fn final_reports(socket: &Path, ids: &[String]) -> Vec<(u64, Option<Value>)> {
    let mut reports = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(WAIT_CHUNK) {
        let request = ControlRequest::Wait {
            ids: chunk.to_vec(),
            timeout_ms: 0,
        };
        let answer = client::request::<Value>(socket, &request, REQUEST_TIMEOUT)
            .await
            .unwrap_or(Value::Null);
        let got = answer["reports"].as_array().cloned().unwrap_or_default();
        for (i, _) in chunk.iter().enumerate() {
            let n = (reports.len() + 1) as u64;
            reports.push((n, got.get(i).cloned()));
        }
    }
    reports
}

/// One fault, with its own random duration; returns once the victim is back.
fn inflict(fleet: &mut Fleet, fault: Fault, rng: &mut Rng) {
    // The sleeps below are how long a fault lasts: the experiment's design, not a wait
    // for something to happen. Each restart then waits until the process is ready.
    match fault {
        Fault::KillTarget | Fault::KillSender => {
            let name = if fault == Fault::KillTarget {
                "target"
            } else {
                "sender"
            };
            fleet.node_mut(name).kill9();
            std::thread::sleep(rng.millis(200, 1_500));
            fleet.node_mut(name).restart();
        }
        Fault::KillBroker => {
            fleet.nats_mut().kill9();
            std::thread::sleep(rng.millis(500, 3_000));
            fleet.nats_mut().restart();
        }
        Fault::FreezeTarget => {
            fleet.node_mut("target").freeze();
            std::thread::sleep(FREEZE_MIN + rng.millis(0, 2_000));
            fleet.node_mut("target").thaw();
        }
    }
}

fn print_figures(
    options: &Options,
    submitted: usize,
    faults: &BTreeMap<Fault, usize>,
    t: &Tally,
    drain: Option<Duration>,
) {
    let fault_counts: serde_json::Map<String, Value> = faults
        .iter()
        .map(|(fault, count)| (fault.name().to_string(), json!(count)))
        .collect();
    if options.json {
        let figures = json!({
            "messages": options.messages,
            "seed": options.seed,
            "faultSecs": options.fault_secs,
            "faults": fault_counts,
            "submitted": submitted,
            "states": t.states,
            "lost": t.lost(),
            "doneNotRun": t.done_not_run,
            "neverFinal": t.never_final,
            "runTwice": t.run_twice,
            "reordered": t.reordered,
            "interruptedThatRan": t.interrupted_that_ran,
            "givenUpThatRan": t.given_up_that_ran,
            "garbled": t.garbled,
            "drainSecs": drain.map(|d| d.as_secs_f64()),
            "examples": t.examples,
            "clean": t.clean(),
        });
        println!("{figures}");
        return;
    }
    let states: Vec<String> = t.states.iter().map(|(s, n)| format!("{s} {n}")).collect();
    let faults: Vec<String> = faults
        .iter()
        .map(|(fault, count)| format!("{} {count}", fault.name()))
        .collect();
    println!(
        "chaos: {} ordered commands sender → target, seed {}, faults for {} s: {}",
        options.messages,
        options.seed,
        options.fault_secs,
        faults.join(", ")
    );
    println!("  submitted            {submitted}");
    println!("  final states         {}", states.join(", "));
    println!(
        "  lost                 {} (done but not run {}, never final {})",
        t.lost(),
        t.done_not_run,
        t.never_final
    );
    println!("  run twice            {}", t.run_twice);
    println!("  reordered            {}", t.reordered);
    println!("  interrupted that ran {}", t.interrupted_that_ran);
    println!("  given up that ran    {}", t.given_up_that_ran);
    println!("  garbled lines        {}", t.garbled);
    for (count, numbers) in &t.examples {
        println!("  e.g. {count}: messages {numbers:?}");
    }
    match drain {
        Some(d) => println!(
            "  drain time           {:.1} s (last fault to all final)",
            d.as_secs_f64()
        ),
        None => println!(
            "  drain time           not settled within {} s",
            options.drain_secs
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(state: &str, outcome: Value) -> Option<Value> {
        Some(json!({"sent": {"state": state, "outcome": outcome}}))
    }

    fn done() -> Option<Value> {
        report("done", json!({"status": "done", "exitCode": 0}))
    }

    #[test]
    fn a_clean_run_counts_nothing() {
        let reports = vec![(1, done()), (2, done()), (3, done())];
        let t = tally(&reports, "1\n2\n3\n");
        assert!(t.clean(), "{t:?}");
        assert_eq!(t.states["done"], 3);
    }

    #[test]
    fn lost_doubled_and_reordered_runs_are_counted() {
        let reports = vec![
            (1, done()),
            (2, done()),
            (3, done()),
            (4, report("sent", Value::Null)),
            (5, None),
        ];
        let t = tally(&reports, "1\n3\n2\n3\nnoise\n");
        assert_eq!(t.done_not_run, 0);
        assert_eq!(t.never_final, 2, "sent and unknown are not final");
        assert_eq!(t.lost(), 2);
        assert_eq!(t.run_twice, 1, "3 twice");
        assert_eq!(
            t.reordered, 1,
            "2 after 3 (the second 3 is doubled, not reordered)"
        );
        assert_eq!(t.garbled, 1);
        assert!(!t.clean());

        let t = tally(&[(1, done()), (2, done())], "2\n");
        assert_eq!((t.done_not_run, t.reordered, t.run_twice), (1, 0, 0));
    }

    #[test]
    fn claims_that_the_file_contradicts_are_counted() {
        let interrupted = |error: &str| {
            report(
                "interrupted",
                json!({"status": "interrupted", "error": error}),
            )
        };
        let given_up = report(
            "failed",
            json!({"status": "failed", "error": "no ACK after 3 tries"}),
        );
        let failed_run = report("failed", json!({"status": "failed", "exitCode": 1}));
        let reports = vec![
            (
                1,
                interrupted(
                    "killed at restart: process group 7 was still running (1 process) after the node stopped; its output was lost",
                ),
            ),
            (
                2,
                interrupted("the command had already exited; its output is lost"),
            ),
            (3, given_up.clone()),
            (4, failed_run),
            (5, report("rejected", json!({"status": "rejected"}))),
            (6, given_up),
            (
                7,
                interrupted(
                    "its process had already ended while the node was down; its output was lost",
                ),
            ),
        ];
        let t = tally(&reports, "1\n2\n3\n4\n5\n7\n");
        assert_eq!(
            t.interrupted_that_ran, 1,
            "only the claim that it did not run"
        );
        assert_eq!(
            t.given_up_that_ran, 2,
            "the give-up and the refusal that ran; not the command that failed by itself, \
             nor the give-up that did not run"
        );
        assert_eq!(t.lost(), 0);
    }

    #[test]
    fn a_seed_replays_the_same_schedule() {
        let schedule = |seed| {
            let mut rng = Rng(seed);
            (0..5)
                .map(|_| (rng.round(), rng.millis(500, 2_000)))
                .collect::<Vec<_>>()
        };
        assert_eq!(schedule(7), schedule(7));
        assert_ne!(schedule(7), schedule(8));
        for (round, gap) in schedule(42) {
            let mut sorted = round;
            sorted.sort();
            assert_eq!(sorted, Fault::ALL, "every fault once a round");
            assert!((500..=2_000).contains(&(gap.as_millis() as u64)));
        }
    }
}
