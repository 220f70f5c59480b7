//! A read-only FUSE view of a repository (restic's `mount`).
//!
//! The top directories are virtual ([`layout`]); below a snapshot root the
//! directories are the snapshot's trees, loaded when first listed. Inode
//! numbers are handed out per (parent inode, name) on first sight and stay
//! stable for the life of the mount. File contents are read blob by blob
//! when asked for, through a cache bounded in bytes. The snapshot list is
//! re-read (and the index reloaded when it changed) when a virtual directory
//! is looked at and the last refresh is older than [`REFRESH_AFTER`], so
//! snapshots of backups that finish while the repository is mounted appear.

pub mod layout;

use std::collections::{HashMap, VecDeque};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bunker_format::node::{Node, NodeType};
use bunker_format::{BlobId, BlobType, TreeId};
use fuser::{FileAttr, FileType, Filesystem, ReplyAttr, ReplyData, ReplyDirectory, ReplyEntry};
use fuser::{ReplyOpen, Request};

use crate::snapshots::{self, SnapshotFilter};
use crate::Repository;
use layout::{Layout, VEntry};

/// How long the snapshot list is trusted before it is read again.
pub const REFRESH_AFTER: Duration = Duration::from_secs(5);
/// Default size of the blob cache.
pub const DEFAULT_CACHE_BYTES: usize = 64 << 20;
const TTL: Duration = Duration::from_secs(1);
const ROOT: u64 = fuser::FUSE_ROOT_ID;

/// What an inode is.
#[derive(Clone, Debug)]
enum Inode {
    /// A virtual directory of the layout (by path).
    Virtual(String),
    /// A symbolic link of the layout.
    Link(String),
    /// The root tree of a snapshot.
    SnapRoot(TreeId, SystemTime),
    /// A node inside a snapshot.
    Node(Box<Node>),
}

/// The mounted file system.
pub struct RepoFs {
    repo: Arc<Repository>,
    filter: SnapshotFilter,
    layout: Layout,
    refreshed: Instant,
    inodes: Vec<Inode>,
    by_name: HashMap<(u64, Vec<u8>), u64>,
    /// Children of directories inside snapshots, once listed.
    listed: HashMap<u64, Vec<(Vec<u8>, u64)>>,
    /// Byte offsets where each blob of an open file starts.
    offsets: HashMap<u64, Vec<(u64, BlobId)>>,
    cache: BlobCache,
    uid: u32,
    gid: u32,
}

/// Recently read blobs, bounded by total size.
struct BlobCache {
    limit: usize,
    used: usize,
    order: VecDeque<BlobId>,
    blobs: HashMap<BlobId, Arc<Vec<u8>>>,
}

impl BlobCache {
    fn get(&mut self, repo: &Repository, id: &BlobId) -> crate::error::Result<Arc<Vec<u8>>> {
        if let Some(b) = self.blobs.get(id) {
            return Ok(b.clone());
        }
        let data = Arc::new(repo.read_blob(BlobType::Data, id)?);
        while self.used + data.len() > self.limit {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            if let Some(b) = self.blobs.remove(&old) {
                self.used -= b.len();
            }
        }
        self.used += data.len();
        self.order.push_back(*id);
        self.blobs.insert(*id, data.clone());
        Ok(data)
    }
}

fn to_system(t: &chrono::DateTime<chrono::FixedOffset>) -> SystemTime {
    SystemTime::from(*t)
}

fn kind(t: NodeType) -> FileType {
    match t {
        NodeType::Dir => FileType::Directory,
        NodeType::Symlink => FileType::Symlink,
        NodeType::Dev => FileType::BlockDevice,
        NodeType::CharDev => FileType::CharDevice,
        NodeType::Fifo => FileType::NamedPipe,
        NodeType::Socket => FileType::Socket,
        NodeType::File | NodeType::Irregular => FileType::RegularFile,
    }
}

impl RepoFs {
    /// A file system over the snapshots of `repo` matching `filter` (the
    /// index must be loaded); `cache_bytes` bounds the blob cache.
    pub fn new(
        repo: Arc<Repository>,
        filter: SnapshotFilter,
        cache_bytes: usize,
    ) -> crate::error::Result<RepoFs> {
        let layout = Layout::new(&snapshots::filtered(&repo, &filter, None)?);
        Ok(RepoFs {
            repo,
            filter,
            layout,
            refreshed: Instant::now(),
            // Inode 0 is unused; 1 is the root.
            inodes: vec![Inode::Virtual(String::new()), Inode::Virtual(String::new())],
            by_name: HashMap::new(),
            listed: HashMap::new(),
            offsets: HashMap::new(),
            cache: BlobCache {
                limit: cache_bytes.max(1 << 20),
                used: 0,
                order: VecDeque::new(),
                blobs: HashMap::new(),
            },
            uid: uzers::get_current_uid(),
            gid: uzers::get_current_gid(),
        })
    }

