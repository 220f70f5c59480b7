//! An item's retention in one repository: `forget` by its keep rules (only
//! its own snapshots, by the item tag), then `prune` when anything was
//! removed. Postgres physical items use PITR-aware retention: base backups
//! are forgotten, the archived WAL no kept one needs is deleted, then prune.

use std::sync::Arc;

use bunker_policy::{Item, PostgresConfig};
use bunker_repo::forget::{self, ForgetOptions};
use bunker_repo::lock::RepoLock;
use bunker_repo::pg::retention::{self as pitr, PitrOptions, PitrReport};
use bunker_repo::progress::Progress;
use bunker_repo::prune::{self, PruneOptions};
use bunker_repo::snapshots::SnapshotFilter;
use bunker_repo::Repository;
use bunker_sources::CancelToken;

use crate::error::{Context, EngineError, Result};

/// What retention removed (or would remove, in a dry run).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionOutcome {
    /// Snapshots forgotten.
    pub forgotten: usize,
    /// Archived WAL files deleted (postgres physical items).
    pub wal_deleted: usize,
}

/// The filter selecting `item`'s snapshots.
pub fn item_filter(item: &Item) -> SnapshotFilter {
    SnapshotFilter {
        tags: vec![vec![item.tag()]],
        ..Default::default()
    }
}

/// PITR-aware retention options of a physical postgres item (its
/// `retention` rules on its snapshots, its `pitr` span).
pub fn pitr_options(item: &Item, cfg: &PostgresConfig, dry_run: bool) -> Result<PitrOptions> {
    let span = cfg
        .pitr
        .map(chrono::Duration::from_std)
        .transpose()
        .with_context(|| format!("pitr of item {:?} is too long", item.name))?;
    Ok(PitrOptions {
        policy: item
            .retention
            .as_ref()
            .map(|r| r.keep_policy())
            .unwrap_or_default(),
        filter: item_filter(item),
        pitr: span,
        dry_run,
        ..Default::default()
    })
}

/// How `forget --item` forgets a policy item's snapshots.
#[derive(Debug, Clone)]
pub enum ItemForget {
    /// By the item's keep rules, on the item's snapshots (`filter`).
    Rules {
        /// The item's keep rules.
        policy: bunker_repo::retention::KeepPolicy,
        /// The caller's filter, restricted to the item's snapshots.
        filter: SnapshotFilter,
    },
    /// PITR-aware (a postgres physical item): base backups and WAL.
    Pitr(PitrOptions),
}

/// The plan of `forget --item NAME`: the item's keep rules applied to its
/// snapshots among those `filter` selects (each tag group also needs the
/// item's tag); PITR-aware for postgres physical items.
pub fn item_forget(
    policy: &bunker_policy::Policy,
    name: &str,
    filter: SnapshotFilter,
    group_by: bunker_repo::retention::GroupBy,
    dry_run: bool,
) -> Result<ItemForget> {
    let invalid = |m: String| Err(EngineError::Invalid(m));
    let Some(item) = policy.item(name) else {
        return invalid(format!("no item {name:?} in the policy"));
    };
    let Some(ret) = &item.retention else {
        return invalid(format!(
            "item {name:?} has no retention in the policy: nothing to forget"
        ));
    };
    let Some(cfg) = item.physical() else {
        let mut filter = filter;
        filter.tags.push(vec![item.tag()]);
        return Ok(ItemForget::Rules {
            policy: ret.keep_policy(),
            filter,
        });
    };
    let mut opts = pitr_options(item, cfg, dry_run)?;
    opts.group_by = group_by;
    // Only this item's snapshots: its tag AND each --tag group.
    if !filter.tags.is_empty() {
        opts.filter.tags = (filter.tags.iter())
            .map(|g| g.iter().cloned().chain([item.tag()]).collect())
            .collect();
    }
    opts.filter.hosts = filter.hosts;
    opts.filter.paths = filter.paths;
    Ok(ItemForget::Pitr(opts))
}

/// Apply a physical item's retention: forget base backups, delete the WAL
/// no kept one needs. The caller holds an exclusive lock (none for a dry run).
pub fn apply_pitr(repo: &Repository, item: &Item, dry_run: bool) -> Result<PitrReport> {
    let Some(cfg) = item.physical() else {
        return Err(EngineError::Invalid(format!(
            "item {:?} is not a physical postgres item",
            item.name
        )));
    };
    let opts = pitr_options(item, cfg, dry_run)?;
    pitr::apply(repo, &opts).with_context(|| format!("retention of item {:?}", item.name))
}

/// Forget by the item's retention, then prune if anything was removed. Takes
/// the exclusive lock itself (none in a dry run). `cancel` stops the prune at
/// its next safe point; `progress` follows it.
pub fn apply(
    repo: &Arc<Repository>,
    item: &Item,
    dry_run: bool,
    cancel: &CancelToken,
    progress: &dyn Progress,
) -> Result<RetentionOutcome> {
    let Some(ret) = &item.retention else {
        return Ok(RetentionOutcome::default());
    };
    let lock = if dry_run {
        None
    } else {
        Some(RepoLock::acquire(repo, true).context("locking for retention")?)
    };
    let prune_opts = PruneOptions {
        cancel: Some(cancel.clone()),
        ..PruneOptions::default().with_crash_knob_from_env()
    };
    if item.physical().is_some() {
        let report = apply_pitr(repo, item, dry_run)?;
        if !dry_run && !report.removed.is_empty() {
            prune::prune_unlocked(repo, &prune_opts, progress).context("prune")?;
        }
        return Ok(RetentionOutcome {
            forgotten: report.removed.len(),
            wal_deleted: report.plan.wal_delete.len(),
        });
    }
    let opts = ForgetOptions {
        policy: ret.keep_policy(),
        filter: item_filter(item),
        dry_run,
        ..Default::default()
    };
    let report = if dry_run {
        forget::forget_unlocked(repo, &opts)?
    } else {
        forget::forget_unlocked(repo, &opts).context("forget")?
    };
    if !dry_run && !report.removed.is_empty() {
        prune::prune_unlocked(repo, &prune_opts, progress).context("prune")?;
    }
    drop(lock);
    Ok(RetentionOutcome {
        forgotten: report.removed.len(),
        wal_deleted: 0,
    })
}
