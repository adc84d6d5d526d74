//! Node configuration: a TOML file, then `BOSUN_*` environment variables, then flags.
//!
//! Every setting is declared once, in the `settings!` table below: its TOML key (the
//! field name), type, default, and, when it has them, its flag and environment variable.
//! From that one table come the [`Config`] struct, its [`Default`], the list
//! [`SETTINGS`] the CLI builds its flags from, and the parsing of flag and environment
//! values. [`Config::load`] is the one place where the layers meet: the file (`--config
//! PATH`, else `<data dir>/bosun.toml` when it exists), then environment values, then
//! flags. Nothing given on the command line is written back to the file unless the
//! operator asks for it.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How a setting is given on the command line and in the environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cli {
    /// The long flag without its dashes, e.g. `ack-timeout`.
    pub flag: &'static str,
    /// The environment variable, e.g. `BOSUN_ACK_TIMEOUT`.
    pub env: &'static str,
    /// The placeholder shown in help, e.g. `SECS`.
    pub value_name: &'static str,
    /// The help line, without the default (see [`Setting::default_text`]).
    pub help: &'static str,
    /// The default in words, for defaults that are found at load time or mean "off".
    pub default_words: Option<&'static str>,
    /// The flag may be repeated, and each value may hold several, comma-separated.
    pub list: bool,
    /// Every subcommand needs it (to find its node), so it is declared with the global
    /// options rather than with the node's.
    pub global: bool,
}

impl Cli {
    const fn new(
        flag: &'static str,
        env: &'static str,
        value_name: &'static str,
        help: &'static str,
    ) -> Cli {
        Cli {
            flag,
            env,
            value_name,
            help,
            default_words: None,
            list: false,
            global: false,
        }
    }

    const fn default_words(mut self, words: &'static str) -> Cli {
        self.default_words = Some(words);
        self
    }

    const fn list(mut self) -> Cli {
        self.list = true;
        self
    }

    const fn global(mut self) -> Cli {
        self.global = true;
        self
    }
}

/// One setting: its TOML key and, when it has them, its flag and environment variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    /// The TOML key, which is also the field of [`Config`].
    pub key: &'static str,
    /// Its flag and environment variable; `None` for settings only the file sets.
    pub cli: Option<Cli>,
}

impl Setting {
    /// The setting with this TOML key.
    pub fn find(key: &str) -> Option<&'static Setting> {
        SETTINGS.iter().find(|s| s.key == key)
    }

    /// The default as help shows it: the value in [`Config::default`], or words for a
    /// default found at load time (`the hostname`) or for an unset one (`none`, `off`).
    pub fn default_text(&self) -> String {
        if let Some(words) = self.cli.and_then(|c| c.default_words) {
            return words.to_string();
        }
        match default_values().get(self.key) {
            None => "none".to_string(),
            Some(toml::Value::String(text)) => text.clone(),
            Some(toml::Value::Array(items)) if items.is_empty() => "none".to_string(),
            Some(toml::Value::Table(items)) if items.is_empty() => "none".to_string(),
            Some(value) => value.to_string(),
        }
    }

    /// Where a value of this setting came from, in words for error messages.
    fn origin(&self, layer: Layer) -> String {
        match (self.cli, layer) {
            (Some(cli), Layer::Environment) => format!("environment variable {}", cli.env),
            (Some(cli), Layer::Flag) => format!("flag --{}", cli.flag),
            (None, Layer::Environment) => "the environment".to_string(),
            (None, Layer::Flag) => "the command line".to_string(),
        }
    }
}

/// The defaults as TOML values, made once: every CLI start builds the help of every
/// flag from them, and serialising the config per flag cost a measurable part of a
/// `bosun exec` round trip.
fn default_values() -> &'static toml::Value {
    static DEFAULTS: std::sync::OnceLock<toml::Value> = std::sync::OnceLock::new();
    DEFAULTS
        .get_or_init(|| toml::Value::try_from(Config::default()).expect("config always serialises"))
}

