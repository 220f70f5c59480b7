//! State shared by the daemon's loop and its HTTP handlers, and the
//! repositories' truth as last read: the newest snapshot of every item per
//! target, and the newest archived WAL of PITR items.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use bunker_engine::pool::{PoolOptions, RepoPool};
use bunker_engine::status;
use bunker_policy::Policy;
use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot};

use crate::metrics::Metrics;
use crate::runner::{newest_per_target, oldest_newest, JobReport, LogSink};
use crate::scheduler::{RequestError, Scheduler};

/// What the loop is told.
#[derive(Debug)]
pub enum Msg {
    /// A job ended.
    Done(Box<JobReport>),
    /// A job's thread panicked (a bug); it counts as finished.
    Panicked(String),
    /// Run a job now (`POST /api/v1/items/NAME/run`).
    RunNow(String, oneshot::Sender<Result<(), RequestError>>),
    /// The source of a job changed (`on_change`).
    Changed(String, DateTime<Utc>),
    /// A refresh of the repositories' truth ended.
    Refreshed(Box<Truth>),
}

/// What the repositories said when last asked.
#[derive(Debug, Clone, Default)]
pub struct Truth {
    /// Per item, per target: the newest snapshot (`None`: none or unreadable).
    pub newest: BTreeMap<String, BTreeMap<String, Option<DateTime<Utc>>>>,
    /// Per PITR item: when the server last archived a WAL segment.
    pub wal: BTreeMap<String, Option<DateTime<Utc>>>,
    /// Per item with a `drill` section: its newest passed drill (start,
    /// measured RTO in seconds) as recorded in its first target.
    pub drills: BTreeMap<String, Option<(DateTime<Utc>, f64)>>,
    /// The 3-2-1 report's series (`bunker report compliance`): name, item,
    /// value.
    pub compliance: Vec<(&'static str, String, f64)>,
}

impl Truth {
    /// Ask the repositories (blocking: opens every target). With
    /// `create_missing`, first create the policy's repositories that do not
    /// exist, one after the other (as `bunker run` would): jobs starting
    /// together must not race to create one repository.
    pub fn read(policy: &Policy, pool: &PoolOptions, create_missing: bool) -> Truth {
        let sink = LogSink;
        if create_missing {
            let opts = PoolOptions {
                create: true,
                ..pool.clone()
            };
            let mut creating = RepoPool::new(policy, opts, &sink);
            let _one = crate::runner::OPENING
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            for name in policy.repositories.keys() {
                if let Err(e) = creating.get(name) {
                    tracing::warn!("repository {name}: {}", e.one_line());
                }
            }
        }
        let opts = PoolOptions {
            create: false,
            ..pool.clone()
        };
        let mut pool = RepoPool::new(policy, opts, &sink);
        let now = Utc::now();
        let mut t = Truth {
            compliance: bunker_engine::compliance::evaluate(&mut pool, now)
                .metrics()
                .into_iter()
                .map(|(name, item, v)| (name, item.to_string(), v))
                .collect(),
            ..Truth::default()
        };
        for item in &policy.items {
            t.newest
                .insert(item.name.clone(), newest_per_target(&mut pool, item));
            if item.drill.is_some() {
                let passed = item
                    .targets
                    .first()
                    .and_then(|t| pool.get(t).ok())
                    .and_then(|o| bunker_engine::drill::reports(&o.repo, &item.name).ok())
                    .and_then(|rs| rs.into_iter().find(|r| r.is_ok()))
                    .map(|r| (r.started.with_timezone(&Utc), r.rto_measured_seconds));
                t.drills.insert(item.name.clone(), passed);
            }
            if item.physical().is_some() {
                let age = status::item_status(&mut pool, item, now)
                    .into_iter()
                    .filter_map(|s| s.pitr.and_then(|p| p.archive_age_seconds))
                    .min();
                t.wal.insert(
                    item.name.clone(),
                    age.map(|a| now - chrono::Duration::seconds(a)),
                );
            }
        }
        t
    }

