//! `prune`: remove data no snapshot references, repack partly-used packs.
//!
//! Which packs are repacked is decided by the `select` module (restic's rules):
//! partly-used packs until `max_unused` is met, small packs with
//! `repack_small`, never more than `max_repack_size` bytes of packs a run.
//!
//! Safety rules:
//! * it refuses to run when anything it must read fails: the snapshot list,
//!   any snapshot, any index file, any tree (a partial view could make it
//!   delete data a snapshot needs);
//! * it runs under an exclusive lock ([`prune`]), so no backup is writing;
//! * write order: repacked blobs go to new packs first; then new index
//!   files listing every kept pack (superseding all old ones); then the old
//!   index files are deleted; only then the unused and repacked packs.
//!   Killed at any point, the repository stays consistent: packs written but
//!   not yet indexed, or no longer indexed, are unreferenced leftovers that
//!   the next run deletes.
//! * temporary files of interrupted writers are removed last, only when not
//!   modified for an hour (see [`crate::leftovers`]).

mod exec;
mod limits;
pub mod plan;
mod select;
mod used;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bunker_format::index::{IndexFile, IndexPack};
use bunker_format::{BlobId, Id, IndexId, PackId};
use bunker_storage::FileType;
use rayon::prelude::*;
use serde::Serialize;

use crate::error::{RepoError, Result};
use crate::lock::RepoLock;
use crate::progress::Progress;
use crate::Repository;

pub use limits::{parse_max_repack_size, MaxUnused};
pub use plan::{make_plan, PackAction, Plan, PlanInput};
pub use select::{small_pack_limit, tiny_pack_limit, MIN_SMALL_PACKS};
pub use used::used_blobs;

/// Environment knob for crash tests: abort the process (no cleanup, like
/// SIGKILL) right after this many storage mutations.
pub const CRASH_AFTER_ENV: &str = "BUNKER_TEST_PRUNE_CRASH_AFTER";

/// What prune does.
#[derive(Clone, Debug, Default)]
pub struct PruneOptions {
    pub max_unused: MaxUnused,
    /// Compute and report, change nothing.
    pub dry_run: bool,
    /// Only repack packs holding tree blobs.
    pub repack_cacheable_only: bool,
    /// Upper bound on the total size of the pack files repacked in this run
    /// (`--max-repack-size`); packs beyond it are left for a later run.
    /// Deleting wholly unused packs does not count.
    pub max_repack_size: Option<u64>,
    /// Also repack packs smaller than [`small_pack_limit`] (80% of the target
    /// pack size), merging them into full ones (`--repack-small`). Without
    /// it, the same rules apply to packs below [`tiny_pack_limit`] (4%).
    pub repack_small: bool,
    /// Testing only: abort the process after this many storage mutations.
    pub crash_after: Option<u64>,
    /// The job's cancellation: prune stops at its next safe point and leaves
    /// the repository as it was (see `exec::execute`).
    pub cancel: Option<bunker_sources::CancelToken>,
}

impl PruneOptions {
    /// Reads [`CRASH_AFTER_ENV`] into `crash_after`.
    pub fn with_crash_knob_from_env(mut self) -> Self {
        self.crash_after = std::env::var(CRASH_AFTER_ENV)
            .ok()
            .and_then(|v| v.trim().parse().ok());
        self
    }
}

/// What prune found and did (or would do, in a dry run).
#[derive(Clone, Debug, Default, Serialize)]
pub struct PruneReport {
    pub dry_run: bool,
    pub snapshots: u64,
    /// Distinct blobs snapshots reference.
    pub used_blobs: u64,
    pub used_bytes: u64,
    /// Bytes in packs not used by any snapshot before pruning.
    pub unused_bytes_before: u64,
    /// Unused bytes left in kept packs afterwards.
    pub unused_bytes_after: u64,
    pub packs_total: u64,
    pub packs_kept: u64,
    pub packs_repacked: u64,
    /// Of `packs_repacked`, those repacked for being small (`--repack-small`).
    pub packs_repacked_small: u64,
    pub packs_removed: u64,
    /// Packs no index listed (leftovers of interrupted runs), deleted.
    pub packs_unreferenced: u64,
    /// Indexed packs missing from storage whose blobs were all unused (dropped from the index).
    pub packs_missing_unused: u64,
    pub bytes_removed: u64,
    pub bytes_repacked: u64,
    pub new_packs: u64,
    pub index_files_written: u64,
    pub index_files_removed: u64,
    /// Temporary files of interrupted writers removed (or to remove, in a
    /// dry run): see [`crate::leftovers`].
    pub temp_files_removed: u64,
    pub temp_bytes_removed: u64,
    /// Temporary files kept: modified within the last hour, possibly live.
    pub temp_files_kept: u64,
    /// `--max-repack-size` stopped repacking before the work was done; run
    /// prune again to free the rest.
    pub repack_limited: bool,
    /// The packs repacked (or to repack, in a dry run), most urgent first.
    /// Library callers only: not part of the JSON report.
    #[serde(skip)]
    pub repacked: Vec<PackId>,
}

/// Counts storage mutations; aborts the process at the crash knob.
pub(crate) struct Mutations {
    count: AtomicU64,
    crash_after: Option<u64>,
}

