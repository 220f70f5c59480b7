//! Verifying a restored tree against its snapshot: every node exists with
//! its type; regular files have the snapshot's size, permission bits,
//! modification time and content (each chunk read back and hashed against
//! the id of its blob in the repository); directories their permission
//! bits; symlinks their target. Nothing is written.

use std::ffi::OsStr;
use std::fs::File;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use bunker_format::node::{Node, NodeType};
use bunker_format::{Id, TreeId};
use bunker_repo::walk::{walk_tree, WalkAction};
use bunker_repo::Repository;
use bunker_sources::CancelToken;
use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Result};

/// At most this many mismatches are named (all are counted).
pub const MAX_NAMED: usize = 50;

/// What the verification found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifySummary {
    /// Regular files verified (content included).
    pub files: u64,
    /// Directories verified.
    pub dirs: u64,
    /// Other entries verified (symlinks, special files).
    pub other: u64,
    /// Content bytes read back and hashed.
    pub bytes: u64,
    /// How many entries differ from the snapshot.
    pub mismatch_count: u64,
    /// The first [`MAX_NAMED`]: `path: what differs`.
    pub mismatches: Vec<String>,
}

impl VerifySummary {
    fn mismatch(&mut self, path: &[u8], what: String) {
        self.mismatch_count += 1;
        if self.mismatches.len() < MAX_NAMED {
            self.mismatches
                .push(format!("{}: {what}", String::from_utf8_lossy(path)));
        }
    }
}

/// Compare the tree `tree` of `repo` with its restore below `root`. The
/// repository's index must be loaded.
pub fn verify_tree(
    repo: &Repository,
    tree: &TreeId,
    root: &Path,
    cancel: &CancelToken,
) -> Result<VerifySummary> {
    let mut s = VerifySummary::default();
    let mut buf = Vec::new();
    walk_tree(repo, tree, &mut |path, node| {
        if cancel.is_cancelled() {
            return Err(bunker_repo::RepoError::Cancelled);
        }
        let rel = path.strip_prefix(b"/").unwrap_or(path);
        let disk = root.join(OsStr::from_bytes(rel));
        check_node(repo, node, path, &disk, &mut s, &mut buf);
        Ok(WalkAction::Continue)
    })
    .map_err(|e| {
        if matches!(e, bunker_repo::RepoError::Cancelled) {
            EngineError::Cancelled
        } else {
            EngineError::failed("reading the snapshot's trees", e)
        }
    })?;
    Ok(s)
}

fn check_node(
    repo: &Repository,
    node: &Node,
    path: &[u8],
    disk: &Path,
    s: &mut VerifySummary,
    buf: &mut Vec<u8>,
) {
    let meta = match std::fs::symlink_metadata(disk) {
        Ok(m) => m,
        Err(e) => return s.mismatch(path, format!("missing ({e})")),
    };
    let ft = meta.file_type();
    let perm = meta.mode() & 0o7777;
    match node.node_type {
        NodeType::File => {
            if !ft.is_file() {
                return s.mismatch(path, "not a regular file".into());
            }
            if meta.len() != node.size {
                return s.mismatch(
                    path,
                    format!("size {} instead of {}", meta.len(), node.size),
                );
            }
            if perm != node.unix_perm() {
                s.mismatch(
                    path,
                    format!("mode {perm:o} instead of {:o}", node.unix_perm()),
                );
            }
            let (sec, nsec) = (node.mtime.timestamp(), node.mtime.timestamp_subsec_nanos());
            if meta.mtime() != sec || meta.mtime_nsec() != i64::from(nsec) {
                s.mismatch(path, "modification time differs".into());
            }
            match check_content(repo, node, disk, buf) {
                Ok(n) => {
                    s.files += 1;
                    s.bytes += n;
                }
                Err(what) => s.mismatch(path, what),
            }
        }
        NodeType::Dir => {
            if !ft.is_dir() {
                return s.mismatch(path, "not a directory".into());
            }
            if perm != node.unix_perm() {
                s.mismatch(
                    path,
                    format!("mode {perm:o} instead of {:o}", node.unix_perm()),
                );
            }
            s.dirs += 1;
        }
        NodeType::Symlink => match std::fs::read_link(disk) {
            Ok(t) if t.as_os_str().as_bytes() == node.link_target.as_slice() => s.other += 1,
            Ok(_) => s.mismatch(path, "symlink target differs".into()),
            Err(_) => s.mismatch(path, "not a symlink".into()),
        },
        _ => s.other += 1,
    }
}

