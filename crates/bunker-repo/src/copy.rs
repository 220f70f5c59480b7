//! Copying snapshots between repositories (`bunker copy`), as restic does it.
//!
//! Blobs are copied by id: every tree and data blob a selected snapshot needs and
//! the destination lacks is read from the source (decrypted, verified) and saved
//! through the destination's [`BlobSaver`], so it is re-encrypted with the
//! destination key and compressed with the destination's settings. Data chunks are
//! never re-chunked, so the two repositories may use different chunker
//! polynomials; deduplication against data the destination chunked itself then
//! simply does not happen.
//!
//! Order per snapshot: packs, index, then the snapshot file, so an interrupted copy
//! leaves no snapshot pointing at missing data and a rerun only transfers what is
//! still missing. Snapshots already present in the destination (same `original`
//! id, or the same id, with equal time, tree, host, user, paths, tags and
//! excludes — restic's rule) are skipped.
//!
//! A copied snapshot keeps time, host, user, paths, tags and excludes; `parent` is
//! dropped, `original` is set to the source id (unless the source snapshot is a
//! copy itself, whose `original` is kept), and provenance is recorded in
//! `program_version` as `<source program version> (copied by bunker VERSION from
//! repository ID8)`. Tags are left alone because restic compares them when
//! deciding whether a snapshot was already copied.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use bunker_format::index::IndexBlob;
use bunker_format::snapshot::Snapshot;
use bunker_format::{BlobId, BlobType, PackId, SnapshotId, TreeId};
use bunker_storage::FileType;
use rayon::prelude::*;

use crate::error::{RepoError, Result};
use crate::lock::RepoLock;
use crate::packer::BlobSaver;
use crate::progress::Progress;
use crate::snapshots::{self, SnapshotEntry, SnapshotFilter};
use crate::Repository;

/// Reading one range for several blobs of a pack is allowed to fetch at most this
/// many bytes the copy does not need (besides twice the needed bytes).
const RANGE_SLACK: u64 = 256 * 1024;

/// What to copy.
#[derive(Clone, Debug, Default)]
pub struct CopyOptions {
    /// Only snapshots matching this filter.
    pub filter: SnapshotFilter,
    /// Snapshot ids, unique prefixes or `latest`; empty means every snapshot that
    /// matches the filter.
    pub snapshots: Vec<String>,
}

/// One snapshot written to the destination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopiedSnapshot {
    pub source: SnapshotId,
    pub destination: SnapshotId,
}

/// One snapshot not copied because the destination already has it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkippedSnapshot {
    pub source: SnapshotId,
    /// The destination snapshot it matches.
    pub existing: SnapshotId,
}

/// What a copy did.
#[derive(Clone, Debug, Default)]
pub struct CopySummary {
    pub copied: Vec<CopiedSnapshot>,
    pub skipped: Vec<SkippedSnapshot>,
    /// Tree blobs written to the destination.
    pub trees_copied: u64,
    /// Data blobs written to the destination.
    pub data_blobs_copied: u64,
    /// Blobs a selected snapshot needs that the destination already had.
    pub blobs_present: u64,
    /// Plaintext bytes of the blobs written.
    pub bytes_copied: u64,
    /// Bytes the written blobs occupy in destination packs.
    pub bytes_stored: u64,
    /// Bytes read from the source's packs.
    pub bytes_read: u64,
    /// Pack files written to the destination.
    pub packs: u64,
}

/// Copies the selected snapshots of `src` into `dst`.
///
/// Takes a shared lock on both repositories and loads their indexes when not
/// loaded yet. Fails on the first unreadable blob or storage error; what was
/// copied completely until then stays (snapshots whose data is all stored are
/// written, uploaded packs of the failed snapshot are indexed when the
/// destination still accepts writes), so running the copy again resumes.
pub fn copy(
    src: &Arc<Repository>,
    dst: &Arc<Repository>,
    opts: &CopyOptions,
    progress: &dyn Progress,
) -> Result<CopySummary> {
    let _src_lock = RepoLock::acquire(src, false)?;
    let _dst_lock = RepoLock::acquire(dst, false)?;
    for repo in [src, dst] {
        if repo.index().read().index_files().is_empty() {
            repo.load_index()?;
        }
    }
    let selected = select(src, opts)?;
    let existing = by_original(&snapshots::list(dst)?);
    let mut summary = CopySummary::default();
    let mut todo = Vec::new();
    for entry in selected {
        match already_copied(&entry, &existing) {
            Some(found) => {
                tracing::info!(
                    "skipping snapshot {}: already copied as {}",
                    entry.id.short(),
                    found.short()
                );
                summary.skipped.push(SkippedSnapshot {
                    source: entry.id,
                    existing: found,
                });
            }
            None => todo.push(entry),
        }
    }
    progress.set_total(todo.len() as u64, 0);
    let mut visited: HashSet<TreeId> = HashSet::new();
    for entry in todo {
        progress.current(&format!("snapshot {}", entry.id.short()));
        let saver = BlobSaver::new(dst.clone());
        let copied = copy_snapshot_blobs(src, dst, &saver, &entry, &mut visited, progress);
        let stats = match copied {
            Ok(counts) => {
                summary.add(&counts);
                saver.finish()?
            }
            Err(e) => {
                // Index what was uploaded so a rerun does not transfer it again.
                if let Err(finish_err) = saver.finish() {
                    tracing::debug!("could not index the partial copy: {finish_err}");
                }
                return Err(e);
            }
        };
        summary.packs += stats.packs;
        let snapshot = copied_snapshot(src, &entry);
        let new_id = snapshots::save(dst, &snapshot)?;
        tracing::info!(
            "snapshot {} saved, copied from source snapshot {}",
            new_id.short(),
            entry.id.short()
        );
        summary.copied.push(CopiedSnapshot {
            source: entry.id,
            destination: new_id,
        });
        progress.add_items(1);
    }
    Ok(summary)
}

