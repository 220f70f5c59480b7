//! `check`: verify a repository without modifying it, modelled on restic's check.
//!
//! Phases, in order:
//! 1. **Index**: every index file is loaded (and its content hash verified);
//!    an unreadable or corrupt one is an error naming it, the others are still
//!    used. Packs listed by several index files are reported.
//! 2. **Packs**: the pack files in storage are listed. A pack the index lists
//!    but storage lacks is *missing*; a pack whose size differs from what the
//!    index implies (blob lengths + encrypted header + 4) is *damaged*; a pack
//!    no index lists is a warning (prune removes it), unless it holds blobs
//!    snapshots need that no index has: then it is an error that recommends
//!    `repair index` (decided after the tree walk). Temporary files of
//!    interrupted writers are a warning.
//! 3. **Snapshots**: every snapshot file loads and hashes to its name.
//! 4. **Trees**: all trees of all snapshots are walked (each tree once, level by
//!    level in parallel); each must decode and every blob it references must be
//!    in the index with the right type.
//! 5. **Data** (optional, [`ReadData`]): selected packs are read whole, their
//!    SHA-256 compared with their name, their header decoded and compared with
//!    the index, and every blob decrypted, decompressed and hash-verified.
//!    A failing pack is read a second time to rule out transient errors.
//!    The archived WAL files (`bunker/wal/`, the same subset rule by the
//!    hash of their names) are read, decrypted and hash-verified too.
//! 6. **Affected snapshots**: when packs are damaged or missing, or blobs are
//!    not indexed, the snapshots that reference a lost blob are computed.
//!
//! A damaged pack counts as lost as a whole (blobs with an intact copy in
//! another pack excepted). [`check`] holds a shared lock for its duration;
//! [`check_unlocked`] is for callers that already hold one. Progress: each
//! phase is announced through [`Progress::current`]; items and bytes count the
//! packs read by the data phase; every error is also passed to [`Progress::warn`]
//! as it is found. Callers must not load the index first: `check` loads it
//! itself, tolerating unreadable index files.

mod affected;
mod read_data;
mod structure;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use bunker_format::index::IndexBlob;
use bunker_format::pack;
use bunker_format::{BlobId, IndexId, PackId, SnapshotId};
use rand::seq::SliceRandom;
use serde::Serialize;

use crate::error::{RepoError, Result};
use crate::lock::RepoLock;
use crate::progress::Progress;
use crate::Repository;

/// Which pack files `check` reads in full.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ReadData {
    /// Structure check only.
    No,
    /// Every indexed pack.
    All,
    /// restic's `n/m`: packs whose id's first byte modulo `m` equals `n - 1`
    /// (1 <= n <= m <= 256). The subsets `1/m` .. `m/m` together cover every pack.
    Subset { n: u32, m: u32 },
    /// A random sample of this percentage of the packs (0 < p <= 100; at least one pack).
    Percent(f64),
}

impl ReadData {
    /// Reject parameters restic rejects.
    pub fn validate(&self) -> Result<()> {
        match *self {
            ReadData::Subset { n, m } if n == 0 || m == 0 || n > m || m > 256 => {
                Err(RepoError::Invalid(format!(
                    "read-data subset {n}/{m} is invalid: need 1 <= n <= m <= 256, e.g. 1/4"
                )))
            }
            ReadData::Percent(p) if !(p > 0.0 && p <= 100.0) => Err(RepoError::Invalid(format!(
                "read-data percentage {p} is invalid: need 0 < p <= 100"
            ))),
            _ => Ok(()),
        }
    }

    /// The packs to read out of `packs` (returned sorted).
    pub fn select(&self, packs: &[PackId]) -> Vec<PackId> {
        let mut out: Vec<PackId> = match *self {
            ReadData::No => Vec::new(),
            ReadData::All => packs.to_vec(),
            ReadData::Subset { n, m } => packs
                .iter()
                .filter(|p| m > 0 && u32::from(p.id().0[0]) % m == n.wrapping_sub(1))
                .copied()
                .collect(),
            ReadData::Percent(pct) => {
                let mut want = (packs.len() as f64 * pct.clamp(0.0, 100.0) / 100.0) as usize;
                if want == 0 && !packs.is_empty() && pct > 0.0 {
                    want = 1;
                }
                packs
                    .choose_multiple(&mut rand::thread_rng(), want.min(packs.len()))
                    .copied()
                    .collect()
            }
        };
        out.sort();
        out
    }
}

/// What to check.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CheckOptions {
    pub read_data: ReadData,
    /// Report indexed blobs that no snapshot references (as errors, like restic).
    pub check_unused: bool,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            read_data: ReadData::No,
            check_unused: false,
        }
    }
}

