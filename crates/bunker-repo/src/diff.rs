//! `diff`: what changed between two snapshots (restic's `diff`).
//!
//! Both trees are compared name by name; identical subtrees (same id) are
//! not descended into. Changes use restic's symbols (`+ - M U T`, `TU`);
//! directory paths end in `/`. `U` (metadata changed) is always recorded;
//! the CLI shows it only with `--metadata`, as restic does. "Metadata
//! changed" is restic's `Node.Equals` failing: any field other than the
//! name differs (times including atime and ctime, owner, inode, size, link
//! count, link target, device, error, a directory's subtree — so a
//! directory whose contents changed is `U` too — and the extended
//! attributes, compared as a set). A type change is `T`, or `TU` with
//! `--metadata` (the nodes then always differ). Blob statistics count blobs
//! referenced only by the second snapshot as added and only by the first as
//! removed, with their plaintext sizes.

use std::collections::HashSet;

use bunker_format::node::{Node, NodeType, Tree};
use bunker_format::{BlobId, TreeId};
use serde::Serialize;

use crate::error::Result;
use crate::snapshots::SnapshotEntry;
use crate::walk::join_path;
use crate::Repository;

/// Kind of one change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DiffKind {
    Added,
    Removed,
    /// File content changed.
    Modified,
    /// Only metadata changed.
    Metadata,
    TypeChanged,
}

impl DiffKind {
    /// The modifier restic prints for this change, with or without
    /// `--metadata`; `None` when it is not shown (`U` without `--metadata`).
    pub fn modifier(&self, metadata: bool) -> Option<&'static str> {
        match (self, metadata) {
            (DiffKind::Metadata, false) => None,
            (DiffKind::TypeChanged, true) => Some("TU"),
            (k, _) => Some(k.symbol()),
        }
    }

    /// restic's symbol.
    pub fn symbol(&self) -> &'static str {
        match self {
            DiffKind::Added => "+",
            DiffKind::Removed => "-",
            DiffKind::Modified => "M",
            DiffKind::Metadata => "U",
            DiffKind::TypeChanged => "T",
        }
    }
}

/// Added or removed nodes and blobs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DiffCounts {
    pub files: u64,
    pub dirs: u64,
    pub others: u64,
    pub data_blobs: u64,
    pub tree_blobs: u64,
    pub bytes: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DiffStats {
    pub changed_files: u64,
    pub added: DiffCounts,
    pub removed: DiffCounts,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct DiffReport {
    /// Changes in tree order.
    pub changes: Vec<(DiffKind, String)>,
    pub stats: DiffStats,
}

#[derive(Default)]
struct Blobs {
    data: HashSet<BlobId>,
    trees: HashSet<TreeId>,
}

impl Blobs {
    fn add_node(&mut self, node: &Node) {
        if let Some(c) = &node.content {
            self.data.extend(c.iter().copied());
        }
    }
}

enum Work {
    Diff(Vec<u8>, TreeId, TreeId),
    /// Everything below a tree was added (`true`) or removed.
    Whole(Vec<u8>, TreeId, bool),
    /// A subtree common to both snapshots (its blobs count for both).
    Common(TreeId),
}

/// restic's `Node.Equals`, negated: whether anything but the name differs.
/// Extended attributes are compared as a set, as restic does.
fn meta_differs(a: &Node, b: &Node) -> bool {
    a.node_type != b.node_type
        || a.mode != b.mode
        || a.mtime != b.mtime
        || a.atime != b.atime
        || a.ctime != b.ctime
        || a.uid != b.uid
        || a.gid != b.gid
        || a.user != b.user
        || a.group != b.group
        || a.inode != b.inode
        || a.device_id != b.device_id
        || a.size != b.size
        || a.links != b.links
        || a.link_target != b.link_target
        || a.device != b.device
        || a.content != b.content
        || !same_xattrs(a, b)
        || a.generic_attributes != b.generic_attributes
        || a.subtree != b.subtree
        || a.error != b.error
}

/// restic's `sameExtendedAttributes`: the same names with the same values,
/// in any order.
fn same_xattrs(a: &Node, b: &Node) -> bool {
    let (x, y) = (&a.extended_attributes, &b.extended_attributes);
    if x.len() != y.len() {
        return false;
    }
    let map: std::collections::HashMap<&str, &[u8]> = x
        .iter()
        .map(|e| (e.name.as_str(), e.value.as_slice()))
        .collect();
    let other: std::collections::HashMap<&str, &[u8]> = y
        .iter()
        .map(|e| (e.name.as_str(), e.value.as_slice()))
        .collect();
    map == other
}

fn count(c: &mut DiffCounts, node: &Node) {
    match node.node_type {
        NodeType::File => c.files += 1,
        NodeType::Dir => c.dirs += 1,
        _ => c.others += 1,
    }
}

fn display(path: &[u8], node: &Node) -> String {
    let mut s = String::from_utf8_lossy(path).into_owned();
    if node.node_type == NodeType::Dir {
        s.push('/');
    }
    s
}

struct Differ<'a> {
    repo: &'a Repository,
    report: DiffReport,
    before: Blobs,
    after: Blobs,
    common_seen: HashSet<TreeId>,
    work: Vec<Work>,
}

