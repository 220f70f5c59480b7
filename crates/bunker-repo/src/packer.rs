//! Saving new blobs: dedup, compress + encrypt, fill packs, upload, index.
//!
//! [`BlobSaver::save`] runs on the caller's thread (so N backup workers
//! compress and encrypt in parallel); a full pack is handed over a bounded
//! channel to upload threads (one per connection), which write the pack and
//! only then record its blobs in the pending index. Pending index entries are
//! written as an index file every [`INDEX_FLUSH_INTERVAL`] (configurable) or
//! [`INDEX_FLUSH_PACKS`] packs, so an interrupted backup keeps what it
//! uploaded; [`BlobSaver::finish`] writes the rest. Order: pack, then index
//! (the snapshot comes last, written by the caller after `finish`).

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bunker_format::index::{IndexBlob, IndexFile, IndexPack};
use bunker_format::pack::{self, PackBuilder};
use bunker_format::{BlobId, BlobType, Id, IndexId};
use bunker_storage::FileType;
use crossbeam_channel::{bounded, Sender};
use parking_lot::Mutex;

use crate::error::{RepoError, Result};
use crate::Repository;

/// Pending index entries are written at least this often (the default of
/// [`crate::RepoOptions::index_flush_interval`]).
pub const INDEX_FLUSH_INTERVAL: Duration = Duration::from_secs(120);
/// ... or when this many packs are pending.
pub const INDEX_FLUSH_PACKS: usize = 256;

/// What happened to one saved blob.
#[derive(Clone, Copy, Debug)]
pub struct Saved {
    pub id: BlobId,
    /// True when the blob was new to the repository and this call stored it.
    pub added: bool,
    /// Bytes the blob occupies in its pack (0 when not added).
    pub packed: u64,
}

/// Totals of one saver's life.
#[derive(Clone, Copy, Debug, Default)]
pub struct SaverStats {
    pub data_blobs: u64,
    pub tree_blobs: u64,
    pub data_added: u64,
    pub data_added_packed: u64,
    pub packs: u64,
    pub index_files: u64,
}

struct Pending {
    packs: Vec<IndexPack>,
    last_flush: Instant,
    error: Option<RepoError>,
    index_files: Vec<IndexId>,
}

struct Shared {
    repo: Arc<Repository>,
    pending: Mutex<Pending>,
    packs: AtomicU64,
    /// An uploaded data pack's buffer, kept for the next data pack: its
    /// pages are already mapped, so filling it faults no fresh memory in
    /// (page faults under the builders' lock were about 1% of a kernel-tree
    /// backup's CPU time and lengthened the time the lock is held).
    spare: Mutex<Option<Vec<u8>>>,
}

/// Saves blobs into new packs. Cheap to share by reference across threads.
pub struct BlobSaver {
    shared: Arc<Shared>,
    builders: Mutex<Builders>,
    tx: Mutex<Option<Sender<PackBuilder>>>,
    uploaders: Mutex<Vec<JoinHandle<()>>>,
    counters: [AtomicU64; 4],
}

struct Builders {
    data: PackBuilder,
    tree: PackBuilder,
    seen: HashSet<BlobId>,
}

impl BlobSaver {
    pub fn new(repo: Arc<Repository>) -> BlobSaver {
        let connections = repo.options().connections.max(1);
        let pack_size = repo.options().pack_size;
        // A rendezvous channel: a full pack waits for a free uploader instead
        // of queueing, so at most `connections + 1` packs are in memory.
        let (tx, rx) = bounded::<PackBuilder>(0);
        let shared = Arc::new(Shared {
            repo,
            pending: Mutex::new(Pending {
                packs: Vec::new(),
                last_flush: Instant::now(),
                error: None,
                index_files: Vec::new(),
            }),
            packs: AtomicU64::new(0),
            spare: Mutex::new(None),
        });
        let uploaders = (0..connections)
            .map(|_| {
                let rx = rx.clone();
                let shared = shared.clone();
                std::thread::spawn(move || {
                    for builder in rx {
                        let result = upload(&shared, builder);
                        let mut p = shared.pending.lock();
                        match result {
                            Ok(ip) => {
                                p.packs.push(ip);
                                let due = p.packs.len() >= INDEX_FLUSH_PACKS
                                    || p.last_flush.elapsed()
                                        >= shared.repo.options().index_flush_interval;
                                if due {
                                    if let Err(e) = flush_pending(&shared.repo, &mut p) {
                                        p.error.get_or_insert(e);
                                    }
                                }
                            }
                            Err(e) => {
                                p.error.get_or_insert(e);
                            }
                        }
                    }
                })
            })
            .collect();
        let builders = Mutex::new(Builders {
            data: new_builder(BlobType::Data, pack_size, &shared.spare),
            tree: new_builder(BlobType::Tree, pack_size, &shared.spare),
            seen: HashSet::new(),
        });
        BlobSaver {
            shared,
            builders,
            tx: Mutex::new(Some(tx)),
            uploaders: Mutex::new(uploaders),
            counters: Default::default(),
        }
    }

