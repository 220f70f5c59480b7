//! `bunker repair index|snapshots`: bring a damaged repository back to a
//! consistent state (the work is in `bunker_repo::repair`).

use anyhow::{bail, Context, Result};
use bunker_repo::repair::{self, RepairIndexOptions, RepairSnapshotsOptions};
use bunker_repo::snapshots::{self, SnapshotFilter};
use clap::{Args, Subcommand};

use crate::cli::GlobalOpts;
use crate::exit::Status;
use crate::progress::Reporter;
use crate::{output, repo};

const LONG_ABOUT: &str = "\
Repair a repository after data was lost, as restic's `repair` does. The usual order is:

  bunker check                         names what is lost
  bunker repair index                  the index matches the packs in storage again
  bunker repair snapshots --forget     snapshots stop referencing data that is gone
  bunker check                         clean

`repair index` reads every index file it can and the header of every pack the index does \
not describe correctly (every pack with --read-all-packs), writes a new index and only then \
removes the old index files. Packs no index listed are indexed again (their data is kept); \
packs the index lists but storage lacks are dropped from it.

`repair snapshots` rewrites every snapshot (or the ones given) so that it references only \
data the index has: files lose the blobs that are gone (and their size is corrected), \
directories whose tree cannot be read become empty, `irregular` nodes are removed. A changed \
snapshot is saved as a new snapshot tagged `repaired` whose `original` is the old one; \
--forget removes the old snapshots (and those whose root tree is unreadable). Run \
`repair index` first. Both take an exclusive lock (none with --dry-run).

`repair packs ID...` salvages the packs `check --read-data` found damaged: every intact blob \
is copied into a new pack, then the damaged packs are deleted and the index rewritten. The \
damaged blobs are gone; `repair snapshots --forget` then removes the references to them.";

const EXAMPLES: &str = "\
EXAMPLES:
    bunker repair index
    bunker repair index --read-all-packs
    bunker repair snapshots --dry-run
    bunker repair snapshots --forget
    bunker repair snapshots --forget 1a2b3c4d
    bunker repair packs 5e6f7a8b";

/// Rebuild the index, or remove references to lost data from snapshots
#[derive(Args, Debug)]
#[command(long_about = LONG_ABOUT, after_long_help = EXAMPLES)]
pub struct RepairArgs {
    #[command(subcommand)]
    pub what: RepairCommand,
}

#[derive(Subcommand, Debug)]
pub enum RepairCommand {
    /// Rebuild the index from the readable index files and the pack headers
    #[command(after_long_help = EXAMPLES)]
    Index {
        /// Read the header of every pack, not only of packs the index does not describe
        #[arg(long)]
        read_all_packs: bool,
        /// Only show what would be done
        #[arg(short = 'n', long)]
        dry_run: bool,
    },
    /// Copy the intact blobs of damaged packs into new packs, then delete the damaged packs
    #[command(after_long_help = EXAMPLES)]
    Packs {
        /// Packs to repair (ids or unique prefixes, as `check --read-data` names them)
        #[arg(value_name = "PACK", required = true)]
        packs: Vec<String>,
    },
    /// Rewrite snapshots so that they reference only data the index has
    #[command(after_long_help = EXAMPLES)]
    Snapshots {
        /// Remove the original snapshots (and those that cannot be repaired)
        #[arg(long)]
        forget: bool,
        /// Only show what would be done
        #[arg(short = 'n', long)]
        dry_run: bool,
        /// Snapshots to repair (all when none is given)
        #[arg(value_name = "SNAPSHOT")]
        snapshots: Vec<String>,
    },
}

