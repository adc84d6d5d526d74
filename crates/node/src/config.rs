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
        set_opt!(tls_ca, tls_cert, tls_key, nkey_seed_file, creds_file);
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
