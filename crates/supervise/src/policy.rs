//! The restart arithmetic, pure: the delay before a restart and when restarts are too
//! many.

use std::time::Duration;

use crate::def::{Backoff, Limit};

/// The delay before restart `n` (counted from 1 within the limit's window).
pub fn delay(backoff: &Backoff, n: u32) -> Duration {
    let exp = n.saturating_sub(1).min(64) as i32;
    let ms = backoff.initial_ms as f64 * backoff.factor.powi(exp);
    Duration::from_millis(ms.min(backoff.max_ms as f64).max(0.0) as u64)
}

/// What to do about an exit, given the restarts already made (ms since the epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Restart after this delay; it is restart number `n` in the window.
    Restart {
        /// The delay.
        after: Duration,
        /// Its number in the window.
        n: u32,
    },
    /// The limit is passed: `FATAL`.
    Fatal,
}

/// Forget restarts older than the window, then decide. `restarts` gains `now` when the
/// answer is to restart.
pub fn decide(restarts: &mut Vec<u64>, limit: &Limit, backoff: &Backoff, now: u64) -> Decision {
    let window = limit.within_secs.saturating_mul(1000);
    restarts.retain(|t| now.saturating_sub(*t) < window);
    if restarts.len() as u32 >= limit.restarts {
        return Decision::Fatal;
    }
    restarts.push(now);
    let n = restarts.len() as u32;
    Decision::Restart {
        after: delay(backoff, n),
        n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_by_the_factor_up_to_the_max() {
        let b = Backoff {
            initial_ms: 100,
            max_ms: 1000,
            factor: 2.0,
        };
        let ms: Vec<u128> = (1..=6).map(|n| delay(&b, n).as_millis()).collect();
        assert_eq!(ms, [100, 200, 400, 800, 1000, 1000]);
    }

    #[test]
    fn more_restarts_than_the_limit_within_the_window_is_fatal() {
        let limit = Limit {
            restarts: 3,
            within_secs: 10,
        };
        let b = Backoff::default();
        let mut times = Vec::new();
        for (i, now) in [0u64, 1000, 2000].iter().enumerate() {
            assert_eq!(
                decide(&mut times, &limit, &b, *now),
                Decision::Restart {
                    after: delay(&b, i as u32 + 1),
                    n: i as u32 + 1
                }
            );
        }
        assert_eq!(decide(&mut times, &limit, &b, 3000), Decision::Fatal);
        // Restarts older than the window are forgotten.
        assert!(matches!(
            decide(&mut times, &limit, &b, 10_500),
            Decision::Restart { n: 3, .. }
        ));
    }
}
