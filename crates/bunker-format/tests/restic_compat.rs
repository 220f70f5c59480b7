//! Compatibility with the real restic binary (skipped with a note when no
//! `restic` is on PATH; set `BUNKER_RESTIC` to use another binary).
//!
//! 1. `restic init` + `restic backup`, then bunker opens the key, the config,
//!    the index, every pack, tree and snapshot, re-encodes the JSON documents
//!    byte-identically and reproduces restic's chunk boundaries.
//! 2. bunker writes a key, packs, an index and a snapshot into the same
//!    repository; `restic check --read-data` and `restic dump` must accept them.

use std::collections::HashMap;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use bunker_format::chunker::{ChunkIter, Chunker};
use bunker_format::compression::Compression;
use bunker_format::config::RepoConfig;
use bunker_format::index::{IndexFile, IndexPack};
use bunker_format::keyfile::{KdfParams, KeyFile};
use bunker_format::node::{Node, NodeType, Tree, MODE_DIR, MODE_SYMLINK};
use bunker_format::pack::{decode_blob_checked, decode_header, encode_blob, PackBlob, PackBuilder};
use bunker_format::snapshot::Snapshot;
use bunker_format::{gojson, gotime, unpacked, BlobId, BlobType, Id, TreeId};

const PASSWORD: &str = "correct horse battery staple";

fn restic_bin() -> String {
    std::env::var("BUNKER_RESTIC").unwrap_or_else(|_| "restic".to_string())
}

