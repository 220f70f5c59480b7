//! WAL positions (LSNs), timelines and WAL file names.
//!
//! PostgreSQL names a WAL segment `TTTTTTTTXXXXXXXXYYYYYYYY` (24 upper-case hex
//! digits): timeline, then the segment number split into a "log" part and a
//! "seg" part, where one log id holds `0x1_0000_0000 / segment_size`
//! segments. Beside segments the archive holds timeline history files
//! (`TTTTTTTT.history`), backup history files
//! (`<segment>.XXXXXXXX.backup`) and, from `pg_receivewal`, partial segments
//! (`<segment>.partial`).

use std::fmt;
use std::str::FromStr;

use super::PgError;

/// The default WAL segment size (16 MiB).
pub const DEFAULT_SEGMENT_SIZE: u64 = 16 * 1024 * 1024;

/// A position in the write-ahead log, written `X/Y` (hex halves).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(pub u64);

impl FromStr for Lsn {
    type Err = PgError;
    fn from_str(s: &str) -> Result<Lsn, PgError> {
        let bad = || PgError::Parse {
            what: "LSN",
            value: s.to_string(),
        };
        let (hi, lo) = s.trim().split_once('/').ok_or_else(bad)?;
        if hi.is_empty() || lo.is_empty() || hi.len() > 8 || lo.len() > 8 {
            return Err(bad());
        }
        let hi = u32::from_str_radix(hi, 16).map_err(|_| bad())?;
        let lo = u32::from_str_radix(lo, 16).map_err(|_| bad())?;
        Ok(Lsn((u64::from(hi) << 32) | u64::from(lo)))
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

impl Lsn {
    /// The number of the segment holding this position.
    pub fn segno(self, segment_size: u64) -> u64 {
        self.0 / segment_size.max(1)
    }
}

/// Segments per log id for a segment size.
fn segs_per_id(segment_size: u64) -> u64 {
    (0x1_0000_0000u64 / segment_size.max(1)).max(1)
}

/// One WAL segment: timeline and segment number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Segment {
    pub timeline: u32,
    pub segno: u64,
}

impl Segment {
    /// The segment holding `lsn` on `timeline`.
    pub fn containing(timeline: u32, lsn: Lsn, segment_size: u64) -> Segment {
        Segment {
            timeline,
            segno: lsn.segno(segment_size),
        }
    }

    /// The 24-character file name.
    pub fn file_name(&self, segment_size: u64) -> String {
        let per = segs_per_id(segment_size);
        format!(
            "{:08X}{:08X}{:08X}",
            self.timeline,
            self.segno / per,
            self.segno % per
        )
    }

    /// The first position of the segment.
    pub fn start_lsn(&self, segment_size: u64) -> Lsn {
        Lsn(self.segno.saturating_mul(segment_size))
    }
}

/// The kinds of files `archive_command` hands over.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum WalFileName {
    /// A full segment: timeline, log id and segment-within-log as named.
    Segment { timeline: u32, log: u32, seg: u32 },
    /// A partial segment (`.partial`).
    Partial { timeline: u32, log: u32, seg: u32 },
    /// A timeline history file.
    History { timeline: u32 },
    /// A backup history file (`.backup`), with the start offset in its segment.
    BackupHistory {
        timeline: u32,
        log: u32,
        seg: u32,
        offset: u32,
    },
}

fn hex8(s: &str) -> Option<u32> {
    if s.len() == 8 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        u32::from_str_radix(s, 16).ok()
    } else {
        None
    }
}

fn segment_parts(s: &str) -> Option<(u32, u32, u32)> {
    if s.len() != 24 || !s.is_ascii() {
        return None;
    }
    Some((hex8(&s[0..8])?, hex8(&s[8..16])?, hex8(&s[16..24])?))
}

impl WalFileName {
    /// Parse a file name as PostgreSQL passes it in `%f`; anything else
    /// (paths, other files) is refused.
    pub fn parse(name: &str) -> Result<WalFileName, PgError> {
        let bad = || PgError::Parse {
            what: "WAL file name",
            value: name.to_string(),
        };
        if let Some((t, l, s)) = segment_parts(name) {
            return Ok(WalFileName::Segment {
                timeline: t,
                log: l,
                seg: s,
            });
        }
        if let Some(base) = name.strip_suffix(".partial") {
            let (t, l, s) = segment_parts(base).ok_or_else(bad)?;
            return Ok(WalFileName::Partial {
                timeline: t,
                log: l,
                seg: s,
            });
        }
        if let Some(base) = name.strip_suffix(".history") {
            let t = hex8(base).ok_or_else(bad)?;
            return Ok(WalFileName::History { timeline: t });
        }
        if let Some(base) = name.strip_suffix(".backup") {
            let (seg, off) = base.split_once('.').ok_or_else(bad)?;
            let (t, l, s) = segment_parts(seg).ok_or_else(bad)?;
            let offset = hex8(off).ok_or_else(bad)?;
            return Ok(WalFileName::BackupHistory {
                timeline: t,
                log: l,
                seg: s,
                offset,
            });
        }
        Err(bad())
    }

