//! Tests of `copy`: two local repositories with different keys and chunker
//! polynomials, skipping, provenance, resuming after a failure, restic's check.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bunker_format::keyfile::KdfParams;
use bytes::Bytes;
use rand::{RngCore, SeedableRng};

use super::*;
use crate::backup::{backup, BackupOptions};
use crate::check::{check, CheckOptions, ReadData};
use crate::progress::NoProgress;
use crate::restore::{restore, RestoreOptions};
use crate::RepoOptions;
use bunker_storage::{DynStorage, ErrorKind, FileInfo, Storage, StorageError};

const KDF: KdfParams = KdfParams {
    n: 1024,
    r: 8,
    p: 1,
};

fn small_packs() -> RepoOptions {
    RepoOptions {
        pack_size: 256 * 1024,
        ..RepoOptions::default()
    }
}

fn init(dir: &Path, password: &[u8]) -> Arc<Repository> {
    let storage = bunker_storage::open(&dir.to_string_lossy(), &[]).expect("open storage");
    Repository::init(storage, password, small_packs(), KDF).expect("init")
}

fn reopen(dir: &Path, password: &[u8]) -> Arc<Repository> {
    let storage = bunker_storage::open(&dir.to_string_lossy(), &[]).expect("open storage");
    let repo = Repository::open(storage, password, small_packs()).expect("open");
    repo.load_index().expect("index");
    repo
}

fn random_file(path: &Path, seed: u64, len: usize) {
    let mut v = vec![0u8; len];
    rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut v);
    std::fs::write(path, v).expect("write source file");
}

fn snap(repo: &Arc<Repository>, path: &Path, tags: &[&str]) -> SnapshotId {
    let s = backup(
        repo,
        BackupOptions {
            paths: vec![path.to_path_buf()],
            tags: tags.iter().map(|t| t.to_string()).collect(),
            host: Some("source-host".into()),
            ..BackupOptions::default()
        },
        &NoProgress,
    )
    .expect("backup");
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    s.snapshot_id.expect("snapshot written")
}

/// Every regular file below `dir` with its content, by relative path.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).expect("prefix").display().to_string();
                out.push((rel, std::fs::read(&p).expect("read")));
            }
        }
    }
    out.sort();
    out
}

fn restored_files(
    repo: &Arc<Repository>,
    id: SnapshotId,
    source: &Path,
    target: &Path,
) -> Vec<(String, Vec<u8>)> {
    let entry = snapshots::find(repo, &id.to_hex(), &SnapshotFilter::default()).expect("find");
    let summary = restore(
        repo,
        &entry,
        &RestoreOptions {
            target: target.to_path_buf(),
            ..RestoreOptions::default()
        },
        &NoProgress,
    )
    .expect("restore");
    assert!(summary.errors.is_empty(), "{:?}", summary.errors);
    let nested = target.join(source.strip_prefix("/").expect("absolute source"));
    files(&nested)
}

fn assert_checks(repo: &Arc<Repository>) {
    let report = check(
        repo,
        &CheckOptions {
            read_data: ReadData::All,
            check_unused: false,
        },
        &NoProgress,
    )
    .expect("check runs");
    assert!(
        report.errors.is_empty(),
        "check errors: {:?}",
        report.errors
    );
}

