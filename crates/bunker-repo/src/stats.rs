//! `stats`: sizes and counts of snapshots, in restic's four counting modes.
//!
//! - `restore-size`: every node of every snapshot counts; sizes add up,
//!   except that hard links (same inode and device) count once per snapshot.
//! - `files-by-contents`: a node counts once per distinct content (the
//!   sequence of its data blob ids) over all snapshots.
//! - `blobs-per-file`: for each node with distinct content, its distinct
//!   data blobs (plaintext size) count.
//! - `raw-data`: the blobs the snapshots reference (trees and data), each
//!   once, at their stored size; with compression statistics for v2
//!   repositories.
//!
//! The numbers equal restic's for the same repository and selection (the
//! integration tests compare them with `restic stats --json`).

use std::collections::{HashMap, HashSet};

use bunker_format::node::{Node, NodeType};
use bunker_format::{BlobId, BlobType, Id, TreeId};
use serde::Serialize;

use crate::error::{RepoError, Result};
use crate::snapshots::SnapshotEntry;
use crate::walk::{walk_tree, WalkAction};
use crate::Repository;

/// The counting mode (`--mode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StatsMode {
    #[default]
    RestoreSize,
    FilesByContents,
    BlobsPerFile,
    RawData,
}

impl StatsMode {
    /// restic's name of the mode.
    pub fn as_str(&self) -> &'static str {
        match self {
            StatsMode::RestoreSize => "restore-size",
            StatsMode::FilesByContents => "files-by-contents",
            StatsMode::BlobsPerFile => "blobs-per-file",
            StatsMode::RawData => "raw-data",
        }
    }
}

impl std::str::FromStr for StatsMode {
    type Err = RepoError;
    fn from_str(s: &str) -> Result<StatsMode> {
        Ok(match s {
            "restore-size" => StatsMode::RestoreSize,
            "files-by-contents" => StatsMode::FilesByContents,
            "blobs-per-file" => StatsMode::BlobsPerFile,
            "raw-data" => StatsMode::RawData,
            _ => {
                return Err(RepoError::Invalid(format!(
                "unknown stats mode {s:?}: use restore-size, files-by-contents, blobs-per-file or raw-data"
            )))
            }
        })
    }
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

fn is_zero_f(v: &f64) -> bool {
    *v == 0.0
}

/// The result, serialized like restic's `stats --json`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Stats {
    pub total_size: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub total_uncompressed_size: u64,
    #[serde(skip_serializing_if = "is_zero_f")]
    pub compression_ratio: f64,
    #[serde(skip_serializing_if = "is_zero_f")]
    pub compression_progress: f64,
    #[serde(skip_serializing_if = "is_zero_f")]
    pub compression_space_saving: f64,
    #[serde(skip_serializing_if = "is_zero")]
    pub total_file_count: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub total_blob_count: u64,
    pub snapshots_count: u64,
}

/// Accumulated state across snapshots.
#[derive(Default)]
struct Counter {
    stats: Stats,
    unique_contents: HashSet<Id>,
    file_blobs: HashMap<Vec<u8>, HashSet<BlobId>>,
}

fn content_id(node: &Node) -> Id {
    let content = node.content.as_deref().unwrap_or_default();
    let mut bytes = Vec::with_capacity(content.len() * 32);
    for c in content {
        bytes.extend_from_slice(c.id().as_bytes());
    }
    Id::hash(&bytes)
}

