//! The processes a handler starts for a message, and what a crashed node left of them.
//!
//! Every command runs in its own process group. Three things keep it from outliving the
//! node that started it:
//! - a parent-death signal: the child gets SIGKILL when the node dies, however it dies.
//!   The signal follows the *thread* that forked the child, so children are forked by
//!   one long-lived thread per node ([`Spawner`]), never by a runtime thread that may
//!   come and go;
//! - each run's [`Group`] (process group id, the leader's start time and the boot id) is
//!   reported through a [`ProcessSink`], and the node records it with the run;
//! - at start-up the node calls [`end_leftovers`] for every run that was going when it
//!   stopped: what is left of the group (processes the command forked, which the
//!   parent-death signal does not reach) is killed before the run is reported.
//!
//! No child inherits the node's secrets: the variables that may hold them are removed
//! from its environment.
//!
//! A pid can be reused after its process is gone. A group is only taken for the
//! recorded one when its leader has the recorded start time, on the recorded boot; and
//! only processes started no earlier than the leader are killed.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use tokio::sync::{mpsc, oneshot};

pub use crate::spawn::{Child, Io, Launch};
use crate::spawn::{Prepared, Started};

/// One run's process group, as found right after its leader was started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// The process group id: the pid of its leader, the process the handler started.
    pub pgid: i32,
    /// The leader's start time, in clock ticks after boot (`/proc/PID/stat` field 22).
    pub start_time: u64,
    /// The kernel's boot id: start times only compare within one boot.
    pub boot_id: String,
}

/// Errors reading or ending processes.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// A `/proc` file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A `/proc/PID/stat` line did not have the expected fields.
    #[error("{path} is not a process status line")]
    Stat {
        /// The file.
        path: PathBuf,
    },
    /// A process could not be signalled (other than for being gone already).
    #[error("cannot kill process {pid}: {source}")]
    Kill {
        /// The process.
        pid: i32,
        /// Why.
        source: Errno,
    },
    /// Processes of the group were still there when the wait ran out.
    #[error("{left} process(es) of group {pgid} still running {waited:?} after SIGKILL")]
    StillRunning {
        /// The group.
        pgid: i32,
        /// How many were left.
        left: usize,
        /// How long was waited.
        waited: Duration,
    },
}

/// What [`end_leftovers`] found of a recorded group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Leftover {
    /// Processes of the group were still running; they were killed and are gone.
    Killed {
        /// The group.
        pgid: i32,
        /// How many processes were killed.
        processes: usize,
    },
    /// Nothing of the group was running any more.
    Ended,
    /// The host has restarted since the run started: nothing of it can be running.
    Rebooted,
}

impl std::fmt::Display for Leftover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Leftover::Killed { pgid, processes } => write!(
                f,
                "killed at restart: process group {pgid} was still running ({processes} process{}) after the node stopped; its output was lost",
                if *processes == 1 { "" } else { "es" }
            ),
            Leftover::Ended => f.write_str(
                "its process had already ended while the node was down; its output was lost",
            ),
            Leftover::Rebooted => f.write_str(
                "its process had already ended: the host restarted while the node was down; its output was lost",
            ),
        }
    }
}

/// Where a handler reports the process group it started for a run, so that the node can
/// record it with the run. Reports are taken at once; the node writes them in order.
#[derive(Clone, Default)]
pub struct ProcessSink(Option<mpsc::UnboundedSender<Group>>);

impl ProcessSink {
    /// A sink that forwards to `tx`.
    pub fn new(tx: mpsc::UnboundedSender<Group>) -> Self {
        ProcessSink(Some(tx))
    }

    /// A sink that keeps nothing (runs that need no record).
    pub fn none() -> Self {
        ProcessSink(None)
    }

    /// Report a group that was started.
    pub fn report(&self, group: Group) {
        if let Some(tx) = &self.0 {
            let _ = tx.send(group);
        }
    }
}

