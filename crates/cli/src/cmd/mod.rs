//! One file per subcommand, and the config loading they share.

pub mod cancel;
pub mod chaos;
pub mod config;
pub mod container;
pub mod demo;
pub mod docs;
pub mod exec;
pub mod fanout;
pub mod keys;
pub mod node;
pub mod nodes;
pub mod send;
pub mod status;
pub mod workload;

use std::ffi::OsString;

use anyhow::Context;
use bosun_node::Config;
use bosun_node::config::{Layer, Override, SETTINGS, Setting, Sources};
use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Args, Command, FromArgMatches};

use crate::Global;

/// Node options, each also settable as a `BOSUN_*` environment variable. They override
/// the config file. The flags are made from the node's settings table
/// ([`bosun_node::config::SETTINGS`]), with each default shown in help, and hold only
/// what the environment or the command line actually gave, so the file keeps its say
/// over the rest.
#[derive(Clone, Debug, Default)]
pub struct NodeArgs {
    overrides: Vec<Override>,
}

/// The settings declared as `bosun node` flags (global ones come with `Global`).
fn node_flags() -> impl Iterator<Item = (&'static Setting, bosun_node::config::Cli)> {
    SETTINGS
        .iter()
        .filter_map(|setting| Some((setting, setting.cli?)))
        .filter(|(_, cli)| !cli.global)
}

impl Args for NodeArgs {
    fn augment_args(mut command: Command) -> Command {
        for (setting, cli) in node_flags() {
            let mut arg = Arg::new(setting.key)
                .long(cli.flag)
                .env(cli.env)
                .value_name(cli.value_name)
                .value_parser(clap::builder::ValueParser::os_string())
                .help(format!(
                    "{} [default: {}]",
                    cli.help,
                    setting.default_text()
                ));
            if cli.list {
                arg = arg.action(ArgAction::Append).value_delimiter(',');
            }
            command = command.arg(arg);
        }
        command
    }

    fn augment_args_for_update(command: Command) -> Command {
        Self::augment_args(command)
    }
}

impl FromArgMatches for NodeArgs {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let mut overrides = Vec::new();
        for (setting, _) in node_flags() {
            let layer = match matches.value_source(setting.key) {
                Some(ValueSource::CommandLine) => Layer::Flag,
                Some(ValueSource::EnvVariable) => Layer::Environment,
                // Defaults are the config's own; a clap default would hide the file's value.
                _ => continue,
            };
            let values: Vec<OsString> = matches
                .get_many::<OsString>(setting.key)
                .into_iter()
                .flatten()
                .cloned()
                .collect();
            overrides.push(Override {
                key: setting.key,
                layer,
                values,
            });
        }
        Ok(NodeArgs { overrides })
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

/// The config in effect: file, then env and flags.
pub fn load_config(global: &Global, args: &NodeArgs) -> anyhow::Result<Config> {
    let lookup = |name: &str| std::env::var(name).ok();
    // steward's environment spellings, under bosun's own, which win when both agree.
    // A Mesos agent's attributes as labels, then steward's environment spellings, both
    // under bosun's own variables and flags.
    let mut overrides: Vec<Override> = bosun_node::config::mesos_labels(lookup)?
        .into_iter()
        .collect();
    overrides.extend(bosun_node::config::steward_env(lookup)?);
    overrides.extend(args.overrides.iter().cloned());
    if let Some(data_dir) = &global.data_dir {
        overrides.push(Override {
            key: "data_dir",
            layer: Layer::Flag,
            values: vec![data_dir.clone().into()],
        });
    }
    let sources = Sources {
        file: global
            .config
            .clone()
            .or_else(|| bosun_node::config::steward_config_file(lookup)),
        overrides,
    };
    Config::load(&sources).context("invalid configuration")
}

/// The local node's socket, from the data dir in effect.
pub fn socket_path(global: &Global) -> anyhow::Result<std::path::PathBuf> {
    Ok(load_config(global, &NodeArgs::default())?.socket_path())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn node_command() -> Command {
        NodeArgs::augment_args(Command::new("node").no_binary_name(true))
    }

    /// Flags only: `BOSUN_*` variables of whoever runs the tests must not leak in.
    fn parse(args: &[&str]) -> NodeArgs {
        let matches = node_command()
            .mut_args(|arg| arg.env(None))
            .try_get_matches_from(args)
            .unwrap();
        NodeArgs::from_arg_matches(&matches).unwrap()
    }

    #[test]
    fn help_shows_each_default_from_the_config() {
        let help = node_command().render_help().to_string();
        for (flag, default) in [
            ("--ack-timeout <SECS>", "[default: 5]"),
            ("--retries <N>", "[default: 5]"),
            ("--method-timeout <SECS>", "[default: 300]"),
            ("--hello-interval <SECS>", "[default: 30]"),
            ("--subject-prefix <PREFIX>", "[default: bosun]"),
            ("--log <FILTER>", "[default: info]"),
            ("--name <NAME>", "[default: the hostname]"),
            ("--tcp-listen <ADDR>", "[default: off]"),
        ] {
            let line = help
                .lines()
                .skip_while(|l| !l.contains(flag))
                .take(3)
                .collect::<String>();
            assert!(line.contains(default), "{flag}: {default} in\n{help}");
        }
        let defaults = Config::default();
        assert!(help.contains(&format!("[default: {}]", defaults.method_timeout_secs)));
    }

    #[test]
    fn flags_override_only_what_they_give() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bosun.toml");
        std::fs::write(
            &file,
            "retries = 9\nhello_interval_secs = 11\ntcp_listen = \"127.0.0.1:1001\"\n",
        )
        .unwrap();
        let global = Global {
            data_dir: Some(dir.path().to_path_buf()),
            config: None,
        };
        let args = parse(&[
            "--tcp-listen",
            "127.0.0.1:1003",
            "--hello-interval",
            "4",
            "--label",
            "a=1,b=2",
            "--label",
            "c=3",
        ]);
        let config = load_config(&global, &args).unwrap();
        assert_eq!(config.retries, 9, "the file's, no flag default over it");
        assert_eq!(config.tcp_listen, Some("127.0.0.1:1003".parse().unwrap()));
        assert_eq!(config.hello_interval(), Some(Duration::from_secs(4)));
        assert_eq!(config.labels.len(), 3);
        assert_eq!(config.data_dir, dir.path());
    }

    #[test]
    fn a_bad_address_names_the_flag() {
        let dir = tempfile::tempdir().unwrap();
        let global = Global {
            data_dir: Some(dir.path().to_path_buf()),
            config: None,
        };
        let args = parse(&["--metrics-listen", "localhost"]);
        let err = format!("{:#}", load_config(&global, &args).unwrap_err());
        assert!(
            err.contains("metrics_listen") && err.contains("--metrics-listen"),
            "{err}"
        );
    }
}
