//! Writing large new files past the page cache (`O_DIRECT`).
//!
//! A pack is written once, fsynced at once and not read again by the backup
//! that wrote it. Through the page cache, every 4 KiB of it first takes a
//! fresh cache page; on a virtual machine whose free memory goes back to the
//! host (free page reporting, ballooning: most cloud VMs) each such page is
//! a fault on the host, and the kernel's copy into the cache became the
//! costliest system call of a backup: 10.6% of the CPU of a 2 GiB backup
//! (`copy_folio_from_iter_atomic`). Writing 512 MiB after dropping the page
//! cache took 0.64–1.33 s of system time buffered and 0.10 s direct. It also
//! keeps a backup from evicting the page cache of the machine it protects.
//!
//! `O_DIRECT` needs buffer addresses, lengths and file offsets aligned to the
//! device's logical block, so the data goes through a per-thread staging
//! buffer aligned to [`ALIGN`], [`PIECE`] bytes per write; the unaligned tail
//! is written through the cache. File systems that refuse `O_DIRECT`
//! (`EINVAL`: tmpfs on older kernels, some FUSE file systems) get a normal
//! write. Only files of at least [`MIN_DIRECT`] bytes go direct: keys, locks,
//! snapshots and small indexes are not worth the extra system calls.

use std::cell::RefCell;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// Memory and file-offset alignment: 4096 covers every logical block size
/// in use (512 and 4096).
const ALIGN: usize = 4096;
/// Bytes per direct write (a multiple of [`ALIGN`]), and the size of each
/// uploader thread's staging buffer: 512 KiB keeps four uploaders' buffers at
/// 2 MiB of resident memory, for 32 writes per 16 MiB pack. 2 MiB pieces
/// cost a kernel-tree backup 2-4 MiB more peak memory at the same speed.
const PIECE: usize = 512 << 10;
/// Smaller files go through the page cache.
pub(crate) const MIN_DIRECT: usize = 1 << 20;

