//! Signals to the processes the testkit started, and waiting until they took effect.

use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::eventually;

/// How long a signalled process may take to show its new state in `/proc`.
const SIGNAL_TIMEOUT: Duration = Duration::from_secs(10);

/// Send `signal` to `pid`; panics when the process is gone (a test bug or a crash).
pub(crate) fn signal(pid: u32, signal: Signal, what: &str) {
    let raw = i32::try_from(pid).expect("pid fits in i32");
    kill(Pid::from_raw(raw), signal)
        .unwrap_or_else(|e| panic!("send {signal} to {what} (pid {pid}): {e}"));
}

/// Send `signal` to `pid` when it is still there; for clean-up in `Drop`, which must
/// not panic.
pub(crate) fn try_signal(pid: u32, signal: Signal) {
    if let Ok(raw) = i32::try_from(pid) {
        let _ = kill(Pid::from_raw(raw), signal);
    }
}

/// The one-letter state in `/proc/PID/stat` (`R`, `S`, `T` for stopped, `Z`, …);
/// `None` once the process is gone.
fn proc_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name in parentheses may hold spaces: the state follows the last ')'.
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// SIGSTOP `pid` and wait until the kernel reports it stopped.
pub(crate) fn freeze(pid: u32, what: &str) {
    signal(pid, Signal::SIGSTOP, what);
    eventually(SIGNAL_TIMEOUT, &format!("{what} is stopped"), || {
        matches!(proc_state(pid), Some('T' | 't')).then_some(())
    });
}

/// SIGCONT `pid` and wait until the kernel no longer reports it stopped.
pub(crate) fn thaw(pid: u32, what: &str) {
    signal(pid, Signal::SIGCONT, what);
    eventually(SIGNAL_TIMEOUT, &format!("{what} runs again"), || {
        (!matches!(proc_state(pid), Some('T' | 't'))).then_some(())
    });
}
