//! `repair snapshots`: rewrite snapshots so that they reference only data
//! the index has, as restic's `repair snapshots` does.
//!
//! Every tree of every snapshot is walked (each distinct tree once):
//! * a file keeps the content blobs the index lists and loses the others;
//!   its size becomes the sum of what is left ("removed missing content");
//!   a wrong size is corrected;
//! * a directory whose tree cannot be loaded becomes an empty directory;
//! * nodes of type `irregular` are removed (restic does the same);
//! * a snapshot whose root tree cannot be loaded cannot be repaired: it is
//!   removed with `forget`, else only reported.
//!
//! A changed snapshot is saved as a new snapshot with the tag `repaired`
//! and `original` pointing at the snapshot it replaces; with `forget` the
//! old snapshot file is removed afterwards. Trees are only rewritten when
//! something in them changed, so the unchanged parts keep their ids.
//!
//! Run `repair index` first: blobs in packs that are missing from storage
//! are still "in the index" until it has dropped those packs.

use std::collections::HashMap;
use std::sync::Arc;

use bunker_format::node::{NodeType, Tree};
use bunker_format::snapshot::Snapshot;
use bunker_format::{BlobType, Id, SnapshotId, TreeId};
use bunker_storage::FileType;
use serde::Serialize;

use crate::error::Result;
use crate::lock::RepoLock;
use crate::packer::BlobSaver;
use crate::progress::Progress;
use crate::Repository;

/// The tag restic gives repaired snapshots.
pub const REPAIRED_TAG: &str = "repaired";

/// What `repair snapshots` does.
#[derive(Clone, Debug, Default)]
pub struct RepairSnapshotsOptions {
    /// Remove the original of every repaired snapshot, and snapshots that
    /// cannot be repaired.
    pub forget: bool,
    /// Report what would change; write nothing.
    pub dry_run: bool,
    /// Only these snapshots (all when empty).
    pub snapshots: Vec<SnapshotId>,
}

/// One snapshot that needed repair.
#[derive(Clone, Debug, Serialize)]
pub struct RepairedSnapshot {
    pub original: SnapshotId,
    /// The repaired snapshot; `None` when its root tree is unreadable.
    pub repaired: Option<SnapshotId>,
    /// Whether the original was removed (`forget`).
    pub removed: bool,
    /// What was changed, one line per path.
    pub changes: Vec<String>,
}

/// What `repair snapshots` found and did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RepairSnapshotsReport {
    pub dry_run: bool,
    pub snapshots_checked: u64,
    pub snapshots: Vec<RepairedSnapshot>,
}

/// [`repair_snapshots_unlocked`] under an exclusive lock (none in a dry run).
pub fn repair_snapshots(
    repo: &Arc<Repository>,
    opts: &RepairSnapshotsOptions,
    progress: &dyn Progress,
) -> Result<RepairSnapshotsReport> {
    let _lock = if opts.dry_run {
        None
    } else {
        Some(RepoLock::acquire(repo, true)?)
    };
    repair_snapshots_unlocked(repo, opts, progress)
}

