//! Restore drills: restore an item into a fresh sandbox, prove the data
//! (verification against the snapshot, `pg_amcheck`, `PRAGMA
//! integrity_check`, the item's `checks`), measure every phase, and store
//! the [`DrillReport`] as a [`RecordKind::Drill`] record in the repository.
//!
//! One file per kind of source: `files` (files and command items),
//! `sqlite`, `physical` and `logical` (PostgreSQL); [`verify`] compares a
//! restored tree with its snapshot, [`checks`] runs the checks,
//! [`pgserver`] starts and always stops temporary PostgreSQL servers,
//! `report` holds the [`DrillReport`] and reads it back.
//!
//! The drill runs against the item's first target (where a physical
//! item's WAL is archived), or its fallback. [`run_drill`] returns `Err`
//! only when the drill cannot start (unknown item, unreachable repository,
//! nothing to restore) or was cancelled; a drill that ran and failed —
//! a damaged pack, a mismatching file, a failed check, a server that does
//! not come up — is a report with status [`DrillStatus::Failed`], stored
//! like a passed one. The daemon schedules drills with [`due`] and reads
//! [`last_report`].

pub mod checks;
mod files;
mod logical;
pub mod pgserver;
mod physical;
mod report;
mod sqlite;
pub mod verify;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bunker_policy::{DrillConfig, DrillPick, Item, ItemKind, Source};
use bunker_repo::lock::RepoLock;
use bunker_repo::snapshots::{self, SnapshotEntry};
use bunker_repo::Repository;
use bunker_sources::CancelToken;
use chrono::{DateTime, FixedOffset, Utc};
use rand::Rng;

use crate::error::{Context, EngineError, Result};
use crate::events::EventSink;
use crate::pool::RepoPool;
use crate::records::{self, Record, RecordKind};
use crate::retention::item_filter;

pub use checks::CheckResult;
pub(crate) use physical::{item_base_backups as physical_base_backups, time_target};
pub use report::{kind_name, last_report, reports, DrillReport, DrillStatus, Phase, RecoveryInfo};
pub use verify::VerifySummary;

/// How one drill runs (the command line's flags; the policy gives the rest).
#[derive(Debug, Clone, Default)]
pub struct DrillOptions {
    /// Restore this snapshot (an id or prefix) instead of picking one.
    pub snapshot: Option<String>,
    /// Restore the state at this time: the newest snapshot at or before it;
    /// postgres physical items recover to exactly this time.
    pub time: Option<DateTime<FixedOffset>>,
    /// Overrides the policy's `drill.pick`.
    pub pick: Option<DrillPick>,
    /// Keep the sandbox afterwards (its path is in the report).
    pub keep: bool,
    /// Overrides the policy's `drill.sandbox` (the sandbox's parent).
    pub sandbox: Option<PathBuf>,
    /// The job's cancellation.
    pub cancel: CancelToken,
    /// The bunker program a restored PostgreSQL server's `restore_command`
    /// calls for WAL (`bunker pg wal-fetch`); needed by postgres physical
    /// drills. The command line passes its own executable.
    pub bunker_exe: Option<PathBuf>,
    /// Do not store the report in the repository.
    pub no_record: bool,
}

/// A drill in progress: what every kind needs.
pub(crate) struct Drill<'a> {
    pub(crate) policy: &'a bunker_policy::Policy,
    pub(crate) item: &'a Item,
    pub(crate) cfg: DrillConfig,
    pub(crate) opts: &'a DrillOptions,
    pub(crate) repo: Arc<Repository>,
    pub(crate) sandbox: PathBuf,
    pub(crate) report: DrillReport,
    /// Deadline of each wait.
    pub(crate) timeout: Duration,
    pub(crate) progress: &'a dyn bunker_repo::progress::Progress,
}

