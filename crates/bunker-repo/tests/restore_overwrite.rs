//! Restoring over an existing tree: a failed file leaves nothing behind,
//! restic's `--overwrite` modes rewrite only what differs, `--delete`
//! removes what is not in the snapshot (and nothing outside the target),
//! and existing parent directories keep their metadata.

mod common_restore;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use bunker_repo::progress::NoProgress;
use bunker_repo::restore::{restore, Overwrite, RestoreOptions, RestoreSummary};
use common_restore::{listing, new_repo, reopen, Builder};

/// The snapshot's file mtime (see `Builder::stamp`).
const SNAP_MTIME: i64 = 1_600_000_000;
const SNAP_NSEC: u32 = 123_456_789;

fn opts(target: &Path) -> RestoreOptions {
    RestoreOptions {
        target: target.to_path_buf(),
        ..Default::default()
    }
}

fn with(target: &Path, overwrite: Overwrite) -> RestoreOptions {
    RestoreOptions {
        overwrite,
        ..opts(target)
    }
}

fn errors_of(s: &RestoreSummary) -> Vec<&str> {
    s.errors.iter().map(|(p, _)| p.as_str()).collect()
}

/// Names in `dir` (sorted), to see that no temporary file was left.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn set_mtime(p: &Path, secs: i64, nsec: u32) {
    let t = rustix::fs::Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: secs,
            tv_nsec: nsec as _,
        },
        last_modification: rustix::fs::Timespec {
            tv_sec: secs,
            tv_nsec: nsec as _,
        },
    };
    rustix::fs::utimensat(rustix::fs::CWD, p, &t, rustix::fs::AtFlags::empty()).unwrap();
}

fn ino(p: &Path) -> u64 {
    std::fs::metadata(p).unwrap().ino()
}

/// The path of the pack holding the first blob of `node`.
fn pack_of(
    repo: &bunker_repo::Repository,
    dir: &Path,
    node: &bunker_format::node::Node,
) -> PathBuf {
    let blob = node.content.clone().unwrap()[0];
    let e = repo.lookup(&blob).unwrap();
    let pack = repo.index().read().pack_id(e.pack).to_string();
    dir.join("data").join(&pack[..2]).join(&pack)
}

#[test]
fn failed_restore_leaves_no_file_and_a_rerun_restores_it() {
    let tmp = tempfile::tempdir().unwrap();
    let repo_dir = tmp.path().join("repo");
    let repo = new_repo(&repo_dir);
    let b = Builder::new(&repo);
    let data = vec![7u8; 5000];
    let bad = b.file(b"bad", &data);
    let snap = b.snapshot(vec![b.dir(b"d", vec![bad.clone()])]);
    let repo = reopen(&repo_dir);
    let pack = pack_of(&repo, &repo_dir, &bad);
    let pack_bytes = std::fs::read(&pack).unwrap();

    // Missing pack: an error, and nothing where the file should be.
    let target = tmp.path().join("t");
    std::fs::rename(&pack, tmp.path().join("pack.away")).unwrap();
    let s = restore(&repo, &snap, &opts(&target), &NoProgress).unwrap();
    assert_eq!(errors_of(&s), vec!["/d/bad"], "{:?}", s.errors);
    assert_eq!(s.files, 0);
    assert!(
        names(&target.join("d")).is_empty(),
        "{:?}",
        names(&target.join("d"))
    );

    // Damaged pack: the same.
    let mut damaged = pack_bytes.clone();
    let e = repo.lookup(&bad.content.clone().unwrap()[0]).unwrap();
    damaged[e.offset as usize + 20] ^= 0x40;
    std::fs::write(&pack, &damaged).unwrap();
    let s = restore(&repo, &snap, &opts(&target), &NoProgress).unwrap();
    assert_eq!(errors_of(&s), vec!["/d/bad"], "{:?}", s.errors);
    assert_eq!(
        s.skipped_existing, 0,
        "a failed file was skipped as existing"
    );
    assert!(
        names(&target.join("d")).is_empty(),
        "{:?}",
        names(&target.join("d"))
    );

    // Over an existing file: the old content stays, and the error says so.
    let old = tmp.path().join("old");
    std::fs::create_dir_all(old.join("d")).unwrap();
    std::fs::write(old.join("d/bad"), b"old content").unwrap();
    let s = restore(&repo, &snap, &with(&old, Overwrite::Always), &NoProgress).unwrap();
    assert_eq!(errors_of(&s), vec!["/d/bad"], "{:?}", s.errors);
    assert_eq!(std::fs::read(old.join("d/bad")).unwrap(), b"old content");
    assert_eq!(names(&old.join("d")), vec!["bad"]);

    // Repaired: a plain rerun (no --overwrite) restores the file.
    std::fs::write(&pack, &pack_bytes).unwrap();
    let s = restore(&repo, &snap, &opts(&target), &NoProgress).unwrap();
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    assert_eq!((s.files, s.skipped_existing), (1, 0));
    assert_eq!(std::fs::read(target.join("d/bad")).unwrap(), data);
    let md = std::fs::metadata(target.join("d/bad")).unwrap();
    assert_eq!((md.mtime(), md.mode() & 0o777), (SNAP_MTIME, 0o644));
    assert_eq!(names(&target.join("d")), vec!["bad"]);
}

