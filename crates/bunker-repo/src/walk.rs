//! Walking snapshot trees: depth-first traversal, path lookup and `ls`.
//!
//! Paths inside a snapshot are byte strings like `/home/a/b`: the root tree
//! is `/` and each node adds `/name`. Names come from the snapshot and are
//! untrusted; the walker passes them on verbatim (callers that touch the
//! file system validate them). The walk uses an explicit stack, so hostile,
//! deeply nested trees cannot overflow the call stack.

use bunker_format::node::{Node, NodeType, Tree, MODE_PERM};
use bunker_format::node::{
    MODE_APPEND, MODE_CHAR_DEVICE, MODE_DEVICE, MODE_DIR, MODE_EXCLUSIVE, MODE_IRREGULAR,
    MODE_NAMED_PIPE, MODE_SETGID, MODE_SETUID, MODE_SOCKET, MODE_STICKY, MODE_SYMLINK,
    MODE_TEMPORARY,
};
use bunker_format::TreeId;
use chrono::{DateTime, FixedOffset};
use serde::Serialize;

use crate::error::{RepoError, Result};
use crate::snapshots::SnapshotEntry;
use crate::Repository;

/// What the walker does after visiting a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalkAction {
    /// Descend into the node if it is a directory, then go on.
    Continue,
    /// Do not descend into this directory (no effect on other nodes).
    SkipSubtree,
}

/// Callbacks of [`walk_tree_with`].
pub trait TreeVisitor {
    /// Called for every node in depth-first pre-order.
    fn visit(&mut self, path: &[u8], node: &Node) -> Result<WalkAction>;
    /// Called after all children of a directory that was descended into.
    fn leave_dir(&mut self, _path: &[u8], _node: &Node) -> Result<()> {
        Ok(())
    }
}

struct FnVisitor<'a>(&'a mut dyn FnMut(&[u8], &Node) -> Result<WalkAction>);

impl TreeVisitor for FnVisitor<'_> {
    fn visit(&mut self, path: &[u8], node: &Node) -> Result<WalkAction> {
        (self.0)(path, node)
    }
}

/// `prefix + "/" + name`, as bytes.
pub fn join_path(prefix: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(prefix.len() + 1 + name.len());
    p.extend_from_slice(if prefix == b"/" { b"" } else { prefix });
    p.push(b'/');
    p.extend_from_slice(name);
    p
}

/// Depth-first walk of the tree `tree`, whose path is `/`.
pub fn walk_tree(
    repo: &Repository,
    tree: &TreeId,
    visit: &mut dyn FnMut(&[u8], &Node) -> Result<WalkAction>,
) -> Result<()> {
    walk_tree_with(repo, tree, b"/", &mut FnVisitor(visit))
}

/// Depth-first walk of `tree` (whose path is `root_path`) with enter and
/// leave callbacks. A directory without a subtree is visited but not entered.
pub fn walk_tree_with(
    repo: &Repository,
    tree: &TreeId,
    root_path: &[u8],
    v: &mut dyn TreeVisitor,
) -> Result<()> {
    struct Frame {
        path: Vec<u8>,
        dir: Option<Node>,
        nodes: std::vec::IntoIter<Node>,
    }
    let root = repo.load_tree(tree)?;
    let mut stack = vec![Frame {
        path: root_path.to_vec(),
        dir: None,
        nodes: root.nodes.into_iter(),
    }];
    while let Some(top) = stack.last_mut() {
        let Some(node) = top.nodes.next() else {
            if let Some(frame) = stack.pop() {
                if let Some(dir) = frame.dir {
                    v.leave_dir(&frame.path, &dir)?;
                }
            }
            continue;
        };
        let path = join_path(&top.path, &node.name);
        let action = v.visit(&path, &node)?;
        if action == WalkAction::Continue && node.node_type == NodeType::Dir {
            if let Some(sub) = node.subtree {
                let t = repo.load_tree(&sub)?;
                stack.push(Frame {
                    path,
                    dir: Some(node),
                    nodes: t.nodes.into_iter(),
                });
            }
        }
    }
    Ok(())
}

