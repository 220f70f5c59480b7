//! `dump`: a file's bytes, or a directory as a tar stream (like restic's).
//!
//! Tar entry names are the paths in the snapshot without the leading `/`
//! (`home/a/x`), as restic writes them; a directory entry's children follow
//! it. Entries whose names are unsafe (`..`, containing `/` or NUL, empty) are
//! left out with a warning, so extracting our tar never escapes its
//! destination because of a hostile snapshot. File contents are streamed one
//! blob at a time, each verified against its id.

use std::ffi::OsStr;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use bunker_format::node::{Node, NodeType};
use bunker_format::{BlobId, BlobType};

use crate::error::{RepoError, Result};
use crate::snapshots::SnapshotEntry;
use crate::walk::{find_node, walk_tree_with, TreeVisitor, WalkAction};
use crate::Repository;

/// Streams a file's content blob by blob.
pub struct ContentReader<'a> {
    repo: &'a Repository,
    blobs: &'a [BlobId],
    next: usize,
    buf: Vec<u8>,
    pos: usize,
}

impl<'a> ContentReader<'a> {
    pub fn new(repo: &'a Repository, content: &'a [BlobId]) -> ContentReader<'a> {
        ContentReader {
            repo,
            blobs: content,
            next: 0,
            buf: Vec::new(),
            pos: 0,
        }
    }
}

impl Read for ContentReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos >= self.buf.len() {
            let Some(id) = self.blobs.get(self.next) else {
                return Ok(0);
            };
            self.next += 1;
            self.buf = self
                .repo
                .read_blob(BlobType::Data, id)
                .map_err(|e| io::Error::other(e.to_string()))?;
            self.pos = 0;
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Size of a file's content according to the index.
fn content_size(repo: &Repository, content: &[BlobId]) -> Result<u64> {
    let index = repo.index().read();
    content
        .iter()
        .try_fold(0u64, |acc, id| match index.get(id) {
            Some(e) => Ok(acc + u64::from(e.plain_len())),
            None => Err(RepoError::BlobNotFound {
                blob: id.to_string(),
            }),
        })
}

fn io_err(path: &[u8], e: io::Error) -> RepoError {
    RepoError::Io(format!("dump {}: {e}", String::from_utf8_lossy(path)))
}

/// Write the file at `path` (its bytes) or the directory at `path` (a tar
/// stream of everything below it; `/` is the whole snapshot) to `out`.
pub fn dump(
    repo: &Repository,
    snap: &SnapshotEntry,
    path: &str,
    out: &mut dyn Write,
) -> Result<()> {
    let root = snap.snapshot.tree;
    let node = find_node(repo, &root, path)?;
    let (tree, prefix) = match node {
        None => (root, b"/".to_vec()),
        Some(n) => match n.node_type {
            NodeType::File => {
                let mut r = ContentReader::new(repo, n.content.as_deref().unwrap_or_default());
                io::copy(&mut r, out).map_err(|e| io_err(path.as_bytes(), e))?;
                return Ok(());
            }
            NodeType::Dir => {
                let sub = n.subtree.ok_or_else(|| {
                    RepoError::Invalid(format!("directory {path:?} has no subtree"))
                })?;
                let mut prefix = Vec::new();
                for c in crate::walk::split_user_path(path)? {
                    prefix.push(b'/');
                    prefix.extend_from_slice(c);
                }
                (sub, prefix)
            }
            other => {
                return Err(RepoError::Invalid(format!(
                    "cannot dump {path:?}: it is a {other}, not a file or directory"
                )))
            }
        },
    };
    let mut tar = TarDump {
        repo,
        builder: tar::Builder::new(out),
    };
    walk_tree_with(repo, &tree, &prefix, &mut tar)?;
    tar.builder
        .finish()
        .map_err(|e| RepoError::Io(format!("dump: writing tar: {e}")))
}

struct TarDump<'a, 'w> {
    repo: &'a Repository,
    builder: tar::Builder<&'w mut dyn Write>,
}

fn header_for(node: &Node) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_mode(node.unix_perm());
    h.set_uid(u64::from(node.uid));
    h.set_gid(u64::from(node.gid));
    h.set_mtime(node.mtime.timestamp().max(0) as u64);
    // Over-long names only lose the symbolic owner; numeric ids stay.
    let _ = h.set_username(&node.user);
    let _ = h.set_groupname(&node.group);
    h.set_size(0);
    h
}

/// Linux `dev_t` encoding.
fn major_minor(dev: u64) -> (u32, u32) {
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    (major as u32, minor as u32)
}

impl TarDump<'_, '_> {
    fn entry(&mut self, path: &[u8], node: &Node) -> Result<()> {
        let name = Path::new(OsStr::from_bytes(path.strip_prefix(b"/").unwrap_or(path)));
        let mut h = header_for(node);
        let res = match node.node_type {
            NodeType::File => {
                let content = node.content.as_deref().unwrap_or_default();
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(content_size(self.repo, content)?);
                self.builder
                    .append_data(&mut h, name, ContentReader::new(self.repo, content))
            }
            NodeType::Dir => {
                h.set_entry_type(tar::EntryType::Directory);
                self.builder.append_data(&mut h, name, io::empty())
            }
            NodeType::Symlink => {
                h.set_entry_type(tar::EntryType::Symlink);
                let target = Path::new(OsStr::from_bytes(&node.link_target));
                self.builder.append_link(&mut h, name, target)
            }
            NodeType::Dev | NodeType::CharDev | NodeType::Fifo => {
                h.set_entry_type(match node.node_type {
                    NodeType::Dev => tar::EntryType::Block,
                    NodeType::CharDev => tar::EntryType::Char,
                    _ => tar::EntryType::Fifo,
                });
                let (ma, mi) = major_minor(node.device);
                h.set_device_major(ma).map_err(|e| io_err(path, e))?;
                h.set_device_minor(mi).map_err(|e| io_err(path, e))?;
                self.builder.append_data(&mut h, name, io::empty())
            }
            NodeType::Socket | NodeType::Irregular => {
                tracing::warn!(
                    "dump: {} is a {}; left out",
                    String::from_utf8_lossy(path),
                    node.node_type
                );
                return Ok(());
            }
        };
        res.map_err(|e| io_err(path, e))
    }
}

impl TreeVisitor for TarDump<'_, '_> {
    fn visit(&mut self, path: &[u8], node: &Node) -> Result<WalkAction> {
        if let Err(e) = bunker_sources::validate_name(&node.name) {
            tracing::warn!("dump: {}: {e}; left out", String::from_utf8_lossy(path));
            return Ok(WalkAction::SkipSubtree);
        }
        self.entry(path, node)?;
        Ok(WalkAction::Continue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linux_dev_numbers() {
        // makedev(8, 1) and makedev(259, 70000)
        assert_eq!(major_minor(0x801), (8, 1));
        let dev = ((259u64 & 0xfff) << 8) | ((70000u64 & 0xff) | ((70000u64 & !0xff) << 12));
        assert_eq!(major_minor(dev), (259, 70000));
    }
}