#[test]
fn overwrite_modes_rewrite_only_files_that_differ() {
    let tmp = tempfile::tempdir().unwrap();
    let repo_dir = tmp.path().join("repo");
    let repo = new_repo(&repo_dir);
    let b = Builder::new(&repo);
    let snap = b.snapshot(vec![
        b.file(b"same", b"same content"),
        b.file(b"touched", b"same content"),
        b.file(b"samesize", b"snapshot text"),
        b.file(b"resized", b"snapshot"),
        b.file(b"older", b"snapshot"),
    ]);
    let repo = reopen(&repo_dir);
    // What each mode must do, as (file, unchanged?) with the target set up
    // freshly: "samesize" has other content of the same size and the
    // snapshot's mtime, which only `if-changed` trusts.
    let cases: [(Overwrite, &[(&str, bool)]); 3] = [
        (
            Overwrite::Always,
            &[
                ("same", true),
                ("touched", true),
                ("samesize", false),
                ("resized", false),
                ("older", false),
            ],
        ),
        (
            Overwrite::IfChanged,
            &[
                ("same", true),
                ("touched", true),
                ("samesize", true),
                ("resized", false),
                ("older", false),
            ],
        ),
        (
            Overwrite::IfNewer,
            &[
                ("same", true),
                ("touched", true),
                ("samesize", true),
                ("resized", true),
                ("older", false),
            ],
        ),
    ];
    for (i, (mode, expect)) in cases.iter().enumerate() {
        let t = tmp.path().join(format!("t{i}"));
        std::fs::create_dir(&t).unwrap();
        std::fs::write(t.join("same"), b"same content").unwrap();
        set_mtime(&t.join("same"), SNAP_MTIME, SNAP_NSEC);
        std::fs::write(t.join("touched"), b"same content").unwrap();
        set_mtime(&t.join("touched"), SNAP_MTIME + 50, 0);
        std::fs::write(t.join("samesize"), b"other content").unwrap();
        set_mtime(&t.join("samesize"), SNAP_MTIME, SNAP_NSEC);
        std::fs::write(t.join("resized"), b"a longer local text").unwrap();
        set_mtime(&t.join("resized"), SNAP_MTIME + 50, 0);
        std::fs::write(t.join("older"), b"local").unwrap();
        set_mtime(&t.join("older"), SNAP_MTIME - 50, 0);
        let before: Vec<u64> = expect.iter().map(|(n, _)| ino(&t.join(n))).collect();

        let s = restore(&repo, &snap, &with(&t, *mode), &NoProgress).unwrap();
        assert!(s.errors.is_empty(), "{mode:?}: {:?}", s.errors);
        assert_eq!(s.skipped_existing, 0, "{mode:?}");
        for ((name, unchanged), inode) in expect.iter().zip(before) {
            let p = t.join(name);
            assert_eq!(ino(&p) == inode, *unchanged, "{mode:?}: {name}");
            if !unchanged {
                let want: &[u8] = if *name == "older" || *name == "resized" {
                    b"snapshot"
                } else {
                    b"snapshot text"
                };
                assert_eq!(std::fs::read(&p).unwrap(), want, "{mode:?}: {name}");
            }
        }
        let rewritten = expect.iter().filter(|(_, u)| !u).count() as u64;
        assert_eq!(s.files, rewritten, "{mode:?}");
        if *mode == Overwrite::IfNewer {
            // Kept as they are: equal or newer mtimes ("same" is equal).
            assert_eq!((s.unchanged, s.kept_newer), (0, 4), "{mode:?}");
        } else {
            assert_eq!(s.unchanged, 5 - rewritten, "{mode:?}");
            // Unchanged files get the snapshot's metadata.
            let md = std::fs::metadata(t.join("touched")).unwrap();
            assert_eq!(
                (md.mtime(), md.mtime_nsec()),
                (SNAP_MTIME, SNAP_NSEC as i64)
            );
            assert_eq!(md.mode() & 0o777, 0o644);
        }
        assert_eq!(names(&t).len(), 5, "temporary files left: {:?}", names(&t));
    }

    // Never (the default): everything existing is skipped and reported.
    let t = tmp.path().join("t0");
    let s = restore(&repo, &snap, &opts(&t), &NoProgress).unwrap();
    assert_eq!((s.files, s.skipped_existing), (0, 5));
}

