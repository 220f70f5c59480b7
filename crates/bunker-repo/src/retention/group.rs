//! Grouping snapshots before applying a policy, as `restic forget --group-by`.

use super::SnapInfo;
use std::collections::BTreeMap;

/// Which snapshot fields form a group (restic's `--group-by`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupBy {
    /// Group by host name.
    pub host: bool,
    /// Group by the (sorted) path list.
    pub paths: bool,
    /// Group by the (sorted) tag list.
    pub tags: bool,
}

impl Default for GroupBy {
    /// restic's default: `host,paths`.
    fn default() -> Self {
        GroupBy {
            host: true,
            paths: true,
            tags: false,
        }
    }
}

/// An unknown `--group-by` option.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown grouping option: {0:?} (expected host, paths and/or tags)")]
pub struct GroupByError(pub String);

impl GroupBy {
    /// Parses restic's comma-separated syntax (`host,paths`, `tags`, `` for
    /// no grouping).
    pub fn parse(s: &str) -> Result<GroupBy, GroupByError> {
        let mut g = GroupBy {
            host: false,
            paths: false,
            tags: false,
        };
        for opt in s.split(',') {
            match opt {
                "host" | "hosts" => g.host = true,
                "path" | "paths" => g.paths = true,
                "tag" | "tags" => g.tags = true,
                "" => {}
                other => return Err(GroupByError(other.to_string())),
            }
        }
        Ok(g)
    }
}

/// The identity of one group; fields not grouped by are empty.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct GroupKey {
    /// Host name (empty unless grouping by host).
    pub hostname: String,
    /// Sorted paths (empty unless grouping by paths).
    pub paths: Vec<String>,
    /// Sorted tags (empty unless grouping by tags).
    pub tags: Vec<String>,
}

/// Splits snapshots into groups, ordered by key; within a group the input
/// order is kept.
pub fn group_by(snapshots: &[SnapInfo], by: GroupBy) -> Vec<(GroupKey, Vec<SnapInfo>)> {
    let mut groups: BTreeMap<GroupKey, Vec<SnapInfo>> = BTreeMap::new();
    for sn in snapshots {
        let mut key = GroupKey::default();
        if by.host {
            key.hostname = sn.hostname.clone();
        }
        if by.paths {
            key.paths = sn.paths.clone();
            key.paths.sort();
        }
        if by.tags {
            key.tags = sn.tags.clone();
            key.tags.sort();
        }
        groups.entry(key).or_default().push(sn.clone());
    }
    groups.into_iter().collect()
}