impl Drill<'_> {
    /// Run `f` as the phase `name`, measured whether it succeeds or not.
    pub(crate) fn phase<T>(
        &mut self,
        name: &str,
        f: impl FnOnce(&mut Self) -> Result<T>,
    ) -> Result<T> {
        tracing::info!("drill of {}: {name}", self.item.name);
        let t = Instant::now();
        let r = f(self);
        self.report.phases.push(Phase {
            name: name.to_string(),
            seconds: t.elapsed().as_secs_f64(),
        });
        r
    }

    /// `Err(Cancelled)` once the job is cancelled.
    pub(crate) fn check_cancel(&self) -> Result<()> {
        self.opts.cancel.check().map_err(|_| EngineError::Cancelled)
    }

    /// A directory of the sandbox, created.
    pub(crate) fn subdir(&self, name: &str) -> Result<PathBuf> {
        let p = self.sandbox.join(name);
        std::fs::create_dir_all(&p).with_context(|| format!("creating {}", p.display()))?;
        Ok(p)
    }

    /// The pick in effect.
    pub(crate) fn pick(&self) -> DrillPick {
        self.opts.pick.unwrap_or(self.cfg.pick)
    }
}

/// Run one drill of `item` (see the module documentation).
pub fn run_drill(
    pool: &mut RepoPool<'_>,
    item: &Item,
    opts: &DrillOptions,
    sink: &dyn EventSink,
) -> Result<DrillReport> {
    let policy = pool.policy();
    if opts.snapshot.is_some() && opts.time.is_some() {
        return Err(EngineError::Invalid(
            "give a snapshot or a time, not both".into(),
        ));
    }
    let target = item
        .targets
        .first()
        .ok_or_else(|| EngineError::Invalid(format!("item {:?} has no target", item.name)))?;
    let opened = pool
        .get(target)
        .map_err(|e| EngineError::Lower(Box::new(Shared(e))))?;
    let repo = opened.repo.clone();
    let _lock = RepoLock::acquire_read(&repo).context("locking the repository")?;
    repo.load_index().context("loading the index")?;
    let cfg = item.drill.clone().unwrap_or_default();
    let parent = opts
        .sandbox
        .clone()
        .or_else(|| cfg.sandbox.clone())
        .unwrap_or_else(std::env::temp_dir);
    let started = chrono::Local::now().fixed_offset();
    let sandbox = Sandbox::create(&parent, &item.name, opts.keep)?;
    let pick_name = if opts.snapshot.is_some() {
        "snapshot"
    } else if opts.time.is_some() {
        "time"
    } else {
        opts.pick.unwrap_or(cfg.pick).as_str()
    };
    let timeout = cfg.timeout.unwrap_or(bunker_policy::DEFAULT_DRILL_TIMEOUT);
    let mut d = Drill {
        policy,
        item,
        cfg,
        opts,
        repo,
        sandbox: sandbox.path.clone(),
        report: DrillReport {
            item: item.name.clone(),
            kind: kind_name(item).to_string(),
            repository: opened.name.clone(),
            hostname: gethostname::gethostname().to_string_lossy().into_owned(),
            started,
            pick: pick_name.to_string(),
            snapshots: Vec::new(),
            snapshot_time: None,
            status: DrillStatus::Passed,
            error: None,
            phases: Vec::new(),
            rto_measured_seconds: 0.0,
            rto_target_seconds: item.rto.map(|r| r.as_secs()),
            rto_exceeded: false,
            verify: None,
            checks: Vec::new(),
            recovery: None,
            sandbox: sandbox.path.display().to_string(),
            kept: opts.keep,
            record_error: None,
        },
        timeout,
        progress: sink.progress(),
    };
    let t0 = Instant::now();
    let ran = match (&item.source, item.kind()) {
        (Source::Postgres(_), _) if item.physical().is_some() => physical::run(&mut d),
        (Source::Postgres(_), _) => logical::run(&mut d),
        (_, ItemKind::Sqlite) => sqlite::run(&mut d),
        _ => files::run(&mut d),
    };
    let measured = t0.elapsed();
    if opts.cancel.is_cancelled() {
        // An interrupted drill proves nothing: no report is stored.
        return Err(EngineError::Cancelled);
    }
    let mut report = d.report;
    report.rto_measured_seconds = measured.as_secs_f64();
    match ran {
        Ok(()) => {}
        Err(e) if e.is_cancelled() || opts.cancel.is_cancelled() => {
            return Err(EngineError::Cancelled)
        }
        Err(EngineError::Invalid(m)) if report.snapshots.is_empty() => {
            // Nothing was restored: not a drill, a request that cannot be met.
            return Err(EngineError::Invalid(m));
        }
        Err(e) => {
            report.status = DrillStatus::Failed;
            report.error = Some(e.one_line());
        }
    }
    if report.checks.iter().any(|c| !c.ok && !c.skipped) && report.status == DrillStatus::Passed {
        report.status = DrillStatus::Failed;
        let failed: Vec<&str> = report
            .checks
            .iter()
            .filter(|c| !c.ok && !c.skipped)
            .map(|c| c.name.as_str())
            .collect();
        report.error = Some(format!("check(s) failed: {}", failed.join(", ")));
    }
    report.rto_exceeded = item.rto.is_some_and(|r| measured > r);
    drop(sandbox);
    // A drill reads data out of the repository: it is audited, recorded or not.
    let (outcome, error) = if report.is_ok() {
        (bunker_repo::audit::Outcome::Success, None)
    } else {
        (bunker_repo::audit::Outcome::Failure, report.error.clone())
    };
    crate::audit::append(
        &opened.repo,
        &bunker_repo::audit::Entry::new("drill")
            .snapshots(report.snapshots.clone())
            .outcome(outcome, error)
            .details(serde_json::json!({
                "item": item.name,
                "rto_measured_seconds": report.rto_measured_seconds,
                "rto_exceeded": report.rto_exceeded,
            })),
        sink,
    );
    if !opts.no_record {
        let body = serde_json::to_value(&report)
            .map_err(|e| EngineError::failed("encoding the drill report", e))?;
        if let Err(e) = records::save(
            &opened.repo,
            &Record::new(RecordKind::Drill, &item.name, body),
        ) {
            tracing::warn!(
                "could not store the drill report of {}: {}",
                item.name,
                e.one_line()
            );
            report.record_error = Some(e.one_line());
        }
    }
    Ok(report)
}

