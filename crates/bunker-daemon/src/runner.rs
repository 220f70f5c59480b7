//! Running one job through the engine, on the calling thread (the daemon
//! calls it on a thread of its own per job: engine work blocks). Each job
//! opens its own repositories and has its own [`CancelToken`]; what it did
//! comes back as a [`JobReport`] (one [`JobRun`] row per target).
//!
//! A backup runs as the engine runs an item ([`execute::run_item`]), with
//! its retention split off: the backup shares its targets with other
//! backups, the retention (which prunes) waits for each target alone
//! through the [`RepoGate`]. So two items backing up to one repository run
//! in parallel, and a prune never runs beside a backup. The item's `after`
//! hooks therefore run before its retention (the CLI runs them after).

use std::collections::BTreeMap;
use std::sync::Arc;

use bunker_engine::events::{Event, EventSink};
use bunker_engine::execute::{self, Outcome, RunOptions, TargetRun};
use bunker_engine::plan::{self, DueReason};
use bunker_engine::pool::{Opened, PoolOptions, RepoPool};
use bunker_engine::records::{self, Record};
use bunker_engine::{retention, CancelToken};
use bunker_policy::{Item, Policy};
use bunker_repo::check::CheckOptions;
use bunker_repo::forget::{self, ForgetOptions};
use bunker_repo::lock::RepoLock;
use bunker_repo::progress::NoProgress;
use bunker_repo::prune::{self, PruneOptions};
use bunker_repo::snapshots::SnapshotFilter;
use bunker_storage::FileType;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::gate::{GateGuard, RepoGate};
use crate::job::{JobKind, JobSpec, Trigger};