impl Counter {
    fn node(
        &mut self,
        repo: &Repository,
        mode: StatsMode,
        path: &[u8],
        node: &Node,
        hardlinks: &mut HashSet<(u64, u64)>,
    ) -> Result<()> {
        match mode {
            StatsMode::RestoreSize => {
                self.stats.total_file_count += 1;
                let counted = node.links == 1
                    || node.node_type == NodeType::Dir
                    || node.inode == 0
                    || hardlinks.insert((node.inode, node.device_id));
                if counted {
                    self.stats.total_size += node.size;
                }
            }
            StatsMode::FilesByContents | StatsMode::BlobsPerFile => {
                if !self.unique_contents.insert(content_id(node)) {
                    return Ok(());
                }
                if mode == StatsMode::FilesByContents {
                    self.stats.total_size += node.size;
                    self.stats.total_file_count += 1;
                    return Ok(());
                }
                for blob in node.content.iter().flatten() {
                    let seen = self.file_blobs.entry(path.to_vec()).or_insert_with(|| {
                        self.stats.total_file_count += 1;
                        HashSet::new()
                    });
                    if seen.insert(*blob) {
                        let entry = repo
                            .lookup(blob)
                            .filter(|e| e.blob_type == BlobType::Data)
                            .ok_or_else(|| RepoError::BlobNotFound {
                                blob: blob.to_string(),
                            })?;
                        self.stats.total_size += u64::from(entry.plain_len());
                        self.stats.total_blob_count += 1;
                    }
                }
            }
            StatsMode::RawData => {}
        }
        Ok(())
    }
}

/// Compute statistics over `snaps` (the index must be loaded).
pub fn stats(repo: &Repository, snaps: &[SnapshotEntry], mode: StatsMode) -> Result<Stats> {
    let mut c = Counter::default();
    let mut used: HashSet<BlobId> = HashSet::new();
    for e in snaps {
        c.stats.snapshots_count += 1;
        if mode == StatsMode::RawData {
            used_blobs(repo, &e.snapshot.tree, &mut used)?;
            continue;
        }
        let mut hardlinks = HashSet::new();
        walk_tree(repo, &e.snapshot.tree, &mut |path, node| {
            c.node(repo, mode, path, node, &mut hardlinks)?;
            Ok(WalkAction::Continue)
        })?;
    }
    if mode == StatsMode::RawData {
        raw_sizes(repo, &used, &mut c.stats)?;
    }
    Ok(c.stats)
}

/// Add every blob reachable from `root` (trees and data) to `used`; a tree
/// already in the set is not read again.
pub fn used_blobs(repo: &Repository, root: &TreeId, used: &mut HashSet<BlobId>) -> Result<()> {
    let mut todo = vec![*root];
    while let Some(tree_id) = todo.pop() {
        if !used.insert(BlobId::from(tree_id.id())) {
            continue;
        }
        let tree = repo.load_tree(&tree_id)?;
        for node in tree.nodes {
            used.extend(node.content.iter().flatten().copied());
            if let Some(sub) = node.subtree {
                todo.push(sub);
            }
        }
    }
    Ok(())
}

fn raw_sizes(repo: &Repository, used: &HashSet<BlobId>, st: &mut Stats) -> Result<()> {
    let v2 = repo.config().version >= 2;
    let overhead = bunker_format::crypto::CRYPTO_OVERHEAD as u64;
    let (mut compressed, mut compressed_plain) = (0u64, 0u64);
    for id in used {
        let e = repo.lookup(id).ok_or_else(|| RepoError::BlobNotFound {
            blob: id.to_string(),
        })?;
        let length = u64::from(e.length);
        st.total_size += length;
        st.total_blob_count += 1;
        if v2 {
            let plain_ct = u64::from(e.plain_len()) + overhead;
            st.total_uncompressed_size += plain_ct;
            if e.uncompressed_length.is_some() {
                compressed += length;
                compressed_plain += plain_ct;
            }
        }
    }
    if compressed > 0 {
        st.compression_ratio = compressed_plain as f64 / compressed as f64;
    }
    if st.total_uncompressed_size > 0 {
        let total = st.total_uncompressed_size as f64;
        st.compression_progress = compressed_plain as f64 / total * 100.0;
        st.compression_space_saving = (1.0 - st.total_size as f64 / total) * 100.0;
    }
    Ok(())
}
