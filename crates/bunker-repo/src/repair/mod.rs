//! `repair`: put a damaged repository back into a consistent state, as
//! restic's `repair index` and `repair snapshots` do.
//!
//! The usual sequence after data was lost (a deleted or damaged pack, a lost
//! index file) is: `check` (names what is lost) → [`index::repair_index`]
//! (the index again matches the packs in storage: unindexed packs are read
//! and indexed from their headers, missing packs are dropped) →
//! [`snapshots::repair_snapshots`] (snapshots stop referencing data that is
//! gone) → `check` (clean). [`packs::repair_packs_unlocked`] salvages the
//! intact blobs of packs `check --read-data` found damaged. Both run under an exclusive lock and keep the
//! repository's write order: new packs, then index, then snapshots; old
//! files are removed only after their replacements are durable, so a repair
//! killed at any point leaves a repository that is at least as readable as
//! before.

pub mod index;
pub mod packs;
pub mod snapshots;

use bunker_format::pack::{self, PackBlob};
use bunker_format::PackId;
use bunker_storage::FileType;

use crate::error::{RepoError, Result};
use crate::Repository;

pub use index::{repair_index, repair_index_unlocked, RepairIndexOptions, RepairIndexReport};
pub use packs::{find_packs, repair_packs_unlocked, RepairPacksReport};
pub use snapshots::{
    repair_snapshots, repair_snapshots_unlocked, RepairSnapshotsOptions, RepairSnapshotsReport,
};

/// Reads and decrypts the header of a pack of `size` bytes (two range
/// reads: the length field, then the header). Errors say what is wrong.
pub fn read_pack_header(repo: &Repository, id: &PackId, size: u64) -> Result<Vec<PackBlob>> {
    let name = id.to_hex();
    let damaged = |msg: String| RepoError::DamagedPack {
        pack: name.clone(),
        msg,
    };
    if size < 4 {
        return Err(damaged(format!("{size} bytes is too short for a pack")));
    }
    let tail = repo
        .storage()
        .read_range(FileType::Pack, &name, size - 4, 4)?;
    let mut le = [0u8; 4];
    le.copy_from_slice(
        tail.get(..4)
            .ok_or_else(|| damaged("short read of the header length".into()))?,
    );
    let hlen = u64::from(u32::from_le_bytes(le));
    let start = (size - 4)
        .checked_sub(hlen)
        .ok_or_else(|| damaged(format!("header length {hlen} exceeds the pack size {size}")))?;
    if hlen + 4 > pack::MAX_HEADER_SIZE as u64 {
        return Err(damaged(format!("header length {hlen} exceeds the maximum")));
    }
    let raw = repo
        .storage()
        .read_range(FileType::Pack, &name, start, hlen + 4)?;
    pack::decode_header(repo.key(), &raw, size).map_err(|e| damaged(format!("header: {e}")))
}
