//! Carrying out a prune plan in the crash-safe order: repack, write the new
//! index, delete the old index files, delete packs.

use bunker_format::index::{IndexFile, IndexPack, MAX_PACKS_PER_INDEX};
use bunker_format::pack::PackBuilder;
use bunker_format::IndexId;
use bunker_storage::FileType;

use super::plan::{PackAction, Plan};
use super::{Mutations, PruneReport};
use crate::error::{RepoError, Result};
use crate::progress::Progress;
use crate::repacker::Repacker;
use crate::Repository;
use bunker_sources::CancelToken;

///
/// Cancellation (`cancel`): checked before anything is written and between
/// repacked packs. A cancelled repack removes the packs it had written
/// (nothing references them yet) and returns [`RepoError::Cancelled`]: the
/// repository is as before. Once the new index is written, the remaining
/// deletions are finished (they take moments) before prune returns.
pub(super) fn execute(
    repo: &Repository,
    plan: &Plan,
    report: &mut PruneReport,
    m: &Mutations,
    progress: &dyn Progress,
    cancel: Option<&CancelToken>,
) -> Result<()> {
    let cancelled = || cancel.is_some_and(CancelToken::is_cancelled);
    if cancelled() {
        return Err(RepoError::Cancelled);
    }
    // 1. Repack: copy the used blobs of partly-used packs into new packs.
    progress.current("repacking");
    let mut new_packs = Vec::new();
    if let Err(e) = repack(repo, plan, m, progress, &cancelled, &mut new_packs) {
        if matches!(e, RepoError::Cancelled) {
            for p in &new_packs {
                remove(repo, FileType::Pack, &p.id.to_hex())?;
                m.done();
            }
        }
        return Err(e);
    }
    report.new_packs = new_packs.len() as u64;

    // 2. New index: every kept pack plus the new ones, superseding all old files.
    progress.current("writing index");
    let mut packs: Vec<IndexPack> = plan
        .packs
        .iter()
        .filter(|p| p.action == PackAction::Keep)
        .map(|p| p.entry.clone())
        .collect();
    packs.extend(new_packs);
    let mut supersedes: Vec<IndexId> = plan.index_files.clone();
    supersedes.sort();
    let mut written = Vec::new();
    let chunks: Vec<Vec<IndexPack>> = packs
        .chunks(MAX_PACKS_PER_INDEX)
        .map(<[IndexPack]>::to_vec)
        .collect();
    for (i, chunk) in chunks.into_iter().enumerate() {
        let file = IndexFile {
            // restic records the superseded files in one of the new files.
            supersedes: if i == 0 {
                supersedes.clone()
            } else {
                Vec::new()
            },
            packs: chunk,
        };
        let id = repo.save_json(FileType::Index, &file)?;
        m.done();
        written.push(IndexId::from(id));
    }
    report.index_files_written = written.len() as u64;

    // 3. Old index files (never one we just wrote: identical content has the same id).
    progress.current("removing old index files");
    for id in &plan.index_files {
        if written.contains(id) {
            continue;
        }
        remove(repo, FileType::Index, &id.to_hex())?;
        m.done();
        report.index_files_removed += 1;
    }

    // 4. Packs no index lists any more.
    progress.current("removing packs");
    let doomed = plan
        .packs
        .iter()
        .filter(|p| !p.missing && matches!(p.action, PackAction::Remove | PackAction::Repack))
        .map(|p| p.id)
        .chain(plan.unreferenced.iter().map(|(id, _)| *id));
    for id in doomed {
        remove(repo, FileType::Pack, &id.to_hex())?;
        m.done();
        progress.add_items(1);
    }
    Ok(())
}

fn remove(repo: &Repository, t: FileType, name: &str) -> Result<()> {
    match repo.storage().remove(t, name) {
        Ok(()) => Ok(()),
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Read each pack to repack, verify its used blobs, and write them
/// (still encrypted as they were) into new packs. Returns the new packs'
/// index entries; nothing references them until the index is written.
/// The new packs are pushed to `out` as they are uploaded, so a caller can
/// remove them when this stops early.
fn repack(
    repo: &Repository,
    plan: &Plan,
    m: &Mutations,
    progress: &dyn Progress,
    cancelled: &dyn Fn() -> bool,
    out: &mut Vec<IndexPack>,
) -> Result<()> {
    let mut packer = Repacker::new(repo.options().pack_size);
    for p in plan.packs.iter().filter(|p| p.action == PackAction::Repack) {
        if cancelled() {
            return Err(RepoError::Cancelled);
        }
        let name = p.id.to_hex();
        progress.current(&name);
        let bytes = repo.storage().read(FileType::Pack, &name)?;
        for b in &p.used_blobs {
            let start = b.offset as usize;
            let end = start + b.length as usize;
            let raw = bytes
                .get(start..end)
                .ok_or_else(|| RepoError::DamagedPack {
                    pack: name.clone(),
                    msg: format!("blob {} lies beyond the end of the pack", b.id.short()),
                })?;
            // Never copy a damaged blob: it would replace the only good record.
            repo.decode_verified(raw, &b.id, b.uncompressed_length, &name)?;
            if let Some(full) = packer.add(b.blob_type, b.id, b.uncompressed_length, raw)? {
                out.push(upload(repo, full, m)?);
            }
        }
        progress.add_items(1);
        progress.add_bytes(p.size);
    }
    for builder in packer.finish() {
        out.push(upload(repo, builder, m)?);
    }
    Ok(())
}

fn upload(repo: &Repository, builder: PackBuilder, m: &Mutations) -> Result<IndexPack> {
    let (id, bytes, blobs) = builder.finish(repo.key());
    repo.storage()
        .write(FileType::Pack, &id.to_hex(), bytes.into())?;
    m.done();
    Ok(IndexPack::from_pack_blobs(id, &blobs))
}
