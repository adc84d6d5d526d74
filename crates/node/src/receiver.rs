//! Every arrival on `<prefix>.<node>.>`: status notes, results, and requests to run.
//!
//! A request is validated, recorded durably in the inbox (deduplicated by id) and only
//! then ACKed. A request that cannot be read or is refused gets an ACK that says why, and
//! the node goes on. Each arrival is handled in its own task so that many arrivals share
//! one group commit.

use std::sync::Arc;

use bosun_core::Event;
use bosun_methods::Served;
use bosun_proto::wire::{
    self, Ack, BATCH_TOKEN, QUERY_TOKEN, QueryAnswer, STATUS_TOKEN, WIRE_VERSION,
};
use bosun_proto::{Message, Method};
use bosun_store::Receipt;
use bosun_store::Store;
use bosun_trust::{Peer, Policy};
use bytes::Bytes;
use futures::StreamExt;
use std::sync::RwLock;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::audit::AuditLog;

use crate::config::Config;
use crate::errorlog::ErrorEntry;
use crate::executor::Inbox;
use crate::handles::{ErrorReporter, FinishedIds, OutboxHandle};
use crate::metrics::Metrics;
use crate::node::now_millis;
use crate::sinks::Sinks;

/// What the receiver uses for each arrival.
pub(crate) struct Receiver {
    pub config: Arc<Config>,
    pub store: Store,
    pub metrics: Metrics,
    pub audit: Option<Arc<AuditLog>>,
    /// Where new requests wait for their run, or start at once.
    pub inbox: Arc<Inbox>,
    /// Results settle their message in the outbox loop.
    pub outbox: OutboxHandle,
    pub finished: FinishedIds,
    pub reporter: ErrorReporter,
    /// Which methods this node serves, and from which senders.
    pub served: Arc<RwLock<Served>>,
    pub sinks: Sinks,
    /// Each arrival runs in its own task on it.
    pub tracker: TaskTracker,
    /// What signers may run here (with their grants).
    pub policy: Arc<Policy>,
    /// The trust that checks operators' signatures, on a transport that seals.
    pub trust: Option<Arc<bosun_trust::Trust>>,
    /// Requests of batches handled at once (each frame also holds one place among
    /// [`MAX_ARRIVALS_AT_ONCE`]).
    pub batched: Arc<tokio::sync::Semaphore>,
}

/// Arrivals handled at once. More wait in the subscription (and, past its capacity, at
/// the sender, which resends): memory stays bounded under a flood.
const MAX_ARRIVALS_AT_ONCE: usize = 4096;

/// The places for requests of batches: as many again as for frames. A batch takes all
/// of its places at once, and only after its frame's place, so waiting can never go
/// round in a circle.
pub(crate) fn batch_permits() -> Arc<tokio::sync::Semaphore> {
    Arc::new(tokio::sync::Semaphore::new(MAX_ARRIVALS_AT_ONCE))
}

/// Most bytes of ACKs in a batch answer: a resend of finished messages is answered
/// with their outcomes, each up to `output_limit_bytes`, and the whole answer must stay
/// under the broker's `max_payload` (1 MiB by default). Past it, an ACK goes without the
/// outcome, and the sender asks for the result later, as for any ACKed message.
const BATCH_ANSWER_BYTES: usize = 512 * 1024;

pub(crate) async fn run(
    receiver: Arc<Receiver>,
    mut subscription: bosun_bus::Subscription,
    shutdown: CancellationToken,
) {
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_ARRIVALS_AT_ONCE));
    loop {
        tokio::select! {
            next = subscription.next() => match next {
                Some(incoming) => {
                    let Ok(permit) = permits.clone().acquire_owned().await else { break };
                    let tracker = receiver.tracker.clone();
                    let receiver = receiver.clone();
                    tracker.spawn(async move {
                        handle(receiver, incoming).await;
                        drop(permit);
                    });
                }
                None => {
                    tracing::warn!("subscription ended");
                    break;
                }
            },
            _ = shutdown.cancelled() => break,
        }
    }
}