impl Differ<'_> {
    fn load(&self, id: &TreeId) -> Result<Tree> {
        let mut t = self.repo.load_tree(id)?;
        t.sort();
        Ok(t)
    }

    fn change(&mut self, kind: DiffKind, path: &[u8], node: &Node) {
        self.report.changes.push((kind, display(path, node)));
    }

    fn diff(&mut self, prefix: &[u8], t1: TreeId, t2: TreeId) -> Result<()> {
        self.before.trees.insert(t1);
        self.after.trees.insert(t2);
        let (a, b) = (self.load(&t1)?, self.load(&t2)?);
        let (mut i, mut j) = (0, 0);
        while i < a.nodes.len() || j < b.nodes.len() {
            let order = match (a.nodes.get(i), b.nodes.get(j)) {
                (Some(x), Some(y)) => x.name.cmp(&y.name),
                (Some(_), None) => std::cmp::Ordering::Less,
                _ => std::cmp::Ordering::Greater,
            };
            match order {
                std::cmp::Ordering::Less => {
                    let n = &a.nodes[i];
                    self.one_side(prefix, n, false);
                    i += 1;
                }
                std::cmp::Ordering::Greater => {
                    let n = &b.nodes[j];
                    self.one_side(prefix, n, true);
                    j += 1;
                }
                std::cmp::Ordering::Equal => {
                    self.both(prefix, &a.nodes[i], &b.nodes[j]);
                    i += 1;
                    j += 1;
                }
            }
        }
        Ok(())
    }

    fn one_side(&mut self, prefix: &[u8], n: &Node, added: bool) {
        let path = join_path(prefix, &n.name);
        let kind = if added {
            DiffKind::Added
        } else {
            DiffKind::Removed
        };
        self.change(kind, &path, n);
        let (counts, blobs) = if added {
            (&mut self.report.stats.added, &mut self.after)
        } else {
            (&mut self.report.stats.removed, &mut self.before)
        };
        count(counts, n);
        blobs.add_node(n);
        if let (NodeType::Dir, Some(sub)) = (n.node_type, n.subtree) {
            self.work.push(Work::Whole(path, sub, added));
        }
    }

    fn both(&mut self, prefix: &[u8], x: &Node, y: &Node) {
        let path = join_path(prefix, &y.name);
        self.before.add_node(x);
        self.after.add_node(y);
        if x.node_type != y.node_type {
            self.change(DiffKind::TypeChanged, &path, y);
        } else if x.node_type == NodeType::File && x.content != y.content {
            self.change(DiffKind::Modified, &path, y);
            self.report.stats.changed_files += 1;
        } else if meta_differs(x, y) {
            self.change(DiffKind::Metadata, &path, y);
        }
        let subs = match (x.node_type, x.subtree, y.node_type, y.subtree) {
            (NodeType::Dir, Some(s1), NodeType::Dir, Some(s2)) => Some((s1, s2)),
            _ => None,
        };
        match subs {
            Some((s1, s2)) if s1 == s2 => self.work.push(Work::Common(s1)),
            Some((s1, s2)) => self.work.push(Work::Diff(path, s1, s2)),
            None => {
                // A type change: the old subtree's blobs belong to the first
                // snapshot, the new one's to the second (no per-entry lines).
                if let (NodeType::Dir, Some(s)) = (x.node_type, x.subtree) {
                    self.work.push(Work::Whole(Vec::new(), s, false));
                }
                if let (NodeType::Dir, Some(s)) = (y.node_type, y.subtree) {
                    self.work.push(Work::Whole(Vec::new(), s, true));
                }
            }
        }
    }

    /// Every node below `tree` was added or removed; an empty `prefix` only
    /// collects blobs without listing entries.
    fn whole(&mut self, prefix: &[u8], tree: TreeId, added: bool) -> Result<()> {
        let listed = !prefix.is_empty();
        let t = self.load(&tree)?;
        if added {
            self.after.trees.insert(tree);
        } else {
            self.before.trees.insert(tree);
        }
        for n in &t.nodes {
            let path = join_path(prefix, &n.name);
            if listed {
                self.change(
                    if added {
                        DiffKind::Added
                    } else {
                        DiffKind::Removed
                    },
                    &path,
                    n,
                );
                let counts = if added {
                    &mut self.report.stats.added
                } else {
                    &mut self.report.stats.removed
                };
                count(counts, n);
            }
            if added {
                self.after.add_node(n);
            } else {
                self.before.add_node(n);
            }
            if let (NodeType::Dir, Some(sub)) = (n.node_type, n.subtree) {
                self.work.push(Work::Whole(
                    if listed { path } else { Vec::new() },
                    sub,
                    added,
                ));
            }
        }
        Ok(())
    }

    fn common(&mut self, tree: TreeId) -> Result<()> {
        if !self.common_seen.insert(tree) {
            return Ok(());
        }
        let t = self.load(&tree)?;
        self.before.trees.insert(tree);
        self.after.trees.insert(tree);
        for n in &t.nodes {
            self.before.add_node(n);
            self.after.add_node(n);
            if let (NodeType::Dir, Some(sub)) = (n.node_type, n.subtree) {
                self.work.push(Work::Common(sub));
            }
        }
        Ok(())
    }

    fn run(&mut self) -> Result<()> {
        while let Some(w) = self.work.pop() {
            match w {
                Work::Diff(p, a, b) => self.diff(&p, a, b)?,
                Work::Whole(p, t, added) => self.whole(&p, t, added)?,
                Work::Common(t) => self.common(t)?,
            }
        }
        Ok(())
    }
}

