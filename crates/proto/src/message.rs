//! The message users write, in steward's field names, and its validation.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::Millis;
use crate::method::Method;
use crate::outcome::Outcome;

/// A message: what to run, where, and how hard to try.
///
/// Field names are steward's (`toNode`, `ACKTimeout`, `methodTimeout`, …) so existing
/// message files parse unchanged. Durations are whole seconds, as in steward. Unknown
/// fields are refused rather than ignored, so a misspelt option is never silently lost.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Message {
    /// ULID; assigned at submit when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The destination node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_node: Option<String>,
    /// Several destinations; `"*"` means every node in the fleet. Expanded at submit.
    /// steward's `toHosts` is the same field (both at once is a duplicate field).
    #[serde(default, skip_serializing_if = "Vec::is_empty", alias = "toHosts")]
    pub to_nodes: Vec<String>,
    /// The sending node; set at submit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_node: Option<String>,
    /// The method's arguments, e.g. the argv of a command.
    #[serde(default)]
    pub data: Vec<String>,
    /// The method, canonical (`cliCommand`) or steward (`REQCliCommand`) spelling.
    pub method: String,
    /// The method of the reply message; default `result` (store the outcome at the sender).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_method: Option<String>,
    /// Seconds to wait for the ACK before resending.
    #[serde(
        default,
        rename = "ACKTimeout",
        alias = "ackTimeout",
        skip_serializing_if = "Option::is_none"
    )]
    pub ack_timeout: Option<u64>,
    /// How many times to resend after an ACK timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
    /// `ACKTimeout` for the reply message.
    #[serde(
        default,
        rename = "replyACKTimeout",
        alias = "replyAckTimeout",
        skip_serializing_if = "Option::is_none"
    )]
    pub reply_ack_timeout: Option<u64>,
    /// `retries` for the reply message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_retries: Option<u32>,
    /// Seconds the method may run before its whole process group is killed.
    #[serde(
        default,
        alias = "MethodTimeout",
        skip_serializing_if = "Option::is_none"
    )]
    pub method_timeout: Option<u64>,
    /// Where a reply sink stores the result, under the receiver's data folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub directory: Option<String>,
    /// The file name a reply sink writes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_name: Option<String>,
    /// Steward's `operation` object for `REQOpCommand`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<serde_json::Value>,
    /// `[intervalSeconds, totalSeconds]`: repeat the message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Vec<u64>>,
    /// On a reply: the id of the message it answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_message: Option<String>,
    /// Run in submit order with the sender's other ordered messages to the same node and
    /// method. Default true; `REQn…` spellings mean false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ordered: Option<bool>,
    /// Seconds after submit when delivery is abandoned and the message ends `failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u64>,
    /// Free-form labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Run `data` through `/bin/sh -c` instead of as an argv.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub use_shell: bool,
    /// Run the message again after a node restart that interrupted it, instead of
    /// reporting `interrupted`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rerun_on_restart: bool,
    /// When the message was submitted; set at submit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<Millis>,
    /// ed25519 signature over the canonical encoding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    /// The key that signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signer: Option<String>,
    /// On a `result` reply: the outcome of the message named by `previousMessage`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Outcome>,
    /// On a streamed reply: the chunk's number, from 1. Its text is in `data`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk: Option<u64>,
    /// For container methods: start this many, spread over the live nodes of the fleet
    /// registry (`toNodes`, when given, limits the candidates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instances: Option<u32>,
    /// Placement constraints: node labels that must match, e.g. `{"role": "worker"}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub constraints: BTreeMap<String, String>,
}

/// A message that failed validation: which field, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationError {
    /// The JSON field name, as the user wrote it.
    pub field: &'static str,
    /// What is wrong and what to do.
    pub reason: String,
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "field `{}`: {}", self.field, self.reason)
    }
}

impl std::error::Error for ValidationError {}

fn invalid(field: &'static str, reason: impl Into<String>) -> ValidationError {
    ValidationError {
        field,
        reason: reason.into(),
    }
}

/// Longest accepted node name.
pub const MAX_NODE_NAME: usize = 64;
/// Longest accepted timeout or ttl, in seconds (30 days).
pub const MAX_SECONDS: u64 = 30 * 24 * 3600;