fn query_answer(
    id: &str,
    state: Option<bosun_proto::State>,
    outcome: Option<bosun_proto::Outcome>,
    refused: Option<String>,
) -> Bytes {
    Bytes::from(wire::encode(&QueryAnswer {
        v: WIRE_VERSION,
        id: id.to_string(),
        state,
        outcome,
        refused,
    }))
}

/// True when the frame's proven sender is the node `name` (or cannot be proven on this
/// transport: in process, or `insecure_open`).
fn is_peer(own: &str, peer: &Peer, name: &str) -> bool {
    match peer {
        Peer::Unchecked | Peer::Open => true,
        Peer::Myself => name == own,
        Peer::Node(id) => id.name() == name,
    }
}

impl Receiver {
    fn own(&self) -> &str {
        self.config.name.as_str()
    }
}

/// Refuse an arrival: log and count it, and write it to the audit and error logs.
fn refuse(
    receiver: &Arc<Receiver>,
    subject: &str,
    from: Option<&str>,
    id: Option<&str>,
    kind: &'static str,
    reason: &str,
) {
    crate::events::Refused {
        subject,
        from,
        kind,
        reason,
    }
    .emit(&receiver.metrics);
    if let Some(audit) = &receiver.audit {
        audit.refused(subject, from, id, reason);
    }
    receiver.reporter.report(&ErrorEntry {
        at: now_millis(),
        node: receiver.config.name.as_str(),
        kind: "rejected",
        message_id: id.filter(|s| !s.is_empty()),
        to_node: from,
        method: subject.rsplit('.').next(),
        reason,
    });
}

fn ack(id: &str, duplicate: bool, rejected: Option<String>) -> Bytes {
    Bytes::from(wire::encode(&Ack {
        v: WIRE_VERSION,
        id: id.to_string(),
        duplicate,
        rejected,
        state: None,
        outcome: None,
    }))
}

/// The ACK of a resend: the message is already here. It says how far it got and, once
/// finished, carries its outcome, so a sender that lost the reply learns the result.
fn duplicate_ack(receiver: &Receiver, id: &str, state: bosun_proto::State) -> Bytes {
    let outcome = if state.is_terminal() {
        receiver
            .store
            .inbox(id)
            .ok()
            .flatten()
            .and_then(|r| r.outcome)
    } else {
        None
    };
    let rejected = (state == bosun_proto::State::Rejected).then(|| {
        outcome
            .as_ref()
            .and_then(|o| o.error.clone())
            .unwrap_or_else(|| "refused earlier".to_string())
    });
    Bytes::from(wire::encode(&Ack {
        v: WIRE_VERSION,
        id: id.to_string(),
        duplicate: true,
        rejected,
        state: Some(state),
        outcome,
    }))
}

