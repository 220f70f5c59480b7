//! A tar writer that produces the bytes Go's `archive/tar` writes for the
//! headers restic's `dump` hands it (format left unspecified), so that
//! `bunker dump` and `restic dump` of the same snapshot are byte-identical.
//!
//! Go's rules, followed here:
//! - USTAR when every field fits (ASCII names of at most 100 bytes, or
//!   splittable into prefix and name; numbers in their octal fields; no
//!   extra records), else PAX: one `x` header (`dir/PaxHeaders.0/file`)
//!   whose records are sorted by key, then the main header with the fields
//!   that did not fit written as zero or truncated ASCII.
//! - Extra records (restic's `SCHILY.xattr.*`) always mean PAX.
//! - Data is padded to 512 bytes; the archive ends with two zero blocks.

use std::collections::BTreeMap;
use std::io::{self, Write};

const BLOCK: usize = 512;
const NAME: std::ops::Range<usize> = 0..100;
const MODE: std::ops::Range<usize> = 100..108;
const UID: std::ops::Range<usize> = 108..116;
const GID: std::ops::Range<usize> = 116..124;
const SIZE: std::ops::Range<usize> = 124..136;
const MTIME: std::ops::Range<usize> = 136..148;
const CHKSUM: std::ops::Range<usize> = 148..156;
const TYPEFLAG: usize = 156;
const LINKNAME: std::ops::Range<usize> = 157..257;
const MAGIC: std::ops::Range<usize> = 257..263;
const VERSION: std::ops::Range<usize> = 263..265;
const UNAME: std::ops::Range<usize> = 265..297;
const GNAME: std::ops::Range<usize> = 297..329;
const DEVMAJOR: std::ops::Range<usize> = 329..337;
const DEVMINOR: std::ops::Range<usize> = 337..345;
const PREFIX: std::ops::Range<usize> = 345..500;

pub const TYPE_REG: u8 = b'0';
pub const TYPE_SYMLINK: u8 = b'2';
pub const TYPE_DIR: u8 = b'5';
const TYPE_PAX: u8 = b'x';

/// One header, as restic fills Go's `tar.Header`.
pub struct Header {
    /// Full name (directories end in `/`).
    pub name: Vec<u8>,
    pub typeflag: u8,
    pub linkname: Vec<u8>,
    pub mode: i64,
    pub uid: i64,
    pub gid: i64,
    pub size: i64,
    /// Seconds since the epoch, already rounded.
    pub mtime: i64,
    pub uname: Vec<u8>,
    pub gname: Vec<u8>,
    /// Extra PAX records (`SCHILY.xattr.*`, `SCHILY.acl.*`).
    pub records: BTreeMap<Vec<u8>, Vec<u8>>,
}

/// Whether `x` fits an octal field of `n` bytes (Go's `fitsInOctal`).
fn fits_octal(n: usize, x: i64) -> bool {
    let bits = (n as u32 - 1) * 3;
    x >= 0 && (n >= 22 || x < 1i64 << bits)
}

fn is_ascii(s: &[u8]) -> bool {
    s.iter().all(|&b| b != 0 && b < 0x80)
}

/// Go's `toASCII`: drop every non-ASCII rune (all bytes >= 0x80) and NULs.
fn to_ascii(s: &[u8]) -> Vec<u8> {
    s.iter().copied().filter(|&b| b != 0 && b < 0x80).collect()
}

/// Go's `formatString`: copy (truncating), NUL-terminate when shorter, and
/// keep a truncated name from ending in `/`.
fn put_str(b: &mut [u8], s: &[u8]) {
    let n = s.len().min(b.len());
    b[..n].copy_from_slice(&s[..n]);
    if s.len() < b.len() {
        b[s.len()] = 0;
    } else if s.len() > b.len() && b[b.len() - 1] == b'/' {
        let mut m = b.len() - 1;
        while m > 0 && s[m - 1] == b'/' {
            m -= 1;
        }
        b[m] = 0;
    }
}

/// Go's `formatOctal`: zero-padded, NUL-terminated; 0 when it does not fit.
fn put_octal(b: &mut [u8], x: i64) {
    let x = if fits_octal(b.len(), x) { x } else { 0 };
    let digits = format!("{x:o}");
    let width = b.len() - 1;
    let s = if digits.len() < width {
        format!("{}{digits}", "0".repeat(width - digits.len()))
    } else {
        digits
    };
    put_str(b, s.as_bytes());
}

