//! `check` against a real local repository with hand-built snapshots, and
//! damage applied to its files.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bunker_format::keyfile::KdfParams;
use bunker_format::node::{go_mode_from_unix, Node, NodeType, Tree};
use bunker_format::snapshot::Snapshot;
use bunker_format::{gotime, BlobId, BlobType, PackId, SnapshotId, TreeId};
use bunker_repo::cat::cat;
use bunker_repo::check::{check, check_unlocked, CheckOptions, CheckReport, ReadData};
use bunker_repo::packer::BlobSaver;
use bunker_repo::progress::NoProgress;
use bunker_repo::{snapshots, RepoOptions, Repository};
use bunker_storage::{FileType, LocalStorage};
use rand::{RngCore, SeedableRng};

const PASSWORD: &str = "check-test-password";
const SNAPSHOTS: usize = 3;

fn options() -> RepoOptions {
    RepoOptions {
        pack_size: 48 * 1024,
        connections: 2,
        ..RepoOptions::default()
    }
}

fn storage(dir: &Path) -> bunker_storage::DynStorage {
    bunker_storage::into_dyn(LocalStorage::new(dir))
}

fn open(dir: &Path) -> Arc<Repository> {
    Repository::open(storage(dir), PASSWORD.as_bytes(), options()).expect("open repository")
}

fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut v);
    v
}

/// What the fixture stored for one snapshot.
struct Snap {
    id: SnapshotId,
    /// Data blobs first stored by this snapshot.
    own_data: Vec<BlobId>,
    /// Trees of this snapshot (all unique to it).
    trees: Vec<TreeId>,
}

fn file_node(saver: &BlobSaver, name: &str, content: &[u8], own: &mut Vec<BlobId>) -> Node {
    let mut node = Node::new(name, NodeType::File);
    node.mode = go_mode_from_unix(0o100644);
    node.size = content.len() as u64;
    let mut blobs = Vec::new();
    for chunk in content.chunks(16 * 1024) {
        let saved = saver.save(BlobType::Data, chunk).expect("save data blob");
        if saved.added {
            own.push(saved.id);
        }
        blobs.push(saved.id);
    }
    node.content = Some(blobs);
    node
}

fn save_tree(saver: &BlobSaver, nodes: Vec<Node>, trees: &mut Vec<TreeId>) -> TreeId {
    let mut tree = Tree::new();
    for n in nodes {
        tree.push(n);
    }
    tree.sort();
    let (id, bytes) = tree.encode().expect("encode tree");
    saver
        .save_with_id(BlobType::Tree, id, &bytes)
        .expect("save tree");
    trees.push(id);
    id
}

/// A repository with [`SNAPSHOTS`] snapshots; each has its own data and trees
/// (in packs of their own) plus one file shared by all.
fn build(dir: &Path) -> Vec<Snap> {
    let repo = Repository::init(
        storage(dir),
        PASSWORD.as_bytes(),
        options(),
        KdfParams {
            n: 1024,
            r: 8,
            p: 1,
        },
    )
    .expect("init repository");
    let common = b"the same text in every snapshot\n".repeat(300);
    let mut out = Vec::new();
    for i in 0..SNAPSHOTS {
        let saver = BlobSaver::new(repo.clone());
        let (mut own, mut trees) = (Vec::new(), Vec::new());
        let big = file_node(
            &saver,
            "big.bin",
            &random_bytes(i as u64, 120_000 + i * 777),
            &mut own,
        );
        let text = format!("snapshot {i} says hello\n").repeat(2000);
        let txt = file_node(&saver, "notes.txt", text.as_bytes(), &mut own);
        let mut link = Node::new("link", NodeType::Symlink);
        link.link_target = b"notes.txt".to_vec();
        let sub = save_tree(&saver, vec![big, txt, link], &mut trees);
        let mut dir_node = Node::new("sub", NodeType::Dir);
        dir_node.mode = go_mode_from_unix(0o040755);
        dir_node.subtree = Some(sub);
        let shared = file_node(&saver, "common.txt", &common, &mut own);
        let small = file_node(&saver, "small", format!("small {i}").as_bytes(), &mut own);
        let root = save_tree(&saver, vec![dir_node, shared, small], &mut trees);
        saver.finish().expect("finish saver");
        let mut snap = Snapshot::new(gotime::now_local(), root, vec!["/data".into()]);
        snap.hostname = "check-test".into();
        snap.username = "tester".into();
        let id = snapshots::save(&repo, &snap).expect("save snapshot");
        out.push(Snap {
            id,
            own_data: own,
            trees,
        });
    }
    out
}

