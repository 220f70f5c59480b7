//! Which snapshots reference data that is lost.

use std::collections::{HashMap, HashSet};

use bunker_format::node::NodeType;
use bunker_format::{BlobId, PackId, SnapshotId, TreeId};

use super::{Findings, PackInfo};
use crate::Repository;

/// Blobs with no intact copy: every pack listing them is damaged or missing,
/// plus the blobs the tree walk found unusable.
pub(super) fn lost_blobs(packs: &HashMap<PackId, PackInfo>, f: &Findings) -> HashSet<BlobId> {
    let bad_pack = |p: &PackId| f.damaged.contains(p) || f.missing.contains(p);
    let mut lost: HashSet<BlobId> = packs
        .iter()
        .filter(|(id, _)| bad_pack(id))
        .flat_map(|(_, info)| info.blobs.iter().map(|b| b.id))
        .collect();
    if !lost.is_empty() {
        // A copy in an intact pack saves the blob.
        for (id, info) in packs {
            if !bad_pack(id) {
                for b in &info.blobs {
                    lost.remove(&b.id);
                }
            }
        }
    }
    lost.extend(f.bad_blobs.iter().copied());
    lost
}

enum Step {
    Enter(TreeId),
    Exit(TreeId, Vec<TreeId>, bool),
}

/// Whether the tree `root` reaches a lost blob; results are memoized in `memo`.
/// Iterative, so deep directory nesting cannot overflow the stack.
fn tree_affected(
    repo: &Repository,
    root: TreeId,
    lost: &HashSet<BlobId>,
    memo: &mut HashMap<TreeId, bool>,
) -> bool {
    let mut stack = vec![Step::Enter(root)];
    while let Some(step) = stack.pop() {
        match step {
            Step::Enter(t) => {
                if memo.contains_key(&t) {
                    continue;
                }
                if lost.contains(&t) {
                    memo.insert(t, true);
                    continue;
                }
                let Ok(tree) = repo.load_tree(&t) else {
                    memo.insert(t, true);
                    continue;
                };
                let mut direct = false;
                let mut subtrees = Vec::new();
                for node in &tree.nodes {
                    match node.node_type {
                        NodeType::File => {
                            direct |= node.content.iter().flatten().any(|b| lost.contains(b));
                        }
                        NodeType::Dir => subtrees.extend(node.subtree),
                        _ => {}
                    }
                }
                let children: Vec<TreeId> = subtrees
                    .iter()
                    .filter(|s| !memo.contains_key(s))
                    .copied()
                    .collect();
                stack.push(Step::Exit(t, subtrees, direct));
                stack.extend(children.into_iter().map(Step::Enter));
            }
            Step::Exit(t, subtrees, direct) => {
                let any = direct
                    || subtrees
                        .iter()
                        .any(|s| memo.get(s).copied().unwrap_or(true));
                memo.insert(t, any);
            }
        }
    }
    memo.get(&root).copied().unwrap_or(true)
}

/// The snapshots (sorted) whose trees reach a lost blob.
pub(super) fn affected_snapshots(
    repo: &Repository,
    snaps: &[(SnapshotId, TreeId)],
    lost: &HashSet<BlobId>,
) -> Vec<SnapshotId> {
    if lost.is_empty() {
        return Vec::new();
    }
    let mut memo = HashMap::new();
    let mut out: Vec<SnapshotId> = snaps
        .iter()
        .filter(|(_, root)| tree_affected(repo, *root, lost, &mut memo))
        .map(|(s, _)| *s)
        .collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use bunker_format::index::IndexBlob;
    use bunker_format::{BlobType, Id};

    fn blob(n: u8) -> IndexBlob {
        IndexBlob {
            id: BlobId::from(Id([n; 32])),
            blob_type: BlobType::Data,
            offset: 0,
            length: 40,
            uncompressed_length: None,
        }
    }

    #[test]
    fn blob_with_an_intact_copy_is_not_lost() {
        let (p1, p2) = (PackId::from(Id([1; 32])), PackId::from(Id([2; 32])));
        let mut packs = HashMap::new();
        packs.insert(
            p1,
            PackInfo {
                blobs: vec![blob(10), blob(11)],
                indexes: vec![],
            },
        );
        packs.insert(
            p2,
            PackInfo {
                blobs: vec![blob(11)],
                indexes: vec![],
            },
        );
        let mut f = Findings::default();
        f.damaged.insert(p1);
        f.bad_blobs.insert(BlobId::from(Id([99; 32])));
        let lost = lost_blobs(&packs, &f);
        let mut ids: Vec<u8> = lost.iter().map(|b| b.id().0[0]).collect();
        ids.sort();
        assert_eq!(ids, vec![10, 99]);
    }
}
