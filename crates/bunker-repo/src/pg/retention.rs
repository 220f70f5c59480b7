//! PITR-aware retention: which base backups and which archived WAL files
//! a policy like "every point of the last 7 days, one base backup a day for
//! 35 days" keeps, and applying that decision safely.
//!
//! Kept base backups are those the retention rules keep, plus the newest
//! base backup that had finished at or before `now - pitr` (the *anchor*:
//! recovery to the start of the window begins there) and every base backup
//! newer than it. WAL kept:
//!
//! * for every kept base backup, the segments from its start to its stop
//!   position (so it can be made consistent);
//! * every segment from the start of the oldest base backup of the window
//!   (the anchor, or the oldest kept one without `pitr`) onwards, on every
//!   timeline: the continuous stretch that point-in-time recovery replays,
//!   including segments still being archived and those of a base backup in
//!   progress;
//! * every timeline history file: PostgreSQL finds the newest timeline by
//!   probing history files one number after the other, and a promoted server
//!   picks the next free number from them, so a hole in that sequence breaks
//!   recovery (they are a few bytes each);
//! * `.backup` files of kept backups (they lie in kept ranges).
//!
//! Everything else is deleted, only after the forgotten snapshots are gone,
//! and only from a complete listing: any error reading snapshots or the
//! archive aborts before anything is removed.

use std::collections::BTreeSet;

use crate::retention::{GroupBy, KeepPolicy};
use bunker_format::SnapshotId;
use bunker_sources::postgres::{Segment, WalFileName, DEFAULT_SEGMENT_SIZE};
use bunker_storage::FileType;
use chrono::{DateTime, Duration, FixedOffset, Utc};
use serde::Serialize;

use crate::error::{RepoError, Result};
use crate::forget::{self, ForgetGroup, ForgetOptions, KeepReason};
use crate::pg::base::{base_backups_of, BaseBackup};
use crate::pg::wal_archive;
use crate::snapshots::{self, SnapshotFilter};
use crate::Repository;

/// The reason shown for base backups kept only for the PITR window.
pub const PITR_REASON: &str = "pitr window";

/// What the keep computation works on.
#[derive(Debug, Clone)]
pub struct PitrInput<'a> {
    /// The item's complete base backups (the ones retention decides on).
    pub backups: &'a [BaseBackup],
    /// Other complete base backups in the repository: always kept, and their
    /// start..stop WAL with them.
    pub others: &'a [BaseBackup],
    /// The snapshots the retention rules keep; `None` when there are no
    /// rules, which keeps everything (base backups and WAL).
    pub kept_by_rules: Option<&'a BTreeSet<SnapshotId>>,
    /// The PITR span; `None` makes the window start at the oldest kept base
    /// backup (what `pg wal-prune` always did).
    pub pitr: Option<Duration>,
    pub now: DateTime<Utc>,
    pub segment_size: u64,
}

/// The decision, before anything is removed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PitrPlan {
    /// The item's base backups kept, oldest first.
    pub keep: Vec<SnapshotId>,
    /// The item's base backups to forget.
    pub forget: Vec<SnapshotId>,
    /// Kept only because the PITR window needs them.
    pub kept_for_pitr: Vec<SnapshotId>,
    /// The base backup the continuous window starts at.
    pub window_backup: Option<SnapshotId>,
    /// The earliest point recoverable continuously up to the newest WAL.
    pub window_start: Option<DateTime<FixedOffset>>,
    /// `now - pitr`, when a span is configured.
    pub window_required: Option<DateTime<FixedOffset>>,
    /// Whether the window reaches back to `window_required` (true without `pitr`).
    pub window_covers: bool,
    /// WAL files kept and deleted (names, sorted).
    pub wal_keep: Vec<String>,
    pub wal_delete: Vec<String>,
}

/// Sorted by when they finished (the earliest point each can reach).
fn by_end(backups: &[BaseBackup]) -> Vec<&BaseBackup> {
    let mut v: Vec<&BaseBackup> = backups.iter().collect();
    v.sort_by_key(|b| (b.end_time, b.info.stop_lsn));
    v
}

/// Index (into `by_end` order) of the first base backup of the window: the
/// newest that finished at or before `cutoff`, or 0 when none did.
fn anchor_index(sorted: &[&BaseBackup], cutoff: DateTime<Utc>) -> usize {
    sorted
        .iter()
        .rposition(|b| b.end_time.with_timezone(&Utc) <= cutoff)
        .unwrap_or(0)
}

/// The base backups that only need to stay consistent (start..stop WAL),
/// because they finished before the anchor of a `pitr` window ending at
/// `cutoff`. Used by `wal-verify` to tell deliberate gaps from damage.
pub fn point_only(backups: &[BaseBackup], cutoff: DateTime<Utc>) -> BTreeSet<SnapshotId> {
    let sorted = by_end(backups);
    let a = anchor_index(&sorted, cutoff);
    sorted[..a].iter().map(|b| b.entry.id).collect()
}

