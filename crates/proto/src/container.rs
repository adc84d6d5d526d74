//! What a container-starting message carries: a [`ContainerSpec`], in `data[0]` as JSON.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Label bosun puts on every container it creates: the node that created it.
pub const LABEL_NODE: &str = "org.bosun.node";
/// Label bosun puts on every container it creates: the message that created it.
pub const LABEL_MESSAGE: &str = "org.bosun.message";
/// Label that asks for log and stats capture (bosun's own).
pub const LABEL_CAPTURE: &str = "org.bosun.capture";
/// LSDSuite's label that asks for stats capture.
pub const LABEL_LSDSUITE_STATS: &str = "org.lsdsuite.stats";

/// A container to create (and start, for `containerRun`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContainerSpec {
    /// Image reference, e.g. `alpine:3` (or take it from the template).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Name of a template file (Docker create-container JSON) in the node's templates
    /// folder; fields given here override it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// Docker's create-container JSON given inline (DockerMod's `create-raw-container`):
    /// taken like a template, so fields given here override it. Not with `template`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<serde_json::Value>,
    /// Container name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Command as an argv; never split on spaces.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// Environment, `KEY=VALUE`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    /// Labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Memory limit in MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<u64>,
    /// Published ports: `HOST:CONTAINER` or `HOST:CONTAINER/udp`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<String>,
    /// Restart policy: `no`, `always`, `unless-stopped`, `on-failure` or `on-failure:N`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart: Option<String>,
    /// Private-registry auth: base64 of the Docker auth JSON (username, password, email,
    /// serveraddress), as quartermaster takes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<String>,
}

/// What stands in for a secret taken out of a message before it is shown or logged.
pub const REDACTED: &str = "<redacted>";

/// Take the registry auth out of `message`, so that it can be written to the audit log
/// or shown: `auth` in the spec of `containerRun` and `containerCreate` (`data[0]`), and
/// `data[1]` of `imagePull`. True when something was taken out. The stored message keeps
/// its auth: the handler needs it.
pub fn redact_auth(message: &mut crate::Message) -> bool {
    match message.parsed_method() {
        Ok(crate::Method::ContainerRun | crate::Method::ContainerCreate) => {
            let Some(spec) = message.data.first_mut() else {
                return false;
            };
            let Ok(mut value) = serde_json::from_str::<serde_json::Value>(spec) else {
                // Not a spec: the handler refuses it. Nothing can be told apart in it, so
                // none of it is shown.
                if spec.contains("auth") {
                    *spec = REDACTED.to_string();
                    return true;
                }
                return false;
            };
            match value.get_mut("auth") {
                Some(auth) if auth != REDACTED => {
                    *auth = serde_json::Value::String(REDACTED.to_string());
                    *spec = value.to_string();
                    true
                }
                _ => false,
            }
        }
        Ok(crate::Method::ImagePull) => match message.data.get_mut(1) {
            Some(auth) if auth != REDACTED => {
                *auth = REDACTED.to_string();
                true
            }
            _ => false,
        },
        _ => false,
    }
}

/// A copy of `message` without its registry auth, when it carries one ([`redact_auth`]);
/// other messages are not copied.
pub fn redacted(message: &crate::Message) -> Option<crate::Message> {
    let carries = matches!(
        message.parsed_method(),
        Ok(crate::Method::ContainerRun | crate::Method::ContainerCreate | crate::Method::ImagePull)
    );
    if !carries {
        return None;
    }
    let mut copy = message.clone();
    redact_auth(&mut copy).then_some(copy)
}

