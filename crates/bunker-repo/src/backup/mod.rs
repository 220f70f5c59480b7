//! Backup: the archiver that turns directories (or stdin) into a snapshot.
//!
//! Pipeline (all stages overlap, every core busy from the start):
//! * a dedicated rayon pool walks the targets in parallel; each directory's
//!   tree is built bottom-up from its sorted children ([`archiver`]);
//! * files unchanged since the parent snapshot (same type, size, mtime,
//!   ctime, inode) reuse the parent's content list without being read;
//! * other files are read (small ones whole, large ones streamed) and cut by
//!   the repository chunker; chunks are hashed, deduplicated, compressed and
//!   encrypted on the pool's workers ([`file`]) and packed by the
//!   [`BlobSaver`], which uploads packs on its own threads;
//! * read-ahead threads tell the kernel which files are about to be read,
//!   so their data comes off the disk while workers compress ([`prefetch`]);
//! * metadata read-ahead threads, best started by the caller before it opens
//!   the repository ([`warm_up`], [`BackupOptions::warmer`]), `lstat` the
//!   tree ahead of the walk and count its files and bytes for the progress
//!   totals and ETA ([`warm`]).
//!
//! Order of writes: packs, then index ([`BlobSaver::finish`]), then the
//! snapshot. A shared lock is held for the whole run (none in dry-run mode,
//! which writes nothing).

mod archiver;
mod file;
mod message;
mod node;
mod prefetch;
mod stats;
mod targets;
mod warm;

use std::io::Read;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use bunker_format::chunker::Chunker;
use bunker_format::gotime;
use bunker_format::node::{Node, NodeType, Tree};
use bunker_format::snapshot::{Snapshot, SnapshotSummary};
use bunker_format::SnapshotId;
use bunker_sources::{ExcludeOptions, Excluder};
use chrono::{DateTime, FixedOffset};
use serde::Serialize;

use crate::error::{RepoError, Result};
use crate::lock::RepoLock;
use crate::packer::BlobSaver;
use crate::progress::Progress;
use crate::snapshots::{self, SnapshotEntry, SnapshotFilter};
use crate::Repository;

pub use message::SummaryMessage;
pub use targets::absolute_clean;
pub use warm::{warm_up, MetadataWarmer, ScanTotals};

use archiver::Archiver;
use stats::{Change, Stats};

/// What to back up and how.
#[derive(Default)]
pub struct BackupOptions {
    /// Files and directories to save; made absolute and cleaned. As restic,
    /// the snapshot tree nests each under its full absolute path from `/`.
    pub paths: Vec<PathBuf>,
    /// restic-compatible exclusion rules (`roots` defaults to `paths`).
    pub excludes: ExcludeOptions,
    pub tags: Vec<String>,
    /// Host name recorded in the snapshot (default: this host).
    pub host: Option<String>,
    /// Snapshot time (default: now).
    pub time: Option<DateTime<FixedOffset>>,
    /// Explicit parent snapshot (id, prefix or `latest`); `None` = the newest
    /// snapshot of the same host with the same paths.
    pub parent: Option<String>,
    /// Ignore any parent: read every file again.
    pub force: bool,
    /// Do not compare ctime when deciding whether a file changed.
    pub ignore_ctime: bool,
    /// Do not compare inode numbers when deciding whether a file changed.
    pub ignore_inode: bool,
    /// Back up this stream as one file with the given name instead of `paths`.
    pub stdin: Option<(Box<dyn Read + Send>, String)>,
    /// Do all the work but write nothing to the repository.
    pub dry_run: bool,
    /// Worker threads (reading, hashing, compressing); 0 = one per core.
    pub read_concurrency: usize,
    /// The metadata read-ahead started for these options before the
    /// repository was opened ([`warm_up`]); without one, the backup starts
    /// its own.
    pub warmer: Option<MetadataWarmer>,
    /// The job's cancellation. Checked before each file or directory is
    /// saved; a cancelled backup writes the index of what it had uploaded
    /// (so a rerun does not upload it again), writes no snapshot, releases
    /// its lock and returns [`RepoError::Cancelled`].
    pub cancel: Option<bunker_sources::CancelToken>,
}

impl std::fmt::Debug for BackupOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackupOptions")
            .field("paths", &self.paths)
            .field("excludes", &self.excludes)
            .field("tags", &self.tags)
            .field("host", &self.host)
            .field("parent", &self.parent)
            .field("force", &self.force)
            .field("stdin", &self.stdin.as_ref().map(|(_, name)| name))
            .field("dry_run", &self.dry_run)
            .finish_non_exhaustive()
    }
}

