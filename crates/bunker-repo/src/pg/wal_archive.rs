//! The WAL archive: one object per WAL file under `bunker/wal/<name>`.
//!
//! Objects are named by the WAL file name in clear (`%f`): PostgreSQL asks for
//! files by that name, names reveal only positions in the log (which the
//! object sizes and upload times reveal anyway), and a clear name lets
//! `write_new` refuse a second, different file under the same name without a
//! lookup table. The content is encrypted and authenticated with the
//! repository's master key:
//!
//! ```text
//! encrypt( "BKWAL1" | flags:u8 | sha256(content):32 | len:u64 LE | payload )
//! ```
//!
//! `flags` bit 0 means the payload is zstd-compressed. The hash of the
//! decrypted content is what a second push is compared against.

use bunker_format::compression::{compress, decompress};
use bunker_format::Id;
use bunker_sources::postgres::WalFileName;
use bunker_storage::{ErrorKind, FileType};

use crate::error::{RepoError, Result};
use crate::Repository;

const MAGIC: &[u8; 6] = b"BKWAL1";
const HEADER_LEN: usize = 6 + 1 + 32 + 8;
const FLAG_ZSTD: u8 = 1;
/// WAL files are at most 1 GiB (the largest segment size).
const MAX_WAL_FILE: u64 = 1 << 30;

/// What a push did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PushOutcome {
    /// The file was stored (and is durable).
    Stored { stored_bytes: u64 },
    /// An identical file was already archived; nothing written.
    AlreadyArchived,
}

/// Errors of the WAL archive that callers treat specially.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("{name}: a different WAL file with this name is already archived (content hash {existing} vs {new}); refusing to overwrite it. Two clusters may be archiving into one repository, or the archive belongs to another cluster.")]
    Conflict {
        name: String,
        existing: String,
        new: String,
    },
    #[error("{name}: not a WAL file name PostgreSQL would archive: {reason}")]
    BadName { name: String, reason: String },
    #[error("archived WAL file {name} is damaged: {reason}")]
    Damaged { name: String, reason: String },
}

impl From<WalError> for RepoError {
    fn from(e: WalError) -> RepoError {
        RepoError::Invalid(e.to_string())
    }
}

fn check_name(name: &str) -> Result<WalFileName, WalError> {
    WalFileName::parse(name).map_err(|e| WalError::BadName {
        name: name.to_string(),
        reason: e.to_string(),
    })
}

/// Build the stored (encrypted) object for `content`.
pub fn encode(repo: &Repository, content: &[u8]) -> Result<Vec<u8>> {
    let hash = Id::hash(content);
    let (flags, payload) = match repo.zstd_level() {
        Some(level) => match compress(content, level) {
            Ok(c) if c.len() < content.len() => (FLAG_ZSTD, c),
            _ => (0, content.to_vec()),
        },
        None => (0, content.to_vec()),
    };
    let mut plain = Vec::with_capacity(HEADER_LEN + payload.len());
    plain.extend_from_slice(MAGIC);
    plain.push(flags);
    plain.extend_from_slice(hash.as_bytes());
    plain.extend_from_slice(&(content.len() as u64).to_le_bytes());
    plain.extend_from_slice(&payload);
    Ok(repo.key().encrypt(&plain))
}

/// Decrypt a stored object: returns the content hash and the content.
pub(crate) fn decode(
    repo: &Repository,
    name: &str,
    stored: &[u8],
) -> Result<(Id, Vec<u8>), WalError> {
    decode_object(repo.key(), name, stored)
}

/// Decrypt and check a stored WAL object (`name` only names it in errors):
/// the content hash and the content. Untrusted bytes: every length is
/// checked before use, so damage is an error, never a panic.
pub fn decode_object(
    key: &bunker_format::crypto::Key,
    name: &str,
    stored: &[u8],
) -> Result<(Id, Vec<u8>), WalError> {
    let damaged = |reason: String| WalError::Damaged {
        name: name.to_string(),
        reason,
    };
    let plain = key
        .decrypt(stored)
        .map_err(|e| damaged(format!("cannot decrypt ({e}); wrong repository key?")))?;
    if plain.len() < HEADER_LEN || &plain[..6] != MAGIC {
        return Err(damaged("not a bunker WAL object".into()));
    }
    let flags = plain[6];
    let mut hash = [0u8; 32];
    hash.copy_from_slice(&plain[7..39]);
    let mut len = [0u8; 8];
    len.copy_from_slice(&plain[39..47]);
    let len = u64::from_le_bytes(len);
    if len > MAX_WAL_FILE {
        return Err(damaged(format!("implausible length {len}")));
    }
    let payload = &plain[HEADER_LEN..];
    let content = if flags & FLAG_ZSTD != 0 {
        decompress(payload, len as usize).map_err(|e| damaged(e.to_string()))?
    } else {
        payload.to_vec()
    };
    if content.len() as u64 != len {
        return Err(damaged("length does not match".into()));
    }
    let hash = Id(hash);
    if Id::hash(&content) != hash {
        return Err(damaged("content does not match its hash".into()));
    }
    Ok((hash, content))
}

