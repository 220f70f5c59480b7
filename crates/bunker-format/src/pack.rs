//! Pack files: `EncryptedBlob1 || … || EncryptedBlobN || EncryptedHeader || HeaderLength(u32 LE)`.
//!
//! Header entries (plaintext, never compressed):
//! type 0/1 (data/tree): `type(1) || length(4) || id(32)`;
//! type 2/3 (compressed data/tree): `type(1) || length(4) || uncompressed_length(4) || id(32)`.
//! `length` is the encrypted blob length; offsets follow from the order.

use crate::compression::{decompress, with_compressed};
use crate::crypto::{Key, CRYPTO_OVERHEAD};
use crate::error::FormatError;
use crate::id::{BlobId, BlobType, Id, PackId};

/// Size of the trailing header-length field.
pub const HEADER_LENGTH_SIZE: usize = 4;
/// Header entry size of an uncompressed blob.
pub const PLAIN_ENTRY_SIZE: usize = 1 + 4 + 32;
/// Header entry size of a compressed blob.
pub const COMPRESSED_ENTRY_SIZE: usize = 1 + 4 + 4 + 32;
/// Fixed header overhead: crypto overhead plus the length field.
pub const HEADER_OVERHEAD: usize = CRYPTO_OVERHEAD + HEADER_LENGTH_SIZE;
/// Largest header restic accepts, including the length field.
pub const MAX_HEADER_SIZE: usize = 16 * 1024 * 1024 + HEADER_LENGTH_SIZE;
/// Most entries a header may hold (restic's `MaxHeaderEntries`).
pub const MAX_HEADER_ENTRIES: usize = (MAX_HEADER_SIZE - HEADER_OVERHEAD) / COMPRESSED_ENTRY_SIZE;
/// Alias of [`MAX_HEADER_ENTRIES`].
pub const MAX_HEADER_ENTRY: usize = MAX_HEADER_ENTRIES;
/// Smallest possible pack: one empty blob entry plus header.
pub const MIN_PACK_SIZE: usize = PLAIN_ENTRY_SIZE + HEADER_OVERHEAD;

/// One blob as listed in a pack header (offsets computed).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PackBlob {
    pub blob_type: BlobType,
    pub id: BlobId,
    /// Offset of the encrypted blob in the pack.
    pub offset: u32,
    /// Length of the encrypted (and possibly compressed) blob.
    pub length: u32,
    /// Plaintext length if the blob is compressed.
    pub uncompressed_length: Option<u32>,
}

impl PackBlob {
    pub fn is_compressed(&self) -> bool {
        self.uncompressed_length.is_some()
    }

    /// Plaintext length (uncompressed).
    pub fn data_length(&self) -> u32 {
        self.uncompressed_length
            .unwrap_or_else(|| self.length.saturating_sub(CRYPTO_OVERHEAD as u32))
    }

    /// Offset just past the blob.
    pub fn end(&self) -> u64 {
        u64::from(self.offset) + u64::from(self.length)
    }
}

/// Header entry size for a blob.
pub fn entry_size(compressed: bool) -> usize {
    if compressed {
        COMPRESSED_ENTRY_SIZE
    } else {
        PLAIN_ENTRY_SIZE
    }
}

/// Size of the encrypted header plus length field for `blobs`.
pub fn header_size(blobs: &[PackBlob]) -> usize {
    HEADER_OVERHEAD
        + blobs
            .iter()
            .map(|b| entry_size(b.is_compressed()))
            .sum::<usize>()
}

/// A blob ready to be added to a pack.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodedBlob {
    /// `IV || ciphertext || MAC` of the (possibly compressed) plaintext.
    pub bytes: Vec<u8>,
    /// `Some(plaintext length)` if the plaintext was compressed.
    pub uncompressed_length: Option<u32>,
}

