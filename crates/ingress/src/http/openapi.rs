//! The OpenAPI 3 document of `/v1`, made from the code: the handlers' `#[utoipa::path]`
//! annotations in `http.rs` and the `ToSchema` of the types the API sends and takes
//! (messages, records, fleet rows: the same types it serialises). Served at
//! `/v1/openapi.json`. quartermaster's and DockerMod's endpoints stay outside it: they
//! keep the shapes of the tools they stand in for (README, "HTTP API").

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "bosun",
        description = "bosun's HTTP API: queue durable messages to nodes and follow them, see the fleet, and drive containers and images across it. Every route but this document needs the node's API token as `Authorization: Bearer <token>`."
    ),
    paths(
        super::v1_submit,
        super::v1_status,
        super::v1_cancel,
        super::v1_nodes,
        super::v1_list,
        super::v1_run,
        super::v1_inspect,
        super::v1_remove,
        super::v1_action,
        super::v1_action_get,
        super::v1_images,
        super::v1_pull,
    ),
    components(schemas(Action, View)),
    modifiers(&Bearer),
    security(("bearer" = [])),
    tags(
        (name = "messages", description = "Durable messages: queue, then follow"),
        (name = "fleet", description = "The nodes this node knows"),
        (name = "containers", description = "Containers across the fleet"),
        (name = "images", description = "A node's images"),
    )
)]
struct ApiDoc;

/// The bearer token scheme every route uses.
struct Bearer;

impl Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The node's API token (BOSUN_HTTP_TOKEN or http_token_file)",
                    ))
                    .build(),
            ),
        );
    }
}

/// The document, with this build's version, as JSON. A message's `method` is listed
/// as the spellings `bosun_proto::Method::parse` takes (each name, and steward's
/// `REQName` and unordered `REQnName`), which a derived string could not say.
pub fn document() -> Value {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    let mut doc = serde_json::to_value(doc).unwrap_or_default();
    let spellings: Vec<String> = bosun_proto::Method::all()
        .flat_map(|m| {
            let name = m.name();
            let mut chars = name.chars();
            let capital: String = chars
                .next()
                .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default();
            [
                name.to_string(),
                format!("REQ{capital}"),
                format!("REQn{capital}"),
            ]
        })
        .collect();
    if let Some(method) = doc.pointer_mut("/components/schemas/Message/properties/method") {
        method["enum"] = serde_json::json!(spellings);
    }
    // Node names as `bosun_proto::validate_node_name` takes them; empty is this node.
    let name = format!(
        "^([A-Za-z0-9_-]{{1,{}}})?$",
        bosun_proto::message::MAX_NODE_NAME
    );
    for at in [
        "/paths/~1v1~1images/get/parameters/0/schema",
        "/components/schemas/PullBody/properties/node",
    ] {
        if let Some(schema) = doc.pointer_mut(at) {
            schema["pattern"] = Value::String(name.clone());
        }
    }
    doc
}

/// The refusals of the token and body layer, which every route may answer.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum TokenRefusals {
    /// No bearer token, or a wrong one
    #[response(status = 401)]
    Unauthorised(Failure),
    /// The body did not arrive in time
    #[response(status = 408)]
    TooSlow(Failure),
    /// The body is larger than 2 MiB
    #[response(status = 413)]
    TooLarge(Failure),
}

/// The answers of an operation that sends a message to a node and waits for it.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum OpRefusals {
    /// The request is wrong: what to fix
    #[response(status = 400)]
    Invalid(Failure),
    /// No node has that container, or no such node
    #[response(status = 404)]
    NotFound(Failure),
    /// The node ran it and it failed, or no node could be asked
    #[response(status = 502)]
    Failed(Failure),
    /// No result in time; the message stays queued
    #[response(status = 504)]
    Timeout(Failure),
}

/// Every refusal and failure of the API.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Failure {
    /// Always false.
    pub success: bool,
    /// What went wrong, and where it can, what to do.
    pub error: String,
}

/// The body of `POST /v1/messages`: one message or an array of them.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum MessagesBody {
    /// One message.
    One(Box<bosun_proto::Message>),
    /// Several.
    Many(Vec<bosun_proto::Message>),
}

/// What `POST /v1/messages` queued.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct QueuedAnswer {
    /// One entry per destination, each with its own id.
    pub queued: Vec<bosun_node::Submitted>,
}

/// The body of `POST /v1/containers`: a container and where to run it, in one object.
/// Unknown fields are refused.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunBody {
    /// The container.
    #[serde(flatten)]
    pub spec: bosun_proto::container::ContainerSpec,
    /// Destination nodes (none: placement over the fleet, or this node).
    #[serde(default)]
    pub nodes: Vec<String>,
    /// How many to place over the fleet.
    #[serde(default)]
    pub instances: Option<u32>,
    /// Node labels that must match.
    #[serde(default)]
    pub constraints: BTreeMap<String, String>,
    /// Create without starting.
    #[serde(default)]
    pub create_only: bool,
}

/// What `POST /v1/containers` started.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StartedAnswer {
    /// Each container: its node and id, or why not.
    pub containers: Vec<crate::ops::Started>,
}

/// `GET /v1/containers/{id}`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct InspectAnswer {
    /// The node that has it.
    pub node: String,
    /// Docker's inspect.
    pub inspect: Value,
}