    fn check_error(&self) -> Result<()> {
        let mut p = self.shared.pending.lock();
        match p.error.take() {
            Some(e) => {
                let msg = e.to_string();
                p.error = Some(RepoError::Io(msg));
                Err(e)
            }
            None => Ok(()),
        }
    }

    /// Whether a blob is already stored or being stored.
    pub fn known(&self, id: &BlobId) -> bool {
        self.shared.repo.index().read().has(id) || self.builders.lock().seen.contains(id)
    }

    /// Save a blob whose id the caller already computed (`Id::hash(plain)`).
    pub fn save_with_id(&self, blob_type: BlobType, id: BlobId, plain: &[u8]) -> Result<Saved> {
        if self.shared.repo.index().read().has(&id) {
            return Ok(Saved {
                id,
                added: false,
                packed: 0,
            });
        }
        if !self.builders.lock().seen.insert(id) {
            return Ok(Saved {
                id,
                added: false,
                packed: 0,
            });
        }
        self.check_error()?;
        let repo = &self.shared.repo;
        let pack_size = repo.options().pack_size;
        // Compression runs outside the lock (in a per-thread buffer); only
        // the encryption straight into the pack holds it.
        let (packed, full) = pack::with_blob_payload(plain, repo.zstd_level(), |payload, ul| {
            let mut b = self.builders.lock();
            let builder = match blob_type {
                BlobType::Data => &mut b.data,
                BlobType::Tree => &mut b.tree,
            };
            let length = builder.add_encrypting(repo.key(), id, payload, ul)?;
            let full = (builder.len() as u64 >= pack_size
                || builder.count() + 1 >= pack::MAX_HEADER_ENTRIES)
                .then(|| {
                    let next = new_builder(blob_type, pack_size, &self.shared.spare);
                    std::mem::replace(builder, next)
                });
            Ok((u64::from(length), full))
        })
        .and_then(|r| r)
        .map_err(|e| RepoError::format("blob", id, e))?;
        let c = match blob_type {
            BlobType::Data => 0,
            BlobType::Tree => 1,
        };
        self.counters[c].fetch_add(1, Ordering::Relaxed);
        if blob_type == BlobType::Data {
            self.counters[2].fetch_add(plain.len() as u64, Ordering::Relaxed);
        }
        self.counters[3].fetch_add(packed, Ordering::Relaxed);
        if let Some(full) = full {
            self.send(full)?;
        }
        Ok(Saved {
            id,
            added: true,
            packed,
        })
    }

    /// Hash, dedup and save a blob.
    pub fn save(&self, blob_type: BlobType, plain: &[u8]) -> Result<Saved> {
        let id = BlobId::from(Id::hash(plain));
        self.save_with_id(blob_type, id, plain)
    }

    fn send(&self, builder: PackBuilder) -> Result<()> {
        let tx = self.tx.lock().clone();
        match tx {
            Some(tx) => tx
                .send(builder)
                .map_err(|_| RepoError::Io("pack uploader stopped".into())),
            None => Err(RepoError::Invalid("blob saver already finished".into())),
        }
    }

    /// Upload partial packs, wait for all uploads, write the remaining index.
    /// After this returns Ok, every saved blob is durably stored and indexed.
    pub fn finish(&self) -> Result<SaverStats> {
        let (data, tree) = {
            let mut b = self.builders.lock();
            (
                std::mem::replace(&mut b.data, PackBuilder::new(BlobType::Data)),
                std::mem::replace(&mut b.tree, PackBuilder::new(BlobType::Tree)),
            )
        };
        for builder in [data, tree] {
            if builder.count() > 0 {
                self.send(builder)?;
            }
        }
        drop(self.tx.lock().take());
        for h in self.uploaders.lock().drain(..) {
            if h.join().is_err() {
                return Err(RepoError::Io("pack uploader thread panicked".into()));
            }
        }
        let mut p = self.shared.pending.lock();
        if let Some(e) = p.error.take() {
            return Err(e);
        }
        flush_pending(&self.shared.repo, &mut p)?;
        Ok(SaverStats {
            data_blobs: self.counters[0].load(Ordering::Relaxed),
            tree_blobs: self.counters[1].load(Ordering::Relaxed),
            data_added: self.counters[2].load(Ordering::Relaxed),
            data_added_packed: self.counters[3].load(Ordering::Relaxed),
            packs: self.shared.packs.load(Ordering::Relaxed),
            index_files: p.index_files.len() as u64,
        })
    }
}

