//! Creating the leaves of the tree: regular files (planned, compared with
//! what exists, queued for the batch writers), symlinks and special files.

use bunker_format::node::{Node, NodeType};
use bunker_sources::{FileKind, TargetDir};

use super::existing::{self, FileAction};
use super::files::FileJob;
use super::{is_exists, parts, restore_meta, CreateFn, Rel, Restorer, BATCH_BLOBS, BATCH_FILES};
use crate::error::RepoError;

impl Restorer<'_> {
    /// Create `rel` with `create`; an existing entry is skipped, or replaced
    /// with `overwrite`. Returns whether the entry was created.
    pub(super) fn create_leaf(
        &mut self,
        rel: &[Vec<u8>],
        display: &str,
        create: &CreateFn<'_>,
    ) -> bool {
        let Some(t) = self.target else { return true };
        let p = parts(rel);
        let res = match create(t, &p) {
            Err(e) if is_exists(&e) && self.opts.overwrite.replaces() => {
                t.remove(&p).and_then(|_| create(t, &p))
            }
            other => other,
        };
        match res {
            Ok(()) => true,
            Err(e) if is_exists(&e) => {
                self.skipped(display.to_string());
                false
            }
            Err(e) => {
                self.error(display.to_string(), e.to_string());
                false
            }
        }
    }

    fn restore_file(&mut self, rel: Vec<Vec<u8>>, display: String, node: &Node) {
        let content = node.content.clone().unwrap_or_default();
        let key = (node.device_id, node.inode);
        if node.links > 1 && node.inode != 0 {
            if let Some((first, first_content)) = self.hardlinks.get(&key) {
                if *first_content == content {
                    // Linked at the end: until its batch is done the first
                    // file exists only under a temporary name.
                    self.pending_links.push((first.clone(), rel, display));
                    return;
                }
            }
        }
        // Plan the contents before creating anything.
        let mut blobs = Vec::with_capacity(content.len());
        let mut size = 0u64;
        {
            let index = self.repo.index().read();
            for id in &content {
                match index.get(id) {
                    Some(e) if e.blob_type == bunker_format::BlobType::Data => {
                        blobs.push((*id, e, size));
                        size += u64::from(e.plain_len());
                    }
                    _ => {
                        drop(index);
                        let msg = RepoError::BlobNotFound {
                            blob: id.to_string(),
                        }
                        .to_string();
                        self.error(display, msg);
                        return;
                    }
                }
            }
        }
        self.queued.0 += 1;
        self.queued.1 += size;
        self.progress.current(&display);
        let Some(action) = self.file_action(&rel, &display, node, &blobs, size) else {
            return;
        };
        let remember_link = |r: &mut Self| {
            if node.links > 1 && node.inode != 0 {
                r.hardlinks
                    .entry(key)
                    .or_insert_with(|| (rel.clone(), content.clone()));
            }
        };
        match action {
            FileAction::SkipExisting => return self.skipped(display),
            FileAction::KeepNewer => {
                self.summary.kept_newer += 1;
                return;
            }
            FileAction::Unchanged => {
                if let (Some(t), false) = (self.target, self.opts.dry_run) {
                    if let Err(e) = t.apply_meta(&parts(&rel), &restore_meta(node), false) {
                        return self.error(display, e.to_string());
                    }
                }
                self.summary.unchanged += 1;
                remember_link(self);
                return;
            }
            FileAction::Create | FileAction::Replace => {}
        }
        if self.opts.dry_run {
            self.summary.files += 1;
            self.summary.bytes += size;
            return;
        }
        let Some(t) = self.target else { return };
        let (file, tmp) = match t.create_temp(&parts(&rel)) {
            Ok(v) => v,
            Err(e) => return self.error(display, e.to_string()),
        };
        remember_link(self);
        self.progress.set_total(self.queued.0, self.queued.1);
        self.batch_blobs += blobs.len();
        self.batch.push(FileJob {
            rel,
            display,
            file,
            tmp,
            replace: action == FileAction::Replace,
            blobs,
            size,
            meta: restore_meta(node),
        });
        if self.batch.len() >= BATCH_FILES || self.batch_blobs >= BATCH_BLOBS {
            self.flush();
        }
    }

    /// What to do with the file `node` at `rel` given what is there; `None`
    /// after an error (reported).
    fn file_action(
        &mut self,
        rel: &Rel,
        display: &str,
        node: &Node,
        blobs: &[(bunker_format::BlobId, crate::index::IndexEntry, u64)],
        size: u64,
    ) -> Option<FileAction> {
        let Some(t) = self.target else {
            return Some(FileAction::Create);
        };
        let p = parts(rel);
        let mut there = match t.stat(&p) {
            Ok(st) => st,
            Err(e) => {
                self.error(display.to_string(), e.to_string());
                return None;
            }
        };
        if there.is_some_and(|st| st.is_dir) && self.opts.overwrite.replaces() {
            // restic 0.17: with --delete a file of the snapshot replaces a
            // directory of the same name.
            if !self.opts.delete {
                let msg = "exists and is a directory (--delete replaces it)".to_string();
                self.error(display.to_string(), msg);
                return None;
            }
            if !self.opts.dry_run {
                if let Err(e) = t.remove_all(&p) {
                    self.error(display.to_string(), e.to_string());
                    return None;
                }
            }
            self.note_deleted(display.to_string());
            there = None;
        }
        Some(existing::file_action(
            t,
            &p,
            there,
            node,
            blobs,
            size,
            self.opts.overwrite,
        ))
    }

    pub(super) fn restore_leaf(&mut self, rel: Vec<Vec<u8>>, display: String, node: &Node) {
        let kind = match node.node_type {
            NodeType::File => return self.restore_file(rel, display, node),
            NodeType::Dir => {
                self.error(
                    display,
                    "internal error: directory restored as a leaf".into(),
                );
                return;
            }
            NodeType::Symlink => None,
            NodeType::Dev => Some(FileKind::BlockDev),
            NodeType::CharDev => Some(FileKind::CharDev),
            NodeType::Fifo => Some(FileKind::Fifo),
            NodeType::Socket => Some(FileKind::Socket),
            NodeType::Irregular => {
                self.error(display, "irregular files cannot be restored".into());
                return;
            }
        };
        if self.opts.dry_run {
            if t_exists(self.target, &rel) && !self.opts.overwrite.replaces() {
                self.skipped(display);
            } else if kind.is_none() {
                self.summary.links += 1;
            } else {
                self.summary.specials += 1;
            }
            return;
        }
        let mode = node.unix_perm();
        let (rdev, target_bytes) = (node.device, node.link_target.clone());
        let create = |t: &TargetDir, p: &[&[u8]]| match kind {
            None => t.symlink(p, &target_bytes),
            Some(k) => t.mknod(p, k, mode, rdev),
        };
        if !self.create_leaf(&rel, &display, &create) {
            return;
        }
        if kind.is_none() {
            self.summary.links += 1;
        } else {
            self.summary.specials += 1;
        }
        if let Some(t) = self.target {
            if let Err(e) = t.apply_meta(&parts(&rel), &restore_meta(node), kind.is_none()) {
                self.error(display, e.to_string());
            }
        }
    }
}

fn t_exists(t: Option<&TargetDir>, rel: &[Vec<u8>]) -> bool {
    t.is_some_and(|t| t.exists(&parts(rel)).unwrap_or(false))
}
