//! Applying and undoing one fault on this host, with the tools the host has.
//!
//! - Containers: the Docker Engine API (kill, stop, start, restart, pause, unpause;
//!   stress processes through `exec`).
//! - Network, inside the container's network namespace (`nsenter -t PID -n`), or the
//!   node's own for a node target: `iptables` rules for partitions and loss (the
//!   `statistic` match), each tagged with a comment naming the experiment and event so
//!   the undo removes exactly those, and each carrying `-m time --datestop` at its lease
//!   end, so the kernel stops applying it then even if no bosun is left to remove it;
//!   `tc tbf` for bandwidth, `tc netem` for delay only where the kernel has netem (probed
//!   in a throwaway namespace; refused otherwise, never faked).
//! - CPU and memory pressure: `sh` loops started in the container, which end by
//!   themselves at the lease end; the undo kills them earlier when asked.
//! - Supervised workloads: through [`Workloads`], given by the node.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bollard::Docker;
use bollard::exec::{CreateExecOptions, StartExecOptions};
use bollard::query_parameters::{
    EventsOptionsBuilder, KillContainerOptions, RestartContainerOptions, StopContainerOptions,
};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::process::Command;

use crate::book::Undo;
use crate::plan::{PlannedEvent, Target};
use crate::scenario::{Action, signal_number};

/// The handle `tc` qdiscs get, so the undo removes only bosun's.
const QDISC_HANDLE: &str = "b05:";

/// What the node's supervisor does for faults on workloads.
#[async_trait::async_trait]
pub trait Workloads: Send + Sync {
    /// Send `signal` to the workload.
    async fn signal(&self, name: &str, signal: i32) -> Result<(), WorkloadError>;
    /// Stop it, without restarting it.
    async fn stop(&self, name: &str) -> Result<(), WorkloadError>;
    /// Start a stopped workload again.
    async fn resume(&self, name: &str) -> Result<(), WorkloadError>;
}

/// Why the supervisor refused a fault.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct WorkloadError(pub String);

/// Why a fault could not be applied or undone.
#[derive(Debug, thiserror::Error)]
pub enum FaultError {
    /// The Docker Engine refused or could not be reached.
    #[error("Docker: {0}")]
    Docker(String),
    /// A command (iptables, tc, nsenter) failed.
    #[error("`{command}` failed: {reason}")]
    Command {
        /// The command line.
        command: String,
        /// Its error output, or why it did not run.
        reason: String,
    },
    /// This host cannot apply the fault.
    #[error("{0}")]
    Unsupported(String),
    /// The supervisor refused.
    #[error("workload {name}: {reason}")]
    Workload {
        /// The workload.
        name: String,
        /// Why.
        reason: String,
    },
    /// The event does not fit its target.
    #[error("{0}")]
    Invalid(String),
}

/// One container state change, as Docker reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerEvent {
    /// When (ms since the epoch).
    pub at: u64,
    /// The container's name.
    pub container: String,
    /// Docker's action: `kill`, `die`, `start`, `pause`, `unpause`, `stop`, …
    pub action: String,
}

/// Applies and undoes faults on this host.
pub struct Faults {
    docker_socket: PathBuf,
    docker: tokio::sync::OnceCell<Docker>,
    workloads: Option<Arc<dyn Workloads>>,
    netem: tokio::sync::OnceCell<bool>,
}

/// Where a network fault goes.
#[derive(Debug, Clone, Copy)]
enum Netns {
    /// The node's own namespace.
    Own,
    /// The namespace of this process (a container's init).
    Of(u32),
}

impl Faults {
    /// Faults through the Docker socket at `docker_socket` and the node's supervisor.
    pub fn new(docker_socket: PathBuf, workloads: Option<Arc<dyn Workloads>>) -> Faults {
        Faults {
            docker_socket,
            docker: tokio::sync::OnceCell::new(),
            workloads,
            netem: tokio::sync::OnceCell::new(),
        }
    }

    async fn docker(&self) -> Result<&Docker, FaultError> {
        self.docker
            .get_or_try_init(|| async {
                bosun_methods::docker::engine::connect(&self.docker_socket, Duration::from_secs(60))
                    .await
                    .map_err(|e| FaultError::Docker(e.to_string()))
            })
            .await
    }

