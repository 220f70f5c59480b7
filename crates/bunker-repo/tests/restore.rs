//! Restore tests: hostile hand-crafted snapshots must never reach outside
//! the target; real backups must round-trip with all metadata.

mod common_restore;

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use bunker_format::node::{Node, NodeType, MODE_DIR};
use bunker_repo::backup::{backup, BackupOptions};
use bunker_repo::progress::NoProgress;
use bunker_repo::restore::{restore, Overwrite, RestoreOptions, RestoreSummary};
use bunker_repo::snapshots::{self, SnapshotFilter};
use common_restore::{listing, new_repo, reopen, time, Builder};
use rand::{RngCore, SeedableRng};

struct Dirs {
    _tmp: tempfile::TempDir,
    base: PathBuf,
    repo: PathBuf,
    target: PathBuf,
    outside: PathBuf,
}

fn dirs() -> Dirs {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().to_path_buf();
    let outside = base.join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("sentinel"), b"untouched").unwrap();
    Dirs {
        repo: base.join("repo"),
        target: base.join("target"),
        outside,
        base,
        _tmp: tmp,
    }
}

fn opts(target: &Path) -> RestoreOptions {
    RestoreOptions {
        target: target.to_path_buf(),
        ..Default::default()
    }
}

fn has_error(s: &RestoreSummary, path: &str) -> bool {
    s.errors.iter().any(|(p, _)| p == path)
}

/// Nothing outside the target changed: the sentinel dir is as created and
/// the base holds only repo, target and outside.
fn assert_contained(d: &Dirs) {
    assert_eq!(
        listing(&d.outside),
        vec![("sentinel".to_string(), Some(b"untouched".to_vec()))],
        "outside directory was modified"
    );
    let mut top: Vec<OsString> = std::fs::read_dir(&d.base)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    top.sort();
    assert_eq!(
        top,
        vec![OsString::from("outside"), "repo".into(), "target".into()]
    );
}

#[test]
fn crafted_unsafe_names_and_links_stay_inside_target() {
    let d = dirs();
    let repo = new_repo(&d.repo);
    let b = Builder::new(&repo);
    let outside = d.outside.as_os_str().as_bytes().to_vec();
    let mut outside_file = outside.clone();
    outside_file.extend_from_slice(b"/sentinel");
    let evil_dir = b.dir(b"evil_dir", vec![b.file(b"x", b"evil")]);
    let mut dot = evil_dir.clone();
    dot.name = b".".to_vec();
    let mut dotdot = evil_dir.clone();
    dotdot.name = b"..".to_vec();
    let mut empty_dir = evil_dir.clone();
    empty_dir.name = Vec::new();
    // Duplicate names are stored in this order (symlink first).
    let nodes = vec![
        b.file(b"../escape", b"evil"),
        b.file(b"a/b", b"evil"),
        dot,
        dotdot,
        empty_dir,
        b.file(b"", b"evil"),
        b.file(b"x\0y", b"evil"),
        b.file(b"good.txt", b"good"),
        b.symlink(b"link", &outside),
        b.dir(
            b"link",
            vec![b.file(b"pwned", b"evil"), b.dir(b"sub", vec![])],
        ),
        b.file(b"link/pwned2", b"evil"),
        b.symlink(b"s", &outside_file),
        b.file(b"s", b"evil overwrite"),
        b.dir(
            b"d",
            vec![b.symlink(b"inner", &outside), b.file(b"inner", b"evil")],
        ),
    ];
    let snap = b.snapshot(nodes);
    let repo = reopen(&d.repo);

    for overwrite in [Overwrite::Never, Overwrite::Always] {
        let o = RestoreOptions {
            overwrite,
            ..opts(&d.target)
        };
        let s = restore(&repo, &snap, &o, &NoProgress).unwrap();
        for bad in [
            "/../escape",
            "/a/b",
            "/.",
            "/..",
            "/",
            "/x\0y",
            "/link/pwned2",
        ] {
            assert!(
                has_error(&s, bad),
                "no error for {bad:?} (overwrite {overwrite:?}): {:?}",
                s.errors
            );
        }
        // The dir named like the symlink and the file named like a symlink
        // are duplicates: refused with an error, never followed.
        assert!(has_error(&s, "/link"), "{:?}", s.errors);
        assert!(has_error(&s, "/s"), "{:?}", s.errors);
        assert!(has_error(&s, "/d/inner"), "{:?}", s.errors);
        assert_contained(&d);
        assert_eq!(std::fs::read(d.target.join("good.txt")).unwrap(), b"good");
        assert_eq!(
            std::fs::read_link(d.target.join("link")).unwrap(),
            d.outside
        );
        assert!(std::fs::symlink_metadata(d.target.join("s"))
            .unwrap()
            .is_symlink());
        if overwrite.replaces() {
            // good.txt is there from the first run, with the same content.
            assert_eq!((s.files, s.unchanged), (0, 1));
            assert_eq!(s.skipped_existing, 0);
        } else {
            assert_eq!((s.files, s.links), (1, 3));
        }
    }
}

