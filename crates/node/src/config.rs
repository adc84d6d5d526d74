//! Node configuration: a TOML file, then `BOSUN_*` environment variables, then flags.
//!
//! The file is `--config PATH` (or `BOSUN_CONFIG`), else `<data dir>/bosun.toml` when it
//! exists. Environment variables and flags are merged by the CLI (flags win) and applied
//! on top of the file with [`Config::apply`]. Nothing given on the command line is
//! written back to the file unless the operator asks for it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Everything a node needs to run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// This node's name: one NATS subject token (`A-Z a-z 0-9 _ -`).
    pub name: String,
    /// Where the database, the control socket and logs live.
    pub data_dir: PathBuf,
    /// NATS server URLs. Empty: a standalone node on the in-process transport.
    pub broker: Vec<String>,
    /// First token of every subject: `<prefix>.<node>.<method>`.
    pub subject_prefix: String,
    /// Seconds to wait for an ACK before resending, when a message sets no `ACKTimeout`.
    pub ack_timeout_secs: u64,
    /// Resends after ACK timeouts, when a message sets no `retries`.
    pub retries: u32,
    /// Seconds a method may run, when a message sets no `methodTimeout`.
    pub method_timeout_secs: u64,
    /// Seconds between SIGTERM and SIGKILL when a command is ended.
    pub kill_grace_secs: u64,
    /// Largest accepted message, in bytes, on every input and on the wire.
    pub max_message_bytes: usize,
    /// Most bytes of stdout and of stderr kept from a command.
    pub output_limit_bytes: usize,
    /// Unordered messages that may run at once.
    pub max_concurrent: usize,
    /// Unordered messages that may await their ACK at once.
    pub max_in_flight: usize,
    /// CA bundle for NATS TLS.
    pub tls_ca: Option<PathBuf>,
    /// Client certificate for NATS mutual TLS.
    pub tls_cert: Option<PathBuf>,
    /// Client key for NATS mutual TLS.
    pub tls_key: Option<PathBuf>,
    /// Refuse to talk to NATS without TLS.
    pub require_tls: bool,
    /// NATS nkey seed file.
    pub nkey_seed_file: Option<PathBuf>,
    /// NATS creds file.
    pub creds_file: Option<PathBuf>,
    /// Log filter, e.g. `info` or `bosun_node=debug`.
    pub log: String,
    /// Free-form labels of this node, reported in its hello (e.g. `role = "worker"`).
    pub labels: std::collections::BTreeMap<String, String>,
    /// The central node: it keeps the fleet registry and the fleet's error log, and
    /// receives hellos (steward's `centralNodeName`).
    pub central: Option<String>,
    /// Seconds between hellos to central; 0 turns them off (steward's `startPubHello`).
    pub hello_interval_secs: u64,
    /// Where reply sinks and results with `directory`/`fileName` are written:
    /// `<results_dir>/<fromNode>/<directory>/<fileName>` (steward's
    /// `subscribersDataFolder`). Default: `<data_dir>/data`.
    pub results_dir: Option<PathBuf>,
    /// Address of the TCP listener for steward message arrays, e.g. `127.0.0.1:8090`.
    /// Off when unset (steward's `tcpListener`).
    pub tcp_listen: Option<String>,
    /// Folder watched for message files, which are submitted, then removed. Default:
    /// `<data_dir>/readfolder`; set to an empty path to turn it off.
    pub read_dir: Option<PathBuf>,
    /// Folder whose message files are submitted at every start. Default:
    /// `<data_dir>/startup`.
    pub startup_dir: Option<PathBuf>,
    /// Address of the Prometheus `/metrics` endpoint, e.g. `127.0.0.1:2112`. Off when unset
    /// (steward's `promHostAndPort`).
    pub metrics_listen: Option<String>,
    /// Size at which the audit log is rotated, in bytes; 0 turns the audit log off.
    pub audit_max_bytes: u64,
    /// Rotated audit logs kept.
    pub audit_keep: usize,
    /// Days finished messages are kept before they are pruned (and their ids forgotten
    /// for deduplication).
    pub retention_days: u64,
    /// Missed hellos after which central marks a node `suspect`.
    pub suspect_after_missed: u64,
    /// Missed hellos after which central marks a node `down`.
    pub down_after_missed: u64,
    /// The Docker Engine socket.
    pub docker_socket: PathBuf,
    /// Address of the LSDSuite command port, e.g. `127.0.0.1:7000`. Off when unset.
    pub lsdsuite_listen: Option<String>,
    /// Address of the HTTP API (`/v1`, quartermaster and DockerMod endpoints), e.g.
    /// `127.0.0.1:9090`. Off when unset. Needs a token: `BOSUN_HTTP_TOKEN` or
    /// `http_token_file`.
    pub http_listen: Option<String>,
    /// File holding the HTTP API token (never given on the command line).
    pub http_token_file: Option<PathBuf>,
    /// Accept DockerMod's `POST /` requests without a token, as DockerMod itself did, so
    /// its users' scripts run unchanged. Only on a trusted network.
    pub dockermod_open: bool,
    /// Capture logs and stats of labelled containers, host stats and Docker events into
    /// the event stream (LSDSuite), with marks in between.
    pub capture: bool,
    /// Folder of the event stream files. Default: `<data_dir>/capture`.
    pub capture_dir: Option<PathBuf>,
    /// The syslog socket for `docker run --log-driver syslog` (LSDSuite's
    /// `$LSDSUITE_DIR/sock/logs.sock`). Default: `<data_dir>/sock/logs.sock`.
    pub syslog_socket: Option<PathBuf>,
    /// Seconds between container and host stats samples.
    pub stats_interval_secs: u64,
    /// Ship new event-stream lines to central every few seconds; central keeps them
    /// under `<results dir>/<node>/capture/<file>`.
    pub capture_ship: bool,
    /// Folder of container templates (`NAME.json`, Docker create-container shape).
    /// Default: `<data_dir>/templates`.
    pub templates_dir: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            name: default_name(),
            data_dir: default_data_dir(),
            broker: Vec::new(),
            subject_prefix: "bosun".into(),
            ack_timeout_secs: 5,
            retries: 5,
            method_timeout_secs: 300,
            kill_grace_secs: 5,
            max_message_bytes: 1024 * 1024,
            output_limit_bytes: 512 * 1024,
            max_concurrent: 64,
            max_in_flight: 1024,
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
            require_tls: false,
            nkey_seed_file: None,
            creds_file: None,
            log: "info".into(),
            labels: Default::default(),
            central: None,
            hello_interval_secs: 30,
            results_dir: None,
            tcp_listen: None,
            read_dir: None,
            startup_dir: None,
            metrics_listen: None,
            audit_max_bytes: 10 * 1024 * 1024,
            audit_keep: 5,
            retention_days: 7,
            suspect_after_missed: 2,
            down_after_missed: 5,
            docker_socket: PathBuf::from("/var/run/docker.sock"),
            lsdsuite_listen: None,
            http_listen: None,
            http_token_file: None,
            dockermod_open: false,
            capture: true,
            capture_dir: None,
            syslog_socket: None,
            stats_interval_secs: 5,
            capture_ship: false,
            templates_dir: None,
        }
    }
}