    /// Re-read the snapshot list when it is older than [`REFRESH_AFTER`].
    fn refresh(&mut self) {
        if self.refreshed.elapsed() < REFRESH_AFTER {
            return;
        }
        self.refreshed = Instant::now();
        let known = self.repo.index().read().index_files().len();
        let files = self.repo.storage().list(bunker_storage::FileType::Index);
        if files.is_ok_and(|f| f.len() != known) {
            if let Err(e) = self.repo.load_index() {
                tracing::warn!("mount: reloading the index failed: {e}");
            }
        }
        match snapshots::filtered(&self.repo, &self.filter, None) {
            Ok(list) => self.layout = Layout::new(&list),
            Err(e) => tracing::warn!("mount: refreshing the snapshot list failed: {e}"),
        }
    }

    fn inode(&mut self, parent: u64, name: &[u8], make: impl FnOnce() -> Inode) -> u64 {
        if let Some(ino) = self.by_name.get(&(parent, name.to_vec())) {
            // The same name may now stand for something else (after a refresh).
            let fresh = make();
            self.inodes[*ino as usize] = fresh;
            return *ino;
        }
        let ino = self.inodes.len() as u64;
        self.inodes.push(make());
        self.by_name.insert((parent, name.to_vec()), ino);
        ino
    }

    /// The children of a directory inode: (name, inode).
    fn children(&mut self, ino: u64) -> crate::error::Result<Vec<(Vec<u8>, u64)>> {
        let tree = match self.inodes.get(ino as usize).cloned() {
            Some(Inode::Virtual(path)) => {
                self.refresh();
                let entries: Vec<(String, VEntry)> = self
                    .layout
                    .children(&path)
                    .map(|c| c.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                    .unwrap_or_default();
                return Ok(entries
                    .into_iter()
                    .map(|(name, v)| {
                        let ino = self.inode(ino, name.as_bytes(), || match v {
                            VEntry::Dir(p) => Inode::Virtual(p),
                            VEntry::Link(t) => Inode::Link(t),
                            VEntry::Snapshot(t, time) => Inode::SnapRoot(t, to_system(&time)),
                        });
                        (name.into_bytes(), ino)
                    })
                    .collect());
            }
            Some(Inode::SnapRoot(tree, _)) => tree,
            Some(Inode::Node(n)) if n.node_type == NodeType::Dir => match n.subtree {
                Some(t) => t,
                None => return Ok(Vec::new()),
            },
            _ => return Ok(Vec::new()),
        };
        if let Some(c) = self.listed.get(&ino) {
            return Ok(c.clone());
        }
        let nodes = self.repo.load_tree(&tree)?.nodes;
        let out: Vec<(Vec<u8>, u64)> = nodes
            .into_iter()
            .map(|n| {
                let name = n.name.clone();
                let child = self.inode(ino, &name, || Inode::Node(Box::new(n)));
                (name, child)
            })
            .collect();
        self.listed.insert(ino, out.clone());
        Ok(out)
    }

    fn attr(&self, ino: u64) -> Option<FileAttr> {
        let now = SystemTime::now();
        let mut a = FileAttr {
            ino,
            size: 0,
            blocks: 0,
            atime: now,
            mtime: now,
            ctime: now,
            crtime: now,
            kind: FileType::Directory,
            perm: 0o555,
            nlink: 2,
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        };
        match self.inodes.get(ino as usize)? {
            Inode::Virtual(_) => {}
            Inode::Link(target) => {
                a.kind = FileType::Symlink;
                a.perm = 0o777;
                a.size = target.len() as u64;
            }
            Inode::SnapRoot(_, time) => (a.mtime, a.ctime, a.atime) = (*time, *time, *time),
            Inode::Node(n) => {
                a.kind = kind(n.node_type);
                a.perm = (n.unix_perm() & 0o7777) as u16;
                a.size = match n.node_type {
                    NodeType::Symlink => n.link_target.len() as u64,
                    _ => n.size,
                };
                a.blocks = a.size.div_ceil(512);
                a.nlink = n.links.max(1) as u32;
                (a.uid, a.gid) = (n.uid, n.gid);
                a.rdev = n.device as u32;
                a.mtime = to_system(&n.mtime);
                a.atime = to_system(&n.atime);
                a.ctime = to_system(&n.ctime);
            }
        }
        Some(a)
    }

    /// Up to `size` bytes of file `ino` from `offset`.
    fn read_file(&mut self, ino: u64, offset: u64, size: u32) -> crate::error::Result<Vec<u8>> {
        let Some(Inode::Node(node)) = self.inodes.get(ino as usize).cloned() else {
            return Ok(Vec::new());
        };
        if !self.offsets.contains_key(&ino) {
            let mut pos = 0u64;
            let mut v = Vec::new();
            for b in node.content.iter().flatten() {
                let e = self
                    .repo
                    .lookup(b)
                    .ok_or_else(|| crate::RepoError::BlobNotFound {
                        blob: b.to_string(),
                    })?;
                v.push((pos, *b));
                pos += u64::from(e.plain_len());
            }
            self.offsets.insert(ino, v);
        }
        let blobs = self.offsets.get(&ino).cloned().unwrap_or_default();
        let end = offset.saturating_add(u64::from(size));
        let mut out = Vec::with_capacity(size as usize);
        let first = blobs
            .partition_point(|(start, _)| *start <= offset)
            .saturating_sub(1);
        for (start, id) in blobs.iter().skip(first) {
            if *start >= end {
                break;
            }
            let data = self.cache.get(&self.repo, id)?;
            let from = offset.saturating_sub(*start).min(data.len() as u64) as usize;
            let to = (end - start).min(data.len() as u64) as usize;
            if from < to {
                out.extend_from_slice(&data[from..to]);
            }
        }
        Ok(out)
    }
}

impl Filesystem for RepoFs {
    fn lookup(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEntry) {
        match self.children(parent) {
            Ok(c) => match c.iter().find(|(n, _)| n.as_slice() == name.as_bytes()) {
                Some((_, ino)) => match self.attr(*ino) {
                    Some(a) => reply.entry(&TTL, &a, 0),
                    None => reply.error(libc::ENOENT),
                },
                None => reply.error(libc::ENOENT),
            },
            Err(e) => {
                tracing::warn!("mount: {e}");
                reply.error(libc::EIO)
            }
        }
    }

