//! `dump`: a file's bytes, or a directory as a tar stream, as restic's.
//!
//! The tar stream is byte for byte what `restic dump` writes for the same
//! snapshot ([`gotar`] follows Go's `archive/tar`): entry names are the
//! paths in the snapshot without the leading `/` (`home/a/x`, directories
//! ending in `/`), in depth-first order; files, directories and symlinks
//! only (fifos, devices and sockets are left out, as restic leaves them out
//! below the dumped directory); mtimes rounded to the second (half up), one
//! before 1970 or after 2242 in a PAX `mtime` record; extended attributes as
//! `SCHILY.xattr.NAME` PAX records and POSIX ACLs as `SCHILY.acl.access` /
//! `SCHILY.acl.default`.
//!
//! Entries whose names are unsafe (`..`, containing `/` or NUL, empty) are
//! left out with a warning and counted in the [`DumpReport`], so extracting
//! our tar never escapes its destination because of a hostile snapshot and
//! the caller can say that the archive is incomplete. File contents are
//! streamed one blob at a time, each verified against its id.

mod acl;
pub mod gotar;

use std::collections::BTreeMap;
use std::io::{self, Read, Write};

use bunker_format::node::{Node, NodeType, MODE_SETGID, MODE_SETUID, MODE_STICKY};
use bunker_format::{BlobId, BlobType};

use crate::error::{RepoError, Result};
use crate::snapshots::SnapshotEntry;
use crate::walk::{find_node, walk_tree_with, TreeVisitor, WalkAction};
use crate::Repository;
use gotar::{Header, TarWriter};
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

/// What a dump left out (each with a warning already logged).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DumpReport {
    /// Entries (or extended attributes) not in the archive, with the reason.
    pub left_out: Vec<String>,
}

/// Write the file at `path` (its bytes) or the directory at `path` (a tar
/// stream of everything below it; `/` is the whole snapshot) to `out`.
///
/// A `path` that is not in the snapshot is [`RepoError::PathNotInSnapshot`];
/// one that is neither a file nor a directory is
/// [`RepoError::WrongNodeType`] (restic's `dump` exits 2 for both).
pub fn dump(
    repo: &Repository,
    snap: &SnapshotEntry,
    path: &str,
    out: &mut dyn Write,
) -> Result<DumpReport> {
    let root = snap.snapshot.tree;
    let node = find_node(repo, &root, path)?;
    let (tree, prefix) = match node {
        None => (root, b"/".to_vec()),
        Some(n) => match n.node_type {
            NodeType::File => {
                let mut r = ContentReader::new(repo, n.content.as_deref().unwrap_or_default());
                io::copy(&mut r, out).map_err(|e| io_err(path.as_bytes(), e))?;
                return Ok(DumpReport::default());
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
                return Err(RepoError::WrongNodeType(format!(
                    "cannot dump {path:?}: it is a {other}, not a file or directory"
                )))
            }
        },
    };
    let mut tar = TarDump {
        repo,
        tar: TarWriter::new(out),
        report: DumpReport::default(),
    };
    walk_tree_with(repo, &tree, &prefix, &mut tar)?;
    tar.tar
        .finish()
        .map_err(|e| RepoError::Io(format!("dump: writing tar: {e}")))?;
    Ok(tar.report)
}

struct TarDump<'a, 'w> {
    repo: &'a Repository,
    tar: TarWriter<&'w mut dyn Write>,
    report: DumpReport,
}

/// Seconds of `node`'s mtime as Go's `Time.Round(time.Second)` gives them
/// (half a second rounds up, also before 1970); Go's zero time becomes 0.
pub fn rounded_mtime(node: &Node) -> i64 {
    const GO_ZERO: i64 = -62_135_596_800;
    let (secs, nanos) = (node.mtime.timestamp(), node.mtime.timestamp_subsec_nanos());
    if secs == GO_ZERO && nanos == 0 {
        return 0;
    }
    secs + i64::from(nanos >= 500_000_000)
}

/// restic's `tar.Header.Mode`: permissions plus setuid, setgid and sticky.
fn tar_mode(node: &Node) -> i64 {
    let mut m = i64::from(node.mode & 0o777);
    for (go, unix) in [
        (MODE_SETUID, 0o4000),
        (MODE_SETGID, 0o2000),
        (MODE_STICKY, 0o1000),
    ] {
        if node.mode & go != 0 {
            m |= unix;
        }
    }
    m
}

impl TarDump<'_, '_> {
    fn left_out(&mut self, what: String) {
        tracing::warn!("dump: {what}; left out of the archive");
        self.report.left_out.push(what);
    }

