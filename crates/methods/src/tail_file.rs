//! `tailFile`: placeholder until the follower lands in this file.

use bosun_proto::{Message, Outcome};

use crate::{ChunkSink, Context, failed, now_millis};

/// Follow the file in `data[0]` and stream new lines until `methodTimeout`.
pub async fn run(_message: &Message, context: &Context, _chunks: &ChunkSink) -> Outcome {
    failed(
        context,
        now_millis(),
        "tailFile is not available in this build",
    )
}