/// The outcome of a check. Errors name the file, pack, tree or blob concerned.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CheckReport {
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
    /// Packs that exist but are truncated, fail their hash or hold bad blobs (sorted).
    pub damaged_packs: Vec<PackId>,
    /// Packs the index lists that storage does not have (sorted).
    pub missing_packs: Vec<PackId>,
    /// Snapshots referencing blobs that are lost: only in damaged or missing
    /// packs, not indexed, or in trees that fail to load (sorted).
    pub affected_snapshots: Vec<SnapshotId>,
    /// Pack files in storage.
    pub packs: u64,
    /// Pack files read in full.
    pub packs_read: u64,
    /// Snapshots loaded.
    pub snapshots: u64,
    /// Distinct trees walked.
    pub trees: u64,
    /// Distinct blobs in the index.
    pub blobs: u64,
    /// Bytes read from pack files by the data check.
    pub bytes_read: u64,
    /// Archived WAL files (`bunker/wal/`) read and verified by the data check.
    pub wal_objects_read: u64,
    pub wal_bytes_read: u64,
    /// Archived WAL files that fail to decrypt or to match their hash (sorted).
    pub damaged_wal: Vec<String>,
    /// Temporary files of interrupted writers (a warning, not an error).
    pub leftovers: crate::leftovers::Leftovers,
}

impl CheckReport {
    /// True when no error was found (warnings allowed).
    pub fn ok(&self) -> bool {
        self.errors.is_empty() && self.damaged_packs.is_empty() && self.missing_packs.is_empty()
    }
}

/// One pack as the index files describe it.
#[derive(Clone, Debug, Default)]
pub(crate) struct PackInfo {
    /// Blobs of the pack, sorted by offset (from the first index file listing it).
    pub blobs: Vec<IndexBlob>,
    /// Index files listing the pack.
    pub indexes: Vec<IndexId>,
}

/// The pack size implied by an index listing: blob lengths, one header entry
/// per blob (37 bytes, 41 when compressed), the header's crypto overhead and
/// the trailing u32 header length.
pub(crate) fn expected_pack_size(blobs: &[IndexBlob]) -> u64 {
    blobs.iter().fold(pack::HEADER_OVERHEAD as u64, |acc, b| {
        let entry = pack::entry_size(b.uncompressed_length.is_some()) as u64;
        acc + u64::from(b.length) + entry
    })
}

/// Findings collected across phases.
#[derive(Default)]
pub(crate) struct Findings {
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
    pub damaged: BTreeSet<PackId>,
    pub missing: BTreeSet<PackId>,
    /// Blobs (tree or data) referenced but not usable: not indexed, wrong type, or trees that fail to load.
    pub bad_blobs: HashSet<BlobId>,
    /// Pack files no index lists, with their sizes (reported after the tree walk).
    pub orphans: Vec<(PackId, u64)>,
}

impl Findings {
    fn error(&mut self, progress: &dyn Progress, msg: String) {
        progress.warn(&msg);
        self.errors.push(msg);
    }
    fn warning(&mut self, msg: String) {
        self.warnings.push(msg);
    }
}

/// Check the repository under a shared lock (none with `no_lock`, or on a
/// storage that refuses writes: [`RepoLock::acquire_read`]). The master index of `repo` is
/// replaced by what the readable index files contain.
pub fn check(
    repo: &Arc<Repository>,
    opts: &CheckOptions,
    progress: &dyn Progress,
) -> Result<CheckReport> {
    let _lock = RepoLock::acquire_read(repo)?;
    check_unlocked(repo, opts, progress)
}