fn restic(repo: &Path, password: &str, args: &[&str]) -> Output {
    let out = Command::new(restic_bin())
        .arg("--repo")
        .arg(repo)
        .arg("--no-cache")
        .args(args)
        .env("RESTIC_PASSWORD", password)
        .output()
        .expect("run restic");
    assert!(
        out.status.success(),
        "restic {:?} failed: {}\n{}",
        args,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn temp_dir() -> TempDir {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let p = std::env::temp_dir().join(format!(
        "bunker-format-compat-{}-{nanos}",
        std::process::id()
    ));
    fs::create_dir_all(&p).unwrap();
    TempDir(p)
}

fn pseudo_random(len: usize, mut seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        out.extend_from_slice(&seed.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files_in(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

fn restic_available() -> bool {
    match Command::new(restic_bin()).arg("version").output() {
        Ok(o) if o.status.success() => true,
        _ => {
            println!("NOTE: restic binary not found; skipping the restic compatibility test");
            false
        }
    }
}

#[test]
fn restic_repository_roundtrip() {
    if !restic_available() {
        return;
    }
    let tmp = temp_dir();
    let repo = tmp.0.join("repo");
    let src = tmp.0.join("src");
    fs::create_dir_all(src.join("sub")).unwrap();
    let big = pseudo_random(5 * 1024 * 1024 + 12345, 0x9e37_79b9_7f4a_7c15);
    fs::write(src.join("big.bin"), &big).unwrap();
    fs::write(src.join("small <&> \u{2028}.txt"), b"hello").unwrap();
    fs::write(src.join("empty"), b"").unwrap();
    fs::write(
        src.join(std::ffi::OsStr::from_bytes(b"bad\xff\"name\\")),
        b"x",
    )
    .unwrap();
    fs::write(src.join("sub").join("tab\tfile"), b"tab").unwrap();
    std::os::unix::fs::symlink("../target", src.join("link")).unwrap();

    restic(&repo, PASSWORD, &["init", "--repository-version", "2"]);

    // Key file and config written by restic.
    let keys = files_in(&repo.join("keys"));
    assert_eq!(keys.len(), 1);
    let key_bytes = fs::read(&keys[0]).unwrap();
    assert_eq!(
        Id::hash(&key_bytes).to_hex(),
        keys[0].file_name().unwrap().to_str().unwrap()
    );
    let kf = KeyFile::from_json_bytes(&key_bytes).unwrap();
    assert!(kf.open(b"wrong password").is_err());
    let master = kf.open(PASSWORD.as_bytes()).unwrap();
    let cfg = RepoConfig::decrypt(&master, &fs::read(repo.join("config")).unwrap()).unwrap();
    cfg.validate().unwrap();
    assert_eq!(cfg.version, 2);
    assert_eq!(
        kf.to_json_bytes().unwrap(),
        key_bytes,
        "key file re-encodes byte-identically"
    );

    restic(&repo, PASSWORD, &["backup", src.to_str().unwrap()]);

    // Index and packs.
    let mut blobs: HashMap<BlobId, (PackBlob, Vec<u8>)> = HashMap::new();
    for path in files_in(&repo.join("index")) {
        let raw = fs::read(&path).unwrap();
        assert_eq!(
            Id::hash(&raw).to_hex(),
            path.file_name().unwrap().to_str().unwrap()
        );
        let json = unpacked::decode(&master, &raw).unwrap();
        let idx = IndexFile::from_json_bytes(&json).unwrap();
        assert_eq!(
            idx.to_json_bytes().unwrap(),
            json,
            "index re-encodes byte-identically"
        );
        for p in &idx.packs {
            let pack = fs::read(
                repo.join("data")
                    .join(&p.id.to_hex()[..2])
                    .join(p.id.to_hex()),
            )
            .unwrap();
            assert_eq!(Id::hash(&pack), p.id.id());
            let header = decode_header(&master, &pack, pack.len() as u64).unwrap();
            // restic lists index blobs in hash-table order; compare by offset.
            let mut listed = p.blobs.clone();
            listed.sort_by_key(|b| b.offset);
            assert_eq!(IndexPack::from_pack_blobs(p.id, &header).blobs, listed);
            assert_eq!(p.implied_pack_size(), pack.len() as u64);
            for b in &header {
                let raw = &pack[b.offset as usize..b.end() as usize];
                let plain = decode_blob_checked(&master, raw, b.uncompressed_length, b.id).unwrap();
                blobs.insert(b.id, (*b, plain));
            }
        }
    }

    // Snapshot, trees, chunking.
    let snaps = files_in(&repo.join("snapshots"));
    assert_eq!(snaps.len(), 1);
    let raw = fs::read(&snaps[0]).unwrap();
    let json = unpacked::decode(&master, &raw).unwrap();
    let sn: Snapshot = unpacked::decode_json(&master, &raw, "snapshot").unwrap();
    assert_eq!(
        sn.to_json_bytes().unwrap(),
        json,
        "snapshot re-encodes byte-identically"
    );

    let mut trees_seen = 0;
    let mut stack = vec![sn.tree];
    let mut found_big = false;
    while let Some(tid) = stack.pop() {
        let (pb, plain) = &blobs[&tid];
        assert_eq!(pb.blob_type, BlobType::Tree);
        let tree = Tree::from_bytes(plain).unwrap();
        assert_eq!(&tree.to_bytes(), plain, "tree re-encodes byte-identically");
        assert!(tree.is_sorted_unique());
        trees_seen += 1;
        for n in &tree.nodes {
            match n.node_type {
                NodeType::Dir => stack.push(n.subtree.unwrap()),
                NodeType::File if n.name == b"big.bin" => {
                    let ours: Vec<BlobId> =
                        ChunkIter::new(&big[..], Chunker::new(cfg.chunker_polynomial))
                            .map(|c| BlobId(Id::hash(&c.unwrap())))
                            .collect();
                    assert!(ours.len() > 1);
                    assert_eq!(
                        n.content.as_ref().unwrap(),
                        &ours,
                        "chunk boundaries match restic"
                    );
                    found_big = true;
                }
                _ => {}
            }
        }
        if let Some(n) = tree.find(b"bad\xff\"name\\") {
            assert_eq!(n.size, 1);
        }
    }
    assert!(found_big && trees_seen >= 3);

    // Now bunker writes into the repository and restic reads it.
    let our_key = KeyFile::create(
        b"bunker password",
        &master,
        KdfParams {
            n: 1024,
            r: 8,
            p: 1,
        },
        "bunker-host",
        "bunker",
    )
    .unwrap();
    let (kid, kbytes) = our_key.encode().unwrap();
    fs::write(repo.join("keys").join(kid.to_hex()), kbytes).unwrap();

    let content_data = pseudo_random(1_500_000, 42);
    let mut data_pack = PackBuilder::new(BlobType::Data);
    let mut content = Vec::new();
    for chunk in ChunkIter::new(&content_data[..], Chunker::new(cfg.chunker_polynomial)) {
        let chunk = chunk.unwrap();
        let id = BlobId(Id::hash(&chunk));
        data_pack
            .add(id, &encode_blob(&master, &chunk, Some(3)).unwrap())
            .unwrap();
        content.push(id);
    }
    let text = b"bunker bunker bunker bunker bunker bunker bunker\n".repeat(100);
    let text_id = BlobId(Id::hash(&text));
    data_pack
        .add(text_id, &encode_blob(&master, &text, Some(3)).unwrap())
        .unwrap();

    let now = gotime::now_local();
    let mut file = Node::new(b"random \xff.bin".to_vec(), NodeType::File);
    file.mode = 0o640;
    file.mtime = now;
    file.atime = now;
    file.ctime = now;
    file.size = content_data.len() as u64;
    file.links = 1;
    file.content = Some(content.clone());
    let mut text_node = Node::new("text.txt", NodeType::File);
    text_node.mode = 0o644;
    text_node.size = text.len() as u64;
    text_node.content = Some(vec![text_id]);
    let mut link = Node::new("link", NodeType::Symlink);
    link.mode = MODE_SYMLINK | 0o777;
    link.link_target = b"random \xff.bin".to_vec();
    let inner = Tree {
        nodes: vec![file, link, text_node],
    };
    let (inner_id, inner_bytes) = inner.encode().unwrap();
    let mut dir = Node::new("data", NodeType::Dir);
    dir.mode = MODE_DIR | 0o755;
    dir.subtree = Some(inner_id);
    let root = Tree { nodes: vec![dir] };
    let (root_id, root_bytes) = root.encode().unwrap();
    let mut tree_pack = PackBuilder::new(BlobType::Tree);
    for (id, bytes) in [(inner_id, &inner_bytes), (root_id, &root_bytes)] {
        tree_pack
            .add(id, &encode_blob(&master, bytes, Some(3)).unwrap())
            .unwrap();
    }

    let mut index = IndexFile::default();
    for pb in [data_pack, tree_pack] {
        let (pid, bytes, listed) = pb.finish(&master);
        let dir = repo.join("data").join(&pid.to_hex()[..2]);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(pid.to_hex()), bytes).unwrap();
        index.packs.push(IndexPack::from_pack_blobs(pid, &listed));
    }
    let (iid, ibytes) = unpacked::encode_json(&master, &index, Compression::Auto).unwrap();
    fs::write(repo.join("index").join(iid.to_hex()), ibytes).unwrap();

    let mut snap = Snapshot::new(now, TreeId::from(root_id.id()), vec!["/bunker".into()]);
    snap.hostname = "bunker-host".into();
    snap.tags = vec!["bunker".into()];
    let (sid, sbytes) = unpacked::encode_json(&master, &snap, Compression::Auto).unwrap();
    fs::write(repo.join("snapshots").join(sid.to_hex()), sbytes).unwrap();

    // restic opens our key, checks everything and restores our file.
    let out = restic(&repo, "bunker password", &["snapshots", "--json"]);
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 2);
    restic(&repo, PASSWORD, &["check", "--read-data"]);
    let out = restic(&repo, PASSWORD, &["dump", &sid.to_hex(), "/data/text.txt"]);
    assert_eq!(out.stdout, text);
    let target = tmp.0.join("restore");
    restic(
        &repo,
        PASSWORD,
        &[
            "restore",
            &sid.to_hex(),
            "--target",
            target.to_str().unwrap(),
        ],
    );
    let restored = fs::read(
        target
            .join("data")
            .join(std::ffi::OsStr::from_bytes(b"random \xff.bin")),
    )
    .unwrap();
    assert_eq!(restored, content_data);
    let link_target = fs::read_link(target.join("data").join("link")).unwrap();
    // restic >= 0.16 restores the raw bytes from `linktarget_raw`; older
    // versions only know the lossy `linktarget`.
    let got = link_target.as_os_str().as_bytes();
    assert!(
        got == b"random \xff.bin" || got == "random \u{fffd}.bin".as_bytes(),
        "{got:?}"
    );
    // restic's own view of our tree is the same JSON we wrote.
    let out = restic(&repo, PASSWORD, &["cat", "blob", &inner_id.to_hex()]);
    assert_eq!(out.stdout, inner_bytes);
    // and restic's JSON of our snapshot carries what we wrote
    let out = restic(&repo, PASSWORD, &["cat", "snapshot", &sid.to_hex()]);
    let theirs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ours: serde_json::Value = serde_json::from_slice(&gojson::to_vec(&snap).unwrap()).unwrap();
    assert_eq!(theirs["tree"], ours["tree"]);
    assert_eq!(theirs["tags"], ours["tags"]);
}
