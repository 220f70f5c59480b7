//! Restoring a snapshot into a target directory, restic-compatibly.
//!
//! The snapshot tree nests absolute paths (`/home/a/b` is the node `b` in
//! the tree of `a` in the tree of `home`), and `restore` recreates them below
//! the target. A snapshot's contents are untrusted: every file-system
//! operation goes through [`TargetDir`], which validates each name and never
//! follows a symlink, and the walker additionally rejects invalid and
//! duplicate names, so nothing outside the target can be created, changed or
//! deleted. Problems with single entries (bad names, damaged blobs, existing
//! files) are recorded in the [`RestoreSummary`] and the restore goes on.
//!
//! Order: the walker creates directories, symlinks, special files, hard links
//! and empty regular files as it goes, and queues regular files in batches
//! whose contents are then written in parallel ([`files`]); file metadata is
//! applied once a file is complete; directory metadata is applied last,
//! children before parents, so restoring contents does not disturb it.
//! Hard links to files of this run are made at the end, once the files
//! they link to are complete.
//!
//! Files are written under a temporary name and renamed into place when
//! complete ([`files`]); existing entries are handled by the
//! [`Overwrite`] mode and `delete` ([`existing`]).

mod after;
pub mod existing;
pub mod files;
mod leaf;
pub mod select;

pub use existing::Overwrite;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use bunker_format::node::{Node, NodeType};
use bunker_sources::{validate_name, RestoreMeta, SourceError, TargetDir, TEMP_PREFIX};
use serde::Serialize;

use crate::error::{RepoError, Result};
use crate::progress::Progress;
use crate::snapshots::SnapshotEntry;
use crate::walk::{find_node, walk_tree_with, TreeVisitor, WalkAction};
use crate::Repository;
use files::{BatchConfig, FileJob};
use select::Selector;

/// Files per batch (each holds an open descriptor until its batch is done).
pub const BATCH_FILES: usize = 256;
/// Blobs per batch (bounds the per-batch plan).
pub const BATCH_BLOBS: usize = 65_536;
/// Batches filled at once. With the batch being built and the one waiting,
/// (FILLING + 2) × BATCH_FILES descriptors may be open.
pub const FILLING: usize = 2;
/// At most this many skipped paths are listed in the summary (all are counted).
pub const MAX_LISTED_SKIPS: usize = 10_000;

/// What to restore and how.
#[derive(Clone, Debug)]
pub struct RestoreOptions {
    pub target: PathBuf,
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    pub iinclude: Vec<String>,
    pub iexclude: Vec<String>,
    /// What to do with existing files, symlinks and special files.
    pub overwrite: Overwrite,
    /// Delete entries of the target that are not in the snapshot (only
    /// those the include/exclude patterns select; never outside the target).
    pub delete: bool,
    /// Re-read restored files and check every blob hash.
    pub verify: bool,
    /// Walk and count only; change nothing on disk.
    pub dry_run: bool,
    /// Restore only this directory of the snapshot (its contents go directly into `target`).
    pub sub_path: Option<String>,
    /// Keep runs of zeros as holes.
    pub sparse: bool,
    /// Parallel file writers (0 = from the repository's connection count).
    pub workers: usize,
}

impl Default for RestoreOptions {
    fn default() -> Self {
        RestoreOptions {
            target: PathBuf::new(),
            include: Vec::new(),
            exclude: Vec::new(),
            iinclude: Vec::new(),
            iexclude: Vec::new(),
            overwrite: Overwrite::Never,
            delete: false,
            verify: false,
            dry_run: false,
            sub_path: None,
            sparse: true,
            workers: 0,
        }
    }
}

/// What a restore did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RestoreSummary {
    pub files: u64,
    pub dirs: u64,
    /// Symbolic links.
    pub links: u64,
    /// Hard links to files restored earlier in this run.
    pub hardlinks: u64,
    /// FIFOs, devices, sockets.
    pub specials: u64,
    /// Content bytes of restored files.
    pub bytes: u64,
    /// Existing entries left alone (no `overwrite`).
    pub skipped_existing: u64,
    /// Their paths (at most [`MAX_LISTED_SKIPS`]).
    pub skipped_paths: Vec<String>,
    /// Existing files that already had the snapshot's content (only their
    /// metadata was applied).
    pub unchanged: u64,
    /// Existing entries kept because they are as new as or newer than the
    /// snapshot's (`Overwrite::IfNewer`).
    pub kept_newer: u64,
    /// Entries deleted (or, with `dry_run`, to delete) because they are not
    /// in the snapshot (`delete`); a directory counts once.
    pub deleted: u64,
    /// Their paths (at most [`MAX_LISTED_SKIPS`]).
    pub deleted_paths: Vec<String>,
    pub verified_files: u64,
    /// Extended attributes the target file system refused.
    pub xattrs_skipped: u64,
    /// Ownership changes skipped because we are not root.
    pub chown_skipped: u64,
    /// (path in the snapshot, what went wrong).
    pub errors: Vec<(String, String)>,
}

