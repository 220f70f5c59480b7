//! The limits of one prune run: how much unused space may stay in kept packs
//! (`--max-unused`) and how much may be repacked (`--max-repack-size`), with
//! the size syntax both share.

use serde::Serialize;

use crate::error::{RepoError, Result};

/// How much unused space may remain in partly-used packs (`--max-unused`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub enum MaxUnused {
    /// A percentage of the used size (restic's `5%` default).
    Percent(f64),
    /// An absolute number of bytes.
    Bytes(u64),
    /// Never repack for space.
    Unlimited,
}

impl Default for MaxUnused {
    fn default() -> Self {
        MaxUnused::Percent(5.0)
    }
}

impl MaxUnused {
    /// Parses `5%`, `unlimited`, or a size like `100M`, `2G`, `512` (bytes).
    pub fn parse(s: &str) -> Result<MaxUnused> {
        let t = s.trim();
        let bad = || {
            RepoError::Invalid(format!(
                "invalid --max-unused {s:?}: expected a percentage (5%), a size (100M) or `unlimited`"
            ))
        };
        if t.eq_ignore_ascii_case("unlimited") {
            return Ok(MaxUnused::Unlimited);
        }
        if let Some(p) = t.strip_suffix('%') {
            let v: f64 = p.trim().parse().map_err(|_| bad())?;
            if !(0.0..=100.0).contains(&v) || v.is_nan() {
                return Err(bad());
            }
            return Ok(MaxUnused::Percent(v));
        }
        size_bytes(t).map(MaxUnused::Bytes).ok_or_else(bad)
    }

    /// Unused bytes tolerated for `used` bytes in use (restic's formula:
    /// `p%` means unused may be `p%` of the total after pruning).
    pub fn limit(&self, used: u64) -> u64 {
        match *self {
            MaxUnused::Unlimited => u64::MAX,
            MaxUnused::Bytes(b) => b,
            MaxUnused::Percent(p) if p >= 100.0 => u64::MAX,
            MaxUnused::Percent(p) => (used as f64 * p / (100.0 - p)) as u64,
        }
    }
}

/// Parses the `--max-repack-size` value: a size such as `500M`, `2G` or
/// `1048576` (bytes), with the suffixes `--max-unused` accepts.
pub fn parse_max_repack_size(s: &str) -> Result<u64> {
    size_bytes(s.trim()).ok_or_else(|| {
        RepoError::Invalid(format!(
            "invalid --max-repack-size {s:?}: expected a size such as 500M, 2G or 1048576 (bytes)"
        ))
    })
}

/// A size: a whole number with an optional binary suffix `B`, `K`, `M`, `G`
/// or `T` (any case). `None` when it is not one, or overflows.
fn size_bytes(t: &str) -> Option<u64> {
    let (num, mult) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m: u64 = match c.to_ascii_uppercase() {
                'B' => 1,
                'K' => 1 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                'T' => 1 << 40,
                _ => return None,
            };
            (&t[..i], m)
        }
        _ => (t, 1),
    };
    let n: u64 = num.trim().parse().ok()?;
    n.checked_mul(mult)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_unused_parsing_and_limits() {
        assert_eq!(MaxUnused::parse("5%").ok(), Some(MaxUnused::Percent(5.0)));
        assert_eq!(
            MaxUnused::parse("unlimited").ok(),
            Some(MaxUnused::Unlimited)
        );
        assert_eq!(
            MaxUnused::parse("10M").ok(),
            Some(MaxUnused::Bytes(10 << 20))
        );
        assert_eq!(MaxUnused::parse("512").ok(), Some(MaxUnused::Bytes(512)));
        assert!(MaxUnused::parse("150%").is_err());
        assert!(MaxUnused::parse("lots").is_err());
        assert_eq!(MaxUnused::Percent(50.0).limit(100), 100);
        assert_eq!(MaxUnused::Percent(0.0).limit(100), 0);
        assert_eq!(MaxUnused::Unlimited.limit(1), u64::MAX);
    }

    #[test]
    fn max_repack_size_parsing() {
        assert_eq!(parse_max_repack_size("500M").ok(), Some(500 << 20));
        assert_eq!(parse_max_repack_size("2g").ok(), Some(2 << 30));
        assert_eq!(parse_max_repack_size(" 4096 ").ok(), Some(4096));
        assert_eq!(parse_max_repack_size("0").ok(), Some(0));
        for bad in [
            "",
            "lots",
            "5%",
            "unlimited",
            "-1M",
            "1.5G",
            "3X",
            "99999999T",
        ] {
            let err = parse_max_repack_size(bad).expect_err(bad).to_string();
            assert!(err.starts_with("invalid --max-repack-size"), "{err}");
            assert!(!err.contains('\n'), "{err}");
        }
    }
}
