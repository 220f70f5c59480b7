//! Runbooks ([`bunker_policy::runbook`]): plan one, drill it against
//! sandboxes, or execute it for real.
//!
//! * [`plan()`]: the steps with the snapshots and WAL they would use, the
//!   RPO achievable now and the RTO expected from the last drill.
//! * [`run()`] with [`Mode::Drill`]: every restore goes into a fresh
//!   sandbox directory, PostgreSQL starts on a free loopback port with its
//!   socket in the sandbox, commands see `BUNKER_RUNBOOK_MODE=drill` and the
//!   sandbox paths; nothing is touched in place. Each step is measured, the
//!   total is the measured RTO, and the report is stored as a
//!   [`RecordKind::Runbook`] record.
//! * [`run()`] with [`Mode::Execute`]: for real; destructive steps are
//!   confirmed first unless `yes`. An in-place restore first moves what it
//!   replaces to a safety copy ([`rollback`]); when a later step fails the
//!   safety copies are put back, and they are removed only when every step
//!   succeeded. Every step is audited.

mod command;
mod probe;
pub mod rollback;
mod steps;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bunker_policy::runbook::{Action, Runbook};
use bunker_policy::Item;
use bunker_repo::audit::{Entry, Outcome};
use chrono::{DateTime, FixedOffset, Utc};
use serde::Serialize;

use crate::error::{EngineError, Result};
use crate::events::EventSink;
use crate::pool::{Opened, RepoPool};
use crate::records::{self, Record, RecordKind};
use crate::CancelToken;

/// Drill (sandboxes) or execute (for real).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Against sandboxes; nothing in place is touched.
    Drill,
    /// For real, with safety copies and rollback.
    Execute,
}

impl Mode {
    /// `drill` or `execute` (the value of `BUNKER_RUNBOOK_MODE`).
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Drill => "drill",
            Mode::Execute => "execute",
        }
    }
}

/// What the front end provides to a run.
pub struct RunOptions<'a> {
    /// Drill or execute.
    pub mode: Mode,
    /// Pass every confirmation (`--yes`).
    pub yes: bool,
    /// Ask a person (`confirm` steps and destructive steps when executing
    /// without `yes`); `false` stops the runbook.
    pub ask: &'a dyn Fn(&str) -> bool,
    /// Progress lines (the engine never prints).
    pub progress: &'a dyn Fn(&str),
    /// The bunker executable, for PostgreSQL's `restore_command`.
    pub bunker_exe: PathBuf,
    /// Where sandboxes are made (default: the system's temporary directory).
    pub sandbox_root: Option<PathBuf>,
    /// Keep the sandbox after a drill.
    pub keep_sandbox: bool,
    /// Stops the run at the next step.
    pub cancel: CancelToken,
}

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// Done.
    Ok,
    /// Failed: the runbook stopped here.
    Failed,
    /// Not run (an earlier step failed).
    NotRun,
}

/// One step's result.
#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    /// The step's label.
    pub name: String,
    /// Its kind.
    pub kind: &'static str,
    /// How it ended.
    pub status: StepStatus,
    /// Wall time in seconds.
    pub seconds: f64,
    /// What it did, one line.
    pub detail: String,
    /// Why it failed.
    pub error: Option<String>,
    /// The snapshot restored.
    pub snapshot: Option<String>,
    /// The time of the data restored (snapshot time, or the recovery target).
    pub data_time: Option<DateTime<FixedOffset>>,
}

/// The result of a drill or an execution.
#[derive(Debug, Clone, Serialize)]
pub struct RunbookReport {
    /// The runbook.
    pub runbook: String,
    /// Drill or execute.
    pub mode: Mode,
    /// When it started.
    pub started: DateTime<FixedOffset>,
    /// Every step completed.
    pub ok: bool,
    /// Measured RTO: the wall time of the whole run, in seconds.
    pub rto_seconds: f64,
    /// The runbook's objective.
    pub rto_target_seconds: Option<u64>,
    /// Measured within the objective (true without one).
    pub rto_met: bool,
    /// The age of the oldest data restored, at the start, in seconds.
    pub rpo_seconds: Option<i64>,
    /// The runbook's objective.
    pub rpo_target_seconds: Option<u64>,
    /// Achieved within the objective (true without one or without data).
    pub rpo_met: bool,
    /// Per step.
    pub steps: Vec<StepReport>,
    /// In-place changes put back after the failure.
    pub rolled_back: Vec<String>,
    /// The sandbox directory of a drill (removed unless kept).
    pub sandbox: Option<PathBuf>,
}

