//! The virtual directories of a mounted repository, laid out as restic does:
//!
//! ```text
//! /snapshots/<time>/...        every snapshot, by time (RFC 3339, `-1`, `-2`
//!                              appended when two share a second)
//! /snapshots/latest -> <time>  the newest snapshot
//! /ids/<short id>/...
//! /hosts/<host>/<time>/...  and /hosts/<host>/latest
//! /tags/<tag>/<time>/...    and /tags/<tag>/latest
//! ```
//!
//! A [`Layout`] is computed from the snapshot list; the file system asks it
//! for the children of a virtual directory by its path.

use std::collections::BTreeMap;

use bunker_format::TreeId;

use crate::snapshots::SnapshotEntry;

/// A child of a virtual directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VEntry {
    /// Another virtual directory (its path below the mount point).
    Dir(String),
    /// The root of a snapshot.
    Snapshot(TreeId, chrono::DateTime<chrono::FixedOffset>),
    /// A symbolic link with this target.
    Link(String),
}

/// The virtual directory tree: path (`""` is the root) → sorted children.
#[derive(Clone, Debug, Default)]
pub struct Layout {
    dirs: BTreeMap<String, BTreeMap<String, VEntry>>,
}

/// `name`, or `name-1`, `name-2`, ... when taken.
fn unique(children: &BTreeMap<String, VEntry>, name: String) -> String {
    if !children.contains_key(&name) {
        return name;
    }
    (1..)
        .map(|i| format!("{name}-{i}"))
        .find(|n| !children.contains_key(n))
        .unwrap_or(name)
}

/// A name usable as a path component (no `/`, not empty, not `.`/`..`).
fn component(s: &str) -> String {
    let s = s.replace('/', "_");
    match s.as_str() {
        "" | "." | ".." => format!("_{s}"),
        _ => s,
    }
}

impl Layout {
    /// The layout of `snaps` (oldest first).
    pub fn new(snaps: &[SnapshotEntry]) -> Layout {
        let mut l = Layout::default();
        for top in ["snapshots", "ids", "hosts", "tags"] {
            l.dir("")
                .insert(top.to_string(), VEntry::Dir(top.to_string()));
            l.dir(top);
        }
        for e in snaps {
            let time = e
                .snapshot
                .time
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            let root = VEntry::Snapshot(e.snapshot.tree, e.snapshot.time);
            l.add_timed("snapshots", &time, root.clone());
            l.dir("ids").insert(e.id.short(), root.clone());
            let host = format!("hosts/{}", component(&e.snapshot.hostname));
            l.add_dir("hosts", &host);
            l.add_timed(&host, &time, root.clone());
            for tag in &e.snapshot.tags {
                let dir = format!("tags/{}", component(tag));
                l.add_dir("tags", &dir);
                l.add_timed(&dir, &time, root.clone());
            }
        }
        l
    }

    fn dir(&mut self, path: &str) -> &mut BTreeMap<String, VEntry> {
        self.dirs.entry(path.to_string()).or_default()
    }

    fn add_dir(&mut self, parent: &str, path: &str) {
        let name = path.rsplit('/').next().unwrap_or(path).to_string();
        self.dir(parent)
            .entry(name)
            .or_insert_with(|| VEntry::Dir(path.to_string()));
        self.dir(path);
    }

    /// Add a snapshot under its time and point `latest` at the newest.
    fn add_timed(&mut self, dir: &str, time: &str, root: VEntry) {
        let children = self.dir(dir);
        children.remove("latest");
        let name = unique(children, time.to_string());
        children.insert(name.clone(), root);
        // Snapshots come oldest first, so the last one added is the newest.
        children.insert("latest".to_string(), VEntry::Link(name));
    }

    /// The children of the virtual directory `path`, if it is one.
    pub fn children(&self, path: &str) -> Option<&BTreeMap<String, VEntry>> {
        self.dirs.get(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bunker_format::snapshot::Snapshot;
    use bunker_format::{Id, SnapshotId};

    fn entry(n: u8, time: &str, host: &str, tags: &[&str]) -> SnapshotEntry {
        let mut s = Snapshot::new(
            chrono::DateTime::parse_from_rfc3339(time).expect("time"),
            TreeId::from(Id::hash(&[n])),
            vec!["/x".into()],
        );
        s.hostname = host.into();
        s.tags = tags.iter().map(|t| t.to_string()).collect();
        SnapshotEntry {
            id: SnapshotId::from(Id::hash(&[n, n])),
            snapshot: s,
        }
    }

    #[test]
    fn restic_layout_with_latest_links_and_duplicate_times() {
        let snaps = vec![
            entry(1, "2024-01-01T10:00:00Z", "a", &["daily"]),
            entry(2, "2024-01-01T10:00:00Z", "b", &[]),
            entry(3, "2024-01-02T10:00:00Z", "a", &["daily", "x/y"]),
        ];
        let l = Layout::new(&snaps);
        let names =
            |p: &str| -> Vec<String> { l.children(p).expect("dir").keys().cloned().collect() };
        assert_eq!(names(""), ["hosts", "ids", "snapshots", "tags"]);
        assert_eq!(
            names("snapshots"),
            [
                "2024-01-01T10:00:00Z",
                "2024-01-01T10:00:00Z-1",
                "2024-01-02T10:00:00Z",
                "latest"
            ]
        );
        assert_eq!(
            l.children("snapshots").expect("dir")["latest"],
            VEntry::Link("2024-01-02T10:00:00Z".into())
        );
        assert_eq!(names("hosts"), ["a", "b"]);
        assert_eq!(names("hosts/a").len(), 3);
        assert_eq!(names("tags"), ["daily", "x_y"]);
        assert_eq!(names("ids").len(), 3);
    }
}
