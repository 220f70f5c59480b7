//! Prune at library level: what it keeps still reads back identically, the
//! repository checks clean, unused data is gone, and it refuses to act on a
//! partial view.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use bunker_format::keyfile::KdfParams;
use bunker_format::{BlobType, TreeId};
use bunker_policy::retention::KeepPolicy;
use bunker_repo::backup::{backup, BackupOptions};
use bunker_repo::check::{check, CheckOptions, ReadData};
use bunker_repo::forget::{forget, ForgetOptions};
use bunker_repo::progress::NoProgress;
use bunker_repo::prune::{prune, MaxUnused, PruneOptions};
use bunker_repo::{snapshots, RepoOptions, Repository};
use bunker_storage::FileType;
use rand::{RngCore, SeedableRng};

fn options() -> RepoOptions {
    RepoOptions {
        pack_size: 64 * 1024,
        ..RepoOptions::default()
    }
}

fn new_repo(dir: &Path) -> Arc<Repository> {
    let storage = bunker_storage::open(&dir.to_string_lossy(), &[]).expect("open storage");
    Repository::init(
        storage,
        b"secret",
        options(),
        KdfParams {
            n: 1024,
            r: 8,
            p: 1,
        },
    )
    .expect("init repo")
}

fn reopen(dir: &Path) -> Arc<Repository> {
    let storage = bunker_storage::open(&dir.to_string_lossy(), &[]).expect("open storage");
    let r = Repository::open(storage, b"secret", options()).expect("open repo");
    r.load_index().expect("index");
    r
}

fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut v);
    v
}

/// Snapshot `round` of the source: a stable file, and files that change.
fn write_round(src: &Path, round: u64) {
    std::fs::create_dir_all(src.join("sub")).expect("mkdir");
    std::fs::write(src.join("stable.bin"), random_bytes(7, 150 * 1024)).expect("write");
    std::fs::write(
        src.join("changing.bin"),
        random_bytes(100 + round, 120 * 1024),
    )
    .expect("write");
    std::fs::write(
        src.join("sub/note.txt"),
        format!("round {round}\n").repeat(50),
    )
    .expect("write");
    if round % 2 == 0 {
        std::fs::write(
            src.join("sub/even.bin"),
            random_bytes(500 + round, 90 * 1024),
        )
        .expect("write");
    } else {
        let _ = std::fs::remove_file(src.join("sub/even.bin"));
    }
}

/// Every file of a snapshot with its content, read through the index.
fn contents(repo: &Repository, tree: &TreeId, prefix: &str, out: &mut BTreeMap<String, Vec<u8>>) {
    let t = repo.load_tree(tree).expect("tree loads");
    for n in t.nodes {
        let path = format!("{prefix}/{}", n.name_lossy());
        if let Some(sub) = n.subtree {
            contents(repo, &sub, &path, out);
        } else if let Some(blobs) = n.content {
            let mut data = Vec::new();
            for b in blobs {
                data.extend(repo.read_blob(BlobType::Data, &b).expect("blob reads"));
            }
            out.insert(path, data);
        }
    }
}

fn all_contents(repo: &Repository) -> BTreeMap<String, BTreeMap<String, Vec<u8>>> {
    snapshots::list(repo)
        .expect("list")
        .into_iter()
        .map(|e| {
            let mut m = BTreeMap::new();
            contents(repo, &e.snapshot.tree, "", &mut m);
            (e.id.to_hex(), m)
        })
        .collect()
}

fn check_clean(repo: &Arc<Repository>) {
    let report = check(
        repo,
        &CheckOptions {
            read_data: ReadData::All,
            check_unused: false,
        },
        &NoProgress,
    )
    .expect("check runs");
    assert!(report.ok(), "check found errors: {:?}", report.errors);
}

fn build(dir: &Path, src: &Path, rounds: u64) -> Arc<Repository> {
    let repo = new_repo(dir);
    for round in 0..rounds {
        write_round(src, round);
        backup(
            &repo,
            BackupOptions {
                paths: vec![src.to_path_buf()],
                ..Default::default()
            },
            &NoProgress,
        )
        .expect("backup");
    }
    repo
}

fn stored_bytes(repo: &Repository) -> u64 {
    repo.storage()
        .list(FileType::Pack)
        .expect("list packs")
        .iter()
        .map(|f| f.size)
        .sum()
}