/// Archive one WAL file. Returns once it is durable in the repository;
/// an identical file already archived is success, a different one an error
/// ([`WalError::Conflict`]).
pub fn push(repo: &Repository, name: &str, content: &[u8]) -> Result<PushOutcome> {
    check_name(name)?;
    let stored = encode(repo, content)?;
    let stored_bytes = stored.len() as u64;
    match repo.storage().write_new(FileType::Wal, name, stored.into()) {
        Ok(()) => Ok(PushOutcome::Stored { stored_bytes }),
        Err(e) if e.kind == ErrorKind::AlreadyExists => {
            let existing = repo.storage().read(FileType::Wal, name)?;
            let new = Id::hash(content);
            match decode(repo, name, &existing) {
                Ok((old, _)) if old == new => Ok(PushOutcome::AlreadyArchived),
                Ok((old, _)) => Err(WalError::Conflict {
                    name: name.to_string(),
                    existing: old.short(),
                    new: new.short(),
                }
                .into()),
                Err(damaged) => Err(RepoError::Invalid(format!(
                    "{damaged}; remove it with `bunker pg wal-prune --remove {name}` if you are sure"
                ))),
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// Fetch one archived WAL file; `None` when it is not archived.
pub fn fetch(repo: &Repository, name: &str) -> Result<Option<Vec<u8>>> {
    check_name(name)?;
    match repo.storage().read(FileType::Wal, name) {
        Ok(bytes) => Ok(Some(decode(repo, name, &bytes)?.1)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Names of every archived WAL file that parses as one, sorted.
pub fn list(repo: &Repository) -> Result<Vec<(String, WalFileName)>> {
    let mut out: Vec<(String, WalFileName)> = repo
        .storage()
        .list(FileType::Wal)?
        .into_iter()
        .filter_map(|f| WalFileName::parse(&f.name).ok().map(|w| (f.name, w)))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Remove one archived WAL file.
pub fn remove(repo: &Repository, name: &str) -> Result<()> {
    check_name(name)?;
    repo.storage().remove(FileType::Wal, name)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::test_repo;

    const SEG: &str = "000000010000000000000003";

    fn segment(seed: u8) -> Vec<u8> {
        // Compressible like real WAL: records followed by zeroed space.
        let mut v: Vec<u8> = (0..200_000u32).map(|i| (i as u8) ^ seed).collect();
        v.resize(1 << 20, 0);
        v
    }

    #[test]
    fn push_fetch_round_trip_and_compression() {
        let (_d, repo) = test_repo();
        let data = segment(1);
        let out = push(&repo, SEG, &data).unwrap();
        let PushOutcome::Stored { stored_bytes } = out else {
            panic!("not stored: {out:?}")
        };
        assert!(stored_bytes < data.len() as u64 / 2, "{stored_bytes}");
        assert_eq!(fetch(&repo, SEG).unwrap(), Some(data.clone()));
        // Stored encrypted: the plain data does not appear in the object.
        let raw = repo.storage().read(FileType::Wal, SEG).unwrap();
        assert!(!raw.windows(16).any(|w| w == &data[1000..1016]));
        assert_eq!(fetch(&repo, "000000010000000000000004").unwrap(), None);
        assert_eq!(list(&repo).unwrap().len(), 1);
    }

    #[test]
    fn identical_repush_succeeds_and_different_is_refused() {
        let (_d, repo) = test_repo();
        push(&repo, SEG, &segment(1)).unwrap();
        assert_eq!(
            push(&repo, SEG, &segment(1)).unwrap(),
            PushOutcome::AlreadyArchived
        );
        let e = push(&repo, SEG, &segment(2)).unwrap_err();
        assert!(e.to_string().contains("different WAL file"), "{e}");
        // The archived one is untouched.
        assert_eq!(fetch(&repo, SEG).unwrap(), Some(segment(1)));
    }

    #[test]
    fn names_are_checked_and_damage_detected() {
        let (_d, repo) = test_repo();
        assert!(push(&repo, "../etc/passwd", b"x").is_err());
        assert!(fetch(&repo, "pg_wal/x").is_err());
        push(&repo, "00000002.history", b"1\t0/3000000\tno target\n").unwrap();
        assert_eq!(
            fetch(&repo, "00000002.history").unwrap().as_deref(),
            Some(&b"1\t0/3000000\tno target\n"[..])
        );
        let mut raw = repo
            .storage()
            .read(FileType::Wal, "00000002.history")
            .unwrap()
            .to_vec();
        let last = raw.len() - 1;
        raw[last] ^= 1;
        repo.storage()
            .write(FileType::Wal, "00000002.history", raw.into())
            .unwrap();
        let e = fetch(&repo, "00000002.history").unwrap_err();
        assert!(e.to_string().contains("damaged"), "{e}");
        remove(&repo, "00000002.history").unwrap();
        assert!(list(&repo).unwrap().is_empty());
    }
}
