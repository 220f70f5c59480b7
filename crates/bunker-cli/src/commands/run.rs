//! `bunker run`: back up the policy's items (the due ones by default) to
//! their targets, apply their retention, and report per item. The work is
//! the engine's ([`bunker_engine::execute::run_policy`]); this renders it.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Result};
use bunker_engine::execute::{run_policy, Outcome, RunOptions, TargetRun};
use bunker_engine::plan::Selection;
use bunker_engine::pool::RepoPool;
use bunker_engine::status::{policy_status, TargetStatus};
use chrono::Utc;
use clap::Args;
use serde::Serialize;

use super::config::PolicyArgs;
use crate::cli::GlobalOpts;
use crate::events::StderrSink;
use crate::exit::Status;
use crate::output::{self, Table};

const LONG_ABOUT: &str = "\
Run the backup policy: back up each selected item to each of its target repositories, in \
priority order (critical first), then apply the item's retention (forget + prune) when it has \
one. By default only items that are due run; an item is due when its schedule says so given \
the time of its newest snapshot in each target (tag bunker:item=NAME), so no separate state \
can drift. Items without a schedule run only with --all or --item.

Hooks: `before` commands run first (sh -c, with the item's timeout); if one fails the item is \
skipped and reported as failed. `after` commands run after a successful backup, `on_failure` \
after a failed one. They see BUNKER_ITEM, BUNKER_HOOK and (on_failure) BUNKER_ERROR.

A target repository that does not exist yet is created (and the output says so). When a \
repository is unreachable its fallbacks are tried in order, with a warning. Failures are \
recorded in the repository for `bunker status`. Items of kind command run `sh -c COMMAND` \
(with BUNKER_ITEM set) and store its standard output as one file named by stdin_filename; a \
command that exits non-zero, or runs past the item's command timeout (it is then stopped \
with everything it started: SIGTERM, SIGKILL 10 s later), fails the item and leaves no \
snapshot. A dry run checks that \
SQLite files open and PostgreSQL servers answer, runs no command, and then shows what \
`bunker status` reports for the items (RPO state, last failure, PITR window and the \
server's archiver: a failing archive_command shows here).

Files that could not be read are named (the first 5; all with -v, and in --json as \
`unreadable: [{path, error}]`); the backup is then recorded as incomplete, and `bunker status` \
shows the target as INCOMPLETE until a complete snapshot is newer.

Exit status: 0 when every item succeeded, 3 when some files could not be read, 4 when an \
item was backed up to a fallback repository (3 takes precedence), 1 when any item failed.";

const EXAMPLES: &str = "\
EXAMPLES:
    bunker run                         # the due items of ./bunker.yaml
    bunker run examples/quickstart.yaml
    bunker run --config /etc/bunker/bunker.yaml --all
    bunker run --item webapp --item db --dry-run
    bunker run --json";

/// Back up the items of the policy
#[derive(Args, Debug)]
#[command(long_about = LONG_ABOUT, after_long_help = EXAMPLES)]
pub struct RunArgs {
    /// The policy file (overrides --config)
    #[arg(value_name = "POLICY")]
    pub file: Option<PathBuf>,
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Run this item, due or not (repeatable)
    #[arg(long = "item", value_name = "NAME")]
    pub items: Vec<String>,
    /// Run only the items that are due (the default)
    #[arg(long, conflicts_with_all = ["all", "items"])]
    pub due: bool,
    /// Run every item, due or not
    #[arg(long, conflicts_with = "items")]
    pub all: bool,
    /// Back up and decide retention without writing anything
    #[arg(short = 'n', long)]
    pub dry_run: bool,
}

/// The outcome of one item at one target, as `--json` prints it.
#[derive(Debug, Serialize)]
struct ItemResult<'a> {
    item: &'a str,
    /// The repository used (a fallback's name when one was used); "-" when
    /// the item failed before reaching any.
    target: &'a str,
    /// ok, incomplete (some files unreadable), failed, or skipped (not due).
    status: &'static str,
    files: u64,
    data_added: u64,
    duration_seconds: f64,
    snapshot: Option<&'a str>,
    forgotten: usize,
    /// Archived WAL files deleted by PITR retention (postgres physical items).
    wal_deleted: usize,
    repository_created: bool,
    error: Option<String>,
    /// Why the item ran: "schedule", "no snapshot yet", "requested", or
    /// the start-up rule of postgres physical items.
    reason: Option<String>,
    /// The fallback repository used because `fallback_for` was unreachable.
    fallback_used: Option<&'a str>,
    /// The target repository that was unreachable.
    fallback_for: Option<&'a str>,
    /// The files an incomplete backup left out (empty otherwise).
    unreadable: Vec<Unreadable<'a>>,
}

/// A file that could not be read, as `--json` prints it.
#[derive(Debug, Serialize)]
struct Unreadable<'a> {
    path: &'a str,
    error: &'a str,
}

impl<'a> ItemResult<'a> {
    fn from(r: &'a TargetRun) -> Self {
        let (status, error) = match &r.outcome {
            Outcome::Ok => ("ok", None),
            Outcome::Warning { unreadable } => (
                "incomplete",
                Some(format!("{} file(s) could not be read", unreadable.len())),
            ),
            Outcome::Failed { message, .. } => ("failed", Some(message.clone())),
            Outcome::Skipped { .. } => ("skipped", Some("not due".to_string())),
        };
        ItemResult {
            item: &r.item,
            target: &r.target,
            status,
            files: r.stats.files,
            data_added: r.stats.data_added,
            duration_seconds: r.stats.duration.as_secs_f64(),
            snapshot: r.stats.snapshot.as_deref(),
            forgotten: r.stats.forgotten,
            wal_deleted: r.stats.wal_deleted,
            repository_created: r.repository_created,
            error,
            reason: r.reason.as_ref().map(ToString::to_string),
            fallback_used: r.fallback.as_ref().map(|f| f.to.as_str()),
            fallback_for: r.fallback.as_ref().map(|f| f.from.as_str()),
            unreadable: match &r.outcome {
                Outcome::Warning { unreadable } => unreadable
                    .iter()
                    .map(|(path, error)| Unreadable { path, error })
                    .collect(),
                _ => Vec::new(),
            },
        }
    }
}

