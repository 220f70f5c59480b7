//! The scheduler: which jobs start now, and when to wake up next. Pure: the
//! clock is passed in, the repositories' state is told to it
//! ([`Scheduler::set_last`]), so every rule is tested with a fake clock.
//!
//! Rules:
//! * **Due-ness comes from the last run**: for a backup the time of the
//!   item's newest snapshot in its targets (the repository is the truth; the
//!   runner asks the engine again before running), for maintenance the last
//!   successful run. A job is due at the first slot of its schedule after
//!   that time (after the last attempt, if later: a failing job is retried
//!   at its next slot, not in a loop). A job that never ran is due now.
//! * **Catch-up exactly once**: after downtime or suspend every missed slot
//!   collapses into one run, because the next slot is computed from the
//!   last run, not enumerated.
//! * **Clock jumps**: a forward jump is downtime (each overdue job runs
//!   once); after a backward jump a last run "in the future" counts as now,
//!   so jobs are not skipped for the length of the jump.
//! * **Jitter**: a scheduled start is delayed by a fixed pseudo-random part
//!   of `jitter`, derived from the job and the slot (stable across wake-ups).
//! * **Never twice**: a running job is not started again.
//! * **Order and limits**: critical first, then the longest overdue, then
//!   policy order; at most `max_concurrent` running; a job starts only when
//!   the [`RepoGate`] grants its repositories, and a due exclusive job keeps
//!   new shared jobs off its repository until it got in.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bunker_policy::{DaemonConfig, Schedule};
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::gate::{GateGuard, RepoGate};
use crate::job::{Access, JobSpec, Trigger};

/// `on_change` jobs run at the latest this many debounce periods after
/// the first change, even if changes keep coming.
pub const DEBOUNCE_MAX_FACTOR: u32 = 10;

#[derive(Debug, Clone)]
struct Entry {
    spec: JobSpec,
    last: Option<DateTime<Utc>>,
    last_attempt: Option<DateTime<Utc>>,
    running: bool,
    requested: Option<Trigger>,
    /// First and latest change not yet run (`on_change`).
    changes: Option<(DateTime<Utc>, DateTime<Utc>)>,
    /// A last run found "in the future" (the clock went back), and the
    /// time it was first seen: it counts as that time, stably.
    clamped: Option<(DateTime<Utc>, DateTime<Utc>)>,
}

impl Entry {
    fn base(&self) -> Option<DateTime<Utc>> {
        match (self.last, self.last_attempt) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }
}

/// A job to start now, holding its repositories.
#[derive(Debug)]
pub struct Start {
    /// The job.
    pub spec: JobSpec,
    /// Why.
    pub trigger: Trigger,
    /// Its repositories, held until dropped.
    pub guard: GateGuard,
}

/// Why a request was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// No such job.
    #[error("no job {0:?}")]
    Unknown(String),
    /// It is running now.
    #[error("{0} is running")]
    Running(String),
}

/// A job's scheduling state, for the API.
#[derive(Debug, Clone, Serialize)]
pub struct JobState {
    /// The job's id.
    pub id: String,
    /// `backup`, `check`, ….
    pub kind: &'static str,
    /// Its schedule, as written.
    pub schedule: Option<String>,
    /// Its last run (backups: the newest snapshot).
    pub last: Option<DateTime<Utc>>,
    /// When it is due next (`None`: only on request).
    pub next: Option<DateTime<Utc>>,
    /// Running now.
    pub running: bool,
}

/// The jobs and their state.
#[derive(Debug)]
pub struct Scheduler {
    entries: Vec<Entry>,
    jitter: Option<Duration>,
    debounce: Duration,
    max_concurrent: usize,
}

impl Scheduler {
    /// A scheduler for `specs` with the daemon settings of `cfg`.
    pub fn new(cfg: &DaemonConfig, specs: Vec<JobSpec>) -> Scheduler {
        let mut s = Scheduler {
            entries: Vec::new(),
            jitter: None,
            debounce: cfg.debounce,
            max_concurrent: 1,
        };
        s.reconfigure(cfg, specs);
        s
    }

