//! The "unpacked" file encoding of index, snapshot and lock files.
//!
//! Plaintext is either a raw JSON document (repository v1, and legacy data in
//! v2: the first byte is `[` or `{`) or `0x02 || zstd(JSON)` (v2). The whole
//! plaintext is then encrypted. The config file is an exception: it is always
//! stored as raw encrypted JSON (see [`crate::config`]).

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::compression::{compress, decompress_unbounded, Compression};
use crate::crypto::Key;
use crate::error::FormatError;
use crate::id::Id;

/// Encoding version byte of compressed unpacked files.
pub const ENCODING_ZSTD: u8 = 2;

/// Upper bound on the decompressed size of one unpacked file.
pub const MAX_UNPACKED_SIZE: usize = 1 << 31;

/// Builds the plaintext (compressed if `compression` is not Off) and encrypts it.
/// If compression fails the JSON is stored raw, which every reader accepts.
pub fn encode(key: &Key, json: &[u8], compression: Compression) -> Vec<u8> {
    match compression.zstd_level() {
        Some(level) => match compress(json, level) {
            Ok(c) => {
                let mut plain = Vec::with_capacity(c.len() + 1);
                plain.push(ENCODING_ZSTD);
                plain.extend_from_slice(&c);
                key.encrypt(&plain)
            }
            Err(_) => key.encrypt(json),
        },
        None => key.encrypt(json),
    }
}

/// Decrypts and, if needed, decompresses an unpacked file, returning the JSON.
pub fn decode(key: &Key, data: &[u8]) -> Result<Vec<u8>, FormatError> {
    let plain = key.decrypt(data)?;
    match plain.first() {
        None | Some(b'[') | Some(b'{') => Ok(plain),
        Some(&ENCODING_ZSTD) => decompress_unbounded(&plain[1..], MAX_UNPACKED_SIZE),
        Some(&other) => Err(FormatError::UnknownEncoding(other)),
    }
}

/// Serializes `value` as Go JSON and encodes it; returns the storage id
/// (SHA-256 of the encrypted bytes) and the bytes to store.
pub fn encode_json<T: Serialize>(
    key: &Key,
    value: &T,
    compression: Compression,
) -> Result<(Id, Vec<u8>), FormatError> {
    let json = crate::gojson::to_vec(value).map_err(|e| FormatError::json("unpacked file", e))?;
    let bytes = encode(key, &json, compression);
    Ok((Id::hash(&bytes), bytes))
}

/// Decodes an unpacked file and parses its JSON; `what` names the file kind
/// in errors.
pub fn decode_json<T: DeserializeOwned>(
    key: &Key,
    data: &[u8],
    what: &'static str,
) -> Result<T, FormatError> {
    let json = decode(key, data)?;
    serde_json::from_slice(&json).map_err(|e| FormatError::json(what, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_all_encodings() {
        let key = Key::random();
        let json = br#"{"a":[1,2,3],"b":"xyz"}"#;
        for c in [Compression::Off, Compression::Auto, Compression::Max] {
            let enc = encode(&key, json, c);
            assert_eq!(decode(&key, &enc).unwrap(), json);
            let plain = key.decrypt(&enc).unwrap();
            assert_eq!(plain[0] == ENCODING_ZSTD, c != Compression::Off);
        }
        let legacy = key.encrypt(b"[1]");
        assert_eq!(decode(&key, &legacy).unwrap(), b"[1]");
        let unknown = key.encrypt(b"\x03abc");
        assert!(matches!(
            decode(&key, &unknown),
            Err(FormatError::UnknownEncoding(3))
        ));
    }

    #[test]
    fn json_helpers() {
        let key = Key::random();
        let v = vec!["a<b".to_string()];
        let (id, bytes) = encode_json(&key, &v, Compression::Auto).unwrap();
        assert_eq!(id, Id::hash(&bytes));
        assert_eq!(decode(&key, &bytes).unwrap(), br#"["a\u003cb"]"#);
        let back: Vec<String> = decode_json(&key, &bytes, "test").unwrap();
        assert_eq!(back, v);
        assert!(matches!(
            decode_json::<u32>(&key, &bytes, "test"),
            Err(FormatError::Json { what: "test", .. })
        ));
    }
}
