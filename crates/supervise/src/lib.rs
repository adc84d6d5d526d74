//! Supervised workloads, as supervisord and redpill kept a Mesos agent's services: a
//! command or a container kept running under a restart policy, with exponential backoff,
//! a limit of restarts in a window, a health check, and an escalation when it goes
//! `FATAL` (other workloads stopped, a cleanup command run).
//!
//! # Layout
//! - [`def`]: definitions (YAML or JSON) and their checks.
//! - [`policy`]: the restart arithmetic (pure).
//! - [`instance`]: one running copy: a process group or a container.
//! - this file: [`Supervisor`], one task per workload.
//!
//! # Durability, and never two copies
//! `<dir>/<name>.json` holds a definition, written (temporary file, fsync, rename)
//! before the workload first starts; `<dir>/<name>.state.json` holds what must outlast
//! the node: a stop or `FATAL` that holds, the restarts in the window, the running
//! copy's process group or container. At start the supervisor ends what is left of a
//! recorded process group (commands also die with the node: they are forked through
//! [`bosun_methods::process::Spawner`]) and adopts a workload's running container
//! (labels `org.bosun.workload`, `org.bosun.node`) instead of making another, removing
//! any extra. A stopped or `FATAL` workload stays so across restarts.

pub mod def;
pub mod instance;
pub mod policy;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use def::{WorkloadDef, parse_definition, parse_definitions};
use instance::{Instance, SavedGroup};
use policy::Decision;

/// Where a workload stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum WorkloadState {
    /// Being started.
    Starting,
    /// Running.
    Running,
    /// Ended; waiting out its backoff before the restart.
    Backoff,
    /// Ended, and its policy does not restart it.
    Exited,
    /// Stopped by an operator or an experiment.
    Stopped,
    /// Restarted more often than its limit allows.
    Fatal,
}

/// A workload as `workload ls` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadStatus {
    /// Its name.
    pub name: String,
    /// Where it stands.
    pub state: WorkloadState,
    /// The running command's pid.
    pub pid: Option<u32>,
    /// The running container's id.
    pub container: Option<String>,
    /// Restarts since it was added (or last restarted by an operator).
    pub restarts: u32,
    /// The last health check's verdict, when it has one.
    pub healthy: Option<bool>,
    /// The last exit code (128 + signal for a signal).
    pub last_exit: Option<i32>,
    /// When the state last changed (ms since the epoch).
    pub since: u64,
    /// Why it is in this state.
    pub reason: Option<String>,
}

/// What the supervisor tells the node.
#[derive(Debug, Clone, PartialEq)]
pub enum SupervisorEvent {
    /// A workload changed state.
    State {
        /// The workload.
        name: String,
        /// Before.
        from: WorkloadState,
        /// After.
        to: WorkloadState,
        /// Why.
        reason: String,
    },
    /// A workload went `FATAL`.
    Fatal {
        /// The workload.
        name: String,
        /// Why.
        reason: String,
    },
    /// The escalation of a `FATAL` workload ran.
    Escalated {
        /// The workload.
        name: String,
        /// The workloads it stopped.
        stopped: Vec<String>,
        /// How the cleanup command ended.
        cleanup: Option<String>,
    },
    /// A health verdict changed.
    Health {
        /// The workload.
        name: String,
        /// The verdict.
        healthy: bool,
        /// The check's answer.
        detail: String,
    },
}

/// Why the supervisor refused.
#[derive(Debug, thiserror::Error)]
pub enum SuperviseError {
    /// No such workload.
    #[error("no workload {name} on this node (known: {known})")]
    Unknown {
        /// The name asked for.
        name: String,
        /// The names known.
        known: String,
    },
    /// A definition is wrong.
    #[error("workload {name}: {field}: {reason}")]
    Invalid {
        /// The workload.
        name: String,
        /// The field.
        field: String,
        /// Why.
        reason: String,
    },
    /// A definition is not YAML or JSON of the right shape.
    #[error("workload definition: {reason}")]
    Parse {
        /// Why.
        reason: String,
    },
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The Docker Engine refused.
    #[error("Docker: {0}")]
    Docker(String),
    /// A copy could not be started.
    #[error("workload {name} cannot start: {reason}")]
    Start {
        /// The workload.
        name: String,
        /// Why.
        reason: String,
    },
    /// The workload is not running.
    #[error("workload {name} is not running ({state:?})")]
    NotRunning {
        /// The workload.
        name: String,
        /// Its state.
        state: WorkloadState,
    },
    /// The supervisor has stopped (the node is shutting down).
    #[error("the supervisor has stopped")]
    Stopped,
}

