//! Deciding what prune does with each pack, from the index files, the pack
//! listing and the set of blobs snapshots use. Pure: no I/O.

use std::collections::{BTreeMap, HashMap, HashSet};

use bunker_format::index::{IndexBlob, IndexPack};
use bunker_format::{BlobId, BlobType, IndexId, PackId};
use serde::Serialize;

use crate::error::{RepoError, Result};

/// How much unused space may remain in partly-used packs (`--max-unused`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub enum MaxUnused {
    /// A percentage of the used size (restic's `5%` default).
    Percent(f64),
    /// An absolute number of bytes.
    Bytes(u64),
    /// Never repack for space.
    Unlimited,
}

impl Default for MaxUnused {
    fn default() -> Self {
        MaxUnused::Percent(5.0)
    }
}

impl MaxUnused {
    /// Parses `5%`, `unlimited`, or a size like `100M`, `2G`, `512` (bytes).
    pub fn parse(s: &str) -> Result<MaxUnused> {
        let t = s.trim();
        let bad = || {
            RepoError::Invalid(format!(
                "invalid --max-unused {s:?}: expected a percentage (5%), a size (100M) or `unlimited`"
            ))
        };
        if t.eq_ignore_ascii_case("unlimited") {
            return Ok(MaxUnused::Unlimited);
        }
        if let Some(p) = t.strip_suffix('%') {
            let v: f64 = p.trim().parse().map_err(|_| bad())?;
            if !(0.0..=100.0).contains(&v) || v.is_nan() {
                return Err(bad());
            }
            return Ok(MaxUnused::Percent(v));
        }
        let (num, mult) = match t.char_indices().last() {
            Some((i, c)) if c.is_ascii_alphabetic() => {
                let m: u64 = match c.to_ascii_uppercase() {
                    'B' => 1,
                    'K' => 1 << 10,
                    'M' => 1 << 20,
                    'G' => 1 << 30,
                    'T' => 1 << 40,
                    _ => return Err(bad()),
                };
                (&t[..i], m)
            }
            _ => (t, 1),
        };
        let n: u64 = num.trim().parse().map_err(|_| bad())?;
        n.checked_mul(mult).map(MaxUnused::Bytes).ok_or_else(bad)
    }

    /// Unused bytes tolerated for `used` bytes in use (restic's formula:
    /// `p%` means unused may be `p%` of the total after pruning).
    pub fn limit(&self, used: u64) -> u64 {
        match *self {
            MaxUnused::Unlimited => u64::MAX,
            MaxUnused::Bytes(b) => b,
            MaxUnused::Percent(p) if p >= 100.0 => u64::MAX,
            MaxUnused::Percent(p) => (used as f64 * p / (100.0 - p)) as u64,
        }
    }
}

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
}

/// The decisions of one prune run.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    pub packs: Vec<PackPlan>,
    /// Packs in storage that no index lists (leftovers of interrupted runs).
    pub unreferenced: Vec<(PackId, u64)>,
    /// Index files read (all are superseded by the rewritten index).
    pub index_files: Vec<IndexId>,
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
                         refusing to prune (run `bunker check`)",
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
        });
    }
    if let Some(lost) = input.used.iter().find(|b| !claimed.contains(b)) {
        return Err(RepoError::Invalid(format!(
            "blob {lost} is used by a snapshot but no index lists it; refusing to prune (run `bunker check`)"
        )));
    }

    // Repack partly-used packs, most wasteful first, until what is left
    // unused is within the limit.
    let used_total: u64 = plans.iter().map(|p| p.used_bytes).sum();
    let limit = input.max_unused.limit(used_total);
    let mut remaining: u64 = plans
        .iter()
        .filter(|p| p.action == PackAction::Keep)
        .map(|p| p.unused_bytes)
        .sum();
    let mut candidates: Vec<usize> = plans
        .iter()
        .enumerate()
        .filter(|(_, p)| p.action == PackAction::Keep && p.unused_bytes > 0)
        .filter(|(_, p)| {
            !input.repack_cacheable_only
                || p.used_blobs.iter().all(|b| b.blob_type == BlobType::Tree)
        })
        .map(|(i, _)| i)
        .collect();
    candidates.sort_by(|a, b| {
        let ra = plans[*a].unused_bytes as f64 / plans[*a].size.max(1) as f64;
        let rb = plans[*b].unused_bytes as f64 / plans[*b].size.max(1) as f64;
        rb.total_cmp(&ra).then(plans[*a].id.cmp(&plans[*b].id))
    });
    for i in candidates {
        if remaining <= limit {
            break;
        }
        plans[i].action = PackAction::Repack;
        remaining -= plans[i].unused_bytes;
    }

    let indexed: HashSet<PackId> = packs.keys().copied().collect();
    let mut unreferenced: Vec<(PackId, u64)> = input
        .stored
        .iter()
        .filter(|(id, _)| !indexed.contains(id))
        .map(|(id, s)| (*id, *s))
        .collect();
    unreferenced.sort();
    Ok(Plan {
        packs: plans,
        unreferenced,
        index_files: input.indexes.iter().map(|(id, _)| *id).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bunker_format::Id;

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
        });
        assert!(r.is_err());
    }

    #[test]
    fn max_unused_parsing_and_limits() {
        assert_eq!(MaxUnused::parse("5%").ok(), Some(MaxUnused::Percent(5.0)));
        assert_eq!(
            MaxUnused::parse("unlimited").ok(),
            Some(MaxUnused::Unlimited)
        );
        assert_eq!(
            MaxUnused::parse("10M").ok(),
            Some(MaxUnused::Bytes(10 << 20))
        );
        assert_eq!(MaxUnused::parse("512").ok(), Some(MaxUnused::Bytes(512)));
        assert!(MaxUnused::parse("150%").is_err());
        assert!(MaxUnused::parse("lots").is_err());
        assert_eq!(MaxUnused::Percent(50.0).limit(100), 100);
        assert_eq!(MaxUnused::Percent(0.0).limit(100), 0);
        assert_eq!(MaxUnused::Unlimited.limit(1), u64::MAX);
    }
}
