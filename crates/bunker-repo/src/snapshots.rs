//! Listing, finding and filtering snapshots.

use bunker_format::snapshot::Snapshot;
use bunker_format::{Id, SnapshotId};
use bunker_storage::FileType;
use rayon::prelude::*;

use crate::error::{RepoError, Result};
use crate::Repository;

/// A snapshot with its storage id.
#[derive(Clone, Debug)]
pub struct SnapshotEntry {
    pub id: SnapshotId,
    pub snapshot: Snapshot,
}

/// restic-style snapshot filters.
#[derive(Clone, Debug, Default)]
pub struct SnapshotFilter {
    /// Any of these hosts (empty = all).
    pub hosts: Vec<String>,
    /// Any of these groups; a group matches when the snapshot has all its tags
    /// (restic: `--tag a,b --tag c` = (a AND b) OR c).
    pub tags: Vec<Vec<String>>,
    /// The snapshot's paths must include all of these.
    pub paths: Vec<String>,
}

impl SnapshotFilter {
    pub fn matches(&self, s: &Snapshot) -> bool {
        let host_ok = self.hosts.is_empty() || self.hosts.contains(&s.hostname);
        let tags_ok = self.tags.is_empty()
            || self
                .tags
                .iter()
                .any(|group| group.iter().all(|t| t.is_empty() || s.tags.contains(t)));
        let paths_ok = self.paths.iter().all(|p| s.paths.contains(p));
        host_ok && tags_ok && paths_ok
    }

    /// Parse `--tag` values (`a,b` groups).
    pub fn tag_groups(values: &[String]) -> Vec<Vec<String>> {
        values
            .iter()
            .map(|v| v.split(',').map(str::to_string).collect())
            .collect()
    }
}

/// Load every snapshot (in parallel), sorted oldest first. Unreadable
/// snapshot files are an error: callers that delete must never act on a partial list.
pub fn list(repo: &Repository) -> Result<Vec<SnapshotEntry>> {
    let files = repo.storage().list(FileType::Snapshot)?;
    let mut out: Vec<SnapshotEntry> = files
        .par_iter()
        .map(|f| {
            let snapshot: Snapshot = repo.load_json(FileType::Snapshot, &f.name, "snapshot")?;
            let id = Id::from_hex(&f.name)
                .map_err(|e| RepoError::format("snapshot name", &f.name, e))?;
            Ok(SnapshotEntry {
                id: SnapshotId::from(id),
                snapshot,
            })
        })
        .collect::<Result<_>>()?;
    out.sort_by(|a, b| a.snapshot.time.cmp(&b.snapshot.time).then(a.id.cmp(&b.id)));
    Ok(out)
}

/// Snapshots matching `filter`, keeping only the newest `latest` per
/// (host, paths) group when given; oldest first.
pub fn filtered(
    repo: &Repository,
    filter: &SnapshotFilter,
    latest: Option<usize>,
) -> Result<Vec<SnapshotEntry>> {
    let all: Vec<SnapshotEntry> = list(repo)?
        .into_iter()
        .filter(|e| filter.matches(&e.snapshot))
        .collect();
    let Some(n) = latest else { return Ok(all) };
    let mut counts: std::collections::HashMap<(String, Vec<String>), usize> = Default::default();
    let mut keep: Vec<SnapshotEntry> = Vec::new();
    for e in all.into_iter().rev() {
        let mut paths = e.snapshot.paths.clone();
        paths.sort();
        let c = counts
            .entry((e.snapshot.hostname.clone(), paths))
            .or_default();
        if *c < n {
            *c += 1;
            keep.push(e);
        }
    }
    keep.reverse();
    Ok(keep)
}