/// Metadata of a node, as the target directory applies it.
pub fn restore_meta(node: &Node) -> RestoreMeta {
    let ts =
        |t: &chrono::DateTime<chrono::FixedOffset>| (t.timestamp(), t.timestamp_subsec_nanos());
    RestoreMeta {
        mode: node.unix_perm(),
        uid: node.uid,
        gid: node.gid,
        atime: ts(&node.atime),
        mtime: ts(&node.mtime),
        xattrs: node
            .extended_attributes
            .iter()
            .map(|x| (x.name.as_bytes().to_vec(), x.value.clone()))
            .collect(),
    }
}

fn is_exists(e: &SourceError) -> bool {
    e.raw_os_error() == Some(rustix::io::Errno::EXIST.raw_os_error())
}

/// Restore `snap` (or its `sub_path`) into `opts.target`. The repository's
/// index must be loaded. Per-entry problems end up in `errors`; the result is
/// `Err` only when the restore cannot start or the snapshot cannot be read.
pub fn restore(
    repo: &Arc<Repository>,
    snap: &SnapshotEntry,
    opts: &RestoreOptions,
    progress: &dyn Progress,
) -> Result<RestoreSummary> {
    let selector = Selector::new(&opts.include, &opts.iinclude, &opts.exclude, &opts.iexclude)?;
    let tree = match &opts.sub_path {
        Some(p) => sub_tree(repo, snap, p)?,
        None => snap.snapshot.tree,
    };
    let target = if opts.dry_run {
        // Only to report what exists already; a missing target is fine.
        TargetDir::open(&opts.target, false).ok()
    } else {
        Some(
            TargetDir::open(&opts.target, true)
                .map_err(|e| RepoError::Io(format!("restore target: {e}")))?,
        )
    };
    let workers = if opts.workers > 0 {
        opts.workers
    } else {
        repo.options().connections.max(2)
    };
    // Reads, decoding and file finishing of every batch run on one pool: as
    // many threads as parallel reads allowed, and at least one per core so
    // decoding keeps every core busy.
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(workers.max(cores))
        .thread_name(|i| format!("bunker-restore-{i}"))
        .build()
        .map_err(|e| RepoError::Io(format!("cannot start restore workers: {e}")))?;
    let mut r = Restorer {
        repo,
        opts,
        target: target.as_ref(),
        selector,
        progress,
        pool: &pool,
        cfg: BatchConfig {
            sparse: opts.sparse,
            verify: opts.verify,
        },
        stack: vec![DirState {
            rel: Vec::new(),
            node: None,
            created: true,
            apply_meta: false,
            names: HashSet::new(),
        }],
        containers: existing::container_dirs(&snap.snapshot.paths, opts.sub_path.as_deref()),
        pending_links: Vec::new(),
        failed: HashSet::new(),
        batch: Vec::new(),
        batch_blobs: 0,
        queued: (0, 0),
        hardlinks: HashMap::new(),
        dir_meta: Vec::new(),
        summary: RestoreSummary::default(),
        writer: None,
    };
    // File contents are written by a batch thread while the walker goes on
    // creating directories and the files of the next batches. The batch
    // thread lets the pool fill up to FILLING batches at once: on object
    // storage a batch of small files is often a single ranged GET, and one
    // batch at a time waits on the service's latency GET after GET. With the
    // directory cache of `TargetDir`, the kernel-tree restore (page cache
    // dropped) went from 10.1 s to 6.2 s wall, and to 5.2 s with the blobs of
    // a range decoded in parallel.
    raise_open_file_limit();
    let (cfg, target_dir, pool) = (r.cfg, r.target, &pool);
    let walked = std::thread::scope(|s| {
        let (tx, rx) = crossbeam_channel::bounded::<Vec<FileJob>>(1);
        let writer = target_dir.map(|t| {
            s.spawn(move || {
                let mut total = files::BatchResult::default();
                let (done_tx, done_rx) = crossbeam_channel::unbounded();
                pool.in_place_scope(|scope| {
                    let mut filling = 0usize;
                    for jobs in rx {
                        while filling >= FILLING {
                            if let Ok(res) = done_rx.recv() {
                                total.merge(res);
                            }
                            filling -= 1;
                        }
                        let done_tx = done_tx.clone();
                        scope.spawn(move |_| {
                            let res = files::run_batch(repo, t, jobs, cfg, pool, progress);
                            let _ = done_tx.send(res);
                        });
                        filling += 1;
                    }
                });
                drop(done_tx);
                for res in done_rx {
                    total.merge(res);
                }
                total
            })
        });
        if writer.is_some() {
            r.writer = Some(tx);
        }
        let walked = walk_tree_with(repo, &tree, b"/", &mut r);
        r.flush();
        r.writer = None;
        if let Some(h) = writer {
            match h.join() {
                Ok(res) => r.add_batch_result(res),
                Err(_) => r.error("(restore)".into(), "file writer thread panicked".into()),
            }
        }
        walked
    });
    walked?;
    if opts.delete {
        if let Some(root) = r.stack.pop() {
            r.delete_unexpected(&root.rel, b"/", &root.names, true);
        }
    }
    r.make_pending_links();
    if let Some(t) = r.target {
        for (rel, meta, display) in std::mem::take(&mut r.dir_meta) {
            let parts: Vec<&[u8]> = rel.iter().map(Vec::as_slice).collect();
            if let Err(e) = t.apply_meta(&parts, &meta, false) {
                r.error(display, e.to_string());
            }
        }
        let st = t.stats();
        r.summary.xattrs_skipped = st.xattrs_skipped;
        r.summary.chown_skipped = st.chown_skipped;
    }
    Ok(r.summary)
}