fn run(dir: &Path, read_data: ReadData) -> CheckReport {
    let repo = open(dir);
    let opts = CheckOptions {
        read_data,
        check_unused: false,
    };
    check(&repo, &opts, &NoProgress).expect("check runs")
}

fn pack_of(dir: &Path, blob: &BlobId) -> PackId {
    let repo = open(dir);
    repo.load_index().expect("load index");
    let entry = repo.lookup(blob).expect("blob is indexed");
    let id = repo.index().read().pack_id(entry.pack);
    id
}

fn pack_path(dir: &Path, pack: &PackId) -> PathBuf {
    let hex = pack.to_hex();
    dir.join("data").join(&hex[..2]).join(hex)
}

fn all_packs(dir: &Path) -> BTreeSet<String> {
    storage(dir)
        .list(FileType::Pack)
        .expect("list packs")
        .into_iter()
        .map(|f| f.name)
        .collect()
}

fn mentions(list: &[String], needle: &str) -> bool {
    list.iter().any(|m| m.contains(needle))
}

fn flip_bit(path: &Path, offset: usize) {
    let mut bytes = std::fs::read(path).expect("read file");
    bytes[offset] ^= 0x10;
    std::fs::write(path, bytes).expect("write file");
}

#[test]
fn clean_repository_checks_clean() {
    let tmp = tempfile::tempdir().unwrap();
    let snaps = build(tmp.path());
    let quick = run(tmp.path(), ReadData::No);
    assert!(quick.ok(), "{quick:#?}");
    assert!(quick.warnings.is_empty(), "{:?}", quick.warnings);
    assert_eq!(quick.snapshots, SNAPSHOTS as u64);
    assert_eq!(quick.trees, (SNAPSHOTS * 2) as u64);
    assert_eq!(quick.packs, all_packs(tmp.path()).len() as u64);
    assert!(quick.packs >= (SNAPSHOTS * 2) as u64, "{quick:?}");
    assert_eq!(quick.packs_read, 0);
    let own: usize = snaps.iter().map(|s| s.own_data.len() + s.trees.len()).sum();
    assert_eq!(quick.blobs, own as u64);

    let full = run(tmp.path(), ReadData::All);
    assert!(full.ok(), "{full:#?}");
    assert_eq!(full.packs_read, full.packs);
    let on_disk: u64 = storage(tmp.path())
        .list(FileType::Pack)
        .unwrap()
        .iter()
        .map(|f| f.size)
        .sum();
    assert_eq!(full.bytes_read, on_disk);
    assert!(full.affected_snapshots.is_empty());

    // check_unused: everything is referenced.
    let repo = open(tmp.path());
    let opts = CheckOptions {
        read_data: ReadData::No,
        check_unused: true,
    };
    let r = check(&repo, &opts, &NoProgress).unwrap();
    assert!(r.ok(), "{r:#?}");
    // check left no lock behind and wrote nothing else.
    assert!(storage(tmp.path()).list(FileType::Lock).unwrap().is_empty());
}

#[test]
fn truncated_pack_is_damaged_and_names_its_snapshot() {
    let tmp = tempfile::tempdir().unwrap();
    let snaps = build(tmp.path());
    let victim = pack_of(tmp.path(), &snaps[1].own_data[0]);
    let path = pack_path(tmp.path(), &victim);
    let len = std::fs::metadata(&path).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len / 2)
        .unwrap();

    let r = run(tmp.path(), ReadData::No);
    assert!(!r.ok());
    assert_eq!(r.damaged_packs, vec![victim]);
    assert!(r.missing_packs.is_empty());
    assert!(mentions(&r.errors, &victim.to_hex()), "{:?}", r.errors);
    assert_eq!(r.affected_snapshots, vec![snaps[1].id]);

    let full = run(tmp.path(), ReadData::All);
    assert_eq!(full.damaged_packs, vec![victim]);
    assert_eq!(full.affected_snapshots, vec![snaps[1].id]);
}

