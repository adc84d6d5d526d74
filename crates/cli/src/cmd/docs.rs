//! `bosun completions SHELL` and `bosun man`: shell completion scripts and man pages,
//! made from the very command line definition `--help` shows, so they never drift from
//! it.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use clap_complete::Shell;

/// Print a completion script for a shell.
#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  \
    source <(bosun completions bash)                                  # this shell only\n  \
    bosun completions bash > /usr/share/bash-completion/completions/bosun\n  \
    bosun completions zsh > /usr/local/share/zsh/site-functions/_bosun\n  \
    bosun completions fish > ~/.config/fish/completions/bosun.fish")]
pub struct CompletionsCmd {
    /// The shell to complete in.
    #[arg(value_enum)]
    shell: Shell,
}

impl CompletionsCmd {
    pub fn run(&self, mut command: clap::Command) -> anyhow::Result<i32> {
        let mut script = Vec::new();
        clap_complete::generate(self.shell, &mut command, "bosun", &mut script);
        out!(
            "{}",
            String::from_utf8(script).context("the completion script is not UTF-8")?
        );
        Ok(0)
    }
}

/// Print bosun's man page, or write one page per command into a folder.
#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  \
    bosun man | man -l -                      # read it now\n  \
    bosun man --dir /usr/local/share/man/man1 # install bosun.1, bosun-node.1, …")]
pub struct ManCmd {
    /// Write `bosun.1` and a page for each command (`bosun-node.1`, `bosun-exec.1`,
    /// `bosun-container-run.1`, …) into DIR, made if missing, instead of printing
    /// `bosun.1`.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

impl ManCmd {
    pub fn run(&self, command: clap::Command) -> anyhow::Result<i32> {
        let Some(dir) = &self.dir else {
            let mut page = Vec::new();
            clap_mangen::Man::new(command)
                .render(&mut page)
                .context("cannot render the man page")?;
            out!(
                "{}",
                String::from_utf8(page).context("the man page is not UTF-8")?
            );
            return Ok(0);
        };
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot make the folder {}", dir.display()))?;
        clap_mangen::generate_to(command, dir)
            .with_context(|| format!("cannot write the man pages into {}", dir.display()))?;
        let mut pages: Vec<String> = std::fs::read_dir(dir)
            .with_context(|| format!("cannot list {}", dir.display()))?
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|name| name.starts_with("bosun") && name.ends_with(".1"))
            .collect();
        pages.sort();
        outln!("wrote {} man pages into {}", pages.len(), dir.display());
        Ok(0)
    }
}
