//! `repair packs`: salvage the intact blobs of damaged packs, as restic's
//! `repair packs` does.
//!
//! Each named pack is read whole; every blob the index lists in it is
//! decrypted, decompressed and checked against its id, and the intact ones
//! are copied (still encrypted as they were) into new packs. Write order:
//! the new packs, then an index file listing them (the blobs are now
//! indexed twice, which is harmless), then the damaged packs are deleted,
//! then the index is rewritten without them ([`super::repair_index_unlocked`]).
//! Killed at any point, the repository is consistent or `repair index`
//! finishes the work. Blobs that were damaged are gone:
//! `repair snapshots --forget` then removes the references to them.

use bunker_format::index::{IndexFile, IndexPack};
use bunker_format::pack::PackBuilder;
use bunker_format::PackId;
use bunker_storage::FileType;
use serde::Serialize;

use crate::error::{RepoError, Result};
use crate::progress::Progress;
use crate::repacker::Repacker;
use crate::Repository;

/// One repaired pack.
#[derive(Clone, Debug, Serialize)]
pub struct RepairedPack {
    pub pack: PackId,
    /// Blobs copied into new packs.
    pub salvaged: u64,
    /// Blobs that were damaged (or beyond the end of the pack): lost.
    pub lost: u64,
}

/// What `repair packs` did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RepairPacksReport {
    pub packs: Vec<RepairedPack>,
    pub new_packs: Vec<PackId>,
}

/// The stored packs named by `prefixes` (pack ids or unique prefixes of
/// them, as `repair packs` takes them): each must match exactly one.
pub fn find_packs(repo: &Repository, prefixes: &[String]) -> Result<Vec<PackId>> {
    let stored = repo.storage().list(FileType::Pack)?;
    prefixes
        .iter()
        .map(|spec| {
            let matching: Vec<_> = stored
                .iter()
                .filter(|f| f.name.starts_with(spec.as_str()))
                .collect();
            let [one] = matching.as_slice() else {
                return Err(RepoError::Invalid(format!(
                    "{spec:?} matches {} pack files: give a longer id",
                    matching.len()
                )));
            };
            PackId::from_hex(&one.name).map_err(|e| RepoError::format("pack", &one.name, e))
        })
        .collect()
}

/// Salvages `packs`; the caller holds an exclusive lock and has loaded the index.
pub fn repair_packs_unlocked(
    repo: &Repository,
    packs: &[PackId],
    progress: &dyn Progress,
) -> Result<RepairPacksReport> {
    let mut report = RepairPacksReport::default();
    let by_pack = repo.index().read().by_pack();
    let mut packer = Repacker::new(repo.options().pack_size);
    let mut new_packs: Vec<IndexPack> = Vec::new();
    for id in packs {
        let name = id.to_hex();
        progress.current(&format!("pack {}", id.short()));
        let blobs = by_pack.get(id).ok_or_else(|| {
            RepoError::Invalid(format!(
                "pack {name} is not in the index: run `bunker repair index` first"
            ))
        })?;
        let bytes = repo.storage().read(FileType::Pack, &name)?;
        let (mut salvaged, mut lost) = (0, 0);
        for b in blobs {
            let raw = bytes.get(b.offset as usize..(b.offset as usize + b.length as usize));
            let ok = raw.filter(|raw| {
                repo.decode_verified(raw, &b.id, b.uncompressed_length, &name)
                    .is_ok()
            });
            let Some(raw) = ok else {
                progress.warn(&format!("pack {name}: blob {} is damaged", b.id));
                lost += 1;
                continue;
            };
            salvaged += 1;
            if let Some(full) = packer.add(b.blob_type, b.id, b.uncompressed_length, raw)? {
                new_packs.push(upload(repo, full)?);
            }
        }
        report.packs.push(RepairedPack {
            pack: *id,
            salvaged,
            lost,
        });
    }
    for builder in packer.finish() {
        new_packs.push(upload(repo, builder)?);
    }
    report.new_packs = new_packs.iter().map(|p| p.id).collect();
    if !new_packs.is_empty() {
        let file = IndexFile {
            supersedes: Vec::new(),
            packs: new_packs,
        };
        repo.save_json(FileType::Index, &file)?;
    }
    for id in packs {
        match repo.storage().remove(FileType::Pack, &id.to_hex()) {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
    }
    super::repair_index_unlocked(repo, &super::RepairIndexOptions::default(), progress)?;
    Ok(report)
}

fn upload(repo: &Repository, builder: PackBuilder) -> Result<IndexPack> {
    let (id, bytes, blobs) = builder.finish(repo.key());
    repo.storage()
        .write(FileType::Pack, &id.to_hex(), bytes.into())?;
    Ok(IndexPack::from_pack_blobs(id, &blobs))
}
