//! Waiting for observable events with a deadline, never for a fixed time.
//!
//! Every wait in the tests goes through these helpers: [`eventually`] waits until a
//! check sees the state it wants, [`holds_for`] asserts that something stays true over
//! a window (the only honest way to show that an event does *not* happen). Both have
//! async twins for tests that run inside a tokio runtime.

use std::future::Future;
use std::time::{Duration, Instant};

/// How often the helpers look again: short enough to keep tests quick, long enough not
/// to load a 2-core machine that runs several node processes.
const POLL: Duration = Duration::from_millis(50);

/// Poll `check` until it returns `Some`, or panic after `timeout` with `what`.
pub fn eventually<T>(timeout: Duration, what: &str, check: impl FnMut() -> Option<T>) -> T {
    poll_until(timeout, check).unwrap_or_else(|| panic!("timed out waiting for: {what}"))
}

/// Poll `check` until it returns `Some`; `None` once `timeout` has passed. For waits
/// whose expiry is not a failure (a process that must then be killed).
pub fn poll_until<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(POLL);
    }
}

/// Assert that `check` stays true for the whole `window`; panics with `what` the first
/// time it is false. For promises about absence ("nothing runs while the broker is
/// down", "no further repeat"), which no single event can show.
pub fn holds_for(window: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + window;
    loop {
        assert!(check(), "no longer true: {what}");
        if Instant::now() >= deadline {
            return;
        }
        std::thread::sleep(POLL);
    }
}

/// [`eventually`] for async checks, without blocking a runtime worker while it waits.
pub async fn eventually_async<T, F>(
    timeout: Duration,
    what: &str,
    mut check: impl FnMut() -> F,
) -> T
where
    F: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(POLL).await;
    }
}

/// [`holds_for`] for async tests, without blocking a runtime worker while it waits.
pub async fn holds_for_async(window: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + window;
    loop {
        assert!(check(), "no longer true: {what}");
        if Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep(POLL).await;
    }
}
