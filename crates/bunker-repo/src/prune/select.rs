//! The selection of packs to repack. Pure: no I/O.
//!
//! As restic: partly-used packs are repacked, most wasteful first, until the
//! unused space left is within `--max-unused`. With `--repack-small`, packs
//! smaller than [`small_pack_limit`] are repacked too, whatever
//! `--max-unused` says: partly-used ones always, wholly used ones only when
//! there are at least [`MIN_SMALL_PACKS`] of them (fewer are not worth the
//! trouble, and a lone small pack would otherwise be rewritten on every
//! run). Small packs go first. `--max-repack-size` bounds the total size of
//! the packs chosen: a pack that does not fit is left for a later run, and
//! smaller ones after it may still fit (restic does the same).
//!
//! Without `--repack-small`, packs below [`tiny_pack_limit`] count as small
//! in the same way (restic's default), so the tiny packs that many small
//! backups write are merged once there are enough of them.

use bunker_format::BlobType;

use super::limits::MaxUnused;
use super::plan::{PackAction, PackPlan};

/// With `--repack-small`, at least this many wholly used small packs are
/// needed before any of them is repacked (restic's number).
pub const MIN_SMALL_PACKS: usize = 10;

/// With `--repack-small`, packs smaller than this are small: 80% of the
/// target pack size, as restic.
pub fn small_pack_limit(pack_size: u64) -> u64 {
    pack_size / 5 * 4
}

/// Without `--repack-small`, packs smaller than this are small: 4% of the
/// target pack size, as restic.
pub fn tiny_pack_limit(pack_size: u64) -> u64 {
    pack_size / 25
}

/// The knobs of [`choose`].
pub(super) struct Limits {
    pub max_unused: MaxUnused,
    pub max_repack_size: Option<u64>,
    pub repack_small: bool,
    pub pack_size: u64,
    pub repack_cacheable_only: bool,
}

/// What [`choose`] decided.
pub(super) struct Selection {
    /// Indexes into the plans of the packs to repack, in the order chosen.
    pub chosen: Vec<usize>,
    /// `max_repack_size` left work undone: a pack it kept out was small, or
    /// the unused space left is still above `max_unused`.
    pub limited: bool,
}

