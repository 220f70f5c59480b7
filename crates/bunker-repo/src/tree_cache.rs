//! A local cache of tree packs, for repositories on remote storage.
//!
//! Every backup loads the parent snapshot's trees, and restore, `ls`, `diff`
//! and `check` walk trees too: on object storage each tree blob is a small
//! ranged GET, and thousands of them in sequence are bound by the service's
//! latency. Like restic's cache, the first read of a tree blob from a pack
//! downloads the whole pack (tree packs hold only trees, so they are a small
//! part of the repository) into `<cache dir>/<repository id>/packs/`, and
//! later reads are served from that file. Tree packs that this process
//! uploads (backup, copy) are put there as they are written, so the next
//! backup finds its parent's trees without downloading them.
//!
//! The cache is never trusted: a pack file is stored only when its bytes hash
//! to its name, and every blob read from it is still checked against its id
//! by the caller; a damaged cached pack is removed and the blob read from the
//! repository again (see `Repository::read_blob`). Packs are written under a
//! temporary name and renamed, so a crash never leaves a partial file under a
//! pack's name. Cached packs that the index no longer names are removed when
//! the index is loaded.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bunker_format::Id;
use bunker_storage::{DynStorage, FileType};

use crate::error::{RepoError, Result};

/// The pack cache of one repository.
#[derive(Debug)]
pub struct TreeCache {
    dir: PathBuf,
    /// Whether packs this process writes are added (not for dry runs, whose
    /// packs never reach the repository).
    new_packs: bool,
}

impl TreeCache {
    /// The cache of repository `repo_id` below `root` (created on first use).
    pub fn new(root: &Path, repo_id: &str) -> TreeCache {
        TreeCache {
            dir: root.join(repo_id).join("packs"),
            new_packs: true,
        }
    }

    /// The same cache, but packs written through it are not added (for a
    /// dry-run view of the repository).
    pub fn without_new_packs(mut self) -> TreeCache {
        self.new_packs = false;
        self
    }

    /// Add a tree pack that was just written to the repository under the
    /// name `pack` (its id: the SHA-256 of `bytes`, by construction). Best
    /// effort: a cache that cannot be written only costs speed.
    pub fn insert_new(&self, pack: &str, bytes: &[u8]) {
        if !self.new_packs {
            return;
        }
        let path = self.path(pack);
        if path.exists() {
            return;
        }
        if let Err(e) = self.store(pack, &path, bytes) {
            tracing::debug!("tree cache: not storing new pack {pack}: {e}");
        }
    }

    /// Where the cached copy of `pack` lives.
    fn path(&self, pack: &str) -> PathBuf {
        self.dir.join(pack.get(..2).unwrap_or("xx")).join(pack)
    }

    /// `length` bytes at `offset` of `pack`, from the cache, or after
    /// downloading the whole pack into it. Returns whether the bytes came from
    /// an existing cached copy (so the caller can drop it when they are bad).
    pub fn read_range(
        &self,
        storage: &DynStorage,
        pack: &str,
        offset: u64,
        length: u64,
    ) -> Result<(Vec<u8>, bool)> {
        let path = self.path(pack);
        if let Ok(f) = File::open(&path) {
            let mut buf = vec![0u8; usize::try_from(length).unwrap_or(usize::MAX)];
            if f.read_exact_at(&mut buf, offset).is_ok() {
                return Ok((buf, true));
            }
            // Shorter than the index says: not a copy of this pack.
            self.forget(pack);
        }
        let whole = storage.read(FileType::Pack, pack)?;
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        let end = start.saturating_add(usize::try_from(length).unwrap_or(usize::MAX));
        let range = whole
            .get(start..end)
            .ok_or_else(|| RepoError::DamagedPack {
                pack: pack.to_string(),
                msg: format!(
                    "pack is {} bytes, the index names bytes {start}..{end}",
                    whole.len()
                ),
            })?
            .to_vec();
        if Id::hash(&whole).to_hex() == pack {
            // Best effort: a cache that cannot be written only costs speed.
            if let Err(e) = self.store(pack, &path, &whole) {
                tracing::debug!("tree cache: not storing pack {pack}: {e}");
            }
        }
        Ok((range, false))
    }

    fn store(&self, pack: &str, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
        let dir = path.parent().unwrap_or(&self.dir);
        fs::create_dir_all(dir)?;
        let tmp = dir.join(format!(".{pack}.{}.tmp", std::process::id()));
        let mut f = File::create(&tmp)?;
        let written = f.write_all(bytes).and_then(|()| fs::rename(&tmp, path));
        if written.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        written
    }

    /// Drop the cached copy of `pack` (it was found damaged).
    pub fn forget(&self, pack: &str) {
        let _ = fs::remove_file(self.path(pack));
    }