struct SpawnJob {
    prepared: Prepared,
    answer: oneshot::Sender<std::io::Result<(Started, Prepared)>>,
}

/// Starts the node's children from one thread that lives as long as the node's handler
/// state: a parent-death signal fires when the thread that started the child ends, so
/// the runtime's threads, which may end while the node runs on, must not start them.
#[derive(Default)]
pub struct Spawner {
    jobs: Mutex<Option<std::sync::mpsc::Sender<SpawnJob>>>,
}

impl Spawner {
    fn sender(&self) -> std::io::Result<std::sync::mpsc::Sender<SpawnJob>> {
        let mut jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tx) = jobs.as_ref() {
            return Ok(tx.clone());
        }
        let (tx, rx) = std::sync::mpsc::channel::<SpawnJob>();
        std::thread::Builder::new()
            .name("bosun-spawn".into())
            .spawn(move || {
                for mut job in rx {
                    let started = crate::spawn::start(&mut job.prepared);
                    // Were the answer not taken, the child would be ended and reaped
                    // as it is dropped.
                    let _ = job.answer.send(started.map(|s| (s, job.prepared)));
                }
            })?;
        *jobs = Some(tx.clone());
        Ok(tx)
    }

    /// End the forking thread (its children get their parent-death signal), as a
    /// crash would.
    #[cfg(test)]
    pub(crate) fn stop(&self) {
        self.jobs.lock().unwrap_or_else(|e| e.into_inner()).take();
    }

    /// Start `launch` in its own process group, to die with the node (SIGKILL when the
    /// node's process ends), without the node's secrets in its environment (see
    /// [`crate::spawn`] for how). Must be called within a tokio runtime.
    pub async fn spawn(&self, launch: Launch) -> std::io::Result<Child> {
        let prepared = Prepared::new(&launch, &|name| {
            name.to_str()
                .is_some_and(bosun_trust::secret_env::is_secret)
        })?;
        let (answer, answered) = oneshot::channel();
        self.sender()?
            .send(SpawnJob { prepared, answer })
            .map_err(|_| std::io::Error::other("the spawner thread has stopped"))?;
        let (started, prepared) = answered
            .await
            .map_err(|_| std::io::Error::other("the spawner thread has stopped"))??;
        Child::adopt(started, prepared)
    }
}

/// The group of a process just started with its own process group (it leads it).
pub fn group_of(pid: u32) -> Result<Group, ProcessError> {
    let pid = pid as i32;
    let stat = stat(pid)?.ok_or_else(|| ProcessError::Read {
        path: stat_path(pid),
        source: std::io::Error::from(std::io::ErrorKind::NotFound),
    })?;
    Ok(Group {
        pgid: pid,
        start_time: stat.start_time,
        boot_id: boot_id()?,
    })
}

