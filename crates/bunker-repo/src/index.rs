//! The in-memory master index: which pack holds which blob.
//!
//! Pack ids are interned into a vector so that each blob entry is a small
//! fixed-size record (no strings, no per-entry allocation).

use std::collections::HashMap;

use bunker_format::index::{IndexBlob, IndexFile, IndexPack};
use bunker_format::{BlobId, BlobType, IndexId, PackId};
use bunker_storage::{FileInfo, FileType};
use rayon::prelude::*;

use crate::error::Result;
use crate::Repository;

/// Location of one blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexEntry {
    /// Position of the pack in [`MasterIndex::packs`].
    pub pack: u32,
    pub blob_type: BlobType,
    pub offset: u32,
    pub length: u32,
    pub uncompressed_length: Option<u32>,
}

impl IndexEntry {
    /// Size of the blob's plaintext.
    pub fn plain_len(&self) -> u32 {
        self.uncompressed_length.unwrap_or(
            self.length
                .saturating_sub(bunker_format::crypto::CRYPTO_OVERHEAD as u32),
        )
    }
}

/// All blobs of all loaded index files.
#[derive(Default, Debug, Clone)]
pub struct MasterIndex {
    blobs: HashMap<BlobId, IndexEntry>,
    packs: Vec<PackId>,
    pack_pos: HashMap<PackId, u32>,
    /// Index files that were loaded, with the packs each lists.
    files: Vec<(IndexId, Vec<PackId>)>,
}

impl MasterIndex {
    /// Download and merge index files in parallel.
    pub fn load(repo: &Repository, files: &[FileInfo]) -> Result<MasterIndex> {
        let parsed: Vec<(String, IndexFile)> = files
            .par_iter()
            .map(|f| {
                let idx: IndexFile = repo.load_json(FileType::Index, &f.name, "index")?;
                Ok((f.name.clone(), idx))
            })
            .collect::<Result<_>>()?;
        let mut m = MasterIndex::default();
        for (name, file) in parsed {
            let id = bunker_format::Id::from_hex(&name)
                .map(IndexId::from)
                .map_err(|e| crate::RepoError::format("index file name", &name, e))?;
            m.add_file(id, &file);
        }
        Ok(m)
    }

    /// Merge one index file.
    pub fn add_file(&mut self, id: IndexId, file: &IndexFile) {
        let mut packs = Vec::with_capacity(file.packs.len());
        for p in &file.packs {
            self.add_pack(p);
            packs.push(p.id);
        }
        self.files.push((id, packs));
    }

    /// Merge the blobs of one pack (a pack listed twice is harmless).
    pub fn add_pack(&mut self, p: &IndexPack) {
        let pos = self.intern(p.id);
        for b in &p.blobs {
            self.blobs.entry(b.id).or_insert(IndexEntry {
                pack: pos,
                blob_type: b.blob_type,
                offset: b.offset,
                length: b.length,
                uncompressed_length: b.uncompressed_length,
            });
        }
    }

    fn intern(&mut self, id: PackId) -> u32 {
        if let Some(p) = self.pack_pos.get(&id) {
            return *p;
        }
        let pos = self.packs.len() as u32;
        self.packs.push(id);
        self.pack_pos.insert(id, pos);
        pos
    }

    pub fn get(&self, id: &BlobId) -> Option<IndexEntry> {
        self.blobs.get(id).copied()
    }

    pub fn has(&self, id: &BlobId) -> bool {
        self.blobs.contains_key(id)
    }

    pub fn pack_id(&self, pos: u32) -> PackId {
        self.packs[pos as usize]
    }

    pub fn blob_count(&self) -> usize {
        self.blobs.len()
    }

    pub fn packs(&self) -> &[PackId] {
        &self.packs
    }

    pub fn index_files(&self) -> &[(IndexId, Vec<PackId>)] {
        &self.files
    }

    /// Every blob with its entry.
    pub fn iter(&self) -> impl Iterator<Item = (&BlobId, &IndexEntry)> {
        self.blobs.iter()
    }

    /// The blobs of each pack, as an index would list them (sorted by offset).
    pub fn by_pack(&self) -> HashMap<PackId, Vec<IndexBlob>> {
        let mut out: HashMap<PackId, Vec<IndexBlob>> = HashMap::new();
        for (id, e) in &self.blobs {
            out.entry(self.packs[e.pack as usize])
                .or_default()
                .push(IndexBlob {
                    id: *id,
                    blob_type: e.blob_type,
                    offset: e.offset,
                    length: e.length,
                    uncompressed_length: e.uncompressed_length,
                });
        }
        for v in out.values_mut() {
            v.sort_by_key(|b| b.offset);
        }
        out
    }
}