#[test]
fn forget_then_prune_keeps_what_snapshots_need() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    let dir = tmp.path().join("repo");
    let repo = build(&dir, &src, 6);

    let report = forget(
        &repo,
        &ForgetOptions {
            policy: KeepPolicy {
                last: 2,
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .expect("forget");
    assert_eq!(report.removed.len(), 4);
    assert_eq!(report.kept.len(), 2);

    let repo = reopen(&dir);
    let before = all_contents(&repo);
    let size_before = stored_bytes(&repo);

    // A dry run changes nothing.
    let listing = |r: &Repository| {
        let mut v: Vec<String> = [FileType::Pack, FileType::Index]
            .iter()
            .flat_map(|t| r.storage().list(*t).expect("list"))
            .map(|f| f.name)
            .collect();
        v.sort();
        v
    };
    let files_before = listing(&repo);
    let dry = prune(
        &repo,
        &PruneOptions {
            max_unused: MaxUnused::Percent(0.0),
            dry_run: true,
            ..Default::default()
        },
        &NoProgress,
    )
    .expect("dry run");
    assert!(dry.dry_run && dry.bytes_removed > 0);
    assert_eq!(listing(&repo), files_before);

    let done = prune(
        &repo,
        &PruneOptions {
            max_unused: MaxUnused::Percent(0.0),
            ..Default::default()
        },
        &NoProgress,
    )
    .expect("prune");
    assert!(done.packs_removed + done.packs_repacked > 0, "{done:?}");
    assert_eq!(done.unused_bytes_after, 0);

    let repo = reopen(&dir);
    assert!(stored_bytes(&repo) < size_before);
    assert_eq!(
        all_contents(&repo),
        before,
        "kept snapshots read back identically"
    );
    check_clean(&repo);

    // Nothing left to do.
    let again = prune(
        &repo,
        &PruneOptions {
            max_unused: MaxUnused::Percent(0.0),
            ..Default::default()
        },
        &NoProgress,
    )
    .expect("second prune");
    assert_eq!(
        (
            again.packs_removed,
            again.packs_repacked,
            again.packs_unreferenced
        ),
        (0, 0, 0)
    );
}

#[test]
fn leftover_packs_are_removed_and_unreadable_index_refuses() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    let dir = tmp.path().join("repo");
    let repo = build(&dir, &src, 2);
    let before = all_contents(&repo);

    // An unindexed pack, as an interrupted backup leaves behind.
    let stray = {
        let mut b = bunker_format::pack::PackBuilder::new(BlobType::Data);
        let plain = random_bytes(99, 1000);
        let enc = bunker_format::pack::encode_blob(repo.key(), &plain, None).expect("encode");
        b.add(
            bunker_format::BlobId::from(bunker_format::Id::hash(&plain)),
            &enc,
        )
        .expect("add");
        let (id, bytes, _) = b.finish(repo.key());
        repo.storage()
            .write(FileType::Pack, &id.to_hex(), bytes.into())
            .expect("write stray");
        id
    };
    let r = prune(&repo, &PruneOptions::default(), &NoProgress).expect("prune");
    assert_eq!(r.packs_unreferenced, 1);
    assert_eq!(
        repo.storage()
            .stat(FileType::Pack, &stray.to_hex())
            .expect("stat"),
        None
    );
    let repo = reopen(&dir);
    assert_eq!(all_contents(&repo), before);
    check_clean(&repo);

    // A damaged index file: prune must refuse and delete nothing.
    let idx = repo.storage().list(FileType::Index).expect("list");
    let first = &idx[0].name;
    repo.storage()
        .write(FileType::Index, first, b"garbage".to_vec().into())
        .expect("corrupt index");
    let packs_before = repo.storage().list(FileType::Pack).expect("list").len();
    assert!(prune(&repo, &PruneOptions::default(), &NoProgress).is_err());
    assert_eq!(
        repo.storage().list(FileType::Pack).expect("list").len(),
        packs_before
    );
}

#[test]
fn missing_tree_refuses_to_prune() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    let dir = tmp.path().join("repo");
    let repo = build(&dir, &src, 1);
    // Remove the pack holding the root tree: its blobs are still indexed but unreadable.
    let snap = snapshots::list(&repo).expect("list").remove(0);
    let entry = repo.lookup(&snap.snapshot.tree).expect("indexed");
    let pack = repo.index().read().pack_id(entry.pack);
    repo.storage()
        .remove(FileType::Pack, &pack.to_hex())
        .expect("remove pack");
    let n_before = repo.storage().list(FileType::Pack).expect("list").len();
    let err = prune(&repo, &PruneOptions::default(), &NoProgress).expect_err("must refuse");
    assert!(err.to_string().contains("refusing"), "{err}");
    assert_eq!(
        repo.storage().list(FileType::Pack).expect("list").len(),
        n_before
    );
}
