//! The node's error log: one JSON object per line in `<data dir>/error.log`.

use std::io::Write;
use std::path::Path;

use bosun_proto::Millis;
use serde::Serialize;

/// One error worth an operator's attention.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ErrorEntry<'a> {
    pub at: Millis,
    pub node: &'a str,
    pub kind: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to_node: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<&'a str>,
    pub reason: &'a str,
}

/// Append an entry and log it. A failure to write the file is logged, never fatal.
pub(crate) fn append(path: &Path, entry: &ErrorEntry<'_>) {
    tracing::warn!(
        kind = entry.kind,
        id = entry.message_id.unwrap_or(""),
        to = entry.to_node.unwrap_or(""),
        reason = entry.reason,
        "error logged"
    );
    let line = match serde_json::to_string(entry) {
        Ok(l) => l,
        Err(_) => return,
    };
    let result = crate::files::open_private_append(path).and_then(|mut f| writeln!(f, "{line}"));
    if let Err(e) = result {
        tracing::error!(path = %path.display(), error = %e, "cannot write the error log");
    }
}

/// Append error reports that another node sent (as `errorLog` messages): each line of
/// `data` is one JSON entry; it is kept with the sender's name. Lines that are not JSON
/// are kept as text.
pub(crate) fn append_remote(path: &Path, from: &str, data: &[String]) {
    let mut lines = String::new();
    for entry in data
        .iter()
        .flat_map(|d| d.lines())
        .filter(|l| !l.trim().is_empty())
    {
        let value = serde_json::from_str::<serde_json::Value>(entry)
            .unwrap_or_else(|_| serde_json::Value::String(entry.to_string()));
        let line = serde_json::json!({ "from": from, "entry": value });
        lines.push_str(&line.to_string());
        lines.push('\n');
    }
    let result =
        crate::files::open_private_append(path).and_then(|mut f| f.write_all(lines.as_bytes()));
    if let Err(e) = result {
        tracing::error!(path = %path.display(), error = %e, "cannot write the error log");
    }
}