/// Repairs snapshots; the caller holds an exclusive lock and has loaded the index.
pub fn repair_snapshots_unlocked(
    repo: &Arc<Repository>,
    opts: &RepairSnapshotsOptions,
    progress: &dyn Progress,
) -> Result<RepairSnapshotsReport> {
    let mut report = RepairSnapshotsReport {
        dry_run: opts.dry_run,
        ..Default::default()
    };
    let mut snaps = crate::snapshots::list(repo)?;
    if !opts.snapshots.is_empty() {
        snaps.retain(|s| opts.snapshots.contains(&s.id));
    }
    snaps.sort_by_key(|s| s.snapshot.time);
    let saver = (!opts.dry_run).then(|| BlobSaver::new(repo.clone()));
    let mut rw = Rewriter {
        repo,
        saver: saver.as_ref(),
        memo: HashMap::new(),
        empty: None,
        changes: Vec::new(),
    };
    // (original, new snapshot) pairs; the new ones are written after the trees.
    let mut pending: Vec<(SnapshotId, Option<Snapshot>, Vec<String>)> = Vec::new();
    for entry in &snaps {
        report.snapshots_checked += 1;
        progress.current(&format!("snapshot {}", entry.id.short()));
        rw.changes.clear();
        let root = entry.snapshot.tree;
        match rw.rewrite(root, "/")? {
            Some(new_root) if new_root == root => {}
            Some(new_root) => {
                let mut snap = entry.snapshot.clone();
                snap.tree = new_root;
                if snap.original.is_none() {
                    snap.original = Some(entry.id);
                }
                if !snap.has_tag(REPAIRED_TAG) {
                    snap.tags.push(REPAIRED_TAG.to_string());
                }
                pending.push((entry.id, Some(snap), std::mem::take(&mut rw.changes)));
            }
            None => pending.push((
                entry.id,
                None,
                vec!["root tree cannot be loaded: the snapshot cannot be repaired".into()],
            )),
        }
    }
    // Write order: the new trees' packs and index, then the snapshots, and
    // only then remove the originals.
    if let Some(saver) = &saver {
        saver.finish()?;
    }
    for (original, snap, changes) in pending {
        let repaired = match (&snap, opts.dry_run) {
            (Some(s), false) => Some(crate::snapshots::save(repo, s)?),
            (Some(s), true) => Some(SnapshotId::from(Id::hash(
                &s.to_json_bytes()
                    .map_err(|e| crate::RepoError::format("snapshot", "new", e))?,
            ))),
            (None, _) => None,
        };
        let removed = opts.forget && !opts.dry_run;
        if removed {
            match repo
                .storage()
                .remove(FileType::Snapshot, &original.to_hex())
            {
                Ok(()) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
        }
        report.snapshots.push(RepairedSnapshot {
            original,
            repaired,
            removed,
            changes,
        });
    }
    Ok(report)
}

struct Rewriter<'a> {
    repo: &'a Arc<Repository>,
    saver: Option<&'a BlobSaver>,
    /// Tree id → its repaired id (`None`: cannot be loaded).
    memo: HashMap<TreeId, Option<TreeId>>,
    empty: Option<TreeId>,
    /// What was changed in the current snapshot.
    changes: Vec<String>,
}

impl Rewriter<'_> {
    /// The repaired id of tree `id` at `path` (`None` if it cannot be loaded).
    fn rewrite(&mut self, id: TreeId, path: &str) -> Result<Option<TreeId>> {
        if let Some(done) = self.memo.get(&id) {
            return Ok(*done);
        }
        let tree = match self.repo.load_tree(&id) {
            Ok(t) => t,
            Err(e) => {
                tracing::debug!("tree {} at {path} cannot be loaded: {e}", id.short());
                self.memo.insert(id, None);
                return Ok(None);
            }
        };
        let mut changed = false;
        let mut nodes = Vec::with_capacity(tree.nodes.len());
        for mut node in tree.nodes {
            let child = format!("{}/{}", path.trim_end_matches('/'), node.name_lossy());
            match node.node_type {
                NodeType::Irregular => {
                    self.changes
                        .push(format!("{child}: removed node of type irregular"));
                    changed = true;
                    continue;
                }
                NodeType::File => {
                    let content = node.content.take().unwrap_or_default();
                    let mut kept = Vec::with_capacity(content.len());
                    let mut size = 0u64;
                    for b in &content {
                        match self.repo.lookup(b) {
                            Some(e) if e.blob_type == BlobType::Data => {
                                kept.push(*b);
                                size += u64::from(e.plain_len());
                            }
                            _ => {}
                        }
                    }
                    if kept.len() != content.len() {
                        self.changes
                            .push(format!("{child}: removed missing content"));
                        changed = true;
                    } else if size != node.size {
                        self.changes.push(format!("{child}: fixed incorrect size"));
                        changed = true;
                    }
                    node.content = Some(kept);
                    node.size = size;
                }
                NodeType::Dir => {
                    if let Some(sub) = node.subtree {
                        match self.rewrite(sub, &child)? {
                            Some(new) => {
                                changed |= new != sub;
                                node.subtree = Some(new);
                            }
                            None => {
                                self.changes
                                    .push(format!("{child}: replaced with an empty directory"));
                                node.subtree = Some(self.empty_tree()?);
                                changed = true;
                            }
                        }
                    }
                }
                _ => {}
            }
            nodes.push(node);
        }
        let new = if changed {
            self.save(&Tree { nodes })?
        } else {
            id
        };
        self.memo.insert(id, Some(new));
        Ok(Some(new))
    }

    fn empty_tree(&mut self) -> Result<TreeId> {
        if let Some(id) = self.empty {
            return Ok(id);
        }
        let id = self.save(&Tree::default())?;
        self.empty = Some(id);
        Ok(id)
    }

    fn save(&self, tree: &Tree) -> Result<TreeId> {
        let bytes = tree.to_bytes();
        match self.saver {
            Some(saver) => Ok(saver.save(BlobType::Tree, &bytes)?.id),
            None => Ok(TreeId::from(Id::hash(&bytes))),
        }
    }
}
