//! Writing file contents: blobs grouped per pack, parallel positional writes.
//!
//! The restore walker hands over batches of already created (empty) files,
//! each under a temporary name in its final directory.
//! For a batch we group every needed blob by pack, merge blobs that lie close
//! together in a pack into one range read, and let the restore's rayon pool
//! take the ranges. The blobs of a range are decrypted, decompressed and
//! checked against their ids in parallel, then each is written at every
//! offset of every file that contains it (positional writes, so a large file
//! is filled out of order by several workers at once). Zero blocks are skipped to keep files sparse. A blob
//! that fails fails only the files containing it. Memory is bounded by the
//! batch size and one range per worker.
//!
//! Invariant: a file appears under its final name only complete, checked
//! (with `verify`) and with its metadata: it is renamed there as the last
//! step, and a file that failed is removed. So a failed restore never
//! leaves a partial or empty file that a later run would skip as existing.

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use bunker_format::{BlobId, Id};
use bunker_sources::{RestoreMeta, SparseWriter, TargetDir};
use bunker_storage::FileType;
use parking_lot::Mutex;
use rayon::prelude::*;

use crate::index::IndexEntry;
use crate::progress::Progress;
use crate::Repository;

/// Blobs further apart than this in a pack are read separately.
pub const MAX_GAP: u64 = 256 * 1024;
/// Upper bound of one range read (a single larger blob is read alone).
/// Each worker holds one range: 4 workers × 16 MiB made restore peak above
/// restic's RSS; 4 MiB still merges hundreds of small blobs into one read.
pub const MAX_RANGE: u64 = 4 * 1024 * 1024;

/// One file of a batch: created empty under a temporary name, waiting
/// for its contents.
pub struct FileJob {
    /// The final path.
    pub rel: Vec<Vec<u8>>,
    pub display: String,
    pub file: File,
    /// The temporary name in the final path's directory.
    pub tmp: Vec<u8>,
    /// Whether an existing entry at `rel` is to be replaced.
    pub replace: bool,
    /// (blob, where it is, offset in the file).
    pub blobs: Vec<(BlobId, IndexEntry, u64)>,
    pub size: u64,
    pub meta: RestoreMeta,
}

/// How to write a batch (the restore's pool sets the parallelism).
#[derive(Clone, Copy, Debug)]
pub struct BatchConfig {
    pub sparse: bool,
    pub verify: bool,
}

/// Outcome of one batch.
#[derive(Debug, Default)]
pub struct BatchResult {
    pub files_ok: u64,
    pub bytes: u64,
    pub verified: u64,
    pub errors: Vec<(String, String)>,
    /// Final paths of the files that failed (nothing was left there).
    pub failed: Vec<Vec<Vec<u8>>>,
}

impl BatchResult {
    /// Add another batch's outcome to this one.
    pub fn merge(&mut self, other: BatchResult) {
        self.files_ok += other.files_ok;
        self.bytes += other.bytes;
        self.verified += other.verified;
        self.errors.extend(other.errors);
        self.failed.extend(other.failed);
    }
}

enum Writer {
    Sparse(SparseWriter),
    /// A file written in full, and the end of its furthest write.
    Plain(File, AtomicU64),
}

impl Writer {
    fn write_at(&self, offset: u64, data: &[u8]) -> Result<(), String> {
        match self {
            Writer::Sparse(w) => w.write_at(offset, data).map_err(|e| e.to_string()),
            Writer::Plain(f, end) => {
                f.write_all_at(data, offset)
                    .map_err(|e| format!("write at {offset}: {e}"))?;
                end.fetch_max(offset + data.len() as u64, Ordering::Relaxed);
                Ok(())
            }
        }
    }

    /// Give the (new, empty when created) file its length; no `ftruncate`
    /// when the writes already ended there.
    fn finish(self, size: u64) -> Result<File, String> {
        match self {
            Writer::Sparse(w) => w.finish(size).map_err(|e| e.to_string()),
            Writer::Plain(f, end) if end.load(Ordering::Relaxed) == size => Ok(f),
            Writer::Plain(f, _) => f
                .set_len(size)
                .map(|_| f)
                .map_err(|e| format!("set length: {e}")),
        }
    }
}

struct FileState {
    writer: Writer,
    failed: Mutex<Option<String>>,
    written: AtomicUsize,
}

impl FileState {
    fn fail(&self, msg: String) {
        self.failed.lock().get_or_insert(msg);
    }
    fn is_failed(&self) -> bool {
        self.failed.lock().is_some()
    }
}

struct BlobUse {
    id: BlobId,
    entry: IndexEntry,
    targets: Vec<(usize, u64)>,
}

struct PackJob {
    pack: u32,
    blobs: Vec<BlobUse>,
}

