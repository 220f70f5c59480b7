//! The binlog archive: one object per closed binlog file under
//! `bunker/binlog/<name>`.
//!
//! The object format is the WAL archive's ([`crate::pg::wal_archive`]):
//! the content encrypted and authenticated with the repository's master key
//! behind a header with its SHA-256, optionally zstd-compressed. Names are
//! the binlog file names in clear (`binlog.000042`), which lets
//! `write_new` refuse a second, different file under one name without a
//! lookup table.

use bunker_format::Id;
use bunker_sources::mysql::BinlogName;
use bunker_storage::{ErrorKind, FileType};

use crate::error::{RepoError, Result};
use crate::pg::wal_archive::{decode_object, encode, PushOutcome};
use crate::Repository;

/// Errors of the binlog archive that callers treat specially.
#[derive(Debug, thiserror::Error)]
pub enum BinlogError {
    /// A different file with this name is archived.
    #[error("{name}: a different binlog file with this name is already archived (content hash {existing} vs {new}); refusing to overwrite it. Two servers with the same binlog base name may be archiving into one repository (set log_bin to a distinct name), or the server was re-initialised.")]
    Conflict {
        /// The file name.
        name: String,
        /// Hash of the archived content.
        existing: String,
        /// Hash of the pushed content.
        new: String,
    },
    /// Not a binlog file name.
    #[error("{name}: not a binlog file name (expected <base>.<number>, e.g. binlog.000042)")]
    BadName {
        /// The name.
        name: String,
    },
}

impl From<BinlogError> for RepoError {
    fn from(e: BinlogError) -> RepoError {
        RepoError::Invalid(e.to_string())
    }
}

fn check_name(name: &str) -> Result<BinlogName> {
    BinlogName::parse(name).map_err(|_| {
        BinlogError::BadName {
            name: name.to_string(),
        }
        .into()
    })
}

fn decode(repo: &Repository, name: &str, stored: &[u8]) -> Result<(Id, Vec<u8>)> {
    decode_object(repo.key(), name, stored).map_err(|e| {
        RepoError::Invalid(
            e.to_string()
                .replace("archived WAL file", "archived binlog file")
                .replace("bunker WAL object", "bunker archive object"),
        )
    })
}

/// Archive one closed binlog file. Returns once it is durable; an
/// identical file already archived is success, a different one an error
/// ([`BinlogError::Conflict`]).
pub fn push(repo: &Repository, name: &str, content: &[u8]) -> Result<PushOutcome> {
    check_name(name)?;
    let stored = encode(repo, content)?;
    let stored_bytes = stored.len() as u64;
    match repo
        .storage()
        .write_new(FileType::Binlog, name, stored.into())
    {
        Ok(()) => Ok(PushOutcome::Stored { stored_bytes }),
        Err(e) if e.kind == ErrorKind::AlreadyExists => {
            let existing = repo.storage().read(FileType::Binlog, name)?;
            let new = Id::hash(content);
            let (old, _) = decode(repo, name, &existing)?;
            if old == new {
                Ok(PushOutcome::AlreadyArchived)
            } else {
                Err(BinlogError::Conflict {
                    name: name.to_string(),
                    existing: old.short(),
                    new: new.short(),
                }
                .into())
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// Fetch one archived binlog file; `None` when it is not archived.
pub fn fetch(repo: &Repository, name: &str) -> Result<Option<Vec<u8>>> {
    check_name(name)?;
    match repo.storage().read(FileType::Binlog, name) {
        Ok(bytes) => Ok(Some(decode(repo, name, &bytes)?.1)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Every archived binlog file that parses as one, in (base, sequence) order.
pub fn list(repo: &Repository) -> Result<Vec<BinlogName>> {
    let mut out: Vec<BinlogName> = repo
        .storage()
        .list(FileType::Binlog)?
        .into_iter()
        .filter_map(|f| BinlogName::parse(&f.name).ok())
        .collect();
    out.sort();
    Ok(out)
}

/// Remove one archived binlog file.
pub fn remove(repo: &Repository, name: &str) -> Result<()> {
    check_name(name)?;
    repo.storage().remove(FileType::Binlog, name)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::test_repo;

    #[test]
    fn push_fetch_identical_repush_and_conflict() {
        let (_d, repo) = test_repo();
        let a: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let mut b = a.clone();
        b[5000] ^= 1;
        assert!(matches!(
            push(&repo, "binlog.000001", &a).unwrap(),
            PushOutcome::Stored { .. }
        ));
        assert_eq!(
            push(&repo, "binlog.000001", &a).unwrap(),
            PushOutcome::AlreadyArchived
        );
        let e = push(&repo, "binlog.000001", &b).unwrap_err();
        assert!(e.to_string().contains("different binlog file"), "{e}");
        assert_eq!(fetch(&repo, "binlog.000001").unwrap(), Some(a));
        assert_eq!(fetch(&repo, "binlog.000002").unwrap(), None);
        // Stored under bunker/binlog, not beside the WAL.
        assert!(repo.storage().list(FileType::Wal).unwrap().is_empty());
        assert!(push(&repo, "../x.000001", b"x").is_err());
        assert!(push(&repo, "binlog.index", b"x").is_err());
        push(&repo, "binlog.000003", b"3").unwrap();
        let names: Vec<String> = list(&repo).unwrap().iter().map(|n| n.to_string()).collect();
        assert_eq!(names, ["binlog.000001", "binlog.000003"]);
        remove(&repo, "binlog.000003").unwrap();
        assert_eq!(list(&repo).unwrap().len(), 1);
    }
}