impl RunbookReport {
    /// Whether the run passed: every step, the RTO and the RPO.
    pub fn passed(&self) -> bool {
        self.ok && self.rto_met && self.rpo_met
    }
}

/// A planned step.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedStep {
    /// The step's label.
    pub name: String,
    /// Its kind.
    pub kind: &'static str,
    /// What it will do, one line.
    pub what: String,
    /// Whether executing it replaces data.
    pub destructive: bool,
    /// The snapshot it would restore.
    pub snapshot: Option<String>,
    /// That snapshot's time.
    pub snapshot_time: Option<DateTime<FixedOffset>>,
    /// The archived WAL it would replay (first .. newest).
    pub wal: Option<String>,
    /// Why the data cannot be found now.
    pub problem: Option<String>,
}

/// What a runbook would do now.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// The runbook.
    pub runbook: String,
    /// The steps.
    pub steps: Vec<PlannedStep>,
    /// The age of the oldest data it would restore (seconds, now).
    pub rpo_seconds: Option<i64>,
    /// The runbook's RPO.
    pub rpo_target_seconds: Option<u64>,
    /// The measured RTO of the last drill (seconds).
    pub rto_expected_seconds: Option<f64>,
    /// When that drill ran.
    pub last_drill: Option<DateTime<FixedOffset>>,
    /// The runbook's RTO.
    pub rto_target_seconds: Option<u64>,
}

/// The repository holding `item`'s backups: its first target that opens.
pub(crate) fn item_repo(pool: &mut RepoPool<'_>, item: &Item) -> Result<Arc<Opened>> {
    let mut last = None;
    for t in &item.targets {
        match pool.get(t) {
            Ok(o) => return Ok(o),
            Err(e) => last = Some(e),
        }
    }
    Err(EngineError::Invalid(match last {
        Some(e) => format!(
            "no repository of item {} can be opened: {}",
            item.name,
            e.one_line()
        ),
        None => format!("item {} has no target repository", item.name),
    }))
}

fn item_of<'p>(pool: &RepoPool<'p>, name: &str) -> Result<&'p Item> {
    pool.policy()
        .item(name)
        .ok_or_else(|| EngineError::Invalid(format!("no item {name:?} in the policy")))
}

/// The runbook named `name` in the pool's policy.
pub fn find<'p>(pool: &RepoPool<'p>, name: &str) -> Result<&'p Runbook> {
    let policy = pool.policy();
    policy
        .runbooks
        .iter()
        .find(|r| r.name == name)
        .ok_or_else(|| {
            let names: Vec<&str> = policy.runbooks.iter().map(|r| r.name.as_str()).collect();
            EngineError::Invalid(format!(
                "no runbook {name:?} in the policy (runbooks: {})",
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            ))
        })
}