/// Declares every setting once and derives from that list the [`Config`] struct, its
/// defaults, [`SETTINGS`], and the laying of environment and flag values over a config.
macro_rules! settings {
    ($(
        $(#[$attribute:meta])*
        $field:ident: $type:ty = $default:expr, $cli:expr;
    )*) => {
        /// Everything a node needs to run.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct Config {
            $($(#[$attribute])* pub $field: $type,)*
        }

        /// The defaults: plain values, found without looking at the host. The name and
        /// the data dir are placeholders that [`Config::load`] replaces with the
        /// hostname and `~/.local/share/bosun` when no layer sets them.
        impl Default for Config {
            fn default() -> Self {
                Config { $($field: $default,)* }
            }
        }

        /// Every setting, in the order of the file.
        pub const SETTINGS: &[Setting] = &[$(Setting { key: stringify!($field), cli: $cli },)*];

        impl Config {
            /// Lay the values one layer gives for `key` over this config.
            fn apply_values(&mut self, key: &str, values: &[OsString]) -> Result<(), ValueError> {
                match key {
                    $(stringify!($field) => SettingValue::apply(&mut self.$field, values),)*
                    _ => Err(ValueError::UnknownSetting { key: key.to_string() }),
                }
            }
        }
    };
}

settings! {
    /// This node's name: one NATS subject token (`A-Z a-z 0-9 _ -`).
    name: String = "node".into(),
        Some(Cli::new("name", "BOSUN_NAME", "NAME",
            "This node's name (letters, digits, '_' and '-').").default_words("the hostname"));
    /// Where the database, the control socket and logs live.
    data_dir: PathBuf = PathBuf::from("bosun-data"),
        Some(Cli::new("data-dir", "BOSUN_DATA_DIR", "DIR",
            "The node's data dir: database, socket `bosun.sock`, error log, `bosun.toml`.")
            .default_words("~/.local/share/bosun").global());
    /// NATS server URLs. Empty: a standalone node on the in-process transport.
    broker: Vec<String> = Vec::new(),
        Some(Cli::new("broker", "BOSUN_BROKER", "URL",
            "NATS server URL(s), comma-separated. Without one the node is standalone.")
            .default_words("none (standalone)").list());
    /// First token of every subject: `<prefix>.<node>.<method>`.
    subject_prefix: String = "bosun".into(),
        Some(Cli::new("subject-prefix", "BOSUN_SUBJECT_PREFIX", "PREFIX",
            "First token of every subject."));
    /// Seconds to wait for an ACK before resending, when a message sets no `ACKTimeout`.
    ack_timeout_secs: u64 = 5,
        Some(Cli::new("ack-timeout", "BOSUN_ACK_TIMEOUT", "SECS",
            "Default seconds to wait for an ACK before resending."));
    /// Resends after ACK timeouts, when a message sets no `retries`.
    retries: u32 = 5,
        Some(Cli::new("retries", "BOSUN_RETRIES", "N", "Default resends after ACK timeouts."));
    /// Seconds a message may wait for delivery, when it sets no `ttl` (0: for ever).
    default_ttl_secs: u64 = 7 * 24 * 3600,
        Some(Cli::new("default-ttl", "BOSUN_DEFAULT_TTL", "SECS",
            "Default seconds a message may wait for delivery when it sets no ttl (0: for ever)."));
    /// Seconds a method may run, when a message sets no `methodTimeout`.
    method_timeout_secs: u64 = 300,
        Some(Cli::new("method-timeout", "BOSUN_METHOD_TIMEOUT", "SECS",
            "Default seconds a method may run."));
    /// Seconds between SIGTERM and SIGKILL when a command is ended.
    kill_grace_secs: u64 = 5, None;
    /// Largest accepted message, in bytes, on every input and on the wire.
    max_message_bytes: usize = 1024 * 1024, None;
    /// Most bytes of stdout and of stderr kept from a command.
    output_limit_bytes: usize = 512 * 1024, None;
    /// Unordered messages that may run at once.
    max_concurrent: usize = 64, None;
    /// Outbox entries kept in memory at once; the rest wait on disk and are read in
    /// pages as room frees up, so a deep queue costs disk, not memory.
    outbox_memory_entries: usize = 4096, None;
    /// Unordered messages that may await their ACK at once.
    max_in_flight: usize = 1024, None;
    /// CA bundle for NATS TLS.
    tls_ca: Option<PathBuf> = None,
        Some(Cli::new("tls-ca", "BOSUN_TLS_CA", "FILE",
            "CA bundle to verify the NATS server (turns TLS on)."));
    /// Client certificate for NATS mutual TLS.
    tls_cert: Option<PathBuf> = None,
        Some(Cli::new("tls-cert", "BOSUN_TLS_CERT", "FILE",
            "Client certificate for NATS mutual TLS."));
    /// Client key for NATS mutual TLS.
    tls_key: Option<PathBuf> = None,
        Some(Cli::new("tls-key", "BOSUN_TLS_KEY", "FILE", "Client key for NATS mutual TLS."));
    /// Refuse to talk to NATS without TLS.
    require_tls: bool = false, None;
    /// The longest wait, in milliseconds, between two tries to reach NATS again after
    /// the connection was lost. The waits double from 25 ms up to this, each shortened
    /// by up to half at random so that a fleet does not come back in one burst.
    reconnect_max_ms: u64 = 1000,
        Some(Cli::new("reconnect-max", "BOSUN_RECONNECT_MAX_MS", "MS",
            "Longest wait between tries to reach NATS again after a lost connection."));
    /// Seconds between the node's pings to its NATS server. After two unanswered the
    /// connection is taken for dead and made again: a link that died silently (a
    /// partition drops packets, nothing resets) is noticed within about three pings,
    /// and until then sends wait for ACKs that cannot come.
    ping_interval_secs: u64 = 10,
        Some(Cli::new("ping-interval", "BOSUN_PING_INTERVAL", "SECS",
            "Seconds between pings to NATS; two unanswered and the connection is made again."));
    /// NATS nkey seed file.
    nkey_seed_file: Option<PathBuf> = None,
        Some(Cli::new("nkey-seed-file", "BOSUN_NKEY_SEED_FILE", "FILE",
            "NATS nkey seed file (the seed itself is never taken on the command line)."));
    /// NATS creds file.
    creds_file: Option<PathBuf> = None,
        Some(Cli::new("creds-file", "BOSUN_CREDS_FILE", "FILE", "NATS credentials file."));
    /// Issuer public keys (`O…`, from `bosun keys init`) this node trusts: a frame from
    /// another node is read only if it carries an identity one of them issued. Empty: the
    /// node refuses every message from other nodes (its own still run).
    trusted_issuers: Vec<String> = Vec::new(),
        Some(Cli::new("trust", "BOSUN_TRUSTED_ISSUERS", "KEY",
            "Trust identities issued by this issuer key (O…, from `bosun keys init`); \
             repeat or comma-separate. Without one, messages from other nodes are refused.")
            .default_words("none: refuse other nodes").list());
    /// This node's identity, issued by `bosun keys issue`. Default: `<data_dir>/node.id`.
    /// The node's key is `<data_dir>/node.key`, created at first start.
    identity_file: Option<PathBuf> = None, None;
    /// Local policy: what signers may run here, as well as their grants allow. Rules
    /// `[NAME=]GRANT`: `*`, `ping`, `central=*`, `ops-*=cliCommand:uptime`. Empty: nothing
    /// from other nodes runs.
    policy: Vec<String> = Vec::new(),
        Some(Cli::new("policy", "BOSUN_POLICY", "RULE",
            "Let signers run methods here: [NAME=]METHOD[:ARGS], e.g. 'central=*', \
             'cliCommand:uptime'; repeat for more. Their identity's grants must allow it too.")
            .default_words("none: nothing from other nodes runs").list());
    /// Accept unsigned messages from anyone on the broker. For labs only: anyone who
    /// reaches the broker can run anything this node's user can.
    insecure_open: bool = false, None;
    /// Largest difference, in seconds, between a frame's time stamp and this node's clock.
    clock_skew_secs: u64 = 300, None;
    /// Log filter, e.g. `info` or `bosun_node=debug`.
    log: String = "info".into(),
        Some(Cli::new("log", "BOSUN_LOG", "FILTER",
            "Log filter, e.g. `info`, `debug`, `bosun_node=debug`."));
    /// The central node: it keeps the fleet registry and the fleet's error log, and
    /// receives hellos (steward's `centralNodeName`).
    central: Option<String> = None,
        Some(Cli::new("central", "BOSUN_CENTRAL", "NODE",
            "The central node: keeps the fleet registry and error log, receives hellos."));
    /// Whether this node listens to the hellos every node announces on the fleet
    /// subject, to place containers and to send to `*` without asking central: `on`,
    /// `off`, or `auto` (on for central, for a node with no central set, and for a node
    /// with `http_listen`, whose APIs place containers). Listening costs each listener
    /// one signature check per node per hello interval, so every node of a large fleet
    /// listening grows with the square of the fleet.
    fleet_view: String = "auto".into(),
        Some(Cli::new("fleet-view", "BOSUN_FLEET_VIEW", "auto|on|off",
            "Listen to every node's announced hellos (auto: central, no central set, or http_listen)."));
    /// Seconds between hellos to central; 0 turns them off (steward's `startPubHello`).
    hello_interval_secs: u64 = 30,
        Some(Cli::new("hello-interval", "BOSUN_HELLO_INTERVAL", "SECS",
            "Seconds between hellos to central; 0 turns them off."));
    /// Where reply sinks and results with `directory`/`fileName` are written:
    /// `<results_dir>/<fromNode>/<directory>/<fileName>` (steward's
    /// `subscribersDataFolder`). Default: `<data_dir>/data`.
    results_dir: Option<PathBuf> = None,
        Some(Cli::new("results-dir", "BOSUN_RESULTS_DIR", "DIR",
            "Where results with directory/fileName and reply sinks are written.")
            .default_words("<data dir>/data"));
    /// Address of the TCP listener for steward message arrays, e.g. `127.0.0.1:8090`.
    /// Off when unset (steward's `tcpListener`).
    #[serde(deserialize_with = "deserialize_address")]
    tcp_listen: Option<SocketAddr> = None,
        Some(Cli::new("tcp-listen", "BOSUN_TCP_LISTEN", "ADDR",
            "Listen for steward message arrays on TCP, e.g. 127.0.0.1:8090.")
            .default_words("off"));
    /// Folder watched for message files, which are submitted, then removed. Default:
    /// `<data_dir>/readfolder`; set to an empty path to turn it off.
    read_dir: Option<PathBuf> = None,
        Some(Cli::new("read-dir", "BOSUN_READ_DIR", "DIR",
            "Folder watched for message files (submitted, then removed).")
            .default_words("<data dir>/readfolder"));
    /// Folder whose message files are submitted at every start. Default:
    /// `<data_dir>/startup`.
    startup_dir: Option<PathBuf> = None,
        Some(Cli::new("startup-dir", "BOSUN_STARTUP_DIR", "DIR",
            "Folder of message files submitted at every start.")
            .default_words("<data dir>/startup"));
    /// Address of the Prometheus `/metrics` endpoint, e.g. `127.0.0.1:2112`. Off when unset
    /// (steward's `promHostAndPort`).
    #[serde(deserialize_with = "deserialize_address")]
    metrics_listen: Option<SocketAddr> = None,
        Some(Cli::new("metrics-listen", "BOSUN_METRICS_LISTEN", "ADDR",
            "Serve Prometheus /metrics here, e.g. 127.0.0.1:2112.").default_words("off"));
    /// Size at which the audit log is rotated, in bytes; 0 turns the audit log off.
    audit_max_bytes: u64 = 10 * 1024 * 1024, None;
    /// Rotated audit logs kept.
    audit_keep: usize = 5, None;
    /// Days finished messages are kept before they are pruned (and their ids forgotten
    /// for deduplication).
    retention_days: u64 = 7, None;
    /// Free space, in megabytes, kept for work already accepted: below it the node
    /// refuses new submits and new requests from other nodes (they are resent later),
    /// while results, replies and error reports are still recorded. 0 turns it off.
    disk_reserve_mb: u64 = 64,
        Some(Cli::new("disk-reserve", "BOSUN_DISK_RESERVE_MB", "MB",
            "Free disk space kept for accepted work: below it new submits are refused (0: off)."));
    /// Megabytes of database pages kept in memory, so memory stays bounded however deep
    /// the queues are.
    store_cache_mb: u64 = 16,
        Some(Cli::new("store-cache", "BOSUN_STORE_CACHE_MB", "MB",
            "Megabytes of database pages cached in memory."));
    /// Missed hellos after which central marks a node `suspect`.
    suspect_after_missed: u64 = 2, None;
    /// Missed hellos after which central marks a node `down`.
    down_after_missed: u64 = 5, None;
    /// The Docker Engine socket.
    docker_socket: PathBuf = PathBuf::from("/var/run/docker.sock"), None;
    /// Address of the LSDSuite command port, e.g. `127.0.0.1:7000`. Off when unset.
    #[serde(deserialize_with = "deserialize_address")]
    lsdsuite_listen: Option<SocketAddr> = None,
        Some(Cli::new("lsdsuite-listen", "BOSUN_LSDSUITE_LISTEN", "ADDR",
            "Serve the LSDSuite command port here, e.g. 127.0.0.1:7000.").default_words("off"));
    /// Address of the HTTP API (`/v1`, quartermaster and DockerMod endpoints), e.g.
    /// `127.0.0.1:9090`. Off when unset. Needs a token: `BOSUN_HTTP_TOKEN` or
    /// `http_token_file`.
    #[serde(deserialize_with = "deserialize_address")]
    http_listen: Option<SocketAddr> = None,
        Some(Cli::new("http-listen", "BOSUN_HTTP_LISTEN", "ADDR",
            "Serve the HTTP API (/v1, quartermaster, DockerMod) here, e.g. 127.0.0.1:9090. \
             Needs BOSUN_HTTP_TOKEN or http_token_file.").default_words("off"));
    /// File holding the HTTP API token (never given on the command line).
    http_token_file: Option<PathBuf> = None, None;
    /// Accept DockerMod's `POST /` requests without a token, as DockerMod itself did, so
    /// its users' scripts run unchanged. Only on a trusted network.
    dockermod_open: bool = false, None;
    /// Certificate chain (PEM) of the HTTP API: with `http_tls_key`, the API speaks
    /// HTTPS only, and may listen beyond loopback.
    http_tls_cert: Option<PathBuf> = None, None;
    /// Private key (PEM, 0600) of the HTTP API's certificate.
    http_tls_key: Option<PathBuf> = None, None;
    /// Serve the HTTP API in plain HTTP on an address beyond loopback. Off: such an
    /// `http_listen` is refused at start unless TLS is set (`http_tls_cert`,
    /// `http_tls_key`), since the token would cross the network in clear. Only on a
    /// trusted network, or behind a TLS proxy.
    http_allow_remote: bool = false, None;
    /// HTTP API connections served at once; a connection beyond them is closed at once.
    http_max_connections: usize = 256, None;
    /// Take steward TCP and LSDSuite connections from addresses beyond loopback, whose
    /// user cannot be checked. Off: they are refused. Only on a trusted network.
    tcp_allow_remote: bool = false, None;
    /// Size at which the error log is rotated, in bytes, as the audit log is.
    error_log_max_bytes: u64 = 10 * 1024 * 1024, None;
    /// Rotated error logs kept.
    error_log_keep: usize = 5, None;
    /// Capture logs and stats of labelled containers, host stats and Docker events into
    /// the event stream (LSDSuite), with marks in between.
    capture: bool = true, None;
    /// Folder of the event stream files. Default: `<data_dir>/capture`.
    capture_dir: Option<PathBuf> = None, None;
    /// A YAML or JSON file of workload definitions (a list, or `workloads: [...]`) the
    /// node supervises from its start, besides those added with `bosun workload add`
    /// (kept in `<data_dir>/workloads`). A definition here replaces one of the same name.
    workloads_file: Option<PathBuf> = None,
        Some(Cli::new("workloads-file", "BOSUN_WORKLOADS_FILE", "FILE",
            "Supervise the workloads defined in this YAML/JSON file.").default_words("none"));
    /// The syslog socket for `docker run --log-driver syslog` (LSDSuite's
    /// `$LSDSUITE_DIR/sock/logs.sock`). Default: `<data_dir>/sock/logs.sock`.
    syslog_socket: Option<PathBuf> = None, None;
    /// Seconds between container and host stats samples.
    stats_interval_secs: u64 = 5, None;
    /// Ship new event-stream lines to central every few seconds; central keeps them
    /// under `<results dir>/<node>/capture/<file>`.
    capture_ship: bool = false, None;
    /// Folder of container templates (`NAME.json`, Docker create-container shape).
    /// Default: `<data_dir>/templates`.
    templates_dir: Option<PathBuf> = None, None;
    /// Folders `copySrc`, `copyDst` and `tailFile` may use, symlinks resolved; a relative
    /// path in a message is taken against the first. Empty: the results dir and
    /// `<data_dir>/transfer` (made 0700 at start).
    file_roots: Vec<PathBuf> = Vec::new(),
        Some(Cli::new("file-root", "BOSUN_FILE_ROOTS", "DIR",
            "A folder copySrc, copyDst and tailFile may use; repeat for more. \
             Relative paths in messages go under the first.")
            .default_words("<results dir> and <data dir>/transfer").list());
    /// Largest file `copySrc` sends, in bytes; a larger one is refused before any of it
    /// is read. 1 GiB by default.
    copy_max_bytes: u64 = bosun_methods::confine::DEFAULT_COPY_MAX_BYTES,
        Some(Cli::new("copy-max-bytes", "BOSUN_COPY_MAX_BYTES", "BYTES",
            "Largest file copySrc sends, in bytes."));
    /// Address ranges `httpGet` may reach although they are loopback, link-local,
    /// private, CGNAT, multicast or unspecified: CIDRs such as `10.0.0.0/8` or single
    /// addresses such as `127.0.0.1`. Empty: only public addresses.
    http_allow: Vec<String> = Vec::new(),
        Some(Cli::new("http-allow", "BOSUN_HTTP_ALLOW", "CIDR",
            "Let httpGet reach this loopback, link-local, private or CGNAT range anyway, \
             e.g. 10.0.0.0/8; repeat for more.")
            .default_words("none: public addresses only").list());
    /// Free-form labels of this node, reported in its hello (e.g. `role = "worker"`).
    /// Last, because TOML writes tables after plain values.
    labels: BTreeMap<String, String> = BTreeMap::new(),
        Some(Cli::new("label", "BOSUN_LABELS", "KEY=VALUE",
            "A node label, KEY=VALUE; repeat for more (reported in hellos).").list());
}

/// A layer above the file. Later layers win: flags over environment variables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Layer {
    /// A `BOSUN_*` environment variable.
    Environment,
    /// A command-line flag.
    Flag,
}

/// The values one layer gives for one setting.
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    /// The setting's TOML key, as in [`SETTINGS`].
    pub key: &'static str,
    /// Where the values come from.
    pub layer: Layer,
    /// As given: one value, or several for a list setting (each may hold several,
    /// comma-separated).
    pub values: Vec<OsString>,
}

