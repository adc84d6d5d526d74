//! `opProcessList` / `opProcessStart` / `opProcessStop`, and steward's `REQOpCommand`
//! (`ps`, `startProc`, `stopProc`): which methods this node serves, and for which senders
//! (steward's `allowedNodes`).
//!
//! The table lives in memory and starts with every method served for everyone; the
//! receiver checks it before recording a message.

use std::collections::{BTreeMap, BTreeSet};

use bosun_proto::{Message, Method, Outcome};
use serde_json::Value;

use crate::{Context, done, failed, now_millis};

/// Why a method may not be called, started or stopped here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServedError {
    /// The method was stopped on this node.
    #[error("method {0} is not served by this node (start it with opProcessStart)")]
    NotServed(Method),
    /// The method is served, but not for this sender.
    #[error("node {from:?} may not call {method} on this node (allowed: {})", allowed.join(", "))]
    NotAllowed {
        /// The sender.
        from: String,
        /// The method.
        method: Method,
        /// The senders that may.
        allowed: Vec<String>,
    },
    /// The method keeps the table working or receives replies.
    #[error("{0} cannot be stopped: the node needs it")]
    Essential(Method),
    /// The request names no method.
    #[error("name the method in operation.opArg.method or data[0]")]
    NoMethodNamed,
    /// The request names a method that does not exist.
    #[error("unknown method {0:?}")]
    UnknownMethod(String),
}

/// Who may call a served method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Allowed {
    /// Any sender.
    Everyone,
    /// Only these sender nodes.
    Only(BTreeSet<String>),
}

/// Which methods this node serves, and for whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served {
    methods: BTreeMap<Method, Allowed>,
}

/// Methods that cannot be stopped: without them the table could never be changed back,
/// and replies could not be received.
fn essential(method: Method) -> bool {
    matches!(
        method,
        Method::Result
            | Method::OpCommand
            | Method::OpProcessList
            | Method::OpProcessStart
            | Method::OpProcessStop
    )
}

impl Default for Served {
    fn default() -> Self {
        Served {
            methods: Method::all().map(|m| (m, Allowed::Everyone)).collect(),
        }
    }
}

impl Served {
    /// May `from` call `method` here? The error says why not.
    pub fn allows(&self, method: Method, from: &str) -> Result<(), ServedError> {
        match self.methods.get(&method) {
            None => Err(ServedError::NotServed(method)),
            Some(Allowed::Everyone) => Ok(()),
            Some(Allowed::Only(nodes)) if nodes.contains(from) || nodes.contains("*") => Ok(()),
            Some(Allowed::Only(nodes)) => Err(ServedError::NotAllowed {
                from: from.to_string(),
                method,
                allowed: nodes.iter().cloned().collect(),
            }),
        }
    }

    /// Serve `method`, for everyone or only for `allowed`.
    pub fn start(&mut self, method: Method, allowed: Option<Vec<String>>) {
        let allowed = match allowed {
            Some(nodes) if !nodes.is_empty() && !nodes.iter().any(|n| n == "*") => {
                Allowed::Only(nodes.into_iter().collect())
            }
            _ => Allowed::Everyone,
        };
        self.methods.insert(method, allowed);
    }

    /// Stop serving `method`. Refused for the methods the table itself needs.
    pub fn stop(&mut self, method: Method) -> Result<bool, ServedError> {
        if essential(method) {
            return Err(ServedError::Essential(method));
        }
        Ok(self.methods.remove(&method).is_some())
    }

    /// One line per served method: `method<TAB>allowed senders`.
    pub fn describe(&self) -> String {
        self.methods
            .iter()
            .map(|(m, a)| match a {
                Allowed::Everyone => format!("{m}\t*\n"),
                Allowed::Only(nodes) => format!(
                    "{m}\t{}\n",
                    nodes.iter().cloned().collect::<Vec<_>>().join(",")
                ),
            })
            .collect()
    }
}

