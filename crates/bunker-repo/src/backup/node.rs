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

/// restic's `fileChanged`, negated: whether a regular file with `meta` is
/// the same as the parent's node at the same path, so its content need not
/// be read again.
pub fn file_unchanged(meta: &FsMeta, prev: &Node, ignore_ctime: bool, ignore_inode: bool) -> bool {
    meta.kind == FileKind::File
        && prev.node_type == NodeType::File
        && prev.size == meta.size
        && prev.mtime == local_time(meta.mtime)
        && (ignore_ctime || prev.ctime == local_time(meta.ctime))
        && (ignore_inode || prev.inode == meta.inode)
}
