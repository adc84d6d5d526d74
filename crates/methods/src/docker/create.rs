//! `containerRun` / `containerCreate`: a [`ContainerSpec`], optionally laid over a
//! template, becomes Docker's create-container body; the image is pulled when missing.

use std::collections::HashMap;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use bollard::Docker;
use bollard::auth::DockerCredentials;
use bollard::models::{
    ContainerCreateBody, HostConfig, PortBinding, RestartPolicy, RestartPolicyNameEnum,
};
use bollard::query_parameters::{CreateContainerOptions, RemoveContainerOptions};
use bosun_proto::Message;
use bosun_proto::container::{ContainerSpec, LABEL_MESSAGE, LABEL_NODE, parse_published_port};

use super::{DockerMethodError, EngineError, failure, image};
use crate::Context;

/// Create the container in `data[0]` (and start it when `start`); stdout is its id.
pub(super) async fn run(
    docker: &Docker,
    message: &Message,
    context: &Context,
    start: bool,
) -> Result<String, DockerMethodError> {
    let raw = message.data.first().map(|s| s.trim()).unwrap_or("");
    if raw.is_empty() {
        return Err(DockerMethodError::NoSpec);
    }
    let spec: ContainerSpec = serde_json::from_str(raw).map_err(DockerMethodError::SpecNotJson)?;
    spec.check()
        .map_err(|error| DockerMethodError::InvalidSpec {
            reason: error.to_string(),
        })?;
    let template = match (spec.template.as_deref(), &spec.raw) {
        (Some(name), _) => Some(load_template(&context.templates_dir, name)?),
        (None, Some(raw)) => {
            Some(serde_json::from_value(raw.clone()).map_err(DockerMethodError::RawNotDocker)?)
        }
        (None, None) => None,
    };
    let credentials = spec.auth.as_deref().map(decode_auth).transpose()?;
    let body = build_body(
        &spec,
        template,
        &context.node,
        message.id.as_deref().unwrap_or(""),
    )?;
    let Some(image_ref) = body.image.clone().filter(|i| !i.trim().is_empty()) else {
        return Err(DockerMethodError::NoImage {
            template: spec.template.clone().unwrap_or_default(),
        });
    };
    image::ensure_present(docker, &image_ref, credentials, context).await?;

    let options = CreateContainerOptions {
        name: spec.name.clone(),
        ..Default::default()
    };
    let created = docker
        .create_container(Some(options), body)
        .await
        .map_err(|e| failure(context, e, "create the container", None))?;
    if start && let Err(e) = docker.start_container(&created.id, None).await {
        let cause = EngineError::from_call(&context.docker_socket, e, "start", Some(&created.id));
        // A container that never ran is no use to anyone, and its name would block a
        // retry with the same spec.
        let removed = docker
            .remove_container(
                &created.id,
                Some(RemoveContainerOptions {
                    force: true,
                    ..Default::default()
                }),
            )
            .await;
        return Err(DockerMethodError::NotStarted {
            cause: Box::new(cause),
            id: created.id,
            removed: removed.is_ok(),
        });
    }
    Ok(format!("{}\n", created.id))
}

/// Read `<dir>/<name>.json`, Docker's create-container JSON.
pub(super) fn load_template(
    dir: &Path,
    name: &str,
) -> Result<ContainerCreateBody, DockerMethodError> {
    let path = dir.join(format!("{name}.json"));
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(DockerMethodError::TemplateNotFound {
                name: name.to_string(),
                path,
            });
        }
        Err(source) => return Err(DockerMethodError::TemplateUnreadable { path, source }),
    };
    serde_json::from_str(&text)
        .map_err(|source| DockerMethodError::TemplateNotJson { path, source })
}