/// Compresses `plain` if `level` is set and that makes it smaller, then
/// calls `f` with the payload to encrypt and `Some(plaintext length)` if it
/// is compressed. The compressed bytes live in a reused per-thread buffer.
pub fn with_blob_payload<R>(
    plain: &[u8],
    level: Option<i32>,
    f: impl FnOnce(&[u8], Option<u32>) -> R,
) -> Result<R, FormatError> {
    let len = u32::try_from(plain.len())
        .map_err(|_| FormatError::Pack(format!("blob of {} bytes is too large", plain.len())))?;
    let mut f = Some(f);
    if let Some(level) = level.filter(|_| !plain.is_empty()) {
        let done = with_compressed(plain, level, |c| {
            if c.len() < plain.len() {
                f.take().map(|f| f(c, Some(len)))
            } else {
                None
            }
        })?;
        if let Some(r) = done {
            return Ok(r);
        }
    }
    match f.take() {
        Some(f) => Ok(f(plain, None)),
        None => Err(FormatError::Pack("blob payload consumed twice".into())),
    }
}

/// Compresses (if `level` is set and it helps) and encrypts a blob.
pub fn encode_blob(
    key: &Key,
    plain: &[u8],
    level: Option<i32>,
) -> Result<EncodedBlob, FormatError> {
    with_blob_payload(plain, level, |payload, uncompressed_length| EncodedBlob {
        bytes: key.encrypt(payload),
        uncompressed_length,
    })
}

/// Decrypts (and decompresses) a blob read from a pack.
pub fn decode_blob(
    key: &Key,
    bytes: &[u8],
    uncompressed_length: Option<u32>,
) -> Result<Vec<u8>, FormatError> {
    let plain = key.decrypt(bytes)?;
    match uncompressed_length {
        Some(n) if n > 0 => decompress(&plain, n as usize),
        _ => Ok(plain),
    }
}

/// [`decode_blob`] plus a check that the plaintext hashes to `id`.
pub fn decode_blob_checked(
    key: &Key,
    bytes: &[u8],
    uncompressed_length: Option<u32>,
    id: BlobId,
) -> Result<Vec<u8>, FormatError> {
    let plain = decode_blob(key, bytes, uncompressed_length)?;
    let actual = Id::hash(&plain);
    if actual != id.0 {
        return Err(FormatError::HashMismatch {
            expected: id.to_hex(),
            actual: actual.to_hex(),
        });
    }
    Ok(plain)
}

/// Builds one pack in memory.
#[derive(Debug)]
pub struct PackBuilder {
    blob_type: BlobType,
    data: Vec<u8>,
    blobs: Vec<PackBlob>,
}

impl PackBuilder {
    /// A pack for blobs of one type (version 2 forbids mixing).
    pub fn new(blob_type: BlobType) -> PackBuilder {
        PackBuilder {
            blob_type,
            data: Vec::new(),
            blobs: Vec::new(),
        }
    }

    /// Like [`PackBuilder::new`], reserving `capacity` bytes of blob data up
    /// front (address space only; pages are touched as blobs arrive), so
    /// the pack never moves while it grows.
    pub fn with_capacity(blob_type: BlobType, capacity: usize) -> PackBuilder {
        PackBuilder {
            blob_type,
            data: Vec::with_capacity(capacity),
            blobs: Vec::new(),
        }
    }

    /// Like [`PackBuilder::with_capacity`], reusing `buf` (cleared) as the
    /// pack's buffer.
    pub fn with_buffer(blob_type: BlobType, mut buf: Vec<u8>) -> PackBuilder {
        buf.clear();
        PackBuilder {
            blob_type,
            data: buf,
            blobs: Vec::new(),
        }
    }

