//! Reading file contents: cut into chunks with the repository's chunker and
//! hand every chunk to the blob saver. Small files are read whole in one go;
//! large files are streamed in blocks while their chunks are hashed,
//! compressed and encrypted by other workers of the pool. The bytes of
//! chunks in flight are bounded by [`Archiver::inflight_limit`]: when the
//! limit is reached the reading thread saves the chunk itself, which both
//! bounds memory and throttles reading to the speed of saving.

use std::cell::RefCell;
use std::io::{ErrorKind, Read};
use std::sync::atomic::Ordering;

use bunker_format::chunker::{MIN_SIZE, READ_BLOCK_SIZE};
use bunker_format::{BlobId, BlobType};
use parking_lot::Mutex;

use super::archiver::{Archiver, ItemError};
use crate::error::RepoError;

/// The content of one file as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Content {
    pub blobs: Vec<BlobId>,
    pub size: u64,
}

/// Read until the buffer is full or EOF; retries interrupted reads.
fn read_full(r: &mut (dyn Read + Send), buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

thread_local! {
    /// Each worker's read buffer (at most [`READ_BLOCK_SIZE`]), reused from
    /// file to file. Taken out while in use: a worker waiting in a nested
    /// scope may start another file, which then gets its own.
    static READ_BUFFER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Chunk buffers kept for reuse while one file is read.
const SPARE_BUFFERS: usize = 4;
/// Larger buffers (that held an unusually large chunk) are not reused, so
/// the memory they touched is given back.
const SPARE_MAX_CAPACITY: usize = 4 * MIN_SIZE;

/// The default bound on chunk memory handed to other workers: about two
/// chunks of twice the average size (1 MiB) per thread. More only queues up
/// (the reading thread saves chunks itself when the bound is reached).
pub(super) fn inflight_limit(threads: usize) -> usize {
    threads.max(1) * 2 * (2 << 20)
}

impl Archiver<'_> {
    /// Save one chunk as a data blob and account it.
    fn save_chunk(&self, chunk: &[u8]) -> Result<BlobId, RepoError> {
        let saved = self.saver.save(BlobType::Data, chunk)?;
        self.stats.data_blob(&saved, chunk.len());
        Ok(saved.id)
    }

    /// Read `reader` to its end and store its chunks. `size_hint` (the size
    /// `lstat` reported) only picks the buffer size; the stored size is what
    /// was actually read.
    pub(super) fn save_content(
        &self,
        reader: &mut (dyn Read + Send),
        size_hint: u64,
    ) -> Result<Content, ItemError> {
        let block = usize::try_from(size_hint)
            .unwrap_or(READ_BLOCK_SIZE)
            .saturating_add(1)
            .min(if size_hint < MIN_SIZE as u64 {
                MIN_SIZE
            } else {
                READ_BLOCK_SIZE
            });
        // The read buffer is the thread's, reused: a fresh one per file cost
        // an allocation and a zero fill for every small file.
        let mut owned = READ_BUFFER.with(|b| std::mem::take(&mut *b.borrow_mut()));
        if owned.len() < block {
            // Sized once for any file (only the pages read into are touched).
            owned = vec![0u8; block.max(READ_BLOCK_SIZE)];
        }
        let buf = &mut owned[..block];
        let mut chunker = self.chunker.clone();
        chunker.reset();

        let slots: Mutex<Vec<Option<BlobId>>> = Mutex::new(Vec::new());
        let fatal: Mutex<Option<RepoError>> = Mutex::new(None);
        let store = |idx: usize, r: Result<BlobId, RepoError>| match r {
            Ok(id) => {
                if let Some(slot) = slots.lock().get_mut(idx) {
                    *slot = Some(id);
                }
            }
            Err(e) => {
                fatal.lock().get_or_insert(e);
            }
        };

        // Chunk buffers are recycled: after the first few chunks a large file
        // is read without allocating (and without fragmenting the heap).
        let spare: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());
        let recycle = |mut chunk: Vec<u8>| {
            let mut spare = spare.lock();
            if spare.len() < SPARE_BUFFERS && chunk.capacity() <= SPARE_MAX_CAPACITY {
                chunk.clear();
                spare.push(chunk);
            }
        };

        let read_result: Result<u64, std::io::Error> = rayon::scope(|s| {
            let mut size = 0u64;
            let mut cur: Vec<u8> = Vec::new();
            // The slot of the next chunk, in file order.
            let next_slot = || {
                let mut sl = slots.lock();
                sl.push(None);
                sl.len() - 1
            };
            let emit = |chunk: Vec<u8>| {
                let idx = next_slot();
                // Account the buffer's capacity: that is what it occupies.
                let len = chunk.capacity();
                let before = self.inflight.fetch_add(len, Ordering::AcqRel);
                if before + len <= self.inflight_limit && chunk.len() >= MIN_SIZE {
                    let (store, recycle) = (&store, &recycle);
                    s.spawn(move |_| {
                        let r = self.save_chunk(&chunk);
                        recycle(chunk);
                        self.inflight.fetch_sub(len, Ordering::AcqRel);
                        store(idx, r);
                    });
                } else {
                    self.inflight.fetch_sub(len, Ordering::AcqRel);
                    store(idx, self.save_chunk(&chunk));
                    recycle(chunk);
                }
            };
            loop {
                if fatal.lock().is_some() {
                    return Ok(size);
                }
                let n = read_full(reader, buf)?;
                if n == 0 {
                    break;
                }
                size += n as u64;
                self.progress.add_bytes(n as u64);
                // A short read is the end of the file (read_full only stops
                // early at EOF).
                let last = n < buf.len();
                let mut data = &buf[..n];
                while !data.is_empty() {
                    match chunker.next_boundary(data) {
                        Some(k) => {
                            let next = spare.lock().pop().unwrap_or_default();
                            let mut chunk = std::mem::replace(&mut cur, next);
                            chunk.extend_from_slice(&data[..k]);
                            emit(chunk);
                            data = &data[k..];
                        }
                        None if last && cur.is_empty() && data.len() < MIN_SIZE => {
                            // A small file, or a small tail after a cut: it
                            // is saved straight from the read buffer (small
                            // chunks are saved inline anyway), not copied.
                            store(next_slot(), self.save_chunk(data));
                            break;
                        }
                        None => {
                            if cur.capacity() == 0 {
                                cur.reserve(if size_hint < MIN_SIZE as u64 {
                                    data.len()
                                } else {
                                    2 * MIN_SIZE
                                });
                            }
                            cur.extend_from_slice(data);
                            break;
                        }
                    }
                }
                if last {
                    break;
                }
            }
            if !cur.is_empty() {
                emit(cur);
            }
            Ok(size)
        });
        READ_BUFFER.with(|b| {
            let mut b = b.borrow_mut();
            if b.len() < owned.len() {
                *b = owned;
            }
        });
        if let Some(e) = fatal.into_inner() {
            return Err(ItemError::Fatal(e));
        }
        let size = read_result.map_err(|e| ItemError::Skip(format!("read: {e}")))?;
        let blobs = slots
            .into_inner()
            .into_iter()
            .collect::<Option<Vec<BlobId>>>()
            .ok_or_else(|| {
                ItemError::Fatal(RepoError::Invalid("a chunk of a file was not saved".into()))
            })?;
        Ok(Content { blobs, size })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::stats::Stats;
    use crate::packer::BlobSaver;
    use crate::progress::NoProgress;
    use crate::{RepoOptions, Repository};
    use bunker_format::chunker::{ChunkIter, Chunker, MAX_SIZE};
    use bunker_format::keyfile::KdfParams;
    use bunker_format::Id;
    use rand::{RngCore, SeedableRng};
    use std::sync::atomic::AtomicUsize;

    /// Reads in odd-sized pieces to exercise block reassembly.
    struct Jagged<'a>(&'a [u8], usize);

    impl Read for Jagged<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.1 = self.1 % 7919 + 1013;
            let n = buf.len().min(self.0.len()).min(self.1);
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    /// A fresh local repository with a cheap key derivation.
    fn test_repo(dir: &std::path::Path) -> std::sync::Arc<Repository> {
        let storage = bunker_storage::open(&dir.to_string_lossy(), &[]).unwrap();
        let kdf = KdfParams {
            n: 1024,
            r: 8,
            p: 1,
        };
        Repository::init(storage, b"pw", RepoOptions::default(), kdf).unwrap()
    }

    #[test]
    fn chunks_match_the_chunker_and_all_are_stored() {
        let dir = tempfile::tempdir().unwrap();
        let repo = test_repo(dir.path());
        let mut data = vec![0u8; 3 * MAX_SIZE + 4321];
        rand::rngs::StdRng::seed_from_u64(3).fill_bytes(&mut data[..2 * MAX_SIZE]);
        // The zero tail forces MAX_SIZE cuts.

        let saver = BlobSaver::new(repo.clone());
        let chunker = Chunker::new(repo.config().chunker_polynomial);
        let arch = Archiver {
            cancel: None,
            repo: &repo,
            saver: &saver,
            excluder: None,
            chunker: chunker.clone(),
            ignore_ctime: false,
            ignore_inode: false,
            progress: &NoProgress,
            stats: Stats::default(),
            inflight: AtomicUsize::new(0),
            // Small limit: some chunks are saved inline, some by other workers.
            inflight_limit: MAX_SIZE,
            prefetch: None,
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        let got = pool
            .install(|| arch.save_content(&mut Jagged(&data, 0), data.len() as u64))
            .map_err(|e| format!("{e:?}"))
            .unwrap();
        let want: Vec<BlobId> = ChunkIter::new(&data[..], chunker)
            .map(|c| BlobId::from(Id::hash(&c.unwrap())))
            .collect();
        assert!(want.len() >= 4);
        assert_eq!(got.blobs, want);
        assert_eq!(got.size, data.len() as u64);
        assert_eq!(arch.inflight.load(Ordering::Relaxed), 0);
        saver.finish().unwrap();
        let mut back = Vec::new();
        for id in &got.blobs {
            back.extend(repo.read_blob(BlobType::Data, id).unwrap());
        }
        assert!(back == data);

        // Small input: one blob; empty input: no blob.
        let small = arch
            .save_content(&mut &b"tiny"[..], 4)
            .map_err(|e| format!("{e:?}"))
            .unwrap();
        assert_eq!(small.blobs, vec![BlobId::from(Id::hash(b"tiny"))]);
        let empty = arch
            .save_content(&mut &b""[..], 0)
            .map_err(|e| format!("{e:?}"))
            .unwrap();
        assert_eq!((empty.blobs.len(), empty.size), (0, 0));
    }

    #[test]
    fn read_errors_skip_the_item() {
        struct Failing;
        impl Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
                Err(std::io::Error::other("disk on fire"))
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let repo = test_repo(dir.path());
        let saver = BlobSaver::new(repo.clone());
        let arch = Archiver {
            cancel: None,
            repo: &repo,
            saver: &saver,
            excluder: None,
            chunker: Chunker::new(repo.config().chunker_polynomial),
            ignore_ctime: false,
            ignore_inode: false,
            progress: &NoProgress,
            stats: Stats::default(),
            inflight: AtomicUsize::new(0),
            inflight_limit: MAX_SIZE,
            prefetch: None,
        };
        match arch.save_content(&mut Failing, 10) {
            Err(ItemError::Skip(msg)) => assert!(msg.contains("disk on fire"), "{msg}"),
            other => panic!("expected a skip, got {other:?}"),
        }
    }
}