impl Mutations {
    pub(crate) fn new(crash_after: Option<u64>) -> Self {
        Mutations {
            count: AtomicU64::new(0),
            crash_after,
        }
    }

    /// Call after every write or delete.
    pub(crate) fn done(&self) {
        let n = self.count.fetch_add(1, Ordering::SeqCst) + 1;
        if self.crash_after.is_some_and(|limit| n >= limit) {
            eprintln!("{CRASH_AFTER_ENV}: aborting after {n} storage mutations");
            std::process::abort();
        }
    }
}

/// [`prune_unlocked`] under an exclusive lock (a dry run takes none).
pub fn prune(
    repo: &Arc<Repository>,
    opts: &PruneOptions,
    progress: &dyn Progress,
) -> Result<PruneReport> {
    let _lock = if opts.dry_run {
        None
    } else {
        Some(RepoLock::acquire(repo, true)?)
    };
    prune_unlocked(repo, opts, progress)
}

/// Every index file with its packs; any unreadable one is an error.
fn read_indexes(repo: &Repository) -> Result<Vec<(IndexId, Vec<IndexPack>)>> {
    let files = repo.storage().list(FileType::Index)?;
    files
        .par_iter()
        .map(|f| {
            let idx: IndexFile = repo.load_json(FileType::Index, &f.name, "index")?;
            let id = Id::from_hex(&f.name)
                .map(IndexId::from)
                .map_err(|e| RepoError::format("index file name", &f.name, e))?;
            Ok((id, idx.packs))
        })
        .collect()
}

fn stored_packs(repo: &Repository) -> Result<HashMap<PackId, u64>> {
    let mut out = HashMap::new();
    for f in repo.storage().list(FileType::Pack)? {
        match Id::from_hex(&f.name) {
            Ok(id) => {
                out.insert(PackId::from(id), f.size);
            }
            Err(_) => tracing::warn!("ignoring pack file with a non-id name {:?}", f.name),
        }
    }
    Ok(out)
}

/// Prune; the caller holds an exclusive lock. The repository's master index
/// is reloaded afterwards.
pub fn prune_unlocked(
    repo: &Arc<Repository>,
    opts: &PruneOptions,
    progress: &dyn Progress,
) -> Result<PruneReport> {
    progress.current("index files");
    let indexes = read_indexes(repo)?;
    let mut master = crate::index::MasterIndex::default();
    for (id, packs) in &indexes {
        master.add_file(
            *id,
            &IndexFile {
                supersedes: Vec::new(),
                packs: packs.clone(),
            },
        );
    }
    *repo.index().write() = master;

    progress.current("snapshots");
    let snaps = crate::snapshots::list(repo)?;
    progress.current("trees");
    let used: HashSet<BlobId> = used_blobs(repo, &snaps, progress)?;

    progress.current("packs");
    let stored = stored_packs(repo)?;
    let plan = make_plan(&PlanInput {
        indexes: &indexes,
        stored: &stored,
        used: &used,
        max_unused: opts.max_unused,
        repack_cacheable_only: opts.repack_cacheable_only,
        max_repack_size: opts.max_repack_size,
        repack_small: opts.repack_small,
        pack_size: repo.options().pack_size,
    })?;

    let mut report = summarize(&plan, &used, snaps.len());
    report.dry_run = opts.dry_run;
    if !opts.dry_run {
        let mutations = Mutations::new(opts.crash_after);
        exec::execute(
            repo,
            &plan,
            &mut report,
            &mutations,
            progress,
            opts.cancel.as_ref(),
        )?;
        repo.load_index()?;
    }
    // Last, under the same exclusive lock: abandoned temporary files.
    progress.current("temporary files");
    let temp = crate::leftovers::remove_abandoned(repo, opts.dry_run)?;
    report.temp_files_removed = temp.files;
    report.temp_bytes_removed = temp.bytes;
    report.temp_files_kept = temp.kept;
    Ok(report)
}

fn summarize(plan: &Plan, used: &HashSet<BlobId>, snapshots: usize) -> PruneReport {
    let mut r = PruneReport {
        snapshots: snapshots as u64,
        used_blobs: used.len() as u64,
        packs_total: plan.packs.len() as u64,
        packs_unreferenced: plan.unreferenced.len() as u64,
        repack_limited: plan.repack_limited,
        repacked: plan.repack_order.clone(),
        ..Default::default()
    };
    for p in &plan.packs {
        r.used_bytes += p.used_bytes;
        r.unused_bytes_before += p.unused_bytes;
        match p.action {
            PackAction::Keep => {
                r.packs_kept += 1;
                r.unused_bytes_after += p.unused_bytes;
            }
            PackAction::Repack => {
                r.packs_repacked += 1;
                r.packs_repacked_small += u64::from(p.small);
                r.bytes_repacked += p.used_bytes;
                r.bytes_removed += p.unused_bytes;
            }
            PackAction::Remove if p.missing => r.packs_missing_unused += 1,
            PackAction::Remove => {
                r.packs_removed += 1;
                r.bytes_removed += p.size;
            }
        }
    }
    r.bytes_removed += plan.unreferenced.iter().map(|(_, s)| *s).sum::<u64>();
    r.unused_bytes_before += plan.unreferenced.iter().map(|(_, s)| *s).sum::<u64>();
    r
}
