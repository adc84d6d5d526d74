//! The closed list of methods a message can name.

use std::fmt;

/// What a message asks its destination node to do.
///
/// Each method has one canonical camelCase name. Steward's `REQ…` spellings map onto the
/// same variants; a `REQn…` spelling additionally means "unordered".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Method {
    /// Run a command (argv) and return stdout, stderr and the exit code.
    CliCommand,
    /// Run a command and stream its output back in chunks.
    CliCommandCont,
    /// Follow a file and stream new lines back.
    TailFile,
    /// Fetch a URL.
    HttpGet,
    /// Heartbeat with inventory.
    Hello,
    /// An error report, kept in the receiver's error log.
    ErrorLog,
    /// Liveness probe: answers at once.
    Ping,
    /// Answer to a ping (steward's REQPong).
    Pong,
    /// Reply sink: print to the receiver's console.
    ToConsole,
    /// Reply sink: write a file.
    ToFile,
    /// Reply sink: append to a file.
    ToFileAppend,
    /// Steward's operation command (ps, startProc, stopProc).
    OpCommand,
    /// Which method handlers this node serves.
    OpProcessList,
    /// Start serving a method handler.
    OpProcessStart,
    /// Stop serving a method handler.
    OpProcessStop,
    /// Chunked file copy, source side.
    CopySrc,
    /// Chunked file copy, destination side.
    CopyDst,
    /// bosun's default reply: store the outcome at the sender.
    Result,
    /// Create and start a container from a [`crate::container::ContainerSpec`].
    ContainerRun,
    /// Create a container without starting it.
    ContainerCreate,
    /// Start a container.
    ContainerStart,
    /// Stop a container (SIGTERM, then SIGKILL after a timeout).
    ContainerStop,
    /// Restart a container.
    ContainerRestart,
    /// Send a signal to a container (default SIGTERM).
    ContainerKill,
    /// Pause a container.
    ContainerPause,
    /// Unpause a container.
    ContainerUnpause,
    /// Remove a container.
    ContainerRemove,
    /// Inspect a container.
    ContainerInspect,
    /// List containers.
    ContainerList,
    /// A container's logs (streamed when following).
    ContainerLogs,
    /// One stats sample of a container.
    ContainerStats,
    /// Pull an image (with registry auth).
    ImagePull,
    /// List images.
    ImageList,
    /// Write an entry into the node's event stream.
    Mark,
    /// Switch the node's event stream to another file (LSDSuite's `log`).
    CaptureFile,
    /// New lines of a node's event stream, shipped to central: `[file, text]`.
    CaptureShip,
    /// Take this node out of placement (`["on"]`, DockerMod's `unregister`) or put it
    /// back (`["off"]`, `register`); kept in its data dir and told in its hellos.
    NodeDrain,
    /// Keep a fault experiment's timed events for this node (`[plan JSON]`): the node
    /// fires each on its own clock and undoes each fault when its lease ends.
    ChaosSchedule,
    /// Undo now every fault of an experiment on this node and drop its pending events
    /// (`[experiment]`, or `["*"]` for every experiment).
    ChaosAbort,
    /// This node's events of an experiment with their planned and actual times, and the
    /// state changes of the containers they touched (`[experiment]`).
    ChaosList,
    /// Supervise a workload on this node (`[definition JSON]`).
    WorkloadAdd,
    /// Stop a supervised workload and forget it (`[name]`).
    WorkloadRemove,
    /// Restart a supervised workload, clearing `FATAL` (`[name]`).
    WorkloadRestart,
    /// The supervised workloads of this node and their states.
    WorkloadList,
}

/// What a method is: who runs it at the destination node, and whether it is answered.
///
/// Every question about a method's kind (is it answered? run by whom? taken in on
/// arrival?) is derived from this, so a new method is placed by answering it once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Run by a handler of the methods crate; its outcome goes back as a reply.
    Handler(Output),
    /// Run by the node itself (its event stream); its outcome goes back as a reply.
    Node,
    /// Taken in by the receiver on arrival and recorded, never run and never answered.
    Absorbed,
    /// Takes replies only (a previous message with a result or a chunk) and keeps them.
    ReplySink,
    /// Named for compatibility with steward's catalogue, but served by no node: refused
    /// on arrival.
    Unserved,
}

/// How a handler's output travels back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Output {
    /// One reply with the whole outcome.
    Whole,
    /// Numbered chunks as the output comes, then the outcome.
    Streamed,
}