/// Why a node name is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeNameError {
    /// The name has no characters.
    #[error("node name is empty")]
    Empty,
    /// The name is longer than [`MAX_NODE_NAME`].
    #[error("node name is longer than {MAX_NODE_NAME} characters")]
    TooLong,
    /// The name has a character that cannot be part of one NATS token.
    #[error("node name {name:?} has {character:?}; use only letters, digits, '_' and '-'")]
    Character {
        /// The name as given.
        name: String,
        /// The first character that is not allowed.
        character: char,
    },
}

/// Check a node name: 1 to 64 characters of `A-Z a-z 0-9 _ -`, so it is one NATS token.
pub fn validate_node_name(name: &str) -> Result<(), NodeNameError> {
    if name.is_empty() {
        return Err(NodeNameError::Empty);
    }
    if name.len() > MAX_NODE_NAME {
        return Err(NodeNameError::TooLong);
    }
    if let Some(character) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        return Err(NodeNameError::Character {
            name: name.to_string(),
            character,
        });
    }
    Ok(())
}

/// Why JSON text could not be read as messages.
#[derive(Debug, thiserror::Error)]
pub enum MessageParseError {
    /// One message object that does not parse.
    #[error("malformed message: {0}")]
    Message(serde_json::Error),
    /// A text that began like an array but is not a JSON array.
    #[error("malformed message array: {0}")]
    Array(serde_json::Error),
    /// One element of an array of messages that does not parse.
    #[error("message {index}: malformed: {error}")]
    Element {
        /// The element's position in the array, from 0.
        index: usize,
        /// What is wrong with it, and where.
        error: serde_json::Error,
    },
}

