//! Helpers to build snapshots by hand for restore, dump, ls and diff tests.

#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;

use bunker_format::keyfile::KdfParams;
use bunker_format::node::{Node, NodeType, Tree, MODE_DIR, MODE_SYMLINK};
use bunker_format::snapshot::Snapshot;
use bunker_format::{BlobType, TreeId};
use bunker_repo::packer::BlobSaver;
use bunker_repo::snapshots::{self, SnapshotEntry};
use bunker_repo::{RepoOptions, Repository};
use chrono::{DateTime, FixedOffset, TimeZone};

pub fn new_repo(dir: &Path) -> Arc<Repository> {
    let storage = bunker_storage::open(&dir.to_string_lossy(), &[]).expect("open storage");
    Repository::init(
        storage,
        b"secret",
        RepoOptions::default(),
        KdfParams {
            n: 1024,
            r: 8,
            p: 1,
        },
    )
    .expect("init repo")
}

/// Re-open a repository from disk with a freshly loaded index.
pub fn reopen(dir: &Path) -> Arc<Repository> {
    let storage = bunker_storage::open(&dir.to_string_lossy(), &[]).expect("open storage");
    let repo = Repository::open(storage, b"secret", RepoOptions::default()).expect("open repo");
    repo.load_index().expect("load index");
    repo
}

pub fn time(secs: i64, nanos: u32) -> DateTime<FixedOffset> {
    FixedOffset::east_opt(3600)
        .and_then(|tz| tz.timestamp_opt(secs, nanos).single())
        .expect("valid time")
}

/// Builds trees and files into a repository.
pub struct Builder {
    pub repo: Arc<Repository>,
    pub saver: BlobSaver,
}

impl Builder {
    pub fn new(repo: &Arc<Repository>) -> Builder {
        Builder {
            repo: repo.clone(),
            saver: BlobSaver::new(repo.clone()),
        }
    }

    fn stamp(node: &mut Node, mode: u32) {
        node.mode = mode;
        node.mtime = time(1_600_000_000, 123_456_789);
        node.atime = time(1_600_000_100, 987_654_321);
        node.ctime = node.mtime;
    }

    /// A file whose content is split into blobs of `blob_size` bytes.
    pub fn file_chunked(&self, name: &[u8], data: &[u8], blob_size: usize) -> Node {
        let mut n = Node::new(name.to_vec(), NodeType::File);
        Self::stamp(&mut n, 0o644);
        let mut content = Vec::new();
        for chunk in data.chunks(blob_size.max(1)) {
            content.push(
                self.saver
                    .save(BlobType::Data, chunk)
                    .expect("save blob")
                    .id,
            );
        }
        n.size = data.len() as u64;
        n.content = Some(content);
        n
    }

    pub fn file(&self, name: &[u8], data: &[u8]) -> Node {
        self.file_chunked(name, data, 64 * 1024)
    }

    pub fn symlink(&self, name: &[u8], target: &[u8]) -> Node {
        let mut n = Node::new(name.to_vec(), NodeType::Symlink);
        Self::stamp(&mut n, MODE_SYMLINK | 0o777);
        n.link_target = target.to_vec();
        n
    }

    /// A directory holding `children` (stored in the given order; sorted
    /// unless there are duplicate names).
    pub fn dir(&self, name: &[u8], children: Vec<Node>) -> Node {
        let mut n = Node::new(name.to_vec(), NodeType::Dir);
        Self::stamp(&mut n, MODE_DIR | 0o755);
        n.subtree = Some(self.tree(children));
        n
    }

    pub fn tree(&self, children: Vec<Node>) -> TreeId {
        let tree = Tree { nodes: children };
        self.saver
            .save(BlobType::Tree, &tree.to_bytes())
            .expect("save tree")
            .id
    }

    /// Finish the blobs and write a snapshot of `children` as its root tree.
    pub fn snapshot(&self, children: Vec<Node>) -> SnapshotEntry {
        let root = self.tree(children);
        self.saver.finish().expect("finish saver");
        let snap = Snapshot::new(time(1_700_000_000, 0), root, vec!["/".to_string()]);
        let id = snapshots::save(&self.repo, &snap).expect("save snapshot");
        SnapshotEntry { id, snapshot: snap }
    }
}

/// Every path below `dir` (relative, sorted), with file contents.
pub fn listing(dir: &Path) -> Vec<(String, Option<Vec<u8>>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read dir") {
            let e = e.expect("dir entry");
            let p = e.path();
            let rel = p
                .strip_prefix(dir)
                .expect("below dir")
                .to_string_lossy()
                .into_owned();
            let ft = e.file_type().expect("file type");
            if ft.is_dir() {
                stack.push(p.clone());
                out.push((rel, None));
            } else if ft.is_file() {
                out.push((rel, Some(std::fs::read(&p).expect("read"))));
            } else {
                out.push((rel, None));
            }
        }
    }
    out.sort();
    out
}
