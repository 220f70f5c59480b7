//! `bunker tag`: add, remove or replace tags of snapshots.

use anyhow::{Context, Result};
use bunker_repo::snapshots;
use bunker_repo::tag::{self, TagChange};
use clap::Args;

use super::FilterArgs;
use crate::cli::GlobalOpts;
use crate::exit::Status;
use crate::{output, repo};

const LONG_ABOUT: &str = "\
Change the tags of snapshots: --set replaces all tags (`--set ''` removes them), --add and \
--remove change single tags. Without SNAPSHOT every snapshot matching --host/--tag/--path \
is changed.

As with restic, a changed snapshot is saved as a new snapshot file (with a new id) and the \
old file is removed; the new snapshot's `original` field keeps the id of the first version. \
Snapshots whose tags do not change keep their id. Takes an exclusive lock.";

const EXAMPLES: &str = "\
EXAMPLES:
    bunker tag --add keep-forever 4f2a9c1e
    bunker tag --remove daily --host db1
    bunker tag --set monthly,archive latest";

/// Add, remove or replace snapshot tags
#[derive(Args, Debug)]
#[command(long_about = LONG_ABOUT, after_long_help = EXAMPLES)]
pub struct TagArgs {
    /// Snapshots to change (ids, prefixes or `latest`; default: all matching the filter)
    #[arg(value_name = "SNAPSHOT")]
    pub snapshots: Vec<String>,
    /// Replace all tags with these (`a,b`; repeatable)
    #[arg(long = "set", value_name = "TAG[,TAG]")]
    pub set: Vec<String>,
    /// Add these tags (`a,b`; repeatable)
    #[arg(long = "add", value_name = "TAG[,TAG]")]
    pub add: Vec<String>,
    /// Remove these tags (`a,b`; repeatable)
    #[arg(long = "remove", value_name = "TAG[,TAG]")]
    pub remove: Vec<String>,
    #[command(flatten)]
    pub filter: FilterArgs,
}

/// `a,b` values flattened into single tags (blanks trimmed, empty ones dropped).
fn tags(values: &[String]) -> Vec<String> {
    values
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

pub fn run(g: &GlobalOpts, args: TagArgs) -> Result<Status> {
    let change = TagChange {
        set: (!args.set.is_empty()).then(|| tags(&args.set)),
        add: tags(&args.add),
        remove: tags(&args.remove),
    };
    change.validate()?;
    let r = repo::open(g)?;
    let _lock = repo::lock(&r, true)?;
    let targets = snapshots::select(&r, &args.snapshots, &args.filter.filter())?;
    let changed = tag::tag(&r, &targets, &change).context("changing tags")?;
    if g.json {
        output::json_line(&changed)?;
    } else if !g.quiet {
        for c in &changed {
            println!(
                "snapshot {} saved as {} (tags: {})",
                c.old.short(),
                c.new.short(),
                c.tags.join(",")
            );
        }
        println!("modified tags on {} snapshots", changed.len());
    }
    Ok(Status::Success)
}
