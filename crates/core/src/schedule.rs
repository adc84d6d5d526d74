//! Steward's `schedule: [intervalSeconds, totalSeconds]`: when the repeats of a message
//! are due.
//!
//! A schedule is counted in runs: `total / interval` repeats after the first message.
//! Runs that fell due while the node was down are not made up in a burst: the first
//! check after the outage makes one catch-up run and the rest follow one interval
//! apart, so every run is made, later than planned.

use serde::{Deserialize, Serialize};

/// The state of one schedule: how often, when next, how many runs remain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Schedule {
    /// Time between runs, in milliseconds.
    pub interval_ms: u64,
    /// When the next run is due.
    pub next_at: u64,
    /// Runs still to make.
    pub runs_left: u64,
}

impl Schedule {
    /// The schedule of a message submitted at `submitted_at` with
    /// `schedule: [interval_secs, total_secs]`; `None` when it makes no repeat.
    pub fn new(interval_secs: u64, total_secs: u64, submitted_at: u64) -> Option<Schedule> {
        let interval_secs = interval_secs.max(1);
        let runs_left = total_secs / interval_secs;
        let interval_ms = interval_secs.saturating_mul(1000);
        (runs_left > 0).then(|| Schedule {
            interval_ms,
            next_at: submitted_at.saturating_add(interval_ms),
            runs_left,
        })
    }

    /// The schedule of a message's `schedule` field, as submitted at `submitted_at`.
    pub fn from_field(field: &[u64], submitted_at: u64) -> Option<Schedule> {
        match field {
            [interval, total] => Schedule::new(*interval, *total, submitted_at),
            _ => None,
        }
    }

    /// Is a run due at `now`?
    pub fn is_due(&self, now: u64) -> bool {
        self.runs_left > 0 && now >= self.next_at
    }

    /// Count one run made at `now`. The next is one interval after the planned time, or
    /// one interval after `now` when the run was late by more than an interval (no
    /// burst after an outage). Returns false when that was the last run.
    pub fn advance(&mut self, now: u64) -> bool {
        self.runs_left = self.runs_left.saturating_sub(1);
        let planned = self.next_at.saturating_add(self.interval_ms);
        self.next_at = if planned > now {
            planned
        } else {
            now.saturating_add(self.interval_ms)
        };
        self.runs_left > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_are_total_over_interval_one_interval_apart() {
        let mut s = Schedule::new(2, 7, 1_000).unwrap();
        assert_eq!(s.runs_left, 3);
        assert_eq!(s.next_at, 3_000);
        assert!(!s.is_due(2_999));
        assert!(s.is_due(3_000));
        assert!(s.advance(3_010));
        assert_eq!(s.next_at, 5_000, "on time: stays on the planned grid");
        assert!(s.advance(5_000));
        assert!(!s.advance(7_000), "the third run is the last");
        assert!(!s.is_due(u64::MAX));
        assert_eq!(
            Schedule::new(5, 4, 0),
            None,
            "a total under one interval repeats nothing"
        );
        assert_eq!(
            Schedule::new(0, 2, 0).unwrap().runs_left,
            2,
            "interval at least 1 s"
        );
        assert_eq!(Schedule::from_field(&[5], 0), None);
    }

    #[test]
    fn an_outage_gives_one_catch_up_run_then_the_interval() {
        let mut s = Schedule::new(1, 5, 0).unwrap();
        assert!(s.advance(1_000));
        // Down from 1.5 s to 10 s: four runs were missed.
        assert!(s.is_due(10_000));
        assert!(s.advance(10_000));
        assert_eq!(
            s.next_at, 11_000,
            "no burst: the next one is an interval away"
        );
        assert!(!s.is_due(10_500));
        assert_eq!(s.runs_left, 3, "no run is lost either");
    }
}
