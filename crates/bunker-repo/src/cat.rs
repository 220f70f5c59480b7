//! `cat`: the raw content of repository objects, for inspection and debugging.
//!
//! | what        | id                      | output                                        |
//! |-------------|-------------------------|-----------------------------------------------|
//! | `config`    | —                       | decrypted config JSON                         |
//! | `masterkey` | —                       | master key JSON (secret!)                     |
//! | `key`       | key file id (prefix)    | key file JSON as stored                       |
//! | `snapshot`  | id (prefix) or `latest` | decrypted, decompressed snapshot JSON         |
//! | `index`     | id (prefix)             | decrypted, decompressed index JSON            |
//! | `lock`      | id (prefix)             | decrypted lock JSON                           |
//! | `pack`      | id (prefix)             | the pack header as a JSON array of blobs      |
//! | `blob`      | blob id (prefix)        | plaintext of a data or tree blob              |
//! | `tree`      | tree id (prefix)        | the tree blob (JSON)                          |
//!
//! Ids of files and blobs may be abbreviated to a unique prefix. `blob` and
//! `tree` load the index first if the repository has none loaded yet.

use bunker_format::pack;
use bunker_format::{BlobId, BlobType};
use bunker_storage::FileType;
use serde::Serialize;

use crate::error::{RepoError, Result};
use crate::snapshots::{self, SnapshotFilter};
use crate::Repository;

/// Object kinds `cat` understands.
pub const CAT_KINDS: &[&str] = &[
    "config",
    "masterkey",
    "key",
    "snapshot",
    "index",
    "lock",
    "pack",
    "blob",
    "tree",
];

/// One header entry as `cat pack` shows it.
#[derive(Serialize)]
struct HeaderEntry {
    #[serde(rename = "type")]
    blob_type: BlobType,
    id: BlobId,
    offset: u32,
    length: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    uncompressed_length: Option<u32>,
}

/// The raw bytes of `what` (see the module docs); `id` is required for all but `config` and `masterkey`.
pub fn cat(repo: &Repository, what: &str, id: Option<&str>) -> Result<Vec<u8>> {
    let need_id = || {
        id.filter(|s| !s.is_empty())
            .ok_or_else(|| RepoError::Invalid(format!("`cat {what}` needs an ID")))
    };
    match what {
        "config" => {
            let bytes = repo.storage().read(FileType::Config, "")?;
            repo.key()
                .decrypt(&bytes)
                .map_err(|e| RepoError::format("config", "", e))
        }
        "masterkey" => serde_json::to_vec_pretty(&repo.key().to_json_struct())
            .map_err(|e| RepoError::Invalid(format!("cannot encode the master key: {e}"))),
        "key" => {
            let name = resolve_file(repo, FileType::Key, need_id()?, "key")?;
            Ok(repo.storage().read(FileType::Key, &name)?.to_vec())
        }
        "snapshot" => {
            let spec = need_id()?;
            let name = if spec == "latest" {
                snapshots::find(repo, spec, &SnapshotFilter::default())?
                    .id
                    .to_hex()
            } else {
                resolve_file(repo, FileType::Snapshot, spec, "snapshot")?
            };
            repo.load_unpacked(FileType::Snapshot, &name, "snapshot")
        }
        "index" => {
            let name = resolve_file(repo, FileType::Index, need_id()?, "index")?;
            repo.load_unpacked(FileType::Index, &name, "index")
        }
        "lock" => {
            let name = resolve_file(repo, FileType::Lock, need_id()?, "lock")?;
            repo.load_unpacked(FileType::Lock, &name, "lock")
        }
        "pack" => {
            let name = resolve_file(repo, FileType::Pack, need_id()?, "pack")?;
            pack_header_json(repo, &name)
        }
        "blob" => {
            let id = resolve_blob(repo, need_id()?, None)?;
            let t = repo
                .lookup(&id)
                .map(|e| e.blob_type)
                .unwrap_or(BlobType::Data);
            repo.read_blob(t, &id)
        }
        "tree" => {
            let id = resolve_blob(repo, need_id()?, Some(BlobType::Tree))?;
            repo.read_blob(BlobType::Tree, &id)
        }
        other => Err(RepoError::Invalid(format!(
            "cannot cat {other:?}: choose one of {}",
            CAT_KINDS.join(", ")
        ))),
    }
}

