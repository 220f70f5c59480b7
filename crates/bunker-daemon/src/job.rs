//! Jobs: what the daemon runs (an item's backup, or a repository's
//! maintenance), which repositories each one needs and how, and why it
//! starts.

use bunker_policy::{MaintenanceKind, Policy, Priority, Schedule};
use bunker_repo::check::ReadData;
use serde::Serialize;

/// What a job does. New kinds (restore drills) are new variants.
#[derive(Debug, Clone, PartialEq)]
pub enum JobKind {
    /// Back up an item to its targets, then apply its retention.
    Backup {
        /// The item.
        item: String,
    },
    /// Check a repository, reading this much of its data.
    Check {
        /// The repository.
        repository: String,
        /// How much data is read.
        read_data: ReadData,
    },
    /// Every item's retention in a repository, then one prune.
    Prune {
        /// The repository.
        repository: String,
    },
    /// A restore drill of an item (`drill.schedule`): restore into a
    /// sandbox, verify, run the item's checks, measure the RTO.
    Drill {
        /// The item.
        item: String,
    },
    /// Copy the snapshots of some items to another repository.
    Copy {
        /// The source.
        from: String,
        /// The destination.
        to: String,
        /// The items copied (empty: every item targeting `from`).
        items: Vec<String>,
    },
}

impl JobKind {
    /// `backup`, `check`, `prune` or `copy` (the history's and metrics'
    /// `kind`).
    pub fn as_str(&self) -> &'static str {
        match self {
            JobKind::Backup { .. } => "backup",
            JobKind::Check { .. } => "check",
            JobKind::Prune { .. } => "prune",
            JobKind::Copy { .. } => "copy",
            JobKind::Drill { .. } => "drill",
        }
    }

    /// The item of a backup or drill job.
    pub fn item(&self) -> Option<&str> {
        match self {
            JobKind::Backup { item } | JobKind::Drill { item } => Some(item),
            _ => None,
        }
    }
}

/// How a job uses a repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    /// Alongside other shared users (backups, check, copy).
    Shared,
    /// Alone (prune).
    Exclusive,
}

/// A job as the scheduler knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct JobSpec {
    /// Unique and stable across reloads: `backup:ITEM`, `check:REPO`,
    /// `prune:REPO`, `copy:FROM->TO`.
    pub id: String,
    /// What it does.
    pub kind: JobKind,
    /// When it runs (`None`: only on request).
    pub schedule: Option<Schedule>,
    /// Critical jobs start first.
    pub priority: Priority,
    /// Position in the policy (ties after priority and due time).
    pub order: usize,
    /// The repositories it needs, and how, while it starts. A backup's
    /// retention asks for each target exclusively later, by itself.
    pub resources: Vec<(String, Access)>,
}

/// Why a job starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// Its schedule fired since its last run.
    Schedule,
    /// It never ran.
    NeverRun,
    /// `run_at_start`.
    Start,
    /// Asked for (`POST /api/v1/items/NAME/run`).
    Manual,
    /// Its source changed (`on_change`).
    Change,
}

impl Trigger {
    /// The word stored in the history.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Schedule => "schedule",
            Trigger::NeverRun => "never_run",
            Trigger::Start => "start",
            Trigger::Manual => "manual",
            Trigger::Change => "change",
        }
    }
}

/// Every job of `policy`: one backup per item (critical first is the
/// scheduler's business), a drill per item with a `drill.schedule`, then
/// the maintenance jobs of `daemon.jobs`.
pub fn jobs_of(policy: &Policy) -> Vec<JobSpec> {
    let mut out = Vec::new();
    for (order, item) in policy.items.iter().enumerate() {
        let mut resources: Vec<(String, Access)> = Vec::new();
        for t in &item.targets {
            let mut names = vec![t.clone()];
            if let Some(r) = policy.repositories.get(t) {
                names.extend(r.fallbacks.iter().cloned());
            }
            for n in names {
                if !resources.iter().any(|(r, _)| *r == n) {
                    resources.push((n, Access::Shared));
                }
            }
        }
        out.push(JobSpec {
            id: format!("backup:{}", item.name),
            kind: JobKind::Backup {
                item: item.name.clone(),
            },
            schedule: item.schedule.clone(),
            priority: item.priority,
            order,
            resources,
        });
    }
    for (order, item) in policy.items.iter().enumerate() {
        let Some(schedule) = item.drill.as_ref().and_then(|d| d.schedule.clone()) else {
            continue;
        };
        out.push(JobSpec {
            id: format!("drill:{}", item.name),
            kind: JobKind::Drill {
                item: item.name.clone(),
            },
            schedule: Some(schedule),
            priority: item.priority,
            order,
            resources: item
                .targets
                .first()
                .map(|t| vec![(t.clone(), Access::Shared)])
                .unwrap_or_default(),
        });
    }
    for (i, job) in policy.daemon.jobs.iter().enumerate() {
        let repo = job.repository.clone();
        let (kind, resources) = match &job.kind {
            MaintenanceKind::Check { read_data } => (
                JobKind::Check {
                    repository: repo.clone(),
                    read_data: *read_data,
                },
                vec![(repo, Access::Shared)],
            ),
            MaintenanceKind::Prune => (
                JobKind::Prune {
                    repository: repo.clone(),
                },
                vec![(repo, Access::Exclusive)],
            ),
            MaintenanceKind::Copy { to, items } => (
                JobKind::Copy {
                    from: repo.clone(),
                    to: to.clone(),
                    items: items.clone(),
                },
                vec![(repo, Access::Shared), (to.clone(), Access::Shared)],
            ),
        };
        out.push(JobSpec {
            id: job.name(),
            kind,
            schedule: Some(job.schedule.clone()),
            priority: Priority::Important,
            order: policy.items.len() + i,
            resources,
        });
    }
    out
}
