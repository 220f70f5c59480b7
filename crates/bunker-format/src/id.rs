//! Content ids (SHA-256) and their typed wrappers.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

use crate::error::FormatError;

/// The value of each hex digit, 0xff for any other byte.
const HEX_VALUE: [u8; 256] = {
    let mut t = [0xffu8; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        t[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t
};

/// SHA-256 fed piece by piece: `Id::hasher()`, [`IdHasher::update`], then
/// [`IdHasher::finish`] gives what [`Id::hash`] gives for the concatenation.
#[derive(Clone, Default)]
pub struct IdHasher(Sha256);

impl IdHasher {
    /// Feed the next piece.
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    /// The id of everything fed so far.
    pub fn finish(self) -> Id {
        Id(self.0.finalize().into())
    }
}

impl fmt::Debug for IdHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IdHasher")
    }
}

/// A 32-byte SHA-256 id: of a blob's plaintext, or of a file's stored bytes.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Id(pub [u8; 32]);

impl Id {
    /// SHA-256 of `data`.
    pub fn hash(data: &[u8]) -> Id {
        Id(Sha256::digest(data).into())
    }

    /// An incremental hasher, for data that arrives in pieces.
    pub fn hasher() -> IdHasher {
        IdHasher(Sha256::new())
    }

    /// Parses 64 hex digits (either case).
    pub fn from_hex(s: &str) -> Result<Id, FormatError> {
        let invalid = || FormatError::InvalidId(s.to_string());
        let digits: &[u8; 64] = s.as_bytes().try_into().map_err(|_| invalid())?;
        // Table lookup: every id of every index and tree goes through here
        // (a re-backup of the kernel tree parses 170k), and this is several
        // times faster than a per-digit match.
        let mut out = [0u8; 32];
        let mut bad = 0u8;
        for (o, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
            let (hi, lo) = (HEX_VALUE[pair[0] as usize], HEX_VALUE[pair[1] as usize]);
            bad |= hi | lo;
            *o = (hi << 4) | (lo & 0x0f);
        }
        if bad & 0xf0 != 0 {
            return Err(invalid());
        }
        Ok(Id(out))
    }

    /// 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The first 8 hex digits, as restic prints short ids.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..4])
    }

    /// A random id (e.g. a repository id).
    pub fn random() -> Id {
        let mut out = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut out);
        Id(out)
    }

    /// True for the all-zero id.
    pub fn is_null(&self) -> bool {
        self.0 == [0u8; 32]
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; 64];
        // hex::encode_to_slice only fails on a wrong output length.
        if hex::encode_to_slice(self.0, &mut buf).is_err() {
            return Err(fmt::Error);
        }
        f.write_str(std::str::from_utf8(&buf).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Id({})", self.short())
    }
}

impl FromStr for Id {
    type Err = FormatError;
    fn from_str(s: &str) -> Result<Id, FormatError> {
        Id::from_hex(s)
    }
}

impl Serialize for Id {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut buf = [0u8; 64];
        hex::encode_to_slice(self.0, &mut buf).map_err(serde::ser::Error::custom)?;
        s.serialize_str(std::str::from_utf8(&buf).map_err(serde::ser::Error::custom)?)
    }
}

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Id, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Id;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a 64-digit hex id")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Id, E> {
                Id::from_hex(v).map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Id);

        impl $name {
            /// The untyped id.
            pub fn id(&self) -> Id {
                self.0
            }
            /// Parses 64 hex digits.
            pub fn from_hex(s: &str) -> Result<$name, FormatError> {
                Id::from_hex(s).map($name)
            }
            /// 64 lowercase hex digits.
            pub fn to_hex(&self) -> String {
                self.0.to_hex()
            }
            /// The first 8 hex digits.
            pub fn short(&self) -> String {
                self.0.short()
            }
        }

        impl From<Id> for $name {
            fn from(id: Id) -> $name {
                $name(id)
            }
        }

        impl From<$name> for Id {
            fn from(id: $name) -> Id {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0.short())
            }
        }

        impl FromStr for $name {
            type Err = FormatError;
            fn from_str(s: &str) -> Result<$name, FormatError> {
                $name::from_hex(s)
            }
        }
    };
}

typed_id!(
    /// Storage id of a pack file (SHA-256 of the whole file).
    PackId
);
typed_id!(
    /// Plaintext id of a data or tree blob (SHA-256 of the uncompressed plaintext).
    BlobId
);
typed_id!(
    /// Storage id of a snapshot file.
    SnapshotId
);
typed_id!(
    /// Storage id of an index file.
    IndexId
);
typed_id!(
    /// Storage id of a key file (SHA-256 of its JSON bytes).
    KeyId
);
typed_id!(
    /// Storage id of a lock file.
    LockId
);

/// Trees are blobs; their id is the SHA-256 of the tree JSON.
pub type TreeId = BlobId;

/// The two kinds of blobs in pack files.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BlobType {
    Data,
    Tree,
}

impl BlobType {
    pub fn as_str(&self) -> &'static str {
        match self {
            BlobType::Data => "data",
            BlobType::Tree => "tree",
        }
    }
}

impl fmt::Display for BlobType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hasher_in_pieces_equals_hash() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut h = Id::hasher();
        for piece in data.chunks(333) {
            h.update(piece);
        }
        assert_eq!(h.finish(), Id::hash(&data));
        assert_eq!(Id::hasher().finish(), Id::hash(b""));
    }

    #[test]
    fn hex_roundtrip_and_display() {
        let id = Id::hash(b"hello");
        assert_eq!(
            id.to_hex(),
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(id.to_string(), id.to_hex());
        assert_eq!(id.short(), "2cf24dba");
        assert_eq!(Id::from_hex(&id.to_hex().to_uppercase()).ok(), Some(id));
        assert!(Id::from_hex("abc").is_err());
        assert!(Id::from_hex(&"g".repeat(64)).is_err());
        assert!(Id::from_hex(&"é".repeat(32)).is_err());
        assert_eq!(format!("{:?}", PackId(id)), "PackId(2cf24dba)");
    }

    proptest::proptest! {
        /// The table decoder accepts exactly what the `hex` crate accepts.
        #[test]
        fn from_hex_agrees_with_the_hex_crate(s in "[0-9a-fA-F]{60,66}|[0-9a-gA-G/:@`]{64}|.{32,64}") {
            let mut want = [0u8; 32];
            let want = hex::decode_to_slice(&s, &mut want).ok().map(|()| Id(want));
            proptest::prop_assert_eq!(Id::from_hex(&s).ok(), want);
        }
    }

    #[test]
    fn serde_as_hex_string() {
        let id = BlobId(Id::hash(b"x"));
        let s = serde_json::to_string(&id).unwrap();
        assert_eq!(s, format!("\"{}\"", id));
        let back: BlobId = serde_json::from_str(&s).unwrap();
        assert_eq!(back, id);
        assert_eq!(serde_json::to_string(&BlobType::Tree).unwrap(), "\"tree\"");
        assert!(serde_json::from_str::<BlobId>("\"00\"").is_err());
    }
}
