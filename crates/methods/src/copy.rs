//! `copySrc` / `copyDst`: placeholder until the copy lands in this file.

use bosun_proto::{Message, Outcome};

use crate::{Context, Handled, failed, now_millis};

/// Read the source file and produce one `copyDst` message per chunk.
pub async fn run_src(_message: &Message, context: &Context) -> Handled {
    failed(
        context,
        now_millis(),
        "copySrc is not available in this build",
    )
    .into()
}

/// Write one chunk at the destination.
pub async fn run_dst(_message: &Message, context: &Context) -> Outcome {
    failed(
        context,
        now_millis(),
        "copyDst is not available in this build",
    )
}