#[test]
fn flipped_bit_in_blob_data_needs_read_data() {
    let tmp = tempfile::tempdir().unwrap();
    let snaps = build(tmp.path());
    let victim = pack_of(tmp.path(), &snaps[2].own_data[0]);
    flip_bit(&pack_path(tmp.path(), &victim), 40);

    let quick = run(tmp.path(), ReadData::No);
    assert!(
        quick.ok(),
        "a flip inside a blob is invisible without reading data: {quick:#?}"
    );

    let full = run(tmp.path(), ReadData::All);
    assert!(!full.ok());
    assert_eq!(full.damaged_packs, vec![victim]);
    assert!(
        mentions(&full.errors, &victim.to_hex()),
        "{:?}",
        full.errors
    );
    assert!(
        mentions(&full.errors, "not to its name"),
        "{:?}",
        full.errors
    );
    assert_eq!(full.affected_snapshots, vec![snaps[2].id]);
}

#[test]
fn flipped_bit_in_pack_header_is_detected() {
    let tmp = tempfile::tempdir().unwrap();
    let snaps = build(tmp.path());
    let victim = pack_of(tmp.path(), &snaps[0].trees[0]);
    let path = pack_path(tmp.path(), &victim);
    let len = std::fs::metadata(&path).unwrap().len() as usize;
    // Inside the encrypted header (before the 4-byte length, after its IV).
    flip_bit(&path, len - 4 - 20);

    let full = run(tmp.path(), ReadData::All);
    assert_eq!(full.damaged_packs, vec![victim]);
    assert!(mentions(&full.errors, "header"), "{:?}", full.errors);
    // The tree pack of snapshot 0 holds only its trees; the shared file's data lives elsewhere.
    assert_eq!(full.affected_snapshots, vec![snaps[0].id]);
}

#[test]
fn deleted_pack_is_missing() {
    let tmp = tempfile::tempdir().unwrap();
    let snaps = build(tmp.path());
    // big.bin is saved first, so this pack holds only data of snapshot 0.
    let victim = pack_of(tmp.path(), &snaps[0].own_data[0]);
    std::fs::remove_file(pack_path(tmp.path(), &victim)).unwrap();

    for rd in [ReadData::No, ReadData::All] {
        let r = run(tmp.path(), rd);
        assert_eq!(r.missing_packs, vec![victim], "{rd:?}");
        assert!(r.damaged_packs.is_empty(), "{rd:?}: {:?}", r.damaged_packs);
        assert!(
            mentions(&r.errors, &format!("pack {victim} does not exist")),
            "{:?}",
            r.errors
        );
        assert_eq!(r.affected_snapshots, vec![snaps[0].id]);
    }
}

#[test]
fn deleted_index_file_leaves_unindexed_packs_and_missing_blobs() {
    let tmp = tempfile::tempdir().unwrap();
    let snaps = build(tmp.path());
    let victim_pack = pack_of(tmp.path(), &snaps[1].own_data[0]);
    let repo = open(tmp.path());
    repo.load_index().unwrap();
    let index_file = {
        let idx = repo.index().read();
        idx.index_files()
            .iter()
            .find(|(_, packs)| packs.contains(&victim_pack))
            .map(|(id, _)| *id)
            .expect("an index file lists the pack")
    };
    storage(tmp.path())
        .remove(FileType::Index, &index_file.to_hex())
        .unwrap();

    let r = run(tmp.path(), ReadData::No);
    assert!(!r.ok());
    // Snapshots need data no index has: the unindexed packs are not
    // "unused", and the remedy is `repair index`, never prune.
    let about_victim = format!("pack {victim_pack} is not referenced by any index");
    assert!(
        mentions(&r.errors, &about_victim) || mentions(&r.warnings, &about_victim),
        "{r:?}"
    );
    assert!(
        mentions(&r.errors, "run `bunker repair index` to index it"),
        "{:?}",
        r.errors
    );
    assert!(!mentions(&r.warnings, "`bunker prune` removes it"), "{r:?}");
    assert!(mentions(&r.errors, "not found in index"), "{:?}", r.errors);
    assert!(r.missing_packs.is_empty() && r.damaged_packs.is_empty());
    assert_eq!(r.affected_snapshots, vec![snaps[1].id]);
}

