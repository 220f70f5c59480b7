//! Execution: one item against each of its targets — hooks, backup (or
//! stream), retention, records — with a typed outcome per target.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bunker_policy::{Item, Policy, Source};
use bunker_repo::backup::{self, BackupOptions};
use bunker_sources::{CancelToken, ExcludeOptions};
use chrono::{DateTime, Utc};

use crate::error::EngineError;
use crate::events::{Event, EventSink, Warning};
use crate::hooks::{run_hooks, HookKind};
use crate::plan::{plan, DueReason, Selection};
use crate::pool::{Opened, RepoPool};
use crate::records::{self, Record, RecordKind};
use crate::sources;

/// How a job runs items.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Back up and decide retention without writing anything (no hooks, no
    /// commands, no records).
    pub dry_run: bool,
    /// The job's cancellation.
    pub cancel: CancelToken,
    /// Where hooks and `kind: command` items run: the policy file's
    /// directory, as every relative path of the policy is resolved against
    /// it. [`run_policy`] fills it from [`Policy::source_path`] when unset;
    /// `None` means the current directory.
    pub workdir: Option<PathBuf>,
}

impl RunOptions {
    /// `self`, with [`RunOptions::workdir`] set to the directory of
    /// `policy`'s file when it is unset.
    pub fn for_policy(&self, policy: &Policy) -> RunOptions {
        let mut o = self.clone();
        if o.workdir.is_none() {
            o.workdir = policy_dir(policy);
        }
        o
    }
}

/// The directory of the policy's file (`None` when it was not loaded from
/// a file, or lies in the current directory).
pub fn policy_dir(policy: &Policy) -> Option<PathBuf> {
    policy
        .source_path
        .as_deref()
        .and_then(std::path::Path::parent)
        .filter(|d| !d.as_os_str().is_empty())
        .map(std::path::Path::to_path_buf)
}

/// What kind of failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The target repository (and its fallbacks) could not be opened.
    Repository,
    /// A `before` hook failed; the item was not backed up.
    Hook,
    /// The backup itself failed (source or repository).
    Backup,
    /// The backup succeeded, its retention failed.
    Retention,
    /// The job was cancelled.
    Cancelled,
}

/// Why an item did not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// Its schedule does not ask for a run now.
    NotDue,
}

/// The outcome of one item at one target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Backed up (and retention applied).
    Ok,
    /// Backed up, but some files could not be read: (path, message).
    Warning {
        /// The files left out.
        unreadable: Vec<(String, String)>,
    },
    /// Not backed up.
    Failed {
        /// Which step failed.
        kind: FailureKind,
        /// Why, as one line.
        message: String,
    },
    /// Not run.
    Skipped {
        /// Why.
        reason: SkipReason,
    },
}

impl Outcome {
    fn failed(kind: FailureKind, message: impl Into<String>) -> Outcome {
        Outcome::Failed {
            kind,
            message: message.into(),
        }
    }
}

/// A fallback was used: the item went to `to` because `from` was unreachable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fallback {
    /// The unreachable target.
    pub from: String,
    /// The repository used instead.
    pub to: String,
}

/// Statistics of one item at one target.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunStats {
    /// Files processed (files items) or snapshots stored (stream items).
    pub files: u64,
    /// Bytes added to the repository.
    pub data_added: u64,
    /// Wall time, hooks excluded.
    pub duration: Duration,
    /// Short ids of the snapshots written, comma-separated (`None` when a
    /// files backup wrote none).
    pub snapshot: Option<String>,
    /// Snapshots forgotten by retention.
    pub forgotten: usize,
    /// Archived WAL files deleted by PITR retention.
    pub wal_deleted: usize,
}