/// What outlasts the node for one workload.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct Saved {
    /// A state that holds across restarts: stopped, `FATAL`, exited.
    held: Option<WorkloadState>,
    /// Restart times in the window.
    restarts: Vec<u64>,
    /// Restarts in all.
    total_restarts: u32,
    /// The running command's group.
    group: Option<SavedGroup>,
    /// The running container.
    container: Option<String>,
}

enum Control {
    Stop(oneshot::Sender<()>),
    Restart(oneshot::Sender<()>),
    Resume(oneshot::Sender<()>),
    Signal(i32, oneshot::Sender<Result<(), SuperviseError>>),
    Remove(oneshot::Sender<()>),
}

struct Slot {
    def: WorkloadDef,
    status: Arc<Mutex<WorkloadStatus>>,
    control: mpsc::UnboundedSender<Control>,
}

struct Shared {
    dir: PathBuf,
    owner: String,
    docker_socket: PathBuf,
    spawner: bosun_methods::process::Spawner,
    events: mpsc::UnboundedSender<SupervisorEvent>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    slots: Mutex<BTreeMap<String, Slot>>,
}

/// The node's supervisor; clones share it.
#[derive(Clone)]
pub struct Supervisor {
    shared: Arc<Shared>,
}

fn now() -> u64 {
    bosun_methods::now_millis()
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Supervisor {
    /// Start supervising every workload defined in `dir`, for node `owner`.
    pub async fn start(
        dir: PathBuf,
        owner: &str,
        docker_socket: PathBuf,
        events: mpsc::UnboundedSender<SupervisorEvent>,
        shutdown: CancellationToken,
        tracker: &TaskTracker,
    ) -> Result<Supervisor, SuperviseError> {
        std::fs::create_dir_all(&dir).map_err(|source| SuperviseError::Io {
            path: dir.clone(),
            source,
        })?;
        let supervisor = Supervisor {
            shared: Arc::new(Shared {
                dir: dir.clone(),
                owner: owner.to_string(),
                docker_socket,
                spawner: Default::default(),
                events,
                shutdown,
                tracker: tracker.clone(),
                slots: Mutex::new(BTreeMap::new()),
            }),
        };
        let entries = std::fs::read_dir(&dir).map_err(|source| SuperviseError::Io {
            path: dir.clone(),
            source,
        })?;
        let mut names: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension().is_some_and(|x| x == "json")
                    && !p.to_string_lossy().ends_with(".state.json")
            })
            .collect();
        names.sort();
        for path in names {
            let text = std::fs::read_to_string(&path).map_err(|source| SuperviseError::Io {
                path: path.clone(),
                source,
            })?;
            let def = match parse_definition(&text) {
                Ok(def) => def,
                Err(e) => {
                    tracing::error!(file = %path.display(), error = %e, "skipping an unreadable workload definition");
                    continue;
                }
            };
            let saved = supervisor.load_saved(&def.name);
            if let Some(group) = &saved.group {
                let group = bosun_methods::process::Group {
                    pgid: group.pgid,
                    start_time: group.start_time,
                    boot_id: group.boot_id.clone(),
                };
                let name = def.name.clone();
                let ended = tokio::task::spawn_blocking(move || {
                    bosun_methods::process::end_leftovers(&group, Duration::from_secs(10))
                })
                .await;
                if let Ok(Ok(left)) = ended {
                    tracing::info!(workload = %name, found = %left, "leftover of the last run");
                }
            }
            supervisor.spawn(def, saved);
        }
        Ok(supervisor)
    }

    fn def_path(&self, name: &str) -> PathBuf {
        self.shared.dir.join(format!("{name}.json"))
    }

    fn state_path(&self, name: &str) -> PathBuf {
        self.shared.dir.join(format!("{name}.state.json"))
    }

    fn load_saved(&self, name: &str) -> Saved {
        std::fs::read(self.state_path(name))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    fn spawn(&self, def: WorkloadDef, saved: Saved) {
        let (tx, rx) = mpsc::unbounded_channel();
        let status = Arc::new(Mutex::new(WorkloadStatus {
            name: def.name.clone(),
            state: saved.held.unwrap_or(WorkloadState::Starting),
            pid: None,
            container: None,
            restarts: saved.total_restarts,
            healthy: None,
            last_exit: None,
            since: now(),
            reason: saved
                .held
                .map(|s| format!("{s:?} before the node restarted")),
        }));
        lock(&self.shared.slots).insert(
            def.name.clone(),
            Slot {
                def: def.clone(),
                status: status.clone(),
                control: tx,
            },
        );
        let task = Task {
            supervisor: self.clone(),
            def,
            status,
            control: rx,
            saved,
        };
        self.shared.tracker.spawn(task.run());
    }

    /// Supervise `def`, durably. The same definition again changes nothing; another
    /// definition under a known name replaces it.
    pub async fn add(&self, def: WorkloadDef) -> Result<WorkloadStatus, SuperviseError> {
        def.check()?;
        let existing = lock(&self.shared.slots)
            .get(&def.name)
            .map(|s| s.def.clone());
        match existing {
            Some(old) if old == def => return self.status(&def.name),
            Some(_) => self.remove(&def.name).await?,
            None => {}
        }
        let bytes = serde_json::to_vec_pretty(&def).map_err(|e| SuperviseError::Parse {
            reason: e.to_string(),
        })?;
        write_atomic(&self.def_path(&def.name), &bytes)?;
        let _ = std::fs::remove_file(self.state_path(&def.name));
        let name = def.name.clone();
        self.spawn(def, Saved::default());
        // Answer once the first start has been tried.
        for _ in 0..500 {
            let status = self.status(&name)?;
            if status.state != WorkloadState::Starting {
                return Ok(status);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.status(&name)
    }

    /// Stop a workload and forget it.
    pub async fn remove(&self, name: &str) -> Result<(), SuperviseError> {
        self.ask(name, Control::Remove).await?;
        lock(&self.shared.slots).remove(name);
        for path in [self.def_path(name), self.state_path(name)] {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(SuperviseError::Io { path, source }),
            }
        }
        Ok(())
    }

    /// Restart a workload now, clearing `FATAL`, a stop and its restart window.
    pub async fn restart(&self, name: &str) -> Result<WorkloadStatus, SuperviseError> {
        self.ask(name, Control::Restart).await?;
        self.status(name)
    }

    /// Start a stopped workload again.
    pub async fn resume(&self, name: &str) -> Result<WorkloadStatus, SuperviseError> {
        self.ask(name, Control::Resume).await?;
        self.status(name)
    }

    /// Stop a workload; it is not restarted until `restart` or `resume`.
    pub async fn stop(&self, name: &str) -> Result<(), SuperviseError> {
        self.ask(name, Control::Stop).await
    }

    /// Send `signal` to a running workload; its policy handles the exit that follows.
    pub async fn signal(&self, name: &str, signal: i32) -> Result<(), SuperviseError> {
        let control = self.control(name)?;
        let (tx, rx) = oneshot::channel();
        control
            .send(Control::Signal(signal, tx))
            .map_err(|_| SuperviseError::Stopped)?;
        rx.await.map_err(|_| SuperviseError::Stopped)?
    }

    async fn ask(
        &self,
        name: &str,
        make: impl FnOnce(oneshot::Sender<()>) -> Control,
    ) -> Result<(), SuperviseError> {
        let control = self.control(name)?;
        let (tx, rx) = oneshot::channel();
        control
            .send(make(tx))
            .map_err(|_| SuperviseError::Stopped)?;
        rx.await.map_err(|_| SuperviseError::Stopped)
    }

    fn control(&self, name: &str) -> Result<mpsc::UnboundedSender<Control>, SuperviseError> {
        let slots = lock(&self.shared.slots);
        slots
            .get(name)
            .map(|s| s.control.clone())
            .ok_or_else(|| SuperviseError::Unknown {
                name: name.to_string(),
                known: known(&slots),
            })
    }

    fn status(&self, name: &str) -> Result<WorkloadStatus, SuperviseError> {
        let slots = lock(&self.shared.slots);
        slots
            .get(name)
            .map(|s| lock(&s.status).clone())
            .ok_or_else(|| SuperviseError::Unknown {
                name: name.to_string(),
                known: known(&slots),
            })
    }

    /// Every workload, by name.
    pub fn list(&self) -> Vec<WorkloadStatus> {
        lock(&self.shared.slots)
            .values()
            .map(|s| lock(&s.status).clone())
            .collect()
    }

    fn emit(&self, event: SupervisorEvent) {
        let _ = self.shared.events.send(event);
    }
}

fn known(slots: &BTreeMap<String, Slot>) -> String {
    if slots.is_empty() {
        "none".into()
    } else {
        slots.keys().cloned().collect::<Vec<_>>().join(", ")
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), SuperviseError> {
    use std::io::Write;
    let io = |source| SuperviseError::Io {
        path: path.to_path_buf(),
        source,
    };
    let temp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&temp).map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&temp, path).map_err(io)?;
    if let Some(dir) = path.parent()
        && let Ok(d) = std::fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Why a running copy stopped being watched.
enum Ended {
    /// It exited with this code.
    Exited(Option<i32>),
    /// Its health check failed `retries` times in a row.
    Unhealthy(String),
    /// It could not be started.
    NotStarted(String),
}

/// What a control message asks of the task's loop.
enum Next {
    /// Go on with what it was doing.
    Continue,
    /// Start a copy now.
    Run,
    /// Hold (stopped).
    Hold,
    /// End the task.
    End,
}

struct Task {
    supervisor: Supervisor,
    def: WorkloadDef,
    status: Arc<Mutex<WorkloadStatus>>,
    control: mpsc::UnboundedReceiver<Control>,
    saved: Saved,
}

impl Task {
    fn name(&self) -> &str {
        &self.def.name
    }

    fn set(&self, to: WorkloadState, reason: &str, instance: Option<&Instance>) {
        let from = {
            let mut s = lock(&self.status);
            let from = s.state;
            s.state = to;
            s.since = now();
            s.reason = (!reason.is_empty()).then(|| reason.to_string());
            s.pid = instance.and_then(|i| i.kind.pid());
            s.container = instance.and_then(|i| i.kind.container());
            s.restarts = self.saved.total_restarts;
            if to != WorkloadState::Running {
                s.healthy = None;
            }
            from
        };
        if from != to {
            tracing::info!(workload = %self.name(), from = ?from, to = ?to, reason, "workload");
            self.supervisor.emit(SupervisorEvent::State {
                name: self.name().to_string(),
                from,
                to,
                reason: reason.to_string(),
            });
        }
    }

    fn persist(&self) {
        let path = self.supervisor.state_path(self.name());
        match serde_json::to_vec(&self.saved) {
            Ok(bytes) => {
                if let Err(e) = write_atomic(&path, &bytes) {
                    tracing::error!(workload = %self.name(), error = %e, "cannot keep the workload's state");
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot encode the workload's state"),
        }
    }

    /// Answer a control message while no copy runs.
    fn idle_control(&mut self, c: Option<Control>) -> Next {
        match c {
            None => Next::End,
            Some(Control::Restart(ack)) => {
                self.saved.held = None;
                self.saved.restarts.clear();
                self.persist();
                let _ = ack.send(());
                Next::Run
            }
            Some(Control::Resume(ack)) => {
                let _ = ack.send(());
                if self.saved.held == Some(WorkloadState::Stopped) {
                    self.saved.held = None;
                    self.persist();
                    Next::Run
                } else {
                    Next::Continue
                }
            }
            Some(Control::Stop(ack)) => {
                self.saved.held = Some(WorkloadState::Stopped);
                self.persist();
                self.set(WorkloadState::Stopped, "stopped", None);
                let _ = ack.send(());
                Next::Hold
            }
            Some(Control::Signal(_, ack)) => {
                let state = lock(&self.status).state;
                let _ = ack.send(Err(SuperviseError::NotRunning {
                    name: self.name().to_string(),
                    state,
                }));
                Next::Continue
            }
            Some(Control::Remove(ack)) => {
                let _ = ack.send(());
                Next::End
            }
        }
    }

    async fn run(mut self) {
        let shutdown = self.supervisor.shared.shutdown.clone();
        let mut want_run = self.saved.held.is_none();
        loop {
            if !want_run {
                let c = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    c = self.control.recv() => c,
                };
                match self.idle_control(c) {
                    Next::End => {
                        self.remove_leftover_container().await;
                        return;
                    }
                    Next::Run => want_run = true,
                    Next::Continue | Next::Hold => {}
                }
                continue;
            }
            self.set(WorkloadState::Starting, "", None);
            let start = instance::start(
                &self.def,
                &self.supervisor.shared.owner,
                &self.supervisor.shared.spawner,
                &self.supervisor.shared.docker_socket,
            );
            let started = if self.def.container.is_some() {
                // A Docker daemon that never answers would hold the start for the
                // request timeout; a shutdown does not wait for it. A container made
                // meanwhile carries its labels and is adopted at the next start.
                tokio::select! {
                    started = start => started,
                    _ = shutdown.cancelled() => return,
                }
            } else {
                // A command starts at once, and its process is recorded before the
                // copy is watched: nothing to race.
                start.await
            };
            let ended = match started {
                Err(e) => Ended::NotStarted(e.to_string()),
                Ok(mut copy) => {
                    self.saved.group = match &copy.kind {
                        instance::Kind::Process(g) => Some(g.clone()),
                        instance::Kind::Container { .. } => None,
                    };
                    self.saved.container = copy.kind.container();
                    self.persist();
                    self.set(WorkloadState::Running, "", Some(&copy));
                    match self.watch(&mut copy, &shutdown).await {
                        Some(ended) => ended,
                        None => return,
                    }
                }
            };
            if matches!(ended, Ended::Exited(Some(RESTART_NOW))) {
                continue;
            }
            let (code, reason) = match &ended {
                Ended::Exited(code) => (
                    *code,
                    match code {
                        Some(c) if *c > 128 => format!("killed by signal {}", c - 128),
                        Some(c) => format!("exited with code {c}"),
                        None => "ended".to_string(),
                    },
                ),
                Ended::Unhealthy(why) => (None, format!("unhealthy: {why}")),
                Ended::NotStarted(why) => (None, format!("cannot start: {why}")),
            };
            lock(&self.status).last_exit = code;
            self.saved.group = None;
            let restart = !matches!(
                (&ended, self.def.restart),
                (_, def::Policy::Never) | (Ended::Exited(Some(0)), def::Policy::OnFailure)
            );
            if !restart {
                self.saved.held = Some(WorkloadState::Exited);
                self.persist();
                self.set(WorkloadState::Exited, &reason, None);
                want_run = false;
                continue;
            }
            match policy::decide(
                &mut self.saved.restarts,
                &self.def.limit,
                &self.def.backoff,
                now(),
            ) {
                Decision::Fatal => {
                    self.saved.held = Some(WorkloadState::Fatal);
                    self.persist();
                    let why = format!(
                        "{reason}; more than {} restarts within {} s",
                        self.def.limit.restarts, self.def.limit.within_secs
                    );
                    self.set(WorkloadState::Fatal, &why, None);
                    self.supervisor.emit(SupervisorEvent::Fatal {
                        name: self.name().to_string(),
                        reason: why,
                    });
                    self.escalate().await;
                    want_run = false;
                }
                Decision::Restart { after, .. } => {
                    self.saved.total_restarts += 1;
                    self.persist();
                    self.set(
                        WorkloadState::Backoff,
                        &format!("{reason}; restarting in {} ms", after.as_millis()),
                        None,
                    );
                    let sleep = tokio::time::sleep(after);
                    tokio::pin!(sleep);
                    loop {
                        let c = tokio::select! {
                            _ = shutdown.cancelled() => return,
                            _ = &mut sleep => break,
                            c = self.control.recv() => c,
                        };
                        match self.idle_control(c) {
                            Next::End => return,
                            Next::Run => break,
                            Next::Hold => {
                                want_run = false;
                                break;
                            }
                            Next::Continue => {}
                        }
                    }
                }
            }
        }
    }

    /// Watch a running copy until it ends, fails its health check or is told to stop.
    /// `None`: the task ends (removed, or the node is shutting down).
    async fn watch(&mut self, copy: &mut Instance, shutdown: &CancellationToken) -> Option<Ended> {
        let health = self.def.health.clone();
        let name = self.name().to_string();
        let status = self.status.clone();
        let events = self.supervisor.shared.events.clone();
        let checks = async move {
            let Some(h) = health else {
                return std::future::pending::<String>().await;
            };
            let started = tokio::time::Instant::now();
            let mut failures = 0u32;
            let mut interval = tokio::time::interval(Duration::from_secs_f64(h.interval_secs));
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                interval.tick().await;
                let verdict = instance::check(&h).await;
                let grace = started.elapsed() < Duration::from_secs_f64(h.start_period_secs);
                let healthy = verdict.is_ok();
                let changed = {
                    let mut s = lock(&status);
                    let was = s.healthy;
                    if healthy || !grace {
                        s.healthy = Some(healthy);
                    }
                    (healthy || !grace) && was != Some(healthy)
                };
                if changed {
                    let detail = verdict
                        .clone()
                        .err()
                        .map(|e| e.0)
                        .unwrap_or_else(|| "ok".into());
                    tracing::info!(workload = %name, healthy, detail, "workload health");
                    let _ = events.send(SupervisorEvent::Health {
                        name: name.clone(),
                        healthy,
                        detail,
                    });
                }
                match verdict {
                    Ok(()) => failures = 0,
                    Err(_) if grace => {}
                    Err(why) => {
                        failures += 1;
                        if failures >= h.retries {
                            return format!("{why} ({failures} checks in a row)");
                        }
                    }
                }
            }
        };
        tokio::pin!(checks);
        loop {
            tokio::select! {
                code = &mut copy.exit => return Some(Ended::Exited(code)),
                why = &mut checks => {
                    instance::stop(copy).await;
                    return Some(Ended::Unhealthy(why));
                }
                c = self.control.recv() => match c {
                    Some(Control::Stop(ack)) => {
                        instance::stop(copy).await;
                        self.saved.held = Some(WorkloadState::Stopped);
                        self.saved.group = None;
                        self.persist();
                        self.set(WorkloadState::Stopped, "stopped", None);
                        let _ = ack.send(());
                        // Held until restart or resume.
                        loop {
                            let c = tokio::select! {
                                _ = shutdown.cancelled() => return None,
                                c = self.control.recv() => c,
                            };
                            match self.idle_control(c) {
                                Next::End => {
                                    instance::remove(&copy.kind).await;
                                    return None;
                                }
                                Next::Run => return self.restart_now(),
                                Next::Continue | Next::Hold => {}
                            }
                        }
                    }
                    Some(Control::Restart(ack)) => {
                        instance::stop(copy).await;
                        self.saved.restarts.clear();
                        self.saved.held = None;
                        self.persist();
                        let _ = ack.send(());
                        return self.restart_now();
                    }
                    Some(Control::Resume(ack)) => { let _ = ack.send(()); }
                    Some(Control::Signal(sig, ack)) => {
                        let _ = ack.send(instance::signal(&copy.kind, sig).await);
                    }
                    Some(Control::Remove(ack)) => {
                        instance::stop(copy).await;
                        instance::remove(&copy.kind).await;
                        let _ = ack.send(());
                        return None;
                    }
                    None => return None,
                },
                _ = shutdown.cancelled() => {
                    // Commands die with the node; containers are Docker's to keep, and
                    // the next start adopts them.
                    if let instance::Kind::Process(_) = copy.kind {
                        instance::stop(copy).await;
                    }
                    return None;
                }
            }
        }
    }

    /// An operator's restart: start again at once, without counting a restart.
    fn restart_now(&self) -> Option<Ended> {
        Some(Ended::Exited(Some(RESTART_NOW)))
    }

    async fn remove_leftover_container(&self) {
        if self.def.container.is_some()
            && let Ok(docker) = instance::docker(&self.supervisor.shared.docker_socket).await
            && let Ok(ours) =
                instance::ours(&docker, &self.supervisor.shared.owner, self.name()).await
        {
            for (id, _) in ours {
                instance::remove(&instance::Kind::Container {
                    id,
                    docker: docker.clone(),
                })
                .await;
            }
        }
    }

    /// Stop the workloads the escalation names and run its cleanup command.
    async fn escalate(&self) {
        let Some(escalation) = self.def.escalation.clone() else {
            return;
        };
        let mut stopped = Vec::new();
        for other in &escalation.stop {
            match self.supervisor.stop(other).await {
                Ok(()) => stopped.push(other.clone()),
                Err(e) => {
                    tracing::warn!(workload = %self.name(), other, error = %e, "escalation cannot stop a workload")
                }
            }
        }
        let cleanup = match &escalation.cleanup {
            None => None,
            Some(argv) => {
                let mut command = bosun_methods::process::Launch::new(&argv[0]);
                command.args(&argv[1..]).kill_on_drop(true);
                Some(match self.supervisor.shared.spawner.spawn(command).await {
                    Err(e) => format!("cannot start {}: {e}", argv[0]),
                    Ok(mut child) => {
                        match tokio::time::timeout(Duration::from_secs(30), child.wait()).await {
                            Ok(Ok(status)) => format!("{} ended: {status}", argv.join(" ")),
                            Ok(Err(e)) => format!("{}: {e}", argv.join(" ")),
                            Err(_) => {
                                let _ = child.kill().await;
                                format!("{} killed after 30 s", argv.join(" "))
                            }
                        }
                    }
                })
            }
        };
        tracing::warn!(workload = %self.name(), ?stopped, ?cleanup, "workload FATAL: escalation ran");
        self.supervisor.emit(SupervisorEvent::Escalated {
            name: self.name().to_string(),
            stopped,
            cleanup,
        });
    }
}

/// The exit code the task gives itself for an operator's restart.
const RESTART_NOW: i32 = i32::MIN;
