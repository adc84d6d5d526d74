//! Liveness: how a node looks from the registry, judged from when its last hello arrived
//! and the hello interval it announced.

use bosun_proto::Millis;
use serde::{Deserialize, Serialize};

/// How a node looks from here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum Liveness {
    /// Hellos arrive on time.
    Alive,
    /// Missed `suspect_after_missed` hellos.
    Suspect,
    /// Missed `down_after_missed` hellos.
    Down,
}

/// Judge a node at `now` whose last hello arrived at `last_seen` and announced hellos
/// every `hello_interval_secs`. A node is suspect after `suspect_after` missed hellos and
/// down after `down_after`. An interval of 0 (a hello without a readable body) counts as
/// one second, so such a node soon looks down rather than alive for ever.
pub fn liveness(
    last_seen: Millis,
    hello_interval_secs: u64,
    now: Millis,
    suspect_after: u64,
    down_after: u64,
) -> Liveness {
    let interval_ms = hello_interval_secs.clamp(1, bosun_proto::message::MAX_SECONDS) * 1000;
    let age = now.saturating_sub(last_seen);
    if age > interval_ms.saturating_mul(down_after.max(1)) {
        Liveness::Down
    } else if age > interval_ms.saturating_mul(suspect_after.max(1)) {
        Liveness::Suspect
    } else {
        Liveness::Alive
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missed_hellos_make_a_node_suspect_then_down() {
        assert_eq!(liveness(0, 10, 15_000, 2, 5), Liveness::Alive);
        assert_eq!(liveness(0, 10, 25_000, 2, 5), Liveness::Suspect);
        assert_eq!(liveness(0, 10, 51_000, 2, 5), Liveness::Down);
    }

    #[test]
    fn a_hello_without_an_interval_counts_as_one_second() {
        assert_eq!(liveness(0, 0, 1_000, 2, 5), Liveness::Alive);
        assert_eq!(liveness(0, 0, 5_001, 2, 5), Liveness::Down);
    }
}