/// One item at one target (`target` is `"-"` when it failed or was skipped
/// before reaching any).
#[derive(Debug, Clone, PartialEq)]
pub struct TargetRun {
    /// The item.
    pub item: String,
    /// The repository used (a fallback's name when one was used).
    pub target: String,
    /// What happened.
    pub outcome: Outcome,
    /// Its statistics.
    pub stats: RunStats,
    /// Why it ran.
    pub reason: Option<DueReason>,
    /// The repository did not exist and was created.
    pub repository_created: bool,
    /// Set when a fallback repository was used.
    pub fallback: Option<Fallback>,
}

impl TargetRun {
    fn new(item: &str, target: &str, outcome: Outcome) -> TargetRun {
        TargetRun {
            item: item.to_string(),
            target: target.to_string(),
            outcome,
            stats: RunStats::default(),
            reason: None,
            repository_created: false,
            fallback: None,
        }
    }

    /// Whether this run failed.
    pub fn is_failed(&self) -> bool {
        matches!(self.outcome, Outcome::Failed { .. })
    }
}

/// Plan and run the selected items of `policy` in priority order; items not
/// due are reported as skipped. Stops early (the rest unrun) when the job is
/// cancelled.
pub fn run_policy(
    policy: &Policy,
    pool: &mut RepoPool<'_>,
    selection: &Selection,
    now: DateTime<Utc>,
    opts: &RunOptions,
    sink: &dyn EventSink,
) -> Result<Vec<TargetRun>, EngineError> {
    let planned = plan(policy, pool, selection, now, sink)?;
    let opts = &opts.for_policy(policy);
    let mut out = Vec::new();
    for p in planned {
        if opts.cancel.is_cancelled() {
            return Err(EngineError::Cancelled);
        }
        let Some(reason) = p.reason else {
            let r = TargetRun::new(
                &p.item.name,
                "-",
                Outcome::Skipped {
                    reason: SkipReason::NotDue,
                },
            );
            sink.event(&Event::TargetFinished(&r));
            out.push(r);
            continue;
        };
        out.extend(run_item(pool, p.item, reason, opts, sink));
    }
    Ok(out)
}

/// Run one item: `before` hooks, each target, then `after` or `on_failure`
/// hooks. Failures are recorded in the repositories (not in a dry run).
pub fn run_item(
    pool: &mut RepoPool<'_>,
    item: &Item,
    reason: DueReason,
    opts: &RunOptions,
    sink: &dyn EventSink,
) -> Vec<TargetRun> {
    sink.event(&Event::ItemStarted {
        item: &item.name,
        reason: &reason,
    });
    let hooks = &item.hooks;
    let base_env = vec![("BUNKER_ITEM", item.name.clone())];
    let hook_warning = |e: &(dyn std::error::Error + 'static)| {
        let w = Warning::HookFailed {
            item: item.name.clone(),
            error: crate::error::one_line(e),
        };
        sink.event(&Event::Warning(&w));
    };
    if !opts.dry_run {
        if let Err(e) = run_hooks(
            HookKind::Before,
            &hooks.before,
            hooks.timeout,
            &base_env,
            opts.workdir.as_deref(),
            &opts.cancel,
        ) {
            let msg = format!("skipped: {}", crate::error::one_line(&e));
            let mut env = base_env.clone();
            env.push(("BUNKER_ERROR", msg.clone()));
            if let Err(e) = run_hooks(
                HookKind::OnFailure,
                &hooks.on_failure,
                hooks.timeout,
                &env,
                opts.workdir.as_deref(),
                &opts.cancel,
            ) {
                hook_warning(&e);
            }
            for t in &item.targets {
                if let Ok(o) = pool.get(t) {
                    record(&o.repo, item, &msg, sink);
                }
            }
            let kind = if opts.cancel.is_cancelled() {
                FailureKind::Cancelled
            } else {
                FailureKind::Hook
            };
            let r = TargetRun::new(&item.name, "-", Outcome::failed(kind, msg));
            sink.event(&Event::TargetFinished(&r));
            return vec![r];
        }
    }
    let mut results = Vec::new();
    for t in &item.targets {
        let mut r = run_target(pool, item, t, opts, sink);
        r.reason = Some(reason.clone());
        sink.event(&Event::TargetFinished(&r));
        results.push(r);
    }
    if !opts.dry_run {
        let failed: Vec<&str> = results
            .iter()
            .filter_map(|r| match &r.outcome {
                Outcome::Failed { message, .. } => Some(message.as_str()),
                _ => None,
            })
            .collect();
        let hook = if failed.is_empty() {
            run_hooks(
                HookKind::After,
                &hooks.after,
                hooks.timeout,
                &base_env,
                opts.workdir.as_deref(),
                &opts.cancel,
            )
        } else {
            let mut env = base_env.clone();
            env.push(("BUNKER_ERROR", failed.join("; ")));
            run_hooks(
                HookKind::OnFailure,
                &hooks.on_failure,
                hooks.timeout,
                &env,
                opts.workdir.as_deref(),
                &opts.cancel,
            )
        };
        if let Err(e) = hook {
            hook_warning(&e);
        }
    }
    results
}