    /// New settings and jobs (a reloaded policy): the state of jobs that
    /// still exist (same id) is kept, running ones included.
    pub fn reconfigure(&mut self, cfg: &DaemonConfig, specs: Vec<JobSpec>) {
        self.jitter = cfg.jitter;
        self.debounce = cfg.debounce;
        self.max_concurrent = cfg.max_concurrent.max(1);
        let mut old: HashMap<String, Entry> = self
            .entries
            .drain(..)
            .map(|e| (e.spec.id.clone(), e))
            .collect();
        self.entries = specs
            .into_iter()
            .map(|spec| match old.remove(&spec.id) {
                Some(mut e) => {
                    e.spec = spec;
                    e
                }
                None => Entry {
                    spec,
                    last: None,
                    last_attempt: None,
                    running: false,
                    requested: None,
                    changes: None,
                    clamped: None,
                },
            })
            .collect();
    }

    /// The specs of the jobs.
    pub fn specs(&self) -> impl Iterator<Item = &JobSpec> {
        self.entries.iter().map(|e| &e.spec)
    }

    fn entry(&mut self, id: &str) -> Option<&mut Entry> {
        self.entries.iter_mut().find(|e| e.spec.id == id)
    }

    /// The last run of `id` as the repository (or history) says.
    pub fn set_last(&mut self, id: &str, last: Option<DateTime<Utc>>) {
        if let Some(e) = self.entry(id) {
            e.last = last;
        }
    }

    /// Run `id` as soon as its repositories allow.
    pub fn request(&mut self, id: &str, trigger: Trigger) -> Result<(), RequestError> {
        let e = self
            .entry(id)
            .ok_or_else(|| RequestError::Unknown(id.to_string()))?;
        if e.running {
            return Err(RequestError::Running(id.to_string()));
        }
        e.requested = Some(trigger);
        Ok(())
    }

    /// The source of `id` changed at `at` (`on_change`).
    pub fn changed(&mut self, id: &str, at: DateTime<Utc>) {
        if let Some(e) = self.entry(id) {
            e.changes = Some(match e.changes {
                Some((first, _)) => (first, at),
                None => (at, at),
            });
        }
    }

    /// Whether `id` is running.
    pub fn is_running(&self, id: &str) -> bool {
        self.entries.iter().any(|e| e.spec.id == id && e.running)
    }

    /// How many jobs run.
    pub fn running(&self) -> usize {
        self.entries.iter().filter(|e| e.running).count()
    }

    fn jitter_for(&self, id: &str, slot: DateTime<Utc>) -> chrono::Duration {
        let Some(j) = self.jitter.filter(|j| !j.is_zero()) else {
            return chrono::Duration::zero();
        };
        // FNV-1a over the id and the slot: stable, spread, no state.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in id.bytes().chain(slot.timestamp().to_le_bytes()) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        let ms = u64::try_from(j.as_millis()).unwrap_or(u64::MAX).max(1);
        chrono::Duration::milliseconds(i64::try_from(h % ms).unwrap_or(0))
    }