    /// Encrypts `payload` straight into the pack (no intermediate buffer)
    /// and records it with plaintext id `id`; `uncompressed_length` is
    /// `Some` if `payload` is compressed. Returns the encrypted length.
    pub fn add_encrypting(
        &mut self,
        key: &Key,
        id: BlobId,
        payload: &[u8],
        uncompressed_length: Option<u32>,
    ) -> Result<u32, FormatError> {
        if self.blobs.len() >= MAX_HEADER_ENTRIES {
            return Err(FormatError::Pack("pack header is full".into()));
        }
        let offset = u32::try_from(self.data.len())
            .map_err(|_| FormatError::Pack("pack exceeds 4 GiB".into()))?;
        let length = payload
            .len()
            .checked_add(CRYPTO_OVERHEAD)
            .and_then(|l| u32::try_from(l).ok())
            .filter(|l| offset.checked_add(*l).is_some())
            .ok_or_else(|| FormatError::Pack("pack exceeds 4 GiB".into()))?;
        key.encrypt_into(payload, &mut self.data);
        self.blobs.push(PackBlob {
            blob_type: self.blob_type,
            id,
            offset,
            length,
            uncompressed_length: uncompressed_length.filter(|n| *n > 0),
        });
        Ok(length)
    }

    pub fn blob_type(&self) -> BlobType {
        self.blob_type
    }

    /// Appends an encoded blob with plaintext id `id`.
    pub fn add(&mut self, id: BlobId, blob: &EncodedBlob) -> Result<(), FormatError> {
        if self.blobs.len() >= MAX_HEADER_ENTRIES {
            return Err(FormatError::Pack("pack header is full".into()));
        }
        let offset = u32::try_from(self.data.len())
            .map_err(|_| FormatError::Pack("pack exceeds 4 GiB".into()))?;
        let length = u32::try_from(blob.bytes.len())
            .ok()
            .filter(|l| offset.checked_add(*l).is_some())
            .ok_or_else(|| FormatError::Pack("pack exceeds 4 GiB".into()))?;
        self.data.extend_from_slice(&blob.bytes);
        self.blobs.push(PackBlob {
            blob_type: self.blob_type,
            id,
            offset,
            length,
            uncompressed_length: blob.uncompressed_length.filter(|n| *n > 0),
        });
        Ok(())
    }

    /// Bytes of blob data so far.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.blobs.is_empty()
    }

    /// Number of blobs so far.
    pub fn count(&self) -> usize {
        self.blobs.len()
    }

    /// Size the finished pack will have.
    pub fn finished_len(&self) -> usize {
        self.data.len() + header_size(&self.blobs)
    }

    /// The blobs added so far.
    pub fn blobs(&self) -> &[PackBlob] {
        &self.blobs
    }

    /// Appends the encrypted header and its length; returns the pack id
    /// (SHA-256 of all bytes), the bytes and the blob list.
    pub fn finish(self, key: &Key) -> (PackId, Vec<u8>, Vec<PackBlob>) {
        let PackBuilder {
            mut data, blobs, ..
        } = self;
        let header = encode_header(&blobs);
        let start = data.len();
        key.encrypt_into(&header, &mut data);
        let hlen = (data.len() - start) as u32;
        data.extend_from_slice(&hlen.to_le_bytes());
        (PackId(Id::hash(&data)), data, blobs)
    }
}

/// Plaintext header for `blobs` (in order).
pub fn encode_header(blobs: &[PackBlob]) -> Vec<u8> {
    let mut out = Vec::with_capacity(blobs.len() * COMPRESSED_ENTRY_SIZE);
    for b in blobs {
        let t: u8 = match (b.blob_type, b.is_compressed()) {
            (BlobType::Data, false) => 0,
            (BlobType::Tree, false) => 1,
            (BlobType::Data, true) => 2,
            (BlobType::Tree, true) => 3,
        };
        out.push(t);
        out.extend_from_slice(&b.length.to_le_bytes());
        if let Some(u) = b.uncompressed_length {
            out.extend_from_slice(&u.to_le_bytes());
        }
        out.extend_from_slice(&b.id.0 .0);
    }
    out
}

/// The encrypted header length stored in the last 4 bytes of a pack.
pub fn header_length_from_tail(tail: &[u8; 4]) -> u32 {
    u32::from_le_bytes(*tail)
}

