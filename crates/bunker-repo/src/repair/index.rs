//! `repair index`: rebuild the index from the index files that can be read
//! and the headers of the packs they do not describe.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bunker_format::index::{IndexFile, IndexPack, MAX_PACKS_PER_INDEX};
use bunker_format::{Id, IndexId, PackId};
use bunker_storage::FileType;
use rayon::prelude::*;
use serde::Serialize;

use crate::error::{RepoError, Result};
use crate::lock::RepoLock;
use crate::progress::Progress;
use crate::Repository;

/// What `repair index` does.
#[derive(Clone, Copy, Debug, Default)]
pub struct RepairIndexOptions {
    /// Read the header of every pack, not only of packs the index does not
    /// describe correctly (restic's `--read-all-packs`).
    pub read_all_packs: bool,
    /// Report what would change; write nothing.
    pub dry_run: bool,
}

/// What `repair index` found and did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RepairIndexReport {
    pub dry_run: bool,
    /// Index files read (readable ones).
    pub index_files_read: u64,
    /// Index files that could not be read (replaced by the new index).
    pub index_files_unreadable: Vec<String>,
    /// Pack files in storage.
    pub packs: u64,
    /// Packs indexed from their headers: no index listed them, the listing
    /// did not match their size, or `read_all_packs`.
    pub packs_read: u64,
    /// Of those, packs no readable index file listed before.
    pub packs_added: Vec<PackId>,
    /// Packs the index listed that storage does not have: dropped.
    pub packs_missing: Vec<PackId>,
    /// Packs whose header cannot be read, with the reason: not indexed
    /// (`prune` removes them).
    pub packs_unreadable: Vec<(PackId, String)>,
    pub index_files_written: u64,
    pub index_files_removed: u64,
}

/// [`repair_index_unlocked`] under an exclusive lock (none in a dry run).
pub fn repair_index(
    repo: &Arc<Repository>,
    opts: &RepairIndexOptions,
    progress: &dyn Progress,
) -> Result<RepairIndexReport> {
    let _lock = if opts.dry_run {
        None
    } else {
        Some(RepoLock::acquire(repo, true)?)
    };
    repair_index_unlocked(repo, opts, progress)
}

/// Rebuilds the index; the caller holds an exclusive lock. New index files
/// (listing every readable pack) are written first, then every old index
/// file is removed. The master index of `repo` is reloaded afterwards.
pub fn repair_index_unlocked(
    repo: &Repository,
    opts: &RepairIndexOptions,
    progress: &dyn Progress,
) -> Result<RepairIndexReport> {
    let mut report = RepairIndexReport {
        dry_run: opts.dry_run,
        ..Default::default()
    };
    progress.current("index files");
    let files = repo.storage().list(FileType::Index)?;
    let loaded: Vec<(String, Result<IndexFile>)> = files
        .par_iter()
        .map(|f| {
            let r = repo.load_json::<IndexFile>(FileType::Index, &f.name, "index");
            (f.name.clone(), r)
        })
        .collect();
    let mut old_files: Vec<String> = Vec::new();
    let mut listed: HashMap<PackId, IndexPack> = HashMap::new();
    for (name, res) in loaded {
        old_files.push(name.clone());
        match res {
            Ok(file) => {
                report.index_files_read += 1;
                for p in file.packs {
                    listed.entry(p.id).or_insert(p);
                }
            }
            Err(e) => {
                progress.warn(&format!("index file {name} cannot be read: {e}"));
                report.index_files_unreadable.push(name);
            }
        }
    }

    progress.current("pack files");
    let mut stored: Vec<(PackId, u64)> = Vec::new();
    for f in repo.storage().list(FileType::Pack)? {
        match Id::from_hex(&f.name) {
            Ok(id) => stored.push((PackId::from(id), f.size)),
            Err(_) => tracing::warn!("ignoring pack file with a non-id name {:?}", f.name),
        }
    }
    stored.sort();
    report.packs = stored.len() as u64;
    let mut missing: Vec<PackId> = listed
        .keys()
        .filter(|id| stored.binary_search_by(|(s, _)| s.cmp(id)).is_err())
        .copied()
        .collect();
    missing.sort();
    report.packs_missing = missing;

    // Keep the listings that match the pack's size; read the other headers.
    let mut new_packs: BTreeMap<PackId, IndexPack> = BTreeMap::new();
    let mut to_read: Vec<(PackId, u64)> = Vec::new();
    for (id, size) in &stored {
        match listed.get(id) {
            Some(p) if !opts.read_all_packs && p.implied_pack_size() == *size => {
                new_packs.insert(*id, p.clone());
            }
            _ => to_read.push((*id, *size)),
        }
    }
    progress.current("pack headers");
    progress.set_total(to_read.len() as u64, 0);
    let headers: Vec<(PackId, Result<IndexPack>)> = to_read
        .par_iter()
        .map(|(id, size)| {
            let r = super::read_pack_header(repo, id, *size)
                .map(|blobs| IndexPack::from_pack_blobs(*id, &blobs));
            progress.add_items(1);
            (*id, r)
        })
        .collect();
    for (id, res) in headers {
        report.packs_read += 1;
        match res {
            Ok(p) if p.blobs.is_empty() => {
                report
                    .packs_unreadable
                    .push((id, "the header lists no blobs".into()));
            }
            Ok(p) => {
                if !listed.contains_key(&id) {
                    report.packs_added.push(id);
                }
                new_packs.insert(id, p);
            }
            // The storage failing (not the pack's bytes) stops the repair:
            // it must not drop a pack from the index for a passing error.
            Err(RepoError::Storage(e))
                if e.is_retryable()
                    || matches!(
                        e.kind,
                        bunker_storage::ErrorKind::PermissionDenied
                            | bunker_storage::ErrorKind::Unauthenticated
                            | bunker_storage::ErrorKind::Other
                    ) =>
            {
                return Err(e.into())
            }
            Err(e) => {
                progress.warn(&format!("pack {id} cannot be indexed: {e}"));
                report.packs_unreadable.push((id, e.to_string()));
            }
        }
    }
    if opts.dry_run {
        return Ok(report);
    }

    progress.current("writing index");
    let packs: Vec<IndexPack> = new_packs.into_values().collect();
    let mut supersedes: Vec<IndexId> = old_files
        .iter()
        .filter_map(|n| Id::from_hex(n).ok().map(IndexId::from))
        .collect();
    supersedes.sort();
    let mut written: Vec<String> = Vec::new();
    for (i, chunk) in packs.chunks(MAX_PACKS_PER_INDEX).enumerate() {
        let file = IndexFile {
            supersedes: if i == 0 {
                supersedes.clone()
            } else {
                Vec::new()
            },
            packs: chunk.to_vec(),
        };
        written.push(repo.save_json(FileType::Index, &file)?.to_hex());
    }
    report.index_files_written = written.len() as u64;

    // Only now that the new index is durable: the old files.
    progress.current("removing old index files");
    for name in old_files.iter().filter(|n| !written.contains(n)) {
        match repo.storage().remove(FileType::Index, name) {
            Ok(()) => report.index_files_removed += 1,
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
    }
    repo.load_index()?;
    Ok(report)
}
