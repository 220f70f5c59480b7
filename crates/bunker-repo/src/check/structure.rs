//! Structure phases of `check`: index files, pack listing, snapshots, trees.

use std::collections::{HashMap, HashSet};

use bunker_format::index::{IndexBlob, IndexFile};
use bunker_format::node::{NodeType, Tree};
use bunker_format::snapshot::Snapshot;
use bunker_format::{BlobId, BlobType, Id, IndexId, PackId, SnapshotId, TreeId};
use bunker_storage::FileType;
use rayon::prelude::*;

use super::{expected_pack_size, Findings, PackInfo};
use crate::error::Result;
use crate::index::MasterIndex;
use crate::progress::Progress;
use crate::Repository;

/// Load every index file; install the merged master index into `repo`.
/// Returns the packs the index files describe.
pub(super) fn load_indexes(
    repo: &Repository,
    f: &mut Findings,
    progress: &dyn Progress,
) -> Result<HashMap<PackId, PackInfo>> {
    let files = repo.storage().list(FileType::Index)?;
    progress.current(&format!("loading {} index files", files.len()));
    let loaded: Vec<(String, Result<IndexFile>)> = files
        .par_iter()
        .map(|file| {
            let r = repo.load_json::<IndexFile>(FileType::Index, &file.name, "index");
            (file.name.clone(), r)
        })
        .collect();
    let mut master = MasterIndex::default();
    let mut packs: HashMap<PackId, PackInfo> = HashMap::new();
    // Packs listed by more than one index file; `true` if the listings differ.
    let mut listed_twice: std::collections::BTreeMap<PackId, bool> = Default::default();
    for (name, result) in loaded {
        let file = match result {
            Ok(file) => file,
            Err(e) => {
                f.error(progress, format!("index file {name} cannot be loaded: {e}"));
                continue;
            }
        };
        let id = match Id::from_hex(&name) {
            Ok(id) => IndexId::from(id),
            Err(e) => {
                f.error(
                    progress,
                    format!("index file {name:?} has an invalid name: {e}"),
                );
                continue;
            }
        };
        master.add_file(id, &file);
        for p in &file.packs {
            let mut blobs = p.blobs.clone();
            blobs.sort_by_key(|b| b.offset);
            let info = packs.entry(p.id).or_default();
            if info.indexes.is_empty() {
                info.blobs = blobs;
            } else {
                *listed_twice.entry(p.id).or_default() |= info.blobs != blobs;
            }
            info.indexes.push(id);
        }
    }
    // One line per pack, however many index files list it.
    for (id, differs) in listed_twice {
        f.warning(format!(
            "pack {id} is listed{} in {} index files: {} (harmless; `bunker repair index` rewrites the index with one entry per pack)",
            if differs { " with different contents" } else { "" },
            packs[&id].indexes.len(),
            join_ids(packs[&id].indexes.iter())
        ));
    }
    *repo.index().write() = master;
    Ok(packs)
}

fn join_ids<'a>(ids: impl Iterator<Item = &'a IndexId>) -> String {
    ids.map(|i| i.to_hex()).collect::<Vec<_>>().join(", ")
}

/// Compare the packs in storage with the index. Returns the number of pack files in storage.
pub(super) fn check_packs(
    repo: &Repository,
    packs: &HashMap<PackId, PackInfo>,
    f: &mut Findings,
    progress: &dyn Progress,
) -> Result<u64> {
    let listed = repo.storage().list(FileType::Pack)?;
    let count = listed.len() as u64;
    let mut present: HashMap<PackId, u64> = HashMap::with_capacity(listed.len());
    for file in listed {
        match Id::from_hex(&file.name) {
            Ok(id) => {
                present.insert(PackId::from(id), file.size);
            }
            Err(_) => f.warning(format!(
                "unexpected file {:?} among the pack files",
                file.name
            )),
        }
    }
    let mut ids: Vec<&PackId> = packs.keys().collect();
    ids.sort();
    for id in ids {
        let info = &packs[id];
        check_pack_listing(id, &info.blobs, f, progress);
        match present.remove(id) {
            None => {
                f.missing.insert(*id);
                f.error(
                    progress,
                    format!("pack {id} does not exist (the index lists it)"),
                );
            }
            Some(size) => {
                let expected = expected_pack_size(&info.blobs);
                if size != expected {
                    f.damaged.insert(*id);
                    f.error(
                        progress,
                        format!("pack {id} has size {size}, the index implies {expected} (truncated or damaged)"),
                    );
                }
            }
        }
    }
    let mut orphans: Vec<(PackId, u64)> = present.into_iter().collect();
    orphans.sort();
    f.orphans = orphans;
    Ok(count)
}