/// Result of a backup, with restic's summary fields.
#[derive(Debug, Clone, Serialize)]
pub struct BackupSummary {
    pub files_new: u64,
    pub files_changed: u64,
    pub files_unmodified: u64,
    pub dirs_new: u64,
    pub dirs_changed: u64,
    pub dirs_unmodified: u64,
    /// New data blobs stored.
    pub data_blobs: u64,
    /// New tree blobs stored.
    pub tree_blobs: u64,
    /// Plaintext bytes of new blobs (data and trees, as restic).
    pub data_added: u64,
    /// Bytes the new blobs occupy in packs (compressed + encrypted).
    pub data_added_packed: u64,
    pub total_files_processed: u64,
    pub total_bytes_processed: u64,
    pub backup_start: DateTime<FixedOffset>,
    pub backup_end: DateTime<FixedOffset>,
    /// The new snapshot (`None` in dry-run mode).
    pub snapshot_id: Option<SnapshotId>,
    pub parent: Option<SnapshotId>,
    /// Items that could not be saved: (path, message).
    pub errors: Vec<(String, String)>,
    /// Whether this was a dry run (nothing written).
    pub dry_run: bool,
    /// No snapshot was saved because the tree equals the parent's
    /// ([`BackupExtras::skip_if_unchanged`]).
    pub skipped_unchanged: bool,
}

/// Choices of a backup that most callers leave at their defaults (kept out
/// of [`BackupOptions`] so that its struct literals stay valid).
#[derive(Clone, Copy, Debug, Default)]
pub struct BackupExtras {
    /// Save no snapshot when nothing changed since the parent snapshot
    /// (same tree id; restic's `--skip-if-unchanged`).
    pub skip_if_unchanged: bool,
}

fn hostname() -> String {
    gethostname::gethostname().to_string_lossy().into_owned()
}

/// Worker threads to use for `read_concurrency` (0 = automatic).
fn worker_threads(requested: usize) -> usize {
    if requested > 0 {
        return requested;
    }
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .max(2)
}

/// The newest snapshot of `host` with exactly `paths`, not newer than `time`.
fn find_parent(
    repo: &Repository,
    opts: &BackupOptions,
    host: &str,
    paths: &[String],
    time: &DateTime<FixedOffset>,
) -> Result<Option<SnapshotEntry>> {
    if opts.force || opts.stdin.is_some() {
        return Ok(None);
    }
    if let Some(p) = &opts.parent {
        let filter = SnapshotFilter {
            hosts: vec![host.to_string()],
            paths: paths.to_vec(),
            ..Default::default()
        };
        let filter = if p == "latest" {
            filter
        } else {
            SnapshotFilter::default()
        };
        return snapshots::find(repo, p, &filter).map(Some);
    }
    let filter = SnapshotFilter {
        hosts: vec![host.to_string()],
        paths: paths.to_vec(),
        ..Default::default()
    };
    let mut want = paths.to_vec();
    want.sort();
    Ok(snapshots::filtered(repo, &filter, None)?
        .into_iter()
        .rfind(|e| {
            let mut have = e.snapshot.paths.clone();
            have.sort();
            have == want && e.snapshot.time <= *time
        }))
}

/// Back up `opts.paths` (or stdin) into `repo` and write a snapshot.
///
/// Items that vanish or cannot be read are reported through
/// `progress.warn`, listed in [`BackupSummary::errors`] and left out; the
/// snapshot is still written. Repository errors abort the backup (packs
/// already uploaded stay unreferenced until `prune`).
pub fn backup(
    repo: &Arc<Repository>,
    opts: BackupOptions,
    progress: &dyn Progress,
) -> Result<BackupSummary> {
    backup_with(repo, opts, BackupExtras::default(), progress)
}

