//! The archiver: a parallel recursive walk that builds every directory's
//! tree bottom-up from its sorted children.
//!
//! Runs inside a dedicated rayon pool. The children of a directory are
//! processed with a parallel iterator (work stealing keeps all workers busy,
//! whether they read files, hash, compress or encrypt); each directory's
//! tree blob is saved as soon as all its children are done. Problems with a
//! single item (vanished, unreadable) are reported, recorded and the item is
//! skipped; repository errors abort the backup.

use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::AtomicUsize;

use bunker_format::chunker::Chunker;
use bunker_format::node::{Node, NodeType, Tree};
use bunker_format::{BlobType, TreeId};
use bunker_sources::{
    lstat_meta, lstat_meta_at, open_dir, read_dir_typed, DirEntryName, Excluder, FileKind, FsMeta,
    SourceErrorKind,
};
use rayon::prelude::*;
use rustix::fs::{Mode, OFlags};

use super::node::{file_unchanged, no_xattrs_since, node_from_meta};
use super::prefetch::Prefetcher;
use super::stats::{Change, Stats};
use super::targets::TargetNode;
use crate::error::{RepoError, Result};
use crate::packer::BlobSaver;
use crate::progress::Progress;
use crate::Repository;

/// Failure of one item: skip it, or abort the whole backup.
#[derive(Debug)]
pub enum ItemError {
    Skip(String),
    Fatal(RepoError),
}

impl From<RepoError> for ItemError {
    fn from(e: RepoError) -> Self {
        ItemError::Fatal(e)
    }
}

/// Shared state of one backup run.
pub struct Archiver<'a> {
    pub repo: &'a Repository,
    pub saver: &'a BlobSaver,
    pub excluder: Option<&'a Excluder>,
    pub chunker: Chunker,
    pub ignore_ctime: bool,
    pub ignore_inode: bool,
    pub progress: &'a dyn Progress,
    pub stats: Stats,
    /// Bytes of chunks handed to other workers and not yet saved.
    pub inflight: AtomicUsize,
    pub inflight_limit: usize,
    /// Read-ahead for files about to be read (none: no hints).
    pub prefetch: Option<&'a Prefetcher>,
    /// The job's cancellation, checked before each item is saved.
    pub cancel: Option<&'a bunker_sources::CancelToken>,
}

fn display(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// Find a node by name in a tree sorted by name.
pub fn find<'t>(tree: Option<&'t Tree>, name: &[u8]) -> Option<&'t Node> {
    let nodes = &tree?.nodes;
    match nodes.binary_search_by(|n| n.name.as_slice().cmp(name)) {
        Ok(i) => nodes.get(i),
        Err(_) => nodes.iter().find(|n| n.name == name),
    }
}