/// The tree of the directory `path` of the snapshot; a clear error when it
/// is a file (`restore SNAP:/etc/passwd`).
fn sub_tree(repo: &Repository, snap: &SnapshotEntry, path: &str) -> Result<bunker_format::TreeId> {
    match find_node(repo, &snap.snapshot.tree, path)? {
        None => Ok(snap.snapshot.tree),
        Some(n) => match (n.node_type, n.subtree) {
            (NodeType::Dir, Some(sub)) => Ok(sub),
            _ => Err(RepoError::Invalid(format!(
                "{path:?} is not a directory in the snapshot: SNAPSHOT:PATH restores a directory's \
                 contents; restore a single file with `--include {path}` (and no `:{path}`), or \
                 print it with `bunker dump SNAPSHOT {path}`"
            ))),
        },
    }
}

/// Raise the soft limit of open files to the hard limit (as Go programs
/// such as restic do at start), so that the open descriptors of the batches
/// in flight fit even where the soft limit is 1024. Best effort.
fn raise_open_file_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut lim = getrlimit(Resource::Nofile);
    if lim.current < lim.maximum {
        lim.current = lim.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, lim) {
            tracing::debug!("cannot raise the open-file limit: {e}");
        }
    }
}

/// A path relative to the target, as name components.
type Rel = Vec<Vec<u8>>;
/// Creates one entry at a relative path.
type CreateFn<'f> = dyn Fn(&TargetDir, &[&[u8]]) -> std::result::Result<(), SourceError> + 'f;

struct DirState {
    rel: Vec<Vec<u8>>,
    /// The directory's node (`None` for the restore root).
    node: Option<Node>,
    /// Whether the directory exists in the target (created or merged).
    created: bool,
    /// Whether its metadata is applied at the end: not for the root, nor
    /// for a directory that existed already and is only a container of the
    /// restored paths (a parent passed through, or an ancestor of the
    /// snapshot's paths).
    apply_meta: bool,
    /// Names seen in this directory (duplicates are refused).
    names: HashSet<Vec<u8>>,
}

struct Restorer<'a> {
    repo: &'a Arc<Repository>,
    opts: &'a RestoreOptions,
    target: Option<&'a TargetDir>,
    selector: Selector,
    progress: &'a dyn Progress,
    cfg: BatchConfig,
    /// The workers that fill batches of files.
    pool: &'a rayon::ThreadPool,
    stack: Vec<DirState>,
    batch: Vec<FileJob>,
    batch_blobs: usize,
    /// Files and bytes queued so far (progress totals).
    queued: (u64, u64),
    /// (device, inode) of restored multiply-linked files -> (path, content).
    hardlinks: HashMap<(u64, u64), (Rel, Vec<bunker_format::BlobId>)>,
    /// Directories whose metadata is applied at the end, in post-order.
    dir_meta: Vec<(Rel, RestoreMeta, String)>,
    /// Strict ancestors of the snapshot's paths ([`existing::container_dirs`]).
    containers: HashSet<Vec<u8>>,
    /// Hard links made at the end: (first path, link path, display).
    pending_links: Vec<(Rel, Rel, String)>,
    /// Files whose contents could not be restored (nothing is at their path).
    failed: HashSet<Rel>,
    summary: RestoreSummary,
    /// Hands full batches to the writer thread (`None`: write them inline).
    writer: Option<crossbeam_channel::Sender<Vec<FileJob>>>,
}

fn parts(rel: &[Vec<u8>]) -> Vec<&[u8]> {
    rel.iter().map(Vec::as_slice).collect()
}

