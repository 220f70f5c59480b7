//! Deciding what prune does with each pack, from the index files, the pack
//! listing and the set of blobs snapshots use. Pure: no I/O.

use std::collections::{BTreeMap, HashMap, HashSet};

use bunker_format::index::{IndexBlob, IndexPack};
use bunker_format::{BlobId, IndexId, PackId};
use serde::Serialize;

use super::select::{self, Limits};
use crate::error::{RepoError, Result};

pub use super::limits::MaxUnused;

/// What happens to one pack.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PackAction {
    /// Every blob is used (or repacking is not worth it): stays as is.
    Keep,
    /// Used blobs are copied into new packs, then the pack is deleted.
    Repack,
    /// No blob is used: deleted.
    Remove,
}

/// A pack as the plan sees it.
#[derive(Clone, Debug)]
pub struct PackPlan {
    pub id: PackId,
    pub action: PackAction,
    /// Size in storage (or implied by the index when missing).
    pub size: u64,
    pub used_bytes: u64,
    pub unused_bytes: u64,
    /// Blobs of this pack that are used and must be kept (for repacking).
    pub used_blobs: Vec<IndexBlob>,
    /// The full index entry (for rewriting the index when kept).
    pub entry: IndexPack,
    /// The pack is listed in the index but absent from storage.
    pub missing: bool,
    /// Repacked as a small pack (`--repack-small`), not for its unused space.
    pub small: bool,
}

/// The decisions of one prune run.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    pub packs: Vec<PackPlan>,
    /// Packs in storage that no index lists (leftovers of interrupted runs).
    pub unreferenced: Vec<(PackId, u64)>,
    /// Index files read (all are superseded by the rewritten index).
    pub index_files: Vec<IndexId>,
    /// The packs to repack, in the order they were chosen (most urgent first).
    pub repack_order: Vec<PackId>,
    /// `max_repack_size` left packs that would otherwise have been repacked,
    /// and the work is unfinished (a later run frees the rest).
    pub repack_limited: bool,
}

/// Inputs for [`make_plan`].
pub struct PlanInput<'a> {
    /// Every index file with its packs.
    pub indexes: &'a [(IndexId, Vec<IndexPack>)],
    /// Pack files in storage with their sizes.
    pub stored: &'a HashMap<PackId, u64>,
    /// Blobs referenced by snapshots.
    pub used: &'a HashSet<BlobId>,
    pub max_unused: MaxUnused,
    /// Only repack tree packs (metadata), never data packs.
    pub repack_cacheable_only: bool,
    /// Upper bound on the total size of the packs repacked (`--max-repack-size`).
    pub max_repack_size: Option<u64>,
    /// Also merge packs much smaller than `pack_size` (`--repack-small`).
    pub repack_small: bool,
    /// Target size of new packs, in bytes.
    pub pack_size: u64,
}

