//! When to resend a message and when to give up on it.
//!
//! Two kinds of trouble are kept apart:
//! - **no ACK in time** while the destination was reachable: counts against `retries`,
//!   and the next try waits a growing backoff;
//! - **destination unreachable** (broker down, or nobody listening on the node's subject):
//!   does not count against `retries`; the message waits in the outbox and is tried again
//!   on a short capped backoff, so it goes out soon after the node returns.
//!
//! Only `ttl` bounds how long a message may wait for an unreachable node.

use bosun_proto::Millis;

/// The retry rules for one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// How long to wait for an ACK.
    pub ack_timeout_ms: u64,
    /// How many resends after ACK timeouts.
    pub retries: u32,
    /// First backoff after an ACK timeout; doubles each time.
    pub backoff_base_ms: u64,
    /// Cap on the backoff after ACK timeouts.
    pub backoff_max_ms: u64,
    /// Cap on the wait between tries while the destination is unreachable.
    pub unreachable_max_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            ack_timeout_ms: 5_000,
            retries: 5,
            backoff_base_ms: 500,
            backoff_max_ms: 30_000,
            unreachable_max_ms: 2_000,
        }
    }
}

/// The delivery bookkeeping of one outbox entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The rules.
    pub policy: RetryPolicy,
    /// Sends that went unanswered while the destination was reachable.
    pub timeouts: u32,
    /// Tries that found the destination unreachable, since the last reachable try.
    pub unreachable: u32,
    /// Earliest time of the next try.
    pub next_at: Millis,
    /// Give up at this time (from `ttl`), if set.
    pub deadline: Option<Millis>,
}

/// What to do after a try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// Try again at this time.
    RetryAt(Millis),
    /// Stop: the message fails, with this reason.
    GiveUp(&'static str),
}

impl Delivery {
    /// Bookkeeping for a message submitted at `now`.
    pub fn new(policy: RetryPolicy, now: Millis, ttl_secs: Option<u64>) -> Delivery {
        Delivery {
            policy,
            timeouts: 0,
            unreachable: 0,
            next_at: now,
            deadline: ttl_secs.filter(|t| *t > 0).map(|t| now + t * 1000),
        }
    }

    /// True when the ttl has passed.
    pub fn expired(&self, now: Millis) -> bool {
        self.deadline.is_some_and(|d| now >= d)
    }

    /// The send went unanswered for `ack_timeout`.
    pub fn on_ack_timeout(&mut self, now: Millis) -> Attempt {
        self.unreachable = 0;
        if self.expired(now) {
            return Attempt::GiveUp("ttl expired before the destination acknowledged");
        }
        if self.timeouts >= self.policy.retries {
            return Attempt::GiveUp("no ACK after all retries");
        }
        self.timeouts += 1;
        let shift = (self.timeouts - 1).min(20);
        let backoff = (self.policy.backoff_base_ms << shift).min(self.policy.backoff_max_ms);
        self.next_at = now + backoff;
        self.bounded()
    }

    /// The destination could not be reached (not counted against retries).
    pub fn on_unreachable(&mut self, now: Millis) -> Attempt {
        if self.expired(now) {
            return Attempt::GiveUp("ttl expired while the destination was unreachable");
        }
        self.unreachable = self.unreachable.saturating_add(1);
        let shift = (self.unreachable - 1).min(20);
        let wait = (100u64 << shift).min(self.policy.unreachable_max_ms);
        self.next_at = now + wait;
        self.bounded()
    }

    fn bounded(&mut self) -> Attempt {
        if let Some(d) = self.deadline {
            self.next_at = self.next_at.min(d);
        }
        Attempt::RetryAt(self.next_at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(retries: u32) -> RetryPolicy {
        RetryPolicy {
            ack_timeout_ms: 1000,
            retries,
            backoff_base_ms: 100,
            backoff_max_ms: 1000,
            unreachable_max_ms: 2000,
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_then_gives_up() {
        let mut d = Delivery::new(policy(6), 0, None);
        let mut waits = Vec::new();
        let mut now = 0;
        loop {
            match d.on_ack_timeout(now) {
                Attempt::RetryAt(at) => {
                    waits.push(at - now);
                    now = at;
                }
                Attempt::GiveUp(why) => {
                    assert!(why.contains("retries"));
                    break;
                }
            }
        }
        assert_eq!(waits, vec![100, 200, 400, 800, 1000, 1000]);
    }

    #[test]
    fn zero_retries_gives_up_at_first_timeout() {
        let mut d = Delivery::new(policy(0), 0, None);
        assert!(matches!(d.on_ack_timeout(5), Attempt::GiveUp(_)));
    }

    #[test]
    fn unreachable_does_not_use_up_retries() {
        let mut d = Delivery::new(policy(1), 0, None);
        for i in 0..1000 {
            assert!(matches!(d.on_unreachable(i * 2000), Attempt::RetryAt(_)));
        }
        assert_eq!(d.timeouts, 0);
        assert!(matches!(d.on_ack_timeout(0), Attempt::RetryAt(_)));
    }

    #[test]
    fn unreachable_wait_is_capped() {
        let mut d = Delivery::new(policy(1), 0, None);
        let waits: Vec<u64> = (0..8)
            .map(|_| match d.on_unreachable(0) {
                Attempt::RetryAt(at) => at,
                Attempt::GiveUp(_) => panic!(),
            })
            .collect();
        assert_eq!(waits, vec![100, 200, 400, 800, 1600, 2000, 2000, 2000]);
    }

    #[test]
    fn ttl_ends_waiting() {
        let mut d = Delivery::new(policy(100), 1_000, Some(10));
        assert_eq!(d.deadline, Some(11_000));
        assert!(matches!(d.on_unreachable(5_000), Attempt::RetryAt(_)));
        assert!(matches!(d.on_unreachable(11_000), Attempt::GiveUp(w) if w.contains("ttl")));
        let mut d = Delivery::new(policy(100), 0, Some(1));
        assert!(matches!(d.on_ack_timeout(1_000), Attempt::GiveUp(w) if w.contains("ttl")));
    }

    #[test]
    fn retry_time_never_passes_the_deadline() {
        let mut d = Delivery::new(policy(100), 0, Some(1));
        d.timeouts = 10;
        assert_eq!(d.on_ack_timeout(900), Attempt::RetryAt(1000));
    }
}
