//! The node's half of an experiment: it keeps the events it was given in the lease
//! book, fires each on its own clock, and undoes each fault when its lease ends,
//! whatever became of the controller.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::ChaosError;
use crate::book::{self, Entry, EntryState, Undo};
use crate::fault::{ContainerEvent, Faults};
use crate::plan::{Plan, PlannedEvent, Target};
use crate::scenario::{Action, ActsOn};

/// An event that reaches its node (or finds it up) later than this after its time is
/// recorded as missed, not fired late: a late fault would break the timeline.
pub const LATE_LIMIT_MS: u64 = 1000;

/// A record for the node's event stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The container concerned (its id), if any.
    pub container: Option<String>,
    /// The text.
    pub text: String,
    /// True for a mark (the `MARK` topic), else an event.
    pub mark: bool,
}

/// Where records go.
pub type Sink = Arc<dyn Fn(Record) + Send + Sync>;

/// What `chaosSchedule` answers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Scheduled {
    /// Events newly kept.
    pub scheduled: usize,
    /// Events already kept (the message came again).
    pub already: usize,
    /// Events that came too late to fire.
    pub missed: usize,
}

/// What `chaosList` answers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Listing {
    /// The node.
    pub node: String,
    /// Its events of the experiment.
    pub entries: Vec<Entry>,
    /// What Docker says happened to the containers they touched, from a second before
    /// the first event to a second after the last lease (or now).
    pub container_events: Vec<ContainerEvent>,
    /// Why the container events are missing, if they are.
    pub container_events_error: Option<String>,
}

struct Inner {
    node: String,
    dir: PathBuf,
    faults: Faults,
    sink: Sink,
    book: Mutex<Vec<Entry>>,
    /// Events being applied or undone right now.
    busy: Mutex<HashSet<(String, String)>>,
    wake: Notify,
    /// Orders saves: a save never overwrites a newer one.
    saving: tokio::sync::Mutex<u64>,
    version: std::sync::atomic::AtomicU64,
}

/// The running engine; clones share it.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

fn now() -> u64 {
    bosun_methods::now_millis()
}

impl Engine {
    /// Load the lease book from `dir` and start firing and undoing. Faults applied
    /// before a restart whose lease has ended are undone at once; the others resume.
    pub fn start(
        node: &str,
        dir: PathBuf,
        faults: Faults,
        sink: Sink,
        shutdown: CancellationToken,
        tracker: &TaskTracker,
    ) -> Result<Engine, ChaosError> {
        let entries = book::load(&dir, now())?;
        let resumed = entries
            .iter()
            .filter(|e| e.state == EntryState::Applied)
            .count();
        if resumed > 0 {
            tracing::info!(
                resumed,
                "chaos: faults from before the restart are held until their lease ends"
            );
        }
        let engine = Engine {
            inner: Arc::new(Inner {
                node: node.to_string(),
                dir,
                faults,
                sink,
                book: Mutex::new(entries),
                busy: Mutex::new(HashSet::new()),
                wake: Notify::new(),
                saving: tokio::sync::Mutex::new(0),
                version: std::sync::atomic::AtomicU64::new(0),
            }),
        };
        let runner = engine.clone();
        let inner_tracker = tracker.clone();
        tracker.spawn(async move { runner.run(shutdown, inner_tracker).await });
        Ok(engine)
    }

