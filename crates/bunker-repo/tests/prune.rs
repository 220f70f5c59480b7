//! Prune at library level: what it keeps still reads back identically, the
//! repository checks clean, unused data is gone, it refuses to act on a
//! partial view, `max_repack_size` bounds one run's repacking and
//! `repack_small` merges small packs.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;

use bunker_format::keyfile::KdfParams;
use bunker_format::{BlobType, PackId, TreeId};
use bunker_repo::backup::{backup, BackupOptions};
use bunker_repo::check::{check, CheckOptions, ReadData};
use bunker_repo::forget::{forget, ForgetOptions};
use bunker_repo::progress::NoProgress;
use bunker_repo::prune::{prune, tiny_pack_limit, MaxUnused, PruneOptions, MIN_SMALL_PACKS};
use bunker_repo::retention::KeepPolicy;
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

fn pack_sizes(repo: &Repository) -> HashMap<PackId, u64> {
    repo.storage()
        .list(FileType::Pack)
        .expect("list packs")
        .into_iter()
        .map(|f| {
            let id = bunker_format::Id::from_hex(&f.name).expect("pack name");
            (PackId::from(id), f.size)
        })
        .collect()
}

fn backup_once(repo: &Arc<Repository>, src: &Path) {
    backup(
        repo,
        BackupOptions {
            paths: vec![src.to_path_buf()],
            ..Default::default()
        },
        &NoProgress,
    )
    .expect("backup");
}

