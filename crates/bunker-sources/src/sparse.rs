//! Positional writes that leave holes for long runs of zeros.
//!
//! Only meant for freshly created (empty) files: skipped ranges read back
//! as zeros because they were never written.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::SourceError;

/// Zero runs of at least this many bytes (aligned to it in the file) are
/// skipped instead of written.
pub const HOLE_BLOCK: u64 = 4096;

/// Write all of `data` at `offset` (`pwrite`), without hole detection.
pub fn write_at(file: &File, offset: u64, data: &[u8]) -> std::io::Result<()> {
    file.write_all_at(data, offset)
}

/// Write `data` at `offset`, skipping every all-zero block of
/// [`HOLE_BLOCK`] bytes aligned in the file. Returns the bytes skipped.
pub fn write_at_sparse(file: &File, offset: u64, data: &[u8]) -> std::io::Result<u64> {
    write_sparse(file, offset, data).map(|(skipped, _)| skipped)
}

/// [`write_at_sparse`], also returning where the last byte actually
/// written ends (0 when everything was skipped).
fn write_sparse(file: &File, offset: u64, data: &[u8]) -> std::io::Result<(u64, u64)> {
    let mut skipped = 0u64;
    let mut written_end = 0u64;
    let mut pending: Option<(u64, usize)> = None; // (file offset, index into data)
    let mut i = 0usize;
    while i < data.len() {
        let pos = offset + i as u64;
        let to_boundary = (HOLE_BLOCK - pos % HOLE_BLOCK) as usize;
        let end = (i + to_boundary).min(data.len());
        let block = &data[i..end];
        let full = block.len() as u64 == HOLE_BLOCK;
        if full && block.iter().all(|&b| b == 0) {
            if let Some((at, start)) = pending.take() {
                file.write_all_at(&data[start..i], at)?;
                written_end = at + (i - start) as u64;
            }
            skipped += HOLE_BLOCK;
        } else if pending.is_none() {
            pending = Some((pos, i));
        }
        i = end;
    }
    if let Some((at, start)) = pending {
        file.write_all_at(&data[start..], at)?;
        written_end = at + (data.len() - start) as u64;
    }
    Ok((skipped, written_end))
}

/// Writer for a new file that keeps zero runs as holes. Supports
/// sequential [`write`](SparseWriter::write) and concurrent positional
/// [`write_at`](SparseWriter::write_at); [`finish`](SparseWriter::finish)
/// sets the final length so trailing holes exist.
#[derive(Debug)]
pub struct SparseWriter {
    file: File,
    pos: u64,
    skipped: AtomicU64,
    /// The file's length so far: the end of the furthest byte written.
    end: AtomicU64,
}

impl SparseWriter {
    /// Wrap a freshly created, empty file.
    pub fn new(file: File) -> SparseWriter {
        SparseWriter {
            file,
            pos: 0,
            skipped: AtomicU64::new(0),
            end: AtomicU64::new(0),
        }
    }

    /// Append `data` at the current sequential position.
    pub fn write(&mut self, data: &[u8]) -> Result<(), SourceError> {
        self.write_at(self.pos, data)?;
        self.pos += data.len() as u64;
        Ok(())
    }

    /// Write `data` at `offset` (usable from several threads).
    pub fn write_at(&self, offset: u64, data: &[u8]) -> Result<(), SourceError> {
        let (n, end) = write_sparse(&self.file, offset, data)
            .map_err(|e| SourceError::io("pwrite", format!("offset {offset}"), e))?;
        self.skipped.fetch_add(n, Ordering::Relaxed);
        self.end.fetch_max(end, Ordering::Relaxed);
        Ok(())
    }

    /// Bytes not written because they were zero.
    pub fn skipped(&self) -> u64 {
        self.skipped.load(Ordering::Relaxed)
    }

