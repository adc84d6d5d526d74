//! Containers and images through the Docker Engine API (bollard). Placeholder until the
//! handlers land in this module.

use bosun_proto::{Message, Method, Outcome};

use crate::{ChunkSink, Context, failed, now_millis};

/// True for the methods this module serves.
pub fn handles(method: Method) -> bool {
    matches!(
        method,
        Method::ContainerRun
            | Method::ContainerCreate
            | Method::ContainerStart
            | Method::ContainerStop
            | Method::ContainerRestart
            | Method::ContainerKill
            | Method::ContainerPause
            | Method::ContainerUnpause
            | Method::ContainerRemove
            | Method::ContainerInspect
            | Method::ContainerList
            | Method::ContainerLogs
            | Method::ContainerStats
            | Method::ImagePull
            | Method::ImageList
    )
}

/// Run a container or image method.
pub async fn run(
    method: Method,
    _message: &Message,
    context: &Context,
    _chunks: &ChunkSink,
) -> Outcome {
    failed(
        context,
        now_millis(),
        format!("{method} is not available in this build"),
    )
}