    fn book(&self) -> MutexGuard<'_, Vec<Entry>> {
        self.inner
            .book
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Keep this node's events of `plan`. Refuses the whole plan when an event is for
    /// another node or cannot be applied on this host. A plan given twice is kept once.
    pub async fn schedule(&self, plan: &Plan) -> Result<Scheduled, ChaosError> {
        let start = plan.start_at.ok_or_else(|| ChaosError::Refused {
            reason: "the plan has no start time (a dry run's plan cannot be scheduled)".into(),
        })?;
        for event in &plan.events {
            crate::scenario::check_action(&format!("event {}", event.id), &event.action)?;
            let fits = matches!(
                (event.action.acts_on(), &event.target),
                (ActsOn::Container, Target::Container(_))
                    | (ActsOn::Workload, Target::Workload(_))
                    | (ActsOn::ContainerOrNode, Target::Container(_) | Target::Node)
                    | (ActsOn::Node, Target::Node)
            );
            if !fits {
                return Err(ChaosError::Refused {
                    reason: format!(
                        "event {}: {} cannot act on {}",
                        event.id,
                        event.action.name(),
                        event.target
                    ),
                });
            }
            if event.node != self.inner.node {
                return Err(ChaosError::Refused {
                    reason: format!(
                        "event {} is for node {}, not this node ({})",
                        event.id, event.node, self.inner.node
                    ),
                });
            }
            self.inner
                .faults
                .check(event)
                .await
                .map_err(|e| ChaosError::Refused {
                    reason: e.to_string(),
                })?;
        }
        let mut answer = Scheduled::default();
        let now = now();
        {
            let mut book = self.book();
            for event in &plan.events {
                if book
                    .iter()
                    .any(|e| e.experiment == plan.experiment && e.event.id == event.id)
                {
                    answer.already += 1;
                    continue;
                }
                let at = start + event.offset_ms;
                let lease_end = event.lease_ms.map(|l| at + l);
                let late = now.saturating_sub(at);
                let (state, error) = if late > LATE_LIMIT_MS {
                    answer.missed += 1;
                    (
                        EntryState::Missed,
                        Some(format!("reached the node {late} ms after its time")),
                    )
                } else {
                    answer.scheduled += 1;
                    (EntryState::Pending, None)
                };
                book.push(Entry {
                    experiment: plan.experiment.clone(),
                    event: event.clone(),
                    at,
                    lease_end,
                    state,
                    fired_at: None,
                    applied_at: None,
                    undone_at: None,
                    error,
                    undo: Undo::default(),
                });
            }
        }
        self.save().await?;
        self.inner.wake.notify_one();
        tracing::info!(
            experiment = %plan.experiment,
            scheduled = answer.scheduled,
            missed = answer.missed,
            "chaos: events kept"
        );
        Ok(answer)
    }

    /// Drop the pending events of `experiment` (`*`: every experiment) and undo its
    /// applied faults now. Returns its entries afterwards.
    pub async fn abort(&self, experiment: &str) -> Result<Vec<Entry>, ChaosError> {
        let matches = |e: &Entry| experiment == "*" || e.experiment == experiment;
        let applied: Vec<Entry> = {
            let mut book = self.book();
            let now = now();
            for e in book.iter_mut().filter(|e| matches(e)) {
                if e.state == EntryState::Pending {
                    e.state = EntryState::Aborted;
                    e.undone_at = Some(now);
                }
            }
            book.iter()
                .filter(|e| matches(e) && e.state == EntryState::Applied)
                .cloned()
                .collect()
        };
        self.save().await?;
        let mut undos = Vec::new();
        for entry in applied {
            let engine = self.clone();
            undos.push(tokio::spawn(async move { engine.undo(entry).await }));
        }
        for undo in undos {
            let _ = undo.await;
        }
        Ok(self.list(experiment))
    }

    /// The entries of `experiment` (`*`: all), by time.
    pub fn list(&self, experiment: &str) -> Vec<Entry> {
        let mut out: Vec<Entry> = self
            .book()
            .iter()
            .filter(|e| experiment == "*" || e.experiment == experiment)
            .cloned()
            .collect();
        out.sort_by(|a, b| (a.at, &a.event.id).cmp(&(b.at, &b.event.id)));
        out
    }