/// Go's `splitUSTARPath`.
fn split_ustar(name: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut len = name.len();
    if len <= 100 || !is_ascii(name) {
        return None;
    }
    if len > 156 {
        len = 156;
    } else if name[len - 1] == b'/' {
        len -= 1;
    }
    let i = name[..len].iter().rposition(|&b| b == b'/')?;
    let nlen = name.len() - i - 1;
    if i == 0 || nlen > 100 || nlen == 0 || i > 155 {
        return None;
    }
    Some((&name[..i], &name[i + 1..]))
}

/// Go's `formatPAXRecord`.
fn pax_record(k: &[u8], v: &[u8]) -> Vec<u8> {
    let base = k.len() + v.len() + 3;
    let mut size = base + base.to_string().len();
    if size.to_string().len() + base != size {
        size = base + size.to_string().len();
    }
    let mut r = size.to_string().into_bytes();
    r.push(b' ');
    r.extend_from_slice(k);
    r.push(b'=');
    r.extend_from_slice(v);
    r.push(b'\n');
    r
}

/// Go's `validPAXRecord` for the records written here.
pub fn valid_record_key(k: &[u8]) -> bool {
    !k.is_empty() && !k.contains(&b'=') && !k.contains(&0)
}

fn checksum_and_magic(blk: &mut [u8; BLOCK]) {
    blk[MAGIC].copy_from_slice(b"ustar\0");
    blk[VERSION].copy_from_slice(b"00");
    blk[CHKSUM].fill(b' ');
    let sum: i64 = blk.iter().map(|&b| i64::from(b)).sum();
    put_octal(&mut blk[CHKSUM.start..CHKSUM.start + 7], sum);
    blk[CHKSUM.end - 1] = b' ';
}

/// Writes entries and counts bytes for the padding.
pub struct TarWriter<W: Write> {
    out: W,
    /// Bytes of data still owed to the current entry.
    remaining: u64,
    /// Padding owed after the current entry's data.
    pad: usize,
}

impl<W: Write> TarWriter<W> {
    pub fn new(out: W) -> Self {
        TarWriter {
            out,
            remaining: 0,
            pad: 0,
        }
    }

    fn template(h: &Header, name: &[u8], ascii_only: bool) -> [u8; BLOCK] {
        let mut blk = [0u8; BLOCK];
        let s = |v: &[u8]| if ascii_only { to_ascii(v) } else { v.to_vec() };
        blk[TYPEFLAG] = h.typeflag;
        put_str(&mut blk[NAME], &s(name));
        put_str(&mut blk[LINKNAME], &s(&h.linkname));
        put_octal(&mut blk[MODE], h.mode);
        put_octal(&mut blk[UID], h.uid);
        put_octal(&mut blk[GID], h.gid);
        put_octal(&mut blk[SIZE], h.size);
        put_octal(&mut blk[MTIME], h.mtime);
        put_str(&mut blk[UNAME], &s(&h.uname));
        put_str(&mut blk[GNAME], &s(&h.gname));
        put_octal(&mut blk[DEVMAJOR], 0);
        put_octal(&mut blk[DEVMINOR], 0);
        blk
    }

    /// Start an entry; its `size` bytes of data follow through [`Self::data`].
    pub fn header(&mut self, h: &Header) -> io::Result<()> {
        self.finish_entry()?;
        let mut ustar = h.records.is_empty();
        let mut pax: BTreeMap<Vec<u8>, Vec<u8>> = h.records.clone();
        for (value, size, key) in [
            (&h.name, 100, &b"path"[..]),
            (&h.linkname, 100, b"linkpath"),
            (&h.uname, 32, b"uname"),
            (&h.gname, 32, b"gname"),
        ] {
            if !is_ascii(value) || value.len() > size {
                if key != b"path" || split_ustar(value).is_none() {
                    ustar = false;
                }
                pax.insert(key.to_vec(), value.clone());
            }
        }
        for (value, size, key) in [
            (h.uid, 8, &b"uid"[..]),
            (h.gid, 8, b"gid"),
            (h.size, 12, b"size"),
            (h.mtime, 12, b"mtime"),
        ] {
            if !fits_octal(size, value) {
                ustar = false;
                pax.insert(key.to_vec(), value.to_string().into_bytes());
            }
        }
        let blk = if ustar {
            let (prefix, name) = split_ustar(&h.name).unwrap_or((&[], &h.name));
            let mut blk = Self::template(h, name, false);
            put_str(&mut blk[PREFIX], prefix);
            blk
        } else {
            let data: Vec<u8> = pax.iter().flat_map(|(k, v)| pax_record(k, v)).collect();
            self.pax_header(&h.name, &data)?;
            Self::template(h, &h.name, true)
        };
        self.raw_header(blk, h.typeflag, h.size)
    }

