//! `list`: the ids of a repository's files of one kind, or of all blobs.

use bunker_format::{BlobId, BlobType};
use bunker_storage::FileType;
use serde::Serialize;

use crate::error::{RepoError, Result};
use crate::Repository;

/// What `list` lists (restic's names).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListKind {
    Blobs,
    Packs,
    Index,
    Snapshots,
    Keys,
    Locks,
}

impl std::str::FromStr for ListKind {
    type Err = RepoError;
    fn from_str(s: &str) -> Result<ListKind> {
        Ok(match s {
            "blobs" => ListKind::Blobs,
            "packs" => ListKind::Packs,
            "index" => ListKind::Index,
            "snapshots" => ListKind::Snapshots,
            "keys" => ListKind::Keys,
            "locks" => ListKind::Locks,
            _ => {
                return Err(RepoError::Invalid(format!(
                    "cannot list {s:?}: use blobs, packs, index, snapshots, keys or locks"
                )))
            }
        })
    }
}

impl ListKind {
    /// The storage file type (`None` for blobs, which come from the index).
    pub fn file_type(&self) -> Option<FileType> {
        match self {
            ListKind::Blobs => None,
            ListKind::Packs => Some(FileType::Pack),
            ListKind::Index => Some(FileType::Index),
            ListKind::Snapshots => Some(FileType::Snapshot),
            ListKind::Keys => Some(FileType::Key),
            ListKind::Locks => Some(FileType::Lock),
        }
    }

    /// Whether listing needs the index loaded.
    pub fn needs_index(&self) -> bool {
        *self == ListKind::Blobs
    }
}

/// The names of every file of `t`, sorted.
pub fn files(repo: &Repository, t: FileType) -> Result<Vec<String>> {
    let mut names: Vec<String> = repo
        .storage()
        .list(t)?
        .into_iter()
        .map(|f| f.name)
        .collect();
    names.sort();
    Ok(names)
}

/// One blob of the index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct ListedBlob {
    #[serde(rename = "type")]
    pub blob_type: BlobType,
    pub id: BlobId,
}

/// Every blob of the loaded index, sorted by type then id.
pub fn blobs(repo: &Repository) -> Vec<ListedBlob> {
    let mut out: Vec<ListedBlob> = repo
        .index()
        .read()
        .iter()
        .map(|(id, e)| ListedBlob {
            blob_type: e.blob_type,
            id: *id,
        })
        .collect();
    out.sort();
    out
}
