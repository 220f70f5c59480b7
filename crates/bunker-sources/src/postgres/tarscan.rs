//! A pass-through reader that watches a tar stream go by and keeps copies
//! of a few small members (`backup_label`, `backup_manifest`,
//! `global/pg_control`), so a base backup can be chunked straight from
//! `pg_basebackup`'s output while we still learn what it contains.
//!
//! The scanner never changes or fails the stream: if the headers look wrong
//! it stops looking and lets the bytes through.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::sync::Arc;

use parking_lot::Mutex;

const BLOCK: usize = 512;

/// Captured members by name.
pub type Captured = Arc<Mutex<BTreeMap<String, Vec<u8>>>>;

enum State {
    /// Collecting a 512-byte header.
    Header,
    /// Inside a member's data (`remaining` incl. padding; `capture` if wanted).
    Data {
        remaining: u64,
        size: u64,
        capture: Option<String>,
    },
    /// End of archive seen, or the stream did not look like tar.
    Done,
}

/// See the module documentation.
pub struct TarScan<R> {
    inner: R,
    wanted: Vec<String>,
    limit: usize,
    header: Vec<u8>,
    current: Vec<u8>,
    state: State,
    captured: Captured,
    bytes: u64,
}

fn octal_or_base256(field: &[u8]) -> Option<u64> {
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        // GNU base-256: big-endian, first byte's top bit is the marker.
        let mut v: u64 = u64::from(field[0] & 0x7f);
        for b in &field[1..] {
            v = v.checked_mul(256)?.checked_add(u64::from(*b))?;
        }
        return Some(v);
    }
    let s: String = field
        .iter()
        .take_while(|b| **b != 0)
        .map(|b| *b as char)
        .collect();
    let s = s.trim();
    if s.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(s, 8).ok()
}

fn cstr(field: &[u8]) -> String {
    let end = field.iter().position(|b| *b == 0).unwrap_or(field.len());
    String::from_utf8_lossy(&field[..end]).into_owned()
}

impl<R: Read> TarScan<R> {
    /// Watch `inner`; keep members whose path (without a leading `./`) is in
    /// `wanted` and whose size is at most `limit` bytes.
    pub fn new(inner: R, wanted: &[&str], limit: usize) -> TarScan<R> {
        TarScan {
            inner,
            wanted: wanted.iter().map(|s| s.to_string()).collect(),
            limit,
            header: Vec::with_capacity(BLOCK),
            current: Vec::new(),
            state: State::Header,
            captured: Arc::new(Mutex::new(BTreeMap::new())),
            bytes: 0,
        }
    }

    /// The shared map of captured members (filled as the stream is read).
    pub fn captured(&self) -> Captured {
        self.captured.clone()
    }

    /// Bytes passed through so far.
    pub fn bytes_seen(&self) -> u64 {
        self.bytes
    }

    fn on_header(&mut self) {
        let h = std::mem::take(&mut self.header);
        if h.iter().all(|b| *b == 0) {
            // End-of-archive marker (or padding): stay in header mode.
            return;
        }
        let Some(size) = octal_or_base256(&h[124..136]) else {
            self.state = State::Done;
            return;
        };
        let mut name = cstr(&h[0..100]);
        if &h[257..262] == b"ustar" {
            let prefix = cstr(&h[345..500]);
            if !prefix.is_empty() {
                name = format!("{prefix}/{name}");
            }
        }
        let name = name.trim_start_matches("./").to_string();
        let typeflag = h[156];
        let regular = typeflag == b'0' || typeflag == 0;
        let capture = (regular
            && self.wanted.contains(&name)
            && usize::try_from(size).is_ok_and(|s| s <= self.limit))
        .then_some(name);
        let padded = size.div_ceil(BLOCK as u64) * BLOCK as u64;
        self.current.clear();
        self.state = if padded == 0 {
            if let Some(n) = capture {
                self.captured.lock().insert(n, Vec::new());
            }
            State::Header
        } else {
            State::Data {
                remaining: padded,
                size,
                capture,
            }
        };
    }

    fn observe(&mut self, mut buf: &[u8]) {
        while !buf.is_empty() {
            match &mut self.state {
                State::Done => return,
                State::Header => {
                    let take = (BLOCK - self.header.len()).min(buf.len());
                    self.header.extend_from_slice(&buf[..take]);
                    buf = &buf[take..];
                    if self.header.len() == BLOCK {
                        self.on_header();
                    }
                }
                State::Data {
                    remaining,
                    size,
                    capture,
                } => {
                    let take = usize::try_from(*remaining)
                        .unwrap_or(usize::MAX)
                        .min(buf.len());
                    if capture.is_some() {
                        let want = usize::try_from(*size)
                            .unwrap_or(usize::MAX)
                            .saturating_sub(self.current.len())
                            .min(take);
                        self.current.extend_from_slice(&buf[..want]);
                    }
                    *remaining -= take as u64;
                    buf = &buf[take..];
                    if *remaining == 0 {
                        if let Some(n) = capture.take() {
                            let data = std::mem::take(&mut self.current);
                            self.captured.lock().insert(n, data);
                        }
                        self.state = State::Header;
                    }
                }
            }
        }
    }
}

impl<R: Read> Read for TarScan<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.observe(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(members: &[(&str, Vec<u8>)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in members {
            let mut h = tar::Header::new_ustar();
            h.set_size(data.len() as u64);
            h.set_mode(0o600);
            h.set_cksum();
            b.append_data(&mut h, name, data.as_slice()).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn captures_wanted_members_through_odd_reads() {
        let big: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let tar = tar_of(&[
            ("base/1/1234", big.clone()),
            (
                "backup_label",
                b"START WAL LOCATION: 0/2 (file x)\n".to_vec(),
            ),
            ("./global/pg_control", vec![7u8; 8192]),
            ("backup_manifest", vec![b'{'; 2000]),
        ]);
        // Read in awkward sizes to cross header and data boundaries.
        let mut scan = TarScan::new(
            tar.as_slice(),
            &["backup_label", "global/pg_control", "backup_manifest"],
            4096,
        );
        let cap = scan.captured();
        let mut out = Vec::new();
        let mut buf = [0u8; 333];
        loop {
            let n = scan.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        assert_eq!(out, tar, "the stream passes unchanged");
        assert_eq!(scan.bytes_seen(), tar.len() as u64);
        let cap = cap.lock();
        assert_eq!(
            cap.get("backup_label").map(|v| v.as_slice()),
            Some(&b"START WAL LOCATION: 0/2 (file x)\n"[..])
        );
        assert!(
            !cap.contains_key("global/pg_control"),
            "over the size limit"
        );
        assert_eq!(cap.get("backup_manifest").map(|v| v.len()), Some(2000));
        assert!(!cap.contains_key("base/1/1234"));
    }

    #[test]
    fn garbage_passes_through() {
        let junk = vec![0x41u8; 5000];
        let mut scan = TarScan::new(junk.as_slice(), &["backup_label"], 1024);
        let mut out = Vec::new();
        scan.read_to_end(&mut out).unwrap();
        assert_eq!(out, junk);
        assert!(scan.captured().lock().is_empty());
    }

    #[test]
    fn base256_sizes() {
        let mut f = [0u8; 12];
        f[0] = 0x80;
        f[11] = 5;
        f[10] = 1;
        assert_eq!(octal_or_base256(&f), Some(261));
        assert_eq!(octal_or_base256(b"00000001750\0"), Some(1000));
        assert_eq!(octal_or_base256(b"zz\0"), None);
    }
}