/// End what is left of a recorded group: when its leader still runs (same start time,
/// same boot), the whole group is killed; when the leader is gone, the processes still
/// in the group are. Waits, up to `limit`, until none of them runs any more. Blocks: call
/// it off the runtime's threads.
pub fn end_leftovers(group: &Group, limit: Duration) -> Result<Leftover, ProcessError> {
    if boot_id()? != group.boot_id {
        return Ok(Leftover::Rebooted);
    }
    let pgid = group.pgid;
    let mut killed = BTreeSet::new();
    match stat(pgid)? {
        // The pid went to another process, which could only happen once the whole
        // group was gone (a pid is not reused while it names a group): nothing is ours.
        Some(leader) if leader.start_time != group.start_time => return Ok(Leftover::Ended),
        Some(leader) if leader.is_running() => {
            // Counted before the one signal to the whole group ends them all.
            killed.insert(pgid);
            killed.extend(members(group)?);
            signal(pgid, || killpg(Pid::from_raw(pgid), Signal::SIGKILL))?;
        }
        _ => {}
    }
    let started = Instant::now();
    loop {
        let members = members(group)?;
        if members.is_empty() {
            break;
        }
        if started.elapsed() >= limit {
            return Err(ProcessError::StillRunning {
                pgid,
                left: members.len(),
                waited: limit,
            });
        }
        for pid in members {
            killed.insert(pid);
            signal(pid, || kill(Pid::from_raw(pid), Signal::SIGKILL))?;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(if killed.is_empty() {
        Leftover::Ended
    } else {
        Leftover::Killed {
            pgid,
            processes: killed.len(),
        }
    })
}

/// Send a signal; a process that is gone already is fine.
fn signal(pid: i32, send: impl FnOnce() -> nix::Result<()>) -> Result<(), ProcessError> {
    match send() {
        Ok(()) | Err(Errno::ESRCH) => Ok(()),
        Err(source) => Err(ProcessError::Kill { pid, source }),
    }
}

/// The running processes of `group`: in its process group, and started no earlier than
/// its leader (everything in it descends from the leader).
fn members(group: &Group) -> Result<Vec<i32>, ProcessError> {
    let proc = PathBuf::from("/proc");
    let entries = std::fs::read_dir(&proc).map_err(|source| ProcessError::Read {
        path: proc.clone(),
        source,
    })?;
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        // A process may end between the listing and the read: that is not an error.
        let Ok(Some(stat)) = stat(pid) else {
            continue;
        };
        if stat.pgrp == group.pgid && stat.start_time >= group.start_time && stat.is_running() {
            out.push(pid);
        }
    }
    Ok(out)
}

/// What bosun reads of `/proc/PID/stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stat {
    state: char,
    pgrp: i32,
    start_time: u64,
}

impl Stat {
    /// Neither a zombie (ended, waiting to be reaped) nor dead.
    fn is_running(&self) -> bool {
        !matches!(self.state, 'Z' | 'X' | 'x')
    }
}

fn stat_path(pid: i32) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/stat"))
}

/// The status of process `pid`; `None` when there is no such process.
fn stat(pid: i32) -> Result<Option<Stat>, ProcessError> {
    let path = stat_path(pid);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e)
            if matches!(e.kind(), std::io::ErrorKind::NotFound) || e.raw_os_error() == Some(3) =>
        {
            return Ok(None);
        }
        Err(source) => return Err(ProcessError::Read { path, source }),
    };
    parse_stat(&text)
        .map(Some)
        .ok_or(ProcessError::Stat { path })
}

/// Fields after the command name (which may hold spaces and parentheses): state is
/// field 3, pgrp field 5, start time field 22.
fn parse_stat(text: &str) -> Option<Stat> {
    let (_, rest) = text.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(Stat {
        state: fields.first()?.chars().next()?,
        pgrp: fields.get(2)?.parse().ok()?,
        start_time: fields.get(19)?.parse().ok()?,
    })
}