impl Message {
    /// The bytes an operator signs for this message, as sent to one node: a fixed
    /// encoding of every field that changes what runs there (id, destination, method,
    /// arguments, shell, time limit, rerun) and the time of signing. Fields a node may
    /// fill in on the way (`ttl`, `ordered`, the method's spelling) are left out.
    pub fn operator_signed_bytes(&self, signed_at: Millis) -> Vec<u8> {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Signed<'a> {
            v: u32,
            signed_at: Millis,
            id: &'a str,
            to_node: &'a str,
            method: &'a str,
            data: &'a [String],
            use_shell: bool,
            method_timeout: Option<u64>,
            rerun_on_restart: bool,
        }
        let method = self
            .parsed_method()
            .map(|m| m.name())
            .unwrap_or(self.method.as_str());
        serde_json::to_vec(&Signed {
            v: 1,
            signed_at,
            id: self.id.as_deref().unwrap_or_default(),
            to_node: self.to_node.as_deref().unwrap_or_default(),
            method,
            data: &self.data,
            use_shell: self.use_shell,
            method_timeout: self.method_timeout,
            rerun_on_restart: self.rerun_on_restart,
        })
        .expect("plain fields serialise")
    }

    /// Parse one message from JSON, with a clear error on bad input.
    pub fn from_json(text: &str) -> Result<Message, MessageParseError> {
        serde_json::from_str(text).map_err(MessageParseError::Message)
    }

    /// Parse steward input: a JSON array of messages, or a single message object.
    pub fn parse_batch(text: &str) -> Result<Vec<Message>, MessageParseError> {
        let trimmed = text.trim_start();
        if trimmed.starts_with('[') {
            let values: Vec<serde_json::Value> =
                serde_json::from_str(text).map_err(MessageParseError::Array)?;
            Message::from_json_values(values)
        } else {
            Message::from_json(text).map(|m| vec![m])
        }
    }

    /// Messages from JSON values already read, one message object each; the error names
    /// the first element that does not parse.
    pub fn from_json_values(
        values: Vec<serde_json::Value>,
    ) -> Result<Vec<Message>, MessageParseError> {
        values
            .into_iter()
            .enumerate()
            .map(|(index, value)| {
                serde_json::from_value(value)
                    .map_err(|error| MessageParseError::Element { index, error })
            })
            .collect()
    }

    /// True for a reply: it names the message it answers and carries its outcome or a
    /// chunk of its output.
    pub fn is_reply(&self) -> bool {
        self.previous_message.is_some() && (self.result.is_some() || self.chunk.is_some())
    }

    /// True for a reply the receiving node writes somewhere: a reply sink (`toFile`,
    /// `toFileAppend`, `toConsole`), or a `result` that names a `directory` or `fileName`.
    pub fn wants_sink(&self) -> bool {
        if !self.is_reply() {
            return false;
        }
        match self.parsed_method() {
            Ok(Method::Result) => self.directory.is_some() || self.file_name.is_some(),
            Ok(method) => method.is_reply_sink(),
            Err(_) => false,
        }
    }

    /// The method named, parsed.
    pub fn parsed_method(&self) -> Result<Method, ValidationError> {
        Method::parse(&self.method)
            .map(|p| p.method)
            .ok_or_else(|| {
                invalid(
                    "method",
                    format!(
                        "unknown method {:?}; known methods: {} (steward REQ… spellings work too)",
                        self.method,
                        Method::catalogue()
                    ),
                )
            })
    }

    /// The reply method, parsed; `result` when absent.
    pub fn parsed_reply_method(&self) -> Result<Method, ValidationError> {
        match &self.reply_method {
            None => Ok(Method::Result),
            Some(s) if s.is_empty() => Ok(Method::Result),
            Some(s) => Method::parse(s).map(|p| p.method).ok_or_else(|| {
                invalid(
                    "replyMethod",
                    format!(
                        "unknown reply method {s:?}; use result, toConsole, toFile or toFileAppend"
                    ),
                )
            }),
        }
    }

    /// True when this message must run in order with its stream.
    pub fn is_ordered(&self) -> bool {
        if let Some(o) = self.ordered {
            return o;
        }
        !Method::parse(&self.method).is_some_and(|p| p.unordered)
    }

    /// The single destination of a normalised message.
    pub fn destination(&self) -> &str {
        self.to_node.as_deref().unwrap_or("")
    }

    /// The id of a normalised message.
    pub fn id(&self) -> &str {
        self.id.as_deref().unwrap_or("")
    }

    /// Check every field a user may write. Does not require `id`, `fromNode` or a single
    /// destination: those are filled in at submit.
    pub fn validate(&self) -> Result<(), ValidationError> {
        let method = self.parsed_method()?;
        self.parsed_reply_method()?;
        if let Some(id) = &self.id
            && ulid::Ulid::from_string(id).is_err()
        {
            return Err(invalid(
                "id",
                format!(
                    "{id:?} is not a ULID (26 characters of Crockford base32); leave it out and one is assigned"
                ),
            ));
        }
        let to_node = self.to_node.as_deref().filter(|s| !s.is_empty());
        if let Some(n) = self.instances {
            if !matches!(method, Method::ContainerRun | Method::ContainerCreate) {
                return Err(invalid(
                    "instances",
                    "only containerRun and containerCreate place instances",
                ));
            }
            if n == 0 || n > 10_000 {
                return Err(invalid(
                    "instances",
                    format!("{n} is out of range (1 to 10000)"),
                ));
            }
        }
        if to_node.is_none() && self.to_nodes.is_empty() && self.instances.is_none() {
            return Err(invalid(
                "toNode",
                "no destination; set toNode, or toNodes (\"*\" for the whole fleet)",
            ));
        }
        if let Some(n) = to_node {
            validate_node_name(n).map_err(|e| invalid("toNode", e.to_string()))?;
        }
        for n in &self.to_nodes {
            if n != "*" {
                validate_node_name(n).map_err(|e| invalid("toNodes", e.to_string()))?;
            }
        }
        if let Some(n) = &self.from_node {
            validate_node_name(n).map_err(|e| invalid("fromNode", e.to_string()))?;
        }
        for (field, v) in [
            ("ACKTimeout", self.ack_timeout),
            ("replyACKTimeout", self.reply_ack_timeout),
            ("methodTimeout", self.method_timeout),
            ("ttl", self.ttl),
        ] {
            if let Some(v) = v
                && v > MAX_SECONDS
            {
                return Err(invalid(
                    field,
                    format!("{v} seconds is more than the limit of {MAX_SECONDS} (30 days)"),
                ));
            }
        }
        if self.ack_timeout == Some(0) {
            return Err(invalid("ACKTimeout", "must be at least 1 second"));
        }
        if self.reply_ack_timeout == Some(0) {
            return Err(invalid("replyACKTimeout", "must be at least 1 second"));
        }
        if let Some(r) = self.retries
            && r > 1000
        {
            return Err(invalid(
                "retries",
                format!("{r} is more than the limit of 1000"),
            ));
        }
        if let Some(s) = &self.schedule
            && (s.len() != 2 || s[0] == 0 || s[0] > MAX_SECONDS || s[1] > MAX_SECONDS)
        {
            return Err(invalid(
                "schedule",
                "must be [intervalSeconds, totalSeconds], an interval of at least 1, both at most 30 days",
            ));
        }
        let is_command = matches!(method, Method::CliCommand | Method::CliCommandCont);
        if is_command && self.data.first().is_none_or(|p| p.is_empty()) {
            return Err(invalid(
                "data",
                "a command needs an argv, e.g. [\"uname\", \"-a\"] or [\"bash\", \"-c\", \"…\"]",
            ));
        }
        if method == Method::Result && !self.is_reply() {
            return Err(invalid(
                "previousMessage",
                "a result message must name the message it answers and carry a result or a chunk",
            ));
        }
        if self.use_shell && !matches!(method, Method::CliCommand | Method::CliCommandCont) {
            return Err(invalid("useShell", "only commands can run through a shell"));
        }
        Ok(())
    }

    /// All destinations named, in order, without duplicates; `"*"` is kept for the caller
    /// to expand.
    pub fn destinations(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let single = self.to_node.iter().filter(|s| !s.is_empty());
        for n in single.chain(self.to_nodes.iter()) {
            if !out.contains(n) {
                out.push(n.clone());
            }
        }
        out
    }

    /// Copy this message for one destination, with the canonical method name and an
    /// explicit `ordered`. `fan_out` is `Some(k)` when the message goes to more than one
    /// delivery (this is the `k`-th one to `to`, from 0): the copy then gets an id of its
    /// own, derived from the message's id when it has one (see [`fan_out_id`]), so the
    /// same message submitted again maps to the same deliveries.
    pub fn for_destination(&self, to: &str, fan_out: Option<u32>) -> Message {
        let mut m = self.clone();
        m.instances = None;
        m.constraints.clear();
        let ordered = self.is_ordered();
        if let Ok(method) = self.parsed_method() {
            m.method = method.name().to_string();
        }
        if let Ok(reply) = self.parsed_reply_method()
            && self.reply_method.is_some()
        {
            m.reply_method = Some(reply.name().to_string());
        }
        m.ordered = Some(ordered);
        m.to_node = Some(to.to_string());
        m.to_nodes.clear();
        m.id = match (&self.id, fan_out) {
            (Some(id), None) => Some(id.clone()),
            (Some(id), Some(k)) => Some(fan_out_id(id, to, k)),
            (None, _) => Some(crate::new_id()),
        };
        m
    }
}