/// `DELETE /v1/containers/{id}`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RemovedAnswer {
    /// The node that had it.
    pub node: String,
    /// The id as asked.
    pub removed: String,
}

/// What `POST /v1/containers/{id}/{action}` does.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Start it.
    Start,
    /// Stop it (`timeout` seconds, then kill).
    Stop,
    /// Restart it.
    Restart,
    /// Send it a signal (`signal`, default SIGKILL).
    Kill,
    /// Freeze it.
    Pause,
    /// Thaw it.
    Unpause,
}

/// What `GET /v1/containers/{id}/{action}` reads.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum View {
    /// Its logs, as text.
    Logs,
    /// One stats sample, Docker's JSON.
    Stats,
}

/// `POST /v1/containers/{id}/{action}`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ActionAnswer {
    /// The node that has it.
    pub node: String,
    /// The id as asked.
    pub id: String,
    /// What the engine said.
    pub output: String,
}

/// `GET /v1/containers/{id}/{action}`: one of `logs` and `stats`, as asked.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ViewAnswer {
    /// The node that has it.
    pub node: String,
    /// The id as asked.
    pub id: String,
    /// Its logs (for `logs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logs: Option<Value>,
    /// One stats sample (for `stats`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<Value>,
}

/// `GET /v1/images`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ImagesAnswer {
    /// The node asked.
    pub node: String,
    /// Its images, as the engine lists them.
    pub images: Value,
}

/// The body of `POST /v1/images/pull`. Unknown fields are refused.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PullBody {
    /// The image reference, e.g. `alpine:3`.
    #[schema(min_length = 1, pattern = "\\S")]
    pub image: String,
    /// The node that pulls it (default: this node).
    #[serde(default)]
    pub node: Option<String>,
    /// Registry auth: base64 of Docker's auth JSON.
    #[serde(default)]
    pub auth: Option<String>,
}

/// `POST /v1/images/pull`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PullAnswer {
    /// The node that pulled it.
    pub node: String,
    /// The engine's messages.
    pub output: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `$ref` in the document, with where it was found.
    fn refs(value: &Value, at: &str, out: &mut Vec<(String, String)>) {
        match value {
            Value::Object(map) => {
                for (k, v) in map {
                    if k == "$ref" {
                        out.push((at.to_string(), v.as_str().unwrap_or("").to_string()));
                    }
                    refs(v, &format!("{at}/{k}"), out);
                }
            }
            Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    refs(v, &format!("{at}/{i}"), out);
                }
            }
            _ => {}
        }
    }

    /// The `/v1` routes the router serves, as (method, path), read from its source.
    fn routed() -> Vec<(String, String)> {
        let source = include_str!("../http.rs");
        let start = source.find("Router::new()").expect("the router");
        let end = start + source[start..].find(".layer(").expect("its layer");
        let text: String = source[start..end].split_whitespace().collect();
        let mut found = Vec::new();
        for route in text.split(".route(").skip(1) {
            let Some(path) = route.strip_prefix('"').and_then(|r| r.split('"').next()) else {
                continue;
            };
            if !path.starts_with("/v1/") || path == "/v1/openapi.json" {
                continue;
            }
            for method in ["get", "post", "delete", "put", "patch"] {
                if route.contains(&format!("{method}(")) {
                    found.push((method.to_string(), path.to_string()));
                }
            }
        }
        found.sort();
        found
    }

    #[test]
    fn the_document_describes_every_v1_route_the_router_serves_and_no_other() {
        let doc = document();
        let mut described: Vec<(String, String)> = doc["paths"]
            .as_object()
            .unwrap()
            .iter()
            .flat_map(|(path, item)| {
                item.as_object()
                    .unwrap()
                    .keys()
                    .map(move |method| (method.clone(), path.clone()))
            })
            .collect();
        described.sort();
        let routed = routed();
        assert_eq!(routed.len(), 12, "{routed:?}");
        assert_eq!(described, routed);
    }

    #[test]
    fn every_reference_resolves_and_every_route_needs_the_token() {
        let doc = document();
        let mut found = Vec::new();
        refs(&doc, "", &mut found);
        assert!(!found.is_empty());
        for (at, reference) in found {
            let name = reference
                .strip_prefix("#/components/schemas/")
                .unwrap_or_else(|| panic!("{at}: {reference}"));
            assert!(
                doc["components"]["schemas"].get(name).is_some(),
                "{at}: {reference} is not in the document"
            );
        }
        assert_eq!(doc["security"], serde_json::json!([{ "bearer": [] }]));
        let methods = doc
            .pointer("/components/schemas/Message/properties/method/enum")
            .and_then(Value::as_array)
            .expect("the method spellings");
        for spelling in [
            "cliCommand",
            "REQCliCommand",
            "REQnCliCommand",
            "containerKill",
        ] {
            assert!(methods.iter().any(|m| m == spelling), "{spelling}");
            assert!(bosun_proto::Method::parse(spelling).is_some());
        }
        for m in methods {
            assert!(
                bosun_proto::Method::parse(m.as_str().unwrap()).is_some(),
                "{m}"
            );
        }
        for at in [
            "/paths/~1v1~1images/get/parameters/0/schema/pattern",
            "/components/schemas/PullBody/properties/node/pattern",
        ] {
            assert!(doc.pointer(at).is_some(), "{at}");
        }
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                assert!(
                    op["responses"].get("401").is_some(),
                    "{method} {path} documents the token's refusal"
                );
            }
        }
    }
}
