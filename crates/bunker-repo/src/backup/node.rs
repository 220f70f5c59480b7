//! Tree nodes from file-system metadata, exactly as restic fills them, and
//! the change detection against a parent snapshot's node.

use bunker_format::node::{go_mode_from_unix, ExtendedAttribute, Node, NodeType};
use bunker_sources::{FileKind, FsMeta};
use chrono::{DateTime, FixedOffset, Local, TimeZone};

/// A timestamp `(seconds, nanoseconds)` since the epoch in the local time
/// zone (as Go's `time.Unix` does, so the JSON shows the local offset).
pub fn local_time((secs, nanos): (i64, u32)) -> DateTime<FixedOffset> {
    match Local.timestamp_opt(secs, nanos) {
        chrono::LocalResult::Single(t) | chrono::LocalResult::Ambiguous(t, _) => t.fixed_offset(),
        chrono::LocalResult::None => DateTime::from_timestamp(secs, nanos)
            .unwrap_or_default()
            .fixed_offset(),
    }
}

fn node_type(kind: FileKind) -> NodeType {
    match kind {
        FileKind::File => NodeType::File,
        FileKind::Dir => NodeType::Dir,
        FileKind::Symlink => NodeType::Symlink,
        FileKind::BlockDev => NodeType::Dev,
        FileKind::CharDev => NodeType::CharDev,
        FileKind::Fifo => NodeType::Fifo,
        FileKind::Socket => NodeType::Socket,
    }
}

/// Build the node restic would store for this metadata (content and subtree
/// are left for the caller). As restic without `--with-atime`, the access
/// time is the modification time, so that reading files does not change
/// their directory's tree.
pub fn node_from_meta(name: &[u8], meta: &FsMeta) -> Node {
    let mtime = local_time(meta.mtime);
    let mut node = Node::new(name, node_type(meta.kind));
    node.mode = go_mode_from_unix(meta.mode);
    node.mtime = mtime;
    node.atime = mtime;
    node.ctime = local_time(meta.ctime);
    node.uid = meta.uid;
    node.gid = meta.gid;
    node.user = meta.user.clone().unwrap_or_default();
    node.group = meta.group.clone().unwrap_or_default();
    node.inode = meta.inode;
    node.device_id = meta.dev;
    match meta.kind {
        FileKind::File => {
            node.size = meta.size;
            node.links = meta.nlink;
            node.content = Some(Vec::new());
        }
        FileKind::Symlink => {
            node.links = meta.nlink;
            node.link_target = meta.link_target.clone().unwrap_or_default();
        }
        FileKind::BlockDev | FileKind::CharDev => {
            node.links = meta.nlink;
            node.device = meta.rdev;
        }
        FileKind::Dir | FileKind::Fifo | FileKind::Socket => {}
    }
    node.extended_attributes = meta
        .xattrs
        .iter()
        .map(|(name, value)| ExtendedAttribute {
            name: String::from_utf8_lossy(name).into_owned(),
            value: value.clone(),
        })
        .collect();
    node
}

/// Whether `t` is exactly the instant `(seconds, nanoseconds)` (the offset
/// does not matter; cheaper than converting to local time first).
fn same_instant(t: &DateTime<FixedOffset>, (secs, nanos): (i64, u32)) -> bool {
    t.timestamp() == secs && t.timestamp_subsec_nanos() == nanos
}

/// Whether the parent's node proves that the item has no extended
/// attributes now, so listing them can be skipped: the parent stored none,
/// and type, inode, mtime, ctime (and size for files) are unchanged. Setting
/// or removing an xattr updates the ctime, so an unchanged ctime means
/// unchanged xattrs. (restic lists them for every item; on an unchanged
/// kernel tree this saves 84k `llistxattr` calls.)
pub fn no_xattrs_since(meta: &FsMeta, prev: &Node) -> bool {
    prev.extended_attributes.is_empty()
        && prev.node_type == node_type(meta.kind)
        && prev.inode == meta.inode
        && (meta.kind != FileKind::File || prev.size == meta.size)
        && same_instant(&prev.ctime, meta.ctime)
        && same_instant(&prev.mtime, meta.mtime)
}

