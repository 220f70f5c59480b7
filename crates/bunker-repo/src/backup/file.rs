//! Reading file contents: cut into chunks with the repository's chunker and
//! hand every chunk to the blob saver. Small files are read whole in one go;
//! large files are streamed in blocks while their chunks are hashed,
//! compressed and encrypted by other workers of the pool. The bytes of
//! chunks in flight are bounded by [`Archiver::inflight_limit`]: when the
//! limit is reached the reading thread saves the chunk itself, which both
//! bounds memory and throttles reading to the speed of saving.

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
        let mut buf = vec![0u8; block];
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

        let read_result: Result<u64, std::io::Error> = rayon::scope(|s| {
            let mut size = 0u64;
            let mut cur: Vec<u8> = Vec::new();
            let emit = |chunk: Vec<u8>| {
                let idx = {
                    let mut sl = slots.lock();
                    sl.push(None);
                    sl.len() - 1
                };
                let len = chunk.len();
                let before = self.inflight.fetch_add(len, Ordering::AcqRel);
                if before + len <= self.inflight_limit && len >= MIN_SIZE {
                    let store = &store;
                    s.spawn(move |_| {
                        let r = self.save_chunk(&chunk);
                        drop(chunk);
                        self.inflight.fetch_sub(len, Ordering::AcqRel);
                        store(idx, r);
                    });
                } else {
                    self.inflight.fetch_sub(len, Ordering::AcqRel);
                    store(idx, self.save_chunk(&chunk));
                }
            };
            loop {
                if fatal.lock().is_some() {
                    return Ok(size);
                }
                let n = read_full(reader, &mut buf)?;
                if n == 0 {
                    break;
                }
                size += n as u64;
                self.progress.add_bytes(n as u64);
                let mut data = &buf[..n];
                while !data.is_empty() {
                    match chunker.next_boundary(data) {
                        Some(k) => {
                            let mut chunk = std::mem::take(&mut cur);
                            chunk.extend_from_slice(&data[..k]);
                            emit(chunk);
                            data = &data[k..];
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
                if n < buf.len() {
                    // Short read: EOF (read_full only stops early at EOF).
                    break;
                }
            }
            if !cur.is_empty() {
                emit(cur);
            }
            Ok(size)
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