fn check_prefix(prefix: &str, what: &str) -> Result<String> {
    let p = prefix.to_ascii_lowercase();
    if p.is_empty() || p.len() > 64 || !p.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(RepoError::Invalid(format!(
            "{prefix:?} is not a {what} id: give up to 64 hex digits"
        )));
    }
    Ok(p)
}

/// The full name of the one file of type `t` starting with `prefix`.
pub fn resolve_file(repo: &Repository, t: FileType, prefix: &str, what: &str) -> Result<String> {
    let p = check_prefix(prefix, what)?;
    if p.len() == 64 {
        return Ok(p);
    }
    let names: Vec<String> = repo
        .storage()
        .list(t)?
        .into_iter()
        .map(|f| f.name)
        .filter(|n| n.starts_with(&p))
        .collect();
    match names.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(RepoError::Invalid(format!(
            "no {what} file matches {prefix:?}"
        ))),
        _ => Err(RepoError::AmbiguousId(prefix.to_string())),
    }
}

/// The one indexed blob (of type `t`, if given) whose id starts with `prefix`.
fn resolve_blob(repo: &Repository, prefix: &str, t: Option<BlobType>) -> Result<BlobId> {
    let p = check_prefix(prefix, "blob")?;
    if repo.index().read().blob_count() == 0 {
        repo.load_index()?;
    }
    let index = repo.index().read();
    if p.len() == 64 {
        let id = BlobId::from_hex(&p).map_err(|e| RepoError::format("blob id", &p, e))?;
        return match index.get(&id) {
            Some(e) if t.is_none_or(|t| t == e.blob_type) => Ok(id),
            _ => Err(RepoError::BlobNotFound { blob: p }),
        };
    }
    let mut found: Option<BlobId> = None;
    for (id, e) in index.iter() {
        if t.is_some_and(|t| t != e.blob_type) || !id.to_hex().starts_with(&p) {
            continue;
        }
        if found.is_some() {
            return Err(RepoError::AmbiguousId(prefix.to_string()));
        }
        found = Some(*id);
    }
    found.ok_or(RepoError::BlobNotFound { blob: p })
}

/// Read the header of pack `name` and render it as JSON.
fn pack_header_json(repo: &Repository, name: &str) -> Result<Vec<u8>> {
    let damaged = |msg: String| RepoError::DamagedPack {
        pack: name.to_string(),
        msg,
    };
    let size = repo
        .storage()
        .stat(FileType::Pack, name)?
        .ok_or_else(|| RepoError::Invalid(format!("pack {name} does not exist")))?;
    if size < 4 {
        return Err(damaged(format!("{size} bytes is too short for a pack")));
    }
    let tail = repo
        .storage()
        .read_range(FileType::Pack, name, size - 4, 4)?;
    let mut le = [0u8; 4];
    le.copy_from_slice(
        tail.get(..4)
            .ok_or_else(|| damaged("short read of the header length".into()))?,
    );
    let hlen = u64::from(u32::from_le_bytes(le));
    let start = (size - 4)
        .checked_sub(hlen)
        .ok_or_else(|| damaged(format!("header length {hlen} exceeds the pack size {size}")))?;
    let raw = repo
        .storage()
        .read_range(FileType::Pack, name, start, hlen + 4)?;
    let blobs =
        pack::decode_header(repo.key(), &raw, size).map_err(|e| damaged(format!("header: {e}")))?;
    let entries: Vec<HeaderEntry> = blobs
        .into_iter()
        .map(|b| HeaderEntry {
            blob_type: b.blob_type,
            id: b.id,
            offset: b.offset,
            length: b.length,
            uncompressed_length: b.uncompressed_length,
        })
        .collect();
    serde_json::to_vec_pretty(&entries)
        .map_err(|e| RepoError::Invalid(format!("cannot encode pack header: {e}")))
}