    /// restic's `parseXattrs`: each attribute as `SCHILY.xattr.NAME`, POSIX
    /// ACLs in their text form; attributes whose name cannot be a PAX key
    /// are left out (restic's dump would fail on them).
    fn records(&mut self, path: &[u8], node: &Node) -> BTreeMap<Vec<u8>, Vec<u8>> {
        let mut out = BTreeMap::new();
        for x in &node.extended_attributes {
            if x.name.starts_with("system.posix_acl_") {
                let text = acl::to_text(&x.value);
                if text.is_empty() {
                    continue;
                }
                if x.name.contains("system.posix_acl_access") {
                    out.insert(b"SCHILY.acl.access".to_vec(), text.into_bytes());
                } else if x.name.contains("system.posix_acl_default") {
                    out.insert(b"SCHILY.acl.default".to_vec(), text.into_bytes());
                }
                continue;
            }
            let key = format!("SCHILY.xattr.{}", x.name).into_bytes();
            if !gotar::valid_record_key(&key) {
                self.left_out(format!(
                    "{}: extended attribute {:?} (not a valid PAX record name)",
                    String::from_utf8_lossy(path),
                    x.name
                ));
                continue;
            }
            out.insert(key, x.value.clone());
        }
        out
    }

    fn entry(&mut self, path: &[u8], node: &Node) -> Result<()> {
        let (typeflag, size) = match node.node_type {
            NodeType::File => {
                let content = node.content.as_deref().unwrap_or_default();
                (gotar::TYPE_REG, content_size(self.repo, content)?)
            }
            NodeType::Dir => (gotar::TYPE_DIR, 0),
            NodeType::Symlink => (gotar::TYPE_SYMLINK, 0),
            // As restic: only files, directories and symlinks.
            _ => {
                tracing::debug!(
                    "dump: {} is a {}; not in a tar stream",
                    String::from_utf8_lossy(path),
                    node.node_type
                );
                return Ok(());
            }
        };
        let mut name = path.strip_prefix(b"/").unwrap_or(path).to_vec();
        if typeflag == gotar::TYPE_DIR {
            name.push(b'/');
        }
        let records = self.records(path, node);
        let h = Header {
            name,
            typeflag,
            linkname: if typeflag == gotar::TYPE_SYMLINK {
                node.link_target.clone()
            } else {
                Vec::new()
            },
            mode: tar_mode(node),
            uid: i64::from(node.uid),
            gid: i64::from(node.gid),
            size: i64::try_from(size).unwrap_or(i64::MAX),
            mtime: rounded_mtime(node),
            uname: node.user.as_bytes().to_vec(),
            gname: node.group.as_bytes().to_vec(),
            records,
        };
        self.tar.header(&h).map_err(|e| io_err(path, e))?;
        if typeflag == gotar::TYPE_REG {
            let content = node.content.as_deref().unwrap_or_default();
            let mut r = ContentReader::new(self.repo, content);
            let mut buf = vec![0u8; 1 << 16];
            loop {
                let n = r.read(&mut buf).map_err(|e| io_err(path, e))?;
                if n == 0 {
                    break;
                }
                self.tar.data(&buf[..n]).map_err(|e| io_err(path, e))?;
            }
        }
        Ok(())
    }
}

impl TreeVisitor for TarDump<'_, '_> {
    fn visit(&mut self, path: &[u8], node: &Node) -> Result<WalkAction> {
        if let Err(e) = bunker_sources::validate_name(&node.name) {
            self.left_out(format!("{}: {e}", String::from_utf8_lossy(path)));
            return Ok(WalkAction::SkipSubtree);
        }
        self.entry(path, node)?;
        Ok(WalkAction::Continue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bunker_format::node::MODE_DIR;

    fn node_at(secs: i64, nanos: u32) -> Node {
        let mut n = Node::new(b"x".to_vec(), NodeType::File);
        n.mtime = chrono::DateTime::from_timestamp(secs, nanos)
            .unwrap()
            .fixed_offset();
        n
    }

    #[test]
    fn mtimes_round_half_up_as_go_does() {
        assert_eq!(rounded_mtime(&node_at(10, 499_999_999)), 10);
        assert_eq!(rounded_mtime(&node_at(10, 500_000_000)), 11);
        // 1960-01-01T00:00:00.7Z is -315619200 + 0.7 s: rounds to -315619199.
        assert_eq!(
            rounded_mtime(&node_at(-315_619_200, 700_000_000)),
            -315_619_199
        );
        assert_eq!(rounded_mtime(&node_at(-1, 0)), -1);
        assert_eq!(rounded_mtime(&node_at(-62_135_596_800, 0)), 0);
    }

    #[test]
    fn special_mode_bits_as_restic_sets_them() {
        let mut n = node_at(0, 0);
        n.mode = 0o755 | MODE_SETUID | MODE_STICKY | MODE_DIR;
        assert_eq!(tar_mode(&n), 0o5755);
        n.mode = 0o640 | MODE_SETGID;
        assert_eq!(tar_mode(&n), 0o2640);
    }
}