/// This boot's id.
fn boot_id() -> Result<String, ProcessError> {
    let path = PathBuf::from("/proc/sys/kernel/random/boot_id");
    std::fs::read_to_string(&path)
        .map(|s| s.trim().to_string())
        .map_err(|source| ProcessError::Read { path, source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Stdio;

    /// Start `sh -c script` leading its own group, as a command run by a crashed node
    /// would be; it is reaped by a thread so that it does not linger as a zombie.
    fn start_group(script: &str) -> Group {
        let mut child = std::process::Command::new("sh");
        child
            .arg("-c")
            .arg(script)
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        std::os::unix::process::CommandExt::process_group(&mut child, 0);
        let mut child = child.spawn().unwrap();
        let group = group_of(child.id()).unwrap();
        std::thread::spawn(move || child.wait());
        group
    }

    fn temp_dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("bosun-process-test-{}", bosun_proto::new_id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn wait_for(path: &std::path::Path) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !path.exists() {
            assert!(
                Instant::now() < deadline,
                "{} never appeared",
                path.display()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn parses_a_stat_line_whose_name_holds_parentheses_and_spaces() {
        let line =
            "4242 (a (b) c) S 1 4240 4240 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 1000 10";
        assert_eq!(
            parse_stat(line),
            Some(Stat {
                state: 'S',
                pgrp: 4240,
                start_time: 98765
            })
        );
        assert_eq!(parse_stat("4242 (x) S 1"), None);
    }

    #[test]
    fn a_live_group_is_killed_with_everything_it_forked() {
        let dir = temp_dir();
        let ready = dir.join("ready");
        let group = start_group(&format!(
            "sleep 300 & sleep 300 & : > {}; wait",
            ready.display()
        ));
        wait_for(&ready);
        assert_eq!(members(&group).unwrap().len(), 3, "sh and two sleeps");
        let left = end_leftovers(&group, Duration::from_secs(10)).unwrap();
        assert_eq!(
            left,
            Leftover::Killed {
                pgid: group.pgid,
                processes: 3
            }
        );
        assert!(members(&group).unwrap().is_empty());
        assert!(
            left.to_string()
                .starts_with("killed at restart: process group")
        );
    }

    #[test]
    fn members_are_killed_when_the_leader_is_gone() {
        let dir = temp_dir();
        let pid_file = dir.join("sleep.pid");
        // The leader exits at once; its background child stays in the group.
        let group = start_group(&format!(
            "sleep 300 & echo $! > {}.tmp; mv {0}.tmp {0}",
            pid_file.display()
        ));
        wait_for(&pid_file);
        let sleeper: i32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while stat(group.pgid).unwrap().is_some_and(|s| s.is_running()) {
            assert!(Instant::now() < deadline, "the leader never ended");
            std::thread::sleep(Duration::from_millis(10));
        }
        let left = end_leftovers(&group, Duration::from_secs(10)).unwrap();
        assert_eq!(
            left,
            Leftover::Killed {
                pgid: group.pgid,
                processes: 1
            }
        );
        assert!(!stat(sleeper).unwrap().is_some_and(|s| s.is_running()));
    }

    #[test]
    fn a_group_that_ended_is_reported_ended() {
        let dir = temp_dir();
        let done = dir.join("done");
        let group = start_group(&format!(": > {}", done.display()));
        wait_for(&done);
        // The file appears just before the leader exits.
        let deadline = Instant::now() + Duration::from_secs(10);
        while stat(group.pgid).unwrap().is_some_and(|s| s.is_running()) {
            assert!(Instant::now() < deadline, "the leader never ended");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(
            end_leftovers(&group, Duration::from_secs(10)).unwrap(),
            Leftover::Ended
        );
    }

    #[test]
    fn a_reused_pid_is_never_killed() {
        let dir = temp_dir();
        let ready = dir.join("ready");
        let mut group = start_group(&format!(": > {}; sleep 300", ready.display()));
        wait_for(&ready);
        let real = group.clone();
        // The record names this pid with another start time: another process had it.
        group.start_time -= 1;
        assert_eq!(
            end_leftovers(&group, Duration::from_secs(10)).unwrap(),
            Leftover::Ended
        );
        assert!(
            stat(real.pgid).unwrap().is_some_and(|s| s.is_running()),
            "a process with a reused pid was killed"
        );
        end_leftovers(&real, Duration::from_secs(10)).unwrap();
    }

    #[test]
    fn another_boot_means_nothing_is_left() {
        let dir = temp_dir();
        let ready = dir.join("ready");
        let mut group = start_group(&format!(": > {}; sleep 300", ready.display()));
        wait_for(&ready);
        let real = group.clone();
        group.boot_id = "not-this-boot".into();
        assert_eq!(
            end_leftovers(&group, Duration::from_secs(10)).unwrap(),
            Leftover::Rebooted
        );
        assert!(stat(real.pgid).unwrap().is_some_and(|s| s.is_running()));
        end_leftovers(&real, Duration::from_secs(10)).unwrap();
    }
}