    fn getattr(&mut self, _req: &Request<'_>, ino: u64, _fh: Option<u64>, reply: ReplyAttr) {
        match self.attr(ino) {
            Some(a) => reply.attr(&TTL, &a),
            None => reply.error(libc::ENOENT),
        }
    }

    fn readlink(&mut self, _req: &Request<'_>, ino: u64, reply: ReplyData) {
        match self.inodes.get(ino as usize) {
            Some(Inode::Link(t)) => reply.data(t.as_bytes()),
            Some(Inode::Node(n)) if n.node_type == NodeType::Symlink => reply.data(&n.link_target),
            _ => reply.error(libc::EINVAL),
        }
    }

    fn open(&mut self, _req: &Request<'_>, ino: u64, flags: i32, reply: ReplyOpen) {
        if flags & libc::O_ACCMODE != libc::O_RDONLY {
            return reply.error(libc::EROFS);
        }
        match self.inodes.get(ino as usize) {
            Some(Inode::Node(_)) => reply.opened(0, 0),
            _ => reply.error(libc::EISDIR),
        }
    }

    fn read(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        size: u32,
        _flags: i32,
        _lock: Option<u64>,
        reply: ReplyData,
    ) {
        match self.read_file(ino, offset.max(0) as u64, size) {
            Ok(data) => reply.data(&data),
            Err(e) => {
                tracing::warn!("mount: reading inode {ino}: {e}");
                reply.error(libc::EIO)
            }
        }
    }

    fn readdir(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        mut reply: ReplyDirectory,
    ) {
        let children = match self.children(ino) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("mount: {e}");
                return reply.error(libc::EIO);
            }
        };
        let mut all = vec![(b".".to_vec(), ino), (b"..".to_vec(), ino)];
        all.extend(children);
        for (i, (name, child)) in all.into_iter().enumerate().skip(offset.max(0) as usize) {
            let k = self.attr(child).map_or(FileType::RegularFile, |a| a.kind);
            if reply.add(child, (i + 1) as i64, k, OsStr::from_bytes(&name)) {
                break;
            }
        }
        reply.ok();
    }
}

/// Mount `fs` read-only at `mountpoint` in the background; the returned
/// session unmounts when dropped. The mount is also removed when this
/// process dies (`auto_unmount`), so a killed process leaves no dead mount.
///
/// `auto_unmount` needs `user_allow_other` in /etc/fuse.conf for users other
/// than root; `auto_unmount = false` mounts without it (the caller must then
/// unmount, e.g. on SIGTERM, by dropping the session).
pub fn mount(
    fs: RepoFs,
    mountpoint: &std::path::Path,
    auto_unmount: bool,
) -> crate::error::Result<fuser::BackgroundSession> {
    let mut options = vec![
        fuser::MountOption::RO,
        fuser::MountOption::FSName("bunker".into()),
        fuser::MountOption::Subtype("bunker".into()),
    ];
    // No `default_permissions`, as restic without --allow-other: only the
    // user who mounted can enter the mount at all (the kernel's rule for
    // FUSE), and that user may read every file of their backups whatever
    // owner and mode the snapshot records.
    if auto_unmount {
        options.push(fuser::MountOption::AutoUnmount);
    }
    fuser::spawn_mount2(fs, mountpoint, &options).map_err(|e| {
        crate::RepoError::Io(format!(
            "mounting at {}: {e} (is FUSE available: /dev/fuse and fusermount3 or fusermount?)",
            mountpoint.display()
        ))
    })
}

// The root inode is the mount point; `RepoFs::new` reserves slot 1 for it.
const _: () = assert!(ROOT == 1);
