//! Steward compatibility: message files fed unchanged through `bosun.sock`.
//!
//! The examples of the steward document live in `steward/*.json`, byte for byte as a
//! steward user writes them; only host names and paths are adjusted (ship1, ship2 and
//! central stay as they are), and `{{url}}` / `{{log}}` stand for a local web page and a
//! log file. [`EXAMPLES`] says what each one must lead to.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use bosun_testkit::{NodeProcess, NodeSpec, eventually, json};
use serde_json::Value;

use crate::support::{fleet, nc_u, queued_ids, report, serve_page, state_of, wait_state};

/// A check on a piece of text.
#[derive(Debug, Clone, Copy)]
enum Text {
    /// Present at all.
    Exists,
    /// Starts with this.
    StartsWith(&'static str),
    /// Contains this.
    Contains(&'static str),
    /// Is exactly this.
    Equals(&'static str),
}

impl Text {
    /// Panic with `what` unless `text` passes.
    fn check(self, what: &str, text: Option<&str>) {
        let Some(text) = text else {
            panic!("{what}: missing");
        };
        assert!(self.passes(text), "{what}: want {self:?}, got {text:?}");
    }

    /// True when `text` passes.
    fn passes(self, text: &str) -> bool {
        match self {
            Text::Exists => true,
            Text::StartsWith(prefix) => text.starts_with(prefix),
            Text::Contains(part) => text.contains(part),
            Text::Equals(whole) => text == whole,
        }
    }
}

/// What a steward example must lead to, besides its messages' final state.
#[derive(Debug, Clone, Copy)]
enum Observation {
    /// A field of every message's outcome (`stdout`, `error`).
    Outcome(&'static str, Text),
    /// A result file, relative to central's data folder.
    ResultFile(&'static str, Text),
    /// Lines appended to `{{log}}` after the tail started come back as output, and
    /// nothing written before it.
    TailsNewLines,
}

/// One message file and what it must lead to.
struct Example {
    /// The file in `steward/`.
    file: &'static str,
    /// How many messages it queues (one per destination).
    messages: usize,
    /// The sender's final state of each (`running` for a follower that keeps going).
    state: &'static str,
    /// What else must be seen.
    observations: &'static [Observation],
}

/// The page `{{url}}` serves.
const PAGE: &str = "<html>finn</html>";

/// The steward document's examples in the document's order; later ones build on earlier
/// ones (a subscriber stopped in one is refused in the next).
const EXAMPLES: &[Example] = &[
    Example {
        // "What is it?": REQCliCommand with replyMethod REQToFileAppend.
        file: "01-what-is-it.json",
        messages: 1,
        state: "done",
        observations: &[
            Observation::Outcome("stdout", Text::StartsWith("tree of")),
            Observation::ResultFile(
                "cli_command__result/ship1/some-file-name.result",
                Text::StartsWith("tree of"),
            ),
        ],
    },
    Example {
        // "Example JSON for appending a message of type command into the socket file":
        // absolute directories stay inside the data folder.
        file: "02-command-into-the-socket-file.json",
        messages: 1,
        state: "done",
        observations: &[Observation::ResultFile(
            "var/steward/cli-command/executed-result/ship1/some.log",
            Text::StartsWith("tree of"),
        )],
    },
    Example {
        // "Specify more messages at once".
        file: "03-more-messages-at-once.json",
        messages: 2,
        state: "done",
        observations: &[
            Observation::ResultFile("cli-command-executed-result/ship1/some.log", Text::Exists),
            Observation::ResultFile("cli-command-executed-result/ship2/some.log", Text::Exists),
        ],
    },
    Example {
        // "Send an Op Command message for process listing with custom timeout and
        // amount of retries".
        file: "04-op-command-process-listing.json",
        messages: 1,
        state: "done",
        observations: &[Observation::Outcome("stdout", Text::Contains("httpGet\t*"))],
    },
    Example {
        // "Send and Op Command to start a subscriber on a node": httpGet only for
        // central and node1.
        file: "05-op-command-start-a-subscriber.json",
        messages: 1,
        state: "done",
        observations: &[Observation::ResultFile(
            "opcommand_logs/ship2/some.log",
            Text::Contains("serving httpGet for central, node1"),
        )],
    },
    Example {
        // "Send the same message to several hosts by using the toHosts field".
        file: "06-same-message-to-several-hosts.json",
        messages: 2,
        state: "done",
        observations: &[
            Observation::ResultFile("httpget/central/finn.no.html", Text::Equals(PAGE)),
            Observation::ResultFile("httpget/ship2/finn.no.html", Text::Equals(PAGE)),
        ],
    },
    Example {
        // The same with the field the heading names, `toHosts`.
        file: "06b-to-hosts-spelling.json",
        messages: 2,
        state: "done",
        observations: &[
            Observation::ResultFile("httpget/central/to-hosts.html", Text::Equals(PAGE)),
            Observation::ResultFile("httpget/ship2/to-hosts.html", Text::Equals(PAGE)),
        ],
    },
    Example {
        // "Send and Op Command to stop a subscriber on a node".
        file: "07-op-command-stop-a-subscriber.json",
        messages: 1,
        state: "done",
        observations: &[],
    },
    Example {
        // After the stop, httpGet is refused at ship2.
        file: "08-http-get-after-the-stop.json",
        messages: 1,
        state: "rejected",
        observations: &[Observation::Outcome("error", Text::Contains("not served"))],
    },
    Example {
        // "and another example": startProc for REQnCliCommandCont, with "MethodTimeout".
        file: "09-op-command-start-another.json",
        messages: 1,
        state: "done",
        observations: &[],
    },
    Example {
        // "Tail a log file on a node, and save the result of the tail centrally".
        file: "10-tail-a-log-file.json",
        messages: 1,
        state: "running",
        observations: &[Observation::TailsNewLines],
    },
];

/// Every message example of the steward document, fed unchanged through the socket.
#[test]
fn steward_document_examples_work_unchanged() {
    // The examples run `tree`; give the nodes one (an adjusted path, not a changed message).
    let shims = tempfile::tempdir().unwrap();
    let tree = shims.path().join("tree");
    std::fs::write(&tree, "#!/bin/sh\necho \"tree of $(pwd)\"\n").unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tree, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let path = format!(
        "{}:{}",
        shims.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    // The page is served on loopback, which httpGet reaches only when allowed; the log
    // ship2 tails lies in a folder it is given as its file root.
    let logs = tempfile::tempdir().unwrap();
    let logs_root = logs.path().to_str().unwrap();
    let Some(fleet) = fleet()
        .central("central")
        .node(
            NodeSpec::new("central")
                .env("PATH", path.as_str())
                .env("BOSUN_HTTP_ALLOW", "127.0.0.1/32"),
        )
        .node(NodeSpec::new("ship1").env("PATH", path.as_str()))
        .node(
            NodeSpec::new("ship2")
                .env("PATH", path.as_str())
                .env("BOSUN_HTTP_ALLOW", "127.0.0.1/32")
                .env("BOSUN_FILE_ROOTS", logs_root),
        )
        .start()
    else {
        return;
    };
    let central = fleet.node("central");
    let results = fleet.data_dir("central").join("data");
    let page = serve_page(PAGE);
    let log = logs.path().join("test.log");
    std::fs::write(&log, "old line\n").unwrap();
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/steward");

    for example in EXAMPLES {
        let what = example.file;
        let text = std::fs::read_to_string(folder.join(what))
            .unwrap_or_else(|e| panic!("{what}: {e}"))
            .replace("{{url}}", &page.url)
            .replace("{{log}}", log.to_str().unwrap());
        let ids = queued_ids(&nc_u(central, &text));
        assert_eq!(ids.len(), example.messages, "{what}: messages queued");
        let reports: Vec<Value> = ids
            .iter()
            .map(|id| wait_state(central, id, example.state))
            .collect();
        for observation in example.observations {
            match *observation {
                Observation::Outcome(field, want) => {
                    for report in &reports {
                        want.check(
                            &format!("{what}: outcome {field}"),
                            report["sent"]["outcome"][field].as_str(),
                        );
                    }
                }
                Observation::ResultFile(file, want) => {
                    // The sink writes the file after the reply is recorded, so a final
                    // state can be seen a moment before its file.
                    let written = eventually(
                        Duration::from_secs(10),
                        &format!("{what}: {file} is written"),
                        || std::fs::read_to_string(results.join(file)).ok(),
                    );
                    want.check(&format!("{what}: {file}"), Some(&written));
                }
                Observation::TailsNewLines => tails_new_lines(central, &ids[0], &log),
            }
        }
    }
}

/// The follower of `id` on `log` sends what is appended after it started, and nothing
/// from before.
fn tails_new_lines(central: &NodeProcess, id: &str, log: &Path) {
    let append = |text: &str| {
        let mut file = std::fs::OpenOptions::new().append(true).open(log).unwrap();
        file.write_all(text.as_bytes()).unwrap();
    };
    let output = || {
        report(central, id)["output"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    // `running` is recorded before the follower has found the file's end: probe lines
    // show when it follows, and only then are the lines under test written.
    eventually(
        Duration::from_secs(20),
        "the follower sends a probe",
        || {
            append("probe\n");
            output().contains("probe").then_some(())
        },
    );
    append("new line 1\nnew line 2\n");
    let followed = eventually(
        Duration::from_secs(20),
        "tailed lines reach central",
        || {
            let output = output();
            output.ends_with("new line 2\n").then_some(output)
        },
    );
    assert_eq!(
        followed.trim_start_matches("probe\n"),
        "new line 1\nnew line 2\n",
        "only lines written after the start, in order"
    );
}

#[test]
fn the_socket_takes_steward_files_and_survives_garbage() {
    let fleet = fleet()
        .without_broker()
        .nodes(&["ship1"])
        .start()
        .expect("a fleet without a broker always starts");
    let node = fleet.node("ship1");
    let steward = r#"[
      {
        "directory":"cli_command__result",
        "fileName": "some-file-name.result",
        "toNode": "ship1",
        "data": ["bash","-c","echo from steward"],
        "method":"REQCliCommand",
        "ACKTimeout":5,
        "retries":3,
        "replyACKTimeout":5,
        "replyRetries":3,
        "methodTimeout": 10
      }
    ]"#;
    let answer = nc_u(node, steward);
    assert_eq!(answer["ok"], true, "{answer}");
    let id = answer["queued"][0]["id"].as_str().unwrap().to_string();

    for garbage in [
        "{{{{",
        "[1, 2, 3]",
        r#"[{"toNode":"ship1","method":"REQNope"}]"#,
        r#"{"op":"explode"}"#,
        "a garbage line\n",
    ] {
        let answer = nc_u(node, garbage);
        assert_eq!(answer["ok"], false, "{garbage} → {answer}");
        assert!(!answer["error"].as_str().unwrap().is_empty());
    }
    eventually(Duration::from_secs(10), "the steward message ran", || {
        (state_of(node, &id) == "done").then_some(())
    });
    let report = json(&node.cli(&["status", "--json", &id]));
    assert_eq!(report["sent"]["outcome"]["stdout"], "from steward\n");
}