    /// Remove cached packs that are not in `live` (pack ids in hex), and
    /// leftover temporary files. Best effort.
    pub fn retain(&self, live: &HashSet<String>) {
        // `packs/`'s parent is this repository's cache directory.
        if let Some(repo_dir) = self.dir.parent() {
            crate::cache::touch(repo_dir);
        }
        let Ok(dirs) = fs::read_dir(&self.dir) else {
            return;
        };
        for d in dirs.flatten() {
            let Ok(files) = fs::read_dir(d.path()) else {
                continue;
            };
            for f in files.flatten() {
                let name = f.file_name().to_string_lossy().into_owned();
                if !live.contains(&name) {
                    let _ = fs::remove_file(f.path());
                }
            }
        }
    }
}

/// The default cache directory: `$BUNKER_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/bunker`, else `$HOME/.cache/bunker`.
pub fn default_cache_root() -> Option<PathBuf> {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    env("BUNKER_CACHE_DIR")
        .or_else(|| env("XDG_CACHE_HOME").map(|d| d.join("bunker")))
        .or_else(|| env("HOME").map(|d| d.join(".cache").join("bunker")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn empty_storage(dir: &Path) -> DynStorage {
        let storage = bunker_storage::open(&dir.to_string_lossy(), &[]).expect("open");
        storage.create().expect("create");
        storage
    }

    fn storage_with(dir: &Path, content: &[u8]) -> (DynStorage, String) {
        let storage = empty_storage(dir);
        let name = Id::hash(content).to_hex();
        storage
            .write_new(FileType::Pack, &name, Bytes::copy_from_slice(content))
            .expect("write");
        (storage, name)
    }

    #[test]
    fn second_read_comes_from_the_cache_and_damage_is_dropped() {
        let repo_dir = tempfile::tempdir().expect("tempdir");
        let cache_dir = tempfile::tempdir().expect("tempdir");
        let content: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
        let (storage, pack) = storage_with(repo_dir.path(), &content);
        let cache = TreeCache::new(cache_dir.path(), "repo");

        let (first, cached) = cache.read_range(&storage, &pack, 100, 50).expect("read");
        assert_eq!(first, &content[100..150]);
        assert!(!cached, "the first read downloads");
        storage.remove(FileType::Pack, &pack).expect("remove");
        let (second, cached) = cache.read_range(&storage, &pack, 4000, 1000).expect("read");
        assert_eq!(second, &content[4000..5000]);
        assert!(cached, "the second read is served locally");

        // Out of range for the cached copy: dropped, then the (now missing)
        // pack is read from storage, which fails cleanly.
        assert!(cache.read_range(&storage, &pack, 4990, 100).is_err());
        assert!(!cache.path(&pack).exists());

        // retain() removes packs the index no longer names.
        let (storage, pack) = storage_with(repo_dir.path(), b"other pack");
        cache.read_range(&storage, &pack, 0, 5).expect("read");
        assert!(cache.path(&pack).exists());
        cache.retain(&HashSet::new());
        assert!(!cache.path(&pack).exists());
    }

    #[test]
    fn new_packs_are_served_from_the_cache_except_in_dry_run_views() {
        let repo_dir = tempfile::tempdir().expect("tempdir");
        let cache_dir = tempfile::tempdir().expect("tempdir");
        let storage = empty_storage(repo_dir.path());
        let content = b"a new tree pack".to_vec();
        let pack = Id::hash(&content).to_hex();

        let dry = TreeCache::new(cache_dir.path(), "repo").without_new_packs();
        dry.insert_new(&pack, &content);
        assert!(!dry.path(&pack).exists(), "a dry run adds nothing");

        // Not in the storage at all: only the cache can answer.
        let cache = TreeCache::new(cache_dir.path(), "repo");
        cache.insert_new(&pack, &content);
        let (got, cached) = cache.read_range(&storage, &pack, 2, 3).expect("read");
        assert_eq!((got.as_slice(), cached), (&b"new"[..], true));
    }

    #[test]
    fn a_pack_that_does_not_match_its_name_is_not_cached() {
        let repo_dir = tempfile::tempdir().expect("tempdir");
        let cache_dir = tempfile::tempdir().expect("tempdir");
        let storage = empty_storage(repo_dir.path());
        let name = Id::hash(b"expected").to_hex();
        storage
            .write_new(FileType::Pack, &name, Bytes::from_static(b"something else"))
            .expect("write");
        let cache = TreeCache::new(cache_dir.path(), "repo");
        let (got, _) = cache.read_range(&storage, &name, 0, 4).expect("read");
        assert_eq!(got, b"some");
        assert!(!cache.path(&name).exists());
    }
}