    /// True when this host's kernel has `tc netem`, found by trying it in a throwaway
    /// network namespace (once).
    pub async fn has_netem(&self) -> bool {
        *self
            .netem
            .get_or_init(|| async {
                let out = Command::new("unshare")
                    .args([
                        "--net", "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms",
                    ])
                    .output()
                    .await;
                matches!(out, Ok(o) if o.status.success())
            })
            .await
    }

    /// Refuse now what this host can never apply (delay without netem).
    pub async fn check(&self, event: &PlannedEvent) -> Result<(), FaultError> {
        if matches!(event.action, Action::Delay { .. }) && !self.has_netem().await {
            return Err(FaultError::Unsupported(format!(
                "event {}: delay needs `tc netem` (the sch_netem kernel module), which this host's kernel does not have; bosun refuses it rather than pretend. Use loss or bandwidth here, or run the delay on a host with netem",
                event.id
            )));
        }
        Ok(())
    }

    /// Apply `event`; its lease (if any) ends at `lease_end`.
    pub async fn apply(
        &self,
        experiment: &str,
        event: &PlannedEvent,
        lease_end: Option<u64>,
    ) -> Result<Undo, FaultError> {
        let mut undo = Undo::default();
        match (&event.action, &event.target) {
            (Action::Mark { .. }, _) => {}
            (Action::WorkloadKill { signal }, Target::Workload(name)) => {
                let signal = signal_number(signal).unwrap_or(9);
                self.workloads()?
                    .signal(name, signal)
                    .await
                    .map_err(|e| workload(name, e))?;
            }
            (Action::WorkloadStop, Target::Workload(name)) => {
                self.workloads()?
                    .stop(name)
                    .await
                    .map_err(|e| workload(name, e))?;
            }
            (action, Target::Container(name)) => {
                let docker = self.docker().await?;
                let info = docker
                    .inspect_container(name, None)
                    .await
                    .map_err(|e| FaultError::Docker(e.to_string()))?;
                let id = info.id.clone().unwrap_or_else(|| name.clone());
                undo.container_id = Some(id.clone());
                let pid = info
                    .state
                    .as_ref()
                    .and_then(|s| s.pid)
                    .filter(|p| *p > 0)
                    .map(|p| p as u32);
                let docker_err = |e: bollard::errors::Error| FaultError::Docker(e.to_string());
                match action {
                    Action::Kill { signal } => docker
                        .kill_container(
                            &id,
                            Some(KillContainerOptions {
                                signal: signal.clone(),
                            }),
                        )
                        .await
                        .map_err(docker_err)?,
                    Action::Stop { timeout_secs } => docker
                        .stop_container(
                            &id,
                            Some(StopContainerOptions {
                                t: Some(*timeout_secs as i32),
                                signal: None,
                            }),
                        )
                        .await
                        .map_err(docker_err)?,
                    Action::Start => docker
                        .start_container(&id, None)
                        .await
                        .map_err(docker_err)?,
                    Action::Restart => docker
                        .restart_container(
                            &id,
                            Some(RestartContainerOptions {
                                t: Some(10),
                                signal: None,
                            }),
                        )
                        .await
                        .map_err(docker_err)?,
                    Action::Pause => docker.pause_container(&id).await.map_err(docker_err)?,
                    Action::Unpause => docker.unpause_container(&id).await.map_err(docker_err)?,
                    Action::Cpu { workers } => {
                        let secs = lease_secs(lease_end);
                        let script = format!(
                            ": bosun-chaos; end=$(( $(date +%s) + {secs} )); while [ $(date +%s) -lt $end ]; do i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; done"
                        );
                        for _ in 0..*workers {
                            undo.pids.push(self.exec_detached(&id, &script).await?);
                        }
                    }
                    Action::Memory { mb } => {
                        let secs = lease_secs(lease_end);
                        let bytes = mb * 1024 * 1024;
                        let script = format!(
                            ": bosun-chaos; x=$(head -c {bytes} /dev/zero | tr '\\0' a); sleep {secs}; echo ${{#x}} >/dev/null"
                        );
                        undo.pids.push(self.exec_detached(&id, &script).await?);
                    }
                    network => {
                        let pid = pid.ok_or_else(|| {
                            FaultError::Invalid(format!(
                                "container {name} is not running: it has no network namespace to fault"
                            ))
                        })?;
                        undo.devices = self
                            .network(Netns::Of(pid), network, experiment, event, lease_end)
                            .await?;
                    }
                }
            }
            (action, Target::Node) => {
                undo.devices = self
                    .network(Netns::Own, action, experiment, event, lease_end)
                    .await?;
            }
            (action, target) => {
                return Err(FaultError::Invalid(format!(
                    "{} cannot act on {target}",
                    action.name()
                )));
            }
        }
        Ok(undo)
    }