#[test]
fn corrupt_snapshot_file_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let snaps = build(tmp.path());
    let name = snaps[1].id.to_hex();
    flip_bit(&tmp.path().join("snapshots").join(&name), 30);
    let r = run(tmp.path(), ReadData::No);
    assert!(!r.ok());
    assert!(
        mentions(&r.errors, &format!("snapshot {name}")),
        "{:?}",
        r.errors
    );
    assert_eq!(r.snapshots, (SNAPSHOTS - 1) as u64);
    // The other snapshots were still walked.
    assert_eq!(r.trees, ((SNAPSHOTS - 1) * 2) as u64);
}

#[test]
fn corrupt_index_file_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    build(tmp.path());
    let first = storage(tmp.path()).list(FileType::Index).unwrap()[0]
        .name
        .clone();
    flip_bit(&tmp.path().join("index").join(&first), 50);
    let r = run(tmp.path(), ReadData::No);
    assert!(!r.ok());
    assert!(
        mentions(&r.errors, &format!("index file {first}")),
        "{:?}",
        r.errors
    );
}

#[test]
fn two_halves_read_every_pack() {
    let tmp = tempfile::tempdir().unwrap();
    let snaps = build(tmp.path());
    let victim = pack_of(tmp.path(), &snaps[2].own_data[1]);
    flip_bit(&pack_path(tmp.path(), &victim), 100);

    let a = run(tmp.path(), ReadData::Subset { n: 1, m: 2 });
    let b = run(tmp.path(), ReadData::Subset { n: 2, m: 2 });
    assert_eq!(a.packs_read + b.packs_read, a.packs);
    let first_byte_odd = victim.id().0[0] % 2 == 1;
    let (hit, miss) = if first_byte_odd { (&b, &a) } else { (&a, &b) };
    assert_eq!(hit.damaged_packs, vec![victim]);
    assert!(miss.damaged_packs.is_empty() && miss.ok(), "{miss:#?}");

    let sample = run(tmp.path(), ReadData::Percent(1.0));
    assert_eq!(sample.packs_read, 1);
}