/// Why a [`ContainerSpec`] is refused: the field at fault and what to give instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// Neither an image nor a template to start from.
    #[error("give `image` or `template`")]
    NoImage,
    /// A raw Docker spec that is not a JSON object, or one given with a template.
    #[error(
        "raw must be Docker's create-container JSON object (with \"Image\" unless `image` is given), and cannot be combined with `template`"
    )]
    Raw,
    /// A template name that could reach outside the templates folder.
    #[error("template {0:?} must be a plain name from the templates folder")]
    Template(String),
    /// A memory limit outside what Docker and the host can honour.
    #[error("memoryMb {0} is out of range (4 MiB to 1 TiB)")]
    Memory(u64),
    /// An environment entry without `=`, or without a name.
    #[error("env {0:?} must be KEY=VALUE")]
    Environment(String),
    /// A published port that does not parse.
    #[error(transparent)]
    Port(#[from] PortError),
    /// A restart policy Docker does not know.
    #[error(
        "restart {0:?} is not a policy; use no, always, unless-stopped, on-failure or on-failure:N"
    )]
    Restart(String),
}

/// Why a published port (`HOST:CONTAINER[/protocol]`) is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    /// The part after `/` is not a protocol Docker publishes.
    #[error("port {spec:?}: unknown protocol {protocol:?}; use tcp, udp or sctp")]
    Protocol {
        /// The port as given.
        spec: String,
        /// The protocol as given.
        protocol: String,
    },
    /// No `:` between the host and the container port.
    #[error("port {spec:?} must be HOST:CONTAINER[/udp]")]
    Shape {
        /// The port as given.
        spec: String,
    },
    /// One side is not a number from 0 to 65535.
    #[error("port {spec:?}: {part:?} is not a port number")]
    Number {
        /// The port as given.
        spec: String,
        /// The side that is not a number.
        part: String,
    },
}

impl ContainerSpec {
    /// Check the fields; the error names the field and says what is wrong.
    pub fn check(&self) -> Result<(), SpecError> {
        if let Some(raw) = &self.raw {
            let image_in_raw = raw["Image"].as_str().is_some_and(|i| !i.is_empty());
            if !raw.is_object()
                || self.template.is_some()
                || (!image_in_raw && self.image.as_deref().is_none_or(str::is_empty))
            {
                return Err(SpecError::Raw);
            }
        } else if self.image.as_deref().is_none_or(str::is_empty)
            && self.template.as_deref().is_none_or(str::is_empty)
        {
            return Err(SpecError::NoImage);
        }
        if let Some(t) = &self.template
            && (t.contains('/') || t.contains("..") || t.is_empty())
        {
            return Err(SpecError::Template(t.clone()));
        }
        if let Some(m) = self.memory_mb
            && !(4..=1024 * 1024).contains(&m)
        {
            return Err(SpecError::Memory(m));
        }
        for e in &self.env {
            if !e.contains('=') || e.starts_with('=') {
                return Err(SpecError::Environment(e.clone()));
            }
        }
        for p in &self.ports {
            parse_published_port(p)?;
        }
        if let Some(r) = &self.restart {
            let ok = matches!(
                r.as_str(),
                "no" | "always" | "unless-stopped" | "on-failure"
            ) || r
                .strip_prefix("on-failure:")
                .is_some_and(|n| n.parse::<u32>().is_ok());
            if !ok {
                return Err(SpecError::Restart(r.clone()));
            }
        }
        Ok(())
    }
}