/// What [`Config::load`] layers.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// A file named with `--config`, which must exist. `None`: `<data dir>/bosun.toml`,
    /// if present, with the data dir the overrides give, else the default one.
    pub file: Option<PathBuf>,
    /// Environment and flag values, in any order: environment values are applied first.
    pub overrides: Vec<Override>,
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML for bosun.
    #[error("config file {path}: {reason}")]
    Parse {
        /// The file.
        path: String,
        /// What is wrong, with line and column.
        reason: String,
    },
    /// A value is out of range.
    #[error("config `{field}`: {reason}")]
    Invalid {
        /// The option.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// A value, from a known place, is not valid for its setting.
    #[error("config `{key}` from {origin}: {reason}")]
    Value {
        /// The setting's TOML key.
        key: &'static str,
        /// Where the value came from: the file, an environment variable or a flag.
        origin: String,
        /// What is wrong.
        reason: String,
    },
}

/// Why a value from the file, the environment or a flag does not fit its setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// No setting has this key.
    #[error("no setting is called `{key}`")]
    UnknownSetting {
        /// The key given.
        key: String,
    },
    /// The value is not text.
    #[error("{text:?} is not valid UTF-8")]
    NotUtf8 {
        /// The value, shown lossily.
        text: String,
    },
    /// A listen address that does not parse.
    #[error("{text:?} is not an address; use HOST:PORT, e.g. 127.0.0.1:8090")]
    NotAnAddress {
        /// The value given.
        text: String,
    },
    /// A switch that is neither `true` nor `false`.
    #[error("{text:?} is neither true nor false")]
    NotABool {
        /// The value given.
        text: String,
    },
    /// A number that does not parse or does not fit.
    #[error("{text:?} is not a whole number from 0 to {max}: {reason}")]
    NotANumber {
        /// The value given.
        text: String,
        /// The largest value the setting takes.
        max: u64,
        /// The parser's words.
        reason: String,
    },
    /// A label without `=`.
    #[error("{text:?} is not KEY=VALUE")]
    NotALabel {
        /// The value given.
        text: String,
    },
    /// The flag or variable was given without a value.
    #[error("no value given")]
    Missing,
}

/// How values from the environment or the command line are laid over a setting.
trait SettingValue {
    /// Lay the values one layer gives over the current value.
    fn apply(&mut self, values: &[OsString]) -> Result<(), ValueError>;
}

/// One value read from its text.
trait FromText: Sized {
    fn from_text(text: &OsString) -> Result<Self, ValueError>;
}

fn utf8(text: &OsString) -> Result<&str, ValueError> {
    text.to_str().ok_or_else(|| ValueError::NotUtf8 {
        text: text.to_string_lossy().into_owned(),
    })
}

/// A listen address; steward's `:PORT` form means every interface (`0.0.0.0:PORT`).
fn parse_address(text: &str) -> Result<SocketAddr, ValueError> {
    let text = text.trim();
    let full;
    let text = match text.strip_prefix(':') {
        Some(port) => {
            full = format!("0.0.0.0:{port}");
            full.as_str()
        }
        None => text,
    };
    text.parse().map_err(|_| ValueError::NotAnAddress {
        text: text.to_string(),
    })
}

/// Listen addresses in the file, with the same message as from a flag.
fn deserialize_address<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<SocketAddr>, D::Error> {
    Option::<String>::deserialize(deserializer)?
        .map(|text| parse_address(&text).map_err(serde::de::Error::custom))
        .transpose()
}

impl FromText for String {
    fn from_text(text: &OsString) -> Result<Self, ValueError> {
        utf8(text).map(str::to_string)
    }
}

impl FromText for PathBuf {
    fn from_text(text: &OsString) -> Result<Self, ValueError> {
        Ok(PathBuf::from(text))
    }
}

impl FromText for SocketAddr {
    fn from_text(text: &OsString) -> Result<Self, ValueError> {
        parse_address(utf8(text)?)
    }
}

impl FromText for bool {
    fn from_text(text: &OsString) -> Result<Self, ValueError> {
        match utf8(text)?.trim() {
            "true" => Ok(true),
            "false" => Ok(false),
            other => Err(ValueError::NotABool {
                text: other.to_string(),
            }),
        }
    }
}

