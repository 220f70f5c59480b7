//! A seed corpus from a real repository: every kind of file the targets
//! decode, decrypted with the repository's key (the targets re-encrypt with
//! their own), one file per object, small ones only.

use std::path::Path;

use bunker_format::node::Tree;
use bunker_format::snapshot::Snapshot;
use bunker_format::{unpacked, BlobType};
use bunker_repo::{RepoOptions, Repository};
use bunker_storage::FileType;

/// Objects larger than this are not written as seeds (the corpus is committed).
const MAX_SEED: usize = 16 << 10;

type Error = Box<dyn std::error::Error>;

/// Write seeds from the repository at `location` into `out/<target>/`;
/// returns how many files were written.
pub fn write_seeds(location: &str, password_file: &str, out: &Path) -> Result<usize, Error> {
    let password = std::fs::read_to_string(password_file)?;
    let storage = bunker_storage::open(location, &[])?;
    let repo = Repository::open(
        storage,
        password.trim_end().as_bytes(),
        RepoOptions::default(),
    )?;
    repo.load_index()?;
    let st = repo.storage();
    let key = repo.key();
    let mut n = 0;
    let mut put = |target: &str, name: &str, bytes: &[u8]| -> Result<(), Error> {
        if bytes.len() <= MAX_SEED {
            let dir = out.join(target);
            std::fs::create_dir_all(&dir)?;
            std::fs::write(dir.join(&name[..name.len().min(16)]), bytes)?;
            n += 1;
        }
        Ok(())
    };
    for f in st.list(FileType::Key)? {
        put("key_file", &f.name, &st.read(FileType::Key, &f.name)?)?;
    }
    let mut roots = Vec::new();
    for (ft, target) in [
        (FileType::Snapshot, "snapshot"),
        (FileType::Index, "index"),
        (FileType::Lock, "lock"),
    ] {
        for f in st.list(ft)? {
            let raw = st.read(ft, &f.name)?;
            put(
                "unpacked",
                &format!("{target}-{}", f.name),
                &key.decrypt(&raw)?,
            )?;
            let json = unpacked::decode(key, &raw)?;
            if ft == FileType::Snapshot {
                roots.push(serde_json::from_slice::<Snapshot>(&json)?.tree);
            }
            put(target, &f.name, &json)?;
        }
    }
    for f in st.list(FileType::Pack)? {
        let raw = st.read(FileType::Pack, &f.name)?;
        let mut tail = [0u8; 4];
        tail.copy_from_slice(&raw[raw.len() - 4..]);
        let hlen = bunker_format::pack::header_length_from_tail(&tail) as usize;
        let header = &raw[raw.len() - 4 - hlen..raw.len() - 4];
        put("pack_header", &f.name, &key.decrypt(header)?)?;
    }
    let mut seen = std::collections::HashSet::new();
    while let Some(id) = roots.pop() {
        if !seen.insert(id) {
            continue;
        }
        let bytes = repo.read_blob(BlobType::Tree, &id)?;
        let tree = Tree::from_bytes(&bytes)?;
        roots.extend(tree.nodes.iter().filter_map(|n| n.subtree));
        put("tree", &id.to_string(), &bytes)?;
    }
    for f in st.list(FileType::Wal)? {
        let raw = st.read(FileType::Wal, &f.name)?;
        put("wal_object", &f.name, &key.decrypt(&raw)?)?;
    }
    Ok(n)
}