thread_local! {
    /// `PIECE + ALIGN` bytes, so that an aligned `PIECE` fits wherever the
    /// allocator put it. Kept for the thread's next file.
    static STAGING: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Writes `data` at offset 0 of the new, empty `file`, past the page cache
/// where the file system allows (see the module documentation). Does not
/// sync: the caller fsyncs as before, which also flushes the device cache.
pub(crate) fn write_all(file: &File, data: &[u8]) -> io::Result<()> {
    write_all_with(file, data, |file, piece, off| file.write_all_at(piece, off))
}

/// [`write_all`] with the direct writes made by `write_piece` (tests inject
/// refusals and failures through it).
fn write_all_with(
    file: &File,
    data: &[u8],
    write_piece: impl FnMut(&File, &[u8], u64) -> io::Result<()>,
) -> io::Result<()> {
    let mut done = 0;
    if data.len() >= MIN_DIRECT && set_direct(file, true).is_ok() {
        let aligned = data.len() / ALIGN * ALIGN;
        let (written, result) = STAGING.with(|cell| match cell.try_borrow_mut() {
            Ok(mut stage) => write_direct(file, &data[..aligned], &mut stage, write_piece),
            Err(_) => (0, Ok(())),
        });
        done = written;
        // Direct I/O off again for the tail (and for any fallback).
        set_direct(file, false)?;
        match result {
            Ok(()) => {}
            // Refused by the file system: write the rest through the cache.
            Err(e) if e.kind() == io::ErrorKind::InvalidInput => {}
            Err(e) => return Err(e),
        }
    }
    file.write_all_at(&data[done..], done as u64)
}

/// Writes the aligned `data` at offset 0 through `stage`. Returns how many
/// bytes are known written, with the first error.
fn write_direct(
    file: &File,
    data: &[u8],
    stage: &mut Vec<u8>,
    mut write_piece: impl FnMut(&File, &[u8], u64) -> io::Result<()>,
) -> (usize, io::Result<()>) {
    if stage.len() < PIECE + ALIGN {
        *stage = vec![0; PIECE + ALIGN];
    }
    let start = stage.as_ptr().align_offset(ALIGN);
    let Some(stage) = stage.get_mut(start..start + PIECE) else {
        return (0, Err(io::ErrorKind::InvalidInput.into()));
    };
    let mut off = 0;
    while off < data.len() {
        let n = (data.len() - off).min(PIECE);
        stage[..n].copy_from_slice(&data[off..off + n]);
        if let Err(e) = write_piece(file, &stage[..n], off as u64) {
            // A piece may be partly written; the fallback rewrites it whole.
            return (off, Err(e));
        }
        off += n;
    }
    (off, Ok(()))
}

/// Turns `O_DIRECT` on or off for `file`.
#[cfg(target_os = "linux")]
fn set_direct(file: &File, on: bool) -> io::Result<()> {
    use rustix::fs::{fcntl_getfl, fcntl_setfl, OFlags};
    let flags = fcntl_getfl(file)?;
    let flags = if on {
        flags | OFlags::DIRECT
    } else {
        flags - OFlags::DIRECT
    };
    fcntl_setfl(file, flags)?;
    Ok(())
}

/// Elsewhere every write goes through the cache.
#[cfg(not(target_os = "linux"))]
fn set_direct(_file: &File, on: bool) -> io::Result<()> {
    if on {
        Err(io::ErrorKind::Unsupported.into())
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 4093) as u8).collect()
    }

    #[test]
    fn every_length_reads_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        for len in [
            0,
            1,
            MIN_DIRECT - 1,
            MIN_DIRECT,
            MIN_DIRECT + 1,
            PIECE,
            PIECE + ALIGN,
            3 * PIECE + 4095,
            5 * PIECE + 12_345,
        ] {
            let path = dir.path().join(format!("f{len}"));
            let data = pattern(len);
            let file = File::create_new(&path).unwrap();
            write_all(&file, &data).unwrap();
            file.sync_all().unwrap();
            drop(file);
            assert_eq!(std::fs::read(&path).unwrap(), data, "length {len}");
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn direct_io_is_off_after_the_write() {
        use rustix::fs::{fcntl_getfl, OFlags};
        let dir = tempfile::tempdir().unwrap();
        let file = File::create_new(dir.path().join("f")).unwrap();
        write_all(&file, &pattern(MIN_DIRECT + 100)).unwrap();
        assert!(!fcntl_getfl(&file).unwrap().contains(OFlags::DIRECT));
    }

    /// Whether `file`'s file system takes the flag (left off again); says
    /// so when it does not, for the injection tests below to skip.
    #[cfg(target_os = "linux")]
    fn takes_direct_flag(file: &File) -> bool {
        if set_direct(file, true).is_err() {
            eprintln!("skipped: the temporary directory's file system refuses the O_DIRECT flag");
            return false;
        }
        set_direct(file, false).unwrap();
        true
    }

    /// A file system that accepts the flag but refuses the writes (the
    /// `EINVAL` of tmpfs before Linux 6.6 and of some FUSE file systems),
    /// here after a first piece went through and half of the second was
    /// written with wrong bytes: the rest is rewritten through the cache.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_refused_direct_write_falls_back_to_the_page_cache() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let data = pattern(3 * PIECE + 777);
        let file = File::create_new(&path).unwrap();
        if !takes_direct_flag(&file) {
            return;
        }
        let mut pieces = 0;
        write_all_with(&file, &data, |file, piece, off| {
            pieces += 1;
            if pieces == 1 {
                return file.write_all_at(piece, off);
            }
            file.write_all_at(&vec![0xee; piece.len() / 2], off)?;
            Err(io::Error::from_raw_os_error(22))
        })
        .unwrap();
        drop(file);
        assert_eq!(pieces, 2);
        assert_eq!(std::fs::read(&path).unwrap(), data);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_failed_direct_write_is_an_error_not_a_fallback() {
        let dir = tempfile::tempdir().unwrap();
        let file = File::create_new(dir.path().join("f")).unwrap();
        if !takes_direct_flag(&file) {
            return;
        }
        let err = write_all_with(&file, &pattern(2 * PIECE), |_, _, _| {
            Err(io::Error::from_raw_os_error(28))
        })
        .unwrap_err();
        assert_eq!(err.raw_os_error(), Some(28));
    }

    #[test]
    fn a_second_file_reuses_the_staging_buffer_without_leaking_old_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let big = pattern(3 * PIECE);
        let small: Vec<u8> = vec![0xa5; MIN_DIRECT + ALIGN];
        for (name, data) in [("big", &big), ("small", &small)] {
            let path = dir.path().join(name);
            let file = File::create_new(&path).unwrap();
            write_all(&file, data).unwrap();
            drop(file);
            assert_eq!(&std::fs::read(&path).unwrap(), data);
        }
    }
}