/// restic's `fileChanged`, negated: whether a regular file with `meta` is
/// the same as the parent's node at the same path, so its content need not
/// be read again.
pub fn file_unchanged(meta: &FsMeta, prev: &Node, ignore_ctime: bool, ignore_inode: bool) -> bool {
    meta.kind == FileKind::File
        && prev.node_type == NodeType::File
        && prev.size == meta.size
        && same_instant(&prev.mtime, meta.mtime)
        && (ignore_ctime || same_instant(&prev.ctime, meta.ctime))
        && (ignore_inode || prev.inode == meta.inode)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bunker_format::node::{MODE_DIR, MODE_NAMED_PIPE, MODE_SYMLINK};
    use bunker_sources::lstat_meta;

    #[test]
    fn nodes_per_kind() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, b"12345").unwrap();
        let meta = lstat_meta(&f, false).unwrap();
        let n = node_from_meta(b"f", &meta);
        assert_eq!(n.node_type, NodeType::File);
        assert_eq!((n.size, n.links), (5, 1));
        assert_eq!(n.mode & 0o777, meta.mode & 0o777);
        assert_eq!(n.content, Some(vec![]));
        assert_eq!(n.atime, n.mtime);
        assert_eq!(n.mtime.timestamp(), meta.mtime.0);
        assert_eq!(n.mtime.timestamp_subsec_nanos(), meta.mtime.1);
        assert_eq!(n.inode, meta.inode);

        let l = dir.path().join("l");
        std::os::unix::fs::symlink("f", &l).unwrap();
        let n = node_from_meta(b"l", &lstat_meta(&l, false).unwrap());
        assert_eq!(n.node_type, NodeType::Symlink);
        assert_ne!(n.mode & MODE_SYMLINK, 0);
        assert_eq!(n.link_target, b"f");
        assert_eq!((n.size, n.content), (0, None));

        let d = node_from_meta(b"d", &lstat_meta(dir.path(), false).unwrap());
        assert_eq!(d.node_type, NodeType::Dir);
        assert_ne!(d.mode & MODE_DIR, 0);
        assert_eq!((d.size, d.links), (0, 0));

        let p = dir.path().join("p");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &p,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let n = node_from_meta(b"p", &lstat_meta(&p, false).unwrap());
        assert_eq!(n.node_type, NodeType::Fifo);
        assert_ne!(n.mode & MODE_NAMED_PIPE, 0);
    }

    #[test]
    fn xattr_listing_skipped_only_when_provably_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, b"abc").unwrap();
        let meta = lstat_meta(&f, false).unwrap();
        let prev = node_from_meta(b"f", &meta);
        assert!(no_xattrs_since(&meta, &prev));
        let d = lstat_meta(dir.path(), false).unwrap();
        assert!(no_xattrs_since(&d, &node_from_meta(b"d", &d)));

        let mut other = prev.clone();
        other.extended_attributes.push(ExtendedAttribute {
            name: "user.a".into(),
            value: b"1".to_vec(),
        });
        assert!(!no_xattrs_since(&meta, &other));
        let mut other = prev.clone();
        other.ctime = local_time((meta.ctime.0, meta.ctime.1.wrapping_add(1) % 1_000_000_000));
        assert!(!no_xattrs_since(&meta, &other));
        let mut other = prev.clone();
        other.mtime = local_time((meta.mtime.0 + 1, meta.mtime.1));
        assert!(!no_xattrs_since(&meta, &other));
        let mut other = prev.clone();
        other.inode += 1;
        assert!(!no_xattrs_since(&meta, &other));
        let mut other = prev.clone();
        other.size += 1;
        assert!(!no_xattrs_since(&meta, &other));
        let mut other = prev;
        other.node_type = NodeType::Symlink;
        assert!(!no_xattrs_since(&meta, &other));
    }

    #[test]
    fn change_detection() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, b"abc").unwrap();
        let meta = lstat_meta(&f, false).unwrap();
        let prev = node_from_meta(b"f", &meta);
        assert!(file_unchanged(&meta, &prev, false, false));

        let mut other = prev.clone();
        other.size = 4;
        assert!(!file_unchanged(&meta, &other, true, true));
        let mut other = prev.clone();
        other.mtime = local_time((meta.mtime.0, meta.mtime.1.wrapping_add(1) % 1_000_000_000));
        assert!(!file_unchanged(&meta, &other, true, true));
        let mut other = prev.clone();
        other.ctime = local_time((meta.ctime.0 - 10, 0));
        assert!(!file_unchanged(&meta, &other, false, false));
        assert!(file_unchanged(&meta, &other, true, false));
        let mut other = prev.clone();
        other.inode += 1;
        assert!(!file_unchanged(&meta, &other, false, false));
        assert!(file_unchanged(&meta, &other, false, true));
        let mut other = prev.clone();
        other.node_type = NodeType::Symlink;
        assert!(!file_unchanged(&meta, &other, true, true));
        // The same instant in another offset is the same time.
        let mut other = prev;
        other.mtime = other
            .mtime
            .with_timezone(&chrono::FixedOffset::east_opt(3600).unwrap());
        assert!(file_unchanged(&meta, &other, false, false));
    }
}
