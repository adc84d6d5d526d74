//! `bosun config show`.

use clap::Subcommand;

use super::{NodeArgs, load_config};
use crate::Global;

#[derive(Subcommand)]
pub enum ConfigCmd {
    /// Print the configuration in effect (file, then BOSUN_* env, then flags), as TOML,
    /// with the paths unset settings resolve to as comments.
    Show {
        #[command(flatten)]
        args: NodeArgs,
        /// Print JSON instead: every setting under its TOML key, and under `resolved` the
        /// paths and roots that unset settings resolve to.
        #[arg(long)]
        json: bool,
    },
}

impl ConfigCmd {
    pub async fn run(self, global: &Global) -> anyhow::Result<i32> {
        match self {
            ConfigCmd::Show { args, json } => {
                let config = load_config(global, &args)?;
                if json {
                    let mut value = serde_json::to_value(&config)?;
                    value["resolved"] = serde_json::json!({
                        "results_dir": config.results_path(),
                        "read_dir": config.read_path(),
                        "startup_dir": config.startup_path(),
                        "templates_dir": config.templates_path(),
                        "capture_dir": config.capture_path(),
                        "syslog_socket": config.syslog_socket_path(),
                        "file_roots": config.file_roots_paths(),
                    });
                    outln!("{}", serde_json::to_string_pretty(&value)?);
                } else {
                    out!("{}", config.to_toml_explained());
                }
                Ok(0)
            }
        }
    }
}