/// Components of a path given by a user (`/a/b`, `a/b/`, `.`); `..` is refused.
pub fn split_user_path(path: &str) -> Result<Vec<&[u8]>> {
    let mut out = Vec::new();
    for c in path.as_bytes().split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                return Err(RepoError::Invalid(format!(
                    "path {path:?} must not contain `..`"
                )))
            }
            _ => out.push(c),
        }
    }
    Ok(out)
}

/// The node at `path` below `tree`, or `None` when `path` is the root itself.
pub fn find_node(repo: &Repository, tree: &TreeId, path: &str) -> Result<Option<Node>> {
    let comps = split_user_path(path)?;
    let mut cur: Tree = repo.load_tree(tree)?;
    let mut found: Option<Node> = None;
    for (i, comp) in comps.iter().enumerate() {
        let node = cur
            .nodes
            .into_iter()
            .find(|n| n.name.as_slice() == *comp)
            .ok_or_else(|| {
                RepoError::PathNotInSnapshot(format!("path {path:?} not found in snapshot"))
            })?;
        if i + 1 < comps.len() {
            let sub = match (node.node_type, node.subtree) {
                (NodeType::Dir, Some(sub)) => sub,
                _ => {
                    return Err(RepoError::PathNotInSnapshot(format!(
                        "path {path:?}: {} is not a directory",
                        node.name_lossy()
                    )))
                }
            };
            cur = repo.load_tree(&sub)?;
        } else {
            cur = Tree::default();
        }
        found = Some(node);
    }
    Ok(found)
}

/// The tree of the directory at `path` (for `SNAPSHOT:sub/dir` and `ls SNAP PATH`).
pub fn find_subtree(repo: &Repository, tree: &TreeId, path: &str) -> Result<TreeId> {
    match find_node(repo, tree, path)? {
        None => Ok(*tree),
        Some(n) => match (n.node_type, n.subtree) {
            (NodeType::Dir, Some(sub)) => Ok(sub),
            _ => Err(RepoError::Invalid(format!(
                "{path:?} is not a directory in the snapshot"
            ))),
        },
    }
}

/// Go's `os.FileMode.String()` of a node (type letters, then `rwxrwxrwx`).
pub fn mode_string(node: &Node) -> String {
    let mode = node.mode | node.node_type.go_mode_bits();
    const LETTERS: [(u32, char); 13] = [
        (MODE_DIR, 'd'),
        (MODE_APPEND, 'a'),
        (MODE_EXCLUSIVE, 'l'),
        (MODE_TEMPORARY, 'T'),
        (MODE_SYMLINK, 'L'),
        (MODE_DEVICE, 'D'),
        (MODE_NAMED_PIPE, 'p'),
        (MODE_SOCKET, 'S'),
        (MODE_SETUID, 'u'),
        (MODE_SETGID, 'g'),
        (MODE_CHAR_DEVICE, 'c'),
        (MODE_STICKY, 't'),
        (MODE_IRREGULAR, '?'),
    ];
    let mut s: String = LETTERS
        .iter()
        .filter(|(b, _)| mode & b != 0)
        .map(|(_, c)| *c)
        .collect();
    if s.is_empty() {
        s.push('-');
    }
    for (i, c) in "rwxrwxrwx".chars().enumerate() {
        s.push(if mode & (1 << (8 - i)) & MODE_PERM != 0 {
            c
        } else {
            '-'
        });
    }
    s
}

fn ser_time<S: serde::Serializer>(
    t: &DateTime<FixedOffset>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    bunker_format::gotime::rfc3339::serialize(t, s)
}