/// Resolve `latest` or a (prefix of a) snapshot id; `latest` honours the filter.
pub fn find(repo: &Repository, spec: &str, filter: &SnapshotFilter) -> Result<SnapshotEntry> {
    if spec == "latest" {
        return filtered(repo, filter, None)?
            .pop()
            .ok_or_else(|| RepoError::SnapshotNotFound(spec.to_string()));
    }
    let spec_l = spec.to_ascii_lowercase();
    if spec_l.is_empty() || !spec_l.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(RepoError::Invalid(format!(
            "{spec:?} is not a snapshot id: give `latest` or hex digits of an id (see `bunker snapshots`)"
        )));
    }
    let names: Vec<String> = repo
        .storage()
        .list(FileType::Snapshot)?
        .into_iter()
        .map(|f| f.name)
        .filter(|n| n.starts_with(&spec_l))
        .collect();
    match names.as_slice() {
        [] => Err(RepoError::SnapshotNotFound(spec.to_string())),
        [one] => {
            let snapshot: Snapshot = repo.load_json(FileType::Snapshot, one, "snapshot")?;
            let id = Id::from_hex(one).map_err(|e| RepoError::format("snapshot name", one, e))?;
            Ok(SnapshotEntry {
                id: SnapshotId::from(id),
                snapshot,
            })
        }
        _ => Err(RepoError::AmbiguousId(spec.to_string())),
    }
}

/// Write a snapshot file (after its trees and data are indexed).
pub fn save(repo: &Repository, snapshot: &Snapshot) -> Result<SnapshotId> {
    Ok(SnapshotId::from(
        repo.save_json(FileType::Snapshot, snapshot)?,
    ))
}

/// The snapshots a multi-snapshot command works on (restic's
/// `FindFilteredSnapshots`): each of `specs` (ids, prefixes or `latest`,
/// which honours the filter) in the given order, duplicates dropped; without
/// specs every snapshot matching `filter`, oldest first.
pub fn select(
    repo: &Repository,
    specs: &[String],
    filter: &SnapshotFilter,
) -> Result<Vec<SnapshotEntry>> {
    if specs.is_empty() {
        return filtered(repo, filter, None);
    }
    let mut out: Vec<SnapshotEntry> = Vec::new();
    for spec in specs {
        let e = find(repo, spec, filter)?;
        if !out.iter().any(|o| o.id == e.id) {
            out.push(e);
        }
    }
    Ok(out)
}

/// Replace the snapshot `old` by `snapshot` (restic's tag and rewrite): the
/// new file is written first and the old one removed after, so a crash in
/// between leaves both, never neither. Returns the new id; when the new
/// document is identical to the old one its id is the same and nothing is
/// removed.
pub fn replace(repo: &Repository, old: &SnapshotId, snapshot: &Snapshot) -> Result<SnapshotId> {
    let new = save(repo, snapshot)?;
    if new != *old {
        repo.storage().remove(FileType::Snapshot, &old.to_hex())?;
    }
    Ok(new)
}

/// What `--group-by` groups snapshots by (restic's `host,paths,tags`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Grouping {
    pub host: bool,
    pub paths: bool,
    pub tags: bool,
}

impl std::str::FromStr for Grouping {
    type Err = RepoError;
    /// `host`, `paths`, `tags` separated by commas; empty = no grouping.
    fn from_str(s: &str) -> Result<Grouping> {
        let mut g = Grouping::default();
        for part in s.split(',').filter(|p| !p.is_empty()) {
            match part {
                "host" | "hosts" => g.host = true,
                "path" | "paths" => g.paths = true,
                "tag" | "tags" => g.tags = true,
                _ => {
                    return Err(RepoError::Invalid(format!(
                        "cannot group by {part:?}: use host, paths and/or tags"
                    )))
                }
            }
        }
        Ok(g)
    }
}

/// The key of a snapshot group, serialized like restic's `group_key`
/// (fields not grouped by are empty, or `null` for lists).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct GroupKey {
    pub hostname: String,
    pub paths: Option<Vec<String>>,
    pub tags: Option<Vec<String>>,
}

/// Split `entries` into groups ordered by key; within a group the input
/// order is kept. Paths and tags are compared sorted, as restic does.
pub fn group(entries: Vec<SnapshotEntry>, by: Grouping) -> Vec<(GroupKey, Vec<SnapshotEntry>)> {
    let mut groups: std::collections::BTreeMap<GroupKey, Vec<SnapshotEntry>> = Default::default();
    for e in entries {
        let sorted = |v: &[String]| {
            let mut v = v.to_vec();
            v.sort();
            v
        };
        let key = GroupKey {
            hostname: if by.host {
                e.snapshot.hostname.clone()
            } else {
                String::new()
            },
            paths: by.paths.then(|| sorted(&e.snapshot.paths)),
            tags: by
                .tags
                .then(|| sorted(&e.snapshot.tags))
                .filter(|t| !t.is_empty()),
        };
        groups.entry(key).or_default().push(e);
    }
    groups.into_iter().collect()
}