async fn handle(receiver: Arc<Receiver>, mut incoming: bosun_bus::Incoming) {
    // Every arrival is recorded: while the store is far behind, wait (the sender
    // resends if its ACK timeout passes) rather than queue writes without bound.
    receiver.store.room().await;
    let token = incoming.subject.rsplit('.').next();
    if let Some(bosun_trust::FrameRefusal::BadMac(from)) = &incoming.refused {
        // A pair key from before a key change: the transport answers "sign it", and the
        // sender sends the same frame again, signed. Not an attack, not a refusal.
        tracing::debug!(from, "MAC from an old pair key; asking for a signature");
        if let Err(e) = incoming.respond(Bytes::new()).await {
            tracing::debug!(error = %e, "cannot ask for a signature");
        }
        return;
    }
    if let Some(refusal) = incoming.refused.clone() {
        // Nothing of a frame whose seal fails is read: the refusal says why, and is all
        // the sender (who may not be who it claims) gets back.
        let reason = refusal.to_string();
        refuse(
            &receiver,
            &incoming.subject,
            None,
            None,
            refusal.kind(),
            &reason,
        );
        let answer = match token {
            Some(STATUS_TOKEN) => return,
            Some(QUERY_TOKEN) => query_answer("", None, None, Some(reason)),
            _ => ack("", false, Some(reason)),
        };
        if let Err(e) = incoming.respond(answer).await {
            tracing::debug!(error = %e, "cannot send a refusal");
        }
        return;
    }
    if token == Some(STATUS_TOKEN) {
        if let Ok(note) = wire::decode_status(&incoming.payload)
            && note.state == bosun_proto::State::Running
        {
            // Only the node the message went to may say it started.
            let sent_to = receiver.store.sent_brief(&note.id).ok().flatten();
            let destination = sent_to.as_ref().map(|r| r.message.destination());
            if destination.is_some_and(|d| is_peer(receiver.own(), &incoming.peer, d)) {
                receiver
                    .store
                    .note(&note.id, vec![(Event::Started, note.at, None)]);
            } else {
                let reason = format!("status note for {} from a node it was not sent to", note.id);
                refuse(
                    &receiver,
                    &incoming.subject,
                    incoming.peer.name(),
                    Some(&note.id),
                    "sender",
                    &reason,
                );
            }
        }
        return;
    }
    let answer = match incoming.subject.rsplit('.').next() {
        Some(QUERY_TOKEN) => query(&receiver, &incoming).await,
        Some(BATCH_TOKEN) => process_batch(&receiver, &incoming).await,
        _ => process(&receiver, &incoming).await,
    };
    if let Err(e) = incoming.respond(answer).await {
        tracing::debug!(error = %e, "cannot send ACK; the sender will resend");
    }
}

/// Decide, record, and return the ACK to send (empty: not acknowledged, the sender
/// resends).
async fn process(receiver: &Arc<Receiver>, incoming: &bosun_bus::Incoming) -> Bytes {
    if crate::disk::holds_arrival(&receiver.store, &incoming.subject) {
        return Bytes::new();
    }
    arrival(receiver, incoming, &incoming.payload, None).await
}

/// A batch: each request is decided and recorded as if it had come alone, side by side
/// (so that their records share commits), and the answer carries their ACKs in order. A
/// batch that cannot be read is refused whole, nothing of it recorded; its sender then
/// sends the requests one by one.
async fn process_batch(receiver: &Arc<Receiver>, incoming: &bosun_bus::Incoming) -> Bytes {
    let requests = match wire::decode_batch(&incoming.payload) {
        Ok(requests) => requests,
        Err(e) => {
            let reason = format!("batch refused: {e}");
            log_refusal(receiver, None, None, &reason);
            return ack("", false, Some(reason));
        }
    };
    // `decode_batch` took at most `MAX_BATCH` (256) requests.
    let Ok(_places) = receiver.batched.acquire_many(requests.len() as u32).await else {
        return Bytes::new();
    };
    let lines = crate::audit::Lines::default();
    let mut acks = futures::future::join_all(
        requests
            .iter()
            .map(|payload| arrival(receiver, incoming, payload, Some(&lines))),
    )
    .await;
    if let Some(audit) = &receiver.audit {
        audit.append(lines);
    }
    slim_to_fit(&mut acks, BATCH_ANSWER_BYTES);
    Bytes::from(wire::encode_batch_ack(acks.iter().map(|a| a.as_ref())))
}

/// Keep a batch answer within `budget` bytes: the largest ACKs that carry an outcome
/// (resends of finished messages) go without it, and without their state, so that the
/// sender takes each as a plain ACK and asks for the result later.
fn slim_to_fit(acks: &mut [Bytes], budget: usize) {
    let mut total: usize = acks.iter().map(Bytes::len).sum();
    if total <= budget {
        return;
    }
    let mut largest: Vec<usize> = (0..acks.len()).collect();
    largest.sort_by_key(|&i| std::cmp::Reverse(acks[i].len()));
    for i in largest {
        if total <= budget {
            return;
        }
        let Ok(mut ack) = wire::decode_ack(&acks[i]) else {
            continue;
        };
        if ack.outcome.is_none() {
            continue;
        }
        ack.outcome = None;
        ack.state = None;
        let slim = Bytes::from(wire::encode(&ack));
        total = total - acks[i].len() + slim.len();
        acks[i] = slim;
    }
}