/// A published port: host port, container port, protocol.
pub fn parse_published_port(spec: &str) -> Result<(u16, u16, &str), PortError> {
    let (ports, protocol) = match spec.split_once('/') {
        Some((p, protocol @ ("tcp" | "udp" | "sctp"))) => (p, protocol),
        Some((_, other)) => {
            return Err(PortError::Protocol {
                spec: spec.to_string(),
                protocol: other.to_string(),
            });
        }
        None => (spec, "tcp"),
    };
    let (host, container) = ports.split_once(':').ok_or_else(|| PortError::Shape {
        spec: spec.to_string(),
    })?;
    let parse = |part: &str| {
        part.parse::<u16>().map_err(|_| PortError::Number {
            spec: spec.to_string(),
            part: part.to_string(),
        })
    };
    Ok((parse(host)?, parse(container)?, protocol))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_raw_docker_spec_needs_an_image_and_no_template() {
        let raw = |v: serde_json::Value| ContainerSpec {
            raw: Some(v),
            ..Default::default()
        };
        assert_eq!(raw(serde_json::json!({"Image": "a"})).check(), Ok(()));
        assert_eq!(
            raw(serde_json::json!({"Cmd": ["x"]})).check(),
            Err(SpecError::Raw)
        );
        assert_eq!(raw(serde_json::json!("a")).check(), Err(SpecError::Raw));
        let with_image = ContainerSpec {
            image: Some("a".into()),
            ..raw(serde_json::json!({}))
        };
        assert_eq!(with_image.check(), Ok(()));
        let with_template = ContainerSpec {
            template: Some("t".into()),
            ..raw(serde_json::json!({"Image": "a"}))
        };
        assert_eq!(with_template.check(), Err(SpecError::Raw));
    }

    #[test]
    fn specs_are_checked_field_by_field() {
        let ok = ContainerSpec {
            image: Some("alpine".into()),
            ports: vec!["8080:80".into(), "53:53/udp".into()],
            restart: Some("on-failure:3".into()),
            memory_mb: Some(256),
            ..Default::default()
        };
        ok.check().unwrap();
        for (bad, word) in [
            (ContainerSpec::default(), "image"),
            (
                ContainerSpec {
                    image: Some("a".into()),
                    ports: vec!["80".into()],
                    ..Default::default()
                },
                "HOST:CONTAINER",
            ),
            (
                ContainerSpec {
                    image: Some("a".into()),
                    restart: Some("sometimes".into()),
                    ..Default::default()
                },
                "policy",
            ),
            (
                ContainerSpec {
                    image: Some("a".into()),
                    env: vec!["NOEQ".into()],
                    ..Default::default()
                },
                "KEY=VALUE",
            ),
            (
                ContainerSpec {
                    template: Some("../x".into()),
                    ..Default::default()
                },
                "plain name",
            ),
        ] {
            let err = bad.check().unwrap_err().to_string();
            assert!(err.contains(word), "{err}");
        }
        assert_eq!(
            parse_published_port("53:5353/udp").unwrap(),
            (53, 5353, "udp")
        );
        assert_eq!(
            parse_published_port("53:x"),
            Err(PortError::Number {
                spec: "53:x".into(),
                part: "x".into()
            })
        );
    }
}

#[cfg(test)]
mod redaction_tests {
    use super::*;
    use crate::Message;

    fn message(method: &str, data: Vec<String>) -> Message {
        Message {
            to_node: Some("a".into()),
            method: method.into(),
            data,
            ..Default::default()
        }
    }

    #[test]
    fn registry_auth_is_taken_out_and_nothing_else() {
        let spec = ContainerSpec {
            image: Some("alpine:3".into()),
            auth: Some("c2VjcmV0LWF1dGg=".into()),
            ..Default::default()
        };
        for method in ["containerRun", "REQContainerCreate"] {
            let mut m = message(method, vec![serde_json::to_string(&spec).unwrap()]);
            assert!(redact_auth(&mut m));
            assert!(!m.data[0].contains("c2VjcmV0LWF1dGg="), "{}", m.data[0]);
            let back: ContainerSpec = serde_json::from_str(&m.data[0]).unwrap();
            assert_eq!(back.image.as_deref(), Some("alpine:3"));
            assert_eq!(back.auth.as_deref(), Some(REDACTED));
            assert!(!redact_auth(&mut m), "once is enough");
        }
        let mut pull = message("imagePull", vec!["alpine:3".into(), "c2VjcmV0".into()]);
        assert!(redact_auth(&mut pull));
        assert_eq!(pull.data, ["alpine:3", REDACTED]);
        let mut broken = message("containerRun", vec!["{\"auth\": \"c2VjcmV0\"".into()]);
        assert!(redact_auth(&mut broken));
        assert_eq!(broken.data, [REDACTED]);
        let mut other = message("cliCommand", vec!["echo".into(), "auth".into()]);
        assert!(!redact_auth(&mut other));
        let mut plain = message("imagePull", vec!["alpine:3".into()]);
        assert!(!redact_auth(&mut plain));
    }
}
