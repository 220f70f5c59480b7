//! `bunker rewrite`: remove paths from existing snapshots.

use std::path::PathBuf;

use anyhow::{Context, Result};
use bunker_repo::rewrite::{self, RewriteOptions};
use bunker_repo::snapshots;
use clap::Args;

use super::FilterArgs;
use crate::cli::GlobalOpts;
use crate::exit::Status;
use crate::{output, repo};

const LONG_ABOUT: &str = "\
Remove files and directories from existing snapshots: a leaked secret, or a huge file \
backed up by mistake. Patterns are restic's exclude patterns, matched against the paths \
inside the snapshot (as `bunker ls` shows them). Without SNAPSHOT every snapshot matching \
--host/--tag/--path is rewritten.

Each changed snapshot is saved as a new snapshot whose `original` is the old id. Without \
--forget the old snapshot stays and the new one is tagged `rewrite`; with --forget the old \
snapshot is removed (the data only it used is freed by the next `bunker prune`). \
Snapshots in which nothing matches are left alone. --dry-run reports what would be \
removed and writes nothing.";

const EXAMPLES: &str = "\
EXAMPLES:
    bunker rewrite --exclude /home/alice/.aws/credentials --dry-run
    bunker rewrite --exclude '*.iso' --forget && bunker prune
    bunker rewrite --iexclude-file secrets.txt 4f2a9c1e";

/// Remove paths from existing snapshots
#[derive(Args, Debug)]
#[command(long_about = LONG_ABOUT, after_long_help = EXAMPLES)]
pub struct RewriteArgs {
    /// Snapshots to rewrite (ids, prefixes or `latest`; default: all matching the filter)
    #[arg(value_name = "SNAPSHOT")]
    pub snapshots: Vec<String>,
    /// Remove paths matching PATTERN (repeatable)
    #[arg(short = 'e', long = "exclude", value_name = "PATTERN")]
    pub excludes: Vec<String>,
    /// Like --exclude, ignoring case (repeatable)
    #[arg(long = "iexclude", value_name = "PATTERN")]
    pub iexcludes: Vec<String>,
    /// Read --exclude patterns from FILE (repeatable)
    #[arg(long = "exclude-file", value_name = "FILE")]
    pub exclude_files: Vec<PathBuf>,
    /// Read --iexclude patterns from FILE (repeatable)
    #[arg(long = "iexclude-file", value_name = "FILE")]
    pub iexclude_files: Vec<PathBuf>,
    /// Remove the old snapshots instead of tagging the new ones `rewrite`
    #[arg(long)]
    pub forget: bool,
    /// Report what would change; write nothing
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub filter: FilterArgs,
}

pub fn run(g: &GlobalOpts, args: RewriteArgs) -> Result<Status> {
    let opts = RewriteOptions {
        excludes: args.excludes,
        iexcludes: args.iexcludes,
        exclude_files: args.exclude_files,
        iexclude_files: args.iexclude_files,
        forget: args.forget,
        dry_run: args.dry_run,
    };
    let r = repo::open(g)?;
    let _lock = repo::lock(&r, args.forget && !args.dry_run)?;
    r.load_index().context("loading the index")?;
    let targets = snapshots::select(&r, &args.snapshots, &args.filter.filter())?;
    let done = rewrite::rewrite(&r, &targets, &opts).context("rewriting snapshots")?;
    if g.json {
        output::json_line(&done)?;
        return Ok(Status::Success);
    }
    let mut changed = 0;
    for d in &done {
        if !d.modified {
            continue;
        }
        changed += 1;
        if !g.quiet {
            println!("snapshot {}:", d.old.short());
            for p in &d.excluded {
                println!("  excluding {p}");
            }
            match (d.new, args.dry_run) {
                (_, true) => println!("  would save a new snapshot"),
                (Some(new), false) => println!("  saved new snapshot {}", new.short()),
                (None, false) => {}
            }
            if d.forgot_old {
                let verb = if args.dry_run {
                    "would remove"
                } else {
                    "removed"
                };
                println!("  {verb} old snapshot {}", d.old.short());
            }
        }
    }
    if !g.quiet {
        let verb = if args.dry_run {
            "would modify"
        } else {
            "modified"
        };
        println!("{verb} {changed} of {} snapshots", done.len());
    }
    Ok(Status::Success)
}