    /// When `e` is due, and why (`None`: not until requested or changed).
    fn due(&self, e: &Entry, now: DateTime<Utc>) -> Option<(DateTime<Utc>, Trigger)> {
        if let Some(t) = e.requested {
            return Some((now, t));
        }
        let mut due: Option<(DateTime<Utc>, Trigger)> = None;
        if let Some((first, latest)) = e.changes {
            let d = chrono::Duration::from_std(self.debounce).unwrap_or_default();
            let at = (latest + d).min(first + d * DEBOUNCE_MAX_FACTOR as i32);
            due = Some((at, Trigger::Change));
        }
        let sched = match &e.spec.schedule {
            None => None,
            Some(s) => {
                // A last run "in the future" (the clock went back) counts
                // as the time it was first seen so.
                let base = e.base().map(|b| match e.clamped {
                    _ if b <= now => b,
                    Some((orig, seen)) if orig == b => seen.min(now),
                    _ => now,
                });
                match (base, s) {
                    (None, _) => Some((now, Trigger::NeverRun)),
                    (Some(_), Schedule::OnChange) => None,
                    (Some(b), s) => {
                        let slot = s.next_after(b);
                        (slot != DateTime::<Utc>::MAX_UTC).then(|| {
                            let at = slot
                                .checked_add_signed(self.jitter_for(&e.spec.id, slot))
                                .unwrap_or(slot);
                            (at, Trigger::Schedule)
                        })
                    }
                }
            }
        };
        match (due, sched) {
            (Some(a), Some(b)) => Some(if b.0 < a.0 { b } else { a }),
            (a, b) => a.or(b),
        }
    }

    /// The jobs to start at `now`, holding their repositories through
    /// `gate`; they count as running until [`Scheduler::finished`].
    pub fn select(&mut self, now: DateTime<Utc>, gate: &Arc<RepoGate>) -> Vec<Start> {
        for e in &mut self.entries {
            match e.base() {
                Some(b) if b > now => {
                    if e.clamped.is_none_or(|(orig, _)| orig != b) {
                        e.clamped = Some((b, now));
                    }
                }
                _ => e.clamped = None,
            }
        }
        let mut due: Vec<(usize, DateTime<Utc>, Trigger)> = self
            .entries
            .iter()
            .enumerate()
            .filter(|(_, e)| !e.running)
            .filter_map(|(i, e)| self.due(e, now).map(|(at, t)| (i, at, t)))
            .filter(|(_, at, _)| *at <= now)
            .collect();
        due.sort_by_key(|(i, at, _)| {
            let s = &self.entries[*i].spec;
            (std::cmp::Reverse(s.priority), *at, s.order)
        });
        let mut running = self.running();
        let mut kept_off: BTreeSet<String> = BTreeSet::new();
        let mut out = Vec::new();
        for (i, _, trigger) in due {
            if running >= self.max_concurrent {
                break;
            }
            let spec = &self.entries[i].spec;
            if spec.resources.iter().any(|(r, _)| kept_off.contains(r)) {
                continue;
            }
            let Some(guard) = gate.try_acquire(&spec.resources) else {
                if spec.resources.iter().any(|(_, a)| *a == Access::Exclusive) {
                    kept_off.extend(spec.resources.iter().map(|(r, _)| r.clone()));
                }
                continue;
            };
            let e = &mut self.entries[i];
            e.running = true;
            e.requested = None;
            e.changes = None;
            e.last_attempt = Some(now);
            running += 1;
            out.push(Start {
                spec: e.spec.clone(),
                trigger,
                guard,
            });
        }
        out
    }

    /// `id` finished; `last` is its new last run (backups: the newest
    /// snapshot as the repository says; maintenance: the start of this run
    /// when it succeeded, else the previous value).
    pub fn finished(&mut self, id: &str, last: Option<DateTime<Utc>>) {
        if let Some(e) = self.entry(id) {
            e.running = false;
            e.last = last;
        }
    }

    /// When something is due next (the earliest due time of a job that is
    /// not running), to sleep until then.
    pub fn next_wake(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.entries
            .iter()
            .filter(|e| !e.running)
            .filter_map(|e| self.due(e, now).map(|(at, _)| at))
            .min()
    }

    /// Every job's state at `now`.
    pub fn states(&self, now: DateTime<Utc>) -> Vec<JobState> {
        self.entries
            .iter()
            .map(|e| JobState {
                id: e.spec.id.clone(),
                kind: e.spec.kind.as_str(),
                schedule: e.spec.schedule.as_ref().map(ToString::to_string),
                last: e.last,
                next: if e.running {
                    None
                } else {
                    self.due(e, now).map(|(at, _)| at)
                },
                running: e.running,
            })
            .collect()
    }
}