    /// Undo an applied `event`. Every step tolerates finding it already undone, so an
    /// undo may run twice (after a restart, or a lease that ends during an abort).
    pub async fn undo(
        &self,
        experiment: &str,
        event: &PlannedEvent,
        undo: &Undo,
    ) -> Result<(), FaultError> {
        match (&event.action, &event.target) {
            (Action::WorkloadStop, Target::Workload(name)) => self
                .workloads()?
                .resume(name)
                .await
                .map_err(|e| workload(name, e)),
            (action, Target::Container(name)) => {
                let docker = self.docker().await?;
                let id = undo.container_id.clone().unwrap_or_else(|| name.clone());
                match action {
                    Action::Kill { .. } | Action::Stop { .. } => {
                        let running = docker
                            .inspect_container(&id, None)
                            .await
                            .map_err(|e| FaultError::Docker(e.to_string()))?
                            .state
                            .and_then(|s| s.running)
                            .unwrap_or(false);
                        if !running {
                            docker
                                .start_container(&id, None)
                                .await
                                .map_err(|e| FaultError::Docker(e.to_string()))?;
                        }
                        Ok(())
                    }
                    Action::Pause => match docker.unpause_container(&id).await {
                        Ok(()) => Ok(()),
                        Err(e) if e.to_string().contains("not paused") => Ok(()),
                        Err(e) => Err(FaultError::Docker(e.to_string())),
                    },
                    Action::Cpu { .. } | Action::Memory { .. } => {
                        for pid in &undo.pids {
                            kill_in_container(*pid, &id);
                        }
                        Ok(())
                    }
                    Action::Partition { .. }
                    | Action::Loss { .. }
                    | Action::Bandwidth { .. }
                    | Action::Delay { .. } => {
                        let pid = docker
                            .inspect_container(&id, None)
                            .await
                            .ok()
                            .and_then(|i| i.state)
                            .and_then(|s| s.pid)
                            .filter(|p| *p > 0);
                        // A container that stopped took its namespace, and the rules in
                        // it, along.
                        match pid {
                            Some(pid) => {
                                self.unnetwork(Netns::Of(pid as u32), experiment, event, undo)
                                    .await
                            }
                            None => Ok(()),
                        }
                    }
                    _ => Ok(()),
                }
            }
            (_, Target::Node) => self.unnetwork(Netns::Own, experiment, event, undo).await,
            _ => Ok(()),
        }
    }

    fn workloads(&self) -> Result<&Arc<dyn Workloads>, FaultError> {
        self.workloads
            .as_ref()
            .ok_or_else(|| FaultError::Unsupported("this node supervises no workloads".into()))
    }