/// Decide which base backups and WAL files stay. Pure.
pub fn plan(input: &PitrInput<'_>, wal: &[(String, WalFileName)]) -> PitrPlan {
    let size = input.segment_size.max(1);
    let sorted = by_end(input.backups);
    let cutoff = input.pitr.map(|p| input.now - p);
    let window_required = cutoff.map(|c| c.fixed_offset());
    let Some(rules) = input.kept_by_rules else {
        // No rules: everything stays.
        return PitrPlan {
            keep: sorted.iter().map(|b| b.entry.id).collect(),
            window_backup: sorted.first().map(|b| b.entry.id),
            window_start: sorted.first().map(|b| b.end_time),
            window_required,
            window_covers: match (cutoff, sorted.first()) {
                (Some(c), Some(b)) => b.end_time.with_timezone(&Utc) <= c,
                (Some(_), None) => false,
                (None, _) => true,
            },
            wal_keep: wal.iter().map(|(n, _)| n.clone()).collect(),
            ..Default::default()
        };
    };
    let window: Vec<&BaseBackup> = match cutoff {
        Some(c) => sorted[anchor_index(&sorted, c).min(sorted.len())..].to_vec(),
        None => sorted
            .iter()
            .filter(|b| rules.contains(&b.entry.id))
            .copied()
            .collect(),
    };
    let in_window: BTreeSet<SnapshotId> = window.iter().map(|b| b.entry.id).collect();
    let mut out = PitrPlan {
        window_required,
        ..Default::default()
    };
    for b in &sorted {
        let id = b.entry.id;
        if rules.contains(&id) {
            out.keep.push(id);
        } else if in_window.contains(&id) {
            out.keep.push(id);
            out.kept_for_pitr.push(id);
        } else {
            out.forget.push(id);
        }
    }
    let kept: Vec<&BaseBackup> = sorted
        .iter()
        .copied()
        .filter(|b| out.keep.contains(&b.entry.id))
        .chain(input.others.iter())
        .collect();
    // The continuous stretch starts at the oldest backup of the window, and
    // never later than the newest kept backup (recovery to "now" and base
    // backups in progress need the newest WAL whatever the rules say).
    let newest_kept = kept.iter().max_by_key(|b| (b.end_time, b.info.stop_lsn));
    let first = window
        .first()
        .copied()
        .into_iter()
        .chain(newest_kept.copied())
        .min_by_key(|b| b.info.start_lsn);
    out.window_backup = first.map(|b| b.entry.id);
    out.window_start = first.map(|b| b.end_time);
    out.window_covers = match (cutoff, first) {
        (None, _) => true,
        (Some(c), Some(b)) => b.end_time.with_timezone(&Utc) <= c,
        (Some(_), None) => false,
    };
    let Some(first) = first else {
        // Nothing kept at all: no base backup to measure against, delete no WAL.
        out.wal_keep = wal.iter().map(|(n, _)| n.clone()).collect();
        return out;
    };
    let continuous_from = first.info.start_lsn.segno(size);
    let ranges: Vec<(u64, u64)> = kept
        .iter()
        .map(|b| (b.info.start_lsn.segno(size), b.info.stop_lsn.segno(size)))
        .collect();
    for (name, w) in wal {
        let keep = match w.segment(size) {
            None => true, // timeline history
            Some(Segment { segno, .. }) => {
                segno >= continuous_from || ranges.iter().any(|(a, z)| (*a..=*z).contains(&segno))
            }
        };
        if keep {
            out.wal_keep.push(name.clone());
        } else {
            out.wal_delete.push(name.clone());
        }
    }
    out.wal_keep.sort();
    out.wal_delete.sort();
    out
}

/// The WAL segment size that names every backup's start segment as its tags
/// say (`pg-start-wal` against `pg-start-lsn`); the default size when it
/// fits or there is nothing to tell from. `None` when no size fits.
pub fn infer_segment_size(backups: &[BaseBackup]) -> Option<u64> {
    let fits = |size: u64| {
        backups.iter().all(|b| {
            b.info.start_wal.is_empty()
                || Segment::containing(b.info.timeline, b.info.start_lsn, size).file_name(size)
                    == b.info.start_wal
        })
    };
    if fits(DEFAULT_SEGMENT_SIZE) {
        return Some(DEFAULT_SEGMENT_SIZE);
    }
    (0..=10).map(|k| (1u64 << 20) << k).find(|s| fits(*s))
}

/// What [`apply`] does.
#[derive(Debug, Clone, Default)]
pub struct PitrOptions {
    /// The retention rules (empty = keep everything).
    pub policy: KeepPolicy,
    pub group_by: GroupBy,
    /// The item's snapshots (e.g. tag `bunker:item=NAME`).
    pub filter: SnapshotFilter,
    pub pitr: Option<Duration>,
    /// Reference time (default: now).
    pub now: Option<DateTime<Utc>>,
    /// WAL segment size; default: inferred from the base backups' tags.
    pub segment_size: Option<u64>,
    pub dry_run: bool,
}

