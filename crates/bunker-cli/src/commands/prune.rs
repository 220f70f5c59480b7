//! `bunker prune`: free the space of data no snapshot references.

use std::sync::Arc;

use anyhow::{Context, Result};
use bunker_repo::prune::{self, MaxUnused, PruneOptions, PruneReport};
use bunker_repo::Repository;
use clap::Args;

use crate::cli::GlobalOpts;
use crate::exit::Status;
use crate::output;
use crate::progress::Reporter;
use crate::repo;

const LONG_ABOUT: &str = "\
Remove data that no snapshot references: pack files whose blobs are all unused are deleted, \
and packs that are partly used are repacked (their used blobs copied into new packs) until \
the unused space left is within --max-unused. Pack files no index lists (leftovers of \
interrupted backups) are deleted too.

prune refuses to run when any snapshot, index file or tree cannot be read, since a partial \
view could delete data a snapshot still needs. It holds an exclusive lock, and writes in a \
crash-safe order: new packs, then a new index superseding the old one, then deletion of the \
old index files, then deletion of packs. If it is interrupted, the repository stays \
consistent and running prune again finishes the job.";

const EXAMPLES: &str = "\
EXAMPLES:
    bunker prune
    bunker prune --dry-run
    bunker prune --max-unused 0%        # repack everything partly used
    bunker prune --max-unused 1G
    bunker prune --max-unused unlimited # only delete wholly unused packs";

/// Options shared by `prune` and `forget --prune`.
#[derive(Args, Debug, Clone)]
pub struct PruneFlags {
    /// Unused space to tolerate in partly-used packs: N%, a size (100M), or unlimited
    #[arg(long, value_name = "LIMIT", default_value = "5%", value_parser = parse_max_unused)]
    pub max_unused: MaxUnused,
    /// Only repack packs of tree blobs (metadata)
    #[arg(long)]
    pub repack_cacheable_only: bool,
}

fn parse_max_unused(s: &str) -> Result<MaxUnused, String> {
    MaxUnused::parse(s).map_err(|e| e.to_string())
}

/// Remove unreferenced data from the repository
#[derive(Args, Debug)]
#[command(long_about = LONG_ABOUT, after_long_help = EXAMPLES)]
pub struct PruneArgs {
    #[command(flatten)]
    pub flags: PruneFlags,
    /// Only show what would be done
    #[arg(short = 'n', long)]
    pub dry_run: bool,
}

pub fn text_report(r: &PruneReport) -> String {
    let would = if r.dry_run { "would " } else { "" };
    let mut s = String::new();
    s.push_str(&format!(
        "{} snapshots, {} used blobs ({})\n",
        r.snapshots,
        r.used_blobs,
        output::bytes(r.used_bytes)
    ));
    s.push_str(&format!(
        "unused: {} before, {} after\n",
        output::bytes(r.unused_bytes_before),
        output::bytes(r.unused_bytes_after)
    ));
    let (repacked, removed) = if r.dry_run {
        ("would be repacked", "would be removed")
    } else {
        ("repacked", "removed")
    };
    s.push_str(&format!(
        "packs: {} indexed, {} kept, {} {repacked}, {} {removed}, {} unreferenced {removed}\n",
        r.packs_total, r.packs_kept, r.packs_repacked, r.packs_removed, r.packs_unreferenced
    ));
    if r.packs_missing_unused > 0 {
        s.push_str(&format!(
            "{} indexed packs are missing but hold no used data; {would}drop them from the index\n",
            r.packs_missing_unused
        ));
    }
    s.push_str(&format!(
        "{}free {} (repacking {})\n",
        if r.dry_run { "would " } else { "" },
        output::bytes(r.bytes_removed),
        output::bytes(r.bytes_repacked)
    ));
    if !r.dry_run {
        s.push_str(&format!(
            "wrote {} new packs and {} index files, removed {} old index files\n",
            r.new_packs, r.index_files_written, r.index_files_removed
        ));
    }
    s
}

/// Prune with the caller's lock held (or none in a dry run).
pub fn run_locked(
    g: &GlobalOpts,
    r: &Arc<Repository>,
    flags: &PruneFlags,
    dry_run: bool,
) -> Result<PruneReport> {
    let opts = PruneOptions {
        max_unused: flags.max_unused,
        dry_run,
        repack_cacheable_only: flags.repack_cacheable_only,
        crash_after: None,
    }
    .with_crash_knob_from_env();
    let reporter = Reporter::new(g, "packs", "pruning");
    let report = prune::prune_unlocked(r, &opts, &reporter).context("prune failed")?;
    reporter.finish();
    if g.json {
        output::json_line(&report)?;
    } else if !g.quiet {
        print!("{}", text_report(&report));
    }
    Ok(report)
}

pub fn run(g: &GlobalOpts, args: PruneArgs) -> Result<Status> {
    let r = repo::open(g)?;
    let _lock = if args.dry_run {
        None
    } else {
        Some(repo::lock(&r, true)?)
    };
    run_locked(g, &r, &args.flags, args.dry_run)?;
    Ok(Status::Success)
}
