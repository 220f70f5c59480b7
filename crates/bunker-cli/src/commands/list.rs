//! `bunker list`: ids of repository files, or all blobs.

use anyhow::{Context, Result};
use bunker_repo::list::{self, ListKind};
use clap::Args;

use crate::cli::GlobalOpts;
use crate::exit::Status;
use crate::{output, repo};

const LONG_ABOUT: &str = "\
List the ids of the repository's files of one kind: packs, index, snapshots, keys or \
locks, one per line; or every blob of the index as `data ID` / `tree ID` lines. For \
scripts and troubleshooting; --json prints an array (of ids, or of {type, id} objects \
for blobs). `list locks` takes no lock itself.";

const EXAMPLES: &str = "\
EXAMPLES:
    bunker list snapshots
    bunker list blobs | grep -c '^tree'
    bunker list locks --json";

/// List ids of repository files or blobs
#[derive(Args, Debug)]
#[command(long_about = LONG_ABOUT, after_long_help = EXAMPLES)]
pub struct ListArgs {
    /// blobs, packs, index, snapshots, keys or locks
    #[arg(value_name = "KIND", value_parser = parse_kind)]
    pub kind: ListKind,
}

fn parse_kind(s: &str) -> Result<ListKind, String> {
    s.parse().map_err(|e: bunker_repo::RepoError| e.to_string())
}

pub fn run(g: &GlobalOpts, args: ListArgs) -> Result<Status> {
    let r = repo::open(g)?;
    let _lock = match args.kind {
        ListKind::Locks => None,
        _ => Some(repo::lock(&r, false)?),
    };
    let Some(t) = args.kind.file_type() else {
        r.load_index().context("loading the index")?;
        let blobs = list::blobs(&r);
        if g.json {
            output::json_line(&blobs)?;
        } else {
            for b in &blobs {
                println!("{} {}", b.blob_type, b.id);
            }
        }
        return Ok(Status::Success);
    };
    let names = list::files(&r, t).context("listing files")?;
    if g.json {
        output::json_line(&names)?;
    } else {
        for n in &names {
            println!("{n}");
        }
    }
    Ok(Status::Success)
}
