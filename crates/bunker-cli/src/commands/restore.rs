//! `bunker restore`: restore a snapshot (or part of it) into a directory.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use bunker_repo::restore::{self, Overwrite, RestoreOptions, RestoreSummary};
use bunker_repo::snapshots;
use clap::Args;
use serde::Serialize;

use super::config::ItemArgs;
use super::{split_snapshot_spec, FilterArgs};
use crate::cli::GlobalOpts;
use crate::exit::Status;
use crate::progress::Reporter;
use crate::{output, repo};

const LONG_ABOUT: &str = "\
Restore a snapshot into the --target directory. As with restic, the snapshot's absolute \
paths are recreated below the target: /home/a/x is restored to TARGET/home/a/x. With \
SNAPSHOT:SUBPATH only that directory of the snapshot is restored, its contents directly \
into the target (for a single file use --include PATH, or `bunker dump`).

--include/--exclude select what is restored (restic's patterns, matched against the path \
in the snapshot; parents of included files are created); --iinclude/--iexclude are the \
case-insensitive forms. --verify reads every restored file back and checks it against the \
repository.

Existing entries are left alone unless --overwrite is given: they are skipped, reported, and \
the exit status is 3. --overwrite MODE takes restic's modes: `if-changed` (the default of a \
bare --overwrite) rewrites a file only when its size or modification time differs from the \
snapshot's and then its content does too; `always` compares the content of every existing \
file; `if-newer` replaces only entries older than the snapshot's; `never` is the default. \
Unchanged files only get the snapshot's metadata. A file is written under a temporary name \
and renamed into place when complete: a restore that fails (a damaged or missing pack) \
leaves the old file or nothing, never a partial one, and reports it.

--delete removes entries of the target that are not in the snapshot (only those the \
include/exclude patterns select; never anything outside the target); check with \
--dry-run first. Directories that existed before and only contain the restored paths \
(/home when /home/alice was backed up) keep their times and modes, so restoring into / \
does not reset them.

The snapshot's contents are treated as untrusted: names with `/`, `..` and the like, and \
symlinked parent directories, never cause anything outside the target to be touched.";

const EXAMPLES: &str = "\
EXAMPLES:
    bunker restore latest --target /tmp/restore
    bunker restore 4f2a9c1e:/home/alice --target /home/alice --include '*.odt'
    bunker restore latest --host db1 --tag daily --target /srv/restore --verify
    bunker restore latest --include /etc/nginx/nginx.conf --target /tmp/r
    bunker restore latest:/srv/www --target /srv/www --overwrite --delete --dry-run";

/// Restore a snapshot into a directory
#[derive(Args, Debug)]
#[command(long_about = LONG_ABOUT, after_long_help = EXAMPLES)]
pub struct RestoreArgs {
    /// Snapshot id (or prefix) or `latest`, optionally `:SUBPATH`
    #[arg(value_name = "SNAPSHOT[:SUBPATH]")]
    pub snapshot: String,
    /// Directory to restore into (created if missing)
    #[arg(short = 't', long, value_name = "DIR")]
    pub target: PathBuf,
    /// Restore only paths matching PATTERN (repeatable)
    #[arg(short = 'i', long = "include", value_name = "PATTERN")]
    pub include: Vec<String>,
    /// Do not restore paths matching PATTERN (repeatable)
    #[arg(short = 'e', long = "exclude", value_name = "PATTERN")]
    pub exclude: Vec<String>,
    /// Like --include, case-insensitive (repeatable)
    #[arg(long = "iinclude", value_name = "PATTERN")]
    pub iinclude: Vec<String>,
    /// Like --exclude, case-insensitive (repeatable)
    #[arg(long = "iexclude", value_name = "PATTERN")]
    pub iexclude: Vec<String>,
    /// Replace existing entries that differ: always, if-changed (a bare
    /// --overwrite), if-newer or never (the default)
    #[arg(long, value_name = "MODE", num_args = 0..=1, default_missing_value = "if-changed",
          value_parser = parse_overwrite)]
    pub overwrite: Option<Overwrite>,
    /// Delete entries of the target that are not in the snapshot
    #[arg(long)]
    pub delete: bool,
    /// Read restored files back and verify them
    #[arg(long)]
    pub verify: bool,
    /// Show what would be restored; change nothing
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Write zeros instead of leaving holes in restored files
    #[arg(long)]
    pub no_sparse: bool,
    #[command(flatten)]
    pub filter: FilterArgs,
    #[command(flatten)]
    pub item: ItemArgs,
}

fn parse_overwrite(s: &str) -> std::result::Result<Overwrite, String> {
    s.parse::<Overwrite>()
        .map_err(|e| format!("{e}; put the snapshot before --overwrite, or write --overwrite=MODE"))
}

/// Skipped paths listed on standard error (all are counted).
const MAX_SHOWN_SKIPS: usize = 20;

