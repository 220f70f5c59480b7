//! `bunker generate`: shell completions and manual pages.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Command, CommandFactory};
use clap_complete::Shell;

use crate::cli::{Cli, GlobalOpts};
use crate::exit::Status;

const LONG_ABOUT: &str = "\
Write shell completion scripts (bash, zsh, fish) and manual pages (one per command, \
section 1: bunker.1, bunker-backup.1, bunker-key-add.1, ...). A completion FILE of `-` \
means standard output. Needs no repository.";

const EXAMPLES: &str = "\
EXAMPLES:
    bunker generate --bash-completion /etc/bash_completion.d/bunker
    bunker generate --zsh-completion ~/.zfunc/_bunker --fish-completion -
    bunker generate --man /usr/local/share/man/man1";

/// Generate shell completions and manual pages
#[derive(Args, Debug)]
#[command(long_about = LONG_ABOUT, after_long_help = EXAMPLES)]
pub struct GenerateArgs {
    /// Write the bash completion script to FILE
    #[arg(long, value_name = "FILE")]
    pub bash_completion: Option<PathBuf>,
    /// Write the zsh completion script to FILE
    #[arg(long, value_name = "FILE")]
    pub zsh_completion: Option<PathBuf>,
    /// Write the fish completion script to FILE
    #[arg(long, value_name = "FILE")]
    pub fish_completion: Option<PathBuf>,
    /// Write manual pages into DIR (created if missing)
    #[arg(long, value_name = "DIR")]
    pub man: Option<PathBuf>,
}

fn write_to(path: &Path, bytes: &[u8]) -> Result<()> {
    if path == Path::new("-") {
        return std::io::stdout()
            .write_all(bytes)
            .context("writing to stdout");
    }
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

fn completion(shell: Shell, path: &Path) -> Result<()> {
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "bunker", &mut buf);
    write_to(path, &buf)
}

/// One page per command and subcommand, named `bunker-sub-sub.1`.
fn man_pages(cmd: &Command, name: &str, dir: &Path, count: &mut usize) -> Result<()> {
    // clap names are `&'static str` without its `string` feature; a few
    // dozen short names live until the process exits.
    let page = cmd
        .clone()
        .name(&*Box::leak(name.to_string().into_boxed_str()));
    let mut buf = Vec::new();
    clap_mangen::Man::new(page)
        .render(&mut buf)
        .with_context(|| format!("rendering the manual page of {name}"))?;
    write_to(&dir.join(format!("{name}.1")), &buf)?;
    *count += 1;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        man_pages(sub, &format!("{name}-{}", sub.get_name()), dir, count)?;
    }
    Ok(())
}

pub fn run(g: &GlobalOpts, args: GenerateArgs) -> Result<Status> {
    let shells = [
        (Shell::Bash, &args.bash_completion),
        (Shell::Zsh, &args.zsh_completion),
        (Shell::Fish, &args.fish_completion),
    ];
    if shells.iter().all(|(_, p)| p.is_none()) && args.man.is_none() {
        bail!(
            "nothing to do: give --bash-completion, --zsh-completion, --fish-completion or --man"
        );
    }
    for (shell, path) in shells {
        if let Some(path) = path {
            completion(shell, path)?;
        }
    }
    if let Some(dir) = &args.man {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut root = Cli::command();
        root.build();
        let mut count = 0;
        man_pages(&root, "bunker", dir, &mut count)?;
        if !g.quiet && !g.json {
            eprintln!("wrote {count} manual pages to {}", dir.display());
        }
    }
    Ok(Status::Success)
}
