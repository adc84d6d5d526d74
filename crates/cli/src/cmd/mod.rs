//! One file per subcommand, and the config loading they share.

pub mod config;
pub mod container;
pub mod demo;
pub mod exec;
pub mod node;
pub mod nodes;
pub mod send;
pub mod status;

use std::path::PathBuf;

use anyhow::Context;
use bosun_node::{Config, Overrides};
use clap::Args;

use crate::Global;

/// Node options, each also settable as a `BOSUN_*` environment variable. They override
/// the config file.
#[derive(Args, Clone, Debug, Default)]
pub struct NodeArgs {
    /// This node's name (letters, digits, '_' and '-'). [default: the hostname]
    #[arg(long, env = "BOSUN_NAME")]
    pub name: Option<String>,
    /// NATS server URL(s), comma-separated. Without one the node is standalone.
    #[arg(long, env = "BOSUN_BROKER", value_name = "URL", value_delimiter = ',')]
    pub broker: Option<Vec<String>>,
    /// First token of every subject. [default: bosun]
    #[arg(long, env = "BOSUN_SUBJECT_PREFIX", value_name = "PREFIX")]
    pub subject_prefix: Option<String>,
    /// Default seconds to wait for an ACK before resending. [default: 5]
    #[arg(long, env = "BOSUN_ACK_TIMEOUT", value_name = "SECS")]
    pub ack_timeout: Option<u64>,
    /// Default resends after ACK timeouts. [default: 5]
    #[arg(long, env = "BOSUN_RETRIES", value_name = "N")]
    pub retries: Option<u32>,
    /// Default seconds a method may run. [default: 300]
    #[arg(long, env = "BOSUN_METHOD_TIMEOUT", value_name = "SECS")]
    pub method_timeout: Option<u64>,
    /// CA bundle to verify the NATS server (turns TLS on).
    #[arg(long, env = "BOSUN_TLS_CA", value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// Client certificate for NATS mutual TLS.
    #[arg(long, env = "BOSUN_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// Client key for NATS mutual TLS.
    #[arg(long, env = "BOSUN_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// NATS nkey seed file (the seed itself is never taken on the command line).
    #[arg(long, env = "BOSUN_NKEY_SEED_FILE", value_name = "FILE")]
    pub nkey_seed_file: Option<PathBuf>,
    /// NATS credentials file.
    #[arg(long, env = "BOSUN_CREDS_FILE", value_name = "FILE")]
    pub creds_file: Option<PathBuf>,
    /// Log filter, e.g. `info`, `debug`, `bosun_node=debug`. [default: info]
    #[arg(long, env = "BOSUN_LOG", value_name = "FILTER")]
    pub log: Option<String>,
    /// The central node: keeps the fleet registry and error log, receives hellos.
    #[arg(long, env = "BOSUN_CENTRAL", value_name = "NODE")]
    pub central: Option<String>,
    /// Seconds between hellos to central; 0 turns them off. [default: 30]
    #[arg(long, env = "BOSUN_HELLO_INTERVAL", value_name = "SECS")]
    pub hello_interval: Option<u64>,
    /// Where results with directory/fileName and reply sinks are written.
    /// [default: <data dir>/data]
    #[arg(long, env = "BOSUN_RESULTS_DIR", value_name = "DIR")]
    pub results_dir: Option<PathBuf>,
    /// Listen for steward message arrays on TCP, e.g. 127.0.0.1:8090. [default: off]
    #[arg(long, env = "BOSUN_TCP_LISTEN", value_name = "ADDR")]
    pub tcp_listen: Option<String>,
    /// Folder watched for message files (submitted, then removed). [default: <data dir>/readfolder]
    #[arg(long, env = "BOSUN_READ_DIR", value_name = "DIR")]
    pub read_dir: Option<PathBuf>,
    /// Folder of message files submitted at every start. [default: <data dir>/startup]
    #[arg(long, env = "BOSUN_STARTUP_DIR", value_name = "DIR")]
    pub startup_dir: Option<PathBuf>,
    /// Serve Prometheus /metrics here, e.g. 127.0.0.1:2112. [default: off]
    #[arg(long, env = "BOSUN_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<String>,
    /// Serve the LSDSuite command port here, e.g. 127.0.0.1:7000. [default: off]
    #[arg(long, env = "BOSUN_LSDSUITE_LISTEN", value_name = "ADDR")]
    pub lsdsuite_listen: Option<String>,
    /// Serve the HTTP API (/v1, quartermaster, DockerMod) here, e.g. 127.0.0.1:9090.
    /// Needs BOSUN_HTTP_TOKEN or http_token_file. [default: off]
    #[arg(long, env = "BOSUN_HTTP_LISTEN", value_name = "ADDR")]
    pub http_listen: Option<String>,
    /// A node label, KEY=VALUE; repeat for more (reported in hellos).
    #[arg(
        long = "label",
        env = "BOSUN_LABELS",
        value_name = "KEY=VALUE",
        value_delimiter = ','
    )]
    pub labels: Vec<String>,
}

impl NodeArgs {
    fn overrides(&self, data_dir: Option<PathBuf>) -> Overrides {
        Overrides {
            name: self.name.clone(),
            data_dir,
            broker: self.broker.clone(),
            subject_prefix: self.subject_prefix.clone(),
            ack_timeout_secs: self.ack_timeout,
            retries: self.retries,
            method_timeout_secs: self.method_timeout,
            tls_ca: self.tls_ca.clone(),
            tls_cert: self.tls_cert.clone(),
            tls_key: self.tls_key.clone(),
            nkey_seed_file: self.nkey_seed_file.clone(),
            creds_file: self.creds_file.clone(),
            log: self.log.clone(),
            central: self.central.clone(),
            hello_interval_secs: self.hello_interval,
            results_dir: self.results_dir.clone(),
            tcp_listen: self.tcp_listen.clone(),
            read_dir: self.read_dir.clone(),
            startup_dir: self.startup_dir.clone(),
            metrics_listen: self.metrics_listen.clone(),
            labels: self.labels.clone(),
            lsdsuite_listen: self.lsdsuite_listen.clone(),
            http_listen: self.http_listen.clone(),
        }
    }
}

/// The config in effect: file, then env and flags.
pub fn load_config(global: &Global, args: &NodeArgs) -> anyhow::Result<Config> {
    let (path, must_exist) = match &global.config {
        Some(p) => (p.clone(), true),
        None => {
            let dir = global
                .data_dir
                .clone()
                .unwrap_or_else(bosun_node::config::default_data_dir);
            (Config::default_file(&dir), false)
        }
    };
    let mut config = Config::from_file(&path, must_exist)?;
    config.apply(&args.overrides(global.data_dir.clone()));
    config.validate().context("invalid configuration")?;
    Ok(config)
}

/// The local node's socket, from the data dir in effect.
pub fn socket_path(global: &Global) -> anyhow::Result<PathBuf> {
    Ok(load_config(global, &NodeArgs::default())?.socket_path())
}