/// Save a failure record; a failure to save is a warning.
fn record(repo: &bunker_repo::Repository, item: &Item, error: &str, sink: &dyn EventSink) {
    if let Err(e) = records::save(repo, &Record::run_failure(&item.name, error)) {
        let w = Warning::RecordNotSaved {
            item: item.name.clone(),
            error: e.one_line(),
        };
        sink.event(&Event::Warning(&w));
    }
}

/// At most this many unreadable files are named in a success record (the
/// count is always exact): records stay small.
pub const MAX_RECORDED_UNREADABLE: usize = 1000;

/// Save a success record (best effort: a run that succeeded is not failed
/// for want of its record; the warning says so).
///
/// A backup that left files out (`unreadable`) is recorded as incomplete,
/// with the files, so that `status` shows the target as INCOMPLETE while
/// that snapshot is its newest.
fn record_success(o: &Opened, item: &Item, stats: &RunStats, unreadable: &[(String, String)]) {
    let files: Vec<serde_json::Value> = unreadable
        .iter()
        .take(MAX_RECORDED_UNREADABLE)
        .map(|(path, error)| serde_json::json!({ "path": path, "error": error }))
        .collect();
    let body = serde_json::json!({
        "incomplete": !unreadable.is_empty(),
        "unreadable": files,
        "unreadable_count": unreadable.len(),
        "files": stats.files,
        "data_added": stats.data_added,
        "duration_seconds": stats.duration.as_secs_f64(),
        "snapshot": stats.snapshot,
        "forgotten": stats.forgotten,
        "wal_deleted": stats.wal_deleted,
    });
    if let Err(e) = records::save(
        &o.repo,
        &Record::new(RecordKind::RunSuccess, &item.name, body),
    ) {
        tracing::warn!(
            "could not record the success of {} in the repository: {}",
            item.name,
            e.one_line()
        );
    }
}

fn backup_options(item: &Item, dry_run: bool, cancel: &CancelToken) -> Option<BackupOptions> {
    let Source::Files(files) = &item.source else {
        return None;
    };
    Some(BackupOptions {
        paths: files.paths.clone(),
        excludes: ExcludeOptions {
            excludes: files.excludes.clone(),
            ..Default::default()
        },
        tags: item.snapshot_tags(),
        dry_run,
        cancel: Some(cancel.clone()),
        ..Default::default()
    })
}