    /// The timeline of the file.
    pub fn timeline(&self) -> u32 {
        match self {
            WalFileName::Segment { timeline, .. }
            | WalFileName::Partial { timeline, .. }
            | WalFileName::History { timeline }
            | WalFileName::BackupHistory { timeline, .. } => *timeline,
        }
    }

    /// The segment this file names or belongs to (`None` for history files).
    pub fn segment(&self, segment_size: u64) -> Option<Segment> {
        let per = segs_per_id(segment_size);
        match self {
            WalFileName::Segment { timeline, log, seg }
            | WalFileName::Partial { timeline, log, seg }
            | WalFileName::BackupHistory {
                timeline, log, seg, ..
            } => Some(Segment {
                timeline: *timeline,
                segno: u64::from(*log) * per + u64::from(*seg),
            }),
            WalFileName::History { .. } => None,
        }
    }

    /// Whether this is a complete segment.
    pub fn is_segment(&self) -> bool {
        matches!(self, WalFileName::Segment { .. })
    }
}

/// One line of a timeline history file: the parent timeline and the
/// position where the child timeline branched off it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryEntry {
    pub parent: u32,
    pub switch_point: Lsn,
    pub reason: String,
}

/// Parse a `.history` file (`parentTLI <tab> switchpoint <tab> reason`;
/// `#` comments and blank lines ignored).
pub fn parse_history(text: &str) -> Result<Vec<HistoryEntry>, PgError> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut parts = line.splitn(3, char::is_whitespace);
        let bad = || PgError::Parse {
            what: "timeline history line",
            value: line.to_string(),
        };
        let parent = parts
            .next()
            .and_then(|p| p.parse::<u32>().ok())
            .ok_or_else(bad)?;
        let switch_point: Lsn = parts.next().ok_or_else(bad)?.parse()?;
        let reason = parts.next().unwrap_or("").trim().to_string();
        out.push(HistoryEntry {
            parent,
            switch_point,
            reason,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsn_round_trip() {
        let l: Lsn = "16/B374D848".parse().unwrap();
        assert_eq!(l.0, 0x16_B374_D848);
        assert_eq!(l.to_string(), "16/B374D848");
        assert_eq!("0/0".parse::<Lsn>().unwrap(), Lsn(0));
        for bad in ["", "1", "/1", "1/", "x/1", "123456789/0", "1/2/3"] {
            assert!(bad.parse::<Lsn>().is_err(), "{bad}");
        }
    }

    #[test]
    fn segment_names_match_postgres() {
        let size = DEFAULT_SEGMENT_SIZE;
        let l: Lsn = "0/2000028".parse().unwrap();
        let s = Segment::containing(1, l, size);
        assert_eq!(s.file_name(size), "000000010000000000000002");
        let l: Lsn = "1/FF000000".parse().unwrap();
        assert_eq!(
            Segment::containing(3, l, size).file_name(size),
            "0000000300000001000000FF"
        );
        // 64 MiB segments: 64 per log id.
        let big = 64 << 20;
        let l: Lsn = "2/8000000".parse().unwrap();
        assert_eq!(
            Segment::containing(1, l, big).file_name(big),
            "000000010000000200000002"
        );
        let parsed = WalFileName::parse("0000000300000001000000FF").unwrap();
        assert_eq!(
            parsed.segment(size),
            Some(Segment::containing(3, l_of("1/FF000000"), size))
        );
    }

    fn l_of(s: &str) -> Lsn {
        s.parse().unwrap()
    }

    #[test]
    fn file_kinds() {
        assert_eq!(
            WalFileName::parse("00000002.history").unwrap(),
            WalFileName::History { timeline: 2 }
        );
        let b = WalFileName::parse("000000010000000000000002.00000028.backup").unwrap();
        assert_eq!(
            b,
            WalFileName::BackupHistory {
                timeline: 1,
                log: 0,
                seg: 2,
                offset: 0x28
            }
        );
        assert!(!b.is_segment());
        assert!(matches!(
            WalFileName::parse("000000010000000000000002.partial").unwrap(),
            WalFileName::Partial { .. }
        ));
        for bad in [
            "",
            "../000000010000000000000002",
            "pg_wal/000000010000000000000002",
            "00000001000000000000000G",
            "0000000100000000000000021",
            "00000002.histor",
            "x.history",
            "000000010000000000000002.backup",
        ] {
            assert!(WalFileName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn history_files() {
        let h = parse_history(
            "1\t0/3000090\tno recovery target specified\n\n2\t0/5000000\tbefore 2024-01-01 00:00:00+00\n",
        )
        .unwrap();
        assert_eq!(h.len(), 2);
        assert_eq!(h[0].parent, 1);
        assert_eq!(h[0].switch_point, l_of("0/3000090"));
        assert_eq!(h[1].reason, "before 2024-01-01 00:00:00+00");
        assert!(parse_history("garbage line").is_err());
    }
}
