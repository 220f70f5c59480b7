//! zstd compression settings and helpers (repository format v2).

use std::cell::RefCell;
use std::fmt;
use std::io::Read;
use std::str::FromStr;

use crate::error::FormatError;

/// The user's compression choice.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Compression {
    /// Store blobs uncompressed.
    Off,
    /// restic's default ("auto", zstd's default speed, level 3).
    #[default]
    Auto,
    /// Best ratio (level 19).
    Max,
    /// An explicit zstd level, 1..=22.
    Level(i32),
}

impl Compression {
    /// The zstd level to use, `None` for [`Compression::Off`].
    pub fn zstd_level(&self) -> Option<i32> {
        match self {
            Compression::Off => None,
            Compression::Auto => Some(3),
            Compression::Max => Some(19),
            Compression::Level(l) => Some(*l),
        }
    }
}

impl FromStr for Compression {
    type Err = FormatError;
    fn from_str(s: &str) -> Result<Compression, FormatError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "off" => Ok(Compression::Off),
            "auto" => Ok(Compression::Auto),
            "max" => Ok(Compression::Max),
            other => match other.parse::<i32>() {
                Ok(l) if (1..=22).contains(&l) => Ok(Compression::Level(l)),
                _ => Err(FormatError::invalid(
                    "compression",
                    format!("{s:?}: expected \"off\", \"auto\", \"max\" or a zstd level 1..=22"),
                )),
            },
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Compression::Off => f.write_str("off"),
            Compression::Auto => f.write_str("auto"),
            Compression::Max => f.write_str("max"),
            Compression::Level(l) => write!(f, "{l}"),
        }
    }
}