    /// Set the file length to `size` and return the file. The `ftruncate`
    /// is left out when the writes already ended exactly there: it would
    /// only dirty the inode once more (one system call and one journal
    /// update per restored file).
    pub fn finish(self, size: u64) -> Result<File, SourceError> {
        if self.end.load(Ordering::Relaxed) != size {
            self.file
                .set_len(size)
                .map_err(|e| SourceError::io("ftruncate", format!("size {size}"), e))?;
        }
        Ok(self.file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) | 1)
            .collect()
    }

    #[test]
    fn sparse_file_has_holes_and_right_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sparse");
        let file = File::create(&path).unwrap();
        let mut w = SparseWriter::new(file);
        let mut expect = Vec::new();
        let head = pattern(1000, 1);
        let zeros = vec![0u8; 1 << 20];
        let mid = pattern(5000, 7);
        w.write(&head).unwrap();
        expect.extend_from_slice(&head);
        w.write(&zeros).unwrap();
        expect.extend_from_slice(&zeros);
        w.write(&mid).unwrap();
        expect.extend_from_slice(&mid);
        w.write(&zeros).unwrap();
        expect.extend_from_slice(&zeros);
        assert!(w.skipped() >= 2 * (1 << 20) - 3 * HOLE_BLOCK);
        let f = w.finish(expect.len() as u64).unwrap();
        drop(f);
        let got = std::fs::read(&path).unwrap();
        assert_eq!(got.len(), expect.len());
        assert!(got == expect, "content differs");
        let md = std::fs::metadata(&path).unwrap();
        assert!(
            md.blocks() * 512 < md.size() / 4,
            "blocks {} size {}",
            md.blocks(),
            md.size()
        );
    }

    /// `finish` leaves out the `ftruncate` when the writes ended exactly at
    /// the size; trailing holes and a larger size still get their length.
    #[test]
    fn finish_gives_the_exact_length_with_or_without_truncating() {
        let dir = tempfile::tempdir().unwrap();
        let cases: [(&[&[u8]], u64); 4] = [
            (&[&pattern(5000, 2)], 5000),
            (&[&pattern(5000, 2), &[0u8; 3 * 4096]], 5000 + 3 * 4096),
            (&[&pattern(100, 3)], 4096),
            (&[], 0),
        ];
        for (i, (parts, size)) in cases.iter().enumerate() {
            let path = dir.path().join(format!("f{i}"));
            let mut w = SparseWriter::new(File::create(&path).unwrap());
            let mut want = Vec::new();
            for p in *parts {
                w.write(p).unwrap();
                want.extend_from_slice(p);
            }
            want.resize(*size as usize, 0);
            drop(w.finish(*size).unwrap());
            assert_eq!(std::fs::read(&path).unwrap(), want, "case {i}");
        }
    }

    #[test]
    fn unaligned_zero_runs_are_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = File::create(&path).unwrap();
        // zero run of 4095 bytes never covers an aligned block
        let mut data = pattern(10, 3);
        data.extend(std::iter::repeat_n(0u8, 4095));
        data.extend(pattern(10, 4));
        let skipped = write_at_sparse(&file, 100, &data).unwrap();
        assert_eq!(skipped, 0);
        let got = std::fs::read(&path).unwrap();
        assert_eq!(&got[100..], &data[..]);
        assert!(got[..100].iter().all(|&b| b == 0));
    }

    #[test]
    fn positional_writes_out_of_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let w = SparseWriter::new(File::create(&path).unwrap());
        let a = pattern(8192, 9);
        let b = vec![0u8; 3 * 4096];
        let c = pattern(777, 5);
        std::thread::scope(|s| {
            s.spawn(|| w.write_at(8192 + 3 * 4096, &c).unwrap());
            s.spawn(|| w.write_at(8192, &b).unwrap());
            s.spawn(|| w.write_at(0, &a).unwrap());
        });
        assert_eq!(w.skipped(), 3 * 4096);
        let total = (8192 + 3 * 4096 + 777) as u64;
        w.finish(total).unwrap();
        let got = std::fs::read(&path).unwrap();
        let mut want = a.clone();
        want.extend(&b);
        want.extend(&c);
        assert!(got == want);
    }

    #[test]
    fn plain_write_at() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = File::create(&path).unwrap();
        write_at(&file, 5, b"abc").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"\0\0\0\0\0abc");
    }
}