/// Reports the packs no index lists (after the tree walk, which tells which
/// blobs snapshots need that no index has). When such blobs exist, the
/// headers of the unindexed packs are read: a pack holding one is an error
/// whose remedy is `repair index` — `prune` would refuse, and deleting the
/// pack would lose the data.
pub(super) fn report_orphans(repo: &Repository, f: &mut Findings, progress: &dyn Progress) {
    let orphans = std::mem::take(&mut f.orphans);
    if orphans.is_empty() {
        return;
    }
    let unindexed: HashSet<BlobId> = {
        let idx = repo.index().read();
        f.bad_blobs
            .iter()
            .filter(|b| !idx.has(b))
            .copied()
            .collect()
    };
    let needed: Vec<(usize, Option<String>)> = orphans
        .par_iter()
        .map(|(id, size)| {
            if unindexed.is_empty() {
                return (0, None);
            }
            match crate::repair::read_pack_header(repo, id, *size) {
                Ok(blobs) => (
                    blobs.iter().filter(|b| unindexed.contains(&b.id)).count(),
                    None,
                ),
                Err(e) => (0, Some(e.to_string())),
            }
        })
        .collect();
    for ((id, _), (n, unreadable)) in orphans.iter().zip(needed) {
        if n > 0 {
            f.error(
                progress,
                format!(
                    "pack {id} is not referenced by any index but holds {n} blob(s) that snapshots need: run `bunker repair index` to index it"
                ),
            );
        } else if let Some(e) = unreadable {
            f.warning(format!(
                "pack {id} is not referenced by any index and its header cannot be read ({e})"
            ));
        } else if !unindexed.is_empty() {
            // Trees no index has cannot be followed: their data may be here.
            f.warning(format!(
                "pack {id} is not referenced by any index; snapshots reference data no index has, so it may be needed: run `bunker repair index` before any prune"
            ));
        } else {
            f.warning(format!(
                "pack {id} is not referenced by any index (no snapshot needs it, `bunker prune` removes it; `bunker repair index` would index it)"
            ));
        }
    }
}

/// Sanity of one pack's index entries: contiguous from offset 0, plausible lengths, one blob type.
fn check_pack_listing(id: &PackId, blobs: &[IndexBlob], f: &mut Findings, progress: &dyn Progress) {
    if blobs.is_empty() {
        f.error(
            progress,
            format!("pack {id} is listed in the index without blobs"),
        );
        return;
    }
    let mut next = 0u64;
    let mut gaps = false;
    for b in blobs {
        if u64::from(b.offset) != next {
            gaps = true;
        }
        next = u64::from(b.offset) + u64::from(b.length);
        if (b.length as usize) < bunker_format::crypto::CRYPTO_OVERHEAD {
            f.error(
                progress,
                format!(
                    "pack {id}: blob {} has an impossible length {} in the index",
                    b.id, b.length
                ),
            );
        }
        if b.uncompressed_length == Some(0) {
            f.error(
                progress,
                format!(
                    "pack {id}: blob {} has an uncompressed length of 0 in the index",
                    b.id
                ),
            );
        }
    }
    if gaps {
        f.error(
            progress,
            format!("pack {id}: the index lists gaps or overlapping blobs"),
        );
    }
    if blobs.iter().any(|b| b.blob_type != blobs[0].blob_type) {
        f.warning(format!("pack {id} mixes tree and data blobs"));
    }
}

/// Load every snapshot; returns (snapshot id, root tree) of those that load.
pub(super) fn load_snapshots(
    repo: &Repository,
    f: &mut Findings,
    progress: &dyn Progress,
) -> Result<Vec<(SnapshotId, TreeId)>> {
    let files = repo.storage().list(FileType::Snapshot)?;
    let loaded: Vec<(String, Result<Snapshot>)> = files
        .par_iter()
        .map(|file| {
            let r = repo.load_json::<Snapshot>(FileType::Snapshot, &file.name, "snapshot");
            (file.name.clone(), r)
        })
        .collect();
    let mut out = Vec::with_capacity(loaded.len());
    for (name, result) in loaded {
        match (result, Id::from_hex(&name)) {
            (Ok(s), Ok(id)) => out.push((SnapshotId::from(id), s.tree)),
            (Err(e), _) => f.error(progress, format!("snapshot {name} cannot be loaded: {e}")),
            (_, Err(e)) => f.error(
                progress,
                format!("snapshot file {name:?} has an invalid name: {e}"),
            ),
        }
    }
    out.sort();
    Ok(out)
}

/// Result of the tree walk.
pub(super) struct Walk {
    /// Distinct trees loaded.
    pub trees: u64,
    /// Every referenced blob (trees and data), when unused blobs are to be reported.
    pub referenced: Option<HashSet<BlobId>>,
}

#[derive(Default)]
struct TreeCheck {
    loaded: bool,
    subtrees: Vec<TreeId>,
    data: Vec<BlobId>,
    errors: Vec<String>,
    warnings: Vec<String>,
    bad: Vec<BlobId>,
}