/// [`backup`] with [`BackupExtras`].
pub fn backup_with(
    repo: &Arc<Repository>,
    opts: BackupOptions,
    extras: BackupExtras,
    progress: &dyn Progress,
) -> Result<BackupSummary> {
    let backup_start = gotime::now_local();
    let time = opts.time.unwrap_or(backup_start);
    let host = opts.host.clone().unwrap_or_else(hostname);

    let mut opts = opts;
    let stdin = opts.stdin.take();
    let targets: Vec<PathBuf> = opts
        .paths
        .iter()
        .map(|p| absolute_clean(p))
        .collect::<Result<_>>()?;
    let snapshot_paths: Vec<String> = match &stdin {
        Some((_, name)) => {
            if !opts.paths.is_empty() {
                return Err(RepoError::Invalid(
                    "cannot back up stdin and paths in one snapshot".into(),
                ));
            }
            if name.is_empty() || name.contains('/') || name == "." || name == ".." {
                return Err(RepoError::Invalid(format!(
                    "stdin file name {name:?} must be a plain file name without '/'"
                )));
            }
            vec![format!("/{name}")]
        }
        None if targets.is_empty() => {
            return Err(RepoError::Invalid(
                "nothing to back up: give at least one path".into(),
            ));
        }
        None => targets
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect(),
    };

    let _lock = if opts.dry_run {
        None
    } else {
        Some(RepoLock::acquire(repo, false)?)
    };
    if repo.index().read().index_files().is_empty() {
        repo.load_index()?;
    }
    let work: Arc<Repository> = if opts.dry_run {
        repo.dry_run_view()
    } else {
        repo.clone()
    };

    let parent = find_parent(repo, &opts, &host, &snapshot_paths, &time)?;
    let parent_tree: Option<Tree> = match &parent {
        Some(p) => match repo.load_tree(&p.snapshot.tree) {
            Ok(t) => Some(t),
            Err(e) => {
                progress.warn(&format!(
                    "tree of parent snapshot {} could not be loaded ({e}); reading all files",
                    p.id.id().short()
                ));
                None
            }
        },
        None => None,
    };

    let mut ex_opts = opts.excludes.clone();
    if ex_opts.roots.is_empty() {
        ex_opts.roots = targets.clone();
    }
    let excluder = if stdin.is_some() {
        None
    } else {
        let excluder = Excluder::new(&ex_opts).map_err(|e| RepoError::Invalid(e.to_string()))?;
        Some(Arc::new(excluder))
    };

    let stats = Stats::default();
    // Targets that do not exist are errors of their own; all missing is fatal.
    let mut present = Vec::new();
    for t in &targets {
        match std::fs::symlink_metadata(t) {
            Ok(_) => present.push(t.clone()),
            Err(e) => {
                let msg = format!("cannot back up: {e}");
                progress.warn(&format!("{}: {msg}", t.display()));
                stats.error(t.to_string_lossy().into_owned(), msg);
            }
        }
    }
    if stdin.is_none() && present.is_empty() {
        return Err(RepoError::Invalid(
            "none of the backup paths exist; nothing to back up".into(),
        ));
    }

    let threads = worker_threads(opts.read_concurrency);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .stack_size(16 << 20)
        .thread_name(|i| format!("bunker-backup-{i}"))
        .build()
        .map_err(|e| RepoError::Io(format!("cannot start backup workers: {e}")))?;

    let saver = BlobSaver::new(work.clone());
    let prefetcher = stdin
        .is_none()
        .then(|| prefetch::Prefetcher::start(excluder.clone()));
    let chunker = Chunker::new(work.config().chunker_polynomial);
    let archiver = Archiver {
        repo: &work,
        saver: &saver,
        excluder: excluder.as_deref(),
        chunker,
        ignore_ctime: opts.ignore_ctime,
        ignore_inode: opts.ignore_inode,
        progress,
        stats,
        inflight: AtomicUsize::new(0),
        inflight_limit: file::inflight_limit(threads),
        prefetch: prefetcher.as_ref(),
        cancel: opts.cancel.as_ref(),
    };
    let warmer = match opts.warmer.take() {
        Some(w) => Some(w),
        None if stdin.is_none() => warm_up(&opts),
        None => None,
    };
    let stop = AtomicBool::new(false);
    let tree_id = std::thread::scope(|s| {
        if let Some(w) = warmer.as_ref().filter(|_| progress.wants_totals()) {
            let stop = &stop;
            s.spawn(move || w.report_totals(stop, progress));
        }
        let result = pool.install(|| match stdin {
            Some((mut reader, name)) => save_stdin(&archiver, &mut *reader, &name, &time),
            None => {
                let root = targets::build_tree(&present);
                archiver.archive(&root, parent_tree.as_ref())
            }
        });
        stop.store(true, Ordering::Relaxed);
        result
    });
    let tree_id = match tree_id {
        Ok(id) => id,
        Err(RepoError::Cancelled) => {
            // Keep the uploads: index what was saved, but no snapshot.
            saver.finish()?;
            return Err(RepoError::Cancelled);
        }
        Err(e) => return Err(e),
    };
    saver.finish()?;

    let st = &archiver.stats;
    let backup_end = gotime::now_local();
    let mut summary = BackupSummary {
        files_new: st.files_of(Change::New),
        files_changed: st.files_of(Change::Changed),
        files_unmodified: st.files_of(Change::Unmodified),
        dirs_new: st.dirs_of(Change::New),
        dirs_changed: st.dirs_of(Change::Changed),
        dirs_unmodified: st.dirs_of(Change::Unmodified),
        data_blobs: st.get(&st.data_blobs),
        tree_blobs: st.get(&st.tree_blobs),
        data_added: st.get(&st.data_added),
        data_added_packed: st.get(&st.data_added_packed),
        total_files_processed: 0,
        total_bytes_processed: st.get(&st.bytes_processed),
        backup_start,
        backup_end,
        snapshot_id: None,
        parent: parent.as_ref().map(|p| p.id),
        errors: std::mem::take(&mut *st.errors.lock()),
        dry_run: opts.dry_run,
        skipped_unchanged: false,
    };
    summary.total_files_processed =
        summary.files_new + summary.files_changed + summary.files_unmodified;

    let snapshot = Snapshot {
        time,
        parent: summary.parent,
        tree: tree_id,
        paths: snapshot_paths,
        hostname: host,
        username: uzers::get_current_username()
            .map(|u| u.to_string_lossy().into_owned())
            .unwrap_or_default(),
        uid: uzers::get_current_uid(),
        gid: uzers::get_current_gid(),
        excludes: opts.excludes.excludes.clone(),
        tags: opts.tags.clone(),
        original: None,
        program_version: format!("bunker {}", env!("CARGO_PKG_VERSION")),
        summary: Some(snapshot_summary(&summary)),
    };
    let unchanged = parent.as_ref().is_some_and(|p| p.snapshot.tree == tree_id);
    if extras.skip_if_unchanged && unchanged {
        summary.skipped_unchanged = true;
    } else if !opts.dry_run {
        summary.snapshot_id = Some(snapshots::save(repo, &snapshot)?);
    }
    Ok(summary)
}