/// Group the blobs of a batch per pack; packs of earlier files come first.
fn plan(jobs: &[FileJob]) -> Vec<PackJob> {
    let mut packs: HashMap<u32, (usize, HashMap<BlobId, BlobUse>)> = HashMap::new();
    for (fi, job) in jobs.iter().enumerate() {
        for (id, entry, off) in &job.blobs {
            let (_, blobs) = packs
                .entry(entry.pack)
                .or_insert_with(|| (fi, HashMap::new()));
            blobs
                .entry(*id)
                .or_insert_with(|| BlobUse {
                    id: *id,
                    entry: *entry,
                    targets: Vec::new(),
                })
                .targets
                .push((fi, *off));
        }
    }
    let mut out: Vec<(usize, PackJob)> = packs
        .into_iter()
        .map(|(pack, (first, blobs))| {
            let mut blobs: Vec<BlobUse> = blobs.into_values().collect();
            blobs.sort_by_key(|b| b.entry.offset);
            (first, PackJob { pack, blobs })
        })
        .collect();
    out.sort_by_key(|(first, p)| (*first, p.pack));
    out.into_iter().map(|(_, p)| p).collect()
}

/// Split a pack's (offset-sorted) blobs into ranges worth one read each.
fn ranges(blobs: &[BlobUse]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    for i in 1..=blobs.len() {
        let split = i == blobs.len() || {
            let prev_end =
                u64::from(blobs[i - 1].entry.offset) + u64::from(blobs[i - 1].entry.length);
            let next = &blobs[i].entry;
            let gap = u64::from(next.offset).saturating_sub(prev_end);
            let span = u64::from(next.offset) + u64::from(next.length)
                - u64::from(blobs[start].entry.offset);
            gap > MAX_GAP || span > MAX_RANGE
        };
        if split {
            out.push(start..i);
            start = i;
        }
    }
    out
}

/// One read of a pack: a range of its (offset-sorted) blobs.
struct RangeJob<'p> {
    pack: &'p PackJob,
    blobs: &'p [BlobUse],
}

/// The reads of a batch, packs of earlier files first.
fn range_jobs(packs: &[PackJob]) -> Vec<RangeJob<'_>> {
    packs
        .iter()
        .flat_map(|p| {
            ranges(&p.blobs).into_iter().map(move |r| RangeJob {
                pack: p,
                blobs: &p.blobs[r],
            })
        })
        .collect()
}

/// Read one range and write its blobs. The blobs are decrypted,
/// decompressed and checked in parallel (a batch of small files often lies
/// in a single range, which one thread would otherwise decode alone).
fn process_range(
    repo: &Repository,
    job: &RangeJob<'_>,
    files: &[FileState],
    progress: &dyn Progress,
) {
    let blobs = job.blobs;
    let live = |b: &BlobUse| b.targets.iter().any(|(fi, _)| !files[*fi].is_failed());
    if !blobs.iter().any(live) {
        return;
    }
    let pack_name = repo.index().read().pack_id(job.pack.pack).to_string();
    let start = u64::from(blobs[0].entry.offset);
    let end = blobs
        .iter()
        .map(|b| u64::from(b.entry.offset) + u64::from(b.entry.length))
        .max()
        .unwrap_or(start);
    let data = match repo
        .storage()
        .read_range(FileType::Pack, &pack_name, start, end - start)
    {
        Ok(d) => d,
        Err(e) => {
            let msg = format!("reading pack {pack_name}: {e}");
            for b in blobs {
                for (fi, _) in &b.targets {
                    files[*fi].fail(msg.clone());
                }
            }
            return;
        }
    };
    blobs.par_iter().for_each(|b| {
        let lo = (u64::from(b.entry.offset) - start) as usize;
        let hi = lo + b.entry.length as usize;
        let plain = match data.get(lo..hi) {
            None => Err(format!(
                "pack {pack_name} is damaged: short read for blob {}",
                b.id.id().short()
            )),
            Some(raw) => repo
                .decode_verified(raw, &b.id, b.entry.uncompressed_length, &pack_name)
                .map_err(|e| e.to_string()),
        };
        let plain = match plain {
            Ok(p) => p,
            Err(msg) => {
                for (fi, _) in &b.targets {
                    files[*fi].fail(msg.clone());
                }
                return;
            }
        };
        for (fi, off) in &b.targets {
            let f = &files[*fi];
            if f.is_failed() {
                continue;
            }
            match f.writer.write_at(*off, &plain) {
                Ok(()) => {
                    f.written.fetch_add(1, Ordering::Relaxed);
                    progress.add_bytes(plain.len() as u64);
                }
                Err(e) => f.fail(e),
            }
        }
    });
}

/// Re-read a restored file and check every blob against its id.
fn verify_file(file: &File, blobs: &[(BlobId, IndexEntry, u64)]) -> Result<(), String> {
    // Re-open the very same inode read-only through its descriptor, never by path.
    let proc = format!("/proc/self/fd/{}", file.as_raw_fd());
    let reader =
        File::open(&proc).map_err(|e| format!("verify: cannot re-open file for reading: {e}"))?;
    let mut buf = Vec::new();
    for (id, entry, off) in blobs {
        buf.resize(entry.plain_len() as usize, 0);
        reader
            .read_exact_at(&mut buf, *off)
            .map_err(|e| format!("verify: read at {off}: {e}"))?;
        if Id::hash(&buf) != id.id() {
            return Err(format!(
                "verify: content at offset {off} does not match blob {}",
                id.id().short()
            ));
        }
    }
    Ok(())
}