/// One request, alone or from a batch (`batch`: the disk reserve is checked here, by
/// its method, since the batch's subject names none; its audit line goes with the
/// batch's, written when the batch is answered).
async fn arrival(
    receiver: &Arc<Receiver>,
    incoming: &bosun_bus::Incoming,
    payload: &[u8],
    batch: Option<&crate::audit::Lines>,
) -> Bytes {
    let now = now_millis();
    let max = receiver.config.max_message_bytes;
    if payload.len() > max {
        let reason = format!(
            "message of {} bytes exceeds this node's limit of {max} bytes (max_message_bytes)",
            payload.len()
        );
        log_refusal(receiver, None, None, &reason);
        return ack("", false, Some(reason));
    }
    let request = match wire::decode_request(payload) {
        Ok(r) => r,
        Err(e) => {
            let reason = e.to_string();
            log_refusal(receiver, None, None, &reason);
            return ack("", false, Some(reason));
        }
    };
    // A batch's subject names no method: this request's own subject stands in for it
    // in what is logged of it.
    let subject = if batch.is_some() {
        if crate::disk::holds_method(&receiver.store, &request.msg.method) {
            return Bytes::new();
        }
        receiver.store.room().await;
        std::borrow::Cow::Owned(wire::subject(
            &receiver.config.subject_prefix,
            receiver.own(),
            &request.msg.method,
        ))
    } else {
        std::borrow::Cow::Borrowed(incoming.subject.as_str())
    };
    let subject = subject.as_ref();
    let message = request.msg;
    let id = message.id().to_string();
    // Who sent it is proven by the seal: the message must name that node as its sender.
    // A message that lies about it is not recorded (an impostor must not fill the inbox).
    let claimed = message.from_node.as_deref().unwrap_or_default();
    if !is_peer(receiver.own(), &incoming.peer, claimed) {
        let reason = format!(
            "signed by {:?} but names fromNode {claimed:?}; a node sends only as itself",
            incoming.peer.name().unwrap_or(receiver.own())
        );
        refuse(
            receiver,
            subject,
            incoming.peer.name(),
            Some(&id),
            "sender",
            &reason,
        );
        return ack(&id, false, Some(reason));
    }
    // A resend is answered from the record, before any check: a message that ran is
    // never refused afterwards (say, after a policy change), so its real result stands.
    if !id.is_empty()
        && let Ok(Some(known)) = receiver.store.inbox(&id)
    {
        if known.message.from_node != message.from_node {
            let reason = format!("id {id} is already used by a message from another sender");
            log_refusal(receiver, Some(&message), Some(&id), &reason);
            return ack(&id, false, Some(reason));
        }
        return match receiver.store.receive(message, now).await {
            Ok(Receipt::Duplicate(state)) => duplicate_ack(receiver, &id, state),
            Ok(Receipt::New(_)) => ack(&id, false, None),
            Err(e) => {
                tracing::error!(error = %e, "cannot record a resend; not acknowledging");
                Bytes::new()
            }
        };
    }
    if let Err(refusal) = check(receiver, &incoming.peer, &message) {
        let reason = refusal.to_string();
        if let Some(kind) = refusal.trust_kind() {
            refuse(receiver, subject, Some(claimed), Some(&id), kind, &reason);
        } else {
            log_refusal(receiver, Some(&message), Some(&id), &reason);
        }
        if ulid::Ulid::from_string(&id).is_ok() {
            match receiver.store.reject(message, reason.clone(), now).await {
                Ok(Receipt::Duplicate(_)) => return ack(&id, true, Some(reason)),
                Ok(Receipt::New(_)) => {}
                Err(e) => tracing::error!(error = %e, "cannot record a refused message"),
            }
        }
        return ack(&id, false, Some(reason));
    }
    let method = message.parsed_method().expect("checked");
    if method.is_absorbed_on_arrival() {
        return absorb(receiver, &incoming.peer, message, method, now, batch).await;
    }
    // A message with nothing ahead of it runs as soon as it is recorded, and one with
    // side effects has its start recorded with its arrival: one fsynced commit fewer.
    let arrival = receiver.inbox.arrive(&message, method);
    let durable_start = (arrival.starts_now() && method.has_side_effects()).then_some(now);
    let recorded = match durable_start {
        Some(_) => receiver.store.receive_started(message.clone(), now).await,
        None => receiver.store.receive(message.clone(), now).await,
    };
    match recorded {
        Ok(Receipt::New(seq)) => {
            audit_received(receiver, batch, &message);
            let event = crate::events::MessageState {
                id: &id,
                method: &message.method,
                state: "received",
            };
            event.emit(&receiver.metrics);
            arrival.recorded(seq, message, durable_start);
            ack(&id, false, None)
        }
        Ok(Receipt::Duplicate(state)) => {
            tracing::debug!(
                id,
                state = state.name(),
                "duplicate arrival; ACKed again, not run again"
            );
            duplicate_ack(receiver, &id, state)
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot record a message; not acknowledging");
            Bytes::new()
        }
    }
}