/// Held while a job opens (and perhaps creates) its repositories: two jobs
/// creating one repository at once would each write a key, and the loser's
/// key would stay behind, unable to read the winner's config.
pub static OPENING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Open (creating if needed) `targets` in `pool`, one job at a time.
pub fn open_serially(pool: &mut RepoPool<'_>, targets: &[String]) {
    let _one = OPENING.lock().unwrap_or_else(|p| p.into_inner());
    for t in targets {
        // Errors are kept in the pool and reported by the run itself.
        let _ = pool.get(t);
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunResult {
    /// Done.
    Success,
    /// Done, with something to look at (unreadable files, check warnings).
    Warning,
    /// Not done.
    Failed,
    /// Stopped by a shutdown.
    Cancelled,
}

impl RunResult {
    /// Every result (the metrics initialise a series for each).
    pub const ALL: [RunResult; 4] = [
        RunResult::Success,
        RunResult::Warning,
        RunResult::Failed,
        RunResult::Cancelled,
    ];

    /// The word in the history and the metrics' `result` label.
    pub fn as_str(self) -> &'static str {
        match self {
            RunResult::Success => "success",
            RunResult::Warning => "warning",
            RunResult::Failed => "failed",
            RunResult::Cancelled => "cancelled",
        }
    }

    /// Parses [`RunResult::as_str`].
    pub fn parse(s: &str) -> Option<RunResult> {
        RunResult::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// Whether the work was done.
    pub fn succeeded(self) -> bool {
        matches!(self, RunResult::Success | RunResult::Warning)
    }
}

/// One job at one repository: a row of the run history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobRun {
    /// The job's id (`backup:db`, `check:local`).
    pub job: String,
    /// `backup`, `check`, `prune`, `copy`.
    pub kind: String,
    /// The item (backups).
    pub item: Option<String>,
    /// The repository (a copy's destination; `-` when a backup failed
    /// before reaching any).
    pub target: String,
    /// Why it ran.
    pub trigger: String,
    /// When it started.
    pub started: DateTime<Utc>,
    /// When it ended.
    pub finished: DateTime<Utc>,
    /// How it ended.
    pub result: RunResult,
    /// Statistics (kind-specific JSON object).
    pub stats: serde_json::Value,
    /// Why it failed, one line.
    pub error: Option<String>,
}

/// What a job did.
#[derive(Debug, Clone)]
pub struct JobReport {
    /// The job.
    pub spec: JobSpec,
    /// Why it ran.
    pub trigger: Trigger,
    /// When it started.
    pub started: DateTime<Utc>,
    /// One row per repository (empty when the engine found it not due).
    pub runs: Vec<JobRun>,
    /// Backups: the newest snapshot of the item per target after the run.
    pub newest: BTreeMap<String, Option<DateTime<Utc>>>,
    /// Repository sizes learnt on the way (check, prune).
    pub sizes: BTreeMap<String, u64>,
    /// Drills: the start of the newest drill recorded in the repository.
    pub drill_last: Option<DateTime<Utc>>,
}

impl JobReport {
    /// The job's new last run for the scheduler: for a backup the oldest
    /// of its targets' newest snapshots (the engine's due rule: due when
    /// any target is), else the start when it succeeded.
    pub fn last(&self, previous: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
        match self.spec.kind {
            JobKind::Backup { .. } => oldest_newest(&self.newest),
            // The repository's drill reports are the truth.
            JobKind::Drill { .. } if self.runs.is_empty() => self.drill_last.or(previous),
            _ if !self.runs.is_empty() && self.runs.iter().all(|r| r.result.succeeded()) => {
                Some(self.started)
            }
            _ => previous,
        }
    }
}

/// The oldest of the newest snapshots (`None` if a target has none).
pub fn oldest_newest(newest: &BTreeMap<String, Option<DateTime<Utc>>>) -> Option<DateTime<Utc>> {
    if newest.is_empty() || newest.values().any(Option::is_none) {
        return None;
    }
    newest.values().flatten().min().copied()
}

/// Engine events as log lines.
pub struct LogSink;

impl EventSink for LogSink {
    fn event(&self, event: &Event<'_>) {
        match event {
            Event::Warning(w) => tracing::warn!("{w}"),
            Event::RepositoryCreated { name, location } => {
                tracing::info!("created repository {name} at {location}")
            }
            Event::Fallback(f) => tracing::warn!("{f:?}"),
            _ => {}
        }
    }
}

/// What every job needs.
#[derive(Clone)]
pub struct JobContext {
    /// The policy as it was when the job started.
    pub policy: Arc<Policy>,
    /// How repositories are opened.
    pub pool: PoolOptions,
    /// The gate the job's guard came from.
    pub gate: Arc<RepoGate>,
}

/// Run `spec`, holding `guard` (its repositories) while it starts.
pub fn run_job(
    cx: &JobContext,
    spec: JobSpec,
    trigger: Trigger,
    guard: GateGuard,
    cancel: &CancelToken,
) -> JobReport {
    let started = Utc::now();
    let mut report = JobReport {
        spec: spec.clone(),
        trigger,
        started,
        runs: Vec::new(),
        newest: BTreeMap::new(),
        sizes: BTreeMap::new(),
        drill_last: None,
    };
    let row = |target: &str, result: Result<serde_json::Value, String>, cancelled: bool| JobRun {
        job: spec.id.clone(),
        kind: spec.kind.as_str().to_string(),
        item: spec.kind.item().map(str::to_string),
        target: target.to_string(),
        trigger: trigger.as_str().to_string(),
        started,
        finished: Utc::now(),
        result: match (&result, cancelled) {
            (Ok(_), _) => RunResult::Success,
            (Err(_), true) => RunResult::Cancelled,
            (Err(_), false) => RunResult::Failed,
        },
        stats: result.as_ref().cloned().unwrap_or(serde_json::json!({})),
        error: result.err(),
    };
    match &spec.kind {
        JobKind::Backup { item } => {
            backup(cx, item, trigger, guard, cancel, &mut report);
        }
        JobKind::Check {
            repository,
            read_data,
        } => {
            let r = check(cx, repository, *read_data, &mut report.sizes);
            let warn = r.as_ref().is_ok_and(|(_, w)| *w);
            let mut run = row(repository, r.map(|(s, _)| s), cancel.is_cancelled());
            if warn {
                run.result = RunResult::Warning;
            }
            report.runs.push(run);
            drop(guard);
        }
        JobKind::Prune { repository } => {
            let r = prune_repo(cx, repository, cancel, &mut report.sizes);
            report.runs.push(row(repository, r, cancel.is_cancelled()));
            drop(guard);
        }
        JobKind::Drill { item } => {
            let target = cx
                .policy
                .item(item)
                .and_then(|i| i.targets.first().cloned())
                .unwrap_or_else(|| "-".into());
            match drill(cx, item, trigger, cancel, &mut report.drill_last) {
                None => {}
                Some(r) => report.runs.push(row(&target, r, cancel.is_cancelled())),
            }
            drop(guard);
        }
        JobKind::Copy { from, to, items } => {
            let r = copy(cx, from, to, items);
            report.runs.push(row(to, r, cancel.is_cancelled()));
            drop(guard);
        }
    }
    report
}

fn open(pool: &mut RepoPool<'_>, name: &str) -> Result<Arc<Opened>, String> {
    let o = pool.get(name).map_err(|e| e.one_line())?;
    if let Some(primary) = &o.fallback_for {
        return Err(format!(
            "repository {primary:?} is unreachable ({}); maintenance does not run on its fallback",
            o.primary_error.as_deref().unwrap_or("?")
        ));
    }
    Ok(o)
}

fn repo_size(o: &Opened) -> Option<u64> {
    let mut total = 0;
    for t in [FileType::Pack, FileType::Index, FileType::Snapshot] {
        total += o
            .repo
            .storage()
            .list(t)
            .ok()?
            .iter()
            .map(|f| f.size)
            .sum::<u64>();
    }
    Some(total)
}

fn check(
    cx: &JobContext,
    repository: &str,
    read_data: bunker_repo::check::ReadData,
    sizes: &mut BTreeMap<String, u64>,
) -> Result<(serde_json::Value, bool), String> {
    let sink = LogSink;
    let opts = PoolOptions {
        create: false,
        ..cx.pool.clone()
    };
    let mut pool = RepoPool::new(&cx.policy, opts, &sink);
    let o = open(&mut pool, repository)?;
    let opts = CheckOptions {
        read_data,
        check_unused: false,
    };
    let r = bunker_repo::check::check(&o.repo, &opts, &NoProgress)
        .map_err(|e| bunker_engine::error::one_line(&e))?;
    if let Some(s) = repo_size(&o) {
        sizes.insert(repository.to_string(), s);
    }
    if !r.ok() {
        let mut problems: Vec<String> = r.errors.iter().take(3).cloned().collect();
        if r.errors.len() > 3 {
            problems.push(format!("and {} more", r.errors.len() - 3));
        }
        return Err(format!(
            "check found {} errors, {} damaged and {} missing packs: {}",
            r.errors.len(),
            r.damaged_packs.len(),
            r.missing_packs.len(),
            problems.join("; ")
        ));
    }
    let stats = serde_json::json!({
        "packs": r.packs, "packs_read": r.packs_read, "bytes_read": r.bytes_read,
        "snapshots": r.snapshots, "warnings": r.warnings.len(),
    });
    Ok((stats, !r.warnings.is_empty()))
}

fn prune_repo(
    cx: &JobContext,
    repository: &str,
    cancel: &CancelToken,
    sizes: &mut BTreeMap<String, u64>,
) -> Result<serde_json::Value, String> {
    let sink = LogSink;
    let opts = PoolOptions {
        create: false,
        ..cx.pool.clone()
    };
    let mut pool = RepoPool::new(&cx.policy, opts, &sink);
    let o = open(&mut pool, repository)?;
    let one = |e: bunker_repo::RepoError| bunker_engine::error::one_line(&e);
    let lock = RepoLock::acquire(&o.repo, true).map_err(one)?;
    let mut forgotten = 0;
    for item in &cx.policy.items {
        let Some(ret) = &item.retention else { continue };
        if !item.targets.iter().any(|t| t == repository) {
            continue;
        }
        if cancel.is_cancelled() {
            return Err("interrupted".into());
        }
        if item.physical().is_some() {
            let r = retention::apply_pitr(&o.repo, item, false).map_err(|e| e.one_line())?;
            forgotten += r.removed.len();
        } else {
            let opts = ForgetOptions {
                policy: ret.keep_policy(),
                filter: retention::item_filter(item),
                ..Default::default()
            };
            forgotten += forget::forget_unlocked(&o.repo, &opts)
                .map_err(one)?
                .removed
                .len();
        }
    }
    let popts = PruneOptions {
        cancel: Some(cancel.clone()),
        ..Default::default()
    };
    let r = prune::prune_unlocked(&o.repo, &popts, &NoProgress).map_err(one)?;
    drop(lock);
    if let Some(s) = repo_size(&o) {
        sizes.insert(repository.to_string(), s);
    }
    Ok(serde_json::json!({
        "forgotten": forgotten, "packs_removed": r.packs_removed,
        "bytes_removed": r.bytes_removed, "packs_repacked": r.packs_repacked,
    }))
}

fn copy(
    cx: &JobContext,
    from: &str,
    to: &str,
    items: &[String],
) -> Result<serde_json::Value, String> {
    let sink = LogSink;
    let mut pool = RepoPool::new(&cx.policy, cx.pool.clone(), &sink);
    open_serially(&mut pool, &[from.to_string(), to.to_string()]);
    let src = open(&mut pool, from)?;
    let dst = open(&mut pool, to)?;
    let tags: Vec<Vec<String>> = cx
        .policy
        .items
        .iter()
        .filter(|i| {
            if items.is_empty() {
                i.targets.iter().any(|t| t == from)
            } else {
                items.contains(&i.name)
            }
        })
        .map(|i| vec![i.tag()])
        .collect();
    if tags.is_empty() {
        return Ok(serde_json::json!({ "copied": 0, "skipped": 0 }));
    }
    let opts = bunker_repo::copy::CopyOptions {
        filter: SnapshotFilter {
            tags,
            ..Default::default()
        },
        snapshots: Vec::new(),
    };
    let s = bunker_repo::copy::copy(&src.repo, &dst.repo, &opts, &NoProgress)
        .map_err(|e| bunker_engine::error::one_line(&e))?;
    Ok(serde_json::json!({
        "copied": s.copied.len(), "skipped": s.skipped.len(), "bytes_stored": s.bytes_stored,
    }))
}

/// A drill of `item`; `None` when the repository says it is not due
/// (`last` gets the newest drill's start).
fn drill(
    cx: &JobContext,
    name: &str,
    trigger: Trigger,
    cancel: &CancelToken,
    last: &mut Option<DateTime<Utc>>,
) -> Option<Result<serde_json::Value, String>> {
    use bunker_engine::drill::{self, DrillOptions, DrillStatus};
    let sink = LogSink;
    let item = cx.policy.item(name)?;
    let opts = PoolOptions {
        create: false,
        ..cx.pool.clone()
    };
    let mut pool = RepoPool::new(&cx.policy, opts, &sink);
    if matches!(trigger, Trigger::Schedule | Trigger::NeverRun) {
        let newest = item
            .targets
            .first()
            .and_then(|t| pool.get(t).ok())
            .and_then(|o| drill::last_report(&o.repo, name).ok().flatten())
            .map(|r| r.started.with_timezone(&Utc));
        *last = newest;
        if !drill::is_due(item, newest, Utc::now()) {
            return None;
        }
    }
    let opts = DrillOptions {
        cancel: cancel.clone(),
        bunker_exe: std::env::current_exe().ok(),
        ..Default::default()
    };
    Some(match drill::run_drill(&mut pool, item, &opts, &sink) {
        Ok(r) => {
            *last = Some(r.started.with_timezone(&Utc));
            let stats = serde_json::json!({
                "rto_measured_seconds": r.rto_measured_seconds,
                "rto_exceeded": r.rto_exceeded,
                "pick": r.pick,
                "snapshots": r.snapshots,
            });
            match r.status {
                // A drill slower than the item's objective failed its purpose.
                DrillStatus::Passed if r.rto_exceeded => Err(format!(
                    "the drill took {:.0}s, over the item's rto of {}s",
                    r.rto_measured_seconds,
                    r.rto_target_seconds.unwrap_or(0)
                )),
                DrillStatus::Passed => Ok(stats),
                DrillStatus::Failed => Err(r.error.unwrap_or_else(|| "the drill failed".into())),
            }
        }
        Err(e) => Err(e.one_line()),
    })
}

/// The newest snapshot of `item` in each of its targets (`None`: none, or
/// unreadable).
pub fn newest_per_target(
    pool: &mut RepoPool<'_>,
    item: &Item,
) -> BTreeMap<String, Option<DateTime<Utc>>> {
    item.targets
        .iter()
        .map(|t| {
            let n = pool
                .get(t)
                .ok()
                .and_then(|o| plan::newest_snapshot(&o.repo, item).ok().flatten())
                .map(|(time, _)| time.with_timezone(&Utc));
            (t.clone(), n)
        })
        .collect()
}

fn backup(
    cx: &JobContext,
    name: &str,
    trigger: Trigger,
    guard: GateGuard,
    cancel: &CancelToken,
    report: &mut JobReport,
) {
    let sink = LogSink;
    let Some(item) = cx.policy.item(name) else {
        return;
    };
    let opts = PoolOptions {
        create: true,
        ..cx.pool.clone()
    };
    let mut pool = RepoPool::new(&cx.policy, opts, &sink);
    open_serially(&mut pool, &item.targets);
    let reason = match trigger {
        // The repository decides: someone may have run it meanwhile.
        Trigger::Schedule | Trigger::NeverRun => {
            plan::due_reason(&mut pool, item, report.started, &sink)
        }
        Trigger::Start | Trigger::Manual | Trigger::Change => Some(DueReason::Requested),
    };
    let Some(reason) = reason else {
        tracing::debug!("{name}: not due by the repository, not run");
        drop(guard);
        report.newest = newest_per_target(&mut pool, item);
        return;
    };
    let mut backup_only = item.clone();
    backup_only.retention = None;
    let ropts = RunOptions {
        dry_run: false,
        cancel: cancel.clone(),
        workdir: None,
    }
    .for_policy(&cx.policy);
    let mut runs = execute::run_item(&mut pool, &backup_only, reason, &ropts, &sink);
    drop(guard);
    if item.retention.is_some() {
        for r in runs.iter_mut().filter(|r| !r.is_failed()) {
            apply_retention(cx, &mut pool, item, r, cancel);
        }
    }
    report.newest = newest_per_target(&mut pool, item);
    let started = report.started;
    for r in runs {
        report
            .runs
            .push(target_row(&report.spec, trigger, started, &r));
    }
}

/// The item's retention at `r`'s repository, alone there.
fn apply_retention(
    cx: &JobContext,
    pool: &mut RepoPool<'_>,
    item: &Item,
    r: &mut TargetRun,
    cancel: &CancelToken,
) {
    let pool_name = r
        .fallback
        .as_ref()
        .map_or(r.target.clone(), |f| f.from.clone());
    let Some(_alone) = cx.gate.exclusive(&r.target, cancel) else {
        r.outcome = Outcome::Failed {
            kind: execute::FailureKind::Cancelled,
            message: "interrupted before retention".into(),
        };
        return;
    };
    let Ok(o) = pool.get(&pool_name) else { return };
    match retention::apply(&o.repo, item, false, cancel, &NoProgress) {
        Ok(out) => {
            r.stats.forgotten = out.forgotten;
            r.stats.wal_deleted = out.wal_deleted;
        }
        Err(e) => {
            let message = format!("retention: {}", e.one_line());
            let _ = records::save(&o.repo, &Record::run_failure(&item.name, &message));
            let kind = if cancel.is_cancelled() || e.is_cancelled() {
                execute::FailureKind::Cancelled
            } else {
                execute::FailureKind::Retention
            };
            r.outcome = Outcome::Failed { kind, message };
        }
    }
}

fn target_row(spec: &JobSpec, trigger: Trigger, started: DateTime<Utc>, r: &TargetRun) -> JobRun {
    let (result, error) = match &r.outcome {
        Outcome::Ok => (RunResult::Success, None),
        Outcome::Warning { unreadable } => (
            RunResult::Warning,
            Some(format!("{} files could not be read", unreadable.len())),
        ),
        Outcome::Failed { kind, message } => (
            if *kind == execute::FailureKind::Cancelled {
                RunResult::Cancelled
            } else {
                RunResult::Failed
            },
            Some(message.clone()),
        ),
        Outcome::Skipped { .. } => (RunResult::Success, None),
    };
    JobRun {
        job: spec.id.clone(),
        kind: spec.kind.as_str().to_string(),
        item: Some(r.item.clone()),
        target: r.target.clone(),
        trigger: trigger.as_str().to_string(),
        started,
        finished: Utc::now(),
        result,
        stats: serde_json::json!({
            "files": r.stats.files,
            "data_added": r.stats.data_added,
            "duration_seconds": r.stats.duration.as_secs_f64(),
            "snapshot": r.stats.snapshot,
            "forgotten": r.stats.forgotten,
            "wal_deleted": r.stats.wal_deleted,
            "fallback_from": r.fallback.as_ref().map(|f| f.from.clone()),
        }),
        error,
    }
}
