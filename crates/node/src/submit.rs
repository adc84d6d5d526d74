//! [`Submitter`]: the one way messages enter the outbox, for the node's facade, its
//! handlers' follow-up messages, hellos, schedules and error reports alike.

use std::sync::Arc;

use bosun_proto::wire;
use bosun_proto::{Message, Method};
use bosun_store::{Store, StoreError};
use tokio::sync::Notify;

use crate::audit::AuditLog;
use crate::config::Config;
use crate::handles::FleetView;
use crate::metrics::Metrics;
use crate::node::{SubmitError, Submitted, now_millis};

/// Validates messages and queues them durably in the outbox. Clones share it.
#[derive(Clone)]
pub(crate) struct Submitter {
    parts: Arc<SubmitterParts>,
}

/// What a [`Submitter`] uses.
pub(crate) struct SubmitterParts {
    pub config: Arc<Config>,
    /// Refuse destinations other than this node (the in-process transport).
    pub standalone: bool,
    pub store: Store,
    /// Wakes the scheduler when a message with a `schedule` is queued.
    pub schedules: Arc<Notify>,
    pub metrics: Metrics,
    pub audit: Option<Arc<AuditLog>>,
    /// For placement and `toNodes: ["*"]`.
    pub fleet: FleetView,
}

impl Submitter {
    /// A submitter made of `parts`.
    pub fn new(parts: SubmitterParts) -> Submitter {
        Submitter {
            parts: Arc::new(parts),
        }
    }

    /// The store it queues into (for read-only looks: queue depths).
    pub(crate) fn store(&self) -> &Store {
        &self.parts.store
    }

    /// [`Submitter::submit`] for new work from outside the node (the CLI, the socket, the
    /// APIs): refused while the free space is below the reserve, so that the space left
    /// goes to the results of work already accepted.
    pub async fn submit_from_outside(
        &self,
        messages: Vec<Message>,
    ) -> Result<Vec<Submitted>, SubmitError> {
        // While the store refuses writes, say why (a full disk) rather than the reserve.
        if let bosun_store::Health::Faulted(fault) = self.parts.store.health() {
            return Err(SubmitError::Store(fault.error()));
        }
        if let Some(low) = self.parts.store.below_reserve() {
            return Err(SubmitError::DiskReserve {
                path: low.path,
                free_bytes: low.free_bytes,
                reserve_bytes: low.reserve_bytes,
            });
        }
        self.submit(messages).await
    }

