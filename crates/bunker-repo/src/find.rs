//! `find`: search snapshots for paths matching patterns, or for the places
//! where given blobs, trees or packs are used.
//!
//! Patterns have restic's filter semantics ([`bunker_sources::Pattern`]): a
//! relative pattern such as `*.conf` matches at any depth, an absolute one
//! (`/etc/*.conf`) from the root; `**` spans directories. Matching is on the
//! whole path inside the snapshot, byte-wise, or after lower-casing both with
//! `ignore_case`. Results agree with `restic find` on the same repository
//! (see the integration tests).

use std::collections::HashSet;

use bunker_format::node::{Node, NodeType};
use bunker_format::{BlobId, Id, PackId, SnapshotId, TreeId};
use bunker_sources::Pattern;
use chrono::{DateTime, FixedOffset, Local, NaiveDate, NaiveDateTime, TimeZone};
use serde::Serialize;

use crate::error::{RepoError, Result};
use crate::snapshots::SnapshotEntry;
use crate::walk::{join_path, mode_string, walk_tree, WalkAction};
use crate::Repository;

/// What a path search looks for.
#[derive(Clone, Debug, Default)]
pub struct FindOptions {
    /// restic filter patterns; a node matches when any pattern does.
    pub patterns: Vec<String>,
    /// Lower-case patterns and paths before matching.
    pub ignore_case: bool,
    /// Only nodes modified at or after this time.
    pub oldest: Option<DateTime<FixedOffset>>,
    /// Only nodes modified at or before this time.
    pub newest: Option<DateTime<FixedOffset>>,
}

/// One matching node.
#[derive(Clone, Debug)]
pub struct FindMatch {
    /// Absolute path inside the snapshot (raw bytes).
    pub path: Vec<u8>,
    pub node: Node,
}

/// The matches in one snapshot (only snapshots with matches are reported).
#[derive(Clone, Debug)]
pub struct SnapshotMatches {
    pub snapshot: SnapshotEntry,
    pub matches: Vec<FindMatch>,
}

impl SnapshotMatches {
    /// restic's `find --json` object of one snapshot: `matches` (each the
    /// node's fields without name, content and subtree, plus `path` and
    /// `permissions`), `hits` and `snapshot`.
    pub fn to_json(&self) -> serde_json::Value {
        let matches: Vec<serde_json::Value> = self
            .matches
            .iter()
            .map(|m| {
                let mut v = serde_json::to_value(&m.node).unwrap_or_default();
                if let Some(obj) = v.as_object_mut() {
                    for k in [
                        "name",
                        "extended_attributes",
                        "device",
                        "content",
                        "subtree",
                    ] {
                        obj.remove(k);
                    }
                    obj.insert("path".into(), String::from_utf8_lossy(&m.path).into());
                    obj.insert("permissions".into(), mode_string(&m.node).into());
                }
                v
            })
            .collect();
        serde_json::json!({
            "matches": matches,
            "hits": self.matches.len(),
            "snapshot": self.snapshot.id.to_hex(),
        })
    }
}

fn lower(b: &[u8]) -> Vec<u8> {
    match std::str::from_utf8(b) {
        Ok(s) => s.to_lowercase().into_bytes(),
        Err(_) => b.to_ascii_lowercase(),
    }
}

/// Parse a `--oldest`/`--newest` time: `YYYY-MM-DD`, `YYYY-MM-DD HH:MM`,
/// `YYYY-MM-DD HH:MM:SS` (local time, as restic) or RFC 3339.
pub fn parse_time(s: &str) -> Result<DateTime<FixedOffset>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t);
    }
    let naive = ["%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
        .or_else(|| {
            NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
        })
        .ok_or_else(|| {
            RepoError::Invalid(format!(
                "{s:?} is not a time: use YYYY-MM-DD, \"YYYY-MM-DD HH:MM[:SS]\" or RFC 3339"
            ))
        })?;
    Local
        .from_local_datetime(&naive)
        .earliest()
        .map(|t| t.fixed_offset())
        .ok_or_else(|| RepoError::Invalid(format!("{s:?} does not exist in the local time zone")))
}

