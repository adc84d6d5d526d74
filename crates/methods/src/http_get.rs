//! `httpGet`: placeholder until the client lands in this file.

use bosun_proto::{Message, Outcome};

use crate::{Context, failed, now_millis};

/// Fetch the URL in `data[0]`.
pub async fn run(_message: &Message, context: &Context) -> Outcome {
    failed(
        context,
        now_millis(),
        "httpGet is not available in this build",
    )
}