pub fn run(g: &GlobalOpts, args: RepairArgs) -> Result<Status> {
    let r = repo::open(g)?;
    match args.what {
        RepairCommand::Index {
            read_all_packs,
            dry_run,
        } => {
            let _lock = if dry_run {
                None
            } else {
                Some(repo::lock(&r, true)?)
            };
            let reporter = Reporter::new(g, "packs", "repair index");
            let opts = RepairIndexOptions {
                read_all_packs,
                dry_run,
            };
            let report = repair::repair_index_unlocked(&r, &opts, &reporter)
                .context("repair index failed")?;
            reporter.finish();
            if g.json {
                output::json_line(&report)?;
            } else if !g.quiet {
                print!("{}", index_text(&report));
            }
        }
        RepairCommand::Packs { packs: specs } => {
            let _lock = repo::lock(&r, true)?;
            r.load_index().context("loading the index")?;
            let ids = repair::find_packs(&r, &specs)?;
            let reporter = Reporter::new(g, "packs", "repair packs");
            let report = repair::repair_packs_unlocked(&r, &ids, &reporter)
                .context("repair packs failed")?;
            reporter.finish();
            if g.json {
                output::json_line(&report)?;
            } else if !g.quiet {
                for p in &report.packs {
                    println!(
                        "pack {}: {} blobs salvaged, {} damaged (removed)",
                        p.pack, p.salvaged, p.lost
                    );
                }
                println!("wrote {} new packs; run `bunker repair snapshots --forget` if blobs were damaged", report.new_packs.len());
            }
        }
        RepairCommand::Snapshots {
            forget,
            dry_run,
            snapshots: specs,
        } => {
            let _lock = if dry_run {
                None
            } else {
                Some(repo::lock(&r, true)?)
            };
            r.load_index().context("loading the index")?;
            let mut ids = Vec::new();
            for spec in &specs {
                ids.push(snapshots::find(&r, spec, &SnapshotFilter::default())?.id);
            }
            let reporter = Reporter::new(g, "snapshots", "repair snapshots");
            let opts = RepairSnapshotsOptions {
                forget,
                dry_run,
                snapshots: ids,
            };
            let report = repair::repair_snapshots_unlocked(&r, &opts, &reporter)
                .context("repair snapshots failed")?;
            reporter.finish();
            if g.json {
                output::json_line(&report)?;
            } else if !g.quiet {
                print!("{}", snapshots_text(&report, forget));
            }
            if report.snapshots.iter().any(|s| s.repaired.is_none()) && !forget {
                bail!("some snapshots cannot be repaired (their root tree is lost): remove them with --forget");
            }
        }
    }
    Ok(Status::Success)
}

fn index_text(r: &repair::RepairIndexReport) -> String {
    let would = if r.dry_run { "would be " } else { "" };
    let mut s = format!(
        "read {} index files ({} unreadable), {} packs in storage, {} pack headers read\n",
        r.index_files_read,
        r.index_files_unreadable.len(),
        r.packs,
        r.packs_read
    );
    for p in &r.packs_added {
        s.push_str(&format!("pack {p}: not indexed before, {would}added\n"));
    }
    for p in &r.packs_missing {
        s.push_str(&format!(
            "pack {p}: listed but missing from storage, {would}dropped from the index\n"
        ));
    }
    for (p, why) in &r.packs_unreadable {
        s.push_str(&format!("pack {p}: cannot be indexed ({why})\n"));
    }
    if !r.dry_run {
        s.push_str(&format!(
            "wrote {} index files, removed {} old ones\n",
            r.index_files_written, r.index_files_removed
        ));
    }
    s
}

fn snapshots_text(r: &repair::RepairSnapshotsReport, forget: bool) -> String {
    let mut s = String::new();
    for snap in &r.snapshots {
        s.push_str(&format!("snapshot {}:\n", snap.original.short()));
        for c in &snap.changes {
            s.push_str(&format!("  {c}\n"));
        }
        match (&snap.repaired, r.dry_run, forget) {
            (Some(new), true, _) => s.push_str(&format!("  would save as {}\n", new.short())),
            (Some(new), false, _) => s.push_str(&format!("  saved as {}\n", new.short())),
            (None, true, true) | (None, false, true) => s.push_str(if r.dry_run {
                "  would be removed\n"
            } else {
                "  removed\n"
            }),
            (None, _, false) => s.push_str("  cannot be repaired; --forget removes it\n"),
        }
        if snap.removed && snap.repaired.is_some() {
            s.push_str("  original removed\n");
        }
    }
    s.push_str(&format!(
        "{} snapshots checked, {} {}\n",
        r.snapshots_checked,
        r.snapshots.len(),
        if r.dry_run {
            "would be changed"
        } else {
            "changed"
        }
    ));
    s
}