    /// Validate and queue messages; see [`crate::Node::submit`]. The node's own messages
    /// (results, hellos, error reports, handlers' follow-ups) come this way and are not
    /// held back by the free-space reserve.
    pub async fn submit(&self, messages: Vec<Message>) -> Result<Vec<Submitted>, SubmitError> {
        let parts = &*self.parts;
        if messages.is_empty() {
            return Err(SubmitError::Empty);
        }
        let now = now_millis();
        let mut receipts = Vec::new();
        let mut queued = Vec::new();
        let mut ids_in_batch = std::collections::HashSet::new();
        for (index, message) in messages.into_iter().enumerate() {
            let invalid = |reason: String| SubmitError::Invalid { index, reason };
            message.validate().map_err(|e| invalid(e.to_string()))?;
            if let Some(id) = &message.id
                && !ids_in_batch.insert(id.clone())
            {
                return Err(invalid(format!(
                    "field `id`: {id} appears twice in this batch"
                )));
            }
            let method = message
                .parsed_method()
                .map_err(|e| invalid(e.to_string()))?;
            if method == Method::Result {
                return Err(invalid(
                    "`result` messages are replies made by nodes; they cannot be submitted".into(),
                ));
            }
            let mut destinations = message.destinations();
            if let Some(instances) = message.instances {
                let memory_mb = message
                    .data
                    .first()
                    .and_then(|d| {
                        serde_json::from_str::<bosun_proto::container::ContainerSpec>(d).ok()
                    })
                    .and_then(|s| s.memory_mb)
                    .unwrap_or(0);
                let rows = parts.fleet.at(now)?;
                let loads = parts.fleet.loads(&rows, now);
                tracing::debug!(?loads, "placement loads");
                let fleet: Vec<bosun_core::Candidate> = rows
                    .iter()
                    // Only nodes whose hellos are signed by an identity take work.
                    .filter(|n| !n.unverified)
                    .map(|n| bosun_core::Candidate {
                        load: loads.get(&n.name).copied().unwrap_or(0),
                        ..n.candidate()
                    })
                    .collect();
                destinations = bosun_core::placement::place(
                    &fleet,
                    &destinations,
                    instances,
                    &message.constraints,
                    memory_mb,
                )
                .map_err(|e| invalid(e.to_string()))?;
            } else if destinations.iter().any(|d| d == "*") {
                let fleet = parts.fleet.at(now)?;
                if fleet.is_empty() {
                    return Err(invalid(format!(
                        "toNodes [\"*\"] means every node in the fleet registry, and {} has heard no hellos; send it to the central node, list the nodes by name, or set fleet_view = \"on\" on this node to hear every node's announced hellos",
                        parts.config.name
                    )));
                }
                destinations.retain(|d| d != "*");
                for row in fleet {
                    if !destinations.contains(&row.name) {
                        destinations.push(row.name);
                    }
                }
            }
            let fan_out = destinations.len() > 1 || message.instances.is_some();
            // How many deliveries each destination got so far (placement may repeat one).
            let mut copies: std::collections::HashMap<String, u32> = Default::default();
            for to in destinations {
                if parts.standalone && to != parts.config.name.as_str() {
                    return Err(invalid(format!(
                        "node {to:?} is not reachable: this node ({}) runs standalone on the in-process transport; start every node with --broker nats://HOST:PORT to reach other nodes",
                        parts.config.name
                    )));
                }
                let copy = copies.entry(to.clone()).or_default();
                let mut m = message.for_destination(&to, fan_out.then_some(*copy));
                *copy += 1;
                m.from_node = Some(parts.config.name.to_string());
                m.created_at = Some(now);
                // No message waits for ever unless it says so (`ttl: 0`).
                if m.ttl.is_none() && parts.config.default_ttl_secs > 0 {
                    m.ttl = Some(parts.config.default_ttl_secs);
                }
                let size = wire::request_size(&m);
                if size > parts.config.max_message_bytes {
                    return Err(invalid(format!(
                        "message is {size} bytes; the limit is {} (max_message_bytes)",
                        parts.config.max_message_bytes
                    )));
                }
                let receipt = Submitted {
                    id: m.id().to_string(),
                    to_node: to.clone(),
                    method: m.method.clone(),
                };
                // A known id: the same message again is an idempotent ok; another one
                // under that id is refused (the store checks again, in its commit).
                // An id made here just now is new; one the caller chose may be a
                // re-submit, answered from what was queued then.
                if message.id.is_some()
                    && let Some(existing) = parts.store.sent(m.id())?
                {
                    if !bosun_store::same_submission(&existing.message, &m) {
                        return Err(invalid(
                            StoreError::IdConflict {
                                id: m.id().to_string(),
                            }
                            .to_string(),
                        ));
                    }
                    receipts.push(receipt);
                    continue;
                }
                if message.instances.is_some() {
                    // Counted in this node's view of the loads until a hello counts it.
                    parts.fleet.placed(&to, m.id(), now);
                }
                receipts.push(receipt);
                queued.push(m);
            }
        }
        if queued.is_empty() {
            return Ok(receipts);
        }
        let scheduled = queued.iter().any(|m| m.schedule.is_some());
        if let Some(audit) = &parts.audit {
            let lines = crate::audit::Lines::default();
            for m in &queued {
                lines.add("submitted", m);
            }
            audit.append(lines);
        }
        for m in &queued {
            let state = crate::events::MessageState {
                id: m.id(),
                method: &m.method,
                state: "queued",
            };
            state.emit(&parts.metrics);
        }
        // The store starts each new message's schedule in the same commit.
        // The store hands what it queued to the outbox loop itself, in commit order.
        parts.store.submit(queued, now).await?;
        if scheduled {
            parts.schedules.notify_one();
        }
        Ok(receipts)
    }

    /// Queue one run of the schedule of the message `template_id`: `repeat`, a fresh
    /// copy of it, queued in the commit that advances the schedule. Returns false when no
    /// run was due (nothing queued).
    pub async fn submit_repeat(
        &self,
        template_id: &str,
        repeat: Message,
        now: u64,
    ) -> Result<bool, SubmitError> {
        let parts = &*self.parts;
        if parts
            .store
            .schedule_run(template_id, repeat.clone(), now)
            .await?
            .is_none()
        {
            return Ok(false);
        }
        if let Some(audit) = &parts.audit {
            audit.record("submitted", &repeat);
        }
        crate::events::MessageState {
            id: repeat.id(),
            method: &repeat.method,
            state: "queued",
        }
        .emit(&parts.metrics);
        Ok(true)
    }
}