impl Restorer<'_> {
    fn error(&mut self, path: String, msg: String) {
        self.progress.warn(&format!("{path}: {msg}"));
        self.summary.errors.push((path, msg));
    }

    fn skipped(&mut self, path: String) {
        self.summary.skipped_existing += 1;
        if self.summary.skipped_paths.len() < MAX_LISTED_SKIPS {
            self.summary.skipped_paths.push(path);
        }
    }

    /// Create the parents of a selected node that were only passed through.
    fn ensure_parents(&mut self) -> std::result::Result<(), String> {
        for i in 0..self.stack.len() {
            if self.stack[i].created {
                continue;
            }
            let mut made = true;
            if let (Some(t), false) = (self.target, self.opts.dry_run) {
                made = t
                    .mkdir(&parts(&self.stack[i].rel), 0o700)
                    .map_err(|e| e.to_string())?;
            }
            self.stack[i].created = true;
            // A parent that was there already keeps its metadata.
            self.stack[i].apply_meta = made;
            self.summary.dirs += 1;
        }
        Ok(())
    }

    fn flush(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let jobs = std::mem::take(&mut self.batch);
        self.batch_blobs = 0;
        let Some(t) = self.target else { return };
        let jobs = match &self.writer {
            Some(tx) => match tx.send(jobs) {
                Ok(()) => return,
                // The writer is gone (it panicked): write inline.
                Err(e) => e.into_inner(),
            },
            None => jobs,
        };
        let res = files::run_batch(self.repo, t, jobs, self.cfg, self.pool, self.progress);
        self.add_batch_result(res);
    }

    fn add_batch_result(&mut self, res: files::BatchResult) {
        self.summary.files += res.files_ok;
        self.summary.bytes += res.bytes;
        self.summary.verified_files += res.verified;
        self.summary.errors.extend(res.errors);
        self.failed.extend(res.failed);
    }
}

impl TreeVisitor for Restorer<'_> {
    fn visit(&mut self, path: &[u8], node: &Node) -> Result<WalkAction> {
        let display = String::from_utf8_lossy(path).into_owned();
        if let Err(e) = validate_name(&node.name) {
            self.error(display, format!("refusing unsafe name: {e}"));
            return Ok(WalkAction::SkipSubtree);
        }
        let parent = self
            .stack
            .last_mut()
            .ok_or_else(|| RepoError::Invalid("restore walker lost its place".into()))?;
        let duplicate = !parent.names.insert(node.name.clone());
        let mut rel = parent.rel.clone();
        if duplicate {
            self.error(
                display,
                "duplicate name in the same directory; later entry ignored".into(),
            );
            return Ok(WalkAction::SkipSubtree);
        }
        rel.push(node.name.clone());
        let is_dir = node.node_type == NodeType::Dir;
        let (selected, descend) = self.selector.select(path, is_dir);
        if !selected && !descend {
            return Ok(WalkAction::SkipSubtree);
        }
        if selected {
            if let Err(msg) = self.ensure_parents() {
                self.error(display, format!("cannot create parent directory: {msg}"));
                return Ok(WalkAction::SkipSubtree);
            }
        }
        if !is_dir {
            self.restore_leaf(rel, display, node);
            return Ok(WalkAction::SkipSubtree);
        }
        let (mut created, mut apply_meta) = (false, false);
        if selected {
            let mut made = true;
            if let (Some(t), false) = (self.target, self.opts.dry_run) {
                match t.mkdir(&parts(&rel), 0o700) {
                    Ok(m) => made = m,
                    Err(e) => {
                        self.error(display, e.to_string());
                        return Ok(WalkAction::SkipSubtree);
                    }
                }
            }
            created = true;
            apply_meta = made || !self.containers.contains(path);
            self.summary.dirs += 1;
        }
        if node.subtree.is_none() {
            if apply_meta && !self.opts.dry_run {
                self.dir_meta.push((rel, restore_meta(node), display));
            }
            return Ok(WalkAction::SkipSubtree);
        }
        self.stack.push(DirState {
            rel,
            node: Some(node.clone()),
            created,
            apply_meta,
            names: HashSet::new(),
        });
        Ok(WalkAction::Continue)
    }

    fn leave_dir(&mut self, path: &[u8], _node: &Node) -> Result<()> {
        let Some(d) = self.stack.pop() else {
            return Err(RepoError::Invalid("restore walker lost its place".into()));
        };
        if self.opts.delete {
            self.delete_unexpected(&d.rel, path, &d.names, d.created);
        }
        if d.created && d.apply_meta && !self.opts.dry_run {
            if let Some(node) = &d.node {
                self.dir_meta.push((
                    d.rel,
                    restore_meta(node),
                    String::from_utf8_lossy(path).into_owned(),
                ));
            }
        }
        Ok(())
    }
}
