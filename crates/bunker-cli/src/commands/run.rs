//! `bunker run`: back up the policy's items (the due ones by default) to
//! their targets, apply their retention, and report per item.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bunker_policy::{Item, ItemKind, Policy};
use bunker_repo::backup::{self, BackupOptions};
use bunker_repo::forget::{self, ForgetOptions};
use bunker_repo::lock::RepoLock;
use bunker_repo::progress::NoProgress;
use bunker_repo::prune::{self, PruneOptions};
use bunker_repo::snapshots::SnapshotFilter;
use bunker_sources::ExcludeOptions;
use chrono::Utc;
use clap::Args;
use serde::Serialize;

use super::config::{open_policy_repo, OpenedRepo, PolicyArgs};
use super::hooks::run_hooks;
use super::pg::items as pg_items;
use super::status::{newest_snapshot, record_failure};
use crate::cli::GlobalOpts;
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
SQLite files open and PostgreSQL servers answer, and runs no command.

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

/// The outcome of one item at one target.
#[derive(Debug, Serialize)]
pub struct ItemResult {
    pub item: String,
    /// The repository used (a fallback's name when one was used); "-" when
    /// the item failed before reaching any.
    pub target: String,
    /// ok, incomplete (some files unreadable), failed, or skipped (not due).
    pub status: &'static str,
    pub files: u64,
    pub data_added: u64,
    pub duration_seconds: f64,
    pub snapshot: Option<String>,
    pub forgotten: usize,
    /// Archived WAL files deleted by PITR retention (postgres physical items).
    pub wal_deleted: usize,
    pub repository_created: bool,
    pub error: Option<String>,
    /// Why the item ran: "schedule", "no snapshot yet", "requested", or
    /// the start-up rule of postgres physical items ("server restarted at
    /// ...", "timeline changed 1→2").
    pub reason: Option<String>,
    /// The fallback repository used because `fallback_for` was unreachable.
    pub fallback_used: Option<String>,
    /// The target repository that was unreachable.
    pub fallback_for: Option<String>,
}

impl ItemResult {
    fn new(item: &str, target: &str) -> Self {
        ItemResult {
            item: item.to_string(),
            target: target.to_string(),
            status: "failed",
            files: 0,
            data_added: 0,
            duration_seconds: 0.0,
            snapshot: None,
            forgotten: 0,
            wal_deleted: 0,
            repository_created: false,
            error: None,
            reason: None,
            fallback_used: None,
            fallback_for: None,
        }
    }
}

#[derive(Serialize)]
struct JsonRun<'a> {
    message_type: &'static str,
    dry_run: bool,
    results: &'a [ItemResult],
    failed: usize,
}

/// Opened repositories by policy name (errors kept as text).
struct Repos<'a> {
    g: &'a GlobalOpts,
    policy: &'a Policy,
    create: bool,
    open: HashMap<String, Result<OpenedRepo, String>>,
}

impl Repos<'_> {
    fn get(&mut self, name: &str) -> Result<&OpenedRepo, String> {
        if !self.open.contains_key(name) {
            let r = open_policy_repo(self.g, self.policy, name, self.create)
                .map_err(|e| crate::exit::one_line(&e));
            if let Ok(o) = &r {
                if o.initialised {
                    eprintln!(
                        "created new repository {:?} at {}",
                        o.name,
                        o.repo.storage().location()
                    );
                }
            }
            self.open.insert(name.to_string(), r);
        }
        match self.open.get(name) {
            Some(Ok(o)) => Ok(o),
            Some(Err(e)) => Err(e.clone()),
            None => Err(format!("repository {name:?} was not opened")),
        }
    }
}

