//! Backup targets: absolute, lexically cleaned paths arranged as the tree of
//! directories the snapshot nests them in (as restic: `/home/u/docs` is
//! stored as `home` → `u` → `docs`, with the real metadata of `/home` and
//! `/home/u`).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};

use crate::error::{RepoError, Result};

/// Make `p` absolute (relative to the current directory) and clean it
/// lexically like Go's `filepath.Clean`: no `.`, no `..`, no trailing or
/// doubled separators. `..` above the root stays at the root.
pub fn absolute_clean(p: &Path) -> Result<PathBuf> {
    if p.as_os_str().is_empty() {
        return Err(RepoError::Invalid("empty backup path".into()));
    }
    let abs = if p.is_absolute() {
        p.to_path_buf()
    } else {
        let cwd = std::env::current_dir().map_err(|e| {
            RepoError::Io(format!(
                "cannot resolve {}: current directory: {e}",
                p.display()
            ))
        })?;
        cwd.join(p)
    };
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for c in abs.components() {
        match c {
            Component::RootDir | Component::Prefix(_) | Component::CurDir => {}
            Component::ParentDir => {
                parts.pop();
            }
            Component::Normal(n) => parts.push(n),
        }
    }
    let mut out = PathBuf::from("/");
    for part in parts {
        out.push(part);
    }
    Ok(out)
}

/// One node of the target tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetNode {
    /// A path given as a backup target: saved with everything below it.
    Leaf(PathBuf),
    /// A directory above one or more targets: only its metadata is stored,
    /// its subtree holds the children listed here.
    Inner {
        path: PathBuf,
        children: BTreeMap<Vec<u8>, TargetNode>,
    },
}

/// Arrange cleaned absolute targets into a tree rooted at `/`. A target
/// below another target is covered by it and dropped; duplicates collapse.
/// Children are ordered by the bytes of their names (restic's tree order).
pub fn build_tree(targets: &[PathBuf]) -> TargetNode {
    let mut root = TargetNode::Inner {
        path: PathBuf::from("/"),
        children: BTreeMap::new(),
    };
    for t in targets {
        insert(&mut root, t);
    }
    root
}

fn insert(root: &mut TargetNode, target: &Path) {
    let comps: Vec<Vec<u8>> = target
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.as_bytes().to_vec()),
            _ => None,
        })
        .collect();
    if comps.is_empty() {
        *root = TargetNode::Leaf(PathBuf::from("/"));
        return;
    }
    let mut node = root;
    let mut path = PathBuf::from("/");
    for (i, comp) in comps.iter().enumerate() {
        path.push(OsString::from_vec(comp.clone()));
        let children = match node {
            TargetNode::Leaf(_) => return, // covered by a target above
            TargetNode::Inner { children, .. } => children,
        };
        let last = i + 1 == comps.len();
        let entry = children.entry(comp.clone()).or_insert_with(|| {
            if last {
                TargetNode::Leaf(path.clone())
            } else {
                TargetNode::Inner {
                    path: path.clone(),
                    children: BTreeMap::new(),
                }
            }
        });
        if last {
            *entry = TargetNode::Leaf(path.clone());
            return;
        }
        node = entry;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> PathBuf {
        PathBuf::from(s)
    }

    #[test]
    fn cleaning() {
        assert_eq!(absolute_clean(&p("/a/./b/../c/")).unwrap(), p("/a/c"));
        assert_eq!(absolute_clean(&p("/../..")).unwrap(), p("/"));
        assert_eq!(absolute_clean(&p("//x//y")).unwrap(), p("/x/y"));
        let rel = absolute_clean(&p("rel/x")).unwrap();
        assert!(rel.is_absolute());
        assert!(rel.ends_with("rel/x"));
        assert!(absolute_clean(&p("")).is_err());
    }

    #[test]
    fn tree_nests_and_covers() {
        let t = build_tree(&[p("/a/b/c"), p("/a/d"), p("/a/b/c/e"), p("/z")]);
        let TargetNode::Inner { children, .. } = &t else {
            panic!("root must be inner")
        };
        assert_eq!(
            children.keys().cloned().collect::<Vec<_>>(),
            vec![b"a".to_vec(), b"z".to_vec()]
        );
        let TargetNode::Inner { path, children: a } = &children[&b"a".to_vec()] else {
            panic!("a must be inner")
        };
        assert_eq!(path, &p("/a"));
        assert_eq!(a[&b"d".to_vec()], TargetNode::Leaf(p("/a/d")));
        let TargetNode::Inner { children: b, .. } = &a[&b"b".to_vec()] else {
            panic!("b must be inner")
        };
        assert_eq!(b[&b"c".to_vec()], TargetNode::Leaf(p("/a/b/c")));
        assert_eq!(children[&b"z".to_vec()], TargetNode::Leaf(p("/z")));
    }

    #[test]
    fn later_parent_target_replaces_inner() {
        let t = build_tree(&[p("/a/b"), p("/a")]);
        let TargetNode::Inner { children, .. } = &t else {
            panic!("root must be inner")
        };
        assert_eq!(children[&b"a".to_vec()], TargetNode::Leaf(p("/a")));
        assert_eq!(build_tree(&[p("/a"), p("/")]), TargetNode::Leaf(p("/")));
    }
}