/// Classify every pack. Each used blob is claimed by exactly one pack (the
/// first in pack-id order that holds it); other copies count as unused.
/// Errors when a used blob is in no index, or only in packs that are missing.
pub fn make_plan(input: &PlanInput<'_>) -> Result<Plan> {
    // Merge index files: a pack listed twice is one pack.
    let mut packs: BTreeMap<PackId, IndexPack> = BTreeMap::new();
    for (_, list) in input.indexes {
        for p in list {
            packs.entry(p.id).or_insert_with(|| p.clone());
        }
    }
    let mut claimed: HashSet<BlobId> = HashSet::with_capacity(input.used.len());
    // Packs that are missing from storage cannot supply blobs; claim from present ones first.
    let mut order: Vec<&IndexPack> = packs.values().collect();
    order.sort_by_key(|p| (!input.stored.contains_key(&p.id), p.id));
    let mut plans = Vec::with_capacity(order.len());
    for p in order {
        let missing = !input.stored.contains_key(&p.id);
        let size = input
            .stored
            .get(&p.id)
            .copied()
            .unwrap_or_else(|| p.implied_pack_size());
        let mut used_bytes = 0u64;
        let mut used_blobs = Vec::new();
        for b in &p.blobs {
            if input.used.contains(&b.id) && !claimed.contains(&b.id) {
                if missing {
                    return Err(RepoError::Invalid(format!(
                        "pack {} is listed in the index but missing from storage, and holds blob {} a snapshot needs; \
                         refusing to prune (run `bunker check`, then `bunker repair index` and `bunker repair snapshots --forget`)",
                        p.id, b.id
                    )));
                }
                claimed.insert(b.id);
                used_bytes += u64::from(b.length);
                used_blobs.push(*b);
            }
        }
        let header = size.saturating_sub(p.blobs.iter().map(|b| u64::from(b.length)).sum());
        let unused_bytes = size.saturating_sub(used_bytes + header);
        let action = if used_blobs.is_empty() {
            PackAction::Remove
        } else {
            PackAction::Keep
        };
        plans.push(PackPlan {
            id: p.id,
            action,
            size,
            used_bytes: if used_blobs.is_empty() {
                0
            } else {
                used_bytes + header
            },
            unused_bytes: if used_blobs.is_empty() {
                size
            } else {
                unused_bytes
            },
            used_blobs,
            entry: p.clone(),
            missing,
            small: false,
        });
    }
    if let Some(lost) = input.used.iter().find(|b| !claimed.contains(b)) {
        let unindexed = input
            .stored
            .keys()
            .filter(|id| !packs.contains_key(id))
            .count();
        let what_to_do = if unindexed > 0 {
            format!(
                "{unindexed} pack(s) in storage are in no index and may hold it: run `bunker repair index`, then prune again"
            )
        } else {
            "it is lost: run `bunker check`, then `bunker repair snapshots --forget`".to_string()
        };
        return Err(RepoError::Invalid(format!(
            "blob {lost} is used by a snapshot but no index lists it; refusing to prune, as that could delete it ({what_to_do})"
        )));
    }

    let selection = select::choose(
        &mut plans,
        &Limits {
            max_unused: input.max_unused,
            max_repack_size: input.max_repack_size,
            repack_small: input.repack_small,
            pack_size: input.pack_size,
            repack_cacheable_only: input.repack_cacheable_only,
        },
    );

    let indexed: HashSet<PackId> = packs.keys().copied().collect();
    let mut unreferenced: Vec<(PackId, u64)> = input
        .stored
        .iter()
        .filter(|(id, _)| !indexed.contains(id))
        .map(|(id, s)| (*id, *s))
        .collect();
    unreferenced.sort();
    Ok(Plan {
        unreferenced,
        index_files: input.indexes.iter().map(|(id, _)| *id).collect(),
        repack_order: selection.chosen.iter().map(|&i| plans[i].id).collect(),
        repack_limited: selection.limited,
        packs: plans,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bunker_format::{BlobType, Id};

    fn blob(n: u32, len: u32) -> IndexBlob {
        IndexBlob {
            id: BlobId::from(Id::hash(&n.to_le_bytes())),
            blob_type: BlobType::Data,
            offset: 0,
            length: len,
            uncompressed_length: None,
        }
    }

    fn pack(n: u8, blobs: Vec<IndexBlob>) -> IndexPack {
        IndexPack {
            id: PackId::from(Id::hash(&[n])),
            blobs,
        }
    }

    fn run(
        packs: Vec<IndexPack>,
        used: &[BlobId],
        max: MaxUnused,
        extra_stored: &[(PackId, u64)],
    ) -> Result<Plan> {
        let mut stored: HashMap<PackId, u64> = packs
            .iter()
            .map(|p| (p.id, p.implied_pack_size()))
            .collect();
        stored.extend(extra_stored.iter().copied());
        let used: HashSet<BlobId> = used.iter().copied().collect();
        let indexes = vec![(IndexId::from(Id::hash(b"idx")), packs)];
        make_plan(&PlanInput {
            indexes: &indexes,
            stored: &stored,
            used: &used,
            max_unused: max,
            repack_cacheable_only: false,
            max_repack_size: None,
            repack_small: false,
            // Tiny (always repacked) below 655 bytes: these packs are not.
            pack_size: 16 * 1024,
        })
    }

    fn action(plan: &Plan, id: PackId) -> PackAction {
        plan.packs
            .iter()
            .find(|p| p.id == id)
            .map(|p| p.action)
            .expect("pack in plan")
    }

    #[test]
    fn classifies_keep_remove_repack() {
        let full = pack(1, vec![blob(1, 1000), blob(2, 1000)]);
        let empty = pack(2, vec![blob(3, 1000)]);
        let half = pack(3, vec![blob(4, 1000), blob(5, 1000)]);
        let used = [full.blobs[0].id, full.blobs[1].id, half.blobs[0].id];
        let orphan = PackId::from(Id::hash(b"orphan"));
        let plan = run(
            vec![full.clone(), empty.clone(), half.clone()],
            &used,
            MaxUnused::Percent(5.0),
            &[(orphan, 77)],
        )
        .expect("plan");
        assert_eq!(action(&plan, full.id), PackAction::Keep);
        assert_eq!(action(&plan, empty.id), PackAction::Remove);
        assert_eq!(action(&plan, half.id), PackAction::Repack);
        assert_eq!(plan.unreferenced, vec![(orphan, 77)]);

        let plan = run(
            vec![full, empty, half.clone()],
            &used,
            MaxUnused::Unlimited,
            &[],
        )
        .expect("plan");
        assert_eq!(action(&plan, half.id), PackAction::Keep);
    }

    #[test]
    fn duplicates_are_claimed_once_and_lost_blobs_abort() {
        let a = pack(1, vec![blob(1, 100)]);
        let b = pack(2, vec![blob(1, 100)]);
        let plan = run(
            vec![a.clone(), b.clone()],
            &[a.blobs[0].id],
            MaxUnused::Unlimited,
            &[],
        )
        .expect("plan");
        let kept: Vec<_> = plan
            .packs
            .iter()
            .filter(|p| p.action == PackAction::Keep)
            .collect();
        assert_eq!(kept.len(), 1, "exactly one copy is kept");
        let lost = blob(9, 1).id;
        assert!(run(vec![a], &[lost], MaxUnused::Unlimited, &[]).is_err());
    }

    #[test]
    fn missing_pack_with_needed_blob_aborts() {
        let a = pack(1, vec![blob(1, 100)]);
        let used: HashSet<BlobId> = [a.blobs[0].id].into_iter().collect();
        let indexes = vec![(IndexId::from(Id::hash(b"i")), vec![a])];
        let r = make_plan(&PlanInput {
            indexes: &indexes,
            stored: &HashMap::new(),
            used: &used,
            max_unused: MaxUnused::default(),
            repack_cacheable_only: false,
            max_repack_size: None,
            repack_small: false,
            pack_size: 64 * 1024,
        });
        assert!(r.is_err());
    }
}