/// An error the pool shares, passed on with its causes (so front ends
/// still find a wrong password or a missing repository in the chain).
#[derive(Debug)]
pub(crate) struct Shared(pub(crate) Arc<EngineError>);

impl std::fmt::Display for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Shared {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(self.0.as_ref())
    }
}

/// A fresh directory for one drill, removed when dropped unless kept.
pub(crate) struct Sandbox {
    pub(crate) path: PathBuf,
    keep: bool,
}

impl Sandbox {
    /// `parent/bunker-drill-ITEM-TIME-RANDOM`, mode 0700; it must not exist.
    pub(crate) fn create(parent: &Path, item: &str, keep: bool) -> Result<Sandbox> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating the sandbox directory {}", parent.display()))?;
        let name = format!(
            "bunker-drill-{item}-{}-{:04x}",
            Utc::now().format("%Y%m%dT%H%M%S"),
            rand::thread_rng().gen::<u16>()
        );
        let path = parent.join(name);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .with_context(|| format!("creating the sandbox {}", path.display()))?;
        let path = std::path::absolute(&path).unwrap_or(path);
        Ok(Sandbox { path, keep })
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if !self.keep {
            if let Err(e) = std::fs::remove_dir_all(&self.path) {
                tracing::warn!("could not remove the sandbox {}: {e}", self.path.display());
            }
        }
    }
}