/// [`check`] without taking a lock (the caller holds one, or accepts the risk).
pub fn check_unlocked(
    repo: &Repository,
    opts: &CheckOptions,
    progress: &dyn Progress,
) -> Result<CheckReport> {
    opts.read_data.validate()?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(repo.options().connections.max(2))
        .thread_name(|i| format!("check-{i}"))
        .build()
        .map_err(|e| RepoError::Io(format!("cannot start check worker threads: {e}")))?;
    let mut f = Findings::default();
    let mut report = CheckReport::default();

    progress.current("index files");
    let packs: HashMap<PackId, PackInfo> =
        pool.install(|| structure::load_indexes(repo, &mut f, progress))?;
    report.blobs = repo.index().read().blob_count() as u64;

    progress.current("pack files");
    report.packs = structure::check_packs(repo, &packs, &mut f, progress)?;

    match crate::leftovers::find(repo) {
        Ok(l) if l.files > 0 => {
            f.warning(format!(
                "{} temporary file(s) of interrupted writers ({} bytes), e.g. {}: `bunker prune` removes those not modified for an hour ({} now)",
                l.files,
                l.bytes,
                l.paths.first().map_or("", String::as_str),
                l.abandoned
            ));
            report.leftovers = l;
        }
        Ok(_) => {}
        Err(e) => f.warning(format!("cannot list temporary files: {e}")),
    }

    progress.current("snapshots");
    let snaps = pool.install(|| structure::load_snapshots(repo, &mut f, progress))?;
    report.snapshots = snaps.len() as u64;

    progress.current("trees");
    let walk =
        pool.install(|| structure::walk_trees(repo, &snaps, opts.check_unused, &mut f, progress));
    report.trees = walk.trees;
    if let Some(referenced) = &walk.referenced {
        structure::report_unused(repo, referenced, &mut f, progress);
    }
    pool.install(|| structure::report_orphans(repo, &mut f, progress));

    if opts.read_data != ReadData::No {
        let mut candidates: Vec<PackId> = packs
            .keys()
            .filter(|p| !f.missing.contains(p))
            .copied()
            .collect();
        candidates.sort();
        let selected = opts.read_data.select(&candidates);
        progress.current("pack data");
        let stats =
            pool.install(|| read_data::read_packs(repo, &packs, &selected, &mut f, progress));
        report.packs_read = stats.packs_read;
        report.bytes_read = stats.bytes_read;

        progress.current("WAL archive");
        let wal = pool.install(|| crate::pg::wal_check::read_objects(repo, &opts.read_data))?;
        report.wal_objects_read = wal.read;
        report.wal_bytes_read = wal.bytes;
        for (name, why) in wal.damaged {
            f.error(
                progress,
                format!("archived WAL file bunker/wal/{name} is damaged: {why}"),
            );
            report.damaged_wal.push(name);
        }
    }

    if !f.damaged.is_empty() || !f.missing.is_empty() || !f.bad_blobs.is_empty() {
        progress.current("affected snapshots");
        let lost = affected::lost_blobs(&packs, &f);
        report.affected_snapshots = affected::affected_snapshots(repo, &snaps, &lost);
        if !report.affected_snapshots.is_empty() {
            let ids: Vec<String> = report
                .affected_snapshots
                .iter()
                .map(|s| s.to_hex())
                .collect();
            f.errors.push(format!(
                "{} snapshot(s) reference lost data: {} (run `bunker repair index`, then `bunker check` again; if data is still lost, `bunker repair snapshots --forget` removes the references)",
                ids.len(),
                ids.join(", ")
            ));
        }
    }

    report.errors = f.errors;
    report.warnings = f.warnings;
    report.damaged_packs = f.damaged.into_iter().collect();
    report.missing_packs = f.missing.into_iter().collect();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bunker_format::{BlobType, Id};

    fn pack(first: u8) -> PackId {
        let mut b = [0u8; 32];
        b[0] = first;
        b[1] = 7;
        PackId::from(Id(b))
    }

    #[test]
    fn subsets_partition_the_packs() {
        let packs: Vec<PackId> = (0..=255u8).map(pack).collect();
        for m in [1u32, 2, 3, 7, 256] {
            let mut all: Vec<PackId> = (1..=m)
                .flat_map(|n| ReadData::Subset { n, m }.select(&packs))
                .collect();
            all.sort();
            assert_eq!(all, packs, "m = {m}");
        }
        assert_eq!(ReadData::Subset { n: 1, m: 2 }.select(&packs).len(), 128);
    }

    #[test]
    fn percent_selects_at_least_one() {
        let packs: Vec<PackId> = (0..10u8).map(pack).collect();
        assert_eq!(ReadData::Percent(1.0).select(&packs).len(), 1);
        assert_eq!(ReadData::Percent(50.0).select(&packs).len(), 5);
        assert_eq!(ReadData::Percent(100.0).select(&packs), packs);
        assert!(ReadData::Percent(50.0).select(&[]).is_empty());
        assert!(ReadData::No.select(&packs).is_empty());
    }

    #[test]
    fn invalid_read_data_rejected() {
        assert!(ReadData::Subset { n: 0, m: 2 }.validate().is_err());
        assert!(ReadData::Subset { n: 3, m: 2 }.validate().is_err());
        assert!(ReadData::Subset { n: 1, m: 257 }.validate().is_err());
        assert!(ReadData::Percent(0.0).validate().is_err());
        assert!(ReadData::Percent(100.5).validate().is_err());
        assert!(ReadData::Percent(f64::NAN).validate().is_err());
        assert!(ReadData::Subset { n: 2, m: 2 }.validate().is_ok());
        assert!(ReadData::Percent(0.5).validate().is_ok());
    }

    #[test]
    fn pack_size_from_index() {
        let b = |length: u32, ul: Option<u32>| IndexBlob {
            id: BlobId::from(Id::random()),
            blob_type: BlobType::Data,
            offset: 0,
            length,
            uncompressed_length: ul,
        };
        assert_eq!(expected_pack_size(&[]), 36);
        assert_eq!(expected_pack_size(&[b(100, None)]), 100 + 37 + 36);
        assert_eq!(
            expected_pack_size(&[b(100, None), b(50, Some(80))]),
            150 + 37 + 41 + 36
        );
    }

    #[test]
    fn report_ok_reflects_findings() {
        let mut r = CheckReport::default();
        assert!(r.ok());
        r.warnings.push("w".into());
        assert!(r.ok());
        r.missing_packs.push(pack(1));
        assert!(!r.ok());
    }
}