/// Parses a pack header. `header_and_len` must end with the encrypted header
/// followed by the 4-byte length (more leading bytes are allowed, e.g. an
/// eager read of the pack's tail); `pack_len` is the whole pack's size.
pub fn decode_header(
    key: &Key,
    header_and_len: &[u8],
    pack_len: u64,
) -> Result<Vec<PackBlob>, FormatError> {
    let n = header_and_len.len();
    if n < HEADER_LENGTH_SIZE {
        return Err(FormatError::Pack("header buffer is too short".into()));
    }
    if pack_len < MIN_PACK_SIZE as u64 {
        return Err(FormatError::Pack(format!(
            "file of {pack_len} bytes is too short"
        )));
    }
    let mut tail = [0u8; 4];
    tail.copy_from_slice(&header_and_len[n - 4..]);
    let hlen = header_length_from_tail(&tail) as usize;
    if hlen < CRYPTO_OVERHEAD {
        return Err(FormatError::Pack(format!(
            "header length {hlen} is too short"
        )));
    }
    if hlen + HEADER_LENGTH_SIZE > MAX_HEADER_SIZE {
        return Err(FormatError::Pack(format!(
            "header length {hlen} exceeds the maximum"
        )));
    }
    if (hlen + HEADER_LENGTH_SIZE) as u64 > pack_len {
        return Err(FormatError::Pack(format!(
            "header length {hlen} is larger than the file ({pack_len} bytes)"
        )));
    }
    if hlen + HEADER_LENGTH_SIZE > n {
        return Err(FormatError::Pack(format!(
            "need {} header bytes, got {}",
            hlen + HEADER_LENGTH_SIZE,
            n
        )));
    }
    let enc = &header_and_len[n - HEADER_LENGTH_SIZE - hlen..n - HEADER_LENGTH_SIZE];
    let plain = key.decrypt(enc)?;
    let data_end = pack_len - (hlen + HEADER_LENGTH_SIZE) as u64;
    parse_header(&plain, data_end)
}