impl CopySummary {
    fn add(&mut self, c: &Counts) {
        self.trees_copied += c.trees;
        self.data_blobs_copied += c.data;
        self.blobs_present += c.present;
        self.bytes_copied += c.bytes;
        self.bytes_stored += c.stored;
        self.bytes_read += c.read;
    }
}

/// The source snapshots to consider, oldest first, without duplicates.
fn select(src: &Repository, opts: &CopyOptions) -> Result<Vec<SnapshotEntry>> {
    if opts.snapshots.is_empty() {
        return snapshots::filtered(src, &opts.filter, None);
    }
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for spec in &opts.snapshots {
        let e = snapshots::find(src, spec, &opts.filter)?;
        if seen.insert(e.id) {
            out.push(e);
        }
    }
    out.sort_by(|a, b| a.snapshot.time.cmp(&b.snapshot.time).then(a.id.cmp(&b.id)));
    Ok(out)
}

/// Destination snapshots by their persistent id (`original`) and by their own id.
fn by_original(dst: &[SnapshotEntry]) -> HashMap<SnapshotId, Vec<SnapshotEntry>> {
    let mut map: HashMap<SnapshotId, Vec<SnapshotEntry>> = HashMap::new();
    for e in dst {
        if let Some(orig) = e.snapshot.original {
            map.entry(orig).or_default().push(e.clone());
        }
        map.entry(e.id).or_default().push(e.clone());
    }
    map
}

/// The destination snapshot `entry` was already copied to, if any.
fn already_copied(
    entry: &SnapshotEntry,
    existing: &HashMap<SnapshotId, Vec<SnapshotEntry>>,
) -> Option<SnapshotId> {
    let key = entry.snapshot.original.unwrap_or(entry.id);
    existing
        .get(&key)?
        .iter()
        .find(|d| similar(&d.snapshot, &entry.snapshot))
        .map(|d| d.id)
}

/// restic's `similarSnapshots`: everything but parent, original (and program
/// version and summary) must match; paths and tags as sets, excludes in order.
pub fn similar(a: &Snapshot, b: &Snapshot) -> bool {
    a.time == b.time
        && a.tree == b.tree
        && a.hostname == b.hostname
        && a.username == b.username
        && a.uid == b.uid
        && a.gid == b.gid
        && a.paths.len() == b.paths.len()
        && a.tags.len() == b.tags.len()
        && a.excludes == b.excludes
        && b.paths.iter().all(|p| a.paths.contains(p))
        && b.tags.iter().all(|t| a.tags.contains(t))
}

/// The snapshot document written to the destination.
fn copied_snapshot(src: &Repository, entry: &SnapshotEntry) -> Snapshot {
    let mut sn = entry.snapshot.clone();
    sn.parent = None;
    sn.original = Some(sn.original.unwrap_or(entry.id));
    let repo_id: String = src.config().id.chars().take(8).collect();
    let from = format!(
        "copied by bunker {} from repository {repo_id}",
        env!("CARGO_PKG_VERSION")
    );
    sn.program_version = if sn.program_version.is_empty() {
        from
    } else {
        format!("{} ({from})", sn.program_version)
    };
    sn
}

#[derive(Default)]
struct Counts {
    trees: u64,
    data: u64,
    present: u64,
    bytes: u64,
    stored: u64,
    read: u64,
}

