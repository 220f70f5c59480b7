//! `forget`: decide which snapshots a retention policy keeps, then remove the rest.
//!
//! Snapshots matching the filter are grouped (restic's `--group-by`, default
//! `host,paths`), and [`crate::retention::apply`] decides per group
//! exactly as restic 0.14 does. Nothing is deleted until every group has been
//! decided; then the snapshot files of the removed snapshots are deleted.
//! Data is only freed by a later [`crate::prune`].

use std::sync::Arc;

use crate::retention::{self, GroupBy, KeepPolicy, SnapInfo};
use bunker_format::snapshot::Snapshot;
use bunker_format::SnapshotId;
use bunker_storage::FileType;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::error::{RepoError, Result};
use crate::lock::RepoLock;
use crate::snapshots::{self, SnapshotEntry, SnapshotFilter};
use crate::Repository;

/// What `forget` does.
#[derive(Clone, Debug, Default)]
pub struct ForgetOptions {
    /// The keep rules (empty = keep everything, as restic).
    pub policy: KeepPolicy,
    /// How snapshots are grouped before the rules apply.
    pub group_by: GroupBy,
    /// Which snapshots are considered at all.
    pub filter: SnapshotFilter,
    /// Decide and report, delete nothing.
    pub dry_run: bool,
    /// The reference time for `within` rules (default: now).
    pub now: Option<DateTime<Utc>>,
}

/// A snapshot as restic prints it in JSON: its fields plus `id` and `short_id`.
#[derive(Clone, Debug, Serialize)]
pub struct SnapshotJson {
    #[serde(flatten)]
    pub snapshot: Snapshot,
    pub id: SnapshotId,
    pub short_id: String,
}

impl From<&SnapshotEntry> for SnapshotJson {
    fn from(e: &SnapshotEntry) -> SnapshotJson {
        SnapshotJson {
            snapshot: e.snapshot.clone(),
            id: e.id,
            short_id: e.id.short(),
        }
    }
}

/// Why one snapshot is kept (restic's `KeepReason`).
#[derive(Clone, Debug, Serialize)]
pub struct KeepReason {
    pub snapshot: SnapshotJson,
    pub matches: Vec<String>,
    /// restic reports remaining counters here; we leave it empty.
    pub counters: serde_json::Map<String, serde_json::Value>,
}

/// The decisions for one group, shaped like one element of restic's
/// `forget --json` output. Lists are newest first.
#[derive(Clone, Debug, Serialize)]
pub struct ForgetGroup {
    pub tags: Option<Vec<String>>,
    pub host: String,
    pub paths: Option<Vec<String>>,
    pub keep: Vec<SnapshotJson>,
    pub remove: Option<Vec<SnapshotJson>>,
    pub reasons: Vec<KeepReason>,
}

/// The outcome of a forget run.
#[derive(Clone, Debug, Serialize)]
pub struct ForgetReport {
    pub groups: Vec<ForgetGroup>,
    /// Snapshots removed (or, in a dry run, that would be removed).
    pub removed: Vec<SnapshotId>,
    /// Snapshots kept.
    pub kept: Vec<SnapshotId>,
    pub dry_run: bool,
}

fn info(e: &SnapshotEntry) -> SnapInfo {
    SnapInfo {
        id: e.id.to_hex(),
        time: e.snapshot.time,
        hostname: e.snapshot.hostname.clone(),
        paths: e.snapshot.paths.clone(),
        tags: e.snapshot.tags.clone(),
    }
}

/// Decide without touching the repository: groups with keep/remove lists.
pub fn plan(entries: &[SnapshotEntry], opts: &ForgetOptions) -> Result<Vec<ForgetGroup>> {
    let now = opts.now.unwrap_or_else(Utc::now);
    let by_id: std::collections::HashMap<String, &SnapshotEntry> =
        entries.iter().map(|e| (e.id.to_hex(), e)).collect();
    let infos: Vec<SnapInfo> = entries.iter().map(info).collect();
    let mut out = Vec::new();
    for (key, members) in retention::group_by(&infos, opts.group_by) {
        let decisions = retention::apply(&members, &opts.policy, now);
        let mut group = ForgetGroup {
            tags: opts.group_by.tags.then(|| key.tags.clone()),
            host: key.hostname.clone(),
            paths: opts.group_by.paths.then(|| key.paths.clone()),
            keep: Vec::new(),
            remove: None,
            reasons: Vec::new(),
        };
        let mut remove = Vec::new();
        for d in decisions {
            let entry = by_id.get(&d.id).ok_or_else(|| {
                RepoError::Invalid(format!("retention decided on unknown snapshot {}", d.id))
            })?;
            let sj = SnapshotJson::from(*entry);
            if d.keep {
                group.reasons.push(KeepReason {
                    snapshot: sj.clone(),
                    matches: d.reasons,
                    counters: Default::default(),
                });
                group.keep.push(sj);
            } else {
                remove.push(sj);
            }
        }
        if !remove.is_empty() {
            group.remove = Some(remove);
        }
        out.push(group);
    }
    Ok(out)
}

