//! `bunker recover`: a snapshot of every tree no snapshot reaches any more
//! (restic's `recover`); with `--time T`, every policy item back to one
//! point in time ([`bunker_engine::recover`]), rendered here.

use anyhow::{Context, Result};
use clap::Args;

use crate::cli::GlobalOpts;
use crate::exit::Status;
use crate::{output, repo};

const LONG_ABOUT: &str = "\
Build a new snapshot from all directory trees in the repository that no snapshot refers \
to: after a snapshot was forgotten by mistake (before `prune` removed its data), or its \
snapshot file was lost. The new snapshot has the path `/recover` and one directory per \
lost tree, named by the tree's short id; restore or browse it like any snapshot.

--dry-run only lists the lost trees.

With --time T (and --target DIR) it does something else: it brings every item of the policy \
(--config; or only the --item ones) back to the point in time T. For each item, the newest \
snapshot at or before T (in any of its targets) is restored below DIR/ITEM; postgres logical \
items get each database's newest dump; postgres physical items get the base backup that can \
reach T, unpacked into DIR/ITEM with recovery configured to stop at exactly T \
(recovery_target_time, restore_command calling this bunker for the WAL). With --start such a \
server is started on a free loopback port (socket in its data directory, archiving off) and \
awaited until it reached T (at most --timeout); it is left running. Run as root, the data \
directory is given to the postgres user. A summary per item shows its state (restored, \
configured, recovered, no_snapshot, failed), the snapshot's time and how far before T the \
restored state lies (the RPO actually achieved). Exit status: 0 when every item was \
recovered, 3 when some item has no snapshot at or before T, 1 when any item failed.";

const EXAMPLES: &str = "\
EXAMPLES:
    bunker recover --dry-run
    bunker recover && bunker ls latest
    bunker recover --time '2024-05-01 10:00:00+00' --target /srv/recovered
    bunker recover --time '2024-05-01 10:00' --item db --target /var/lib/pg-recovered --start
    bunker recover --time '2024-05-01T10:00:00Z' --target /tmp/r --config /etc/bunker/bunker.yaml --json";

/// Recover data of forgotten snapshots (before prune)
#[derive(Args, Debug)]
#[command(long_about = LONG_ABOUT, after_long_help = EXAMPLES)]
pub struct RecoverArgs {
    /// Only report the lost trees; write nothing
    #[arg(short = 'n', long, conflicts_with = "time")]
    pub dry_run: bool,
    /// Recover every policy item to this point in time (see above)
    #[arg(long, value_name = "TIME", requires = "target")]
    pub time: Option<String>,
    /// With --time: only this item (repeatable)
    #[arg(long = "item", value_name = "NAME", requires = "time")]
    pub items: Vec<String>,
    /// With --time: restore each item below DIR/ITEM
    #[arg(long, value_name = "DIR", requires = "time")]
    pub target: Option<std::path::PathBuf>,
    /// With --time: start recovered PostgreSQL servers and wait until they reached the time
    #[arg(long, requires = "time")]
    pub start: bool,
    /// How long --start waits for recovery (1h, 90m)
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_timeout)]
    pub timeout: std::time::Duration,
    #[command(flatten)]
    pub policy: super::config::PolicyArgs,
}

fn parse_timeout(s: &str) -> Result<std::time::Duration, String> {
    bunker_policy::parse_duration(s)
}

pub fn run(g: &GlobalOpts, args: RecoverArgs) -> Result<Status> {
    if args.time.is_some() {
        return super::recover_time::run(g, args);
    }
    let r = repo::open(g)?;
    let _lock = repo::lock(&r, false)?;
    r.load_index().context("loading the index")?;
    let rec = bunker_repo::recover::recover(&r, args.dry_run).context("recovering trees")?;
    if g.json {
        output::json_line(&rec)?;
        return Ok(Status::Success);
    }
    if rec.roots.is_empty() {
        println!("no lost trees: every tree belongs to a snapshot");
        return Ok(Status::Success);
    }
    println!("found {} lost root tree(s):", rec.roots.len());
    for t in &rec.roots {
        println!("  {t}");
    }
    if let Some(id) = rec.snapshot {
        println!("saved new snapshot {}", id.short());
    }
    Ok(Status::Success)
}
