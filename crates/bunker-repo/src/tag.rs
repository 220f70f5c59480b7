//! `tag`: add, remove or replace the tags of existing snapshots.
//!
//! A snapshot file is immutable (its name is the hash of its bytes), so a
//! changed snapshot is written as a new file and the old one removed, as
//! restic does; `original` keeps the id of the very first version across
//! all tag changes (and copies). Snapshots whose tags do not change are not
//! touched.

use bunker_format::snapshot::Snapshot;
use bunker_format::SnapshotId;
use serde::Serialize;

use crate::error::{RepoError, Result};
use crate::snapshots::{self, SnapshotEntry};
use crate::Repository;

/// The change to make: either `set` (replace all tags; an empty list or a
/// single empty tag removes them all) or `add` and/or `remove`.
#[derive(Clone, Debug, Default)]
pub struct TagChange {
    pub set: Option<Vec<String>>,
    pub add: Vec<String>,
    pub remove: Vec<String>,
}

impl TagChange {
    /// Reject empty or contradictory changes (restic's rules).
    pub fn validate(&self) -> Result<()> {
        if self.set.is_some() && (!self.add.is_empty() || !self.remove.is_empty()) {
            return Err(RepoError::Invalid(
                "--set cannot be combined with --add or --remove".into(),
            ));
        }
        if self.set.is_none() && self.add.is_empty() && self.remove.is_empty() {
            return Err(RepoError::Invalid(
                "nothing to do: give --set, --add or --remove".into(),
            ));
        }
        Ok(())
    }

    /// Apply the change to `sn`'s tags; returns whether they changed.
    ///
    /// Same order as restic: added tags are appended when missing, and a
    /// removed tag is replaced by the last tag (Go's swap-remove), so tag
    /// lists stay identical to what restic writes for the same command.
    pub fn apply(&self, sn: &mut Snapshot) -> bool {
        if let Some(set) = &self.set {
            let set: Vec<String> = if set.len() == 1 && set[0].is_empty() {
                Vec::new()
            } else {
                set.clone()
            };
            sn.tags = set;
            return true;
        }
        let mut changed = false;
        for add in &self.add {
            if !sn.tags.contains(add) {
                sn.tags.push(add.clone());
                changed = true;
            }
        }
        for remove in &self.remove {
            if let Some(i) = sn.tags.iter().position(|t| t == remove) {
                sn.tags.swap_remove(i);
                changed = true;
            }
        }
        changed
    }
}

/// One snapshot whose tags were changed.
#[derive(Clone, Debug, Serialize)]
pub struct Retagged {
    pub old: SnapshotId,
    pub new: SnapshotId,
    pub tags: Vec<String>,
}

/// Change the tags of `targets`; returns the snapshots that changed.
/// The caller holds an exclusive lock (snapshots are removed).
pub fn tag(
    repo: &Repository,
    targets: &[SnapshotEntry],
    change: &TagChange,
) -> Result<Vec<Retagged>> {
    change.validate()?;
    let mut out = Vec::new();
    for e in targets {
        let mut sn = e.snapshot.clone();
        if !change.apply(&mut sn) {
            continue;
        }
        sn.original.get_or_insert(e.id);
        let new = snapshots::replace(repo, &e.id, &sn)?;
        tracing::info!("snapshot {} retagged as {}", e.id.short(), new.short());
        out.push(Retagged {
            old: e.id,
            new,
            tags: sn.tags,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(tags: &[&str]) -> Snapshot {
        let mut s = Snapshot::new(
            chrono::DateTime::parse_from_rfc3339("2024-01-01T00:00:00Z").expect("time"),
            bunker_format::TreeId::from(bunker_format::Id::hash(b"t")),
            vec!["/x".into()],
        );
        s.tags = tags.iter().map(|t| t.to_string()).collect();
        s
    }

    fn strs(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn add_and_remove_follow_restics_order() {
        let mut s = snap(&["a", "b", "c"]);
        let c = TagChange {
            add: strs(&["b", "d"]),
            remove: strs(&["a"]),
            ..Default::default()
        };
        assert!(c.apply(&mut s));
        // "d" appended, then "a" swapped with the last tag ("d").
        assert_eq!(s.tags, strs(&["d", "b", "c"]));
        let noop = TagChange {
            add: strs(&["b"]),
            remove: strs(&["zzz"]),
            ..Default::default()
        };
        assert!(!noop.apply(&mut s));
    }

    #[test]
    fn set_replaces_and_an_empty_set_clears() {
        let mut s = snap(&["a"]);
        let c = TagChange {
            set: Some(strs(&[""])),
            ..Default::default()
        };
        assert!(c.apply(&mut s));
        assert!(s.tags.is_empty());
        let c = TagChange {
            set: Some(strs(&["x", "y"])),
            ..Default::default()
        };
        c.apply(&mut s);
        assert_eq!(s.tags, strs(&["x", "y"]));
    }

    #[test]
    fn contradictory_or_empty_changes_are_refused() {
        assert!(TagChange::default().validate().is_err());
        let both = TagChange {
            set: Some(strs(&["x"])),
            add: strs(&["y"]),
            ..Default::default()
        };
        assert!(both.validate().is_err());
    }
}