#[test]
fn delete_removes_unselected_leftovers_only_inside_the_target() {
    let tmp = tempfile::tempdir().unwrap();
    let repo_dir = tmp.path().join("repo");
    let repo = new_repo(&repo_dir);
    let b = Builder::new(&repo);
    let snap = b.snapshot(vec![b.dir(
        b"www",
        vec![b.file(b"index.html", b"<html>"), b.dir(b"img", vec![])],
    )]);
    let repo = reopen(&repo_dir);
    let outside = tmp.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("sentinel"), b"untouched").unwrap();
    let t = tmp.path().join("t");
    std::fs::create_dir_all(t.join("www/img/old")).unwrap();
    std::fs::create_dir_all(t.join("www/cache")).unwrap();
    std::fs::write(t.join("www/img/old/a.png"), b"png").unwrap();
    std::fs::write(t.join("www/stale.html"), b"stale").unwrap();
    std::fs::write(t.join("www/keep.log"), b"excluded, kept").unwrap();
    std::fs::write(t.join("www/cache/x"), b"x").unwrap();
    std::os::unix::fs::symlink(&outside, t.join("www/escape")).unwrap();
    std::os::unix::fs::symlink(&outside, t.join("www/cache/link")).unwrap();
    std::fs::write(t.join("top-level"), b"not in the snapshot").unwrap();

    let o = RestoreOptions {
        delete: true,
        overwrite: Overwrite::IfChanged,
        exclude: vec!["*.log".into()],
        ..opts(&t)
    };
    let dry = RestoreOptions {
        dry_run: true,
        ..o.clone()
    };
    let before = listing(&t);
    let s = restore(&repo, &snap, &dry, &NoProgress).unwrap();
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    assert_eq!(listing(&t), before, "a dry run changed the target");
    let mut would = s.deleted_paths.clone();
    would.sort();
    let want = [
        "/top-level",
        "/www/cache",
        "/www/escape",
        "/www/img/old",
        "/www/stale.html",
    ];
    assert_eq!(would, want);

    let s = restore(&repo, &snap, &o, &NoProgress).unwrap();
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    assert_eq!(s.deleted, 5);
    assert_eq!(
        listing(&t),
        vec![
            ("www".to_string(), None),
            ("www/img".to_string(), None),
            ("www/index.html".to_string(), Some(b"<html>".to_vec())),
            ("www/keep.log".to_string(), Some(b"excluded, kept".to_vec())),
        ]
    );
    assert_eq!(
        listing(&outside),
        vec![("sentinel".to_string(), Some(b"untouched".to_vec()))]
    );

    // A directory where the snapshot has a file is replaced with --delete.
    std::fs::remove_file(t.join("www/index.html")).unwrap();
    std::fs::create_dir(t.join("www/index.html")).unwrap();
    std::fs::write(t.join("www/index.html/x"), b"x").unwrap();
    let s = restore(&repo, &snap, &with(&t, Overwrite::IfChanged), &NoProgress).unwrap();
    assert_eq!(errors_of(&s), vec!["/www/index.html"]);
    let s = restore(&repo, &snap, &o, &NoProgress).unwrap();
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    assert_eq!(std::fs::read(t.join("www/index.html")).unwrap(), b"<html>");
}

