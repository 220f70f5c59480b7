//! `bunker find`: search snapshots for files, or for where blobs, trees and packs are used.

use anyhow::{Context, Result};
use bunker_repo::find::{self, FindOptions, ObjectKind};
use bunker_repo::snapshots;
use bunker_repo::walk::LsEntry;
use clap::Args;

use super::FilterArgs;
use crate::cli::GlobalOpts;
use crate::exit::Status;
use crate::{output, repo};

const LONG_ABOUT: &str = "\
Search snapshots for files and directories whose path matches PATTERN (restic's exclude \
syntax: `*.conf` matches at any depth, `/etc/*.conf` from the root, `**` spans \
directories). Without --snapshot every snapshot matching --host/--tag/--path is searched.

With --blob, --tree or --pack the arguments are ids (or prefixes of ids) instead, and find \
reports the files that use a data blob, the directories that are a tree, or the files using \
any blob of a pack (for troubleshooting `check` errors).

--json prints restic's format: an array with one object per snapshot \
(`matches`, `hits`, `snapshot`), or for ids an array of objects with `object_type`, `id`, \
`path`, `parent_tree`, `snapshot` and `time`.";

const EXAMPLES: &str = "\
EXAMPLES:
    bunker find '*.pem'
    bunker find -i --snapshot latest 'passwords*'
    bunker find --oldest 2024-01-01 --newest '2024-02-01 12:00' '/home/*/notes/**'
    bunker find --blob 420f620f --show-pack-id
    bunker find --pack 025c1d06 --json";

/// Find files in snapshots, or where blobs/trees/packs are used
#[derive(Args, Debug)]
#[command(long_about = LONG_ABOUT, after_long_help = EXAMPLES)]
pub struct FindArgs {
    /// Patterns (or ids with --blob/--tree/--pack)
    #[arg(required = true, value_name = "PATTERN")]
    pub patterns: Vec<String>,
    /// Search only this snapshot (id, prefix or `latest`; repeatable)
    #[arg(short = 's', long = "snapshot", value_name = "ID")]
    pub snapshots: Vec<String>,
    /// Only entries modified at or after this time (YYYY-MM-DD[ HH:MM[:SS]])
    #[arg(short = 'O', long, value_name = "TIME")]
    pub oldest: Option<String>,
    /// Only entries modified at or before this time
    #[arg(short = 'N', long, value_name = "TIME")]
    pub newest: Option<String>,
    /// Ignore case in patterns
    #[arg(short = 'i', long)]
    pub ignore_case: bool,
    /// Long listing: permissions, owner, size, time
    #[arg(short = 'l', long)]
    pub long: bool,
    /// The arguments are ids of data blobs
    #[arg(long, conflicts_with_all = ["tree", "pack"])]
    pub blob: bool,
    /// The arguments are ids of trees
    #[arg(long, conflicts_with = "pack")]
    pub tree: bool,
    /// The arguments are ids of pack files
    #[arg(long)]
    pub pack: bool,
    /// Show the pack holding each blob or tree found
    #[arg(long)]
    pub show_pack_id: bool,
    #[command(flatten)]
    pub filter: FilterArgs,
}

pub fn run(g: &GlobalOpts, args: FindArgs) -> Result<Status> {
    let r = repo::open(g)?;
    let _lock = repo::lock(&r, false)?;
    r.load_index().context("loading the index")?;
    let snaps = snapshots::select(&r, &args.snapshots, &args.filter.filter())?;
    let kind = [
        (args.blob, ObjectKind::Blob),
        (args.tree, ObjectKind::Tree),
        (args.pack, ObjectKind::Pack),
    ]
    .into_iter()
    .find_map(|(on, k)| on.then_some(k));
    if let Some(kind) = kind {
        let hits = find::find_objects(&r, &snaps, kind, &args.patterns, args.show_pack_id)?;
        if g.json {
            output::json_line(&hits)?;
            return Ok(Status::Success);
        }
        for h in &hits {
            println!("Found {} {}", h.object_type, h.id);
            match h.parent_tree {
                Some(t) => println!(" ... in file {}\n     (tree {t})", h.path),
                None => println!(" ... path {}", h.path),
            }
            println!(
                " ... in snapshot {} ({})",
                h.snapshot.short(),
                output::local_time(&h.time)
            );
            if let Some(p) = h.pack {
                println!(" ... in pack {p}");
            }
        }
        return Ok(Status::Success);
    }
    let opts = FindOptions {
        patterns: args.patterns.clone(),
        ignore_case: args.ignore_case,
        oldest: args.oldest.as_deref().map(find::parse_time).transpose()?,
        newest: args.newest.as_deref().map(find::parse_time).transpose()?,
    };
    let found = find::find_paths(&r, &snaps, &opts)?;
    if g.json {
        let all: Vec<_> = found.iter().map(|s| s.to_json()).collect();
        output::json_line(&all)?;
        return Ok(Status::Success);
    }
    for (i, s) in found.iter().enumerate() {
        if i > 0 {
            println!();
        }
        println!(
            "Found matching entries in snapshot {} from {}",
            s.snapshot.id.short(),
            output::local_time(&s.snapshot.snapshot.time)
        );
        for m in &s.matches {
            if args.long {
                println!(
                    "{}",
                    super::ls::long_line(&LsEntry::from_node(&m.path, &m.node))
                );
            } else {
                println!("{}", String::from_utf8_lossy(&m.path));
            }
        }
    }
    Ok(Status::Success)
}
