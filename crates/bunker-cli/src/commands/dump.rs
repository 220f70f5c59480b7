//! `bunker dump`: write a file (or a directory as tar) from a snapshot to stdout.

use std::io::Write;

use anyhow::{Context, Result};
use bunker_repo::{dump, snapshots};
use clap::Args;

use super::FilterArgs;
use crate::cli::GlobalOpts;
use crate::exit::Status;
use crate::repo;

const LONG_ABOUT: &str = "\
Write the contents of FILE in a snapshot to standard output. FILE is the absolute path as \
stored in the snapshot (see `bunker ls`). When FILE is a directory (or `/`), a tar stream of \
everything below it is written instead.";

const EXAMPLES: &str = "\
EXAMPLES:
    bunker dump latest /etc/fstab
    bunker dump 4f2a9c1e /home/alice/docs > docs.tar
    bunker dump latest /db.sql | psql mydb";

/// Print a file (or a directory as tar) from a snapshot
#[derive(Args, Debug)]
#[command(long_about = LONG_ABOUT, after_long_help = EXAMPLES)]
pub struct DumpArgs {
    /// Snapshot id (or prefix) or `latest`
    pub snapshot: String,
    /// Path of the file or directory in the snapshot
    pub file: String,
    #[command(flatten)]
    pub filter: FilterArgs,
}

pub fn run(g: &GlobalOpts, args: DumpArgs) -> Result<Status> {
    let r = repo::open(g)?;
    let _lock = repo::lock_read(&r)?;
    r.load_index().context("loading the index")?;
    let snap = snapshots::find(&r, &args.snapshot, &args.filter.filter())?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
    dump::dump(&r, &snap, &args.file, &mut out)
        .with_context(|| format!("dumping {}", args.file))?;
    out.flush().context("writing to stdout")?;
    Ok(Status::Success)
}
