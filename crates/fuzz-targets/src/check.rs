//! What must hold of every message and container message that decodes, whichever way
//! it came in.

use bosun_proto::Message;
use bosun_proto::container::ContainerSpec;

/// Run what the node runs on a message that came in, and assert what must hold:
/// it survives a JSON round trip unchanged (it is stored and sent as JSON), and a valid
/// message makes one valid delivery per destination, each with a ULID, the canonical
/// method and the same order.
pub(crate) fn message(m: &Message) {
    let _ = m.is_ordered();
    let _ = m.is_reply();
    let _ = m.wants_sink();
    let _ = m.parsed_reply_method();
    round_trip(m);
    if m.validate().is_err() {
        return;
    }
    let method = m
        .parsed_method()
        .expect("a valid message names a known method");
    let _ = method.role();
    let destinations = m.destinations();
    let several = destinations.len() > 1;
    for (k, to) in destinations.iter().enumerate() {
        if to == "*" {
            // Expanded against the fleet before any delivery is made.
            continue;
        }
        let copy = m.for_destination(to, several.then_some(k as u32));
        assert_eq!(copy.destination(), to, "delivery of {m:?}");
        assert!(
            copy.to_nodes.is_empty() && copy.instances.is_none(),
            "{copy:?}"
        );
        assert!(
            ulid::Ulid::from_string(copy.id()).is_ok(),
            "delivery id {:?} of {m:?}",
            copy.id()
        );
        assert_eq!(copy.parsed_method(), Ok(method), "{copy:?}");
        assert_eq!(copy.method, method.name(), "{copy:?}");
        assert_eq!(copy.is_ordered(), m.is_ordered(), "{copy:?}");
        if let Err(e) = copy.validate() {
            panic!("the valid message {m:?} made the invalid delivery {copy:?} to {to}: {e}");
        }
        round_trip(&copy);
    }
}

/// A message written as JSON reads back as the same message.
fn round_trip(m: &Message) {
    let text = serde_json::to_string(m).expect("a message serialises");
    match Message::from_json(&text) {
        Ok(back) => assert_eq!(&back, m, "changed by a JSON round trip: {text}"),
        Err(e) => panic!("{m:?} wrote JSON it cannot read back: {e}: {text}"),
    }
}

/// What a container-starting message built from `spec` must be: its `data[0]` reads back
/// as `spec` (the node that runs it reads the spec from there); then it is checked like
/// any message.
pub(crate) fn container_message(spec: &ContainerSpec, m: &Message) {
    assert!(
        spec.check().is_ok(),
        "a message was made from a bad spec {spec:?}"
    );
    assert_eq!(m.data.len(), 1, "{m:?}");
    let back: ContainerSpec = serde_json::from_str(&m.data[0])
        .unwrap_or_else(|e| panic!("spec written as {:?} does not read back: {e}", m.data[0]));
    assert_eq!(&back, spec);
    message(m);
}