/// Values from the environment and the command line; `None` leaves the file's value.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// See [`Config::name`].
    pub name: Option<String>,
    /// See [`Config::data_dir`].
    pub data_dir: Option<PathBuf>,
    /// See [`Config::broker`] (comma-separated URLs are split).
    pub broker: Option<Vec<String>>,
    /// See [`Config::subject_prefix`].
    pub subject_prefix: Option<String>,
    /// See [`Config::ack_timeout_secs`].
    pub ack_timeout_secs: Option<u64>,
    /// See [`Config::retries`].
    pub retries: Option<u32>,
    /// See [`Config::method_timeout_secs`].
    pub method_timeout_secs: Option<u64>,
    /// See [`Config::tls_ca`].
    pub tls_ca: Option<PathBuf>,
    /// See [`Config::tls_cert`].
    pub tls_cert: Option<PathBuf>,
    /// See [`Config::tls_key`].
    pub tls_key: Option<PathBuf>,
    /// See [`Config::nkey_seed_file`].
    pub nkey_seed_file: Option<PathBuf>,
    /// See [`Config::creds_file`].
    pub creds_file: Option<PathBuf>,
    /// See [`Config::log`].
    pub log: Option<String>,
    /// See [`Config::central`].
    pub central: Option<String>,
    /// See [`Config::hello_interval_secs`].
    pub hello_interval_secs: Option<u64>,
    /// See [`Config::results_dir`].
    pub results_dir: Option<PathBuf>,
    /// See [`Config::tcp_listen`].
    pub tcp_listen: Option<String>,
    /// See [`Config::read_dir`].
    pub read_dir: Option<PathBuf>,
    /// See [`Config::startup_dir`].
    pub startup_dir: Option<PathBuf>,
    /// See [`Config::metrics_listen`].
    pub metrics_listen: Option<String>,
    /// See [`Config::lsdsuite_listen`].
    pub lsdsuite_listen: Option<String>,
    /// See [`Config::http_listen`].
    pub http_listen: Option<String>,
    /// See [`Config::labels`]: `key=value` pairs, added to the file's.
    pub labels: Vec<String>,
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
}