fn sort_key(path: &str) -> Vec<&[u8]> {
    path.trim_end_matches('/')
        .as_bytes()
        .split(|&b| b == b'/')
        .collect()
}

/// Compare snapshot `a` (before) with `b` (after).
pub fn diff(repo: &Repository, a: &SnapshotEntry, b: &SnapshotEntry) -> Result<DiffReport> {
    let mut d = Differ {
        repo,
        report: DiffReport::default(),
        before: Blobs::default(),
        after: Blobs::default(),
        common_seen: HashSet::new(),
        work: Vec::new(),
    };
    let (t1, t2) = (a.snapshot.tree, b.snapshot.tree);
    if t1 != t2 {
        d.work.push(Work::Diff(b"/".to_vec(), t1, t2));
        d.run()?;
    }
    let mut report = d.report;
    report
        .changes
        .sort_by(|x, y| sort_key(&x.1).cmp(&sort_key(&y.1)));
    let index = repo.index().read();
    let size = |id: &BlobId| index.get(id).map(|e| u64::from(e.plain_len())).unwrap_or(0);
    for id in d.after.data.difference(&d.before.data) {
        report.stats.added.data_blobs += 1;
        report.stats.added.bytes += size(id);
    }
    for id in d.before.data.difference(&d.after.data) {
        report.stats.removed.data_blobs += 1;
        report.stats.removed.bytes += size(id);
    }
    for id in d.after.trees.difference(&d.before.trees) {
        report.stats.added.tree_blobs += 1;
        report.stats.added.bytes += size(id);
    }
    for id in d.before.trees.difference(&d.after.trees) {
        report.stats.removed.tree_blobs += 1;
        report.stats.removed.bytes += size(id);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbols_and_sort_order() {
        assert_eq!(DiffKind::Metadata.symbol(), "U");
        assert_eq!(DiffKind::TypeChanged.symbol(), "T");
        let mut v = vec!["/a-b", "/a/x", "/a/"];
        v.sort_by(|x, y| sort_key(x).cmp(&sort_key(y)));
        assert_eq!(v, vec!["/a/", "/a/x", "/a-b"]);
    }
}