/// [`forget_unlocked`] under an exclusive lock (none for a dry run).
pub fn forget(repo: &Arc<Repository>, opts: &ForgetOptions) -> Result<ForgetReport> {
    let _lock = if opts.dry_run {
        None
    } else {
        Some(RepoLock::acquire(repo, true)?)
    };
    forget_unlocked(repo, opts)
}

/// Load every snapshot (any unreadable one aborts), decide for all groups,
/// then delete the removed snapshot files. The caller holds an exclusive lock.
pub fn forget_unlocked(repo: &Repository, opts: &ForgetOptions) -> Result<ForgetReport> {
    let entries: Vec<SnapshotEntry> = snapshots::list(repo)?
        .into_iter()
        .filter(|e| opts.filter.matches(&e.snapshot))
        .collect();
    let groups = plan(&entries, opts)?;
    let mut removed = Vec::new();
    let mut kept = Vec::new();
    for g in &groups {
        kept.extend(g.keep.iter().map(|s| s.id));
        removed.extend(g.remove.iter().flatten().map(|s| s.id));
    }
    if !opts.dry_run {
        for id in &removed {
            match repo.storage().remove(FileType::Snapshot, &id.to_hex()) {
                Ok(()) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(ForgetReport {
        groups,
        removed,
        kept,
        dry_run: opts.dry_run,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bunker_format::{BlobId, Id};
    use chrono::{DateTime, Duration};

    fn entry(n: u8, host: &str, t: DateTime<Utc>, tags: &[&str]) -> SnapshotEntry {
        let mut s = Snapshot::new(
            t.fixed_offset(),
            BlobId::from(Id::hash(&[n])),
            vec!["/data".into()],
        );
        s.hostname = host.into();
        s.tags = tags.iter().map(|t| t.to_string()).collect();
        SnapshotEntry {
            id: SnapshotId::from(Id::hash(&[n, 1])),
            snapshot: s,
        }
    }

    #[test]
    fn groups_by_host_and_keeps_last_per_group() {
        let now = Utc::now();
        let entries: Vec<SnapshotEntry> = (0..6u8)
            .map(|i| {
                let host = if i % 2 == 0 { "a" } else { "b" };
                entry(i, host, now - Duration::hours(i64::from(i) + 1), &[])
            })
            .collect();
        let opts = ForgetOptions {
            policy: KeepPolicy {
                last: 2,
                ..Default::default()
            },
            now: Some(now),
            ..Default::default()
        };
        let groups = plan(&entries, &opts).expect("plan");
        assert_eq!(groups.len(), 2);
        for g in &groups {
            assert_eq!(g.keep.len(), 2);
            assert_eq!(g.remove.as_ref().map(Vec::len), Some(1));
            // newest first, and every kept snapshot has a reason
            assert!(g.keep[0].snapshot.time > g.keep[1].snapshot.time);
            assert_eq!(g.reasons.len(), 2);
            assert_eq!(g.reasons[0].matches, vec!["last snapshot".to_string()]);
        }
        // the two oldest (one per host) are removed
        let removed: Vec<SnapshotId> = groups
            .iter()
            .flat_map(|g| g.remove.iter().flatten().map(|s| s.id))
            .collect();
        assert!(removed.contains(&entries[4].id));
        assert!(removed.contains(&entries[5].id));
    }

    #[test]
    fn empty_policy_keeps_everything_and_json_has_restic_shape() {
        let now = Utc::now();
        let entries = vec![entry(1, "h", now, &["x"])];
        let opts = ForgetOptions {
            now: Some(now),
            ..Default::default()
        };
        let groups = plan(&entries, &opts).expect("plan");
        assert!(groups[0].remove.is_none());
        let v = serde_json::to_value(&groups).expect("json");
        let g = &v[0];
        assert_eq!(g["host"], "h");
        assert_eq!(g["paths"][0], "/data");
        assert!(g["tags"].is_null());
        assert_eq!(g["keep"][0]["short_id"], entries[0].id.short());
        assert_eq!(g["keep"][0]["hostname"], "h");
        assert_eq!(g["reasons"][0]["matches"][0], "policy is empty");
    }
}