/// Why `item` is due, if it is: it has a schedule, and any target's newest
/// snapshot of the item is old enough (or missing, or unreadable); or, for
/// a postgres physical item with `full_on_start`, the server restarted or
/// changed timeline or system since the item's newest base backup there.
fn due_reason(repos: &mut Repos<'_>, item: &Item) -> Option<String> {
    let schedule = item.schedule.as_ref()?;
    let now = Utc::now();
    for t in &item.targets {
        let last = match repos.get(t) {
            Ok(o) => match newest_snapshot(&o.repo, item) {
                Ok(n) => n.map(|(time, _)| time.with_timezone(&Utc)),
                Err(_) => None,
            },
            Err(_) => None,
        };
        if schedule.is_due(last, now) {
            return Some(if last.is_none() {
                "no snapshot yet".into()
            } else {
                "schedule".into()
            });
        }
    }
    let cfg = pg_items::physical(item).filter(|c| c.full_on_start)?;
    let server = match pg_items::server_state(cfg) {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "warning: item {}: cannot ask the server whether it restarted: {}",
                item.name,
                crate::exit::one_line(&e)
            );
            return None;
        }
    };
    for t in &item.targets {
        let Ok(o) = repos.get(t) else { continue };
        match pg_items::start_reason(&o.repo, item, &server) {
            Ok(Some(r)) => return Some(r.to_string()),
            Ok(None) => {}
            Err(e) => eprintln!(
                "warning: item {}: reading base backups in {t}: {}",
                item.name,
                crate::exit::one_line(&e)
            ),
        }
    }
    None
}

fn backup_options(item: &Item, dry_run: bool) -> BackupOptions {
    BackupOptions {
        paths: item.paths.clone(),
        excludes: ExcludeOptions {
            excludes: item.excludes.clone(),
            ..Default::default()
        },
        tags: item.snapshot_tags(),
        dry_run,
        ..Default::default()
    }
}

/// Forget by the item's retention, then prune if anything was removed.
/// Postgres physical items use PITR-aware retention: forget base backups,
/// delete the WAL no kept one needs, then prune. Returns (snapshots
/// forgotten, WAL files deleted).
fn apply_retention(o: &OpenedRepo, item: &Item, dry_run: bool) -> Result<(usize, usize)> {
    let Some(ret) = &item.retention else {
        return Ok((0, 0));
    };
    if pg_items::physical(item).is_some() {
        let _lock = if dry_run {
            None
        } else {
            Some(RepoLock::acquire(&o.repo, true).context("locking for retention")?)
        };
        let report = pg_items::apply_pg_retention(&o.repo, item, dry_run)?;
        if !dry_run && !report.removed.is_empty() {
            prune::prune_unlocked(
                &o.repo,
                &PruneOptions::default().with_crash_knob_from_env(),
                &NoProgress,
            )
            .context("prune")?;
        }
        return Ok((report.removed.len(), report.plan.wal_delete.len()));
    }
    let opts = ForgetOptions {
        policy: ret.keep_policy(),
        filter: SnapshotFilter {
            tags: vec![vec![item.tag()]],
            ..Default::default()
        },
        dry_run,
        ..Default::default()
    };
    if dry_run {
        return Ok((forget::forget_unlocked(&o.repo, &opts)?.removed.len(), 0));
    }
    let _lock = RepoLock::acquire(&o.repo, true).context("locking for retention")?;
    let report = forget::forget_unlocked(&o.repo, &opts).context("forget")?;
    if !report.removed.is_empty() {
        prune::prune_unlocked(
            &o.repo,
            &PruneOptions::default().with_crash_knob_from_env(),
            &NoProgress,
        )
        .context("prune")?;
    }
    Ok((report.removed.len(), 0))
}

/// Back up a sqlite, postgres or command item (the engines live in `pg` and
/// `command_item`).
fn run_database_item(
    o: &OpenedRepo,
    item: &Item,
    dry_run: bool,
) -> Result<super::pg::items::ItemSnapshots> {
    if dry_run {
        // Nothing is written: only check that the source can be read.
        preflight_database_item(item)?;
        return Ok(Vec::new());
    }
    let tags = item.snapshot_tags();
    match (item.kind, &item.sqlite, &item.postgres) {
        (ItemKind::Sqlite, Some(s), _) => {
            super::pg::items::run_sqlite_item(&o.repo, &s.path, &tags, None, &NoProgress)
        }
        (ItemKind::Postgres, _, Some(p)) => {
            super::pg::items::run_postgres_item(&o.repo, p, &tags, None, &NoProgress)
        }
        (ItemKind::Command, _, _) => match &item.command {
            Some(c) => {
                super::command_item::run_command_item(&o.repo, &item.name, c, &tags, &NoProgress)
            }
            None => bail!("item {} of kind command has no command", item.name),
        },
        (kind, _, _) => bail!("items of kind {} are not supported yet", kind.as_str()),
    }
}

