//! Placement: where `instances: N` containers go. Candidates are the live nodes of the
//! fleet registry (optionally only those named in `toNodes`) whose labels match the
//! message's `constraints`, that are not drained, and whose free memory fits the
//! containers placed on them. Each container goes to the least-loaded candidate (its
//! `load`, the containers bosun placed there, plus those placed by this call), ties
//! broken by name: deterministic, and even over back-to-back calls when the loads are
//! kept up to date.

use std::collections::BTreeMap;

use crate::liveness::Liveness;

/// One node of the fleet registry, as placement sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The node's name.
    pub name: String,
    /// Whether its hellos arrive on time.
    pub liveness: Liveness,
    /// Its labels, from its last hello.
    pub labels: BTreeMap<String, String>,
    /// Its free memory in MiB, from its last hello (0 when unknown).
    pub free_memory_mb: u64,
    /// Taken out of placement (DockerMod's `unregister`).
    pub drained: bool,
    /// Containers bosun placed there and still counts.
    pub load: u64,
}

/// Why no placement was made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    /// `instances: 0`.
    #[error("instances must be at least 1")]
    NoInstances,
    /// No node is a candidate; the reasons, one per node.
    #[error("no live node fits: {0}")]
    NothingFits(String),
    /// The candidates together have too little free memory.
    #[error(
        "not enough free memory for {instances} containers of {memory_mb} MiB on the {candidates} candidate node(s)"
    )]
    NotEnoughMemory {
        /// Containers asked for.
        instances: u32,
        /// MiB each.
        memory_mb: u64,
        /// Nodes that could take at least one.
        candidates: usize,
    },
}

/// Why a node was not a candidate, for the error when nothing fits.
fn unfit(
    node: &Candidate,
    constraints: &BTreeMap<String, String>,
    memory_mb: u64,
) -> Option<String> {
    if node.liveness != Liveness::Alive {
        return Some(format!("{} is {:?}", node.name, node.liveness).to_lowercase());
    }
    if node.drained {
        return Some(format!(
            "{} is drained (register it again to place work there)",
            node.name
        ));
    }
    for (k, v) in constraints {
        let has = node.labels.get(k).map(String::as_str);
        if has != Some(v.as_str()) {
            return Some(format!(
                "{} has {k}={} (wants {k}={v})",
                node.name,
                has.unwrap_or("<unset>")
            ));
        }
    }
    let free_mb = node.free_memory_mb;
    if memory_mb > 0 && free_mb < memory_mb {
        return Some(format!(
            "{} has {free_mb} MiB free (wants {memory_mb} MiB)",
            node.name
        ));
    }
    None
}