/// Every method, in catalogue order. A test checks that it lists each variant once.
const ALL: &[Method] = &[
    Method::CliCommand,
    Method::CliCommandCont,
    Method::TailFile,
    Method::HttpGet,
    Method::Hello,
    Method::ErrorLog,
    Method::Ping,
    Method::Pong,
    Method::ToConsole,
    Method::ToFile,
    Method::ToFileAppend,
    Method::OpCommand,
    Method::OpProcessList,
    Method::OpProcessStart,
    Method::OpProcessStop,
    Method::CopySrc,
    Method::CopyDst,
    Method::Result,
    Method::ContainerRun,
    Method::ContainerCreate,
    Method::ContainerStart,
    Method::ContainerStop,
    Method::ContainerRestart,
    Method::ContainerKill,
    Method::ContainerPause,
    Method::ContainerUnpause,
    Method::ContainerRemove,
    Method::ContainerInspect,
    Method::ContainerList,
    Method::ContainerLogs,
    Method::ContainerStats,
    Method::ImagePull,
    Method::ImageList,
    Method::Mark,
    Method::CaptureFile,
    Method::CaptureShip,
    Method::NodeDrain,
    Method::ChaosSchedule,
    Method::ChaosAbort,
    Method::ChaosList,
    Method::WorkloadAdd,
    Method::WorkloadRemove,
    Method::WorkloadRestart,
    Method::WorkloadList,
];

/// How a method name was spelled: the method, and whether the spelling implies unordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParsedMethod {
    /// The method named.
    pub method: Method,
    /// True for steward's `REQn…` spellings.
    pub unordered: bool,
}

impl Method {
    /// Every method, in catalogue order.
    pub fn all() -> impl Iterator<Item = Method> {
        ALL.iter().copied()
    }

