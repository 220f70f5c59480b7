//! Reading the WAL archive back, for `check --read-data` and
//! `pg wal-verify --read-data`: each archived WAL file (`bunker/wal/`) is
//! downloaded, decrypted (which authenticates it), decompressed and compared
//! with the content hash recorded inside it, so a flipped byte is found
//! before a point-in-time recovery needs the file.

use std::collections::HashMap;

use bunker_format::{Id, PackId};
use bunker_storage::FileType;
use rayon::prelude::*;
use serde::Serialize;

use crate::check::ReadData;
use crate::error::Result;
use crate::Repository;

/// The outcome of reading WAL archive objects.
#[derive(Clone, Debug, Default, Serialize)]
pub struct WalReadReport {
    /// Objects in the archive.
    pub objects: u64,
    /// Objects read and verified.
    pub read: u64,
    /// Bytes read.
    pub bytes: u64,
    /// Damaged objects: name and what is wrong (sorted by name).
    pub damaged: Vec<(String, String)>,
}

/// Bytes read from one object, and what is wrong with it (name, reason).
type ObjectRead = (u64, Option<(String, String)>);

/// Reads and verifies the archived WAL files `which` selects: all of them,
/// none, the `n/m` subset (by the first byte of the SHA-256 of the name, so
/// `1/m` .. `m/m` cover the archive) or a random percentage. Objects removed
/// while this runs (`wal-prune`) are skipped; storage errors are errors.
pub fn read_objects(repo: &Repository, which: &ReadData) -> Result<WalReadReport> {
    let files = repo.storage().list(FileType::Wal)?;
    let mut report = WalReadReport {
        objects: files.len() as u64,
        ..Default::default()
    };
    // The pack-subset rule applied to ids derived from the names.
    let by_id: HashMap<PackId, String> = files
        .into_iter()
        .map(|f| (PackId::from(Id::hash(f.name.as_bytes())), f.name))
        .collect();
    let ids: Vec<PackId> = {
        let mut v: Vec<PackId> = by_id.keys().copied().collect();
        v.sort();
        v
    };
    let selected: Vec<&String> = which.select(&ids).iter().map(|id| &by_id[id]).collect();
    let results: Vec<Result<Option<ObjectRead>>> = selected
        .par_iter()
        .map(|name| match repo.storage().read(FileType::Wal, name) {
            Ok(bytes) => {
                let bad = crate::pg::wal_archive::decode(repo, name, &bytes)
                    .err()
                    .map(|e| ((*name).clone(), damage_reason(e)));
                Ok(Some((bytes.len() as u64, bad)))
            }
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.into()),
        })
        .collect();
    for r in results {
        if let Some((bytes, bad)) = r? {
            report.read += 1;
            report.bytes += bytes;
            report.damaged.extend(bad);
        }
    }
    report.damaged.sort();
    Ok(report)
}

fn damage_reason(e: crate::pg::wal_archive::WalError) -> String {
    match e {
        crate::pg::wal_archive::WalError::Damaged { reason, .. } => reason,
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::test_repo;

    /// A flipped byte in an archived WAL file is found by reading it back,
    /// and the `n/m` subsets together read every object once.
    #[test]
    fn flipped_byte_in_wal_object_is_found_and_subsets_cover_the_archive() {
        let (d, repo) = test_repo();
        let names: Vec<String> = (1..=6)
            .map(|i| format!("0000000100000000000000{i:02X}"))
            .collect();
        for (i, n) in names.iter().enumerate() {
            let content = vec![i as u8; 64 * 1024];
            crate::pg::wal_archive::push(&repo, n, &content).expect("push");
        }
        let clean = read_objects(&repo, &ReadData::All).expect("read");
        assert_eq!((clean.objects, clean.read), (6, 6));
        assert!(clean.damaged.is_empty());
        let covered: u64 = (1..=3)
            .map(|n| {
                read_objects(&repo, &ReadData::Subset { n, m: 3 })
                    .unwrap()
                    .read
            })
            .sum();
        assert_eq!(covered, 6);
        assert_eq!(read_objects(&repo, &ReadData::No).unwrap().read, 0);

        let path = d.path().join("repo/bunker/wal").join(&names[2]);
        let mut bytes = std::fs::read(&path).expect("read object");
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x40;
        std::fs::write(&path, bytes).expect("write object");
        let r = read_objects(&repo, &ReadData::All).expect("read");
        assert_eq!(r.damaged.len(), 1, "{r:?}");
        assert_eq!(r.damaged[0].0, names[2]);
        assert!(r.damaged[0].1.contains("cannot decrypt"), "{r:?}");
    }
}
