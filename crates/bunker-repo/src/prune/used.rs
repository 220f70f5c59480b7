//! The set of blobs snapshots reference: every tree reachable from a
//! snapshot, and every data blob those trees list.

use std::collections::HashSet;

use bunker_format::BlobId;
use rayon::prelude::*;

use crate::error::{RepoError, Result};
use crate::progress::Progress;
use crate::snapshots::SnapshotEntry;
use crate::Repository;

/// Walk all trees of `snapshots` (level by level, in parallel). Any tree that
/// cannot be loaded is an error naming the snapshot set as unsafe to prune.
pub fn used_blobs(
    repo: &Repository,
    snapshots: &[SnapshotEntry],
    progress: &dyn Progress,
) -> Result<HashSet<BlobId>> {
    let mut used: HashSet<BlobId> = HashSet::new();
    let mut frontier: Vec<BlobId> = Vec::new();
    for s in snapshots {
        if used.insert(s.snapshot.tree) {
            frontier.push(s.snapshot.tree);
        }
    }
    while !frontier.is_empty() {
        let loaded: Vec<(Vec<BlobId>, Vec<BlobId>)> = frontier
            .par_iter()
            .map(|id| {
                let tree = repo.load_tree(id).map_err(|e| {
                    RepoError::Invalid(format!(
                        "tree {id} cannot be loaded ({e}); refusing to prune, as that could delete data it needs (run `bunker check`: if it reports packs that no index lists, run `bunker repair index`, else `bunker repair snapshots --forget`)"
                    ))
                })?;
                let mut subtrees = Vec::new();
                let mut data = Vec::new();
                for node in tree.nodes {
                    if let Some(s) = node.subtree {
                        subtrees.push(s);
                    }
                    if let Some(c) = node.content {
                        data.extend(c);
                    }
                }
                Ok((subtrees, data))
            })
            .collect::<Result<_>>()?;
        progress.add_items(frontier.len() as u64);
        let mut next = Vec::new();
        for (subtrees, data) in loaded {
            used.extend(data);
            for s in subtrees {
                if used.insert(s) {
                    next.push(s);
                }
            }
        }
        frontier = next;
    }
    Ok(used)
}