#[test]
fn preexisting_symlinks_in_target_are_never_followed() {
    let d = dirs();
    let repo = new_repo(&d.repo);
    let b = Builder::new(&repo);
    let snap = b.snapshot(vec![
        b.file(b"planted", b"new content"),
        b.dir(b"planted_dir", vec![b.file(b"f", b"evil")]),
    ]);
    std::fs::create_dir(&d.target).unwrap();
    std::os::unix::fs::symlink(d.outside.join("sentinel"), d.target.join("planted")).unwrap();
    std::os::unix::fs::symlink(&d.outside, d.target.join("planted_dir")).unwrap();

    let s = restore(&repo, &snap, &opts(&d.target), &NoProgress).unwrap();
    assert_eq!(s.skipped_existing, 1);
    assert_eq!(s.skipped_paths, vec!["/planted".to_string()]);
    assert!(has_error(&s, "/planted_dir"), "{:?}", s.errors);
    assert_contained(&d);

    let o = RestoreOptions {
        overwrite: Overwrite::Always,
        ..opts(&d.target)
    };
    let s = restore(&repo, &snap, &o, &NoProgress).unwrap();
    assert_eq!(s.files, 1);
    assert!(has_error(&s, "/planted_dir"), "{:?}", s.errors);
    assert_contained(&d);
    let md = std::fs::symlink_metadata(d.target.join("planted")).unwrap();
    assert!(md.is_file());
    assert_eq!(
        std::fs::read(d.target.join("planted")).unwrap(),
        b"new content"
    );
}

#[test]
fn hard_links_are_linked_inside_target_only() {
    let d = dirs();
    let repo = new_repo(&d.repo);
    let b = Builder::new(&repo);
    let hl = |name: &[u8], data: &[u8], inode: u64| {
        let mut n = b.file(name, data);
        n.links = 2;
        n.inode = inode;
        n.device_id = 7;
        n
    };
    let snap = b.snapshot(vec![
        b.dir(b"excluded", vec![hl(b"orig", b"shared", 42)]),
        b.dir(
            b"kept",
            vec![
                hl(b"copy", b"shared", 42),
                hl(b"a", b"pair", 43),
                hl(b"b", b"pair", 43),
            ],
        ),
        // Same inode but different content: must not be linked.
        b.dir(b"other", vec![hl(b"fake", b"different", 43)]),
    ]);
    let o = RestoreOptions {
        exclude: vec!["/excluded".into()],
        ..opts(&d.target)
    };
    let s = restore(&repo, &snap, &o, &NoProgress).unwrap();
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    assert_eq!((s.files, s.hardlinks), (3, 1));
    assert!(!d.target.join("excluded").exists());
    let copy = std::fs::metadata(d.target.join("kept/copy")).unwrap();
    assert_eq!(copy.nlink(), 1, "linked to a file that was not restored");
    assert_eq!(
        std::fs::read(d.target.join("kept/copy")).unwrap(),
        b"shared"
    );
    let (a, bb) = (
        std::fs::metadata(d.target.join("kept/a")).unwrap(),
        std::fs::metadata(d.target.join("kept/b")).unwrap(),
    );
    assert_eq!(a.ino(), bb.ino());
    assert_eq!(a.nlink(), 2);
    assert_eq!(
        std::fs::read(d.target.join("other/fake")).unwrap(),
        b"different"
    );

    // Restoring only a sub-directory: the first occurrence is outside it.
    let target2 = d.base.join("target2");
    let o = RestoreOptions {
        sub_path: Some("/kept".into()),
        ..opts(&target2)
    };
    let s = restore(&repo, &snap, &o, &NoProgress).unwrap();
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    assert_eq!(std::fs::read(target2.join("copy")).unwrap(), b"shared");
    assert_eq!(std::fs::metadata(target2.join("copy")).unwrap().nlink(), 1);
    assert_eq!(std::fs::metadata(target2.join("b")).unwrap().nlink(), 2);
    std::fs::remove_dir_all(&target2).unwrap();
    assert_contained(&d);
}

