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
    },
}

impl ConfigCmd {
    pub async fn run(self, global: &Global) -> anyhow::Result<i32> {
        match self {
            ConfigCmd::Show { args } => {
                let config = load_config(global, &args)?;
                out!("{}", config.to_toml_explained());
                Ok(0)
            }
        }
    }
}
