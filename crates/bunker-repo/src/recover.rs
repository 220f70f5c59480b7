//! `recover`: a new snapshot of every directory tree that no snapshot
//! reaches any more (after a `forget` by mistake, or a lost snapshot file).
//!
//! As restic: every tree blob of the index that is neither a snapshot's root
//! nor a subtree of another tree is a lost root; the new snapshot (path
//! `/recover`) has one directory per lost root, named by its short id. The
//! data is still there until a `prune`, so this must run before one.

use std::collections::HashSet;
use std::sync::Arc;

use bunker_format::node::{Node, NodeType, Tree, MODE_DIR};
use bunker_format::snapshot::Snapshot;
use bunker_format::{BlobType, SnapshotId, TreeId};
use rayon::prelude::*;
use serde::Serialize;

use crate::error::{RepoError, Result};
use crate::packer::BlobSaver;
use crate::snapshots;
use crate::Repository;

/// The outcome of a recovery.
#[derive(Clone, Debug, Serialize)]
pub struct Recovered {
    /// Trees nothing refers to, sorted.
    pub roots: Vec<TreeId>,
    /// The new snapshot (`None` when there was nothing to recover or in a dry run).
    pub snapshot: Option<SnapshotId>,
}

/// Find the unreferenced root trees (the index must be loaded).
pub fn lost_roots(repo: &Repository) -> Result<Vec<TreeId>> {
    let trees: Vec<TreeId> = repo
        .index()
        .read()
        .iter()
        .filter(|(_, e)| e.blob_type == BlobType::Tree)
        .map(|(id, _)| TreeId::from(id.id()))
        .collect();
    let subtrees: Vec<Vec<TreeId>> = trees
        .par_iter()
        .map(|t| {
            let tree = repo.load_tree(t)?;
            Ok(tree.nodes.iter().filter_map(|n| n.subtree).collect())
        })
        .collect::<Result<_>>()?;
    let mut referenced: HashSet<TreeId> = subtrees.into_iter().flatten().collect();
    referenced.extend(snapshots::list(repo)?.into_iter().map(|e| e.snapshot.tree));
    let mut roots: Vec<TreeId> = trees
        .into_iter()
        .filter(|t| !referenced.contains(t))
        .collect();
    roots.sort();
    Ok(roots)
}

/// Save a snapshot holding every lost root (unless `dry_run`).
pub fn recover(repo: &Arc<Repository>, dry_run: bool) -> Result<Recovered> {
    let roots = lost_roots(repo)?;
    if roots.is_empty() || dry_run {
        return Ok(Recovered {
            roots,
            snapshot: None,
        });
    }
    let now = chrono::Local::now().fixed_offset();
    let mut tree = Tree::new();
    for r in &roots {
        let mut node = Node::new(r.short(), NodeType::Dir);
        node.mode = MODE_DIR | 0o755;
        node.mtime = now;
        node.atime = now;
        node.ctime = now;
        node.subtree = Some(*r);
        tree.push(node);
    }
    let (id, bytes) = tree
        .encode()
        .map_err(|e| RepoError::format("tree", "recover", e))?;
    let saver = BlobSaver::new(repo.clone());
    saver.save_with_id(BlobType::Tree, id.id().into(), &bytes)?;
    saver.finish()?;
    let mut sn = Snapshot::new(now, id, vec!["/recover".to_string()]);
    sn.hostname = gethostname::gethostname().to_string_lossy().into_owned();
    sn.username = uzers::get_current_username()
        .map(|u| u.to_string_lossy().into_owned())
        .unwrap_or_default();
    sn.uid = uzers::get_current_uid();
    sn.gid = uzers::get_current_gid();
    sn.program_version = format!("bunker {}", env!("CARGO_PKG_VERSION"));
    let snapshot = Some(snapshots::save(repo, &sn)?);
    Ok(Recovered { roots, snapshot })
}