#[test]
fn max_repack_size_stops_after_the_budget_and_a_rerun_finishes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    let dir = tmp.path().join("repo");
    let repo = new_repo(&dir);
    // 24 files of 16 KiB (one blob each, 4 to a 64 KiB pack): the even ones
    // never change, the odd ones change every round. Once only the newest
    // snapshot is kept, the first round's packs are partly used.
    std::fs::create_dir_all(&src).expect("mkdir");
    for round in 0..3u64 {
        for i in 0..24u64 {
            let seed = if i % 2 == 0 {
                i
            } else {
                1000 * (round + 1) + i
            };
            std::fs::write(src.join(format!("f{i:02}")), random_bytes(seed, 16 * 1024))
                .expect("write");
        }
        backup_once(&repo, &src);
    }
    forget(
        &repo,
        &ForgetOptions {
            policy: KeepPolicy {
                last: 1,
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .expect("forget");
    let repo = reopen(&dir);
    let before = all_contents(&repo);
    let sizes = pack_sizes(&repo);
    let all = PruneOptions {
        max_unused: MaxUnused::Percent(0.0),
        ..Default::default()
    };

    // Without a budget every partly used pack would be repacked, in this order.
    let unlimited = prune(
        &repo,
        &PruneOptions {
            dry_run: true,
            ..all.clone()
        },
        &NoProgress,
    )
    .expect("dry run");
    let order = unlimited.repacked.clone();
    assert!(!unlimited.repack_limited);
    assert!(order.len() >= 3, "too few partly used packs: {unlimited:?}");
    assert!(unlimited.packs_removed > 0, "{unlimited:?}");

    // A budget of exactly the first two packs repacks exactly those two.
    let budget = sizes[&order[0]] + sizes[&order[1]];
    let limited = prune(
        &repo,
        &PruneOptions {
            max_repack_size: Some(budget),
            ..all.clone()
        },
        &NoProgress,
    )
    .expect("limited prune");
    assert_eq!(limited.repacked, order[..2].to_vec(), "{limited:?}");
    assert_eq!(limited.packs_repacked, 2);
    assert!(limited.repack_limited);
    assert!(limited.unused_bytes_after > 0);
    // Wholly unused packs are deleted regardless of the budget.
    assert_eq!(limited.packs_removed, unlimited.packs_removed);
    let after = pack_sizes(&repo);
    for id in &order[..2] {
        assert!(
            !after.contains_key(id),
            "repacked pack {id} is still stored"
        );
    }
    for id in &order[2..] {
        assert_eq!(
            after.get(id),
            sizes.get(id),
            "pack {id} beyond the budget was touched"
        );
    }

    let repo = reopen(&dir);
    assert_eq!(all_contents(&repo), before, "limited prune kept every file");
    check_clean(&repo);

    // The next run, without a limit, repacks the rest.
    let rest = prune(&repo, &all, &NoProgress).expect("second prune");
    let mut expected = order[2..].to_vec();
    expected.sort();
    let mut got = rest.repacked.clone();
    got.sort();
    assert_eq!(got, expected, "{rest:?}");
    assert!(!rest.repack_limited);
    assert_eq!((rest.packs_removed, rest.unused_bytes_after), (0, 0));
    let repo = reopen(&dir);
    assert_eq!(all_contents(&repo), before);
    check_clean(&repo);

    // A zero budget deletes nothing it would have to repack.
    let zero = prune(
        &repo,
        &PruneOptions {
            max_repack_size: Some(0),
            ..all
        },
        &NoProgress,
    )
    .expect("third prune");
    assert_eq!((zero.packs_repacked, zero.repack_limited), (0, false));
}

#[test]
fn repack_small_merges_small_packs_into_full_ones() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    let dir = tmp.path().join("repo");
    let repo = new_repo(&dir);
    // Many small backups: each adds one 3 KiB file, so each writes one small
    // data pack and one small tree pack, all of them wholly used.
    std::fs::create_dir_all(&src).expect("mkdir");
    for round in 0..24u64 {
        std::fs::write(
            src.join(format!("f{round:02}")),
            random_bytes(round, 3 * 1024),
        )
        .expect("write");
        backup_once(&repo, &src);
    }
    let repo = reopen(&dir);
    let before = all_contents(&repo);
    let packs_before = pack_sizes(&repo);
    assert!(
        packs_before.len() >= 2 * MIN_SMALL_PACKS,
        "{packs_before:?}"
    );

    // Without --repack-small only the tiny packs (below 4% of the target
    // size: the tree packs) merge, as restic's default; the others stay.
    let tiny = tiny_pack_limit(options().pack_size);
    let tiny_before: BTreeSet<PackId> = packs_before
        .iter()
        .filter(|(_, &size)| size < tiny)
        .map(|(id, _)| *id)
        .collect();
    assert!(tiny_before.len() >= MIN_SMALL_PACKS, "{packs_before:?}");
    assert!(tiny_before.len() < packs_before.len(), "{packs_before:?}");
    let plain = prune(&repo, &PruneOptions::default(), &NoProgress).expect("prune");
    assert_eq!(
        plain.repacked.iter().copied().collect::<BTreeSet<_>>(),
        tiny_before,
        "{plain:?}"
    );
    let packs_before = pack_sizes(&repo);
    assert_eq!(
        packs_before.len() as u64,
        plain.packs_total - plain.packs_repacked + plain.new_packs
    );
    let repo = reopen(&dir);
    assert_eq!(all_contents(&repo), before);

    // A budget of a quarter of the bytes merges only some of them.
    let total: u64 = packs_before.values().sum();
    let half = prune(
        &repo,
        &PruneOptions {
            repack_small: true,
            max_repack_size: Some(total / 4),
            ..Default::default()
        },
        &NoProgress,
    )
    .expect("limited prune");
    assert!(half.repack_limited, "{half:?}");
    assert!(half.packs_repacked > 1 && half.packs_repacked < packs_before.len() as u64);
    assert_eq!(half.packs_repacked_small, half.packs_repacked);
    let spent: u64 = half.repacked.iter().map(|id| packs_before[id]).sum();
    assert!(spent <= total / 4, "{spent} > {}", total / 4);
    let repo = reopen(&dir);
    assert_eq!(all_contents(&repo), before);
    check_clean(&repo);

    // Without a budget, the rest: 72 KiB of data and its trees fit in 3
    // packs of the 64 KiB target.
    let merged = prune(
        &repo,
        &PruneOptions {
            repack_small: true,
            ..Default::default()
        },
        &NoProgress,
    )
    .expect("prune --repack-small");
    assert!(!merged.repack_limited);
    assert_eq!(merged.packs_repacked_small, merged.packs_repacked);
    assert!(merged.new_packs <= 3, "{merged:?}");
    let packs_after = pack_sizes(&repo);
    assert_eq!(packs_after.len() as u64, merged.new_packs);
    let repo = reopen(&dir);
    assert_eq!(
        all_contents(&repo),
        before,
        "merged packs read back identically"
    );
    check_clean(&repo);

    // A few small packs are too few to repack again: no endless repacking.
    let again = prune(
        &repo,
        &PruneOptions {
            repack_small: true,
            ..Default::default()
        },
        &NoProgress,
    )
    .expect("again");
    assert_eq!(again.packs_repacked, 0);
    assert_eq!(pack_sizes(&repo), packs_after);
}