/// Whether `id` is indexed as a blob of type `t`; records an error otherwise.
fn expect_blob(
    repo: &Repository,
    id: &BlobId,
    t: BlobType,
    what: impl FnOnce() -> String,
    out: &mut TreeCheck,
) -> bool {
    match repo.lookup(id) {
        Some(e) if e.blob_type == t => true,
        Some(e) => {
            out.errors.push(format!(
                "{} is indexed as a {} blob, not {}",
                what(),
                e.blob_type.as_str(),
                t.as_str()
            ));
            out.bad.push(*id);
            false
        }
        None => {
            out.errors.push(format!("{} not found in index", what()));
            out.bad.push(*id);
            false
        }
    }
}

fn check_tree(repo: &Repository, id: &TreeId, track: bool) -> TreeCheck {
    let mut out = TreeCheck::default();
    let tree: Tree = match repo.load_tree(id) {
        Ok(t) => t,
        Err(e) => {
            out.errors.push(format!("tree {id} cannot be loaded: {e}"));
            out.bad.push(*id);
            return out;
        }
    };
    out.loaded = true;
    for node in &tree.nodes {
        let name = String::from_utf8_lossy(&node.name).into_owned();
        if node.name.is_empty() {
            out.errors.push(format!("tree {id}: node with empty name"));
        }
        match node.node_type {
            NodeType::File => {
                let Some(content) = &node.content else {
                    out.errors
                        .push(format!("tree {id}: file {name:?} has no content list"));
                    continue;
                };
                for (i, blob) in content.iter().enumerate() {
                    if blob.id().is_null() {
                        out.errors
                            .push(format!("tree {id}: file {name:?} blob {i} has a null id"));
                        continue;
                    }
                    expect_blob(
                        repo,
                        blob,
                        BlobType::Data,
                        || format!("tree {id}: file {name:?} blob {blob}"),
                        &mut out,
                    );
                    if track {
                        out.data.push(*blob);
                    }
                }
            }
            NodeType::Dir => match &node.subtree {
                None => out
                    .errors
                    .push(format!("tree {id}: directory {name:?} has no subtree")),
                Some(sub) if sub.id().is_null() => out.errors.push(format!(
                    "tree {id}: directory {name:?} has a null subtree id"
                )),
                Some(sub) => {
                    if expect_blob(
                        repo,
                        sub,
                        BlobType::Tree,
                        || format!("tree {id}: directory {name:?} subtree {sub}"),
                        &mut out,
                    ) {
                        out.subtrees.push(*sub);
                    }
                }
            },
            NodeType::Irregular => out.warnings.push(format!(
                "tree {id}: {name:?} is an irregular file (its content was not saved)"
            )),
            _ => {}
        }
    }
    out
}

/// Walk all trees reachable from the snapshots, each once, level by level in parallel.
pub(super) fn walk_trees(
    repo: &Repository,
    snaps: &[(SnapshotId, TreeId)],
    track: bool,
    f: &mut Findings,
    progress: &dyn Progress,
) -> Walk {
    let mut seen: HashSet<TreeId> = HashSet::new();
    let mut referenced: Option<HashSet<BlobId>> = track.then(HashSet::new);
    let mut frontier: Vec<TreeId> = Vec::new();
    for (snap, root) in snaps {
        if !seen.insert(*root) {
            continue;
        }
        let mut probe = TreeCheck::default();
        if expect_blob(
            repo,
            root,
            BlobType::Tree,
            || format!("snapshot {snap}: root tree {root}"),
            &mut probe,
        ) {
            frontier.push(*root);
        }
        for e in probe.errors {
            f.error(progress, e);
        }
        f.bad_blobs.extend(probe.bad);
    }
    let mut trees = 0u64;
    while !frontier.is_empty() {
        progress.current(&format!(
            "trees: {trees} checked, {} queued",
            frontier.len()
        ));
        let results: Vec<TreeCheck> = frontier
            .par_iter()
            .map(|t| check_tree(repo, t, track))
            .collect();
        if let Some(r) = referenced.as_mut() {
            r.extend(frontier.iter().copied());
        }
        let mut next = Vec::new();
        for r in results {
            trees += u64::from(r.loaded);
            for e in r.errors {
                f.error(progress, e);
            }
            f.warnings.extend(r.warnings);
            f.bad_blobs.extend(r.bad);
            if let Some(set) = referenced.as_mut() {
                set.extend(r.data);
            }
            for s in r.subtrees {
                if seen.insert(s) {
                    next.push(s);
                }
            }
        }
        frontier = next;
    }
    Walk { trees, referenced }
}

/// Errors for indexed blobs that no snapshot references.
pub(super) fn report_unused(
    repo: &Repository,
    referenced: &HashSet<BlobId>,
    f: &mut Findings,
    progress: &dyn Progress,
) {
    let index = repo.index().read();
    let mut unused: Vec<(BlobId, BlobType)> = index
        .iter()
        .filter(|(id, _)| !referenced.contains(id))
        .map(|(id, e)| (*id, e.blob_type))
        .collect();
    drop(index);
    unused.sort();
    for (id, t) in unused {
        f.error(progress, format!("unused {} blob {id}", t.as_str()));
    }
}