/// The components of an absolute pattern, for pruning the walk; `None` for
/// patterns that may match at any depth (relative ones, or with escapes).
fn anchored(pattern: &str) -> Option<Vec<Pattern>> {
    if !pattern.starts_with('/') || pattern.contains('\\') {
        return None;
    }
    let mut out = Vec::new();
    for c in pattern.split('/').filter(|c| !c.is_empty()) {
        if c == "**" {
            break;
        }
        out.push(Pattern::parse(c).ok()?);
    }
    Some(out)
}

/// Whether a path below the directory `dir` may match one of the patterns
/// (restic's `ChildMatch`): an anchored pattern can only match below a
/// directory whose leading components it matches. Only an optimisation:
/// answering `true` is always correct.
fn children_may_match(anchored: &[Option<Vec<Pattern>>], dir: &[u8]) -> bool {
    let comps: Vec<&[u8]> = dir
        .split(|&b| b == b'/')
        .filter(|c| !c.is_empty())
        .collect();
    anchored.iter().any(|a| match a {
        None => true,
        Some(parts) => parts.iter().zip(&comps).all(|(p, c)| p.matches(c)),
    })
}

/// Search `snaps` for nodes matching `opts` (the index must be loaded).
pub fn find_paths(
    repo: &Repository,
    snaps: &[SnapshotEntry],
    opts: &FindOptions,
) -> Result<Vec<SnapshotMatches>> {
    if opts.patterns.is_empty() {
        return Err(RepoError::Invalid(
            "give at least one pattern (e.g. `bunker find '*.conf'`)".into(),
        ));
    }
    let patterns = opts
        .patterns
        .iter()
        .map(|p| {
            let p = if opts.ignore_case {
                p.to_lowercase()
            } else {
                p.clone()
            };
            Pattern::parse(&p).map_err(|e| RepoError::Invalid(format!("pattern {p:?}: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let anchors: Vec<Option<Vec<Pattern>>> = opts
        .patterns
        .iter()
        .map(|p| {
            anchored(&if opts.ignore_case {
                p.to_lowercase()
            } else {
                p.clone()
            })
        })
        .collect();
    let mut out = Vec::new();
    for e in snaps {
        let mut matches = Vec::new();
        walk_tree(repo, &e.snapshot.tree, &mut |path, node| {
            let subject = if opts.ignore_case {
                lower(path)
            } else {
                path.to_vec()
            };
            let hit = patterns.iter().any(|p| p.matches(&subject))
                && opts.oldest.is_none_or(|t| node.mtime >= t)
                && opts.newest.is_none_or(|t| node.mtime <= t);
            if hit {
                matches.push(FindMatch {
                    path: path.to_vec(),
                    node: node.clone(),
                });
            }
            if node.node_type == NodeType::Dir && !children_may_match(&anchors, &subject) {
                return Ok(WalkAction::SkipSubtree);
            }
            Ok(WalkAction::Continue)
        })?;
        if !matches.is_empty() {
            out.push(SnapshotMatches {
                snapshot: e.clone(),
                matches,
            });
        }
    }
    Ok(out)
}

/// What an object search looks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObjectKind {
    Blob,
    Tree,
    /// The blobs stored in the given packs.
    Pack,
}

/// One place an object is used, serialized like restic's `find --json`
/// object lines.
#[derive(Clone, Debug, Serialize)]
pub struct ObjectHit {
    /// `blob` or `tree`.
    pub object_type: &'static str,
    pub id: String,
    /// The file (for a blob) or directory (for a tree) that uses it.
    pub path: String,
    /// The tree holding the file node (blobs only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_tree: Option<TreeId>,
    pub snapshot: SnapshotId,
    #[serde(serialize_with = "ser_time")]
    pub time: DateTime<FixedOffset>,
    /// The pack holding the object, when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pack: Option<PackId>,
}

fn ser_time<S: serde::Serializer>(
    t: &DateTime<FixedOffset>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    bunker_format::gotime::rfc3339::serialize(t, s)
}

/// Hex prefixes given by the user (lower-cased, validated).
fn prefixes(ids: &[String]) -> Result<Vec<String>> {
    if ids.is_empty() {
        return Err(RepoError::Invalid("give at least one id".into()));
    }
    ids.iter()
        .map(|s| {
            let l = s.to_ascii_lowercase();
            if l.is_empty() || l.len() > 64 || !l.bytes().all(|b| b.is_ascii_hexdigit()) {
                Err(RepoError::Invalid(format!(
                    "{s:?} is not a (prefix of a) hex id"
                )))
            } else {
                Ok(l)
            }
        })
        .collect()
}

/// Where the objects `ids` (hex prefixes) are used in `snaps`. Every use of a
/// blob is reported; a tree is reported where it is first found (as restic).
pub fn find_objects(
    repo: &Repository,
    snaps: &[SnapshotEntry],
    kind: ObjectKind,
    ids: &[String],
    show_pack: bool,
) -> Result<Vec<ObjectHit>> {
    let wanted = prefixes(ids)?;
    // For packs: the (full) ids of the blobs they hold, from the index.
    let pack_blobs: Option<HashSet<Id>> = (kind == ObjectKind::Pack).then(|| {
        let idx = repo.index().read();
        idx.iter()
            .filter(|(_, e)| {
                let pack = idx.pack_id(e.pack).to_hex();
                wanted.iter().any(|w| pack.starts_with(w))
            })
            .map(|(id, _)| id.id())
            .collect()
    });
    let matches = |id: &Id| match &pack_blobs {
        Some(set) => set.contains(id),
        None => {
            let hex = id.to_hex();
            wanted.iter().any(|w| hex.starts_with(w))
        }
    };
    let pack_of = |id: &Id| -> Option<PackId> {
        show_pack
            .then(|| repo.lookup(&BlobId::from(*id)))
            .flatten()
            .map(|e| repo.index().read().pack_id(e.pack))
    };
    let mut found_trees: HashSet<Id> = HashSet::new();
    let mut out = Vec::new();
    for e in snaps {
        let mut stack: Vec<(TreeId, Vec<u8>)> = vec![(e.snapshot.tree, b"/".to_vec())];
        while let Some((tree_id, dir)) = stack.pop() {
            let tree = repo.load_tree(&tree_id)?;
            let mut subdirs = Vec::new();
            for node in &tree.nodes {
                let path = join_path(&dir, &node.name);
                let hit = |id: &Id, object_type, parent_tree| ObjectHit {
                    object_type,
                    id: id.to_hex(),
                    path: String::from_utf8_lossy(&path).into_owned(),
                    parent_tree,
                    snapshot: e.id,
                    time: e.snapshot.time,
                    pack: pack_of(id),
                };
                if kind != ObjectKind::Tree && node.node_type == NodeType::File {
                    for blob in node.content.iter().flatten() {
                        if matches(&blob.id()) {
                            out.push(hit(&blob.id(), "blob", Some(tree_id)));
                        }
                    }
                }
                if let (NodeType::Dir, Some(sub)) = (node.node_type, node.subtree) {
                    let sid = sub.id();
                    let tree_wanted = kind != ObjectKind::Blob && matches(&sid);
                    if tree_wanted && found_trees.insert(sid) {
                        out.push(hit(&sid, "tree", None));
                    }
                    subdirs.push((sub, path.clone()));
                }
            }
            // Depth first, in name order.
            stack.extend(subdirs.into_iter().rev());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_directories_an_anchored_pattern_can_reach_are_entered() {
        let a = vec![anchored("/home/*/notes"), anchored("/srv/**/x")];
        assert!(children_may_match(&a, b"/home"));
        assert!(children_may_match(&a, b"/home/alice"));
        assert!(children_may_match(&a, b"/home/alice/notes/deep"));
        assert!(children_may_match(&a, b"/srv/a/b/c"));
        assert!(!children_may_match(&a, b"/etc"));
        assert!(!children_may_match(&a, b"/home/alice/music"));
        // A relative pattern may match anywhere.
        let r = vec![anchored("notes"), anchored("/etc")];
        assert!(children_may_match(&r, b"/var/lib"));
    }
}