/// Back up `item` to `target` (or its fallback), then apply its retention.
fn run_target(
    pool: &mut RepoPool<'_>,
    item: &Item,
    target: &str,
    opts: &RunOptions,
    sink: &dyn EventSink,
) -> TargetRun {
    let start = Instant::now();
    let dry_run = opts.dry_run;
    // File items: warm the tree's metadata while the repository is opened.
    let files = backup_options(item, dry_run, &opts.cancel).map(|mut o| {
        o.warmer = backup::warm_up(&o);
        o
    });
    let o: Arc<Opened> = match pool.get(target) {
        Ok(o) => o,
        Err(e) => {
            let kind = if e.is_cancelled() {
                FailureKind::Cancelled
            } else {
                FailureKind::Repository
            };
            // The time spent trying to reach it (retries, fallbacks) is real.
            let mut r = TargetRun::new(&item.name, target, Outcome::failed(kind, e.one_line()));
            r.stats.duration = start.elapsed();
            return r;
        }
    };
    let mut res = TargetRun::new(&item.name, &o.name, Outcome::Ok);
    if o.name != target {
        res.fallback = Some(Fallback {
            from: target.to_string(),
            to: o.name.clone(),
        });
    }
    res.repository_created = o.created;
    let backed_up = match files {
        Some(bopts) => backup_files(&o, bopts, sink, &mut res),
        None => backup_stream(&o, item, opts, sink, &mut res),
    };
    if let Err(e) = backed_up {
        res.outcome = failure(FailureKind::Backup, e, &opts.cancel);
    } else {
        match crate::retention::apply(&o.repo, item, dry_run, &opts.cancel, sink.progress()) {
            Ok(r) => {
                res.stats.forgotten = r.forgotten;
                res.stats.wal_deleted = r.wal_deleted;
            }
            Err(e) => {
                let msg = format!("retention: {}", e.one_line());
                res.outcome = match failure(FailureKind::Retention, e, &opts.cancel) {
                    Outcome::Failed { kind, .. } => Outcome::failed(kind, msg),
                    other => other,
                };
            }
        }
    }
    res.stats.duration = start.elapsed();
    if !dry_run {
        match &res.outcome {
            Outcome::Failed { message, .. } => record(&o.repo, item, message, sink),
            Outcome::Warning { unreadable } => record_success(&o, item, &res.stats, unreadable),
            _ => record_success(&o, item, &res.stats, &[]),
        }
        crate::audit::run_target(&o.repo, &res, sink);
    }
    res
}

/// The outcome for an error: cancelled if the job was, else `kind`.
fn failure(kind: FailureKind, e: EngineError, cancel: &CancelToken) -> Outcome {
    let kind = if cancel.is_cancelled() || e.is_cancelled() {
        FailureKind::Cancelled
    } else {
        kind
    };
    Outcome::failed(kind, e.one_line())
}

fn backup_files(
    o: &Opened,
    bopts: BackupOptions,
    sink: &dyn EventSink,
    res: &mut TargetRun,
) -> Result<(), EngineError> {
    let sum = backup::backup(&o.repo, bopts, sink.progress())
        .map_err(|e| EngineError::failed("backup", e))?;
    res.stats.files = sum.total_files_processed;
    res.stats.data_added = sum.data_added;
    res.stats.snapshot = sum.snapshot_id.map(|id| id.short());
    if !sum.errors.is_empty() {
        res.outcome = Outcome::Warning {
            unreadable: sum.errors,
        };
    }
    Ok(())
}

fn backup_stream(
    o: &Opened,
    item: &Item,
    opts: &RunOptions,
    sink: &dyn EventSink,
    res: &mut TargetRun,
) -> Result<(), EngineError> {
    let snaps = if opts.dry_run {
        // Nothing is written: only check that the source can be read.
        sources::preflight(item)?;
        Vec::new()
    } else {
        sources::run_stream_item(
            &o.repo,
            item,
            sink.progress(),
            opts.workdir.as_deref(),
            &opts.cancel,
        )?
    };
    res.stats.snapshot = Some(
        snaps
            .iter()
            .map(|s| s.id.get(..8).unwrap_or(&s.id).to_string())
            .collect::<Vec<_>>()
            .join(","),
    );
    res.stats.files = snaps.len() as u64;
    res.stats.data_added = snaps.iter().map(|s| s.data_added).sum();
    Ok(())
}