/// What [`run_batch`] keeps of a [`FileJob`] besides its descriptor.
struct Meta {
    rel: Vec<Vec<u8>>,
    display: String,
    blobs: Vec<(BlobId, IndexEntry, u64)>,
    size: u64,
    meta: RestoreMeta,
    tmp: Vec<u8>,
    replace: bool,
}

/// Fill, finish, verify and apply metadata to a batch of created files,
/// then rename each complete one to its final name (failed ones are removed).
pub fn run_batch(
    repo: &Repository,
    target: &TargetDir,
    jobs: Vec<FileJob>,
    cfg: BatchConfig,
    pool: &rayon::ThreadPool,
    progress: &dyn Progress,
) -> BatchResult {
    let packs = plan(&jobs);
    let mut metas = Vec::with_capacity(jobs.len());
    let mut states = Vec::with_capacity(jobs.len());
    for job in jobs {
        let writer = if cfg.sparse {
            Writer::Sparse(SparseWriter::new(job.file))
        } else {
            Writer::Plain(job.file, AtomicU64::new(0))
        };
        states.push(FileState {
            writer,
            failed: Mutex::new(None),
            written: AtomicUsize::new(0),
        });
        metas.push(Meta {
            rel: job.rel,
            display: job.display,
            blobs: job.blobs,
            size: job.size,
            meta: job.meta,
            tmp: job.tmp,
            replace: job.replace,
        });
    }
    let work = range_jobs(&packs);
    pool.install(|| {
        work.par_iter()
            .for_each(|job| process_range(repo, job, &states, progress))
    });

    let finished: Vec<(Result<File, String>, usize)> = states
        .into_iter()
        .enumerate()
        .map(|(i, st)| {
            let written = st.written.load(Ordering::Relaxed);
            let res = match st.failed.into_inner() {
                Some(msg) => Err(msg),
                None if written != metas[i].blobs.len() => {
                    Err("not all blobs were written".to_string())
                }
                None => st.writer.finish(metas[i].size),
            };
            (res, i)
        })
        .collect();
    let results: Vec<Mutex<Result<bool, String>>> =
        finished.iter().map(|_| Mutex::new(Ok(false))).collect();
    pool.install(|| {
        (0..finished.len()).into_par_iter().for_each(|i| {
            let (res, idx) = &finished[i];
            let m = &metas[*idx];
            let parts: Vec<&[u8]> = m.rel.iter().map(Vec::as_slice).collect();
            let outcome = match res {
                Err(msg) => Err(msg.clone()),
                Ok(file) => {
                    let verified = if cfg.verify {
                        verify_file(file, &m.blobs).map(|_| true)
                    } else {
                        Ok(false)
                    };
                    verified.and_then(|v| {
                        target
                            .apply_file_meta(&parts, file, &m.meta)
                            .and_then(|_| target.commit_temp(&parts, &m.tmp, m.replace))
                            .map(|_| v)
                            .map_err(|e| e.to_string())
                    })
                }
            };
            if outcome.is_err() {
                target.discard_temp(&parts, &m.tmp);
            }
            *results[i].lock() = outcome;
        })
    });

    let mut out = BatchResult::default();
    for (i, r) in results.into_iter().enumerate() {
        let m = &metas[finished[i].1];
        match r.into_inner() {
            Ok(verified) => {
                out.files_ok += 1;
                out.bytes += m.size;
                out.verified += u64::from(verified);
                progress.add_items(1);
            }
            Err(msg) => {
                progress.warn(&format!("{}: {msg}", m.display));
                out.errors.push((m.display.clone(), msg));
                out.failed.push(m.rel.clone());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use bunker_format::BlobType;

    fn use_at(offset: u32, length: u32) -> BlobUse {
        BlobUse {
            id: BlobId::from(Id::hash(&offset.to_le_bytes())),
            entry: IndexEntry {
                pack: 0,
                blob_type: BlobType::Data,
                offset,
                length,
                uncompressed_length: None,
            },
            targets: vec![(0, 0)],
        }
    }

    #[test]
    fn ranges_merge_close_blobs_and_split_far_ones() {
        let blobs = vec![
            use_at(0, 100),
            use_at(100, 100),
            use_at(300, 100),
            use_at(300 + MAX_GAP as u32 + 500, 10),
        ];
        assert_eq!(ranges(&blobs), vec![0..3, 3..4]);
        let big = vec![
            use_at(0, 10 * 1024 * 1024),
            use_at(10 * 1024 * 1024, 10 * 1024 * 1024),
        ];
        assert_eq!(ranges(&big), vec![0..1, 1..2]);
        assert!(ranges(&[]).is_empty());
    }
}