#[test]
fn special_files_modes_times_and_owners() {
    let d = dirs();
    let repo = new_repo(&d.repo);
    let b = Builder::new(&repo);
    let mut fifo = Node::new(b"fifo".to_vec(), NodeType::Fifo);
    fifo.mode = bunker_format::node::MODE_NAMED_PIPE | 0o640;
    fifo.mtime = time(1_500_000_000, 5);
    fifo.atime = fifo.mtime;
    let mut null = Node::new(b"null".to_vec(), NodeType::CharDev);
    null.mode = bunker_format::node::MODE_DEVICE | bunker_format::node::MODE_CHAR_DEVICE | 0o666;
    null.device = rustix::fs::makedev(1, 3);
    null.mtime = fifo.mtime;
    null.atime = fifo.mtime;
    let mut suid = b.file(b"suid", b"#!/bin/sh\n");
    suid.mode = bunker_format::node::MODE_SETUID | 0o755;
    suid.uid = 1234;
    suid.gid = 4321;
    let mut sticky = b.dir(b"sticky", vec![b.file(b"inside", b"x")]);
    sticky.mode = MODE_DIR | bunker_format::node::MODE_STICKY | 0o777;
    let mut x = b.file(b"xattr", b"x");
    x.extended_attributes = vec![bunker_format::node::ExtendedAttribute {
        name: "user.bunker".into(),
        value: b"v\x00\x01".to_vec(),
    }];
    let latin1 = b.file(b"caf\xe9", b"non-utf8");
    let empty = b.file(b"empty", b"");
    let empty_dir = b.dir(b"empty_dir", vec![]);
    let snap = b.snapshot(vec![fifo, null, suid, sticky, x, latin1, empty, empty_dir]);
    let s = restore(&repo, &snap, &opts(&d.target), &NoProgress).unwrap();
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    let root = rustix::process::geteuid().is_root();
    assert_eq!(s.specials, 2);
    let t = &d.target;
    let md = std::fs::symlink_metadata(t.join("fifo")).unwrap();
    assert!(md.file_type().is_fifo());
    assert_eq!(md.mode() & 0o7777, 0o640);
    assert_eq!((md.mtime(), md.mtime_nsec()), (1_500_000_000, 5));
    let md = std::fs::symlink_metadata(t.join("null")).unwrap();
    assert!(md.file_type().is_char_device());
    assert_eq!(md.rdev(), rustix::fs::makedev(1, 3));
    let md = std::fs::metadata(t.join("suid")).unwrap();
    assert_eq!(md.permissions().mode() & 0o7777, 0o4755);
    if root {
        assert_eq!((md.uid(), md.gid()), (1234, 4321));
    }
    assert_eq!((md.mtime(), md.mtime_nsec()), (1_600_000_000, 123_456_789));
    assert_eq!((md.atime(), md.atime_nsec()), (1_600_000_100, 987_654_321));
    let md = std::fs::metadata(t.join("sticky")).unwrap();
    assert_eq!(md.permissions().mode() & 0o7777, 0o1777);
    // Directory times are applied after their contents.
    assert_eq!((md.mtime(), md.mtime_nsec()), (1_600_000_000, 123_456_789));
    if s.xattrs_skipped == 0 {
        let v = rustix::fs::getxattr(t.join("xattr"), "user.bunker", &mut [0u8; 16][..]).unwrap();
        assert_eq!(v, 3);
    }
    assert_eq!(
        std::fs::read(t.join(OsStr::from_bytes(b"caf\xe9"))).unwrap(),
        b"non-utf8"
    );
    assert_eq!(std::fs::metadata(t.join("empty")).unwrap().len(), 0);
    assert!(std::fs::read_dir(t.join("empty_dir"))
        .unwrap()
        .next()
        .is_none());
}