fn snapshot_summary(s: &BackupSummary) -> SnapshotSummary {
    SnapshotSummary {
        backup_start: s.backup_start,
        backup_end: s.backup_end,
        files_new: s.files_new,
        files_changed: s.files_changed,
        files_unmodified: s.files_unmodified,
        dirs_new: s.dirs_new,
        dirs_changed: s.dirs_changed,
        dirs_unmodified: s.dirs_unmodified,
        data_blobs: i64::try_from(s.data_blobs).unwrap_or(i64::MAX),
        tree_blobs: i64::try_from(s.tree_blobs).unwrap_or(i64::MAX),
        data_added: s.data_added,
        data_added_packed: s.data_added_packed,
        total_files_processed: s.total_files_processed,
        total_bytes_processed: s.total_bytes_processed,
    }
}

/// stdin mode: one file node at the root, as restic's `--stdin` stores it
/// (mode 0644, all times = the snapshot time, the current uid/gid).
fn save_stdin(
    archiver: &Archiver<'_>,
    reader: &mut (dyn Read + Send),
    name: &str,
    time: &DateTime<FixedOffset>,
) -> Result<bunker_format::TreeId> {
    archiver.progress.current(name);
    let content = match archiver.save_content(reader, u64::MAX) {
        Ok(c) => c,
        Err(archiver::ItemError::Fatal(e)) => return Err(e),
        // A cancelled job stops the program that feeds the stream.
        Err(archiver::ItemError::Skip(_)) if archiver.cancelled() => {
            return Err(RepoError::Cancelled);
        }
        Err(archiver::ItemError::Skip(msg)) => {
            // The stream's own error as it is: a reader that is a program's
            // output says which program failed and how, and the CLI's stdin
            // reader says "reading standard input". No "read:" chain.
            let msg = msg.strip_prefix("read: ").unwrap_or(&msg);
            return Err(RepoError::Io(msg.to_string()));
        }
    };
    let mut node = Node::new(name.as_bytes(), NodeType::File);
    node.mode = 0o644;
    node.mtime = *time;
    node.atime = *time;
    node.ctime = *time;
    node.uid = uzers::get_current_uid();
    node.gid = uzers::get_current_gid();
    node.size = content.size;
    node.content = Some(content.blobs);
    archiver.stats.file(Change::New, content.size);
    archiver.progress.add_items(1);
    archiver.save_tree(vec![node])
}