macro_rules! numbers_from_text {
    ($($type:ty),*) => {$(
        impl FromText for $type {
            fn from_text(text: &OsString) -> Result<Self, ValueError> {
                let text = utf8(text)?;
                text.trim()
                    .parse::<$type>()
                    .map_err(|error| ValueError::NotANumber {
                        text: text.to_string(),
                        max: <$type>::MAX as u64,
                        reason: error.to_string(),
                    })
            }
        }
    )*};
}
numbers_from_text!(u32, u64, usize);

/// The value in effect for a single-valued setting given several times: the last one.
fn last(values: &[OsString]) -> Result<&OsString, ValueError> {
    values.last().ok_or(ValueError::Missing)
}

macro_rules! single_values {
    ($($type:ty),*) => {$(
        impl SettingValue for $type {
            fn apply(&mut self, values: &[OsString]) -> Result<(), ValueError> {
                *self = FromText::from_text(last(values)?)?;
                Ok(())
            }
        }
        impl SettingValue for Option<$type> {
            fn apply(&mut self, values: &[OsString]) -> Result<(), ValueError> {
                *self = Some(FromText::from_text(last(values)?)?);
                Ok(())
            }
        }
    )*};
}
single_values!(String, PathBuf, SocketAddr, bool, u32, u64, usize);

/// Items of a list setting: each value split at commas, trimmed, empty ones dropped.
fn list_items(values: &[OsString]) -> Result<Vec<String>, ValueError> {
    let mut items = Vec::new();
    for value in values {
        items.extend(
            utf8(value)?
                .split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(str::to_string),
        );
    }
    Ok(items)
}

/// Broker URLs: a layer's list replaces the one below.
impl SettingValue for Vec<String> {
    fn apply(&mut self, values: &[OsString]) -> Result<(), ValueError> {
        *self = list_items(values)?;
        Ok(())
    }
}

/// Folder lists: a layer's list replaces the one below.
impl SettingValue for Vec<PathBuf> {
    fn apply(&mut self, values: &[OsString]) -> Result<(), ValueError> {
        *self = list_items(values)?.into_iter().map(PathBuf::from).collect();
        Ok(())
    }
}

/// Labels: a layer's `KEY=VALUE` pairs are added to those below.
impl SettingValue for BTreeMap<String, String> {
    fn apply(&mut self, values: &[OsString]) -> Result<(), ValueError> {
        for pair in list_items(values)? {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| ValueError::NotALabel { text: pair.clone() })?;
            self.insert(key.trim().to_string(), value.trim().to_string());
        }
        Ok(())
    }
}

/// When the broker URL `url` carries credentials (`nats://user:pass@host`,
/// `nats://token@host`), the URL with them replaced by `***`, to name it in an error
/// without showing them.
fn url_without_credentials(url: &str) -> Option<String> {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (format!("{scheme}://"), rest),
        None => (String::new(), url),
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    let (_, host) = authority.rsplit_once('@')?;
    Some(format!("{scheme}***@{host}"))
}

/// The hostname up to its first dot, made a valid node name, or `node`.
fn host_name() -> String {
    let raw = Some(bosun_methods::host::hostname())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "node".into());
    let cleaned: String = raw
        .split('.')
        .next()
        .unwrap_or("node")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect();
    if cleaned.is_empty() {
        "node".into()
    } else {
        cleaned
    }
}

/// The data dir when no layer sets one: `~/.local/share/bosun`, or `./bosun-data`
/// without a home directory.
pub fn default_data_dir() -> PathBuf {
    match std::env::var_os("HOME") {
        Some(home) if !home.is_empty() => PathBuf::from(home).join(".local/share/bosun"),
        _ => Config::default().data_dir,
    }
}

impl Config {
    /// The config in effect: the file, then environment values, then flags; then the
    /// name and data dir from the host when no layer set them; then checked.
    pub fn load(sources: &Sources) -> Result<Config, ConfigError> {
        let mut overrides: Vec<&Override> = sources.overrides.iter().collect();
        // Stable: values of one layer keep their order.
        overrides.sort_by_key(|given| given.layer);
        let (path, must_exist) = match &sources.file {
            Some(path) => (path.clone(), true),
            None => {
                // The file lives in the data dir the layers above name, not in one it names.
                let data_dir = overrides
                    .iter()
                    .rev()
                    .find(|given| given.key == "data_dir")
                    .and_then(|given| given.values.last())
                    .map(PathBuf::from)
                    .unwrap_or_else(default_data_dir);
                (Config::default_file(&data_dir), false)
            }
        };
        let (mut config, file_keys) = Config::read_file(&path, must_exist)?;
        let mut origins: BTreeMap<&'static str, String> = file_keys
            .into_iter()
            .map(|key| (key, format!("file {}", path.display())))
            .collect();
        for given in overrides {
            let origin = Setting::find(given.key)
                .map(|setting| setting.origin(given.layer))
                .unwrap_or_else(|| "the command line".to_string());
            config
                .apply_values(given.key, &given.values)
                .map_err(|error| ConfigError::Value {
                    key: given.key,
                    origin: origin.clone(),
                    reason: error.to_string(),
                })?;
            origins.insert(given.key, origin);
        }
        if !origins.contains_key("name") {
            config.name = host_name();
        }
        if !origins.contains_key("data_dir") {
            config.data_dir = default_data_dir();
        }
        config.validate().map_err(|error| match error {
            ConfigError::Invalid { field, reason } if origins.contains_key(field) => {
                ConfigError::Value {
                    key: field,
                    origin: origins[field].clone(),
                    reason,
                }
            }
            other => other,
        })?;
        Ok(config)
    }

    /// Read a config file. A missing file at the default location is not an error: the
    /// caller passes `must_exist = false` for it.
    pub fn from_file(path: &Path, must_exist: bool) -> Result<Config, ConfigError> {
        Config::read_file(path, must_exist).map(|(config, _)| config)
    }