/// Answer a sender's question about one message it sent here; with `cancel`, cancel it
/// if it has not started (and remember the id if it never arrived).
async fn query(receiver: &Arc<Receiver>, incoming: &bosun_bus::Incoming) -> Bytes {
    let answer = query_answer;
    if incoming.payload.len() > 4096 {
        return answer("", None, None, Some("query too large".into()));
    }
    let query = match wire::decode_query(&incoming.payload) {
        Ok(q) => q,
        Err(e) => return answer("", None, None, Some(e.to_string())),
    };
    let id = query.id.as_str();
    if !is_peer(receiver.own(), &incoming.peer, &query.from) {
        let reason = format!(
            "query about {id} signed by {:?}, not by {:?}",
            incoming.peer.name().unwrap_or_default(),
            query.from
        );
        refuse(
            receiver,
            &incoming.subject,
            incoming.peer.name(),
            Some(id),
            "sender",
            &reason,
        );
        return answer(id, None, None, Some(reason));
    }
    let known = match receiver.store.inbox(id) {
        Ok(known) => known,
        Err(e) => return answer(id, None, None, Some(format!("cannot read the inbox: {e}"))),
    };
    if let Some(record) = &known
        && record.message.from_node.as_deref() != Some(query.from.as_str())
    {
        return answer(
            id,
            None,
            None,
            Some(format!("message {id} was not sent by {}", query.from)),
        );
    }
    if !query.cancel {
        return match known {
            Some(r) => answer(id, Some(r.state), r.outcome, None),
            None => answer(id, None, None, None),
        };
    }
    if ulid::Ulid::from_string(id).is_err() {
        return answer(id, None, None, Some(format!("{id:?} is not a message id")));
    }
    match receiver
        .store
        .cancel(id, &query.from, receiver.config.name.as_str(), now_millis())
        .await
    {
        Ok(a) => {
            if a.state == Some(bosun_proto::State::Cancelled) {
                tracing::info!(id, from = query.from, "cancelled at its sender's request");
            }
            answer(id, a.state, a.outcome, None)
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot record a cancel; not answering");
            Bytes::new()
        }
    }
}