/// The snapshots of `item` in `repo`, oldest first.
pub(crate) fn item_snapshots(repo: &Repository, item: &Item) -> Result<Vec<SnapshotEntry>> {
    Ok(snapshots::filtered(repo, &item_filter(item), None)?)
}

/// The snapshot a drill of a snapshot-based item restores, among
/// `candidates` (oldest first, all of the item): the given id, the newest
/// at or before the given time, or by the pick.
pub(crate) fn choose_snapshot(
    d: &Drill<'_>,
    candidates: &[SnapshotEntry],
) -> Result<SnapshotEntry> {
    let none = || {
        EngineError::Invalid(format!(
            "item {:?} has no snapshot to drill in repository {:?} (run `bunker run --item {}` first)",
            d.item.name, d.report.repository, d.item.name
        ))
    };
    if let Some(spec) = &d.opts.snapshot {
        let e = snapshots::find(&d.repo, spec, &item_filter(d.item))
            .with_context(|| format!("finding snapshot {spec:?} of item {:?}", d.item.name))?;
        return Ok(e);
    }
    if let Some(t) = d.opts.time {
        return candidates
            .iter()
            .rev()
            .find(|e| e.snapshot.time <= t)
            .cloned()
            .ok_or_else(|| {
                EngineError::Invalid(format!(
                    "item {:?} has no snapshot at or before {}",
                    d.item.name,
                    t.to_rfc3339()
                ))
            });
    }
    match d.pick() {
        DrillPick::Random if !candidates.is_empty() => {
            let i = rand::thread_rng().gen_range(0..candidates.len());
            Ok(candidates[i].clone())
        }
        _ => candidates.last().cloned().ok_or_else(none),
    }
}

/// Whether a drill of `item` is due at `now`, given when the last one
/// started: the item has a `drill.schedule` and it fired since (or no drill
/// ran yet).
pub fn is_due(item: &Item, last: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
    item.drill
        .as_ref()
        .and_then(|d| d.schedule.as_ref())
        .is_some_and(|s| s.is_due(last, now))
}

/// Whether a drill of `item` is due at `now`, from the last drill report in
/// the item's first target (see [`is_due`]).
pub fn due(pool: &mut RepoPool<'_>, item: &Item, now: DateTime<Utc>) -> Result<bool> {
    if item
        .drill
        .as_ref()
        .and_then(|d| d.schedule.as_ref())
        .is_none()
    {
        return Ok(false);
    }
    let Some(target) = item.targets.first() else {
        return Ok(false);
    };
    let o = pool
        .get(target)
        .map_err(|e| EngineError::Lower(Box::new(Shared(e))))?;
    let last = last_report(&o.repo, &item.name)?.map(|r| r.started.with_timezone(&Utc));
    Ok(is_due(item, last, now))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_follows_the_drill_schedule() {
        let p = bunker_policy::Policy::from_str(
            "repositories:\n  r: {location: /r, password: x}\nitems:\n  - name: a\n    paths: [/a]\n    drill: {schedule: \"every 7d\"}\n  - name: b\n    paths: [/b]\n",
            "t.yaml",
        )
        .unwrap();
        let now = Utc::now();
        let a = p.item("a").unwrap();
        assert!(is_due(a, None, now));
        assert!(!is_due(a, Some(now - chrono::Duration::days(6)), now));
        assert!(is_due(a, Some(now - chrono::Duration::days(7)), now));
        assert!(!is_due(p.item("b").unwrap(), None, now));
    }

    #[test]
    fn the_sandbox_is_removed_unless_kept() {
        let d = tempfile::tempdir().unwrap();
        let s = Sandbox::create(d.path(), "x", false).unwrap();
        let p = s.path.clone();
        std::fs::write(p.join("f"), b"x").unwrap();
        drop(s);
        assert!(!p.exists());
        let s = Sandbox::create(d.path(), "x", true).unwrap();
        let p = s.path.clone();
        drop(s);
        assert!(p.exists());
    }
}
