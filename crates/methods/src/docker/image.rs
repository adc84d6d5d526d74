//! `imagePull` and `imageList`, and the pull that `containerRun` does for a missing image.

use bollard::Docker;
use bollard::auth::DockerCredentials;
use bollard::query_parameters::{CreateImageOptions, ListImagesOptions};
use bosun_proto::Message;
use futures::StreamExt;
use serde_json::json;

use super::create::decode_auth;
use super::engine::is_not_found;
use super::{DockerMethodError, arg, failure};
use crate::Context;

/// `imagePull`: `data[0]` = image reference, `data[1]` = base64 registry auth.
pub(super) async fn pull_method(
    docker: &Docker,
    message: &Message,
    context: &Context,
) -> Result<String, DockerMethodError> {
    let image = arg(message, 0).ok_or(DockerMethodError::NoImageGiven)?;
    let credentials = arg(message, 1).map(decode_auth).transpose()?;
    pull(docker, image, credentials, context).await
}

/// Pull `image` unless the daemon already has it.
pub(super) async fn ensure_present(
    docker: &Docker,
    image: &str,
    credentials: Option<DockerCredentials>,
    context: &Context,
) -> Result<(), DockerMethodError> {
    // Checked first: the reference goes into a URL path.
    split_ref(image)?;
    match docker.inspect_image(image).await {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => pull(docker, image, credentials, context).await.map(|_| ()),
        Err(e) => Err(failure(context, e, &format!("look up image {image}"), None)),
    }
}

/// Pull `image`; the answer is a one-line summary.
async fn pull(
    docker: &Docker,
    image: &str,
    credentials: Option<DockerCredentials>,
    context: &Context,
) -> Result<String, DockerMethodError> {
    let (from_image, tag) = split_ref(image)?;
    let options = CreateImageOptions {
        from_image: Some(from_image),
        tag: Some(tag),
        ..Default::default()
    };
    let mut progress = docker.create_image(Some(options), None, credentials);
    let mut last_status = None;
    let mut digest = None;
    while let Some(step) = progress.next().await {
        let info = step.map_err(|e| failure(context, e, &format!("pull {image}"), None))?;
        if let Some(status) = info.status {
            if let Some(d) = status.strip_prefix("Digest: ") {
                digest = Some(d.trim().to_string());
            }
            last_status = Some(status);
        }
    }
    let mut summary = format!("pulled {image}");
    if let Some(d) = digest {
        summary.push_str(&format!(" ({d})"));
    }
    if let Some(s) = last_status {
        summary.push_str(&format!(": {s}"));
    }
    summary.push('\n');
    Ok(summary)
}

/// Split a reference into the pull's `fromImage` and `tag`. The tag defaults to
/// `latest`, because an empty one makes the daemon pull every tag of the repository.
pub(super) fn split_ref(image: &str) -> Result<(String, String), DockerMethodError> {
    let valid = !image.is_empty()
        && image.len() <= 512
        && image.starts_with(|c: char| c.is_ascii_alphanumeric())
        && image
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/' | ':' | '@'));
    if !valid {
        return Err(DockerMethodError::NotAnImageReference(image.to_string()));
    }
    let (name, tag) = match image.split_once('@') {
        Some((name, digest)) => (name, digest),
        None => {
            // A colon after the last slash is a tag; one before it is a registry's port.
            let last = image.rfind('/').map_or(0, |i| i + 1);
            match image[last..].rfind(':') {
                Some(i) => (&image[..last + i], &image[last + i + 1..]),
                None => (image, "latest"),
            }
        }
    };
    if name.is_empty() || tag.is_empty() {
        return Err(DockerMethodError::EmptyImageReferencePart(
            image.to_string(),
        ));
    }
    Ok((name.to_string(), tag.to_string()))
}

/// `imageList`: a JSON array of `{id, tags, sizeBytes}`, or of Docker's own entries
/// (`Id`, `ParentId`, `RepoTags`, `Created`, `Size`, …) with `data[0] = "docker"`, as
/// DockerMod answered.
pub(super) async fn list(
    docker: &Docker,
    message: &bosun_proto::Message,
    context: &Context,
) -> Result<String, DockerMethodError> {
    let native = match super::arg(message, 0) {
        None | Some("bosun") => false,
        Some("docker") => true,
        Some(other) => {
            return Err(DockerMethodError::NotUnderstood {
                index: 0,
                given: other.to_string(),
                expected: "give \"docker\" for Docker's own image entries, or \"bosun\"",
            });
        }
    };
    let images = docker
        .list_images(None::<ListImagesOptions>)
        .await
        .map_err(|e| failure(context, e, "list images", None))?;
    if native {
        return to_json(&images);
    }
    let rows: Vec<_> = images
        .iter()
        .map(|i| {
            let tags: Vec<&String> = i
                .repo_tags
                .iter()
                .filter(|t| t.as_str() != "<none>:<none>")
                .collect();
            json!({ "id": i.id, "tags": tags, "sizeBytes": i.size })
        })
        .collect();
    to_json(&rows)
}

/// Pretty JSON and a newline.
pub(super) fn to_json(value: &impl serde::Serialize) -> Result<String, DockerMethodError> {
    serde_json::to_string_pretty(value)
        .map(|s| s + "\n")
        .map_err(DockerMethodError::Encode)
}