/// Why a request is refused at arrival; the text goes back in the ACK and is recorded as
/// the `rejected` reason.
#[derive(Debug, thiserror::Error)]
enum Refusal {
    /// A field the sender wrote is wrong.
    #[error(transparent)]
    Invalid(#[from] bosun_proto::ValidationError),
    /// No `id`: the sender did not submit it through a node.
    #[error("field `id`: missing; a message on the wire must carry its id")]
    MissingId,
    /// No `fromNode`: the sender did not submit it through a node.
    #[error("field `fromNode`: missing; a message on the wire must name its sender")]
    MissingSender,
    /// A `fromNode` that is not a node name.
    #[error("field `fromNode`: {0}")]
    Sender(bosun_proto::NodeNameError),
    /// Meant for another node.
    #[error("field `toNode`: this node is {this:?}, not {to:?}")]
    OtherNode {
        /// This node's name.
        this: String,
        /// The destination the message names.
        to: String,
    },
    /// A reply sink named as the method of a message that is not a reply.
    #[error(
        "{0} takes replies only (a previousMessage with a result or a chunk); name it in replyMethod instead"
    )]
    RepliesOnly(Method),
    /// A method only a node itself uses.
    #[error("method {0} is not served by this node")]
    Unserved(Method),
    /// Stopped here, or not for this sender.
    #[error(transparent)]
    NotServed(#[from] bosun_methods::ServedError),
    /// The signer's identity does not grant it.
    #[error("{who} may not run {method} {args:?}: its identity grants {grants}")]
    Grants {
        /// The signer.
        who: String,
        /// The method.
        method: &'static str,
        /// Its arguments, as matched.
        args: String,
        /// What the identity grants.
        grants: String,
    },
    /// This node's policy does not allow it.
    #[error("{who} may not run {method} {args:?} on this node: no policy rule allows it (policy)")]
    Policy {
        /// The signer.
        who: String,
        /// The method.
        method: &'static str,
        /// Its arguments, as matched.
        args: String,
    },
    /// An operator's signature that does not hold.
    #[error(transparent)]
    Operator(bosun_trust::OperatorRefusal),
    /// A reply from a node the answered message was not sent to.
    #[error("reply to {answered} from {from}, but it was sent to {to}")]
    ForeignReply {
        /// The message answered.
        answered: String,
        /// Who replied.
        from: String,
        /// Where it went.
        to: String,
    },
}

impl Refusal {
    /// The metric label of a refusal about who may do what; `None` for the others.
    fn trust_kind(&self) -> Option<&'static str> {
        match self {
            Refusal::Grants { .. } => Some("grants"),
            Refusal::Policy { .. } => Some("policy"),
            Refusal::ForeignReply { .. } => Some("sender"),
            Refusal::Operator(_) => Some("operator"),
            _ => None,
        }
    }
}

/// The arguments a grant pattern is matched against: the message's `data` joined by
/// spaces, under `sh -c` when it asks for a shell.
fn grant_args(message: &Message) -> String {
    let args = message.data.join(" ");
    if message.use_shell {
        format!("sh -c {args}")
    } else {
        args
    }
}

/// May the proven sender have `method` run here? Its identity's grants and this node's
/// policy must both allow it. A node's own messages, and arrivals on a transport that
/// proves nothing (in process, `insecure_open`), pass.
fn authorize(
    receiver: &Receiver,
    peer: &Peer,
    message: &Message,
    method: Method,
) -> Result<(), Refusal> {
    let Peer::Node(node) = peer else {
        return Ok(());
    };
    // A message an operator signed runs on the operator's authority; the node that
    // relays it needs no grant of its own for it.
    let identity = match (&message.signer, &message.signature, &receiver.trust) {
        (None, None, _) => node.clone(),
        (Some(token), Some(signature), Some(trust)) => trust
            .verify_operator(
                token,
                signature,
                |at| message.operator_signed_bytes(at),
                now_millis(),
            )
            .map_err(Refusal::Operator)?,
        _ => {
            return Err(Refusal::Operator(
                bosun_trust::OperatorRefusal::BadSignature(
                    "a message with only one of signer and signature".into(),
                ),
            ));
        }
    };
    let args = grant_args(message);
    let name = method.name();
    if !identity.allows(name, &args) {
        return Err(Refusal::Grants {
            who: identity.name().to_string(),
            method: name,
            args,
            grants: identity.grants_text(),
        });
    }
    if !receiver.policy.allows(identity.name(), name, &args) {
        return Err(Refusal::Policy {
            who: identity.name().to_string(),
            method: name,
            args,
        });
    }
    Ok(())
}

