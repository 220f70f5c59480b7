//! `bunker unlock`: remove stale locks.

use anyhow::{Context, Result};
use clap::Args;
use serde::Serialize;

use crate::cli::GlobalOpts;
use crate::exit::Status;
use crate::{output, repo};

const LONG_ABOUT: &str = "\
Remove stale locks: locks not refreshed for 30 minutes, and locks of processes on this host \
that no longer run. With --remove-all every lock is removed, including those of running \
processes: only use it when you are sure no other bunker or restic process uses the \
repository.";

const EXAMPLES: &str = "\
EXAMPLES:
    bunker unlock
    bunker unlock --remove-all";

/// Remove stale (or all) locks
#[derive(Args, Debug)]
#[command(long_about = LONG_ABOUT, after_long_help = EXAMPLES)]
pub struct UnlockArgs {
    /// Remove all locks, even those of running processes
    #[arg(long)]
    pub remove_all: bool,
}

#[derive(Serialize)]
struct Unlocked {
    message_type: &'static str,
    removed: usize,
}

pub fn run(g: &GlobalOpts, args: UnlockArgs) -> Result<Status> {
    let r = repo::open(g)?;
    let n = bunker_repo::lock::unlock(&r, args.remove_all).context("removing locks")?;
    if g.json {
        output::json_line(&Unlocked {
            message_type: "unlocked",
            removed: n,
        })?;
    } else if !g.quiet {
        println!("removed {n} lock(s)");
    }
    Ok(Status::Success)
}
