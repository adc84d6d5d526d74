//! The request bodies of the HTTP API: quartermaster, DockerMod and `/v1` (whose
//! `/v1/messages` body is [`crate::steward::message_text`]). Each is read by the same
//! function its handler calls, and what is accepted is made into the message the
//! handler would submit.

use std::collections::BTreeMap;

use bosun_ingress::http::{self, DockerModRequest};
use bosun_ingress::ops;
use bosun_proto::Method;
use serde_json::Value;

use crate::check;

/// A quartermaster `POST /run` body.
pub fn quartermaster_run(data: &[u8]) {
    let _ = http::body_token(data);
    let Ok(spec) = http::quartermaster_run(data) else {
        return;
    };
    let constraints = http::quartermaster_constraints();
    if let Ok(m) = ops::container_message("n1", &spec, vec![], Some(1), constraints, false) {
        if let Err(e) = m.validate() {
            panic!("the checked spec {spec:?} made the invalid message {m:?}: {e}");
        }
        check::container_message(&spec, &m);
    }
}

/// A quartermaster `POST /stop` body.
pub fn quartermaster_stop(data: &[u8]) {
    let _ = http::body_token(data);
    if let Ok(id) = http::quartermaster_stop(data) {
        check::message(&ops::message("n1", Method::ContainerStop, vec![id]));
    }
}

/// A DockerMod `POST /` body.
pub fn dockermod(data: &[u8]) {
    let _ = http::body_token(data);
    let Ok(request) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    match http::dockermod_request(&request) {
        Ok(DockerModRequest::Create { spec, instances }) => {
            let instances = Some(instances.unwrap_or(1));
            if let Ok(m) =
                ops::container_message("n1", &spec, vec![], instances, BTreeMap::new(), true)
            {
                check::container_message(&spec, &m);
            }
        }
        Ok(DockerModRequest::OnContainer { method, id, .. }) => {
            assert!(!id.is_empty());
            check::message(&ops::message("n1", method, vec![id]));
        }
        Ok(DockerModRequest::Delete { id }) => {
            assert!(!id.is_empty());
            let data = vec![id, "force".into()];
            check::message(&ops::message("n1", Method::ContainerRemove, data));
        }
        Ok(_) => {}
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}

/// A `POST /v1/containers` body.
pub fn v1_containers(data: &[u8]) {
    let Ok(request) = http::v1_run_request(data) else {
        return;
    };
    if let Ok(m) = ops::container_message(
        "n1",
        &request.spec,
        request.nodes,
        request.instances,
        request.constraints,
        request.create_only,
    ) {
        check::container_message(&request.spec, &m);
    }
}

/// A `POST /v1/images/pull` body.
pub fn v1_pull(data: &[u8]) {
    let Ok(request) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    if let Ok(m) = http::v1_pull_message(&request, "n1") {
        check::message(&m);
    }
}