    /// The `x` entry holding `data` for the entry named `name`.
    fn pax_header(&mut self, name: &[u8], data: &[u8]) -> io::Result<()> {
        let (dir, file) = match name.iter().rposition(|&b| b == b'/') {
            Some(i) => (&name[..=i], &name[i + 1..]),
            None => (&[][..], name),
        };
        let mut pname = dir.to_vec();
        pname.extend_from_slice(b"PaxHeaders.0");
        if !file.is_empty() {
            pname.push(b'/');
            pname.extend_from_slice(file);
        }
        let mut pname = to_ascii(&pname);
        pname.truncate(100);
        while pname.last() == Some(&b'/') {
            pname.pop();
        }
        let mut blk = [0u8; BLOCK];
        blk[TYPEFLAG] = TYPE_PAX;
        put_str(&mut blk[NAME], &pname);
        put_octal(&mut blk[MODE], 0);
        put_octal(&mut blk[UID], 0);
        put_octal(&mut blk[GID], 0);
        put_octal(&mut blk[SIZE], data.len() as i64);
        put_octal(&mut blk[MTIME], 0);
        self.raw_header(blk, TYPE_PAX, data.len() as i64)?;
        self.data(data)?;
        self.finish_entry()
    }

    fn raw_header(&mut self, mut blk: [u8; BLOCK], typeflag: u8, size: i64) -> io::Result<()> {
        checksum_and_magic(&mut blk);
        self.out.write_all(&blk)?;
        // Header-only types carry no data whatever their size field says.
        let size = if matches!(typeflag, TYPE_SYMLINK | TYPE_DIR) {
            0
        } else {
            size.max(0) as u64
        };
        self.remaining = size;
        self.pad = (BLOCK - (size % BLOCK as u64) as usize) % BLOCK;
        Ok(())
    }

    /// Data of the current entry; more than its size is an error.
    pub fn data(&mut self, buf: &[u8]) -> io::Result<()> {
        if buf.len() as u64 > self.remaining {
            return Err(io::Error::other("tar: entry data longer than its size"));
        }
        self.out.write_all(buf)?;
        self.remaining -= buf.len() as u64;
        Ok(())
    }

    fn finish_entry(&mut self) -> io::Result<()> {
        if self.remaining != 0 {
            return Err(io::Error::other(format!(
                "tar: entry data {} bytes shorter than its size",
                self.remaining
            )));
        }
        self.out.write_all(&[0u8; BLOCK][..self.pad])?;
        self.pad = 0;
        Ok(())
    }

    /// Pad the last entry and write the two zero blocks that end an archive.
    pub fn finish(mut self) -> io::Result<W> {
        self.finish_entry()?;
        self.out.write_all(&[0u8; 2 * BLOCK])?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_record_lengths_count_themselves() {
        assert_eq!(pax_record(b"mtime", b"-1"), b"12 mtime=-1\n");
        // 8 + 90 + 3 = 101, plus the three digits of the length = 104.
        let v = vec![b'a'; 90];
        let r = pax_record(b"SCHILY.x", &v);
        assert_eq!(r.len(), 104);
        assert!(r.starts_with(b"104 "));
        // Crossing a power of ten: 1 + 4 + 3 = 8, "8" -> 9, then "9" fits.
        assert_eq!(pax_record(b"k", b"vvvv"), b"9 k=vvvv\n");
        assert_eq!(pax_record(b"k", b"vvvvv"), b"11 k=vvvvv\n");
    }

    #[test]
    fn octal_fields_as_go_writes_them() {
        let mut b = [0xffu8; 8];
        put_octal(&mut b, 0o644);
        assert_eq!(&b, b"0000644\0");
        put_octal(&mut b, -1);
        assert_eq!(&b, b"0000000\0");
        assert!(fits_octal(12, 8_589_934_591));
        assert!(!fits_octal(12, 8_589_934_592));
        assert!(!fits_octal(12, -1));
    }

    #[test]
    fn long_names_split_into_prefix_when_they_can() {
        let name = format!("{}/{}", "d".repeat(120), "f".repeat(50));
        let (p, n) = split_ustar(name.as_bytes()).unwrap();
        assert_eq!(p.len(), 120);
        assert_eq!(n.len(), 50);
        assert!(split_ustar("é".repeat(60).as_bytes()).is_none());
        assert!(split_ustar(b"short").is_none());
    }
}