    /// Read a config file, with the keys it sets.
    fn read_file(
        path: &Path,
        must_exist: bool,
    ) -> Result<(Config, BTreeSet<&'static str>), ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound && !must_exist => {
                return Ok((Config::default(), BTreeSet::new()));
            }
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.display().to_string(),
                    source,
                });
            }
        };
        let parse_error = |error: toml::de::Error| ConfigError::Parse {
            path: path.display().to_string(),
            reason: error.to_string(),
        };
        let config: Config = toml::from_str(&text).map_err(parse_error)?;
        // Unknown keys were refused above, so every key names a setting.
        let keys = toml::from_str::<toml::Table>(&text)
            .map_err(parse_error)?
            .keys()
            .filter_map(|key| Setting::find(key).map(|s| s.key))
            .collect();
        Ok((config, keys))
    }

    /// Where results and reply sinks are written.
    pub fn results_path(&self) -> PathBuf {
        self.under_data_dir(&self.results_dir, "data")
    }

    /// The watched read folder, unless turned off with an empty path.
    pub fn read_path(&self) -> Option<PathBuf> {
        match &self.read_dir {
            Some(p) if p.as_os_str().is_empty() => None,
            Some(p) => Some(p.clone()),
            None => Some(self.data_dir.join("readfolder")),
        }
    }

    /// The startup folder.
    pub fn startup_path(&self) -> PathBuf {
        self.under_data_dir(&self.startup_dir, "startup")
    }

    /// The container templates folder.
    pub fn templates_path(&self) -> PathBuf {
        self.under_data_dir(&self.templates_dir, "templates")
    }

    /// The folders the file methods may use: `file_roots`, else the results dir and
    /// [`Config::transfer_path`].
    pub fn file_roots_paths(&self) -> Vec<PathBuf> {
        if self.file_roots.is_empty() {
            vec![self.results_path(), self.transfer_path()]
        } else {
            self.file_roots.clone()
        }
    }

    /// The folder for files copied to and from this node when `file_roots` is unset.
    pub fn transfer_path(&self) -> PathBuf {
        self.data_dir.join("transfer")
    }

    /// What the file and network methods may reach.
    pub fn confinement(&self) -> Result<bosun_methods::Confinement, ConfigError> {
        let http_allow = bosun_methods::confine::parse_allow(&self.http_allow).map_err(|e| {
            ConfigError::Invalid {
                field: "http_allow",
                reason: e.to_string(),
            }
        })?;
        Ok(bosun_methods::Confinement {
            file_roots: self.file_roots_paths(),
            copy_max_bytes: self.copy_max_bytes,
            http_allow,
        })
    }

    /// The folder of the event stream files.
    pub fn capture_path(&self) -> PathBuf {
        self.under_data_dir(&self.capture_dir, "capture")
    }

    /// The syslog socket for containers' logs.
    pub fn syslog_socket_path(&self) -> PathBuf {
        self.under_data_dir(&self.syslog_socket, "sock/logs.sock")
    }

    /// The audit log file.
    pub fn audit_log_path(&self) -> PathBuf {
        self.data_dir.join("audit.log")
    }

    /// `explicit` when the operator set it, else `<data_dir>/<default>`.
    fn under_data_dir(&self, explicit: &Option<PathBuf>, default: &str) -> PathBuf {
        explicit
            .clone()
            .unwrap_or_else(|| self.data_dir.join(default))
    }

    /// The central node's name, if one is configured.
    pub fn central_name(&self) -> Option<&str> {
        self.central.as_deref().filter(|c| !c.is_empty())
    }

    /// Does this node listen to the fleet's announced hellos (`fleet_view`)?
    pub fn listens_to_fleet(&self) -> bool {
        match self.fleet_view.as_str() {
            "on" => true,
            "off" => false,
            _ => {
                self.central_name()
                    .is_none_or(|central| central == self.name.as_str())
                    || self.http_listen.is_some()
            }
        }
    }

    /// How long to wait for an ACK, when a message sets no `ACKTimeout`.
    pub fn ack_timeout(&self) -> Duration {
        Duration::from_secs(self.ack_timeout_secs)
    }

    /// How long a method may run, when a message sets no `methodTimeout`.
    pub fn method_timeout(&self) -> Duration {
        Duration::from_secs(self.method_timeout_secs)
    }

    /// Time between SIGTERM and SIGKILL; at least a second, so a process can clean up.
    pub fn kill_grace(&self) -> Duration {
        Duration::from_secs(self.kill_grace_secs.max(1))
    }

    /// Time between hellos to central; `None` when hellos are off.
    pub fn hello_interval(&self) -> Option<Duration> {
        (self.hello_interval_secs > 0).then(|| Duration::from_secs(self.hello_interval_secs))
    }

    /// Time between stats samples; at least a second.
    pub fn stats_interval(&self) -> Duration {
        Duration::from_secs(self.stats_interval_secs.max(1))
    }

    /// How the store is opened: its cache (`store_cache_mb`) and free-space reserve
    /// (`disk_reserve_mb`).
    pub fn store_options(&self) -> bosun_store::StoreOptions {
        bosun_store::StoreOptions {
            cache_bytes: usize::try_from(self.store_cache_mb.saturating_mul(1024 * 1024))
                .unwrap_or(usize::MAX),
            reserve_bytes: self.disk_reserve_mb.saturating_mul(1024 * 1024),
        }
    }

    /// How long finished messages are kept; at least a day.
    pub fn retention(&self) -> Duration {
        Duration::from_secs(self.retention_days.max(1) * 24 * 3600)
    }

    /// Check the values that could make the node misbehave.
    pub fn validate(&self) -> Result<(), ConfigError> {
        bosun_proto::validate_node_name(&self.name).map_err(|reason| ConfigError::Invalid {
            field: "name",
            reason: reason.to_string(),
        })?;
        if self.subject_prefix.is_empty()
            || self
                .subject_prefix
                .split('.')
                .any(|t| t.is_empty() || t.contains(['*', '>', ' ']))
        {
            return Err(ConfigError::Invalid {
                field: "subject_prefix",
                reason: format!(
                    "{:?} is not a valid NATS subject prefix (dot-separated tokens, no wildcards or spaces)",
                    self.subject_prefix
                ),
            });
        }
        for (field, v) in [
            ("ack_timeout_secs", self.ack_timeout_secs),
            ("method_timeout_secs", self.method_timeout_secs),
        ] {
            if v == 0 {
                return Err(ConfigError::Invalid {
                    field,
                    reason: "must be at least 1".into(),
                });
            }
        }
        if self.default_ttl_secs > 30 * 24 * 3600 {
            return Err(ConfigError::Invalid {
                field: "default_ttl_secs",
                reason: format!(
                    "{} seconds is more than the limit of 2592000 (30 days); 0 means for ever",
                    self.default_ttl_secs
                ),
            });
        }
        if !matches!(self.fleet_view.as_str(), "auto" | "on" | "off") {
            return Err(ConfigError::Invalid {
                field: "fleet_view",
                reason: format!("{:?} is not one of auto, on, off", self.fleet_view),
            });
        }
        if let Some(c) = self.central_name() {
            bosun_proto::validate_node_name(c).map_err(|reason| ConfigError::Invalid {
                field: "central",
                reason: reason.to_string(),
            })?;
        }
        if self.labels.keys().any(|k| k.is_empty()) {
            return Err(ConfigError::Invalid {
                field: "labels",
                reason: "label names cannot be empty".into(),
            });
        }
        if self.max_message_bytes < 1024 {
            return Err(ConfigError::Invalid {
                field: "max_message_bytes",
                reason: "must be at least 1024".into(),
            });
        }
        self.confinement()?;
        if self
            .file_roots
            .iter()
            .any(|root| root.as_os_str().is_empty())
        {
            return Err(ConfigError::Invalid {
                field: "file_roots",
                reason: "a file root cannot be an empty path; name a folder".into(),
            });
        }
        for url in &self.broker {
            if let Some(shown) = url_without_credentials(url) {
                return Err(ConfigError::Invalid {
                    field: "broker",
                    reason: format!(
                        "{shown:?} holds a user, password or token, which would show in logs,                          `ps` and `bosun config show`; give the broker's credentials in                          creds_file or nkey_seed_file (a file only this node's user may read)"
                    ),
                });
            }
            if !(url.starts_with("nats://") || url.starts_with("tls://") || url.contains(':')) {
                return Err(ConfigError::Invalid {
                    field: "broker",
                    reason: format!("{url:?} is not a NATS URL; use nats://HOST:PORT"),
                });
            }
        }
        Ok(())
    }

    /// The configuration as TOML, as `--save-config` writes it: settings left unset stay
    /// unset, so paths under the data dir follow it.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("config always serialises")
    }

    /// The configuration in effect, for `bosun config show`: [`Config::to_toml`], then,
    /// as comments, the paths that unset settings resolve to and the listeners that are
    /// off. It holds no secret: the HTTP token is never part of the config.
    pub fn to_toml_explained(&self) -> String {
        let mut text = self.to_toml();
        let derived: Vec<(&str, Option<PathBuf>)> = vec![
            (
                "results_dir",
                self.results_dir.is_none().then(|| self.results_path()),
            ),
            (
                "read_dir",
                self.read_dir.is_none().then(|| self.read_path()).flatten(),
            ),
            (
                "startup_dir",
                self.startup_dir.is_none().then(|| self.startup_path()),
            ),
            (
                "templates_dir",
                self.templates_dir.is_none().then(|| self.templates_path()),
            ),
            (
                "capture_dir",
                self.capture_dir.is_none().then(|| self.capture_path()),
            ),
            (
                "syslog_socket",
                self.syslog_socket
                    .is_none()
                    .then(|| self.syslog_socket_path()),
            ),
        ];
        let derived: Vec<String> = derived
            .into_iter()
            .filter_map(|(key, path)| {
                let path = toml::Value::String(path?.display().to_string());
                Some(format!("# {key} = {path}\n"))
            })
            .chain(self.file_roots.is_empty().then(|| {
                let roots = toml::Value::Array(
                    self.file_roots_paths()
                        .iter()
                        .map(|root| toml::Value::String(root.display().to_string()))
                        .collect(),
                );
                format!("# file_roots = {roots}\n")
            }))
            .collect();
        if !derived.is_empty() {
            text.push_str("\n# Unset, so under data_dir:\n");
            text.extend(derived);
        }
        let off: Vec<&str> = [
            ("tcp_listen", self.tcp_listen),
            ("metrics_listen", self.metrics_listen),
            ("lsdsuite_listen", self.lsdsuite_listen),
            ("http_listen", self.http_listen),
        ]
        .into_iter()
        .filter(|(_, address)| address.is_none())
        .map(|(key, _)| key)
        .collect();
        if !off.is_empty() {
            text.push_str(&format!("# Off (unset): {}\n", off.join(", ")));
        }
        text
    }

    /// The node database file.
    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("bosun.redb")
    }

    /// The local socket: steward message arrays and the CLI's control requests.
    pub fn socket_path(&self) -> PathBuf {
        self.data_dir.join("bosun.sock")
    }

    /// The error log (JSON lines).
    pub fn error_log_path(&self) -> PathBuf {
        self.data_dir.join("error.log")
    }

    /// This node's key file.
    pub fn node_key_path(&self) -> PathBuf {
        self.data_dir.join("node.key")
    }

    /// This node's identity file.
    pub fn identity_path(&self) -> PathBuf {
        self.identity_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("node.id"))
    }

    /// The default config file for a data dir.
    pub fn default_file(data_dir: &Path) -> PathBuf {
        data_dir.join("bosun.toml")
    }
}

