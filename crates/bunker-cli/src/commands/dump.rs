//! `bunker dump`: write a file (or a directory as tar) from a snapshot to stdout.

use std::io::Write;

use anyhow::{Context, Result};
use bunker_repo::{dump, snapshots, RepoError};
use clap::Args;

use super::config::ItemArgs;
use super::FilterArgs;
use crate::cli::GlobalOpts;
use crate::exit::{NotDumpable, Status};
use crate::repo;

const LONG_ABOUT: &str = "\
Write the contents of FILE in a snapshot to standard output. FILE is the absolute path as \
stored in the snapshot (see `bunker ls`). When FILE is a directory (or `/`), a tar stream of \
everything below it is written instead, byte for byte as `restic dump` writes it: files, \
directories and symlinks (not fifos, devices or sockets), mtimes rounded to the second, \
extended attributes as SCHILY.xattr PAX records.

Exit status 2 when FILE is not in the snapshot or is neither a file nor a directory (as \
restic); 3 when entries with unsafe names were left out of the tar stream (each named in a \
warning).";

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
    #[command(flatten)]
    pub item: ItemArgs,
}

pub fn run(g: &GlobalOpts, args: DumpArgs) -> Result<Status> {
    let mut filter = args.filter.filter();
    let r = repo::open_for(g, &args.item, &mut filter)?;
    let _lock = repo::lock_read(&r)?;
    r.load_index().context("loading the index")?;
    let snap = snapshots::find(&r, &args.snapshot, &filter)?;
    crate::audit_trail::snapshots([&snap.id]);
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
    let report = match dump::dump(&r, &snap, &args.file, &mut out) {
        Ok(report) => report,
        Err(e @ (RepoError::PathNotInSnapshot(_) | RepoError::WrongNodeType(_))) => {
            return Err(anyhow::Error::new(e).context(NotDumpable));
        }
        Err(e) => return Err(e).with_context(|| format!("dumping {}", args.file)),
    };
    out.flush().context("writing to stdout")?;
    if report.left_out.is_empty() {
        Ok(Status::Success)
    } else {
        tracing::warn!(
            "{} entr{} left out of the archive",
            report.left_out.len(),
            if report.left_out.len() == 1 {
                "y"
            } else {
                "ies"
            }
        );
        Ok(Status::Incomplete)
    }
}
