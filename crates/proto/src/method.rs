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
}

const ALL: &[(Method, &str)] = &[
    (Method::CliCommand, "cliCommand"),
    (Method::CliCommandCont, "cliCommandCont"),
    (Method::TailFile, "tailFile"),
    (Method::HttpGet, "httpGet"),
    (Method::Hello, "hello"),
    (Method::ErrorLog, "errorLog"),
    (Method::Ping, "ping"),
    (Method::Pong, "pong"),
    (Method::ToConsole, "toConsole"),
    (Method::ToFile, "toFile"),
    (Method::ToFileAppend, "toFileAppend"),
    (Method::OpCommand, "opCommand"),
    (Method::OpProcessList, "opProcessList"),
    (Method::OpProcessStart, "opProcessStart"),
    (Method::OpProcessStop, "opProcessStop"),
    (Method::CopySrc, "copySrc"),
    (Method::CopyDst, "copyDst"),
    (Method::Result, "result"),
    (Method::ContainerRun, "containerRun"),
    (Method::ContainerCreate, "containerCreate"),
    (Method::ContainerStart, "containerStart"),
    (Method::ContainerStop, "containerStop"),
    (Method::ContainerRestart, "containerRestart"),
    (Method::ContainerKill, "containerKill"),
    (Method::ContainerPause, "containerPause"),
    (Method::ContainerUnpause, "containerUnpause"),
    (Method::ContainerRemove, "containerRemove"),
    (Method::ContainerInspect, "containerInspect"),
    (Method::ContainerList, "containerList"),
    (Method::ContainerLogs, "containerLogs"),
    (Method::ContainerStats, "containerStats"),
    (Method::ImagePull, "imagePull"),
    (Method::ImageList, "imageList"),
    (Method::Mark, "mark"),
    (Method::CaptureFile, "captureFile"),
    (Method::CaptureShip, "captureShip"),
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
        ALL.iter().map(|(m, _)| *m)
    }

    /// The canonical camelCase name, used in subjects and stored records.
    pub fn name(self) -> &'static str {
        ALL.iter()
            .find(|(m, _)| *m == self)
            .map(|(_, n)| *n)
            .expect("every method has a name")
    }

    /// Parse a canonical name or a steward `REQ…`/`REQn…` spelling.
    pub fn parse(spelling: &str) -> Option<ParsedMethod> {
        if let Some((m, _)) = ALL.iter().find(|(_, n)| *n == spelling) {
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
            .find(|(_, n)| *n == camel)
            .map(|(m, _)| ParsedMethod {
                method: *m,
                unordered,
            })
    }

    /// True for methods that only receive replies (sinks) and never answer.
    pub fn is_reply_sink(self) -> bool {
        matches!(
            self,
            Method::Result | Method::ToConsole | Method::ToFile | Method::ToFileAppend
        )
    }

    /// False for events and sinks: an ACK is all their sender waits for.
    pub fn expects_reply(self) -> bool {
        !(self.is_reply_sink()
            || matches!(self, Method::Hello | Method::ErrorLog | Method::CaptureShip))
    }

    /// True for methods whose output streams back in numbered chunks.
    pub fn is_streaming(self) -> bool {
        matches!(
            self,
            Method::CliCommandCont | Method::TailFile | Method::ContainerLogs
        )
    }

    /// A comma-separated list of the canonical names, for error messages.
    pub fn catalogue() -> String {
        ALL.iter().map(|(_, n)| *n).collect::<Vec<_>>().join(", ")
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