/// The NATS connection options, all from the config.
impl From<&Config> for bosun_bus::NatsOptions {
    fn from(config: &Config) -> Self {
        bosun_bus::NatsOptions {
            urls: config.broker.clone(),
            name: config.name.clone(),
            tls_ca: config.tls_ca.clone(),
            tls_cert: config.tls_cert.clone(),
            tls_key: config.tls_key.clone(),
            require_tls: config.require_tls,
            nkey_seed_file: config.nkey_seed_file.clone(),
            creds_file: config.creds_file.clone(),
            own_key_file: Some(config.node_key_path()),
            ping_interval: Some(std::time::Duration::from_secs(
                config.ping_interval_secs.max(1),
            )),
            reconnect_max: Some(std::time::Duration::from_millis(
                config.reconnect_max_ms.max(1),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn given(key: &'static str, layer: Layer, value: &str) -> Override {
        Override {
            key,
            layer,
            values: vec![value.into()],
        }
    }

    fn file_with(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bosun.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn stewards_command_line_becomes_bosuns() {
        let args = |a: &[&str]| a.iter().map(OsString::from).collect::<Vec<_>>();
        // The steward document's own command line, byte for byte.
        let (out, ignored) = steward_args(args(&[
            "bosun",
            "node",
            "--nodeName=central",
            "--defaultMessageRetries=3",
            "--defaultMessageTimeout=5",
            "-subscribersDataFolder=./data",
            "--centralNodeName=central",
            "-startSubREQErrorLog=*",
            "-subscribersDataFolder=./data",
            "-brokerAddress=127.0.0.1:4222",
        ]))
        .unwrap();
        assert_eq!(
            out,
            args(&[
                "bosun",
                "node",
                "--name",
                "central",
                "--retries",
                "3",
                "--ack-timeout",
                "5",
                "--results-dir",
                "./data",
                "--central",
                "central",
                "--results-dir",
                "./data",
                "--broker",
                "nats://127.0.0.1:4222",
            ])
        );
        assert_eq!(ignored, vec!["startSubREQErrorLog"]);
        let (out, _) = steward_args(args(&[
            "bosun",
            "node",
            "-promHostAndPort",
            ":12112",
            "-startPubREQHello=200",
        ]))
        .unwrap();
        assert_eq!(
            out,
            args(&[
                "bosun",
                "node",
                "--metrics-listen",
                ":12112",
                "--hello-interval",
                "200"
            ])
        );
        // Two values for one setting: refused with both named.
        let err = steward_args(args(&[
            "bosun",
            "node",
            "-subscribersDataFolder=./data",
            "-subscribersDataFolder=./var",
        ]))
        .unwrap_err()
        .to_string();
        assert!(err.contains("./data") && err.contains("./var"), "{err}");
        assert!(matches!(
            steward_args(args(&["bosun", "node", "-nodeName"])),
            Err(AliasError::NoValue(_))
        ));
        // Before the subcommand, and other commands, nothing changes.
        let plain = args(&["bosun", "exec", "-n", "x", "--", "echo", "-nodeName=y"]);
        assert_eq!(steward_args(plain.clone()).unwrap().0, plain);
    }

    #[test]
    fn mesos_attributes_are_labels() {
        let lookup =
            |v: &'static str| move |name: &str| (name == "MESOS_ATTRIBUTES").then(|| v.to_string());
        let labels = mesos_labels(lookup("rack:r3; zone:eu-1;"))
            .unwrap()
            .unwrap();
        assert_eq!(labels.key, "labels");
        assert_eq!(
            labels.values,
            vec![OsString::from("rack=r3"), OsString::from("zone=eu-1")]
        );
        let err = mesos_labels(lookup("rack:r3;gpu")).unwrap_err().to_string();
        assert!(err.contains("\"gpu\""), "{err}");
        assert!(mesos_labels(|_: &str| None).unwrap().is_none());
    }

    #[test]
    fn stewards_environment_becomes_bosuns_and_disagreement_is_an_error() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        let overrides = steward_env(env(&[
            ("NODE_NAME", "ship1"),
            ("BROKER_ADDRESS", "127.0.0.1:4222"),
            ("PROM_HOST_AND_PORT", ":12112"),
        ]))
        .unwrap();
        let got: Vec<(&str, String)> = overrides
            .iter()
            .map(|o| (o.key, o.values[0].to_string_lossy().into_owned()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("name", "ship1".to_string()),
                ("broker", "nats://127.0.0.1:4222".to_string()),
                ("metrics_listen", ":12112".to_string()),
            ]
        );
        // bosun's own variable agrees: it wins silently; disagrees: an error.
        assert!(
            steward_env(env(&[("NODE_NAME", "a"), ("BOSUN_NAME", "a")]))
                .unwrap()
                .is_empty()
        );
        let err = steward_env(env(&[("NODE_NAME", "a"), ("BOSUN_NAME", "b")]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("BOSUN_NAME") && err.contains("NODE_NAME"),
            "{err}"
        );
        // steward's socket folder is not bosun's data dir: it never moves the database.
        let got = steward_env(env(&[("DATABASE_FOLDER", "/a"), ("SOCKET_FOLDER", "/b")])).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(
            (got[0].key, got[0].values[0].clone()),
            ("data_dir", OsString::from("/a"))
        );
        let err = steward_env(env(&[("DATABASE_FOLDER", "/a"), ("BOSUN_DATA_DIR", "/b")]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("DATABASE_FOLDER") && err.contains("BOSUN_DATA_DIR"),
            "{err}"
        );
        assert_eq!(
            parse_address(":12112").unwrap(),
            "0.0.0.0:12112".parse::<SocketAddr>().unwrap(),
            "steward's :PORT is every interface"
        );
    }

    #[test]
    fn credentials_in_a_broker_url_are_refused_without_being_shown() {
        for url in [
            "nats://alice:pa55-9d2e@hub:4222",
            "nats://tok-9d2e@hub:4222",
            "tls://alice:pa55-9d2e@hub",
        ] {
            let error = Config::load(&Sources {
                file: Some(file_with("").1),
                overrides: vec![given("broker", Layer::Flag, url)],
            });
            let error = error.unwrap_err().to_string();
            assert!(
                error.contains("creds_file") && error.contains("nkey_seed_file"),
                "{error}"
            );
            assert!(!error.contains("9d2e"), "the secret is shown: {error}");
            assert!(error.contains("***@hub"), "{error}");
        }
        let plain = Config {
            broker: vec!["nats://hub:4222".into(), "nats://hub:4222/path@x".into()],
            ..Config::default()
        };
        assert!(plain.validate().is_ok());
    }

    #[test]
    fn file_then_environment_then_flags() {
        let (_dir, path) = file_with(
            "name = \"from-file\"\nretries = 9\nack_timeout_secs = 7\n\
             hello_interval_secs = 11\ntcp_listen = \"127.0.0.1:1001\"\n\
             metrics_listen = \"127.0.0.1:2001\"\n",
        );
        let config = Config::load(&Sources {
            file: Some(path),
            // Flags listed before environment values still win over them.
            overrides: vec![
                given("name", Layer::Flag, "from-flag"),
                given("tcp_listen", Layer::Flag, "127.0.0.1:1003"),
                given("ack_timeout_secs", Layer::Flag, "3"),
                given("name", Layer::Environment, "from-env"),
                given("tcp_listen", Layer::Environment, "127.0.0.1:1002"),
                given("metrics_listen", Layer::Environment, "[::1]:2002"),
                given("ack_timeout_secs", Layer::Environment, "2"),
                given("hello_interval_secs", Layer::Environment, "0"),
                given("broker", Layer::Environment, "nats://a:1,nats://b:2"),
            ],
        })
        .unwrap();
        assert_eq!(config.name, "from-flag");
        assert_eq!(config.retries, 9, "untouched values keep the file's");
        assert_eq!(config.tcp_listen, Some("127.0.0.1:1003".parse().unwrap()));
        assert_eq!(config.metrics_listen, Some("[::1]:2002".parse().unwrap()));
        assert_eq!(config.ack_timeout(), Duration::from_secs(3));
        assert_eq!(config.hello_interval(), None, "0 from the environment: off");
        assert_eq!(config.broker, vec!["nats://a:1", "nats://b:2"]);
    }

    #[test]
    fn labels_from_layers_add_to_the_files() {
        let (_dir, path) = file_with("[labels]\nrole = \"worker\"\nzone = \"a\"\n");
        let config = Config::load(&Sources {
            file: Some(path),
            overrides: vec![Override {
                key: "labels",
                layer: Layer::Flag,
                values: vec!["zone=b,rack=3".into(), "gpu=yes".into()],
            }],
        })
        .unwrap();
        let labels: Vec<_> = config
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        assert_eq!(labels, ["gpu=yes", "rack=3", "role=worker", "zone=b"]);
    }

    #[test]
    fn confinement_settings_come_from_every_layer() {
        let (dir, path) = file_with(
            "file_roots = [\"/srv/a\"]\ncopy_max_bytes = 5000\nhttp_allow = [\"10.0.0.0/8\"]\n",
        );
        let config = Config::load(&Sources {
            file: Some(path.clone()),
            overrides: vec![],
        })
        .unwrap();
        assert_eq!(config.file_roots_paths(), [PathBuf::from("/srv/a")]);
        let confine = config.confinement().unwrap();
        assert_eq!(confine.copy_max_bytes, 5000);
        assert_eq!(confine.http_allow.len(), 1);
        let config = Config::load(&Sources {
            file: Some(path),
            overrides: vec![
                given("file_roots", Layer::Environment, "/srv/b,/srv/c"),
                given("http_allow", Layer::Flag, "127.0.0.1"),
            ],
        })
        .unwrap();
        assert_eq!(
            config.file_roots_paths(),
            [PathBuf::from("/srv/b"), PathBuf::from("/srv/c")]
        );
        assert_eq!(config.http_allow, ["127.0.0.1"]);
        // Unset: the results dir and the transfer folder, shown by `config show`.
        drop(dir);
        let dir = tempfile::tempdir().unwrap();
        let config = Config::load(&Sources {
            file: None,
            overrides: vec![given("data_dir", Layer::Flag, dir.path().to_str().unwrap())],
        })
        .unwrap();
        assert_eq!(
            config.file_roots_paths(),
            [dir.path().join("data"), dir.path().join("transfer")]
        );
        assert_eq!(config.copy_max_bytes, 1 << 30);
        assert!(config.http_allow.is_empty());
        let shown = config.to_toml_explained();
        assert!(
            shown.contains(&format!(
                "# file_roots = [\"{}\", \"{}\"]",
                dir.path().join("data").display(),
                dir.path().join("transfer").display()
            )),
            "{shown}"
        );
    }

    #[test]
    fn a_bad_http_allow_range_is_refused_with_its_origin() {
        let err = Config::load(&Sources {
            file: Some(file_with("").1),
            overrides: vec![given(
                "http_allow",
                Layer::Environment,
                "10.0.0.0/8,intranet",
            )],
        })
        .unwrap_err()
        .to_string();
        assert_eq!(
            err,
            "config `http_allow` from environment variable BOSUN_HTTP_ALLOW: \"intranet\" is not an address range; give a CIDR such as 10.0.0.0/8 or 127.0.0.1/32"
        );
    }

    #[test]
    fn bad_values_name_the_key_and_where_they_came_from() {
        let bad = |o: Override| {
            Config::load(&Sources {
                file: Some(file_with("").1),
                overrides: vec![o],
            })
            .unwrap_err()
            .to_string()
        };
        let err = bad(given("tcp_listen", Layer::Flag, "localhost"));
        assert!(
            err.contains("`tcp_listen`")
                && err.contains("flag --tcp-listen")
                && err.contains("HOST:PORT"),
            "{err}"
        );
        let err = bad(given("http_listen", Layer::Environment, "nope:80"));
        assert!(
            err.contains("`http_listen`") && err.contains("BOSUN_HTTP_LISTEN"),
            "{err}"
        );
        let err = bad(given("ack_timeout_secs", Layer::Environment, "five"));
        assert!(
            err.contains("`ack_timeout_secs`") && err.contains("BOSUN_ACK_TIMEOUT"),
            "{err}"
        );
        let err = bad(given("ack_timeout_secs", Layer::Flag, "0"));
        assert!(
            err.contains("`ack_timeout_secs`")
                && err.contains("flag --ack-timeout")
                && err.contains("at least 1"),
            "{err}"
        );
        let err = bad(given("labels", Layer::Flag, "novalue"));
        assert!(err.contains("KEY=VALUE"), "{err}");

        let (_dir, path) = file_with("metrics_listen = \"localhost:2112\"\n");
        let err = Config::load(&Sources {
            file: Some(path.clone()),
            overrides: vec![],
        })
        .unwrap_err()
        .to_string();
        assert!(
            err.contains(&path.display().to_string())
                && err.contains("metrics_listen")
                && err.contains("HOST:PORT"),
            "{err}"
        );
        let (_dir, path) = file_with("method_timeout_secs = 0\n");
        let err = Config::load(&Sources {
            file: Some(path.clone()),
            overrides: vec![],
        })
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("`method_timeout_secs`") && err.contains(&path.display().to_string()),
            "{err}"
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let (_dir, path) = file_with("nmae = \"x\"\n");
        let err = Config::from_file(&path, true).unwrap_err().to_string();
        assert!(err.contains("nmae"), "{err}");
        let c = Config {
            name: "bad.name".into(),
            ..Default::default()
        };
        assert!(c.validate().unwrap_err().to_string().contains("`name`"));
        let c = Config {
            subject_prefix: "a.*".into(),
            ..Default::default()
        };
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("subject_prefix")
        );
    }

    #[test]
    fn missing_default_file_is_fine_but_missing_named_file_is_not() {
        let p = Path::new("/nonexistent/bosun.toml");
        assert!(Config::from_file(p, false).is_ok());
        assert!(Config::from_file(p, true).is_err());
    }

    #[test]
    fn the_default_file_is_found_in_the_data_dir_the_layers_give() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("bosun.toml"), "retries = 8\n").unwrap();
        let config = Config::load(&Sources {
            file: None,
            overrides: vec![given("data_dir", Layer::Flag, dir.path().to_str().unwrap())],
        })
        .unwrap();
        assert_eq!(config.retries, 8);
        assert_eq!(config.data_dir, dir.path());
    }

    #[test]
    fn host_values_are_found_at_load_only_when_no_layer_sets_them() {
        assert_eq!(Config::default().name, "node", "no IO in the defaults");
        let (_dir, path) = file_with("data_dir = \"/srv/bosun\"\n");
        let config = Config::load(&Sources {
            file: Some(path),
            overrides: vec![given("name", Layer::Environment, "given")],
        })
        .unwrap();
        assert_eq!(config.name, "given");
        assert_eq!(config.data_dir, Path::new("/srv/bosun"));
        let config = Config::load(&Sources {
            file: Some(file_with("").1),
            overrides: vec![],
        })
        .unwrap();
        assert_eq!(config.name, host_name());
        assert_eq!(config.data_dir, default_data_dir());
    }

    #[test]
    fn every_flag_has_a_default_to_show_and_a_distinct_name() {
        let find = |key| Setting::find(key).unwrap().default_text();
        assert_eq!(find("ack_timeout_secs"), "5");
        assert_eq!(find("subject_prefix"), "bosun");
        assert_eq!(find("log"), "info");
        assert_eq!(find("name"), "the hostname");
        assert_eq!(find("tcp_listen"), "off");
        assert_eq!(find("tls_ca"), "none");
        let mut flags = BTreeSet::new();
        let mut envs = BTreeSet::new();
        for setting in SETTINGS {
            assert!(!setting.default_text().is_empty(), "{}", setting.key);
            if let Some(cli) = setting.cli {
                assert!(flags.insert(cli.flag), "{}", cli.flag);
                assert!(envs.insert(cli.env), "{}", cli.env);
                assert!(cli.env.starts_with("BOSUN_"), "{}", cli.env);
            }
        }
    }

    #[test]
    fn shown_config_parses_back() {
        let c = Config {
            tcp_listen: Some("127.0.0.1:8090".parse().unwrap()),
            labels: [("role".to_string(), "worker".to_string())].into(),
            ..Default::default()
        };
        let back: Config = toml::from_str(&c.to_toml()).unwrap();
        assert_eq!(back, c);
        let explained = c.to_toml_explained();
        let back: Config = toml::from_str(&explained).unwrap();
        assert_eq!(back, c, "the comments change nothing");
        assert!(
            explained.contains("# results_dir = \"bosun-data/data\""),
            "{explained}"
        );
        assert!(explained.contains("metrics_listen"), "{explained}");
    }

    #[test]
    fn only_nodes_that_place_listen_to_the_fleet_by_default() {
        let node = |central: Option<&str>, http: bool, view: &str| Config {
            name: "n1".into(),
            central: central.map(str::to_string),
            http_listen: http.then(|| "127.0.0.1:1".parse().unwrap()),
            fleet_view: view.into(),
            ..Default::default()
        };
        assert!(
            node(None, false, "auto").listens_to_fleet(),
            "no central: peers"
        );
        assert!(
            node(Some("n1"), false, "auto").listens_to_fleet(),
            "central"
        );
        assert!(
            !node(Some("hq"), false, "auto").listens_to_fleet(),
            "a plain node"
        );
        assert!(
            node(Some("hq"), true, "auto").listens_to_fleet(),
            "its APIs place"
        );
        assert!(node(Some("hq"), false, "on").listens_to_fleet());
        assert!(!node(None, true, "off").listens_to_fleet());
        let err = node(None, false, "sometimes")
            .validate()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("fleet_view") && err.contains("auto, on, off"),
            "{err}"
        );
    }

    #[test]
    fn nats_options_come_from_the_config() {
        let c = Config {
            broker: vec!["nats://a:1".into()],
            tls_ca: Some("/ca.pem".into()),
            require_tls: true,
            ..Default::default()
        };
        let options = bosun_bus::NatsOptions::from(&c);
        assert_eq!(options.urls, c.broker);
        assert_eq!(
            options.ping_interval,
            Some(std::time::Duration::from_secs(10)),
            "the default ping interval"
        );
        assert_eq!(options.name, c.name);
        assert_eq!(options.tls_ca, c.tls_ca);
        assert!(options.require_tls);
    }
}

/// One of steward's flag and environment spellings that bosun takes as an alias of one
/// of its own settings. None carries a secret (a path to a secret file is no secret).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StewardAlias {
    /// steward's flag, without dashes (Go flags take `-name` and `--name`).
    pub flag: &'static str,
    /// steward's (ctrl's) environment variable.
    pub env: &'static str,
    /// The bosun setting (TOML key); `config` for the config folder.
    pub key: &'static str,
}

/// steward's spellings bosun takes, each for one bosun setting. `configFolder` names a
/// folder: bosun reads `bosun.toml` in it when there is one.
pub const STEWARD_ALIASES: &[StewardAlias] = &[
    StewardAlias {
        flag: "nodeName",
        env: "NODE_NAME",
        key: "name",
    },
    StewardAlias {
        flag: "brokerAddress",
        env: "BROKER_ADDRESS",
        key: "broker",
    },
    StewardAlias {
        flag: "databaseFolder",
        env: "DATABASE_FOLDER",
        key: "data_dir",
    },
    StewardAlias {
        flag: "configFolder",
        env: "CONFIG_FOLDER",
        key: "config",
    },
    StewardAlias {
        flag: "subscribersDataFolder",
        env: "SUBSCRIBERS_DATA_FOLDER",
        key: "results_dir",
    },
    StewardAlias {
        flag: "centralNodeName",
        env: "CENTRAL_NODE_NAME",
        key: "central",
    },
    StewardAlias {
        flag: "promHostAndPort",
        env: "PROM_HOST_AND_PORT",
        key: "metrics_listen",
    },
    StewardAlias {
        flag: "tcpListener",
        env: "TCP_LISTENER",
        key: "tcp_listen",
    },
    StewardAlias {
        flag: "defaultMessageTimeout",
        env: "DEFAULT_MESSAGE_TIMEOUT",
        key: "ack_timeout_secs",
    },
    StewardAlias {
        flag: "defaultMessageRetries",
        env: "DEFAULT_MESSAGE_RETRIES",
        key: "retries",
    },
    StewardAlias {
        flag: "rootCAPath",
        env: "ROOT_CA_PATH",
        key: "tls_ca",
    },
    StewardAlias {
        flag: "nkeySeedFile",
        env: "NKEY_SEED_FILE",
        key: "nkey_seed_file",
    },
    StewardAlias {
        flag: "startPubREQHello",
        env: "START_PUB_REQ_HELLO",
        key: "hello_interval_secs",
    },
];

/// steward flags bosun accepts and leaves alone: what they switch is always on in bosun
/// (every method is served, error logs go to central) or not offered.
pub const STEWARD_IGNORED: &[&str] = &[
    // bosun's socket is `<data dir>/bosun.sock`, next to the database
    // (`databaseFolder`); steward kept them apart.
    "socketFolder",
    "startSubREQ",
    "errorMessageTimeout",
    "errorMessageRetries",
    "natsConnectRetryInterval",
    "profilingPort",
    "exposeDataFolder",
];

/// A steward value as the bosun setting takes it: a broker address without a scheme
/// (steward's `127.0.0.1:4222`) gets `nats://`.
pub fn steward_value(key: &str, value: &str) -> String {
    match key {
        "broker" => value
            .split(',')
            .map(|url| {
                let url = url.trim();
                if url.contains("://") {
                    url.to_string()
                } else {
                    format!("nats://{url}")
                }
            })
            .collect::<Vec<_>>()
            .join(","),
        _ => value.to_string(),
    }
}

/// Why steward's spellings cannot be taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AliasError {
    /// A steward spelling and bosun's own (or two steward spellings) give one setting
    /// different values.
    #[error(
        "{first} and {second} both set {key}, to {first_value:?} and {second_value:?}; give one of them"
    )]
    Conflict {
        /// The setting.
        key: &'static str,
        /// The first spelling.
        first: String,
        /// Its value.
        first_value: String,
        /// The second spelling.
        second: String,
        /// Its value.
        second_value: String,
    },
    /// A steward flag without its value.
    #[error("steward flag -{0} needs a value")]
    NoValue(String),
    /// A `MESOS_ATTRIBUTES` entry that is not `key:value`.
    #[error("MESOS_ATTRIBUTES entry {0:?} is not key:value (entries are separated by ';')")]
    MesosAttribute(String),
}