/// The id of the `k`-th delivery to `to` of a fanned-out message with id `parent`: a
/// ULID with the parent's time part and a random part taken from a 128-bit FNV-1a hash
/// of (parent, destination, k). Deterministic and stable across releases, so a
/// re-submit finds the deliveries it made before; sorted by time like any id.
pub fn fan_out_id(parent: &str, to: &str, k: u32) -> String {
    const OFFSET: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    const PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;
    let time = ulid::Ulid::from_string(parent)
        .map(|u| u.timestamp_ms())
        .unwrap_or(0);
    let mut hash = OFFSET;
    let bytes = parent
        .bytes()
        .chain([0])
        .chain(to.bytes())
        .chain([0])
        .chain(k.to_be_bytes());
    for byte in bytes {
        hash ^= u128::from(byte);
        hash = hash.wrapping_mul(PRIME);
    }
    // The random part of a ULID is 80 bits: fold the hash's top bits into them.
    let random = (hash ^ (hash >> 80)) & ((1u128 << 80) - 1);
    ulid::Ulid::from_parts(time, random).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const STEWARD_EXAMPLE: &str = r#"[
        {
            "directory":"cli_command__result",
            "fileName": "some-file-name.result",
            "toNode": "ship1",
            "data": ["bash","-c","sleep 5 & tree ./"],
            "method":"REQCliCommand",
            "replyMethod":"REQToFileAppend",
            "ACKTimeout":5,
            "retries":3,
            "replyACKTimeout":5,
            "replyRetries":3,
            "methodTimeout": 10
        }
    ]"#;

    #[test]
    fn steward_to_hosts_is_to_nodes() {
        let m: Message = serde_json::from_str(
            r#"{"toHosts": ["central", "ship2"], "method": "REQHttpGet", "data": ["x"]}"#,
        )
        .unwrap();
        assert_eq!(m.to_nodes, vec!["central", "ship2"]);
        let both = serde_json::from_str::<Message>(
            r#"{"toHosts": ["a"], "toNodes": ["b"], "method": "ping"}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(both.contains("duplicate field"), "{both}");
    }

    #[test]
    fn steward_example_parses_with_every_field() {
        let msgs = Message::parse_batch(STEWARD_EXAMPLE).unwrap();
        assert_eq!(msgs.len(), 1);
        let m = &msgs[0];
        assert_eq!(m.to_node.as_deref(), Some("ship1"));
        assert_eq!(m.data, vec!["bash", "-c", "sleep 5 & tree ./"]);
        assert_eq!(m.parsed_method().unwrap(), Method::CliCommand);
        assert_eq!(m.parsed_reply_method().unwrap(), Method::ToFileAppend);
        assert_eq!(m.ack_timeout, Some(5));
        assert_eq!(m.retries, Some(3));
        assert_eq!(m.reply_ack_timeout, Some(5));
        assert_eq!(m.reply_retries, Some(3));
        assert_eq!(m.method_timeout, Some(10));
        assert_eq!(m.directory.as_deref(), Some("cli_command__result"));
        assert_eq!(m.file_name.as_deref(), Some("some-file-name.result"));
        assert!(m.is_ordered());
        m.validate().unwrap();
    }

    #[test]
    fn fan_out_ids_are_derived_valid_ulids_with_the_parent_time() {
        let parent = crate::new_id();
        let m = Message {
            id: Some(parent.clone()),
            to_nodes: vec!["a".into(), "b".into()],
            method: "ping".into(),
            ..Default::default()
        };
        let a = m.for_destination("a", Some(0));
        let b = m.for_destination("b", Some(0));
        let a2 = m.for_destination("a", Some(1));
        assert_eq!(a.id, m.for_destination("a", Some(0)).id, "deterministic");
        let ids = [a.id(), b.id(), a2.id(), parent.as_str()];
        for (i, x) in ids.iter().enumerate() {
            for y in &ids[i + 1..] {
                assert_ne!(x, y);
            }
        }
        let time = ulid::Ulid::from_string(&parent).unwrap().timestamp_ms();
        for id in &ids[..3] {
            assert_eq!(ulid::Ulid::from_string(id).unwrap().timestamp_ms(), time);
        }
        // Without an id each copy gets a fresh one; one destination keeps the id.
        let fresh = Message {
            id: None,
            ..m.clone()
        };
        assert_ne!(
            fresh.for_destination("a", Some(0)).id,
            fresh.for_destination("a", Some(0)).id
        );
        assert_eq!(m.for_destination("a", None).id(), parent);
    }

    #[test]
    fn capitalised_method_timeout_from_steward_docs_is_accepted() {
        let m = Message::from_json(
            r#"{"toNode":"ship2","method":"REQOpCommand","operation":{"opCmd":"ps"},"MethodTimeout":7}"#,
        )
        .unwrap();
        assert_eq!(m.method_timeout, Some(7));
        assert_eq!(m.operation.unwrap()["opCmd"], "ps");
    }

    #[test]
    fn reqn_spelling_means_unordered_and_is_normalised() {
        let m = Message::from_json(r#"{"toNode":"a","method":"REQnCliCommand","data":["true"]}"#)
            .unwrap();
        assert!(!m.is_ordered());
        let n = m.for_destination("a", None);
        assert_eq!(n.method, "cliCommand");
        assert_eq!(n.ordered, Some(false));
        assert!(!n.is_ordered());
        assert!(ulid::Ulid::from_string(n.id()).is_ok());
    }

    #[test]
    fn unknown_field_is_named() {
        let err = Message::from_json(r#"{"toNode":"a","method":"ping","toHost":"b"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `toHost`"), "{err}");
    }

    #[test]
    fn node_names_are_one_nats_token() {
        validate_node_name("ship-1_a").unwrap();
        assert_eq!(validate_node_name(""), Err(NodeNameError::Empty));
        assert_eq!(
            validate_node_name(&"a".repeat(MAX_NODE_NAME + 1)),
            Err(NodeNameError::TooLong)
        );
        assert_eq!(
            validate_node_name("a.b").unwrap_err().to_string(),
            r#"node name "a.b" has '.'; use only letters, digits, '_' and '-'"#
        );
    }

    #[test]
    fn array_errors_name_the_element() {
        let err =
            Message::parse_batch(r#"[{"toNode":"a","method":"ping"},{"toNode":5}]"#).unwrap_err();
        assert!(
            matches!(err, MessageParseError::Element { index: 1, .. }),
            "{err}"
        );
        assert!(
            err.to_string().starts_with("message 1: malformed: "),
            "{err}"
        );
    }

    #[test]
    fn bad_fields_are_named_with_a_reason() {
        let cases = [
            (r#"{"toNode":"a","method":"nope"}"#, "method"),
            (r#"{"method":"ping"}"#, "toNode"),
            (r#"{"toNode":"a.b","method":"ping"}"#, "toNode"),
            (r#"{"toNodes":["ok","no way"],"method":"ping"}"#, "toNodes"),
            (r#"{"toNode":"a","method":"cliCommand","data":[]}"#, "data"),
            (
                r#"{"toNode":"a","method":"ping","ACKTimeout":0}"#,
                "ACKTimeout",
            ),
            (
                r#"{"toNode":"a","method":"ping","methodTimeout":99999999}"#,
                "methodTimeout",
            ),
            (r#"{"toNode":"a","method":"ping","id":"not-a-ulid"}"#, "id"),
            (
                r#"{"toNode":"a","method":"ping","replyMethod":"bogus"}"#,
                "replyMethod",
            ),
            (
                r#"{"toNode":"a","method":"ping","schedule":[5]}"#,
                "schedule",
            ),
        ];
        for (json, field) in cases {
            let m = Message::from_json(json).unwrap();
            let err = m.validate().unwrap_err();
            assert_eq!(err.field, field, "{json}: {err}");
            assert!(!err.reason.is_empty());
        }
    }

    #[test]
    fn wrong_types_are_malformed_not_panics() {
        for bad in [
            r#"{"toNode":"a","method":"ping","retries":"three"}"#,
            r#"{"toNode":5,"method":"ping"}"#,
            r#"{"toNode":"a"}"#,
            r#"[1,2]"#,
            r#"{"#,
        ] {
            assert!(Message::parse_batch(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn destinations_merge_to_node_and_to_nodes() {
        let m = Message::from_json(r#"{"toNode":"a","toNodes":["b","a","c"],"method":"ping"}"#)
            .unwrap();
        assert_eq!(m.destinations(), vec!["a", "b", "c"]);
    }

    #[test]
    fn numbers_in_an_operation_survive_being_stored() {
        // Found by fuzzing (socket_input): read with best-effort float parsing,
        // 1.05e+300 became a neighbour of itself, which then read back as yet another
        // number, so the value drifted each time the message was stored or sent.
        let m = Message::from_json(
            r#"{"toNode":"a","method":"REQOpCommand","operation":{"n":1.05e+300}}"#,
        )
        .unwrap();
        let operation = m.operation.as_ref().unwrap();
        assert_eq!(operation["n"].as_f64(), Some(1.05e300));
        let again = Message::from_json(&serde_json::to_string(&m).unwrap()).unwrap();
        assert_eq!(again, m);
    }

    #[test]
    fn json_round_trip_keeps_steward_names() {
        let m = Message::parse_batch(STEWARD_EXAMPLE).unwrap().remove(0);
        let text = serde_json::to_string(&m).unwrap();
        assert!(text.contains("\"ACKTimeout\":5"));
        assert!(text.contains("\"replyACKTimeout\":5"));
        assert!(text.contains("\"toNode\":\"ship1\""));
        assert_eq!(Message::from_json(&text).unwrap(), m);
    }
}