/// Lay `spec` over `template` (or an empty body) and add bosun's labels.
pub(super) fn build_body(
    spec: &ContainerSpec,
    template: Option<ContainerCreateBody>,
    node: &str,
    message_id: &str,
) -> Result<ContainerCreateBody, DockerMethodError> {
    let mut body = template.unwrap_or_default();
    if let Some(image) = spec.image.as_deref().filter(|i| !i.is_empty()) {
        body.image = Some(image.to_string());
    }
    // An argv, passed as is: Docker runs Cmd without a shell.
    if !spec.command.is_empty() {
        body.cmd = Some(spec.command.clone());
    }
    if !spec.env.is_empty() {
        body.env = Some(merge_env(body.env.take().unwrap_or_default(), &spec.env));
    }
    let mut labels = body.labels.take().unwrap_or_default();
    labels.extend(spec.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
    // bosun's own labels win over the spec's and the template's: they say who made it.
    labels.insert(LABEL_NODE.to_string(), node.to_string());
    labels.insert(LABEL_MESSAGE.to_string(), message_id.to_string());
    body.labels = Some(labels);

    let host = body.host_config.get_or_insert_with(HostConfig::default);
    if let Some(mb) = spec.memory_mb {
        let bytes = mb
            .checked_mul(1024 * 1024)
            .and_then(|b| i64::try_from(b).ok())
            .ok_or(DockerMethodError::MemoryTooLarge(mb))?;
        host.memory = Some(bytes);
    }
    if let Some(policy) = spec.restart.as_deref() {
        host.restart_policy = Some(restart_policy(policy)?);
    }
    if !spec.ports.is_empty() {
        let mut exposed = body.exposed_ports.take().unwrap_or_default();
        let mut bindings = host.port_bindings.take().unwrap_or_default();
        let mut from_spec: HashMap<String, Vec<PortBinding>> = HashMap::new();
        for p in &spec.ports {
            let (host_port, container_port, proto) =
                parse_published_port(p).map_err(|error| DockerMethodError::NotAPort {
                    reason: error.to_string(),
                })?;
            let key = format!("{container_port}/{proto}");
            if !exposed.contains(&key) {
                exposed.push(key.clone());
            }
            from_spec.entry(key).or_default().push(PortBinding {
                host_ip: None,
                host_port: Some(host_port.to_string()),
            });
        }
        // The spec's bindings for a container port replace the template's for it.
        for (key, list) in from_spec {
            bindings.insert(key, Some(list));
        }
        body.exposed_ports = Some(exposed);
        host.port_bindings = Some(bindings);
    }
    Ok(body)
}

/// The template's env with the spec's `KEY=VALUE`s laid over it, key by key.
fn merge_env(base: Vec<String>, over: &[String]) -> Vec<String> {
    let key = |e: &str| e.split_once('=').map_or(e, |(k, _)| k).to_string();
    let mut merged: Vec<String> = base
        .into_iter()
        .filter(|b| !over.iter().any(|o| key(o) == key(b)))
        .collect();
    merged.extend(over.iter().cloned());
    merged
}

/// `no`, `always`, `unless-stopped`, `on-failure` or `on-failure:N`.
pub(super) fn restart_policy(policy: &str) -> Result<RestartPolicy, DockerMethodError> {
    let (name, retries) = match policy.split_once(':') {
        Some(("on-failure", n)) => {
            let n = n
                .parse::<u32>()
                .map_err(|_| DockerMethodError::NotARetryCount {
                    policy: policy.to_string(),
                    count: n.to_string(),
                })?;
            (RestartPolicyNameEnum::ON_FAILURE, Some(i64::from(n)))
        }
        Some(_) => return Err(DockerMethodError::NotARestartPolicy(policy.to_string())),
        None => match policy {
            "no" => (RestartPolicyNameEnum::NO, None),
            "always" => (RestartPolicyNameEnum::ALWAYS, None),
            "unless-stopped" => (RestartPolicyNameEnum::UNLESS_STOPPED, None),
            "on-failure" => (RestartPolicyNameEnum::ON_FAILURE, None),
            _ => return Err(DockerMethodError::NotARestartPolicy(policy.to_string())),
        },
    };
    Ok(RestartPolicy {
        name: Some(name),
        maximum_retry_count: retries,
    })
}

/// Registry auth: base64 of Docker's auth JSON (`username`, `password`, `email`,
/// `serveraddress`). Either base64 alphabet, padded or not, is taken.
pub(super) fn decode_auth(encoded: &str) -> Result<DockerCredentials, DockerMethodError> {
    let encoded = encoded.trim();
    let bytes = [STANDARD, URL_SAFE, STANDARD_NO_PAD, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|engine| engine.decode(encoded).ok())
        .ok_or(DockerMethodError::AuthNotBase64)?;
    serde_json::from_slice::<DockerCredentials>(&bytes).map_err(|e| {
        DockerMethodError::AuthNotJson {
            line: e.line(),
            column: e.column(),
        }
    })
}