/// Turns the chosen `Keep` packs into `Repack` (marking small ones).
pub(super) fn choose(plans: &mut [PackPlan], l: &Limits) -> Selection {
    let small_below = if l.repack_small {
        small_pack_limit(l.pack_size)
    } else {
        tiny_pack_limit(l.pack_size)
    };
    let is_small = |p: &PackPlan| p.size < small_below;
    let eligible = |p: &PackPlan| {
        p.action == PackAction::Keep
            && !p.missing
            && (!l.repack_cacheable_only
                || p.used_blobs.iter().all(|b| b.blob_type == BlobType::Tree))
    };
    let mut candidates: Vec<usize> = (0..plans.len())
        .filter(|&i| eligible(&plans[i]) && plans[i].unused_bytes > 0)
        .collect();
    let small_full: Vec<usize> = (0..plans.len())
        .filter(|&i| eligible(&plans[i]) && plans[i].unused_bytes == 0 && is_small(&plans[i]))
        .collect();
    if small_full.len() >= MIN_SMALL_PACKS {
        candidates.extend(small_full);
    }
    let waste = |p: &PackPlan| p.unused_bytes as f64 / p.size.max(1) as f64;
    candidates.sort_by(|&a, &b| {
        let (pa, pb) = (&plans[a], &plans[b]);
        is_small(pb)
            .cmp(&is_small(pa))
            .then_with(|| waste(pb).total_cmp(&waste(pa)))
            .then(pa.id.cmp(&pb.id))
    });

    let used_total: u64 = plans.iter().map(|p| p.used_bytes).sum();
    let limit = l.max_unused.limit(used_total);
    let mut remaining: u64 = plans
        .iter()
        .filter(|p| p.action == PackAction::Keep)
        .map(|p| p.unused_bytes)
        .sum();
    let budget = l.max_repack_size.unwrap_or(u64::MAX);
    let mut spent = 0u64;
    let (mut skipped, mut skipped_small) = (false, false);
    let mut chosen = Vec::new();
    for i in candidates {
        let p = &mut plans[i];
        let small = is_small(p);
        if !small && remaining <= limit {
            continue;
        }
        match spent.checked_add(p.size) {
            Some(total) if total <= budget => spent = total,
            _ => {
                skipped = true;
                skipped_small |= small;
                continue;
            }
        }
        p.action = PackAction::Repack;
        p.small = small;
        remaining -= p.unused_bytes;
        chosen.push(i);
    }
    Selection {
        chosen,
        limited: skipped_small || (skipped && remaining > limit),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bunker_format::index::{IndexBlob, IndexPack};
    use bunker_format::{BlobId, Id, PackId};

    /// A pack of `size` bytes with `unused` of them unused.
    fn pack(n: u32, size: u64, unused: u64, blob_type: BlobType) -> PackPlan {
        let blob = IndexBlob {
            id: BlobId::from(Id::hash(&n.to_le_bytes())),
            blob_type,
            offset: 0,
            length: 1,
            uncompressed_length: None,
        };
        PackPlan {
            id: PackId::from(Id::hash(&n.to_be_bytes())),
            action: PackAction::Keep,
            size,
            used_bytes: size - unused,
            unused_bytes: unused,
            used_blobs: vec![blob],
            entry: IndexPack {
                id: PackId::from(Id::hash(&n.to_be_bytes())),
                blobs: vec![blob],
            },
            missing: false,
            small: false,
        }
    }

    fn limits() -> Limits {
        Limits {
            max_unused: MaxUnused::Percent(0.0),
            max_repack_size: None,
            repack_small: false,
            pack_size: 1000,
            repack_cacheable_only: false,
        }
    }

    fn repacked(plans: &[PackPlan]) -> Vec<u64> {
        plans
            .iter()
            .filter(|p| p.action == PackAction::Repack)
            .map(|p| p.size)
            .collect()
    }

    #[test]
    fn budget_bounds_the_total_and_smaller_packs_still_fit() {
        // Most wasteful first: 900 (90%), 1000 (50%), 400 (25%), 1000 (10%).
        let mut plans = vec![
            pack(1, 1000, 500, BlobType::Data),
            pack(2, 900, 810, BlobType::Data),
            pack(3, 400, 100, BlobType::Data),
            pack(4, 1000, 100, BlobType::Data),
        ];
        let l = Limits {
            max_repack_size: Some(1400),
            ..limits()
        };
        let sel = choose(&mut plans, &l);
        assert!(sel.limited, "work is left undone");
        // 900 fits; 1000 would make 1900; 400 makes 1300; the last 1000 does not fit.
        assert_eq!(sel.chosen, vec![1, 2]);
        assert_eq!(repacked(&plans), vec![900, 400]);

        // Exactly the budget is allowed.
        let mut plans = vec![
            pack(1, 700, 100, BlobType::Data),
            pack(2, 700, 100, BlobType::Data),
        ];
        let l = Limits {
            max_repack_size: Some(1400),
            ..limits()
        };
        assert!(!choose(&mut plans, &l).limited);
        assert_eq!(repacked(&plans).len(), 2);

        // A zero budget repacks nothing.
        let mut plans = vec![pack(1, 700, 100, BlobType::Data)];
        let l = Limits {
            max_repack_size: Some(0),
            ..limits()
        };
        assert!(choose(&mut plans, &l).limited);
        assert!(repacked(&plans).is_empty());
    }

    #[test]
    fn budget_is_not_limiting_once_unused_is_within_the_limit() {
        // The 90%-wasteful pack does not fit, but repacking the other one
        // reaches --max-unused: nothing is left to do.
        let mut plans = vec![
            pack(1, 5000, 4500, BlobType::Data),
            pack(2, 1000, 500, BlobType::Data),
            pack(3, 100_000, 0, BlobType::Data),
        ];
        let l = Limits {
            max_unused: MaxUnused::Bytes(4600),
            max_repack_size: Some(2000),
            ..limits()
        };
        assert!(!choose(&mut plans, &l).limited);
        assert_eq!(repacked(&plans), vec![1000]);
    }

    #[test]
    fn small_packs_need_the_flag_and_enough_of_them() {
        let small = |n| pack(n, 100, 0, BlobType::Data);
        let mut few: Vec<PackPlan> = (0..MIN_SMALL_PACKS as u32 - 1).map(small).collect();
        let l = Limits {
            repack_small: true,
            ..limits()
        };
        assert!(!choose(&mut few, &l).limited);
        assert!(repacked(&few).is_empty(), "too few small packs");

        let mut many: Vec<PackPlan> = (0..MIN_SMALL_PACKS as u32).map(small).collect();
        many.push(pack(100, 800, 0, BlobType::Data)); // 80%: not small
        assert!(choose(&mut many.clone(), &limits()).chosen.is_empty());
        assert!(!choose(&mut many, &l).limited);
        assert_eq!(repacked(&many).len(), MIN_SMALL_PACKS);
        assert!(many.iter().filter(|p| p.size == 100).all(|p| p.small));

        // A partly used small pack is repacked whatever --max-unused says.
        let mut one = vec![pack(1, 300, 10, BlobType::Data)];
        let l2 = Limits {
            max_unused: MaxUnused::Unlimited,
            ..l
        };
        assert!(!choose(&mut one, &l2).limited);
        assert_eq!(repacked(&one), vec![300]);
    }

    #[test]
    fn tiny_packs_merge_without_the_flag() {
        // pack_size 1000: below 40 bytes is tiny.
        let tiny = |n| pack(n, 39, 0, BlobType::Data);
        let mut few: Vec<PackPlan> = (0..MIN_SMALL_PACKS as u32 - 1).map(tiny).collect();
        assert!(
            repacked_by_default(&mut few).is_empty(),
            "too few tiny packs"
        );
        let mut many: Vec<PackPlan> = (0..MIN_SMALL_PACKS as u32).map(tiny).collect();
        many.push(pack(100, 40, 0, BlobType::Data)); // 4%: not tiny
        assert_eq!(repacked_by_default(&mut many), vec![39; MIN_SMALL_PACKS]);
        // A partly used tiny pack is repacked whatever --max-unused says.
        let mut one = vec![pack(1, 30, 1, BlobType::Data)];
        let l = Limits {
            max_unused: MaxUnused::Unlimited,
            ..limits()
        };
        choose(&mut one, &l);
        assert_eq!(repacked(&one), vec![30]);
    }

    fn repacked_by_default(plans: &mut [PackPlan]) -> Vec<u64> {
        choose(plans, &limits());
        repacked(plans)
    }

    #[test]
    fn small_packs_respect_the_budget_and_cacheable_only() {
        let mut plans: Vec<PackPlan> = (0..12).map(|n| pack(n, 100, 0, BlobType::Data)).collect();
        let l = Limits {
            repack_small: true,
            max_repack_size: Some(550),
            ..limits()
        };
        assert!(
            choose(&mut plans, &l).limited,
            "small packs were left behind"
        );
        assert_eq!(repacked(&plans).len(), 5);

        let mut plans: Vec<PackPlan> = (0..12)
            .map(|n| {
                let t = if n < 6 {
                    BlobType::Tree
                } else {
                    BlobType::Data
                };
                pack(n, 100, 0, t)
            })
            .collect();
        let l = Limits {
            repack_small: true,
            repack_cacheable_only: true,
            ..limits()
        };
        choose(&mut plans, &l);
        // Only 6 tree packs are eligible: fewer than MIN_SMALL_PACKS.
        assert!(repacked(&plans).is_empty());
    }
}