/// restic's restore JSON `summary` (plus bunker's counters).
#[derive(Serialize)]
struct JsonSummary<'a> {
    message_type: &'static str,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    dry_run: bool,
    seconds_elapsed: u64,
    total_files: u64,
    files_restored: u64,
    files_skipped: u64,
    files_deleted: u64,
    total_bytes: u64,
    bytes_restored: u64,
    error_count: usize,
    snapshot_id: String,
    #[serde(flatten)]
    detail: &'a RestoreSummary,
}

fn items(s: &RestoreSummary) -> u64 {
    s.files + s.dirs + s.links + s.hardlinks + s.specials
}

/// restic's `files_skipped`: existing entries left as they were.
fn skipped(s: &RestoreSummary) -> u64 {
    s.skipped_existing + s.unchanged + s.kept_newer
}

pub fn run(g: &GlobalOpts, args: RestoreArgs) -> Result<Status> {
    let (spec, sub_path) = split_snapshot_spec(&args.snapshot);
    let opts = RestoreOptions {
        target: args.target.clone(),
        include: args.include,
        exclude: args.exclude,
        iinclude: args.iinclude,
        iexclude: args.iexclude,
        overwrite: args.overwrite.unwrap_or_default(),
        delete: args.delete,
        verify: args.verify,
        dry_run: args.dry_run,
        sub_path: sub_path.map(str::to_string),
        sparse: !args.no_sparse,
        ..RestoreOptions::default()
    };
    let start = Instant::now();
    let mut filter = args.filter.filter();
    let r = repo::open_for(g, &args.item, &mut filter)?;
    let _lock = repo::lock_read(&r)?;
    r.load_index().context("loading the index")?;
    let snap = snapshots::find(&r, spec, &filter)?;
    crate::audit_trail::snapshots([&snap.id]);
    if !g.json && !g.quiet {
        println!(
            "restoring snapshot {} of {:?} at {} by {}@{} to {}",
            snap.id.short(),
            snap.snapshot.paths,
            output::local_time(&snap.snapshot.time),
            snap.snapshot.username,
            snap.snapshot.hostname,
            args.target.display()
        );
    }
    let reporter = Reporter::new(g, "files", "restore");
    let summary = restore::restore(&r, &snap, &opts, &reporter).context("restore failed")?;
    reporter.finish();
    let elapsed = start.elapsed();
    if g.json {
        output::json_line(&JsonSummary {
            message_type: "summary",
            dry_run: args.dry_run,
            seconds_elapsed: elapsed.as_secs(),
            total_files: items(&summary) + skipped(&summary),
            files_restored: items(&summary),
            files_skipped: skipped(&summary),
            files_deleted: summary.deleted,
            total_bytes: summary.bytes,
            bytes_restored: summary.bytes,
            error_count: summary.errors.len(),
            snapshot_id: snap.id.to_string(),
            detail: &summary,
        })?;
    } else {
        // Errors were already shown as they happened (progress warnings).
        if !summary.errors.is_empty() {
            eprintln!(
                "warning: {} item(s) could not be restored",
                summary.errors.len()
            );
        }
        if summary.skipped_existing > 0 {
            for p in summary.skipped_paths.iter().take(MAX_SHOWN_SKIPS) {
                eprintln!("skipped existing: {p}");
            }
            if summary.skipped_existing > MAX_SHOWN_SKIPS as u64 {
                eprintln!(
                    "... and {} more",
                    summary.skipped_existing - MAX_SHOWN_SKIPS as u64
                );
            }
            eprintln!(
                "warning: {} existing item(s) were not overwritten (use --overwrite to replace them)",
                summary.skipped_existing
            );
        }
        if summary.kept_newer > 0 {
            eprintln!(
                "note: {} existing item(s) as new as or newer than the snapshot's were kept (--overwrite if-newer)",
                summary.kept_newer
            );
        }
        if args.dry_run || g.verbose > 0 {
            for p in summary.deleted_paths.iter() {
                println!(
                    "{} {p}",
                    if args.dry_run {
                        "would delete"
                    } else {
                        "deleted"
                    }
                );
            }
        }
        if !g.quiet {
            let verb = if args.dry_run {
                "Would restore"
            } else {
                "Restored"
            };
            println!(
                "Summary: {verb} {} files/dirs ({}) in {}",
                items(&summary),
                output::bytes(summary.bytes),
                output::duration(elapsed)
            );
            if summary.unchanged > 0 {
                println!(
                    "{} existing file(s) already matched the snapshot",
                    summary.unchanged
                );
            }
            if summary.deleted > 0 {
                let verb = if args.dry_run {
                    "would delete"
                } else {
                    "deleted"
                };
                println!("{verb} {} item(s) not in the snapshot", summary.deleted);
            }
            if args.verify {
                println!("verified {} files", summary.verified_files);
            }
        }
    }
    if summary.errors.is_empty() && summary.skipped_existing == 0 {
        Ok(Status::Success)
    } else {
        Ok(Status::Incomplete)
    }
}
