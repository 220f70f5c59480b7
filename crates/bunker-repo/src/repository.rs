//! Opening and initialising repositories; reading and writing unpacked files and blobs.

use std::sync::Arc;

use bunker_format::compression::Compression;
use bunker_format::config::RepoConfig;
use bunker_format::crypto::Key;
use bunker_format::keyfile::{KdfParams, KeyFile};
use bunker_format::{pack, unpacked, BlobId, BlobType, Id, KeyId};
use bunker_storage::{DynStorage, FileType};
use parking_lot::RwLock;
use serde::{de::DeserializeOwned, Serialize};

use crate::error::{RepoError, Result};
use crate::index::{IndexEntry, MasterIndex};
use crate::tree_cache::TreeCache;

/// Tunables that do not change the repository, only how we write to it.
#[derive(Clone, Debug)]
pub struct RepoOptions {
    pub compression: Compression,
    /// Target pack size in bytes (restic's default is 16 MiB).
    pub pack_size: u64,
    /// Parallel uploads.
    pub connections: usize,
    /// Index files for uploaded packs are written at least this often during
    /// long operations (so an interrupted backup or copy keeps its packs).
    pub index_flush_interval: std::time::Duration,
    /// Root of the local tree-pack cache ([`crate::tree_cache`]); `None`
    /// reads every tree blob from the storage.
    pub cache_dir: Option<std::path::PathBuf>,
    /// Commands that only read take no lock (restic's `--no-lock`); see
    /// [`crate::lock::RepoLock::acquire_read`]. Writers lock regardless.
    pub no_lock: bool,
}

impl Default for RepoOptions {
    fn default() -> Self {
        RepoOptions {
            compression: Compression::Auto,
            pack_size: 16 * 1024 * 1024,
            connections: 4,
            index_flush_interval: crate::packer::INDEX_FLUSH_INTERVAL,
            cache_dir: None,
            no_lock: false,
        }
    }
}

/// An opened repository: storage, master key, config and master index.
pub struct Repository {
    storage: DynStorage,
    key: Key,
    key_id: KeyId,
    config: RepoConfig,
    options: RepoOptions,
    index: RwLock<MasterIndex>,
    tree_cache: Option<TreeCache>,
}

impl std::fmt::Debug for Repository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repository")
            .field("location", &self.storage.location())
            .field("id", &self.config.id)
            .finish()
    }
}

fn hostname() -> String {
    gethostname::gethostname().to_string_lossy().into_owned()
}

fn username() -> String {
    uzers::get_current_username()
        .map(|u| u.to_string_lossy().into_owned())
        .unwrap_or_default()
}

impl Repository {
    /// Create a new version-2 repository with one key for `password`.
    ///
    /// Order: layout, key file, then config last, so a crash leaves no
    /// half-initialised repository that looks valid.
    pub fn init(
        storage: DynStorage,
        password: &[u8],
        options: RepoOptions,
        kdf: KdfParams,
    ) -> Result<Arc<Repository>> {
        if storage.stat(FileType::Config, "")?.is_some() {
            return Err(RepoError::AlreadyInitialized {
                location: storage.location(),
            });
        }
        storage.create()?;
        let key = Key::random();
        let keyfile = KeyFile::create(password, &key, kdf, &hostname(), &username())
            .map_err(|e| RepoError::format("key file", "new", e))?;
        let kbytes = keyfile
            .to_json_bytes()
            .map_err(|e| RepoError::format("key file", "new", e))?;
        let key_id = KeyId::from(Id::hash(&kbytes));
        storage.write_new(FileType::Key, &key_id.to_string(), kbytes.into())?;
        let config = RepoConfig::new_v2().map_err(|e| RepoError::format("config", "new", e))?;
        let json = serde_json::to_vec(&config).map_err(|e| RepoError::Invalid(e.to_string()))?;
        let enc = key.encrypt(&json);
        storage.write_new(FileType::Config, "", enc.into())?;
        let tree_cache = options
            .cache_dir
            .as_deref()
            .map(|root| TreeCache::new(root, &config.id));
        Ok(Arc::new(Repository {
            storage,
            key,
            key_id,
            config,
            options,
            index: RwLock::new(MasterIndex::default()),
            tree_cache,
        }))
    }