/// Node labels from a Mesos agent's `MESOS_ATTRIBUTES` (`key:value;key:value`), as an
/// override of the environment layer that comes before `BOSUN_LABELS` and flags (which
/// win for the same key) and after the config file (which it wins over).
pub fn mesos_labels(
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Option<Override>, AliasError> {
    let Some(attributes) = lookup("MESOS_ATTRIBUTES").filter(|v| !v.trim().is_empty()) else {
        return Ok(None);
    };
    let mut values = vec![];
    for entry in attributes
        .split(';')
        .map(str::trim)
        .filter(|e| !e.is_empty())
    {
        match entry.split_once(':') {
            Some((key, value)) if !key.trim().is_empty() => {
                values.push(OsString::from(format!("{}={}", key.trim(), value.trim())));
            }
            _ => return Err(AliasError::MesosAttribute(entry.to_string())),
        }
    }
    Ok(Some(Override {
        key: "labels",
        layer: Layer::Environment,
        values,
    }))
}

/// The command line with steward's flags turned into bosun's, for `bosun node`: `-flag
/// VALUE`, `-flag=VALUE`, `--flag VALUE` and `--flag=VALUE` (Go's forms) of every
/// [`STEWARD_ALIASES`] flag, and the [`STEWARD_IGNORED`] ones dropped (named in the
/// second list). Arguments before the `node` subcommand are left as they are.
pub fn steward_args(args: Vec<OsString>) -> Result<(Vec<OsString>, Vec<String>), AliasError> {
    let Some(start) = args.iter().position(|a| a == "node") else {
        return Ok((args, vec![]));
    };
    let mut out: Vec<OsString> = args[..=start].to_vec();
    let mut ignored = vec![];
    let mut given: Vec<(&'static str, String, String)> = vec![];
    let mut rest = args[start + 1..].iter();
    while let Some(arg) = rest.next() {
        let Some(text) = arg.to_str() else {
            out.push(arg.clone());
            continue;
        };
        let Some(flag) = text.strip_prefix("--").or_else(|| text.strip_prefix('-')) else {
            out.push(arg.clone());
            continue;
        };
        let (name, inline) = match flag.split_once('=') {
            Some((name, value)) => (name, Some(value.to_string())),
            None => (flag, None),
        };
        let alias = STEWARD_ALIASES.iter().find(|a| a.flag == name);
        let skip = STEWARD_IGNORED.iter().any(|i| name.starts_with(i));
        if alias.is_none() && !skip {
            out.push(arg.clone());
            continue;
        }
        let value = match inline {
            Some(value) => value,
            // Go's bool flags take no value: `-startSubREQHello` alone.
            None if skip && name.starts_with("startSubREQ") => String::new(),
            None => rest
                .next()
                .and_then(|v| v.to_str())
                .map(str::to_string)
                .ok_or_else(|| AliasError::NoValue(name.to_string()))?,
        };
        let Some(alias) = alias else {
            ignored.push(name.to_string());
            continue;
        };
        let value = steward_value(alias.key, &value);
        if let Some((_, first, first_value)) = given
            .iter()
            .find(|(key, _, v)| *key == alias.key && *v != value)
        {
            return Err(AliasError::Conflict {
                key: alias.key,
                first: first.clone(),
                first_value: first_value.clone(),
                second: format!("-{name}"),
                second_value: value,
            });
        }
        given.push((alias.key, format!("-{name}"), value.clone()));
        let bosun_flag = match alias.key {
            "config" => {
                // Only when the folder holds a bosun config.
                let file = Path::new(&value).join("bosun.toml");
                if !file.exists() {
                    ignored.push(format!("{name} (no bosun.toml in {value})"));
                    continue;
                }
                out.push("--config".into());
                out.push(file.into_os_string());
                continue;
            }
            key => Setting::find(key)
                .and_then(|s| s.cli)
                .map(|c| c.flag)
                .unwrap_or(key),
        };
        out.push(format!("--{bosun_flag}").into());
        out.push(value.into());
    }
    Ok((out, ignored))
}

/// The values steward's environment variables give, as overrides of the environment
/// layer, each checked against bosun's own variable for the same setting: both set
/// differently is an error. `lookup` reads the environment.
pub fn steward_env(lookup: impl Fn(&str) -> Option<String>) -> Result<Vec<Override>, AliasError> {
    let mut overrides: Vec<Override> = vec![];
    let mut seen: Vec<(&'static str, String, String)> = vec![];
    for alias in STEWARD_ALIASES {
        let Some(raw) = lookup(alias.env).filter(|v| !v.is_empty()) else {
            continue;
        };
        if alias.key == "config" {
            continue;
        }
        let value = steward_value(alias.key, &raw);
        let own = Setting::find(alias.key)
            .and_then(|s| s.cli)
            .and_then(|c| lookup(c.env).map(|v| (c.env, v)));
        let earlier = seen.iter().find(|(key, _, _)| *key == alias.key).cloned();
        for (name, other) in own
            .map(|(n, v)| (n.to_string(), v))
            .into_iter()
            .chain(earlier.map(|(_, n, v)| (n, v)))
        {
            if steward_value(alias.key, &other) != value {
                return Err(AliasError::Conflict {
                    key: alias.key,
                    first: name,
                    first_value: other,
                    second: alias.env.to_string(),
                    second_value: raw,
                });
            }
        }
        seen.push((alias.key, alias.env.to_string(), raw.clone()));
        if Setting::find(alias.key)
            .and_then(|s| s.cli)
            .and_then(|c| lookup(c.env))
            .is_some()
        {
            continue;
        }
        if overrides.iter().any(|o| o.key == alias.key) {
            continue;
        }
        overrides.push(Override {
            key: alias.key,
            layer: Layer::Environment,
            values: vec![value.into()],
        });
    }
    Ok(overrides)
}

/// The config file steward's `CONFIG_FOLDER` names: its `bosun.toml`, when there is one.
pub fn steward_config_file(lookup: impl Fn(&str) -> Option<String>) -> Option<PathBuf> {
    let folder = lookup("CONFIG_FOLDER").filter(|v| !v.is_empty())?;
    let file = Path::new(&folder).join("bosun.toml");
    file.exists().then_some(file)
}