    async fn exec_detached(
        &self,
        container: &str,
        own_stress_script: &str,
    ) -> Result<u32, FaultError> {
        let docker = self.docker().await?;
        let err = |e: bollard::errors::Error| FaultError::Docker(e.to_string());
        let exec = docker
            .create_exec(
                container,
                CreateExecOptions {
                    // bosun's own stress script: numbers only, never an operator's text.
                    cmd: Some(vec![
                        "sh".to_string(),
                        "-c".to_string(),
                        own_stress_script.to_string(),
                    ]),
                    ..Default::default()
                },
            )
            .await
            .map_err(err)?;
        docker
            .start_exec(
                &exec.id,
                Some(StartExecOptions {
                    detach: true,
                    ..Default::default()
                }),
            )
            .await
            .map_err(err)?;
        // The pid is known once the process runs; ask until it is.
        for _ in 0..200 {
            let info = docker.inspect_exec(&exec.id).await.map_err(err)?;
            if let Some(pid) = info.pid.filter(|p| *p > 0) {
                return Ok(pid as u32);
            }
            if info.running == Some(false) && info.exit_code.is_some() {
                return Err(FaultError::Invalid(format!(
                    "the stress process in {container} ended at once (exit code {:?}); does the image have sh?",
                    info.exit_code
                )));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Err(FaultError::Docker(format!(
            "the stress process in {container} did not start within 1 s"
        )))
    }

    /// Put a network fault in place; returns the devices given a qdisc.
    async fn network(
        &self,
        ns: Netns,
        action: &Action,
        experiment: &str,
        event: &PlannedEvent,
        lease_end: Option<u64>,
    ) -> Result<Vec<String>, FaultError> {
        let tag = comment(experiment, &event.id);
        let stop = lease_end.map(datestop);
        let rule = |chain: &str, matches: &[&str]| {
            let mut argv: Vec<String> = ["iptables", "-w", "5", "-I", chain]
                .iter()
                .map(|s| s.to_string())
                .collect();
            argv.extend(matches.iter().map(|s| s.to_string()));
            argv.extend(["-m", "comment", "--comment", &tag].map(String::from));
            if let Some(stop) = &stop {
                argv.extend(["-m", "time", "--datestop", stop].map(String::from));
            }
            argv.extend(["-j", "DROP"].map(String::from));
            argv
        };
        match action {
            Action::Partition { peers } if peers.is_empty() => {
                run_in(ns, &rule("INPUT", &["!", "-i", "lo"])).await?;
                run_in(ns, &rule("OUTPUT", &["!", "-o", "lo"])).await?;
                Ok(Vec::new())
            }
            Action::Partition { peers } => {
                for address in self.resolve(peers).await? {
                    run_in(ns, &rule("INPUT", &["-s", &address])).await?;
                    run_in(ns, &rule("OUTPUT", &["-d", &address])).await?;
                }
                Ok(Vec::new())
            }
            Action::Loss { percent } => {
                let p = format!("{:.4}", percent / 100.0);
                run_in(
                    ns,
                    &rule(
                        "OUTPUT",
                        &[
                            "!",
                            "-o",
                            "lo",
                            "-m",
                            "statistic",
                            "--mode",
                            "random",
                            "--probability",
                            &p,
                        ],
                    ),
                )
                .await?;
                Ok(Vec::new())
            }
            Action::Bandwidth { rate } => {
                root_qdisc(
                    ns,
                    &["tbf", "rate", rate, "burst", "32kbit", "latency", "400ms"],
                )
                .await
            }
            Action::Delay { ms } => {
                if !self.has_netem().await {
                    return Err(FaultError::Unsupported(
                        "delay needs tc netem, which this host's kernel does not have".into(),
                    ));
                }
                root_qdisc(ns, &["netem", "delay", &format!("{ms}ms")]).await
            }
            other => Err(FaultError::Invalid(format!(
                "{} is not a network fault",
                other.name()
            ))),
        }
    }

    /// Remove what [`Faults::network`] put in place: the rules carrying the event's
    /// comment, and bosun's qdisc on the devices it used.
    async fn unnetwork(
        &self,
        ns: Netns,
        experiment: &str,
        event: &PlannedEvent,
        undo: &Undo,
    ) -> Result<(), FaultError> {
        match event.action {
            Action::Partition { .. } | Action::Loss { .. } => {
                let tag = comment(experiment, &event.id);
                let listed = run_in(ns, &argv(&["iptables", "-w", "5", "-S"])).await?;
                for line in listed.lines().filter(|l| l.contains(&tag)) {
                    let Some(rest) = line.strip_prefix("-A ") else {
                        continue;
                    };
                    let mut args =
                        vec!["iptables".to_string(), "-w".into(), "5".into(), "-D".into()];
                    args.extend(split_rule(rest));
                    run_in(ns, &args).await?;
                }
                Ok(())
            }
            Action::Bandwidth { .. } | Action::Delay { .. } => {
                for dev in &undo.devices {
                    let shown = run_in(ns, &argv(&["tc", "qdisc", "show", "dev", dev])).await;
                    if matches!(&shown, Ok(text) if text.contains(&format!("qdisc tbf {QDISC_HANDLE}")) || text.contains(&format!("qdisc netem {QDISC_HANDLE}")))
                    {
                        run_in(ns, &argv(&["tc", "qdisc", "del", "dev", dev, "root"])).await?;
                    }
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Addresses from addresses, CIDRs and names of containers on this host.
    async fn resolve(&self, peers: &[String]) -> Result<Vec<String>, FaultError> {
        let mut out = Vec::new();
        for peer in peers {
            let bare = peer.split('/').next().unwrap_or(peer);
            if bare.parse::<std::net::Ipv4Addr>().is_ok() {
                out.push(peer.clone());
                continue;
            }
            let docker = self.docker().await?;
            let info = docker.inspect_container(peer, None).await.map_err(|e| {
                FaultError::Invalid(format!(
                    "partition peer {peer:?} is neither an IPv4 address nor a container here: {e}"
                ))
            })?;
            let addresses: Vec<String> = info
                .network_settings
                .and_then(|n| n.networks)
                .into_iter()
                .flat_map(|n| n.into_values())
                .filter_map(|n| n.ip_address)
                .filter(|a| !a.is_empty())
                .collect();
            if addresses.is_empty() {
                return Err(FaultError::Invalid(format!(
                    "partition peer container {peer:?} has no IPv4 address (not running?)"
                )));
            }
            out.extend(addresses);
        }
        Ok(out)
    }

    /// Docker's record of what happened to `containers` between `since` and `until`
    /// (ms since the epoch; `until` is capped at now).
    pub async fn container_events(
        &self,
        containers: &[String],
        since: u64,
        until: u64,
    ) -> Result<Vec<ContainerEvent>, FaultError> {
        if containers.is_empty() {
            return Ok(Vec::new());
        }
        let docker = self.docker().await?;
        let until = until.min(bosun_methods::now_millis());
        let since_s = format!("{}.{:03}000000", since / 1000, since % 1000);
        let until_s = format!("{}.{:03}000000", until / 1000, until % 1000);
        let mut filters = std::collections::HashMap::new();
        filters.insert("type", vec!["container"]);
        filters.insert(
            "container",
            containers.iter().map(String::as_str).collect::<Vec<_>>(),
        );
        let mut stream = docker.events(Some(
            EventsOptionsBuilder::new()
                .since(&since_s)
                .until(&until_s)
                .filters(&filters)
                .build(),
        ));
        let mut out = Vec::new();
        while let Some(event) = stream.next().await {
            let event = event.map_err(|e| FaultError::Docker(e.to_string()))?;
            let action = event.action.unwrap_or_default();
            // exec_create, exec_start…: the stress processes, not state changes.
            if action.starts_with("exec_") {
                continue;
            }
            let name = event
                .actor
                .and_then(|a| a.attributes)
                .and_then(|a| a.get("name").cloned())
                .unwrap_or_default();
            let at = event
                .time_nano
                .map(|n| (n / 1_000_000) as u64)
                .or(event.time.map(|s| s as u64 * 1000))
                .unwrap_or(0);
            out.push(ContainerEvent {
                at,
                container: name,
                action,
            });
        }
        Ok(out)
    }
}

fn workload(name: &str, e: WorkloadError) -> FaultError {
    FaultError::Workload {
        name: name.to_string(),
        reason: e.0,
    }
}

/// The comment that tags an event's rules.
fn comment(experiment: &str, id: &str) -> String {
    format!("bosun-chaos:{experiment}:{id}")
}

/// `--datestop` for a lease end, rounded up to the next whole second (UTC).
fn datestop(lease_end: u64) -> String {
    let secs = lease_end.div_ceil(1000);
    let text = bosun_methods::clock::rfc3339_millis(secs * 1000);
    // 2026-01-01T10:00:00.000Z → 2026-01-01T10:00:00
    text.get(..19).unwrap_or(&text).to_string()
}

fn lease_secs(lease_end: Option<u64>) -> u64 {
    let now = bosun_methods::now_millis();
    lease_end
        .map(|end| end.saturating_sub(now).div_ceil(1000) + 1)
        .unwrap_or(3600)
}

fn argv(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).collect()
}

/// Split an `iptables -S` rule into arguments, keeping quoted comments whole.
fn split_rule(rule: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    for c in rule.chars() {
        match c {
            '"' => quoted = !quoted,
            ' ' if !quoted => {
                if !current.is_empty() {
                    out.push(std::mem::take(&mut current));
                }
            }
            c => current.push(c),
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// Give every interface of the namespace but loopback bosun's root qdisc `kind…`;
/// returns the devices.
async fn root_qdisc(ns: Netns, kind: &[&str]) -> Result<Vec<String>, FaultError> {
    let devices = devices(ns).await?;
    for dev in &devices {
        let mut args = argv(&[
            "tc",
            "qdisc",
            "replace",
            "dev",
            dev,
            "root",
            "handle",
            QDISC_HANDLE,
        ]);
        args.extend(argv(kind));
        run_in(ns, &args).await?;
    }
    Ok(devices)
}

/// The interfaces of a namespace but loopback.
async fn devices(ns: Netns) -> Result<Vec<String>, FaultError> {
    let listed = run_in(ns, &argv(&["ip", "-o", "link", "show"])).await?;
    let devices: Vec<String> = listed
        .lines()
        .filter_map(|l| l.split(':').nth(1))
        .map(|d| d.trim().split('@').next().unwrap_or("").to_string())
        .filter(|d| !d.is_empty() && d != "lo")
        .collect();
    if devices.is_empty() {
        return Err(FaultError::Invalid(
            "no network device but loopback to limit".into(),
        ));
    }
    Ok(devices)
}

/// Run `argv` in the namespace; its stdout, or why it failed.
async fn run_in(ns: Netns, argv: &[String]) -> Result<String, FaultError> {
    let mut command = match ns {
        Netns::Own => Command::new(&argv[0]),
        Netns::Of(pid) => {
            let mut c = Command::new("nsenter");
            c.args(["-t", &pid.to_string(), "-n", "--", &argv[0]]);
            c
        }
    };
    command.args(&argv[1..]).kill_on_drop(true);
    let shown = match ns {
        Netns::Own => argv.join(" "),
        Netns::Of(pid) => format!("nsenter -t {pid} -n {}", argv.join(" ")),
    };
    let output = tokio::time::timeout(Duration::from_secs(15), command.output())
        .await
        .map_err(|_| FaultError::Command {
            command: shown.clone(),
            reason: "did not finish within 15 s".into(),
        })?
        .map_err(|e| FaultError::Command {
            command: shown.clone(),
            reason: if e.kind() == std::io::ErrorKind::NotFound {
                format!("{} is not installed on this host", argv[0])
            } else {
                e.to_string()
            },
        })?;
    if !output.status.success() {
        return Err(FaultError::Command {
            command: shown,
            reason: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// SIGKILL a stress process, if it is still the one started in `container`.
fn kill_in_container(pid: u32, container: &str) {
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    if cgroup.contains(container) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_split_with_their_quoted_comment_whole() {
        let rule = r#"OUTPUT ! -o lo -m comment --comment "bosun-chaos:01J:e1.1.1" -j DROP"#;
        assert_eq!(
            split_rule(rule),
            [
                "OUTPUT",
                "!",
                "-o",
                "lo",
                "-m",
                "comment",
                "--comment",
                "bosun-chaos:01J:e1.1.1",
                "-j",
                "DROP"
            ]
        );
    }

    #[test]
    fn datestop_rounds_up_to_the_next_second() {
        assert_eq!(datestop(1_700_000_000_001), "2023-11-14T22:13:21");
        assert_eq!(datestop(1_700_000_000_000), "2023-11-14T22:13:20");
    }
}