/// The checks a request must pass before it is recorded.
fn check(receiver: &Receiver, peer: &Peer, message: &Message) -> Result<(), Refusal> {
    message.validate()?;
    if message.id.is_none() {
        return Err(Refusal::MissingId);
    }
    let Some(from) = message.from_node.as_deref() else {
        return Err(Refusal::MissingSender);
    };
    bosun_proto::validate_node_name(from).map_err(Refusal::Sender)?;
    if message.destination() != receiver.config.name.as_str() {
        return Err(Refusal::OtherNode {
            this: receiver.config.name.to_string(),
            to: message.destination().to_string(),
        });
    }
    let method = message.parsed_method()?;
    if method.is_reply_sink() && !message.is_reply() {
        return Err(Refusal::RepliesOnly(method));
    }
    if method.role() == bosun_proto::Role::Unserved {
        return Err(Refusal::Unserved(method));
    }
    if let Some(answered) = message.previous_message.as_deref()
        && (method.is_absorbed_on_arrival() || method.is_reply_sink())
        && let Ok(Some(record)) = receiver.store.sent_brief(answered)
        && record.message.destination() != from
    {
        return Err(Refusal::ForeignReply {
            answered: answered.to_string(),
            from: from.to_string(),
            to: record.message.destination().to_string(),
        });
    }
    if method != Method::Result {
        receiver
            .served
            .read()
            .expect("served lock")
            .allows(method, from)?;
    }
    if !method.is_absorbed_on_arrival() && !method.is_reply_sink() {
        authorize(receiver, peer, message, method)?;
    }
    Ok(())
}

/// Take in a message that needs no run: a reply, a hello, an error report. It is
/// recorded (deduplicated) durably, then applied: results and chunks to the sent message
/// and its sink, hellos to the fleet registry, errors to the error log.
async fn absorb(
    receiver: &Arc<Receiver>,
    peer: &Peer,
    message: Message,
    method: Method,
    now: u64,
    batch: Option<&crate::audit::Lines>,
) -> Bytes {
    let id = message.id().to_string();
    let from = message.from_node.clone().unwrap_or_default();
    let fleet = (method == Method::Hello)
        .then(|| crate::fleet::record_from_hello(&from, &message, now, peer));
    let receipt = match receiver.store.absorb(message.clone(), now, fleet).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot record an arrival; not acknowledging");
            // No ACK: the sender resends and it is recorded next time.
            return Bytes::new();
        }
    };
    let duplicate = matches!(receipt, Receipt::Duplicate(_));
    if !duplicate {
        audit_received(receiver, batch, &message);
        match method {
            Method::Hello => tracing::debug!(from, "hello"),
            Method::CaptureShip => crate::fleet::keep_shipped_capture(
                &receiver.config.results_path(),
                &from,
                &message.data,
            ),
            Method::ErrorLog => receiver.reporter.append_remote(&from, &message.data),
            _ => {
                if let Some(answered) = message.previous_message.clone() {
                    receiver.sinks.deliver(&message, method).await;
                    if let Some(outcome) = &message.result {
                        result_arrived(receiver, &answered, outcome.status, now);
                        receiver.finished.announce(&answered);
                        receiver.outbox.settled(answered);
                    }
                }
            }
        }
    }
    ack(&id, duplicate, None)
}

/// The audit line of a new arrival: written now, or with its batch's.
fn audit_received(receiver: &Receiver, batch: Option<&crate::audit::Lines>, message: &Message) {
    match (&receiver.audit, batch) {
        (Some(_), Some(lines)) => lines.add("received", message),
        (Some(audit), None) => audit.record("received", message),
        (None, _) => {}
    }
}

fn log_refusal(
    receiver: &Arc<Receiver>,
    message: Option<&Message>,
    id: Option<&str>,
    reason: &str,
) {
    receiver.reporter.report(&ErrorEntry {
        at: now_millis(),
        node: receiver.config.name.as_str(),
        kind: "rejected",
        message_id: id.filter(|s| !s.is_empty()),
        to_node: message.and_then(|m| m.from_node.as_deref()),
        method: message.map(|m| m.method.as_str()),
        reason,
    });
}