/// What [`apply`] decided and did.
#[derive(Debug, Clone, Serialize)]
pub struct PitrReport {
    /// The retention decisions in `forget --json` shape, with the base
    /// backups kept for the window moved to `keep` (reason `pitr window`).
    pub groups: Vec<ForgetGroup>,
    /// Snapshots removed (or, dry run, to be removed).
    pub removed: Vec<SnapshotId>,
    pub plan: PitrPlan,
    pub segment_size: u64,
    pub dry_run: bool,
}

/// Forget the item's base backups no rule and no window keeps, then delete
/// the WAL no kept base backup needs. The caller holds an exclusive lock
/// (or none for a dry run). Nothing is removed unless every snapshot and
/// the whole archive listing could be read.
pub fn apply(repo: &Repository, opts: &PitrOptions) -> Result<PitrReport> {
    let now = opts.now.unwrap_or_else(Utc::now);
    let all = snapshots::list(repo)?;
    let items: Vec<_> = all
        .iter()
        .filter(|e| opts.filter.matches(&e.snapshot))
        .cloned()
        .collect();
    let fopts = ForgetOptions {
        policy: opts.policy.clone(),
        group_by: opts.group_by,
        filter: opts.filter.clone(),
        dry_run: true,
        now: Some(now),
    };
    let mut groups = forget::plan(&items, &fopts)?;
    let rule_keep: BTreeSet<SnapshotId> = groups
        .iter()
        .flat_map(|g| g.keep.iter().map(|s| s.id))
        .collect();
    let item_ids: BTreeSet<SnapshotId> = items.iter().map(|e| e.id).collect();
    let (mine, others): (Vec<BaseBackup>, Vec<BaseBackup>) = base_backups_of(all)
        .into_iter()
        .partition(|b| item_ids.contains(&b.entry.id));
    let every: Vec<BaseBackup> = mine.iter().chain(&others).cloned().collect();
    let segment_size = match opts.segment_size {
        Some(s) => s,
        None => infer_segment_size(&every).ok_or_else(|| {
            RepoError::Invalid(
                "the base backups' tags fit no WAL segment size between 1 MiB and 1 GiB; \
                 refusing to delete WAL"
                    .into(),
            )
        })?,
    };
    if let Some(b) = every.iter().find(|b| {
        !b.info.start_wal.is_empty()
            && Segment::containing(b.info.timeline, b.info.start_lsn, segment_size)
                .file_name(segment_size)
                != b.info.start_wal
    }) {
        return Err(RepoError::Invalid(format!(
            "base backup {} starts in {} but a {} MiB segment size names it differently; \
             wrong --segment-size? refusing to delete WAL",
            b.entry.id.short(),
            b.info.start_wal,
            segment_size >> 20
        )));
    }
    let wal = wal_archive::list(repo)?;
    let input = PitrInput {
        backups: &mine,
        others: &others,
        kept_by_rules: (!opts.policy.is_empty()).then_some(&rule_keep),
        pitr: opts.pitr,
        now,
        segment_size,
    };
    let plan = plan(&input, &wal);
    let pitr_keep: BTreeSet<SnapshotId> = plan.kept_for_pitr.iter().copied().collect();
    move_to_keep(&mut groups, &pitr_keep);
    let removed: Vec<SnapshotId> = groups
        .iter()
        .flat_map(|g| g.remove.iter().flatten().map(|s| s.id))
        .collect();
    if !opts.dry_run {
        for id in &removed {
            match repo.storage().remove(FileType::Snapshot, &id.to_hex()) {
                Ok(()) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
        }
        for name in &plan.wal_delete {
            match wal_archive::remove(repo, name) {
                Ok(()) => {}
                Err(RepoError::Storage(e)) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(PitrReport {
        groups,
        removed,
        plan,
        segment_size,
        dry_run: opts.dry_run,
    })
}

/// Move the snapshots in `ids` from the groups' remove lists to keep.
fn move_to_keep(groups: &mut [ForgetGroup], ids: &BTreeSet<SnapshotId>) {
    for g in groups {
        let Some(remove) = g.remove.take() else {
            continue;
        };
        let (back, rest): (Vec<_>, Vec<_>) = remove.into_iter().partition(|s| ids.contains(&s.id));
        for s in back {
            g.reasons.push(KeepReason {
                snapshot: s.clone(),
                matches: vec![PITR_REASON.to_string()],
                counters: Default::default(),
            });
            g.keep.push(s);
        }
        // Newest first, as forget lists them.
        g.keep.sort_by_key(|s| std::cmp::Reverse(s.snapshot.time));
        g.reasons
            .sort_by_key(|r| std::cmp::Reverse(r.snapshot.snapshot.time));
        g.remove = (!rest.is_empty()).then_some(rest);
    }
}

#[cfg(test)]
#[path = "retention_tests.rs"]
mod tests;