impl serde::Serialize for Compression {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Compression {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Compression, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Compression;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"off\", \"auto\", \"max\" or a zstd level 1..=22")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Compression, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Compression, E> {
                v.to_string().parse().map_err(E::custom)
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Compression, E> {
                v.to_string().parse().map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// A zstd context and output buffer kept per thread: creating a context per
/// blob costs about a megabyte of fresh (page-faulted) memory every time.
struct Scratch {
    level: i32,
    compressor: zstd::bulk::Compressor<'static>,
    out: Vec<u8>,
}

/// Output buffers up to this capacity stay with the thread (a chunk of the
/// chunker's maximum size fits).
const KEEP_OUTPUT_CAPACITY: usize = 9 << 20;

thread_local! {
    static SCRATCH: RefCell<Option<Scratch>> = const { RefCell::new(None) };
    /// A decompression context per thread: creating one per blob showed up
    /// in restore profiles (`ZSTD_createDCtx`, ~1.5% of a kernel-tree restore).
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { RefCell::new(None) };
}

fn compression_error(e: std::io::Error) -> FormatError {
    FormatError::Compression(e.to_string())
}

/// Compresses `data` into `out` (replacing its contents) with `compressor`.
fn compress_with(
    compressor: &mut zstd::bulk::Compressor<'static>,
    data: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), FormatError> {
    out.clear();
    out.reserve(zstd::zstd_safe::compress_bound(data.len()));
    compressor
        .compress_to_buffer(data, out)
        .map_err(compression_error)?;
    Ok(())
}

/// zstd-compresses `data` into one frame (content size recorded) and hands
/// the frame to `f`, without allocating: the thread's reusable context and
/// buffer are used (a fresh pair if `f` itself compresses).
pub fn with_compressed<R>(
    data: &[u8],
    level: i32,
    f: impl FnOnce(&[u8]) -> R,
) -> Result<R, FormatError> {
    SCRATCH.with(|cell| {
        let Ok(mut slot) = cell.try_borrow_mut() else {
            // Re-entered from `f`: use a one-off context.
            let mut compressor = zstd::bulk::Compressor::new(level).map_err(compression_error)?;
            let mut out = Vec::new();
            compress_with(&mut compressor, data, &mut out)?;
            return Ok(f(&out));
        };
        if slot.as_ref().is_none_or(|s| s.level != level) {
            *slot = Some(Scratch {
                level,
                compressor: zstd::bulk::Compressor::new(level).map_err(compression_error)?,
                out: Vec::new(),
            });
        }
        let Some(scratch) = slot.as_mut() else {
            return Err(FormatError::Compression("no compression context".into()));
        };
        compress_with(&mut scratch.compressor, data, &mut scratch.out)?;
        let r = f(&scratch.out);
        if scratch.out.capacity() > KEEP_OUTPUT_CAPACITY {
            // A rare huge input (a large index file) must not pin its memory.
            scratch.out = Vec::new();
        }
        Ok(r)
    })
}

/// zstd-compresses `data` into one frame (content size recorded).
pub fn compress(data: &[u8], level: i32) -> Result<Vec<u8>, FormatError> {
    with_compressed(data, level, <[u8]>::to_vec)
}

/// Decompresses `data`, which must expand to exactly `expected_len` bytes;
/// never allocates more than that.
pub fn decompress(data: &[u8], expected_len: usize) -> Result<Vec<u8>, FormatError> {
    // One spare byte detects data that expands beyond the expected length.
    let mut out = Vec::with_capacity(expected_len.saturating_add(1));
    let n = DECOMPRESSOR.with(|cell| match cell.try_borrow_mut() {
        Ok(mut slot) => {
            if slot.is_none() {
                *slot = Some(zstd::bulk::Decompressor::new()?);
            }
            match slot.as_mut() {
                Some(dec) => dec.decompress_to_buffer(data, &mut out),
                None => Err(std::io::Error::other("no decompression context")),
            }
        }
        Err(_) => zstd::bulk::Decompressor::new()?.decompress_to_buffer(data, &mut out),
    });
    let n = n.map_err(|e| FormatError::Compression(e.to_string()))?;
    if n != expected_len {
        return Err(FormatError::LengthMismatch {
            expected: expected_len,
            got: n,
        });
    }
    Ok(out)
}

/// Decompresses `data` of unknown output size (unpacked files), failing if it
/// expands beyond `limit` bytes.
pub fn decompress_unbounded(data: &[u8], limit: usize) -> Result<Vec<u8>, FormatError> {
    let dec = zstd::stream::read::Decoder::with_buffer(data)
        .map_err(|e| FormatError::Compression(e.to_string()))?;
    let mut out = Vec::new();
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    dec.take(cap)
        .read_to_end(&mut out)
        .map_err(|e| FormatError::Compression(e.to_string()))?;
    if out.len() > limit {
        return Err(FormatError::Compression(format!(
            "decompressed data exceeds the limit of {limit} bytes"
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_display() {
        assert_eq!("off".parse::<Compression>().unwrap(), Compression::Off);
        assert_eq!("AUTO".parse::<Compression>().unwrap(), Compression::Auto);
        assert_eq!("max".parse::<Compression>().unwrap(), Compression::Max);
        assert_eq!("7".parse::<Compression>().unwrap(), Compression::Level(7));
        for bad in ["0", "23", "fast", ""] {
            assert!(bad.parse::<Compression>().is_err(), "{bad}");
        }
        for c in [
            Compression::Off,
            Compression::Auto,
            Compression::Max,
            Compression::Level(5),
        ] {
            assert_eq!(c.to_string().parse::<Compression>().unwrap(), c);
        }
        assert_eq!(Compression::Auto.zstd_level(), Some(3));
        assert_eq!(Compression::Off.zstd_level(), None);
    }

    #[test]
    fn bounded_decompression() {
        let data = vec![42u8; 100_000];
        let c = compress(&data, 3).unwrap();
        assert!(c.len() < 1000);
        assert_eq!(decompress(&c, data.len()).unwrap(), data);
        assert!(decompress(&c, 10).is_err());
        assert!(matches!(
            decompress(&c, 200_000),
            Err(FormatError::LengthMismatch { .. })
        ));
        assert!(decompress(b"not zstd", 10).is_err());
        assert_eq!(decompress_unbounded(&c, 100_000).unwrap(), data);
        assert!(decompress_unbounded(&c, 99_999).is_err());
        assert_eq!(decompress(&compress(b"", 3).unwrap(), 0).unwrap(), b"");
    }
}