/// Count a result at the sender, with its latency from submit.
fn result_arrived(receiver: &Receiver, answered: &str, status: bosun_proto::Status, now: u64) {
    let Ok(Some(record)) = receiver.store.sent_brief(answered) else {
        return;
    };
    let method = record.message.method.as_str();
    if let Some(disagreement) = &record.disagreement
        && record.history.last().and_then(|h| h.note.as_ref()) == Some(disagreement)
    {
        tracing::warn!(
            id = answered,
            disagreement,
            "the destination contradicts this node's record; its outcome wins"
        );
        receiver.reporter.report(&ErrorEntry {
            at: now,
            node: receiver.config.name.as_str(),
            kind: "disagreement",
            message_id: Some(answered),
            to_node: Some(record.message.destination()),
            method: Some(method),
            reason: disagreement,
        });
    }
    let submitted = record.history.first().map(|h| h.at).unwrap_or(now);
    crate::events::ResultArrived {
        id: answered,
        method,
        latency_seconds: now.saturating_sub(submitted) as f64 / 1000.0,
    }
    .emit(&receiver.metrics);
    let state = bosun_proto::State::from_status(status);
    crate::events::MessageState {
        id: answered,
        method,
        state: state.name(),
    }
    .emit(&receiver.metrics);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_answer_too_large_for_the_broker_sends_the_largest_outcomes_later() {
        let ack = |id: &str, stdout_len: usize| {
            Bytes::from(wire::encode(&Ack {
                v: WIRE_VERSION,
                id: id.into(),
                duplicate: true,
                rejected: None,
                state: Some(bosun_proto::State::Done),
                outcome: (stdout_len > 0).then(|| bosun_proto::Outcome {
                    stdout: "x".repeat(stdout_len),
                    ..bosun_proto::Outcome::bare(bosun_proto::Status::Done, "b", "", 1)
                }),
            }))
        };
        let mut acks = vec![
            ack("a", 300_000),
            ack("b", 0),
            ack("c", 310_000),
            ack("d", 290_000),
        ];
        let small = acks[1].clone();
        slim_to_fit(&mut acks, 512 * 1024);
        let total: usize = acks.iter().map(Bytes::len).sum();
        assert!(total <= 512 * 1024, "{total}");
        let back: Vec<Ack> = acks.iter().map(|a| wire::decode_ack(a).unwrap()).collect();
        let ids: Vec<&str> = back.iter().map(|a| a.id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "c", "d"], "each keeps its place and id");
        assert_eq!(acks[1], small, "an ACK without an outcome is left as it is");
        // The two largest went without their outcome and state: plain ACKs, whose
        // results the sender asks for later. The smallest kept its outcome.
        for (i, slimmed) in [(0, true), (2, true), (3, false)] {
            assert_eq!(back[i].outcome.is_none(), slimmed, "{i}");
            assert_eq!(back[i].state.is_none(), slimmed, "{i}");
            assert!(back[i].duplicate && back[i].rejected.is_none());
        }
        // Within the budget, nothing changes.
        let mut fits = vec![ack("e", 1_000), ack("f", 2_000)];
        let before = fits.clone();
        slim_to_fit(&mut fits, 512 * 1024);
        assert_eq!(fits, before);
    }

    /// Senders see these texts in their `rejected` reasons: they must not drift.
    #[test]
    fn refusals_read_as_before() {
        let cases = [
            (
                Refusal::MissingId,
                "field `id`: missing; a message on the wire must carry its id",
            ),
            (
                Refusal::MissingSender,
                "field `fromNode`: missing; a message on the wire must name its sender",
            ),
            (
                Refusal::Sender(bosun_proto::NodeNameError::Empty),
                "field `fromNode`: node name is empty",
            ),
            (
                Refusal::OtherNode {
                    this: "a".into(),
                    to: "b".into(),
                },
                r#"field `toNode`: this node is "a", not "b""#,
            ),
            (
                Refusal::Unserved(Method::Hello),
                "method hello is not served by this node",
            ),
        ];
        for (refusal, text) in cases {
            assert_eq!(refusal.to_string(), text);
        }
        let invalid = Message {
            method: "nope".into(),
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert_eq!(
            Refusal::from(invalid.clone()).to_string(),
            invalid.to_string()
        );
    }
}
