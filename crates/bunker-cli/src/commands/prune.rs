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

--max-repack-size SIZE bounds the total size of the pack files repacked in one run (500M, \
2G, or bytes): packs beyond the budget are left for a later run, which frees the rest. \
Deleting wholly unused packs is not repacking and always happens. The report says when the \
limit stopped repacking (`repack_limited` in --json).

Small packs are repacked whatever --max-unused says, merging the many small packs of many \
small backups into full ones: small packs that are partly used always, wholly used ones \
when there are at least 10 of them (as restic). Without --repack-small, small means below \
4% of the target pack size (--pack-size); --repack-small raises that to 80%. \
--max-repack-size applies to them too.

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
    bunker prune --max-unused unlimited # only delete wholly unused packs
    bunker prune --max-repack-size 2G   # repack at most 2 GiB of packs this run
    bunker prune --repack-small         # merge small packs into full ones
    bunker forget --keep-last 7 --prune --max-repack-size 500M";

/// Options shared by `prune` and `forget --prune`.
#[derive(Args, Debug, Clone)]
pub struct PruneFlags {
    /// Unused space to tolerate in partly-used packs: N%, a size (100M), or unlimited
    #[arg(long, value_name = "LIMIT", default_value = "5%", value_parser = parse_max_unused)]
    pub max_unused: MaxUnused,
    /// Only repack packs of tree blobs (metadata)
    #[arg(long)]
    pub repack_cacheable_only: bool,
    /// Repack at most SIZE of pack files in this run (500M, 2G); the rest waits for a later run
    #[arg(long, value_name = "SIZE", value_parser = parse_max_repack_size)]
    pub max_repack_size: Option<u64>,
    /// Also repack packs smaller than 80% of the target pack size, merging them into full ones
    #[arg(long)]
    pub repack_small: bool,
}

fn parse_max_unused(s: &str) -> Result<MaxUnused, String> {
    MaxUnused::parse(s).map_err(|e| e.to_string())
}

fn parse_max_repack_size(s: &str) -> Result<u64, String> {
    // clap names the flag and the value already; keep only what is expected.
    prune::parse_max_repack_size(s)
        .map_err(|_| "expected a size such as 500M, 2G or 1048576 (bytes)".to_string())
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
    if r.packs_repacked_small > 0 {
        s.push_str(&format!(
            "{} of the repacked packs {} small (--repack-small)\n",
            r.packs_repacked_small,
            if r.dry_run { "would be" } else { "were" }
        ));
    }
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
    if r.temp_files_removed > 0 || r.temp_files_kept > 0 {
        s.push_str(&format!(
            "temporary files of interrupted writers: {} {removed} ({}), {} kept (modified within the last hour)\n",
            r.temp_files_removed,
            output::bytes(r.temp_bytes_removed),
            r.temp_files_kept
        ));
    }
    if r.repack_limited {
        s.push_str(&format!(
            "{} repacking at --max-repack-size; run prune again to free the rest\n",
            if r.dry_run { "would stop" } else { "stopped" }
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
        max_repack_size: flags.max_repack_size,
        repack_small: flags.repack_small,
        crash_after: None,
        cancel: Some(crate::interrupt::token()),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_states_the_small_pack_rules_of_the_library() {
        assert!(LONG_ABOUT.contains(&format!("at least {} of them", prune::MIN_SMALL_PACKS)));
        assert_eq!(prune::small_pack_limit(100), 80, "80% in the help text");
        assert_eq!(prune::tiny_pack_limit(100), 4, "4% in the help text");
    }

    #[test]
    fn report_says_when_the_repack_limit_stopped_repacking() {
        let mut r = PruneReport {
            packs_repacked: 3,
            packs_repacked_small: 2,
            repack_limited: true,
            ..Default::default()
        };
        let text = text_report(&r);
        assert!(text.contains(
            "stopped repacking at --max-repack-size; run prune again to free the rest\n"
        ));
        assert!(
            text.contains("2 of the repacked packs were small"),
            "{text}"
        );
        r.dry_run = true;
        assert!(text_report(&r).contains("would stop repacking at --max-repack-size"));
        r.repack_limited = false;
        assert!(!text_report(&r).contains("--max-repack-size"));
    }
}
