//! The bodies of bosun's fuzz targets: one plain function per target, run by the
//! `cargo fuzz` binaries in `fuzz/` and by `tests/corpus.rs`, which replays every file
//! of `fuzz/corpus/<target>/` (and the built-in [`seeds`]) on every `cargo test`.
//!
//! A body takes any bytes and must return without panicking. It drives the same
//! functions the node runs on outside input, and besides the decoders' own checks it
//! asserts what must hold of whatever they accept (a frame re-encodes to itself, a
//! stream read in pieces reads as it does whole, a valid message makes valid
//! deliveries, …). A panic is a finding: fix the product, and keep the input in the
//! corpus so that the replay test guards it.
//!
//! # Layout
//! - [`wire`]: the frames between nodes (`decode_request`, `decode_ack`, …).
//! - [`steward`]: message text (JSON and YAML, read and startup folders, `/v1/messages`)
//!   and the byte streams of `bosun.sock` and the steward TCP port.
//! - [`lsdsuite`]: the LSDSuite command port.
//! - [`http`]: the request bodies of quartermaster, DockerMod and `/v1`.
//! - [`syslog`]: the syslog sockets, up to the record line written.
//! - [`trust`]: identity tokens, grants and policy rules, and sealed frames.
//! - `check`: what must hold of every message and container message that decodes.

mod check;
pub mod http;
pub mod lsdsuite;
pub mod steward;
pub mod syslog;
pub mod trust;
pub mod wire;

/// One fuzz target.
pub struct Target {
    /// Its name: the `cargo fuzz` binary and the folder `fuzz/corpus/<name>/`.
    pub name: &'static str,
    /// Its body.
    pub run: fn(&[u8]),
    /// What it reads, in a few words.
    pub reads: &'static str,
}

/// Every target. A new target needs a row here, a binary in `fuzz/fuzz_targets/`, a
/// `[[bin]]` in `fuzz/Cargo.toml` and a corpus folder; `tests/corpus.rs` checks all four.
pub const TARGETS: &[Target] = &[
    Target {
        name: "wire_request",
        run: wire::request,
        reads: "a request frame, then what the receiver checks of its message",
    },
    Target {
        name: "wire_ack",
        run: wire::ack,
        reads: "an ACK frame",
    },
    Target {
        name: "wire_query",
        run: wire::query,
        reads: "a query frame",
    },
    Target {
        name: "wire_query_answer",
        run: wire::query_answer,
        reads: "a query answer frame",
    },
    Target {
        name: "wire_batch",
        run: wire::batch,
        reads: "a batch frame and each request in it, and a batch answer",
    },
    Target {
        name: "wire_status",
        run: wire::status,
        reads: "a status note frame",
    },
    Target {
        name: "message_text",
        run: steward::message_text,
        reads: "message files and /v1/messages bodies: JSON or YAML",
    },
    Target {
        name: "socket_input",
        run: steward::socket_input,
        reads: "the bytes of one bosun.sock or steward TCP connection, in pieces",
    },
    Target {
        name: "lsdsuite_command",
        run: lsdsuite::command,
        reads: "the bytes of one LSDSuite command connection",
    },
    Target {
        name: "http_quartermaster_run",
        run: http::quartermaster_run,
        reads: "a quartermaster POST /run body",
    },
    Target {
        name: "http_quartermaster_stop",
        run: http::quartermaster_stop,
        reads: "a quartermaster POST /stop body",
    },
    Target {
        name: "http_dockermod",
        run: http::dockermod,
        reads: "a DockerMod POST / body",
    },
    Target {
        name: "http_v1_containers",
        run: http::v1_containers,
        reads: "a POST /v1/containers body",
    },
    Target {
        name: "http_v1_pull",
        run: http::v1_pull,
        reads: "a POST /v1/images/pull body",
    },
    Target {
        name: "syslog",
        run: syslog::syslog,
        reads: "a syslog stream in pieces, and one datagram",
    },
    Target {
        name: "identity_token",
        run: trust::identity_token,
        reads: "an identity token, and grant and policy rules",
    },
    Target {
        name: "signed_frame",
        run: trust::signed_frame,
        reads: "a sealed frame, opened by nodes of three trust settings",
    },
];

/// The target named `name`.
pub fn target(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}

/// Run the target named `name` on `data`: what each `cargo fuzz` binary does.
pub fn run(name: &str, data: &[u8]) {
    let target = target(name).unwrap_or_else(|| panic!("no fuzz target {name:?} in TARGETS"));
    (target.run)(data);
}

/// Inputs every target starts from besides its corpus: well-formed examples that reach
/// past the decoders (valid tokens and sealed frames need keys, which the fuzzer cannot
/// forge). The replay test runs them too.
pub fn seeds(name: &str) -> Vec<Vec<u8>> {
    match name {
        "identity_token" => trust::token_seeds(),
        "signed_frame" => trust::frame_seeds(),
        _ => Vec::new(),
    }
}