    /// The canonical camelCase name, used in subjects and stored records.
    pub fn name(self) -> &'static str {
        match self {
            Method::CliCommand => "cliCommand",
            Method::CliCommandCont => "cliCommandCont",
            Method::TailFile => "tailFile",
            Method::HttpGet => "httpGet",
            Method::Hello => "hello",
            Method::ErrorLog => "errorLog",
            Method::Ping => "ping",
            Method::Pong => "pong",
            Method::ToConsole => "toConsole",
            Method::ToFile => "toFile",
            Method::ToFileAppend => "toFileAppend",
            Method::OpCommand => "opCommand",
            Method::OpProcessList => "opProcessList",
            Method::OpProcessStart => "opProcessStart",
            Method::OpProcessStop => "opProcessStop",
            Method::CopySrc => "copySrc",
            Method::CopyDst => "copyDst",
            Method::Result => "result",
            Method::ContainerRun => "containerRun",
            Method::ContainerCreate => "containerCreate",
            Method::ContainerStart => "containerStart",
            Method::ContainerStop => "containerStop",
            Method::ContainerRestart => "containerRestart",
            Method::ContainerKill => "containerKill",
            Method::ContainerPause => "containerPause",
            Method::ContainerUnpause => "containerUnpause",
            Method::ContainerRemove => "containerRemove",
            Method::ContainerInspect => "containerInspect",
            Method::ContainerList => "containerList",
            Method::ContainerLogs => "containerLogs",
            Method::ContainerStats => "containerStats",
            Method::ImagePull => "imagePull",
            Method::ImageList => "imageList",
            Method::Mark => "mark",
            Method::CaptureFile => "captureFile",
            Method::CaptureShip => "captureShip",
            Method::NodeDrain => "nodeDrain",
            Method::ChaosSchedule => "chaosSchedule",
            Method::ChaosAbort => "chaosAbort",
            Method::ChaosList => "chaosList",
            Method::WorkloadAdd => "workloadAdd",
            Method::WorkloadRemove => "workloadRemove",
            Method::WorkloadRestart => "workloadRestart",
            Method::WorkloadList => "workloadList",
        }
    }

    /// What this method is; see [`Role`].
    pub fn role(self) -> Role {
        match self {
            Method::CliCommand
            | Method::HttpGet
            | Method::Ping
            | Method::OpCommand
            | Method::OpProcessList
            | Method::OpProcessStart
            | Method::OpProcessStop
            | Method::CopySrc
            | Method::CopyDst
            | Method::ContainerRun
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
            | Method::ContainerStats
            | Method::ImagePull
            | Method::ImageList
            | Method::NodeDrain => Role::Handler(Output::Whole),
            Method::CliCommandCont | Method::TailFile | Method::ContainerLogs => {
                Role::Handler(Output::Streamed)
            }
            Method::Mark
            | Method::CaptureFile
            | Method::ChaosSchedule
            | Method::ChaosAbort
            | Method::ChaosList
            | Method::WorkloadAdd
            | Method::WorkloadRemove
            | Method::WorkloadRestart
            | Method::WorkloadList => Role::Node,
            Method::Hello | Method::ErrorLog | Method::CaptureShip => Role::Absorbed,
            Method::Result | Method::ToConsole | Method::ToFile | Method::ToFileAppend => {
                Role::ReplySink
            }
            // A pong answers steward's ping; bosun's ping is answered by its reply.
            Method::Pong => Role::Unserved,
        }
    }

    /// Parse a canonical name or a steward `REQ…`/`REQn…` spelling.
    pub fn parse(spelling: &str) -> Option<ParsedMethod> {
        if let Some(m) = ALL.iter().find(|m| m.name() == spelling) {
            return Some(ParsedMethod {
                method: *m,
                unordered: false,
            });
        }
        let (rest, unordered) = match spelling.strip_prefix("REQn") {
            Some(rest) if rest.starts_with(|c: char| c.is_ascii_uppercase()) => (rest, true),
            _ => (spelling.strip_prefix("REQ")?, false),
        };
        let mut chars = rest.chars();
        let first = chars.next()?;
        if !first.is_ascii_uppercase() {
            return None;
        }
        let camel: String = first.to_ascii_lowercase().to_string() + chars.as_str();
        ALL.iter()
            .find(|m| m.name() == camel)
            .map(|m| ParsedMethod {
                method: *m,
                unordered,
            })
    }

    /// True for methods that only receive replies (sinks) and never answer.
    pub fn is_reply_sink(self) -> bool {
        self.role() == Role::ReplySink
    }

    /// True for methods the receiver takes in on arrival (replies, hellos, error
    /// reports, shipped captures) instead of queueing them to run.
    pub fn is_absorbed_on_arrival(self) -> bool {
        matches!(self.role(), Role::Absorbed | Role::ReplySink)
    }

    /// False for events and sinks: an ACK is all their sender waits for. An unserved
    /// method is refused on arrival, which settles it like any refusal.
    pub fn expects_reply(self) -> bool {
        match self.role() {
            Role::Handler(_) | Role::Node | Role::Unserved => true,
            Role::Absorbed | Role::ReplySink => false,
        }
    }

    /// False for methods that only read (a ping, the read-only lists): run a second
    /// time after a crash, they change nothing. Their start is therefore recorded with
    /// their finish, not durably before the run: one fsynced commit fewer each. Every
    /// other method's start is durable before it runs, so it never starts twice.
    pub fn has_side_effects(self) -> bool {
        match self {
            Method::Ping
            | Method::OpProcessList
            | Method::ContainerInspect
            | Method::ContainerList
            | Method::ContainerStats
            | Method::ImageList
            | Method::ChaosList
            | Method::WorkloadList => false,
            Method::CliCommand
            | Method::CliCommandCont
            | Method::TailFile
            | Method::HttpGet
            | Method::Hello
            | Method::ErrorLog
            | Method::Pong
            | Method::ToConsole
            | Method::ToFile
            | Method::ToFileAppend
            | Method::OpCommand
            | Method::OpProcessStart
            | Method::OpProcessStop
            | Method::CopySrc
            | Method::CopyDst
            | Method::Result
            | Method::ContainerRun
            | Method::ContainerCreate
            | Method::ContainerStart
            | Method::ContainerStop
            | Method::ContainerRestart
            | Method::ContainerKill
            | Method::ContainerPause
            | Method::ContainerUnpause
            | Method::ContainerRemove
            | Method::ContainerLogs
            | Method::ImagePull
            | Method::Mark
            | Method::CaptureFile
            | Method::CaptureShip
            | Method::NodeDrain
            | Method::ChaosSchedule
            | Method::ChaosAbort
            | Method::WorkloadAdd
            | Method::WorkloadRemove
            | Method::WorkloadRestart => true,
        }
    }

    /// True for methods whose output streams back in numbered chunks.
    pub fn is_streaming(self) -> bool {
        self.role() == Role::Handler(Output::Streamed)
    }

    /// A comma-separated list of the canonical names, for error messages.
    pub fn catalogue() -> String {
        ALL.iter().map(|m| m.name()).collect::<Vec<_>>().join(", ")
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every variant, written as a match so that a new variant fails to compile here
    /// until it is listed.
    fn is_listed(method: Method) -> bool {
        match method {
            Method::CliCommand
            | Method::CliCommandCont
            | Method::TailFile
            | Method::HttpGet
            | Method::Hello
            | Method::ErrorLog
            | Method::Ping
            | Method::Pong
            | Method::ToConsole
            | Method::ToFile
            | Method::ToFileAppend
            | Method::OpCommand
            | Method::OpProcessList
            | Method::OpProcessStart
            | Method::OpProcessStop
            | Method::CopySrc
            | Method::CopyDst
            | Method::Result
            | Method::ContainerRun
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
            | Method::Mark
            | Method::CaptureFile
            | Method::CaptureShip
            | Method::NodeDrain
            | Method::ChaosSchedule
            | Method::ChaosAbort
            | Method::ChaosList
            | Method::WorkloadAdd
            | Method::WorkloadRemove
            | Method::WorkloadRestart
            | Method::WorkloadList => ALL.contains(&method),
        }
    }

    #[test]
    fn the_catalogue_lists_every_variant_once() {
        let mut seen = std::collections::BTreeSet::new();
        for m in Method::all() {
            assert!(is_listed(m));
            assert!(seen.insert(m), "{m} listed twice");
        }
        // 44 variants in the enum; `is_listed` above names each of them.
        assert_eq!(seen.len(), 44);
        let names: std::collections::BTreeSet<&str> = Method::all().map(Method::name).collect();
        assert_eq!(names.len(), seen.len(), "two methods share a name");
    }

    #[test]
    fn steward_spellings_round_trip_for_every_method() {
        for m in Method::all() {
            let name = m.name();
            let pascal = name[..1].to_ascii_uppercase() + &name[1..];
            let ordered = Method::parse(&format!("REQ{pascal}")).unwrap();
            assert_eq!((ordered.method, ordered.unordered), (m, false));
            let unordered = Method::parse(&format!("REQn{pascal}")).unwrap();
            assert_eq!((unordered.method, unordered.unordered), (m, true));
        }
    }

    #[test]
    fn only_methods_run_to_answer_and_not_streamed_may_skip_the_durable_start() {
        // A method whose start is recorded with its finish must be run (a handler or
        // the node) and answered with one outcome: nothing else has a run to record.
        for m in Method::all().filter(|m| !m.has_side_effects()) {
            assert!(
                matches!(m.role(), Role::Handler(Output::Whole) | Role::Node),
                "{m} has no side effects but is not a run with one outcome"
            );
        }
        let reads: Vec<Method> = Method::all().filter(|m| !m.has_side_effects()).collect();
        assert_eq!(
            reads,
            [
                Method::Ping,
                Method::OpProcessList,
                Method::ContainerInspect,
                Method::ContainerList,
                Method::ContainerStats,
                Method::ImageList,
                Method::ChaosList,
                Method::WorkloadList
            ]
        );
    }

    #[test]
    fn derived_questions_follow_the_role() {
        let sinks: Vec<Method> = Method::all().filter(|m| m.is_reply_sink()).collect();
        assert_eq!(
            sinks,
            [
                Method::ToConsole,
                Method::ToFile,
                Method::ToFileAppend,
                Method::Result
            ]
        );
        let streaming: Vec<Method> = Method::all().filter(|m| m.is_streaming()).collect();
        assert_eq!(
            streaming,
            [
                Method::CliCommandCont,
                Method::TailFile,
                Method::ContainerLogs
            ]
        );
        let unanswered: Vec<Method> = Method::all().filter(|m| !m.expects_reply()).collect();
        assert_eq!(
            unanswered,
            [
                Method::Hello,
                Method::ErrorLog,
                Method::ToConsole,
                Method::ToFile,
                Method::ToFileAppend,
                Method::Result,
                Method::CaptureShip
            ]
        );
        assert_eq!(Method::Mark.role(), Role::Node);
        assert_eq!(Method::CaptureFile.role(), Role::Node);
        assert_eq!(Method::Pong.role(), Role::Unserved);
        assert!(Method::Hello.is_absorbed_on_arrival());
        assert!(Method::Result.is_absorbed_on_arrival());
        assert!(!Method::Mark.is_absorbed_on_arrival());
    }

    #[test]
    fn canonical_names_round_trip() {
        for m in Method::all() {
            let parsed = Method::parse(m.name()).unwrap();
            assert_eq!(parsed.method, m);
            assert!(!parsed.unordered);
        }
    }

    #[test]
    fn steward_spellings_map_to_methods() {
        let p = Method::parse("REQCliCommand").unwrap();
        assert_eq!((p.method, p.unordered), (Method::CliCommand, false));
        let p = Method::parse("REQnCliCommand").unwrap();
        assert_eq!((p.method, p.unordered), (Method::CliCommand, true));
        let p = Method::parse("REQnCliCommandCont").unwrap();
        assert_eq!((p.method, p.unordered), (Method::CliCommandCont, true));
        let p = Method::parse("REQToFileAppend").unwrap();
        assert_eq!(p.method, Method::ToFileAppend);
        assert_eq!(
            Method::parse("REQOpCommand").unwrap().method,
            Method::OpCommand
        );
        assert_eq!(Method::parse("REQHello").unwrap().method, Method::Hello);
    }

    #[test]
    fn unknown_spellings_are_refused() {
        for bad in [
            "",
            "REQ",
            "REQn",
            "REQnope",
            "cli_command",
            "CliCommand",
            "REQFoo",
        ] {
            assert!(Method::parse(bad).is_none(), "{bad} parsed");
        }
    }
}