/// Read the file back blob by blob and hash each chunk; the bytes read.
fn check_content(
    repo: &Repository,
    node: &Node,
    disk: &Path,
    buf: &mut Vec<u8>,
) -> std::result::Result<u64, String> {
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc_nofollow())
        .open(disk)
        .map_err(|e| format!("cannot open: {e}"))?;
    let mut total = 0u64;
    for id in node.content.as_deref().unwrap_or_default() {
        let entry = repo
            .lookup(id)
            .ok_or_else(|| format!("blob {} is not in the index", id.id().short()))?;
        buf.resize(entry.plain_len() as usize, 0);
        f.read_exact(buf)
            .map_err(|e| format!("content ends early at byte {total}: {e}"))?;
        if Id::hash(buf) != id.id() {
            return Err(format!(
                "content at byte {total} does not match blob {}",
                id.id().short()
            ));
        }
        total += buf.len() as u64;
    }
    let mut extra = [0u8; 1];
    if matches!(read_some(&mut f, &mut extra), Ok(n) if n > 0) {
        return Err("longer than in the snapshot".into());
    }
    Ok(total)
}

fn read_some(f: &mut File, b: &mut [u8]) -> std::io::Result<usize> {
    f.read(b)
}

/// `O_NOFOLLOW`: a restored file is never read through a symlink.
fn libc_nofollow() -> i32 {
    rustix::fs::OFlags::NOFOLLOW.bits() as i32
}

#[cfg(test)]
mod tests {
    use super::*;
    use bunker_repo::backup::{backup, BackupOptions};
    use bunker_repo::progress::NoProgress;
    use bunker_repo::restore::{restore, RestoreOptions};
    use bunker_repo::snapshots;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn verification_finds_changed_content_mode_and_missing_files() {
        let d = tempfile::tempdir().unwrap();
        let storage = bunker_storage::open(&d.path().join("repo").to_string_lossy(), &[]).unwrap();
        let repo = Repository::init(
            storage,
            b"pw",
            bunker_repo::RepoOptions::default(),
            bunker_format::keyfile::KdfParams {
                n: 1024,
                r: 8,
                p: 1,
            },
        )
        .unwrap();
        let src = d.path().join("src");
        std::fs::create_dir_all(src.join("sub")).unwrap();
        std::fs::write(src.join("a"), b"hello world").unwrap();
        std::fs::write(src.join("sub/b"), vec![7u8; 100_000]).unwrap();
        std::fs::write(src.join("sub/c"), b"c").unwrap();
        let opts = BackupOptions {
            paths: vec![src.clone()],
            ..Default::default()
        };
        backup(&repo, opts, &NoProgress).unwrap();
        repo.load_index().unwrap();
        let snap = snapshots::find(&repo, "latest", &Default::default()).unwrap();
        let root = d.path().join("restored");
        let ropts = RestoreOptions {
            target: root.clone(),
            ..Default::default()
        };
        let sum = restore(&repo, &snap, &ropts, &NoProgress).unwrap();
        assert!(sum.errors.is_empty());
        let cancel = CancelToken::new();
        let ok = verify_tree(&repo, &snap.snapshot.tree, &root, &cancel).unwrap();
        assert_eq!(ok.mismatch_count, 0, "{ok:?}");
        assert_eq!(ok.files, 3);
        assert!(ok.bytes >= 100_000);

        // Same size, other content; another mode; a missing file.
        let under = root.join(src.strip_prefix("/").unwrap());
        let a = under.join("a");
        let mtime = filetime_of(&a);
        std::fs::write(&a, b"HELLO WORLD").unwrap();
        set_mtime(&a, mtime);
        std::fs::set_permissions(under.join("sub/b"), std::fs::Permissions::from_mode(0o600))
            .unwrap();
        std::fs::remove_file(under.join("sub/c")).unwrap();
        let bad = verify_tree(&repo, &snap.snapshot.tree, &root, &cancel).unwrap();
        assert_eq!(bad.mismatch_count, 3, "{bad:?}");
        let text = bad.mismatches.join("\n");
        assert!(
            text.contains("/a: content at byte 0 does not match"),
            "{text}"
        );
        assert!(text.contains("/sub/b: mode 600"), "{text}");
        assert!(text.contains("/sub/c: missing"), "{text}");

        cancel.cancel();
        assert!(matches!(
            verify_tree(&repo, &snap.snapshot.tree, &root, &cancel),
            Err(EngineError::Cancelled)
        ));
    }

    fn filetime_of(p: &Path) -> std::time::SystemTime {
        std::fs::metadata(p).unwrap().modified().unwrap()
    }

    fn set_mtime(p: &Path, t: std::time::SystemTime) {
        std::fs::File::options()
            .write(true)
            .open(p)
            .unwrap()
            .set_modified(t)
            .unwrap();
    }
}