#[test]
fn cat_shows_repository_objects() {
    let tmp = tempfile::tempdir().unwrap();
    let snaps = build(tmp.path());
    let repo = open(tmp.path());

    let config: serde_json::Value =
        serde_json::from_slice(&cat(&repo, "config", None).unwrap()).unwrap();
    assert_eq!(config["version"], 2);
    let mk: serde_json::Value =
        serde_json::from_slice(&cat(&repo, "masterkey", None).unwrap()).unwrap();
    assert!(mk["encrypt"].is_string());

    let sid = snaps[0].id.to_hex();
    let snap: serde_json::Value =
        serde_json::from_slice(&cat(&repo, "snapshot", Some(&sid[..10])).unwrap()).unwrap();
    assert_eq!(snap["tree"], snaps[0].trees.last().unwrap().to_hex());
    let latest: serde_json::Value =
        serde_json::from_slice(&cat(&repo, "snapshot", Some("latest")).unwrap()).unwrap();
    assert_eq!(latest["hostname"], "check-test");

    let tree_id = snaps[0].trees[0].to_hex();
    let tree = Tree::from_bytes(&cat(&repo, "tree", Some(&tree_id)).unwrap()).unwrap();
    assert!(tree.find(b"big.bin").is_some());
    let blob = cat(&repo, "blob", Some(&snaps[0].own_data[0].to_hex()[..12])).unwrap();
    assert_eq!(blob, random_bytes(0, 120_000)[..16 * 1024]);

    let pack = pack_of(tmp.path(), &snaps[0].own_data[0]);
    let header: serde_json::Value =
        serde_json::from_slice(&cat(&repo, "pack", Some(&pack.to_hex())).unwrap()).unwrap();
    assert!(header
        .as_array()
        .unwrap()
        .iter()
        .any(|b| b["id"] == snaps[0].own_data[0].to_hex() && b["type"] == "data"));

    let index_name = storage(tmp.path()).list(FileType::Index).unwrap()[0]
        .name
        .clone();
    let index: serde_json::Value =
        serde_json::from_slice(&cat(&repo, "index", Some(&index_name)).unwrap()).unwrap();
    assert!(index["packs"].is_array());
    let key_name = repo.key_id().to_hex();
    let key: serde_json::Value =
        serde_json::from_slice(&cat(&repo, "key", Some(&key_name[..8])).unwrap()).unwrap();
    assert_eq!(key["kdf"], "scrypt");

    assert!(cat(&repo, "snapshot", None).is_err());
    assert!(cat(&repo, "nonsense", None).is_err());
    assert!(cat(&repo, "snapshot", Some("zz")).is_err());
    assert!(cat(&repo, "tree", Some(&snaps[0].own_data[0].to_hex())).is_err());
}

#[test]
fn repository_written_by_restic_checks_clean() {
    // Read-only: the unlocked variant writes nothing into the fixture.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/restic-golden");
    let repo = Repository::open(storage(&dir), b"golden", RepoOptions::default())
        .expect("open golden repository");
    let opts = CheckOptions {
        read_data: ReadData::All,
        check_unused: true,
    };
    let r = check_unlocked(&repo, &opts, &NoProgress).expect("check runs");
    assert!(r.ok(), "{r:#?}");
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    assert_eq!(r.snapshots, 2);
    assert_eq!(r.packs_read, r.packs);
    assert!(r.trees > 0 && r.blobs > 0);
}

/// Where the restic binary is, if it is installed.
fn restic() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("restic"))
        .find(|p| p.is_file())
}

#[test]
fn restic_check_read_data_accepts_our_repository() {
    let Some(restic) = restic() else {
        eprintln!("restic is not installed; skipping the restic oracle test");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    build(tmp.path());
    let out = std::process::Command::new(restic)
        .arg("-r")
        .arg(tmp.path())
        .args(["--no-cache", "check", "--read-data"])
        .env("RESTIC_PASSWORD", PASSWORD)
        .output()
        .expect("run restic");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "restic check failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("no errors were found"),
        "{stdout}\n{stderr}"
    );
}

/// A pack listed by two index files is one warning per pack (however many
/// packs), pointing at a command that exists.
#[test]
fn pack_in_two_index_files_is_one_warning_per_pack() {
    let tmp = tempfile::tempdir().unwrap();
    build(tmp.path());
    let repo = open(tmp.path());
    let name = storage(tmp.path()).list(FileType::Index).unwrap()[0]
        .name
        .clone();
    let mut copy: bunker_format::index::IndexFile =
        repo.load_json(FileType::Index, &name, "index").unwrap();
    let packs = copy.packs.len();
    assert!(packs >= 2, "the fixture has several packs per index file");
    copy.supersedes = vec![bunker_format::IndexId::from(bunker_format::Id::random())];
    repo.save_json(FileType::Index, &copy).unwrap();

    let r = run(tmp.path(), ReadData::No);
    assert!(r.ok(), "{r:?}");
    let dup: Vec<&String> = r
        .warnings
        .iter()
        .filter(|w| w.contains("index files"))
        .collect();
    assert_eq!(dup.len(), packs, "{dup:#?}");
    assert!(
        dup.iter().all(|w| w.contains("`bunker repair index`")),
        "{dup:#?}"
    );
    for p in &copy.packs {
        assert_eq!(dup.iter().filter(|w| w.contains(&p.id.to_hex())).count(), 1);
    }
}