/// One line of `ls`; serializes like restic's `ls --json` node lines.
#[derive(Clone, Debug, Serialize)]
pub struct LsEntry {
    pub name: String,
    #[serde(rename = "type")]
    pub node_type: NodeType,
    pub path: String,
    /// The raw path bytes (names need not be UTF-8).
    #[serde(skip)]
    pub path_bytes: Vec<u8>,
    pub uid: u32,
    pub gid: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Go `os.FileMode` including the type bits; omitted when 0, as restic.
    #[serde(skip_serializing_if = "is_zero_u32")]
    pub mode: u32,
    pub permissions: String,
    #[serde(serialize_with = "ser_time")]
    pub mtime: DateTime<FixedOffset>,
    #[serde(serialize_with = "ser_time")]
    pub atime: DateTime<FixedOffset>,
    #[serde(serialize_with = "ser_time")]
    pub ctime: DateTime<FixedOffset>,
    #[serde(skip_serializing_if = "is_zero")]
    pub inode: u64,
    #[serde(skip)]
    pub user: String,
    #[serde(skip)]
    pub group: String,
    #[serde(skip)]
    pub link_target: Vec<u8>,
    #[serde(skip)]
    pub links: u64,
    #[serde(skip)]
    pub device_id: u64,
    pub message_type: &'static str,
    pub struct_type: &'static str,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

fn is_zero_u32(v: &u32) -> bool {
    *v == 0
}

impl LsEntry {
    pub fn from_node(path: &[u8], node: &Node) -> LsEntry {
        LsEntry {
            name: node.name_lossy(),
            node_type: node.node_type,
            path: String::from_utf8_lossy(path).into_owned(),
            path_bytes: path.to_vec(),
            uid: node.uid,
            gid: node.gid,
            size: (node.node_type == NodeType::File).then_some(node.size),
            mode: node.mode,
            permissions: mode_string(node),
            mtime: node.mtime,
            atime: node.atime,
            ctime: node.ctime,
            inode: node.inode,
            user: node.user.clone(),
            group: node.group.clone(),
            link_target: node.link_target.clone(),
            links: node.links,
            device_id: node.device_id,
            message_type: "node",
            struct_type: "node",
        }
    }
}

/// List a snapshot (restic `ls`). Without `path`: every node (all levels
/// when `recursive`, else the top level). With a directory `path`: that
/// directory and its children (all levels when `recursive`). With a file:
/// that file.
pub fn ls(
    repo: &Repository,
    snap: &SnapshotEntry,
    path: Option<&str>,
    recursive: bool,
) -> Result<Vec<LsEntry>> {
    let root_tree = snap.snapshot.tree;
    let mut out = Vec::new();
    let (start_tree, start_path) = match path {
        None => (root_tree, b"/".to_vec()),
        Some(p) => match find_node(repo, &root_tree, p)? {
            None => (root_tree, b"/".to_vec()),
            Some(node) => {
                let mut full = Vec::new();
                for c in split_user_path(p)? {
                    full = join_path(if full.is_empty() { b"/" } else { &full }, c);
                }
                out.push(LsEntry::from_node(&full, &node));
                match (node.node_type, node.subtree) {
                    (NodeType::Dir, Some(sub)) => (sub, full),
                    _ => return Ok(out),
                }
            }
        },
    };
    let mut v = |p: &[u8], n: &Node| -> Result<WalkAction> {
        out.push(LsEntry::from_node(p, n));
        Ok(if recursive {
            WalkAction::Continue
        } else {
            WalkAction::SkipSubtree
        })
    };
    walk_tree_with(repo, &start_tree, &start_path, &mut FnVisitor(&mut v))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_and_split() {
        assert_eq!(join_path(b"/", b"home"), b"/home");
        assert_eq!(join_path(b"/home", b"a"), b"/home/a");
        assert_eq!(
            split_user_path("/a//b/./c/").unwrap(),
            vec![&b"a"[..], b"b", b"c"]
        );
        assert!(split_user_path("/").unwrap().is_empty());
        assert!(split_user_path("a/../b").is_err());
    }

    #[test]
    fn mode_strings_match_go() {
        let mut n = Node::new("x", NodeType::File);
        n.mode = 0o644;
        assert_eq!(mode_string(&n), "-rw-r--r--");
        let mut d = Node::new("d", NodeType::Dir);
        d.mode = MODE_DIR | 0o755;
        assert_eq!(mode_string(&d), "drwxr-xr-x");
        let mut s = Node::new("s", NodeType::File);
        s.mode = MODE_SETUID | MODE_STICKY | 0o700;
        assert_eq!(mode_string(&s), "utrwx------");
        let c = Node::new("c", NodeType::CharDev);
        assert_eq!(mode_string(&c), "Dc---------");
    }
}