#[derive(Serialize)]
struct JsonRun<'a> {
    message_type: &'static str,
    dry_run: bool,
    results: &'a [ItemResult<'a>],
    failed: usize,
    /// A dry run: what `bunker status` reports now for the items shown.
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<&'a [TargetStatus]>,
}

pub fn run(g: &GlobalOpts, mut args: RunArgs) -> Result<Status> {
    if args.file.is_some() {
        args.policy.config = args.file.take();
    }
    let policy = args.policy.load()?;
    let named = |r: &&str| bunker_engine::pool::names_location(&policy, r);
    if let Some(r) = crate::repo::given_repo(g).filter(|r| !named(r)) {
        bail!(
            "run writes to the repositories its policy names; -r {r} is not one of them: remove \
             it, or add the repository to the policy's repositories and an item's targets"
        );
    }
    let sink = StderrSink::POLICY;
    let mut pool = RepoPool::new(&policy, crate::repo::pool_options(g, !args.dry_run)?, &sink);
    let selection = if !args.items.is_empty() {
        Selection::Items(args.items.clone())
    } else if args.all {
        Selection::All
    } else {
        Selection::Due
    };
    let opts = RunOptions {
        dry_run: args.dry_run,
        cancel: crate::interrupt::token(),
        ..Default::default()
    };
    let now = Utc::now();
    let runs = run_policy(&policy, &mut pool, &selection, now, &opts, &sink)?;
    let results: Vec<ItemResult<'_>> = runs.iter().map(ItemResult::from).collect();
    // A dry run also says what `status` knows of the items it shows.
    let status = match args.dry_run {
        true => policy_status(&mut pool, |i| runs.iter().any(|r| r.item == i.name), now),
        false => Vec::new(),
    };
    let failed = results.iter().filter(|r| r.status == "failed").count();
    let incomplete = results.iter().any(|r| r.status == "incomplete");
    let mut fallback = false;
    for r in results.iter().filter(|r| r.status != "failed") {
        if let (Some(used), Some(primary)) = (r.fallback_used, r.fallback_for) {
            fallback = true;
            eprintln!(
                "WARNING: item {} was backed up to fallback repository {used:?} because {primary:?} \
                 was unreachable; heal {primary:?} with `bunker copy --from-repo` once it is back",
                r.item
            );
        }
    }
    if g.json {
        output::json_line(&JsonRun {
            message_type: "run",
            dry_run: args.dry_run,
            results: &results,
            failed,
            status: args.dry_run.then_some(&status[..]),
        })?;
    } else if !g.quiet {
        print_text(&results, args.dry_run, g.verbose > 0);
        if args.dry_run && !status.is_empty() {
            println!("\nstatus now (as `bunker status` reports it):");
            super::status::render(&status, g.verbose > 0);
        }
    }
    if failed > 0 {
        bail!("{failed} of {} item run(s) failed", results.len());
    }
    Ok(if incomplete {
        Status::Incomplete
    } else if fallback {
        Status::Fallback
    } else {
        Status::Success
    })
}

fn print_text(results: &[ItemResult<'_>], dry_run: bool, verbose: bool) {
    print!("{}", table(results).render());
    for r in results.iter().filter(|r| r.status != "skipped") {
        if let Some(why) = r.reason.as_deref().filter(|w| *w != "requested") {
            println!("{} ({}): due: {why}", r.item, r.target);
        }
        if r.wal_deleted > 0 {
            println!(
                "{} ({}): {} archived WAL file(s) no kept base backup needs {}",
                r.item,
                r.target,
                r.wal_deleted,
                if dry_run {
                    "would be deleted"
                } else {
                    "deleted"
                }
            );
        }
        if let Some(e) = &r.error {
            println!("{} ({}): {e}", r.item, r.target);
        }
        // Name the files left out: the first 5, all with -v.
        let shown = if verbose { usize::MAX } else { 5 };
        for u in r.unreadable.iter().take(shown) {
            println!("  not backed up: {}: {}", u.path, u.error);
        }
        if r.unreadable.len() > shown {
            println!(
                "  and {} more file(s) (-v or --json lists them all)",
                r.unreadable.len() - shown
            );
        }
    }
    if results.iter().all(|r| r.status == "skipped") {
        println!("nothing is due");
    }
}

fn table(results: &[ItemResult<'_>]) -> Table {
    let mut t = Table::new(&[
        "Item",
        "Target",
        "Status",
        "Files",
        "Added",
        "Duration",
        "Snapshot",
        "Forgotten",
    ]);
    for r in results {
        let ran = r.status != "skipped";
        let if_ran = |s: String| if ran { s } else { String::new() };
        t.row(vec![
            vec![r.item.to_string()],
            vec![r.target.to_string()],
            vec![if ran {
                r.status.to_string()
            } else {
                "not due".into()
            }],
            vec![if_ran(r.files.to_string())],
            vec![if_ran(output::bytes(r.data_added))],
            vec![if_ran(output::duration(Duration::from_secs_f64(
                r.duration_seconds,
            )))],
            vec![r.snapshot.unwrap_or_default().to_string()],
            vec![if r.forgotten > 0 {
                r.forgotten.to_string()
            } else {
                String::new()
            }],
        ]);
    }
    t
}