/// What a dry run checks for a non-file item: the SQLite file can be opened
/// read-only, the PostgreSQL server answers a query with the item's settings.
fn preflight_database_item(item: &Item) -> Result<()> {
    match (item.kind, &item.sqlite, &item.postgres) {
        (ItemKind::Sqlite, Some(s), _) => {
            std::fs::File::open(&s.path)
                .with_context(|| format!("opening SQLite database {}", s.path.display()))?;
            Ok(())
        }
        (ItemKind::Postgres, _, Some(p)) => {
            let conn = super::pg::items::conn_from_policy(p);
            conn.query(conn.dbname.as_deref(), "SELECT 1")
                .context("connecting to PostgreSQL")?;
            Ok(())
        }
        // A command is not run in a dry run: it may have side effects.
        (ItemKind::Command, _, _) if item.command.is_some() => Ok(()),
        (kind, _, _) => bail!("items of kind {} are not supported yet", kind.as_str()),
    }
}

fn run_target(repos: &mut Repos<'_>, item: &Item, target: &str, dry_run: bool) -> ItemResult {
    let mut res = ItemResult::new(&item.name, target);
    let start = Instant::now();
    // File items: warm the tree's metadata while the repository is opened.
    let opts = (item.kind == ItemKind::Files).then(|| {
        let mut o = backup_options(item, dry_run);
        o.warmer = backup::warm_up(&o);
        o
    });
    let o = match repos.get(target) {
        Ok(o) => o,
        Err(e) => {
            res.error = Some(e);
            return res;
        }
    };
    res.target = o.name.clone();
    if o.name != target {
        res.fallback_used = Some(o.name.clone());
        res.fallback_for = Some(target.to_string());
    }
    res.repository_created = o.initialised;
    if item.kind != ItemKind::Files {
        match run_database_item(o, item, dry_run) {
            Ok(snaps) => {
                res.status = "ok";
                res.snapshot = Some(
                    snaps
                        .iter()
                        .map(|s| s.id.get(..8).unwrap_or(&s.id).to_string())
                        .collect::<Vec<_>>()
                        .join(","),
                );
                res.files = snaps.len() as u64;
                res.data_added = snaps.iter().map(|s| s.data_added).sum();
                match apply_retention(o, item, dry_run) {
                    Ok((n, w)) => {
                        res.forgotten = n;
                        res.wal_deleted = w;
                    }
                    Err(e) => {
                        res.status = "failed";
                        res.error = Some(format!("retention: {}", crate::exit::one_line(&e)));
                    }
                }
            }
            Err(e) => res.error = Some(crate::exit::one_line(&e)),
        }
        if res.status == "failed" && !dry_run {
            record_failure(
                &o.repo,
                &item.name,
                res.error.as_deref().unwrap_or("failed"),
            );
        }
        res.duration_seconds = start.elapsed().as_secs_f64();
        return res;
    }
    let opts = opts.unwrap_or_else(|| backup_options(item, dry_run));
    match backup::backup(&o.repo, opts, &NoProgress) {
        Ok(sum) => {
            res.files = sum.total_files_processed;
            res.data_added = sum.data_added;
            res.snapshot = sum.snapshot_id.map(|id| id.short());
            res.status = if sum.errors.is_empty() {
                "ok"
            } else {
                "incomplete"
            };
            if !sum.errors.is_empty() {
                res.error = Some(format!("{} file(s) could not be read", sum.errors.len()));
            }
            match apply_retention(o, item, dry_run) {
                Ok((n, _)) => res.forgotten = n,
                Err(e) => {
                    res.status = "failed";
                    res.error = Some(format!("retention: {}", crate::exit::one_line(&e)));
                }
            }
        }
        Err(e) => res.error = Some(format!("backup: {e}")),
    }
    if res.status == "failed" && !dry_run {
        record_failure(
            &o.repo,
            &item.name,
            res.error.as_deref().unwrap_or("failed"),
        );
    }
    res.duration_seconds = start.elapsed().as_secs_f64();
    res
}