/// Parses a decrypted header; blobs must fit into `data_end` bytes.
pub fn parse_header(mut p: &[u8], data_end: u64) -> Result<Vec<PackBlob>, FormatError> {
    let mut blobs = Vec::with_capacity(p.len() / PLAIN_ENTRY_SIZE);
    let mut pos: u64 = 0;
    while !p.is_empty() {
        let t = p[0];
        let (blob_type, compressed) = match t {
            0 => (BlobType::Data, false),
            1 => (BlobType::Tree, false),
            2 => (BlobType::Data, true),
            3 => (BlobType::Tree, true),
            other => {
                return Err(FormatError::Pack(format!(
                    "invalid blob type {other} in header"
                )))
            }
        };
        let size = entry_size(compressed);
        if p.len() < size {
            return Err(FormatError::Pack(format!(
                "truncated header entry ({} bytes left, need {size})",
                p.len()
            )));
        }
        let length = u32::from_le_bytes([p[1], p[2], p[3], p[4]]);
        let (uncompressed_length, id_at) = if compressed {
            (Some(u32::from_le_bytes([p[5], p[6], p[7], p[8]])), 9)
        } else {
            (None, 5)
        };
        let mut id = [0u8; 32];
        id.copy_from_slice(&p[id_at..id_at + 32]);
        if (length as usize) < CRYPTO_OVERHEAD {
            return Err(FormatError::Pack(format!(
                "blob length {length} is too short"
            )));
        }
        let end = pos + u64::from(length);
        if end > data_end {
            return Err(FormatError::Pack(format!(
                "blob at offset {pos} of length {length} overflows the data section ({data_end} bytes)"
            )));
        }
        let offset = u32::try_from(pos)
            .map_err(|_| FormatError::Pack(format!("blob offset {pos} exceeds 4 GiB")))?;
        blobs.push(PackBlob {
            blob_type,
            id: BlobId(Id(id)),
            offset,
            length,
            uncompressed_length: uncompressed_length.filter(|n| *n > 0),
        });
        pos = end;
        p = &p[size..];
    }
    Ok(blobs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn restic_entry_layout() {
        let b = PackBlob {
            blob_type: BlobType::Tree,
            id: BlobId(Id([7; 32])),
            offset: 0,
            length: 0x0102_0304,
            uncompressed_length: Some(0x0a0b_0c0d),
        };
        let h = encode_header(&[b]);
        assert_eq!(h.len(), COMPRESSED_ENTRY_SIZE);
        assert_eq!(&h[..9], &[3, 4, 3, 2, 1, 0x0d, 0x0c, 0x0b, 0x0a]);
        assert_eq!(MAX_HEADER_ENTRIES, 409_199); // restic: (16 MiB + 4 - 36) / 41
    }

    #[test]
    fn rejects_bad_headers() {
        let key = Key::random();
        let mut pb = PackBuilder::new(BlobType::Data);
        pb.add(
            BlobId(Id::hash(b"a")),
            &encode_blob(&key, b"a", None).unwrap(),
        )
        .unwrap();
        let (_, bytes, _) = pb.finish(&key);
        let len = bytes.len() as u64;
        assert!(decode_header(&key, &bytes, len).is_ok());
        // wrong pack length: blob overflows
        assert!(decode_header(&key, &bytes[bytes.len() - 80..], 80).is_err());
        // tampered header
        let mut bad = bytes.clone();
        let n = bad.len();
        bad[n - 10] ^= 1;
        assert!(matches!(
            decode_header(&key, &bad, len),
            Err(FormatError::Mac)
        ));
        // absurd header length
        let mut bad = bytes.clone();
        bad[n - 1] = 0xff;
        assert!(decode_header(&key, &bad, len).is_err());
        // invalid type byte and truncated entry
        assert!(parse_header(&[4; PLAIN_ENTRY_SIZE], 1000).is_err());
        assert!(parse_header(&[2; PLAIN_ENTRY_SIZE], 1000).is_err());
        assert!(decode_header(&key, &[0, 0], 100).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        #[test]
        fn build_decode_roundtrip(
            blobs in proptest::collection::vec((proptest::collection::vec(any::<u8>(), 0..3000), any::<bool>(), any::<bool>()), 1..12),
            tree in any::<bool>(),
        ) {
            let key = Key::random();
            let bt = if tree { BlobType::Tree } else { BlobType::Data };
            let mut pb = PackBuilder::new(bt);
            let mut plains = Vec::new();
            for (i, (data, compress, repetitive)) in blobs.iter().enumerate() {
                let data: Vec<u8> = if *repetitive { data.iter().map(|b| b & 1).collect() } else { data.clone() };
                let id = BlobId(Id::hash(&data));
                let level = compress.then_some(3);
                if i % 2 == 0 {
                    let enc = encode_blob(&key, &data, level).unwrap();
                    pb.add(id, &enc).unwrap();
                } else {
                    // The zero-copy path must produce the same layout.
                    let before = pb.len();
                    let length = with_blob_payload(&data, level, |payload, ul| {
                        pb.add_encrypting(&key, id, payload, ul).unwrap()
                    })
                    .unwrap();
                    prop_assert_eq!(pb.len() - before, length as usize);
                }
                plains.push((id, data));
            }
            prop_assert_eq!(pb.count(), plains.len());
            let expected_len = pb.finished_len();
            let (pack_id, bytes, listed) = pb.finish(&key);
            prop_assert_eq!(bytes.len(), expected_len);
            prop_assert_eq!(pack_id.id(), Id::hash(&bytes));
            let decoded = decode_header(&key, &bytes, bytes.len() as u64).unwrap();
            prop_assert_eq!(&decoded, &listed);
            // the exact tail also decodes
            let tail_len = header_size(&decoded);
            let decoded_tail = decode_header(&key, &bytes[bytes.len() - tail_len..], bytes.len() as u64).unwrap();
            prop_assert_eq!(&decoded_tail, &listed);
            for (b, (id, data)) in decoded.iter().zip(&plains) {
                prop_assert_eq!(b.blob_type, bt);
                prop_assert_eq!(b.id, *id);
                let raw = &bytes[b.offset as usize..b.end() as usize];
                prop_assert_eq!(&decode_blob_checked(&key, raw, b.uncompressed_length, *id).unwrap(), data);
                prop_assert_eq!(b.data_length() as usize, data.len());
            }
        }
    }
}
