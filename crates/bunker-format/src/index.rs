//! Index files: which blobs live in which pack, at which offset.
//!
//! Current format: `{"supersedes":[…],"packs":[{"id":…,"blobs":[{"id":…,"type":"data",
//! "offset":0,"length":38,"uncompressed_length":511}]}]}` (`supersedes` omitted
//! when empty, `uncompressed_length` only for compressed blobs). The legacy
//! format, a bare array of packs, is accepted when reading.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

use crate::error::FormatError;
use crate::id::{BlobId, BlobType, IndexId, PackId};
use crate::pack::PackBlob;

/// Keep index files below this many packs' worth (restic aims for < 8 MiB files).
pub const MAX_PACKS_PER_INDEX: usize = 10_000;

fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

fn zero_as_none<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    Ok(Option::<u32>::deserialize(d)?.filter(|n| *n > 0))
}

/// One index file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct IndexFile {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub supersedes: Vec<IndexId>,
    pub packs: Vec<IndexPack>,
}

/// A pack and its blobs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexPack {
    pub id: PackId,
    #[serde(default, deserialize_with = "null_as_default")]
    pub blobs: Vec<IndexBlob>,
}

/// A blob entry of an index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexBlob {
    pub id: BlobId,
    #[serde(rename = "type")]
    pub blob_type: BlobType,
    pub offset: u32,
    pub length: u32,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "zero_as_none"
    )]
    pub uncompressed_length: Option<u32>,
}

impl From<&PackBlob> for IndexBlob {
    fn from(b: &PackBlob) -> IndexBlob {
        IndexBlob {
            id: b.id,
            blob_type: b.blob_type,
            offset: b.offset,
            length: b.length,
            uncompressed_length: b.uncompressed_length,
        }
    }
}

impl From<&IndexBlob> for PackBlob {
    fn from(b: &IndexBlob) -> PackBlob {
        PackBlob {
            blob_type: b.blob_type,
            id: b.id,
            offset: b.offset,
            length: b.length,
            uncompressed_length: b.uncompressed_length,
        }
    }
}

impl IndexPack {
    /// An index entry for a pack from its header blobs.
    pub fn from_pack_blobs(id: PackId, blobs: &[PackBlob]) -> IndexPack {
        IndexPack {
            id,
            blobs: blobs.iter().map(IndexBlob::from).collect(),
        }
    }

    /// The pack's size as implied by its blobs (data plus header).
    pub fn implied_pack_size(&self) -> u64 {
        let blobs: Vec<PackBlob> = self.blobs.iter().map(PackBlob::from).collect();
        blobs.iter().map(|b| u64::from(b.length)).sum::<u64>()
            + crate::pack::header_size(&blobs) as u64
    }
}

impl IndexFile {
    /// JSON bytes as restic writes them (Go encoder, trailing newline).
    pub fn to_json_bytes(&self) -> Result<Vec<u8>, FormatError> {
        let mut out = crate::gojson::to_vec(self).map_err(|e| FormatError::json("index", e))?;
        out.push(b'\n');
        Ok(out)
    }

    /// Parses either format.
    pub fn from_json_bytes(data: &[u8]) -> Result<IndexFile, FormatError> {
        serde_json::from_slice(data).map_err(|e| FormatError::json("index", e))
    }

    /// Number of blobs in all packs.
    pub fn blob_count(&self) -> usize {
        self.packs.iter().map(|p| p.blobs.len()).sum()
    }
}

#[derive(Deserialize)]
struct IndexRepr {
    #[serde(default, deserialize_with = "null_as_default")]
    supersedes: Vec<IndexId>,
    #[serde(default, deserialize_with = "null_as_default")]
    packs: Vec<IndexPack>,
}