#[test]
fn existing_parent_directories_keep_their_metadata() {
    let tmp = tempfile::tempdir().unwrap();
    let repo_dir = tmp.path().join("repo");
    let repo = new_repo(&repo_dir);
    let b = Builder::new(&repo);
    let mut snap = b.snapshot(vec![
        b.dir(b"home", vec![b.dir(b"alice", vec![b.file(b"notes", b"n")])])
    ]);
    // As a backup of /home/alice records it: /home is only a container.
    snap.snapshot.paths = vec!["/home/alice".into()];
    let repo = reopen(&repo_dir);
    let t = tmp.path().join("root");
    std::fs::create_dir_all(t.join("home/alice")).unwrap();
    std::fs::set_permissions(t.join("home"), std::fs::Permissions::from_mode(0o711)).unwrap();
    std::fs::set_permissions(t.join("home/alice"), std::fs::Permissions::from_mode(0o700)).unwrap();
    let s = restore(&repo, &snap, &opts(&t), &NoProgress).unwrap();
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    let home = std::fs::metadata(t.join("home")).unwrap();
    assert_eq!(
        home.mode() & 0o7777,
        0o711,
        "container directory's mode reset"
    );
    assert_ne!(
        home.mtime(),
        SNAP_MTIME,
        "container directory's times reset"
    );
    // The backed-up directory itself is restored with its metadata.
    let alice = std::fs::metadata(t.join("home/alice")).unwrap();
    assert_eq!((alice.mode() & 0o7777, alice.mtime()), (0o755, SNAP_MTIME));

    // A new target: the container is created and gets the snapshot's metadata.
    let t2 = tmp.path().join("fresh");
    let s = restore(&repo, &snap, &opts(&t2), &NoProgress).unwrap();
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    let home = std::fs::metadata(t2.join("home")).unwrap();
    assert_eq!((home.mode() & 0o7777, home.mtime()), (0o755, SNAP_MTIME));
}

#[test]
fn restoring_a_file_as_subpath_suggests_include_or_dump() {
    let tmp = tempfile::tempdir().unwrap();
    let repo_dir = tmp.path().join("repo");
    let repo = new_repo(&repo_dir);
    let b = Builder::new(&repo);
    let snap = b.snapshot(vec![b.dir(b"etc", vec![b.file(b"passwd", b"root")])]);
    let repo = reopen(&repo_dir);
    let o = RestoreOptions {
        sub_path: Some("/etc/passwd".into()),
        ..opts(&tmp.path().join("t"))
    };
    let e = restore(&repo, &snap, &o, &NoProgress)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("--include /etc/passwd") && e.contains("dump"),
        "{e}"
    );
    assert!(!tmp.path().join("t").exists());
}