    /// Open an existing repository: find the key file the password opens,
    /// decrypt and validate the config. The index is not loaded; call
    /// [`Repository::load_index`].
    pub fn open(
        storage: DynStorage,
        password: &[u8],
        options: RepoOptions,
    ) -> Result<Arc<Repository>> {
        let cfg_bytes = match storage.read(FileType::Config, "") {
            Ok(b) => b,
            Err(e) if e.is_not_found() => {
                return Err(RepoError::NoRepository {
                    location: storage.location(),
                })
            }
            Err(e) => return Err(e.into()),
        };
        let (key, key_id) = Self::find_key(&storage, password)?;
        let json = key
            .decrypt(&cfg_bytes)
            .map_err(|e| RepoError::format("config", "", e))?;
        let config: RepoConfig = serde_json::from_slice(&json).map_err(|e| {
            RepoError::Invalid(format!(
                "config of {} is not valid JSON: {e}",
                storage.location()
            ))
        })?;
        config
            .validate()
            .map_err(|e| RepoError::format("config", "", e))?;
        let tree_cache = options
            .cache_dir
            .as_deref()
            .map(|root| TreeCache::new(root, &config.id));
        Ok(Arc::new(Repository {
            storage,
            key,
            key_id,
            config,
            options,
            index: RwLock::new(MasterIndex::default()),
            tree_cache,
        }))
    }

    fn find_key(storage: &DynStorage, password: &[u8]) -> Result<(Key, KeyId)> {
        let keys = storage.list(FileType::Key)?;
        if keys.is_empty() {
            return Err(RepoError::Invalid(format!(
                "repository at {} has no key files",
                storage.location()
            )));
        }
        let mut tried = 0;
        let mut damaged = Vec::new();
        for info in &keys {
            let bytes = storage.read(FileType::Key, &info.name)?;
            let kf = match KeyFile::from_json_bytes(&bytes) {
                Ok(kf) => kf,
                Err(e) => {
                    damaged.push(format!("keys/{}: {e}", info.name));
                    continue;
                }
            };
            if let Some(why) = kf.unusable() {
                damaged.push(format!("keys/{}: {why}", info.name));
                continue;
            }
            tried += 1;
            match kf.open(password) {
                Ok(key) => {
                    let id = Id::from_hex(&info.name)
                        .map_err(|e| RepoError::format("key file name", &info.name, e))?;
                    return Ok((key, KeyId::from(id)));
                }
                // A wrong password (or a damaged encrypted key: indistinguishable).
                Err(bunker_format::FormatError::Mac) => {}
                Err(e) => damaged.push(format!("keys/{}: {e}", info.name)),
            }
        }
        if tried == 0 {
            return Err(RepoError::DamagedKeys { damaged });
        }
        for d in &damaged {
            tracing::warn!("damaged key file skipped: {d}");
        }
        Err(RepoError::WrongPassword { tried })
    }

