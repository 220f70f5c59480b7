//! `rewrite`: remove paths from existing snapshots (a leaked secret, a huge
//! file backed up by mistake).
//!
//! Each selected snapshot's tree is rewritten bottom-up without the excluded
//! nodes; only new tree blobs are written (file contents are untouched and
//! shared). Then a new snapshot document is written with `original` set to
//! the rewritten snapshot's id, and either tagged `rewrite` (the old snapshot
//! stays) or, with `forget`, the old snapshot is removed, as restic does.
//! Write order is packs, index, new snapshot, then removal of the old one,
//! so an interruption never loses a snapshot. The excluded data is freed by
//! a later `prune`.

use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;

use bunker_format::node::{NodeType, Tree};
use bunker_format::{BlobType, SnapshotId, TreeId};
use bunker_sources::{ExcludeOptions, Excluder};
use serde::Serialize;

use crate::error::{RepoError, Result};
use crate::packer::BlobSaver;
use crate::snapshots::{self, SnapshotEntry};
use crate::walk::join_path;
use crate::Repository;

/// The tag restic adds to rewritten snapshots that keep their original.
pub const REWRITE_TAG: &str = "rewrite";

/// What to remove, and what to do with the old snapshots.
#[derive(Clone, Debug, Default)]
pub struct RewriteOptions {
    /// `--exclude` patterns (restic syntax, matched on snapshot paths).
    pub excludes: Vec<String>,
    /// `--iexclude` patterns (case-insensitive).
    pub iexcludes: Vec<String>,
    /// Files of `--exclude` patterns.
    pub exclude_files: Vec<std::path::PathBuf>,
    /// Files of `--iexclude` patterns.
    pub iexclude_files: Vec<std::path::PathBuf>,
    /// Remove each rewritten snapshot's old version.
    pub forget: bool,
    /// Decide and report, write nothing.
    pub dry_run: bool,
}

/// What happened to one snapshot.
#[derive(Clone, Debug, Serialize)]
pub struct Rewritten {
    pub old: SnapshotId,
    /// Whether anything was excluded (a new snapshot is, or would be, saved).
    pub modified: bool,
    /// The new snapshot (`None` in a dry run or when nothing was excluded).
    pub new: Option<SnapshotId>,
    /// Paths removed (directories count once, not their contents).
    pub excluded: Vec<String>,
    /// Whether the old snapshot was (or, in a dry run, would be) removed.
    pub forgot_old: bool,
}

struct Rewriter<'a> {
    repo: &'a Repository,
    saver: Option<&'a BlobSaver>,
    excluder: &'a Excluder,
    /// Rewritten trees by (original tree, its path), with the paths removed
    /// below it: the same tree at another path may lose other nodes, so the
    /// path is part of the key.
    done: HashMap<(TreeId, Vec<u8>), (TreeId, Vec<String>)>,
    excluded: Vec<String>,
}

impl Rewriter<'_> {
    /// The id of `tree` (at `path`) without excluded nodes; writes new trees.
    fn tree(&mut self, tree_id: &TreeId, path: &[u8]) -> Result<TreeId> {
        if let Some((done, excluded)) = self.done.get(&(*tree_id, path.to_vec())) {
            self.excluded.extend(excluded.iter().cloned());
            return Ok(*done);
        }
        let first_excluded = self.excluded.len();
        let tree = self.repo.load_tree(tree_id)?;
        let mut out = Tree::new();
        let mut changed = false;
        for mut node in tree.nodes {
            let p = join_path(path, &node.name);
            if self
                .excluder
                .excluded_by_name(Path::new(std::ffi::OsStr::from_bytes(&p)))
            {
                self.excluded.push(String::from_utf8_lossy(&p).into_owned());
                changed = true;
                continue;
            }
            if let (NodeType::Dir, Some(sub)) = (node.node_type, node.subtree) {
                let new_sub = self.tree(&sub, &p)?;
                if new_sub != sub {
                    node.subtree = Some(new_sub);
                    changed = true;
                }
            }
            out.push(node);
        }
        let new_id = if changed {
            let (id, bytes) = out
                .encode()
                .map_err(|e| RepoError::format("tree", tree_id, e))?;
            if let Some(saver) = self.saver {
                saver.save_with_id(BlobType::Tree, id.id().into(), &bytes)?;
            }
            id
        } else {
            *tree_id
        };
        let excluded = self.excluded[first_excluded..].to_vec();
        self.done
            .insert((*tree_id, path.to_vec()), (new_id, excluded));
        Ok(new_id)
    }
}

/// Rewrite `targets` without the excluded paths. The caller holds a lock
/// (exclusive with `forget`) and has loaded the index.
pub fn rewrite(
    repo: &Arc<Repository>,
    targets: &[SnapshotEntry],
    opts: &RewriteOptions,
) -> Result<Vec<Rewritten>> {
    let excluder = Excluder::new(&ExcludeOptions {
        excludes: opts.excludes.clone(),
        iexcludes: opts.iexcludes.clone(),
        exclude_files: opts.exclude_files.clone(),
        iexclude_files: opts.iexclude_files.clone(),
        ..Default::default()
    })
    .map_err(|e| RepoError::Invalid(e.to_string()))?;
    if opts.excludes.is_empty()
        && opts.iexcludes.is_empty()
        && opts.exclude_files.is_empty()
        && opts.iexclude_files.is_empty()
    {
        return Err(RepoError::Invalid(
            "nothing to do: give --exclude, --iexclude, --exclude-file or --iexclude-file".into(),
        ));
    }
    let saver = (!opts.dry_run).then(|| BlobSaver::new(repo.clone()));
    let mut rw = Rewriter {
        repo,
        saver: saver.as_ref(),
        excluder: &excluder,
        done: HashMap::new(),
        excluded: Vec::new(),
    };
    let mut planned = Vec::new();
    for e in targets {
        rw.excluded.clear();
        let new_tree = rw.tree(&e.snapshot.tree, b"/")?;
        planned.push((e, new_tree, std::mem::take(&mut rw.excluded)));
    }
    // Every new tree is stored and indexed before any snapshot refers to it.
    if let Some(saver) = &saver {
        saver.finish()?;
    }
    let mut out = Vec::new();
    for (e, new_tree, excluded) in planned {
        let modified = new_tree != e.snapshot.tree;
        let mut r = Rewritten {
            old: e.id,
            modified,
            new: None,
            excluded,
            forgot_old: modified && opts.forget,
        };
        if modified && !opts.dry_run {
            let mut sn = e.snapshot.clone();
            sn.original = Some(e.id);
            sn.tree = new_tree;
            if opts.forget {
                r.new = Some(snapshots::replace(repo, &e.id, &sn)?);
            } else {
                if !sn.has_tag(REWRITE_TAG) {
                    sn.tags.push(REWRITE_TAG.to_string());
                }
                r.new = Some(snapshots::save(repo, &sn)?);
            }
        }
        out.push(r);
    }
    Ok(out)
}