fn run_item(
    repos: &mut Repos<'_>,
    item: &Item,
    dry_run: bool,
    reason: Option<String>,
) -> Vec<ItemResult> {
    let hooks = &item.hooks;
    let base_env = vec![("BUNKER_ITEM", item.name.clone())];
    let fail_all = |repos: &mut Repos<'_>, msg: String| -> Vec<ItemResult> {
        if !dry_run {
            let mut env = base_env.clone();
            env.push(("BUNKER_ERROR", msg.clone()));
            if let Err(e) = run_hooks("on_failure", &hooks.on_failure, hooks.timeout, &env) {
                eprintln!("warning: item {}: {e:#}", item.name);
            }
            for t in &item.targets {
                if let Ok(o) = repos.get(t) {
                    record_failure(&o.repo, &item.name, &msg);
                }
            }
        }
        let mut r = ItemResult::new(&item.name, "-");
        r.error = Some(msg);
        vec![r]
    };
    if !dry_run {
        if let Err(e) = run_hooks("before", &hooks.before, hooks.timeout, &base_env) {
            return fail_all(repos, format!("skipped: {e:#}"));
        }
    }
    let results: Vec<ItemResult> = item
        .targets
        .iter()
        .map(|t| {
            let mut r = run_target(repos, item, t, dry_run);
            r.reason = reason.clone();
            r
        })
        .collect();
    if !dry_run {
        let failed: Vec<String> = results
            .iter()
            .filter(|r| r.status == "failed")
            .filter_map(|r| r.error.clone())
            .collect();
        let hook = if failed.is_empty() {
            run_hooks("after", &hooks.after, hooks.timeout, &base_env)
        } else {
            let mut env = base_env.clone();
            env.push(("BUNKER_ERROR", failed.join("; ")));
            run_hooks("on_failure", &hooks.on_failure, hooks.timeout, &env)
        };
        if let Err(e) = hook {
            eprintln!("warning: item {}: {e:#}", item.name);
        }
    }
    results
}

pub fn run(g: &GlobalOpts, mut args: RunArgs) -> Result<Status> {
    if args.file.is_some() {
        args.policy.config = args.file.take();
    }
    let policy = args.policy.load()?;
    for name in &args.items {
        if policy.item(name).is_none() {
            let known: Vec<&str> = policy.items.iter().map(|i| i.name.as_str()).collect();
            bail!(
                "no item {name:?} in the policy (items: {})",
                known.join(", ")
            );
        }
    }
    let mut repos = Repos {
        g,
        policy: &policy,
        create: !args.dry_run,
        open: HashMap::new(),
    };
    let mut results = Vec::new();
    for item in policy.items_by_priority() {
        if !args.items.is_empty() && !args.items.contains(&item.name) {
            continue;
        }
        let reason = if !args.items.is_empty() || args.all {
            Some("requested".to_string())
        } else {
            due_reason(&mut repos, item)
        };
        if reason.is_none() {
            let mut r = ItemResult::new(&item.name, "-");
            r.status = "skipped";
            r.error = Some("not due".into());
            results.push(r);
            continue;
        }
        results.extend(run_item(&mut repos, item, args.dry_run, reason));
    }
    let failed = results.iter().filter(|r| r.status == "failed").count();
    let incomplete = results.iter().any(|r| r.status == "incomplete");
    let mut fallback = false;
    for r in results.iter().filter(|r| r.status != "failed") {
        if let (Some(used), Some(primary)) = (&r.fallback_used, &r.fallback_for) {
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
        })?;
    } else if !g.quiet {
        print!("{}", table(&results).render());
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
                    if args.dry_run {
                        "would be deleted"
                    } else {
                        "deleted"
                    }
                );
            }
            if let Some(e) = &r.error {
                println!("{} ({}): {e}", r.item, r.target);
            }
        }
        let ran = results.iter().filter(|r| r.status != "skipped").count();
        if ran == 0 {
            println!("nothing is due");
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

fn table(results: &[ItemResult]) -> Table {
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
        t.row(vec![
            vec![r.item.clone()],
            vec![r.target.clone()],
            vec![if ran {
                r.status.to_string()
            } else {
                "not due".into()
            }],
            vec![if ran {
                r.files.to_string()
            } else {
                String::new()
            }],
            vec![if ran {
                output::bytes(r.data_added)
            } else {
                String::new()
            }],
            vec![if ran {
                output::duration(Duration::from_secs_f64(r.duration_seconds))
            } else {
                String::new()
            }],
            vec![r.snapshot.clone().unwrap_or_default()],
            vec![if r.forgotten > 0 {
                r.forgotten.to_string()
            } else {
                String::new()
            }],
        ]);
    }
    t
}