/// Choose a node for each of `instances` containers of `memory_mb` MiB each.
pub fn place(
    fleet: &[Candidate],
    only: &[String],
    instances: u32,
    constraints: &BTreeMap<String, String>,
    memory_mb: u64,
) -> Result<Vec<String>, PlacementError> {
    if instances == 0 {
        return Err(PlacementError::NoInstances);
    }
    let mut reasons = Vec::new();
    // (name, free MiB, load) of every candidate.
    let mut candidates: Vec<(String, u64, u64)> = fleet
        .iter()
        .filter(|n| only.is_empty() || only.iter().any(|o| o == "*" || *o == n.name))
        .filter_map(|n| match unfit(n, constraints, memory_mb) {
            Some(reason) => {
                reasons.push(reason);
                None
            }
            None => Some((n.name.clone(), n.free_memory_mb, n.load)),
        })
        .collect();
    candidates.sort_by(|a, b| a.0.cmp(&b.0));
    if candidates.is_empty() {
        let why = if reasons.is_empty() {
            "the fleet registry is empty (no hellos yet)".to_string()
        } else {
            reasons.join("; ")
        };
        return Err(PlacementError::NothingFits(why));
    }
    let mut placed: Vec<String> = Vec::new();
    // Memory taken by this call, per candidate.
    let mut used = vec![0u64; candidates.len()];
    for _ in 0..instances {
        // The least-loaded candidate that still has room; the first by name on a tie.
        let chosen = candidates
            .iter()
            .enumerate()
            .filter(|(i, (_, free, _))| {
                memory_mb == 0 || free.saturating_sub(used[*i]) >= memory_mb
            })
            .min_by_key(|(_, (name, _, load))| (*load, name.clone()))
            .map(|(i, _)| i);
        let Some(i) = chosen else {
            return Err(PlacementError::NotEnoughMemory {
                instances,
                memory_mb,
                candidates: candidates.len(),
            });
        };
        used[i] += memory_mb;
        candidates[i].2 += 1;
        placed.push(candidates[i].0.clone());
    }
    Ok(placed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, liveness: Liveness, free_mb: u64, role: &str) -> Candidate {
        Candidate {
            name: name.into(),
            liveness,
            labels: [("role".to_string(), role.to_string())].into(),
            free_memory_mb: free_mb,
            drained: false,
            load: 0,
        }
    }

    #[test]
    fn the_least_loaded_node_comes_first_ties_by_name() {
        let mut fleet = vec![
            node("b", Liveness::Alive, 1000, "worker"),
            node("a", Liveness::Alive, 1000, "worker"),
        ];
        // One at a time, with the load kept up to date: 2/2, alternating from "a".
        let mut got = vec![];
        for _ in 0..4 {
            let chosen = place(&fleet, &[], 1, &BTreeMap::new(), 0)
                .unwrap()
                .remove(0);
            fleet.iter_mut().find(|n| n.name == chosen).unwrap().load += 1;
            got.push(chosen);
        }
        assert_eq!(got, vec!["a", "b", "a", "b"]);
        // A loaded node gets nothing until the others catch up.
        fleet[0].load = 0;
        fleet[1].load = 3;
        let placed = place(&fleet, &[], 4, &BTreeMap::new(), 0).unwrap();
        assert_eq!(placed, vec!["b", "b", "b", "a"]);
    }

    #[test]
    fn a_drained_node_gets_nothing_and_is_named() {
        let mut fleet = vec![
            node("a", Liveness::Alive, 1000, "worker"),
            node("b", Liveness::Alive, 1000, "worker"),
        ];
        fleet[0].drained = true;
        assert_eq!(
            place(&fleet, &[], 3, &BTreeMap::new(), 0).unwrap(),
            vec!["b"; 3]
        );
        fleet[1].drained = true;
        let err = place(&fleet, &[], 1, &BTreeMap::new(), 0)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("a is drained") && err.contains("b is drained"),
            "{err}"
        );
    }

    #[test]
    fn spreads_evenly_over_live_nodes() {
        let fleet = vec![
            node("a", Liveness::Alive, 1000, "worker"),
            node("b", Liveness::Alive, 1000, "worker"),
            node("c", Liveness::Down, 9000, "worker"),
        ];
        let placed = place(&fleet, &[], 4, &BTreeMap::new(), 0).unwrap();
        assert_eq!(placed.iter().filter(|n| *n == "a").count(), 2);
        assert_eq!(placed.iter().filter(|n| *n == "b").count(), 2);
    }

    #[test]
    fn constraints_and_memory_filter_and_explain() {
        let fleet = vec![
            node("m", Liveness::Alive, 8000, "manager"),
            node("w", Liveness::Alive, 500, "worker"),
            node("w2", Liveness::Alive, 4000, "worker"),
        ];
        let role: BTreeMap<String, String> = [("role".to_string(), "worker".to_string())].into();
        assert_eq!(place(&fleet, &[], 1, &role, 1024).unwrap(), vec!["w2"]);
        let err = place(&fleet, &[], 1, &role, 10_000)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("m has role=manager") && err.contains("w2 has 4000 MiB free"),
            "{err}"
        );
        let err = place(&fleet, &[], 5, &role, 1000).unwrap_err().to_string();
        assert!(err.contains("not enough free memory"), "{err}");
        assert_eq!(
            place(&fleet, &["w".into()], 1, &role, 0).unwrap(),
            vec!["w"]
        );
    }
}