    pub fn storage(&self) -> &DynStorage {
        &self.storage
    }
    pub fn key(&self) -> &Key {
        &self.key
    }
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }
    pub fn config(&self) -> &RepoConfig {
        &self.config
    }
    pub fn options(&self) -> &RepoOptions {
        &self.options
    }
    pub fn index(&self) -> &RwLock<MasterIndex> {
        &self.index
    }

    /// A view of this repository whose writes are counted and dropped (for
    /// dry runs): same key, config and options, and a copy of the index so
    /// that deduplication sees what is stored but the real index is untouched.
    pub fn dry_run_view(&self) -> Arc<Repository> {
        let storage: DynStorage =
            Arc::new(bunker_storage::DryRunStorage::new(self.storage.clone()));
        Arc::new(Repository {
            storage,
            key: self.key.clone(),
            key_id: self.key_id,
            config: self.config.clone(),
            options: self.options.clone(),
            index: RwLock::new(self.index.read().clone()),
            // Reads only; the cache never writes to the repository, and the
            // packs of a dry run are never written, so they are not cached.
            tree_cache: self
                .options
                .cache_dir
                .as_deref()
                .map(|root| TreeCache::new(root, &self.config.id).without_new_packs()),
        })
    }

    /// Compression level to use for new blobs and files (`None` = off, or a v1 repository).
    pub fn zstd_level(&self) -> Option<i32> {
        if self.config.version < 2 {
            None
        } else {
            self.options.compression.zstd_level()
        }
    }

    pub(crate) fn unpacked_compression(&self) -> Compression {
        if self.config.version < 2 {
            Compression::Off
        } else {
            self.options.compression
        }
    }

    /// Load every index file into the master index (in parallel).
    pub fn load_index(&self) -> Result<()> {
        let files = self.storage.list(FileType::Index)?;
        let loaded = MasterIndex::load(self, &files)?;
        if let Some(cache) = &self.tree_cache {
            let live = loaded.packs().iter().map(|p| p.to_string()).collect();
            cache.retain(&live);
        }
        *self.index.write() = loaded;
        Ok(())
    }

    /// Read an unpacked file (index, snapshot, lock), check that its bytes hash
    /// to its name (not for locks, which are short-lived and only advisory),
    /// decrypt and decompress it; returns the JSON bytes.
    pub fn load_unpacked(&self, t: FileType, name: &str, what: &'static str) -> Result<Vec<u8>> {
        let bytes = self.storage.read(t, name)?;
        if t != FileType::Lock {
            let actual = Id::hash(&bytes);
            if actual.to_hex() != name {
                return Err(RepoError::format(
                    what,
                    name,
                    bunker_format::FormatError::HashMismatch {
                        expected: name.to_string(),
                        actual: actual.to_hex(),
                    },
                ));
            }
        }
        unpacked::decode(&self.key, &bytes).map_err(|e| RepoError::format(what, name, e))
    }

    /// Read and parse an unpacked JSON file (see [`Repository::load_unpacked`]).
    pub fn load_json<T: DeserializeOwned>(
        &self,
        t: FileType,
        name: &str,
        what: &'static str,
    ) -> Result<T> {
        let json = self.load_unpacked(t, name, what)?;
        serde_json::from_slice(&json).map_err(|source| {
            RepoError::format(
                what,
                name,
                bunker_format::FormatError::Json { what, source },
            )
        })
    }

    /// Encode, encrypt and write an unpacked JSON file; returns its storage id.
    pub fn save_json<T: Serialize>(&self, t: FileType, value: &T) -> Result<Id> {
        let (id, bytes) = unpacked::encode_json(&self.key, value, self.unpacked_compression())
            .map_err(|e| RepoError::format("file", "new", e))?;
        self.storage.write(t, &id.to_hex(), bytes.into())?;
        Ok(id)
    }

    /// Where a blob lives, if the master index knows it.
    pub fn lookup(&self, id: &BlobId) -> Option<IndexEntry> {
        self.index.read().get(id)
    }

    /// Keep a copy of a tree pack just written to the storage in the local
    /// tree cache, if there is one (see [`crate::tree_cache`]).
    pub(crate) fn cache_new_tree_pack(&self, pack: &str, bytes: &[u8]) {
        if let Some(cache) = &self.tree_cache {
            cache.insert_new(pack, bytes);
        }
    }

    /// Read, decrypt, decompress and verify one blob.
    pub fn read_blob(&self, blob_type: BlobType, id: &BlobId) -> Result<Vec<u8>> {
        let entry = self
            .lookup(id)
            .filter(|e| e.blob_type == blob_type)
            .ok_or_else(|| RepoError::BlobNotFound {
                blob: id.to_string(),
            })?;
        let pack = self.index.read().pack_id(entry.pack).to_string();
        let (offset, length) = (u64::from(entry.offset), u64::from(entry.length));
        if let (BlobType::Tree, Some(cache)) = (blob_type, &self.tree_cache) {
            let (raw, from_cache) = cache.read_range(&self.storage, &pack, offset, length)?;
            match self.decode_verified(&raw, id, entry.uncompressed_length, &pack) {
                Err(e) if from_cache => {
                    // Never trust the cache: drop the copy, ask the repository.
                    tracing::warn!("tree cache: dropping damaged copy of pack {pack}: {e}");
                    cache.forget(&pack);
                }
                decoded => return decoded,
            }
        }
        let raw = self
            .storage
            .read_range(FileType::Pack, &pack, offset, length)?;
        self.decode_verified(&raw, id, entry.uncompressed_length, &pack)
    }

    /// Decode a blob read from `pack` and check it hashes to `id`.
    pub fn decode_verified(
        &self,
        raw: &[u8],
        id: &BlobId,
        uncompressed_length: Option<u32>,
        pack: &str,
    ) -> Result<Vec<u8>> {
        let plain = pack::decode_blob(&self.key, raw, uncompressed_length).map_err(|e| {
            RepoError::DamagedPack {
                pack: pack.to_string(),
                msg: format!("blob {}: {e}", id.id().short()),
            }
        })?;
        if Id::hash(&plain) != id.id() {
            return Err(RepoError::DamagedPack {
                pack: pack.to_string(),
                msg: format!("blob {} does not match its id", id.id().short()),
            });
        }
        Ok(plain)
    }

    /// Load and parse a tree blob.
    pub fn load_tree(&self, id: &BlobId) -> Result<bunker_format::node::Tree> {
        let bytes = self.read_blob(BlobType::Tree, id)?;
        bunker_format::node::Tree::from_bytes(&bytes).map_err(|e| RepoError::format("tree", id, e))
    }
}