#[test]
fn damaged_blob_fails_only_its_file() {
    let d = dirs();
    let repo = new_repo(&d.repo);
    let b = Builder::new(&repo);
    let bad_data = vec![7u8; 5000];
    let bad = b.file(b"bad", &bad_data);
    let good = b.file(b"good", b"fine");
    let bad_blob = bad.content.clone().unwrap()[0];
    let snap = b.snapshot(vec![bad, good]);
    let e = repo.lookup(&bad_blob).unwrap();
    let pack = repo.index().read().pack_id(e.pack).to_string();
    let pack_path = d.repo.join("data").join(&pack[..2]).join(&pack);
    let mut bytes = std::fs::read(&pack_path).unwrap();
    bytes[e.offset as usize + 20] ^= 0x40;
    std::fs::write(&pack_path, &bytes).unwrap();

    let s = restore(&repo, &snap, &opts(&d.target), &NoProgress).unwrap();
    assert_eq!(s.files, 1);
    assert_eq!(s.errors.len(), 1, "{:?}", s.errors);
    assert_eq!(s.errors[0].0, "/bad");
    assert!(
        s.errors[0].1.contains(&pack),
        "error does not name the pack: {}",
        s.errors[0].1
    );
    assert_eq!(std::fs::read(d.target.join("good")).unwrap(), b"fine");
}

#[test]
fn include_exclude_and_dry_run() {
    let d = dirs();
    let repo = new_repo(&d.repo);
    let b = Builder::new(&repo);
    let snap = b.snapshot(vec![b.dir(
        b"home",
        vec![
            b.dir(
                b"a",
                vec![b.file(b"keep.txt", b"k"), b.file(b"drop.log", b"d")],
            ),
            b.dir(b"b", vec![b.file(b"other.txt", b"o")]),
        ],
    )]);
    let o = RestoreOptions {
        include: vec!["/home/a".into()],
        exclude: vec!["*.log".into()],
        ..opts(&d.target)
    };
    let dry = RestoreOptions {
        dry_run: true,
        ..o.clone()
    };
    let s = restore(&repo, &snap, &dry, &NoProgress).unwrap();
    assert_eq!((s.files, s.bytes), (1, 1));
    assert!(!d.target.exists(), "dry run created the target");
    let s = restore(&repo, &snap, &o, &NoProgress).unwrap();
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    assert_eq!(s.files, 1);
    assert_eq!(
        listing(&d.target),
        vec![
            ("home".to_string(), None),
            ("home/a".to_string(), None),
            ("home/a/keep.txt".to_string(), Some(b"k".to_vec())),
        ]
    );
    // The parent created for the included path got its metadata too.
    let md = std::fs::metadata(d.target.join("home")).unwrap();
    assert_eq!(
        (md.mtime(), md.permissions().mode() & 0o777),
        (1_600_000_000, 0o755)
    );
    let s = restore(
        &repo,
        &snap,
        &RestoreOptions { dry_run: true, ..o },
        &NoProgress,
    )
    .unwrap();
    assert_eq!((s.files, s.skipped_existing), (0, 1));
}

fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut v);
    v
}