/// What `runbook` would do now (nothing is changed).
pub fn plan(pool: &mut RepoPool<'_>, runbook: &Runbook, now: DateTime<Utc>) -> Plan {
    let mut out = Vec::new();
    let mut oldest: Option<DateTime<FixedOffset>> = None;
    for step in &runbook.steps {
        let mut p = PlannedStep {
            name: step.name.clone(),
            kind: step.action.kind(),
            what: steps::describe(&step.action),
            destructive: step.action.is_destructive(),
            snapshot: None,
            snapshot_time: None,
            wal: None,
            problem: None,
        };
        let chosen = match &step.action {
            Action::Restore {
                item,
                snapshot,
                time,
                ..
            } => item_of(pool, item).and_then(|i| {
                let o = item_repo(pool, i)?;
                let e = steps::choose_snapshot(&o.repo, i, snapshot.as_deref(), time.as_deref())?;
                Ok((e.id.to_string(), e.snapshot.time, None))
            }),
            Action::PgRestore { item, target, .. } => item_of(pool, item).and_then(|i| {
                let o = item_repo(pool, i)?;
                let b = steps::choose_base_backup(&o.repo, i, target)?;
                let wal = steps::wal_range(&o.repo, &b.info.start_wal);
                Ok((b.entry.id.to_string(), b.end_time, wal))
            }),
            _ => {
                out.push(p);
                continue;
            }
        };
        match chosen {
            Ok((id, t, wal)) => {
                p.snapshot = Some(id);
                p.snapshot_time = Some(t);
                p.wal = wal;
                if oldest.is_none_or(|o| t < o) {
                    oldest = Some(t);
                }
            }
            Err(e) => p.problem = Some(e.one_line()),
        }
        out.push(p);
    }
    let last = last_drill(pool, runbook);
    Plan {
        runbook: runbook.name.clone(),
        steps: out,
        rpo_seconds: oldest.map(|t| (now - t.with_timezone(&Utc)).num_seconds()),
        rpo_target_seconds: runbook.rpo.map(|d| d.as_secs()),
        rto_expected_seconds: last
            .as_ref()
            .and_then(|r| r.body.get("rto_seconds").and_then(|v| v.as_f64())),
        last_drill: last.map(|r| r.time),
        rto_target_seconds: runbook.rto.map(|d| d.as_secs()),
    }
}

/// The repositories a runbook uses (its items' first reachable targets).
fn repos_of(pool: &mut RepoPool<'_>, runbook: &Runbook) -> Vec<Arc<Opened>> {
    let mut out: BTreeMap<String, Arc<Opened>> = BTreeMap::new();
    for step in &runbook.steps {
        let (Action::Restore { item, .. } | Action::PgRestore { item, .. }) = &step.action else {
            continue;
        };
        if let Ok(i) = item_of(pool, item) {
            if let Ok(o) = item_repo(pool, i) {
                out.insert(o.name.clone(), o);
            }
        }
    }
    out.into_values().collect()
}

fn last_drill(pool: &mut RepoPool<'_>, runbook: &Runbook) -> Option<Record> {
    repos_of(pool, runbook)
        .iter()
        .filter_map(|o| records::list(&o.repo).ok())
        .flatten()
        .map(|s| s.record)
        .filter(|r| {
            r.kind == RecordKind::Runbook
                && r.item == runbook.name
                && r.body.get("mode").and_then(|m| m.as_str()) == Some("drill")
                && r.body.get("ok").and_then(|m| m.as_bool()) == Some(true)
        })
        .max_by_key(|r| r.time)
}

