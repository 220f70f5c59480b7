//! Copying stored blobs (still compressed and encrypted as they are) into
//! new packs, one pack per blob type: what `prune` does to partly used packs
//! and `repair packs` to the intact blobs of damaged ones.

use bunker_format::pack::{EncodedBlob, PackBuilder, MAX_HEADER_ENTRIES};
use bunker_format::{BlobId, BlobType};

use crate::error::{RepoError, Result};

/// Collects stored blobs into new packs of about `target` bytes; the caller
/// uploads the full packs it hands back, and the rest from [`Repacker::finish`].
pub(crate) struct Repacker {
    data: PackBuilder,
    tree: PackBuilder,
    target: u64,
}

impl Repacker {
    /// Packs of about `target` bytes (at least 1).
    pub(crate) fn new(target: u64) -> Repacker {
        Repacker {
            data: PackBuilder::new(BlobType::Data),
            tree: PackBuilder::new(BlobType::Tree),
            target: target.max(1),
        }
    }

    /// Add one blob as stored (`raw`, already verified by the caller);
    /// returns a pack that became full and must be uploaded now.
    pub(crate) fn add(
        &mut self,
        blob_type: BlobType,
        id: BlobId,
        uncompressed_length: Option<u32>,
        raw: &[u8],
    ) -> Result<Option<PackBuilder>> {
        let builder = match blob_type {
            BlobType::Data => &mut self.data,
            BlobType::Tree => &mut self.tree,
        };
        builder
            .add(
                id,
                &EncodedBlob {
                    bytes: raw.to_vec(),
                    uncompressed_length,
                },
            )
            .map_err(|e| RepoError::format("pack", "new", e))?;
        let full = builder.len() as u64 >= self.target || builder.count() + 1 >= MAX_HEADER_ENTRIES;
        Ok(full.then(|| std::mem::replace(builder, PackBuilder::new(blob_type))))
    }

    /// The packs not yet full (none that are empty).
    pub(crate) fn finish(self) -> impl Iterator<Item = PackBuilder> {
        [self.data, self.tree].into_iter().filter(|b| !b.is_empty())
    }
}