/// Compare a restored tree with its source (content, type, mode, mtime, links).
fn compare_trees(src: &Path, dst: &Path) {
    let mut names: Vec<OsString> = std::fs::read_dir(src)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    let mut got: Vec<OsString> = std::fs::read_dir(dst)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    got.sort();
    assert_eq!(names, got, "entries of {}", dst.display());
    for n in names {
        let (s, t) = (src.join(&n), dst.join(&n));
        let (ms, mt) = (
            std::fs::symlink_metadata(&s).unwrap(),
            std::fs::symlink_metadata(&t).unwrap(),
        );
        assert_eq!(ms.mode(), mt.mode(), "mode of {}", t.display());
        assert_eq!((ms.uid(), ms.gid()), (mt.uid(), mt.gid()));
        assert_eq!(
            (ms.mtime(), ms.mtime_nsec()),
            (mt.mtime(), mt.mtime_nsec()),
            "mtime of {}",
            t.display()
        );
        if ms.is_dir() {
            compare_trees(&s, &t);
        } else if ms.is_file() {
            assert!(
                std::fs::read(&s).unwrap() == std::fs::read(&t).unwrap(),
                "content of {}",
                t.display()
            );
        } else if ms.is_symlink() {
            assert_eq!(
                std::fs::read_link(&s).unwrap(),
                std::fs::read_link(&t).unwrap()
            );
        }
    }
}

#[test]
fn backup_restore_round_trip() {
    let d = dirs();
    let src = d.base.join("src");
    std::fs::create_dir_all(src.join("a/b")).unwrap();
    std::fs::create_dir(src.join("empty_dir")).unwrap();
    std::fs::write(src.join("a/b/deep.txt"), b"deep").unwrap();
    std::fs::write(src.join("empty"), b"").unwrap();
    std::fs::write(src.join("big.bin"), random_bytes(1, 5 * 1024 * 1024 + 77)).unwrap();
    let mut sparse = random_bytes(2, 300_000);
    sparse.extend(vec![0u8; 12 * 1024 * 1024]);
    sparse.extend(random_bytes(3, 1000));
    std::fs::write(src.join("sparse.bin"), &sparse).unwrap();
    std::os::unix::fs::symlink("a/b", src.join("link")).unwrap();
    std::fs::write(src.join("hard1"), b"linked").unwrap();
    std::fs::hard_link(src.join("hard1"), src.join("hard2")).unwrap();
    std::fs::write(src.join(OsString::from_vec(b"caf\xe9".to_vec())), b"latin1").unwrap();
    std::fs::set_permissions(src.join("a"), std::fs::Permissions::from_mode(0o1750)).unwrap();
    let repo = new_repo(&d.repo);
    let summary = backup(
        &repo,
        BackupOptions {
            paths: vec![src.clone()],
            ..Default::default()
        },
        &NoProgress,
    )
    .unwrap();
    assert!(summary.errors.is_empty(), "{:?}", summary.errors);
    let repo = reopen(&d.repo);
    let snap = snapshots::find(&repo, "latest", &SnapshotFilter::default()).unwrap();

    let o = RestoreOptions {
        verify: true,
        ..opts(&d.target)
    };
    let s = restore(&repo, &snap, &o, &NoProgress).unwrap();
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    assert_eq!(s.files, 6);
    assert_eq!(s.hardlinks, 1);
    assert_eq!(s.verified_files, 6);
    let restored = d.target.join(src.strip_prefix("/").unwrap());
    compare_trees(&src, &restored);
    let h1 = std::fs::metadata(restored.join("hard1")).unwrap();
    assert_eq!(
        h1.ino(),
        std::fs::metadata(restored.join("hard2")).unwrap().ino()
    );
    let sp = std::fs::metadata(restored.join("sparse.bin")).unwrap();
    assert!(
        sp.blocks() * 512 < sp.len() / 2,
        "not sparse: {} blocks",
        sp.blocks()
    );

    // Again: everything exists, nothing is overwritten.
    let s = restore(&repo, &snap, &opts(&d.target), &NoProgress).unwrap();
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    assert_eq!(s.files, 0);
    assert!(s.skipped_existing >= 7, "{}", s.skipped_existing);

    // A sub-directory of the snapshot lands directly in the target.
    let t2 = d.base.join("t2");
    let sub = format!("{}/a", src.display());
    let o = RestoreOptions {
        sub_path: Some(sub),
        sparse: false,
        workers: 1,
        ..opts(&t2)
    };
    let s = restore(&repo, &snap, &o, &NoProgress).unwrap();
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    assert_eq!(std::fs::read(t2.join("b/deep.txt")).unwrap(), b"deep");
}