impl Archiver<'_> {
    /// Whether the job was cancelled.
    pub fn cancelled(&self) -> bool {
        self.cancel
            .is_some_and(bunker_sources::CancelToken::is_cancelled)
    }

    /// Report and record a problem with one item.
    pub fn item_error(&self, path: &Path, message: String) {
        let p = display(path);
        self.progress.warn(&format!("{p}: {message}"));
        self.stats.error(p, message);
    }

    /// Save the root tree of the snapshot; returns its id.
    pub fn archive(&self, root: &TargetNode, parent_root: Option<&Tree>) -> Result<TreeId> {
        let nodes = match root {
            TargetNode::Leaf(path) => match self.dir_nodes(path, parent_root, false) {
                Ok(n) => n,
                Err(ItemError::Fatal(e)) => return Err(e),
                Err(ItemError::Skip(msg)) => {
                    return Err(RepoError::Io(format!("{}: {msg}", display(path))));
                }
            },
            TargetNode::Inner { children, .. } => self.target_children(children, parent_root)?,
        };
        if nodes.is_empty() {
            return Err(RepoError::Invalid(
                "snapshot is empty: none of the backup paths could be read".into(),
            ));
        }
        self.save_tree(nodes)
    }

    fn target_children(
        &self,
        children: &std::collections::BTreeMap<Vec<u8>, TargetNode>,
        parent: Option<&Tree>,
    ) -> Result<Vec<Node>> {
        let items: Vec<(&Vec<u8>, &TargetNode)> = children.iter().collect();
        let nodes: Vec<Option<Node>> = items
            .par_iter()
            .map(|(name, child)| self.save_target(name, child, find(parent, name)))
            .collect::<Result<_>>()?;
        Ok(nodes.into_iter().flatten().collect())
    }

    fn save_target(
        &self,
        name: &[u8],
        target: &TargetNode,
        prev: Option<&Node>,
    ) -> Result<Option<Node>> {
        match target {
            TargetNode::Leaf(path) => self.save_item(None, path, name, prev, true, false),
            TargetNode::Inner { path, children } => {
                let meta = match lstat_meta(path, false) {
                    Ok(m) => m,
                    Err(e) => {
                        self.item_error(path, e.to_string());
                        return Ok(None);
                    }
                };
                if meta.kind != FileKind::Dir {
                    self.item_error(path, "is not a directory".into());
                    return Ok(None);
                }
                // As restic: xattrs of directories above the targets may be
                // unreadable; that is not worth an error.
                let xattrs = bunker_sources::meta::read_xattrs(path).unwrap_or_default();
                let prev_tree = self.load_prev_tree(path, prev);
                let nodes = self.target_children(children, prev_tree.as_ref())?;
                let mut meta = meta;
                meta.xattrs = xattrs;
                let mut node = node_from_meta(name, &meta);
                node.subtree = Some(self.save_dir_tree(nodes, prev, prev_tree.as_ref())?);
                self.stats.dir(change_of(prev, &node));
                Ok(Some(node))
            }
        }
    }

    /// Load the parent's subtree for a directory, if it has one.
    fn load_prev_tree(&self, path: &Path, prev: Option<&Node>) -> Option<Tree> {
        let prev = prev?;
        if prev.node_type != NodeType::Dir {
            return None;
        }
        let id = prev.subtree?;
        match self.repo.load_tree(&id) {
            Ok(t) => Some(t),
            Err(e) => {
                self.item_error(
                    path,
                    format!(
                        "parent tree {} could not be loaded ({e}); reading everything below",
                        id.id().short()
                    ),
                );
                None
            }
        }
    }

    /// Save a directory's tree; when its nodes are exactly the parent
    /// snapshot's (nothing below changed), the parent's tree blob is reused
    /// instead of encoding, hashing and looking up the same tree again.
    /// Equal nodes decode from that blob, so the snapshot is the same; the
    /// blob must still be in the index (it may have been pruned).
    fn save_dir_tree(
        &self,
        mut nodes: Vec<Node>,
        prev: Option<&Node>,
        prev_tree: Option<&Tree>,
    ) -> Result<TreeId> {
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        if let (Some(id), Some(t)) = (prev.and_then(|p| p.subtree), prev_tree) {
            if t.nodes == nodes && self.repo.index().read().has(&id.id().into()) {
                return Ok(id);
            }
        }
        self.save_sorted_tree(nodes)
    }

    /// Encode and save a tree blob (nodes are sorted by name first).
    pub fn save_tree(&self, mut nodes: Vec<Node>) -> Result<TreeId> {
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        self.save_sorted_tree(nodes)
    }

    /// Encode and save a tree blob whose nodes are already sorted by name.
    fn save_sorted_tree(&self, nodes: Vec<Node>) -> Result<TreeId> {
        debug_assert!(nodes.windows(2).all(|w| w[0].name <= w[1].name));
        let bytes = Tree { nodes }.to_bytes();
        let saved = self.saver.save(BlobType::Tree, &bytes)?;
        self.stats.tree_blob(&saved, bytes.len());
        Ok(saved.id)
    }

    /// Save one file-system object; `None` when excluded or skipped.
    /// `dir`: the open directory that holds it (as `name`), for lookups of
    /// one path component instead of all of `path`. `hinted`: a directory
    /// whose files were already announced to the read-ahead.
    pub fn save_item(
        &self,
        dir: Option<BorrowedFd<'_>>,
        path: &Path,
        name: &[u8],
        prev: Option<&Node>,
        explicit: bool,
        hinted: bool,
    ) -> Result<Option<Node>> {
        if self.cancelled() {
            return Err(RepoError::Cancelled);
        }
        if !explicit && self.excluder.is_some_and(|e| e.excluded_by_name(path)) {
            return Ok(None);
        }
        let (at, at_name) = relative(dir, name, path);
        let mut meta = match lstat_meta_at(at, at_name, path) {
            Ok(m) => m,
            Err(e) => {
                let msg = match e.kind() {
                    SourceErrorKind::NotFound => format!("vanished during backup ({e})"),
                    _ => e.to_string(),
                };
                self.item_error(path, msg);
                return Ok(None);
            }
        };
        if !explicit && self.excluder.is_some_and(|e| e.excluded(path, &meta)) {
            return Ok(None);
        }
        if meta.kind == FileKind::Socket {
            // restic does not store sockets: they cannot be restored usefully.
            return Ok(None);
        }
        let xattrs = !prev.is_some_and(|p| no_xattrs_since(&meta, p));
        // A regular file that is read has its attributes listed through the
        // open file (save_file), saving a path lookup.
        if xattrs && meta.kind != FileKind::File {
            self.read_xattrs(path, None, &mut meta);
        }
        let result = match meta.kind {
            FileKind::File => self.save_file(dir, path, name, &mut meta, prev, xattrs),
            FileKind::Dir => self.save_dir(path, name, &meta, prev, hinted),
            _ => Ok(node_from_meta(name, &meta)),
        };
        match result {
            Ok(node) => Ok(Some(node)),
            Err(ItemError::Skip(msg)) => {
                self.item_error(path, msg);
                Ok(None)
            }
            Err(ItemError::Fatal(e)) => Err(e),
        }
    }

    /// `path`'s extended attributes into `meta`, through `file` when it is
    /// open; a failure is reported and leaves the node without them.
    fn read_xattrs(&self, path: &Path, file: Option<&std::fs::File>, meta: &mut FsMeta) {
        let read = match file {
            Some(f) => bunker_sources::meta::read_xattrs_of(f, path),
            None => bunker_sources::meta::read_xattrs(path),
        };
        match read {
            Ok(x) => meta.xattrs = x,
            Err(e) => self.item_error(path, format!("incomplete metadata: {e}")),
        }
    }

    /// The nodes of a directory's entries, in name order. `hinted`: its
    /// files were already announced to the read-ahead.
    fn dir_nodes(
        &self,
        path: &Path,
        prev_tree: Option<&Tree>,
        hinted: bool,
    ) -> Result<Vec<Node>, ItemError> {
        let entries = read_dir_typed(path).map_err(|e| ItemError::Skip(e.to_string()))?;
        let mut subdirs_hinted = vec![false; entries.len()];
        if let Some(prefetch) = self.prefetch {
            let new = |e: &DirEntryName| find(prev_tree, e.name.as_bytes()).is_none();
            let included = |p: &Path| !self.excluder.is_some_and(|x| x.excluded_by_name(p));
            // Files the parent snapshot has are most likely unchanged and
            // not read at all: only announce the others.
            if !hinted {
                entries
                    .iter()
                    .filter(|e| e.regular_file && new(e))
                    .map(|e| path.join(&e.name))
                    .filter(|p| included(p))
                    .for_each(|p| prefetch.hint(p));
            }
            // New subdirectories: their files are all going to be read, so
            // announce them now, a level ahead of the workers.
            for (e, done) in entries.iter().zip(subdirs_hinted.iter_mut()) {
                if e.directory && new(e) {
                    let p = path.join(&e.name);
                    *done = included(&p) && prefetch.hint_dir(p);
                }
            }
        }
        // Entries are looked up relative to the directory (when it opens;
        // its listing above reports the errors).
        let dir = open_dir(path).ok();
        let dir = dir.as_ref().map(|fd| fd.as_fd());
        let nodes: Vec<Option<Node>> = entries
            .par_iter()
            .zip(&subdirs_hinted)
            .map(|(e, hinted)| {
                let name = e.name.as_bytes();
                let prev = find(prev_tree, name);
                self.save_item(dir, &path.join(&e.name), name, prev, false, *hinted)
            })
            .collect::<Result<_>>()?;
        Ok(nodes.into_iter().flatten().collect())
    }

    fn save_dir(
        &self,
        path: &Path,
        name: &[u8],
        meta: &FsMeta,
        prev: Option<&Node>,
        hinted: bool,
    ) -> Result<Node, ItemError> {
        let prev_tree = self.load_prev_tree(path, prev);
        let nodes = self.dir_nodes(path, prev_tree.as_ref(), hinted)?;
        let mut node = node_from_meta(name, meta);
        node.subtree = Some(self.save_dir_tree(nodes, prev, prev_tree.as_ref())?);
        self.stats.dir(change_of(prev, &node));
        Ok(node)
    }

    /// `xattrs`: the extended attributes are to be read (into `meta`).
    fn save_file(
        &self,
        dir: Option<BorrowedFd<'_>>,
        path: &Path,
        name: &[u8],
        meta: &mut FsMeta,
        prev: Option<&Node>,
        xattrs: bool,
    ) -> Result<Node, ItemError> {
        self.progress.current(&display(path));
        if let Some(p) =
            prev.filter(|p| file_unchanged(meta, p, self.ignore_ctime, self.ignore_inode))
        {
            if self.all_blobs_present(p) {
                if xattrs {
                    self.read_xattrs(path, None, meta);
                }
                let mut node = node_from_meta(name, meta);
                node.content = p.content.clone();
                self.stats.file(Change::Unmodified, meta.size);
                self.progress.add_bytes(meta.size);
                self.progress.add_items(1);
                return Ok(node);
            }
            self.progress.warn(&format!(
                "{}: parts of the file are not in the repository index; storing it again",
                display(path)
            ));
        }
        let (at, at_name) = relative(dir, name, path);
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let mut file = rustix::fs::openat(at, at_name, flags, Mode::empty())
            .map(std::fs::File::from)
            .map_err(|e| ItemError::Skip(format!("open: {}", std::io::Error::from(e))))?;
        let fmeta = file
            .metadata()
            .map_err(|e| ItemError::Skip(format!("fstat: {e}")))?;
        if !fmeta.is_file() || fmeta.ino() != meta.inode || fmeta.dev() != meta.dev {
            return Err(ItemError::Skip(
                "file was replaced during backup; not saved".into(),
            ));
        }
        if xattrs {
            self.read_xattrs(path, Some(&file), meta);
        }
        let content = self.save_content(&mut file, meta.size)?;
        let mut node = node_from_meta(name, meta);
        node.size = content.size;
        node.content = Some(content.blobs);
        let change = change_of(prev, &node);
        self.stats.file(change, node.size);
        self.progress.add_items(1);
        Ok(node)
    }

    /// Whether every content blob of a parent's file node is in the index.
    fn all_blobs_present(&self, prev: &Node) -> bool {
        let Some(content) = &prev.content else {
            return false;
        };
        let index = self.repo.index().read();
        content.iter().all(|id| index.has(id))
    }
}

/// Where to look `path` up: as `name` in its open directory `dir`, or as
/// the whole path (relative to the working directory) without one.
fn relative<'a>(
    dir: Option<BorrowedFd<'a>>,
    name: &'a [u8],
    path: &'a Path,
) -> (BorrowedFd<'a>, &'a OsStr) {
    match dir {
        Some(fd) => (fd, OsStr::from_bytes(name)),
        None => (rustix::fs::CWD, path.as_os_str()),
    }
}

fn change_of(prev: Option<&Node>, node: &Node) -> Change {
    match prev {
        None => Change::New,
        Some(p) if p == node => Change::Unmodified,
        Some(_) => Change::Changed,
    }
}
