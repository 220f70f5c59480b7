//! `bunker diff`: show what changed between two snapshots.

use anyhow::{Context, Result};
use bunker_repo::diff::{self, DiffCounts, DiffStats};
use bunker_repo::snapshots::{self, SnapshotFilter};
use clap::Args;
use serde::Serialize;

use crate::cli::GlobalOpts;
use crate::exit::Status;
use crate::{output, repo};

const LONG_ABOUT: &str = "\
Show the differences between two snapshots, one path per line with restic's symbols:
  +  added          -  removed
  M  content modified
  T  type changed (e.g. file replaced by a directory); TU with --metadata
  U  metadata changed (shown with --metadata): any of mode, times, owner, size, inode, link \
count, extended attributes, or a directory's contents, as restic compares nodes
followed by statistics of added and removed files, directories and blobs. With --json each \
change is a `change` message and the statistics a final `statistics` message.";

const EXAMPLES: &str = "\
EXAMPLES:
    bunker diff 4f2a9c1e 7d3b0a55
    bunker diff --metadata 4f2a latest
    bunker diff --json 4f2a latest | jq 'select(.message_type == \"change\")'";

/// Show differences between two snapshots
#[derive(Args, Debug)]
#[command(long_about = LONG_ABOUT, after_long_help = EXAMPLES)]
pub struct DiffArgs {
    /// The older snapshot (id, prefix or `latest`)
    pub first: String,
    /// The newer snapshot (id, prefix or `latest`)
    pub second: String,
    /// Also list entries whose metadata changed
    #[arg(long)]
    pub metadata: bool,
    #[command(flatten)]
    pub item: super::config::ItemArgs,
}

#[derive(Serialize)]
struct Change<'a> {
    message_type: &'static str,
    path: &'a str,
    modifier: &'static str,
}

#[derive(Serialize)]
struct Statistics<'a> {
    message_type: &'static str,
    source_snapshot: String,
    target_snapshot: String,
    #[serde(flatten)]
    stats: &'a DiffStats,
}

fn counts_text(s: &DiffStats) -> String {
    let row = |label: &str, a: u64, r: u64| format!("{label:<16}{a:>5} new, {r:>5} removed\n");
    let (a, r): (&DiffCounts, &DiffCounts) = (&s.added, &s.removed);
    let mut out = String::new();
    out.push_str(&format!(
        "{:<16}{:>5} new, {:>5} removed, {:>5} changed\n",
        "Files:", a.files, r.files, s.changed_files
    ));
    out.push_str(&row("Dirs:", a.dirs, r.dirs));
    out.push_str(&row("Others:", a.others, r.others));
    out.push_str(&row("Data Blobs:", a.data_blobs, r.data_blobs));
    out.push_str(&row("Tree Blobs:", a.tree_blobs, r.tree_blobs));
    out.push_str(&format!("  Added:   {}\n", output::bytes(a.bytes)));
    out.push_str(&format!("  Removed: {}\n", output::bytes(r.bytes)));
    out
}

pub fn run(g: &GlobalOpts, args: DiffArgs) -> Result<Status> {
    let mut any = SnapshotFilter::default();
    let r = repo::open_for(g, &args.item, &mut any)?;
    let _lock = repo::lock_read(&r)?;
    r.load_index().context("loading the index")?;
    let a = snapshots::find(&r, &args.first, &any)?;
    let b = snapshots::find(&r, &args.second, &any)?;
    let report = diff::diff(&r, &a, &b).context("comparing snapshots")?;
    let shown = report
        .changes
        .iter()
        .filter_map(|(k, path)| Some((k.modifier(args.metadata)?, path)));
    if g.json {
        for (modifier, path) in shown {
            output::json_line(&Change {
                message_type: "change",
                path,
                modifier,
            })?;
        }
        output::json_line(&Statistics {
            message_type: "statistics",
            source_snapshot: a.id.to_string(),
            target_snapshot: b.id.to_string(),
            stats: &report.stats,
        })?;
        return Ok(Status::Success);
    }
    if !g.quiet {
        println!("comparing snapshot {} to {}:\n", a.id.short(), b.id.short());
    }
    for (modifier, path) in shown {
        println!("{modifier:<5}{path}");
    }
    if !g.quiet {
        println!();
        print!("{}", counts_text(&report.stats));
    }
    Ok(Status::Success)
}