impl Drop for BlobSaver {
    fn drop(&mut self) {
        // Stop the uploaders; packs not yet indexed are left for prune to collect.
        drop(self.tx.lock().take());
        for h in self.uploaders.lock().drain(..) {
            let _ = h.join();
        }
    }
}

/// Data pack buffers reserve at least this much address space (only the
/// pages written are resident). glibc's malloc raises its mmap threshold to
/// the size of any freed mmap'ed block up to 32 MiB; a freed 24 MiB pack
/// buffer thus sent every later buffer below 24 MiB (chunks, packs) into the
/// per-thread arenas, which fragmented: kernel-tree backup peak RSS 144-159
/// MiB, against 58 MiB with the threshold pinned (`MALLOC_MMAP_THRESHOLD_`).
/// Blocks above 32 MiB leave the threshold alone.
const PACK_RESERVE_MIN: usize = 33 << 20;

/// A pack builder for data blobs reserves room for a full pack plus one
/// maximal blob, so its buffer is allocated once and never copied while it
/// grows (tree packs are usually small and grow on demand).
fn new_builder(blob_type: BlobType, pack_size: u64, spare: &Mutex<Option<Vec<u8>>>) -> PackBuilder {
    match blob_type {
        BlobType::Data => {
            let reserve = data_pack_reserve(pack_size);
            match spare.lock().take() {
                Some(buf) if buf.capacity() >= reserve => PackBuilder::with_buffer(blob_type, buf),
                _ => PackBuilder::with_capacity(blob_type, reserve),
            }
        }
        BlobType::Tree => PackBuilder::new(blob_type),
    }
}

/// The capacity a data pack's buffer reserves (see [`PACK_RESERVE_MIN`]).
fn data_pack_reserve(pack_size: u64) -> usize {
    usize::try_from(pack_size)
        .unwrap_or(usize::MAX)
        .saturating_add(bunker_format::chunker::MAX_SIZE + (64 << 10))
        .max(PACK_RESERVE_MIN)
}

fn upload(shared: &Shared, builder: PackBuilder) -> Result<IndexPack> {
    let repo = &shared.repo;
    let tree_pack = builder.blob_type() == BlobType::Tree;
    let (pack_id, bytes, blobs) = builder.finish(repo.key());
    let bytes = bytes::Bytes::from(bytes);
    let name = pack_id.to_string();
    repo.storage().write(FileType::Pack, &name, bytes.clone())?;
    if tree_pack {
        repo.cache_new_tree_pack(&name, &bytes);
    } else {
        // The storage is done with the bytes: keep the buffer for the next
        // pack (the conversion copies nothing when no clone is left).
        let buf = Vec::from(bytes);
        if buf.capacity() >= data_pack_reserve(repo.options().pack_size) {
            *shared.spare.lock() = Some(buf);
        }
    }
    shared.packs.fetch_add(1, Ordering::Relaxed);
    let ip = IndexPack {
        id: pack_id,
        blobs: blobs
            .into_iter()
            .map(|b| IndexBlob {
                id: b.id,
                blob_type: b.blob_type,
                offset: b.offset,
                length: b.length,
                uncompressed_length: b.uncompressed_length,
            })
            .collect(),
    };
    repo.index().write().add_pack(&ip);
    Ok(ip)
}

/// Write pending packs as one index file (the packs are already durable).
fn flush_pending(repo: &Repository, p: &mut Pending) -> Result<()> {
    p.last_flush = Instant::now();
    if p.packs.is_empty() {
        return Ok(());
    }
    let file = IndexFile {
        supersedes: Vec::new(),
        packs: std::mem::take(&mut p.packs),
    };
    let id = repo.save_json(FileType::Index, &file)?;
    p.index_files.push(IndexId::from(id));
    Ok(())
}