impl<'de> Deserialize<'de> for IndexFile {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<IndexFile, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = IndexFile;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an index object or a legacy array of packs")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<IndexFile, A::Error> {
                let r = IndexRepr::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(IndexFile {
                    supersedes: r.supersedes,
                    packs: r.packs,
                })
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                seq: A,
            ) -> Result<IndexFile, A::Error> {
                let packs = Vec::<IndexPack>::deserialize(
                    serde::de::value::SeqAccessDeserializer::new(seq),
                )?;
                Ok(IndexFile {
                    supersedes: Vec::new(),
                    packs,
                })
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::Id;
    use proptest::prelude::*;

    const DOC: &str = r#"{"supersedes":["ed54ae36197f4745ebc4b54d10e0f623eaaaedd03013eb7ae90df881b7781452"],"packs":[{"id":"73d04e6125cf3c28a299cc2f3cca3b78ceac396e4fcf9575e34536b26782413c","blobs":[{"id":"3ec79977ef0cf5de7b08cd12b874cd0f62bbaf7f07f3497a5b1bbcc8cb39b1ce","type":"data","offset":0,"length":38},{"id":"9ccb846e60d90d4eb915848add7aa7ea1e4bbabfc60e573db9f7bfb2789afbae","type":"tree","offset":38,"length":112,"uncompressed_length":511}]}]}
"#;

    #[test]
    fn design_doc_example_roundtrips_byte_identical() {
        let idx = IndexFile::from_json_bytes(DOC.as_bytes()).unwrap();
        assert_eq!(idx.supersedes.len(), 1);
        assert_eq!(idx.packs[0].blobs[1].uncompressed_length, Some(511));
        assert_eq!(idx.packs[0].blobs[0].uncompressed_length, None);
        assert_eq!(idx.to_json_bytes().unwrap(), DOC.as_bytes());
        let no_sup = IndexFile {
            supersedes: vec![],
            ..idx
        };
        assert!(no_sup
            .to_json_bytes()
            .unwrap()
            .starts_with(br#"{"packs":[{"#));
    }

    #[test]
    fn legacy_and_null_forms() {
        let legacy = r#"[{"id":"73d04e6125cf3c28a299cc2f3cca3b78ceac396e4fcf9575e34536b26782413c","blobs":[{"id":"3ec79977ef0cf5de7b08cd12b874cd0f62bbaf7f07f3497a5b1bbcc8cb39b1ce","type":"data","offset":0,"length":38}]}]"#;
        let idx = IndexFile::from_json_bytes(legacy.as_bytes()).unwrap();
        assert_eq!(idx.blob_count(), 1);
        assert!(idx.supersedes.is_empty());
        let nulls =
            IndexFile::from_json_bytes(br#"{"supersedes":null,"packs":null,"extra":1}"#).unwrap();
        assert_eq!(nulls, IndexFile::default());
        let zero = r#"{"packs":[{"id":"73d04e6125cf3c28a299cc2f3cca3b78ceac396e4fcf9575e34536b26782413c","blobs":[{"id":"3ec79977ef0cf5de7b08cd12b874cd0f62bbaf7f07f3497a5b1bbcc8cb39b1ce","type":"data","offset":0,"length":38,"uncompressed_length":0}]}]}"#;
        assert_eq!(
            IndexFile::from_json_bytes(zero.as_bytes()).unwrap().packs[0].blobs[0]
                .uncompressed_length,
            None
        );
        assert!(IndexFile::from_json_bytes(b"42").is_err());
        assert!(IndexFile::from_json_bytes(br#"{"packs":[{"id":"zz","blobs":[]}]}"#).is_err());
    }

    fn arb_blob() -> impl Strategy<Value = IndexBlob> {
        (
            any::<[u8; 32]>(),
            any::<bool>(),
            any::<u32>(),
            any::<u32>(),
            proptest::option::of(1u32..),
        )
            .prop_map(|(id, tree, offset, length, ul)| IndexBlob {
                id: BlobId(Id(id)),
                blob_type: if tree { BlobType::Tree } else { BlobType::Data },
                offset,
                length,
                uncompressed_length: ul,
            })
    }

    proptest! {
        #[test]
        fn json_roundtrip(
            sup in proptest::collection::vec(any::<[u8; 32]>(), 0..3),
            packs in proptest::collection::vec((any::<[u8; 32]>(), proptest::collection::vec(arb_blob(), 0..5)), 0..5),
        ) {
            let idx = IndexFile {
                supersedes: sup.into_iter().map(|b| IndexId(Id(b))).collect(),
                packs: packs.into_iter().map(|(id, blobs)| IndexPack { id: PackId(Id(id)), blobs }).collect(),
            };
            let bytes = idx.to_json_bytes().unwrap();
            let back = IndexFile::from_json_bytes(&bytes).unwrap();
            prop_assert_eq!(&back, &idx);
            prop_assert_eq!(back.to_json_bytes().unwrap(), bytes);
        }
    }
}