/// Saves every blob of `entry`'s tree that the destination lacks.
fn copy_snapshot_blobs(
    src: &Repository,
    dst: &Repository,
    saver: &BlobSaver,
    entry: &SnapshotEntry,
    visited: &mut HashSet<TreeId>,
    progress: &dyn Progress,
) -> Result<Counts> {
    let mut counts = Counts::default();
    let mut needed: HashSet<BlobId> = HashSet::new();
    let mut stack = vec![entry.snapshot.tree];
    // Trees: always walked (a resumed copy may have indexed a tree whose data is
    // still missing), saved when missing.
    while let Some(tree_id) = stack.pop() {
        if !visited.insert(tree_id) {
            continue;
        }
        let blob_id = BlobId::from(tree_id.id());
        let plain = src.read_blob(BlobType::Tree, &blob_id)?;
        counts.read += plain.len() as u64;
        let tree = bunker_format::node::Tree::from_bytes(&plain)
            .map_err(|e| RepoError::format("tree", tree_id, e))?;
        for node in &tree.nodes {
            if let Some(sub) = node.subtree {
                stack.push(sub);
            }
            for id in node.content.iter().flatten() {
                if dst.lookup(id).is_some() || saver.known(id) {
                    counts.present += 1;
                } else {
                    needed.insert(*id);
                }
            }
        }
        if saver.known(&blob_id) {
            counts.present += 1;
        } else {
            let saved = saver.save_with_id(BlobType::Tree, blob_id, &plain)?;
            if saved.added {
                counts.trees += 1;
                counts.bytes += plain.len() as u64;
                counts.stored += saved.packed;
            }
        }
    }
    let data = copy_data(src, saver, needed, progress)?;
    counts.data += data.data;
    counts.bytes += data.bytes;
    counts.stored += data.stored;
    counts.read += data.read;
    Ok(counts)
}

/// Reads the `needed` data blobs from the source, pack by pack and in parallel,
/// and saves them into the destination.
fn copy_data(
    src: &Repository,
    saver: &BlobSaver,
    needed: HashSet<BlobId>,
    progress: &dyn Progress,
) -> Result<Counts> {
    let mut per_pack: HashMap<PackId, Vec<IndexBlob>> = HashMap::new();
    {
        let index = src.index().read();
        for id in needed {
            let entry = index
                .get(&id)
                .filter(|e| e.blob_type == BlobType::Data)
                .ok_or_else(|| RepoError::BlobNotFound {
                    blob: id.to_string(),
                })?;
            per_pack
                .entry(index.pack_id(entry.pack))
                .or_default()
                .push(IndexBlob {
                    id,
                    blob_type: BlobType::Data,
                    offset: entry.offset,
                    length: entry.length,
                    uncompressed_length: entry.uncompressed_length,
                });
        }
    }
    let packs: Vec<(PackId, Vec<IndexBlob>)> = per_pack.into_iter().collect();
    let results: Vec<Counts> = packs
        .into_par_iter()
        .map(|(pack, mut blobs)| {
            blobs.sort_by_key(|b| b.offset);
            copy_pack_blobs(src, saver, pack, &blobs, progress)
        })
        .collect::<Result<_>>()?;
    let mut total = Counts::default();
    for c in results {
        total.data += c.data;
        total.bytes += c.bytes;
        total.stored += c.stored;
        total.read += c.read;
    }
    Ok(total)
}

/// Copies some blobs of one source pack (sorted by offset), with one ranged read
/// when they lie close together and one read per blob otherwise.
fn copy_pack_blobs(
    src: &Repository,
    saver: &BlobSaver,
    pack: PackId,
    blobs: &[IndexBlob],
    progress: &dyn Progress,
) -> Result<Counts> {
    let (Some(first), Some(last)) = (blobs.first(), blobs.last()) else {
        return Ok(Counts::default());
    };
    let name = pack.to_string();
    let start = u64::from(first.offset);
    let end = blobs
        .iter()
        .map(|b| u64::from(b.offset) + u64::from(b.length))
        .max()
        .unwrap_or(u64::from(last.offset) + u64::from(last.length));
    let needed: u64 = blobs.iter().map(|b| u64::from(b.length)).sum();
    let span = end.saturating_sub(start);
    let whole = if span <= needed * 2 + RANGE_SLACK {
        Some(
            src.storage()
                .read_range(FileType::Pack, &name, start, span)?,
        )
    } else {
        None
    };
    let mut c = Counts {
        read: whole.as_ref().map_or(0, |w| w.len() as u64),
        ..Counts::default()
    };
    for b in blobs {
        let raw = match &whole {
            Some(w) => {
                let from = (u64::from(b.offset) - start) as usize;
                let to = from + b.length as usize;
                w.get(from..to)
                    .ok_or_else(|| RepoError::DamagedPack {
                        pack: name.clone(),
                        msg: format!("short read of blob {}", b.id.id().short()),
                    })?
                    .to_vec()
            }
            None => {
                let r = src.storage().read_range(
                    FileType::Pack,
                    &name,
                    u64::from(b.offset),
                    u64::from(b.length),
                )?;
                c.read += r.len() as u64;
                r.to_vec()
            }
        };
        let plain = src.decode_verified(&raw, &b.id, b.uncompressed_length, &name)?;
        let saved = saver.save_with_id(BlobType::Data, b.id, &plain)?;
        if saved.added {
            c.data += 1;
            c.bytes += plain.len() as u64;
            c.stored += saved.packed;
            progress.add_bytes(plain.len() as u64);
        }
    }
    Ok(c)
}

#[cfg(test)]
#[path = "copy_tests.rs"]
mod tests;