/// Drill or execute `runbook` (see the module documentation). The report
/// is stored as a record in the repositories it used; an `Err` is returned
/// only when the run could not start.
pub fn run(
    pool: &mut RepoPool<'_>,
    runbook: &Runbook,
    opts: &RunOptions<'_>,
    sink: &dyn EventSink,
) -> Result<RunbookReport> {
    let started_wall = chrono::Local::now().fixed_offset();
    let started = Instant::now();
    let mut state = steps::State::new(opts)?;
    let repos = repos_of(pool, runbook);
    let mut reports: Vec<StepReport> = Vec::new();
    let mut failed = false;
    for (n, step) in runbook.steps.iter().enumerate() {
        if failed {
            reports.push(StepReport {
                name: step.name.clone(),
                kind: step.action.kind(),
                status: StepStatus::NotRun,
                seconds: 0.0,
                detail: String::new(),
                error: None,
                snapshot: None,
                data_time: None,
            });
            continue;
        }
        (opts.progress)(&format!(
            "step {}: {}",
            step.name,
            steps::describe(&step.action)
        ));
        let t = Instant::now();
        let res = if opts.cancel.is_cancelled() {
            Err(EngineError::Cancelled)
        } else {
            steps::run_step(pool, &mut state, n + 1, &step.action, opts)
        };
        let seconds = t.elapsed().as_secs_f64();
        let report = match res {
            Ok(done) => StepReport {
                name: step.name.clone(),
                kind: step.action.kind(),
                status: StepStatus::Ok,
                seconds,
                detail: done.detail,
                error: None,
                snapshot: done.snapshot,
                data_time: done.data_time,
            },
            Err(e) => {
                failed = true;
                StepReport {
                    name: step.name.clone(),
                    kind: step.action.kind(),
                    status: StepStatus::Failed,
                    seconds,
                    detail: String::new(),
                    error: Some(e.one_line()),
                    snapshot: None,
                    data_time: None,
                }
            }
        };
        if opts.mode == Mode::Execute {
            audit_step(&repos, runbook, &report, sink);
        }
        (opts.progress)(&match &report.error {
            None => format!("step {}: done in {seconds:.1}s", step.name),
            Some(e) => format!("step {}: FAILED after {seconds:.1}s: {e}", step.name),
        });
        reports.push(report);
    }
    let rolled_back = state.finish(failed, opts);
    let rto_seconds = started.elapsed().as_secs_f64();
    let oldest = reports.iter().filter_map(|r| r.data_time).min();
    let rpo_seconds = oldest.map(|t| (started_wall - t).num_seconds());
    let report = RunbookReport {
        runbook: runbook.name.clone(),
        mode: opts.mode,
        started: started_wall,
        ok: !failed,
        rto_seconds,
        rto_target_seconds: runbook.rto.map(|d| d.as_secs()),
        rto_met: runbook.rto.is_none_or(|d| rto_seconds <= d.as_secs_f64()),
        rpo_seconds,
        rpo_target_seconds: runbook.rpo.map(|d| d.as_secs()),
        rpo_met: match (runbook.rpo, rpo_seconds) {
            (Some(d), Some(s)) => s.max(0).unsigned_abs() <= d.as_secs(),
            _ => true,
        },
        steps: reports,
        rolled_back,
        sandbox: state.sandbox_kept(),
    };
    store(&repos, &report, sink);
    Ok(report)
}

fn audit_step(repos: &[Arc<Opened>], runbook: &Runbook, step: &StepReport, sink: &dyn EventSink) {
    let (outcome, error) = match step.status {
        StepStatus::Failed => (Outcome::Failure, step.error.clone()),
        _ => (Outcome::Success, None),
    };
    let entry = Entry::new("runbook execute")
        .snapshots(step.snapshot.iter())
        .outcome(outcome, error)
        .details(serde_json::json!({
            "runbook": runbook.name,
            "step": step.name,
            "kind": step.kind,
            "detail": step.detail,
        }));
    for o in repos {
        crate::audit::append(&o.repo, &entry, sink);
    }
}

fn store(repos: &[Arc<Opened>], report: &RunbookReport, sink: &dyn EventSink) {
    let body = serde_json::to_value(report).unwrap_or(serde_json::Value::Null);
    let record = Record::new(RecordKind::Runbook, &report.runbook, body);
    let snapshots: Vec<&String> = report
        .steps
        .iter()
        .filter_map(|s| s.snapshot.as_ref())
        .collect();
    for o in repos {
        if let Err(e) = records::save(&o.repo, &record) {
            let w = crate::events::Warning::RecordNotSaved {
                item: report.runbook.clone(),
                error: e.one_line(),
            };
            sink.event(&crate::events::Event::Warning(&w));
        }
        if report.mode == Mode::Drill {
            let entry = Entry::new("runbook drill")
                .snapshots(snapshots.iter())
                .outcome(
                    if report.passed() {
                        Outcome::Success
                    } else {
                        Outcome::Failure
                    },
                    None,
                )
                .details(serde_json::json!({
                    "runbook": report.runbook,
                    "rto_seconds": report.rto_seconds,
                }));
            crate::audit::append(&o.repo, &entry, sink);
        }
    }
}

/// How long a step of kind `wait_for` polls between tries.
pub(crate) const POLL: Duration = Duration::from_millis(200);