fn default_name() -> String {
    let raw = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
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

/// `$BOSUN_DATA_DIR` is handled by the CLI; this is the fallback: `~/.local/share/bosun`,
/// or `./bosun-data` without a home directory.
pub fn default_data_dir() -> PathBuf {
    match std::env::var_os("HOME") {
        Some(home) if !home.is_empty() => PathBuf::from(home).join(".local/share/bosun"),
        _ => PathBuf::from("bosun-data"),
    }
}

impl Config {
    /// Read a config file. A missing file at the default location is not an error: the
    /// caller passes `must_exist = false` for it.
    pub fn from_file(path: &Path, must_exist: bool) -> Result<Config, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !must_exist => {
                return Ok(Config::default());
            }
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.display().to_string(),
                    source,
                });
            }
        };
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.display().to_string(),
            reason: e.to_string(),
        })
    }

    /// Lay environment and flag values over this config.
    pub fn apply(&mut self, o: &Overrides) {
        macro_rules! set {
            ($($field:ident),*) => {$(
                if let Some(v) = &o.$field { self.$field = v.clone(); }
            )*};
        }
        set!(
            name,
            data_dir,
            subject_prefix,
            ack_timeout_secs,
            retries,
            method_timeout_secs,
            log
        );
        if let Some(urls) = &o.broker {
            self.broker = urls
                .iter()
                .flat_map(|u| u.split(','))
                .map(|u| u.trim().to_string())
                .filter(|u| !u.is_empty())
                .collect();
        }
        macro_rules! set_opt {
            ($($field:ident),*) => {$(
                if let Some(v) = &o.$field { self.$field = Some(v.clone()); }
            )*};
        }
        set_opt!(
            tls_ca,
            tls_cert,
            tls_key,
            nkey_seed_file,
            creds_file,
            central,
            results_dir,
            tcp_listen,
            read_dir,
            startup_dir,
            metrics_listen,
            lsdsuite_listen,
            http_listen
        );
        if let Some(v) = o.hello_interval_secs {
            self.hello_interval_secs = v;
        }
        for pair in &o.labels {
            if let Some((k, v)) = pair.split_once('=') {
                self.labels
                    .insert(k.trim().to_string(), v.trim().to_string());
            }
        }
    }

    /// Where results and reply sinks are written.
    pub fn results_path(&self) -> PathBuf {
        self.results_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("data"))
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
        self.startup_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("startup"))
    }

    /// The container templates folder.
    pub fn templates_path(&self) -> PathBuf {
        self.templates_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("templates"))
    }

    /// The audit log file.
    pub fn audit_log_path(&self) -> PathBuf {
        self.data_dir.join("audit.log")
    }

    /// The central node's name, if one is configured.
    pub fn central_name(&self) -> Option<&str> {
        self.central.as_deref().filter(|c| !c.is_empty())
    }

    /// Check the values that could make the node misbehave.
    pub fn validate(&self) -> Result<(), ConfigError> {
        bosun_proto::validate_node_name(&self.name).map_err(|reason| ConfigError::Invalid {
            field: "name",
            reason,
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
        if let Some(c) = self.central_name() {
            bosun_proto::validate_node_name(c).map_err(|reason| ConfigError::Invalid {
                field: "central",
                reason,
            })?;
        }
        for (field, addr) in [
            ("tcp_listen", &self.tcp_listen),
            ("metrics_listen", &self.metrics_listen),
            ("lsdsuite_listen", &self.lsdsuite_listen),
            ("http_listen", &self.http_listen),
        ] {
            if let Some(a) = addr
                && a.parse::<std::net::SocketAddr>().is_err()
            {
                return Err(ConfigError::Invalid {
                    field,
                    reason: format!("{a:?} is not an address; use HOST:PORT, e.g. 127.0.0.1:8090"),
                });
            }
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
        for url in &self.broker {
            if !(url.starts_with("nats://") || url.starts_with("tls://") || url.contains(':')) {
                return Err(ConfigError::Invalid {
                    field: "broker",
                    reason: format!("{url:?} is not a NATS URL; use nats://HOST:PORT"),
                });
            }
        }
        Ok(())
    }

    /// The effective configuration as TOML, for `bosun config show`.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("config always serialises")
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

    /// The default config file for a data dir.
    pub fn default_file(data_dir: &Path) -> PathBuf {
        data_dir.join("bosun.toml")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_then_overrides_in_that_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bosun.toml");
        std::fs::write(
            &path,
            "name = \"from-file\"\nretries = 9\nack_timeout_secs = 7\n",
        )
        .unwrap();
        let mut c = Config::from_file(&path, true).unwrap();
        assert_eq!(
            (c.name.as_str(), c.retries, c.ack_timeout_secs),
            ("from-file", 9, 7)
        );
        c.apply(&Overrides {
            name: Some("from-flag".into()),
            broker: Some(vec!["nats://a:1,nats://b:2".into()]),
            ..Default::default()
        });
        assert_eq!(c.name, "from-flag");
        assert_eq!(c.retries, 9, "untouched values keep the file's");
        assert_eq!(c.broker, vec!["nats://a:1", "nats://b:2"]);
        c.validate().unwrap();
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bosun.toml");
        std::fs::write(&path, "nmae = \"x\"\n").unwrap();
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
    fn shown_config_parses_back() {
        let c = Config::default();
        let back: Config = toml::from_str(&c.to_toml()).unwrap();
        assert_eq!(back, c);
    }
}
