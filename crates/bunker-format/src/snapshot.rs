//! Snapshot documents (stored in the unpacked encoding under `snapshots/`).

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Deserializer, Serialize};

use crate::id::{SnapshotId, TreeId};

fn is_zero_u32(v: &u32) -> bool {
    *v == 0
}

fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// restic's snapshot, field for field (unknown fields are ignored on read).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    #[serde(with = "crate::gotime::rfc3339")]
    pub time: DateTime<FixedOffset>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<SnapshotId>,
    pub tree: TreeId,
    #[serde(default, deserialize_with = "null_as_default")]
    pub paths: Vec<String>,
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub hostname: String,
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub username: String,
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub uid: u32,
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub gid: u32,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub excludes: Vec<String>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original: Option<SnapshotId>,
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub program_version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<SnapshotSummary>,
}

/// Backup statistics stored with the snapshot (restic >= 0.17).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotSummary {
    #[serde(with = "crate::gotime::rfc3339")]
    pub backup_start: DateTime<FixedOffset>,
    #[serde(with = "crate::gotime::rfc3339")]
    pub backup_end: DateTime<FixedOffset>,
    #[serde(default)]
    pub files_new: u64,
    #[serde(default)]
    pub files_changed: u64,
    #[serde(default)]
    pub files_unmodified: u64,
    #[serde(default)]
    pub dirs_new: u64,
    #[serde(default)]
    pub dirs_changed: u64,
    #[serde(default)]
    pub dirs_unmodified: u64,
    #[serde(default)]
    pub data_blobs: i64,
    #[serde(default)]
    pub tree_blobs: i64,
    #[serde(default)]
    pub data_added: u64,
    #[serde(default)]
    pub data_added_packed: u64,
    #[serde(default)]
    pub total_files_processed: u64,
    #[serde(default)]
    pub total_bytes_processed: u64,
}

impl Snapshot {
    /// A snapshot of `paths` at `time` pointing at `tree`; other fields empty.
    pub fn new(time: DateTime<FixedOffset>, tree: TreeId, paths: Vec<String>) -> Snapshot {
        Snapshot {
            time,
            parent: None,
            tree,
            paths,
            hostname: String::new(),
            username: String::new(),
            uid: 0,
            gid: 0,
            excludes: Vec::new(),
            tags: Vec::new(),
            original: None,
            program_version: String::new(),
            summary: None,
        }
    }

    /// Go-JSON bytes as restic writes them (`json.Marshal`).
    pub fn to_json_bytes(&self) -> Result<Vec<u8>, crate::FormatError> {
        crate::gojson::to_vec(self).map_err(|e| crate::FormatError::json("snapshot", e))
    }

    pub fn has_tag(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| t == tag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = r#"{"time":"2015-01-02T18:10:50.895208559+01:00","parent":"251c2e5841355f743f9d4ffd3260bee765acee40a6229857e32b60446991b837","tree":"2da81727b6585232894cfbb8f8bdab8d1eccd3d8f7c92bc934d62e62e618ffdf","paths":["/srv/testdata"],"hostname":"kasimir","username":"fd0","uid":1000,"gid":100,"excludes":["*.tmp"],"tags":["NL","DE"],"original":"251c2e5841355f743f9d4ffd3260bee765acee40a6229857e32b60446991b837","program_version":"restic 0.18.0","summary":{"backup_start":"2015-01-02T18:10:49.1+01:00","backup_end":"2015-01-02T18:10:50.895208559+01:00","files_new":1,"files_changed":2,"files_unmodified":3,"dirs_new":4,"dirs_changed":5,"dirs_unmodified":6,"data_blobs":7,"tree_blobs":8,"data_added":9,"data_added_packed":10,"total_files_processed":11,"total_bytes_processed":12}}"#;

    #[test]
    fn full_snapshot_roundtrips_byte_identical() {
        let sn: Snapshot = serde_json::from_str(DOC).unwrap();
        assert_eq!(sn.tags, ["NL", "DE"]);
        assert_eq!(sn.summary.as_ref().unwrap().total_bytes_processed, 12);
        assert_eq!(String::from_utf8(sn.to_json_bytes().unwrap()).unwrap(), DOC);
    }

    #[test]
    fn minimal_snapshot_and_unknown_fields() {
        let doc = r#"{"time":"2015-01-02T18:10:50.895208559+01:00","tree":"2da81727b6585232894cfbb8f8bdab8d1eccd3d8f7c92bc934d62e62e618ffdf","paths":["/a<b"]}"#;
        let sn: Snapshot = serde_json::from_str(doc).unwrap();
        assert_eq!(sn.paths, ["/a<b"]);
        assert_eq!(
            String::from_utf8(sn.to_json_bytes().unwrap()).unwrap(),
            doc.replace("<", "\\u003c")
        );
        let with_extra = doc.replace(
            "\"paths\"",
            "\"future_field\":{\"x\":1},\"tags\":null,\"paths\"",
        );
        assert_eq!(serde_json::from_str::<Snapshot>(&with_extra).unwrap(), sn);
    }
}