    /// [`Engine::list`] with what Docker says happened to the containers involved.
    pub async fn listing(&self, experiment: &str) -> Listing {
        let entries = self.list(experiment);
        let mut containers: Vec<String> = entries
            .iter()
            .filter_map(|e| match &e.event.target {
                Target::Container(name) => Some(name.clone()),
                _ => None,
            })
            .collect();
        containers.sort();
        containers.dedup();
        let since = entries
            .iter()
            .map(|e| e.at)
            .min()
            .unwrap_or(0)
            .saturating_sub(1000);
        let until = entries
            .iter()
            .map(|e| {
                e.undone_at
                    .or(e.lease_end)
                    .unwrap_or(e.at)
                    .max(e.applied_at.unwrap_or(0))
            })
            .max()
            .unwrap_or(0)
            + 1000;
        let (container_events, container_events_error) = match self
            .inner
            .faults
            .container_events(&containers, since, until)
            .await
        {
            Ok(events) => (events, None),
            Err(e) => (Vec::new(), Some(e.to_string())),
        };
        Listing {
            node: self.inner.node.clone(),
            entries,
            container_events,
            container_events_error,
        }
    }

    async fn run(self, shutdown: CancellationToken, tracker: TaskTracker) {
        loop {
            let now = now();
            let mut next: Option<u64> = None;
            let mut fire = Vec::new();
            let mut undo = Vec::new();
            let mut missed = false;
            {
                let mut book = self.book();
                let busy = self
                    .inner
                    .busy
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                for e in book.iter_mut() {
                    let key = (e.experiment.clone(), e.event.id.clone());
                    if busy.contains(&key) {
                        continue;
                    }
                    match e.state {
                        EntryState::Pending if now > e.at + LATE_LIMIT_MS => {
                            e.state = EntryState::Missed;
                            e.error = Some(format!(
                                "the node was not up at its time (now {} ms late)",
                                now - e.at
                            ));
                            missed = true;
                        }
                        EntryState::Pending if now >= e.at => fire.push(e.clone()),
                        EntryState::Pending => next = Some(next.map_or(e.at, |n| n.min(e.at))),
                        EntryState::Applied => match e.lease_end {
                            Some(end) if now >= end => undo.push(e.clone()),
                            Some(end) => next = Some(next.map_or(end, |n| n.min(end))),
                            None => {}
                        },
                        _ => {}
                    }
                }
            }
            if missed {
                let _ = self.save().await;
            }
            for entry in fire {
                self.mark_busy(&entry);
                let engine = self.clone();
                tracker.spawn(async move { engine.fire(entry).await });
            }
            for entry in undo {
                self.mark_busy(&entry);
                let engine = self.clone();
                tracker.spawn(async move { engine.undo(entry).await });
            }
            let wait =
                next.map(|n| Duration::from_millis(n.saturating_sub(bosun_methods::now_millis())));
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.inner.wake.notified() => {}
                _ = async {
                    match wait {
                        Some(w) => tokio::time::sleep(w).await,
                        None => std::future::pending().await,
                    }
                } => {}
            }
        }
    }

    fn mark_busy(&self, e: &Entry) {
        self.inner
            .busy
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert((e.experiment.clone(), e.event.id.clone()));
    }

    fn unbusy(&self, e: &Entry) {
        self.inner
            .busy
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&(e.experiment.clone(), e.event.id.clone()));
        self.inner.wake.notify_one();
    }

    fn update(&self, entry: &Entry, change: impl FnOnce(&mut Entry)) -> Option<Entry> {
        let mut book = self.book();
        let e = book
            .iter_mut()
            .find(|e| e.experiment == entry.experiment && e.event.id == entry.event.id)?;
        change(e);
        Some(e.clone())
    }

    async fn fire(&self, entry: Entry) {
        let fired = now();
        let result = self
            .inner
            .faults
            .apply(&entry.experiment, &entry.event, entry.lease_end)
            .await;
        let applied = now();
        let updated = self.update(&entry, |e| {
            e.fired_at = Some(fired);
            match &result {
                Ok(undo) => {
                    e.applied_at = Some(applied);
                    e.undo = undo.clone();
                    e.state = if e.lease_end.is_some() {
                        EntryState::Applied
                    } else {
                        EntryState::Done
                    };
                }
                Err(err) => {
                    e.state = EntryState::Failed;
                    e.error = Some(err.to_string());
                }
            }
        });
        let _ = self.save().await;
        if let Some(e) = updated {
            self.record(&e, "apply");
        }
        self.unbusy(&entry);
    }

    async fn undo(&self, entry: Entry) {
        let result = self
            .inner
            .faults
            .undo(&entry.experiment, &entry.event, &entry.undo)
            .await;
        let done = now();
        let updated = self.update(&entry, |e| {
            if e.state != EntryState::Applied {
                return;
            }
            e.state = EntryState::Undone;
            e.undone_at = Some(done);
            if let Err(err) = &result {
                e.error = Some(format!("undo: {err}"));
            }
        });
        let _ = self.save().await;
        if let Some(e) = updated {
            self.record(&e, "undo");
        }
        self.unbusy(&entry);
    }

    fn record(&self, e: &Entry, step: &str) {
        if let Action::Mark { text } = &e.event.action {
            if e.state == EntryState::Done {
                (self.inner.sink)(Record {
                    container: None,
                    text: text.clone(),
                    mark: true,
                });
            }
            return;
        }
        let (time, planned) = match step {
            "apply" => (e.fired_at.unwrap_or(0), e.at),
            _ => (e.undone_at.unwrap_or(0), e.lease_end.unwrap_or(e.at)),
        };
        let mut text = format!(
            "chaos {step} experiment={} event={} action={} target={} state={:?} planned={} late={}ms",
            e.experiment,
            e.event.id,
            e.event.action.name(),
            target_word(&e.event.target),
            e.state,
            bosun_methods::clock::rfc3339_millis(planned),
            time.saturating_sub(planned),
        );
        if let Some(end) = e.lease_end.filter(|_| step == "apply") {
            text.push_str(&format!(
                " leaseEnd={}",
                bosun_methods::clock::rfc3339_millis(end)
            ));
        }
        if let Some(err) = &e.error {
            text.push_str(&format!(" error={err:?}"));
        }
        (self.inner.sink)(Record {
            container: e.undo.container_id.clone(),
            text,
            mark: false,
        });
    }

    async fn save(&self) -> Result<(), ChaosError> {
        use std::sync::atomic::Ordering;
        let (bytes, version) = {
            let book = self.book();
            let version = self.inner.version.fetch_add(1, Ordering::SeqCst) + 1;
            let bytes = serde_json::to_vec(&*book).map_err(|e| ChaosError::Book {
                path: book::path(&self.inner.dir),
                reason: e.to_string(),
            })?;
            (bytes, version)
        };
        let mut saved = self.inner.saving.lock().await;
        if *saved >= version {
            return Ok(());
        }
        let dir = self.inner.dir.clone();
        let result = tokio::task::spawn_blocking(move || book::save(&dir, &bytes))
            .await
            .map_err(|e| ChaosError::Book {
                path: book::path(&self.inner.dir),
                reason: e.to_string(),
            })?;
        if let Err(e) = &result {
            tracing::error!(error = %e, "chaos: cannot write the lease book");
        }
        *saved = version;
        result
    }
}

fn target_word(target: &Target) -> String {
    match target {
        Target::Node => "node".into(),
        Target::Container(n) => format!("container:{n}"),
        Target::Workload(n) => format!("workload:{n}"),
    }
}

/// The events of `plan` for `node`, with the plan's header: what one node is sent.
pub fn for_node(plan: &Plan, node: &str) -> Plan {
    Plan {
        events: plan
            .events
            .iter()
            .filter(|e| e.node == node)
            .cloned()
            .collect::<Vec<PlannedEvent>>(),
        ..plan.clone()
    }
}
