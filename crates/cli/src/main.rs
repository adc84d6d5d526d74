//! The `bosun` binary: one file per subcommand under `cmd/`.

#[macro_use]
mod out;
mod cmd;
mod render;
mod table;

use std::path::PathBuf;
use std::sync::LazyLock;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

/// Command and control for fleets on slow, flaky or sometimes-up links.
///
/// Every host runs `bosun node`. Messages sent to a node are queued durably, delivered
/// when the node can be reached, run exactly once, and their results come back.
#[derive(Parser)]
#[command(name = "bosun", propagate_version = true)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

/// Options every subcommand takes.
#[derive(Args, Clone, Debug)]
pub struct Global {
    /// Its help and default come from the `data_dir` setting (see `command`).
    #[arg(long, global = true, env = "BOSUN_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Config file (TOML). [default: <data dir>/bosun.toml, if present]
    #[arg(long, global = true, env = "BOSUN_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    #[command(about = "Run a node: receive, run and answer messages; send this host's own.")]
    Node(cmd::node::NodeCmd),
    #[command(about = "Run a command on one or more nodes and print each result.")]
    Exec(cmd::exec::ExecCmd),
    #[command(about = "Submit a steward-style JSON file of messages; print their ids.")]
    Send(cmd::send::SendCmd),
    #[command(about = "Show a message's whole life: states with times, then its result.")]
    Status(cmd::status::StatusCmd),
    #[command(about = "Cancel messages this node sent that have not run yet.")]
    Cancel(cmd::cancel::CancelCmd),
    #[command(about = "Show the fleet: every node that said hello, alive, suspect or down.")]
    Nodes(cmd::nodes::NodesCmd),
    #[command(
        about = "Containers across the fleet: run, ls, stop, kill, pause, unpause, rm, logs, …"
    )]
    #[command(subcommand)]
    Container(cmd::container::ContainerCmd),
    #[command(about = "Fault experiments with leases: run a scenario, status, abort, report.")]
    #[command(subcommand)]
    Chaos(cmd::chaos::ChaosCmd),
    #[command(
        about = "Supervised workloads: add, ls, rm, restart (restart policies, health checks, FATAL)."
    )]
    #[command(subcommand)]
    Workload(cmd::workload::WorkloadCmd),
    #[command(about = "Images on a node: pull, ls.")]
    #[command(subcommand)]
    Image(cmd::container::ImageCmd),
    #[command(about = "Inspect the configuration.")]
    #[command(subcommand)]
    Config(cmd::config::ConfigCmd),
    #[command(about = "Run a small fleet in this process and show bosun at work.")]
    Demo(cmd::demo::DemoCmd),
    #[command(
        about = "Identities: the fleet's issuer, node and operator keys (init, issue, show, new)."
    )]
    #[command(subcommand)]
    Keys(cmd::keys::KeysCmd),
    #[command(about = "Print a shell completion script: bash, zsh, fish, elvish, powershell.")]
    Completions(cmd::docs::CompletionsCmd),
    #[command(about = "Print bosun's man page, or write one page per command into a folder.")]
    Man(cmd::docs::ManCmd),
}

/// The release and the source it was built from, for `--version`: `0.1.0 (git
/// 1a2b3c4d5e6f)`, with `-modified` when the tree had uncommitted changes, or `(unknown
/// revision)` when built outside a git checkout.
static VERSION: LazyLock<String> = LazyLock::new(|| {
    let revision = git_version::git_version!(
        prefix = "git ",
        args = ["--always", "--dirty=-modified", "--abbrev=12"],
        fallback = "unknown revision"
    );
    format!("{} ({revision})", env!("CARGO_PKG_VERSION"))
});

/// The command line, with the help of global options taken from the one table of
/// settings, so that `--help` and `bosun config show` state the same defaults.
fn command() -> clap::Command {
    let setting = bosun_node::config::Setting::find("data_dir").expect("data_dir is a setting");
    let help = setting
        .cli
        .map(|cli| cli.help)
        .unwrap_or("The node's data dir.");
    let help = format!("{help} [default: {}]", setting.default_text());
    Cli::command()
        .version(VERSION.as_str())
        .mut_arg("data_dir", |arg| arg.help(help))
}

fn main() {
    // steward's flags (`-nodeName=ship1`, `--brokerAddress …`) work unchanged on `bosun node`.
    let args = match bosun_node::config::steward_args(std::env::args_os().collect()) {
        Ok((args, ignored)) => {
            for flag in ignored {
                eprintln!(
                    "note: steward flag -{flag} has no bosun counterpart and is left alone (see the README, Coming from steward)"
                );
            }
            args
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    let matches = command().get_matches_from(args);
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("start the tokio runtime");
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Node(c) => c.run(&cli.global).await,
            Command::Exec(c) => c.run(&cli.global).await,
            Command::Send(c) => c.run(&cli.global).await,
            Command::Status(c) => c.run(&cli.global).await,
            Command::Cancel(c) => c.run(&cli.global).await,
            Command::Nodes(c) => c.run(&cli.global).await,
            Command::Container(c) => c.run(&cli.global).await,
            Command::Image(c) => c.run(&cli.global).await,
            Command::Chaos(c) => c.run(&cli.global).await,
            Command::Workload(c) => c.run(&cli.global).await,
            Command::Config(c) => c.run(&cli.global).await,
            Command::Demo(c) => c.run(&cli.global).await,
            Command::Keys(c) => c.run(&cli.global).await,
            Command::Completions(c) => c.run(command()),
            Command::Man(c) => c.run(command()),
        }
    });
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(2);
        }
    }
}