/// The method a request names, from `operation.opArg.method` or `data[0]`.
fn target(message: &Message) -> Result<Method, ServedError> {
    let name = op_arg(message)
        .and_then(|a| a.get("method"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| message.data.first().cloned())
        .ok_or(ServedError::NoMethodNamed)?;
    match Method::parse(&name) {
        Some(parsed) => Ok(parsed.method),
        None => Err(ServedError::UnknownMethod(name)),
    }
}

fn op_arg(message: &Message) -> Option<&serde_json::Map<String, Value>> {
    message.operation.as_ref()?.get("opArg")?.as_object()
}

/// Allowed senders from `operation.opArg.allowedNodes` or `data[1..]`.
fn allowed_nodes(message: &Message) -> Option<Vec<String>> {
    if let Some(list) = op_arg(message)
        .and_then(|a| a.get("allowedNodes"))
        .and_then(Value::as_array)
    {
        return Some(
            list.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
        );
    }
    (message.data.len() > 1).then(|| message.data[1..].to_vec())
}

/// `opProcessList`: the table.
pub async fn run_list(_message: &Message, context: &Context) -> Outcome {
    let started = now_millis();
    let table = context.served.read().expect("served lock").describe();
    done(context, started, table)
}

/// `opProcessStart`: serve a method, optionally only for some senders.
pub async fn run_start(message: &Message, context: &Context) -> Outcome {
    let started = now_millis();
    let method = match target(message) {
        Ok(m) => m,
        Err(e) => return failed(context, started, e.to_string()),
    };
    let allowed = allowed_nodes(message);
    context
        .served
        .write()
        .expect("served lock")
        .start(method, allowed.clone());
    let who = allowed
        .filter(|a| !a.is_empty())
        .map(|a| a.join(", "))
        .unwrap_or_else(|| "everyone".into());
    done(context, started, format!("serving {method} for {who}\n"))
}

/// `opProcessStop`: stop serving a method.
pub async fn run_stop(message: &Message, context: &Context) -> Outcome {
    let started = now_millis();
    let method = match target(message) {
        Ok(m) => m,
        Err(e) => return failed(context, started, e.to_string()),
    };
    let stopped = context.served.write().expect("served lock").stop(method);
    match stopped {
        Ok(true) => done(context, started, format!("stopped serving {method}\n")),
        Ok(false) => done(context, started, format!("{method} was not being served\n")),
        Err(e) => failed(context, started, e.to_string()),
    }
}

/// Steward's `REQOpCommand`: `operation.opCmd` is `ps`, `startProc` or `stopProc`.
pub async fn run_op_command(message: &Message, context: &Context) -> Outcome {
    let started = now_millis();
    let op = message
        .operation
        .as_ref()
        .and_then(|o| o.get("opCmd"))
        .and_then(Value::as_str)
        .unwrap_or("");
    match op {
        "ps" => run_list(message, context).await,
        "startProc" => run_start(message, context).await,
        "stopProc" => run_stop(message, context).await,
        other => failed(
            context,
            started,
            format!("unknown opCmd {other:?}; use ps, startProc or stopProc"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn everyone_by_default_then_only_the_allowed() {
        let mut s = Served::default();
        assert!(s.allows(Method::HttpGet, "anyone").is_ok());
        s.start(Method::HttpGet, Some(vec!["central".into()]));
        assert!(s.allows(Method::HttpGet, "central").is_ok());
        let err = s.allows(Method::HttpGet, "ship9").unwrap_err().to_string();
        assert!(err.contains("ship9") && err.contains("central"), "{err}");
        assert_eq!(s.stop(Method::HttpGet), Ok(true));
        assert!(
            s.allows(Method::HttpGet, "central")
                .unwrap_err()
                .to_string()
                .contains("not served")
        );
        assert!(s.stop(Method::OpProcessStart).is_err());
        s.start(Method::HttpGet, Some(vec!["*".into()]));
        assert!(s.allows(Method::HttpGet, "x").is_ok());
    }
}