    /// The newest recovery point of `item`: the oldest of its targets'
    /// newest snapshots (each copy must be recent), or for a PITR item the
    /// newest archived WAL when that is later.
    pub fn recovery_point(&self, item: &str) -> Option<DateTime<Utc>> {
        let snap = self.newest.get(item).and_then(oldest_newest);
        let wal = self.wal.get(item).copied().flatten();
        match (snap, wal) {
            (Some(s), Some(w)) => Some(s.max(w)),
            (s, w) => s.or(w),
        }
    }
}

/// An item's RPO at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RpoEval {
    /// Older than the objective (or no recovery point at all).
    pub breached: bool,
    /// The newest recovery point's age.
    pub age: Option<Duration>,
    /// The objective.
    pub rpo: Duration,
    /// When it will be breached, if it is not.
    pub breach_at: Option<DateTime<Utc>>,
}

/// `item`'s RPO at `now` given its newest recovery point.
pub fn eval_rpo(point: Option<DateTime<Utc>>, rpo: Duration, now: DateTime<Utc>) -> RpoEval {
    let age = point.map(|p| (now - p).to_std().unwrap_or_default());
    let breached = age.is_none_or(|a| a > rpo);
    let breach_at = point
        .filter(|_| !breached)
        .and_then(|p| p.checked_add_signed(chrono::Duration::from_std(rpo).ok()?));
    RpoEval {
        breached,
        age,
        rpo,
        breach_at,
    }
}

/// Shared between the loop and the HTTP handlers. Locks are held briefly
/// and never across an `.await` or engine work.
pub struct Shared {
    /// The policy in force.
    pub policy: RwLock<Arc<Policy>>,
    /// The policy file.
    pub policy_path: PathBuf,
    /// Jobs and their state.
    pub scheduler: Mutex<Scheduler>,
    /// The Prometheus series.
    pub metrics: Mutex<Metrics>,
    /// The repositories' truth as last read.
    pub truth: Mutex<Truth>,
    /// The state directory (history, alert state).
    pub state_dir: PathBuf,
    /// How repositories are opened.
    pub pool: PoolOptions,
    /// Where the loop listens.
    pub tx: mpsc::Sender<Msg>,
    /// The first refresh is done and scheduling runs.
    pub ready: AtomicBool,
    /// A shutdown is under way.
    pub stopping: AtomicBool,
    /// Wakes the HTTP server's graceful shutdown (one waiter).
    pub stop_serving: tokio::sync::Notify,
    /// When the daemon started.
    pub started: DateTime<Utc>,
    /// The bearer token HTTP clients must present (`None`: no check).
    pub token: Option<String>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    /// The policy in force.
    pub fn policy(&self) -> Arc<Policy> {
        self.policy
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The scheduler.
    pub fn scheduler(&self) -> MutexGuard<'_, Scheduler> {
        lock(&self.scheduler)
    }

    /// The metrics.
    pub fn metrics(&self) -> MutexGuard<'_, Metrics> {
        lock(&self.metrics)
    }

    /// The truth.
    pub fn truth(&self) -> MutexGuard<'_, Truth> {
        lock(&self.truth)
    }

    /// Whether the daemon is ready (first refresh done, not stopping).
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst) && !self.stopping.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpo_is_breached_past_the_objective_or_without_any_recovery_point() {
        let now = Utc::now();
        let hour = Duration::from_secs(3600);
        let e = eval_rpo(Some(now - chrono::Duration::minutes(30)), hour, now);
        assert!(!e.breached);
        assert_eq!(e.breach_at, Some(now + chrono::Duration::minutes(30)));
        assert!(eval_rpo(Some(now - chrono::Duration::minutes(61)), hour, now).breached);
        assert!(eval_rpo(None, hour, now).breached);
    }

    #[test]
    fn a_pitr_items_recovery_point_is_its_newest_archived_wal() {
        let now = Utc::now();
        let mut t = Truth::default();
        let old = now - chrono::Duration::hours(20);
        t.newest.insert(
            "db".into(),
            BTreeMap::from([("a".into(), Some(old)), ("b".into(), Some(now))]),
        );
        assert_eq!(t.recovery_point("db"), Some(old), "the worst target counts");
        t.wal
            .insert("db".into(), Some(now - chrono::Duration::minutes(1)));
        assert_eq!(
            t.recovery_point("db"),
            Some(now - chrono::Duration::minutes(1))
        );
        t.newest
            .insert("x".into(), BTreeMap::from([("a".into(), None)]));
        assert_eq!(t.recovery_point("x"), None);
    }
}
