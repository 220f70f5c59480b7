//! The data phase of `check`: read packs whole and verify everything in them.

use std::collections::{HashMap, HashSet};

use bunker_format::index::IndexBlob;
use bunker_format::pack;
use bunker_format::{BlobId, BlobType, Id, PackId};
use bunker_storage::FileType;
use rayon::prelude::*;

use super::{Findings, PackInfo};
use crate::progress::Progress;
use crate::Repository;

/// Totals of the data phase.
pub(super) struct ReadStats {
    pub packs_read: u64,
    pub bytes_read: u64,
}

/// What reading one pack found.
enum Verdict {
    Ok,
    /// The pack content is wrong; the messages say how.
    Damaged(Vec<String>),
    /// The pack disappeared since it was listed.
    Missing,
    /// It could not be downloaded (not evidence of damage).
    Unreadable(String),
}

/// Read `selected` packs in parallel (on the current thread pool) and record what is wrong.
pub(super) fn read_packs(
    repo: &Repository,
    packs: &HashMap<PackId, PackInfo>,
    selected: &[PackId],
    f: &mut Findings,
    progress: &dyn Progress,
) -> ReadStats {
    let total_bytes: u64 = selected
        .iter()
        .filter_map(|p| packs.get(p))
        .map(|i| super::expected_pack_size(&i.blobs))
        .sum();
    progress.set_total(selected.len() as u64, total_bytes);
    let results: Vec<(PackId, u64, Verdict, bool)> = selected
        .par_iter()
        .map(|id| {
            let blobs = packs.get(id).map(|i| i.blobs.as_slice()).unwrap_or(&[]);
            progress.current(&id.to_hex());
            let (mut bytes, first) = verify_pack(repo, id, blobs);
            // A second read separates damage at rest from a transient fault on the way.
            let (verdict, retried) = match first {
                Verdict::Damaged(_) | Verdict::Unreadable(_) => {
                    let (b2, second) = verify_pack(repo, id, blobs);
                    bytes += b2;
                    match second {
                        Verdict::Ok => (Verdict::Ok, true),
                        other => (other, false),
                    }
                }
                v => (v, false),
            };
            progress.add_items(1);
            progress.add_bytes(bytes);
            (*id, bytes, verdict, retried)
        })
        .collect();
    let mut stats = ReadStats {
        packs_read: 0,
        bytes_read: 0,
    };
    for (id, bytes, verdict, retried) in results {
        stats.bytes_read += bytes;
        if matches!(verdict, Verdict::Ok | Verdict::Damaged(_)) {
            stats.packs_read += 1;
        }
        if retried {
            f.warning(format!(
                "pack {id}: the first read failed verification, the second succeeded (transient error)"
            ));
        }
        match verdict {
            Verdict::Ok => {}
            Verdict::Damaged(msgs) => {
                f.damaged.insert(id);
                for m in msgs {
                    f.error(progress, format!("pack {id}: {m}"));
                }
            }
            Verdict::Missing => {
                f.missing.insert(id);
                f.error(
                    progress,
                    format!("pack {id} does not exist (the index lists it)"),
                );
            }
            Verdict::Unreadable(m) => f.error(progress, format!("pack {id} cannot be read: {m}")),
        }
    }
    stats
}

/// Read one pack and verify hash, blobs and header. Returns bytes read and the verdict.
fn verify_pack(repo: &Repository, id: &PackId, indexed: &[IndexBlob]) -> (u64, Verdict) {
    let bytes = match repo.storage().read(FileType::Pack, &id.to_hex()) {
        Ok(b) => b,
        Err(e) if e.is_not_found() => return (0, Verdict::Missing),
        Err(e) => return (0, Verdict::Unreadable(e.to_string())),
    };
    let len = bytes.len() as u64;
    let mut errs = Vec::new();
    let actual = Id::hash(&bytes);
    if actual != id.id() {
        errs.push(format!("content hashes to {actual}, not to its name"));
    }
    for b in indexed {
        let start = u64::from(b.offset);
        let end = start + u64::from(b.length);
        if end > len {
            errs.push(format!(
                "blob {} (bytes {start}..{end}) lies beyond the end of the pack ({len} bytes)",
                b.id
            ));
            continue;
        }
        let raw = &bytes[start as usize..end as usize];
        if let Err(e) = repo.decode_verified(raw, &b.id, b.uncompressed_length, &id.to_hex()) {
            errs.push(match e {
                crate::RepoError::DamagedPack { msg, .. } => msg,
                other => other.to_string(),
            });
        }
    }
    match decode_header(repo, &bytes) {
        Ok(header) => compare_header(&header, indexed, &mut errs),
        Err(m) => errs.push(format!("header: {m}")),
    }
    if errs.is_empty() {
        (len, Verdict::Ok)
    } else {
        (len, Verdict::Damaged(errs))
    }
}

type Entry = (BlobType, BlobId, u32, u32, Option<u32>);

fn decode_header(repo: &Repository, bytes: &[u8]) -> Result<Vec<Entry>, String> {
    // decode_header takes the header's tail end; leading pack bytes are allowed.
    let header =
        pack::decode_header(repo.key(), bytes, bytes.len() as u64).map_err(|e| e.to_string())?;
    Ok(header
        .into_iter()
        .map(|b| (b.blob_type, b.id, b.offset, b.length, b.uncompressed_length))
        .collect())
}

fn compare_header(header: &[Entry], indexed: &[IndexBlob], errs: &mut Vec<String>) {
    let in_header: HashSet<Entry> = header.iter().copied().collect();
    let in_index: HashSet<Entry> = indexed
        .iter()
        .map(|b| (b.blob_type, b.id, b.offset, b.length, b.uncompressed_length))
        .collect();
    let mut extra: Vec<&Entry> = in_header.difference(&in_index).collect();
    extra.sort();
    for e in extra {
        errs.push(format!(
            "{} blob {} in the pack header is not in the index or at another position",
            e.0.as_str(),
            e.1
        ));
    }
    let mut absent: Vec<&Entry> = in_index.difference(&in_header).collect();
    absent.sort();
    for e in absent {
        errs.push(format!(
            "indexed {} blob {} is not in the pack header",
            e.0.as_str(),
            e.1
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: u8, offset: u32) -> Entry {
        (BlobType::Data, BlobId::from(Id([n; 32])), offset, 40, None)
    }

    #[test]
    fn header_and_index_compared_both_ways() {
        let header = vec![entry(1, 0), entry(2, 40)];
        let indexed: Vec<IndexBlob> = [entry(1, 0), entry(3, 40)]
            .iter()
            .map(|e| IndexBlob {
                blob_type: e.0,
                id: e.1,
                offset: e.2,
                length: e.3,
                uncompressed_length: e.4,
            })
            .collect();
        let mut errs = Vec::new();
        compare_header(&header, &indexed, &mut errs);
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(errs[0].contains(&Id([2; 32]).to_hex()));
        assert!(errs[1].contains(&Id([3; 32]).to_hex()));
        let mut none = Vec::new();
        compare_header(&header, &indexed[..1], &mut none);
        assert_eq!(none.len(), 1);
    }
}
