//! The fuzz targets: one per decoder of bytes read from a repository.

use bunker_format::crypto::Key;
use bunker_format::index::IndexFile;
use bunker_format::keyfile::KeyFile;
use bunker_format::lock::LockFile;
use bunker_format::node::Tree;
use bunker_format::snapshot::Snapshot;
use bunker_format::{pack, unpacked};
use bunker_repo::pg::wal_archive;

/// A decoder of untrusted bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// Pack header: the plaintext entries, and the whole encrypted tail
    /// with its length field (`pack::decode_header`).
    PackHeader,
    /// Index file JSON.
    Index,
    /// Tree blob JSON.
    Tree,
    /// Snapshot file JSON.
    Snapshot,
    /// Key file JSON, and opening it when its KDF parameters are cheap.
    KeyFile,
    /// The envelope of unpacked files (config, index, snapshot, lock): the
    /// plaintext after decryption, raw JSON or version byte + zstd.
    Unpacked,
    /// A bunker WAL object (magic, flags, hash, length, maybe zstd).
    WalObject,
    /// Lock file JSON.
    Lock,
}

impl Target {
    pub const ALL: [Target; 8] = [
        Target::PackHeader,
        Target::Index,
        Target::Tree,
        Target::Snapshot,
        Target::KeyFile,
        Target::Unpacked,
        Target::WalObject,
        Target::Lock,
    ];

    /// Name on the command line and of the corpus directory.
    pub fn name(self) -> &'static str {
        match self {
            Target::PackHeader => "pack_header",
            Target::Index => "index",
            Target::Tree => "tree",
            Target::Snapshot => "snapshot",
            Target::KeyFile => "key_file",
            Target::Unpacked => "unpacked",
            Target::WalObject => "wal_object",
            Target::Lock => "lock",
        }
    }

    pub fn from_name(name: &str) -> Option<Target> {
        Target::ALL.into_iter().find(|t| t.name() == name)
    }

    /// Mixed into the PRNG seed so targets get different sequences.
    pub(crate) fn salt(self) -> u64 {
        self.name().bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        })
    }
}

/// The fixed key the harness encrypts plaintext inputs with.
pub fn fuzz_key() -> Key {
    Key::from_parts([0x42; 32], [0x17; 16], [0x2a; 16])
}

/// Run `target` on `data`. Decoders must return errors, never panic.
pub fn run(target: Target, data: &[u8]) {
    let key = fuzz_key();
    match target {
        Target::PackHeader => {
            let data_end = u64::from(data.first().copied().unwrap_or(0)) << 12;
            let _ = pack::parse_header(data, data_end);
            let _ = pack::parse_header(data, u64::MAX);
            // As stored: encrypted header, then its length; the pack may be
            // longer (blob data before the header).
            let mut tail = key.encrypt(data);
            let len = tail.len() as u32;
            tail.extend_from_slice(&len.to_le_bytes());
            let extra = u64::from(data.last().copied().unwrap_or(0)) * 97;
            let _ = pack::decode_header(&key, &tail, tail.len() as u64 + extra);
            // And the raw bytes as a tail: a garbage length field.
            let _ = pack::decode_header(&key, data, data.len() as u64);
        }
        Target::Index => {
            if let Ok(i) = IndexFile::from_json_bytes(data) {
                let _ = i.blob_count();
                let _ = i.to_json_bytes();
            }
        }
        Target::Tree => {
            if let Ok(t) = Tree::from_bytes(data) {
                let _ = t.to_bytes();
            }
        }
        Target::Snapshot => {
            if let Ok(s) = serde_json::from_slice::<Snapshot>(data) {
                let _ = s.to_json_bytes();
            }
        }
        Target::KeyFile => {
            if let Ok(k) = KeyFile::from_json_bytes(data) {
                let p = k.params();
                // Only cheap parameters are derived here; validation of
                // expensive ones is part of the decoder and runs anyway.
                let _ = p.validate();
                if p.n <= 1 << 10 && p.r <= 8 && p.p <= 2 {
                    let _ = k.open(b"fuzz password");
                }
                let _ = k.to_json_bytes();
            }
        }
        Target::Unpacked => {
            let _ = unpacked::decode(&key, &key.encrypt(data));
            let _ = unpacked::decode(&key, data);
        }
        Target::WalObject => {
            let name = "000000010000000000000001";
            let _ = wal_archive::decode_object(&key, name, &key.encrypt(data));
        }
        Target::Lock => {
            let _ = serde_json::from_slice::<LockFile>(data);
            let _ = unpacked::decode_json::<LockFile>(&key, &key.encrypt(data), "lock");
        }
    }
}