fn restic_available() -> bool {
    Command::new("restic")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Two snapshots of a source with shared and distinct data.
struct Source {
    _dir: tempfile::TempDir,
    root: std::path::PathBuf,
    repo: Arc<Repository>,
    first: SnapshotId,
    second: SnapshotId,
}

fn source() -> Source {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("data");
    std::fs::create_dir_all(root.join("sub")).expect("mkdir");
    random_file(&root.join("big.bin"), 1, 3 * 1024 * 1024 + 17);
    random_file(&root.join("sub/small.bin"), 2, 40_000);
    std::fs::write(root.join("sub/hello.txt"), b"hello, copy\n").expect("write");
    let repo_dir = dir.path().join("src-repo");
    let repo = init(&repo_dir, b"source password");
    let first = snap(&repo, &root, &["daily", "db"]);
    random_file(&root.join("second.bin"), 3, 2 * 1024 * 1024);
    let second = snap(&repo, &root, &["daily"]);
    Source {
        _dir: dir,
        root,
        repo,
        first,
        second,
    }
}

#[test]
fn similar_snapshots_follow_restic() {
    let t = bunker_format::gotime::now_local();
    let tree = TreeId::from(bunker_format::Id::hash(b"tree"));
    let mut a = Snapshot::new(t, tree, vec!["/a".into(), "/b".into()]);
    a.hostname = "h".into();
    a.tags = vec!["x".into(), "y".into()];
    let mut b = a.clone();
    b.paths.reverse();
    b.tags.reverse();
    b.parent = Some(SnapshotId::from(bunker_format::Id::hash(b"p")));
    b.program_version = "other".into();
    assert!(similar(&a, &b));
    let mut c = a.clone();
    c.hostname = "other".into();
    assert!(!similar(&a, &c));
    let mut d = a.clone();
    d.tags.push("copied".into());
    assert!(!similar(&a, &d));
    let mut e = a.clone();
    e.excludes = vec!["*.o".into()];
    assert!(!similar(&a, &e));
}

#[test]
fn copy_between_repositories_with_different_keys_and_polynomials() {
    let src = source();
    let dst_dir = tempfile::tempdir().expect("tempdir");
    let dst = init(dst_dir.path(), b"destination password");
    assert_ne!(
        src.repo.config().chunker_polynomial,
        dst.config().chunker_polynomial
    );

    let summary = copy(&src.repo, &dst, &CopyOptions::default(), &NoProgress).expect("copy");
    assert_eq!(summary.copied.len(), 2);
    assert!(summary.skipped.is_empty());
    assert!(summary.data_blobs_copied > 0 && summary.trees_copied > 0);
    assert!(summary.packs > 0);
    let plain_total = 3 * 1024 * 1024 + 17 + 40_000 + 12 + 2 * 1024 * 1024;
    assert!(summary.bytes_copied >= plain_total, "{summary:?}");

    // Snapshot metadata is kept; provenance recorded; parent dropped.
    let dst = reopen(dst_dir.path(), b"destination password");
    let listed = snapshots::list(&dst).expect("list");
    assert_eq!(listed.len(), 2);
    let src_list = snapshots::list(&src.repo).expect("list");
    for (s, d) in src_list.iter().zip(&listed) {
        assert_eq!(d.snapshot.original, Some(s.id));
        assert_eq!(d.snapshot.time, s.snapshot.time);
        assert_eq!(d.snapshot.tree, s.snapshot.tree);
        assert_eq!(d.snapshot.hostname, "source-host");
        assert_eq!(d.snapshot.paths, s.snapshot.paths);
        assert_eq!(d.snapshot.tags, s.snapshot.tags);
        assert!(d.snapshot.parent.is_none());
        let short: String = src.repo.config().id.chars().take(8).collect();
        assert!(
            d.snapshot
                .program_version
                .contains(&format!("from repository {short}")),
            "{}",
            d.snapshot.program_version
        );
    }
    assert_checks(&dst);

    // The copy restores exactly what the source restores.
    let out = tempfile::tempdir().expect("tempdir");
    let from_src = restored_files(&src.repo, src.second, &src.root, &out.path().join("a"));
    let from_dst = restored_files(&dst, listed[1].id, &src.root, &out.path().join("b"));
    assert_eq!(from_src.len(), 4);
    assert_eq!(from_src, from_dst);
    assert_eq!(from_dst, files(&src.root));

    // Running it again copies nothing.
    let again = copy(&src.repo, &dst, &CopyOptions::default(), &NoProgress).expect("copy again");
    assert!(again.copied.is_empty());
    assert_eq!(again.skipped.len(), 2);
    assert_eq!(again.bytes_copied, 0);

    // A copy of the copy back into a third repository keeps the first original id.
    let third_dir = tempfile::tempdir().expect("tempdir");
    let third = init(third_dir.path(), b"third");
    let opts = CopyOptions {
        snapshots: vec![listed[0].id.to_hex()[..8].to_string()],
        ..CopyOptions::default()
    };
    let s = copy(&dst, &third, &opts, &NoProgress).expect("copy to third");
    assert_eq!(s.copied.len(), 1);
    let t = reopen(third_dir.path(), b"third");
    let tl = snapshots::list(&t).expect("list");
    assert_eq!(tl[0].snapshot.original, Some(src.first));
    // ... and copying the source's first snapshot into the third is a no-op.
    let s = copy(
        &src.repo,
        &t,
        &CopyOptions {
            snapshots: vec![src.first.to_hex()],
            ..CopyOptions::default()
        },
        &NoProgress,
    )
    .expect("copy src to third");
    assert!(s.copied.is_empty());
    assert_eq!(s.skipped.len(), 1);

    if restic_available() {
        let out = Command::new("restic")
            .args(["--no-cache", "-r"])
            .arg(dst_dir.path())
            .args(["check", "--read-data"])
            .env("RESTIC_PASSWORD", "destination password")
            .output()
            .expect("run restic");
        assert!(
            out.status.success(),
            "restic check failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    } else {
        eprintln!("note: restic not installed; skipping restic check of the copy");
    }
}

#[test]
fn filters_select_snapshots() {
    let src = source();
    let dst_dir = tempfile::tempdir().expect("tempdir");
    let dst = init(dst_dir.path(), b"d");
    let opts = CopyOptions {
        filter: SnapshotFilter {
            tags: SnapshotFilter::tag_groups(&["db".to_string()]),
            ..SnapshotFilter::default()
        },
        ..CopyOptions::default()
    };
    let s = copy(&src.repo, &dst, &opts, &NoProgress).expect("copy");
    assert_eq!(
        s.copied.iter().map(|c| c.source).collect::<Vec<_>>(),
        vec![src.first]
    );
    let opts = CopyOptions {
        snapshots: vec!["latest".into()],
        ..CopyOptions::default()
    };
    let s = copy(&src.repo, &dst, &opts, &NoProgress).expect("copy latest");
    assert_eq!(s.copied.len(), 1);
    assert_eq!(s.copied[0].source, src.second);
    // Only the second file's data was new.
    assert!(s.bytes_copied < 2 * 1024 * 1024 + 200_000, "{s:?}");
    let e = copy(
        &src.repo,
        &dst,
        &CopyOptions {
            snapshots: vec!["ffffffffff".into()],
            ..CopyOptions::default()
        },
        &NoProgress,
    )
    .expect_err("unknown snapshot");
    assert!(matches!(e, RepoError::SnapshotNotFound(_)), "{e}");
}

/// A storage whose pack writes fail (permanently) after a budget is spent.
#[derive(Debug)]
struct FailingPacks {
    inner: DynStorage,
    budget: AtomicU64,
}

impl FailingPacks {
    fn pack_write(&self) -> Result<(), StorageError> {
        let left = self.budget.load(Ordering::SeqCst);
        if left == 0 {
            return Err(StorageError::new(
                ErrorKind::Other,
                "failing",
                "data",
                "pack budget exhausted",
            ));
        }
        self.budget.store(left - 1, Ordering::SeqCst);
        Ok(())
    }
}

impl Storage for FailingPacks {
    fn location(&self) -> String {
        self.inner.location()
    }
    fn create(&self) -> Result<(), StorageError> {
        self.inner.create()
    }
    fn list(&self, t: FileType) -> Result<Vec<FileInfo>, StorageError> {
        self.inner.list(t)
    }
    fn read(&self, t: FileType, name: &str) -> Result<Bytes, StorageError> {
        self.inner.read(t, name)
    }
    fn read_range(&self, t: FileType, n: &str, o: u64, l: u64) -> Result<Bytes, StorageError> {
        self.inner.read_range(t, n, o, l)
    }
    fn write(&self, t: FileType, name: &str, data: Bytes) -> Result<(), StorageError> {
        if t == FileType::Pack {
            self.pack_write()?;
        }
        self.inner.write(t, name, data)
    }
    fn write_new(&self, t: FileType, name: &str, data: Bytes) -> Result<(), StorageError> {
        self.inner.write_new(t, name, data)
    }
    fn remove(&self, t: FileType, name: &str) -> Result<(), StorageError> {
        self.inner.remove(t, name)
    }
    fn stat(&self, t: FileType, name: &str) -> Result<Option<u64>, StorageError> {
        self.inner.stat(t, name)
    }
}

#[test]
fn interrupted_copy_resumes_without_copying_again() {
    let src = source();
    // A reference copy into a fresh repository: how much a full copy transfers.
    let full_dir = tempfile::tempdir().expect("tempdir");
    let full = init(full_dir.path(), b"f");
    let full_summary = copy(&src.repo, &full, &CopyOptions::default(), &NoProgress).expect("copy");

    let dst_dir = tempfile::tempdir().expect("tempdir");
    drop(init(dst_dir.path(), b"d"));
    let first_packs = {
        let probe_dir = tempfile::tempdir().expect("tempdir");
        let probe = init(probe_dir.path(), b"p");
        let one = CopyOptions {
            snapshots: vec![src.first.to_hex()],
            ..CopyOptions::default()
        };
        copy(&src.repo, &probe, &one, &NoProgress)
            .expect("probe")
            .packs
    };
    // Fail inside the second snapshot. Its new data (2 MiB of random bytes, which a
    // repository-specific chunker polynomial may cut into a single blob) plus its trees
    // take at least two packs, so one pack past the first snapshot always runs dry.
    let failing: DynStorage = Arc::new(FailingPacks {
        inner: bunker_storage::open(&dst_dir.path().to_string_lossy(), &[]).expect("open"),
        budget: AtomicU64::new(first_packs + 1),
    });
    let dst = Repository::open(failing, b"d", small_packs()).expect("open");
    let err = copy(&src.repo, &dst, &CopyOptions::default(), &NoProgress)
        .expect_err("copy must fail when packs cannot be written");
    assert!(err.to_string().contains("pack budget exhausted"), "{err}");
    drop(dst);

    let dst = reopen(dst_dir.path(), b"d");
    let partial = snapshots::list(&dst).expect("list");
    assert_eq!(partial.len(), 1, "the first snapshot was completed");
    assert_eq!(partial[0].snapshot.original, Some(src.first));

    let resumed = copy(&src.repo, &dst, &CopyOptions::default(), &NoProgress).expect("resume");
    assert_eq!(resumed.skipped.len(), 1);
    assert_eq!(resumed.copied.len(), 1);
    assert!(
        resumed.bytes_copied < full_summary.bytes_copied,
        "resume copied {} of {}",
        resumed.bytes_copied,
        full_summary.bytes_copied
    );
    assert_checks(&dst);
    let out = tempfile::tempdir().expect("tempdir");
    let listed = snapshots::list(&dst).expect("list");
    let got = restored_files(&dst, listed[1].id, &src.root, out.path());
    assert_eq!(got, files(&src.root));
}
