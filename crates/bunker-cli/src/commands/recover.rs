//! `bunker recover`: a snapshot of every tree no snapshot reaches any more.

use anyhow::{Context, Result};
use clap::Args;

use crate::cli::GlobalOpts;
use crate::exit::Status;
use crate::{output, repo};

const LONG_ABOUT: &str = "\
Build a new snapshot from all directory trees in the repository that no snapshot refers \
to: after a snapshot was forgotten by mistake (before `prune` removed its data), or its \
snapshot file was lost. The new snapshot has the path `/recover` and one directory per \
lost tree, named by the tree's short id; restore or browse it like any snapshot.

--dry-run only lists the lost trees.";

const EXAMPLES: &str = "\
EXAMPLES:
    bunker recover --dry-run
    bunker recover && bunker ls latest";

/// Recover data of forgotten snapshots (before prune)
#[derive(Args, Debug)]
#[command(long_about = LONG_ABOUT, after_long_help = EXAMPLES)]
pub struct RecoverArgs {
    /// Only report the lost trees; write nothing
    #[arg(short = 'n', long)]
    pub dry_run: bool,
}

pub fn run(g: &GlobalOpts, args: RecoverArgs) -> Result<Status> {
    let r = repo::open(g)?;
    let _lock = repo::lock(&r, false)?;
    r.load_index().context("loading the index")?;
    let rec = bunker_repo::recover::recover(&r, args.dry_run).context("recovering trees")?;
    if g.json {
        output::json_line(&rec)?;
        return Ok(Status::Success);
    }
    if rec.roots.is_empty() {
        println!("no lost trees: every tree belongs to a snapshot");
        return Ok(Status::Success);
    }
    println!("found {} lost root tree(s):", rec.roots.len());
    for t in &rec.roots {
        println!("  {t}");
    }
    if let Some(id) = rec.snapshot {
        println!("saved new snapshot {}", id.short());
    }
    Ok(Status::Success)
}
